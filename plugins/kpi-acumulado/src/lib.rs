//! `toolbox.kpi_acumulado`: year-to-date KPIs at the end of each month.

use serde_json::Value as Json;
use toolbox_finanzas::{
    rates,
    rebuild::{no_args_schema, rebuild_from_operations, NoArgs, Records},
};
use toolbox_plugin_api::prelude::*;

/// Rebuilds kpi_acumulado: per month, the figures from January 1 of its year to its
/// end: operations, placements and income in PEN, and distinct clients.
#[task(name = "toolbox.kpi_acumulado", max_retries = 3, retry_backoff = "5s")]
#[derive(Default)]
pub struct KpiAcumulado;

impl Task for KpiAcumulado {
    type Args = Option<NoArgs>;
    type Output = Records;

    fn run(&self, ctx: &Context<'_>, _args: Option<NoArgs>) -> Result<Records, TaskError> {
        // Running sums over each year's months. Distinct clients year to date do not
        // add up month by month, so each client counts once, in the first month of the
        // year it appears in, and those first appearances are summed.
        let ytd = "OVER (PARTITION BY m.anio ORDER BY m.periodo ROWS UNBOUNDED PRECEDING)";
        let insert = format!(
            "INSERT INTO kpi_acumulado \
                 (periodo, n_operaciones_ytd, colocaciones_pen_ytd, ingresos_pen_ytd, \
                  clientes_distintos_ytd) \
             SELECT m.periodo, \
                    CAST(SUM(m.n) {ytd} AS BIGINT), \
                    CAST(SUM(m.colocaciones) {ytd} AS BIGINT), \
                    CAST(SUM(m.ingresos) {ytd} AS BIGINT), \
                    CAST(SUM(COALESCE(nuevos.n, 0)) {ytd} AS BIGINT) \
             FROM (SELECT op.periodo, SUBSTR(op.periodo, 1, 4) AS anio, COUNT(*) AS n, \
                          CAST(SUM(op.monto_neto_pen) AS BIGINT) AS colocaciones, \
                          CAST(SUM(op.ingresos_pen) AS BIGINT) AS ingresos \
                   FROM {operations} op GROUP BY op.periodo) m \
             LEFT JOIN (SELECT primero.periodo, COUNT(*) AS n \
                        FROM (SELECT MIN(SUBSTR(CAST(o.fecha_operacion AS TEXT), 1, 7)) AS periodo \
                              FROM operaciones o \
                              GROUP BY SUBSTR(CAST(o.fecha_operacion AS TEXT), 1, 4), o.cliente_id) primero \
                        GROUP BY primero.periodo) nuevos \
                    ON nuevos.periodo = m.periodo",
            operations = rates::operations_in_pen(),
        );
        rebuild_from_operations(ctx, "kpi_acumulado", &insert)
    }

    fn args_schema() -> Option<Json> {
        Some(no_args_schema())
    }
}

export_plugin!(KpiAcumulado);
