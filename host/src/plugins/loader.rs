//! Turns one plugin file into a [`LoadedPlugin`]: checks it, copies it to a private
//! content-addressed path, optionally probes it in a child process, then loads the copy.

use std::{
    fmt::Write as _,
    fs,
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use abi_stable::{
    library::{lib_header_from_path, LibraryError},
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr},
};
use sha2::{Digest, Sha256};
use toolbox_plugin_api::abi::{v0_1, HostContext_TO, PluginManifest, PluginModRef};

use super::{
    elf, names, probe,
    run::{RunContext, TaskFailure},
    LoadError, TaskDef,
};

/// How plugins are loaded.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Load each new file in a short-lived child process first (this path is the
    /// `toolbox` binary, run as `toolbox plugin-probe FILE`), so that a library whose
    /// initialisers crash is refused instead of taking the host down. `None` skips it.
    pub probe_with: Option<PathBuf>,
    /// How long a probe may take before the file is refused.
    pub probe_timeout: Duration,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            probe_with: None,
            probe_timeout: Duration::from_secs(10),
        }
    }
}

/// A plugin library loaded into this process. Never unloaded (abi_stable keeps every
/// library mapped): hold it in an `Arc` and runs in flight keep using it after a reload.
pub struct LoadedPlugin {
    /// The file in the plugins folder it was loaded from.
    pub file: PathBuf,
    /// The private copy that is actually mapped.
    pub copy: PathBuf,
    pub sha256: String,
    /// The plugin crate's name and version.
    pub name: String,
    pub version: String,
    pub loaded_at: SystemTime,
    /// The tasks it declares that passed validation.
    pub tasks: Vec<TaskDef>,
    /// Tasks it declares that were refused (bad name, bad schema, declared twice).
    pub refused_tasks: Vec<LoadError>,
    module: PluginModule,
}

/// A library's root module, by the interface version it was built against.
#[derive(Clone, Copy)]
pub(crate) enum PluginModule {
    Current(PluginModRef),
    /// Built against toolbox 0.1.0: runs without a database session.
    V0_1(v0_1::PluginModRef),
}

impl PluginModule {
    /// The interface version, for logs and `/plugins`.
    pub(crate) fn interface(&self) -> &'static str {
        match self {
            Self::Current(_) => "current",
            Self::V0_1(_) => "0.1",
        }
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("file", &self.file)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Runs the task named `task` (full name) with `args` (JSON text) on this thread.
    /// Blocking; a panic in the task comes back as [`TaskFailure::Panicked`].
    pub fn run(&self, task: &str, args: &str, ctx: &RunContext) -> Result<String, TaskFailure> {
        let (task, args) = (RStr::from_str(task), RStr::from_str(args));
        let outcome = match self.module {
            PluginModule::Current(module) => {
                (module.run())(task, args, HostContext_TO::from_ptr(ctx, TD_Opaque))
            }
            PluginModule::V0_1(module) => {
                (module.run())(task, args, v0_1::HostContext_TO::from_ptr(ctx, TD_Opaque))
            }
        };
        match outcome {
            RResult::ROk(json) => Ok(json.into_string()),
            RResult::RErr(error) => Err(TaskFailure::from_abi(error)),
        }
    }

    /// The plugin interface version it was built against: `"current"` or `"0.1"`.
    pub fn interface(&self) -> &'static str {
        self.module.interface()
    }

    /// `name@version`, as `/tasks/available` shows it in `module`.
    pub fn module_label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Loads plugin files. Owns the private folder the loaded copies live in.
pub struct PluginLoader {
    config: LoaderConfig,
    copies: tempfile::TempDir,
}

impl PluginLoader {
    pub fn new(config: LoaderConfig) -> io::Result<Self> {
        // A fresh 0700 folder of this process: nobody else can swap a file in it, and a
        // copy is never written to while mapped (each content gets its own name).
        let copies = tempfile::Builder::new()
            .prefix("toolbox-plugins-")
            .tempdir()?;
        Ok(Self { config, copies })
    }

    /// The plugin files of `dir`: the platform's library extension, not hidden, sorted
    /// by name (the order decides which of two clashing tasks wins).
    pub fn candidates(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
        let folder_error = |reason: String| LoadError::FolderUnreadable {
            dir: dir.to_path_buf(),
            reason,
        };
        let meta = fs::metadata(dir).map_err(|e| folder_error(e.to_string()))?;
        if !meta.is_dir() {
            return Err(folder_error("not a folder".to_owned()));
        }
        check_permissions(dir, &meta)?;
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|e| folder_error(e.to_string()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| is_candidate(path))
            .collect();
        files.sort();
        Ok(files)
    }

    /// Reads, checks and loads one plugin file.
    pub fn load(&self, file: &Path) -> Result<LoadedPlugin, LoadError> {
        let bytes = read_checked(file)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        self.load_bytes(file, &bytes, sha256)
    }

    /// Loads a file already read (and hashed) by the caller: what gets mapped is these
    /// bytes, whatever the file holds by now.
    pub fn load_bytes(
        &self,
        file: &Path,
        bytes: &[u8],
        sha256: String,
    ) -> Result<LoadedPlugin, LoadError> {
        elf::check_complete(bytes).map_err(|source| LoadError::NotALibrary {
            file: file.to_path_buf(),
            source,
        })?;
        let copy = self.private_copy(file, bytes, &sha256)?;
        if let Some(exe) = &self.config.probe_with {
            probe::run(exe, file, &copy, self.config.probe_timeout)?;
        }
        let module = open_module(&copy, file)?;
        let manifest = read_manifest(module, file)?;
        let (tasks, refused_tasks) = validate_tasks(&manifest, file);
        Ok(LoadedPlugin {
            file: file.to_path_buf(),
            copy,
            sha256,
            name: manifest.name.into_string(),
            version: manifest.version.into_string(),
            loaded_at: SystemTime::now(),
            tasks,
            refused_tasks,
            module,
        })
    }

    fn private_copy(&self, file: &Path, bytes: &[u8], sha256: &str) -> Result<PathBuf, LoadError> {
        let unreadable = |e: io::Error| LoadError::Unreadable {
            file: file.to_path_buf(),
            reason: format!("cannot make a private copy: {e}"),
        };
        let file_name = file
            .file_name()
            .map_or_else(|| "plugin".into(), |n| n.to_string_lossy());
        // glibc returns the library already loaded from the same path: one path per
        // content makes a changed file load as a new library, and the same content reuse
        // the mapping it already has.
        let copy = self
            .copies
            .path()
            .join(format!("{}-{file_name}", &sha256[..16]));
        if copy.exists() {
            return Ok(copy);
        }
        let partial = copy.with_extension("partial");
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o500)
            .open(&partial)
            .map_err(unreadable)?;
        out.write_all(bytes)
            .and_then(|()| out.sync_all())
            .map_err(unreadable)?;
        fs::rename(&partial, &copy).map_err(unreadable)?;
        Ok(copy)
    }
}

fn is_candidate(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden && path.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
}

/// A plugin is code that will run: refuse files and folders others can write to.
fn check_permissions(path: &Path, meta: &fs::Metadata) -> Result<(), LoadError> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(LoadError::InsecurePermissions {
            file: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

pub(crate) fn read_checked(file: &Path) -> Result<Vec<u8>, LoadError> {
    let unreadable = |e: io::Error| LoadError::Unreadable {
        file: file.to_path_buf(),
        reason: e.to_string(),
    };
    let meta = fs::metadata(file).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(LoadError::Unreadable {
            file: file.to_path_buf(),
            reason: "not a regular file".to_owned(),
        });
    }
    check_permissions(file, &meta)?;
    fs::read(file).map_err(unreadable)
}

/// dlopens `path` (a private copy) and checks its root module against this host's
/// interface. Errors name `reported` (the user's file), not the copy.
/// Loads the root module, checked against the current interface or, for a plugin
/// built before it, an earlier one (see `toolbox_plugin_api::abi::v0_1`).
pub(crate) fn open_module(path: &Path, reported: &Path) -> Result<PluginModule, LoadError> {
    let file = reported.to_path_buf();
    let header = lib_header_from_path(path).map_err(|e| library_error(e, &file))?;
    match header.init_root_module::<PluginModRef>() {
        Ok(module) => Ok(PluginModule::Current(module)),
        Err(current @ LibraryError::AbiInstability(_)) => {
            match header.init_root_module::<v0_1::PluginModRef>() {
                Ok(module) => {
                    tracing::info!(
                        file = %file.display(),
                        "plugin built against interface 0.1: it runs without database sessions"
                    );
                    Ok(PluginModule::V0_1(module))
                }
                // Matching no version, the mismatch worth reporting is the current one.
                Err(_) => Err(library_error(current, &file)),
            }
        }
        Err(other) => Err(library_error(other, &file)),
    }
}

fn library_error(error: LibraryError, file: &Path) -> LoadError {
    let file = file.to_path_buf();
    match error {
        LibraryError::OpenError { err, .. } => LoadError::OpenFailed {
            file,
            reason: err.to_string(),
        },
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin { file },
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::IncompatibleInterface {
            file,
            reason: format!(
                "it uses interface version {actual_version}, this host needs one compatible with {expected_version}"
            ),
        },
        LibraryError::AbiInstability(detail) => {
            let report = detail.to_string();
            tracing::debug!(file = %file.display(), %report, "interface layout mismatch");
            LoadError::IncompatibleInterface {
                file,
                reason: summarize_layout_report(&report),
            }
        }
        LibraryError::InvalidAbiHeader(header) => LoadError::IncompatibleInterface {
            file,
            reason: format!("it was built with an incompatible abi_stable ({header:?})"),
        },
        LibraryError::InvalidCAbi { .. } => LoadError::IncompatibleInterface {
            file,
            reason: "it was built by a compiler with a different C ABI".to_owned(),
        },
        LibraryError::RootModule { err, .. } => LoadError::InitFailed {
            file,
            reason: err.to_string(),
        },
        other => LoadError::InitFailed {
            file,
            reason: first_lines(&other.to_string()),
        },
    }
}

/// abi_stable's layout report runs to hundreds of lines; its `Error:` entries, with the
/// expected and found values under each, say what differs.
fn summarize_layout_report(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let value_after = |from: usize, label: &str| {
        lines[from..]
            .iter()
            .position(|l| *l == label)
            .and_then(|at| lines[from + at + 1..].iter().find(|l| !l.is_empty()))
            .copied()
    };
    let mut found_errors: Vec<String> = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some(what) = line.strip_prefix("Error:") else {
            continue;
        };
        let mut entry = format!("layout check failed: {what}");
        if let (Some(expected), Some(found)) =
            (value_after(at, "Expected:"), value_after(at, "Found:"))
        {
            let _ = write!(
                entry,
                " (this host expects {expected}, the plugin has {found})"
            );
        }
        found_errors.push(entry);
        if found_errors.len() == 3 {
            break;
        }
    }
    if found_errors.is_empty() {
        first_lines(report)
    } else {
        found_errors.join("; ")
    }
}

/// The first lines of a long report, joined.
fn first_lines(text: &str) -> String {
    let mut out = String::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(6)
    {
        if !out.is_empty() {
            out.push_str(" | ");
        }
        let _ = write!(out, "{line}");
    }
    out
}

pub(crate) fn read_manifest(
    module: PluginModule,
    file: &Path,
) -> Result<PluginManifest, LoadError> {
    let manifest = match module {
        PluginModule::Current(module) => (module.manifest())(),
        PluginModule::V0_1(module) => (module.manifest())(),
    };
    match manifest {
        RResult::ROk(manifest) => Ok(manifest),
        RResult::RErr(message) => Err(LoadError::InitFailed {
            file: file.to_path_buf(),
            reason: message.into_string(),
        }),
    }
}

fn validate_tasks(manifest: &PluginManifest, file: &Path) -> (Vec<TaskDef>, Vec<LoadError>) {
    let mut tasks: Vec<TaskDef> = Vec::new();
    let mut refused = Vec::new();
    let invalid = |task: &str, reason: String| LoadError::InvalidTask {
        file: file.to_path_buf(),
        task: task.to_owned(),
        reason,
    };
    for descriptor in manifest.tasks.iter() {
        let name = descriptor.name.as_str();
        if !names::is_valid_full_name(name) {
            refused.push(invalid(
                name,
                "a task name is <domain>.<task> in snake_case, e.g. toolbox.kpi_acumulado"
                    .to_owned(),
            ));
            continue;
        }
        if tasks.iter().any(|t| t.name == name) {
            refused.push(invalid(name, "the plugin declares it twice".to_owned()));
            continue;
        }
        let args_schema = match descriptor.args_schema.as_ref().into_option() {
            None => None,
            Some(text) => match serde_json::from_str::<serde_json::Value>(text.as_str()) {
                Ok(schema) if schema.is_object() || schema.is_boolean() => Some(schema),
                Ok(_) => {
                    refused.push(invalid(
                        name,
                        "its argument schema is not a JSON object".to_owned(),
                    ));
                    continue;
                }
                Err(e) => {
                    refused.push(invalid(
                        name,
                        format!("its argument schema is not JSON: {e}"),
                    ));
                    continue;
                }
            },
        };
        tasks.push(TaskDef {
            name: name.to_owned(),
            clean_name: names::clean_name(name).to_owned(),
            description: descriptor.description.to_string(),
            queue: descriptor.queue.to_string(),
            max_retries: descriptor.max_retries,
            retry_backoff_ms: descriptor.retry_backoff_ms,
            retry_backoff_max_ms: descriptor.retry_backoff_max_ms,
            time_limit_ms: (descriptor.time_limit_ms > 0).then_some(descriptor.time_limit_ms),
            schedule: descriptor
                .schedule
                .as_ref()
                .into_option()
                .map(|s| s.to_string()),
            args_schema,
        });
    }
    (tasks, refused)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
