//! The slot threads: one OS thread per slot, each taking the next claimed task from a
//! queue it shares with the worker loop.
//!
//! A thread that finishes a run takes the next waiting task at once, so a worker busy
//! with short tasks runs them without a thread wake-up per task. (Through the async
//! runtime, `spawn` + `spawn_blocking` + the join cost about three wake-ups per run:
//! most of a two-slot worker's CPU on `background.noop`, and the limit of its
//! throughput.) The loop is woken only when it has something to do: runs have ended and
//! the queue is down to its low-water mark.
//!
//! Time limits are kept by a watchdog task per time-limited run, not by the loop (which
//! may be waiting on the broker): at the limit it asks the run to stop; past the grace
//! it abandons the run: its failure is reported like a finished run, a new thread takes
//! its slot, and the stuck thread, counted meanwhile, ends when its run finally returns.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    time::Duration,
};

use tokio::sync::Notify;

use super::execute::{self, Finished, Job, Ran, RunState};
use crate::{database::Database, plugins::TaskHandle, queue::Lease};

pub(super) struct Slots {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Idle slot threads wait here for work.
    work: Condvar,
    /// Wakes the worker loop.
    wake: Notify,
    /// Runs that outlived their time limit and grace and still hold a thread.
    stuck: AtomicUsize,
    /// After its time limit, how long a run may take to notice cancellation.
    grace: Duration,
    database: Option<Database>,
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Job>,
    finished: Vec<Finished>,
    idle: usize,
    /// A run ending with this many tasks or fewer queued wakes the loop.
    low_water: usize,
    /// The loop was woken and has not collected the finished runs yet.
    notified: bool,
    closed: bool,
}

impl Slots {
    /// Starts `count` slot threads; call from inside the runtime (its handle serves the
    /// runs' database sessions and watchdogs).
    pub fn start(
        count: usize,
        grace: Duration,
        database: Option<Database>,
    ) -> std::io::Result<Self> {
        let slots = Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner::default()),
                work: Condvar::new(),
                wake: Notify::new(),
                stuck: AtomicUsize::new(0),
                grace,
                database,
                runtime: tokio::runtime::Handle::current(),
            }),
        };
        for _ in 0..count {
            slots.spawn_thread()?;
        }
        Ok(slots)
    }

    fn spawn_thread(&self) -> std::io::Result<()> {
        Shared::spawn_thread(&self.shared)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    /// Queues claimed tasks, in order, and wakes idle threads for them.
    pub fn push(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let wake = inner.idle.min(jobs.len());
        inner.queue.extend(jobs);
        drop(inner);
        for _ in 0..wake {
            self.shared.work.notify_one();
        }
    }

    /// Tasks waiting for a slot.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn stuck(&self) -> usize {
        self.shared.stuck.load(Ordering::SeqCst)
    }

    pub fn set_low_water(&self, tasks: usize) {
        self.lock().low_water = tasks;
    }

    /// Runs that ended since the last call.
    pub fn take_finished(&self) -> Vec<Finished> {
        let mut inner = self.lock();
        inner.notified = false;
        std::mem::take(&mut inner.finished)
    }

    /// Resolves when a slot thread asks the loop to look (see the module's doc).
    pub async fn notified(&self) {
        self.shared.wake.notified().await;
    }

    /// Takes a task back before it starts: true if it had not started (it never will).
    pub fn withdraw(&self, task_id: &str, state: &execute::RunState) -> bool {
        let mut inner = self.lock();
        if let Some(at) = inner
            .queue
            .iter()
            .position(|job| job.delivery.lease.task_id == task_id)
        {
            inner.queue.remove(at);
        }
        drop(inner);
        // Not queued any more: a thread may hold it; whoever swaps its phase first wins.
        state.withdraw()
    }

    /// Takes back every task still queued; none of them has started.
    pub fn withdraw_all(&self) -> Vec<Job> {
        let jobs: Vec<Job> = self.lock().queue.drain(..).collect();
        jobs.into_iter()
            .filter(|job| job.state.withdraw())
            .collect()
    }

    /// Idle threads end; runs going on finish, and their threads end then.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        let queued: Vec<Job> = inner.queue.drain(..).collect();
        drop(inner);
        for job in queued {
            job.state.withdraw();
        }
        self.shared.work.notify_all();
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding it; a poisoned lock still holds sound data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_thread(shared: &Arc<Self>) -> std::io::Result<()> {
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name("toolbox-slot".to_owned())
            .spawn(move || shared.serve())
            .map(drop)
    }

    /// Reports runs that ended, and wakes the loop if it should look now.
    fn report(&self, inner: &mut Inner, finished: Finished) {
        inner.finished.push(finished);
        self.wake_if_due(inner);
    }

    /// The loop is due a wake-up when runs have ended and the queue is down to its
    /// low-water mark. Checked when a run ends and when a thread takes a task, since a
    /// thread that finishes with tasks queued may then take the last of them.
    fn wake_if_due(&self, inner: &mut Inner) {
        if !inner.notified && !inner.finished.is_empty() && inner.queue.len() <= inner.low_water {
            inner.notified = true;
            self.wake.notify_one();
        }
    }

    /// A slot thread's life: run queued tasks until closed.
    fn serve(self: Arc<Self>) {
        // Plugins and sessions may look for the runtime of the thread they run on.
        let _runtime = self.runtime.enter();
        let mut inner = self.lock();
        loop {
            let next = inner.queue.pop_front();
            self.wake_if_due(&mut inner);
            let Some(job) = next else {
                if inner.closed {
                    return;
                }
                inner.idle += 1;
                inner = self.work.wait(inner).unwrap_or_else(|e| e.into_inner());
                inner.idle -= 1;
                continue;
            };
            drop(inner);
            if !job.state.begin() {
                // Taken back by the loop while this thread was picking it up.
                inner = self.lock();
                continue;
            }
            let watchdog = job.state.time_limit.map(|limit| {
                self.runtime.spawn(Arc::clone(&self).watch(
                    Arc::clone(&job.task),
                    job.delivery.lease.clone(),
                    Arc::clone(&job.state),
                    limit,
                ))
            });
            let ran = execute::run(job, self.database.as_ref(), &self.runtime);
            if let Some(watchdog) = watchdog {
                watchdog.abort();
            }
            inner = self.lock();
            match ran {
                Ran::Abandoned => {
                    // A new thread has had this slot since the watchdog gave up on the run.
                    self.stuck.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
                Ran::Finished(finished) => self.report(&mut inner, finished),
            }
        }
    }

    /// Keeps one run's time limit: asks it to stop at the limit, abandons it past the
    /// grace. Aborted by the slot thread when the run returns first.
    async fn watch(
        self: Arc<Self>,
        task: Arc<TaskHandle>,
        lease: Lease,
        state: Arc<RunState>,
        limit: Duration,
    ) {
        let task_id = lease.task_id.as_str();
        tokio::time::sleep(limit).await;
        state.timed_out.store(true, Ordering::SeqCst);
        state.cancel.cancel();
        tracing::warn!(task = %task.def.name, task_id, limit_ms = limit.as_millis() as u64, "time limit reached: asking the run to stop");
        tokio::time::sleep(self.grace).await;
        // Counted first, so that the thread, which uncounts itself once its run returns,
        // never sees the count below zero.
        self.stuck.fetch_add(1, Ordering::SeqCst);
        if !state.abandon() {
            self.stuck.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        tracing::error!(
            task = %task.def.name,
            task_id,
            grace_ms = self.grace.as_millis() as u64,
            "task ignored cancellation past its time limit; its thread stays busy and a new one takes its slot"
        );
        if let Err(error) = Self::spawn_thread(&self) {
            tracing::error!(%error, "cannot start a thread for the slot of a stuck run: the worker has one slot fewer");
        }
        let finished = Finished {
            outcome: execute::time_limit_failure(&task),
            // Into the pace sample: a run this long stops claiming ahead.
            held_slot: limit + self.grace,
            lease,
        };
        let mut inner = self.lock();
        inner.finished.push(finished);
        // Whatever the queue holds: the loop reports this now.
        inner.notified = true;
        self.wake.notify_one();
    }
}
