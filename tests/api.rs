//! The HTTP contract (DESIGN.md), on the real binary with a real HTTP client.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::support::{
    brokers::{delete_prefix, unique_prefix},
    http::{get, post, Reply},
    processes::{PrivateRedis, ServerProcess},
    PluginsDir,
};

/// `toolbox serve` on the embedded SQLite queue (in the server's own temp folder).
fn serve(extra: &[&str]) -> (ServerProcess, PluginsDir) {
    let plugins = PluginsDir::with_demo();
    let server = ServerProcess::start("serve", plugins.path(), extra);
    (server, plugins)
}

fn execute(server: &ServerProcess, task: &str, args: &str) -> Reply {
    post(&server.url(&format!("/tasks/execute/{task}")), args, &[])
}

fn status_until(server: &ServerProcess, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let reply = get(&server.url(&format!("/tasks/status/{id}")));
        assert_eq!(reply.status, 200, "{}", reply.text);
        let body = reply.json();
        if done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "task {id} stuck at {body:#}\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_error(reply: &Reply, status: u16, code: &str) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

/// Every field of TaskExecuteResponse and TaskStatusResponse, with its type, through
/// PENDING → SUCCESS for noop and STARTED → SUCCESS for sleep.
#[test]
fn execute_and_status_contract() {
    let (server, _plugins) = serve(&[]);
    let reply = post(&server.url("/tasks/execute/noop?countdown=0.5"), "", &[]);
    assert_eq!(reply.status, 202, "{}", reply.text);
    let body = reply.json();
    let id = body["task_id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.header("location"),
        Some(format!("/tasks/status/{id}").as_str())
    );
    assert_eq!(body.as_object().unwrap().len(), 4, "{body}");
    assert_eq!(
        (body["success"].clone(), body["task_name"].clone()),
        (json!(true), json!("background.noop"))
    );
    assert!(body["message"].is_string());
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);

    let pending = get(&server.url(&format!("/tasks/status/{id}"))).json();
    assert_eq!(pending["status"], "PENDING");
    assert_eq!(
        (
            pending["ready"].clone(),
            pending["successful"].clone(),
            pending["failed"].clone()
        ),
        (json!(false), Value::Null, Value::Null)
    );
    assert!(pending["eta"].is_string(), "{pending}");

    let done = status_until(&server, &id, |b| b["ready"] == true);
    for field in [
        "task_id",
        "status",
        "result",
        "ready",
        "successful",
        "failed",
        "error",
        "task_name",
        "queue",
        "attempts",
        "progress",
        "enqueued_at",
        "started_at",
        "finished_at",
    ] {
        assert!(done.get(field).is_some(), "{field} missing: {done:#}");
    }
    assert_eq!(done["status"], "SUCCESS");
    assert_eq!(
        (done["successful"].clone(), done["failed"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        (done["result"].clone(), done["error"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(
        (
            done["task_name"].clone(),
            done["queue"].clone(),
            done["attempts"].clone()
        ),
        (json!("background.noop"), json!("default"), json!(1))
    );
    for time in ["enqueued_at", "started_at", "finished_at"] {
        let text = done[time]
            .as_str()
            .unwrap_or_else(|| panic!("{time}: {done}"));
        assert!(
            text.parse::<jiff_like::Rfc3339>().is_ok(),
            "{time} = {text}"
        );
    }

    let sleep = execute(&server, "sleep", r#"{"ms": 400}"#).json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = status_until(&server, &sleep, |b| b["status"] == "STARTED");
    assert_eq!(started["ready"], false);
    let finished = status_until(&server, &sleep, |b| b["ready"] == true);
    assert_eq!(finished["result"], json!({"slept_ms": 400}));
}

/// Minimal RFC 3339 shape check, so the tests need no date crate.
mod jiff_like {
    pub struct Rfc3339;
    impl std::str::FromStr for Rfc3339 {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let b = s.as_bytes();
            let ok = b.len() >= 20
                && b[4] == b'-'
                && b[7] == b'-'
                && b[10] == b'T'
                && b[13] == b':'
                && s.ends_with('Z');
            if ok {
                Ok(Rfc3339)
            } else {
                Err(())
            }
        }
    }
}

/// FAILURE with the error for fail and panic; REVOKED after a revoke; 409 and 404.
#[test]
fn failures_and_revoke() {
    let (mut server, _plugins) = serve(&[]);
    let fail = execute(&server, "fail", r#"{"message": "disk full"}"#).json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let panic = execute(&server, "background.panic", r#"{"message": "kaboom"}"#).json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fail = status_until(&server, &fail, |b| b["ready"] == true);
    assert_eq!(
        (
            fail["status"].clone(),
            fail["failed"].clone(),
            fail["error"].clone()
        ),
        (json!("FAILURE"), json!(true), json!("disk full"))
    );
    let panic = status_until(&server, &panic, |b| b["ready"] == true);
    assert_eq!(panic["status"], "FAILURE");
    assert!(
        panic["error"].as_str().unwrap().contains("kaboom"),
        "{panic}"
    );
    assert!(server.alive(), "a panicking task took the server down");

    let sleep = execute(&server, "sleep", r#"{"ms": 60000}"#).json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    status_until(&server, &sleep, |b| b["status"] == "STARTED");
    let revoke = post(&server.url(&format!("/tasks/revoke/{sleep}")), "", &[]);
    assert_eq!(revoke.status, 200, "{}", revoke.text);
    assert_eq!(revoke.json()["status"], "REVOKE_REQUESTED");
    let revoked = status_until(&server, &sleep, |b| b["ready"] == true);
    assert_eq!(revoked["status"], "REVOKED");
    assert_error(
        &post(&server.url(&format!("/tasks/revoke/{sleep}")), "", &[]),
        409,
        "conflict",
    );
    let delayed = post(&server.url("/tasks/execute/noop?countdown=60"), "", &[]).json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoke = post(&server.url(&format!("/tasks/revoke/{delayed}")), "", &[]);
    assert_eq!(revoke.json()["status"], "REVOKED");
    assert_eq!(
        get(&server.url(&format!("/tasks/status/{delayed}"))).json()["status"],
        "REVOKED"
    );
    assert_error(
        &post(&server.url("/tasks/revoke/no-such-task"), "", &[]),
        404,
        "unknown_task_id",
    );
}

/// Every error case: status code and JSON error body; the server never answers 500 or
/// dies for a client's mistake.
#[test]
fn client_errors() {
    let (mut server, _plugins) = serve(&["--body-limit", "1000"]);
    let unknown = assert_error(&execute(&server, "ecoh", ""), 404, "unknown_task");
    assert_eq!(
        unknown["error"]["details"]["did_you_mean"],
        json!(["background.echo"])
    );
    assert_error(&execute(&server, "echo", "{not json"), 400, "invalid_json");
    assert_error(
        &execute(&server, "echo", &format!("\"{}\"", "x".repeat(2000))),
        413,
        "payload_too_large",
    );
    let invalid = assert_error(
        &execute(&server, "sleep", r#"{"ms": "soon"}"#),
        422,
        "invalid_arguments",
    );
    assert_eq!(invalid["error"]["details"]["errors"][0]["path"], "/ms");
    assert_error(
        &execute(&server, "sleep", r#"{"ms": 5, "extra": 1}"#),
        422,
        "invalid_arguments",
    );
    for query in [
        "priority=12",
        "countdown=-1",
        "countdown=1&eta=soon",
        "eta=tomorrow",
        "queue=no%20spaces",
        "colour=blue",
        "priority=high",
    ] {
        assert_error(
            &post(
                &server.url(&format!("/tasks/execute/noop?{query}")),
                "",
                &[],
            ),
            422,
            "invalid_option",
        );
    }
    let long_key = "k".repeat(300);
    assert_error(
        &post(
            &server.url("/tasks/execute/noop"),
            "",
            &[("idempotency-key", long_key.as_str())],
        ),
        400,
        "invalid_idempotency_key",
    );
    assert_error(
        &get(&server.url("/tasks/status/00000000-0000-7000-8000-000000000000")),
        404,
        "unknown_task_id",
    );
    assert_error(&get(&server.url("/no/such/route")), 404, "not_found");
    assert_error(
        &get(&server.url("/tasks/execute/noop")),
        405,
        "method_not_allowed",
    );
    assert_error(
        &get(&server.url("/tasks?state=BORED")),
        422,
        "invalid_query",
    );
    assert_error(&get(&server.url("/tasks?state=")), 422, "invalid_query");
    assert_error(&get(&server.url("/tasks?limit=0")), 422, "invalid_query");
    assert_error(&get(&server.url("/tasks/status/%FF")), 400, "invalid_path");
    // A far eta is fine: the task waits for it.
    let far = post(
        &server.url("/tasks/execute/noop?eta=2099-01-01T00:00:00Z"),
        "",
        &[],
    );
    assert_eq!(far.status, 202, "{}", far.text);
    let id = far.json()["task_id"].as_str().unwrap().to_owned();
    let waiting = get(&server.url(&format!("/tasks/status/{id}"))).json();
    assert_eq!(waiting["status"], "PENDING");
    // The eta becomes a delay from the API's clock, applied on the broker's: within a second.
    let eta = waiting["eta"].as_str().unwrap();
    assert!(
        eta.starts_with("2099-01-01T00:00:0") || eta.starts_with("2098-12-31T23:59:5"),
        "{eta}"
    );
    assert!(server.alive());
    assert!(
        !server.log().contains("status=500"),
        "a client error answered 500:\n{}",
        server.log_tail()
    );
}

/// 20 concurrent identical requests with one Idempotency-Key make one task.
#[test]
fn idempotency_under_concurrency() {
    let (server, _plugins) = serve(&[]);
    let url = server.url("/tasks/execute/echo");
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                post(&url, r#"{"order": 42}"#, &[("idempotency-key", "order-42")])
            })
        })
        .collect();
    let ids: HashSet<String> = handles
        .into_iter()
        .map(|h| {
            let reply = h.join().unwrap();
            assert_eq!(reply.status, 202, "{}", reply.text);
            reply.json()["task_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let listed = get(&server.url("/tasks?name=echo")).json();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1, "{listed}");
}

/// With a token, routes that change something need it (401 without, 403 wrong); reads,
/// /health and /ready stay open unless --protect-reads.
#[test]
fn auth_on_and_off() {
    let (server, _plugins) = serve(&["--token", "s3cret"]);
    let exec = server.url("/tasks/execute/noop");
    let missing = post(&exec, "", &[]);
    assert_error(&missing, 401, "unauthorized");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    assert_error(
        &post(&exec, "", &[("authorization", "Bearer nope")]),
        403,
        "forbidden",
    );
    assert_eq!(
        post(&exec, "", &[("authorization", "Bearer s3cret")]).status,
        202
    );
    assert_eq!(get(&server.url("/tasks/available")).status, 200);
    drop(server);

    let (closed, _plugins) = serve(&["--token", "s3cret", "--protect-reads"]);
    assert_error(&get(&closed.url("/tasks/available")), 401, "unauthorized");
    assert_eq!(get(&closed.url("/health")).status, 200);
    assert_eq!(get(&closed.url("/ready")).status, 200);

    let (open, _plugins) = serve(&[]);
    assert_eq!(post(&open.url("/tasks/execute/noop"), "", &[]).status, 202);
}

/// The seed's /tasks/available shape, the listing, queues, workers, readiness, the
/// OpenAPI document and the offline docs page.
#[test]
fn discovery_and_operations() {
    let (server, _plugins) = serve(&[]);
    let available = get(&server.url("/tasks/available")).json();
    assert_eq!(
        (
            available["success"].clone(),
            available["auto_generated"].clone()
        ),
        (json!(true), json!(true))
    );
    assert_eq!(
        available["total_tasks"],
        available["available_tasks"].as_object().unwrap().len()
    );
    let sleep = &available["available_tasks"]["sleep"];
    assert_eq!(sleep["name"], "background.sleep");
    assert_eq!(sleep["endpoint"], "/tasks/execute/sleep");
    assert_eq!(sleep["method"], "POST");
    assert_eq!(sleep["module"], "toolbox-demo@0.1.0");
    assert_eq!(sleep["args_schema"]["required"], json!(["ms"]));
    assert_eq!(sleep["plugin"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(available["load_errors"], json!([]));

    let ids: Vec<String> = (0..3)
        .map(|i| {
            execute(&server, "echo", &i.to_string()).json()["task_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for id in &ids {
        status_until(&server, id, |b| b["ready"] == true);
    }
    let page = get(&server.url("/tasks?limit=2")).json();
    let listed: Vec<&str> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        vec![ids[2].as_str(), ids[1].as_str()],
        "newest first"
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = get(&server.url(&format!("/tasks?limit=2&cursor={cursor}"))).json();
    assert_eq!(rest["tasks"][0]["task_id"], ids[0].as_str());
    assert_eq!(
        get(&server.url("/tasks?state=SUCCESS&name=background.echo")).json()["tasks"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let queues = get(&server.url("/queues")).json();
    let default = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap();
    assert_eq!(
        (default["depth"].clone(), default["in_flight"].clone()),
        (json!(0), json!(0))
    );
    let workers = get(&server.url("/workers")).json();
    assert_eq!(workers["workers"].as_array().unwrap().len(), 1, "{workers}");
    assert_eq!(workers["workers"][0]["pid"], server.pid());
    let ready = get(&server.url("/ready"));
    assert_eq!(
        (ready.status, ready.json()["broker"]["kind"].clone()),
        (200, json!("sqlite"))
    );
    assert_eq!(get(&server.url("/health")).json(), json!({"status": "ok"}));

    let doc = get(&server.url("/openapi.json")).json();
    assert_eq!(doc["openapi"], "3.1.0");
    let sleep_op = &doc["paths"]["/tasks/execute/sleep"]["post"];
    assert_eq!(
        sleep_op["requestBody"]["content"]["application/json"]["schema"]["required"],
        json!(["ms"])
    );
    assert!(doc["paths"]["/tasks/status/{task_id}"]["get"].is_object());

    let docs = get(&server.url("/docs/"));
    assert_eq!(docs.status, 200, "{}", docs.text);
    assert!(docs.text.contains("swagger"), "{}", docs.text);
    for external in ["src=\"http", "href=\"http", "src=\"//"] {
        assert!(
            !docs.text.contains(external),
            "the docs page loads something from outside: {external}"
        );
    }
    let config = get(&server.url("/docs/swagger-initializer.js"));
    assert_eq!(config.status, 200);
    assert!(config.text.contains("/openapi.json"), "{}", config.text);
}

/// With Redis down, execute answers 503 with Retry-After and the API lives on; when
/// Redis is back, requests succeed again.
#[test]
fn broker_down_is_503() {
    let mut redis = PrivateRedis::start();
    let plugins = PluginsDir::with_demo();
    let prefix = unique_prefix();
    let server = ServerProcess::start(
        "api",
        plugins.path(),
        &["--broker", &redis.url(), "--prefix", &prefix],
    );
    assert_eq!(execute(&server, "noop", "").status, 202);
    redis.stop_for_test();
    let reply = execute(&server, "noop", "");
    assert_error(&reply, 503, "broker_unavailable");
    assert_eq!(
        reply.header("retry-after"),
        Some("1"),
        "{:?}",
        reply.headers
    );
    assert_eq!(get(&server.url("/ready")).status, 503);
    assert_eq!(get(&server.url("/health")).status, 200);
    redis.start_again();
    let started = Instant::now();
    loop {
        if execute(&server, "noop", "").status == 202 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the API did not reconnect:\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    delete_prefix(&redis.url(), &prefix);
}
