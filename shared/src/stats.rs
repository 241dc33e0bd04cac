//! Typed raw getStats reports (W3C webrtc-stats), the subset of members the processor reads.
//!
//! Every member is optional: browsers differ (Firefox and Safari omit some) and the page is
//! untrusted, so a missing or mistyped member must never fail the whole snapshot. Serialised,
//! a report holds only the members it has, as the hook sends them (`messages::PcStats`).

use serde::{Deserialize, Deserializer, Serialize};

/// One report of an `RTCStatsReport`, tagged by its `type` member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RawReport {
    InboundRtp(InboundRtp),
    OutboundRtp(OutboundRtp),
    RemoteInboundRtp(RemoteInboundRtp),
    CandidatePair(CandidatePair),
    LocalCandidate(Candidate),
    RemoteCandidate(Candidate),
    Transport(Transport),
    /// Any other report type (codec, media-source, certificate, ...): ignored.
    #[serde(other)]
    Other,
}

/// Lenient number: a non-number (or a non-finite one) reads as absent instead of failing.
fn num<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.and_then(|v| v.as_f64()).filter(|x| x.is_finite()))
}

/// Lenient string: a non-string reads as absent.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match v {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    })
}

/// Lenient boolean: a non-boolean reads as absent.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.and_then(|v| v.as_bool()))
}

/// `RTCInboundRtpStreamStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InboundRtp {
    /// `RTCStats.id`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `RTCStats.timestamp`, ms.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<f64>,
    /// `RTCRtpStreamStats.ssrc`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub ssrc: Option<f64>,
    /// `RTCRtpStreamStats.kind`: "audio" or "video".
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Legacy `mediaType`, used when `kind` is missing.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `RTCInboundRtpStreamStats.bytesReceived`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<f64>,
    /// `RTCReceivedRtpStreamStats.packetsReceived`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub packets_received: Option<f64>,
    /// `RTCReceivedRtpStreamStats.packetsLost` (may decrease: duplicates are subtracted).
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub packets_lost: Option<f64>,
    /// `RTCReceivedRtpStreamStats.jitter`, seconds.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
    /// `RTCInboundRtpStreamStats.framesPerSecond`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub frames_per_second: Option<f64>,
    /// `RTCInboundRtpStreamStats.frameWidth`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub frame_width: Option<f64>,
    /// `RTCInboundRtpStreamStats.frameHeight`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub frame_height: Option<f64>,
    /// `RTCInboundRtpStreamStats.freezeCount`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub freeze_count: Option<f64>,
}

/// `RTCOutboundRtpStreamStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OutboundRtp {
    /// `RTCStats.id`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `RTCStats.timestamp`, ms.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<f64>,
    /// `RTCRtpStreamStats.ssrc`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub ssrc: Option<f64>,
    /// `RTCRtpStreamStats.kind`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Legacy `mediaType`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `RTCSentRtpStreamStats.bytesSent`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<f64>,
    /// `RTCSentRtpStreamStats.packetsSent`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub packets_sent: Option<f64>,
    /// `RTCOutboundRtpStreamStats.framesPerSecond`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub frames_per_second: Option<f64>,
    /// `RTCOutboundRtpStreamStats.frameWidth`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub frame_width: Option<f64>,
    /// `RTCOutboundRtpStreamStats.frameHeight`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub frame_height: Option<f64>,
    /// `RTCOutboundRtpStreamStats.qualityLimitationReason`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub quality_limitation_reason: Option<String>,
}

/// `RTCRemoteInboundRtpStreamStats`: what the remote end reports about our outbound stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RemoteInboundRtp {
    /// `RTCStats.id`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `RTCRtpStreamStats.kind`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `RTCRemoteInboundRtpStreamStats.roundTripTime`, seconds.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub round_trip_time: Option<f64>,
    /// `RTCRemoteInboundRtpStreamStats.fractionLost`, 0..1.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub fraction_lost: Option<f64>,
}

/// `RTCIceCandidatePairStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CandidatePair {
    /// `RTCStats.id`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `RTCIceCandidatePairStats.transportId`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub transport_id: Option<String>,
    /// `RTCIceCandidatePairStats.localCandidateId`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub local_candidate_id: Option<String>,
    /// `RTCIceCandidatePairStats.remoteCandidateId`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub remote_candidate_id: Option<String>,
    /// `RTCIceCandidatePairStats.state`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `RTCIceCandidatePairStats.nominated`.
    #[serde(deserialize_with = "flag", skip_serializing_if = "Option::is_none")]
    pub nominated: Option<bool>,
    /// Firefox's non-standard `selected`.
    #[serde(deserialize_with = "flag", skip_serializing_if = "Option::is_none")]
    pub selected: Option<bool>,
    /// `RTCIceCandidatePairStats.currentRoundTripTime`, seconds.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub current_round_trip_time: Option<f64>,
    /// `RTCIceCandidatePairStats.totalRoundTripTime`, seconds.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub total_round_trip_time: Option<f64>,
    /// `RTCIceCandidatePairStats.responsesReceived`.
    #[serde(deserialize_with = "num", skip_serializing_if = "Option::is_none")]
    pub responses_received: Option<f64>,
}

/// `RTCIceCandidateStats` (both `local-candidate` and `remote-candidate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Candidate {
    /// `RTCStats.id`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `RTCIceCandidateStats.candidateType`: host, srflx, prflx or relay.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub candidate_type: Option<String>,
    /// `RTCIceCandidateStats.relayProtocol`: udp, tcp or tls (local relay candidates only).
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub relay_protocol: Option<String>,
    /// `RTCIceCandidateStats.url`: the STUN/TURN server the candidate came from.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `RTCTransportStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Transport {
    /// `RTCStats.id`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `RTCTransportStats.selectedCandidatePairId`.
    #[serde(deserialize_with = "text", skip_serializing_if = "Option::is_none")]
    pub selected_candidate_pair_id: Option<String>,
}

impl RawReport {
    /// The report's `timestamp`, ms, where its type carries one the processor reads.
    pub fn timestamp(&self) -> Option<f64> {
        match self {
            Self::InboundRtp(r) => r.timestamp,
            Self::OutboundRtp(r) => r.timestamp,
            _ => None,
        }
    }
}

/// Parses one report leniently: a report that is not an object, or has no known `type`, is
/// `Other`, never an error.
pub fn parse_report(value: serde_json::Value) -> RawReport {
    serde_json::from_value(value).unwrap_or(RawReport::Other)
}

/// Deserialises a list of reports as [`parse_report`] reads each one, so that one malformed report
/// never fails the message that carries it (for `#[serde(deserialize_with)]`).
pub fn lenient_reports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RawReport>, D::Error> {
    Ok(Vec::<serde_json::Value>::deserialize(d)?
        .into_iter()
        .map(parse_report)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_types_and_junk_members_are_tolerated() {
        assert_eq!(parse_report(json!({"type": "codec", "id": "C1"})), RawReport::Other);
        assert_eq!(parse_report(json!(42)), RawReport::Other);
        let r = parse_report(json!({
            "type": "outbound-rtp", "id": "O1", "bytesSent": "lots", "kind": 7, "timestamp": 1000.0
        }));
        match r {
            RawReport::OutboundRtp(o) => {
                assert_eq!(o.id.as_deref(), Some("O1"));
                assert_eq!(o.bytes_sent, None);
                assert_eq!(o.kind, None);
                assert_eq!(o.timestamp, Some(1000.0));
            }
            other => panic!("expected outbound-rtp, got {other:?}"),
        }
    }

    #[test]
    fn candidate_members_are_read() {
        let r = parse_report(json!({
            "type": "local-candidate", "id": "L1", "candidateType": "relay",
            "relayProtocol": "tcp", "url": "turn:turn.example.com:3478?transport=tcp",
            "address": "10.0.0.1", "port": 50000
        }));
        let RawReport::LocalCandidate(c) = r else {
            panic!("not a local candidate")
        };
        assert_eq!(c.candidate_type.as_deref(), Some("relay"));
        assert_eq!(c.relay_protocol.as_deref(), Some("tcp"));
    }
}
