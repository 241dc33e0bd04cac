//! Alerts over a tab's samples, on the collector's conditions: round trip over 300 ms, loss over 5 %, TURN relay, poor quality.
//!
//! The thresholds are the collector's defaults (`collector/src/alerts.rs`, `VITALS_ALERT_*`):
//! an alert is raised when its condition starts and resolved once the condition has been clear
//! for [`ALERT_CLEAR_AFTER_MS`]; an unknown figure counts as clear.

use super::{iso_utc, TabSample};
use crate::quality::QualityClass;
use serde::{Deserialize, Serialize};

/// `high-latency` while the round-trip time is above this, ms.
pub const ALERT_RTT_MS: f64 = 300.0;
/// `packet-loss` while the loss is above this, %.
pub const ALERT_LOSS_PCT: f64 = 5.0;
/// An alert resolves once its condition has been clear this long, ms.
pub const ALERT_CLEAR_AFTER_MS: f64 = 10_000.0;

/// The thresholds a report was judged by.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertThresholds {
    pub rtt_ms: f64,
    pub loss_pct: f64,
    pub clear_after_ms: f64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            rtt_ms: ALERT_RTT_MS,
            loss_pct: ALERT_LOSS_PCT,
            clear_after_ms: ALERT_CLEAR_AFTER_MS,
        }
    }
}

/// What an alert is about, named as the collector names its alerts.
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

    /// How urgent the collector rates it: relay costs money (info), latency and loss hurt
    /// (warning), a poor connection is critical.
    pub fn severity(self) -> Severity {
        match self {
            Self::HighLatency | Self::PacketLoss => Severity::Warning,
            Self::UsingTurn => Severity::Info,
            Self::PoorConnection => Severity::Critical,
        }
    }
}

/// An alert's severity, as the collector and its webhooks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// Whether an event starts or ends an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Raised,
    Resolved,
}

/// One alert raised or resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// ms since the Unix epoch, and as ISO 8601 (UTC).
    pub at_ms: f64,
    pub at: String,
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub state: AlertState,
    pub message: String,
}

/// The condition of `kind` in `s`, as the message that describes it.
fn condition(kind: AlertKind, s: &TabSample, t: &AlertThresholds) -> Option<String> {
    match kind {
        AlertKind::HighLatency => s
            .rtt_ms
            .filter(|rtt| *rtt > t.rtt_ms)
            .map(|rtt| format!("High latency: {rtt:.0} ms round trip (over {:.0} ms)", t.rtt_ms)),
        AlertKind::PacketLoss => s
            .loss_pct
            .filter(|loss| *loss > t.loss_pct)
            .map(|loss| format!("Packet loss {loss:.1} % (over {:.1} %)", t.loss_pct)),
        AlertKind::UsingTurn => s.using_relay.then(|| {
            let protocol = s.relay_protocol.as_deref().unwrap_or("unknown protocol");
            format!("TURN relay in use ({protocol}): relayed traffic costs money")
        }),
        AlertKind::PoorConnection => {
            (s.quality == Some(QualityClass::Poor)).then(|| "Poor connection quality".to_string())
        }
    }
}

/// Runs the alert conditions over `samples` (oldest first) and returns every raise and
/// resolve, in time order. An alert still active at the last sample has no resolve event.
pub fn alert_events<'a>(samples: impl IntoIterator<Item = &'a TabSample>, t: &AlertThresholds) -> Vec<AlertEvent> {
    // Per kind: whether it is active, and since when its condition has been clear.
    let mut active: [(bool, Option<f64>); 4] = [(false, None); 4];
    let mut events = Vec::new();
    for s in samples {
        for (i, kind) in AlertKind::ALL.into_iter().enumerate() {
            let (is_active, clear_since) = &mut active[i];
            let event = |state, message: String| AlertEvent {
                at_ms: s.at_ms,
                at: iso_utc(s.at_ms),
                kind,
                state,
                message,
            };
            match (condition(kind, s, t), *is_active) {
                (Some(message), false) => {
                    *is_active = true;
                    *clear_since = None;
                    events.push(event(AlertState::Raised, message));
                }
                (Some(_), true) => *clear_since = None,
                (None, true) => {
                    let since = *clear_since.get_or_insert(s.at_ms);
                    if s.at_ms - since >= t.clear_after_ms {
                        *is_active = false;
                        *clear_since = None;
                        events.push(event(AlertState::Resolved, format!("{} resolved", kind.as_str())));
                    }
                }
                (None, false) => {}
            }
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: f64, rtt: Option<f64>, loss: Option<f64>) -> TabSample {
        TabSample {
            at_ms: at_s * 1000.0,
            rtt_ms: rtt,
            loss_pct: loss,
            quality: QualityClass::classify(rtt, loss),
            ..TabSample::default()
        }
    }

    fn run(samples: &[TabSample]) -> Vec<(f64, AlertKind, AlertState)> {
        alert_events(samples, &AlertThresholds::default())
            .into_iter()
            .map(|e| (e.at_ms / 1000.0, e.kind, e.state))
            .collect()
    }

    #[test]
    fn thresholds_are_strictly_above() {
        // Without a class, so that only the two thresholds are at stake.
        let unclassed = |rtt, loss| TabSample {
            quality: None,
            ..sample(0.0, Some(rtt), Some(loss))
        };
        assert!(run(&[unclassed(300.0, 5.0)]).is_empty());
        assert_eq!(
            run(&[unclassed(300.1, 5.01)]),
            vec![
                (0.0, AlertKind::HighLatency, AlertState::Raised),
                (0.0, AlertKind::PacketLoss, AlertState::Raised),
            ]
        );
    }

    #[test]
    fn alerts_resolve_after_ten_clear_seconds_and_do_not_repeat() {
        let mut samples = Vec::new();
        for t in 0..40 {
            let t = f64::from(t);
            // Over 300 ms at 0-4 s, a clear second at 5 s, over again at 6 s, clear from 7 s.
            let rtt = if t < 5.0 || t == 6.0 { 350.0 } else { 50.0 };
            samples.push(sample(t, Some(rtt), None));
        }
        assert_eq!(
            run(&samples),
            vec![
                (0.0, AlertKind::HighLatency, AlertState::Raised),
                (17.0, AlertKind::HighLatency, AlertState::Resolved),
            ]
        );
        // Unknown figures are clear; relay and poor quality have their own alerts.
        let relayed = TabSample {
            using_relay: true,
            relay_protocol: Some("tcp".into()),
            ..sample(0.0, None, Some(40.0))
        };
        let events = alert_events([&relayed], &AlertThresholds::default());
        let kinds: Vec<AlertKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![AlertKind::PacketLoss, AlertKind::UsingTurn, AlertKind::PoorConnection]
        );
        assert!(events[1].message.contains("tcp") && events[1].message.contains("costs money"));
        assert_eq!(events[0].at, "1970-01-01T00:00:00Z");
    }
}
