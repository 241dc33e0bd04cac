//! The TURN relay warning: the call goes through a relay server, over which protocol.

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct RelayWarningProps {
    /// "udp", "tcp" or "tls", when the browser reports it.
    pub protocol: Option<String>,
}

#[function_component(RelayWarning)]
pub fn relay_warning(props: &RelayWarningProps) -> Html {
    let protocol = props.protocol.clone().unwrap_or_else(|| "unknown".into());
    html! {
        <section id="relay-warning" class="warning" data-protocol={protocol.clone()}>
            <strong>{ "TURN relay in use" }</strong>
            { format!(" (over {protocol}): the call is relayed through a server, which adds latency and costs money.") }
        </section>
    }
}
