//! One line on the collector connection: off, idle, connected, retrying, events queued or dropped.

use vitals_shared::messages::{CollectorState, CollectorStatus};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct CollectorLineProps {
    pub status: CollectorStatus,
}

#[function_component(CollectorLine)]
pub fn collector_line(props: &CollectorLineProps) -> Html {
    let s = &props.status;
    let text = match s.state {
        CollectorState::Off => "Collector: off".to_string(),
        // No call, so no offscreen document: what waits in storage goes with the next call.
        CollectorState::Idle => format!("Collector: on, no call, {} queued", s.queued),
        state => format!("Collector: {}, {} sent, {} queued", state.as_str(), s.sent, s.queued),
    };
    // Events the bounded queue had to give up while the collector was unreachable.
    let dropped = (s.dropped > 0).then(|| format!(", {} dropped", s.dropped));
    html! {
        <footer id="collector" class="collector" data-state={s.state.as_str()}>
            { text }
            if let Some(d) = dropped {
                <span class="collector-dropped">{ d }</span>
            }
            if let Some(e) = &s.last_error {
                <span class="collector-error">{ format!(" ({e})") }</span>
            }
        </footer>
    }
}
