//! The embedded broker: one SQLite file (WAL mode), for a single machine and for a first
//! start without Redis. Several processes may share the file: every worker step is one
//! `BEGIN IMMEDIATE` transaction, so claims and completions never interleave.
//!
//! Durable against a crash of the process (WAL with `synchronous = NORMAL` keeps every
//! committed transaction when the process dies; a power cut may lose the last ones).

use std::{str::FromStr, time::Duration};

use sqlx::{
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
    Row, SqlitePool,
};
use tokio::sync::Notify;

use super::{
    now_ms, Broker, BrokerConfig, BrokerError, Completion, Cycle, Delivery, Enqueued, HistoryEvent,
    Lease, LeaseStatus, LeaseUpdate, ListFilter, Millis, NewTask, Outcome, Progress, QueueStats,
    ReclaimReport, RevokeOutcome, TaskPage, TaskRecord, TaskState, WorkerInfo,
};

/// How often an idle worker asks whether another process wrote to the file.
const POLL: Duration = Duration::from_millis(2);

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS tb_tasks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        queue TEXT NOT NULL,
        args TEXT NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        retries INTEGER NOT NULL DEFAULT 0,
        lost INTEGER NOT NULL DEFAULT 0,
        enqueued_at INTEGER NOT NULL,
        due_at INTEGER NOT NULL,
        eta INTEGER,
        started_at INTEGER,
        finished_at INTEGER,
        worker TEXT,
        lease_token TEXT,
        lease_expires INTEGER,
        revoke INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        error TEXT,
        progress TEXT,
        dead INTEGER NOT NULL DEFAULT 0,
        expires_at INTEGER
    )",
    "CREATE INDEX IF NOT EXISTS tb_tasks_ready ON tb_tasks (queue, priority DESC, due_at, id)
        WHERE state IN ('PENDING', 'RETRY')",
    "CREATE INDEX IF NOT EXISTS tb_tasks_leases ON tb_tasks (lease_expires) WHERE state = 'STARTED'",
    "CREATE INDEX IF NOT EXISTS tb_tasks_expiry ON tb_tasks (expires_at) WHERE expires_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS tb_history (
        task_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        event TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        worker TEXT,
        detail TEXT
    )",
    "CREATE INDEX IF NOT EXISTS tb_history_task ON tb_history (task_id)",
    "CREATE TABLE IF NOT EXISTS tb_idempotency (
        key TEXT PRIMARY KEY,
        task_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS tb_beat (
        schedule TEXT PRIMARY KEY,
        tick INTEGER NOT NULL,
        task_id TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS tb_workers (
        name TEXT PRIMARY KEY,
        info TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    )",
];

pub struct SqliteBroker {
    pool: SqlitePool,
    config: BrokerConfig,
    /// Wakes this process's idle workers when this process enqueues.
    work: Notify,
    /// A connection of its own for `PRAGMA data_version`, which changes when another
    /// connection (another process) commits: a cheap way to notice its enqueues.
    watch: tokio::sync::Mutex<sqlx::SqliteConnection>,
}

type Tx = sqlx::Transaction<'static, sqlx::Sqlite>;

fn db_error(error: sqlx::Error) -> BrokerError {
    BrokerError::Unavailable(format!("SQLite queue: {error}"))
}

fn ms(d: Duration) -> i64 {
    d.min(super::MAX_DELAY).as_millis() as i64
}

async fn data_version(conn: &mut sqlx::SqliteConnection) -> Result<i64, BrokerError> {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(conn)
        .await
        .map_err(db_error)
}

fn options_for_watch(url: &str) -> Result<SqliteConnectOptions, BrokerError> {
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(|e| BrokerError::Config(format!("bad SQLite URL {url:?}: {e}")))?
        .busy_timeout(Duration::from_secs(10)))
}

impl SqliteBroker {
    /// Opens (creating it if needed) the queue file of a `sqlite://PATH` URL.
    pub async fn open(url: &str, config: BrokerConfig) -> Result<Self, BrokerError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| BrokerError::Config(format!("bad SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                BrokerError::Unavailable(format!("cannot open the SQLite queue {url}: {e}"))
            })?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&pool)
                .await
                .map_err(db_error)?;
        }
        let watch =
            <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options_for_watch(url)?)
                .await
                .map_err(db_error)?;
        Ok(Self {
            pool,
            config,
            work: Notify::new(),
            watch: tokio::sync::Mutex::new(watch),
        })
    }

    async fn begin(&self) -> Result<Tx, BrokerError> {
        // IMMEDIATE takes the write lock up front: a deferred transaction that reads then
        // writes can fail with SQLITE_BUSY when another process wrote in between.
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)
    }
}

/// Inserts one task (an idempotency key or an id already seen returns the first task).
async fn insert_task(
    tx: &mut Tx,
    task: NewTask,
    now: Millis,
    idempotency_ttl: Duration,
) -> Result<Enqueued, BrokerError> {
    if let Some(key) = &task.idempotency_key {
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT task_id FROM tb_idempotency WHERE key = $1 AND expires_at > $2",
        )
        .bind(key)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
        if let Some(id) = existing {
            return Ok(Enqueued { id, created: false });
        }
        sqlx::query(
            "INSERT OR REPLACE INTO tb_idempotency (key, task_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(key)
        .bind(&task.id)
        .bind(now + ms(idempotency_ttl))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    let delay = task.delay.map_or(0, ms);
    let inserted = sqlx::query(
        "INSERT OR IGNORE INTO tb_tasks (id, name, queue, args, state, priority, enqueued_at, due_at, eta)
         VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $7, $8)",
    )
    .bind(&task.id)
    .bind(&task.name)
    .bind(&task.queue)
    .bind(&task.args)
    .bind(i64::from(task.priority.min(9)))
    .bind(now)
    .bind(now + delay)
    .bind((delay > 0).then_some(now + delay))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    // The same id again (a client retrying after a timeout) never resets a task.
    Ok(Enqueued {
        created: inserted.rows_affected() == 1,
        id: task.id,
    })
}

async fn history(
    tx: &mut Tx,
    id: &str,
    at: Millis,
    event: &str,
    attempt: i64,
    worker: Option<&str>,
    detail: Option<&str>,
) -> Result<(), BrokerError> {
    sqlx::query("INSERT INTO tb_history (task_id, at, event, attempt, worker, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id)
        .bind(at)
        .bind(event)
        .bind(attempt)
        .bind(worker)
        .bind(detail)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Ends a task as REVOKED, from any state, with its history event.
async fn mark_revoked(
    tx: &mut Tx,
    id: &str,
    now: Millis,
    expires_at: Millis,
    attempt: i64,
    worker: Option<&str>,
    detail: &str,
) -> Result<(), BrokerError> {
    sqlx::query(
        "UPDATE tb_tasks SET state = 'REVOKED', finished_at = $2, expires_at = $3, eta = NULL,
            lease_token = NULL, lease_expires = NULL, revoke = 0 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    history(tx, id, now, "revoked", attempt, worker, Some(detail)).await
}

async fn dead_letter(
    tx: &mut Tx,
    id: &str,
    now: Millis,
    attempt: i64,
    worker: Option<&str>,
    reason: &str,
) -> Result<(), BrokerError> {
    sqlx::query(
        "UPDATE tb_tasks SET state = 'FAILURE', error = $2, finished_at = $3, dead = 1,
            lease_token = NULL, lease_expires = NULL, expires_at = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    history(tx, id, now, "dead_lettered", attempt, worker, Some(reason)).await
}

#[async_trait::async_trait]
impl Broker for SqliteBroker {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, BrokerError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(insert_task(&mut tx, task, now, self.config.idempotency_ttl).await?);
        }
        tx.commit().await.map_err(db_error)?;
        self.work.notify_waiters();
        Ok(out)
    }

    async fn fire(
        &self,
        schedule: &str,
        tick: Millis,
        task: NewTask,
    ) -> Result<Option<Enqueued>, BrokerError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT tick FROM tb_beat WHERE schedule = $1")
            .bind(schedule)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
        if last.is_some_and(|last| last >= tick) {
            return Ok(None);
        }
        let enqueued = insert_task(&mut tx, task, now, self.config.idempotency_ttl).await?;
        sqlx::query("INSERT OR REPLACE INTO tb_beat (schedule, tick, task_id) VALUES ($1, $2, $3)")
            .bind(schedule)
            .bind(tick)
            .bind(&enqueued.id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        self.work.notify_waiters();
        Ok(Some(enqueued))
    }

    async fn last_fired(
        &self,
        schedules: &[String],
    ) -> Result<Vec<Option<(Millis, String)>>, BrokerError> {
        let mut out = Vec::with_capacity(schedules.len());
        for schedule in schedules {
            let row: Option<(i64, String)> =
                sqlx::query_as("SELECT tick, task_id FROM tb_beat WHERE schedule = $1")
                    .bind(schedule)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_error)?;
            out.push(row);
        }
        Ok(out)
    }

    async fn cycle(
        &self,
        worker: &str,
        queues: &[String],
        completions: &[Completion],
        want: usize,
    ) -> Result<Cycle, BrokerError> {
        let now = now_ms();
        let ttl = ms(self.config.result_ttl);
        let mut tx = self.begin().await?;
        let mut applied = Vec::with_capacity(completions.len());
        for completion in completions {
            let lease = &completion.lease;
            let current: Option<(Option<String>, i64, i64, i64)> = sqlx::query_as(
                "SELECT lease_token, attempts, lost, revoke FROM tb_tasks WHERE id = $1",
            )
            .bind(&lease.task_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            let Some((Some(token), attempt, lost, revoke)) = current else {
                applied.push(false);
                continue;
            };
            if token != lease.token {
                applied.push(false);
                continue;
            }
            let id = lease.task_id.as_str();
            let w = Some(completion.worker.as_str());
            // A revoke asked for while it ran wins over running it again (a returned
            // task that was revoked is handled with the returns).
            let outcome = match &completion.outcome {
                Outcome::Retry { .. } | Outcome::Release { .. } if revoke == 1 => &Outcome::Revoked,
                other => other,
            };
            let finish = |state: &'static str| {
                sqlx::query(
                    "UPDATE tb_tasks SET state = $2, result = $3, error = $4, finished_at = $5, expires_at = $6,
                        lease_token = NULL, lease_expires = NULL, revoke = 0 WHERE id = $1",
                )
                .bind(id)
                .bind(state)
            };
            match outcome {
                Outcome::Success { result } => {
                    finish("SUCCESS")
                        .bind(result)
                        .bind(None::<String>)
                        .bind(now)
                        .bind(now + ttl)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    history(&mut tx, id, now, "succeeded", attempt, w, None).await?;
                }
                Outcome::Failure { error } => {
                    finish("FAILURE")
                        .bind(None::<String>)
                        .bind(error)
                        .bind(now)
                        .bind(now + ttl)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                    history(&mut tx, id, now, "failed", attempt, w, Some(error)).await?;
                }
                Outcome::Revoked => {
                    mark_revoked(
                        &mut tx,
                        id,
                        now,
                        now + ttl,
                        attempt,
                        w,
                        "stopped while running",
                    )
                    .await?;
                }
                Outcome::Retry { error, delay } => {
                    let due = now + ms(*delay);
                    sqlx::query(
                        "UPDATE tb_tasks SET state = 'RETRY', error = $2, retries = retries + 1, due_at = $3, eta = $3,
                            lease_token = NULL, lease_expires = NULL, revoke = 0 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(error)
                    .bind(due)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    history(&mut tx, id, now, "retry", attempt, w, Some(error)).await?;
                }
                Outcome::Return { reason } => {
                    // Claimed ahead and never started: not an attempt. Its due time is
                    // unchanged, so it keeps its place at the front of its queue.
                    sqlx::query(
                        "UPDATE tb_tasks SET state = 'PENDING', attempts = attempts - 1, worker = NULL,
                            started_at = NULL, lease_token = NULL, lease_expires = NULL WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    // It never started: its claim leaves no 'started' event (as on Redis).
                    sqlx::query(
                        "DELETE FROM tb_history WHERE task_id = $1 AND event = 'started' AND attempt = $2",
                    )
                    .bind(id)
                    .bind(attempt)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    if revoke == 1 {
                        // Revoked while it waited in the worker that claimed it ahead.
                        mark_revoked(
                            &mut tx,
                            id,
                            now,
                            now + ttl,
                            attempt - 1,
                            w,
                            "revoked before it started",
                        )
                        .await?;
                    } else {
                        history(&mut tx, id, now, "returned", attempt - 1, w, Some(reason)).await?;
                    }
                }
                Outcome::Release {
                    reason,
                    max_lost,
                    delay,
                } => {
                    let lost = lost + 1;
                    if lost >= i64::from(*max_lost) {
                        let why =
                            format!("delivered {lost} times without running; last time: {reason}");
                        sqlx::query("UPDATE tb_tasks SET lost = $2 WHERE id = $1")
                            .bind(id)
                            .bind(lost)
                            .execute(&mut *tx)
                            .await
                            .map_err(db_error)?;
                        dead_letter(&mut tx, id, now, attempt, w, &why).await?;
                    } else {
                        // The delay keeps the task from coming straight back to the
                        // worker that could not run it.
                        sqlx::query(
                            "UPDATE tb_tasks SET state = 'PENDING', lost = $2, due_at = $3, eta = $3,
                                lease_token = NULL, lease_expires = NULL WHERE id = $1",
                        )
                        .bind(id)
                        .bind(lost)
                        .bind(now + ms(*delay))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error)?;
                        history(&mut tx, id, now, "released", attempt, w, Some(reason)).await?;
                    }
                }
            }
            applied.push(true);
        }

        let mut deliveries = Vec::new();
        for queue in queues {
            if deliveries.len() >= want {
                break;
            }
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM tb_tasks WHERE queue = $1 AND state IN ('PENDING', 'RETRY') AND due_at <= $2
                 ORDER BY priority DESC, due_at, id LIMIT $3",
            )
            .bind(queue)
            .bind(now)
            .bind((want - deliveries.len()) as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            for id in ids {
                let token = uuid::Uuid::now_v7().to_string();
                let row: SqliteRow = sqlx::query(
                    "UPDATE tb_tasks SET state = 'STARTED', attempts = attempts + 1, lease_token = $2,
                        lease_expires = $3, worker = $4, started_at = $5, eta = NULL
                     WHERE id = $1
                     RETURNING name, args, attempts, retries, lost, enqueued_at",
                )
                .bind(&id)
                .bind(&token)
                .bind(now + ms(self.config.lease))
                .bind(worker)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
                let attempt: i64 = row.get("attempts");
                history(&mut tx, &id, now, "started", attempt, Some(worker), None).await?;
                deliveries.push(Delivery {
                    lease: Lease {
                        task_id: id,
                        token,
                        slot: String::new(),
                    },
                    name: row.get("name"),
                    queue: queue.clone(),
                    args: row.get("args"),
                    attempt: attempt as u32,
                    retries: row.get::<i64, _>("retries") as u32,
                    lost: row.get::<i64, _>("lost") as u32,
                    enqueued_at: row.get("enqueued_at"),
                });
            }
        }

        let mut next_due: Option<Millis> = None;
        for queue in queues {
            let due: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(due_at) FROM tb_tasks WHERE queue = $1 AND state IN ('PENDING', 'RETRY') AND due_at > $2",
            )
            .bind(queue)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            next_due = match (next_due, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        tx.commit().await.map_err(db_error)?;
        Ok(Cycle {
            applied,
            deliveries,
            next_due_in: next_due.map(|due| Duration::from_millis((due - now).max(0) as u64)),
        })
    }

    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> Result<(), BrokerError> {
        let queues = serde_json::to_string(queues).expect("queue names serialize");
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watch = self.watch.lock().await;
        // Baseline first, then a look for work already there: an enqueue committed
        // before the baseline is found by the look, one after it changes the version.
        let start = data_version(&mut watch).await?;
        let ready: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM tb_tasks WHERE state IN ('PENDING', 'RETRY') AND due_at <= $1
                AND queue IN (SELECT value FROM json_each($2)) LIMIT 1",
        )
        .bind(now_ms())
        .bind(&queues)
        .fetch_optional(&mut *watch)
        .await
        .map_err(db_error)?;
        if ready.is_some() {
            return Ok(());
        }
        loop {
            let notified = tokio::time::timeout(POLL, self.work.notified()).await;
            if notified.is_ok() || tokio::time::Instant::now() >= deadline {
                return Ok(());
            }
            if data_version(&mut watch).await? != start {
                return Ok(());
            }
        }
    }

    async fn extend(
        &self,
        _worker: &str,
        leases: &[LeaseUpdate],
    ) -> Result<Vec<LeaseStatus>, BrokerError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(leases.len());
        for update in leases {
            let progress = update
                .progress
                .as_ref()
                .map(|p| serde_json::to_string(p).expect("progress serializes"));
            let revoke: Option<i64> = sqlx::query_scalar(
                "UPDATE tb_tasks SET lease_expires = $3, progress = COALESCE($4, progress)
                 WHERE id = $1 AND lease_token = $2 RETURNING revoke",
            )
            .bind(&update.lease.task_id)
            .bind(&update.lease.token)
            .bind(now + ms(self.config.lease))
            .bind(progress)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            out.push(match revoke {
                None => LeaseStatus::Lost,
                Some(1) => LeaseStatus::RevokeRequested,
                Some(_) => LeaseStatus::Held,
            });
        }
        tx.commit().await.map_err(db_error)?;
        Ok(out)
    }

    async fn reclaim(&self, lease: Duration, max_lost: u32) -> Result<ReclaimReport, BrokerError> {
        // The lease length is written into each delivery when it is claimed or renewed;
        // `lease` only matters to the Redis broker, which measures idle time instead.
        let _ = lease;
        let now = now_ms();
        let mut tx = self.begin().await?;
        let expired: Vec<(String, Option<String>, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, worker, attempts, lost, revoke FROM tb_tasks WHERE state = 'STARTED' AND lease_expires < $1",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut report = ReclaimReport::default();
        for (id, worker, attempt, lost, revoke) in expired {
            let lost = lost + 1;
            let who = worker.as_deref().unwrap_or("?");
            let why = format!("lease expired: worker {who} gave no sign of life");
            history(
                &mut tx,
                &id,
                now,
                "lease_expired",
                attempt,
                worker.as_deref(),
                Some(&why),
            )
            .await?;
            sqlx::query("UPDATE tb_tasks SET lost = $2, lease_token = NULL, lease_expires = NULL WHERE id = $1")
                .bind(&id)
                .bind(lost)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            if revoke == 1 {
                // Revoked while it ran: the lost run is not run again.
                let expires = now + ms(self.config.result_ttl);
                let why = "revoked while its worker was lost";
                mark_revoked(&mut tx, &id, now, expires, attempt, worker.as_deref(), why).await?;
            } else if lost >= i64::from(max_lost) {
                let reason = format!("lost its worker {lost} times; last: {why}");
                dead_letter(&mut tx, &id, now, attempt, worker.as_deref(), &reason).await?;
                report.dead_lettered.push(id);
            } else {
                sqlx::query("UPDATE tb_tasks SET state = 'PENDING', due_at = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                report.requeued.push(id);
            }
        }
        // Result expiry: the Redis broker lets keys expire; here it is a sweep.
        sqlx::query("DELETE FROM tb_history WHERE task_id IN (SELECT id FROM tb_tasks WHERE expires_at < $1)")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM tb_tasks WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM tb_idempotency WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        if !report.requeued.is_empty() {
            self.work.notify_waiters();
        }
        Ok(report)
    }

    async fn revoke(&self, id: &str) -> Result<RevokeOutcome, BrokerError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let current: Option<(String, i64)> =
            sqlx::query_as("SELECT state, attempts FROM tb_tasks WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)")
                .bind(id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        let Some((state, attempt)) = current else {
            return Ok(RevokeOutcome::NotFound);
        };
        let state = TaskState::parse(&state)
            .ok_or_else(|| BrokerError::Corrupt(format!("task {id} has state {state:?}")))?;
        let outcome = match state {
            TaskState::Pending | TaskState::Retry => {
                let expires = now + ms(self.config.result_ttl);
                mark_revoked(
                    &mut tx,
                    id,
                    now,
                    expires,
                    attempt,
                    None,
                    "revoked before it started",
                )
                .await?;
                RevokeOutcome::Revoked
            }
            TaskState::Started => {
                sqlx::query("UPDATE tb_tasks SET revoke = 1 WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                RevokeOutcome::Requested
            }
            finished => RevokeOutcome::AlreadyFinished(finished),
        };
        tx.commit().await.map_err(db_error)?;
        Ok(outcome)
    }

    async fn get(&self, id: &str) -> Result<Option<TaskRecord>, BrokerError> {
        let now = now_ms();
        let row: Option<SqliteRow> = sqlx::query(
            "SELECT * FROM tb_tasks WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let history: Vec<(i64, String, i64, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT at, event, attempt, worker, detail FROM tb_history WHERE task_id = $1 ORDER BY rowid",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        record_from_row(&row, history).map(Some)
    }

    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, BrokerError> {
        let limit = filter.limit.clamp(1, 500);
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tb_tasks
             WHERE (expires_at IS NULL OR expires_at > $1)
               AND ($2 IS NULL OR name = $2)
               AND ($3 IS NULL OR state = $3)
               AND ($4 IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5",
        )
        .bind(now_ms())
        .bind(filter.name.as_deref())
        .bind(filter.state.map(TaskState::as_str))
        .bind(filter.cursor.as_deref())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let next_cursor = (ids.len() == limit).then(|| ids[limit - 1].clone());
        let mut tasks = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.get(&id).await? {
                tasks.push(record);
            }
        }
        Ok(TaskPage { tasks, next_cursor })
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>, BrokerError> {
        let now = now_ms();
        let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT queue,
                SUM(state IN ('PENDING', 'RETRY') AND due_at <= $1),
                SUM(state IN ('PENDING', 'RETRY') AND due_at > $1),
                SUM(state = 'STARTED'),
                SUM(dead = 1)
             FROM tb_tasks GROUP BY queue ORDER BY queue",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(queue, depth, delayed, in_flight, dead)| QueueStats {
                queue,
                depth: depth as u64,
                delayed: delayed as u64,
                in_flight: in_flight as u64,
                dead_lettered: dead as u64,
            })
            .collect())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<TaskRecord>, BrokerError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tb_tasks WHERE dead = 1 ORDER BY finished_at DESC LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.get(&id).await? {
                out.push(record);
            }
        }
        Ok(out)
    }

    async fn heartbeat(&self, worker: &WorkerInfo, ttl: Duration) -> Result<(), BrokerError> {
        sqlx::query(
            "INSERT OR REPLACE INTO tb_workers (name, info, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(&worker.name)
        .bind(serde_json::to_string(worker).expect("worker info serializes"))
        .bind(now_ms() + ms(ttl))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, BrokerError> {
        let now = now_ms();
        sqlx::query("DELETE FROM tb_workers WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        let infos: Vec<String> = sqlx::query_scalar("SELECT info FROM tb_workers ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(infos
            .iter()
            .filter_map(|i| serde_json::from_str(i).ok())
            .collect())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

type HistoryRow = (i64, String, i64, Option<String>, Option<String>);

fn record_from_row(row: &SqliteRow, history: Vec<HistoryRow>) -> Result<TaskRecord, BrokerError> {
    let id: String = row.get("id");
    let state: String = row.get("state");
    let state = TaskState::parse(&state)
        .ok_or_else(|| BrokerError::Corrupt(format!("task {id} has state {state:?}")))?;
    let progress: Option<String> = row.get("progress");
    Ok(TaskRecord {
        name: row.get("name"),
        queue: row.get("queue"),
        args: row.get("args"),
        state,
        priority: row.get::<i64, _>("priority") as u8,
        attempts: row.get::<i64, _>("attempts") as u32,
        retries: row.get::<i64, _>("retries") as u32,
        lost: row.get::<i64, _>("lost") as u32,
        enqueued_at: row.get("enqueued_at"),
        eta: row.get("eta"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        worker: row.get("worker"),
        result: row.get("result"),
        error: row.get("error"),
        progress: progress.and_then(|p| serde_json::from_str::<Progress>(&p).ok()),
        revoke_requested: row.get::<i64, _>("revoke") == 1,
        dead_lettered: row.get::<i64, _>("dead") == 1,
        history: history
            .into_iter()
            .map(|(at, event, attempt, worker, detail)| HistoryEvent {
                at,
                event,
                attempt: attempt as u32,
                worker,
                detail,
            })
            .collect(),
        id,
    })
}
