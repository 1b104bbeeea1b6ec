//! Hot-reload latency: from the moment a new build is renamed into the plugins folder of
//! a running `toolbox serve` to the moment `/plugins` lists it and a run answers with it.

use std::{
    fmt::Write as _,
    fs,
    net::TcpListener,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::stats::{ms, Samples};

#[derive(clap::Args)]
pub struct Options {
    /// Number of swaps
    #[arg(long, default_value_t = 20)]
    swaps: usize,
    /// Folder of the reload fixture builds
    #[arg(long, default_value = "target/reload-fixtures/release")]
    fixtures: std::path::PathBuf,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn get(agent: &ureq::Agent, url: &str) -> anyhow::Result<Value> {
    Ok(agent.get(url).call()?.body_mut().read_json()?)
}

fn post(agent: &ureq::Agent, url: &str) -> anyhow::Result<Value> {
    Ok(agent.post(url).send_empty()?.body_mut().read_json()?)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn run(artifacts: &Path, options: &Options) -> anyhow::Result<()> {
    let builds = [
        (
            "v1",
            fs::read(options.fixtures.join("libfixture_reload_v1.so")),
        ),
        (
            "v2",
            fs::read(options.fixtures.join("libfixture_reload_v2.so")),
        ),
    ];
    let builds: Vec<(&str, Vec<u8>)> = builds
        .into_iter()
        .map(|(v, bytes)| bytes.map(|b| (v, b)))
        .collect::<Result<_, _>>()
        .context("build the fixtures first: cargo build --release --manifest-path tests/reload-fixtures/Cargo.toml --target-dir target/reload-fixtures")?;
    let work = tempfile::tempdir()?;
    let plugins = work.path().join("plugins");
    fs::create_dir(&plugins)?;
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o700))?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let base = format!("http://127.0.0.1:{port}");
    let install = |n: usize| -> anyhow::Result<(&str, String)> {
        let (version, bytes) = &builds[n % 2];
        let mut bytes = bytes.clone();
        // A distinct file each time, so that each swap maps a new library.
        bytes.extend_from_slice(format!("swap {n}").as_bytes());
        let staged = plugins.join(".libfixture.so.tmp");
        fs::write(&staged, &bytes)?;
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o755))?;
        fs::rename(&staged, plugins.join("libfixture.so"))?;
        Ok((version, hex(&Sha256::digest(&bytes))))
    };
    install(0)?;
    let mut server = Command::new(artifacts.join("toolbox"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--plugins"])
        .arg(&plugins)
        .current_dir(work.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let outcome = (|| {
        let agent = agent();
        let started = Instant::now();
        while agent.get(&format!("{base}/health")).call().is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                bail!("toolbox serve did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut listed = Vec::new();
        let mut served = Vec::new();
        for n in 1..=options.swaps {
            std::thread::sleep(Duration::from_millis(300));
            let swapped = Instant::now();
            let (version, sha) = install(n)?;
            loop {
                let plugins = get(&agent, &format!("{base}/plugins"))?;
                if plugins["plugins"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p["sha256"] == sha.as_str()))
                {
                    listed.push(swapped.elapsed());
                    break;
                }
                if swapped.elapsed() > Duration::from_secs(10) {
                    bail!("swap {n} never showed in /plugins");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            loop {
                let id = post(&agent, &format!("{base}/tasks/execute/version"))?["task_id"]
                    .as_str()
                    .context("no task id")?
                    .to_owned();
                let result = loop {
                    let status = get(&agent, &format!("{base}/tasks/status/{id}"))?;
                    if status["ready"] == true {
                        break status["result"].clone();
                    }
                    std::thread::sleep(Duration::from_millis(1));
                };
                if result == version {
                    served.push(swapped.elapsed());
                    break;
                }
            }
        }
        let (listed, served) = (Samples::new(listed), Samples::new(served));
        println!(
            "reload, {} swaps (debounce 100 ms + 50 ms settle): listed in /plugins p50 {}, max {}; first run on the new build p50 {}, max {}",
            options.swaps,
            ms(listed.median()),
            ms(listed.max()),
            ms(served.median()),
            ms(served.max())
        );
        anyhow::Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    outcome
}
