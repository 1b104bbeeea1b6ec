//! The interface of toolbox 0.1.0 (commit cdd8dc2, before database sessions), frozen,
//! so that the host still loads plugins built against it.
//!
//! abi_stable's layout check lets a plugin's prefix types have *more* fields than the
//! host's, never fewer. The `HostContext` vtable travels from the host to the plugin,
//! so adding methods to it made the host's side longer, and older plugins would fail
//! the check. The host therefore checks a library against the current interface
//! first and, failing that, against this one; a 0.1 plugin is run with the 0.1
//! context, which has no database methods (it never calls them).
//!
//! Never change this file: it must stay identical, in layout, to what 0.1 plugins were
//! built with (type names, field order and types). A later interface change adds a
//! sibling module of its own.

// See the same allowance in `abi.rs`.
#![allow(non_local_definitions)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RString},
    RRef, StableAbi,
};

use super::{LogLevel, PluginManifest, RunError};

/// The 0.1 root module: the same fields as today's, with the 0.1 context.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    pub manifest: extern "C" fn() -> RResult<PluginManifest, RString>,

    #[sabi(last_prefix_field)]
    pub run: extern "C" fn(
        task: RStr<'_>,
        args: RStr<'_>,
        ctx: HostContextRef<'_>,
    ) -> RResult<RString, RunError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "toolbox_plugin";
    const NAME: &'static str = "toolbox_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The 0.1 run context: identity, logs, progress and cancellation.
#[sabi_trait]
pub trait HostContext: Sync {
    fn task_id(&self) -> RString;

    fn attempt(&self) -> u32;

    fn log(&self, level: LogLevel, message: RStr<'_>);

    fn progress(&self, done: u64, total: u64, message: RStr<'_>);

    #[sabi(last_prefix_field)]
    fn is_cancelled(&self) -> bool;
}

pub type HostContextRef<'a> = HostContext_TO<'a, RRef<'a, ()>>;
