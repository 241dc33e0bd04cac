//! The options form: loads the effective settings, saves them and requests the collector's host permission.

use super::state::{origin_pattern, Action, Field, OptionsState};
use crate::browser;
use web_sys::HtmlInputElement;
use yew::prelude::*;

async fn save(state: OptionsState, dispatch: UseReducerDispatcher<OptionsState>) {
    let settings = state.settings;
    if !settings.collector_url.trim().is_empty() {
        match origin_pattern(&settings.collector_url) {
            // Localhost is granted by the manifest; a refusal elsewhere shows up as upload errors.
            Ok(pattern) => {
                let _ = browser::request_host_permission(&pattern).await;
            }
            Err(e) => return dispatch.dispatch(Action::Failed(e)),
        }
    }
    dispatch.dispatch(match browser::save_settings(&settings).await {
        Ok(()) => Action::Saved,
        Err(e) => Action::Failed(e),
    });
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(OptionsState::default);
    {
        let dispatch = state.dispatcher();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                dispatch.dispatch(match browser::load_settings().await {
                    Ok(s) => Action::Loaded(s),
                    Err(e) => Action::Failed(e),
                });
            });
        });
    }
    let text = |field: Field| {
        let dispatch = state.dispatcher();
        Callback::from(move |e: InputEvent| {
            let input: HtmlInputElement = e.target_unchecked_into();
            dispatch.dispatch(Action::Edit(field, input.value()));
        })
    };
    let on_sending = {
        let dispatch = state.dispatcher();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            dispatch.dispatch(Action::SetSending(input.checked()));
        })
    };
    let on_submit = {
        let state = state.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let dispatch = state.dispatcher();
            dispatch.dispatch(Action::Saving);
            wasm_bindgen_futures::spawn_local(save((*state).clone(), dispatch));
        })
    };
    let s = &state.settings;
    html! {
        <main class="options">
            <h1>{ "Call Vitals options" }</h1>
            <form id="options-form" onsubmit={on_submit}>
                <label>{ "Collector URL" }
                    <input id="collector-url" type="url" placeholder="http://127.0.0.1:7878"
                        value={s.collector_url.clone()} oninput={text(Field::CollectorUrl)} />
                </label>
                <label>{ "Ingest key" }
                    <input id="ingest-key" type="password" autocomplete="off"
                        value={s.ingest_key.clone()} oninput={text(Field::IngestKey)} />
                </label>
                <label>{ "Your name (optional, shown to admins)" }
                    <input id="label" type="text" maxlength="256"
                        value={s.label.clone()} oninput={text(Field::Label)} />
                </label>
                <label class="check">
                    <input id="sending" type="checkbox" checked={s.sending} onchange={on_sending} />
                    { " Send metrics to the collector" }
                </label>
                <button id="save" type="submit" disabled={!state.loaded}>{ "Save" }</button>
            </form>
            if let Some(m) = &state.message {
                <p id="status" class="status">{ m.clone() }</p>
            }
        </main>
    }
}
