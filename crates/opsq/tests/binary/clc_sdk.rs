//! Compatibility with the real `clc-sdk` 2.51 Python package from PyPI, installed in a
//! virtualenv under `target/` on first use. Never skipped: without Python or PyPI the
//! test fails and says why.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use crate::harness::{opsq, temp_dir, text, ServerProcess};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Serialises the virtualenv's creation: the tests of this binary run in parallel, and
/// two `python3 -m venv` runs on one directory race each other ("File exists").
static VENV_SETUP: Mutex<()> = Mutex::new(());

/// The virtualenv's python with clc-sdk 2.51 installed (created once, then reused).
pub fn clc_python() -> PathBuf {
    let venv = workspace_root().join("target/clc-sdk-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".clc-sdk-2.51");
    let _setup = VENV_SETUP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !ready.exists() {
        // `--clear` starts over from a virtualenv an interrupted run left half made.
        let status = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .expect("python3 is required for the clc-sdk tests");
        assert!(status.success(), "python3 -m venv failed");
        let out = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "clc-sdk==2.51"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pip install clc-sdk==2.51 failed: {}", text(&out.stderr));
        std::fs::write(&ready, "").unwrap();
    }
    python
}

#[tokio::test]
async fn the_clc_sdk_python_package_works_unchanged() {
    let python = clc_python();
    let (_guard, data) = temp_dir();
    let server = ServerProcess::start(&data, &["--simulate", "--sim-step-ms", "50"]);
    let out = opsq(
        &[
            "admin",
            "user",
            "add",
            "sdk-user",
            "--account",
            "OPSQ",
            "--role",
            "ServerAdmin",
            "--password-stdin",
        ],
        &data,
        "sdk password 1\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = workspace_root().join("tests/compat/clc_sdk_v2.py");
    let out = Command::new(python)
        .arg(script)
        .env("OPSQ_URL", &server.base)
        .env("OPSQ_USER", "sdk-user")
        .env("OPSQ_PASSWORD", "sdk password 1")
        .env("OPSQ_ALIAS", "OPSQ")
        .output()
        .unwrap();
    assert!(out.status.success(), "clc-sdk script failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("5 passed, 0 failed"));
}

#[tokio::test]
async fn the_clc_sdk_v1_client_works_unchanged() {
    let python = clc_python();
    let (_guard, data) = temp_dir();
    let server = ServerProcess::start(&data, &["--simulate", "--sim-step-ms", "10"]);
    let token = server.login("admin", server.admin_password.as_deref().unwrap()).await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for kind in ["server.powerOn", "v1.waits", "v1.fails"] {
        let response = http
            .post(server.url("/v2/operations/OPSQ/jobs"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"kind": kind}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        ids.push(body["number"].as_i64().unwrap());
    }
    // Nobody handles v1.fails in the server: fail it as a worker process would,
    // through the store the server shares.
    let store = opsq_store::Store::open_sqlite(&data).unwrap();
    let claim = store
        .claim(opsq_store::ClaimRequest {
            kinds: vec!["v1.fails".into()],
            limit: 1,
            owner: "test-worker".into(),
            lease_ms: 60_000,
            accounts: None,
        })
        .await
        .unwrap()
        .remove(0);
    store
        .finish(claim.job.number, &claim.lease_token, opsq_store::JobOutcome::Fatal("broken".into()))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.job(ids[0]).await.unwrap().unwrap().status != opsq_domain::JobStatus::Succeeded {
        assert!(std::time::Instant::now() < deadline, "the simulated job never succeeded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let key = opsq(&["admin", "api-key", "add", "--account", "OPSQ", "--json"], &data, "");
    assert!(key.status.success(), "{}", text(&key.stderr));
    let key: serde_json::Value = serde_json::from_slice(&key.stdout).unwrap();
    let script = workspace_root().join("tests/compat/clc_sdk_v1.py");
    let out = Command::new(python)
        .arg(script)
        .env("OPSQ_URL", &server.base)
        .env("OPSQ_API_KEY", key["apiKey"].as_str().unwrap())
        .env("OPSQ_API_PASSWORD", key["password"].as_str().unwrap())
        .env("OPSQ_DONE_ID", ids[0].to_string())
        .env("OPSQ_PENDING_ID", ids[1].to_string())
        .env("OPSQ_FAILED_ID", ids[2].to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "clc-sdk v1 script failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("passed, 0 failed"));
}
