//! The offscreen document's pure state: one processor per tab, latest metrics, upload queues and collector status.
//!
//! The shell (`offscreen.rs`) hands it messages and the time, and carries out the [`Effect`]s it
//! asks for (HTTP posts, a wake-up timer). Nothing here touches a browser API, so it is tested natively.

use crate::convert::poll_inputs;
use crate::upload::{UploadResult, Uploads};
use crate::upload_store::StoreOp;
use std::collections::BTreeMap;
use vitals_shared::limits::valid_pc_id;
use vitals_shared::messages::{Badge, CollectorState, CollectorStatus, Settings, TabView, ToOffscreen};
use vitals_shared::metrics::TabMetrics;
use vitals_shared::privacy::{collector_base, uploaded_meeting_id};
use vitals_shared::processor::{Input, Output, Processor, STALE_PC_MS};
use vitals_shared::report::{CallRecorder, Report, REPORT_WINDOW_MS};
use vitals_shared::wire::IngestBatch;

/// A post the shell must make; its result goes back through [`Driver::upload_done`].
#[derive(Debug, Clone, PartialEq)]
pub struct PostRequest {
    /// The participant session the batch belongs to.
    pub session: String,
    /// `<collector_url>/api/v1/ingest`.
    pub endpoint: String,
    pub ingest_key: String,
    pub batch: IngestBatch,
}

/// Samples the popup's sparklines show: one a second over the last minute.
pub const HISTORY_SAMPLES: usize = 60;

/// No snapshot from any tab for this long: no call, and the document may close. The grace
/// leaves time to download the report of a call that just ended, and spares a restart when an
/// app replaces its connection.
pub const IDLE_AFTER_MS: f64 = 60_000.0;
/// Events waiting for an unreachable collector keep the document open this long after the last
/// call; then they wait in storage for the next call.
pub const KEEP_FOR_UPLOADS_MS: f64 = 600_000.0;
/// While idle the document says so again this often (the service worker declines to close it
/// when a snapshot crossed the message).
const IDLE_REPEAT_MS: f64 = 30_000.0;

/// The answer to a question ([`ToOffscreen::GetTab`], `GetReport`, `GetBadge`), for `sendResponse`.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    View(Box<TabView>),
    /// `None` when nothing is recorded (answered as null, which the popup tells from no answer).
    Report(Option<Box<Report>>),
    Badge(Badge),
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Post(PostRequest),
    /// Call [`Driver::tick`] at this time (replaces any earlier request).
    WakeAt(f64),
    /// Nothing to do: no call, nothing to upload. The service worker may close the document.
    Idle,
}

#[derive(Debug)]
struct TabState {
    /// `None` once the tab closed or navigated away (the state is then forgotten).
    processor: Option<Processor>,
    url: String,
    /// The tab's call session: part of the participant id.
    session: String,
    latest: Option<TabMetrics>,
    /// The last 10 minutes of the call (reports; the last minute feeds the sparklines).
    recorder: CallRecorder,
    last_snapshot_ms: f64,
    next_tick_ms: Option<f64>,
    /// RTP flowed in this session (some interval sent or received media bytes). Until then its
    /// events are not uploaded: a data-channel-only or media-less connection (WebTorrent, P2P
    /// CDNs, fingerprinting scripts) is no meeting. The processor repeats its full snapshot
    /// until one is acknowledged, so the first event uploaded is complete.
    rtp_seen: bool,
    /// Events the processor numbered before RTP flowed (never queued): later events are
    /// numbered this much lower, so the uploaded numbers start at 1 without a gap.
    skipped: u64,
}

/// The offscreen driver.
#[derive(Debug, Default)]
pub struct Driver {
    settings: Settings,
    tabs: BTreeMap<i64, TabState>,
    sent: u64,
    last_ok: Option<bool>,
    last_error: Option<String>,
    /// The upload queues of every call session, kept in step with storage.
    uploads: Uploads,
    /// The last snapshot from any tab (or the start), for closing the document when idle.
    last_call_ms: f64,
    /// When [`Effect::Idle`] was last given in the current idle spell.
    idle_said_ms: Option<f64>,
}

impl Driver {
    pub fn new() -> Self {
        Self::default()
    }

    /// The user turned sending on: events are queued (bounded) even while the collector URL is
    /// missing or refused, and posted once it is usable.
    fn sending(&self) -> bool {
        self.settings.sending
    }

    /// The ingest endpoint, or why events cannot go to the configured collector (none set, or
    /// plain http to a remote host: see `privacy::collector_base`).
    fn endpoint(&self) -> Result<String, String> {
        if self.settings.collector_url.trim().is_empty() {
            return Err("No collector URL is set: events wait in the queue.".into());
        }
        collector_base(&self.settings.collector_url)
            .map(|base| format!("{base}/api/v1/ingest"))
            .map_err(|e| format!("{e} Events wait in the queue."))
    }

    /// Handles one message; returns the answer to a question.
    pub fn handle(&mut self, message: ToOffscreen, now_ms: f64) -> Option<Answer> {
        match message {
            ToOffscreen::Stats {
                tab,
                url,
                now_ms: at_ms,
                items,
            } => {
                // A poll over the limits is dropped whole, a bad connection of it alone.
                let inputs = poll_inputs(at_ms, items).unwrap_or_default();
                self.stats(tab, url, at_ms, inputs);
            }
            ToOffscreen::PcClosed { tab, pc } if valid_pc_id(&pc) => {
                if let Some(state) = self.tabs.get_mut(&tab).filter(|t| t.processor.is_some()) {
                    state.recorder.closed(&pc, now_ms);
                    self.feed(tab, Input::Closed { pc });
                }
            }
            ToOffscreen::TabGone { tab } => {
                if let Some(state) = self.tabs.get_mut(&tab) {
                    state.processor = None;
                    state.latest = None;
                    // A new recorder, not a cleared one: the rings' memory is freed.
                    state.recorder = CallRecorder::default();
                    state.next_tick_ms = None;
                    self.uploads.end_session(&state.session);
                }
                self.forget_drained();
            }
            ToOffscreen::Config(settings) => {
                let target_changed = (&settings.collector_url, &settings.ingest_key)
                    != (&self.settings.collector_url, &self.settings.ingest_key);
                self.settings = settings;
                if target_changed {
                    // A refused upload waits a minute; a fixed key or URL should not.
                    self.uploads.retry_now();
                    self.last_ok = None;
                    self.last_error = None;
                }
                // Turning sending off discards the queue (the user's choice); a missing or
                // refused collector URL keeps it.
                if !self.sending() {
                    self.uploads.clear();
                    self.last_ok = None;
                    self.forget_drained();
                }
            }
            // An id no snapshot could have had: no connection to close.
            ToOffscreen::PcClosed { .. } => {}
            ToOffscreen::GetTab { tab } => return Some(Answer::View(Box::new(self.view(tab, now_ms)))),
            ToOffscreen::GetReport { tab } => return Some(Answer::Report(self.report(tab, now_ms).map(Box::new))),
            ToOffscreen::GetBadge { tab } => return Some(Answer::Badge(self.badge(tab, now_ms))),
        }
        None
    }

    /// One poll of a tab's connections, checked (`convert::poll_inputs`); nothing happens when
    /// none of them passed.
    fn stats(&mut self, tab: i64, url: String, at_ms: f64, inputs: Vec<Input>) {
        if inputs.is_empty() {
            return;
        }
        let state = self.tabs.entry(tab).or_insert_with(|| TabState {
            processor: None,
            url: String::new(),
            session: String::new(),
            latest: None,
            recorder: CallRecorder::default(),
            last_snapshot_ms: 0.0,
            next_tick_ms: None,
            rtp_seen: false,
            skipped: 0,
        });
        if state.processor.is_none() {
            // A new call session: the tab is new, or it navigated and came back.
            state.processor = Some(Processor::new());
            state.session = self.uploads.open_session(
                tab,
                uploaded_meeting_id(&url, &self.settings.meeting_id_salt).as_deref(),
                at_ms,
                at_ms,
            );
            state.recorder = CallRecorder::default();
            state.next_tick_ms = None;
            state.rtp_seen = false;
            state.skipped = 0;
        }
        state.url = url;
        state.last_snapshot_ms = at_ms;
        self.last_call_ms = self.last_call_ms.max(at_ms);
        self.idle_said_ms = None;
        for input in inputs {
            self.feed(tab, input);
        }
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
                    state.rtp_seen |= m.figures.bitrate_kbps().is_some_and(|kbps| kbps > 0.0);
                    if live {
                        state.recorder.record_tab(&m);
                    }
                    state.latest = live.then_some(m);
                }
                Output::Emit(mut event) if sending && state.rtp_seen => {
                    event.seq -= state.skipped;
                    let meeting = uploaded_meeting_id(&state.url, &self.settings.meeting_id_salt);
                    self.uploads.push(&state.session, tab, meeting, event)
                }
                Output::Emit(_) if sending => state.skipped += 1,
                Output::NextTick { at_ms } => state.next_tick_ms = Some(at_ms),
                Output::PeerMetrics(m) => state.recorder.record_peer(&m),
                Output::Finding(change) => state.recorder.record_finding(&change),
                Output::Emit(_) => {}
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

    /// The shell finished a post for `session` ([`PostRequest::session`]).
    pub fn upload_done(&mut self, session: &str, result: UploadResult, now_ms: f64) {
        match &result {
            UploadResult::Accepted(ack) => {
                self.sent += ack.accepted.len() as u64;
                self.last_ok = Some(true);
                self.last_error = None;
            }
            UploadResult::Rejected(e) | UploadResult::Refused(e) | UploadResult::Failed(e) => {
                self.last_ok = Some(false);
                self.last_error = Some(e.clone());
            }
        }
        let acked = self.uploads.finish(session, &result, now_ms);
        let feeding = self
            .tabs
            .iter()
            .find(|(_, t)| t.processor.is_some() && t.session == session);
        if let Some((tab, skipped)) = feeding.map(|(id, t)| (*id, t.skipped)) {
            for seq in acked {
                self.feed(tab, Input::Acked { seq: seq + skipped });
            }
        }
    }

    fn forget_drained(&mut self) {
        self.tabs.retain(|_, t| t.processor.is_some());
    }

    /// Reads the stored upload queues back (before the first upload; see `upload.rs`) and
    /// starts the idle clock.
    pub fn restore(&mut self, stored: impl IntoIterator<Item = (String, String)>, now_ms: f64) {
        self.uploads = Uploads::restore(stored, now_ms);
        self.last_call_ms = now_ms;
    }

    /// The storage changes to apply, in order, before the next post starts.
    pub fn take_writes(&mut self) -> Vec<StoreOp> {
        self.uploads.take_writes()
    }

    /// Whether the document has nothing to do (no call for [`IDLE_AFTER_MS`], nothing to upload
    /// or [`KEEP_FOR_UPLOADS_MS`] passed) and should say so now, and when to look again.
    fn idle_check(&mut self, now_ms: f64) -> (bool, Option<f64>) {
        if self.uploads.in_flight() {
            return (false, None); // its end runs the effects again
        }
        let grace = if self.uploads.queued() > 0 {
            KEEP_FOR_UPLOADS_MS
        } else {
            IDLE_AFTER_MS
        };
        let idle_at = self.last_call_ms + grace;
        if now_ms < idle_at {
            return (false, Some(idle_at));
        }
        let say = self.idle_said_ms.is_none_or(|said| now_ms - said >= IDLE_REPEAT_MS);
        if say {
            self.idle_said_ms = Some(now_ms);
        }
        (say, self.idle_said_ms.map(|said| said + IDLE_REPEAT_MS))
    }

    /// The posts to start now and when to wake up next.
    pub fn effects(&mut self, now_ms: f64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.uploads.expire(now_ms);
        if let (true, Ok(endpoint)) = (self.sending(), self.endpoint()) {
            let install = if self.settings.install_id.is_empty() {
                "anonymous"
            } else {
                self.settings.install_id.as_str()
            };
            let label = Some(self.settings.label.trim().to_string()).filter(|l| !l.is_empty());
            for batch in self.uploads.take_batches(now_ms) {
                effects.push(Effect::Post(PostRequest {
                    endpoint: endpoint.clone(),
                    ingest_key: self.settings.ingest_key.clone(),
                    batch: IngestBatch {
                        meeting_id: batch.meeting,
                        participant_id: format!("{install}-{}", batch.session),
                        label: label.clone(),
                        participant_token: batch.token,
                        client_health: None,
                        events: batch.events,
                    },
                    session: batch.session,
                }));
            }
        }
        let (idle, idle_wake) = self.idle_check(now_ms);
        if idle {
            effects.push(Effect::Idle);
        }
        let wake = self
            .tabs
            .values()
            .filter_map(|t| t.next_tick_ms)
            .chain(self.uploads.retry_at())
            .chain(idle_wake)
            .min_by(f64::total_cmp);
        if let Some(at) = wake {
            effects.push(Effect::WakeAt(at));
        }
        effects
    }

    /// The collector connection as the popup shows it.
    pub fn status(&self) -> CollectorStatus {
        let endpoint = self.endpoint();
        let state = match (self.sending(), &endpoint, self.last_ok) {
            (false, _, _) => CollectorState::Off,
            (true, Err(_), _) => CollectorState::Retrying,
            (true, Ok(_), None) => CollectorState::Connecting,
            (true, Ok(_), Some(true)) => CollectorState::Connected,
            (true, Ok(_), Some(false)) => CollectorState::Retrying,
        };
        let last_error = match (self.sending(), endpoint) {
            (true, Err(why)) => Some(why),
            _ => self.last_error.clone(),
        };
        CollectorStatus {
            state,
            queued: self.uploads.queued(),
            dropped: self.uploads.dropped(),
            sent: self.sent,
            last_error,
        }
    }

    /// A tab's view. `None` asks for the tab that last had a call (the popup opened as a tab of
    /// its own, or its tab has no call). A call whose hook went quiet counts as ended.
    /// Without a live call anywhere, `None` picks the tab whose ended call was recorded last
    /// (its report can still be downloaded).
    pub fn view(&self, tab: Option<i64>, now_ms: f64) -> TabView {
        let chosen = self.choose(tab, now_ms);
        let state = chosen.and_then(|id| self.tabs.get(&id));
        let shown = state.filter(|t| t.live(now_ms));
        TabView {
            tab: chosen,
            metrics: shown.and_then(|t| t.latest.clone()),
            collector: self.status(),
            history: shown
                .map(|t| t.recorder.history(now_ms, 60_000.0, HISTORY_SAMPLES))
                .unwrap_or_default(),
            recorded_since_ms: state
                .and_then(|t| t.recorder.first_ms())
                .map(|first| first.max(now_ms - REPORT_WINDOW_MS)),
        }
    }

    /// What the toolbar badge of `tab` shows: its quality while it has a call ([`Driver::view`]'s
    /// metrics, without the rest of the view).
    pub fn badge(&self, tab: i64, now_ms: f64) -> Badge {
        let live = self.tabs.get(&tab).filter(|t| t.live(now_ms));
        Badge::of(live.and_then(|t| t.latest.as_ref()))
    }

    /// `tab`, or for `None` the tab that last had a live call, else the one recorded last.
    fn choose(&self, tab: Option<i64>, now_ms: f64) -> Option<i64> {
        let newest = |time: &dyn Fn(&TabState) -> Option<f64>| {
            self.tabs
                .iter()
                .filter_map(|(id, t)| Some((time(t)?, *id)))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, id)| id)
        };
        tab.or_else(|| newest(&|t| t.live(now_ms).then_some(t.last_snapshot_ms)))
            .or_else(|| newest(&|t| t.recorder.last_ms()))
    }

    /// The report of the last 10 minutes of `tab` (chosen as for [`Driver::view`]); `None`
    /// when nothing is recorded.
    pub fn report(&self, tab: Option<i64>, now_ms: f64) -> Option<Report> {
        let state = self.tabs.get(&self.choose(tab, now_ms)?)?;
        (!state.recorder.is_empty()).then(|| Report::build(&state.recorder, &state.url, now_ms))
    }
}

impl TabState {
    /// The tab has a call whose hook still reports.
    fn live(&self, now_ms: f64) -> bool {
        self.processor.is_some() && self.latest.is_some() && now_ms - self.last_snapshot_ms < STALE_PC_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vitals_shared::messages::PcStats;
    use vitals_shared::quality::QualityClass;
    use vitals_shared::stats::{parse_report, RawReport};

    const URL: &str = "http://127.0.0.1:8000/demo?room=secret#x";

    /// A getStats snapshot of one connection at `t_s` seconds having sent and received
    /// `kbps` steadily, over a selected pair whose local candidate is `local_type`.
    fn reports(t_s: f64, kbps: f64, local_type: &str) -> Vec<RawReport> {
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
        .into_iter()
        .map(parse_report)
        .collect()
    }

    /// A poll of one connection.
    fn stats(tab: i64, pc: &str, t_s: f64, kbps: f64, local_type: &str) -> ToOffscreen {
        ToOffscreen::Stats {
            tab,
            url: URL.into(),
            now_ms: 1_700_000_000_000.0 + t_s * 1000.0,
            items: vec![PcStats {
                pc: pc.into(),
                reports: reports(t_s, kbps, local_type),
            }],
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
                ..Settings::default()
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
        let Some(Answer::View(view)) = d.handle(ToOffscreen::GetTab { tab: Some(7) }, now(2.0)) else {
            panic!("no view")
        };
        let m = view.metrics.expect("metrics");
        let f = &m.figures;
        assert!((f.upload_kbps.unwrap() - 800.0).abs() < 1e-6);
        assert!((f.download_kbps.unwrap() - 800.0).abs() < 1e-6);
        assert_eq!(f.rtt_ms, Some(25.0));
        assert!(f.using_relay);
        assert_eq!(f.relay_protocol.as_deref(), Some("udp"));
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
    fn a_report_covers_the_call_outlives_its_end_and_goes_with_the_tab() {
        let mut d = Driver::new();
        for i in 1..=30 {
            let t = f64::from(i);
            d.handle(stats(3, "a", t, 400.0, "relay"), now(t));
            d.handle(stats(3, "b", t + 0.2, 200.0, "host"), now(t + 0.2));
        }
        assert_eq!(d.view(Some(3), now(30.2)).recorded_since_ms, Some(now(1.0)));
        d.handle(ToOffscreen::PcClosed { tab: 3, pc: "a".into() }, now(30.5));
        d.handle(ToOffscreen::PcClosed { tab: 3, pc: "b".into() }, now(30.6));
        // The call ended: no view of it, but the popup (asking for no tab) still finds its report.
        let view = d.view(None, now(31.0));
        assert_eq!(
            (view.tab, view.metrics, view.recorded_since_ms),
            (Some(3), None, Some(now(1.0)))
        );
        let report = d.report(None, now(31.0)).expect("a report");
        assert_eq!(report.page.as_deref(), Some("http://ip-literal/demo"));
        assert_eq!(report.connections.len(), 2);
        for c in &report.connections {
            // One a poll; the first has the round trip and relay but no rates yet.
            assert_eq!(c.samples.len(), 30, "{}", c.pc);
            assert_eq!(c.samples[0].figures.upload_kbps, None);
            assert!(c.closed_ms.is_some());
        }
        assert!(report.connections[0].using_relay && !report.connections[1].using_relay);
        assert!(report
            .alerts
            .iter()
            .any(|a| a.kind == vitals_shared::alerts::AlertKind::UsingTurn));
        assert!((report.overview.upload_kbps.max.unwrap() - 600.0).abs() < 1e-6);
        let json = serde_json::to_value(&report).unwrap();
        assert!(vitals_shared::report::address_leaks(&json).is_empty());
        assert!(!json.to_string().contains("127.0.0.1"));
        // The tab goes: its recording is freed.
        d.handle(ToOffscreen::TabGone { tab: 3 }, now(32.0));
        assert_eq!(d.report(Some(3), now(32.0)), None);
        assert_eq!(d.view(None, now(32.0)).recorded_since_ms, None);
        assert!(d.tabs.values().all(|t| t.recorder.is_empty()));
    }

    /// Tab `tab`'s connection "a" polled at 1 s and 2 s: media flowed over the interval.
    fn media_flowed(d: &mut Driver, tab: i64) {
        d.handle(stats(tab, "a", 1.0, 100.0, "host"), now(1.0));
        d.handle(stats(tab, "a", 2.0, 100.0, "host"), now(2.0));
    }

    #[test]
    fn a_salt_uploads_the_meeting_as_its_hash_only() {
        let mut d = configured();
        let salted = Settings {
            meeting_id_salt: "acme".into(),
            ..d.settings.clone()
        };
        d.handle(ToOffscreen::Config(salted), 0.0);
        media_flowed(&mut d, 4);
        let effects = d.effects(now(2.0));
        let Some(Effect::Post(req)) = effects.first() else {
            panic!("expected a post, got {effects:?}")
        };
        let expected = vitals_shared::privacy::uploaded_meeting_id(URL, "acme").unwrap();
        assert!(expected.starts_with("h-"), "{expected}");
        assert_eq!(req.batch.meeting_id, expected);
        let body = serde_json::to_string(&req.batch).unwrap();
        assert!(!body.contains("demo") && !body.contains("ip-literal"), "{body}");
    }

    #[test]
    fn events_are_posted_and_acked() {
        let mut d = configured();
        media_flowed(&mut d, 4);
        let effects = d.effects(now(2.0));
        let Some(Effect::Post(req)) = effects.first() else {
            panic!("expected a post, got {effects:?}")
        };
        assert_eq!(req.endpoint, "http://127.0.0.1:7878/api/v1/ingest");
        assert_eq!(req.ingest_key, "k");
        assert_eq!(req.batch.meeting_id, "http://ip-literal/demo");
        assert!(req.batch.participant_id.starts_with("inst-4-"));
        assert_eq!(req.batch.label.as_deref(), Some("Alice"));
        assert!(req.batch.events[0].full);
        let seqs: Vec<u64> = req.batch.events.iter().map(|e| e.seq).collect();
        // Nothing else goes while the batch is in flight.
        assert!(!d.effects(now(2.0)).iter().any(|e| matches!(e, Effect::Post(_))));
        d.upload_done(&req.session, crate::upload::acked(seqs), now(2.1));
        let status = d.status();
        assert_eq!((status.state.as_str(), status.queued, status.sent), ("connected", 0, 1));
    }

    #[test]
    fn failed_posts_wait_for_the_backoff() {
        let mut d = configured();
        media_flowed(&mut d, 4);
        let Effect::Post(req) = d.effects(now(2.0)).remove(0) else {
            panic!("expected a post")
        };
        d.upload_done(
            &req.session,
            UploadResult::Failed("connection refused".into()),
            now(2.0),
        );
        let effects = d.effects(now(2.0));
        assert_eq!(effects, vec![Effect::WakeAt(now(2.0) + 1000.0)]);
        assert_eq!(d.status().state, "retrying");
        assert_eq!(d.status().queued, 1);
        d.tick(now(3.0));
        assert!(matches!(d.effects(now(3.0))[0], Effect::Post(_)));
    }

    #[test]
    fn a_refused_upload_keeps_the_queue_and_says_what_to_fix() {
        let mut d = configured();
        media_flowed(&mut d, 4);
        let Effect::Post(req) = d.effects(now(2.0)).remove(0) else {
            panic!("expected a post")
        };
        d.upload_done(&req.session, UploadResult::from_status(401), now(2.0));
        let status = d.status();
        assert_eq!(
            (status.state.as_str(), status.queued, status.dropped),
            ("retrying", 1, 0)
        );
        assert!(status.last_error.unwrap().contains("check the ingest key"));
        assert_eq!(
            d.effects(now(2.0)),
            vec![Effect::WakeAt(now(2.0) + crate::upload::REFUSED_BACKOFF_MS)]
        );
        // The user fixes the key: the kept event goes at once.
        d.handle(
            ToOffscreen::Config(Settings {
                ingest_key: "fixed".into(),
                ..d.settings.clone()
            }),
            now(3.0),
        );
        let Effect::Post(retry) = d.effects(now(3.0)).remove(0) else {
            panic!("expected the kept event to go once the key changed")
        };
        assert_eq!((retry.ingest_key.as_str(), retry.batch.events.len()), ("fixed", 1));
    }

    #[test]
    fn the_participant_token_of_an_ack_goes_with_the_next_post_and_its_refusal_is_told() {
        let mut d = configured();
        media_flowed(&mut d, 4);
        let Effect::Post(first) = d.effects(now(2.0)).remove(0) else {
            panic!("expected a post")
        };
        assert_eq!(first.batch.participant_token, None);
        let ack = vitals_shared::wire::IngestAck {
            accepted: first.batch.events.iter().map(|e| e.seq).collect(),
            participant_token: Some("tok-1".into()),
        };
        d.upload_done(&first.session, UploadResult::Accepted(ack), now(2.1));
        // The call goes on until its next event (a change or a heartbeat) is posted.
        let second = (3..=30)
            .find_map(|t| {
                let t_s = f64::from(t);
                d.handle(stats(4, "a", t_s, 100.0, "host"), now(t_s));
                d.effects(now(t_s)).into_iter().find_map(|e| match e {
                    Effect::Post(req) => Some(req),
                    _ => None,
                })
            })
            .expect("a second post");
        assert_eq!(second.batch.participant_token.as_deref(), Some("tok-1"));
        assert_eq!(second.batch.participant_id, first.batch.participant_id);
        d.upload_done(
            &second.session,
            UploadResult::from_refusal(403, "missing participant token: this participant already exists"),
            now(3.1),
        );
        let status = d.status();
        assert_eq!((status.state.as_str(), status.dropped), ("retrying", 0));
        assert!(status.queued > 0);
        assert_eq!(status.last_error.as_deref(), Some(crate::upload::TOKEN_REFUSED));
    }

    #[test]
    fn a_connection_without_media_is_never_uploaded() {
        let mut d = configured();
        // A data-channel-only connection: a transport and a candidate pair, no RTP.
        for t in 1..=30 {
            let t_s = f64::from(t);
            let mut poll = stats(4, "a", t_s, 100.0, "host");
            if let ToOffscreen::Stats { items, .. } = &mut poll {
                items[0]
                    .reports
                    .retain(|r| !matches!(r, RawReport::OutboundRtp(_) | RawReport::InboundRtp(_)));
            }
            d.handle(poll, now(t_s));
            assert!(
                !d.effects(now(t_s)).iter().any(|e| matches!(e, Effect::Post(_))),
                "at {t} s"
            );
        }
        assert_eq!(d.status().queued, 0);
        // Media starts: the session is uploaded from then on, with a full snapshot first.
        d.handle(stats(4, "a", 31.0, 100.0, "host"), now(31.0));
        d.handle(stats(4, "a", 32.0, 100.0, "host"), now(32.0));
        let posted = d.effects(now(32.0)).into_iter().find_map(|e| match e {
            Effect::Post(req) => Some(req),
            _ => None,
        });
        assert!(posted.expect("a post once media flows").batch.events[0].full);
    }

    #[test]
    fn a_missing_or_plain_http_remote_collector_keeps_the_queue() {
        for url in ["", "http://vitals.example.com"] {
            let mut d = Driver::new();
            d.handle(
                ToOffscreen::Config(Settings {
                    collector_url: url.into(),
                    sending: true,
                    ..Settings::default()
                }),
                0.0,
            );
            media_flowed(&mut d, 4);
            assert!(
                !d.effects(now(2.0)).iter().any(|e| matches!(e, Effect::Post(_))),
                "{url}"
            );
            let status = d.status();
            assert_eq!((status.state.as_str(), status.queued), ("retrying", 1), "{url}");
            assert!(status.last_error.unwrap().contains("wait in the queue"));
            // The user sets a usable collector: the kept events go.
            d.handle(
                ToOffscreen::Config(Settings {
                    collector_url: "https://vitals.example.com".into(),
                    sending: true,
                    ..Settings::default()
                }),
                now(3.0),
            );
            let Effect::Post(req) = d.effects(now(3.0)).remove(0) else {
                panic!("expected a post")
            };
            assert_eq!(req.endpoint, "https://vitals.example.com/api/v1/ingest");
        }
    }

    #[test]
    fn nothing_is_queued_when_sending_is_off() {
        let mut d = Driver::new();
        d.handle(stats(4, "a", 1.0, 100.0, "host"), now(1.0));
        assert!(!d.effects(now(1.0)).iter().any(|e| matches!(e, Effect::Post(_))));
        assert_eq!(d.status().queued, 0);
    }

    #[test]
    fn a_gone_tab_keeps_its_queue_until_it_drains() {
        let mut d = configured();
        media_flowed(&mut d, 4);
        let Effect::Post(req) = d.effects(now(2.0)).remove(0) else {
            panic!("expected a post")
        };
        d.handle(ToOffscreen::TabGone { tab: 4 }, now(2.1));
        assert_eq!(d.status().queued, 1);
        d.upload_done(
            &req.session,
            crate::upload::acked(vec![req.batch.events[0].seq]),
            now(2.2),
        );
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
                now_ms: 1.0,
                items: vec![PcStats {
                    pc: "p".repeat(65),
                    reports: vec![],
                }],
            },
            1.0,
        );
        assert!(d.tabs.is_empty());
    }

    #[test]
    fn one_poll_carries_every_connection_of_the_tab() {
        let mut d = Driver::new();
        let poll = |t_s: f64| ToOffscreen::Stats {
            tab: 2,
            url: URL.into(),
            now_ms: now(t_s),
            items: [
                ("a", 300.0, "host"),
                ("b", 500.0, "relay"),
                ("not an id", 900.0, "host"),
            ]
            .map(|(pc, kbps, local)| PcStats {
                pc: pc.into(),
                reports: reports(t_s, kbps, local),
            })
            .into(),
        };
        d.handle(poll(1.0), now(1.0));
        d.handle(poll(2.0), now(2.0));
        let m = d.view(Some(2), now(2.0)).metrics.expect("metrics");
        let pcs: Vec<&str> = m.peers.iter().map(|p| p.pc.as_str()).collect();
        assert_eq!(pcs, ["a", "b"], "the connection with a bad id is left out");
        assert!((m.figures.upload_kbps.unwrap() - 800.0).abs() < 1e-6, "{m:?}");
        assert!(m.figures.using_relay);
    }

    #[test]
    fn the_badge_follows_the_tab_call() {
        let mut d = Driver::new();
        assert_eq!(d.badge(6, now(1.0)), Badge::of(None));
        d.handle(stats(6, "a", 1.0, 100.0, "host"), now(1.0));
        d.handle(stats(6, "a", 2.0, 100.0, "host"), now(2.0));
        let quality = d.view(Some(6), now(2.0)).metrics.and_then(|m| m.figures.quality);
        assert_eq!(quality, Some(QualityClass::Excellent));
        assert_eq!(d.badge(6, now(2.0)).text, "4");
        let Some(Answer::Badge(badge)) = d.handle(ToOffscreen::GetBadge { tab: 6 }, now(2.0)) else {
            panic!("no badge")
        };
        assert_eq!(badge.text, "4");
        // A hook gone quiet, a closed connection: no badge.
        assert_eq!(d.badge(6, now(2.0) + STALE_PC_MS).text, "");
        d.handle(ToOffscreen::PcClosed { tab: 6, pc: "a".into() }, now(2.5));
        assert_eq!(d.badge(6, now(2.5)), Badge::of(None));
    }

    /// Runs the effects at `t`, failing every post (the collector is down), until none starts.
    fn settle_failing(d: &mut Driver, t: f64) -> Vec<Effect> {
        loop {
            let effects = d.effects(t);
            let posts: Vec<String> = effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Post(req) => Some(req.session.clone()),
                    _ => None,
                })
                .collect();
            if posts.is_empty() {
                return effects;
            }
            for session in posts {
                d.upload_done(&session, UploadResult::Failed("collector unreachable".into()), t);
            }
        }
    }

    #[test]
    fn a_restarted_document_sends_the_stored_events_and_numbers_on() {
        let mut disk = std::collections::BTreeMap::new();
        let mut d = configured();
        d.restore(Vec::new(), now(0.0));
        for t in 1..=17 {
            d.handle(stats(4, "a", f64::from(t), 100.0, "host"), now(f64::from(t)));
            settle_failing(&mut d, now(f64::from(t)));
            crate::upload_store::apply_to(&mut disk, d.take_writes());
        }
        let queued = d.status().queued;
        assert!(queued >= 2, "the first event and a heartbeat wait, {queued}");

        // The document restarts; the tab's call goes on.
        let mut d = configured();
        d.restore(disk.clone(), now(18.0));
        assert_eq!(d.status().queued, queued);
        d.handle(stats(4, "a", 18.0, 100.0, "host"), now(18.0));
        d.handle(stats(4, "a", 19.0, 100.0, "host"), now(19.0));
        let Effect::Post(req) = d.effects(now(19.0)).remove(0) else {
            panic!("expected a post")
        };
        let seqs: Vec<u64> = req.batch.events.iter().map(|e| e.seq).collect();
        assert!(seqs.len() > queued, "{seqs:?}");
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "no number twice, none skipped"
        );
        assert!(req.batch.participant_id.starts_with("inst-4-"));
        assert!(req.batch.events.last().unwrap().full);
        d.upload_done(&req.session, crate::upload::acked(seqs), now(19.1));
        assert_eq!(d.status().queued, 0);
    }

    #[test]
    fn idle_is_said_a_while_after_the_last_call_and_later_while_uploads_wait() {
        let mut d = configured();
        d.restore(Vec::new(), now(0.0));
        d.handle(stats(4, "a", 0.0, 100.0, "host"), now(0.0));
        d.handle(stats(4, "a", 1.0, 100.0, "host"), now(1.0));
        let Effect::Post(req) = d.effects(now(1.0)).remove(0) else {
            panic!("expected a post")
        };
        let seqs = req.batch.events.iter().map(|e| e.seq).collect();
        d.upload_done(&req.session, crate::upload::acked(seqs), now(1.1));
        d.handle(ToOffscreen::TabGone { tab: 4 }, now(2.0));
        let idle = |effects: Vec<Effect>| effects.contains(&Effect::Idle);
        assert!(d.effects(now(1.0)).contains(&Effect::WakeAt(now(1.0) + IDLE_AFTER_MS)));
        assert!(!idle(d.effects(now(1.0) + IDLE_AFTER_MS - 1.0)));
        assert!(idle(d.effects(now(1.0) + IDLE_AFTER_MS)));
        assert!(!idle(d.effects(now(1.0) + IDLE_AFTER_MS + 1.0)), "said once");
        let later = now(1.0) + IDLE_AFTER_MS + IDLE_REPEAT_MS;
        assert!(idle(d.effects(later)), "and again later");

        // A new call, and the collector goes down: its events keep the document open longer.
        d.handle(stats(5, "b", 99.0, 100.0, "host"), now(99.0));
        d.handle(stats(5, "b", 100.0, 100.0, "host"), now(100.0));
        assert!(!idle(settle_failing(&mut d, now(100.0) + IDLE_AFTER_MS)));
        assert!(d.status().queued > 0);
        assert!(!idle(settle_failing(&mut d, now(100.0) + KEEP_FOR_UPLOADS_MS - 1.0)));
        assert!(idle(settle_failing(&mut d, now(100.0) + KEEP_FOR_UPLOADS_MS)));
    }
}
