//! Scheduler drift: a `toolbox beat` process fires a per-second schedule for a minute;
//! each task's enqueue time, past its whole-second tick, is how late that tick fired.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use toolbox::queue::{self, BrokerConfig, ListFilter};

use crate::stats::{ms, Samples};

#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    broker: String,
    /// Ticks to measure (one per second)
    #[arg(long, default_value_t = 60)]
    ticks: u64,
}

pub fn run(artifacts: &Path, options: &Options) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let config = work.path().join("toolbox.toml");
    std::fs::write(
        &config,
        "timezone = \"UTC\"\n\n[[schedule]]\ntask = \"noop\"\ncron = \"* * * * * *\"\n",
    )?;
    let prefix = format!("bench-beat-{}", uuid::Uuid::now_v7().simple());
    let mut beat = Command::new(artifacts.join("toolbox"))
        .args([
            "beat",
            "--broker",
            &options.broker,
            "--prefix",
            &prefix,
            "--config",
        ])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start toolbox beat")?;
    std::thread::sleep(Duration::from_secs(options.ticks) + Duration::from_millis(500));
    let _ = beat.kill();
    let _ = beat.wait();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let broker = queue::connect(&options.broker, &prefix, &BrokerConfig::default()).await?;
        let page = broker
            .list(&ListFilter {
                limit: 500,
                ..ListFilter::default()
            })
            .await?;
        let late: Vec<Duration> = page
            .tasks
            .iter()
            .map(|t| Duration::from_millis((t.enqueued_at % 1000) as u64))
            .collect();
        let count = late.len();
        let samples = Samples::new(late);
        println!(
            "scheduler drift, {count} ticks of a per-second schedule: p50 {}, p99 {}, max {} after the tick",
            ms(samples.median()),
            ms(samples.percentile(99.0)),
            ms(samples.max())
        );
        // Only this run's keys.
        let client = redis::Client::open(options.broker.as_str())?;
        let mut conn = client.get_connection()?;
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{{{prefix}}}:*")).query(&mut conn)?;
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK").arg(&keys).query(&mut conn)?;
        }
        anyhow::Ok(())
    })
}
