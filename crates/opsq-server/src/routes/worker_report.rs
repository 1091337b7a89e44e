//! `POST /v2/workers/report`: a worker's outcomes, many to a call, and the jobs for the
//! slots they freed in the same answer.
//!
//! With one call per outcome and a separate claim, a worker running short jobs spends
//! most of the server's time on HTTP requests, not on the jobs (a 30,000-job drain by
//! two external worker processes cost the server about 125 µs of CPU per job, against
//! about 33 µs for the in-process runner; bench/RESULTS.md, step 31). A report carries
//! every outcome a worker has ready and asks for as many jobs as those outcomes freed
//! slots: the successes and those claims share one transaction (on PostgreSQL, one
//! statement).
//!
//! Each outcome is checked and recorded as `complete`, `fail` or `release` would record it, and
//! answered on its own: one lost lease is that outcome's 409, not the call's.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use futures::future::join_all;
use opsq_domain::JobStatus;
use opsq_store::{Claim, ClaimRequest, JobOutcome, NextJob};
use serde::Deserialize;
use serde_json::{json, Value};

use super::status::find_visible_owner;
use super::workers::{claim_request, claimed_json, failure, require_worker, ClaimBody};
use crate::auth::Caller;
use crate::body::RawBody;
use crate::error::{ApiError, ApiResult};
use crate::render::object;
use crate::state::AppState;

/// The most outcomes one report may carry (as many as one claim may ask for).
const MAX_OUTCOMES: usize = 100;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReportBody {
    /// 0 to 100 outcomes.
    #[serde(default)]
    #[schema(max_items = 100)]
    outcomes: Vec<OutcomeBody>,
    /// The jobs wanted next; never waits (a worker with nothing to run long-polls
    /// `/v2/workers/claim`).
    claim: Option<ClaimBody>,
}

/// One attempt's end: a failure when `error` is given, a hand-back when `released`,
/// else a success with `result`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutcomeBody {
    /// The job's status id, as claimed.
    id: String,
    lease_token: String,
    /// A success's result: any JSON (default `null`). Not with `error`.
    #[serde(default)]
    result: Option<Value>,
    /// A failure: why; at most 4000 characters are kept.
    error: Option<String>,
    /// A failure: whether another attempt may succeed (default true).
    retryable: Option<bool>,
    /// A failure: overrides the exponential backoff before the next attempt.
    retry_after_seconds: Option<u64>,
    /// `true`: the job was never started, and is handed back as `release` would (it
    /// runs again at once, the attempt not counted). Nothing else with it.
    #[serde(default)]
    released: bool,
}

/// What one outcome of a report asks the store to record.
enum Reported {
    Outcome(JobOutcome),
    Released,
}

impl OutcomeBody {
    fn reported(&self) -> ApiResult<Reported> {
        if !self.released {
            return self.outcome().map(Reported::Outcome);
        }
        let given = [
            self.result.is_some(),
            self.error.is_some(),
            self.retryable.is_some(),
            self.retry_after_seconds.is_some(),
        ];
        if given.contains(&true) {
            return Err(ApiError::BadRequest(format!(
                "outcome for {:?} is released and also gives result, error, retryable or retryAfterSeconds: \
                 a job handed back unstarted has no outcome",
                self.shown_id()
            )));
        }
        Ok(Reported::Released)
    }

    fn outcome(&self) -> ApiResult<JobOutcome> {
        match &self.error {
            Some(_) if self.result.is_some() => Err(ApiError::BadRequest(format!(
                "outcome for {:?} gives both result and error: a success has a result, a failure an error",
                self.shown_id()
            ))),
            Some(error) => Ok(failure(error, self.retryable, self.retry_after_seconds)),
            None if self.retryable.is_some() || self.retry_after_seconds.is_some() => {
                Err(ApiError::BadRequest(format!(
                    "outcome for {:?} gives retryable or retryAfterSeconds without an error",
                    self.shown_id()
                )))
            }
            None => Ok(JobOutcome::Succeeded(self.result.clone().unwrap_or(Value::Null))),
        }
    }

    fn shown_id(&self) -> String {
        self.id.chars().take(40).collect()
    }
}

/// What recording one outcome gave: the job's new status and what came of the job
/// its success asked for.
type Recorded = ApiResult<(JobStatus, NextJob)>;

#[utoipa::path(
    post,
    path = "/v2/workers/report",
    tag = "workers",
    operation_id = "reportOutcomes",
    summary = "Report many attempts' outcomes, and claim jobs for the slots they free",
    description = "Each outcome is checked and recorded as `complete`, `fail` or `release` would, and answered on \
        its own: one that cannot be recorded (a lost lease: 409) does not fail the call. The claim never \
        waits (`waitSeconds` is refused); long-poll `/v2/workers/claim` when there is nothing to report.",
    request_body = ReportBody,
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "Each outcome's answer, in order, and the jobs claimed.",
            body = crate::openapi::schemas::ReportAnswer),
        (status = 400, description = "An invalid body: a malformed outcome (both `result` and `error`, \
            `retryable` without `error`, `released` with anything else), more than 100 outcomes, or an invalid or waiting claim. \
            Nothing was recorded.", body = crate::openapi::schemas::ErrorBody),
        (status = 401, response = crate::openapi::responses::Unauthorized),
        (status = 403, response = crate::openapi::responses::NotAWorker),
        (status = 413, response = crate::openapi::responses::PayloadTooLarge),
        (status = 503, response = crate::openapi::responses::Unavailable),
    ),
)]
pub async fn report(State(state): State<AppState>, caller: Caller, body: RawBody) -> ApiResult<Json<Value>> {
    require_worker(&caller)?;
    let request: ReportBody = body.json("request")?;
    if request.outcomes.len() > MAX_OUTCOMES {
        return Err(ApiError::BadRequest(format!("a report carries at most {MAX_OUTCOMES} outcomes")));
    }
    // Every outcome is checked before any is recorded: a malformed report records nothing.
    let outcomes: Vec<Reported> =
        request.outcomes.iter().map(OutcomeBody::reported).collect::<ApiResult<_>>()?;
    let next = match request.claim {
        Some(claim) if claim.wait_seconds.unwrap_or(0) > 0 => {
            return Err(ApiError::BadRequest(
                "a report's claim does not wait: leave out waitSeconds, and long-poll /v2/workers/claim \
                 when there is nothing to report"
                    .into(),
            ))
        }
        Some(claim) => Some(Arc::new(claim_request(&state, &caller, claim).await?)),
        None => None,
    };

    // The first `limit` successes each ask for their slot's next job, so the embedded
    // store claims them with the successes, in one transaction.
    let mut successors_left = next.as_ref().map_or(0, |next| next.limit as usize);
    let wants_next: Vec<bool> = outcomes
        .iter()
        .map(|outcome| {
            let wants = matches!(outcome, Reported::Outcome(JobOutcome::Succeeded(_))) && successors_left > 0;
            successors_left -= usize::from(wants);
            wants
        })
        .collect();
    let recordings = request.outcomes.iter().zip(outcomes).zip(wants_next).map(|((body, outcome), wants)| {
        record(&state, &caller, body, outcome, next.clone().filter(|_| wants))
    });
    let recorded: Vec<Recorded> = join_all(recordings).await;

    let mut jobs: Vec<Claim> = Vec::new();
    let mut queue_empty = false;
    let mut made_claimable = false;
    let mut answers = Vec::with_capacity(recorded.len());
    for (body, recorded) in request.outcomes.iter().zip(recorded) {
        answers.push(match recorded {
            Ok((status, next)) => {
                made_claimable |= status.is_claimable();
                match next {
                    NextJob::Claimed(claim) => jobs.push(claim),
                    NextJob::NoneWaiting => queue_empty = true,
                    NextJob::NotClaimed => {}
                }
                json!({"id": body.id, "recorded": true, "status": status.as_str()})
            }
            Err(err) => json!({
                "id": body.id,
                "recorded": false,
                "httpStatus": err.status().as_u16(),
                "message": err.to_string(),
            }),
        });
    }
    if made_claimable {
        state.wakeup.notify();
    }
    // Slots the successes did not fill are claimed now, unless a success's own claim
    // already found nothing waiting for this request (a failure in this report that
    // made a job claimable has woken the claims that wait).
    if let Some(next) = next.filter(|_| !queue_empty) {
        let wanted = (next.limit as usize).saturating_sub(jobs.len());
        if wanted > 0 {
            let request = ClaimRequest { limit: wanted as u32, ..ClaimRequest::clone(&next) };
            // The outcomes are recorded whatever happens here: a failed claim answers
            // them with no jobs rather than as an error the worker would resend.
            match state.store.claim(request).await {
                Ok(claimed) => {
                    state.metrics.jobs().attempts_started(claimed.len());
                    jobs.extend(claimed);
                }
                Err(err) => tracing::warn!(error = %err, "claiming with a worker's report failed"),
            }
        }
    }
    Ok(Json(object([("outcomes", Value::Array(answers)), ("jobs", Value::Array(claimed_json(&jobs)))])))
}

/// Records one outcome as `complete`, `fail` or `release` would: the job must lie in
/// the caller's subtree, and the lease token must still hold.
async fn record(
    state: &AppState,
    caller: &Caller,
    body: &OutcomeBody,
    reported: Reported,
    next: Option<Arc<ClaimRequest>>,
) -> Recorded {
    let (number, _) = find_visible_owner(state, &caller.account, &body.id).await?;
    let outcome = match reported {
        Reported::Outcome(outcome) => outcome,
        Reported::Released => {
            let job = state.store.release(number, &body.lease_token).await?;
            state.metrics.jobs().released(job.status);
            return Ok((job.status, NextJob::NotClaimed));
        }
    };
    let (status, next) =
        state.store.finish_status_then_claim(number, &body.lease_token, outcome, next).await?;
    state.metrics.jobs().attempt_ended(status);
    state.metrics.jobs().attempts_started(usize::from(matches!(next, NextJob::Claimed(_))));
    Ok((status, next))
}
