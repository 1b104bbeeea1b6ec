use std::path::PathBuf;

use serde::Serialize;

use super::elf::ElfError;

/// Why a plugin file, or one task in it, was refused. Every variant names the file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugins folder {dir}: {reason}")]
    FolderUnreadable { dir: PathBuf, reason: String },
    #[error("cannot read {file}: {reason}")]
    Unreadable { file: PathBuf, reason: String },
    #[error(
        "{file} is writable by users other than its owner (mode {mode:o}); a plugin is code \
         that will run: `chmod go-w {file}`"
    )]
    InsecurePermissions { file: PathBuf, mode: u32 },
    #[error("{file} is not a loadable plugin: {source}")]
    NotALibrary { file: PathBuf, source: ElfError },
    #[error("{file} could not be opened as a shared library: {reason}")]
    OpenFailed { file: PathBuf, reason: String },
    #[error(
        "{file} is a shared library but not a toolbox plugin (it exports no toolbox root module)"
    )]
    NotAPlugin { file: PathBuf },
    #[error("{file} was built against an incompatible plugin interface: {reason}")]
    IncompatibleInterface { file: PathBuf, reason: String },
    #[error("{file} crashed while being loaded in a probe process ({reason}); it was not loaded into the host")]
    ProbeCrashed { file: PathBuf, reason: String },
    #[error("{file} failed to initialise: {reason}")]
    InitFailed { file: PathBuf, reason: String },
    #[error("{file}: task {task:?} is refused: {reason}")]
    InvalidTask {
        file: PathBuf,
        task: String,
        reason: String,
    },
    #[error("{file}: task {task} is refused: {existing_file} already provides {existing_task}")]
    DuplicateTask {
        file: PathBuf,
        task: String,
        existing_task: String,
        existing_file: PathBuf,
    },
}

impl LoadError {
    /// A short stable identifier of the kind of refusal, for JSON consumers.
    pub fn code(&self) -> &'static str {
        match self {
            Self::FolderUnreadable { .. } => "folder_unreadable",
            Self::Unreadable { .. } => "unreadable",
            Self::InsecurePermissions { .. } => "insecure_permissions",
            Self::NotALibrary { .. } => "not_a_library",
            Self::OpenFailed { .. } => "open_failed",
            Self::NotAPlugin { .. } => "not_a_plugin",
            Self::IncompatibleInterface { .. } => "incompatible_interface",
            Self::ProbeCrashed { .. } => "probe_crashed",
            Self::InitFailed { .. } => "init_failed",
            Self::InvalidTask { .. } => "invalid_task",
            Self::DuplicateTask { .. } => "duplicate_task",
        }
    }

    /// The file (or folder) the refusal is about.
    pub fn file(&self) -> &PathBuf {
        match self {
            Self::FolderUnreadable { dir: file, .. }
            | Self::Unreadable { file, .. }
            | Self::InsecurePermissions { file, .. }
            | Self::NotALibrary { file, .. }
            | Self::OpenFailed { file, .. }
            | Self::NotAPlugin { file }
            | Self::IncompatibleInterface { file, .. }
            | Self::ProbeCrashed { file, .. }
            | Self::InitFailed { file, .. }
            | Self::InvalidTask { file, .. }
            | Self::DuplicateTask { file, .. } => file,
        }
    }

    /// The task the refusal is about, when only one task of a plugin was refused.
    pub fn task(&self) -> Option<&str> {
        match self {
            Self::InvalidTask { task, .. } | Self::DuplicateTask { task, .. } => Some(task),
            _ => None,
        }
    }

    /// The JSON form `/tasks/available` and `toolbox tasks --json` show.
    pub fn to_refusal(&self) -> Refusal {
        Refusal {
            file: self.file().display().to_string(),
            task: self.task().map(str::to_owned),
            code: self.code(),
            message: self.to_string(),
        }
    }
}

/// A refusal as shown to users.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Refusal {
    pub file: String,
    pub task: Option<String>,
    pub code: &'static str,
    pub message: String,
}
