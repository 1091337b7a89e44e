//! Compatibility with the real `clc-sdk` 2.51 Python package from PyPI, installed in a
//! virtualenv under `target/` on first use. Never skipped: without Python or PyPI the
//! test fails and says why.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::{opsq, temp_dir, text, ServerProcess};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The virtualenv's python with clc-sdk 2.51 installed (created once, then reused).
pub fn clc_python() -> PathBuf {
    let venv = workspace_root().join("target/clc-sdk-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".clc-sdk-2.51");
    if !ready.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
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
