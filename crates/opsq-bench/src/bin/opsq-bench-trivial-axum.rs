//! The baseline of the status-read benchmark: an axum handler that does no work,
//! answering `GET /v2/operations/{alias}/status/{id}` with `{"status":"succeeded"}`.
//! It runs on the same tokio multi-thread runtime `opsq` builds, so the ratio of the
//! two isolates what opsq's own status path costs (auth, lookup, JSON).
//!
//! Usage: opsq-bench-trivial-axum [--listen 127.0.0.1:0]; prints
//! `trivial-axum: listening on http://ADDR` once it accepts connections.

use std::process::ExitCode;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use opsq_bench::flag;
use serde_json::{json, Value};

async fn status(Path((_alias, _id)): Path<(String, String)>) -> Json<Value> {
    Json(json!({ "status": "succeeded" }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let listen = flag(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trivial-axum: could not start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result: std::io::Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        println!("trivial-axum: listening on http://{}", listener.local_addr()?);
        let app = Router::new().route("/v2/operations/{alias}/status/{status_id}", get(status));
        axum::serve(listener, app).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("trivial-axum: {err}");
            ExitCode::FAILURE
        }
    }
}
