//! `opsq openapi`: prints the OpenAPI document of the HTTP API, the same one a server
//! serves at `/openapi.json`, without needing a server. `docs/openapi.json` is this
//! output (`opsq openapi > docs/openapi.json`), and a test keeps it so.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

pub fn run() -> anyhow::Result<ExitCode> {
    let text = opsq_server::openapi::pretty_json().context("serializing the OpenAPI document")?;
    std::io::stdout().lock().write_all(text.as_bytes()).context("writing the OpenAPI document")?;
    Ok(ExitCode::SUCCESS)
}
