//! Prometheus text exposition of the collector's own counters and of the live participants.
//!
//! Labels are closed sets only (status codes, quality classes, alert types): never meeting ids,
//! URLs or other free text, which would leak and let clients grow the series without bound.

//!
//! The live gauges are kept as commits happen, never counted on a request: every commit that
//! changes a participant's class (or makes it live, or expires it) moves them by that change, in
//! the process that committed it. So with several processes sharing a Redis, each one's gauges
//! are its share of the changes, and their sum (`sum(vitals_participants)`) is the whole.

use crate::alerts::{AlertKind, AlertRecord, AlertState};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use vitals_shared::QualityClass;

/// Upper bounds of the ingest latency histogram, seconds.
const LATENCY_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Ingest answers by status (the statuses ingest can give).
const STATUSES: [u16; 8] = [200, 400, 401, 413, 415, 429, 500, 503];

/// The quality classes of the gauges, `None` (not known yet) last.
const QUALITIES: [Option<QualityClass>; 5] = [
    Some(QualityClass::Excellent),
    Some(QualityClass::Good),
    Some(QualityClass::Fair),
    Some(QualityClass::Poor),
    None,
];

/// What one live participant adds to the gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaugeClass {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityClass>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relayed: bool,
}

/// The counters, updated lock-free by the request handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    requests_by_status: [AtomicU64; STATUSES.len()],
    requests_other: AtomicU64,
    events_accepted: AtomicU64,
    events_applied: AtomicU64,
    /// What the extensions reported of their own upload troubles (the increases of their
    /// cumulative counts).
    client_dropped_events: AtomicU64,
    client_refused_uploads: AtomicU64,
    /// Requests per latency bucket, each counted in the first bucket it fits (one update per
    /// request); the exposition adds them up.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    alerts_raised: [AtomicU64; AlertKind::ALL.len()],
    participants_by_quality: [AtomicI64; QUALITIES.len()],
    relayed_participants: AtomicI64,
}

impl Metrics {
    /// Counts one ingest request, its answer and how long it took.
    pub fn observe_ingest(&self, status: u16, elapsed: Duration) {
        match STATUSES.iter().position(|s| *s == status) {
            Some(i) => self.requests_by_status[i].fetch_add(1, Ordering::Relaxed),
            None => self.requests_other.fetch_add(1, Ordering::Relaxed),
        };
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|bound| seconds <= *bound) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn observe_events(&self, accepted: usize, applied: usize) {
        self.events_accepted.fetch_add(accepted as u64, Ordering::Relaxed);
        self.events_applied.fetch_add(applied as u64, Ordering::Relaxed);
    }

    /// Adds what a batch raised its client's reported troubles by.
    pub fn observe_client(&self, increase: vitals_shared::wire::ClientHealth) {
        self.client_dropped_events
            .fetch_add(increase.dropped_events, Ordering::Relaxed);
        self.client_refused_uploads
            .fetch_add(increase.refused_uploads, Ordering::Relaxed);
    }

    pub fn observe_alerts(&self, records: &[AlertRecord]) {
        for record in records.iter().filter(|r| r.state == AlertState::Raised) {
            if let Some(i) = AlertKind::ALL.iter().position(|k| *k == record.kind) {
                self.alerts_raised[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Moves the live gauges by one committed change of a participant's class.
    pub fn observe_live(&self, from: Option<GaugeClass>, to: Option<GaugeClass>) {
        if from == to {
            return;
        }
        for (class, delta) in [(from, -1), (to, 1)] {
            if let Some(class) = class {
                let i = QUALITIES.iter().position(|q| *q == class.quality).expect("every class");
                self.participants_by_quality[i].fetch_add(delta, Ordering::Relaxed);
                if class.relayed {
                    self.relayed_participants.fetch_add(delta, Ordering::Relaxed);
                }
            }
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP vitals_ingest_requests_total Ingest requests by HTTP status."
        );
        let _ = writeln!(out, "# TYPE vitals_ingest_requests_total counter");
        for (status, count) in STATUSES.iter().zip(&self.requests_by_status) {
            let _ = writeln!(
                out,
                "vitals_ingest_requests_total{{status=\"{status}\"}} {}",
                load(count)
            );
        }
        let _ = writeln!(
            out,
            "vitals_ingest_requests_total{{status=\"other\"}} {}",
            load(&self.requests_other)
        );
        let _ = writeln!(
            out,
            "# HELP vitals_ingest_events_total Events acknowledged (accepted) and newly applied."
        );
        let _ = writeln!(out, "# TYPE vitals_ingest_events_total counter");
        let _ = writeln!(
            out,
            "vitals_ingest_events_total{{result=\"accepted\"}} {}",
            load(&self.events_accepted)
        );
        let _ = writeln!(
            out,
            "vitals_ingest_events_total{{result=\"applied\"}} {}",
            load(&self.events_applied)
        );
        write_counter(
            &mut out,
            "vitals_client_dropped_events_total",
            "Events the extensions report they dropped (rejected batches, queue bounds).",
            load(&self.client_dropped_events),
        );
        write_counter(
            &mut out,
            "vitals_client_refused_uploads_total",
            "Uploads the extensions report were refused as a whole (401, 403, 404, 413).",
            load(&self.client_refused_uploads),
        );
        let _ = writeln!(
            out,
            "# HELP vitals_ingest_duration_seconds Time to answer an ingest request."
        );
        let _ = writeln!(out, "# TYPE vitals_ingest_duration_seconds histogram");
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS_S.iter().zip(&self.latency_buckets) {
            cumulative += load(count);
            let _ = writeln!(
                out,
                "vitals_ingest_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let total = load(&self.latency_count);
        let _ = writeln!(out, "vitals_ingest_duration_seconds_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "vitals_ingest_duration_seconds_sum {}",
            load(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "vitals_ingest_duration_seconds_count {total}");
        let _ = writeln!(
            out,
            "# HELP vitals_alerts_raised_total Alerts raised by this process, by type."
        );
        let _ = writeln!(out, "# TYPE vitals_alerts_raised_total counter");
        for (kind, count) in AlertKind::ALL.iter().zip(&self.alerts_raised) {
            let _ = writeln!(
                out,
                "vitals_alerts_raised_total{{type=\"{}\"}} {}",
                kind.as_str(),
                load(count)
            );
        }
        let _ = writeln!(
            out,
            "# HELP vitals_participants Live participants by quality class (this process's share of the changes)."
        );
        let _ = writeln!(out, "# TYPE vitals_participants gauge");
        for (quality, count) in QUALITIES.iter().zip(&self.participants_by_quality) {
            let name = quality.map_or("unknown", QualityClass::as_str);
            let _ = writeln!(
                out,
                "vitals_participants{{quality=\"{name}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP vitals_relayed_participants Live participants relayed through TURN (this process's share of the changes)."
        );
        let _ = writeln!(out, "# TYPE vitals_relayed_participants gauge");
        let _ = writeln!(
            out,
            "vitals_relayed_participants {}",
            self.relayed_participants.load(Ordering::Relaxed)
        );
        out
    }
}

/// Writes the counter `name`, one series without labels, with its help line.
fn write_counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_gauges_move_by_each_change() {
        let metrics = Metrics::default();
        let poor = GaugeClass {
            quality: Some(QualityClass::Poor),
            relayed: true,
        };
        let good = GaugeClass {
            quality: Some(QualityClass::Good),
            relayed: false,
        };
        metrics.observe_live(None, Some(poor));
        metrics.observe_live(None, Some(poor));
        metrics.observe_live(Some(poor), Some(good));
        metrics.observe_live(Some(good), None);
        let text = metrics.render();
        for line in [
            "vitals_participants{quality=\"poor\"} 1",
            "vitals_participants{quality=\"good\"} 0",
            "vitals_relayed_participants 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_statuses_counted() {
        let metrics = Metrics::default();
        metrics.observe_ingest(200, Duration::from_micros(800));
        metrics.observe_ingest(429, Duration::from_millis(30));
        metrics.observe_ingest(299, Duration::from_secs(9));
        let text = metrics.render();
        for line in [
            "vitals_ingest_requests_total{status=\"200\"} 1",
            "vitals_ingest_requests_total{status=\"429\"} 1",
            "vitals_ingest_requests_total{status=\"other\"} 1",
            "vitals_ingest_duration_seconds_bucket{le=\"0.0005\"} 0",
            "vitals_ingest_duration_seconds_bucket{le=\"0.001\"} 1",
            "vitals_ingest_duration_seconds_bucket{le=\"0.05\"} 2",
            "vitals_ingest_duration_seconds_bucket{le=\"2.5\"} 2",
            "vitals_ingest_duration_seconds_bucket{le=\"+Inf\"} 3",
            "vitals_ingest_duration_seconds_count 3",
            "vitals_participants{quality=\"unknown\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
