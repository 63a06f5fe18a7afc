//! Invalidation of every per-backend cache of pg_sla's settings.
//!
//! Calendars, policies and tracked tables are cached per backend
//! (`calendar_cache`, `configuration`, `ticket_columns`, `identity`).
//! Triggers on pg_sla's tables send a relcache invalidation for the table
//! edited, which PostgreSQL delivers transactionally: to this backend at the
//! next command, to others once the edit commits (they see it at their next
//! statement, because the first lookup of each statement accepts pending
//! invalidations). Rolled-back edits are invalidated too. The callbacks here
//! only bump counters ("generations"); each cache compares the generation it
//! was built under with the current one.
use std::cell::{Cell, RefCell};

use pgrx::prelude::*;

/// When to look for invalidations again: a new client message (statement
/// start time), a new transaction within one (a procedure's COMMIT), or a new
/// snapshot that sees more commits (its xmax), as the next statement of a
/// multi-statement message or of a PL/pgSQL loop takes in READ COMMITTED.
/// An edit of a calendar commits a transaction, so it moves the xmax of every
/// later snapshot.
pub type StatementKey = (pg_sys::TimestampTz, u64, u32);

thread_local! {
    /// OIDs of the tables whose edits invalidate cached settings
    /// (`WatchedTable` order), learnt on their first read.
    static WATCHED: Cell<[pg_sys::Oid; 4]> = const { Cell::new([pg_sys::InvalidOid; 4]) };
    /// Tracked ticket tables: DDL on one (a rename, a column's type) makes
    /// the cached name, owner and column layout stale.
    static WATCHED_TICKET_TABLES: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    /// Bumped by invalidations of `sla.calendars` (calendar cache) and of
    /// the other settings (policies, tracked tables, ticket tables, schema
    /// names), kept apart so that an ANALYZE of a ticket table does not make
    /// every backend rebuild its calendars. The callbacks only touch these
    /// counters: they may run at any lock acquisition, so they must not
    /// depend on the cache being free to borrow.
    static CALENDAR_GENERATION: Cell<u64> = const { Cell::new(0) };
    static CONFIGURATION_GENERATION: Cell<u64> = const { Cell::new(0) };
    static TRANSACTIONS_ENDED: Cell<u64> = const { Cell::new(0) };
    static STATEMENT_SEEN: Cell<StatementKey> = const { Cell::new((0, 0, 0)) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let watched = WATCHED.with(Cell::get);
    let ticket_table = WATCHED_TICKET_TABLES.with(|tables| {
        // Borrowed only while the list is replaced; count that as a hit.
        tables
            .try_borrow()
            .map_or(true, |tables| tables.contains(&relid))
    });
    let bump = |counter: &'static std::thread::LocalKey<Cell<u64>>| {
        counter.with(|g| g.set(g.get() + 1));
    };
    // Until a table's OID is known, any invalidation may concern it.
    let everything = relid == pg_sys::InvalidOid || watched.contains(&pg_sys::InvalidOid);
    if everything || relid == watched[WatchedTable::Calendars as usize] {
        bump(&CALENDAR_GENERATION);
    }
    if everything || watched.contains(&relid) || ticket_table {
        bump(&CONFIGURATION_GENERATION);
    }
    if relid != pg_sys::InvalidOid && watched.contains(&relid) {
        // The table may be gone (DROP EXTENSION) and come back under a new
        // OID: forget it until its rows are read again, and meanwhile treat
        // every invalidation as one of its.
        WATCHED.with(|w| {
            w.set(watched.map(|oid| {
                if oid == relid {
                    pg_sys::InvalidOid
                } else {
                    oid
                }
            }))
        });
    }
}

/// A schema was renamed or dropped: cached qualified table names may be
/// stale.
#[pg_guard]
unsafe extern "C-unwind" fn on_namespace_change(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    CONFIGURATION_GENERATION.with(|g| g.set(g.get() + 1));
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT
            | XACT_EVENT_ABORT
            | XACT_EVENT_PREPARE
            | XACT_EVENT_PARALLEL_COMMIT
            | XACT_EVENT_PARALLEL_ABORT
    ) {
        TRANSACTIONS_ENDED.with(|t| t.set(t.get() + 1));
    }
}

fn register_callbacks() {
    if CALLBACKS_REGISTERED.with(Cell::get) {
        return;
    }
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(
            Some(on_relcache_invalidation),
            pg_sys::Datum::from(0),
        );
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(on_namespace_change),
            pg_sys::Datum::from(0),
        );
    }
    CALLBACKS_REGISTERED.with(|r| r.set(true));
}

/// Accepts invalidations that other sessions committed, once per statement
/// (see `StatementKey`); returns the statement's key.
pub fn catch_up_once_per_statement() -> StatementKey {
    let snapshot_xmax = unsafe {
        if pg_sys::ActiveSnapshotSet() {
            (*pg_sys::GetActiveSnapshot()).xmax.into_inner()
        } else {
            0
        }
    };
    let statement = (
        unsafe { pg_sys::GetCurrentStatementStartTimestamp() },
        TRANSACTIONS_ENDED.with(Cell::get),
        snapshot_xmax,
    );
    if STATEMENT_SEEN.with(|s| s.replace(statement)) != statement {
        unsafe { pg_sys::AcceptInvalidationMessages() };
    }
    statement
}

/// How many transactions this backend has ended: identifies the current one.
pub fn transactions_ended() -> u64 {
    register_callbacks();
    TRANSACTIONS_ENDED.with(Cell::get)
}

/// pg_sla's own tables whose rows are cached per backend.
#[derive(Clone, Copy)]
pub enum WatchedTable {
    Calendars = 0,
    Policies = 1,
    TrackedTables = 2,
    TrackedMessages = 3,
}

/// What to watch for a table a schema older than the library lacks: no
/// relation has OID 1, so nothing matches it.
pub const ABSENT_TABLE: pg_sys::Oid = pg_sys::Oid::from_u32(1);

/// Records the OID of one of our tables, read from a row's `tableoid`.
pub fn watch(table: WatchedTable, oid: pg_sys::Oid) {
    WATCHED.with(|watched| {
        let mut oids = watched.get();
        oids[table as usize] = oid;
        watched.set(oids);
    });
}

/// Records the tracked ticket tables whose DDL invalidates cached settings.
pub fn watch_ticket_tables(relids: Vec<pg_sys::Oid>) {
    WATCHED_TICKET_TABLES.with(|tables| *tables.borrow_mut() = relids);
}

/// The invalidation generation after catching up with other sessions'
/// commits (once per statement): caches of pg_sla's settings built under
/// another generation are stale.
pub fn configuration_generation() -> u64 {
    register_callbacks();
    catch_up_once_per_statement();
    CONFIGURATION_GENERATION.with(Cell::get)
}

/// The generation of calendar invalidations: the calendar cache built under
/// another one is stale. Does not catch up with other sessions by itself.
pub fn calendar_generation() -> u64 {
    CALENDAR_GENERATION.with(Cell::get)
}

/// Makes sure the callbacks are registered (once per backend).
pub fn ensure_registered() {
    register_callbacks();
}

/// The statement key remembered in the call site's `fn_extra`, computed
/// (with a catch-up) on its first call.
pub unsafe fn statement_of_call(fcinfo: pg_sys::FunctionCallInfo) -> StatementKey {
    let flinfo = if fcinfo.is_null() {
        std::ptr::null_mut()
    } else {
        unsafe { (*fcinfo).flinfo }
    };
    if flinfo.is_null() {
        return catch_up_once_per_statement();
    }
    unsafe {
        let remembered = (*flinfo).fn_extra.cast::<StatementKey>();
        if !remembered.is_null() {
            return *remembered;
        }
        let statement = catch_up_once_per_statement();
        // palloc'd memory is MAXALIGN'd, enough for the key.
        let slot = pg_sys::MemoryContextAlloc((*flinfo).fn_mcxt, size_of::<StatementKey>())
            .cast::<StatementKey>();
        slot.write(statement);
        (*flinfo).fn_extra = slot.cast();
        statement
    }
}

/// Trigger on `sla.calendars`, `sla.policies`, `sla.tracked_tables` and
/// `sla.tracked_messages`: tells
/// every backend's caches that settings changed. Delivered to other sessions
/// only if this transaction commits.
#[pg_trigger]
fn catalog_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::trigger_support::PgTriggerError>
{
    let relid = trigger.relid()?;
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    Ok(None)
}
