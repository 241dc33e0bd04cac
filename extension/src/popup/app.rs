//! The popup's root component: polls the offscreen document every second and lays out the parts.

use super::collector_line::CollectorLine;
use super::findings::Findings;
use super::no_call::NoCall;
use super::peers::Peers;
use super::quality_bars::QualityBars;
use super::rates::Rates;
use super::relay_warning::RelayWarning;
use super::report_actions::ReportActions;
use super::sparkline::Sparkline;
use super::state::{Action, PopupState};
use crate::driver::HISTORY_SAMPLES;
use crate::{browser, offscreen_io, upload_store};
use gloo_timers::callback::Interval;
use vitals_shared::messages::{CollectorState, CollectorStatus, Coverage, TabView};
use yew::prelude::*;

fn has_call(view: &TabView) -> bool {
    view.metrics.as_ref().is_some_and(|m| !m.peers.is_empty())
}

/// The tab the popup page is pinned to (`popup.html?tab=123`, for a popup kept open as a page
/// beside several calls), if any.
fn pinned_tab() -> Option<i64> {
    let search = web_sys::window()?.location().search().ok()?;
    pinned_in(&search)
}

/// The `tab` parameter of a query string (`?tab=123`).
pub fn pinned_in(search: &str) -> Option<i64> {
    search
        .trim_start_matches('?')
        .split('&')
        .find_map(|pair| pair.strip_prefix("tab="))
        .and_then(|id| id.parse().ok())
}

/// Asks for the active tab's view, or for the tab that last had a call when the popup runs in
/// a tab of its own or the active tab has no call (then, without a call anywhere, the active
/// tab's ended call if it left a report, else the last recorded one). A pinned popup asks for
/// its tab only.
async fn fetch(dispatch: UseReducerDispatcher<PopupState>) {
    if let Some(tab) = pinned_tab() {
        let answer = browser::get_tab(Some(tab)).await;
        let shows_call = matches!(&answer, Ok(Some(view)) if has_call(view));
        dispatch.dispatch(Action::Coverage(coverage_unless(shows_call, Some(tab)).await));
        dispatch.dispatch(match answer {
            Ok(view) => Action::Received(view.map(Box::new)),
            Err(e) => Action::Failed(e.to_string()),
        });
        return;
    }
    let active = browser::active_tab_id().await;
    let own = browser::own_tab_id().await;
    let first = if active.is_some() && active != own {
        browser::get_tab(active).await
    } else {
        Ok(None)
    };
    let answer = match first {
        Ok(Some(view)) if has_call(&view) => Ok(Some(view)),
        Ok(active) => match browser::get_tab(None).await {
            Ok(Some(other)) if has_call(&other) => Ok(Some(other)),
            Ok(other) => Ok(active.filter(|v| v.recorded_since_ms.is_some()).or(other)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let shows_call = matches!(&answer, Ok(Some(view)) if has_call(view));
    let about = active.filter(|_| active != own);
    dispatch.dispatch(Action::Coverage(coverage_unless(shows_call, about).await));
    dispatch.dispatch(match answer {
        Ok(None) => Action::NoDocument(idle_status().await),
        Ok(view) => Action::Received(view.map(Box::new)),
        Err(e) => Action::Failed(e.to_string()),
    });
}

/// Whether `tab`'s page is measured at all, asked only when the popup shows no call (it then
/// says why a running call may be unseen).
async fn coverage_unless(shows_call: bool, tab: Option<i64>) -> Option<Coverage> {
    match tab {
        Some(tab) if !shows_call => browser::get_coverage(tab).await.ok().flatten(),
        _ => None,
    }
}

/// The collector line while no offscreen document runs: "off" unless sending is configured,
/// else "idle" with the events that wait in the stored queue for the next call (the popup
/// shares the offscreen document's `localStorage`).
async fn idle_status() -> CollectorStatus {
    let sending = browser::load_settings()
        .await
        .is_ok_and(|s| s.sending && !s.collector_url.trim().is_empty());
    let stored = offscreen_io::load();
    let (queued, dropped) = upload_store::waiting(stored.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    CollectorStatus {
        state: if sending {
            CollectorState::Idle
        } else {
            CollectorState::Off
        },
        queued,
        dropped,
        ..CollectorStatus::default()
    }
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(PopupState::default);
    {
        let dispatch = state.dispatcher();
        use_effect_with((), move |_| {
            let poll = move || wasm_bindgen_futures::spawn_local(fetch(dispatch.clone()));
            poll();
            let interval = Interval::new(1_000, poll);
            move || drop(interval)
        });
    }
    let body = match state.call() {
        Some(tab) => {
            let call = &tab.figures;
            html! {
            <>
                <QualityBars quality={call.quality} />
                <Findings findings={tab.findings.clone()} />
                if call.using_relay {
                    <RelayWarning protocol={call.relay_protocol.clone()} />
                }
                <Rates upload_kbps={call.upload_kbps} download_kbps={call.download_kbps} rtt_ms={call.rtt_ms}
                    loss_pct={call.loss_pct} jitter_ms={call.jitter_ms} />
                <section class="sparklines">
                    <Sparkline id="spark-bitrate" label="Bitrate, last 60 s" capacity={HISTORY_SAMPLES}
                        values={state.history().iter().map(|s| s.bitrate_kbps).collect::<Vec<_>>()} />
                    <Sparkline id="spark-rtt" label="Round trip, last 60 s" capacity={HISTORY_SAMPLES}
                        values={state.history().iter().map(|s| s.rtt_ms).collect::<Vec<_>>()} />
                </section>
                <Peers peers={tab.peers.clone()} findings={tab.findings.clone()} />
                <ReportActions key={format!("{:?}", state.shown_tab())} tab={state.shown_tab()} />
            </>
            }
        }
        None if state.loaded => html! {
            <>
                <NoCall coverage={state.coverage} />
                if state.recorded() {
                    <p id="call-ended" class="no-call">{ "The last call's report is still available." }</p>
                    <ReportActions key={format!("{:?}", state.shown_tab())} tab={state.shown_tab()} />
                }
            </>
        },
        None => html! { <p class="loading">{ "Loading…" }</p> },
    };
    html! {
        <main class="popup">
            <header><h1>{ "Call Vitals" }</h1></header>
            { body }
            <CollectorLine status={state.collector()} />
            if let Some(error) = &state.error {
                <p class="error">{ error.clone() }</p>
            }
        </main>
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_popup_is_pinned_by_its_tab_parameter() {
        assert_eq!(super::pinned_in("?tab=42"), Some(42));
        assert_eq!(super::pinned_in("?x=1&tab=7"), Some(7));
        assert_eq!(super::pinned_in(""), None);
        assert_eq!(super::pinned_in("?tab=x"), None);
    }
}
