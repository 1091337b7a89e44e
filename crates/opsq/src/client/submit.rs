//! `opsq submit`: queue one job through the jobs API.

use std::process::ExitCode;

use anyhow::Context;
use opsq_client::SubmitRequest;

use super::Session;

/// Arguments of `opsq submit`.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// The job kind, such as server.powerOn; it picks the handler that runs the job.
    #[arg(long)]
    kind: String,
    /// Human text shown in lists and the dashboard.
    #[arg(long)]
    title: Option<String>,
    /// The job's input as a JSON value, such as '{"server":"WA1DEMOWEB01"}'.
    #[arg(long)]
    payload: Option<String>,
    /// Makes a retried submit safe: the same key and body return the first job
    /// instead of queueing a second one.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// How many attempts before the job fails for good (default: the server's).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Whether running the job twice is harmless (default: the server's); decides
    /// whether a lost worker's job is retried or held as `unknown`.
    #[arg(long)]
    safe_to_repeat: Option<bool>,
    /// The account to queue the job in (default: the account logged in to).
    #[arg(long)]
    alias: Option<String>,
    /// Print the whole job as JSON instead of its status id.
    #[arg(long)]
    json: bool,
    /// The opsq server (default: the one logged in to).
    #[arg(long, env = "OPSQ_SERVER")]
    server: Option<String>,
}

/// Submits the job and prints its status id (or the job as JSON).
pub async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    opsq_domain::JobKind::parse(&args.kind)?;
    let payload = args.payload.as_deref().map(parse_payload).transpose()?;
    let request = SubmitRequest {
        kind: args.kind,
        title: args.title,
        payload,
        max_attempts: args.max_attempts,
        safe_to_repeat: args.safe_to_repeat,
    };
    let session = Session::open(args.server, args.alias)?;
    let submission =
        session.client.submit(&session.alias, &request, args.idempotency_key.as_deref()).await.with_context(
            || format!("cannot submit the {} job to account {}", request.kind, session.alias),
        )?;
    if submission.replayed {
        eprintln!(
            "note: this idempotency key was used before; {} is the job it created then",
            submission.job.id
        );
    }
    if args.json {
        super::print_json(&submission.job)?;
    } else {
        super::print_line(&submission.job.id)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `--payload`, with an error that points at the mistake and shows the shape.
fn parse_payload(raw: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(raw).with_context(|| {
        format!(
            "--payload is not valid JSON: {raw:.80}\nquote it for the shell, e.g. --payload '{{\"server\":\"WA1DEMOWEB01\"}}'"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_must_be_json_and_the_error_shows_how() -> anyhow::Result<()> {
        assert_eq!(parse_payload(r#"{"a":[1,2]}"#)?["a"][1], 2);
        let err = parse_payload("{server: x}").err().context("refused")?;
        let text = format!("{err:#}");
        assert!(text.contains("--payload is not valid JSON"), "{text}");
        assert!(text.contains("line 1 column 2"), "{text}");
        Ok(())
    }
}
