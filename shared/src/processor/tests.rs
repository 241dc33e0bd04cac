//! Unit tests of the processor on hand-made snapshots (recorded fixtures live in shared/tests).

use super::*;
use crate::stats::parse_report;
use serde_json::{json, Value};

/// A snapshot of one connection: audio and video both ways, one selected pair.
fn snap(t_ms: f64, out_bytes: f64, in_bytes: f64, recv: f64, lost: f64, relay: bool) -> Vec<RawReport> {
    let local_type = if relay { "relay" } else { "host" };
    let mut local = json!({"type": "local-candidate", "id": "L1", "candidateType": local_type});
    if relay {
        local["relayProtocol"] = json!("udp");
        local["url"] = json!("turn:turn.example.com:3478?transport=udp");
    }
    let reports: Vec<Value> = vec![
        json!({"type": "outbound-rtp", "id": "OV", "kind": "video", "ssrc": 1, "timestamp": t_ms, "bytesSent": out_bytes, "frameWidth": 640, "frameHeight": 480, "framesPerSecond": 30, "qualityLimitationReason": "none"}),
        json!({"type": "outbound-rtp", "id": "OA", "kind": "audio", "ssrc": 2, "timestamp": t_ms, "bytesSent": out_bytes / 10.0}),
        json!({"type": "inbound-rtp", "id": "IV", "kind": "video", "ssrc": 3, "timestamp": t_ms, "bytesReceived": in_bytes, "packetsReceived": recv, "packetsLost": lost, "jitter": 0.012, "frameWidth": 640, "frameHeight": 480, "freezeCount": 0}),
        json!({"type": "remote-inbound-rtp", "id": "RV", "kind": "video", "roundTripTime": 0.05, "fractionLost": 0.02}),
        json!({"type": "transport", "id": "T1", "selectedCandidatePairId": "CP1"}),
        json!({"type": "candidate-pair", "id": "CP1", "localCandidateId": "L1", "remoteCandidateId": "R1", "state": "succeeded", "nominated": true, "currentRoundTripTime": 0.03}),
        json!({"type": "candidate-pair", "id": "CP2", "localCandidateId": "L2", "remoteCandidateId": "R1", "state": "failed"}),
        local,
        json!({"type": "local-candidate", "id": "L2", "candidateType": "relay", "relayProtocol": "tcp"}),
        json!({"type": "remote-candidate", "id": "R1", "candidateType": "host"}),
        json!({"type": "codec", "id": "C1", "mimeType": "video/VP8"}),
    ];
    reports.into_iter().map(parse_report).collect()
}

fn run(p: &mut Processor, input: Input) -> Vec<Output> {
    p.handle_input(input);
    std::iter::from_fn(|| p.poll_output()).collect()
}

fn peer(outputs: &[Output]) -> Option<&PeerMetrics> {
    outputs.iter().find_map(|o| match o {
        Output::PeerMetrics(m) => Some(m),
        _ => None,
    })
}

#[test]
fn first_snapshot_has_rtt_and_relay_but_no_rates() {
    let mut p = Processor::new();
    let out = run(
        &mut p,
        Input::Snapshot {
            now_ms: 1000.0,
            pc: "pc1".into(),
            reports: snap(1000.0, 1000.0, 1000.0, 10.0, 0.0, true),
        },
    );
    let m = peer(&out).unwrap();
    assert_eq!(m.upload_kbps, None);
    assert_eq!(m.download_kbps, None);
    assert_eq!(m.rtt_ms, Some(30.0));
    assert_eq!(m.rtcp_rtt_ms, Some(50.0));
    assert!(m.relay.using_relay);
    assert_eq!(m.relay.protocol.as_deref(), Some("udp"));
}

#[test]
fn rates_loss_and_jitter_per_interval() {
    let mut p = Processor::new();
    run(
        &mut p,
        Input::Snapshot {
            now_ms: 1000.0,
            pc: "pc1".into(),
            reports: snap(1000.0, 10_000.0, 20_000.0, 100.0, 0.0, false),
        },
    );
    // One second later: 125,000 bytes more video out (1000 kbps), 12,500 audio (100 kbps).
    let out = run(
        &mut p,
        Input::Snapshot {
            now_ms: 2000.0,
            pc: "pc1".into(),
            reports: snap(2000.0, 135_000.0, 45_000.0, 195.0, 5.0, false),
        },
    );
    let m = peer(&out).unwrap();
    assert!((m.upload_video_kbps.unwrap() - 1000.0).abs() < 1e-9);
    assert!((m.upload_audio_kbps.unwrap() - 100.0).abs() < 1e-9);
    assert!((m.upload_kbps.unwrap() - 1100.0).abs() < 1e-9);
    assert!((m.download_kbps.unwrap() - 200.0).abs() < 1e-9);
    assert!((m.loss_in_pct.unwrap() - 5.0).abs() < 1e-9, "5 lost of 100 sent");
    assert!((m.loss_out_pct.unwrap() - 2.0).abs() < 1e-9);
    assert!((m.jitter_ms.unwrap() - 12.0).abs() < 1e-9);
    assert!(
        !m.relay.using_relay,
        "relay candidates exist but the selected pair is direct"
    );
    assert_eq!(m.quality, Some(QualityClass::Poor), "5 % loss is poor");
}

#[test]
fn counters_going_backwards_or_time_standing_still_give_no_sample() {
    let mut p = Processor::new();
    run(
        &mut p,
        Input::Snapshot {
            now_ms: 1000.0,
            pc: "pc1".into(),
            reports: snap(1000.0, 90_000.0, 90_000.0, 100.0, 0.0, false),
        },
    );
    let out = run(
        &mut p,
        Input::Snapshot {
            now_ms: 2000.0,
            pc: "pc1".into(),
            reports: snap(2000.0, 10.0, 10.0, 5.0, 0.0, false),
        },
    );
    let m = peer(&out).unwrap();
    assert_eq!(m.upload_kbps, None);
    assert_eq!(m.download_kbps, None);
    assert_eq!(m.loss_in_pct, None);
    let out = run(
        &mut p,
        Input::Snapshot {
            now_ms: 2000.0,
            pc: "pc1".into(),
            reports: snap(2000.0, 20.0, 20.0, 6.0, 0.0, false),
        },
    );
    assert!(peer(&out).is_none(), "Δt = 0 reports nothing");
}

#[test]
fn tab_aggregates_connections_and_drops_closed_ones() {
    let mut p = Processor::new();
    for (pc, relay) in [("a", false), ("b", true)] {
        run(
            &mut p,
            Input::Snapshot {
                now_ms: 1000.0,
                pc: pc.into(),
                reports: snap(1000.0, 0.0, 0.0, 0.0, 0.0, relay),
            },
        );
    }
    let mut last = None;
    for pc in ["a", "b"] {
        let out = run(
            &mut p,
            Input::Snapshot {
                now_ms: 2000.0,
                pc: pc.into(),
                reports: snap(2000.0, 12_500.0, 12_500.0, 100.0, 0.0, pc == "b"),
            },
        );
        last = out.into_iter().rev().find_map(|o| match o {
            Output::TabMetrics(t) => Some(t),
            _ => None,
        });
    }
    let tab = last.unwrap();
    assert!((tab.figures.upload_kbps.unwrap() - 2.0 * 110.0).abs() < 1e-9);
    assert!(tab.figures.using_relay);
    assert_eq!(tab.peers.len(), 2);
    let out = run(&mut p, Input::Closed { pc: "b".into() });
    let tab = out.into_iter().find_map(|o| match o {
        Output::TabMetrics(t) => Some(t),
        _ => None,
    });
    let tab = tab.unwrap();
    assert!(!tab.figures.using_relay);
    assert_eq!(tab.peers.len(), 1);
}

#[test]
fn firefox_selected_flag_is_the_fallback() {
    let reports: Vec<RawReport> = [
        json!({"type": "candidate-pair", "id": "P1", "localCandidateId": "L1", "remoteCandidateId": "R1", "selected": false, "currentRoundTripTime": 0.5}),
        json!({"type": "candidate-pair", "id": "P2", "localCandidateId": "L2", "remoteCandidateId": "R1", "selected": true, "currentRoundTripTime": 0.02}),
        json!({"type": "local-candidate", "id": "L1", "candidateType": "relay"}),
        json!({"type": "local-candidate", "id": "L2", "candidateType": "host"}),
    ]
    .into_iter()
    .map(parse_report)
    .collect();
    let mut p = Processor::new();
    let out = run(
        &mut p,
        Input::Snapshot {
            now_ms: 1.0,
            pc: "x".into(),
            reports,
        },
    );
    let m = peer(&out).unwrap();
    assert_eq!(m.rtt_ms, Some(20.0));
    assert!(!m.relay.using_relay);
}

/// One connection's link reports: a transport, its selected pair and the hook's states.
fn link(ufrag: &str, pair: &str, changes: f64, responses: f64, state: &str) -> Vec<RawReport> {
    [
        json!({"type": "transport", "id": "T1", "selectedCandidatePairId": pair, "iceLocalUsernameFragment": ufrag, "selectedCandidatePairChanges": changes}),
        json!({"type": "candidate-pair", "id": pair, "localCandidateId": "L1", "remoteCandidateId": "R1", "state": "succeeded", "responsesReceived": responses, "availableOutgoingBitrate": 300_000}),
        json!({"type": "local-candidate", "id": "L1", "candidateType": "host"}),
        json!({"type": "remote-candidate", "id": "R1", "candidateType": "host"}),
        json!({"type": "peer-connection", "connectionState": state, "iceConnectionState": state}),
    ]
    .into_iter()
    .map(parse_report)
    .collect()
}

/// A connection polled before it has a pair: Chromium's transport then reads
/// `selectedCandidatePairChanges` 0 and no `selectedCandidatePairId`, and 2 once connected (seen
/// in Chromium 156 on a loopback call). With an SFU (signalling over HTTP, ICE after the answer)
/// the first poll often comes before that, and ICE may move to another pair before DTLS is done
/// or in its first seconds connected. Setting the connection up is not a switch.
#[test]
fn setting_up_and_settling_ice_is_not_a_switch_and_a_later_change_is() {
    let mut p = Processor::new();
    let mut at = |t: f64, reports: Vec<RawReport>| {
        let out = run(
            &mut p,
            Input::Snapshot {
                now_ms: t,
                pc: "pc1".into(),
                reports,
            },
        );
        peer(&out).unwrap().clone()
    };
    let unselected: Vec<RawReport> = [
        json!({"type": "transport", "id": "T1", "iceLocalUsernameFragment": "u1", "selectedCandidatePairChanges": 0}),
        json!({"type": "peer-connection", "connectionState": "connecting", "iceConnectionState": "checking"}),
    ]
    .into_iter()
    .map(parse_report)
    .collect();
    let m = at(1_000.0, unselected);
    assert_eq!(m.connection.pair_switches, 0);
    // ICE has a pair, DTLS is not done; then ICE settles on another pair and it connects.
    let m = at(2_000.0, link("u1", "CP1", 1.0, 1.0, "connecting"));
    assert_eq!(m.connection.pair_switches, 0);
    let m = at(3_000.0, link("u1", "CP2", 2.0, 3.0, "connected"));
    assert_eq!((m.connection.ice_restarts, m.connection.pair_switches), (0, 0));
    // Connected since 3 s: ICE still moves to a better pair (seen 3-4 s after connecting with
    // Janus, which nominates aggressively).
    let m = at(6_500.0, link("u1", "CP3", 3.0, 4.0, "connected"));
    assert_eq!(m.connection.pair_switches, 0);
    // Settled, moving to another pair is a switch.
    let m = at(13_000.0, link("u1", "CP3", 3.0, 5.0, "connected"));
    assert_eq!(m.connection.pair_switches, 0);
    let m = at(14_000.0, link("u1", "CP4", 4.0, 6.0, "connected"));
    assert_eq!(m.connection.pair_switches, 1);
}

#[test]
fn connection_states_restarts_switches_and_time_since_an_answer() {
    let mut p = Processor::new();
    let mut at = |t: f64, reports: Vec<RawReport>| {
        let out = run(
            &mut p,
            Input::Snapshot {
                now_ms: t,
                pc: "pc1".into(),
                reports,
            },
        );
        peer(&out).unwrap().clone()
    };
    let m = at(1_000.0, link("u1", "CP1", 1.0, 5.0, "connected"));
    assert_eq!(m.connection.state.as_deref(), Some("connected"));
    assert_eq!(m.connection.since_response_ms, Some(0.0));
    assert_eq!(m.available_out_kbps, Some(300.0));
    // No answer for 2 s, then the connection drops.
    at(2_000.0, link("u1", "CP1", 1.0, 5.0, "connected"));
    let m = at(3_000.0, link("u1", "CP1", 1.0, 5.0, "disconnected"));
    assert_eq!(m.connection.since_response_ms, Some(2_000.0));
    assert_eq!(m.connection.ice_state.as_deref(), Some("disconnected"));
    assert_eq!((m.connection.ice_restarts, m.connection.pair_switches), (0, 0));
    // An ICE restart (new ufrag) onto a new pair that answers.
    let m = at(4_000.0, link("u2", "CP2", 2.0, 1.0, "connected"));
    assert_eq!((m.connection.ice_restarts, m.connection.pair_switches), (1, 1));
    assert_eq!(m.connection.since_response_ms, Some(0.0));
    // The restart count stays; switches are per interval.
    let m = at(5_000.0, link("u2", "CP2", 2.0, 2.0, "connected"));
    assert_eq!((m.connection.ice_restarts, m.connection.pair_switches), (1, 0));
}

#[test]
fn findings_come_out_raised_and_in_the_tab_then_resolved_when_the_connection_closes() {
    let mut p = Processor::new();
    let slow = |t: f64| {
        let mut reports = snap(t, t * 100.0, t * 100.0, t, 0.0, false);
        for r in &mut reports {
            if let RawReport::CandidatePair(pair) = r {
                pair.current_round_trip_time = Some(0.5);
            }
            if let RawReport::RemoteInboundRtp(r) = r {
                r.fraction_lost = Some(0.0);
            }
        }
        reports
    };
    let mut raised = Vec::new();
    let mut tab = None;
    for s in 1..=6 {
        let t = f64::from(s) * 1000.0;
        for out in run(
            &mut p,
            Input::Snapshot {
                now_ms: t,
                pc: "pc1".into(),
                reports: slow(t),
            },
        ) {
            match out {
                Output::Finding(crate::diagnosis::Change::Raised(f)) => raised.push((t, f.id)),
                Output::TabMetrics(m) => tab = Some(m),
                _ => {}
            }
        }
    }
    assert_eq!(raised, [(4_000.0, crate::finding::FindingId::HighLatency)]);
    let tab = tab.unwrap();
    assert_eq!(tab.findings.len(), 1);
    assert!(tab.findings[0].title.contains("500 ms"), "{}", tab.findings[0].title);
    let out = run(&mut p, Input::Closed { pc: "pc1".into() });
    let resolved: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Finding(crate::diagnosis::Change::Resolved(f)) => Some((f.id, f.until_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(resolved, [(crate::finding::FindingId::HighLatency, Some(6_000.0))]);
    assert!(p.latest().unwrap().findings.is_empty());
}
