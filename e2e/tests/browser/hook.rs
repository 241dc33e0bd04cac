//! Browser tests of the hook and the page side of the pipeline: real headless Chromium with the built extension, on pages this test serves.
//!
//! Each test serves its own small pages from a loopback server started in the test (a loopback
//! call between two peer connections with the fake camera), loads them with the extension, and
//! checks what the page sees (the wrapper looks native) and what the popup shows (the call is
//! tracked, and stops being shown when its connections close or its tab goes).

use axum::http::{header, StatusCode, Uri};
use axum::response::IntoResponse;
use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vitals_e2e::{Browser, Collector, Popup};

/// Shared by every test page: a loopback call made with a given constructor, and counters of
/// what the page itself observes (window messages, errors, unhandled rejections).
const CALL_JS: &str = r#"
// A library that saved the constructor before any call started.
const SavedRTCPeerConnection = window.RTCPeerConnection;
window.vitals = { state: 'idle', error: null, pageErrors: 0, messages: 0, pcs: [] };
addEventListener('error', () => { vitals.pageErrors++; });
addEventListener('unhandledrejection', () => { vitals.pageErrors++; });
addEventListener('message', () => { vitals.messages++; });
async function loopback(Ctor) {
  const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
  const a = new Ctor(), b = new Ctor();
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  media.getTracks().forEach((t) => a.addTrack(t, media));
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription);
  return [a, b];
}
function startCall(Ctor) {
  vitals.state = 'connecting';
  loopback(Ctor).then((pcs) => {
    vitals.pcs = pcs;
    const check = () => {
      if (pcs.every((p) => p.connectionState === 'connected')) vitals.state = 'connected';
      else if (pcs.some((p) => p.connectionState === 'failed')) vitals.state = 'failed';
      else setTimeout(check, 100);
    };
    check();
  }, (e) => { vitals.state = 'failed'; vitals.error = String(e && e.message || e); });
}
"#;

const PLAIN: &str = "<!doctype html><title>plain</title><script src=\"/call.js\"></script><p>plain</p>";

/// The call runs inside a srcdoc frame, whose own content scripts must track it.
const SRCDOC: &str = r#"<!doctype html><title>srcdoc</title>
<iframe id="f" allow="camera; microphone" srcdoc="<script src='/call.js'></script><script>startCall(RTCPeerConnection)</script>"></iframe>"#;

/// A script-made about:blank frame whose pristine-looking constructor the parent takes at
/// once, before any content script could run in the frame (the "clean iframe" trick).
const BLANK: &str = r#"<!doctype html><title>blank</title><script src="/call.js"></script>
<script>
const frame = document.createElement('iframe');
document.documentElement.appendChild(frame);
window.FromFrame = frame.contentWindow.RTCPeerConnection;
</script>"#;

/// A page that starts its call as it loads (a meeting app rejoining), with nothing else.
const AUTOSTART: &str = "<!doctype html><title>autostart</title><script src=\"/call.js\"></script><script>startCall(RTCPeerConnection)</script>";

const EMPTY: &str = "<!doctype html><title>empty</title><p>nothing here</p>";

async fn page(uri: Uri) -> impl IntoResponse {
    let (kind, body) = match uri.path() {
        "/call.js" => ("text/javascript", CALL_JS),
        "/plain.html" => ("text/html", PLAIN),
        "/srcdoc.html" => ("text/html", SRCDOC),
        "/blank.html" => ("text/html", BLANK),
        "/empty.html" => ("text/html", EMPTY),
        "/autostart.html" => ("text/html", AUTOSTART),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain")],
                "not found",
            )
        }
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, kind)], body)
}

/// Serves the test pages on a free loopback port; returns the base URL.
async fn serve_pages() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(page)).await });
    base
}

pub(crate) struct Setup {
    pub(crate) pages: String,
    pub(crate) browser: Browser,
    pub(crate) collector: Collector,
}

pub(crate) async fn setup() -> Setup {
    let collector = Collector::start().await;
    let pages = serve_pages().await;
    let browser = Browser::start(&collector).await;
    Setup {
        pages,
        browser,
        collector,
    }
}

pub(crate) async fn run(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Waits until `expr` (a JavaScript expression in the current page) is `"connected"`.
pub(crate) async fn wait_connected(client: &Client, expr: &str) {
    let start = Instant::now();
    loop {
        let state = client
            .execute(
                &format!("try {{ return {expr}; }} catch (e) {{ return String(e); }}"),
                vec![],
            )
            .await
            .unwrap_or(Value::Null);
        if state == "connected" {
            return;
        }
        assert!(state != "failed", "test call failed: {state}");
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "test call did not connect: {state}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The popup shows a call with upload and download bitrates; returns them (kbps).
async fn popup_shows_call(popup: &Popup<'_>) -> (f64, f64) {
    let up = popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    let down = popup.wait_number("#download", "data-kbps", |v| v > 0.0).await;
    (up, down)
}

/// The popup shows `#no-call` within `within` (shorter than the 10 s after which a silent
/// call counts as ended anyway, so this proves the end was reported, not timed out).
async fn popup_shows_no_call_within(client: &Client, within: Duration) {
    let start = Instant::now();
    loop {
        if client.find(Locator::Css("#no-call")).await.is_ok() {
            return;
        }
        if start.elapsed() > within {
            let body = match client.find(Locator::Css("body")).await {
                Ok(b) => b.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("popup did not show #no-call within {within:?}; it shows: {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Everything a WebRTC library can check about the constructor sees the native one, and the
/// call made through a reference saved before it started is tracked; the page receives no
/// window message and no error from the hook, and its own getStats() is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapper_looks_native_and_its_call_is_tracked() {
    let s = setup().await;
    let client = s.browser.client();
    client.goto(&format!("{}/plain.html", s.pages)).await.unwrap();
    let checks = run(
        client,
        r#"
        const R = RTCPeerConnection;
        const ts = Function.prototype.toString;
        const pc = new R();
        const d = Object.getOwnPropertyDescriptor(window, 'RTCPeerConnection');
        let called;
        try { R(); called = 'no error'; } catch (e) { called = e instanceof TypeError ? 'TypeError' : String(e); }
        const out = {
          name: R.name,
          length: R.length,
          toString: ts.call(R),
          implicitString: String(R),
          toStringOfToString: ts.call(ts),
          toStringName: ts.name,
          // Chromium's statics (generateCertificate and more) and nothing of the hook's.
          ownKeys: ['generateCertificate', 'length', 'name', 'prototype'].every((k) => Object.getOwnPropertyNames(R).includes(k))
            && Object.getOwnPropertyNames(R).every((k) => !/vital|hook/i.test(k)) && Object.getOwnPropertySymbols(R).length === 0,
          protoConstructor: R.prototype.constructor === R,
          instanceOf: pc instanceof R,
          protoOf: Object.getPrototypeOf(pc) === R.prototype,
          pcConstructor: pc.constructor === R,
          savedIsGlobal: SavedRTCPeerConnection === R,
          webkit: typeof webkitRTCPeerConnection === 'undefined' || webkitRTCPeerConnection === R,
          protoIsNative: Object.getPrototypeOf(R) === EventTarget,
          methodsNative: ts.call(R.prototype.getStats) === 'function getStats() { [native code] }',
          staticNative: ts.call(R.generateCertificate) === 'function generateCertificate() { [native code] }',
          staticSame: R.generateCertificate === Object.getOwnPropertyDescriptor(R, 'generateCertificate').value,
          getterNative: ts.call(Object.getOwnPropertyDescriptor(HTMLIFrameElement.prototype, 'contentWindow').get),
          descriptor: [d.writable, d.enumerable, d.configurable],
          callWithoutNew: called,
        };
        pc.close();
        return out;
        "#,
    )
    .await;
    let expected = json!({
        "name": "RTCPeerConnection",
        "length": 0,
        "toString": "function RTCPeerConnection() { [native code] }",
        "implicitString": "function RTCPeerConnection() { [native code] }",
        "toStringOfToString": "function toString() { [native code] }",
        "toStringName": "toString",
        "ownKeys": true,
        "protoConstructor": true,
        "instanceOf": true,
        "protoOf": true,
        "pcConstructor": true,
        "savedIsGlobal": true,
        "webkit": true,
        "protoIsNative": true,
        "methodsNative": true,
        "staticNative": true,
        "staticSame": true,
        "getterNative": "function get contentWindow() { [native code] }",
        "descriptor": [true, false, true],
        "callWithoutNew": "TypeError",
    });
    assert_eq!(checks, expected, "the wrapper is visible to the page");

    // The static member works when called on the wrapper.
    let cert = client
        .execute_async(
            "const done = arguments[0]; RTCPeerConnection.generateCertificate({name: 'ECDSA', namedCurve: 'P-256'})
               .then((c) => done(c instanceof RTCCertificate && c.expires > Date.now()), (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(cert, json!(true), "generateCertificate through the wrapper");

    // A getter on Object.prototype for a member the hook reads but Chromium's audio reports
    // lack: a hook that read inherited members would throw on every poll and track nothing.
    run(
        client,
        "Object.defineProperty(Object.prototype, 'frameWidth', { get() { throw new Error('page trap'); }, configurable: true });
         startCall(SavedRTCPeerConnection);",
    )
    .await;
    wait_connected(client, "vitals.state").await;
    let call_tab = client.window().await.unwrap();
    let popup = s.browser.open_popup().await;
    popup_shows_call(&popup).await;

    client.switch_to_window(call_tab).await.unwrap();
    let page = client
        .execute_async(
            "const done = arguments[0]; vitals.pcs[0].getStats().then((r) => {
               const types = new Set(); let address = false;
               r.forEach((s) => { types.add(s.type); if ('address' in s || 'port' in s) address = true; });
               done({ messages: vitals.messages, errors: vitals.pageErrors, codec: types.has('codec'),
                      certificate: types.has('certificate'), address });
             }, (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        page,
        json!({"messages": 0, "errors": 0, "codec": true, "certificate": true, "address": true}),
        "the page saw the hook's messages or errors, or its own getStats() was trimmed"
    );
    s.browser.quit().await;
}

/// `class X extends RTCPeerConnection` works, its instances are X and RTCPeerConnection, and
/// its call is tracked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subclass_works_and_is_tracked() {
    let s = setup().await;
    let client = s.browser.client();
    client.goto(&format!("{}/plain.html", s.pages)).await.unwrap();
    let checks = run(
        client,
        "class Sub extends RTCPeerConnection { constructor(c) { super(c); this.tag = 'sub'; } label() { return this.tag; } }
         window.Sub = Sub;
         const pc = new Sub();
         const out = [pc instanceof Sub, pc instanceof RTCPeerConnection, Object.getPrototypeOf(Sub) === RTCPeerConnection,
                      pc.label(), typeof pc.createOffer, pc.constructor === Sub];
         pc.close();
         startCall(Sub);
         return out;",
    )
    .await;
    assert_eq!(checks, json!([true, true, true, "sub", "function", true]));
    wait_connected(client, "vitals.pcs.every((p) => p instanceof Sub) && vitals.state").await;
    let popup = s.browser.open_popup().await;
    popup_shows_call(&popup).await;
    s.browser.quit().await;
}

/// A call made inside a srcdoc frame is tracked by the frame's own content scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_inside_srcdoc_frame_is_tracked() {
    let s = setup().await;
    let client = s.browser.client();
    client.goto(&format!("{}/srcdoc.html", s.pages)).await.unwrap();
    // frames[0] does not go through the patched contentWindow getter: only the frame's own
    // hook can have tracked this call.
    wait_connected(client, "frames[0].vitals.state").await;
    let popup = s.browser.open_popup().await;
    popup_shows_call(&popup).await;
    s.browser.quit().await;
}

/// A constructor taken from a script-made about:blank frame before its content scripts ran
/// is the wrapper too, looks native, and its call is tracked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constructor_taken_from_a_fresh_blank_frame_is_tracked() {
    let s = setup().await;
    let client = s.browser.client();
    client.goto(&format!("{}/blank.html", s.pages)).await.unwrap();
    let checks = run(
        client,
        "return [Function.prototype.toString.call(FromFrame), FromFrame.name,
                 Function.prototype.toString.call(frames[0].Function.prototype.toString)];",
    )
    .await;
    assert_eq!(
        checks,
        json!([
            "function RTCPeerConnection() { [native code] }",
            "RTCPeerConnection",
            "function toString() { [native code] }"
        ])
    );
    run(client, "startCall(FromFrame);").await;
    wait_connected(client, "vitals.state").await;
    let popup = s.browser.open_popup().await;
    popup_shows_call(&popup).await;
    s.browser.quit().await;
}

/// Opens the plain page with a call in the first tab and the popup (showing it) in a second;
/// returns the call tab's handle, with the popup tab current.
async fn call_and_popup(s: &Setup) -> (fantoccini::wd::WindowHandle, Popup<'_>) {
    let client = s.browser.client();
    client.goto(&format!("{}/plain.html", s.pages)).await.unwrap();
    run(client, "startCall(RTCPeerConnection);").await;
    wait_connected(client, "vitals.state").await;
    let call_tab = client.window().await.unwrap();
    let popup = s.browser.open_popup().await;
    popup_shows_call(&popup).await;
    (call_tab, popup)
}

/// Connections that close stop being counted: once all are closed the popup shows no call,
/// sooner than a silent hook would time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connections_end_the_call() {
    let s = setup().await;
    let client = s.browser.client();
    let (call_tab, _popup) = call_and_popup(&s).await;
    let popup_tab = client.window().await.unwrap();
    client.switch_to_window(call_tab).await.unwrap();
    run(client, "vitals.pcs.forEach((p) => p.close());").await;
    client.switch_to_window(popup_tab).await.unwrap();
    popup_shows_no_call_within(client, Duration::from_secs(8)).await;
    s.browser.quit().await;
}

/// Closing the call's tab clears its state: the popup shows no call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_tab_ends_the_call() {
    let s = setup().await;
    let client = s.browser.client();
    let (call_tab, _popup) = call_and_popup(&s).await;
    let popup_tab = client.window().await.unwrap();
    client.switch_to_window(call_tab).await.unwrap();
    client.close_window().await.unwrap();
    client.switch_to_window(popup_tab).await.unwrap();
    popup_shows_no_call_within(client, Duration::from_secs(8)).await;
    s.browser.quit().await;
}

/// Navigating the call's tab to another page clears its state: the popup shows no call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigating_away_ends_the_call() {
    let s = setup().await;
    let client = s.browser.client();
    let (call_tab, _popup) = call_and_popup(&s).await;
    let popup_tab = client.window().await.unwrap();
    client.switch_to_window(call_tab).await.unwrap();
    client.goto(&format!("{}/empty.html", s.pages)).await.unwrap();
    client.switch_to_window(popup_tab).await.unwrap();
    popup_shows_no_call_within(client, Duration::from_secs(8)).await;
    s.browser.quit().await;
}

/// Page script defining `forged(t)`: the reports of a made-up connection at time `t` (ms), so
/// two of them 1 s apart make a well-formed interval at 10 Gbit/s.
macro_rules! forged_js {
    () => {
        r#"
        const forged = (t) => [
          { type: 'outbound-rtp', id: 'O', ssrc: 1, kind: 'video', timestamp: t, bytesSent: t * 1.25e6, packetsSent: t },
          { type: 'inbound-rtp', id: 'I', ssrc: 2, kind: 'video', timestamp: t, bytesReceived: t * 1.25e6, packetsReceived: t, packetsLost: 0 },
          { type: 'transport', id: 'T', selectedCandidatePairId: 'CP' },
          { type: 'candidate-pair', id: 'CP', localCandidateId: 'L', remoteCandidateId: 'R', state: 'succeeded', nominated: true, currentRoundTripTime: 0.001 },
          { type: 'local-candidate', id: 'L', candidateType: 'host' }, { type: 'remote-candidate', id: 'R', candidateType: 'host' },
        ];
        "#
    };
}

/// The popup shows the tab's call with real figures, and still `later`: nothing near the
/// 10 Gbit/s of the page's forgeries (a loopback call is a few Mbit/s). `what` names the attack.
async fn popup_shows_real_figures(s: &Setup, later: Duration, what: &str) {
    let popup = s.browser.open_popup().await;
    let (up, down) = popup_shows_call(&popup).await;
    tokio::time::sleep(later).await;
    let up_later = popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    for kbps in [up, down, up_later] {
        assert!(kbps < 100_000.0, "{what} reached the processor: {kbps} kbps");
    }
}

/// What a hostile page throws at the extension: junk and huge window messages in the hook's
/// format (10 MB strings, deep nesting, thousands of reports, wrong types, HTML, forged
/// `closed`), well-formed forged snapshots claiming 10 Gbit/s, a forged port handshake, and an
/// attempt to steal the hook's port. None of it reaches the popup; the real call in the same
/// tab still shows with real figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_page_cannot_disturb_the_pipeline() {
    let s = setup().await;
    let client = s.browser.client();
    client.goto(&format!("{}/plain.html", s.pages)).await.unwrap();
    let stolen = run(
        client,
        concat!(
            forged_js!(),
            r#"
        const S = 'call-vitals-hook';
        const big = 'x'.repeat(10 * 1024 * 1024);
        let deep = { type: 'outbound-rtp' };
        for (let i = 0; i < 5000; i++) deep = { type: 'outbound-rtp', id: 'd', nested: deep };
        const many = Array.from({ length: 5000 }, (_, i) => ({ type: 'inbound-rtp', id: 'I' + i, bytesReceived: 1e12 }));
        const junk = [
          null, 7, 'string', [1, 2], { source: S }, { source: S, kind: {}, pc: 42 },
          { source: S, kind: 'stats', pc: 'big-id', reports: [{ type: 'outbound-rtp', id: big }] },
          { source: S, kind: 'stats', pc: big, reports: [] },
          { source: S, kind: 'stats', pc: 'many', reports: many },
          { source: S, kind: 'stats', pc: 'deep', reports: [deep] },
          { source: S, kind: 'stats', pc: 'wrong', reports: 'not an array' },
          { source: S, kind: 'stats', pc: '<img src=x onerror="window.pwned=1">', reports: [{ type: '<b>outbound-rtp</b>', id: '<script>window.pwned=1</script>' }] },
        ];
        for (let i = 0; i < 200; i++) junk.push({ source: S, kind: 'closed', pc: Math.random().toString(36).slice(2, 10) + '-' + (i % 4 + 1) });
        for (const m of junk) { try { postMessage(m, '*'); } catch (_) { /* unclonable */ } }
        // The well-formed forgeries keep coming for the whole call.
        const flood = () => {
          postMessage({ source: S, kind: 'stats', pc: 'forged', reports: forged(Date.now() - 1000) }, '*');
          postMessage({ source: S, kind: 'stats', pc: 'forged', reports: forged(Date.now()) }, '*');
          for (let i = 0; i < 4; i++) postMessage({ source: S, kind: 'closed', pc: 'x-' + i }, '*');
        };
        flood();
        setInterval(flood, 500);
        // A forged handshake: a port of the page's own offered as the hook's.
        const evil = new MessageChannel();
        document.dispatchEvent(new MessageEvent('call-vitals-port', { ports: [evil.port2] }));
        setInterval(() => {
          evil.port1.postMessage({ type: 'stats', pcs: ['evil'], json: JSON.stringify([{ pc: 'evil', reports: forged(Date.now()) }]) });
          evil.port1.postMessage({ type: 'stats', pcs: ['evil'], json: JSON.stringify([{ pc: 'evil', reports: many }]) });
        }, 500);
        // An attempt to make the hook offer its port again, to a listener of the page.
        let stolen = null;
        document.addEventListener('call-vitals-port', (e) => { if (e.ports && e.ports[0] !== evil.port2) stolen = e.ports[0]; });
        document.dispatchEvent(new Event('call-vitals-hello'));
        startCall(RTCPeerConnection);
        return stolen !== null;
        "#
        ),
    )
    .await;
    assert_eq!(stolen, json!(false), "the page got hold of the hook's port");
    wait_connected(client, "vitals.state").await;
    // Keep the flood going for a few more popup refreshes, then read the figures again.
    popup_shows_real_figures(&s, Duration::from_secs(4), "forged snapshots").await;
    let injected = run(
        client,
        "return [document.querySelectorAll('img, script:not([src])').length, typeof window.pwned];",
    )
    .await;
    assert_eq!(
        injected,
        json!([0, "undefined"]),
        "page content was rendered in the popup"
    );
    s.browser.quit().await;
}

/// A page that makes about:blank frames and offers its own port to the bridges there (at once,
/// on the frame's `call-vitals-hello`, and again later), then posts well-formed forged polls of
/// 10 Gbit/s through every port it offered: none reaches the popup, and the real call in the tab
/// still shows with real figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_offered_in_a_blank_frame_carries_nothing() {
    let s = setup().await;
    let client = s.browser.client();
    client.goto(&format!("{}/plain.html", s.pages)).await.unwrap();
    run(
        client,
        concat!(
            forged_js!(),
            r#"
        const ports = [];
        const offer = (doc) => {
          const c = new MessageChannel();
          ports.push(c.port1);
          doc.dispatchEvent(new MessageEvent('call-vitals-port', { ports: [c.port2] }));
        };
        for (let i = 0; i < 3; i++) {
          const f = document.createElement('iframe');
          document.body.appendChild(f);
          const doc = f.contentDocument;
          offer(doc);
          doc.addEventListener('call-vitals-hello', () => offer(doc), true);
          setTimeout(() => offer(doc), 200 * i);
        }
        setInterval(() => {
          for (const p of ports) {
            for (const t of [Date.now() - 1000, Date.now()]) {
              p.postMessage({ type: 'stats', pcs: ['forged'], json: JSON.stringify([{ pc: 'forged', reports: forged(t) }]) });
            }
          }
        }, 500);
        startCall(RTCPeerConnection);
        "#
        ),
    )
    .await;
    wait_connected(client, "vitals.state").await;
    popup_shows_real_figures(
        &s,
        Duration::from_secs(4),
        "forged polls through a blank frame's bridge",
    )
    .await;
    s.browser.quit().await;
}

/// A page that makes more idle connections than the hook polls (64) before its call: the idle
/// ones give way, and the call is still measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dummy_connections_do_not_crowd_out_the_call() {
    let s = setup().await;
    call_of_script_is_measured(
        &s,
        "window.dummies = Array.from({ length: 70 }, () => new RTCPeerConnection()); startCall(RTCPeerConnection);",
    )
    .await;
    s.browser.quit().await;
}

/// A page that replaces `JSON.stringify` and gives every object and array a `toJSON` before its
/// call: the hook serializes its polls with the saved native and prototype-less copies, so the
/// call is measured with its real figures (with the page's versions the popup would show no call,
/// or the `toJSON`'s 10 Tbit/s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_replaces_json_serialization_does_not_change_the_figures() {
    let s = setup().await;
    let client = s.browser.client();
    client.goto(&format!("{}/plain.html", s.pages)).await.unwrap();
    // After this script returns (WebDriver itself serializes with the page's JSON), so the call
    // tab is not scripted again: the popup, an extension page, shows what arrived.
    run(
        client,
        r#"
        setTimeout(() => {
          const fake = { type: 'outbound-rtp', id: 'O', kind: 'video', ssrc: 1, bytesSent: 1e15, packetsSent: 1e9 };
          Object.defineProperty(Object.prototype, 'toJSON', { value() { return fake; }, configurable: true, writable: true });
          Object.defineProperty(Array.prototype, 'toJSON', { value() { return [fake]; }, configurable: true, writable: true });
          JSON.stringify = () => '[]';
          startCall(RTCPeerConnection);
        }, 0);
        "#,
    )
    .await;
    popup_shows_real_figures(&s, Duration::from_secs(3), "the page's serialization").await;
    s.browser.quit().await;
}

/// Runs `script` (which starts a call) on the plain page and waits for the popup to show the
/// call; returns the call tab's handle, with the popup tab current.
async fn call_of_script_is_measured(s: &Setup, script: &str) -> fantoccini::wd::WindowHandle {
    let client = s.browser.client();
    client.goto(&format!("{}/plain.html", s.pages)).await.unwrap();
    run(client, script).await;
    wait_connected(client, "vitals.state").await;
    let call_tab = client.window().await.unwrap();
    let popup = s.browser.open_popup().await;
    popup_shows_call(&popup).await;
    call_tab
}

/// A page's index setter on `Array.prototype` receives nothing the hook makes (its tracked
/// connections, report copies, poll rounds), and the call is measured all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_array_index_setter_sees_nothing_of_the_hook() {
    let s = setup().await;
    let call_tab = call_of_script_is_measured(
        &s,
        "window.caught = [];
         const ours = (v) => v !== null && typeof v === 'object' && (Object.getPrototypeOf(v) === null || 'kit' in v || 'reports' in v);
         for (const i of ['0', '1', '2']) {
           Object.defineProperty(Array.prototype, i, { configurable: true,
             set(v) {
               if (ours(v)) window.caught.length += 1;
               Object.defineProperty(this, i, { value: v, writable: true, enumerable: true, configurable: true });
             } });
         }
         startCall(RTCPeerConnection);",
    )
    .await;
    let client = s.browser.client();
    client.switch_to_window(call_tab).await.unwrap();
    let caught = run(client, "return window.caught.length;").await;
    assert_eq!(
        caught,
        json!(0),
        "the page's Array.prototype setter received the hook's values"
    );
    s.browser.quit().await;
}

/// A data-channel-only connection (WebTorrent, P2P CDNs, fingerprinting scripts) is measured
/// locally but never uploaded as a meeting; the same page's media call is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_media_is_never_uploaded() {
    let s = setup().await;
    let client = s.browser.client();
    client.goto(&format!("{}/plain.html", s.pages)).await.unwrap();
    run(
        client,
        "(async () => {
           const a = new RTCPeerConnection(), b = new RTCPeerConnection();
           a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
           b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
           b.ondatachannel = (e) => { e.channel.onmessage = () => {}; };
           const ch = a.createDataChannel('swarm');
           ch.onopen = () => { window.dataState = 'connected'; setInterval(() => ch.send('x'.repeat(1000)), 100); };
           await a.setLocalDescription(await a.createOffer());
           await b.setRemoteDescription(a.localDescription);
           await b.setLocalDescription(await b.createAnswer());
           await a.setRemoteDescription(b.localDescription);
           window.dataPcs = [a, b];
         })();",
    )
    .await;
    wait_connected(client, "window.dataState").await;
    let call_tab = client.window().await.unwrap();
    // The hook polls the connection and the offscreen document keeps its figures (the popup
    // shows the tab's connections)...
    let popup = s.browser.open_popup().await;
    popup.wait_number("#peers", "data-count", |n| n >= 2.0).await;
    // ...for longer than the first event and a 10 s heartbeat take, and none reaches the collector.
    tokio::time::sleep(Duration::from_secs(14)).await;
    let meetings = s.collector.meetings().await;
    let participants: usize = meetings["meetings"].as_array().map_or(0, |m| {
        m.iter().map(|m| m["participants"].as_array().map_or(0, Vec::len)).sum()
    });
    assert_eq!(participants, 0, "a connection without media was uploaded: {meetings}");
    // Media starts in the same tab: now it is a call, and it is uploaded.
    client.switch_to_window(call_tab).await.unwrap();
    run(client, "startCall(RTCPeerConnection);").await;
    wait_connected(client, "vitals.state").await;
    let p = s.collector.wait_participant(|_| true).await;
    assert!(p["participant_id"].is_string(), "{p}");
    s.browser.quit().await;
}
