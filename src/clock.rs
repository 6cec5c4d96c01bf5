//! Time as the index stores it (nanoseconds since the Unix epoch), and as people
//! write and read it: RFC 3339, `YYYY-MM-DD HH:MM` in local time, relative ages
//! like `30m`, and phone-friendly phrases like "Today 02:14".

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};

/// Nanoseconds since the Unix epoch, now.
pub fn now() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
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

/// A time on the command line that cannot be used, and how to write one.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error(
        "{0:?} is not a time; write it like 2026-11-22T02:14:00Z, \"2026-11-22 02:14\" (local \
         time), an age like 30m, 2h, 3d, or yesterday, today 02:00, 02:00"
    )]
    NotATime(String),
    #[error(
        "{0:?} is too far in the future: undelete counts time up to 2262-04-11, and nothing \
         can have happened after now"
    )]
    TooLate(String),
    #[error("{0:?} is too long ago: undelete counts time from 1677-09-21 on")]
    TooEarly(String),
}

/// Parses a time given on the command line, relative to `now`: RFC 3339,
/// `YYYY-MM-DD HH:MM` (local), an age (`2h`), `yesterday` or `today` (their
/// midnight), `today 02:00`, `yesterday 23:10`, or `02:00` alone: the latest 02:00
/// that has come, today's or else yesterday's, as someone means it at 06:30.
pub fn parse(text: &str, now: i64) -> Result<i64, TimeError> {
    let t = text.trim();
    let err = || TimeError::NotATime(text.to_owned());
    // Out of the range of the clock, as opposed to not a time at all.
    let range = |utc: DateTime<Utc>| {
        utc.timestamp_nanos_opt().ok_or_else(|| {
            if utc.timestamp() > 0 {
                TimeError::TooLate(text.to_owned())
            } else {
                TimeError::TooEarly(text.to_owned())
            }
        })
    };
    let local = |naive: NaiveDateTime| match Local.from_local_datetime(&naive).earliest() {
        Some(local) => range(local.with_timezone(&Utc)),
        None => Err(err()),
    };
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return range(dt.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, format) {
            return local(naive);
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return local(date.and_hms_opt(0, 0, 0).ok_or_else(err)?);
    }
    let today = to_local(now).date_naive();
    let lower = t.to_lowercase();
    let (day, clock) = match lower.split_once(' ') {
        Some((word, rest)) => (Some(word), Some(rest.trim())),
        None if lower.contains(':') => (None, Some(lower.as_str())),
        None => (Some(lower.as_str()), None),
    };
    let day = match day {
        Some("today") => Some(today),
        Some("yesterday") => today.pred_opt(),
        Some("now") if clock.is_none() => return Ok(now),
        Some(_) => return Ok(now - parse_age(t)?),
        None => None,
    };
    let at = match clock {
        Some(clock) => chrono::NaiveTime::parse_from_str(clock, "%H:%M")
            .or_else(|_| chrono::NaiveTime::parse_from_str(clock, "%H:%M:%S"))
            .map_err(|_| err())?,
        None => chrono::NaiveTime::MIN,
    };
    match day {
        Some(day) => local(day.and_time(at)),
        None => {
            let t = local(today.and_time(at))?;
            if t <= now {
                Ok(t)
            } else {
                local(today.pred_opt().ok_or_else(err)?.and_time(at))
            }
        }
    }
}

/// Parses an age or a duration like `30s`, `30m`, `2h`, `3d`, `1w` into nanoseconds.
pub fn parse_age(text: &str) -> Result<i64, TimeError> {
    let t = text.trim();
    let err = || TimeError::NotATime(text.to_owned());
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

    #[test]
    fn yesterday_today_and_a_clock_time_mean_what_people_mean() {
        let now = parse("2026-11-22 06:30", 0).unwrap();
        let at = |t: &str| super::local(parse(t, now).unwrap());
        assert_eq!(at("yesterday"), "2026-11-21 00:00");
        assert_eq!(at("Today"), "2026-11-22 00:00");
        assert_eq!(at("today 02:00"), "2026-11-22 02:00");
        assert_eq!(at("yesterday 23:10"), "2026-11-21 23:10");
        // The latest 02:00 that has come; 23:00 has not come yet today.
        assert_eq!(at("02:00"), "2026-11-22 02:00");
        assert_eq!(at("23:00"), "2026-11-21 23:00");
        assert!(parse("today 25:00", now).is_err());
        assert!(parse("tomorrow", now).is_err());
    }

    #[test]
    fn a_time_past_what_the_clock_counts_is_too_far_not_wrong() {
        let err = parse("2262-04-12T00:00:00Z", 0).unwrap_err().to_string();
        assert!(err.contains("too far in the future"), "{err}");
        let err = parse("1600-01-01 00:00", 0).unwrap_err().to_string();
        assert!(err.contains("too long ago"), "{err}");
        assert!(matches!(parse("soon", 0), Err(TimeError::NotATime(_))));
    }
}
