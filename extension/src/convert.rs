//! Untrusted snapshot data from a page turned into processor input, with the size checks.

use vitals_shared::messages::{MAX_PC_ID_LEN, MAX_REPORTS};
use vitals_shared::processor::Input;
use vitals_shared::stats::parse_report;

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    BadPcId,
    TooManyReports,
    BadTime,
}

/// Checks a peer-connection id from a page: 1 to [`MAX_PC_ID_LEN`] bytes, printable ASCII.
pub fn valid_pc_id(pc: &str) -> bool {
    !pc.is_empty() && pc.len() <= MAX_PC_ID_LEN && pc.bytes().all(|b| b.is_ascii_graphic())
}

/// Turns one forwarded snapshot into [`Input::Snapshot`]. Each report is parsed leniently (an
/// unknown or malformed report becomes `RawReport::Other`), but an oversized snapshot or a bad
/// id is refused whole.
pub fn snapshot_input(now_ms: f64, pc: String, reports: Vec<serde_json::Value>) -> Result<Input, Rejected> {
    if !valid_pc_id(&pc) {
        return Err(Rejected::BadPcId);
    }
    if reports.len() > MAX_REPORTS {
        return Err(Rejected::TooManyReports);
    }
    if !now_ms.is_finite() || now_ms < 0.0 {
        return Err(Rejected::BadTime);
    }
    let reports = reports.into_iter().map(parse_report).collect();
    Ok(Input::Snapshot { now_ms, pc, reports })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vitals_shared::stats::RawReport;

    #[test]
    fn reports_are_parsed_and_junk_becomes_other() {
        let input = snapshot_input(
            1000.0,
            "pc-1".into(),
            vec![
                json!({"type": "outbound-rtp", "id": "O1", "bytesSent": 1200, "timestamp": 999.0}),
                json!({"type": "certificate", "id": "C"}),
                json!("junk"),
            ],
        )
        .unwrap();
        let Input::Snapshot { now_ms, pc, reports } = input else {
            panic!("not a snapshot")
        };
        assert_eq!((now_ms, pc.as_str()), (1000.0, "pc-1"));
        match &reports[0] {
            RawReport::OutboundRtp(o) => assert_eq!(o.bytes_sent, Some(1200.0)),
            other => panic!("expected outbound-rtp, got {other:?}"),
        }
        assert_eq!(reports[1], RawReport::Other);
        assert_eq!(reports[2], RawReport::Other);
    }

    #[test]
    fn oversized_or_malformed_snapshots_are_refused() {
        let many = vec![json!({}); MAX_REPORTS + 1];
        assert_eq!(
            snapshot_input(1.0, "pc".into(), many).unwrap_err(),
            Rejected::TooManyReports
        );
        let long_id = "x".repeat(MAX_PC_ID_LEN + 1);
        assert_eq!(snapshot_input(1.0, long_id, vec![]).unwrap_err(), Rejected::BadPcId);
        assert_eq!(
            snapshot_input(1.0, String::new(), vec![]).unwrap_err(),
            Rejected::BadPcId
        );
        assert_eq!(
            snapshot_input(1.0, "a b".into(), vec![]).unwrap_err(),
            Rejected::BadPcId
        );
        assert_eq!(
            snapshot_input(f64::NAN, "pc".into(), vec![]).unwrap_err(),
            Rejected::BadTime
        );
        assert!(snapshot_input(1.0, "x".repeat(MAX_PC_ID_LEN), vec![json!({}); MAX_REPORTS]).is_ok());
    }
}
