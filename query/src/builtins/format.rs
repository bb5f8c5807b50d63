//! PostgreSQL's date/time templates (`'YYYY-MM-DD HH24:MI:SS.US'`), read for
//! `to_timestamp` and `to_date` and written for `to_char`. Hand-written: no
//! crate speaks this dialect (chrono's strftime is another one), and BI tools
//! send it in every time filter.

use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

use crate::error::{Error, Result};

/// How a name (month, day, meridiem) is capitalised: `MON`, `Mon` or `mon`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Upper,
    Title,
    Lower,
}

/// One field of a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Year4,
    Year3,
    Year2,
    Year1,
    IsoYear,
    Month,
    MonthName(Case),
    MonthAbbrev(Case),
    DayName(Case),
    DayAbbrev(Case),
    DayOfMonth,
    DayOfYear,
    DayOfWeek,
    IsoDayOfWeek,
    Hour24,
    Hour12,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    SecondsOfDay,
    Meridiem(Case, bool),
    IsoWeek,
    WeekOfYear,
    Quarter,
    Julian,
    ZoneName(Case),
    ZoneOffset,
}

/// A template item: a field (with `FM`: no padding) or literal text.
#[derive(Clone, Debug, PartialEq)]
enum Item {
    Field(Field, bool),
    Literal(char),
}

/// Template keywords, longest first so `HH24` wins over `HH`.
const KEYWORDS: &[(&str, Field)] = &[
    ("HH24", Field::Hour24),
    ("HH12", Field::Hour12),
    ("HH", Field::Hour12),
    ("MI", Field::Minute),
    ("SSSSS", Field::SecondsOfDay),
    ("SSSS", Field::SecondsOfDay),
    ("SS", Field::Second),
    ("MS", Field::Millisecond),
    ("US", Field::Microsecond),
    ("A.M.", Field::Meridiem(Case::Upper, true)),
    ("P.M.", Field::Meridiem(Case::Upper, true)),
    ("a.m.", Field::Meridiem(Case::Lower, true)),
    ("p.m.", Field::Meridiem(Case::Lower, true)),
    ("AM", Field::Meridiem(Case::Upper, false)),
    ("PM", Field::Meridiem(Case::Upper, false)),
    ("am", Field::Meridiem(Case::Lower, false)),
    ("pm", Field::Meridiem(Case::Lower, false)),
    ("IYYY", Field::IsoYear),
    ("YYYY", Field::Year4),
    ("YYY", Field::Year3),
    ("YY", Field::Year2),
    ("Y", Field::Year1),
    ("MONTH", Field::MonthName(Case::Upper)),
    ("Month", Field::MonthName(Case::Title)),
    ("month", Field::MonthName(Case::Lower)),
    ("MON", Field::MonthAbbrev(Case::Upper)),
    ("Mon", Field::MonthAbbrev(Case::Title)),
    ("mon", Field::MonthAbbrev(Case::Lower)),
    ("MM", Field::Month),
    ("DAY", Field::DayName(Case::Upper)),
    ("Day", Field::DayName(Case::Title)),
    ("day", Field::DayName(Case::Lower)),
    ("DY", Field::DayAbbrev(Case::Upper)),
    ("Dy", Field::DayAbbrev(Case::Title)),
    ("dy", Field::DayAbbrev(Case::Lower)),
    ("DDD", Field::DayOfYear),
    ("DD", Field::DayOfMonth),
    ("ID", Field::IsoDayOfWeek),
    ("D", Field::DayOfWeek),
    ("IW", Field::IsoWeek),
    ("WW", Field::WeekOfYear),
    ("Q", Field::Quarter),
    ("J", Field::Julian),
    ("TZ", Field::ZoneName(Case::Upper)),
    ("tz", Field::ZoneName(Case::Lower)),
    ("OF", Field::ZoneOffset),
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A parsed template.
pub struct Template(Vec<Item>);

impl Template {
    /// Reads a template. Anything that is not a keyword is literal text;
    /// `"..."` quotes literal text and `\` escapes one character.
    pub fn parse(text: &str) -> Template {
        let mut items = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (fill, after_fm) = match rest.strip_prefix("FM").or(rest.strip_prefix("fm")) {
                Some(r) => (true, r),
                None => (false, rest),
            };
            if let Some((kw, field)) = KEYWORDS.iter().find(|(k, _)| after_fm.starts_with(k)) {
                items.push(Item::Field(*field, fill));
                rest = &after_fm[kw.len()..];
                // An ordinal suffix (DDth) is accepted and written as is.
                continue;
            }
            let mut chars = rest.chars();
            let Some(c) = chars.next() else { break };
            match c {
                '"' => {
                    let body: String = chars.clone().take_while(|c| *c != '"').collect();
                    items.extend(body.chars().map(Item::Literal));
                    let skip =
                        1 + body.len() + usize::from(rest[1 + body.len()..].starts_with('"'));
                    rest = &rest[skip.min(rest.len())..];
                }
                '\\' => {
                    if let Some(next) = chars.next() {
                        items.push(Item::Literal(next));
                        rest = &rest[1 + next.len_utf8()..];
                    } else {
                        items.push(Item::Literal('\\'));
                        rest = "";
                    }
                }
                other => {
                    items.push(Item::Literal(other));
                    rest = &rest[other.len_utf8()..];
                }
            }
        }
        Template(items)
    }

    /// Writes a local time. `zone` is the zone's name and offset in seconds
    /// east, for `TZ` and `OF` (none for a timestamp without a zone).
    pub fn format(&self, t: NaiveDateTime, zone: Option<(&str, i64)>) -> String {
        let mut out = String::new();
        for item in &self.0 {
            match item {
                Item::Literal(c) => out.push(*c),
                Item::Field(f, fill) => write_field(&mut out, *f, *fill, t, zone),
            }
        }
        out
    }

    /// Reads `text` as a local time, and the zone offset it names if it has
    /// an `OF` or `TZ` field.
    ///
    /// # Errors
    /// 22007 where the text does not match the template, 22008 for a value
    /// out of range.
    pub fn read(&self, text: &str) -> Result<(NaiveDateTime, Option<i64>)> {
        let mut r = Reader {
            text,
            pos: 0,
            fields: Parsed::default(),
        };
        for (i, item) in self.0.iter().enumerate() {
            match item {
                Item::Literal(c) if c.is_whitespace() => r.skip_spaces(),
                Item::Literal(c) => r.literal(*c),
                Item::Field(f, fill) => {
                    let next_is_digit_field = matches!(
                        self.0.get(i + 1),
                        Some(Item::Field(n, _)) if is_numeric(*n)
                    );
                    r.field(*f, *fill || !next_is_digit_field)?
                }
            }
        }
        r.fields.build(text)
    }
}

fn is_numeric(f: Field) -> bool {
    !matches!(
        f,
        Field::MonthName(_)
            | Field::MonthAbbrev(_)
            | Field::DayName(_)
            | Field::DayAbbrev(_)
            | Field::Meridiem(..)
            | Field::ZoneName(_)
            | Field::ZoneOffset
    )
}

fn cased(name: &str, case: Case) -> String {
    match case {
        Case::Upper => name.to_uppercase(),
        Case::Lower => name.to_lowercase(),
        Case::Title => name.to_string(),
    }
}

fn write_field(
    out: &mut String,
    f: Field,
    fill: bool,
    t: NaiveDateTime,
    zone: Option<(&str, i64)>,
) {
    let num = |out: &mut String, v: i64, width: usize| {
        if fill {
            out.push_str(&v.to_string());
        } else if v < 0 {
            out.push_str(&format!("-{:0width$}", -v, width = width));
        } else {
            out.push_str(&format!("{v:0width$}"));
        }
    };
    let name = |out: &mut String, s: String, width: usize| {
        if fill {
            out.push_str(&s);
        } else {
            out.push_str(&format!("{s:<width$}"));
        }
    };
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let dow = t.weekday().num_days_from_sunday() as usize;
    match f {
        Field::Year4 => num(out, t.year() as i64, 4),
        Field::Year3 => num(out, (t.year() % 1000) as i64, 3),
        Field::Year2 => num(out, (t.year() % 100) as i64, 2),
        Field::Year1 => num(out, (t.year() % 10) as i64, 1),
        Field::IsoYear => num(out, t.iso_week().year() as i64, 4),
        Field::Month => num(out, t.month() as i64, 2),
        Field::MonthName(c) => name(out, cased(MONTHS[t.month0() as usize], c), 9),
        Field::MonthAbbrev(c) => out.push_str(&cased(&MONTHS[t.month0() as usize][..3], c)),
        Field::DayName(c) => name(out, cased(DAYS[dow], c), 9),
        Field::DayAbbrev(c) => out.push_str(&cased(&DAYS[dow][..3], c)),
        Field::DayOfMonth => num(out, t.day() as i64, 2),
        Field::DayOfYear => num(out, t.ordinal() as i64, 3),
        Field::DayOfWeek => num(out, dow as i64 + 1, 1),
        Field::IsoDayOfWeek => num(out, t.weekday().number_from_monday() as i64, 1),
        Field::Hour24 => num(out, t.hour() as i64, 2),
        Field::Hour12 => num(out, hour12 as i64, 2),
        Field::Minute => num(out, t.minute() as i64, 2),
        Field::Second => num(out, t.second() as i64, 2),
        Field::Millisecond => num(out, (t.nanosecond() / 1_000_000) as i64, 3),
        Field::Microsecond => num(out, (t.nanosecond() / 1000) as i64, 6),
        Field::SecondsOfDay => num(out, t.num_seconds_from_midnight() as i64, 1),
        Field::Meridiem(c, dots) => {
            let pm = t.hour() >= 12;
            let s = match (pm, dots) {
                (false, false) => "AM",
                (true, false) => "PM",
                (false, true) => "A.M.",
                (true, true) => "P.M.",
            };
            out.push_str(&cased(s, c));
        }
        Field::IsoWeek => num(out, t.iso_week().week() as i64, 2),
        Field::WeekOfYear => num(out, (t.ordinal0() / 7 + 1) as i64, 2),
        Field::Quarter => num(out, (t.month0() / 3 + 1) as i64, 1),
        Field::Julian => num(out, t.date().num_days_from_ce() as i64 + 1_721_425, 1),
        Field::ZoneName(c) => {
            if let Some((zone_name, _)) = zone {
                out.push_str(&cased(zone_name, c));
            }
        }
        Field::ZoneOffset => {
            if let Some((_, offset)) = zone {
                let sign = if offset < 0 { '-' } else { '+' };
                let abs = offset.abs();
                out.push_str(&format!("{sign}{:02}", abs / 3600));
                if abs % 3600 != 0 {
                    out.push_str(&format!(":{:02}", abs % 3600 / 60));
                }
            }
        }
    }
}

/// The fields read so far.
#[derive(Default)]
struct Parsed {
    year: Option<i64>,
    month: Option<i64>,
    day: Option<i64>,
    day_of_year: Option<i64>,
    hour: Option<i64>,
    pm: Option<bool>,
    minute: Option<i64>,
    second: Option<i64>,
    micros: Option<i64>,
    julian: Option<i64>,
    offset: Option<i64>,
}

fn bad_format(text: &str, why: &str) -> Error {
    Error::Data {
        code: "22007",
        message: format!("invalid value for \"{text}\": {why}"),
    }
}

fn out_of_range(what: &str) -> Error {
    Error::Data {
        code: "22008",
        message: format!("date/time field value out of range: {what}"),
    }
}

impl Parsed {
    fn build(self, text: &str) -> Result<(NaiveDateTime, Option<i64>)> {
        let date = if let Some(j) = self.julian {
            NaiveDate::from_num_days_from_ce_opt((j - 1_721_425) as i32)
        } else if let (Some(doy), None) = (self.day_of_year, self.month) {
            NaiveDate::from_yo_opt(self.year.unwrap_or(1) as i32, doy as u32)
        } else {
            NaiveDate::from_ymd_opt(
                self.year.unwrap_or(1) as i32,
                self.month.unwrap_or(1) as u32,
                self.day.unwrap_or(1) as u32,
            )
        }
        .ok_or_else(|| out_of_range(text))?;
        let mut hour = self.hour.unwrap_or(0);
        if let Some(pm) = self.pm {
            if !(1..=12).contains(&hour) {
                return Err(out_of_range(text));
            }
            hour = hour % 12 + if pm { 12 } else { 0 };
        }
        let time = date
            .and_hms_micro_opt(
                hour as u32,
                self.minute.unwrap_or(0) as u32,
                self.second.unwrap_or(0) as u32,
                self.micros.unwrap_or(0) as u32,
            )
            .ok_or_else(|| out_of_range(text))?;
        Ok((time, self.offset))
    }
}

struct Reader<'a> {
    text: &'a str,
    pos: usize,
    fields: Parsed,
}

impl Reader<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_spaces(&mut self) {
        let n = self.rest().len() - self.rest().trim_start().len();
        self.pos += n;
    }

    /// A literal in the template matches itself, or any one separator where
    /// the template has a separator (as PostgreSQL is lenient there).
    fn literal(&mut self, c: char) {
        let Some(next) = self.rest().chars().next() else {
            return;
        };
        if next == c || (!next.is_alphanumeric() && !c.is_alphanumeric()) {
            self.pos += next.len_utf8();
        }
    }

    /// Up to `max` digits (all of them when `greedy`), with an optional sign.
    fn number(&mut self, max: usize, greedy: bool) -> Result<(i64, usize)> {
        self.skip_spaces();
        let rest = self.rest();
        let negative = rest.starts_with('-');
        let start = usize::from(negative || rest.starts_with('+'));
        let digits: String = rest[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .take(if greedy { usize::MAX } else { max })
            .collect();
        if digits.is_empty() {
            return Err(bad_format(self.text, "a number was expected"));
        }
        self.pos += start + digits.len();
        let v: i64 = digits.parse().map_err(|_| out_of_range(self.text))?;
        Ok((if negative { -v } else { v }, digits.len()))
    }

    fn name(&mut self, names: &[&str], abbreviated: bool) -> Result<usize> {
        let rest = self.rest().to_ascii_lowercase();
        for (i, n) in names.iter().enumerate() {
            let n = if abbreviated { &n[..3] } else { n };
            if rest.starts_with(&n.to_ascii_lowercase()) {
                self.pos += n.len();
                return Ok(i);
            }
        }
        Err(bad_format(
            self.text,
            "the value does not match any allowed name",
        ))
    }

    fn field(&mut self, f: Field, greedy: bool) -> Result<()> {
        let set = |slot: &mut Option<i64>, v: i64| *slot = Some(v);
        match f {
            Field::Year4 | Field::IsoYear => {
                let (v, _) = self.number(4, greedy)?;
                set(&mut self.fields.year, v);
            }
            Field::Year3 | Field::Year2 | Field::Year1 => {
                let width = match f {
                    Field::Year3 => 3,
                    Field::Year2 => 2,
                    _ => 1,
                };
                let (v, digits) = self.number(width, false)?;
                // Two-digit years nearest 2020, as PostgreSQL reads them.
                let year = match digits {
                    1 => 2000 + v,
                    2 if v < 70 => 2000 + v,
                    2 => 1900 + v,
                    3 => 1000 + v,
                    _ => v,
                };
                set(&mut self.fields.year, year);
            }
            Field::Month => {
                let (v, _) = self.number(2, greedy)?;
                set(&mut self.fields.month, v);
            }
            Field::MonthName(_) => {
                let m = self.name(&MONTHS, false)?;
                set(&mut self.fields.month, m as i64 + 1);
            }
            Field::MonthAbbrev(_) => {
                let m = self.name(&MONTHS, true)?;
                set(&mut self.fields.month, m as i64 + 1);
            }
            Field::DayName(_) => {
                self.name(&DAYS, false)?;
            }
            Field::DayAbbrev(_) => {
                self.name(&DAYS, true)?;
            }
            Field::DayOfMonth => {
                let (v, _) = self.number(2, greedy)?;
                set(&mut self.fields.day, v);
            }
            Field::DayOfYear => {
                let (v, _) = self.number(3, greedy)?;
                set(&mut self.fields.day_of_year, v);
            }
            Field::DayOfWeek | Field::IsoDayOfWeek | Field::Quarter => {
                self.number(1, false)?;
            }
            Field::IsoWeek | Field::WeekOfYear => {
                self.number(2, greedy)?;
            }
            Field::Hour24 | Field::Hour12 => {
                let (v, _) = self.number(2, greedy)?;
                let limit = if f == Field::Hour24 { 23 } else { 12 };
                if v > limit {
                    return Err(out_of_range(self.text));
                }
                set(&mut self.fields.hour, v);
            }
            Field::Minute => {
                let (v, _) = self.number(2, greedy)?;
                if v > 59 {
                    return Err(out_of_range(self.text));
                }
                set(&mut self.fields.minute, v);
            }
            Field::Second => {
                let (v, _) = self.number(2, greedy)?;
                if v > 60 {
                    return Err(out_of_range(self.text));
                }
                set(&mut self.fields.second, v);
            }
            Field::Millisecond => {
                let (v, digits) = self.number(3, false)?;
                set(&mut self.fields.micros, v * 10i64.pow(6 - digits as u32));
            }
            Field::Microsecond => {
                let (v, digits) = self.number(6, false)?;
                set(&mut self.fields.micros, v * 10i64.pow(6 - digits as u32));
            }
            Field::SecondsOfDay => {
                let (v, _) = self.number(5, greedy)?;
                set(&mut self.fields.hour, v / 3600);
                set(&mut self.fields.minute, v % 3600 / 60);
                set(&mut self.fields.second, v % 60);
            }
            Field::Meridiem(_, _) => {
                let rest = self.rest().to_ascii_uppercase();
                let (pm, len) = if rest.starts_with("A.M.") {
                    (false, 4)
                } else if rest.starts_with("P.M.") {
                    (true, 4)
                } else if rest.starts_with("AM") {
                    (false, 2)
                } else if rest.starts_with("PM") {
                    (true, 2)
                } else {
                    return Err(bad_format(self.text, "AM or PM was expected"));
                };
                self.pos += len;
                self.fields.pm = Some(pm);
            }
            Field::Julian => {
                let (v, _) = self.number(7, true)?;
                set(&mut self.fields.julian, v);
            }
            Field::ZoneName(_) => {
                let rest = self.rest();
                if rest.to_ascii_uppercase().starts_with("UTC")
                    || rest.to_ascii_uppercase().starts_with("GMT")
                {
                    self.pos += 3;
                    self.fields.offset = Some(0);
                } else if rest.starts_with(['+', '-']) {
                    self.offset()?;
                } else {
                    return Err(Error::NotSupported(
                        "zone names other than UTC in to_timestamp".into(),
                    ));
                }
            }
            Field::ZoneOffset => self.offset()?,
        }
        Ok(())
    }

    fn offset(&mut self) -> Result<()> {
        let (hours, _) = self.number(2, false)?;
        let mut secs = hours.abs() * 3600;
        if self.rest().starts_with(':') {
            self.pos += 1;
            let (m, _) = self.number(2, false)?;
            secs += m * 60;
        }
        self.fields.offset = Some(
            if hours < 0 || self.text[..self.pos].contains("-") && hours == 0 {
                -secs
            } else {
                secs
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_micro_opt(h, mi, s, us))
            .unwrap()
    }

    #[test]
    fn reads_what_bi_tools_send() {
        let superset = Template::parse("YYYY-MM-DD HH24:MI:SS.US");
        assert_eq!(
            superset.read("2026-11-20 00:00:00.000000").unwrap().0,
            at(2026, 11, 20, 0, 0, 0, 0)
        );
        assert_eq!(
            superset.read("2026-11-20 13:05:09.25").unwrap().0,
            at(2026, 11, 20, 13, 5, 9, 250_000)
        );
        let compact = Template::parse("YYYYMMDD");
        assert_eq!(
            compact.read("20240229").unwrap().0,
            at(2024, 2, 29, 0, 0, 0, 0)
        );
        let named = Template::parse("DD Mon YYYY HH12:MI AM");
        assert_eq!(
            named.read("05 mar 2024 07:30 PM").unwrap().0,
            at(2024, 3, 5, 19, 30, 0, 0)
        );
        assert!(superset.read("2026-13-01 00:00:00").is_err());
        assert!(superset.read("yesterday").is_err());
    }

    #[test]
    fn writes_as_to_char_does() {
        let t = at(2024, 3, 5, 19, 7, 9, 120_000);
        let f = |tpl: &str| Template::parse(tpl).format(t, None);
        assert_eq!(f("YYYY-MM-DD HH24:MI:SS.MS"), "2024-03-05 19:07:09.120");
        assert_eq!(f("Day, DD Month YYYY"), "Tuesday  , 05 March     2024");
        assert_eq!(f("FMDay, FMDD FMMonth YYYY"), "Tuesday, 5 March 2024");
        assert_eq!(f("HH12:MI am Dy mon Q IW"), "07:07 pm Tue mar 1 10");
        assert_eq!(f("\"week\" IW \\of IYYY"), "week 10 of 2024");
    }
}
