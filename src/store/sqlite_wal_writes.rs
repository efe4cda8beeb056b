//! SQLite's WAL frames of one commit, written to the file together.
//!
//! SQLite writes each WAL frame as two `pwrite`s, its 24-byte header and then its page. A commit
//! of the users scenario's batch is some 40 frames, so 80 system calls, and the kernel takes the
//! page cache's locks and folios again for each: at 8,000 changes/s those writes were a fifth of
//! the pipeline writer's CPU, most of it per call rather than per byte (docs/benchmarks.md, "What
//! session 26 tried").
//!
//! This is a VFS that wraps the default one and changes one thing for WAL files: the frames a
//! commit appends in order are held in memory and written with the commit frame, in writes of
//! up to 31 pages ([`MAX_WRITE`]): two or three for such a commit instead of 80. Every other file,
//! and every other call, is the wrapped VFS's own. Only the appender's connection
//! opens its database through it (`store::sqlite_append`).
//!
//! What makes holding frames safe is where they may be read. A commit becomes visible to other
//! connections only when SQLite publishes the new WAL-index header, after `walFrames` has written
//! the commit frame, and the commit frame's page is the write that sends everything held. A frame
//! written before a commit, by a transaction spilling pages, is read only by its own connection,
//! and any read of the file sends what is held first. So is every call but an in-order append:
//! a write elsewhere in the file, a sync, a truncation, a size asked, a file control, the close.
//! What is held and not sent when the process dies belongs to a transaction that never committed.
//!
//! Holding starts only with a frame header that does not mark a commit. A commit header that
//! starts nothing held is written at once, and so is a write that follows no header: this covers
//! `walRewriteChecksums`, which rewrites the headers of frames already written after the commit
//! frame (each after reading its frame, which sends what is held), and whose last header, the
//! commit frame's, nothing else follows before the header is published.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr::null_mut;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// The name a connection opens its database with to have its WAL writes gathered.
pub const VFS_NAME: &CStr = c"chex-wal-writes";

/// A WAL frame header's size; the WAL file's own header is 32 bytes.
const FRAME_HEADER: usize = 24;
/// Most bytes held before they are written anyway (a transaction spilling many pages).
const MAX_HELD: usize = 4 << 20;
/// Most bytes in one write. SQLite's unix VFS masks a write's length to 17 bits (`seekAndWriteFd`),
/// so a write of 128 KiB or more would go out short or not at all (`SQLITE_FULL`); what is held
/// goes out in writes of at most 31 pages.
const MAX_WRITE: usize = 0x1f000;
const _: () = assert!(MAX_WRITE <= 0x1ffff);

/// Writes held and sent with others instead of going to the file on their own, since the process
/// started; less [`SENT`], what the gathering saved in system calls, give or take the splits.
pub static HELD: AtomicU64 = AtomicU64::new(0);
/// Writes that sent what was held.
pub static SENT: AtomicU64 = AtomicU64::new(0);

static REGISTERED: OnceLock<bool> = OnceLock::new();

/// Registers the VFS (once per process) over SQLite's default one; true if it can be opened with
/// ([`VFS_NAME`]). The page cache's wrapper goes in first: registering starts SQLite, after which
/// it could not.
pub fn register() -> bool {
    *REGISTERED.get_or_init(|| {
        super::sqlite_pcache::install();
        // SAFETY: `sqlite3_vfs_find` and `sqlite3_vfs_register` may be called at any time; the
        // registered struct is leaked, so it outlives every connection using it.
        let registered = unsafe { register_now() };
        if !registered {
            tracing::warn!("SQLite's WAL writes cannot be gathered: the VFS did not register");
        }
        registered
    })
}

unsafe fn register_now() -> bool {
    // SAFETY (of the block): see `register`.
    unsafe {
        let inner = ffi::sqlite3_vfs_find(std::ptr::null());
        if inner.is_null() || (*inner).xOpen.is_none() {
            return false;
        }
        let ours = Box::leak(Box::new(ffi::sqlite3_vfs {
            iVersion: (*inner).iVersion.min(2),
            szOsFile: (INNER_AT + (*inner).szOsFile as usize) as c_int,
            mxPathname: (*inner).mxPathname,
            pNext: null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: inner.cast(),
            xOpen: Some(open),
            xDelete: Some(delete),
            xAccess: Some(access),
            xFullPathname: Some(full_pathname),
            xDlOpen: Some(dl_open),
            xDlError: Some(dl_error),
            xDlSym: Some(dl_sym),
            xDlClose: Some(dl_close),
            xRandomness: Some(randomness),
            xSleep: Some(sleep),
            xCurrentTime: Some(current_time),
            xGetLastError: Some(get_last_error),
            xCurrentTimeInt64: Some(current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        }));
        ffi::sqlite3_vfs_register(ours, 0) == ffi::SQLITE_OK
    }
}

/// What the file methods see of a WAL file opened here: the wrapped VFS's file follows in the
/// same allocation, at [`INNER_AT`].
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    held: *mut Held,
}

/// Where the wrapped VFS's file starts in this VFS's file.
const INNER_AT: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

/// Frames appended in order and not yet written, from file offset `at`.
#[derive(Debug, Default)]
struct Held {
    bytes: Vec<u8>,
    at: i64,
    /// A commit frame's header is held: its page, next, sends everything.
    commit: bool,
}

impl Held {
    /// Takes a write of `data` at `offset`, holding it or writing it through `out`, after sending
    /// what it holds when the write does not continue it. Returns SQLite's result code.
    fn write(
        &mut self,
        data: &[u8],
        offset: i64,
        out: &mut impl FnMut(&[u8], i64) -> c_int,
    ) -> c_int {
        if !self.bytes.is_empty() && offset == self.end() {
            self.bytes.extend_from_slice(data);
            HELD.fetch_add(1, Ordering::Relaxed);
            if self.commit || self.bytes.len() >= MAX_HELD {
                return self.send(out);
            }
            self.commit = is_commit_header(data);
            return ffi::SQLITE_OK;
        }
        let rc = self.send(out);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        if data.len() == FRAME_HEADER && !is_commit_header(data) {
            self.bytes.extend_from_slice(data);
            self.at = offset;
            HELD.fetch_add(1, Ordering::Relaxed);
            return ffi::SQLITE_OK;
        }
        out(data, offset)
    }

    /// Writes what is held through `out`. What failed to go is dropped with the transaction it
    /// belongs to, which the error fails.
    fn send(&mut self, out: &mut impl FnMut(&[u8], i64) -> c_int) -> c_int {
        self.commit = false;
        if self.bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let mut rc = ffi::SQLITE_OK;
        let mut at = self.at;
        for part in self.bytes.chunks(MAX_WRITE) {
            rc = out(part, at);
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += part.len() as i64;
        }
        self.bytes.clear();
        SENT.fetch_add(1, Ordering::Relaxed);
        rc
    }

    fn end(&self) -> i64 {
        self.at + self.bytes.len() as i64
    }
}

/// A frame header whose second word (the database's size after the commit) marks a commit.
fn is_commit_header(data: &[u8]) -> bool {
    data.len() == FRAME_HEADER && data[4..8] != [0, 0, 0, 0]
}

/// The wrapped VFS, as this one's app data.
unsafe fn inner(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: this VFS's `pAppData` is the wrapped VFS (`register_now`).
    unsafe { (*vfs).pAppData.cast() }
}

/// The wrapped VFS's file inside a WAL file of this one.
unsafe fn inner_file(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: a WAL file of this VFS is `szOsFile` bytes with the wrapped file at `INNER_AT`.
    unsafe { file.cast::<u8>().add(INNER_AT).cast() }
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite hands `file` as `szOsFile` bytes for this VFS, which hold the wrapped VFS's
    // file at the start (any file but a WAL) or at `INNER_AT` (a WAL, behind `WalFile`).
    unsafe {
        let inner = inner(vfs);
        let Some(inner_open) = (*inner).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return inner_open(inner, name, file, flags, out_flags);
        }
        let wal = file.cast::<WalFile>();
        (*wal).base.pMethods = std::ptr::null();
        let rc = inner_open(inner, name, inner_file(file), flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // SQLite closes only what has methods, and this one has none yet: a file the
            // wrapped VFS left with methods is closed here.
            let left = (*inner_file(file)).pMethods;
            if let Some(close) = left.as_ref().and_then(|m| m.xClose) {
                close(inner_file(file));
            }
            return rc;
        }
        (*wal).held = Box::into_raw(Box::default());
        (*wal).base.pMethods = &WAL_METHODS;
        ffi::SQLITE_OK
    }
}

/// The methods of a WAL file: version 1, as SQLite asks a WAL file for no more (shared memory
/// and memory mapping are the database file's).
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The wrapped file's methods.
unsafe fn methods(file: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: an open file's methods are static structs of its VFS.
    unsafe { &*(*inner_file(file)).pMethods }
}

/// Writes `data` at `offset` to the wrapped file.
unsafe fn write_inner(file: *mut ffi::sqlite3_file, data: &[u8], offset: i64) -> c_int {
    // SAFETY: `file` is an open WAL file of this VFS.
    unsafe {
        match methods(file).xWrite {
            Some(w) => w(
                inner_file(file),
                data.as_ptr().cast(),
                data.len() as c_int,
                offset,
            ),
            None => ffi::SQLITE_IOERR_WRITE,
        }
    }
}

/// Sends what `file` holds; every call but an in-order write starts here.
unsafe fn send(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is an open WAL file of this VFS, used by one thread at a time (SQLite holds
    // its connection's mutex around every call).
    unsafe {
        let held = &mut *(*file.cast::<WalFile>()).held;
        held.send(&mut |data, offset| write_inner(file, data, offset))
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: as in `send`; `data` is `amount` readable bytes (SQLite's contract).
    unsafe {
        let held = &mut *(*file.cast::<WalFile>()).held;
        let data = std::slice::from_raw_parts(data.cast::<u8>(), amount.max(0) as usize);
        held.write(data, offset, &mut |data, offset| {
            write_inner(file, data, offset)
        })
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: as in `send`; `held` was boxed by `open`, and SQLite calls no method after this.
    unsafe {
        let sent = send(file);
        drop(Box::from_raw((*file.cast::<WalFile>()).held));
        let closed = match methods(file).xClose {
            Some(c) => c(inner_file(file)),
            None => ffi::SQLITE_OK,
        };
        if sent != ffi::SQLITE_OK { sent } else { closed }
    }
}

/// The wrapped file's call, with the arguments as they came; `$missing` where the wrapped file has
/// no such method. With `sends`, what is held goes first: every call that reads or changes the
/// file, or asks about its contents. Locks and the device's properties do not touch the data.
macro_rules! wrapped {
    ($sends:literal, $name:ident, $method:ident, $missing:expr, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            // SAFETY: as in `send`; the arguments are SQLite's, passed on as they came.
            unsafe {
                if $sends {
                    let rc = send(file);
                    if rc != ffi::SQLITE_OK {
                        return rc;
                    }
                }
                match methods(file).$method {
                    Some(m) => m(inner_file(file), $($arg),*),
                    None => $missing,
                }
            }
        }
    };
}

wrapped!(true, read, xRead, ffi::SQLITE_IOERR_READ, (buf: *mut c_void, amount: c_int, offset: i64));
wrapped!(true, truncate, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, (size: i64));
wrapped!(true, sync, xSync, ffi::SQLITE_IOERR_FSYNC, (flags: c_int));
wrapped!(true, file_size, xFileSize, ffi::SQLITE_IOERR_FSTAT, (size: *mut i64));
wrapped!(true, file_control, xFileControl, ffi::SQLITE_NOTFOUND, (op: c_int, arg: *mut c_void));
wrapped!(false, lock, xLock, ffi::SQLITE_OK, (level: c_int));
wrapped!(false, unlock, xUnlock, ffi::SQLITE_OK, (level: c_int));
wrapped!(false, check_reserved_lock, xCheckReservedLock, ffi::SQLITE_OK, (out: *mut c_int));
wrapped!(false, sector_size, xSectorSize, 4096, ());
wrapped!(false, device_characteristics, xDeviceCharacteristics, 0, ());

/// The wrapped VFS's method, called with it and the arguments as they came; `$missing` where the
/// wrapped VFS has none.
macro_rules! forwarded {
    ($name:ident, $method:ident, $missing:expr, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(vfs: *mut ffi::sqlite3_vfs, $($arg: $ty),*) -> $ret {
            // SAFETY: this VFS's app data is the wrapped VFS (`register_now`), which lives as long
            // as the process; the arguments are SQLite's.
            unsafe {
                let i = inner(vfs);
                (*i).$method.map_or($missing, |f| f(i, $($arg),*))
            }
        }
    };
}

type DlSym = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char);

forwarded!(delete, xDelete, ffi::SQLITE_IOERR_DELETE, (name: *const c_char, sync: c_int) -> c_int);
forwarded!(access, xAccess, ffi::SQLITE_IOERR_ACCESS,
    (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int);
forwarded!(full_pathname, xFullPathname, ffi::SQLITE_ERROR,
    (name: *const c_char, n: c_int, out: *mut c_char) -> c_int);
forwarded!(dl_open, xDlOpen, null_mut(), (name: *const c_char) -> *mut c_void);
forwarded!(dl_error, xDlError, (), (n: c_int, out: *mut c_char) -> ());
forwarded!(dl_sym, xDlSym, None,
    (handle: *mut c_void, symbol: *const c_char) -> Option<DlSym>);
forwarded!(dl_close, xDlClose, (), (handle: *mut c_void) -> ());
forwarded!(randomness, xRandomness, 0, (n: c_int, out: *mut c_char) -> c_int);
forwarded!(sleep, xSleep, 0, (micros: c_int) -> c_int);
forwarded!(current_time, xCurrentTime, ffi::SQLITE_ERROR, (out: *mut f64) -> c_int);
forwarded!(get_last_error, xGetLastError, 0, (n: c_int, out: *mut c_char) -> c_int);
// This VFS's version is no higher than the wrapped one's, so the method exists where it is called.
forwarded!(current_time_int64, xCurrentTimeInt64, ffi::SQLITE_ERROR, (out: *mut i64) -> c_int);

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header; `commit` is the database's size after a commit, 0 for any other frame.
    fn header(page: u32, commit: u32) -> Vec<u8> {
        let mut h = vec![0u8; FRAME_HEADER];
        h[..4].copy_from_slice(&page.to_be_bytes());
        h[4..8].copy_from_slice(&commit.to_be_bytes());
        h
    }

    /// What reached the file: each write's offset and length.
    fn run(held: &mut Held, file: &mut Vec<(i64, usize)>, data: &[u8], offset: i64) -> c_int {
        held.write(data, offset, &mut |d, o| {
            file.push((o, d.len()));
            ffi::SQLITE_OK
        })
    }

    const PAGE: usize = 4096;
    const FRAME: i64 = (FRAME_HEADER + PAGE) as i64;

    #[test]
    fn a_commits_frames_go_in_one_write_with_the_commit_page() {
        let (mut held, mut file) = (Held::default(), Vec::new());
        let page = vec![7u8; PAGE];
        let mut at = 32;
        for (n, commit) in [(2, 0), (3, 0), (4, 9)] {
            run(&mut held, &mut file, &header(n, commit), at);
            assert!(
                file.is_empty(),
                "nothing written before the commit frame's page"
            );
            run(&mut held, &mut file, &page, at + FRAME_HEADER as i64);
            at += FRAME;
        }
        assert_eq!(file, vec![(32, 3 * FRAME as usize)]);
        assert!(held.bytes.is_empty() && !held.commit);
    }

    #[test]
    fn a_large_commit_goes_in_writes_the_wrapped_vfs_takes_whole() {
        let (mut held, mut file) = (Held::default(), Vec::new());
        let page = vec![5u8; PAGE];
        let mut at = 32;
        for n in 0..40u32 {
            run(
                &mut held,
                &mut file,
                &header(n + 2, if n == 39 { 50 } else { 0 }),
                at,
            );
            run(&mut held, &mut file, &page, at + FRAME_HEADER as i64);
            at += FRAME;
        }
        assert_eq!(
            file,
            vec![
                (32, MAX_WRITE),
                (32 + MAX_WRITE as i64, 40 * FRAME as usize - MAX_WRITE)
            ]
        );
    }

    #[test]
    fn a_lone_commit_frame_and_anything_not_following_a_header_go_at_once() {
        let (mut held, mut file) = (Held::default(), Vec::new());
        let page = vec![1u8; PAGE];
        // A one-page commit: nothing held to gather with.
        run(&mut held, &mut file, &header(5, 9), 32);
        run(&mut held, &mut file, &page, 32 + FRAME_HEADER as i64);
        // The WAL's own header, and a page overwritten in place by a later spill.
        run(&mut held, &mut file, &[0u8; 32], 0);
        run(&mut held, &mut file, &page, 1000);
        assert_eq!(file, vec![(32, 24), (56, PAGE), (0, 32), (1000, PAGE)]);
        assert!(held.bytes.is_empty());
    }

    #[test]
    fn checksums_rewritten_after_the_commit_leave_nothing_held_at_the_end() {
        // `walRewriteChecksums`: each frame read (which sends what is held), then its header
        // rewritten; the last one is the commit frame's.
        let (mut held, mut file) = (Held::default(), Vec::new());
        for (n, commit) in [(2, 0), (3, 0), (4, 9)] {
            assert_eq!(
                held.send(&mut |d, o| {
                    file.push((o, d.len()));
                    0
                }),
                0
            );
            run(
                &mut held,
                &mut file,
                &header(n, commit),
                32 + (n as i64 - 2) * FRAME,
            );
        }
        assert!(held.bytes.is_empty(), "the commit header is not held");
        assert_eq!(file, vec![(32, 24), (32 + FRAME, 24), (32 + 2 * FRAME, 24)]);
    }

    #[test]
    fn a_write_elsewhere_sends_what_is_held_first() {
        let (mut held, mut file) = (Held::default(), Vec::new());
        let page = vec![2u8; PAGE];
        // A spill of two frames, no commit: held.
        run(&mut held, &mut file, &header(2, 0), 32);
        run(&mut held, &mut file, &page, 56);
        run(&mut held, &mut file, &header(3, 0), 32 + FRAME);
        run(&mut held, &mut file, &page, 56 + FRAME);
        assert!(file.is_empty());
        // The transaction writes a page it spilled again, in place.
        run(&mut held, &mut file, &page, 56);
        assert_eq!(file, vec![(32, 2 * FRAME as usize), (56, PAGE)]);
    }

    #[test]
    fn a_failed_write_is_reported_and_drops_what_it_carried() {
        let mut held = Held::default();
        let page = vec![3u8; PAGE];
        let mut fail = |_: &[u8], _: i64| ffi::SQLITE_IOERR_WRITE;
        assert_eq!(held.write(&header(2, 0), 32, &mut fail), ffi::SQLITE_OK);
        assert_eq!(held.write(&page, 56, &mut fail), ffi::SQLITE_OK);
        assert_eq!(
            held.write(&header(3, 5), 32 + FRAME, &mut fail),
            ffi::SQLITE_OK
        );
        assert_eq!(
            held.write(&page, 56 + FRAME, &mut fail),
            ffi::SQLITE_IOERR_WRITE
        );
        assert!(held.bytes.is_empty() && !held.commit);
    }

    #[test]
    fn a_long_spill_is_written_before_it_grows_past_the_limit() {
        let (mut held, mut file) = (Held::default(), Vec::new());
        let page = vec![4u8; PAGE];
        let mut at = 32;
        let frames = MAX_HELD / FRAME as usize + 1;
        for n in 0..frames {
            run(&mut held, &mut file, &header(n as u32 + 2, 0), at);
            run(&mut held, &mut file, &page, at + FRAME_HEADER as i64);
            at += FRAME;
        }
        // All of it sent once it passed the limit, in writes the wrapped VFS takes whole.
        let sent: usize = file.iter().map(|w| w.1).sum();
        assert!(sent >= MAX_HELD && sent < MAX_HELD + FRAME as usize);
        assert!(file.iter().all(|w| w.1 <= MAX_WRITE));
        assert!(file.windows(2).all(|w| w[0].0 + w[0].1 as i64 == w[1].0));
        assert_eq!(file[0].0, 32);
    }
}
