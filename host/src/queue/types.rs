//! The values that cross the [`Broker`](super::Broker) trait.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// The longest delay the brokers accept: bounds a plugin's `retry_after` or an eta so
/// that no due time overflows (an eta as far as the year 9999 stays below it, and its
/// milliseconds stay exact in Lua's doubles).
pub const MAX_DELAY: Duration = Duration::from_secs(9_000 * 365 * 24 * 3600);

pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Settings every broker shares.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// How long a finished task's record is kept (default 24 h).
    pub result_ttl: Duration,
    /// How long an idempotency key maps to its first task (default 24 h).
    pub idempotency_ttl: Duration,
    /// A running task's lease (default 30 s); the worker renews it while alive.
    pub lease: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            result_ttl: Duration::from_secs(24 * 3600),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(30),
        }
    }
}

/// A task to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// UUID v7, assigned by the caller.
    pub id: String,
    /// Full task name.
    pub name: String,
    pub queue: String,
    /// Arguments, JSON text.
    pub args: String,
    /// 0 (lowest) to 9 (highest); 5 by default.
    pub priority: u8,
    /// Run no earlier than this from now (countdown, or an eta converted by the caller).
    pub delay: Option<Duration>,
    pub idempotency_key: Option<String>,
}

impl NewTask {
    pub const DEFAULT_PRIORITY: u8 = 5;

    pub fn new(name: impl Into<String>, queue: impl Into<String>, args: impl Into<String>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            name: name.into(),
            queue: queue.into(),
            args: args.into(),
            priority: Self::DEFAULT_PRIORITY,
            delay: None,
            idempotency_key: None,
        }
    }
}

/// What `enqueue` answers for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    /// False when an idempotency key matched an earlier task, whose id this is.
    pub created: bool,
}

/// The states of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskState {
    Pending,
    Started,
    Retry,
    Success,
    Failure,
    Revoked,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Started => "STARTED",
            Self::Retry => "RETRY",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::Revoked => "REVOKED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "PENDING" => Self::Pending,
            "STARTED" => Self::Started,
            "RETRY" => Self::Retry,
            "SUCCESS" => Self::Success,
            "FAILURE" => Self::Failure,
            "REVOKED" => Self::Revoked,
            _ => return None,
        })
    }

    /// SUCCESS, FAILURE and REVOKED: nothing more will happen to the task.
    pub fn is_ready(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Revoked)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a running task got, as it reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub message: String,
}

/// One event of a task's life, kept in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub at: Millis,
    /// `started`, `succeeded`, `failed`, `retry`, `revoked`, `lease_expired`, `released`,
    /// `returned`,
    /// `dead_lettered`.
    pub event: String,
    pub attempt: u32,
    pub worker: Option<String>,
    pub detail: Option<String>,
}

/// Everything known about a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub name: String,
    pub queue: String,
    pub args: String,
    pub state: TaskState,
    pub priority: u8,
    /// Runs started (a run lost with its worker counts too).
    pub attempts: u32,
    /// Retries used after retryable failures.
    pub retries: u32,
    /// Deliveries that ended without an outcome: the worker died, or did not know the task.
    pub lost: u32,
    pub enqueued_at: Millis,
    /// When a delayed or retried task is due.
    pub eta: Option<Millis>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub worker: Option<String>,
    /// The result, JSON text (SUCCESS).
    pub result: Option<String>,
    /// The last error (FAILURE, RETRY).
    pub error: Option<String>,
    pub progress: Option<Progress>,
    pub revoke_requested: bool,
    pub dead_lettered: bool,
    pub history: Vec<HistoryEvent>,
}

/// The lease a worker holds on a task it runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub task_id: String,
    /// The fencing token: only the holder of the current token can complete the task.
    pub token: String,
    /// Where the broker keeps the delivery (a Redis stream key; empty for SQLite).
    pub slot: String,
}

/// A task handed to a worker.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub lease: Lease,
    pub name: String,
    pub queue: String,
    pub args: String,
    /// This run's number: 1 for the first.
    pub attempt: u32,
    pub retries: u32,
    pub lost: u32,
    pub enqueued_at: Millis,
}

/// How a run ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success {
        result: String,
    },
    Failure {
        error: String,
    },
    /// Run again after `delay`; uses up one of the task's retries.
    Retry {
        error: String,
        delay: Duration,
    },
    /// Stopped by a revoke.
    Revoked,
    /// Not run: back to the queue after `delay` (so that another worker can take it),
    /// because this worker does not know the task; counts as a lost delivery, and the
    /// task is dead-lettered after `max_lost`.
    Release {
        reason: String,
        max_lost: u32,
        delay: Duration,
    },
    /// Not run: claimed ahead of a free slot, and handed back unstarted because the
    /// slots stayed busy. Back to its queue at once; neither an attempt nor a lost
    /// delivery.
    Return {
        reason: String,
    },
}

/// A worker's report of one finished delivery.
#[derive(Debug, Clone)]
pub struct Completion {
    pub lease: Lease,
    pub worker: String,
    pub outcome: Outcome,
}

/// What one `cycle` did.
#[derive(Debug, Default)]
pub struct Cycle {
    /// For each completion, in order: whether it was applied (false: its lease had been
    /// taken over, so a newer attempt owns the task).
    pub applied: Vec<bool>,
    pub deliveries: Vec<Delivery>,
    /// How long until the next delayed task of the cycle's queues is due, by the
    /// broker's clock (relative, so that clock skew between machines does not matter).
    pub next_due_in: Option<Duration>,
}

/// A lease to renew, with the run's latest progress.
#[derive(Debug, Clone)]
pub struct LeaseUpdate {
    pub lease: Lease,
    pub progress: Option<Progress>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    Held,
    /// Still held, and a revoke was asked for: cancel the run.
    RevokeRequested,
    /// Taken over: another attempt owns the task now.
    Lost,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Tasks put back in their queue.
    pub requeued: Vec<String>,
    /// Tasks moved to the dead-letter set.
    pub dead_lettered: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// It was waiting: it will never start.
    Revoked,
    /// It is running: the worker was asked to stop it.
    Requested,
    /// It had already finished.
    AlreadyFinished(TaskState),
    NotFound,
}

/// What `list` returns: tasks matching all the given fields.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub name: Option<String>,
    pub state: Option<TaskState>,
    pub limit: usize,
    /// From a previous page's `next_cursor`: only tasks older than it.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TaskPage {
    pub tasks: Vec<TaskRecord>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub queue: String,
    /// Ready to run.
    pub depth: u64,
    /// Waiting for a countdown, eta or retry backoff.
    pub delayed: u64,
    /// Held by a worker.
    pub in_flight: u64,
    pub dead_lettered: u64,
}

/// A live worker, as its heartbeat describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    pub hostname: String,
    pub pid: u32,
    pub queues: Vec<String>,
    pub concurrency: usize,
    pub in_flight: usize,
    pub started_at: Millis,
    pub last_seen: Millis,
    /// Runs that outlived their time limit and grace period and still occupy a thread.
    pub stuck_threads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker configuration: {0}")]
    Config(String),
    #[error("broker data is corrupt: {0}")]
    Corrupt(String),
}

impl BrokerError {
    /// Whether trying again later may succeed (the backend is down or restarting).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
