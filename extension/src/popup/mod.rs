//! The toolbar popup (Yew): the active tab's call quality, figures, connections, sparklines and TURN relay warning.

mod app;
mod collector_line;
mod peers;
mod quality_bars;
mod rates;
mod relay_warning;
mod sparkline;
pub mod state;

pub use app::App;
