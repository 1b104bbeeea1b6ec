//! Plugins built against an older plugin interface keep working: the demo plugin as built
//! against `plugin-api` at commit cdd8dc2 (`tests/compat-fixtures`, frozen), before
//! `HostContext` grew methods after its `last_prefix_field`, loads and runs in this host.
//!
//! The legacy demo exports the same `background.*` names as the current demo, so it is
//! always alone in its plugins folder: beside the current build the names would clash.

use std::{path::Path, process::Command, sync::Arc, thread, time::Duration};

use serde_json::{json, Value};
use toolbox::plugins::{Catalog, LoaderConfig, PluginRegistry, RunContext, TaskFailure};

use crate::support::{artifacts, describe, toolbox, PluginsDir};

const FILE: &str = "libfixture_legacy_demo.so";

const TASKS: [&str; 10] = [
    "background.abort",
    "background.clock",
    "background.echo",
    "background.fail",
    "background.leap_day",
    "background.limited",
    "background.noop",
    "background.panic",
    "background.progress",
    "background.sleep",
];

/// A plugins folder holding the legacy demo and nothing else.
fn legacy_dir() -> PluginsDir {
    let dir = PluginsDir::new();
    dir.add(FILE, &artifacts().legacy_demo);
    dir
}

fn open(dir: &Path) -> Arc<Catalog> {
    let config = LoaderConfig {
        probe_with: Some(artifacts().toolbox.clone()),
        ..LoaderConfig::default()
    };
    PluginRegistry::open(dir, config)
        .expect("registry opens")
        .snapshot()
}

fn run(catalog: &Catalog, task: &str, args: Value) -> Result<Value, TaskFailure> {
    crate::support::run_task(catalog, task, args)
}

/// `toolbox tasks --json` lists the legacy plugin's ten tasks and refuses nothing.
#[test]
fn legacy_plugin_is_listed_without_load_errors() {
    let dir = legacy_dir();
    let out = toolbox(dir.path(), &["tasks", "--plugins", path(&dir), "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let listing: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(listing["load_errors"], json!([]), "{listing:#}");
    let tasks = listing["tasks"].as_array().expect("a task list");
    let mut names: Vec<&str> = tasks.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, TASKS, "{listing:#}");
    for task in tasks {
        assert_eq!(task["module"], "fixture-legacy-demo@0.1.0", "{task:#}");
        let file = task["plugin"]["file"].as_str().unwrap();
        assert!(file.ends_with(FILE), "{task:#}");
    }
    let echo = tasks
        .iter()
        .find(|t| t["name"] == "background.echo")
        .unwrap();
    assert_eq!(echo["description"], "Returns its arguments unchanged.");
}

/// `toolbox run` runs the legacy tasks: results come back, and a failure or a panic is
/// reported as the task's failure (exit 1), not a crash of the host.
#[test]
fn legacy_tasks_run_through_the_cli() {
    let dir = legacy_dir();
    let plugins = path(&dir);
    let ok_cases = [
        (
            vec![
                "run",
                "background.echo",
                "--args",
                r#"{"x": [1, "two", null]}"#,
            ],
            json!({"x": [1, "two", null]}),
        ),
        (vec!["run", "noop"], Value::Null),
        (
            vec!["run", "background.sleep", "--args", r#"{"ms": 20}"#],
            json!({"slept_ms": 20}),
        ),
        (
            vec!["run", "background.progress", "--args", r#"{"steps": 3}"#],
            json!({"steps": 3}),
        ),
    ];
    for (mut args, expected) in ok_cases {
        args.extend(["--plugins", plugins]);
        let out = toolbox(dir.path(), &args);
        assert!(out.status.success(), "{args:?}\n{}", describe(&out));
        let result: Value = serde_json::from_slice(&out.stdout).expect("JSON result");
        assert_eq!(result, expected, "{args:?}");
    }

    // (arguments, what stderr must say)
    let failing = [
        (
            vec![
                "run",
                "background.panic",
                "--args",
                r#"{"message": "old kaboom"}"#,
            ],
            vec![
                "failed with a panic",
                "old kaboom",
                "legacy-demo/src/lib.rs",
            ],
        ),
        (
            vec![
                "run",
                "background.fail",
                "--args",
                r#"{"message": "old disk"}"#,
            ],
            vec!["failed with a fatal error: old disk"],
        ),
        (
            vec!["run", "background.sleep", "--args", r#"{"seconds": 1}"#],
            vec!["invalid arguments for task background.sleep"],
        ),
    ];
    for (mut args, messages) in failing {
        args.extend(["--plugins", plugins]);
        let out = toolbox(dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for message in messages {
            assert!(
                stderr.contains(message),
                "{args:?}: stderr lacks {message:?}\n{}",
                describe(&out)
            );
        }
        assert!(out.stdout.is_empty(), "{args:?}\n{}", describe(&out));
    }
}

/// The legacy plugin's calls back into the host (`progress`, `log`) arrive: with info
/// logging, `toolbox run` shows every step.
#[test]
fn legacy_progress_and_logs_reach_the_host() {
    let dir = legacy_dir();
    let out = Command::new(&artifacts().toolbox)
        .args(["run", "background.progress", "--args", r#"{"steps": 3}"#])
        .args(["--plugins", path(&dir)])
        .env("RUST_LOG", "info")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("toolbox runs");
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for step in 1..=3 {
        for line in [format!("step {step} of 3"), format!("finished step {step}")] {
            assert!(stderr.contains(&line), "no {line:?}\n{}", describe(&out));
        }
    }
}

/// Through the library: the legacy tasks run, a panic is a `Panicked` failure located in
/// the legacy source, and the same library keeps serving after it.
#[test]
fn legacy_tasks_run_through_the_loader() {
    let dir = legacy_dir();
    let catalog = open(dir.path());
    assert!(catalog.refused().is_empty(), "{:?}", catalog.refused());
    let names: Vec<&str> = catalog.tasks().map(|t| t.def.name.as_str()).collect();
    assert_eq!(names, TASKS);

    assert_eq!(
        run(&catalog, "background.echo", json!({"a": [1, {"b": null}]})),
        Ok(json!({"a": [1, {"b": null}]}))
    );
    assert_eq!(
        run(&catalog, "background.sleep", json!({"ms": 5})),
        Ok(json!({"slept_ms": 5}))
    );
    assert_eq!(
        run(&catalog, "background.progress", Value::Null),
        Ok(json!({"steps": 5}))
    );
    for round in 0..2 {
        let failure = run(
            &catalog,
            "background.panic",
            json!({"message": format!("legacy boom {round}")}),
        )
        .unwrap_err();
        match &failure {
            TaskFailure::Panicked { message } => {
                assert!(
                    message.contains(&format!("legacy boom {round}")),
                    "{message}"
                );
                assert!(
                    message.contains("legacy-demo/src/lib.rs"),
                    "not the legacy build, or no location: {message}"
                );
            }
            other => panic!("expected a panic failure, got {other:?}"),
        }
        assert_eq!(
            run(&catalog, "background.noop", Value::Null),
            Ok(Value::Null)
        );
    }

    let sleep = catalog.resolve("background.sleep").unwrap();
    assert_eq!(sleep.def.time_limit_ms, Some(3_600_000));
    assert_eq!(
        sleep.def.args_schema.as_ref().unwrap()["required"],
        json!(["ms"])
    );
    let fail = catalog.resolve("background.fail").unwrap();
    assert_eq!((fail.def.max_retries, fail.def.retry_backoff_ms), (2, 100));
}

/// `is_cancelled`, the interface's `last_prefix_field`, works through the new host's
/// longer vtable: a cancelled legacy sleep stops early.
#[test]
fn legacy_sleep_sees_cancellation() {
    let dir = legacy_dir();
    let catalog = open(dir.path());
    let task = catalog.resolve("background.sleep").unwrap().clone();
    let ctx = Arc::new(RunContext::new("00000000-0000-7000-8000-0000000000c1"));
    let cancel = ctx.cancel.clone();
    let started = std::time::Instant::now();
    let running = thread::spawn({
        let ctx = Arc::clone(&ctx);
        move || task.run(r#"{"ms": 60000}"#, &ctx)
    });
    thread::sleep(Duration::from_millis(50));
    cancel.cancel();
    let outcome = running.join().expect("run thread");
    assert!(
        matches!(outcome, Err(TaskFailure::Cancelled { .. })),
        "{outcome:?}"
    );
    assert!(
        started.elapsed().as_secs() < 10,
        "cancellation took {:?}",
        started.elapsed()
    );
}

fn path(dir: &PluginsDir) -> &str {
    dir.path().to_str().expect("utf-8 temp dir")
}
