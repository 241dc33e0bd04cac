//! The options page (Yew): collector URL, ingest key, label, sending on or off, and the sites where the hook runs.

mod app;
mod site_list;
pub mod sites;
pub mod state;

pub use app::App;
