//! The host's side of a run: the context a plugin calls back into, and what comes back.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use abi_stable::std_types::{RErr, ROk, RResult, RStr, RString};
use toolbox_plugin_api::abi::{v0_1, ErrorKind, HostContext, LogLevel, RunError, TransactionStep};

use crate::database::{Session, SessionError, Step};

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
    /// The run's database session; the code that runs the task calls
    /// [`Session::release`] when the run returns.
    pub session: Session,
}

impl RunContext {
    /// A first attempt that logs through `tracing`.
    pub fn new(task_id: impl Into<String>) -> Self {
        Self {
            task_id: task_id.into(),
            attempt: 1,
            cancel: CancelFlag::default(),
            observer: Arc::new(TracingObserver),
            session: Session::none(),
        }
    }

    pub fn with_session(mut self, session: Session) -> Self {
        self.session = session;
        self
    }

    /// Once the host has asked a run to stop (revoke, time limit, lost lease), the run's
    /// outcome is decided without it: a late COMMIT would write for a run recorded as
    /// failed (and perhaps already retried). Its statements are refused and its
    /// commit becomes a rollback. Checked before each call, so a flag raised while a
    /// statement runs takes effect at the next one.
    fn refuse_if_cancelled(&self) -> Option<RunError> {
        self.cancel.is_cancelled().then(|| RunError {
            kind: ErrorKind::CANCELLED,
            message: "the run was asked to stop: its database work is rolled back".into(),
            retry_after_ms: abi_stable::std_types::ROption::RNone,
        })
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

    fn db_dialect(&self) -> RResult<RString, RunError> {
        db_call(|| self.session.dialect().map(|d| RString::from(d.name())))
    }

    fn db_query(&self, sql: RStr<'_>, params: RStr<'_>) -> RResult<RString, RunError> {
        if let Some(refused) = self.refuse_if_cancelled() {
            return RErr(refused);
        }
        db_call(|| {
            self.session
                .query(sql.as_str(), params.as_str())
                .map(RString::from)
        })
    }

    fn db_execute(&self, sql: RStr<'_>, params: RStr<'_>) -> RResult<u64, RunError> {
        if let Some(refused) = self.refuse_if_cancelled() {
            return RErr(refused);
        }
        db_call(|| self.session.execute(sql.as_str(), params.as_str()))
    }

    fn db_transaction(&self, step: TransactionStep) -> RResult<(), RunError> {
        let step = match step {
            TransactionStep::BEGIN => Step::Begin,
            TransactionStep::COMMIT => Step::Commit,
            TransactionStep::ROLLBACK => Step::Rollback,
            other => {
                return RErr(RunError {
                    kind: ErrorKind::FATAL,
                    message: format!("unknown transaction step {}", other.0).into(),
                    retry_after_ms: abi_stable::std_types::ROption::RNone,
                })
            }
        };
        if step != Step::Rollback {
            if let Some(refused) = self.refuse_if_cancelled() {
                if step == Step::Commit {
                    let _ = self.session.transaction(Step::Rollback);
                }
                return RErr(refused);
            }
        }
        db_call(|| self.session.transaction(step))
    }
}

/// What a plugin built against interface 0.1 can ask: the same, without the database.
impl v0_1::HostContext for RunContext {
    fn task_id(&self) -> RString {
        HostContext::task_id(self)
    }

    fn attempt(&self) -> u32 {
        HostContext::attempt(self)
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        HostContext::log(self, level, message);
    }

    fn progress(&self, done: u64, total: u64, message: RStr<'_>) {
        HostContext::progress(self, done, total, message);
    }

    fn is_cancelled(&self) -> bool {
        HostContext::is_cancelled(self)
    }
}

/// Runs a session call for a plugin. A panic must not leave here: abi_stable aborts the
/// process when one crosses a `#[sabi_trait]` method, so it becomes a fatal error.
fn db_call<T>(call: impl FnOnce() -> Result<T, SessionError>) -> RResult<T, RunError> {
    let error = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(Ok(value)) => return ROk(value),
        Ok(Err(error)) => RunError {
            kind: if error.is_transient() {
                ErrorKind::RETRY
            } else {
                ErrorKind::FATAL
            },
            message: error.to_string().into(),
            retry_after_ms: abi_stable::std_types::ROption::RNone,
        },
        Err(_) => RunError {
            kind: ErrorKind::FATAL,
            message: "the host's database session failed (a bug in toolbox: see its log)".into(),
            retry_after_ms: abi_stable::std_types::ROption::RNone,
        },
    };
    RErr(error)
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
