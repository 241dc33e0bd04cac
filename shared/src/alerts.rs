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

/// What an alert is about (the names are those of the Socket.IO `meeting:alerts` protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    HighLatency,
    PacketLoss,
    UsingTurn,
    PoorConnection,
}

impl AlertKind {
    pub const ALL: [AlertKind; 4] = [
        Self::HighLatency,
        Self::PacketLoss,
        Self::UsingTurn,
        Self::PoorConnection,
    ];

    /// The name on the wire: "high-latency", "packet-loss", "using-turn", "poor-connection".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HighLatency => "high-latency",
            Self::PacketLoss => "packet-loss",
            Self::UsingTurn => "using-turn",
            Self::PoorConnection => "poor-connection",
        }
    }

    /// How urgent it is: relay costs money (info), latency and loss hurt (warning), a poor
    /// connection is critical.
    pub fn severity(self) -> Severity {
        match self {
            Self::HighLatency | Self::PacketLoss => Severity::Warning,
            Self::UsingTurn => Severity::Info,
            Self::PoorConnection => Severity::Critical,
        }
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

/// Is the condition of `kind` present in `metrics`, and if so, with what message and cost?
pub fn condition(
    kind: AlertKind,
    metrics: &MetricsView,
    thresholds: &AlertThresholds,
) -> Option<(String, Option<f64>)> {
    match kind {
        AlertKind::HighLatency => metrics.rtt_ms.filter(|rtt| *rtt > thresholds.rtt_ms).map(|rtt| {
            (
                format!(
                    "High latency: {rtt:.0} ms round trip (over {:.0} ms)",
                    thresholds.rtt_ms
                ),
                None,
            )
        }),
        AlertKind::PacketLoss => metrics.loss_pct.filter(|loss| *loss > thresholds.loss_pct).map(|loss| {
            (
                format!("Packet loss {loss:.1} % (over {:.1} %)", thresholds.loss_pct),
                None,
            )
        }),
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
        let present = condition(kind, metrics, thresholds);
        let index = active.iter().position(|a| a.kind == kind);
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
            // Still present: the alert stays as raised (no repeat), and any clear spell ends.
            (Some(_), Some(i)) => active[i].clear_since = None,
            (None, Some(i)) => {
                let since = *active[i].clear_since.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= thresholds.clear_after_ms {
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
