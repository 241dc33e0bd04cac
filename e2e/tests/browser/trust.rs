//! Browser tests of what the extension trusts: a collector that refuses the key keeps the queue until the key is fixed, and a content script's forged messages to the offscreen document and to chrome.storage are ignored.

use fantoccini::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vitals_e2e::{Browser, Collector, INGEST_KEY};

const PATIENCE: Duration = Duration::from_secs(120);

/// Runs an async script (its last argument is the callback) in the current page.
async fn run_async(client: &Client, script: &str, args: Vec<Value>) -> Value {
    client
        .execute_async(script, args)
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// The collector status the offscreen document gives the popup (from an extension page).
async fn collector_status(client: &Client) -> Value {
    run_async(
        client,
        "const done = arguments[arguments.length - 1];
         chrome.runtime.sendMessage({ type: 'get-tab', tab: null, target: 'offscreen' })
           .then((v) => done(v ? v.collector : null), () => done(null));",
        vec![],
    )
    .await
}

/// Waits until the status satisfies `pred`; returns it.
async fn wait_status(client: &Client, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let status = collector_status(client).await;
        if pred(&status) {
            return status;
        }
        assert!(start.elapsed() < PATIENCE, "collector status never {what}: {status}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn participants(collector: &Collector) -> usize {
    let meetings = collector.meetings().await;
    meetings["meetings"].as_array().map_or(0, |m| {
        m.iter().map(|m| m["participants"].as_array().map_or(0, Vec::len)).sum()
    })
}

async fn set_sync(client: &Client, values: Value) {
    run_async(
        client,
        "const [values, done] = arguments; chrome.storage.sync.set(values).then(() => done(true), (e) => done(String(e)));",
        vec![values],
    )
    .await;
}

/// The collector answers 401 to a wrong key: the events stay queued (none dropped) and the
/// popup says to check the key; once the key is fixed they are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_keeps_the_queue_until_it_is_fixed() {
    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    let popup_url = format!("chrome-extension://{}/popup.html", browser.extension_id());
    let client = browser.client();
    client.goto(&popup_url).await.unwrap();
    set_sync(client, json!({"ingest_key": "not-the-key"})).await;
    browser.open_demo(&collector.demo_url(None)).await;
    browser.open_popup().await;
    let refused = wait_status(client, "refused with events queued", |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("check the ingest key"))
            && s["queued"].as_u64() > Some(0)
    })
    .await;
    assert_eq!(refused["dropped"], json!(0), "{refused}");
    assert_eq!(refused["state"], json!("retrying"), "{refused}");
    assert_eq!(participants(&collector).await, 0);
    // Some seconds more of refusals: still queued, nothing dropped.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = collector_status(client).await;
    assert!(still["queued"].as_u64() >= refused["queued"].as_u64(), "{still}");
    assert_eq!(still["dropped"], json!(0), "{still}");
    set_sync(client, json!({"ingest_key": INGEST_KEY})).await;
    let p = collector.wait_participant(|_| true).await;
    // The first event the collector holds is the call's first, queued while refused.
    let delivered = wait_status(client, "connected", |s| s["state"] == "connected").await;
    assert_eq!(delivered["dropped"], json!(0), "{delivered}");
    assert!(p["participant_id"].is_string(), "{p}");
    browser.quit().await;
}

/// What a content script (an isolated world of the call's page, as a compromised renderer
/// would use it) sends straight to the offscreen document: a `get-report` gets no answer, a
/// `config` does not change where uploads go, and chrome.storage refuses it; the popup's same
/// question is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_messages_from_a_content_script_are_ignored() {
    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    browser.open_demo(&collector.demo_url(None)).await;
    collector.wait_participant(|_| true).await;
    browser.open_popup().await;
    let client = browser.client();
    let forged = run_async(
        client,
        "const [base, done] = arguments;
         (async () => {
           const tab = (await chrome.tabs.query({})).find((t) => String(t.url).startsWith(base + '/'));
           const [{ result }] = await chrome.scripting.executeScript({
             target: { tabId: tab.id },
             func: async () => {
               const ask = (m) => chrome.runtime.sendMessage({ ...m, target: 'offscreen' }).then((v) => v ?? null, () => null);
               const report = await ask({ type: 'get-report', tab: null });
               const view = await ask({ type: 'get-tab', tab: null });
               await ask({ type: 'config', collector_url: '', ingest_key: '', label: 'forged', sending: false, install_id: 'x' });
               let storage;
               try { await chrome.storage.sync.set({ sending: false }); storage = 'written'; } catch (e) { storage = 'refused'; }
               let read;
               try { read = JSON.stringify(await chrome.storage.local.get(null)); } catch (e) { read = 'refused'; }
               return { report, view, storage, read };
             },
           });
           const ours = await chrome.runtime.sendMessage({ type: 'get-report', tab: null, target: 'offscreen' });
           return { forged: result, ours: ours ? 'report' : null };
         })().then(done, (e) => done({ error: String(e) }));",
        vec![json!(collector.base)],
    )
    .await;
    assert!(forged.get("error").is_none(), "{forged}");
    assert_eq!(
        forged["ours"],
        json!("report"),
        "the popup's own question is answered: {forged}"
    );
    assert_eq!(forged["forged"]["report"], Value::Null, "{forged}");
    assert_eq!(forged["forged"]["view"], Value::Null, "{forged}");
    assert_eq!(forged["forged"]["storage"], json!("refused"), "{forged}");
    assert_eq!(forged["forged"]["read"], json!("refused"), "{forged}");
    // The forged config changed nothing: sending stays on and events keep arriving.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = collector_status(client).await;
    assert_ne!(status["state"], json!("off"), "{status}");
    let sent = status["sent"].as_u64().unwrap_or(0);
    wait_status(client, "sending on", |s| s["sent"].as_u64() > Some(sent)).await;
    browser.quit().await;
}
