//! Messages between the extension's parts (bridge, service worker, offscreen document, popup).
//!
//! The JavaScript files point here instead of keeping a second schema. Every message carries a
//! `type` member; messages for the offscreen document also carry `target: "offscreen"`, which
//! the service worker adds and the offscreen document ignores.

use crate::metrics::TabMetrics;
use serde::{Deserialize, Serialize};

/// Longest peer-connection id the pipeline accepts from a page.
pub const MAX_PC_ID_LEN: usize = 64;
/// Most reports accepted in one snapshot.
pub const MAX_REPORTS: usize = 500;

/// Messages the offscreen document handles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToOffscreen {
    /// One `getStats()` poll of one peer connection in a tab (hook -> bridge -> service worker).
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
}

/// The collector connection as the popup shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectorStatus {
    /// "off", "connected", "retrying".
    pub state: String,
    pub queued: usize,
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
