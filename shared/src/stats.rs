//! Typed raw getStats reports (W3C webrtc-stats), the subset of members the processor reads.
//!
//! Every member is optional: browsers differ (Firefox and Safari omit some) and the page is
//! untrusted, so a missing or mistyped member must never fail the whole snapshot. Serialised,
//! a report holds only the members it has, as the hook sends them (`messages::PcStats`).

use crate::limits::MAX_NESTED_MEMBERS;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// One report of an `RTCStatsReport`, tagged by its `type` member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RawReport {
    InboundRtp(InboundRtp),
    OutboundRtp(OutboundRtp),
    RemoteInboundRtp(RemoteInboundRtp),
    MediaSource(MediaSource),
    CandidatePair(CandidatePair),
    LocalCandidate(Candidate),
    RemoteCandidate(RemoteCandidate),
    Transport(Transport),
    /// Not a getStats report: the connection's states at poll time, added by the hook.
    PeerConnection(PeerConnection),
    /// Any other report type (codec, certificate, ...): ignored.
    #[serde(other)]
    Other,
}

/// What a member can be read as, leniently: a value of another type (or a non-finite number)
/// reads as absent instead of failing the report. Read with one visitor straight from the
/// deserializer (JSON or a JavaScript object), never through a `serde_json::Value`: this is the
/// offscreen document's hot path. Each type says which kinds of value it takes; every other kind
/// (null, sequences and maps included, which are consumed) is `None`.
pub trait Lenient: Sized {
    /// What the type is, for error messages.
    const EXPECTING: &'static str;

    fn from_number(_: f64) -> Option<Self> {
        None
    }

    fn from_text(_: &str) -> Option<Self> {
        None
    }

    fn from_flag(_: bool) -> Option<Self> {
        None
    }

    /// Reads a value of this type, `None` for any other kind.
    fn lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Self>, D::Error> {
        d.deserialize_any(LenientVisitor::<Self>(std::marker::PhantomData))
    }

    /// An object's members; `None` (after consuming them) unless the type is one.
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// The one visitor of [`Lenient`] types.
struct LenientVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Lenient> Visitor<'de> for LenientVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(if v.is_finite() { T::from_number(v) } else { None })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(T::from_number(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(T::from_number(v as f64))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(T::from_text(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(T::from_flag(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::from_map(map)
    }
}

impl Lenient for f64 {
    const EXPECTING: &'static str = "a number";

    fn from_number(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl Lenient for String {
    const EXPECTING: &'static str = "a string";

    fn from_text(v: &str) -> Option<Self> {
        Some(v.to_owned())
    }
}

impl Lenient for bool {
    const EXPECTING: &'static str = "true or false";

    fn from_flag(v: bool) -> Option<Self> {
        Some(v)
    }
}

/// `qualityLimitationDurations`: seconds per reason (`none`, `cpu`, `bandwidth`, `other`).
pub type Durations = BTreeMap<String, f64>;

/// One lenient number, for the values of an object member.
struct LenientNumber(Option<f64>);

impl<'de> Deserialize<'de> for LenientNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::lenient(d).map(LenientNumber)
    }
}

impl Lenient for Durations {
    const EXPECTING: &'static str = "an object of seconds";

    /// An object of at most [`MAX_NESTED_MEMBERS`] members; a member that is not a finite,
    /// non-negative number is left out.
    fn from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut out = Durations::new();
        let mut entries = 0;
        while let Some(key) = map.next_key::<String>()? {
            entries += 1;
            if let LenientNumber(Some(v)) = map.next_value()? {
                if v >= 0.0 {
                    out.insert(key, v);
                }
            }
        }
        Ok((entries <= MAX_NESTED_MEMBERS).then_some(out))
    }
}

fn lenient<'de, D: Deserializer<'de>, T: Lenient>(d: D) -> Result<Option<T>, D::Error> {
    T::lenient(d)
}

/// An object whose members are read one at a time by name, each as the kind its type takes,
/// instead of through a deserializer: the extension reads a report straight from its JavaScript
/// object this way ([`RawReport::from_members`]), one lookup per member the type declares. Each
/// read has the meaning of the [`Lenient`] read of the same member: `None` when it is absent or of
/// another kind.
pub trait Members {
    /// The member as a finite number.
    fn number(&self, name: &'static str) -> Option<f64>;
    /// The member as a string.
    fn text(&self, name: &'static str) -> Option<String>;
    /// The member as a boolean.
    fn flag(&self, name: &'static str) -> Option<bool>;
    /// The member as [`Durations`] (read as [`Lenient`] reads it, the limit included).
    fn durations(&self, name: &'static str) -> Option<Durations>;
}

/// A member type's read from [`Members`].
pub trait Member: Sized {
    fn read(members: &impl Members, name: &'static str) -> Option<Self>;
}

impl Member for f64 {
    fn read(members: &impl Members, name: &'static str) -> Option<Self> {
        members.number(name)
    }
}

impl Member for String {
    fn read(members: &impl Members, name: &'static str) -> Option<Self> {
        members.text(name)
    }
}

impl Member for bool {
    fn read(members: &impl Members, name: &'static str) -> Option<Self> {
        members.flag(name)
    }
}

impl Member for Durations {
    fn read(members: &impl Members, name: &'static str) -> Option<Self> {
        members.durations(name)
    }
}

/// Declares one report type: its struct (every member optional and read leniently, serialised
/// with only the members it has) and [`MEMBERS`](InboundRtp::MEMBERS), the getStats names the
/// hook copies (`hook.js` `FIELDS`, checked by `extension/tests/js_limits.rs`).
macro_rules! stats_report {
    ($(#[doc = $sdoc:literal])* $name:ident { $( $(#[doc = $doc:literal])* $field:ident : $ty:ty = $js:literal, )* }) => {
        $(#[doc = $sdoc])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[serde(rename = $js, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl $name {
            /// The members read, as getStats names them.
            pub const MEMBERS: &'static [&'static str] = &[$($js),*];

            /// Reads the report member by member, with the result its `Deserialize` gives.
            pub fn from_members(members: &impl Members) -> Self {
                Self { $($field: Member::read(members, $js),)* }
            }
        }
    };
}

stats_report! {
    /// `RTCInboundRtpStreamStats`.
    InboundRtp {
        /// `RTCStats.id`.
        id: String = "id",
        /// `RTCStats.timestamp`, ms.
        timestamp: f64 = "timestamp",
        ssrc: f64 = "ssrc",
        /// "audio" or "video".
        kind: String = "kind",
        /// Legacy `mediaType`, used when `kind` is missing.
        media_type: String = "mediaType",
        bytes_received: f64 = "bytesReceived",
        packets_received: f64 = "packetsReceived",
        /// May decrease: duplicates are subtracted.
        packets_lost: f64 = "packetsLost",
        /// Seconds.
        jitter: f64 = "jitter",
        frames_per_second: f64 = "framesPerSecond",
        frame_width: f64 = "frameWidth",
        frame_height: f64 = "frameHeight",
        freeze_count: f64 = "freezeCount",
        /// Seconds.
        total_freezes_duration: f64 = "totalFreezesDuration",
        frames_received: f64 = "framesReceived",
        frames_decoded: f64 = "framesDecoded",
        frames_dropped: f64 = "framesDropped",
        /// Seconds.
        total_decode_time: f64 = "totalDecodeTime",
        /// Seconds, summed over emitted samples or frames.
        jitter_buffer_delay: f64 = "jitterBufferDelay",
        jitter_buffer_emitted_count: f64 = "jitterBufferEmittedCount",
        nack_count: f64 = "nackCount",
        pli_count: f64 = "pliCount",
        fir_count: f64 = "firCount",
        total_samples_received: f64 = "totalSamplesReceived",
        concealed_samples: f64 = "concealedSamples",
        silent_concealed_samples: f64 = "silentConcealedSamples",
        inserted_samples_for_deceleration: f64 = "insertedSamplesForDeceleration",
        removed_samples_for_acceleration: f64 = "removedSamplesForAcceleration",
    }
}

stats_report! {
    /// `RTCOutboundRtpStreamStats`.
    OutboundRtp {
        /// `RTCStats.id`.
        id: String = "id",
        /// `RTCStats.timestamp`, ms.
        timestamp: f64 = "timestamp",
        ssrc: f64 = "ssrc",
        kind: String = "kind",
        /// Legacy `mediaType`.
        media_type: String = "mediaType",
        bytes_sent: f64 = "bytesSent",
        packets_sent: f64 = "packetsSent",
        frames_per_second: f64 = "framesPerSecond",
        frame_width: f64 = "frameWidth",
        frame_height: f64 = "frameHeight",
        /// none, cpu, bandwidth or other.
        quality_limitation_reason: String = "qualityLimitationReason",
        /// Seconds per reason, since the stream started.
        quality_limitation_durations: Durations = "qualityLimitationDurations",
        /// The simulcast layer's id (`rid`); absent without simulcast.
        rid: String = "rid",
        /// Whether the layer is sent (`RTCRtpEncodingParameters.active`).
        active: bool = "active",
        /// The encoder's target, bits per second.
        target_bitrate: f64 = "targetBitrate",
        retransmitted_bytes_sent: f64 = "retransmittedBytesSent",
        frames_encoded: f64 = "framesEncoded",
        /// Seconds.
        total_encode_time: f64 = "totalEncodeTime",
        nack_count: f64 = "nackCount",
        pli_count: f64 = "pliCount",
        fir_count: f64 = "firCount",
        /// The `media-source` report of the track sent.
        media_source_id: String = "mediaSourceId",
    }
}

stats_report! {
    /// `RTCRemoteInboundRtpStreamStats`: what the remote end reports about our outbound stream.
    RemoteInboundRtp {
        /// `RTCStats.id`.
        id: String = "id",
        kind: String = "kind",
        /// Seconds.
        round_trip_time: f64 = "roundTripTime",
        /// 0..1.
        fraction_lost: f64 = "fractionLost",
    }
}

stats_report! {
    /// `RTCAudioSourceStats` / `RTCVideoSourceStats` (`media-source`): the track as captured.
    MediaSource {
        /// `RTCStats.id`.
        id: String = "id",
        kind: String = "kind",
        width: f64 = "width",
        height: f64 = "height",
        frames_per_second: f64 = "framesPerSecond",
        /// 0..1, now.
        audio_level: f64 = "audioLevel",
        total_audio_energy: f64 = "totalAudioEnergy",
        /// Seconds.
        total_samples_duration: f64 = "totalSamplesDuration",
    }
}

stats_report! {
    /// `RTCIceCandidatePairStats`.
    CandidatePair {
        /// `RTCStats.id`.
        id: String = "id",
        transport_id: String = "transportId",
        local_candidate_id: String = "localCandidateId",
        remote_candidate_id: String = "remoteCandidateId",
        state: String = "state",
        nominated: bool = "nominated",
        /// Firefox's non-standard `selected`.
        selected: bool = "selected",
        /// Seconds.
        current_round_trip_time: f64 = "currentRoundTripTime",
        /// Seconds.
        total_round_trip_time: f64 = "totalRoundTripTime",
        responses_received: f64 = "responsesReceived",
        /// The congestion controller's estimate, bits per second.
        available_outgoing_bitrate: f64 = "availableOutgoingBitrate",
        /// Bits per second, where the browser reports it.
        available_incoming_bitrate: f64 = "availableIncomingBitrate",
    }
}

stats_report! {
    /// `RTCIceCandidateStats` of a `remote-candidate`: its type only (the relay details are the
    /// local candidate's).
    RemoteCandidate {
        /// `RTCStats.id`.
        id: String = "id",
        /// host, srflx, prflx or relay.
        candidate_type: String = "candidateType",
    }
}

stats_report! {
    /// `RTCIceCandidateStats` of a `local-candidate`.
    Candidate {
        /// `RTCStats.id`.
        id: String = "id",
        /// host, srflx, prflx or relay.
        candidate_type: String = "candidateType",
        /// udp, tcp or tls (local relay candidates only).
        relay_protocol: String = "relayProtocol",
        /// The STUN/TURN server the candidate came from.
        url: String = "url",
    }
}

stats_report! {
    /// `RTCTransportStats`.
    Transport {
        /// `RTCStats.id`.
        id: String = "id",
        selected_candidate_pair_id: String = "selectedCandidatePairId",
        /// How often the selected pair changed.
        selected_candidate_pair_changes: f64 = "selectedCandidatePairChanges",
        /// Changes with each ICE restart (read, never passed on: it is compared, not stored).
        ice_local_username_fragment: String = "iceLocalUsernameFragment",
        /// new, checking, connected, completed, disconnected, failed or closed.
        ice_state: String = "iceState",
    }
}

stats_report! {
    /// The connection's `connectionState` and `iceConnectionState` when the hook polled it (the
    /// hook adds this report to each snapshot; a getStats `peer-connection` report is not read).
    PeerConnection {
        /// new, connecting, connected, disconnected, failed or closed.
        connection_state: String = "connectionState",
        /// new, checking, connected, completed, disconnected, failed or closed.
        ice_connection_state: String = "iceConnectionState",
    }
}

/// The members read of each getStats report type, as getStats names types and members.
pub const REPORT_MEMBERS: [(&str, &[&str]); 8] = [
    ("inbound-rtp", InboundRtp::MEMBERS),
    ("outbound-rtp", OutboundRtp::MEMBERS),
    ("remote-inbound-rtp", RemoteInboundRtp::MEMBERS),
    ("media-source", MediaSource::MEMBERS),
    ("candidate-pair", CandidatePair::MEMBERS),
    ("local-candidate", Candidate::MEMBERS),
    ("remote-candidate", RemoteCandidate::MEMBERS),
    ("transport", Transport::MEMBERS),
];

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

impl RawReport {
    /// The report of getStats type `kind` read from `members` (its `type` member), with the result
    /// [`parse_report`] gives for the same object: `Other` for a type the processor does not read.
    pub fn from_members(kind: &str, members: &impl Members) -> Self {
        match kind {
            "inbound-rtp" => Self::InboundRtp(InboundRtp::from_members(members)),
            "outbound-rtp" => Self::OutboundRtp(OutboundRtp::from_members(members)),
            "remote-inbound-rtp" => Self::RemoteInboundRtp(RemoteInboundRtp::from_members(members)),
            "media-source" => Self::MediaSource(MediaSource::from_members(members)),
            "peer-connection" => Self::PeerConnection(PeerConnection::from_members(members)),
            "candidate-pair" => Self::CandidatePair(CandidatePair::from_members(members)),
            "local-candidate" => Self::LocalCandidate(Candidate::from_members(members)),
            "remote-candidate" => Self::RemoteCandidate(RemoteCandidate::from_members(members)),
            "transport" => Self::Transport(Transport::from_members(members)),
            _ => Self::Other,
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
    fn a_trimmed_report_fits_the_bridge_limit() {
        for (kind, members) in REPORT_MEMBERS {
            // The hook's copy holds these and `type`.
            assert!(members.len() < crate::limits::MAX_REPORT_MEMBERS, "{kind}");
            let unique: std::collections::BTreeSet<_> = members.iter().collect();
            assert_eq!(unique.len(), members.len(), "{kind}");
        }
    }

    #[test]
    fn quality_limitation_durations_are_an_object_of_seconds() {
        let r = parse_report(json!({
            "type": "outbound-rtp", "id": "O1",
            "qualityLimitationDurations": {"none": 1.5, "cpu": 0.25, "bandwidth": -1, "other": "x"}
        }));
        let RawReport::OutboundRtp(o) = r else {
            panic!("not outbound-rtp")
        };
        let durations = o.quality_limitation_durations.unwrap();
        assert_eq!(durations.get("none"), Some(&1.5));
        assert_eq!(durations.get("cpu"), Some(&0.25));
        assert_eq!(durations.len(), 2, "a negative or non-number reason is left out");
        let big: serde_json::Map<String, serde_json::Value> = (0..=crate::limits::MAX_NESTED_MEMBERS)
            .map(|i| (format!("r{i}"), json!(1)))
            .collect();
        let RawReport::OutboundRtp(o) =
            parse_report(json!({"type": "outbound-rtp", "qualityLimitationDurations": big}))
        else {
            panic!("not outbound-rtp")
        };
        assert_eq!(o.quality_limitation_durations, None);
        // Serialised with the getStats names, only what it has.
        let text = serde_json::to_value(RawReport::OutboundRtp(OutboundRtp {
            target_bitrate: Some(3e5),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(text, json!({"type": "outbound-rtp", "targetBitrate": 300000.0}));
    }

    /// A JSON object read member by member, each through its `Lenient` read.
    struct JsonMembers<'a>(&'a serde_json::Map<String, serde_json::Value>);

    impl JsonMembers<'_> {
        fn read<T: Lenient>(&self, name: &str) -> Option<T> {
            T::lenient(self.0.get(name)?.clone()).unwrap()
        }
    }

    impl Members for JsonMembers<'_> {
        fn number(&self, name: &'static str) -> Option<f64> {
            self.read(name)
        }
        fn text(&self, name: &'static str) -> Option<String> {
            self.read(name)
        }
        fn flag(&self, name: &'static str) -> Option<bool> {
            self.read(name)
        }
        fn durations(&self, name: &'static str) -> Option<Durations> {
            self.read(name)
        }
    }

    #[test]
    fn reading_member_by_member_equals_deserializing() {
        let snapshot: serde_json::Value =
            serde_json::from_str(include_str!("../benches/chrome-snapshot.json")).unwrap();
        let mut reports = snapshot["reports"].as_array().unwrap().clone();
        reports.extend([
            json!({"type": "outbound-rtp", "id": "O1", "bytesSent": "lots", "kind": 7, "active": 1,
                   "rid": "h", "qualityLimitationDurations": {"none": 1, "cpu": -2, "x": "y"}}),
            json!({"type": "peer-connection", "connectionState": "failed", "iceConnectionState": null}),
            json!({"type": "candidate-pair", "nominated": true, "selected": "yes", "state": false}),
            json!({"type": "local-candidate", "url": ["a"], "relayProtocol": {"p": 1}}),
            json!({"type": "codec", "id": "C1", "mimeType": "video/VP8"}),
            json!({"type": "media-source", "id": "S1", "kind": "video", "width": 1280, "height": 720.5,
                   "framesPerSecond": 30, "audioLevel": "loud"}),
        ]);
        let mut kinds = std::collections::BTreeSet::new();
        for report in reports {
            let object = report.as_object().unwrap();
            let kind = object["type"].as_str().unwrap();
            kinds.insert(kind.to_owned());
            let direct = RawReport::from_members(kind, &JsonMembers(object));
            assert_eq!(direct, parse_report(report.clone()), "{report}");
        }
        for (kind, _) in REPORT_MEMBERS {
            assert!(kinds.contains(kind), "no {kind} report compared");
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
