//! `cove audit`: the server's audit log (administrators), newest first.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use clap::Args;
use cove_api::{AuditEntry, AuditPage};

use crate::client::Client;
use crate::repo::Output;

/// Show the audit log: who did what, when, from where, with what result (administrators).
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this user (for a failed login: the user name that was tried).
    #[arg(long)]
    pub user: Option<String>,
    /// Only actions containing this text: login, git.push, /tokens, POST, …
    #[arg(long)]
    pub action: Option<String>,
    /// Only this repository (OWNER/NAME).
    #[arg(long)]
    pub repo: Option<String>,
    /// Only targets starting with this text (e.g. /api/v1/environments/ENV).
    #[arg(long)]
    pub target: Option<String>,
    /// Only this result: ok, denied or failed.
    #[arg(long, value_parser = ["ok", "denied", "failed"])]
    pub result: Option<String>,
    /// Since: a time ago (90s, 30m, 2h, 7d), a UTC date (2026-12-05) or time
    /// (2026-12-05T10:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Until (exclusive), in the same forms as --since.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// How many entries per page (at most 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Continue after a previous page (the cursor it printed).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow the cursor to the end instead of stopping after one page.
    #[arg(long)]
    pub all: bool,
    /// Shorthand for --output json.
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
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

/// `YYYY-MM-DD HH:MM:SS` (UTC) of milliseconds since the epoch.
fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

fn number(text: &str, what: &str) -> Result<i64, String> {
    text.parse()
        .map_err(|_| format!("{what} {text:?} is not a number"))
}

/// `30m`/`2h`/`7d`/`90s` ago, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` (UTC) → epoch ms.
fn parse_time_at(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    let help = "use a time ago (90s, 30m, 2h, 7d), a UTC date (2026-12-05) or a UTC time \
                (2026-12-05T10:00:00Z)";
    if let Some(unit) = text.chars().last().filter(|c| "smhd".contains(*c)) {
        let digits = &text[..text.len() - 1];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let n = number(digits, "duration")?;
            let factor = match unit {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            return n
                .checked_mul(factor)
                .map(|ago| now_ms - ago)
                .ok_or_else(|| format!("{text:?} is too far back"));
        }
    }
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(format!("{text:?}: {help}"));
    };
    let (y, m, d) = (number(y, "year")?, number(m, "month")?, number(d, "day")?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(format!("{text:?}: {help}"));
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let Some(time) = time.strip_suffix('Z') else {
            return Err(format!("{text:?}: times are UTC and end with Z; {help}"));
        };
        let hms: Vec<&str> = time.split(':').collect();
        let [h, mi, s] = hms.as_slice() else {
            return Err(format!("{text:?}: {help}"));
        };
        let (h, mi, s) = (
            number(h, "hour")?,
            number(mi, "minute")?,
            number(s, "second")?,
        );
        if h > 23 || mi > 59 || s > 60 || h < 0 || mi < 0 || s < 0 {
            return Err(format!("{text:?}: {help}"));
        }
        secs += h * 3600 + mi * 60 + s;
    }
    Ok(secs * 1000)
}

fn parse_time(text: &str) -> Result<i64, String> {
    parse_time_at(text, now_ms())
}

/// `%XX` for every byte but unreserved ones.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn query(args: &AuditArgs, cursor: Option<&str>) -> String {
    let mut q = vec![format!("limit={}", args.limit)];
    for (key, value) in [
        ("user", args.user.as_deref()),
        ("action", args.action.as_deref()),
        ("repo", args.repo.as_deref()),
        ("target", args.target.as_deref()),
        ("result", args.result.as_deref()),
        ("cursor", cursor),
    ] {
        if let Some(v) = value {
            q.push(format!("{key}={}", encode(v)));
        }
    }
    if let Some(since) = args.since {
        q.push(format!("since={since}"));
    }
    if let Some(until) = args.until {
        q.push(format!("until={until}"));
    }
    format!("/audit?{}", q.join("&"))
}

fn who(e: &AuditEntry) -> String {
    match (&e.user, &e.agent) {
        (Some(user), _) => user.clone(),
        (None, Some(agent)) => format!("agent:{agent}"),
        (None, None) => "-".into(),
    }
}

fn via(e: &AuditEntry) -> String {
    match (e.auth.as_deref(), e.token_id) {
        (Some("token"), Some(id)) => format!("token:{id}"),
        (Some(auth), _) => auth.to_string(),
        (None, _) => "-".into(),
    }
}

fn print_table(entries: &[AuditEntry], header: bool) {
    if header {
        println!(
            "{:<19} {:<16} {:<26} {:<6} {:<6} {:<48} {:<40} CLIENT",
            "TIME (UTC)", "USER", "VIA", "RESULT", "STATUS", "ACTION", "TARGET"
        );
    }
    for e in entries {
        let mut target = e.target.clone();
        // A login's detail is the route it came with, which its target already shows.
        if let Some(detail) = e.detail.as_deref().filter(|_| e.action != "login") {
            target = format!("{target} [{detail}]");
        }
        println!(
            "{:<19} {:<16} {:<26} {:<6} {:<6} {:<48} {:<40} {}",
            format_time(e.at_ms),
            who(e),
            via(e),
            e.result,
            e.status.map_or_else(|| "-".into(), |s| s.to_string()),
            e.action,
            target,
            e.client.as_deref().unwrap_or("-"),
        );
    }
}

pub fn run(args: AuditArgs) -> Result<()> {
    if args.limit == 0 || args.limit > 1000 {
        bail!("--limit must be between 1 and 1000");
    }
    let client = Client::from_env_or_config()?;
    let json = args.json || matches!(args.output, Output::Json);
    let mut cursor = args.cursor.clone();
    let mut all = Vec::new();
    let mut first = true;
    loop {
        let page: AuditPage = client.get(&query(&args, cursor.as_deref()))?;
        let next = page.next_cursor.clone();
        if json {
            if !args.all {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(());
            }
            all.extend(page.entries);
        } else {
            print_table(&page.entries, first);
        }
        first = false;
        match next {
            Some(next) if args.all => cursor = Some(next),
            Some(next) => {
                if !json {
                    eprintln!("more entries: add --cursor {next} (or --all)");
                }
                return Ok(());
            }
            None => break,
        }
    }
    if json {
        let page = AuditPage {
            entries: all,
            next_cursor: None,
        };
        println!("{}", serde_json::to_string_pretty(&page)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_ago_dates_and_utc_times() {
        let now = 1_000_000_000_000;
        assert_eq!(parse_time_at("30m", now), Ok(now - 1_800_000));
        assert_eq!(parse_time_at("2d", now), Ok(now - 172_800_000));
        assert_eq!(parse_time_at("1970-01-02", now), Ok(86_400_000));
        assert_eq!(
            parse_time_at("2026-12-05T10:00:00Z", now),
            Ok(1_796_464_800_000)
        );
        assert!(parse_time_at("2026-12-05T10:00:00", now).is_err());
        assert!(parse_time_at("yesterday", now).is_err());
        assert!(parse_time_at("2026-13-01", now).is_err());
    }

    #[test]
    fn times_print_in_utc() {
        assert_eq!(format_time(1_796_464_800_000), "2026-12-05 10:00:00");
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
    }

    #[test]
    fn filters_are_encoded() {
        assert_eq!(encode("a b/c&d"), "a%20b%2Fc%26d");
    }
}
