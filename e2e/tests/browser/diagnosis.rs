//! The diagnosis under real conditions, in real headless Chromium with the extension: each condition is a call in a window of its own (a meeting of its own), all side by side in one browser, beside a clean call.
//!
//! Every call is two `RTCPeerConnection`s of one page (A sends, B receives and plays). A
//! condition is made the way it happens for real: by the forwarding proxy in front of coturn
//! (delay, loss, a rate limit, a block), by TURN over TCP, or by the page's own controls
//! (`setParameters` maxBitrate, a canvas track that stops drawing, `track.enabled = false`,
//! `replaceTrack(null)`). For each: the finding's id is in the tab's view within 10 s of the
//! condition starting and the pinned popup shows it (`data-finding`), the collector raises an
//! alert of that id, and both are resolved within 20 s of the condition ending; under loss the
//! played audio also shows `audio-concealment` while the loss lasts. The clean call
//! runs five minutes and raises no warning or critical finding at all, in the popup's data or at
//! the collector. Its uploads go through a tap that weighs them (bytes a minute with headers).
//!
//! CPU limitation has a test of its own, in a browser started with WebRTC's overuse simulation
//! (a field trial): real load on these cores makes Chromium report a bandwidth limitation, never
//! a CPU one.

use fantoccini::wd::WindowHandle;
use fantoccini::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vitals_e2e::proxy::{Impairment, Proxy};
use vitals_e2e::tap::{Tap, WireBytes};
use vitals_e2e::{Browser, Collector, Turn};

/// Page-side helpers: one call with the media asked for, and the controls that make conditions.
const DIAG_JS: &str = r#"
window.diag = window.diag || (() => {
  const d = { drawing: true };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  d.start = async (cfg, video) => {
    const tracks = (await navigator.mediaDevices.getUserMedia({ audio: true })).getAudioTracks();
    if (video === 'camera' || video === 'camera640') {
      const size = video === 'camera' ? { width: 320, height: 240 } : { width: 640, height: 480 };
      const cam = await navigator.mediaDevices.getUserMedia({ video: { ...size, frameRate: 15 } });
      tracks.push(cam.getVideoTracks()[0]);
    } else if (video === 'canvas') {
      const canvas = document.createElement('canvas');
      canvas.width = 320; canvas.height = 240;
      document.body.append(canvas);
      const ctx = canvas.getContext('2d');
      let n = 0;
      setInterval(() => {
        if (!d.drawing) return;
        n += 1;
        ctx.fillStyle = `hsl(${(n * 7) % 360}, 80%, 50%)`;
        ctx.fillRect(0, 0, 320, 240);
        ctx.fillStyle = '#000';
        ctx.fillText(String(n), 10, 20);
      }, 66);
      tracks.push(canvas.captureStream(15).getVideoTracks()[0]);
    }
    const a = new RTCPeerConnection(cfg), b = new RTCPeerConnection(cfg);
    Object.assign(d, { a, b, tracks });
    a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
    b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
    b.ontrack = (e) => {
      const el = document.createElement(e.track.kind);
      el.autoplay = true;
      el.srcObject = new MediaStream([e.track]);
      document.body.append(el);
    };
    const stream = new MediaStream(tracks);
    d.senders = tracks.map((t) => a.addTrack(t, stream));
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    const t0 = Date.now();
    while (!(a.connectionState === 'connected' && b.connectionState === 'connected')) {
      if (a.connectionState === 'failed' || b.connectionState === 'failed') throw new Error('the call failed');
      if (Date.now() - t0 > 30000) throw new Error('the call did not connect');
      await sleep(50);
    }
    return true;
  };
  const sender = (kind) => d.senders.find((s) => d.tracks.some((t) => t.kind === kind && (s.track === t || s.original === t)));
  d.capVideo = async (bps) => {
    const s = sender('video');
    const p = s.getParameters();
    if (bps) p.encodings[0].maxBitrate = bps; else delete p.encodings[0].maxBitrate;
    await s.setParameters(p);
    return true;
  };
  d.draw = (on) => { d.drawing = on; return true; };
  d.mute = (on) => { d.tracks.filter((t) => t.kind === 'audio').forEach((t) => { t.enabled = !on; }); return true; };
  d.send = async (kind, on) => {
    const s = sender(kind);
    if (!on) { s.original = s.track; await s.replaceTrack(null); } else { await s.replaceTrack(s.original); }
    return true;
  };
  return d;
})();
return true;
"#;

/// How a condition is made and taken away.
enum Control {
    /// The call's proxy applies this impairment.
    Proxy(Impairment),
    /// The page runs this (with `on` = true to start, false to end).
    Page(&'static str),
    /// The call has it from the start (TURN over TCP): it ends when the call does.
    Always,
}

struct Condition {
    /// The page path and the meeting's name.
    name: &'static str,
    finding: &'static str,
    video: &'static str,
    /// Relayed through its own proxy over this transport, or a direct call.
    relay: Option<&'static str>,
    control: Control,
    /// How long the condition lasts; `None`: until every check of its start is done.
    lasts: Option<Duration>,
    /// Other findings the condition must also raise while it lasts.
    also: &'static [&'static str],
}

fn conditions() -> Vec<Condition> {
    let impair = |i: Impairment| Control::Proxy(i);
    vec![
        Condition {
            name: "latency",
            finding: "high-latency",
            video: "none",
            relay: Some("udp"),
            control: impair(Impairment {
                delay_ms: 100.0,
                ..Impairment::default()
            }),
            lasts: None,
            also: &[],
        },
        Condition {
            name: "loss",
            // B plays the audio it receives, so the lost packets are concealed.
            finding: "packet-loss",
            video: "none",
            relay: Some("udp"),
            control: impair(Impairment {
                loss_to_server: 0.1,
                loss_to_client: 0.1,
                ..Impairment::default()
            }),
            lasts: None,
            also: &["audio-concealment"],
        },
        Condition {
            name: "rate",
            finding: "bandwidth-limited",
            video: "camera",
            relay: Some("udp"),
            control: impair(Impairment {
                rate_kbps: Some(120.0),
                queue_ms: 200.0,
                ..Impairment::default()
            }),
            lasts: None,
            also: &[],
        },
        Condition {
            name: "blocked",
            finding: "connection-unstable",
            video: "none",
            relay: Some("udp"),
            control: impair(Impairment {
                loss_to_server: 1.0,
                loss_to_client: 1.0,
                ..Impairment::default()
            }),
            lasts: Some(Duration::from_secs(10)),
            also: &[],
        },
        Condition {
            name: "tcp",
            finding: "relay-tcp",
            video: "none",
            relay: Some("tcp"),
            control: Control::Always,
            lasts: None,
            also: &[],
        },
        Condition {
            name: "capped",
            finding: "app-capped",
            video: "camera640",
            relay: None,
            control: Control::Page("return diag.capVideo(arguments[0] ? 60000 : null)"),
            lasts: None,
            also: &[],
        },
        Condition {
            name: "frozen",
            finding: "video-frozen",
            video: "canvas",
            relay: None,
            control: Control::Page("return diag.draw(!arguments[0])"),
            lasts: None,
            also: &[],
        },
        Condition {
            name: "muted",
            finding: "mic-silent",
            video: "none",
            relay: None,
            control: Control::Page("return diag.mute(arguments[0])"),
            lasts: None,
            also: &[],
        },
        Condition {
            name: "nothing",
            finding: "no-media-received",
            video: "none",
            relay: None,
            control: Control::Page("return diag.send('audio', !arguments[0])"),
            lasts: None,
            also: &[],
        },
    ]
}

/// A call under test: its window, its tab, its proxy.
struct Call {
    window: WindowHandle,
    tab: i64,
    meeting: String,
    proxy: Option<Proxy>,
}

fn ice_config(proxy: Option<&Proxy>, transport: &str) -> Value {
    match proxy {
        Some(p) => json!({
            "iceServers": [{
                "urls": format!("turn:127.0.0.1:{}?transport={transport}", p.port),
                "username": Turn::USER,
                "credential": Turn::PASSWORD,
            }],
            "iceTransportPolicy": "relay",
        }),
        None => json!({}),
    }
}

/// Opens `name`'s page in a new window and starts its call.
async fn open_call(client: &Client, collector: &Collector, name: &str, video: &str, cfg: Value) -> WindowHandle {
    let window = client.new_window(false).await.expect("new window").handle;
    client.switch_to_window(window.clone()).await.unwrap();
    client.goto(&format!("{}/diag/{name}", collector.base)).await.unwrap();
    client.execute(DIAG_JS, vec![]).await.expect("install the helpers");
    client
        .execute("return diag.start(arguments[0], arguments[1])", vec![cfg, json!(video)])
        .await
        .unwrap_or_else(|e| panic!("call {name}: {e}"));
    window
}

/// The extension's id of the tab whose URL ends with `/diag/<name>`, asked from an extension page.
async fn tab_ids(client: &Client) -> Vec<(i64, String)> {
    let tabs = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             chrome.tabs.query({}).then((tabs) => done(tabs.map((t) => [t.id, t.url || ''])));",
            vec![],
        )
        .await
        .expect("tabs");
    tabs.as_array()
        .unwrap()
        .iter()
        .map(|t| (t[0].as_i64().unwrap(), t[1].as_str().unwrap().to_owned()))
        .collect()
}

/// The active findings of each tab, as the offscreen document answers the popup (`get-tab`),
/// read from an extension page in one script: (id, severity) per tab, in `tabs` order.
async fn findings_of(client: &Client, tabs: &[i64]) -> Vec<Vec<(String, String)>> {
    let views = client
        .execute_async(
            "const [tabs, done] = arguments;
             Promise.all(tabs.map((tab) => chrome.runtime.sendMessage({ type: 'get-tab', tab, target: 'offscreen' })
               .then((v) => ((v && v.metrics && v.metrics.findings) || []).map((f) => [f.id, f.severity]))
               .catch(() => [])))
               .then(done);",
            vec![json!(tabs)],
        )
        .await
        .expect("tab views");
    views
        .as_array()
        .unwrap()
        .iter()
        .map(|list| {
            list.as_array()
                .unwrap()
                .iter()
                .map(|f| (f[0].as_str().unwrap().to_owned(), f[1].as_str().unwrap().to_owned()))
                .collect()
        })
        .collect()
}

/// What the detectors of sending read, per connection of `tab` (printed when a finding is missing).
async fn sending_figures(client: &Client, tab: i64) -> Value {
    client
        .execute_async(
            "const [tab, done] = arguments;
             chrome.runtime.sendMessage({ type: 'get-tab', tab, target: 'offscreen' }).then((v) => done(
               ((v && v.metrics && v.metrics.peers) || []).map((p) => ({ pc: p.pc, estimate: p.available_out_kbps,
                 target: p.target_kbps, up_video: p.upload_video_kbps, loss_out: p.loss_out_pct,
                 video_out: p.video_out && { height: p.video_out.height, captured: p.video_out.captured_height,
                   limited: p.video_out.limited, reason: p.video_out.quality_limitation, layers: p.video_out.layers } }))),
               () => done(null));",
            vec![json!(tab)],
        )
        .await
        .unwrap_or(Value::Null)
}

/// Whether the popup pinned to `tab` shows finding `id` (waits up to 3 s for it to render).
async fn popup_shows(client: &Client, extension_id: &str, tab: i64, id: &str) -> bool {
    client
        .goto(&format!("chrome-extension://{extension_id}/popup.html?tab={tab}"))
        .await
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let found = client
            .execute(
                "return !!document.querySelector(`[data-finding=\"${arguments[0]}\"]`);",
                vec![json!(id)],
            )
            .await
            .unwrap_or(Value::Bool(false));
        if found == json!(true) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn alerts(collector: &Collector, meeting: &str) -> Vec<(String, String, String)> {
    let meeting: String = url::form_urlencoded::byte_serialize(meeting.as_bytes()).collect();
    let answer = reqwest::Client::new()
        .get(format!("{}/api/v1/alerts?since=0&meeting={meeting}", collector.base))
        .bearer_auth(vitals_e2e::ADMIN_TOKEN)
        .send()
        .await
        .expect("alerts")
        .json::<Value>()
        .await
        .expect("alerts JSON");
    answer["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (s("type"), s("state"), s("severity"))
        })
        .collect()
}

async fn switch(client: &Client, control: &Control, proxy: Option<&Proxy>, window: &WindowHandle, on: bool) {
    match control {
        Control::Proxy(impairment) => {
            let proxy = proxy.expect("a proxied call");
            proxy.set_impairment(if on { *impairment } else { Impairment::default() });
        }
        Control::Page(script) => {
            client.switch_to_window(window.clone()).await.unwrap();
            client.execute(script, vec![json!(on)]).await.expect("page control");
        }
        Control::Always => {}
    }
}

/// What the test has seen of each condition so far, and of the clean call.
struct Tracker {
    raised_after: Vec<Option<Duration>>,
    /// When each condition ended.
    ended_at: Vec<Option<Instant>>,
    /// How long after its end each finding was gone.
    cleared_after: Vec<Option<Duration>>,
    /// The `also` findings each condition showed while it lasted.
    also_seen: Vec<Vec<String>>,
    /// Warning or critical findings the clean call (the first tab) ever had.
    clean_findings: Vec<(String, String)>,
    /// When the conditions started.
    started: Instant,
}

impl Tracker {
    fn note_clean(&mut self, views: &[Vec<(String, String)>]) {
        for f in &views[0] {
            if f.1 != "info" && !self.clean_findings.contains(f) {
                self.clean_findings.push(f.clone());
            }
        }
    }

    /// Reads every tab's findings (from the watcher page), notes raises and clears, and ends the
    /// conditions whose time is up.
    async fn observe(
        &mut self,
        client: &Client,
        tabs: &[i64],
        calls: &[Call],
        conditions: &[Condition],
        watcher: &WindowHandle,
    ) {
        client.switch_to_window(watcher.clone()).await.unwrap();
        let views = findings_of(client, tabs).await;
        self.note_clean(&views);
        for (i, c) in conditions.iter().enumerate() {
            let has = views[i + 1].iter().any(|f| f.0 == c.finding);
            if self.raised_after[i].is_none() && has && self.ended_at[i].is_none() {
                self.raised_after[i] = Some(self.started.elapsed());
            }
            if self.ended_at[i].is_none() {
                for f in &views[i + 1] {
                    if c.also.contains(&f.0.as_str()) && !self.also_seen[i].contains(&f.0) {
                        self.also_seen[i].push(f.0.clone());
                    }
                }
            }
            if let (Some(end), None, false) = (self.ended_at[i], self.cleared_after[i], has) {
                self.cleared_after[i] = Some(end.elapsed());
            }
        }
        for (i, (call, c)) in calls.iter().zip(conditions).enumerate() {
            if self.ended_at[i].is_none() && c.lasts.is_some_and(|d| self.started.elapsed() >= d) {
                switch(client, &c.control, call.proxy.as_ref(), &call.window, false).await;
                self.ended_at[i] = Some(Instant::now());
            }
        }
        client.switch_to_window(watcher.clone()).await.unwrap();
    }
}

/// The clean call's uploads are weighed from this long after it started to its end.
const UPLOAD_SETTLE: Duration = Duration::from_secs(30);
/// Issue 11's target for one participant's upload, request headers included.
const UPLOAD_TARGET_PER_MINUTE: usize = 4096;

/// Everything the participants of `meeting` uploaded so far.
fn uploads_of(tap: &Tap, meeting: &str) -> WireBytes {
    let mut sum = WireBytes::default();
    for ((m, _), bytes) in tap.ingest_bytes() {
        if m == meeting {
            sum.requests += bytes.requests;
            sum.up += bytes.up;
            sum.down += bytes.down;
        }
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_condition_is_diagnosed_reaches_the_collector_and_resolves_and_a_clean_call_stays_clean() {
    let turn = Turn::start();
    let collector = Collector::start().await;
    // The extension uploads through a tap, which weighs each participant's requests.
    let tap = Tap::start(&collector.base).await;
    let browser = Browser::start(&Collector::at(tap.base.clone())).await;
    let client = browser.client();
    let conditions = conditions();

    // The calls, each in its window; the clean one first (it runs longest).
    let clean_started = Instant::now();
    let clean_window = open_call(client, &collector, "clean", "camera", json!({})).await;
    let mut calls = Vec::new();
    for (i, c) in conditions.iter().enumerate() {
        let proxy = match c.relay {
            Some(_) => Some(Proxy::start(turn.port, Impairment::default(), 7 + i as u64).await),
            None => None,
        };
        let cfg = ice_config(proxy.as_ref(), c.relay.unwrap_or("udp"));
        let window = open_call(client, &collector, c.name, c.video, cfg).await;
        calls.push(Call {
            window,
            tab: 0,
            meeting: collector.meeting_id(&format!("/diag/{}", c.name)),
            proxy,
        });
    }
    // One extension page reads every tab's view; it also hosts the pinned popups.
    let watcher = client.new_window(false).await.unwrap().handle;
    client.switch_to_window(watcher.clone()).await.unwrap();
    client
        .goto(&format!("chrome-extension://{}/popup.html", browser.extension_id()))
        .await
        .unwrap();
    let tabs = tab_ids(client).await;
    let tab_of = |name: &str| {
        tabs.iter()
            .find(|(_, url)| url.ends_with(&format!("/diag/{name}")))
            .unwrap_or_else(|| panic!("no tab for {name}: {tabs:?}"))
            .0
    };
    let clean_tab = tab_of("clean");
    for (call, c) in calls.iter_mut().zip(&conditions) {
        call.tab = tab_of(c.name);
    }
    let all_tabs: Vec<i64> = std::iter::once(clean_tab).chain(calls.iter().map(|c| c.tab)).collect();
    let mut t = Tracker {
        raised_after: vec![None; conditions.len()],
        ended_at: vec![None; conditions.len()],
        cleared_after: vec![None; conditions.len()],
        also_seen: vec![Vec::new(); conditions.len()],
        clean_findings: Vec::new(),
        started: Instant::now(),
    };
    let mut failures = Vec::new();

    // Settle, then no condition's finding before its condition (TURN over TCP has it from the
    // start: it is measured from now).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let views = findings_of(client, &all_tabs).await;
    t.note_clean(&views);
    for (i, c) in conditions.iter().enumerate() {
        if !matches!(c.control, Control::Always) && views[i + 1].iter().any(|f| f.0 == c.finding) {
            failures.push(format!("{}: {} before the condition", c.name, c.finding));
        }
    }

    // Start every condition, and wait for each finding (10 s each).
    t.started = Instant::now();
    for (call, c) in calls.iter().zip(&conditions) {
        switch(client, &c.control, call.proxy.as_ref(), &call.window, true).await;
    }
    client.switch_to_window(watcher.clone()).await.unwrap();
    while t.started.elapsed() < Duration::from_secs(12) && t.raised_after.iter().any(Option::is_none) {
        t.observe(client, &all_tabs, &calls, &conditions, &watcher).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (i, (call, c)) in calls.iter().zip(&conditions).enumerate() {
        println!("{}: {} raised after {:?}", c.name, c.finding, t.raised_after[i]);
        if t.raised_after[i].is_none() {
            println!(
                "{}: what the tab shows: {}",
                c.name,
                sending_figures(client, call.tab).await
            );
        }
        match t.raised_after[i] {
            Some(d) if d <= Duration::from_secs(10) => {}
            other => failures.push(format!(
                "{}: {} raised after {other:?}, expected within 10 s",
                c.name, c.finding
            )),
        }
    }
    // The pinned popup of each shows it, and the collector has the alert.
    for (i, (call, c)) in calls.iter().zip(&conditions).enumerate() {
        t.observe(client, &all_tabs, &calls, &conditions, &watcher).await;
        if t.ended_at[i].is_some() {
            continue; // over already: its finding may be gone
        }
        if !popup_shows(client, browser.extension_id(), call.tab, c.finding).await {
            failures.push(format!("{}: the popup does not show {}", c.name, c.finding));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for (call, c) in calls.iter().zip(&conditions) {
        loop {
            t.observe(client, &all_tabs, &calls, &conditions, &watcher).await;
            let seen = alerts(&collector, &call.meeting).await;
            if seen.iter().any(|a| a.0 == c.finding && a.1 == "raised") {
                break;
            }
            if Instant::now() > deadline {
                failures.push(format!("{}: no {} alert at the collector: {seen:?}", c.name, c.finding));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // End every other condition (TURN over TCP: the call hangs up), and wait for the
    // resolutions (20 s from each condition's end).
    for (i, (call, c)) in calls.iter().zip(&conditions).enumerate() {
        if t.ended_at[i].is_some() {
            continue;
        }
        switch(client, &c.control, call.proxy.as_ref(), &call.window, false).await;
        if matches!(c.control, Control::Always) {
            client.switch_to_window(call.window.clone()).await.unwrap();
            client
                .execute("diag.a.close(); diag.b.close(); return true;", vec![])
                .await
                .unwrap();
        }
        t.ended_at[i] = Some(Instant::now());
    }
    let last_end = t.ended_at.iter().flatten().max().copied().unwrap();
    while last_end.elapsed() < Duration::from_secs(22) && t.cleared_after.iter().any(Option::is_none) {
        t.observe(client, &all_tabs, &calls, &conditions, &watcher).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (i, c) in conditions.iter().enumerate() {
        for also in c.also {
            if !t.also_seen[i].iter().any(|f| f == also) {
                failures.push(format!("{}: {also} never shown while the condition lasted", c.name));
            }
        }
        println!("{}: {} cleared after {:?}", c.name, c.finding, t.cleared_after[i]);
        match t.cleared_after[i] {
            Some(d) if d <= Duration::from_secs(20) => {}
            other => failures.push(format!(
                "{}: {} cleared after {other:?}, expected within 20 s",
                c.name, c.finding
            )),
        }
    }
    for (i, (call, c)) in calls.iter().zip(&conditions).enumerate() {
        let deadline = t.ended_at[i].unwrap() + Duration::from_secs(25);
        loop {
            let seen = alerts(&collector, &call.meeting).await;
            if seen.iter().any(|a| a.0 == c.finding && a.1 == "resolved") {
                break;
            }
            if Instant::now() > deadline {
                failures.push(format!(
                    "{}: {} not resolved at the collector: {seen:?}",
                    c.name, c.finding
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // The condition calls hang up (less load on the two cores); the clean call goes on to five
    // minutes: never a warning or critical finding.
    for call in &calls {
        client.switch_to_window(call.window.clone()).await.unwrap();
        let _ = client
            .execute("diag.a.close(); diag.b.close(); return true;", vec![])
            .await;
    }
    client.switch_to_window(watcher.clone()).await.unwrap();
    // VITALS_DIAG_CLEAN_SECS shortens the clean call when working on this test (300 s otherwise).
    let clean_secs = std::env::var("VITALS_DIAG_CLEAN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let clean_meeting = collector.meeting_id("/diag/clean");
    let mut weighed_from: Option<(Instant, WireBytes)> = None;
    while clean_started.elapsed() < Duration::from_secs(clean_secs) {
        let views = findings_of(client, &all_tabs[..1]).await;
        t.note_clean(&views);
        if weighed_from.is_none() && clean_started.elapsed() > UPLOAD_SETTLE {
            weighed_from = Some((Instant::now(), uploads_of(&tap, &clean_meeting)));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let _ = clean_window;
    match weighed_from {
        Some((since, before)) => {
            let now = uploads_of(&tap, &clean_meeting);
            let minutes = since.elapsed().as_secs_f64() / 60.0;
            let per_minute = |n: usize, then: usize| (n - then) as f64 / minutes;
            let up = per_minute(now.up, before.up);
            println!(
                "clean call's uploads over {minutes:.1} min: {up:.0} B/min with headers in {:.1} requests/min \
                 (answers {:.0} B/min); target {UPLOAD_TARGET_PER_MINUTE} B/min",
                per_minute(now.requests, before.requests),
                per_minute(now.down, before.down),
            );
            if now.requests == before.requests {
                failures.push("the clean call uploaded nothing".to_string());
            }
        }
        None => failures.push(format!(
            "the clean call was too short to weigh its uploads ({clean_secs} s)"
        )),
    }
    let clean_alerts = alerts(&collector, &clean_meeting).await;
    println!(
        "clean call ({clean_secs} s): findings {:?}, collector alerts {clean_alerts:?}",
        t.clean_findings
    );
    if !t.clean_findings.is_empty() {
        failures.push(format!("the clean call had findings {:?}", t.clean_findings));
    }
    if clean_alerts.iter().any(|a| a.2 != "info") {
        failures.push(format!("the clean call raised alerts {clean_alerts:?}"));
    }
    browser.quit().await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// WebRTC's own overuse simulation (a field trial of Chromium's WebRTC: the encoder's CPU
/// overuse detector reads a forced usage in these periods, normal-overuse-underuse ms, from the
/// encoder's start, then again): Chromium then adapts the sent video and reports the
/// `qualityLimitationReason` "cpu" itself, which real load on these two cores never made it do.
const OVERUSE: (u64, u64, u64) = (12_000, 9_000, 60_000);

/// CPU limitation, in a browser of its own (the field trial is for the whole browser). The
/// condition is what Chromium reports: from the first `qualityLimitationReason` "cpu" (the
/// detector's second check in the overuse, some 9 s in) to the first report without it (the
/// encoder is adapted back up some 20 s after the overuse, in WebRTC's quick ramp-up). Within
/// 10 s of its start the tab and the pinned popup show `cpu-limited`, within 20 s of its end it
/// is resolved, the collector has both, nothing before it, and it is never taken for
/// `bandwidth-limited` or `app-capped`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limited_encoder_is_diagnosed_and_resolves() {
    let collector = Collector::start().await;
    let trial = format!(
        "--force-fieldtrials=WebRTC-ForceSimulatedOveruseIntervalMs/{}-{}-{}/",
        OVERUSE.0, OVERUSE.1, OVERUSE.2
    );
    let browser = Browser::start_with_flags(&collector, &[&trial]).await;
    let client = browser.client();
    let _call = open_call(client, &collector, "cpu", "camera640", json!({})).await;
    let connected = Instant::now();
    let watcher = client.new_window(false).await.unwrap().handle;
    client.switch_to_window(watcher).await.unwrap();
    client
        .goto(&format!("chrome-extension://{}/popup.html", browser.extension_id()))
        .await
        .unwrap();
    let tab = tab_ids(client)
        .await
        .into_iter()
        .find(|(_, url)| url.ends_with("/diag/cpu"))
        .expect("the call's tab")
        .0;
    let meeting = collector.meeting_id("/diag/cpu");
    let overuse_starts = Duration::from_millis(OVERUSE.0);
    let overuse_ends = Duration::from_millis(OVERUSE.0 + OVERUSE.1);
    let (mut reported, mut ended, mut raised, mut cleared) = (None, None, None, None);
    let mut failures = Vec::new();
    while connected.elapsed() < overuse_ends + Duration::from_secs(60) {
        let at = connected.elapsed();
        let figures = sending_figures(client, tab).await;
        let reason = figures[0]["video_out"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let findings = findings_of(client, &[tab]).await.remove(0);
        let cpu = findings.iter().any(|f| f.0 == "cpu-limited");
        println!(
            "{:5.1} s: reason {reason:?}, height {}, findings {findings:?}",
            at.as_secs_f64(),
            figures[0]["video_out"]["height"]
        );
        // The sent video held back by the processor is not the network's doing nor the app's.
        if findings
            .iter()
            .any(|f| f.0 == "bandwidth-limited" || f.0 == "app-capped")
        {
            failures.push(format!("{at:?}: the limitation taken for another: {findings:?}"));
        }
        if reason == "cpu" && reported.is_none() {
            reported = Some(at);
        }
        if reason != "cpu" && reported.is_some() && ended.is_none() {
            ended = Some(at);
        }
        if cpu && raised.is_none() {
            raised = Some(at);
            if at < overuse_starts {
                failures.push(format!(
                    "cpu-limited at {at:?}, before the overuse at {overuse_starts:?}"
                ));
            }
            if !popup_shows(client, browser.extension_id(), tab, "cpu-limited").await {
                failures.push("the popup does not show cpu-limited".to_string());
            }
        }
        if raised.is_some() && !cpu && cleared.is_none() {
            cleared = Some(at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "cpu: Chromium reported cpu from {reported:?} to {ended:?}, the finding from {raised:?} to {cleared:?} \
         (simulated overuse from {overuse_starts:?} to {overuse_ends:?} after the call connected)"
    );
    match (reported, raised) {
        (Some(reported), _) if reported < overuse_starts => {
            failures.push(format!("Chromium reported cpu at {reported:?}, before the overuse"))
        }
        (Some(reported), Some(raised)) if raised <= reported + Duration::from_secs(10) => {}
        other => failures.push(format!(
            "cpu-limited not raised within 10 s of Chromium reporting cpu: {other:?}"
        )),
    }
    match (ended, cleared) {
        (Some(ended), Some(cleared)) if cleared <= ended + Duration::from_secs(20) => {}
        other => failures.push(format!(
            "cpu-limited not resolved within 20 s of the limitation ending: {other:?}"
        )),
    }
    // The resolution is an urgent event: it reaches the collector moments after the tab has it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = alerts(&collector, &meeting).await;
        let has = |state: &str| seen.iter().any(|a| a.0 == "cpu-limited" && a.1 == state);
        if has("raised") && has("resolved") {
            break;
        }
        if Instant::now() > deadline {
            failures.push(format!("the collector lacks cpu-limited raised and resolved: {seen:?}"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    browser.quit().await;
    assert!(failures.is_empty(), "{failures:#?}");
}
