//! The run's database session, as a plugin sees it: typed parameters in, rows
//! deserialized into the plugin's own structs out.
//!
//! The host owns the pool (SQLite by default, PostgreSQL in production). Write SQL with
//! `$1`, `$2`, ... placeholders: they work on both. Where the two dialects differ (date
//! arithmetic, mostly), [`Db::dialect`] says which one the session speaks.
//!
//! ```no_run
//! use toolbox_plugin_api::prelude::*;
//! use toolbox_plugin_api::sdk::db::Value;
//!
//! #[derive(serde::Deserialize)]
//! struct Rate {
//!     fecha: String,
//!     venta: i64,
//! }
//!
//! fn latest(ctx: &Context<'_>, on: &str) -> Result<Option<Rate>, TaskError> {
//!     ctx.db().query_opt(
//!         "SELECT fecha, venta FROM tipo_cambio WHERE fecha <= $1 ORDER BY fecha DESC LIMIT 1",
//!         &[Value::date(on)],
//!     )
//! }
//! ```

use abi_stable::std_types::{RResult, RStr};
use serde::{de::DeserializeOwned, Serialize};

use super::TaskError;
use crate::abi::{HostContextRef, RunError, TransactionStep};

/// One statement parameter.
///
/// On the wire (the ABI's JSON) a value is itself, except a date, which is
/// `{"date": "YYYY-MM-DD"}`: PostgreSQL wants a typed date where a `date` column is
/// compared or written, SQLite stores it as that text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Date { date: String },
}

impl Value {
    /// A calendar date, `YYYY-MM-DD` (the host checks it and names the parameter if not).
    pub fn date(date: impl Into<String>) -> Self {
        Self::Date { date: date.into() }
    }
}

macro_rules! value_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Self::Int(i64::from(v))
            }
        }
    )*};
}
value_from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// Builds a `&[Value]` from anything that converts: `params![id, "PEN", Value::date(d)]`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::sdk::db::Value] };
    ($($value:expr),+ $(,)?) => {
        &[$($crate::sdk::db::Value::from($value)),+]
    };
}

/// The SQL dialect of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The name the host sends across the ABI (`db_dialect`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Sqlite, Self::Postgres]
            .into_iter()
            .find(|d| d.name() == name)
    }

    /// An SQL expression for the number of days from date `earlier` to date `later`
    /// (both SQL expressions), as an integer.
    pub fn days_between(self, earlier: &str, later: &str) -> String {
        match self {
            Self::Sqlite => {
                format!("CAST(julianday({later}) - julianday({earlier}) AS INTEGER)")
            }
            Self::Postgres => format!("(CAST({later} AS DATE) - CAST({earlier} AS DATE))"),
        }
    }
}

/// The run's database session; see the module documentation.
pub struct Db<'c, 'a> {
    host: &'c HostContextRef<'a>,
}

impl<'c, 'a> Db<'c, 'a> {
    pub(crate) fn new(host: &'c HostContextRef<'a>) -> Self {
        Self { host }
    }

    /// Which database the session talks to.
    pub fn dialect(&self) -> Result<Dialect, TaskError> {
        let name = abi(self.host.db_dialect())?;
        Dialect::from_name(&name).ok_or_else(|| {
            TaskError::fatal(format!(
                "the host speaks a database dialect this plugin does not know: {name}"
            ))
        })
    }

    /// Runs `sql` and deserializes every row (an object keyed by column name) into `R`.
    pub fn query<R: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<R>, TaskError> {
        let rows = abi(self
            .host
            .db_query(RStr::from_str(sql), RStr::from_str(&encode(params)?)))?;
        serde_json::from_str(&rows).map_err(|e| {
            TaskError::fatal(format!(
                "rows of `{}` do not fit the type {}: {e}",
                abbreviate(sql),
                std::any::type_name::<R>()
            ))
        })
    }

    /// Like [`query`](Self::query), for a statement that returns at most one row.
    pub fn query_opt<R: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<Option<R>, TaskError> {
        let mut rows = self.query::<R>(sql, params)?;
        if rows.len() > 1 {
            return Err(TaskError::fatal(format!(
                "`{}` returned {} rows where at most one was expected",
                abbreviate(sql),
                rows.len()
            )));
        }
        Ok(rows.pop())
    }

    /// Like [`query`](Self::query), for a statement that returns exactly one row.
    pub fn query_one<R: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<R, TaskError> {
        self.query_opt(sql, params)?.ok_or_else(|| {
            TaskError::fatal(format!(
                "`{}` returned no row where one was expected",
                abbreviate(sql)
            ))
        })
    }

    /// The single column of the single row `sql` returns (`SELECT COUNT(*) ...`).
    pub fn query_scalar<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[Value],
    ) -> Result<T, TaskError> {
        let row: serde_json::Map<String, serde_json::Value> = self.query_one(sql, params)?;
        if row.len() != 1 {
            return Err(TaskError::fatal(format!(
                "`{}` returned {} columns where one was expected",
                abbreviate(sql),
                row.len()
            )));
        }
        let value = row.into_iter().next().map(|(_, v)| v);
        serde_json::from_value(value.unwrap_or_default()).map_err(|e| {
            TaskError::fatal(format!(
                "the value of `{}` does not fit the type {}: {e}",
                abbreviate(sql),
                std::any::type_name::<T>()
            ))
        })
    }

    /// Runs a statement and returns the number of rows it affected.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, TaskError> {
        self.execute_many(sql, &[params])
    }

    /// Runs one statement once per parameter list, in a single call to the host (one
    /// prepared statement), and returns the total of rows affected.
    pub fn execute_many<P: AsRef<[Value]>>(
        &self,
        sql: &str,
        params: &[P],
    ) -> Result<u64, TaskError> {
        let lists: Vec<&[Value]> = params.iter().map(AsRef::as_ref).collect();
        abi(self
            .host
            .db_execute(RStr::from_str(sql), RStr::from_str(&encode(&lists)?)))
    }

    /// Runs `body` in a transaction: committed when it returns `Ok`, rolled back when it
    /// returns `Err` (and by the host if the run panics or stops inside it).
    pub fn transaction<T>(
        &self,
        body: impl FnOnce(&Self) -> Result<T, TaskError>,
    ) -> Result<T, TaskError> {
        abi(self.host.db_transaction(TransactionStep::BEGIN))?;
        match body(self) {
            Ok(value) => {
                abi(self.host.db_transaction(TransactionStep::COMMIT))?;
                Ok(value)
            }
            Err(error) => {
                // The body's error is the one worth reporting; a failed rollback leaves
                // the transaction to the host, which rolls it back at the end of the run.
                let _ = self.host.db_transaction(TransactionStep::ROLLBACK);
                Err(error)
            }
        }
    }
}

fn abi<T>(result: RResult<T, RunError>) -> Result<T, TaskError> {
    result
        .into_result()
        .map_err(|e| TaskError::new(e.kind, e.message))
}

fn encode<T: Serialize + ?Sized>(params: &T) -> Result<String, TaskError> {
    serde_json::to_string(params)
        .map_err(|e| TaskError::fatal(format!("cannot encode the statement's parameters: {e}")))
}

/// The start of a statement, for error messages.
fn abbreviate(sql: &str) -> String {
    let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_encode_as_plain_json_and_dates_as_tagged_objects() {
        let params = [
            Value::from(7),
            Value::from("PEN"),
            Value::date("2024-02-29"),
            Value::from(None::<i64>),
            Value::from(1.5),
            Value::from(true),
        ];
        assert_eq!(
            encode(&params[..]).unwrap(),
            r#"[7,"PEN",{"date":"2024-02-29"},null,1.5,true]"#
        );
    }

    #[test]
    fn days_between_differs_per_dialect() {
        assert_eq!(
            Dialect::Postgres.days_between("a.d", "$1"),
            "(CAST($1 AS DATE) - CAST(a.d AS DATE))"
        );
        assert!(Dialect::Sqlite
            .days_between("a.d", "$1")
            .contains("julianday($1) - julianday(a.d)"));
    }

    #[test]
    fn long_statements_are_abbreviated_in_messages() {
        let sql = format!("SELECT {}", "x, ".repeat(100));
        assert!(abbreviate(&sql).ends_with('…'));
        assert_eq!(abbreviate("SELECT\n  1"), "SELECT 1");
    }
}
