//! Calendar dates as the tasks take them: `YYYY-MM-DD`.

use jiff::civil::Date;

/// Parses `YYYY-MM-DD`, naming the value in the error.
pub fn parse_date(text: &str) -> Result<Date, String> {
    let trimmed = text.trim();
    let well_formed = trimmed.len() == 10
        && trimmed.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !well_formed {
        return Err(format!("{text:?} is not a date (expected YYYY-MM-DD)"));
    }
    trimmed
        .parse::<Date>()
        .map_err(|e| format!("{text:?} is not a date: {e}"))
}

/// Today in the host's time zone (set `TZ=America/Lima` where that is not Lima).
pub fn today() -> Date {
    jiff::Zoned::now().date()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_bad_ones_are_named() {
        assert_eq!(parse_date("2024-02-29").unwrap().to_string(), "2024-02-29");
        for bad in [
            "2023-02-29",
            "2024-2-29",
            "29/02/2024",
            "",
            "2024-02-29T00:00",
        ] {
            let error = parse_date(bad).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }
}
