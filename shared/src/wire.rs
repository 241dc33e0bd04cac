//! Wire types between the extension and the collector: ingest batches, events and acknowledgements.

use crate::metrics::TabMetrics;
use crate::privacy::turn_server_name;
use serde::{Deserialize, Serialize};

/// Most events in one ingest batch.
pub const MAX_EVENTS_PER_BATCH: usize = 100;
/// Longest participant token accepted (the collector's are 64 hex digits).
pub const MAX_TOKEN_LEN: usize = 128;

pub use crate::fields::{
    FieldError, FieldInfo, MetricsFields, MetricsView, SetFieldError, FIELD_COUNT, FIELD_INFO, FIELD_NAMES, MAX_ID_LEN,
};

/// One event to the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Per-participant sequence number, from 1.
    pub seq: u64,
    /// When the state was measured, ms since the Unix epoch (for an event released by a tick,
    /// the time of the latest state, not of the tick).
    pub ts_ms: f64,
    /// A full snapshot (replaces the collector's state) rather than a delta.
    pub full: bool,
    pub metrics: MetricsFields,
}

fn round(x: Option<f64>, places: i32) -> Option<f64> {
    let k = 10f64.powi(places);
    x.map(|v| (v * k).round() / k)
}

impl MetricsFields {
    /// The uploadable view of a tab's metrics, rounded so that noise does not count as change.
    pub fn from_tab(m: &TabMetrics) -> Self {
        let tab = &m.figures;
        Self {
            upload_kbps: round(tab.upload_kbps, 1),
            download_kbps: round(tab.download_kbps, 1),
            rtt_ms: round(tab.rtt_ms, 1),
            loss_pct: round(tab.loss_pct, 2),
            jitter_ms: round(tab.jitter_ms, 1),
            quality: tab.quality,
            mos: round(tab.mos, 2),
            using_relay: Some(tab.using_relay),
            relay_protocol: tab.relay_protocol.clone().filter(|_| tab.using_relay),
            relay_server: m
                .relay_server_url
                .as_deref()
                .filter(|_| tab.using_relay)
                .and_then(turn_server_name),
            findings: Some(finding_ids(&m.findings)),
        }
    }
}

/// The distinct ids of `findings`, comma-separated in id order (the `findings` field).
pub fn finding_ids(findings: &[crate::finding::Finding]) -> String {
    let mut ids: Vec<crate::finding::FindingId> = findings.iter().map(|f| f.id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.iter().map(|id| id.as_str()).collect::<Vec<_>>().join(",")
}

/// `POST /api/v1/ingest` body: events of one participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestBatch {
    /// The meeting: the page's origin and path (no query or fragment), or a hash of them.
    pub meeting_id: String,
    /// A random per-install id plus the tab's call session.
    pub participant_id: String,
    /// An optional name the user chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The participant token of an earlier acknowledgement ([`IngestAck::participant_token`]):
    /// required once the participant exists at the collector, absent on its first batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_token: Option<String>,
    /// What this participant's uploads lost or had refused so far, for the admins (boxed: rare,
    /// and it keeps the batch, held in the extension's upload requests, small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_health: Option<Box<ClientHealth>>,
    pub events: Vec<Event>,
}

/// Largest count [`ClientHealth`] accepts (JavaScript's largest exact integer).
pub const MAX_CLIENT_COUNT: u64 = (1 << 53) - 1;

/// The extension's own upload troubles for one participant session, counted since it began:
/// cumulative, so a retried batch reports the same numbers and nothing counts twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientHealth {
    /// Events the extension dropped: rejected (400) batches and events over its queue bounds.
    pub dropped_events: u64,
    /// Uploads the collector refused as a whole (401, 403, 404, 413), retried later.
    pub refused_uploads: u64,
}

impl ClientHealth {
    /// The larger of each count: counts only grow, so an older report never lowers them.
    pub fn max(self, other: Self) -> Self {
        Self {
            dropped_events: self.dropped_events.max(other.dropped_events),
            refused_uploads: self.refused_uploads.max(other.refused_uploads),
        }
    }

    /// How far each count of `self` is above `earlier`'s.
    pub fn increase_over(self, earlier: Self) -> Self {
        Self {
            dropped_events: self.dropped_events.saturating_sub(earlier.dropped_events),
            refused_uploads: self.refused_uploads.saturating_sub(earlier.refused_uploads),
        }
    }
}

impl IngestBatch {
    /// Checks lengths, counts and every event's metrics; the error names the problem.
    pub fn validate(&self) -> Result<(), InvalidBatch> {
        for (name, value) in [
            ("meeting_id", &self.meeting_id),
            ("participant_id", &self.participant_id),
        ] {
            if value.is_empty() || value.len() > MAX_ID_LEN {
                return Err(InvalidBatch::IdLength { name });
            }
        }
        if self.label.as_ref().is_some_and(|l| l.len() > MAX_ID_LEN) {
            return Err(InvalidBatch::LabelLength);
        }
        if self
            .participant_token
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.len() > MAX_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(InvalidBatch::Token);
        }
        let texts = [
            ("meeting_id", Some(&self.meeting_id)),
            ("participant_id", Some(&self.participant_id)),
            ("label", self.label.as_ref()),
        ];
        if let Some((name, _)) = texts
            .iter()
            .find(|(_, text)| text.is_some_and(|text| !is_printable_text(text)))
        {
            return Err(InvalidBatch::IdCharacters { name });
        }
        if self
            .client_health
            .as_deref()
            .is_some_and(|h| h.dropped_events > MAX_CLIENT_COUNT || h.refused_uploads > MAX_CLIENT_COUNT)
        {
            return Err(InvalidBatch::ClientHealth);
        }
        if self.events.is_empty() || self.events.len() > MAX_EVENTS_PER_BATCH {
            return Err(InvalidBatch::EventCount);
        }
        for e in &self.events {
            if !e.ts_ms.is_finite() || e.ts_ms < 0.0 {
                return Err(InvalidBatch::EventTime { seq: e.seq });
            }
            e.metrics
                .validate()
                .map_err(|error| InvalidBatch::Metrics { seq: e.seq, error })?;
        }
        Ok(())
    }
}

/// Whether `text` shows as what it says: no control characters (C0, DEL, C1, so no line breaks
/// or TABs), no bidirectional formatting (which can make `evil.com/moc.knab` read as
/// `bank.com/...`), no line or paragraph separators and no zero-width characters. Ids and labels
/// reach admins' screens, CSV exports and chat webhooks.
pub fn is_printable_text(text: &str) -> bool {
    !text.chars().any(|c| {
        c.is_control()
            || matches!(
                c,
                '\u{061C}'
                    | '\u{200B}'..='\u{200F}'
                    | '\u{2028}'..='\u{202E}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{FEFF}'
            )
    })
}

/// Why an ingest batch was refused: the message names the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidBatch {
    #[error("{name} must be 1 to {MAX_ID_LEN} bytes")]
    IdLength { name: &'static str },
    #[error("label is longer than {MAX_ID_LEN} bytes")]
    LabelLength,
    #[error("participant_token must be 1 to {MAX_TOKEN_LEN} printable ASCII characters")]
    Token,
    #[error("{name} must be printable text: no control, bidirectional-formatting or invisible characters")]
    IdCharacters { name: &'static str },
    #[error("client_health counts must be at most {MAX_CLIENT_COUNT}")]
    ClientHealth,
    #[error("events must hold 1 to {MAX_EVENTS_PER_BATCH} events")]
    EventCount,
    #[error("event {seq}: ts_ms must be a finite time in ms")]
    EventTime { seq: u64 },
    #[error("event {seq}: {error}")]
    Metrics { seq: u64, error: FieldError },
}

/// `POST /api/v1/ingest` answer: the sequence numbers the collector now holds (newly stored or
/// already held), so the client can drop them from its queue, and the participant's token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IngestAck {
    pub accepted: Vec<u64>,
    /// The proof that this client is the participant's writer: every later batch of the same
    /// (meeting, participant) carries it as [`IngestBatch::participant_token`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::QualityClass;
    use serde_json::json;

    #[test]
    fn golden_batch_format() {
        let batch = IngestBatch {
            meeting_id: "https://meet.example.com/abc-defg".into(),
            participant_id: "p-1234".into(),
            label: Some("Alice".into()),
            participant_token: Some("0f1e".into()),
            client_health: None,
            events: vec![Event {
                seq: 1,
                ts_ms: 1_700_000_000_000.0,
                full: true,
                metrics: MetricsFields {
                    upload_kbps: Some(812.5),
                    download_kbps: Some(1400.0),
                    rtt_ms: Some(42.0),
                    quality: Some(QualityClass::Excellent),
                    using_relay: Some(true),
                    relay_protocol: Some("udp".into()),
                    ..MetricsFields::default()
                },
            }],
        };
        let golden = json!({
            "meeting_id": "https://meet.example.com/abc-defg",
            "participant_id": "p-1234",
            "label": "Alice",
            "participant_token": "0f1e",
            "events": [{"seq": 1, "ts_ms": 1_700_000_000_000.0, "full": true, "metrics": {
                "upload_kbps": 812.5, "download_kbps": 1400.0, "rtt_ms": 42.0,
                "quality": "excellent", "using_relay": true, "relay_protocol": "udp"
            }}]
        });
        assert_eq!(serde_json::to_value(&batch).unwrap(), golden);
        assert_eq!(serde_json::from_value::<IngestBatch>(golden).unwrap(), batch);
        assert!(batch.validate().is_ok());
        // A first batch has no token, and the field is left out.
        let first = IngestBatch {
            participant_token: None,
            ..batch
        };
        assert!(serde_json::to_value(&first).unwrap().get("participant_token").is_none());
    }

    #[test]
    fn client_health_is_optional_bounded_and_only_grows() {
        let batch = serde_json::from_value::<IngestBatch>(json!({
            "meeting_id": "m", "participant_id": "p",
            "client_health": {"dropped_events": 3, "refused_uploads": 2},
            "events": [{"seq": 1, "ts_ms": 1.0, "full": true, "metrics": {}}],
        }))
        .unwrap();
        let health = *batch.client_health.clone().unwrap();
        assert_eq!((health.dropped_events, health.refused_uploads), (3, 2));
        assert!(batch.validate().is_ok());
        let huge = IngestBatch {
            client_health: Some(Box::new(ClientHealth {
                dropped_events: MAX_CLIENT_COUNT + 1,
                refused_uploads: 0,
            })),
            ..batch.clone()
        };
        assert_eq!(
            huge.validate().unwrap_err().to_string(),
            format!("client_health counts must be at most {MAX_CLIENT_COUNT}")
        );
        let unknown = json!({"meeting_id": "m", "participant_id": "p", "events": [],
            "client_health": {"dropped_events": 1, "refused_uploads": 0, "other": 1}});
        assert!(serde_json::from_value::<IngestBatch>(unknown).is_err());
        let older = ClientHealth {
            dropped_events: 5,
            refused_uploads: 1,
        };
        let grown = health.max(older);
        assert_eq!((grown.dropped_events, grown.refused_uploads), (5, 2));
        let increase = health.increase_over(older);
        assert_eq!((increase.dropped_events, increase.refused_uploads), (0, 1));
    }

    #[test]
    fn golden_ack_format_and_token_bounds() {
        let ack = IngestAck {
            accepted: vec![1, 2],
            participant_token: Some("ab12".into()),
        };
        let golden = json!({"accepted": [1, 2], "participant_token": "ab12"});
        assert_eq!(serde_json::to_value(&ack).unwrap(), golden);
        assert_eq!(serde_json::from_value::<IngestAck>(golden).unwrap(), ack);
        // An older collector's answer has no token.
        assert_eq!(
            serde_json::from_value::<IngestAck>(json!({"accepted": [3]})).unwrap(),
            IngestAck {
                accepted: vec![3],
                participant_token: None
            }
        );
        let with_token = |token: &str| IngestBatch {
            meeting_id: "m".into(),
            participant_id: "p".into(),
            label: None,
            participant_token: Some(token.into()),
            client_health: None,
            events: vec![Event {
                seq: 1,
                ts_ms: 1.0,
                full: true,
                metrics: MetricsFields::default(),
            }],
        };
        assert!(with_token(&"a".repeat(MAX_TOKEN_LEN)).validate().is_ok());
        for bad in ["", "a b", "tok\n", &"a".repeat(MAX_TOKEN_LEN + 1)] {
            let error = with_token(bad).validate().unwrap_err().to_string();
            assert!(error.starts_with("participant_token must be"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let mut m = MetricsFields {
            loss_pct: Some(140.0),
            ..Default::default()
        };
        assert!(m.validate().unwrap_err().to_string().contains("loss_pct"));
        m.loss_pct = Some(f64::NAN);
        assert!(m.validate().unwrap_err().to_string().contains("loss_pct"));
        m = MetricsFields {
            relay_protocol: Some("<script>".into()),
            ..Default::default()
        };
        assert!(m.validate().unwrap_err().to_string().contains("relay_protocol"));
        let b: Result<IngestBatch, _> = serde_json::from_value(json!({
            "meeting_id": "m", "participant_id": "p", "events": [], "extra": 1
        }));
        assert!(b.is_err());
    }

    #[test]
    fn ids_and_labels_must_be_printable_and_the_refusal_names_the_field() {
        let batch = |meeting: &str, participant: &str, label: Option<&str>| IngestBatch {
            meeting_id: meeting.into(),
            participant_id: participant.into(),
            label: label.map(Into::into),
            participant_token: None,
            client_health: None,
            events: vec![Event {
                seq: 1,
                ts_ms: 1.0,
                full: true,
                metrics: MetricsFields::default(),
            }],
        };
        let refused = |b: IngestBatch| b.validate().unwrap_err().to_string();
        assert!(refused(batch("m\n[CRITICAL] fake", "p", None)).starts_with("meeting_id must be printable"));
        assert!(refused(batch("m", "p\u{202E}lmth.exe", None)).starts_with("participant_id must be printable"));
        assert!(refused(batch("m", "p", Some("Al\u{200B}ice"))).starts_with("label must be printable"));
        assert!(refused(batch("m", "p\u{7}", None)).contains("participant_id"));
        assert!(refused(batch("m", "p\u{85}", None)).contains("participant_id"));
        assert!(refused(batch("m\t", "p", None)).contains("meeting_id"));
        // Printable text of any script, and the characters escaped downstream, stay allowed.
        assert!(
            batch("https://meet.example.com/räum-日本", "<!channel> & co", Some("Zoë 😀"))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn merge_overlays_deltas_and_clears_relay_details() {
        let mut state = MetricsFields {
            rtt_ms: Some(40.0),
            using_relay: Some(true),
            relay_protocol: Some("tcp".into()),
            ..Default::default()
        };
        state.merge(
            &MetricsFields {
                upload_kbps: Some(10.0),
                ..Default::default()
            },
            false,
        );
        assert_eq!(state.rtt_ms, Some(40.0));
        assert_eq!(state.upload_kbps, Some(10.0));
        state.merge(
            &MetricsFields {
                using_relay: Some(false),
                ..Default::default()
            },
            false,
        );
        assert_eq!(state.relay_protocol, None);
        state.merge(
            &MetricsFields {
                rtt_ms: Some(5.0),
                ..Default::default()
            },
            true,
        );
        assert_eq!(state.upload_kbps, None);
    }
}
