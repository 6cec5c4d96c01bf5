//! The `tallies` table: the sums `status` and the size cap
//! read, kept by triggers as rows change (see the migration that made them), so
//! reading them costs the same over a million rows as over ten. Counting them
//! again from the rows is here too, for `rebuild-index` and `verify`.
use super::{Index, Result};
use crate::model::Totals;

/// The sum each `tally` of a version row counts in (the computed column `tally`);
/// 0 is the vault's objects.
const OBJECTS: i64 = 0;
const FILES: i64 = 1;
const LINKS: i64 = 2;
const UNPROTECTED: i64 = 3;
const DELETED_RECOVERABLE: i64 = 4;
const DELETED_LOST: i64 = 5;
const DELETED_RESTORED: i64 = 6;

/// Sums by tally, counted from the rows themselves.
const RECOUNT: &str = "SELECT tally, COUNT(*) AS files, COALESCE(SUM(size), 0) AS bytes
                       FROM versions
                       WHERE tally IS NOT NULL GROUP BY tally
                       UNION ALL
                       SELECT 0, COUNT(*), COALESCE(SUM(size), 0) FROM objects";

impl Index {
    /// What `status` shows, as the triggers kept it.
    pub fn totals(&self) -> Result<Totals> {
        let sums = self.sums("SELECT tally, files, bytes FROM tallies")?;
        Ok(totals(&sums, self.last_capture()?))
    }

    /// The same, counted again from every row: what `totals` must equal.
    pub fn recounted_totals(&self) -> Result<Totals> {
        Ok(totals(&self.sums(RECOUNT)?, self.last_capture()?))
    }

    /// Sets the kept sums to a count from the rows: a rebuilt index, or one whose
    /// sums `verify` found wrong.
    pub fn recount_totals(&self) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("UPDATE tallies SET files = 0, bytes = 0", [])?;
        tx.execute(
            &format!(
                "UPDATE tallies SET files = counted.files, bytes = counted.bytes
                 FROM ({RECOUNT}) AS counted
                 WHERE tallies.tally = counted.tally"
            ),
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The end of the index `versions_by_capture`: one step, however many rows.
    fn last_capture(&self) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row("SELECT MAX(captured_at) FROM versions", [], |r| r.get(0))?)
    }

    fn sums(&self, sql: &str) -> Result<[(u64, u64); 7]> {
        let mut sums = [(0, 0); 7];
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let tally: i64 = row.get(0)?;
            if let Some(sum) = usize::try_from(tally).ok().and_then(|t| sums.get_mut(t)) {
                *sum = (row.get::<_, i64>(1)? as u64, row.get::<_, i64>(2)? as u64);
            }
        }
        Ok(sums)
    }
}

fn totals(sums: &[(u64, u64); 7], last_capture: Option<i64>) -> Totals {
    let files = |t: i64| sums[t as usize].0;
    Totals {
        files_protected: files(FILES) + files(LINKS),
        bytes_protected: sums[FILES as usize].1,
        files_unprotected: files(UNPROTECTED),
        deleted_recoverable: files(DELETED_RECOVERABLE),
        deleted_lost: files(DELETED_LOST),
        deleted_restored: files(DELETED_RESTORED),
        objects: files(OBJECTS),
        object_bytes: sums[OBJECTS as usize].1,
        last_capture,
    }
}
