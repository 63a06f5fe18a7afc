//! Due processing (`sla.process_due`): applies the SLA transitions whose
//! time has come (warnings, breaches, ownership releases) and writes each
//! notification once. The worker, tests and users all call this function.
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use sla_core::{apply_due, summarize, Clock, Metric, Micros, NotificationKind, Transition};

use crate::alerts;
use crate::configuration::{self, Configuration, TrackedTable};
use crate::convert::{required_instant, timestamptz, PG_EPOCH_OFFSET};
use crate::gucs;
use crate::identity::{acts_for_everyone, current_user};
use crate::regclass::RegClass;
use crate::store::clocks::{self, ClockChanges};
use crate::store::notifications::NotificationBatch;
use crate::store::tickets::{self, TicketUpdates};
use crate::subxact::{attempt, Failure};

/// Applies every SLA transition due at `now` (warnings, breaches, ownership
/// releases), writes their notifications once, and returns how many it
/// applied. Tickets an application holds locked are left for the next call.
#[pg_extern(volatile, parallel_unsafe)]
fn process_due(
    now: default!(TimestampWithTimeZone, "now()"),
    max_rows: default!(i32, 10000),
) -> i32 {
    let at = required_instant(now, "now");
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
            "sla.process_due must run in a READ COMMITTED transaction",
            "It skips tickets other sessions are changing and takes them on the next call, which a REPEATABLE READ or SERIALIZABLE snapshot cannot do."
        );
    }
    if max_rows < 1 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("max_rows must be at least 1, got {max_rows}")
        );
    }
    // Any other role acts at the present and on its own tables only: a role
    // granted due processing must not record breaches in the future, or
    // for tables it cannot read.
    let caller = current_user();
    let owned_by = (!acts_for_everyone(caller)).then_some(caller);
    if owned_by.is_some() {
        let present = unsafe { pg_sys::GetCurrentTimestamp() } + PG_EPOCH_OFFSET;
        let window = i64::try_from(gucs::worker_naptime().as_micros()).unwrap_or(i64::MAX);
        if at.abs_diff(present) > window.unsigned_abs() {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("sla.process_due: only superusers and the owner of pg_sla's tables may process another time than the present, got now => {now}"),
                "Other roles call it with now within pg_sla.naptime of clock_timestamp() (the default, now(), in a short transaction); sla.preview_due(at) shows what would fall due at any time and writes nothing."
            );
        }
    }
    let configuration = configuration::current();
    let held = held_tickets();
    // Tables locked whole by someone else, skipped for the rest of the call.
    let mut skipped_tables: Vec<pg_sys::Oid> = Vec::new();
    // Due clocks of tables not skipped: what `max_rows` bounds.
    let mut taken = 0;
    let mut applied = 0;
    loop {
        let due = clocks::due_tickets(now, max_rows - taken, &skipped_tables, &held, owned_by);
        let mut by_table: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let mut clocks_by_table: HashMap<u32, i32> = HashMap::new();
        let mut seen = HashSet::new();
        for (relid, id) in due {
            *clocks_by_table.entry(relid.to_u32()).or_default() += 1;
            if seen.insert((relid.to_u32(), id.clone())) {
                by_table.entry(relid.to_u32()).or_default().push(id);
            }
        }
        let mut skipped_a_table = false;
        for (relid, ids) in by_table {
            let relid = pg_sys::Oid::from(relid);
            let Some(table) = configuration.tracked.get(&relid) else {
                // Clocks of a table no longer tracked: nothing will process
                // them, so they must not hold places at the head of the due
                // index.
                clocks::unschedule_table(relid, true);
                continue;
            };
            let lockable = unsafe {
                pg_sys::ConditionalLockRelationOid(relid, pg_sys::RowExclusiveLock as i32)
            };
            if !lockable {
                // Someone holds (or waits for) a lock on the whole table:
                // never wait for it; the other tables' due tickets, fetched
                // again without it, come first meanwhile.
                skipped_tables.push(relid);
                skipped_a_table = true;
                continue;
            }
            taken += clocks_by_table.get(&relid.to_u32()).copied().unwrap_or(0);
            // Statements over a thousand keys at most, so that the planner
            // reaches rows through their keys and addresses.
            for chunk in ids.chunks(DUE_CHUNK) {
                applied += process_due_isolated(&configuration, table, chunk, at);
            }
        }
        if !skipped_a_table || taken >= max_rows {
            break;
        }
    }
    if applied > 0 || alerts_evaluated_long_ago() {
        if let Err(Failure { message, .. }) =
            attempt(|| alerts::evaluate(&configuration, at, owned_by))
        {
            let message = format!("pg_sla: breach alerts failed: {message}");
            pgrx::warning!("{message}");
            record_failure(message);
        }
    }
    applied
}

/// What due processing would do at `at`, without doing it: each transition
/// that would be applied to a clock of a table the caller may read, with
/// the time it belongs to. Writes nothing; any role may call it.
#[pg_extern(stable, parallel_unsafe)]
fn preview_due(
    at: default!(TimestampWithTimeZone, "now()"),
    max_rows: default!(i32, 1000),
) -> TableIterator<
    'static,
    (
        name!(ticket_table, RegClass),
        name!(ticket_id, String),
        name!(metric, String),
        name!(cycle, i32),
        name!(transition, String),
        name!(transition_at, TimestampWithTimeZone),
    ),
> {
    let when = required_instant(at, "at");
    if max_rows < 1 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("max_rows must be at least 1, got {max_rows}")
        );
    }
    let mut rows = Vec::new();
    for (relid, id, mut clock) in clocks::due_clocks_readable_by(at, max_rows, current_user()) {
        for transition in apply_due(&mut clock, when) {
            let time = match transition {
                Transition::DueSoon => clock.warned_at,
                Transition::Breached => clock.breached_at,
                Transition::OwnershipReleased => clock.released_at,
            };
            rows.push((
                RegClass(relid),
                id.clone(),
                clock.metric.as_str().to_owned(),
                clock.cycle,
                NotificationKind::from(transition).as_str().to_owned(),
                timestamptz(time.unwrap_or(when)),
            ));
        }
    }
    TableIterator::new(rows)
}

/// How long a ticket locked by someone else is left out of this session's
/// due processing, so that such tickets cannot hold the head of the due
/// queue. Nothing is written for them: their clocks are not locked.
const HELD_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// Bound on the tickets remembered as held, per session: the due query
/// leaves them out through a hashed NOT IN, which PostgreSQL plans only
/// when the list fits in `work_mem` (10,000 entries take well under 1 MB).
const HELD_LIMIT: usize = 10_000;

thread_local! {
    /// Tickets found locked by someone else, by table OID and id, until when
    /// they are left alone.
    static HELD: RefCell<HashMap<(u32, String), std::time::Instant>> = RefCell::new(HashMap::new());
    /// The failures `process_due` reported (and survived) in this backend
    /// since the worker last looked: how many, and the last one.
    static FAILURES: RefCell<(i64, Option<String>)> = const { RefCell::new((0, None)) };
    /// When this backend last evaluated the alert rules.
    static ALERTS_EVALUATED: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// The tickets still left alone after being found held, as (table, id).
fn held_tickets() -> Vec<(pg_sys::Oid, String)> {
    let now = std::time::Instant::now();
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        held.retain(|_, until| *until > now);
        held.keys()
            .map(|(relid, id)| (pg_sys::Oid::from(*relid), id.clone()))
            .collect()
    })
}

fn remember_held(relid: pg_sys::Oid, ids: Vec<String>) {
    let until = std::time::Instant::now() + HELD_RETRY;
    HELD.with(|held| {
        let mut held = held.borrow_mut();
        for id in ids {
            if held.len() >= HELD_LIMIT {
                break;
            }
            held.insert((relid.to_u32(), id), until);
        }
    });
}

fn record_failure(message: String) {
    FAILURES.with(|failures| {
        let mut failures = failures.borrow_mut();
        failures.0 += 1;
        failures.1 = Some(message);
    });
}

/// Takes the failures `process_due` reported in this backend: their number
/// and the last one.
pub fn take_failures() -> (i64, Option<String>) {
    FAILURES.with(|failures| std::mem::take(&mut *failures.borrow_mut()))
}

/// Alert counts change without transitions (a reply, a close): rules are
/// evaluated after every call that applied something, and otherwise at most
/// once a second per session, so that a worker ticking every few
/// milliseconds does not count breached tickets every time.
fn alerts_evaluated_long_ago() -> bool {
    let now = std::time::Instant::now();
    let due = ALERTS_EVALUATED.with(|last| {
        last.get()
            .is_none_or(|at| now.duration_since(at) >= std::time::Duration::from_secs(1))
    });
    if due {
        ALERTS_EVALUATED.with(|last| last.set(Some(now)));
    }
    due
}

/// Processes some tickets in a subtransaction. When that fails (a trigger
/// of the ticket table raised, say), retries them one by one, so that one
/// failing ticket is reported and stays due while the others move on.
fn process_due_isolated(
    configuration: &Configuration,
    table: &TrackedTable,
    ids: &[String],
    at: Micros,
) -> i32 {
    let one =
        |id: &String| attempt(|| process_due_tickets(configuration, table, vec![id.clone()], at));
    match attempt(|| process_due_tickets(configuration, table, ids.to_vec(), at)) {
        Ok(applied) => applied,
        Err(failure) if ids.len() == 1 => {
            report_failed_ticket(table, &ids[0], &failure);
            0
        }
        Err(_) => {
            let mut applied = 0;
            // Consecutive failures with one SQLSTATE: the table's problem
            // (a full tablespace, say) rather than each ticket's.
            let mut streak: Option<(i32, usize)> = None;
            for (i, id) in ids.iter().enumerate() {
                match one(id) {
                    Ok(n) => {
                        applied += n;
                        streak = None;
                    }
                    Err(failure) => {
                        report_failed_ticket(table, id, &failure);
                        let code = failure.code as i32;
                        let count = match streak {
                            Some((c, n)) if c == code => n + 1,
                            _ => 1,
                        };
                        streak = Some((code, count));
                        let rest = &ids[i + 1..];
                        if count >= SAME_FAILURE_LIMIT && !rest.is_empty() {
                            let message = format!(
                                "pg_sla: {} more due tickets of table {} are retried in a minute without being tried now: the last {count} failed with the same error: {}",
                                rest.len(),
                                table.name,
                                failure.message
                            );
                            pgrx::warning!("{message}");
                            record_failure(message);
                            clocks::postpone_tickets(table, rest, FAILED_RETRY);
                            break;
                        }
                    }
                }
            }
            applied
        }
    }
}

/// Consecutive same-SQLSTATE failures after which the rest of a batch is
/// postponed without being tried one by one.
const SAME_FAILURE_LIMIT: usize = 3;

/// Reports a ticket whose due processing failed, and leaves it for a minute.
fn report_failed_ticket(table: &TrackedTable, id: &str, failure: &Failure) {
    let message = format!(
        "pg_sla: due processing of ticket {id} of table {} failed, it stays due and is retried in a minute: {}",
        table.name, failure.message
    );
    pgrx::warning!("{message}");
    record_failure(message);
    clocks::postpone_tickets(table, &[id.to_owned()], FAILED_RETRY);
}

/// How long a ticket whose processing failed is left alone.
const FAILED_RETRY: &str = "1 minute";

/// Tickets handled per statement by `process_due`.
const DUE_CHUNK: usize = 1000;

/// Applies the due transitions of some tickets of one table; returns how
/// many it applied.
fn process_due_tickets(
    configuration: &Configuration,
    table: &TrackedTable,
    ids: Vec<String>,
    at: Micros,
) -> i32 {
    let relid = table.relid;
    // Lock order everywhere: the ticket row, then its clocks.
    let locked = tickets::lock_free(table, ids.clone());
    if locked.len() < ids.len() {
        // Tickets not locked are either held by someone else (left out of
        // this session's due processing for a second) or
        // gone without their clocks (deleted while triggers were off):
        // those clocks go too.
        let missing = tickets::missing(table, &ids);
        let taken: HashSet<&String> = locked.iter().map(|(_, id)| id).chain(&missing).collect();
        let held: Vec<String> = ids
            .iter()
            .filter(|id| !taken.contains(id))
            .cloned()
            .collect();
        remember_held(relid, held);
        if !missing.is_empty() {
            clocks::delete_tickets(table, missing);
        }
    }
    if locked.is_empty() {
        return 0;
    }
    let locked_ids: Vec<String> = locked.iter().map(|(_, id)| id.clone()).collect();
    let stored = clocks::read(table, &locked_ids, true);
    let mut applied = 0;
    let mut changes = ClockChanges::default();
    let mut notifications = NotificationBatch::default();
    let mut updates = TicketUpdates::default();
    for (ctid, id) in &locked {
        let Some(stored_clocks) = stored.get(id) else {
            continue;
        };
        let mut clocks: Vec<Clock> = stored_clocks.iter().map(|s| s.clock.clone()).collect();
        let mut release = false;
        let mut ticket_changed = false;
        for clock in clocks.iter_mut() {
            let transitions = apply_due(clock, at);
            if transitions.is_empty() {
                continue;
            }
            ticket_changed = true;
            let feedback = configuration
                .by_name
                .get(&clock.policy)
                .and_then(|p| p.feedback_message.clone());
            for transition in transitions {
                applied += 1;
                notifications.push(id, clock, transition, transition.into(), None);
                match transition {
                    Transition::OwnershipReleased => release = true,
                    Transition::DueSoon | Transition::Breached => {
                        if clock.metric != Metric::Resolution {
                            if let Some(message) = &feedback {
                                notifications.push(
                                    id,
                                    clock,
                                    transition,
                                    NotificationKind::CustomerFeedback,
                                    Some(message.clone()),
                                );
                            }
                        }
                    }
                }
            }
        }
        if ticket_changed {
            changes.add_ticket(id, stored_clocks, &clocks);
            updates.push(*ctid, None, &summarize(&clocks), release);
        }
    }
    changes.write_with_notifications(table, notifications, at);
    updates.write(table, false);
    applied
}
