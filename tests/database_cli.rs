//! `toolbox db migrate|seed`, `toolbox run` of the finance tasks with `--database`, and
//! the tasks through `toolbox serve` over HTTP, on the real binary.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    artifacts,
    databases::{on_both_databases, Kind, TestDb},
    describe,
    http::{get, post},
    processes::ServerProcess,
    toolbox, PluginsDir,
};

fn finance_dir() -> PluginsDir {
    let dir = PluginsDir::new();
    for (task, path) in &artifacts().finanzas {
        dir.add(&format!("libtoolbox_{task}.so"), path);
    }
    dir
}

fn ok_json(plugins: &PluginsDir, args: &[&str]) -> Value {
    let out = toolbox(plugins.path(), args);
    assert!(out.status.success(), "toolbox {args:?}: {}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)))
}

/// A fingerprint of the seeded rows: counts and sums that any difference would move.
fn fingerprint(db: &TestDb) -> Vec<Value> {
    db.rows(
        "SELECT (SELECT COUNT(*) FROM operaciones) AS ops, \
                (SELECT CAST(SUM(monto_neto * (id % 97)) AS BIGINT) FROM operaciones) AS ops_sum, \
                (SELECT CAST(SUM(monto * (id % 89)) AS BIGINT) FROM facturas) AS facturas_sum, \
                (SELECT CAST(SUM(monto * (factura_id % 83)) AS BIGINT) FROM cobranzas) AS cobranzas_sum, \
                (SELECT CAST(SUM(venta) AS BIGINT) FROM tipo_cambio) AS rates_sum, \
                (SELECT COUNT(*) FROM operaciones WHERE moneda = 'USD') AS usd",
    )
}

on_both_databases! {
    db_migrate_and_seed_make_the_same_realistic_data_for_a_seed => |kind| {
        let plugins = finance_dir();
        let a = TestDb::unmigrated(kind, 2);
        let out = toolbox(plugins.path(), &["db", "migrate", "--database", &a.url]);
        assert!(out.status.success(), "{}", describe(&out));
        // Migrating again is harmless.
        let out = toolbox(plugins.path(), &["db", "migrate", "--database", &a.url]);
        assert!(out.status.success(), "{}", describe(&out));

        let report = ok_json(&plugins, &["db", "seed", "--database", &a.url, "--operaciones", "400", "--seed", "42"]);
        assert_eq!(report["operaciones"], json!(400), "{report}");
        assert!(report["facturas"].as_u64().unwrap() >= 400, "{report}");

        // A database with data is not seeded over by accident.
        let out = toolbox(plugins.path(), &["db", "seed", "--database", &a.url, "--operaciones", "10"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("already has"), "{}", describe(&out));

        // The same seed gives the same rows; another seed, others.
        let b = TestDb::unmigrated(kind, 2);
        ok_json(&plugins, &["db", "seed", "--database", &b.url, "--operaciones", "400", "--seed", "42"]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        ok_json(&plugins, &["db", "seed", "--database", &b.url, "--operaciones", "400", "--seed", "43", "--replace"]);
        assert_ne!(fingerprint(&a), fingerprint(&b));

        // Realistic: both currencies; no rate on weekends; invoices paid in full, paid
        // late, partly paid and not paid at all.
        let facts = &a.rows(
            "SELECT (SELECT COUNT(DISTINCT moneda) FROM operaciones) AS monedas, \
                    (SELECT COUNT(*) FROM tipo_cambio WHERE fecha IN ('2024-06-01', '2024-06-02')) AS weekend_rates, \
                    (SELECT COUNT(*) FROM tipo_cambio WHERE fecha BETWEEN '2024-06-03' AND '2024-06-07') AS weekday_rates, \
                    (SELECT COUNT(*) FROM facturas f WHERE NOT EXISTS (SELECT 1 FROM cobranzas c WHERE c.factura_id = f.id)) AS unpaid, \
                    (SELECT COUNT(*) FROM facturas f WHERE f.monto > (SELECT SUM(c.monto) FROM cobranzas c WHERE c.factura_id = f.id)) AS partly, \
                    (SELECT COUNT(*) FROM facturas f WHERE f.monto = (SELECT SUM(c.monto) FROM cobranzas c WHERE c.factura_id = f.id)) AS paid, \
                    (SELECT COUNT(*) FROM cobranzas c JOIN facturas f ON f.id = c.factura_id WHERE c.fecha_pago > f.fecha_vencimiento) AS late, \
                    (SELECT MIN(CAST(fecha_operacion AS TEXT)) FROM operaciones) AS first_op, \
                    (SELECT MAX(CAST(fecha_operacion AS TEXT)) FROM operaciones) AS last_op",
        )[0];
        assert_eq!(facts["monedas"], json!(2), "{facts}");
        assert_eq!(facts["weekend_rates"], json!(0), "{facts}");
        assert_eq!(facts["weekday_rates"], json!(5), "{facts}");
        for key in ["unpaid", "partly", "paid", "late"] {
            assert!(facts[key].as_i64().unwrap() > 10, "{key}: {facts}");
        }
        assert!(facts["first_op"].as_str().unwrap() < "2022-03-01", "{facts}");
        assert!(facts["last_op"].as_str().unwrap() > "2025-10-01", "{facts}");
    };

    the_reports_run_from_the_command_line_on_seeded_data => |kind| {
        let plugins = finance_dir();
        let db = TestDb::new(kind);
        ok_json(&plugins, &["db", "seed", "--database", &db.url, "--operaciones", "300", "--seed", "7"]);
        let run = |task: &str, args: &str| ok_json(&plugins, &["run", task, "--args", args, "--database", &db.url]);

        let cxc = run("tablas_cxc", r#"{"fecha_corte": "2024-12-31"}"#);
        assert!(cxc["records"].as_u64().unwrap() > 0, "{cxc}");
        assert_eq!(run("tablas_reportes", "{}"), json!({"records": 300}));
        let kpi = run("kpi", "null");
        let acumulado = run("kpi-acumulado", "null");
        assert_eq!(kpi["records"], acumulado["records"]);

        // Properties the figures must have whatever they are: every operation counted
        // once; December's year to date is the sum of that year's months; no balance
        // listed is zero or negative.
        let checks = &db.rows(
            "SELECT (SELECT CAST(SUM(n_operaciones) AS BIGINT) FROM kpi_mensual) AS n, \
                    (SELECT COUNT(*) FROM operaciones) AS ops, \
                    (SELECT colocaciones_pen_ytd FROM kpi_acumulado WHERE periodo = '2024-12') AS ytd, \
                    (SELECT CAST(SUM(colocaciones_pen) AS BIGINT) FROM kpi_mensual WHERE periodo LIKE '2024-%') AS year, \
                    (SELECT CAST(SUM(monto_neto_pen) AS BIGINT) FROM reporte_operaciones WHERE periodo LIKE '2024-%') AS year_detail, \
                    (SELECT COUNT(*) FROM reporte_cxc WHERE saldo <= 0 OR saldo_pen <= 0) AS bad_balances",
        )[0];
        assert_eq!(checks["n"], checks["ops"], "{checks}");
        assert_eq!(checks["ytd"], checks["year"], "{checks}");
        assert_eq!(checks["year"], checks["year_detail"], "{checks}");
        assert_eq!(checks["bad_balances"], json!(0), "{checks}");
    };
}

fn status_until(server: &ServerProcess, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let body = get(&server.url(&format!("/tasks/status/{id}"))).json();
        if done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "task {id} stuck at {body:#}\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn execute(server: &ServerProcess, task: &str, args: &str) -> String {
    let reply = post(&server.url(&format!("/tasks/execute/{task}")), args, &[]);
    assert_eq!(reply.status, 202, "{}", reply.text);
    reply.json()["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned()
}

fn finished(body: &Value) -> bool {
    body["ready"] == json!(true)
}

/// The seed's flow on PostgreSQL: `serve` migrates, the API enqueues, the worker runs
/// the task with a session of the pool, the result comes back through status.
#[test]
fn serve_runs_the_finance_tasks_over_http_on_postgres() {
    let plugins = finance_dir();
    let db = TestDb::unmigrated(Kind::Postgres, 2);
    let server = ServerProcess::start("serve", plugins.path(), &["--database", &db.url]);
    let ready = get(&server.url("/ready")).json();
    assert_eq!(
        ready["database"],
        json!({"kind": "postgres", "ok": true}),
        "{ready}"
    );
    db.exec(
        "INSERT INTO clientes (id, ruc, razon_social) VALUES (1, '20100000001', 'Alfa SAC');
         INSERT INTO deudores (id, ruc, razon_social) VALUES (1, '20600000001', 'Deudor Uno');
         INSERT INTO tipo_cambio (fecha, compra, venta) VALUES ('2024-01-02', 37000, 37100);
         INSERT INTO operaciones (id, cliente_id, fecha_operacion, moneda, monto_neto, interes, comision)
             VALUES (1, 1, '2024-01-03', 'USD', 100000, 1000, 0);
         INSERT INTO facturas (id, operacion_id, deudor_id, numero, monto, fecha_emision, fecha_vencimiento)
             VALUES (1, 1, 1, 'F1', 101000, '2024-01-03', '2024-02-02');",
    );
    let id = execute(
        &server,
        "toolbox.tablas_cxc",
        r#"{"fecha_corte": "2024-02-12"}"#,
    );
    let body = status_until(&server, &id, finished);
    assert_eq!(body["status"], "SUCCESS", "{body:#}\n{}", server.log_tail());
    assert_eq!(
        body["result"],
        json!({"records": 1, "fecha_corte": "2024-02-12"})
    );
    // 101000 × 3.71 = 374710; ten days past due.
    assert_eq!(
        db.rows("SELECT saldo_pen, dias_vencido, tramo FROM reporte_cxc"),
        vec![json!({"saldo_pen": 374710, "dias_vencido": 10, "tramo": "1-30"})]
    );

    // Without arguments the cut-off is today, when the invoice is still owed.
    let id = execute(&server, "toolbox.tablas_cxc", "");
    let body = status_until(&server, &id, finished);
    assert_eq!(body["status"], "SUCCESS", "{body:#}");
    assert_eq!(body["result"]["records"], json!(1), "{body:#}");
    let today = body["result"]["fecha_corte"].as_str().unwrap_or_default();
    assert!(today.len() == 10 && today > "2026-01-01", "{body:#}");

    // A malformed date is refused by the task's schema before anything is enqueued.
    let reply = post(
        &server.url("/tasks/execute/toolbox.tablas_cxc"),
        r#"{"fecha_corte": "12/02/2024"}"#,
        &[],
    );
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(reply.text.contains("fecha_corte"), "{}", reply.text);
    // A well-formed but impossible one fails the run with the reason, unretried.
    let id = execute(
        &server,
        "toolbox.tablas_cxc",
        r#"{"fecha_corte": "2024-02-30"}"#,
    );
    let body = status_until(&server, &id, finished);
    assert_eq!(body["status"], "FAILURE", "{body:#}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("\"2024-02-30\" is not a date"),
        "{body:#}"
    );
    assert_eq!(body["attempts"], json!(1), "{body:#}");
}

/// A run that outlives its time limit inside a transaction: the task is failed at the
/// limit, its write is rolled back when its thread finally returns, and the session's
/// connection comes back (one connection in the pool: the next run would hang).
#[test]
fn a_run_stuck_past_its_time_limit_in_a_transaction_is_rolled_back() {
    let plugins = PluginsDir::new();
    plugins.add("libfixture_db.so", &artifacts().db_fixture);
    let db = TestDb::new(Kind::Sqlite);
    db.exec("CREATE TABLE scratch (id BIGINT PRIMARY KEY)");
    let server = ServerProcess::start(
        "serve",
        plugins.path(),
        &[
            "--database",
            &db.url,
            "--database-pool",
            "1",
            "--concurrency",
            "2",
        ],
    );
    let stuck = execute(
        &server,
        "fixture.db_stuck_in_transaction",
        r#"{"sql": "INSERT INTO scratch (id) VALUES (1)", "ms": 1500}"#,
    );
    let body = status_until(&server, &stuck, finished);
    assert_eq!(body["status"], "FAILURE", "{body:#}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("time limit exceeded"),
        "{body:#}"
    );

    // Waits for the stuck thread's connection, then sees no row: the transaction the
    // run never finished was rolled back, not committed.
    let query = execute(
        &server,
        "fixture.db_query",
        r#"{"sql": "SELECT COUNT(*) AS n FROM scratch", "params": []}"#,
    );
    let body = status_until(&server, &query, finished);
    assert_eq!(body["status"], "SUCCESS", "{body:#}\n{}", server.log_tail());
    assert_eq!(body["result"], json!([{"n": 0}]), "{body:#}");
}
