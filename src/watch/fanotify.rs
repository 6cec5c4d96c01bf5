//! A small wrapper over the kernel's fanotify, in its file-handle mode: a group
//! that reports, for a whole filesystem at once, each change as the handle of the
//! folder it happened in plus a name, the handle of the thing itself, and a
//! descriptor of the process that made it.
//!
//! Written here over libc because no crate serves this mode: nix has no
//! `FAN_REPORT_FID`, the fanotify-rs crate knows only the old mode (an open file
//! per event, no names, no renames, no deletions), and rustix has no fanotify at
//! all. The kernel structures keep their names from fanotify(7) and
//! open_by_handle_at(2) (`fanotify_event_metadata`, `fanotify_event_info_header`,
//! `fanotify_event_info_fid`, `file_handle`), so the man pages read alongside.
//! It knows nothing of the daemon: `whole_fs` turns these events into `FsEvent`s.

use std::ffi::{CStr, OsString};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use libc::{
    FAN_ATTRIB, FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE, FAN_MODIFY, FAN_ONDIR, FAN_Q_OVERFLOW,
    FAN_RENAME,
};

/// The largest handle the kernel makes (`MAX_HANDLE_SZ` in linux/exportfs.h;
/// not in the libc crate).
const MAX_HANDLE_SZ: usize = 128;

/// What the group reports: events on folders too (`FAN_ONDIR`) and on the
/// children of every folder (`FAN_EVENT_ON_CHILD`, implied by a filesystem mark
/// but said). Never an open or a read: every read on a share would be an event.
pub const CHANGES: u64 = FAN_CREATE
    | FAN_MODIFY
    | FAN_CLOSE_WRITE
    | FAN_ATTRIB
    | FAN_DELETE
    | FAN_RENAME
    | FAN_ONDIR
    | libc::FAN_EVENT_ON_CHILD;

/// An object's identity on its filesystem, as the kernel reports it: the
/// filesystem's id (`fsid`, as statfs(2) gives it) and a `file_handle`. Two
/// events about one file or folder carry equal `Fid`s, whatever its name is now.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fid {
    pub fsid: [i32; 2],
    pub handle_type: i32,
    pub handle: Box<[u8]>,
}

/// A folder's handle and a name in it (`FAN_EVENT_INFO_TYPE_DFID_NAME` and the
/// rename's `OLD_`/`NEW_` records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dir: Fid,
    pub name: OsString,
}

/// One event as read: one `fanotify_event_metadata` and its information records.
/// The kernel merges events on one object queued one after the other, so `mask`
/// may hold several kinds (a create, its writes and its close in one).
#[derive(Debug)]
pub struct Event {
    pub mask: u64,
    /// The acting process (its thread group), or 0 when the kernel could not say.
    pub pid: i32,
    /// A descriptor of that process (`FAN_REPORT_PIDFD`); `None` when it was
    /// gone already or the group does not report them.
    pub pidfd: Option<OwnedFd>,
    /// Where it happened: the folder and the name in it. For a folder's own
    /// event the name is `.` and the folder is the folder itself.
    pub entry: Option<Entry>,
    /// A rename's two places (`FAN_RENAME`).
    pub old: Option<Entry>,
    pub new: Option<Entry>,
    /// The object itself (`FAN_EVENT_INFO_TYPE_FID`): the file or folder created,
    /// written, deleted or moved.
    pub object: Option<Fid>,
}

impl Event {
    pub fn is(&self, bits: u64) -> bool {
        self.mask & bits != 0
    }
}

/// The options a group is made with.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// No limit on queued events (`FAN_UNLIMITED_QUEUE`); the default queue holds
    /// 16,384 and then reports one overflow.
    pub unlimited_queue: bool,
    /// A descriptor of each acting process (`FAN_REPORT_PIDFD`, Linux 5.15).
    pub pidfds: bool,
}

/// A fanotify group (`fanotify_init`), non-blocking.
#[derive(Debug)]
pub struct Group {
    fd: OwnedFd,
}

impl Group {
    /// A group reporting by folder handle, name and object handle, renames as one
    /// event with both names. Needs `CAP_SYS_ADMIN` (root): anyone else gets EPERM.
    pub fn init(options: Options) -> io::Result<Self> {
        let mut flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK
            | libc::FAN_REPORT_DFID_NAME_TARGET;
        if options.unlimited_queue {
            flags |= libc::FAN_UNLIMITED_QUEUE;
        }
        if options.pidfds {
            flags |= libc::FAN_REPORT_PIDFD;
        }
        let event_f_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32;
        // SAFETY: plain system call; a non-negative result is a descriptor we own.
        let fd = unsafe { libc::fanotify_init(flags, event_f_flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just returned by the kernel, owned by nobody else.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Marks the whole filesystem holding the folder `dir` (`FAN_MARK_FILESYSTEM`)
    /// for `mask`. EXDEV where the filesystem cannot give handles for all of it
    /// (a btrfs subvolume, an overlay), ENODEV or EOPNOTSUPP where it gives none.
    pub fn mark_filesystem(&self, dir: BorrowedFd<'_>, mask: u64) -> io::Result<()> {
        self.mark(libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM, dir, mask)
    }

    /// Tells the kernel to drop every event in the folder `dir` (its entries, and
    /// writes to the files in it) before queueing it: an ignore mark
    /// (`FAN_MARK_IGNORE`, Linux 6.0), kept through writes (`FAN_MARK_IGNORED_SURV_MODIFY`).
    /// The mark is on the folder itself, not on a path: moved, it stays quiet.
    pub fn ignore_folder(&self, dir: BorrowedFd<'_>) -> io::Result<()> {
        self.mark(
            libc::FAN_MARK_ADD | libc::FAN_MARK_IGNORE_SURV,
            dir,
            CHANGES,
        )
    }

    /// `fanotify_mark` on the object `dir` refers to (a null path names `dir` itself).
    fn mark(&self, flags: libc::c_uint, dir: BorrowedFd<'_>, mask: u64) -> io::Result<()> {
        // SAFETY: plain system call on descriptors that live through it.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                flags,
                mask,
                dir.as_raw_fd(),
                std::ptr::null(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads what is queued into `buf` and parses it; empty when nothing is
    /// (EAGAIN). An event the wrapper cannot parse ends the read there: the kernel
    /// never writes one, and skipping by `event_len` keeps the rest in step.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Vec<Event>> {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(Vec::new());
            }
            return Err(e);
        }
        Ok(parse(&buf[..n as usize]))
    }
}

impl AsFd for Group {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// How much one read takes: room for a rename with two long names and two handles
/// (about 700 bytes) many times over, and not much more, since the kernel makes a
/// descriptor of its process (a pidfd) for every event one read returns, and they
/// are all open at once until handed on: 32 KiB is about 340 small events.
pub const READ_BUFFER: usize = 32 * 1024;

fn parse(mut bytes: &[u8]) -> Vec<Event> {
    let meta_len = size_of::<libc::fanotify_event_metadata>();
    let mut events = Vec::new();
    while bytes.len() >= meta_len {
        // SAFETY: at least `meta_len` bytes; read unaligned, the buffer is bytes.
        let meta: libc::fanotify_event_metadata =
            unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let len = meta.event_len as usize;
        if len < meta_len || len > bytes.len() || meta.vers != libc::FANOTIFY_METADATA_VERSION {
            break;
        }
        let mut event = Event {
            mask: meta.mask,
            pid: meta.pid,
            pidfd: None,
            entry: None,
            old: None,
            new: None,
            object: None,
        };
        if meta.fd >= 0 {
            // Not asked for in this mode, but never leaked if it comes.
            // SAFETY: the kernel gave us this descriptor.
            drop(unsafe { OwnedFd::from_raw_fd(meta.fd) });
        }
        let mut info = &bytes[meta.metadata_len as usize..len];
        while info.len() >= size_of::<libc::fanotify_event_info_header>() {
            // SAFETY: as above, the header's size is there.
            let hdr: libc::fanotify_event_info_header =
                unsafe { std::ptr::read_unaligned(info.as_ptr().cast()) };
            let rec_len = hdr.len as usize;
            if rec_len < size_of::<libc::fanotify_event_info_header>() || rec_len > info.len() {
                break;
            }
            let record = &info[..rec_len];
            match hdr.info_type {
                libc::FAN_EVENT_INFO_TYPE_FID => event.object = fid_record(record).map(|(f, _)| f),
                libc::FAN_EVENT_INFO_TYPE_DFID_NAME | libc::FAN_EVENT_INFO_TYPE_DFID => {
                    event.entry = entry(record)
                }
                libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME => event.old = entry(record),
                libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME => event.new = entry(record),
                libc::FAN_EVENT_INFO_TYPE_PIDFD => event.pidfd = pidfd_record(record),
                _ => {}
            }
            info = &info[rec_len..];
        }
        events.push(event);
        bytes = &bytes[len..];
    }
    events
}

/// A `fanotify_event_info_fid`: header, `fsid`, `file_handle`, then (for the
/// `DFID_NAME` kinds) a name ended by a NUL. Returns the handle and what follows it.
fn fid_record(record: &[u8]) -> Option<(Fid, &[u8])> {
    let at = size_of::<libc::fanotify_event_info_header>();
    let fsid = record.get(at..at + 8)?;
    let fsid = [
        i32::from_ne_bytes(fsid[..4].try_into().ok()?),
        i32::from_ne_bytes(fsid[4..].try_into().ok()?),
    ];
    let fh = at + 8;
    let handle_bytes = u32::from_ne_bytes(record.get(fh..fh + 4)?.try_into().ok()?) as usize;
    let handle_type = i32::from_ne_bytes(record.get(fh + 4..fh + 8)?.try_into().ok()?);
    let handle = record.get(fh + 8..fh + 8 + handle_bytes)?;
    let fid = Fid {
        fsid,
        handle_type,
        handle: handle.into(),
    };
    Some((fid, &record[fh + 8 + handle_bytes..]))
}

fn entry(record: &[u8]) -> Option<Entry> {
    let (dir, rest) = fid_record(record)?;
    // DFID alone (no name) is the folder's own event.
    let name = CStr::from_bytes_until_nul(rest)
        .map(|n| std::ffi::OsStr::from_bytes(n.to_bytes()).to_owned())
        .unwrap_or_else(|_| OsString::from("."));
    Some(Entry { dir, name })
}

/// A `fanotify_event_info_pidfd`: header, then the descriptor, or `FAN_NOPIDFD`
/// (the process was gone) or `FAN_EPIDFD` (it could not be made).
fn pidfd_record(record: &[u8]) -> Option<OwnedFd> {
    let at = size_of::<libc::fanotify_event_info_header>();
    let fd = i32::from_ne_bytes(record.get(at..at + 4)?.try_into().ok()?);
    // SAFETY: a non-negative pidfd in the record is ours to close.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The `file_handle` of what `fd` refers to, as fanotify reports it
/// (`AT_HANDLE_FID`, Linux 6.5; without it the handle a file server would use,
/// which is the same one where the filesystem can give both).
pub fn fid_of(fd: BorrowedFd<'_>) -> io::Result<Fid> {
    let fsid = fsid_of(fd)?;
    match handle_at(fd, libc::AT_HANDLE_FID) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => handle_at(fd, 0),
        other => other,
    }
    .map(|(handle_type, handle)| Fid {
        fsid,
        handle_type,
        handle,
    })
}

/// The handle of what is at `path` now, never following a symlink at its end (the
/// link's own); its `fsid` is taken as given (the caller compares on one filesystem).
pub fn fid_at(path: &Path, fsid: [i32; 2]) -> io::Result<Fid> {
    named_handle(libc::AT_FDCWD, path.as_os_str(), fsid)
}

/// `fid_at` for the name `name` in the folder `dir`.
pub fn fid_in(dir: BorrowedFd<'_>, name: &std::ffi::OsStr, fsid: [i32; 2]) -> io::Result<Fid> {
    named_handle(dir.as_raw_fd(), name, fsid)
}

fn named_handle(dir: libc::c_int, name: &std::ffi::OsStr, fsid: [i32; 2]) -> io::Result<Fid> {
    let c_name = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = FileHandleBuf::new();
    let mut mount_id: libc::c_int = 0;
    let mut call = |flags| {
        // SAFETY: a NUL-terminated name and a buffer with room for the largest handle.
        unsafe {
            libc::name_to_handle_at(dir, c_name.as_ptr(), buf.as_mut_ptr(), &mut mount_id, flags)
        }
    };
    let mut rc = call(libc::AT_HANDLE_FID);
    if rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        rc = call(0);
    }
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let (handle_type, handle) = buf.parts();
    Ok(Fid {
        fsid,
        handle_type,
        handle: handle.into(),
    })
}

/// The filesystem id of the filesystem holding `fd`, as events carry it.
pub fn fsid_of(fd: BorrowedFd<'_>) -> io::Result<[i32; 2]> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `st` is written by the call before it is read.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful call; `fsid_t` is two ints.
    let fsid: [i32; 2] = unsafe { std::mem::transmute(st.assume_init().f_fsid) };
    Ok(fsid)
}

/// `name_to_handle_at(2)` with a buffer of `MAX_HANDLE_SZ`.
fn handle_at(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<(i32, Box<[u8]>)> {
    let mut buf = FileHandleBuf::new();
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `buf` has room for `MAX_HANDLE_SZ` bytes of handle after its header.
    let rc = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr(),
            &mut mount_id,
            flags | libc::AT_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let (handle_type, handle) = buf.parts();
    Ok((handle_type, handle.into()))
}

/// Opens the object `fid` names with `open_by_handle_at(2)`, through `mount`, a
/// descriptor of its filesystem. ESTALE when it no longer exists. A folder is
/// opened `O_PATH`: enough to name and stat it, never read.
pub fn open_fid(mount: BorrowedFd<'_>, fid: &Fid, flags: libc::c_int) -> io::Result<OwnedFd> {
    let mut buf = FileHandleBuf::new();
    buf.set(fid.handle_type, &fid.handle)?;
    // SAFETY: a filled `file_handle`, valid for the call.
    let fd = unsafe {
        libc::open_by_handle_at(mount.as_raw_fd(), buf.as_mut_ptr(), flags | libc::O_CLOEXEC)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just returned, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Where a descriptor's object is now, by `/proc/self/fd` (the kernel's own
/// path of it; " (deleted)" appended when it has no name any more).
pub fn path_of(fd: BorrowedFd<'_>) -> io::Result<std::path::PathBuf> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let path = std::fs::read_link(Path::new(&link))?;
    if path.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    Ok(path)
}

/// A `file_handle` with room for the largest handle, 4-byte aligned as the
/// kernel's structure is.
#[repr(C)]
struct FileHandleBuf {
    header: libc::file_handle,
    bytes: [u8; MAX_HANDLE_SZ],
}

impl FileHandleBuf {
    fn new() -> Self {
        Self {
            header: libc::file_handle {
                handle_bytes: MAX_HANDLE_SZ as u32,
                handle_type: 0,
                f_handle: [],
            },
            bytes: [0; MAX_HANDLE_SZ],
        }
    }

    fn set(&mut self, handle_type: i32, handle: &[u8]) -> io::Result<()> {
        if handle.len() > MAX_HANDLE_SZ {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.header.handle_type = handle_type;
        self.header.handle_bytes = handle.len() as u32;
        self.bytes[..handle.len()].copy_from_slice(handle);
        Ok(())
    }

    fn parts(&self) -> (i32, &[u8]) {
        let n = (self.header.handle_bytes as usize).min(MAX_HANDLE_SZ);
        (self.header.handle_type, &self.bytes[..n])
    }

    fn as_mut_ptr(&mut self) -> *mut libc::file_handle {
        (self as *mut Self).cast()
    }
}

#[cfg(test)]
mod tests;
