//! The Redis task record's layout: what the history list holds, and records written by
//! the build before the layout changed (a rolling upgrade meets them).

use std::time::Duration;

use toolbox::queue::{Broker, Completion, Lease, NewTask, Outcome, TaskState};

use crate::support::brokers::{event_attempts, Backend};

fn done(lease: &Lease, outcome: Outcome) -> Completion {
    Completion {
        lease: lease.clone(),
        worker: "w".into(),
        outcome,
    }
}

/// Enqueues a noop on queue `q` and claims it as worker `w`.
async fn enqueue_and_claim(b: &dyn Broker) -> (String, Lease) {
    let id = b
        .enqueue(vec![NewTask::new("background.noop", "q", "null")])
        .await
        .unwrap()
        .remove(0)
        .id;
    let mut claimed = b.cycle("w", &["q".into()], &[], 1).await.unwrap();
    (id, claimed.deliveries.remove(0).lease)
}

async fn succeed(b: &dyn Broker, lease: &Lease) {
    let ok = done(lease, Outcome::Success { result: "1".into() });
    assert_eq!(b.cycle("w", &[], &[ok], 0).await.unwrap().applied, [true]);
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

/// What the previous build's scripts left of a claimed task: no `hist` field, and a
/// `started` entry for attempt 1 written at the claim.
async fn as_previous_layout(
    conn: &mut redis::aio::MultiplexedConnection,
    task_key: &str,
    list_key: &str,
    started_at: i64,
) {
    let entry = format!(r#"{{"at":{started_at},"event":"started","attempt":1,"worker":"w"}}"#);
    let _: () = redis::pipe()
        .cmd("HDEL")
        .arg(task_key)
        .arg("hist")
        .ignore()
        .cmd("RPUSH")
        .arg(list_key)
        .arg(entry)
        .ignore()
        .query_async(conn)
        .await
        .unwrap();
}

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A task that runs once and succeeds writes no history list; its history is read from
/// the hash, and its record expires whole.
#[tokio::test]
async fn a_task_that_runs_once_writes_no_history_list() {
    let t = Backend::Redis.open_default().await;
    let (url, prefix) = t.redis().unwrap();
    let b = &*t.broker;
    let (id, lease) = enqueue_and_claim(b).await;
    succeed(b, &lease).await;

    let mut conn = connection(url).await;
    let list: i64 = redis::cmd("EXISTS")
        .arg(format!("{{{prefix}}}:h:{id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(list, 0, "no history list for a task that ran once");
    let ttl = pttl(&mut conn, &format!("{{{prefix}}}:t:{id}")).await;
    assert!(ttl > 0, "the record expires: PTTL {ttl}");
    let record = b.get(&id).await.unwrap().unwrap();
    let events: Vec<(&str, u32, Option<&str>)> = record
        .history
        .iter()
        .map(|h| (h.event.as_str(), h.attempt, h.worker.as_deref()))
        .collect();
    assert_eq!(
        events,
        [("started", 1, Some("w")), ("succeeded", 1, Some("w"))]
    );
}

/// A record of the previous layout (no `hist` field, its claim's `started` already in
/// the list) keeps its list, gets no duplicate event, and its list expires with it.
#[tokio::test]
async fn a_record_of_the_previous_layout_reads_and_expires_whole() {
    let t = Backend::Redis.open_default().await;
    let (url, prefix) = t.redis().unwrap();
    let b = &*t.broker;
    let (id, lease) = enqueue_and_claim(b).await;

    let task_key = format!("{{{prefix}}}:t:{id}");
    let list_key = format!("{{{prefix}}}:h:{id}");
    let mut conn = connection(url).await;
    let started_at: i64 = redis::cmd("HGET")
        .arg(&task_key)
        .arg("started_at")
        .query_async(&mut conn)
        .await
        .unwrap();
    as_previous_layout(&mut conn, &task_key, &list_key, started_at).await;

    // This build ends the attempt with a retry, writing the start down again.
    let retry = done(
        &lease,
        Outcome::Retry {
            error: "again".into(),
            delay: Duration::ZERO,
        },
    );
    assert_eq!(
        b.cycle("w", &[], &[retry], 0).await.unwrap().applied,
        [true]
    );
    let again = b.cycle("w", &["q".into()], &[], 1).await.unwrap();
    succeed(b, &again.deliveries[0].lease).await;

    let record = b.get(&id).await.unwrap().unwrap();
    assert_eq!(record.state, TaskState::Success);
    let events = event_attempts(&record);
    assert_eq!(
        events,
        [
            ("started", 1),
            ("retry", 1),
            ("started", 2),
            ("succeeded", 2)
        ],
        "{record:#?}"
    );
    let ttl = pttl(&mut conn, &list_key).await;
    assert!(ttl > 0, "the old list expires with its record: PTTL {ttl}");
}

/// An old record finished without ever meeting `history()` in this build still has its
/// list expired: the missing field means "may have one".
#[tokio::test]
async fn an_old_record_finished_by_this_build_expires_its_list() {
    let t = Backend::Redis.open_default().await;
    let (url, prefix) = t.redis().unwrap();
    let b = &*t.broker;
    let (id, lease) = enqueue_and_claim(b).await;
    let task_key = format!("{{{prefix}}}:t:{id}");
    let list_key = format!("{{{prefix}}}:h:{id}");
    let mut conn = connection(url).await;
    as_previous_layout(&mut conn, &task_key, &list_key, 1).await;
    succeed(b, &lease).await;
    let ttl = pttl(&mut conn, &list_key).await;
    assert!(ttl > 0, "PTTL {ttl}");
    let record = b.get(&id).await.unwrap().unwrap();
    assert_eq!(record.history.len(), 2, "{record:#?}");
}
