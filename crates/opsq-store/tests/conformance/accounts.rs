//! Accounts, users, API keys, settings and bootstrap.

use opsq_domain::Role;
use opsq_store::{now_ms, Account, Store, V1Session};

use crate::support::*;

pub async fn ping_and_describe(store: Store) {
    store.ping().await.expect("a fresh store answers a ping");
    assert!(!store.describe().trim().is_empty(), "describe names the backend");
}

pub async fn accounts_form_a_tree(store: Store) {
    // ROOT ─┬─ CHILD ── GRAND
    //       └─ SIBLING
    let root = account("ROOT", None);
    let child = Account {
        alias: alias("CHILD"),
        location: location("NY1"),
        parent: Some(alias("ROOT")),
        created_at: 1_700_000_000_123,
    };
    let grand = Account {
        alias: alias("GRAND"),
        location: location("UC1"),
        parent: Some(alias("CHILD")),
        created_at: 1_700_000_000_456,
    };
    let sibling = account("SIBLING", Some("ROOT"));
    for a in [&root, &child, &grand, &sibling] {
        store.create_account(a.clone()).await.expect("create account");
    }

    // Every field round-trips, and aliases are looked up in any case.
    assert_eq!(store.account(&alias("root")).await.unwrap(), Some(root.clone()));
    assert_eq!(store.account(&alias("Child")).await.unwrap(), Some(child.clone()));
    assert_eq!(store.account(&alias("GRAND")).await.unwrap(), Some(grand.clone()));
    assert_eq!(store.account(&alias("SIBLING")).await.unwrap(), Some(sibling.clone()));
    assert_eq!(store.account(&alias("NOPE")).await.unwrap(), None);

    let within = |r: &'static str, a: &'static str| {
        let store = store.clone();
        async move { store.is_within(&alias(r), &alias(a)).await.expect("is_within") }
    };
    // An account, its children and their children are within it.
    assert!(within("ROOT", "ROOT").await);
    assert!(within("ROOT", "CHILD").await);
    assert!(within("ROOT", "GRAND").await);
    assert!(within("ROOT", "SIBLING").await);
    assert!(within("CHILD", "CHILD").await);
    assert!(within("CHILD", "GRAND").await);
    // Parents, siblings, cousins and unknown accounts are not.
    assert!(!within("CHILD", "ROOT").await);
    assert!(!within("GRAND", "CHILD").await);
    assert!(!within("GRAND", "ROOT").await);
    assert!(!within("CHILD", "SIBLING").await);
    assert!(!within("SIBLING", "CHILD").await);
    assert!(!within("SIBLING", "GRAND").await);
    assert!(!within("ROOT", "NOPE").await);
    assert!(!within("NOPE", "CHILD").await);

    let subtree = |r: &'static str| {
        let store = store.clone();
        async move {
            let mut aliases = store.subtree(&alias(r)).await.expect("subtree");
            aliases.sort();
            aliases.into_iter().map(|a| a.as_str().to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(subtree("ROOT").await, ["CHILD", "GRAND", "ROOT", "SIBLING"]);
    assert_eq!(subtree("CHILD").await, ["CHILD", "GRAND"]);
    assert_eq!(subtree("GRAND").await, ["GRAND"]);
    assert_eq!(subtree("SIBLING").await, ["SIBLING"]);
    assert!(subtree("NOPE").await.is_empty());
}

pub async fn duplicate_account_is_refused(store: Store) {
    accounts(&store, &["CHILD"]).await;
    let mut again = account("ROOT", None);
    again.location = location("NY1");
    assert_duplicate(store.create_account(again).await);
    // Same alias under another parent, in another case: still the same account.
    assert_duplicate(store.create_account(account("child", None)).await);

    // The first account is untouched.
    assert_eq!(store.account(&alias("ROOT")).await.unwrap(), Some(account("ROOT", None)));
    assert_eq!(store.account(&alias("CHILD")).await.unwrap(), Some(account("CHILD", Some("ROOT"))));
    assert!(store.is_within(&alias("ROOT"), &alias("CHILD")).await.unwrap());
}

pub async fn account_with_unknown_parent_is_not_found(store: Store) {
    accounts(&store, &[]).await;
    assert_not_found(store.create_account(account("ORPHAN", Some("NOPE"))).await);
    assert_eq!(store.account(&alias("ORPHAN")).await.unwrap(), None);
    assert_eq!(store.subtree(&alias("ROOT")).await.unwrap(), vec![alias("ROOT")]);
    // The alias is still free once its parent exists.
    store.create_account(account("NOPE", Some("ROOT"))).await.unwrap();
    store.create_account(account("ORPHAN", Some("NOPE"))).await.unwrap();
    assert!(store.is_within(&alias("ROOT"), &alias("ORPHAN")).await.unwrap());
}

pub async fn users_round_trip_and_match_case_insensitively(store: Store) {
    accounts(&store, &["CHILD"]).await;
    let alice = new_user("Alice", "ROOT", &["AccountAdmin", "Worker"]);
    store.create_user(alice.clone()).await.expect("create Alice");
    let viewer = new_user("bob", "CHILD", &[]);
    store.create_user(viewer.clone()).await.expect("create bob");

    for spelling in ["Alice", "alice", "ALICE", "aLiCe"] {
        let found = store.user(spelling).await.unwrap().unwrap_or_else(|| panic!("{spelling}"));
        assert!(found.username.eq_ignore_ascii_case("alice"), "{}", found.username);
        assert_eq!(found.account, alias("ROOT"));
        assert_eq!(found.password_hash, alice.password_hash);
        assert_eq!(found.roles.0, vec![Role::AccountAdmin, Role::Worker]);
    }
    let bob = store.user("BOB").await.unwrap().expect("bob");
    assert_eq!(bob.account, alias("CHILD"));
    assert_eq!(bob.password_hash, viewer.password_hash);
    assert!(bob.roles.0.is_empty());
    assert!(store.user("carol").await.unwrap().is_none());

    // A second user whose name differs only in case is a duplicate.
    let mut impostor = new_user("ALICE", "CHILD", &["AccountViewer"]);
    impostor.password_hash = "other".to_string();
    assert_duplicate(store.create_user(impostor).await);
    let still = store.user("alice").await.unwrap().expect("alice");
    assert_eq!(still.password_hash, alice.password_hash);
    assert_eq!(still.account, alias("ROOT"));

    assert_not_found(store.create_user(new_user("carol", "NOPE", &["Worker"])).await);
    assert!(store.user("carol").await.unwrap().is_none());
}

pub async fn api_keys_round_trip(store: Store) {
    accounts(&store, &["CHILD"]).await;
    let key = api_key("k-123", "CHILD");
    store.create_api_key(key.clone()).await.expect("create key");
    store.create_api_key(api_key("k-456", "ROOT")).await.expect("create second key");

    let found = store.api_key("k-123").await.unwrap().expect("k-123");
    assert_eq!(found.key, "k-123");
    assert_eq!(found.account, alias("CHILD"));
    assert_eq!(found.password_hash, key.password_hash);
    assert_eq!(store.api_key("k-456").await.unwrap().expect("k-456").account, alias("ROOT"));
    assert!(store.api_key("k-999").await.unwrap().is_none());

    let mut again = api_key("k-123", "ROOT");
    again.password_hash = "other".to_string();
    assert_duplicate(store.create_api_key(again).await);
    let still = store.api_key("k-123").await.unwrap().expect("k-123");
    assert_eq!((still.account, still.password_hash), (alias("CHILD"), key.password_hash));

    assert_not_found(store.create_api_key(api_key("k-789", "NOPE")).await);
    assert!(store.api_key("k-789").await.unwrap().is_none());
}

pub async fn setting_or_init_keeps_the_first_value(store: Store) {
    let first = store.setting_or_init("signing-key", || "first".to_string()).await.unwrap();
    assert_eq!(first, "first");
    for candidate in ["second", "third"] {
        let value = store.setting_or_init("signing-key", move || candidate.to_string()).await.unwrap();
        assert_eq!(value, "first", "a later init never replaces the stored value");
    }
    // Keys are independent.
    let other = store.setting_or_init("other", || "x".to_string()).await.unwrap();
    assert_eq!(other, "x");
    assert_eq!(store.setting_or_init("signing-key", || "y".into()).await.unwrap(), "first");
    assert_eq!(store.setting_or_init("other", || "y".into()).await.unwrap(), "x");
}

pub async fn bootstrap_runs_only_on_an_empty_store(store: Store) {
    let admin = new_user("admin", "ROOT", &["AccountAdmin"]);
    assert!(store.bootstrap(account("ROOT", None), admin.clone()).await.unwrap());
    assert_eq!(store.account(&alias("ROOT")).await.unwrap(), Some(account("ROOT", None)));
    let user = store.user("admin").await.unwrap().expect("admin user");
    assert_eq!(user.account, alias("ROOT"));
    assert_eq!(user.password_hash, admin.password_hash);
    assert_eq!(user.roles.0, vec![Role::AccountAdmin]);

    let second =
        store.bootstrap(account("OTHER", None), new_user("boss", "OTHER", &["AccountAdmin"])).await.unwrap();
    assert!(!second, "bootstrap happens once");
    assert!(store.account(&alias("OTHER")).await.unwrap().is_none());
    assert!(store.user("boss").await.unwrap().is_none());
    // Even the same request again does nothing.
    assert!(!store.bootstrap(account("ROOT", None), admin).await.unwrap());
}

pub async fn bootstrap_is_skipped_when_accounts_exist(store: Store) {
    store.create_account(account("EXISTING", None)).await.unwrap();
    let made =
        store.bootstrap(account("ROOT", None), new_user("admin", "ROOT", &["AccountAdmin"])).await.unwrap();
    assert!(!made);
    assert!(store.account(&alias("ROOT")).await.unwrap().is_none());
    assert!(store.user("admin").await.unwrap().is_none());
}

pub async fn failed_bootstrap_leaves_nothing_behind(store: Store) {
    // The admin names an account that does not exist, so the bootstrap fails as a
    // whole: the root account it created first must not stay behind.
    let broken = store.bootstrap(account("ROOT", None), new_user("admin", "NOPE", &["AccountAdmin"])).await;
    assert_not_found(broken);
    assert!(store.account(&alias("ROOT")).await.unwrap().is_none());
    assert!(store.user("admin").await.unwrap().is_none());

    let made =
        store.bootstrap(account("ROOT", None), new_user("admin", "ROOT", &["AccountAdmin"])).await.unwrap();
    assert!(made, "a failed bootstrap does not count");
    assert!(store.user("admin").await.unwrap().is_some());
}

pub async fn panicking_setting_init_does_not_break_the_store(store: Store) {
    // The init closure is the caller's code; if it panics, that must stay the caller's
    // problem and not take the store's writes down with it.
    let attempt = tokio::spawn({
        let store = store.clone();
        async move { store.setting_or_init("broken", || panic!("init failed on purpose")).await }
    })
    .await;
    assert!(!matches!(attempt, Ok(Ok(_))), "a panicking init stores nothing: {attempt:?}");

    store.create_account(account("ROOT", None)).await.expect("writes still work");
    assert_eq!(store.account(&alias("ROOT")).await.unwrap(), Some(account("ROOT", None)));
    let value = store.setting_or_init("broken", || "fixed".to_string()).await.unwrap();
    assert_eq!(value, "fixed", "the failed init left the key unset");
}

pub async fn v1_sessions_are_live_until_they_expire_or_are_deleted(store: Store) {
    accounts(&store, &["ACME"]).await;
    let now = now_ms();
    let session = |hash: &str, expires_at: i64| V1Session {
        token_hash: hash.to_string(),
        api_key: "k-1".to_string(),
        account: alias("ACME"),
        created_at: now,
        expires_at,
    };
    let live = session("h-live", now + 3_600_000);
    let other = session("h-other", now + 3_600_000);
    let expired = session("h-old", now - 1);
    for s in [&live, &other, &expired] {
        store.create_v1_session(s.clone()).await.expect("create session");
    }
    assert_eq!(store.v1_session("h-live").await.unwrap(), Some(live.clone()));
    assert_eq!(store.v1_session("h-other").await.unwrap(), Some(other.clone()));
    assert_eq!(store.v1_session("h-old").await.unwrap(), None, "an expired session is not live");
    assert_eq!(store.v1_session("h-none").await.unwrap(), None);
    assert_duplicate(store.create_v1_session(session("h-live", now + 60_000)).await);
    assert_eq!(store.v1_session("h-live").await.unwrap(), Some(live));

    store.delete_v1_session("h-live").await.unwrap();
    assert_eq!(store.v1_session("h-live").await.unwrap(), None);
    assert_eq!(store.v1_session("h-other").await.unwrap(), Some(other), "only that session ends");
    store.delete_v1_session("h-none").await.expect("deleting an unknown session is not an error");
}
