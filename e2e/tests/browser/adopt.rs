//! Browser tests of calls that were already running when the extension started: re-enabled or reloaded while the page's connections existed.
//!
//! The extension is switched off and on with `chrome.management`, and reloaded with
//! `chrome.developerPrivate.reload` (the Reload button of an unpacked extension: an update), both
//! from chrome://extensions; the call pages are hook.rs's.

use crate::hook::{run, setup, wait_connected, Setup};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vitals_e2e::{Browser, Popup};

const PATIENCE: Duration = Duration::from_secs(45);

/// Whether the page's RTCPeerConnection is a hook's wrapper (it answers the hook's key).
const HOOKED: &str = "return typeof RTCPeerConnection[Symbol.for('call-vitals.native')] === 'function';";

/// Run in a call page after the hook came late: what a library can check of the patched
/// prototype sees natives (the same checks hook.rs makes of the constructor).
const LOOKS_NATIVE: &str = r#"
const ts = Function.prototype.toString;
const P = RTCPeerConnection.prototype;
const state = Object.getOwnPropertyDescriptor(P, 'connectionState').get;
return {
  getStats: ts.call(P.getStats),
  name: [P.getStats.name, P.getStats.length, P.addIceCandidate.length],
  getter: ts.call(state),
  toString: ts.call(ts),
  ctor: ts.call(RTCPeerConnection),
  symbols: [...Object.getOwnPropertySymbols(P), ...Object.getOwnPropertySymbols(RTCPeerConnection)].map(String),
  same: P.getStats === RTCPeerConnection.prototype.getStats && P.constructor === RTCPeerConnection,
};
"#;

fn looks_native() -> Value {
    json!({
        "getStats": "function getStats() { [native code] }",
        "name": ["getStats", 0, 0],
        "getter": "function get connectionState() { [native code] }",
        "toString": "function toString() { [native code] }",
        "ctor": "function RTCPeerConnection() { [native code] }",
        "symbols": ["Symbol(Symbol.toStringTag)"],
        "same": true,
    })
}

/// Switches the extension off or on from chrome://extensions, in a tab of its own that it
/// closes again (the current tab stays current).
async fn set_enabled(browser: &Browser, enabled: bool) {
    let client = browser.client();
    let back = client.window().await.expect("current tab");
    let win = client.new_window(true).await.expect("new tab");
    client.switch_to_window(win.handle).await.expect("switch tab");
    client
        .goto("chrome://extensions")
        .await
        .expect("open chrome://extensions");
    let result = client
        .execute_async(
            "const [id, on, done] = arguments;
             chrome.management.setEnabled(id, on).then(() => chrome.management.get(id))
               .then((e) => done(e.enabled), (e) => done(String(e)));",
            vec![json!(browser.extension_id()), json!(enabled)],
        )
        .await
        .expect("chrome.management.setEnabled");
    assert_eq!(result, json!(enabled), "the extension's enabled state");
    client.close_window().await.expect("close chrome://extensions");
    client.switch_to_window(back).await.expect("back to the tab");
}

/// The id of the tab whose URL is `url`, asked from an extension page opened in a new tab (left
/// open and current).
async fn tab_id(browser: &Browser, url: &str) -> i64 {
    browser.open_extension_page("options.html").await;
    let id = browser
        .client()
        .execute_async(
            "const [url, done] = arguments;
             chrome.tabs.query({}).then((tabs) => done((tabs.find((t) => t.url === url) || {}).id ?? null));",
            vec![json!(url)],
        )
        .await
        .expect("chrome.tabs.query");
    id.as_i64().unwrap_or_else(|| panic!("no tab at {url}: {id}"))
}

/// Waits until `script` (run in the current page) returns `true`.
async fn wait_page(client: &Client, script: &str, what: &str) {
    let start = Instant::now();
    loop {
        if client.execute(script, vec![]).await.unwrap_or(Value::Null) == json!(true) {
            return;
        }
        assert!(start.elapsed() < PATIENCE, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Reloads the extension as chrome://extensions's Reload button does (an unpacked extension's
/// update), in a tab of its own that it closes again. Chromium started with
/// `--disable-extensions-except` leaves a reloaded extension disabled (as `chrome.runtime.reload()`
/// does too), so it is switched on again, as a user would.
async fn reload_extension(browser: &Browser) {
    let client = browser.client();
    let back = client.window().await.expect("current tab");
    let win = client.new_window(true).await.expect("new tab");
    client.switch_to_window(win.handle).await.expect("switch tab");
    client
        .goto("chrome://extensions")
        .await
        .expect("open chrome://extensions");
    let result = client
        .execute_async(
            "const [id, done] = arguments;
             chrome.developerPrivate.reload(id, { failQuietly: false })
               .then(() => new Promise((r) => setTimeout(r, 500)))
               .then(() => chrome.management.setEnabled(id, true)).then(() => chrome.management.get(id))
               .then((e) => done(e.enabled), (e) => done(String(e)));",
            vec![json!(browser.extension_id())],
        )
        .await
        .expect("developerPrivate.reload");
    assert_eq!(result, json!(true), "the extension after its reload");
    client.close_window().await.expect("close chrome://extensions");
    client.switch_to_window(back).await.expect("back to the tab");
}

/// Opens the popup pinned to `tab` in a new tab, retrying while the extension is still coming
/// back (its pages do not load until it is).
async fn pinned_popup(browser: &Browser, tab: i64) -> Popup<'_> {
    let start = Instant::now();
    let client = browser.client();
    let win = client.new_window(true).await.expect("new tab");
    client.switch_to_window(win.handle).await.expect("switch tab");
    let url = format!("chrome-extension://{}/popup.html?tab={tab}", browser.extension_id());
    loop {
        let _ = client.goto(&url).await; // refused while the extension is not back yet
        let popup = browser.current_page();
        if popup.exists("main.popup").await || popup.exists("p.loading").await {
            return popup;
        }
        assert!(start.elapsed() < PATIENCE, "the popup never loaded");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The `data-state` of the popup's no-call line, once it shows one.
async fn no_call_state(client: &Client) -> Option<String> {
    let line = client.find(Locator::Css("#no-call")).await.ok()?;
    line.attr("data-state").await.ok().flatten()
}

/// Waits until the popup's no-call line has `data-state` `state`; returns its text.
async fn wait_no_call_state(client: &Client, state: &str) -> String {
    let start = Instant::now();
    loop {
        if no_call_state(client).await.as_deref() == Some(state) {
            return client
                .find(Locator::Css("#no-call"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
        }
        let body = match client.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        assert!(
            start.elapsed() < PATIENCE,
            "the popup never said {state}; it shows: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The extension is off; the call page opens and its call connects with no hook in it; then
/// the extension is switched on again. Returns the call tab's handle and id (an extension page
/// is current).
async fn call_started_while_off(s: &Setup) -> (fantoccini::wd::WindowHandle, i64) {
    let client = s.browser.client();
    set_enabled(&s.browser, false).await;
    let url = format!("{}/plain.html", s.pages);
    client.goto(&url).await.unwrap();
    run(client, "startCall(RTCPeerConnection);").await;
    wait_connected(client, "vitals.state").await;
    assert_eq!(
        run(client, HOOKED).await,
        json!(false),
        "a hook ran while the extension was off"
    );
    let call_tab = client.window().await.unwrap();
    set_enabled(&s.browser, true).await;
    // No extension page is open: the service worker's own start must inject the hook.
    wait_page(client, HOOKED, "the hook's injection into the running page").await;
    let tab = tab_id(&s.browser, &url).await;
    (call_tab, tab)
}

/// A call that connected while the extension was off is measured once it is back on and the
/// page calls getStats() on its connections: the touched connection, and only it, first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_running_before_the_extension_started_is_measured_once_touched() {
    let s = setup().await;
    let client = s.browser.client();
    let (call_tab, tab) = call_started_while_off(&s).await;
    client.switch_to_window(call_tab.clone()).await.unwrap();
    assert_eq!(
        run(client, LOOKS_NATIVE).await,
        looks_native(),
        "the late hook's wrappers show"
    );
    run(client, "vitals.pcs[0].getStats();").await;
    let popup = pinned_popup(&s.browser, tab).await;
    let popup_tab = client.window().await.unwrap();
    popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    assert_eq!(
        popup.wait_number("#peers", "data-count", |_| true).await,
        1.0,
        "only the touched connection"
    );
    client.switch_to_window(call_tab).await.unwrap();
    run(client, "vitals.pcs[1].getSenders(); vitals.pcs[0].getStats();").await;
    client.switch_to_window(popup_tab).await.unwrap();
    popup.wait_number("#peers", "data-count", |v| v == 2.0).await;
    popup.wait_number("#download", "data-kbps", |v| v > 0.0).await;
    // The connections are counted once each, however often the page touches them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(popup.wait_number("#peers", "data-count", |_| true).await, 2.0);
    s.browser.quit().await;
}

/// A call the page never touches after the extension came back is not measured, and the popup
/// says so: it is measured once the page uses it, else after a reload (not "No call").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untouched_call_from_before_the_start_says_to_reload() {
    let s = setup().await;
    let (_call_tab, tab) = call_started_while_off(&s).await;
    let popup = pinned_popup(&s.browser, tab).await;
    let client = s.browser.client();
    let text = wait_no_call_state(client, "adopted").await;
    assert!(text.contains("reload"), "the popup's line: {text}");
    // It stays so: nothing measured what the page did not touch.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(no_call_state(client).await.as_deref(), Some("adopted"));
    assert!(!popup.exists("#peers").await, "a connection was measured untouched");
    s.browser.quit().await;
}

/// Reloading the extension (what an update does) during a call: the new hook takes over the
/// old one's connections without the page touching them, and measures each exactly once, also
/// after the page touches them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_extension_keeps_measuring_the_call_once() {
    let s = setup().await;
    let client = s.browser.client();
    let url = format!("{}/plain.html", s.pages);
    client.goto(&url).await.unwrap();
    run(client, "startCall(RTCPeerConnection);").await;
    wait_connected(client, "vitals.state").await;
    let call_tab = client.window().await.unwrap();
    let tab = tab_id(&s.browser, &url).await;
    let popup = pinned_popup(&s.browser, tab).await;
    popup.wait_number("#peers", "data-count", |v| v == 2.0).await;
    let before = run(
        client,
        "return [...document.querySelectorAll('#peers .peer')].map((p) => p.dataset.pc);",
    )
    .await;

    // The reload closes every extension page, this one too.
    client.close_window().await.unwrap();
    client.switch_to_window(call_tab.clone()).await.unwrap();
    reload_extension(&s.browser).await;
    let popup = pinned_popup(&s.browser, tab).await;
    let popup_tab = client.window().await.unwrap();
    popup.wait_number("#peers", "data-count", |v| v > 0.0).await;
    popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    popup.wait_number("#download", "data-kbps", |v| v > 0.0).await;
    let after = run(
        client,
        "return [...document.querySelectorAll('#peers .peer')].map((p) => p.dataset.pc);",
    )
    .await;
    assert_eq!(
        after.as_array().map(Vec::len),
        Some(2),
        "connections after the reload: {after}"
    );
    assert_ne!(after, before, "the new hook names its connections afresh");

    client.switch_to_window(call_tab).await.unwrap();
    assert_eq!(
        run(client, LOOKS_NATIVE).await,
        looks_native(),
        "the two runs' wrappers show"
    );
    run(
        client,
        "vitals.pcs.forEach((p) => { p.getStats(); p.getTransceivers(); });",
    )
    .await;
    client.switch_to_window(popup_tab).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        popup.wait_number("#peers", "data-count", |_| true).await,
        2.0,
        "a connection counted twice"
    );
    s.browser.quit().await;
}

/// A tab on an allowed site that no injection could reach (here Chrome's error page for a
/// server that was down, which no extension may script) says to reload it; a page loaded after
/// the start, measured from its start, says plainly that it has no call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreached_tab_says_to_reload_and_a_later_page_has_no_call() {
    let s = setup().await;
    let client = s.browser.client();
    set_enabled(&s.browser, false).await;
    let down = format!("http://127.0.0.1:{}/call", vitals_e2e::free_port());
    let _ = client.goto(&down).await; // fails to load: the error page is the tab's document
    set_enabled(&s.browser, true).await;
    let unreached = tab_id(&s.browser, &down).await;
    pinned_popup(&s.browser, unreached).await;
    let text = wait_no_call_state(client, "reload-needed").await;
    assert!(text.contains("reload it"), "the popup's line: {text}");

    let later = format!("{}/empty.html", s.pages);
    client.goto(&later).await.unwrap(); // the popup's tab, after the start
    let fresh = tab_id(&s.browser, &later).await;
    pinned_popup(&s.browser, fresh).await;
    assert_eq!(wait_no_call_state(client, "none").await, "No call in this tab.");
    s.browser.quit().await;
}

/// Adoption keeps to the user's sites: with 127.0.0.1 left out in the options, a call there
/// that ran before the start stays untouched (and the popup does not ask for a reload), while
/// the same page on localhost, opened alongside, is injected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_keeps_to_the_allowed_sites() {
    let s = setup().await;
    let client = s.browser.client();
    let first = client.window().await.unwrap();
    s.browser.open_extension_page("options.html").await;
    let excluded = client
        .execute_async(
            "const done = arguments[0];
             chrome.storage.sync.set({ sites_mode: 'deny', sites: ['*://127.0.0.1/*'] }).then(async () => {
               for (let i = 0; i < 100; i++) {
                 const [hook] = await chrome.scripting.getRegisteredContentScripts({ ids: ['call-vitals-hook'] });
                 if (hook && (hook.excludeMatches || []).includes('*://127.0.0.1/*')) return done(true);
                 await new Promise((r) => setTimeout(r, 100));
               }
               done(false);
             }, (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(excluded, json!(true), "the deny list never reached the registrations");
    client.close_window().await.unwrap();
    client.switch_to_window(first).await.unwrap();

    set_enabled(&s.browser, false).await;
    let denied = format!("{}/plain.html", s.pages);
    let allowed = denied.replace("127.0.0.1", "localhost");
    client.goto(&denied).await.unwrap();
    let denied_tab = client.window().await.unwrap();
    let win = client.new_window(true).await.unwrap();
    client.switch_to_window(win.handle.clone()).await.unwrap();
    client.goto(&allowed).await.unwrap();
    set_enabled(&s.browser, true).await;
    wait_page(client, HOOKED, "the injection into the allowed site's page").await;
    tokio::time::sleep(Duration::from_secs(2)).await; // the tabs are injected side by side
    client.switch_to_window(denied_tab).await.unwrap();
    assert_eq!(run(client, HOOKED).await, json!(false), "a left-out site was injected");
    let tab = tab_id(&s.browser, &denied).await;
    pinned_popup(&s.browser, tab).await;
    assert_eq!(wait_no_call_state(client, "none").await, "No call in this tab.");
    s.browser.quit().await;
}

/// An update from a version whose hook cannot hand over (7b5cc33's, the files in
/// `before_handover/`): the old hook goes on polling into its orphaned bridge, where nothing
/// is forwarded, and the new one measures each connection once the page touches it, exactly
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_from_a_hook_without_handover_measures_each_connection_once() {
    let s = setup().await;
    let client = s.browser.client();
    let dir = s.browser.extension_dir().to_path_buf();
    let new: Vec<(&str, Vec<u8>)> = ["hook.js", "bridge.js"]
        .into_iter()
        .map(|f| (f, std::fs::read(dir.join(f)).unwrap()))
        .collect();
    let old = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/before_handover");
    for (f, _) in &new {
        std::fs::copy(format!("{old}/{f}"), dir.join(f)).unwrap();
    }
    reload_extension(&s.browser).await; // now the old version runs
    wait_registered(&s.browser).await;

    let url = format!("{}/plain.html", s.pages);
    client.goto(&url).await.unwrap();
    let old_hook = run(
        client,
        "return [typeof RTCPeerConnection[Symbol.for('call-vitals.native')],
                 typeof RTCPeerConnection[Symbol.for('call-vitals.handover')]];",
    )
    .await;
    assert_eq!(
        old_hook,
        json!(["function", "undefined"]),
        "the old hook is not the page's"
    );
    run(client, "startCall(RTCPeerConnection);").await;
    wait_connected(client, "vitals.state").await;
    let call_tab = client.window().await.unwrap();

    for (f, bytes) in &new {
        std::fs::write(dir.join(f), bytes).unwrap();
    }
    reload_extension(&s.browser).await; // the update
    let tab = tab_id(&s.browser, &url).await;
    pinned_popup(&s.browser, tab).await;
    let popup_tab = client.window().await.unwrap();
    wait_no_call_state(client, "adopted").await;
    client.switch_to_window(call_tab).await.unwrap();
    run(client, "vitals.pcs.forEach((p) => p.getStats());").await;
    client.switch_to_window(popup_tab).await.unwrap();
    let popup = s.browser.current_page();
    popup.wait_number("#peers", "data-count", |v| v == 2.0).await;
    popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        popup.wait_number("#peers", "data-count", |_| true).await,
        2.0,
        "a connection counted twice"
    );
    s.browser.quit().await;
}

/// Waits (from an extension page, closed again) until the content scripts are registered.
async fn wait_registered(browser: &Browser) {
    let client = browser.client();
    let back = client.window().await.expect("current tab");
    browser.open_extension_page("options.html").await;
    let start = Instant::now();
    loop {
        let n = client
            .execute_async(
                "const done = arguments[0];
                 chrome.scripting.getRegisteredContentScripts().then((s) => done(s.length), (e) => done(String(e)));",
                vec![],
            )
            .await
            .unwrap_or(Value::Null);
        if n.as_u64() >= Some(2) {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "content scripts never registered: {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close_window().await.expect("close the options page");
    client.switch_to_window(back).await.expect("back to the tab");
}

/// Finds the tab whose URL is `url` among the session's windows and makes it current, waiting
/// while a restored session is still opening its tabs.
async fn switch_to_url(client: &Client, url: &str) {
    let start = Instant::now();
    loop {
        for handle in client.windows().await.unwrap_or_default() {
            if client.switch_to_window(handle).await.is_ok()
                && client.current_url().await.map(|u| u.as_str() == url).unwrap_or(false)
            {
                return;
            }
        }
        assert!(start.elapsed() < PATIENCE, "no tab at {url}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A tab restored at browser start (Chromium set to continue where it left off) loads its page
/// again at once, perhaps before the extension has registered its content scripts, and the
/// page starts its call again: that call is measured, both its connections, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_in_a_tab_restored_at_browser_start_is_measured() {
    let Setup {
        pages,
        browser,
        collector: _collector,
    } = setup().await;
    let url = format!("{pages}/autostart.html");
    browser.client().goto(&url).await.unwrap();
    wait_connected(browser.client(), "vitals.state").await;
    let browser = browser.restart_restoring_tabs().await;
    let client = browser.client();
    switch_to_url(client, &url).await;
    wait_connected(client, "vitals.state").await;
    let tab = tab_id(&browser, &url).await;
    let popup = pinned_popup(&browser, tab).await;
    popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    popup.wait_number("#download", "data-kbps", |v| v > 0.0).await;
    popup.wait_number("#peers", "data-count", |v| v == 2.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        popup.wait_number("#peers", "data-count", |_| true).await,
        2.0,
        "a connection counted twice"
    );
    browser.quit().await;
}
