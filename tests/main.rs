//! Integration tests: real plugin builds loaded through the real loader, and the real
//! `toolbox` binary. `support` builds what they need once per test process.

mod api;
mod cli;
mod compat;
mod conformance;
mod database_cli;
mod faults;
mod finanzas;
mod loader;
mod redis_records;
mod reload;
mod scheduler;
mod sessions;
mod support;
