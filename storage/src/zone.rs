//! Time zones, as a session's `TimeZone` names them: UTC, a fixed offset or
//! an IANA zone (`Europe/Berlin`, from the `chrono-tz` database). A named
//! zone's offset depends on the instant (daylight saving), so every
//! conversion between an instant and a local time asks the zone for it.

use chrono::{NaiveDateTime, Offset, TimeZone};

use crate::types::MICROS_PER_SEC;

/// A time zone: where local times (TIMESTAMP, a TIMESTAMPTZ's text) meet
/// instants (TIMESTAMPTZ values, UTC microseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// A fixed number of seconds east of UTC.
    Fixed(i32),
    /// An IANA zone.
    Named(chrono_tz::Tz),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::UTC
    }
}

impl Zone {
    /// UTC.
    pub const UTC: Zone = Zone::Fixed(0);

    /// The zone a `TimeZone` setting names, as PostgreSQL reads it: an IANA
    /// name in any case (`Europe/Berlin`, `utc`, `CET`); a number of hours
    /// east (`2`, `'+02'`, `-3.5`); an ISO offset written as an interval
    /// (`INTERVAL '+02:00'`, given here as `interval:+02:00`); or a POSIX
    /// offset (`UTC+2`, `+02:00`, `-05:30`), whose sign PostgreSQL reads as
    /// *west* of UTC (`'+02:00'` is two hours behind UTC).
    pub fn parse(setting: &str) -> Option<Zone> {
        let t = setting.trim().trim_matches('\'').trim();
        if let Some(iso) = t.strip_prefix("interval:") {
            return parse_offset(iso).map(Zone::Fixed);
        }
        if let Ok(hours) = t.parse::<f64>() {
            let secs = (hours * 3600.0).round();
            return (secs.abs() <= 15.0 * 3600.0).then_some(Zone::Fixed(secs as i32));
        }
        if let Some(named) = named_zone(t) {
            return Some(named);
        }
        // POSIX: an optional abbreviation, then the hours *west* of it.
        let rest = t.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        if rest.is_empty() || !(rest.starts_with('+') || rest.starts_with('-')) {
            return None;
        }
        parse_offset(rest).map(|east| Zone::Fixed(-east))
    }

    /// The fixed offset in seconds east of UTC, for a zone that has one.
    pub fn fixed_offset(&self) -> Option<i64> {
        match self {
            Zone::Fixed(s) => Some(*s as i64),
            Zone::Named(_) => None,
        }
    }

    /// Seconds east of UTC in this zone at the instant `utc_micros`.
    pub fn offset_at(&self, utc_micros: i64) -> i64 {
        match self {
            Zone::Fixed(s) => *s as i64,
            Zone::Named(tz) => {
                let Some(utc) = crate::types::micros_to_datetime(utc_micros) else {
                    return 0;
                };
                tz.offset_from_utc_datetime(&utc).fix().local_minus_utc() as i64
            }
        }
    }

    /// The zone's abbreviation at the instant `utc_micros`, as `to_char`'s
    /// `TZ` prints it: `CET` or `CEST` for Europe/Berlin, `UTC`, or the offset
    /// (`+02`, `-05:30`) for a fixed one or a zone without an abbreviation.
    pub fn abbreviation_at(&self, utc_micros: i64) -> String {
        if let Zone::Named(tz) = self {
            if let Some(utc) = crate::types::micros_to_datetime(utc_micros) {
                use chrono_tz::OffsetName;
                if let Some(name) = tz.offset_from_utc_datetime(&utc).abbreviation() {
                    if !name.starts_with(['+', '-']) {
                        return name.to_string();
                    }
                }
            }
        }
        let offset = self.offset_at(utc_micros);
        if offset == 0 {
            return "UTC".into();
        }
        let sign = if offset < 0 { '-' } else { '+' };
        let abs = offset.abs();
        match abs % 3600 {
            0 => format!("{sign}{:02}", abs / 3600),
            m => format!("{sign}{:02}:{:02}", abs / 3600, m / 60),
        }
    }

    /// The local time (wall-clock microseconds) at the instant `utc_micros`.
    pub fn to_local(&self, utc_micros: i64) -> i64 {
        utc_micros + self.offset_at(utc_micros) * MICROS_PER_SEC
    }

    /// The instant of the local time `local_micros`. As in PostgreSQL, a local
    /// time that happens twice (clocks turned back) is read in standard time,
    /// the later instant, and one that never happens (clocks turned forward)
    /// with the offset in force before the change.
    pub fn to_utc(&self, local_micros: i64) -> i64 {
        let tz = match self {
            Zone::Fixed(s) => return local_micros - *s as i64 * MICROS_PER_SEC,
            Zone::Named(tz) => tz,
        };
        let Some(local) = crate::types::micros_to_datetime(local_micros) else {
            return local_micros;
        };
        let offset = match tz.offset_from_local_datetime(&local) {
            chrono::LocalResult::Single(o) => o.fix().local_minus_utc(),
            chrono::LocalResult::Ambiguous(a, b) => {
                a.fix().local_minus_utc().min(b.fix().local_minus_utc())
            }
            chrono::LocalResult::None => {
                // The offset an hour before the gap started.
                let before: NaiveDateTime = local - chrono::Duration::hours(3);
                tz.offset_from_utc_datetime(&before).fix().local_minus_utc()
            }
        };
        local_micros - offset as i64 * MICROS_PER_SEC
    }
}

/// An IANA zone by name, in any case; `None` if there is no such zone.
fn named_zone(name: &str) -> Option<Zone> {
    let lower = name.to_ascii_lowercase();
    if [
        "utc",
        "gmt",
        "z",
        "zulu",
        "uct",
        "universal",
        "etc/utc",
        "etc/gmt",
        "greenwich",
    ]
    .contains(&lower.as_str())
    {
        return Some(Zone::UTC);
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(name))
        .map(|tz| Zone::Named(*tz))
}

/// `+hh`, `-hh:mm`, `+hhmm` as seconds east (the sign as written).
fn parse_offset(text: &str) -> Option<i32> {
    let (sign, digits) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => (1, text),
    };
    let (h, m): (i32, i32) = match digits.split_once(':') {
        Some((h, m)) => (h.parse().ok()?, m.parse().ok()?),
        None if digits.len() == 4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
        None => (digits.parse().ok()?, 0),
    };
    (h <= 15 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * MICROS_PER_SEC;

    #[test]
    fn settings_read_as_postgresql_reads_them() {
        assert_eq!(Zone::parse("UTC"), Some(Zone::UTC));
        assert_eq!(Zone::parse("+02"), Some(Zone::Fixed(7200)));
        assert_eq!(Zone::parse("+02:00"), Some(Zone::Fixed(-7200)));
        assert_eq!(Zone::parse("UTC+2"), Some(Zone::Fixed(-7200)));
        assert_eq!(Zone::parse("-05:30"), Some(Zone::Fixed(5 * 3600 + 1800)));
        assert_eq!(Zone::parse("interval:+02:00"), Some(Zone::Fixed(7200)));
        assert_eq!(Zone::parse("3"), Some(Zone::Fixed(3 * 3600)));
        assert_eq!(
            Zone::parse("europe/berlin"),
            Some(Zone::Named(chrono_tz::Tz::Europe__Berlin))
        );
        assert_eq!(Zone::parse("Mars/Olympus"), None);
    }

    #[test]
    fn named_zones_follow_daylight_saving() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // 2024-01-15 12:00 UTC is 13:00 in Berlin, 2024-07-15 12:00 UTC 14:00.
        let winter = 1_705_320_000 * MICROS_PER_SEC;
        let summer = 1_721_044_800 * MICROS_PER_SEC;
        assert_eq!(berlin.to_local(winter) - winter, HOUR);
        assert_eq!(berlin.to_local(summer) - summer, 2 * HOUR);
        assert_eq!(berlin.to_utc(berlin.to_local(summer)), summer);
        // 2024-10-27 02:30 happens twice: standard time, 01:30 UTC.
        let twice = 1_729_996_200 * MICROS_PER_SEC; // 2024-10-27 02:30 as local micros
        assert_eq!(berlin.to_utc(twice), twice - HOUR);
        // 2024-03-31 02:30 never happens: read at +01, 01:30 UTC.
        let never = 1_711_852_200 * MICROS_PER_SEC; // 2024-03-31 02:30 as local micros
        assert_eq!(berlin.to_utc(never), never - HOUR);
    }
}
