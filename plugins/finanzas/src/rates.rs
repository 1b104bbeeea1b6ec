//! The conversion rule of DOMAIN.md, in SQL that both databases run.
//!
//! An amount in USD on date D converts to PEN at the `venta` rate of D or, if D has
//! none, of the latest earlier date that has one; no rate on or before D is an error
//! that names D. Rates are ten-thousandths, amounts céntimos: the PEN amount is
//! `(usd * venta + 5000) / 10000`, which rounds half up for the non-negative amounts
//! of this domain (integer division truncates on both databases).

use serde::Deserialize;
use toolbox_plugin_api::{prelude::*, sdk::db::Db};

/// The `venta` rate that applies on the date expression `on` (NULL when none does).
pub fn venta_on(on: &str) -> String {
    format!(
        "(SELECT t.venta FROM tipo_cambio t WHERE t.fecha <= {on} ORDER BY t.fecha DESC LIMIT 1)"
    )
}

/// `amount` (céntimos, in currency column `moneda`) converted to PEN with the rate
/// expression `venta` (ten-thousandths), rounded half up to the céntimo.
pub fn to_pen(amount: &str, moneda: &str, venta: &str) -> String {
    format!(
        "(CASE WHEN {moneda} = 'USD' THEN ({amount} * {venta} + 5000) / 10000 ELSE {amount} END)"
    )
}

/// One row per date that has operations: `fecha`, its `periodo` (`YYYY-MM`) and the
/// `venta` rate that applies on it (NULL when none does).
///
/// The rate is looked up once per date (about 1,500 for four years), not once per USD
/// operation: in the operations' own select list, both databases ran the lookup twice
/// per USD operation (once per reference, the subquery being inlined), 600,000 index
/// probes for 1,000,000 operations.
fn operation_dates() -> String {
    format!(
        "(SELECT o.fecha_operacion AS fecha, \
                 SUBSTR(CAST(o.fecha_operacion AS TEXT), 1, 7) AS periodo, {rate} AS venta \
          FROM operaciones o GROUP BY o.fecha_operacion)",
        rate = venta_on("o.fecha_operacion"),
    )
}

/// Every operation with its figures in PEN at the rate of its own date: the common
/// input of `tablas_reportes`, `kpi` and `kpi_acumulado`. Columns: `id, periodo,
/// cliente_id, moneda, monto_neto, monto_neto_pen, ingresos_pen`.
///
/// Joined to [`operation_dates`]. Over 1,000,000 seeded operations, the rebuild's
/// statement on PostgreSQL went from 3.4 s to 1.5 s (kpi), 3.6 s to 1.4 s
/// (kpi_acumulado) and 10.0 s to 7.8 s (tablas_reportes, mostly writing 1,000,000
/// rows); SQLite is unchanged within noise (1.5 s, 2.4 s, 2.5 s). Every date is in
/// `d`: the LEFT JOIN only makes SQLite scan the operations and probe the dates rather
/// than the other way round (a random read per operation through operaciones_fecha).
pub fn operations_in_pen() -> String {
    format!(
        "(SELECT o.id, d.periodo, o.cliente_id, o.moneda, o.monto_neto, \
                 {monto} AS monto_neto_pen, {ingresos} AS ingresos_pen \
          FROM operaciones o LEFT JOIN {dates} d ON d.fecha = o.fecha_operacion)",
        monto = to_pen("o.monto_neto", "o.moneda", "d.venta"),
        ingresos = to_pen("(o.interes + o.comision)", "o.moneda", "d.venta"),
        dates = operation_dates(),
    )
}

#[derive(Deserialize)]
struct Uncovered {
    id: i64,
    fecha_operacion: String,
}

/// Fails, naming the date, when a USD operation has no rate on or before its date.
///
/// Those are exactly the USD operations dated before the first rate (all of them when
/// there is none), found through operaciones_fecha. The `NOT EXISTS` per USD operation
/// this replaces made PostgreSQL walk every operation in date order (its plan bet on an
/// early hit for `LIMIT 1`): 5.0 s of every kpi, kpi_acumulado and tablas_reportes run
/// over 1,000,000 operations, now 0.1 ms (SQLite: 0.15 s before).
pub fn check_operations_covered(db: &Db<'_, '_>) -> Result<(), TaskError> {
    let first_rate: Option<String> =
        db.query_scalar("SELECT MIN(fecha) AS fecha FROM tipo_cambio", &[])?;
    let usd = "SELECT o.id, o.fecha_operacion FROM operaciones o WHERE o.moneda = 'USD'";
    let order = "ORDER BY o.fecha_operacion, o.id LIMIT 1";
    let uncovered: Option<Uncovered> = match first_rate {
        Some(first) => db.query_opt(
            &format!("{usd} AND o.fecha_operacion < $1 {order}"),
            &[Value::date(first)],
        )?,
        None => db.query_opt(&format!("{usd} {order}"), &[])?,
    };
    match uncovered {
        None => Ok(()),
        Some(op) => Err(TaskError::fatal(format!(
            "no exchange rate on or before {} to convert USD operation {} (load one with \
             toolbox.tipo_cambio)",
            op.fecha_operacion, op.id
        ))),
    }
}
