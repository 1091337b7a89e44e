//! A scratch PostgreSQL database for the tests that need the shared store, on the
//! server at `OPSQ_TEST_PG_URL` (as the store's conformance suite uses it): created
//! for one test, dropped after it.

use std::time::Duration;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct Scratch {
    admin_url: String,
    pub name: String,
}

impl Scratch {
    /// A new empty database, or `None` (with a notice) when no PostgreSQL answers
    /// outside CI; in CI (`CI=true`) that fails the test instead.
    pub async fn create() -> Option<Self> {
        let admin_url = std::env::var("OPSQ_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string());
        let admin = match connect(&admin_url).await {
            Ok(admin) => admin,
            Err(err) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("PostgreSQL at OPSQ_TEST_PG_URL is unreachable ({err}); CI must run this test")
            }
            Err(err) => {
                eprintln!("NOTICE: skipping a PostgreSQL test: unreachable ({err}); set OPSQ_TEST_PG_URL");
                return None;
            }
        };
        let name = format!("opsq_http_test_{:016x}", rand::random::<u64>());
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create a scratch database");
        Some(Self { admin_url, name })
    }

    /// The scratch database's URL: the admin URL with its database replaced.
    pub fn url(&self) -> String {
        let (scheme, rest) = self.admin_url.split_once("://").expect("OPSQ_TEST_PG_URL is a URL");
        let (base, query) = rest.split_once('?').map_or((rest, String::new()), |(b, q)| (b, format!("?{q}")));
        let authority = base.split_once('/').map_or(base, |(authority, _)| authority);
        format!("{scheme}://{authority}/{}{query}", self.name)
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
            .expect("drop");
    }
}

impl Drop for Scratch {
    /// On a thread with a runtime of its own: `Drop` cannot await, and may run inside
    /// the test's runtime. Never panics, since a failed test may be unwinding.
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
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the scratch database {}", self.name);
        }
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(err)) => return Err(err.to_string()),
        Err(_) => return Err("no answer within 5 s".to_string()),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
