//! TURN relay cost arithmetic: bytes relayed at a bitrate over a time, and their price.

/// Default price of relayed traffic, in dollars per GB (10^9 bytes).
pub const DEFAULT_PRICE_PER_GB: f64 = 0.40;

/// Bytes sent and received at `kbps` (kilobits per second) during `ms` milliseconds.
pub fn relayed_bytes(kbps: f64, ms: u64) -> f64 {
    // kbps × 1000 / 8 bytes per second × ms / 1000 seconds.
    kbps.max(0.0) * ms as f64 / 8.0
}

/// The price of `bytes` at `price_per_gb`.
pub fn cost(bytes: f64, price_per_gb: f64) -> f64 {
    bytes / 1e9 * price_per_gb
}
