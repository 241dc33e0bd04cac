//! The store contract: every `Store` implementation (memory and Redis) passes the same suite.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::{batch, event, now_ms, TestRedis};
use vitals_collector::store::{MemoryStore, MetricsView, Store, LIVE_TTL_MS};
use vitals_shared::wire::MetricsFields;
use vitals_shared::QualityClass;

/// Makes stores of one kind; a Redis harness keeps its server alive for the whole test.
struct Backend {
    redis: Option<TestRedis>,
}

impl Backend {
    fn memory() -> Self {
        Self { redis: None }
    }

    async fn redis() -> Self {
        Self {
            redis: Some(TestRedis::start().await),
        }
    }

    /// A store over the backend's data; two Redis stores share it, like two collector processes.
    fn store(&self, live_ttl_ms: u64) -> Arc<dyn Store> {
        match &self.redis {
            None => Arc::new(MemoryStore::new(live_ttl_ms)),
            Some(redis) => Arc::new(redis.store(live_ttl_ms)),
        }
    }

    /// Memory stores do not share state, so multi-store tests use one store for them.
    fn second_store(&self, first: &Arc<dyn Store>, live_ttl_ms: u64) -> Arc<dyn Store> {
        match &self.redis {
            None => first.clone(),
            Some(_) => self.store(live_ttl_ms),
        }
    }
}

fn rtt(rtt_ms: f64) -> MetricsFields {
    MetricsFields {
        rtt_ms: Some(rtt_ms),
        ..Default::default()
    }
}

fn full_state() -> MetricsFields {
    MetricsFields {
        upload_kbps: Some(812.5),
        download_kbps: Some(1400.0),
        rtt_ms: Some(42.0),
        loss_pct: Some(0.5),
        jitter_ms: Some(3.25),
        quality: Some(QualityClass::Excellent),
        mos: Some(4.31),
        using_relay: Some(true),
        relay_protocol: Some("udp".into()),
        relay_server: Some("turn.example.com".into()),
    }
}

async fn ingest_then_list(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let now = now_ms();
    let mut first = batch(
        "https://meet.example.com/abc",
        "p-1",
        vec![event(1, true, full_state())],
    );
    first.label = Some("Alice".into());
    let outcome = store.ingest(&first, now).await.unwrap();
    assert_eq!(outcome.accepted, vec![1]);
    assert_eq!(outcome.applied, vec![1]);
    assert_eq!(outcome.participant.metrics, MetricsView::from(full_state()));

    let meetings = store.live_meetings(now + 1).await.unwrap();
    assert_eq!(meetings.len(), 1);
    assert_eq!(meetings[0].meeting_id, "https://meet.example.com/abc");
    let p = &meetings[0].participants[0];
    assert_eq!(p.participant_id, "p-1");
    assert_eq!(p.label.as_deref(), Some("Alice"));
    assert_eq!((p.last_seen, p.last_seq), (now, 1));
    assert_eq!(p.metrics, MetricsView::from(full_state()));

    // A later batch without a label keeps the label; one with a label replaces it.
    let second = batch("https://meet.example.com/abc", "p-1", vec![event(2, false, rtt(50.0))]);
    assert_eq!(
        store
            .ingest(&second, now + 10)
            .await
            .unwrap()
            .participant
            .label
            .as_deref(),
        Some("Alice")
    );
    let mut third = batch("https://meet.example.com/abc", "p-1", vec![event(3, false, rtt(60.0))]);
    third.label = Some("Bob".into());
    let outcome = store.ingest(&third, now + 20).await.unwrap();
    assert_eq!(outcome.participant.label.as_deref(), Some("Bob"));
    assert_eq!(outcome.participant.last_seen, now + 20);
}

async fn deltas_merge_and_relay_details_clear(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let now = now_ms();
    let m = "m";
    store
        .ingest(&batch(m, "p", vec![event(1, true, full_state())]), now)
        .await
        .unwrap();
    let delta = MetricsFields {
        upload_kbps: Some(100.0),
        quality: Some(QualityClass::Poor),
        ..Default::default()
    };
    let state = store
        .ingest(&batch(m, "p", vec![event(2, false, delta)]), now)
        .await
        .unwrap();
    let mut expected = full_state();
    expected.upload_kbps = Some(100.0);
    expected.quality = Some(QualityClass::Poor);
    assert_eq!(state.participant.metrics, MetricsView::from(expected.clone()));

    let relay_off = MetricsFields {
        using_relay: Some(false),
        ..Default::default()
    };
    let state = store
        .ingest(&batch(m, "p", vec![event(3, false, relay_off)]), now)
        .await
        .unwrap();
    expected.using_relay = Some(false);
    expected.relay_protocol = None;
    expected.relay_server = None;
    assert_eq!(state.participant.metrics, MetricsView::from(expected));

    // A full snapshot replaces everything: absent fields become unknown.
    let state = store
        .ingest(&batch(m, "p", vec![event(4, true, rtt(7.0))]), now)
        .await
        .unwrap();
    assert_eq!(state.participant.metrics, MetricsView::from(rtt(7.0)));
    assert_eq!(state.participant.last_seq, 4);
}

async fn duplicates_are_accepted_but_not_applied_twice(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let now = now_ms();
    let first = store
        .ingest(&batch("m", "p", vec![event(1, true, rtt(10.0))]), now)
        .await
        .unwrap();
    assert_eq!((first.accepted.clone(), first.applied.clone()), (vec![1], vec![1]));
    // The same seq again, even with other content (a buggy or replayed client), changes nothing.
    let again = store
        .ingest(
            &batch("m", "p", vec![event(1, true, rtt(999.0)), event(2, false, rtt(20.0))]),
            now,
        )
        .await
        .unwrap();
    assert_eq!(again.accepted, vec![1, 2]);
    assert_eq!(again.applied, vec![2]);
    assert_eq!(again.participant.metrics.rtt_ms, Some(20.0));
    let replay = store
        .ingest(&batch("m", "p", vec![event(2, false, rtt(30.0))]), now)
        .await
        .unwrap();
    assert_eq!((replay.accepted, replay.applied), (vec![2], vec![]));
    assert_eq!(replay.participant.metrics.rtt_ms, Some(20.0));
    // A repeated seq inside one batch counts once.
    let twice = store
        .ingest(
            &batch("m", "p", vec![event(3, false, rtt(3.0)), event(3, false, rtt(4.0))]),
            now,
        )
        .await
        .unwrap();
    assert_eq!((twice.accepted, twice.applied), (vec![3], vec![3]));
    assert_eq!(twice.participant.metrics.rtt_ms, Some(3.0));
}

async fn older_events_never_overwrite_newer_fields(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let now = now_ms();
    store
        .ingest(&batch("m", "p", vec![event(5, false, rtt(50.0))]), now)
        .await
        .unwrap();
    let older = MetricsFields {
        rtt_ms: Some(900.0),
        upload_kbps: Some(10.0),
        ..Default::default()
    };
    let outcome = store
        .ingest(&batch("m", "p", vec![event(3, false, older)]), now)
        .await
        .unwrap();
    assert_eq!(outcome.applied, vec![3]);
    assert_eq!(outcome.participant.metrics.rtt_ms, Some(50.0), "newer value kept");
    assert_eq!(outcome.participant.metrics.upload_kbps, Some(10.0), "gap filled");
    assert_eq!(outcome.participant.last_seq, 5);
    // An older full snapshot clears only what nothing newer wrote.
    let outcome = store
        .ingest(&batch("m", "p", vec![event(4, true, MetricsFields::default())]), now)
        .await
        .unwrap();
    assert_eq!(outcome.participant.metrics.rtt_ms, Some(50.0));
    assert_eq!(outcome.participant.metrics.upload_kbps, None);
    // A batch out of order is applied in seq order.
    let outcome = store
        .ingest(
            &batch("m", "p", vec![event(8, false, rtt(80.0)), event(7, false, rtt(70.0))]),
            now,
        )
        .await
        .unwrap();
    assert_eq!((outcome.accepted, outcome.applied), (vec![7, 8], vec![7, 8]));
    assert_eq!(outcome.participant.metrics.rtt_ms, Some(80.0));
}

/// A participant id and its round-trip time.
type RttOf = (String, Option<f64>);

async fn meetings_are_grouped_and_ids_never_collide(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let now = now_ms();
    // Ids that would collide if keys were joined with a plain separator.
    for (meeting, participant, rtt_ms) in [("a", "b:c", 1.0), ("a:b", "c", 2.0), ("z", "p2", 3.0), ("z", "p1", 4.0)] {
        store
            .ingest(&batch(meeting, participant, vec![event(1, true, rtt(rtt_ms))]), now)
            .await
            .unwrap();
    }
    let meetings = store.live_meetings(now).await.unwrap();
    let summary: Vec<(String, Vec<RttOf>)> = meetings
        .into_iter()
        .map(|m| {
            let ps = m
                .participants
                .into_iter()
                .map(|p| (p.participant_id, p.metrics.rtt_ms))
                .collect();
            (m.meeting_id, ps)
        })
        .collect();
    let expected = vec![
        ("a".to_string(), vec![("b:c".to_string(), Some(1.0))]),
        ("a:b".to_string(), vec![("c".to_string(), Some(2.0))]),
        (
            "z".to_string(),
            vec![("p1".to_string(), Some(4.0)), ("p2".to_string(), Some(3.0))],
        ),
    ];
    assert_eq!(summary, expected);
}

async fn live_state_expires_after_ttl(backend: &Backend) {
    const TTL_MS: u64 = 400;
    let store = backend.store(TTL_MS);
    let first = now_ms();
    store
        .ingest(&batch("m", "gone", vec![event(1, true, rtt(10.0))]), first)
        .await
        .unwrap();
    assert_eq!(store.live_meetings(now_ms()).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(TTL_MS + 300)).await;
    let later = now_ms();
    store
        .ingest(&batch("m", "fresh", vec![event(1, true, rtt(20.0))]), later)
        .await
        .unwrap();
    let meetings = store.live_meetings(later).await.unwrap();
    let ids: Vec<_> = meetings[0]
        .participants
        .iter()
        .map(|p| p.participant_id.as_str())
        .collect();
    assert_eq!(ids, ["fresh"], "the silent participant expired");
    // An expired participant starts over: its old seqs and fields are gone.
    let back = store
        .ingest(&batch("m", "gone", vec![event(1, false, rtt(30.0))]), later)
        .await
        .unwrap();
    assert_eq!(back.applied, vec![1]);
    assert_eq!(back.participant.metrics, MetricsView::from(rtt(30.0)));
    tokio::time::sleep(Duration::from_millis(TTL_MS + 300)).await;
    assert!(store.live_meetings(now_ms()).await.unwrap().is_empty());
}

/// A tiny deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A random event stream as the extension sends it: relay details travel with `using_relay: true`.
fn random_metrics(rng: &mut Lcg, full: bool) -> MetricsFields {
    let mut m = MetricsFields::default();
    let p = if full { 80 } else { 30 };
    let number = |rng: &mut Lcg, max: u64| Some(rng.below(max * 10) as f64 / 10.0);
    if rng.chance(p) {
        m.upload_kbps = number(rng, 5000);
    }
    if rng.chance(p) {
        m.download_kbps = number(rng, 5000);
    }
    if rng.chance(p) {
        m.rtt_ms = number(rng, 800);
    }
    if rng.chance(p) {
        m.loss_pct = number(rng, 100);
    }
    if rng.chance(p) {
        m.jitter_ms = number(rng, 100);
    }
    if rng.chance(p) {
        m.mos = number(rng, 4);
    }
    if rng.chance(p) {
        m.quality = Some([QualityClass::Poor, QualityClass::Fair, QualityClass::Good][rng.below(3) as usize]);
    }
    if rng.chance(p) {
        let relay = rng.chance(50);
        m.using_relay = Some(relay);
        if relay {
            m.relay_protocol = Some(["udp", "tcp", "tls"][rng.below(3) as usize].into());
            m.relay_server = rng.chance(70).then(|| format!("turn{}.example.com", rng.below(3)));
        }
    }
    m
}

async fn any_arrival_order_gives_the_in_order_result(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let now = now_ms();
    for round in 0..8u64 {
        let mut rng = Lcg(round * 7919 + 1);
        let participant = format!("p{round}");
        let events: Vec<_> = (1..=30)
            .map(|seq| {
                let full = seq == 1 || rng.chance(10);
                event(seq, full, random_metrics(&mut rng, full))
            })
            .collect();
        let mut reference = MetricsFields::default();
        for e in &events {
            reference.merge(&e.metrics, e.full);
        }
        // Shuffle, add duplicates, and send in batches of random size.
        let mut arrivals = events.clone();
        for _ in 0..10 {
            arrivals.push(events[rng.below(events.len() as u64) as usize].clone());
        }
        for i in (1..arrivals.len()).rev() {
            arrivals.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut last = None;
        while !arrivals.is_empty() {
            let take = (1 + rng.below(5) as usize).min(arrivals.len());
            let chunk: Vec<_> = arrivals.drain(..take).collect();
            last = Some(store.ingest(&batch("m", &participant, chunk), now).await.unwrap());
        }
        let last = last.unwrap();
        assert_eq!(last.participant.metrics, MetricsView::from(reference), "round {round}");
        assert_eq!(last.participant.last_seq, 30);
    }
}

async fn concurrent_deltas_lose_no_field(backend: &Backend) {
    let first = backend.store(LIVE_TTL_MS);
    let second = backend.second_store(&first, LIVE_TTL_MS);
    let now = now_ms();
    let one_field = |index: u64| {
        let mut m = MetricsFields::default();
        match index {
            0 => m.upload_kbps = Some(1.0),
            1 => m.download_kbps = Some(2.0),
            2 => m.rtt_ms = Some(3.0),
            3 => m.loss_pct = Some(4.0),
            4 => m.jitter_ms = Some(5.0),
            5 => m.quality = Some(QualityClass::Fair),
            6 => m.mos = Some(3.5),
            7 => m.using_relay = Some(true),
            8 => m.relay_protocol = Some("tcp".into()),
            _ => m.relay_server = Some("turn.example.com".into()),
        }
        m
    };
    const PARTICIPANTS: u64 = 20;
    let mut tasks = Vec::new();
    for participant in 0..PARTICIPANTS {
        for index in 0..10u64 {
            // Alternate between the two stores, like requests spread over two collectors.
            let store = if index % 2 == 0 { first.clone() } else { second.clone() };
            let b = batch(
                "m",
                &format!("p{participant}"),
                vec![event(index + 1, false, one_field(index))],
            );
            tasks.push(tokio::spawn(async move { store.ingest(&b, now).await.unwrap() }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let meetings = first.live_meetings(now).await.unwrap();
    let participants = &meetings[0].participants;
    assert_eq!(participants.len(), PARTICIPANTS as usize);
    let expected = MetricsView::from(MetricsFields {
        upload_kbps: Some(1.0),
        download_kbps: Some(2.0),
        rtt_ms: Some(3.0),
        loss_pct: Some(4.0),
        jitter_ms: Some(5.0),
        quality: Some(QualityClass::Fair),
        mos: Some(3.5),
        using_relay: Some(true),
        relay_protocol: Some("tcp".into()),
        relay_server: Some("turn.example.com".into()),
    });
    for p in participants {
        assert_eq!(p.metrics, expected, "{}", p.participant_id);
        assert_eq!(p.last_seq, 10);
    }
}

/// Runs each contract test against both stores.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::Backend::memory()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Backend::redis().await).await;
                }
            )*
        }
    };
}

contract!(
    ingest_then_list,
    deltas_merge_and_relay_details_clear,
    duplicates_are_accepted_but_not_applied_twice,
    older_events_never_overwrite_newer_fields,
    meetings_are_grouped_and_ids_never_collide,
    live_state_expires_after_ttl,
    any_arrival_order_gives_the_in_order_result,
    concurrent_deltas_lose_no_field,
);
