//! The diagnosis: detectors that say why a connection is bad, in plain words, with the evidence and what to try; sans-IO, time as input, raised after a condition held and resolved with hysteresis.
//!
//! Each detector reads one connection's [`PeerMetrics`] of an interval and answers with a
//! [`Level`]: the condition to raise holds (with its title and evidence), only the milder one to
//! stay raised holds, or neither. A finding is raised once its raise condition has held for
//! [`RAISE_AFTER_MS`] and resolved once neither condition has held for [`CLEAR_AFTER_MS`], so a
//! figure hovering at a threshold neither flaps nor repeats. [`Diagnosis`] keeps that state per
//! connection; it never reads a clock (`PeerMetrics::at_ms` is the time).

pub use crate::finding::{Evidence, Finding, FindingId};
use crate::metrics::PeerMetrics;
use std::collections::BTreeMap;

/// A finding is raised once its condition has held this long, ms.
pub const RAISE_AFTER_MS: f64 = 3_000.0;
/// A raised finding resolves once its condition has been clear this long, ms.
pub const CLEAR_AFTER_MS: f64 = 5_000.0;
/// An ICE restart or a pair switch keeps `connection-unstable` true for this long, ms.
const LINK_EVENT_HOLD_MS: f64 = 10_000.0;
/// The selected pair unanswered this long is `connection-unstable`, ms: Chromium checks a
/// stable pair every 2.5 s, so with the 1 s poll a healthy pair is answered within about 3.6 s.
const SILENCE_MS: f64 = 4_500.0;

fn evidence(label: &str, value: String) -> Evidence {
    Evidence {
        label: label.to_owned(),
        value,
    }
}

/// A detector's answer for one interval.
#[derive(Debug, Clone, PartialEq)]
pub enum Level {
    /// The condition to raise holds: the title and the evidence.
    Raise(String, Vec<Evidence>),
    /// Only the milder condition that keeps a raised finding holds.
    Hold,
    Clear,
}

fn level(raise: bool, hold: bool, detail: impl FnOnce() -> (String, Vec<Evidence>)) -> Level {
    if raise {
        let (title, evidence) = detail();
        Level::Raise(title, evidence)
    } else if hold {
        Level::Hold
    } else {
        Level::Clear
    }
}

fn kbps(x: f64) -> String {
    format!("{x:.0} kbps")
}

fn pct(x: f64) -> String {
    format!("{x:.1} %")
}

fn ms(x: f64) -> String {
    format!("{x:.0} ms")
}

/// What a detector may remember of a connection between intervals.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// Whether audio / video packets have arrived on this connection before.
    audio_flowed: bool,
    video_flowed: bool,
    /// The last ICE restart or pair switch, ms.
    last_link_event_ms: Option<f64>,
    ice_restarts: u32,
    /// The connection's first interval, ms.
    first_seen_ms: Option<f64>,
}

/// ICE goes on checking after its first choice and moves to a better pair in the first moments
/// of a call (recorded: a relayed pair, then the direct one, within two seconds): a pair switch
/// this early after the connection's first interval is the path settling, not instability.
const PATH_SETTLE_MS: f64 = 5_000.0;

/// The sent video's encoder target, summed over the active layers, kbps.
fn video_target_kbps(m: &PeerMetrics) -> Option<f64> {
    let layers = &m.video_out.as_ref()?.layers;
    layers
        .iter()
        .filter(|l| l.active)
        .filter_map(|l| l.target_kbps)
        .reduce(|a, b| a + b)
}

/// What a WebRTC encoder sends at most by default for video of this size, kbps (libwebrtc's
/// `GetMaxDefaultVideoBitrateKbps`): what the sender would use with no cap and room enough.
fn default_max_kbps(width: u32, height: u32) -> f64 {
    match u64::from(width) * u64::from(height) {
        pixels if pixels <= 320 * 240 => 600.0,
        pixels if pixels <= 640 * 480 => 1_700.0,
        pixels if pixels <= 960 * 540 => 2_000.0,
        _ => 2_500.0,
    }
}

/// Room for the audio beside the video, kbps.
const AUDIO_ROOM_KBPS: f64 = 40.0;

/// The sent video's default maximum, from the captured size (else the sent one).
fn natural_max_kbps(m: &PeerMetrics) -> Option<f64> {
    let v = m.video_out.as_ref()?;
    let (w, h) = match (v.captured_width, v.captured_height) {
        (Some(w), Some(h)) => (w, h),
        _ => (v.width?, v.height?),
    };
    Some(default_max_kbps(w, h))
}

/// The app caps the bitrate: the encoders' targets (all streams) are at most half of what both
/// the network (the estimate) and the encoder's own default would allow. Returns the video
/// target (else all) and the estimate.
fn capped_by_app(m: &PeerMetrics) -> Option<(f64, f64)> {
    let (target, estimate) = (m.target_kbps?, m.available_out_kbps?);
    let allowed = estimate.min(natural_max_kbps(m)? + AUDIO_ROOM_KBPS);
    (target * 2.0 <= allowed).then(|| (video_target_kbps(m).unwrap_or(target), estimate))
}

/// The sent video is degraded against what is captured: fewer frames or fewer lines.
fn degraded(m: &PeerMetrics) -> bool {
    let Some(v) = m.video_out.as_ref() else {
        return false;
    };
    let fewer_frames = matches!((v.fps, v.captured_fps), (Some(sent), Some(captured)) if sent < captured * 0.75);
    let fewer_lines = matches!((v.height, v.captured_height), (Some(sent), Some(captured)) if f64::from(sent) < f64::from(captured) * 0.75);
    fewer_frames || fewer_lines
}

fn sent_height(m: &PeerMetrics) -> String {
    match m.video_out.as_ref().and_then(|v| v.height) {
        Some(h) => format!("{h}p"),
        None => "a low resolution".to_owned(),
    }
}

/// Sent video held back for lack of rate: the share of the interval the encoder was limited by
/// bandwidth, or (without the durations) a sent resolution well below the captured one that the
/// browser does not put down to the processor.
fn rate_limited_share(m: &PeerMetrics) -> Option<f64> {
    let v = m.video_out.as_ref()?;
    let share = v.limited.as_ref().map(|l| l.bandwidth);
    let reason = v.quality_limitation.as_deref();
    let downscaled = match (v.height, v.captured_height) {
        (Some(sent), Some(captured)) if captured > 0 => f64::from(sent) < f64::from(captured) * 0.75,
        _ => false,
    };
    share.or((reason == Some("bandwidth") || (downscaled && reason != Some("cpu"))).then_some(1.0))
}

/// Evaluates one detector on one interval (`memory` is the connection's, already updated with
/// this interval by [`Diagnosis`]).
pub fn detect(id: FindingId, m: &PeerMetrics, memory: &Memory) -> Level {
    match id {
        FindingId::BandwidthLimited => {
            if capped_by_app(m).is_some() {
                return Level::Clear;
            }
            let share = rate_limited_share(m).unwrap_or(0.0);
            // The estimate is well under what the encoder would use, and the video shows it.
            let short = |part: f64| match (m.available_out_kbps, natural_max_kbps(m)) {
                (Some(estimate), Some(max)) => estimate < max * part && degraded(m),
                _ => false,
            };
            level(share >= 0.5 || short(0.5), share >= 0.3 || short(0.6), || {
                let sent = m.upload_video_kbps.or(m.upload_kbps).unwrap_or(0.0);
                let mut ev = vec![
                    evidence("sent resolution", sent_height(m)),
                    evidence("sent video", kbps(sent)),
                ];
                let mut title = format!(
                    "Your network limits your video: sent at {}, {}",
                    sent_height(m),
                    kbps(sent)
                );
                if let Some(estimate) = m.available_out_kbps {
                    title.push_str(&format!(", estimate {}", kbps(estimate)));
                    ev.push(evidence("estimate", kbps(estimate)));
                }
                if let Some(loss) = m.loss_out_pct.filter(|l| *l > 0.0) {
                    ev.push(evidence("loss of what you send", pct(loss)));
                }
                (title, ev)
            })
        }
        FindingId::AppCapped => {
            let Some((target, estimate)) = capped_by_app(m) else {
                return Level::Clear;
            };
            level(true, true, || {
                (
                    format!(
                        "The app caps your video at {} although the network allows about {}",
                        kbps(target),
                        kbps(estimate)
                    ),
                    vec![
                        evidence("encoder target", kbps(target)),
                        evidence("estimate", kbps(estimate)),
                        evidence("sent resolution", sent_height(m)),
                    ],
                )
            })
        }
        FindingId::CpuLimited => {
            let v = m.video_out.as_ref();
            let share = v
                .and_then(|v| v.limited.as_ref())
                .map(|l| l.cpu)
                .or_else(|| (v.and_then(|v| v.quality_limitation.as_deref()) == Some("cpu")).then_some(1.0));
            let share = share.unwrap_or(0.0);
            level(share >= 0.5, share >= 0.3, || {
                let mut ev = vec![evidence("time limited by the processor", pct(share * 100.0))];
                if let Some(encode) = v.and_then(|v| v.encode_ms_per_frame) {
                    ev.push(evidence("encode time per frame", format!("{encode:.1} ms")));
                }
                (
                    format!("Your computer is too busy to encode video: sent at {}", sent_height(m)),
                    ev,
                )
            })
        }
        FindingId::HighLatency => {
            let rtt = m.best_rtt_ms();
            let over = |limit: f64| rtt.is_some_and(|r| r > limit);
            level(
                over(crate::alerts::ALERT_RTT_MS),
                over(crate::alerts::ALERT_RTT_MS * 0.8),
                || {
                    let rtt = rtt.unwrap_or_default();
                    (
                        format!("High delay: {} round trip, so people talk over each other", ms(rtt)),
                        vec![evidence("round trip", ms(rtt))],
                    )
                },
            )
        }
        FindingId::PacketLoss => {
            let loss = m.loss_pct();
            let over = |limit: f64| loss.is_some_and(|l| l > limit);
            level(
                over(crate::alerts::ALERT_LOSS_PCT),
                over(crate::alerts::ALERT_LOSS_PCT * 0.6),
                || {
                    let mut ev = Vec::new();
                    if let Some(l) = m.loss_in_pct {
                        ev.push(evidence("lost on the way to you", pct(l)));
                    }
                    if let Some(l) = m.loss_out_pct {
                        ev.push(evidence("lost on the way from you", pct(l)));
                    }
                    (
                        format!(
                            "Packets are lost: {} of the media does not arrive",
                            pct(loss.unwrap_or_default())
                        ),
                        ev,
                    )
                },
            )
        }
        FindingId::HighJitter => {
            let jitter = m.jitter_ms;
            let over = |limit: f64| jitter.is_some_and(|j| j > limit);
            level(over(30.0), over(20.0), || {
                let mut ev = vec![evidence("jitter", ms(jitter.unwrap_or_default()))];
                if let Some(buffer) = m.audio_in.as_ref().and_then(|a| a.jitter_buffer_ms) {
                    ev.push(evidence("audio jitter buffer", ms(buffer)));
                }
                (
                    format!("Uneven network timing: {} jitter", ms(jitter.unwrap_or_default())),
                    ev,
                )
            })
        }
        FindingId::AudioConcealment => {
            let concealed = m.audio_in.as_ref().and_then(|a| a.concealed_pct);
            let over = |limit: f64| concealed.is_some_and(|c| c > limit);
            level(over(5.0), over(3.0), || {
                let c = concealed.unwrap_or_default();
                (
                    format!("Incoming audio is choppy or robotic: {} of it was patched over", pct(c)),
                    vec![evidence("concealed audio", pct(c))],
                )
            })
        }
        FindingId::VideoFrozen => {
            let sent_stuck = m.video_out.as_ref().is_some_and(|v| {
                v.frames_encoded == Some(0) && v.layers.iter().any(|l| l.active) && v.captured_width.is_some()
            });
            let received_stuck = m.video_in.as_ref().is_some_and(|v| {
                (v.frames_decoded == Some(0) && v.packets.is_some_and(|p| p > 0))
                    || v.frozen_ms.is_some_and(|f| f >= 1_000.0)
            });
            level(sent_stuck || received_stuck, sent_stuck || received_stuck, || {
                if sent_stuck {
                    (
                        "Your video is frozen: no new pictures come from the camera or shared window".to_owned(),
                        vec![evidence("frames sent in the last interval", "0".to_owned())],
                    )
                } else {
                    let frozen = m.video_in.as_ref().and_then(|v| v.frozen_ms).unwrap_or(0.0);
                    (
                        "The video you receive is frozen".to_owned(),
                        vec![evidence("frozen time", ms(frozen))],
                    )
                }
            })
        }
        FindingId::MicSilent => {
            let level_now = m.audio_out.as_ref().and_then(|a| a.level);
            // Silence still travels (the app sends it); a sender with no track sends nothing.
            let sending = m.upload_audio_kbps.is_some_and(|k| k > 0.0);
            level(
                sending && level_now.is_some_and(|l| l < 0.001),
                sending && level_now.is_some_and(|l| l < 0.003),
                || {
                    (
                        "Your microphone sends silence".to_owned(),
                        vec![evidence("microphone level", format!("{:.4}", level_now.unwrap_or(0.0)))],
                    )
                },
            )
        }
        FindingId::NoMediaReceived => {
            let connected = !matches!(
                m.connection.state.as_deref(),
                Some("disconnected" | "failed" | "closed" | "new" | "connecting")
            );
            let video_gone = memory.video_flowed && m.video_in.as_ref().is_some_and(|v| v.packets == Some(0));
            let audio_gone = memory.audio_flowed && m.audio_in.as_ref().is_some_and(|a| a.packets == Some(0));
            let gone = connected && (video_gone || audio_gone);
            level(gone, gone, || {
                let what = match (audio_gone, video_gone) {
                    (true, true) => "audio and video",
                    (true, false) => "audio",
                    _ => "video",
                };
                (
                    format!("No {what} arrives from the other side"),
                    vec![evidence(&format!("{what} packets received"), "0".to_owned())],
                )
            })
        }
        FindingId::RelayTcp => {
            let tcp = m.relay.using_relay && matches!(m.relay.protocol.as_deref(), Some("tcp" | "tls"));
            level(tcp, tcp, || {
                let protocol = m.relay.protocol.as_deref().unwrap_or("tcp").to_uppercase();
                (
                    format!("The call is relayed over {protocol}, which adds delay and stalls on loss"),
                    vec![evidence("relay transport", protocol)],
                )
            })
        }
        FindingId::ConnectionUnstable => {
            let c = &m.connection;
            let broken = matches!(c.state.as_deref(), Some("disconnected" | "failed"))
                || matches!(c.ice_state.as_deref(), Some("disconnected" | "failed"));
            let silent = c.since_response_ms.is_some_and(|s| s > SILENCE_MS);
            let recent_event = memory
                .last_link_event_ms
                .is_some_and(|at| m.at_ms - at < LINK_EVENT_HOLD_MS);
            let unstable = broken || silent || recent_event;
            level(unstable, unstable, || {
                let mut ev = Vec::new();
                if let Some(state) = c.state.as_deref().or(c.ice_state.as_deref()) {
                    ev.push(evidence("connection", state.to_owned()));
                }
                if let Some(s) = c.since_response_ms.filter(|s| *s > SILENCE_MS) {
                    ev.push(evidence(
                        "no answer from the other side for",
                        format!("{:.0} s", s / 1000.0),
                    ));
                }
                if c.ice_restarts > 0 {
                    ev.push(evidence("reconnections", c.ice_restarts.to_string()));
                }
                let title = if broken {
                    format!(
                        "The connection is {}",
                        c.state.as_deref().or(c.ice_state.as_deref()).unwrap_or("broken")
                    )
                } else if silent {
                    "The other side stopped answering".to_owned()
                } else {
                    "The connection dropped and reconnected".to_owned()
                };
                (title, ev)
            })
        }
        FindingId::HighRetransmission => {
            let share = m.video_out.as_ref().and_then(|v| v.retransmitted_pct);
            let over = |limit: f64| share.is_some_and(|s| s > limit);
            level(over(10.0), over(5.0), || {
                let s = share.unwrap_or_default();
                (
                    format!("{} of your video is sent again because it was lost", pct(s)),
                    vec![evidence("retransmitted", pct(s))],
                )
            })
        }
    }
}

/// One detector's state on one connection.
#[derive(Debug, Clone, Default)]
struct Track {
    /// Since when the raise condition holds (while not raised).
    raise_since: Option<f64>,
    /// Since when neither condition holds (while raised).
    clear_since: Option<f64>,
    active: Option<Finding>,
}

/// A finding raised or resolved (then with `until_ms` set).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Raised(Finding),
    Resolved(Finding),
}

/// The detectors' state of a tab's connections.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    pcs: BTreeMap<String, (Memory, BTreeMap<FindingId, Track>)>,
}

impl Diagnosis {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs every detector on one connection's interval; returns what was raised or resolved.
    pub fn observe(&mut self, m: &PeerMetrics) -> Vec<Change> {
        let now = m.at_ms;
        let (memory, tracks) = self.pcs.entry(m.pc.clone()).or_default();
        remember(memory, m);
        let mut changes = Vec::new();
        for id in FindingId::ALL {
            let track = tracks.entry(id).or_default();
            let level = detect(id, m, memory);
            if let Some(change) = step(track, id, &m.pc, level, now) {
                changes.push(change);
            }
        }
        changes
    }

    /// The connection is gone: its active findings resolve now.
    pub fn close(&mut self, pc: &str, now_ms: f64) -> Vec<Change> {
        let Some((_, tracks)) = self.pcs.remove(pc) else {
            return Vec::new();
        };
        tracks
            .into_values()
            .filter_map(|t| t.active)
            .map(|mut f| {
                f.until_ms = Some(now_ms);
                Change::Resolved(f)
            })
            .collect()
    }

    /// Every active finding, most severe first (then by id and connection).
    pub fn active(&self) -> Vec<Finding> {
        let mut all: Vec<Finding> = self
            .pcs
            .values()
            .flat_map(|(_, tracks)| tracks.values().filter_map(|t| t.active.clone()))
            .collect();
        all.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)).then(a.pc.cmp(&b.pc)));
        all
    }
}

fn remember(memory: &mut Memory, m: &PeerMetrics) {
    memory.audio_flowed |= m.audio_in.as_ref().is_some_and(|a| a.packets.is_some_and(|p| p > 0));
    memory.video_flowed |= m.video_in.as_ref().is_some_and(|v| v.packets.is_some_and(|p| p > 0));
    let first_seen = *memory.first_seen_ms.get_or_insert(m.at_ms);
    let settled = m.at_ms - first_seen >= PATH_SETTLE_MS;
    if m.connection.ice_restarts > memory.ice_restarts || (m.connection.pair_switches > 0 && settled) {
        memory.last_link_event_ms = Some(m.at_ms);
    }
    memory.ice_restarts = m.connection.ice_restarts;
}

/// Advances one detector's hysteresis by one interval at `now`.
fn step(track: &mut Track, id: FindingId, pc: &str, level: Level, now: f64) -> Option<Change> {
    match (&mut track.active, level) {
        (None, Level::Raise(title, evidence)) => {
            let since = *track.raise_since.get_or_insert(now);
            if now - since < RAISE_AFTER_MS {
                return None;
            }
            let finding = Finding {
                id,
                severity: id.severity(),
                pc: pc.to_owned(),
                title,
                evidence,
                advice: id.advice().to_owned(),
                since_ms: since,
                until_ms: None,
            };
            track.raise_since = None;
            track.clear_since = None;
            track.active = Some(finding.clone());
            Some(Change::Raised(finding))
        }
        (None, _) => {
            track.raise_since = None;
            None
        }
        (Some(finding), Level::Raise(title, evidence)) => {
            // Still there: the newest figures, no new event.
            finding.title = title;
            finding.evidence = evidence;
            track.clear_since = None;
            None
        }
        (Some(_), Level::Hold) => {
            track.clear_since = None;
            None
        }
        (Some(_), Level::Clear) => {
            let since = *track.clear_since.get_or_insert(now);
            if now - since < CLEAR_AFTER_MS {
                return None;
            }
            let mut finding = track.active.take().expect("matched Some");
            finding.until_ms = Some(now);
            track.clear_since = None;
            Some(Change::Resolved(finding))
        }
    }
}

#[cfg(test)]
mod tests;
