//! Where the mount's names lead: the listing of each folder (from the index, or
//! kept from a moment ago), a name found in one, and the inode numbers and
//! attributes the kernel is told (see `kernel` for the answers themselves).

use std::ffi::OsStr;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use fuser::{Errno, FileAttr, FileType, INodeNo};

use crate::ids::ObjectId;
use crate::index::IndexError;
use crate::model::Incident;

use super::points::{self, Point};
use super::views::{self, Entry, Kind, Meta, View};
use super::{
    DELETED, INCIDENTS, Kept, LISTING_TTL, Listed, MOST_INCIDENTS, MOST_LISTINGS, Node, Place,
    VaultView,
};

impl VaultView {
    /// What the folder at `place` holds, from the index or kept from a moment ago.
    /// A listing that can still grow (the top, incidents, deleted files) is made again
    /// once the index has changed, so a file deleted a moment ago shows up in
    /// Explorer at once; but not before it is ten times as old as it took to make,
    /// so a big folder of `deleted/` listed while the service writes costs a tenth
    /// of the time more, not one listing per name looked up in it.
    pub(super) fn listing(&self, place: &Place) -> Result<Arc<Vec<Listed>>, Errno> {
        let index_version = self.index_version();
        if let Some(kept) = self.listings.lock().expect("never poisoned").get(place) {
            let age = kept.at.elapsed();
            let unchanged = (index_version.is_some() && kept.index_version == index_version)
                || place.is_settled(crate::clock::now())
                || age < kept.took.saturating_mul(10);
            if age < LISTING_TTL && unchanged {
                return Ok(kept.listed.clone());
            }
        }
        self.list_again(place)
    }

    /// What the folder at `place` holds, read from the index now, and kept.
    fn list_again(&self, place: &Place) -> Result<Arc<Vec<Listed>>, Errno> {
        let index_version = self.index_version();
        let started = Instant::now();
        let listed = Arc::new(self.list(place).map_err(|e| {
            tracing::error!("cannot list {}: {e}", self.describe(place));
            Errno::EIO
        })?);
        let mut listings = self.listings.lock().expect("never poisoned");
        if listings.len() >= MOST_LISTINGS {
            listings.retain(|_, kept| kept.at.elapsed() < LISTING_TTL);
            if listings.len() >= MOST_LISTINGS {
                listings.clear();
            }
        }
        listings.insert(
            place.clone(),
            Kept {
                at: Instant::now(),
                took: started.elapsed(),
                index_version,
                listed: listed.clone(),
            },
        );
        Ok(listed)
    }

    /// Changes whenever the service has written to the index; `None` if it cannot be
    /// read, which makes every growing listing be made again.
    fn index_version(&self) -> Option<i64> {
        let index = self.index.lock().expect("never poisoned");
        index.data_version().ok()
    }

    fn list(&self, place: &Place) -> Result<Vec<Listed>, IndexError> {
        let index = self.index.lock().expect("never poisoned");
        let mut out = Vec::new();
        match place {
            Place::Top => {
                let now = crate::clock::now();
                for point in points::points(&index, now, self.keep_ns)? {
                    out.push(self.fixed(&point.name(), point_place(point), point.as_of()));
                }
                out.push(self.fixed(INCIDENTS, Place::Incidents, self.started_ns()));
                out.push(self.fixed(
                    DELETED,
                    Place::Tree(View::Deleted, "/".into()),
                    self.started_ns(),
                ));
            }
            Place::Incidents => {
                for incident in index.incidents(MOST_INCIDENTS)? {
                    out.push(self.fixed(
                        &incident.code,
                        incident_place(&incident),
                        incident.first_at,
                    ));
                }
            }
            Place::Tree(view, dir) => {
                for entry in views::list(&index, &self.roots, *view, dir)? {
                    let place = Place::Tree(*view, dir.join(&entry.name));
                    out.push(Listed { entry, place });
                }
            }
        }
        Ok(out)
    }

    /// One of the mount's own folders: root's, open for anyone to look in.
    pub(super) fn fixed(&self, name: &str, place: Place, mtime_ns: i64) -> Listed {
        Listed {
            entry: Entry {
                name: name.into(),
                kind: Kind::Dir,
                meta: Meta {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    mtime_ns,
                },
            },
            place,
        }
    }

    pub(super) fn started_ns(&self) -> i64 {
        self.started_ns
    }

    /// The entry `name` in the folder at `parent`. Besides what the folder lists, a
    /// point in time or an incident code can be opened by name: any second that is
    /// over, written exactly as listed, and any incident by its own code.
    pub(super) fn find(&self, parent: &Place, name: &OsStr) -> Result<Option<Listed>, Errno> {
        let listing = self.listing(parent)?;
        let found = match parent {
            // A tree's folders are listed sorted by name, and may be long.
            Place::Tree(..) => listing
                .binary_search_by(|l| l.entry.name.as_os_str().cmp(name))
                .ok()
                .map(|i| &listing[i]),
            _ => listing.iter().find(|l| l.entry.name == name),
        };
        if let Some(found) = found {
            return Ok(Some(found.clone()));
        }
        let now = crate::clock::now();
        Ok(match parent {
            Place::Top => Point::parse(name)
                .filter(|p| p.is_past(now))
                .map(|p| self.fixed(&p.name(), point_place(p), p.as_of())),
            Place::Incidents => {
                let index = self.index.lock().expect("never poisoned");
                let text = name.to_str().unwrap_or_default();
                index
                    .incident_by_code(text)
                    .map_err(|e| {
                        tracing::error!("cannot look up the incident {text:?}: {e}");
                        Errno::EIO
                    })?
                    // Only its own code: one merged into another, or the same code typed
                    // another way, would be a second name for the same folder.
                    .filter(|incident| incident.code == text)
                    .map(|incident| {
                        self.fixed(&incident.code, incident_place(&incident), incident.first_at)
                    })
            }
            Place::Tree(..) => None,
        })
    }

    /// The file at `ino`, known by the staged copy `staged` that is gone: the
    /// service named it by its hash and removed the staged name since the folder was
    /// listed. The folder is read from the index again, and the file opens as its
    /// copy's real name, when that is still the same file (same size); what the
    /// kernel and the kept listing know is brought up to date with it.
    pub(super) fn hashed_since(
        &self,
        ino: INodeNo,
        place: &Place,
        staged: &ObjectId,
        size: u64,
    ) -> Option<(ObjectId, File)> {
        let Place::Tree(view, path) = place else {
            return None;
        };
        let (dir, name) = (path.parent()?, path.file_name()?);
        let parent = Place::Tree(*view, dir.to_owned());
        let find = |listing: &Arc<Vec<Listed>>| {
            listing
                .binary_search_by(|l| l.entry.name.as_os_str().cmp(name))
                .ok()
                .map(|i| listing[i].clone())
        };
        // The kept listing first: made again for another file of the same folder, it
        // already has the real names, and a big folder is read from the index once.
        let mut listed = find(&self.listing(&parent).ok()?)?;
        if matches!(&listed.entry.kind, Kind::File { object, .. } if object == staged) {
            listed = find(&self.list_again(&parent).ok()?)?;
        }
        let Kind::File { object, size: now } = &listed.entry.kind else {
            return None;
        };
        if object == staged || object.is_staged() || *now != size {
            return None;
        }
        let file = self.contents.open(object).ok()?;
        if let Some(node) = self
            .nodes
            .lock()
            .expect("never poisoned")
            .get_mut(&u64::from(ino))
            .filter(|node| node.place == *place)
        {
            node.kind = listed.entry.kind.clone();
        }
        Some((*object, file))
    }

    /// The inode of `listed`, remembered with one more lookup.
    pub(super) fn remember(&self, listed: &Listed) -> FileAttr {
        let mut nodes = self.nodes.lock().expect("never poisoned");
        let mut ino = inode_of(&listed.place);
        loop {
            match nodes.get_mut(&ino) {
                Some(node) if node.place == listed.place => {
                    node.lookups += 1;
                    // What the listing says now (a newer listing of `deleted/`).
                    node.kind = listed.entry.kind.clone();
                    node.attr = attr(ino, &listed.entry.kind, &listed.entry.meta);
                    return node.attr;
                }
                // Two places with the same hash: the next free number.
                Some(_) => ino = ino.wrapping_add(1).max(2),
                None => break,
            }
        }
        let node = Node {
            place: listed.place.clone(),
            kind: listed.entry.kind.clone(),
            attr: attr(ino, &listed.entry.kind, &listed.entry.meta),
            lookups: 1,
        };
        let attr = node.attr;
        nodes.insert(ino, node);
        attr
    }

    pub(super) fn node(&self, ino: INodeNo) -> Option<Node> {
        self.nodes
            .lock()
            .expect("never poisoned")
            .get(&u64::from(ino))
            .cloned()
    }

    /// The place of a folder the kernel knows.
    pub(super) fn folder(&self, ino: INodeNo) -> Option<Place> {
        if ino == INodeNo::ROOT {
            return Some(Place::Top);
        }
        self.node(ino)
            .filter(|n| n.kind == Kind::Dir)
            .map(|n| n.place)
    }

    /// A place in words, for log lines: `@GMT-…/srv/share/a.pdf`, `deleted/srv/…`.
    pub(super) fn describe(&self, place: &Place) -> String {
        match place {
            Place::Top => "the top of the mount".into(),
            Place::Incidents => INCIDENTS.into(),
            Place::Tree(view, path) => {
                let top = match view {
                    View::AsOf(t) => Point::just_before(t + 1).name(),
                    View::Deleted => DELETED.into(),
                    View::Incident { id, .. } => format!("{INCIDENTS}/#{id}"),
                };
                format!("{top}{}", crate::words::display_path(path))
            }
        }
    }

    pub(super) fn handle(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }
}

/// The place of a point in time's folder.
fn point_place(point: Point) -> Place {
    Place::Tree(View::AsOf(point.as_of()), "/".into())
}

fn incident_place(incident: &Incident) -> Place {
    Place::Tree(
        View::Incident {
            id: incident.id,
            before: incident.first_at - 1,
        },
        "/".into(),
    )
}

/// A stable inode number for a place (1 is the top of the mount).
pub(super) fn inode_of(place: &Place) -> u64 {
    let hash = blake3::hash(format!("{place:?}").as_bytes());
    let n = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
    n.max(2)
}

pub(super) fn attr(ino: u64, kind: &Kind, meta: &Meta) -> FileAttr {
    let time = system_time(meta.mtime_ns);
    let (file_type, size, nlink) = match kind {
        Kind::Dir => (FileType::Directory, 0, 2),
        Kind::File { size, .. } => (FileType::RegularFile, *size, 1),
        Kind::Symlink(target) => (FileType::Symlink, target.as_os_str().len() as u64, 1),
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind: file_type,
        perm: (meta.mode & 0o7777) as u16,
        nlink,
        uid: meta.uid,
        gid: meta.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

pub(super) fn file_type(kind: &Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File { .. } => FileType::RegularFile,
        Kind::Symlink(_) => FileType::Symlink,
    }
}
