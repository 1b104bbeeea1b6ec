//! `toolbox.etl`: loads raw operations with their invoices from a CSV or JSON Lines
//! file, idempotently.
//!
//! One row (CSV record or JSON line) per invoice, with its operation's fields repeated:
//!
//! `operacion_id, fecha_operacion, cliente_ruc, cliente_razon_social, moneda,
//! monto_neto, interes, comision, factura_numero, deudor_ruc, deudor_razon_social,
//! factura_monto, fecha_emision, fecha_vencimiento`
//!
//! Amounts are decimals with at most 2 places ("1500.25"), dates `YYYY-MM-DD`, RUCs 11
//! digits. Every row is checked; the valid ones are loaded in one transaction and each
//! rejected one is reported with its line number and reason.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use toolbox_finanzas::{money::decimal_text, parse_cents, parse_date};
use toolbox_plugin_api::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// A `.csv` file, or JSON Lines (`.jsonl`, `.ndjson`, `.json`).
    pub path: String,
}

#[derive(Serialize, Debug)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
}

#[derive(Serialize, Debug)]
pub struct Output {
    /// Valid rows (invoices) loaded.
    pub records: u64,
    pub operaciones: u64,
    pub facturas: u64,
    /// Rows the load inserted or changed in the database: 0 when the file was loaded
    /// before.
    pub changed: u64,
    pub rejected: Vec<Rejected>,
}

/// Loads raw operations and their invoices from a CSV or JSON Lines file (path):
/// validates every row, upserts clients, debtors, operations and invoices (running it
/// twice changes nothing) and reports each rejected row with its line number.
#[task(name = "toolbox.etl", max_retries = 3, retry_backoff = "5s")]
#[derive(Default)]
pub struct Etl;

const COLUMNS: [&str; 14] = [
    "operacion_id",
    "fecha_operacion",
    "cliente_ruc",
    "cliente_razon_social",
    "moneda",
    "monto_neto",
    "interes",
    "comision",
    "factura_numero",
    "deudor_ruc",
    "deudor_razon_social",
    "factura_monto",
    "fecha_emision",
    "fecha_vencimiento",
];

/// One row as read: column name → text.
type RawRow = HashMap<String, String>;

/// A row of the file with its line number; `Err` when it could not even be read.
type NumberedRow = (u64, Result<RawRow, String>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Operation {
    id: i64,
    fecha: String,
    cliente_ruc: String,
    moneda: String,
    monto_neto: i64,
    interes: i64,
    comision: i64,
}

#[derive(Debug, Clone)]
struct Invoice {
    operacion_id: i64,
    numero: String,
    deudor_ruc: String,
    monto: i64,
    emision: String,
    vencimiento: String,
}

#[derive(Debug, Clone)]
struct Row {
    operation: Operation,
    cliente_razon_social: String,
    invoice: Invoice,
    deudor_razon_social: String,
}

impl Task for Etl {
    type Args = Args;
    type Output = Output;

    fn run(&self, ctx: &Context<'_>, args: Args) -> Result<Output, TaskError> {
        let lines = read(&args.path)?;
        let total = lines.len() as u64;
        let mut rejected = Vec::new();
        let mut rows: Vec<Row> = Vec::new();
        let mut operations: BTreeMap<i64, (Operation, u64)> = BTreeMap::new();
        let mut invoices: HashSet<(i64, String)> = HashSet::new();
        for (line, raw) in lines {
            let row = match raw.and_then(|raw| parse_row(&raw)) {
                Ok(row) => row,
                Err(reason) => {
                    rejected.push(Rejected { line, reason });
                    continue;
                }
            };
            let op = &row.operation;
            if let Some((first, first_line)) = operations.get(&op.id) {
                if first != op {
                    rejected.push(Rejected {
                        line,
                        reason: format!(
                            "operation {} differs from its first row (line {first_line}) in \
                             its date, client, currency or amounts",
                            op.id
                        ),
                    });
                    continue;
                }
            }
            if !invoices.insert((op.id, row.invoice.numero.clone())) {
                rejected.push(Rejected {
                    line,
                    reason: format!(
                        "invoice {} of operation {} appears twice in the file",
                        row.invoice.numero, op.id
                    ),
                });
                continue;
            }
            operations
                .entry(op.id)
                .or_insert_with(|| (op.clone(), line));
            rows.push(row);
        }
        ctx.progress(
            0,
            total,
            &format!("{} valid rows, {} rejected", rows.len(), rejected.len()),
        );

        let changed = ctx.db().transaction(|db| load(ctx, db, &rows, total))?;
        Ok(Output {
            records: rows.len() as u64,
            operaciones: operations.len() as u64,
            facturas: rows.len() as u64,
            changed,
            rejected,
        })
    }

    fn args_schema() -> Option<Json> {
        Some(json!({
            "type": "object",
            "properties": {"path": {"type": "string", "minLength": 1}},
            "required": ["path"],
            "additionalProperties": false
        }))
    }
}

/// The file's rows with their line numbers; a row that cannot be read is an `Err`.
fn read(path: &str) -> Result<Vec<NumberedRow>, TaskError> {
    let cannot =
        |e: &dyn std::fmt::Display| TaskError::invalid_args(format!("cannot read {path}: {e}"));
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_path(path)
            .map_err(|e| cannot(&e))?;
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| cannot(&e))?
            .iter()
            .map(str::to_ascii_lowercase)
            .collect();
        let missing: Vec<&str> = COLUMNS
            .iter()
            .filter(|c| !headers.iter().any(|h| h == *c))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(TaskError::invalid_args(format!(
                "{path}: the header lacks the column(s) {}",
                missing.join(", ")
            )));
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            rows.push(match record {
                Err(e) => (
                    e.position().map_or(0, |p| p.line()),
                    Err(format!("unreadable CSV: {e}")),
                ),
                Ok(record) => {
                    let line = record.position().map_or(0, |p| p.line());
                    if record.len() != headers.len() {
                        (
                            line,
                            Err(format!(
                                "{} fields where the header has {}",
                                record.len(),
                                headers.len()
                            )),
                        )
                    } else {
                        let raw = headers
                            .iter()
                            .cloned()
                            .zip(record.iter().map(str::to_owned))
                            .collect();
                        (line, Ok(raw))
                    }
                }
            });
        }
        Ok(rows)
    } else if [".jsonl", ".ndjson", ".json"]
        .iter()
        .any(|ext| lower.ends_with(ext))
    {
        let text = std::fs::read_to_string(path).map_err(|e| cannot(&e))?;
        Ok(text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                let raw = serde_json::from_str::<serde_json::Map<String, Json>>(line)
                    .map_err(|e| format!("not a JSON object: {e}"))
                    .and_then(|object| {
                        object
                            .into_iter()
                            .map(|(key, value)| {
                                let text = match &value {
                                    Json::String(s) => Ok(s.clone()),
                                    Json::Number(_) => decimal_text(&value),
                                    Json::Null => Ok(String::new()),
                                    other => Err(format!("{key}: {other} is not a value")),
                                }?;
                                Ok((key.to_ascii_lowercase(), text))
                            })
                            .collect()
                    });
                (i as u64 + 1, raw)
            })
            .collect())
    } else {
        Err(TaskError::invalid_args(format!(
            "{path}: unknown format; use a .csv or a JSON Lines (.jsonl) file"
        )))
    }
}

fn parse_row(raw: &RawRow) -> Result<Row, String> {
    let get = |name: &str| -> Result<&str, String> {
        match raw.get(name).map(|s| s.trim()) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(format!("{name} is missing")),
        }
    };
    let ruc = |name: &str| -> Result<String, String> {
        let value = get(name)?;
        if value.len() == 11 && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(value.to_owned())
        } else {
            Err(format!("{name} {value:?} is not a RUC (11 digits)"))
        }
    };
    let date = |name: &str| -> Result<String, String> {
        parse_date(get(name)?)
            .map(|d| d.to_string())
            .map_err(|e| format!("{name}: {e}"))
    };
    let amount = |name: &str| -> Result<i64, String> {
        parse_cents(get(name)?).map_err(|e| format!("{name}: {e}"))
    };
    let id_text = get("operacion_id")?;
    let id: i64 = id_text
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| format!("operacion_id {id_text:?} is not a positive integer"))?;
    let moneda = get("moneda")?.to_ascii_uppercase();
    if moneda != "PEN" && moneda != "USD" {
        return Err(format!("moneda {moneda:?} is neither PEN nor USD"));
    }
    let monto = amount("factura_monto")?;
    if monto == 0 {
        return Err("factura_monto must be positive".to_owned());
    }
    let emision = date("fecha_emision")?;
    let vencimiento = date("fecha_vencimiento")?;
    if vencimiento < emision {
        return Err(format!(
            "fecha_vencimiento {vencimiento} is before fecha_emision {emision}"
        ));
    }
    Ok(Row {
        operation: Operation {
            id,
            fecha: date("fecha_operacion")?,
            cliente_ruc: ruc("cliente_ruc")?,
            moneda,
            monto_neto: amount("monto_neto")?,
            interes: amount("interes")?,
            comision: amount("comision")?,
        },
        cliente_razon_social: get("cliente_razon_social")?.to_owned(),
        invoice: Invoice {
            operacion_id: id,
            numero: get("factura_numero")?.to_owned(),
            deudor_ruc: ruc("deudor_ruc")?,
            monto,
            emision,
            vencimiento,
        },
        deudor_razon_social: get("deudor_razon_social")?.to_owned(),
    })
}

/// Upserts everything; each statement changes a row only if its values differ, so
/// the count it returns is what really changed.
fn load(
    ctx: &Context<'_>,
    db: &toolbox_plugin_api::sdk::db::Db<'_, '_>,
    rows: &[Row],
    total: u64,
) -> Result<u64, TaskError> {
    let mut changed = 0;
    let mut clientes = BTreeMap::new();
    let mut deudores = BTreeMap::new();
    let mut operations = BTreeMap::new();
    for row in rows {
        clientes.insert(
            row.operation.cliente_ruc.clone(),
            row.cliente_razon_social.clone(),
        );
        deudores.insert(
            row.invoice.deudor_ruc.clone(),
            row.deudor_razon_social.clone(),
        );
        operations.insert(row.operation.id, row.operation.clone());
    }
    for (table, parties) in [("clientes", &clientes), ("deudores", &deudores)] {
        let params: Vec<Vec<Value>> = parties
            .iter()
            .map(|(ruc, name)| params![ruc, name].to_vec())
            .collect();
        changed += db.execute_many(
            &format!(
                "INSERT INTO {table} (ruc, razon_social) VALUES ($1, $2) \
                 ON CONFLICT (ruc) DO UPDATE SET razon_social = excluded.razon_social \
                 WHERE {table}.razon_social <> excluded.razon_social"
            ),
            &params,
        )?;
    }
    ctx.check_cancelled()?;
    let params: Vec<Vec<Value>> = operations
        .values()
        .map(|op| {
            params![
                op.id,
                op.cliente_ruc.as_str(),
                Value::date(&op.fecha),
                op.moneda.as_str(),
                op.monto_neto,
                op.interes,
                op.comision
            ]
            .to_vec()
        })
        .collect();
    changed += db.execute_many(
        "INSERT INTO operaciones \
             (id, cliente_id, fecha_operacion, moneda, monto_neto, interes, comision) \
         VALUES ($1, (SELECT id FROM clientes WHERE ruc = $2), $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET cliente_id = excluded.cliente_id, \
             fecha_operacion = excluded.fecha_operacion, moneda = excluded.moneda, \
             monto_neto = excluded.monto_neto, interes = excluded.interes, \
             comision = excluded.comision \
         WHERE (operaciones.cliente_id, operaciones.fecha_operacion, operaciones.moneda, \
                operaciones.monto_neto, operaciones.interes, operaciones.comision) \
            <> (excluded.cliente_id, excluded.fecha_operacion, excluded.moneda, \
                excluded.monto_neto, excluded.interes, excluded.comision)",
        &params,
    )?;
    ctx.progress(total / 2, total, "operations loaded");
    ctx.check_cancelled()?;
    const BATCH: usize = 1_000;
    for (i, chunk) in rows.chunks(BATCH).enumerate() {
        let params: Vec<Vec<Value>> = chunk
            .iter()
            .map(|row| {
                let f = &row.invoice;
                params![
                    f.operacion_id,
                    f.deudor_ruc.as_str(),
                    f.numero.as_str(),
                    f.monto,
                    Value::date(&f.emision),
                    Value::date(&f.vencimiento)
                ]
                .to_vec()
            })
            .collect();
        changed += db.execute_many(
            "INSERT INTO facturas \
                 (operacion_id, deudor_id, numero, monto, fecha_emision, fecha_vencimiento) \
             VALUES ($1, (SELECT id FROM deudores WHERE ruc = $2), $3, $4, $5, $6) \
             ON CONFLICT (operacion_id, numero) DO UPDATE SET deudor_id = excluded.deudor_id, \
                 monto = excluded.monto, fecha_emision = excluded.fecha_emision, \
                 fecha_vencimiento = excluded.fecha_vencimiento \
             WHERE (facturas.deudor_id, facturas.monto, facturas.fecha_emision, \
                    facturas.fecha_vencimiento) \
                <> (excluded.deudor_id, excluded.monto, excluded.fecha_emision, \
                    excluded.fecha_vencimiento)",
            &params,
        )?;
        ctx.check_cancelled()?;
        let done = ((i + 1) * BATCH).min(rows.len()) as u64;
        ctx.progress(total / 2 + done / 2, total, "invoices loaded");
    }
    Ok(changed)
}

export_plugin!(Etl);
