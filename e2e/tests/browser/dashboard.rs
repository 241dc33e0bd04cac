//! The admin dashboard (`/`) in real headless Chromium: pushed alerts and metrics, reconnect, history charts, export, live meetings read a page at a time, and untrusted text shown as text.

use fantoccini::{Client, Locator};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vitals_e2e::{cdp, click, webdriver, Collector, ADMIN_TOKEN, INGEST_KEY};

const PATIENCE: Duration = Duration::from_secs(45);
const MEETING: &str = "https://meet.example.com/dash-board";
const PARTICIPANT: &str = "p-dash";
const EVIL_LABEL: &str = "<img src=x onerror=\"window.__xss=1\">Mallory";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn ingest(collector: &Collector, seq: u64, metrics: Value) {
    ingest_to(collector, MEETING, PARTICIPANT, seq, metrics).await;
}

async fn ingest_to(collector: &Collector, meeting: &str, participant: &str, seq: u64, metrics: Value) {
    // The event's own time places it in the history (the collector believes it, clamped).
    let batch = json!({"meeting_id": meeting, "participant_id": participant, "label": EVIL_LABEL,
        "events": [{"seq": seq, "ts_ms": now_ms(), "full": seq == 1, "metrics": metrics}]});
    // Every batch of the participant after its first carries its token.
    let batch = vitals_collector::testing::signed(ADMIN_TOKEN, batch);
    let url = format!("{}/api/v1/ingest", collector.base);
    let request = reqwest::Client::new().post(url).bearer_auth(INGEST_KEY).json(&batch);
    let answer = request.send().await.and_then(reqwest::Response::error_for_status);
    answer.unwrap_or_else(|e| panic!("ingest {batch}: {e}"));
}

/// Runs `script` (a function body returning a value) until `done` holds for its value; returns it.
async fn wait_js(client: &Client, what: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        last = client.execute(script, vec![]).await.unwrap_or(Value::Null);
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = client.execute("return document.body.innerText", vec![]).await;
    panic!(
        "the dashboard never showed {what}; last {last}; page:\n{}",
        page.unwrap_or_default()
    );
}

/// The participant row's cells, as text.
const ROW_CELLS: &str = "const row = document.querySelector('#meetings tr.participant');
    return row ? [...row.cells].map((c) => c.textContent) : null;";

const LIVE_STATE: &str = "return document.getElementById('live').dataset.state;";

async fn wait_live(client: &Client) {
    wait_js(client, "the live stream connected", LIVE_STATE, |v| v == "open").await;
}

/// The y coordinates of the points of the `chart` series path.
async fn chart_points(client: &Client, chart: &str) -> Vec<(f64, f64)> {
    let script = format!(
        "const path = document.querySelector('figure[data-chart=\"{chart}\"] path.series');
         return path ? path.getAttribute('d') : null;"
    );
    let d = wait_js(client, &format!("a {chart} chart with two points"), &script, |v| {
        v.as_str().is_some_and(|d| d.contains('L'))
    })
    .await;
    d.as_str()
        .unwrap()
        .split(['M', 'L'])
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let (x, y) = pair.trim().split_once(',').expect("x,y");
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// Waits for a file named `prefix*suffix` in `dir` and returns its text (once Chromium renamed
/// it from its partial-download name).
async fn wait_download(dir: &Path, suffix: &str) -> String {
    let start = Instant::now();
    loop {
        let found = std::fs::read_dir(dir).unwrap().flatten().find(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("call-vitals-") && name.ends_with(suffix)
        });
        if let Some(entry) = found {
            return std::fs::read_to_string(entry.path()).unwrap();
        }
        assert!(start.elapsed() < PATIENCE, "no {suffix} download in {}", dir.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pushes_alerts_and_metrics_charts_history_and_exports() {
    let collector = Collector::start().await;
    let profile = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let (_driver, client) = webdriver(profile.path(), None).await;
    client.goto(&format!("{}/", collector.base)).await.unwrap();

    // The token, entered as an admin does.
    let input = client.find(Locator::Css("#token")).await.unwrap();
    input.send_keys(ADMIN_TOKEN).await.unwrap();
    click(&client, "#token-form button[type=submit]").await;
    wait_live(&client).await;
    // A marker that a reload would lose: everything below must arrive without one.
    client
        .execute("window.__noReload = true; return null;", vec![])
        .await
        .unwrap();

    // A participant joins with a good RTT, late in a 10 s history bucket's first half or so.
    ingest(
        &collector,
        1,
        json!({"rtt_ms": 50.0, "loss_pct": 0.0, "upload_kbps": 800.0}),
    )
    .await;
    let cells = wait_js(&client, "the participant row", ROW_CELLS, |v| {
        v[5].as_str() == Some("50")
    })
    .await;
    // The label is text: shown literally, no element made from it, no script run.
    assert_eq!(cells[0], format!("{EVIL_LABEL} ({PARTICIPANT})"), "{cells}");
    let injected = client
        .execute(
            "return [document.querySelectorAll('img').length, window.__xss === undefined];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!([0, true]));

    // Into the next history bucket, then an RTT that raises an alert.
    let bucket = now_ms() / 10_000;
    while now_ms() / 10_000 == bucket {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ingest(&collector, 2, json!({"rtt_ms": 500.0})).await;
    let alert = wait_js(
        &client,
        "the pushed high-latency alert",
        "const row = document.querySelector('#alerts-table tr.alert');
         return row ? [...row.cells].map((c) => c.textContent) : null;",
        |v| v[1] == "high-latency",
    )
    .await;
    assert_eq!(alert[3], "raised (active)", "{alert}");
    assert_eq!(alert[4], MEETING, "{alert}");
    assert_eq!(alert[5], PARTICIPANT, "{alert}");
    wait_js(&client, "the row with the new RTT", ROW_CELLS, |v| {
        v[5].as_str() == Some("500")
    })
    .await;
    let kept = client
        .execute("return window.__noReload === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!(true), "the page reloaded");

    // The history charts of the participant: RTT went up from the first point to the second
    // (SVG y grows downwards).
    click(&client, "#meetings tr.participant").await;
    let rtt = chart_points(&client, "rtt").await;
    assert_eq!(rtt.len(), 2, "{rtt:?}");
    assert!(rtt[0].0 < rtt[1].0 && rtt[1].1 < rtt[0].1, "{rtt:?}");
    let title = client
        .execute("return document.getElementById('history-title').textContent;", vec![])
        .await
        .unwrap();
    assert!(title.as_str().unwrap().contains(EVIL_LABEL), "{title}");
    for chart in ["upload", "loss", "quality", "download", "jitter"] {
        let present = client
            .execute(
                &format!("return !!document.querySelector('figure[data-chart=\"{chart}\"] svg');"),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(present, json!(true), "chart {chart}");
    }

    // Export CSV of the range: a real download holding both points and the alert.
    cdp(
        &client,
        "Browser.setDownloadBehavior",
        json!({"behavior": "allow", "downloadPath": downloads.path().to_str().unwrap()}),
    )
    .await;
    click(&client, "#export-csv").await;
    let rows = wait_js(
        &client,
        "the export done",
        "return document.getElementById('export-status').dataset.rows ?? null;",
        |v| v.is_string(),
    )
    .await;
    let csv = wait_download(downloads.path(), ".csv").await;
    let lines: Vec<&str> = csv.lines().collect();
    // The page counts what it saved: every line but the header.
    assert_eq!(rows, json!((lines.len() - 1).to_string()), "{csv}");
    assert!(
        lines[0].starts_with("record,time_ms,meeting_id,participant_id"),
        "{csv}"
    );
    assert_eq!(lines.iter().filter(|l| l.starts_with("metrics,")).count(), 2, "{csv}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("alert,") && l.contains("high-latency")),
        "{csv}"
    );

    // JSON of the same range, saved the same way.
    click(&client, "#export-json").await;
    let json_text = wait_download(downloads.path(), ".json").await;
    let export: Value = serde_json::from_str(&json_text).expect("the JSON export parses");
    assert_eq!(export["history"].as_array().map(Vec::len), Some(2), "{export}");
    assert!(export["alerts"].as_array().is_some_and(|a| !a.is_empty()), "{export}");

    // The socket drops: the page says so, reconnects by itself, and pushes again.
    let opens = "return document.getElementById('live').dataset.opens;";
    let before = client.execute(opens, vec![]).await.unwrap();
    client.execute("socket.close(); return null;", vec![]).await.unwrap();
    wait_js(&client, "the stream reconnected", opens, |v| *v != before).await;
    let status = client
        .execute("return document.getElementById('live').textContent;", vec![])
        .await
        .unwrap();
    assert_eq!(status, json!("Live updates: connected"));
    ingest(&collector, 3, json!({"loss_pct": 12.0})).await;
    wait_js(
        &client,
        "the packet-loss alert after the reconnect",
        "const row = document.querySelector('#alerts-table tr.alert');
         return row ? row.cells[1].textContent : null;",
        |v| v == "packet-loss",
    )
    .await;

    // Another meeting's alert is pushed too, until the list is filtered to one meeting.
    ingest_to(&collector, OTHER_MEETING, "p-other", 1, json!({"rtt_ms": 900.0})).await;
    wait_js(&client, "the other meeting's alert", FIRST_ALERT_MEETING, |v| {
        v == OTHER_MEETING
    })
    .await;
    // Pages of one live meeting: the page follows the cursor and keeps both meetings.
    client
        .execute(
            "meetingPageLimit = 1;
             const read = api;
             window.__meetingPages = 0;
             api = (path) => {
               if (path.startsWith('/api/v1/meetings?')) window.__meetingPages += 1;
               return read(path);
             };
             const load = loadMeetings;
             loadMeetings = async () => {
               const list = await load();
               window.__loaded = list.map((m) => m.meeting_id);
               return list;
             };
             pollMeetings();
             return null;",
            vec![],
        )
        .await
        .unwrap();
    let loaded = wait_js(
        &client,
        "the meetings read a page at a time",
        "return window.__loaded ? [window.__loaded, window.__meetingPages] : null;",
        |v| v.is_array(),
    )
    .await;
    let mut both = vec![MEETING, OTHER_MEETING];
    both.sort_unstable();
    assert_eq!(loaded[0], json!(both), "{loaded}");
    assert!(loaded[1].as_u64().is_some_and(|pages| pages >= 2), "{loaded}");
    // Pages of one alert and one history point: the page must follow every cursor.
    let filtered = client
        .execute(
            "alertPageLimit = 1; historyPageLimit = 1;
             const filter = document.getElementById('alert-meeting');
             filter.value = arguments[0];
             filter.dispatchEvent(new Event('change'));
             document.getElementById('charts').replaceChildren();
             const range = document.getElementById('range');
             range.value = '900000';
             range.dispatchEvent(new Event('change'));
             return filter.value;",
            vec![json!(MEETING)],
        )
        .await
        .unwrap();
    assert_eq!(filtered, json!(MEETING));
    // The raised records of this meeting, newest first (on a slow run the silent participant's
    // alerts may also have resolved meanwhile, and those records are pushed).
    let shown = wait_js(
        &client,
        "the alerts of one meeting, newest first",
        "const rows = [...document.querySelectorAll('#alerts-table tr.alert')];
         return rows.map((r) => [r.cells[1].textContent, r.cells[4].textContent, r.dataset.state]);",
        |v| {
            let rows = v.as_array().cloned().unwrap_or_default();
            let raised: Vec<&Value> = rows.iter().filter(|r| r[2] == "raised").map(|r| &r[0]).collect();
            rows.iter().all(|r| r[1] == MEETING) && raised == [&json!("packet-loss"), &json!("high-latency")]
        },
    )
    .await;
    let count = client
        .execute("return document.getElementById('alert-count').textContent;", vec![])
        .await
        .unwrap();
    let rows = shown.as_array().unwrap().len();
    assert!(count.as_str().unwrap().ends_with(&format!(" {rows} shown")), "{count}");
    let rtt = chart_points(&client, "rtt").await;
    assert_eq!(rtt.len(), 2, "history over pages of one point: {rtt:?}");

    // A whole meeting's history: a click on its title.
    client
        .execute(
            "document.getElementById('charts').replaceChildren(); return null;",
            vec![],
        )
        .await
        .unwrap();
    click(&client, "#meetings h3.meeting-title").await;
    assert_eq!(chart_points(&client, "rtt").await.len(), 2);
    let title = client
        .execute("return document.getElementById('history-title').textContent;", vec![])
        .await
        .unwrap();
    assert_eq!(title, json!(format!("History of meeting {MEETING}")));

    // The participant's RTT and loss recover: once clear long enough, both alerts resolve, and
    // the pushed records show it (the raised ones are no longer active).
    ingest(&collector, 4, json!({"rtt_ms": 40.0, "loss_pct": 0.0})).await;
    let states = wait_js(
        &client,
        "both alerts resolved",
        "return [...document.querySelectorAll('#alerts-table tr.alert')]
           .map((r) => [r.cells[1].textContent, r.cells[3].textContent]);",
        |v| {
            v.as_array()
                .is_some_and(|rows| rows.iter().filter(|r| r[1] == "resolved").count() == 2)
        },
    )
    .await;
    assert!(
        states.as_array().unwrap().iter().all(|r| r[1] != "raised (active)"),
        "{states}"
    );
    let count = client
        .execute("return document.getElementById('alert-count').textContent;", vec![])
        .await
        .unwrap();
    assert!(count.as_str().unwrap().starts_with("0 active"), "{count}");
    let _ = client.close().await;
}

const OTHER_MEETING: &str = "https://meet.example.com/other";
const FIRST_ALERT_MEETING: &str = "const row = document.querySelector('#alerts-table tr.alert');
    return row ? row.cells[4].textContent : null;";
