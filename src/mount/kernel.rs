//! The mount's answers to the kernel: names, attributes, listings and reads, each
//! from the views (see `views`) and the vault's checked copies (see `content`).
//! Every request that would change something is refused.

use std::ffi::{OsStr, OsString};
use std::sync::Arc;

use fuser::{
    Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyXattr, Request,
};

use super::content::ReadError;
use super::listing::{attr, file_type, inode_of};
use super::views::Kind;
use super::{KERNEL_TTL, OpenFile, Place, VaultView};

impl Filesystem for VaultView {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(parent) = self.folder(parent) else {
            return reply.error(Errno::ENOENT);
        };
        match self.find(&parent, name) {
            Ok(Some(listed)) => {
                let attr = self.remember(&listed);
                reply.entry(&KERNEL_TTL, &attr, Generation(0));
            }
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut nodes = self.nodes.lock().expect("never poisoned");
        if let Some(node) = nodes.get_mut(&u64::from(ino)) {
            node.lookups = node.lookups.saturating_sub(nlookup);
            if node.lookups == 0 {
                nodes.remove(&u64::from(ino));
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT {
            let top = self.fixed("", Place::Top, self.started_ns());
            return reply.attr(&KERNEL_TTL, &attr(1, &top.entry.kind, &top.entry.meta));
        }
        match self.node(ino) {
            Some(node) => reply.attr(&KERNEL_TTL, &node.attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino).map(|n| n.kind) {
            Some(Kind::Symlink(target)) => {
                reply.data(std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()))
            }
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // The kernel refuses writes to a read-only mount first; this is the second lock.
        if flags.acc_mode() != OpenAccMode::O_RDONLY
            || flags.0 & (libc::O_TRUNC | libc::O_APPEND | libc::O_CREAT) != 0
        {
            return reply.error(Errno::EROFS);
        }
        let Some(node) = self.node(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let Kind::File { object, size } = node.kind else {
            return reply.error(Errno::EISDIR);
        };
        let opened = match self.contents.open(&object) {
            Err(ReadError::Missing) if object.is_staged() => self
                .hashed_since(ino, &node.place, &object, size)
                .ok_or(ReadError::Missing),
            other => other.map(|file| (object, file)),
        };
        match opened {
            Ok((object, file)) => {
                let fh = self.handle();
                self.open_files.lock().expect("never poisoned").insert(
                    fh,
                    OpenFile {
                        file: Arc::new(file),
                        object,
                        size,
                        place: node.place,
                    },
                );
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => {
                tracing::error!(
                    "cannot open {}: {e} (object {object})",
                    self.describe(&node.place)
                );
                reply.error(Errno::EIO);
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Taken out of the table, so reads of other files go on meanwhile.
        let found = self
            .open_files
            .lock()
            .expect("never poisoned")
            .get(&u64::from(fh))
            .map(|open| {
                (
                    open.file.clone(),
                    open.object,
                    open.size,
                    open.place.clone(),
                )
            });
        let Some((file, object, total, place)) = found else {
            return reply.error(Errno::EBADF);
        };
        match self
            .contents
            .read(&file, &object, total, offset, size as usize)
        {
            Ok(data) => reply.data(&data),
            Err(e) => {
                let what = match e {
                    ReadError::Damaged => "it is damaged",
                    ReadError::Missing => "it is missing",
                    ReadError::Io(_) => "it cannot be read",
                };
                tracing::error!(
                    "refused to read {}: {e} (object {object}); {what}, so its readers get an \
                     I/O error, never other bytes. `undelete verify` checks every copy.",
                    self.describe(&place)
                );
                reply.error(Errno::EIO);
            }
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever written, so there is nothing to flush.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.open_files
            .lock()
            .expect("never poisoned")
            .remove(&u64::from(fh));
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(place) = self.folder(ino) else {
            return reply.error(Errno::ENOTDIR);
        };
        match self.listing(&place) {
            Ok(listing) => {
                let fh = self.handle();
                self.open_dirs
                    .lock()
                    .expect("never poisoned")
                    .insert(fh, listing);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // The listing taken when the folder was opened, so its offsets hold.
        let listing = self
            .open_dirs
            .lock()
            .expect("never poisoned")
            .get(&u64::from(fh))
            .cloned();
        let Some(listing) = listing else {
            return reply.error(Errno::EBADF);
        };
        let dots = [OsString::from("."), OsString::from("..")];
        for n in offset as usize..listing.len() + 2 {
            let full = match n {
                0 | 1 => reply.add(ino, n as u64 + 1, FileType::Directory, &dots[n]),
                _ => {
                    let listed = &listing[n - 2];
                    reply.add(
                        INodeNo(inode_of(&listed.place)),
                        n as u64 + 1,
                        file_type(&listed.entry.kind),
                        &listed.entry.name,
                    )
                }
            };
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.open_dirs
            .lock()
            .expect("never poisoned")
            .remove(&u64::from(fh));
        reply.ok();
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // Extended attributes are not kept in the vault: none is there.
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }
}
