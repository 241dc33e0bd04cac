//! The report's alerts: the shared alert engine (`crate::alerts`) run over a tab's samples.
//!
//! The thresholds are the collector's defaults, so a report judges a call as the collector does:
//! an alert is raised when its condition starts and resolved once the condition has been clear
//! for the hold time; an unknown figure counts as clear.

use super::{iso_utc, TabSample};
use crate::alerts::{evaluate, ActiveAlert, AlertKind, AlertState, AlertThresholds};
use crate::fields::MetricsView;
use serde::{Deserialize, Serialize};

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

/// The engine's view of a sample.
fn view(s: &TabSample) -> MetricsView {
    let f = &s.figures;
    MetricsView {
        upload_kbps: f.upload_kbps,
        download_kbps: f.download_kbps,
        rtt_ms: f.rtt_ms,
        loss_pct: f.loss_pct,
        jitter_ms: f.jitter_ms,
        quality: f.quality,
        mos: f.mos,
        using_relay: Some(f.using_relay),
        relay_protocol: f.relay_protocol.clone(),
        relay_server: None,
        // The report lists findings apart, with their own spans (`Report::findings`).
        findings: None,
    }
}

/// Runs the alert engine over `samples` (oldest first) and returns every raise and resolve, in
/// time order. An alert still active at the last sample has no resolve event.
pub fn alert_events<'a>(samples: impl IntoIterator<Item = &'a TabSample>, t: &AlertThresholds) -> Vec<AlertEvent> {
    let mut active: Vec<ActiveAlert> = Vec::new();
    let mut events = Vec::new();
    for s in samples {
        // The engine counts whole ms; the event keeps the sample's own time.
        let now_ms = s.at_ms.max(0.0).floor() as u64;
        for transition in evaluate(t, &mut active, &view(s), now_ms) {
            let kind = transition.alert.kind;
            events.push(AlertEvent {
                at_ms: s.at_ms,
                at: iso_utc(s.at_ms),
                kind,
                state: transition.state,
                message: match transition.state {
                    AlertState::Raised => transition.alert.message,
                    AlertState::Resolved => format!("{} resolved", kind.as_str()),
                },
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::QualityClass;
    use crate::report::Figures;

    fn sample(at_s: f64, rtt: Option<f64>, loss: Option<f64>) -> TabSample {
        TabSample {
            at_ms: at_s * 1000.0,
            figures: Figures {
                rtt_ms: rtt,
                loss_pct: loss,
                quality: QualityClass::classify(rtt, loss),
                ..Figures::default()
            },
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
        let unclassed = |rtt, loss| {
            let mut s = sample(0.0, Some(rtt), Some(loss));
            s.figures.quality = None;
            s
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
        let mut relayed = sample(0.0, None, Some(40.0));
        relayed.figures.using_relay = true;
        relayed.figures.relay_protocol = Some("tcp".into());
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
