//! Records real getStats sequences from headless Chromium into `shared/tests/fixtures/<case>/` (run it with scripts/record-fixtures).
//!
//! It serves the lab page (e2e/static/lab.html) in-process, starts coturn and chromedriver on free
//! loopback ports and Chromium with fake media (no extension: the page calls getStats on its own
//! connections), then for each case polls the page about once a second. The reports are trimmed
//! to the types the processor reads and stripped of addresses, ports, ICE credentials and the
//! TURN server's host, so fixtures carry no network identity. `expected.json` is written from the
//! scenario (what the call must look like), never from the processor's output.
//!
//! Usage: `cargo run -p vitals-e2e --bin record_fixtures [CASE ...]` (all cases by default).

use fantoccini::Client;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vitals_e2e::{webdriver, Turn};
use vitals_shared::stats::{PeerConnection, REPORT_MEMBERS};

const POLLS: usize = 12;
const POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// The scripted action (ICE restart, stopped track) runs after this many polls.
const ACTION_AFTER_POLL: usize = 6;
const TURN_USER: &str = Turn::USER;
const TURN_PASSWORD: &str = Turn::PASSWORD;

/// Members kept besides those the processor reads (`vitals_shared::stats::REPORT_MEMBERS`, per
/// report type; the other types, such as codec or certificate, are dropped): what says what a
/// report is. Chromium's other members are dropped to keep the fixtures at a few hundred KB;
/// addresses, ports and SDP are never kept, the ICE username fragment only as a pseudonym.
const EXTRA_MEMBERS: &[&str] = &["type", "protocol"];

/// The members of report type `kind` a fixture keeps, `None` for a type it drops.
fn kept_members(kind: &str) -> Option<&'static [&'static str]> {
    if kind == "peer-connection" {
        return Some(PeerConnection::MEMBERS);
    }
    REPORT_MEMBERS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, members)| *members)
}

#[derive(Clone, Copy, PartialEq)]
enum Action {
    None,
    RestartIce,
    StopVideo,
}

struct Case {
    name: &'static str,
    description: &'static str,
    calls: usize,
    /// TURN transport, when the call has a TURN server.
    turn: Option<&'static str>,
    /// iceTransportPolicy `relay` (forced through TURN) rather than `all`.
    relay_only: bool,
    action: Action,
}

const CASES: &[Case] = &[
    Case {
        name: "direct",
        description: "one loopback call over host candidates, audio and video both ways",
        calls: 1,
        turn: None,
        relay_only: false,
        action: Action::None,
    },
    Case {
        name: "turn-udp",
        description: "one loopback call forced through coturn over UDP (iceTransportPolicy relay)",
        calls: 1,
        turn: Some("udp"),
        relay_only: true,
        action: Action::None,
    },
    Case {
        name: "turn-tcp",
        description: "one loopback call forced through coturn over TCP (iceTransportPolicy relay)",
        calls: 1,
        turn: Some("tcp"),
        relay_only: true,
        action: Action::None,
    },
    Case {
        name: "turn-offered-direct",
        description:
            "one loopback call with a TURN server offered (policy all): relay candidates exist, a host pair wins",
        calls: 1,
        turn: Some("udp"),
        relay_only: false,
        action: Action::None,
    },
    Case {
        name: "two-calls",
        description: "two loopback calls in one page at once: four connections",
        calls: 2,
        turn: None,
        relay_only: false,
        action: Action::None,
    },
    Case {
        name: "ice-restart",
        description: "one direct call; after poll 6 the caller runs restartIce() and a new offer/answer",
        calls: 1,
        turn: None,
        relay_only: false,
        action: Action::RestartIce,
    },
    Case {
        name: "track-stop",
        description: "one direct call; after poll 6 the caller stops its camera track (audio continues)",
        calls: 1,
        turn: None,
        relay_only: false,
        action: Action::StopVideo,
    },
];

/// The properties a case must show, from the scenario alone (see shared/tests/fixtures.rs).
fn expected(case: &Case) -> Value {
    let pcs: Vec<String> = (1..=case.calls)
        .flat_map(|n| [format!("call{n}-a"), format!("call{n}-b")])
        .collect();
    let mut e = json!({
        "description": case.description,
        "connections": pcs,
        "using_relay": case.relay_only,
        "relay_protocol": if case.relay_only { case.turn } else { None },
        // Fake audio alone is tens of kbps; video at 640x480 stays far below 5 Mbps on loopback.
        "floor_kbps": 10.0,
        "floor_from_interval": 2,
        "ceiling_kbps": 5000.0,
        "max_rtt_ms": 50.0,
        // Loopback loses nothing; a little slack for a busy machine.
        "max_loss_pct": 2.0,
        "spike_factor": 3.0,
    });
    // The findings the scenario causes, and those it may cause within the recording's seconds
    // (a stopped track is silent from 4.5 s on, and a finding holds 3 s before it is raised).
    let relay_tcp = case.relay_only && case.turn == Some("tcp");
    e["findings"] = match case.action {
        Action::RestartIce => json!(["connection-unstable"]),
        _ if relay_tcp => json!(["relay-tcp"]),
        _ => json!([]),
    };
    e["findings_allowed"] = match case.action {
        Action::StopVideo => json!(["no-media-received", "video-frozen"]),
        _ => json!([]),
    };
    if case.action != Action::None {
        // Intervals up to this poll and after it are separate phases for the spike rule.
        // Intervals count from 0 per connection (interval i ends at poll i, the first has no
        // rates); the action runs right after poll ACTION_AFTER_POLL - 1, so interval ACTION_AFTER_POLL
        // spans it and starts the second phase.
        e["second_phase_from_interval"] = json!(ACTION_AFTER_POLL);
    }
    if case.action == Action::StopVideo {
        // One interval of grace after the stop, then the caller's video must be silent.
        e["stopped_video"] = json!({
            "sender": "call1-a",
            "receiver": "call1-b",
            "from_interval": ACTION_AFTER_POLL + 1,
            "max_video_kbps": 5.0
        });
    }
    e
}

/// Trims one poll: kept report types and members only, the TURN server's host hidden, each ICE
/// username fragment replaced by a pseudonym (`ufrag-1`, ... in order of appearance: an ICE
/// restart still shows as a change).
fn sanitize_poll(poll: Value, ufrags: &mut Vec<String>) -> Value {
    let pcs = poll.as_array().cloned().unwrap_or_default();
    let pcs: Vec<Value> = pcs
        .into_iter()
        .map(|pc| {
            let reports: Vec<Value> = pc["reports"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| {
                    let members = kept_members(r["type"].as_str().unwrap_or_default())?;
                    let obj: Map<String, Value> = r
                        .as_object()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(k, _)| members.contains(&k.as_str()) || EXTRA_MEMBERS.contains(&k.as_str()))
                        .map(|(k, v)| match (k.as_str(), &v) {
                            ("url", Value::String(url)) => (k, Value::String(hide_host(url))),
                            ("iceLocalUsernameFragment", Value::String(ufrag)) => {
                                let n = match ufrags.iter().position(|u| u == ufrag) {
                                    Some(i) => i + 1,
                                    None => {
                                        ufrags.push(ufrag.clone());
                                        ufrags.len()
                                    }
                                };
                                (k, Value::String(format!("ufrag-{n}")))
                            }
                            _ => (k, v),
                        })
                        .collect();
                    Some(Value::Object(obj))
                })
                .collect();
            json!({"pc": pc["pc"], "reports": reports})
        })
        .collect();
    Value::Array(pcs)
}

/// `turn:127.0.0.1:3478?transport=udp` becomes `turn:turn.invalid?transport=udp`.
fn hide_host(url: &str) -> String {
    let (scheme, rest) = url.split_once(':').unwrap_or(("turn", url));
    let query = rest.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    format!("{scheme}:turn.invalid{query}")
}

/// Fails when a JSON string in the text still starts with a dotted-quad IPv4 address.
fn assert_no_ip(text: &str) {
    for (i, _) in text.match_indices('"') {
        let head: String = text[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let groups: Vec<&str> = head.split('.').collect();
        let is_ip = groups.len() == 4 && groups.iter().all(|g| (1..=3).contains(&g.len()));
        assert!(!is_ip, "an IP address survived sanitising: {head}");
    }
    assert!(
        !text.contains("::"),
        "something like an IPv6 address survived sanitising"
    );
}

async fn wait_connected(client: &Client) {
    let start = Instant::now();
    loop {
        let state = client
            .execute("return window.lab && [window.lab.state, window.lab.error]", vec![])
            .await
            .unwrap_or(Value::Null);
        if state[0] == "connected" {
            return;
        }
        assert!(state[0] != "failed", "lab call failed: {state}");
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "lab call did not connect: {state}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn record(client: &Client, base: &str, turn_port: u16, case: &Case, out_dir: &Path) {
    let mut url = format!("{base}/lab?calls={}", case.calls);
    if let Some(transport) = case.turn {
        url.push_str(&format!(
            "&turn=turn:127.0.0.1:{turn_port}&transport={transport}&username={TURN_USER}&credential={TURN_PASSWORD}"
        ));
        if !case.relay_only {
            url.push_str("&policy=all");
        }
    }
    client.goto(&url).await.expect("open lab page");
    wait_connected(client).await;
    let mut snapshots = Vec::new();
    let mut ufrags = Vec::new();
    let mut next = Instant::now();
    for poll in 0..POLLS {
        tokio::time::sleep_until(next.into()).await;
        next += POLL_INTERVAL;
        let raw = client
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 window.lab.snapshot().then(done, (e) => done({error: String(e)}));",
                vec![],
            )
            .await
            .expect("getStats poll");
        assert!(raw.get("error").is_none(), "getStats failed: {raw}");
        snapshots.push(sanitize_poll(raw, &mut ufrags));
        if poll + 1 == ACTION_AFTER_POLL {
            let script = match case.action {
                Action::None => continue,
                Action::RestartIce => {
                    "const done = arguments[arguments.length - 1]; window.lab.restartIce().then(done, (e) => done(String(e)));"
                }
                Action::StopVideo => "const done = arguments[arguments.length - 1]; done(window.lab.stopVideo());",
            };
            let result = client.execute_async(script, vec![]).await.expect("scripted action");
            eprintln!("  {}: action after poll {}: {result}", case.name, poll + 1);
        }
    }
    let user_agent = client
        .execute("return navigator.userAgent", vec![])
        .await
        .unwrap_or(Value::Null);
    let recording = json!({
        "meta": {
            "case": case.name,
            "description": case.description,
            "browser": user_agent,
            "poll_interval_ms": POLL_INTERVAL.as_millis() as u64,
            "recorded_by": "e2e/src/bin/record_fixtures.rs",
        }
    });
    // One poll per line: small diffs when re-recorded, still a single JSON object.
    let mut text = String::from("{\"meta\": ");
    text.push_str(&recording["meta"].to_string());
    text.push_str(",\n\"snapshots\": [\n");
    let lines: Vec<String> = snapshots.iter().map(Value::to_string).collect();
    text.push_str(&lines.join(",\n"));
    text.push_str("\n]}\n");
    assert_no_ip(&text);
    serde_json::from_str::<Value>(&text).expect("the recording is valid JSON");
    let dir = out_dir.join(case.name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("recording.json"), &text).unwrap();
    let expected = serde_json::to_string_pretty(&expected(case)).unwrap() + "\n";
    std::fs::write(dir.join("expected.json"), expected).unwrap();
    eprintln!("  {}: {} polls, {} KB", case.name, snapshots.len(), text.len() / 1024);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| wanted.is_empty() || wanted.iter().any(|w| w == c.name))
        .collect();
    assert!(
        !cases.is_empty(),
        "no such case; cases: {}",
        CASES.iter().map(|c| c.name).collect::<Vec<_>>().join(" ")
    );
    let out_dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tests/fixtures");

    let base = vitals_e2e::lab::serve().await;

    let turn = Turn::start();
    let turn_port = turn.port;
    let profile = tempfile::tempdir().unwrap();
    let (_driver, client) = webdriver(profile.path(), None).await;
    for case in cases {
        eprintln!("recording {}", case.name);
        record(&client, &base, turn_port, case, &out_dir).await;
    }
    let _ = client.close().await;
}
