//! The demo plugin: small `background.*` tasks that exercise every part of the plugin
//! interface. The test suite runs them; plugin authors copy them.
//!
//! Each task is a struct whose doc comment is its description, `#[task]` with its name
//! and options, and an `impl Task` with typed arguments and result. `export_plugin!`
//! at the bottom makes the library a plugin.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use toolbox_plugin_api::prelude::*;

/// Does nothing and succeeds: the cheapest possible task, for benchmarks.
#[task(name = "background.noop")]
#[derive(Default)]
pub struct Noop;

impl Task for Noop {
    type Args = Value;
    type Output = Value;

    fn run(&self, _ctx: &Context<'_>, _args: Value) -> Result<Value, TaskError> {
        Ok(Value::Null)
    }
}

/// Returns its arguments unchanged.
#[task(name = "background.echo")]
#[derive(Default)]
pub struct Echo;

impl Task for Echo {
    type Args = Value;
    type Output = Value;

    fn run(&self, _ctx: &Context<'_>, args: Value) -> Result<Value, TaskError> {
        Ok(args)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds.
    pub ms: u64,
}

#[derive(Serialize)]
pub struct Slept {
    pub slept_ms: u64,
}

/// Sleeps for `ms` milliseconds, stopping early when the run is cancelled.
#[task(name = "background.sleep", time_limit = "1h")]
#[derive(Default)]
pub struct Sleep;

impl Task for Sleep {
    type Args = SleepArgs;
    type Output = Slept;

    fn run(&self, ctx: &Context<'_>, args: SleepArgs) -> Result<Slept, TaskError> {
        ctx.sleep(Duration::from_millis(args.ms))?;
        Ok(Slept { slept_ms: args.ms })
    }

    fn args_schema() -> Option<Value> {
        Some(json!({
            "type": "object",
            "properties": {"ms": {"type": "integer", "minimum": 0}},
            "required": ["ms"],
            "additionalProperties": false
        }))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FailArgs {
    /// The error message (default "failed on purpose").
    pub message: Option<String>,
    /// Whether the failure is retryable (default false: fatal).
    pub retry: bool,
}

/// Fails with the given message: retryable if `retry` is true, fatal otherwise.
#[task(name = "background.fail", max_retries = 2, retry_backoff = "100ms")]
#[derive(Default)]
pub struct Fail;

impl Task for Fail {
    type Args = FailArgs;
    type Output = ();

    fn run(&self, _ctx: &Context<'_>, args: FailArgs) -> Result<(), TaskError> {
        let message = args
            .message
            .unwrap_or_else(|| "failed on purpose".to_owned());
        Err(if args.retry {
            TaskError::retry(message)
        } else {
            TaskError::fatal(message)
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PanicArgs {
    /// The panic message (default "panicked on purpose").
    pub message: Option<String>,
}

/// Panics with the given message: the host must record a failure and live on.
#[task(name = "background.panic")]
#[derive(Default)]
pub struct Panic;

impl Task for Panic {
    type Args = PanicArgs;
    type Output = ();

    fn run(&self, _ctx: &Context<'_>, args: PanicArgs) -> Result<(), TaskError> {
        let message = args
            .message
            .unwrap_or_else(|| "panicked on purpose".to_owned());
        panic!("{message}");
    }
}

#[derive(Deserialize)]
#[serde(default)]
pub struct ProgressArgs {
    /// Number of steps (default 5).
    pub steps: u64,
    /// Pause between steps in milliseconds (default 0).
    pub step_ms: u64,
}

impl Default for ProgressArgs {
    fn default() -> Self {
        Self {
            steps: 5,
            step_ms: 0,
        }
    }
}

#[derive(Serialize)]
pub struct ProgressDone {
    pub steps: u64,
}

/// Works through `steps` steps, reporting progress and logging after each.
#[task(name = "background.progress")]
#[derive(Default)]
pub struct Progress;

impl Task for Progress {
    type Args = ProgressArgs;
    type Output = ProgressDone;

    fn run(&self, ctx: &Context<'_>, args: ProgressArgs) -> Result<ProgressDone, TaskError> {
        for step in 1..=args.steps {
            ctx.sleep(Duration::from_millis(args.step_ms))?;
            ctx.progress(step, args.steps, &format!("step {step} of {}", args.steps));
            ctx.info(&format!("finished step {step}"));
        }
        Ok(ProgressDone { steps: args.steps })
    }
}

#[derive(Deserialize)]
pub struct LimitedArgs {
    /// How long to work, in milliseconds.
    pub ms: u64,
    /// Whether to stop when cancelled (true) or to ignore cancellation (false).
    #[serde(default = "yes")]
    pub obey: bool,
}

fn yes() -> bool {
    true
}

/// Works for `ms` milliseconds under a 300 ms time limit; with `obey: false` it ignores
/// the cancellation the time limit triggers (for testing the host's grace period).
#[task(name = "background.limited", time_limit = "300ms")]
#[derive(Default)]
pub struct Limited;

impl Task for Limited {
    type Args = LimitedArgs;
    type Output = Slept;

    fn run(&self, ctx: &Context<'_>, args: LimitedArgs) -> Result<Slept, TaskError> {
        if args.obey {
            ctx.sleep(Duration::from_millis(args.ms))?;
        } else {
            std::thread::sleep(Duration::from_millis(args.ms));
        }
        Ok(Slept { slept_ms: args.ms })
    }
}

/// Aborts the whole process running it, as a crashing native library would: for testing
/// that a task which keeps killing its worker ends in the dead-letter set.
#[task(name = "background.abort")]
#[derive(Default)]
pub struct Abort;

impl Task for Abort {
    type Args = Value;
    type Output = ();

    fn run(&self, _ctx: &Context<'_>, _args: Value) -> Result<(), TaskError> {
        std::process::abort()
    }
}

/// Returns the moment it started, in microseconds since the Unix epoch: the benchmarks
/// measure the time from enqueue to start with it.
#[task(name = "background.clock")]
#[derive(Default)]
pub struct Clock;

impl Task for Clock {
    type Args = Value;
    type Output = u128;

    fn run(&self, _ctx: &Context<'_>, _args: Value) -> Result<u128, TaskError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        Ok(now.map_or(0, |d| d.as_micros()))
    }
}

/// A periodic task: it declares its own schedule (03:00 on 29 February, rare enough to
/// stay out of the way), which `toolbox.toml` can override or turn off.
#[task(name = "background.leap_day", schedule = "0 0 3 29 2 *")]
#[derive(Default)]
pub struct LeapDay;

impl Task for LeapDay {
    type Args = Value;
    type Output = &'static str;

    fn run(&self, ctx: &Context<'_>, _args: Value) -> Result<&'static str, TaskError> {
        ctx.info("leap day");
        Ok("leap day")
    }
}

export_plugin!(Noop, Echo, Sleep, Fail, Panic, Progress, Limited, Abort, Clock, LeapDay);

#[cfg(test)]
mod tests {
    use super::*;
    use toolbox_plugin_api::sdk::testing::TestHost;

    #[test]
    fn progress_reports_each_step() {
        let host = TestHost::new();
        let out = host.run::<Progress>(json!({"steps": 3})).unwrap();
        assert_eq!(out, json!({"steps": 3}));
        let steps: Vec<u64> = host.progress().iter().map(|p| p.0).collect();
        assert_eq!(steps, vec![1, 2, 3]);
        assert_eq!(host.logs().len(), 3);
    }

    #[test]
    fn sleep_stops_when_cancelled() {
        let host = TestHost::new();
        host.cancel();
        let err = host.run::<Sleep>(json!({"ms": 60_000})).unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");
    }

    #[test]
    fn fail_is_fatal_unless_asked_to_retry() {
        let host = TestHost::new();
        let fatal = host.run::<Fail>(json!({})).unwrap_err();
        assert!(!fatal.is_retryable());
        assert_eq!(fatal.message(), "failed on purpose");
        let retry = host
            .run::<Fail>(json!({"retry": true, "message": "try again"}))
            .unwrap_err();
        assert!(retry.is_retryable());
        assert_eq!(retry.message(), "try again");
    }

    #[test]
    fn panic_is_caught_with_its_message() {
        let host = TestHost::new();
        let err = host.run::<Panic>(json!({"message": "boom"})).unwrap_err();
        assert!(err.message().contains("boom"), "{err:?}");
        assert!(
            err.message().contains("src/lib.rs"),
            "location missing: {err:?}"
        );
    }

    #[test]
    fn missing_arguments_are_accepted_when_all_have_defaults() {
        let host = TestHost::new();
        assert_eq!(
            host.run::<Progress>(Value::Null).unwrap(),
            json!({"steps": 5})
        );
        let err = host.run::<Sleep>(json!({"seconds": 1})).unwrap_err();
        assert!(
            err.message()
                .contains("invalid arguments for task background.sleep"),
            "{err:?}"
        );
    }

    #[test]
    fn doc_comments_become_descriptions() {
        assert_eq!(
            <Echo as toolbox_plugin_api::sdk::TaskInfo>::SPEC.description,
            "Returns its arguments unchanged."
        );
        let fail = <Fail as toolbox_plugin_api::sdk::TaskInfo>::SPEC;
        assert_eq!(
            (fail.max_retries, fail.retry_backoff),
            (2, Duration::from_millis(100))
        );
    }
}
