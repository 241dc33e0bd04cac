//! Figures as the popup shows them: bitrates in kbps or Mbps, times in ms.

/// A bitrate: "812 kbps" below 1000 kbps, "1.4 Mbps" from there; "–" when unknown.
pub fn bitrate(kbps: Option<f64>) -> String {
    match kbps {
        Some(k) if k.is_finite() && k >= 999.5 => format!("{:.1} Mbps", k / 1000.0),
        Some(k) if k.is_finite() => format!("{:.0} kbps", k.max(0.0)),
        _ => "–".to_string(),
    }
}

/// A duration in milliseconds: "42 ms"; "–" when unknown.
pub fn millis(ms: Option<f64>) -> String {
    match ms {
        Some(v) if v.is_finite() => format!("{:.0} ms", v.max(0.0)),
        _ => "–".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates_switch_to_mbps_at_1000_kbps() {
        assert_eq!(bitrate(Some(812.4)), "812 kbps");
        assert_eq!(bitrate(Some(999.4)), "999 kbps");
        assert_eq!(bitrate(Some(999.6)), "1.0 Mbps");
        assert_eq!(bitrate(Some(1432.0)), "1.4 Mbps");
        assert_eq!(bitrate(None), "–");
        assert_eq!(bitrate(Some(f64::NAN)), "–");
    }

    #[test]
    fn millis_are_rounded() {
        assert_eq!(millis(Some(41.6)), "42 ms");
        assert_eq!(millis(None), "–");
    }
}
