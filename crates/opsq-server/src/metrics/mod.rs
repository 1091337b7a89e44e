//! What an operator watches, served at `GET /metrics`: counters of what this node did
//! since it started (jobs accepted, attempts started, their outcomes, attempts taken
//! back from lost workers, cancels, unknown outcomes resolved by a probe or ended by
//! the timeout), bumped where each happens, and the queue's depth, read from the
//! store when scraped. docs/operations.md lists every metric.
//!
//! The counters sit on the hot paths (tens of thousands of jobs a second), so every
//! label set is resolved here, once, into a plain [`Counter`]: counting is one relaxed
//! atomic add, with no lock, no lookup and no allocation. The queue's depth is not
//! kept per event at all; the store counts it at scrape time.

mod exposition;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opsq_domain::JobStatus;
use opsq_store::{Rescued, UnfinishedCounts};
use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use exposition::CONTENT_TYPE;

/// How long a scrape waits for the store's counts before it answers without them
/// (`opsq_store_up 0`): well within Prometheus' default scrape timeout of 10 s, so a
/// node whose database is down is still scraped, and says so. The route's OpenAPI
/// description and docs/operations.md give this figure too.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// One label, fixed when the metric is registered.
type Label = [(&'static str, &'static str); 1];
/// Two labels, fixed when the metric is registered.
type Labels = [(&'static str, &'static str); 2];

/// The registry of one server and the counters its hot paths bump. Built once per
/// server and held in its state: no global recorder, so two servers in one process
/// (tests, embedders) count apart.
pub struct Metrics {
    /// Everything kept between scrapes; what the store says is added per scrape.
    registry: Registry,
    jobs: JobCounters,
}

/// The counters of what this node does to jobs, cheap to clone (one reference count)
/// for the runner and housekeeping, which do not hold the server's state.
#[derive(Clone)]
pub struct JobCounters(Arc<Counters>);

struct Counters {
    submitted: Counter,
    attempts_started: Counter,
    succeeded: Counter,
    failed: Counter,
    retried: Counter,
    released: Counter,
    rescued_resumed: Counter,
    rescued_unknown: Counter,
    rescued_failed: Counter,
    cancels_ended: Counter,
    cancels_requested: Counter,
    probe_succeeded: Counter,
    probe_failed: Counter,
    probe_retried: Counter,
    unknown_timed_out: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric and resolves every label set, so nothing is created or
    /// looked up on the paths that count.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let submitted = Counter::default();
        registry.register(
            "opsq_jobs_submitted",
            "Jobs accepted by this node since its start; an idempotent repeat of a submission makes no job \
             and is not counted",
            submitted.clone(),
        );
        let attempts_started = Counter::default();
        registry.register(
            "opsq_attempts_started",
            "Attempts started by this node since its start: claims by its in-process runner and by external \
             workers, and jobs a submission started at once on a free slot",
            attempts_started.clone(),
        );
        let outcomes = Family::<Label, Counter>::default();
        registry.register(
            "opsq_attempt_outcomes",
            "Attempt outcomes recorded by this node since its start, by what the job became: succeeded, \
             failed (for good), retried (resumed, to run again) or released (handed back unstarted by a \
             worker shutting down; the attempt does not count)",
            outcomes.clone(),
        );
        let rescued = Family::<Label, Counter>::default();
        registry.register(
            "opsq_attempts_rescued",
            "Attempts taken back by this node since its start (lease expired, held by its previous run, or \
             unfinished at shutdown), by what the job became: resumed, unknown (not safe to repeat) or \
             failed (attempts used up)",
            rescued.clone(),
        );
        let cancels = Family::<Label, Counter>::default();
        registry.register(
            "opsq_cancels",
            "Cancels this node accepted since its start, by effect: ended (a waiting job failed at once) or \
             requested (a running job asked to stop; once per job); a refused or repeated cancel is not counted",
            cancels.clone(),
        );
        let unknown_resolved = Family::<Labels, Counter>::default();
        registry.register(
            "opsq_unknown_resolved",
            "Unknown outcomes this node resolved since its start, by whom and what the job became: a \
             reconcile probe (succeeded, failed, or resumed to run again) or the unknown timeout (failed); \
             an operator's resolution with opsq admin is not counted by any node",
            unknown_resolved.clone(),
        );
        let build = Family::<Label, Gauge>::default();
        build.get_or_create(&[("version", env!("CARGO_PKG_VERSION"))]).set(1);
        registry.register("opsq_build_info", "The opsq version this node runs, as a label; always 1", build);
        let started = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        started.set(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64()));
        registry.register(
            "process_start_time_seconds",
            "When this server started, in seconds since the Unix epoch",
            started,
        );
        // Resolved once: the hot paths hold the counters, never the families.
        let labelled = |family: &Family<Label, Counter>, name, value| {
            Counter::clone(&family.get_or_create(&[(name, value)]))
        };
        let resolved_by = |family: &Family<Labels, Counter>, by, status| {
            Counter::clone(&family.get_or_create(&[("by", by), ("status", status)]))
        };
        let jobs = JobCounters(Arc::new(Counters {
            submitted,
            attempts_started,
            succeeded: labelled(&outcomes, "outcome", "succeeded"),
            failed: labelled(&outcomes, "outcome", "failed"),
            retried: labelled(&outcomes, "outcome", "retried"),
            released: labelled(&outcomes, "outcome", "released"),
            rescued_resumed: labelled(&rescued, "status", "resumed"),
            rescued_unknown: labelled(&rescued, "status", "unknown"),
            rescued_failed: labelled(&rescued, "status", "failed"),
            cancels_ended: labelled(&cancels, "effect", "ended"),
            cancels_requested: labelled(&cancels, "effect", "requested"),
            probe_succeeded: resolved_by(&unknown_resolved, "probe", "succeeded"),
            probe_failed: resolved_by(&unknown_resolved, "probe", "failed"),
            probe_retried: resolved_by(&unknown_resolved, "probe", "resumed"),
            unknown_timed_out: resolved_by(&unknown_resolved, "timeout", "failed"),
        }));
        Self { registry, jobs }
    }

    /// The counters, for the code that does what they count.
    pub fn jobs(&self) -> &JobCounters {
        &self.jobs
    }

    /// The exposition in the Prometheus text format: the counters, and what the store
    /// counted (`None`: it did not answer, which `opsq_store_up 0` says, and the
    /// queue's depth is left out rather than shown stale). Built per scrape, so
    /// concurrent scrapes share nothing but the counters.
    pub fn render(&self, unfinished: Option<UnfinishedCounts>) -> Result<String, std::fmt::Error> {
        let mut scraped = Registry::default();
        let up = Gauge::<i64>::default();
        up.set(i64::from(unfinished.is_some()));
        scraped.register(
            "opsq_store_up",
            "Whether the store answered this scrape's count of jobs in time (1) or not (0)",
            up,
        );
        if let Some(counts) = unfinished {
            let jobs = Family::<Label, Gauge>::default();
            for (status, count) in [
                (JobStatus::NotStarted, counts.not_started),
                (JobStatus::Executing, counts.executing),
                (JobStatus::Resumed, counts.resumed),
                (JobStatus::Unknown, counts.unknown),
            ] {
                jobs.get_or_create(&[("status", status.as_str())])
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
            scraped.register(
                "opsq_jobs",
                "Unfinished jobs in the whole store (every node's), by status, counted at scrape time",
                jobs,
            );
            let waited = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            waited.set(waited_seconds(counts.oldest_due_at, opsq_store::now_ms()));
            scraped.register(
                "opsq_oldest_waiting_seconds",
                "How long the job that has waited longest to start (notStarted or resumed, and due) has \
                 waited since it became due, in seconds; 0 when no due job waits",
                waited,
            );
        }
        let mut openmetrics = String::new();
        encode_registry(&mut openmetrics, &self.registry)?;
        encode_registry(&mut openmetrics, &scraped)?;
        Ok(exposition::prometheus_text(&openmetrics))
    }
}

/// Seconds from `due_at` (ms) to `now` (ms); 0 when nothing is due, or for a due time
/// ahead of this node's clock (another node's, on a shared store).
fn waited_seconds(due_at: Option<i64>, now: i64) -> f64 {
    due_at.map_or(0.0, |due_at| now.saturating_sub(due_at).max(0) as f64 / 1000.0)
}

impl JobCounters {
    /// Jobs a submission created (`accepted`), of which `started` began their first
    /// attempt in the submission's own transaction (direct dispatch).
    pub fn submitted(&self, accepted: usize, started: usize) {
        if accepted > 0 {
            self.0.submitted.inc_by(accepted as u64);
        }
        self.attempts_started(started);
    }

    /// Attempts a claim started.
    pub fn attempts_started(&self, count: usize) {
        if count > 0 {
            self.0.attempts_started.inc_by(count as u64);
        }
    }

    /// An attempt's outcome, recorded: `status` is what the job became.
    pub fn attempt_ended(&self, status: JobStatus) {
        match status {
            JobStatus::Succeeded => self.0.succeeded.inc(),
            JobStatus::Failed => self.0.failed.inc(),
            JobStatus::Resumed => self.0.retried.inc(),
            JobStatus::NotStarted | JobStatus::Executing | JobStatus::Unknown => return,
        };
    }

    /// A claimed job handed back unstarted: `status` is what the job became, `resumed`
    /// (released) unless a cancel request made it `failed`.
    pub fn released(&self, status: JobStatus) {
        match status {
            JobStatus::Resumed => {
                self.0.released.inc();
            }
            other => self.attempt_ended(other),
        }
    }

    /// Attempts a rescue took back, each with what its job became.
    pub fn rescued(&self, rescued: &[Rescued]) {
        for job in rescued {
            match job.status {
                JobStatus::Resumed => self.0.rescued_resumed.inc(),
                JobStatus::Unknown => self.0.rescued_unknown.inc(),
                JobStatus::Failed => self.0.rescued_failed.inc(),
                JobStatus::NotStarted | JobStatus::Executing | JobStatus::Succeeded => continue,
            };
        }
    }

    /// A cancel the store accepted: `running` when the job was running and was asked
    /// to stop, rather than ended at once.
    pub fn cancelled(&self, running: bool) {
        if running {
            self.0.cancels_requested.inc();
        } else {
            self.0.cancels_ended.inc();
        }
    }

    /// A reconcile probe's verdict, recorded: `status` is what the job became.
    pub fn probe_resolved(&self, status: JobStatus) {
        match status {
            JobStatus::Succeeded => self.0.probe_succeeded.inc(),
            JobStatus::Failed => self.0.probe_failed.inc(),
            JobStatus::Resumed => self.0.probe_retried.inc(),
            JobStatus::NotStarted | JobStatus::Executing | JobStatus::Unknown => return,
        };
    }

    /// Unknown outcomes the timeout ended `failed`.
    pub fn unknown_timed_out(&self, count: usize) {
        if count > 0 {
            self.0.unknown_timed_out.inc_by(count as u64);
        }
    }
}

#[cfg(test)]
mod tests;
