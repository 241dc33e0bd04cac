//! The state of the popup's "Download report" and "Copy summary" buttons, and its reducer.

use std::rc::Rc;
use yew::Reducible;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Download,
    Copy,
}

/// What can happen to an export.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportAction {
    Started(Task),
    /// The report was handed to the browser as this file.
    Saved {
        file: String,
    },
    /// The summary is on the clipboard.
    Copied,
    /// The clipboard was refused: the summary is shown, selected, for the user to copy.
    CopyRefused {
        text: String,
    },
    Failed(String),
}

/// The outcome line under the buttons: `data-state` and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// "saved", "copied", "refused" or "failed".
    pub state: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportState {
    /// The task under way; the buttons are disabled meanwhile.
    pub busy: Option<Task>,
    pub outcome: Option<Outcome>,
    /// The summary to copy by hand, when the clipboard was refused.
    pub fallback: Option<String>,
}

impl Reducible for ExportState {
    type Action = ExportAction;

    fn reduce(self: Rc<Self>, action: ExportAction) -> Rc<Self> {
        let done = |state: &'static str, text: String, fallback: Option<String>| ExportState {
            busy: None,
            outcome: Some(Outcome { state, text }),
            fallback,
        };
        Rc::new(match action {
            // A second click while one task runs is ignored.
            ExportAction::Started(_) if self.busy.is_some() => return self,
            ExportAction::Started(task) => ExportState {
                busy: Some(task),
                outcome: None,
                fallback: None,
            },
            ExportAction::Saved { file } => done("saved", format!("Report saved as {file}."), None),
            ExportAction::Copied => done("copied", "Summary copied to the clipboard.".into(), None),
            ExportAction::CopyRefused { text } => done(
                "refused",
                "The browser refused the clipboard: the summary is selected below, press Ctrl+C (⌘C) to copy it."
                    .into(),
                Some(text),
            ),
            ExportAction::Failed(e) => done("failed", e, None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_runs_once_and_ends_with_an_outcome() {
        let s = Rc::new(ExportState::default()).reduce(ExportAction::Started(Task::Download));
        assert_eq!(s.busy, Some(Task::Download));
        let again = s.clone().reduce(ExportAction::Started(Task::Copy));
        assert!(Rc::ptr_eq(&s, &again), "a second click while busy is ignored");
        let s = s.reduce(ExportAction::Saved {
            file: "call-vitals-report-x.json".into(),
        });
        assert_eq!(s.busy, None);
        let outcome = s.outcome.clone().unwrap();
        assert_eq!(outcome.state, "saved");
        assert!(outcome.text.contains("call-vitals-report-x.json"));
    }

    #[test]
    fn a_refused_clipboard_keeps_the_text_until_the_next_task() {
        let s = Rc::new(ExportState::default())
            .reduce(ExportAction::Started(Task::Copy))
            .reduce(ExportAction::CopyRefused { text: "summary".into() });
        assert_eq!(s.fallback.as_deref(), Some("summary"));
        assert_eq!(s.outcome.as_ref().unwrap().state, "refused");
        let s = s.reduce(ExportAction::Started(Task::Copy));
        assert_eq!((s.fallback.clone(), s.outcome.clone()), (None, None));
        let s = s.reduce(ExportAction::Failed("Nothing recorded yet.".into()));
        assert_eq!(s.outcome.as_ref().unwrap().state, "failed");
        let s = s.reduce(ExportAction::Started(Task::Copy)).reduce(ExportAction::Copied);
        assert_eq!(s.outcome.as_ref().unwrap().state, "copied");
    }
}
