//! Statement parameters as they arrive from a plugin (JSON), and their binding.
//!
//! The encoding is the SDK's `Value`: JSON null, booleans, numbers and strings are
//! themselves; a date is `{"date": "YYYY-MM-DD"}`.

use chrono::NaiveDate;
use serde_json::Value as Json;
use sqlx::{
    encode::IsNull,
    error::BoxDynError,
    postgres::{PgArgumentBuffer, PgTypeInfo, Postgres},
    sqlite::Sqlite,
    Encode, Type,
};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Date(NaiveDate),
}

/// Parses one parameter list; errors name the parameter (`$2`) and what was wrong.
pub(super) fn parse_list(values: &[Json]) -> Result<Vec<Param>, String> {
    values
        .iter()
        .enumerate()
        .map(|(i, value)| parse_one(value).map_err(|e| format!("parameter ${}: {e}", i + 1)))
        .collect()
}

/// Parses `[[...], [...]]`: the parameter lists of one statement run several times.
pub(super) fn parse_lists(json: &str) -> Result<Vec<Vec<Param>>, String> {
    let lists: Vec<Vec<Json>> = serde_json::from_str(json)
        .map_err(|e| format!("the parameters are not a JSON array of arrays: {e}"))?;
    lists
        .iter()
        .enumerate()
        .map(|(row, list)| {
            parse_list(list).map_err(|e| {
                if lists.len() > 1 {
                    format!("parameter list {}: {e}", row + 1)
                } else {
                    e
                }
            })
        })
        .collect()
}

/// Parses `[...]`: the parameters of one statement.
pub(super) fn parse_single(json: &str) -> Result<Vec<Param>, String> {
    let list: Vec<Json> = serde_json::from_str(json)
        .map_err(|e| format!("the parameters are not a JSON array: {e}"))?;
    parse_list(&list)
}

fn parse_one(value: &Json) -> Result<Param, String> {
    Ok(match value {
        Json::Null => Param::Null,
        Json::Bool(b) => Param::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Param::Int(i)
            } else if n.is_u64() {
                return Err(format!("{n} does not fit a 64-bit signed integer"));
            } else {
                Param::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Param::Text(s.clone()),
        Json::Object(map) => match (map.len(), map.get("date")) {
            (1, Some(Json::String(date))) => Param::Date(
                NaiveDate::parse_from_str(date, "%Y-%m-%d")
                    .map_err(|e| format!("{date:?} is not a date (YYYY-MM-DD): {e}"))?,
            ),
            _ => return Err(format!("unsupported value {value}: only {{\"date\": \"YYYY-MM-DD\"}} objects are parameters")),
        },
        Json::Array(_) => return Err(format!("unsupported value {value}: arrays are not parameters")),
    })
}

/// A NULL whose type PostgreSQL infers from where it is used: sqlx would otherwise send
/// it typed (as text, say), which PostgreSQL refuses in a date or integer column. A
/// NULL has no bytes, so leaving its type open cannot misread a value.
struct UntypedNull;

impl Type<Postgres> for UntypedNull {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl Encode<'_, Postgres> for UntypedNull {
    fn encode_by_ref(&self, _: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }
}

pub(super) fn bind_postgres<'q>(
    mut query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    params: &[Param],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    for param in params {
        query = match param {
            Param::Null => query.bind(UntypedNull),
            Param::Bool(b) => query.bind(*b),
            Param::Int(i) => query.bind(*i),
            Param::Float(f) => query.bind(*f),
            Param::Text(s) => query.bind(s.clone()),
            Param::Date(d) => query.bind(*d),
        };
    }
    query
}

pub(super) fn bind_sqlite<'q>(
    mut query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>,
    params: &[Param],
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments> {
    for param in params {
        query = match param {
            Param::Null => query.bind(None::<i64>),
            Param::Bool(b) => query.bind(*b),
            Param::Int(i) => query.bind(*i),
            Param::Float(f) => query.bind(*f),
            Param::Text(s) => query.bind(s.clone()),
            // sqlx stores a NaiveDate as this same text on SQLite.
            Param::Date(d) => query.bind(d.format("%Y-%m-%d").to_string()),
        };
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_into_parameters() {
        let params =
            parse_single(r#"[null, true, -7, 2.5, "PEN", {"date": "2024-02-29"}]"#).unwrap();
        assert_eq!(
            params,
            vec![
                Param::Null,
                Param::Bool(true),
                Param::Int(-7),
                Param::Float(2.5),
                Param::Text("PEN".into()),
                Param::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
            ]
        );
    }

    #[test]
    fn bad_parameters_are_named_by_position() {
        let error = parse_single(r#"[1, {"date": "2023-02-29"}]"#).unwrap_err();
        assert!(error.starts_with("parameter $2:"), "{error}");
        assert!(error.contains("2023-02-29"), "{error}");
        let error = parse_single(r#"[[1]]"#).unwrap_err();
        assert!(error.contains("arrays are not parameters"), "{error}");
        let error = parse_lists(r#"[[1], [18446744073709551615]]"#).unwrap_err();
        assert!(
            error.starts_with("parameter list 2: parameter $1:"),
            "{error}"
        );
    }
}
