//! The toolbox host: loads task plugins and runs their tasks.
//!
//! `main.rs` only parses the command line and calls [`cli`]; everything else is here so
//! that tests drive the same code the binary runs.

pub mod api;
pub mod cli;
pub mod database;
pub mod plugins;
pub mod queue;
pub mod scheduler;
pub mod telemetry;
pub mod worker;
