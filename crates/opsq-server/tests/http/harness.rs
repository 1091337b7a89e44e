//! Starts the real server (store in a temp dir, HTTP on a free port, simulator on)
//! and offers the few helpers every test needs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opsq_domain::{AccountAlias, JobStatus, Location, Roles};
use opsq_server::{RunnerConfig, ServeOptions};
use opsq_store::{Account, ClaimRequest, NewUser, Store};
use reqwest::{Client, Response};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub const ROOT: &str = "OPSQ";
pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    pub base: String,
    pub store: Store,
    pub admin_password: String,
    pub http: Client,
    shutdown: CancellationToken,
    /// Whatever keeps the store's data alive (its temporary directory or scratch
    /// database) until the server is dropped.
    _data: Box<dyn std::any::Any + Send>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Duration::from_millis(20)).await
    }

    pub async fn start_with(sim_step: Duration) -> Self {
        Self::start_configured(|options| options.sim_step = sim_step).await
    }

    /// Starts with options adjusted by `configure` (extra handlers, housekeeping).
    pub async fn start_configured(configure: impl FnOnce(&mut ServeOptions)) -> Self {
        Self::start_full(opsq_server::ServerConfig::default(), configure).await
    }

    /// Starts with server-wide settings of its own.
    pub async fn start_with_config(config: opsq_server::ServerConfig) -> Self {
        Self::start_full(config, |_| {}).await
    }

    async fn start_full(
        config: opsq_server::ServerConfig,
        configure: impl FnOnce(&mut ServeOptions),
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_sqlite(dir.path()).expect("open store");
        Self::start_over(store, Box::new(dir), config, configure).await
    }

    /// Starts over an empty `store`; `data` keeps what the store lives in alive.
    pub async fn start_over(
        store: Store,
        data: Box<dyn std::any::Any + Send>,
        config: opsq_server::ServerConfig,
        configure: impl FnOnce(&mut ServeOptions),
    ) -> Self {
        let created = opsq_server::bootstrap(&store, alias(ROOT), Location::parse("WA1").unwrap())
            .await
            .expect("bootstrap")
            .expect("first start bootstraps");
        let state = opsq_server::app_state(store.clone(), config).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address: SocketAddr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let mut options = ServeOptions {
            simulate: true,
            sim_step: Duration::from_millis(20),
            runner: RunnerConfig { poll_interval: Duration::from_millis(50), ..RunnerConfig::default() },
            ..ServeOptions::default()
        };
        configure(&mut options);
        tokio::spawn(opsq_server::serve(state, listener, options, shutdown.clone()));
        Self {
            base: format!("http://{address}"),
            store,
            admin_password: created.password,
            http: Client::new(),
            shutdown,
            _data: data,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn add_account(&self, name: &str, location: &str, parent: Option<&str>) {
        self.store
            .create_account(Account {
                alias: alias(name),
                location: Location::parse(location).unwrap(),
                parent: parent.map(alias),
                created_at: 0,
            })
            .await
            .expect("create account");
    }

    pub async fn add_user(&self, username: &str, account: &str, roles: &[&str]) {
        let hash = opsq_server::auth::hash_password(PASSWORD).unwrap();
        self.store
            .create_user(NewUser {
                username: username.into(),
                account: alias(account),
                password_hash: hash,
                roles: Roles::parse_list(roles.iter().copied()).unwrap(),
            })
            .await
            .expect("create user");
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.http
            .post(self.url("/v2/authentication/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("login request")
    }

    pub async fn token(&self, username: &str, password: &str) -> String {
        let response = self.login(username, password).await;
        assert_eq!(response.status(), 200, "login of {username} failed");
        let body: Value = response.json().await.unwrap();
        body["bearerToken"].as_str().unwrap().to_string()
    }

    pub async fn admin_token(&self) -> String {
        self.token("admin", &self.admin_password.clone()).await
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap();
        split(response).await
    }

    pub async fn post_json(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let response = self.http.post(self.url(path)).bearer_auth(token).json(body).send().await.unwrap();
        split(response).await
    }

    pub async fn status_of(&self, token: &str, alias: &str, id: &str) -> (u16, Value) {
        self.get(token, &format!("/v2/operations/{alias}/status/{id}")).await
    }

    /// Polls a job's status until it is `want`, failing after a deadline.
    pub async fn wait_for(&self, token: &str, alias: &str, id: &str, want: JobStatus) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = self.get(token, &format!("/v2/operations/{alias}/jobs/{id}")).await;
            assert_eq!(code, 200, "reading job {id}: {body}");
            if body["status"] == want.as_str() {
                return body;
            }
            assert!(
                !JobStatus::parse(body["status"].as_str().unwrap()).unwrap().is_terminal(),
                "job {id} ended {} while waiting for {want}: {body}",
                body["status"]
            );
            assert!(Instant::now() < deadline, "job {id} never became {want}: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Submits one job through the jobs API and returns its status id.
    pub async fn submit(&self, token: &str, alias: &str, kind: &str) -> String {
        let (code, body) =
            self.post_json(token, &format!("/v2/operations/{alias}/jobs"), &json!({ "kind": kind })).await;
        assert_eq!(code, 202, "{body}");
        body["id"].as_str().unwrap().to_string()
    }
}

/// A claim of one job of `kind` for `owner`, with a minute's lease.
pub fn claim_one(kind: &str, owner: &str) -> ClaimRequest {
    ClaimRequest { kinds: vec![kind.into()], limit: 1, owner: owner.into(), lease_ms: 60_000, accounts: None }
}

pub fn alias(name: &str) -> AccountAlias {
    AccountAlias::parse(name).unwrap()
}

/// Status code and JSON body; a body that is not JSON fails the test, since every
/// answer of the API is JSON.
pub async fn split(response: Response) -> (u16, Value) {
    let code = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON answer {code}: {text:?}"));
    (code, body)
}

/// Asserts an error answer: the code, and a non-empty `message`.
pub fn assert_error(code: u16, body: &Value, want: u16) {
    assert_eq!(code, want, "unexpected answer: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error without a message: {body}");
}
