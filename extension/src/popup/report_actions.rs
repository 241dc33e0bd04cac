//! The "Download report" and "Copy summary" buttons, their confirmation line and the copy-by-hand fallback.

use super::export;
use super::export_state::{ExportAction, ExportState, Task};
use super::summary::summary_text;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct ReportActionsProps {
    /// The tab whose call the popup shows (`None`: the tab that last had a call).
    pub tab: Option<i64>,
}

async fn run(task: Task, tab: Option<i64>, dispatch: UseReducerDispatcher<ExportState>) {
    let report = match export::fetch_report(tab).await {
        Ok(r) => r,
        Err(e) => return dispatch.dispatch(ExportAction::Failed(e.to_string())),
    };
    dispatch.dispatch(match task {
        Task::Download => match export::download(&report) {
            Ok(file) => ExportAction::Saved { file },
            Err(e) => ExportAction::Failed(format!("The report could not be saved: {e}")),
        },
        Task::Copy => {
            let text = summary_text(&report);
            match export::copy_to_clipboard(&text).await {
                Ok(()) => ExportAction::Copied,
                Err(_) => ExportAction::CopyRefused { text },
            }
        }
    });
}

#[function_component(ReportActions)]
pub fn report_actions(props: &ReportActionsProps) -> Html {
    let state = use_reducer(ExportState::default);
    let fallback_ref = use_node_ref();
    let start = |task: Task| {
        let dispatch = state.dispatcher();
        let tab = props.tab;
        Callback::from(move |_: MouseEvent| {
            dispatch.dispatch(ExportAction::Started(task));
            wasm_bindgen_futures::spawn_local(run(task, tab, dispatch.clone()));
        })
    };
    {
        // Select the fallback text as soon as it is shown.
        let fallback_ref = fallback_ref.clone();
        use_effect_with(state.fallback.clone(), move |text| {
            if text.is_some() {
                if let Some(el) = fallback_ref.cast::<web_sys::HtmlElement>() {
                    export::select_all(&el);
                }
            }
        });
    }
    let busy = state.busy.is_some();
    html! {
        <section class="report-actions">
            <div class="report-buttons">
                <button id="download-report" type="button" disabled={busy} onclick={start(Task::Download)}
                    title="Save a JSON report of the last 10 minutes of this call (no IP address)">
                    { if state.busy == Some(Task::Download) { "Saving…" } else { "Download report" } }
                </button>
                <button id="copy-summary" type="button" disabled={busy} onclick={start(Task::Copy)}
                    title="Copy a short summary to paste into a support ticket">
                    { if state.busy == Some(Task::Copy) { "Copying…" } else { "Copy summary" } }
                </button>
            </div>
            if let Some(outcome) = &state.outcome {
                <p id="export-status" class={classes!("export-status", outcome.state)} data-state={outcome.state}
                    role="status">{ outcome.text.clone() }</p>
            }
            if let Some(text) = &state.fallback {
                <textarea id="summary-text" class="summary-text" readonly=true rows="8" ref={fallback_ref}
                    value={text.clone()} aria-label="Call summary" />
            }
        </section>
    }
}
