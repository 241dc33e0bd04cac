//! The collector's alerts: the shared engine (`vitals_shared::alerts`) over a participant's merged state, with history records and idle resolution.
//!
//! The conditions, thresholds and hysteresis are the shared engine's (the extension's report
//! uses the same); this module adds what only the collector has: who the alert belongs to (the
//! history record) and participants that went silent. Pure: `now_ms` is input.
//!
//! A participant that stops sending cannot clear its alerts with a new event, so the sweeper
//! runs [`evaluate_idle`]: after [`SILENT_AFTER_MS`] without a batch every condition counts as
//! clear, and an alert whose condition has been clear for the hold time resolves, as does every
//! alert of a participant whose live state expired.

use serde::{Deserialize, Serialize};
use vitals_shared::wire::MetricsView;

/// The engine's vocabulary, thresholds and tracker state: shared with the extension's report,
/// which judges a call by the same rules.
pub use vitals_shared::alerts::{ActiveAlert, AlertKind, AlertState, AlertThresholds, Severity};

/// One line of the alert history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// When it happened, ms since the Unix epoch (the events' time when an event raised or
    /// resolved it, clamped as `pipeline` says; else the collector's clock).
    pub at: u64,
    pub meeting_id: String,
    pub participant_id: String,
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub severity: Severity,
    pub state: AlertState,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

/// A participant that has sent no batch for this long counts as gone: its conditions count as
/// clear from then on (the extension sends at least every 15 s while a call runs).
pub const SILENT_AFTER_MS: u64 = crate::turn::MAX_GAP_MS;

/// Evaluates `metrics` at `now_ms` against the participant's `active` alerts (updated in place).
/// Returns the history records of what was raised or resolved, empty when nothing changed.
pub fn evaluate(
    thresholds: &AlertThresholds,
    active: &mut Vec<ActiveAlert>,
    metrics: &MetricsView,
    meeting_id: &str,
    participant_id: &str,
    now_ms: u64,
) -> Vec<AlertRecord> {
    vitals_shared::alerts::evaluate(thresholds, active, metrics, now_ms)
        .into_iter()
        .map(|t| history_record(&t.alert, t.state, meeting_id, participant_id, now_ms))
        .collect()
}

fn history_record(
    alert: &ActiveAlert,
    state: AlertState,
    meeting_id: &str,
    participant_id: &str,
    at: u64,
) -> AlertRecord {
    AlertRecord {
        at,
        meeting_id: meeting_id.to_owned(),
        participant_id: participant_id.to_owned(),
        kind: alert.kind,
        severity: alert.severity,
        state,
        message: alert.message.clone(),
        cost: alert.cost,
    }
}

/// When `alert` resolves if the participant sends nothing after `last_seen`: its condition
/// counts as clear from its clear spell's start or from when the participant went silent,
/// whichever is first, and it resolves the hold time later, or when the participant expires
/// (`expires_at`) if that is sooner.
fn resolves_at(thresholds: &AlertThresholds, alert: &ActiveAlert, last_seen: u64, expires_at: u64) -> u64 {
    let silent_since = last_seen.saturating_add(SILENT_AFTER_MS);
    let clear_since = alert.clear_since.map_or(silent_since, |since| since.min(silent_since));
    clear_since.saturating_add(thresholds.clear_after_ms).min(expires_at)
}

/// Resolves the `active` alerts that are due at `now_ms` when the participant has sent nothing
/// since `last_seen` (see [`resolves_at`]); returns their records.
pub fn evaluate_idle(
    thresholds: &AlertThresholds,
    active: &mut Vec<ActiveAlert>,
    meeting_id: &str,
    participant_id: &str,
    last_seen: u64,
    expires_at: u64,
    now_ms: u64,
) -> Vec<AlertRecord> {
    let mut records = Vec::new();
    active.retain(|alert| {
        let due = resolves_at(thresholds, alert, last_seen, expires_at) <= now_ms;
        if due {
            records.push(history_record(
                alert,
                AlertState::Resolved,
                meeting_id,
                participant_id,
                now_ms,
            ));
        }
        !due
    });
    records
}

/// The earliest time [`evaluate_idle`] would resolve one of `active`, if any is active.
pub fn resolve_due(
    thresholds: &AlertThresholds,
    active: &[ActiveAlert],
    last_seen: u64,
    expires_at: u64,
) -> Option<u64> {
    active
        .iter()
        .map(|alert| resolves_at(thresholds, alert, last_seen, expires_at))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_shared::QualityClass;

    fn metrics(rtt_ms: Option<f64>, loss_pct: Option<f64>) -> MetricsView {
        MetricsView {
            rtt_ms,
            loss_pct,
            ..Default::default()
        }
    }

    /// Runs the engine over `(time, metrics)` steps and returns what happened, as (time, kind, state).
    fn run(steps: &[(u64, MetricsView)]) -> (Vec<(u64, AlertKind, AlertState)>, Vec<ActiveAlert>) {
        let thresholds = AlertThresholds::default();
        let mut active = Vec::new();
        let mut seen = Vec::new();
        for (t, m) in steps {
            for r in evaluate(&thresholds, &mut active, m, "m", "p", *t) {
                assert_eq!((r.meeting_id.as_str(), r.participant_id.as_str(), r.at), ("m", "p", *t));
                seen.push((r.at, r.kind, r.state));
            }
        }
        (seen, active)
    }

    #[test]
    fn raised_once_when_the_condition_starts_and_not_repeated() {
        let high = metrics(Some(350.0), None);
        let (seen, active) = run(&[
            (0, metrics(Some(100.0), None)),
            (1_000, high.clone()),
            (2_000, high.clone()),
            (3_000, metrics(Some(500.0), None)),
        ]);
        assert_eq!(seen, [(1_000, AlertKind::HighLatency, AlertState::Raised)]);
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].severity, Severity::Warning);
        assert_eq!(active[0].raised_at, 1_000);
        assert!(active[0].message.contains("350 ms"), "{}", active[0].message);
    }

    #[test]
    fn thresholds_are_strictly_above() {
        let (seen, _) = run(&[(0, metrics(Some(300.0), Some(5.0)))]);
        assert!(seen.is_empty(), "{seen:?}");
        let (seen, _) = run(&[(0, metrics(Some(300.1), Some(5.01)))]);
        assert_eq!(
            seen,
            [
                (0, AlertKind::HighLatency, AlertState::Raised),
                (0, AlertKind::PacketLoss, AlertState::Raised)
            ]
        );
    }

    #[test]
    fn resolved_only_after_being_clear_for_the_hold_time() {
        let high = metrics(None, Some(8.0));
        let clear = metrics(None, Some(1.0));
        let (seen, active) = run(&[
            (0, high.clone()),
            (5_000, clear.clone()),  // clear spell starts
            (9_000, high.clone()),   // back before 10 s: the spell ends, nothing resolved
            (12_000, clear.clone()), // a new spell
            (21_999, clear.clone()), // 9.999 s: not yet
            (22_000, clear.clone()), // 10 s: resolved
            (30_000, clear.clone()),
        ]);
        assert_eq!(
            seen,
            [
                (0, AlertKind::PacketLoss, AlertState::Raised),
                (22_000, AlertKind::PacketLoss, AlertState::Resolved)
            ]
        );
        assert!(active.is_empty());
        // And it can be raised again afterwards.
        let (seen, _) = run(&[
            (0, high.clone()),
            (1_000, clear.clone()),
            (11_000, clear),
            (12_000, high),
        ]);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2], (12_000, AlertKind::PacketLoss, AlertState::Raised));
    }

    #[test]
    fn unknown_metrics_count_as_clear() {
        let (seen, _) = run(&[
            (0, metrics(Some(400.0), None)),
            (1_000, metrics(None, None)),
            (11_000, metrics(None, None)),
        ]);
        assert_eq!(
            seen,
            [
                (0, AlertKind::HighLatency, AlertState::Raised),
                (11_000, AlertKind::HighLatency, AlertState::Resolved)
            ]
        );
    }

    #[test]
    fn turn_and_poor_quality_alerts_with_their_severities() {
        let relayed = MetricsView {
            using_relay: Some(true),
            relay_server: Some("turn.example.com".into()),
            relay_protocol: Some("udp".into()),
            upload_kbps: Some(1000.0),
            download_kbps: Some(1000.0),
            quality: Some(QualityClass::Poor),
            ..Default::default()
        };
        let thresholds = AlertThresholds::default();
        let mut active = Vec::new();
        let records = evaluate(&thresholds, &mut active, &relayed, "m", "p", 0);
        let kinds: Vec<_> = records.iter().map(|r| (r.kind, r.severity)).collect();
        assert_eq!(
            kinds,
            [
                (AlertKind::UsingTurn, Severity::Info),
                (AlertKind::PoorConnection, Severity::Critical)
            ]
        );
        let turn = &records[0];
        // 2000 kbps for an hour = 900 MB; at $0.40 per GB that is $0.36.
        assert!((turn.cost.unwrap() - 0.36).abs() < 1e-9, "{turn:?}");
        assert!(
            turn.message.contains("cost") && turn.message.contains("turn.example.com"),
            "{}",
            turn.message
        );
        let json = serde_json::to_value(turn).unwrap();
        assert_eq!(json["type"], "using-turn");
        assert_eq!(json["severity"], "info");
        assert_eq!(json["state"], "raised");
        // Relay off and quality recovered: both resolve after the hold time, not before.
        let fine = MetricsView {
            using_relay: Some(false),
            quality: Some(QualityClass::Good),
            ..Default::default()
        };
        assert!(evaluate(&thresholds, &mut active, &fine, "m", "p", 1_000).is_empty());
        let resolved = evaluate(&thresholds, &mut active, &fine, "m", "p", 11_000);
        assert_eq!(resolved.len(), 2);
        assert!(resolved.iter().all(|r| r.state == AlertState::Resolved));
        assert!(active.is_empty());
    }

    #[test]
    fn thresholds_are_configurable() {
        let thresholds = AlertThresholds {
            rtt_ms: 100.0,
            loss_pct: 1.0,
            clear_after_ms: 0,
            ..Default::default()
        };
        let mut active = Vec::new();
        let records = evaluate(&thresholds, &mut active, &metrics(Some(150.0), Some(2.0)), "m", "p", 0);
        assert_eq!(records.len(), 2);
        // With no hold time an alert resolves on the first clear evaluation.
        let records = evaluate(&thresholds, &mut active, &metrics(Some(50.0), Some(0.5)), "m", "p", 1);
        assert_eq!(records.len(), 2);
        assert!(active.is_empty());
    }

    #[test]
    fn idle_alerts_resolve_after_the_hold_when_clear_or_silent_and_at_expiry() {
        let thresholds = AlertThresholds::default();
        let mut active = Vec::new();
        evaluate(
            &thresholds,
            &mut active,
            &metrics(Some(400.0), Some(9.0)),
            "m",
            "p",
            1_000,
        );
        // Loss clears at 2 s; latency stays high in the last batch (at 2 s).
        evaluate(
            &thresholds,
            &mut active,
            &metrics(Some(400.0), Some(1.0)),
            "m",
            "p",
            2_000,
        );
        let expires = 2_000 + 300_000;
        assert_eq!(resolve_due(&thresholds, &active, 2_000, expires), Some(12_000));
        assert!(evaluate_idle(&thresholds, &mut active, "m", "p", 2_000, expires, 11_999).is_empty());
        let resolved = evaluate_idle(&thresholds, &mut active, "m", "p", 2_000, expires, 12_000);
        assert_eq!(
            resolved.iter().map(|r| (r.kind, r.state, r.at)).collect::<Vec<_>>(),
            [(AlertKind::PacketLoss, AlertState::Resolved, 12_000)]
        );
        // Latency: silent from 2 s + 30 s, resolved the hold time later.
        assert_eq!(resolve_due(&thresholds, &active, 2_000, expires), Some(42_000));
        assert!(evaluate_idle(&thresholds, &mut active, "m", "p", 2_000, expires, 41_999).is_empty());
        assert_eq!(
            evaluate_idle(&thresholds, &mut active, "m", "p", 2_000, expires, 42_000).len(),
            1
        );
        assert!(active.is_empty());
        assert_eq!(resolve_due(&thresholds, &active, 2_000, expires), None);
        // A hold longer than the live time: resolved when the participant expires.
        let long = AlertThresholds {
            clear_after_ms: 3_600_000,
            ..Default::default()
        };
        evaluate(&long, &mut active, &metrics(Some(400.0), None), "m", "p", 0);
        assert_eq!(resolve_due(&long, &active, 0, 300_000), Some(300_000));
    }

    #[test]
    fn kind_names_match_the_socket_io_protocol() {
        for kind in AlertKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
