//! The queue, measured: enqueue rate alone, end-to-end throughput of `background.noop`
//! through one `toolbox worker` process, and enqueue→start latency on an idle worker.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _};
use toolbox::queue::{self, Broker, BrokerConfig, NewTask, TaskState};

use crate::stats::{ms, Samples};

#[derive(clap::Args)]
pub struct Options {
    /// `redis://…` or `sqlite://…`
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    broker: String,
    /// Tasks for the throughput runs
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Concurrent producers
    #[arg(long, default_value_t = 50)]
    producers: usize,
    /// Tasks per enqueue call in the batched runs
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Samples of the latency run
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Worker concurrency [default: the worker's own, the number of cores]
    #[arg(long)]
    concurrency: Option<usize>,
}

struct Target {
    url: String,
    prefix: String,
    broker: Arc<dyn Broker>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    async fn new(base: &str) -> anyhow::Result<Self> {
        let prefix = format!("bench-{}", uuid::Uuid::now_v7().simple());
        let (url, dir) = if base.starts_with("sqlite:") {
            let dir = tempfile::tempdir()?;
            (
                format!("sqlite://{}", dir.path().join("queue.sqlite").display()),
                Some(dir),
            )
        } else {
            (base.to_owned(), None)
        };
        let broker = queue::connect(&url, &prefix, &BrokerConfig::default()).await?;
        Ok(Self {
            url,
            prefix,
            broker,
            _dir: dir,
        })
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if !self.url.starts_with("redis") {
            return;
        }
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let mut cursor: u64 = 0;
        loop {
            let reply: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{{{}}}:*", self.prefix))
                .arg("COUNT")
                .arg(10_000)
                .query(&mut conn);
            let Ok((next, keys)) = reply else { return };
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("UNLINK").arg(&keys).query(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

pub fn run(artifacts: &Path, options: &Options) -> anyhow::Result<()> {
    let toolbox = artifacts.join("toolbox");
    if !toolbox.exists() || !artifacts.join("libtoolbox_demo.so").exists() {
        bail!("build first: cargo build --release -p toolbox -p toolbox-demo -p toolbox-bench");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        println!("broker: {}", options.broker);
        enqueue_rate(options, 1).await?;
        enqueue_rate(options, options.batch).await?;
        end_to_end(&toolbox, options).await?;
        latency(&toolbox, options).await
    })
}

fn noop() -> NewTask {
    NewTask::new("background.noop", "bench", "null")
}

/// `producers` tasks each enqueueing `batch` tasks per call until `total` are in.
async fn produce(
    broker: &Arc<dyn Broker>,
    total: usize,
    producers: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let per_producer = total.div_ceil(producers);
    let handles: Vec<_> = (0..producers)
        .map(|_| {
            let broker = Arc::clone(broker);
            tokio::spawn(async move {
                let mut left = per_producer;
                while left > 0 {
                    let n = left.min(batch);
                    broker.enqueue((0..n).map(|_| noop()).collect()).await?;
                    left -= n;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle.await??;
    }
    Ok(())
}

async fn enqueue_rate(options: &Options, batch: usize) -> anyhow::Result<()> {
    let target = Target::new(&options.broker).await?;
    let started = Instant::now();
    produce(&target.broker, options.tasks, options.producers, batch).await?;
    let elapsed = started.elapsed();
    println!(
        "enqueue, {} producers, {batch} per call: {:.0} tasks/s ({} tasks in {})",
        options.producers,
        options.tasks as f64 / elapsed.as_secs_f64(),
        options.tasks,
        ms(elapsed)
    );
    Ok(())
}

fn start_worker(toolbox: &Path, target: &Target, options: &Options) -> anyhow::Result<Child> {
    let mut command = Command::new(toolbox);
    command
        .args([
            "worker",
            "--queues",
            "bench",
            "--broker",
            &target.url,
            "--prefix",
            &target.prefix,
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if let Some(n) = options.concurrency {
        command.args(["--concurrency", &n.to_string()]);
    }
    Ok(command.spawn()?)
}

async fn wait_for_worker(broker: &dyn Broker) -> anyhow::Result<()> {
    let started = Instant::now();
    while broker.workers().await?.is_empty() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the worker did not report for duty within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Enqueue `tasks` noops while one worker process runs them; time until the queue is
/// empty and nothing is in flight, i.e. the last result is stored.
async fn end_to_end(toolbox: &Path, options: &Options) -> anyhow::Result<()> {
    let target = Target::new(&options.broker).await?;
    let mut worker = start_worker(toolbox, &target, options)?;
    let outcome =
        async {
            wait_for_worker(&*target.broker).await?;
            let started = Instant::now();
            produce(&target.broker, options.tasks, 8, options.batch).await?;
            let enqueued = started.elapsed();
            loop {
                let stats = target.broker.queue_stats().await?;
                let left: u64 = stats
                    .iter()
                    .map(|s| s.depth + s.in_flight + s.delayed)
                    .sum();
                if left == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let elapsed = started.elapsed();
            println!(
            "end to end, 1 worker ({} slots): {:.0} tasks/s ({} noops in {}; enqueueing took {})",
            options.concurrency.map_or("default".to_owned(), |n| n.to_string()),
            options.tasks as f64 / elapsed.as_secs_f64(),
            options.tasks,
            ms(elapsed),
            ms(enqueued)
        );
            anyhow::Ok(())
        }
        .await;
    let _ = worker.kill();
    let _ = worker.wait();
    outcome
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// One task at a time on an idle worker: from just before the enqueue call to the
/// moment the task starts (it reports its own start time).
async fn latency(toolbox: &Path, options: &Options) -> anyhow::Result<()> {
    let target = Target::new(&options.broker).await?;
    let mut worker = start_worker(toolbox, &target, options)?;
    let outcome = async {
        wait_for_worker(&*target.broker).await?;
        let mut samples = Vec::with_capacity(options.samples);
        for _ in 0..options.samples {
            // Let the worker go idle: it is waiting for work when the task arrives.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let before = now_us();
            let id = target
                .broker
                .enqueue(vec![NewTask::new("background.clock", "bench", "null")])
                .await?[0]
                .id
                .clone();
            let record = loop {
                match target.broker.get(&id).await? {
                    Some(r) if r.state == TaskState::Success => break r,
                    Some(r) if r.state.is_ready() => bail!("latency task failed: {r:?}"),
                    _ => tokio::time::sleep(Duration::from_micros(200)).await,
                }
            };
            let started: u128 = record.result.as_deref().context("no result")?.parse()?;
            samples.push(Duration::from_micros(started.saturating_sub(before) as u64));
        }
        let samples = Samples::new(samples);
        println!(
            "enqueue→start on an idle worker: p50 {}, p99 {}, max {} ({} samples)",
            ms(samples.median()),
            ms(samples.percentile(99.0)),
            ms(samples.max()),
            options.samples
        );
        anyhow::Ok(())
    }
    .await;
    let _ = worker.kill();
    let _ = worker.wait();
    outcome
}
