//! The scheduler on the real binary: `toolbox beat` processes against Redis (a prefix of
//! the test's own), and `/schedules` of `toolbox serve`.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Value};
use toolbox::queue::{self, Broker, BrokerConfig, ListFilter, TaskRecord};

use crate::support::{
    artifacts,
    brokers::{delete_prefix, redis_url, unique_prefix},
    http::get,
    processes::ServerProcess,
    PluginsDir,
};

struct Beat(Child);

impl Drop for Beat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    plugins: PluginsDir,
    dir: tempfile::TempDir,
    prefix: String,
    broker: std::sync::Arc<dyn Broker>,
}

impl Setup {
    async fn new(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("toolbox.toml"), config).unwrap();
        let prefix = unique_prefix();
        let broker = queue::connect(&redis_url(), &prefix, &BrokerConfig::default())
            .await
            .expect("Redis");
        Self {
            plugins: PluginsDir::with_demo(),
            dir,
            prefix,
            broker,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("toolbox.toml")
    }

    fn beat(&self) -> Beat {
        Beat(
            beat_command(self.plugins.path(), &self.config(), &self.prefix)
                .spawn()
                .expect("toolbox beat starts"),
        )
    }

    async fn tasks(&self, name: &str) -> Vec<TaskRecord> {
        let page = self
            .broker
            .list(&ListFilter {
                name: Some(name.to_owned()),
                limit: 500,
                ..ListFilter::default()
            })
            .await
            .unwrap();
        page.tasks
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        delete_prefix(&redis_url(), &self.prefix);
    }
}

fn beat_command(plugins: &Path, config: &Path, prefix: &str) -> Command {
    let mut command = Command::new(&artifacts().toolbox);
    command
        .args([
            "beat",
            "--broker",
            &redis_url(),
            "--prefix",
            prefix,
            "--plugins",
        ])
        .arg(plugins)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sleeps until `offset_ms` past the next whole second.
async fn align_to_second(offset_ms: i64) {
    let now = now_ms();
    let target = (now / 1000 + 1) * 1000 + offset_ms;
    tokio::time::sleep(Duration::from_millis((target - now) as u64)).await;
}

const EVERY_SECOND: &str = r#"
timezone = "UTC"

[[schedule]]
task = "echo"
cron = "* * * * * *"
queue = "cronjobs"
args = { x = 1 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fires_on_time_into_the_right_queue() {
    let s = Setup::new(EVERY_SECOND).await;
    align_to_second(300).await;
    let beat = s.beat();
    tokio::time::sleep(Duration::from_millis(3_400)).await;
    drop(beat);
    let tasks = s.tasks("background.echo").await;
    assert!(
        (3..=4).contains(&tasks.len()),
        "{} tasks in 3.4 s",
        tasks.len()
    );
    for task in &tasks {
        assert_eq!(task.queue, "cronjobs");
        assert_eq!(
            serde_json::from_str::<Value>(&task.args).unwrap(),
            json!({"x": 1})
        );
        let late = task.enqueued_at % 1000;
        assert!(late < 250, "fired {late} ms after its tick");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_fire_each_tick_once() {
    let s = Setup::new(EVERY_SECOND).await;
    let beats: Vec<Beat> = (0..3).map(|_| s.beat()).collect();
    tokio::time::sleep(Duration::from_secs(6)).await;
    drop(beats);
    let tasks = s.tasks("background.echo").await;
    let mut per_tick: HashMap<i64, usize> = HashMap::new();
    for task in &tasks {
        *per_tick.entry(task.enqueued_at / 1000).or_default() += 1;
    }
    assert!(tasks.len() >= 4, "only {} ticks fired in 6 s", tasks.len());
    assert!(
        per_tick.values().all(|n| *n == 1),
        "a tick fired more than once: {per_tick:?}"
    );
}

/// A scheduler stopped for a few ticks fires the most recent missed tick once when it
/// comes back (misfire = "once"), or none (misfire = "skip").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_follow_the_misfire_policy() {
    let config = r#"
timezone = "UTC"

[[schedule]]
task = "echo"
cron = "* * * * * *"
misfire = "once"

[[schedule]]
task = "noop"
cron = "* * * * * *"
misfire = "skip"
"#;
    let s = Setup::new(config).await;
    let first = s.beat();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    drop(first);
    assert!(!s.tasks("background.echo").await.is_empty());
    tokio::time::sleep(Duration::from_secs(3)).await;

    align_to_second(100).await;
    let restarted_at = now_ms();
    let next_tick = (restarted_at / 1000 + 1) * 1000;
    let _second = s.beat();
    tokio::time::sleep(Duration::from_millis(
        (next_tick - 80 - now_ms()).max(0) as u64
    ))
    .await;
    let since = |tasks: Vec<TaskRecord>| {
        tasks
            .into_iter()
            .filter(|t| t.enqueued_at >= restarted_at && t.enqueued_at < next_tick)
            .count()
    };
    assert_eq!(
        since(s.tasks("background.echo").await),
        1,
        "misfire once: one catch-up, not a burst"
    );
    assert_eq!(
        since(s.tasks("background.noop").await),
        0,
        "misfire skip: no catch-up"
    );
}

/// A config entry turns a plugin's own schedule off; `/schedules` shows both cases.
#[test]
fn schedules_route_and_a_disabled_plugin_schedule() {
    let plugins = PluginsDir::with_demo();
    let server = ServerProcess::start("serve", plugins.path(), &[]);
    let body = get(&server.url("/schedules")).json();
    assert_eq!(body["timezone"], "America/Lima");
    let leap = body["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["task"] == "background.leap_day")
        .unwrap()
        .clone();
    assert_eq!(
        (leap["source"].clone(), leap["enabled"].clone()),
        (json!("plugin"), json!(true))
    );
    assert_eq!(leap["cron"], "0 0 3 29 2 *");
    // 03:00 in Lima (UTC-5) on the next 29 February.
    assert!(
        leap["next_fire"]
            .as_str()
            .unwrap()
            .ends_with("-02-29T08:00:00.000Z"),
        "{leap}"
    );
    assert_eq!(leap["last_fire"], Value::Null);
    assert_eq!(leap["queue"], "cronjobs");
    let available = get(&server.url("/tasks/available")).json();
    assert_eq!(
        available["available_tasks"]["leap_day"]["schedule"],
        "0 0 3 29 2 *"
    );
    drop(server);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("toolbox.toml");
    fs::write(
        &config,
        "[[schedule]]\ntask = \"leap-day\"\nenabled = false\n",
    )
    .unwrap();
    let server = ServerProcess::start(
        "serve",
        plugins.path(),
        &["--config", config.to_str().unwrap()],
    );
    let body = get(&server.url("/schedules")).json();
    let leap = body["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["task"] == "background.leap_day")
        .unwrap()
        .clone();
    assert_eq!(
        (
            leap["source"].clone(),
            leap["enabled"].clone(),
            leap["next_fire"].clone()
        ),
        (json!("config"), json!(false), Value::Null)
    );
}

/// Wrong entries stop `toolbox beat` with an error that names the entry.
#[test]
fn invalid_entries_fail_clearly() {
    let plugins = PluginsDir::with_demo();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[schedule]]\ntask = \"echo\"\ncron = \"61 * * * *\"\n",
            "schedule entry 1 (task \"echo\")",
        ),
        (
            "[[schedule]]\ntask = \"echo\"\ncron = \"* * * *\"\n",
            "has 4 fields",
        ),
        (
            "[[schedule]]\ntask = \"no-such-task\"\ncron = \"* * * * *\"\n",
            "no such task",
        ),
        ("timezone = \"Mars/Olympus\"\n", "timezone \"Mars/Olympus\""),
        (
            "[[schedule]]\ntask = \"echo\"\ncron = \"0 6 * * *\"\n[[schedule]]\ntask = \"echo\"\ncron = \"0 7 * * *\"\n",
            "two schedule entries are called \"config:background.echo\"",
        ),
        (
            "[[schedule]]\ntask = \"sleep\"\ncron = \"* * * * *\"\nargs = { ms = \"soon\" }\n",
            "args do not match the task's schema: at \"/ms\"",
        ),
        (
            "[[schedule]]\ntask = \"echo\"\ncron = \"* * * * *\"\nmisfire = \"sometimes\"\n",
            "misfire",
        ),
    ];
    for (config, expected) in cases {
        let path = dir.path().join("toolbox.toml");
        fs::write(&path, config).unwrap();
        let mut child = beat_command(plugins.path(), &path, &unique_prefix())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(15) {
                let _ = child.kill();
                panic!("toolbox beat accepted {config:?} and kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}\n{stderr}");
        assert!(
            stderr.contains(expected),
            "{config}: stderr lacks {expected:?}:\n{stderr}"
        );
    }
}
