//! The in-browser processor benchmark (`bench` feature only, never in the release build): the offscreen document's path for a `stats` poll, the generic serde read of the same message, and the processor alone.

use crate::{browser, convert, driver::Driver};
use vitals_shared::messages::ToOffscreen;
use vitals_shared::processor::{Input, Processor};
use vitals_shared::stats::RawReport;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `performance.now()`: sub-millisecond time (Date.now() counts whole ms).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// Median of per-pass costs, µs per snapshot.
fn median_us(mut per_pass: Vec<f64>) -> f64 {
    per_pass.sort_by(f64::total_cmp);
    per_pass.get(per_pass.len() / 2).copied().unwrap_or(f64::NAN)
}

fn member(object: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(object, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// Measures the processor in this browser: `messages` is an array of offscreen `stats` messages
/// (consecutive polls, as the service worker forwards them), replayed `iterations` times after
/// two warm-up passes. Returns the median µs per snapshot (one connection of a poll) of:
/// `offscreen_us`, the offscreen document's path (`convert::message_from_js`, then
/// `Driver::handle` and the processor); `via_json_us`, the same messages read by serde instead
/// (`ToOffscreen`'s derived `Deserialize`, reports through `serde_json::Value` and
/// `parse_report`: the path the offscreen document took before the direct conversion, measured
/// for comparison only), then `Driver::handle`; `direct_us`, each snapshot's reports converted by
/// `convert::report_from_js`, then the processor, no driver; `processor_us`, the processor alone
/// on converted reports; and `same_reports`, whether both reads gave equal, non-empty messages.
#[wasm_bindgen]
pub fn bench_processor(messages: js_sys::Array, iterations: u32) -> JsValue {
    let messages: Vec<JsValue> = messages.iter().collect();
    let process = |p: &mut Processor, now_ms: f64, pc: &str, reports: Vec<RawReport>| {
        p.handle_input(Input::Snapshot {
            now_ms,
            pc: pc.to_string(),
            reports,
        });
        while p.poll_output().is_some() {}
    };

    // Both reads must agree before their speeds are compared.
    let mut same_reports = !messages.is_empty();
    let mut converted: Vec<(f64, String, Vec<RawReport>)> = Vec::new();
    let mut snapshots: Vec<(f64, String, JsValue)> = Vec::new();
    for m in &messages {
        let direct = convert::message_from_js(m);
        let generic = browser::from_js::<ToOffscreen>(m.clone());
        same_reports &= direct.is_some() && direct == generic;
        let Some(ToOffscreen::Stats { now_ms, items, .. }) = direct else {
            continue;
        };
        same_reports &= !items.is_empty() && items.iter().all(|i| !i.reports.is_empty());
        let items_js = js_sys::Array::from(&member(m, "items"));
        for (item, js) in items.into_iter().zip(items_js.iter()) {
            snapshots.push((now_ms, item.pc.clone(), member(&js, "reports")));
            converted.push((now_ms, item.pc, item.reports));
        }
    }
    let n = converted.len().max(1) as f64;

    let (mut offscreen, mut via_json, mut direct, mut processor) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for pass in 0..iterations + 2 {
        let start = performance_now();
        let mut d = Driver::new();
        for m in &messages {
            if let Some(message) = convert::message_from_js(m) {
                d.handle(message, 0.0);
            }
        }
        let offscreen_us = (performance_now() - start) * 1000.0 / n;

        let start = performance_now();
        let mut d = Driver::new();
        for m in &messages {
            if let Some(message) = browser::from_js::<ToOffscreen>(m.clone()) {
                d.handle(message, 0.0);
            }
        }
        let via_json_us = (performance_now() - start) * 1000.0 / n;

        let start = performance_now();
        let mut p = Processor::new();
        for (now_ms, pc, reports) in &snapshots {
            let reports = js_sys::Array::from(reports)
                .iter()
                .map(convert::report_from_js)
                .collect();
            process(&mut p, *now_ms, pc, reports);
        }
        let direct_us = (performance_now() - start) * 1000.0 / n;

        let copies = converted.clone();
        let start = performance_now();
        let mut p = Processor::new();
        for (now_ms, pc, reports) in copies {
            process(&mut p, now_ms, &pc, reports);
        }
        let processor_us = (performance_now() - start) * 1000.0 / n;

        if pass >= 2 {
            offscreen.push(offscreen_us);
            via_json.push(via_json_us);
            direct.push(direct_us);
            processor.push(processor_us);
        }
    }
    let result = serde_json::json!({
        "offscreen_us": median_us(offscreen),
        "via_json_us": median_us(via_json),
        "direct_us": median_us(direct),
        "processor_us": median_us(processor),
        "same_reports": same_reports,
        "snapshots": converted.len(),
        "iterations": iterations,
    });
    browser::answer(&result)
}
