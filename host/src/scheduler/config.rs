//! `toolbox.toml`: the time zone of schedules and the schedule entries that are not a
//! plugin's own.

use std::path::Path;

use serde::Deserialize;

/// What happens to ticks missed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Misfire {
    /// Fire once, at start-up, for the most recent missed tick (never a burst).
    Once,
    /// Forget missed ticks.
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntryConfig {
    /// Any accepted form of the task's name.
    pub task: String,
    /// Cron, 5 fields or 6 with seconds. Omitted with `enabled = false` to turn off a
    /// plugin's own schedule.
    pub cron: Option<String>,
    /// A name of its own, when a task has several entries.
    pub name: Option<String>,
    #[serde(default = "default_queue")]
    pub queue: String,
    #[serde(default)]
    pub args: Option<toml::Value>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "once")]
    pub misfire: Misfire,
}

fn default_queue() -> String {
    "cronjobs".to_owned()
}

fn yes() -> bool {
    true
}

fn once() -> Misfire {
    Misfire::Once
}

fn default_timezone() -> String {
    "America/Lima".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default)]
    pub schedule: Vec<ScheduleEntryConfig>,
}

impl Default for ConfigFile {
    fn default() -> Self {
        Self {
            timezone: default_timezone(),
            schedule: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {file}: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("{file} is not valid: {reason}")]
    Invalid { file: String, reason: String },
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let config: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        jiff::tz::TimeZone::get(&config.timezone).map_err(|e| ConfigError::Invalid {
            file,
            reason: format!("timezone {:?}: {e}", config.timezone),
        })?;
        Ok(config)
    }
}
