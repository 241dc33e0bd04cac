//! A report's overview: quality now and at worst, averages and extremes of each figure, relay use, connections.

use super::{AlertEvent, ConnectionSeries, Figures, TabSample};
use crate::alerts::AlertState;
use crate::metrics::mean;
use crate::quality::QualityClass;
use serde::{Deserialize, Serialize};

/// Average, lowest and highest of a figure over the known samples (all `None` when none is known).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub avg: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Stat {
    pub fn of(values: impl Iterator<Item = Option<f64>> + Clone) -> Self {
        let known = values.flatten().filter(|v| v.is_finite());
        Self {
            avg: mean(known.clone()),
            min: known.clone().min_by(f64::total_cmp),
            max: known.max_by(f64::total_cmp),
        }
    }
}

/// The whole range at a glance (the tab's aggregate samples; connections counted apart).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The latest sample's class.
    pub quality_now: Option<QualityClass>,
    pub worst_quality: Option<QualityClass>,
    pub mos: Stat,
    pub rtt_ms: Stat,
    pub loss_pct: Stat,
    pub jitter_ms: Stat,
    pub upload_kbps: Stat,
    pub download_kbps: Stat,
    /// Share of the tab's samples (0 to 1) with a TURN relay in use; `None` without samples.
    pub relay_share: Option<f64>,
    /// Every relay protocol seen, in order of first use.
    pub relay_protocols: Vec<String>,
    /// Connections seen in the range.
    pub connections: usize,
    /// Most connections live at once.
    pub max_live_connections: u32,
    pub duration_s: f64,
    pub alerts_raised: usize,
}

impl Overview {
    pub fn of(quality: &[TabSample], connections: &[ConnectionSeries], alerts: &[AlertEvent], duration_s: f64) -> Self {
        let figure = |f: fn(&Figures) -> Option<f64>| Stat::of(quality.iter().map(|s| f(&s.figures)));
        let mut relay_protocols: Vec<String> = Vec::new();
        for p in connections.iter().flat_map(|c| &c.relay_protocols) {
            if !relay_protocols.contains(p) {
                relay_protocols.push(p.clone());
            }
        }
        let relayed = quality.iter().filter(|s| s.figures.using_relay).count();
        Self {
            quality_now: quality.last().and_then(|s| s.figures.quality),
            worst_quality: quality.iter().filter_map(|s| s.figures.quality).min(),
            mos: figure(|s| s.mos),
            rtt_ms: figure(|s| s.rtt_ms),
            loss_pct: figure(|s| s.loss_pct),
            jitter_ms: figure(|s| s.jitter_ms),
            upload_kbps: figure(|s| s.upload_kbps),
            download_kbps: figure(|s| s.download_kbps),
            relay_share: (!quality.is_empty()).then(|| relayed as f64 / quality.len() as f64),
            relay_protocols,
            connections: connections.len(),
            max_live_connections: quality.iter().map(|s| s.connections).max().unwrap_or(0),
            duration_s,
            alerts_raised: alerts.iter().filter(|a| a.state == AlertState::Raised).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_skip_unknown_and_non_finite_values() {
        let s = Stat::of([Some(1.0), None, Some(3.0), Some(f64::NAN), Some(8.0)].into_iter());
        assert_eq!((s.avg, s.min, s.max), (Some(4.0), Some(1.0), Some(8.0)));
        assert_eq!(Stat::of([None, None].into_iter()), Stat::default());
    }

    #[test]
    fn an_empty_range_has_no_figures() {
        let o = Overview::of(&[], &[], &[], 0.0);
        assert_eq!((o.quality_now, o.worst_quality, o.relay_share), (None, None, None));
        assert_eq!((o.connections, o.alerts_raised), (0, 0));
    }
}
