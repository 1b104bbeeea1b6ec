//! Shared test support: the real artifacts, built once per test process, and helpers to
//! give each test its own plugins folder.
//!
//! Every test process calls `artifacts()`; the first call in a process runs `cargo build`
//! for the binary, the demo plugin and the fixture plugins (cargo's own lock serialises
//! parallel test processes, and an up-to-date build costs a fraction of a second).

pub mod brokers;
pub mod databases;
pub mod http;
pub mod processes;

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

/// Paths of everything the tests load or run.
pub struct Artifacts {
    /// The `toolbox` binary.
    pub toolbox: PathBuf,
    /// `plugins/demo`, the `background.*` tasks.
    pub demo: PathBuf,
    /// A plugin built against a deliberately different root-module layout.
    pub incompatible: PathBuf,
    /// A shared library without a toolbox root module.
    pub not_a_plugin: PathBuf,
    /// A library whose initialiser aborts the process that loads it.
    pub crash_on_load: PathBuf,
    /// The demo plugin as built against the plugin interface of commit cdd8dc2, before
    /// `HostContext` grew its database methods (`tests/compat-fixtures`, frozen).
    pub legacy_demo: PathBuf,
    /// Two builds of one plugin (`fixture.version`, `fixture.wait`) answering "v1" / "v2".
    pub reload_v1: PathBuf,
    pub reload_v2: PathBuf,
    /// `fixture.db_*`: arbitrary statements and runs that end badly in a transaction.
    pub db_fixture: PathBuf,
    /// The six `toolbox.*` finance plugins, by task name without the domain
    /// (`tipo_cambio`, `etl`, `tablas_cxc`, `tablas_reportes`, `kpi`, `kpi_acumulado`).
    pub finanzas: Vec<(&'static str, PathBuf)>,
}

/// The finance plugins' crates and the task each exports.
pub const FINANZAS: [(&str, &str); 6] = [
    ("toolbox-tipo-cambio", "tipo_cambio"),
    ("toolbox-etl", "etl"),
    ("toolbox-tablas-cxc", "tablas_cxc"),
    ("toolbox-tablas-reportes", "tablas_reportes"),
    ("toolbox-kpi", "kpi"),
    ("toolbox-kpi-acumulado", "kpi_acumulado"),
];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .arg("build")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let target = target_dir();
        let mut packages = vec!["-p", "toolbox", "-p", "toolbox-demo"];
        for (package, _) in FINANZAS {
            packages.extend(["-p", package]);
        }
        cargo_build(&packages);
        let fixtures_target = target.join("fixtures");
        cargo_build(&[
            "--manifest-path",
            "tests/fixtures/Cargo.toml",
            "--target-dir",
            fixtures_target.to_str().expect("utf-8 target dir"),
        ]);
        // Same target dir as tests/fixtures: abi_stable, with the same features and
        // versions, is compiled once for both.
        cargo_build(&[
            "--manifest-path",
            "tests/compat-fixtures/Cargo.toml",
            "--target-dir",
            fixtures_target.to_str().expect("utf-8 target dir"),
        ]);
        let reload_target = target.join("reload-fixtures");
        cargo_build(&[
            "--manifest-path",
            "tests/reload-fixtures/Cargo.toml",
            "--target-dir",
            reload_target.to_str().expect("utf-8 target dir"),
        ]);
        let debug = target.join("debug");
        let fixtures = fixtures_target.join("debug");
        let reload = reload_target.join("debug");
        Artifacts {
            toolbox: debug.join("toolbox"),
            demo: debug.join("libtoolbox_demo.so"),
            incompatible: fixtures.join("libfixture_incompatible.so"),
            not_a_plugin: fixtures.join("libfixture_not_a_plugin.so"),
            crash_on_load: fixtures.join("libfixture_crash_on_load.so"),
            legacy_demo: fixtures.join("libfixture_legacy_demo.so"),
            reload_v1: reload.join("libfixture_reload_v1.so"),
            reload_v2: reload.join("libfixture_reload_v2.so"),
            db_fixture: reload.join("libfixture_db.so"),
            finanzas: FINANZAS
                .iter()
                .map(|(package, task)| {
                    (
                        *task,
                        debug.join(format!("lib{}.so", package.replace('-', "_"))),
                    )
                })
                .collect(),
        }
    })
}

/// A plugins folder of the test's own, removed when dropped.
pub struct PluginsDir {
    dir: tempfile::TempDir,
}

impl PluginsDir {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("toolbox-test-plugins-")
            .tempdir()
            .expect("temp dir");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies `source` into the folder as `name` (mode 0755) and returns its path.
    pub fn add(&self, name: &str, source: &Path) -> PathBuf {
        let bytes =
            fs::read(source).unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
        self.write(name, &bytes)
    }

    /// Writes `bytes` into the folder as `name` (mode 0755) and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// A folder with the demo plugin in it.
    pub fn with_demo() -> Self {
        let dir = Self::new();
        dir.add("libtoolbox_demo.so", &artifacts().demo);
        dir
    }
}

/// Runs `task` of `catalog` on this thread, without a database, as `toolbox run` does.
pub fn run_task(
    catalog: &toolbox::plugins::Catalog,
    task: &str,
    args: serde_json::Value,
) -> Result<serde_json::Value, toolbox::plugins::TaskFailure> {
    let handle = catalog.resolve(task).unwrap_or_else(|| {
        panic!(
            "task {task} not registered; refused: {:?}",
            catalog.refused()
        )
    });
    let ctx = toolbox::plugins::RunContext::new(uuid::Uuid::now_v7().to_string());
    handle
        .run(&args.to_string(), &ctx)
        .map(|out| serde_json::from_str(&out).expect("result is JSON"))
}

/// Runs the real `toolbox` binary with `args`, on the plugins folder `plugins`.
pub fn toolbox(plugins: &Path, args: &[&str]) -> Output {
    Command::new(&artifacts().toolbox)
        .args(args)
        .env("TOOLBOX_PLUGINS_DIR", plugins)
        .env("RUST_LOG", "warn")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("toolbox runs")
}

/// stdout, stderr and exit status of a finished command, for failure messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
