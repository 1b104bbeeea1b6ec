//! One run's database session: a pooled connection taken on the run's first query and
//! given back when the run ends, with any transaction it left open rolled back.
//!
//! Plugins are synchronous and run on blocking threads, so each call waits for its
//! query with `Handle::block_on` there, never on one of the runtime's own threads.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use serde_json::Value as Json;
use sqlx::{pool::PoolConnection, AssertSqlSafe, Postgres, Sqlite};
use tokio::runtime::Handle;

use super::{params, params::Param, rows, Database, Dialect};

/// Why a session call failed; [`SessionError::is_transient`] says whether a retry of
/// the task may help.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("this process has no database (start it with --database or DATABASE_URL)")]
    NoDatabase,
    #[error("the run has ended: its database session is closed")]
    Ended,
    #[error("bad parameters for `{sql}`: {reason}")]
    Params { sql: String, reason: String },
    #[error("`{sql}` failed: {source}")]
    Database {
        sql: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("no database connection: {0}")]
    Acquire(#[source] sqlx::Error),
    #[error("`{sql}` returned a value that cannot be passed to the plugin: {reason}")]
    Decode { sql: String, reason: String },
    #[error("{0}")]
    Transaction(&'static str),
}

impl SessionError {
    /// Connection trouble, pool exhaustion, serialization failures, deadlocks and busy
    /// locks pass; a wrong statement does not.
    pub fn is_transient(&self) -> bool {
        let source = match self {
            Self::Database { source, .. } | Self::Acquire(source) => source,
            _ => return false,
        };
        match source {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(error) => {
                let code = error.code().unwrap_or_default();
                // PostgreSQL: serialization failure, deadlock, lock not available,
                // too many connections, shutdown, connection exceptions (class 08).
                // SQLite: BUSY, LOCKED and their extended codes.
                matches!(
                    code.as_ref(),
                    "40001" | "40P01" | "55P03" | "53300" | "57P01" | "57P02" | "57P03"
                ) || code.starts_with("08")
                    || matches!(code.as_ref(), "5" | "6" | "261" | "517" | "262")
            }
            _ => false,
        }
    }
}

enum Connection {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

#[derive(Default)]
struct State {
    connection: Option<Connection>,
    in_transaction: bool,
    /// A transaction may still be open on the connection: close it rather than give it
    /// back to the pool.
    in_doubt: bool,
    ended: bool,
}

/// The database side of one run.
pub struct Session {
    database: Option<Database>,
    runtime: Option<Handle>,
    state: Mutex<State>,
}

impl Session {
    /// A session on `database`, whose queries run on `runtime`.
    pub fn new(database: Database, runtime: Handle) -> Self {
        Self {
            database: Some(database),
            runtime: Some(runtime),
            state: Mutex::default(),
        }
    }

    /// A session that refuses every call (a process without a database).
    pub fn none() -> Self {
        Self {
            database: None,
            runtime: None,
            state: Mutex::default(),
        }
    }

    pub fn dialect(&self) -> Result<Dialect, SessionError> {
        self.database
            .as_ref()
            .map(Database::dialect)
            .ok_or(SessionError::NoDatabase)
    }

    /// Runs `sql` with the parameters `params` (a JSON array) and returns its rows as a
    /// JSON array of objects.
    pub fn query(&self, sql: &str, params: &str) -> Result<String, SessionError> {
        refuse_transaction_control(sql)?;
        let params = params::parse_single(params).map_err(|reason| SessionError::Params {
            sql: abbreviate(sql),
            reason,
        })?;
        let sql: Arc<str> = Arc::from(sql);
        self.with_connection(|connection, runtime| {
            let rows = runtime.block_on(fetch(connection, &sql, &params))?;
            serde_json::to_string(&rows).map_err(|e| SessionError::Decode {
                sql: abbreviate(&sql),
                reason: e.to_string(),
            })
        })
    }

    /// Runs `sql` once per parameter list of `params` (a JSON array of arrays) and
    /// returns the rows affected in all. Several lists outside a transaction run in one
    /// of their own: all of them or none.
    pub fn execute(&self, sql: &str, params: &str) -> Result<u64, SessionError> {
        refuse_transaction_control(sql)?;
        let lists = params::parse_lists(params).map_err(|reason| SessionError::Params {
            sql: abbreviate(sql),
            reason,
        })?;
        let sql: Arc<str> = Arc::from(sql);
        let implicit = lists.len() > 1 && !self.lock().in_transaction;
        if implicit {
            self.transaction(Step::Begin)?;
        }
        let result = self.with_connection(|connection, runtime| {
            runtime.block_on(async {
                let mut affected = 0;
                for list in &lists {
                    affected += run(connection, &sql, list).await?;
                }
                Ok(affected)
            })
        });
        if implicit {
            match &result {
                Ok(_) => self.transaction(Step::Commit)?,
                Err(_) => {
                    let _ = self.transaction(Step::Rollback);
                }
            }
        }
        result
    }

    pub fn transaction(&self, step: Step) -> Result<(), SessionError> {
        let dialect = self.dialect()?;
        {
            let state = self.lock();
            match (step, state.in_transaction) {
                (Step::Begin, true) => {
                    return Err(SessionError::Transaction(
                        "a transaction is already open in this run (they do not nest)",
                    ))
                }
                (Step::Commit | Step::Rollback, false) => {
                    return Err(SessionError::Transaction(
                        "no transaction is open in this run",
                    ))
                }
                _ => {}
            }
        }
        let sql = match (step, dialect) {
            // IMMEDIATE takes SQLite's write lock now: a transaction that reads and
            // then writes could otherwise fail at its first write, unretried.
            (Step::Begin, Dialect::Sqlite) => "BEGIN IMMEDIATE",
            (Step::Begin, Dialect::Postgres) => "BEGIN",
            (Step::Commit, _) => "COMMIT",
            (Step::Rollback, _) => "ROLLBACK",
        };
        let sql: Arc<str> = Arc::from(sql);
        let result = self.with_connection(|connection, runtime| {
            runtime.block_on(run(connection, &sql, &[])).map(drop)
        });
        let result = match (step, result) {
            // PostgreSQL ends a transaction whose COMMIT fails; SQLite may keep it open
            // (a busy COMMIT can be retried). Roll back so that it is over on both: a
            // rollback of nothing is a warning on PostgreSQL, an error on SQLite that
            // only costs the connection below.
            (Step::Commit, Err(error)) => {
                let rollback: Arc<str> = Arc::from("ROLLBACK");
                let rolled_back = self.with_connection(|connection, runtime| {
                    runtime.block_on(run(connection, &rollback, &[])).map(drop)
                });
                if rolled_back.is_err() {
                    self.lock().in_doubt = true;
                }
                Err(error)
            }
            (_, result) => result,
        };
        let mut state = self.lock();
        match step {
            Step::Begin => state.in_transaction = result.is_ok(),
            Step::Commit => state.in_transaction = false,
            // A failed ROLLBACK leaves the connection in doubt: release() closes it.
            Step::Rollback => {
                state.in_transaction = false;
                state.in_doubt |= result.is_err();
            }
        }
        result
    }

    /// Ends the session: rolls back a transaction left open and gives the connection
    /// back to the pool (or closes it, if it cannot be trusted). Call it on the thread
    /// that ran the task, where blocking is allowed; later calls fail with
    /// [`SessionError::Ended`].
    pub fn release(&self) {
        let (connection, ending) = {
            let mut state = self.lock();
            state.ended = true;
            (state.connection.take(), Ending::of(&mut state))
        };
        if let (Some(connection), Some(runtime)) = (connection, &self.runtime) {
            runtime.block_on(give_back(connection, ending));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave State inconsistent in a way that
        // matters more than giving the connection back: take it as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_connection<T>(
        &self,
        body: impl FnOnce(&mut Connection, &Handle) -> Result<T, SessionError>,
    ) -> Result<T, SessionError> {
        let (Some(database), Some(runtime)) = (&self.database, &self.runtime) else {
            return Err(SessionError::NoDatabase);
        };
        let mut state = self.lock();
        if state.ended {
            return Err(SessionError::Ended);
        }
        if state.connection.is_none() {
            let started = Instant::now();
            let connection = runtime.block_on(async {
                match database {
                    Database::Sqlite(pool) => pool.acquire().await.map(Connection::Sqlite),
                    Database::Postgres(pool) => pool.acquire().await.map(Connection::Postgres),
                }
            });
            let connection = connection.map_err(SessionError::Acquire)?;
            tracing::debug!(
                wait_ms = started.elapsed().as_millis() as u64,
                "database session acquired"
            );
            state.connection = Some(connection);
        }
        let connection = state.connection.as_mut().expect("acquired above");
        body(connection, runtime)
    }
}

impl Drop for Session {
    /// A session dropped without [`Session::release`] (a run whose thread is gone):
    /// gives the connection back from a task, since this may be an async thread.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let ending = Ending::of(state);
        if let (Some(connection), Some(runtime)) = (state.connection.take(), &self.runtime) {
            runtime.spawn(give_back(connection, ending));
        }
    }
}

/// What `db_transaction` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Begin,
    Commit,
    Rollback,
}

/// How a session's connection is left when the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Clean,
    /// The run left its transaction open: roll it back.
    OpenTransaction,
    /// A rollback failed earlier: the connection's state is unknown.
    InDoubt,
}

impl Ending {
    fn of(state: &mut State) -> Self {
        let ending = if state.in_doubt {
            Self::InDoubt
        } else if state.in_transaction {
            Self::OpenTransaction
        } else {
            Self::Clean
        };
        state.in_transaction = false;
        state.in_doubt = false;
        ending
    }
}

async fn give_back(mut connection: Connection, ending: Ending) {
    match ending {
        // Dropping a PoolConnection returns it to the pool.
        Ending::Clean => return,
        Ending::OpenTransaction => {
            let rollback: Arc<str> = Arc::from("ROLLBACK");
            match run(&mut connection, &rollback, &[]).await {
                Ok(_) => {
                    tracing::debug!("rolled back a transaction the run left open");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot roll back a run's transaction; closing its connection");
                }
            }
        }
        Ending::InDoubt => {
            tracing::warn!("a run's connection may hold a transaction; closing it");
        }
    }
    let closed = match connection {
        Connection::Sqlite(c) => c.close().await,
        Connection::Postgres(c) => c.close().await,
    };
    if let Err(error) = closed {
        tracing::warn!(%error, "closing the connection failed");
    }
}

async fn run(
    connection: &mut Connection,
    sql: &Arc<str>,
    params: &[Param],
) -> Result<u64, SessionError> {
    let failed = |source| SessionError::Database {
        sql: abbreviate(sql),
        source,
    };
    match connection {
        Connection::Sqlite(c) => {
            let query = params::bind_sqlite(sqlx::query(AssertSqlSafe(Arc::clone(sql))), params);
            query
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected())
                .map_err(failed)
        }
        Connection::Postgres(c) => {
            let query = params::bind_postgres(sqlx::query(AssertSqlSafe(Arc::clone(sql))), params);
            query
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected())
                .map_err(failed)
        }
    }
}

async fn fetch(
    connection: &mut Connection,
    sql: &Arc<str>,
    params: &[Param],
) -> Result<Vec<Json>, SessionError> {
    let failed = |source| SessionError::Database {
        sql: abbreviate(sql),
        source,
    };
    let undecodable = |reason| SessionError::Decode {
        sql: abbreviate(sql),
        reason,
    };
    match connection {
        Connection::Sqlite(c) => {
            let query = params::bind_sqlite(sqlx::query(AssertSqlSafe(Arc::clone(sql))), params);
            let found = query.fetch_all(&mut **c).await.map_err(failed)?;
            found
                .iter()
                .map(rows::sqlite_row)
                .collect::<Result<_, _>>()
                .map_err(undecodable)
        }
        Connection::Postgres(c) => {
            let query = params::bind_postgres(sqlx::query(AssertSqlSafe(Arc::clone(sql))), params);
            let found = query.fetch_all(&mut **c).await.map_err(failed)?;
            found
                .iter()
                .map(rows::postgres_row)
                .collect::<Result<_, _>>()
                .map_err(undecodable)
        }
    }
}

/// A transaction the session does not know of would escape the rollback at the end of
/// the run (and leak into the next run's connection): transactions go through
/// [`Session::transaction`] only.
fn refuse_transaction_control(sql: &str) -> Result<(), SessionError> {
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    if matches!(
        first.as_str(),
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE"
    ) {
        return Err(SessionError::Transaction(
            "transaction statements are not allowed here: use the session's transaction \
             (ctx.db().transaction(...)), which the host rolls back if the run fails",
        ));
    }
    Ok(())
}

/// The start of a statement, for error messages.
fn abbreviate(sql: &str) -> String {
    let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(100) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_statements_are_refused_outside_the_session_api() {
        for sql in [
            "BEGIN",
            "  begin immediate",
            "COMMIT;",
            "(rollback)",
            "START TRANSACTION",
            "savepoint a",
            "END",
        ] {
            assert!(refuse_transaction_control(sql).is_err(), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "DELETE FROM ending",
        ] {
            assert!(refuse_transaction_control(sql).is_ok(), "{sql}");
        }
    }

    #[test]
    fn only_connection_trouble_is_transient() {
        assert!(SessionError::Acquire(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!SessionError::Transaction("x").is_transient());
        assert!(!SessionError::Database {
            sql: "SELECT".into(),
            source: sqlx::Error::RowNotFound
        }
        .is_transient());
    }
}
