//! Brokers for tests, each isolated: a Redis key prefix of its own (its keys deleted
//! when the test ends), or a SQLite file in a temp folder of its own.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use toolbox::{
    plugins::{LoaderConfig, PluginRegistry},
    queue::{self, Broker, BrokerConfig, TaskRecord},
    worker::{Worker, WorkerConfig, WorkerReport},
};

use super::PluginsDir;

/// The machine's Redis (or `TOOLBOX_TEST_REDIS`).
pub fn redis_url() -> String {
    std::env::var("TOOLBOX_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    Sqlite,
}

/// A broker of the test's own; its data goes away with it.
pub struct TestBroker {
    pub broker: Arc<dyn Broker>,
    _guard: Guard,
}

enum Guard {
    Redis { url: String, prefix: String },
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
}

impl TestBroker {
    /// The Redis URL and key prefix of a Redis broker, for tests that look at its keys.
    pub fn redis(&self) -> Option<(&str, &str)> {
        match &self._guard {
            Guard::Redis { url, prefix } => Some((url, prefix)),
            Guard::Sqlite(_) => None,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Redis { url, prefix } = self {
            delete_prefix(url, prefix);
        }
    }
}

/// Deletes the keys of one prefix, and only those.
pub fn delete_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let pattern = format!("{{{prefix}}}:*");
    let keys: Vec<String> = match redis::cmd("KEYS").arg(&pattern).query(&mut conn) {
        Ok(keys) => keys,
        Err(_) => return,
    };
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
    }
}

pub fn unique_prefix() -> String {
    format!("test-{}", uuid::Uuid::now_v7().simple())
}

impl Backend {
    pub async fn open(self, config: BrokerConfig) -> TestBroker {
        match self {
            Backend::Redis => {
                let url = redis_url();
                let prefix = unique_prefix();
                let broker = queue::connect(&url, &prefix, &config)
                    .await
                    .unwrap_or_else(|e| panic!("Redis at {url} is needed for this test: {e}"));
                TestBroker {
                    broker,
                    _guard: Guard::Redis { url, prefix },
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("queue.sqlite").display());
                let broker = queue::connect(&url, "unused", &config)
                    .await
                    .expect("SQLite queue opens");
                TestBroker {
                    broker,
                    _guard: Guard::Sqlite(dir),
                }
            }
        }
    }

    pub async fn open_default(self) -> TestBroker {
        self.open(BrokerConfig::default()).await
    }
}

/// Polls a task's record until `done` holds, failing with the last record after `limit`.
pub async fn wait_for(
    broker: &dyn Broker,
    id: &str,
    limit: Duration,
    done: impl Fn(&TaskRecord) -> bool,
) -> TaskRecord {
    let started = Instant::now();
    loop {
        let record = broker.get(id).await.expect("get works");
        if let Some(record) = &record {
            if done(record) {
                return record.clone();
            }
        }
        assert!(
            started.elapsed() < limit,
            "task {id} did not get there within {limit:?}; last record: {record:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A worker running in this process on the demo plugin, stopped when `stop` is called.
pub struct TestWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<WorkerReport>,
    _plugins: PluginsDir,
}

impl TestWorker {
    pub fn start(broker: Arc<dyn Broker>, config: WorkerConfig) -> Self {
        let plugins = PluginsDir::with_demo();
        let registry = Arc::new(
            PluginRegistry::open(plugins.path(), LoaderConfig::default()).expect("registry"),
        );
        Self::start_with(broker, registry, config, plugins)
    }

    pub fn start_with(
        broker: Arc<dyn Broker>,
        registry: Arc<PluginRegistry>,
        config: WorkerConfig,
        plugins: PluginsDir,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(Worker::new(broker, registry, config).run(async move {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            handle,
            _plugins: plugins,
        }
    }

    pub async fn stop(mut self) -> WorkerReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), &mut self.handle)
            .await
            .expect("worker stops within a minute")
            .expect("worker task did not panic")
    }
}

/// A worker config for tests: short lease, fast reclaim.
pub fn worker_config(queues: &[&str]) -> WorkerConfig {
    let mut config = WorkerConfig::new(queues.iter().map(|q| q.to_string()).collect());
    config.concurrency = 4;
    config.reclaim_every = Duration::from_millis(200);
    config.shutdown_grace = Duration::from_secs(10);
    config.time_limit_grace = Duration::from_millis(500);
    config
}

/// A record's history as (event, attempt) pairs, for comparing with an expected list.
pub fn event_attempts(record: &TaskRecord) -> Vec<(&str, u32)> {
    record
        .history
        .iter()
        .map(|h| (h.event.as_str(), h.attempt))
        .collect()
}
