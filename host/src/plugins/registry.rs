//! The registry: the current [`Catalog`] of a plugins folder, replaced as a whole when
//! the folder changes.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    thread,
};

use sha2::{Digest, Sha256};

use super::{
    loader::{hex, read_checked},
    Catalog, LoadError, LoadedPlugin, LoaderConfig, PluginLoader,
};

/// Past this many mapped libraries (and every this many more) the registry warns.
const MAPPED_WARNING: usize = 100;

pub struct PluginRegistry {
    dir: PathBuf,
    loader: PluginLoader,
    current: RwLock<Arc<Catalog>>,
    rescanning: Mutex<()>,
    rescans: AtomicUsize,
    mapped: AtomicUsize,
}

impl PluginRegistry {
    /// Loads every plugin of `dir`. Never fails for a bad folder or bad files: those are
    /// refusals in the catalog, and the host serves whatever did load (possibly nothing).
    pub fn open(dir: impl Into<PathBuf>, config: LoaderConfig) -> std::io::Result<Self> {
        let registry = Self {
            dir: dir.into(),
            loader: PluginLoader::new(config)?,
            current: RwLock::new(Arc::new(Catalog::default())),
            rescanning: Mutex::new(()),
            rescans: AtomicUsize::new(0),
            mapped: AtomicUsize::new(0),
        };
        registry.rescan();
        Ok(registry)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The catalog as it is now. Cheap; hold it for the length of one request or run.
    pub fn snapshot(&self) -> Arc<Catalog> {
        Arc::clone(&self.current.read().expect("registry lock poisoned"))
    }

    /// Reads the folder again and swaps in the new catalog. A file whose content did not
    /// change keeps its loaded library; a changed file is loaded anew; a file that fails
    /// to load now keeps serving its previous version, and the failure is reported.
    pub fn rescan(&self) -> Arc<Catalog> {
        // One rescan at a time (the watcher, `POST /plugins/reload`): two at once would
        // race to swap in catalogs built from different views of the folder.
        // A rescan that panicked (it should not) must not stop every later one.
        let _one_at_a_time = self
            .rescanning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.rescans.fetch_add(1, Ordering::Relaxed);
        let previous = self.snapshot();
        let mut plugins: Vec<Arc<LoadedPlugin>> = Vec::new();
        let mut refused: Vec<LoadError> = Vec::new();
        match PluginLoader::candidates(&self.dir) {
            Err(error) => {
                // A folder that cannot be read now (or is refused) does not unregister
                // what it served: keep the previous plugins until it can be read.
                tracing::warn!(dir = %self.dir.display(), %error, "plugins folder refused");
                refused.push(error);
                plugins.extend(previous.plugins().iter().cloned());
            }
            Ok(files) => {
                let loaded = parallel_map(&files, |file| {
                    self.load_if_changed(file, previous.plugin_for(file))
                });
                for (file, outcome) in files.iter().zip(loaded) {
                    let old = previous.plugin_for(file);
                    match outcome {
                        Ok(plugin) => plugins.push(plugin),
                        Err(error) => {
                            tracing::warn!(file = %file.display(), code = error.code(), %error, "plugin refused");
                            refused.push(error);
                            if let Some(old) = old {
                                plugins.push(Arc::clone(old));
                            }
                        }
                    }
                }
            }
        }
        let catalog = Arc::new(Catalog::build(plugins, refused));
        for error in catalog.refused().iter().filter(|e| e.task().is_some()) {
            tracing::warn!(file = %error.file().display(), code = error.code(), %error, "task refused");
        }
        for gone in previous
            .plugins()
            .iter()
            .filter(|p| catalog.plugin_for(&p.file).is_none())
        {
            tracing::info!(file = %gone.file.display(), plugin = %gone.name, tasks = gone.tasks.len(), "plugin unloaded: its file is gone");
        }
        *self.current.write().expect("registry lock poisoned") = Arc::clone(&catalog);
        catalog
    }

    /// How many rescans ran since the registry opened.
    pub fn rescans(&self) -> usize {
        self.rescans.load(Ordering::Relaxed)
    }

    /// How many distinct libraries this process has mapped: each reload adds one, and
    /// none is ever unmapped.
    pub fn libraries_mapped(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    fn load_if_changed(
        &self,
        file: &Path,
        old: Option<&Arc<LoadedPlugin>>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let bytes = read_checked(file)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        if let Some(old) = old.filter(|old| old.sha256 == sha256) {
            return Ok(Arc::clone(old));
        }
        let plugin = self.loader.load_bytes(file, &bytes, sha256)?;
        let mapped = self.mapped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            file = %file.display(),
            plugin = %plugin.name,
            version = %plugin.version,
            sha256 = %&plugin.sha256[..16],
            tasks = plugin.tasks.len(),
            "{}",
            if old.is_some() { "plugin reloaded" } else { "plugin loaded" }
        );
        if mapped > MAPPED_WARNING && mapped % MAPPED_WARNING == 1 {
            tracing::warn!(
                libraries = mapped,
                "{mapped} plugin libraries are mapped in this process (none is ever unloaded; each reload adds \
                 one, several MB of address space each): restart the process to release them"
            );
        }
        Ok(Arc::new(plugin))
    }
}

/// `f` over `items` on as many threads as there are cores, results in `items`' order.
/// Loading is mostly reading, hashing, copying and probing files: it scales with cores.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let result = f(item);
                results.lock().expect("results lock poisoned")[i] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .expect("results lock poisoned")
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect()
}
