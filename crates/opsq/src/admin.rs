//! `opsq admin`: accounts, users and API keys, written straight to the store so it
//! works before the first server start and while a server runs.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use opsq_domain::{AccountAlias, JobKind, Location, Roles, StatusId};
use opsq_store::{Account, ApiKey, KindSettings, NewUser, Resolution, StoreError};
use rand::distributions::{Alphanumeric, DistString};

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The same store as the server's.
    #[command(flatten)]
    store: crate::store_args::StoreArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Accounts (aliases of 2 to 10 letters or digits, in a tree).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Users who log in to the v2 API.
    #[command(subcommand)]
    User(UserCommand),
    /// Keys for the v1 API's Auth/Logon.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Operator actions on jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Per-kind settings: lease, attempts, whether repeating is safe.
    #[command(subcommand)]
    Kind(KindCommand),
}

#[derive(Subcommand, Debug)]
enum JobCommand {
    /// Settle a job whose outcome is `unknown` (its worker was lost while running a
    /// kind that is not safe to repeat): say whether its effect happened.
    #[command(group(clap::ArgGroup::new("verdict").required(true).args(["succeeded", "failed", "retry"])))]
    Resolve {
        /// Status id (wa1-123) or job number.
        id: String,
        /// The effect happened: the job succeeded.
        #[arg(long)]
        succeeded: bool,
        /// The job failed for good.
        #[arg(long)]
        failed: bool,
        /// The effect did not happen: run the job again.
        #[arg(long)]
        retry: bool,
        /// Why, recorded in the job's history (and as its error with --failed).
        #[arg(long)]
        reason: Option<String>,
        /// The job's result with --succeeded, as JSON.
        #[arg(long)]
        result: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum KindCommand {
    /// Set a kind's defaults; options not given are cleared.
    Set {
        kind: String,
        /// Lease of a running attempt, renewed by heartbeats.
        #[arg(long)]
        lease_secs: Option<u64>,
        /// Attempts for jobs that don't say (1-100).
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Whether running a job of this kind twice is harmless (decides resumed vs unknown).
        #[arg(long)]
        safe_to_repeat: Option<bool>,
    },
    /// Show a kind's settings.
    Show { kind: String },
}

#[derive(Subcommand, Debug)]
enum AccountCommand {
    /// Create an account, optionally below a parent.
    Add {
        alias: String,
        /// Data-center code, e.g. WA1.
        #[arg(long)]
        location: String,
        #[arg(long)]
        parent: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        username: String,
        #[arg(long)]
        account: String,
        /// AccountViewer, ServerOperator, ServerAdmin, AccountAdmin or Worker; repeatable [default: ServerAdmin].
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Read the password from standard input (required, so it never shows in `ps`).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ApiKeyCommand {
    /// Create a v1 API key and password for an account; the password is shown once.
    Add {
        #[arg(long)]
        account: String,
        /// Print {"apiKey": ..., "password": ...}.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let store = args.store.open().await?;
    match args.command {
        AdminCommand::Account(AccountCommand::Add { alias, location, parent }) => {
            let account = Account {
                alias: AccountAlias::parse(&alias)?,
                location: Location::parse(&location)?,
                parent: parent.as_deref().map(AccountAlias::parse).transpose()?,
                created_at: opsq_store::now_ms(),
            };
            store.create_account(account.clone()).await.map_err(explain)?;
            println!("created account {} ({})", account.alias, account.location);
        }
        AdminCommand::User(UserCommand::Add { username, account, roles, password_stdin }) => {
            if !password_stdin {
                bail!("pass --password-stdin and write the password to standard input");
            }
            validate_username(&username)?;
            let roles = if roles.is_empty() {
                Roles::parse_list(["ServerAdmin"])?
            } else {
                Roles::parse_list(roles.iter().map(String::as_str))?
            };
            let password = read_password()?;
            let hash =
                tokio::task::spawn_blocking(move || opsq_server::auth::hash_password(&password)).await??;
            let account = AccountAlias::parse(&account)?;
            store
                .create_user(NewUser {
                    username: username.clone(),
                    account: account.clone(),
                    password_hash: hash,
                    roles: roles.clone(),
                })
                .await
                .map_err(explain)?;
            println!("created user {username} in account {account} with roles {}", roles.names().join(", "));
        }
        AdminCommand::ApiKey(ApiKeyCommand::Add { account, json }) => {
            let account = AccountAlias::parse(&account)?;
            let key = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32);
            let password = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 24);
            let hash = {
                let password = password.clone();
                tokio::task::spawn_blocking(move || opsq_server::auth::hash_password(&password)).await??
            };
            store
                .create_api_key(ApiKey { key: key.clone(), account: account.clone(), password_hash: hash })
                .await
                .map_err(explain)?;
            if json {
                println!("{}", serde_json::json!({ "apiKey": key, "password": password }));
            } else {
                println!("created v1 API key for account {account}");
                println!("api key:  {key}");
                println!("password: {password}  (shown once)");
            }
        }
        AdminCommand::Job(JobCommand::Resolve { id, succeeded, failed, retry, reason, result }) => {
            let number = job_number(&id)?;
            let note = reason.clone().unwrap_or_else(|| "resolved by an operator".into());
            let resolution = if succeeded {
                let result = match result {
                    Some(text) => serde_json::from_str(&text).context("--result must be JSON")?,
                    None => serde_json::Value::Null,
                };
                Resolution::Succeeded(result)
            } else if failed {
                Resolution::Failed(reason.unwrap_or_else(|| "resolved as failed by an operator".into()))
            } else {
                debug_assert!(retry);
                Resolution::Retry
            };
            let job = store.resolve(number, resolution, &note).await.map_err(explain)?;
            println!("job {} is now {}", job.status_id(), job.status);
        }
        AdminCommand::Kind(KindCommand::Set { kind, lease_secs, max_attempts, safe_to_repeat }) => {
            let kind = JobKind::parse(&kind)?;
            if max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
                bail!("--max-attempts must be from 1 to 100");
            }
            if lease_secs.is_some_and(|s| !(1..=86_400).contains(&s)) {
                bail!("--lease-secs must be from 1 to 86400");
            }
            let settings = KindSettings {
                kind: kind.to_string(),
                lease_ms: lease_secs.map(|s| s as i64 * 1000),
                max_attempts,
                safe_to_repeat,
            };
            store.set_kind(settings.clone()).await.map_err(explain)?;
            println!("{}", describe_kind(&settings));
        }
        AdminCommand::Kind(KindCommand::Show { kind }) => {
            let kind = JobKind::parse(&kind)?;
            match store.kind(kind.as_str()).await.map_err(explain)? {
                Some(settings) => println!("{}", describe_kind(&settings)),
                None => println!("kind {kind} has no settings: defaults apply (lease from the server, 3 attempts, safe to repeat)"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_kind(settings: &KindSettings) -> String {
    let or_default = |value: Option<String>| value.unwrap_or_else(|| "default".into());
    format!(
        "kind {}: lease {}, max attempts {}, safe to repeat {}",
        settings.kind,
        or_default(settings.lease_ms.map(|ms| format!("{} s", ms / 1000))),
        or_default(settings.max_attempts.map(|n| n.to_string())),
        or_default(settings.safe_to_repeat.map(|b| b.to_string())),
    )
}

/// A job number from `wa1-123` or `123`.
fn job_number(id: &str) -> anyhow::Result<i64> {
    if let Ok(number) = id.parse::<i64>() {
        if number > 0 {
            return Ok(number);
        }
    }
    Ok(StatusId::parse(id)?.number)
}

fn validate_username(username: &str) -> anyhow::Result<()> {
    let ok = (1..=256).contains(&username.len())
        && username.chars().all(|c| !c.is_control() && !c.is_whitespace());
    if !ok {
        bail!("username {username:?} is invalid: use 1 to 256 characters without spaces");
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let mut input = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut input)
        .context("reading the password from standard input")?;
    let password = input.trim_end_matches(['\r', '\n']).to_string();
    if password.chars().count() < 8 {
        bail!("the password must have at least 8 characters");
    }
    Ok(password)
}

/// Store errors in words an operator acts on.
fn explain(err: StoreError) -> anyhow::Error {
    match err {
        StoreError::Duplicate(what) => anyhow::anyhow!("{what} already exists"),
        StoreError::NotFound(what) if what.starts_with("job") => anyhow::anyhow!("{what} does not exist"),
        StoreError::NotFound(what) => anyhow::anyhow!("{what} does not exist; create it first"),
        StoreError::Invalid(message) => anyhow::anyhow!("{message}"),
        other => anyhow::Error::new(other),
    }
}
