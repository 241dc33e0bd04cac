//! One line on the collector connection: off, connected, retrying, events queued.

use vitals_shared::messages::CollectorStatus;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct CollectorLineProps {
    pub status: CollectorStatus,
}

#[function_component(CollectorLine)]
pub fn collector_line(props: &CollectorLineProps) -> Html {
    let s = &props.status;
    let text = match s.state.as_str() {
        "off" => "Collector: off".to_string(),
        state => format!("Collector: {state}, {} sent, {} queued", s.sent, s.queued),
    };
    html! {
        <footer id="collector" class="collector" data-state={s.state.clone()}>
            { text }
            if let Some(e) = &s.last_error {
                <span class="collector-error">{ format!(" ({e})") }</span>
            }
        </footer>
    }
}
