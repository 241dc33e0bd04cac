//! The options form's state and reducer, and the host-permission pattern of a collector URL.

use std::rc::Rc;
use vitals_shared::messages::Settings;
use yew::Reducible;

/// A text field of the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    CollectorUrl,
    IngestKey,
    Label,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Loaded(Settings),
    Edit(Field, String),
    SetSending(bool),
    Saving,
    Saved,
    Failed(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptionsState {
    pub settings: Settings,
    pub loaded: bool,
    /// "Saving…", "Saved", or an error, shown under the form.
    pub message: Option<String>,
}

impl Reducible for OptionsState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            Action::Loaded(settings) => {
                next.settings = settings;
                next.loaded = true;
            }
            Action::Edit(field, value) => {
                let target = match field {
                    Field::CollectorUrl => &mut next.settings.collector_url,
                    Field::IngestKey => &mut next.settings.ingest_key,
                    Field::Label => &mut next.settings.label,
                };
                *target = value;
                next.message = None;
            }
            Action::SetSending(on) => {
                next.settings.sending = on;
                next.message = None;
            }
            Action::Saving => next.message = Some("Saving…".into()),
            Action::Saved => next.message = Some("Saved".into()),
            Action::Failed(e) => next.message = Some(format!("Not saved: {e}")),
        }
        Rc::new(next)
    }
}

/// The host-permission pattern for a collector URL (`https://c.example.com:8443/*`), or an
/// error a user can act on.
pub fn origin_pattern(collector_url: &str) -> Result<String, String> {
    let url = collector_url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "the collector URL must start with http:// or https://".to_string())?;
    if !matches!(scheme, "http" | "https") {
        return Err("the collector URL must start with http:// or https://".into());
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') || host.contains(char::is_whitespace) {
        return Err("the collector URL has no valid host".into());
    }
    // Match patterns carry no port: the pattern covers every port of the host.
    let host = match host.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
        None => host.split(':').next().unwrap_or_default().to_string(),
    };
    Ok(format!("{scheme}://{host}/*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_change_one_field_and_clear_the_message() {
        let s = Rc::new(OptionsState::default())
            .reduce(Action::Loaded(Settings {
                label: "old".into(),
                ..Settings::default()
            }))
            .reduce(Action::Saved);
        assert_eq!(s.message.as_deref(), Some("Saved"));
        let s = s
            .reduce(Action::Edit(Field::CollectorUrl, "http://127.0.0.1:7878".into()))
            .reduce(Action::SetSending(true));
        assert_eq!(s.settings.collector_url, "http://127.0.0.1:7878");
        assert_eq!(s.settings.label, "old");
        assert!(s.settings.sending && s.loaded);
        assert_eq!(s.message, None);
        let s = s.reduce(Action::Failed("quota".into()));
        assert_eq!(s.message.as_deref(), Some("Not saved: quota"));
    }

    #[test]
    fn origin_patterns_drop_port_path_and_query() {
        assert_eq!(origin_pattern("http://127.0.0.1:7878").unwrap(), "http://127.0.0.1/*");
        assert_eq!(
            origin_pattern(" https://c.example.com:8443/base?x=1 ").unwrap(),
            "https://c.example.com/*"
        );
        assert_eq!(origin_pattern("http://[::1]:7878/").unwrap(), "http://[::1]/*");
        assert!(origin_pattern("ftp://x").is_err());
        assert!(origin_pattern("127.0.0.1:7878").is_err());
        assert!(origin_pattern("http://").is_err());
    }
}
