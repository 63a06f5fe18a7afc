//! Per-backend cache of policies and tracked tables.
//!
//! Ticket triggers consult both for every row, so they are read once and kept
//! until `sla.policies` or `sla.tracked_tables` changes (the same relcache
//! invalidation as calendars, see `calendar_cache`).
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::datum::Interval;
use pgrx::prelude::*;
use sla_core::policy::{parse_conditions, Condition};
use sla_core::{Calendar, Hours, Micros, Targets};

use crate::calendar_cache::{self, settings_generation, watch, WatchedTable};
use crate::convert::duration;
use crate::security::as_sla_owner;
use crate::tickets::Columns;

pub struct Policy {
    pub name: String,
    pub calendar: Option<String>,
    pub conditions: Vec<Condition>,
    pub targets: Targets,
    pub feedback_message: Option<String>,
    pub pause_statuses: Vec<String>,
    pub enabled: bool,
}

impl Policy {
    /// The calendar the policy's clocks run on; `None` is 24/7.
    pub fn calendar(&self) -> Option<Rc<Calendar>> {
        self.calendar.as_deref().map(calendar_cache::by_name)
    }
}

/// Business time of an optional calendar.
pub fn hours(calendar: &Option<Rc<Calendar>>) -> Hours<'_> {
    match calendar {
        Some(calendar) => Hours::Calendar(calendar),
        None => Hours::AlwaysOpen,
    }
}

/// A tracked ticket table and how its columns map.
pub struct TrackedTable {
    pub relid: pg_sys::Oid,
    /// The table's name, qualified and quoted, for dynamic SQL.
    pub name: String,
    pub owner: pg_sys::Oid,
    pub id_column: String,
    /// The id column's type as SQL, to cast text ids back for index lookups.
    pub id_type: String,
    pub created_at_column: String,
    pub status_column: String,
    pub closed_statuses: Vec<String>,
    pub customer_message_at_column: String,
    pub agent_reply_at_column: String,
    pub assignee_column: Option<String>,
    /// Attribute numbers, resolved against the table's row type on first use.
    pub columns: RefCell<Option<Rc<Columns>>>,
}

impl TrackedTable {
    pub fn is_closed(&self, status: Option<&str>) -> bool {
        status.is_some_and(|s| self.closed_statuses.iter().any(|c| c == s))
    }
}

pub struct Settings {
    generation: u64,
    /// Enabled policies in evaluation order.
    pub ordered: Vec<Rc<Policy>>,
    pub by_name: HashMap<String, Rc<Policy>>,
    pub tracked: HashMap<pg_sys::Oid, Rc<TrackedTable>>,
    /// Every column some policy's conditions read.
    pub condition_columns: Vec<String>,
}

impl Settings {
    /// Whether both settings give every ticket the same policy and the same
    /// deadlines: same enabled policies in the same order, with the same
    /// conditions, calendars, targets and pause statuses.
    pub fn same_matching_and_targets(&self, other: &Settings) -> bool {
        self.ordered.len() == other.ordered.len()
            && self.ordered.iter().zip(&other.ordered).all(|(a, b)| {
                a.name == b.name
                    && a.calendar == b.calendar
                    && a.conditions == b.conditions
                    && a.targets == b.targets
                    && a.pause_statuses == b.pause_statuses
            })
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Settings>>> = const { RefCell::new(None) };
}

/// The settings as of the latest commit (and this transaction's own edits).
pub fn current() -> Rc<Settings> {
    let generation = settings_generation();
    let cached = CURRENT.with(|c| c.borrow().clone());
    if let Some(settings) = cached {
        if settings.generation == generation {
            return settings;
        }
    }
    let settings = Rc::new(load(generation));
    CURRENT.with(|c| *c.borrow_mut() = Some(Rc::clone(&settings)));
    settings
}

/// The cached settings, if the cache is still current (no invalidation
/// delivered since it was read).
pub fn cached() -> Option<Rc<Settings>> {
    let generation = settings_generation();
    CURRENT
        .with(|c| c.borrow().clone())
        .filter(|settings| settings.generation == generation)
}

fn load(generation: u64) -> Settings {
    // Read the latest committed state, as catalog lookups do, so that the
    // cache stays right until the next invalidation.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let (policies, tracked) = as_sla_owner(|| {
        Spi::connect(|client| {
            let mut policies = Vec::new();
            let rows = client.select(
                "SELECT name, calendar, conditions::text, first_response, next_response, resolution,
                        warn_at, release_ownership_at, feedback_message, pause_statuses, enabled,
                        tableoid
                   FROM sla.policies ORDER BY position, name",
                None,
                &[],
            )?;
            for row in rows {
                let name: String = row.get(1)?.unwrap_or_default();
                let conditions_text: String = row.get(3)?.unwrap_or_else(|| "{}".into());
                let conditions = serde_json::from_str(&conditions_text)
                    .map_err(|e| e.to_string())
                    .and_then(|value| parse_conditions(&value))
                    .unwrap_or_else(|message| {
                        ereport!(
                            ERROR,
                            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                            format!("policy \"{name}\": {message}")
                        );
                    });
                let target = |i: usize, field: &str| -> Result<Option<Micros>, pgrx::spi::Error> {
                    Ok(row.get::<Interval>(i)?.map(|v| duration(v, field)))
                };
                let targets = Targets {
                    first_response: target(4, "first_response")?,
                    next_response: target(5, "next_response")?,
                    resolution: target(6, "resolution")?,
                    warn_at: row.get::<f64>(7)?,
                    release_ownership_at: row.get::<f64>(8)?,
                };
                policies.push(Policy {
                    name,
                    calendar: row.get(2)?,
                    conditions,
                    targets,
                    feedback_message: row.get(9)?,
                    pause_statuses: row
                        .get::<Vec<Option<String>>>(10)?
                        .unwrap_or_default()
                        .into_iter()
                        .flatten()
                        .collect(),
                    enabled: row.get(11)?.unwrap_or(false),
                });
                if let Some(oid) = row.get::<pg_sys::Oid>(12)? {
                    watch(WatchedTable::Policies, oid);
                }
            }
            let mut tracked = Vec::new();
            let rows = client.select(
                "SELECT t.ticket_table::oid, t.ticket_table::text, c.relowner,
                        t.id_column::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
                        t.created_at_column::text, t.status_column::text, t.closed_statuses,
                        t.customer_message_at_column::text, t.agent_reply_at_column::text,
                        t.assignee_column::text, t.tableoid
                   FROM sla.tracked_tables t
                   JOIN pg_catalog.pg_class c ON c.oid = t.ticket_table
                   LEFT JOIN pg_catalog.pg_attribute a
                          ON a.attrelid = t.ticket_table AND a.attname = t.id_column
                         AND NOT a.attisdropped",
                None,
                &[],
            )?;
            for row in rows {
                let text = |i: usize| -> Result<String, pgrx::spi::Error> {
                    Ok(row.get::<String>(i)?.unwrap_or_default())
                };
                tracked.push(TrackedTable {
                    relid: row.get(1)?.unwrap_or(pg_sys::InvalidOid),
                    name: text(2)?,
                    owner: row.get(3)?.unwrap_or(pg_sys::InvalidOid),
                    id_column: text(4)?,
                    id_type: text(5)?,
                    created_at_column: text(6)?,
                    status_column: text(7)?,
                    closed_statuses: row
                        .get::<Vec<Option<String>>>(8)?
                        .unwrap_or_default()
                        .into_iter()
                        .flatten()
                        .collect(),
                    customer_message_at_column: text(9)?,
                    agent_reply_at_column: text(10)?,
                    assignee_column: row.get(11)?,
                    columns: RefCell::new(None),
                });
                if let Some(oid) = row.get::<pg_sys::Oid>(12)? {
                    watch(WatchedTable::TrackedTables, oid);
                }
            }
            Ok::<_, pgrx::spi::Error>((policies, tracked))
        })
    })
    .unwrap_or_else(|e| pgrx::error!("pg_sla could not read its settings: {e}"));
    unsafe { pg_sys::PopActiveSnapshot() };

    let mut condition_columns: Vec<String> = policies
        .iter()
        .flat_map(|p| p.conditions.iter().map(|c| c.column.clone()))
        .collect();
    condition_columns.sort();
    condition_columns.dedup();
    calendar_cache::watch_ticket_tables(tracked.iter().map(|t| t.relid).collect());
    let policies: Vec<Rc<Policy>> = policies.into_iter().map(Rc::new).collect();
    Settings {
        generation,
        ordered: policies.iter().filter(|p| p.enabled).cloned().collect(),
        by_name: policies
            .iter()
            .map(|p| (p.name.clone(), Rc::clone(p)))
            .collect(),
        tracked: tracked.into_iter().map(|t| (t.relid, Rc::new(t))).collect(),
        condition_columns,
    }
}
