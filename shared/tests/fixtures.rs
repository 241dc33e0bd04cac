//! Data-driven tests of the processor on real getStats recordings: every folder in tests/fixtures is one case.
//!
//! Each folder holds `recording.json` (recorded from headless Chromium by
//! e2e/src/bin/record_fixtures.rs, see scripts/record-fixtures) and `expected.json`, the
//! properties the scenario implies (relay and protocol, connections, bitrate floor and ceiling,
//! loopback RTT, no negative and no spike, a stopped track going quiet, the findings the scenario
//! causes and no other warning). The expectations come
//! from the scenario, not from the processor's output, so a processor bug fails them.

use serde_json::Value;
use std::path::{Path, PathBuf};
use vitals_shared::diagnosis::{Change, Diagnosis};
use vitals_shared::recording::{analyze, Analysis};
use vitals_shared::severity::Severity;
use vitals_shared::PeerMetrics;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn num(expected: &Value, key: &str) -> f64 {
    expected[key]
        .as_f64()
        .unwrap_or_else(|| panic!("expected.json: `{key}` must be a number"))
}

fn index(expected: &Value, key: &str) -> usize {
    expected[key]
        .as_u64()
        .unwrap_or_else(|| panic!("expected.json: `{key}` must be a count")) as usize
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Every bitrate of an interval with its name.
fn bitrates(m: &PeerMetrics) -> [(&'static str, Option<f64>); 6] {
    [
        ("upload_kbps", m.upload_kbps),
        ("upload_audio_kbps", m.upload_audio_kbps),
        ("upload_video_kbps", m.upload_video_kbps),
        ("download_kbps", m.download_kbps),
        ("download_audio_kbps", m.download_audio_kbps),
        ("download_video_kbps", m.download_video_kbps),
    ]
}

/// Checks one case; returns every violated expectation (empty when the case passes).
fn check(analysis: &Analysis, polls: usize, expected: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    let mut fail = |s: String| failures.push(s);

    let want_pcs: Vec<&str> = expected["connections"]
        .as_array()
        .expect("expected.json: `connections` must be a list")
        .iter()
        .map(|v| v.as_str().expect("connection ids are strings"))
        .collect();
    let got_pcs: Vec<&str> = analysis.summaries.iter().map(|s| s.pc.as_str()).collect();
    let mut want_sorted = want_pcs.clone();
    want_sorted.sort_unstable();
    if got_pcs != want_sorted {
        fail(format!("connections: expected {want_sorted:?}, got {got_pcs:?}"));
    }

    let want_relay = expected["using_relay"].as_bool().expect("`using_relay` is a boolean");
    let want_protocol = expected["relay_protocol"].as_str();
    let floor = num(expected, "floor_kbps");
    let floor_from = index(expected, "floor_from_interval");
    let ceiling = num(expected, "ceiling_kbps");
    let max_rtt = num(expected, "max_rtt_ms");
    let max_loss = num(expected, "max_loss_pct");
    let spike_factor = num(expected, "spike_factor");
    let second_phase = expected["second_phase_from_interval"].as_u64().map(|v| v as usize);

    for summary in &analysis.summaries {
        if summary.using_relay != want_relay || summary.relay_protocol.as_deref() != want_protocol {
            fail(format!(
                "{}: summary relay {} {:?}, expected {want_relay} {want_protocol:?}",
                summary.pc, summary.using_relay, summary.relay_protocol
            ));
        }
    }

    for pc in &want_pcs {
        let ms: Vec<&PeerMetrics> = analysis.intervals.iter().filter(|m| m.pc == *pc).collect();
        if ms.len() != polls {
            fail(format!("{pc}: {} intervals for {polls} polls", ms.len()));
            continue;
        }
        if let Some((name, v)) = bitrates(ms[0]).into_iter().find(|(_, v)| v.is_some()) {
            fail(format!("{pc}: the first interval has a rate: {name} = {v:?}"));
        }
        for (i, m) in ms.iter().enumerate() {
            for (name, v) in bitrates(m) {
                match v {
                    Some(x) if !(0.0..=ceiling).contains(&x) => {
                        fail(format!("{pc} interval {i}: {name} = {x} outside 0..={ceiling}"));
                    }
                    _ => {}
                }
            }
            if i >= floor_from {
                for (name, v) in [("upload_kbps", m.upload_kbps), ("download_kbps", m.download_kbps)] {
                    if v.is_none_or(|x| x < floor) {
                        fail(format!("{pc} interval {i}: {name} = {v:?}, media flows so >= {floor}"));
                    }
                }
            }
            match m.rtt_ms {
                Some(rtt) if (0.0..=max_rtt).contains(&rtt) => {}
                other => fail(format!(
                    "{pc} interval {i}: rtt_ms {other:?}, expected 0..={max_rtt} on loopback"
                )),
            }
            if let Some(rtt) = m.rtcp_rtt_ms.filter(|r| !(0.0..=max_rtt).contains(r)) {
                fail(format!("{pc} interval {i}: rtcp_rtt_ms {rtt} outside 0..={max_rtt}"));
            }
            for (name, v) in [("loss_in_pct", m.loss_in_pct), ("loss_out_pct", m.loss_out_pct)] {
                if let Some(x) = v.filter(|x| !(0.0..=max_loss).contains(x)) {
                    fail(format!("{pc} interval {i}: {name} {x} outside 0..={max_loss}"));
                }
            }
            if m.relay.using_relay != want_relay || m.relay.protocol.as_deref() != want_protocol {
                fail(format!(
                    "{pc} interval {i}: relay {} {:?}, expected {want_relay} {want_protocol:?}",
                    m.relay.using_relay, m.relay.protocol
                ));
            }
        }
        // No spike: within a phase (before and after a scripted action), no interval's bitrate
        // exceeds spike_factor times the phase's median.
        // Phases as (first, end) interval indices; interval 0 has no rates.
        let phases: Vec<(usize, usize)> = match second_phase {
            Some(k) => vec![(1, k), (k, ms.len())],
            None => vec![(1, ms.len())],
        };
        for (first, end) in phases {
            for (name, get) in [
                (
                    "upload_kbps",
                    (|m: &PeerMetrics| m.upload_kbps) as fn(&PeerMetrics) -> Option<f64>,
                ),
                ("download_kbps", |m: &PeerMetrics| m.download_kbps),
            ] {
                let values: Vec<(usize, f64)> = (first..end).filter_map(|i| get(ms[i]).map(|v| (i, v))).collect();
                let Some(med) = median(values.iter().map(|(_, v)| *v).collect()) else {
                    continue;
                };
                for (i, v) in values {
                    if v > spike_factor * med {
                        fail(format!(
                            "{pc} interval {i}: {name} {v:.1} is a spike (> {spike_factor} x median {med:.1})"
                        ));
                    }
                }
            }
        }
    }

    if let Some(stop) = expected.get("stopped_video") {
        let sender = stop["sender"].as_str().expect("stopped_video.sender");
        let receiver = stop["receiver"].as_str().expect("stopped_video.receiver");
        let from = index(stop, "from_interval");
        let quiet = num(stop, "max_video_kbps");
        let of = |pc: &str| -> Vec<&PeerMetrics> { analysis.intervals.iter().filter(|m| m.pc == pc).collect() };
        let (sent, received) = (of(sender), of(receiver));
        // The video flowed before the stop, so a silent result afterwards means something.
        let before = second_phase.unwrap_or(from).saturating_sub(1);
        if sent
            .get(before)
            .and_then(|m| m.upload_video_kbps)
            .is_none_or(|v| v < floor)
        {
            fail(format!(
                "{sender}: video was not flowing before the stop (interval {before})"
            ));
        }
        for i in from..polls {
            let up = sent.get(i).and_then(|m| m.upload_video_kbps);
            let down = received.get(i).and_then(|m| m.download_video_kbps);
            if up.is_some_and(|v| v > quiet) || down.is_some_and(|v| v > quiet) {
                fail(format!(
                    "interval {i}: video after the stop: {sender} sends {up:?}, {receiver} receives {down:?} kbps (max {quiet})"
                ));
            }
        }
    }
    for finding in findings_check(analysis, expected) {
        fail(finding);
    }
    failures
}

/// The diagnosis of the recording: every finding in `findings` (what the scenario causes) is
/// raised, and no warning or critical finding is raised that is in neither `findings` nor
/// `findings_allowed` (what the scenario may cause within the recording's few seconds).
fn findings_check(analysis: &Analysis, expected: &Value) -> Vec<String> {
    let list = |key: &str| -> Vec<String> {
        expected[key]
            .as_array()
            .unwrap_or_else(|| panic!("expected.json: `{key}` must be a list of finding ids"))
            .iter()
            .map(|v| v.as_str().expect("finding ids are strings").to_owned())
            .collect()
    };
    let (required, allowed) = (list("findings"), list("findings_allowed"));
    let mut intervals: Vec<&PeerMetrics> = analysis.intervals.iter().collect();
    intervals.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    let mut diagnosis = Diagnosis::new();
    let mut raised: Vec<(String, Severity, String)> = Vec::new();
    for m in intervals {
        for change in diagnosis.observe(m) {
            if let Change::Raised(f) = change {
                raised.push((f.id.as_str().to_owned(), f.severity, f.pc.clone()));
            }
        }
    }
    let mut failures = Vec::new();
    for id in &required {
        if !raised.iter().any(|(r, _, _)| r == id) {
            failures.push(format!("finding {id} not raised (raised: {raised:?})"));
        }
    }
    for (id, severity, pc) in &raised {
        if *severity >= Severity::Warning && !required.contains(id) && !allowed.contains(id) {
            failures.push(format!(
                "{pc}: finding {id} ({severity:?}) raised, the scenario has no cause for it"
            ));
        }
    }
    failures
}

/// Loads a case folder: the analysis, the number of polls, and the expectations.
fn load(dir: &Path) -> (Analysis, usize, Value) {
    let recording = std::fs::read_to_string(dir.join("recording.json")).expect("recording.json");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"))
            .expect("expected.json is JSON");
    let polls = serde_json::from_str::<Value>(&recording).expect("recording is JSON")["snapshots"]
        .as_array()
        .map_or(0, Vec::len);
    let analysis = analyze(&recording).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    (analysis, polls, expected)
}

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("shared/tests/fixtures")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_recorded_case_meets_its_expectations() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 6, "expected the six recorded cases, found {dirs:?}");
    let mut report = Vec::new();
    for dir in &dirs {
        let (analysis, polls, expected) = load(dir);
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        report.extend(
            check(&analysis, polls, &expected)
                .into_iter()
                .map(|f| format!("{name}: {f}")),
        );
    }
    assert!(
        report.is_empty(),
        "fixture expectations violated:\n{}",
        report.join("\n")
    );
}

/// The checks can fail: a wrong expectation on real data is reported, not passed.
#[test]
fn a_wrong_expectation_is_caught() {
    let (analysis, polls, mut expected) = load(&fixtures_dir().join("turn-udp"));
    assert!(check(&analysis, polls, &expected).is_empty());
    expected["relay_protocol"] = "tcp".into();
    expected["max_rtt_ms"] = 0.0.into();
    let failures = check(&analysis, polls, &expected);
    assert!(failures.iter().any(|f| f.contains("relay")), "{failures:?}");
    assert!(failures.iter().any(|f| f.contains("rtt_ms")), "{failures:?}");
}

/// Fixtures are public: no address, port or ICE credential member, no IPv4 literal.
#[test]
fn fixtures_carry_no_network_identity() {
    for dir in case_dirs() {
        let text = std::fs::read_to_string(dir.join("recording.json")).expect("recording.json");
        for member in [
            "\"address\"",
            "\"ip\"",
            "\"port\"",
            "\"relatedAddress\"",
            "\"usernameFragment\"",
            "127.0.0.1",
        ] {
            assert!(!text.contains(member), "{}: contains {member}", dir.display());
        }
        // The ICE username fragment only as the recorder's pseudonym.
        for (at, _) in text.match_indices("\"iceLocalUsernameFragment\":\"") {
            let value = &text[at + "\"iceLocalUsernameFragment\":\"".len()..];
            assert!(value.starts_with("ufrag-"), "{}: an ICE ufrag survived", dir.display());
        }
    }
}
