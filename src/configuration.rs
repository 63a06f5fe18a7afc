//! Per-backend cache of pg_sla's configuration: the policies, the tracked
//! tables and the tracked messages tables (rows of `sla.policies`,
//! `sla.tracked_tables` and `sla.tracked_messages`).
//!
//! Ticket triggers consult both for every row, so they are read once and kept
//! until either table, a tracked table's definition or a schema name changes
//! (see `invalidation`).
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Deref;
use std::rc::Rc;

use pgrx::prelude::*;
use sla_core::policy::{parse_conditions_text, Condition, Policy, PolicyOrder};
use sla_core::{Calendar, Hours};

use crate::calendar_cache;
use crate::invalidation::{
    configuration_generation, watch, watch_ticket_tables, WatchedTable, ABSENT_TABLE,
};
use crate::store;
use crate::store::tracked_messages::MessagesTable;
use crate::store::tracked_tables::TicketTable;
use crate::ticket_columns::Columns;

/// A tracked ticket table: its mapping, and its columns' attribute numbers
/// once resolved against its row type (`ticket_columns::columns_for`).
pub struct TrackedTable {
    pub table: TicketTable,
    pub columns: RefCell<Vec<Rc<Columns>>>,
}

impl Deref for TrackedTable {
    type Target = TicketTable;

    fn deref(&self) -> &TicketTable {
        &self.table
    }
}

/// The calendar a policy's clocks run on: its own, or 24/7 when it has none.
pub fn policy_calendar(policy: &Policy) -> Option<Rc<Calendar>> {
    policy.calendar.as_deref().map(calendar_cache::by_name)
}

/// Business time of an optional calendar.
pub fn hours(calendar: &Option<Rc<Calendar>>) -> Hours<'_> {
    match calendar {
        Some(calendar) => Hours::Calendar(calendar),
        None => Hours::AlwaysOpen,
    }
}

pub struct Configuration {
    generation: u64,
    /// Enabled policies in the order they are tried.
    pub policies: PolicyOrder<Rc<Policy>>,
    /// Every policy, enabled or not: clocks keep the policy they started
    /// under.
    pub by_name: HashMap<String, Rc<Policy>>,
    pub tracked: HashMap<pg_sys::Oid, Rc<TrackedTable>>,
    /// Every column some policy's conditions read.
    pub condition_columns: Vec<String>,
    /// Tracked messages tables, by OID.
    pub messages: HashMap<pg_sys::Oid, Rc<TrackedMessages>>,
}

/// A tracked messages table: its mapping, and its conditions parsed.
pub struct TrackedMessages {
    pub table: MessagesTable,
    pub customer_message: Vec<Condition>,
    pub agent_reply: Vec<Condition>,
}

impl Configuration {
    /// Whether both give every ticket the same policy and the same
    /// deadlines: same enabled policies in the same order, with the same
    /// conditions, calendars, targets, pause statuses and tables.
    pub fn same_matching_and_targets(&self, other: &Configuration) -> bool {
        let (ours, theirs) = (self.policies.as_slice(), other.policies.as_slice());
        ours.len() == theirs.len()
            && ours.iter().zip(theirs).all(|(a, b)| {
                a.name == b.name
                    && a.calendar == b.calendar
                    && a.conditions == b.conditions
                    && a.targets == b.targets
                    && a.pause_statuses == b.pause_statuses
                    && a.tables == b.tables
            })
    }

    pub fn tracked(&self, relid: pg_sys::Oid) -> Option<Rc<TrackedTable>> {
        self.tracked.get(&relid).cloned()
    }

    /// The tracked table whose tickets `relation` holds: the relation
    /// itself, or the nearest tracked partitioned table a partition (at any
    /// level) belongs to.
    pub fn tracked_relation(&self, relation: pg_sys::Relation) -> Option<Rc<TrackedTable>> {
        let (relid, is_partition) =
            unsafe { ((*relation).rd_id, (*(*relation).rd_rel).relispartition) };
        if let Some(table) = self.tracked(relid) {
            return Some(table);
        }
        if !is_partition || !self.tracked.values().any(|t| t.partitioned) {
            return None;
        }
        let ancestors =
            PARTITION_ANCESTORS.with(|cache| {
                let mut cache = cache.borrow_mut();
                if cache.0 != self.generation {
                    *cache = (self.generation, HashMap::new());
                }
                Rc::clone(cache.1.entry(relid).or_insert_with(|| {
                    Rc::new(store::ticket_definitions::partition_ancestors(relid))
                }))
            });
        ancestors
            .iter()
            .find_map(|ancestor| self.tracked(*ancestor))
            .filter(|table| table.partitioned)
    }

    /// Whether a messages table drives this ticket table's replies.
    pub fn has_messages(&self, ticket_table: pg_sys::Oid) -> bool {
        self.messages
            .values()
            .any(|m| m.table.ticket_table == ticket_table)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Configuration>>> = const { RefCell::new(None) };
    /// The partitioned tables each partition looked up belongs to, nearest
    /// first, for the configuration generation they were read in: attaching
    /// or detaching a partition invalidates its partitioned table, which a
    /// tracked one is watched for. (A partition moved between two
    /// partitions of a tracked table by other sessions is seen at their
    /// next change of settings.)
    #[allow(clippy::type_complexity)]
    static PARTITION_ANCESTORS: RefCell<(u64, HashMap<pg_sys::Oid, Rc<Vec<pg_sys::Oid>>>)> =
        RefCell::new((0, HashMap::new()));
}

/// The configuration as of the latest commit (and this transaction's own
/// edits).
pub fn current() -> Rc<Configuration> {
    let generation = configuration_generation();
    let cached = CURRENT.with(|c| c.borrow().clone());
    if let Some(configuration) = cached {
        if configuration.generation == generation {
            return configuration;
        }
    }
    let configuration = Rc::new(load(generation));
    CURRENT.with(|c| *c.borrow_mut() = Some(Rc::clone(&configuration)));
    configuration
}

/// The cached configuration, if the cache is still current (no invalidation
/// delivered since it was read).
pub fn cached() -> Option<Rc<Configuration>> {
    let generation = configuration_generation();
    CURRENT
        .with(|c| c.borrow().clone())
        .filter(|configuration| configuration.generation == generation)
}

fn load(generation: u64) -> Configuration {
    // Read the latest committed state, as catalog lookups do, so that the
    // cache stays right until the next invalidation.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let (policies, policies_oid) = store::policies::read_all();
    let (tracked, tracked_oid) = store::tracked_tables::read_all();
    let (messages, messages_oid) = store::tracked_messages::read_all();
    unsafe { pg_sys::PopActiveSnapshot() };
    watch(
        WatchedTable::TrackedMessages,
        messages_oid.unwrap_or(ABSENT_TABLE),
    );
    if let Some(oid) = policies_oid {
        watch(WatchedTable::Policies, oid);
    }
    if let Some(oid) = tracked_oid {
        watch(WatchedTable::TrackedTables, oid);
    }

    let mut condition_columns: Vec<String> = policies
        .iter()
        .flat_map(|p| p.conditions.iter().map(|c| c.column.clone()))
        .collect();
    condition_columns.sort();
    condition_columns.dedup();
    watch_ticket_tables(
        tracked
            .iter()
            .map(|t| t.relid)
            .chain(messages.iter().map(|m| m.relid))
            .collect(),
    );
    let messages = messages
        .into_iter()
        .map(|table| {
            let parse = |text: &str, field: &str| {
                parse_conditions_text(text).unwrap_or_else(|message| {
                    ereport!(
                        ERROR,
                        pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        format!("messages table {}: {field}: {message}", table.name)
                    );
                })
            };
            let customer_message = parse(&table.customer_message, "customer_message");
            let agent_reply = parse(&table.agent_reply, "agent_reply");
            (
                table.relid,
                Rc::new(TrackedMessages {
                    table,
                    customer_message,
                    agent_reply,
                }),
            )
        })
        .collect();
    let policies: Vec<Rc<Policy>> = policies.into_iter().map(Rc::new).collect();
    Configuration {
        generation,
        by_name: policies
            .iter()
            .map(|p| (p.name.clone(), Rc::clone(p)))
            .collect(),
        policies: PolicyOrder::new(policies),
        tracked: tracked
            .into_iter()
            .map(|table| {
                (
                    table.relid,
                    Rc::new(TrackedTable {
                        table,
                        columns: RefCell::new(Vec::new()),
                    }),
                )
            })
            .collect(),
        condition_columns,
        messages,
    }
}
