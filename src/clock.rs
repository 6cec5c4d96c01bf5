//! Time as the index stores it (nanoseconds since the Unix epoch), and as people
//! write and read it: RFC 3339, `YYYY-MM-DD HH:MM` in local time, relative ages
//! like `30m`, and phone-friendly phrases like "Today 02:14".

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};

/// Nanoseconds since the Unix epoch, now.
pub fn now() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

pub fn from_system_time(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
    }
}

pub fn to_local(ns: i64) -> DateTime<Local> {
    Local.timestamp_nanos(ns)
}

/// RFC 3339 in UTC with second precision, for JSON.
pub fn rfc3339(ns: i64) -> String {
    Utc.timestamp_nanos(ns)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// RFC 3339 in UTC with nanoseconds, for commands that must select exactly the same rows.
pub fn rfc3339_exact(ns: i64) -> String {
    Utc.timestamp_nanos(ns)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Local date and time for people: `2026-11-22 02:14`.
pub fn local(ns: i64) -> String {
    to_local(ns).format("%Y-%m-%d %H:%M").to_string()
}

/// "Today 02:14", "Yesterday 23:50" or "Sat 21 Nov 02:14", relative to `now`.
pub fn spoken(ns: i64, now: i64) -> String {
    let when = to_local(ns);
    let today = to_local(now).date_naive();
    let day = when.date_naive();
    let clock = when.format("%H:%M");
    if day == today {
        format!("Today {clock}")
    } else if today.pred_opt() == Some(day) {
        format!("Yesterday {clock}")
    } else {
        when.format("%a %-d %b %Y %H:%M").to_string()
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not a time; write it like 2026-11-22T02:14:00Z, \"2026-11-22 02:14\" (local time) or an age like 30m, 2h, 3d"
)]
pub struct TimeError(String);

/// Parses a time given on the command line, relative to `now`.
pub fn parse(text: &str, now: i64) -> Result<i64, TimeError> {
    let t = text.trim();
    let err = || TimeError(text.to_owned());
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return dt.timestamp_nanos_opt().ok_or_else(err);
    }
    for format in ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            let local = Local
                .from_local_datetime(&naive)
                .earliest()
                .ok_or_else(err)?;
            return local.timestamp_nanos_opt().ok_or_else(err);
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let naive = date.and_hms_opt(0, 0, 0).ok_or_else(err)?;
        let local = Local
            .from_local_datetime(&naive)
            .earliest()
            .ok_or_else(err)?;
        return local.timestamp_nanos_opt().ok_or_else(err);
    }
    Ok(now - parse_age(t)?)
}

/// Parses an age or a duration like `30s`, `30m`, `2h`, `3d`, `1w` into nanoseconds.
pub fn parse_age(text: &str) -> Result<i64, TimeError> {
    let t = text.trim();
    let err = || TimeError(text.to_owned());
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (number, unit) = t.split_at(split);
    let number: i64 = number.parse().map_err(|_| err())?;
    let seconds = match unit.trim() {
        "s" | "sec" | "secs" => 1,
        "m" | "min" | "mins" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return Err(err()),
    };
    // An age so large it overflows is a typing mistake, not "forever": wrapped
    // around, it would turn negative and mean "everything".
    number
        .checked_mul(seconds)
        .and_then(|s| s.checked_mul(1_000_000_000))
        .ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_age_too_large_to_count_is_refused_not_wrapped() {
        assert!(parse_age("300000000w").is_err());
        assert!(parse_age("99999999999999999999d").is_err());
        assert_eq!(parse_age("30d").unwrap(), 30 * 86_400 * 1_000_000_000);
    }

    #[test]
    fn times_parse_in_all_three_spellings() {
        let now = parse("2026-11-22T06:30:00Z", 0).unwrap();
        assert_eq!(parse("2h", now).unwrap(), now - 2 * 3600 * 1_000_000_000);
        assert_eq!(parse("30m", now).unwrap(), now - 30 * 60 * 1_000_000_000);
        assert_eq!(parse("3d", now).unwrap(), now - 3 * 86_400 * 1_000_000_000);
        let local = parse("2026-11-22 02:14", now).unwrap();
        assert_eq!(super::local(local), "2026-11-22 02:14");
        assert!(parse("yesterday-ish", now).is_err());
        assert_eq!(rfc3339(now), "2026-11-22T06:30:00Z");
    }
}
