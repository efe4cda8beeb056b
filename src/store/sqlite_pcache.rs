//! SQLite's own page cache, without the walk of every cached page that followed most commits.
//!
//! When a transaction ends, SQLite drops the cached pages past the end of the database
//! (`pcache1Truncate`). Its cache finds them by looking at the hash slots between the file's end
//! and the largest page number it has held since the last such drop; when that span is wider than
//! the hash table, it walks the whole table instead, every cached page. A B-tree balance that puts
//! new pages in order parks one of them for a moment under the pending-byte page's number
//! (`balance_nonroot`; page 262,145 with 4 KiB pages), so in any database under 1 GiB the next
//! commit after such a balance walked all the cache: up to 8,192 pages with the appender's
//! 32 MiB, on the pipeline writer's path. In the users scenario at 8,000 changes/s that walk was
//! 6% of the writer's time on a new database and 15% after ~70,000 more rows (40% of the commit),
//! the cache having filled (docs/benchmarks.md, "What session 25 tried").
//!
//! This wraps SQLite's own cache (`SQLITE_CONFIG_GETPCACHE2`) and changes one thing: a drop that
//! cannot find anything — no page parked, and no page ever made at or past the limit — is not
//! passed on. Eviction, memory accounting and every other call are SQLite's. A drop that may find
//! something (after a rolled-back growth of the file, say) is passed on as before, walk included.
//!
//! SQLite takes a page cache only before it starts (`sqlite3_config` refuses afterwards), so
//! [`install`] runs before the process opens its first database: every opening in Chex goes
//! through it first.

use std::ffi::{c_int, c_uint};
use std::ptr::null_mut;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// SQLite's `PENDING_BYTE`: the byte whose page is never used for data, and whose number a
/// balance borrows to park a page.
const PENDING_BYTE: u32 = 0x4000_0000;

/// Drops passed on to SQLite's cache since the process started.
pub static PASSED_ON: AtomicU64 = AtomicU64::new(0);
/// Drops skipped since the process started: each one a walk of the cache saved, or a look at a
/// few of its slots.
pub static SKIPPED: AtomicU64 = AtomicU64::new(0);

/// SQLite's own methods, saved by [`install`]. The struct holds raw pointers; SQLite's functions
/// and their argument are global and live as long as the process.
struct Methods(ffi::sqlite3_pcache_methods2);
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}

static SQLITES: OnceLock<Methods> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Puts the wrapper in place if SQLite has not started in this process yet; true if it is in
/// use. Every call after the first returns the first one's answer, so the callers that open
/// databases can all call it first without racing one another.
pub fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        // SAFETY: `sqlite3_config` is called before any other SQLite call of this process that
        // would start it (the callers' contract), and refuses (`SQLITE_MISUSE`) if SQLite has
        // started anyway; the struct handed to it is copied by SQLite.
        let installed = unsafe { install_now() };
        if !installed {
            tracing::debug!("SQLite had started before its page cache could be wrapped");
        }
        installed
    })
}

unsafe fn install_now() -> bool {
    // SAFETY (of the block): see `install`.
    unsafe {
        let mut own: ffi::sqlite3_pcache_methods2 = std::mem::zeroed();
        if ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_GETPCACHE2,
            &mut own as *mut ffi::sqlite3_pcache_methods2,
        ) != ffi::SQLITE_OK
        {
            return false;
        }
        let complete = own.xCreate.is_some()
            && own.xCachesize.is_some()
            && own.xPagecount.is_some()
            && own.xFetch.is_some()
            && own.xUnpin.is_some()
            && own.xRekey.is_some()
            && own.xTruncate.is_some()
            && own.xDestroy.is_some();
        if !complete || SQLITES.set(Methods(own)).is_err() {
            return false;
        }
        let wrapped = ffi::sqlite3_pcache_methods2 {
            iVersion: own.iVersion,
            pArg: own.pArg,
            xInit: own.xInit,
            xShutdown: own.xShutdown,
            xCreate: Some(create),
            xCachesize: Some(cachesize),
            xPagecount: Some(pagecount),
            xFetch: Some(fetch),
            xUnpin: Some(unpin),
            xRekey: Some(rekey),
            xTruncate: Some(truncate),
            xDestroy: Some(destroy),
            xShrink: own.xShrink.map(|_| shrink as unsafe extern "C" fn(_)),
        };
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_PCACHE2,
            &wrapped as *const ffi::sqlite3_pcache_methods2,
        ) == ffi::SQLITE_OK
    }
}

/// What the wrapper knows of one cache's page numbers: enough to tell a drop that cannot find
/// anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bounds {
    /// The pending-byte page's number, where a balance parks a page.
    parking: c_uint,
    /// Pages parked there, as far as the wrapper saw: at least as many as there are.
    parked: u32,
    /// No page at or past this plus one was made or moved to (parking apart) since the last
    /// drop passed on.
    top: c_uint,
}

impl Bounds {
    fn new(page_size: c_int) -> Bounds {
        let parking = match u32::try_from(page_size) {
            Ok(size) if size > 0 => PENDING_BYTE / size + 1,
            _ => 0,
        };
        Bounds {
            parking,
            parked: 0,
            top: 0,
        }
    }

    /// A page is made (or looked up, and made if absent) under `key`.
    fn made(&mut self, key: c_uint) {
        if key == self.parking {
            self.parked += 1;
        } else {
            self.top = self.top.max(key);
        }
    }

    /// A page moves from `old` to `new`.
    fn moved(&mut self, old: c_uint, new: c_uint) {
        if old == self.parking {
            self.parked = self.parked.saturating_sub(1);
        }
        self.made(new);
    }

    /// Whether a drop of every page from `limit` on must be passed on; if so, what is known
    /// after it.
    fn drop_from(&mut self, limit: c_uint) -> bool {
        if self.parked == 0 && self.top < limit {
            return false;
        }
        if limit <= self.parking {
            self.parked = 0;
        }
        self.top = self.top.min(limit.saturating_sub(1));
        true
    }
}

/// One cache: SQLite's, and what the wrapper knows of it.
struct Cache {
    sqlites: *mut ffi::sqlite3_pcache,
    bounds: Bounds,
}

/// SQLite's methods. Only the wrapper's methods call this, and SQLite calls those only once
/// [`install_now`] has saved its own.
fn sqlites() -> &'static ffi::sqlite3_pcache_methods2 {
    match SQLITES.get() {
        Some(m) => &m.0,
        None => std::process::abort(),
    }
}

/// Calls one of SQLite's methods, checked present by [`install_now`].
macro_rules! sqlite {
    ($method:ident($($arg:expr),*)) => {
        match sqlites().$method {
            Some(f) => f($($arg),*),
            None => std::process::abort(),
        }
    };
}

/// SAFETY (of every method below): SQLite passes back the pointer [`create`] returned, and calls
/// one cache's methods from one thread at a time (a cache belongs to one connection's pager).
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    unsafe { &mut *p.cast::<Cache>() }
}

unsafe extern "C" fn create(
    page_size: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let sqlites = unsafe { sqlite!(xCreate(page_size, extra, purgeable)) };
    if sqlites.is_null() {
        return null_mut();
    }
    let cache = Cache {
        sqlites,
        bounds: Bounds::new(page_size),
    };
    Box::into_raw(Box::new(cache)).cast()
}

unsafe extern "C" fn cachesize(p: *mut ffi::sqlite3_pcache, pages: c_int) {
    unsafe { sqlite!(xCachesize(cache(p).sqlites, pages)) }
}

unsafe extern "C" fn pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    unsafe { sqlite!(xPagecount(cache(p).sqlites)) }
}

unsafe extern "C" fn fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let c = unsafe { cache(p) };
    if create != 0 {
        c.bounds.made(key);
    }
    unsafe { sqlite!(xFetch(c.sqlites, key, create)) }
}

unsafe extern "C" fn unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    unsafe { sqlite!(xUnpin(cache(p).sqlites, page, discard)) }
}

unsafe extern "C" fn rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let c = unsafe { cache(p) };
    c.bounds.moved(old, new);
    unsafe { sqlite!(xRekey(c.sqlites, page, old, new)) }
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let c = unsafe { cache(p) };
    if c.bounds.drop_from(limit) {
        PASSED_ON.fetch_add(1, Ordering::Relaxed);
        unsafe { sqlite!(xTruncate(c.sqlites, limit)) }
    } else {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    let c = unsafe { Box::from_raw(p.cast::<Cache>()) };
    unsafe { sqlite!(xDestroy(c.sqlites)) }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    unsafe { sqlite!(xShrink(cache(p).sqlites)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Page numbers with 4 KiB pages: the parking place is 262,145.
    fn four_k() -> Bounds {
        Bounds::new(4096)
    }

    #[test]
    fn the_parking_place_is_the_pending_byte_page() {
        assert_eq!(four_k().parking, 262_145);
        assert_eq!(Bounds::new(65_536).parking, 16_385);
        assert_eq!(Bounds::new(0).parking, 0);
    }

    #[test]
    fn a_commit_after_a_balance_that_parked_a_page_drops_nothing_and_is_skipped() {
        let mut b = four_k();
        for page in 1..=3_000 {
            b.made(page);
        }
        // balance_nonroot swaps pages 2,000 and 1,500 through the parking place.
        b.moved(2_000, b.parking);
        b.moved(1_500, 2_000);
        b.moved(b.parking, 1_500);
        assert!(!b.drop_from(3_001), "nothing can be cached past page 3,000");
    }

    #[test]
    fn a_page_still_parked_makes_the_drop_go_through() {
        let mut b = four_k();
        b.made(10);
        b.moved(7, b.parking);
        assert!(b.drop_from(11));
        // Dropped with everything from 11 on: the next commit is skipped again.
        assert!(!b.drop_from(11));
    }

    #[test]
    fn a_rolled_back_growth_is_dropped() {
        let mut b = four_k();
        for page in 1..=100 {
            b.made(page);
        }
        assert!(!b.drop_from(101));
        // A transaction grows the file to 140 pages, then rolls back to 100.
        for page in 101..=140 {
            b.made(page);
        }
        assert!(b.drop_from(101), "pages 101..=140 are cached and must go");
        assert!(!b.drop_from(101));
        // A page moved past the end (autovacuum's relocation) counts like a new one.
        b.moved(50, 120);
        assert!(b.drop_from(101));
    }

    #[test]
    fn clearing_the_cache_goes_through_whatever_was_made() {
        let mut b = four_k();
        b.made(1);
        assert!(b.drop_from(1));
        assert!(!b.drop_from(1), "nothing was made since");
        assert!(!b.drop_from(2));
    }
}
