//! SCHEDULE trigger expressions: CodeCatalyst's 6-field cron (the EventBridge syntax), UTC.
//!
//! `minutes hours day-of-month month day-of-week year`
//!
//! | field | values | special |
//! |---|---|---|
//! | minutes | 0-59 | `, - * /` |
//! | hours | 0-23 | `, - * /` |
//! | day-of-month | 1-31 | `, - * ? / L W` |
//! | month | 1-12, `JAN`-`DEC` | `, - * /` |
//! | day-of-week | 1-7 (1 = Sunday), `SUN`-`SAT` | `, - * ? L #` |
//! | year | 1970-2199 | `, - * /` |
//!
//! Exactly one of day-of-month and day-of-week is `?`. `L` alone in day-of-month is the
//! month's last day, `LW` its last weekday, `15W` the weekday nearest the 15th (within the
//! month); in day-of-week `L` alone is Saturday, `6L` the month's last Friday, `2#1` its first
//! Monday. `L`, `W` and `#` forms stand alone in their field (no lists).
//!
//! [`Cron::next_after`] is a pure function of a timestamp (milliseconds since the epoch, UTC):
//! the first whole minute strictly after it that the expression names. Parsing is linear in
//! the expression's length, which is capped ([`MAX_EXPRESSION_LEN`]); the search visits at
//! most one step per month and one per day of a matching month up to 2199.

use std::fmt;

/// Longest accepted expression, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 256;

const FIRST_YEAR: i64 = 1970;
const LAST_YEAR: i64 = 2199;
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Why an expression is not valid, and where (byte offset into the expression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CronError {}

/// The day-of-month field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MonthDays {
    /// `?`
    Any,
    /// Bit `d` set for day `d` (1-31).
    Days(u32),
    /// `L`
    Last,
    /// `LW`
    LastWeekday,
    /// `nW`
    NearestWeekday(u32),
}

/// The day-of-week field; weekdays are 0 = Sunday … 6 = Saturday.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WeekDays {
    /// `?`
    Any,
    /// Bit `w` set for weekday `w`.
    Days(u8),
    /// `nL`: the last such weekday of the month.
    Last(u32),
    /// `n#k`: the k-th such weekday of the month.
    Nth(u32, u32),
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    month_days: MonthDays,
    months: u16,
    week_days: WeekDays,
    /// Bit `y - 1970` for year `y`.
    years: [u64; 4],
}

/// One whitespace-separated field with its byte offset.
struct Field<'a> {
    text: &'a str,
    offset: usize,
}

impl Field<'_> {
    fn err(&self, at: usize, message: impl Into<String>) -> CronError {
        CronError {
            offset: self.offset + at,
            message: message.into(),
        }
    }
}

/// A field's value range and names.
struct Spec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// What the first name stands for.
    names_from: u32,
}

const MINUTE: Spec = Spec {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
    names_from: 0,
};
const HOUR: Spec = Spec {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
    names_from: 0,
};
const DOM: Spec = Spec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    names_from: 0,
};
const MONTH: Spec = Spec {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    names_from: 1,
};
const DOW: Spec = Spec {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: &DAYS,
    names_from: 1,
};
const YEAR: Spec = Spec {
    name: "year",
    min: FIRST_YEAR as u32,
    max: LAST_YEAR as u32,
    names: &[],
    names_from: 0,
};

/// One value: a number or (where the field has them) a three-letter name.
fn value(spec: &Spec, field: &Field<'_>, at: usize, text: &str) -> Result<u32, CronError> {
    let v = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        if text.len() > 4 {
            u32::MAX
        } else {
            text.parse::<u32>().unwrap_or(u32::MAX)
        }
    } else if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        spec.names_from + i as u32
    } else if text.is_empty() {
        return Err(field.err(at, format!("a {} value is missing", spec.name)));
    } else {
        let hint = if spec.names.is_empty() {
            format!("a number {}-{}", spec.min, spec.max)
        } else {
            format!(
                "a number {}-{} or {}-{}",
                spec.min,
                spec.max,
                spec.names[0],
                spec.names[spec.names.len() - 1]
            )
        };
        return Err(field.err(at, format!("`{text}` is not {hint} ({})", spec.name)));
    };
    if v < spec.min || v > spec.max {
        return Err(field.err(
            at,
            format!(
                "{} value {text} is out of range {}-{}",
                spec.name, spec.min, spec.max
            ),
        ));
    }
    Ok(v)
}

/// A list of `*`, `a`, `a-b`, `*/n`, `a/n`, `a-b/n`: every value it names, as a sorted set
/// (values `spec.min..=spec.max`; bit `v - spec.min`).
fn list(spec: &Spec, field: &Field<'_>) -> Result<Vec<u32>, CronError> {
    let mut set = vec![false; (spec.max - spec.min + 1) as usize];
    let mut at = 0;
    for item in field.text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step_at = at + r.len() + 1;
                if !s.bytes().all(|b| b.is_ascii_digit()) || s.is_empty() || s.len() > 4 {
                    return Err(field.err(step_at, format!("`{s}` is not a step (a number)")));
                }
                let step: u32 = s.parse().unwrap_or(0);
                if step == 0 {
                    return Err(field.err(step_at, "a step must be at least 1"));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let lo = value(spec, field, at, a)?;
            let hi = value(spec, field, at + a.len() + 1, b)?;
            if lo > hi {
                return Err(field.err(
                    at,
                    format!(
                        "the range `{range}` goes backwards (wrapping ranges are not supported)"
                    ),
                ));
            }
            (lo, hi)
        } else {
            let v = value(spec, field, at, range)?;
            // `a/n` means from a to the end.
            (v, if step.is_some() { spec.max } else { v })
        };
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            set[(v - spec.min) as usize] = true;
            v += step;
        }
        at += item.len() + 1;
    }
    Ok(set
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(i, _)| spec.min + i as u32)
        .collect())
}

fn check_chars(field: &Field<'_>, extra: &str, spec: &Spec) -> Result<(), CronError> {
    match field.text.char_indices().find(|(_, c)| {
        !(c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/') || extra.contains(*c))
    }) {
        Some((i, c)) => Err(field.err(
            i,
            format!("`{c}` is not allowed in the {} field", spec.name),
        )),
        None => Ok(()),
    }
}

fn bits(values: &[u32], min: u32) -> u64 {
    values.iter().fold(0, |acc, v| acc | (1u64 << (v - min)))
}

fn month_days(field: &Field<'_>) -> Result<MonthDays, CronError> {
    let t = field.text;
    check_chars(field, "?", &DOM)?;
    if t == "?" {
        return Ok(MonthDays::Any);
    }
    if t.eq_ignore_ascii_case("L") {
        return Ok(MonthDays::Last);
    }
    if t.eq_ignore_ascii_case("LW") {
        return Ok(MonthDays::LastWeekday);
    }
    if let Some(day) = t.strip_suffix(['W', 'w']) {
        return Ok(MonthDays::NearestWeekday(value(&DOM, field, 0, day)?));
    }
    if let Some(i) = t.find(['L', 'l', 'W', 'w', '?']) {
        return Err(field.err(
            i,
            "`L`, `W` and `?` stand alone in day-of-month (`L`, `LW`, `15W`, `?`)",
        ));
    }
    Ok(MonthDays::Days(bits(&list(&DOM, field)?, 0) as u32))
}

fn week_days(field: &Field<'_>) -> Result<WeekDays, CronError> {
    let t = field.text;
    check_chars(field, "?#", &DOW)?;
    if t == "?" {
        return Ok(WeekDays::Any);
    }
    if t.eq_ignore_ascii_case("L") {
        return Ok(WeekDays::Days(1 << 6));
    }
    if let Some((day, nth)) = t.split_once('#') {
        let d = value(&DOW, field, 0, day)?;
        let k_at = day.len() + 1;
        let k = match nth.parse::<u32>() {
            Ok(k @ 1..=5) if nth.len() == 1 => k,
            _ => return Err(field.err(k_at, format!("`#{nth}`: the week of the month is 1-5"))),
        };
        return Ok(WeekDays::Nth(d - 1, k));
    }
    // `6L` / `FRIL`: the last such weekday (the name form ends in `L`, so try it whole first).
    if t.len() > 1 && (t.ends_with('L') || t.ends_with('l')) && value(&DOW, field, 0, t).is_err() {
        let d = value(&DOW, field, 0, &t[..t.len() - 1])?;
        return Ok(WeekDays::Last(d - 1));
    }
    if let Some(i) = t.find(['?', '#']) {
        return Err(field.err(i, "`?` and `#` stand alone in day-of-week (`?`, `2#1`)"));
    }
    Ok(WeekDays::Days(bits(&list(&DOW, field)?, 1) as u8))
}

impl Cron {
    /// Parses `expr`; errors carry the byte offset of what is wrong.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        if expr.len() > MAX_EXPRESSION_LEN {
            return Err(CronError {
                offset: 0,
                message: format!(
                    "the expression is {} bytes long; at most {MAX_EXPRESSION_LEN} are accepted",
                    expr.len()
                ),
            });
        }
        let mut fields = Vec::new();
        let mut start = None;
        for (i, c) in expr.char_indices().chain([(expr.len(), ' ')]) {
            match (c.is_whitespace(), start) {
                (true, Some(s)) => {
                    fields.push(Field {
                        text: &expr[s..i],
                        offset: s,
                    });
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if fields.len() != 6 {
            return Err(CronError {
                offset: fields.get(6).map_or(0, |f| f.offset),
                message: format!(
                    "expected 6 fields (minutes hours day-of-month month day-of-week year), found {}",
                    fields.len()
                ),
            });
        }
        for (f, spec) in [
            (&fields[0], &MINUTE),
            (&fields[1], &HOUR),
            (&fields[3], &MONTH),
            (&fields[5], &YEAR),
        ] {
            check_chars(f, "", spec)?;
        }
        let minutes = bits(&list(&MINUTE, &fields[0])?, 0);
        let hours = bits(&list(&HOUR, &fields[1])?, 0) as u32;
        let month_days = month_days(&fields[2])?;
        let months = bits(&list(&MONTH, &fields[3])?, 0) as u16;
        let week_days = week_days(&fields[4])?;
        let mut years = [0u64; 4];
        for y in list(&YEAR, &fields[5])? {
            let i = (y - FIRST_YEAR as u32) as usize;
            years[i / 64] |= 1 << (i % 64);
        }
        match (&month_days, &week_days) {
            (MonthDays::Any, WeekDays::Any) => Err(fields[4].err(
                0,
                "day-of-month and day-of-week are both `?`: one of them must name days",
            )),
            (MonthDays::Any, _) | (_, WeekDays::Any) => Ok(Cron {
                minutes,
                hours,
                month_days,
                months,
                week_days,
                years,
            }),
            _ => Err(fields[2].err(0, "exactly one of day-of-month and day-of-week must be `?`")),
        }
    }

    fn year_on(&self, y: i64) -> bool {
        if !(FIRST_YEAR..=LAST_YEAR).contains(&y) {
            return false;
        }
        let i = (y - FIRST_YEAR) as usize;
        self.years[i / 64] & (1 << (i % 64)) != 0
    }

    fn day_on(&self, y: i64, m: u32, d: u32) -> bool {
        let len = month_len(y, m);
        let wd = weekday(y, m, d);
        let dom = match self.month_days {
            MonthDays::Any => true,
            MonthDays::Days(b) => b & (1 << d) != 0,
            MonthDays::Last => d == len,
            MonthDays::LastWeekday => d == nearest_weekday(y, m, len),
            MonthDays::NearestWeekday(n) => n <= len && d == nearest_weekday(y, m, n),
        };
        let dow = match self.week_days {
            WeekDays::Any => true,
            WeekDays::Days(b) => b & (1 << wd) != 0,
            WeekDays::Last(w) => wd == w && d + 7 > len,
            WeekDays::Nth(w, k) => wd == w && (d - 1) / 7 + 1 == k,
        };
        dom && dow
    }

    /// The first whole minute strictly after `after_ms` (ms since the epoch, UTC) that the
    /// expression names; `None` when there is none up to 2199 (or before 1970).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let minute = after_ms.div_euclid(60_000) + 1;
        let (mut y, mut m, mut d) = civil(minute.div_euclid(1440));
        let mut from = minute.rem_euclid(1440) as u32;
        if y < FIRST_YEAR {
            (y, m, d, from) = (FIRST_YEAR, 1, 1, 0);
        }
        while y <= LAST_YEAR {
            if !self.year_on(y) {
                (y, m, d, from) = (y + 1, 1, 1, 0);
                continue;
            }
            if self.months & (1 << m) == 0 {
                (y, m, d, from) = if m == 12 {
                    (y + 1, 1, 1, 0)
                } else {
                    (y, m + 1, 1, 0)
                };
                continue;
            }
            if self.day_on(y, m, d) {
                if let Some(t) = self.first_time(from) {
                    return Some((days_from_civil(y, m, d) * 1440 + i64::from(t)) * 60_000);
                }
            }
            from = 0;
            if d < month_len(y, m) {
                d += 1;
            } else {
                (y, m, d) = if m == 12 {
                    (y + 1, 1, 1)
                } else {
                    (y, m + 1, 1)
                };
            }
        }
        None
    }

    /// The first minute of a day at or after `from` (minutes since midnight).
    fn first_time(&self, from: u32) -> Option<u32> {
        (from / 60..24)
            .filter(|h| self.hours & (1 << h) != 0)
            .find_map(|h| {
                let start = if h == from / 60 { from % 60 } else { 0 };
                (start..60)
                    .find(|mi| self.minutes & (1 << mi) != 0)
                    .map(|mi| h * 60 + mi)
            })
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_len(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// 0 = Sunday.
fn weekday(y: i64, m: u32, d: u32) -> u32 {
    // 1970-01-01 was a Thursday.
    (days_from_civil(y, m, d) + 4).rem_euclid(7) as u32
}

/// The weekday (Monday-Friday) nearest day `n` of the month, never leaving the month.
fn nearest_weekday(y: i64, m: u32, n: u32) -> u32 {
    let len = month_len(y, m);
    match weekday(y, m, n) {
        6 if n == 1 => 3,
        6 => n - 1,
        0 if n == len => n - 2,
        0 => n + 1,
        _ => n,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a timestamp in ms (for messages and tests).
pub fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ms of `YYYY-MM-DDTHH:MM`.
    fn at(s: &str) -> i64 {
        let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
        (days_from_civil(n(0..4), n(5..7) as u32, n(8..10) as u32) * 1440
            + n(11..13) * 60
            + n(14..16))
            * 60_000
    }

    fn next(expr: &str, from: &str) -> String {
        let c = Cron::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        c.next_after(at(from)).map_or("never".into(), format_utc)
    }

    fn err(expr: &str) -> (usize, String) {
        let e = Cron::parse(expr).expect_err(expr);
        (e.offset, e.message)
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(weekday(1970, 1, 1), 4);
        assert_eq!(weekday(2026, 12, 6), 0, "2026-12-06 is a Sunday");
        assert_eq!(format_utc(at("2024-02-29T23:59")), "2024-02-29T23:59:00Z");
        for days in [-1, 59, 365, 11_016, 60_000, 84_000] {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn every_minute_and_simple_times() {
        assert_eq!(
            next("* * * * ? *", "2026-12-06T00:29"),
            "2026-12-06T00:30:00Z"
        );
        assert_eq!(
            next("0/15 * * * ? *", "2026-12-06T00:29"),
            "2026-12-06T00:30:00Z"
        );
        assert_eq!(
            next("0 0 * * ? *", "2026-12-31T23:59"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("30 9 ? * MON-FRI *", "2026-12-04T09:30"),
            "2026-12-07T09:30:00Z",
            "Fri → Mon"
        );
        assert_eq!(
            next("0 3 ? * MON *", "2026-12-06T12:00"),
            "2026-12-07T03:00:00Z"
        );
        assert_eq!(
            next("0 12 1 JAN,jul ? *", "2026-02-01T00:00"),
            "2026-07-01T12:00:00Z"
        );
        assert_eq!(
            next("5,10 8-9 15 * ? *", "2026-12-15T09:10"),
            "2027-01-15T08:05:00Z"
        );
        assert_eq!(
            next("0 */6 * * ? *", "2026-12-06T06:00"),
            "2026-12-06T12:00:00Z"
        );
    }

    #[test]
    fn strictly_after_the_given_instant() {
        let c = Cron::parse("* * * * ? *").unwrap();
        let t = at("2026-12-06T00:30");
        assert_eq!(c.next_after(t), Some(t + 60_000));
        assert_eq!(c.next_after(t - 1), Some(t));
        assert_eq!(c.next_after(t + 59_999), Some(t + 60_000));
    }

    #[test]
    fn last_day_and_weekday_forms() {
        assert_eq!(
            next("0 0 L * ? *", "2024-02-01T00:00"),
            "2024-02-29T00:00:00Z",
            "leap year"
        );
        assert_eq!(
            next("0 0 L * ? *", "2023-02-01T00:00"),
            "2023-02-28T00:00:00Z"
        );
        assert_eq!(
            next("0 0 L * ? *", "2026-04-30T00:00"),
            "2026-05-31T00:00:00Z"
        );
        // 2026-08-15 is a Saturday: the nearest weekday is Friday the 14th.
        assert_eq!(
            next("0 0 15W * ? *", "2026-08-01T00:00"),
            "2026-08-14T00:00:00Z"
        );
        // 2026-11-01 is a Sunday: `1W` stays in the month, Monday the 2nd.
        assert_eq!(
            next("0 0 1W * ? *", "2026-10-31T00:00"),
            "2026-11-02T00:00:00Z"
        );
        // 2026-08-01 is a Saturday: `1W` is Monday the 3rd, not July 31st.
        assert_eq!(
            next("0 0 1W * ? *", "2026-07-05T00:00"),
            "2026-08-03T00:00:00Z"
        );
        // 2026-05-31 is a Sunday: the last weekday is Friday the 29th.
        assert_eq!(
            next("0 0 LW * ? *", "2026-05-01T00:00"),
            "2026-05-29T00:00:00Z"
        );
        // Last Friday of December 2026 is the 25th; `6L` and `FRIL`.
        assert_eq!(
            next("0 18 ? 12 6L *", "2026-12-01T00:00"),
            "2026-12-25T18:00:00Z"
        );
        assert_eq!(
            next("0 18 ? 12 FRIL *", "2026-12-01T00:00"),
            "2026-12-25T18:00:00Z"
        );
        // `L` alone in day-of-week is Saturday.
        assert_eq!(
            next("0 0 ? * L *", "2026-12-06T00:00"),
            "2026-12-12T00:00:00Z"
        );
        // First Monday of January 2027 is the 4th; `2#1`.
        assert_eq!(
            next("0 9 ? 1 2#1 *", "2026-12-06T00:00"),
            "2027-01-04T09:00:00Z"
        );
        assert_eq!(
            next("0 9 ? * MON#5 *", "2026-12-06T00:00"),
            "2027-03-29T09:00:00Z"
        );
    }

    #[test]
    fn year_field_bounds_the_schedule() {
        assert_eq!(
            next("0 0 1 1 ? 2030", "2026-12-06T00:00"),
            "2030-01-01T00:00:00Z"
        );
        assert_eq!(next("0 0 1 1 ? 2020-2025", "2026-12-06T00:00"), "never");
        assert_eq!(
            next("0 0 29 2 ? 2024/2", "2026-01-01T00:00"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("0 0 31 2 ? *", "2026-01-01T00:00"),
            "never",
            "February has no 31st"
        );
        assert_eq!(next("59 23 31 12 ? 2199", "2199-12-31T23:59"), "never");
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(err("* * * * *").0, 0);
        assert!(
            err("* * * * *").1.contains("expected 6 fields"),
            "{:?}",
            err("* * * * *")
        );
        assert_eq!(
            err("* * * * ? * *"),
            (
                12,
                "expected 6 fields (minutes hours day-of-month month day-of-week year), found 7"
                    .into()
            )
        );
        assert_eq!(
            err("60 * * * ? *"),
            (0, "minutes value 60 is out of range 0-59".into())
        );
        assert_eq!(err("0 24 * * ? *").0, 2);
        assert_eq!(
            err("0 0 * * * *").1,
            "exactly one of day-of-month and day-of-week must be `?`"
        );
        assert!(err("0 0 ? * ? *").1.contains("both `?`"));
        assert_eq!(
            err("0 0 ? FOO * *"),
            (6, "`FOO` is not a number 1-12 or JAN-DEC (month)".into())
        );
        assert_eq!(err("0 0 ? * MON#6 *").0, 12);
        assert_eq!(err("0 0 ? * 8 *").0, 8);
        assert_eq!(err("0 0 ? * * 1969").0, 10);
        assert_eq!(err("0 0 1,L * ? *").0, 6);
        assert_eq!(err("*/0 * * * ? *").0, 2);
        assert_eq!(
            err("5-1 * * * ? *").1,
            "the range `5-1` goes backwards (wrapping ranges are not supported)"
        );
        assert_eq!(err("0 0 1 * ? $").0, 10);
        assert!(err(&"1,".repeat(200)).1.contains("at most 256"));
    }

    proptest! {
        /// The next fire time is strictly later, on a whole minute, matches the expression,
        /// and no earlier minute in between matches (checked minute by minute over a window).
        #[test]
        fn next_is_the_first_matching_minute(
            minute in prop::sample::select(vec!["*", "0", "*/7", "5,35", "10-20/5"]),
            hour in prop::sample::select(vec!["*", "3", "0/6", "22-23"]),
            days in prop::sample::select(vec![
                ("*", "?"), ("L", "?"), ("15W", "?"), ("1,15", "?"), ("?", "MON-FRI"),
                ("?", "6L"), ("?", "2#1"), ("?", "SUN"), ("LW", "?"),
            ]),
            from in 0i64..(200 * 365 * 1440),
        ) {
            let expr = format!("{minute} {hour} {} * {} *", days.0, days.1);
            let c = Cron::parse(&expr).unwrap();
            let from_ms = from * 60_000 + 1234;
            let next = c.next_after(from_ms).expect("fires again");
            prop_assert!(next > from_ms);
            prop_assert_eq!(next % 60_000, 0);
            prop_assert!(c.matches(next), "{} at {}", expr, format_utc(next));
            // No earlier match within the last 3 days before it.
            let mut t = next - 60_000;
            while t > from_ms && t > next - 3 * 1440 * 60_000 {
                prop_assert!(!c.matches(t), "{} also at {}", expr, format_utc(t));
                t -= 60_000;
            }
            prop_assert_eq!(c.next_after(next - 1), Some(next));
        }

        /// Any text parses or fails with an offset inside it, without panicking.
        #[test]
        fn arbitrary_text_never_panics(s in "[0-9A-Za-z*?,/#LW -]{0,40}") {
            if let Err(e) = Cron::parse(&s) {
                prop_assert!(e.offset <= s.len());
            }
        }
    }

    impl Cron {
        /// Does the minute starting at `ms` match (tests only)?
        fn matches(&self, ms: i64) -> bool {
            let minute = ms.div_euclid(60_000);
            let (y, m, d) = civil(minute.div_euclid(1440));
            let t = minute.rem_euclid(1440) as u32;
            self.year_on(y)
                && self.months & (1 << m) != 0
                && self.day_on(y, m, d)
                && self.hours & (1 << (t / 60)) != 0
                && self.minutes & (1 << (t % 60)) != 0
        }
    }
}
