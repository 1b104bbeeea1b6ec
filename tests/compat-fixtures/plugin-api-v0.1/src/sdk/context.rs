use std::time::{Duration, Instant};

use abi_stable::std_types::RStr;

use super::TaskError;
use crate::abi::{HostContextRef, LogLevel};

/// What a run can ask of the host: who it is, where to log, how far it got, and whether
/// it should stop.
pub struct Context<'a> {
    host: HostContextRef<'a>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(host: HostContextRef<'a>) -> Self {
        Self { host }
    }

    /// The task's id (a UUID string).
    pub fn task_id(&self) -> String {
        self.host.task_id().into_string()
    }

    /// 1 on the first run, 2 on the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.host.attempt()
    }

    pub fn log(&self, level: LogLevel, message: &str) {
        self.host.log(level, RStr::from_str(message));
    }

    pub fn error(&self, message: &str) {
        self.log(LogLevel::ERROR, message);
    }

    pub fn warn(&self, message: &str) {
        self.log(LogLevel::WARN, message);
    }

    pub fn info(&self, message: &str) {
        self.log(LogLevel::INFO, message);
    }

    pub fn debug(&self, message: &str) {
        self.log(LogLevel::DEBUG, message);
    }

    /// Reports that `done` of `total` steps are finished.
    pub fn progress(&self, done: u64, total: u64, message: &str) {
        self.host.progress(done, total, RStr::from_str(message));
    }

    /// Whether the host asked this run to stop.
    pub fn is_cancelled(&self) -> bool {
        self.host.is_cancelled()
    }

    /// `Err(TaskError::cancelled())` once the host asked this run to stop: put
    /// `ctx.check_cancelled()?` between the steps of a long task.
    pub fn check_cancelled(&self) -> Result<(), TaskError> {
        if self.is_cancelled() {
            Err(TaskError::cancelled())
        } else {
            Ok(())
        }
    }

    /// Sleeps for `duration`, waking early with `Err(TaskError::cancelled())` when the
    /// host asks the run to stop.
    pub fn sleep(&self, duration: Duration) -> Result<(), TaskError> {
        // Cancellation is a flag the host sets, not a signal: poll it often enough that a
        // revoke or time limit is obeyed within a few milliseconds.
        const SLICE: Duration = Duration::from_millis(5);
        let deadline = Instant::now() + duration;
        loop {
            self.check_cancelled()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            std::thread::sleep(SLICE.min(deadline - now));
        }
    }
}
