//! The per-tab recording behind reports and sparklines: bounded rings of tab and connection samples over the last 10 minutes.

use super::{ConnectionSample, TabSample, MAX_CONNECTIONS, REPORT_WINDOW_MS, RING_SAMPLES, SAMPLE_STEP_MS};
use crate::diagnosis::Change;
use crate::finding::Finding;
use crate::messages::HistorySample;
use crate::metrics::{PeerMetrics, TabMetrics};
use std::collections::{BTreeMap, VecDeque};

/// A tab's call over the last [`REPORT_WINDOW_MS`]: at most [`RING_SAMPLES`] tab samples and
/// as many per connection, for at most [`MAX_CONNECTIONS`] connections. Whatever is older than
/// the window (measured from the newest sample) is dropped as new samples come. Dropping the
/// recorder frees everything.
#[derive(Debug, Clone, Default)]
pub struct CallRecorder {
    tab: VecDeque<TabSample>,
    connections: BTreeMap<String, ConnectionRing>,
    /// Findings in the order raised, at most [`MAX_FINDINGS`]; a resolved one carries its end.
    findings: VecDeque<Finding>,
}

/// Findings a recorder keeps; past it, the oldest resolved one goes (an active one only when
/// every one is active).
pub const MAX_FINDINGS: usize = 200;

#[derive(Debug, Clone, Default)]
struct ConnectionRing {
    samples: VecDeque<ConnectionSample>,
    closed_ms: Option<f64>,
}

impl ConnectionRing {
    fn last_ms(&self) -> f64 {
        self.samples.back().map_or(f64::NEG_INFINITY, |s| s.at_ms)
    }
}

/// Drops samples older than `cutoff_ms`, and the oldest beyond the ring's size.
fn trim<T>(ring: &mut VecDeque<T>, at: impl Fn(&T) -> f64, cutoff_ms: f64) {
    while ring.front().is_some_and(|s| at(s) < cutoff_ms) || ring.len() > RING_SAMPLES {
        ring.pop_front();
    }
}

impl CallRecorder {
    /// Records the tab's new aggregate: a new sample at most about once a second, else the
    /// latest sample takes the new figures (keeping its own time, so samples stay about a
    /// second apart). Metrics older than the latest sample are ignored.
    pub fn record_tab(&mut self, m: &TabMetrics) {
        if !m.at_ms.is_finite() {
            return;
        }
        let sample = TabSample::from_metrics(m);
        match self.tab.back_mut() {
            Some(last) if m.at_ms < last.at_ms => return,
            Some(last) if m.at_ms - last.at_ms < SAMPLE_STEP_MS => {
                *last = TabSample {
                    at_ms: last.at_ms,
                    ..sample
                };
            }
            _ => self.tab.push_back(sample),
        }
        trim(&mut self.tab, |s| s.at_ms, m.at_ms - REPORT_WINDOW_MS);
    }

    /// Records one connection's interval (one per poll, about a second apart). An interval
    /// not newer than the connection's latest is ignored.
    pub fn record_peer(&mut self, m: &PeerMetrics) {
        if !m.at_ms.is_finite() {
            return;
        }
        if !self.connections.contains_key(&m.pc) && self.connections.len() >= MAX_CONNECTIONS {
            let quietest = self
                .connections
                .iter()
                .min_by(|a, b| a.1.last_ms().total_cmp(&b.1.last_ms()))
                .map(|(pc, _)| pc.clone());
            if let Some(pc) = quietest {
                self.connections.remove(&pc);
            }
        }
        let ring = self.connections.entry(m.pc.clone()).or_default();
        if ring.samples.back().is_some_and(|last| m.at_ms <= last.at_ms) {
            return;
        }
        ring.samples.push_back(ConnectionSample::from_metrics(m));
        ring.closed_ms = None;
        let cutoff = m.at_ms - REPORT_WINDOW_MS;
        trim(&mut ring.samples, |s| s.at_ms, cutoff);
        self.connections.retain(|_, c| c.last_ms() >= cutoff);
    }

    /// Records a finding raised (a new entry) or resolved (its entry gets the end and the
    /// latest evidence). Resolved findings older than the window go.
    pub fn record_finding(&mut self, change: &Change) {
        match change {
            Change::Raised(f) => {
                if self.findings.len() >= MAX_FINDINGS {
                    let drop = self.findings.iter().position(|f| f.until_ms.is_some()).unwrap_or(0);
                    self.findings.remove(drop);
                }
                self.findings.push_back(f.clone());
            }
            Change::Resolved(f) => {
                let open = self
                    .findings
                    .iter_mut()
                    .rev()
                    .find(|e| e.id == f.id && e.pc == f.pc && e.until_ms.is_none());
                if let Some(entry) = open {
                    *entry = f.clone();
                }
                if let Some(until) = f.until_ms {
                    let cutoff = until - REPORT_WINDOW_MS;
                    self.findings.retain(|e| e.until_ms.is_none_or(|u| u >= cutoff));
                }
            }
        }
    }

    /// The findings recorded, in the order raised.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> + '_ {
        self.findings.iter()
    }

    /// The connection `pc` closed at `at_ms`.
    pub fn closed(&mut self, pc: &str, at_ms: f64) {
        if let Some(ring) = self.connections.get_mut(pc) {
            ring.closed_ms = Some(at_ms);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tab.is_empty() && self.connections.is_empty()
    }

    /// The oldest sample's time.
    pub fn first_ms(&self) -> Option<f64> {
        let tab = self.tab.front().map(|s| s.at_ms);
        let pcs = self
            .connections
            .values()
            .filter_map(|c| c.samples.front().map(|s| s.at_ms));
        tab.into_iter().chain(pcs).min_by(f64::total_cmp)
    }

    /// The newest sample's time.
    pub fn last_ms(&self) -> Option<f64> {
        let tab = self.tab.back().map(|s| s.at_ms);
        let pcs = self
            .connections
            .values()
            .filter_map(|c| c.samples.back().map(|s| s.at_ms));
        tab.into_iter().chain(pcs).max_by(f64::total_cmp)
    }

    /// The tab's samples, oldest first.
    pub fn tab_samples(&self) -> impl DoubleEndedIterator<Item = &TabSample> + '_ {
        self.tab.iter()
    }

    /// Each connection (by id): its samples oldest first, and when it closed.
    pub fn connections(
        &self,
    ) -> impl Iterator<Item = (&str, impl Iterator<Item = &ConnectionSample> + '_, Option<f64>)> + '_ {
        self.connections
            .iter()
            .map(|(pc, ring)| (pc.as_str(), ring.samples.iter(), ring.closed_ms))
    }

    /// The tab's last `span_ms` before `now_ms` for the popup's sparklines, oldest first, at
    /// most `max` samples.
    pub fn history(&self, now_ms: f64, span_ms: f64, max: usize) -> Vec<HistorySample> {
        let mut recent: Vec<HistorySample> = self
            .tab
            .iter()
            .rev()
            .take_while(|s| now_ms - s.at_ms <= span_ms)
            .filter(|s| s.at_ms <= now_ms)
            .take(max)
            .map(|s| HistorySample {
                at_ms: s.at_ms,
                bitrate_kbps: s.figures.bitrate_kbps(),
                rtt_ms: s.figures.rtt_ms,
            })
            .collect();
        recent.reverse();
        recent
    }

    /// Samples held (tab and connections), for memory checks.
    pub fn sample_count(&self) -> usize {
        self.tab.len() + self.connections.values().map(|c| c.samples.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Figures;

    fn tab(at_ms: f64, kbps: f64) -> TabMetrics {
        TabMetrics {
            figures: Figures {
                upload_kbps: Some(kbps),
                download_kbps: Some(kbps),
                rtt_ms: Some(20.0),
                ..Figures::default()
            },
            at_ms,
            ..TabMetrics::default()
        }
    }

    fn peer(pc: &str, at_ms: f64) -> PeerMetrics {
        PeerMetrics {
            pc: pc.into(),
            at_ms,
            upload_kbps: Some(100.0),
            ..PeerMetrics::default()
        }
    }

    #[test]
    fn tab_samples_are_a_second_apart_and_keep_the_newest_figures() {
        let mut r = CallRecorder::default();
        for i in 0..10 {
            let t = f64::from(i) * 1000.0;
            r.record_tab(&tab(t, 100.0));
            r.record_tab(&tab(t + 400.0, 300.0));
        }
        let samples: Vec<&TabSample> = r.tab_samples().collect();
        assert_eq!(samples.len(), 10);
        assert!(samples.windows(2).all(|w| w[1].at_ms - w[0].at_ms == 1000.0));
        assert_eq!(samples[9].figures.upload_kbps, Some(300.0));
        // Older metrics do not rewrite the past.
        r.record_tab(&tab(500.0, 1.0));
        assert_eq!(r.tab_samples().count(), 10);
        let h = r.history(9_400.0, 3_000.0, 60);
        assert_eq!(
            h.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
            vec![7_000.0, 8_000.0, 9_000.0]
        );
        assert_eq!(h[2].bitrate_kbps, Some(600.0));
        assert_eq!(r.history(9_400.0, 60_000.0, 4).len(), 4);
    }

    #[test]
    fn rings_stay_bounded_over_a_long_call() {
        let mut r = CallRecorder::default();
        // An hour at two polls a second on 3 connections.
        for i in 0..7200 {
            let t = f64::from(i) * 500.0;
            for pc in ["a", "b", "c"] {
                r.record_peer(&peer(pc, t));
            }
            r.record_tab(&tab(t, 1.0));
        }
        assert!(r.tab_samples().count() <= RING_SAMPLES);
        for (_, samples, _) in r.connections() {
            assert_eq!(samples.count(), RING_SAMPLES, "capped by count before the window");
        }
        assert!(r.sample_count() <= 4 * RING_SAMPLES);
        let newest = r.last_ms().unwrap();
        assert!(r.first_ms().unwrap() >= newest - REPORT_WINDOW_MS);
    }

    #[test]
    fn a_full_tab_holds_about_a_megabyte_at_most() {
        // Inline sizes (a relay protocol adds a few bytes on the heap per relayed sample).
        let full = RING_SAMPLES
            * (std::mem::size_of::<TabSample>() + MAX_CONNECTIONS * std::mem::size_of::<ConnectionSample>());
        assert!(full < 4 << 20, "{full} bytes for {MAX_CONNECTIONS} connections");
        let ten = RING_SAMPLES * (std::mem::size_of::<TabSample>() + 10 * std::mem::size_of::<ConnectionSample>());
        assert!(ten < 1 << 20, "{ten} bytes for 10 connections");
    }

    #[test]
    fn old_and_surplus_connections_are_dropped() {
        let mut r = CallRecorder::default();
        r.record_peer(&peer("gone", 0.0));
        r.closed("gone", 500.0);
        assert_eq!(r.connections().next().unwrap().2, Some(500.0));
        r.record_peer(&peer("live", REPORT_WINDOW_MS + 1.0));
        let ids: Vec<&str> = r.connections().map(|c| c.0).collect();
        assert_eq!(ids, vec!["live"], "a connection silent for the whole window goes");
        for i in 0..(MAX_CONNECTIONS + 5) {
            r.record_peer(&peer(&format!("pc-{i:02}"), REPORT_WINDOW_MS + 2.0 + i as f64));
        }
        assert_eq!(r.connections().count(), MAX_CONNECTIONS);
        assert!(
            r.connections().all(|c| c.0 != "live" && c.0 != "pc-00"),
            "the quietest ones went first"
        );
        // A repeated or older interval is not recorded twice.
        let before = r.sample_count();
        r.record_peer(&peer("pc-10", 0.0));
        r.record_peer(&peer("pc-10", REPORT_WINDOW_MS + 12.0));
        assert_eq!(r.sample_count(), before);
        assert!(!r.is_empty());
        assert!(CallRecorder::default().is_empty());
    }

    fn finding(id: crate::finding::FindingId, pc: &str, since_ms: f64, until_ms: Option<f64>) -> Finding {
        Finding {
            id,
            severity: id.severity(),
            pc: pc.into(),
            title: "t".into(),
            evidence: Vec::new(),
            advice: id.advice().into(),
            since_ms,
            until_ms,
        }
    }

    #[test]
    fn findings_keep_start_and_end_and_stay_bounded() {
        use crate::finding::FindingId::{HighLatency, PacketLoss};
        let mut r = CallRecorder::default();
        r.record_finding(&Change::Raised(finding(HighLatency, "a", 1_000.0, None)));
        r.record_finding(&Change::Raised(finding(PacketLoss, "a", 2_000.0, None)));
        r.record_finding(&Change::Resolved(finding(HighLatency, "a", 1_000.0, Some(9_000.0))));
        let seen: Vec<_> = r.findings().map(|f| (f.id, f.since_ms, f.until_ms)).collect();
        assert_eq!(
            seen,
            [(HighLatency, 1_000.0, Some(9_000.0)), (PacketLoss, 2_000.0, None)]
        );
        // Raised again later: a second entry.
        r.record_finding(&Change::Raised(finding(HighLatency, "a", 20_000.0, None)));
        assert_eq!(r.findings().count(), 3);
        // Resolved ones older than the window go once a later one resolves.
        let late = 20_000.0 + REPORT_WINDOW_MS;
        r.record_finding(&Change::Resolved(finding(HighLatency, "a", 20_000.0, Some(late))));
        let seen: Vec<_> = r.findings().map(|f| (f.id, f.until_ms)).collect();
        assert_eq!(seen, [(PacketLoss, None), (HighLatency, Some(late))]);
        for i in 0..MAX_FINDINGS + 10 {
            r.record_finding(&Change::Raised(finding(HighLatency, &format!("p{i}"), late, None)));
        }
        assert_eq!(r.findings().count(), MAX_FINDINGS);
    }
}
