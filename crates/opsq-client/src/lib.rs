//! An async client for opsq's HTTP API: the CLC v2 login and status calls and opsq's
//! own jobs API, and the worker protocol.
//!
//! It is its own crate so the CLI, external workers and other programs share one
//! place that knows the wire shapes and turns every failure into a [`ClientError`]
//! that keeps the HTTP status and the server's message.
//!
//! Layout:
//! - `client`: [`Client`], one method per API call;
//! - `types`: the JSON bodies, in the server's camelCase;
//! - `error`: [`ClientError`] and the mapping from HTTP answers to it;
//! - [`worker`]: a library for running job handlers against a remote opsq.

mod client;
mod error;
mod types;
pub mod worker;

pub use client::Client;
pub use error::ClientError;
/// Re-exported because [`Job::status`] and [`Client::status`] use it: callers need
/// `is_terminal` and the wire names without depending on `opsq-domain` themselves.
pub use opsq_domain::JobStatus;
pub use types::{
    CancelOutcome, ClaimRequest, ClaimedJob, FailRequest, HeartbeatAck, Job, JobEvent, JobList, JobProgress,
    JobQuery, Link, LoginResponse, ReportRequest, ReportResponse, ReportedAnswer, ReportedOutcome,
    Submission, SubmitRequest,
};

/// The result of every client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
