//! End to end: the real `opsq serve`, jobs submitted through the jobs API, and the
//! real `opsq worker --exec` running a shell script per job; plus `opsq cancel` and
//! `opsq list` against the same server.
//!
//! Every wait is a poll with a deadline; the only sleeps are inside the job script
//! (which waits for files the test creates, so the test decides when a job ends).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

mod common;

use common::{opsq, Server, TestResult, OPSQ};

/// How long any one state may take to show up before the test calls it stuck.
const STATE_LIMIT: Duration = Duration::from_secs(60);
/// The lease the server hands out: short, so heartbeats (a third of it) carry cancel
/// requests to the worker within about a second.
const LEASE_SECS: &str = "3";

/// The job script: what it does is picked by the job's title.
const SCRIPT: &str = r#"
dir="$1"
input=$(cat)
case "$OPSQ_JOB_TITLE" in
ok)
    echo "PROGRESS 50 1 halfway there"
    while [ ! -e "$dir/go-$OPSQ_JOB_ID" ]; do sleep 0.05; done
    echo "note for the log" >&2
    printf '{"echo": %s, "attempt": %s, "kind": "%s", "number": %s, "alias": "%s", "server": "%s", "id": "%s"}\n' \
        "$input" "$OPSQ_JOB_ATTEMPT" "$OPSQ_JOB_KIND" "$OPSQ_JOB_NUMBER" "$OPSQ_ACCOUNT_ALIAS" "$OPSQ_SERVER" "$OPSQ_JOB_ID"
    ;;
flaky)
    if [ "$OPSQ_JOB_ATTEMPT" = 1 ]; then
        echo "the backend is busy" >&2
        exit 75
    fi
    echo "second time lucky"
    ;;
fatal)
    echo "looking for the disk" >&2
    echo "disk wa1-disk-9 not found" >&2
    exit 3
    ;;
sleepy)
    # Runs until stopped, unless this is a later attempt (then it finishes at once).
    if [ "$OPSQ_JOB_ATTEMPT" != 1 ]; then
        echo '{"rerun": true}'
        exit 0
    fi
    trap 'echo terminated > "$dir/term-$OPSQ_JOB_ID"; exit 143' TERM
    sleep 120 &
    echo $! > "$dir/child-$OPSQ_JOB_ID"
    echo $$ > "$dir/pid-$OPSQ_JOB_ID"
    wait $!
    # Only reached if the trap did not run (the test then misses the term file).
    echo "sleep ended without the trap" >&2
    exit 1
    ;;
gated)
    echo $$ > "$dir/pid-$OPSQ_JOB_ID"
    while [ ! -e "$dir/go-$OPSQ_JOB_ID" ]; do sleep 0.05; done
    echo '{"gated": "done"}'
    ;;
*)
    echo "unknown test mode $OPSQ_JOB_TITLE" >&2
    exit 2
    ;;
esac
"#;

/// A running `opsq serve`, killed when dropped.
/// The jobs API, spoken directly (the worker under test is the only other client).
struct Api {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn login(server: &Server) -> TestResult<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let http = reqwest::Client::new();
        let base = server.url.trim_end_matches('/').to_string();
        let body = json!({"username": "admin", "password": server.admin_password});
        let login: Value = runtime.block_on(async {
            http.post(format!("{base}/v2/authentication/login")).json(&body).send().await?.json().await
        })?;
        let token = login["bearerToken"].as_str().ok_or("no token in the login answer")?.to_string();
        Ok(Self { runtime, http, base, token })
    }

    /// Submits a `test.echo` job whose title picks the script's behaviour.
    fn submit(&self, mode: &str, payload: Value, max_attempts: u32) -> TestResult<String> {
        let body =
            json!({"kind": "test.echo", "title": mode, "payload": payload, "maxAttempts": max_attempts});
        self.submit_body(&body)
    }

    fn submit_body(&self, body: &Value) -> TestResult<String> {
        let url = format!("{}/v2/operations/OPSQ/jobs", self.base);
        let (status, job): (u16, Value) = self.runtime.block_on(async {
            let answer = self.http.post(url).bearer_auth(&self.token).json(body).send().await?;
            Ok::<_, reqwest::Error>((answer.status().as_u16(), answer.json().await?))
        })?;
        if status != 202 {
            return Err(format!("submit answered {status}: {job}").into());
        }
        Ok(job["id"].as_str().ok_or("no id in the submit answer")?.to_string())
    }

    fn job(&self, id: &str) -> TestResult<Value> {
        let url = format!("{}/v2/operations/OPSQ/jobs/{id}", self.base);
        Ok(self.runtime.block_on(async {
            self.http.get(url).bearer_auth(&self.token).send().await?.error_for_status()?.json().await
        })?)
    }

    /// Polls the job until `done` holds, returning it; fails after [`STATE_LIMIT`].
    fn wait_job(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> TestResult<Value> {
        let deadline = Instant::now() + STATE_LIMIT;
        loop {
            let job = self.job(id)?;
            if done(&job) {
                return Ok(job);
            }
            if Instant::now() > deadline {
                return Err(format!("{id} never became {what}; last seen:\n{job:#}").into());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ended(&self, id: &str) -> TestResult<Value> {
        self.wait_job(id, "succeeded or failed", |job| {
            job["status"] == "succeeded" || job["status"] == "failed"
        })
    }
}

/// Polls until `path` exists.
fn wait_file(path: &Path) -> TestResult {
    let deadline = Instant::now() + STATE_LIMIT;
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!("{} never appeared", path.display()).into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Polls until the process whose pid is in `pid_file` is gone (reaped).
fn wait_process_gone(pid_file: &Path) -> TestResult {
    let pid = std::fs::read_to_string(pid_file)?.trim().to_string();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let deadline = Instant::now() + STATE_LIMIT;
    loop {
        // Gone, or a zombie about to be reaped by init: either way it no longer runs.
        let state = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        let running = !state.is_empty() && !state.contains(") Z ");
        if !running {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("process {pid} from {} still runs", pid_file.display()).into());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `opsq worker`, killed when dropped.
struct WorkerProcess {
    child: Child,
    stderr_log: PathBuf,
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl WorkerProcess {
    /// Starts `opsq worker --kind 'test.*'` with credentials from OPSQ_TOKEN and
    /// OPSQ_SERVER only (its config directory is empty), as a service would run it.
    fn start(temp: &Path, name: &str, api: &Api, server: &Server, extra: &[&str]) -> TestResult<Self> {
        let stderr_log = temp.join(format!("{name}.stderr"));
        let script = temp.join("job.sh");
        let exec = format!("sh {} {}", script.display(), temp.display());
        let child = Command::new(OPSQ)
            .args(["worker", "--kind", "test.*", "--exec", &exec, "--worker-id", name])
            .args(extra)
            .env("OPSQ_CONFIG_DIR", temp.join(format!("{name}-empty-config")))
            .env("OPSQ_TOKEN", &api.token)
            .env("OPSQ_SERVER", &server.url)
            .env("OPSQ_LOG", "info")
            .env_remove("OPSQ_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&stderr_log)?))
            .spawn()?;
        Ok(Self { child, stderr_log })
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    fn terminate(&self) -> TestResult {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            return Err("kill -TERM failed".into());
        }
        Ok(())
    }

    /// Waits for the worker to exit, failing if it takes longer than `limit`.
    fn wait_exit(&mut self, limit: Duration) -> TestResult<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(
                    format!("the worker still ran after {limit:?}; stderr:\n{}", self.stderr()).into()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A server, an API session, a saved CLI login, and the job script, in one temp dir.
struct Setup {
    temp: tempfile::TempDir,
    server: Server,
    api: Api,
    config_dir: PathBuf,
}

impl Setup {
    fn new() -> TestResult<Self> {
        let temp = tempfile::tempdir()?;
        std::fs::write(temp.path().join("job.sh"), SCRIPT)?;
        let server = Server::start(
            &temp.path().join("data"),
            temp.path().join("server.stderr"),
            &["--lease-secs", LEASE_SECS],
        )?;
        let api = Api::login(&server)?;
        // The CLI commands use a saved login, as a person would.
        let config_dir = temp.path().join("config");
        let mut login = Command::new(OPSQ)
            .args(["login", "--username", "admin", "--server", &server.url])
            .env("OPSQ_CONFIG_DIR", &config_dir)
            .env("OPSQ_PASSWORD", &server.admin_password)
            .env_remove("OPSQ_TOKEN")
            .stdout(Stdio::null())
            .spawn()?;
        if !login.wait()?.success() {
            return Err("opsq login failed".into());
        }
        Ok(Self { temp, server, api, config_dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.temp.path().join(name)
    }
}

#[test]
fn worker_runs_jobs_reports_progress_retries_fails_and_obeys_cancel() -> TestResult {
    let setup = Setup::new()?;
    let api = &setup.api;

    // Without --exec there is nothing to run: a clear error, before any request.
    let run = opsq(&setup.config_dir, &["worker", "--kind", "test.*"], None)?;
    assert!(!run.status.success(), "{}", run.describe());
    assert!(run.stderr.contains("--exec"), "{}", run.describe());

    let ok = api.submit("ok", json!({"n": 1, "text": "héllo"}), 3)?;
    let flaky = api.submit("flaky", json!(null), 2)?;
    let fatal = api.submit("fatal", json!({}), 3)?;
    let sleepy = api.submit("sleepy", json!({}), 3)?;
    // A kind no worker runs, so it stays waiting: cancelling it fails it at once.
    let waiting = api.submit_body(&json!({"kind": "other.waits", "title": "never claimed"}))?;

    let mut worker =
        WorkerProcess::start(setup.temp.path(), "main", api, &setup.server, &["--concurrency", "4"])?;
    let context = |worker: &WorkerProcess| {
        format!("worker stderr:\n{}\nserver stderr:\n{}", worker.stderr(), setup.server.stderr())
    };

    // Progress shows while the script runs; then it finishes with its JSON as result.
    let job = api
        .wait_job(&ok, "executing at 50%", |job| {
            job["status"] == "executing" && job["progress"]["percent"] == 50
        })
        .map_err(|e| format!("{e}\n{}", context(&worker)))?;
    assert_eq!(job["progress"]["stepNumber"], 1);
    assert_eq!(job["progress"]["description"], "halfway there");
    std::fs::write(setup.path(&format!("go-{ok}")), "")?;
    let job = api.wait_ended(&ok)?;
    assert_eq!(job["status"], "succeeded", "{job:#}\n{}", context(&worker));
    let number = job["number"].as_i64().ok_or("no number")?;
    assert_eq!(
        job["result"],
        json!({"echo": {"n": 1, "text": "héllo"}, "attempt": 1, "kind": "test.echo", "number": number,
               "alias": "OPSQ", "server": format!("{}/", setup.server.url.trim_end_matches('/')), "id": ok}),
        "{}",
        context(&worker)
    );

    // Exit 75: resumed, then retried, and the second attempt succeeds.
    let job = api.wait_ended(&flaky)?;
    assert_eq!(job["status"], "succeeded", "{job:#}\n{}", context(&worker));
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["result"], json!({"output": "second time lucky"}));
    let history = job["history"].as_array().ok_or("no history")?;
    assert!(history.iter().any(|event| event["status"] == "resumed"), "{job:#}");

    // Exit 3: failed for good, the error quoting the script's stderr.
    let job = api.wait_ended(&fatal)?;
    assert_eq!(job["status"], "failed", "{job:#}");
    assert_eq!(job["attempt"], 1, "a fatal failure is not retried: {job:#}");
    let error = job["error"].as_str().ok_or("no error text")?;
    assert!(error.contains("exit status 3") && error.contains("disk wa1-disk-9 not found"), "{error}");

    // Cancel a running job: the script gets SIGTERM, and the job ends failed as cancelled.
    wait_file(&setup.path(&format!("pid-{sleepy}")))?;
    let run = opsq(&setup.config_dir, &["cancel", &sleepy, "--reason", "no longer needed"], None)?;
    assert!(run.status.success(), "{}", run.describe());
    assert!(run.stdout.contains(&format!("{sleepy}: cancel requested")), "{}", run.describe());
    let job = api.wait_ended(&sleepy)?;
    assert_eq!(job["status"], "failed", "{job:#}\n{}", context(&worker));
    let error = job["error"].as_str().ok_or("no error text")?;
    assert!(error.contains("cancelled") && error.contains("no longer needed"), "{error}");
    wait_file(&setup.path(&format!("term-{sleepy}")))?;
    wait_process_gone(&setup.path(&format!("pid-{sleepy}")))?;
    wait_process_gone(&setup.path(&format!("child-{sleepy}")))?;

    // Cancel a waiting job (at once), then again (already ended: exit 1), as JSON.
    let run = opsq(&setup.config_dir, &["cancel", &waiting, "--json"], None)?;
    assert!(run.status.success(), "{}", run.describe());
    let line: Value = serde_json::from_str(run.stdout.trim())?;
    assert_eq!(line["outcome"], "cancelled", "{}", run.describe());
    assert_eq!(line["status"], "failed");
    let run = opsq(&setup.config_dir, &["cancel", &waiting, &ok], None)?;
    assert_eq!(run.status.code(), Some(1), "{}", run.describe());
    assert!(
        run.stdout.contains(&format!("{waiting}: not cancelled: it already ended failed")),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout.contains(&format!("{ok}: not cancelled: it already ended succeeded")),
        "{}",
        run.describe()
    );

    // The list: a table, filters, and JSON lines.
    let run = opsq(&setup.config_dir, &["list"], None)?;
    assert!(run.status.success(), "{}", run.describe());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS") && lines[0].ends_with("TITLE"),
        "{}",
        run.stdout
    );
    assert_eq!(lines.len(), 6, "a header and five jobs:\n{}", run.stdout);
    assert!(lines[1].starts_with(&waiting), "newest first:\n{}", run.stdout);
    let ok_line = lines.iter().find(|l| l.starts_with(&format!("{ok} "))).ok_or("ok job not listed")?;
    assert!(
        ok_line.contains("succeeded") && ok_line.contains("test.echo") && ok_line.ends_with("ok"),
        "{ok_line}"
    );
    let run = opsq(&setup.config_dir, &["list", "--status", "failed", "--kind", "test.*", "--json"], None)?;
    assert!(run.status.success(), "{}", run.describe());
    let jobs: Vec<Value> = run.stdout.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let ids: Vec<&str> = jobs.iter().filter_map(|j| j["id"].as_str()).collect();
    assert_eq!(ids, vec![sleepy.as_str(), fatal.as_str()], "{}", run.describe());
    let run = opsq(&setup.config_dir, &["list", "--limit", "2"], None)?;
    assert!(run.stderr.contains("more jobs: add --before"), "{}", run.describe());
    let run = opsq(&setup.config_dir, &["list", "--status", "bogus"], None)?;
    assert!(!run.status.success() && run.stderr.contains("--status takes"), "{}", run.describe());

    // The script's stderr reached the worker's, prefixed with the job id.
    assert!(worker.stderr().contains(&format!("[{ok}] note for the log")), "{}", context(&worker));

    // An idle worker stops promptly and cleanly on SIGTERM.
    worker.terminate()?;
    let status = worker.wait_exit(Duration::from_secs(15))?;
    assert!(status.success(), "{status:?}\n{}", context(&worker));
    Ok(())
}

#[test]
fn sigterm_lets_jobs_finish_within_the_grace_and_hands_the_rest_back() -> TestResult {
    let setup = Setup::new()?;
    let api = &setup.api;
    let gated = api.submit("gated", json!({}), 3)?;
    let sleepy = api.submit("sleepy", json!({}), 3)?;

    let grace = Duration::from_secs(3);
    let mut worker = WorkerProcess::start(
        setup.temp.path(),
        "graceful",
        api,
        &setup.server,
        &["--shutdown-grace-secs", "3"],
    )?;
    wait_file(&setup.path(&format!("pid-{gated}")))?;
    wait_file(&setup.path(&format!("pid-{sleepy}")))?;

    let stopping = Instant::now();
    worker.terminate()?;
    // The gated job finishes during the grace period: its result counts.
    std::fs::write(setup.path(&format!("go-{gated}")), "")?;
    // The sleepy one does not: after the grace it is stopped and handed back.
    let status = worker.wait_exit(grace + Duration::from_secs(12))?;
    let took = stopping.elapsed();
    assert!(status.success(), "{status:?}\nworker stderr:\n{}", worker.stderr());
    assert!(took >= grace, "the worker must give running jobs the grace period, left after {took:?}");

    let job = api.wait_ended(&gated)?;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["result"], json!({"gated": "done"}));

    let job = api.job(&sleepy)?;
    assert_eq!(
        job["status"],
        "resumed",
        "handed back to run again:\n{job:#}\nworker stderr:\n{}",
        worker.stderr()
    );
    let error = job["error"].as_str().unwrap_or_default();
    assert!(error.contains("worker shutting down"), "{job:#}");
    wait_file(&setup.path(&format!("term-{sleepy}"))).map_err(|e| {
        format!("{e}: SIGTERM did not reach the script\n{job:#}\nworker stderr:\n{}", worker.stderr())
    })?;
    wait_process_gone(&setup.path(&format!("pid-{sleepy}")))?;

    // Never lost: the next worker runs it again, to the end.
    let _next = WorkerProcess::start(setup.temp.path(), "next", api, &setup.server, &[])?;
    let job = api.wait_ended(&sleepy)?;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["result"], json!({"rerun": true}));
    Ok(())
}
