//! Runtime messages for the offscreen document read from JavaScript, and a poll's untrusted snapshots checked against `vitals_shared::limits` and turned into processor input.

use vitals_shared::limits::{valid_pc_id, MAX_CONNECTIONS_PER_POLL, MAX_REPORTS_PER_CONNECTION, MAX_REPORTS_PER_POLL};
use vitals_shared::messages::{PcStats, ToOffscreen};
use vitals_shared::processor::Input;
use vitals_shared::stats::{Durations, Lenient, Members, RawReport};
use wasm_bindgen::{JsCast, JsValue};

/// Why a snapshot, or a whole poll, was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    BadPcId,
    TooManyReports,
    TooManyConnections,
    BadTime,
}

/// Checks one connection's snapshot and makes it [`Input::Snapshot`]. Each report was read
/// leniently (an unknown or malformed one is `RawReport::Other`), but an oversized snapshot or a
/// bad id is refused whole.
pub fn snapshot_input(now_ms: f64, pc: String, reports: Vec<RawReport>) -> Result<Input, Rejected> {
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

/// The snapshots of one poll ([`ToOffscreen::Stats`]), checked: the poll is refused whole when it
/// has more than [`MAX_CONNECTIONS_PER_POLL`] connections, more than [`MAX_REPORTS_PER_POLL`]
/// reports in all or a bad time; a connection [`snapshot_input`] refuses is left out.
pub fn poll_inputs(now_ms: f64, items: Vec<PcStats>) -> Result<Vec<Input>, Rejected> {
    if items.len() > MAX_CONNECTIONS_PER_POLL {
        return Err(Rejected::TooManyConnections);
    }
    if items.iter().map(|i| i.reports.len()).sum::<usize>() > MAX_REPORTS_PER_POLL {
        return Err(Rejected::TooManyReports);
    }
    if !now_ms.is_finite() || now_ms < 0.0 {
        return Err(Rejected::BadTime);
    }
    Ok(items
        .into_iter()
        .filter_map(|i| snapshot_input(now_ms, i.pc, i.reports).ok())
        .collect())
}

fn member(object: &JsValue, name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(object, &JsValue::from_str(name)).ok()
}

/// A runtime message for the offscreen document; `None` for anything that is not a well-formed
/// [`ToOffscreen`]. A `stats` message (one a second per frame with a call) is read by
/// [`stats_from_js`], its only parse path; the others are small and go through serde.
pub fn message_from_js(message: &JsValue) -> Option<ToOffscreen> {
    match member(message, "type")?.as_string()?.as_str() {
        "stats" => stats_from_js(message),
        _ => serde_wasm_bindgen::from_value(message.clone()).ok(),
    }
}

/// Reads a `stats` message ([`ToOffscreen::Stats`]) member by member, its reports by
/// [`report_from_js`], never through `serde_json::Value`; the result equals what serde reads from
/// the same message's JSON. `None` when the message is malformed, or over the limits that
/// [`poll_inputs`] checks again on the result: they are checked here before anything is converted,
/// so an oversized poll costs nothing. An item without a string `pc` and an array of at most
/// [`MAX_REPORTS_PER_CONNECTION`] reports is left out.
pub fn stats_from_js(message: &JsValue) -> Option<ToOffscreen> {
    let get = |name: &str| member(message, name);
    let tab = get("tab")?.as_f64().filter(|t| t.fract() == 0.0 && t.abs() < 9.0e15)? as i64;
    let url = get("url")?.as_string()?;
    let now_ms = get("now_ms")?.as_f64()?;
    let items = get("items")?.dyn_into::<js_sys::Array>().ok()?;
    if items.length() as usize > MAX_CONNECTIONS_PER_POLL {
        return None;
    }
    let mut total = 0;
    let mut converted = Vec::with_capacity(items.length() as usize);
    for item in items.iter() {
        let Some(pc) = member(&item, "pc").and_then(|pc| pc.as_string()) else {
            continue;
        };
        let Some(reports) = member(&item, "reports").and_then(|r| r.dyn_into::<js_sys::Array>().ok()) else {
            continue;
        };
        if reports.length() as usize > MAX_REPORTS_PER_CONNECTION {
            continue;
        }
        total += reports.length() as usize;
        if total > MAX_REPORTS_PER_POLL {
            return None;
        }
        converted.push(PcStats {
            pc,
            reports: reports.iter().map(report_from_js).collect(),
        });
    }
    Some(ToOffscreen::Stats {
        tab,
        url,
        now_ms,
        items: converted,
    })
}

// One call into JavaScript per member read: the lookup and the kind check together, the key a
// string made once ([`with_key`]).
#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function member_number(o, k) { const v = o[k]; return typeof v === 'number' && isFinite(v) ? v : NaN; }
export function member_text(o, k) { const v = o[k]; return typeof v === 'string' ? v : undefined; }
export function member_flag(o, k) { const v = o[k]; return v === true ? 1 : v === false ? 0 : 2; }
export function member_value(o, k) { return o[k]; }
"#)]
extern "C" {
    fn member_number(object: &JsValue, key: &JsValue) -> f64;
    fn member_text(object: &JsValue, key: &JsValue) -> Option<String>;
    fn member_flag(object: &JsValue, key: &JsValue) -> u8;
    fn member_value(object: &JsValue, key: &JsValue) -> JsValue;
}

/// Calls `read` with the JavaScript string of a member name, made once per name (found by the
/// name's address: the names are the report types' `MEMBERS`) and lent, not cloned.
fn with_key<R>(name: &'static str, read: impl FnOnce(&JsValue) -> R) -> R {
    thread_local! {
        static KEYS: std::cell::RefCell<Vec<(usize, JsValue)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    KEYS.with_borrow_mut(|keys| {
        let address = name.as_ptr() as usize;
        let i = keys.binary_search_by_key(&address, |(a, _)| *a).unwrap_or_else(|i| {
            keys.insert(i, (address, JsValue::from_str(name)));
            i
        });
        read(&keys[i].1)
    })
}

/// A report's JavaScript object, read member by member ([`Members`]).
struct JsMembers<'a>(&'a JsValue);

impl Members for JsMembers<'_> {
    fn number(&self, name: &'static str) -> Option<f64> {
        Some(with_key(name, |k| member_number(self.0, k))).filter(|v| !v.is_nan())
    }

    fn text(&self, name: &'static str) -> Option<String> {
        with_key(name, |k| member_text(self.0, k))
    }

    fn flag(&self, name: &'static str) -> Option<bool> {
        match with_key(name, |k| member_flag(self.0, k)) {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn durations(&self, name: &'static str) -> Option<Durations> {
        let value = with_key(name, |k| member_value(self.0, k));
        Durations::lenient(serde_wasm_bindgen::Deserializer::from(value))
            .ok()
            .flatten()
    }
}

/// Converts one report straight from its JavaScript object, with the same result as
/// `stats::parse_report` on its JSON: the `type` member picks the struct, whose members are then
/// read one call each ([`RawReport::from_members`]), instead of copying every member into a
/// `serde_json::Value` (a Chrome inbound-rtp has some 60; the processor reads 28) or going
/// through serde-wasm-bindgen (a lookup, an `in` check and about five type checks per member).
/// Anything that is not an object of a known type is `Other`.
pub fn report_from_js(report: JsValue) -> RawReport {
    if !report.is_object() {
        return RawReport::Other;
    }
    match with_key("type", |k| member_text(&report, k)) {
        Some(kind) => RawReport::from_members(&kind, &JsMembers(&report)),
        None => RawReport::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vitals_shared::limits::MAX_PC_ID_LEN;
    use vitals_shared::stats::{parse_report, OutboundRtp};

    fn item(pc: &str, reports: usize) -> PcStats {
        PcStats {
            pc: pc.into(),
            reports: vec![RawReport::Other; reports],
        }
    }

    #[test]
    fn oversized_or_malformed_snapshots_are_refused() {
        let many = vec![RawReport::Other; MAX_REPORTS_PER_CONNECTION + 1];
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
        let full = vec![RawReport::Other; MAX_REPORTS_PER_CONNECTION];
        assert!(snapshot_input(1.0, "x".repeat(MAX_PC_ID_LEN), full).is_ok());
    }

    #[test]
    fn a_poll_keeps_its_good_connections_and_is_refused_whole_over_its_limits() {
        let report = parse_report(json!({"type": "outbound-rtp", "id": "O1", "bytesSent": 1200}));
        let good = PcStats {
            pc: "pc-1".into(),
            reports: vec![report.clone(), RawReport::Other],
        };
        let inputs = poll_inputs(
            1000.0,
            vec![good, item("a b", 1), item("pc-3", MAX_REPORTS_PER_CONNECTION + 1)],
        );
        let inputs = inputs.unwrap();
        assert_eq!(inputs.len(), 1, "{inputs:?}");
        let Input::Snapshot { now_ms, pc, reports } = &inputs[0] else {
            panic!("not a snapshot")
        };
        assert_eq!((*now_ms, pc.as_str()), (1000.0, "pc-1"));
        let RawReport::OutboundRtp(OutboundRtp { bytes_sent, .. }) = &reports[0] else {
            panic!("not outbound-rtp: {reports:?}")
        };
        assert_eq!(*bytes_sent, Some(1200.0));

        let connections = (0..=MAX_CONNECTIONS_PER_POLL)
            .map(|i| item(&format!("pc-{i}"), 1))
            .collect();
        assert_eq!(poll_inputs(1.0, connections).unwrap_err(), Rejected::TooManyConnections);
        let per = MAX_REPORTS_PER_POLL / 4;
        let heavy = |n| (0..n).map(|i| item(&format!("pc-{i}"), per)).collect::<Vec<_>>();
        assert_eq!(poll_inputs(1.0, heavy(4)).unwrap().len(), 4);
        let over = [heavy(4), vec![item("one-more", 1)]].concat();
        assert_eq!(poll_inputs(1.0, over).unwrap_err(), Rejected::TooManyReports);
        assert_eq!(poll_inputs(-1.0, heavy(1)).unwrap_err(), Rejected::BadTime);
    }
}
