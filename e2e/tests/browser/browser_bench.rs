//! In-browser cost of the processor per peer snapshot (20 Chrome-shaped reports), measured in headless Chromium in an extension page.
//!
//! The built extension's wasm export `bench_processor` (only in a build with the `bench` feature,
//! `VITALS_EXTENSION_FEATURES=bench scripts/build-extension`: scripts/test and
//! scripts/bench-extension run this test on one) replays consecutive `stats` messages (made here
//! from shared/benches/chrome-snapshot.json, the snapshot the criterion benchmark uses) in
//! `offscreen.html` opened as a tab, the same wasm the offscreen document runs, five times over.
//! See BENCHMARKS.md for the numbers; `--nocapture` prints them.

use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use vitals_e2e::{Browser, Collector};

/// Snapshots per pass and passes: 200 snapshots of about 20 µs keep a pass well above the
/// coarsened resolution of `performance.now()` (100 µs outside cross-origin isolation).
const SNAPSHOTS: usize = 200;
const ITERATIONS: u32 = 30;
/// `bench_processor` runs this many times in the same page: on shared cores one run can be
/// slowed by other work, so the median of the runs' medians is the figure, and the lowest is
/// printed too.
const RUNS: usize = 5;
/// Issue 3's target: median cost per peer snapshot of about 20 reports, in the browser.
const TARGET_US: f64 = 50.0;

/// The template snapshot `k` seconds on, as benches/processor.rs advances it.
fn snapshot(doc: &Value, k: usize) -> Vec<Value> {
    let since_s = doc["counters_since_s"].as_f64().unwrap();
    let counters: Vec<&str> = doc["counters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let scale = (since_s + k as f64) / since_s;
    let mut reports = doc["reports"].as_array().unwrap().clone();
    for report in &mut reports {
        for (name, value) in report.as_object_mut().unwrap().iter_mut() {
            let Some(x) = value.as_f64() else { continue };
            if name == "timestamp" || name.starts_with("last") {
                *value = json!(x + k as f64 * 1000.0);
            } else if counters.contains(&name.as_str()) {
                *value = json!((x * scale).round());
            }
        }
    }
    reports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_cost_per_snapshot_in_chromium() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/benches/chrome-snapshot.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let messages: Vec<Value> = (0..SNAPSHOTS)
        .map(|k| {
            let reports = snapshot(&doc, k);
            let now_ms = reports
                .iter()
                .filter_map(|r| r["timestamp"].as_f64())
                .fold(0.0, f64::max);
            json!({"type": "stats", "tab": 1, "url": "https://meet.example.com/abc", "now_ms": now_ms,
                   "items": [{"pc": "pc-1", "reports": reports}]})
        })
        .collect();
    assert_eq!(messages[0]["items"][0]["reports"].as_array().unwrap().len(), 20);

    let collector = Collector::start().await;
    let browser = Browser::start(&collector).await;
    let client = browser.client();
    let id = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension/EXTENSION_ID")).unwrap();
    client
        .goto(&format!("chrome-extension://{}/offscreen.html", id.trim()))
        .await
        .expect("open offscreen.html");
    // All the runs are one script call: allow it more than chromedriver's default 30 s.
    let timeouts = fantoccini::wd::TimeoutConfiguration::new(
        Some(Duration::from_secs(300)),
        Some(Duration::from_secs(60)),
        Some(Duration::ZERO),
    );
    client.update_timeouts(timeouts).await.expect("script timeout");
    let result = client
        .execute_async(
            r#"const [messages, iterations, runs, done] = arguments;
               import('./pkg/vitals_extension.js')
                 .then(async (m) => {
                   await m.default();
                   done(Array.from({ length: runs }, () => m.bench_processor(messages, iterations)));
                 })
                 .catch((e) => done({ error: String(e) }));"#,
            vec![Value::Array(messages), json!(ITERATIONS), json!(RUNS)],
        )
        .await
        .expect("bench_processor ran");
    browser.quit().await;
    assert!(result["error"].is_null(), "{result}");
    let runs = result.as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), RUNS, "{result}");
    for run in &runs {
        eprintln!("in-browser processor cost per snapshot: {run}");
        assert_eq!(run["same_reports"], true, "the two conversions disagree: {run}");
        // Speed is a benchmark, not a timed test (BENCHMARKS.md records it against the 50 µs
        // target); this only checks that every path ran and measured something.
        for key in ["offscreen_us", "via_json_us", "direct_us", "processor_us"] {
            let us = run[key].as_f64().unwrap_or(f64::NAN);
            assert!(us.is_finite() && us > 0.0, "{key} not measured: {run}");
        }
    }
    let mut offscreen: Vec<f64> = runs.iter().filter_map(|r| r["offscreen_us"].as_f64()).collect();
    offscreen.sort_by(f64::total_cmp);
    eprintln!(
        "offscreen path: median of {RUNS} runs {} µs per snapshot, lowest {} µs (target {TARGET_US} µs)",
        offscreen[RUNS / 2],
        offscreen[0]
    );
}
