//! `opsq`: one binary for the server, its administration, and its clients.

mod admin;
mod client;
mod openapi;
mod serve;
mod store_args;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc malloc: glibc's malloc and free were about 15% of the
/// server's CPU per status read (perf, W3 on PostgreSQL), and mimalloc cut the CPU
/// per read by a fifth on PostgreSQL and a tenth on SQLite (bench/RESULTS.md, step 14).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "opsq",
    version,
    about = "opsq: the operations queue behind a cloud API's long-running requests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (HTTP API and in-process runner).
    Serve(serve::ServeArgs),
    /// Manage accounts, users and API keys directly in the store (works while a server runs).
    Admin(admin::AdminArgs),
    /// Print the OpenAPI document of the HTTP API as JSON (what `GET /openapi.json` serves).
    Openapi,
    #[command(flatten)]
    Client(client::ClientCommand),
}

/// Where the embedded store lives unless `--data-dir`/`OPSQ_DATA_DIR` says otherwise.
pub fn default_data_dir() -> PathBuf {
    dirs::data_local_dir().map(|d| d.join("opsq")).unwrap_or_else(|| PathBuf::from("opsq-data"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Openapi => openapi::run(),
            Command::Client(command) => client::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
