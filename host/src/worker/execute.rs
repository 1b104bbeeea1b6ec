//! Runs one delivery on a blocking thread, under its time limit, and turns what the
//! plugin returned into the [`Outcome`] the broker records.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::sync::mpsc;

use crate::{
    database::{Database, Session},
    plugins::{CancelFlag, RunContext, RunObserver, TaskFailure, TaskHandle},
    queue::{retry_delay, Delivery, Outcome, Progress},
};

/// What a finished run reports to the worker loop.
pub(super) struct Finished {
    pub task_id: String,
    pub outcome: Outcome,
    /// How long the run held its slot.
    pub held_slot: Duration,
}

/// The state the worker loop keeps about a run, shared with the run's own task.
pub(super) struct RunState {
    pub cancel: CancelFlag,
    /// Set when a revoke asked the run to stop.
    pub revoked: AtomicBool,
    pub progress: Arc<Mutex<Option<Progress>>>,
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

pub(super) struct Limits {
    /// Past the time limit the run is asked to stop; past this much more it is failed
    /// and its slot given back, whether or not its thread ever returns.
    pub grace: Duration,
    /// Runs that outlived limit and grace and still hold a thread.
    pub stuck: Arc<AtomicUsize>,
}

/// Starts `delivery` of `task` and returns its shared state; the outcome arrives on `done`.
pub(super) fn start(
    task: Arc<TaskHandle>,
    delivery: &Delivery,
    database: Option<&Database>,
    limits: &Limits,
    done: mpsc::UnboundedSender<Finished>,
) -> Arc<RunState> {
    let state = Arc::new(RunState {
        cancel: CancelFlag::default(),
        revoked: AtomicBool::new(false),
        progress: Arc::new(Mutex::new(None)),
    });
    let ctx = RunContext {
        task_id: delivery.lease.task_id.clone(),
        attempt: delivery.attempt,
        cancel: state.cancel.clone(),
        observer: Arc::new(WorkerObserver {
            task: task.def.name.clone(),
            progress: Arc::clone(&state.progress),
        }),
        session: match database {
            Some(db) => Session::new(db.clone(), tokio::runtime::Handle::current()),
            None => Session::none(),
        },
    };
    let args = delivery.args.clone();
    let retries_used = delivery.retries;
    let task_id = delivery.lease.task_id.clone();
    let grace = limits.grace;
    let stuck = Arc::clone(&limits.stuck);
    let shared = Arc::clone(&state);
    tokio::spawn(async move {
        let began = std::time::Instant::now();
        let time_limit = task.def.time_limit_ms.map(Duration::from_millis);
        let run_task = Arc::clone(&task);
        let mut join = tokio::task::spawn_blocking(move || {
            let result = run_task.run(&args, &ctx);
            // Here, on the run's own thread, however the run ended: a panic was caught
            // inside the plugin, a time limit or revoke only asked it to return.
            ctx.session.release();
            result
        });
        let mut timed_out = false;
        let result = match time_limit {
            None => Some((&mut join).await),
            Some(limit) => match tokio::time::timeout(limit, &mut join).await {
                Ok(result) => Some(result),
                Err(_) => {
                    timed_out = true;
                    shared.cancel.cancel();
                    tokio::time::timeout(grace, &mut join).await.ok()
                }
            },
        };
        let outcome = match result {
            None => {
                // The thread cannot be killed: count it until it returns.
                stuck.fetch_add(1, Ordering::SeqCst);
                tracing::error!(
                    task = %task.def.name,
                    task_id,
                    grace_ms = grace.as_millis() as u64,
                    "task ignored cancellation past its time limit; its thread stays busy"
                );
                let stuck = Arc::clone(&stuck);
                tokio::spawn(async move {
                    let _ = join.await;
                    stuck.fetch_sub(1, Ordering::SeqCst);
                });
                time_limit_failure(&task)
            }
            Some(Err(join_error)) => Outcome::Failure {
                error: format!("the run's thread failed: {join_error}"),
            },
            Some(Ok(_)) if timed_out => time_limit_failure(&task),
            Some(Ok(run)) => decide(
                &task,
                run,
                retries_used,
                shared.revoked.load(Ordering::SeqCst),
            ),
        };
        let _ = done.send(Finished {
            task_id,
            outcome,
            held_slot: began.elapsed(),
        });
    });
    state
}

fn time_limit_failure(task: &TaskHandle) -> Outcome {
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
