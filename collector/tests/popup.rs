//! Popup and toolbar badge tests in real headless Chromium: loss, jitter, connections, sparklines, badge.

// Each test binary uses a part of the shared harness.
#[allow(dead_code)]
mod harness;

use fantoccini::{Client, Locator};
use harness::{Browser, Collector, Turn};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(45);

/// Run in an extension page: the badge text and colour of tab `arguments[0]`, or of the demo
/// tab (the one on 127.0.0.1) when it is null, and the popup's own tab's badge text.
const READ_BADGE: &str = r#"
const [wanted, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  let tabId = wanted;
  if (tabId === null) {
    const tabs = await chrome.tabs.query({ url: '*://127.0.0.1/*' });
    if (tabs.length === 0) return { error: 'no demo tab' };
    tabId = tabs[0].id;
  }
  const own = await chrome.tabs.getCurrent();
  return {
    tab: tabId,
    text: await chrome.action.getBadgeText({ tabId }),
    color: await chrome.action.getBadgeBackgroundColor({ tabId }),
    own_text: await chrome.action.getBadgeText({ tabId: own.id }),
  };
})().then(done, (e) => done({ error: String(e) }));
"#;

async fn read_badge(client: &Client, tab: Option<i64>) -> Value {
    client
        .execute_async(READ_BADGE, vec![json!(tab)])
        .await
        .expect("badge script")
}

/// Polls the badge until `pred` holds; returns the last reading.
async fn wait_badge(client: &Client, tab: Option<i64>, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let badge = read_badge(client, tab).await;
        if pred(&badge) {
            return badge;
        }
        assert!(start.elapsed() < PATIENCE, "badge never matched; last {badge}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn count(client: &Client, css: &str) -> usize {
    client.find_all(Locator::Css(css)).await.map(|v| v.len()).unwrap_or(0)
}

/// The demo call (two connections in one tab, direct): the popup shows loss and jitter, both
/// connections with their own figures and no relay tag, and sparklines that fill up; the
/// toolbar badge shows the quality on the demo tab, nothing on the popup's own tab, and clears
/// when the demo tab navigates away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popup_details_sparklines_and_badge_follow_the_call() {
    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    browser.open_demo(&collector.demo_url(None)).await;
    let client = browser.client();
    let demo_window = client.window().await.expect("demo window");
    let popup = browser.open_popup().await;

    let loss = popup.wait_number("#loss", "data-pct", |v| v >= 0.0).await;
    assert!(loss < 5.0, "a loopback call loses almost nothing, got {loss} %");
    let jitter = popup.wait_number("#jitter", "data-ms", |v| v >= 0.0).await;
    assert!(jitter < 100.0, "loopback jitter should be small, got {jitter} ms");

    popup.wait_number("#peers", "data-count", |v| v == 2.0).await;
    assert_eq!(count(client, "#peers .peer").await, 2, "one row per connection");
    assert_eq!(
        count(client, "#peers .relay-tag").await,
        0,
        "a direct call has no relay tag"
    );
    // Expanding the list shows each connection's own figures (the demo sends one way: one
    // connection uploads, the other downloads).
    client
        .find(Locator::Css("#peers summary"))
        .await
        .expect("peers summary")
        .click()
        .await
        .expect("expand peers");
    for row in client.find_all(Locator::Css("#peers .peer")).await.unwrap() {
        let text = row.text().await.unwrap_or_default();
        assert!(text.contains("RTT"), "an expanded row shows its figures: {text:?}");
    }
    popup
        .wait_number("#peers .peer-up[data-kbps]", "data-kbps", |v| v > 0.0)
        .await;
    popup
        .wait_number("#peers .peer-down[data-kbps]", "data-kbps", |v| v > 0.0)
        .await;
    popup
        .wait_number("#peers .peer-rtt[data-ms]", "data-ms", |v| v >= 0.0)
        .await;

    popup.wait_number("#spark-bitrate", "data-samples", |v| v >= 3.0).await;
    popup.wait_number("#spark-rtt", "data-samples", |v| v >= 3.0).await;
    assert!(
        count(client, "#spark-bitrate polyline").await >= 1,
        "bitrate sparkline drawn"
    );
    assert!(count(client, "#spark-rtt polyline").await >= 1, "RTT sparkline drawn");

    let badge = wait_badge(client, None, |b| {
        ["1", "2", "3", "4"].contains(&b["text"].as_str().unwrap_or(""))
    })
    .await;
    assert_eq!(badge["own_text"], "", "no badge on a tab without a call: {badge}");
    let color = badge["color"].as_array().expect("badge colour");
    assert_eq!(color.len(), 4, "{badge}");
    let demo_tab = badge["tab"].as_i64().expect("demo tab id");

    // The demo tab leaves the call: its badge clears.
    let popup_window = client.window().await.expect("popup window");
    client.switch_to_window(demo_window).await.expect("back to demo");
    client.goto("about:blank").await.expect("leave demo");
    client.switch_to_window(popup_window).await.expect("back to popup");
    wait_badge(client, Some(demo_tab), |b| b["text"] == "").await;
    browser.quit().await;
}

/// A call relayed over TURN/UDP: every connection's row carries the relay tag, and the warning
/// says relayed traffic costs money.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_connections_carry_a_relay_tag() {
    let turn = Turn::start();
    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    browser.open_demo(&collector.demo_url(Some((&turn, "udp")))).await;
    let popup = browser.open_popup().await;
    let warning = popup.wait_text("#relay-warning").await;
    assert!(warning.contains("costs money"), "warning {warning:?}");
    let tag = popup.wait_text("#peers .peer .relay-tag").await;
    assert!(tag.is_empty() || tag.contains("udp"), "relay tag {tag:?}");
    let client = browser.client();
    let protocols = {
        let mut v = Vec::new();
        for tag in client.find_all(Locator::Css("#peers .relay-tag")).await.unwrap() {
            v.push(tag.attr("data-protocol").await.unwrap());
        }
        v
    };
    assert!(
        !protocols.is_empty() && protocols.iter().all(|p| p.as_deref() == Some("udp")),
        "relay tags {protocols:?}"
    );
    browser.quit().await;
}
