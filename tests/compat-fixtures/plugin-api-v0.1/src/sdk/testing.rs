//! Run a task in-process against a fake host that records what the task reports
//! (enable the `testing` feature in a plugin's dev-dependencies).
//!
//! ```
//! use toolbox_plugin_api::prelude::*;
//! use toolbox_plugin_api::sdk::testing::TestHost;
//!
//! /// Adds two numbers.
//! #[task(name = "math.add")]
//! #[derive(Default)]
//! struct Add;
//!
//! impl Task for Add {
//!     type Args = (i64, i64);
//!     type Output = i64;
//!     fn run(&self, ctx: &Context<'_>, (a, b): (i64, i64)) -> Result<i64, TaskError> {
//!         ctx.info("adding");
//!         Ok(a + b)
//!     }
//! }
//!
//! let host = TestHost::new();
//! assert_eq!(host.run::<Add>(serde_json::json!([2, 3])).unwrap(), serde_json::json!(5));
//! assert_eq!(host.logs(), vec!["adding".to_owned()]);
//! ```

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RStr, RString},
};

use super::{export, Context, Task, TaskError};
use crate::abi::{ErrorKind, HostContext, HostContext_TO, LogLevel};

/// A host for tests: records log lines and progress, and can ask the run to stop.
#[derive(Default)]
pub struct TestHost {
    task_id: String,
    attempt: u32,
    cancelled: AtomicBool,
    logs: Mutex<Vec<(LogLevel, String)>>,
    progress: Mutex<Vec<(u64, u64, String)>>,
}

impl TestHost {
    pub fn new() -> Self {
        Self {
            task_id: "00000000-0000-7000-8000-000000000000".to_owned(),
            attempt: 1,
            ..Self::default()
        }
    }

    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Asks the next (or the running) task to stop.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Runs `T` with `args` the way a host would: through JSON, with panics caught.
    pub fn run<T: Task>(&self, args: serde_json::Value) -> Result<serde_json::Value, TaskError> {
        let handle = HostContext_TO::from_ptr(self, TD_Opaque);
        let ctx = Context::new(handle);
        let json = export::catch(|| export::run_task::<T>(&args.to_string(), &ctx))
            .map_err(|message| TaskError::new(ErrorKind::PANIC, message))??;
        Ok(serde_json::from_str(&json).expect("run_task produces JSON"))
    }

    /// The messages logged so far, in order.
    pub fn logs(&self) -> Vec<String> {
        let logs = self.logs.lock().expect("log lock poisoned");
        logs.iter().map(|(_, m)| m.clone()).collect()
    }

    /// The progress reports so far: `(done, total, message)`.
    pub fn progress(&self) -> Vec<(u64, u64, String)> {
        self.progress
            .lock()
            .expect("progress lock poisoned")
            .clone()
    }
}

impl HostContext for TestHost {
    fn task_id(&self) -> RString {
        self.task_id.as_str().into()
    }

    fn attempt(&self) -> u32 {
        self.attempt
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let mut logs = self.logs.lock().expect("log lock poisoned");
        logs.push((level, message.to_string()));
    }

    fn progress(&self, done: u64, total: u64, message: RStr<'_>) {
        let mut progress = self.progress.lock().expect("progress lock poisoned");
        progress.push((done, total, message.to_string()));
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}
