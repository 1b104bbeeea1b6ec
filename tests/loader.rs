//! The loader and registry through the library API, on real plugin builds.

use std::{fs, os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use serde_json::{json, Value};
use toolbox::plugins::{Catalog, LoaderConfig, PluginRegistry, RunContext, TaskFailure};

use crate::support::{artifacts, PluginsDir};

fn open(dir: &Path) -> PluginRegistry {
    PluginRegistry::open(dir, LoaderConfig::default()).expect("registry opens")
}

fn open_with_probe(dir: &Path) -> PluginRegistry {
    let config = LoaderConfig {
        probe_with: Some(artifacts().toolbox.clone()),
        ..LoaderConfig::default()
    };
    PluginRegistry::open(dir, config).expect("registry opens")
}

fn run(catalog: &Catalog, task: &str, args: Value) -> Result<Value, TaskFailure> {
    crate::support::run_task(catalog, task, args)
}

/// The demo plugin's tasks run and return what they should, whichever name form.
#[test]
fn demo_tasks_run() {
    let dir = PluginsDir::with_demo();
    let registry = open(dir.path());
    let catalog = registry.snapshot();
    assert!(catalog.refused().is_empty(), "{:?}", catalog.refused());
    let names: Vec<&str> = catalog.tasks().map(|t| t.def.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "background.abort",
            "background.clock",
            "background.echo",
            "background.fail",
            "background.leap_day",
            "background.limited",
            "background.noop",
            "background.panic",
            "background.progress",
            "background.sleep"
        ]
    );

    let ok_cases = [
        ("background.noop", json!(null), json!(null)),
        (
            "echo",
            json!({"a": [1, 2, {"b": null}]}),
            json!({"a": [1, 2, {"b": null}]}),
        ),
        ("background.echo", json!("text"), json!("text")),
        ("sleep", json!({"ms": 5}), json!({"slept_ms": 5})),
        ("progress", json!({"steps": 3}), json!({"steps": 3})),
        ("progress", json!(null), json!({"steps": 5})),
    ];
    for (task, args, expected) in ok_cases {
        assert_eq!(
            run(&catalog, task, args.clone()),
            Ok(expected),
            "{task} {args}"
        );
    }

    let fatal = run(&catalog, "fail", json!({"message": "nope"})).unwrap_err();
    assert_eq!(
        fatal,
        TaskFailure::Fatal {
            message: "nope".into()
        }
    );
    let retry = run(&catalog, "fail", json!({"retry": true})).unwrap_err();
    assert!(retry.is_retryable(), "{retry:?}");
    let bad_args = run(&catalog, "sleep", json!({"ms": "soon"})).unwrap_err();
    assert!(
        matches!(&bad_args, TaskFailure::InvalidArgs { message } if message.contains("background.sleep")),
        "{bad_args:?}"
    );

    let sleep = catalog.resolve("sleep").unwrap();
    assert_eq!(
        sleep.def.description,
        "Sleeps for `ms` milliseconds, stopping early when the run is cancelled."
    );
    assert_eq!(sleep.def.time_limit_ms, Some(3_600_000));
    assert_eq!(
        sleep.def.args_schema.as_ref().unwrap()["required"],
        json!(["ms"])
    );
    assert_eq!(sleep.def.endpoint(), "/tasks/execute/sleep");
    let fail = catalog.resolve("background.fail").unwrap();
    assert_eq!((fail.def.max_retries, fail.def.retry_backoff_ms), (2, 100));
}

/// A task's panic is a failure carrying the panic's message; the process lives on and
/// the same library keeps serving.
#[test]
fn a_panic_is_a_failure_and_the_host_lives_on() {
    let dir = PluginsDir::with_demo();
    let catalog = open(dir.path()).snapshot();
    for round in 0..3 {
        let failure = run(
            &catalog,
            "panic",
            json!({"message": format!("boom {round}")}),
        )
        .unwrap_err();
        match &failure {
            TaskFailure::Panicked { message } => {
                assert!(message.contains(&format!("boom {round}")), "{message}");
                assert!(
                    message.contains("plugins/demo/src/lib.rs"),
                    "no location: {message}"
                );
            }
            other => panic!("expected a panic failure, got {other:?}"),
        }
        assert_eq!(run(&catalog, "noop", json!(null)), Ok(Value::Null));
    }
}

/// A cancelled run stops early with a cancellation, not a result.
#[test]
fn cancellation_reaches_the_task() {
    let dir = PluginsDir::with_demo();
    let catalog = open(dir.path()).snapshot();
    let task = catalog.resolve("sleep").unwrap().clone();
    let ctx = Arc::new(RunContext::new("00000000-0000-7000-8000-000000000002"));
    let cancel = ctx.cancel.clone();
    let started = std::time::Instant::now();
    let running = std::thread::spawn({
        let ctx = Arc::clone(&ctx);
        move || task.run(r#"{"ms": 60000}"#, &ctx)
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
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

/// Every kind of bad file gets its own refusal naming the file, and the good plugin in
/// the same folder keeps working. Without the ELF check, the truncated copies would
/// kill this test process with SIGBUS inside dlopen.
#[test]
fn bad_files_are_refused_and_the_rest_loads() {
    let a = artifacts();
    let demo = fs::read(&a.demo).unwrap();
    let dir = PluginsDir::with_demo();
    let mut expected: Vec<(std::path::PathBuf, &str)> = Vec::new();
    for cut in [1024, 64 * 1024, 400 * 1024, demo.len() / 2, demo.len() - 1] {
        let path = dir.write(&format!("libtruncated_{cut}.so"), &demo[..cut]);
        expected.push((path, "not_a_library"));
    }
    expected.push((dir.write("libempty.so", b""), "not_a_library"));
    expected.push((
        dir.write("libnotes.so", b"this is a text file, not a library\n"),
        "not_a_library",
    ));
    expected.push((dir.add("libforeign.so", &a.not_a_plugin), "not_a_plugin"));
    expected.push((
        dir.add("libincompatible.so", &a.incompatible),
        "incompatible_interface",
    ));
    let writable = dir.add("libwritable.so", &a.demo);
    fs::set_permissions(&writable, fs::Permissions::from_mode(0o666)).unwrap();
    expected.push((writable, "insecure_permissions"));
    // Not candidates at all: other extensions and hidden files are not looked at.
    dir.write("README.txt", b"not a plugin");
    dir.write(".libhidden.so", b"half-written");

    let catalog = open(dir.path()).snapshot();
    let mut refused: Vec<(std::path::PathBuf, &str)> = catalog
        .refused()
        .iter()
        .map(|e| (e.file().clone(), e.code()))
        .collect();
    refused.sort();
    expected.sort();
    assert_eq!(refused, expected, "refusals: {:#?}", catalog.refused());
    for error in catalog.refused() {
        let message = error.to_string();
        assert!(
            message.contains(&*error.file().to_string_lossy()),
            "message does not name the file: {message}"
        );
    }
    let incompatible = catalog
        .refused()
        .iter()
        .find(|e| e.code() == "incompatible_interface")
        .unwrap();
    assert!(
        incompatible.to_string().contains("layout check failed"),
        "{incompatible}"
    );

    assert_eq!(catalog.len(), 10);
    assert_eq!(run(&catalog, "echo", json!([1])), Ok(json!([1])));
}

/// Two plugins declaring the same tasks: the first (by file name) keeps them, each of
/// the second's is refused naming both files.
#[test]
fn duplicate_tasks_are_refused_visibly() {
    let dir = PluginsDir::with_demo();
    let mut copy = fs::read(&artifacts().demo).unwrap();
    copy.extend_from_slice(b"another build"); // another file content, same tasks
    dir.write("libzz_demo_copy.so", &copy);
    let catalog = open(dir.path()).snapshot();
    assert_eq!(catalog.plugins().len(), 2);
    assert_eq!(catalog.len(), 10);
    let duplicates: Vec<_> = catalog
        .refused()
        .iter()
        .filter(|e| e.code() == "duplicate_task")
        .collect();
    assert_eq!(duplicates.len(), 10, "{:#?}", catalog.refused());
    for dup in duplicates {
        let message = dup.to_string();
        assert!(
            message.contains("libzz_demo_copy.so") && message.contains("libtoolbox_demo.so"),
            "{message}"
        );
    }
    let echo = catalog.resolve("echo").unwrap();
    assert!(echo.plugin.file.ends_with("libtoolbox_demo.so"));
}

/// The host maps a private copy, so overwriting the plugin file in place (what `cp`
/// does) cannot touch the code that is running.
#[test]
fn overwriting_a_loaded_file_in_place_is_harmless() {
    let dir = PluginsDir::with_demo();
    let registry = open(dir.path());
    let catalog = registry.snapshot();
    let plugin = Arc::clone(&catalog.plugins()[0]);
    assert_ne!(plugin.copy, plugin.file);
    assert!(plugin.copy.exists());

    // Same inode, new content: the write `cp new.so loaded.so` makes.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(&plugin.file)
        .unwrap();
    std::io::Write::write_all(&mut file, &vec![0u8; 1 << 20]).unwrap();
    drop(file);
    for _ in 0..3 {
        assert_eq!(
            run(&catalog, "echo", json!({"still": "alive"})),
            Ok(json!({"still": "alive"}))
        );
    }

    // The rescan sees a broken file: refused, and the loaded version keeps serving.
    let rescanned = registry.rescan();
    assert_eq!(rescanned.refused().len(), 1, "{:#?}", rescanned.refused());
    assert_eq!(rescanned.refused()[0].code(), "not_a_library");
    assert!(Arc::ptr_eq(&rescanned.plugins()[0], &plugin));
    assert_eq!(run(&rescanned, "echo", json!(2)), Ok(json!(2)));
}

/// A rescan keeps libraries whose file did not change and loads changed ones anew.
#[test]
fn rescan_reuses_unchanged_and_reloads_changed() {
    let dir = PluginsDir::with_demo();
    let registry = open(dir.path());
    let first = registry.snapshot();
    let again = registry.rescan();
    assert!(Arc::ptr_eq(&first.plugins()[0], &again.plugins()[0]));

    let mut changed = fs::read(&artifacts().demo).unwrap();
    changed.extend_from_slice(b"rebuilt");
    let staged = dir.write(".staged", &changed);
    fs::rename(&staged, dir.path().join("libtoolbox_demo.so")).unwrap();
    let reloaded = registry.rescan();
    assert_ne!(reloaded.plugins()[0].sha256, first.plugins()[0].sha256);
    assert_ne!(reloaded.plugins()[0].copy, first.plugins()[0].copy);
    assert_eq!(run(&reloaded, "echo", json!("new")), Ok(json!("new")));
    // The old catalog still runs on the old library.
    assert_eq!(run(&first, "echo", json!("old")), Ok(json!("old")));

    fs::remove_file(dir.path().join("libtoolbox_demo.so")).unwrap();
    let emptied = registry.rescan();
    assert!(emptied.is_empty() && emptied.plugins().is_empty());
}

/// A library whose initialiser aborts would kill any process that dlopens it: the probe
/// loads it in a child first, so the host refuses it and lives.
#[test]
fn a_library_that_crashes_on_load_is_refused_by_the_probe() {
    let dir = PluginsDir::with_demo();
    dir.add("libcrash.so", &artifacts().crash_on_load);
    let catalog = open_with_probe(dir.path()).snapshot();
    let refused: Vec<_> = catalog
        .refused()
        .iter()
        .map(|e| (e.code(), e.to_string()))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0].0, "probe_crashed");
    assert!(
        refused[0].1.contains("libcrash.so") && refused[0].1.contains("SIGABRT"),
        "{}",
        refused[0].1
    );
    assert_eq!(run(&catalog, "noop", json!(null)), Ok(Value::Null));
}

/// A plugins folder others can write to is refused as a whole; the host serves nothing
/// from it and does not fail.
#[test]
fn an_insecure_or_missing_folder_serves_nothing() {
    let dir = PluginsDir::with_demo();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let catalog = open(dir.path()).snapshot();
    assert!(catalog.is_empty());
    assert_eq!(catalog.refused().len(), 1);
    assert_eq!(catalog.refused()[0].code(), "insecure_permissions");
    assert!(catalog.refused()[0].to_string().contains("chmod go-w"));

    let missing = dir.path().join("no-such-folder");
    let catalog = open(&missing).snapshot();
    assert!(catalog.is_empty());
    assert_eq!(catalog.refused()[0].code(), "folder_unreadable");
}
