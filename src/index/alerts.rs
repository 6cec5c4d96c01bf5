//! The `alerts` table: raised, cleared, acknowledged, and what became of each.

use rusqlite::params;

use super::{Index, Result, path_from_bytes};
use crate::journal::Record;
use crate::model::{Alert, AlertEntry, AlertKind, AlertState};
use crate::words::marked_spans;

impl Index {
    /// Raises an alert of `kind` unless one of that kind is already open. The paths
    /// in `message` are marked (`whole_path`), and read back as `Alert::paths`.
    pub fn raise_alert(&self, kind: &AlertKind, message: &str, now: i64) -> Result<bool> {
        let kind = kind.as_str().into_owned();
        let open: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE kind = ?1 AND cleared_at IS NULL)",
            [&kind],
            |r| r.get(0),
        )?;
        if open {
            // Nothing changes, so nothing is recorded: a limit hit at every folder
            // walked would otherwise write the same record thousands of times.
            return Ok(false);
        }
        let _r = self.record(|| {
            Ok(Record::Alert {
                kind: kind.clone(),
                message: message.to_owned(),
                at: now,
            })
        })?;
        self.conn.execute(
            "INSERT INTO alerts (kind, message, raised_at) VALUES (?1, ?2, ?3)",
            params![&kind, message, now],
        )?;
        Ok(true)
    }

    /// Whether an alert of `kind` is open.
    pub fn alert_open(&self, kind: &AlertKind) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE kind = ?1 AND cleared_at IS NULL)",
            [kind.as_str()],
            |r| r.get(0),
        )?)
    }

    /// When the last alert of `kind` was closed (cleared, resolved, acknowledged).
    pub fn last_closed(&self, kind: &AlertKind) -> Result<Option<i64>> {
        Ok(self.conn.query_row(
            "SELECT MAX(cleared_at) FROM alerts WHERE kind = ?1",
            [kind.as_str()],
            |r| r.get(0),
        )?)
    }

    pub fn clear_alert(&self, kind: &AlertKind, now: i64) -> Result<()> {
        let kind = kind.as_str().into_owned();
        let _r = self.record(|| {
            Ok(Record::AlertCleared {
                kind: kind.clone(),
                at: now,
            })
        })?;
        self.conn
            .prepare_cached(
                "UPDATE alerts SET cleared_at = ?2 WHERE kind = ?1 AND cleared_at IS NULL",
            )?
            .execute(params![&kind, now])?;
        Ok(())
    }

    /// Acknowledges the open alert of `kind` raised at `raised_at`: it needs nothing
    /// done (the deletion was wanted). Returns whether there was such an alert.
    pub fn acknowledge_alert(
        &self,
        kind: &AlertKind,
        raised_at: i64,
        note: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let kind = kind.as_str().into_owned();
        let open: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM alerts
                 WHERE kind = ?1 AND raised_at = ?2 AND cleared_at IS NULL)",
            params![&kind, raised_at],
            |r| r.get(0),
        )?;
        if !open {
            return Ok(false);
        }
        let _r = self.record(|| {
            Ok(Record::Acknowledged {
                kind: kind.clone(),
                raised_at,
                note: note.map(str::to_owned),
                at: now,
            })
        })?;
        let n = self.conn.execute(
            "UPDATE alerts SET cleared_at = ?3, acknowledged_at = ?3,
                 closed_how = 'acknowledged', note = ?4
             WHERE kind = ?1 AND raised_at = ?2 AND cleared_at IS NULL",
            params![&kind, raised_at, now, note],
        )?;
        Ok(n > 0)
    }

    pub fn open_alerts(&self) -> Result<Vec<Alert>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, message, raised_at, cleared_at FROM alerts
             WHERE cleared_at IS NULL ORDER BY raised_at DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            let (message, paths) = marked_spans(&r.get::<_, String>(2)?);
            Ok(Alert {
                id: r.get(0)?,
                kind: AlertKind::from_stored(&r.get::<_, String>(1)?),
                message,
                paths,
                raised_at: r.get(3)?,
                cleared_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every alert still open, and every other raised or closed at or after `since`,
    /// newest first, with what became of each.
    pub fn alert_entries(&self, since: i64) -> Result<Vec<AlertEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, message, raised_at, cleared_at, closed_how, note, report
             FROM alerts
             WHERE cleared_at IS NULL OR raised_at >= ?1 OR cleared_at >= ?1
             ORDER BY cleared_at IS NOT NULL, COALESCE(cleared_at, raised_at) DESC, id DESC",
        )?;
        let rows = stmt.query_map([since], |r| {
            let cleared_at: Option<i64> = r.get(4)?;
            let how: Option<String> = r.get(5)?;
            let report: Option<Vec<u8>> = r.get(7)?;
            let state = match (cleared_at, how.as_deref()) {
                (None, _) => AlertState::Open,
                (Some(_), Some("resolved")) => AlertState::Resolved {
                    report: report.map(path_from_bytes),
                },
                (Some(_), Some("acknowledged")) => AlertState::Acknowledged { note: r.get(6)? },
                (Some(_), Some("merged")) => AlertState::Merged,
                (Some(_), _) => AlertState::Cleared,
            };
            let (message, paths) = marked_spans(&r.get::<_, String>(2)?);
            Ok(AlertEntry {
                alert: Alert {
                    id: r.get(0)?,
                    kind: AlertKind::from_stored(&r.get::<_, String>(1)?),
                    message,
                    paths,
                    raised_at: r.get(3)?,
                    cleared_at,
                },
                state,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::index::tests::*;
    use crate::model::AlertKind;

    #[test]
    fn raising_an_alert_already_open_writes_nothing_more_to_the_journal() {
        let (dir, ix, _) = journaled_index();
        let log = dir.path().join("journal").join("000001.log");
        assert!(
            ix.raise_alert(&AlertKind::WatchLimit, "the limit", 1)
                .unwrap()
        );
        let once = std::fs::metadata(&log).unwrap().len();
        for at in 2..50 {
            assert!(
                !ix.raise_alert(&AlertKind::WatchLimit, "the limit", at)
                    .unwrap()
            );
        }
        assert_eq!(std::fs::metadata(&log).unwrap().len(), once);
    }
}
