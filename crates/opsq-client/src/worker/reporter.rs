//! Sends a worker's outcomes many to a call (`POST /v2/workers/report`), each call also
//! claiming jobs for the slots its outcomes free.
//!
//! One call per outcome plus a claim per freed slot made a worker running short jobs
//! cost the server several HTTP requests per job; a report carries everything that
//! finished while the previous report was in flight, so under load the calls per job
//! fall with the load, and when idle an outcome still goes out at once. A server
//! without the call (404 or 405: older than it) gets one `complete` or `fail` per
//! outcome from then on, as before.

use std::sync::Arc;

use futures::future::join_all;
use tokio::{
    sync::{mpsc, OwnedSemaphorePermit},
    time::{sleep, Instant},
};
use tokio_util::sync::CancellationToken;

use super::{backoff, send_report, LeaseClock, Report};
use crate::{ClaimRequest, ClaimedJob, Client, ReportRequest, ReportResponse, ReportedOutcome};

/// The most outcomes one report carries (the server's limit).
pub(super) const MAX_REPORT: usize = 100;

/// A finished attempt waiting to be reported, with the slot it holds until then.
pub(super) struct Pending {
    pub(super) id: String,
    pub(super) lease_token: String,
    pub(super) report: Report,
    pub(super) lease: Arc<LeaseClock>,
    pub(super) permit: Option<OwnedSemaphorePermit>,
}

impl Pending {
    /// A job claimed once claims ended: handed back unstarted (released), so it runs
    /// again at once on another worker, need not wait for its lease to run out, and
    /// keeps the attempt it never used.
    pub(super) fn hand_back(claimed: ClaimedJob, permit: Option<OwnedSemaphorePermit>) -> Self {
        Pending {
            id: claimed.job.id,
            lease: Arc::new(LeaseClock::new(Instant::now(), claimed.lease_seconds)),
            lease_token: claimed.lease_token,
            report: Report::Release,
            permit,
        }
    }

    fn outcome(&self) -> ReportedOutcome {
        match &self.report {
            Report::Complete(result) => {
                ReportedOutcome::succeeded(&self.id, &self.lease_token, result.clone())
            }
            Report::Fail(failure) => ReportedOutcome::failed(&self.id, &self.lease_token, failure.clone()),
            Report::Release => ReportedOutcome::released(&self.id, &self.lease_token),
        }
    }
}

/// A job claimed by a report, for the worker's loop to start on the slot it came with.
pub(super) type NextJob = (ClaimedJob, Option<OwnedSemaphorePermit>);

/// The task that sends outcomes; it ends once every sender of outcomes is gone and
/// everything queued is reported.
pub(super) struct Reporter {
    pub(super) client: Client,
    /// The worker's claim; each report asks for as many jobs as its outcomes hold slots.
    pub(super) claim: ClaimRequest,
    /// Fired when the worker's loop stops claiming (shutdown, or a claim refused for
    /// good): reports claim nothing more, and jobs a report in flight claimed are
    /// handed back.
    pub(super) claims_end: CancellationToken,
    pub(super) next_jobs: mpsc::UnboundedSender<NextJob>,
}

impl Reporter {
    pub(super) async fn run(self, mut outcomes: mpsc::UnboundedReceiver<Pending>) {
        let mut per_call = false;
        let mut queued: Vec<Pending> = Vec::new();
        loop {
            if queued.is_empty() {
                match outcomes.recv().await {
                    Some(pending) => queued.push(pending),
                    None => return,
                }
            }
            while let Ok(pending) = outcomes.try_recv() {
                queued.push(pending);
            }
            let rest = queued.split_off(queued.len().min(MAX_REPORT));
            let batch = std::mem::replace(&mut queued, rest);
            if per_call {
                send_one_by_one(&self.client, batch).await;
                continue;
            }
            let sent = self.send(batch).await;
            if let Some(unsent) = sent.unsent {
                if sent.unsupported {
                    tracing::info!("the server has no /v2/workers/report: reporting one outcome per call");
                    per_call = true;
                }
                send_one_by_one(&self.client, unsent).await;
            }
            queued.extend(sent.hand_back);
        }
    }

    /// Sends one report, retrying transient failures (of the call, or of single
    /// outcomes) with backoff while the outcomes' leases last.
    async fn send(&self, mut batch: Vec<Pending>) -> Sent {
        let mut failures: u32 = 0;
        let mut hand_back = Vec::new();
        loop {
            let slots = batch.iter().filter(|pending| pending.permit.is_some()).count();
            let claim = (slots > 0 && !self.claims_end.is_cancelled()).then(|| ClaimRequest {
                limit: Some(slots as u32),
                wait_seconds: None,
                ..self.claim.clone()
            });
            let request = ReportRequest { outcomes: batch.iter().map(Pending::outcome).collect(), claim };
            let error = match self.client.report(&request).await {
                Ok(answer) => {
                    let settled = self.settle(batch, answer);
                    hand_back.extend(settled.hand_back);
                    if settled.retry.is_empty() {
                        return Sent { hand_back, unsent: None, unsupported: false };
                    }
                    batch = settled.retry;
                    "the server could not record some outcomes".to_string()
                }
                Err(err) if !err.is_transient() => {
                    let unsupported = matches!(err.status(), Some(404 | 405));
                    if !unsupported {
                        tracing::warn!(error = %err, "the server refused a report; sending its outcomes one by one");
                    }
                    return Sent { hand_back, unsent: Some(batch), unsupported };
                }
                Err(err) => err.to_string(),
            };
            failures = failures.saturating_add(1);
            let pause = backoff(failures);
            batch.retain(|pending| {
                let keep = Instant::now() + pause < pending.lease.until();
                if !keep {
                    tracing::error!(
                        job = %pending.id,
                        error = %error,
                        "could not report the outcome before the lease ran out; the server will rescue the job"
                    );
                }
                keep
            });
            if batch.is_empty() {
                return Sent { hand_back, unsent: None, unsupported: false };
            }
            tracing::warn!(error = %error, retry_in = ?pause, "reporting outcomes failed; retrying");
            sleep(pause).await;
        }
    }

    /// Logs each outcome's answer and hands the claimed jobs to the worker's loop with
    /// the slots the outcomes freed. Outcomes refused for a passing reason are to be
    /// sent again; jobs claimed once claims ended are to be handed back.
    fn settle(&self, batch: Vec<Pending>, answer: ReportResponse) -> Settled {
        let mut retry = Vec::new();
        let mut freed = Vec::new();
        let mut answers = answer.outcomes.into_iter();
        for mut pending in batch {
            let Some(answered) = answers.next() else {
                tracing::error!(job = %pending.id, "the server did not answer this outcome; the server will rescue the job");
                continue;
            };
            if answered.recorded {
                pending.report.log_recorded(&pending.id, answered.status.as_deref().unwrap_or("?"));
                freed.extend(pending.permit.take());
                continue;
            }
            let message = answered.message.as_deref().unwrap_or("");
            match answered.http_status {
                Some(409) => {
                    tracing::warn!(job = %pending.id, error = message, "the lease was lost before the outcome was recorded; dropping it");
                    freed.extend(pending.permit.take());
                }
                // What `ClientError::is_transient` retries for a call of its own.
                Some(status) if status == 408 || status == 429 || status >= 500 => {
                    tracing::warn!(job = %pending.id, status, error = message, "the outcome was not recorded; retrying");
                    retry.push(pending);
                }
                status => {
                    tracing::error!(job = %pending.id, ?status, error = message, "the server refused the outcome");
                    freed.extend(pending.permit.take());
                }
            }
        }
        let mut hand_back = Vec::new();
        for claimed in answer.jobs {
            // The report asked for a job for every slot it held, those of the outcomes
            // to retry too: theirs go to the claimed jobs once the freed ones run out,
            // so a retry asks for no job again. Should the server claim more still, the
            // job runs (over the limit) rather than sitting leased.
            let permit = freed.pop().or_else(|| retry.iter_mut().find_map(|pending| pending.permit.take()));
            tracing::info!(job = %claimed.job.id, kind = %claimed.job.kind, attempt = claimed.job.attempt, "claimed");
            if self.claims_end.is_cancelled() {
                hand_back.push(Pending::hand_back(claimed, permit));
            } else if let Err(mpsc::error::SendError((claimed, permit))) =
                self.next_jobs.send((claimed, permit))
            {
                hand_back.push(Pending::hand_back(claimed, permit));
            }
        }
        Settled { retry, hand_back }
    }
}

/// A report's answer, sorted.
struct Settled {
    /// Outcomes the server could not record for a passing reason.
    retry: Vec<Pending>,
    /// Jobs claimed once claims ended, to report as handed back.
    hand_back: Vec<Pending>,
}

/// What became of a report.
struct Sent {
    /// Jobs claimed once claims ended, to report as handed back.
    hand_back: Vec<Pending>,
    /// Outcomes to send one by one instead: the server refused the report as a whole
    /// (say, a token that expired), or has no such call.
    unsent: Option<Vec<Pending>>,
    /// The server has no such call (404, 405): it never will.
    unsupported: bool,
}

/// `complete` or `fail` for each outcome, all at once.
async fn send_one_by_one(client: &Client, batch: Vec<Pending>) {
    join_all(batch.into_iter().map(|pending| async move {
        send_report(client, &pending.id, &pending.lease_token, pending.report, &pending.lease).await;
        drop(pending.permit);
    }))
    .await;
}
