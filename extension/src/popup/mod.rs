//! The toolbar popup (Yew): the active tab's call quality, diagnosis, figures, connections, sparklines, TURN relay warning, report and summary.

mod app;
mod collector_line;
mod export;
pub mod export_state;
mod findings;
mod no_call;
mod peers;
mod quality_bars;
mod rates;
mod relay_warning;
mod report_actions;
mod sparkline;
pub mod state;
pub mod summary;

pub use app::App;
