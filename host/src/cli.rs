//! The `toolbox` command line (clap). Each flag also reads an environment variable.
//!
//! This is the edge of the host: errors are `anyhow`, printed by `main`.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::{
    api::{self, ApiConfig, AppState},
    database::{self, Database, DatabaseConfig, Session},
    plugins::{
        self, probe_main, Catalog, LoaderConfig, PluginRegistry, PluginWatch, RunContext,
        TaskFailure, TaskHandle,
    },
    queue::{self, Broker, BrokerConfig},
    scheduler::{self, ConfigFile, Scheduler},
    worker::{Worker, WorkerConfig},
};

/// Exit code of a task that ran and failed.
pub const EXIT_TASK_FAILED: u8 = 1;
/// Exit code of a command that could not do what was asked (bad input, unknown task).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "toolbox",
    version,
    about = "Background tasks as plugins: load, list and run them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    /// Folder of plugin libraries [default: the folder of the toolbox binary, where
    /// `cargo build` puts the workspace's plugins]
    #[arg(long, env = "TOOLBOX_PLUGINS_DIR", value_name = "DIR")]
    pub plugins: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// Queue backend: `redis://HOST:PORT/DB`, or `sqlite://PATH` for the embedded queue
    #[arg(long, env = "TOOLBOX_BROKER_URL", default_value = DEFAULT_BROKER)]
    pub broker: String,
    /// Namespace of every Redis key
    #[arg(long, env = "TOOLBOX_PREFIX", default_value = "toolbox")]
    pub prefix: String,
    /// Seconds a running task's lease lasts; renewed while its worker lives, taken over
    /// by another worker after it
    #[arg(long, env = "TOOLBOX_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// Hours a finished task's record is kept
    #[arg(long, env = "TOOLBOX_RESULT_TTL_HOURS", default_value_t = 24)]
    pub result_ttl_hours: u64,
}

/// The embedded queue: a SQLite file in the working folder.
pub const DEFAULT_BROKER: &str = "sqlite://toolbox-queue.sqlite";

impl BrokerArgs {
    pub fn config(&self) -> BrokerConfig {
        BrokerConfig {
            lease: Duration::from_secs(self.lease_secs.max(1)),
            result_ttl: Duration::from_secs(self.result_ttl_hours * 3600),
            ..BrokerConfig::default()
        }
    }

    pub async fn connect(&self) -> anyhow::Result<Arc<dyn Broker>> {
        queue::connect(&self.broker, &self.prefix, &self.config())
            .await
            .with_context(|| format!("cannot open the broker {}", self.broker))
    }
}

#[derive(Debug, clap::Args)]
pub struct DatabaseArgs {
    /// The tasks' database: `sqlite://PATH` (created if missing) or
    /// `postgres://USER@HOST:PORT/DB`
    #[arg(long, env = "DATABASE_URL", default_value = database::DEFAULT_DATABASE)]
    pub database: String,
    /// Connections in the pool at most [default: the worker's concurrency, at least 2]
    #[arg(long, env = "TOOLBOX_DATABASE_POOL")]
    pub database_pool: Option<u32>,
}

impl DatabaseArgs {
    pub async fn connect(&self, concurrency: usize) -> anyhow::Result<Database> {
        let config = DatabaseConfig {
            max_connections: self
                .database_pool
                .unwrap_or_else(|| u32::try_from(concurrency).unwrap_or(u32::MAX).max(2)),
            ..DatabaseConfig::default()
        };
        Database::connect(&self.database, &config)
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    database::redact(&self.database)
                )
            })
    }
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create or update the tables of the factoring domain (migrations embedded in
    /// this binary); safe to run again
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Fill the input tables with deterministic, realistic data (migrates first)
    Seed {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Operations to generate (with 1 to 4 invoices each, and their payments)
        #[arg(long, default_value_t = 1_000)]
        operaciones: u64,
        /// Seed of the generator: the same seed and size give the same rows
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Empty the domain's tables first instead of refusing a database with data
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Queues to consume, earlier first
    #[arg(
        long,
        env = "TOOLBOX_QUEUES",
        value_delimiter = ',',
        default_value = "cronjobs,default"
    )]
    pub queues: Vec<String>,
    /// Tasks run at once [default: the number of cores]
    #[arg(long, env = "TOOLBOX_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Deliveries without an outcome (worker died, task unknown here) before a task goes
    /// to the dead-letter set
    #[arg(long, env = "TOOLBOX_MAX_DELIVERIES", default_value_t = 5)]
    pub max_deliveries: u32,
    /// Seconds runs in flight may take to finish after SIGTERM
    #[arg(long, env = "TOOLBOX_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Tasks a worker of short runs may claim ahead of its free slots (only while its
    /// recent runs show its slots start them within 2 ms); 0: one claim per free slot
    #[arg(long, env = "TOOLBOX_PREFETCH_MAX", default_value_t = crate::worker::PREFETCH_MAX)]
    pub prefetch_max: usize,
}

impl WorkerArgs {
    pub fn config(&self, broker: &BrokerArgs) -> WorkerConfig {
        let mut config = WorkerConfig::new(self.queues.clone());
        if let Some(n) = self.concurrency {
            config.concurrency = n.max(1);
        }
        config.lease = broker.config().lease;
        config.reclaim_every =
            (config.lease / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
        config.max_lost = self.max_deliveries.max(1);
        config.shutdown_grace = Duration::from_secs(self.shutdown_grace_secs);
        config.prefetch_max = self.prefetch_max;
        config
    }
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Schedules and settings that are not flags [default: toolbox.toml, if present]
    #[arg(long, env = "TOOLBOX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    pub fn load(&self) -> anyhow::Result<Arc<ConfigFile>> {
        let path = match &self.config {
            Some(path) => path.clone(),
            None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
            None => return Ok(Arc::new(ConfigFile::default())),
        };
        Ok(Arc::new(ConfigFile::load(&path)?))
    }
}

/// Read when present in the working folder.
pub const DEFAULT_CONFIG: &str = "toolbox.toml";

/// The config file and the watched plugins of a process that runs the scheduler, with
/// the schedules checked against the plugins.
fn open_scheduled(
    config: &ConfigArgs,
    plugins: &PluginArgs,
) -> anyhow::Result<(Arc<ConfigFile>, Arc<PluginRegistry>, PluginWatch)> {
    let config = config.load()?;
    let (registry, watch) = open_watched_registry(plugins)?;
    check_schedules(&config, &registry)?;
    Ok((config, registry, watch))
}

/// The config's schedules checked against the plugins: a wrong entry stops the start.
fn check_schedules(config: &ConfigFile, registry: &PluginRegistry) -> anyhow::Result<()> {
    let set = scheduler::resolve(config, &registry.snapshot());
    for problem in &set.plugin_errors {
        tracing::warn!(problem = %problem, "plugin schedule ignored");
    }
    if !set.config_errors.is_empty() {
        bail!(
            "the schedules are not valid:\n  {}",
            set.config_errors.join("\n  ")
        );
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Address the HTTP API listens on
    #[arg(long, env = "TOOLBOX_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Bearer token required by every route that changes something [default: none,
    /// auth off]
    #[arg(long, env = "TOOLBOX_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With --token: require it for reads (GET) too
    #[arg(long, env = "TOOLBOX_PROTECT_READS")]
    pub protect_reads: bool,
    /// Largest request body, in bytes
    #[arg(long, env = "TOOLBOX_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
}

impl ApiArgs {
    pub fn config(&self) -> ApiConfig {
        ApiConfig {
            body_limit: self.body_limit,
            token: self.token.clone().filter(|t| !t.is_empty()),
            protect_reads: self.protect_reads,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the tasks the plugins folder offers, and the files that were refused
    Tasks {
        #[command(flatten)]
        plugins: PluginArgs,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Run one task in this process, without a queue, and print its result as JSON
    Run {
        /// The task: kebab (`kpi-acumulado`), snake (`kpi_acumulado`) or full name
        /// (`toolbox.kpi_acumulado`)
        task: String,
        /// The task's arguments, as JSON
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
        #[command(flatten)]
        plugins: PluginArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// The tasks' database: create its tables, fill it with sample data
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Run tasks from the queue: claims only as many as it has free slots, renews their
    /// leases, stops cleanly on SIGTERM or Ctrl-C
    Worker {
        #[command(flatten)]
        worker: WorkerArgs,
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        plugins: PluginArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Everything in one process: the HTTP API, a worker and the scheduler, on the
    /// embedded SQLite queue and database unless --broker and --database say otherwise;
    /// migrates the database at start
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        worker: WorkerArgs,
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        plugins: PluginArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// The HTTP API alone, in front of a broker that separate workers consume
    Api {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        plugins: PluginArgs,
    },
    /// The scheduler alone (like celery beat): fires periodic tasks; any number may run
    /// against one broker, each tick fires once
    Beat {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        plugins: PluginArgs,
    },
    /// Load one library in this process and exit: 0 loaded, 2 refused (used by the
    /// host to try a plugin in a child process before loading it itself)
    #[command(hide = true)]
    PluginProbe { file: PathBuf },
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Tasks { plugins, json } => {
            let registry = open_registry(&plugins)?;
            let catalog = registry.snapshot();
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &tasks_json(registry.dir(), &catalog))?;
                writeln!(out)?;
            } else {
                write_tasks_table(&mut out, registry.dir(), &catalog)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            task,
            args,
            plugins,
            database,
        } => {
            let registry = open_registry(&plugins)?;
            run_once(&registry.snapshot(), &task, args.as_deref(), &database)
        }
        Command::Db { command } => run_async(db_command(command)),
        Command::Worker {
            worker,
            broker,
            plugins,
            database,
        } => {
            let (registry, _watch) = open_watched_registry(&plugins)?;
            let mut config = worker.config(&broker);
            run_async(async move {
                config.database = Some(database.connect(config.concurrency).await?);
                let broker = broker.connect().await?;
                Worker::new(broker, registry, config)
                    .run(shutdown_signal())
                    .await;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Serve {
            config,
            api,
            worker,
            broker,
            plugins,
            database,
        } => {
            let (config, registry, _watch) = open_scheduled(&config, &plugins)?;
            let mut worker_config = worker.config(&broker);
            run_async(async move {
                let db = database.connect(worker_config.concurrency + 1).await?;
                db.migrate().await.with_context(|| {
                    format!(
                        "cannot migrate the database {}",
                        database::redact(&database.database)
                    )
                })?;
                worker_config.database = Some(db.clone());
                let broker = broker.connect().await?;
                // Bound before the worker and scheduler start: a taken port fails the
                // start, not a process that already claimed tasks.
                let listener = tokio::net::TcpListener::bind(api.bind)
                    .await
                    .with_context(|| format!("cannot listen on {}", api.bind))?;
                let (stop, stopped) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    shutdown_signal().await;
                    let _ = stop.send(true);
                });
                let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                let state = AppState::new(Arc::clone(&broker), Arc::clone(&registry), api.config())
                    .with_schedules(Arc::clone(&config))
                    .with_database(db);
                let scheduler = Scheduler::new(Arc::clone(&broker), Arc::clone(&registry), config)?;
                let beat = tokio::spawn(scheduler.run(until_stopped(stopped.clone())));
                let worker = tokio::spawn(
                    Worker::new(broker, registry, worker_config)
                        .run(until_stopped(stopped.clone())),
                );
                api::serve_on(listener, state, until_stopped(stopped))
                    .await
                    .with_context(|| format!("cannot serve the API on {}", api.bind))?;
                worker.await.context("the worker failed")?;
                beat.await.context("the scheduler failed")?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Api {
            config,
            api,
            broker,
            plugins,
        } => {
            let config = config.load()?;
            let (registry, _watch) = open_watched_registry(&plugins)?;
            run_async(async move {
                let broker = broker.connect().await?;
                let state = AppState::new(broker, registry, api.config()).with_schedules(config);
                api::serve(api.bind, state, shutdown_signal())
                    .await
                    .with_context(|| format!("cannot serve the API on {}", api.bind))?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Beat {
            config,
            broker,
            plugins,
        } => {
            let (config, registry, _watch) = open_scheduled(&config, &plugins)?;
            run_async(async move {
                let broker = broker.connect().await?;
                Scheduler::new(broker, registry, config)?
                    .run(shutdown_signal())
                    .await;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::PluginProbe { file } => Ok(ExitCode::from(probe_main(&file) as u8)),
    }
}

/// The default plugins folder: where the toolbox binary itself lives, which for a
/// workspace build is `target/<profile>`, beside the plugins cargo just built.
pub fn default_plugins_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the toolbox binary's own path")?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// The registry of a long-running process, hot-reloaded from its folder.
fn open_watched_registry(args: &PluginArgs) -> anyhow::Result<(Arc<PluginRegistry>, PluginWatch)> {
    let registry = Arc::new(open_registry(args)?);
    let watch = plugins::watch(Arc::clone(&registry), WATCH_DEBOUNCE).with_context(|| {
        format!(
            "cannot watch the plugins folder {}",
            registry.dir().display()
        )
    })?;
    Ok((registry, watch))
}

/// Quiet time after the last change in the plugins folder before it is rescanned.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(100);

fn open_registry(args: &PluginArgs) -> anyhow::Result<PluginRegistry> {
    let dir = match &args.plugins {
        Some(dir) => dir.clone(),
        None => default_plugins_dir()?,
    };
    let config = LoaderConfig {
        probe_with: std::env::current_exe().ok(),
        ..LoaderConfig::default()
    };
    PluginRegistry::open(&dir, config)
        .with_context(|| format!("cannot set up plugin loading for {}", dir.display()))
}

fn task_json(task: &TaskHandle) -> Value {
    let def = &task.def;
    json!({
        "name": def.name,
        "clean_name": def.clean_name,
        "description": def.description,
        "endpoint": def.endpoint(),
        "queue": def.queue,
        "module": task.plugin.module_label(),
        "max_retries": def.max_retries,
        "retry_backoff_ms": def.retry_backoff_ms,
        "retry_backoff_max_ms": def.retry_backoff_max_ms,
        "time_limit_ms": def.time_limit_ms,
        "schedule": def.schedule,
        "args_schema": def.args_schema,
        "plugin": {
            "file": task.plugin.file.display().to_string(),
            "sha256": task.plugin.sha256,
            "version": task.plugin.version,
        },
    })
}

fn tasks_json(dir: &Path, catalog: &Catalog) -> Value {
    json!({
        "plugins_dir": dir.display().to_string(),
        "tasks": catalog.tasks().map(|t| task_json(t)).collect::<Vec<_>>(),
        "load_errors": catalog.refused().iter().map(|e| e.to_refusal()).collect::<Vec<_>>(),
    })
}

fn write_tasks_table(out: &mut impl Write, dir: &Path, catalog: &Catalog) -> std::io::Result<()> {
    let rows: Vec<[String; 4]> = catalog
        .tasks()
        .map(|t| {
            let file = t
                .plugin
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let summary = t
                .def
                .description
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            [
                t.def.name.clone(),
                t.def.queue.clone(),
                format!("{} ({file})", t.plugin.module_label()),
                summary,
            ]
        })
        .collect();
    let header = ["TASK", "QUEUE", "PLUGIN", "DESCRIPTION"].map(str::to_owned);
    let width = |i: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[i].len())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    for row in [&header].into_iter().chain(&rows) {
        writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0], row[1], row[2], row[3]
        )?;
    }
    writeln!(
        out,
        "\n{} task(s) from {} plugin(s) in {}",
        catalog.len(),
        catalog.plugins().len(),
        dir.display()
    )?;
    if !catalog.refused().is_empty() {
        writeln!(out, "\nrefused:")?;
        for error in catalog.refused() {
            writeln!(out, "  [{}] {error}", error.code())?;
        }
    }
    Ok(())
}

async fn db_command(command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Migrate { database } => {
            let db = database.connect(1).await?;
            db.migrate().await?;
            println!("migrated {}", database::redact(&database.database));
        }
        DbCommand::Seed {
            database,
            operaciones,
            seed,
            replace,
        } => {
            let db = database.connect(2).await?;
            db.migrate().await?;
            let started = std::time::Instant::now();
            let report = database::seed::seed(
                &db,
                database::seed::SeedConfig {
                    operaciones,
                    seed,
                    replace,
                },
            )
            .await?;
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "seeded {}",
                database::redact(&database.database)
            );
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_once(
    catalog: &Arc<Catalog>,
    name: &str,
    args: Option<&str>,
    database: &DatabaseArgs,
) -> anyhow::Result<ExitCode> {
    let Some(task) = catalog.resolve(name) else {
        let close = catalog.suggest(name);
        if close.is_empty() {
            bail!("unknown task {name:?}; `toolbox tasks` lists the available ones");
        }
        bail!("unknown task {name:?}; did you mean {}?", close.join(", "));
    };
    let args = match args {
        Some(text) => {
            let parsed: Value = serde_json::from_str(text)
                .with_context(|| format!("--args is not valid JSON: {text}"))?;
            parsed.to_string()
        }
        None => "null".to_owned(),
    };
    let task_id = uuid::Uuid::now_v7().to_string();
    tracing::info!(task = %task.def.name, task_id, "running task in-process");
    // The task runs on this thread; its database calls wait on the runtime's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let db = runtime.block_on(database.connect(1))?;
    let ctx =
        RunContext::new(task_id.clone()).with_session(Session::new(db, runtime.handle().clone()));
    let outcome = task.run(&args, &ctx);
    ctx.session.release();
    match outcome {
        Ok(result) => {
            println!("{result}");
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            let kind = match &failure {
                TaskFailure::Retryable { .. } => "retryable error",
                TaskFailure::Fatal { .. } => "fatal error",
                TaskFailure::InvalidArgs { .. } => "invalid arguments",
                TaskFailure::Panicked { .. } => "panic",
                TaskFailure::Cancelled { .. } => "cancelled",
                TaskFailure::UnknownTask { .. } => "unknown task",
            };
            eprintln!(
                "error: task {} ({task_id}) failed with a {kind}: {failure}",
                task.def.name
            );
            Ok(ExitCode::from(EXIT_TASK_FAILED))
        }
    }
}

/// Runs `main` on a multi-threaded runtime, then leaves without waiting for threads of
/// runs that ignored their time limit: they cannot be joined.
fn run_async(
    main: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("toolbox")
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(main);
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the process");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
