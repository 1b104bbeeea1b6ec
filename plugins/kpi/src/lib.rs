//! `toolbox.kpi`: the monthly KPIs of the business.

use serde_json::Value as Json;
use toolbox_finanzas::{
    rates,
    rebuild::{no_args_schema, rebuild_from_operations, NoArgs, Records},
};
use toolbox_plugin_api::prelude::*;

/// Rebuilds kpi_mensual: per month, operations, placements and income in PEN, distinct
/// clients and the average ticket, computed from the operations themselves.
#[task(name = "toolbox.kpi", max_retries = 3, retry_backoff = "5s")]
#[derive(Default)]
pub struct Kpi;

impl Task for Kpi {
    type Args = Option<NoArgs>;
    type Output = Records;

    fn run(&self, ctx: &Context<'_>, _args: Option<NoArgs>) -> Result<Records, TaskError> {
        // The average ticket rounds half up: (2 * sum + n) / (2 * n) in integers.
        let insert = format!(
            "INSERT INTO kpi_mensual \
                 (periodo, n_operaciones, colocaciones_pen, ingresos_pen, clientes_distintos, \
                  ticket_promedio_pen) \
             SELECT m.periodo, m.n, m.colocaciones, m.ingresos, m.clientes, \
                    (2 * m.colocaciones + m.n) / (2 * m.n) \
             FROM (SELECT op.periodo, COUNT(*) AS n, \
                          CAST(SUM(op.monto_neto_pen) AS BIGINT) AS colocaciones, \
                          CAST(SUM(op.ingresos_pen) AS BIGINT) AS ingresos, \
                          COUNT(DISTINCT op.cliente_id) AS clientes \
                   FROM {operations} op GROUP BY op.periodo) m",
            operations = rates::operations_in_pen(),
        );
        rebuild_from_operations(ctx, "kpi_mensual", &insert)
    }

    fn args_schema() -> Option<Json> {
        Some(no_args_schema())
    }
}

export_plugin!(Kpi);
