//! An output table rebuilt whole in one transaction: readers see the old contents
//! until the new ones are committed, and a failure leaves the old ones in place.

use toolbox_plugin_api::{prelude::*, sdk::db::Db};

/// In one transaction: empties `table`, then lets `fill` check its inputs and write the
/// new rows (returning how many); commits only if `fill` succeeds.
pub fn rebuild(
    ctx: &Context<'_>,
    table: &str,
    fill: impl FnOnce(&Db<'_, '_>) -> Result<u64, TaskError>,
) -> Result<u64, TaskError> {
    ctx.progress(0, 2, &format!("rebuilding {table}"));
    let written = ctx.db().transaction(|db| {
        db.execute(&format!("DELETE FROM {table}"), &[])?;
        let written = fill(db)?;
        // A revoke or time limit that came while the statement ran: do not commit.
        ctx.check_cancelled()?;
        ctx.progress(1, 2, &format!("committing {written} rows"));
        Ok(written)
    })?;
    ctx.progress(2, 2, &format!("{table}: {written} rows"));
    Ok(written)
}

/// The arguments of a report computed from the whole input: none (`null` or `{}`).
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// What a rebuild returns.
#[derive(serde::Serialize)]
pub struct Records {
    pub records: u64,
}

/// The schema of [`NoArgs`]: nothing, or an empty object.
pub fn no_args_schema() -> serde_json::Value {
    serde_json::json!({"type": ["object", "null"], "additionalProperties": false})
}

/// Rebuilds `table` with `insert`, an `INSERT ... SELECT` over the operations in PEN,
/// after checking that every USD operation has a rate to convert at.
pub fn rebuild_from_operations(
    ctx: &Context<'_>,
    table: &str,
    insert: &str,
) -> Result<Records, TaskError> {
    let records = rebuild(ctx, table, |db| {
        crate::rates::check_operations_covered(db)?;
        db.execute(insert, &[])
    })?;
    Ok(Records { records })
}
