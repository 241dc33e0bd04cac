//! Browser end-to-end tests: real headless Chromium with the built extension, real loopback calls, coturn for relay.
//!
//! Each test starts the collector in-process (embedded store), a copy of `extension/dist`
//! configured for it, chromedriver and Chromium with a fresh profile, and (for relay) a coturn
//! server on free loopback ports. `scripts/test` builds the extension first; without a built
//! extension these tests fail and say so.

use serde_json::Value;
use vitals_e2e::{Browser, Collector, Turn};

/// The demo call over host candidates: the popup shows both bitrates and no relay warning, and
/// the collector has the participant with non-zero bitrates and `using_relay: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_call_shows_bitrates_without_relay() {
    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    browser.open_demo(&collector.demo_url(None)).await;
    let popup = browser.open_popup().await;
    let up = popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;
    let down = popup.wait_number("#download", "data-kbps", |v| v > 0.0).await;
    let rtt = popup.wait_number("#rtt", "data-ms", |v| v >= 0.0).await;
    assert!(up > 0.0 && down > 0.0, "popup bitrates: up {up} down {down}");
    assert!(rtt < 100.0, "loopback RTT should be tiny, got {rtt} ms");
    assert!(
        !popup.exists("#relay-warning").await,
        "a direct call must not show the relay warning"
    );

    let participant = collector
        .wait_participant(|p| p["upload_kbps"].as_f64().unwrap_or(0.0) > 0.0)
        .await;
    assert_eq!(participant["using_relay"], Value::Bool(false), "{participant}");
    assert!(
        participant["download_kbps"].as_f64().unwrap_or(0.0) > 0.0,
        "{participant}"
    );
    browser.quit().await;
}

async fn relayed_call(transport: &str) {
    let turn = Turn::start();
    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    browser.open_demo(&collector.demo_url(Some((&turn, transport)))).await;
    let popup = browser.open_popup().await;
    let warning = popup.wait_text("#relay-warning").await;
    assert!(
        warning.to_lowercase().contains(transport),
        "relay warning {warning:?} should name {transport}"
    );
    popup.wait_number("#upload", "data-kbps", |v| v > 0.0).await;

    let participant = collector
        .wait_participant(|p| p["using_relay"] == Value::Bool(true))
        .await;
    assert_eq!(
        participant["relay_protocol"],
        Value::String(transport.into()),
        "{participant}"
    );
    // The TURN server is named by an IP literal here: its address must not reach the collector.
    let text = participant.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains(&turn.port.to_string()),
        "address leaked: {text}"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_relayed_over_turn_udp_shows_warning_and_reaches_collector() {
    relayed_call("udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_relayed_over_turn_tcp_shows_warning_and_reaches_collector() {
    relayed_call("tcp").await;
}
