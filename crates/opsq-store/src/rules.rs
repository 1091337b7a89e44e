//! The transitions every backend applies the same way: what an attempt's outcome, a
//! lost lease or a resolution does to a job. Kept here, free of SQL, so the SQLite
//! and PostgreSQL stores cannot drift apart.

use opsq_domain::{JobStatus, Millis};

use crate::types::{JobOutcome, Resolution};
use crate::StoreError;

/// The description a job carries while nobody knows whether its effect happened.
pub(crate) const UNKNOWN_DESCRIPTION: &str =
    "The worker was lost while running this operation; its outcome is being reconciled";

/// The new state of a job after an attempt reported its outcome.
pub(crate) struct Finished {
    pub status: JobStatus,
    /// The result, serialised.
    pub result: Option<String>,
    pub error: Option<String>,
    pub run_after: Millis,
    pub description: String,
    /// The history entry.
    pub message: String,
}

/// The history entry of an attempt's success. The embedded store derives that entry
/// from the job row rather than storing it, so it must not vary by job.
pub(crate) const SUCCEEDED_MESSAGE: &str = "succeeded";

/// A failure after a cancel request is the cancellation taking effect; a success
/// stands (the job finished first). A retryable failure runs again while attempts
/// remain.
pub(crate) fn finish(
    outcome: JobOutcome,
    attempt: i64,
    max_attempts: i64,
    cancel_reason: Option<&str>,
    now: Millis,
) -> Result<Finished, StoreError> {
    let outcome = match (outcome, cancel_reason) {
        (JobOutcome::Fatal(error) | JobOutcome::Retryable { error, .. }, Some(reason)) => {
            JobOutcome::Fatal(format!("cancelled: {reason} (the attempt stopped with: {error})"))
        }
        (outcome, _) => outcome,
    };
    let failed = |error: String| Finished {
        status: JobStatus::Failed,
        result: None,
        message: format!("failed: {error}"),
        error: Some(error),
        run_after: now,
        description: "Request failed".into(),
    };
    Ok(match outcome {
        JobOutcome::Succeeded(result) => Finished {
            status: JobStatus::Succeeded,
            result: Some(
                serde_json::to_string(&result)
                    .map_err(|e| StoreError::Invalid(format!("result cannot be stored: {e}")))?,
            ),
            error: None,
            run_after: now,
            description: "Request completed".into(),
            message: SUCCEEDED_MESSAGE.into(),
        },
        JobOutcome::Fatal(error) => failed(error),
        JobOutcome::Retryable { error, run_after } if attempt < max_attempts => Finished {
            status: JobStatus::Resumed,
            result: None,
            message: format!("attempt {attempt} failed, will retry: {error}"),
            error: Some(error),
            run_after: run_after.unwrap_or_else(|| {
                let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
                now + crate::backoff::retry_delay(attempt).as_millis() as i64
            }),
            description: format!("Retrying after attempt {attempt} failed"),
        },
        JobOutcome::Retryable { error, .. } => {
            failed(format!("{error} (attempt {attempt} of {max_attempts}, no attempts left)"))
        }
    })
}

/// The new state of a job its worker handed back before starting it.
pub(crate) struct Released {
    pub finished: Finished,
    /// Whether the attempt stops counting: it never ran, so it must not use up one
    /// of the job's attempts (a kind allowing one attempt would otherwise end `failed`
    /// because a worker shut down).
    pub uncounted: bool,
}

/// A job handed back unstarted is `resumed` and due at once, its attempt not
/// counted, and keeps its previous attempt's error (`current_error`). A cancel
/// requested meanwhile takes effect instead: the job ends `failed` as cancelled.
pub(crate) fn release(
    attempt: i64,
    cancel_reason: Option<&str>,
    current_error: Option<String>,
    now: Millis,
) -> Result<Released, StoreError> {
    if cancel_reason.is_some() {
        let outcome = JobOutcome::Fatal("handed back unstarted".into());
        let finished = finish(outcome, attempt, attempt, cancel_reason, now)?;
        return Ok(Released { finished, uncounted: false });
    }
    let finished = Finished {
        status: JobStatus::Resumed,
        result: None,
        error: current_error,
        run_after: now,
        description: "Handed back unstarted; waiting for a worker".into(),
        message: format!("attempt {attempt} handed back unstarted by its worker; not counted"),
    };
    Ok(Released { finished, uncounted: true })
}

/// What a job whose attempt lost its lease becomes: `(status, description, error)`.
pub(crate) fn rescue(
    safe_to_repeat: bool,
    attempt: i64,
    max_attempts: i64,
    cancel_reason: Option<String>,
) -> (JobStatus, String, Option<String>) {
    if !safe_to_repeat {
        // Even if cancelled, whether the effect happened is unknown.
        (JobStatus::Unknown, UNKNOWN_DESCRIPTION.to_string(), None)
    } else if let Some(reason) = cancel_reason {
        // Cancelled while running and its worker was lost: the cancel takes effect
        // instead of another attempt.
        let error = format!("cancelled: {reason} (the worker was lost before it stopped)");
        (JobStatus::Failed, "Request cancelled".to_string(), Some(error))
    } else if attempt < max_attempts {
        (JobStatus::Resumed, format!("Resuming after attempt {attempt} was interrupted"), None)
    } else {
        let error = format!(
            "attempt {attempt} of {max_attempts} was interrupted (worker lost) and no attempts are left"
        );
        (JobStatus::Failed, "Request failed".to_string(), Some(error))
    }
}

/// The new state of an `unknown` job after its resolution:
/// `(status, serialised result, error, description)`.
pub(crate) type Resolved = (JobStatus, Option<String>, Option<String>, &'static str);

/// A resolution of an `unknown` job. A retry keeps the last attempt's error, as a
/// retryable failure does.
pub(crate) fn resolve(
    resolution: &Resolution,
    current_error: Option<String>,
) -> Result<Resolved, StoreError> {
    Ok(match resolution {
        Resolution::Succeeded(result) => {
            let text = serde_json::to_string(result)
                .map_err(|e| StoreError::Invalid(format!("result cannot be stored: {e}")))?;
            (JobStatus::Succeeded, Some(text), None, "Request completed")
        }
        Resolution::Failed(reason) => (JobStatus::Failed, None, Some(reason.clone()), "Request failed"),
        Resolution::Retry => (JobStatus::Resumed, None, current_error, "Resuming after reconciliation"),
    })
}

/// How many migrations to skip, given how many a store has applied; refuses a store
/// written by a newer opsq, whose schema this build cannot know.
pub(crate) fn migrations_to_skip(applied: i64, known: usize) -> Result<usize, StoreError> {
    if applied > known as i64 {
        return Err(StoreError::Corrupt(format!(
            "the store was written by a newer opsq (schema version {applied}, this build knows {known})"
        )));
    }
    Ok(applied.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused_and_applied_migrations_are_skipped() {
        assert_eq!(migrations_to_skip(0, 3).unwrap(), 0);
        assert_eq!(migrations_to_skip(2, 3).unwrap(), 2);
        assert_eq!(migrations_to_skip(3, 3).unwrap(), 3);
        assert!(matches!(migrations_to_skip(4, 3), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_job_handed_back_unstarted_runs_again_uncounted_unless_cancelled() {
        let released = release(2, None, Some("busy".into()), 7).unwrap();
        assert!(released.uncounted);
        assert_eq!(released.finished.status, JobStatus::Resumed);
        assert_eq!(released.finished.run_after, 7);
        assert_eq!(released.finished.error.as_deref(), Some("busy"), "the last attempt's error stays");
        let cancelled = release(1, Some("stop"), None, 7).unwrap();
        assert!(!cancelled.uncounted);
        assert_eq!(cancelled.finished.status, JobStatus::Failed);
        assert!(cancelled.finished.error.unwrap().starts_with("cancelled: stop"));
    }

    #[test]
    fn a_lost_attempt_becomes_unknown_resumed_or_failed() {
        assert_eq!(rescue(false, 1, 3, None).0, JobStatus::Unknown);
        assert_eq!(rescue(false, 1, 3, Some("stop".into())).0, JobStatus::Unknown);
        assert_eq!(rescue(true, 1, 3, None).0, JobStatus::Resumed);
        assert_eq!(rescue(true, 3, 3, None).0, JobStatus::Failed);
        let (status, _, error) = rescue(true, 1, 3, Some("stop".into()));
        assert_eq!(status, JobStatus::Failed);
        assert!(error.unwrap().starts_with("cancelled: stop"));
    }
}
