//! `opsq wait`: poll jobs until they finish, with one progress bar per job.
//!
//! Exit codes are the contract scripts rely on: 0 when every job succeeded, 1 when
//! any failed, 2 when any could not be followed to the end (timeout, unknown id, not
//! logged in). Transient trouble (server restarting, 5xx, 429) is retried until the
//! timeout, because a job keeps running while its server blips.

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use opsq_client::{Client, ClientError, Job, JobStatus};
use tokio::time::{sleep_until, timeout_at, Instant};

use super::Session;

/// The longest pause between polls while the server keeps failing transiently, so an
/// overloaded server is not hammered and a recovered one is noticed soon.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Arguments of `opsq wait`.
#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    /// The status ids to wait for, such as wa1-12 wa1-13.
    #[arg(required = true, value_name = "ID")]
    ids: Vec<String>,
    /// The account the jobs belong to (default: the account logged in to).
    #[arg(long)]
    alias: Option<String>,
    /// Give up after this many seconds, with exit code 2 (default: wait as long as it takes).
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// How often to poll each job, in milliseconds.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    interval_ms: u64,
    /// No progress bars; print one JSON line per job at the end (the job as the jobs
    /// API shows it, or {"id", "error"}).
    #[arg(long)]
    json: bool,
    /// The opsq server (default: the one logged in to).
    #[arg(long, env = "OPSQ_SERVER")]
    server: Option<String>,
}

/// How following one job ended.
enum Outcome {
    /// It reached `succeeded` or `failed`.
    Finished(Job),
    /// The deadline came first; the last job seen and the last transient error, if any.
    TimedOut { last: Option<Job>, error: Option<ClientError> },
    /// The server refused for good (unknown id, no access, not logged in); the message.
    Error(String),
}

/// Waits for the jobs and returns the exit code; also the errors that stop it before
/// any polling are reported here with exit code 2, so `wait`'s codes hold for every
/// way it can end.
pub async fn run(args: WaitArgs) -> anyhow::Result<ExitCode> {
    match wait(args).await {
        Ok(code) => Ok(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn wait(args: WaitArgs) -> anyhow::Result<ExitCode> {
    let mut ids: Vec<String> = Vec::with_capacity(args.ids.len());
    for id in args.ids {
        super::check_status_id(&id)?;
        if !ids.iter().any(|seen| seen.eq_ignore_ascii_case(&id)) {
            ids.push(id);
        }
    }
    let session = Session::open(args.server, args.alias)?;
    let deadline = args.timeout.and_then(|secs| Instant::now().checked_add(Duration::from_secs(secs)));
    let interval = Duration::from_millis(args.interval_ms);
    // Bars only for a person watching: they draw on stderr, and stdout's final lines
    // are what a script reads.
    let interactive = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let bars = (!args.json && interactive).then(MultiProgress::new);

    let width = ids.iter().map(|id| id.len()).max().unwrap_or(0);
    let mut tasks = Vec::with_capacity(ids.len());
    for id in &ids {
        let bar = bars.as_ref().map(|multi| new_bar(multi, id, width));
        let poll = Poll {
            client: session.client.clone(),
            alias: session.alias.clone(),
            id: id.clone(),
            deadline,
            interval,
            bar,
        };
        tasks.push(tokio::spawn(poll.run()));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for (id, task) in ids.iter().zip(tasks) {
        let outcome =
            task.await.unwrap_or_else(|err| Outcome::Error(format!("the poller for {id} stopped: {err}")));
        outcomes.push(outcome);
    }

    for (id, outcome) in ids.iter().zip(&outcomes) {
        report(id, outcome, args.json, bars.is_some(), args.timeout)?;
    }
    Ok(exit_code(&outcomes))
}

/// 2 if any job could not be followed to the end, else 1 if any failed, else 0.
fn exit_code(outcomes: &[Outcome]) -> ExitCode {
    let unfinished = outcomes.iter().any(|o| !matches!(o, Outcome::Finished(_)));
    let failed =
        outcomes.iter().any(|o| matches!(o, Outcome::Finished(job) if job.status == JobStatus::Failed));
    if unfinished {
        ExitCode::from(2)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints one job's ending: a stdout line for scripts (unless the bars already show
/// it), and the details of anything that went wrong on stderr.
fn report(id: &str, outcome: &Outcome, json: bool, bars: bool, timeout: Option<u64>) -> anyhow::Result<()> {
    let secs = timeout.unwrap_or(0);
    if json {
        let line = match outcome {
            Outcome::Finished(job) | Outcome::TimedOut { last: Some(job), .. } => serde_json::to_string(job)?,
            Outcome::TimedOut { last: None, error } => serde_json::to_string(&serde_json::json!({
                "id": id,
                "error": timeout_text(secs, error.as_ref()),
            }))?,
            Outcome::Error(err) => serde_json::to_string(&serde_json::json!({"id": id, "error": err}))?,
        };
        super::print_line(&line)?;
    } else if !bars {
        let word = match outcome {
            Outcome::Finished(job) => job.status.as_str(),
            Outcome::TimedOut { .. } => "timeout",
            Outcome::Error(_) => "error",
        };
        super::print_line(&format!("{id} {word}"))?;
    }
    match outcome {
        Outcome::Finished(job) if job.status == JobStatus::Failed => {
            eprintln!("{id} failed: {}", job.error_text().unwrap_or_else(|| "no reason given".into()));
        }
        Outcome::Finished(_) => {}
        Outcome::TimedOut { last, error } => {
            let status = last.as_ref().map_or("not seen".to_string(), describe);
            eprintln!("error: {id}: {} (last status: {status})", timeout_text(secs, error.as_ref()));
        }
        Outcome::Error(err) => eprintln!("error: {id}: {err}"),
    }
    Ok(())
}

fn timeout_text(secs: u64, error: Option<&ClientError>) -> String {
    match error {
        Some(err) => format!("timed out after {secs}s; the last try failed: {err}"),
        None => format!("timed out after {secs}s; raise --timeout to wait longer"),
    }
}

/// `status: description`, the bar message and the timeout report.
fn describe(job: &Job) -> String {
    if job.progress.description.is_empty() {
        job.status.to_string()
    } else {
        format!("{}: {}", job.status, job.progress.description)
    }
}

/// A bar for one job, added to `multi` before anything is drawn: a bar that draws on
/// its own first leaves a stray line behind.
fn new_bar(multi: &MultiProgress, id: &str, width: usize) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos:>3}% {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = multi.add(ProgressBar::hidden());
    bar.set_length(100);
    bar.set_style(style);
    bar.set_prefix(format!("{id:<width$}"));
    bar.set_message("waiting for the first answer");
    bar
}

/// Follows one job until it ends, the deadline passes, or the server refuses.
struct Poll {
    client: Client,
    alias: String,
    id: String,
    deadline: Option<Instant>,
    interval: Duration,
    bar: Option<ProgressBar>,
}

impl Poll {
    async fn run(self) -> Outcome {
        let outcome = self.follow().await;
        if let Some(bar) = &self.bar {
            match &outcome {
                Outcome::Finished(job) if job.status == JobStatus::Succeeded => {
                    bar.finish_with_message(describe(job));
                }
                Outcome::Finished(job) => bar.abandon_with_message(format!(
                    "failed: {}",
                    job.error_text().unwrap_or_else(|| "no reason given".into())
                )),
                Outcome::TimedOut { .. } => bar.abandon_with_message("timed out"),
                Outcome::Error(err) => bar.abandon_with_message(format!("error: {err}")),
            }
        }
        outcome
    }

    async fn follow(&self) -> Outcome {
        let mut last: Option<Job> = None;
        let mut failures: u32 = 0;
        let mut last_error: Option<ClientError> = None;
        loop {
            let call = self.client.job(&self.alias, &self.id);
            let answer = match self.deadline {
                Some(deadline) => match timeout_at(deadline, call).await {
                    Ok(answer) => answer,
                    Err(_) => return Outcome::TimedOut { last, error: last_error },
                },
                None => call.await,
            };
            match answer {
                Ok(job) if job.status.is_terminal() => return Outcome::Finished(job),
                Ok(job) => {
                    if let Some(bar) = &self.bar {
                        bar.set_position(u64::from(job.progress.percent.min(100)));
                        bar.set_message(describe(&job));
                    }
                    failures = 0;
                    last_error = None;
                    last = Some(job);
                }
                Err(err) if err.is_transient() => {
                    if failures == 0 {
                        match &self.bar {
                            Some(bar) => bar.set_message(format!("retrying: {err}")),
                            None => eprintln!("warning: {}: {err}; retrying", self.id),
                        }
                    }
                    failures = failures.saturating_add(1);
                    last_error = Some(err);
                }
                Err(err) => return Outcome::Error(err.to_string()),
            }
            let pause = retry_delay(self.interval, failures);
            let wake = Instant::now() + pause;
            if let Some(deadline) = self.deadline {
                if wake >= deadline {
                    sleep_until(deadline).await;
                    return Outcome::TimedOut { last, error: last_error };
                }
            }
            sleep_until(wake).await;
        }
    }
}

/// The pause before the next poll: the interval, doubled per consecutive transient
/// failure up to [`MAX_RETRY_DELAY`] (never below the interval).
fn retry_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let backoff = interval.saturating_mul(1u32 << failures.min(16));
    backoff.min(MAX_RETRY_DELAY.max(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: &str) -> anyhow::Result<Job> {
        Ok(serde_json::from_value(serde_json::json!({
            "id": "wa1-1", "number": 1, "accountAlias": "OPSQ", "locationAlias": "WA1",
            "kind": "server.powerOn", "status": status,
        }))?)
    }

    #[test]
    fn exit_code_is_0_all_succeeded_1_any_failed_2_any_unfinished() -> anyhow::Result<()> {
        let ok = || job("succeeded").map(Outcome::Finished);
        let failed = || job("failed").map(Outcome::Finished);
        let timed_out = || Outcome::TimedOut { last: None, error: None };
        let code = |outcomes: Vec<Outcome>| format!("{:?}", exit_code(&outcomes));
        assert_eq!(code(vec![ok()?, ok()?]), format!("{:?}", ExitCode::SUCCESS));
        assert_eq!(code(vec![ok()?, failed()?]), format!("{:?}", ExitCode::from(1)));
        assert_eq!(code(vec![failed()?, timed_out()]), format!("{:?}", ExitCode::from(2)));
        let refused = Outcome::Error(ClientError::from_response(404, "{}").to_string());
        assert_eq!(code(vec![ok()?, refused]), format!("{:?}", ExitCode::from(2)));
        Ok(())
    }

    #[test]
    fn retries_back_off_but_stay_bounded() {
        let interval = Duration::from_millis(500);
        assert_eq!(retry_delay(interval, 0), interval);
        assert_eq!(retry_delay(interval, 1), Duration::from_secs(1));
        assert_eq!(retry_delay(interval, 100), MAX_RETRY_DELAY);
        let slow = Duration::from_secs(30);
        assert_eq!(retry_delay(slow, 3), slow);
    }
}
