//! Popup and toolbar badge tests in real headless Chromium: loss, jitter, connections, sparklines, badge, report download and summary copy.

use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vitals_e2e::{click, Browser, Collector, Popup, Turn};

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

    // The report says the call was relayed over UDP and raised the relay alert, without the
    // TURN server's address, port or url.
    let mut downloads = Downloads::allow(client).await;
    let (_, text, report) = downloads.report(client, &popup).await;
    let collector_port = collector.base.rsplit(':').next().unwrap();
    let forbidden = [
        "127.0.0.1".to_string(),
        format!(":{}", turn.port),
        format!(":{collector_port}"),
        "?".to_string(),
    ];
    assert_private(&text, &report, &forbidden);
    assert_eq!(report["overview"]["relay_protocols"], json!(["udp"]), "{text}");
    assert!(report["overview"]["relay_share"].as_f64().unwrap() > 0.0);
    let connections = report["connections"].as_array().unwrap();
    assert!(!connections.is_empty() && connections.iter().all(|c| c["using_relay"] == true));
    assert!(
        report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "using-turn" && a["state"] == "raised"),
        "{}",
        report["alerts"]
    );
    browser.quit().await;
}

/// Milliseconds since the Unix epoch (the browser's `Date.now()` runs on the same clock).
fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64
}

/// The popup's figures in one read (one render): the tab's and each connection's.
const READ_POPUP: &str = r#"
const num = (el, attr) => (el && el.hasAttribute(attr) ? el.getAttribute(attr) : null);
const q = (css) => document.querySelector(css);
return {
  quality: num(q('#quality'), 'data-class'),
  upload: num(q('#upload'), 'data-kbps'),
  download: num(q('#download'), 'data-kbps'),
  rtt: num(q('#rtt'), 'data-ms'),
  count: num(q('#peers'), 'data-count'),
  peers: [...document.querySelectorAll('#peers .peer')].map((row) => ({
    pc: row.getAttribute('data-pc'),
    up: num(row.querySelector('.peer-up'), 'data-kbps'),
    down: num(row.querySelector('.peer-down'), 'data-kbps'),
    rtt: num(row.querySelector('.peer-rtt'), 'data-ms'),
  })),
};
"#;

/// Run in the demo page: every address, port and ICE url its connections' own `getStats()`
/// reports (what a report must never contain).
const CALL_ADDRESSES: &str = r#"
const done = arguments[arguments.length - 1];
(async () => {
  const found = new Set();
  for (const pc of window.demo.pcs) {
    (await pc.getStats()).forEach((r) => {
      for (const k of ['address', 'ip', 'relatedAddress', 'url']) if (r[k]) found.add(String(r[k]));
      for (const k of ['port', 'relatedPort']) if (r[k]) found.add(':' + r[k]);
    });
  }
  return [...found];
})().then(done, (e) => done(['error: ' + e]));
"#;

/// A report figure as the popup's data attributes show it ("12.3"), `None` when unknown.
fn shown(v: &Value) -> Option<String> {
    v.as_f64().map(|x| format!("{x:.1}"))
}

/// The folder the browser saves downloads to, and the reports already read from it.
struct Downloads {
    dir: tempfile::TempDir,
    seen: Vec<String>,
}

impl Downloads {
    /// Lets the browser save downloads without asking, into a fresh folder.
    async fn allow(client: &Client) -> Self {
        let dir = tempfile::tempdir().unwrap();
        vitals_e2e::cdp(
            client,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": dir.path().to_str().unwrap()}),
        )
        .await;
        Self { dir, seen: Vec::new() }
    }

    /// Clicks "Download report" in the popup, waits for its confirmation and the new
    /// `call-vitals-report-*.json`; returns the file's name, text and JSON.
    async fn report(&mut self, client: &Client, popup: &Popup<'_>) -> (String, String, Value) {
        click(client, "#download-report").await;
        let status = popup.wait_text("#export-status[data-state=saved]").await;
        let start = Instant::now();
        loop {
            let names: Vec<String> = std::fs::read_dir(self.dir.path())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            let fresh = names
                .iter()
                .find(|n| n.starts_with("call-vitals-report-") && n.ends_with(".json") && !self.seen.contains(n));
            if let Some(name) = fresh {
                let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap();
                if let Ok(json) = serde_json::from_str::<Value>(&text) {
                    assert!(
                        status.contains(name.as_str()),
                        "the confirmation {status:?} names {name}"
                    );
                    self.seen.push(name.clone());
                    return (name.clone(), text, json);
                }
            }
            assert!(
                start.elapsed() < PATIENCE,
                "no report downloaded; the folder has {names:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Checks a downloaded report against the rules no report may break: the privacy rules of
/// `report::address_leaks`, and none of the call's real addresses, ports or urls.
fn assert_private(text: &str, json: &Value, forbidden: &[String]) {
    let leaks = vitals_shared::report::address_leaks(json);
    assert!(leaks.is_empty(), "the report leaks: {leaks:#?}");
    for needle in forbidden {
        assert!(!text.contains(needle.as_str()), "the report contains {needle:?}");
    }
}

/// During a demo call (two connections), "Download report" saves a JSON report that covers the
/// call with a sample a second per connection, agrees with the figures the popup shows, names
/// the browser and extension version and holds no address, port or query; "Copy summary" puts
/// a matching summary on the clipboard, or shows it selected when the clipboard is refused.
/// After hanging up the report can still be downloaded, its connections marked closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_download_and_summary_copy_describe_the_call() {
    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    let client = browser.client();
    let before_call_ms = epoch_ms();
    browser.open_demo(&collector.demo_url(None)).await;
    let connected_ms = epoch_ms();
    let demo_window = client.window().await.expect("demo window");
    let mut forbidden: Vec<String> = client
        .execute_async(CALL_ADDRESSES, vec![])
        .await
        .expect("demo getStats")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        !forbidden.is_empty() && forbidden.iter().all(|f| !f.starts_with("error")),
        "{forbidden:?}"
    );
    let port = collector.base.rsplit(':').next().unwrap().to_string();
    forbidden.extend(["127.0.0.1".to_string(), format!(":{port}"), "?".to_string()]);

    let mut downloads = Downloads::allow(client).await;
    let popup = browser.open_popup().await;
    popup.wait_number("#peers", "data-count", |v| v == 2.0).await;
    popup.wait_number("#spark-rtt", "data-samples", |v| v >= 8.0).await;
    assert!(
        popup.exists("#copy-summary").await,
        "both buttons are shown during a call"
    );

    // What the popup shows, then the report made right after.
    let shown_now = client.execute(READ_POPUP, vec![]).await.expect("read popup");
    let clicked_ms = epoch_ms();
    let (_, text, report) = downloads.report(client, &popup).await;
    assert_private(&text, &report, &forbidden);

    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../extension/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["format"], "call-vitals-report");
    assert_eq!(report["extension_version"], manifest["version"]);
    let browser_name = report["browser"]["name"].as_str().unwrap_or_default();
    assert!(
        browser_name.chars().any(|c| c.is_ascii_digit()) && browser_name != "unknown browser",
        "browser {browser_name:?}"
    );
    assert!(report["browser"]["user_agent"]
        .as_str()
        .unwrap_or_default()
        .contains("Chrome/"));
    assert_eq!(report["page"], "http://ip-literal/demo");

    // It covers the call: from its first seconds to the click.
    let range = &report["time_range"];
    let (from, to) = (range["from_ms"].as_f64().unwrap(), range["to_ms"].as_f64().unwrap());
    assert!(
        from >= before_call_ms - 1000.0 && from <= connected_ms + 3000.0,
        "report starts at {from}, the call started after {before_call_ms} and connected at {connected_ms}"
    );
    assert!(
        to >= clicked_ms - 3000.0 && to <= epoch_ms(),
        "report ends at {to}, clicked at {clicked_ms}"
    );
    assert_eq!(range["duration_s"].as_f64().unwrap(), ((to - from) / 1000.0).round());

    // A sample about every second per connection, over the whole range.
    let connections = report["connections"].as_array().expect("connections");
    let shown_peers = shown_now["peers"].as_array().unwrap();
    assert_eq!(connections.len(), 2, "{connections:#?}");
    for c in connections {
        let samples = c["samples"].as_array().unwrap();
        let times: Vec<f64> = samples.iter().map(|s| s["at_ms"].as_f64().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[1] > w[0]), "samples in time order");
        let (first, last) = (times[0], times[times.len() - 1]);
        assert!(
            first <= from + 3000.0 && last >= to - 3000.0,
            "{} covers {first}..{last}",
            c["pc"]
        );
        let expected = (last - first) / 1000.0;
        assert!(
            samples.len() as f64 >= expected * 0.6 && samples.len() as f64 <= expected * 1.5 + 2.0,
            "{} has {} samples over {expected} s",
            c["pc"],
            samples.len()
        );
        for s in samples {
            for key in [
                "upload_kbps",
                "download_kbps",
                "rtt_ms",
                "loss_pct",
                "jitter_ms",
                "quality",
                "mos",
            ] {
                assert!(s.get(key).is_some(), "sample without {key}: {s}");
            }
            assert_eq!(s["using_relay"], false, "a direct call");
        }
        // The figures the popup showed for this connection are one of its samples.
        let row = shown_peers
            .iter()
            .find(|p| p["pc"] == c["pc"])
            .unwrap_or_else(|| panic!("popup has no row for {}: {shown_now}", c["pc"]));
        let matched = samples.iter().any(|s| {
            shown(&s["upload_kbps"]).as_deref() == row["up"].as_str()
                && shown(&s["download_kbps"]).as_deref() == row["down"].as_str()
                && shown(&s["rtt_ms"]).as_deref() == row["rtt"].as_str()
        });
        assert!(matched, "the popup's {row} is not among {}'s samples", c["pc"]);
    }

    // The tab's quality over time agrees with the popup's figures of that moment.
    let quality = report["quality"].as_array().expect("quality");
    assert!(
        quality.len() as f64 >= (to - from) / 1000.0 * 0.6,
        "{} tab samples",
        quality.len()
    );
    let recent: Vec<&Value> = quality
        .iter()
        .filter(|s| s["at_ms"].as_f64().unwrap() >= clicked_ms - 20_000.0)
        .collect();
    assert!(
        recent.iter().any(|s| s["quality"] == shown_now["quality"]),
        "popup quality {} not in the report's last 20 s",
        shown_now["quality"]
    );
    for (key, field) in [
        ("upload", "upload_kbps"),
        ("download", "download_kbps"),
        ("rtt", "rtt_ms"),
    ] {
        let v: f64 = shown_now[key].as_str().unwrap().parse().unwrap();
        let values: Vec<f64> = recent.iter().filter_map(|s| s[field].as_f64()).collect();
        let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        });
        assert!(
            v >= lo - 0.05 && v <= hi + 0.05,
            "popup {key} {v} outside the report's {lo}..{hi}"
        );
    }
    let overview = &report["overview"];
    assert_eq!(overview["connections"], 2);
    assert_eq!(overview["relay_share"], 0.0);
    assert!(
        report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["type"] != "using-turn"),
        "no relay alert on a direct call: {}",
        report["alerts"]
    );
    // The report judges alerts as the collector does by default.
    let collector_thresholds = vitals_collector::alerts::AlertThresholds::default();
    assert_eq!(report["thresholds"], json!(collector_thresholds));

    // Copy summary: the text is on the clipboard (read back with the read permission granted).
    let origin = format!("chrome-extension://{}", extension_id());
    vitals_e2e::cdp(
        client,
        "Browser.setPermission",
        json!({"permission": {"name": "clipboard-read"}, "setting": "granted", "origin": origin}),
    )
    .await;
    click(client, "#copy-summary").await;
    let copied = popup.wait_text("#export-status[data-state=copied]").await;
    assert!(copied.contains("copied"), "{copied:?}");
    assert!(
        !popup.exists("#summary-text").await,
        "no fallback when the clipboard works"
    );
    let clipboard = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             navigator.clipboard.readText().then(done, (e) => done('error: ' + e));",
            vec![],
        )
        .await
        .expect("read clipboard");

    // The clipboard refused (Chromium lets a click write it even with the permission denied
    // through DevTools, so the refusal is made by the page's writeText): the summary is shown
    // in a read-only field, all selected.
    client
        .execute(
            "navigator.clipboard.writeText = () => \
             Promise.reject(new DOMException('Write permission denied.', 'NotAllowedError'));",
            vec![],
        )
        .await
        .expect("refuse the clipboard");
    click(client, "#copy-summary").await;
    popup.wait_text("#export-status[data-state=refused]").await;
    let fallback = client
        .execute(
            "const t = document.querySelector('#summary-text'); \
             return [t.value, t.readOnly, t.selectionStart, t.selectionEnd, document.activeElement === t];",
            vec![],
        )
        .await
        .expect("fallback textarea");
    let fallback_text = fallback[0].as_str().unwrap().to_string();
    assert_eq!(fallback[1], true, "read-only");
    assert_eq!(
        (fallback[2].as_u64(), fallback[3].as_u64()),
        (Some(0), Some(fallback_text.encode_utf16().count() as u64)),
        "the whole summary is selected"
    );
    assert_eq!(fallback[4], true, "the field has the focus, so Ctrl+C copies it");
    let summary = clipboard.as_str().unwrap().to_string();
    for text in [&summary, &fallback_text] {
        assert!(text.starts_with("Call Vitals summary\n"), "{text}");
        for line in [
            "Connections: 2 ",
            "TURN relay: not used\n",
            "Site: http://ip-literal\n",
            &format!("Extension: Call Vitals {}\n", manifest["version"].as_str().unwrap()),
            &format!("Browser: {browser_name}"),
        ] {
            assert!(text.contains(line), "summary lacks {line:?}:\n{text}");
        }
        for key in [
            "Quality: ",
            "Round trip: ",
            "Packet loss: ",
            "Jitter: ",
            "Upload: ",
            "Download: ",
            "Time: ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(key)),
                "summary lacks {key:?}:\n{text}"
            );
        }
        assert!(text.contains(" ms average, ") && text.contains(" worst"), "{text}");
        for needle in &forbidden {
            assert!(!text.contains(needle.as_str()), "summary contains {needle:?}");
        }
    }

    // Hang up: no call any more, but the report of the call is still there.
    let popup_window = client.window().await.expect("popup window");
    client.switch_to_window(demo_window).await.expect("to demo");
    click(client, "#hangup").await;
    client.switch_to_window(popup_window).await.expect("to popup");
    popup.wait_text("#call-ended").await;
    assert!(popup.exists("#no-call").await);
    let (_, after_text, after) = downloads.report(client, &popup).await;
    assert_private(&after_text, &after, &forbidden);
    let closed = after["connections"].as_array().unwrap();
    assert_eq!(closed.len(), 2);
    assert!(closed.iter().all(|c| c["closed_ms"].as_f64().is_some()), "{after_text}");
    assert!(after["time_range"]["from_ms"].as_f64().unwrap() <= from + 1000.0);
    browser.quit().await;
}

/// The extension's fixed id (extension/EXTENSION_ID).
fn extension_id() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../extension/EXTENSION_ID"))
        .unwrap()
        .trim()
        .to_string()
}
