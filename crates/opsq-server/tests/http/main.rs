//! HTTP tests against the real server on a free port, one module per surface.

mod bad_input;
mod dashboard;
mod execution;
mod harness;
mod jobs;
mod login;
mod metrics;
mod openapi;
#[path = "../../../../tests/support/pg_scratch.rs"]
mod pg;
mod schema_check;
mod servers;
mod status;
mod v1;
mod worker_dispatch;
mod worker_release;
mod worker_report;
