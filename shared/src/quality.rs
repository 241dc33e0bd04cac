//! The quality model: the excellent/good/fair/poor class and an E-model MOS estimate.

use serde::{Deserialize, Serialize};

/// Connection quality class, from round-trip time and packet loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QualityClass {
    Poor,
    Fair,
    Good,
    Excellent,
}

impl QualityClass {
    /// Classifies: excellent when RTT < 100 ms and loss < 1 %, good when < 200 ms and < 3 %,
    /// fair when < 400 ms and < 5 %, otherwise poor. A missing figure does not count against
    /// the connection; with neither there is no class.
    pub fn classify(rtt_ms: Option<f64>, loss_pct: Option<f64>) -> Option<Self> {
        if rtt_ms.is_none() && loss_pct.is_none() {
            return None;
        }
        let rtt = rtt_ms.unwrap_or(0.0);
        let loss = loss_pct.unwrap_or(0.0);
        Some(if rtt < 100.0 && loss < 1.0 {
            Self::Excellent
        } else if rtt < 200.0 && loss < 3.0 {
            Self::Good
        } else if rtt < 400.0 && loss < 5.0 {
            Self::Fair
        } else {
            Self::Poor
        })
    }

    /// The class and the MOS of these figures: the MOS only where there is a class, with an
    /// unknown jitter (or the other unknown figure) taken as 0. The one place that pairs them.
    pub fn assess(rtt_ms: Option<f64>, loss_pct: Option<f64>, jitter_ms: Option<f64>) -> (Option<Self>, Option<f64>) {
        let quality = Self::classify(rtt_ms, loss_pct);
        let score = quality.map(|_| mos(rtt_ms.unwrap_or(0.0), jitter_ms.unwrap_or(0.0), loss_pct.unwrap_or(0.0)));
        (quality, score)
    }

    /// The number of bars (1 to 4) the popup and badge show for this class.
    pub fn bars(self) -> u8 {
        match self {
            Self::Poor => 1,
            Self::Fair => 2,
            Self::Good => 3,
            Self::Excellent => 4,
        }
    }

    /// Lower-case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poor => "poor",
            Self::Fair => "fair",
            Self::Good => "good",
            Self::Excellent => "excellent",
        }
    }
}

/// Mean opinion score (1 to 4.5) from a simplified ITU-T G.107 E-model.
///
/// ```text
/// d  = rtt_ms / 2 + 2 · jitter_ms + 10            one-way mouth-to-ear delay, ms
///                                                  (jitter buffer ≈ 2 × jitter, 10 ms codec)
/// Id = d / 40                  when d < 160        delay impairment
///    = 4 + (d − 160) / 10      otherwise           (same value at d = 160: continuous)
/// Ie = 2.5 · loss_pct                              loss impairment
/// R  = 93.2 − Id − Ie
/// MOS = 1                                          when R ≤ 6.5
///     = 1 + 0.035 R + 7·10⁻⁶ R (R − 60)(100 − R)   when 6.5 < R < 100
///     = 4.5                                        when R ≥ 100
/// ```
/// R falls as delay, jitter or loss grow and the MOS polynomial rises with R above 6.5 (below
/// it the polynomial dips under 1, hence the floor), so the score never rises as RTT grows.
pub fn mos(rtt_ms: f64, jitter_ms: f64, loss_pct: f64) -> f64 {
    let d = rtt_ms.max(0.0) / 2.0 + 2.0 * jitter_ms.max(0.0) + 10.0;
    let delay_impairment = if d < 160.0 { d / 40.0 } else { 4.0 + (d - 160.0) / 10.0 };
    r_to_mos(93.2 - delay_impairment - 2.5 * loss_pct.clamp(0.0, 100.0))
}

/// Audio MOS (1 to 4.5) of what the listener hears, from the ITU-T G.107 E-model with the
/// figures a receiver measures: the one-way delay and the concealed share of the audio.
///
/// ```text
/// Ta   = one_way_ms                        mouth-to-ear: RTT / 2 + jitter buffer + 20 ms frame
/// X    = log2(Ta / 100)
/// Idd  = 0                                 when Ta ≤ 100 ms
///      = 25 ((1 + X⁶)^⅙ − 3 (1 + (X/3)⁶)^⅙ + 2)   otherwise (G.107 delay impairment)
/// Ppl  = concealed_pct                     samples the receiver had to make up, %
/// Ie,e = Ie + (95 − Ie) · Ppl / (Ppl + Bpl)   Opus: Ie = 0, Bpl = 20 (random loss, BurstR = 1)
/// R    = 93.2 − Idd − Ie,e
/// MOS  from R as in [`mos`]
/// ```
/// Test vectors (below): Ta 50 ms, nothing concealed: R 93.2, MOS 4.409; Ta 200 ms, 5 %
/// concealed: Idd 3.044, Ie,e 19, R 71.156, MOS 3.651.
pub fn audio_mos(one_way_ms: f64, concealed_pct: f64) -> f64 {
    const IE: f64 = 0.0;
    const BPL: f64 = 20.0;
    let ta = one_way_ms.max(0.0);
    let idd = if ta <= 100.0 {
        0.0
    } else {
        let x = (ta / 100.0).log2();
        25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0) + 2.0)
    };
    let ppl = concealed_pct.clamp(0.0, 100.0);
    let ie_eff = IE + (95.0 - IE) * ppl / (ppl + BPL);
    r_to_mos(93.2 - idd - ie_eff)
}

/// The E-model's R to a MOS: 1 up to R 6.5, 4.5 from R 100, the G.107 polynomial between.
fn r_to_mos(r: f64) -> f64 {
    if r <= 6.5 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r)).clamp(1.0, 4.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_mos_vectors() {
        let expect = |r: f64| 1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r);
        assert!((audio_mos(50.0, 0.0) - expect(93.2)).abs() < 1e-9);
        assert!((audio_mos(50.0, 0.0) - 4.409).abs() < 1e-3);
        // Ta 200 ms: X = 1, Idd = 25 (2^(1/6) - 3 (1 + 3^-6)^(1/6) + 2) = 3.0443.
        let idd = 25.0 * (2f64.powf(1.0 / 6.0) - 3.0 * (1.0 + 3f64.powi(-6)).powf(1.0 / 6.0) + 2.0);
        assert!((idd - 3.0443).abs() < 1e-3);
        assert!((audio_mos(200.0, 5.0) - expect(93.2 - idd - 19.0)).abs() < 1e-9);
        assert!((audio_mos(200.0, 5.0) - 3.651).abs() < 1e-3);
        // Worse with more delay or more concealment, never outside 1 to 4.5.
        let mut prev = f64::INFINITY;
        for ta in (0..=3000).step_by(10) {
            let m = audio_mos(f64::from(ta), 2.0);
            assert!((1.0..=4.5).contains(&m) && m <= prev + 1e-12, "Ta {ta}");
            prev = m;
        }
        assert!(audio_mos(50.0, 30.0) < audio_mos(50.0, 3.0));
    }

    #[test]
    fn class_boundaries() {
        use QualityClass::*;
        let c = |rtt, loss| QualityClass::classify(Some(rtt), Some(loss)).unwrap();
        assert_eq!(c(99.9, 0.99), Excellent);
        assert_eq!(c(100.0, 0.0), Good);
        assert_eq!(c(50.0, 1.0), Good);
        assert_eq!(c(199.0, 2.9), Good);
        assert_eq!(c(200.0, 0.0), Fair);
        assert_eq!(c(399.0, 4.9), Fair);
        assert_eq!(c(400.0, 0.0), Poor);
        assert_eq!(c(10.0, 5.0), Poor);
        assert_eq!(QualityClass::classify(None, None), None);
        assert_eq!(QualityClass::classify(Some(250.0), None), Some(Fair));
        assert_eq!(QualityClass::classify(None, Some(2.0)), Some(Good));
    }

    #[test]
    fn mos_vectors() {
        // RTT 0, no jitter, no loss: d = 10, Id = 0.25, R = 92.95.
        let expect = |r: f64| 1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r);
        assert!((mos(0.0, 0.0, 0.0) - expect(92.95)).abs() < 1e-9);
        assert!((mos(0.0, 0.0, 0.0) - 4.4044).abs() < 1e-4);
        // RTT 300 ms, 10 ms jitter, 2 % loss: d = 180, Id = 6, Ie = 5, R = 82.2.
        assert!((mos(300.0, 10.0, 2.0) - expect(82.2)).abs() < 1e-9);
        // RTT 1.5 s: d = 760, Id = 64, R = 29.2.
        assert!((mos(1500.0, 0.0, 0.0) - expect(29.2)).abs() < 1e-9);
        // High loss floors at 1.
        assert_eq!(mos(50.0, 5.0, 40.0), 1.0);
        assert_eq!(mos(5000.0, 0.0, 0.0), 1.0);
    }

    #[test]
    fn mos_never_rises_with_rtt_or_loss() {
        for loss in [0.0, 1.0, 5.0, 20.0] {
            let mut prev = f64::INFINITY;
            for rtt in (0..=5000).step_by(5) {
                let m = mos(rtt as f64, 5.0, loss);
                assert!((1.0..=4.5).contains(&m));
                assert!(m <= prev + 1e-12, "MOS rose at rtt {rtt} loss {loss}");
                prev = m;
            }
        }
        let mut prev = f64::INFINITY;
        for loss in 0..=100 {
            let m = mos(80.0, 5.0, loss as f64);
            assert!(m <= prev + 1e-12);
            prev = m;
        }
    }
}
