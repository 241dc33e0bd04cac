//! The `Store` trait: where live participant state lives, with the memory and Redis stores.

mod live;
mod memory;
mod redis;

pub use self::live::{decode_fields, encode_fields, LiveState, FIELD_COUNT, FIELD_NAMES, MAX_SEQ};
pub use self::memory::MemoryStore;
pub use self::redis::{RedisOptions, RedisStore};

use crate::alerts::{ActiveAlert, AlertRecord};
use crate::turn::{RelayCursor, RelayedSince, TurnUsage};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use vitals_shared::wire::{IngestBatch, MetricsFields};
use vitals_shared::QualityClass;

/// Live state expires this long after a participant's last event.
pub const LIVE_TTL_MS: u64 = 5 * 60 * 1000;

/// History points are kept per participant per bucket of this length.
pub const HISTORY_BUCKET_MS: u64 = 10_000;
/// How long history, alert history and TURN usage are kept unless configured otherwise.
pub const DEFAULT_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

/// What the store methods return. Boxed so that `Store` can be used as `dyn Store`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store call failed. The text is for logs only: the API never shows it to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing service cannot be reached right now; the client should retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected answer.
    #[error("store failure: {0}")]
    Internal(String),
}

/// The result of ingesting one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestOutcome {
    /// Every sequence number of the batch, each once, ascending: all are now held, whether
    /// they were new or duplicates, so the client can drop them from its queue.
    pub accepted: Vec<u64>,
    /// The sequence numbers applied by this call (new ones), ascending. Alerts and history
    /// should look at these only, so that a retried event is never counted twice.
    pub applied: Vec<u64>,
    /// The participant's merged state after the batch.
    pub participant: ParticipantView,
}

/// One participant as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantView {
    pub participant_id: String,
    pub label: Option<String>,
    /// When the collector last received a batch from this participant, ms since the Unix epoch.
    pub last_seen: u64,
    /// The highest sequence number applied.
    pub last_seq: u64,
    #[serde(flatten)]
    pub metrics: MetricsView,
}

/// `MetricsFields` with every field present (null when unknown), so admin clients see a fixed
/// shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsView {
    pub upload_kbps: Option<f64>,
    pub download_kbps: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub quality: Option<QualityClass>,
    pub mos: Option<f64>,
    pub using_relay: Option<bool>,
    pub relay_protocol: Option<String>,
    pub relay_server: Option<String>,
}

impl From<MetricsFields> for MetricsView {
    fn from(metrics: MetricsFields) -> Self {
        // Destructured without `..` so that a new field cannot be forgotten here.
        let MetricsFields {
            upload_kbps,
            download_kbps,
            rtt_ms,
            loss_pct,
            jitter_ms,
            quality,
            mos,
            using_relay,
            relay_protocol,
            relay_server,
        } = metrics;
        Self {
            upload_kbps,
            download_kbps,
            rtt_ms,
            loss_pct,
            jitter_ms,
            quality,
            mos,
            using_relay,
            relay_protocol,
            relay_server,
        }
    }
}

/// A live meeting and its live participants, ordered by participant id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeetingView {
    pub meeting_id: String,
    pub participants: Vec<ParticipantView>,
}

/// What the collector derives per participant besides the merged metrics (active alerts, the
/// TURN accounting cursor), kept in the store so that any collector process continues where
/// another one left off, and a restart loses nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Derived {
    /// The participant's `last_seq` when this was last evaluated: an older merged state (from a
    /// concurrent request that finished later) is not evaluated again.
    pub evaluated_seq: u64,
    pub alerts: Vec<ActiveAlert>,
    pub relay: Option<RelayCursor>,
}

/// `Derived` and its version, for an optimistic compare-and-set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DerivedSlot {
    /// 0 when nothing was stored yet; every successful commit adds one.
    pub version: u64,
    pub derived: Derived,
}

/// One evaluation's results, committed atomically and only if nobody committed in between.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedCommit {
    pub meeting_id: String,
    pub participant_id: String,
    /// The version read; the commit fails (returns false) if the stored one differs.
    pub expected_version: u64,
    pub derived: Derived,
    /// Alerts raised or resolved, appended to the alert history.
    pub records: Vec<AlertRecord>,
    /// The participant's metrics now: the history point of the bucket of `now_ms` (the last one
    /// in a bucket wins).
    pub history: Option<MetricsView>,
    /// Bytes relayed since the previous evaluation, added to the usage bucket of `now_ms`.
    pub relayed: Option<RelayedSince>,
    pub now_ms: u64,
}

/// One point of a participant's history: the merged metrics at the end of a 10 s bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub meeting_id: String,
    pub participant_id: String,
    /// Start of the bucket, ms since the Unix epoch.
    pub t: u64,
    #[serde(flatten)]
    pub metrics: MetricsView,
}

/// Which history to read: bucket starts from `from_ms` to `to_ms`, both inclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryQuery {
    pub meeting_id: Option<String>,
    pub participant_id: Option<String>,
    pub from_ms: u64,
    pub to_ms: u64,
}

/// The start of the history bucket holding `at_ms`.
pub fn history_bucket(at_ms: u64) -> u64 {
    at_ms - at_ms % HISTORY_BUCKET_MS
}

/// The start of the TURN usage bucket holding `at_ms`.
pub fn turn_bucket(at_ms: u64) -> u64 {
    at_ms - at_ms % crate::turn::BUCKET_MS
}

/// Where live participant state is kept. Implementations must merge atomically: concurrent
/// batches of one participant, even through different collector processes, lose no field.
pub trait Store: Send + Sync + 'static {
    /// Stores a batch that has already been validated. `now_ms` is the collector's clock
    /// (ms since the Unix epoch) and becomes the participant's `last_seen`.
    fn ingest<'a>(&'a self, batch: &'a IngestBatch, now_ms: u64) -> StoreFuture<'a, IngestOutcome>;

    /// Live meetings at `now_ms`, ordered by meeting id; participants whose last batch is older
    /// than the live TTL are gone.
    fn live_meetings(&self, now_ms: u64) -> StoreFuture<'_, Vec<MeetingView>>;

    /// Succeeds when the store can serve requests.
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// The participant's derived state and its version (a default one at version 0 if none).
    fn derived<'a>(&'a self, meeting_id: &'a str, participant_id: &'a str) -> StoreFuture<'a, DerivedSlot>;

    /// Stores `commit` atomically if the stored version is still `commit.expected_version`;
    /// answers false (and changes nothing) otherwise, so the caller reads and evaluates again.
    fn commit_derived<'a>(&'a self, commit: &'a DerivedCommit) -> StoreFuture<'a, bool>;

    /// Alert history from `since_ms` on (inclusive), oldest first, optionally of one meeting.
    fn alert_history<'a>(&'a self, since_ms: u64, meeting_id: Option<&'a str>) -> StoreFuture<'a, Vec<AlertRecord>>;

    /// History points, ordered by meeting, participant and time.
    fn history<'a>(&'a self, query: &'a HistoryQuery) -> StoreFuture<'a, Vec<HistoryPoint>>;

    /// Relayed bytes of the usage buckets starting from `from_ms` rounded down to the bucket to
    /// `to_ms`, summed per meeting, participant and TURN server, ordered by them.
    fn turn_usage(&self, from_ms: u64, to_ms: u64) -> StoreFuture<'_, Vec<TurnUsage>>;
}

/// The batch's sequence numbers, each once, ascending.
fn unique_seqs(batch: &IngestBatch) -> Vec<u64> {
    let mut seqs: Vec<u64> = batch.events.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

/// The batch's events in sequence order (stable, so a repeated seq keeps its first copy first).
fn events_in_seq_order(batch: &IngestBatch) -> Vec<&vitals_shared::emit::Event> {
    let mut events: Vec<_> = batch.events.iter().collect();
    events.sort_by_key(|e| e.seq);
    events
}

/// Relayed bytes keyed by (meeting id, participant id, TURN server).
type UsageSums = std::collections::BTreeMap<(String, String, Option<String>), u64>;

/// Usage sums as rows in key order.
fn usage_rows(sums: UsageSums) -> Vec<TurnUsage> {
    sums.into_iter()
        .map(
            |((meeting_id, participant_id, relay_server), relayed_bytes)| TurnUsage {
                meeting_id,
                participant_id,
                relay_server,
                relayed_bytes,
            },
        )
        .collect()
}

/// Groups participants (any order) into meetings ordered by id, participants ordered by id.
fn group_meetings(participants: impl IntoIterator<Item = (String, ParticipantView)>) -> Vec<MeetingView> {
    let mut by_meeting: std::collections::BTreeMap<String, Vec<ParticipantView>> = Default::default();
    for (meeting_id, participant) in participants {
        by_meeting.entry(meeting_id).or_default().push(participant);
    }
    by_meeting
        .into_iter()
        .map(|(meeting_id, mut participants)| {
            participants.sort_by(|a, b| a.participant_id.cmp(&b.participant_id));
            MeetingView {
                meeting_id,
                participants,
            }
        })
        .collect()
}
