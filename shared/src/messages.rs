//! Messages between the extension's parts (bridge, service worker, offscreen document, popup).
//!
//! The JavaScript files point here instead of keeping a second schema. Every message carries a
//! `type` member; messages for the offscreen document also carry `target: "offscreen"`, which
//! the service worker adds and the offscreen document ignores.

use crate::metrics::TabMetrics;
use serde::{Deserialize, Serialize};

/// Messages the offscreen document handles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToOffscreen {
    /// One `getStats()` poll of one peer connection in a tab (hook -> bridge -> service worker,
    /// which carry one message per poll for all of a frame's connections and split it here).
    Stats {
        tab: i64,
        /// The page's URL; only its origin and path are ever used, and only inside the browser.
        url: String,
        pc: String,
        /// The service worker's clock when it forwarded the snapshot, ms since the epoch.
        now_ms: f64,
        reports: Vec<serde_json::Value>,
    },
    /// A peer connection closed.
    PcClosed { tab: i64, pc: String },
    /// The tab closed or navigated away: forget it.
    TabGone { tab: i64 },
    /// Settings, from `chrome.storage` through the service worker.
    Config(Settings),
    /// The popup asks for a tab's view; `tab: None` means the tab that last had a call.
    GetTab { tab: Option<i64> },
    /// The popup asks for a tab's report of the last 10 minutes (`report::Report`, or null when
    /// nothing is recorded); `tab: None` as for `GetTab`.
    GetReport { tab: Option<i64> },
}

/// The user's settings (options page, `chrome.storage.sync`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The collector's base URL, e.g. `http://127.0.0.1:7878`.
    pub collector_url: String,
    pub ingest_key: String,
    /// Shown to admins next to the participant id.
    pub label: String,
    /// Sending is off until the user turns it on (or the build configured a collector).
    pub sending: bool,
    /// A random id made once per install.
    pub install_id: String,
    /// Where the hook runs; `extension/sites.js` registers the content scripts accordingly.
    pub sites_mode: SitesMode,
    /// The allow or deny list of [`Settings::sites_mode`]: Chrome match patterns such as
    /// `*://meet.example.com/*`, as the options page normalises what the user types.
    pub sites: Vec<String>,
}

/// The sites where the hook runs. Stored as "all", "allow" or "deny"; anything else (a value
/// written by another version through `chrome.storage.sync`) reads as `All`, as `sites.js` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SitesMode {
    /// Every page (the default).
    #[default]
    All,
    /// Only pages matching [`Settings::sites`].
    Allow,
    /// Every page except those matching [`Settings::sites`].
    Deny,
}

impl<'de> Deserialize<'de> for SitesMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(deserializer)?.as_str() {
            Some("allow") => Self::Allow,
            Some("deny") => Self::Deny,
            _ => Self::All,
        })
    }
}

/// The collector connection as the popup shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectorStatus {
    /// "off", "connected", "retrying".
    pub state: String,
    pub queued: usize,
    /// Events the upload queue's bound evicted before the collector had them.
    #[serde(default)]
    pub dropped: u64,
    pub sent: u64,
    pub last_error: Option<String>,
}

/// The popup's answer to [`ToOffscreen::GetTab`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TabView {
    pub tab: Option<i64>,
    pub metrics: Option<TabMetrics>,
    pub collector: CollectorStatus,
    /// The tab's call over the last minute, oldest first, about one sample a second (for the
    /// popup's sparklines). Empty when the tab has no call.
    #[serde(default)]
    pub history: Vec<HistorySample>,
    /// Start of what `GetReport` would return for this tab (ms); `None` when nothing is
    /// recorded. Set after the call ended too, until the tab closes or navigates away (or the
    /// offscreen document closes, idle).
    #[serde(default)]
    pub recorded_since_ms: Option<f64>,
}

/// One point of a tab's recent history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistorySample {
    /// When the metrics were measured, ms (the shell's clock).
    pub at_ms: f64,
    /// Upload plus download, kbps.
    pub bitrate_kbps: Option<f64>,
    pub rtt_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_stored_before_the_site_list_still_load() {
        let old = r#"{"collector_url":"http://127.0.0.1:7878","ingest_key":"k","label":"","sending":true}"#;
        let s: Settings = serde_json::from_str(old).unwrap();
        assert_eq!((s.sites_mode, s.sites.len()), (SitesMode::All, 0));
        assert!(s.sending);
    }

    #[test]
    fn sites_mode_round_trips_and_unknown_values_read_as_all() {
        let s = Settings {
            sites_mode: SitesMode::Deny,
            sites: vec!["*://meet.example.com/*".into()],
            ..Settings::default()
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["sites_mode"], "deny");
        assert_eq!(serde_json::from_value::<Settings>(json).unwrap(), s);
        for other in [r#""everywhere""#, "7", "null"] {
            let mode: SitesMode = serde_json::from_str(other).unwrap();
            assert_eq!(mode, SitesMode::All, "{other}");
        }
    }
}
