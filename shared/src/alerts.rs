//! The alert engine, the one the collector and the extension's report both use: kinds, severities, thresholds, conditions and the hysteresis tracker.
//!
//! An alert is raised when its condition starts and resolved once the condition has been clear
//! for `clear_after_ms` (the hysteresis), so a value hovering around a threshold does not raise
//! and resolve on every sample. While an alert is active nothing is repeated. An unknown metric
//! counts as clear: no alert is raised on a figure nobody measured. The engine never reads a
//! clock: `now_ms` is input, so tests run in simulated time. The collector adds what only it
//! has (idle resolution of silent participants, storage and history records).

use crate::cost::{cost, relayed_bytes, DEFAULT_PRICE_PER_GB};
use crate::fields::MetricsView;
use crate::finding::FindingId;
use crate::quality::QualityClass;
pub use crate::severity::Severity;
use serde::{Deserialize, Serialize};

/// `high-latency` while the round-trip time is above this, ms.
pub const ALERT_RTT_MS: f64 = 300.0;
/// `packet-loss` while the loss is above this, %.
pub const ALERT_LOSS_PCT: f64 = 5.0;
/// An alert resolves once its condition has been clear this long, ms.
pub const ALERT_CLEAR_AFTER_MS: u64 = 10_000;

/// The engine's knobs (the collector's `VITALS_ALERT_*` settings; the report records the ones
/// it was judged by).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertThresholds {
    /// `high-latency` while the round-trip time is above this, ms.
    pub rtt_ms: f64,
    /// `packet-loss` while the loss is above this, %.
    pub loss_pct: f64,
    /// An active alert resolves once its condition has been clear this long, ms.
    pub clear_after_ms: u64,
    /// Price of relayed traffic in dollars per GB, for the `using-turn` message and cost.
    pub turn_price_per_gb: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            rtt_ms: ALERT_RTT_MS,
            loss_pct: ALERT_LOSS_PCT,
            clear_after_ms: ALERT_CLEAR_AFTER_MS,
            turn_price_per_gb: DEFAULT_PRICE_PER_GB,
        }
    }
}

/// What an alert is about. The first four are the collector's own (their names are those of the
/// Socket.IO `meeting:alerts` protocol); the others are findings of the browser's diagnosis, named
/// by their id. The findings `high-latency` and `packet-loss` are the first two kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    HighLatency,
    PacketLoss,
    UsingTurn,
    PoorConnection,
    /// A finding from the browser (never `high-latency` or `packet-loss`: see [`Self::of_finding`]).
    Finding(FindingId),
}

impl AlertKind {
    pub const ALL: [AlertKind; 15] = [
        Self::HighLatency,
        Self::PacketLoss,
        Self::UsingTurn,
        Self::PoorConnection,
        Self::Finding(FindingId::BandwidthLimited),
        Self::Finding(FindingId::AppCapped),
        Self::Finding(FindingId::CpuLimited),
        Self::Finding(FindingId::HighJitter),
        Self::Finding(FindingId::AudioConcealment),
        Self::Finding(FindingId::VideoFrozen),
        Self::Finding(FindingId::MicSilent),
        Self::Finding(FindingId::NoMediaReceived),
        Self::Finding(FindingId::RelayTcp),
        Self::Finding(FindingId::ConnectionUnstable),
        Self::Finding(FindingId::HighRetransmission),
    ];

    /// The alert of a finding: its own kind for `high-latency` and `packet-loss`.
    pub fn of_finding(id: FindingId) -> Self {
        match id {
            FindingId::HighLatency => Self::HighLatency,
            FindingId::PacketLoss => Self::PacketLoss,
            other => Self::Finding(other),
        }
    }

    /// The name on the wire: "high-latency", "packet-loss", "using-turn", "poor-connection", or
    /// the finding's id.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HighLatency => "high-latency",
            Self::PacketLoss => "packet-loss",
            Self::UsingTurn => "using-turn",
            Self::PoorConnection => "poor-connection",
            Self::Finding(id) => id.as_str(),
        }
    }

    /// The kind named `name` ([`as_str`](Self::as_str)).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// How urgent it is: relay costs money (info), latency and loss hurt (warning), a poor
    /// connection is critical; a finding has its own.
    pub fn severity(self) -> Severity {
        match self {
            Self::HighLatency | Self::PacketLoss => Severity::Warning,
            Self::UsingTurn => Severity::Info,
            Self::PoorConnection => Severity::Critical,
            Self::Finding(id) => id.severity(),
        }
    }

    /// How long its condition must be clear before it resolves: a finding was held by the
    /// browser's diagnosis already, so it resolves when the browser drops it.
    fn clear_after_ms(self, thresholds: &AlertThresholds) -> u64 {
        match self {
            Self::Finding(_) => 0,
            _ => thresholds.clear_after_ms,
        }
    }
}

impl Serialize for AlertKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AlertKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Self::from_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown alert type {name:?}")))
    }
}

/// Whether an event starts or ends an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Raised,
    Resolved,
}

impl AlertState {
    /// Lower-case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raised => "raised",
            Self::Resolved => "resolved",
        }
    }
}

/// An alert that is currently raised (the tracker's state, kept by the collector's store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub severity: Severity,
    pub message: String,
    /// Estimated cost per hour of relaying at the bitrate when raised (`using-turn` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// ms since the Unix epoch.
    pub raised_at: u64,
    /// Since when the condition has been clear (the alert resolves `clear_after_ms` later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_since: Option<u64>,
}

/// One raise or resolve: the alert as raised, and which of the two happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub alert: ActiveAlert,
    pub state: AlertState,
}

/// Whether the browser reports finding `id` active in `metrics` (its `findings` field).
fn has_finding(metrics: &MetricsView, id: FindingId) -> bool {
    metrics
        .findings
        .as_deref()
        .is_some_and(|list| list.split(',').any(|name| name == id.as_str()))
}

/// The message of an alert raised by the browser's finding `id`.
fn finding_message(id: FindingId) -> String {
    format!("{} (found by the browser)", id.summary())
}

/// The finding that also holds alert `kind` raised while the browser reports it.
fn finding_of(kind: AlertKind) -> Option<FindingId> {
    match kind {
        AlertKind::HighLatency => Some(FindingId::HighLatency),
        AlertKind::PacketLoss => Some(FindingId::PacketLoss),
        AlertKind::Finding(id) => Some(id),
        AlertKind::UsingTurn | AlertKind::PoorConnection => None,
    }
}

/// Is the collector's own condition of `kind` (a threshold) present in `metrics`, and if so,
/// with what message and cost? The browser's findings hold alerts too ([`evaluate`]).
pub fn condition(
    kind: AlertKind,
    metrics: &MetricsView,
    thresholds: &AlertThresholds,
) -> Option<(String, Option<f64>)> {
    match kind {
        AlertKind::HighLatency => metrics
            .rtt_ms
            .filter(|rtt| *rtt > thresholds.rtt_ms)
            .map(|rtt| {
                (
                    format!(
                        "High latency: {rtt:.0} ms round trip (over {:.0} ms)",
                        thresholds.rtt_ms
                    ),
                    None,
                )
            })
            ,
        AlertKind::PacketLoss => metrics
            .loss_pct
            .filter(|loss| *loss > thresholds.loss_pct)
            .map(|loss| {
                (
                    format!("Packet loss {loss:.1} % (over {:.1} %)", thresholds.loss_pct),
                    None,
                )
            })
            ,
        // Only the browser's finding: see `held_by_browser`.
        AlertKind::Finding(_) => None,
        AlertKind::UsingTurn => (metrics.using_relay == Some(true)).then(|| {
            let kbps = metrics.upload_kbps.unwrap_or(0.0) + metrics.download_kbps.unwrap_or(0.0);
            let per_hour = cost(relayed_bytes(kbps, 3_600_000), thresholds.turn_price_per_gb);
            let via = metrics.relay_server.as_deref().unwrap_or("a TURN server");
            let protocol = metrics.relay_protocol.as_deref().unwrap_or("unknown protocol");
            (
                format!(
                    "Relayed through {via} ({protocol}): TURN traffic costs money, about ${per_hour:.2} per hour \
                     at {kbps:.0} kbps (${:.2} per GB)",
                    thresholds.turn_price_per_gb
                ),
                Some(per_hour),
            )
        }),
        AlertKind::PoorConnection => {
            (metrics.quality == Some(QualityClass::Poor)).then(|| ("Poor connection quality".to_owned(), None))
        }
    }
}

/// Evaluates `metrics` at `now_ms` against the `active` alerts (updated in place, kept in kind
/// order). Returns what was raised or resolved, in kind order; empty when nothing changed.
pub fn evaluate(
    thresholds: &AlertThresholds,
    active: &mut Vec<ActiveAlert>,
    metrics: &MetricsView,
    now_ms: u64,
) -> Vec<Transition> {
    let mut transitions = Vec::new();
    for kind in AlertKind::ALL {
        let own = condition(kind, metrics, thresholds);
        // The browser's finding of the same id raises the alert too, and keeps it raised; it
        // was held by the browser already, so its end resolves the alert at once (once the
        // collector's own condition has also been clear for its hold).
        let held = finding_of(kind).is_some_and(|id| has_finding(metrics, id));
        let index = active.iter().position(|a| a.kind == kind);
        let own_holds = own.is_some();
        let present = own.or_else(|| finding_of(kind).filter(|_| held).map(|id| (finding_message(id), None)));
        match (present, index) {
            (Some((message, cost)), None) => {
                let alert = ActiveAlert {
                    kind,
                    severity: kind.severity(),
                    message,
                    cost,
                    raised_at: now_ms,
                    clear_since: None,
                };
                transitions.push(Transition {
                    alert: alert.clone(),
                    state: AlertState::Raised,
                });
                active.push(alert);
            }
            // Still present: the alert stays as raised (no repeat); the clear spell counts the
            // collector's own condition only.
            (Some(_), Some(i)) if own_holds => active[i].clear_since = None,
            (Some(_), Some(i)) => {
                active[i].clear_since.get_or_insert(now_ms);
            }
            (None, Some(i)) => {
                let since = *active[i].clear_since.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= kind.clear_after_ms(thresholds) {
                    transitions.push(Transition {
                        alert: active.remove(i),
                        state: AlertState::Resolved,
                    });
                }
            }
            (None, None) => {}
        }
    }
    active.sort_by_key(|a| a.kind);
    transitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_once_then_resolved_after_the_hold_and_raised_again() {
        let t = AlertThresholds::default();
        let mut active = Vec::new();
        let mut seen = Vec::new();
        for (at, rtt) in [
            (0, 350.0),
            (1_000, 400.0),
            (2_000, 50.0),
            (11_999, 50.0),
            (12_000, 50.0),
            (13_000, 301.0),
        ] {
            let metrics = MetricsView {
                rtt_ms: Some(rtt),
                ..Default::default()
            };
            for tr in evaluate(&t, &mut active, &metrics, at) {
                seen.push((at, tr.alert.kind, tr.state));
            }
        }
        assert_eq!(
            seen,
            [
                (0, AlertKind::HighLatency, AlertState::Raised),
                (12_000, AlertKind::HighLatency, AlertState::Resolved),
                (13_000, AlertKind::HighLatency, AlertState::Raised),
            ]
        );
    }

    #[test]
    fn findings_from_the_browser_are_alerts_of_their_id_resolved_when_dropped() {
        let t = AlertThresholds::default();
        let mut active = Vec::new();
        let with = |findings: &str| MetricsView {
            findings: Some(findings.into()),
            rtt_ms: Some(40.0),
            ..Default::default()
        };
        let raised = evaluate(&t, &mut active, &with("high-latency,bandwidth-limited"), 0);
        let kinds: Vec<(&str, AlertState)> = raised.iter().map(|tr| (tr.alert.kind.as_str(), tr.state)).collect();
        assert_eq!(
            kinds,
            [
                ("high-latency", AlertState::Raised),
                ("bandwidth-limited", AlertState::Raised)
            ]
        );
        assert_eq!(
            raised[1].alert.message,
            "The network limits the video sent (found by the browser)"
        );
        assert_eq!(raised[1].alert.severity, Severity::Warning);
        // Still there: nothing new. Dropped: the finding resolves at once, the threshold alert
        // after its hold.
        assert!(evaluate(&t, &mut active, &with("high-latency,bandwidth-limited"), 1_000).is_empty());
        let resolved = evaluate(&t, &mut active, &with(""), 2_000);
        assert_eq!(resolved.len(), 1);
        assert_eq!(
            (resolved[0].alert.kind.as_str(), resolved[0].state),
            ("bandwidth-limited", AlertState::Resolved)
        );
        let resolved = evaluate(&t, &mut active, &with(""), 12_000);
        assert_eq!(resolved[0].alert.kind, AlertKind::HighLatency);
        assert!(active.is_empty());
        // Over the threshold, then the finding outlasts the figure: the alert resolves when the
        // finding goes, its hold counted from when the figure went back under the threshold.
        let slow = |rtt: f64, findings: &str| MetricsView {
            rtt_ms: Some(rtt),
            findings: Some(findings.into()),
            ..Default::default()
        };
        assert_eq!(evaluate(&t, &mut active, &slow(500.0, "high-latency"), 20_000).len(), 1);
        assert!(evaluate(&t, &mut active, &slow(40.0, "high-latency"), 21_000).is_empty());
        assert!(
            evaluate(&t, &mut active, &slow(40.0, "high-latency"), 32_000).is_empty(),
            "the finding holds it"
        );
        let resolved = evaluate(&t, &mut active, &slow(40.0, ""), 33_000);
        assert_eq!(
            (resolved[0].alert.kind, resolved[0].state),
            (AlertKind::HighLatency, AlertState::Resolved)
        );
        // Every finding has an alert kind of the same name.
        for id in FindingId::ALL {
            assert_eq!(AlertKind::of_finding(id).as_str(), id.as_str());
            assert_eq!(AlertKind::from_name(id.as_str()), Some(AlertKind::of_finding(id)));
        }
        assert!(serde_json::from_value::<AlertKind>(serde_json::json!("nope")).is_err());
    }

    #[test]
    fn names_on_the_wire() {
        for kind in AlertKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
            assert_eq!(serde_json::to_value(kind.severity()).unwrap(), kind.severity().as_str());
        }
        for state in [AlertState::Raised, AlertState::Resolved] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }
}
