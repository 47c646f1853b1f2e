//! Keeping every process's [`L1`] coherent: scope changes are announced on a Redis pub/sub
//! channel, every other process forgets its copy and acknowledges to the writer, and the writer
//! waits (bounded) for the acknowledgements.
//!
//! The message on [`INVALIDATE`] is `"{origin node} {nonce} {session}"`; the acknowledgement is
//! the nonce, published on `{ACK_PREFIX}{origin node}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::l1::L1;

pub(super) const INVALIDATE: &str = "codeintel:scope-invalidate";
const ACK_PREFIX: &str = "codeintel:scope-ack:";

/// One announced change, as it travels on [`INVALIDATE`].
#[derive(Debug, PartialEq)]
pub(super) struct Notice<'a> {
    pub origin: &'a str,
    pub nonce: &'a str,
    pub session: &'a str,
}

impl<'a> Notice<'a> {
    pub fn encode(origin: &str, nonce: u64, session: &str) -> String {
        format!("{origin} {nonce} {session}")
    }

    /// `None` for a message this protocol did not write. The session id is the rest of the
    /// message, so it may itself contain spaces.
    pub fn parse(payload: &'a str) -> Option<Self> {
        let mut parts = payload.splitn(3, ' ');
        let (origin, nonce, session) = (parts.next()?, parts.next()?, parts.next()?);
        Some(Self { origin, nonce, session })
    }
}

/// How many of the other processes acknowledged a change before the deadline.
#[derive(Debug, PartialEq)]
pub(super) struct Acked {
    pub got: usize,
    pub others: usize,
}

/// This process's end of the protocol: it owns the L1's coherence.
pub(super) struct Invalidations {
    node: String,
    l1: Arc<Mutex<L1>>,
    conn: redis::aio::ConnectionManager,
    /// Bumped by every invalidation; a read caches its result only if none arrived meanwhile.
    generation: AtomicU64,
    /// Whether the subscription is up: without it the L1 may be stale and is not trusted.
    subscribed: AtomicBool,
    acks: Mutex<HashMap<u64, mpsc::UnboundedSender<()>>>,
    nonce: AtomicU64,
}

impl Invalidations {
    /// Starts the subscriber (it reconnects until `self` is dropped) and waits up to `wait` for
    /// the first subscription, so the L1 is served only once invalidations can reach it.
    pub async fn start(
        client: redis::Client,
        conn: redis::aio::ConnectionManager,
        l1: Arc<Mutex<L1>>,
        wait: Duration,
    ) -> Arc<Self> {
        let node = format!("{:x}-{}", codeintel_core::now_unix_ms(), std::process::id());
        let me = Arc::new(Self {
            node,
            l1,
            conn,
            generation: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            acks: Mutex::new(HashMap::new()),
            nonce: AtomicU64::new(1),
        });
        tokio::spawn(Self::subscriber(Arc::downgrade(&me), client));
        let t = std::time::Instant::now();
        while !me.subscribed() && t.elapsed() < wait {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        me
    }

    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Announces that `session` changed (after it was written to Redis), runs `local` (this
    /// process's own cache update), then waits until `timeout` for the other processes.
    pub async fn announce(&self, session: &str, timeout: Duration, local: impl FnOnce()) -> Acked {
        let nonce = self.nonce.fetch_add(1, Ordering::SeqCst);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.acks.lock().insert(nonce, tx);
        let mut c = self.conn.clone();
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(INVALIDATE)
            .arg(Notice::encode(&self.node, nonce, session))
            .query_async(&mut c)
            .await;
        self.generation.fetch_add(1, Ordering::SeqCst);
        local();
        // Every subscriber but this process's own acknowledges.
        let others = published.map(|n| (n.max(1) - 1) as usize).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut got = 0;
        while got < others {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(())) => got += 1,
                _ => break,
            }
        }
        self.acks.lock().remove(&nonce);
        Acked { got, others }
    }

    /// Applies invalidations from every process (and acknowledges them), and collects the
    /// acknowledgements of this process's own announcements.
    async fn subscriber(me: Weak<Self>, client: redis::Client) {
        use futures::StreamExt;
        loop {
            let Some(s) = me.upgrade() else { return };
            let ack_channel = format!("{ACK_PREFIX}{}", s.node);
            drop(s);
            let sub = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(INVALIDATE).await?;
                ps.subscribe(&ack_channel).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            if let Ok(Ok(ps)) = tokio::time::timeout(Duration::from_secs(2), sub).await {
                {
                    let Some(s) = me.upgrade() else { return };
                    // Anything cached before may have missed invalidations.
                    s.l1.lock().forget_all();
                    s.generation.fetch_add(1, Ordering::SeqCst);
                    s.subscribed.store(true, Ordering::SeqCst);
                }
                let mut stream = ps.into_on_message();
                while let Some(msg) = stream.next().await {
                    let Some(s) = me.upgrade() else { return };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if msg.get_channel_name() == INVALIDATE {
                        if let Some(notice) = Notice::parse(&payload) {
                            s.apply(&notice).await;
                        }
                    } else if let Ok(nonce) = payload.parse::<u64>() {
                        if let Some(tx) = s.acks.lock().get(&nonce) {
                            let _ = tx.send(());
                        }
                    }
                }
                if let Some(s) = me.upgrade() {
                    s.subscribed.store(false, Ordering::SeqCst);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn apply(&self, notice: &Notice<'_>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        // This process's own writes already put the new value in its cache.
        if notice.origin == self.node {
            return;
        }
        self.l1.lock().forget(notice.session);
        let mut c = self.conn.clone();
        let _: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(format!("{ACK_PREFIX}{}", notice.origin))
            .arg(notice.nonce)
            .query_async(&mut c)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_round_trips_and_keeps_spaces_in_the_session_id() {
        let m = Notice::encode("19a-42", 7, "agent 1/session");
        assert_eq!(m, "19a-42 7 agent 1/session");
        assert_eq!(Notice::parse(&m), Some(Notice { origin: "19a-42", nonce: "7", session: "agent 1/session" }));
        assert_eq!(Notice::parse("19a-42 7"), None, "a message without a session is not ours");
    }
}
