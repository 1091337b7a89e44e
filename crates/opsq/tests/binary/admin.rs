use crate::harness::{opsq, temp_dir, text, ServerProcess};

#[tokio::test]
async fn admin_commands_work_while_the_server_runs() {
    let (_guard, data) = temp_dir();
    let server = ServerProcess::start(&data, &[]);
    assert!(server.admin_password.is_some(), "first start prints the admin password");

    let out = opsq(&["admin", "account", "add", "acme", "--location", "ca3", "--parent", "OPSQ"], &data, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ACME"));

    let out = opsq(
        &[
            "admin",
            "user",
            "add",
            "ops@acme",
            "--account",
            "ACME",
            "--role",
            "ServerOperator",
            "--password-stdin",
        ],
        &data,
        "a long enough password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The running server sees the new user at once.
    let token = server.login("ops@acme", "a long enough password").await;
    assert!(!token.is_empty());

    let out = opsq(&["admin", "api-key", "add", "--account", "acme", "--json"], &data, "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(key["apiKey"].as_str().unwrap().len(), 32);
    assert!(key["password"].as_str().unwrap().len() >= 16);
}

#[tokio::test]
async fn duplicate_or_invalid_input_is_a_clear_error_and_a_non_zero_exit() {
    let (_guard, data) = temp_dir();
    let ok = opsq(&["admin", "account", "add", "ROOT1", "--location", "WA1"], &data, "");
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    for (args, stdin, expected) in [
        (vec!["admin", "account", "add", "root1", "--location", "WA1"], "", "already exists"),
        (vec!["admin", "account", "add", "x", "--location", "WA1"], "", "invalid"),
        (vec!["admin", "account", "add", "GOOD", "--location", "WASHINGTON"], "", "invalid"),
        (
            vec!["admin", "account", "add", "KID", "--location", "WA1", "--parent", "NOPE"],
            "",
            "does not exist",
        ),
        (
            vec!["admin", "user", "add", "bob", "--account", "ROOT1", "--password-stdin"],
            "short\n",
            "at least 8",
        ),
        (vec!["admin", "user", "add", "bob", "--account", "ROOT1"], "", "--password-stdin"),
        (
            vec!["admin", "user", "add", "bob", "--account", "NOPE", "--password-stdin"],
            "long password\n",
            "does not exist",
        ),
        (
            vec![
                "admin",
                "user",
                "add",
                "bob",
                "--account",
                "ROOT1",
                "--role",
                "Emperor",
                "--password-stdin",
            ],
            "long password\n",
            "unknown",
        ),
        (vec!["admin", "api-key", "add", "--account", "NOPE"], "", "does not exist"),
    ] {
        let out = opsq(&args, &data, stdin);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let first = opsq(
        &["admin", "user", "add", "bob", "--account", "ROOT1", "--password-stdin"],
        &data,
        "long password\n",
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    let again = opsq(
        &["admin", "user", "add", "BOB", "--account", "ROOT1", "--password-stdin"],
        &data,
        "long password\n",
    );
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists"));
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let (_guard, data) = temp_dir();
    let _first = ServerProcess::start(&data, &[]);
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("already running"), "{}", text(&out.stderr));
}
