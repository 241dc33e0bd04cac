//! Simulation tests of the emission policy: hours of fluctuating input in simulated time, checked against issue 3's rules.
//!
//! The rules are restated here independently of `emit.rs` (the oracle below), so a policy bug
//! fails them: an event is due when it is the first, the quality class or relay use changed, the
//! total bitrate moved by more than 50 %, loss crossed 5 % or 15 s passed since the last event;
//! never more than 10 events in any 60 s window; a due event that meets the cap goes out as soon
//! as the window allows with the latest state; deltas carry exactly the changed fields; a full
//! snapshot follows any event that was not acknowledged.

use vitals_shared::emit::Emitter;
use vitals_shared::processor::{Input, Output, Processor};
use vitals_shared::stats::{Candidate, CandidatePair, InboundRtp, OutboundRtp, RawReport, Transport};
use vitals_shared::wire::Event;
use vitals_shared::wire::MetricsFields;
use vitals_shared::QualityClass;

const WINDOW_MS: f64 = 60_000.0;
const MAX_EVENTS: usize = 10;
/// Of the 10, the sends only urgent events may use (a finding or relay change, the first).
const RESERVED: usize = 3;

/// Whether `state` is urgent against the last event sent.
fn urgent(last: Option<&(f64, MetricsFields)>, state: &MetricsFields) -> bool {
    last.is_none_or(|(_, sent)| sent.findings != state.findings || sent.using_relay != state.using_relay)
}

/// How many sends the window may hold for `state` to go.
fn limit(last: Option<&(f64, MetricsFields)>, state: &MetricsFields) -> usize {
    if urgent(last, state) {
        MAX_EVENTS
    } else {
        MAX_EVENTS - RESERVED
    }
}
const HEARTBEAT_MS: f64 = 15_000.0;

/// SplitMix64: a seeded, dependency-free PRNG so every run replays the same input.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() % items.len() as u64) as usize]
    }
}

const CLASSES: [QualityClass; 4] = [
    QualityClass::Excellent,
    QualityClass::Good,
    QualityClass::Fair,
    QualityClass::Poor,
];

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn total_kbps(m: &MetricsFields) -> f64 {
    m.upload_kbps.unwrap_or(0.0) + m.download_kbps.unwrap_or(0.0)
}

fn above_loss(m: &MetricsFields) -> bool {
    m.loss_pct.unwrap_or(0.0) > 5.0
}

/// The trigger list, against the state and time of the last event sent.
fn due(now_ms: f64, last: Option<&(f64, MetricsFields)>, state: &MetricsFields) -> bool {
    let Some((sent_ms, sent)) = last else {
        return true;
    };
    let (before, now) = (total_kbps(sent), total_kbps(state));
    let bitrate_moved = if before > 0.0 {
        (now - before).abs() / before > 0.5
    } else {
        now > 0.0
    };
    state.quality != sent.quality
        || state.using_relay != sent.using_relay
        || state.findings != sent.findings
        || bitrate_moved
        || above_loss(state) != above_loss(sent)
        || now_ms - sent_ms >= HEARTBEAT_MS
}

/// What a phase of the simulated call does to the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Quality, relay, bitrate and loss jump at random on every sample.
    Flapping,
    /// Quality and relay fixed, bitrate within ±15 %, loss on one side of 5 %: only heartbeats.
    Quiet,
    /// Bitrate swings and loss crossing 5 %, quality and relay fixed.
    Swinging,
}

/// The input side of a simulation: the state of the call over time.
struct Call {
    rng: Rng,
    phase: Phase,
    phase_ends_ms: f64,
    quality: QualityClass,
    relay: bool,
    base_kbps: f64,
    high_loss: bool,
    rtt_known: bool,
}

impl Call {
    fn new(seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            phase: Phase::Quiet,
            phase_ends_ms: 0.0,
            quality: QualityClass::Good,
            relay: false,
            base_kbps: 1000.0,
            high_loss: false,
            rtt_known: true,
        }
    }

    /// Starts a new phase at `now_ms` if the current one ended; returns the phase that ended.
    fn advance(&mut self, now_ms: f64) -> Option<(Phase, f64)> {
        if now_ms < self.phase_ends_ms {
            return None;
        }
        let ended = (self.phase, self.phase_ends_ms);
        let r = &mut self.rng;
        self.phase = r.pick(&[Phase::Flapping, Phase::Flapping, Phase::Quiet, Phase::Swinging]);
        let length_ms = match self.phase {
            Phase::Flapping => r.range(5_000.0, 240_000.0),
            Phase::Quiet => r.range(30_000.0, 300_000.0),
            Phase::Swinging => r.range(20_000.0, 180_000.0),
        };
        self.phase_ends_ms = now_ms + length_ms;
        self.quality = r.pick(&CLASSES);
        self.relay = r.chance(0.4);
        self.base_kbps = r.range(30.0, 4000.0);
        self.high_loss = r.chance(0.3);
        self.rtt_known = r.chance(0.9);
        Some(ended)
    }

    fn sample(&mut self) -> MetricsFields {
        let r = &mut self.rng;
        let (kbps, loss) = match self.phase {
            Phase::Flapping => {
                self.quality = r.pick(&CLASSES);
                if r.chance(0.3) {
                    self.relay = !self.relay;
                }
                (r.range(0.0, 5000.0), r.range(0.0, 12.0))
            }
            Phase::Quiet => {
                let loss = if self.high_loss {
                    r.range(5.5, 9.0)
                } else {
                    r.range(0.0, 4.5)
                };
                (self.base_kbps * r.range(0.87, 1.15), loss)
            }
            Phase::Swinging => (self.base_kbps * r.range(0.2, 3.0), r.range(2.0, 8.0)),
        };
        let protocol = r.pick(&["udp", "tcp", "tls"]);
        MetricsFields {
            upload_kbps: Some(round1(kbps * 0.4)),
            download_kbps: Some(round1(kbps * 0.6)),
            // Sometimes unknown (no selected pair yet): a delta cannot say so.
            rtt_ms: self.rtt_known.then(|| round1(r.range(5.0, 600.0))),
            loss_pct: Some((loss * 100.0).round() / 100.0),
            jitter_ms: Some(round1(r.range(0.0, 40.0))),
            quality: Some(self.quality),
            mos: Some((r.range(1.0, 4.5) * 100.0).round() / 100.0),
            using_relay: Some(self.relay),
            relay_protocol: self.relay.then(|| protocol.to_string()),
            relay_server: self.relay.then(|| "turn.example.com".to_string()),
            findings: Some(if self.high_loss { "packet-loss" } else { "" }.to_string()),
        }
    }
}

/// Counts of what a run exercised, so that a run that tested nothing fails.
#[derive(Debug, Default)]
struct Seen {
    offers: usize,
    events: usize,
    deltas: usize,
    full_after_unacked: usize,
    full_for_unknown: usize,
    capped: usize,
    released_by_tick: usize,
    lost_deliveries: usize,
    quiet_period_checks: usize,
}

/// The emitter under test plus the collector's view and the bookkeeping the checks need.
struct Harness {
    emitter: Emitter,
    rng: Rng,
    sends_ms: Vec<f64>,
    last_seq: u64,
    /// Time and state of the last event sent (whatever became of it).
    last_sent: Option<(f64, MetricsFields)>,
    /// The last event sent has been acknowledged.
    acked: bool,
    /// Acks on their way back: (arrival time, seq).
    acks: Vec<(f64, u64)>,
    /// The collector's merge of the events it received.
    collector: Option<MetricsFields>,
    /// The latest state offered and when.
    current: Option<(f64, MetricsFields)>,
    /// A due event met the cap and has not gone out yet.
    owed: bool,
    seen: Seen,
}

impl Harness {
    fn new(seed: u64) -> Self {
        Self {
            emitter: Emitter::default(),
            rng: Rng(seed ^ 0xACC5),
            sends_ms: Vec::new(),
            last_seq: 0,
            last_sent: None,
            acked: false,
            acks: Vec::new(),
            collector: None,
            current: None,
            owed: false,
            seen: Seen::default(),
        }
    }

    /// Events sent in the 60 s window ending at `now_ms` (half-open: `(now - 60 s, now]`).
    fn in_window(&self, now_ms: f64) -> usize {
        self.sends_ms.iter().filter(|t| **t + WINDOW_MS > now_ms).count()
    }

    /// Runs the acks and the ticks the emitter asked for, in time order, up to `until_ms`.
    fn run_until(&mut self, until_ms: f64) {
        loop {
            let tick = self.emitter.next_tick_at().filter(|at| *at <= until_ms);
            let ack = self
                .acks
                .iter()
                .map(|(at, _)| *at)
                .filter(|at| *at <= until_ms)
                .min_by(f64::total_cmp);
            match (tick, ack) {
                (Some(t), a) if a.is_none_or(|a| t < a) => {
                    assert!(self.owed, "a tick was asked for at {t} with nothing owed");
                    let ev = self
                        .emitter
                        .tick(t)
                        .unwrap_or_else(|| panic!("tick at next_tick_at = {t} sent nothing"));
                    self.seen.released_by_tick += 1;
                    self.sent(t, ev);
                    self.check_nothing_lost(t);
                }
                (_, Some(a)) => {
                    let i = self.acks.iter().position(|(at, _)| *at == a).unwrap();
                    let (_, seq) = self.acks.remove(i);
                    self.emitter.ack(seq);
                    if seq == self.last_seq {
                        self.acked = true;
                    }
                }
                (None, None) => return,
                (Some(_), None) => unreachable!(),
            }
        }
    }

    fn offer(&mut self, now_ms: f64, state: MetricsFields) {
        self.run_until(now_ms);
        self.seen.offers += 1;
        let is_due = due(now_ms, self.last_sent.as_ref(), &state);
        let room = self.in_window(now_ms) < limit(self.last_sent.as_ref(), &state);
        self.current = Some((now_ms, state));
        let ev = self.emitter.offer(now_ms, self.current.clone().unwrap().1);
        assert_eq!(
            ev.is_some(),
            is_due && room,
            "at {now_ms}: due {is_due}, room {room}, but the emitter sent {ev:?}"
        );
        match ev {
            Some(ev) => self.sent(now_ms, ev),
            None if is_due => {
                self.owed = true;
                self.seen.capped += 1;
            }
            None => {}
        }
        self.check_nothing_lost(now_ms);
    }

    /// Checks one event just sent at `now_ms`, delivers it (or not) and schedules its ack.
    fn sent(&mut self, now_ms: f64, ev: Event) {
        let (measured_ms, state) = self.current.clone().expect("an event before any state");
        self.seen.events += 1;
        assert_eq!(ev.seq, self.last_seq + 1, "sequence numbers are consecutive");
        assert_eq!(ev.ts_ms, measured_ms, "an event carries the time of its state");
        self.sends_ms.push(now_ms);
        let n = self.sends_ms.len();
        if n > MAX_EVENTS {
            let first = self.sends_ms[n - 1 - MAX_EVENTS];
            assert!(
                now_ms - first >= WINDOW_MS,
                "11 events within {} ms (from {first} to {now_ms})",
                now_ms - first
            );
        }
        match &self.last_sent {
            Some((_, before)) if self.acked => {
                let delta = state.changed_since(before);
                let mut applied = before.clone();
                applied.merge(&delta, false);
                if applied == state {
                    assert!(!ev.full, "seq {}: previous acked, a delta was possible", ev.seq);
                    assert_eq!(ev.metrics, delta, "a delta carries exactly the changed fields");
                    self.seen.deltas += 1;
                } else {
                    assert!(
                        ev.full,
                        "seq {}: a field became unknown, a full snapshot is due",
                        ev.seq
                    );
                    self.seen.full_for_unknown += 1;
                }
            }
            _ => {
                assert!(
                    ev.full,
                    "seq {}: first or previous not acknowledged, but a delta",
                    ev.seq
                );
                if self.last_sent.is_some() {
                    self.seen.full_after_unacked += 1;
                }
            }
        }
        if ev.full {
            assert_eq!(ev.metrics, state, "a full snapshot carries the whole state");
        }
        // The network: 7 % of events never arrive, 15 % of acks are lost, the rest come back late.
        if self.rng.chance(0.93) {
            let view = self.collector.get_or_insert_with(MetricsFields::default);
            view.merge(&ev.metrics, ev.full);
            assert_eq!(
                view, &state,
                "seq {}: the collector's merge is not the state sent",
                ev.seq
            );
            if self.rng.chance(0.85) {
                let delay_ms = self.rng.range(20.0, 4000.0);
                self.acks.push((now_ms + delay_ms, ev.seq));
            }
        } else {
            self.seen.lost_deliveries += 1;
        }
        self.last_seq = ev.seq;
        self.acked = false;
        self.owed = false;
        self.last_sent = Some((now_ms, state));
    }

    /// A quality or relay change not yet sent is only excused by a full window.
    fn check_nothing_lost(&self, now_ms: f64) {
        let (Some((_, sent)), Some((_, now))) = (&self.last_sent, &self.current) else {
            return;
        };
        if sent.quality != now.quality || sent.using_relay != now.using_relay || sent.findings != now.findings {
            let limit = limit(self.last_sent.as_ref(), now);
            assert!(
                self.in_window(now_ms) >= limit,
                "at {now_ms}: quality/relay/findings change waits although the window has room ({} of {limit})",
                self.in_window(now_ms)
            );
        }
    }

    /// At the end of a quiet period the last event sent holds the current quality and relay.
    fn check_quiet_period_end(&mut self, now_ms: f64) {
        self.run_until(now_ms);
        let sent = &self.last_sent.as_ref().expect("events were sent").1;
        let now = &self.current.as_ref().expect("states were offered").1;
        assert_eq!(
            (sent.quality, sent.using_relay),
            (now.quality, now.using_relay),
            "at {now_ms}, the end of a quiet period, the last event sent is stale"
        );
        self.seen.quiet_period_checks += 1;
    }
}

/// Runs `hours` of a call: samples every 0.3 to 2.5 s, now and then a silence of up to 90 s
/// (a throttled tab), during which only the emitter's own ticks run.
fn simulate(seed: u64, hours: f64) -> Seen {
    let mut call = Call::new(seed);
    let mut h = Harness::new(seed);
    let mut rng = Rng(seed.wrapping_mul(31));
    let start_ms = 1_700_000_000_000.0 + seed as f64 * 0.123;
    let end_ms = start_ms + hours * 3_600_000.0;
    let mut now_ms = start_ms;
    let mut phase_started_ms = now_ms;
    while now_ms < end_ms {
        if let Some((ended, ended_ms)) = call.advance(now_ms) {
            if ended == Phase::Quiet && ended_ms - phase_started_ms >= WINDOW_MS + 1000.0 {
                h.check_quiet_period_end(now_ms);
            }
            phase_started_ms = now_ms;
        }
        h.offer(now_ms, call.sample());
        now_ms += if rng.chance(0.01) {
            rng.range(10_000.0, 90_000.0)
        } else {
            round1(rng.range(300.0, 2500.0))
        };
    }
    h.run_until(end_ms + 2.0 * WINDOW_MS);
    let sent = &h.last_sent.as_ref().unwrap().1;
    let now = &h.current.as_ref().unwrap().1;
    assert_eq!(
        (sent.quality, sent.using_relay),
        (now.quality, now.using_relay),
        "the last change never went out"
    );
    h.seen
}

#[test]
fn hours_of_fluctuating_input_keep_every_rule() {
    let mut total = Seen::default();
    for seed in 1..=6 {
        let seen = simulate(seed, 3.0);
        total.offers += seen.offers;
        total.events += seen.events;
        total.deltas += seen.deltas;
        total.full_after_unacked += seen.full_after_unacked;
        total.full_for_unknown += seen.full_for_unknown;
        total.capped += seen.capped;
        total.released_by_tick += seen.released_by_tick;
        total.lost_deliveries += seen.lost_deliveries;
        total.quiet_period_checks += seen.quiet_period_checks;
    }
    // The run must have met every situation the rules are about.
    assert!(total.offers > 20_000, "{total:?}");
    assert!(total.deltas > 1000, "{total:?}");
    assert!(total.full_after_unacked > 100, "{total:?}");
    assert!(total.full_for_unknown > 10, "{total:?}");
    assert!(total.capped > 1000, "{total:?}");
    assert!(total.released_by_tick > 100, "{total:?}");
    assert!(total.lost_deliveries > 50, "{total:?}");
    assert!(total.quiet_period_checks > 20, "{total:?}");
}

#[test]
fn relentless_flapping_never_exceeds_the_cap_and_loses_no_change() {
    // Quality and relay change on every sample, five samples a second, for two hours.
    let mut h = Harness::new(99);
    let mut rng = Rng(7);
    let t0 = 1_700_000_000_000.0;
    let mut relay = false;
    for i in 0..(2 * 3600 * 5) {
        let now_ms = t0 + i as f64 * 200.0;
        relay ^= rng.chance(0.5);
        let state = MetricsFields {
            upload_kbps: Some(round1(rng.range(0.0, 3000.0))),
            quality: Some(CLASSES[i % 4]),
            using_relay: Some(relay),
            loss_pct: Some(round1(rng.range(0.0, 10.0))),
            ..Default::default()
        };
        h.offer(now_ms, state);
    }
    // Every window is full: exactly 10 events a minute.
    assert_eq!(h.seen.events, 2 * 60 * MAX_EVENTS);
    h.check_quiet_period_end(t0 + 2.0 * 3_600_000.0 + WINDOW_MS);
}

/// One peer connection's getStats snapshot: steady counters at `kbps`, the given RTT and loss,
/// over a pair whose local candidate is a relay or not.
fn reports(t_s: f64, kbps: f64, rtt_s: f64, lost: f64, relay: bool) -> Vec<RawReport> {
    let bytes = kbps * 125.0 * t_s;
    let ts = t_s * 1000.0;
    vec![
        RawReport::OutboundRtp(OutboundRtp {
            id: Some("O1".into()),
            timestamp: Some(ts),
            ssrc: Some(1.0),
            kind: Some("video".into()),
            bytes_sent: Some(bytes),
            packets_sent: Some(t_s * 100.0),
            ..Default::default()
        }),
        RawReport::InboundRtp(InboundRtp {
            id: Some("I1".into()),
            timestamp: Some(ts),
            ssrc: Some(2.0),
            kind: Some("video".into()),
            bytes_received: Some(bytes),
            packets_received: Some(t_s * 100.0),
            packets_lost: Some(lost),
            ..Default::default()
        }),
        RawReport::Transport(Transport {
            id: Some("T1".into()),
            selected_candidate_pair_id: Some("CP1".into()),
            ..Default::default()
        }),
        RawReport::CandidatePair(CandidatePair {
            id: Some("CP1".into()),
            local_candidate_id: Some("L1".into()),
            remote_candidate_id: Some("R1".into()),
            state: Some("succeeded".into()),
            nominated: Some(true),
            current_round_trip_time: Some(rtt_s),
            ..Default::default()
        }),
        RawReport::LocalCandidate(Candidate {
            id: Some("L1".into()),
            candidate_type: Some(if relay { "relay" } else { "host" }.into()),
            relay_protocol: relay.then(|| "udp".into()),
            url: relay.then(|| "turn:turn.example.com:3478".into()),
        }),
    ]
}

/// The processor with a shell around it: the timer honours `Output::NextTick`, most events are
/// acknowledged, and the collector merges what it gets.
struct Shell {
    p: Processor,
    rng: Rng,
    collector: MetricsFields,
    sends_ms: Vec<f64>,
    tick_at: Option<f64>,
    released_by_tick: usize,
}

impl Shell {
    fn drain(&mut self, now_ms: f64) {
        let mut acks = Vec::new();
        while let Some(out) = self.p.poll_output() {
            match out {
                Output::Emit(ev) => {
                    self.sends_ms.push(now_ms);
                    let n = self.sends_ms.len();
                    if n > MAX_EVENTS {
                        let first = self.sends_ms[n - 1 - MAX_EVENTS];
                        assert!(now_ms - first >= WINDOW_MS, "cap broken at {now_ms}");
                    }
                    self.collector.merge(&ev.metrics, ev.full);
                    if self.rng.chance(0.8) {
                        acks.push(ev.seq);
                    }
                }
                Output::NextTick { at_ms } => self.tick_at = Some(at_ms),
                Output::PeerMetrics(_) | Output::TabMetrics(_) | Output::Finding(_) => {}
            }
        }
        for seq in acks {
            self.p.handle_input(Input::Acked { seq });
        }
    }

    /// Fires the timer if it is due by `now_ms`.
    fn timers(&mut self, now_ms: f64) {
        if let Some(at) = self.tick_at.filter(|at| *at <= now_ms) {
            self.tick_at = None;
            let before = self.sends_ms.len();
            self.p.handle_input(Input::Tick { now_ms: at });
            self.drain(at);
            self.released_by_tick += self.sends_ms.len() - before;
        }
    }
}

#[test]
fn the_processor_honours_its_ticks_so_no_change_is_lost() {
    // The whole pipeline: snapshots with flapping RTT, loss, bitrate and relay for two minutes,
    // then a quiet minute, for three hours. Checked: the cap over every window, and after each
    // quiet minute the collector's merge holds the tab's current quality and relay.
    let mut rng = Rng(2024);
    let mut shell = Shell {
        p: Processor::new(),
        rng: Rng(4048),
        collector: MetricsFields::default(),
        sends_ms: Vec::new(),
        tick_at: None,
        released_by_tick: 0,
    };
    let mut checks = 0;
    let mut lost = 0.0;
    let mut t_s = 1.0;
    for minute in 0..180 {
        let flapping = minute % 3 != 2;
        let (quiet_rtt_s, quiet_relay) = (rng.pick(&[0.02, 0.15, 0.3, 0.6]), rng.chance(0.5));
        for _ in 0..60 {
            let now_ms = t_s * 1000.0;
            shell.timers(now_ms);
            let (rtt_s, relay, kbps) = if flapping {
                (
                    rng.pick(&[0.02, 0.15, 0.3, 0.6]),
                    rng.chance(0.5),
                    rng.range(50.0, 3000.0),
                )
            } else {
                (quiet_rtt_s, quiet_relay, 800.0)
            };
            shell.p.handle_input(Input::Snapshot {
                now_ms,
                pc: "pc1".into(),
                reports: reports(t_s, kbps, rtt_s, lost, relay),
            });
            shell.drain(now_ms);
            lost += if flapping { rng.range(0.0, 8.0) } else { 0.0 };
            t_s += 1.0;
        }
        if !flapping {
            shell.timers(t_s * 1000.0);
            let tab = MetricsFields::from_tab(shell.p.latest().expect("metrics"));
            assert_eq!(
                (shell.collector.quality, shell.collector.using_relay),
                (tab.quality, tab.using_relay),
                "minute {minute}: after a quiet minute the collector is stale"
            );
            checks += 1;
        }
    }
    assert_eq!(checks, 60);
    assert!(
        shell.released_by_tick > 10,
        "the cap was never met: {}",
        shell.released_by_tick
    );
}
