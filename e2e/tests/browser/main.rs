//! The browser tests, one binary: real headless Chromium with the built extension (or none), driven through chromedriver, one module per area.
//!
//! Each test starts what it needs from the harness (`vitals_e2e`): the collector in-process, a
//! copy of `extension/dist` configured for it, chromedriver and Chromium with a fresh profile,
//! coturn. `scripts/test` builds the extension first and runs them one at a time
//! (`--test-threads=1`): each starts Chromium, and two cores are few.

mod accuracy;
mod adopt;
mod browser;
mod browser_bench;
mod dashboard;
mod diagnosis;
mod hook;
mod lifecycle;
mod options;
mod popup;
mod sfu;
mod trust;
mod upload;
