//! A participant's live state and the one merge rule every store follows.
//!
//! Events can arrive out of order (retries, concurrent requests), so each metric field remembers
//! the sequence number of the event that last wrote it: an event writes a field only when it is
//! newer than that writer. In order, this is exactly `MetricsFields::merge`; out of order, an
//! older event fills gaps but never overwrites a newer value. The Redis store's Lua script
//! implements the same rule over the encoding below, and the contract tests hold them together.

use serde_json::{Map, Value};
use vitals_shared::emit::Event;
use vitals_shared::wire::MetricsFields;

/// Every field of `MetricsFields`, in one fixed order shared by the memory and Redis stores.
pub const FIELD_NAMES: [&str; FIELD_COUNT] = [
    "upload_kbps",
    "download_kbps",
    "rtt_ms",
    "loss_pct",
    "jitter_ms",
    "quality",
    "mos",
    "using_relay",
    "relay_protocol",
    "relay_server",
];
pub const FIELD_COUNT: usize = 10;

/// The highest sequence number accepted: the Redis script does arithmetic in Lua doubles, which
/// are exact up to 2^53.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// Merged metrics of one participant plus, per field, the sequence number that wrote it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveState {
    pub metrics: MetricsFields,
    /// Indexed like `FIELD_NAMES`; 0 means never written (sequence numbers start at 1).
    pub field_seq: [u64; FIELD_COUNT],
    /// The highest sequence number applied.
    pub last_seq: u64,
}

impl LiveState {
    /// Applies one event (the caller has already dropped duplicates).
    pub fn apply(&mut self, event: &Event) {
        // The fields this event wins go through `MetricsFields::merge` as a delta, so the shared
        // rules (such as clearing relay details when relay use stops) apply here too. A full
        // event's absent field means "unknown", which a delta cannot express: it is cleared here.
        let mut won = MetricsFields::default();
        macro_rules! last_writer_wins {
            ($($index:literal => $field:ident),* $(,)?) => {$(
                let writes = event.full || event.metrics.$field.is_some();
                if writes && self.field_seq[$index] < event.seq {
                    self.field_seq[$index] = event.seq;
                    match &event.metrics.$field {
                        Some(_) => won.$field = event.metrics.$field.clone(),
                        None => self.metrics.$field = None,
                    }
                }
            )*};
        }
        last_writer_wins!(
            0 => upload_kbps,
            1 => download_kbps,
            2 => rtt_ms,
            3 => loss_pct,
            4 => jitter_ms,
            5 => quality,
            6 => mos,
            7 => using_relay,
            8 => relay_protocol,
            9 => relay_server,
        );
        self.metrics.merge(&won, false);
        self.last_seq = self.last_seq.max(event.seq);
    }
}

/// Each field's JSON text, indexed like `FIELD_NAMES` (`None` when the field is absent). The Redis
/// store keeps these strings verbatim so numbers never pass through Lua's float formatting.
pub fn encode_fields(metrics: &MetricsFields) -> [Option<String>; FIELD_COUNT] {
    let value = serde_json::to_value(metrics).expect("MetricsFields always serializes");
    let object = value.as_object().cloned().unwrap_or_default();
    FIELD_NAMES.map(|name| object.get(name).map(Value::to_string))
}

/// The inverse of `encode_fields`; an undecodable value (never written by this code) is dropped.
pub fn decode_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> MetricsFields {
    let mut object = Map::new();
    for (name, text) in fields {
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            // Each field is decoded alone so one bad value cannot hide the others.
            let mut single = Map::new();
            single.insert(name.to_owned(), value.clone());
            if serde_json::from_value::<MetricsFields>(Value::Object(single)).is_ok() {
                object.insert(name.to_owned(), value);
            }
        }
    }
    serde_json::from_value(Value::Object(object)).unwrap_or_default()
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
    fn field_names_cover_every_field_in_order() {
        let encoded = encode_fields(&all_fields());
        assert!(encoded.iter().all(Option::is_some), "{encoded:?}");
        let value = serde_json::to_value(all_fields()).unwrap();
        assert_eq!(value.as_object().unwrap().len(), FIELD_COUNT);
        // Writing field i alone must set exactly field_seq[i].
        for (index, name) in FIELD_NAMES.iter().enumerate() {
            let single = decode_fields([(*name, encoded[index].as_deref().unwrap())]);
            let mut state = LiveState::default();
            state.apply(&event(7, false, single));
            let mut expected = [0; FIELD_COUNT];
            expected[index] = 7;
            assert_eq!(state.field_seq, expected, "{name}");
        }
    }

    #[test]
    fn encoding_round_trips() {
        let metrics = all_fields();
        let encoded = encode_fields(&metrics);
        let pairs = FIELD_NAMES
            .iter()
            .zip(encoded.iter())
            .filter_map(|(n, v)| Some((*n, v.as_deref()?)));
        assert_eq!(decode_fields(pairs), metrics);
        assert_eq!(
            decode_fields([("rtt_ms", "\"not a number\"")]),
            MetricsFields::default()
        );
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
