//! A sparkline: an inline SVG polyline of a figure over the last minute, gaps where it was unknown.

use yew::prelude::*;

/// Drawing size in SVG user units (the CSS scales it).
const WIDTH: f64 = 120.0;
const HEIGHT: f64 = 24.0;

#[derive(Properties, PartialEq)]
pub struct SparklineProps {
    /// The element id (`spark-bitrate`, `spark-rtt`).
    pub id: AttrValue,
    pub label: AttrValue,
    /// Oldest first, one a second; `None` where the figure was unknown.
    pub values: Vec<Option<f64>>,
    /// How many samples fill the width (60: a minute).
    pub capacity: usize,
}

/// The polylines' `points`: one run per stretch of known values, scaled to the largest value,
/// right-aligned so the newest sample is at the right edge.
pub fn polylines(values: &[Option<f64>], capacity: usize) -> Vec<String> {
    let top = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let step = WIDTH / capacity.saturating_sub(1).max(1) as f64;
    let offset = capacity.saturating_sub(values.len()) as f64;
    let mut runs = Vec::new();
    let mut run: Vec<String> = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v.filter(|x| x.is_finite()) {
            Some(v) => {
                let x = (offset + i as f64) * step;
                let y = if top > 0.0 {
                    HEIGHT - v.max(0.0) / top * (HEIGHT - 2.0) - 1.0
                } else {
                    HEIGHT - 1.0
                };
                run.push(format!("{x:.1},{y:.1}"));
            }
            None if !run.is_empty() => runs.push(std::mem::take(&mut run).join(" ")),
            None => {}
        }
    }
    if !run.is_empty() {
        runs.push(run.join(" "));
    }
    runs
}

#[function_component(Sparkline)]
pub fn sparkline(props: &SparklineProps) -> Html {
    let known = props.values.iter().flatten().count();
    html! {
        <figure class="sparkline">
            <figcaption>{ props.label.clone() }</figcaption>
            <svg id={props.id.clone()} data-samples={known.to_string()} viewBox={format!("0 0 {WIDTH} {HEIGHT}")}
                preserveAspectRatio="none" role="img" aria-label={props.label.clone()}>
                { for polylines(&props.values, props.capacity).into_iter().map(|points| html! {
                    <polyline points={points} fill="none" stroke="currentColor" stroke-width="1.5" />
                }) }
            </svg>
        </figure>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_scaled_right_aligned_and_split_at_gaps() {
        let runs = polylines(&[Some(0.0), Some(100.0), None, Some(50.0)], 5);
        assert_eq!(runs, vec!["30.0,23.0 60.0,1.0".to_string(), "120.0,12.0".to_string()]);
        assert!(polylines(&[None, None], 60).is_empty());
        assert_eq!(polylines(&[Some(0.0)], 60), vec!["120.0,23.0".to_string()]);
    }
}
