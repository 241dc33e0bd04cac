//! Webhook notifications: a JSON `POST` per alert raised, of the chosen severities.
//!
//! The body is `{"text": "...", "alert": {...}}`: `text` is a one-line summary, so Slack (and
//! Mattermost, Rocket.Chat, ... incoming webhooks) shows it as is; `alert` is the alert record of
//! `GET /api/v1/alerts`. Resolved alerts are not sent. A delivery that fails (no connection, no
//! answer within 10 s, or a non-2xx status; connections are pooled and reused) is tried again after the retry delay, then after twice
//! that: 3 tries in all, then it is logged and dropped.
//!
//! The background task is fed by the [`Hub`]'s local alerts: those raised by this process only,
//! so with several processes on one Redis each alert is posted once, by the process that raised it.

use crate::alerts::{AlertRecord, AlertState, Severity};
use crate::stream::Hub;
use reqwest::header;
use reqwest::{Client, Url};
use std::time::Duration;
use tokio::sync::broadcast;

/// Tries per alert.
pub const ATTEMPTS: u32 = 3;
/// Wait before the second try (doubled before the third), unless configured otherwise.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest wait for one try (connect, send and answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and what to notify.
#[derive(Clone)]
pub struct Webhook {
    url: Url,
    /// One pooled client (connections are kept and reused), with the per-try timeout.
    client: Client,
    severities: Vec<Severity>,
    retry_delay: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL of an incoming webhook is a credential: only its host is shown.
        f.debug_struct("Webhook")
            .field("host", &self.url.host_str())
            .field("severities", &self.severities)
            .field("retry_delay", &self.retry_delay)
            .finish()
    }
}

/// Why a webhook setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0:?} is not a severity (info, warning or critical)")]
    NotASeverity(String),
    #[error("no severity given (info, warning or critical)")]
    NoSeverity,
    #[error("the webhook URL is not a URL")]
    NotAUrl,
    #[error("the webhook URL must be an http:// or https:// URL")]
    NotHttp,
    #[error("cannot start the webhook's HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Parses `critical,warning`-style lists (case-insensitive, blanks ignored); at least one.
pub fn parse_severities(text: &str) -> Result<Vec<Severity>, WebhookError> {
    let mut severities = Vec::new();
    for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let severity = match name.to_ascii_lowercase().as_str() {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            _ => return Err(WebhookError::NotASeverity(name.to_owned())),
        };
        if !severities.contains(&severity) {
            severities.push(severity);
        }
    }
    if severities.is_empty() {
        return Err(WebhookError::NoSeverity);
    }
    Ok(severities)
}

impl Webhook {
    /// Posts raised alerts of `severities` to `url` (http or https).
    pub fn new(url: &str, severities: Vec<Severity>) -> Result<Self, WebhookError> {
        let url = Url::parse(url).map_err(|_| WebhookError::NotAUrl)?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(WebhookError::NotHttp);
        }
        let client = Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent("call-vitals-collector")
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Self {
            url,
            client,
            severities,
            retry_delay: DEFAULT_RETRY_DELAY,
        })
    }

    /// The same webhook with another wait before the second try.
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Starts posting the alerts `hub` raises in this process from now on; the task ends with
    /// the hub. Needs a Tokio runtime.
    pub fn spawn(self, hub: &Hub) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(hub.subscribe_local_alerts()))
    }

    async fn run(self, mut alerts: broadcast::Receiver<AlertRecord>) {
        loop {
            match alerts.recv().await {
                Ok(record) => {
                    if record.state == AlertState::Raised && self.severities.contains(&record.severity) {
                        // One task per alert, so a slow endpoint does not hold back the others.
                        tokio::spawn(self.clone().deliver(record));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "webhook: alerts skipped (the endpoint is too slow)");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn deliver(self, record: AlertRecord) {
        let body =
            axum::body::Bytes::from(serde_json::to_vec(&payload(&record)).expect("plain data always serializes"));
        let mut delay = self.retry_delay;
        for attempt in 1..=ATTEMPTS {
            let error = match self.post(body.clone()).await {
                Ok(status) if (200..300).contains(&status) => return,
                Ok(status) => format!("HTTP {status}"),
                Err(error) if error.is_timeout() => "no answer in time".to_owned(),
                Err(error) => error.to_string(),
            };
            if attempt == ATTEMPTS {
                tracing::warn!(%error, kind = record.kind.as_str(), "webhook: alert not delivered after {ATTEMPTS} tries");
                return;
            }
            tracing::debug!(%error, attempt, "webhook: delivery failed; retrying");
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }

    /// One POST (on a pooled connection, within the client's timeout); the answer's status.
    async fn post(&self, body: axum::body::Bytes) -> Result<u16, reqwest::Error> {
        let response = self
            .client
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }
}

/// The POST body of one alert.
fn payload(record: &AlertRecord) -> serde_json::Value {
    let severity = record.severity.as_str().to_ascii_uppercase();
    let text = format!(
        "[{severity}] {}: participant {} in meeting {}: {}",
        record.kind.as_str(),
        record.participant_id,
        record.meeting_id,
        record.message
    );
    serde_json::json!({ "text": text, "alert": record })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_and_urls() {
        assert_eq!(
            parse_severities("critical,warning").unwrap(),
            vec![Severity::Critical, Severity::Warning]
        );
        assert_eq!(parse_severities(" Info , info ").unwrap(), vec![Severity::Info]);
        assert!(parse_severities("").is_err());
        assert!(parse_severities("warning,loud").is_err());
        assert!(Webhook::new("https://hooks.example.com/T/B/x", vec![Severity::Info]).is_ok());
        assert!(Webhook::new("ftp://example.com/", vec![Severity::Info]).is_err());
        assert!(Webhook::new("not a url", vec![Severity::Info]).is_err());
        let debug = format!(
            "{:?}",
            Webhook::new("https://h.example.com/secret-path", vec![]).unwrap()
        );
        assert!(!debug.contains("secret-path"), "{debug}");
    }
}
