//! "Copy summary": a short plain text of a call report for a support ticket (no address).

use super::rates::percent;
use crate::format;
use vitals_shared::alerts::AlertState;
use vitals_shared::report::{iso_utc, AlertEvent, Report, Stat};

/// Alert spans listed before "… and N more".
const MAX_ALERTS_LISTED: usize = 6;

/// The summary of `report`: quality now and at worst, averages and worst of round trip, loss
/// and jitter, bitrates, relay use, connections, time span, browser and extension. It holds the
/// page's origin only, and nothing else that names a host.
pub fn summary_text(report: &Report) -> String {
    let o = &report.overview;
    let r = &report.time_range;
    let mut lines = vec!["Call Vitals summary".to_string()];
    lines.push(format!(
        "Time: {} to {} UTC ({})",
        clock(&r.from, None),
        clock(&r.to, Some(&r.from)),
        duration(r.duration_s)
    ));
    if let Some(site) = report.page.as_deref().map(origin) {
        lines.push(format!("Site: {site}"));
    }
    let class = |q: Option<vitals_shared::QualityClass>| q.map_or("unknown", |q| q.as_str());
    let mos = match (o.mos.avg, o.mos.min) {
        (Some(avg), Some(min)) => format!(" (MOS {avg:.1} average, {min:.1} worst)"),
        _ => String::new(),
    };
    lines.push(format!(
        "Quality: {} now, worst {}{mos}",
        class(o.quality_now),
        class(o.worst_quality)
    ));
    lines.push(format!("Round trip: {}", worst(&o.rtt_ms, format::millis)));
    lines.push(format!("Packet loss: {}", worst(&o.loss_pct, percent)));
    lines.push(format!("Jitter: {}", worst(&o.jitter_ms, format::millis)));
    lines.push(format!("Upload: {}", peak(&o.upload_kbps)));
    lines.push(format!("Download: {}", peak(&o.download_kbps)));
    lines.push(match o.relay_share {
        Some(share) if share > 0.0 => {
            let over = match o.relay_protocols.as_slice() {
                [] => String::new(),
                protocols => format!(", over {}", protocols.join(" and ")),
            };
            format!("TURN relay: in use {:.0} % of the time{over}", share * 100.0)
        }
        _ => "TURN relay: not used".to_string(),
    });
    lines.push(format!(
        "Connections: {} ({} at once at most)",
        o.connections, o.max_live_connections
    ));
    lines.push(format!("Alerts: {}", alerts(&report.alerts)));
    lines.extend(findings(report));
    let browser = if report.browser.name.is_empty() {
        "unknown".to_string()
    } else if report.browser.platform.is_empty() {
        report.browser.name.clone()
    } else {
        format!("{} ({})", report.browser.name, report.browser.platform)
    };
    lines.push(format!("Browser: {browser}"));
    let version = if report.extension_version.is_empty() {
        "unknown"
    } else {
        report.extension_version.as_str()
    };
    lines.push(format!("Extension: Call Vitals {version}"));
    lines.join("\n") + "\n"
}

/// "42 ms average, 310 ms worst"; "–" when never known.
fn worst(stat: &Stat, show: fn(Option<f64>) -> String) -> String {
    match stat.avg {
        Some(_) => format!("{} average, {} worst", show(stat.avg), show(stat.max)),
        None => show(None),
    }
}

/// "1.2 Mbps average, 2.1 Mbps peak"; "–" when never known.
fn peak(stat: &Stat) -> String {
    match stat.avg {
        Some(_) => format!(
            "{} average, {} peak",
            format::bitrate(stat.avg),
            format::bitrate(stat.max)
        ),
        None => format::bitrate(None),
    }
}

/// An ISO 8601 time as "2025-01-01 12:00:00", or "12:00:00" when `same_day_as` has its date.
fn clock(iso: &str, same_day_as: Option<&str>) -> String {
    let (date, time) = iso.split_once('T').unwrap_or(("", iso));
    let time = time.trim_end_matches('Z');
    match same_day_as.and_then(|other| other.split_once('T')) {
        Some((other_date, _)) if other_date == date => time.to_string(),
        _ => format!("{date} {time}").trim().to_string(),
    }
}

/// "45 s", "3 min 5 s".
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s < 60 {
        format!("{s} s")
    } else {
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// "https://meet.example.com" from "https://meet.example.com/room".
fn origin(page: &str) -> String {
    match page.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()),
        None => page.to_string(),
    }
}

/// "high-latency 12:03:10 to 12:03:40; using-turn from 12:03:06 (still active)", or "none".
fn alerts(events: &[AlertEvent]) -> String {
    let mut spans: Vec<String> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if e.state != AlertState::Raised {
            continue;
        }
        let from = clock(&e.at, Some(&e.at));
        let resolved = events[i + 1..]
            .iter()
            .find(|r| r.kind == e.kind && r.state == AlertState::Resolved);
        spans.push(match resolved {
            Some(r) => format!("{} {from} to {}", e.kind.as_str(), clock(&r.at, Some(&r.at))),
            None => format!("{} from {from} (still active)", e.kind.as_str()),
        });
    }
    if spans.is_empty() {
        return "none".to_string();
    }
    let more = spans.len().saturating_sub(MAX_ALERTS_LISTED);
    spans.truncate(MAX_ALERTS_LISTED);
    let mut text = spans.join("; ");
    if more > 0 {
        text.push_str(&format!("; … and {more} more"));
    }
    text
}

/// "Findings: none", or one line per finding (the first [`MAX_ALERTS_LISTED`]): its words, id
/// and span.
fn findings(report: &Report) -> Vec<String> {
    if report.findings.is_empty() {
        return vec!["Findings: none".to_string()];
    }
    let from = &report.time_range.from;
    // The same finding on several connections at once is one line.
    let mut listed: Vec<String> = Vec::new();
    for f in &report.findings {
        let start = clock(&iso_utc(f.since_ms), Some(from));
        let span = match f.until_ms {
            Some(until) => format!("{start} to {}", clock(&iso_utc(until), Some(from))),
            None => format!("from {start}, still active"),
        };
        let line = format!("- {} ({}, {span})", f.title, f.id.as_str());
        if !listed.contains(&line) {
            listed.push(line);
        }
    }
    let mut lines = vec![format!("Findings: {}", listed.len())];
    let more = listed.len().saturating_sub(MAX_ALERTS_LISTED);
    lines.extend(listed.into_iter().take(MAX_ALERTS_LISTED));
    if more > 0 {
        lines.push(format!("- … and {more} more"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_shared::metrics::{PeerMetrics, RelayInfo};
    use vitals_shared::processor::aggregate;
    use vitals_shared::report::{BrowserInfo, CallRecorder};
    use vitals_shared::QualityClass;

    /// 30 s of a call with two connections: high latency from 5 s to 9 s, relayed over TCP; the
    /// diagnosis runs on it as in the processor.
    fn report() -> Report {
        let mut rec = CallRecorder::default();
        let mut diagnosis = vitals_shared::diagnosis::Diagnosis::new();
        let start = 1_700_000_000_000.0;
        for t in 0..30 {
            let at_ms = start + f64::from(t) * 1000.0;
            let rtt = if (5..10).contains(&t) { 800.0 } else { 40.0 };
            let peers: Vec<PeerMetrics> = ["pc-1", "pc-2"]
                .iter()
                .map(|pc| PeerMetrics {
                    pc: pc.to_string(),
                    at_ms,
                    upload_kbps: Some(600.0),
                    download_kbps: Some(400.0),
                    rtt_ms: Some(rtt),
                    loss_in_pct: Some(0.2),
                    jitter_ms: Some(3.0),
                    relay: RelayInfo {
                        using_relay: true,
                        protocol: Some("tcp".into()),
                        server_url: Some("turn:192.0.2.1:3478?transport=tcp".into()),
                    },
                    carries_media: true,
                    ..PeerMetrics::default()
                })
                .collect();
            peers.iter().for_each(|p| rec.record_peer(p));
            for change in peers.iter().flat_map(|p| diagnosis.observe(p)) {
                rec.record_finding(&change);
            }
            rec.record_tab(&aggregate(at_ms, peers));
        }
        let mut report = Report::build(&rec, "http://192.0.2.7:8080/room?key=secret", start + 30_000.0);
        report.browser = BrowserInfo {
            name: "Chromium 156.0.7258.5".into(),
            platform: "Linux".into(),
            ..BrowserInfo::default()
        };
        report.extension_version = "0.1.0".into();
        report
    }

    #[test]
    fn the_summary_names_figures_relay_alerts_and_versions() {
        let report = report();
        assert_eq!(report.overview.quality_now, Some(QualityClass::Excellent));
        let text = summary_text(&report);
        let expected = "\
Call Vitals summary
Time: 2023-11-14 22:13:20 to 22:13:49 UTC (29 s)
Site: http://ip-literal
Quality: excellent now, worst poor (MOS 4.2 average, 3.3 worst)
Round trip: 167 ms average, 800 ms worst
Packet loss: 0.2 % average, 0.2 % worst
Jitter: 3 ms average, 3 ms worst
Upload: 1.2 Mbps average, 1.2 Mbps peak
Download: 800 kbps average, 800 kbps peak
TURN relay: in use 100 % of the time, over tcp
Connections: 2 (2 at once at most)
Alerts: using-turn from 22:13:20 (still active); high-latency 22:13:25 to 22:13:40; poor-connection 22:13:25 to 22:13:40
Findings: 2
- The call is relayed over TCP, which adds delay and stalls on loss (relay-tcp, from 22:13:20, still active)
- High delay: 800 ms round trip, so people talk over each other (high-latency, 22:13:25 to 22:13:35)
Browser: Chromium 156.0.7258.5 (Linux)
Extension: Call Vitals 0.1.0
";
        assert_eq!(text, expected);
        for leak in ["192.0.2", "3478", "8080", "secret", "turn:"] {
            assert!(!text.contains(leak), "{leak}");
        }
    }

    #[test]
    fn an_empty_report_says_so() {
        let text = summary_text(&Report::build(&CallRecorder::default(), "chrome://newtab", 0.0));
        assert!(text.contains("Quality: unknown now, worst unknown\n"), "{text}");
        assert!(
            text.contains("Round trip: –\n") && text.contains("TURN relay: not used\n"),
            "{text}"
        );
        assert!(
            text.contains("Alerts: none\n") && text.contains("Browser: unknown\n"),
            "{text}"
        );
        assert!(!text.contains("Site:"), "{text}");
    }

    #[test]
    fn times_and_durations_read_naturally() {
        assert_eq!(clock("2025-01-01T12:00:05Z", None), "2025-01-01 12:00:05");
        assert_eq!(clock("2025-01-01T12:00:05Z", Some("2025-01-01T11:00:00Z")), "12:00:05");
        assert_eq!(
            clock("2025-01-02T00:00:01Z", Some("2025-01-01T23:59:00Z")),
            "2025-01-02 00:00:01"
        );
        assert_eq!(duration(45.2), "45 s");
        assert_eq!(duration(600.0), "10 min 0 s");
        assert_eq!(origin("https://a.example/x/y"), "https://a.example");
    }
}
