//! Call Vitals core: wire types, the sans-IO getStats processor, quality model and emission policy.
//!
//! Nothing here does IO or reads a clock: time comes in as data, so the same code runs in the
//! extension (wasm32), in the collector and in tests driven faster than real time.

pub mod alerts;
pub mod cost;
pub mod diagnosis;
pub mod emit;
pub mod fields;
pub mod finding;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod privacy;
pub mod processor;
pub mod quality;
pub mod recording;
pub mod report;
pub mod severity;
pub mod stats;
pub mod wire;

pub use metrics::{PeerMetrics, RelayInfo, TabMetrics};
pub use processor::{Input, Output, Processor};
pub use quality::QualityClass;
