//! The collector's own tests, one binary and no browser: the HTTP and admin API, `collector analyze`, Socket.IO, the store contract, the admin stream, security headers and logs, webhooks, the flood limits, the live caps and participant binding.
//!
//! The Redis tests use `VITALS_TEST_REDIS_URL` or start their own `redis-server` (see
//! [`support`]). The browser tests are in the e2e crate (e2e/tests/browser/).

mod admin;
mod analyze;
mod api;
mod binding;
mod caps;
mod event_time;
mod flood;
mod security;
mod socketio;
mod store_contract;
mod stream;
mod support;
mod webhook;
