//! Per-backend cache of parsed calendars, and the invalidation of every
//! cached setting (calendars, policies, tracked tables).
//!
//! Calendars looked up by name are parsed once per backend and kept until
//! `sla.calendars` changes. Triggers on that table send a relcache
//! invalidation for it, which PostgreSQL delivers transactionally: to this
//! backend at the next command, to others once the edit commits (they see it
//! at their next statement, because the first lookup of each statement
//! accepts pending invalidations). Rolled-back edits are invalidated too.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use sla_core::Calendar;

use crate::catalog;
use crate::convert::or_raise;
use crate::jsonb_arg::JsonbArg;

/// Inline definitions (the jsonb variants) kept before the cache starts over.
const MAX_INLINE_DEFINITIONS: usize = 64;

#[derive(Default)]
struct Cache {
    /// The calendar looked up last: a query usually names one calendar for
    /// all its rows, so this skips hashing the name on the per-row path.
    last: Option<(String, Rc<Calendar>)>,
    by_name: HashMap<String, Rc<Calendar>>,
    /// Entries filled in parallel mode, where only the statement's snapshot
    /// is available: valid for that statement only.
    statement_local: HashMap<String, Rc<Calendar>>,
    /// Inline definitions by their binary jsonb value, and the last one used.
    by_definition: HashMap<Vec<u8>, Rc<Calendar>>,
    last_definition: Option<(Vec<u8>, Rc<Calendar>)>,
    /// The invalidation generation and the statement the entries belong to.
    generation: u64,
    statement: StatementKey,
}

impl Cache {
    /// Drops what the callbacks have invalidated since the last look, and
    /// the statement-local entries of earlier statements.
    fn refresh(&mut self, statement: StatementKey) {
        let generation = GENERATION.with(Cell::get);
        if self.generation != generation {
            self.by_name.clear();
            self.statement_local.clear();
            self.last = None;
            self.generation = generation;
        }
        if self.statement != statement {
            if !self.statement_local.is_empty() {
                self.statement_local.clear();
                self.last = None;
            }
            self.statement = statement;
        }
    }
}

/// When to look for invalidations again: a new client message (statement
/// start time), a new transaction within one (a procedure's COMMIT), or a new
/// snapshot that sees more commits (its xmax), as the next statement of a
/// multi-statement message or of a PL/pgSQL loop takes in READ COMMITTED.
/// An edit of a calendar commits a transaction, so it moves the xmax of every
/// later snapshot.
type StatementKey = (pg_sys::TimestampTz, u64, u32);

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    /// OIDs of the tables whose edits invalidate cached settings
    /// (`WatchedTable` order), learnt on their first read.
    static WATCHED: Cell<[pg_sys::Oid; 3]> = const { Cell::new([pg_sys::InvalidOid; 3]) };
    /// Tracked ticket tables: DDL on one (a rename, a column's type) makes
    /// the cached name, owner and column layout stale.
    static WATCHED_TICKET_TABLES: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    /// Bumped by invalidations of `sla.calendars` (calendar cache) and of
    /// the other settings (policies, tracked tables, ticket tables, schema
    /// names), kept apart so that an ANALYZE of a ticket table does not make
    /// every backend rebuild its calendars. The callbacks only touch these
    /// counters: they may run at any lock acquisition, so they must not
    /// depend on the cache being free to borrow.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static SETTINGS_GENERATION: Cell<u64> = const { Cell::new(0) };
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
        bump(&GENERATION);
    }
    if everything || watched.contains(&relid) || ticket_table {
        bump(&SETTINGS_GENERATION);
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
    SETTINGS_GENERATION.with(|g| g.set(g.get() + 1));
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
fn catch_up_once_per_statement() -> StatementKey {
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
}

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
pub fn settings_generation() -> u64 {
    register_callbacks();
    catch_up_once_per_statement();
    SETTINGS_GENERATION.with(Cell::get)
}

/// The calendar named `name`, or an error 42704 naming it.
pub fn by_name(name: &str) -> Rc<Calendar> {
    lookup(name, catch_up_once_per_statement())
}

/// The same, for a scalar function called through `fcinfo`: the catch-up
/// runs on the first call of each call site in each execution, found by an
/// empty `fn_extra` (the executor builds a fresh `FmgrInfo` per execution),
/// rather than on every row. Not for set-returning functions, whose
/// `fn_extra` pgrx uses.
pub fn by_name_for_call(name: &str, fcinfo: pg_sys::FunctionCallInfo) -> Rc<Calendar> {
    lookup(name, unsafe { statement_of_call(fcinfo) })
}

/// The statement key remembered in the call site's `fn_extra`, computed
/// (with a catch-up) on its first call.
unsafe fn statement_of_call(fcinfo: pg_sys::FunctionCallInfo) -> StatementKey {
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

fn lookup(name: &str, statement: StatementKey) -> Rc<Calendar> {
    register_callbacks();
    let cached = CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        cache.refresh(statement);
        if let Some((last_name, calendar)) = &cache.last {
            if last_name == name {
                return Some(Rc::clone(calendar));
            }
        }
        let found = cache
            .by_name
            .get(name)
            .or_else(|| cache.statement_local.get(name))
            .cloned()?;
        cache.last = Some((name.to_owned(), Rc::clone(&found)));
        Some(found)
    });
    cached.unwrap_or_else(|| load(name, statement))
}

fn load(name: &str, statement: StatementKey) -> Rc<Calendar> {
    let generation = GENERATION.with(Cell::get);
    // Outside parallel mode read the latest committed state (as catalog
    // lookups do), so the entry stays right until the next invalidation.
    // Parallel mode cannot take a new snapshot: the statement's snapshot may
    // predate an edit whose invalidation was just accepted, so that entry
    // serves this statement only.
    let parallel = unsafe { pg_sys::IsInParallelMode() };
    let row = if parallel {
        catalog::read_calendar(name)
    } else {
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
        let row = catalog::read_calendar(name);
        unsafe { pg_sys::PopActiveSnapshot() };
        row
    };
    let Some(row) = row else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("calendar \"{name}\" does not exist"),
            "Calendars are rows of sla.calendars; create one with INSERT INTO sla.calendars (name, definition)."
        );
    };
    watch(WatchedTable::Calendars, row.table_oid);
    let calendar = Rc::new(or_raise(Calendar::parse(&row.definition), Some(name)));
    if GENERATION.with(Cell::get) == generation {
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            cache.refresh(statement);
            let map = if parallel {
                &mut cache.statement_local
            } else {
                &mut cache.by_name
            };
            map.insert(name.to_owned(), Rc::clone(&calendar));
        });
    }
    calendar
}

/// A calendar given inline as a definition (the jsonb variants). A query
/// usually passes one definition for all its rows: comparing its bytes with
/// the last one is the per-row cost.
pub fn by_definition(definition: &JsonbArg) -> Rc<Calendar> {
    let key = definition.bytes();
    let cached = CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((last_key, calendar)) = &cache.last_definition {
            if last_key.as_slice() == key {
                return Some(Rc::clone(calendar));
            }
        }
        let found = cache.by_definition.get(key).cloned()?;
        cache.last_definition = Some((key.to_vec(), Rc::clone(&found)));
        Some(found)
    });
    if let Some(calendar) = cached {
        return calendar;
    }
    let calendar = Rc::new(or_raise(Calendar::parse(&definition.to_text()), None));
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.by_definition.len() >= MAX_INLINE_DEFINITIONS {
            cache.by_definition.clear();
        }
        cache
            .by_definition
            .insert(key.to_vec(), Rc::clone(&calendar));
        cache.last_definition = Some((key.to_vec(), Rc::clone(&calendar)));
    });
    calendar
}

/// Trigger on `sla.calendars`, `sla.policies` and `sla.tracked_tables`: tells
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
