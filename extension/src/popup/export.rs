//! The browser calls behind "Download report" and "Copy summary": the report from the offscreen document, browser and extension version, a Blob download, the clipboard.

use crate::browser::{self, BrowserError};
use vitals_shared::messages::ToOffscreen;
use vitals_shared::report::{BrandVersion, BrowserInfo, Report};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    type Blob;
    #[wasm_bindgen(constructor, catch)]
    fn new(parts: &js_sys::Array, options: &JsValue) -> Result<Blob, JsValue>;
    #[wasm_bindgen(catch, js_namespace = URL, js_name = createObjectURL)]
    fn create_object_url(blob: &Blob) -> Result<String, JsValue>;
    #[wasm_bindgen(js_namespace = URL, js_name = revokeObjectURL)]
    fn revoke_object_url(url: &str);
    #[wasm_bindgen(catch, js_namespace = document, js_name = createElement)]
    fn create_element(tag: &str) -> Result<web_sys::HtmlElement, JsValue>;
    #[wasm_bindgen(catch, js_namespace = ["navigator", "clipboard"], js_name = writeText)]
    fn clipboard_write_text(text: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch, js_namespace = ["chrome", "runtime"], js_name = getManifest)]
    fn get_manifest() -> Result<JsValue, JsValue>;

    /// A text field (`HTMLTextAreaElement.select()`).
    type Selectable;
    #[wasm_bindgen(method)]
    fn select(this: &Selectable);
}

/// Why a report could not be fetched, saved or copied: in words for the popup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("Nothing has been recorded for this tab yet.")]
    NothingRecorded,
    #[error(transparent)]
    Browser(#[from] BrowserError),
}

fn message_of(e: &JsValue) -> BrowserError {
    BrowserError::api(e)
}

fn member(value: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(value, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

/// The report of `tab` with the browser and extension version filled in.
pub async fn fetch_report(tab: Option<i64>) -> Result<Report, ExportError> {
    let mut report = browser::ask_offscreen::<Report>(&ToOffscreen::GetReport { tab })
        .await?
        .ok_or(ExportError::NothingRecorded)?;
    report.browser = browser_info().await;
    report.extension_version = get_manifest()
        .ok()
        .and_then(|m| member(&m, "version").as_string())
        .unwrap_or_default();
    Ok(report)
}

/// The browser from `navigator.userAgentData` (full version list when the browser gives it),
/// else from the user agent string.
async fn browser_info() -> BrowserInfo {
    let navigator = member(&js_sys::global(), "navigator");
    let user_agent = member(&navigator, "userAgent").as_string().unwrap_or_default();
    let data = member(&navigator, "userAgentData");
    let mut brands: Vec<BrandVersion> = browser::from_js(member(&data, "brands")).unwrap_or_default();
    let mut platform = member(&data, "platform").as_string().unwrap_or_default();
    let high_entropy = member(&data, "getHighEntropyValues").dyn_into::<js_sys::Function>();
    if let Ok(get) = high_entropy {
        let hints = js_sys::Array::of2(&"fullVersionList".into(), &"platformVersion".into());
        if let Ok(promise) = get.call1(&data, &hints).and_then(|p| p.dyn_into::<js_sys::Promise>()) {
            if let Ok(values) = JsFuture::from(promise).await {
                if let Some(full) = browser::from_js::<Vec<BrandVersion>>(member(&values, "fullVersionList")) {
                    brands = full;
                }
                if let Some(version) = member(&values, "platformVersion").as_string().filter(|v| !v.is_empty()) {
                    platform = format!("{platform} {version}").trim().to_string();
                }
            }
        }
    }
    BrowserInfo {
        name: BrowserInfo::describe(&brands, &user_agent),
        platform,
        user_agent,
        brands,
    }
}

/// Saves `report` as a JSON file through an `<a download>` on a Blob (no extra permission);
/// returns the file name.
pub fn download(report: &Report) -> Result<String, BrowserError> {
    let json = serde_json::to_string_pretty(report).map_err(|e| BrowserError::Convert(e.to_string()))?;
    let file = report.file_name();
    let options = js_sys::Object::new();
    js_sys::Reflect::set(&options, &"type".into(), &"application/json".into()).map_err(|e| message_of(&e))?;
    let blob = Blob::new(&js_sys::Array::of1(&json.into()), &options).map_err(|e| message_of(&e))?;
    let url = create_object_url(&blob).map_err(|e| message_of(&e))?;
    let anchor = create_element("a").map_err(|e| message_of(&e))?;
    let attributes = anchor
        .set_attribute("href", &url)
        .and_then(|()| anchor.set_attribute("download", &file));
    if let Err(e) = attributes {
        revoke_object_url(&url);
        return Err(message_of(&e));
    }
    anchor.click();
    // The download has its own reference to the Blob; the URL can go once it started.
    let later = url.clone();
    gloo_timers::callback::Timeout::new(60_000, move || revoke_object_url(&later)).forget();
    Ok(file)
}

/// Puts `text` on the clipboard; `Err` with the browser's reason when it is refused.
pub async fn copy_to_clipboard(text: &str) -> Result<(), BrowserError> {
    let promise = clipboard_write_text(text).map_err(|e| message_of(&e))?;
    JsFuture::from(promise).await.map(|_| ()).map_err(|e| message_of(&e))
}

/// Focuses and selects the text of a `<textarea>`, so Ctrl+C copies it.
pub fn select_all(textarea: &web_sys::HtmlElement) {
    // Focus may be refused (e.g. the popup lost focus); the selection is still shown.
    let _ = textarea.focus();
    textarea.unchecked_ref::<Selectable>().select();
}
