//! The broker conformance suite: every test runs against Redis and against SQLite, and
//! both must behave the same. `conformance!` below instantiates each for both.

use std::{collections::HashSet, sync::Arc, time::Duration};

use serde_json::json;
use toolbox::queue::{
    Broker, BrokerConfig, Completion, LeaseStatus, LeaseUpdate, NewTask, Outcome, Progress,
    RevokeOutcome, TaskRecord, TaskState,
};

use crate::support::brokers::{event_attempts, wait_for, worker_config, Backend, TestWorker};

const WAIT: Duration = Duration::from_secs(20);

fn task(name: &str, queue: &str) -> NewTask {
    NewTask::new(name, queue, "null")
}

async fn enqueue_one(broker: &dyn Broker, task: NewTask) -> String {
    let out = broker.enqueue(vec![task]).await.expect("enqueue");
    out[0].id.clone()
}

fn done(lease: &toolbox::queue::Lease, outcome: Outcome) -> Completion {
    Completion {
        lease: lease.clone(),
        worker: "test".to_owned(),
        outcome,
    }
}

/// FIFO within a queue and priority band; higher priority first.
async fn ordering_and_priority(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(enqueue_one(b, task("background.noop", "q")).await);
    }
    let mut urgent = task("background.noop", "q");
    urgent.priority = 9;
    let urgent = enqueue_one(b, urgent).await;
    let mut lazy = task("background.noop", "q");
    lazy.priority = 0;
    let lazy = enqueue_one(b, lazy).await;

    let cycle = b.cycle("w1", &["q".into()], &[], 10).await.unwrap();
    let got: Vec<String> = cycle
        .deliveries
        .iter()
        .map(|d| d.lease.task_id.clone())
        .collect();
    let mut expected = vec![urgent];
    expected.extend(ids);
    expected.push(lazy);
    assert_eq!(got, expected);
    assert!(cycle
        .deliveries
        .iter()
        .all(|d| d.attempt == 1 && d.queue == "q"));
}

/// A cycle claims at most `want`, from the queues in the order given.
async fn several_queues_and_no_over_claim(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let a = enqueue_one(b, task("background.noop", "alpha")).await;
    let c = enqueue_one(b, task("background.noop", "gamma")).await;
    let other = enqueue_one(b, task("background.noop", "not-consumed")).await;

    let first = b
        .cycle("w", &["gamma".into(), "alpha".into()], &[], 1)
        .await
        .unwrap();
    assert_eq!(first.deliveries.len(), 1);
    assert_eq!(first.deliveries[0].lease.task_id, c);
    let second = b
        .cycle("w", &["gamma".into(), "alpha".into()], &[], 5)
        .await
        .unwrap();
    assert_eq!(
        second
            .deliveries
            .iter()
            .map(|d| &d.lease.task_id)
            .collect::<Vec<_>>(),
        vec![&a]
    );
    let none = b
        .cycle("w", &["gamma".into(), "alpha".into()], &[], 0)
        .await
        .unwrap();
    assert!(none.deliveries.is_empty());
    assert_eq!(
        b.get(&other).await.unwrap().unwrap().state,
        TaskState::Pending
    );

    let stats = b.queue_stats().await.unwrap();
    let of = |q: &str| stats.iter().find(|s| s.queue == q).cloned().unwrap();
    assert_eq!((of("alpha").in_flight, of("alpha").depth), (1, 0));
    assert_eq!(
        (of("not-consumed").in_flight, of("not-consumed").depth),
        (0, 1)
    );
}

/// A countdown keeps a task out of reach until it is due.
async fn countdown(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let mut delayed = task("background.noop", "q");
    delayed.delay = Some(Duration::from_millis(400));
    let id = enqueue_one(b, delayed).await;
    let record = b.get(&id).await.unwrap().unwrap();
    assert_eq!(record.state, TaskState::Pending);
    assert!(record.eta.is_some());

    let early = b.cycle("w", &["q".into()], &[], 1).await.unwrap();
    assert!(early.deliveries.is_empty());
    let due_in = early.next_due_in.expect("the delayed task's due time");
    assert!(
        (Duration::from_millis(250)..=Duration::from_millis(400)).contains(&due_in),
        "due in {due_in:?}"
    );
    assert_eq!(b.queue_stats().await.unwrap()[0].delayed, 1);

    tokio::time::sleep(Duration::from_millis(450)).await;
    let later = b.cycle("w", &["q".into()], &[], 1).await.unwrap();
    assert_eq!(later.deliveries.len(), 1);
    assert_eq!(later.deliveries[0].lease.task_id, id);
}

/// Completing twice, or with a lease that was taken over, changes nothing.
async fn idempotent_and_fenced_acks(backend: Backend) {
    let t = backend
        .open(BrokerConfig {
            lease: Duration::from_millis(300),
            ..BrokerConfig::default()
        })
        .await;
    let b = &*t.broker;
    let id = enqueue_one(b, task("background.noop", "q")).await;
    let first = b
        .cycle("w1", &["q".into()], &[], 1)
        .await
        .unwrap()
        .deliveries
        .remove(0);

    // The worker goes silent; its lease expires and the task is handed out again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let reclaimed = b.reclaim(Duration::from_millis(300), 5).await.unwrap();
    assert_eq!(reclaimed.requeued, vec![id.clone()]);
    let second = b
        .cycle("w2", &["q".into()], &[], 1)
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert_eq!(second.lease.task_id, id);
    assert_ne!(second.lease.token, first.lease.token);
    assert_eq!((second.attempt, second.lost), (2, 1));

    // The presumed-dead first worker reports late: refused, and told its lease is gone.
    let late = done(
        &first.lease,
        Outcome::Success {
            result: "\"stale\"".into(),
        },
    );
    let cycle = b.cycle("w1", &["q".into()], &[late], 0).await.unwrap();
    assert_eq!(cycle.applied, vec![false]);
    let status = b
        .extend(
            "w1",
            &[LeaseUpdate {
                lease: first.lease.clone(),
                progress: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(status, vec![LeaseStatus::Lost]);

    let ok = done(
        &second.lease,
        Outcome::Success {
            result: "\"fresh\"".into(),
        },
    );
    assert_eq!(
        b.cycle("w2", &[], std::slice::from_ref(&ok), 0)
            .await
            .unwrap()
            .applied,
        vec![true]
    );
    assert_eq!(
        b.cycle("w2", &[], &[ok], 0).await.unwrap().applied,
        vec![false]
    );
    // A finished attempt's lease cannot be renewed either.
    let status = b
        .extend(
            "w2",
            &[LeaseUpdate {
                lease: second.lease.clone(),
                progress: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(status, vec![LeaseStatus::Lost]);

    let record = b.get(&id).await.unwrap().unwrap();
    assert_eq!(record.state, TaskState::Success);
    assert_eq!(record.result.as_deref(), Some("\"fresh\""));
    assert_eq!((record.attempts, record.retries, record.lost), (2, 0, 1));
    let events: Vec<&str> = record.history.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(events, ["started", "lease_expired", "started", "succeeded"]);
}

/// A task whose deliveries keep ending without an outcome goes to the dead-letter set.
async fn dead_letter_after_lost_deliveries(backend: Backend) {
    let lease = Duration::from_millis(200);
    let t = backend
        .open(BrokerConfig {
            lease,
            ..BrokerConfig::default()
        })
        .await;
    let b = &*t.broker;
    let id = enqueue_one(b, task("background.noop", "q")).await;
    for round in 1..=3 {
        let got = b.cycle("doomed", &["q".into()], &[], 1).await.unwrap();
        assert_eq!(got.deliveries.len(), 1, "round {round}");
        tokio::time::sleep(lease * 3).await;
        let report = b.reclaim(lease, 3).await.unwrap();
        if round < 3 {
            assert_eq!(report.requeued, vec![id.clone()], "round {round}");
        } else {
            assert_eq!(report.dead_lettered, vec![id.clone()], "round {round}");
        }
    }
    let record = b.get(&id).await.unwrap().unwrap();
    assert_eq!(record.state, TaskState::Failure);
    assert!(record.dead_lettered);
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("lost its worker 3 times"),
        "{record:?}"
    );
    let events = event_attempts(&record);
    assert_eq!(
        events,
        [
            ("started", 1),
            ("lease_expired", 1),
            ("started", 2),
            ("lease_expired", 2),
            ("started", 3),
            ("lease_expired", 3),
            ("dead_lettered", 3)
        ],
        "{record:#?}"
    );
    assert!(record
        .history
        .iter()
        .filter(|h| h.event == "started")
        .all(|h| h.worker.as_deref() == Some("doomed")));
    assert!(b
        .cycle("w", &["q".into()], &[], 1)
        .await
        .unwrap()
        .deliveries
        .is_empty());
    let dead = b.dead_letters(10).await.unwrap();
    assert_eq!(
        dead.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![id]
    );
    assert_eq!(b.queue_stats().await.unwrap()[0].dead_lettered, 1);
}

/// Revoking a waiting task means it never starts; revoking a running one asks it to stop.
async fn revoke(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let mut waiting = task("background.noop", "q");
    waiting.delay = Some(Duration::from_millis(100));
    let waiting = enqueue_one(b, waiting).await;
    let ready = enqueue_one(b, task("background.noop", "q")).await;
    let running = enqueue_one(b, task("background.noop", "r")).await;
    let delivered = b
        .cycle("w", &["r".into()], &[], 1)
        .await
        .unwrap()
        .deliveries
        .remove(0);

    assert_eq!(b.revoke(&waiting).await.unwrap(), RevokeOutcome::Revoked);
    assert_eq!(b.revoke(&ready).await.unwrap(), RevokeOutcome::Revoked);
    assert_eq!(b.revoke(&running).await.unwrap(), RevokeOutcome::Requested);
    assert_eq!(
        b.revoke("00000000-0000-0000-0000-000000000000")
            .await
            .unwrap(),
        RevokeOutcome::NotFound
    );

    tokio::time::sleep(Duration::from_millis(150)).await;
    let cycle = b.cycle("w", &["q".into()], &[], 5).await.unwrap();
    assert!(cycle.deliveries.is_empty(), "a revoked task was delivered");
    for id in [&waiting, &ready] {
        assert_eq!(b.get(id).await.unwrap().unwrap().state, TaskState::Revoked);
    }

    let status = b
        .extend(
            "w",
            &[LeaseUpdate {
                lease: delivered.lease.clone(),
                progress: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(status, vec![LeaseStatus::RevokeRequested]);
    let stopped = done(&delivered.lease, Outcome::Revoked);
    assert_eq!(
        b.cycle("w", &[], &[stopped], 0).await.unwrap().applied,
        vec![true]
    );
    assert_eq!(
        b.get(&running).await.unwrap().unwrap().state,
        TaskState::Revoked
    );
    assert_eq!(
        b.revoke(&running).await.unwrap(),
        RevokeOutcome::AlreadyFinished(TaskState::Revoked)
    );
}

/// A revoke asked for while a task runs wins over the retry its run asks for; the same
/// task id enqueued again never resets the task.
async fn revoke_beats_retry_and_ids_are_never_reset(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let first = task("background.fail", "q");
    let id = enqueue_one(b, first.clone()).await;
    let d = b
        .cycle("w", &["q".into()], &[], 1)
        .await
        .unwrap()
        .deliveries
        .remove(0);
    assert_eq!(b.revoke(&id).await.unwrap(), RevokeOutcome::Requested);
    let again = b.enqueue(vec![first]).await.unwrap();
    assert!(!again[0].created, "the same id was enqueued twice");
    assert_eq!(b.get(&id).await.unwrap().unwrap().state, TaskState::Started);
    let retry = done(
        &d.lease,
        Outcome::Retry {
            error: "flaky".into(),
            delay: Duration::from_millis(1),
        },
    );
    assert_eq!(
        b.cycle("w", &[], &[retry], 0).await.unwrap().applied,
        vec![true]
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(b
        .cycle("w", &["q".into()], &[], 5)
        .await
        .unwrap()
        .deliveries
        .is_empty());
    assert_eq!(b.get(&id).await.unwrap().unwrap().state, TaskState::Revoked);
}

/// A worker busy with a stream of short tasks still renews the lease of its long one.
async fn leases_are_renewed_under_load(backend: Backend) {
    let t = backend
        .open(BrokerConfig {
            lease: Duration::from_millis(600),
            ..BrokerConfig::default()
        })
        .await;
    let b = &*t.broker;
    let mut config = worker_config(&["q"]);
    config.concurrency = 2;
    config.lease = Duration::from_millis(600);
    let worker = TestWorker::start(Arc::clone(&t.broker), config);
    let long = enqueue_one(
        b,
        NewTask::new("background.sleep", "q", json!({"ms": 2500}).to_string()),
    )
    .await;
    let feeder = {
        let broker = Arc::clone(&t.broker);
        tokio::spawn(async move {
            for round in 0..250 {
                let tasks = (0..4)
                    .map(|_| NewTask::new("background.noop", "q", "null"))
                    .collect();
                broker.enqueue(tasks).await.unwrap();
                // Another worker's reclaim, which takes over any lease left to lapse.
                if round % 10 == 0 {
                    broker.reclaim(Duration::from_millis(600), 5).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let record = wait_for(b, &long, WAIT, |r| r.state.is_ready()).await;
    feeder.await.unwrap();
    worker.stop().await;
    assert_eq!(record.state, TaskState::Success, "{record:#?}");
    assert_eq!(
        (record.attempts, record.lost),
        (1, 0),
        "the long task's lease lapsed: {record:#?}"
    );
}

/// A worker that does not know a task releases it with a delay, and a worker that knows
/// it runs it.
async fn a_released_task_reaches_a_worker_that_knows_it(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let empty = crate::support::PluginsDir::new();
    let registry = Arc::new(
        toolbox::plugins::PluginRegistry::open(
            empty.path(),
            toolbox::plugins::LoaderConfig::default(),
        )
        .unwrap(),
    );
    let ignorant = TestWorker::start_with(
        Arc::clone(&t.broker),
        registry,
        worker_config(&["q"]),
        empty,
    );
    let id = enqueue_one(b, NewTask::new("background.echo", "q", "7".to_owned())).await;
    let released = wait_for(b, &id, WAIT, |r| r.lost >= 1).await;
    assert_eq!(released.state, TaskState::Pending);
    assert!(
        released.eta.is_some(),
        "a released task waits before it is handed out again"
    );
    // Stopped here so the test is deterministic: while both run, each release is a race
    // the ignorant worker may win again (see the README on unknown tasks).
    ignorant.stop().await;
    let knowing = TestWorker::start(Arc::clone(&t.broker), worker_config(&["q"]));
    let record = wait_for(b, &id, WAIT, |r| r.state.is_ready()).await;
    knowing.stop().await;
    assert_eq!(
        (record.state, record.result.as_deref()),
        (TaskState::Success, Some("7")),
        "{record:#?}"
    );
    assert!(!record.dead_lettered);
}

/// A task claimed ahead and handed back unstarted is neither an attempt nor a lost
/// delivery; a stale hand-back changes nothing; a revoke wins over it.
async fn a_returned_task_is_neither_an_attempt_nor_lost(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let kept = enqueue_one(b, task("background.noop", "q")).await;
    let returned = enqueue_one(b, task("background.noop", "q")).await;
    let revoked = enqueue_one(b, task("background.noop", "q")).await;
    let first = b.cycle("w1", &["q".into()], &[], 3).await.unwrap();
    assert_eq!(first.deliveries.len(), 3);
    let lease = |id: &str| {
        first
            .deliveries
            .iter()
            .find(|d| d.lease.task_id == id)
            .unwrap()
            .lease
            .clone()
    };
    assert_eq!(b.revoke(&revoked).await.unwrap(), RevokeOutcome::Requested);
    let give_back = |id: &str| {
        done(
            &lease(id),
            Outcome::Return {
                reason: "slots busy".into(),
            },
        )
    };
    let sent = vec![
        done(
            &lease(&kept),
            Outcome::Success {
                result: "null".into(),
            },
        ),
        give_back(&returned),
        give_back(&revoked),
    ];
    let cycle = b.cycle("w1", &["q".into()], &sent, 0).await.unwrap();
    assert_eq!(cycle.applied, vec![true, true, true]);

    let record = b.get(&returned).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.attempts, record.lost, record.retries),
        (TaskState::Pending, 0, 0, 0),
        "{record:#?}"
    );
    // The claim that never started leaves no 'started' event.
    let events: Vec<&str> = record.history.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(events, ["returned"], "{record:#?}");
    assert_eq!(record.started_at, None);
    // Revoked while it waited in the worker: it never ran, so no attempt either.
    let revoked_record = b.get(&revoked).await.unwrap().unwrap();
    assert_eq!(
        (revoked_record.state, revoked_record.attempts),
        (TaskState::Revoked, 0)
    );
    let events: Vec<(&str, Option<&str>)> = revoked_record
        .history
        .iter()
        .map(|h| (h.event.as_str(), h.detail.as_deref()))
        .collect();
    assert_eq!(
        events,
        [("revoked", Some("revoked before it started"))],
        "{revoked_record:#?}"
    );
    let kept_record = b.get(&kept).await.unwrap().unwrap();
    let events = event_attempts(&kept_record);
    assert_eq!(events, [("started", 1), ("succeeded", 1)]);
    assert_eq!(kept_record.history[0].worker.as_deref(), Some("w1"));

    // Back in its queue at once, for any worker; its next run is attempt 1.
    let again = b.cycle("w2", &["q".into()], &[], 5).await.unwrap();
    let ids: Vec<&str> = again
        .deliveries
        .iter()
        .map(|d| d.lease.task_id.as_str())
        .collect();
    assert_eq!(ids, vec![returned.as_str()]);
    assert_eq!(again.deliveries[0].attempt, 1);
    // The first claim's lease is stale now: handing it back again changes nothing.
    let stale = b
        .cycle("w1", &["q".into()], &[give_back(&returned)], 0)
        .await
        .unwrap();
    assert_eq!(stale.applied, vec![false]);
    let record = b.get(&returned).await.unwrap().unwrap();
    assert_eq!(record.state, TaskState::Started);
    let events = event_attempts(&record);
    assert_eq!(events, [("returned", 0), ("started", 1)], "{record:#?}");
}

/// A worker that claims ahead (its recent runs were short) hands what waits behind an
/// unexpectedly slow run back to the queue, where an idle worker takes it: the short
/// tasks finish long before the slow one, each run once.
async fn nothing_waits_behind_a_slow_run(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let mut config = worker_config(&["q"]);
    config.concurrency = 1;
    let first = TestWorker::start(Arc::clone(&t.broker), config.clone());
    let mut config = config;
    // A full sample of short runs: the first worker may now claim ahead.
    let warm: Vec<NewTask> = (0..40).map(|_| task("background.noop", "q")).collect();
    let warm = b.enqueue(warm).await.unwrap();
    for id in &warm {
        wait_for(b, &id.id, WAIT, |r| r.state.is_ready()).await;
    }
    // One slow task first (priority), then short ones, all due at the same moment.
    let mut slow = NewTask::new("background.sleep", "q", json!({"ms": 3000}).to_string());
    slow.priority = 9;
    let mut batch = vec![slow];
    batch.extend((0..5).map(|_| task("background.noop", "q")));
    for t in &mut batch {
        t.delay = Some(Duration::from_millis(300));
    }
    let ids: Vec<String> = b
        .enqueue(batch)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    config.name = format!("{}-second", config.name);
    let second = TestWorker::start(Arc::clone(&t.broker), config);
    let started = std::time::Instant::now();
    for id in &ids[1..] {
        let record = wait_for(b, id, WAIT, |r| r.state.is_ready()).await;
        assert_eq!(
            (record.state, record.attempts, record.lost),
            (TaskState::Success, 1, 0),
            "{record:#?}"
        );
    }
    let short_done = started.elapsed();
    let slow = wait_for(b, &ids[0], WAIT, |r| r.state.is_ready()).await;
    assert_eq!(slow.state, TaskState::Success);
    assert!(
        short_done < Duration::from_millis(2500),
        "the short tasks waited {short_done:?} behind the slow one"
    );
    first.stop().await;
    second.stop().await;
}

/// A schedule's tick fires once, however many schedulers try it; the last tick fired and
/// its task are remembered.
async fn scheduler_ticks_fire_once(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let tick = 1_800_000_000_000;
    let first = b
        .fire("nightly", tick, task("background.noop", "cronjobs"))
        .await
        .unwrap();
    let first = first.expect("the first scheduler fires the tick");
    for _ in 0..3 {
        assert_eq!(
            b.fire("nightly", tick, task("background.noop", "cronjobs"))
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        b.fire("nightly", tick - 1000, task("background.noop", "cronjobs"))
            .await
            .unwrap(),
        None
    );
    assert!(b
        .fire("other", tick, task("background.noop", "cronjobs"))
        .await
        .unwrap()
        .is_some());
    let later = b
        .fire("nightly", tick + 1000, task("background.noop", "cronjobs"))
        .await
        .unwrap()
        .unwrap();
    let last = b
        .last_fired(&["nightly".into(), "never".into()])
        .await
        .unwrap();
    assert_eq!(last, vec![Some((tick + 1000, later.id.clone())), None]);
    let delivered = b
        .cycle("w", &["cronjobs".into()], &[], 10)
        .await
        .unwrap()
        .deliveries;
    let ids: Vec<&str> = delivered.iter().map(|d| d.lease.task_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&first.id.as_str()) && ids.contains(&later.id.as_str()));
}

/// Finished records expire after the result TTL; an idempotency key maps to one task.
async fn result_expiry_and_idempotency(backend: Backend) {
    let t = backend
        .open(BrokerConfig {
            result_ttl: Duration::from_millis(500),
            ..BrokerConfig::default()
        })
        .await;
    let b = &*t.broker;
    let mut first = task("background.noop", "q");
    first.idempotency_key = Some("order-42".into());
    let mut again = task("background.noop", "q");
    again.idempotency_key = Some("order-42".into());
    let out = b.enqueue(vec![first.clone(), again]).await.unwrap();
    assert!(out[0].created && !out[1].created);
    assert_eq!(out[0].id, out[1].id);
    assert_eq!(out[0].id, first.id);

    let delivered = b
        .cycle("w", &["q".into()], &[], 5)
        .await
        .unwrap()
        .deliveries;
    assert_eq!(delivered.len(), 1, "the duplicate was enqueued");
    let ok = done(&delivered[0].lease, Outcome::Success { result: "1".into() });
    b.cycle("w", &[], &[ok], 0).await.unwrap();
    assert_eq!(
        b.get(&first.id).await.unwrap().unwrap().state,
        TaskState::Success
    );

    tokio::time::sleep(Duration::from_millis(800)).await;
    b.reclaim(Duration::from_secs(30), 5).await.unwrap();
    assert_eq!(
        b.get(&first.id).await.unwrap(),
        None,
        "the record outlived its TTL"
    );
}

/// Progress reported while running is stored with the lease renewal.
async fn progress_is_recorded(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let id = enqueue_one(b, task("background.progress", "q")).await;
    let d = b
        .cycle("w", &["q".into()], &[], 1)
        .await
        .unwrap()
        .deliveries
        .remove(0);
    let progress = Progress {
        done: 2,
        total: 5,
        message: "step 2".into(),
    };
    let status = b
        .extend(
            "w",
            &[LeaseUpdate {
                lease: d.lease.clone(),
                progress: Some(progress.clone()),
            }],
        )
        .await
        .unwrap();
    assert_eq!(status, vec![LeaseStatus::Held]);
    let record = b.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.progress),
        (TaskState::Started, Some(progress))
    );
    assert_eq!(record.worker.as_deref(), Some("w"));
    assert!(record.started_at.is_some());
}

/// Many producers and consumers at once: every task is done exactly once.
async fn many_producers_and_consumers(backend: Backend) {
    let t = backend.open_default().await;
    let broker = Arc::clone(&t.broker);
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for batch in 0..10 {
                    let tasks: Vec<NewTask> = (0..25)
                        .map(|i| {
                            NewTask::new("background.echo", "q", json!([p, batch, i]).to_string())
                        })
                        .collect();
                    ids.extend(
                        broker
                            .enqueue(tasks)
                            .await
                            .unwrap()
                            .into_iter()
                            .map(|e| e.id),
                    );
                }
                ids
            })
        })
        .collect();
    let consumers: Vec<_> = (0..4)
        .map(|c| {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                let name = format!("consumer-{c}");
                let mut seen = Vec::new();
                let mut pending = Vec::new();
                let mut idle = 0;
                while idle < 50 {
                    let cycle = broker
                        .cycle(&name, &["q".into()], &std::mem::take(&mut pending), 7)
                        .await
                        .unwrap();
                    assert!(cycle.applied.iter().all(|a| *a));
                    if cycle.deliveries.is_empty() {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    } else {
                        idle = 0;
                    }
                    for d in cycle.deliveries {
                        seen.push(d.lease.task_id.clone());
                        pending.push(Completion {
                            lease: d.lease,
                            worker: name.clone(),
                            outcome: Outcome::Success { result: d.args },
                        });
                    }
                }
                broker.cycle(&name, &[], &pending, 0).await.unwrap();
                seen
            })
        })
        .collect();
    let mut produced = HashSet::new();
    for p in producers {
        produced.extend(p.await.unwrap());
    }
    let mut consumed = Vec::new();
    for c in consumers {
        consumed.extend(c.await.unwrap());
    }
    assert_eq!(produced.len(), 1000);
    assert_eq!(
        consumed.len(),
        1000,
        "some task was delivered twice or never"
    );
    assert_eq!(consumed.iter().cloned().collect::<HashSet<_>>(), produced);
    for id in produced.iter().take(20) {
        assert_eq!(
            broker.get(id).await.unwrap().unwrap().state,
            TaskState::Success
        );
    }
}

/// The worker's retry policy: a retryable failure runs again with backoff, up to the
/// task's `max_retries`, and then fails for good.
async fn worker_retries_with_backoff(backend: Backend) {
    let t = backend.open_default().await;
    let worker = TestWorker::start(Arc::clone(&t.broker), worker_config(&["q"]));
    let id = enqueue_one(
        &*t.broker,
        NewTask::new(
            "background.fail",
            "q",
            json!({"retry": true, "message": "flaky"}).to_string(),
        ),
    )
    .await;
    let record = wait_for(&*t.broker, &id, WAIT, |r| r.state.is_ready()).await;
    worker.stop().await;
    assert_eq!(record.state, TaskState::Failure);
    assert_eq!(
        record.error.as_deref(),
        Some("flaky (gave up after 2 retries)")
    );
    assert_eq!((record.attempts, record.retries, record.lost), (3, 2, 0));
    let events: Vec<&str> = record.history.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(
        events,
        ["started", "retry", "started", "retry", "started", "failed"]
    );
    // The backoff (100 ms, then about 200 ms, with jitter) separates the attempts.
    let starts: Vec<i64> = record
        .history
        .iter()
        .filter(|h| h.event == "started")
        .map(|h| h.at)
        .collect();
    assert!(
        starts[1] - starts[0] >= 50 && starts[2] - starts[1] >= 100,
        "{starts:?}"
    );
}

/// The worker runs tasks to SUCCESS and FAILURE, a panic included, and revokes running ones.
async fn worker_outcomes_and_revoke(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let worker = TestWorker::start(Arc::clone(&t.broker), worker_config(&["q"]));
    let echo = enqueue_one(
        b,
        NewTask::new("background.echo", "q", json!({"x": 1}).to_string()),
    )
    .await;
    let panic = enqueue_one(
        b,
        NewTask::new(
            "background.panic",
            "q",
            json!({"message": "ouch"}).to_string(),
        ),
    )
    .await;
    let sleep = enqueue_one(
        b,
        NewTask::new("background.sleep", "q", json!({"ms": 60_000}).to_string()),
    )
    .await;

    let echo = wait_for(b, &echo, WAIT, |r| r.state.is_ready()).await;
    assert_eq!(
        (echo.state, echo.result.as_deref()),
        (TaskState::Success, Some(r#"{"x":1}"#))
    );
    let panic = wait_for(b, &panic, WAIT, |r| r.state.is_ready()).await;
    assert_eq!(panic.state, TaskState::Failure);
    assert!(
        panic.error.as_deref().unwrap().contains("ouch"),
        "{panic:?}"
    );
    let events = |r: &TaskRecord| -> Vec<(String, u32, Option<String>)> {
        r.history
            .iter()
            .map(|h| (h.event.clone(), h.attempt, h.detail.clone()))
            .collect()
    };
    assert_eq!(
        events(&echo),
        [("started".into(), 1, None), ("succeeded".into(), 1, None)]
    );
    assert_eq!(
        events(&panic),
        [
            ("started".into(), 1, None),
            ("failed".into(), 1, panic.error.clone())
        ]
    );
    assert!(echo.history[0].at <= echo.history[1].at);
    assert_eq!(echo.history[0].at, echo.started_at.unwrap());
    assert_eq!(echo.history[1].at, echo.finished_at.unwrap());

    wait_for(b, &sleep, WAIT, |r| r.state == TaskState::Started).await;
    assert_eq!(b.revoke(&sleep).await.unwrap(), RevokeOutcome::Requested);
    let revoked = wait_for(b, &sleep, WAIT, |r| r.state.is_ready()).await;
    assert_eq!(revoked.state, TaskState::Revoked);
    let names: Vec<&str> = revoked.history.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(names, ["started", "revoked"], "{revoked:#?}");
    let report = worker.stop().await;
    assert_eq!(report.completed, 3);
}

/// A time limit cancels the run; a run that ignores cancellation is failed after the
/// grace period and its slot given back.
async fn worker_time_limits(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let mut config = worker_config(&["q"]);
    config.concurrency = 1;
    config.heartbeat_every = Duration::from_millis(100);
    let worker = TestWorker::start(Arc::clone(&t.broker), config);
    let obeys = enqueue_one(
        b,
        NewTask::new("background.limited", "q", json!({"ms": 10_000}).to_string()),
    )
    .await;
    let stubborn = enqueue_one(
        b,
        NewTask::new(
            "background.limited",
            "q",
            json!({"ms": 3_000, "obey": false}).to_string(),
        ),
    )
    .await;
    let after = enqueue_one(b, NewTask::new("background.noop", "q", "null".to_owned())).await;

    for id in [&obeys, &stubborn] {
        let record = wait_for(b, id, WAIT, |r| r.state.is_ready()).await;
        assert_eq!(record.state, TaskState::Failure);
        assert!(
            record
                .error
                .as_deref()
                .unwrap()
                .contains("time limit exceeded"),
            "{record:?}"
        );
    }
    // With one slot, the noop can only run because the stubborn run's slot was given back
    // after the 500 ms grace, long before its thread finishes its 3 s.
    let after = wait_for(b, &after, Duration::from_secs(2), |r| r.state.is_ready()).await;
    assert_eq!(after.state, TaskState::Success);
    // The stubborn run's thread is counted while it holds on, and no longer once its
    // 3 s are over (its thread then ends: a new one has had its slot since).
    let stuck = || async {
        b.workers()
            .await
            .unwrap()
            .first()
            .map_or(usize::MAX, |w| w.stuck_threads)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let now = stuck().await;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        if now == 0 && seen.contains(&1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck threads seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.stop().await;
}

/// A task this worker does not know goes back to the queue, and after the delivery
/// limit to the dead-letter set with a reason naming the task and the worker.
async fn unknown_task_is_released_then_dead_lettered(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let mut config = worker_config(&["q"]);
    config.max_lost = 3;
    let name = config.name.clone();
    let worker = TestWorker::start(Arc::clone(&t.broker), config);
    let id = enqueue_one(b, NewTask::new("toolbox.not_here", "q", "null".to_owned())).await;
    let record = wait_for(b, &id, WAIT, |r| r.state.is_ready()).await;
    worker.stop().await;
    assert!(record.dead_lettered, "{record:?}");
    let error = record.error.unwrap();
    assert!(
        error.contains("toolbox.not_here") && error.contains(&name),
        "{error}"
    );
    assert_eq!(record.lost, 3);
    assert_eq!(
        record
            .history
            .iter()
            .filter(|h| h.event == "released")
            .count(),
        2
    );
}

/// A worker stopped while a run is in flight lets it finish and reports it.
async fn worker_shutdown_finishes_runs_in_flight(backend: Backend) {
    let t = backend.open_default().await;
    let b = &*t.broker;
    let worker = TestWorker::start(Arc::clone(&t.broker), worker_config(&["q"]));
    let id = enqueue_one(
        b,
        NewTask::new("background.sleep", "q", json!({"ms": 400}).to_string()),
    )
    .await;
    wait_for(b, &id, WAIT, |r| r.state == TaskState::Started).await;
    let report = worker.stop().await;
    assert_eq!((report.completed, report.abandoned), (1, 0));
    assert_eq!(b.get(&id).await.unwrap().unwrap().state, TaskState::Success);
}

macro_rules! conformance {
    ($($test:ident),+ $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::support::brokers::Backend::Redis).await
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(crate::support::brokers::Backend::Sqlite).await
                }
            )+
        }
    };
}

conformance!(
    ordering_and_priority,
    several_queues_and_no_over_claim,
    countdown,
    idempotent_and_fenced_acks,
    dead_letter_after_lost_deliveries,
    revoke,
    result_expiry_and_idempotency,
    progress_is_recorded,
    many_producers_and_consumers,
    worker_retries_with_backoff,
    worker_outcomes_and_revoke,
    worker_time_limits,
    unknown_task_is_released_then_dead_lettered,
    worker_shutdown_finishes_runs_in_flight,
    revoke_beats_retry_and_ids_are_never_reset,
    leases_are_renewed_under_load,
    a_released_task_reaches_a_worker_that_knows_it,
    scheduler_ticks_fire_once,
    a_returned_task_is_neither_an_attempt_nor_lost,
    nothing_waits_behind_a_slow_run,
);
