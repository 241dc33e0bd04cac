//! Offline analysis of a getStats recording: the processor run over every snapshot, with a summary per connection.
//!
//! Recording format: a JSON object whose `snapshots` member is an array with one element per
//! poll, each an array of `{"pc": <id>, "reports": [<raw getStats report objects>]}`; other
//! members are ignored. A snapshot's time is the newest `timestamp` among its reports (the
//! browser's clock), else one second after the previous poll.

use crate::metrics::{mean, PeerMetrics};
use crate::processor::{Input, Output, Processor};
use crate::quality::QualityClass;
use crate::stats::parse_report;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a recording could not be read.
#[derive(Debug, PartialEq)]
pub struct RecordingError(pub String);

impl std::fmt::Display for RecordingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RecordingError {}

#[derive(Deserialize)]
struct Recording {
    snapshots: Vec<Vec<PcSnapshot>>,
}

#[derive(Deserialize)]
struct PcSnapshot {
    pc: serde_json::Value,
    reports: Vec<serde_json::Value>,
}

/// The summary of one connection over the whole recording.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub pc: String,
    pub intervals: usize,
    /// Relayed in any interval.
    pub using_relay: bool,
    pub relay_protocol: Option<String>,
    pub avg_upload_kbps: Option<f64>,
    pub avg_download_kbps: Option<f64>,
    pub avg_rtt_ms: Option<f64>,
    pub avg_loss_pct: Option<f64>,
    pub avg_jitter_ms: Option<f64>,
    /// The class of the averages.
    pub quality: Option<QualityClass>,
    pub mos: Option<f64>,
}

/// The analysis: every interval of every connection in order, and the summaries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    pub intervals: Vec<PeerMetrics>,
    pub summaries: Vec<Summary>,
}

fn pc_name(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs the processor over a recording.
pub fn analyze(json: &str) -> Result<Analysis, RecordingError> {
    let rec: Recording = serde_json::from_str(json).map_err(|e| {
        RecordingError(format!(
            "not a recording ({e}); expected {{\"snapshots\": [[{{\"pc\", \"reports\"}}]]}}"
        ))
    })?;
    let mut processor = Processor::new();
    let mut intervals = Vec::new();
    let mut last_ms = 0.0;
    for poll in rec.snapshots {
        for snap in poll {
            let reports: Vec<_> = snap.reports.into_iter().map(parse_report).collect();
            let newest = reports
                .iter()
                .filter_map(crate::stats::RawReport::timestamp)
                .fold(f64::NAN, f64::max);
            let now_ms = if newest.is_finite() { newest } else { last_ms + 1000.0 };
            last_ms = now_ms;
            processor.handle_input(Input::Snapshot {
                now_ms,
                pc: pc_name(&snap.pc),
                reports,
            });
            while let Some(out) = processor.poll_output() {
                if let Output::PeerMetrics(m) = out {
                    intervals.push(m);
                }
            }
        }
    }
    let summaries = summarize(&intervals);
    Ok(Analysis { intervals, summaries })
}

fn summarize(intervals: &[PeerMetrics]) -> Vec<Summary> {
    let mut by_pc: BTreeMap<&str, Vec<&PeerMetrics>> = BTreeMap::new();
    for m in intervals {
        by_pc.entry(&m.pc).or_default().push(m);
    }
    by_pc
        .into_iter()
        .map(|(pc, ms)| {
            let avg = |f: fn(&PeerMetrics) -> Option<f64>| mean(ms.iter().filter_map(|m| f(m)));
            let relayed = ms.iter().find(|m| m.relay.using_relay);
            let rtt = avg(PeerMetrics::best_rtt_ms);
            let loss = avg(PeerMetrics::loss_pct);
            let jitter = avg(|m| m.jitter_ms);
            let (quality, mos) = QualityClass::assess(rtt, loss, jitter);
            Summary {
                pc: pc.to_string(),
                intervals: ms.len(),
                using_relay: relayed.is_some(),
                relay_protocol: relayed.and_then(|m| m.relay.protocol.clone()),
                avg_upload_kbps: avg(|m| m.upload_kbps),
                avg_download_kbps: avg(|m| m.download_kbps),
                avg_rtt_ms: rtt,
                avg_loss_pct: loss,
                avg_jitter_ms: jitter,
                quality,
                mos,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_recordings_are_explained() {
        assert!(analyze("[1,2]").unwrap_err().0.contains("not a recording"));
        assert!(analyze("{\"snapshots\": 3}").is_err());
        assert_eq!(
            analyze("{\"snapshots\": [], \"other\": 1}").unwrap(),
            Analysis::default()
        );
    }

    #[test]
    fn two_polls_give_one_rated_interval_and_a_summary() {
        let poll = |t: f64, bytes: f64| {
            json!([{"pc": 7, "reports": [
                {"type": "outbound-rtp", "id": "O", "kind": "audio", "ssrc": 1, "timestamp": t, "bytesSent": bytes},
                {"type": "transport", "id": "T", "selectedCandidatePairId": "P"},
                {"type": "candidate-pair", "id": "P", "localCandidateId": "L", "currentRoundTripTime": 0.04},
                {"type": "local-candidate", "id": "L", "candidateType": "relay", "relayProtocol": "tcp"}
            ]}])
        };
        let rec = json!({"snapshots": [poll(1000.0, 0.0), poll(2000.0, 5000.0)]}).to_string();
        let a = analyze(&rec).unwrap();
        assert_eq!(a.intervals.len(), 2);
        assert_eq!(a.intervals[1].upload_kbps, Some(40.0));
        let s = &a.summaries[0];
        assert_eq!(s.pc, "7");
        assert!(s.using_relay);
        assert_eq!(s.relay_protocol.as_deref(), Some("tcp"));
        assert_eq!(s.avg_upload_kbps, Some(40.0));
        assert_eq!(s.avg_rtt_ms, Some(40.0));
        assert_eq!(s.quality, Some(QualityClass::Excellent));
    }
}
