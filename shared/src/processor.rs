//! The sans-IO getStats processor of one tab: snapshots in, per-interval metrics and events out.
//!
//! The shell (the offscreen document, or `collector analyze`) calls [`Processor::handle_input`]
//! with the time, the peer connection's id and its raw reports, then drains
//! [`Processor::poll_output`]. Every figure is computed between two consecutive snapshots of the
//! same connection; anything that would give a negative or a spike (first snapshot, Δt <= 0, a
//! counter going backwards, a changed SSRC) gives no sample instead.

use crate::diagnosis::{Change, Diagnosis};
use crate::emit::Emitter;
use crate::metrics::{add_opt, max_opt, mean, ConnectionInfo, Figures, PeerMetrics, RelayInfo, TabMetrics};
use crate::quality::QualityClass;
use crate::stats::{Candidate, CandidatePair, InboundRtp, MediaSource, OutboundRtp, RawReport, RemoteCandidate};
use crate::wire::Event;
use crate::wire::MetricsFields;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A connection that sent no snapshot for this long is dropped from the tab (its close was missed).
pub const STALE_PC_MS: f64 = 10_000.0;

/// What the shell hands the processor.
#[derive(Debug, Clone)]
pub enum Input {
    /// One poll of `getStats()` of one peer connection.
    Snapshot {
        now_ms: f64,
        pc: String,
        reports: Vec<RawReport>,
    },
    /// The peer connection closed: it drops out of the tab.
    Closed { pc: String },
    /// Time passed (the shell honours [`Output::NextTick`]).
    Tick { now_ms: f64 },
    /// The collector acknowledged the event with this sequence number.
    Acked { seq: u64 },
}

/// What the processor produces.
#[allow(
    clippy::large_enum_variant,
    reason = "outputs are drained right after each input, so a few large ones cost less than a box each"
)]
#[derive(Debug, Clone)]
pub enum Output {
    PeerMetrics(PeerMetrics),
    /// A finding raised or resolved (also when its connection closed or went stale).
    Finding(Change),
    TabMetrics(TabMetrics),
    /// An event the emission policy chose to send to the collector.
    Emit(Event),
    /// Call back with [`Input::Tick`] at this time.
    NextTick {
        at_ms: f64,
    },
}

/// The processor of one tab (one participant).
#[derive(Debug, Default)]
pub struct Processor {
    pcs: BTreeMap<String, PcState>,
    emitter: Emitter,
    out: VecDeque<Output>,
    latest_tab: Option<TabMetrics>,
    diagnosis: Diagnosis,
}

#[derive(Debug, Default)]
struct PcState {
    baseline: Option<Baseline>,
    latest: Option<PeerMetrics>,
    last_seen_ms: f64,
}

/// Counters of the previous snapshot, keyed by stats id.
#[derive(Debug, Default)]
struct Baseline {
    now_ms: f64,
    outbound: HashMap<String, Counter>,
    inbound: HashMap<String, Counter>,
    pairs: HashMap<String, PairCounter>,
    /// The streams' and sources' reports, for the media figures' deltas.
    out_reports: HashMap<String, OutboundRtp>,
    in_reports: HashMap<String, InboundRtp>,
    sources: HashMap<String, MediaSource>,
    transports: HashMap<String, TransportSeen>,
    /// When each selected pair last answered a check: (responses then, time ms).
    answered: HashMap<String, (f64, f64)>,
    /// ICE restarts since the connection was first polled.
    ice_restarts: u32,
    /// When the connection first read connected (or, saying no state, was first polled): a change
    /// of its selected pair is a switch only [`ICE_SETTLE_MS`] after that.
    connected_since_ms: Option<f64>,
}

/// What the previous snapshot said of a transport.
#[derive(Debug, Clone, Default)]
struct TransportSeen {
    ufrag: Option<String>,
    pair_changes: Option<f64>,
    selected: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    ssrc: Option<f64>,
    ts_ms: f64,
    bytes: f64,
    packets: Option<f64>,
    lost: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct PairCounter {
    total_rtt_s: f64,
    responses: f64,
}

mod media;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Audio,
    Video,
    Unknown,
}

fn kind_of(kind: &Option<String>, media_type: &Option<String>) -> Kind {
    match kind.as_deref().or(media_type.as_deref()) {
        Some("audio") => Kind::Audio,
        Some("video") => Kind::Video,
        _ => Kind::Unknown,
    }
}

/// Bitrate sums of one direction.
#[derive(Debug, Default)]
struct Rates {
    total: Option<f64>,
    audio: Option<f64>,
    video: Option<f64>,
}

impl Rates {
    fn add(&mut self, kind: Kind, kbps: f64) {
        self.total = add_opt(self.total, Some(kbps));
        match kind {
            Kind::Audio => self.audio = add_opt(self.audio, Some(kbps)),
            Kind::Video => self.video = add_opt(self.video, Some(kbps)),
            Kind::Unknown => {}
        }
    }
}

/// Δ of a byte counter between two snapshots of the same stream, as kbps; `None` when the
/// interval is not usable (new stream, SSRC change, counter reset, Δt <= 0).
fn rate_kbps(prev: Option<&Counter>, now: &Counter) -> Option<f64> {
    let prev = prev?;
    if prev.ssrc != now.ssrc {
        return None;
    }
    let dt_ms = now.ts_ms - prev.ts_ms;
    let d_bytes = now.bytes - prev.bytes;
    (dt_ms > 0.0 && d_bytes >= 0.0).then(|| d_bytes * 8.0 / dt_ms)
}

fn positive_u32(x: Option<f64>) -> Option<u32> {
    x.filter(|v| *v >= 0.0 && *v <= u32::MAX as f64).map(|v| v as u32)
}

impl Processor {
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest tab aggregate, if any connection has produced metrics.
    pub fn latest(&self) -> Option<&TabMetrics> {
        self.latest_tab.as_ref()
    }

    /// Number of live peer connections.
    pub fn peer_count(&self) -> usize {
        self.pcs.len()
    }

    pub fn handle_input(&mut self, input: Input) {
        match input {
            Input::Snapshot { now_ms, pc, reports } => self.snapshot(now_ms, pc, &reports),
            Input::Closed { pc } => {
                if self.pcs.remove(&pc).is_some() {
                    let at = self.latest_tab.as_ref().map_or(0.0, |t| t.at_ms);
                    self.close_findings(&pc, at);
                    self.publish_tab(at);
                    // The collector learns that the closed connection's findings ended.
                    self.offer_tab(at);
                }
            }
            Input::Tick { now_ms } => {
                if let Some(ev) = self.emitter.tick(now_ms) {
                    self.out.push_back(Output::Emit(ev));
                }
                self.schedule_tick();
            }
            Input::Acked { seq } => self.emitter.ack(seq),
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn snapshot(&mut self, now_ms: f64, pc: String, reports: &[RawReport]) {
        if !now_ms.is_finite() {
            return;
        }
        let stale: Vec<String> = self
            .pcs
            .iter()
            .filter(|(id, s)| **id != pc && now_ms - s.last_seen_ms >= STALE_PC_MS)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.pcs.remove(&id);
            self.close_findings(&id, now_ms);
        }
        let state = self.pcs.entry(pc.clone()).or_default();
        let (metrics, baseline) = compute(now_ms, &pc, reports, state.baseline.as_ref());
        state.baseline = Some(baseline);
        state.last_seen_ms = now_ms;
        if let Some(m) = metrics {
            state.latest = Some(m.clone());
            let changes = self.diagnosis.observe(&m);
            self.out.push_back(Output::PeerMetrics(m));
            self.out.extend(changes.into_iter().map(Output::Finding));
            self.publish_tab(now_ms);
            self.offer_tab(now_ms);
        }
    }

    fn schedule_tick(&mut self) {
        if let Some(at_ms) = self.emitter.next_tick_at() {
            self.out.push_back(Output::NextTick { at_ms });
        }
    }

    /// Offers the tab's latest state to the emission policy.
    fn offer_tab(&mut self, now_ms: f64) {
        if let Some(tab) = &self.latest_tab {
            if let Some(ev) = self.emitter.offer(now_ms, MetricsFields::from_tab(tab)) {
                self.out.push_back(Output::Emit(ev));
            }
        }
        self.schedule_tick();
    }

    fn close_findings(&mut self, pc: &str, now_ms: f64) {
        let changes = self.diagnosis.close(pc, now_ms);
        self.out.extend(changes.into_iter().map(Output::Finding));
    }

    fn publish_tab(&mut self, now_ms: f64) {
        let peers: Vec<PeerMetrics> = self.pcs.values().filter_map(|s| s.latest.clone()).collect();
        let mut tab = aggregate(now_ms, peers);
        tab.findings = self.diagnosis.active();
        self.latest_tab = Some(tab.clone());
        self.out.push_back(Output::TabMetrics(tab));
    }
}

/// Aggregates a tab: bitrates summed, RTT, loss and jitter averaged over connections that carry
/// media (over all when none does), relay if any connection relays.
pub fn aggregate(at_ms: f64, peers: Vec<PeerMetrics>) -> TabMetrics {
    let media: Vec<&PeerMetrics> = peers.iter().filter(|p| p.carries_media).collect();
    let basis: Vec<&PeerMetrics> = if media.is_empty() {
        peers.iter().collect()
    } else {
        media
    };
    let rtt_ms = mean(basis.iter().filter_map(|p| p.best_rtt_ms()));
    let loss_pct = mean(basis.iter().filter_map(|p| p.loss_pct()));
    let jitter_ms = mean(basis.iter().filter_map(|p| p.jitter_ms));
    let relayed = peers.iter().find(|p| p.relay.using_relay);
    let (quality, mos) = QualityClass::assess(rtt_ms, loss_pct, jitter_ms);
    TabMetrics {
        at_ms,
        figures: Figures {
            upload_kbps: peers.iter().fold(None, |acc, p| add_opt(acc, p.upload_kbps)),
            download_kbps: peers.iter().fold(None, |acc, p| add_opt(acc, p.download_kbps)),
            rtt_ms,
            loss_pct,
            jitter_ms,
            using_relay: relayed.is_some(),
            relay_protocol: relayed.and_then(|p| p.relay.protocol.clone()),
            quality,
            mos,
        },
        relay_server_url: relayed.and_then(|p| p.relay.server_url.clone()),
        peers,
        findings: Vec::new(),
    }
}

/// Computes one connection's metrics against its previous snapshot, and the new baseline.
/// The first snapshot gives metrics without rates (RTT and relay are known at once).
fn compute(now_ms: f64, pc: &str, reports: &[RawReport], prev: Option<&Baseline>) -> (Option<PeerMetrics>, Baseline) {
    let mut base = Baseline {
        now_ms,
        ..Baseline::default()
    };
    let mut m = PeerMetrics {
        pc: pc.to_string(),
        at_ms: now_ms,
        ..PeerMetrics::default()
    };
    m.interval_ms = prev.map_or(0.0, |p| now_ms - p.now_ms);

    let mut up = Rates::default();
    let mut down = Rates::default();
    let (mut lost_sum, mut recv_sum, mut loss_streams) = (0.0, 0.0, 0usize);
    let mut pairs: HashMap<&str, &CandidatePair> = HashMap::new();
    let mut locals: HashMap<&str, &Candidate> = HashMap::new();
    let mut remotes: HashMap<&str, &RemoteCandidate> = HashMap::new();
    let mut selected_ids: Vec<&str> = Vec::new();
    let mut rtcp_rtts = Vec::new();
    let mut fractions_lost = Vec::new();
    let mut outs: Vec<media::Out<'_>> = Vec::new();
    let mut ins: Vec<media::In<'_>> = Vec::new();
    let mut sources: HashMap<&str, &MediaSource> = HashMap::new();
    let mut transports: Vec<&crate::stats::Transport> = Vec::new();
    base.ice_restarts = prev.map_or(0, |p| p.ice_restarts);

    for report in reports {
        match report {
            RawReport::OutboundRtp(o) => {
                let (Some(id), Some(bytes)) = (&o.id, o.bytes_sent) else {
                    continue;
                };
                let c = Counter {
                    ssrc: o.ssrc,
                    ts_ms: o.timestamp.unwrap_or(now_ms),
                    bytes,
                    packets: o.packets_sent,
                    lost: None,
                };
                m.carries_media = true;
                let kind = kind_of(&o.kind, &o.media_type);
                let kbps = rate_kbps(prev.and_then(|p| p.outbound.get(id)), &c);
                if let Some(kbps) = kbps {
                    up.add(kind, kbps);
                }
                base.outbound.insert(id.clone(), c);
                let before = prev.and_then(|p| p.out_reports.get(id)).filter(|b| b.ssrc == o.ssrc);
                outs.push(media::Out {
                    now: o,
                    prev: before,
                    kind,
                    kbps,
                });
                base.out_reports.insert(id.clone(), o.clone());
            }
            RawReport::InboundRtp(i) => {
                let (Some(id), Some(bytes)) = (&i.id, i.bytes_received) else {
                    continue;
                };
                let c = Counter {
                    ssrc: i.ssrc,
                    ts_ms: i.timestamp.unwrap_or(now_ms),
                    bytes,
                    packets: i.packets_received,
                    lost: i.packets_lost,
                };
                m.carries_media = true;
                let kind = kind_of(&i.kind, &i.media_type);
                let before = prev.and_then(|p| p.inbound.get(id));
                if let Some(kbps) = rate_kbps(before, &c) {
                    down.add(kind, kbps);
                    let p = before.expect("a rate implies a baseline");
                    if let (Some(r0), Some(r1), Some(l0), Some(l1)) = (p.packets, c.packets, p.lost, c.lost) {
                        let d_recv = r1 - r0;
                        if d_recv >= 0.0 {
                            // packetsLost may decrease (late duplicates): such an interval lost nothing.
                            lost_sum += (l1 - l0).max(0.0);
                            recv_sum += d_recv;
                            loss_streams += 1;
                        }
                    }
                }
                if let Some(j) = i.jitter.filter(|j| *j >= 0.0) {
                    m.jitter_ms = max_opt(m.jitter_ms, Some(j * 1000.0));
                }
                base.inbound.insert(id.clone(), c);
                let before = prev.and_then(|p| p.in_reports.get(id)).filter(|b| b.ssrc == i.ssrc);
                ins.push(media::In {
                    now: i,
                    prev: before,
                    kind,
                });
                base.in_reports.insert(id.clone(), i.clone());
            }
            RawReport::MediaSource(source) => {
                if let Some(id) = &source.id {
                    sources.insert(id, source);
                    base.sources.insert(id.clone(), source.clone());
                }
            }
            RawReport::PeerConnection(state) => {
                m.connection.state.clone_from(&state.connection_state);
                m.connection.ice_state.clone_from(&state.ice_connection_state);
            }
            RawReport::RemoteInboundRtp(r) => {
                if let Some(rtt) = r.round_trip_time.filter(|v| *v >= 0.0) {
                    rtcp_rtts.push(rtt * 1000.0);
                }
                if let Some(f) = r.fraction_lost.filter(|v| *v >= 0.0) {
                    fractions_lost.push(f.min(1.0) * 100.0);
                }
            }
            RawReport::CandidatePair(p) => {
                if let Some(id) = &p.id {
                    pairs.insert(id, p);
                }
            }
            RawReport::LocalCandidate(c) => {
                if let Some(id) = &c.id {
                    locals.insert(id, c);
                }
            }
            RawReport::RemoteCandidate(c) => {
                if let Some(id) = &c.id {
                    remotes.insert(id, c);
                }
            }
            RawReport::Transport(t) => {
                if let Some(id) = &t.selected_candidate_pair_id {
                    selected_ids.push(id);
                }
                transports.push(t);
            }
            RawReport::Other => {}
        }
    }

    // The selected pair: the transport's selectedCandidatePairId, else a nominated pair that
    // succeeded, else Firefox's `selected`. Never the last pair in the list.
    let mut selected: Vec<&CandidatePair> = selected_ids.iter().filter_map(|id| pairs.get(id).copied()).collect();
    if selected.is_empty() {
        selected = pairs
            .values()
            .copied()
            .filter(|p| {
                p.selected == Some(true) || (p.nominated == Some(true) && p.state.as_deref() == Some("succeeded"))
            })
            .collect();
        selected.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let mut pair_rtts = Vec::new();
    for pair in &selected {
        let id = pair.id.as_deref().unwrap_or_default();
        let interval_rtt = match (
            prev.and_then(|p| p.pairs.get(id)),
            pair.total_rtt_s(),
            pair.responses_received,
        ) {
            (Some(p0), Some(total), Some(resp)) if resp > p0.responses && total >= p0.total_rtt_s => {
                Some((total - p0.total_rtt_s) / (resp - p0.responses) * 1000.0)
            }
            _ => None,
        };
        if let Some(rtt) = interval_rtt.or(pair.current_round_trip_time.filter(|v| *v >= 0.0).map(|s| s * 1000.0)) {
            pair_rtts.push(rtt);
        }
        if let Some(resp) = pair.responses_received {
            let answered_at = match prev.and_then(|p| p.answered.get(id)) {
                Some(&(before, at)) if resp <= before => at,
                _ => now_ms,
            };
            base.answered.insert(id.to_string(), (resp, answered_at));
            m.connection.since_response_ms = max_opt(m.connection.since_response_ms, Some(now_ms - answered_at));
        }
        let kbps = |bps: Option<f64>| bps.filter(|b| *b >= 0.0).map(|b| b / 1000.0);
        m.available_out_kbps = max_opt(m.available_out_kbps, kbps(pair.available_outgoing_bitrate));
        m.available_in_kbps = max_opt(m.available_in_kbps, kbps(pair.available_incoming_bitrate));
        if let (Some(total), Some(resp)) = (pair.total_rtt_s(), pair.responses_received) {
            base.pairs.insert(
                id.to_string(),
                PairCounter {
                    total_rtt_s: total,
                    responses: resp,
                },
            );
        }
        let local = pair.local_candidate_id.as_deref().and_then(|id| locals.get(id));
        let remote = pair.remote_candidate_id.as_deref().and_then(|id| remotes.get(id));
        let local_relay =
            local.is_some_and(|c| c.candidate_type.as_deref() == Some("relay") || c.relay_protocol.is_some());
        let remote_relay = remote.is_some_and(|c| c.candidate_type.as_deref() == Some("relay"));
        if (local_relay || remote_relay) && !m.relay.using_relay {
            m.relay = RelayInfo {
                using_relay: true,
                protocol: local.and_then(|c| c.relay_protocol.clone()),
                server_url: local.and_then(|c| c.url.clone()),
            };
        }
    }

    m.rtt_ms = mean(pair_rtts.into_iter());
    m.rtcp_rtt_ms = mean(rtcp_rtts.into_iter());
    m.loss_out_pct = mean(fractions_lost.into_iter());
    m.loss_in_pct = (loss_streams > 0 && lost_sum + recv_sum > 0.0).then(|| lost_sum / (lost_sum + recv_sum) * 100.0);
    (m.upload_kbps, m.upload_audio_kbps, m.upload_video_kbps) = (up.total, up.audio, up.video);
    (m.download_kbps, m.download_audio_kbps, m.download_video_kbps) = (down.total, down.audio, down.video);
    m.video_in = media::received_video(&ins);
    m.video_out = media::sent_video(&outs, &sources);
    m.audio_in = media::received_audio(&ins);
    m.audio_out = media::sent_audio(&outs, &sources, prev.map(|p| &p.sources));
    m.target_kbps = media::target_kbps(&outs);
    base.connected_since_ms = prev
        .and_then(|p| p.connected_since_ms)
        .or(connected(&m.connection).then_some(now_ms));
    link_changes(&mut m.connection, &mut base, &transports, prev);
    (m.quality, m.mos) = QualityClass::assess(m.best_rtt_ms(), m.loss_pct(), m.jitter_ms);
    m.audio_mos = m.audio_in.as_ref().and_then(|a| {
        let buffer = a.jitter_buffer_ms.or(m.jitter_ms.map(|j| 2.0 * j))?;
        let one_way = m.best_rtt_ms()? / 2.0 + buffer + 20.0;
        Some((crate::quality::audio_mos(one_way, a.concealed_pct?) * 100.0).round() / 100.0)
    });

    let usable = prev.is_none_or(|p| now_ms > p.now_ms);
    if !usable {
        // Time went backwards or stood still: report nothing for this interval, restart from here.
        return (None, base);
    }
    (Some(m), base)
}

/// How long a connection is connected before a change of its selected pair counts as a switch, ms.
/// The same span as the diagnosis's `PATH_SETTLE_MS` (from a connection's first interval): an
/// ICE restart after 6 s of a recording with no ufrag to show it (the `ice-restart` fixture)
/// must still count.
const ICE_SETTLE_MS: f64 = 5_000.0;

/// Whether the connection reads connected (its state, else its ICE state; with neither, as if so).
fn connected(c: &ConnectionInfo) -> bool {
    match (c.state.as_deref(), c.ice_state.as_deref()) {
        (Some(state), _) => state == "connected",
        (None, Some(ice)) => matches!(ice, "connected" | "completed"),
        (None, None) => true,
    }
}

/// ICE restarts (a transport's local ufrag changed) and selected-pair switches since `prev`.
fn link_changes(
    connection: &mut ConnectionInfo,
    base: &mut Baseline,
    transports: &[&crate::stats::Transport],
    prev: Option<&Baseline>,
) {
    for t in transports {
        let Some(id) = &t.id else {
            continue;
        };
        let now = TransportSeen {
            ufrag: t.ice_local_username_fragment.clone(),
            pair_changes: t.selected_candidate_pair_changes,
            selected: t.selected_candidate_pair_id.clone(),
        };
        if let Some(before) = prev.and_then(|p| p.transports.get(id)) {
            let restarted = before.ufrag.is_some() && now.ufrag.is_some() && before.ufrag != now.ufrag;
            if restarted {
                base.ice_restarts += 1;
            }
            // Only a move from a selected pair of a settled connection (or one an ICE restart
            // makes) is a switch. Before its first pair the transport reads 0 changes and none
            // selected, and Chromium counts the first selection as one or two changes; in its first
            // seconds connected, ICE may still move to a better pair (an SFU nominating
            // aggressively, a direct pair found after a relayed one). A connection polled while
            // being set up (often so with an SFU, whose signalling takes round trips) would
            // otherwise look unstable.
            let settled = prev
                .and_then(|p| p.connected_since_ms)
                .is_some_and(|since| base.now_ms - since >= ICE_SETTLE_MS);
            let switches = match (
                settled || restarted,
                &before.selected,
                before.pair_changes,
                now.pair_changes,
            ) {
                (false, ..) | (true, None, ..) => 0,
                (true, Some(_), Some(a), Some(b)) if b >= a => (b - a).min(u32::MAX as f64) as u32,
                (true, Some(_), ..) => u32::from(now.selected.is_some() && before.selected != now.selected),
            };
            connection.pair_switches = connection.pair_switches.saturating_add(switches);
        }
        base.transports.insert(id.clone(), now);
    }
    connection.ice_restarts = base.ice_restarts;
}

impl CandidatePair {
    fn total_rtt_s(&self) -> Option<f64> {
        self.total_round_trip_time.filter(|v| *v >= 0.0)
    }
}

#[cfg(test)]
mod tests;
