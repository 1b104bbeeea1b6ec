//! Cron expressions in a time zone: `croner` does the field matching on wall-clock time,
//! `jiff` turns wall-clock times into instants with the zone's daylight-saving rules (a
//! time skipped by a spring-forward fires right after the gap; a time repeated by a
//! fall-back fires once).

use chrono::{Datelike, NaiveDate, TimeZone, Timelike, Utc};
use jiff::{civil, tz::TimeZone as Zone, Timestamp};

#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    cron: croner::Cron,
}

impl CronSchedule {
    /// 5 fields (minute resolution) or 6 (with seconds first).
    pub fn parse(expression: &str) -> Result<Self, String> {
        let fields = expression.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "cron {expression:?} has {fields} fields; use 5 (minute hour day month weekday) or 6 (seconds first)"
            ));
        }
        let cron = croner::Cron::new(expression)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("cron {expression:?} is not valid: {e}"))?;
        Ok(Self {
            expression: expression.to_owned(),
            cron,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first fire time strictly after `after`, in `zone`.
    pub fn next_after(&self, after: Timestamp, zone: &Zone) -> Option<Timestamp> {
        let mut civil = after.to_zoned(zone.clone()).datetime();
        for _ in 0..8 {
            // Wall-clock time is handed to croner as if it were UTC: croner matches the
            // fields, jiff does the zone.
            let naive = NaiveDate::from_ymd_opt(
                i32::from(civil.year()),
                civil.month() as u32,
                civil.day() as u32,
            )?
            .and_hms_nano_opt(
                civil.hour() as u32,
                civil.minute() as u32,
                civil.second() as u32,
                civil.subsec_nanosecond() as u32,
            )?;
            let next = self
                .cron
                .find_next_occurrence(&Utc.from_utc_datetime(&naive), false)
                .ok()?;
            let next_civil = civil::DateTime::new(
                i16::try_from(next.year()).ok()?,
                next.month() as i8,
                next.day() as i8,
                next.hour() as i8,
                next.minute() as i8,
                next.second() as i8,
                0,
            )
            .ok()?;
            let instant = zone
                .to_ambiguous_zoned(next_civil)
                .compatible()
                .ok()?
                .timestamp();
            if instant > after {
                return Some(instant);
            }
            // A wall-clock time that maps to an earlier instant (the repeated hour of a
            // fall-back): look further.
            civil = next_civil;
        }
        None
    }

    /// The latest fire time at or before `now` and after `since`, found by walking forward
    /// from `since` (bounded: at most a day back).
    pub fn latest_between(
        &self,
        since: Timestamp,
        now: Timestamp,
        zone: &Zone,
    ) -> Option<Timestamp> {
        let floor = now
            .checked_sub(jiff::SignedDuration::from_hours(24))
            .unwrap_or(since);
        let mut cursor = since.max(floor);
        let mut latest = None;
        for _ in 0..100_000 {
            match self.next_after(cursor, zone) {
                Some(t) if t <= now => {
                    latest = Some(t);
                    cursor = t;
                }
                _ => break,
            }
        }
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn fields_and_errors() {
        assert!(CronSchedule::parse("0 0 6 * * *").is_ok());
        assert!(CronSchedule::parse("*/5 * * * *").is_ok());
        for bad in ["* * * *", "61 * * * *", "a b c d e", "* * * * * * *", ""] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn next_fire_times_in_lima() {
        let lima = Zone::get("America/Lima").unwrap();
        let six = CronSchedule::parse("0 0 6 * * *").unwrap();
        // 06:00 in Lima (UTC-5) is 11:00 UTC.
        assert_eq!(
            six.next_after(at("2026-03-01T10:00:00Z"), &lima),
            Some(at("2026-03-01T11:00:00Z"))
        );
        assert_eq!(
            six.next_after(at("2026-03-01T11:00:00Z"), &lima),
            Some(at("2026-03-02T11:00:00Z"))
        );
        let every_second = CronSchedule::parse("* * * * * *").unwrap();
        assert_eq!(
            every_second.next_after(at("2026-03-01T10:00:00.5Z"), &lima),
            Some(at("2026-03-01T10:00:01Z"))
        );
        let minutes = CronSchedule::parse("*/15 * * * *").unwrap();
        assert_eq!(
            minutes.next_after(at("2026-03-01T10:07:00Z"), &lima),
            Some(at("2026-03-01T10:15:00Z"))
        );
    }

    #[test]
    fn daylight_saving_gaps_and_folds() {
        let ny = Zone::get("America/New_York").unwrap();
        // 2026-03-08: 02:00 → 03:00 local. A 02:30 job fires right after the gap, once.
        let half_past_two = CronSchedule::parse("0 30 2 * * *").unwrap();
        let fire = half_past_two
            .next_after(at("2026-03-08T05:00:00Z"), &ny)
            .unwrap();
        assert_eq!(fire, at("2026-03-08T07:30:00Z"), "03:30 EDT");
        // 2026-11-01: 01:00–02:00 happens twice. A 01:30 job fires once that day.
        let half_past_one = CronSchedule::parse("0 30 1 * * *").unwrap();
        let first = half_past_one
            .next_after(at("2026-11-01T04:00:00Z"), &ny)
            .unwrap();
        assert_eq!(first, at("2026-11-01T05:30:00Z"), "01:30 EDT");
        let second = half_past_one.next_after(first, &ny).unwrap();
        assert_eq!(
            second,
            at("2026-11-02T06:30:00Z"),
            "the next day, not the repeated hour"
        );
    }

    #[test]
    fn latest_missed_tick() {
        let utc = Zone::UTC;
        let every_minute = CronSchedule::parse("* * * * *").unwrap();
        let latest = every_minute.latest_between(
            at("2026-03-01T10:00:00Z"),
            at("2026-03-01T10:05:30Z"),
            &utc,
        );
        assert_eq!(latest, Some(at("2026-03-01T10:05:00Z")));
        assert_eq!(
            every_minute.latest_between(
                at("2026-03-01T10:05:00Z"),
                at("2026-03-01T10:05:30Z"),
                &utc
            ),
            None
        );
    }
}
