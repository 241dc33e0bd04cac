//! Every browser call of the extension's Rust side: chrome.* APIs, fetch, the clock.

use crate::driver::PostRequest;
use crate::upload::UploadResult;
use gloo_net::http::Request;
use serde::de::DeserializeOwned;
use serde::Serialize;
use vitals_shared::messages::{Coverage, Settings, TabView, ToOffscreen, ToWorker};
use vitals_shared::wire::IngestAck;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = ["chrome", "runtime"], js_name = sendMessage)]
    fn runtime_send_message(message: &JsValue) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch, js_namespace = ["chrome", "tabs"], js_name = query)]
    fn tabs_query(query: &JsValue) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch, js_namespace = ["chrome", "tabs"], js_name = getCurrent)]
    fn tabs_get_current() -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch, js_namespace = ["chrome", "storage", "sync"], js_name = get)]
    fn storage_sync_get(keys: &JsValue) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch, js_namespace = ["chrome", "storage", "sync"], js_name = set)]
    fn storage_sync_set(items: &JsValue) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch, js_namespace = ["chrome", "permissions"], js_name = request)]
    fn permissions_request(permissions: &JsValue) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch, js_namespace = ["chrome", "permissions"], js_name = contains)]
    fn permissions_contains(permissions: &JsValue) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch, js_namespace = ["chrome", "permissions", "onAdded"], js_name = addListener)]
    fn permissions_on_added(listener: &js_sys::Function) -> Result<(), JsValue>;
    #[wasm_bindgen(catch, js_namespace = ["chrome", "permissions", "onRemoved"], js_name = addListener)]
    fn permissions_on_removed(listener: &js_sys::Function) -> Result<(), JsValue>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Why a call to the browser failed: the message is the browser's (or the converter's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrowserError {
    /// A browser API threw or its promise was rejected.
    #[error("{0}")]
    Api(String),
    /// A value could not be converted to or from JavaScript.
    #[error("{0}")]
    Convert(String),
}

impl BrowserError {
    /// The error a browser API threw or rejected with (its `message`, or the thrown string).
    pub fn api(e: &JsValue) -> Self {
        Self::Api(
            e.as_string()
                .or_else(|| js_sys::Reflect::get(e, &"message".into()).ok()?.as_string())
                .unwrap_or_else(|| "unknown error".to_string()),
        )
    }
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, BrowserError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| BrowserError::Convert(e.to_string()))
}

/// Converts a message from JavaScript; `None` for anything that is not a well-formed `T`.
pub fn from_js<T: DeserializeOwned>(value: JsValue) -> Option<T> {
    serde_wasm_bindgen::from_value(value).ok()
}

/// Serialises an answer for `sendResponse`, or a message to send.
pub fn answer<T: Serialize>(value: &T) -> JsValue {
    to_js(value).unwrap_or(JsValue::UNDEFINED)
}

fn js_error(e: JsValue) -> BrowserError {
    BrowserError::api(&e)
}

async fn await_promise(p: Result<js_sys::Promise, JsValue>) -> Result<JsValue, BrowserError> {
    JsFuture::from(p.map_err(js_error)?).await.map_err(js_error)
}

/// Posts one ingest batch to the collector.
pub async fn post_batch(req: &PostRequest) -> UploadResult {
    let request = match Request::post(&req.endpoint)
        .header("Authorization", &format!("Bearer {}", req.ingest_key))
        .json(&req.batch)
    {
        Ok(r) => r,
        Err(e) => return UploadResult::Refused(format!("The upload could not be made: {e}")),
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return UploadResult::Failed(format!("collector unreachable: {e}")),
    };
    let status = response.status();
    if (200..300).contains(&status) {
        match response.json::<IngestAck>().await {
            Ok(ack) => UploadResult::Accepted(ack),
            Err(e) => UploadResult::Failed(format!("bad answer from the collector: {e}")),
        }
    } else {
        // The JSON `error` tells a refused participant token from a wrong key (both 403 or 401).
        let error = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|body| body.get("error")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        UploadResult::from_refusal(status, &error)
    }
}

async fn tab_id(p: Result<js_sys::Promise, JsValue>) -> Option<i64> {
    let tab = await_promise(p).await.ok()?;
    let tab = if js_sys::Array::is_array(&tab) {
        js_sys::Array::from(&tab).get(0)
    } else {
        tab
    };
    js_sys::Reflect::get(&tab, &"id".into())
        .ok()?
        .as_f64()
        .map(|id| id as i64)
}

/// The active tab of the current window.
pub async fn active_tab_id() -> Option<i64> {
    let query = to_js(&serde_json::json!({"active": true, "currentWindow": true})).ok()?;
    tab_id(tabs_query(&query)).await
}

/// The tab this page runs in: `None` in the toolbar popup, the tab's id when the popup page
/// was opened as a normal tab.
pub async fn own_tab_id() -> Option<i64> {
    tab_id(tabs_get_current()).await
}

/// Asks the offscreen document for a tab's view. `Ok(None)` when nobody answered (no
/// offscreen document: no call anywhere).
pub async fn get_tab(tab: Option<i64>) -> Result<Option<TabView>, BrowserError> {
    ask_offscreen(&ToOffscreen::GetTab { tab }).await
}

/// Sends `message` to the offscreen document and reads its answer as a `T`. `Ok(None)` when
/// nobody answered, the answer was null or it was not a `T`.
pub async fn ask_offscreen<T: DeserializeOwned>(message: &ToOffscreen) -> Result<Option<T>, BrowserError> {
    let message = to_js(message)?;
    js_sys::Reflect::set(&message, &"target".into(), &"offscreen".into()).map_err(js_error)?;
    ask(&message).await
}

/// Asks the service worker whether a tab's page is measured at all. `Ok(None)` when it did
/// not answer.
pub async fn get_coverage(tab: i64) -> Result<Option<Coverage>, BrowserError> {
    ask(&to_js(&ToWorker::GetCoverage { tab })?).await
}

/// Sends a runtime message and reads its answer as a `T` (as [`ask_offscreen`] describes).
async fn ask<T: DeserializeOwned>(message: &JsValue) -> Result<Option<T>, BrowserError> {
    match await_promise(runtime_send_message(message)).await {
        Ok(answer) if answer.is_undefined() || answer.is_null() => Ok(None),
        Ok(answer) => Ok(from_js(answer)),
        // No receiver, or a receiver that did not answer: no offscreen document yet.
        Err(BrowserError::Api(e)) if e.contains("Receiving end") || e.contains("port closed") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The member of [`Settings`] that is not stored in `chrome.storage.sync` (the install id lives
/// in `chrome.storage.local`, made by the service worker); every other member is.
const NOT_SYNCED: &str = "install_id";

/// The effective settings: the build's defaults (`defaults.json`) overlaid by the user's.
pub async fn load_settings() -> Result<Settings, BrowserError> {
    let mut merged = match Request::get("defaults.json").send().await {
        Ok(r) if r.ok() => r.json::<serde_json::Value>().await.unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    if !merged.is_object() {
        merged = serde_json::json!({});
    }
    let keys = JsValue::NULL; // everything stored; members Settings does not know are ignored
    let stored: serde_json::Value = from_js(await_promise(storage_sync_get(&keys)).await?).unwrap_or_default();
    if let (Some(m), Some(s)) = (merged.as_object_mut(), stored.as_object()) {
        for (k, v) in s {
            m.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(merged).map_err(|e| BrowserError::Convert(e.to_string()))
}

/// Saves the user's settings to `chrome.storage.sync` (the service worker passes them on).
pub async fn save_settings(settings: &Settings) -> Result<(), BrowserError> {
    let mut items = serde_json::to_value(settings).map_err(|e| BrowserError::Convert(e.to_string()))?;
    if let Some(map) = items.as_object_mut() {
        map.remove(NOT_SYNCED);
    }
    await_promise(storage_sync_set(&to_js(&items)?)).await.map(|_| ())
}

/// Requests the host permission for a collector origin pattern (e.g. `https://c.example.com/*`).
/// Returns whether it is granted.
pub async fn request_host_permission(origin_pattern: &str) -> Result<bool, BrowserError> {
    let permissions = to_js(&serde_json::json!({"origins": [origin_pattern]}))?;
    Ok(await_promise(permissions_request(&permissions)).await?.as_bool() == Some(true))
}

/// Whether the extension holds host permissions for every one of `origin_patterns`.
pub async fn has_host_permissions(origin_patterns: &[&str]) -> Result<bool, BrowserError> {
    let permissions = to_js(&serde_json::json!({"origins": origin_patterns}))?;
    Ok(await_promise(permissions_contains(&permissions)).await?.as_bool() == Some(true))
}

/// Calls `changed` whenever the extension's permissions change (granted in a prompt or in
/// chrome://extensions, or withdrawn). Called once per page: the listener lives as long as it.
pub fn on_permissions_changed(changed: impl Fn() + 'static) -> Result<(), BrowserError> {
    let listener = Closure::<dyn Fn()>::new(changed).into_js_value();
    let listener: &js_sys::Function = listener.unchecked_ref();
    permissions_on_added(listener).map_err(js_error)?;
    permissions_on_removed(listener).map_err(js_error)
}
