//! `toolbox db seed`: deterministic, realistic factoring data for tests, demos and
//! benchmarks.
//!
//! Four years of operations (2022–2025) in PEN and USD; exchange rates on weekdays only,
//! with gaps on weekends and a few holidays; invoices paid on time, late, partially and
//! not at all. The same `--seed` and size always give the same rows.

use chrono::{Datelike, Duration as Days, NaiveDate, Weekday};
use sqlx::{Postgres, QueryBuilder, Sqlite};

use super::{Database, DatabaseError};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SeedConfig {
    pub operaciones: u64,
    pub seed: u64,
    /// Empty the domain's tables first (otherwise they must be empty).
    pub replace: bool,
}

/// Rows written per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SeedReport {
    pub clientes: u64,
    pub deudores: u64,
    pub operaciones: u64,
    pub facturas: u64,
    pub cobranzas: u64,
    pub tipo_cambio: u64,
}

const FIRST_DAY: (i32, u32, u32) = (2022, 1, 1);
const LAST_DAY: (i32, u32, u32) = (2025, 12, 31);
/// Operations generated and written per transaction.
const CHUNK: u64 = 5_000;

/// Input tables, children first (the order to empty them in).
const INPUT_TABLES: [&str; 6] = [
    "cobranzas",
    "facturas",
    "operaciones",
    "deudores",
    "clientes",
    "tipo_cambio",
];
const OUTPUT_TABLES: [&str; 4] = [
    "reporte_cxc",
    "reporte_operaciones",
    "kpi_mensual",
    "kpi_acumulado",
];

#[derive(Debug, Clone)]
enum Cell {
    Int(i64),
    Text(String),
    Date(NaiveDate),
}

struct Batch {
    table: &'static str,
    columns: &'static [&'static str],
    rows: Vec<Vec<Cell>>,
}

impl Batch {
    fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
        Self {
            table,
            columns,
            rows: Vec::new(),
        }
    }
}

/// Fills the input tables of an (already migrated) database.
pub async fn seed(db: &Database, config: SeedConfig) -> Result<SeedReport, DatabaseError> {
    let query_error = |context: &str| {
        let context = context.to_owned();
        move |source| DatabaseError::Query { context, source }
    };
    if config.replace {
        for table in OUTPUT_TABLES.iter().chain(&INPUT_TABLES) {
            execute(db, &format!("DELETE FROM {table}"))
                .await
                .map_err(query_error(&format!("cannot empty {table}")))?;
        }
    } else {
        for table in INPUT_TABLES {
            let rows = count(db, table)
                .await
                .map_err(query_error(&format!("cannot count the rows of {table}")))?;
            if rows > 0 {
                return Err(DatabaseError::NotEmpty { table, rows });
            }
        }
    }

    let mut rng = fastrand::Rng::with_seed(config.seed);
    let mut report = SeedReport::default();
    let first = date(FIRST_DAY);
    let last = date(LAST_DAY);

    // Rates from a month before the first operation to three months after the last, so
    // that any cut-off in the data's range converts.
    let mut rates = Batch::new("tipo_cambio", &["fecha", "compra", "venta", "relleno"]);
    let mut venta: i64 = 37_000; // 3.7000 PEN per USD
    let mut day = first - Days::days(31);
    while day <= last + Days::days(92) {
        venta = (venta + rng.i64(-120..=120)).clamp(33_000, 41_000);
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !holiday(day) {
            let compra = venta - rng.i64(30..=60);
            rates.rows.push(vec![
                Cell::Date(day),
                Cell::Int(compra),
                Cell::Int(venta),
                Cell::Int(0),
            ]);
        }
        day += Days::days(1);
    }
    report.tipo_cambio = write(db, rates).await?;

    let n_clientes = (config.operaciones / 200).clamp(10, 20_000);
    let n_deudores = (config.operaciones / 50).clamp(20, 60_000);
    report.clientes = write(db, parties(&mut rng, "clientes", n_clientes, 100_000_000)).await?;
    report.deudores = write(db, parties(&mut rng, "deudores", n_deudores, 600_000_000)).await?;

    let span = (last - first).num_days();
    let mut factura_id = 0_i64;
    let mut cobranza_id = 0_i64;
    let mut next = 1_u64;
    while next <= config.operaciones {
        let end = (next + CHUNK - 1).min(config.operaciones);
        let mut operaciones = Batch::new(
            "operaciones",
            &[
                "id",
                "cliente_id",
                "fecha_operacion",
                "moneda",
                "monto_neto",
                "interes",
                "comision",
            ],
        );
        let mut facturas = Batch::new(
            "facturas",
            &[
                "id",
                "operacion_id",
                "deudor_id",
                "numero",
                "monto",
                "fecha_emision",
                "fecha_vencimiento",
            ],
        );
        let mut cobranzas = Batch::new("cobranzas", &["id", "factura_id", "fecha_pago", "monto"]);
        for id in next..=end {
            let id = id as i64;
            let fecha = first + Days::days(rng.i64(0..=span));
            let moneda = if rng.u8(0..10) < 3 { "USD" } else { "PEN" };
            // Log-uniform-ish sizes: many small advances, a few large ones.
            let monto_neto = 100_000 * 10_i64.pow(rng.u32(0..3)) * rng.i64(1..=50);
            let interes = monto_neto * rng.i64(8..=30) / 1_000;
            let comision = monto_neto * 5 / 1_000 + 5_000;
            operaciones.rows.push(vec![
                Cell::Int(id),
                Cell::Int(rng.i64(1..=n_clientes as i64)),
                Cell::Date(fecha),
                Cell::Text(moneda.to_owned()),
                Cell::Int(monto_neto),
                Cell::Int(interes),
                Cell::Int(comision),
            ]);
            let n_facturas = rng.i64(1..=4);
            let face = monto_neto + interes + comision;
            for k in 0..n_facturas {
                factura_id += 1;
                let monto = if k + 1 == n_facturas {
                    face - (face / n_facturas) * (n_facturas - 1)
                } else {
                    face / n_facturas
                };
                let emision = fecha - Days::days(rng.i64(0..=20));
                let vencimiento = emision + Days::days([30, 45, 60, 90][rng.usize(0..4)]);
                facturas.rows.push(vec![
                    Cell::Int(factura_id),
                    Cell::Int(id),
                    Cell::Int(rng.i64(1..=n_deudores as i64)),
                    Cell::Text(format!("F{:03}-{:08}", rng.u16(1..=999), factura_id)),
                    Cell::Int(monto),
                    Cell::Date(emision),
                    Cell::Date(vencimiento),
                ]);
                // 55% paid in full (on time or up to four months late), 20% in two
                // partial payments, 10% partially and left so, 15% not at all.
                let mut pay = |fecha_pago: NaiveDate, amount: i64| {
                    cobranza_id += 1;
                    cobranzas.rows.push(vec![
                        Cell::Int(cobranza_id),
                        Cell::Int(factura_id),
                        Cell::Date(fecha_pago),
                        Cell::Int(amount),
                    ]);
                };
                match rng.u8(0..100) {
                    0..=54 => pay(vencimiento + Days::days(rng.i64(-10..=120)), monto),
                    55..=74 => {
                        let first_part = monto * rng.i64(20..=80) / 100;
                        let paid_on = vencimiento + Days::days(rng.i64(-5..=30));
                        pay(paid_on, first_part);
                        pay(paid_on + Days::days(rng.i64(1..=90)), monto - first_part);
                    }
                    75..=84 => pay(
                        vencimiento + Days::days(rng.i64(0..=60)),
                        monto * rng.i64(10..=90) / 100,
                    ),
                    _ => {}
                }
            }
        }
        report.operaciones += write(db, operaciones).await?;
        report.facturas += write(db, facturas).await?;
        report.cobranzas += write(db, cobranzas).await?;
        next = end + 1;
    }

    if let Database::Postgres(pool) = db {
        // Rows came with their ids: move the identity sequences past them.
        for table in [
            "clientes",
            "deudores",
            "operaciones",
            "facturas",
            "cobranzas",
        ] {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await
                .map_err(query_error(&format!("cannot advance the ids of {table}")))?;
        }
    }
    Ok(report)
}

fn date((y, m, d): (i32, u32, u32)) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid constant date")
}

/// Peruvian holidays without an exchange-rate quote (a few fixed ones suffice to make
/// gaps on weekdays too).
fn holiday(day: NaiveDate) -> bool {
    matches!(
        (day.month(), day.day()),
        (1, 1)
            | (5, 1)
            | (6, 29)
            | (7, 28)
            | (7, 29)
            | (8, 30)
            | (10, 8)
            | (11, 1)
            | (12, 8)
            | (12, 25)
    )
}

/// Clients or debtors `1..=n`, with RUCs `20` + `base + id`.
fn parties(rng: &mut fastrand::Rng, table: &'static str, n: u64, base: i64) -> Batch {
    let kind = if table == "clientes" {
        "Cliente"
    } else {
        "Deudor"
    };
    let mut batch = Batch::new(table, &["id", "ruc", "razon_social"]);
    for id in 1..=n as i64 {
        batch.rows.push(vec![
            Cell::Int(id),
            Cell::Text(format!("20{:09}", base + id)),
            Cell::Text(company_name(rng, kind, id)),
        ]);
    }
    batch
}

fn company_name(rng: &mut fastrand::Rng, kind: &str, id: i64) -> String {
    const WORDS: [&str; 12] = [
        "Andina",
        "Pacífico",
        "Inca",
        "Sur",
        "Norte",
        "Lima",
        "Cusco",
        "Arequipa",
        "Amazonas",
        "Textil",
        "Minera",
        "Agro",
    ];
    const FORMS: [&str; 3] = ["S.A.C.", "S.A.", "E.I.R.L."];
    format!(
        "{kind} {} {} {id} {}",
        WORDS[rng.usize(0..WORDS.len())],
        WORDS[rng.usize(0..WORDS.len())],
        FORMS[rng.usize(0..FORMS.len())]
    )
}

async fn execute(db: &Database, sql: &str) -> Result<(), sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match db {
        Database::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        Database::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
    }
}

async fn count(db: &Database, table: &str) -> Result<i64, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
    match db {
        Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
    }
}

/// Inserts a batch in one transaction, many rows per statement.
async fn write(db: &Database, batch: Batch) -> Result<u64, DatabaseError> {
    // Both databases cap a statement's parameters (SQLite at 32,766): stay well below.
    let per_statement = (20_000 / batch.columns.len()).max(1);
    let failed = |source| DatabaseError::Query {
        context: format!("cannot write the seed rows of {}", batch.table),
        source,
    };
    let head = format!(
        "INSERT INTO {} ({}) ",
        batch.table,
        batch.columns.join(", ")
    );
    let mut written = 0;
    match db {
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await.map_err(failed)?;
            for rows in batch.rows.chunks(per_statement) {
                let mut builder = QueryBuilder::<Sqlite>::new(head.as_str());
                builder.push_values(rows, |mut b, row| {
                    for cell in row {
                        match cell {
                            Cell::Int(i) => b.push_bind(*i),
                            Cell::Text(s) => b.push_bind(s.clone()),
                            Cell::Date(d) => b.push_bind(d.format("%Y-%m-%d").to_string()),
                        };
                    }
                });
                written += builder
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?
                    .rows_affected();
            }
            tx.commit().await.map_err(failed)?;
        }
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await.map_err(failed)?;
            for rows in batch.rows.chunks(per_statement) {
                let mut builder = QueryBuilder::<Postgres>::new(head.as_str());
                builder.push_values(rows, |mut b, row| {
                    for cell in row {
                        match cell {
                            Cell::Int(i) => b.push_bind(*i),
                            Cell::Text(s) => b.push_bind(s.clone()),
                            Cell::Date(d) => b.push_bind(*d),
                        };
                    }
                });
                written += builder
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?
                    .rows_affected();
            }
            tx.commit().await.map_err(failed)?;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holidays_and_weekends_have_no_rate() {
        assert!(holiday(NaiveDate::from_ymd_opt(2024, 7, 28).unwrap()));
        assert!(!holiday(NaiveDate::from_ymd_opt(2024, 7, 30).unwrap()));
    }
}
