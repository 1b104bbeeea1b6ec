//! A database of the test's own: a SQLite file in a temp folder, or a uniquely named
//! PostgreSQL database on the local server, created and migrated on start and dropped
//! at the end. Tasks run on it through the real loader and a real session.

use std::{
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use serde_json::Value;
use toolbox::{
    database::{Database, DatabaseConfig, Session},
    plugins::{Catalog, LoaderConfig, PluginRegistry, RunContext, TaskFailure},
};

use super::{artifacts, PluginsDir};

/// The server every PostgreSQL test database is created on (trust auth).
pub fn postgres_admin_url() -> String {
    std::env::var("TOOLBOX_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// One runtime per test process drives every pool's connections while the test's own
/// thread blocks (as a worker's run thread does).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    pub db: Database,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh, migrated database with a pool of `pool` connections.
    pub fn new(kind: Kind) -> Self {
        Self::with_pool(kind, 4)
    }

    pub fn with_pool(kind: Kind, pool: u32) -> Self {
        let db = Self::unmigrated(kind, pool);
        runtime()
            .block_on(db.db.migrate())
            .unwrap_or_else(|e| panic!("cannot migrate {}: {e}", db.url));
        db
    }

    /// A fresh database without any table (for `toolbox db migrate`).
    pub fn unmigrated(kind: Kind, pool: u32) -> Self {
        let (url, pg_name, dir) = match kind {
            Kind::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("toolbox-test-db-")
                    .tempdir()
                    .expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("tasks.sqlite").display());
                (url, None, Some(dir))
            }
            Kind::Postgres => {
                let name = format!("tb_test_{}", uuid::Uuid::now_v7().simple());
                admin(&format!("CREATE DATABASE {name}"));
                let admin_url = postgres_admin_url();
                let server = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(s, _)| s);
                (format!("{server}/{name}"), Some(name), None)
            }
        };
        let config = DatabaseConfig {
            max_connections: pool,
            acquire_timeout: Duration::from_secs(10),
        };
        let db = runtime()
            .block_on(Database::connect(&url, &config))
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
        Self {
            kind,
            url,
            db,
            pg_name,
            _dir: dir,
        }
    }

    /// Runs SQL (several statements allowed) outside any task.
    pub fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        let result = runtime().block_on(async {
            match &self.db {
                Database::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
                Database::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            }
        });
        result.unwrap_or_else(|e| panic!("{:?}: {e}", self.kind));
    }

    /// The rows of `sql` as JSON objects (through a session, as a plugin sees them).
    pub fn rows(&self, sql: &str) -> Vec<Value> {
        let session = Session::new(self.db.clone(), runtime().handle().clone());
        let json = session
            .query(sql, "[]")
            .unwrap_or_else(|e| panic!("{:?}: {sql}: {e}", self.kind));
        session.release();
        serde_json::from_str(&json).expect("rows are JSON")
    }

    /// Runs `task` of `catalog` on this database, as a worker would on its run thread.
    pub fn run(&self, catalog: &Catalog, task: &str, args: Value) -> Result<Value, TaskFailure> {
        let handle = catalog.resolve(task).unwrap_or_else(|| {
            panic!(
                "task {task} not registered; refused: {:?}",
                catalog.refused()
            )
        });
        let ctx = RunContext::new(uuid::Uuid::now_v7().to_string())
            .with_session(Session::new(self.db.clone(), runtime().handle().clone()));
        let result = handle.run(&args.to_string(), &ctx);
        ctx.session.release();
        result.map(|out| serde_json::from_str(&out).expect("a task's result is JSON"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        runtime().block_on(self.db.close());
        if let Some(name) = &self.pg_name {
            admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

fn admin(sql: &str) {
    let url = postgres_admin_url();
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    runtime()
        .block_on(async {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await?;
            let result = sqlx::raw_sql(sql).execute(&pool).await;
            pool.close().await;
            result
        })
        .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"));
}

/// A plugins folder with the six finance plugins and the `fixture.db_*` tasks, and its
/// catalog (each file probed in a child first, as the host does).
pub fn finance_plugins() -> (PluginsDir, Arc<Catalog>) {
    let dir = PluginsDir::new();
    for (task, path) in &artifacts().finanzas {
        dir.add(&format!("libtoolbox_{task}.so"), path);
    }
    dir.add("libfixture_db.so", &artifacts().db_fixture);
    let catalog = open_catalog(dir.path());
    (dir, catalog)
}

pub fn open_catalog(dir: &Path) -> Arc<Catalog> {
    let config = LoaderConfig {
        probe_with: Some(artifacts().toolbox.clone()),
        ..LoaderConfig::default()
    };
    let catalog = PluginRegistry::open(dir, config)
        .expect("registry opens")
        .snapshot();
    assert!(
        catalog.refused().is_empty(),
        "plugins refused: {:?}",
        catalog.refused()
    );
    catalog
}

/// Runs `$body(kind)` once on SQLite and once on PostgreSQL, as two tests named
/// `<name>::sqlite` and `<name>::postgres`. The using module imports `Kind`.
macro_rules! on_both_databases {
    ($($name:ident => $body:expr;)+) => {$(
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                ($body)(Kind::Sqlite)
            }

            #[test]
            fn postgres() {
                ($body)(Kind::Postgres)
            }
        }
    )+};
}

pub(crate) use on_both_databases;
