//! The JSON shapes of the API (the seed's fields first), converted from domain types at
//! the edge.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::queue::{Millis, QueueStats, TaskRecord, TaskState, WorkerInfo};

/// RFC 3339 with milliseconds, UTC.
pub fn timestamp(ms: Millis) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| format!("{t:.3}"))
}

#[derive(Debug, Serialize)]
pub struct TaskExecuteResponse {
    pub success: bool,
    pub task_id: String,
    pub message: String,
    pub task_name: String,
}

#[derive(Debug, Serialize)]
pub struct ProgressBody {
    pub done: u64,
    pub total: u64,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct HistoryBody {
    pub at: Option<String>,
    pub event: String,
    pub attempt: u32,
    pub worker: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TaskStatusResponse {
    pub task_id: String,
    pub status: TaskState,
    pub result: Value,
    pub ready: bool,
    pub successful: Option<bool>,
    pub failed: Option<bool>,
    pub error: Option<String>,
    pub task_name: String,
    pub queue: String,
    pub attempts: u32,
    pub retries: u32,
    pub progress: Option<ProgressBody>,
    pub enqueued_at: Option<String>,
    pub eta: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub worker: Option<String>,
    pub dead_lettered: bool,
    pub history: Vec<HistoryBody>,
}

impl From<TaskRecord> for TaskStatusResponse {
    fn from(r: TaskRecord) -> Self {
        let ready = r.state.is_ready();
        let result = match r.result.as_deref() {
            Some(text) => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
            }
            None => Value::Null,
        };
        Self {
            status: r.state,
            result,
            ready,
            successful: ready.then_some(r.state == TaskState::Success),
            failed: ready.then_some(r.state == TaskState::Failure),
            error: r.error,
            task_name: r.name,
            queue: r.queue,
            attempts: r.attempts,
            retries: r.retries,
            progress: r.progress.map(|p| ProgressBody {
                done: p.done,
                total: p.total,
                message: p.message,
            }),
            enqueued_at: timestamp(r.enqueued_at),
            eta: r.eta.and_then(timestamp),
            started_at: r.started_at.and_then(timestamp),
            finished_at: r.finished_at.and_then(timestamp),
            worker: r.worker,
            dead_lettered: r.dead_lettered,
            history: r
                .history
                .into_iter()
                .map(|h| HistoryBody {
                    at: timestamp(h.at),
                    event: h.event,
                    attempt: h.attempt,
                    worker: h.worker,
                    detail: h.detail,
                })
                .collect(),
            task_id: r.id,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TaskListResponse {
    pub tasks: Vec<TaskStatusResponse>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RevokeResponse {
    pub success: bool,
    pub task_id: String,
    pub status: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct QueuesResponse {
    pub queues: Vec<QueueStats>,
}

#[derive(Debug, Serialize)]
pub struct WorkersResponse {
    pub workers: Vec<WorkerInfo>,
}

/// Options of `POST /tasks/execute/{task}`, from the query string.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteOptions {
    /// Queue to send the task to instead of the task's own.
    pub queue: Option<String>,
    /// Seconds to wait before the task may start.
    pub countdown: Option<f64>,
    /// RFC 3339 time before which the task may not start.
    pub eta: Option<String>,
    /// 0 (lowest) to 9 (highest), default 5.
    pub priority: Option<u8>,
}

/// Query of `GET /tasks`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub name: Option<String>,
    pub state: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}
