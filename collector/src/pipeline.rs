//! Every change of a participant as one compare-and-set of its record: ingest and the sweeper.
//!
//! Ingest loads the participant's record (from this process's cache when it can), checks that a
//! client's batch comes from the participant's writer (its participant token, and no seq far
//! above the highest so far: [`check_writer`]), refuses a participant new to the store beyond the
//! live caps (from the counts the store keeps), applies the rate limit, the batch (idempotent by
//! sequence number, newest writer per field), the alert rules, TURN accounting and the admin
//! stream's 2 s limit, and commits the new record with the history point, alert records, usage,
//! index entries and stream messages in one atomic, version-checked commit. A conflict (another
//! request or process committed first) hands back the stored record and the batch is applied to
//! it again (and checked again). So nothing is applied or counted twice, alerts are raised and
//! resolved once, and the 2 s limit holds across processes.
//!
//! History follows the stream: each state the stream publishes (at most once per participant per
//! 2 s) is written as its bucket's point, and a state held back is written when its window ends
//! or, if the next batch starts a new bucket first, then. So every bucket ends with its last state
//! and a participant sending many events costs one history write per 2 s, not one per event.
//!
//! The sweeper finds participants that are due without a new event (an update held back by the
//! 2 s limit, an alert whose condition cleared or whose participant went silent or expired, a
//! TURN cursor of a silent participant) through the store's sweep index, and commits what is due
//! the same way.

use crate::alerts::{self, AlertRecord, AlertThresholds};
use crate::clock::now_ms;
use crate::metrics::GaugeClass;
use crate::participant::TokenRefusal;
use crate::state::{AppState, Settings, Shared};
use crate::store::{
    events_in_seq_order, history_bucket, next_version, turn_bucket, unique_seqs, Commit, CommitOutcome, DueChange,
    IngestOutcome, ParticipantKey, Record, StoreError, Versioned, LIVE_INDEX_INTERVAL_MS,
};
use crate::stream::{StreamEvent, StreamMessage};
use crate::turn;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use vitals_shared::wire::{ClientHealth, IngestBatch};

/// Attempts of one change before giving up when other writers keep winning.
const MAX_ATTEMPTS: usize = 16;
/// How often each process looks for due participants.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// Most participants one sweep handles (the rest wait for the next).
const SWEEP_LIMIT: usize = 2_000;
/// Participants one sweep changes at a time, so that its commits interleave with ingest rather
/// than arrive as one burst in front of it.
const SWEEP_CONCURRENCY: usize = 16;

/// Why an ingest was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The participant sent too fast; it may retry after this many seconds.
    #[error("too many requests, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The client created its minute's share of new participants; it may retry after this
    /// many seconds.
    #[error("too many new participants from this client, retry in {retry_after_secs} s")]
    NewIdQuota { retry_after_secs: u64 },
    /// The collector holds its cap of live `what` (meetings or participants): a new one waits
    /// until some expire.
    #[error("the collector holds its maximum of {cap} live {what}, retry in {retry_after_secs} s")]
    AtCap {
        what: &'static str,
        cap: usize,
        retry_after_secs: u64,
    },
    /// The participant exists and the batch does not carry its token (403).
    #[error(transparent)]
    ParticipantToken(#[from] TokenRefusal),
    /// An event's seq is too far above the participant's highest (400).
    #[error("event {seq}: seq is more than {MAX_SEQ_JUMP} above this participant's highest so far ({highest})")]
    SeqJump { seq: u64, highest: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How far an event's seq may be above its participant's highest so far (an existing record's;
/// a new one may start anywhere). A client counts its events, so a real jump is small; without
/// this bound one forged seq near `MAX_SEQ` would make every later real event lose every field
/// (newest writer by seq), and a few sparse huge ones would raise the seq set's floor past them.
pub const MAX_SEQ_JUMP: u64 = 100_000;

/// The outcome of one attempt, ready to commit.
struct Planned {
    commit: Commit,
    /// Alerts raised or resolved by the commit.
    alerts: Vec<AlertRecord>,
    /// What the admin stream gets when the commit succeeds, in order.
    stream: Vec<Arc<StreamEvent>>,
    /// The participant's class in the live gauges before and after the commit.
    gauge: (Option<GaugeClass>, Option<GaugeClass>),
}

impl Planned {
    fn new(commit: Commit, alerts: Vec<AlertRecord>) -> Self {
        Self {
            commit,
            alerts,
            stream: Vec::new(),
            gauge: (None, None),
        }
    }
}

/// When the sweeper should next look at `record`: its held stream update, its TURN cursor going
/// idle, or one of its alerts resolving without a new event.
fn next_due(record: &Record, thresholds: &AlertThresholds, live_ttl_ms: u64) -> Option<u64> {
    let expires_at = record.last_seen.saturating_add(live_ttl_ms);
    [
        record.gate.held.then_some(record.gate.until),
        turn::idle_due(record.derived.relay.as_ref()),
        alerts::resolve_due(thresholds, &record.derived.alerts, record.last_seen, expires_at),
        // Counted in the live gauges until it expires.
        record.marks.gauge.is_some().then_some(expires_at),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// Sets the record's sweep index entry to `due`. On an event (`exact` false) an entry that is
/// already earlier is kept: the sweeper then looks a little early and reschedules, which costs
/// less than a write per event.
fn schedule(record: &mut Record, due: Option<u64>, exact: bool) -> DueChange {
    let written = record.marks.due;
    let (change, now_written) = match (written, due) {
        (w, d) if w == d => (DueChange::Keep, w),
        (_, None) => (DueChange::Clear, None),
        (Some(w), Some(d)) if !exact && d >= w => (DueChange::Keep, Some(w)),
        (_, Some(d)) => (DueChange::At(d), Some(d)),
    };
    record.marks.due = now_written;
    change
}

/// Adds the record's current state as the history point of its bucket.
fn write_history(record: &mut Record, commit: &mut Commit, metrics: crate::store::MetricsView) {
    let bucket = record.marks.history_bucket;
    commit.history.push((bucket, metrics));
    if record.marks.history_indexed != bucket {
        commit.index_history = true;
        record.marks.history_indexed = bucket;
    }
}

/// Sends the record's state to the admin stream now (and so to the history), closing the
/// participant's window until `interval_ms` from `now_ms`.
fn publish_state(
    record: &mut Record,
    commit: &mut Commit,
    stream: &mut Vec<Arc<StreamEvent>>,
    key: &ParticipantKey,
    now_ms: u64,
    interval_ms: u64,
) {
    let participant = record.view(&key.participant_id);
    let metrics = participant.metrics.clone();
    stream.push(StreamEvent::new(StreamMessage::Metrics {
        meeting_id: key.meeting_id.clone(),
        participant,
    }));
    write_history(record, commit, metrics);
    record.gate.until = now_ms + interval_ms;
    record.gate.held = false;
}

/// Marks which usage index entries a commit relaying bytes at `now_ms` writes.
fn index_turn(record: &mut Record, commit: &mut Commit) {
    if commit.relayed.is_some() {
        let bucket = turn_bucket(commit.usage_at_ms);
        commit.index_turn = record.marks.turn_bucket != bucket;
        record.marks.turn_bucket = bucket;
    }
}

fn alert_events(alerts: &[AlertRecord]) -> impl Iterator<Item = Arc<StreamEvent>> + '_ {
    alerts
        .iter()
        .map(|alert| StreamEvent::new(StreamMessage::Alert { alert: alert.clone() }))
}

/// Resolves the record's alerts that are due at `now_ms` without a new event, the participant's
/// live state expiring at `expires_at`.
fn resolve_idle(
    record: &mut Record,
    settings: &Settings,
    key: &ParticipantKey,
    expires_at: u64,
    now_ms: u64,
) -> Vec<AlertRecord> {
    alerts::evaluate_idle(
        &settings.alerts,
        &mut record.derived.alerts,
        &key.meeting_id,
        &key.participant_id,
        record.last_seen,
        expires_at,
        now_ms,
    )
}

/// Resolves every alert and closes the TURN cursor of an expired record (at `now_ms`), and writes
/// its last state to the history if the stream held it back.
fn close_out(record: &mut Record, settings: &Settings, key: &ParticipantKey, now_ms: u64) -> Planned {
    let alerts = resolve_idle(record, settings, key, now_ms, now_ms);
    let relayed = turn::account(&mut record.derived.relay, &Default::default(), now_ms);
    let mut commit = Commit::new(key.clone(), 0, 0, None, now_ms);
    commit.relayed = relayed;
    if record.gate.held {
        record.gate.held = false;
        let metrics = record.metrics();
        write_history(record, &mut commit, metrics);
    }
    let mut planned = Planned::new(commit, alerts);
    planned.gauge = (record.marks.gauge.take(), None);
    planned
}

/// How far into the future an event's time is believed (a client's clock running fast).
pub(crate) const MAX_EVENT_AHEAD_MS: u64 = 30_000;

/// The time of `batch`'s newest event (its `ts_ms`), clamped to the `retention_ms` before
/// `now_ms` and [`MAX_EVENT_AHEAD_MS`] after; `now_ms` when it has no usable time (0: a client
/// without a clock).
fn event_time(batch: &IngestBatch, now_ms: u64, retention_ms: u64) -> u64 {
    let newest = batch
        .events
        .iter()
        .max_by_key(|event| event.seq)
        .map(|event| event.ts_ms)
        .filter(|ts| ts.is_finite() && *ts > 0.0);
    match newest {
        None => now_ms,
        Some(ts) => (ts as u64).clamp(
            now_ms.saturating_sub(retention_ms),
            now_ms.saturating_add(MAX_EVENT_AHEAD_MS),
        ),
    }
}

/// Where a batch came from: the client's address, the admission counting the new ids it
/// creates (none: not counted), and what it must prove as its participant's writer (none: the
/// collector's own callers).
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub client: std::net::IpAddr,
    pub admission: Option<&'a crate::admission::Admission>,
    pub writer: Option<Writer<'a>>,
}

/// What a client's batch must prove for a participant that already exists.
#[derive(Clone, Copy)]
pub struct Writer<'a> {
    /// The participant's token ([`crate::participant`]), which the batch must carry.
    pub token: &'a str,
    /// Whether the batch's seqs are bounded by [`MAX_SEQ_JUMP`]: yes for the ingest API, whose
    /// seqs count events; no for Socket.IO, whose seqs are timestamps bounded by the collector's
    /// clock instead (`http/socketio.rs`).
    pub bound_seq_jumps: bool,
}

impl Origin<'_> {
    /// A batch from inside the collector's host, counted against no quota and trusted as its
    /// participant's writer (tests, tools).
    pub const LOCAL: Origin<'static> = Origin {
        client: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        admission: None,
        writer: None,
    };
}

/// Refuses `batch` for the `record` as loaded if `writer` cannot write it: without the
/// participant's token, or with an event too far above the highest seq so far. Checked here, in
/// the plan of every attempt (so again on the fresh record after a conflict), before the rate
/// limit takes anything and before anything is committed: once for both stores, and a refused
/// writer drains nothing of the participant's (the client's own admission, by address, has
/// counted the request before).
///
/// The token check itself is atomic with the write: the commit is conditional on the version
/// the check saw, so when two clients race to create a participant, the loser's commit
/// conflicts, its plan runs again on the winner's record and is refused. What is not checked
/// is who may create an id: a new participant needs no token (its first writer claims it), and
/// after its record is gone (live TTL and grace) anyone may claim it again. That is acceptable:
/// the extension's participant ids are random per install and per call session, so they are
/// not known to others until they are in use, and then they are bound.
fn check_writer(writer: Option<Writer<'_>>, record: Option<&Record>, batch: &IngestBatch) -> Result<(), IngestError> {
    let (Some(writer), Some(record)) = (writer, record) else {
        return Ok(());
    };
    crate::participant::ParticipantTokens::check(writer.token, batch.participant_token.as_deref())?;
    let highest = record.live.last_seq;
    // A record that starts over (expired, `plan_ingest`) holds no seq: no bound.
    if writer.bound_seq_jumps && highest > 0 {
        if let Some(event) = batch
            .events
            .iter()
            .find(|e| e.seq > highest.saturating_add(MAX_SEQ_JUMP))
        {
            return Err(IngestError::SeqJump {
                seq: event.seq,
                highest,
            });
        }
    }
    Ok(())
}

/// Applies `batch` from `origin` to the `loaded` record at `now_ms`.
fn plan_ingest(
    settings: &Settings,
    live_ttl_ms: u64,
    key: &ParticipantKey,
    loaded: Versioned,
    batch: &IngestBatch,
    now_ms: u64,
    origin: Origin<'_>,
) -> Result<(Planned, IngestOutcome), IngestError> {
    let stored = loaded.record.is_some();
    let gauge_from = loaded.record.as_ref().and_then(|r| r.marks.gauge);
    if let (false, Some(admission)) = (stored, origin.admission) {
        admission
            .admit_new_id(origin.client, now_ms)
            .map_err(|refusal| IngestError::NewIdQuota {
                retry_after_secs: refusal.retry_after_secs(),
            })?;
    }
    let mut record = loaded.record.unwrap_or_default();
    let mut planned = Planned::new(
        Commit::new(
            key.clone(),
            loaded.version,
            next_version(loaded.version, now_ms),
            None,
            now_ms,
        ),
        Vec::new(),
    );
    if stored && record.expired(now_ms, live_ttl_ms) {
        // The participant is back after its live state expired: it starts over.
        let closed = close_out(&mut record, settings, key, now_ms);
        planned.alerts = closed.alerts;
        planned.commit.relayed = closed.commit.relayed;
        planned.commit.history = closed.commit.history;
        planned.commit.index_history = closed.commit.index_history;
        // The client's reported counts stay: they are cumulative, so starting over from none
        // would count them again in `/metrics`.
        record = Record {
            marks: std::mem::take(&mut record.marks),
            client_health: record.client_health,
            ..Default::default()
        };
    }
    check_writer(origin.writer, stored.then_some(&record), batch)?;
    settings
        .rate_limit
        .take_for(&mut record.buckets, origin.client, now_ms)
        .map_err(|retry_after_secs| IngestError::RateLimited { retry_after_secs })?;
    // The events' time for the history, alerts and TURN usage; the collector's for the rest.
    let event_ms = event_time(batch, now_ms, settings.retention_ms).max(record.marks.event_ms);
    // A state the stream held back is its bucket's last point if this batch starts a new bucket.
    let bucket = history_bucket(event_ms);
    let held_point = (record.gate.held && record.marks.history_bucket != bucket).then(|| record.metrics());
    let mut applied = Vec::new();
    for event in events_in_seq_order(batch) {
        if record.seqs.insert(event.seq) {
            record.live.apply(event);
            applied.push(event.seq);
        }
    }
    if batch.label.is_some() {
        record.label.clone_from(&batch.label);
    }
    let mut client_increase = ClientHealth::default();
    if let Some(&reported) = batch.client_health.as_deref() {
        let before = record.client_health.unwrap_or_default();
        client_increase = reported.increase_over(before);
        record.client_health = Some(reported.max(before));
    }
    record.last_seen = record.last_seen.max(now_ms);
    let participant = record.view(&key.participant_id);
    record.marks.gauge = Some(GaugeClass {
        quality: participant.metrics.quality,
        relayed: participant.metrics.using_relay == Some(true),
    });
    planned.gauge = (gauge_from, record.marks.gauge);
    let commit = &mut planned.commit;
    let mut metrics_event = Vec::new();
    if !applied.is_empty() {
        let metrics = &participant.metrics;
        planned.alerts.extend(alerts::evaluate(
            &settings.alerts,
            &mut record.derived.alerts,
            metrics,
            &key.meeting_id,
            &key.participant_id,
            event_ms,
        ));
        if let Some(relayed) = turn::account(&mut record.derived.relay, metrics, event_ms) {
            commit.relayed = Some(relayed);
            commit.usage_at_ms = event_ms;
        }
        record.marks.event_ms = event_ms;
        record.derived.evaluated_seq = record.live.last_seq;
        if let Some(point) = held_point {
            write_history(&mut record, commit, point);
        }
        record.marks.history_bucket = bucket;
        // The admin stream (and the history): now, or when the participant's window ends (the
        // sweeper).
        if now_ms >= record.gate.until {
            publish_state(
                &mut record,
                commit,
                &mut metrics_event,
                key,
                now_ms,
                settings.metrics_interval_ms(),
            );
        } else {
            record.gate.held = true;
        }
    }
    index_turn(&mut record, commit);
    if record.marks.indexed == 0 || record.last_seen >= record.marks.indexed + LIVE_INDEX_INTERVAL_MS {
        commit.index_live = true;
        record.marks.indexed = record.last_seen;
    }
    let due = next_due(&record, &settings.alerts, live_ttl_ms);
    commit.due = schedule(&mut record, due, false);
    commit.alerts.clone_from(&planned.alerts);
    commit.record = Some(record);
    // Alerts first, then the metrics that raised them.
    planned.stream.extend(alert_events(&planned.alerts));
    planned.stream.extend(metrics_event);
    let outcome = IngestOutcome {
        accepted: unique_seqs(batch),
        applied,
        participant,
        participant_token: origin.writer.map(|writer| writer.token.to_owned()),
        client_increase,
    };
    Ok((planned, outcome))
}

/// What is due for the `loaded` record at `now_ms` without a new event; `None` when nothing is.
fn plan_sweep(
    settings: &Settings,
    live_ttl_ms: u64,
    key: &ParticipantKey,
    loaded: Versioned,
    now_ms: u64,
) -> Option<Planned> {
    let Some(mut record) = loaded.record else {
        // The record is gone (expired in Redis): only its index entry is left.
        let mut commit = Commit::new(key.clone(), loaded.version, 0, None, now_ms);
        commit.due = DueChange::Clear;
        return Some(Planned::new(commit, Vec::new()));
    };
    if record.expired(now_ms, live_ttl_ms) {
        let mut planned = close_out(&mut record, settings, key, now_ms);
        planned.commit.expected_version = loaded.version;
        planned.commit.due = if record.marks.due.is_some() {
            DueChange::Clear
        } else {
            DueChange::Keep
        };
        index_turn(&mut record, &mut planned.commit);
        planned.commit.alerts.clone_from(&planned.alerts);
        planned.stream.extend(alert_events(&planned.alerts));
        return Some(planned);
    }
    let expires_at = record.last_seen.saturating_add(live_ttl_ms);
    let alerts = resolve_idle(&mut record, settings, key, expires_at, now_ms);
    let mut commit = Commit::new(
        key.clone(),
        loaded.version,
        next_version(loaded.version, now_ms),
        None,
        now_ms,
    );
    commit.relayed = turn::close_idle(&mut record.derived.relay, now_ms);
    let mut stream: Vec<_> = alert_events(&alerts).collect();
    if record.gate.held && now_ms >= record.gate.until {
        publish_state(
            &mut record,
            &mut commit,
            &mut stream,
            key,
            now_ms,
            settings.metrics_interval_ms(),
        );
    }
    index_turn(&mut record, &mut commit);
    let due = next_due(&record, &settings.alerts, live_ttl_ms);
    commit.due = schedule(&mut record, due, true);
    if alerts.is_empty()
        && commit.relayed.is_none()
        && stream.is_empty()
        && commit.history.is_empty()
        && commit.due == DueChange::Keep
    {
        return None;
    }
    commit.alerts.clone_from(&alerts);
    commit.record = Some(record);
    Some(Planned {
        commit,
        alerts,
        stream,
        gauge: (None, None),
    })
}

/// Commits what `plan` makes of the participant's record, again (with the record then stored)
/// on every conflict; then tells this process's admins (at once, also when the commit published
/// the messages to Redis itself), the webhook and the metrics.
async fn transact<T>(
    state: &AppState,
    key: &ParticipantKey,
    plan: impl FnMut(Versioned) -> Result<Option<(Planned, T)>, IngestError>,
) -> Result<Option<T>, IngestError> {
    let loaded = state.store.load(key).await?;
    transact_loaded(state, loaded, plan).await
}

/// [`transact`] from the record as `loaded` already.
async fn transact_loaded<T>(
    state: &AppState,
    mut loaded: Versioned,
    mut plan: impl FnMut(Versioned) -> Result<Option<(Planned, T)>, IngestError>,
) -> Result<Option<T>, IngestError> {
    for _ in 0..MAX_ATTEMPTS {
        let Some((mut planned, result)) = plan(loaded)? else {
            return Ok(None);
        };
        // Stream messages: published by the commit itself when the store is on the stream's
        // Redis (tagged, so that this process's admins get them at once after the commit and
        // not a second time from Redis), else published after it.
        let events = std::mem::take(&mut planned.stream);
        let mut tagged = Vec::new();
        match state.publish_channel.as_deref() {
            Some(channel) if !events.is_empty() => {
                planned.commit.publish_channel = Some(channel.to_owned());
                for event in &events {
                    let (seq, text) = state.hub.tag(event.text());
                    planned.commit.publish.push(text);
                    tagged.push(seq);
                }
            }
            _ => {}
        }
        match state.store.commit(planned.commit).await? {
            CommitOutcome::Committed => {
                if tagged.is_empty() {
                    for event in events {
                        state.hub.publish(event).await;
                    }
                } else {
                    for (seq, event) in tagged.into_iter().zip(events) {
                        state.hub.deliver_once(seq, event);
                    }
                }
                for alert in &planned.alerts {
                    tracing::info!(kind = alert.kind.as_str(), state = ?alert.state, "alert");
                    state.hub.raised_here(alert);
                }
                state.metrics.observe_alerts(&planned.alerts);
                state.metrics.observe_live(planned.gauge.0, planned.gauge.1);
                return Ok(Some(result));
            }
            CommitOutcome::Conflict(current) => loaded = *current,
        }
    }
    tracing::warn!("a participant's record kept changing under this change; the client retries");
    Err(StoreError::Unavailable("the participant's record kept changing".into()).into())
}

/// Ingests a validated batch at `now_ms` (the collector's clock): see the module text.
pub async fn ingest(
    state: &AppState,
    batch: &IngestBatch,
    now_ms: u64,
    origin: Origin<'_>,
) -> Result<IngestOutcome, IngestError> {
    let key = ParticipantKey::new(batch.meeting_id.as_str(), batch.participant_id.as_str());
    let live_ttl_ms = state.store.live_ttl_ms();
    let settings = &state.settings;
    let loaded = state.store.load(&key).await?;
    if loaded.record.is_none() {
        within_caps(state, &key, now_ms).await?;
    }
    let outcome = transact_loaded(state, loaded, |loaded| {
        plan_ingest(settings, live_ttl_ms, &key, loaded, batch, now_ms, origin).map(Some)
    })
    .await?
    .expect("an ingest plan always commits");
    tracing::debug!(
        participant = %batch.participant_id,
        applied = outcome.applied.len(),
        duplicates = outcome.accepted.len() - outcome.applied.len(),
        "ingested"
    );
    state
        .metrics
        .observe_events(outcome.accepted.len(), outcome.applied.len());
    state.metrics.observe_client(outcome.client_increase);
    Ok(outcome)
}

/// Refuses the participant `key`, new to the store, when the store holds the cap of live
/// participants, or when its meeting is new too and the store holds the cap of live meetings.
/// Checked before the commit, from the counts the store keeps: requests creating participants at
/// the same moment may each see the last free place, so a cap can be passed by at most the
/// requests in flight at once (`ServerLimits::max_concurrent_requests` per process).
async fn within_caps(state: &AppState, key: &ParticipantKey, now_ms: u64) -> Result<(), IngestError> {
    let caps = state.settings.live_caps;
    let count = state.store.live_count(&key.meeting_id, now_ms).await?;
    let full = if count.participants >= caps.participants {
        Some(("participants", caps.participants))
    } else if !count.meeting_known && count.meetings >= caps.meetings {
        Some(("meetings", caps.meetings))
    } else {
        None
    };
    match full {
        None => Ok(()),
        Some((what, cap)) => {
            tracing::debug!(what, cap, "a new participant refused at the live cap");
            Err(IngestError::AtCap {
                what,
                cap,
                retry_after_secs: crate::admission::CAP_RETRY_AFTER_SECS,
            })
        }
    }
}

/// Handles every participant due at `now_ms`; returns how many changed.
pub async fn sweep(state: &AppState, now_ms: u64) -> Result<usize, StoreError> {
    let due = state.store.due(now_ms, SWEEP_LIMIT).await?;
    let live_ttl_ms = state.store.live_ttl_ms();
    let settings = &state.settings;
    let mut changed = 0;
    for chunk in due.chunks(SWEEP_CONCURRENCY) {
        let changes = chunk.iter().map(|key| {
            transact(state, key, move |loaded| {
                Ok(plan_sweep(settings, live_ttl_ms, key, loaded, now_ms).map(|planned| (planned, ())))
            })
        });
        for result in futures_util::future::join_all(changes).await {
            match result {
                Ok(Some(())) => changed += 1,
                Ok(None) => {}
                Err(IngestError::Store(error)) => return Err(error),
                Err(
                    IngestError::RateLimited { .. }
                    | IngestError::NewIdQuota { .. }
                    | IngestError::AtCap { .. }
                    | IngestError::ParticipantToken(_)
                    | IngestError::SeqJump { .. },
                ) => {
                    unreachable!("the sweeper takes no tokens and applies no batch")
                }
            }
        }
    }
    Ok(changed)
}

/// Runs [`sweep`] every [`SWEEP_INTERVAL`] until the state is dropped or the runtime ends.
pub fn spawn_sweeper(state: std::sync::Weak<Shared>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(shared) = state.upgrade() else {
                return;
            };
            if let Err(error) = sweep(&AppState(shared), now_ms()).await {
                tracing::debug!(%error, "sweep failed; trying again");
            }
        }
    })
}

impl AppState {
    /// Ingests a batch that passed validation, at `now_ms` (ms since the Unix epoch): the rate
    /// limit, the merge (idempotent by sequence number), alerts, history, TURN usage and the
    /// admin stream, as one atomic change of the participant's record.
    pub async fn ingest(&self, batch: &IngestBatch, now_ms: u64) -> Result<IngestOutcome, IngestError> {
        ingest(self, batch, now_ms, Origin::LOCAL).await
    }

    /// [`Self::ingest`] of a batch of the ingest API from `client`: counted against its quota of
    /// new ids, and for an existing participant refused without its token or with a seq more
    /// than [`MAX_SEQ_JUMP`] above its highest. The outcome carries the participant's token.
    pub async fn ingest_from(
        &self,
        batch: &IngestBatch,
        now_ms: u64,
        client: std::net::IpAddr,
    ) -> Result<IngestOutcome, IngestError> {
        self.ingest_from_client(batch, now_ms, client, true).await
    }

    /// [`Self::ingest_from`], with the seq-jump bound only if `bound_seq_jumps` (Socket.IO's
    /// seqs are timestamps, bounded by the clock instead).
    pub(crate) async fn ingest_from_client(
        &self,
        batch: &IngestBatch,
        now_ms: u64,
        client: std::net::IpAddr,
        bound_seq_jumps: bool,
    ) -> Result<IngestOutcome, IngestError> {
        let token = self.participant_tokens.issue(&batch.meeting_id, &batch.participant_id);
        let origin = Origin {
            client,
            admission: Some(&self.admission),
            writer: Some(Writer {
                token: &token,
                bound_seq_jumps,
            }),
        };
        ingest(self, batch, now_ms, origin).await
    }

    /// Does what is due at `now_ms` without a new event (held stream updates, alerts that
    /// cleared or whose participant went silent, idle TURN accounting); returns how many
    /// participants changed. [`app`] runs this every [`SWEEP_INTERVAL`] by itself.
    pub async fn sweep(&self, now_ms: u64) -> Result<usize, StoreError> {
        sweep(self, now_ms).await
    }

    /// Starts the background sweeper of this state (once, whatever the number of calls).
    pub(crate) fn start_sweeper(&self) {
        if tokio::runtime::Handle::try_current().is_ok() && !self.sweeper_started.swap(true, Ordering::SeqCst) {
            spawn_sweeper(Arc::downgrade(&self.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::Arc;
    use vitals_shared::wire::Event;
    use vitals_shared::wire::MetricsFields;

    fn state() -> AppState {
        AppState::new(
            Arc::new(MemoryStore::default()),
            crate::Secret::new("k"),
            crate::Secret::new("t"),
        )
    }

    fn batch(seq: u64, metrics: MetricsFields) -> IngestBatch {
        IngestBatch {
            meeting_id: "m".into(),
            participant_id: "p".into(),
            label: None,
            participant_token: None,
            client_health: None,
            events: vec![Event {
                seq,
                ts_ms: 0.0,
                full: false,
                metrics,
            }],
        }
    }

    fn upload(kbps: f64) -> MetricsFields {
        MetricsFields {
            upload_kbps: Some(kbps),
            ..Default::default()
        }
    }

    fn metrics_of(event: &StreamEvent) -> serde_json::Value {
        serde_json::from_str(event.text()).unwrap()
    }

    #[tokio::test]
    async fn the_stream_gate_holds_the_latest_update_until_the_window_ends() {
        let state = state();
        let mut messages = state.hub().subscribe();
        let t0 = 1_700_000_000_000;
        for seq in 1..=5 {
            state
                .ingest(&batch(seq, upload(seq as f64)), t0 + seq * 100)
                .await
                .unwrap();
        }
        // An older event arriving late is applied but never replaces newer values.
        state.ingest(&batch(2, upload(99.0)), t0 + 600).await.unwrap();
        let first = metrics_of(&messages.recv().await.unwrap());
        assert_eq!(
            (first["last_seq"].as_u64(), first["upload_kbps"].as_f64()),
            (Some(1), Some(1.0))
        );
        assert!(messages.try_recv().is_err(), "held while the window is open");
        // Not due before the window ends; due (once) after.
        assert_eq!(sweep(&state, t0 + 2_099).await.unwrap(), 0);
        assert!(messages.try_recv().is_err());
        assert_eq!(sweep(&state, t0 + 2_100).await.unwrap(), 1);
        let held = metrics_of(&messages.try_recv().unwrap());
        assert_eq!(
            (held["last_seq"].as_u64(), held["upload_kbps"].as_f64()),
            (Some(5), Some(5.0))
        );
        assert_eq!(sweep(&state, t0 + 9_000).await.unwrap(), 0, "nothing due any more");
        assert!(messages.try_recv().is_err());
        // The sweep opened a window: an update inside it is held again.
        state.ingest(&batch(6, upload(6.0)), t0 + 3_000).await.unwrap();
        assert!(messages.try_recv().is_err());
        state.ingest(&batch(7, upload(7.0)), t0 + 4_200).await.unwrap();
        assert_eq!(metrics_of(&messages.try_recv().unwrap())["last_seq"], 7);
    }

    #[test]
    fn an_earlier_due_entry_is_kept_on_events_and_set_exactly_by_the_sweeper() {
        let mut record = Record::default();
        assert_eq!(schedule(&mut record, Some(10), false), DueChange::At(10));
        assert_eq!(schedule(&mut record, Some(20), false), DueChange::Keep);
        assert_eq!(record.marks.due, Some(10));
        assert_eq!(schedule(&mut record, Some(5), false), DueChange::At(5));
        assert_eq!(schedule(&mut record, Some(20), true), DueChange::At(20));
        assert_eq!(schedule(&mut record, None, false), DueChange::Clear);
        assert_eq!(schedule(&mut record, None, true), DueChange::Keep);
    }
}
