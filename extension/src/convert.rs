//! Untrusted snapshot data from a page turned into processor input, with the size checks.

use vitals_shared::limits::{valid_pc_id, MAX_REPORTS_PER_CONNECTION};
use vitals_shared::processor::Input;
use vitals_shared::stats::{parse_report, RawReport};
use wasm_bindgen::{JsCast, JsValue};

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    BadPcId,
    TooManyReports,
    BadTime,
}

/// Turns one forwarded snapshot into [`Input::Snapshot`]. Each report is parsed leniently (an
/// unknown or malformed report becomes `RawReport::Other`), but an oversized snapshot or a bad
/// id is refused whole.
pub fn snapshot_input(now_ms: f64, pc: String, reports: Vec<serde_json::Value>) -> Result<Input, Rejected> {
    if reports.len() > MAX_REPORTS_PER_CONNECTION {
        return Err(Rejected::TooManyReports);
    }
    typed_snapshot_input(now_ms, pc, reports.into_iter().map(parse_report).collect())
}

/// [`snapshot_input`] for reports already converted (by [`reports_from_js`] in the offscreen
/// document, which skips the `serde_json::Value` step).
pub fn typed_snapshot_input(now_ms: f64, pc: String, reports: Vec<RawReport>) -> Result<Input, Rejected> {
    if !valid_pc_id(&pc) {
        return Err(Rejected::BadPcId);
    }
    if reports.len() > MAX_REPORTS_PER_CONNECTION {
        return Err(Rejected::TooManyReports);
    }
    if !now_ms.is_finite() || now_ms < 0.0 {
        return Err(Rejected::BadTime);
    }
    Ok(Input::Snapshot { now_ms, pc, reports })
}

/// Converts one report straight from its JavaScript object, with the same result as
/// [`parse_report`] on its JSON: the `type` member picks the struct, and serde-wasm-bindgen then
/// reads only that struct's members (a Chrome inbound-rtp has some 60; the processor reads 13),
/// instead of copying every member into a `serde_json::Value` and buffering it again for the
/// tagged enum. Anything that is not an object of a known type is `Other`.
pub fn report_from_js(report: JsValue) -> RawReport {
    use serde_wasm_bindgen::from_value;
    if !report.is_object() {
        return RawReport::Other;
    }
    let kind = js_sys::Reflect::get(&report, &JsValue::from_str("type"))
        .ok()
        .and_then(|t| t.as_string());
    let parsed = match kind.as_deref() {
        Some("inbound-rtp") => from_value(report).map(RawReport::InboundRtp),
        Some("outbound-rtp") => from_value(report).map(RawReport::OutboundRtp),
        Some("remote-inbound-rtp") => from_value(report).map(RawReport::RemoteInboundRtp),
        Some("candidate-pair") => from_value(report).map(RawReport::CandidatePair),
        Some("local-candidate") => from_value(report).map(RawReport::LocalCandidate),
        Some("remote-candidate") => from_value(report).map(RawReport::RemoteCandidate),
        Some("transport") => from_value(report).map(RawReport::Transport),
        _ => return RawReport::Other,
    };
    parsed.unwrap_or(RawReport::Other)
}

/// [`report_from_js`] over a JavaScript array of reports; `None` when it is not an array or
/// holds more than [`MAX_REPORTS_PER_CONNECTION`].
pub fn reports_from_js(reports: &JsValue) -> Option<Vec<RawReport>> {
    let array = reports.dyn_ref::<js_sys::Array>()?;
    if array.length() as usize > MAX_REPORTS_PER_CONNECTION {
        return None;
    }
    Some(array.iter().map(report_from_js).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vitals_shared::limits::MAX_PC_ID_LEN;
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
        let many = vec![json!({}); MAX_REPORTS_PER_CONNECTION + 1];
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
        assert!(snapshot_input(
            1.0,
            "x".repeat(MAX_PC_ID_LEN),
            vec![json!({}); MAX_REPORTS_PER_CONNECTION]
        )
        .is_ok());
    }
}
