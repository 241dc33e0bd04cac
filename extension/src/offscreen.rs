//! The offscreen document's shell: runs the pure driver, its uploads and its wake-up timer.

use crate::browser;
use crate::convert;
use crate::driver::{Driver, Effect};
use crate::offscreen_io;
use gloo_timers::future::TimeoutFuture;
use std::cell::RefCell;
use vitals_shared::messages::ToOffscreen;
use vitals_shared::processor::Input;
use wasm_bindgen::JsValue;

thread_local! {
    static DRIVER: RefCell<Driver> = RefCell::new(Driver::new());
    /// When the pending wake-up fires, and its generation (a later, earlier-firing request
    /// bumps it so the older sleeping task does nothing).
    static TIMER: RefCell<(Option<f64>, u64)> = const { RefCell::new((None, 0)) };
}

/// Starts the driver with the upload queue stored by the previous document, if any.
pub fn start() {
    let mut driver = Driver::new();
    driver.restore(offscreen_io::load(), browser::now_ms());
    offscreen_io::apply_or_warn(driver.take_writes());
    DRIVER.with(|d| *d.borrow_mut() = driver);
}

/// One runtime message (already filtered to `target: "offscreen"` by `offscreen.js`).
pub fn handle_message(message: JsValue) -> JsValue {
    if is_stats(&message) {
        // The hot path (one message per connection per second): the reports are converted
        // straight from the JavaScript objects, never through `serde_json::Value`. A malformed
        // snapshot is dropped.
        if let Some((tab, url, at_ms, input)) = stats_message(&message) {
            DRIVER.with(|d| d.borrow_mut().stats(tab, url, at_ms, input));
            run_effects();
        }
        return JsValue::UNDEFINED;
    }
    let Some(message) = browser::from_js::<ToOffscreen>(message) else {
        return JsValue::UNDEFINED;
    };
    if let ToOffscreen::GetReport { tab } = message {
        // Null, not undefined, when nothing is recorded: the popup tells it from no answer.
        let report = DRIVER.with(|d| d.borrow().report(tab, browser::now_ms()));
        return report.map_or(JsValue::NULL, |r| browser::answer(&r));
    }
    let view = DRIVER.with(|d| d.borrow_mut().handle(message, browser::now_ms()));
    run_effects();
    view.map_or(JsValue::UNDEFINED, |v| browser::answer(&v))
}

fn member(message: &JsValue, name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(message, &JsValue::from_str(name)).ok()
}

fn is_stats(message: &JsValue) -> bool {
    member(message, "type").and_then(|t| t.as_string()).as_deref() == Some("stats")
}

/// A `stats` message (`ToOffscreen::Stats`) read member by member; `None` when malformed.
pub(crate) fn stats_message(message: &JsValue) -> Option<(i64, String, f64, Input)> {
    let get = |name: &str| member(message, name);
    let tab = get("tab")?.as_f64().filter(|t| t.fract() == 0.0 && t.abs() < 9.0e15)? as i64;
    let url = get("url")?.as_string()?;
    let pc = get("pc")?.as_string()?;
    let at_ms = get("now_ms")?.as_f64()?;
    let reports = convert::reports_from_js(&get("reports")?)?;
    let input = convert::typed_snapshot_input(at_ms, pc, reports).ok()?;
    Some((tab, url, at_ms, input))
}

fn run_effects() {
    let (effects, writes) = DRIVER.with(|d| {
        let mut driver = d.borrow_mut();
        let effects = driver.effects(browser::now_ms());
        (effects, driver.take_writes())
    });
    // Stored before any post starts: an event never reaches the collector unstored.
    offscreen_io::apply_or_warn(writes);
    for effect in effects {
        match effect {
            Effect::Post(req) => wasm_bindgen_futures::spawn_local(async move {
                let result = browser::post_batch(&req).await;
                DRIVER.with(|d| d.borrow_mut().upload_done(&req.session, result, browser::now_ms()));
                run_effects();
            }),
            Effect::WakeAt(at_ms) => wake_at(at_ms),
            Effect::Idle => offscreen_io::say_idle(),
        }
    }
}

fn wake_at(at_ms: f64) {
    // A newer request supersedes older ones: each sleeping task checks it is still the latest.
    let generation = TIMER.with(|t| {
        let mut timer = t.borrow_mut();
        if timer.0.is_some_and(|at| at <= at_ms) {
            return None;
        }
        timer.1 += 1;
        timer.0 = Some(at_ms);
        Some(timer.1)
    });
    let Some(generation) = generation else {
        return;
    };
    let delay_ms = (at_ms - browser::now_ms()).clamp(0.0, 600_000.0) as u32;
    wasm_bindgen_futures::spawn_local(async move {
        TimeoutFuture::new(delay_ms).await;
        let current = TIMER.with(|t| {
            let mut timer = t.borrow_mut();
            let current = timer.1 == generation;
            if current {
                timer.0 = None;
            }
            current
        });
        if current {
            DRIVER.with(|d| d.borrow_mut().tick(browser::now_ms()));
            run_effects();
        }
    });
}
