//! Fault tests on the real binary: workers killed, tasks that kill their worker, Redis
//! restarted under load, and many tasks through several worker processes. Each test
//! uses its own Redis key prefix (or its own redis-server).

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::json;
use toolbox::queue::{self, Broker, BrokerConfig, NewTask, TaskState};

use crate::support::{
    brokers::{delete_prefix, redis_url, unique_prefix, wait_for},
    processes::{PrivateRedis, WorkerProcess},
    PluginsDir,
};

struct Setup {
    plugins: PluginsDir,
    logs: tempfile::TempDir,
    url: String,
    prefix: String,
    broker: std::sync::Arc<dyn Broker>,
}

impl Setup {
    async fn new(url: String, lease: Duration) -> Self {
        let prefix = unique_prefix();
        let config = BrokerConfig {
            lease,
            ..BrokerConfig::default()
        };
        let broker = queue::connect(&url, &prefix, &config)
            .await
            .expect("Redis is needed for this test");
        Self {
            plugins: PluginsDir::with_demo(),
            logs: tempfile::tempdir().unwrap(),
            url,
            prefix,
            broker,
        }
    }

    fn worker(&self, name: &str, extra: &[&str]) -> WorkerProcess {
        WorkerProcess::start(
            self.plugins.path(),
            &self.url,
            &self.prefix,
            self.logs.path(),
            name,
            extra,
        )
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        delete_prefix(&self.url, &self.prefix);
    }
}

/// A worker killed with SIGKILL in the middle of a long task: another worker finishes
/// it after the lease expires; the record shows both attempts, and the lost one did not
/// use up a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_task() {
    let s = Setup::new(redis_url(), Duration::from_secs(1)).await;
    let mut first = s.worker(
        "first",
        &["--queues", "q", "--lease-secs", "1", "--concurrency", "1"],
    );
    let id = s
        .broker
        .enqueue(vec![NewTask::new(
            "background.sleep",
            "q",
            json!({"ms": 1500}).to_string(),
        )])
        .await
        .unwrap()[0]
        .id
        .clone();
    let started = wait_for(&*s.broker, &id, Duration::from_secs(20), |r| {
        r.state == TaskState::Started
    })
    .await;
    let first_name = started.worker.clone().unwrap();
    assert!(
        first_name.contains(&format!("-{}-", first.pid())),
        "{first_name}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.kill();

    let second = s.worker(
        "second",
        &["--queues", "q", "--lease-secs", "1", "--concurrency", "1"],
    );
    let record = wait_for(&*s.broker, &id, Duration::from_secs(30), |r| {
        r.state.is_ready()
    })
    .await;
    assert_eq!(
        record.state,
        TaskState::Success,
        "{record:#?}\n{}",
        second.log_tail()
    );
    assert_eq!(
        (record.attempts, record.retries, record.lost),
        (2, 0, 1),
        "{record:#?}"
    );
    let expired = record
        .history
        .iter()
        .find(|h| h.event == "lease_expired")
        .expect("a lease_expired event");
    assert_eq!(expired.worker.as_deref(), Some(first_name.as_str()));
    assert_ne!(record.worker.as_deref(), Some(first_name.as_str()));
}

/// A task that aborts its worker process on every delivery is dead-lettered after the
/// delivery limit, while the workers (restarted like a supervisor would) serve the rest.
/// One slot per worker: a crash also loses the runs beside it in the same process, and
/// an innocent task that shared the poison's worker on every delivery would be
/// dead-lettered with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_kills_its_worker_is_dead_lettered() {
    let s = Setup::new(redis_url(), Duration::from_secs(1)).await;
    let flags = [
        "--queues",
        "q",
        "--lease-secs",
        "1",
        "--max-deliveries",
        "3",
        "--concurrency",
        "1",
    ];
    let poison = s
        .broker
        .enqueue(vec![NewTask::new("background.abort", "q", "null")])
        .await
        .unwrap()[0]
        .id
        .clone();
    let tasks: Vec<NewTask> = (0..40)
        .map(|i| NewTask::new("background.echo", "q", json!(i).to_string()))
        .collect();
    let ids: Vec<String> = s
        .broker
        .enqueue(tasks)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();

    let mut workers: Vec<WorkerProcess> =
        (0..2).map(|i| s.worker(&format!("w{i}"), &flags)).collect();
    let mut restarts = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let record = s.broker.get(&poison).await.unwrap().unwrap();
        let all_done = {
            let mut done = true;
            for id in &ids {
                done &= s
                    .broker
                    .get(id)
                    .await
                    .unwrap()
                    .is_some_and(|r| r.state == TaskState::Success);
            }
            done
        };
        if record.state.is_ready() && all_done {
            break;
        }
        assert!(Instant::now() < deadline, "not done in time: {record:#?}");
        for (i, worker) in workers.iter_mut().enumerate() {
            if worker.exited() {
                restarts += 1;
                *worker = s.worker(&format!("w{i}-{restarts}"), &flags);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = s.broker.get(&poison).await.unwrap().unwrap();
    assert!(record.dead_lettered, "{record:#?}");
    assert_eq!(record.lost, 3);
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("lost its worker 3 times"),
        "{record:#?}"
    );
    assert!(restarts >= 3, "the poison task killed {restarts} workers");
    let stats = s.broker.queue_stats().await.unwrap();
    assert_eq!(stats[0].dead_lettered, 1);
}

/// Redis killed and restarted under load: producers see errors and retry, workers
/// reconnect, and every task a producer saw accepted completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_loses_nothing_accepted() {
    let mut redis = PrivateRedis::start();
    let s = Setup::new(redis.url(), Duration::from_secs(5)).await;
    let _workers: Vec<WorkerProcess> = (0..2)
        .map(|i| s.worker(&format!("w{i}"), &["--queues", "q", "--lease-secs", "5"]))
        .collect();

    let broker = std::sync::Arc::clone(&s.broker);
    let producer = tokio::spawn(async move {
        let mut accepted = Vec::new();
        let mut errors = 0;
        for batch in 0..100 {
            let tasks: Vec<NewTask> = (0..20)
                .map(|i| NewTask::new("background.echo", "q", json!([batch, i]).to_string()))
                .collect();
            loop {
                match broker.enqueue(tasks.clone()).await {
                    Ok(out) => {
                        accepted.extend(out.into_iter().map(|e| e.id));
                        break;
                    }
                    Err(error) => {
                        assert!(error.is_unavailable(), "not an availability error: {error}");
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (accepted, errors)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart(Duration::from_millis(800));
    let (accepted, errors) = producer.await.unwrap();
    assert_eq!(accepted.len(), 2000);
    assert!(
        errors > 0,
        "the producer never saw Redis down; the test proved nothing"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &accepted {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let record = wait_for(&*s.broker, id, remaining, |r| r.state.is_ready()).await;
        assert_eq!(record.state, TaskState::Success, "{record:#?}");
    }
}

/// 10,000 tasks through 3 worker processes: each runs exactly once, with its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_through_three_workers() {
    let s = Setup::new(redis_url(), Duration::from_secs(30)).await;
    let mut ids = Vec::new();
    for chunk in 0..20 {
        let tasks: Vec<NewTask> = (0..500)
            .map(|i| NewTask::new("background.echo", "q", json!(chunk * 500 + i).to_string()))
            .collect();
        ids.extend(
            s.broker
                .enqueue(tasks)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.id),
        );
    }
    let mut workers: Vec<WorkerProcess> = (0..3)
        .map(|i| s.worker(&format!("w{i}"), &["--queues", "q"]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen_workers = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let record = wait_for(&*s.broker, id, remaining, |r| r.state.is_ready()).await;
        assert_eq!(record.state, TaskState::Success);
        assert_eq!(record.result.as_deref(), Some(i.to_string().as_str()));
        assert_eq!(
            record.attempts, 1,
            "task {id} ran more than once: {record:#?}"
        );
        assert_eq!(
            record
                .history
                .iter()
                .filter(|h| h.event == "started")
                .count(),
            1
        );
        seen_workers.insert(record.worker.unwrap());
    }
    assert_eq!(
        seen_workers.len(),
        3,
        "not every worker took part: {seen_workers:?}"
    );
    let stats = s.broker.queue_stats().await.unwrap();
    assert_eq!((stats[0].depth, stats[0].in_flight), (0, 0));
    for worker in &mut workers {
        let status = worker
            .terminate(Duration::from_secs(20))
            .expect("worker exits on SIGTERM");
        assert!(status.success(), "{status:?}\n{}", worker.log_tail());
    }
}

/// `toolbox serve` on the embedded SQLite queue, killed with SIGKILL and started again:
/// every accepted task completes, the one running at the kill after its lease expires.
#[test]
fn a_killed_serve_loses_no_accepted_task() {
    use crate::support::{
        http::{get, post},
        processes::ServerProcess,
    };
    let plugins = PluginsDir::with_demo();
    let data = tempfile::tempdir().unwrap();
    let broker = format!("sqlite://{}", data.path().join("queue.sqlite").display());
    let flags = ["--broker", broker.as_str(), "--lease-secs", "2"];
    let server = ServerProcess::start("serve", plugins.path(), &flags);
    let running = post(&server.url("/tasks/execute/sleep"), r#"{"ms": 3000}"#, &[]).json()
        ["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut accepted = vec![running.clone()];
    for i in 0..100 {
        let reply = post(
            &server.url("/tasks/execute/echo?countdown=1"),
            &i.to_string(),
            &[],
        );
        assert_eq!(reply.status, 202, "{}", reply.text);
        accepted.push(reply.json()["task_id"].as_str().unwrap().to_owned());
    }
    let started = Instant::now();
    while get(&server.url(&format!("/tasks/status/{running}"))).json()["status"] != "STARTED" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the sleep never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(server); // SIGKILL

    let server = ServerProcess::start("serve", plugins.path(), &flags);
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &accepted {
        loop {
            let body = get(&server.url(&format!("/tasks/status/{id}"))).json();
            if body["ready"] == true {
                assert_eq!(body["status"], "SUCCESS", "{body:#}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} lost after the restart: {body:#}\n{}",
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let sleep = get(&server.url(&format!("/tasks/status/{running}"))).json();
    assert_eq!(sleep["attempts"], 2, "{sleep:#}");
}
