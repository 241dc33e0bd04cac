//! Upload, download, round-trip time, loss and jitter, with the raw figures in data attributes for tests.

use crate::format;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct RatesProps {
    pub upload_kbps: Option<f64>,
    pub download_kbps: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub jitter_ms: Option<f64>,
}

/// A loss percentage: "0.4 %"; "–" when unknown.
pub(super) fn percent(pct: Option<f64>) -> String {
    match pct {
        Some(v) if v.is_finite() => format!("{:.1} %", v.max(0.0)),
        _ => "–".to_string(),
    }
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
            <dt>{ "Loss" }</dt>
            <dd id="loss" data-pct={raw(props.loss_pct)}>{ percent(props.loss_pct) }</dd>
            <dt>{ "Jitter" }</dt>
            <dd id="jitter" data-ms={raw(props.jitter_ms)}>{ format::millis(props.jitter_ms) }</dd>
        </dl>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_shown_with_one_decimal() {
        assert_eq!(percent(Some(0.44)), "0.4 %");
        assert_eq!(percent(Some(-1.0)), "0.0 %");
        assert_eq!(percent(None), "–");
    }
}
