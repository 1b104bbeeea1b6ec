//! Plugins: the loader that turns library files into runnable tasks, and the registry
//! that indexes those tasks by name.
//!
//! This is the only module that touches `abi_stable` loading; the rest of the host sees
//! [`Catalog`], [`TaskHandle`] and `Arc<LoadedPlugin>`.

mod catalog;
mod elf;
mod error;
mod loader;
pub mod names;
mod probe;
mod registry;
mod run;
mod watcher;

pub use catalog::{Catalog, TaskDef, TaskHandle};
pub use elf::ElfError;
pub use error::{LoadError, Refusal};
pub use loader::{LoadedPlugin, LoaderConfig, PluginLoader};
pub use probe::probe_main;
pub use registry::PluginRegistry;
pub use run::{CancelFlag, RunContext, RunObserver, TaskFailure, TracingObserver};
pub use watcher::{rescan_when_settled, watch, PluginWatch};
