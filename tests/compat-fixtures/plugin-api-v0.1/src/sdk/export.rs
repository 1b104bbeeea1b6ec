//! The glue `export_plugin!` expands to: the extern entry points of the root module,
//! each of which catches panics so that nothing unwinds into the host.

use std::{
    any::Any,
    cell::RefCell,
    panic::{self, AssertUnwindSafe},
    sync::Once,
};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    std_types::{RErr, ROk, ROption, RResult, RStr, RString},
};

use super::{Context, Task, TaskError};
use crate::abi::{
    ErrorKind, HostContextRef, PluginManifest, PluginMod, PluginModRef, RunError, TaskDescriptor,
};

/// A plugin library's list of tasks; implemented by `export_plugin!`.
pub trait Plugin: 'static {
    const NAME: &'static str;
    const VERSION: &'static str;

    fn descriptors() -> Vec<TaskDescriptor>;

    /// Runs the task named `task`, or returns `None` if the plugin has none of that name.
    fn dispatch(task: &str, args: &str, ctx: &Context<'_>) -> Option<Result<String, TaskError>>;
}

/// Builds the root module; called once per library by abi_stable's loader.
pub fn root_module<P: Plugin>() -> PluginModRef {
    PluginMod {
        manifest: manifest::<P>,
        run: run::<P>,
    }
    .leak_into_prefix()
}

pub extern "C" fn manifest<P: Plugin>() -> RResult<PluginManifest, RString> {
    match catch(|| PluginManifest {
        name: P::NAME.into(),
        version: P::VERSION.into(),
        tasks: P::descriptors().into(),
    }) {
        Ok(manifest) => ROk(manifest),
        Err(message) => RErr(format!("building the manifest panicked: {message}").into()),
    }
}

pub extern "C" fn run<P: Plugin>(
    task: RStr<'_>,
    args: RStr<'_>,
    ctx: HostContextRef<'_>,
) -> RResult<RString, RunError> {
    let context = Context::new(ctx);
    let outcome = match catch(|| P::dispatch(task.as_str(), args.as_str(), &context)) {
        Ok(Some(result)) => result,
        Ok(None) => Err(TaskError::new(
            ErrorKind::UNKNOWN_TASK,
            format!("plugin {} has no task {}", P::NAME, task.as_str()),
        )),
        Err(message) => Err(TaskError::new(ErrorKind::PANIC, message)),
    };
    match outcome {
        Ok(json) => ROk(json.into()),
        Err(error) => RErr(RunError {
            kind: error.kind,
            message: error.message.into(),
            retry_after_ms: error
                .retry_after
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .into(),
        }),
    }
}

/// The ABI descriptor of one task.
pub fn descriptor<T: Task>() -> TaskDescriptor {
    let spec = T::SPEC;
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    TaskDescriptor {
        name: spec.name.into(),
        description: spec.description.into(),
        queue: spec.queue.into(),
        max_retries: spec.max_retries,
        retry_backoff_ms: millis(spec.retry_backoff),
        retry_backoff_max_ms: millis(spec.retry_backoff_max),
        time_limit_ms: spec.time_limit.map_or(0, millis),
        schedule: spec.schedule.map(RString::from).into(),
        args_schema: match T::args_schema() {
            Some(schema) => ROption::RSome(schema.to_string().into()),
            None => ROption::RNone,
        },
    }
}

/// Deserializes the arguments, runs the task and serializes its output.
pub fn run_task<T: Task>(args: &str, ctx: &Context<'_>) -> Result<String, TaskError> {
    let args = parse_args::<T>(args)?;
    let output = T::default().run(ctx, args)?;
    serde_json::to_string(&output).map_err(|e| {
        TaskError::fatal(format!(
            "task {} returned a result that is not JSON: {e}",
            T::SPEC.name
        ))
    })
}

/// A missing body arrives as `null`, an explicit empty one as `{}`: a task whose `Args`
/// is `()` or a struct with all-default fields accepts both.
fn parse_args<T: Task>(args: &str) -> Result<T::Args, TaskError> {
    let args = if args.trim().is_empty() { "null" } else { args };
    match serde_json::from_str(args) {
        Ok(parsed) => Ok(parsed),
        Err(first) => {
            let alternative = match args.trim() {
                "null" => "{}",
                "{}" => "null",
                _ => "",
            };
            serde_json::from_str(alternative).map_err(|_| {
                TaskError::invalid_args(format!(
                    "invalid arguments for task {}: {first}",
                    T::SPEC.name
                ))
            })
        }
    }
}

thread_local! {
    static LAST_PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic into its message ("… at src/lib.rs:12:5").
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    record_panic_locations();
    LAST_PANIC_LOCATION.with(|l| l.borrow_mut().take());
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = panic_message(payload.as_ref());
        match LAST_PANIC_LOCATION.with(|l| l.borrow_mut().take()) {
            Some(location) => format!("{message} (at {location})"),
            None => message,
        }
    })
}

/// The panic payload only carries the message; the location is only known to the panic
/// hook, so the hook (of this library's copy of std) stashes it for `catch`.
fn record_panic_locations() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if let Some(location) = info.location() {
                let text = format!(
                    "{}:{}:{}",
                    location.file(),
                    location.line(),
                    location.column()
                );
                LAST_PANIC_LOCATION.with(|l| *l.borrow_mut() = Some(text));
            }
            previous(info);
        }));
    });
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked with a non-string payload".to_owned()
    }
}
