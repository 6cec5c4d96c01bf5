//! The points in time the mount offers, each a folder named the way Samba's
//! `vfs_shadow_copy2` reads snapshots by default: `@GMT-YYYY.MM.DD-HH.MM.SS`, in UTC.
//!
//! A point names one second and shows the protected folders as they were at its
//! very end. The list is bounded, newest first:
//! - the moment just before each incident began (its second ends before the first
//!   deletion), so a file made at 10:05 and deleted at 10:20 is in one;
//! - the end of every whole hour of the last 48 in which files were written or
//!   deleted;
//! - the end of every day before that, back to the retention period.
//!
//! Any other second can still be opened by name (typed by hand): only the list is
//! bounded. Nothing here reads the vault; it asks the index when things changed.

use std::ffi::OsStr;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::index::{Index, Result};

const SECOND: i64 = 1_000_000_000;
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// Hours back from now that get a point for each hour in which files changed.
pub const HOURLY_FOR_HOURS: i64 = 48;
/// At most this many incidents get a point of their own (the most recent).
pub const MOST_INCIDENTS: usize = 200;
/// At most this many days get a point of their own, whatever the retention period.
pub const MOST_DAYS: i64 = 366;
/// The whole list never grows beyond this: Windows asks for every point's name in
/// one reply (50 bytes each), and a longer list helps nobody choose.
pub const MOST_POINTS: usize = 500;

/// One point in time: the second whose end it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Point {
    /// Seconds since the Unix epoch.
    second: i64,
}

impl Point {
    pub fn from_second(second: i64) -> Self {
        Self { second }
    }

    /// The latest point that shows everything as it was before `ns`.
    pub fn just_before(ns: i64) -> Self {
        Self {
            second: ns.div_euclid(SECOND) - 1,
        }
    }

    /// The moment the point shows, in the index's nanoseconds: the end of its second.
    pub fn as_of(self) -> i64 {
        self.second
            .saturating_add(1)
            .saturating_mul(SECOND)
            .saturating_sub(1)
    }

    /// `@GMT-2026.05.01-10.19.59`.
    pub fn name(self) -> String {
        match DateTime::<Utc>::from_timestamp(self.second, 0) {
            Some(t) => format!(
                "@GMT-{:04}.{:02}.{:02}-{:02}.{:02}.{:02}",
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            None => format!("@GMT-{}", self.second),
        }
    }

    /// The point a folder name stands for, if it is one written exactly as `name`
    /// writes it: any other spelling of the same second would be a second folder
    /// with the same content under another name.
    pub fn parse(name: &OsStr) -> Option<Self> {
        let text = name.to_str()?;
        let rest = text.strip_prefix("@GMT-")?;
        let t = chrono::NaiveDateTime::parse_from_str(rest, "%Y.%m.%d-%H.%M.%S").ok()?;
        let point = Self {
            second: t.and_utc().timestamp(),
        };
        (point.name() == text).then_some(point)
    }

    /// Whether the whole second is over by `now`, so what it shows can no longer change
    /// by what happens next.
    pub fn is_past(self, now: i64) -> bool {
        self.as_of() < now
    }
}

/// The points in time to list, newest first, as of `now`; `keep_ns` is how long
/// deleted files are kept (older points would show files already purged).
pub fn points(index: &Index, now: i64, keep_ns: i64) -> Result<Vec<Point>> {
    let mut out = Vec::new();
    let now_s = now.div_euclid(SECOND);
    let this_hour = now_s.div_euclid(HOUR);
    // Whole hours only: the current one still changes, and the live share shows it.
    for hour in (this_hour - HOURLY_FOR_HOURS..this_hour).rev() {
        if index.changed_between(hour * HOUR * SECOND, (hour + 1) * HOUR * SECOND)? {
            out.push(Point::from_second((hour + 1) * HOUR - 1));
        }
    }
    let hourly_from = (this_hour - HOURLY_FOR_HOURS) * HOUR;
    if let Some(first) = index.first_seen()? {
        let first_day = first.div_euclid(SECOND).div_euclid(DAY);
        let oldest_kept = (now - keep_ns).div_euclid(SECOND).div_euclid(DAY);
        let mut day = hourly_from.div_euclid(DAY) - 1;
        let mut days = 0;
        while day >= first_day && day >= oldest_kept && days < MOST_DAYS {
            out.push(Point::from_second((day + 1) * DAY - 1));
            day -= 1;
            days += 1;
        }
    }
    for incident in index.incidents(MOST_INCIDENTS)? {
        if incident.first_at < now - keep_ns {
            continue;
        }
        let point = Point::just_before(incident.first_at);
        if point.is_past(now) {
            out.push(point);
        }
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    out.dedup();
    out.truncate(MOST_POINTS);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_read_back_only_as_written() {
        let point = Point::from_second(1_777_630_799);
        let name = point.name();
        assert_eq!(name, "@GMT-2026.05.01-10.19.59");
        assert_eq!(Point::parse(OsStr::new(&name)), Some(point));
        for other in [
            "@GMT-2026.5.1-10.19.59",
            "@GMT-2026.05.01-10.19.59 ",
            "@gmt-2026.05.01-10.19.59",
            "@GMT-2026.05.01-10.19.60",
            "@GMT-2026.05.01-10.19",
            "GMT-2026.05.01-10.19.59",
            "@GMT-2026.05.01-10.19.59/x",
        ] {
            assert_eq!(Point::parse(OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn the_point_before_an_incident_ends_before_its_first_deletion() {
        for first_at in [
            1_777_630_800 * SECOND,
            1_777_630_800 * SECOND + 1,
            1_777_630_800 * SECOND + SECOND - 1,
        ] {
            let point = Point::just_before(first_at);
            assert!(point.as_of() < first_at);
            // And no earlier than one second before it.
            assert!(point.as_of() >= first_at - 2 * SECOND, "{first_at}");
        }
    }

    #[test]
    fn hours_with_changes_then_one_a_day_back_to_the_retention_period_newest_first() {
        use crate::index::tests::file;
        use std::path::{Path, PathBuf};
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.db")).unwrap();
        let root = index.set_roots(&[PathBuf::from("/s")], 1).unwrap()[0].id;
        // 2026-05-01 10:30:00 UTC.
        let now = 1_777_631_400 * SECOND;
        let at = |secs_ago: i64| now - secs_ago * SECOND;
        for (n, seen) in [
            at(30 * 60),   // this hour: not over, no point
            at(90 * 60),   // 09:00
            at(100 * 60),  // 08:50
            at(47 * HOUR), // the oldest hour still listed one by one
            at(50 * HOUR), // before that: days only
            at(400 * DAY), // beyond the retention period and the day limit
        ]
        .into_iter()
        .enumerate()
        {
            let path = format!("/s/f{n}");
            index
                .insert_version(Path::new(&path), root, &file(n as u8 + 1, 10), seen)
                .unwrap();
        }
        let names = |keep_days: i64| -> Vec<String> {
            points(&index, now, keep_days * DAY * SECOND)
                .unwrap()
                .into_iter()
                .map(Point::name)
                .collect()
        };
        let listed = names(30);
        // 09:00 and 08:50 are two hours; 10:00 is the one going on.
        assert_eq!(
            listed[..3],
            [
                "@GMT-2026.05.01-09.59.59",
                "@GMT-2026.05.01-08.59.59",
                "@GMT-2026.04.29-11.59.59"
            ],
            "{listed:?}"
        );
        // The hourly list ends 48 hours back (2026-04-29 10:00); days start before it,
        // one each, changed or not, back to 30 days before now.
        assert_eq!(listed[3], "@GMT-2026.04.28-23.59.59", "{listed:?}");
        assert_eq!(listed.last().unwrap(), "@GMT-2026.04.01-23.59.59");
        assert_eq!(listed.len(), 3 + 28, "{listed:?}");
        let mut sorted = listed.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(sorted, listed, "newest first, each once");
        // A year and more of retention: still bounded by the day limit.
        let long = names(10 * 366);
        assert_eq!(long.len(), 3 + MOST_DAYS as usize, "{}", long.len());
        assert!(long.len() <= MOST_POINTS);
    }
}
