//! The worker: claims tasks from the broker when it has free slots, runs them on its
//! slot threads (`slots.rs`), renews their leases, reports their outcomes.
//!
//! One loop does all broker traffic. Each turn sends, in one `cycle` round trip, every
//! outcome that finished since the last turn and asks for as many tasks as there are
//! free slots. When there is nothing to claim, the loop waits for a wake-up from the
//! broker, the slot threads (runs finished), a timer or shutdown.
//!
//! Claiming ahead: a worker whose recent runs were all short (the slowest of the last
//! [`PACE_SAMPLES`] under a millisecond, say) may also claim what its slots are expected
//! to start within [`PREFETCH_BUDGET`], at most [`PREFETCH_MAX`] tasks (`--prefetch-max`;
//! 0 turns it off). Without that, a
//! two-slot worker of short tasks spends a broker round trip per task or two; with it,
//! one round trip reports and claims dozens. A slow run anywhere in the sample turns it
//! off, so a task never waits behind long runs in a worker that cannot start it: slow
//! tasks get exactly one claim per free slot, as before. Tasks waiting in the worker hold
//! leases (renewed, revocable, taken over if the worker dies) like running ones.
//!
//! Queue order: queues are asked in the order given (earlier first), except that one
//! turn in [`ROTATE_EVERY`] starts at the next queue in turn, so a first queue that is
//! never empty cannot starve the others: each queue gets at least that share of turns.

mod execute;
mod slots;

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, Notify};

use self::{
    execute::{Finished, Job, RunState},
    slots::Slots,
};
use crate::{
    database::Database,
    plugins::PluginRegistry,
    queue::{
        now_ms, Broker, Completion, Delivery, Lease, LeaseStatus, LeaseUpdate, Outcome, Progress,
        WorkerInfo,
    },
};

/// How often leases are renewed (at most; a third of the lease if that is shorter).
const TICK: Duration = Duration::from_millis(250);

/// One turn in this many starts at a rotating queue instead of the first.
pub const ROTATE_EVERY: u64 = 8;

/// How far ahead a worker of short tasks may claim: what its slots are expected to
/// start within this time.
pub const PREFETCH_BUDGET: Duration = Duration::from_millis(2);

/// The most tasks a worker holds beyond its slots, by default (`--prefetch-max`).
pub const PREFETCH_MAX: usize = 64;

/// Runs remembered to judge how long a run holds its slot; none are claimed ahead
/// before this many have finished.
pub const PACE_SAMPLES: usize = 32;

/// A deferred outcome is reported after this long at most.
const FLUSH_AFTER: Duration = Duration::from_millis(2);

/// A run this much longer than the budget, with every slot busy, means the pace was
/// misjudged: what waits here goes back to its queue for other workers.
const RETURN_AFTER: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique among live workers: `<host>-<pid>-<random>` by default.
    pub name: String,
    /// Queues to consume, earlier first.
    pub queues: Vec<String>,
    /// Tasks run at once (default: the number of cores).
    pub concurrency: usize,
    /// A run's lease; renewed every third of it while the run lives.
    pub lease: Duration,
    /// Deliveries without an outcome (lost worker, unknown task) before a task is
    /// dead-lettered (default 5).
    pub max_lost: u32,
    /// After SIGTERM: how long runs in flight may take to finish.
    pub shutdown_grace: Duration,
    /// After a task's time limit: how long it may take to notice cancellation.
    pub time_limit_grace: Duration,
    /// How often this worker looks for expired leases of any worker.
    pub reclaim_every: Duration,
    /// How often this worker says it is alive.
    pub heartbeat_every: Duration,
    /// The tasks' database: each run gets a session of this pool.
    pub database: Option<Database>,
    /// The most tasks claimed ahead of free slots, when recent runs are short enough
    /// (default [`PREFETCH_MAX`]; 0: only ever one claim per free slot).
    pub prefetch_max: usize,
}

impl WorkerConfig {
    pub fn new(queues: Vec<String>) -> Self {
        Self {
            name: default_name(),
            queues,
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            lease: Duration::from_secs(30),
            max_lost: 5,
            shutdown_grace: Duration::from_secs(30),
            time_limit_grace: Duration::from_secs(5),
            reclaim_every: Duration::from_secs(5),
            heartbeat_every: Duration::from_secs(5),
            database: None,
            prefetch_max: PREFETCH_MAX,
        }
    }
}

/// `<host>-<pid>-<4 hex>`: readable in `/workers`, unique across restarts.
pub fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// What a worker did, returned when it stops.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerReport {
    pub completed: u64,
    /// Outcomes refused because the lease had been taken over.
    pub discarded: u64,
    /// Runs still going when the shutdown grace ran out (their leases will expire).
    pub abandoned: usize,
}

/// A claimed task: waiting in this worker for a slot (claimed ahead), or running.
struct Running {
    lease: Lease,
    state: Arc<RunState>,
    sent_progress: Option<Progress>,
}

/// How long recent runs held their slots, to decide how much to claim ahead.
#[derive(Default)]
struct Pace {
    recent: VecDeque<Duration>,
}

impl Pace {
    fn record(&mut self, held: Duration) {
        if self.recent.len() == PACE_SAMPLES {
            self.recent.pop_front();
        }
        self.recent.push_back(held);
    }

    /// Tasks that may wait here beyond the slots: what `slots` start within the budget
    /// at the pace of the slowest recent run. The slowest, not the mean: one long run
    /// in the sample is enough to stop claiming ahead.
    fn allowance(&self, slots: usize, max: usize) -> usize {
        if self.recent.len() < PACE_SAMPLES || max == 0 {
            return 0;
        }
        let slowest = self.recent.iter().max().copied().unwrap_or_default();
        let per_slot = PREFETCH_BUDGET.as_nanos() / slowest.as_nanos().max(1);
        (per_slot.saturating_mul(slots as u128)).min(max as u128) as usize
    }
}

pub struct Worker {
    broker: Arc<dyn Broker>,
    registry: Arc<PluginRegistry>,
    config: WorkerConfig,
}

impl Worker {
    pub fn new(
        broker: Arc<dyn Broker>,
        registry: Arc<PluginRegistry>,
        config: WorkerConfig,
    ) -> Self {
        Self {
            broker,
            registry,
            config,
        }
    }

    /// Runs until `shutdown` completes, then stops claiming, lets runs in flight finish
    /// within the grace period, reports their outcomes and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> WorkerReport {
        let Self {
            broker,
            registry,
            config,
        } = self;
        let slots = match Slots::start(
            config.concurrency,
            config.time_limit_grace,
            config.database.clone(),
        ) {
            Ok(slots) => slots,
            Err(error) => {
                tracing::error!(worker = %config.name, %error, "cannot start the worker's slot threads");
                return WorkerReport::default();
            }
        };
        let started_at = now_ms();
        // Every task claimed and not yet reported: waiting in `slots` or running.
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut pace = Pace::default();
        let mut outbox: Vec<Completion> = Vec::new();
        let mut outbox_since: Option<Instant> = None;
        let mut report = WorkerReport::default();
        let mut turn: u64 = 0;
        let mut next_due: Option<Instant> = None;
        // Whether the queues may hold work for a free slot: true at start, after a wake-up
        // and after a cycle that filled every slot it asked for.
        let mut hungry = true;
        let mut broker_down_since: Option<Instant> = None;
        let mut retry_pause = Duration::from_millis(50);
        let tick = TICK.min(config.lease / 3);
        let mut last_tick = Instant::now() - tick;
        let mut last_reclaim = Instant::now() - config.reclaim_every;
        let mut last_heartbeat = Instant::now() - config.heartbeat_every;
        let mut stopping: Option<Instant> = None;
        // Watched from the first moment (a signal handler installs when first polled),
        // and checked on every turn, busy or not.
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let stop_watcher = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });

        // The blocking wait for work runs in a task of its own, started on demand: the
        // loop's other events must not cancel it half-way, or a wake-up token it already
        // took from the broker would be lost to every worker.
        let want_wake = Arc::new(Notify::new());
        let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
        let mut waiting_for_work = false;
        let waker = tokio::spawn({
            let broker = Arc::clone(&broker);
            let queues = config.queues.clone();
            let want_wake = Arc::clone(&want_wake);
            async move {
                loop {
                    want_wake.notified().await;
                    if let Err(error) = broker.wait_for_work(&queues, Duration::from_secs(1)).await
                    {
                        tracing::debug!(%error, "waiting for work failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    if wake_tx.send(()).await.is_err() {
                        break;
                    }
                }
            }
        });

        tracing::info!(
            worker = %config.name,
            queues = ?config.queues,
            concurrency = config.concurrency,
            broker = broker.kind(),
            "worker started"
        );

        loop {
            if stopping.is_none() && *stop_rx.borrow() {
                stopping = Some(Instant::now());
                // Claimed ahead and not started: back to their queues now, for other
                // workers, rather than run here during the shutdown grace.
                give_back_waiting(
                    &config,
                    &slots,
                    &mut running,
                    &mut outbox,
                    &format!(
                        "claimed ahead by worker {}, which is shutting down",
                        config.name
                    ),
                );
                tracing::info!(worker = %config.name, in_flight = running.len(), "shutting down: no new tasks, finishing runs in flight");
            }
            // Each tick renews every lease in one round trip, which also tells a run it
            // was revoked. It runs here, at the top of every turn, so that a worker busy
            // with short tasks still renews the lease of its long one.
            if last_tick.elapsed() >= tick {
                last_tick = Instant::now();
                renew(&*broker, &config, &slots, &mut running, &mut outbox).await;
                if last_reclaim.elapsed() >= config.reclaim_every {
                    last_reclaim = Instant::now();
                    hungry |= reclaim(&*broker, &config).await;
                }
                if last_heartbeat.elapsed() >= config.heartbeat_every {
                    last_heartbeat = Instant::now();
                    heartbeat(&*broker, &config, started_at, running.len(), slots.stuck()).await;
                }
            }
            for finished in slots.take_finished() {
                finish(finished, &config, &mut running, &mut pace, &mut outbox);
            }
            if outbox.is_empty() {
                outbox_since = None;
            } else {
                outbox_since.get_or_insert_with(Instant::now);
            }

            if let Some(since) = stopping {
                if running.is_empty() && outbox.is_empty() {
                    break;
                }
                if since.elapsed() > config.shutdown_grace {
                    report.abandoned = running.len() + outbox.len();
                    tracing::warn!(
                        worker = %config.name,
                        running = running.len(),
                        unreported = outbox.len(),
                        "shutdown grace over: what is still running or unreported is left to other workers once its lease expires"
                    );
                    break;
                }
            }

            // A run far slower than the pace promised: claim nothing ahead until it is
            // over (then it is in the sample), and hand back what waits behind it.
            let oldest_run = oldest_start(&running);
            let misjudged = oldest_run.is_some_and(|t| t.elapsed() >= RETURN_AFTER);
            let busy = running
                .values()
                .filter(|run| run.state.is_running())
                .count();
            if misjudged && busy >= config.concurrency && slots.queued() > 0 {
                give_back_waiting(
                    &config,
                    &slots,
                    &mut running,
                    &mut outbox,
                    &format!(
                        "claimed ahead by worker {}, whose slots stayed busy",
                        config.name
                    ),
                );
                outbox_since.get_or_insert_with(Instant::now);
            }
            let allowance = if misjudged {
                0
            } else {
                pace.allowance(config.concurrency, config.prefetch_max)
            };
            let want = if stopping.is_some() {
                0
            } else {
                (config.concurrency + allowance).saturating_sub(running.len())
            };
            // While enough waits here to keep the slots busy, outcomes and claims wait
            // to go out together (at most FLUSH_AFTER). Without claiming ahead nothing
            // waits here, and every turn goes out at once.
            let low_water = allowance / 4;
            slots.set_low_water(low_water);
            let queued = slots.queued();
            let backlog_low = queued <= low_water;
            let flush = !outbox.is_empty()
                && (backlog_low
                    || stopping.is_some()
                    || outbox_since.is_some_and(|t| t.elapsed() >= FLUSH_AFTER));
            if flush || (want > 0 && hungry && backlog_low) {
                let queues = queue_order(&config.queues, turn);
                turn += 1;
                let sent = std::mem::take(&mut outbox);
                outbox_since = None;
                match broker.cycle(&config.name, &queues, &sent, want).await {
                    Ok(cycle) => {
                        if let Some(since) = broker_down_since.take() {
                            tracing::info!(worker = %config.name, down_ms = since.elapsed().as_millis() as u64, "broker reachable again");
                        }
                        retry_pause = Duration::from_millis(50);
                        for (completion, applied) in sent.iter().zip(&cycle.applied) {
                            if *applied {
                                report.completed += 1;
                            } else {
                                report.discarded += 1;
                                tracing::warn!(
                                    task_id = %completion.lease.task_id,
                                    "outcome discarded: this run's lease was taken over by another attempt"
                                );
                            }
                        }
                        next_due = cycle.next_due_in.map(|d| Instant::now() + d);
                        // Every task asked for came: the queue may hold more.
                        hungry = want > 0 && cycle.deliveries.len() == want;
                        let jobs = claim(
                            &registry,
                            &config,
                            cycle.deliveries,
                            &mut running,
                            &mut outbox,
                        );
                        slots.push(jobs);
                    }
                    Err(error) => {
                        // Nothing is lost: the same outcomes go out with the next cycle.
                        outbox = sent;
                        outbox_since = Some(Instant::now());
                        if broker_down_since.is_none() {
                            broker_down_since = Some(Instant::now());
                            tracing::warn!(worker = %config.name, %error, "broker unreachable; retrying");
                        }
                        tokio::time::sleep(retry_pause).await;
                        retry_pause = (retry_pause * 2).min(Duration::from_secs(2));
                        hungry = true;
                    }
                }
                continue;
            }

            // Nothing to claim or report right now: wait for something to happen.
            if want > 0 && queued == 0 && !waiting_for_work {
                want_wake.notify_one();
                waiting_for_work = true;
            }
            let until_due = next_due.map(|due| due.saturating_duration_since(Instant::now()));
            let until_flush = outbox_since.map(|since| FLUSH_AFTER.saturating_sub(since.elapsed()));
            // Tasks wait here: look again when the oldest run reaches RETURN_AFTER (runs
            // that started since this turn are not known yet: at most that long).
            let until_misjudged = (queued > 0).then(|| {
                oldest_run
                    .map_or(RETURN_AFTER, |t| RETURN_AFTER.saturating_sub(t.elapsed()))
                    // Misjudged with a slot free: its thread is about to start a task.
                    .max(Duration::from_millis(1))
            });
            tokio::select! {
                () = slots.notified() => {}
                () = tokio::time::sleep(until_flush.unwrap_or_default()), if until_flush.is_some() => {}
                () = tokio::time::sleep(until_misjudged.unwrap_or_default()), if until_misjudged.is_some() => {}
                Some(()) = wake_rx.recv() => {
                    waiting_for_work = false;
                    hungry = true;
                }
                () = tokio::time::sleep(until_due.unwrap_or_default()), if until_due.is_some() => {
                    hungry = true;
                    next_due = None;
                }
                () = tokio::time::sleep(tick.saturating_sub(last_tick.elapsed())) => {}
                _ = stop_rx.changed(), if stopping.is_none() => {}
            }
        }
        slots.close();
        waker.abort();
        stop_watcher.abort();
        tracing::info!(worker = %config.name, completed = report.completed, "worker stopped");
        report
    }
}

/// The queues in the order this turn asks them: as given, except every
/// [`ROTATE_EVERY`]th turn, which starts at the next queue in turn.
fn queue_order(queues: &[String], turn: u64) -> Vec<String> {
    let mut order = queues.to_vec();
    if queues.len() > 1 && turn % ROTATE_EVERY == ROTATE_EVERY - 1 {
        let shift = ((turn / ROTATE_EVERY) as usize % (queues.len() - 1)) + 1;
        order.rotate_left(shift);
    }
    order
}

/// A finished run: its outcome goes out with the next cycle, its slot is free.
fn finish(
    finished: Finished,
    config: &WorkerConfig,
    running: &mut HashMap<String, Running>,
    pace: &mut Pace,
    outbox: &mut Vec<Completion>,
) {
    let id = &finished.lease.task_id;
    // The same task may have come back to this worker after its lease was lost while
    // its earlier run went on: that earlier run's outcome is not this lease's.
    if running
        .get(id)
        .is_none_or(|run| run.lease != finished.lease)
    {
        tracing::warn!(task_id = %id, "outcome dropped: it is from an earlier run whose lease was lost");
        return;
    }
    let Some(run) = running.remove(id) else {
        return;
    };
    pace.record(finished.held_slot);
    outbox.push(Completion {
        lease: run.lease,
        worker: config.name.clone(),
        outcome: finished.outcome,
    });
}

/// When the oldest run still going started.
fn oldest_start(running: &HashMap<String, Running>) -> Option<Instant> {
    running
        .values()
        .filter_map(|run| run.state.started_at())
        .min()
}

/// Hands every task waiting here back to its queue, unstarted.
fn give_back_waiting(
    config: &WorkerConfig,
    slots: &Slots,
    running: &mut HashMap<String, Running>,
    outbox: &mut Vec<Completion>,
    reason: &str,
) {
    let mut returned = 0;
    for job in slots.withdraw_all() {
        if let Some(run) = running.remove(&job.delivery.lease.task_id) {
            returned += 1;
            outbox.push(Completion {
                lease: run.lease,
                worker: config.name.clone(),
                outcome: Outcome::Return {
                    reason: reason.to_owned(),
                },
            });
        }
    }
    if returned > 0 {
        tracing::info!(worker = %config.name, returned, reason, "tasks claimed ahead go back to their queues");
    }
}

/// Turns claimed deliveries into jobs for the slot threads, in claim order; a task
/// this worker does not know is released for another worker instead.
fn claim(
    registry: &PluginRegistry,
    config: &WorkerConfig,
    deliveries: Vec<Delivery>,
    running: &mut HashMap<String, Running>,
    outbox: &mut Vec<Completion>,
) -> Vec<Job> {
    let catalog = registry.snapshot();
    let mut jobs = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let Some(task) = catalog
            .resolve(&delivery.name)
            .filter(|t| t.def.name == delivery.name)
        else {
            tracing::warn!(
                worker = %config.name,
                task = %delivery.name,
                task_id = %delivery.lease.task_id,
                "task unknown to this worker; released for another worker"
            );
            outbox.push(Completion {
                worker: config.name.clone(),
                outcome: Outcome::Release {
                    reason: format!("worker {} has no task {}", config.name, delivery.name),
                    max_lost: config.max_lost,
                    // Growing with each release, so that a worker that knows the task
                    // (a rolling deploy, a plugin being reloaded) gets a chance at it.
                    delay: Duration::from_secs(u64::from(delivery.lost) + 1),
                },
                lease: delivery.lease,
            });
            continue;
        };
        let state = RunState::new(task.def.time_limit_ms.map(Duration::from_millis));
        running.insert(
            delivery.lease.task_id.clone(),
            Running {
                lease: delivery.lease.clone(),
                state: Arc::clone(&state),
                sent_progress: None,
            },
        );
        jobs.push(Job {
            task: Arc::clone(task),
            delivery,
            state,
        });
    }
    jobs
}

/// Renews every lease held and sends progress that changed; cancels runs whose lease
/// was lost or whose task was revoked, and drops such tasks that had not started (a
/// revoked one is reported revoked).
async fn renew(
    broker: &dyn Broker,
    config: &WorkerConfig,
    slots: &Slots,
    running: &mut HashMap<String, Running>,
    outbox: &mut Vec<Completion>,
) {
    let mut ids = Vec::new();
    let mut updates = Vec::new();
    for (id, run) in running.iter() {
        let progress = run
            .state
            .progress
            .lock()
            .expect("progress lock poisoned")
            .clone();
        let changed = progress.is_some() && progress != run.sent_progress;
        ids.push(id.clone());
        updates.push(LeaseUpdate {
            lease: run.lease.clone(),
            progress: if changed { progress } else { None },
        });
    }
    if updates.is_empty() {
        return;
    }
    let statuses = match broker.extend(&config.name, &updates).await {
        Ok(statuses) => statuses,
        Err(error) => {
            tracing::warn!(worker = %config.name, %error, "cannot renew leases");
            return;
        }
    };
    for ((id, update), status) in ids.iter().zip(updates).zip(statuses) {
        let Some(run) = running.get_mut(id) else {
            continue;
        };
        if update.progress.is_some() {
            run.sent_progress = update.progress;
        }
        let state = Arc::clone(&run.state);
        // Revoked or lost while it waits here: take it back, unless a slot thread has
        // just started it (then it is cancelled like any run).
        let unstarted =
            status != LeaseStatus::Held && state.is_waiting() && slots.withdraw(id, &state);
        if unstarted {
            {
                match status {
                    LeaseStatus::Held => {}
                    LeaseStatus::RevokeRequested => {
                        tracing::info!(task_id = %id, "revoked before it started");
                        if let Some(run) = running.remove(id) {
                            // Handed back unstarted; the broker, which holds the revoke,
                            // records it revoked without an attempt.
                            outbox.push(Completion {
                                lease: run.lease,
                                worker: config.name.clone(),
                                outcome: Outcome::Return {
                                    reason: "revoked before it started".to_owned(),
                                },
                            });
                        }
                    }
                    LeaseStatus::Lost => {
                        tracing::warn!(task_id = %id, worker = %config.name, "lease lost before the task started: another worker has it");
                        running.remove(id);
                    }
                }
            }
            continue;
        }
        match status {
            LeaseStatus::Held => {}
            LeaseStatus::RevokeRequested => {
                if !state.revoked.swap(true, Ordering::SeqCst) {
                    tracing::info!(task_id = %id, "revoke requested: cancelling the run");
                }
                state.cancel.cancel();
            }
            LeaseStatus::Lost => {
                tracing::warn!(task_id = %id, worker = %config.name, "lease lost: another worker took the task over; cancelling this run");
                state.cancel.cancel();
            }
        }
    }
}

/// Returns whether tasks went back to a queue.
async fn reclaim(broker: &dyn Broker, config: &WorkerConfig) -> bool {
    match broker.reclaim(config.lease, config.max_lost).await {
        Ok(report) => {
            for id in &report.requeued {
                tracing::warn!(task_id = %id, "lease expired: task re-queued for another attempt");
            }
            for id in &report.dead_lettered {
                tracing::error!(task_id = %id, "task lost its worker too many times: moved to the dead-letter set");
            }
            !report.requeued.is_empty()
        }
        Err(error) => {
            tracing::debug!(%error, "reclaim failed");
            false
        }
    }
}

async fn heartbeat(
    broker: &dyn Broker,
    config: &WorkerConfig,
    started_at: i64,
    in_flight: usize,
    stuck: usize,
) {
    let info = WorkerInfo {
        name: config.name.clone(),
        hostname: config
            .name
            .rsplitn(3, '-')
            .last()
            .unwrap_or_default()
            .to_owned(),
        pid: std::process::id(),
        queues: config.queues.clone(),
        concurrency: config.concurrency,
        in_flight,
        started_at,
        last_seen: now_ms(),
        stuck_threads: stuck,
    };
    if let Err(error) = broker.heartbeat(&info, config.heartbeat_every * 3).await {
        tracing::debug!(%error, "heartbeat failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claiming_ahead_needs_a_full_sample_of_short_runs() {
        let mut pace = Pace::default();
        for _ in 0..PACE_SAMPLES - 1 {
            pace.record(Duration::from_micros(20));
        }
        assert_eq!(
            pace.allowance(2, PREFETCH_MAX),
            0,
            "not before a full sample"
        );
        pace.record(Duration::from_micros(20));
        assert_eq!(
            pace.allowance(2, PREFETCH_MAX),
            PREFETCH_MAX,
            "20 µs runs: capped"
        );
        // 2 slots × 2 ms / 400 µs = 10.
        pace.record(Duration::from_micros(400));
        assert_eq!(pace.allowance(2, PREFETCH_MAX), 10);
        // One run as long as the budget anywhere in the sample: nothing ahead.
        pace.record(PREFETCH_BUDGET * 3);
        assert_eq!(pace.allowance(2, PREFETCH_MAX), 0);
        for _ in 0..PACE_SAMPLES - 1 {
            pace.record(Duration::from_micros(20));
        }
        assert_eq!(
            pace.allowance(2, PREFETCH_MAX),
            0,
            "the long run is still in the sample"
        );
        pace.record(Duration::from_micros(20));
        assert_eq!(
            pace.allowance(2, PREFETCH_MAX),
            PREFETCH_MAX,
            "and now it is not"
        );
        assert_eq!(pace.allowance(2, 0), 0, "turned off");
    }

    #[test]
    fn queue_order_rotates_one_turn_in_eight() {
        let queues: Vec<String> = ["cronjobs", "default", "low"].map(String::from).to_vec();
        let mut firsts = HashMap::new();
        for turn in 0..(ROTATE_EVERY * 6) {
            let order = queue_order(&queues, turn);
            assert_eq!(order.len(), 3);
            *firsts.entry(order[0].clone()).or_insert(0) += 1;
        }
        assert_eq!(firsts["cronjobs"], 42, "{firsts:?}");
        assert_eq!(firsts["default"], 3, "{firsts:?}");
        assert_eq!(firsts["low"], 3, "{firsts:?}");
        assert_eq!(queue_order(&queues[..1], 7), vec!["cronjobs".to_owned()]);
    }
}
