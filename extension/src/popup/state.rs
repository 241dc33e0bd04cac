//! The popup's state and its reducer: what the offscreen document last said about the tab.

use std::rc::Rc;
use vitals_shared::messages::{CollectorState, CollectorStatus, Coverage, HistorySample, TabView};
use vitals_shared::metrics::TabMetrics;
use yew::Reducible;

/// What can happen to the popup's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The offscreen document answered (`None`: nobody answered, so no call anywhere).
    Received(Option<Box<TabView>>),
    /// No offscreen document runs (no call anywhere): the collector line as the settings and
    /// the stored upload queue give it.
    NoDocument(CollectorStatus),
    /// Asking failed.
    Failed(String),
    /// Whether the tab the popup is about is measured at all (asked only while it shows no
    /// call; `None` otherwise).
    Coverage(Option<Coverage>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PopupState {
    /// An answer has come (before that the popup shows "Loading").
    pub loaded: bool,
    pub view: Option<TabView>,
    pub error: Option<String>,
    /// The collector line while no offscreen document runs.
    pub idle: Option<CollectorStatus>,
    /// The popup's tab's coverage, while it shows no call (says why a call may be unseen).
    pub coverage: Option<Coverage>,
}

impl PopupState {
    /// The call to show: metrics with at least one live connection.
    pub fn call(&self) -> Option<&TabMetrics> {
        self.view.as_ref()?.metrics.as_ref().filter(|m| !m.peers.is_empty())
    }

    /// The shown call's last minute, oldest first (empty without a call).
    pub fn history(&self) -> &[HistorySample] {
        match (self.call(), &self.view) {
            (Some(_), Some(view)) => &view.history,
            _ => &[],
        }
    }

    /// The tab the popup shows (`None`: the offscreen document picks the tab that last had a call).
    pub fn shown_tab(&self) -> Option<i64> {
        self.view.as_ref()?.tab
    }

    /// The shown tab has a recording its report can be made of (during the call and after it).
    pub fn recorded(&self) -> bool {
        self.view.as_ref().is_some_and(|v| v.recorded_since_ms.is_some())
    }

    pub fn collector(&self) -> CollectorStatus {
        self.view
            .as_ref()
            .map(|v| v.collector.clone())
            .or_else(|| self.idle.clone())
            .unwrap_or_else(|| CollectorStatus {
                state: CollectorState::Off,
                ..CollectorStatus::default()
            })
    }
}

impl Reducible for PopupState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let next = match action {
            Action::Received(view) => PopupState {
                loaded: true,
                view: view.map(|v| *v),
                error: None,
                idle: None,
                coverage: self.coverage,
            },
            Action::NoDocument(status) => PopupState {
                loaded: true,
                view: None,
                error: None,
                idle: Some(status),
                coverage: self.coverage,
            },
            // Keep showing the last figures: one failed poll should not blank the popup.
            Action::Failed(error) => PopupState {
                loaded: true,
                view: self.view.clone(),
                error: Some(error),
                idle: self.idle.clone(),
                coverage: self.coverage,
            },
            Action::Coverage(coverage) => PopupState {
                coverage,
                ..(*self).clone()
            },
        };
        if next == *self {
            self
        } else {
            Rc::new(next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitals_shared::metrics::{Figures, PeerMetrics};

    fn view_with_peers(n: usize) -> TabView {
        TabView {
            tab: Some(3),
            metrics: Some(TabMetrics {
                figures: Figures {
                    upload_kbps: Some(500.0),
                    ..Figures::default()
                },
                peers: vec![PeerMetrics::default(); n],
                ..TabMetrics::default()
            }),
            collector: CollectorStatus {
                state: CollectorState::Connected,
                ..CollectorStatus::default()
            },
            history: Vec::new(),
            recorded_since_ms: None,
        }
    }

    #[test]
    fn an_answer_with_connections_is_a_call() {
        let s = Rc::new(PopupState::default()).reduce(Action::Received(Some(Box::new(view_with_peers(1)))));
        assert!(s.loaded);
        assert_eq!(s.call().unwrap().figures.upload_kbps, Some(500.0));
        assert_eq!(s.collector().state, "connected");
    }

    #[test]
    fn no_answer_or_no_connections_is_no_call() {
        let s = Rc::new(PopupState::default()).reduce(Action::Received(None));
        assert!(s.loaded && s.call().is_none());
        assert_eq!(s.collector().state, "off");
        let s = s.reduce(Action::Received(Some(Box::new(view_with_peers(0)))));
        assert!(s.call().is_none());
    }

    #[test]
    fn without_a_document_the_stored_queue_is_shown_until_one_answers() {
        let idle = CollectorStatus {
            state: CollectorState::Idle,
            queued: 3,
            dropped: 1,
            ..CollectorStatus::default()
        };
        let s = Rc::new(PopupState::default()).reduce(Action::NoDocument(idle.clone()));
        assert!(s.loaded && s.call().is_none());
        assert_eq!(s.collector(), idle);
        let s = s.reduce(Action::Failed("boom".into()));
        assert_eq!(s.collector(), idle);
        let s = s.reduce(Action::Received(Some(Box::new(view_with_peers(1)))));
        assert_eq!(s.collector().state, "connected");
    }

    #[test]
    fn history_is_shown_only_with_a_call() {
        let sample = HistorySample {
            at_ms: 1.0,
            bitrate_kbps: Some(9.0),
            rtt_ms: None,
        };
        let with = |n| TabView {
            history: vec![sample.clone()],
            ..view_with_peers(n)
        };
        let s = Rc::new(PopupState::default()).reduce(Action::Received(Some(Box::new(with(1)))));
        assert_eq!(s.history(), std::slice::from_ref(&sample));
        let s = s.reduce(Action::Received(Some(Box::new(with(0)))));
        assert!(s.history().is_empty());
    }

    #[test]
    fn a_failure_keeps_the_last_figures() {
        let s = Rc::new(PopupState::default()).reduce(Action::Received(Some(Box::new(view_with_peers(2)))));
        let s = s.reduce(Action::Failed("boom".into()));
        assert_eq!(s.error.as_deref(), Some("boom"));
        assert!(s.call().is_some());
        let s = s.reduce(Action::Received(Some(Box::new(view_with_peers(2)))));
        assert_eq!(s.error, None);
    }

    #[test]
    fn coverage_outlives_the_answers_until_it_is_asked_again() {
        let s = Rc::new(PopupState::default()).reduce(Action::Coverage(Some(Coverage::ReloadNeeded)));
        assert!(!s.loaded, "coverage alone is no answer about the call");
        let s = s.reduce(Action::NoDocument(CollectorStatus::default()));
        assert_eq!(s.coverage, Some(Coverage::ReloadNeeded));
        let s = s.reduce(Action::Received(None)).reduce(Action::Failed("boom".into()));
        assert_eq!(s.coverage, Some(Coverage::ReloadNeeded));
        let s = s.reduce(Action::Coverage(None));
        assert_eq!(s.coverage, None);
    }

    #[test]
    fn an_unchanged_answer_keeps_the_same_state() {
        let s = Rc::new(PopupState::default()).reduce(Action::Received(None));
        let again = s.clone().reduce(Action::Received(None));
        assert!(Rc::ptr_eq(&s, &again));
    }
}
