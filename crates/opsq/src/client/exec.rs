//! The handler behind `opsq worker --exec CMD`: one `sh -c CMD` per job.
//!
//! The contract with the command (documented in docs/workers.md):
//! - stdin: the job's payload as JSON; environment: `OPSQ_JOB_ID`, `OPSQ_JOB_NUMBER`,
//!   `OPSQ_JOB_KIND`, `OPSQ_JOB_TITLE`, `OPSQ_JOB_ATTEMPT`, `OPSQ_ACCOUNT_ALIAS`,
//!   `OPSQ_SERVER`;
//! - stdout: `PROGRESS <percent> <step> <description...>` lines report progress; the
//!   rest (up to [`MAX_OUTPUT`]) is the result: its JSON if it is all JSON, else
//!   `{"output": "<text>"}`;
//! - stderr: passed through, each line prefixed with the job id;
//! - exit 0 succeeds, 75 (EX_TEMPFAIL) asks for a retry, any other code fails for good,
//!   death by a signal is retried;
//! - cancel: SIGTERM to the command's process group, SIGKILL [`KILL_AFTER`] later.

use std::{
    collections::VecDeque,
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use opsq_client::{
    worker::{Handler, WorkContext, WorkError},
    Job,
};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    process::Command,
    time::timeout,
};

/// The most stdout kept as the result; past it the output is cut and marked
/// `"truncated": true`, so a chatty command cannot exhaust the worker's memory or the
/// server's 1 MiB body limit.
pub const MAX_OUTPUT: usize = 64 * 1024;
/// The longest line looked at as a whole (progress lines are short; a longer line
/// is passed on in pieces).
const MAX_LINE: usize = 8 * 1024;
/// How many of the last stderr lines a fatal failure quotes.
const STDERR_TAIL_LINES: usize = 10;
/// The longest stderr line kept for the failure text.
const STDERR_TAIL_CHARS: usize = 300;
/// Between SIGTERM and SIGKILL when a job is cancelled: time for the command to clean
/// up, bounded so a command that ignores SIGTERM still stops.
pub const KILL_AFTER: Duration = Duration::from_secs(10);
/// How long to wait for stdout/stderr to close after the command exited: a process it
/// left running in the background may hold them open forever.
const PIPE_LINGER: Duration = Duration::from_secs(5);
/// The exit code that asks for a retry (sysexits.h `EX_TEMPFAIL`).
pub const EXIT_RETRY: i32 = 75;
/// Variables of the worker that the command must not inherit: the worker's
/// credentials are not the job's.
const HIDDEN_ENV: [&str; 2] = ["OPSQ_TOKEN", "OPSQ_PASSWORD"];

/// Runs `command` through `sh -c` for each job.
#[derive(Debug, Clone)]
pub struct ExecHandler {
    /// The shell command, as given to `--exec`.
    pub command: String,
    /// The server URL, passed to the command as `OPSQ_SERVER`.
    pub server: String,
}

impl Handler for ExecHandler {
    async fn handle(&self, job: Job, ctx: WorkContext) -> Result<Value, WorkError> {
        run(&self.command, &self.server, job, ctx).await
    }
}

async fn run(command: &str, server: &str, job: Job, ctx: WorkContext) -> Result<Value, WorkError> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("OPSQ_JOB_ID", &job.id)
        .env("OPSQ_JOB_NUMBER", job.number.to_string())
        .env("OPSQ_JOB_KIND", &job.kind)
        .env("OPSQ_JOB_TITLE", &job.title)
        .env("OPSQ_JOB_ATTEMPT", job.attempt.to_string())
        .env("OPSQ_ACCOUNT_ALIAS", &job.account_alias)
        .env("OPSQ_SERVER", server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a cancel reaches everything it started, and a
        // Ctrl-C at the worker's terminal does not (the worker shuts down gracefully).
        .process_group(0)
        .kill_on_drop(true);
    for name in HIDDEN_ENV {
        cmd.env_remove(name);
    }
    let mut child = cmd
        .spawn()
        .map_err(|err| WorkError::retryable(format!("could not start `sh -c {command}`: {err}")))?;
    // Killed with the group if this future is dropped before the command is reaped.
    let mut group = GroupGuard { pgid: child.id().and_then(|id| i32::try_from(id).ok()) };

    let stdin = child.stdin.take().map(|mut pipe| {
        let payload = serde_json::to_vec(&job.payload).unwrap_or_default();
        tokio::spawn(async move {
            // The command may not read its input at all: a broken pipe is fine.
            let _ = pipe.write_all(&payload).await;
            let _ = pipe.shutdown().await;
        })
    });
    // The pipes close when every process of the command has exited (or closed them):
    // that, not the exit of `sh` alone, is when the command is over.
    let parser = Arc::new(Mutex::new(StdoutParser::default()));
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let stdout =
        child.stdout.take().map(|pipe| read_stdout(pipe, parser.clone(), ctx.clone(), job.id.clone()));
    let stderr = child.stderr.take().map(|pipe| read_stderr(pipe, job.id.clone(), tail.clone()));
    let mut pipes = tokio::spawn(async move {
        tokio::join!(
            async {
                if let Some(reader) = stdout {
                    reader.await;
                }
            },
            async {
                if let Some(reader) = stderr {
                    reader.await;
                }
            },
        );
    });
    let mut pipes_closed = false;

    let status = tokio::select! {
        status = child.wait() => status,
        _ = ctx.cancelled() => {
            eprintln!("[{}] stopping the command: {}", job.id, stop_text(&ctx));
            group.signal(libc::SIGTERM);
            // Everything it started gets the same time to clean up, not just `sh`.
            let everything = async {
                let status = child.wait().await;
                let _ = (&mut pipes).await;
                status
            };
            let stopped = timeout(KILL_AFTER, everything).await;
            match stopped {
                Ok(status) => {
                    pipes_closed = true;
                    // Whatever it left behind with its output closed goes too.
                    group.signal(libc::SIGKILL);
                    status
                }
                Err(_) => {
                    eprintln!("[{}] the command ignored SIGTERM for {}s: killing it", job.id, KILL_AFTER.as_secs());
                    group.signal(libc::SIGKILL);
                    child.wait().await
                }
            }
        }
    };
    group.disarm();
    if let Some(task) = stdin {
        task.abort();
    }
    if !pipes_closed && timeout(PIPE_LINGER, &mut pipes).await.is_err() {
        eprintln!("[{}] the command's output stayed open after it exited (a background process?); not waiting for it", job.id);
        pipes.abort();
    }
    let status = status.map_err(|err| WorkError::retryable(format!("lost track of the command: {err}")))?;
    let output = std::mem::take(&mut lock(&parser).output);
    let tail: Vec<String> = lock(&tail).iter().cloned().collect();
    exit_outcome(&status, &tail)?;
    Ok(build_result(&output.bytes, output.truncated))
}

/// Locks a mutex that is only held for quick, non-async work, so a poisoned one
/// (a panic mid-update) still holds usable data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stop_text(ctx: &WorkContext) -> &'static str {
    match ctx.stop_reason() {
        Some(opsq_client::worker::StopReason::CancelRequested) => "the job was cancelled",
        Some(opsq_client::worker::StopReason::LeaseLost) => "the job's lease was lost",
        Some(opsq_client::worker::StopReason::Shutdown) => "the worker is shutting down",
        _ => "asked to stop",
    }
}

/// Sends signals to the command's process group, and SIGKILL when dropped armed.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn signal(&self, signal: libc::c_int) {
        if let Some(pgid) = self.pgid.filter(|&p| p > 1) {
            // SAFETY: killpg only sends a signal. The group is the command's own: it
            // was started as a group leader, and the id cannot be handed to another
            // process while the leader is unreaped or any member lives (the one call
            // after reaping only reaches members left behind). An error (ESRCH: the
            // group is gone) needs no handling.
            unsafe {
                libc::killpg(pgid, signal);
            }
        }
    }

    /// Called once the command is reaped: after that its id may be reused.
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// What the command printed on stdout, less its progress lines.
#[derive(Debug, Default, PartialEq)]
struct Output {
    bytes: Vec<u8>,
    truncated: bool,
}

/// Feeds stdout to the shared parser (so output read before a give-up is kept) and
/// turns progress lines into progress reports.
async fn read_stdout(
    mut pipe: impl AsyncRead + Unpin,
    parser: Arc<Mutex<StdoutParser>>,
    ctx: WorkContext,
    id: String,
) {
    let mut chunk = vec![0u8; 8192];
    loop {
        let read = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let events = lock(&parser).feed(&chunk[..read]);
        for event in events {
            apply(event, &ctx, &id);
        }
    }
    let events = lock(&parser).finish();
    for event in events {
        apply(event, &ctx, &id);
    }
}

fn apply(event: ProgressLine, ctx: &WorkContext, id: &str) {
    match event {
        ProgressLine::Progress { percent, step, description } => ctx.progress(percent, step, description),
        ProgressLine::Malformed(reason) => eprintln!("[{id}] ignoring a malformed progress line: {reason}"),
        ProgressLine::NotProgress => {}
    }
}

async fn read_stderr(mut pipe: impl AsyncRead + Unpin, id: String, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = LineSplitter::default();
    let mut chunk = vec![0u8; 8192];
    let show = |piece: Piece| {
        let text = String::from_utf8_lossy(&piece.bytes);
        let text = text.trim_end_matches('\r');
        eprintln!("[{id}] {text}");
        let mut tail = lock(&tail);
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text.chars().take(STDERR_TAIL_CHARS).collect());
    };
    loop {
        let read = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for piece in lines.feed(&chunk[..read]) {
            show(piece);
        }
    }
    if let Some(piece) = lines.finish() {
        show(piece);
    }
}

/// A piece of a line: a whole line, or part of one longer than [`MAX_LINE`].
#[derive(Debug, PartialEq)]
struct Piece {
    /// Without the newline.
    bytes: Vec<u8>,
    /// It starts a line.
    first: bool,
    /// It ends a line (a newline or the end of the stream followed).
    last: bool,
}

/// Splits a byte stream into lines, never holding more than [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
struct LineSplitter {
    pending: Vec<u8>,
    /// The pending bytes continue a line already passed on in part.
    continued: bool,
}

impl LineSplitter {
    fn feed(&mut self, mut chunk: &[u8]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        while !chunk.is_empty() {
            let (segment, ended) = match chunk.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let segment = &chunk[..end];
                    chunk = &chunk[end + 1..];
                    (segment, true)
                }
                None => (std::mem::take(&mut chunk), false),
            };
            self.pending.extend_from_slice(segment);
            while self.pending.len() > MAX_LINE {
                let rest = self.pending.split_off(MAX_LINE);
                let first = !self.continued;
                pieces.push(Piece { bytes: std::mem::replace(&mut self.pending, rest), first, last: false });
                self.continued = true;
            }
            if ended {
                pieces.push(self.take_line());
            }
        }
        pieces
    }

    /// The unterminated last line, if any.
    fn finish(&mut self) -> Option<Piece> {
        (!self.pending.is_empty() || self.continued).then(|| self.take_line())
    }

    /// The pending bytes as the piece that ends the current line.
    fn take_line(&mut self) -> Piece {
        let piece = Piece { bytes: std::mem::take(&mut self.pending), first: !self.continued, last: true };
        self.continued = false;
        piece
    }
}

/// Splits stdout into progress lines and the output kept for the result.
#[derive(Debug, Default)]
struct StdoutParser {
    lines: LineSplitter,
    output: Output,
}

impl StdoutParser {
    fn feed(&mut self, chunk: &[u8]) -> Vec<ProgressLine> {
        let pieces = self.lines.feed(chunk);
        pieces.into_iter().map(|piece| self.piece(piece)).collect()
    }

    fn finish(&mut self) -> Vec<ProgressLine> {
        self.lines.finish().map(|piece| self.piece(piece)).into_iter().collect()
    }

    fn piece(&mut self, piece: Piece) -> ProgressLine {
        if piece.first && piece.last {
            let line = String::from_utf8_lossy(&piece.bytes);
            let parsed = parse_progress_line(&line);
            if parsed != ProgressLine::NotProgress {
                return parsed;
            }
        }
        self.keep(&piece.bytes);
        if piece.last {
            self.keep(b"\n");
        }
        ProgressLine::NotProgress
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_OUTPUT.saturating_sub(self.output.bytes.len());
        if bytes.len() > room {
            self.output.truncated = true;
        }
        self.output.bytes.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// What one stdout line means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressLine {
    /// Ordinary output, part of the result.
    NotProgress,
    /// `PROGRESS <percent> <step> <description...>`.
    Progress { percent: u8, step: u32, description: String },
    /// It starts with the `PROGRESS` word but does not follow the format; why.
    Malformed(String),
}

/// Reads `PROGRESS <percent> <step> <description...>`: percent 0-100 (a trailing `%`
/// allowed), step a whole number, the description the rest of the line (may be
/// empty). Only lines whose first word is exactly `PROGRESS` are progress lines.
pub fn parse_progress_line(line: &str) -> ProgressLine {
    let line = line.trim_end_matches(['\r', '\n']);
    let Some(("PROGRESS", rest)) = next_word(line) else {
        return ProgressLine::NotProgress;
    };
    let malformed = |why: &str| {
        let shown: String = line.chars().take(80).collect();
        ProgressLine::Malformed(format!(
            "{why} in {shown:?} (expected `PROGRESS <percent 0-100> <step> <description>`)"
        ))
    };
    let Some((percent, rest)) = next_word(rest) else {
        return malformed("no percent");
    };
    let percent = match percent.strip_suffix('%').unwrap_or(percent).parse::<u8>() {
        Ok(percent) if percent <= 100 => percent,
        _ => return malformed("the percent is not a whole number from 0 to 100"),
    };
    let Some((step, rest)) = next_word(rest) else {
        return malformed("no step number");
    };
    let Ok(step) = step.parse::<u32>() else {
        return malformed("the step is not a whole number");
    };
    ProgressLine::Progress { percent, step, description: rest.trim().to_string() }
}

/// The first whitespace-separated word and what follows it.
fn next_word(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    Some((&text[..end], &text[end..]))
}

/// Maps how the command ended to the job's fate: exit 0 succeeds, [`EXIT_RETRY`] asks
/// for another attempt, other codes fail for good with the last stderr lines, and a
/// signal (the OOM killer, an operator, a cancel) is retried since the command did not
/// decide to fail.
fn exit_outcome(status: &ExitStatus, stderr_tail: &[String]) -> Result<(), WorkError> {
    map_exit(status.code(), status.signal(), stderr_tail)
}

/// [`exit_outcome`] on the code or signal, so it can be tested without processes.
pub fn map_exit(code: Option<i32>, signal: Option<i32>, stderr_tail: &[String]) -> Result<(), WorkError> {
    let tail = if stderr_tail.is_empty() {
        String::from(" (it wrote nothing to stderr)")
    } else {
        format!(": {}", stderr_tail.join("\n"))
    };
    match (code, signal) {
        (Some(0), _) => Ok(()),
        (Some(EXIT_RETRY), _) => {
            Err(WorkError::retryable(format!("the command asked to be retried (exit {EXIT_RETRY}){tail}")))
        }
        (Some(code), _) => Err(WorkError::fatal(format!("the command failed with exit status {code}{tail}"))),
        (None, Some(signal)) => Err(WorkError::retryable(format!(
            "the command was killed by signal {signal} ({})",
            signal_name(signal)
        ))),
        (None, None) => Err(WorkError::retryable("the command ended without an exit status")),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGABRT => "SIGABRT",
        _ => "signal",
    }
}

/// The job's result from the command's stdout (progress lines removed): the JSON
/// itself when all of it is one JSON value, else `{"output": "<text>"}`, with
/// `"truncated": true` when it went past [`MAX_OUTPUT`].
pub fn build_result(output: &[u8], truncated: bool) -> Value {
    let text = String::from_utf8_lossy(output);
    if !truncated {
        if let Ok(value) = serde_json::from_str::<Value>(text.trim()) {
            return value;
        }
    }
    let text = text.trim_end_matches(['\n', '\r']);
    if truncated {
        json!({"output": text, "truncated": true})
    } else {
        json!({ "output": text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(percent: u8, step: u32, description: &str) -> ProgressLine {
        ProgressLine::Progress { percent, step, description: description.into() }
    }

    #[test]
    fn progress_lines_are_parsed_and_other_lines_are_output() {
        assert_eq!(parse_progress_line("PROGRESS 40 2 Copying disk 1\n"), progress(40, 2, "Copying disk 1"));
        assert_eq!(parse_progress_line("PROGRESS  100   7  "), progress(100, 7, ""));
        assert_eq!(parse_progress_line("PROGRESS 5% 1 a  b\r\n"), progress(5, 1, "a  b"));
        assert_eq!(parse_progress_line("PROGRESS\t0\t0\tstart"), progress(0, 0, "start"));
        for output in ["", "hello", "PROGRESSING 1 2", "progress 40 2 x", " {\"a\": 1}", "PROGRESS:40"] {
            assert_eq!(parse_progress_line(output), ProgressLine::NotProgress, "{output:?}");
        }
        for bad in [
            "PROGRESS",
            "PROGRESS 101 1 x",
            "PROGRESS -1 1",
            "PROGRESS x 1",
            "PROGRESS 40",
            "PROGRESS 40 two",
        ] {
            let ProgressLine::Malformed(why) = parse_progress_line(bad) else {
                panic!("{bad:?} is malformed")
            };
            assert!(why.contains("expected `PROGRESS"), "{why}");
        }
    }

    #[test]
    fn exit_codes_map_to_complete_retry_or_fail() {
        let tail = vec!["first".to_string(), "disk not found".to_string()];
        assert_eq!(map_exit(Some(0), None, &tail), Ok(()));
        let Err(WorkError::Retryable(text)) = map_exit(Some(75), None, &tail) else { panic!("75 retries") };
        assert!(text.contains("exit 75") && text.contains("disk not found"), "{text}");
        let Err(WorkError::Fatal(text)) = map_exit(Some(3), None, &tail) else { panic!("3 is fatal") };
        assert_eq!(text, "the command failed with exit status 3: first\ndisk not found");
        let Err(WorkError::Fatal(text)) = map_exit(Some(1), None, &[]) else { panic!("1 is fatal") };
        assert!(text.contains("nothing to stderr"), "{text}");
        let Err(WorkError::Retryable(text)) = map_exit(None, Some(libc::SIGKILL), &tail) else {
            panic!("a signal retries")
        };
        assert!(text.contains("signal 9 (SIGKILL)"), "{text}");
    }

    #[test]
    fn results_are_the_json_output_or_the_text() {
        assert_eq!(build_result(b"{\"ok\": true}\n", false), json!({"ok": true}));
        assert_eq!(build_result(b"  [1, 2]  ", false), json!([1, 2]));
        assert_eq!(build_result(b"42\n", false), json!(42));
        assert_eq!(build_result(b"done\nall good\n", false), json!({"output": "done\nall good"}));
        assert_eq!(
            build_result(b"{\"a\": 1}\n{\"b\": 2}\n", false),
            json!({"output": "{\"a\": 1}\n{\"b\": 2}"})
        );
        assert_eq!(build_result(b"", false), json!({"output": ""}));
        assert_eq!(build_result(b"{\"cut\": ", true), json!({"output": "{\"cut\": ", "truncated": true}));
        assert_eq!(build_result(b"bad \xff byte", false), json!({"output": "bad \u{fffd} byte"}));
    }

    #[test]
    fn stdout_keeps_output_apart_from_progress_even_across_chunks() {
        let mut parser = StdoutParser::default();
        let mut events = parser.feed(b"PROGRESS 10 1 Start\n{\"a\":");
        events.extend(parser.feed(b" 1}\nPROGRESS 5"));
        events.extend(parser.feed(b"0 2 Half\nPROGRESS bad\n"));
        events.extend(parser.finish());
        let progress: Vec<_> = events.iter().filter(|e| matches!(e, ProgressLine::Progress { .. })).collect();
        assert_eq!(progress, vec![&progress_line(10, 1, "Start"), &progress_line(50, 2, "Half")]);
        assert_eq!(events.iter().filter(|e| matches!(e, ProgressLine::Malformed(_))).count(), 1);
        assert_eq!(build_result(&parser.output.bytes, parser.output.truncated), json!({"a": 1}));
    }

    fn progress_line(percent: u8, step: u32, description: &str) -> ProgressLine {
        progress(percent, step, description)
    }

    #[test]
    fn output_is_capped_and_long_lines_are_never_taken_for_progress() {
        let mut parser = StdoutParser::default();
        let mut long = b"PROGRESS 1 1 ".to_vec();
        long.extend(vec![b'x'; MAX_LINE * 2]);
        long.push(b'\n');
        let events = parser.feed(&long);
        assert!(events.iter().all(|e| *e == ProgressLine::NotProgress), "{events:?}");
        assert_eq!(parser.output.bytes.len(), long.len());
        let big = vec![b'y'; MAX_OUTPUT];
        parser.feed(&big);
        parser.finish();
        assert_eq!(parser.output.bytes.len(), MAX_OUTPUT);
        assert!(parser.output.truncated);
    }

    #[test]
    fn lines_split_at_newlines_and_at_the_length_limit() {
        let mut lines = LineSplitter::default();
        let pieces = lines.feed(b"one\ntwo");
        assert_eq!(pieces, vec![Piece { bytes: b"one".to_vec(), first: true, last: true }]);
        let mut long = vec![b'z'; MAX_LINE + 10];
        long.push(b'\n');
        let pieces = lines.feed(&long);
        assert_eq!(pieces.len(), 2);
        assert_eq!((pieces[0].first, pieces[0].last, pieces[0].bytes.len()), (true, false, MAX_LINE));
        assert_eq!((pieces[1].first, pieces[1].last, pieces[1].bytes.len()), (false, true, 13));
        assert_eq!(lines.finish(), None);
        lines.feed(b"tail");
        assert_eq!(lines.finish(), Some(Piece { bytes: b"tail".to_vec(), first: true, last: true }));
    }
}
