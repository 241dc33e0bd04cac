//! Event times: a backlog delivered late (after an outage, in order) lands in the history and the alerts at the events' own times, on both stores.

use crate::support::{batch, TestRedis};
use std::sync::Arc;
use vitals_collector::alerts::{AlertKind, AlertState};
use vitals_collector::store::{HistoryQuery, MemoryStore, Store, LIVE_TTL_MS};
use vitals_collector::{AppState, Secret};
use vitals_shared::wire::{Event, MetricsFields};

const MINUTE_MS: u64 = 60_000;

fn rtt(rtt_ms: f64) -> MetricsFields {
    MetricsFields {
        rtt_ms: Some(rtt_ms),
        ..Default::default()
    }
}

/// Replays 5 minutes of events (one per 2 s, from 10 minutes before `now`) at `now`, in batches
/// of 10: the first 40 s with a round-trip time of 500 ms, then 20 ms.
async fn backlog_lands_at_the_events_times(store: Arc<dyn Store>) {
    let state = AppState::new(Arc::clone(&store), Secret::new("k"), Secret::new("t"));
    let now = crate::support::now_ms();
    let start = now - 10 * MINUTE_MS;
    let events: Vec<Event> = (0..150u64)
        .map(|i| Event {
            seq: i + 1,
            ts_ms: (start + i * 2_000) as f64,
            full: i == 0,
            metrics: rtt(if i < 20 { 500.0 } else { 20.0 }),
        })
        .collect();
    for (n, chunk) in events.chunks(10).enumerate() {
        // Delivered within a few seconds, in order, as the extension drains its queue.
        state
            .ingest(&batch("m", "p", chunk.to_vec()), now + n as u64 * 100)
            .await
            .unwrap();
    }
    let history = store
        .history(&HistoryQuery {
            meeting_id: Some("m".into()),
            participant_id: Some("p".into()),
            from_ms: start - MINUTE_MS,
            to_ms: now + MINUTE_MS,
        })
        .await
        .unwrap();
    let in_outage = history.iter().filter(|p| p.t <= now - 4 * MINUTE_MS).count();
    assert!(
        in_outage >= 10,
        "history points in the outage: {in_outage} of {history:?}"
    );
    let high = history
        .iter()
        .find(|p| p.metrics.rtt_ms == Some(500.0))
        .expect("the high round-trip time is in the history");
    assert!(high.t < start + MINUTE_MS, "{high:?}");
    let alerts = store.alert_history(start - MINUTE_MS, Some("m")).await.unwrap();
    let latency: Vec<_> = alerts.iter().filter(|a| a.kind == AlertKind::HighLatency).collect();
    let raised = latency.iter().find(|a| a.state == AlertState::Raised).expect("raised");
    let resolved = latency
        .iter()
        .find(|a| a.state == AlertState::Resolved)
        .expect("resolved");
    assert!(
        raised.at < start + MINUTE_MS,
        "raised at {} ({} before now)",
        raised.at,
        now - raised.at
    );
    assert!(
        resolved.at > raised.at && resolved.at < start + 2 * MINUTE_MS,
        "resolved {} ms after the start",
        resolved.at - start
    );
}

#[tokio::test]
async fn an_outage_backlog_lands_at_the_events_times_memory() {
    backlog_lands_at_the_events_times(Arc::new(MemoryStore::default())).await;
}

#[tokio::test]
async fn an_outage_backlog_lands_at_the_events_times_redis() {
    let redis = TestRedis::start().await;
    backlog_lands_at_the_events_times(Arc::new(redis.store(LIVE_TTL_MS))).await;
}

#[tokio::test]
async fn an_event_time_far_in_the_future_is_clamped() {
    let store = Arc::new(MemoryStore::default());
    let state = AppState::new(store.clone(), Secret::new("k"), Secret::new("t"));
    let now = crate::support::now_ms();
    let event = Event {
        seq: 1,
        ts_ms: (now + 3_600_000) as f64,
        full: true,
        metrics: rtt(500.0),
    };
    state.ingest(&batch("m", "p", vec![event]), now).await.unwrap();
    let alerts = store.alert_history(0, Some("m")).await.unwrap();
    let raised = alerts.first().expect("raised");
    assert!(
        raised.at <= now + 30_000 && raised.at >= now,
        "{} ms ahead",
        raised.at - now
    );
}
