//! The scheduler (like celery beat): fires tasks on cron schedules declared by plugins or
//! in `toolbox.toml`. Any number of schedulers may run against one broker: each tick is
//! claimed in the broker together with the enqueue (`Broker::fire`), so it fires once.
//!
//! Missed ticks (no scheduler running): an entry with `misfire = "once"` (the default)
//! fires once at start-up for the most recent missed tick, never a burst; `skip` forgets
//! them. An entry that never fired has nothing to catch up.

mod config;
mod cron;

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use jiff::{tz::TimeZone as Zone, Timestamp};

pub use self::config::{ConfigError, ConfigFile, Misfire, ScheduleEntryConfig};
pub use self::cron::CronSchedule;
use crate::{
    plugins::{Catalog, PluginRegistry},
    queue::{Broker, NewTask},
};

/// The queue periodic work goes to unless an entry says otherwise (the seed's).
pub const DEFAULT_QUEUE: &str = "cronjobs";

/// One schedule, resolved against the plugins loaded now.
#[derive(Debug, Clone)]
pub struct ScheduleEntry {
    /// Stable across processes and restarts: the key of its tick claims.
    pub id: String,
    /// Full task name.
    pub task: String,
    pub cron: CronSchedule,
    pub queue: String,
    /// Arguments, JSON text.
    pub args: String,
    pub enabled: bool,
    pub misfire: Misfire,
    /// `plugin` or `config`.
    pub source: &'static str,
}

/// Every schedule, and what could not be made into one.
#[derive(Debug, Default)]
pub struct ScheduleSet {
    pub entries: Vec<ScheduleEntry>,
    /// Entries of the config file that are wrong (a start-up error).
    pub config_errors: Vec<String>,
    /// Plugin schedules that are wrong (a warning: plugins come and go).
    pub plugin_errors: Vec<String>,
}

/// Resolves the config file's entries and the plugins' own schedules; a config entry
/// naming a task replaces (or, with `enabled = false`, turns off) that task's own.
pub fn resolve(config: &ConfigFile, catalog: &Catalog) -> ScheduleSet {
    let mut set = ScheduleSet::default();
    let mut configured = std::collections::HashSet::new();
    for (n, entry) in config.schedule.iter().enumerate() {
        let label = format!("schedule entry {} (task {:?})", n + 1, entry.task);
        let Some(task) = catalog.resolve(&entry.task) else {
            set.config_errors
                .push(format!("{label}: no such task in the plugins folder"));
            continue;
        };
        let full = task.def.name.clone();
        configured.insert(full.clone());
        let cron_text = match (&entry.cron, &task.def.schedule) {
            (Some(cron), _) => cron.clone(),
            (None, Some(own)) if !entry.enabled => own.clone(),
            (None, _) => {
                set.config_errors
                    .push(format!("{label}: needs a cron expression"));
                continue;
            }
        };
        let cron = match CronSchedule::parse(&cron_text) {
            Ok(cron) => cron,
            Err(why) => {
                set.config_errors.push(format!("{label}: {why}"));
                continue;
            }
        };
        let args = match &entry.args {
            None => serde_json::Value::Null,
            Some(value) => match serde_json::to_value(value) {
                Ok(json) => json,
                Err(e) => {
                    set.config_errors
                        .push(format!("{label}: args cannot be JSON: {e}"));
                    continue;
                }
            },
        };
        if let Some(problem) = schema_problem(task.def.args_schema.as_ref(), &args) {
            set.config_errors.push(format!(
                "{label}: args do not match the task's schema: {problem}"
            ));
            continue;
        }
        let args = args.to_string();
        set.entries.push(ScheduleEntry {
            id: entry
                .name
                .clone()
                .unwrap_or_else(|| format!("config:{full}")),
            task: full,
            cron,
            queue: entry.queue.clone(),
            args,
            enabled: entry.enabled,
            misfire: entry.misfire,
            source: "config",
        });
    }
    // Ids key the tick claims: two entries sharing one would steal each other's ticks.
    let mut seen = std::collections::HashSet::new();
    for entry in &set.entries {
        if !seen.insert(entry.id.clone()) {
            set.config_errors.push(format!(
                "two schedule entries are called {:?}: give each entry of one task its own `name`",
                entry.id
            ));
        }
    }
    for task in catalog.tasks() {
        let Some(expression) = &task.def.schedule else {
            continue;
        };
        if configured.contains(&task.def.name) {
            continue;
        }
        match CronSchedule::parse(expression) {
            Ok(cron) => set.entries.push(ScheduleEntry {
                id: format!("plugin:{}", task.def.name),
                task: task.def.name.clone(),
                cron,
                queue: DEFAULT_QUEUE.to_owned(),
                args: "null".to_owned(),
                enabled: true,
                misfire: Misfire::Once,
                source: "plugin",
            }),
            Err(why) => set.plugin_errors.push(format!(
                "task {} of {}: {why}",
                task.def.name,
                task.plugin.file.display()
            )),
        }
    }
    set
}

/// Why `args` fail `schema`, if they do (the API checks requests the same way).
fn schema_problem(schema: Option<&serde_json::Value>, args: &serde_json::Value) -> Option<String> {
    let validator = match jsonschema::validator_for(schema?) {
        Ok(validator) => validator,
        Err(e) => return Some(format!("the task's schema is invalid: {e}")),
    };
    let error = validator.iter_errors(args).next()?;
    Some(format!("at {:?}: {error}", error.instance_path.to_string()))
}

pub struct Scheduler {
    broker: Arc<dyn Broker>,
    registry: Arc<PluginRegistry>,
    config: Arc<ConfigFile>,
    zone: Zone,
}

impl Scheduler {
    pub fn new(
        broker: Arc<dyn Broker>,
        registry: Arc<PluginRegistry>,
        config: Arc<ConfigFile>,
    ) -> Result<Self, ConfigError> {
        let zone = Zone::get(&config.timezone).map_err(|e| ConfigError::Invalid {
            file: "config".to_owned(),
            reason: format!("timezone {:?}: {e}", config.timezone),
        })?;
        Ok(Self {
            broker,
            registry,
            config,
            zone,
        })
    }

    /// Fires ticks until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut next: HashMap<String, Timestamp> = HashMap::new();
        let mut reported: Vec<String> = Vec::new();
        let mut first_turn = true;
        tracing::info!(timezone = %self.config.timezone, "scheduler started");
        loop {
            // Resolved each turn: a reloaded plugin's schedule applies from its next tick.
            let set = resolve(&self.config, &self.registry.snapshot());
            let problems: Vec<String> = set
                .plugin_errors
                .iter()
                .chain(&set.config_errors)
                .cloned()
                .collect();
            if problems != reported {
                for problem in &problems {
                    tracing::warn!(problem = %problem, "schedule ignored");
                }
                reported = problems;
            }
            let entries: Vec<&ScheduleEntry> = set.entries.iter().filter(|e| e.enabled).collect();
            let now = Timestamp::now();
            if first_turn {
                // Until the broker answers, the catch-up is tried again each turn.
                first_turn = !self.catch_up(&entries, now).await;
            }
            // Keyed by id and expression, so that a changed schedule starts afresh.
            let keys: Vec<String> = entries
                .iter()
                .map(|e| format!("{}\u{0}{}", e.id, e.cron.expression()))
                .collect();
            next.retain(|k, _| keys.contains(k));
            for (key, entry) in keys.iter().zip(&entries) {
                if !next.contains_key(key) {
                    if let Some(t) = entry.cron.next_after(now, &self.zone) {
                        next.insert(key.clone(), t);
                    }
                }
            }
            let mut failed = false;
            for (key, entry) in keys.iter().zip(&entries) {
                let Some(tick) = next.get(key).copied() else {
                    continue;
                };
                if tick > Timestamp::now() {
                    continue;
                }
                if !self.fire(entry, tick, false).await {
                    // The broker is down: keep the tick and try again shortly, until the
                    // schedule's following tick is due.
                    failed = true;
                    if entry
                        .cron
                        .next_after(tick, &self.zone)
                        .is_some_and(|t| t > Timestamp::now())
                    {
                        continue;
                    }
                }
                match entry
                    .cron
                    .next_after(tick.max(Timestamp::now()), &self.zone)
                {
                    Some(t) => next.insert(key.clone(), t),
                    None => next.remove(key),
                };
            }
            let soonest = next.values().min().copied();
            let wait = if failed {
                Duration::from_millis(500)
            } else {
                soonest
                    .map(|t| {
                        Duration::try_from(t.duration_since(Timestamp::now()))
                            .unwrap_or(Duration::ZERO)
                    })
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(1))
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown => break,
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// At start-up: the most recent missed tick of each `misfire = "once"` entry.
    /// Returns false when the broker could not be asked.
    async fn catch_up(&self, entries: &[&ScheduleEntry], now: Timestamp) -> bool {
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        let last = match self.broker.last_fired(&ids).await {
            Ok(last) => last,
            Err(error) => {
                tracing::warn!(%error, "cannot read the last fired ticks yet; missed ticks will be caught up when the broker answers");
                return false;
            }
        };
        for (entry, last) in entries.iter().zip(last) {
            let Some((last_tick, _)) = last else { continue };
            if entry.misfire == Misfire::Skip {
                continue;
            }
            let Ok(since) = Timestamp::from_millisecond(last_tick) else {
                continue;
            };
            if let Some(missed) = entry.cron.latest_between(since, now, &self.zone) {
                tracing::info!(schedule = %entry.id, task = %entry.task, tick = %missed, "firing the most recent missed tick");
                self.fire(entry, missed, true).await;
            }
        }
        true
    }

    /// Returns false when the broker could not be reached (the tick is still to fire).
    async fn fire(&self, entry: &ScheduleEntry, tick: Timestamp, catch_up: bool) -> bool {
        let task = NewTask::new(&entry.task, &entry.queue, entry.args.clone());
        match self
            .broker
            .fire(&entry.id, tick.as_millisecond(), task)
            .await
        {
            Ok(Some(enqueued)) => {
                tracing::debug!(schedule = %entry.id, task_id = %enqueued.id, catch_up, "scheduled task enqueued");
                true
            }
            Ok(None) => {
                tracing::debug!(schedule = %entry.id, "tick already fired by another scheduler");
                true
            }
            Err(error) => {
                tracing::warn!(schedule = %entry.id, %error, tick = %tick, "cannot fire a tick yet; retrying");
                false
            }
        }
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }
}
