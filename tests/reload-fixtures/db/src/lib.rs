//! Database tasks for the session tests: arbitrary statements (a test fixture only: a
//! real plugin never runs SQL from its arguments), and runs that end badly inside a
//! transaction.

use serde::Deserialize;
use serde_json::Value as Json;
use toolbox_plugin_api::prelude::*;

#[derive(Deserialize)]
pub struct Statement {
    sql: String,
    #[serde(default)]
    params: Vec<Json>,
}

/// The SDK's parameters from plain JSON, with `{"date": ...}` for dates.
fn params(values: &[Json]) -> Vec<Value> {
    values
        .iter()
        .map(|v| match v {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => n.as_i64().map_or(Value::Float(n.as_f64().unwrap_or_default()), Value::Int),
            Json::String(s) => Value::Text(s.clone()),
            Json::Object(o) => Value::date(o.get("date").and_then(Json::as_str).unwrap_or_default()),
            Json::Array(_) => Value::Null,
        })
        .collect()
}

/// Runs a query and returns its rows.
#[task(name = "fixture.db_query")]
#[derive(Default)]
pub struct Query;

impl Task for Query {
    type Args = Statement;
    type Output = Vec<Json>;

    fn run(&self, ctx: &Context<'_>, args: Statement) -> Result<Vec<Json>, TaskError> {
        ctx.db().query(&args.sql, &params(&args.params))
    }
}

/// Runs statements (one parameter list each) in one transaction; returns rows affected.
#[task(name = "fixture.db_execute")]
#[derive(Default)]
pub struct Execute;

impl Task for Execute {
    type Args = Vec<Statement>;
    type Output = u64;

    fn run(&self, ctx: &Context<'_>, args: Vec<Statement>) -> Result<u64, TaskError> {
        ctx.db().transaction(|db| {
            let mut affected = 0;
            for statement in &args {
                affected += db.execute(&statement.sql, &params(&statement.params))?;
            }
            Ok(affected)
        })
    }
}

/// Writes inside a transaction, then panics before it ends: the host must roll back.
#[task(name = "fixture.db_panic_in_transaction")]
#[derive(Default)]
pub struct PanicInTransaction;

impl Task for PanicInTransaction {
    type Args = Statement;
    type Output = ();

    fn run(&self, ctx: &Context<'_>, args: Statement) -> Result<(), TaskError> {
        ctx.db().transaction(|db| {
            db.execute(&args.sql, &params(&args.params))?;
            panic!("boom after writing");
        })
    }
}

/// Writes inside a transaction, then waits to be cancelled and ignores it for `ms`
/// more: a run that outlives its time limit with a transaction open.
#[task(name = "fixture.db_stuck_in_transaction", time_limit = "200ms")]
#[derive(Default)]
pub struct StuckInTransaction;

#[derive(Deserialize)]
pub struct Stuck {
    sql: String,
    ms: u64,
}

impl Task for StuckInTransaction {
    type Args = Stuck;
    type Output = ();

    fn run(&self, ctx: &Context<'_>, args: Stuck) -> Result<(), TaskError> {
        ctx.db().transaction(|db| {
            db.execute(&args.sql, &[])?;
            std::thread::sleep(std::time::Duration::from_millis(args.ms));
            Ok(())
        })
    }
}

export_plugin!(Query, Execute, PanicInTransaction, StuckInTransaction);
