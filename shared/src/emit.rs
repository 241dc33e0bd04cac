//! The emission policy: which tab states become events for the collector, and when.
//!
//! An event is due when it is the first, the quality class changed, relay use started or
//! stopped, a finding was raised or resolved, total bitrate moved by more than 50 %, loss crossed
//! 5 %, or 15 s passed. Never more than 10 events in any 60 s window: a due event that meets the
//! cap waits, and is sent with the latest state as soon as the window allows. The last 3 of the
//! 10 are kept for urgent events (the first, a finding raised or resolved, relay use started or
//! stopped): a call whose figures swing cannot spend the budget that tells the collector a
//! finding ended.
//!
//! The window is half-open: an event sent at `t` stops counting at `t + window_ms`, which is
//! exactly when [`Emitter::next_tick_at`] asks to be called back.

use crate::wire::{Event, MetricsFields};
use std::collections::VecDeque;

/// The policy's knobs.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_events: usize,
    pub window_ms: f64,
    pub heartbeat_ms: f64,
    /// Relative change of total bitrate that counts as significant.
    pub bitrate_change: f64,
    pub loss_threshold_pct: f64,
    /// Of `max_events`, how many only urgent events may use.
    pub reserved_for_urgent: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_events: 10,
            window_ms: 60_000.0,
            heartbeat_ms: 15_000.0,
            bitrate_change: 0.5,
            loss_threshold_pct: 5.0,
            reserved_for_urgent: 3,
        }
    }
}

/// The per-participant emission state machine.
#[derive(Debug, Default)]
pub struct Emitter {
    policy: Policy,
    last_seq: u64,
    /// Send times inside the current window.
    sent_at: VecDeque<f64>,
    /// The state the collector holds once it has the last event, and when it was sent.
    last_sent: Option<(f64, MetricsFields)>,
    /// The last event was acknowledged.
    last_acked: bool,
    /// A due event met the cap and waits.
    pending: bool,
    /// The latest state offered and when it was measured.
    latest: Option<(f64, MetricsFields)>,
}

fn total_kbps(m: &MetricsFields) -> f64 {
    m.upload_kbps.unwrap_or(0.0) + m.download_kbps.unwrap_or(0.0)
}

impl Emitter {
    pub fn with_policy(policy: Policy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// A new state was measured; returns the event to send now, if any.
    pub fn offer(&mut self, now_ms: f64, state: MetricsFields) -> Option<Event> {
        let due = self.is_due(now_ms, &state);
        self.latest = Some((now_ms, state));
        self.pending |= due;
        self.try_send(now_ms)
    }

    /// Time passed: sends a waiting event if the window now allows it.
    pub fn tick(&mut self, now_ms: f64) -> Option<Event> {
        self.try_send(now_ms)
    }

    /// When a waiting event can go out, if one waits.
    pub fn next_tick_at(&self) -> Option<f64> {
        if !self.pending {
            return None;
        }
        let (len, limit) = (self.sent_at.len(), self.limit());
        // When the window holds fewer than `limit` sends: the (len - limit + 1)-th oldest left.
        (len >= limit).then(|| self.sent_at[len - limit] + self.policy.window_ms)
    }

    /// Whether the latest state is urgent: the first, a finding raised or resolved, or relay
    /// use started or stopped since the last event.
    fn urgent(&self) -> bool {
        match (&self.last_sent, &self.latest) {
            (Some((_, sent)), Some((_, now))) => sent.findings != now.findings || sent.using_relay != now.using_relay,
            _ => true,
        }
    }

    /// How many sends the window may hold before the waiting event: all of them for an urgent
    /// one.
    fn limit(&self) -> usize {
        if self.urgent() {
            self.policy.max_events
        } else {
            self.policy
                .max_events
                .saturating_sub(self.policy.reserved_for_urgent)
                .max(1)
        }
    }

    /// The collector acknowledged `seq`.
    pub fn ack(&mut self, seq: u64) {
        if seq == self.last_seq && seq > 0 {
            self.last_acked = true;
        }
    }

    fn is_due(&self, now_ms: f64, state: &MetricsFields) -> bool {
        let Some((sent_ms, sent)) = &self.last_sent else {
            return true;
        };
        let p = &self.policy;
        let (before, now) = (total_kbps(sent), total_kbps(state));
        let bitrate_moved = if before > 0.0 {
            (now - before).abs() / before > p.bitrate_change
        } else {
            now > 0.0
        };
        let above = |m: &MetricsFields| m.loss_pct.unwrap_or(0.0) > p.loss_threshold_pct;
        state.quality != sent.quality
            || state.using_relay != sent.using_relay
            || state.findings != sent.findings
            || bitrate_moved
            || above(state) != above(sent)
            || now_ms - sent_ms >= p.heartbeat_ms
    }

    fn try_send(&mut self, now_ms: f64) -> Option<Event> {
        // `t + window <= now`, the same sum `next_tick_at` returns: written as `now - t >= window`
        // a tick at exactly that time could round to just inside the window and send nothing.
        while self
            .sent_at
            .front()
            .is_some_and(|t| t + self.policy.window_ms <= now_ms)
        {
            self.sent_at.pop_front();
        }
        if !self.pending || self.sent_at.len() >= self.limit() {
            return None;
        }
        let (measured_ms, state) = self.latest.clone()?;
        let delta = match &self.last_sent {
            Some((_, sent)) if self.last_acked => {
                let delta = state.changed_since(sent);
                // A delta cannot say that a field became unknown (absent means unchanged), so
                // when applying it would not give the new state, a full snapshot goes instead.
                let mut applied = sent.clone();
                applied.merge(&delta, false);
                (applied == state).then_some(delta)
            }
            _ => None,
        };
        let full = delta.is_none();
        let metrics = delta.unwrap_or_else(|| state.clone());
        self.last_seq += 1;
        self.sent_at.push_back(now_ms);
        self.last_sent = Some((now_ms, state));
        self.last_acked = false;
        self.pending = false;
        Some(Event {
            seq: self.last_seq,
            ts_ms: measured_ms,
            full,
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::QualityClass;

    fn state(kbps: f64, q: QualityClass, relay: bool, loss: f64) -> MetricsFields {
        MetricsFields {
            upload_kbps: Some(kbps),
            quality: Some(q),
            using_relay: Some(relay),
            loss_pct: Some(loss),
            ..Default::default()
        }
    }

    #[test]
    fn first_is_full_then_deltas_after_acks() {
        let mut e = Emitter::default();
        let first = e.offer(0.0, state(500.0, QualityClass::Good, false, 0.0)).unwrap();
        assert_eq!((first.seq, first.full), (1, true));
        e.ack(1);
        assert!(e.offer(1000.0, state(520.0, QualityClass::Good, false, 0.0)).is_none());
        let ev = e.offer(2000.0, state(520.0, QualityClass::Poor, false, 0.0)).unwrap();
        assert_eq!((ev.seq, ev.full), (2, false));
        assert_eq!(ev.metrics.quality, Some(QualityClass::Poor));
        assert_eq!(ev.metrics.upload_kbps, Some(520.0));
        assert_eq!(ev.metrics.using_relay, None);
        // Not acknowledged: the next one is a full snapshot.
        let ev = e.offer(17_000.0, state(520.0, QualityClass::Poor, false, 0.0)).unwrap();
        assert!(ev.full);
        assert_eq!(ev.metrics.using_relay, Some(false));
    }

    #[test]
    fn triggers() {
        let mut e = Emitter::default();
        e.offer(0.0, state(1000.0, QualityClass::Good, false, 0.0)).unwrap();
        assert!(e.offer(1000.0, state(1400.0, QualityClass::Good, false, 4.9)).is_none());
        assert!(
            e.offer(2000.0, state(1600.0, QualityClass::Good, false, 4.9)).is_some(),
            "+60 % bitrate"
        );
        assert!(
            e.offer(3000.0, state(1600.0, QualityClass::Good, false, 5.1)).is_some(),
            "loss crossed 5 %"
        );
        assert!(
            e.offer(4000.0, state(1600.0, QualityClass::Good, true, 5.1)).is_some(),
            "relay started"
        );
        assert!(e
            .offer(18_999.0, state(1600.0, QualityClass::Good, true, 5.1))
            .is_none());
        assert!(
            e.offer(19_000.0, state(1600.0, QualityClass::Good, true, 5.1))
                .is_some(),
            "heartbeat"
        );
    }

    #[test]
    fn cap_holds_and_waiting_change_goes_out_with_latest_state() {
        let mut e = Emitter::default();
        let mut sent = Vec::new();
        let classes = [QualityClass::Good, QualityClass::Poor];
        for i in 0..30 {
            let t = i as f64 * 1000.0;
            if let Some(ev) = e.offer(t, state(100.0, classes[i % 2], false, 0.0)) {
                sent.push(ev);
            }
        }
        // Quality alone may use 7 of the 10: the last 3 are kept for urgent changes.
        assert_eq!(sent.len(), 7);
        let at = e.next_tick_at().expect("a change waits");
        assert_eq!(at, 60_000.0);
        assert!(e.tick(at - 1.0).is_none());
        let ev = e.tick(at).expect("sent when the window allows");
        assert_eq!(ev.metrics.quality, Some(classes[29 % 2]));
    }

    #[test]
    fn a_finding_change_goes_out_when_swinging_figures_used_their_share() {
        let mut e = Emitter::default();
        let classes = [QualityClass::Good, QualityClass::Poor];
        let with = |i: usize, findings: &str| MetricsFields {
            findings: Some(findings.into()),
            ..state(100.0, classes[i % 2], false, 0.0)
        };
        let sent = (0..20)
            .filter_map(|i| e.offer(i as f64 * 1000.0, with(i, "packet-loss")))
            .count();
        assert_eq!(sent, 7);
        let ev = e.offer(20_000.0, with(20, "")).expect("urgent: the finding ended");
        assert_eq!(ev.metrics.findings.as_deref(), Some(""));
        // Urgent ones use the reserve up to the cap, then wait too.
        assert!(e.offer(21_000.0, with(21, "mic-silent")).is_some());
        assert!(e.offer(22_000.0, with(22, "")).is_some());
        assert!(e.offer(23_000.0, with(23, "mic-silent")).is_none());
        assert_eq!(e.next_tick_at(), Some(60_000.0));
    }

    #[test]
    fn a_tick_at_next_tick_at_sends_even_with_fractional_epoch_times() {
        // Epoch times in ms have a fraction; where `first + window` crosses a power of two the
        // sum rounds, and the window check must agree with it or the shell's timer fires and
        // nothing goes out. 2^41 ms is in 2039; shells on other clocks meet other powers of two.
        for k in 0..200 {
            let t0 = 2f64.powi(41) - 30_000.0 + k as f64 * 0.137;
            let mut e = Emitter::default();
            for i in 0..11 {
                let q = if i % 2 == 0 {
                    QualityClass::Good
                } else {
                    QualityClass::Poor
                };
                e.offer(t0 + i as f64 * 1000.0, state(100.0, q, false, 0.0));
            }
            let at = e.next_tick_at().expect("the 11th change waits");
            assert!(e.tick(at).is_some(), "nothing sent at next_tick_at for t0 = {t0}");
        }
    }

    #[test]
    fn a_field_that_became_unknown_forces_a_full_snapshot() {
        let mut e = Emitter::default();
        let mut s = state(500.0, QualityClass::Good, false, 0.0);
        s.rtt_ms = Some(40.0);
        e.offer(0.0, s.clone()).unwrap();
        e.ack(1);
        // RTT is no longer known and quality changed: a delta would leave 40 ms at the collector.
        s.rtt_ms = None;
        s.quality = Some(QualityClass::Poor);
        let ev = e.offer(1000.0, s.clone()).unwrap();
        assert!(ev.full);
        assert_eq!(ev.metrics, s);
    }

    #[test]
    fn a_released_event_carries_the_time_of_its_state() {
        let mut e = Emitter::default();
        for i in 0..12 {
            let q = if i % 2 == 0 {
                QualityClass::Good
            } else {
                QualityClass::Poor
            };
            e.offer(i as f64 * 1000.0, state(100.0, q, false, 0.0));
        }
        let ev = e.tick(e.next_tick_at().unwrap()).unwrap();
        assert_eq!(ev.ts_ms, 11_000.0);
    }
}
