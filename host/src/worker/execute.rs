//! Runs one claimed task on a slot thread and turns what the plugin returned into the
//! [`Outcome`] the broker records.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use crate::{
    database::{Database, Session},
    plugins::{CancelFlag, RunContext, RunObserver, TaskFailure, TaskHandle},
    queue::{retry_delay, Delivery, Lease, Outcome, Progress},
};

/// What a finished run reports to the worker loop.
pub(super) struct Finished {
    /// The delivery that ran: the task's id and the lease the outcome is reported under.
    pub lease: Lease,
    pub outcome: Outcome,
    /// How long the run held its slot.
    pub held_slot: Duration,
}

const WAITING: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
/// Taken back by the worker loop: before it started (revoked, lease lost, returned to
/// its queue) or after its time limit and grace (its thread no longer owns a slot).
const WITHDRAWN: u8 = 3;

/// What the worker loop and the slot thread share about one claimed task. Its phase
/// changes only by compare-and-swap, so that when the loop withdraws a task at the
/// moment a slot thread starts it, exactly one of them wins.
pub(super) struct RunState {
    pub cancel: CancelFlag,
    /// Set when a revoke asked the run to stop.
    pub revoked: AtomicBool,
    /// Set when the time limit asked the run to stop.
    pub timed_out: AtomicBool,
    pub progress: Arc<Mutex<Option<Progress>>>,
    pub time_limit: Option<Duration>,
    phase: AtomicU8,
    started: OnceLock<Instant>,
}

impl RunState {
    pub fn new(time_limit: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            cancel: CancelFlag::default(),
            revoked: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            progress: Arc::new(Mutex::new(None)),
            time_limit,
            phase: AtomicU8::new(WAITING),
            started: OnceLock::new(),
        })
    }

    /// When its run began; `None` while it waits for a slot.
    pub fn started_at(&self) -> Option<Instant> {
        self.started.get().copied()
    }

    pub fn is_waiting(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == WAITING
    }

    /// Holding a slot: started, and neither ended nor abandoned.
    pub fn is_running(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == RUNNING
    }

    /// The loop takes back a task that has not started; false if it has.
    pub fn withdraw(&self) -> bool {
        self.swap_phase(WAITING, WITHDRAWN)
    }

    /// The watchdog gives up on a run that outlived its time limit and grace; false if
    /// the run ended meanwhile.
    pub fn abandon(&self) -> bool {
        self.swap_phase(RUNNING, WITHDRAWN)
    }

    /// The slot thread starts the run; false if the loop took it back.
    pub fn begin(&self) -> bool {
        let began = self.swap_phase(WAITING, RUNNING);
        if began {
            let _ = self.started.set(Instant::now());
        }
        began
    }

    /// The slot thread ends the run; false if the watchdog gave up on it.
    fn end(&self) -> bool {
        self.swap_phase(RUNNING, DONE)
    }

    fn swap_phase(&self, from: u8, to: u8) -> bool {
        self.phase
            .compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// A claimed task of a known plugin, waiting for a slot thread.
pub(super) struct Job {
    pub task: Arc<TaskHandle>,
    pub delivery: Delivery,
    pub state: Arc<RunState>,
}

/// Stores a run's progress for the next lease renewal, and logs what the task logs.
struct WorkerObserver {
    task: String,
    progress: Arc<Mutex<Option<Progress>>>,
}

impl RunObserver for WorkerObserver {
    fn log(&self, task_id: &str, level: tracing::Level, message: &str) {
        let task = self.task.as_str();
        match level {
            tracing::Level::ERROR => tracing::error!(task, task_id, "{message}"),
            tracing::Level::WARN => tracing::warn!(task, task_id, "{message}"),
            tracing::Level::INFO => tracing::info!(task, task_id, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(task, task_id, "{message}"),
            tracing::Level::TRACE => tracing::trace!(task, task_id, "{message}"),
        }
    }

    fn progress(&self, _task_id: &str, done: u64, total: u64, message: &str) {
        *self.progress.lock().expect("progress lock poisoned") = Some(Progress {
            done,
            total,
            message: message.to_owned(),
        });
    }
}

/// How a slot thread's run of a job ended.
pub(super) enum Ran {
    Finished(Finished),
    /// The watchdog gave up on it past its time limit and reported its failure.
    Abandoned,
}

/// Runs `job`, which [`RunState::begin`] started, on the calling (slot) thread.
pub(super) fn run(job: Job, database: Option<&Database>, runtime: &tokio::runtime::Handle) -> Ran {
    let Job {
        task,
        delivery,
        state,
    } = job;
    tracing::debug!(task = %delivery.name, task_id = %delivery.lease.task_id, attempt = delivery.attempt, "task started");
    let began = state.started_at().unwrap_or_else(Instant::now);
    let ctx = RunContext {
        task_id: delivery.lease.task_id.clone(),
        attempt: delivery.attempt,
        cancel: state.cancel.clone(),
        observer: Arc::new(WorkerObserver {
            task: task.def.name.clone(),
            progress: Arc::clone(&state.progress),
        }),
        session: match database {
            Some(db) => Session::new(db.clone(), runtime.clone()),
            None => Session::none(),
        },
    };
    // A plugin's panic is caught at the ABI boundary; this catches the host's own, so
    // that a bug there fails one task instead of taking a slot thread down.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let result = task.run(&delivery.args, &ctx);
        // However the run ended, on the run's own thread: a time limit or revoke only
        // asked it to return.
        ctx.session.release();
        result
    }));
    let held_slot = began.elapsed();
    if !state.end() {
        return Ran::Abandoned;
    }
    let outcome = match result {
        Err(panic) => Outcome::Failure {
            error: format!("the run's thread failed: {}", panic_text(&*panic)),
        },
        Ok(_) if state.timed_out.load(Ordering::SeqCst) => time_limit_failure(&task),
        Ok(run) => decide(
            &task,
            run,
            delivery.retries,
            state.revoked.load(Ordering::SeqCst),
        ),
    };
    Ran::Finished(Finished {
        lease: delivery.lease,
        outcome,
        held_slot,
    })
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("panicked")
}

pub(super) fn time_limit_failure(task: &TaskHandle) -> Outcome {
    let limit = task.def.time_limit_ms.unwrap_or_default();
    Outcome::Failure {
        error: format!(
            "time limit exceeded: {} ran longer than {} ms",
            task.def.name, limit
        ),
    }
}

/// The retry policy: a retryable failure runs again while the task has retries left,
/// after its requested delay or an exponential backoff with jitter.
fn decide(
    task: &TaskHandle,
    run: Result<String, TaskFailure>,
    retries_used: u32,
    revoked: bool,
) -> Outcome {
    let def = &task.def;
    match run {
        Ok(result) => Outcome::Success { result },
        Err(TaskFailure::Cancelled { .. }) if revoked => Outcome::Revoked,
        Err(TaskFailure::Retryable { message, after }) if retries_used < def.max_retries => {
            let delay = after.unwrap_or_else(|| {
                retry_delay(
                    retries_used + 1,
                    Duration::from_millis(def.retry_backoff_ms),
                    Duration::from_millis(def.retry_backoff_max_ms),
                )
            });
            Outcome::Retry {
                error: message,
                delay,
            }
        }
        Err(TaskFailure::Retryable { message, .. }) if def.max_retries > 0 => Outcome::Failure {
            error: format!("{message} (gave up after {} retries)", def.max_retries),
        },
        Err(failure) => Outcome::Failure {
            error: failure.message().to_owned(),
        },
    }
}
