//! The offscreen document's shell: runs the pure driver, its uploads and its wake-up timer.

use crate::browser;
use crate::convert;
use crate::driver::{Answer, Driver, Effect};
use crate::offscreen_io;
use gloo_timers::future::TimeoutFuture;
use std::cell::RefCell;
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

/// One runtime message (already filtered to `target: "offscreen"` by `offscreen.js`); returns
/// the answer to a question and `undefined` otherwise. Read by `convert::message_from_js`: a
/// `stats` poll straight from the JavaScript objects, never through `serde_json::Value`; a
/// malformed message is dropped.
pub fn handle_message(message: JsValue) -> JsValue {
    let Some(message) = convert::message_from_js(&message) else {
        return JsValue::UNDEFINED;
    };
    let answer = DRIVER.with(|d| d.borrow_mut().handle(message, browser::now_ms()));
    run_effects();
    match answer {
        None => JsValue::UNDEFINED,
        Some(Answer::View(view)) => browser::answer(&view),
        // Null, not undefined, when nothing is recorded: the popup tells it from no answer.
        Some(Answer::Report(report)) => report.map_or(JsValue::NULL, |r| browser::answer(&r)),
        Some(Answer::Badge(badge)) => browser::answer(&badge),
    }
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
