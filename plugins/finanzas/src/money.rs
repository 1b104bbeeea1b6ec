//! Decimal text to exact integers and back, with no binary floating point on the way.

/// `"1500.25"` → 150025 céntimos. At most 2 decimals; no sign, no thousands separator.
pub fn parse_cents(text: &str) -> Result<i64, String> {
    parse_fixed(text, 2)
}

/// `"3.7512"` → 37512 ten-thousandths of a sol per dollar. At most 4 decimals.
pub fn parse_rate(text: &str) -> Result<i64, String> {
    parse_fixed(text, 4)
}

/// An amount in céntimos as decimal text: 150025 → `"1500.25"`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A JSON number or string as the decimal text it was written as: a number is taken
/// from serde_json's shortest round-trip text (3.705 stays "3.705").
pub fn decimal_text(value: &serde_json::Value) -> Result<String, String> {
    match value {
        serde_json::Value::String(s) => Ok(s.trim().to_owned()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("{other} is not a number")),
    }
}

fn parse_fixed(text: &str, decimals: u32) -> Result<i64, String> {
    let text = text.trim();
    let invalid = |why: &str| format!("{text:?} is not an amount: {why}");
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "expected digits, an optional point and decimals (1500.25)",
        ));
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || (text.contains('.') && fraction.is_empty())
    {
        return Err(invalid("expected digits after the point"));
    }
    let significant = fraction.trim_end_matches('0');
    if significant.len() > decimals as usize {
        return Err(invalid(&format!("more than {decimals} decimals")));
    }
    let scale = 10_i64.pow(decimals);
    let whole: i64 = whole
        .parse()
        .ok()
        .filter(|w: &i64| w.checked_mul(scale).is_some())
        .ok_or_else(|| invalid("too large"))?;
    let mut fraction_value: i64 = 0;
    for (i, digit) in significant.bytes().enumerate() {
        fraction_value += i64::from(digit - b'0') * 10_i64.pow(decimals - 1 - i as u32);
    }
    whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(fraction_value))
        .ok_or_else(|| invalid("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_cents("1500.25"), Ok(150_025));
        assert_eq!(parse_cents("1500.2"), Ok(150_020));
        assert_eq!(parse_cents("1500"), Ok(150_000));
        assert_eq!(parse_cents("0.10"), Ok(10));
        assert_eq!(parse_cents("12.3400"), Ok(1_234));
        assert_eq!(parse_rate("3.7512"), Ok(37_512));
        assert_eq!(parse_rate("3.705"), Ok(37_050));
    }

    #[test]
    fn bad_amounts_say_why() {
        for bad in [
            "",
            "-5",
            "1,500.00",
            "12.345",
            "1e3",
            "abc",
            "3.",
            ".5",
            "99999999999999999999",
        ] {
            let error = parse_cents(bad).unwrap_err();
            assert!(error.contains("is not an amount"), "{bad}: {error}");
        }
        assert!(parse_cents("12.345")
            .unwrap_err()
            .contains("more than 2 decimals"));
    }

    #[test]
    fn cents_format_as_decimals() {
        assert_eq!(format_cents(150_025), "1500.25");
        assert_eq!(format_cents(5), "0.05");
        assert_eq!(format_cents(-5), "-0.05");
    }

    #[test]
    fn json_numbers_keep_their_written_decimals() {
        let value: serde_json::Value = serde_json::from_str("3.705").unwrap();
        assert_eq!(parse_rate(&decimal_text(&value).unwrap()), Ok(37_050));
    }
}
