//! Plugin loading and calling through the ABI.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, ensure, Context as _};
use toolbox::plugins::{LoaderConfig, PluginLoader, PluginRegistry, RunContext};

use crate::stats::{ms, Samples};

#[derive(clap::Args)]
pub struct Options {
    /// Plugin copies in the folder for the start-up measurement
    #[arg(long, default_value_t = 50)]
    copies: usize,
    /// Calls of background.noop for the per-call cost
    #[arg(long, default_value_t = 1_000_000)]
    calls: u64,
}

pub fn run(artifacts: &Path, options: &Options) -> anyhow::Result<()> {
    let demo = artifacts.join("libtoolbox_demo.so");
    let toolbox = artifacts.join("toolbox");
    for needed in [&demo, &toolbox] {
        if !needed.exists() {
            bail!(
                "{} is missing: build first with `cargo build --release -p toolbox -p toolbox-demo -p toolbox-bench`",
                needed.display()
            );
        }
    }
    let size = fs::metadata(&demo)?.len();
    println!("plugin: {} ({:.1} MB)", demo.display(), size as f64 / 1e6);

    let folder = copies_folder(&demo, options.copies)?;
    load_time(folder.path(), None)?;
    load_time(folder.path(), Some(&toolbox))?;
    call_cost(&demo, options.calls)?;
    startup(&toolbox, folder.path(), options.copies)?;
    Ok(())
}

/// `count` copies of the demo plugin, each with different trailing bytes: distinct
/// files with distinct hashes, so that each one is really mapped (the same content
/// would be the same library).
fn copies_folder(demo: &Path, count: usize) -> anyhow::Result<tempfile::TempDir> {
    let folder = tempfile::Builder::new()
        .prefix("toolbox-bench-plugins-")
        .tempdir()?;
    let bytes = fs::read(demo)?;
    for i in 0..count {
        let mut copy = bytes.clone();
        copy.extend_from_slice(format!("copy {i}").as_bytes());
        let path = folder.path().join(format!("libdemo_{i:03}.so"));
        fs::write(&path, copy)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    }
    Ok(folder)
}

fn files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    PluginLoader::candidates(folder).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Time of `PluginLoader::load` per library: read, hash, ELF check, private copy,
/// (probe), dlopen, layout check, manifest.
fn load_time(folder: &Path, probe: Option<&Path>) -> anyhow::Result<()> {
    let loader = PluginLoader::new(LoaderConfig {
        probe_with: probe.map(Path::to_path_buf),
        ..LoaderConfig::default()
    })?;
    let mut samples = Vec::new();
    for file in files(folder)? {
        let started = Instant::now();
        let plugin = loader.load(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
        samples.push(started.elapsed());
        ensure!(
            plugin.tasks.len() == 10,
            "{} has {} tasks",
            file.display(),
            plugin.tasks.len()
        );
    }
    let samples = Samples::new(samples);
    println!(
        "load one library ({}): p50 {}, max {} over {} distinct libraries",
        if probe.is_some() {
            "with probe"
        } else {
            "no probe"
        },
        ms(samples.median()),
        ms(samples.max()),
        files(folder)?.len()
    );
    Ok(())
}

/// Nanoseconds per in-process `run` of background.noop through the ABI, including the
/// JSON (de)serialisation of its arguments and result on both sides.
fn call_cost(demo: &Path, calls: u64) -> anyhow::Result<()> {
    let folder = copies_folder(demo, 1)?;
    let registry = PluginRegistry::open(folder.path(), LoaderConfig::default())?;
    let catalog = registry.snapshot();
    let noop = catalog
        .resolve("background.noop")
        .context("background.noop is not loaded")?;
    let ctx = RunContext::new("00000000-0000-7000-8000-000000000000");
    for _ in 0..10_000 {
        noop.run("null", &ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let started = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(
            noop.run(std::hint::black_box("null"), &ctx)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    }
    let per_call = started.elapsed().as_nanos() as f64 / calls as f64;
    println!("run background.noop in-process: {per_call:.0} ns per call ({calls} calls)");
    Ok(())
}

/// Wall time of `toolbox tasks` on a folder of `copies` plugins: process start, loading
/// every plugin (with probes), listing, exit. Median of 5.
fn startup(toolbox: &Path, folder: &Path, copies: usize) -> anyhow::Result<()> {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let out = Command::new(toolbox)
            .args(["tasks", "--json", "--plugins"])
            .arg(folder)
            .env("RUST_LOG", "error")
            .output()?;
        samples.push(started.elapsed());
        ensure!(
            out.status.success(),
            "toolbox tasks failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let samples = Samples::new(samples);
    println!(
        "host start-up with {copies} plugin copies (toolbox tasks, probes on): median {}, max {}",
        ms(samples.median()),
        ms(samples.max())
    );
    Ok(())
}
