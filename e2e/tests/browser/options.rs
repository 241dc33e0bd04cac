//! Options page tests in real headless Chromium with the built extension: the sites where the hook runs (all, allow list, deny list) and the collector's host permission.
//!
//! The demo call is served by the in-process collector on 127.0.0.1; `localhost` names the same
//! server under another host, so one server gives an allowed and a denied site.

use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vitals_e2e::{click, Browser, Collector};

const PATIENCE: Duration = Duration::from_secs(45);
/// WebDriver's code for the Enter key.
const ENTER: &str = "\u{E007}";

/// Run in a page: whether its `RTCPeerConnection` is the hook's wrapper. The wrapper looks
/// native to the page; only the hook's own cross-realm key (hook.js `NATIVE`) tells.
const HOOKED: &str = "return window.RTCPeerConnection[Symbol.for('call-vitals.native')] !== undefined;";

/// Run in an extension page: the content scripts the service worker registered.
const REGISTERED: &str = r#"
const done = arguments[arguments.length - 1];
chrome.scripting.getRegisteredContentScripts().then(done, (e) => done({ error: String(e) }));
"#;

/// Run in an extension page: everything in `chrome.storage.sync`.
const STORED: &str = r#"
const done = arguments[arguments.length - 1];
chrome.storage.sync.get(null).then(done, (e) => done({ error: String(e) }));
"#;

/// Run on chrome://extensions: what a user does under the extension's "Site access" there.
/// `arguments`: extension id, then "limit" (Chrome asks before the extension may run on any
/// site), "grant" or "revoke" with a host pattern.
const SITE_ACCESS: &str = r#"
const [id, op, host, done] = arguments;
(async () => {
  const dp = chrome.developerPrivate;
  if (op === 'limit') await dp.updateExtensionConfiguration({ extensionId: id, hostAccess: 'ON_CLICK' });
  if (op === 'grant') await dp.addHostPermission(id, host);
  if (op === 'revoke') await dp.removeHostPermission(id, host);
  return (await dp.getExtensionInfo(id)).permissions.runtimeHostPermissions;
})().then(done, (e) => done({ error: String(e) }));
"#;

/// Polls the async `script` (run in the current tab) until `pred` holds; returns the last value.
async fn wait_js(client: &Client, what: &str, script: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let value = client.execute_async(script, vec![]).await.unwrap_or(Value::Null);
        if pred(&value) {
            return value;
        }
        assert!(start.elapsed() < PATIENCE, "{what} never held; last {value}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The text of `css`, when it exists.
async fn text(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Waits until `css` exists with a text satisfying `pred`; returns it.
async fn wait_text(client: &Client, css: &str, pred: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let got = text(client, css).await;
        if let Some(t) = got.as_deref().filter(|t| pred(t)) {
            return t.to_string();
        }
        let body = text(client, "body").await.unwrap_or_default();
        assert!(
            start.elapsed() < PATIENCE,
            "{css} never matched; last {got:?}; page: {body}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether the radio button or checkbox `css` is checked.
async fn checked(client: &Client, css: &str) -> bool {
    let input = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    input.prop("checked").await.ok().flatten().as_deref() == Some("true")
}

/// Replaces the text of the input `css` with `value` (typed, as a user would).
async fn type_into(client: &Client, css: &str, value: &str) {
    let input = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    input.clear().await.expect("clear input");
    input.send_keys(value).await.expect("type");
}

/// Clicks Save and waits for the page to say it saved.
async fn save(client: &Client) {
    click(client, "#save").await;
    wait_text(client, "#status", |t| t.starts_with("Saved")).await;
}

/// The patterns shown in the site list.
async fn listed(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for row in client
        .find_all(Locator::Css("#site-list .site"))
        .await
        .unwrap_or_default()
    {
        out.push(row.attr("data-pattern").await.ok().flatten().unwrap_or_default());
    }
    out
}

/// Waits until both registered content scripts match `matches` and `exclude`, and checks
/// how they are registered (worlds, document_start, all frames, related frames, persistent).
async fn wait_registered(client: &Client, matches: &[&str], exclude: &[&str]) {
    // Chrome returns the patterns sorted.
    let sorted = |list: &[&str]| {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        v.sort();
        json!(v)
    };
    let (matches, exclude) = (sorted(matches), sorted(exclude));
    let scripts = wait_js(client, "registration", REGISTERED, |v| {
        v.as_array().is_some_and(|a| {
            a.len() == 2
                && a.iter().all(|s| {
                    s["matches"] == matches && s.get("excludeMatches").cloned().unwrap_or(json!([])) == exclude
                })
        })
    })
    .await;
    for (id, js, world) in [
        ("call-vitals-hook", "hook.js", "MAIN"),
        ("call-vitals-bridge", "bridge.js", "ISOLATED"),
    ] {
        let s = scripts.as_array().unwrap().iter().find(|s| s["id"] == id);
        let s = s.unwrap_or_else(|| panic!("no {id} in {scripts}"));
        assert_eq!(s["js"], json!([js]), "{s}");
        assert_eq!(s["world"], world, "{s}");
        assert_eq!(s["runAt"], "document_start", "{s}");
        assert_eq!(s["allFrames"], true, "{s}");
        assert_eq!(s["matchOriginAsFallback"], true, "{s}");
        assert_eq!(s["persistAcrossSessions"], true, "{s}");
    }
}

/// Opens `url` (the demo call) in a new tab, waits until it is connected, and says whether
/// the hook runs in it.
async fn open_call(browser: &Browser, url: &str) -> bool {
    let client = browser.client();
    let win = client.new_window(true).await.expect("new tab");
    client.switch_to_window(win.handle).await.expect("switch tab");
    browser.open_demo(url).await;
    client.execute(HOOKED, vec![]).await.expect("hook check") == json!(true)
}

/// The demo call under the host name `localhost` instead of 127.0.0.1 (same server).
fn on_localhost(url: &str) -> String {
    url.replacen("127.0.0.1", "localhost", 1)
}

/// The meetings the collector knows, by id (`http://host/demo`: no port, an IP host as `ip-literal`).
async fn meeting_ids(collector: &Collector) -> Vec<String> {
    let meetings = collector.meetings().await;
    meetings["meetings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["meeting_id"].as_str().map(String::from))
        .collect()
}

/// Waits until the collector has a participant in the meeting whose id starts with `prefix`.
async fn wait_meeting(collector: &Collector, prefix: &str) {
    let start = Instant::now();
    loop {
        let ids = meeting_ids(collector).await;
        if ids.iter().any(|id| id.starts_with(prefix)) {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no meeting {prefix}… on the collector: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A collector, Chromium with the extension, and the demo call's URL on 127.0.0.1 and on
/// localhost.
async fn start() -> (Collector, Browser, String, String) {
    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    let on_127 = collector.demo_url(None);
    let on_localhost = on_localhost(&on_127);
    (collector, browser, on_127, on_localhost)
}

/// Opens the options page in a new tab and waits until it is rendered.
async fn open_options(browser: &Browser) {
    browser.open_extension_page("options.html").await;
    wait_text(browser.client(), "#save", |_| true).await;
}

/// "Only these sites": entries are validated and normalised as typed; the hook then runs on
/// the listed host (the popup shows its call, the collector gets its participant) and leaves a
/// page on another host untouched (native `RTCPeerConnection`, no call in the popup, nothing
/// at the collector, though that page holds a live call the whole time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_limits_the_hook_to_the_listed_sites() {
    let (collector, browser, denied_url, allowed_url) = start().await;
    let client = browser.client();
    open_options(&browser).await;
    // Installed with every site: both scripts registered for *://*/*.
    wait_registered(client, &["*://*/*"], &[]).await;
    assert!(checked(client, "#sites-all").await, "all sites is the default");
    assert!(
        text(client, "#site-list").await.is_none(),
        "no list editor for all sites"
    );

    click(client, "#sites-allow").await;
    // An invalid entry: a clear error, and the entry stays in the input.
    type_into(client, "#site-input", "meet.*.com").await;
    click(client, "#add-site").await;
    let error = wait_text(client, "#site-error", |t| !t.is_empty()).await;
    assert!(error.contains("meet.*.com") && error.contains("subdomains"), "{error}");
    let input = client.find(Locator::Css("#site-input")).await.unwrap();
    assert_eq!(input.prop("value").await.unwrap().as_deref(), Some("meet.*.com"));
    assert!(listed(client).await.is_empty());
    // A pasted URL keeps scheme and host; Enter adds; several entries at once.
    type_into(client, "#site-input", "https://Meet.Example.com:8443/abc?pwd=1").await;
    click(client, "#add-site").await;
    type_into(client, "#site-input", &format!("localhost *.example.org{ENTER}")).await;
    let start = Instant::now();
    while listed(client).await.len() < 3 {
        assert!(
            start.elapsed() < PATIENCE,
            "sites not added: {:?}",
            listed(client).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        listed(client).await,
        ["https://meet.example.com/*", "*://localhost/*", "*://*.example.org/*"]
    );
    assert_eq!(
        text(client, "#site-list .site .site-name").await.as_deref(),
        Some("https://meet.example.com")
    );
    assert!(
        text(client, "#site-error").await.is_none(),
        "a valid entry clears the error"
    );
    // Remove the last one again.
    let rows = client.find_all(Locator::Css("#site-list .remove-site")).await.unwrap();
    rows[2].click().await.unwrap();
    save(client).await;

    let allowed = ["https://meet.example.com/*", "*://localhost/*"];
    wait_registered(client, &allowed, &[]).await;
    let stored = client.execute_async(STORED, vec![]).await.unwrap();
    assert_eq!(stored["sites_mode"], "allow", "{stored}");
    assert_eq!(stored["sites"], json!(allowed), "{stored}");

    // 127.0.0.1 is not listed: a live call there runs without the hook.
    assert!(
        !open_call(&browser, &denied_url).await,
        "hook active on a site not allowed"
    );
    browser.open_popup().await.wait_text("#no-call").await;

    // localhost is listed: measured, shown and uploaded.
    assert!(
        open_call(&browser, &allowed_url).await,
        "hook missing on an allowed site"
    );
    let popup = browser.open_popup().await;
    popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    wait_meeting(&collector, "http://localhost/").await;
    // The 127.0.0.1 call has been live all along: nothing of it reached the collector.
    let ids = meeting_ids(&collector).await;
    assert!(ids.iter().all(|id| id.starts_with("http://localhost/")), "{ids:?}");
    browser.quit().await;
}

/// "All sites except these", kept across a browser restart, then back to all sites: the
/// listed host runs without the hook while another host is measured; after "All sites" (the
/// list is kept for later) a reload of the excluded page is measured again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_list_survives_a_restart_and_all_sites_restores_the_hook() {
    let (collector, browser, denied_url, allowed_url) = start().await;
    let client = browser.client();
    open_options(&browser).await;
    click(client, "#sites-deny").await;
    type_into(client, "#site-input", "127.0.0.1").await;
    save(client).await; // the typed entry is added by Save itself
    assert_eq!(listed(client).await, ["*://127.0.0.1/*"]);
    wait_registered(client, &["*://*/*"], &["*://127.0.0.1/*"]).await;

    let browser = browser.restart().await;
    let client = browser.client();
    open_options(&browser).await;
    wait_registered(client, &["*://*/*"], &["*://127.0.0.1/*"]).await;
    assert!(checked(client, "#sites-deny").await, "the setting survives the restart");

    assert!(
        !open_call(&browser, &denied_url).await,
        "hook active on an excluded site"
    );
    let denied_tab = client.window().await.unwrap();
    assert!(
        open_call(&browser, &allowed_url).await,
        "hook missing on a site not excluded"
    );
    wait_meeting(&collector, "http://localhost/").await;
    let ids = meeting_ids(&collector).await;
    assert!(ids.iter().all(|id| id.starts_with("http://localhost/")), "{ids:?}");

    // Back to all sites.
    open_options(&browser).await;
    click(client, "#sites-all").await;
    save(client).await;
    wait_registered(client, &["*://*/*"], &[]).await;
    let stored = client.execute_async(STORED, vec![]).await.unwrap();
    assert_eq!(stored["sites_mode"], "all", "{stored}");
    assert_eq!(
        stored["sites"],
        json!(["*://127.0.0.1/*"]),
        "the list is kept: {stored}"
    );

    client.switch_to_window(denied_tab).await.unwrap();
    browser.open_demo(&denied_url).await;
    assert_eq!(
        client.execute(HOOKED, vec![]).await.unwrap(),
        json!(true),
        "reloaded page hooked"
    );
    wait_meeting(&collector, "http://ip-literal/").await;
    browser.quit().await;
}

/// The collector's host permission. Granted hosts: Save asks Chrome, which answers at once,
/// and the page says so. When the user limited the extension's site access in
/// chrome://extensions and the collector's host is not allowed, Save still saves and Chrome's
/// prompt opens (headless Chromium never answers it, so a refusal cannot be driven here); the
/// page says it waits, and uploads still arrive because the collector accepts cross-origin
/// requests. Granting or withdrawing the host in chrome://extensions updates the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_permission_is_asked_on_save_and_shown() {
    let (collector, browser, demo_url, _) = start().await;
    let client = browser.client();
    let id = browser.extension_id().to_string();
    let collector_on_localhost = on_localhost(&collector.base);

    open_options(&browser).await;
    let options = client.window().await.unwrap();
    wait_text(client, "#collector-access", |t| {
        t.contains("lets Call Vitals send to http://127.0.0.1")
    })
    .await;
    save(client).await;
    let line = client.find(Locator::Css("#collector-access")).await.unwrap();
    assert_eq!(line.attr("data-state").await.unwrap().as_deref(), Some("granted"));
    assert!(text(client, "#site-access").await.is_none(), "every site allowed");

    // The user limits the extension to 127.0.0.1 in chrome://extensions.
    let win = client.new_window(true).await.unwrap();
    client.switch_to_window(win.handle.clone()).await.unwrap();
    client.goto(&format!("chrome://extensions/?id={id}")).await.unwrap();
    let site_access = |op: &'static str, host: &'static str| {
        let id = id.clone();
        async move {
            let result = client
                .execute_async(SITE_ACCESS, vec![json!(id), json!(op), json!(host)])
                .await
                .expect("site access script");
            assert!(result.get("error").is_none(), "{op} {host}: {result}");
            result
        }
    };
    site_access("limit", "").await;
    let hosts = site_access("grant", "http://127.0.0.1/*").await;
    assert_eq!(hosts["hostAccess"], "ON_SPECIFIC_SITES", "{hosts}");
    let extensions_tab = client.window().await.unwrap();

    client.switch_to_window(options.clone()).await.unwrap();
    client.refresh().await.unwrap();
    wait_text(client, "#site-access", |t| t.contains("Site access")).await;
    type_into(client, "#collector-url", &collector_on_localhost).await;
    click(client, "#save").await;
    let waiting = wait_text(client, "#collector-access", |t| t.contains("Waiting")).await;
    assert!(waiting.contains("http://localhost"), "{waiting}");
    wait_text(client, "#status", |t| t.starts_with("Saved")).await;
    let stored = client.execute_async(STORED, vec![]).await.unwrap();
    assert_eq!(
        stored["collector_url"],
        json!(collector_on_localhost),
        "saved while the prompt is open"
    );

    // Without access to localhost, the upload still reaches the collector (CORS).
    let has_access = client
        .execute_async(
            "const done = arguments[0]; chrome.permissions.contains({ origins: ['http://localhost/*'] }).then(done);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(has_access, json!(false), "the collector's host is not granted");
    assert!(open_call(&browser, &demo_url).await, "hook on the allowed 127.0.0.1");
    wait_meeting(&collector, "http://ip-literal/").await;
    let popup = browser.open_popup().await;
    let status = popup.wait_text("#collector").await;
    assert!(!status.contains("unreachable"), "{status}");

    // Granted in chrome://extensions: the page updates; withdrawn: it explains.
    client.switch_to_window(extensions_tab.clone()).await.unwrap();
    site_access("grant", "http://localhost/*").await;
    client.switch_to_window(options.clone()).await.unwrap();
    wait_text(client, "#collector-access", |t| {
        t.contains("lets Call Vitals send to http://localhost")
    })
    .await;
    client.switch_to_window(extensions_tab).await.unwrap();
    site_access("revoke", "http://localhost/*").await;
    client.switch_to_window(options).await.unwrap();
    let missing = wait_text(client, "#collector-access", |t| t.contains("no access")).await;
    assert!(missing.contains("cross-origin"), "{missing}");
    browser.quit().await;
}

/// A meeting id salt typed in the options page: the call is uploaded under the hash that
/// `privacy::uploaded_meeting_id` (and `collector meeting-id`) gives for its page and that salt,
/// and the collector holds no meeting id with the page's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_id_salt_uploads_the_meeting_as_its_hash_only() {
    let (collector, browser, url, _) = start().await;
    let client = browser.client();
    open_options(&browser).await;
    type_into(client, "#meeting-id-salt", "acme-2026").await;
    save(client).await;
    let stored = wait_js(client, "the salt stored", STORED, |s| {
        s["meeting_id_salt"] == "acme-2026"
    })
    .await;
    assert_eq!(stored["meeting_id_salt"], "acme-2026", "{stored}");
    assert!(open_call(&browser, &url).await, "hook missing");
    let hashed = vitals_shared::privacy::uploaded_meeting_id(&url, "acme-2026").unwrap();
    wait_meeting(&collector, &hashed).await;
    let ids = meeting_ids(&collector).await;
    assert!(ids.iter().all(|id| id.starts_with("h-")), "{ids:?}");
    assert!(
        !collector.meetings().await.to_string().contains("demo"),
        "the page's address reached the collector"
    );
    browser.quit().await;
}
