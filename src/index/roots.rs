//! The `roots` table: the protected folders, active in this run or kept for
//! their history.
use std::path::PathBuf;

use rusqlite::params;

use super::{Index, Result, path_bytes, path_from_bytes};
use crate::journal::Record;
use crate::model::Root;

impl Index {
    /// Records the protected folders of this run: new ones are added, missing ones
    /// kept but marked inactive (their history stays restorable).
    pub fn set_roots(&self, paths: &[PathBuf], now: i64) -> Result<Vec<Root>> {
        let _r = self.record(|| {
            Ok(Record::Roots {
                paths: paths.iter().map(|p| p.as_path().into()).collect(),
                at: now,
            })
        })?;
        self.batch(|ix| {
            ix.conn.execute("UPDATE roots SET active = 0", [])?;
            for path in paths {
                ix.conn.execute(
                    "INSERT INTO roots (path, added_at, active) VALUES (?1, ?2, 1)
                     ON CONFLICT(path) DO UPDATE SET active = 1",
                    params![path_bytes(path), now],
                )?;
            }
            Ok(())
        })?;
        Ok(self.roots()?.into_iter().filter(|r| r.active).collect())
    }

    pub fn roots(&self) -> Result<Vec<Root>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, path, active FROM roots ORDER BY path")?;
        let rows = stmt.query_map([], |r| {
            Ok(Root {
                id: r.get(0)?,
                path: path_from_bytes(r.get(1)?),
                active: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The path of the protected folder `root_id`, as journal records name it.
    pub(super) fn root_path(&self, root_id: i64) -> Result<PathBuf> {
        Ok(self
            .conn
            .prepare_cached("SELECT path FROM roots WHERE id = ?1")?
            .query_row([root_id], |r| Ok(path_from_bytes(r.get(0)?)))?)
    }
}
