//! The interface between the toolbox host and its task plugins.
//!
//! A plugin is a `cdylib` crate. Its author writes plain Rust against the SDK: a struct
//! per task, whose doc comment is the description `/tasks/available` shows, typed serde
//! arguments and result, and one `export_plugin!` line. The smallest complete plugin:
//!
//! ```
//! use toolbox_plugin_api::prelude::*;
//!
//! /// Says hello to whoever is named in the arguments.
//! #[task(name = "demo.hello")]
//! #[derive(Default)]
//! pub struct Hello;
//!
//! #[derive(serde::Deserialize)]
//! pub struct HelloArgs {
//!     name: String,
//! }
//!
//! impl Task for Hello {
//!     type Args = HelloArgs;
//!     type Output = String;
//!
//!     fn run(&self, _ctx: &Context<'_>, args: HelloArgs) -> Result<String, TaskError> {
//!         Ok(format!("hello, {}", args.name))
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! with, in its `Cargo.toml`, `crate-type = ["cdylib"]` and dependencies on
//! `toolbox-plugin-api`, `serde` and `serde_json`.
//!
//! The crate has two faces:
//! - [`sdk`]: what authors use ([`Task`](sdk::Task), [`Context`](sdk::Context),
//!   [`TaskError`](sdk::TaskError), [`task`], [`export_plugin!`]);
//! - [`abi`]: the `abi_stable` types that cross the library boundary, which the host
//!   checks when it loads a plugin.

// The `#[task]` attribute names `::toolbox_plugin_api`; this makes that path work inside
// this crate's own tests too.
extern crate self as toolbox_plugin_api;

pub mod abi;
pub mod sdk;

/// Declares a task: `#[task(name = "domain.task", ...)]` on the task's struct.
///
/// Arguments: `name` (required, `<domain>.<task>` in snake_case), `queue` (default
/// `"default"`), `max_retries` (default 0), `retry_backoff` and `retry_backoff_max`
/// (durations such as `"500ms"`, `"2s"`, `"5m"`; defaults 1 s and 10 min),
/// `time_limit` (a duration; default none) and `schedule` (a cron expression, 5 fields
/// or 6 with seconds). The struct's doc comment becomes the task's description.
pub use toolbox_plugin_macros::task;

/// The few names a plugin author needs.
pub mod prelude {
    pub use crate::sdk::db::{Dialect, Value};
    pub use crate::sdk::{Context, Task, TaskError};
    pub use crate::task;
    pub use crate::{export_plugin, params};
}

#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}

/// Exports the listed tasks as this library's plugin.
///
/// Use it once, at the root of a `cdylib` crate: `export_plugin!(Noop, Echo);`. Every
/// entry point it generates catches panics, so a task's panic becomes a failed run with
/// the panic's message and never unwinds into the host.
#[macro_export]
macro_rules! export_plugin {
    ($($task:ty),+ $(,)?) => {
        #[doc(hidden)]
        pub struct __ToolboxPlugin;

        impl $crate::sdk::export::Plugin for __ToolboxPlugin {
            const NAME: &'static str = ::core::env!("CARGO_PKG_NAME");
            const VERSION: &'static str = ::core::env!("CARGO_PKG_VERSION");

            fn descriptors() -> ::std::vec::Vec<$crate::abi::TaskDescriptor> {
                ::std::vec![$($crate::sdk::export::descriptor::<$task>()),+]
            }

            fn dispatch(
                task: &str,
                args: &str,
                ctx: &$crate::sdk::Context<'_>,
            ) -> ::core::option::Option<::core::result::Result<::std::string::String, $crate::sdk::TaskError>> {
                $(
                    if task == <$task as $crate::sdk::TaskInfo>::SPEC.name {
                        return ::core::option::Option::Some($crate::sdk::export::run_task::<$task>(args, ctx));
                    }
                )+
                ::core::option::Option::None
            }
        }

        // What `#[abi_stable::export_root_module]` generates, written out so that plugin
        // crates need no `abi_stable` dependency of their own (that attribute names
        // `::abi_stable`). `abi::ROOT_MODULE_SYMBOL` is checked against abi_stable.
        #[doc(hidden)]
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn __toolbox_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(
                    $crate::sdk::export::root_module::<__ToolboxPlugin>,
                )
            }
            // SAFETY: the constructor returns the `PluginModRef` built by `root_module`,
            // erased by abi_stable's own `__call_root_module_loader`.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::abi::PluginModRef>(
                    __toolbox_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}
