//! The host's side of a run: the context a plugin calls back into, and what comes back.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use abi_stable::std_types::{RStr, RString};
use toolbox_plugin_api::abi::{ErrorKind, HostContext, LogLevel, RunError};

/// Receives what a running task reports. The worker stores progress in the task's
/// record; `toolbox run` prints it.
pub trait RunObserver: Send + Sync {
    fn log(&self, task_id: &str, level: tracing::Level, message: &str);
    fn progress(&self, task_id: &str, done: u64, total: u64, message: &str);
}

/// Forwards a task's logs and progress to `tracing`.
pub struct TracingObserver;

impl RunObserver for TracingObserver {
    fn log(&self, task_id: &str, level: tracing::Level, message: &str) {
        match level {
            tracing::Level::ERROR => tracing::error!(task_id, "{message}"),
            tracing::Level::WARN => tracing::warn!(task_id, "{message}"),
            tracing::Level::INFO => tracing::info!(task_id, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(task_id, "{message}"),
            tracing::Level::TRACE => tracing::trace!(task_id, "{message}"),
        }
    }

    fn progress(&self, task_id: &str, done: u64, total: u64, message: &str) {
        tracing::info!(task_id, done, total, "progress: {message}");
    }
}

/// A flag the host raises to ask a run to stop; the task polls it.
#[derive(Clone, Default, Debug)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Everything one run is given.
pub struct RunContext {
    pub task_id: String,
    pub attempt: u32,
    pub cancel: CancelFlag,
    pub observer: Arc<dyn RunObserver>,
}

impl RunContext {
    /// A first attempt that logs through `tracing`.
    pub fn new(task_id: impl Into<String>) -> Self {
        Self {
            task_id: task_id.into(),
            attempt: 1,
            cancel: CancelFlag::default(),
            observer: Arc::new(TracingObserver),
        }
    }
}

impl HostContext for RunContext {
    fn task_id(&self) -> RString {
        self.task_id.as_str().into()
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let level = match level {
            LogLevel::ERROR => tracing::Level::ERROR,
            LogLevel::WARN => tracing::Level::WARN,
            LogLevel::DEBUG => tracing::Level::DEBUG,
            LogLevel::TRACE => tracing::Level::TRACE,
            _ => tracing::Level::INFO,
        };
        self.observer.log(&self.task_id, level, message.as_str());
    }

    fn progress(&self, done: u64, total: u64, message: RStr<'_>) {
        self.observer
            .progress(&self.task_id, done, total, message.as_str());
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// How a run failed, in the host's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskFailure {
    /// A transient error: retry per the task's policy (or after `after`, if given).
    #[error("{message}")]
    Retryable {
        message: String,
        after: Option<Duration>,
    },
    #[error("{message}")]
    Fatal { message: String },
    #[error("{message}")]
    InvalidArgs { message: String },
    #[error("{message}")]
    Panicked { message: String },
    #[error("{message}")]
    Cancelled { message: String },
    #[error("{message}")]
    UnknownTask { message: String },
}

impl TaskFailure {
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable { message, .. }
            | Self::Fatal { message }
            | Self::InvalidArgs { message }
            | Self::Panicked { message }
            | Self::Cancelled { message }
            | Self::UnknownTask { message } => message,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    pub(crate) fn from_abi(error: RunError) -> Self {
        let message = error.message.into_string();
        match error.kind {
            ErrorKind::RETRY => Self::Retryable {
                message,
                after: error
                    .retry_after_ms
                    .into_option()
                    .map(Duration::from_millis),
            },
            ErrorKind::INVALID_ARGS => Self::InvalidArgs { message },
            ErrorKind::PANIC => Self::Panicked { message },
            ErrorKind::CANCELLED => Self::Cancelled { message },
            ErrorKind::UNKNOWN_TASK => Self::UnknownTask { message },
            // FATAL, and kinds a newer interface may add: never retried.
            _ => Self::Fatal { message },
        }
    }
}
