//! Every message between the extension's parts, defined once: hook, bridge, service worker, offscreen document, popup.
//!
//! The JavaScript files point here instead of keeping a second schema, and one golden JSON per
//! message (`shared/tests/golden/messages/`, checked by the tests below) pins the format. Every
//! message is an object tagged by its `type` member, in kebab-case; messages for the offscreen
//! document also carry `target: "offscreen"`, which their sender adds and the offscreen
//! document's listener routes on (serde ignores it).
//!
//! One poll of a page's connections travels as one message all the way: `hook.js` posts a
//! [`HookMessage::Stats`] over its private port, its items as one JSON string ([`ItemsJson`]:
//! on the page's thread a string costs one copy, where a structured clone and a check of every
//! member walked the whole poll); `bridge.js` checks its shape against [`crate::limits`] and
//! sends a [`FromPage`] with the string unread; `sw.js` parses it, checks the items and reports
//! against [`crate::limits`], adds the tab, its URL and the time and forwards the items as a
//! [`ToOffscreen::Stats`]; the offscreen document converts that straight from the JavaScript
//! objects (`extension/src/convert.rs`) and hands it to its driver.

use crate::metrics::TabMetrics;
use crate::quality::QualityClass;
use crate::stats::{lenient_reports, RawReport};
use serde::{Deserialize, Serialize};

/// One connection's `getStats()` result in a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcStats {
    /// The hook's id for the connection (`crate::limits::valid_pc_id`).
    pub pc: String,
    /// The reports the processor reads, each trimmed to the members it reads (the hook copies
    /// nothing else). Read leniently: anything that is not a well-formed report of such a type
    /// is [`RawReport::Other`].
    #[serde(deserialize_with = "lenient_reports")]
    pub reports: Vec<RawReport>,
}

/// A poll's items as one JSON text, as `JSON.stringify` writes them in `hook.js` (serialized as
/// that string; read by parsing it).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemsJson(pub Vec<PcStats>);

impl Serialize for ItemsJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for ItemsJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text).map(Self).map_err(serde::de::Error::custom)
    }
}

/// `hook.js` -> `bridge.js`, over the `MessagePort` the hook hands the bridge at document_start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum HookMessage {
    /// One poll of the document's connections: those whose `getStats()` settled before the next
    /// poll (a late one follows in a message of its own).
    Stats {
        /// The connections of the items, in their order.
        pcs: Vec<String>,
        json: ItemsJson,
    },
    /// A connection closed, or the page dropped it (it was garbage-collected).
    Closed { pc: String },
}

/// `bridge.js` -> `sw.js` (`chrome.runtime.sendMessage`): what the bridge forwards, marked as
/// coming from the page side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FromPage {
    pub source: PageSource,
    #[serde(flatten)]
    pub message: PageMessage,
}

/// The `source` member of every [`FromPage`]: how the service worker tells page messages apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PageSource {
    #[serde(rename = "call-vitals-hook")]
    Hook,
}

/// What [`FromPage`] carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PageMessage {
    /// A [`HookMessage::Stats`] whose ids the bridge checked: `pcs` are those whose items may
    /// pass (a frame's first [`crate::limits::MAX_CONNECTIONS_PER_FRAME`]), `json` the hook's
    /// string, unread. `sw.js` keeps the items of those connections, each report reduced to its
    /// short strings, finite numbers, booleans and small objects of numbers.
    Stats { pcs: Vec<String>, json: ItemsJson },
    /// A connection of this frame closed, or the frame went away (`pagehide`); only for
    /// connections whose stats the bridge forwarded.
    Closed { pc: String },
    /// The tab's top document went away (`pagehide` of the top frame): the tab's call ends.
    PageGone,
}

/// Messages the offscreen document handles (from `sw.js` and the popup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToOffscreen {
    /// One poll of a frame's connections ([`PageMessage::Stats`], to which the service worker
    /// adds the tab, its URL and the time).
    Stats {
        tab: i64,
        /// The page's URL; only its origin and path are ever used, and only inside the browser.
        url: String,
        /// The service worker's clock when it forwarded the poll, ms since the epoch.
        now_ms: f64,
        items: Vec<PcStats>,
    },
    /// A connection closed.
    PcClosed { tab: i64, pc: String },
    /// The tab closed or navigated away: forget it.
    TabGone { tab: i64 },
    /// Settings, from `chrome.storage` through the service worker.
    Config(Settings),
    /// The popup asks for a tab's view ([`TabView`]); `tab: None` means the tab that last had
    /// a call.
    GetTab { tab: Option<i64> },
    /// The popup asks for a tab's report of the last 10 minutes (`report::Report`, or null when
    /// nothing is recorded); `tab: None` as for `GetTab`.
    GetReport { tab: Option<i64> },
    /// The service worker asks what a tab's toolbar badge shows ([`Badge`]).
    GetBadge { tab: i64 },
}

/// Messages the popup sends the service worker (`sw.js`, `adopt.js`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToWorker {
    /// Whether a tab's page is measured at all ([`Coverage`]).
    GetCoverage { tab: i64 },
}

/// The answer to [`ToWorker::GetCoverage`]: whether the extension sees a tab's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coverage {
    /// The hook came at the page's start: every connection is measured.
    Measured,
    /// The page was already running when this run of the extension started and the hook was
    /// injected into it: a connection made before is measured once the page calls one of its
    /// methods (getStats, createOffer, ...); one the page never touches needs a reload.
    Adopted,
    /// The page is on an allowed site but no hook of this run reached it (it was open before
    /// the extension started and injecting failed): reloading the tab measures it.
    ReloadNeeded,
    /// Call Vitals does not run on this page (a site left out in the options, a browser page).
    Off,
}

/// Messages the offscreen document sends the service worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum FromOffscreen {
    /// The document listens (sent by `offscreen.js` once the wasm runs): the service worker
    /// sends it the config, then what waited.
    OffscreenReady,
    /// No tab has a call and nothing waits for upload (`driver::Effect::Idle`): the service
    /// worker closes the document unless a snapshot just came.
    OffscreenIdle,
}

/// The answer to [`ToOffscreen::GetBadge`]: what the toolbar badge shows for a tab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Badge {
    /// The quality's bars, "4" (excellent) to "1" (poor); "…" while the call has no quality
    /// yet; empty (no badge) without a call.
    pub text: String,
    /// The badge's background, `#rrggbb`; `None` when there is no badge.
    pub color: Option<String>,
}

impl Badge {
    /// The badge of a tab whose latest metrics are `metrics` (`None`: no call).
    pub fn of(metrics: Option<&TabMetrics>) -> Self {
        let Some(metrics) = metrics.filter(|m| !m.peers.is_empty()) else {
            return Self {
                text: String::new(),
                color: None,
            };
        };
        let (text, color) = match metrics.figures.quality {
            Some(q) => (
                q.bars().to_string(),
                match q {
                    QualityClass::Excellent => "#1e9e4a",
                    QualityClass::Good => "#7bb32e",
                    QualityClass::Fair => "#e69b00",
                    QualityClass::Poor => "#d93025",
                },
            ),
            None => ("…".to_string(), "#8a909c"),
        };
        Self {
            text,
            color: Some(color.to_string()),
        }
    }
}

/// The user's settings (options page, `chrome.storage.sync`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The collector's base URL, e.g. `http://127.0.0.1:7878`.
    pub collector_url: String,
    pub ingest_key: String,
    /// Shown to admins next to the participant id.
    pub label: String,
    /// Sending is off until the user turns it on (or the build configured a collector).
    pub sending: bool,
    /// A random id made once per install.
    pub install_id: String,
    /// Where the hook runs; `extension/sites.js` registers the content scripts accordingly.
    pub sites_mode: SitesMode,
    /// The allow or deny list of [`Settings::sites_mode`]: Chrome match patterns such as
    /// `*://meet.example.com/*`, as the options page normalises what the user types.
    pub sites: Vec<String>,
    /// When not empty, meeting ids are uploaded as their salted hash
    /// ([`crate::privacy::uploaded_meeting_id`]), never as the page's address.
    pub meeting_id_salt: String,
}

/// The sites where the hook runs. Stored as "all", "allow" or "deny"; anything else (a value
/// written by another version through `chrome.storage.sync`) reads as `All`, as `sites.js` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SitesMode {
    /// Every page (the default).
    #[default]
    All,
    /// Only pages matching [`Settings::sites`].
    Allow,
    /// Every page except those matching [`Settings::sites`].
    Deny,
}

impl<'de> Deserialize<'de> for SitesMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(deserializer)?.as_str() {
            Some("allow") => Self::Allow,
            Some("deny") => Self::Deny,
            _ => Self::All,
        })
    }
}

/// Where the connection to the collector stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectorState {
    /// Sending is off (no collector configured, or turned off).
    #[default]
    Off,
    /// Sending is on but no call runs (no offscreen document): queued events wait in storage.
    Idle,
    /// Sending is on and nothing was tried yet.
    Connecting,
    /// The last upload succeeded.
    Connected,
    /// The last upload failed; it is tried again.
    Retrying,
}

impl CollectorState {
    /// Lower-case name, as on the wire and in the popup's `data-state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Idle => "idle",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Retrying => "retrying",
        }
    }
}

impl PartialEq<&str> for CollectorState {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

/// The collector connection as the popup shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectorStatus {
    pub state: CollectorState,
    pub queued: usize,
    /// Events the upload queue's bound evicted before the collector had them.
    #[serde(default)]
    pub dropped: u64,
    pub sent: u64,
    pub last_error: Option<String>,
}

/// The popup's answer to [`ToOffscreen::GetTab`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TabView {
    pub tab: Option<i64>,
    pub metrics: Option<TabMetrics>,
    pub collector: CollectorStatus,
    /// The tab's call over the last minute, oldest first, about one sample a second (for the
    /// popup's sparklines). Empty when the tab has no call.
    #[serde(default)]
    pub history: Vec<HistorySample>,
    /// Start of what `GetReport` would return for this tab (ms); `None` when nothing is
    /// recorded. Set after the call ended too, until the tab closes or navigates away (or the
    /// offscreen document closes, idle).
    #[serde(default)]
    pub recorded_since_ms: Option<f64>,
}

/// One point of a tab's recent history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistorySample {
    /// When the metrics were measured, ms (the shell's clock).
    pub at_ms: f64,
    /// Upload plus download, kbps.
    pub bitrate_kbps: Option<f64>,
    pub rtt_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Figures, PeerMetrics};
    use crate::stats::{
        Candidate, CandidatePair, InboundRtp, OutboundRtp, RemoteCandidate, RemoteInboundRtp, Transport,
    };
    use serde::de::DeserializeOwned;
    use serde_json::{json, Value};
    use std::collections::BTreeSet;
    use std::fmt::Debug;
    use std::path::PathBuf;

    fn golden_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/messages")
    }

    /// Every number as an f64: JavaScript writes `1234` where serde writes `1234.0`, and both
    /// are the same number on the wire.
    fn numbers_as_f64(value: Value) -> Value {
        match value {
            Value::Number(n) => json!(n.as_f64()),
            Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_f64).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect()),
            other => other,
        }
    }

    /// A poll's `json` member ([`ItemsJson`]) as the items it holds: the golden file has it as
    /// `JSON.stringify` writes it, serde its own way (`1234.0`, no spaces).
    fn json_member_parsed(mut value: Value) -> Value {
        if let Some(Value::String(text)) = value.get("json") {
            let items: Value = serde_json::from_str(text).expect("the json member is JSON");
            value["json"] = items;
        }
        value
    }

    /// `value` is written as `<name>.json` holds it and read back from it unchanged. A golden
    /// `target` member (added by the sender of every message for the offscreen document, not
    /// part of the type) is read but not expected from serde.
    fn golden<T: Serialize + DeserializeOwned + PartialEq + Debug>(seen: &mut BTreeSet<String>, name: &str, value: T) {
        let path = golden_dir().join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let golden: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut expected = numbers_as_f64(json_member_parsed(golden.clone()));
        if let Some(map) = expected.as_object_mut() {
            map.remove("target");
        }
        let written = numbers_as_f64(json_member_parsed(serde_json::to_value(&value).unwrap()));
        assert_eq!(written, expected, "{name}: written differently");
        let read: T = serde_json::from_value(golden).unwrap_or_else(|e| panic!("{name}: not read: {e}"));
        assert_eq!(read, value, "{name}: read differently");
        assert!(seen.insert(name.to_string()), "{name} checked twice");
    }

    // One name per message type: a new variant does not compile until it has a golden file.
    fn hook_name(m: &HookMessage) -> &'static str {
        match m {
            HookMessage::Stats { .. } => "hook-message.stats",
            HookMessage::Closed { .. } => "hook-message.closed",
        }
    }

    fn page_name(m: &FromPage) -> &'static str {
        match m.message {
            PageMessage::Stats { .. } => "from-page.stats",
            PageMessage::Closed { .. } => "from-page.closed",
            PageMessage::PageGone => "from-page.page-gone",
        }
    }

    fn to_offscreen_name(m: &ToOffscreen) -> &'static str {
        match m {
            ToOffscreen::Stats { .. } => "to-offscreen.stats",
            ToOffscreen::PcClosed { .. } => "to-offscreen.pc-closed",
            ToOffscreen::TabGone { .. } => "to-offscreen.tab-gone",
            ToOffscreen::Config(_) => "to-offscreen.config",
            ToOffscreen::GetTab { .. } => "to-offscreen.get-tab",
            ToOffscreen::GetReport { .. } => "to-offscreen.get-report",
            ToOffscreen::GetBadge { .. } => "to-offscreen.get-badge",
        }
    }

    fn to_worker_name(m: &ToWorker) -> &'static str {
        match m {
            ToWorker::GetCoverage { .. } => "to-worker.get-coverage",
        }
    }

    fn coverage_name(c: &Coverage) -> &'static str {
        match c {
            Coverage::Measured => "coverage.measured",
            Coverage::Adopted => "coverage.adopted",
            Coverage::ReloadNeeded => "coverage.reload-needed",
            Coverage::Off => "coverage.off",
        }
    }

    fn from_offscreen_name(m: &FromOffscreen) -> &'static str {
        match m {
            FromOffscreen::OffscreenReady => "from-offscreen.offscreen-ready",
            FromOffscreen::OffscreenIdle => "from-offscreen.offscreen-idle",
        }
    }

    /// A poll of two connections as the hook trims it: a full scan of the first (one report of
    /// every type the processor reads) and the second still connecting (no selected pair yet).
    fn poll_ids() -> Vec<String> {
        poll().into_iter().map(|item| item.pc).collect()
    }

    fn poll() -> Vec<PcStats> {
        let s = |v: &str| Some(v.to_string());
        vec![
            PcStats {
                pc: "k3j9x2-1".into(),
                reports: vec![
                    RawReport::OutboundRtp(OutboundRtp {
                        id: s("OT01V1234"),
                        timestamp: Some(1_764_000_000_000.5),
                        ssrc: Some(1234.0),
                        kind: s("video"),
                        bytes_sent: Some(2_500_000.0),
                        packets_sent: Some(2400.0),
                        frames_per_second: Some(30.0),
                        frame_width: Some(640.0),
                        frame_height: Some(480.0),
                        quality_limitation_reason: s("none"),
                        ..OutboundRtp::default()
                    }),
                    RawReport::InboundRtp(InboundRtp {
                        id: s("IT01A5678"),
                        timestamp: Some(1_764_000_000_000.5),
                        ssrc: Some(5678.0),
                        kind: s("audio"),
                        bytes_received: Some(480_000.0),
                        packets_received: Some(3000.0),
                        packets_lost: Some(3.0),
                        jitter: Some(0.004),
                        ..InboundRtp::default()
                    }),
                    RawReport::RemoteInboundRtp(RemoteInboundRtp {
                        id: s("RI01V1234"),
                        kind: s("video"),
                        round_trip_time: Some(0.031),
                        fraction_lost: Some(0.0),
                    }),
                    RawReport::Transport(Transport {
                        id: s("T01"),
                        selected_candidate_pair_id: s("CPa1b2c3d4_e5f6a7b8"),
                        ..Default::default()
                    }),
                    RawReport::CandidatePair(CandidatePair {
                        id: s("CPa1b2c3d4_e5f6a7b8"),
                        transport_id: s("T01"),
                        local_candidate_id: s("Ia1b2c3d4"),
                        remote_candidate_id: s("Ie5f6a7b8"),
                        state: s("succeeded"),
                        nominated: Some(true),
                        current_round_trip_time: Some(0.029),
                        total_round_trip_time: Some(1.74),
                        responses_received: Some(60.0),
                        ..CandidatePair::default()
                    }),
                    RawReport::LocalCandidate(Candidate {
                        id: s("Ia1b2c3d4"),
                        candidate_type: s("relay"),
                        relay_protocol: s("udp"),
                        url: s("turn:turn.example.com:3478?transport=udp"),
                    }),
                    RawReport::RemoteCandidate(RemoteCandidate {
                        id: s("Ie5f6a7b8"),
                        candidate_type: s("host"),
                    }),
                ],
            },
            PcStats {
                pc: "k3j9x2-2".into(),
                reports: vec![RawReport::Transport(Transport {
                    id: s("T01"),
                    selected_candidate_pair_id: None,
                    ..Default::default()
                })],
            },
        ]
    }

    #[test]
    fn every_message_matches_its_golden_json() {
        let mut seen = BTreeSet::new();
        for m in [
            HookMessage::Stats {
                pcs: poll_ids(),
                json: ItemsJson(poll()),
            },
            HookMessage::Closed { pc: "k3j9x2-1".into() },
        ] {
            golden(&mut seen, hook_name(&m), m);
        }
        for message in [
            PageMessage::Stats {
                pcs: poll_ids(),
                json: ItemsJson(poll()),
            },
            PageMessage::Closed { pc: "k3j9x2-1".into() },
            PageMessage::PageGone,
        ] {
            let m = FromPage {
                source: PageSource::Hook,
                message,
            };
            golden(&mut seen, page_name(&m), m);
        }
        for m in [
            ToOffscreen::Stats {
                tab: 1_234_567_890,
                url: "https://meet.example.com/abc-defg-hij?authuser=0".into(),
                now_ms: 1_764_000_000_123.0,
                items: poll(),
            },
            ToOffscreen::PcClosed {
                tab: 1_234_567_890,
                pc: "k3j9x2-1".into(),
            },
            ToOffscreen::TabGone { tab: 1_234_567_890 },
            ToOffscreen::Config(Settings {
                collector_url: "https://vitals.example.com".into(),
                ingest_key: "ik_3f9a".into(),
                label: "Alice (support)".into(),
                sending: true,
                install_id: "0b6f8e52-3c1d-4a7e-9f2b-5d8c1e4a7b90".into(),
                sites_mode: SitesMode::Allow,
                sites: vec!["*://meet.example.com/*".into(), "https://*.example.org/*".into()],
                meeting_id_salt: "acme-2026".into(),
            }),
            ToOffscreen::GetTab { tab: None },
            ToOffscreen::GetReport {
                tab: Some(1_234_567_890),
            },
            ToOffscreen::GetBadge { tab: 1_234_567_890 },
        ] {
            golden(&mut seen, to_offscreen_name(&m), m);
        }
        for m in [FromOffscreen::OffscreenReady, FromOffscreen::OffscreenIdle] {
            golden(&mut seen, from_offscreen_name(&m), m);
        }
        let m = ToWorker::GetCoverage { tab: 1_234_567_890 };
        golden(&mut seen, to_worker_name(&m), m);
        for c in [
            Coverage::Measured,
            Coverage::Adopted,
            Coverage::ReloadNeeded,
            Coverage::Off,
        ] {
            golden(&mut seen, coverage_name(&c), c);
        }
        // Answers.
        let metrics = TabMetrics {
            figures: Figures {
                upload_kbps: Some(812.5),
                download_kbps: Some(640.0),
                rtt_ms: Some(29.0),
                loss_pct: Some(0.1),
                jitter_ms: Some(4.0),
                using_relay: true,
                relay_protocol: Some("udp".into()),
                quality: Some(QualityClass::Good),
                mos: Some(4.31),
            },
            at_ms: 1_764_000_000_123.0,
            relay_server_url: Some("turn:turn.example.com:3478?transport=udp".into()),
            peers: vec![PeerMetrics {
                pc: "k3j9x2-1".into(),
                at_ms: 1_764_000_000_123.0,
                interval_ms: 1000.0,
                upload_kbps: Some(812.5),
                download_kbps: Some(640.0),
                rtt_ms: Some(29.0),
                carries_media: true,
                quality: Some(QualityClass::Good),
                connection: crate::metrics::ConnectionInfo {
                    state: Some("connected".into()),
                    ice_state: Some("connected".into()),
                    since_response_ms: Some(1000.0),
                    ..Default::default()
                },
                ..PeerMetrics::default()
            }],
            findings: vec![crate::finding::Finding {
                id: crate::finding::FindingId::HighLatency,
                severity: crate::alerts::Severity::Warning,
                pc: "k3j9x2-1".into(),
                title: "High delay: 420 ms round trip, so people talk over each other".into(),
                evidence: vec![crate::finding::Evidence {
                    label: "round trip".into(),
                    value: "420 ms".into(),
                }],
                advice: crate::finding::FindingId::HighLatency.advice().into(),
                since_ms: 1_763_999_990_000.0,
                until_ms: None,
            }],
        };
        golden(&mut seen, "badge", Badge::of(Some(&metrics)));
        golden(&mut seen, "badge.no-call", Badge::of(None));
        golden(
            &mut seen,
            "tab-view",
            TabView {
                tab: Some(1_234_567_890),
                metrics: Some(metrics),
                collector: CollectorStatus {
                    state: CollectorState::Retrying,
                    queued: 3,
                    dropped: 0,
                    sent: 41,
                    last_error: Some("collector answered 503".into()),
                },
                history: vec![HistorySample {
                    at_ms: 1_764_000_000_123.0,
                    bitrate_kbps: Some(1452.5),
                    rtt_ms: Some(29.0),
                }],
                recorded_since_ms: Some(1_763_999_940_123.0),
            },
        );

        // No golden file that no test reads.
        let files: BTreeSet<String> = std::fs::read_dir(golden_dir())
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".json")
                    .to_string()
            })
            .collect();
        assert_eq!(files, seen);
    }

    #[test]
    fn one_malformed_report_does_not_fail_its_poll() {
        let items = json!([{"pc": "p", "reports": [
            {"type": "codec", "id": "C1"}, 42, {"type": "outbound-rtp", "id": 7, "bytesSent": "lots"},
            {"type": "transport", "id": "T", "selectedCandidatePairId": "CP"}
        ]}]);
        let m: HookMessage =
            serde_json::from_value(json!({"type": "stats", "pcs": ["p"], "json": items.to_string()})).unwrap();
        let HookMessage::Stats {
            json: ItemsJson(items), ..
        } = m
        else {
            panic!("not stats")
        };
        assert_eq!(
            items[0].reports,
            vec![
                RawReport::Other,
                RawReport::Other,
                RawReport::OutboundRtp(OutboundRtp::default()),
                RawReport::Transport(Transport {
                    id: Some("T".into()),
                    selected_candidate_pair_id: Some("CP".into()),
                    ..Default::default()
                }),
            ]
        );
    }

    #[test]
    fn the_badge_shows_the_quality_and_nothing_without_a_call() {
        let with = |quality, peers: usize| TabMetrics {
            figures: Figures {
                quality,
                ..Figures::default()
            },
            peers: vec![PeerMetrics::default(); peers],
            ..TabMetrics::default()
        };
        let badge = |m: &TabMetrics| {
            let b = Badge::of(Some(m));
            (b.text, b.color)
        };
        let colored = |t: &str, c: &str| (t.to_string(), Some(c.to_string()));
        assert_eq!(badge(&with(Some(QualityClass::Excellent), 1)), colored("4", "#1e9e4a"));
        assert_eq!(badge(&with(Some(QualityClass::Good), 2)), colored("3", "#7bb32e"));
        assert_eq!(badge(&with(Some(QualityClass::Fair), 1)), colored("2", "#e69b00"));
        assert_eq!(badge(&with(Some(QualityClass::Poor), 1)), colored("1", "#d93025"));
        assert_eq!(badge(&with(None, 1)), colored("…", "#8a909c"));
        assert_eq!(badge(&with(Some(QualityClass::Good), 0)), (String::new(), None));
    }

    #[test]
    fn settings_stored_before_the_site_list_still_load() {
        let old = r#"{"collector_url":"http://127.0.0.1:7878","ingest_key":"k","label":"","sending":true}"#;
        let s: Settings = serde_json::from_str(old).unwrap();
        assert_eq!((s.sites_mode, s.sites.len()), (SitesMode::All, 0));
        assert!(s.sending);
    }

    #[test]
    fn sites_mode_round_trips_and_unknown_values_read_as_all() {
        let s = Settings {
            sites_mode: SitesMode::Deny,
            sites: vec!["*://meet.example.com/*".into()],
            ..Settings::default()
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["sites_mode"], "deny");
        assert_eq!(serde_json::from_value::<Settings>(json).unwrap(), s);
        for other in [r#""everywhere""#, "7", "null"] {
            let mode: SitesMode = serde_json::from_str(other).unwrap();
            assert_eq!(mode, SitesMode::All, "{other}");
        }
    }
}
