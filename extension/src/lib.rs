//! Call Vitals extension (wasm32): the offscreen processor driver, the popup and the options page.
//!
//! One cdylib with three entry points, each called by the loader script of its page
//! (`offscreen.js`, `popup.js`, `options.js`). The pure logic (`convert`, `upload`, `driver`,
//! `format`, the Yew reducers) is unit-tested natively; `browser` holds every browser call (those
//! only the offscreen document makes are in `offscreen_io`).

pub mod browser;
pub mod convert;
pub mod driver;
pub mod format;
pub mod offscreen;
pub mod offscreen_io;
pub mod options;
pub mod popup;
pub mod upload;
pub mod upload_store;

use wasm_bindgen::prelude::*;

/// Starts the offscreen document's driver (called once by `offscreen.js`).
#[wasm_bindgen]
pub fn start_offscreen() {
    offscreen::start();
}

/// Handles one runtime message in the offscreen document; returns the response for
/// `get-tab` (a `TabView`) and `undefined` otherwise.
#[wasm_bindgen]
pub fn offscreen_message(message: JsValue) -> JsValue {
    offscreen::handle_message(message)
}

/// Renders the popup (called by `popup.js`).
#[wasm_bindgen]
pub fn start_popup() {
    yew::Renderer::<popup::App>::new().render();
}

/// Renders the options page (called by `options.js`).
#[wasm_bindgen]
pub fn start_options() {
    yew::Renderer::<options::App>::new().render();
}

#[wasm_bindgen]
extern "C" {
    /// `performance.now()`: sub-millisecond time for the benchmark (Date.now() counts whole ms).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// Median of per-pass costs, µs per snapshot.
fn median_us(mut per_pass: Vec<f64>) -> f64 {
    per_pass.sort_by(f64::total_cmp);
    per_pass.get(per_pass.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Measures the processor in this browser: `messages` is an array of offscreen `stats` messages
/// (consecutive snapshots of one connection, as the service worker forwards them), replayed
/// `iterations` times after two warm-up passes. Returns the median µs per snapshot of:
/// `offscreen_us`, the offscreen document's path (`offscreen::stats_message`, then the driver
/// and processor); `via_json_us`, the generic message path (message to `ToOffscreen`, reports
/// through `serde_json::Value`, then the driver and processor); `direct_us`, reports converted
/// straight from the JS objects by `convert::reports_from_js`, then the processor;
/// `processor_us`, the processor alone on converted reports; and `same_reports`, whether both
/// conversions gave equal reports.
#[wasm_bindgen]
pub fn bench_processor(messages: js_sys::Array, iterations: u32) -> JsValue {
    use vitals_shared::messages::ToOffscreen;
    use vitals_shared::processor::{Input, Processor};
    use vitals_shared::stats::{parse_report, RawReport};

    let messages: Vec<JsValue> = messages.iter().collect();
    let n = messages.len().max(1) as f64;
    let field =
        |m: &JsValue, name: &str| js_sys::Reflect::get(m, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED);
    let process = |p: &mut Processor, now_ms: f64, reports: Vec<RawReport>| {
        p.handle_input(Input::Snapshot {
            now_ms,
            pc: "pc-1".to_string(),
            reports,
        });
        while p.poll_output().is_some() {}
    };

    // Both conversions must agree before their speeds are compared.
    let mut same_reports = true;
    let mut converted: Vec<(f64, Vec<RawReport>)> = Vec::new();
    for m in &messages {
        let direct = convert::reports_from_js(&field(m, "reports")).unwrap_or_default();
        let via_json = match browser::from_js::<ToOffscreen>(m.clone()) {
            Some(ToOffscreen::Stats { reports, .. }) => reports.into_iter().map(parse_report).collect(),
            _ => Vec::new(),
        };
        same_reports &= direct == via_json && !direct.is_empty();
        converted.push((field(m, "now_ms").as_f64().unwrap_or(0.0), direct));
    }

    let (mut offscreen, mut via_json, mut direct, mut processor) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for pass in 0..iterations + 2 {
        let start = performance_now();
        let mut d = driver::Driver::new();
        for m in &messages {
            if let Some((tab, url, at_ms, input)) = offscreen::stats_message(m) {
                d.stats(tab, url, at_ms, input);
            }
        }
        let offscreen_us = (performance_now() - start) * 1000.0 / n;

        let start = performance_now();
        let mut d = driver::Driver::new();
        for m in &messages {
            if let Some(message) = browser::from_js::<ToOffscreen>(m.clone()) {
                d.handle(message, 0.0);
            }
        }
        let via_json_us = (performance_now() - start) * 1000.0 / n;

        let start = performance_now();
        let mut p = Processor::new();
        for m in &messages {
            let now_ms = field(m, "now_ms").as_f64().unwrap_or(0.0);
            let reports = convert::reports_from_js(&field(m, "reports")).unwrap_or_default();
            process(&mut p, now_ms, reports);
        }
        let direct_us = (performance_now() - start) * 1000.0 / n;

        let copies = converted.clone();
        let start = performance_now();
        let mut p = Processor::new();
        for (now_ms, reports) in copies {
            process(&mut p, now_ms, reports);
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
        "snapshots": messages.len(),
        "iterations": iterations,
    });
    browser::answer(&result)
}
