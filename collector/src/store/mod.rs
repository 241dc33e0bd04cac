//! The `Store` trait: where participant records, history, alerts and TURN usage live, with the
//! memory and Redis stores.
//!
//! A store knows no rules: it loads a participant's versioned [`Record`] and applies a
//! [`Commit`] (the new record and what follows from it) atomically if the version did not change.
//! The rules (merge, alerts, TURN accounting, stream limit, rate limit, participant token and
//! seq-jump bound) are applied in `crate::pipeline`, the same for both stores.

mod live;
mod memory;
pub mod record;
mod redis;

pub use self::live::{LiveState, SeqSet, FIELD_COUNT, FIELD_NAMES, MAX_SEQ, MAX_SEQ_RUNS};
pub use self::memory::MemoryStore;
pub use self::record::{next_version, Commit, CommitOutcome, DueChange, ParticipantKey, Record, StreamText, Versioned};
pub(crate) use self::redis::target_of as redis_target;
pub use self::redis::{RedisOptions, RedisStore};

use crate::alerts::{ActiveAlert, AlertRecord};
use crate::turn::{RelayCursor, TurnUsage};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use vitals_shared::wire::IngestBatch;
pub use vitals_shared::wire::MetricsView;

/// Live state expires this long after a participant's last event.
pub const LIVE_TTL_MS: u64 = 5 * 60 * 1000;

/// The live index (which participants are live) is written again once a participant's
/// `last_seen` moved on this much, not on every event (so a participant sending many events
/// costs six index writes per 10 s, not per event). Readers allow for the lag; the records
/// decide who is live.
pub const LIVE_INDEX_INTERVAL_MS: u64 = 10_000;

/// A record is kept this long after its live state expired, so the sweeper can still resolve
/// its alerts and close its TURN accounting.
pub const RECORD_GRACE_MS: u64 = 60_000;

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
    /// How much this batch raised the client's reported troubles (for `/metrics`).
    pub client_increase: vitals_shared::wire::ClientHealth,
    /// The participant's token, for a batch from a client (`crate::participant`).
    pub participant_token: Option<String>,
}

/// One participant as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantView {
    pub participant_id: String,
    pub label: Option<String>,
    /// When the collector last received a batch from this participant, ms since the Unix epoch.
    pub last_seen: u64,
    /// The highest sequence number applied.
    pub last_seq: u64,
    #[serde(flatten)]
    pub metrics: MetricsView,
    /// Events the participant's extension dropped and uploads refused, when it reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_health: Option<vitals_shared::wire::ClientHealth>,
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

/// `Derived` and the version of the record holding it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DerivedSlot {
    /// 0 when nothing is stored.
    pub version: u64,
    pub derived: Derived,
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

/// Where a page of history ends: (meeting id, participant id, bucket start) of its last point.
pub type HistoryPosition = (String, String, u64);

/// One page of a history query: at most `limit` points, those after `after` when given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryPage {
    pub query: HistoryQuery,
    pub after: Option<HistoryPosition>,
    pub limit: usize,
}

/// One page of alert history: at most `limit` records with `from_ms <= at <= to_ms`, optionally
/// of one meeting, leaving out the first `skip` of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertPage {
    pub from_ms: u64,
    pub to_ms: u64,
    pub meeting_id: Option<String>,
    pub skip: usize,
    pub limit: usize,
}

impl AlertPage {
    /// All alert records from `since_ms` on, as `Store::alert_history` answers.
    pub fn since(since_ms: u64, meeting_id: Option<&str>) -> Self {
        Self {
            from_ms: since_ms,
            to_ms: u64::MAX,
            meeting_id: meeting_id.map(str::to_owned),
            skip: 0,
            limit: usize::MAX,
        }
    }
}

/// A history series: (meeting id, participant id).
pub type SeriesKey = (String, String);

/// One page of live meetings: those whose id sorts after `after`, at most `limit` of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeetingsPage {
    pub after: Option<String>,
    pub limit: usize,
}

/// What the live caps count (see [`Store::live_count`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCount {
    pub meetings: usize,
    pub participants: usize,
    /// Whether the meeting asked about is one of `meetings`.
    pub meeting_known: bool,
}

/// The start of the history bucket holding `at_ms`.
pub fn history_bucket(at_ms: u64) -> u64 {
    at_ms - at_ms % HISTORY_BUCKET_MS
}

/// The start of the TURN usage bucket holding `at_ms`.
pub fn turn_bucket(at_ms: u64) -> u64 {
    at_ms - at_ms % crate::turn::BUCKET_MS
}

/// Where participant records, history, alerts and TURN usage are kept. Commits are atomic and
/// conditional on the record's version, also across collector processes sharing the store.
pub trait Store: Send + Sync + 'static {
    /// How long a participant's live state lasts after its last batch.
    fn live_ttl_ms(&self) -> u64;

    /// The participant's record and its version. May answer from a cache of this process: a
    /// stale answer only makes the next commit conflict (and the conflict carries the fresh one).
    fn load<'a>(&'a self, key: &'a ParticipantKey) -> StoreFuture<'a, Versioned>;

    /// Applies `commit` atomically if the stored version is still `commit.expected_version`;
    /// otherwise changes nothing and answers what is stored.
    fn commit(&self, commit: Commit) -> StoreFuture<'_, CommitOutcome>;

    /// Participants whose sweep index entry is due at `now_ms`, earliest first, at most `limit`.
    fn due(&self, now_ms: u64, limit: usize) -> StoreFuture<'_, Vec<ParticipantKey>>;

    /// The Redis (as `host:port/db`) whose channels a commit can publish to, if any: a stream
    /// fanned out through the same Redis then publishes within the commit.
    fn publish_target(&self) -> Option<&str> {
        None
    }

    /// Live meetings at `now_ms`, ordered by meeting id; participants whose last batch is older
    /// than the live TTL are gone.
    fn live_meetings(&self, now_ms: u64) -> StoreFuture<'_, Vec<MeetingView>> {
        Box::pin(async move {
            let all = MeetingsPage {
                after: None,
                limit: usize::MAX,
            };
            self.live_meetings_page(now_ms, &all).await
        })
    }

    /// One page of [`live_meetings`](Self::live_meetings): the records of the page's meetings
    /// only are read.
    fn live_meetings_page<'a>(&'a self, now_ms: u64, page: &'a MeetingsPage) -> StoreFuture<'a, Vec<MeetingView>>;

    /// The live meetings and participants the caps count, and whether `meeting_id` is one of
    /// them, from counts the store keeps (never a scan): the memory store counts the records it
    /// holds (live, or in the `RECORD_GRACE_MS` after), Redis counts its live indexes by score.
    fn live_count<'a>(&'a self, meeting_id: &'a str, now_ms: u64) -> StoreFuture<'a, LiveCount>;

    /// Succeeds when the store can serve requests.
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// The participant's derived state (active alerts, TURN cursor) and its record's version.
    fn derived<'a>(&'a self, meeting_id: &'a str, participant_id: &'a str) -> StoreFuture<'a, DerivedSlot> {
        Box::pin(async move {
            let loaded = self.load(&ParticipantKey::new(meeting_id, participant_id)).await?;
            Ok(DerivedSlot {
                version: loaded.version,
                derived: loaded.record.map(|r| r.derived).unwrap_or_default(),
            })
        })
    }

    /// Alert history from `since_ms` on (inclusive), oldest first, optionally of one meeting.
    fn alert_history<'a>(&'a self, since_ms: u64, meeting_id: Option<&'a str>) -> StoreFuture<'a, Vec<AlertRecord>>;

    /// History points, ordered by meeting, participant and time.
    fn history<'a>(&'a self, query: &'a HistoryQuery) -> StoreFuture<'a, Vec<HistoryPoint>> {
        Box::pin(async move {
            let page = HistoryPage {
                query: query.clone(),
                after: None,
                limit: usize::MAX,
            };
            self.history_page(&page).await
        })
    }

    /// One page of history points, in the order of `history`: read without holding the rest.
    /// Looks up the query's series first (every series of the range when it names no meeting):
    /// a reader of many pages uses [`history_series`](Self::history_series) once and
    /// [`series_page`](Self::series_page) instead.
    fn history_page<'a>(&'a self, page: &'a HistoryPage) -> StoreFuture<'a, Vec<HistoryPoint>> {
        Box::pin(async move {
            let series = self.history_series(&page.query).await?;
            self.series_page(&series, page).await
        })
    }

    /// The series that may hold points of `query` (those with a point from `query.from_ms`
    /// on; of its meeting and participant when it names them), sorted.
    fn history_series<'a>(&'a self, query: &'a HistoryQuery) -> StoreFuture<'a, Vec<SeriesKey>>;

    /// One page of the points of `series` (sorted, as `history_series` answers) in
    /// `page.query`'s time range, in the order of `history`, starting after `page.after`. The
    /// page's meeting and participant filters are not applied again: `series` is the selection.
    /// The work is in proportion to the series looked at and the points answered.
    fn series_page<'a>(&'a self, series: &'a [SeriesKey], page: &'a HistoryPage) -> StoreFuture<'a, Vec<HistoryPoint>>;

    /// How many points of `series` lie from `from_ms` to `to_ms`; counting may stop once the
    /// count is past `cap`.
    fn history_count<'a>(
        &'a self,
        series: &'a [SeriesKey],
        from_ms: u64,
        to_ms: u64,
        cap: usize,
    ) -> StoreFuture<'a, usize>;

    /// How many alert records `page` selects (its time range and meeting; `skip` ignored), at
    /// most `page.limit`.
    fn alert_count<'a>(&'a self, page: &'a AlertPage) -> StoreFuture<'a, usize>;

    /// One page of alert history, in the order of `alert_history` (records of one time in an
    /// order fixed by the store).
    fn alert_page<'a>(&'a self, page: &'a AlertPage) -> StoreFuture<'a, Vec<AlertRecord>>;

    /// Relayed bytes of the usage buckets starting from `from_ms` rounded down to the bucket to
    /// `to_ms`, summed per meeting, participant and TURN server, ordered by them.
    fn turn_usage(&self, from_ms: u64, to_ms: u64) -> StoreFuture<'_, Vec<TurnUsage>>;
}

/// The batch's sequence numbers, each once, ascending.
pub(crate) fn unique_seqs(batch: &IngestBatch) -> Vec<u64> {
    let mut seqs: Vec<u64> = batch.events.iter().map(|e| e.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}

/// The batch's events in sequence order (stable, so a repeated seq keeps its first copy first).
pub(crate) fn events_in_seq_order(batch: &IngestBatch) -> Vec<&vitals_shared::wire::Event> {
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

/// The first series of (sorted) `series` that `after` may still have points in: its own, or
/// the next one.
fn series_from(series: &[SeriesKey], after: Option<&HistoryPosition>) -> usize {
    after.map_or(0, |(meeting_id, participant_id, _)| {
        series.partition_point(|(m, p)| (m.as_str(), p.as_str()) < (meeting_id.as_str(), participant_id.as_str()))
    })
}

/// The lowest bucket to read of series (`meeting_id`, `participant_id`) for `page`: after the
/// bucket of `page.after` in its series, else from the range's start. `None`: nothing left.
fn lowest_bucket(page: &HistoryPage, meeting_id: &str, participant_id: &str) -> Option<std::ops::Bound<u64>> {
    use std::ops::Bound;
    match &page.after {
        Some((m, p, t)) if m == meeting_id && p == participant_id && *t >= page.query.from_ms => {
            (*t < page.query.to_ms).then_some(Bound::Excluded(*t))
        }
        _ => Some(Bound::Included(page.query.from_ms)),
    }
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
