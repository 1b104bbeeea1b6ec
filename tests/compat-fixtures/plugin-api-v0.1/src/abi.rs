//! The stable ABI between the toolbox host and a plugin library.
//!
//! Only `#[repr(C)]`/`StableAbi` types live here. The host checks their layout when it
//! loads a library (`abi_stable` compares the type layouts the plugin was built with to
//! its own), so a plugin built against an incompatible interface is refused, not run.
//!
//! # Evolving this module
//!
//! - [`PluginMod`] is a prefix type: a later version may append fields below the one marked
//!   `#[sabi(last_prefix_field)]`. A host reading an older plugin sees those fields as
//!   absent (`Option`), an older host never looks at them. Each new field names the
//!   version that added it.
//! - [`HostContext`] is a `#[sabi_trait]` whose vtable is a prefix type too: methods
//!   appended after `is_cancelled` are new capabilities (the database session will come
//!   that way) that older plugins never call.
//! - Plain structs ([`TaskDescriptor`], [`RunError`], ...) are frozen: changing a field is
//!   a breaking change. New per-task data comes through a new root-module field.
//! - Arguments and results cross as JSON text: their shape is the tasks' business, not
//!   the ABI's.

// `#[sabi_trait]` (abi_stable 0.11) implements a trait inside a generated `const` block,
// which newer compilers flag; the code is abi_stable's, not ours.
#![allow(non_local_definitions)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{ROption, RResult, RStr, RString, RVec},
    RRef, StableAbi,
};

/// The name of the symbol every plugin exports, as `abi_stable` 0.11 mangles it.
///
/// `export_plugin!` writes it out literally (so that plugin crates need no direct
/// `abi_stable` dependency); the assertion below keeps it equal to abi_stable's own.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

const _: () = assert!(
    const_str_eq(
        ROOT_MODULE_SYMBOL,
        abi_stable::library::ROOT_MODULE_LOADER_NAME
    ),
    "abi_stable changed the name of the root module symbol: update export_plugin!"
);

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The root module of a plugin library: what the host finds behind
/// [`ROOT_MODULE_SYMBOL`].
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Describes the plugin and every task it offers. Never unwinds: a panic while
    /// building the manifest comes back as `RErr` with its message.
    pub manifest: extern "C" fn() -> RResult<PluginManifest, RString>,

    /// Runs one task: `task` is its full name, `args` its arguments as JSON text; the
    /// result is JSON text. Never unwinds: a panic comes back as a [`RunError`] of kind
    /// [`ErrorKind::PANIC`].
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

/// What a plugin library says about itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginManifest {
    /// The plugin crate's name (`CARGO_PKG_NAME`).
    pub name: RString,
    /// The plugin crate's version (`CARGO_PKG_VERSION`).
    pub version: RString,
    pub tasks: RVec<TaskDescriptor>,
}

/// One task as a plugin declares it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct TaskDescriptor {
    /// Full name, `<domain>.<task>` in snake_case.
    pub name: RString,
    /// The task struct's doc comment.
    pub description: RString,
    /// The queue it goes to unless the caller names another.
    pub queue: RString,
    /// How many times a failed run is retried (0: never).
    pub max_retries: u32,
    /// First retry delay in milliseconds; each further retry doubles it.
    pub retry_backoff_ms: u64,
    /// Upper bound of the retry delay in milliseconds.
    pub retry_backoff_max_ms: u64,
    /// Time limit of one run in milliseconds (0: none).
    pub time_limit_ms: u64,
    /// Cron expression (5 or 6 fields) of a periodic task.
    pub schedule: ROption<RString>,
    /// JSON schema of the arguments, as JSON text.
    pub args_schema: ROption<RString>,
}

/// Why a run did not produce a result.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct RunError {
    pub kind: ErrorKind,
    pub message: RString,
    /// For [`ErrorKind::RETRY`]: the delay the task asks for, overriding its backoff.
    pub retry_after_ms: ROption<u64>,
}

/// The kind of a [`RunError`]. A newtype over `u8` rather than an enum so that a later
/// version can add kinds without changing the layout; a host treats a kind it does not
/// know as [`ErrorKind::FATAL`].
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorKind(pub u8);

impl ErrorKind {
    /// A transient failure: run again according to the task's retry policy.
    pub const RETRY: Self = Self(0);
    /// A permanent failure: do not retry.
    pub const FATAL: Self = Self(1);
    /// The arguments did not deserialize into the task's argument type.
    pub const INVALID_ARGS: Self = Self(2);
    /// The task panicked; the message is the panic's.
    pub const PANIC: Self = Self(3);
    /// The task stopped because the host asked it to (revoke, time limit, shutdown).
    pub const CANCELLED: Self = Self(4);
    /// The library has no task of that name.
    pub const UNKNOWN_TASK: Self = Self(5);
}

/// Severity of a line a task logs through its context.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogLevel(pub u8);

impl LogLevel {
    pub const ERROR: Self = Self(1);
    pub const WARN: Self = Self(2);
    pub const INFO: Self = Self(3);
    pub const DEBUG: Self = Self(4);
    pub const TRACE: Self = Self(5);
}

/// What the host gives each run: the plugin calls back into the host through it.
///
/// Implemented by the host; a plugin only ever holds a borrowed [`HostContextRef`] for
/// the duration of one `run` call.
#[sabi_trait]
pub trait HostContext: Sync {
    /// The id of the task being run (a UUID).
    fn task_id(&self) -> RString;

    /// 1 for the first run, 2 for the first retry, ...
    fn attempt(&self) -> u32;

    /// A log line, recorded by the host with the task's id and name.
    fn log(&self, level: LogLevel, message: RStr<'_>);

    /// Progress of the run: `done` out of `total` steps, with a short note.
    fn progress(&self, done: u64, total: u64, message: RStr<'_>);

    /// Whether the host asked the run to stop (revoke, time limit, shutdown). Long
    /// tasks check it between steps and return early.
    #[sabi(last_prefix_field)]
    fn is_cancelled(&self) -> bool;
}

/// The borrowed context a plugin receives for one run.
pub type HostContextRef<'a> = HostContext_TO<'a, RRef<'a, ()>>;
