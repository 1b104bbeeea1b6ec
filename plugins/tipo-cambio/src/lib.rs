//! `toolbox.tipo_cambio`: loads exchange rates and fills the dates without a quote.

use std::collections::BTreeMap;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use toolbox_finanzas::{money::decimal_text, parse_date, parse_rate};
use toolbox_plugin_api::prelude::*;

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Args {
    /// Rates given inline.
    pub rates: Vec<RateIn>,
    /// A CSV file with the header `fecha,compra,venta`.
    pub csv_path: Option<String>,
    /// Fill every date without a quote up to this one with the last quoted rate.
    pub fill_until: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateIn {
    pub fecha: String,
    /// Decimal text ("3.7512") or a JSON number; at most 4 decimals.
    pub compra: Json,
    pub venta: Json,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Output {
    /// Rows written: quotes upserted plus dates filled.
    pub records: u64,
    pub upserted: u64,
    pub filled: u64,
}

/// Upserts exchange rates (PEN per USD) given inline and/or in a CSV file, then fills
/// each date without a quote up to fill_until with the last quoted rate (weekends,
/// holidays); a later quote for a filled date replaces it.
#[task(name = "toolbox.tipo_cambio", max_retries = 3, retry_backoff = "5s")]
#[derive(Default)]
pub struct TipoCambio;

/// One quote, exact: rates in ten-thousandths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quote {
    compra: i64,
    venta: i64,
}

impl Task for TipoCambio {
    type Args = Args;
    type Output = Output;

    fn run(&self, ctx: &Context<'_>, args: Args) -> Result<Output, TaskError> {
        if args.rates.is_empty() && args.csv_path.is_none() && args.fill_until.is_none() {
            return Err(TaskError::invalid_args(
                "nothing to do: give rates, csv_path and/or fill_until",
            ));
        }
        let fill_until = args
            .fill_until
            .as_deref()
            .map(parse_date)
            .transpose()
            .map_err(|e| TaskError::invalid_args(format!("fill_until: {e}")))?;
        let quotes = collect_quotes(&args)?;

        ctx.progress(0, 2, &format!("upserting {} rates", quotes.len()));
        let output = ctx.db().transaction(|db| {
            let rows: Vec<Vec<Value>> = quotes
                .iter()
                .map(|(fecha, (q, _))| {
                    vec![
                        Value::date(fecha.to_string()),
                        q.compra.into(),
                        q.venta.into(),
                    ]
                })
                .collect();
            db.execute_many(
                "INSERT INTO tipo_cambio (fecha, compra, venta, relleno) VALUES ($1, $2, $3, 0) \
                 ON CONFLICT (fecha) DO UPDATE \
                 SET compra = excluded.compra, venta = excluded.venta, relleno = 0",
                &rows,
            )?;
            ctx.check_cancelled()?;
            ctx.progress(1, 2, "filling dates without a quote");
            let filled = match fill_until {
                Some(until) => fill(db, until)?,
                None => 0,
            };
            Ok(Output {
                records: quotes.len() as u64 + filled,
                upserted: quotes.len() as u64,
                filled,
            })
        })?;
        ctx.progress(2, 2, &format!("{} rates written", output.records));
        Ok(output)
    }

    fn args_schema() -> Option<Json> {
        let date = json!({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"});
        let rate = json!({"type": ["string", "number"]});
        Some(json!({
            "type": "object",
            "properties": {
                "rates": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"fecha": date, "compra": rate, "venta": rate},
                    "required": ["fecha", "compra", "venta"],
                    "additionalProperties": false
                }},
                "csv_path": {"type": "string"},
                "fill_until": date
            },
            "additionalProperties": false
        }))
    }
}

/// The quotes of the arguments by date, each with where it came from; every bad row
/// is reported, and nothing is written if there is one.
fn collect_quotes(args: &Args) -> Result<BTreeMap<Date, (Quote, String)>, TaskError> {
    let mut quotes: BTreeMap<Date, (Quote, String)> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut unreadable = Vec::new();
    let mut add = |fecha: &str,
                   compra: Result<String, String>,
                   venta: Result<String, String>,
                   origin: String| {
        let parsed = (|| {
            let fecha = parse_date(fecha)?;
            let compra = parse_rate(&compra?).map_err(|e| format!("compra: {e}"))?;
            let venta = parse_rate(&venta?).map_err(|e| format!("venta: {e}"))?;
            if compra == 0 || venta == 0 {
                return Err("rates must be positive".to_owned());
            }
            Ok((fecha, Quote { compra, venta }))
        })();
        match parsed {
            Err(e) => problems.push(format!("{origin}: {e}")),
            Ok((fecha, quote)) => match quotes.get(&fecha) {
                Some((previous, first)) if *previous != quote => {
                    problems.push(format!("{origin}: {fecha} has a different rate in {first}"))
                }
                Some(_) => {}
                None => {
                    quotes.insert(fecha, (quote, origin));
                }
            },
        }
    };
    for (i, rate) in args.rates.iter().enumerate() {
        add(
            &rate.fecha,
            decimal_text(&rate.compra),
            decimal_text(&rate.venta),
            format!("rates[{i}]"),
        );
    }
    if let Some(path) = &args.csv_path {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| TaskError::invalid_args(format!("cannot read csv_path {path}: {e}")))?;
        let headers = reader
            .headers()
            .map_err(|e| TaskError::invalid_args(format!("{path}: cannot read the header: {e}")))?
            .clone();
        let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let (Some(fecha), Some(compra), Some(venta)) =
            (column("fecha"), column("compra"), column("venta"))
        else {
            return Err(TaskError::invalid_args(format!(
                "{path}: the header must name the columns fecha, compra and venta (it is {:?})",
                headers.iter().collect::<Vec<_>>()
            )));
        };
        for record in reader.records() {
            match record {
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    unreadable.push(format!("{path} line {line}: {e}"));
                }
                Ok(record) => {
                    let line = record.position().map_or(0, |p| p.line());
                    let field = |i: usize| {
                        record
                            .get(i)
                            .map(str::to_owned)
                            .ok_or_else(|| format!("missing column {i}"))
                    };
                    add(
                        record.get(fecha).unwrap_or_default(),
                        field(compra),
                        field(venta),
                        format!("{path} line {line}"),
                    );
                }
            }
        }
    }
    problems.extend(unreadable);
    if !problems.is_empty() {
        return Err(TaskError::invalid_args(format!(
            "{} bad rate(s), nothing written: {}",
            problems.len(),
            problems.join("; ")
        )));
    }
    Ok(quotes)
}

#[derive(Deserialize)]
struct Stored {
    fecha: String,
    compra: i64,
    venta: i64,
    relleno: i64,
}

/// Fills every date from the first quote up to `until` that has no quote of its own
/// with the last quote before it; refreshes earlier fills that a new quote changed.
fn fill(db: &toolbox_plugin_api::sdk::db::Db<'_, '_>, until: Date) -> Result<u64, TaskError> {
    let stored: Vec<Stored> = db.query(
        "SELECT fecha, compra, venta, relleno FROM tipo_cambio WHERE fecha <= $1 ORDER BY fecha",
        params![Value::date(until.to_string())],
    )?;
    let Some(first) = stored.first() else {
        return Err(TaskError::fatal(format!(
            "no exchange rate on or before {until} to fill from"
        )));
    };
    let mut by_date = BTreeMap::new();
    for row in &stored {
        let date = parse_date(&row.fecha).map_err(TaskError::fatal)?;
        by_date.insert(date, row);
    }
    let mut writes: Vec<Vec<Value>> = Vec::new();
    let mut day = parse_date(&first.fecha).map_err(TaskError::fatal)?;
    let mut last = Quote {
        compra: first.compra,
        venta: first.venta,
    };
    while day <= until {
        match by_date.get(&day) {
            Some(row) if row.relleno == 0 => {
                last = Quote {
                    compra: row.compra,
                    venta: row.venta,
                };
            }
            Some(row) if row.compra == last.compra && row.venta == last.venta => {}
            _ => writes.push(vec![
                Value::date(day.to_string()),
                last.compra.into(),
                last.venta.into(),
            ]),
        }
        day = match day.tomorrow() {
            Ok(next) => next,
            Err(_) => break,
        };
    }
    if writes.is_empty() {
        return Ok(0);
    }
    db.execute_many(
        "INSERT INTO tipo_cambio (fecha, compra, venta, relleno) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (fecha) DO UPDATE SET compra = excluded.compra, venta = excluded.venta \
         WHERE tipo_cambio.relleno = 1",
        &writes,
    )
}

export_plugin!(TipoCambio);
