//! `collector analyze` end to end (the built binary on a recorded fixture, on stdin and on junk), and `collector meeting-id`.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../shared/tests/fixtures/{case}/recording.json"))
}

fn analyze(arg: &str, stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["analyze", arg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the collector binary");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Every stdout line as JSON, split into intervals and summaries by `kind`.
fn lines(out: &Output) -> (Vec<Value>, Vec<Value>) {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let values: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let (intervals, summaries): (Vec<Value>, Vec<Value>) = values.into_iter().partition(|v| v["kind"] == "interval");
    assert!(summaries.iter().all(|v| v["kind"] == "summary"), "{summaries:?}");
    (intervals, summaries)
}

#[test]
fn a_direct_recording_gives_intervals_then_summaries() {
    let out = analyze(fixture("direct").to_str().unwrap(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (intervals, summaries) = lines(&out);
    // Two connections polled twelve times: one interval per connection per poll.
    assert_eq!(intervals.len(), 24);
    assert_eq!(summaries.len(), 2);
    let text = String::from_utf8(out.stdout).unwrap();
    let last_interval = text.lines().position(|l| l.contains("\"kind\":\"summary\"")).unwrap();
    assert_eq!(last_interval, 24, "summaries come after every interval");
    assert!(intervals[0]["upload_kbps"].is_null(), "the first interval has no rate");
    assert!(intervals[2]["upload_kbps"].as_f64().unwrap() > 0.0, "{}", intervals[2]);
    for s in &summaries {
        assert_eq!(s["using_relay"], false, "{s}");
        assert!(s["avg_upload_kbps"].as_f64().unwrap() > 10.0, "{s}");
        assert!(s["avg_rtt_ms"].as_f64().unwrap() < 50.0, "{s}");
    }
}

#[test]
fn stdin_is_read_for_dash() {
    let recording = std::fs::read(fixture("turn-tcp")).unwrap();
    let out = analyze("-", Some(&recording));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, summaries) = lines(&out);
    assert_eq!(summaries.len(), 2);
    for s in &summaries {
        assert_eq!(s["using_relay"], true, "{s}");
        assert_eq!(s["relay_protocol"], "tcp", "{s}");
    }
}

#[test]
fn junk_exits_2_with_a_message_on_stderr() {
    for junk in [&b"this is not json"[..], b"{\"snapshots\": 42}", b"[]"] {
        let out = analyze("-", Some(junk));
        assert_eq!(out.status.code(), Some(2), "input {:?}", String::from_utf8_lossy(junk));
        assert!(out.stdout.is_empty(), "nothing on stdout for junk");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not a recording"), "stderr: {stderr}");
    }
    let out = analyze("/nonexistent/recording.json", None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

/// `collector meeting-id` prints what an extension with the same salt uploads for the page.
#[test]
fn meeting_id_prints_the_hash_an_extension_with_the_salt_uploads() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_collector"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["meeting-id", "--salt", "org-salt", "https://meet.example.com/abc?pwd=x"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // hashlib.sha256(b"org-salt\nhttps://meet.example.com/abc").hexdigest()[:32]
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "h-0d392e593d3e527a30427ad933d40b15\n"
    );
    for bad in [
        &["meeting-id", "--salt", " ", "https://meet.example.com/abc"][..],
        &["meeting-id", "--salt", "s", "chrome://settings"][..],
    ] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
}
