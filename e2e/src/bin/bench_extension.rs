//! Benchmarks the built extension in headless Chromium: the hook's main-thread cost per connection per poll, and the offscreen document's memory over a long call (run it with scripts/bench-extension).
//!
//! Both phases open the lab page (e2e/static/lab.html, served in-process; the extension is
//! configured to upload to a collector in-process with the embedded store) with `--connections` peer connections: loopback
//! pairs, both ends sending fake audio and video, all in one page, so the hook polls every one of
//! them once a second.
//!
//! Hook cost: for each run, one Chromium without the extension (the baseline) and one with it,
//! in alternating order. After `--warmup` seconds, the page's main-thread time over `--window`
//! seconds is read with the DevTools `Performance` domain in thread time (`threadTicks`: CPU time
//! of the page's main thread, so other processes using the cores inflate it little), as
//! `TaskDuration` (all tasks) and `ScriptDuration` (JavaScript). The difference between the two
//! browsers, divided by connections and by polls (one per connection per second), is what the
//! extension costs the page: the hook (MAIN world), the bridge (ISOLATED world), and Chromium's
//! own work to build the `getStats()` reports the hook asks for. Then a DevTools trace of the same
//! page (`--trace DIR` keeps it) splits the extension's thread time into the hook's timer, the
//! hook's `getStats()` handlers and the bridge.
//!
//! Memory: one Chromium with the extension runs the call for `--duration` seconds; every
//! `--every` seconds the tool forces a garbage collection in the offscreen document (DevTools
//! connection to its target) and reads its JS heap (`Runtime.getHeapUsage`) and the size of the
//! wasm memory (the `memory` export of the wasm-bindgen module, `pkg/vitals_extension.js`).
//!
//! Usage: `scripts/bench-extension [ARGS]`, or `cargo run -p vitals-e2e --bin
//! bench_extension -- [--connections 10] [--runs 3] [--warmup 15] [--window 30] [--duration 600]
//! [--every 10] [--trace DIR]` with a built extension; `--runs 0` or `--duration 0` skips a
//! phase. `VITALS_EXTENSION_DIST`, `CHROMEDRIVER` and `CHROMIUM` as for the browser tests.

use clap::Parser;
use fantoccini::Client;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use vitals_e2e::{cdp, configured_extension, wait_hook_registered, webdriver, Collector, Proc};

#[derive(Parser)]
#[command(about = "Hook main-thread cost and offscreen memory of the Call Vitals extension in headless Chromium")]
struct Args {
    /// Peer connections in the page (loopback pairs, so an even number).
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Runs of the hook-cost phase (each: one Chromium without, one with the extension); 0 skips it.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds between the call being connected and the first measurement.
    #[arg(long, default_value_t = 15)]
    warmup: u64,
    /// Seconds of each main-thread measurement (the trace that follows takes at most 10 s).
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// Seconds of the memory phase; 0 skips it.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// Folder to keep each run's DevTools trace in (`run-N.json`, for chrome://tracing or Perfetto).
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
}

/// How long the call may take to connect and the offscreen document to appear.
const PATIENCE: Duration = Duration::from_secs(90);
/// The longest trace of the browser (a trace of 10 connections grows by about 1 MB a second).
const TRACE: Duration = Duration::from_secs(10);
/// The hook polls every connection once per POLL_MS (extension/hook.js).
const POLL_MS: f64 = 1000.0;
/// Issue 4's targets.
const TARGET_MS_PER_POLL: f64 = 0.3;
const TARGET_MB: f64 = 20.0;
const MB: f64 = 1024.0 * 1024.0;

fn extension_id() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension/EXTENSION_ID");
    std::fs::read_to_string(path)
        .expect("extension/EXTENSION_ID")
        .trim()
        .to_owned()
}

/// One Chromium (through chromedriver) and the port of its DevTools endpoint.
struct Session {
    client: Client,
    devtools: u16,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Session {
    async fn start(extension: Option<&Path>) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let (driver, client) = webdriver(profile.path(), extension).await;
        if extension.is_some() {
            wait_hook_registered(&client, &extension_id()).await;
        }
        // chromedriver starts Chromium with --remote-debugging-port=0; Chromium writes the port
        // it chose into the profile.
        let file = profile.path().join("DevToolsActivePort");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let devtools = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("DevTools port");
        Self {
            client,
            devtools,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Opens the lab page with `connections` connections and waits until all are connected.
    async fn open_call(&self, lab: &str, connections: usize) {
        let url = format!("{lab}/lab?calls={}", connections / 2);
        self.client.goto(&url).await.expect("open the lab page");
        let start = Instant::now();
        loop {
            let state = self
                .client
                .execute("return window.lab && [window.lab.state, window.lab.error]", vec![])
                .await
                .unwrap_or(Value::Null);
            match state[0].as_str() {
                Some("connected") => return,
                Some("failed") => panic!("the lab call failed: {state}"),
                _ if start.elapsed() > PATIENCE => panic!("the lab call did not connect: {state}"),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    async fn lab_state(&self) -> Value {
        self.client
            .execute("return window.lab && window.lab.state", vec![])
            .await
            .unwrap_or(Value::Null)
    }

    async fn quit(self) {
        let _ = self.client.close().await;
    }
}

/// `Performance.getMetrics` of the session's page, by name (seconds for the durations).
async fn metrics(client: &Client) -> HashMap<String, f64> {
    let result = cdp(client, "Performance.getMetrics", json!({})).await;
    result["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["name"].as_str()?.to_owned(), m["value"].as_f64()?)))
        .collect()
}

/// Main-thread milliseconds per second of the page over one window.
#[derive(Clone, Copy, Debug, Default)]
struct Busy {
    task: f64,
    script: f64,
}

async fn main_thread_busy(client: &Client, window: Duration) -> Busy {
    cdp(client, "Performance.enable", json!({"timeDomain": "threadTicks"})).await;
    let before = metrics(client).await;
    tokio::time::sleep(window).await;
    let after = metrics(client).await;
    cdp(client, "Performance.disable", json!({})).await;
    let delta = |name: &str| {
        let (a, b) = (before.get(name), after.get(name));
        b.zip(a)
            .map(|(b, a)| b - a)
            .unwrap_or_else(|| panic!("no metric {name} in {after:?}"))
    };
    let seconds = delta("Timestamp");
    Busy {
        task: delta("TaskDuration") * 1000.0 / seconds,
        script: delta("ScriptDuration") * 1000.0 / seconds,
    }
}

/// Where the extension's time on the page's main thread goes, from a DevTools trace (thread
/// time, milliseconds per second; tracing itself makes everything somewhat slower): `poll`, the
/// hook's timer (one `getStats()` call per connection); `callbacks`, promise callbacks, which
/// here are the hook's `getStats()` handlers (Chromium's conversion of the reports to
/// JavaScript, the trim, the post to the bridge); `bridge`, bridge.js's message handler (its
/// checks and `chrome.runtime.sendMessage`); `tasks`, all main-thread tasks.
#[derive(Clone, Copy, Debug, Default)]
struct Split {
    poll: f64,
    callbacks: f64,
    bridge: f64,
    tasks: f64,
}

const TRACE_CATEGORIES: [&str; 4] = ["__metadata", "toplevel", "devtools.timeline", "v8.execute"];

/// Traces the browser for `window` and splits the page's main thread (the renderer main thread
/// that runs hook.js) into a [`Split`]; `save` keeps the trace (for chrome://tracing or Perfetto).
async fn trace_split(devtools: u16, window: Duration, save: Option<&Path>) -> Split {
    let version = devtools_json(devtools, "version").await;
    let browser = version["webSocketDebuggerUrl"].as_str().expect("browser WebSocket URL");
    let mut cdp = Cdp::connect(browser).await;
    let config = json!({"traceConfig": {"includedCategories": TRACE_CATEGORIES}, "transferMode": "ReportEvents"});
    cdp.call("Tracing.start", config).await;
    tokio::time::sleep(window).await;
    cdp.call("Tracing.end", json!({})).await;
    let mut events = Vec::new();
    loop {
        let message = cdp.next_event().await;
        match message["method"].as_str() {
            Some("Tracing.dataCollected") => {
                events.extend(message["params"]["value"].as_array().cloned().unwrap_or_default())
            }
            Some("Tracing.tracingComplete") => break,
            _ => {}
        }
    }
    if let Some(path) = save {
        std::fs::write(path, Value::Array(events.clone()).to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    split(&events, window.as_secs_f64())
}

/// Sums the thread time of the page's main-thread events into a [`Split`].
fn split(events: &[Value], seconds: f64) -> Split {
    let thread = |e: &Value| (e["pid"].as_u64().unwrap_or(0), e["tid"].as_u64().unwrap_or(0));
    let url = |e: &Value| {
        e["args"]["data"]["url"]
            .as_str()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let Some(main) = events
        .iter()
        .find(|e| e["name"] == "FunctionCall" && url(e) == "hook.js")
        .map(thread)
    else {
        panic!("the trace has no call into hook.js: is the extension loaded?");
    };
    let mut complete: Vec<&Value> = events.iter().filter(|e| thread(e) == main && e["ph"] == "X").collect();
    complete.sort_by(|a, b| {
        let (ta, tb) = (a["ts"].as_f64().unwrap_or(0.0), b["ts"].as_f64().unwrap_or(0.0));
        ta.total_cmp(&tb).then(
            b["dur"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&a["dur"].as_f64().unwrap_or(0.0)),
        )
    });
    let ms = |e: &Value| e["tdur"].as_f64().unwrap_or(0.0) / 1000.0 / seconds;
    let mut out = Split::default();
    // Top-level events (not inside an earlier one) are the tasks.
    let mut task_end = f64::MIN;
    for e in complete {
        let ts = e["ts"].as_f64().unwrap_or(0.0);
        if ts >= task_end {
            task_end = ts + e["dur"].as_f64().unwrap_or(0.0);
            out.tasks += ms(e);
        }
        match (e["name"].as_str().unwrap_or(""), url(e).as_str()) {
            ("FunctionCall", "hook.js") if e["args"]["data"]["functionName"] == "poll" => out.poll += ms(e),
            ("FunctionCall", "bridge.js") => out.bridge += ms(e),
            ("RunMicrotasks", _) => out.callbacks += ms(e),
            _ => {}
        }
    }
    out
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

async fn hook_cost(args: &Args, lab: &str, extension: &Path) {
    let per_poll = |ms_per_s: f64| ms_per_s / args.connections as f64 / (1000.0 / POLL_MS);
    let window = Duration::from_secs(args.window);
    let (mut task, mut script, mut traced) = (Vec::new(), Vec::new(), Vec::new());
    println!(
        "hook cost: {} connections, {} runs, warm-up {} s, window {} s (main-thread ms per s: baseline / extension; extension's extra per connection per poll)",
        args.connections, args.runs, args.warmup, args.window
    );
    for run in 1..=args.runs {
        let mut busy = [Busy::default(); 2];
        let mut parts = Split::default();
        // Alternate which browser goes first, so a change in the machine's load hits both.
        let order = if run % 2 == 1 { [false, true] } else { [true, false] };
        for with_extension in order {
            let session = Session::start(with_extension.then_some(extension)).await;
            session.open_call(lab, args.connections).await;
            tokio::time::sleep(Duration::from_secs(args.warmup)).await;
            busy[with_extension as usize] = main_thread_busy(&session.client, window).await;
            if with_extension {
                let save = args.trace.as_ref().map(|dir| dir.join(format!("run-{run}.json")));
                parts = trace_split(session.devtools, window.min(TRACE), save.as_deref()).await;
            }
            let state = session.lab_state().await;
            assert_eq!(state, "connected", "the call did not stay connected");
            session.quit().await;
        }
        let [base, ext] = busy;
        let extra_task = per_poll(ext.task - base.task);
        let extra_script = per_poll(ext.script - base.script);
        println!(
            "  run {run}: tasks {:.2} / {:.2} ms/s, extra {extra_task:.3} ms per connection per poll; \
             JavaScript {:.2} / {:.2} ms/s, extra {extra_script:.3} ms; traced (thread time, per \
             connection per poll): poll {:.3} ms, getStats handlers {:.3} ms, bridge {:.3} ms, all tasks {:.3} ms",
            base.task,
            ext.task,
            base.script,
            ext.script,
            per_poll(parts.poll),
            per_poll(parts.callbacks),
            per_poll(parts.bridge),
            per_poll(parts.tasks),
        );
        task.push(extra_task);
        script.push(extra_script);
        traced.push(parts);
    }
    let task = median(task);
    let traced = |part: fn(&Split) -> f64| per_poll(median(traced.iter().map(part).collect()));
    println!(
        "hook cost, median of {} runs: {task:.3} ms per connection per poll (all main-thread tasks; \
         target {TARGET_MS_PER_POLL} ms: {:.0} % of it); JavaScript alone {:.3} ms; traced: poll {:.3} ms, \
         getStats handlers {:.3} ms, bridge {:.3} ms of {:.3} ms",
        args.runs,
        task / TARGET_MS_PER_POLL * 100.0,
        median(script),
        traced(|p| p.poll),
        traced(|p| p.callbacks),
        traced(|p| p.bridge),
        traced(|p| p.tasks),
    );
}

/// A DevTools connection to one target, speaking CDP JSON over its WebSocket.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Cdp {
    async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("DevTools WebSocket {url}: {e}"));
        Self { ws, next_id: 0 }
    }

    /// The next message (an event, when no command is waiting).
    async fn next_event(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("no message from DevTools")
                .expect("DevTools closed the connection")
                .expect("CDP receive");
            if let Message::Text(text) = message {
                return serde_json::from_str(&text).expect("CDP JSON");
            }
        }
    }

    /// Sends `method` and returns its result, skipping events; panics on a CDP error.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::Text(request.into())).await.expect("CDP send");
        loop {
            let answer = self.next_event().await;
            if answer["id"] != id {
                continue;
            }
            assert!(answer["error"].is_null(), "{method}: {}", answer["error"]);
            return answer["result"].clone();
        }
    }
}

/// `GET /json/WHAT` of the browser's DevTools HTTP endpoint (`version`, `list`).
async fn devtools_json(devtools: u16, what: &str) -> Value {
    let url = format!("http://127.0.0.1:{devtools}/json/{what}");
    let response = reqwest::get(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    response.json().await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The DevTools WebSocket URL of the extension's offscreen document, once it exists.
async fn offscreen_target(devtools: u16, id: &str) -> String {
    let url = format!("chrome-extension://{id}/offscreen.html");
    let start = Instant::now();
    loop {
        let list = devtools_json(devtools, "list").await;
        let found = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["url"] == url.as_str())
            .and_then(|t| t["webSocketDebuggerUrl"].as_str());
        if let Some(ws) = found {
            return ws.to_owned();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no offscreen document among the targets: {list}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One memory sample of the offscreen document, in bytes, after a forced garbage collection.
struct Memory {
    at_s: f64,
    heap: f64,
    wasm: f64,
}

impl Memory {
    fn total_mb(&self) -> f64 {
        (self.heap + self.wasm) / MB
    }
}

async fn sample_memory(offscreen: &mut Cdp, at_s: f64) -> Memory {
    offscreen.call("HeapProfiler.collectGarbage", json!({})).await;
    let heap = offscreen.call("Runtime.getHeapUsage", json!({})).await;
    // The wasm-bindgen module's init returns the instance's exports once it is initialised.
    let wasm = offscreen
        .call(
            "Runtime.evaluate",
            json!({
                "expression": "import(chrome.runtime.getURL('pkg/vitals_extension.js')).then((m) => m.default()).then((w) => w.memory.buffer.byteLength)",
                "awaitPromise": true,
                "returnByValue": true,
            }),
        )
        .await;
    Memory {
        at_s,
        heap: heap["usedSize"].as_f64().expect("usedSize"),
        wasm: wasm["result"]["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("wasm memory size: {wasm}")),
    }
}

/// Least-squares slope of total MB over minutes, over the samples from `from_s` on.
fn trend_mb_per_min(samples: &[Memory], from_s: f64) -> f64 {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|m| m.at_s >= from_s)
        .map(|m| (m.at_s / 60.0, m.total_mb()))
        .collect();
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    num / den
}

async fn offscreen_memory(args: &Args, lab: &str, collector: &Collector, extension: &Path) {
    println!(
        "offscreen memory: {} connections for {} s, a sample every {} s (after a forced GC)",
        args.connections, args.duration, args.every
    );
    let session = Session::start(Some(extension)).await;
    session.open_call(lab, args.connections).await;
    let target = offscreen_target(session.devtools, &extension_id()).await;
    let mut offscreen = Cdp::connect(&target).await;
    let start = Instant::now();
    let mut samples: Vec<Memory> = Vec::new();
    loop {
        let at_s = start.elapsed().as_secs_f64();
        let m = sample_memory(&mut offscreen, at_s).await;
        println!(
            "  {:6.0} s: JS heap {:6.2} MB + wasm {:6.2} MB = {:6.2} MB",
            m.at_s,
            m.heap / MB,
            m.wasm / MB,
            m.total_mb()
        );
        samples.push(m);
        if at_s >= args.duration as f64 {
            break;
        }
        let next = Duration::from_secs(args.every * samples.len() as u64);
        tokio::time::sleep(next.saturating_sub(start.elapsed())).await;
    }
    let state = session.lab_state().await;
    let participant = collector.wait_participant(|p| p["last_seen"].is_number()).await;
    session.quit().await;
    assert_eq!(state, "connected", "the call did not stay connected");

    let last = samples.last().unwrap();
    let max = samples.iter().map(Memory::total_mb).fold(0.0, f64::max);
    // The first sample at or after each checkpoint the run reached.
    let checkpoints: Vec<String> = [60.0, 300.0, 600.0, 900.0]
        .into_iter()
        .filter(|&s| s <= last.at_s)
        .filter_map(|s| samples.iter().find(|m| m.at_s >= s))
        .map(|m| format!("{:.2} MB at {:.0} s", m.total_mb(), m.at_s))
        .collect();
    println!(
        "offscreen memory (JS heap + wasm): {:.2} MB at the start, {}, {:.2} MB at the end ({:.0} s: JS heap {:.2} + \
         wasm {:.2}); max {:.2} MB (target {TARGET_MB} MB: {:.0} % of it); trend over the last half {:+.3} MB/min, \
         over the whole run {:+.3} MB/min",
        samples[0].total_mb(),
        checkpoints.join(", "),
        last.total_mb(),
        last.at_s,
        last.heap / MB,
        last.wasm / MB,
        max,
        max / TARGET_MB * 100.0,
        trend_mb_per_min(&samples, last.at_s / 2.0),
        trend_mb_per_min(&samples, 0.0)
    );
    println!(
        "the collector's participant at the end: upload {} kbps, download {} kbps",
        participant["upload_kbps"], participant["download_kbps"]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    if let Some(dir) = &args.trace {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    assert!(
        args.connections >= 2 && args.connections % 2 == 0,
        "--connections must be an even number of at least 2 (the page makes loopback pairs)"
    );
    assert!(args.every > 0, "--every must be at least 1 second");
    let collector = Collector::start().await;
    let extension = configured_extension(&collector);
    let lab = vitals_e2e::lab::serve().await;
    println!(
        "machine: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    if args.runs > 0 {
        hook_cost(&args, &lab, extension.path()).await;
    }
    if args.duration > 0 {
        offscreen_memory(&args, &lab, &collector, extension.path()).await;
    }
}
