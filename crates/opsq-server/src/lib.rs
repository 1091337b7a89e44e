//! The opsq server: the CLC v2 API (login, Queue status, batch server operations),
//! opsq's jobs API, and the in-process runner, over one [`opsq_store::Store`].

pub mod auth;
mod body;
mod error;
pub mod housekeeping;
pub mod metrics;
pub mod openapi;
mod recent;
mod render;
mod routes;
pub mod runner;
mod state;
mod v1;
mod wakeup;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use opsq_domain::{AccountAlias, Location, Role, Roles};
use opsq_store::{Account, NewUser, Store};
use rand::distributions::{Alphanumeric, DistString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, BAD_CREDENTIALS};
pub use housekeeping::HousekeepingConfig;
pub use runner::{Registry, RunnerConfig};
pub use state::{AppState, ServerConfig, SharedState, MAX_BODY_BYTES};

use auth::{hash_password, LoginThrottle, TokenKeys};
use recent::Recent;

/// What `opsq serve` decides beyond the store and the listener.
#[derive(Clone)]
pub struct ServeOptions {
    pub simulate: bool,
    pub sim_step: Duration,
    pub runner: RunnerConfig,
    pub housekeeping: housekeeping::HousekeepingConfig,
    /// Handlers to run in process besides the simulator's (embedding, tests).
    pub handlers: Registry,
    /// When set, the in-process runner claims only while it holds `true` (embedding).
    pub runner_gate: Option<tokio::sync::watch::Receiver<bool>>,
    /// Routes an embedder serves next to the API (the benchmarks' control endpoint).
    pub extra_routes: Option<axum::Router>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            simulate: false,
            sim_step: runner::simulator::DEFAULT_STEP,
            runner: RunnerConfig::default(),
            housekeeping: housekeeping::HousekeepingConfig::default(),
            handlers: Registry::default(),
            runner_gate: None,
            extra_routes: None,
        }
    }
}

/// The credentials made on first start, returned so the caller can print them once.
pub struct Bootstrapped {
    pub account: AccountAlias,
    pub location: Location,
    pub username: String,
    pub password: String,
}

/// On an empty store, creates the root account and an `admin` user with a random
/// password. Returns `None` when the store already has accounts.
pub async fn bootstrap(
    store: &Store,
    alias: AccountAlias,
    location: Location,
) -> anyhow::Result<Option<Bootstrapped>> {
    if store.account(&alias).await?.is_some() {
        return Ok(None);
    }
    let password = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 24);
    let hash = {
        let password = password.clone();
        tokio::task::spawn_blocking(move || hash_password(&password)).await??
    };
    let root = Account {
        alias: alias.clone(),
        location: location.clone(),
        parent: None,
        created_at: opsq_store::now_ms(),
    };
    let admin = NewUser {
        username: "admin".into(),
        account: alias.clone(),
        password_hash: hash,
        roles: Roles(vec![Role::AccountAdmin, Role::Worker]),
    };
    Ok(store.bootstrap(root, admin).await?.then_some(Bootstrapped {
        account: alias,
        location,
        username: "admin".into(),
        password,
    }))
}

/// Builds the shared state: the token key (created once, kept in the store so every
/// node signs alike) and a decoy hash for timing-safe failed logins.
pub async fn app_state(store: Store, config: ServerConfig) -> anyhow::Result<AppState> {
    let secret = store
        .setting_or_init("token_signing_key", || {
            let bytes: [u8; 32] = rand::random();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        })
        .await
        .context("reading the token signing key")?;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .context("the stored token signing key is not base64")?;
    let decoy = tokio::task::spawn_blocking(|| {
        hash_password(&Alphanumeric.sample_string(&mut rand::rngs::OsRng, 24))
    })
    .await??;
    Ok(AppState::new(SharedState {
        store,
        tokens: TokenKeys::from_secret(&secret),
        throttle: LoginThrottle::default(),
        wakeup: wakeup::Wakeup::default(),
        running: wakeup::RunningJobs::default(),
        config,
        metrics: metrics::Metrics::new(),
        decoy_hash: decoy,
        kinds: Recent::default(),
        accounts: Recent::default(),
        subtrees: Recent::default(),
    }))
}

/// The whole HTTP application for a state.
pub fn app(state: AppState) -> axum::Router {
    routes::router(state)
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| -> Response {
            tracing::error!("a request handler panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({"message": "An error has occurred."})),
            )
                .into_response()
        }))
        .layer(TraceLayer::new_for_http())
}

/// Serves HTTP on `listener` and runs the in-process runner until `shutdown` fires;
/// then stops accepting, lets running jobs finish within the grace period, and returns.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut registry = options.handlers.clone();
    registry.register(runner::canary::KIND, Arc::new(runner::canary::Noop));
    if options.simulate {
        runner::simulator::register(&mut registry, options.sim_step);
    }
    let runner = runner::Runner::new(
        state.store.clone(),
        registry.clone(),
        state.wakeup.clone(),
        state.running.clone(),
        options.runner.clone(),
        state.metrics.jobs().clone(),
    );
    let runner = match options.runner_gate.clone() {
        Some(gate) => runner.with_gate(gate),
        None => runner,
    };
    let runner_task = tokio::spawn(runner.run(shutdown.clone()));
    if let Some(signals) = state.store.subscribe() {
        tokio::spawn(forward_signals(signals, state.wakeup.clone(), state.running.clone(), shutdown.clone()));
    }
    let housekeeping_task = tokio::spawn(housekeeping::run(
        state.store.clone(),
        registry,
        state.wakeup.clone(),
        options.housekeeping.clone(),
        state.metrics.jobs().clone(),
        shutdown.clone(),
    ));
    let app = match options.extra_routes {
        Some(extra) => app(state).merge(extra),
        None => app(state),
    };
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let http_shutdown = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { http_shutdown.cancelled().await })
        .await
        .context("serving HTTP")?;
    runner_task.await.context("the runner stopped abnormally")?;
    housekeeping_task.await.context("housekeeping stopped abnormally")?;
    Ok(())
}

/// Turns other nodes' notifications into local wake-ups and cancels.
async fn forward_signals(
    mut signals: tokio::sync::broadcast::Receiver<opsq_store::Signal>,
    wakeup: wakeup::Wakeup,
    running: wakeup::RunningJobs,
    shutdown: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let signal = tokio::select! {
            signal = signals.recv() => signal,
            _ = shutdown.cancelled() => return,
        };
        match signal {
            Ok(opsq_store::Signal::JobsReady) | Err(RecvError::Lagged(_)) => wakeup.notify(),
            Ok(opsq_store::Signal::Cancel(number)) => {
                running.cancel(number);
            }
            Err(RecvError::Closed) => return,
        }
    }
}
