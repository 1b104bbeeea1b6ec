//! The six `toolbox.*` finance tasks on SQLite and PostgreSQL, on a small hand-made
//! data set whose expected rows are worked out by hand below (not by the code under
//! test). Amounts are céntimos, rates ten-thousandths (see the migrations).

use std::fs;

use serde_json::{json, Value};
use toolbox::plugins::TaskFailure;

use crate::support::databases::{finance_plugins, on_both_databases, Kind, TestDb};

/// Two clients, two debtors, five operations (two in USD, one of them on a Saturday,
/// which has no rate of its own), six invoices and four payments.
///
/// Rates (venta): 2024-01-02 3.7100, 2024-01-05 3.7300, 2024-02-01 3.7000,
/// 2024-03-15 3.7655.
const DATA: &str = "
INSERT INTO clientes (id, ruc, razon_social) VALUES
    (1, '20100000001', 'Alfa SAC'), (2, '20100000002', 'Beta SA');
INSERT INTO deudores (id, ruc, razon_social) VALUES
    (1, '20600000001', 'Deudor Uno'), (2, '20600000002', 'Deudor Dos');
INSERT INTO tipo_cambio (fecha, compra, venta) VALUES
    ('2024-01-02', 37000, 37100), ('2024-01-05', 37200, 37300),
    ('2024-02-01', 36900, 37000), ('2024-03-15', 37500, 37655);
INSERT INTO operaciones (id, cliente_id, fecha_operacion, moneda, monto_neto, interes, comision) VALUES
    (1, 1, '2024-01-03', 'PEN', 1000001, 15000, 5000),
    (2, 2, '2024-01-06', 'USD',  500000,  7550, 2025),
    (3, 1, '2024-02-10', 'USD',  123457,  1001,    0),
    (4, 1, '2024-03-20', 'PEN',  200000,  3000, 1000),
    (5, 2, '2025-01-15', 'PEN',  300000,  4500, 1500);
INSERT INTO facturas (id, operacion_id, deudor_id, numero, monto, fecha_emision, fecha_vencimiento) VALUES
    (1, 1, 1, 'F001-1', 600000, '2024-01-03', '2024-02-02'),
    (2, 1, 2, 'F001-2', 420000, '2024-01-03', '2024-03-03'),
    (3, 2, 1, 'F002-1', 510275, '2024-01-06', '2024-03-06'),
    (4, 3, 2, 'F003-1', 124558, '2024-02-10', '2024-04-10'),
    (5, 4, 1, 'F004-1', 204000, '2024-03-20', '2024-04-19'),
    (6, 5, 2, 'F005-1', 306000, '2025-01-15', '2025-02-14');
INSERT INTO cobranzas (id, factura_id, fecha_pago, monto) VALUES
    (1, 1, '2024-02-02', 600000),
    (2, 2, '2024-03-10', 100000),
    (3, 3, '2024-04-30', 200000),
    (4, 5, '2024-03-25', 204000);
";

fn with_data(kind: Kind) -> TestDb {
    let db = TestDb::new(kind);
    db.exec(DATA);
    db
}

fn cxc_rows(db: &TestDb) -> Vec<Value> {
    db.rows(
        "SELECT factura_id, fecha_corte, deudor_id, cliente_id, moneda, saldo, saldo_pen, \
                dias_vencido, tramo \
         FROM reporte_cxc ORDER BY factura_id",
    )
}

fn expect_failure(result: Result<Value, TaskFailure>) -> TaskFailure {
    match result {
        Ok(value) => panic!("expected a failure, got {value}"),
        Err(failure) => failure,
    }
}

on_both_databases! {
    tablas_cxc_ages_the_balances_at_the_cut_off => |kind| {
        let db = with_data(kind);
        let (_dir, catalog) = finance_plugins();

        // Invoice 1 and 5 are paid in full, 6 belongs to a 2025 operation. Invoice 3's
        // payment (2024-04-30) comes after this cut-off. USD converts at the rate on or
        // before the cut-off, 2024-03-15's 3.7655:
        //   510275 × 3.7655 = 1921440.5125 → 1921441; 124558 × 3.7655 = 469023.149 → 469023.
        let out = db.run(&catalog, "toolbox.tablas_cxc", json!({"fecha_corte": "2024-03-31"})).unwrap();
        assert_eq!(out, json!({"records": 3, "fecha_corte": "2024-03-31"}));
        assert_eq!(cxc_rows(&db), vec![
            json!({"factura_id": 2, "fecha_corte": "2024-03-31", "deudor_id": 2, "cliente_id": 1,
                   "moneda": "PEN", "saldo": 320000, "saldo_pen": 320000, "dias_vencido": 28, "tramo": "1-30"}),
            json!({"factura_id": 3, "fecha_corte": "2024-03-31", "deudor_id": 1, "cliente_id": 2,
                   "moneda": "USD", "saldo": 510275, "saldo_pen": 1921441, "dias_vencido": 25, "tramo": "1-30"}),
            json!({"factura_id": 4, "fecha_corte": "2024-03-31", "deudor_id": 2, "cliente_id": 1,
                   "moneda": "USD", "saldo": 124558, "saldo_pen": 469023, "dias_vencido": 0, "tramo": "vigente"}),
        ]);

        // Two weeks later: 43 and 40 days overdue, invoice 4 five days.
        db.run(&catalog, "toolbox.tablas_cxc", json!({"fecha_corte": "2024-04-15"})).unwrap();
        let buckets: Vec<Value> = cxc_rows(&db).iter().map(|r| json!([r["factura_id"], r["dias_vencido"], r["tramo"]])).collect();
        assert_eq!(buckets, vec![json!([2, 43, "31-60"]), json!([3, 40, "31-60"]), json!([4, 5, "1-30"])]);

        // End of June: invoice 3's partial payment counts now (510275 − 200000 = 310275,
        // × 3.7655 = 1168340.5125 → 1168341).
        db.run(&catalog, "toolbox.tablas_cxc", json!({"fecha_corte": "2024-06-30"})).unwrap();
        let rows = cxc_rows(&db);
        let summary: Vec<Value> = rows.iter().map(|r| json!([r["factura_id"], r["saldo"], r["saldo_pen"], r["dias_vencido"], r["tramo"]])).collect();
        assert_eq!(summary, vec![
            json!([2, 320000, 320000, 119, ">90"]),
            json!([3, 310275, 1168341, 116, ">90"]),
            json!([4, 124558, 469023, 81, "61-90"]),
        ]);
    };

    tablas_reportes_denormalizes_each_operation => |kind| {
        let db = with_data(kind);
        let (_dir, catalog) = finance_plugins();
        let out = db.run(&catalog, "toolbox.tablas_reportes", Value::Null).unwrap();
        assert_eq!(out, json!({"records": 5}));
        // Operation 2 is dated Saturday 2024-01-06, which has no rate: Friday's 3.7300
        // applies. 500000 × 3.73 = 1865000; income (7550 + 2025) × 3.73 = 35714.75 →
        // 35715. Operation 3 (2024-02-10) takes 2024-02-01's 3.7000: 123457 × 3.7 =
        // 456790.9 → 456791, income 1001 × 3.7 = 3703.7 → 3704.
        let rows = db.rows(
            "SELECT operacion_id, periodo, cliente_id, razon_social, moneda, monto_neto, \
                    monto_neto_pen, ingresos_pen, n_facturas \
             FROM reporte_operaciones ORDER BY operacion_id",
        );
        assert_eq!(rows, vec![
            json!({"operacion_id": 1, "periodo": "2024-01", "cliente_id": 1, "razon_social": "Alfa SAC", "moneda": "PEN",
                   "monto_neto": 1000001, "monto_neto_pen": 1000001, "ingresos_pen": 20000, "n_facturas": 2}),
            json!({"operacion_id": 2, "periodo": "2024-01", "cliente_id": 2, "razon_social": "Beta SA", "moneda": "USD",
                   "monto_neto": 500000, "monto_neto_pen": 1865000, "ingresos_pen": 35715, "n_facturas": 1}),
            json!({"operacion_id": 3, "periodo": "2024-02", "cliente_id": 1, "razon_social": "Alfa SAC", "moneda": "USD",
                   "monto_neto": 123457, "monto_neto_pen": 456791, "ingresos_pen": 3704, "n_facturas": 1}),
            json!({"operacion_id": 4, "periodo": "2024-03", "cliente_id": 1, "razon_social": "Alfa SAC", "moneda": "PEN",
                   "monto_neto": 200000, "monto_neto_pen": 200000, "ingresos_pen": 4000, "n_facturas": 1}),
            json!({"operacion_id": 5, "periodo": "2025-01", "cliente_id": 2, "razon_social": "Beta SA", "moneda": "PEN",
                   "monto_neto": 300000, "monto_neto_pen": 300000, "ingresos_pen": 6000, "n_facturas": 1}),
        ]);
    };

    kpi_sums_each_month_from_the_operations => |kind| {
        let db = with_data(kind);
        let (_dir, catalog) = finance_plugins();
        // kpi computes from the input tables: reporte_operaciones is still empty.
        let out = db.run(&catalog, "toolbox.kpi", json!({})).unwrap();
        assert_eq!(out, json!({"records": 4}));
        // January: 1000001 + 1865000 = 2865001 placed by 2 operations; the average
        // ticket 1432500.5 rounds half up to 1432501.
        let rows = db.rows(
            "SELECT periodo, n_operaciones, colocaciones_pen, ingresos_pen, clientes_distintos, \
                    ticket_promedio_pen FROM kpi_mensual ORDER BY periodo",
        );
        assert_eq!(rows, vec![
            json!({"periodo": "2024-01", "n_operaciones": 2, "colocaciones_pen": 2865001, "ingresos_pen": 55715,
                   "clientes_distintos": 2, "ticket_promedio_pen": 1432501}),
            json!({"periodo": "2024-02", "n_operaciones": 1, "colocaciones_pen": 456791, "ingresos_pen": 3704,
                   "clientes_distintos": 1, "ticket_promedio_pen": 456791}),
            json!({"periodo": "2024-03", "n_operaciones": 1, "colocaciones_pen": 200000, "ingresos_pen": 4000,
                   "clientes_distintos": 1, "ticket_promedio_pen": 200000}),
            json!({"periodo": "2025-01", "n_operaciones": 1, "colocaciones_pen": 300000, "ingresos_pen": 6000,
                   "clientes_distintos": 1, "ticket_promedio_pen": 300000}),
        ]);
    };

    kpi_acumulado_runs_from_january_and_counts_clients_once => |kind| {
        let db = with_data(kind);
        let (_dir, catalog) = finance_plugins();
        let out = db.run(&catalog, "toolbox.kpi_acumulado", Value::Null).unwrap();
        assert_eq!(out, json!({"records": 4}));
        // Client 1 operates in January, February and March 2024: still 2 distinct
        // clients year to date in March. 2025 starts again from zero.
        let rows = db.rows(
            "SELECT periodo, n_operaciones_ytd, colocaciones_pen_ytd, ingresos_pen_ytd, \
                    clientes_distintos_ytd FROM kpi_acumulado ORDER BY periodo",
        );
        assert_eq!(rows, vec![
            json!({"periodo": "2024-01", "n_operaciones_ytd": 2, "colocaciones_pen_ytd": 2865001,
                   "ingresos_pen_ytd": 55715, "clientes_distintos_ytd": 2}),
            json!({"periodo": "2024-02", "n_operaciones_ytd": 3, "colocaciones_pen_ytd": 3321792,
                   "ingresos_pen_ytd": 59419, "clientes_distintos_ytd": 2}),
            json!({"periodo": "2024-03", "n_operaciones_ytd": 4, "colocaciones_pen_ytd": 3521792,
                   "ingresos_pen_ytd": 63419, "clientes_distintos_ytd": 2}),
            json!({"periodo": "2025-01", "n_operaciones_ytd": 1, "colocaciones_pen_ytd": 300000,
                   "ingresos_pen_ytd": 6000, "clientes_distintos_ytd": 1}),
        ]);
    };

    a_usd_amount_without_any_earlier_rate_fails_naming_its_date => |kind| {
        let db = with_data(kind);
        let (_dir, catalog) = finance_plugins();
        for task in ["toolbox.tablas_reportes", "toolbox.kpi", "toolbox.kpi_acumulado"] {
            db.run(&catalog, task, Value::Null).unwrap();
        }
        let before = (
            db.rows("SELECT * FROM reporte_operaciones ORDER BY operacion_id"),
            db.rows("SELECT * FROM kpi_mensual ORDER BY periodo"),
            db.rows("SELECT * FROM kpi_acumulado ORDER BY periodo"),
        );
        // A USD operation dated before the first rate (2024-01-02).
        db.exec(
            "INSERT INTO operaciones (id, cliente_id, fecha_operacion, moneda, monto_neto, interes, comision) \
             VALUES (6, 2, '2023-12-29', 'USD', 100000, 1000, 0);
             INSERT INTO facturas (id, operacion_id, deudor_id, numero, monto, fecha_emision, fecha_vencimiento) \
             VALUES (7, 6, 1, 'F006-1', 101000, '2023-12-29', '2024-01-28');",
        );
        for task in ["toolbox.tablas_reportes", "toolbox.kpi", "toolbox.kpi_acumulado"] {
            let failure = expect_failure(db.run(&catalog, task, Value::Null));
            assert!(matches!(failure, TaskFailure::Fatal { .. }), "{task}: {failure:?}");
            assert!(failure.message().contains("no exchange rate on or before 2023-12-29"), "{task}: {failure}");
            assert!(failure.message().contains("operation 6"), "{task}: {failure}");
        }
        // Nothing half-written: every output is as the last successful run left it.
        assert_eq!(before, (
            db.rows("SELECT * FROM reporte_operaciones ORDER BY operacion_id"),
            db.rows("SELECT * FROM kpi_mensual ORDER BY periodo"),
            db.rows("SELECT * FROM kpi_acumulado ORDER BY periodo"),
        ));

        // The aging report needs a rate only on its cut-off, and only for USD balances.
        let failure = expect_failure(db.run(&catalog, "toolbox.tablas_cxc", json!({"fecha_corte": "2023-12-31"})));
        assert!(failure.message().contains("no exchange rate on or before 2023-12-31 (the cut-off)"), "{failure}");
        assert!(cxc_rows(&db).is_empty());
        // On the first rate's date it converts (101000 × 3.71 = 374710).
        db.run(&catalog, "toolbox.tablas_cxc", json!({"fecha_corte": "2024-01-02"})).unwrap();
        let rows = cxc_rows(&db);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["saldo_pen"], json!(374710));
    };

    a_rebuild_that_fails_half_way_leaves_the_table_as_it_was => |kind| {
        let db = with_data(kind);
        let (_dir, catalog) = finance_plugins();
        db.run(&catalog, "toolbox.tablas_reportes", Value::Null).unwrap();
        let before = db.rows("SELECT * FROM reporte_operaciones ORDER BY operacion_id");
        assert_eq!(before.len(), 5);
        // The table is emptied, then the insert fails at operation 3.
        db.exec(match kind {
            Kind::Sqlite => "CREATE TRIGGER boom BEFORE INSERT ON reporte_operaciones \
                             WHEN NEW.operacion_id = 3 BEGIN SELECT RAISE(ABORT, 'boom at 3'); END;",
            Kind::Postgres => "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
                               BEGIN IF NEW.operacion_id = 3 THEN RAISE EXCEPTION 'boom at 3'; END IF; RETURN NEW; END $$;
                               CREATE TRIGGER boom BEFORE INSERT ON reporte_operaciones \
                               FOR EACH ROW EXECUTE FUNCTION boom();",
        });
        db.exec("UPDATE clientes SET razon_social = 'Alfa Renombrada SAC' WHERE id = 1");
        let failure = expect_failure(db.run(&catalog, "toolbox.tablas_reportes", Value::Null));
        assert!(failure.message().contains("boom at 3"), "{failure}");
        assert_eq!(db.rows("SELECT * FROM reporte_operaciones ORDER BY operacion_id"), before);
    };

    tipo_cambio_upserts_quotes_and_fills_the_gaps => |kind| {
        let db = TestDb::new(kind);
        let (dir, catalog) = finance_plugins();
        let csv = dir.path().join("rates.csv");
        fs::write(&csv, "fecha,compra,venta\n2024-05-03,3.7020,3.7065\n2024-05-06, 3.71 ,3.715\n").unwrap();
        let out = db.run(&catalog, "toolbox.tipo_cambio", json!({
            "rates": [{"fecha": "2024-05-02", "compra": "3.7010", "venta": 3.7055}],
            "csv_path": csv,
            "fill_until": "2024-05-08",
        })).unwrap();
        // Saturday 4 and Sunday 5 take Friday 3's rate; 7 and 8 take Monday 6's.
        assert_eq!(out, json!({"records": 7, "upserted": 3, "filled": 4}));
        let rates = |db: &TestDb| -> Vec<Value> {
            db.rows("SELECT fecha, compra, venta, relleno FROM tipo_cambio ORDER BY fecha")
                .iter()
                .map(|r| json!([r["fecha"], r["compra"], r["venta"], r["relleno"]]))
                .collect()
        };
        assert_eq!(rates(&db), vec![
            json!(["2024-05-02", 37010, 37055, 0]),
            json!(["2024-05-03", 37020, 37065, 0]),
            json!(["2024-05-04", 37020, 37065, 1]),
            json!(["2024-05-05", 37020, 37065, 1]),
            json!(["2024-05-06", 37100, 37150, 0]),
            json!(["2024-05-07", 37100, 37150, 1]),
            json!(["2024-05-08", 37100, 37150, 1]),
        ]);

        // A late quote for Saturday replaces the fill, and Sunday's fill follows it.
        let out = db.run(&catalog, "toolbox.tipo_cambio", json!({
            "rates": [{"fecha": "2024-05-04", "compra": "3.72", "venta": "3.725"}],
            "fill_until": "2024-05-08",
        })).unwrap();
        assert_eq!(out, json!({"records": 2, "upserted": 1, "filled": 1}));
        let after = rates(&db);
        assert_eq!(after[2], json!(["2024-05-04", 37200, 37250, 0]));
        assert_eq!(after[3], json!(["2024-05-05", 37200, 37250, 1]));
        assert_eq!(after[5], json!(["2024-05-07", 37100, 37150, 1]));

        // Bad rows: every one is named, and nothing is written.
        fs::write(&csv, "fecha,compra,venta\n2024-05-09,3.70,3.71\n2024-05-10,3.70,abc\n2024-13-01,3.70,3.71\n").unwrap();
        let failure = expect_failure(db.run(&catalog, "toolbox.tipo_cambio", json!({"csv_path": csv})));
        assert!(matches!(failure, TaskFailure::InvalidArgs { .. }), "{failure:?}");
        assert!(failure.message().contains("line 3: venta"), "{failure}");
        assert!(failure.message().contains("line 4: \"2024-13-01\" is not a date"), "{failure}");
        assert_eq!(rates(&db), after);
        let failure = expect_failure(db.run(&catalog, "toolbox.tipo_cambio", json!({"csv_path": "/nonexistent/rates.csv"})));
        assert!(failure.message().contains("cannot read csv_path /nonexistent/rates.csv"), "{failure}");
    };

    etl_loads_valid_rows_reports_the_rest_and_twice_is_once => |kind| {
        let db = TestDb::new(kind);
        let (dir, catalog) = finance_plugins();
        let file = dir.path().join("operaciones.csv");
        fs::write(&file, concat!(
            "operacion_id,fecha_operacion,cliente_ruc,cliente_razon_social,moneda,monto_neto,interes,comision,",
            "factura_numero,deudor_ruc,deudor_razon_social,factura_monto,fecha_emision,fecha_vencimiento\n",
            "101,2024-04-01,20111111111,\"Gamma, S.A.C.\",PEN,1000.00,15.00,5.00,E001-1,20622222222,Deudor Tres,600.00,2024-04-01,2024-05-01\n",
            "101,2024-04-01,20111111111,\"Gamma, S.A.C.\",PEN,1000.00,15.00,5.00,E001-2,20633333333,Deudor Cuatro,420.00,2024-04-01,2024-05-31\n",
            "102,2024-04-02,20111111111,\"Gamma, S.A.C.\",usd,500.5,7.25,2,E002-1,20622222222,Deudor Tres,509.75,2024-04-02,2024-06-01\n",
            "103,2024-13-01,20111111111,Gamma,PEN,1.00,0,0,E003-1,20622222222,Deudor Tres,1.00,2024-04-01,2024-05-01\n",
            "104,2024-04-03,20111111111,Gamma,EUR,1.00,0,0,E004-1,20622222222,Deudor Tres,1.00,2024-04-03,2024-05-03\n",
            "105,2024-04-03,20111111111,Gamma,PEN,1.00,0,0,E005-1,20622222222,Deudor Tres,12.345,2024-04-03,2024-05-03\n",
            "101,2024-04-01,20111111111,\"Gamma, S.A.C.\",PEN,999.00,15.00,5.00,E001-3,20622222222,Deudor Tres,1.00,2024-04-01,2024-05-01\n",
            "106,2024-04-03,123,Gamma,PEN,1.00,0,0,E006-1,20622222222,Deudor Tres,1.00,2024-04-03,2024-05-03\n",
            "107,2024-04-03,20111111111,Gamma,PEN,1.00,0,0,E007-1,20622222222,Deudor Tres,1.00,2024-04-03,2024-04-02\n",
            "108,2024-04-03,20111111111\n",
        )).unwrap();
        let out = db.run(&catalog, "toolbox.etl", json!({"path": file})).unwrap();
        let lines: Vec<u64> = out["rejected"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
        assert_eq!(lines, vec![5, 6, 7, 8, 9, 10, 11], "{out:#}");
        let reasons: Vec<&str> = out["rejected"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
        assert!(reasons[0].contains("fecha_operacion") && reasons[0].contains("2024-13-01"), "{reasons:?}");
        assert!(reasons[1].contains("\"EUR\" is neither PEN nor USD"), "{reasons:?}");
        assert!(reasons[2].contains("factura_monto") && reasons[2].contains("more than 2 decimals"), "{reasons:?}");
        assert!(reasons[3].contains("operation 101 differs from its first row (line 2)"), "{reasons:?}");
        assert!(reasons[4].contains("cliente_ruc \"123\" is not a RUC"), "{reasons:?}");
        assert!(reasons[5].contains("fecha_vencimiento 2024-04-02 is before fecha_emision 2024-04-03"), "{reasons:?}");
        assert!(reasons[6].contains("3 fields where the header has 14"), "{reasons:?}");
        // 1 client, 2 debtors, 2 operations and 3 invoices written.
        assert_eq!(
            (out["records"].clone(), out["operaciones"].clone(), out["facturas"].clone(), out["changed"].clone()),
            (json!(3), json!(2), json!(3), json!(8))
        );
        let snapshot = |db: &TestDb| {
            (
                db.rows("SELECT ruc, razon_social FROM clientes ORDER BY ruc"),
                db.rows("SELECT ruc, razon_social FROM deudores ORDER BY ruc"),
                db.rows("SELECT o.id, c.ruc, o.fecha_operacion, o.moneda, o.monto_neto, o.interes, o.comision \
                         FROM operaciones o JOIN clientes c ON c.id = o.cliente_id ORDER BY o.id"),
                db.rows("SELECT f.operacion_id, f.numero, d.ruc, f.monto, f.fecha_emision, f.fecha_vencimiento \
                         FROM facturas f JOIN deudores d ON d.id = f.deudor_id ORDER BY f.operacion_id, f.numero"),
            )
        };
        let first = snapshot(&db);
        assert_eq!(first.0, vec![json!({"ruc": "20111111111", "razon_social": "Gamma, S.A.C."})]);
        assert_eq!(first.1, vec![
            json!({"ruc": "20622222222", "razon_social": "Deudor Tres"}),
            json!({"ruc": "20633333333", "razon_social": "Deudor Cuatro"}),
        ]);
        assert_eq!(first.2, vec![
            json!({"id": 101, "ruc": "20111111111", "fecha_operacion": "2024-04-01", "moneda": "PEN",
                   "monto_neto": 100000, "interes": 1500, "comision": 500}),
            json!({"id": 102, "ruc": "20111111111", "fecha_operacion": "2024-04-02", "moneda": "USD",
                   "monto_neto": 50050, "interes": 725, "comision": 200}),
        ]);
        assert_eq!(first.3, vec![
            json!({"operacion_id": 101, "numero": "E001-1", "ruc": "20622222222", "monto": 60000,
                   "fecha_emision": "2024-04-01", "fecha_vencimiento": "2024-05-01"}),
            json!({"operacion_id": 101, "numero": "E001-2", "ruc": "20633333333", "monto": 42000,
                   "fecha_emision": "2024-04-01", "fecha_vencimiento": "2024-05-31"}),
            json!({"operacion_id": 102, "numero": "E002-1", "ruc": "20622222222", "monto": 50975,
                   "fecha_emision": "2024-04-02", "fecha_vencimiento": "2024-06-01"}),
        ]);

        // Twice is once: nothing changes, and the load says so.
        let again = db.run(&catalog, "toolbox.etl", json!({"path": file})).unwrap();
        assert_eq!(again["changed"], json!(0), "{again:#}");
        assert_eq!(again["records"], json!(3));
        assert_eq!(snapshot(&db), first);

        // JSON Lines: numbers or strings, a broken line reported by number.
        let jsonl = dir.path().join("mas.jsonl");
        fs::write(&jsonl, concat!(
            "{\"operacion_id\": 109, \"fecha_operacion\": \"2024-04-05\", \"cliente_ruc\": \"20111111111\", ",
            "\"cliente_razon_social\": \"Gamma, S.A.C.\", \"moneda\": \"PEN\", \"monto_neto\": 250.1, \"interes\": 3, ",
            "\"comision\": \"1.00\", \"factura_numero\": \"E009-1\", \"deudor_ruc\": \"20633333333\", ",
            "\"deudor_razon_social\": \"Deudor Cuatro\", \"factura_monto\": 254.1, \"fecha_emision\": \"2024-04-05\", ",
            "\"fecha_vencimiento\": \"2024-05-05\"}\n",
            "{\"operacion_id\": 110, oops}\n",
        )).unwrap();
        let out = db.run(&catalog, "toolbox.etl", json!({"path": jsonl})).unwrap();
        assert_eq!(out["records"], json!(1), "{out:#}");
        assert_eq!(out["rejected"][0]["line"], json!(2));
        assert!(out["rejected"][0]["reason"].as_str().unwrap().contains("not a JSON object"));
        assert_eq!(
            db.rows("SELECT monto_neto, interes, comision FROM operaciones WHERE id = 109"),
            vec![json!({"monto_neto": 25010, "interes": 300, "comision": 100})]
        );

        let failure = expect_failure(db.run(&catalog, "toolbox.etl", json!({"path": "/nonexistent/ops.csv"})));
        assert!(matches!(failure, TaskFailure::InvalidArgs { .. }), "{failure:?}");
        assert!(failure.message().contains("cannot read /nonexistent/ops.csv"), "{failure}");
    };
}
