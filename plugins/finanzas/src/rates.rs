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

/// Every operation with its figures in PEN at the rate of its own date: the common
/// input of `tablas_reportes`, `kpi` and `kpi_acumulado`. Columns: `id, periodo,
/// cliente_id, moneda, monto_neto, monto_neto_pen, ingresos_pen`.
pub fn operations_in_pen() -> String {
    let venta = "c.venta";
    format!(
        "(SELECT c.id, SUBSTR(CAST(c.fecha_operacion AS TEXT), 1, 7) AS periodo, c.cliente_id, \
                 c.moneda, c.monto_neto, \
                 {monto} AS monto_neto_pen, {ingresos} AS ingresos_pen \
          FROM (SELECT o.*, CASE WHEN o.moneda = 'USD' THEN {rate} END AS venta \
                FROM operaciones o) c)",
        monto = to_pen("c.monto_neto", "c.moneda", venta),
        ingresos = to_pen("(c.interes + c.comision)", "c.moneda", venta),
        rate = venta_on("o.fecha_operacion"),
    )
}

#[derive(Deserialize)]
struct Uncovered {
    id: i64,
    fecha_operacion: String,
}

/// Fails, naming the date, when a USD operation has no rate on or before its date.
pub fn check_operations_covered(db: &Db<'_, '_>) -> Result<(), TaskError> {
    let uncovered: Option<Uncovered> = db.query_opt(
        "SELECT o.id, o.fecha_operacion FROM operaciones o \
         WHERE o.moneda = 'USD' \
           AND NOT EXISTS (SELECT 1 FROM tipo_cambio t WHERE t.fecha <= o.fecha_operacion) \
         ORDER BY o.fecha_operacion, o.id LIMIT 1",
        &[],
    )?;
    match uncovered {
        None => Ok(()),
        Some(op) => Err(TaskError::fatal(format!(
            "no exchange rate on or before {} to convert USD operation {} (load one with \
             toolbox.tipo_cambio)",
            op.fecha_operacion, op.id
        ))),
    }
}
