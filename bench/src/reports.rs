//! The finance reports over a large seeded database (issue #7).
//!
//! Per database: seeds `--operaciones` operations with the release `toolbox db seed
//! --replace` (timed), then runs each report task `--runs` times, each run a child
//! `toolbox run TASK --database URL` process, and reports its wall time (process start,
//! plugin loading and connection included), the `records` it printed and the peak RSS
//! of that process (`ru_maxrss` from `wait4`).
//!
//! On PostgreSQL the query runs in a server backend, whose memory is not the toolbox
//! process's: the backend's own peak is reported beside it (`VmHWM`, which counts the
//! shared buffers it touched, and its private part, `RssAnon`, sampled every 20 ms from
//! /proc: the server must be on this machine), with its CPU time and the temporary
//! files the database says it wrote. After seeding, PostgreSQL gets `VACUUM ANALYZE`
//! (timed apart): autovacuum would do the same a minute later, possibly in the middle
//! of a measurement, and plans made before it are not the ones a live system gets.
//! Before each run, the task's output table is vacuumed (not timed): a rebuild deletes
//! every row and inserts them again, and without a vacuum in between (autovacuum's job,
//! which may be off, as on the machine of the README's figures) each run finds one more
//! generation of dead rows under the same keys, and is slower than the one before.
//! SQLite is left as `toolbox` leaves it (nothing runs ANALYZE there; its `DELETE`
//! without `WHERE` drops the pages).
//!
//! A PostgreSQL database named in a URL that does not exist is created (through the
//! `--admin-database` of the same server) and dropped at the end; a SQLite file that
//! did not exist is deleted at the end. `--keep` or `--reuse` keep both.

use std::{
    io::{self, Read as _},
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    str::FromStr as _,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _};
use sqlx::{
    postgres::{PgConnectOptions, PgConnection},
    sqlite::{SqliteConnectOptions, SqliteConnection},
    Connection as _,
};

use crate::stats::Samples;

#[derive(clap::Args)]
pub struct Options {
    /// A database to seed and report on, `sqlite://PATH` or `postgres://USER@HOST/DB`;
    /// repeat for several [default: sqlite:///tmp/toolbox-bench-reports.sqlite and
    /// postgres://postgres@127.0.0.1:5432/tb_bench]
    #[arg(long = "database", value_name = "URL")]
    databases: Vec<String>,
    /// Operations to seed (each with 1 to 4 invoices and their payments)
    #[arg(long, default_value_t = 1_000_000)]
    operaciones: u64,
    /// Seed of the data generator
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runs of each task
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Cut-off date of toolbox.tablas_cxc
    #[arg(long, default_value = "2025-12-31")]
    fecha_corte: String,
    /// Skip seeding a database that already holds --operaciones operations, and keep it
    #[arg(long)]
    reuse: bool,
    /// Keep the databases at the end, even those this run created
    #[arg(long)]
    keep: bool,
    /// Database of the PostgreSQL server to connect to for CREATE/DROP DATABASE and
    /// for watching the backends
    #[arg(long, default_value = "postgres")]
    admin_database: String,
}

const DEFAULT_DATABASES: [&str; 2] = [
    "sqlite:///tmp/toolbox-bench-reports.sqlite",
    "postgres://postgres@127.0.0.1:5432/tb_bench",
];

pub fn run(artifacts: &Path, options: &Options) -> anyhow::Result<()> {
    let toolbox = artifacts.join("toolbox");
    let plugins = [
        "toolbox_kpi_acumulado",
        "toolbox_tablas_cxc",
        "toolbox_tablas_reportes",
        "toolbox_kpi",
    ];
    for needed in std::iter::once(toolbox.clone())
        .chain(plugins.iter().map(|p| artifacts.join(format!("lib{p}.so"))))
    {
        if !needed.exists() {
            bail!(
                "{} is missing: build first with `cargo build --release -p toolbox -p toolbox-bench \
                 -p toolbox-tipo-cambio -p toolbox-etl -p toolbox-tablas-cxc \
                 -p toolbox-tablas-reportes -p toolbox-kpi -p toolbox-kpi-acumulado`",
                needed.display()
            );
        }
    }
    ensure!(options.runs > 0, "--runs must be at least 1");
    let cxc_args = serde_json::json!({ "fecha_corte": options.fecha_corte }).to_string();
    // Task, its arguments, the table it rebuilds.
    let tasks: [Task; 4] = [
        ("toolbox.kpi_acumulado", None, "kpi_acumulado"),
        ("toolbox.tablas_cxc", Some(&cxc_args), "reporte_cxc"),
        ("toolbox.tablas_reportes", None, "reporte_operaciones"),
        ("toolbox.kpi", None, "kpi_mensual"),
    ];
    let urls: Vec<String> = if options.databases.is_empty() {
        DEFAULT_DATABASES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        options.databases.clone()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let baseline = start_up(&toolbox)?;
    println!(
        "toolbox start-up alone (`toolbox tasks`, every plugin of {} loaded): median {}, peak RSS {}",
        artifacts.display(),
        secs(baseline.0),
        mib(baseline.1)
    );

    let mut reports = Vec::new();
    for url in &urls {
        let target = runtime.block_on(Target::prepare(url, &options.admin_database))?;
        let outcome = bench_one(&runtime, &toolbox, &target, &tasks, options);
        if !(options.keep || options.reuse) {
            if let Err(e) = runtime.block_on(target.remove()) {
                eprintln!("warning: cannot remove {}: {e:#}", target.url());
            }
        }
        reports.push(outcome?);
    }

    println!();
    println!("{}", markdown(&reports, options.operaciones));
    Ok(())
}

type Task<'a> = (&'a str, Option<&'a str>, &'a str);

/// What one database measured.
struct Report {
    label: String,
    version: String,
    seed: Option<(Measured, String)>,
    vacuum: Option<Duration>,
    tasks: Vec<TaskReport>,
}

struct TaskReport {
    name: String,
    runs: Vec<Measured>,
    records: u64,
}

fn bench_one(
    runtime: &tokio::runtime::Runtime,
    toolbox: &Path,
    target: &Target,
    tasks: &[Task<'_>],
    options: &Options,
) -> anyhow::Result<Report> {
    let version = runtime.block_on(target.version())?;
    println!();
    println!("== {} ({version})", target.url());
    let watch = target.watch();

    let existing = runtime.block_on(target.operations());
    let seed = if options.reuse && existing == options.operaciones {
        println!(
            "holds {existing} operations already (--reuse): not seeded; its seeding time is not measured"
        );
        None
    } else {
        let mut seed = Command::new(toolbox);
        seed.args(["db", "seed", "--database", target.url()])
            .args(["--operaciones", &options.operaciones.to_string()])
            .args(["--seed", &options.seed.to_string(), "--replace"]);
        let measured = measure(seed, watch.as_ref())?;
        let rows = measured.stdout.trim().to_owned();
        println!("seeded in {}: {rows}", describe(&measured));
        Some((measured, rows))
    };
    let vacuum = match (&seed, target) {
        (Some(_), Target::Postgres { options, .. }) => {
            let started = Instant::now();
            runtime.block_on(async {
                let mut conn = PgConnection::connect_with(options).await?;
                sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
                conn.close().await?;
                anyhow::Ok(())
            })?;
            let took = started.elapsed();
            println!("VACUUM ANALYZE: {}", secs(took));
            Some(took)
        }
        _ => None,
    };

    let mut reports = Vec::new();
    for (task, args, table) in tasks {
        let mut runs = Vec::new();
        let mut records = None;
        for i in 1..=options.runs {
            if let Target::Postgres { options, .. } = target {
                runtime.block_on(async {
                    let mut conn = PgConnection::connect_with(options).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM {table}")))
                        .execute(&mut conn)
                        .await?;
                    conn.close().await?;
                    anyhow::Ok(())
                })?;
            }
            let mut command = Command::new(toolbox);
            command.args(["run", task, "--database", target.url()]);
            if let Some(args) = args {
                command.args(["--args", args]);
            }
            let measured = measure(command, watch.as_ref())?;
            let result: serde_json::Value = serde_json::from_str(measured.stdout.trim())
                .with_context(|| format!("{task} printed {:?}", measured.stdout))?;
            let got = result["records"]
                .as_u64()
                .with_context(|| format!("{task} returned no records: {result}"))?;
            ensure!(
                records.is_none_or(|r| r == got),
                "{task} returned {got} records, {records:?} before"
            );
            records = Some(got);
            println!("{task} run {i}: {}, records {got}", describe(&measured));
            runs.push(measured);
        }
        reports.push(TaskReport {
            name: (*task).to_owned(),
            runs,
            records: records.unwrap_or_default(),
        });
    }
    Ok(Report {
        label: match target {
            Target::Sqlite { .. } => "SQLite".to_owned(),
            Target::Postgres { .. } => "PostgreSQL".to_owned(),
        },
        version,
        seed,
        vacuum,
        tasks: reports,
    })
}

/// Wall time and peak RSS of `toolbox tasks`: the fixed cost in every run below.
fn start_up(toolbox: &Path) -> anyhow::Result<(Duration, u64)> {
    let mut walls = Vec::new();
    let mut rss = 0;
    for _ in 0..3 {
        let mut command = Command::new(toolbox);
        command.args(["tasks", "--json"]);
        let measured = measure(command, None)?;
        walls.push(measured.wall);
        rss = rss.max(measured.max_rss);
    }
    Ok((Samples::new(walls).median(), rss))
}

// ---------------------------------------------------------------------------------
// The databases

// One per database measured: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Target {
    Sqlite {
        url: String,
        path: PathBuf,
        existed: bool,
    },
    Postgres {
        url: String,
        options: PgConnectOptions,
        admin: PgConnectOptions,
        name: String,
        created: bool,
    },
}

impl Target {
    async fn prepare(url: &str, admin_database: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("{url} is not a SQLite URL"))?;
            let path = options.get_filename().to_path_buf();
            Ok(Self::Sqlite {
                url: url.to_owned(),
                existed: path.exists(),
                path,
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)
                .with_context(|| format!("{url} is not a PostgreSQL URL"))?;
            let name = options
                .get_database()
                .with_context(|| format!("{url} names no database"))?
                .to_owned();
            ensure!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "database name {name:?}: use lower-case letters, digits and _"
            );
            let admin = options.clone().database(admin_database);
            let mut conn = PgConnection::connect_with(&admin).await.with_context(|| {
                format!("cannot connect to {admin_database} on the server of {url}")
            })?;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut conn)
                    .await?;
            if !exists {
                let create = format!("CREATE DATABASE {name}");
                sqlx::query(sqlx::AssertSqlSafe(create))
                    .execute(&mut conn)
                    .await?;
                println!("created database {name}");
            }
            conn.close().await?;
            Ok(Self::Postgres {
                url: url.to_owned(),
                options,
                admin,
                name,
                created: !exists,
            })
        } else {
            bail!("{url}: expected sqlite:// or postgres://")
        }
    }

    fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }

    /// The engine's version and the settings that bear on these figures.
    async fn version(&self) -> anyhow::Result<String> {
        match self {
            Self::Sqlite { .. } => {
                // The bench links the same libsqlite3-sys as toolbox (one Cargo.lock).
                let mut conn = SqliteConnection::connect("sqlite::memory:").await?;
                let version: String = sqlx::query_scalar("SELECT sqlite_version()")
                    .fetch_one(&mut conn)
                    .await?;
                Ok(format!("SQLite {version}, as linked into toolbox"))
            }
            Self::Postgres { admin, .. } => {
                let mut conn = PgConnection::connect_with(admin).await?;
                let mut settings = Vec::new();
                for name in [
                    "server_version",
                    "shared_buffers",
                    "work_mem",
                    "max_parallel_workers_per_gather",
                    "jit",
                    "autovacuum",
                ] {
                    let value: String = sqlx::query_scalar("SELECT current_setting($1)")
                        .bind(name)
                        .fetch_one(&mut conn)
                        .await?;
                    settings.push(format!("{name} {value}"));
                }
                conn.close().await?;
                Ok(format!("PostgreSQL: {}", settings.join(", ")))
            }
        }
    }

    /// Operations the database holds (0 when it has no such table yet).
    async fn operations(&self) -> u64 {
        let count = async {
            let n: i64 = match self {
                Self::Sqlite { path, .. } => {
                    if !path.exists() {
                        return anyhow::Ok(0);
                    }
                    let mut conn =
                        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
                            .await?;
                    sqlx::query_scalar("SELECT COUNT(*) FROM operaciones")
                        .fetch_one(&mut conn)
                        .await?
                }
                Self::Postgres { options, .. } => {
                    let mut conn = PgConnection::connect_with(options).await?;
                    sqlx::query_scalar("SELECT COUNT(*) FROM operaciones")
                        .fetch_one(&mut conn)
                        .await?
                }
            };
            Ok(n as u64)
        };
        count.await.unwrap_or(0)
    }

    /// The backend watcher of a PostgreSQL database.
    fn watch(&self) -> Option<PgWatch> {
        match self {
            Self::Sqlite { .. } => None,
            Self::Postgres { admin, name, .. } => Some(PgWatch {
                admin: admin.clone(),
                database: name.clone(),
            }),
        }
    }

    /// Drops what this run created.
    async fn remove(&self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite { path, existed, .. } => {
                if !existed {
                    for suffix in ["", "-wal", "-shm"] {
                        let mut file = path.clone().into_os_string();
                        file.push(suffix);
                        match std::fs::remove_file(&file) {
                            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                            _ => {}
                        }
                    }
                    println!("deleted {}", path.display());
                }
            }
            Self::Postgres {
                admin,
                name,
                created,
                ..
            } => {
                if *created {
                    let mut conn = PgConnection::connect_with(admin).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}")))
                        .execute(&mut conn)
                        .await?;
                    conn.close().await?;
                    println!("dropped database {name}");
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Measuring a child process

/// One child run.
struct Measured {
    wall: Duration,
    /// User + system CPU of the toolbox process.
    cpu: Duration,
    /// Peak RSS of the toolbox process, bytes.
    max_rss: u64,
    stdout: String,
    /// PostgreSQL only: the backend(s) that served it.
    backend: Option<Backend>,
}

/// What the PostgreSQL backends of one child used.
#[derive(Default)]
struct Backend {
    /// Largest VmHWM of a backend: its peak RSS, shared buffers it touched included.
    hwm: u64,
    /// Largest RssAnon sampled (summed over the backends alive at the time): private
    /// memory (sorts, hashes, caches).
    anon: u64,
    /// User + system CPU of the backends, at their last sample.
    cpu: Duration,
    /// Temporary files written in the database meanwhile (pg_stat_database).
    temp_bytes: u64,
    /// Whether a backend was found at all (not when the run is too short).
    seen: bool,
}

/// Runs `command` to its end, with stdout captured and stderr kept for errors.
fn measure(mut command: Command, watch: Option<&PgWatch>) -> anyhow::Result<Measured> {
    command
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let sampler = watch.map(PgWatch::start).transpose()?;
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .context("no stdout pipe")?
        .read_to_string(&mut stdout)?;
    // std's Child is never waited on: wait4 reaps it and says what it used.
    let (status, usage) = wait4(child.id())?;
    let wall = started.elapsed();
    let backend = sampler.map(Sampler::finish).transpose()?;
    let stderr = stderr.join().unwrap_or_default();
    ensure!(
        status.success(),
        "{command:?} failed ({status}): {}",
        stderr.trim()
    );
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    Ok(Measured {
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        // Linux gives ru_maxrss in KiB.
        max_rss: usage.ru_maxrss as u64 * 1024,
        stdout,
        backend,
    })
}

fn wait4(pid: u32) -> io::Result<(ExitStatus, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    let mut status = 0;
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is a child of this process not reaped yet, and both pointers are
        // to live locals of the right types.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return Ok((ExitStatus::from_raw(status), usage));
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Watches the client backends of one PostgreSQL database from /proc.
struct PgWatch {
    admin: PgConnectOptions,
    database: String,
}

struct Sampler {
    done: Arc<AtomicBool>,
    thread: thread::JoinHandle<anyhow::Result<Backend>>,
}

impl PgWatch {
    /// Starts sampling; returns once the counters before the run are read.
    fn start(&self) -> anyhow::Result<Sampler> {
        let done = Arc::new(AtomicBool::new(false));
        let (ready, is_ready) = mpsc::channel();
        let admin = self.admin.clone();
        let database = self.database.clone();
        let stop = Arc::clone(&done);
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(sample(admin, database, stop, ready))
        });
        match is_ready.recv() {
            Ok(()) => Ok(Sampler { done, thread }),
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e.context("cannot watch the PostgreSQL backends")),
                _ => bail!("the PostgreSQL backend watcher stopped"),
            },
        }
    }
}

impl Sampler {
    fn finish(self) -> anyhow::Result<Backend> {
        self.done.store(true, Ordering::Release);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the PostgreSQL backend watcher panicked"))?
    }
}

async fn sample(
    admin: PgConnectOptions,
    database: String,
    done: Arc<AtomicBool>,
    ready: mpsc::Sender<()>,
) -> anyhow::Result<Backend> {
    let mut conn = PgConnection::connect_with(&admin).await?;
    let temp_before = temp_bytes(&mut conn, &database).await?;
    let _ = ready.send(());

    let mut backend = Backend::default();
    // pid → its last CPU time.
    let mut pids: Vec<(i32, Duration)> = Vec::new();
    let mut last_lookup: Option<Instant> = None;
    let mut finished_at: Option<Instant> = None;
    loop {
        // Every 20 ms until the client's backend shows up, then every 200 ms (for more).
        let every = Duration::from_millis(if pids.is_empty() { 20 } else { 200 });
        if last_lookup.is_none_or(|t| t.elapsed() >= every) {
            let found: Vec<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid() \
                   AND backend_type IN ('client backend', 'parallel worker')",
            )
            .bind(&database)
            .fetch_all(&mut conn)
            .await?;
            for pid in found {
                if !pids.iter().any(|(p, _)| *p == pid) {
                    pids.push((pid, Duration::ZERO));
                }
            }
            last_lookup = Some(Instant::now());
        }
        let mut anon = 0;
        let mut alive = 0;
        for (pid, cpu) in &mut pids {
            if let Some(proc) = read_proc(*pid) {
                alive += 1;
                backend.hwm = backend.hwm.max(proc.hwm);
                anon += proc.anon;
                *cpu = proc.cpu;
            }
        }
        backend.anon = backend.anon.max(anon);
        if done.load(Ordering::Acquire) {
            let since = *finished_at.get_or_insert_with(Instant::now);
            // A backend ends just after its client: wait for that (its statistics are
            // flushed as it exits), but not forever.
            if alive == 0 || since.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    backend.cpu = pids.iter().map(|(_, cpu)| *cpu).sum();
    backend.seen = !pids.is_empty();
    backend.temp_bytes = temp_bytes(&mut conn, &database)
        .await?
        .saturating_sub(temp_before);
    conn.close().await?;
    Ok(backend)
}

/// Bytes of temporary files the database has written since its statistics were reset.
async fn temp_bytes(conn: &mut PgConnection, database: &str) -> anyhow::Result<u64> {
    let bytes: Option<i64> =
        sqlx::query_scalar("SELECT temp_bytes FROM pg_stat_database WHERE datname = $1")
            .bind(database)
            .fetch_optional(conn)
            .await?;
    Ok(bytes.unwrap_or(0) as u64)
}

struct Proc {
    hwm: u64,
    anon: u64,
    cpu: Duration,
}

/// VmHWM, RssAnon and CPU time of a live process (None once it is gone).
fn read_proc(pid: i32) -> Option<Proc> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let value = line[key.len()..].trim().trim_end_matches("kB").trim();
        value.parse::<u64>().ok().map(|k| k * 1024)
    };
    // Fields after the command name (which may hold spaces, within parentheses):
    // utime and stime are the 14th and 15th of the line, in clock ticks.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let cpu_ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Proc {
        hwm: kib("VmHWM:")?,
        anon: kib("RssAnon:")?,
        cpu: Duration::from_millis(cpu_ticks * 1000 / ticks),
    })
}

// ---------------------------------------------------------------------------------
// Output

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn describe(m: &Measured) -> String {
    let mut text = format!(
        "wall {}, toolbox CPU {}, toolbox peak RSS {}",
        secs(m.wall),
        secs(m.cpu),
        mib(m.max_rss)
    );
    match &m.backend {
        Some(b) if !b.seen => {
            text.push_str("; PostgreSQL backend: not seen (the run was too short)");
        }
        Some(b) => text.push_str(&format!(
            "; PostgreSQL backend: CPU {}, peak RSS {} (private {}), temp files {}",
            secs(b.cpu),
            mib(b.hwm),
            mib(b.anon),
            mib(b.temp_bytes)
        )),
        None => {}
    }
    text
}

fn markdown(reports: &[Report], operaciones: u64) -> String {
    let mut out = String::new();
    for report in reports {
        let postgres = report.tasks.iter().any(|t| t.runs[0].backend.is_some());
        out.push_str(&format!(
            "**{}** ({}; {operaciones} operations)\n\n",
            report.label, report.version
        ));
        if postgres {
            out.push_str(
                "| step | wall median | wall max | records | toolbox peak RSS | backend peak RSS (private) | backend CPU | temp files |\n\
                 |---|---|---|---|---|---|---|---|\n",
            );
        } else {
            out.push_str(
                "| step | wall median | wall max | records | toolbox peak RSS |\n|---|---|---|---|---|\n",
            );
        }
        let backend_cells = |runs: &[&Measured]| -> String {
            let backends: Vec<&Backend> = runs.iter().filter_map(|m| m.backend.as_ref()).collect();
            if backends.iter().any(|b| !b.seen) {
                return " not seen | | |".to_owned();
            }
            let max = |f: &dyn Fn(&Backend) -> u64| {
                runs.iter()
                    .filter_map(|m| m.backend.as_ref().map(f))
                    .max()
                    .unwrap_or(0)
            };
            let cpu = Samples::new(
                runs.iter()
                    .filter_map(|m| m.backend.as_ref().map(|b| b.cpu))
                    .collect(),
            );
            format!(
                " {} ({}) | {} | {} |",
                mib(max(&|b| b.hwm)),
                mib(max(&|b| b.anon)),
                secs(cpu.median()),
                mib(max(&|b| b.temp_bytes)),
            )
        };
        if let Some((seed, rows)) = &report.seed {
            let rows: serde_json::Value = serde_json::from_str(rows).unwrap_or_default();
            let total: u64 = rows
                .as_object()
                .map(|o| o.values().filter_map(|v| v.as_u64()).sum())
                .unwrap_or(0);
            out.push_str(&format!(
                "| `toolbox db seed` (1 run) | {} | {} | {total} rows | {} |",
                secs(seed.wall),
                secs(seed.wall),
                mib(seed.max_rss)
            ));
            if postgres {
                out.push_str(&backend_cells(&[seed]));
            }
            out.push('\n');
        }
        if let Some(vacuum) = report.vacuum {
            out.push_str(&format!(
                "| `VACUUM ANALYZE` after seeding | {} | {} | | |{}\n",
                secs(vacuum),
                secs(vacuum),
                if postgres { " | | |" } else { "" }
            ));
        }
        for task in &report.tasks {
            let walls = Samples::new(task.runs.iter().map(|m| m.wall).collect());
            let rss = task.runs.iter().map(|m| m.max_rss).max().unwrap_or(0);
            out.push_str(&format!(
                "| `{}` ({} runs) | {} | {} | {} | {} |",
                task.name,
                task.runs.len(),
                secs(walls.median()),
                secs(walls.max()),
                task.records,
                mib(rss)
            ));
            if postgres {
                out.push_str(&backend_cells(&task.runs.iter().collect::<Vec<_>>()));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}
