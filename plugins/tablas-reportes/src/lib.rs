//! `toolbox.tablas_reportes`: one denormalized row per operation, for reporting.

use serde_json::Value as Json;
use toolbox_finanzas::{
    rates,
    rebuild::{no_args_schema, rebuild_from_operations, NoArgs, Records},
};
use toolbox_plugin_api::prelude::*;

/// Rebuilds reporte_operaciones: one row per operation with its client, period, amount
/// and income converted to PEN at the rate of its date, and its number of invoices.
#[task(
    name = "toolbox.tablas_reportes",
    max_retries = 3,
    retry_backoff = "5s"
)]
#[derive(Default)]
pub struct TablasReportes;

impl Task for TablasReportes {
    type Args = Option<NoArgs>;
    type Output = Records;

    fn run(&self, ctx: &Context<'_>, _args: Option<NoArgs>) -> Result<Records, TaskError> {
        let insert = format!(
            "INSERT INTO reporte_operaciones \
                 (operacion_id, periodo, cliente_id, razon_social, moneda, monto_neto, \
                  monto_neto_pen, ingresos_pen, n_facturas) \
             SELECT op.id, op.periodo, op.cliente_id, c.razon_social, op.moneda, op.monto_neto, \
                    op.monto_neto_pen, op.ingresos_pen, \
                    (SELECT COUNT(*) FROM facturas f WHERE f.operacion_id = op.id) \
             FROM {operations} op \
             JOIN clientes c ON c.id = op.cliente_id",
            operations = rates::operations_in_pen(),
        );
        rebuild_from_operations(ctx, "reporte_operaciones", &insert)
    }

    fn args_schema() -> Option<Json> {
        Some(no_args_schema())
    }
}

export_plugin!(TablasReportes);
