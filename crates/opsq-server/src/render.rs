//! How jobs look on the wire in opsq's own jobs API.

use chrono::{DateTime, SecondsFormat, Utc};
use opsq_domain::{AccountAlias, Job, JobEvent, Millis};
use serde_json::{json, Value};

/// ISO-8601 UTC with milliseconds, the v2 date style (`2016-01-11T18:39:07.123Z`).
pub fn iso_date(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A JSON object of `fields`, moved in. `json!` takes an expression by reference and
/// serializes it again, a deep copy of every job already rendered into a list.
pub fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(key, value)| (key.to_string(), value)).collect())
}

/// The `status` link the real API returns for a queued job; the alias is lower-cased
/// as in recorded traffic.
pub fn status_link(alias: &AccountAlias, job: &Job) -> Value {
    let id = job.status_id().to_string();
    json!({
        "rel": "status",
        "href": format!("/v2/operations/{}/status/{id}", alias.to_lowercase()),
        "id": id,
    })
}

/// Where the whole job is read (`self` link, `Location` of a submission).
pub fn job_href(alias: &AccountAlias, job: &Job) -> String {
    format!("/v2/operations/{}/jobs/{}", alias.to_lowercase(), job.status_id())
}

pub fn job_json(alias: &AccountAlias, job: &Job, history: Option<&[JobEvent]>) -> Value {
    let id = job.status_id().to_string();
    let mut value = json!({
        "id": id,
        "number": job.number,
        "accountAlias": job.account.as_str(),
        "locationAlias": job.location.as_str(),
        "kind": job.kind.as_str(),
        "title": job.title,
        "payload": job.payload,
        "status": job.status.as_str(),
        "progress": {
            "percent": job.progress.percent,
            "stepNumber": job.progress.step_number,
            "description": job.progress.description,
        },
        "statusDate": iso_date(job.status_at),
        "createdDate": iso_date(job.created_at),
        "startedDate": job.started_at.map(iso_date),
        "finishedDate": job.finished_at.map(iso_date),
        "runAfter": iso_date(job.run_after),
        "attempt": job.attempt,
        "maxAttempts": job.max_attempts,
        "safeToRepeat": job.safe_to_repeat,
        "result": job.result,
        "error": job.error,
        "idempotencyKey": job.idempotency_key,
        "submitter": job.submitter,
        "cancelRequested": job.cancel_requested,
        "links": [
            {"rel": "self", "href": job_href(alias, job)},
            status_link(alias, job),
        ],
    });
    if let Some(events) = history {
        value["history"] = events
            .iter()
            .map(|e| {
                json!({
                    "date": iso_date(e.at),
                    "status": e.status.as_str(),
                    "attempt": e.attempt,
                    "message": e.message,
                })
            })
            .collect();
    }
    value
}
