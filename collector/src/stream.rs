//! The admin live stream: alerts at once, participant metrics at most once per participant per
//! [`METRICS_INTERVAL`], fanned out to every WebSocket of `GET /api/v1/stream`.
//!
//! Every message is serialized once and goes through one `tokio::sync::broadcast` channel per
//! process ([`Hub`]). What feeds that channel depends on the deployment:
//! - alone (no Redis fan-out), the pipeline's publish point sends into it directly, and the
//!   metrics limit is kept in this process;
//! - with [`RedisFanout`], every message is `PUBLISH`ed to one Redis channel, and every process
//!   subscribes to it and forwards what arrives into its own broadcast, so an admin connected to
//!   any process sees everything. The metrics limit is then kept in Redis (a `SET NX PX` gate per
//!   participant, checked and published in one script), so it holds across processes.
//!
//! An update suppressed by the limit is kept (the latest one per participant, by sequence number)
//! and offered again when the window ends, so the last state always arrives.

use crate::alerts::AlertRecord;
use crate::store::ParticipantView;
use axum::extract::ws::Utf8Bytes;
use redis::Script;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// A participant's metrics are pushed at most this often.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(2);

/// Messages a slow admin socket may fall behind before it skips (it is told nothing; the next
/// metrics message carries the full state again).
const CHANNEL_CAPACITY: usize = 4096;

/// Alerts a slow local-alert receiver (such as the webhook) may fall behind before it skips.
const LOCAL_ALERTS_CAPACITY: usize = 1024;

/// One stream message.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamMessage<'a> {
    /// An alert raised or resolved. Nested, because the record's own `type` is the alert kind.
    Alert { alert: &'a AlertRecord },
    /// A participant's merged metrics (with `participant_id`, `label`, `last_seen`, `last_seq`).
    Metrics {
        meeting_id: &'a str,
        #[serde(flatten)]
        participant: &'a ParticipantView,
    },
}

impl StreamMessage<'_> {
    fn text(&self) -> Utf8Bytes {
        Utf8Bytes::from(serde_json::to_string(self).expect("plain data always serializes"))
    }
}

type Key = (String, String);

/// Per participant, when its window ends and the last seq published.
type Windows = HashMap<Key, (Instant, u64)>;

/// What the gate decided about one metrics update.
enum Decision {
    /// Published.
    Sent,
    /// A newer state was already published: nothing to do.
    Stale,
    /// The window is open: offer it again after this long.
    Wait(Duration),
}

/// Per-process fan-out of stream messages.
pub struct Hub {
    sender: broadcast::Sender<Utf8Bytes>,
    interval: Duration,
    /// Local gate: per participant, when its window ends and the last published seq; and when
    /// ended windows were last swept out.
    windows: Mutex<(Windows, Instant)>,
    /// Per participant, the latest update held back by the gate (a timer task owns each entry).
    pending: Mutex<HashMap<Key, (u64, Utf8Bytes)>>,
    redis: Option<RedisFanout>,
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
            .field("interval", &self.interval)
            .field("redis", &self.redis.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::local(METRICS_INTERVAL)
    }
}

impl Hub {
    /// A hub for this process alone.
    pub fn local(interval: Duration) -> Self {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self {
            sender,
            interval,
            windows: Mutex::new((HashMap::new(), Instant::now())),
            pending: Mutex::default(),
            redis: None,
            local_alerts: broadcast::channel(LOCAL_ALERTS_CAPACITY).0,
            subscribed: watch::channel(true).1,
            subscriber: None,
        }
    }

    /// A hub fed through Redis pub/sub, shared by every process using the same Redis and
    /// prefix. Spawns the subscriber (it reconnects by itself); needs a Tokio runtime.
    pub fn redis(fanout: RedisFanout, interval: Duration) -> Self {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (ready_tx, ready_rx) = watch::channel(false);
        let subscriber = tokio::spawn(subscribe_loop(
            fanout.client.clone(),
            fanout.channel.clone(),
            sender.clone(),
            ready_tx,
        ));
        Self {
            sender,
            interval,
            windows: Mutex::new((HashMap::new(), Instant::now())),
            pending: Mutex::default(),
            redis: Some(fanout),
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
    pub fn subscribe(&self) -> broadcast::Receiver<Utf8Bytes> {
        self.sender.subscribe()
    }

    /// Hands a serialized message to this process's admins (the feed point of any source).
    pub fn deliver(&self, text: Utf8Bytes) {
        // No receiver (no admin connected) is not an error.
        let _ = self.sender.send(text);
    }

    /// A receiver of the alerts raised or resolved by this process from now on (each alert
    /// reaches exactly one process's receivers, also with the Redis fan-out).
    pub fn subscribe_local_alerts(&self) -> broadcast::Receiver<AlertRecord> {
        self.local_alerts.subscribe()
    }

    /// Pushes an alert record to every admin at once.
    pub async fn publish_alert(&self, record: &AlertRecord) {
        if self.local_alerts.receiver_count() > 0 {
            let _ = self.local_alerts.send(record.clone());
        }
        let text = StreamMessage::Alert { alert: record }.text();
        match &self.redis {
            None => self.deliver(text),
            Some(fanout) => {
                if let Err(error) = fanout.publish(&text).await {
                    tracing::warn!(%error, "stream: cannot publish an alert to Redis");
                }
            }
        }
    }

    /// Offers a participant's merged state; it is pushed now or when the participant's window ends.
    pub async fn publish_metrics(self: &Arc<Self>, meeting_id: &str, participant: &ParticipantView) {
        let text = StreamMessage::Metrics {
            meeting_id,
            participant,
        }
        .text();
        let key = (meeting_id.to_owned(), participant.participant_id.clone());
        let seq = participant.last_seq;
        // A timer already holds an update of this participant: replace it with the newer one.
        // With Redis the gate is asked anyway, so that Redis holds the newest state of all
        // processes for whichever one publishes when the window ends.
        if self.redis.is_none() && replace_pending(&self.pending, &key, seq, &text) {
            return;
        }
        match self.gate(&key, seq, &text).await {
            Decision::Sent | Decision::Stale => {}
            Decision::Wait(wait) => {
                {
                    let mut pending = lock(&self.pending);
                    if let Some(held) = pending.get_mut(&key) {
                        if seq >= held.0 {
                            *held = (seq, text);
                        }
                        return;
                    }
                    pending.insert(key.clone(), (seq, text));
                }
                tokio::spawn(Arc::clone(self).hold(key, wait));
            }
        }
    }

    /// The timer of one participant's held update: offers it when the window ends, until sent.
    async fn hold(self: Arc<Self>, key: Key, mut wait: Duration) {
        loop {
            tokio::time::sleep(wait).await;
            let Some((seq, text)) = lock(&self.pending).get(&key).cloned() else {
                return;
            };
            match self.gate(&key, seq, &text).await {
                Decision::Wait(next) => wait = next,
                Decision::Sent | Decision::Stale => {
                    let mut pending = lock(&self.pending);
                    if pending.get(&key).is_some_and(|held| held.0 == seq) {
                        pending.remove(&key);
                        return;
                    }
                    // A newer update arrived meanwhile: it waits for the window just opened.
                    wait = Duration::ZERO;
                }
            }
        }
    }

    async fn gate(&self, key: &Key, seq: u64, text: &Utf8Bytes) -> Decision {
        match &self.redis {
            Some(fanout) => match fanout.gate(key, seq, text, self.interval).await {
                Ok(decision) => decision,
                Err(error) => {
                    tracing::warn!(%error, "stream: cannot publish metrics to Redis");
                    Decision::Stale
                }
            },
            None => {
                let now = Instant::now();
                let mut guard = lock(&self.windows);
                let (windows, swept) = &mut *guard;
                // Forget windows that ended a while ago (at most once per interval, so the
                // sweep costs little however many participants there are).
                if now >= *swept + self.interval * 5 {
                    windows.retain(|_, (end, _)| *end + self.interval > now);
                    *swept = now;
                }
                match windows.get(key) {
                    Some((_, last)) if seq < *last => Decision::Stale,
                    Some((end, _)) if *end > now => Decision::Wait(*end - now),
                    _ => {
                        windows.insert(key.clone(), (now + self.interval, seq));
                        drop(guard);
                        self.deliver(text.clone());
                        Decision::Sent
                    }
                }
            }
        }
    }
}

/// Replaces a held update of `key` by a newer one; false when none is held.
fn replace_pending(pending: &Mutex<HashMap<Key, (u64, Utf8Bytes)>>, key: &Key, seq: u64, text: &Utf8Bytes) -> bool {
    let mut pending = lock(pending);
    match pending.get_mut(key) {
        Some(held) => {
            if seq >= held.0 {
                *held = (seq, text.clone());
            }
            true
        }
        None => false,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The metrics gate across processes, atomic. The newest state held back by any process is kept
/// in Redis too, so whichever process offers first when the window ends publishes the newest one
/// (not just its own), and the others find theirs already published.
///
/// KEYS: gate key (exists while the window is open), last published seq, held state (a hash of
/// `seq` and `text`). ARGV: seq, window ms, channel, message.
/// Returns -1 (this state or a newer one was published), 0 (published) or the ms left in the window.
const GATE_SCRIPT: &str = r#"
local last = tonumber(redis.call('GET', KEYS[2])) or 0
local own = tonumber(ARGV[1])
if own <= last then return -1 end
local seq, text = own, ARGV[4]
local held = tonumber(redis.call('HGET', KEYS[3], 'seq')) or 0
if held > seq then seq, text = held, redis.call('HGET', KEYS[3], 'text') end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[3])
  redis.call('SET', KEYS[2], tostring(seq), 'PX', 300000)
  redis.call('PUBLISH', ARGV[3], text)
  return 0
end
if own > held then
  redis.call('HSET', KEYS[3], 'seq', ARGV[1], 'text', ARGV[4])
  redis.call('PEXPIRE', KEYS[3], 300000)
end
local left = redis.call('PTTL', KEYS[1])
if left < 1 then left = 1 end
return left
"#;

/// Where stream messages meet across processes: a Redis channel and the metrics gate keys.
#[derive(Clone)]
pub struct RedisFanout {
    client: redis::Client,
    connection: redis::aio::ConnectionManager,
    key_prefix: String,
    channel: String,
    gate_script: Script,
}

impl RedisFanout {
    /// Fan-out through the Redis at `url`, with keys and the channel under `key_prefix` (the
    /// store's prefix, so deployments sharing a Redis stay apart). Does not connect yet.
    pub fn new(url: &str, key_prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            client,
            connection,
            key_prefix: key_prefix.to_owned(),
            channel: format!("{key_prefix}stream"),
            gate_script: Script::new(GATE_SCRIPT),
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

    async fn gate(&self, key: &Key, seq: u64, text: &str, interval: Duration) -> Result<Decision, redis::RedisError> {
        let suffix = format!("{}:{}:{}", key.0.len(), key.0, key.1);
        let mut connection = self.connection.clone();
        let answer: i64 = self
            .gate_script
            .key(format!("{}stream-gate:{suffix}", self.key_prefix))
            .key(format!("{}stream-seq:{suffix}", self.key_prefix))
            .key(format!("{}stream-held:{suffix}", self.key_prefix))
            .arg(seq)
            .arg(interval.as_millis().max(1) as u64)
            .arg(&self.channel)
            .arg(text)
            .invoke_async(&mut connection)
            .await?;
        Ok(match answer {
            0 => Decision::Sent,
            ms if ms < 0 => Decision::Stale,
            ms => Decision::Wait(Duration::from_millis(ms as u64)),
        })
    }
}

/// Forwards the Redis channel into the local broadcast, reconnecting after a failure.
async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    sender: broadcast::Sender<Utf8Bytes>,
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
                        if let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) {
                            let _ = sender.send(Utf8Bytes::from(text));
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

/// `GET /api/v1/stream`: upgrades to a WebSocket that receives every stream message as text.
pub async fn handler(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    _token: crate::api::StreamToken,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> axum::response::Response {
    // Subscribed before the upgrade, so nothing published after the answer is missed.
    let messages = state.hub().subscribe();
    upgrade.on_upgrade(move |socket| forward(socket, messages))
}

async fn forward(mut socket: axum::extract::ws::WebSocket, mut messages: broadcast::Receiver<Utf8Bytes>) {
    use axum::extract::ws::Message;
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(text) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "stream: an admin socket fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // Pings are answered by the library; anything else from the admin is ignored.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
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
        }
    }

    fn json(text: &Utf8Bytes) -> serde_json::Value {
        serde_json::from_str(text.as_str()).unwrap()
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
        let alert = json(&StreamMessage::Alert { alert: &record }.text());
        assert_eq!(alert["type"], "alert");
        assert_eq!(alert["alert"], serde_json::to_value(&record).unwrap());
        let p = participant(3, 120.0);
        let metrics = json(
            &StreamMessage::Metrics {
                meeting_id: "m",
                participant: &p,
            }
            .text(),
        );
        assert_eq!(metrics["type"], "metrics");
        assert_eq!(metrics["meeting_id"], "m");
        assert_eq!(metrics["participant_id"], "p");
        assert_eq!(metrics["rtt_ms"], 120.0);
        assert_eq!(metrics["last_seen"], 1_003);
        assert!(metrics["loss_pct"].is_null());
    }

    #[tokio::test]
    async fn the_local_gate_holds_the_latest_update_until_the_window_ends() {
        let hub = Arc::new(Hub::local(Duration::from_millis(200)));
        let mut messages = hub.subscribe();
        for seq in 1..=5 {
            hub.publish_metrics("m", &participant(seq, seq as f64)).await;
        }
        // An older state arriving late never replaces a newer held one.
        hub.publish_metrics("m", &participant(2, 2.0)).await;
        let first = json(&messages.recv().await.unwrap());
        assert_eq!(first["last_seq"], 1);
        assert!(messages.try_recv().is_err());
        let held = tokio::time::timeout(Duration::from_secs(2), messages.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(json(&held)["last_seq"], 5);
        // The timer lets go of the participant once its update went out.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(lock(&hub.pending).is_empty());
    }
}
