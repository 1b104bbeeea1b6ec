use std::{fmt, time::Duration};

use crate::abi::ErrorKind;

/// Why a task failed, and whether running it again may help.
///
/// `?` converts any `std::error::Error` into a *retryable* error: most errors a task
/// meets (a connection dropped, a lock timed out) are transient, and the task's
/// `max_retries` (0 by default) decides whether a retry happens. Use
/// [`TaskError::fatal`] for failures that no retry can fix.
///
/// It does not implement `std::error::Error` itself, like `anyhow::Error`, so that the
/// blanket `From` above can exist.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
}

impl TaskError {
    /// A transient failure: retried according to the task's policy.
    pub fn retry(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::RETRY, message)
    }

    /// A transient failure that asks for a given delay before the next attempt.
    pub fn retry_after(message: impl fmt::Display, delay: Duration) -> Self {
        Self {
            retry_after: Some(delay),
            ..Self::retry(message)
        }
    }

    /// A permanent failure: never retried.
    pub fn fatal(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::FATAL, message)
    }

    /// Arguments that do not make sense for the task: never retried.
    pub fn invalid_args(message: impl fmt::Display) -> Self {
        Self::new(ErrorKind::INVALID_ARGS, message)
    }

    /// The run stopped because the host asked it to.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::CANCELLED, "cancelled")
    }

    pub(crate) fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        Self {
            kind,
            message: message.to_string(),
            retry_after: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::RETRY
    }

    pub fn is_cancelled(&self) -> bool {
        self.kind == ErrorKind::CANCELLED
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn retry_delay(&self) -> Option<Duration> {
        self.retry_after
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::retry(message)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("kind", &self.kind.0)
            .field("message", &self.message)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}
