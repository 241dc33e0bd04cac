//! The toolbar popup (Yew): the active tab's call quality, bitrates, RTT and TURN relay warning.

mod app;
mod collector_line;
mod quality_bars;
mod rates;
mod relay_warning;
pub mod state;

pub use app::App;
