//! Breach alerts: after due processing, counts each rule's breached open
//! tickets and sends one `breach_alert` per crossing of its threshold.
use std::collections::{BTreeMap, HashMap};

use pgrx::prelude::*;
use sla_core::{alert_step, AlertStep, Micros};

use crate::configuration::{Configuration, TrackedTable};
use crate::identity::has_privileges_of;
use crate::store::alert_rules::{self, AlertRule};
use crate::store::{clocks, tickets};
use crate::subxact::{attempt, Failure};

/// Breached open tickets of one table: in all, and per recipient when the
/// table maps an assignee column.
struct TableCount {
    all: i64,
    by_assignee: Option<HashMap<String, i64>>,
}

impl TableCount {
    fn for_rule(&self, rule: &AlertRule) -> i64 {
        match &self.by_assignee {
            Some(counts) if !rule.every_assignee => {
                counts.get(&rule.recipient).copied().unwrap_or(0)
            }
            _ => self.all,
        }
    }
}

/// Evaluates every enabled alert rule, or with `owned_by` only the rules
/// about one table that role owns. Returns how many alerts it sent.
pub fn evaluate(configuration: &Configuration, at: Micros, owned_by: Option<pg_sys::Oid>) -> i32 {
    let mut rules = alert_rules::enabled();
    if let Some(role) = owned_by {
        rules.retain(|rule| {
            rule.table
                .and_then(|relid| configuration.tracked(relid))
                .is_some_and(|table| has_privileges_of(role, table.owner))
        });
    }
    if rules.is_empty() {
        return 0;
    }
    let every_table = rules.iter().any(|rule| rule.table.is_none());
    let mut counts: BTreeMap<u32, Option<TableCount>> = BTreeMap::new();
    for table in configuration.tracked.values() {
        let in_scope = every_table || rules.iter().any(|r| r.table == Some(table.relid));
        if !in_scope {
            continue;
        }
        let recipients: Vec<String> = rules
            .iter()
            .filter(|r| !r.every_assignee && (r.table.is_none() || r.table == Some(table.relid)))
            .map(|r| r.recipient.clone())
            .collect();
        counts.insert(table.relid.to_u32(), count_table(table, &recipients));
    }
    let mut sent = 0;
    'rules: for rule in &rules {
        let mut breached = 0i64;
        for (relid, count) in &counts {
            if rule.table.is_some_and(|t| t.to_u32() != *relid) {
                continue;
            }
            // A table that could not be counted leaves its rules as they were.
            let Some(count) = count else { continue 'rules };
            breached += count.for_rule(rule);
        }
        let breached = i32::try_from(breached).unwrap_or(i32::MAX);
        let step = alert_step(i64::from(breached), rule.min_breached, rule.alerting);
        if step == AlertStep::Stay && rule.breached_count == Some(breached) {
            continue;
        }
        let alerting = match step {
            AlertStep::Fire => true,
            AlertStep::Rearm => false,
            AlertStep::Stay => rule.alerting,
        };
        let fire = step == AlertStep::Fire;
        if alert_rules::update(rule, alerting, breached, fire, at) && fire {
            sent += 1;
        }
    }
    sent
}

/// Counts one table's breached open tickets, or `None` (with a warning) when
/// the table cannot be read, e.g. its assignee column was dropped.
fn count_table(table: &TrackedTable, recipients: &[String]) -> Option<TableCount> {
    let lockable =
        unsafe { pg_sys::ConditionalLockRelationOid(table.relid, pg_sys::AccessShareLock as i32) };
    if !lockable {
        // Someone holds the whole table: never wait, count it next time.
        return None;
    }
    let result = attempt(|| {
        let ids = clocks::breached_open_tickets(table);
        let by_assignee = match &table.assignee_column {
            Some(column) if !ids.is_empty() => {
                Some(tickets::count_by_assignee(table, column, &ids, recipients))
            }
            Some(_) => Some(HashMap::new()),
            None => None,
        };
        TableCount {
            all: ids.len() as i64,
            by_assignee,
        }
    });
    match result {
        Ok(count) => Some(count),
        Err(Failure { message, .. }) => {
            pgrx::warning!(
                "pg_sla: breach alerts could not count the breached tickets of table {}: {message}",
                table.name
            );
            None
        }
    }
}
