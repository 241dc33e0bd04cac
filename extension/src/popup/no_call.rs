//! The popup's line when the tab shows no call: plain "no call", or why a running call may be unseen (the tab was open before Call Vitals started).

use vitals_shared::messages::Coverage;
use yew::prelude::*;

/// What the line says, by the tab's [`Coverage`] (`None`: unknown, or not asked): its
/// `data-state` and its text. Every wording of it is here.
pub fn notice(coverage: Option<Coverage>) -> (&'static str, &'static str) {
    match coverage {
        Some(Coverage::ReloadNeeded) => (
            "reload-needed",
            "This tab was open before Call Vitals started: reload it to measure its call.",
        ),
        Some(Coverage::Adopted) => (
            "adopted",
            "No call measured yet. This tab was open before Call Vitals started: a call here is \
             measured as soon as the page uses it. If it still does not show, reload the tab.",
        ),
        Some(Coverage::Measured) | Some(Coverage::Off) | None => ("none", "No call in this tab."),
    }
}

#[derive(Properties, PartialEq)]
pub struct NoCallProps {
    pub coverage: Option<Coverage>,
}

#[function_component(NoCall)]
pub fn no_call(props: &NoCallProps) -> Html {
    let (state, text) = notice(props.coverage);
    html! { <p id="no-call" class="no-call" data-state={state}>{ text }</p> }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tab_open_before_the_start_is_told_to_reload() {
        assert_eq!(notice(None), ("none", "No call in this tab."));
        assert_eq!(notice(Some(Coverage::Measured)).0, "none");
        assert_eq!(notice(Some(Coverage::Off)).0, "none");
        let (state, text) = notice(Some(Coverage::ReloadNeeded));
        assert_eq!(state, "reload-needed");
        assert!(text.contains("reload it"), "{text}");
        let (state, text) = notice(Some(Coverage::Adopted));
        assert_eq!(state, "adopted");
        assert!(
            text.contains("as soon as the page uses it") && text.contains("reload"),
            "{text}"
        );
    }
}
