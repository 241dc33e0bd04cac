//! The processor's media figures of one interval: sent and received video (layers, limitation shares, encode and decode time, freezes, jitter buffer, retransmissions, feedback) and audio (concealment, jitter buffer, capture level).
//!
//! Each figure is a delta between two snapshots of the same stream (same id and SSRC); a counter
//! that is missing at either end, or that went backwards, gives no figure, never a wrong one.

use super::Kind;
use crate::metrics::{Layer, LimitationShares, ReceivedAudio, ReceivedVideo, SentAudio, SentVideo};
use crate::stats::{InboundRtp, MediaSource, OutboundRtp};
use std::collections::HashMap;

/// One outbound stream in this snapshot, its report at the previous one (same SSRC) and its rate.
pub(super) struct Out<'a> {
    pub now: &'a OutboundRtp,
    pub prev: Option<&'a OutboundRtp>,
    pub kind: Kind,
    pub kbps: Option<f64>,
}

/// One inbound stream, as [`Out`].
pub(super) struct In<'a> {
    pub now: &'a InboundRtp,
    pub prev: Option<&'a InboundRtp>,
    pub kind: Kind,
}

/// `now - prev` of a counter; `None` when either is missing or it went backwards.
fn delta(prev: Option<f64>, now: Option<f64>) -> Option<f64> {
    let d = now? - prev?;
    (d >= 0.0).then_some(d)
}

/// `num / den` when the denominator is positive.
fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    let den = den.filter(|d| *d > 0.0)?;
    Some(num? / den)
}

/// Sums `f` over the items that give a value; `None` when none does.
fn sum<T>(items: &[T], f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
    items.iter().filter_map(f).reduce(|a, b| a + b)
}

fn count(x: Option<f64>) -> Option<u32> {
    x.filter(|v| *v >= 0.0 && *v <= u32::MAX as f64).map(|v| v as u32)
}

fn area(width: Option<f64>, height: Option<f64>) -> f64 {
    width.unwrap_or(0.0) * height.unwrap_or(0.0)
}

/// The encoders' targets summed over the streams sent (active ones), kbps.
pub(super) fn target_kbps(outs: &[Out<'_>]) -> Option<f64> {
    let active: Vec<&Out<'_>> = outs.iter().filter(|o| o.now.active != Some(false)).collect();
    sum(&active, |o| {
        o.now.target_bitrate.filter(|b| *b >= 0.0).map(|b| b / 1000.0)
    })
}

/// Sent video: the largest active layer's figures, shares and feedback over every layer.
pub(super) fn sent_video(outs: &[Out<'_>], sources: &HashMap<&str, &MediaSource>) -> Option<SentVideo> {
    let video: Vec<&Out<'_>> = outs.iter().filter(|o| o.kind == Kind::Video).collect();
    let active: Vec<&Out<'_>> = video.iter().copied().filter(|o| o.now.active != Some(false)).collect();
    let largest = active
        .iter()
        .copied()
        .reduce(|best, o| {
            if area(o.now.frame_width, o.now.frame_height) > area(best.now.frame_width, best.now.frame_height) {
                o
            } else {
                best
            }
        })
        .or(video.first().copied())?;
    let now = largest.now;
    let limited = largest.prev.and_then(|prev| limitation_shares(prev, now));
    let source = now.media_source_id.as_deref().and_then(|id| sources.get(id));
    let d = |f: fn(&OutboundRtp) -> Option<f64>| move |o: &&Out<'_>| delta(o.prev.map(f)?, f(o.now));
    let mut layers: Vec<Layer> = video
        .iter()
        .map(|o| Layer {
            rid: o.now.rid.clone(),
            active: o.now.active != Some(false),
            kbps: o.kbps,
            target_kbps: o.now.target_bitrate.filter(|b| *b >= 0.0).map(|b| b / 1000.0),
            width: super::positive_u32(o.now.frame_width),
            height: super::positive_u32(o.now.frame_height),
            fps: o.now.frames_per_second,
        })
        .collect();
    layers.sort_by(|a, b| a.rid.cmp(&b.rid));
    Some(SentVideo {
        fps: now.frames_per_second,
        width: super::positive_u32(now.frame_width),
        height: super::positive_u32(now.frame_height),
        quality_limitation: now.quality_limitation_reason.clone(),
        limited,
        captured_width: source.and_then(|s| super::positive_u32(s.width)),
        captured_height: source.and_then(|s| super::positive_u32(s.height)),
        captured_fps: source.and_then(|s| s.frames_per_second),
        frames_encoded: count(sum(&active, d(|r| r.frames_encoded))),
        encode_ms_per_frame: ratio(
            sum(&active, d(|r| r.total_encode_time)),
            sum(&active, d(|r| r.frames_encoded)),
        )
        .map(|s| s * 1000.0),
        retransmitted_pct: ratio(
            sum(&video, d(|r| r.retransmitted_bytes_sent)),
            sum(&video, d(|r| r.bytes_sent)),
        )
        .map(|share| (share * 100.0).min(100.0)),
        nacks_received: count(sum(&video, d(|r| r.nack_count))),
        plis_received: count(sum(&video, d(|r| r.pli_count))),
        firs_received: count(sum(&video, d(|r| r.fir_count))),
        layers,
    })
}

/// Shares of the interval spent limited by cpu, bandwidth and other causes.
fn limitation_shares(prev: &OutboundRtp, now: &OutboundRtp) -> Option<LimitationShares> {
    let (before, after) = (
        prev.quality_limitation_durations.as_ref()?,
        now.quality_limitation_durations.as_ref()?,
    );
    let reason = |name: &str| delta(before.get(name).copied(), after.get(name).copied());
    let [none, cpu, bandwidth, other] = ["none", "cpu", "bandwidth", "other"].map(reason);
    let total = [none, cpu, bandwidth, other].iter().flatten().sum::<f64>();
    (total > 0.0).then(|| LimitationShares {
        cpu: cpu.unwrap_or(0.0) / total,
        bandwidth: bandwidth.unwrap_or(0.0) / total,
        other: other.unwrap_or(0.0) / total,
    })
}

/// Received video: the largest stream's figures.
pub(super) fn received_video(ins: &[In<'_>]) -> Option<ReceivedVideo> {
    let largest = ins.iter().filter(|i| i.kind == Kind::Video).reduce(|best, i| {
        if area(i.now.frame_width, i.now.frame_height) > area(best.now.frame_width, best.now.frame_height) {
            i
        } else {
            best
        }
    })?;
    let now = largest.now;
    let d = |f: fn(&InboundRtp) -> Option<f64>| delta(largest.prev.and_then(f), f(now));
    Some(ReceivedVideo {
        fps: now.frames_per_second,
        width: super::positive_u32(now.frame_width),
        height: super::positive_u32(now.frame_height),
        packets: count(d(|r| r.packets_received)),
        frames_decoded: count(d(|r| r.frames_decoded)),
        freezes: count(d(|r| r.freeze_count)),
        frozen_ms: d(|r| r.total_freezes_duration).map(|s| s * 1000.0),
        frames_dropped: count(d(|r| r.frames_dropped)),
        decode_ms_per_frame: ratio(d(|r| r.total_decode_time), d(|r| r.frames_decoded)).map(|s| s * 1000.0),
        jitter_buffer_ms: ratio(d(|r| r.jitter_buffer_delay), d(|r| r.jitter_buffer_emitted_count)).map(|s| s * 1000.0),
        nacks_sent: count(d(|r| r.nack_count)),
        plis_sent: count(d(|r| r.pli_count)),
    })
}

/// Received audio, all audio streams together; `None` without one.
pub(super) fn received_audio(ins: &[In<'_>]) -> Option<ReceivedAudio> {
    let audio: Vec<&In<'_>> = ins.iter().filter(|i| i.kind == Kind::Audio).collect();
    if audio.is_empty() {
        return None;
    }
    let d = |f: fn(&InboundRtp) -> Option<f64>| move |i: &&In<'_>| delta(i.prev.map(f)?, f(i.now));
    let samples = sum(&audio, d(|r| r.total_samples_received));
    let concealed = sum(&audio, d(|r| r.concealed_samples));
    let silent = sum(&audio, d(|r| r.silent_concealed_samples));
    let pct = |x: Option<f64>| ratio(x, samples).map(|share| (share * 100.0).min(100.0));
    Some(ReceivedAudio {
        packets: count(sum(&audio, d(|r| r.packets_received))),
        concealed_pct: pct(concealed.map(|c| (c - silent.unwrap_or(0.0)).max(0.0))),
        silent_concealed_pct: pct(silent),
        jitter_buffer_ms: ratio(
            sum(&audio, d(|r| r.jitter_buffer_delay)),
            sum(&audio, d(|r| r.jitter_buffer_emitted_count)),
        )
        .map(|s| s * 1000.0),
        accelerated_pct: pct(sum(&audio, d(|r| r.removed_samples_for_acceleration))),
        decelerated_pct: pct(sum(&audio, d(|r| r.inserted_samples_for_deceleration))),
    })
}

/// Sent audio: the captured level of the first audio stream sent that names its source.
pub(super) fn sent_audio(
    outs: &[Out<'_>],
    sources: &HashMap<&str, &MediaSource>,
    prev_sources: Option<&HashMap<String, MediaSource>>,
) -> Option<SentAudio> {
    let out = outs.iter().find(|o| o.kind == Kind::Audio)?;
    let Some(id) = out.now.media_source_id.as_deref() else {
        return Some(SentAudio::default());
    };
    let Some(source) = sources.get(id) else {
        return Some(SentAudio::default());
    };
    let before = prev_sources.and_then(|p| p.get(id));
    let energy = delta(before.and_then(|b| b.total_audio_energy), source.total_audio_energy);
    let duration = delta(
        before.and_then(|b| b.total_samples_duration),
        source.total_samples_duration,
    );
    let level = ratio(energy, duration)
        .map(f64::sqrt)
        .or(source.audio_level)
        .map(|l| l.clamp(0.0, 1.0));
    Some(SentAudio { level })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Durations;

    fn durations(pairs: &[(&str, f64)]) -> Option<Durations> {
        Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
    }

    fn video(rid: &str, width: f64, bytes: f64, rtx: f64, limits: &[(&str, f64)]) -> OutboundRtp {
        OutboundRtp {
            id: Some(format!("O{rid}")),
            kind: Some("video".into()),
            rid: Some(rid.into()),
            frame_width: Some(width),
            frame_height: Some(width * 0.5625),
            bytes_sent: Some(bytes),
            retransmitted_bytes_sent: Some(rtx),
            quality_limitation_durations: durations(limits),
            frames_encoded: Some(bytes / 100.0),
            total_encode_time: Some(bytes / 100.0 * 0.004),
            target_bitrate: Some(width * 1000.0),
            media_source_id: Some("S1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn sent_video_takes_the_largest_layer_and_shares_from_duration_deltas() {
        let (h0, h1) = (
            video(
                "h",
                1280.0,
                10_000.0,
                0.0,
                &[("none", 5.0), ("cpu", 0.0), ("bandwidth", 1.0)],
            ),
            video(
                "h",
                1280.0,
                20_000.0,
                500.0,
                &[("none", 5.5), ("cpu", 0.0), ("bandwidth", 2.5)],
            ),
        );
        let (l0, l1) = (
            video("l", 320.0, 1_000.0, 0.0, &[]),
            video("l", 320.0, 1_500.0, 0.0, &[]),
        );
        let outs = [
            Out {
                now: &l1,
                prev: Some(&l0),
                kind: Kind::Video,
                kbps: Some(4.0),
            },
            Out {
                now: &h1,
                prev: Some(&h0),
                kind: Kind::Video,
                kbps: Some(80.0),
            },
        ];
        let source = MediaSource {
            width: Some(1920.0),
            height: Some(1080.0),
            frames_per_second: Some(30.0),
            ..Default::default()
        };
        let sources = HashMap::from([("S1", &source)]);
        let v = sent_video(&outs, &sources).unwrap();
        assert_eq!((v.width, v.height), (Some(1280), Some(720)));
        assert_eq!((v.captured_width, v.captured_fps), (Some(1920), Some(30.0)));
        let shares = v.limited.unwrap();
        assert!((shares.bandwidth - 0.75).abs() < 1e-9, "{shares:?}");
        assert_eq!(shares.cpu, 0.0);
        // 500 of 10,500 bytes were retransmissions.
        assert!((v.retransmitted_pct.unwrap() - 500.0 / 10_500.0 * 100.0).abs() < 1e-9);
        assert!((v.encode_ms_per_frame.unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(
            v.layers.iter().map(|l| l.rid.as_deref()).collect::<Vec<_>>(),
            [Some("h"), Some("l")]
        );
        assert_eq!(target_kbps(&outs), Some(1600.0));
    }

    #[test]
    fn a_missing_or_backwards_counter_gives_no_figure() {
        let a = InboundRtp {
            kind: Some("audio".into()),
            total_samples_received: Some(48_000.0),
            concealed_samples: Some(1_000.0),
            ..Default::default()
        };
        let b = InboundRtp {
            total_samples_received: Some(96_000.0),
            concealed_samples: Some(900.0),
            silent_concealed_samples: Some(10.0),
            ..a.clone()
        };
        let audio = received_audio(&[In {
            now: &b,
            prev: Some(&a),
            kind: Kind::Audio,
        }])
        .unwrap();
        assert_eq!(audio.concealed_pct, None, "concealedSamples went backwards");
        assert_eq!(
            audio.silent_concealed_pct, None,
            "silentConcealedSamples missing before"
        );
        assert_eq!(audio.jitter_buffer_ms, None);
        let c = InboundRtp {
            concealed_samples: Some(5_700.0),
            silent_concealed_samples: Some(10.0),
            total_samples_received: Some(144_000.0),
            ..b.clone()
        };
        let audio = received_audio(&[In {
            now: &c,
            prev: Some(&b),
            kind: Kind::Audio,
        }])
        .unwrap();
        assert!((audio.concealed_pct.unwrap() - 10.0).abs() < 1e-9, "{audio:?}");
        assert_eq!(audio.silent_concealed_pct, Some(0.0));
    }

    #[test]
    fn received_video_freezes_and_jitter_buffer_per_frame() {
        let a = InboundRtp {
            kind: Some("video".into()),
            frame_width: Some(640.0),
            frame_height: Some(360.0),
            freeze_count: Some(1.0),
            total_freezes_duration: Some(0.5),
            jitter_buffer_delay: Some(10.0),
            jitter_buffer_emitted_count: Some(200.0),
            frames_decoded: Some(200.0),
            total_decode_time: Some(0.4),
            ..Default::default()
        };
        let b = InboundRtp {
            freeze_count: Some(2.0),
            total_freezes_duration: Some(1.25),
            jitter_buffer_delay: Some(11.5),
            jitter_buffer_emitted_count: Some(230.0),
            frames_decoded: Some(230.0),
            total_decode_time: Some(0.43),
            ..a.clone()
        };
        let v = received_video(&[In {
            now: &b,
            prev: Some(&a),
            kind: Kind::Video,
        }])
        .unwrap();
        assert_eq!(v.freezes, Some(1));
        assert!((v.frozen_ms.unwrap() - 750.0).abs() < 1e-9);
        assert!((v.jitter_buffer_ms.unwrap() - 50.0).abs() < 1e-9);
        assert!((v.decode_ms_per_frame.unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn sent_audio_level_is_the_rms_over_the_interval() {
        let out = OutboundRtp {
            kind: Some("audio".into()),
            media_source_id: Some("A".into()),
            ..Default::default()
        };
        let outs = [Out {
            now: &out,
            prev: None,
            kind: Kind::Audio,
            kbps: None,
        }];
        let before = MediaSource {
            total_audio_energy: Some(1.0),
            total_samples_duration: Some(10.0),
            audio_level: Some(0.9),
            ..Default::default()
        };
        let now = MediaSource {
            total_audio_energy: Some(1.01),
            total_samples_duration: Some(11.0),
            ..before.clone()
        };
        let prev = HashMap::from([("A".to_owned(), before)]);
        let level = sent_audio(&outs, &HashMap::from([("A", &now)]), Some(&prev))
            .unwrap()
            .level
            .unwrap();
        assert!((level - 0.1).abs() < 1e-9, "{level}");
        // Without a previous reading, the level now.
        let level = sent_audio(&outs, &HashMap::from([("A", &now)]), None).unwrap().level;
        assert_eq!(level, Some(0.9));
    }
}
