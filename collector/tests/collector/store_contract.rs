//! The store contract: every `Store` implementation (memory and Redis) passes the same suite,
//! through the collector's pipeline (`AppState::ingest` and `AppState::sweep`, as a collector
//! process uses the store) and through the store's own primitives (versioned records, history,
//! alerts, usage, the sweep index). Two "processes" are two `AppState`s, each with its own store
//! on the same Redis (for memory, on the same store).

use crate::support::{batch, event, hold, now_ms, TestRedis};
use std::sync::Arc;
use std::time::Duration;
use vitals_collector::alerts::{AlertKind, AlertRecord, AlertState};
use vitals_collector::ratelimit::RateLimit;
use vitals_collector::store::{
    history_bucket, next_version, Commit, CommitOutcome, DueChange, HistoryQuery, IngestOutcome, MeetingView,
    MemoryStore, MetricsView, ParticipantKey, Record, Store, StoreError, Versioned, DEFAULT_RETENTION_MS,
    HISTORY_BUCKET_MS, LIVE_TTL_MS,
};
use vitals_collector::turn::{RelayedSince, TurnUsage, BUCKET_MS};
use vitals_collector::{AppState, IngestError, Secret, Settings};
use vitals_shared::wire::{IngestBatch, MetricsFields, FIELD_COUNT};
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
        self.store_with_retention(live_ttl_ms, DEFAULT_RETENTION_MS)
    }

    fn store_with_retention(&self, live_ttl_ms: u64, retention_ms: u64) -> Arc<dyn Store> {
        match &self.redis {
            None => Arc::new(MemoryStore::with_retention(live_ttl_ms, retention_ms)),
            Some(redis) => Arc::new(redis.store_with_retention(live_ttl_ms, retention_ms)),
        }
    }

    /// Memory stores do not share state, so multi-store tests use one store for them.
    fn second_store(&self, first: &Arc<dyn Store>, live_ttl_ms: u64) -> Arc<dyn Store> {
        match &self.redis {
            None => first.clone(),
            Some(_) => self.store(live_ttl_ms),
        }
    }

    /// A collector process over a store of its own (with a rate limit these tests never reach).
    fn process(&self, live_ttl_ms: u64) -> Process {
        Process::new(self.store(live_ttl_ms), Settings::default())
    }

    /// A second process over the same data as `first`.
    fn second_process(&self, first: &Process, settings: Settings) -> Process {
        Process::new(self.second_store(&first.store, first.store.live_ttl_ms()), settings)
    }
}

/// One collector process: the pipeline over a store.
#[derive(Clone)]
struct Process {
    state: AppState,
    store: Arc<dyn Store>,
}

impl Process {
    fn new(store: Arc<dyn Store>, mut settings: Settings) -> Self {
        if settings.rate_limit == RateLimit::default() {
            settings.rate_limit = RateLimit {
                per_sec: 1e6,
                burst: 1e6,
            };
        }
        let state = AppState::new(store.clone(), Secret::new("ingest"), Secret::new("admin")).with_settings(settings);
        Self { state, store }
    }

    async fn ingest(&self, batch: &IngestBatch, now_ms: u64) -> Result<IngestOutcome, IngestError> {
        self.state.ingest(batch, now_ms).await
    }

    /// Ingests one delta event of `participant` in meeting `m` at `at`.
    async fn put(&self, participant: &str, seq: u64, metrics: MetricsFields, at: u64) -> IngestOutcome {
        self.ingest(&batch("m", participant, vec![event(seq, false, metrics)]), at)
            .await
            .unwrap()
    }

    async fn live_meetings(&self, now_ms: u64) -> Result<Vec<MeetingView>, StoreError> {
        self.store.live_meetings(now_ms).await
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
        findings: Some("packet-loss,high-jitter".into()),
    }
}

async fn ingest_then_list(backend: &Backend) {
    let store = backend.process(LIVE_TTL_MS);
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
    let store = backend.process(LIVE_TTL_MS);
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
    let store = backend.process(LIVE_TTL_MS);
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
    let store = backend.process(LIVE_TTL_MS);
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
    let store = backend.process(LIVE_TTL_MS);
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
    let store = backend.process(TTL_MS);
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
    let store = backend.process(LIVE_TTL_MS);
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
    let first = backend.process(LIVE_TTL_MS);
    let second = backend.second_process(&first, Settings::default());
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
            9 => m.relay_server = Some("turn.example.com".into()),
            _ => m.findings = Some("mic-silent".into()),
        }
        m
    };
    const PARTICIPANTS: u64 = 20;
    let mut tasks = Vec::new();
    for participant in 0..PARTICIPANTS {
        for index in 0..FIELD_COUNT as u64 {
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
        findings: Some("mic-silent".into()),
    });
    for p in participants {
        assert_eq!(p.metrics, expected, "{}", p.participant_id);
        assert_eq!(p.last_seq, FIELD_COUNT as u64);
    }
}

/// A record of a participant last seen at `at`.
fn seen_at(at: u64) -> Record {
    Record {
        last_seen: at,
        ..Default::default()
    }
}

/// Commits `edit`ed over the participant's current version at `at`, with every index written.
async fn commit_at(store: &Arc<dyn Store>, meeting: &str, participant: &str, at: u64, edit: impl FnOnce(&mut Commit)) {
    let key = ParticipantKey::new(meeting, participant);
    let loaded = store.load(&key).await.unwrap();
    let mut commit = Commit::new(
        key,
        loaded.version,
        next_version(loaded.version, at),
        Some(seen_at(at)),
        at,
    );
    commit.index_live = true;
    commit.index_history = true;
    commit.index_turn = true;
    edit(&mut commit);
    assert_eq!(store.commit(commit).await.unwrap(), CommitOutcome::Committed);
}

fn record(at: u64, meeting_id: &str, kind: AlertKind, state: AlertState) -> AlertRecord {
    AlertRecord {
        at,
        meeting_id: meeting_id.into(),
        participant_id: "p".into(),
        kind,
        severity: kind.severity(),
        state,
        message: format!("{} \"quoted\", at {at}", kind.as_str()),
        cost: (kind == AlertKind::UsingTurn).then_some(0.25),
    }
}

/// A time aligned to the start of a TURN usage bucket (and so of a history bucket), in the past
/// so that nothing written expires during the test.
fn aligned_now() -> u64 {
    let now = now_ms() - 3_600_000;
    now - now % BUCKET_MS
}

async fn records_are_a_compare_and_set(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let now = now_ms();
    let key = ParticipantKey::new("m", "p");
    assert_eq!(store.load(&key).await.unwrap(), Versioned::default());
    let mut stored = seen_at(now);
    stored.label = Some("Alice".into());
    stored.live.metrics = full_state();
    stored.live.metrics.rtt_ms = Some(0.1 + 0.2);
    let first_version = next_version(0, now);
    let mut first = Commit::new(key.clone(), 0, first_version, Some(stored.clone()), now);
    first.alerts = vec![record(now, "m", AlertKind::HighLatency, AlertState::Raised)];
    assert_eq!(store.commit(first).await.unwrap(), CommitOutcome::Committed);
    // Another process (or a restarted one) reads exactly what was committed.
    let other = backend.second_store(&store, LIVE_TTL_MS);
    let expected = Versioned {
        version: first_version,
        record: Some(stored.clone()),
    };
    assert_eq!(other.load(&key).await.unwrap(), expected);
    assert_eq!(
        other.load(&ParticipantKey::new("m", "q")).await.unwrap(),
        Versioned::default()
    );
    // A commit over a stale version changes nothing at all, and answers what is stored.
    let mut stale = Commit::new(
        key.clone(),
        0,
        next_version(0, now + 1),
        Some(seen_at(now + 1)),
        now + 1,
    );
    stale.alerts = vec![record(now + 1, "m", AlertKind::PacketLoss, AlertState::Raised)];
    stale.history = vec![(history_bucket(now + 1), MetricsView::from(rtt(1.0)))];
    stale.index_history = true;
    stale.due = DueChange::At(now);
    assert_eq!(
        other.commit(stale.clone()).await.unwrap(),
        CommitOutcome::Conflict(Box::new(expected.clone()))
    );
    assert_eq!(store.alert_history(0, None).await.unwrap().len(), 1);
    let all = HistoryQuery {
        from_ms: 0,
        to_ms: u64::MAX / 2,
        ..Default::default()
    };
    assert!(store.history(&all).await.unwrap().is_empty());
    assert!(store.due(now, 10).await.unwrap().is_empty());
    // Over the fresh version it commits; removing the record is a commit too.
    stale.expected_version = first_version;
    stale.version = first_version + 1;
    assert_eq!(other.commit(stale).await.unwrap(), CommitOutcome::Committed);
    // `load` may answer from the process's cache; `derived` (what the admin API shows) reads
    // what is stored.
    assert_eq!(other.load(&key).await.unwrap().version, first_version + 1);
    assert_eq!(store.derived("m", "p").await.unwrap().version, first_version + 1);
    assert_eq!(store.alert_history(0, None).await.unwrap().len(), 2);
    let removal = Commit::new(key.clone(), first_version + 1, 0, None, now + 2);
    assert_eq!(store.commit(removal).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(store.load(&key).await.unwrap(), Versioned::default());
    assert_eq!(other.derived("m", "p").await.unwrap().version, 0);
}

async fn concurrent_commits_of_one_version_let_exactly_one_win(backend: &Backend) {
    let first = backend.store(LIVE_TTL_MS);
    let second = backend.second_store(&first, LIVE_TTL_MS);
    let now = aligned_now();
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let store = if i % 2 == 0 { first.clone() } else { second.clone() };
        let mut record = seen_at(now);
        record.derived.evaluated_seq = i;
        let mut c = Commit::new(
            ParticipantKey::new("m", "p"),
            0,
            next_version(0, now),
            Some(record),
            now,
        );
        c.alerts = vec![record_of_kind(now)];
        tasks.push(tokio::spawn(async move { store.commit(c).await.unwrap() }));
    }
    let mut wins = 0;
    for task in tasks {
        wins += usize::from(task.await.unwrap() == CommitOutcome::Committed);
    }
    assert_eq!(wins, 1);
    assert_eq!(first.alert_history(0, None).await.unwrap().len(), 1);
}

fn record_of_kind(at: u64) -> AlertRecord {
    record(at, "m", AlertKind::PoorConnection, AlertState::Raised)
}

async fn the_sweep_index_answers_what_is_due_in_time_order(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let now = now_ms();
    for (participant, due) in [("a", now + 30), ("b:c", now + 10), ("d", now + 20), ("e", now + 1_000)] {
        commit_at(&store, "m:1", participant, now, |c| {
            c.record.as_mut().unwrap().marks.due = Some(due);
            c.due = DueChange::At(due);
        })
        .await;
    }
    let names = |keys: Vec<ParticipantKey>| -> Vec<String> {
        keys.into_iter()
            .map(|k| {
                assert_eq!(k.meeting_id, "m:1");
                k.participant_id
            })
            .collect()
    };
    assert_eq!(names(store.due(now + 25, 10).await.unwrap()), ["b:c", "d"]);
    assert_eq!(names(store.due(now + 100, 2).await.unwrap()), ["b:c", "d"]);
    assert!(store.due(now, 10).await.unwrap().is_empty());
    // Rescheduled, cleared, removed with its record.
    commit_at(&store, "m:1", "b:c", now, |c| {
        c.record.as_mut().unwrap().marks.due = Some(now + 500);
        c.due = DueChange::At(now + 500);
    })
    .await;
    commit_at(&store, "m:1", "d", now, |c| c.due = DueChange::Clear).await;
    let a = ParticipantKey::new("m:1", "a");
    let version = store.load(&a).await.unwrap().version;
    let mut removal = Commit::new(a, version, 0, None, now);
    removal.due = DueChange::Clear;
    assert_eq!(store.commit(removal).await.unwrap(), CommitOutcome::Committed);
    assert_eq!(names(store.due(now + 999, 10).await.unwrap()), ["b:c"]);
}

async fn alert_history_by_time_and_meeting(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let now = aligned_now();
    let plan = [
        ("https://a.example/x", 0, AlertKind::HighLatency, AlertState::Raised),
        ("https://b.example/y", 1_000, AlertKind::UsingTurn, AlertState::Raised),
        (
            "https://a.example/x",
            2_000,
            AlertKind::HighLatency,
            AlertState::Resolved,
        ),
        ("https://a.example/x", 3_000, AlertKind::PacketLoss, AlertState::Raised),
    ];
    for (meeting, offset, kind, state) in plan {
        commit_at(&store, meeting, "p", now + offset, |c| {
            c.alerts = vec![record(now + offset, meeting, kind, state)];
        })
        .await;
    }
    let summary = |records: Vec<AlertRecord>| -> Vec<(u64, String, AlertKind, AlertState)> {
        records
            .into_iter()
            .map(|r| (r.at - now, r.meeting_id, r.kind, r.state))
            .collect()
    };
    let all = store.alert_history(now, None).await.unwrap();
    assert_eq!(
        all[1],
        record(
            now + 1_000,
            "https://b.example/y",
            AlertKind::UsingTurn,
            AlertState::Raised
        )
    );
    assert_eq!(
        summary(all)
            .iter()
            .map(|(t, m, k, s)| (*t, m.as_str(), *k, *s))
            .collect::<Vec<_>>(),
        plan.iter().map(|(m, t, k, s)| (*t, *m, *k, *s)).collect::<Vec<_>>()
    );
    let since = summary(
        store
            .alert_history(now + 1_000, Some("https://a.example/x"))
            .await
            .unwrap(),
    );
    assert_eq!(
        since,
        [
            (
                2_000,
                "https://a.example/x".into(),
                AlertKind::HighLatency,
                AlertState::Resolved
            ),
            (
                3_000,
                "https://a.example/x".into(),
                AlertKind::PacketLoss,
                AlertState::Raised
            )
        ]
    );
    assert!(store.alert_history(now + 3_001, None).await.unwrap().is_empty());
    assert!(store
        .alert_history(0, Some("https://c.example/"))
        .await
        .unwrap()
        .is_empty());
}

async fn history_keeps_the_last_point_per_bucket(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let t0 = aligned_now();
    assert_eq!(history_bucket(t0 + HISTORY_BUCKET_MS - 1), t0);
    // (meeting, participant, offset, rtt): two writes in the first bucket of p1, the later wins;
    // equal metrics in two buckets stay two points.
    let plan = [
        ("m", "p1", 0, 10.0),
        ("m", "p1", 3_000, 11.0),
        ("m", "p1", 10_000, 12.0),
        ("m", "p1", 20_000, 12.0),
        ("m", "p2", 5_000, 20.0),
        ("n:m", "p1", 0, 30.0),
    ];
    for (meeting, participant, offset, rtt_ms) in plan {
        commit_at(&store, meeting, participant, t0 + offset, |c| {
            c.history = vec![(history_bucket(t0 + offset), MetricsView::from(rtt(rtt_ms)))];
        })
        .await;
    }
    let read = |meeting: Option<&str>, participant: Option<&str>, from: u64, to: u64| {
        let query = HistoryQuery {
            meeting_id: meeting.map(str::to_owned),
            participant_id: participant.map(str::to_owned),
            from_ms: t0 + from,
            to_ms: t0 + to,
        };
        let store = store.clone();
        async move {
            store
                .history(&query)
                .await
                .unwrap()
                .into_iter()
                .map(|p| (p.meeting_id, p.participant_id, p.t - t0, p.metrics.rtt_ms.unwrap()))
                .collect::<Vec<_>>()
        }
    };
    let s = |m: &str, p: &str, t: u64, r: f64| (m.to_string(), p.to_string(), t, r);
    assert_eq!(
        read(Some("m"), None, 0, 60_000).await,
        [
            s("m", "p1", 0, 11.0),
            s("m", "p1", 10_000, 12.0),
            s("m", "p1", 20_000, 12.0),
            s("m", "p2", 0, 20.0)
        ]
    );
    assert_eq!(
        read(Some("m"), Some("p1"), 10_000, 20_000).await,
        [s("m", "p1", 10_000, 12.0), s("m", "p1", 20_000, 12.0)]
    );
    assert_eq!(read(Some("m"), Some("p1"), 1, 9_999).await, []);
    assert_eq!(read(Some("n:m"), None, 0, 0).await, [s("n:m", "p1", 0, 30.0)]);
    assert_eq!(read(None, None, 0, 60_000).await.len(), 5, "every meeting");
    assert_eq!(read(None, None, 20_000, 0).await, [], "an empty range");
    let point = &store
        .history(&HistoryQuery {
            meeting_id: Some("m".into()),
            participant_id: Some("p2".into()),
            from_ms: t0,
            to_ms: t0,
        })
        .await
        .unwrap()[0];
    assert_eq!(point.metrics, MetricsView::from(rtt(20.0)));
}

async fn turn_usage_is_summed_per_meeting_participant_and_server(backend: &Backend) {
    let store = backend.store(LIVE_TTL_MS);
    let t0 = aligned_now();
    // (meeting, participant, offset, server, bytes)
    let plan = [
        ("m", "p1", 0, Some("turn-a"), 100),
        ("m", "p1", 1_000, Some("turn-a"), 50),
        ("m", "p1", BUCKET_MS, Some("turn-b"), 7),
        ("m", "p1", 2 * BUCKET_MS, Some("turn-a"), 1),
        ("m", "p2", 0, None, 1_000_000_000_000),
    ];
    for (meeting, participant, offset, server, bytes) in plan {
        commit_at(&store, meeting, participant, t0 + offset, |c| {
            c.relayed = Some(RelayedSince {
                server: server.map(str::to_owned),
                bytes,
            });
        })
        .await;
    }
    let usage = |m: &str, p: &str, s: Option<&str>, bytes: u64| TurnUsage {
        meeting_id: m.into(),
        participant_id: p.into(),
        relay_server: s.map(str::to_owned),
        relayed_bytes: bytes,
    };
    assert_eq!(
        store.turn_usage(t0, t0 + 3 * BUCKET_MS).await.unwrap(),
        [
            usage("m", "p1", Some("turn-a"), 151),
            usage("m", "p1", Some("turn-b"), 7),
            usage("m", "p2", None, 1_000_000_000_000)
        ]
    );
    // A range takes whole buckets: from rounds down, to is the last bucket start taken.
    assert_eq!(
        store.turn_usage(t0 + BUCKET_MS + 5, t0 + BUCKET_MS).await.unwrap(),
        [usage("m", "p1", Some("turn-b"), 7)]
    );
    assert_eq!(
        store.turn_usage(t0 + BUCKET_MS, t0 + 2 * BUCKET_MS).await.unwrap(),
        [usage("m", "p1", Some("turn-a"), 1), usage("m", "p1", Some("turn-b"), 7)]
    );
    assert!(store
        .turn_usage(t0 + 3 * BUCKET_MS, t0 + 9 * BUCKET_MS)
        .await
        .unwrap()
        .is_empty());
}

async fn history_alerts_and_usage_expire_after_the_retention(backend: &Backend) {
    const RETENTION_MS: u64 = 600_000;
    let store = backend.store_with_retention(LIVE_TTL_MS, RETENTION_MS);
    let old = aligned_now() - 2 * RETENTION_MS;
    let new = old + RETENTION_MS + 2 * BUCKET_MS;
    for at in [old, new] {
        commit_at(&store, "m", "p", at, |c| {
            c.alerts = vec![record(at, "m", AlertKind::HighLatency, AlertState::Raised)];
            c.history = vec![(history_bucket(at), MetricsView::from(rtt(at as f64)))];
            c.relayed = Some(RelayedSince { server: None, bytes: 1 });
        })
        .await;
    }
    let alerts = store.alert_history(0, None).await.unwrap();
    assert_eq!(alerts.iter().map(|a| a.at).collect::<Vec<_>>(), [new]);
    assert_eq!(store.alert_history(0, Some("m")).await.unwrap().len(), 1);
    let points = store
        .history(&HistoryQuery {
            from_ms: 0,
            to_ms: u64::MAX / 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(points.iter().map(|p| p.t).collect::<Vec<_>>(), [history_bucket(new)]);
    assert_eq!(store.turn_usage(0, new).await.unwrap()[0].relayed_bytes, 1);
}

/// The alert history of meeting `m` as (kind, state, time after `t0`).
async fn alert_log(process: &Process, t0: u64) -> Vec<(AlertKind, AlertState, u64)> {
    process
        .store
        .alert_history(0, Some("m"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.state, r.at - t0))
        .collect()
}

/// An alert whose condition cleared resolves after the hold time without a new event, and one
/// whose participant went silent resolves the hold time after it counts as gone; each once, and
/// pushed to the admin stream.
async fn alerts_resolve_without_a_new_event(backend: &Backend) {
    let process = Process::new(backend.store(LIVE_TTL_MS), hold(10_000));
    let mut stream = process.state.hub().subscribe();
    let t0 = aligned_now();
    process.put("p", 1, rtt(400.0), t0).await;
    let loss = MetricsFields {
        loss_pct: Some(9.0),
        ..Default::default()
    };
    process.put("q", 1, loss, t0).await;
    // p's latency clears at 1 s; q stays lossy and goes silent.
    process.put("p", 2, rtt(50.0), t0 + 1_000).await;
    // p's update at 1 s was held back by the stream's 2 s window: it goes out when that ends.
    while stream.try_recv().is_ok() {}
    assert_eq!(process.state.sweep(t0 + 1_999).await.unwrap(), 0);
    assert_eq!(process.state.sweep(t0 + 2_000).await.unwrap(), 1);
    let held: serde_json::Value = serde_json::from_str(stream.try_recv().unwrap().text().as_str()).unwrap();
    assert_eq!((&held["type"], &held["rtt_ms"]), (&"metrics".into(), &50.0.into()));
    assert_eq!(process.state.sweep(t0 + 10_999).await.unwrap(), 0);
    assert_eq!(process.state.sweep(t0 + 11_000).await.unwrap(), 1);
    let message: serde_json::Value = serde_json::from_str(stream.try_recv().unwrap().text().as_str()).unwrap();
    assert_eq!(
        (
            &message["alert"]["type"],
            &message["alert"]["state"],
            &message["alert"]["participant_id"]
        ),
        (&"high-latency".into(), &"resolved".into(), &"p".into())
    );
    assert!(stream.try_recv().is_err());
    assert_eq!(process.state.sweep(t0 + 11_000).await.unwrap(), 0, "resolved once");
    // q: silent from 30 s on, resolved 10 s later.
    assert_eq!(process.state.sweep(t0 + 39_999).await.unwrap(), 0);
    assert_eq!(process.state.sweep(t0 + 40_000).await.unwrap(), 1);
    let mut log = alert_log(&process, t0).await;
    log.sort_by_key(|(_, _, at)| *at);
    assert_eq!(
        log,
        [
            (AlertKind::HighLatency, AlertState::Raised, 0),
            (AlertKind::PacketLoss, AlertState::Raised, 0),
            (AlertKind::HighLatency, AlertState::Resolved, 11_000),
            (AlertKind::PacketLoss, AlertState::Resolved, 40_000),
        ]
    );
    let detail = process.store.derived("m", "q").await.unwrap();
    assert!(detail.derived.alerts.is_empty());
    // Both expire (each leaves the live gauges), and then nothing is due.
    assert_eq!(process.state.sweep(t0 + 3_600_000).await.unwrap(), 2);
    assert_eq!(process.state.sweep(t0 + 3_600_000).await.unwrap(), 0);
}

/// An alert of a participant whose live state expires resolves then at the latest (even with a
/// longer hold), and the record goes.
async fn an_expired_participant_has_its_alerts_resolved_and_goes(backend: &Backend) {
    const TTL_MS: u64 = 5_000;
    let process = Process::new(backend.store(TTL_MS), hold(3_600_000));
    let t0 = now_ms();
    let relayed = MetricsFields {
        using_relay: Some(true),
        upload_kbps: Some(80.0),
        ..Default::default()
    };
    process.put("p", 1, relayed, t0).await;
    assert_eq!(process.state.sweep(t0 + TTL_MS - 1).await.unwrap(), 0);
    assert_eq!(process.state.sweep(t0 + TTL_MS).await.unwrap(), 1);
    assert_eq!(
        alert_log(&process, t0).await,
        [
            (AlertKind::UsingTurn, AlertState::Raised, 0),
            (AlertKind::UsingTurn, AlertState::Resolved, TTL_MS)
        ]
    );
    // The relayed time up to the expiry was counted: 80 kbps for 5 s = 50 kB.
    let usage = process.store.turn_usage(t0 - BUCKET_MS, t0 + BUCKET_MS).await.unwrap();
    assert_eq!(usage.iter().map(|u| u.relayed_bytes).sum::<u64>(), 50_000);
    assert_eq!(
        process.store.load(&ParticipantKey::new("m", "p")).await.unwrap(),
        Versioned::default()
    );
    assert_eq!(process.state.sweep(t0 + 3_600_000).await.unwrap(), 0);
}

/// Two processes sweeping the same due participant at once resolve its alert once.
async fn two_sweeping_processes_resolve_an_alert_once(backend: &Backend) {
    let first = Process::new(backend.store(LIVE_TTL_MS), hold(1_000));
    let second = backend.second_process(&first, hold(1_000));
    let t0 = aligned_now();
    first.put("p", 1, rtt(400.0), t0).await;
    second.put("p", 2, rtt(40.0), t0 + 10).await;
    let (mut a, mut b) = (first.state.hub().subscribe(), second.state.hub().subscribe());
    let at = t0 + 1_010;
    let (x, y) = tokio::join!(first.state.sweep(at), second.state.sweep(at));
    assert_eq!(x.unwrap() + y.unwrap(), 1, "exactly one process resolved it");
    let mut messages = 0;
    while a.try_recv().is_ok() {
        messages += 1;
    }
    while b.try_recv().is_ok() {
        messages += 1;
    }
    // Memory "processes" share one store but have a hub each; either way one message in all.
    assert_eq!(messages, 1);
    assert_eq!(
        alert_log(&first, t0).await,
        [
            (AlertKind::HighLatency, AlertState::Raised, 0),
            (AlertKind::HighLatency, AlertState::Resolved, 1_010)
        ]
    );
}

/// The rate limit is one bucket per participant whichever process a request reaches.
async fn the_rate_limit_holds_across_processes(backend: &Backend) {
    let limited = Settings {
        rate_limit: RateLimit {
            per_sec: 0.1,
            burst: 3.0,
        },
        ..Default::default()
    };
    let first = Process::new(backend.store(LIVE_TTL_MS), limited.clone());
    let second = backend.second_process(&first, limited);
    let now = now_ms();
    for (seq, process) in [(1, &first), (2, &second), (3, &first)] {
        process.put("fast", seq, rtt(10.0), now).await;
    }
    for process in [&first, &second] {
        match process
            .ingest(&batch("m", "fast", vec![event(4, false, rtt(999.0))]), now + 100)
            .await
        {
            Err(IngestError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 10),
            other => panic!("expected the rate limit, got {other:?}"),
        }
    }
    // Nothing of the rejected batch was stored; another participant is not limited; the bucket
    // refills with time.
    let meetings = first.live_meetings(now + 100).await.unwrap();
    assert_eq!(meetings[0].participants[0].metrics.rtt_ms, Some(10.0));
    second.put("calm", 1, rtt(1.0), now + 100).await;
    second.put("fast", 4, rtt(20.0), now + 10_000).await;
}

/// The same events sent through two processes at once are applied once, and relayed traffic is
/// counted once.
async fn events_sent_to_two_processes_apply_and_count_once(backend: &Backend) {
    let first = backend.process(LIVE_TTL_MS);
    let second = backend.second_process(&first, Settings::default());
    let t0 = aligned_now();
    let mut applied = 0;
    for seq in 1..=20u64 {
        let metrics = MetricsFields {
            using_relay: Some(true),
            upload_kbps: Some(8.0 * seq as f64),
            ..Default::default()
        };
        let b = batch("m", "p", vec![event(seq, false, metrics)]);
        let at = t0 + seq * 1_000;
        let (x, y) = tokio::join!(first.ingest(&b, at), second.ingest(&b, at));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!((x.accepted, y.accepted), (vec![seq], vec![seq]));
        applied += x.applied.len() + y.applied.len();
    }
    assert_eq!(applied, 20);
    // From seq n to n + 1 (1 s) at 8n kbps: n kB.
    let usage = first.store.turn_usage(t0, t0 + BUCKET_MS).await.unwrap();
    assert_eq!(
        usage.iter().map(|u| u.relayed_bytes).sum::<u64>(),
        (1..20).sum::<u64>() * 1_000
    );
    assert_eq!(
        alert_log(&first, t0).await,
        [(AlertKind::UsingTurn, AlertState::Raised, 1_000)]
    );
}

/// Through the pipeline each bucket's point is its last state, also when the stream held that
/// state back (written when the window ends, or when the next batch starts a new bucket).
async fn the_history_keeps_each_buckets_last_state_through_the_pipeline(backend: &Backend) {
    let process = backend.process(LIVE_TTL_MS);
    let t0 = aligned_now();
    let at = [0, 500, 10_100, 10_600, 20_300];
    for (seq, offset) in (1..).zip(at) {
        process.put("p", seq, rtt(seq as f64), t0 + offset).await;
        if seq == 4 {
            // seq 4 is held until its window ends at 12.1 s; the sweeper writes it then (a look
            // before, at the earlier entry seq 2 left, only reschedules).
            process.state.sweep(t0 + 12_099).await.unwrap();
            assert_eq!(process.state.sweep(t0 + 12_100).await.unwrap(), 1);
        }
    }
    let points: Vec<(u64, f64)> = process
        .store
        .history(&HistoryQuery {
            from_ms: t0,
            to_ms: t0 + 60_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.t - t0, p.metrics.rtt_ms.unwrap()))
        .collect();
    // seq 2 (held) went out when seq 3 started the next bucket; seq 5 was sent at once.
    assert_eq!(points, [(0, 2.0), (10_000, 4.0), (20_000, 5.0)]);
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
    records_are_a_compare_and_set,
    concurrent_commits_of_one_version_let_exactly_one_win,
    the_sweep_index_answers_what_is_due_in_time_order,
    alert_history_by_time_and_meeting,
    history_keeps_the_last_point_per_bucket,
    turn_usage_is_summed_per_meeting_participant_and_server,
    history_alerts_and_usage_expire_after_the_retention,
    alerts_resolve_without_a_new_event,
    an_expired_participant_has_its_alerts_resolved_and_goes,
    two_sweeping_processes_resolve_an_alert_once,
    the_rate_limit_holds_across_processes,
    events_sent_to_two_processes_apply_and_count_once,
    the_history_keeps_each_buckets_last_state_through_the_pipeline,
);
