//! The admin live stream's fan-out: alerts at once, participant metrics at most once per participant per [`METRICS_INTERVAL`], to every subscriber (the WebSockets of `GET /api/v1/stream`, the Socket.IO admin room).
//!
//! Every message is serialized once and goes through one `tokio::sync::broadcast` channel per
//! process ([`Hub`]). What feeds that channel depends on the deployment:
//! - alone (no Redis fan-out), the pipeline hands its messages to the hub directly;
//! - with [`RedisFanout`], every message is `PUBLISH`ed to one Redis channel (by the commit that
//!   caused it, when the store is on the same Redis), and every process subscribes to it and
//!   forwards what arrives into its own broadcast, so an admin connected to any process sees
//!   everything. A message published by this process is also handed to its own admins at once
//!   when its commit succeeds, without waiting for Redis to send it back: it is tagged with this
//!   hub's origin and a sequence number, and whichever of the two ways brings it first delivers
//!   it (each message reaches each admin once).
//!
//! The metrics limit is kept in each participant's record (see `pipeline`), so it holds across
//! processes; an update held back by it goes out, with the newest state, when the window ends.

use crate::alerts::AlertRecord;
use crate::store::{ParticipantView, StreamText};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// A participant's metrics are pushed at most this often.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(2);

/// Messages a slow admin socket may fall behind before it skips (it is told nothing; the next
/// metrics message carries the full state again).
const CHANNEL_CAPACITY: usize = 4096;

/// Alerts a slow local-alert receiver (such as the webhook) may fall behind before it skips.
const LOCAL_ALERTS_CAPACITY: usize = 1024;

/// One stream message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamMessage {
    /// An alert raised or resolved. Nested, because the record's own `type` is the alert kind.
    Alert { alert: AlertRecord },
    /// A participant's merged metrics (with `participant_id`, `label`, `last_seen`, `last_seq`).
    Metrics {
        meeting_id: String,
        #[serde(flatten)]
        participant: ParticipantView,
    },
}

/// A stream message as the hub carries it: typed, for receivers that translate it (Socket.IO),
/// with its JSON text made once, for those that send it as it is (WebSockets, Redis). Shared, not
/// copied, by every receiver.
#[derive(Debug, PartialEq)]
pub struct StreamEvent {
    pub message: StreamMessage,
    text: StreamText,
}

impl StreamEvent {
    /// The event of `message`, serialized now.
    pub fn new(message: StreamMessage) -> Arc<Self> {
        let text = StreamText::from(serde_json::to_string(&message).expect("plain data always serializes"));
        Arc::new(Self { message, text })
    }

    /// The event another process published as `text`; `None` for what is not a stream message.
    pub fn parse(text: &str) -> Option<Arc<Self>> {
        let message = serde_json::from_str(text).ok()?;
        Some(Arc::new(Self {
            message,
            text: StreamText::from(text),
        }))
    }

    /// The message as sent.
    pub fn text(&self) -> &StreamText {
        &self.text
    }
}

/// Hex digits of a tag's origin and of its sequence number (see [`Hub::tag`]).
const TAG_DIGITS: usize = 16;

/// Own messages delivered one way and not yet seen the other: past this many, those older than
/// [`CLAIM_MAX_AGE`] are dropped (a message whose commit failed after Redis published it is never
/// claimed by the committer).
const CLAIMS_PRUNE_AT: usize = 4096;
const CLAIM_MAX_AGE: Duration = Duration::from_secs(30);

/// Which of this process's own tagged messages were delivered already, by the committer (at
/// once after its commit) or by the Redis subscriber (when it brought them back first).
struct Claims {
    /// This hub's origin: random, so two processes never share one.
    origin: u64,
    next_seq: AtomicU64,
    /// Sequence numbers delivered one way, waiting for the other.
    delivered: Mutex<HashMap<u64, Instant>>,
}

impl Claims {
    fn new() -> Self {
        Self {
            // Random (fastrand seeds itself from the process's entropy), so two processes never share one.
            origin: fastrand::u64(..),
            next_seq: AtomicU64::new(1),
            delivered: Mutex::default(),
        }
    }

    /// Whether the caller is the first of the two ways to bring message `seq` (it then delivers).
    fn claim(&self, seq: u64) -> bool {
        let mut delivered = self.delivered.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if delivered.remove(&seq).is_some() {
            return false;
        }
        let now = Instant::now();
        if delivered.len() >= CLAIMS_PRUNE_AT {
            delivered.retain(|_, at| now.duration_since(*at) < CLAIM_MAX_AGE);
        }
        delivered.insert(seq, now);
        true
    }
}

/// A message as published to Redis: `{origin}{seq}{JSON}` (fixed-width hex), or plain JSON.
fn untag(payload: &str) -> Option<(u64, u64, &str)> {
    if payload.starts_with('{') {
        return None;
    }
    let origin = u64::from_str_radix(payload.get(..TAG_DIGITS)?, 16).ok()?;
    let seq = u64::from_str_radix(payload.get(TAG_DIGITS..2 * TAG_DIGITS)?, 16).ok()?;
    Some((origin, seq, &payload[2 * TAG_DIGITS..]))
}

/// Per-process fan-out of stream messages.
pub struct Hub {
    sender: broadcast::Sender<Arc<StreamEvent>>,
    redis: Option<RedisFanout>,
    claims: Arc<Claims>,
    /// Alerts raised or resolved by this process only (not those of other processes arriving
    /// through Redis), for notifiers that must act once per alert across processes.
    local_alerts: broadcast::Sender<AlertRecord>,
    subscribed: watch::Receiver<bool>,
    subscriber: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(task) = &self.subscriber {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::local()
    }
}

impl Hub {
    /// A hub for this process alone.
    pub fn local() -> Self {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self {
            sender,
            redis: None,
            claims: Arc::new(Claims::new()),
            local_alerts: broadcast::channel(LOCAL_ALERTS_CAPACITY).0,
            subscribed: watch::channel(true).1,
            subscriber: None,
        }
    }

    /// A hub fed through Redis pub/sub, shared by every process using the same Redis and
    /// prefix. Spawns the subscriber (it reconnects by itself); needs a Tokio runtime.
    pub fn redis(fanout: RedisFanout) -> Self {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (ready_tx, ready_rx) = watch::channel(false);
        let claims = Arc::new(Claims::new());
        let subscriber = tokio::spawn(subscribe_loop(
            fanout.client.clone(),
            fanout.channel.clone(),
            sender.clone(),
            claims.clone(),
            ready_tx,
        ));
        Self {
            sender,
            redis: Some(fanout),
            claims,
            local_alerts: broadcast::channel(LOCAL_ALERTS_CAPACITY).0,
            subscribed: ready_rx,
            subscriber: Some(subscriber),
        }
    }

    /// Waits until this hub receives what is published (at once for a local hub).
    pub async fn ready(&self) {
        let mut subscribed = self.subscribed.clone();
        let _ = subscribed.wait_for(|ready| *ready).await;
    }

    /// A receiver of every message from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StreamEvent>> {
        self.sender.subscribe()
    }

    /// Hands a message to this process's admins (the feed point of any source).
    pub fn deliver(&self, event: Arc<StreamEvent>) {
        // No receiver (no admin connected) is not an error.
        let _ = self.sender.send(event);
    }

    /// A receiver of the alerts raised or resolved by this process from now on (each alert
    /// reaches exactly one process's receivers, also with the Redis fan-out).
    pub fn subscribe_local_alerts(&self) -> broadcast::Receiver<AlertRecord> {
        self.local_alerts.subscribe()
    }

    /// Tells this process's local-alert receivers of an alert this process raised or resolved.
    pub(crate) fn raised_here(&self, record: &AlertRecord) {
        if self.local_alerts.receiver_count() > 0 {
            let _ = self.local_alerts.send(record.clone());
        }
    }

    /// The Redis (`host:port/db`) and channel this hub's messages go through, if any.
    pub(crate) fn redis_channel(&self) -> Option<(&str, &str)> {
        self.redis.as_ref().map(|f| (f.target.as_str(), f.channel.as_str()))
    }

    /// Sends a message to every admin: here at once, and through Redis to every other process.
    pub async fn publish(&self, event: Arc<StreamEvent>) {
        match &self.redis {
            None => self.deliver(event),
            Some(fanout) => {
                let (seq, tagged) = self.tag(event.text());
                self.deliver_once(seq, event);
                if let Err(error) = fanout.publish(&tagged).await {
                    tracing::warn!(%error, "stream: cannot publish to Redis");
                }
            }
        }
    }

    /// The message as published to Redis by this process, with its sequence number: see
    /// [`deliver_once`](Self::deliver_once).
    pub(crate) fn tag(&self, text: &str) -> (u64, StreamText) {
        let seq = self.claims.next_seq.fetch_add(1, Ordering::Relaxed);
        let width = TAG_DIGITS;
        let tagged = format!("{:0width$x}{seq:0width$x}{text}", self.claims.origin);
        (seq, StreamText::from(tagged))
    }

    /// Hands this process's tagged message `seq` to its admins unless the Redis subscriber
    /// brought it back first (and then forgets it when the subscriber does).
    pub(crate) fn deliver_once(&self, seq: u64, event: Arc<StreamEvent>) {
        if self.claims.claim(seq) {
            self.deliver(event);
        }
    }
}

/// Where stream messages meet across processes: a Redis channel.
#[derive(Clone)]
pub struct RedisFanout {
    client: redis::Client,
    connection: redis::aio::ConnectionManager,
    target: String,
    channel: String,
}

impl RedisFanout {
    /// Fan-out through the Redis at `url`, on a channel under `key_prefix` (the store's prefix,
    /// so deployments sharing a Redis stay apart). Does not connect yet.
    pub fn new(url: &str, key_prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            target: crate::store::redis_target(&client),
            client,
            connection,
            channel: format!("{key_prefix}stream"),
        })
    }

    async fn publish(&self, text: &str) -> Result<(), redis::RedisError> {
        let mut connection = self.connection.clone();
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(text)
            .query_async::<i64>(&mut connection)
            .await
            .map(drop)
    }
}

/// Forwards the Redis channel into the local broadcast, reconnecting after a failure.
async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    sender: broadcast::Sender<Arc<StreamEvent>>,
    claims: Arc<Claims>,
    ready: watch::Sender<bool>,
) {
    use futures_util::StreamExt;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    ready.send_replace(true);
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = std::str::from_utf8(message.get_payload_bytes()) else {
                            continue;
                        };
                        let text = match untag(payload) {
                            // This process's own message: delivered here unless the committer did.
                            Some((origin, seq, text)) if origin == claims.origin => {
                                if !claims.claim(seq) {
                                    continue;
                                }
                                text
                            }
                            Some((_, _, text)) => text,
                            None => payload,
                        };
                        match StreamEvent::parse(text) {
                            Some(event) => {
                                let _ = sender.send(event);
                            }
                            None => tracing::debug!("stream: a message on the Redis channel is not a stream message"),
                        }
                    }
                    ready.send_replace(false);
                    tracing::warn!("stream: Redis subscription ended; reconnecting");
                }
                Err(error) => tracing::warn!(%error, "stream: cannot subscribe to Redis"),
            },
            Err(error) => tracing::debug!(%error, "stream: Redis not reachable for the subscription"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertKind, AlertState, Severity};

    fn participant(seq: u64, rtt_ms: f64) -> ParticipantView {
        ParticipantView {
            participant_id: "p".into(),
            label: None,
            last_seen: 1_000 + seq,
            last_seq: seq,
            metrics: crate::store::MetricsView {
                rtt_ms: Some(rtt_ms),
                ..Default::default()
            },
            client_health: None,
        }
    }

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_tagged_message_is_delivered_once_whichever_way_comes_first() {
        let hub = Hub::local();
        let mut messages = hub.subscribe();
        let event = StreamEvent::new(StreamMessage::Metrics {
            meeting_id: "m".into(),
            participant: participant(1, 40.0),
        });
        let (first, tagged) = hub.tag(event.text());
        let (origin, seq, text) = untag(&tagged).unwrap();
        assert_eq!((origin, seq, text), (hub.claims.origin, first, event.text().as_str()));
        // The committer first: the copy coming back from Redis is dropped.
        hub.deliver_once(first, StreamEvent::parse(text).unwrap());
        assert!(!hub.claims.claim(first));
        // Redis first: the committer does not deliver it again.
        let (second, _) = hub.tag("{}");
        assert!(hub.claims.claim(second));
        hub.deliver_once(second, event.clone());
        assert_eq!(messages.try_recv().unwrap(), event);
        assert!(messages.try_recv().is_err());
        assert!(hub.claims.delivered.lock().unwrap().is_empty(), "nothing left to match");
        // Plain JSON (untagged) passes as it is; another hub has another origin.
        assert_eq!(untag("{}"), None);
        assert_ne!(Hub::local().claims.origin, hub.claims.origin);
    }

    #[test]
    fn message_shapes() {
        let record = AlertRecord {
            at: 5,
            meeting_id: "m".into(),
            participant_id: "p".into(),
            kind: AlertKind::PacketLoss,
            severity: Severity::Warning,
            state: AlertState::Raised,
            message: "loss".into(),
            cost: None,
        };
        let event = StreamEvent::new(StreamMessage::Alert { alert: record.clone() });
        assert_eq!(
            StreamEvent::parse(event.text()),
            Some(event.clone()),
            "read back as written"
        );
        let alert = json(event.text());
        assert_eq!(alert["type"], "alert");
        assert_eq!(alert["alert"], serde_json::to_value(&record).unwrap());
        let p = participant(3, 120.0);
        let event = StreamEvent::new(StreamMessage::Metrics {
            meeting_id: "m".into(),
            participant: p,
        });
        assert_eq!(
            StreamEvent::parse(event.text()),
            Some(event.clone()),
            "read back as written"
        );
        let metrics = json(event.text());
        assert_eq!(metrics["type"], "metrics");
        assert_eq!(metrics["meeting_id"], "m");
        assert_eq!(metrics["participant_id"], "p");
        assert_eq!(metrics["rtt_ms"], 120.0);
        assert_eq!(metrics["last_seen"], 1_003);
        assert!(metrics["loss_pct"].is_null());
    }
}
