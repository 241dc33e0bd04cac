//! The diagnosis in the popup: the most severe active finding as a sentence with its evidence and what to try, the others below it.

use vitals_shared::finding::Finding;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct FindingsProps {
    /// The tab's active findings, most severe first.
    pub findings: Vec<Finding>,
}

/// "Title. Advice" as one sentence.
pub fn sentence(f: &Finding) -> String {
    format!("{}. {}", f.title.trim_end_matches('.'), f.advice)
}

#[function_component(Findings)]
pub fn findings(props: &FindingsProps) -> Html {
    let Some((top, rest)) = props.findings.split_first() else {
        return html! {};
    };
    // Titles and evidence are the extension's own words and figures; Yew renders them as text.
    html! {
        <section id="findings" class="findings" data-count={props.findings.len().to_string()}>
            <div id="finding" class={classes!("finding", top.severity.as_str())} data-finding={top.id.as_str()}
                data-severity={top.severity.as_str()}>
                <p class="finding-text">{ sentence(top) }</p>
                if !top.evidence.is_empty() {
                    <ul class="evidence">
                        { for top.evidence.iter().map(|e| html! {
                            <li><span class="evidence-label">{ format!("{}: ", e.label) }</span>{ e.value.clone() }</li>
                        }) }
                    </ul>
                }
            </div>
            if !rest.is_empty() {
                <ul id="more-findings" class="more-findings">
                    { for rest.iter().map(|f| html! {
                        <li class={classes!("finding", f.severity.as_str())} data-finding={f.id.as_str()}
                            data-severity={f.severity.as_str()} title={f.advice.clone()}>
                            { f.title.clone() }
                        </li>
                    }) }
                </ul>
            }
        </section>
    }
}
