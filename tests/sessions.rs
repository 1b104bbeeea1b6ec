//! The database session a run gets: values both ways, errors, transactions, and the
//! connection always going back to the pool, through real plugin builds.

use serde_json::json;
use toolbox::plugins::TaskFailure;

use crate::support::databases::{finance_plugins, on_both_databases, Kind, TestDb};

const SCRATCH: &str =
    "CREATE TABLE scratch (id BIGINT PRIMARY KEY, d DATE, t TEXT, n BIGINT, f DOUBLE PRECISION)";

on_both_databases! {
    values_cross_the_boundary_the_same_way_on_both => |kind| {
        let db = TestDb::new(kind);
        let (_dir, catalog) = finance_plugins();
        db.exec(SCRATCH);
        // A NULL goes into a date and an integer column alike (PostgreSQL infers its
        // type); a date parameter into a DATE column.
        let affected = db.run(&catalog, "fixture.db_execute", json!([
            {"sql": "INSERT INTO scratch (id, d, t, n, f) VALUES ($1, $2, $3, $4, $5)",
             "params": [1, {"date": "2024-02-29"}, "ñandú, 'quoted'", null, 2.5]},
            {"sql": "INSERT INTO scratch (id, d, t, n, f) VALUES ($1, $2, $3, $4, $5)",
             "params": [2, null, null, 9007199254740993_i64, null]},
        ])).unwrap();
        assert_eq!(affected, json!(2));
        let rows = db.run(&catalog, "fixture.db_query", json!({
            "sql": "SELECT id, d, t, n, f FROM scratch WHERE d IS NULL OR d <= $1 ORDER BY id",
            "params": [{"date": "2024-03-01"}],
        })).unwrap();
        assert_eq!(rows, json!([
            {"id": 1, "d": "2024-02-29", "t": "ñandú, 'quoted'", "n": null, "f": 2.5},
            {"id": 2, "d": null, "t": null, "n": 9007199254740993_i64, "f": null},
        ]));
        // A sum of integers is exact (on PostgreSQL it is a NUMERIC).
        let sum = db.run(&catalog, "fixture.db_query", json!({
            "sql": "SELECT SUM(n) AS total, COUNT(*) AS rows FROM scratch", "params": [],
        })).unwrap();
        assert_eq!(sum, json!([{"total": 9007199254740993_i64, "rows": 2}]));
    };

    errors_name_the_statement_and_do_not_retry_a_wrong_one => |kind| {
        let db = TestDb::new(kind);
        let (_dir, catalog) = finance_plugins();
        let failure = db
            .run(&catalog, "fixture.db_query", json!({"sql": "SELECT nope FROM nowhere", "params": []}))
            .unwrap_err();
        assert!(matches!(failure, TaskFailure::Fatal { .. }), "{failure:?}");
        assert!(failure.message().contains("`SELECT nope FROM nowhere` failed"), "{failure}");
        assert!(failure.message().contains("nowhere"), "{failure}");

        let failure = db
            .run(&catalog, "fixture.db_query", json!({"sql": "SELECT $1 AS d", "params": [{"date": "2024-02-30"}]}))
            .unwrap_err();
        assert!(failure.message().contains("parameter $1"), "{failure}");
        assert!(failure.message().contains("2024-02-30"), "{failure}");

        // A transaction the session would not know of (and so not roll back) is refused.
        let failure = db
            .run(&catalog, "fixture.db_query", json!({"sql": "BEGIN", "params": []}))
            .unwrap_err();
        assert!(failure.message().contains("ctx.db().transaction"), "{failure}");
    };

    a_run_that_panics_in_a_transaction_gives_its_connection_back => |kind| {
        // One connection in the pool: if the panicking run kept it, the next run would
        // wait for it until the acquire timeout and fail.
        let db = TestDb::with_pool(kind, 1);
        let (_dir, catalog) = finance_plugins();
        db.exec(SCRATCH);
        let failure = db
            .run(&catalog, "fixture.db_panic_in_transaction", json!({
                "sql": "INSERT INTO scratch (id) VALUES (1)", "params": [],
            }))
            .unwrap_err();
        assert!(matches!(failure, TaskFailure::Panicked { .. }), "{failure:?}");
        assert!(failure.message().contains("boom after writing"), "{failure}");

        let started = std::time::Instant::now();
        let rows = db
            .run(&catalog, "fixture.db_query", json!({"sql": "SELECT COUNT(*) AS n FROM scratch", "params": []}))
            .unwrap();
        // The write was rolled back with the transaction the panic left open.
        assert_eq!(rows, json!([{"n": 0}]));
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        // Dropping a pooled connection hands it back from a task of the pool's own.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while db.db.pool_state() != (1, 1) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(db.db.pool_state(), (1, 1), "the connection is back in the pool");
    };

    a_failed_transaction_is_rolled_back_whole => |kind| {
        let db = TestDb::new(kind);
        let (_dir, catalog) = finance_plugins();
        db.exec(SCRATCH);
        let failure = db.run(&catalog, "fixture.db_execute", json!([
            {"sql": "INSERT INTO scratch (id) VALUES (1)"},
            {"sql": "INSERT INTO scratch (id) VALUES (1)"},
        ])).unwrap_err();
        assert!(failure.message().contains("INSERT INTO scratch (id) VALUES (1)"), "{failure}");
        assert_eq!(db.rows("SELECT COUNT(*) AS n FROM scratch"), vec![json!({"n": 0})]);
    };
}

/// A run without a database (a plugin used by `toolbox run` in a process started with
/// none, or the plugin SDK's TestHost) gets a clear, permanent error.
#[test]
fn a_process_without_a_database_says_so() {
    let (_dir, catalog) = finance_plugins();
    let handle = catalog.resolve("fixture.db_query").expect("fixture loaded");
    let ctx = toolbox::plugins::RunContext::new("00000000-0000-7000-8000-0000000000d0");
    let failure = handle
        .run(&json!({"sql": "SELECT 1", "params": []}).to_string(), &ctx)
        .unwrap_err();
    assert!(matches!(failure, TaskFailure::Fatal { .. }), "{failure:?}");
    assert!(failure.message().contains("no database"), "{failure}");
}
