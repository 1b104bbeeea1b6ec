//! The Redis broker: one stream per queue and priority band, read through a consumer
//! group; task records in hashes; delayed work in sorted sets. Each worker step is one
//! Lua script, so a task costs three round trips in all: enqueue, the cycle that claims
//! it, and the cycle that completes it (shared with the next claim and other tasks).
//!
//! Needs Redis 7.0 or later (XAUTOCLAIM's reply shape, checked at connect). Redis must
//! not evict keys (`maxmemory-policy noeviction`): an evicting Redis loses tasks
//! silently, so `connect` warns loudly when it is not so.

mod keys;

use std::{sync::LazyLock, time::Duration};

use redis::{aio::ConnectionManager, AsyncCommands, Script, Value};

use self::keys::{Keys, BANDS, GROUP};
use super::{
    now_ms, Broker, BrokerConfig, BrokerError, Completion, Cycle, Delivery, Enqueued, HistoryEvent,
    Lease, LeaseStatus, LeaseUpdate, ListFilter, Millis, NewTask, Outcome, Progress, QueueStats,
    ReclaimReport, RevokeOutcome, TaskPage, TaskRecord, TaskState, WorkerInfo,
};

/// The oldest Redis this broker works with.
pub const MIN_REDIS_VERSION: (u32, u32) = (7, 0);

fn script(body: &str) -> Script {
    Script::new(&format!(
        "{}{}{}",
        keys::lua_prelude(),
        include_str!("common.lua"),
        body
    ))
}

static FIRE: LazyLock<Script> = LazyLock::new(|| script(include_str!("fire.lua")));
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| script(include_str!("enqueue.lua")));
static CYCLE: LazyLock<Script> = LazyLock::new(|| script(include_str!("cycle.lua")));
static EXTEND: LazyLock<Script> = LazyLock::new(|| script(include_str!("extend.lua")));
static RECLAIM: LazyLock<Script> = LazyLock::new(|| script(include_str!("reclaim.lua")));
static REVOKE: LazyLock<Script> = LazyLock::new(|| script(include_str!("revoke.lua")));

pub struct RedisBroker {
    keys: Keys,
    config: BrokerConfig,
    /// Every command but the blocking wait; reconnects after a Redis restart.
    conn: ConnectionManager,
    /// Only for the blocking wait: a blocked command would stall every request
    /// pipelined behind it on a shared socket.
    blocking: ConnectionManager,
}

impl RedisBroker {
    pub async fn connect(
        url: &str,
        prefix: &str,
        config: BrokerConfig,
    ) -> Result<Self, BrokerError> {
        let client = redis::Client::open(url)
            .map_err(|e| BrokerError::Config(format!("bad Redis URL {url:?}: {e}")))?;
        let manager = |response_timeout: Duration| {
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(response_timeout))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_millis(500))
        };
        let connect_error = |e: redis::RedisError| {
            BrokerError::Unavailable(format!("cannot connect to Redis at {url}: {e}"))
        };
        let conn = client
            .get_connection_manager_with_config(manager(Duration::from_secs(5)))
            .await
            .map_err(connect_error)?;
        // The wait blocks up to `MAX_WAIT`; the response timeout must be longer.
        let blocking = client
            .get_connection_manager_with_config(manager(MAX_WAIT + Duration::from_secs(3)))
            .await
            .map_err(connect_error)?;
        let broker = Self {
            keys: Keys::new(prefix),
            config,
            conn,
            blocking,
        };
        broker.check_server(url).await?;
        Ok(broker)
    }

    async fn check_server(&self, url: &str) -> Result<(), BrokerError> {
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(str::trim)
            .unwrap_or("0");
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if found < MIN_REDIS_VERSION {
            return Err(BrokerError::Config(format!(
                "Redis at {url} is version {version}; toolbox needs {}.{} or later",
                MIN_REDIS_VERSION.0, MIN_REDIS_VERSION.1
            )));
        }
        // CONFIG may be renamed or forbidden on managed Redis: then we cannot tell.
        let policy: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await;
        match policy.ok().and_then(|p| p.get(1).cloned()) {
            Some(policy) if policy != "noeviction" => tracing::warn!(
                redis = url,
                policy = %policy,
                "Redis maxmemory-policy is not noeviction: under memory pressure Redis will evict keys and \
                 tasks will be LOST silently; set `maxmemory-policy noeviction`"
            ),
            Some(_) => {}
            None => tracing::warn!(
                redis = url,
                "cannot read Redis maxmemory-policy; make sure it is noeviction"
            ),
        }
        Ok(())
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

/// The longest single blocking wait; the worker loops.
const MAX_WAIT: Duration = Duration::from_secs(1);

fn unavailable(error: redis::RedisError) -> BrokerError {
    if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.is_connection_refusal()
    {
        BrokerError::Unavailable(format!("Redis: {error}"))
    } else {
        BrokerError::Corrupt(format!("Redis: {error}"))
    }
}

fn millis(d: Duration) -> u64 {
    d.min(super::MAX_DELAY).as_millis() as u64
}

#[async_trait::async_trait]
impl Broker for RedisBroker {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn enqueue(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>, BrokerError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = ENQUEUE.prepare_invoke();
        call.arg(self.keys.root())
            .arg(millis(self.config.idempotency_ttl));
        for task in &tasks {
            call.arg(&task.id)
                .arg(&task.name)
                .arg(&task.queue)
                .arg(&task.args)
                .arg(task.priority.min(9))
                .arg(task.delay.map_or(0, millis))
                .arg(task.idempotency_key.as_deref().unwrap_or(""));
        }
        let reply: Vec<Value> = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        reply
            .chunks(2)
            .map(|pair| {
                Ok(Enqueued {
                    id: string(&pair[0])?,
                    created: int(&pair[1])? == 1,
                })
            })
            .collect()
    }

    async fn fire(
        &self,
        schedule: &str,
        tick: Millis,
        task: NewTask,
    ) -> Result<Option<Enqueued>, BrokerError> {
        let id: Option<String> = FIRE
            .prepare_invoke()
            .arg(self.keys.root())
            .arg(millis(self.config.idempotency_ttl))
            .arg(schedule)
            .arg(tick)
            .arg(&task.id)
            .arg(&task.name)
            .arg(&task.queue)
            .arg(&task.args)
            .arg(task.priority.min(9))
            .arg(task.delay.map_or(0, millis))
            .arg(task.idempotency_key.as_deref().unwrap_or(""))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(id.map(|id| Enqueued {
            created: id == task.id,
            id,
        }))
    }

    async fn last_fired(
        &self,
        schedules: &[String],
    ) -> Result<Vec<Option<(Millis, String)>>, BrokerError> {
        if schedules.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.beat())
            .arg(schedules)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(values
            .into_iter()
            .map(|v| {
                let (tick, id) = v?
                    .split_once(':')
                    .map(|(t, i)| (t.to_owned(), i.to_owned()))?;
                Some((tick.parse().ok()?, id))
            })
            .collect())
    }

    async fn cycle(
        &self,
        worker: &str,
        queues: &[String],
        completions: &[Completion],
        want: usize,
    ) -> Result<Cycle, BrokerError> {
        let mut call = CYCLE.prepare_invoke();
        call.arg(self.keys.root())
            .arg(worker)
            .arg(want)
            .arg(millis(self.config.result_ttl))
            .arg(completions.len());
        for completion in completions {
            let (kind, payload, extra): (&str, &str, String) = match &completion.outcome {
                Outcome::Success { result } => ("success", result, String::new()),
                Outcome::Failure { error } => ("failure", error, String::new()),
                Outcome::Retry { error, delay } => ("retry", error, millis(*delay).to_string()),
                Outcome::Revoked => ("revoked", "", String::new()),
                Outcome::Release {
                    reason,
                    max_lost,
                    delay,
                } => ("release", reason, format!("{max_lost}:{}", millis(*delay))),
                Outcome::Return { reason } => ("return", reason, String::new()),
            };
            let lease = &completion.lease;
            call.arg(&lease.task_id)
                .arg(&lease.token)
                .arg(&lease.slot)
                .arg(kind)
                .arg(payload)
                .arg(extra);
        }
        for queue in queues {
            call.arg(queue);
        }
        let reply: Vec<Value> = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        let [applied, delivered, next_due] = reply.as_slice() else {
            return Err(BrokerError::Corrupt(format!(
                "cycle script answered {reply:?}"
            )));
        };
        let applied = array(applied)?
            .iter()
            .map(|v| int(v).map(|i| i == 1))
            .collect::<Result<_, _>>()?;
        let deliveries = array(delivered)?
            .iter()
            .filter_map(|entry| {
                let delivery = decode_delivery(entry);
                if let Err(error) = &delivery {
                    // Its lease expires and another attempt gets it: better than failing
                    // every other delivery of the batch.
                    tracing::error!(%error, "undecodable delivery left to expire");
                }
                delivery.ok()
            })
            .collect();
        Ok(Cycle {
            applied,
            deliveries,
            next_due_in: opt_int(next_due)?.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        })
    }

    async fn wait_for_work(&self, queues: &[String], timeout: Duration) -> Result<(), BrokerError> {
        let timeout = timeout.min(MAX_WAIT).max(Duration::from_millis(1));
        let keys: Vec<String> = queues.iter().map(|q| self.keys.signal(q)).collect();
        let mut conn = self.blocking.clone();
        let _: Option<(String, String)> = redis::cmd("BLPOP")
            .arg(&keys)
            .arg(timeout.as_secs_f64())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn extend(
        &self,
        worker: &str,
        leases: &[LeaseUpdate],
    ) -> Result<Vec<LeaseStatus>, BrokerError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = EXTEND.prepare_invoke();
        call.arg(self.keys.root()).arg(worker);
        for update in leases {
            let progress = match &update.progress {
                Some(p) => serde_json::to_string(p).expect("progress serializes"),
                None => String::new(),
            };
            call.arg(&update.lease.task_id)
                .arg(&update.lease.token)
                .arg(&update.lease.slot)
                .arg(progress);
        }
        let reply: Vec<i64> = call
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(reply
            .into_iter()
            .map(|code| match code {
                1 => LeaseStatus::Held,
                2 => LeaseStatus::RevokeRequested,
                _ => LeaseStatus::Lost,
            })
            .collect())
    }

    async fn reclaim(&self, lease: Duration, max_lost: u32) -> Result<ReclaimReport, BrokerError> {
        let (requeued, dead_lettered): (Vec<String>, Vec<String>) = RECLAIM
            .prepare_invoke()
            .arg(self.keys.root())
            .arg(millis(lease))
            .arg(max_lost)
            .arg(millis(self.config.result_ttl))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(ReclaimReport {
            requeued,
            dead_lettered,
        })
    }

    async fn revoke(&self, id: &str) -> Result<RevokeOutcome, BrokerError> {
        let (code, state): (i64, String) = REVOKE
            .prepare_invoke()
            .arg(self.keys.root())
            .arg(id)
            .arg(millis(self.config.result_ttl))
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(match code {
            1 => RevokeOutcome::Revoked,
            2 => RevokeOutcome::Requested,
            3 => {
                RevokeOutcome::AlreadyFinished(TaskState::parse(&state).ok_or_else(|| {
                    BrokerError::Corrupt(format!("task {id} has state {state:?}"))
                })?)
            }
            _ => RevokeOutcome::NotFound,
        })
    }

    async fn get(&self, id: &str) -> Result<Option<TaskRecord>, BrokerError> {
        let mut conn = self.conn();
        let fields: Vec<(String, String)> = conn
            .hgetall(self.keys.task(id))
            .await
            .map_err(unavailable)?;
        // Most tasks have no history list ('hist' is '0', see common.lua). The others
        // are read again with their list in one MULTI, so that hash and list agree.
        let no_list = fields.iter().any(|(k, v)| k == "hist" && v == "0");
        let (fields, history): (Vec<(String, String)>, Vec<String>) = if no_list {
            (fields, Vec::new())
        } else if fields.is_empty() {
            return Ok(None);
        } else {
            redis::pipe()
                .atomic()
                .hgetall(self.keys.task(id))
                .lrange(self.keys.history(id), 0, -1)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?
        };
        if fields.is_empty() {
            return Ok(None);
        }
        record_from_hash(id, fields, &history).map(Some)
    }

    async fn list(&self, filter: &ListFilter) -> Result<TaskPage, BrokerError> {
        let mut conn = self.conn();
        let limit = filter.limit.clamp(1, 500);
        let mut page = TaskPage::default();
        let mut upper = match &filter.cursor {
            Some(cursor) => format!("({cursor}"),
            None => "+".to_owned(),
        };
        // Filters are applied to the records read: look at a bounded number of them.
        for _ in 0..20 {
            let ids: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
                .arg(self.keys.recent())
                .arg(&upper)
                .arg("-")
                .arg("LIMIT")
                .arg(0)
                .arg(limit * 2)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let Some(last) = ids.last() else {
                return Ok(page);
            };
            upper = format!("({last}");
            let exhausted = ids.len() < limit * 2;
            let mut expired = Vec::new();
            for id in ids {
                match self.get(&id).await? {
                    None => expired.push(id),
                    Some(record) => {
                        let name_ok = filter.name.as_ref().is_none_or(|n| *n == record.name);
                        let state_ok = filter.state.is_none_or(|s| s == record.state);
                        if name_ok && state_ok {
                            page.tasks.push(record);
                            if page.tasks.len() == limit {
                                page.next_cursor = Some(id);
                                break;
                            }
                        }
                    }
                }
            }
            if !expired.is_empty() {
                let _: () = conn
                    .zrem(self.keys.recent(), expired)
                    .await
                    .map_err(unavailable)?;
            }
            if page.tasks.len() == limit || exhausted {
                return Ok(page);
            }
        }
        page.next_cursor = upper.strip_prefix('(').map(str::to_owned);
        Ok(page)
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>, BrokerError> {
        let mut conn = self.conn();
        let mut queues: Vec<String> = conn
            .smembers(self.keys.queues())
            .await
            .map_err(unavailable)?;
        queues.sort();
        if queues.is_empty() {
            // An empty pipeline is an error to the client, not an empty answer.
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for queue in &queues {
            for band in BANDS {
                let stream = self.keys.stream(queue, band);
                pipe.xlen(&stream);
                pipe.cmd("XPENDING").arg(&stream).arg(GROUP);
            }
            pipe.zcard(self.keys.delayed(queue));
            pipe.zcard(self.keys.dead(queue));
        }
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let per_queue = BANDS.len() * 2 + 2;
        Ok(queues
            .into_iter()
            .zip(replies.chunks(per_queue))
            .map(|(queue, r)| {
                let mut length = 0u64;
                let mut pending = 0u64;
                for band in 0..BANDS.len() {
                    length += int(&r[band * 2]).unwrap_or(0) as u64;
                    // XPENDING's summary starts with the count; NOGROUP is an error value.
                    pending += array(&r[band * 2 + 1])
                        .ok()
                        .and_then(|s| s.first().and_then(|c| int(c).ok()))
                        .unwrap_or(0) as u64;
                }
                QueueStats {
                    queue,
                    depth: length.saturating_sub(pending),
                    in_flight: pending,
                    delayed: int(&r[per_queue - 2]).unwrap_or(0) as u64,
                    dead_lettered: int(&r[per_queue - 1]).unwrap_or(0) as u64,
                }
            })
            .collect())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<TaskRecord>, BrokerError> {
        let mut conn = self.conn();
        let queues: Vec<String> = conn
            .smembers(self.keys.queues())
            .await
            .map_err(unavailable)?;
        let mut newest: Vec<(String, f64)> = Vec::new();
        for queue in queues {
            let mut ids: Vec<(String, f64)> = conn
                .zrevrange_withscores(self.keys.dead(&queue), 0, limit as isize - 1)
                .await
                .map_err(unavailable)?;
            newest.append(&mut ids);
        }
        newest.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut records = Vec::new();
        for (id, _) in newest.into_iter().take(limit) {
            if let Some(record) = self.get(&id).await? {
                records.push(record);
            }
        }
        Ok(records)
    }

    async fn heartbeat(&self, worker: &WorkerInfo, ttl: Duration) -> Result<(), BrokerError> {
        let json = serde_json::to_string(worker).expect("worker info serializes");
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(self.keys.worker(&worker.name))
            .arg(json)
            .arg("PX")
            .arg(millis(ttl))
            .ignore()
            .zadd(self.keys.workers(), &worker.name, now_ms())
            .ignore()
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, BrokerError> {
        let mut conn = self.conn();
        let names: Vec<String> = conn
            .zrange(self.keys.workers(), 0, -1)
            .await
            .map_err(unavailable)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|n| self.keys.worker(n)).collect();
        let infos: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut alive = Vec::new();
        let mut gone = Vec::new();
        for (name, info) in names.into_iter().zip(infos) {
            match info.and_then(|json| serde_json::from_str::<WorkerInfo>(&json).ok()) {
                Some(info) => alive.push(info),
                None => gone.push(name),
            }
        }
        if !gone.is_empty() {
            let _: () = conn
                .zrem(self.keys.workers(), gone)
                .await
                .map_err(unavailable)?;
        }
        Ok(alive)
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

fn decode_delivery(entry: &Value) -> Result<Delivery, BrokerError> {
    let f = array(entry)?;
    if f.len() != 10 {
        return Err(BrokerError::Corrupt(format!("delivery {f:?}")));
    }
    Ok(Delivery {
        lease: Lease {
            token: string(&f[0])?,
            slot: string(&f[1])?,
            task_id: string(&f[2])?,
        },
        name: string(&f[3])?,
        queue: string(&f[4])?,
        args: string(&f[5])?,
        attempt: int(&f[6])? as u32,
        retries: opt_int(&f[7])?.unwrap_or(0) as u32,
        lost: opt_int(&f[8])?.unwrap_or(0) as u32,
        enqueued_at: opt_int(&f[9])?.unwrap_or(0),
    })
}

fn record_from_hash(
    id: &str,
    fields: Vec<(String, String)>,
    history: &[String],
) -> Result<TaskRecord, BrokerError> {
    let map: std::collections::HashMap<String, String> = fields.into_iter().collect();
    let text = |k: &str| map.get(k).cloned();
    let number = |k: &str| map.get(k).and_then(|v| v.parse::<i64>().ok());
    let state = text("state")
        .and_then(|s| TaskState::parse(&s))
        .ok_or_else(|| BrokerError::Corrupt(format!("task {id} has no valid state")))?;
    let dead_lettered = text("dead").as_deref() == Some("1");
    let attempts = number("attempts").unwrap_or(0) as u32;
    let stored = history;
    let mut history: Vec<HistoryEvent> = Vec::with_capacity(stored.len() + 2);
    for event in stored
        .iter()
        .filter_map(|h| serde_json::from_str::<HistoryEvent>(h).ok())
    {
        // A record that an earlier build claimed has its start in the list already,
        // and this build writes it again when the attempt ends: the same event twice.
        let repeated = event.event == "started"
            && history
                .iter()
                .any(|h| h.event == "started" && h.attempt == event.attempt && h.at == event.at);
        if !repeated {
            history.push(event);
        }
    }
    // The scripts store only what the hash cannot tell (common.lua): the current
    // attempt's start and a normal ending are read back from the hash fields.
    let started_at = number("started_at");
    if let Some(at) = started_at {
        let recorded = history
            .iter()
            .any(|h| h.event == "started" && h.attempt == attempts);
        if !recorded {
            history.push(HistoryEvent {
                at,
                event: "started".to_owned(),
                attempt: attempts,
                worker: text("worker"),
                detail: None,
            });
        }
    }
    let finished_at = number("finished_at");
    let ending = match state {
        TaskState::Success => Some(("succeeded", None)),
        TaskState::Failure if !dead_lettered => Some(("failed", text("error"))),
        _ => None,
    };
    if let (Some((event, detail)), Some(at)) = (ending, finished_at) {
        history.push(HistoryEvent {
            at,
            event: event.to_owned(),
            attempt: attempts,
            worker: text("worker"),
            detail,
        });
    }
    Ok(TaskRecord {
        id: id.to_owned(),
        name: text("name").unwrap_or_default(),
        queue: text("queue").unwrap_or_default(),
        args: text("args").unwrap_or_else(|| "null".to_owned()),
        state,
        priority: number("priority").unwrap_or(5) as u8,
        attempts,
        retries: number("retries").unwrap_or(0) as u32,
        lost: number("lost").unwrap_or(0) as u32,
        enqueued_at: number("enqueued_at").unwrap_or(0),
        eta: number("eta"),
        started_at,
        finished_at,
        worker: text("worker"),
        result: text("result"),
        error: text("error"),
        progress: text("progress").and_then(|p| serde_json::from_str::<Progress>(&p).ok()),
        revoke_requested: text("revoke").as_deref() == Some("1"),
        dead_lettered,
        history,
    })
}

fn array(value: &Value) -> Result<&[Value], BrokerError> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(&[]),
        other => Err(BrokerError::Corrupt(format!(
            "expected an array from Redis, got {other:?}"
        ))),
    }
}

fn string(value: &Value) -> Result<String, BrokerError> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes.clone()).map_err(|e| BrokerError::Corrupt(e.to_string()))
        }
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(BrokerError::Corrupt(format!(
            "expected a string from Redis, got {other:?}"
        ))),
    }
}

fn int(value: &Value) -> Result<i64, BrokerError> {
    opt_int(value)?
        .ok_or_else(|| BrokerError::Corrupt("expected a number from Redis, got nil".to_owned()))
}

fn opt_int(value: &Value) -> Result<Option<Millis>, BrokerError> {
    match value {
        Value::Int(i) => Ok(Some(*i)),
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                BrokerError::Corrupt(format!("expected a number from Redis, got {bytes:?}"))
            }),
        Value::Nil | Value::Boolean(false) => Ok(None),
        other => Err(BrokerError::Corrupt(format!(
            "expected a number from Redis, got {other:?}"
        ))),
    }
}
