//! Statements run through plans kept for the backend's life.
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};

thread_local! {
    /// Plans of the statements every changed ticket runs, kept for the
    /// backend's life: parsing and planning them cost more than running them
    /// for one ticket. PostgreSQL replans them when what they read changes
    /// (even a dropped and recreated extension).
    static PREPARED: RefCell<HashMap<String, Rc<OwnedPreparedStatement>>> =
        RefCell::new(HashMap::new());
}

/// Runs a statement through its kept plan, preparing it on first use with
/// the types of these arguments. The plan is generic, made without seeing
/// the arrays: write these statements so that it is linear in their length
/// (one probe per element), never with a filter like `= ANY($1)`, which a
/// generic plan checks row by row against the whole array.
pub fn run_kept<'conn>(
    client: &mut SpiClient<'conn>,
    query: &str,
    args: &[DatumWithOid],
) -> Result<SpiTupleTable<'conn>, pgrx::spi::Error> {
    let kept = PREPARED.with(|prepared| prepared.borrow().get(query).cloned());
    let statement = match kept {
        Some(statement) => statement,
        None => {
            let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
            let statement = Rc::new(client.prepare_mut(query, &types)?.keep());
            PREPARED.with(|prepared| {
                prepared
                    .borrow_mut()
                    .insert(query.to_owned(), Rc::clone(&statement))
            });
            statement
        }
    };
    // The plan does not depend on how many tickets come: a custom plan per
    // call would be planning all over again.
    let _generic = GenericPlans::force();
    client.update(&*statement, None, args)
}

/// While alive (unwinding included): generic plans, as `plan_cache_mode =
/// force_generic_plan` would without a GUC round trip, and plans of probes
/// by key or row address only. A plan is kept until `sla.clocks` changes; one
/// made while the table was nearly empty would otherwise scan or hash the
/// whole table for every ticket once it has grown.
struct GenericPlans {
    plan_cache_mode: std::ffi::c_int,
    seqscan: bool,
    hashjoin: bool,
    mergejoin: bool,
}

impl GenericPlans {
    fn force() -> Self {
        unsafe {
            let saved = GenericPlans {
                plan_cache_mode: pg_sys::plan_cache_mode,
                seqscan: pg_sys::enable_seqscan,
                hashjoin: pg_sys::enable_hashjoin,
                mergejoin: pg_sys::enable_mergejoin,
            };
            pg_sys::plan_cache_mode =
                pg_sys::PlanCacheMode::PLAN_CACHE_MODE_FORCE_GENERIC_PLAN as _;
            pg_sys::enable_seqscan = false;
            pg_sys::enable_hashjoin = false;
            pg_sys::enable_mergejoin = false;
            saved
        }
    }
}

impl Drop for GenericPlans {
    fn drop(&mut self) {
        unsafe {
            pg_sys::plan_cache_mode = self.plan_cache_mode;
            pg_sys::enable_seqscan = self.seqscan;
            pg_sys::enable_hashjoin = self.hashjoin;
            pg_sys::enable_mergejoin = self.mergejoin;
        }
    }
}
