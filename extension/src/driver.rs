//! The offscreen document's pure state: one processor per tab, latest metrics, upload queues and collector status.
//!
//! The shell (`offscreen.rs`) hands it messages and the time, and carries out the [`Effect`]s it
//! asks for (HTTP posts, a wake-up timer). Nothing here touches a browser API, so it is tested natively.

use crate::convert::snapshot_input;
use crate::upload::{UploadQueue, UploadResult};
use std::collections::{BTreeMap, VecDeque};
use vitals_shared::messages::{CollectorStatus, HistorySample, Settings, TabView, ToOffscreen};
use vitals_shared::metrics::TabMetrics;
use vitals_shared::privacy::meeting_id;
use vitals_shared::processor::{Input, Output, Processor, STALE_PC_MS};
use vitals_shared::wire::IngestBatch;

/// A post the shell must make; its result goes back through [`Driver::upload_done`].
#[derive(Debug, Clone, PartialEq)]
pub struct PostRequest {
    pub tab: i64,
    /// `<collector_url>/api/v1/ingest`.
    pub endpoint: String,
    pub ingest_key: String,
    pub batch: IngestBatch,
}

/// Samples kept per tab for the popup's sparklines: one a second over the last minute.
pub const HISTORY_SAMPLES: usize = 60;
/// Metrics closer than this to the previous sample replace it (a tab with several connections
/// gets new aggregate metrics after each connection's snapshot, several times a second).
const HISTORY_STEP_MS: f64 = 900.0;

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Post(PostRequest),
    /// Call [`Driver::tick`] at this time (replaces any earlier request).
    WakeAt(f64),
}

#[derive(Debug)]
struct TabState {
    /// `None` once the tab closed or navigated away; the state stays until its queue drained.
    processor: Option<Processor>,
    url: String,
    /// The tab's call session: part of the participant id.
    session: String,
    latest: Option<TabMetrics>,
    /// The last minute of the call, oldest first, at most [`HISTORY_SAMPLES`].
    history: VecDeque<HistorySample>,
    last_snapshot_ms: f64,
    next_tick_ms: Option<f64>,
    queue: UploadQueue,
}

/// The offscreen driver.
#[derive(Debug, Default)]
pub struct Driver {
    settings: Settings,
    tabs: BTreeMap<i64, TabState>,
    sent: u64,
    last_ok: Option<bool>,
    last_error: Option<String>,
}

impl Driver {
    pub fn new() -> Self {
        Self::default()
    }

    fn sending(&self) -> bool {
        self.settings.sending && !self.settings.collector_url.trim().is_empty()
    }

    /// Handles one message; returns the answer to `get-tab`.
    pub fn handle(&mut self, message: ToOffscreen, now_ms: f64) -> Option<TabView> {
        match message {
            ToOffscreen::Stats {
                tab,
                url,
                pc,
                now_ms: at_ms,
                reports,
            } => {
                if let Ok(input) = snapshot_input(at_ms, pc, reports) {
                    self.stats(tab, url, at_ms, input);
                }
            }
            ToOffscreen::PcClosed { tab, pc } => {
                if self.tabs.get(&tab).is_some_and(|t| t.processor.is_some()) {
                    self.feed(tab, Input::Closed { pc });
                }
            }
            ToOffscreen::TabGone { tab } => {
                if let Some(state) = self.tabs.get_mut(&tab) {
                    state.processor = None;
                    state.latest = None;
                    state.history.clear();
                    state.next_tick_ms = None;
                }
                self.forget_drained();
            }
            ToOffscreen::Config(settings) => {
                self.settings = settings;
                if !self.sending() {
                    for t in self.tabs.values_mut() {
                        t.queue = UploadQueue::default();
                    }
                    self.last_ok = None;
                    self.forget_drained();
                }
            }
            ToOffscreen::GetTab { tab } => return Some(self.view(tab, now_ms)),
        }
        None
    }

    /// One snapshot of a tab's connection, already checked and converted
    /// (`convert::snapshot_input` or `convert::typed_snapshot_input`).
    pub fn stats(&mut self, tab: i64, url: String, at_ms: f64, input: Input) {
        let state = self.tabs.entry(tab).or_insert_with(|| TabState {
            processor: None,
            url: String::new(),
            session: String::new(),
            latest: None,
            history: VecDeque::new(),
            last_snapshot_ms: 0.0,
            next_tick_ms: None,
            queue: UploadQueue::default(),
        });
        if state.processor.is_none() {
            // A new call session: the tab is new, or it navigated and came back.
            state.processor = Some(Processor::new());
            state.session = format!("{tab}-{:x}", at_ms.max(0.0) as u64);
            state.history.clear();
            state.next_tick_ms = None;
        }
        state.url = url;
        state.last_snapshot_ms = at_ms;
        self.feed(tab, input);
    }

    fn feed(&mut self, tab: i64, input: Input) {
        let sending = self.sending();
        let Some(state) = self.tabs.get_mut(&tab) else {
            return;
        };
        let Some(processor) = state.processor.as_mut() else {
            return;
        };
        processor.handle_input(input);
        let live = processor.peer_count() > 0;
        while let Some(out) = processor.poll_output() {
            match out {
                Output::TabMetrics(m) => {
                    if live {
                        record(&mut state.history, &m);
                    }
                    state.latest = live.then_some(m);
                }
                Output::Emit(event) if sending => state.queue.push(event),
                Output::NextTick { at_ms } => state.next_tick_ms = Some(at_ms),
                Output::Emit(_) | Output::PeerMetrics(_) => {}
            }
        }
    }

    /// Time passed: runs the processors' due ticks.
    pub fn tick(&mut self, now_ms: f64) {
        let due: Vec<i64> = self
            .tabs
            .iter_mut()
            .filter(|(_, t)| t.next_tick_ms.is_some_and(|at| at <= now_ms))
            .map(|(id, t)| {
                t.next_tick_ms = None;
                *id
            })
            .collect();
        for tab in due {
            self.feed(tab, Input::Tick { now_ms });
        }
    }

    /// The shell finished a post for `tab`.
    pub fn upload_done(&mut self, tab: i64, result: UploadResult, now_ms: f64) {
        match &result {
            UploadResult::Accepted(seqs) => {
                self.sent += seqs.len() as u64;
                self.last_ok = Some(true);
                self.last_error = None;
            }
            UploadResult::Refused(e) | UploadResult::Failed(e) => {
                self.last_ok = Some(false);
                self.last_error = Some(e.clone());
            }
        }
        if let Some(state) = self.tabs.get_mut(&tab) {
            state.queue.finish(&result, now_ms);
        }
        if let UploadResult::Accepted(seqs) = result {
            for seq in seqs {
                self.feed(tab, Input::Acked { seq });
            }
        }
        self.forget_drained();
    }

    fn forget_drained(&mut self) {
        self.tabs
            .retain(|_, t| t.processor.is_some() || (!t.queue.is_empty() || t.queue.in_flight()));
    }

    /// The posts to start now and when to wake up next.
    pub fn effects(&mut self, now_ms: f64) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.sending() {
            let endpoint = format!(
                "{}/api/v1/ingest",
                self.settings.collector_url.trim().trim_end_matches('/')
            );
            let install = if self.settings.install_id.is_empty() {
                "anonymous"
            } else {
                self.settings.install_id.as_str()
            };
            let label = Some(self.settings.label.trim().to_string()).filter(|l| !l.is_empty());
            for (tab, state) in &mut self.tabs {
                let Some(meeting) = meeting_id(&state.url) else {
                    // Not an http(s) page: nothing to name the meeting by, so nothing is sent.
                    state.queue = UploadQueue::default();
                    continue;
                };
                if let Some(events) = state.queue.take_batch(now_ms) {
                    effects.push(Effect::Post(PostRequest {
                        tab: *tab,
                        endpoint: endpoint.clone(),
                        ingest_key: self.settings.ingest_key.clone(),
                        batch: IngestBatch {
                            meeting_id: meeting,
                            participant_id: format!("{install}-{}", state.session),
                            label: label.clone(),
                            events,
                        },
                    }));
                }
            }
        }
        let wake = self
            .tabs
            .values()
            .flat_map(|t| [t.next_tick_ms, t.queue.retry_at()])
            .flatten()
            .min_by(f64::total_cmp);
        if let Some(at) = wake {
            effects.push(Effect::WakeAt(at));
        }
        effects
    }

    /// The collector connection as the popup shows it.
    pub fn status(&self) -> CollectorStatus {
        let state = match (self.sending(), self.last_ok) {
            (false, _) => "off",
            (true, None) => "connecting",
            (true, Some(true)) => "connected",
            (true, Some(false)) => "retrying",
        };
        CollectorStatus {
            state: state.to_string(),
            queued: self.tabs.values().map(|t| t.queue.len()).sum(),
            sent: self.sent,
            last_error: self.last_error.clone(),
        }
    }

    /// A tab's view. `None` asks for the tab that last had a call (the popup opened as a tab of
    /// its own, or its tab has no call). A call whose hook went quiet counts as ended.
    pub fn view(&self, tab: Option<i64>, now_ms: f64) -> TabView {
        let live =
            |t: &TabState| t.processor.is_some() && t.latest.is_some() && now_ms - t.last_snapshot_ms < STALE_PC_MS;
        let chosen = match tab {
            Some(id) => Some(id),
            None => self
                .tabs
                .iter()
                .filter(|(_, t)| live(t))
                .max_by(|a, b| a.1.last_snapshot_ms.total_cmp(&b.1.last_snapshot_ms))
                .map(|(id, _)| *id),
        };
        let shown = chosen.and_then(|id| self.tabs.get(&id)).filter(|t| live(t));
        TabView {
            tab: chosen,
            metrics: shown.and_then(|t| t.latest.clone()),
            collector: self.status(),
            history: shown
                .map(|t| {
                    t.history
                        .iter()
                        .filter(|s| now_ms - s.at_ms <= 60_000.0)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Adds a tab's new metrics to its history: a new sample at most about once a second, else the
/// latest sample is replaced; the oldest goes when the ring is full.
fn record(history: &mut VecDeque<HistorySample>, m: &TabMetrics) {
    let sample = HistorySample {
        at_ms: m.at_ms,
        bitrate_kbps: sum_kbps(m.upload_kbps, m.download_kbps),
        rtt_ms: m.rtt_ms,
    };
    match history.back_mut() {
        Some(last) if m.at_ms - last.at_ms < HISTORY_STEP_MS && m.at_ms >= last.at_ms => {
            // Keep the sample's own time so samples stay about a second apart.
            *last = HistorySample {
                at_ms: last.at_ms,
                ..sample
            };
        }
        _ => {
            if history.len() == HISTORY_SAMPLES {
                history.pop_front();
            }
            history.push_back(sample);
        }
    }
}

/// The sum of two optional rates (either alone when the other is unknown).
fn sum_kbps(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, y) => x.or(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const URL: &str = "http://127.0.0.1:8000/demo?room=secret#x";

    /// A getStats snapshot of one connection at `t_s` seconds having sent and received
    /// `kbps` steadily, over a selected pair whose local candidate is `local_type`.
    fn reports(t_s: f64, kbps: f64, local_type: &str) -> Vec<Value> {
        let bytes = kbps * 1000.0 / 8.0 * t_s;
        let ts = t_s * 1000.0;
        vec![
            json!({"type": "outbound-rtp", "id": "O1", "ssrc": 1, "kind": "video", "timestamp": ts, "bytesSent": bytes, "packetsSent": t_s * 100.0}),
            json!({"type": "inbound-rtp", "id": "I1", "ssrc": 2, "kind": "video", "timestamp": ts, "bytesReceived": bytes, "packetsReceived": t_s * 100.0, "packetsLost": 0}),
            json!({"type": "transport", "id": "T1", "selectedCandidatePairId": "CP1"}),
            json!({"type": "candidate-pair", "id": "CP1", "localCandidateId": "L1", "remoteCandidateId": "R1", "state": "succeeded", "nominated": true, "currentRoundTripTime": 0.025}),
            json!({"type": "local-candidate", "id": "L1", "candidateType": local_type, "relayProtocol": (local_type == "relay").then_some("udp"), "url": "turn:127.0.0.1:3478"}),
            json!({"type": "remote-candidate", "id": "R1", "candidateType": "host"}),
        ]
    }

    fn stats(tab: i64, pc: &str, t_s: f64, kbps: f64, local_type: &str) -> ToOffscreen {
        ToOffscreen::Stats {
            tab,
            url: URL.into(),
            pc: pc.into(),
            now_ms: 1_700_000_000_000.0 + t_s * 1000.0,
            reports: reports(t_s, kbps, local_type),
        }
    }

    fn configured() -> Driver {
        let mut d = Driver::new();
        d.handle(
            ToOffscreen::Config(Settings {
                collector_url: "http://127.0.0.1:7878/".into(),
                ingest_key: "k".into(),
                label: "Alice".into(),
                sending: true,
                install_id: "inst".into(),
            }),
            0.0,
        );
        d
    }

    fn now(t_s: f64) -> f64 {
        1_700_000_000_000.0 + t_s * 1000.0
    }

    #[test]
    fn a_call_shows_rates_rtt_and_relay() {
        let mut d = Driver::new();
        d.handle(stats(7, "a", 1.0, 800.0, "relay"), now(1.0));
        d.handle(stats(7, "a", 2.0, 800.0, "relay"), now(2.0));
        let view = d.handle(ToOffscreen::GetTab { tab: Some(7) }, now(2.0)).unwrap();
        let m = view.metrics.expect("metrics");
        assert!((m.upload_kbps.unwrap() - 800.0).abs() < 1e-6);
        assert!((m.download_kbps.unwrap() - 800.0).abs() < 1e-6);
        assert_eq!(m.rtt_ms, Some(25.0));
        assert!(m.using_relay);
        assert_eq!(m.relay_protocol.as_deref(), Some("udp"));
        assert_eq!(view.collector.state, "off");
    }

    #[test]
    fn no_tab_means_the_tab_that_last_had_a_call() {
        let mut d = Driver::new();
        d.handle(stats(1, "a", 1.0, 100.0, "host"), now(1.0));
        d.handle(stats(2, "b", 2.0, 100.0, "host"), now(2.0));
        assert_eq!(d.view(None, now(2.0)).tab, Some(2));
        assert_eq!(d.view(Some(3), now(2.0)).metrics, None);
        d.handle(ToOffscreen::TabGone { tab: 2 }, now(3.0));
        assert_eq!(d.view(None, now(3.0)).tab, Some(1));
        // A hook that went quiet is no call.
        assert_eq!(d.view(None, now(1.0) + STALE_PC_MS).metrics, None);
    }

    #[test]
    fn history_keeps_a_sample_a_second_for_the_last_minute() {
        let mut d = Driver::new();
        for i in 1..=70 {
            let t = f64::from(i);
            // Two connections: the tab's metrics change twice a second, the history once.
            d.handle(stats(5, "a", t, 100.0, "host"), now(t));
            d.handle(stats(5, "b", t + 0.1, 300.0, "host"), now(t + 0.1));
        }
        let view = d.view(Some(5), now(70.1));
        assert_eq!(view.history.len(), HISTORY_SAMPLES);
        assert!(view
            .history
            .windows(2)
            .all(|w| (w[1].at_ms - w[0].at_ms - 1000.0).abs() < 1.0));
        let last = view.history.last().unwrap();
        assert!((last.bitrate_kbps.unwrap() - 800.0).abs() < 1e-6, "{last:?}");
        assert_eq!(last.rtt_ms, Some(25.0));
        d.handle(ToOffscreen::TabGone { tab: 5 }, now(71.0));
        assert!(d.view(Some(5), now(71.0)).history.is_empty());
        assert!(d.view(Some(9), now(71.0)).history.is_empty());
    }

    #[test]
    fn a_closed_connection_ends_the_call() {
        let mut d = Driver::new();
        d.handle(stats(1, "a", 1.0, 100.0, "host"), now(1.0));
        d.handle(ToOffscreen::PcClosed { tab: 1, pc: "a".into() }, now(1.5));
        assert_eq!(d.view(Some(1), now(1.5)).metrics, None);
    }

    #[test]
    fn events_are_posted_and_acked() {
        let mut d = configured();
        d.handle(stats(4, "a", 1.0, 100.0, "host"), now(1.0));
        let effects = d.effects(now(1.0));
        let Some(Effect::Post(req)) = effects.first() else {
            panic!("expected a post, got {effects:?}")
        };
        assert_eq!(req.endpoint, "http://127.0.0.1:7878/api/v1/ingest");
        assert_eq!(req.ingest_key, "k");
        assert_eq!(req.batch.meeting_id, "http://127.0.0.1:8000/demo");
        assert!(req.batch.participant_id.starts_with("inst-4-"));
        assert_eq!(req.batch.label.as_deref(), Some("Alice"));
        assert!(req.batch.events[0].full);
        let seqs: Vec<u64> = req.batch.events.iter().map(|e| e.seq).collect();
        // Nothing else goes while the batch is in flight.
        assert!(!d.effects(now(1.0)).iter().any(|e| matches!(e, Effect::Post(_))));
        d.upload_done(4, UploadResult::Accepted(seqs), now(1.1));
        let status = d.status();
        assert_eq!((status.state.as_str(), status.queued, status.sent), ("connected", 0, 1));
    }

    #[test]
    fn failed_posts_wait_for_the_backoff() {
        let mut d = configured();
        d.handle(stats(4, "a", 1.0, 100.0, "host"), now(1.0));
        assert!(matches!(d.effects(now(1.0))[0], Effect::Post(_)));
        d.upload_done(4, UploadResult::Failed("connection refused".into()), now(1.0));
        let effects = d.effects(now(1.0));
        assert_eq!(effects, vec![Effect::WakeAt(now(1.0) + 1000.0)]);
        assert_eq!(d.status().state, "retrying");
        assert_eq!(d.status().queued, 1);
        d.tick(now(2.0));
        assert!(matches!(d.effects(now(2.0))[0], Effect::Post(_)));
    }

    #[test]
    fn nothing_is_queued_when_sending_is_off() {
        let mut d = Driver::new();
        d.handle(stats(4, "a", 1.0, 100.0, "host"), now(1.0));
        assert!(d.effects(now(1.0)).is_empty());
        assert_eq!(d.status().queued, 0);
    }

    #[test]
    fn a_gone_tab_keeps_its_queue_until_it_drains() {
        let mut d = configured();
        d.handle(stats(4, "a", 1.0, 100.0, "host"), now(1.0));
        let Effect::Post(req) = d.effects(now(1.0)).remove(0) else {
            panic!("expected a post")
        };
        d.handle(ToOffscreen::TabGone { tab: 4 }, now(1.1));
        assert_eq!(d.status().queued, 1);
        d.upload_done(4, UploadResult::Accepted(vec![req.batch.events[0].seq]), now(1.2));
        assert_eq!(d.status().queued, 0);
        assert!(d.tabs.is_empty());
    }

    #[test]
    fn oversized_snapshots_are_ignored() {
        let mut d = Driver::new();
        d.handle(
            ToOffscreen::Stats {
                tab: 1,
                url: URL.into(),
                pc: "p".repeat(65),
                now_ms: 1.0,
                reports: vec![],
            },
            1.0,
        );
        assert!(d.tabs.is_empty());
    }
}
