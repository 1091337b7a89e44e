//! In-process signals between request handlers and the runner: "jobs became
//! claimable" (wakes the runner and long-polling workers at once instead of at their
//! next poll) and the cancellation tokens of jobs running in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A counter bumped whenever jobs may have become claimable. Every waiter sees every
/// bump (unlike `Notify::notify_one`), and a bump before the wait is not lost.
#[derive(Clone)]
pub struct Wakeup {
    sender: Arc<watch::Sender<u64>>,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self { sender: Arc::new(watch::channel(0).0) }
    }
}

impl Wakeup {
    pub fn notify(&self) {
        self.sender.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }
}

/// Cancellation tokens of the jobs this process runs, so a cancel request handled
/// here reaches its job at once (other nodes learn it from the next heartbeat).
#[derive(Clone, Default)]
pub struct RunningJobs {
    tokens: Arc<Mutex<HashMap<i64, CancellationToken>>>,
}

impl RunningJobs {
    pub fn insert(&self, number: i64, token: CancellationToken) {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(number, token);
    }

    pub fn remove(&self, number: i64) {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(&number);
    }

    /// Fires the job's token if it runs here; returns whether it did.
    pub fn cancel(&self, number: i64) -> bool {
        let token = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(&number).cloned();
        token.map(|t| t.cancel()).is_some()
    }
}
