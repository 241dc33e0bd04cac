//! Four signal bars with the quality class's name and colour.

use vitals_shared::QualityClass;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct QualityBarsProps {
    pub quality: Option<QualityClass>,
}

#[function_component(QualityBars)]
pub fn quality_bars(props: &QualityBarsProps) -> Html {
    let (name, lit) = props.quality.map_or(("unknown", 0), |q| (q.as_str(), q.bars()));
    html! {
        <section id="quality" class={classes!("quality", name)} data-class={name}>
            <span class="bars" aria-hidden="true">
                { for (1..=4u8).map(|i| html! {
                    <span class={classes!("bar", format!("bar{i}"), (i <= lit).then_some("lit"))}></span>
                }) }
            </span>
            <span class="quality-name">{ name }</span>
        </section>
    }
}
