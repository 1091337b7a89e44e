//! Claims: the oldest runnable jobs of a worker's kinds, each started under a fresh
//! lease. The statement's parts are macros so that the outcome batcher
//! ([`super::finisher`]) can claim its successes' next jobs in its own statement, with
//! the same SQL as a claim on its own.

use deadpool_postgres::GenericClient;

use super::glob::globs_to_regexes;
use super::query;
use super::rows::{self, JOB_COLUMN_COUNT};
use crate::types::{Claim, ClaimRequest};
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

/// A claim as two common table expressions, `picked` and `claimed` (whose rows are
/// the job's columns, its lease token and its lease's end): pick the oldest runnable
/// jobs of the wanted kinds, skipping rows another claim has locked (so claimers
/// never wait for each other and never share a job), and start an attempt on each.
/// The lease is the kind's when it has one. The arguments name parameters (or, for
/// `limit`, any expression); `accounts` is empty or a further condition.
macro_rules! claim_ctes {
    (owner: $owner:literal, now: $now:literal, lease: $lease:literal, kinds: $kinds:literal,
     accounts: $accounts:literal, limit: $limit:literal) => {
        concat!(
            "picked AS (
                 SELECT number FROM jobs
                 WHERE status IN ('notStarted', 'resumed') AND run_after <= ",
            $now,
            " AND kind ~ ANY(",
            $kinds,
            "::text[]) ",
            $accounts,
            "
                 ORDER BY run_after, number
                 LIMIT ",
            $limit,
            "
                 FOR UPDATE SKIP LOCKED
             ), claimed AS (
                 UPDATE jobs SET ",
            $crate::postgres::claims::start_attempt!($owner, $now, $lease),
            "
                 WHERE number IN (SELECT number FROM picked)
                 RETURNING ",
            $crate::postgres::rows::job_columns!(),
            ", lease_token, lease_until
             )"
        )
    };
}
pub(crate) use {claim_ctes, start_attempt};

const CLAIM_ANY_ACCOUNT: &str = concat!(
    "WITH ",
    claim_ctes!(owner: "$1", now: "$2", lease: "$3", kinds: "$4", accounts: "", limit: "$5"),
    " SELECT * FROM claimed ORDER BY number"
);
const CLAIM_IN_ACCOUNTS: &str = concat!(
    "WITH ",
    claim_ctes!(owner: "$1", now: "$2", lease: "$3", kinds: "$4",
                accounts: "AND account = ANY($6::text[])", limit: "$5"),
    " SELECT * FROM claimed ORDER BY number"
);

/// A claim request in the form its statement takes: kinds as anchored regexes
/// ([`super::glob`]) and accounts as text.
pub(crate) struct Wanted<'a> {
    pub request: &'a ClaimRequest,
    pub regexes: Vec<String>,
    pub accounts: Option<Vec<String>>,
}

impl<'a> Wanted<'a> {
    /// `None` when the request can match nothing (no kinds, or no accounts), so the
    /// caller can spare the round trip.
    pub(crate) fn of(request: &'a ClaimRequest) -> Option<Self> {
        let regexes = globs_to_regexes(&request.kinds);
        let accounts: Option<Vec<String>> =
            request.accounts.as_ref().map(|a| a.iter().map(|a| a.as_str().to_string()).collect());
        if regexes.is_empty() || accounts.as_ref().is_some_and(Vec::is_empty) {
            return None;
        }
        Some(Wanted { request, regexes, accounts })
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
    let regexes = &wanted.regexes;
    let rows = match &wanted.accounts {
        Some(accounts) => {
            query(c, CLAIM_IN_ACCOUNTS, &[owner, &now, lease_ms, regexes, &limit, accounts]).await?
        }
        None => query(c, CLAIM_ANY_ACCOUNT, &[owner, &now, lease_ms, regexes, &limit]).await?,
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
