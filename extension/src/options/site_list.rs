//! The sites where the hook runs: all, only the listed ones, or all but the listed ones, with the list's editor.

use super::sites;
use super::state::{Action, OptionsState};
use vitals_shared::messages::SitesMode;
use web_sys::HtmlInputElement;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct SiteListProps {
    pub mode: SitesMode,
    /// Chrome match patterns, as stored.
    pub sites: Vec<String>,
    /// The text of the site input.
    pub input: String,
    pub error: Option<String>,
    /// `Some(false)` when the user limited the extension's site access in Chrome.
    pub all_sites_access: Option<bool>,
    pub dispatch: UseReducerDispatcher<OptionsState>,
}

const MODES: [(SitesMode, &str, &str); 3] = [
    (SitesMode::All, "sites-all", "All sites"),
    (SitesMode::Allow, "sites-allow", "Only these sites"),
    (SitesMode::Deny, "sites-deny", "All sites except these"),
];

#[function_component(SiteList)]
pub fn site_list(props: &SiteListProps) -> Html {
    let dispatch = &props.dispatch;
    let on_mode = |mode: SitesMode| {
        let dispatch = dispatch.clone();
        Callback::from(move |_: Event| dispatch.dispatch(Action::SetSitesMode(mode)))
    };
    let on_input = {
        let dispatch = dispatch.clone();
        Callback::from(move |e: InputEvent| {
            let input: HtmlInputElement = e.target_unchecked_into();
            dispatch.dispatch(Action::EditSiteInput(input.value()));
        })
    };
    let on_add = {
        let dispatch = dispatch.clone();
        Callback::from(move |_: MouseEvent| dispatch.dispatch(Action::AddSites))
    };
    // Enter in the site input adds the site instead of submitting the whole form.
    let on_key = {
        let dispatch = dispatch.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" {
                e.prevent_default();
                dispatch.dispatch(Action::AddSites);
            }
        })
    };
    let rows = props.sites.iter().enumerate().map(|(i, pattern)| {
        let dispatch = dispatch.clone();
        let remove = Callback::from(move |_: MouseEvent| dispatch.dispatch(Action::RemoveSite(i)));
        let name = sites::display(pattern);
        let valid = sites::normalize(pattern).as_deref() == Ok(pattern.as_str());
        html! {
            <li class={classes!("site", (!valid).then_some("invalid"))} data-pattern={pattern.clone()}
                title={if valid { pattern.clone() } else { "not a valid site: remove it".to_string() }}>
                <span class="site-name">{ name.clone() }</span>{ " " }
                <button type="button" class="remove-site" aria-label={format!("Remove {name}")}
                    onclick={remove}>{ "Remove" }</button>
            </li>
        }
    });
    html! {
        <fieldset id="sites" class="sites">
            <legend>{ "Sites where calls are measured" }</legend>
            { for MODES.iter().map(|&(mode, id, text)| html! {
                <label class="check">
                    <input type="radio" name="sites-mode" id={id} checked={props.mode == mode}
                        onchange={on_mode(mode)} />
                    { format!(" {text}") }
                </label>
            }) }
            if props.mode != SitesMode::All {
                <ul id="site-list" data-count={props.sites.len().to_string()}>
                    { for rows }
                </ul>
                <div class="site-add">
                    <input id="site-input" type="text" placeholder="meet.example.com, *.example.org"
                        autocomplete="off" value={props.input.clone()} oninput={on_input} onkeydown={on_key} />
                    <button id="add-site" type="button" onclick={on_add}>{ "Add" }</button>
                </div>
                if let Some(e) = &props.error {
                    <p id="site-error" class="error">{ e.clone() }</p>
                }
                <p class="hint">{ "A host name covers every port; *.example.org covers example.org and \
                    all its subdomains. Pages already open keep their state until reloaded." }</p>
            }
            if props.all_sites_access == Some(false) {
                <p id="site-access" class="warning">{ "Chrome limits this extension's site access \
                    (chrome://extensions → Call Vitals → Site access): calls are measured only on \
                    the sites Chrome allows it." }</p>
            }
        </fieldset>
    }
}
