//! TURN relay cost: relayed bytes integrated from the merged bitrate while relayed, and their price.
//!
//! The merged state is piecewise constant between ingests, so the bytes relayed between two
//! evaluations are the bitrate in effect at the earlier one times the time between them (both
//! on the collector's clock). A gap longer than `MAX_GAP_MS` (the extension sends at least
//! every 15 s while a call runs) means the participant was gone: it is counted as `MAX_GAP_MS`.

use serde::{Deserialize, Serialize};
use vitals_shared::wire::MetricsView;

/// The price arithmetic is shared with the extension's report.
pub use vitals_shared::cost::{cost, relayed_bytes, DEFAULT_PRICE_PER_GB};
/// Longest interval counted between two evaluations of one participant.
pub const MAX_GAP_MS: u64 = 30_000;
/// Usage is accumulated in buckets of this length (queries select whole buckets).
pub const BUCKET_MS: u64 = 60_000;

/// Where the accounting of a relayed participant stands: what was in effect since `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayCursor {
    pub at: u64,
    /// Upload plus download, kbps.
    pub kbps: f64,
    pub server: Option<String>,
}

/// Bytes relayed through one TURN server since the previous evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayedSince {
    pub server: Option<String>,
    pub bytes: u64,
}

/// Advances `cursor` to `now_ms` with the participant's new `metrics`; returns what was relayed
/// in between (nothing when the participant was not relayed, or no time passed).
pub fn account(cursor: &mut Option<RelayCursor>, metrics: &MetricsView, now_ms: u64) -> Option<RelayedSince> {
    let relayed = cursor.take().and_then(|previous| {
        let ms = now_ms.saturating_sub(previous.at).min(MAX_GAP_MS);
        let bytes = relayed_bytes(previous.kbps, ms).round() as u64;
        (bytes > 0).then_some(RelayedSince {
            server: previous.server,
            bytes,
        })
    });
    if metrics.using_relay == Some(true) {
        *cursor = Some(RelayCursor {
            at: now_ms,
            kbps: metrics.upload_kbps.unwrap_or(0.0) + metrics.download_kbps.unwrap_or(0.0),
            server: metrics.relay_server.clone(),
        });
    }
    relayed
}

/// Closes the accounting of a participant that has sent nothing since `cursor.at` once the
/// longest counted gap has passed (at `idle_due`): the bytes up to that gap are counted now,
/// rather than when (if ever) it sends again.
pub fn close_idle(cursor: &mut Option<RelayCursor>, now_ms: u64) -> Option<RelayedSince> {
    if idle_due(cursor.as_ref())? > now_ms {
        return None;
    }
    let idle = MetricsView::default();
    account(cursor, &idle, now_ms)
}

/// When [`close_idle`] closes `cursor`.
pub fn idle_due(cursor: Option<&RelayCursor>) -> Option<u64> {
    cursor.map(|c| c.at.saturating_add(MAX_GAP_MS))
}

/// Relayed traffic of one participant through one TURN server over a time range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnUsage {
    pub meeting_id: String,
    pub participant_id: String,
    /// The TURN server's host name; null when the extension could not tell.
    pub relay_server: Option<String>,
    pub relayed_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(kbps_each_way: f64, server: &str) -> MetricsView {
        MetricsView {
            upload_kbps: Some(kbps_each_way),
            download_kbps: Some(kbps_each_way),
            using_relay: Some(true),
            relay_server: Some(server.into()),
            ..Default::default()
        }
    }

    #[test]
    fn bytes_are_the_previous_bitrate_times_the_time_relayed() {
        let mut cursor = None;
        assert_eq!(
            account(&mut cursor, &relayed(500.0, "a"), 0),
            None,
            "nothing before the start"
        );
        // 1000 kbps for 10 s = 1.25 MB, through the server in effect then.
        let got = account(&mut cursor, &relayed(1000.0, "b"), 10_000).unwrap();
        assert_eq!(
            got,
            RelayedSince {
                server: Some("a".into()),
                bytes: 1_250_000
            }
        );
        // Relay stops: the last interval is counted at 2000 kbps, then nothing more.
        let off = MetricsView {
            using_relay: Some(false),
            upload_kbps: Some(5000.0),
            ..Default::default()
        };
        assert_eq!(account(&mut cursor, &off, 12_000).unwrap().bytes, 500_000);
        assert_eq!(cursor, None);
        assert_eq!(account(&mut cursor, &off, 20_000), None);
    }

    #[test]
    fn a_long_gap_counts_at_most_the_max_gap() {
        let mut cursor = None;
        account(&mut cursor, &relayed(4.0, "a"), 0);
        let got = account(&mut cursor, &relayed(4.0, "a"), 3_600_000).unwrap();
        assert_eq!(got.bytes, relayed_bytes(8.0, MAX_GAP_MS) as u64);
        assert_eq!(got.bytes, 30_000);
    }

    #[test]
    fn an_idle_cursor_is_closed_after_the_max_gap() {
        let mut cursor = None;
        account(&mut cursor, &relayed(4.0, "a"), 1_000);
        assert_eq!(idle_due(cursor.as_ref()), Some(1_000 + MAX_GAP_MS));
        assert_eq!(close_idle(&mut cursor, MAX_GAP_MS), None);
        assert!(cursor.is_some());
        let got = close_idle(&mut cursor, 1_000 + MAX_GAP_MS + 5).unwrap();
        assert_eq!(got.bytes, 30_000);
        assert_eq!(cursor, None);
        assert_eq!(close_idle(&mut cursor, 10_000_000), None);
    }

    #[test]
    fn cost_is_per_gb() {
        assert!((cost(2.5e9, 0.40) - 1.0).abs() < 1e-12);
        assert_eq!(relayed_bytes(8.0, 1000), 1000.0);
    }
}
