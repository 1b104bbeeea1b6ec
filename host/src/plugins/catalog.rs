//! An immutable index of the tasks the loaded plugins offer. The registry swaps whole
//! catalogs, so a reader sees one consistent set of plugins, never a mix.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
};

use serde::Serialize;

use super::{names, LoadError, LoadedPlugin, RunContext, TaskFailure};

/// A task as the host knows it (from the plugin's descriptor, validated).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskDef {
    /// `<domain>.<task>`.
    pub name: String,
    /// `<task>`.
    pub clean_name: String,
    pub description: String,
    pub queue: String,
    pub max_retries: u32,
    pub retry_backoff_ms: u64,
    pub retry_backoff_max_ms: u64,
    pub time_limit_ms: Option<u64>,
    pub schedule: Option<String>,
    pub args_schema: Option<serde_json::Value>,
}

impl TaskDef {
    pub fn endpoint(&self) -> String {
        names::endpoint(&self.name)
    }
}

/// A registered task and the library that runs it.
#[derive(Debug)]
pub struct TaskHandle {
    pub def: TaskDef,
    pub plugin: Arc<LoadedPlugin>,
}

impl TaskHandle {
    /// Runs the task on this thread (blocking) with `args` as JSON text.
    pub fn run(&self, args: &str, ctx: &RunContext) -> Result<String, TaskFailure> {
        self.plugin.run(&self.def.name, args, ctx)
    }
}

/// The tasks of a set of loaded plugins, plus everything that was refused.
#[derive(Debug, Default)]
pub struct Catalog {
    plugins: Vec<Arc<LoadedPlugin>>,
    tasks: BTreeMap<String, Arc<TaskHandle>>,
    /// clean name → full name.
    clean: HashMap<String, String>,
    refused: Vec<LoadError>,
}

impl Catalog {
    /// Indexes `plugins` in order: when two declare the same full name or the same clean
    /// name, the earlier keeps it and the later one's task is refused, visibly.
    pub fn build(plugins: Vec<Arc<LoadedPlugin>>, mut refused: Vec<LoadError>) -> Self {
        let mut tasks: BTreeMap<String, Arc<TaskHandle>> = BTreeMap::new();
        let mut clean: HashMap<String, String> = HashMap::new();
        for plugin in &plugins {
            refused.extend(plugin.refused_tasks.iter().cloned());
            for def in &plugin.tasks {
                let clash = tasks
                    .get(&def.name)
                    .or_else(|| clean.get(&def.clean_name).and_then(|full| tasks.get(full)));
                if let Some(existing) = clash {
                    refused.push(LoadError::DuplicateTask {
                        file: plugin.file.clone(),
                        task: def.name.clone(),
                        existing_task: existing.def.name.clone(),
                        existing_file: existing.plugin.file.clone(),
                    });
                    continue;
                }
                clean.insert(def.clean_name.clone(), def.name.clone());
                tasks.insert(
                    def.name.clone(),
                    Arc::new(TaskHandle {
                        def: def.clone(),
                        plugin: Arc::clone(plugin),
                    }),
                );
            }
        }
        Self {
            plugins,
            tasks,
            clean,
            refused,
        }
    }

    /// Finds a task by any accepted form of its name: `kpi-acumulado`, `kpi_acumulado`
    /// or `toolbox.kpi_acumulado`.
    pub fn resolve(&self, name: &str) -> Option<&Arc<TaskHandle>> {
        let name = names::normalize(name);
        if name.contains('.') {
            self.tasks.get(&name)
        } else {
            self.clean.get(&name).and_then(|full| self.tasks.get(full))
        }
    }

    /// Registered names close to `name`, closest first, for "did you mean".
    pub fn suggest(&self, name: &str) -> Vec<String> {
        let wanted = names::normalize(name);
        let wanted = names::clean_name(&wanted);
        let mut close: Vec<(usize, &str)> = self
            .tasks
            .values()
            .map(|t| {
                (
                    names::edit_distance(wanted, &t.def.clean_name),
                    t.def.name.as_str(),
                )
            })
            .filter(|(distance, task)| {
                *distance <= 2.max(wanted.len() / 3) || names::clean_name(task).contains(wanted)
            })
            .collect();
        close.sort();
        close
            .into_iter()
            .take(5)
            .map(|(_, n)| n.to_owned())
            .collect()
    }

    /// Every registered task, by full name.
    pub fn tasks(&self) -> impl Iterator<Item = &Arc<TaskHandle>> {
        self.tasks.values()
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// The loaded plugin that came from `file`, if any.
    pub fn plugin_for(&self, file: &PathBuf) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.iter().find(|p| &p.file == file)
    }

    /// Everything refused: files, and single tasks.
    pub fn refused(&self) -> &[LoadError] {
        &self.refused
    }
}
