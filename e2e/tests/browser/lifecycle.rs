//! Browser test: the extension keeps measuring a call when Chromium stops its service worker.

use fantoccini::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vitals_e2e::{cdp, Browser, Collector};

const PATIENCE: Duration = Duration::from_secs(45);

/// The extension's targets as CDP lists them: (service worker id, offscreen document id).
async fn extension_targets(client: &Client) -> (Option<String>, Option<String>, Value) {
    let targets = cdp(client, "Target.getTargets", json!({})).await;
    let find = |pred: &dyn Fn(&Value) -> bool| {
        targets["targetInfos"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| pred(t))
            .and_then(|t| t["targetId"].as_str().map(String::from))
    };
    let worker = find(&|t| t["type"] == "service_worker" && t["url"].as_str().is_some_and(|u| u.ends_with("/sw.js")));
    let offscreen = find(&|t| t["url"].as_str().is_some_and(|u| u.ends_with("/offscreen.html")));
    (worker, offscreen, targets)
}

/// The collector's `last_seen` of the demo participant, ms.
async fn last_seen(collector: &Collector) -> f64 {
    let p = collector.wait_participant(|p| p["last_seen"].is_number()).await;
    p["last_seen"].as_f64().unwrap()
}

/// Chromium stops an idle extension service worker whenever it likes; the offscreen document,
/// which holds the call's state and the upload queue, must live on, and the restarted worker
/// must go on routing the page's statistics to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_service_worker_restarts_and_the_call_is_still_measured() {
    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    browser.open_demo(&collector.demo_url(None)).await;
    let client = browser.client();
    let popup = browser.open_popup().await;
    popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;

    let (worker, offscreen, targets) = extension_targets(client).await;
    let worker = worker.unwrap_or_else(|| panic!("no service worker target in {targets}"));
    let offscreen = offscreen.unwrap_or_else(|| panic!("no offscreen document target in {targets}"));
    let closed = cdp(client, "Target.closeTarget", json!({"targetId": worker})).await;
    assert_ne!(closed["success"], json!(false), "Target.closeTarget refused: {closed}");
    let stopped_at = last_seen(&collector).await;

    // The worker's target goes away, then the next statistics from the page wake a new one
    // (CDP gives it the same target id).
    let mut seen_stopped = false;
    let start = Instant::now();
    loop {
        let (now_worker, now_offscreen, targets) = extension_targets(client).await;
        assert_eq!(
            now_offscreen.as_deref(),
            Some(offscreen.as_str()),
            "the offscreen document must survive the worker: {targets}"
        );
        match now_worker {
            None => seen_stopped = true,
            Some(_) if seen_stopped => break,
            Some(_) => {}
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the worker did not stop and start again (stopped: {seen_stopped}): {targets}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Events keep reaching the collector, and the popup keeps showing the call.
    let start = Instant::now();
    while last_seen(&collector).await < stopped_at + 3000.0 {
        assert!(
            start.elapsed() < PATIENCE,
            "no event reached the collector after the worker restarted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    client.refresh().await.expect("reload popup");
    popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    let state = popup.wait_text("#collector").await;
    assert!(state.contains("connected"), "collector line after the restart: {state}");
    browser.quit().await;
}
