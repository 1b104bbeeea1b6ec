//! The tasks' database: one `sqlx` pool per process, SQLite by default, PostgreSQL when
//! the URL says so, and the session each run borrows from it.
//!
//! The pool is an enum over the two native pools rather than `AnyPool`: `AnyPool`
//! cannot decode PostgreSQL NUMERIC or DATE, and its query builder emits `?`, which
//! PostgreSQL rejects. Plugins write `$N` placeholders, which both accept.

mod params;
mod rows;
pub mod seed;
mod session;

use std::{str::FromStr, time::Duration};

use sqlx::{
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions},
};

pub use session::{Session, SessionError, Step};
/// Which SQL the database speaks: the plugins' own type, so that host and SDK agree on
/// the names that cross the ABI.
pub use toolbox_plugin_api::sdk::db::Dialect;

/// The embedded database: a SQLite file in the working folder.
pub const DEFAULT_DATABASE: &str = "sqlite://toolbox.sqlite";

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("{url} is not a database URL toolbox knows (sqlite://PATH or postgres://...)")]
    UnsupportedUrl { url: String },
    #[error("invalid database URL {url}: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{table} already has {rows} rows: seed an empty database, or pass --replace")]
    NotEmpty { table: &'static str, rows: i64 },
    #[error("{context}: {source}")]
    Query {
        context: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Settings of the pool.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Connections at most: runs beyond it wait for one to come back.
    pub max_connections: u32,
    /// How long a run waits for a connection before its query fails (retryably).
    pub acquire_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// The process's connection pool (cheap to clone).
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Database {
    /// Opens the pool, lazily: nothing connects (and no SQLite file is created) until a
    /// run first uses its session or the database is migrated. A worker thus starts
    /// while the database is down, and its tasks fail (and retry) until it is back.
    pub async fn connect(url: &str, config: &DatabaseConfig) -> Result<Self, DatabaseError> {
        let invalid = |source| DatabaseError::InvalidUrl {
            url: redact(url),
            source,
        };
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(invalid)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                // A rebuild holds the write lock for its whole transaction; a second
                // writer waits for it rather than failing at once.
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(config.max_connections.max(1))
                .acquire_timeout(config.acquire_timeout)
                .connect_lazy_with(options);
            Ok(Self::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url).map_err(invalid)?;
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections.max(1))
                .acquire_timeout(config.acquire_timeout)
                .connect_lazy_with(options);
            Ok(Self::Postgres(pool))
        } else {
            Err(DatabaseError::UnsupportedUrl { url: redact(url) })
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Creates or updates the schema of DOMAIN.md (migrations embedded in the binary).
    pub async fn migrate(&self) -> Result<(), DatabaseError> {
        match self {
            Self::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Self::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers (the API's readiness).
    pub async fn ping(&self) -> Result<(), DatabaseError> {
        let result = match self {
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        };
        result.map_err(|source| DatabaseError::Query {
            context: "the database does not answer".to_owned(),
            source,
        })
    }

    /// Closes every connection (waits for borrowed ones to come back).
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }

    /// Connections open and idle, for logs and tests: `(size, idle)`.
    pub fn pool_state(&self) -> (u32, usize) {
        match self {
            Self::Sqlite(pool) => (pool.size(), pool.num_idle()),
            Self::Postgres(pool) => (pool.size(), pool.num_idle()),
        }
    }
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/toolbox"),
            "postgres://app:***@db:5432/toolbox"
        );
        assert_eq!(
            redact("postgres://app@db/toolbox"),
            "postgres://app@db/toolbox"
        );
        assert_eq!(redact("sqlite://toolbox.sqlite"), "sqlite://toolbox.sqlite");
    }

    #[tokio::test]
    async fn an_unknown_scheme_is_refused_with_the_url() {
        let error = Database::connect("mysql://x/y", &DatabaseConfig::default())
            .await
            .unwrap_err();
        assert!(error.to_string().contains("mysql://x/y"), "{error}");
    }
}
