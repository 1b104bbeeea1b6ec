//! Rows as they go back to a plugin: a JSON object per row, keyed by column name.
//!
//! Integers and floats are numbers; text is a string; a date is `"YYYY-MM-DD"` on both
//! databases (SQLite keeps dates as that text); a PostgreSQL NUMERIC (what `SUM` of a
//! BIGINT gives) is an exact integer when it has no fractional digits and an exact
//! decimal string otherwise, never a float.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value as Json};
use sqlx::{
    postgres::{PgRow, PgValueFormat, PgValueRef},
    sqlite::SqliteRow,
    Column, Decode, Row, Sqlite, TypeInfo, ValueRef,
};

pub(super) fn postgres_row(row: &PgRow) -> Result<Json, String> {
    let mut object = Map::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = row.try_get_raw(i).map_err(|e| e.to_string())?;
        let json = postgres_value(value).map_err(|e| format!("column {:?}: {e}", column.name()))?;
        object.insert(column.name().to_owned(), json);
    }
    Ok(Json::Object(object))
}

fn postgres_value(value: PgValueRef<'_>) -> Result<Json, String> {
    if value.is_null() {
        return Ok(Json::Null);
    }
    // A `&'static str` copy of the name: the value itself is consumed by the decode.
    let type_name = postgres_type(&value.type_info());
    fn decode<'r, T: Decode<'r, sqlx::Postgres>>(value: PgValueRef<'r>) -> Result<T, String> {
        T::decode(value).map_err(|e| e.to_string())
    }
    Ok(match type_name {
        "BOOL" => Json::from(decode::<bool>(value)?),
        "INT2" => Json::from(decode::<i16>(value)?),
        "INT4" => Json::from(decode::<i32>(value)?),
        "INT8" => Json::from(decode::<i64>(value)?),
        "OID" => Json::from(decode::<sqlx::postgres::types::Oid>(value)?.0),
        "FLOAT4" => Json::from(decode::<f32>(value)?),
        "FLOAT8" => Json::from(decode::<f64>(value)?),
        "NUMERIC" => numeric_json(value)?,
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" => {
            Json::from(decode::<String>(value)?)
        }
        "DATE" => Json::from(decode::<NaiveDate>(value)?.format("%Y-%m-%d").to_string()),
        "TIMESTAMP" => Json::from(
            decode::<NaiveDateTime>(value)?
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string(),
        ),
        "TIMESTAMPTZ" => Json::from(decode::<DateTime<Utc>>(value)?.to_rfc3339()),
        "JSON" | "JSONB" => {
            let bytes = value.as_bytes().map_err(|e| e.to_string())?;
            // Binary JSONB starts with its format version (1); JSON is plain text.
            let text = match (type_name, value.format()) {
                ("JSONB", PgValueFormat::Binary) => bytes.get(1..).unwrap_or_default(),
                _ => bytes,
            };
            serde_json::from_slice(text).map_err(|e| e.to_string())?
        }
        _ => {
            return Err(format!(
                "type {} cannot be passed to a plugin; cast it in the query \
                 (CAST(... AS TEXT), AS BIGINT, ...)",
                value.type_info().name()
            ))
        }
    })
}

/// The types rows may hold, by PostgreSQL's name; `""` for any other.
fn postgres_type(info: &sqlx::postgres::PgTypeInfo) -> &'static str {
    const KNOWN: [&str; 19] = [
        "BOOL",
        "INT2",
        "INT4",
        "INT8",
        "OID",
        "FLOAT4",
        "FLOAT8",
        "NUMERIC",
        "TEXT",
        "VARCHAR",
        "BPCHAR",
        "NAME",
        "CHAR",
        "CITEXT",
        "DATE",
        "TIMESTAMP",
        "TIMESTAMPTZ",
        "JSON",
        "JSONB",
    ];
    let name = info.name();
    KNOWN.into_iter().find(|known| *known == name).unwrap_or("")
}

fn numeric_json(value: PgValueRef<'_>) -> Result<Json, String> {
    let text = match value.format() {
        PgValueFormat::Text => value.as_str().map_err(|e| e.to_string())?.to_owned(),
        PgValueFormat::Binary => numeric_text(value.as_bytes().map_err(|e| e.to_string())?)?,
    };
    if !text.contains('.') {
        if let Ok(integer) = text.parse::<i64>() {
            return Ok(Json::from(integer));
        }
    }
    Ok(Json::from(text))
}

/// The decimal text of PostgreSQL's binary NUMERIC: ndigits, weight, sign, dscale
/// (each 16 bits), then `ndigits` base-10000 digits, the first worth 10000^weight.
fn numeric_text(bytes: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        bytes
            .get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated NUMERIC value".to_owned())
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i64;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        other => return Err(format!("unknown NUMERIC sign {other:#x}")),
    }
    let digits = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<Result<Vec<_>, _>>()?;
    let digit = |i: i64| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        text.push_str(&digit(0).to_string());
        for i in 1..=weight {
            text.push_str(&format!("{:04}", digit(i)));
        }
    }
    if dscale > 0 {
        let mut fraction = String::with_capacity(dscale + 4);
        let mut k = 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(weight + k)));
            k += 1;
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    if text == "-0" || (text.starts_with("-0.") && text[3..].bytes().all(|b| b == b'0')) {
        text.remove(0);
    }
    Ok(text)
}

pub(super) fn sqlite_row(row: &SqliteRow) -> Result<Json, String> {
    let mut object = Map::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = row.try_get_raw(i).map_err(|e| e.to_string())?;
        let json = if value.is_null() {
            Json::Null
        } else {
            // SQLite's storage class, tested before the value is consumed by the decode.
            let class = match value.type_info().name() {
                "INTEGER" | "BOOLEAN" => 'i',
                "REAL" => 'r',
                "TEXT" | "DATE" | "DATETIME" | "TIME" => 't',
                _ => '?',
            };
            let decoded = match class {
                'i' => <i64 as Decode<Sqlite>>::decode(value).map(Json::from),
                'r' => <f64 as Decode<Sqlite>>::decode(value).map(Json::from),
                't' => <String as Decode<Sqlite>>::decode(value).map(Json::from),
                _ => {
                    return Err(format!(
                        "column {:?}: type {} cannot be passed to a plugin; cast it in \
                         the query",
                        column.name(),
                        value.type_info().name()
                    ))
                }
            };
            decoded.map_err(|e| format!("column {:?}: {e}", column.name()))?
        };
        object.insert(column.name().to_owned(), json);
    }
    Ok(Json::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [ndigits, weight as u16, sign, dscale]
            .into_iter()
            .chain(digits.iter().copied())
        {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn binary_numerics_decode_exactly() {
        // 1234567.89 = 123|4567|.8900
        assert_eq!(
            numeric_text(&numeric(3, 1, 0, 2, &[123, 4567, 8900])).unwrap(),
            "1234567.89"
        );
        // -0.0005 = weight -1, digit 5 (0.0005)
        assert_eq!(
            numeric_text(&numeric(1, -1, 0x4000, 4, &[5])).unwrap(),
            "-0.0005"
        );
        // weight -2: the digit is worth 10000^-2, the second group after the point.
        assert_eq!(
            numeric_text(&numeric(1, -2, 0, 8, &[1])).unwrap(),
            "0.00000001"
        );
        assert_eq!(
            numeric_text(&numeric(1, -2, 0, 8, &[100])).unwrap(),
            "0.00000100"
        );
        // 20000 = weight 1, digits [2] (trailing zero groups are dropped)
        assert_eq!(numeric_text(&numeric(1, 1, 0, 0, &[2])).unwrap(), "20000");
        assert_eq!(numeric_text(&numeric(0, 0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(numeric_text(&numeric(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert!(numeric_text(&[0, 1]).is_err());
    }
}
