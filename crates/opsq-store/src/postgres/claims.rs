//! Claims: the oldest runnable jobs of a worker's kinds, each started under a fresh
//! lease. The statement's parts are macros so that the outcome batcher
//! ([`super::finisher`]) can claim its successes' next jobs in its own statement, with
//! the same SQL as a claim on its own.

use deadpool_postgres::GenericClient;

use super::glob::glob_to_regex;
use super::query;
use super::rows::{self, JOB_COLUMN_COUNT};
use crate::types::{is_glob, Claim, ClaimRequest};
use crate::StoreError;

/// Starts an attempt, for claims; the arguments name the statement's parameters for
/// the owner, now, and the lease of kinds without their own. The start's history
/// entry is derived from the row (bit 2 of `derived_events`, see
/// [`super::history`]); the previous attempt's was written out when that attempt
/// ended.
macro_rules! start_attempt {
    ($owner:literal, $now:literal, $lease:literal) => {
        concat!(
            "status = 'executing', attempt = attempt + 1, lease_owner = ",
            $owner,
            "::text,
             lease_token = replace(gen_random_uuid()::text, '-', ''),
             lease_until = ",
            $now,
            " + COALESCE((SELECT k.lease_ms FROM kinds k WHERE k.kind = jobs.kind), ",
            $lease,
            "),
             started_at = COALESCE(started_at, ",
            $now,
            "), attempt_started_at = ",
            $now,
            ", status_at = ",
            $now,
            ",
             step_desc = 'Started', derived_events = derived_events | 2"
        )
    };
}

/// `waiting_kinds`, a common table expression (of a `WITH RECURSIVE`): the kinds that
/// have waiting jobs, in order, each found by one descent of `jobs_waiting` (a skip
/// over the index, where `SELECT DISTINCT` would read every waiting job), and a last
/// row of `NULL` (none at all when nothing waits). Computed only when a query reads
/// it. Its cost follows the number of kinds with waiting jobs, store-wide: with 20,000
/// such kinds, a glob claim that matches none took 83 ms.
macro_rules! waiting_kinds_cte {
    () => {
        "waiting_kinds AS (
             (SELECT kind FROM jobs WHERE status IN ('notStarted', 'resumed') ORDER BY kind LIMIT 1)
             UNION ALL
             SELECT (SELECT j.kind FROM jobs j
                     WHERE j.status IN ('notStarted', 'resumed') AND j.kind > w.kind
                     ORDER BY j.kind LIMIT 1)
             FROM waiting_kinds w WHERE w.kind IS NOT NULL
         )"
    };
}

/// A claim as common table expressions ending in `picked` and `claimed` (whose rows
/// are the job's columns, its lease token and its lease's end); the statement must
/// open with `WITH RECURSIVE`. It picks the oldest runnable jobs of the wanted kinds,
/// skipping rows another claim has locked (so claimers never wait for each other and
/// never share a job), and starts an attempt on each, with the kind's lease when it
/// has one.
///
/// Each wanted kind is read in `jobs_waiting (kind, run_after, number)` order, up to
/// the limit, and the kinds are merged: a claim reads the jobs of its own kinds only,
/// however many jobs of other kinds wait. (Filtering one walk of every waiting job
/// by kind made each idle runner's poll read the whole backlog of kinds it does not
/// run: 40-90 ms of a backend twice a second at 100,000 such jobs.) Exact kinds are
/// given as such; glob patterns, as anchored regexes, are matched against the kinds
/// that have waiting jobs ([`waiting_kinds_cte`], computed only when there are
/// globs). Each kind's walk locks up to the limit before the merge
/// keeps the oldest, so a claim over several kinds with long backlogs locks, until
/// it commits, some rows it does not take; other claims skip those meanwhile.
///
/// The update finds the picked rows through an array of their numbers, which can only
/// be read by primary key: as a join (`number IN (SELECT ...)`), a generic plan that
/// expects many picked rows hash-joins a scan of the whole table instead, and a drain
/// by external workers spent 388 µs of PostgreSQL's CPU per job, against 68-93 in
/// the same pairs.
///
/// The arguments name parameters (or, for `limit`, any expression); `accounts` is
/// empty or a further condition.
macro_rules! claim_ctes {
    (owner: $owner:literal, now: $now:literal, lease: $lease:literal, exact: $exact:literal,
     globs: $globs:literal, accounts: $accounts:literal, limit: $limit:literal) => {
        concat!(
            $crate::postgres::claims::waiting_kinds_cte!(),
            ", wanted_kinds AS (
                 SELECT unnest(",
            $exact,
            "::text[]) AS kind
                 UNION
                 SELECT kind FROM waiting_kinds WHERE cardinality(",
            $globs,
            "::text[]) > 0 AND kind ~ ANY(",
            $globs,
            "::text[])
             ), picked AS (
                 SELECT next.number FROM wanted_kinds wanted
                 CROSS JOIN LATERAL (
                     SELECT number, run_after FROM jobs
                     WHERE status IN ('notStarted', 'resumed') AND kind = wanted.kind AND run_after <= ",
            $now,
            " ",
            $accounts,
            "
                     ORDER BY kind, run_after, number
                     LIMIT ",
            $limit,
            "
                     FOR UPDATE SKIP LOCKED
                 ) next
                 ORDER BY next.run_after, next.number
                 LIMIT ",
            $limit,
            "
             ), claimed AS (
                 UPDATE jobs SET ",
            $crate::postgres::claims::start_attempt!($owner, $now, $lease),
            "
                 WHERE number = ANY(ARRAY(SELECT number FROM picked))
                 RETURNING ",
            $crate::postgres::rows::job_columns!(),
            ", lease_token, lease_until
             )"
        )
    };
}
pub(crate) use {claim_ctes, start_attempt, waiting_kinds_cte};

const CLAIM_ANY_ACCOUNT: &str = concat!(
    "WITH RECURSIVE ",
    claim_ctes!(owner: "$1", now: "$2", lease: "$3", exact: "$4", globs: "$6", accounts: "", limit: "$5"),
    " SELECT * FROM claimed ORDER BY number"
);
const CLAIM_IN_ACCOUNTS: &str = concat!(
    "WITH RECURSIVE ",
    claim_ctes!(owner: "$1", now: "$2", lease: "$3", exact: "$4", globs: "$6",
                accounts: "AND account = ANY($7::text[])", limit: "$5"),
    " SELECT * FROM claimed ORDER BY number"
);

/// A claim request in the form its statement takes: exact kinds as they are, glob
/// patterns as anchored regexes ([`super::glob`]), accounts as text.
pub(crate) struct Wanted<'a> {
    pub request: &'a ClaimRequest,
    pub exact: Vec<&'a str>,
    pub regexes: Vec<String>,
    pub accounts: Option<Vec<String>>,
}

impl<'a> Wanted<'a> {
    /// `None` when the request can match nothing (no kinds, or no accounts), so the
    /// caller can spare the round trip.
    pub(crate) fn of(request: &'a ClaimRequest) -> Option<Self> {
        let (globs, exact): (Vec<&'a String>, Vec<&'a String>) =
            request.kinds.iter().partition(|kind| is_glob(kind));
        let exact: Vec<&'a str> = exact.into_iter().map(String::as_str).collect();
        let regexes: Vec<String> = globs.into_iter().filter_map(|glob| glob_to_regex(glob)).collect();
        let accounts: Option<Vec<String>> =
            request.accounts.as_ref().map(|a| a.iter().map(|a| a.as_str().to_string()).collect());
        if (exact.is_empty() && regexes.is_empty()) || accounts.as_ref().is_some_and(Vec::is_empty) {
            return None;
        }
        Some(Wanted { request, exact, regexes, accounts })
    }
}

/// Claims up to `limit` jobs (1 to 1,000) in one statement.
pub(crate) async fn claim(
    c: &impl GenericClient,
    wanted: &Wanted<'_>,
    limit: u32,
    now: i64,
) -> Result<Vec<Claim>, StoreError> {
    let limit = i64::from(limit.clamp(1, 1000));
    let owner = &wanted.request.owner;
    let lease_ms = &wanted.request.lease_ms;
    let (exact, regexes) = (&wanted.exact, &wanted.regexes);
    let rows = match &wanted.accounts {
        Some(accounts) => {
            query(c, CLAIM_IN_ACCOUNTS, &[owner, &now, lease_ms, exact, &limit, regexes, accounts]).await?
        }
        None => query(c, CLAIM_ANY_ACCOUNT, &[owner, &now, lease_ms, exact, &limit, regexes]).await?,
    };
    rows.iter().map(claim_of).collect()
}

/// A row of `claimed`: the job's columns, then its lease token and lease's end.
pub(crate) fn claim_of(r: &tokio_postgres::Row) -> Result<Claim, StoreError> {
    Ok(Claim {
        job: rows::job(r)?,
        lease_token: r.try_get(JOB_COLUMN_COUNT)?,
        lease_until: r.try_get(JOB_COLUMN_COUNT + 1)?,
    })
}

#[cfg(test)]
#[path = "../../../../tests/support/pg_scratch.rs"]
mod pg_scratch;

#[cfg(test)]
mod tests {
    use super::pg_scratch::Scratch;
    use super::{CLAIM_ANY_ACCOUNT, CLAIM_IN_ACCOUNTS};

    /// Rows of `jobs` a plan read: each scan's rows over all its loops, plus the rows
    /// its filter threw away.
    fn rows_read(plan: &serde_json::Value) -> f64 {
        let number = |key: &str| plan.get(key).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        let own = if plan.get("Relation Name").and_then(serde_json::Value::as_str) == Some("jobs") {
            (number("Actual Rows") + number("Rows Removed by Filter")) * number("Actual Loops").max(1.0)
        } else {
            0.0
        };
        let children = plan.get("Plans").and_then(serde_json::Value::as_array);
        own + children.into_iter().flatten().map(rows_read).sum::<f64>()
    }

    /// A claim reads the waiting jobs of its own kinds only, however many jobs of
    /// other kinds wait: an idle runner's poll for its kinds used to read the whole
    /// backlog of kinds it does not run, twice a second. Checked in the statement's
    /// plans, generic and custom (the store prepares it once per connection), for
    /// exact kinds, globs and both, with and without an accounts condition.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_reads_only_the_waiting_jobs_of_its_kinds() {
        let Some(scratch) = Scratch::create_or_skip("opsq_claims").await else { return };
        let store = crate::Store::open_postgres(&scratch.url()).await.expect("open the store");
        let mut db = scratch.connect().await;
        db.batch_execute(
            "INSERT INTO jobs (account, location, kind, title, payload, status, status_at, created_at,
                               run_after, max_attempts, safe_to_repeat, submitter)
             SELECT 'ACME', 'WA1', CASE WHEN i % 1000 = 0 THEN 't.mine' ELSE 't.other' END, 't', '{}',
                    'notStarted', 0, 0, i, 3, true, 'u'
             FROM generate_series(1, 3000) AS i;
             ANALYZE jobs;",
        )
        .await
        .expect("load waiting jobs");
        let types = "text, bigint, bigint, text[], bigint, text[]";
        let cases = [
            ("'{t.none}', 10, '{}'", 0.0),
            ("'{t.mine}', 10, '{}'", 3.0),
            ("'{}', 10, '{^t\\.m.*$, ^t\\.n.*$}'", 3.0),
            ("'{t.mine, t.none}', 10, '{^t\\.mi.*$}'", 3.0),
        ];
        for mode in ["force_generic_plan", "force_custom_plan"] {
            for (statement, extra) in [(CLAIM_ANY_ACCOUNT, ""), (CLAIM_IN_ACCOUNTS, ", text[]")] {
                for (args, claimed) in cases {
                    let tx = db.transaction().await.expect("begin");
                    let accounts = if extra.is_empty() { "" } else { ", '{ACME}'" };
                    tx.batch_execute(&format!(
                        "SET LOCAL plan_cache_mode = {mode};
                         DEALLOCATE ALL;
                         PREPARE claim({types}{extra}) AS {statement};"
                    ))
                    .await
                    .expect("prepare the claim");
                    // The plan comes back as `json`, which this crate's driver does not
                    // decode; the simple protocol answers text.
                    let explained = tx
                        .simple_query(&format!(
                            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim('o', 10000, 30000, {args}{accounts})"
                        ))
                        .await
                        .expect("explain the claim");
                    let text = explained
                        .iter()
                        .find_map(|message| match message {
                            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                            _ => None,
                        })
                        .expect("a plan");
                    let plan: serde_json::Value = serde_json::from_str(text).expect("EXPLAIN's JSON");
                    let took = plan[0]["Plan"]["Actual Rows"].as_f64().expect("the claim's rows");
                    assert_eq!(took, claimed, "{mode}, {args}: claimed\n{plan:#}");
                    let read = rows_read(&plan[0]["Plan"]);
                    assert!(
                        read <= 3.0 * claimed + 10.0,
                        "{mode}, {args}: the claim read {read} rows of jobs for {claimed} claimed\n{plan:#}"
                    );
                    tx.rollback().await.expect("roll back");
                }
            }
        }
        drop(store);
    }
}
