//! `toolbox-bench`: measures toolbox on this machine and prints the figures the README's
//! performance section reports. Run it from a release build:
//!
//! ```text
//! cargo build --release -p toolbox -p toolbox-demo -p toolbox-bench
//! target/release/toolbox-bench plugins
//! target/release/toolbox-bench queue --broker redis://127.0.0.1:6379/0
//! target/release/toolbox-bench queue --broker sqlite:///tmp/toolbox-bench.sqlite
//! cargo build --release --manifest-path tests/reload-fixtures/Cargo.toml --target-dir target/reload-fixtures
//! target/release/toolbox-bench reload
//! target/release/toolbox-bench beat
//! cargo build --release -p toolbox -p toolbox-bench -p toolbox-tipo-cambio -p toolbox-etl \
//!     -p toolbox-tablas-cxc -p toolbox-tablas-reportes -p toolbox-kpi -p toolbox-kpi-acumulado
//! target/release/toolbox-bench reports --database sqlite:///tmp/toolbox-bench-reports.sqlite \
//!     --database postgres://postgres@127.0.0.1:5432/tb_bench      # 1,000,000 operations
//! ```

mod beat;
mod plugins;
mod queue;
mod reload;
mod reports;
mod stats;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "toolbox-bench", about = "Benchmarks of toolbox")]
struct Cli {
    /// Folder holding the built `toolbox` binary and plugins [default: this binary's folder]
    #[arg(long, global = true)]
    artifacts: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plugin load time, in-process call cost, host start-up with many plugins
    Plugins(plugins::Options),
    /// Queue throughput (enqueue alone, end to end) and enqueue-to-start latency
    Queue(queue::Options),
    /// Scheduler drift: how late each tick of a per-second schedule is enqueued
    Beat(beat::Options),
    /// Hot-reload latency: a new build in place → served by /plugins and by a run
    Reload(reload::Options),
    /// The finance reports (kpi_acumulado, tablas_cxc, ...) over a large seeded database:
    /// seeding time, then wall time, records and peak memory of each task
    Reports(reports::Options),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let artifacts = match cli.artifacts {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has no folder")?
            .to_path_buf(),
    };
    match cli.command {
        Command::Plugins(options) => plugins::run(&artifacts, &options),
        Command::Queue(options) => queue::run(&artifacts, &options),
        Command::Reload(options) => reload::run(&artifacts, &options),
        Command::Beat(options) => beat::run(&artifacts, &options),
        Command::Reports(options) => reports::run(&artifacts, &options),
    }
}
