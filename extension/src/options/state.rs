//! The options form's state and reducer, and the host-permission pattern of a collector URL.

use super::sites::{self, SiteError};
use std::rc::Rc;
use vitals_shared::messages::{Settings, SitesMode};
use yew::Reducible;

/// A text field of the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    CollectorUrl,
    IngestKey,
    Label,
    MeetingIdSalt,
}

/// Whether Chrome lets the extension reach the collector's host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Access {
    /// No collector URL saved, or not checked yet.
    #[default]
    Unknown,
    Granted,
    Missing,
    /// Chrome's permission prompt is open.
    Asking,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Loaded(Settings),
    Edit(Field, String),
    SetSending(bool),
    SetSitesMode(SitesMode),
    EditSiteInput(String),
    /// Moves the valid entries of the site input to the list; invalid ones stay in the input.
    AddSites,
    RemoveSite(usize),
    /// Saving these settings (from [`OptionsState::to_save`]); `asking` when Chrome is asked
    /// for the collector's host permission.
    Saving {
        settings: Settings,
        asking: bool,
    },
    Saved,
    Failed(String),
    /// The answer to the permission request made on Save.
    AccessAnswered(bool),
    /// What `chrome.permissions.contains` says now.
    AccessChecked(bool),
    /// Whether Chrome grants the extension every site (the user can limit it in chrome://extensions).
    AllSitesAccess(bool),
    /// Chrome's permissions changed: check them again.
    PermissionsChanged,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptionsState {
    pub settings: Settings,
    pub loaded: bool,
    /// "Saving…", "Saved", or an error, shown under the form.
    pub message: Option<String>,
    /// The site input's text, kept until every entry in it is valid.
    pub site_input: String,
    pub site_error: Option<String>,
    /// The collector URL as last loaded or saved: the one whose permission is shown.
    pub saved_url: String,
    pub access: Access,
    pub all_sites_access: Option<bool>,
    /// Bumped when Chrome's permissions change, so the page checks them again.
    pub permissions_epoch: u32,
}

/// Adds the entries of `input` to `list` (normalised, without duplicates). Returns the
/// entries that are not valid, joined by spaces, and the first one's error.
fn absorb(list: &mut Vec<String>, input: &str) -> Option<(String, SiteError)> {
    let mut rejected: Vec<&str> = Vec::new();
    let mut first_error = None;
    for entry in sites::entries(input) {
        match sites::normalize(entry) {
            Ok(pattern) => {
                if !list.contains(&pattern) {
                    list.push(pattern);
                }
            }
            Err(e) => {
                rejected.push(entry);
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map(|e| (rejected.join(" "), e))
}

const TOO_LONG: &str = "the site list is too long for Chrome's synced settings (8 KB): remove some sites";

/// Why the form's settings cannot be saved: in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Site(#[from] SiteError),
    /// A stored site that is not valid (shown as the list shows it).
    #[error("“{0}” is not a valid site: remove it")]
    StoredSite(String),
    #[error("{TOO_LONG}")]
    TooLong,
    #[error("add at least one site to “Only these sites”, or choose “All sites”")]
    NoSite,
    #[error(transparent)]
    Collector(#[from] CollectorUrlError),
}

/// Why a collector URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectorUrlError {
    #[error("the collector URL must start with http:// or https://")]
    Scheme,
    #[error("collector URL {0}")]
    Site(SiteError),
    /// Plain http to a remote host (see `privacy::collector_base`): the events would cross the
    /// network unencrypted.
    #[error("{0}")]
    Insecure(vitals_shared::privacy::CollectorUrlError),
}

impl OptionsState {
    /// The settings to save: the form's, with the site input's entries added, or the reason
    /// they cannot be saved (nothing in the form changes then).
    pub fn to_save(&self) -> Result<Settings, SaveError> {
        let mut settings = self.settings.clone();
        if let Some((_, e)) = absorb(&mut settings.sites, &self.site_input) {
            return Err(e.into());
        }
        if let Some(bad) = settings.sites.iter().find(|p| sites::normalize(p).as_ref() != Ok(*p)) {
            return Err(SaveError::StoredSite(sites::display(bad)));
        }
        if !sites::fits_sync_storage(&settings.sites) {
            return Err(SaveError::TooLong);
        }
        if settings.sites_mode == SitesMode::Allow && settings.sites.is_empty() {
            return Err(SaveError::NoSite);
        }
        if !settings.collector_url.trim().is_empty() {
            origin_pattern(&settings.collector_url)?;
        }
        Ok(settings)
    }
}

impl Reducible for OptionsState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            Action::Loaded(settings) => {
                next.saved_url = settings.collector_url.clone();
                next.settings = settings;
                next.loaded = true;
            }
            Action::Edit(field, value) => {
                let target = match field {
                    Field::CollectorUrl => &mut next.settings.collector_url,
                    Field::IngestKey => &mut next.settings.ingest_key,
                    Field::Label => &mut next.settings.label,
                    Field::MeetingIdSalt => &mut next.settings.meeting_id_salt,
                };
                *target = value;
                next.message = None;
            }
            Action::SetSending(on) => {
                next.settings.sending = on;
                next.message = None;
            }
            Action::SetSitesMode(mode) => {
                next.settings.sites_mode = mode;
                next.message = None;
            }
            Action::EditSiteInput(text) => {
                next.site_input = text;
                next.site_error = None;
            }
            Action::AddSites => {
                let mut list = next.settings.sites.clone();
                let outcome = absorb(&mut list, &next.site_input);
                if sites::fits_sync_storage(&list) {
                    next.settings.sites = list;
                    (next.site_input, next.site_error) = match outcome {
                        Some((rest, e)) => (rest, Some(e.to_string())),
                        None => (String::new(), None),
                    };
                } else {
                    next.site_error = Some(TOO_LONG.into());
                }
                next.message = None;
            }
            Action::RemoveSite(i) => {
                if i < next.settings.sites.len() {
                    next.settings.sites.remove(i);
                }
                next.message = None;
            }
            Action::Saving { settings, asking } => {
                next.settings = settings;
                next.site_input.clear();
                next.site_error = None;
                if asking {
                    next.access = Access::Asking;
                }
                next.message = Some("Saving…".into());
            }
            Action::Saved => {
                next.saved_url = next.settings.collector_url.clone();
                if next.saved_url.trim().is_empty() {
                    next.access = Access::Unknown;
                }
                next.message = Some("Saved. Site changes apply to pages opened or reloaded from now on.".into());
            }
            Action::Failed(e) => next.message = Some(format!("Not saved: {e}")),
            Action::AccessAnswered(granted) => {
                next.access = if granted { Access::Granted } else { Access::Missing };
            }
            // A check while Chrome's prompt is open does not end the wait for its answer.
            Action::AccessChecked(false) if next.access == Access::Asking => {}
            Action::AccessChecked(granted) => {
                next.access = if granted { Access::Granted } else { Access::Missing };
            }
            Action::AllSitesAccess(all) => next.all_sites_access = Some(all),
            Action::PermissionsChanged => next.permissions_epoch = next.permissions_epoch.wrapping_add(1),
        }
        Rc::new(next)
    }
}

/// The host-permission pattern for a collector URL (`https://c.example.com/*`: every port of
/// the host), or an error a user can act on.
pub fn origin_pattern(collector_url: &str) -> Result<String, CollectorUrlError> {
    let url = collector_url.trim();
    let web = url
        .split_once("://")
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"));
    if !web {
        return Err(CollectorUrlError::Scheme);
    }
    vitals_shared::privacy::collector_base(url).map_err(CollectorUrlError::Insecure)?;
    sites::normalize(url).map_err(CollectorUrlError::Site)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_http_remote_collector_is_refused_with_the_reason() {
        let e = origin_pattern("http://vitals.example.com").unwrap_err();
        assert!(e.to_string().contains("must use https://"), "{e}");
        assert!(origin_pattern("http://10.1.2.3:7878").is_err());
        assert_eq!(
            origin_pattern("http://127.0.0.1:7878").as_deref(),
            Ok("http://127.0.0.1/*")
        );
        assert!(origin_pattern("https://vitals.example.com").is_ok());
    }

    #[test]
    fn edits_change_one_field_and_clear_the_message() {
        let s = Rc::new(OptionsState::default())
            .reduce(Action::Loaded(Settings {
                label: "old".into(),
                ..Settings::default()
            }))
            .reduce(Action::Saved);
        assert!(s.message.as_deref().unwrap().starts_with("Saved"));
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

    fn with_input(s: Rc<OptionsState>, text: &str) -> Rc<OptionsState> {
        s.reduce(Action::EditSiteInput(text.into())).reduce(Action::AddSites)
    }

    #[test]
    fn adding_sites_keeps_invalid_entries_in_the_input_with_an_error() {
        let s = Rc::new(OptionsState::default()).reduce(Action::SetSitesMode(SitesMode::Allow));
        let s = with_input(s, "meet.example.com, meet.*.com *.example.org meet.example.com");
        assert_eq!(s.settings.sites, ["*://meet.example.com/*", "*://*.example.org/*"]);
        assert_eq!(s.site_input, "meet.*.com");
        assert!(
            s.site_error.as_deref().unwrap().starts_with("“meet.*.com”"),
            "{:?}",
            s.site_error
        );
        let s = s.reduce(Action::EditSiteInput("meet.other.com".into()));
        assert_eq!(s.site_error, None, "editing clears the error");
        let s = s.reduce(Action::AddSites);
        assert_eq!(s.site_input, "");
        assert_eq!(s.settings.sites.len(), 3);
        let s = s.reduce(Action::RemoveSite(0)).reduce(Action::RemoveSite(9));
        assert_eq!(s.settings.sites, ["*://*.example.org/*", "*://meet.other.com/*"]);
    }

    #[test]
    fn a_list_too_long_to_sync_is_refused_whole() {
        let many: Vec<String> = (0..300).map(|i| format!("meet-{i:04}.example.com")).collect();
        let s = with_input(Rc::new(OptionsState::default()), &many.join(" "));
        assert!(s.settings.sites.is_empty());
        assert_eq!(s.site_input, many.join(" "), "nothing typed is lost");
        assert!(s.site_error.as_deref().unwrap().contains("too long"));
    }

    #[test]
    fn to_save_adds_the_pending_input_and_refuses_what_cannot_work() {
        let s = Rc::new(OptionsState::default()).reduce(Action::SetSitesMode(SitesMode::Allow));
        assert!(s.to_save().unwrap_err().to_string().contains("at least one site"));
        let s = s.reduce(Action::EditSiteInput("localhost".into()));
        assert_eq!(s.to_save().unwrap().sites, ["*://localhost/*"]);
        let bad = s.clone().reduce(Action::EditSiteInput("localhost ftp://x".into()));
        assert!(bad.to_save().unwrap_err().to_string().contains("only http and https"));
        assert_eq!(bad.site_input, "localhost ftp://x", "a refused save changes nothing");
        let deny_empty = Rc::new(OptionsState::default()).reduce(Action::SetSitesMode(SitesMode::Deny));
        assert!(deny_empty.to_save().is_ok(), "an empty deny list means every site");
        let url = s.reduce(Action::Edit(Field::CollectorUrl, "127.0.0.1:7878".into()));
        assert!(url.to_save().unwrap_err().to_string().contains("http://"));
        // A stored entry that is not a normalised pattern (written by another version).
        let loaded = Rc::new(OptionsState::default()).reduce(Action::Loaded(Settings {
            sites: vec!["*://ok.example.com/*".into(), "meet.*.com".into()],
            ..Settings::default()
        }));
        assert!(loaded
            .to_save()
            .unwrap_err()
            .to_string()
            .contains("“meet.*.com” is not a valid site"));
    }

    #[test]
    fn the_permission_prompt_is_waited_for_until_answered() {
        let s = Rc::new(OptionsState::default()).reduce(Action::Saving {
            settings: Settings {
                collector_url: "https://c.example.com".into(),
                ..Settings::default()
            },
            asking: true,
        });
        assert_eq!(s.access, Access::Asking);
        let s = s.reduce(Action::Saved).reduce(Action::AccessChecked(false));
        assert_eq!(s.access, Access::Asking, "a check does not end the prompt");
        assert_eq!(s.saved_url, "https://c.example.com");
        let s = s.reduce(Action::AccessAnswered(false));
        assert_eq!(s.access, Access::Missing);
        let s = s.reduce(Action::PermissionsChanged).reduce(Action::AccessChecked(true));
        assert_eq!((s.access, s.permissions_epoch), (Access::Granted, 1));
        let cleared = s
            .reduce(Action::Edit(Field::CollectorUrl, String::new()))
            .reduce(Action::Saved);
        assert_eq!(cleared.access, Access::Unknown);
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
