//! The client commands: `login`, `status`, `submit`, `wait`, `cancel`, `list` and
//! `worker`, run against an opsq server through [`opsq_client`].
//!
//! `login` saves a token (see [`config`]); the other commands reuse it, so scripts
//! never handle passwords after the first step. `OPSQ_TOKEN` stands in for the saved
//! login where none can be kept, e.g. for a worker run by a service manager.

mod cancel;
mod config;
mod exec;
mod list;
mod login;
mod status;
mod submit;
mod wait;
mod worker;

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use opsq_client::Client;

pub use cancel::CancelArgs;
pub use list::ListArgs;
pub use login::LoginArgs;
pub use status::StatusArgs;
pub use submit::SubmitArgs;
pub use wait::WaitArgs;
pub use worker::WorkerArgs;

/// The server used when neither `--server`, `OPSQ_SERVER` nor a saved login names one:
/// where `opsq serve` listens by default.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The client subcommands, flattened into the binary's top-level command enum.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Log in to an opsq server and save the token for the other commands.
    Login(LoginArgs),
    /// Print a job's v2 status (notStarted, executing, resumed, unknown, succeeded, failed).
    Status(StatusArgs),
    /// Queue a job and print its status id.
    Submit(SubmitArgs),
    /// Wait for jobs to finish, with progress bars; exit 0 if all succeeded, 1 if any
    /// failed, 2 on timeout or error.
    Wait(WaitArgs),
    /// Cancel jobs: waiting ones fail at once, running ones are stopped by their worker.
    ///
    /// Prints what happened to each job; exits 1 if any could not be cancelled (it
    /// already ended, its outcome is unknown, or the id is unknown).
    Cancel(CancelArgs),
    /// List jobs newest first, as a table or JSON lines.
    List(ListArgs),
    /// Run jobs of some kinds with a shell command per job (contract: docs/workers.md).
    ///
    /// Stops gracefully on SIGTERM or Ctrl-C: running jobs get --shutdown-grace-secs,
    /// then are stopped and handed back to run again.
    Worker(WorkerArgs),
}

/// Runs one client command; the exit code tells scripts how it went.
pub async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Login(args) => login::run(args).await,
        ClientCommand::Status(args) => status::run(args).await,
        ClientCommand::Submit(args) => submit::run(args).await,
        ClientCommand::Wait(args) => wait::run(args).await,
        ClientCommand::Cancel(args) => cancel::run(args).await,
        ClientCommand::List(args) => list::run(args).await,
        ClientCommand::Worker(args) => worker::run(args).await,
    }
}

/// What an authenticated command needs: a client holding the saved token, and the
/// account alias to act on.
struct Session {
    client: Client,
    alias: String,
}

impl Session {
    /// Builds the session from the saved login, with `--server` and `--alias`
    /// overriding what was saved.
    fn open(server: Option<String>, alias: Option<String>) -> anyhow::Result<Self> {
        let resolved = credentials(server, alias)?;
        let Some(alias) = resolved.alias else {
            anyhow::bail!(
                "no account to act on: pass --alias (the {} token names no account)",
                config::TOKEN_ENV
            );
        };
        let client = Client::new(&resolved.server)?.with_token(resolved.token);
        Ok(Self { client, alias })
    }
}

/// Server, token and default alias: `OPSQ_TOKEN` if set, else the saved login, with
/// `--server`/`--alias` overriding (see [`config::resolve`]).
fn credentials(server: Option<String>, alias: Option<String>) -> anyhow::Result<config::Resolved> {
    let token = std::env::var(config::TOKEN_ENV).ok();
    config::resolve(server, alias, token, || config::load(&config::credentials_path()?))
}

/// The server to log in to: the flag (or `OPSQ_SERVER`), else the last one logged in
/// to, else the local default.
fn login_server(flag: Option<String>) -> anyhow::Result<String> {
    if let Some(server) = flag {
        return Ok(server);
    }
    let saved = config::load(&config::credentials_path()?)?;
    Ok(saved.map(|c| c.server).unwrap_or_else(|| DEFAULT_SERVER.to_string()))
}

/// Checks a status id's shape before asking the server, so a typo gets a precise
/// message instead of a bare 404.
fn check_status_id(raw: &str) -> anyhow::Result<()> {
    opsq_domain::StatusId::parse(raw)?;
    Ok(())
}

/// Prints a value as pretty JSON on stdout, for `--json`.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode the answer as JSON")?;
    print_line(&text)
}

/// Writes one line to stdout. A reader that went away (`opsq status --json | head`)
/// is not an error worth a panic, which is what `println!` would do.
fn print_line(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}
