//! Upload, download and round-trip time, with the raw figures in data attributes for tests.

use crate::format;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct RatesProps {
    pub upload_kbps: Option<f64>,
    pub download_kbps: Option<f64>,
    pub rtt_ms: Option<f64>,
}

#[function_component(Rates)]
pub fn rates(props: &RatesProps) -> Html {
    let raw = |v: Option<f64>| v.filter(|x| x.is_finite()).map(|x| format!("{x:.1}"));
    html! {
        <dl class="rates">
            <dt>{ "Upload" }</dt>
            <dd id="upload" data-kbps={raw(props.upload_kbps)}>{ format::bitrate(props.upload_kbps) }</dd>
            <dt>{ "Download" }</dt>
            <dd id="download" data-kbps={raw(props.download_kbps)}>{ format::bitrate(props.download_kbps) }</dd>
            <dt>{ "Round trip" }</dt>
            <dd id="rtt" data-ms={raw(props.rtt_ms)}>{ format::millis(props.rtt_ms) }</dd>
        </dl>
    }
}
