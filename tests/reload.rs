//! Hot reload on the real binary: plugins dropped in, replaced (rename, `cp` in place,
//! cargo's remove-then-link), truncated and removed while `toolbox serve` runs.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    artifacts,
    http::{get, post},
    processes::ServerProcess,
    PluginsDir,
};

const FILE: &str = "libfixture.so";

/// Puts `bytes` at `dir/name` the way an operator's deploy would: a hidden temp file,
/// then a rename over the old one.
fn install(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let staged = dir.join(format!(".{name}.tmp"));
    fs::write(&staged, bytes).unwrap();
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o755)).unwrap();
    let target = dir.join(name);
    fs::rename(&staged, &target).unwrap();
    target
}

fn wait_until(what: &str, server: &ServerProcess, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn has_task(server: &ServerProcess, clean: &str) -> bool {
    get(&server.url("/tasks/available")).json()["available_tasks"]
        .get(clean)
        .is_some()
}

fn sha_of(server: &ServerProcess, file: &Path) -> Option<String> {
    let plugins = get(&server.url("/plugins")).json();
    plugins["plugins"]
        .as_array()?
        .iter()
        .find(|p| p["file"] == file.display().to_string())
        .map(|p| p["sha256"].as_str().unwrap().to_owned())
}

/// Enqueues `task` with `args` and waits for its result.
fn run(server: &ServerProcess, task: &str, args: &str) -> Value {
    let reply = post(&server.url(&format!("/tasks/execute/{task}")), args, &[]);
    assert_eq!(reply.status, 202, "{}", reply.text);
    let id = reply.json()["task_id"].as_str().unwrap().to_owned();
    result_of(server, &id)
}

fn result_of(server: &ServerProcess, id: &str) -> Value {
    let mut body = Value::Null;
    wait_until(
        "the task to finish",
        server,
        Duration::from_secs(20),
        || {
            body = get(&server.url(&format!("/tasks/status/{id}"))).json();
            body["ready"] == true
        },
    );
    assert_eq!(body["status"], "SUCCESS", "{body:#}");
    body["result"].clone()
}

#[test]
fn a_plugin_dropped_in_runs_and_is_gone_when_removed() {
    let dir = PluginsDir::with_demo();
    let server = ServerProcess::start("serve", dir.path(), &[]);
    assert!(!has_task(&server, "version"));
    let file = install(dir.path(), FILE, &fs::read(&artifacts().reload_v1).unwrap());
    // A reload on demand answers with the folder as it is now.
    let reloaded = post(&server.url("/plugins/reload"), "", &[]);
    assert_eq!(reloaded.status, 200, "{}", reloaded.text);
    let listed = reloaded.json()["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["file"] == file.display().to_string());
    assert!(listed, "{}", reloaded.text);
    wait_until(
        "fixture.version to appear",
        &server,
        Duration::from_secs(10),
        || has_task(&server, "version"),
    );
    assert_eq!(run(&server, "version", ""), "v1");
    // Reading the plugins (a rescan does) is not a change: no rescan follows by itself.
    let rescans = || {
        get(&server.url("/plugins")).json()["rescans"]
            .as_u64()
            .unwrap()
    };
    // Let the rescan the install itself triggered come and go first.
    std::thread::sleep(Duration::from_millis(1_000));
    let before = rescans();
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(rescans(), before, "the watcher rescans without a change");

    fs::remove_file(&file).unwrap();
    wait_until(
        "fixture.version to go away",
        &server,
        Duration::from_secs(10),
        || !has_task(&server, "version"),
    );
    let reply = post(&server.url("/tasks/execute/version"), "", &[]);
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert!(
        server.log().contains("plugin unloaded"),
        "{}",
        server.log_tail()
    );
    assert_eq!(
        run(&server, "echo", "1"),
        1,
        "the other plugin stopped serving"
    );
}

/// A new build renamed over the old one: new runs get it, a run that started before
/// finishes on the old one.
#[test]
fn a_replaced_plugin_serves_new_runs_while_old_runs_finish() {
    let dir = PluginsDir::with_demo();
    let file = install(dir.path(), FILE, &fs::read(&artifacts().reload_v1).unwrap());
    let server = ServerProcess::start("serve", dir.path(), &[]);
    let before = sha_of(&server, &file).expect("v1 loaded");
    let long = post(&server.url("/tasks/execute/wait"), "1500", &[]).json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(
        "the long run to start",
        &server,
        Duration::from_secs(10),
        || get(&server.url(&format!("/tasks/status/{long}"))).json()["status"] == "STARTED",
    );

    install(dir.path(), FILE, &fs::read(&artifacts().reload_v2).unwrap());
    wait_until(
        "the new build to load",
        &server,
        Duration::from_secs(10),
        || sha_of(&server, &file).is_some_and(|sha| sha != before),
    );
    assert_eq!(run(&server, "version", ""), "v2");
    assert_eq!(
        result_of(&server, &long),
        "v1",
        "the run in flight changed version"
    );
    assert!(
        server.log().contains("plugin reloaded"),
        "{}",
        server.log_tail()
    );
}

/// `cp new.so loaded.so` writes into the loaded file's inode; the host runs a private
/// copy, so the run in flight completes and the server lives.
#[test]
fn overwriting_in_place_while_running_is_safe() {
    let dir = PluginsDir::with_demo();
    let file = install(dir.path(), FILE, &fs::read(&artifacts().reload_v1).unwrap());
    let mut server = ServerProcess::start("serve", dir.path(), &[]);
    let long = post(&server.url("/tasks/execute/wait"), "800", &[]).json()["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(
        "the long run to start",
        &server,
        Duration::from_secs(10),
        || get(&server.url(&format!("/tasks/status/{long}"))).json()["status"] == "STARTED",
    );
    fs::copy(&artifacts().reload_v2, &file).unwrap();
    assert_eq!(result_of(&server, &long), "v1");
    assert!(server.alive(), "the server died:\n{}", server.log_tail());
    wait_until("v2 to serve", &server, Duration::from_secs(10), || {
        run(&server, "version", "") == "v2"
    });
}

/// A truncated file over a loaded plugin is refused, and the previous version keeps
/// serving; cargo's remove-then-link rebuild never leaves the task unregistered.
#[test]
fn truncated_files_are_refused_and_rebuilds_do_not_drop_tasks() {
    let dir = PluginsDir::with_demo();
    let v1 = fs::read(&artifacts().reload_v1).unwrap();
    let file = install(dir.path(), FILE, &v1);
    let server = ServerProcess::start("serve", dir.path(), &[]);
    let v2 = fs::read(&artifacts().reload_v2).unwrap();
    install(dir.path(), FILE, &v2[..v2.len() / 2]);
    wait_until(
        "the truncated file to be refused",
        &server,
        Duration::from_secs(10),
        || {
            get(&server.url("/plugins")).json()["refused"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["file"] == file.display().to_string() && r["code"] == "not_a_library")
        },
    );
    assert_eq!(
        run(&server, "version", ""),
        "v1",
        "the previous version stopped serving"
    );

    // What cargo does: remove the old file, then hard-link the new build in its place.
    let build = dir.path().join(".build-output");
    fs::write(&build, &v2).unwrap();
    fs::set_permissions(&build, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(&file).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    fs::hard_link(&build, &file).unwrap();
    let started = Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        let reply = post(&server.url("/tasks/execute/version"), "", &[]);
        answers.push(reply.status);
        let id = reply
            .json()
            .get("task_id")
            .and_then(|i| i.as_str())
            .map(str::to_owned);
        if let Some(id) = id {
            if result_of(&server, &id) == "v2" {
                break;
            }
        }
    }
    assert!(
        answers.iter().all(|s| *s == 202),
        "the task was unregistered during the rebuild: {answers:?}"
    );
    assert_eq!(run(&server, "version", ""), "v2");
}
