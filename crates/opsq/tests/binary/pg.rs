//! A throwaway PostgreSQL cluster per test (initdb + pg_ctl on a free port), so tests
//! can stop and start the database under a running opsq. Under `CI=true` a missing
//! PostgreSQL fails the test; elsewhere the test is skipped with a notice.

use std::path::PathBuf;
use std::process::{Command, Output};

pub struct PgCluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    socket_dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn bin_dir() -> PathBuf {
    std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl PgCluster {
    /// A fresh cluster, or `None` (after a notice) when PostgreSQL is not installed
    /// and this is not CI.
    pub fn start() -> Option<Self> {
        let bin = bin_dir();
        if !bin.join("initdb").exists() {
            let message = format!("PostgreSQL binaries not found in {} (set PG_BIN)", bin.display());
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("NOTICE: skipping a PostgreSQL test: {message}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        if is_root() {
            let status = Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown to postgres failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Self {
            data: dir.path().join("data"),
            socket_dir: dir.path().to_path_buf(),
            _dir: dir,
            port,
            bin,
        };
        let out = cluster
            .run("initdb", &["-D", &cluster.data.display().to_string(), "-U", "postgres", "--auth=trust"]);
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        cluster.start_again();
        Some(cluster)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let program = self.bin.join(tool);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.args(args).output().unwrap()
    }

    pub fn start_again(&self) {
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.socket_dir.display());
        let log = self.socket_dir.join("log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-o",
                &options,
                "-l",
                &log.display().to_string(),
                "-w",
                "start",
            ],
        );
        assert!(out.status.success(), "pg_ctl start failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn stop(&self) {
        let out = self.run("pg_ctl", &["-D", &self.data.display().to_string(), "-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A new, empty database on the cluster, and its URL.
    pub fn database(&self, name: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "createdb failed: {}", String::from_utf8_lossy(&out.stderr));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data.display().to_string(), "-m", "immediate", "stop"]);
    }
}
