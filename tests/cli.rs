//! The real `toolbox` binary: `tasks` and `run`.

use serde_json::{json, Value};

use crate::support::{artifacts, describe, toolbox, PluginsDir};

#[test]
fn tasks_json_lists_tasks_and_refusals() {
    let dir = PluginsDir::with_demo();
    dir.add("libincompatible.so", &artifacts().incompatible);
    dir.write("libbroken.so", b"\x7fELF truncated");
    let out = toolbox(dir.path(), &["tasks", "--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let listing: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let tasks = listing["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 10, "{listing:#}");
    let echo = tasks
        .iter()
        .find(|t| t["name"] == "background.echo")
        .unwrap();
    assert_eq!(echo["clean_name"], "echo");
    assert_eq!(echo["description"], "Returns its arguments unchanged.");
    assert_eq!(echo["endpoint"], "/tasks/execute/echo");
    assert_eq!(echo["queue"], "default");
    assert_eq!(echo["module"], "toolbox-demo@0.1.0");
    assert_eq!(echo["plugin"]["version"], "0.1.0");
    assert!(echo["plugin"]["file"]
        .as_str()
        .unwrap()
        .ends_with("libtoolbox_demo.so"));
    assert_eq!(echo["plugin"]["sha256"].as_str().unwrap().len(), 64);

    let mut codes: Vec<(&str, &str)> = listing["load_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap();
            (
                file.rsplit('/').next().unwrap(),
                e["code"].as_str().unwrap(),
            )
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            ("libbroken.so", "not_a_library"),
            ("libincompatible.so", "incompatible_interface")
        ]
    );
}

#[test]
fn tasks_table_shows_tasks_and_refusals() {
    let dir = PluginsDir::with_demo();
    dir.write("libnotes.so", b"notes");
    let out = toolbox(dir.path(), &["tasks"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("TASK"), "{text}");
    assert!(
        text.contains("background.sleep") && text.contains("Sleeps for `ms` milliseconds"),
        "{text}"
    );
    assert!(text.contains("10 task(s) from 1 plugin(s)"), "{text}");
    assert!(
        text.contains("refused:") && text.contains("libnotes.so"),
        "{text}"
    );
}

/// `toolbox run` accepts the kebab, snake and full name, prints the result as JSON and
/// exits 0; a failure exits 1 with the error; a usage error exits 2.
#[test]
fn run_prints_results_and_reports_failures() {
    let dir = PluginsDir::with_demo();
    let ok_cases = [
        (
            vec!["run", "echo", "--args", r#"{"x": [1, "two"]}"#],
            json!({"x": [1, "two"]}),
        ),
        (vec!["run", "background.echo", "--args", "42"], json!(42)),
        (vec!["run", "noop"], Value::Null),
        (
            vec!["run", "sleep", "--args", r#"{"ms": 1}"#],
            json!({"slept_ms": 1}),
        ),
        (
            vec!["run", "progress", "--args", r#"{"steps": 2}"#],
            json!({"steps": 2}),
        ),
    ];
    for (args, expected) in ok_cases {
        let out = toolbox(dir.path(), &args);
        assert!(out.status.success(), "{args:?}\n{}", describe(&out));
        let result: Value = serde_json::from_slice(&out.stdout).expect("JSON result");
        assert_eq!(result, expected, "{args:?}");
    }

    let failing = [
        (
            vec!["run", "fail", "--args", r#"{"message": "disk full"}"#],
            1,
            "disk full",
        ),
        (
            vec!["run", "panic", "--args", r#"{"message": "kaboom"}"#],
            1,
            "kaboom",
        ),
        (
            vec!["run", "sleep", "--args", r#"{"ms": -1}"#],
            1,
            "invalid arguments for task background.sleep",
        ),
        (vec!["run", "ecoh"], 2, "did you mean background.echo"),
        (
            vec!["run", "nothing-like-it"],
            2,
            "unknown task \"nothing-like-it\"",
        ),
        (
            vec!["run", "echo", "--args", "{not json"],
            2,
            "--args is not valid JSON",
        ),
    ];
    for (args, code, message) in failing {
        let out = toolbox(dir.path(), &args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\n{}",
            describe(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(message),
            "{args:?}: stderr lacks {message:?}\n{}",
            describe(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?}: a failure printed a result\n{}",
            describe(&out)
        );
    }
}

/// The binary probes each plugin in a child process: a library that aborts whoever loads
/// it is refused, and `toolbox run` still runs the good plugin beside it.
#[test]
fn run_survives_a_library_that_crashes_on_load() {
    let dir = PluginsDir::with_demo();
    dir.add("libcrash.so", &artifacts().crash_on_load);
    let out = toolbox(dir.path(), &["run", "echo", "--args", "[true]"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([true])
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("probe_crashed") && stderr.contains("libcrash.so"),
        "{}",
        describe(&out)
    );
}
