//! What a plugin author writes against: plain Rust traits and serde types.
//!
//! A task is a struct whose doc comment describes it, marked with [`task`](crate::task)
//! and implementing [`Task`]; `export_plugin!` turns a list of them into a plugin
//! library. Nothing here exposes `abi_stable`.

mod context;
pub mod db;
mod error;
#[doc(hidden)]
pub mod export;
mod task;
#[cfg(feature = "testing")]
pub mod testing;

pub use context::Context;
pub use error::TaskError;
pub use task::{Task, TaskInfo, TaskSpec};
