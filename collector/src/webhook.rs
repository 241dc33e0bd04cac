//! Webhook notifications: a JSON `POST` per alert raised, of the chosen severities, within a budget.
//!
//! The body is `{"text": "...", "alert": {...}}`: `text` is a one-line summary, so Slack (and
//! Mattermost, Rocket.Chat, ... incoming webhooks) shows it as is; `alert` is the alert record of
//! `GET /api/v1/alerts`. Resolved alerts are not sent. A delivery that fails (no connection, no
//! answer within 10 s, or a non-2xx status; connections are pooled and reused) is tried again
//! after the retry delay, then after twice that: 3 tries in all, then it is logged and dropped.
//!
//! Ids and labels come from the public ingest key, so nothing of theirs may become markup: every
//! value put into `text` has `& < >` escaped the way Slack asks (`&amp; &lt; &gt;`), and the whole
//! body is written with `<`, `>` and `&` as JSON `\u` escapes, so `<!channel>` or
//! `<http://evil|bank>` never appear in it. A flood cannot exhaust the process either: at most
//! [`BUDGET_PER_MINUTE`] alerts a minute are posted (configurable), the rest are counted and
//! posted as one "N more alerts" message when the minute ends; posts wait in a bounded queue
//! served by [`WORKERS`] workers on one pooled client, so at most that many connections are open.
//!
//! The notifier is fed by the [`Hub`]'s local alerts: those raised by this process only,
//! so with several processes on one Redis each alert is posted once, by the process that raised it.

use crate::alerts::{AlertRecord, AlertState, Severity};
use crate::stream::Hub;
use reqwest::header;
use reqwest::{Client, Url};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, Mutex};

/// Tries per alert.
pub const ATTEMPTS: u32 = 3;
/// Wait before the second try (doubled before the third), unless configured otherwise.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest wait for one try (connect, send and answer).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Posts under way at once (so also the most connections open to the webhook).
pub const WORKERS: usize = 4;
/// Posts waiting for a worker; more in a minute are counted in the summary instead.
pub const QUEUE: usize = 64;
/// Alerts posted a minute unless configured otherwise; the rest go into one summary message.
pub const BUDGET_PER_MINUTE: u32 = 30;

/// Where and what to notify.
#[derive(Clone)]
pub struct Webhook {
    url: Url,
    /// One pooled client (connections are kept and reused), with the per-try timeout.
    client: Client,
    severities: Vec<Severity>,
    retry_delay: Duration,
    budget: Budget,
}

/// How many alerts may be posted per window; the rest are summed up in one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub alerts: u32,
    pub window: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            alerts: BUDGET_PER_MINUTE,
            window: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL of an incoming webhook is a credential: only its host is shown.
        f.debug_struct("Webhook")
            .field("host", &self.url.host_str())
            .field("severities", &self.severities)
            .field("retry_delay", &self.retry_delay)
            .field("budget", &self.budget)
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
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(WORKERS)
            .user_agent("call-vitals-collector")
            .build()
            .map_err(WebhookError::Client)?;
        Ok(Self {
            url,
            client,
            severities,
            retry_delay: DEFAULT_RETRY_DELAY,
            budget: Budget::default(),
        })
    }

    /// The same webhook posting at most `budget.alerts` alerts per `budget.window`.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
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
        let (queue, waiting) = mpsc::channel::<Arc<[u8]>>(QUEUE);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..WORKERS {
            tokio::spawn(self.clone().work(waiting.clone()));
        }
        let mut window = tokio::time::interval(self.budget.window);
        window.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        window.tick().await;
        let (mut posted, mut held_back) = (0u32, 0u64);
        loop {
            tokio::select! {
                received = alerts.recv() => match received {
                    Ok(record) => {
                        if record.state != AlertState::Raised || !self.severities.contains(&record.severity) {
                            continue;
                        }
                        if posted < self.budget.alerts && queue.try_send(body(&payload(&record))).is_ok() {
                            posted += 1;
                        } else {
                            held_back += 1;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        // Not known to be of the chosen severities; counted all the same.
                        held_back += skipped;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = window.tick() => {
                    if held_back > 0 {
                        tracing::warn!(held_back, "webhook: alerts over the budget, posted as one summary");
                        if queue.try_send(body(&summary(held_back, self.budget))).is_ok() {
                            held_back = 0;
                        }
                    }
                    posted = 0;
                }
            }
        }
    }

    /// One worker: takes the next waiting body and delivers it, until the queue is gone.
    async fn work(self, waiting: Arc<Mutex<mpsc::Receiver<Arc<[u8]>>>>) {
        loop {
            let next = waiting.lock().await.recv().await;
            match next {
                Some(body) => self.deliver(axum::body::Bytes::from_owner(body)).await,
                None => return,
            }
        }
    }

    async fn deliver(&self, body: axum::body::Bytes) {
        let mut delay = self.retry_delay;
        for attempt in 1..=ATTEMPTS {
            let error = match self.post(body.clone()).await {
                Ok(status) if (200..300).contains(&status) => return,
                Ok(status) => format!("HTTP {status}"),
                Err(error) if error.is_timeout() => "no answer in time".to_owned(),
                Err(error) => error.to_string(),
            };
            if attempt == ATTEMPTS {
                tracing::warn!(%error, "webhook: not delivered after {ATTEMPTS} tries");
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

/// `text` with `&`, `<` and `>` escaped as Slack asks, so no id can become a mention
/// (`<!channel>`) or a link (`<http://evil|x>`).
pub fn escape_markup(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['&', '<', '>']) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

/// The POST body of one alert.
fn payload(record: &AlertRecord) -> serde_json::Value {
    let severity = record.severity.as_str().to_ascii_uppercase();
    let text = format!(
        "[{severity}] {}: participant {} in meeting {}: {}",
        escape_markup(record.kind.as_str()),
        escape_markup(&record.participant_id),
        escape_markup(&record.meeting_id),
        escape_markup(&record.message)
    );
    serde_json::json!({ "text": text, "alert": record })
}

/// The POST body saying that `held_back` alerts were over the budget.
fn summary(held_back: u64, budget: Budget) -> serde_json::Value {
    let text = format!(
        "[SUMMARY] {held_back} more alerts were not posted (over the budget of {} per {} s): see the dashboard",
        budget.alerts,
        budget.window.as_secs_f64()
    );
    serde_json::json!({ "text": text, "held_back": held_back })
}

/// `value` as JSON with `<`, `>` and `&` written as `\u` escapes (the same JSON to a parser): in
/// JSON text these characters only occur inside strings, so replacing them keeps it valid.
fn body(value: &serde_json::Value) -> Arc<[u8]> {
    let json = serde_json::to_string(value).expect("plain data always serializes");
    if !json.contains(['&', '<', '>']) {
        return Arc::from(json.into_bytes());
    }
    let escaped = json
        .replace('&', "\\u0026")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e");
    Arc::from(escaped.into_bytes())
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

    #[test]
    fn hostile_ids_cannot_become_mentions_or_links() {
        let record = AlertRecord {
            at: 1,
            meeting_id: "https://m.example/<http://evil.example|bank>".into(),
            participant_id: "<!channel> & <@U123>".into(),
            kind: crate::alerts::AlertKind::PacketLoss,
            severity: Severity::Warning,
            state: AlertState::Raised,
            message: "loss > 5 %".into(),
            cost: None,
        };
        let bytes = body(&payload(&record));
        let raw = std::str::from_utf8(&bytes).unwrap();
        assert!(!raw.contains(['<', '>']), "{raw}");
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            parsed["text"],
            "[WARNING] packet-loss: participant &lt;!channel&gt; &amp; &lt;@U123&gt; in meeting \
             https://m.example/&lt;http://evil.example|bank&gt;: loss &gt; 5 %"
        );
        // The record itself stays the API's, exactly.
        assert_eq!(parsed["alert"]["participant_id"], "<!channel> & <@U123>");
        assert_eq!(escape_markup("plain"), "plain");
    }
}
