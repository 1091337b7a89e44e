//! `opsq cancel`: cancel jobs, saying per job what happened.

use std::process::ExitCode;

use opsq_client::{CancelOutcome, Client, ClientError, JobStatus};
use serde_json::json;

use super::Session;

/// Arguments of `opsq cancel`.
#[derive(clap::Args, Debug)]
pub struct CancelArgs {
    /// The status ids to cancel, such as wa1-12 wa1-13.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    /// Why, recorded in the job's history and error (default: "cancelled by USER").
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// The account the jobs belong to (default: the account logged in to).
    #[arg(long)]
    alias: Option<String>,
    /// Print one JSON line per job: {"id", "outcome", "status", "message"}.
    #[arg(long)]
    json: bool,
    /// The opsq server (default: the one logged in to).
    #[arg(long, env = "OPSQ_SERVER")]
    server: Option<String>,
}

/// What a cancel did to one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// It was waiting and is now failed.
    Cancelled,
    /// It is running; its worker is told to stop.
    Requested,
    /// It had already ended; its outcome stands.
    AlreadyEnded,
    /// Its outcome is unknown and must be resolved first.
    NeedsResolution,
    /// Anything else: unknown id, no access, server unreachable.
    Error,
}

impl Outcome {
    /// The word for `--json`.
    fn word(self) -> &'static str {
        match self {
            Outcome::Cancelled => "cancelled",
            Outcome::Requested => "cancelRequested",
            Outcome::AlreadyEnded => "alreadyEnded",
            Outcome::NeedsResolution => "needsResolution",
            Outcome::Error => "error",
        }
    }

    /// Whether the cancel did what was asked (the job is or will be stopped).
    fn ok(self) -> bool {
        matches!(self, Outcome::Cancelled | Outcome::Requested)
    }
}

/// Cancels each job in turn; exit 1 if any could not be cancelled.
pub async fn run(args: CancelArgs) -> anyhow::Result<ExitCode> {
    for id in &args.ids {
        super::check_status_id(id)?;
    }
    let session = Session::open(args.server, args.alias)?;
    let mut all_ok = true;
    for id in &args.ids {
        let (outcome, status, message) =
            cancel_one(&session.client, &session.alias, id, args.reason.as_deref()).await;
        all_ok &= outcome.ok();
        if args.json {
            let line = json!({
                "id": id,
                "outcome": outcome.word(),
                "status": status.map(JobStatus::as_str),
                "message": message,
            });
            super::print_line(&line.to_string())?;
        } else {
            super::print_line(&format!("{id}: {message}"))?;
        }
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn cancel_one(
    client: &Client,
    alias: &str,
    id: &str,
    reason: Option<&str>,
) -> (Outcome, Option<JobStatus>, String) {
    match client.cancel(alias, id, reason).await {
        Ok(CancelOutcome::Cancelled(job)) => {
            (Outcome::Cancelled, Some(job.status), "cancelled (it had not started)".into())
        }
        Ok(CancelOutcome::Requested(job)) => (
            Outcome::Requested,
            Some(job.status),
            "cancel requested (it is running: its worker stops it, unless it finishes first)".into(),
        ),
        Ok(other) => (Outcome::Requested, Some(other.job().status), "cancel accepted".into()),
        Err(err) if err.is_conflict() => conflict(client, alias, id, &err).await,
        Err(err) => (Outcome::Error, None, format!("not cancelled: {err}")),
    }
}

/// A 409: tells "already ended" from "outcome unknown" by the job's status, keeping
/// the server's message, which says what to do.
async fn conflict(
    client: &Client,
    alias: &str,
    id: &str,
    err: &ClientError,
) -> (Outcome, Option<JobStatus>, String) {
    let message = match err {
        ClientError::Api { message, .. } => message.clone(),
        other => other.to_string(),
    };
    match client.job(alias, id).await {
        Ok(job) if job.status.is_terminal() => (
            Outcome::AlreadyEnded,
            Some(job.status),
            format!("not cancelled: it already ended {}; its outcome stands", job.status),
        ),
        Ok(job) if job.status == JobStatus::Unknown => {
            (Outcome::NeedsResolution, Some(job.status), format!("not cancelled: {message}"))
        }
        Ok(job) => (Outcome::Error, Some(job.status), format!("not cancelled: {message}")),
        Err(_) => (Outcome::Error, None, format!("not cancelled: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cancel_or_a_request_counts_as_success() {
        assert!(Outcome::Cancelled.ok() && Outcome::Requested.ok());
        for failed in [Outcome::AlreadyEnded, Outcome::NeedsResolution, Outcome::Error] {
            assert!(!failed.ok(), "{failed:?}");
        }
        assert_eq!(Outcome::Requested.word(), "cancelRequested");
    }
}
