//! End to end: the real `opsq serve --simulate`, driven by the real client commands
//! (`login`, `submit`, `wait`, `status`) as a user or a script would run them.

use std::{
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

mod common;

use common::{opsq, Run, Server, TestResult};

#[test]
fn login_submit_wait_and_status_against_the_real_server() -> TestResult {
    let temp = tempfile::tempdir()?;
    let data_dir = temp.path().join("data");
    let config_dir = temp.path().join("config");
    let server =
        Server::start(&data_dir, temp.path().join("server.stderr"), &["--simulate", "--sim-step-ms", "20"])?;
    let context = |run: &Run| format!("{}\nserver stderr:\n{}", run.describe(), server.stderr());

    // Not logged in yet: a clear error, before any request.
    let run = opsq(&config_dir, &["status", "wa1-1"], None)?;
    assert_ne!(run.code(), Some(0), "{}", context(&run));
    assert!(run.stderr.contains("opsq login"), "{}", context(&run));

    // A wrong password is refused with the server's message.
    let run = opsq(
        &config_dir,
        &["login", "--username", "admin", "--password-stdin", "--server", &server.url],
        Some("wrong\n"),
    )?;
    assert_ne!(run.code(), Some(0), "{}", context(&run));
    assert!(run.stderr.contains("didn't recognize the username or password"), "{}", context(&run));

    // Log in, with the password on stdin.
    let password_line = format!("{}\n", server.admin_password);
    let run = opsq(
        &config_dir,
        &["login", "--username", "admin", "--password-stdin", "--server", &server.url],
        Some(&password_line),
    )?;
    assert_eq!(run.code(), Some(0), "{}", context(&run));
    assert_eq!(run.stdout.trim(), "Logged in as admin (account OPSQ, location WA1)", "{}", context(&run));

    let credentials_path = config_dir.join("opsq").join("credentials.json");
    let mode = std::fs::metadata(&credentials_path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the credentials file must be private");
    let credentials: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&credentials_path)?)?;
    let token = credentials["token"].as_str().ok_or("no token saved")?;
    assert!(!token.is_empty());
    assert!(!run.stdout.contains(token) && !run.stderr.contains(token), "the token must never be printed");
    assert!(!run.stdout.contains(&server.admin_password) && !run.stderr.contains(&server.admin_password));
    assert_eq!(credentials["userName"], "admin");
    assert_eq!(credentials["accountAlias"], "OPSQ");
    assert_eq!(credentials["locationAlias"], "WA1");

    // Submit (the server comes from the saved login) and wait for it.
    let run = opsq(
        &config_dir,
        &[
            "submit",
            "--kind",
            "server.powerOn",
            "--title",
            "Power on WA1DEMOWEB01",
            "--payload",
            r#"{"server":"WA1DEMOWEB01"}"#,
        ],
        None,
    )?;
    assert_eq!(run.code(), Some(0), "{}", context(&run));
    let id = run.stdout.trim().to_string();
    assert!(id.starts_with("wa1-"), "a status id such as wa1-12, got {id:?}");

    let run = opsq(&config_dir, &["wait", &id, "--timeout", "60", "--interval-ms", "50"], None)?;
    assert_eq!(run.code(), Some(0), "{}", context(&run));
    assert_eq!(run.stdout.trim(), format!("{id} succeeded"), "{}", context(&run));

    let run = opsq(&config_dir, &["status", &id], None)?;
    assert_eq!(run.code(), Some(0), "{}", context(&run));
    assert_eq!(run.stdout.trim(), "succeeded", "{}", context(&run));

    let run = opsq(&config_dir, &["status", &id, "--json"], None)?;
    assert_eq!(run.code(), Some(0), "{}", context(&run));
    let job: serde_json::Value = serde_json::from_str(&run.stdout)?;
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["kind"], "server.powerOn");
    assert_eq!(job["payload"]["server"], "WA1DEMOWEB01");

    // An idempotent submit returns the same job the second time.
    let args = ["submit", "--kind", "server.powerOff", "--idempotency-key", "cli-test-1", "--json"];
    let first = opsq(&config_dir, &args, None)?;
    assert_eq!(first.code(), Some(0), "{}", context(&first));
    let second = opsq(&config_dir, &args, None)?;
    assert_eq!(second.code(), Some(0), "{}", context(&second));
    let first_job: serde_json::Value = serde_json::from_str(&first.stdout)?;
    let second_job: serde_json::Value = serde_json::from_str(&second.stdout)?;
    assert_eq!(first_job["id"], second_job["id"]);
    assert!(second.stderr.contains("idempotency key was used before"), "{}", context(&second));
    let second_id = second_job["id"].as_str().ok_or("no id")?.to_string();

    // Several jobs at once, as JSON lines.
    let run = opsq(
        &config_dir,
        &["wait", &id, &second_id, "--timeout", "60", "--interval-ms", "50", "--json"],
        None,
    )?;
    assert_eq!(run.code(), Some(0), "{}", context(&run));
    let lines: Vec<serde_json::Value> =
        run.stdout.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2, "{}", context(&run));
    assert_eq!(lines[1]["id"], second_id.as_str());
    assert_eq!(lines[1]["status"], "succeeded");

    // An unknown id: exit 2, with the server's 404 message.
    let run = opsq(&config_dir, &["wait", "wa1-999999", "--timeout", "30"], None)?;
    assert_eq!(run.code(), Some(2), "{}", context(&run));
    assert!(run.stderr.contains("wa1-999999") && run.stderr.contains("404"), "{}", context(&run));
    assert_eq!(run.stdout.trim(), "wa1-999999 error", "{}", context(&run));

    // A malformed id is caught before asking, also with exit 2.
    let run = opsq(&config_dir, &["wait", "not-an-id"], None)?;
    assert_eq!(run.code(), Some(2), "{}", context(&run));
    assert!(run.stderr.contains("wa1-12345"), "the message shows the expected shape: {}", context(&run));

    // Invalid --payload: a clear error, nothing sent.
    let run = opsq(&config_dir, &["submit", "--kind", "server.powerOn", "--payload", "{nope"], None)?;
    assert_ne!(run.code(), Some(0), "{}", context(&run));
    assert!(run.stderr.contains("--payload is not valid JSON"), "{}", context(&run));

    // With the server gone, `wait` retries until its timeout instead of failing at once.
    drop(server);
    let started = Instant::now();
    let run = opsq(&config_dir, &["wait", &id, "--timeout", "2", "--interval-ms", "100"], None)?;
    assert_eq!(run.code(), Some(2), "{}", run.describe());
    assert!(started.elapsed() >= Duration::from_secs(2), "gave up early: {}", run.describe());
    assert!(run.stderr.contains("timed out"), "{}", run.describe());
    assert!(run.stderr.contains("could not reach"), "{}", run.describe());
    Ok(())
}
