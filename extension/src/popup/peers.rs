//! The expandable list of a tab's peer connections, each with its own rates, RTT, relay tag and findings.

use crate::format;
use vitals_shared::finding::Finding;
use vitals_shared::metrics::PeerMetrics;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct PeersProps {
    pub peers: Vec<PeerMetrics>,
    /// The tab's active findings; each connection shows its own.
    pub findings: Vec<Finding>,
}

/// A raw figure for a data attribute (absent when unknown), as in `rates.rs`.
fn raw(v: Option<f64>) -> Option<String> {
    v.filter(|x| x.is_finite()).map(|x| format!("{x:.1}"))
}

#[function_component(Peers)]
pub fn peers(props: &PeersProps) -> Html {
    let n = props.peers.len();
    let title = if n == 1 {
        "1 connection".to_string()
    } else {
        format!("{n} connections")
    };
    html! {
        <details id="peers" class="peers" data-count={n.to_string()}>
            <summary>{ title }</summary>
            <ul>
                { for props.peers.iter().map(|p| {
                    let rtt = p.best_rtt_ms();
                    html! {
                        // The id comes from the page: Yew renders it as text, never as HTML.
                        <li class="peer" data-pc={p.pc.clone()}>
                            <span class="peer-id">{ p.pc.clone() }</span>
                            if p.relay.using_relay {
                                <span class="relay-tag" data-protocol={p.relay.protocol.clone()}>
                                    { format!("relay {}", p.relay.protocol.as_deref().unwrap_or("")).trim_end().to_string() }
                                </span>
                            }
                            <span class="peer-figures">
                                <span class="peer-up" data-kbps={raw(p.upload_kbps)}>{ format!("↑ {}", format::bitrate(p.upload_kbps)) }</span>
                                <span class="peer-down" data-kbps={raw(p.download_kbps)}>{ format!("↓ {}", format::bitrate(p.download_kbps)) }</span>
                                <span class="peer-rtt" data-ms={raw(rtt)}>{ format!("RTT {}", format::millis(rtt)) }</span>
                                if let Some(mos) = p.audio_mos {
                                    <span class="peer-audio-mos" data-mos={format!("{mos:.2}")}
                                        title="Audio MOS (E-model): delay and concealed audio">{ format!("audio MOS {mos:.1}") }</span>
                                }
                            </span>
                            { for props.findings.iter().filter(|f| f.pc == p.pc).map(|f| html! {
                                <span class={classes!("peer-finding", f.severity.as_str())} data-finding={f.id.as_str()}
                                    title={f.title.clone()}>{ f.id.as_str() }</span>
                            }) }
                        </li>
                    }
                }) }
            </ul>
        </details>
    }
}
