//! Cross-node signals over `LISTEN/NOTIFY`, and the housekeeping leader lock.
//!
//! Both use one dedicated connection each, outside the pool (a pooled connection
//! would lose its `LISTEN` or its session lock when recycled), reconnected in the
//! background whenever it drops. Notifications are an optimisation: every consumer
//! also polls, so a lost notification (a pooler that drops them, a reconnect gap)
//! only delays work by a poll interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::Signal;

const WAKEUP_CHANNEL: &str = "opsq_wakeup";
const CANCEL_CHANNEL: &str = "opsq_cancel";
/// The advisory lock whose holder runs housekeeping ("opsq" + 2).
const HOUSEKEEPING_LOCK: i64 = 0x6f70_7371_0000_0002;
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Tells every node (this one included) about a signal when `tx` commits, and not at
/// all if it rolls back; repeats within one transaction are sent once.
pub(crate) async fn notify_on_commit(
    tx: &impl deadpool_postgres::GenericClient,
    signal: Signal,
) -> Result<(), crate::StoreError> {
    let (channel, payload) = channel_of(&signal);
    super::execute(tx, "SELECT pg_notify($1, $2)", &[&channel, &payload]).await?;
    Ok(())
}

/// Announces new work after commits instead of inside them, coalesced: a
/// transaction that sent `NOTIFY` holds a database-wide lock from just before its
/// commit until the commit is flushed, so notifying inside every submit made
/// concurrent submits commit one at a time (no group flush). Announcements that
/// arrive while one is being sent are folded into the next one.
pub(crate) fn spawn_announcer(pool: deadpool_postgres::Pool) -> tokio::sync::mpsc::UnboundedSender<()> {
    super::batcher::spawn_batcher(usize::MAX, 1, move |_announcements: Vec<()>| {
        let pool = pool.clone();
        async move {
            let sent = async {
                let client = pool.get().await?;
                super::execute(&client, "SELECT pg_notify($1, '')", &[&WAKEUP_CHANNEL]).await
            }
            .await;
            if let Err(err) = sent {
                // Other nodes still poll; they find the work a poll interval later.
                tracing::warn!(error = %err, "could not announce new jobs to other nodes");
            }
        }
    })
}

/// The notification to send for a signal: `(channel, payload)`.
fn channel_of(signal: &Signal) -> (&'static str, String) {
    match signal {
        Signal::JobsReady => (WAKEUP_CHANNEL, String::new()),
        Signal::Cancel(number) => (CANCEL_CHANNEL, number.to_string()),
    }
}

/// Listens on a dedicated connection and forwards notifications for the life of the
/// process. (It must not stop when nobody is subscribed: it is spawned just before
/// the first subscription exists.)
pub(crate) fn spawn_listener(config: tokio_postgres::Config, sender: broadcast::Sender<Signal>) {
    tokio::spawn(async move {
        loop {
            match config.connect(NoTls).await {
                Ok((client, mut connection)) => {
                    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    let sql = format!("LISTEN {WAKEUP_CHANNEL}; LISTEN {CANCEL_CHANNEL}");
                    let ready = {
                        // The connection must be driven while LISTEN runs.
                        let mut listening = std::pin::pin!(client.batch_execute(&sql));
                        loop {
                            tokio::select! {
                                result = &mut listening => break result.is_ok(),
                                message = messages.next() => if message.is_none() { break false },
                            }
                        }
                    };
                    if ready {
                        // Anything may have happened while we were not listening.
                        let _ = sender.send(Signal::JobsReady);
                        while let Some(message) = messages.next().await {
                            let Ok(AsyncMessage::Notification(note)) = message else {
                                if message.is_err() {
                                    break;
                                }
                                continue;
                            };
                            let signal = match note.channel() {
                                CANCEL_CHANNEL => match note.payload().parse() {
                                    Ok(number) => Signal::Cancel(number),
                                    Err(_) => continue,
                                },
                                _ => Signal::JobsReady,
                            };
                            // No subscriber right now is fine: nobody to wake.
                            let _ = sender.send(signal);
                        }
                    }
                    drop(client);
                    tracing::warn!("lost the PostgreSQL notification connection; reconnecting");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot open the PostgreSQL notification connection")
                }
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    });
}

/// Keeps trying to hold the housekeeping lock on a dedicated connection, and keeps
/// `is_leader` true exactly while it does. If this node dies or its connection
/// drops, PostgreSQL releases the lock and another node takes over within a second.
pub(crate) fn spawn_leader_election(config: tokio_postgres::Config, is_leader: Arc<AtomicBool>) {
    tokio::spawn(async move {
        loop {
            match config.connect(NoTls).await {
                Ok((client, connection)) => {
                    let driver = tokio::spawn(connection);
                    loop {
                        let held = if is_leader.load(Ordering::Relaxed) {
                            client.simple_query("SELECT 1").await.is_ok()
                        } else {
                            match client
                                .query_one("SELECT pg_try_advisory_lock($1)", &[&HOUSEKEEPING_LOCK])
                                .await
                            {
                                Ok(row) => row.get::<_, bool>(0),
                                Err(_) => {
                                    is_leader.store(false, Ordering::Relaxed);
                                    break;
                                }
                            }
                        };
                        is_leader.store(held, Ordering::Relaxed);
                        if client.is_closed() {
                            is_leader.store(false, Ordering::Relaxed);
                            break;
                        }
                        tokio::time::sleep(RECONNECT_DELAY).await;
                    }
                    driver.abort();
                }
                Err(err) => {
                    is_leader.store(false, Ordering::Relaxed);
                    tracing::debug!(error = %err, "cannot open the housekeeping lock connection");
                }
            }
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    });
}
