//! Unit tests of the detectors and their hysteresis, in simulated time.

use super::*;
use crate::metrics::{
    ConnectionInfo, Layer, LimitationShares, ReceivedAudio, ReceivedVideo, RelayInfo, SentAudio, SentVideo,
};
use crate::severity::Severity;

/// A clean interval of a two-way audio and video call at `at_ms`.
fn clean(at_ms: f64) -> PeerMetrics {
    PeerMetrics {
        pc: "pc1".into(),
        at_ms,
        interval_ms: 1000.0,
        upload_kbps: Some(1_200.0),
        upload_audio_kbps: Some(40.0),
        upload_video_kbps: Some(1_160.0),
        download_kbps: Some(1_200.0),
        rtt_ms: Some(40.0),
        loss_in_pct: Some(0.0),
        loss_out_pct: Some(0.0),
        jitter_ms: Some(4.0),
        relay: RelayInfo::default(),
        available_out_kbps: Some(2_500.0),
        target_kbps: Some(2_200.0),
        video_out: Some(SentVideo {
            width: Some(1280),
            height: Some(720),
            fps: Some(30.0),
            captured_width: Some(1280),
            captured_height: Some(720),
            limited: Some(LimitationShares::default()),
            frames_encoded: Some(30),
            retransmitted_pct: Some(0.5),
            layers: vec![Layer {
                active: true,
                target_kbps: Some(2_160.0),
                ..Layer::default()
            }],
            ..SentVideo::default()
        }),
        video_in: Some(ReceivedVideo {
            packets: Some(120),
            frames_decoded: Some(30),
            frozen_ms: Some(0.0),
            ..ReceivedVideo::default()
        }),
        audio_in: Some(ReceivedAudio {
            packets: Some(50),
            concealed_pct: Some(0.2),
            ..ReceivedAudio::default()
        }),
        audio_out: Some(SentAudio { level: Some(0.05) }),
        connection: ConnectionInfo {
            state: Some("connected".into()),
            ice_state: Some("connected".into()),
            since_response_ms: Some(1_000.0),
            ..ConnectionInfo::default()
        },
        carries_media: true,
        ..PeerMetrics::default()
    }
}

/// Feeds one interval a second from `from_s` to `to_s` (exclusive), each made by `make`; returns
/// every change with its time.
fn run(d: &mut Diagnosis, from_s: u32, to_s: u32, make: impl Fn(f64) -> PeerMetrics) -> Vec<(f64, Change)> {
    (from_s..to_s)
        .flat_map(|s| {
            let m = make(f64::from(s) * 1000.0);
            d.observe(&m).into_iter().map(move |c| (f64::from(s) * 1000.0, c))
        })
        .collect()
}

fn ids(changes: &[(f64, Change)]) -> Vec<(f64, &'static str, bool)> {
    changes
        .iter()
        .map(|(t, c)| match c {
            Change::Raised(f) => (*t, f.id.as_str(), true),
            Change::Resolved(f) => (*t, f.id.as_str(), false),
        })
        .collect()
}

#[test]
fn a_clean_call_raises_nothing() {
    let mut d = Diagnosis::new();
    assert_eq!(ids(&run(&mut d, 0, 300, clean)), []);
}

#[test]
fn raised_after_holding_resolved_after_clearing_and_never_flapping() {
    let mut d = Diagnosis::new();
    let lossy = |loss: f64| {
        move |t: f64| PeerMetrics {
            loss_in_pct: Some(loss),
            ..clean(t)
        }
    };
    // A blip shorter than the raise time raises nothing.
    assert_eq!(ids(&run(&mut d, 0, 2, lossy(8.0))), []);
    assert_eq!(ids(&run(&mut d, 2, 10, clean)), []);
    // Held: raised once, 3 s after it started, with its evidence.
    let changes = run(&mut d, 10, 20, lossy(8.0));
    assert_eq!(ids(&changes), [(13_000.0, "packet-loss", true)]);
    let Change::Raised(f) = &changes[0].1 else {
        unreachable!()
    };
    assert_eq!(f.since_ms, 10_000.0);
    assert!(f.title.contains("8.0 %"), "{}", f.title);
    assert_eq!(f.evidence[0].label, "lost on the way to you");
    // Hovering around the raise threshold (above the hold one) keeps it, with no new event.
    let hover = |t: f64| PeerMetrics {
        loss_in_pct: Some(if ((t / 1000.0) as u32).is_multiple_of(2) {
            6.0
        } else {
            4.0
        }),
        ..clean(t)
    };
    assert_eq!(ids(&run(&mut d, 20, 60, hover)), []);
    assert_eq!(d.active().len(), 1);
    // Clear for less than the clear time, then back: still the same finding.
    assert_eq!(ids(&run(&mut d, 60, 64, clean)), []);
    assert_eq!(ids(&run(&mut d, 64, 66, lossy(8.0))), []);
    // Clear for good: resolved once, 5 s after it cleared.
    let changes = run(&mut d, 66, 80, clean);
    assert_eq!(ids(&changes), [(71_000.0, "packet-loss", false)]);
    let Change::Resolved(f) = &changes[0].1 else {
        unreachable!()
    };
    assert_eq!((f.since_ms, f.until_ms), (10_000.0, Some(71_000.0)));
    assert!(d.active().is_empty());
}

#[test]
fn the_apps_own_cap_is_not_the_networks_fault() {
    let capped = |t: f64| {
        let mut m = clean(t);
        let v = m.video_out.as_mut().unwrap();
        v.limited = Some(LimitationShares {
            bandwidth: 1.0,
            ..Default::default()
        });
        v.height = Some(180);
        v.layers[0].target_kbps = Some(60.0);
        m.target_kbps = Some(92.0);
        m.upload_video_kbps = Some(58.0);
        m.available_out_kbps = Some(600.0);
        m
    };
    let mut d = Diagnosis::new();
    assert_eq!(ids(&run(&mut d, 0, 10, capped)), [(3_000.0, "app-capped", true)]);
    let f = &d.active()[0];
    assert!(
        f.title.contains("60 kbps") && f.title.contains("600 kbps"),
        "{}",
        f.title
    );
    assert_eq!(f.severity, Severity::Info);
    // The network is the limit: the target follows the estimate.
    let starved = |t: f64| {
        let mut m = capped(t);
        m.available_out_kbps = Some(90.0);
        m
    };
    let mut d = Diagnosis::new();
    assert_eq!(
        ids(&run(&mut d, 0, 10, starved)),
        [(3_000.0, "bandwidth-limited", true)]
    );
    let f = &d.active()[0];
    assert_eq!(
        f.title,
        "Your network limits your video: sent at 180p, 58 kbps, estimate 90 kbps"
    );
    assert!(f.advice.contains("Wi-Fi"));
}

/// Each detector on its own condition, from a clean call: raised within 10 s, nothing else raised
/// (bar the ones named), resolved within 20 s of the condition ending.
#[test]
fn each_condition_raises_its_own_finding() {
    type Make = fn(f64) -> PeerMetrics;
    let cases: [(&str, Make, &[&str]); 12] = [
        (
            "cpu-limited",
            |t| {
                let mut m = clean(t);
                m.video_out.as_mut().unwrap().limited = Some(LimitationShares {
                    cpu: 0.9,
                    ..Default::default()
                });
                m
            },
            &[],
        ),
        (
            // Without the durations: the reason alone, and the resolution it cost is not taken
            // for the network's doing.
            "cpu-limited",
            |t| {
                let mut m = clean(t);
                let v = m.video_out.as_mut().unwrap();
                v.limited = None;
                v.quality_limitation = Some("cpu".into());
                v.height = Some(360);
                v.width = Some(640);
                m
            },
            &[],
        ),
        (
            "high-latency",
            |t| PeerMetrics {
                rtt_ms: Some(420.0),
                ..clean(t)
            },
            &[],
        ),
        (
            "high-jitter",
            |t| PeerMetrics {
                jitter_ms: Some(45.0),
                ..clean(t)
            },
            &[],
        ),
        (
            "audio-concealment",
            |t| {
                let mut m = clean(t);
                m.audio_in.as_mut().unwrap().concealed_pct = Some(12.0);
                m
            },
            &[],
        ),
        (
            "video-frozen",
            |t| {
                let mut m = clean(t);
                m.video_out.as_mut().unwrap().frames_encoded = Some(0);
                m
            },
            &[],
        ),
        (
            "mic-silent",
            |t| PeerMetrics {
                audio_out: Some(SentAudio { level: Some(0.0) }),
                ..clean(t)
            },
            &[],
        ),
        (
            "no-media-received",
            |t| {
                let mut m = clean(t);
                let v = m.video_in.as_mut().unwrap();
                (v.packets, v.frames_decoded) = (Some(0), Some(0));
                m
            },
            &[],
        ),
        (
            "relay-tcp",
            |t| PeerMetrics {
                relay: RelayInfo {
                    using_relay: true,
                    protocol: Some("tcp".into()),
                    server_url: None,
                },
                ..clean(t)
            },
            &[],
        ),
        (
            "connection-unstable",
            |t| {
                let mut m = clean(t);
                m.connection.state = Some("disconnected".into());
                m.connection.since_response_ms = Some(t - 20_000.0);
                m
            },
            &[],
        ),
        (
            "high-retransmission",
            |t| {
                let mut m = clean(t);
                m.video_out.as_mut().unwrap().retransmitted_pct = Some(18.0);
                m
            },
            &[],
        ),
        (
            "packet-loss",
            |t| PeerMetrics {
                loss_out_pct: Some(10.0),
                ..clean(t)
            },
            &[],
        ),
    ];
    for (id, make, also) in cases {
        let mut d = Diagnosis::new();
        assert_eq!(ids(&run(&mut d, 0, 20, clean)), [], "{id}: the clean start");
        let during = ids(&run(&mut d, 20, 40, make));
        let raised: Vec<&str> = during.iter().filter(|c| c.2).map(|c| c.1).collect();
        assert!(raised.contains(&id), "{id}: raised {raised:?}");
        for other in &raised {
            assert!(*other == id || also.contains(other), "{id}: also raised {other}");
        }
        let at = during.iter().find(|c| c.1 == id).unwrap().0;
        assert!(at - 20_000.0 <= 10_000.0, "{id}: raised {at} ms");
        let after = ids(&run(&mut d, 40, 70, clean));
        let resolved = after
            .iter()
            .find(|c| c.1 == id && !c.2)
            .unwrap_or_else(|| panic!("{id}: not resolved"));
        assert!(resolved.0 - 40_000.0 <= 20_000.0, "{id}: resolved at {}", resolved.0);
        assert!(d.active().is_empty(), "{id}: {:?}", d.active());
    }
}

#[test]
fn a_starved_estimate_with_fewer_frames_is_the_network_and_a_low_resolutions_ceiling_is_not_a_cap() {
    // The network gives 84 kbps for 320x240 (the encoder would use 600): the encoder sends 6 of
    // 15 frames a second without saying it is limited.
    let starved = |t: f64| {
        let mut m = clean(t);
        m.available_out_kbps = Some(84.0);
        m.target_kbps = Some(62.0);
        m.upload_video_kbps = Some(44.0);
        let v = m.video_out.as_mut().unwrap();
        (v.width, v.height, v.captured_width, v.captured_height) = (Some(320), Some(240), Some(320), Some(240));
        (v.fps, v.captured_fps) = (Some(6.0), Some(15.0));
        v.layers[0].target_kbps = Some(30.0);
        m
    };
    let mut d = Diagnosis::new();
    assert_eq!(
        ids(&run(&mut d, 0, 10, starved)),
        [(3_000.0, "bandwidth-limited", true)]
    );
    // Plenty of estimate, the encoder at its own default for the size: nothing.
    let roomy = |t: f64| {
        let mut m = starved(t);
        m.available_out_kbps = Some(3_000.0);
        m.target_kbps = Some(620.0);
        m.video_out.as_mut().unwrap().fps = Some(15.0);
        m
    };
    let mut d = Diagnosis::new();
    assert_eq!(ids(&run(&mut d, 0, 10, roomy)), []);
}

#[test]
fn nothing_received_counts_only_after_media_flowed() {
    let silent = |t: f64| {
        let mut m = clean(t);
        m.video_in.as_mut().unwrap().packets = Some(0);
        m.audio_in.as_mut().unwrap().packets = Some(0);
        m
    };
    let mut d = Diagnosis::new();
    // A connection that never received anything (send-only) is not missing media.
    assert_eq!(ids(&run(&mut d, 0, 20, silent)), []);
    let mut d = Diagnosis::new();
    run(&mut d, 0, 5, clean);
    assert_eq!(ids(&run(&mut d, 5, 15, silent)), [(8_000.0, "no-media-received", true)]);
    assert_eq!(d.active()[0].title, "No audio and video arrives from the other side");
}

#[test]
fn a_reconnection_is_unstable_for_a_while_and_findings_sort_by_severity() {
    let mut d = Diagnosis::new();
    run(&mut d, 0, 5, clean);
    let restarted = |t: f64| {
        let mut m = clean(t);
        m.connection.ice_restarts = 1;
        m.rtt_ms = Some(500.0);
        m
    };
    let changes = ids(&run(&mut d, 5, 30, restarted));
    assert_eq!(
        changes,
        [
            (8_000.0, "high-latency", true),
            (8_000.0, "connection-unstable", true),
            (20_000.0, "connection-unstable", false)
        ]
    );
    let more = |t: f64| {
        let mut m = restarted(t);
        m.connection.ice_restarts = 2;
        m
    };
    run(&mut d, 30, 34, more);
    let order: Vec<&str> = d.active().iter().map(|f| f.id.as_str()).collect();
    assert_eq!(order, ["connection-unstable", "high-latency"], "critical first");
    // A closed connection's findings resolve at once.
    let closed = d.close("pc1", 35_000.0);
    assert_eq!(closed.len(), 2);
    assert!(d.active().is_empty());
}

#[test]
fn a_pair_switch_while_the_path_settles_is_not_instability_and_later_it_is() {
    let switch_at = |at_s: u32| {
        move |t: f64| {
            let mut m = clean(t);
            m.connection.pair_switches = u32::from(t == f64::from(at_s) * 1000.0);
            m
        }
    };
    // ICE moves to a better pair a second into the call (as recorded with TURN offered).
    let mut d = Diagnosis::new();
    assert_eq!(ids(&run(&mut d, 0, 30, switch_at(1))), []);
    // The same switch once the path has settled: the connection switched paths.
    let mut d = Diagnosis::new();
    let changes = ids(&run(&mut d, 0, 30, switch_at(12)));
    assert_eq!(
        changes,
        [
            (15_000.0, "connection-unstable", true),
            (27_000.0, "connection-unstable", false)
        ]
    );
}
