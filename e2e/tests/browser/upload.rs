//! Upload tests in real headless Chromium: the collector unreachable for a while (with and without the offscreen document restarting meanwhile), every event arriving exactly once, and the offscreen document closing after the last call.
//!
//! The collector runs in-process over a real Redis. The extension sends to it through a tap: a
//! TCP forwarder that logs every byte each way and can be cut (every connection dropped, new
//! ones closed at once), which is what an unreachable collector looks like to the extension.
//! From the log the test reads every batch the extension posted and every answer it received,
//! so it checks, per participant: no sequence number was ever sent with two different contents
//! (the collector would silently drop the second), every number from 1 to the last one the
//! extension gave out (read from its stored queue) was acknowledged, and none was acknowledged
//! twice.

use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vitals_collector::store::LIVE_TTL_MS;
use vitals_collector::testing::TestRedis;
use vitals_collector::{AppState, Secret};
use vitals_e2e::tap::Tap;
use vitals_e2e::{Browser, Collector, ADMIN_TOKEN, INGEST_KEY};

/// How long the extension's side may take to react (Chromium on two busy cores is slow; a
/// retry can wait up to the 60 s backoff cap after a long outage).
const PATIENCE: Duration = Duration::from_secs(120);
/// The stored queue's key prefix (extension/src/upload_store.rs).
const STORE_PREFIX: &str = "cv-upload-v1:";

/// What the extension sent and got acknowledged, per participant and sequence number.
#[derive(Debug, Default)]
struct Ledger {
    /// Every content a (participant, seq) was sent with.
    sent: BTreeMap<String, BTreeMap<u64, Vec<Value>>>,
    /// How often each (participant, seq) was acknowledged in an answer the extension received.
    acked: BTreeMap<String, BTreeMap<u64, usize>>,
    posts: usize,
    /// Posts whose answer never got through (cut while in flight).
    unanswered: usize,
}

impl Ledger {
    fn of(tap: &Tap) -> Self {
        let mut ledger = Ledger::default();
        for (batch, answer) in tap.exchanges() {
            ledger.posts += 1;
            let participant = batch["participant_id"].as_str().expect("participant_id").to_string();
            for event in batch["events"].as_array().expect("events") {
                let seq = event["seq"].as_u64().expect("seq");
                let copies = ledger
                    .sent
                    .entry(participant.clone())
                    .or_default()
                    .entry(seq)
                    .or_default();
                if !copies.contains(event) {
                    copies.push(event.clone());
                }
            }
            match answer {
                Some((status, body)) if (200..300).contains(&status) => {
                    for seq in body["accepted"].as_array().expect("accepted") {
                        let seq = seq.as_u64().expect("accepted seq");
                        *ledger
                            .acked
                            .entry(participant.clone())
                            .or_default()
                            .entry(seq)
                            .or_default() += 1;
                    }
                }
                _ => ledger.unanswered += 1,
            }
        }
        ledger
    }

    /// Checks the participant's numbers 1..=`last_seq`: each sent with one content only, each
    /// acknowledged exactly once, and nothing beyond `last_seq`.
    fn check(&self, participant: &str, last_seq: u64) -> Result<(), String> {
        let sent = self.sent.get(participant).ok_or("nothing sent")?;
        for (seq, copies) in sent {
            if copies.len() > 1 {
                return Err(format!("seq {seq} sent with {} contents: {copies:?}", copies.len()));
            }
        }
        let want: BTreeSet<u64> = (1..=last_seq).collect();
        let sent_seqs: BTreeSet<u64> = sent.keys().copied().collect();
        if sent_seqs != want {
            return Err(format!("sent {sent_seqs:?}, the extension gave out 1..={last_seq}"));
        }
        let acked = self.acked.get(participant).cloned().unwrap_or_default();
        let acked_seqs: BTreeSet<u64> = acked.keys().copied().collect();
        if acked_seqs != want {
            return Err(format!("acknowledged {acked_seqs:?}, want 1..={last_seq}"));
        }
        match acked.iter().find(|(_, n)| **n > 1) {
            Some((seq, n)) => Err(format!("seq {seq} acknowledged {n} times")),
            None => Ok(()),
        }
    }
}

/// The extension's side, read from one of its pages (the popup opened as a tab): its stored
/// upload queue, whether the offscreen document exists, and the install id.
const READ_EXTENSION: &str = r#"
const done = arguments[arguments.length - 1];
(async () => {
  const stored = {};
  for (let i = 0; i < localStorage.length; i++) {
    const k = localStorage.key(i);
    if (k.startsWith('cv-upload-v1:')) stored[k] = localStorage.getItem(k);
  }
  const docs = await chrome.runtime.getContexts({ contextTypes: ['OFFSCREEN_DOCUMENT'] });
  const { install_id } = await chrome.storage.local.get('install_id');
  return { stored, offscreen: docs.length, install_id };
})().then(done, (e) => done({ error: String(e) }));
"#;

#[derive(Debug)]
struct ExtensionState {
    /// Session id -> its stored record.
    sessions: BTreeMap<String, Value>,
    /// (session, seq) -> the stored event.
    events: BTreeMap<(String, u64), Value>,
    offscreen: bool,
    install_id: String,
}

impl ExtensionState {
    async fn read(client: &Client) -> Self {
        let state = client
            .execute_async(READ_EXTENSION, vec![])
            .await
            .expect("read extension");
        assert!(state.get("error").is_none(), "reading the extension failed: {state}");
        let mut sessions = BTreeMap::new();
        let mut events = BTreeMap::new();
        for (key, value) in state["stored"].as_object().expect("stored") {
            let value: Value = serde_json::from_str(value.as_str().unwrap()).unwrap_or(Value::Null);
            let rest = key.strip_prefix(STORE_PREFIX).unwrap();
            if let Some(session) = rest.strip_prefix("s:") {
                sessions.insert(session.to_string(), value);
            } else if let Some((session, seq)) = rest.strip_prefix("e:").and_then(|r| r.rsplit_once(':')) {
                events.insert((session.to_string(), seq.parse().unwrap()), value);
            }
        }
        Self {
            sessions,
            events,
            offscreen: state["offscreen"].as_u64() == Some(1),
            install_id: state["install_id"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// The only session's id and its participant id.
    fn session(&self) -> (String, String) {
        assert_eq!(self.sessions.len(), 1, "one call, one session: {:?}", self.sessions);
        let session = self.sessions.keys().next().unwrap().clone();
        let participant = format!("{}-{session}", self.install_id);
        (session, participant)
    }

    fn last_seq(&self, session: &str) -> u64 {
        self.sessions
            .get(session)
            .and_then(|r| r["last_seq"].as_u64())
            .unwrap_or(0)
    }
}

/// Polls the extension's state until `pred` holds.
async fn wait_extension(client: &Client, what: &str, pred: impl Fn(&ExtensionState) -> bool) -> ExtensionState {
    let start = Instant::now();
    loop {
        let state = ExtensionState::read(client).await;
        if pred(&state) {
            return state;
        }
        assert!(start.elapsed() < PATIENCE, "{what}: never happened; last {state:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The popup's collector line: (data-state, text).
async fn collector_line(client: &Client) -> (String, String) {
    match client.find(Locator::Css("#collector")).await {
        Ok(el) => (
            el.attr("data-state").await.ok().flatten().unwrap_or_default(),
            el.text().await.unwrap_or_default(),
        ),
        Err(_) => (String::new(), String::new()),
    }
}

/// The number before `word` in the popup's collector line ("… 3 queued").
fn count_before(text: &str, word: &str) -> Option<u64> {
    let words: Vec<&str> = text.split([' ', ',', '(', ')']).filter(|w| !w.is_empty()).collect();
    words.windows(2).find(|w| w[1] == word).and_then(|w| w[0].parse().ok())
}

async fn wait_popup(client: &Client, what: &str, pred: impl Fn(&str, &str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let (state, text) = collector_line(client).await;
        if pred(&state, &text) {
            return text;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "popup {what}: never; it shows {state:?} {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The participant as the collector's admin API lists it.
async fn collector_participant(collector: &Collector, participant: &str) -> Value {
    collector.wait_participant(|p| p["participant_id"] == participant).await
}

struct Setup {
    collector: Collector,
    tap: Tap,
    browser: Browser,
    _redis: TestRedis,
}

/// Redis, the collector over it, the tap in front, Chromium sending through the tap, and the
/// demo call connected with the popup open as a tab (the current window).
async fn setup() -> (Setup, fantoccini::wd::WindowHandle) {
    let redis = TestRedis::start().await;
    let store = Arc::new(redis.store(LIVE_TTL_MS));
    let state = AppState::new(store, Secret::new(INGEST_KEY), Secret::new(ADMIN_TOKEN));
    let collector = Collector::start_with(state).await;
    let tap = Tap::start(&collector.base).await;
    let browser = Browser::start(&Collector::at(tap.base.clone())).await;
    browser.open_demo(&collector.demo_url(None)).await;
    let demo = browser.client().window().await.expect("demo window");
    browser.open_popup().await;
    let setup = Setup {
        collector,
        tap,
        browser,
        _redis: redis,
    };
    (setup, demo)
}

/// The collector has the call's first events; then it goes down until `queued` events wait in
/// the extension's stored queue and the popup says so.
async fn outage(s: &Setup, queued: usize) -> ExtensionState {
    let client = s.browser.client();
    let first = wait_extension(client, "a session stored", |e| e.sessions.len() == 1).await;
    let (_, participant) = first.session();
    collector_participant(&s.collector, &participant).await;
    wait_popup(client, "connected", |state, _| state == "connected").await;

    s.tap.cut();
    let text = wait_popup(client, "retrying with events queued", |state, text| {
        state == "retrying" && count_before(text, "queued").unwrap_or(0) >= queued as u64
    })
    .await;
    let stored = wait_extension(client, "events stored while the collector is down", |e| {
        e.events.len() >= queued
    })
    .await;
    assert!(text.contains("queued"), "{text}");
    stored
}

/// Hangs up the demo call (its button), or starts it again (its form's submit button).
const HANG_UP: &str = "document.getElementById('hangup').click()";
const RESTART_CALL: &str = "document.querySelector('#turn-form button[type=submit]').click()";

/// Runs `script` in the demo tab, then comes back to the current window (the popup).
async fn in_demo(client: &Client, demo: &fantoccini::wd::WindowHandle, script: &str) {
    let back = client.window().await.expect("current window");
    client.switch_to_window(demo.clone()).await.expect("demo tab");
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    client.switch_to_window(back).await.expect("back from the demo tab");
}

/// Closes the offscreen document as Chrome or the service worker might (from an extension page).
async fn close_offscreen(client: &Client) {
    let closed = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             chrome.offscreen.closeDocument().then(() => done('closed'), (e) => done(String(e)));",
            vec![],
        )
        .await
        .expect("close the offscreen document");
    assert_eq!(closed, json!("closed"));
}

/// The collector is back: the queue drains; the call is hung up so that no event follows, and
/// the ledger is checked against the last number the extension gave out, and against the
/// events `stored` during the outage (they arrive as they were stored).
async fn recover_and_check(s: &Setup, demo: &fantoccini::wd::WindowHandle, participant: &str, stored: &ExtensionState) {
    let client = s.browser.client();
    s.tap.restore();
    wait_popup(client, "drained", |state, text| {
        state == "connected" && count_before(text, "queued") == Some(0)
    })
    .await;
    in_demo(client, demo, HANG_UP).await;
    // Whatever the last snapshots produced drains too; then the numbering stands still.
    let state = wait_extension(client, "the queue empty after the call", |e| e.events.is_empty()).await;
    let (session, _) = state.session();
    let last_seq = state.last_seq(&session);
    let start = Instant::now();
    let ledger = loop {
        let ledger = Ledger::of(&s.tap);
        match ledger.check(participant, last_seq) {
            Ok(()) => break ledger,
            Err(e) => assert!(start.elapsed() < PATIENCE, "{e}\n{ledger:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let held = collector_participant(&s.collector, participant).await;
    assert_eq!(held["last_seq"].as_u64(), Some(last_seq), "{held}");
    assert!(
        ledger.sent.len() == 1 && ledger.sent.contains_key(participant),
        "one participant only: {:?}",
        ledger.sent.keys()
    );
    assert!(!stored.events.is_empty());
    for ((_, seq), event) in &stored.events {
        assert_eq!(&ledger.sent[participant][seq][0], event, "seq {seq} as stored");
    }
}

/// (a) The collector is unreachable for a while: events wait (the popup says retrying and how
/// many are queued, the stored queue holds them), and once it is back every event the extension
/// numbered arrives, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_after_the_collector_was_down() {
    let (s, demo) = setup().await;
    let stored = outage(&s, 2).await;
    let (_, participant) = stored.session();
    recover_and_check(&s, &demo, &participant, &stored).await;
    s.browser.quit().await;
}

/// (b) The same, with the offscreen document closed while the collector is down: the events
/// it had queued come back from storage in the next document, which goes on with the same
/// participant and numbering, and they arrive exactly as they were stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_offscreen_document_still_delivers_every_event_once() {
    let (s, demo) = setup().await;
    let client = s.browser.client();
    let before = outage(&s, 2).await;
    let (session, participant) = before.session();
    let last_before = before.last_seq(&session);

    close_offscreen(client).await;
    // The service worker makes it again at the tab's next snapshot; it restores the queue.
    let after = wait_extension(client, "the offscreen document back with the queue", |e| {
        e.offscreen && e.sessions.len() == 1 && e.last_seq(&session) > last_before
    })
    .await;
    assert_eq!(after.session().0, session, "the call's session goes on");
    for (key, event) in &before.events {
        assert_eq!(after.events.get(key), Some(event), "stored event {key:?} kept");
    }
    wait_popup(client, "the restored queue", |state, text| {
        state == "retrying" && count_before(text, "queued").unwrap_or(0) >= before.events.len() as u64
    })
    .await;

    recover_and_check(&s, &demo, &participant, &before).await;
    s.browser.quit().await;
}

/// (d) The call ends while the collector is down and the offscreen document goes (as it does
/// when idle): the popup, with no document to ask, still says how many events wait in storage;
/// the next call in the page brings the document back, which delivers them, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_in_storage_between_calls_and_the_popup_counts_them() {
    let (s, demo) = setup().await;
    let client = s.browser.client();
    let before = outage(&s, 2).await;
    let (session, participant) = before.session();
    in_demo(client, &demo, HANG_UP).await;
    let start = Instant::now();
    while client.find(Locator::Css("#no-call")).await.is_err() {
        assert!(start.elapsed() < PATIENCE, "the popup never showed that the call ended");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    close_offscreen(client).await;
    let stored = wait_extension(client, "the document gone, its queue stored", |e| !e.offscreen).await;
    assert!(stored.events.len() >= before.events.len(), "{stored:?}");
    let text = wait_popup(client, "idle with the stored events", |state, text| {
        state == "idle" && count_before(text, "queued") == Some(stored.events.len() as u64)
    })
    .await;
    assert!(text.contains("no call"), "{text}");

    // The next call (within the 30 s a session may resume) brings the document back.
    in_demo(client, &demo, RESTART_CALL).await;
    let back = wait_extension(client, "the document back with the queue", |e| e.offscreen).await;
    assert_eq!(back.session().0, session, "the call's session goes on");
    recover_and_check(&s, &demo, &participant, &stored).await;
    s.browser.quit().await;
}

/// (c) The offscreen document closes a while after the last call ends (the popup then shows no
/// call and the collector on with nothing queued, the badge is clear) and comes back for the
/// next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offscreen_document_closes_after_the_last_call_and_returns_for_the_next() {
    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    browser.open_demo(&collector.demo_url(None)).await;
    let client = browser.client();
    let demo = client.window().await.expect("demo window");
    let popup = browser.open_popup().await;
    popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    let during = wait_extension(client, "the document and a session", |e| {
        e.offscreen && e.sessions.len() == 1
    })
    .await;
    let (session, participant) = during.session();
    let held = collector_participant(&collector, &participant).await;
    let seq_before = held["last_seq"].as_u64().unwrap();

    in_demo(client, &demo, HANG_UP).await;
    let closed = wait_extension(client, "the document closed", |e| !e.offscreen).await;
    // The call's session is kept (a new call in the same page within seconds of the next
    // start goes on with it), its queue is empty.
    assert!(closed.events.is_empty(), "{closed:?}");
    popup.wait_text("#no-call").await;
    wait_popup(client, "idle, nothing queued", |state, text| {
        state == "idle" && count_before(text, "queued") == Some(0)
    })
    .await;
    let badge = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             chrome.tabs.query({ url: '*://127.0.0.1/*' })
               .then((tabs) => chrome.action.getBadgeText({ tabId: tabs[0].id }))
               .then(done, (e) => done(String(e)));",
            vec![],
        )
        .await
        .expect("badge");
    assert_eq!(badge, json!(""), "no badge without a call");

    in_demo(client, &demo, RESTART_CALL).await;
    wait_extension(client, "the document back", |e| e.offscreen).await;
    popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    // The new call's events reach the collector, under the session that went on.
    collector
        .wait_participant(|p| p["participant_id"] == participant && p["last_seq"].as_u64() > Some(seq_before))
        .await;
    let now = ExtensionState::read(client).await;
    assert_eq!(now.session().0, session);
    browser.quit().await;
}
