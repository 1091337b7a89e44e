//! The harness the CLI end-to-end tests share: a real `opsq serve` on a free port,
//! and `opsq` client commands run with their own config directory and a deadline.
#![allow(dead_code)] // each test binary uses a different part of it

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

pub const OPSQ: &str = env!("CARGO_BIN_EXE_opsq");
/// How long any one CLI call may take before the test calls it hung.
pub const CALL_LIMIT: Duration = Duration::from_secs(90);

/// A running `opsq serve`, killed when dropped so a failing test leaves nothing behind.
pub struct Server {
    child: Child,
    pub url: String,
    pub admin_password: String,
    stderr_log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the server on a free port and reads its stdout until it says where it
    /// listens (and, on a fresh store, the admin password).
    pub fn start(data_dir: &Path, stderr_log: PathBuf, extra: &[&str]) -> TestResult<Self> {
        let log = std::fs::File::create(&stderr_log)?;
        let mut child = Command::new(OPSQ)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("OPSQ_SERVER")
            .env_remove("OPSQ_PASSWORD")
            .env_remove("OPSQ_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()?;
        let stdout = child.stdout.take().ok_or("server stdout was not captured")?;
        let mut server = Server { child, url: String::new(), admin_password: String::new(), stderr_log };

        // A thread reads stdout for as long as the server lives, so the server never
        // blocks on a full pipe; the test only looks at the first lines.
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.url.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines_rx.recv_timeout(left).map_err(|_| {
                format!("the server did not say it was listening within 30 s; stderr:\n{}", server.stderr())
            })?;
            if let Some(password) = line.strip_prefix("opsq: admin password (shown once): ") {
                server.admin_password = password.trim().to_string();
            } else if let Some(url) = line.strip_prefix("opsq: listening on ") {
                server.url = url.trim().to_string();
            }
        }
        if server.admin_password.is_empty() {
            return Err(
                format!("a fresh store printed no admin password; stderr:\n{}", server.stderr()).into()
            );
        }
        Ok(server)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

/// What a finished CLI call left behind.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn describe(&self) -> String {
        format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", self.code(), self.stdout, self.stderr)
    }
}

/// Runs `opsq ARGS` with its own config directory and nothing inherited that would
/// change its behaviour; kills it if it runs past [`CALL_LIMIT`].
pub fn opsq(config_dir: &Path, args: &[&str], stdin: Option<&str>) -> TestResult<Run> {
    let mut child = Command::new(OPSQ)
        .args(args)
        .env("OPSQ_CONFIG_DIR", config_dir)
        .env_remove("OPSQ_SERVER")
        .env_remove("OPSQ_PASSWORD")
        .env_remove("OPSQ_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + CALL_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("`opsq {}` still ran after {CALL_LIMIT:?}", args.join(" ")).into());
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().map_err(|_| "stdout reader panicked")?;
    let stderr = stderr.join().map_err(|_| "stderr reader panicked")?;
    Ok(Run { status, stdout, stderr })
}

pub fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}
