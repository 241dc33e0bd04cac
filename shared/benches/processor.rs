//! Criterion benchmark of the getStats processor per peer snapshot of 20 Chrome-shaped reports, from typed reports and from JSON.
//!
//! The snapshot (benches/chrome-snapshot.json: 2 outbound-rtp, 2 inbound-rtp, 2
//! remote-inbound-rtp, transport, 4 candidate pairs, 6 candidates, 2 codecs, peer-connection,
//! with every member Chrome reports) is advanced in time so each measured call is a real
//! interval of one connection: counters grow, rates, loss and RTT are computed, the tab is
//! aggregated and the emission policy runs. Snapshots are prepared before timing; only the
//! processor (and, where named, the parsing) is timed.

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;
use std::hint::black_box;
use std::time::{Duration, Instant};
use vitals_shared::processor::{Input, Processor};
use vitals_shared::stats::{parse_report, RawReport};

/// Distinct consecutive snapshots; the processor restarts after the last (time cannot go back).
const SNAPSHOTS: usize = 1000;

/// The recorded snapshot and how to move it forward in time.
struct Template {
    since_s: f64,
    counters: Vec<String>,
    reports: Vec<Value>,
}

fn template() -> Template {
    let doc: Value = serde_json::from_str(include_str!("chrome-snapshot.json")).expect("chrome-snapshot.json");
    Template {
        since_s: doc["counters_since_s"].as_f64().expect("counters_since_s"),
        counters: serde_json::from_value(doc["counters"].clone()).expect("counters"),
        reports: serde_json::from_value(doc["reports"].clone()).expect("reports"),
    }
}

/// The snapshot `k` seconds after the template's: cumulative counters grow at their average
/// rate so far, timestamps move on.
fn snapshot(t: &Template, k: usize) -> Vec<Value> {
    let scale = (t.since_s + k as f64) / t.since_s;
    let mut reports = t.reports.clone();
    for report in &mut reports {
        let Some(obj) = report.as_object_mut() else { continue };
        for (name, value) in obj.iter_mut() {
            let Some(x) = value.as_f64() else { continue };
            if name == "timestamp" || name.starts_with("last") {
                *value = Value::from(x + k as f64 * 1000.0);
            } else if t.counters.iter().any(|c| c == name) {
                *value = Value::from((x * scale).round());
            }
        }
    }
    reports
}

fn snapshot_time(reports: &[Value]) -> f64 {
    reports
        .iter()
        .filter_map(|r| r["timestamp"].as_f64())
        .fold(0.0, f64::max)
}

/// Times `run` over `iters` consecutive snapshots of one connection, excluding `prepare`.
fn measure<I>(iters: u64, prepare: impl Fn(usize) -> I, run: impl Fn(&mut Processor, I)) -> Duration {
    let mut total = Duration::ZERO;
    let mut processor = Processor::new();
    let mut k = 0;
    for _ in 0..iters {
        if k == SNAPSHOTS {
            processor = Processor::new();
            k = 0;
        }
        let input = prepare(k);
        let start = Instant::now();
        run(&mut processor, input);
        total += start.elapsed();
        k += 1;
    }
    total
}

fn process(p: &mut Processor, now_ms: f64, reports: Vec<RawReport>) {
    p.handle_input(Input::Snapshot {
        now_ms,
        pc: "pc-1".to_string(),
        reports,
    });
    while let Some(out) = p.poll_output() {
        black_box(out);
    }
}

fn bench(c: &mut Criterion) {
    let t = template();
    let values: Vec<Vec<Value>> = (0..SNAPSHOTS).map(|k| snapshot(&t, k)).collect();
    let times: Vec<f64> = values.iter().map(|r| snapshot_time(r)).collect();
    let typed: Vec<Vec<RawReport>> = values
        .iter()
        .map(|r| r.iter().cloned().map(parse_report).collect())
        .collect();
    let texts: Vec<String> = values.iter().map(|r| serde_json::to_string(r).unwrap()).collect();
    assert_eq!(values[0].len(), 20, "the benchmark is about 20 reports per snapshot");

    let mut g = c.benchmark_group("processor per peer snapshot (20 reports)");
    g.bench_function("typed reports", |b| {
        b.iter_custom(|iters| {
            measure(
                iters,
                |k| (times[k], typed[k].clone()),
                |p, (now, reports)| process(p, now, reports),
            )
        })
    });
    g.bench_function("serde_json::Value reports, parsed", |b| {
        b.iter_custom(|iters| {
            measure(
                iters,
                |k| (times[k], values[k].clone()),
                |p, (now, reports)| process(p, now, reports.into_iter().map(parse_report).collect()),
            )
        })
    });
    g.bench_function("JSON text, parsed", |b| {
        b.iter_custom(|iters| {
            measure(
                iters,
                |k| (times[k], texts[k].as_str()),
                |p, (now, text)| {
                    let reports: Vec<Value> = serde_json::from_str(text).unwrap();
                    process(p, now, reports.into_iter().map(parse_report).collect())
                },
            )
        })
    });
    g.bench_function("parsing only (serde_json::Value to reports)", |b| {
        b.iter_custom(|iters| {
            measure(
                iters,
                |k| values[k].clone(),
                |_, reports| {
                    black_box(reports.into_iter().map(parse_report).collect::<Vec<_>>());
                },
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
