//! Per-backend cache of parsed calendars.
//!
//! Calendars looked up by name are parsed once per backend and kept until
//! `sla.calendars` changes (see `invalidation`); inline definitions (the
//! jsonb variants) are kept by their bytes.
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use sla_core::Calendar;

use crate::convert::or_raise;
use crate::invalidation::{
    calendar_generation, catch_up_once_per_statement, ensure_registered, statement_of_call, watch,
    StatementKey, WatchedTable,
};
use crate::jsonb_arg::JsonbArg;
use crate::store;

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
        let generation = calendar_generation();
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

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
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

fn lookup(name: &str, statement: StatementKey) -> Rc<Calendar> {
    ensure_registered();
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
    let generation = calendar_generation();
    // Outside parallel mode read the latest committed state (as catalog
    // lookups do), so the entry stays right until the next invalidation.
    // Parallel mode cannot take a new snapshot: the statement's snapshot may
    // predate an edit whose invalidation was just accepted, so that entry
    // serves this statement only.
    let parallel = unsafe { pg_sys::IsInParallelMode() };
    let row = if parallel {
        store::calendars::read(name)
    } else {
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
        let row = store::calendars::read(name);
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
    if calendar_generation() == generation {
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
