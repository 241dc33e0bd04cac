//! A participant's live state and the one merge rule every store follows.
//!
//! Events can arrive out of order (retries, concurrent requests), so each metric field remembers
//! the sequence number of the event that last wrote it: an event writes a field only when it is
//! newer than that writer. In order, this is exactly `MetricsFields::merge`; out of order, an
//! older event fills gaps but never overwrites a newer value. Both stores keep this state as part
//! of the participant's record and apply it in Rust, so there is one implementation of the rule.
//!
//! [`SeqSet`] remembers which sequence numbers were applied, so a retried event is never applied
//! twice.

use serde::{Deserialize, Serialize};
use vitals_shared::wire::Event;
use vitals_shared::wire::MetricsFields;

/// Every field of `MetricsFields`, in one fixed order shared by the memory and Redis stores.
pub use vitals_shared::wire::{FIELD_COUNT, FIELD_NAMES};

/// The highest sequence number accepted (exact in a JSON number read as a double, 2^53 - 1).
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// Merged metrics of one participant plus, per field, the sequence number that wrote it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LiveState {
    pub metrics: MetricsFields,
    /// Indexed like `FIELD_NAMES`; 0 means never written (sequence numbers start at 1). A
    /// record stored before a field was added has fewer entries: the new fields read as never
    /// written.
    #[serde(deserialize_with = "field_seqs")]
    pub field_seq: [u64; FIELD_COUNT],
    /// The highest sequence number applied.
    pub last_seq: u64,
}

/// `field_seq` as stored: up to [`FIELD_COUNT`] entries, missing ones 0.
fn field_seqs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u64; FIELD_COUNT], D::Error> {
    let stored = Vec::<u64>::deserialize(d)?;
    if stored.len() > FIELD_COUNT {
        return Err(serde::de::Error::invalid_length(
            stored.len(),
            &"at most one entry per field",
        ));
    }
    let mut seqs = [0; FIELD_COUNT];
    seqs[..stored.len()].copy_from_slice(&stored);
    Ok(seqs)
}

impl LiveState {
    /// Applies one event (the caller has already dropped duplicates).
    pub fn apply(&mut self, event: &Event) {
        // The fields this event wins go through `MetricsFields::merge` as a delta, so the shared
        // rules (such as clearing relay details when relay use stops) apply here too. A full
        // event's absent field means "unknown", which a delta cannot express: it is cleared here.
        let won = self
            .metrics
            .take_newer(&event.metrics, event.full, event.seq, &mut self.field_seq);
        self.metrics.merge(&won, false);
        self.last_seq = self.last_seq.max(event.seq);
    }
}

/// Most separate runs of sequence numbers a [`SeqSet`] keeps before it folds the oldest into
/// its floor.
pub const MAX_SEQ_RUNS: usize = 64;

/// The sequence numbers applied for one participant, in bounded space: runs of consecutive
/// numbers, plus a floor at or below which every number counts as applied.
///
/// The extension numbers its events 1, 2, 3, ... and sends them in order, so this is one run.
/// Gaps (events still queued, or Socket.IO timestamps used as numbers) start new runs; past
/// [`MAX_SEQ_RUNS`] the oldest run is folded into the floor. An event older than all of those
/// runs is then taken as already applied: it is acknowledged and dropped (it could only fill
/// fields that none of the 64 newer runs wrote). A duplicate is never applied twice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SeqSet {
    /// Every number up to this one counts as applied.
    floor: u64,
    /// Disjoint, ascending, non-adjacent inclusive runs above `floor`.
    runs: Vec<(u64, u64)>,
}

impl SeqSet {
    /// Whether `seq` counts as applied.
    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.floor || self.runs.iter().any(|&(low, high)| low <= seq && seq <= high)
    }

    /// Adds `seq`; false (and no change) when it counts as applied already.
    pub fn insert(&mut self, seq: u64) -> bool {
        if self.contains(seq) {
            return false;
        }
        // The first run that ends at or after seq - 1 is where seq joins or goes before.
        let at = self.runs.partition_point(|&(_, high)| high.saturating_add(1) < seq);
        let joins_previous = at < self.runs.len() && self.runs[at].1.saturating_add(1) == seq;
        let joins_next = |runs: &[(u64, u64)], index: usize| index < runs.len() && runs[index].0 == seq + 1;
        if joins_previous {
            self.runs[at].1 = seq;
            if joins_next(&self.runs, at + 1) {
                self.runs[at].1 = self.runs[at + 1].1;
                self.runs.remove(at + 1);
            }
        } else if joins_next(&self.runs, at) {
            self.runs[at].0 = seq;
        } else {
            self.runs.insert(at, (seq, seq));
        }
        if self.runs.len() > MAX_SEQ_RUNS {
            let (_, high) = self.runs.remove(0);
            self.floor = high;
        }
        if self.runs.first().is_some_and(|&(low, _)| low == self.floor + 1) {
            self.floor = self.runs.remove(0).1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_shared::QualityClass;

    /// Every field set. Written without `..Default::default()` so that a field added to
    /// `MetricsFields` breaks this build until `FIELD_NAMES` and `apply` learn it.
    fn all_fields() -> MetricsFields {
        MetricsFields {
            upload_kbps: Some(812.5),
            download_kbps: Some(1400.25),
            rtt_ms: Some(42.1),
            loss_pct: Some(0.37),
            jitter_ms: Some(3.3),
            quality: Some(QualityClass::Good),
            mos: Some(4.12),
            using_relay: Some(true),
            relay_protocol: Some("tcp".into()),
            relay_server: Some("turn.example.com".into()),
            findings: Some("video-frozen".into()),
        }
    }

    fn event(seq: u64, full: bool, metrics: MetricsFields) -> Event {
        Event {
            seq,
            ts_ms: seq as f64 * 1000.0,
            full,
            metrics,
        }
    }

    #[test]
    fn a_record_stored_before_a_field_was_added_reads_the_new_one_as_never_written() {
        let mut stored = serde_json::to_value(LiveState::default()).unwrap();
        stored["field_seq"] = serde_json::json!([3, 3]);
        let state: LiveState = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(&state.field_seq[..3], [3, 3, 0]);
        stored["field_seq"] = serde_json::json!(vec![1; FIELD_COUNT + 1]);
        assert!(serde_json::from_value::<LiveState>(stored).is_err());
    }

    #[test]
    fn field_names_cover_every_field_in_order() {
        let value = serde_json::to_value(all_fields()).unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(object.len(), FIELD_COUNT);
        // Writing field i alone must set exactly field_seq[i].
        for (index, name) in FIELD_NAMES.iter().enumerate() {
            let single: MetricsFields = serde_json::from_value(serde_json::json!({ *name: object[*name] })).unwrap();
            let mut state = LiveState::default();
            state.apply(&event(7, false, single));
            let mut expected = [0; FIELD_COUNT];
            expected[index] = 7;
            assert_eq!(state.field_seq, expected, "{name}");
        }
    }

    #[test]
    fn live_state_round_trips_through_json_exactly() {
        let mut state = LiveState::default();
        state.apply(&event(3, true, all_fields()));
        state.metrics.rtt_ms = Some(0.1 + 0.2);
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<LiveState>(&text).unwrap(), state);
    }

    #[test]
    fn seq_set_applies_each_number_once_in_bounded_space() {
        let mut seqs = SeqSet::default();
        for seq in [1, 2, 3, 5, 4, 9, 7, 8, 6] {
            assert!(seqs.insert(seq), "{seq}");
            assert!(!seqs.insert(seq), "{seq} again");
        }
        assert_eq!((seqs.floor, seqs.runs.len()), (9, 0), "{seqs:?}");
        // A run that does not start at 1 stays a run; gaps are runs of their own.
        let mut seqs = SeqSet::default();
        for seq in [1000, 1001, 1003, 1005, 1004] {
            assert!(seqs.insert(seq));
        }
        assert_eq!(seqs.runs, [(1000, 1001), (1003, 1005)]);
        assert!(!seqs.contains(1002) && !seqs.contains(999) && seqs.contains(1004));
        assert!(seqs.insert(1002));
        assert_eq!(seqs.runs, [(1000, 1005)]);
        // Sparse numbers (Socket.IO timestamps): the oldest runs fold into the floor.
        let mut seqs = SeqSet::default();
        for i in 0..(MAX_SEQ_RUNS as u64 + 10) {
            assert!(seqs.insert(1_700_000_000_000 + 10 * i));
        }
        assert_eq!(seqs.runs.len(), MAX_SEQ_RUNS);
        assert_eq!(seqs.floor, 1_700_000_000_000 + 90);
        assert!(
            !seqs.insert(1_700_000_000_005),
            "older than every run: taken as applied"
        );
        assert!(seqs.insert(1_700_000_000_105), "a gap inside the runs is still open");
    }

    #[test]
    fn in_order_events_match_shared_merge() {
        let events = [
            event(1, true, all_fields()),
            event(
                2,
                false,
                MetricsFields {
                    rtt_ms: Some(300.0),
                    ..Default::default()
                },
            ),
            event(
                3,
                false,
                MetricsFields {
                    using_relay: Some(false),
                    ..Default::default()
                },
            ),
            event(
                4,
                true,
                MetricsFields {
                    upload_kbps: Some(1.0),
                    ..Default::default()
                },
            ),
            event(
                5,
                false,
                MetricsFields {
                    quality: Some(QualityClass::Poor),
                    ..Default::default()
                },
            ),
        ];
        let mut reference = MetricsFields::default();
        let mut state = LiveState::default();
        for e in &events {
            reference.merge(&e.metrics, e.full);
            state.apply(e);
            assert_eq!(state.metrics, reference, "after seq {}", e.seq);
        }
        assert_eq!(state.last_seq, 5);
    }

    #[test]
    fn older_event_fills_gaps_but_never_overwrites_newer_values() {
        let mut state = LiveState::default();
        state.apply(&event(
            5,
            false,
            MetricsFields {
                rtt_ms: Some(50.0),
                ..Default::default()
            },
        ));
        state.apply(&event(
            3,
            false,
            MetricsFields {
                rtt_ms: Some(900.0),
                upload_kbps: Some(10.0),
                ..Default::default()
            },
        ));
        assert_eq!(state.metrics.rtt_ms, Some(50.0));
        assert_eq!(state.metrics.upload_kbps, Some(10.0));
        // An older full snapshot does not clear what a newer delta wrote.
        state.apply(&event(4, true, MetricsFields::default()));
        assert_eq!(state.metrics.rtt_ms, Some(50.0));
        assert_eq!(state.metrics.upload_kbps, None);
        assert_eq!(state.last_seq, 5);
    }
}
