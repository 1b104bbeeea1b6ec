//! Hot reload: watches the plugins folder and rescans it when a plugin file appears,
//! changes or disappears.
//!
//! An event alone proves nothing about a file (shared/NOTES.md: a debounce timer fired
//! half-way through a slow copy; cargo removes the old file and hard-links the new one,
//! leaving a moment with no file at all). So after the events stop for the debounce
//! window, every candidate's size and mtime must hold still across a short pause, and a
//! loaded file that vanished gets a grace period to come back, before the folder is
//! rescanned. The rescan itself refuses anything that is not a whole library and keeps
//! serving the previous version of that file.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant, SystemTime},
};

use notify::{
    event::{AccessKind, AccessMode},
    EventKind, RecursiveMode, Watcher,
};

use super::{PluginLoader, PluginRegistry};

/// How long a file must be left alone before it counts as complete.
const SETTLE: Duration = Duration::from_millis(50);
/// The longest the watcher waits for the folder to settle before rescanning anyway.
const MAX_SETTLE: Duration = Duration::from_secs(10);
/// How long a loaded plugin's file may be missing (a rebuild in progress) before its
/// tasks are unregistered.
const MISSING_GRACE: Duration = Duration::from_millis(500);

/// Keeps the watch alive; dropping it stops watching.
pub struct PluginWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Starts watching `registry`'s folder; rescans run on a thread of their own.
pub fn watch(registry: Arc<PluginRegistry>, debounce: Duration) -> notify::Result<PluginWatch> {
    let (events, received) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // Reads are not changes: a rescan reads every plugin file, and counting its own
            // reads would make it rescan forever.
            Ok(event) if is_read(&event.kind) => false,
            // The kernel's queue overflowed: something may have changed.
            Ok(event) if event.need_rescan() => true,
            Ok(event) => event.paths.iter().any(|p| is_plugin_path(p)),
            // An error: rescan rather than miss a change.
            Err(_) => true,
        };
        if relevant {
            let _ = events.send(());
        }
    })?;
    watcher.watch(registry.dir(), RecursiveMode::NonRecursive)?;
    tracing::info!(dir = %registry.dir().display(), debounce_ms = debounce.as_millis() as u64, "watching plugins folder");
    thread::Builder::new()
        .name("plugin-watch".to_owned())
        .spawn(move || run(&registry, &received, debounce))
        .map_err(|e| notify::Error::generic(&format!("cannot start the watch thread: {e}")))?;
    Ok(PluginWatch { _watcher: watcher })
}

fn is_read(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_)
                | AccessKind::Read
                | AccessKind::Close(AccessMode::Read | AccessMode::Execute)
        )
    )
}

fn is_plugin_path(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden && path.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
}

fn run(registry: &PluginRegistry, events: &mpsc::Receiver<()>, debounce: Duration) {
    // Ends when the watcher (and with it the sender) is dropped.
    while events.recv().is_ok() {
        let waiting_since = Instant::now();
        loop {
            // Quiet for the whole window, then files that hold still. A file that never
            // does (a stuck writer) must not stop every other plugin from reloading: past
            // `MAX_SETTLE` the rescan goes ahead, and refuses what is not a whole library.
            while events.recv_timeout(debounce).is_ok() {}
            if settled(registry.dir()) || waiting_since.elapsed() > MAX_SETTLE {
                break;
            }
        }
        let catalog = rescan_when_settled(registry, Duration::ZERO);
        tracing::debug!(
            tasks = catalog.len(),
            refused = catalog.refused().len(),
            "plugins folder rescanned"
        );
    }
}

/// Rescans once the folder's plugin files hold still (waiting at most `settle_for`; the
/// watcher has waited already) and a loaded plugin's missing file had its grace: what
/// `POST /plugins/reload` and the watcher both do, so that neither catches a build
/// half-way.
pub fn rescan_when_settled(registry: &PluginRegistry, settle_for: Duration) -> Arc<super::Catalog> {
    let started = Instant::now();
    while started.elapsed() < settle_for && !settled(registry.dir()) {}
    wait_for_missing(registry);
    registry.rescan()
}

type Snapshot = HashMap<PathBuf, (u64, Option<SystemTime>)>;

fn snapshot(dir: &Path) -> Snapshot {
    PluginLoader::candidates(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|file| {
            let meta = std::fs::metadata(&file).ok()?;
            Some((file, (meta.len(), meta.modified().ok())))
        })
        .collect()
}

/// Whether no candidate changed size or mtime across a short pause.
fn settled(dir: &Path) -> bool {
    let before = snapshot(dir);
    thread::sleep(SETTLE);
    before == snapshot(dir)
}

/// A loaded plugin's file that is missing may be mid-rebuild: give it a moment.
fn wait_for_missing(registry: &PluginRegistry) {
    let catalog = registry.snapshot();
    let started = Instant::now();
    while started.elapsed() < MISSING_GRACE && catalog.plugins().iter().any(|p| !p.file.exists()) {
        thread::sleep(Duration::from_millis(20));
    }
}
