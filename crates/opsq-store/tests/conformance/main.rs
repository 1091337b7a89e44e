//! The store conformance suite: each test is written once as `async fn name(store:
//! Store)` against the public [`Store`] API and run on every backend, so a new backend
//! is held to exactly the rules the existing ones keep.
//!
//! Adding a backend takes two lines: a factory `async fn x_store() -> Option<(Store,
//! Guard)>` that returns a store over an empty database (the guard keeps that database
//! alive and cleans it up when dropped), or `None` when the backend's server cannot be
//! reached and the test is skipped (see `pg_scratch::Scratch::create_or_skip`), and
//! `all_conformance_tests!(x, x_store);`. The tests then show up as `x::<test name>`,
//! so `cargo test -p opsq-store --test conformance x::` runs one backend.
//!
//! PostgreSQL runs on the server at `OPSQ_TEST_PG_URL` (default
//! `pg_scratch::DEFAULT_PG_URL`), each test in a database of its own that is dropped
//! after it.

mod accounts;
mod concurrency;
mod control;
mod dispatch;
mod housekeeping;
mod jobs;
mod leases;
mod release;
mod support;

#[path = "../../../../tests/support/pg_scratch.rs"]
mod pg_scratch;

use opsq_store::Store;

/// Whatever keeps a backend's scratch database alive for one test; dropped after it.
pub type Guard = Box<dyn std::any::Any + Send>;

/// A SQLite store in a fresh temporary directory: a real file, WAL and all.
async fn sqlite_store() -> Option<(Store, Guard)> {
    let dir = tempfile::TempDir::new().expect("create a temporary directory");
    let store = Store::open_sqlite(dir.path()).expect("open the SQLite store");
    Some((store, Box::new(dir)))
}

/// A PostgreSQL store over a fresh database `opsq_test_<random hex>` on the server at
/// `OPSQ_TEST_PG_URL`; the guard drops that database after the test.
async fn postgres_store() -> Option<(Store, Guard)> {
    // From here on the guard drops the database, even if opening the store fails.
    let scratch = pg_scratch::Scratch::create_or_skip("opsq_test").await?;
    let store = Store::open_postgres(&scratch.url()).await.expect("open the PostgreSQL store");
    Some((store, Box::new(scratch)))
}

/// Instantiates each listed test for one backend as `#[tokio::test]`s in a module
/// named after the backend. Every test runs on a multi-threaded runtime, since many
/// of them race calls against each other.
macro_rules! conformance_tests {
    ($backend:ident, $factory:ident; $($module:ident :: $test:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some((store, guard)) = super::$factory().await else {
                        return;
                    };
                    crate::$module::$test(store).await;
                    drop(guard);
                }
            )+
        }
    };
}

/// The whole suite for one backend. A test missing here is dead code, which the
/// `-D warnings` clippy run rejects, so nothing is written and then left unrun.
macro_rules! all_conformance_tests {
    ($backend:ident, $factory:ident) => {
        conformance_tests!($backend, $factory;
            accounts::ping_and_describe,
            accounts::accounts_form_a_tree,
            accounts::duplicate_account_is_refused,
            accounts::account_with_unknown_parent_is_not_found,
            accounts::users_round_trip_and_match_case_insensitively,
            accounts::api_keys_round_trip,
            accounts::v1_sessions_are_live_until_they_expire_or_are_deleted,
            accounts::setting_or_init_keeps_the_first_value,
            accounts::panicking_setting_init_does_not_break_the_store,
            accounts::bootstrap_runs_only_on_an_empty_store,
            accounts::bootstrap_is_skipped_when_accounts_exist,
            accounts::failed_bootstrap_leaves_nothing_behind,
            jobs::submit_round_trips_every_field,
            jobs::job_numbers_increase,
            jobs::submitted_job_has_one_history_event,
            jobs::idempotency_key_returns_the_first_job,
            jobs::submit_accepts_several_jobs_in_one_call,
            jobs::a_batch_without_keys_keeps_its_order,
            jobs::a_status_read_right_after_a_write_sees_it,
            jobs::waiting_jobs_show_when_they_run,
            jobs::unknown_jobs_are_absent,
            jobs::list_jobs_filters_and_pages,
            jobs::kind_globs_follow_sqlite_glob_rules,
            leases::claim_only_takes_claimable_statuses,
            leases::claim_matches_exact_kinds_and_globs,
            leases::claims_over_many_kinds_take_the_oldest_across_them,
            leases::claim_respects_limit_and_accounts,
            leases::claim_starts_an_attempt,
            leases::claimed_job_is_not_claimed_again,
            leases::claim_skips_jobs_scheduled_for_later,
            leases::heartbeat_renews_the_lease_and_records_progress,
            leases::heartbeat_is_fenced,
            leases::retryable_without_a_time_backs_off_by_attempt,
            leases::finish_succeeded_stores_the_result,
            leases::finish_fatal_fails_the_job,
            leases::finish_retryable_resumes_and_runs_again,
            leases::finish_retryable_without_attempts_left_fails,
            leases::second_finish_is_refused,
            leases::terminal_jobs_never_change,
            leases::rescue_by_owner_prefix,
            leases::rescue_takes_back_expired_leases,
            leases::rescued_lease_token_is_fenced,
            leases::a_stale_outcome_beside_the_live_one_does_not_block_it,
            leases::text_the_store_cannot_keep_fails_only_its_own_call,
            leases::refused_outcomes_reported_together_are_told_apart,
            leases::successes_reported_together_each_get_their_own_answer,
            leases::a_success_can_claim_its_slots_next_job,
            leases::successes_claiming_together_each_get_their_own_next_job,
            leases::successes_with_different_requests_claim_only_what_each_matches,
            leases::a_stale_outcome_beside_the_live_one_leaves_no_claim_behind,
            leases::expired_lease_is_fenced_before_rescue,
            leases::history_records_each_transition,
            release::a_job_handed_back_unstarted_runs_again_without_using_an_attempt,
            release::a_hand_back_after_a_failed_attempt_keeps_its_error_and_start,
            release::a_cancel_requested_before_the_hand_back_takes_effect,
            release::a_hand_back_needs_the_live_lease,
            concurrency::concurrent_submits_get_distinct_numbers,
            concurrency::concurrent_batches_each_get_their_own_jobs,
            dispatch::a_submission_starts_jobs_on_offered_slots,
            dispatch::offers_cover_only_their_accounts_and_are_used_in_order,
            dispatch::a_settled_offer_has_every_claim_made_on_it,
            concurrency::concurrent_claims_never_share_a_job,
            concurrency::concurrent_finishes_record_one_outcome,
            concurrency::concurrent_finishes_of_many_jobs_each_get_their_own_answer,
            concurrency::concurrent_status_reads_each_get_their_own_job,
            concurrency::finish_racing_rescue_records_one_outcome,
            concurrency::concurrent_setting_inits_agree,
            concurrency::concurrent_idempotent_submits_make_one_job,
            concurrency::concurrent_rescues_take_each_job_once,
            concurrency::concurrent_bootstraps_make_one_root,
            concurrency::failing_write_does_not_undo_its_neighbours,
            control::cancel_fails_a_waiting_job_at_once,
            control::cancel_asks_the_worker_of_a_running_job,
            control::retryable_failure_after_cancel_request_ends_the_job,
            control::success_after_cancel_request_stands,
            control::cancel_leaves_unknown_and_finished_jobs_alone,
            control::resolve_succeeded_completes_an_unknown_job,
            control::resolve_failed_fails_an_unknown_job,
            control::resolve_retry_runs_an_unknown_job_again,
            control::resolve_is_refused_unless_the_job_is_unknown,
            control::kind_settings_round_trip,
            control::a_cancelled_job_whose_worker_is_lost_ends_cancelled,
            control::kind_lease_overrides_the_claim_lease,
            control::kind_lease_overrides_the_heartbeat_lease,
            housekeeping::prune_finished_deletes_ended_jobs_and_their_history,
            housekeeping::prune_finished_keeps_newer_jobs_and_respects_the_limit,
            housekeeping::job_owner_names_the_jobs_account_and_a_pruned_job_is_refused_after,
            housekeeping::fail_stale_unknown_ends_only_old_unknown_jobs,
            housekeeping::unknown_jobs_lists_the_oldest_first,
            housekeeping::prune_sessions_deletes_only_expired_sessions,
            housekeeping::unfinished_counts_count_each_unfinished_status,
            housekeeping::unfinished_counts_tell_when_the_oldest_due_job_became_due,
        );
    };
}

all_conformance_tests!(sqlite, sqlite_store);
all_conformance_tests!(postgres, postgres_store);

/// What only the PostgreSQL store does, because only it plans from statistics.
mod postgres_only {
    use crate::pg_scratch::Scratch;
    use crate::postgres_store;
    use crate::support::*;

    /// A burst into an empty table must not leave the planner believing it is empty
    /// (claims would then sort every waiting job): the store refreshes the
    /// statistics itself, long before autovacuum would (switched off here, so only
    /// the store can have done it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_submissions_refreshes_the_planner_statistics() {
        let Some((store, guard)) = postgres_store().await else { return };
        let scratch = guard.downcast_ref::<Scratch>().expect("a PostgreSQL scratch database");
        let db = scratch.connect().await;
        db.batch_execute("ALTER TABLE jobs SET (autovacuum_enabled = false)").await.expect("alter");
        let known = || async {
            let row =
                db.query_one("SELECT reltuples::float8 FROM pg_class WHERE oid = 'jobs'::regclass", &[]);
            row.await.expect("read pg_class").get::<_, f64>(0)
        };
        assert!(known().await < 1.0, "a new table has no statistics yet");
        accounts(&store, &["ACME"]).await;
        for _ in 0..3 {
            let batch = (0..1000).map(|_| new_job("ACME", "t.burst")).collect();
            store.submit(batch).await.expect("submit a batch");
        }
        let rows = eventually("the statistics to count the burst", || async {
            let rows = known().await;
            (rows >= 2000.0).then_some(rows)
        })
        .await;
        assert!(rows <= 3000.0, "the statistics count {rows} jobs of 3000");
        drop(db);
        drop(guard);
    }

    /// A count that cannot finish (here, waiting for a lock another connection holds)
    /// fails as unavailable within its bound instead of holding up its caller, and
    /// leaves nothing behind: the next count answers as soon as the lock is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_count_that_cannot_finish_fails_within_its_bound() {
        let Some((store, guard)) = postgres_store().await else { return };
        let scratch = guard.downcast_ref::<Scratch>().expect("a PostgreSQL scratch database");
        let mut db = scratch.connect().await;
        accounts(&store, &["ACME"]).await;
        submit(&store, new_job("ACME", "t.waiting")).await;
        let within = std::time::Duration::from_millis(300);
        let lock = db.transaction().await.expect("begin");
        lock.batch_execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE").await.expect("lock the jobs");

        let started = std::time::Instant::now();
        let counted = store.unfinished_counts(within).await;
        let took = started.elapsed();
        assert!(
            matches!(counted, Err(opsq_store::StoreError::Unavailable(_))),
            "a count behind a lock: {counted:?}"
        );
        assert!(took < std::time::Duration::from_secs(2), "gave up after {took:?}, not within {within:?}");

        lock.rollback().await.expect("release the lock");
        let counts = store.unfinished_counts(within).await.expect("a count once the lock is gone");
        assert_eq!(counts.not_started, 1);
        drop(db);
        drop(guard);
    }
}
