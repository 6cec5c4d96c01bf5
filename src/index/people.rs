//! The `people` table: who made a change or a deletion, each person stored once
//! and referred to by id from `versions` and `incidents`.
use rusqlite::{OptionalExtension, params};

use super::{Index, Result};
use crate::model::Person;

impl Index {
    /// The id of `person`'s row, made the first time it is met. Remembered for the
    /// rest of the transaction and after it (forgotten on a rollback, which takes
    /// new rows back).
    pub(super) fn person_id(&self, person: Option<&Person>) -> Result<Option<i64>> {
        let Some(person) = person else {
            return Ok(None);
        };
        let stored = serde_json::to_string(person).expect("a person always serializes");
        if let Some(&id) = self.people.borrow().get(&stored) {
            return Ok(Some(id));
        }
        self.conn
            .prepare_cached("INSERT INTO people (person) VALUES (?1) ON CONFLICT DO NOTHING")?
            .execute([&stored])?;
        let id: i64 = self
            .conn
            .prepare_cached("SELECT id FROM people WHERE person = ?1")?
            .query_row([&stored], |r| r.get(0))?;
        self.people.borrow_mut().insert(stored, id);
        Ok(Some(id))
    }

    /// The person stored as `id`.
    pub(super) fn person(&self, id: i64) -> Result<Option<Person>> {
        let stored: Option<String> = self
            .conn
            .prepare_cached("SELECT person FROM people WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))
            .optional()?;
        Ok(stored.as_deref().and_then(person_from_stored))
    }
}

/// A person as stored; one this version cannot read (written by a newer one) is
/// left unnamed rather than named wrongly.
pub(super) fn person_from_stored(stored: &str) -> Option<Person> {
    serde_json::from_str(stored).ok()
}
