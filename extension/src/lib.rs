//! Call Vitals extension (wasm32): the offscreen processor driver, the popup and the options page.
//!
//! One cdylib with three entry points, each called by the loader script of its page
//! (`offscreen.js`, `popup.js`, `options.js`). The pure logic (`convert`, `upload`, `driver`,
//! `format`, the Yew reducers) is unit-tested natively; `browser` holds every browser call (those
//! only the offscreen document makes are in `offscreen_io`). With the `bench` feature (never in
//! the release build) it also exports `bench_processor` (`bench`).

#[cfg(feature = "bench")]
pub mod bench;
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

/// Handles one runtime message in the offscreen document (`ToOffscreen`); returns the answer to
/// a question (`TabView`, `Report` or null, `Badge`) and `undefined` otherwise.
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
