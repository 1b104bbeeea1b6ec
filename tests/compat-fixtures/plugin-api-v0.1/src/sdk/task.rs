use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use super::{Context, TaskError};

/// How a task is declared: written by the [`task`](crate::task) attribute from its
/// arguments and the struct's doc comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSpec {
    /// Full name, `<domain>.<task>` in snake_case.
    pub name: &'static str,
    /// The struct's doc comment.
    pub description: &'static str,
    /// Queue the task goes to by default.
    pub queue: &'static str,
    /// Retries after a retryable failure (0: none).
    pub max_retries: u32,
    /// First retry delay; doubled on each further retry.
    pub retry_backoff: Duration,
    /// Upper bound of the retry delay.
    pub retry_backoff_max: Duration,
    /// Time limit of one run; `None`: no limit.
    pub time_limit: Option<Duration>,
    /// Cron expression (5 fields, or 6 with seconds) for a periodic task.
    pub schedule: Option<&'static str>,
}

impl TaskSpec {
    /// The defaults every field of `#[task]` falls back to.
    pub const DEFAULT: TaskSpec = TaskSpec {
        name: "",
        description: "",
        queue: "default",
        max_retries: 0,
        retry_backoff: Duration::from_secs(1),
        retry_backoff_max: Duration::from_secs(600),
        time_limit: None,
        schedule: None,
    };
}

/// Implemented by the [`task`](crate::task) attribute.
pub trait TaskInfo {
    const SPEC: TaskSpec;
}

/// A unit of background work.
///
/// A fresh value (`Default`) runs each time; keep state in the database, not in `self`.
pub trait Task: TaskInfo + Default + 'static {
    /// The arguments, deserialized from the request's JSON body. A task that takes none
    /// uses `()`; a struct whose fields all have defaults also accepts no body at all.
    type Args: DeserializeOwned;
    /// The result, stored as JSON.
    type Output: Serialize;

    fn run(&self, ctx: &Context<'_>, args: Self::Args) -> Result<Self::Output, TaskError>;

    /// A JSON schema of `Args`, shown by `/tasks/available` and checked by the API
    /// before a task is enqueued. `None` (the default) checks nothing up front.
    fn args_schema() -> Option<serde_json::Value> {
        None
    }
}
