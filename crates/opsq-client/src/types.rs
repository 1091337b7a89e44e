//! The JSON bodies of the API, field for field, in the server's camelCase.
//!
//! Dates stay strings (ISO-8601 UTC as the server sends them): the client only shows
//! them, so parsing would add a dependency and a way to fail for nothing.

use std::fmt;

use opsq_domain::JobStatus;
use serde::{Deserialize, Serialize};

/// The answer to `POST /v2/authentication/login`: who the token belongs to, and the
/// token every other call sends as `Authorization: Bearer`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// The user name as the server spells it.
    pub user_name: String,
    /// The user's home account, the default alias for later calls.
    pub account_alias: String,
    /// The home account's location, e.g. `WA1`.
    pub location_alias: String,
    /// Roles such as `AccountAdmin`; they decide what the token may do.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The secret: never print or log it.
    pub bearer_token: String,
}

/// Hand-written so the token never lands in a log or a panic message.
impl fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginResponse")
            .field("user_name", &self.user_name)
            .field("account_alias", &self.account_alias)
            .field("location_alias", &self.location_alias)
            .field("roles", &self.roles)
            .field("bearer_token", &"<redacted>")
            .finish()
    }
}

/// A job as the jobs API shows it (`GET /v2/operations/{alias}/jobs/{id}`).
///
/// Fields the server may leave out are defaulted, so an older or newer server with a
/// slightly different shape still decodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// The v2 status id, e.g. `wa1-12`: what `status` and `wait` take.
    pub id: String,
    /// The job number, unique per deployment.
    pub number: i64,
    /// The account the job belongs to.
    pub account_alias: String,
    /// The data center it runs for.
    pub location_alias: String,
    /// The dotted kind that picks the handler, e.g. `server.powerOn`.
    pub kind: String,
    /// Human text, e.g. "Power On server WA1DEMOWEB01".
    #[serde(default)]
    pub title: String,
    /// The handler's input.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// One of the six v2 statuses; only `succeeded` and `failed` are final.
    pub status: JobStatus,
    /// How far the current attempt got.
    #[serde(default)]
    pub progress: JobProgress,
    /// When the status last changed.
    #[serde(default)]
    pub status_date: String,
    /// When the job was accepted.
    #[serde(default)]
    pub created_date: String,
    /// When a worker first started it.
    #[serde(default)]
    pub started_date: Option<String>,
    /// When it reached `succeeded` or `failed`.
    #[serde(default)]
    pub finished_date: Option<String>,
    /// When a waiting job may next be claimed (later than now while a retry backs off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_after: Option<String>,
    /// Attempts so far.
    #[serde(default)]
    pub attempt: u32,
    /// The attempt limit.
    #[serde(default)]
    pub max_attempts: u32,
    /// Whether running it twice is harmless.
    #[serde(default)]
    pub safe_to_repeat: bool,
    /// The handler's output once succeeded.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    /// Why it failed. Kept as JSON because servers may send text or an object.
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    /// The key it was submitted with, if any.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The user who submitted it.
    #[serde(default)]
    pub submitter: String,
    /// Whether a cancel was asked for and the handler has not acted on it yet.
    #[serde(default)]
    pub cancel_requested: bool,
    /// Every transition, oldest first.
    #[serde(default)]
    pub history: Vec<JobEvent>,
    /// Where to read it (`self`) and its v2 status (`status`).
    #[serde(default)]
    pub links: Vec<Link>,
    /// Fields this client does not know yet, kept so `--json` output and
    /// re-serialisation show everything the server sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Job {
    /// The failure text for display: the `error` string itself, or its JSON.
    pub fn error_text(&self) -> Option<String> {
        match &self.error {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
        }
    }
}

/// Where a running job says it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobProgress {
    /// 0 to 100.
    pub percent: u8,
    /// The handler's step counter.
    pub step_number: u32,
    /// The current step in words, e.g. "Booting".
    pub description: String,
}

/// One transition in a job's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEvent {
    /// When it happened.
    pub date: String,
    /// The status entered.
    pub status: JobStatus,
    /// The attempt it belongs to.
    #[serde(default)]
    pub attempt: u32,
    /// Why, e.g. "accepted".
    #[serde(default)]
    pub message: String,
}

/// An entry of the CLC links framework.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    /// What the link is to the object, e.g. `self` or `status`.
    pub rel: String,
    /// A path on the same server.
    pub href: String,
    /// The status id, on `status` links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The body of `POST /v2/operations/{alias}/jobs`. Unset fields are left out so the
/// server's defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitRequest {
    /// The dotted kind, e.g. `server.powerOn`.
    pub kind: String,
    /// Human text shown in lists and the dashboard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The handler's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// The attempt limit; the server picks one when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Whether running it twice is harmless; decides `resumed` versus `unknown` when a
    /// worker is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_to_repeat: Option<bool>,
}

/// What a submit returned: the job, and whether it already existed.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The job, new or earlier.
    pub job: Job,
    /// True when the idempotency key had been used with the same body, so the server
    /// returned the job that first submission created (HTTP 200 instead of 202).
    pub replayed: bool,
}

/// The body of `POST /v2/workers/claim`: which kinds this worker runs and how many
/// jobs it can take now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRequest {
    /// Kinds or globs (`server.*`, `backup.run`); at most 50.
    pub kinds: Vec<String>,
    /// At most this many jobs (1-100); the server's default is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// How long the server may hold the call open waiting for a job (at most 30 s),
    /// so an idle worker does not poll in a tight loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
    /// A name for logs and job history, e.g. `host-1/pid-42`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
}

/// A job handed to a worker by a claim, with the lease that fences the attempt.
///
/// Every later call for this attempt (heartbeat, complete, fail) sends
/// [`lease_token`](Self::lease_token); once the lease is lost the server answers 409
/// and the attempt's outcome no longer counts.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedJob {
    /// The job as the jobs API shows it; `attempt` is already this attempt's number.
    #[serde(flatten)]
    pub job: Job,
    /// The attempt's fencing token; secret in the sense that whoever holds it can
    /// decide the job's outcome.
    pub lease_token: String,
    /// When the lease runs out unless renewed by a heartbeat (ISO-8601 UTC).
    #[serde(default)]
    pub lease_expires: String,
    /// The lease length in seconds, counted from the claim: heartbeat well within it.
    #[serde(default)]
    pub lease_seconds: u64,
}

/// Hand-written so the lease token never lands in a log.
impl fmt::Debug for ClaimedJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimedJob")
            .field("job", &self.job)
            .field("lease_token", &"<redacted>")
            .field("lease_expires", &self.lease_expires)
            .field("lease_seconds", &self.lease_seconds)
            .finish()
    }
}

/// The answer to a heartbeat: whether someone asked to cancel the job, and how long
/// the renewed lease lasts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAck {
    /// A cancel was requested: the worker should stop the job and report a failure
    /// (which ends it `failed` as cancelled) or its real outcome if it already has one.
    #[serde(default)]
    pub cancel_requested: bool,
    /// When the renewed lease runs out (ISO-8601 UTC).
    #[serde(default)]
    pub lease_expires: String,
    /// The renewed lease in seconds from now.
    #[serde(default)]
    pub lease_seconds: u64,
}

/// How an attempt failed, for `POST /v2/workers/jobs/{id}/fail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailRequest {
    /// Why, in words; shown to whoever reads the job.
    pub error: String,
    /// Whether another attempt may succeed: the job is then `resumed` and retried
    /// with backoff until its attempts run out; otherwise it ends `failed`.
    pub retryable: bool,
    /// Overrides the server's exponential backoff before the next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

/// One attempt's end in a [`ReportRequest`]: a success with its result, a failure, or
/// a job handed back unstarted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedOutcome {
    /// The job's status id, as claimed.
    pub id: String,
    /// The attempt's lease token, as claimed.
    pub lease_token: String,
    /// The result of a success (`null` when it has none); absent for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// How the attempt failed; `None` for a success.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailRequest>,
    /// The job was never started: it is handed back, to run again at once without
    /// using an attempt (see [`crate::Client::release`]). Then nothing else is set.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

impl ReportedOutcome {
    /// A success with `result`.
    pub fn succeeded(id: &str, lease_token: &str, result: serde_json::Value) -> Self {
        Self {
            id: id.to_string(),
            lease_token: lease_token.to_string(),
            result: Some(result),
            failure: None,
            released: false,
        }
    }

    /// A failure.
    pub fn failed(id: &str, lease_token: &str, failure: FailRequest) -> Self {
        Self {
            id: id.to_string(),
            lease_token: lease_token.to_string(),
            result: None,
            failure: Some(failure),
            released: false,
        }
    }

    /// A job claimed and never started, handed back.
    pub fn released(id: &str, lease_token: &str) -> Self {
        Self {
            id: id.to_string(),
            lease_token: lease_token.to_string(),
            result: None,
            failure: None,
            released: true,
        }
    }
}

/// `POST /v2/workers/report`: outcomes, many to a call, and optionally a claim for the
/// slots they freed (answered without waiting).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRequest {
    /// At most 100.
    pub outcomes: Vec<ReportedOutcome>,
    /// The jobs wanted next; its `wait_seconds` must be `None` (a report never waits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimRequest>,
}

/// How one outcome of a report went.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedAnswer {
    /// The job's status id, as sent.
    pub id: String,
    /// Whether the outcome was recorded; when not, `http_status` and `message` say
    /// why, as `complete` or `fail` would have answered (409: the lease is lost).
    pub recorded: bool,
    /// The job's status after a recorded outcome (`succeeded`, `resumed`, `failed`).
    #[serde(default)]
    pub status: Option<String>,
    /// The HTTP status the outcome would have got on its own.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// Why the outcome was not recorded.
    #[serde(default)]
    pub message: Option<String>,
}

/// The answer to a [`ReportRequest`]: one answer per outcome, in order, and the jobs
/// claimed (leased as by a claim).
#[derive(Debug, Clone, Deserialize)]
pub struct ReportResponse {
    pub outcomes: Vec<ReportedAnswer>,
    pub jobs: Vec<ClaimedJob>,
}

/// What a cancel did. A cancel that could not be done (the job already ended, or its
/// outcome is unknown) is a [`ClientError::Api`](crate::ClientError::Api) with status 409.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CancelOutcome {
    /// The job was waiting and is now `failed` (HTTP 200).
    Cancelled(Job),
    /// The job is running: its worker is told at its next heartbeat, and the job ends
    /// `failed` when the worker stops it, or keeps its real outcome if it finishes
    /// first (HTTP 202).
    Requested(Job),
}

impl CancelOutcome {
    /// The job as the server showed it after the cancel.
    pub fn job(&self) -> &Job {
        match self {
            CancelOutcome::Cancelled(job) | CancelOutcome::Requested(job) => job,
        }
    }
}

/// Filters for `GET /v2/operations/{alias}/jobs`; unset fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs in one of these statuses (all when empty).
    pub statuses: Vec<JobStatus>,
    /// Only kinds matching this glob, e.g. `server.*`.
    pub kind: Option<String>,
    /// At most this many jobs (1-1000; the server's default is 100).
    pub limit: Option<u32>,
    /// Only jobs older than this job number: the previous page's
    /// [`JobList::next_before`].
    pub before: Option<i64>,
}

/// One page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    /// The jobs of this page.
    pub items: Vec<Job>,
    /// Pass as [`JobQuery::before`] for the next page; `None` on the last page.
    #[serde(default)]
    pub next_before: Option<i64>,
}

/// The body of `POST /v2/workers/claim`'s answer.
#[derive(Debug, Deserialize)]
pub(crate) struct ClaimResponse {
    pub(crate) jobs: Vec<ClaimedJob>,
}

/// The body of a heartbeat.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeartbeatRequest<'a> {
    pub(crate) lease_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) progress: Option<&'a JobProgress>,
}

/// The body of a complete.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CompleteRequest<'a> {
    pub(crate) lease_token: &'a str,
    pub(crate) result: &'a serde_json::Value,
}

/// The body of a fail: the lease token plus the [`FailRequest`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailBody<'a> {
    pub(crate) lease_token: &'a str,
    #[serde(flatten)]
    pub(crate) failure: &'a FailRequest,
}

/// The body of a release.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReleaseBody<'a> {
    pub(crate) lease_token: &'a str,
}

/// The body of a cancel.
#[derive(Serialize)]
pub(crate) struct CancelRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<&'a str>,
}

/// The body of `GET /v2/operations/{alias}/status/{id}`.
#[derive(Debug, Deserialize)]
pub(crate) struct StatusResponse {
    pub(crate) status: JobStatus,
}

/// The body of `POST /v2/authentication/login`. Not `Debug`, so the password cannot
/// be printed by accident.
#[derive(Serialize)]
pub(crate) struct LoginRequest<'a> {
    pub(crate) username: &'a str,
    pub(crate) password: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"{"id":"wa1-12","number":12,"accountAlias":"OPSQ","locationAlias":"WA1","kind":"server.powerOn","title":"t","payload":{},
 "status":"executing","progress":{"percent":40,"stepNumber":2,"description":"Booting"},
 "statusDate":"2026-11-22T23:50:01.123Z","createdDate":"2026-11-22T23:50:00.000Z","startedDate":null,"finishedDate":null,
 "attempt":1,"maxAttempts":3,"safeToRepeat":true,"result":null,"error":null,"idempotencyKey":null,"submitter":"admin","cancelRequested":false,
 "history":[{"date":"2026-11-22T23:50:00.000Z","status":"notStarted","attempt":0,"message":"accepted"}],
 "links":[{"rel":"self","href":"/v2/operations/opsq/jobs/wa1-12"},{"rel":"status","href":"/v2/operations/opsq/status/wa1-12","id":"wa1-12"}]}"#;

    #[test]
    fn decodes_the_documented_job() {
        let job: Job = serde_json::from_str(JOB).expect("documented shape decodes");
        assert_eq!(job.id, "wa1-12");
        assert_eq!(job.status, JobStatus::Executing);
        assert_eq!(job.progress.percent, 40);
        assert_eq!(job.progress.step_number, 2);
        assert_eq!(job.history[0].status, JobStatus::NotStarted);
        assert_eq!(job.links[1].id.as_deref(), Some("wa1-12"));
        assert_eq!(job.error_text(), None);
        let again = serde_json::to_value(&job).expect("serializes");
        assert_eq!(again["progress"]["stepNumber"], 2);
        assert_eq!(again["accountAlias"], "OPSQ");
        assert!(job.extra.is_empty(), "{:?}", job.extra);
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let mut value: serde_json::Value = serde_json::from_str(JOB).expect("valid JSON");
        value["futureField"] = serde_json::json!({"x": 1});
        value["runAfter"] = serde_json::json!("2026-11-22T23:50:00.000Z");
        let job: Job = serde_json::from_value(value.clone()).expect("decodes");
        assert_eq!(job.run_after.as_deref(), Some("2026-11-22T23:50:00.000Z"));
        assert_eq!(serde_json::to_value(&job).expect("serializes"), value);
    }

    #[test]
    fn submit_request_leaves_unset_fields_out() {
        let body = SubmitRequest { kind: "server.powerOn".into(), ..Default::default() };
        assert_eq!(serde_json::to_string(&body).ok().as_deref(), Some(r#"{"kind":"server.powerOn"}"#));
        let body = SubmitRequest { max_attempts: Some(2), safe_to_repeat: Some(false), ..body };
        let value = serde_json::to_value(&body).expect("serializes");
        assert_eq!(value["maxAttempts"], 2);
        assert_eq!(value["safeToRepeat"], false);
    }

    #[test]
    fn claimed_jobs_split_the_lease_from_the_job() {
        let mut value: serde_json::Value = serde_json::from_str(JOB).expect("valid JSON");
        value["leaseToken"] = serde_json::json!("lease-secret");
        value["leaseExpires"] = serde_json::json!("2026-11-22T23:50:31.000Z");
        value["leaseSeconds"] = serde_json::json!(30);
        let claimed: ClaimedJob = serde_json::from_value(value.clone()).expect("decodes");
        assert_eq!(claimed.lease_token, "lease-secret");
        assert_eq!(claimed.lease_seconds, 30);
        assert_eq!(claimed.job.id, "wa1-12");
        assert!(
            claimed.job.extra.is_empty(),
            "lease fields must not leak into extra: {:?}",
            claimed.job.extra
        );
        assert!(!format!("{claimed:?}").contains("lease-secret"));
        assert_eq!(serde_json::to_value(&claimed).expect("serializes"), value);
    }

    #[test]
    fn worker_bodies_use_the_wire_names() {
        let claim = ClaimRequest {
            kinds: vec!["server.*".into()],
            limit: Some(4),
            wait_seconds: Some(25),
            worker_id: Some("h/1".into()),
        };
        assert_eq!(
            serde_json::to_value(&claim).expect("serializes"),
            serde_json::json!({"kinds": ["server.*"], "limit": 4, "waitSeconds": 25, "workerId": "h/1"})
        );
        let progress = JobProgress { percent: 40, step_number: 2, description: "Copying".into() };
        let beat = HeartbeatRequest { lease_token: "t", progress: Some(&progress) };
        assert_eq!(
            serde_json::to_value(&beat).expect("serializes"),
            serde_json::json!({"leaseToken": "t", "progress": {"percent": 40, "stepNumber": 2, "description": "Copying"}})
        );
        let failure = FailRequest { error: "boom".into(), retryable: false, retry_after_seconds: None };
        let fail = FailBody { lease_token: "t", failure: &failure };
        assert_eq!(
            serde_json::to_value(&fail).expect("serializes"),
            serde_json::json!({"leaseToken": "t", "error": "boom", "retryable": false})
        );
        let list: JobList = serde_json::from_str(r#"{"items": [], "nextBefore": null}"#).expect("decodes");
        assert_eq!(list.next_before, None);
    }

    #[test]
    fn login_response_debug_hides_the_token() {
        let login: LoginResponse = serde_json::from_str(
            r#"{"userName":"admin","accountAlias":"OPSQ","locationAlias":"WA1","roles":["AccountAdmin"],"bearerToken":"secret-token"}"#,
        )
        .expect("decodes");
        assert_eq!(login.bearer_token, "secret-token");
        assert!(!format!("{login:?}").contains("secret-token"));
    }
}
