//! What the processor computes: per-peer-connection metrics for one interval and the per-tab aggregate.

use crate::quality::QualityClass;
use serde::{Deserialize, Serialize};

/// TURN relay use of a connection's selected candidate pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayInfo {
    /// The selected pair's local or remote candidate is a relay candidate.
    pub using_relay: bool,
    /// Transport between the browser and the TURN server: "udp", "tcp" or "tls".
    pub protocol: Option<String>,
    /// The TURN server's url as the browser reports it. Local only: it names a host and port,
    /// so it is never uploaded (see `privacy::turn_server_name`).
    pub server_url: Option<String>,
}

/// Shares of an interval that sent video was limited by each cause (0..1, from
/// `qualityLimitationDurations` deltas).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitationShares {
    pub cpu: f64,
    pub bandwidth: f64,
    pub other: f64,
}

/// One simulcast layer (one outbound video stream) over the interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// The layer's `rid`; `None` without simulcast.
    pub rid: Option<String>,
    /// Whether the sender sends it (`active`; assumed when the browser does not say).
    pub active: bool,
    pub kbps: Option<f64>,
    pub target_kbps: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f64>,
}

/// Sent video of one interval: the figures of the largest layer sent, and every layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SentVideo {
    pub fps: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// `qualityLimitationReason` now: none, cpu, bandwidth or other.
    pub quality_limitation: Option<String>,
    /// What share of the interval the encoder was held back, by cause.
    pub limited: Option<LimitationShares>,
    /// The track as captured (`media-source`).
    pub captured_width: Option<u32>,
    pub captured_height: Option<u32>,
    pub captured_fps: Option<f64>,
    /// Frames encoded in the interval (active layers).
    pub frames_encoded: Option<u32>,
    /// Encode time per frame over the interval, ms.
    pub encode_ms_per_frame: Option<f64>,
    /// Retransmitted share of the bytes sent (all video layers), %.
    pub retransmitted_pct: Option<f64>,
    /// Requests the far end sent in the interval (all video layers).
    pub nacks_received: Option<u32>,
    pub plis_received: Option<u32>,
    pub firs_received: Option<u32>,
    pub layers: Vec<Layer>,
}

/// Received video of one interval, from the largest stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReceivedVideo {
    pub fps: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Packets and frames received in the interval.
    pub packets: Option<u32>,
    pub frames_decoded: Option<u32>,
    /// Freezes (`freezeCount`) that started during the interval.
    pub freezes: Option<u32>,
    /// Frozen time in the interval (`totalFreezesDuration`), ms.
    pub frozen_ms: Option<f64>,
    pub frames_dropped: Option<u32>,
    /// Decode time per frame over the interval, ms.
    pub decode_ms_per_frame: Option<f64>,
    /// Jitter-buffer delay per frame emitted in the interval, ms.
    pub jitter_buffer_ms: Option<f64>,
    /// Requests this end sent in the interval.
    pub nacks_sent: Option<u32>,
    pub plis_sent: Option<u32>,
}

/// Received audio of one interval (all audio streams together).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReceivedAudio {
    /// Packets received in the interval.
    pub packets: Option<u32>,
    /// Concealed share of the samples received, silent concealment left out, %.
    pub concealed_pct: Option<f64>,
    /// Concealed samples that were silence anyway, % of the samples received.
    pub silent_concealed_pct: Option<f64>,
    /// Jitter-buffer delay per sample emitted, ms.
    pub jitter_buffer_ms: Option<f64>,
    /// Samples removed to catch up (acceleration), % of the samples received.
    pub accelerated_pct: Option<f64>,
    /// Samples inserted to slow down (deceleration), % of the samples received.
    pub decelerated_pct: Option<f64>,
}

/// Sent audio of one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SentAudio {
    /// The captured level over the interval, 0..1 (root mean square, from
    /// `totalAudioEnergy` / `totalSamplesDuration`); else `audioLevel` now.
    pub level: Option<f64>,
}

/// The connection's health as the hook and the transport report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// `connectionState` at the poll: new, connecting, connected, disconnected, failed, closed.
    pub state: Option<String>,
    /// `iceConnectionState` at the poll.
    pub ice_state: Option<String>,
    /// ICE restarts seen since the connection was first polled.
    pub ice_restarts: u32,
    /// Selected-pair changes in the interval.
    pub pair_switches: u32,
    /// Time since the selected pair last answered a connectivity (consent) check, ms.
    pub since_response_ms: Option<f64>,
}

/// Metrics of one peer connection over one interval (two consecutive snapshots).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerMetrics {
    /// The peer connection's id, as the hook named it.
    pub pc: String,
    /// Time of the later snapshot, ms (the shell's clock).
    pub at_ms: f64,
    /// Length of the interval, ms.
    pub interval_ms: f64,
    pub upload_kbps: Option<f64>,
    pub upload_audio_kbps: Option<f64>,
    pub upload_video_kbps: Option<f64>,
    pub download_kbps: Option<f64>,
    pub download_audio_kbps: Option<f64>,
    pub download_video_kbps: Option<f64>,
    /// Round-trip time of the selected candidate pair (STUN consent checks), ms.
    pub rtt_ms: Option<f64>,
    /// Round-trip time from RTCP (remote-inbound-rtp), ms.
    pub rtcp_rtt_ms: Option<f64>,
    /// Inbound packet loss over the interval, %.
    pub loss_in_pct: Option<f64>,
    /// Outbound packet loss as the remote end reports it (fractionLost), %.
    pub loss_out_pct: Option<f64>,
    /// Worst inbound jitter, ms.
    pub jitter_ms: Option<f64>,
    pub relay: RelayInfo,
    /// The congestion controller's estimate of the selected pair, kbps.
    pub available_out_kbps: Option<f64>,
    pub available_in_kbps: Option<f64>,
    /// The encoders' targets, summed over the streams sent, kbps.
    pub target_kbps: Option<f64>,
    pub video_in: Option<ReceivedVideo>,
    pub video_out: Option<SentVideo>,
    pub audio_in: Option<ReceivedAudio>,
    pub audio_out: Option<SentAudio>,
    pub connection: ConnectionInfo,
    /// The connection sends or receives RTP media (data-channel-only ones do not).
    pub carries_media: bool,
    pub quality: Option<QualityClass>,
    pub mos: Option<f64>,
    /// The E-model MOS of the received audio, from the one-way delay (half the RTT, the
    /// jitter buffer, a 20 ms frame) and the concealed share (`quality::audio_mos`).
    pub audio_mos: Option<f64>,
}

impl PeerMetrics {
    /// The loss that decides quality: the worse of the two directions.
    pub fn loss_pct(&self) -> Option<f64> {
        max_opt(self.loss_in_pct, self.loss_out_pct)
    }

    /// The RTT that decides quality: the candidate pair's, else RTCP's.
    pub fn best_rtt_ms(&self) -> Option<f64> {
        self.rtt_ms.or(self.rtcp_rtt_ms)
    }
}

/// The figures of a tab or of one connection at one time: the core of the tab aggregate and of
/// every report sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub quality: Option<QualityClass>,
    pub mos: Option<f64>,
    pub upload_kbps: Option<f64>,
    pub download_kbps: Option<f64>,
    /// A connection's: the candidate pair's round trip, else RTCP's.
    pub rtt_ms: Option<f64>,
    /// A connection's: the worse of inbound and outbound loss.
    pub loss_pct: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub using_relay: bool,
    /// "udp", "tcp" or "tls".
    pub relay_protocol: Option<String>,
}

impl Figures {
    /// One connection's figures over its latest interval.
    pub fn of_peer(m: &PeerMetrics) -> Self {
        Self {
            quality: m.quality,
            mos: m.mos,
            upload_kbps: m.upload_kbps,
            download_kbps: m.download_kbps,
            rtt_ms: m.best_rtt_ms(),
            loss_pct: m.loss_pct(),
            jitter_ms: m.jitter_ms,
            using_relay: m.relay.using_relay,
            relay_protocol: m.relay.protocol.clone(),
        }
    }

    /// Upload plus download (either alone when the other is unknown).
    pub fn bitrate_kbps(&self) -> Option<f64> {
        add_opt(self.upload_kbps, self.download_kbps)
    }
}

/// The aggregate of a tab's peer connections for the latest interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TabMetrics {
    pub at_ms: f64,
    /// Bitrates summed over connections; RTT, loss and jitter the mean over connections that
    /// carry media; relay when any connection relays.
    #[serde(flatten)]
    pub figures: Figures,
    pub relay_server_url: Option<String>,
    /// The connections, each with its latest interval.
    pub peers: Vec<PeerMetrics>,
    /// The active findings of every connection, most severe first.
    #[serde(default)]
    pub findings: Vec<crate::finding::Finding>,
}

pub(crate) fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

pub(crate) fn add_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, y) => x.or(y),
    }
}

pub(crate) fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}
