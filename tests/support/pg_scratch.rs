//! A scratch PostgreSQL database for one test, on the server at `OPSQ_TEST_PG_URL`
//! (default [`DEFAULT_PG_URL`]): created empty, dropped when the test ends, passed or
//! failed. Shared by the store's conformance suite and the server's HTTP tests, each
//! of which includes this file with `#[path]` (test crates cannot depend on each
//! other's code), so both keep the same rule for a server that cannot be reached.

#![allow(dead_code)] // Each test crate uses a part of it.

use std::time::Duration;

/// The PostgreSQL server the tests use unless `OPSQ_TEST_PG_URL` names another: an
/// admin connection, allowed to create and drop databases.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database `<prefix>_<random hex>`; dropping it drops the database.
pub struct Scratch {
    admin_url: String,
    pub name: String,
}

impl Scratch {
    /// A new empty database, or `None` when no PostgreSQL answers: in CI (`CI=true`)
    /// every PostgreSQL test must run, so that fails the test instead; on a developer's
    /// machine it is skipped, with a notice on stderr once per test binary.
    pub async fn create_or_skip(prefix: &str) -> Option<Self> {
        let admin_url = std::env::var("OPSQ_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string());
        let admin = match connect(&admin_url).await {
            Ok(admin) => admin,
            Err(err) => {
                skip_unless_ci(&redacted(&admin_url), &err);
                return None;
            }
        };
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create a scratch database");
        Some(Self { admin_url, name })
    }

    /// The scratch database's URL: the admin URL with its database replaced.
    pub fn url(&self) -> String {
        with_database(&self.admin_url, &self.name)
    }

    /// A connection of the test's own to the scratch database.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.url()).await.expect("connect to the scratch database")
    }

    /// Drops the database at once, ending every connection to it: the store is gone.
    pub async fn drop_now(&self) {
        let admin = connect(&self.admin_url).await.expect("connect as admin");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await
            .expect("drop the scratch database");
    }
}

impl Drop for Scratch {
    /// On a thread with a runtime of its own: `Drop` cannot await, and may run inside
    /// the test's runtime. `WITH (FORCE)` ends the connections still open. Never
    /// panics: this may run while a failed test unwinds.
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let admin = connect(&url).await?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("could not drop the scratch database {}: {err}", self.name),
            Err(_) => eprintln!("dropping the scratch database {} panicked", self.name),
        }
    }
}

/// The one rule for a PostgreSQL server that cannot be reached: fail in CI, else a
/// notice straight to stderr (past the test harness's capture), once per test binary
/// rather than once per test, so the skip is seen without drowning the output.
fn skip_unless_ci(url: &str, err: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "PostgreSQL at {url} is unreachable ({err}); CI must run the PostgreSQL tests \
             (start the server or point OPSQ_TEST_PG_URL at one)"
        );
    }
    static NOTICE: std::sync::Once = std::sync::Once::new();
    NOTICE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: skipping the PostgreSQL tests: PostgreSQL at {url} is unreachable ({err}); \
             set OPSQ_TEST_PG_URL to run them"
        );
    });
}

/// A connection within 5 s, its driver task spawned on the current runtime.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(err)) => {
            return Err(match std::error::Error::source(&err) {
                Some(source) => format!("{err}: {source}"),
                None => err.to_string(),
            })
        }
        Err(_) => return Err("no answer within 5 s".to_string()),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `url` (a URL or a key=value string) with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // key=value form: a later key wins.
        return format!("{url} dbname={database}");
    };
    let (base, query) = match rest.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (rest, String::new()),
    };
    let authority = base.split_once('/').map_or(base, |(authority, _)| authority);
    format!("{scheme}://{authority}/{database}{query}")
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, rest)), Some((_, host))) if rest.contains('@') => {
            let user = rest.split(['@', ':']).next().unwrap_or_default();
            format!("{scheme}://{user}@{host}")
        }
        _ => url.to_string(),
    }
}
