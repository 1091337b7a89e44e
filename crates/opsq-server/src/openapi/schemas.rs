//! The shapes of the JSON answers, which the handlers build with `json!` (see
//! `render.rs`), written down for the OpenAPI document.
//!
//! Nothing constructs these types: they exist only so the document can name each
//! field the handlers write. The HTTP test `openapi` checks real answers of a running
//! server against them, so a field added to or dropped from an answer fails a test
//! until it is described here too.

use std::borrow::Cow;

use opsq_domain::{JobStatus, Role, ServerOperation};
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Every error of the v2 API, the jobs API and the worker protocol (`error.rs`).
#[derive(ToSchema)]
#[schema(example = json!({"message": "No job with status id \"wa1-99\" exists for account OPSQ"}))]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub message: String,
}

/// A string schema whose values are listed by the domain crate, so the document
/// follows `opsq_domain` rather than a copy of its names.
fn names(values: impl IntoIterator<Item = &'static str>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .description(Some(description))
        .into()
}

/// `opsq_domain::JobStatus` as the v2 API spells it.
pub struct JobStatusName;

impl PartialSchema for JobStatusName {
    fn schema() -> RefOr<Schema> {
        names(
            JobStatus::ALL.map(JobStatus::as_str),
            "A job's status. `resumed` and `unknown` are transient: every job ends \
             `succeeded` or `failed`.",
        )
    }
}

impl ToSchema for JobStatusName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JobStatus")
    }
}

/// `opsq_domain::Role`: the roles a login answer lists.
pub struct RoleName;

impl PartialSchema for RoleName {
    fn schema() -> RefOr<Schema> {
        names(Role::ALL.map(Role::as_str), "A role the user holds.")
    }
}

impl ToSchema for RoleName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Role")
    }
}

/// `opsq_domain::ServerOperation`: the `{operation}` of the batch server operations.
pub struct ServerOperationName;

impl PartialSchema for ServerOperationName {
    fn schema() -> RefOr<Schema> {
        names(
            ServerOperation::ALL.map(ServerOperation::as_str),
            "A CLC batch server operation, matched in any case; each queued server becomes \
             one job of kind `server.<operation>`.",
        )
    }
}

impl ToSchema for ServerOperationName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ServerOperation")
    }
}

/// `GET /healthz`.
#[derive(ToSchema)]
pub struct Liveness {
    pub status: LivenessStatus,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum LivenessStatus {
    Ok,
}

/// `GET /readyz` when the store answers.
#[derive(ToSchema)]
pub struct Readiness {
    pub status: ReadinessStatus,
    /// Which store this node uses: `sqlite:<path>`, or `postgres://user@host:port/db`
    /// (never a password).
    pub store: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ReadinessStatus {
    Ready,
}

/// The body of `POST /v2/authentication/login`. The handler reads the two fields
/// from a JSON object or a form, matching their names in any case.
#[derive(ToSchema)]
#[schema(example = json!({"username": "admin", "password": "..."}))]
pub struct LoginBody {
    #[schema(max_length = 256)]
    pub username: String,
    #[schema(max_length = 1024)]
    pub password: String,
}

/// A successful login.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginAnswer {
    pub user_name: String,
    /// The user's home account.
    pub account_alias: String,
    /// The data center of the user's account.
    pub location_alias: String,
    pub roles: Vec<RoleName>,
    /// An HS256 JWT valid 14 days; send it as `Authorization: Bearer <token>`.
    pub bearer_token: String,
}

/// `GET /v2/operations/{alias}/status/{statusId}`.
#[derive(ToSchema)]
pub struct StatusAnswer {
    pub status: JobStatusName,
}

/// The body of a batch server operation: what real CLC clients send.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ServerIdsBody {
    /// A bare array of server names (what every SDK sends).
    Names(Vec<String>),
    /// An object with `serverIds`; in a form, `serverIds` may repeat.
    Object(ServerIdsObject),
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerIdsObject {
    pub server_ids: ServerIds,
    /// `createSnapshot` only: 1 to 10 days (default 10).
    #[schema(minimum = 1, maximum = 10)]
    pub snapshot_expiration_days: Option<u32>,
}

/// One server name or an array of them (1 to 1000 in all).
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ServerIds {
    One(String),
    Many(Vec<String>),
}

/// One element of a batch server operation's answer, in the order of the request.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ServerOperationResult {
    Queued(QueuedServer),
    NotQueued(NotQueuedServer),
}

/// A server whose operation became a job.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuedServer {
    /// The server name, lower-cased.
    pub server: String,
    /// `true`.
    pub is_queued: bool,
    /// One `status` link to the job.
    pub links: Vec<Link>,
}

/// A server that was not queued (an invalid or repeated name).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotQueuedServer {
    pub server: String,
    /// `false`.
    pub is_queued: bool,
    pub error_message: String,
}

/// A link from a job to where it is read.
#[derive(ToSchema)]
pub struct Link {
    pub rel: LinkRel,
    /// A path on this server, with the account alias lower-cased.
    pub href: String,
    /// The status id, on `status` links only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum LinkRel {
    /// The whole job (`GET .../jobs/{statusId}`).
    #[schema(rename = "self")]
    Itself,
    /// Its status (`GET .../status/{statusId}`).
    Status,
}

/// Where a running job says it is.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    #[schema(minimum = 0, maximum = 100)]
    pub percent: u8,
    pub step_number: u32,
    pub description: String,
}

/// A job as the jobs API and the worker protocol show it (`render::job_json`).
/// Dates are ISO-8601 UTC with milliseconds.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// The status id, `<location>-<number>` in lower case, e.g. `wa1-12`.
    pub id: String,
    /// The job number; also the v1 `RequestID`.
    pub number: i64,
    pub account_alias: String,
    pub location_alias: String,
    pub kind: String,
    pub title: String,
    /// The submitted payload: any JSON.
    pub payload: Value,
    pub status: JobStatusName,
    pub progress: JobProgress,
    #[schema(format = DateTime)]
    pub status_date: String,
    #[schema(format = DateTime)]
    pub created_date: String,
    /// When the first attempt started.
    #[schema(format = DateTime, required = true)]
    pub started_date: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub finished_date: Option<String>,
    /// When the job may next be claimed.
    #[schema(format = DateTime)]
    pub run_after: String,
    /// The current attempt; 0 before the first.
    pub attempt: u32,
    pub max_attempts: u32,
    pub safe_to_repeat: bool,
    /// What a successful run returned: any JSON, `null` until then.
    #[schema(required = true)]
    pub result: Option<Value>,
    /// Why the last attempt failed.
    #[schema(required = true)]
    pub error: Option<String>,
    #[schema(required = true)]
    pub idempotency_key: Option<String>,
    /// The user who submitted it.
    pub submitter: String,
    pub cancel_requested: bool,
    /// `self`, then `status`.
    pub links: Vec<Link>,
    /// Every transition, oldest first: only on `GET .../jobs/{statusId}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub history: Option<Vec<HistoryEvent>>,
}

/// One transition in a job's history.
#[derive(ToSchema)]
pub struct HistoryEvent {
    #[schema(format = DateTime)]
    pub date: String,
    pub status: JobStatusName,
    pub attempt: u32,
    pub message: String,
}

/// A page of `GET /v2/operations/{alias}/jobs`, newest first.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    pub items: Vec<Job>,
    /// Pass back as `before` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_before: Option<i64>,
}

/// The answer to a batch submission: one element per job, in order.
#[derive(ToSchema)]
pub struct BatchAnswer {
    pub jobs: Vec<BatchResult>,
}

#[derive(ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    Accepted(BatchAccepted),
    Refused(BatchRefused),
}

/// A job the batch created, or found by its idempotency key.
#[derive(ToSchema)]
pub struct BatchAccepted {
    pub id: String,
    pub number: i64,
    pub status: JobStatusName,
    /// `false` for an idempotent repeat of an earlier submission.
    pub created: bool,
}

/// An item whose idempotency key was already used for a different request.
#[derive(ToSchema)]
pub struct BatchRefused {
    pub error: String,
}

/// The answer to a claim: the jobs now leased to the worker (none if the wait ran out).
#[derive(ToSchema)]
pub struct ClaimAnswer {
    pub jobs: Vec<ClaimedJob>,
}

/// A claimed job: the job, and the lease that fences this attempt.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedJob {
    #[serde(flatten)]
    pub job: Job,
    /// Sent with every later call about this attempt.
    pub lease_token: String,
    #[schema(format = DateTime)]
    pub lease_expires: String,
    /// Whole seconds left on the lease.
    pub lease_seconds: i64,
}

/// The answer to a report: one answer per outcome, in order, and the jobs claimed.
#[derive(ToSchema)]
pub struct ReportAnswer {
    pub outcomes: Vec<ReportedOutcome>,
    /// Leased as by a claim; none when the report asked for none or none waited.
    pub jobs: Vec<ClaimedJob>,
}

/// How one outcome of a report went.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportedOutcome {
    /// The status id, as sent.
    pub id: String,
    /// Whether the outcome was recorded.
    pub recorded: bool,
    /// The job's new status, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub status: Option<JobStatusName>,
    /// When not recorded: the status `complete` or `fail` would have answered (409:
    /// the lease is lost; 404: no such job in the caller's account subtree).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub http_status: Option<u16>,
    /// When not recorded: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub message: Option<String>,
}

/// The answer to a heartbeat.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAnswer {
    /// Someone cancelled the job: stop and report a failure, or the result if done.
    pub cancel_requested: bool,
    #[schema(format = DateTime)]
    pub lease_expires: String,
    pub lease_seconds: i64,
}
