//! The offscreen document's own browser calls: `localStorage` for the upload queue (which the popup reads too), and telling the service worker it is idle.
//!
//! Why `localStorage` for the queue (format: `upload_store.rs`): an offscreen document gets no
//! `chrome.*` API but `chrome.runtime`, so `chrome.storage.local` would be a message round trip
//! to the service worker per write, through a worker Chrome may stop at any time. IndexedDB is
//! asynchronous: an event's transaction could still be open when its post starts, or be lost
//! with the document, so every post would have to wait for a commit. `localStorage` is
//! synchronous: when `setItem` returns, the entry belongs to the extension origin's storage in
//! the browser process and outlives this document (closed, crashed or reloaded), so "stored
//! before posted" holds by construction. The queue is bounded (`upload::MAX_STORED` events of
//! about 300 bytes, well under the origin's 5 MiB quota) and each write is one small entry, so
//! the synchronous calls cost microseconds.

use crate::upload_store::{StoreOp, PREFIX};
use vitals_shared::messages::FromOffscreen;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// The Web Storage interface (web-sys would need another feature for three calls).
    type Storage;
    #[wasm_bindgen(method, getter)]
    fn length(this: &Storage) -> u32;
    #[wasm_bindgen(method, catch)]
    fn key(this: &Storage, index: u32) -> Result<Option<String>, JsValue>;
    #[wasm_bindgen(method, catch, js_name = getItem)]
    fn get_item(this: &Storage, key: &str) -> Result<Option<String>, JsValue>;
    #[wasm_bindgen(method, catch, js_name = setItem)]
    fn set_item(this: &Storage, key: &str, value: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch, js_name = removeItem)]
    fn remove_item(this: &Storage, key: &str) -> Result<(), JsValue>;

    #[wasm_bindgen(catch, js_namespace = ["chrome", "runtime"], js_name = sendMessage)]
    fn runtime_send_message(message: &JsValue) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(js_namespace = console, js_name = warn)]
    fn console_warn(message: &str);
}

/// The page's `localStorage`; `None` where reading it throws (storage disabled).
fn storage() -> Option<Storage> {
    let value = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("localStorage")).ok()?;
    (!value.is_null() && !value.is_undefined()).then(|| value.unchecked_into())
}

/// Every stored entry of the upload queue.
pub fn load() -> Vec<(String, String)> {
    let Some(storage) = storage() else {
        return Vec::new();
    };
    let keys: Vec<String> = (0..storage.length())
        .filter_map(|i| storage.key(i).ok().flatten())
        .filter(|k| k.starts_with(PREFIX))
        .collect();
    keys.into_iter()
        .filter_map(|k| Some((k.clone(), storage.get_item(&k).ok()??)))
        .collect()
}

/// Applies the queue's changes in order. Returns the first failure (a full quota, taken by
/// something else of this origin): an entry that could not be written lives only in memory.
pub fn apply(ops: Vec<StoreOp>) -> Result<(), StorageError> {
    if ops.is_empty() {
        return Ok(());
    }
    let storage = storage().ok_or(StorageError::NoStorage)?;
    let mut first_error = None;
    for op in ops {
        let result = match &op {
            StoreOp::Put(key, value) => storage.set_item(key, value),
            StoreOp::Remove(key) => storage.remove_item(key),
        };
        if let (Err(e), None) = (result, &first_error) {
            first_error = Some(StorageError::Write(format!("{e:?}")));
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Why the upload queue could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("no localStorage")]
    NoStorage,
    /// `setItem` or `removeItem` threw (a full quota): what it threw.
    #[error("{0}")]
    Write(String),
}

/// Tells the service worker that no tab has a call and nothing waits for upload
/// ([`FromOffscreen::OffscreenIdle`], see `sw.js`): it closes the document unless a snapshot just
/// came.
pub fn say_idle() {
    let message = crate::browser::answer(&FromOffscreen::OffscreenIdle);
    if let Ok(promise) = runtime_send_message(&message) {
        // Awaited only so that a worker that is not listening does not leave a rejected promise.
        wasm_bindgen_futures::spawn_local(async move {
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        });
    }
}

/// Applies the queue's changes; a failure is reported on the document's console (the upload
/// itself goes on).
pub fn apply_or_warn(ops: Vec<StoreOp>) {
    if let Err(e) = apply(ops) {
        console_warn(&format!("Call Vitals: could not store the upload queue: {e}"));
    }
}
