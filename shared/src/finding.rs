//! What a finding is: its stable id (with severity, a short summary and advice), its evidence and its span; the data the diagnosis produces and the popup, the report and the collector read.

use crate::severity::Severity;
use serde::{Deserialize, Serialize};

/// A finding's stable id (also the collector's alert type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingId {
    BandwidthLimited,
    AppCapped,
    CpuLimited,
    HighLatency,
    PacketLoss,
    HighJitter,
    AudioConcealment,
    VideoFrozen,
    MicSilent,
    NoMediaReceived,
    RelayTcp,
    ConnectionUnstable,
    HighRetransmission,
}

impl FindingId {
    pub const ALL: [FindingId; 13] = [
        Self::BandwidthLimited,
        Self::AppCapped,
        Self::CpuLimited,
        Self::HighLatency,
        Self::PacketLoss,
        Self::HighJitter,
        Self::AudioConcealment,
        Self::VideoFrozen,
        Self::MicSilent,
        Self::NoMediaReceived,
        Self::RelayTcp,
        Self::ConnectionUnstable,
        Self::HighRetransmission,
    ];

    /// The id as written everywhere (`data-finding`, alert type): "bandwidth-limited", ...
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BandwidthLimited => "bandwidth-limited",
            Self::AppCapped => "app-capped",
            Self::CpuLimited => "cpu-limited",
            Self::HighLatency => "high-latency",
            Self::PacketLoss => "packet-loss",
            Self::HighJitter => "high-jitter",
            Self::AudioConcealment => "audio-concealment",
            Self::VideoFrozen => "video-frozen",
            Self::MicSilent => "mic-silent",
            Self::NoMediaReceived => "no-media-received",
            Self::RelayTcp => "relay-tcp",
            Self::ConnectionUnstable => "connection-unstable",
            Self::HighRetransmission => "high-retransmission",
        }
    }

    /// The id named `name` ([`as_str`](Self::as_str)).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|id| id.as_str() == name)
    }

    /// What it means, in a few words without figures (the collector's alert message).
    pub fn summary(self) -> &'static str {
        match self {
            Self::BandwidthLimited => "The network limits the video sent",
            Self::AppCapped => "The app caps the video bitrate below what the network allows",
            Self::CpuLimited => "The computer is too busy to encode video",
            Self::HighLatency => "High delay on the connection",
            Self::PacketLoss => "Packets are lost",
            Self::HighJitter => "Uneven network timing (jitter)",
            Self::AudioConcealment => "Incoming audio is choppy or robotic",
            Self::VideoFrozen => "Video is frozen",
            Self::MicSilent => "The microphone sends silence",
            Self::NoMediaReceived => "No media arrives from the other side",
            Self::RelayTcp => "Relayed over TCP, which adds delay",
            Self::ConnectionUnstable => "The connection dropped or switched paths",
            Self::HighRetransmission => "Much of the video is sent twice",
        }
    }

    /// How much it hurts the call: the app's own cap is information, a broken connection or
    /// missing media is critical, the rest degrade the call.
    pub fn severity(self) -> Severity {
        match self {
            Self::AppCapped => Severity::Info,
            Self::ConnectionUnstable | Self::NoMediaReceived => Severity::Critical,
            _ => Severity::Warning,
        }
    }

    /// What to try, in plain words.
    pub fn advice(self) -> &'static str {
        match self {
            Self::BandwidthLimited => {
                "Try closing other downloads and video streams, moving closer to the Wi-Fi router, or using a cable."
            }
            Self::AppCapped => {
                "The meeting app limits this bitrate itself; the network has room. Check the app's video quality settings."
            }
            Self::CpuLimited => "Close other apps and browser tabs, or lower the video resolution; plug in a laptop on battery.",
            Self::HighLatency => {
                "Use a wired connection or a closer network; a VPN or a distant relay server adds delay."
            }
            Self::PacketLoss => "Move closer to the Wi-Fi router or use a cable; other traffic on the network can cause it too.",
            Self::HighJitter => "Pause large downloads and uploads on this network; a wired connection is steadier than Wi-Fi.",
            Self::AudioConcealment => {
                "Audio from the other side arrives late or lost, so it sounds choppy; the network between you is the cause."
            }
            Self::VideoFrozen => "Check that the camera or shared window is still available and not used by another app.",
            Self::MicSilent => "Check that the microphone is not muted (in the app, the system or on the headset) and is the right device.",
            Self::NoMediaReceived => {
                "The other side sends nothing in this direction: ask them to check their camera or microphone, or rejoin."
            }
            Self::RelayTcp => {
                "A firewall blocks UDP, so the call goes through a relay over TCP, which adds delay; allow UDP if you can."
            }
            Self::ConnectionUnstable => "The connection dropped or switched paths; check the network, or rejoin if it stays broken.",
            Self::HighRetransmission => "Much of the video is sent twice because packets are lost; a steadier network helps.",
        }
    }
}

/// One figure behind a finding: what it is and its value in words ("estimate", "90 kbps").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub label: String,
    pub value: String,
}

/// A finding as shown and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub id: FindingId,
    pub severity: Severity,
    /// The peer connection it is about.
    pub pc: String,
    /// One line in plain words, with the figures ("Your network limits your video: ...").
    pub title: String,
    pub evidence: Vec<Evidence>,
    pub advice: String,
    /// When the condition started, ms (the shell's clock).
    pub since_ms: f64,
    /// When it was resolved; `None` while active.
    pub until_ms: Option<f64>,
}

/// Every id's name, in [`FindingId::ALL`] order.
pub const FINDING_NAMES: [&str; 13] = {
    let mut names = [""; 13];
    let mut i = 0;
    while i < FindingId::ALL.len() {
        names[i] = FindingId::ALL[i].as_str();
        i += 1;
    }
    names
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_ids_and_read_back() {
        for id in FindingId::ALL {
            assert_eq!(serde_json::to_value(id).unwrap(), id.as_str());
            assert_eq!(FindingId::from_name(id.as_str()), Some(id));
        }
        assert_eq!(FINDING_NAMES.len(), FindingId::ALL.len());
        assert_eq!(FindingId::from_name("nope"), None);
    }
}
