//! The options page (Yew): collector URL, ingest key, label and sending on or off.

mod app;
pub mod state;

pub use app::App;
