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

/// Video figures of one direction, from the largest active stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoMetrics {
    pub fps: Option<f64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Freezes (`freezeCount`) that started during the interval, received video only.
    pub freezes: Option<u32>,
    /// `qualityLimitationReason` of sent video: none, cpu, bandwidth or other.
    pub quality_limitation: Option<String>,
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
    pub video_in: Option<VideoMetrics>,
    pub video_out: Option<VideoMetrics>,
    /// The connection sends or receives RTP media (data-channel-only ones do not).
    pub carries_media: bool,
    pub quality: Option<QualityClass>,
    pub mos: Option<f64>,
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
