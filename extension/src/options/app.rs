//! The options form: loads the effective settings, saves them, and asks for and shows the collector's host permission.

use super::site_list::SiteList;
use super::state::{origin_pattern, Access, Action, Field, OptionsState};
use crate::browser;
use vitals_shared::messages::Settings;
use web_sys::HtmlInputElement;
use yew::prelude::*;

/// Saves `settings`; when `permission` is given (the collector's host pattern), Chrome is
/// asked for it at the same time, still inside the Save click's user activation. Saving never
/// waits for the answer: Chrome's prompt may stay open as long as the user leaves it.
fn save(settings: Settings, permission: Option<String>, dispatch: UseReducerDispatcher<OptionsState>) {
    if let Some(pattern) = permission {
        let dispatch = dispatch.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let granted = browser::request_host_permission(&pattern).await;
            dispatch.dispatch(Action::AccessAnswered(granted.unwrap_or(false)));
        });
    }
    wasm_bindgen_futures::spawn_local(async move {
        dispatch.dispatch(match browser::save_settings(&settings).await {
            Ok(()) => Action::Saved,
            Err(e) => Action::Failed(e.to_string()),
        });
    });
}

/// What the page says about the collector's host permission.
fn access_line(access: Access, saved_url: &str) -> Html {
    let Ok(pattern) = origin_pattern(saved_url) else {
        return Html::default();
    };
    let host = pattern.trim_end_matches("/*");
    let (state, text) = match access {
        Access::Unknown => return Html::default(),
        Access::Granted => ("granted", format!("Chrome lets Call Vitals send to {host}.")),
        Access::Asking => (
            "asking",
            format!("Waiting for your answer to Chrome's prompt about access to {host}…"),
        ),
        Access::Missing => (
            "missing",
            format!(
                "Call Vitals has no access to {host}. Sending works only if the collector accepts \
                 cross-origin requests (the Call Vitals collector does); otherwise every upload fails \
                 and the popup shows the collector as unreachable. To grant access, press Save and \
                 accept Chrome's prompt, or allow the site under Site access in chrome://extensions."
            ),
        ),
    };
    html! { <p id="collector-access" class={classes!("access", state)} data-state={state}>{ text }</p> }
}

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(OptionsState::default);
    {
        let dispatch = state.dispatcher();
        use_effect_with((), move |_| {
            let changed = dispatch.clone();
            // Without the listener the page shows access as of its last check only.
            let _ = browser::on_permissions_changed(move || changed.dispatch(Action::PermissionsChanged));
            wasm_bindgen_futures::spawn_local(async move {
                dispatch.dispatch(match browser::load_settings().await {
                    Ok(s) => Action::Loaded(s),
                    Err(e) => Action::Failed(e.to_string()),
                });
            });
        });
    }
    {
        // Check the saved collector's access, and the extension's site access, whenever the
        // saved URL or Chrome's permissions change.
        let dispatch = state.dispatcher();
        let deps = (state.loaded, state.saved_url.clone(), state.permissions_epoch);
        use_effect_with(deps, move |(loaded, url, _)| {
            let pattern = origin_pattern(url).ok();
            if *loaded {
                wasm_bindgen_futures::spawn_local(async move {
                    if let Ok(all) = browser::has_host_permissions(&["*://*/*"]).await {
                        dispatch.dispatch(Action::AllSitesAccess(all));
                    }
                    if let Some(pattern) = pattern {
                        if let Ok(granted) = browser::has_host_permissions(&[&pattern]).await {
                            dispatch.dispatch(Action::AccessChecked(granted));
                        }
                    }
                });
            }
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
            match state.to_save() {
                Ok(settings) => {
                    let permission = origin_pattern(&settings.collector_url).ok();
                    dispatch.dispatch(Action::Saving {
                        settings: settings.clone(),
                        asking: permission.is_some(),
                    });
                    save(settings, permission, dispatch);
                }
                Err(e) => dispatch.dispatch(Action::Failed(e.to_string())),
            }
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
                { access_line(state.access, &state.saved_url) }
                <label>{ "Ingest key" }
                    <input id="ingest-key" type="password" autocomplete="off"
                        value={s.ingest_key.clone()} oninput={text(Field::IngestKey)} />
                </label>
                <label>{ "Your name (optional, shown to admins)" }
                    <input id="label" type="text" maxlength="256"
                        value={s.label.clone()} oninput={text(Field::Label)} />
                </label>
                <label>{ "Meeting id salt (optional: your organisation's own; meetings are then sent as a hash of it and the page address, never the address)" }
                    <input id="meeting-id-salt" type="text" maxlength="256" autocomplete="off"
                        value={s.meeting_id_salt.clone()} oninput={text(Field::MeetingIdSalt)} />
                </label>
                <label class="check">
                    <input id="sending" type="checkbox" checked={s.sending} onchange={on_sending} />
                    { " Send metrics to the collector" }
                </label>
                <SiteList
                    mode={s.sites_mode}
                    sites={s.sites.clone()}
                    input={state.site_input.clone()}
                    error={state.site_error.clone()}
                    all_sites_access={state.all_sites_access}
                    dispatch={state.dispatcher()} />
                <button id="save" type="submit" disabled={!state.loaded}>{ "Save" }</button>
            </form>
            if let Some(m) = &state.message {
                <p id="status" class="status">{ m.clone() }</p>
            }
        </main>
    }
}
