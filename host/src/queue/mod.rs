//! The queue: one [`Broker`] trait, two implementations — Redis Streams
//! ([`RedisBroker`], for production and many machines) and an embedded SQLite file
//! ([`SqliteBroker`], for one machine and for a first start).
//!
//! Delivery is at-least-once. Each delivery holds a lease with a fencing token: the
//! worker renews it while the run lives; when it expires (the worker died) another
//! worker's reclaim puts the task back, and the old holder's late completion is refused.
//! A lost lease counts against the task's delivery limit, not its retries.

mod backoff;
mod redis;
mod sqlite;
mod types;

use std::{sync::Arc, time::Duration};

pub use self::redis::RedisBroker;
pub use backoff::retry_delay;
pub use sqlite::SqliteBroker;
pub use types::*;

/// What a queue backend does. Every method is one round trip (or one transaction).
#[async_trait::async_trait]
pub trait Broker: Send + Sync + 'static {
    /// A short name for logs and `/ready`: `redis` or `sqlite`.
    fn kind(&self) -> &'static str;

    /// Accepts tasks. A task whose idempotency key was seen within the key's lifetime is
    /// not enqueued again: its entry carries the first task's id and `created: false`.
    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, BrokerError>;

    /// A scheduler tick: enqueues `task` unless schedule `schedule` already fired tick
    /// `tick` (or a later one), atomically, so that any number of schedulers fire each
    /// tick once. `None` when another scheduler fired it.
    async fn fire(
        &self,
        schedule: &str,
        tick: Millis,
        task: NewTask,
    ) -> Result<Option<Enqueued>, BrokerError>;

    /// The last tick each schedule fired and the task it produced.
    async fn last_fired(
        &self,
        schedules: &[String],
    ) -> Result<Vec<Option<(Millis, String)>>, BrokerError>;

    /// One worker round trip: applies `completions` (each fenced by its lease token),
    /// moves due delayed tasks of `queues` to their queue, and claims up to `want` tasks
    /// from `queues`, earlier queues first, higher priority first within a queue.
    async fn cycle(
        &self,
        worker: &str,
        queues: &[String],
        completions: &[Completion],
        want: usize,
    ) -> Result<Cycle, BrokerError>;

    /// Waits until work may be available in `queues`, or `timeout`. A hint: the caller
    /// runs `cycle` after it either way.
    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> Result<(), BrokerError>;

    /// Renews leases still held and stores progress; says for each whether it is still
    /// held and whether a revoke was asked for.
    async fn extend(
        &self,
        worker: &str,
        leases: &[LeaseUpdate],
    ) -> Result<Vec<LeaseStatus>, BrokerError>;

    /// Puts back the tasks whose lease expired (their worker died), or dead-letters those
    /// lost `max_lost` times.
    async fn reclaim(&self, lease: Duration, max_lost: u32) -> Result<ReclaimReport, BrokerError>;

    /// Revokes a task: a pending one never starts; a running one is asked to stop.
    async fn revoke(&self, id: &str) -> Result<RevokeOutcome, BrokerError>;

    /// The record of a task, `None` if unknown or expired.
    async fn get(&self, id: &str) -> Result<Option<TaskRecord>, BrokerError>;

    /// Recent tasks, newest first, `filter.limit` at most; `next_cursor` continues the list.
    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, BrokerError>;

    /// Depth, delayed, in flight and dead-lettered counts of every known queue.
    async fn queue_stats(&self) -> Result<Vec<QueueStats>, BrokerError>;

    /// Dead-lettered tasks, newest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<TaskRecord>, BrokerError>;

    /// Records that a worker is alive; it is listed for `ttl`.
    async fn heartbeat(&self, worker: &WorkerInfo, ttl: Duration) -> Result<(), BrokerError>;

    /// The workers seen alive recently.
    async fn workers(&self) -> Result<Vec<WorkerInfo>, BrokerError>;

    /// Whether the backend answers.
    async fn ping(&self) -> Result<(), BrokerError>;
}

/// Opens the broker a URL names: `redis://…` (keys under `prefix`) or `sqlite://…`.
pub async fn connect(
    url: &str,
    prefix: &str,
    config: &BrokerConfig,
) -> Result<Arc<dyn Broker>, BrokerError> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Arc::new(
            RedisBroker::connect(url, prefix, config.clone()).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteBroker::open(url, config.clone()).await?))
    } else {
        Err(BrokerError::Config(format!(
            "unsupported broker URL {url:?}: use redis://HOST:PORT/DB or sqlite://PATH"
        )))
    }
}
