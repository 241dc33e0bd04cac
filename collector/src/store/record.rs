//! Everything the collector keeps per participant, read and written as one versioned value.
//!
//! Ingest, alert evaluation, TURN accounting, the admin stream's 2 s limit and the rate limit all
//! read a participant's [`Record`], change it in Rust and write it back with a compare-and-set on
//! its version, together with what follows from the change (history point, alert records, usage,
//! index entries, messages to publish). So each event costs one store round trip, every rule has
//! one implementation for both stores, and collector processes sharing a Redis act as one: the
//! version check makes every change happen exactly once.

use super::{LiveState, MetricsView, ParticipantView, SeqSet};
use crate::ratelimit::ClientBuckets;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A serialized admin stream message: shared, not copied, by every receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamText(Arc<str>);

impl StreamText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for StreamText {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for StreamText {
    fn from(text: String) -> Self {
        Self(text.into())
    }
}

impl From<&str> for StreamText {
    fn from(text: &str) -> Self {
        Self(text.into())
    }
}

/// A participant, named by its meeting and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantKey {
    pub meeting_id: String,
    pub participant_id: String,
}

impl ParticipantKey {
    pub fn new(meeting_id: impl Into<String>, participant_id: impl Into<String>) -> Self {
        Self {
            meeting_id: meeting_id.into(),
            participant_id: participant_id.into(),
        }
    }

    /// `{meeting id length}:{meeting id}:{participant id}`: unambiguous whatever the ids hold.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.meeting_id.len(), self.meeting_id, self.participant_id)
    }

    /// The inverse of [`encode`](Self::encode).
    pub fn decode(text: &str) -> Option<Self> {
        let (length, rest) = text.split_once(':')?;
        let length: usize = length.parse().ok()?;
        let meeting_id = rest.get(..length)?;
        let participant_id = rest.get(length..)?.strip_prefix(':')?;
        Some(Self::new(meeting_id, participant_id))
    }
}

/// The admin stream's per-participant window: metrics go out at most once per window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gate {
    /// When the current window ends (ms since the Unix epoch); 0 when none is open.
    pub until: u64,
    /// An update arrived while the window was open: the current state goes out when it ends.
    pub held: bool,
}

/// Where the index entries written for this record stand, so that they are written only when
/// they change (not on every event).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Marks {
    /// The time this participant is due in the sweep index, if it is there.
    pub due: Option<u64>,
    /// `last_seen` when the live index was last written.
    pub indexed: u64,
    /// The history bucket of the state's last evaluation: the record's metrics are that bucket's
    /// point (written to the history when the stream publishes them, see `pipeline`).
    pub history_bucket: u64,
    /// The history bucket whose index entries were last written.
    pub history_indexed: u64,
    /// The TURN usage bucket whose index entries were last written.
    pub turn_bucket: u64,
    /// The event time (clamped, see `pipeline`) of the last batch applied: history buckets,
    /// alert and TURN times never go back before it.
    pub event_ms: u64,
    /// The class this record adds to the live gauges of `/metrics` (none: it is not counted,
    /// never seen or expired), so that each commit moves the gauges by exactly its change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gauge: Option<crate::metrics::GaugeClass>,
}

/// One participant's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When the collector last received a batch from this participant, ms since the Unix epoch.
    pub last_seen: u64,
    pub live: LiveState,
    pub seqs: SeqSet,
    pub derived: super::Derived,
    pub gate: Gate,
    /// The rate limit's token buckets, one per client address.
    #[serde(skip_serializing_if = "ClientBuckets::is_empty")]
    pub buckets: ClientBuckets,
    pub marks: Marks,
    /// The extension's own upload troubles, as it last reported them (the counts only grow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_health: Option<vitals_shared::wire::ClientHealth>,
}

impl Record {
    /// Whether the participant's live state has expired at `now_ms` (`live_ttl_ms` after its
    /// last batch).
    pub fn expired(&self, now_ms: u64, live_ttl_ms: u64) -> bool {
        now_ms >= self.last_seen.saturating_add(live_ttl_ms)
    }

    /// The merged metrics with every field present.
    pub fn metrics(&self) -> MetricsView {
        self.live.metrics.clone().into()
    }

    /// The participant as the admin API shows it.
    pub fn view(&self, participant_id: &str) -> ParticipantView {
        ParticipantView {
            participant_id: participant_id.to_owned(),
            label: self.label.clone(),
            last_seen: self.last_seen,
            last_seq: self.live.last_seq,
            metrics: self.metrics(),
            client_health: self.client_health,
        }
    }
}

/// A record as stored, with its version; version 0 and no record when none is stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Versioned {
    pub version: u64,
    pub record: Option<Record>,
}

/// What a commit does to the sweep index entry of its participant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DueChange {
    /// Leave it as it is.
    #[default]
    Keep,
    /// Due at this time.
    At(u64),
    /// Not due: remove the entry.
    Clear,
}

/// One change of a participant's record, with everything that follows from it. Applied
/// atomically, and only if the stored version is still `expected_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub key: ParticipantKey,
    pub expected_version: u64,
    /// The version the record gets.
    pub version: u64,
    /// The new record; `None` removes it.
    pub record: Option<Record>,
    pub now_ms: u64,
    /// The time whose TURN usage bucket `relayed` is added to: the events' time (see
    /// `pipeline`), `now_ms` unless set.
    pub usage_at_ms: u64,
    /// Alerts raised or resolved, appended to the alert history.
    pub alerts: Vec<crate::alerts::AlertRecord>,
    /// History points to write, by bucket start (a later write to a bucket replaces its point).
    pub history: Vec<(u64, MetricsView)>,
    /// Bytes relayed since the previous evaluation, added to the usage bucket of `now_ms`.
    pub relayed: Option<crate::turn::RelayedSince>,
    /// Write the live index entries (meeting and participant, scored by `last_seen`).
    pub index_live: bool,
    /// Write the history index entries of the latest bucket in `history`.
    pub index_history: bool,
    /// Write the TURN usage index entry of the bucket of `now_ms`.
    pub index_turn: bool,
    /// What happens to the participant's sweep index entry (kept apart from the record: an
    /// entry can outlive its record, and the sweeper then clears it).
    pub due: DueChange,
    /// Admin stream messages to publish on this Redis channel as part of the commit (only a
    /// store whose [`Store::publish_target`](super::Store::publish_target) matches the stream's is
    /// given one).
    pub publish_channel: Option<String>,
    pub publish: Vec<StreamText>,
}

impl Commit {
    /// A commit of `record` at `version` over `expected_version`, with nothing else.
    pub fn new(key: ParticipantKey, expected_version: u64, version: u64, record: Option<Record>, now_ms: u64) -> Self {
        Self {
            key,
            expected_version,
            version,
            record,
            now_ms,
            usage_at_ms: now_ms,
            alerts: Vec::new(),
            history: Vec::new(),
            relayed: None,
            index_live: false,
            index_history: false,
            index_turn: false,
            due: DueChange::Keep,
            publish_channel: None,
            publish: Vec::new(),
        }
    }
}

/// The answer to a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    Committed,
    /// Someone else changed the record first: this is what is stored now. Nothing was written.
    Conflict(Box<Versioned>),
}

/// The version a record gets when `expected` is the one it had. A new record starts from the
/// clock (ms × 1024), so that a record that expired and was created again never reuses a
/// version a stale reader may still hold.
pub fn next_version(expected: u64, now_ms: u64) -> u64 {
    if expected == 0 {
        now_ms.saturating_mul(1024).max(1)
    } else {
        expected + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_encode_unambiguously_and_decode() {
        for (meeting, participant) in [("a", "b:c"), ("a:b", "c"), ("", ""), ("https://x/y?z", "p:1:2")] {
            let key = ParticipantKey::new(meeting, participant);
            assert_eq!(ParticipantKey::decode(&key.encode()), Some(key.clone()));
        }
        assert_ne!(
            ParticipantKey::new("a", "b:c").encode(),
            ParticipantKey::new("a:b", "c").encode()
        );
        assert_eq!(ParticipantKey::decode("5:abc"), None);
        assert_eq!(ParticipantKey::decode("x:abc"), None);
    }

    #[test]
    fn records_round_trip_through_json() {
        let mut record = Record {
            label: Some("Alice".into()),
            last_seen: 1_700_000_000_123,
            ..Default::default()
        };
        record.live.metrics.rtt_ms = Some(0.1 + 0.2);
        record.seqs.insert(5);
        record.marks.due = Some(7);
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record);
        // Unknown or missing members are tolerated (records written by another version).
        assert_eq!(
            serde_json::from_str::<Record>(r#"{"last_seen": 5, "future": 1}"#)
                .unwrap()
                .last_seen,
            5
        );
    }

    #[test]
    fn versions_never_repeat_across_incarnations() {
        assert_eq!(next_version(7, 1_000), 8);
        assert!(next_version(0, 2_000) > next_version(0, 1_000));
        assert!(
            next_version(0, 1_700_000_000_000) < (1u64 << 53),
            "exact as a JSON number too"
        );
    }
}
