//! `opsq status`: one job's v2 status, or the whole job as JSON.

use std::process::ExitCode;

use anyhow::Context;

use super::Session;

/// Arguments of `opsq status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The status id, such as wa1-12.
    id: String,
    /// The account the job belongs to (default: the account logged in to).
    #[arg(long)]
    alias: Option<String>,
    /// Print the whole job (progress, history, result) as JSON instead of the status word.
    #[arg(long)]
    json: bool,
    /// The opsq server (default: the one logged in to).
    #[arg(long, env = "OPSQ_SERVER")]
    server: Option<String>,
}

/// Prints the status word, or with `--json` the job from the jobs API.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    super::check_status_id(&args.id)?;
    let session = Session::open(args.server, args.alias)?;
    let what = || format!("cannot get the status of {} in account {}", args.id, session.alias);
    if args.json {
        let job = session.client.job(&session.alias, &args.id).await.with_context(what)?;
        super::print_json(&job)?;
    } else {
        let status = session.client.status(&session.alias, &args.id).await.with_context(what)?;
        super::print_line(status.as_str())?;
    }
    Ok(ExitCode::SUCCESS)
}
