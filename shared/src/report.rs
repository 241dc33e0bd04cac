//! The call report: the last 10 minutes of a tab's call (samples per connection, the tab's quality over time, alerts) without any address.
//!
//! The offscreen document keeps a [`CallRecorder`] per tab; the popup asks for the [`Report`]
//! (`get-report`), adds the browser and extension version, saves it as JSON and copies a short
//! summary built from it. Nothing in a report names an address: no IP, port, SDP, URL query or
//! TURN url. The page is its origin and path, with an IP-literal host hidden and the port dropped.

mod alerts;
mod overview;
mod recorder;

pub use crate::metrics::Figures;
pub use alerts::{alert_events, AlertEvent};
pub use overview::{Overview, Stat};
pub use recorder::CallRecorder;

use crate::alerts::AlertThresholds;
use crate::finding::Finding;
use crate::metrics::{PeerMetrics, TabMetrics};
use crate::privacy::{meeting_id, turn_server_name};
use serde::{Deserialize, Serialize};

/// The `format` member of every report.
pub const REPORT_FORMAT: &str = "call-vitals-report";
/// The report layout's version; bumped when a member changes meaning.
pub const REPORT_VERSION: u32 = 2;
/// How far back a report goes: 10 minutes.
pub const REPORT_WINDOW_MS: f64 = 600_000.0;
/// Samples kept per ring (the tab's and each connection's): 10 minutes at one a second.
pub const RING_SAMPLES: usize = 600;
/// Tab samples closer than this to the previous one replace it (a tab with several connections
/// gets new aggregate metrics after each connection's snapshot, several times a second).
pub const SAMPLE_STEP_MS: f64 = 900.0;
/// Connections kept per tab; past this the one heard from least recently is dropped.
pub const MAX_CONNECTIONS: usize = 32;

/// A report of one tab's call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`REPORT_FORMAT`].
    pub format: String,
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// When the report was made, ms since the Unix epoch, and as ISO 8601 (UTC).
    pub generated_at_ms: f64,
    pub generated_at: String,
    /// The span the samples cover.
    pub time_range: TimeRange,
    /// The page's origin and path (no query, fragment, credentials or port; an IP-literal host
    /// reads "ip-literal"). `None` for a page that is not http(s).
    pub page: Option<String>,
    /// Filled in by the popup.
    pub browser: BrowserInfo,
    /// The extension's version (manifest), filled in by the popup.
    pub extension_version: String,
    /// The alert thresholds the report was judged by (the collector's defaults).
    pub thresholds: AlertThresholds,
    /// Averages and extremes over the whole range.
    pub overview: Overview,
    /// The tab's aggregate over time, oldest first, about one sample a second.
    pub quality: Vec<TabSample>,
    /// Every connection seen in the range, with its own samples.
    pub connections: Vec<ConnectionSeries>,
    /// Alerts raised and resolved, in time order.
    pub alerts: Vec<AlertEvent>,
    /// The diagnosis: each finding of the range with its start, its end (`None`: still
    /// active) and its evidence, in the order raised (since version 2).
    #[serde(default)]
    pub findings: Vec<Finding>,
}

/// A span of time, in ms since the Unix epoch and as ISO 8601 (UTC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeRange {
    pub from_ms: f64,
    pub to_ms: f64,
    pub from: String,
    pub to: String,
    pub duration_s: f64,
}

impl TimeRange {
    pub fn new(from_ms: f64, to_ms: f64) -> Self {
        Self {
            from_ms,
            to_ms,
            from: iso_utc(from_ms),
            to: iso_utc(to_ms),
            duration_s: ((to_ms - from_ms).max(0.0) / 1000.0).round(),
        }
    }
}

/// The browser, as `navigator.userAgentData` (or the user agent string) tells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrowserInfo {
    /// E.g. "Chromium 156.0.7258.5".
    pub name: String,
    pub platform: String,
    pub user_agent: String,
    /// `userAgentData.fullVersionList` (or `brands`).
    pub brands: Vec<BrandVersion>,
}

/// One entry of `userAgentData.brands` or `fullVersionList`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrandVersion {
    pub brand: String,
    pub version: String,
}

impl BrowserInfo {
    /// Names the browser: the most specific real brand ("Google Chrome" over "Chromium"; the
    /// made-up "Not A;Brand" entries skipped) with its version, else the user agent's
    /// `Chrome/<version>`, else "unknown browser".
    pub fn describe(brands: &[BrandVersion], user_agent: &str) -> String {
        let real: Vec<&BrandVersion> = brands
            .iter()
            .filter(|b| !b.brand.is_empty() && !b.brand.contains("Not") && !b.brand.contains("Brand"))
            .collect();
        let chosen = real.iter().find(|b| b.brand != "Chromium").or_else(|| real.first());
        if let Some(b) = chosen {
            return format!("{} {}", b.brand, b.version).trim().to_string();
        }
        user_agent
            .split_whitespace()
            .find_map(|part| part.strip_prefix("Chrome/"))
            .map_or_else(|| "unknown browser".to_string(), |v| format!("Chrome {v}"))
    }
}

/// The tab's aggregate at one time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TabSample {
    /// ms since the Unix epoch.
    pub at_ms: f64,
    #[serde(flatten)]
    pub figures: Figures,
    /// Live connections at the time.
    pub connections: u32,
}

impl TabSample {
    pub fn from_metrics(m: &TabMetrics) -> Self {
        Self {
            at_ms: m.at_ms,
            figures: m.figures.clone(),
            connections: m.peers.len().try_into().unwrap_or(u32::MAX),
        }
    }
}

/// One connection's figures over one interval (about a second).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSample {
    /// End of the interval, ms since the Unix epoch.
    pub at_ms: f64,
    #[serde(flatten)]
    pub figures: Figures,
}

impl ConnectionSample {
    pub fn from_metrics(m: &PeerMetrics) -> Self {
        Self {
            at_ms: m.at_ms,
            figures: Figures::of_peer(m),
        }
    }
}

/// One connection over the report's range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSeries {
    /// The connection's id as the hook named it (replaced by `connection-N` if it looked like an
    /// address).
    pub pc: String,
    pub first_ms: f64,
    pub last_ms: f64,
    /// When the connection closed, if it did.
    pub closed_ms: Option<f64>,
    /// Relayed in any sample.
    pub using_relay: bool,
    /// Every relay protocol seen, in order of first use.
    pub relay_protocols: Vec<String>,
    pub samples: Vec<ConnectionSample>,
}

impl Report {
    /// A report of `recorder`'s samples from the last [`REPORT_WINDOW_MS`] before `now_ms`, for
    /// the page at `page_url` (only its origin and path are kept). The browser and extension
    /// version are left empty for the popup to fill in.
    pub fn build(recorder: &CallRecorder, page_url: &str, now_ms: f64) -> Self {
        let since = now_ms - REPORT_WINDOW_MS;
        let quality: Vec<TabSample> = recorder.tab_samples().filter(|s| s.at_ms >= since).cloned().collect();
        let mut connections: Vec<ConnectionSeries> = recorder
            .connections()
            .filter_map(|(pc, samples, closed_ms)| {
                let samples: Vec<ConnectionSample> = samples.filter(|s| s.at_ms >= since).cloned().collect();
                let first = samples.first()?.at_ms;
                let last = samples.last()?.at_ms;
                let mut relay_protocols: Vec<String> = Vec::new();
                for p in samples.iter().filter_map(|s| s.figures.relay_protocol.as_ref()) {
                    if !relay_protocols.contains(p) {
                        relay_protocols.push(p.clone());
                    }
                }
                Some(ConnectionSeries {
                    pc: pc.to_string(),
                    first_ms: first,
                    last_ms: last,
                    closed_ms,
                    using_relay: samples.iter().any(|s| s.figures.using_relay),
                    relay_protocols,
                    samples,
                })
            })
            .collect();
        // A connection id that looks like an address is shown by its number instead, in the
        // findings too.
        let mut shown: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for (i, c) in connections.iter_mut().enumerate() {
            if looks_like_address(&c.pc) {
                let name = format!("connection-{}", i + 1);
                shown.insert(std::mem::replace(&mut c.pc, name.clone()), name);
            }
        }
        let findings: Vec<Finding> = recorder
            .findings()
            .filter(|f| f.until_ms.is_none_or(|until| until >= since))
            .cloned()
            .map(|mut f| {
                if let Some(name) = shown.get(&f.pc) {
                    f.pc.clone_from(name);
                } else if looks_like_address(&f.pc) {
                    f.pc = "connection".to_owned();
                }
                f
            })
            .collect();
        let times = quality
            .iter()
            .map(|s| s.at_ms)
            .chain(connections.iter().flat_map(|c| [c.first_ms, c.last_ms]));
        let (from_ms, to_ms) = times.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| (lo.min(t), hi.max(t)));
        let time_range = if from_ms <= to_ms {
            TimeRange::new(from_ms, to_ms)
        } else {
            TimeRange::new(now_ms, now_ms)
        };
        let thresholds = AlertThresholds::default();
        let alerts = alert_events(&quality, &thresholds);
        let overview = Overview::of(&quality, &connections, &alerts, time_range.duration_s);
        Self {
            format: REPORT_FORMAT.to_string(),
            version: REPORT_VERSION,
            generated_at_ms: now_ms,
            generated_at: iso_utc(now_ms),
            time_range,
            page: report_page(page_url),
            browser: BrowserInfo::default(),
            extension_version: String::new(),
            thresholds,
            overview,
            quality,
            connections,
            alerts,
            findings,
        }
    }

    /// The file name to save the report as: `call-vitals-report-20250101T120000Z.json`.
    pub fn file_name(&self) -> String {
        let stamp: String = iso_utc(self.generated_at_ms)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        format!("call-vitals-report-{stamp}.json")
    }
}

/// The page as a report names it: origin and path without query, fragment, credentials or port;
/// an IP-literal host becomes "ip-literal".
pub fn report_page(page_url: &str) -> Option<String> {
    let id = meeting_id(page_url)?;
    let (scheme, rest) = id.split_once("://")?;
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // The TURN helper already turns `host:port` into a host without port, hiding IP literals.
    let host = turn_server_name(&format!("turn:{hostport}"))?;
    let path = if looks_like_address(path) { "/" } else { path };
    Some(format!("{scheme}://{host}{path}"))
}

/// Milliseconds since the Unix epoch as ISO 8601 UTC, to the second: `2025-01-01T12:00:00Z`.
pub fn iso_utc(ms: f64) -> String {
    let secs = if ms.is_finite() {
        (ms / 1000.0).floor() as i64
    } else {
        0
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Whether `text` contains something that looks like an IPv4 or IPv6 literal.
pub fn looks_like_address(text: &str) -> bool {
    let ipv4 = text.split(|c: char| !(c.is_ascii_digit() || c == '.')).any(|token| {
        // A sentence's full stop is not part of the address.
        let parts: Vec<&str> = token.trim_matches('.').split('.').collect();
        parts.len() == 4
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u16>().is_ok_and(|n| n <= 255))
    });
    let ipv6 = text
        .split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
        .any(|token| token.contains("::") || token.matches(':').count() >= 3);
    ipv4 || ipv6
}

/// Every way `value` (a report, or any JSON) could leak an address: members named like an
/// address, port, url or SDP, and strings holding an IP literal, a `turn:`/`stun:` url, a query
/// string or a url with a port. The `browser` member is skipped (its version numbers look like
/// IPv4 literals). Used by the tests here and by the browser tests, so both check the same rules.
pub fn address_leaks(value: &serde_json::Value) -> Vec<String> {
    const FORBIDDEN_KEYS: [&str; 11] = [
        "address",
        "ip",
        "port",
        "url",
        "urls",
        "sdp",
        "candidate",
        "relatedAddress",
        "related_address",
        "server_url",
        "relay_server_url",
    ];
    let mut leaks = Vec::new();
    let mut stack = vec![("$".to_string(), value)];
    while let Some((path, v)) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    if FORBIDDEN_KEYS.contains(&k.as_str()) {
                        leaks.push(format!("{path}.{k}: a member named like an address"));
                    }
                    if !(path == "$" && k == "browser") {
                        stack.push((format!("{path}.{k}"), child));
                    }
                }
            }
            serde_json::Value::Array(items) => {
                stack.extend(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, child)| (format!("{path}[{i}]"), child)),
                );
            }
            serde_json::Value::String(s) => {
                if let Some(why) = string_leak(s) {
                    leaks.push(format!("{path}: {why} in {s:?}"));
                }
            }
            _ => {}
        }
    }
    leaks
}

fn string_leak(s: &str) -> Option<&'static str> {
    let lower = s.to_ascii_lowercase();
    if looks_like_address(s) {
        Some("an IP literal")
    } else if ["turn:", "turns:", "stun:", "stuns:"].iter().any(|p| lower.contains(p)) {
        Some("an ICE server url")
    } else if lower.contains("a=candidate") || lower.contains("v=0\r\n") || lower.contains("c=in ip") {
        Some("SDP")
    } else if lower.contains("://") && s.contains('?') {
        Some("a query string")
    } else if let Some((_, rest)) = s.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        authority.contains(':').then_some("a port")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertKind, AlertState};
    use crate::metrics::RelayInfo;
    use crate::processor::{Input, Output, Processor};
    use crate::quality::QualityClass;
    use crate::stats::parse_report;
    use serde_json::{json, Value};
    use std::path::Path;

    #[test]
    fn iso_times() {
        assert_eq!(iso_utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(951_782_400_000.0), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(1_700_000_000_999.0), "2023-11-14T22:13:20Z");
        assert_eq!(iso_utc(4_107_542_399_000.0), "2100-02-28T23:59:59Z");
        assert_eq!(iso_utc(f64::NAN), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn pages_keep_origin_and_path_only() {
        assert_eq!(
            report_page("https://meet.example.com:8443/abc-def?pwd=x#y").as_deref(),
            Some("https://meet.example.com/abc-def")
        );
        assert_eq!(
            report_page("http://127.0.0.1:7878/demo?turn=turn:127.0.0.1:3478").as_deref(),
            Some("http://ip-literal/demo")
        );
        assert_eq!(
            report_page("http://[::1]:7878/room").as_deref(),
            Some("http://ip-literal/room")
        );
        assert_eq!(
            report_page("https://u:p@example.com/join/10.0.0.7").as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(report_page("chrome://newtab"), None);
    }

    #[test]
    fn addresses_are_recognised() {
        for leaky in [
            "10.0.0.7",
            "x-192.168.1.20-y",
            "fe80::1",
            "2001:db8:0:0:1:0:0:1",
            "::ffff:127.0.0.1",
        ] {
            assert!(looks_like_address(leaky), "{leaky}");
        }
        assert!(looks_like_address("seen at 10.0.0.7."));
        for fine in [
            "pc-1",
            "a1b2c3-4",
            "12:03:10",
            "2025-01-01T12:00:00Z",
            "1.2.3",
            "256.1.1.1",
            "v=1.2.3.4.5",
        ] {
            assert!(!looks_like_address(fine), "{fine}");
        }
        let leaks = address_leaks(&json!({
            "page": "http://example.com:8080/x",
            "q": "https://example.com/x?room=1",
            "ice": "turn:relay.example.com",
            "n": [{"port": 3478}],
            "browser": {"user_agent": "Chrome/156.0.0.0"},
            "fine": "https://example.com/room",
        }));
        assert_eq!(leaks.len(), 4, "{leaks:#?}");
    }

    #[test]
    fn browsers_are_named_by_their_most_specific_brand() {
        let b = |brand: &str, version: &str| BrandVersion {
            brand: brand.into(),
            version: version.into(),
        };
        let list = [
            b("Not)A;Brand", "8.0.0.0"),
            b("Chromium", "156.0.7258.5"),
            b("Google Chrome", "156.0.7258.5"),
        ];
        assert_eq!(BrowserInfo::describe(&list, ""), "Google Chrome 156.0.7258.5");
        assert_eq!(BrowserInfo::describe(&list[..2], ""), "Chromium 156.0.7258.5");
        let ua =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
        assert_eq!(BrowserInfo::describe(&[], ua), "Chrome 156.0.0.0");
        assert_eq!(BrowserInfo::describe(&[], "curl"), "unknown browser");
    }

    fn peer(pc: &str, at_s: f64, rtt: f64, relay: bool) -> PeerMetrics {
        PeerMetrics {
            pc: pc.into(),
            at_ms: at_s * 1000.0,
            interval_ms: 1000.0,
            upload_kbps: Some(500.0),
            download_kbps: Some(700.0),
            rtt_ms: Some(rtt),
            loss_in_pct: Some(0.5),
            jitter_ms: Some(4.0),
            relay: RelayInfo {
                using_relay: relay,
                protocol: relay.then(|| "tcp".to_string()),
                server_url: relay.then(|| "turn:10.1.2.3:3478?transport=tcp".to_string()),
            },
            quality: QualityClass::classify(Some(rtt), Some(0.5)),
            mos: Some(4.0),
            ..PeerMetrics::default()
        }
    }

    fn record(rec: &mut CallRecorder, peers: Vec<PeerMetrics>) {
        for p in &peers {
            rec.record_peer(p);
        }
        let at = peers.iter().map(|p| p.at_ms).fold(0.0, f64::max);
        rec.record_tab(&crate::processor::aggregate(at, peers));
    }

    #[test]
    fn a_report_holds_samples_alerts_and_an_overview() {
        let mut rec = CallRecorder::default();
        for t in 1..=40 {
            let t = f64::from(t);
            // One connection's latency is very high from 10 s to 19 s (the tab's mean: 470 ms,
            // poor); the connection is relayed from 30 s on.
            let rtt = if (10.0..20.0).contains(&t) { 900.0 } else { 40.0 };
            record(
                &mut rec,
                vec![peer("pc-1", t, rtt, t >= 30.0), peer("pc-2", t, 40.0, false)],
            );
        }
        rec.closed("pc-2", 40_500.0);
        let report = Report::build(&rec, "https://meet.example.com/room?x=1", 41_000.0);
        assert_eq!(report.format, REPORT_FORMAT);
        assert_eq!(report.page.as_deref(), Some("https://meet.example.com/room"));
        assert_eq!(
            (report.time_range.from_ms, report.time_range.to_ms),
            (1_000.0, 40_000.0)
        );
        assert_eq!(report.time_range.duration_s, 39.0);
        assert_eq!(report.quality.len(), 40);
        assert_eq!(report.connections.len(), 2);
        let pc1 = &report.connections[0];
        assert_eq!((pc1.pc.as_str(), pc1.samples.len(), pc1.closed_ms), ("pc-1", 40, None));
        assert!(pc1.using_relay);
        assert_eq!(pc1.relay_protocols, vec!["tcp".to_string()]);
        assert_eq!(report.connections[1].closed_ms, Some(40_500.0));
        let kinds: Vec<(AlertKind, AlertState, f64)> =
            report.alerts.iter().map(|a| (a.kind, a.state, a.at_ms)).collect();
        assert_eq!(
            kinds,
            vec![
                (AlertKind::HighLatency, AlertState::Raised, 10_000.0),
                (AlertKind::PoorConnection, AlertState::Raised, 10_000.0),
                (AlertKind::HighLatency, AlertState::Resolved, 30_000.0),
                (AlertKind::UsingTurn, AlertState::Raised, 30_000.0),
                (AlertKind::PoorConnection, AlertState::Resolved, 30_000.0),
            ]
        );
        let o = &report.overview;
        assert_eq!(o.connections, 2);
        assert_eq!(o.quality_now, Some(QualityClass::Excellent));
        assert_eq!(o.worst_quality, Some(QualityClass::Poor));
        assert_eq!(
            o.rtt_ms.max,
            Some(470.0),
            "the tab's RTT is the mean of its connections"
        );
        assert_eq!(o.upload_kbps.avg, Some(1000.0));
        assert_eq!(o.relay_protocols, vec!["tcp".to_string()]);
        assert!((o.relay_share.unwrap() - 11.0 / 40.0).abs() < 1e-9);
        let text = serde_json::to_string(&report).unwrap();
        assert!(!text.contains("10.1.2.3") && !text.contains("3478"), "{text}");
        // Round trip through JSON, as between the offscreen document and the popup.
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), report);
        assert_eq!(report.file_name(), "call-vitals-report-19700101T000041Z.json");
    }

    #[test]
    fn a_report_covers_the_last_ten_minutes_only() {
        let mut rec = CallRecorder::default();
        for t in 0..900 {
            record(&mut rec, vec![peer("pc-1", f64::from(t), 30.0, false)]);
        }
        record(&mut rec, vec![peer("pc-late", 899.5, 30.0, false)]);
        let report = Report::build(&rec, "https://x.example/", 899_500.0);
        assert!(report.time_range.from_ms >= 899_500.0 - REPORT_WINDOW_MS);
        assert_eq!(report.time_range.to_ms, 899_500.0);
        assert!(report.quality.len() <= RING_SAMPLES);
        assert_eq!(report.connections[0].samples.len(), 600);
        assert_eq!(report.connections[0].first_ms, 300_000.0);
        // Nothing at all recorded: an empty report at `now`.
        let empty = Report::build(&CallRecorder::default(), "about:blank", 5_000.0);
        assert_eq!((empty.time_range.from_ms, empty.page), (5_000.0, None));
        assert!(empty.quality.is_empty() && empty.connections.is_empty() && empty.alerts.is_empty());
    }

    #[test]
    fn connection_ids_that_look_like_addresses_are_replaced() {
        let mut rec = CallRecorder::default();
        record(
            &mut rec,
            vec![peer("192.168.0.9", 1.0, 30.0, false), peer("pc-2", 1.0, 30.0, false)],
        );
        let report = Report::build(&rec, "https://x.example/", 2_000.0);
        let ids: Vec<&str> = report.connections.iter().map(|c| c.pc.as_str()).collect();
        assert_eq!(ids, vec!["connection-1", "pc-2"]);
    }

    /// Puts addresses back into a trimmed recording's candidates, as an untrimmed browser
    /// reports them, so the privacy check has something to catch.
    fn with_addresses(mut report: Value) -> Value {
        if let Some(obj) = report.as_object_mut() {
            if obj
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("-candidate"))
            {
                obj.insert("address".into(), json!("192.168.1.20"));
                obj.insert("ip".into(), json!("192.168.1.20"));
                obj.insert("port".into(), json!(50_000));
                obj.insert("relatedAddress".into(), json!("10.0.0.5"));
                if obj.contains_key("url") {
                    obj.insert("url".into(), json!("turn:203.0.113.7:3478?transport=udp"));
                }
            }
        }
        report
    }

    /// Every real fixture (tests/fixtures) run through the processor and a recorder as the
    /// offscreen driver does, on a page with an IP-literal host and a query: the report has the
    /// fixture's connections and samples, and no address, port, query or TURN url.
    #[test]
    fn reports_from_the_real_fixtures_hold_no_address() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut cases = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let case = entry.unwrap().path();
            let recording: Value =
                serde_json::from_str(&std::fs::read_to_string(case.join("recording.json")).unwrap()).unwrap();
            let expected: Value =
                serde_json::from_str(&std::fs::read_to_string(case.join("expected.json")).unwrap()).unwrap();
            let mut processor = Processor::new();
            let mut rec = CallRecorder::default();
            let mut now_ms = 0.0;
            for poll in recording["snapshots"].as_array().unwrap() {
                for snap in poll.as_array().unwrap() {
                    let reports: Vec<_> = snap["reports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .cloned()
                        .map(with_addresses)
                        .map(parse_report)
                        .collect();
                    now_ms = reports.iter().filter_map(|r| r.timestamp()).fold(now_ms, f64::max);
                    let pc = snap["pc"].as_str().unwrap().to_string();
                    processor.handle_input(Input::Snapshot { now_ms, pc, reports });
                    while let Some(out) = processor.poll_output() {
                        match out {
                            Output::PeerMetrics(m) => rec.record_peer(&m),
                            Output::TabMetrics(m) => rec.record_tab(&m),
                            Output::Finding(change) => rec.record_finding(&change),
                            _ => {}
                        }
                    }
                }
            }
            let report = Report::build(
                &rec,
                "http://127.0.0.1:7878/demo?room=secret&turn=turn:10.0.0.1:3478",
                now_ms,
            );
            let name = case.display();
            let json = serde_json::to_value(&report).unwrap();
            assert_eq!(address_leaks(&json), Vec::<String>::new(), "{name}");
            let text = json.to_string();
            for needle in [
                "192.168.1.20",
                "10.0.0.5",
                "203.0.113.7",
                "127.0.0.1",
                ":50000",
                ":3478",
                "secret",
                "turn:",
            ] {
                assert!(!text.contains(needle), "{name}: report contains {needle}");
            }
            let mut want: Vec<&str> = expected["connections"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            want.sort_unstable();
            let got: Vec<&str> = report.connections.iter().map(|c| c.pc.as_str()).collect();
            assert_eq!(got, want, "{name}");
            assert!(report.connections.iter().all(|c| !c.samples.is_empty()), "{name}");
            assert!(!report.quality.is_empty(), "{name}");
            let relayed = expected["using_relay"].as_bool().unwrap();
            assert_eq!(report.connections.iter().any(|c| c.using_relay), relayed, "{name}");
            if let Some(protocol) = expected["relay_protocol"].as_str() {
                assert!(report.overview.relay_protocols.iter().any(|p| p == protocol), "{name}");
            }
            cases += 1;
        }
        assert!(cases >= 5, "only {cases} fixtures found in {}", dir.display());
    }
}
