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
use crate::store::pending_ticket_updates::{self, FailedUpdate};
use crate::store::tickets::{self, TicketUpdates};
use crate::store::tracked_messages;
use crate::subxact::{attempt, Failure};
use crate::time_budget::{self, TIMEOUT_MESSAGE};

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
        // The present: from the transaction's start (`now()`) to the clock,
        // give or take a nap (a second at least, a minute at most).
        let started = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() } + PG_EPOCH_OFFSET;
        let clock = unsafe { pg_sys::GetCurrentTimestamp() } + PG_EPOCH_OFFSET;
        let slack = gucs::worker_naptime().clamp(PRESENT_SLACK_MIN, PRESENT_SLACK_MAX);
        let slack = i64::try_from(slack.as_micros()).unwrap_or(i64::MAX);
        if at < started.saturating_sub(slack) || at > clock.saturating_add(slack) {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("sla.process_due: only superusers and the owner of pg_sla's tables may process another time than the present, got now => {now}"),
                "Other roles call it with now between the transaction's start and clock_timestamp(), give or take pg_sla.naptime (1 s to 1 min), which the default, now(), is; sla.preview_due(at) shows what would fall due at any time and writes nothing."
            );
        }
    }
    let configuration = configuration::current();
    let held = held_tickets();
    // Tables locked whole by someone else, skipped for the rest of the call.
    let mut skipped_tables: Vec<pg_sys::Oid> = Vec::new();
    // Tables whose triggers ran out of their time budget lately: their
    // transitions are recorded and notified, and their rows left for
    // later, without running their triggers again.
    let mut slow: HashSet<u32> = slow_tables().iter().map(|t| t.to_u32()).collect();
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
                let write_rows = !slow.contains(&relid.to_u32());
                let outcome = process_due_isolated(&configuration, table, chunk, at, write_rows);
                applied += outcome.applied;
                if outcome.slow {
                    // Its rows are left alone for a while: a table whose
                    // triggers hang costs the others one budget a while,
                    // however many of its tickets fall due.
                    remember_slow(relid);
                    slow.insert(relid.to_u32());
                }
            }
        }
        if !skipped_a_table || taken >= max_rows {
            break;
        }
    }
    // Nothing that runs a slow table's triggers.
    skipped_tables.extend(slow.iter().map(|t| pg_sys::Oid::from(*t)));
    retry_pending_updates(&configuration, &skipped_tables, owned_by);
    apply_early_messages(&configuration, &skipped_tables, owned_by);
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

/// How far from the present a role that is not a superuser or the owner of
/// pg_sla's tables may process: `pg_sla.naptime`, within these bounds.
const PRESENT_SLACK_MIN: std::time::Duration = std::time::Duration::from_secs(1);
const PRESENT_SLACK_MAX: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// The time budget of each attempt at a table's due tickets, which the
    /// worker sets: none for other callers.
    static TABLE_BUDGET: std::cell::Cell<Option<std::time::Duration>> =
        const { std::cell::Cell::new(None) };
    /// Where the last look at early messages stopped, as (table, id).
    static EARLY_CURSOR: RefCell<Option<(pg_sys::Oid, String)>> = const { RefCell::new(None) };
    /// Tables whose due processing ran out of its budget lately, until
    /// when the worker leaves them alone.
    static SLOW: RefCell<HashMap<u32, std::time::Instant>> = RefCell::new(HashMap::new());
}

/// Gives each attempt at a table's due tickets a time budget (the worker
/// does), or none.
pub fn set_table_budget(budget: Option<std::time::Duration>) {
    TABLE_BUDGET.with(|b| b.set(budget));
}

fn table_budget() -> Option<std::time::Duration> {
    TABLE_BUDGET.with(std::cell::Cell::get)
}

/// How long a table that ran out of its budget is left alone, as a failed
/// ticket is.
const SLOW_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The tables left alone, for having run out of their time budget.
fn slow_tables() -> Vec<pg_sys::Oid> {
    let now = std::time::Instant::now();
    SLOW.with(|slow| {
        let mut slow = slow.borrow_mut();
        slow.retain(|_, until| *until > now);
        slow.keys().map(|relid| pg_sys::Oid::from(*relid)).collect()
    })
}

fn remember_slow(relid: pg_sys::Oid) {
    SLOW.with(|slow| {
        slow.borrow_mut()
            .insert(relid.to_u32(), std::time::Instant::now() + SLOW_FOR)
    });
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

/// What became of some due tickets of one table.
#[derive(Default)]
struct Outcome {
    applied: i32,
    /// An attempt ran out of its time budget: the table's triggers are too
    /// slow (or hang), and the table is left alone for a while.
    slow: bool,
}

/// Time a batch is allowed per ticket on top of the table budget, so that
/// a large healthy batch is not cut (a ticket takes well under it).
const BUDGET_PER_TICKET: std::time::Duration = std::time::Duration::from_millis(2);

/// Runs one attempt at `tickets` tickets under the table budget, when the
/// worker set one: the budget, plus `BUDGET_PER_TICKET` a ticket.
fn attempt_within_budget<R>(tickets: usize, f: impl FnOnce() -> R) -> Result<R, Failure> {
    let _budget = table_budget().map(|budget| {
        let per_ticket =
            BUDGET_PER_TICKET.saturating_mul(u32::try_from(tickets).unwrap_or(u32::MAX));
        time_budget::arm(budget.saturating_add(per_ticket))
    });
    attempt(f)
}

/// Processes some tickets in a subtransaction. When that fails (their
/// clocks cannot be read or written, say), retries them one by one, so
/// that one failing ticket is reported and stays due while the others move
/// on. A ticket row that cannot be updated does not fail it: see
/// `write_ticket_rows`. When
/// one ticket runs out of its time budget, the table is left alone instead.
fn process_due_isolated(
    configuration: &Configuration,
    table: &TrackedTable,
    ids: &[String],
    at: Micros,
    write_rows: bool,
) -> Outcome {
    let one = |id: &String| {
        attempt_within_budget(1, || {
            process_due_tickets(configuration, table, vec![id.clone()], at, write_rows)
        })
    };
    let whole = attempt_within_budget(ids.len(), || {
        process_due_tickets(configuration, table, ids.to_vec(), at, write_rows)
    });
    match whole {
        Ok(outcome) => outcome,
        // A single ticket over its budget: the table's triggers hang, or
        // take longer than a ticket ever should. Several tickets over
        // theirs may just be many: they are tried one by one below.
        Err(failure) if failure.budget_ran_out && ids.len() == 1 => {
            report_slow_table(table, ids.len());
            Outcome {
                applied: 0,
                slow: true,
            }
        }
        Err(failure) if ids.len() == 1 => {
            report_failed_ticket(table, &ids[0], &failure);
            Outcome::default()
        }
        Err(_) => {
            let mut outcome = Outcome::default();
            let mut streak = SameFailures::default();
            for (i, id) in ids.iter().enumerate() {
                match one(id) {
                    Ok(done) => {
                        outcome.applied += done.applied;
                        streak.succeeded();
                        if done.slow {
                            outcome.slow = true;
                            break;
                        }
                    }
                    Err(failure) if failure.budget_ran_out => {
                        report_slow_table(table, ids.len() - i);
                        outcome.slow = true;
                        break;
                    }
                    Err(failure) => {
                        report_failed_ticket(table, id, &failure);
                        let count = streak.failed(&failure);
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
            outcome
        }
    }
}

/// Reports a table whose due processing ran out of its time budget; the
/// worker leaves it alone for `SLOW_FOR`.
fn report_slow_table(table: &TrackedTable, due: usize) {
    let budget = table_budget().unwrap_or_default().as_millis();
    let message = format!(
        "pg_sla: due processing of table {} ran out of its time budget of {budget} ms (its triggers are slow or hang); its {due} due tickets and the rest of the table are left for {} s while the other tables go on",
        table.name,
        SLOW_FOR.as_secs()
    );
    pgrx::warning!("{message}");
    record_failure(message);
}

/// Consecutive failures with one SQLSTATE, when tickets are tried one by
/// one: the table's problem (a full tablespace, say) rather than each
/// ticket's, once there are `SAME_FAILURE_LIMIT` of them.
#[derive(Default)]
struct SameFailures(Option<(i32, usize)>);

impl SameFailures {
    fn succeeded(&mut self) {
        self.0 = None;
    }

    /// Counts a failure; returns how many in a row had its SQLSTATE.
    fn failed(&mut self, failure: &Failure) -> usize {
        let code = failure.code as i32;
        let count = match self.0 {
            Some((c, n)) if c == code => n + 1,
            _ => 1,
        };
        self.0 = Some((code, count));
        count
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

/// Applies the due transitions of some tickets of one table: how many it
/// applied, and whether writing the ticket rows ran out of time. Without
/// `write_rows` (a slow table's), the rows are kept for later instead.
fn process_due_tickets(
    configuration: &Configuration,
    table: &TrackedTable,
    ids: Vec<String>,
    at: Micros,
    write_rows: bool,
) -> Outcome {
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
        return Outcome::default();
    }
    let locked_ids: Vec<String> = locked.iter().map(|(_, id)| id.clone()).collect();
    let stored = clocks::read(table, &locked_ids, true);
    let mut applied = 0;
    let mut changes = ClockChanges::default();
    let mut notifications = NotificationBatch::default();
    let mut updates = TicketUpdates::default();
    let mut updated_ids = Vec::new();
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
            updated_ids.push(id.clone());
        }
    }
    // The record first: the transitions and their notifications stand even
    // when the ticket rows cannot be updated.
    changes.write_with_notifications(table, notifications, at);
    if !write_rows {
        defer_ticket_rows(table, updated_ids, updates);
        return Outcome {
            applied,
            slow: false,
        };
    }
    Outcome {
        applied,
        slow: write_ticket_rows(table, updated_ids, updates),
    }
}

/// Keeps a slow table's ticket rows for later, without trying them (their
/// triggers ran out of time lately): their transitions are recorded.
fn defer_ticket_rows(table: &TrackedTable, ids: Vec<String>, updates: TicketUpdates) {
    // A table without SLA columns only ever owes releases.
    if ids.is_empty() || (!table.sla_columns && !updates.releases().iter().any(|r| *r)) {
        return;
    }
    let releases = updates.releases().to_vec();
    let assignees = if releases.iter().any(|r| *r) {
        updates.assignees(table)
    } else {
        vec![None; ids.len()]
    };
    let deferred = ids
        .into_iter()
        .zip(releases)
        .zip(assignees)
        .map(|((ticket_id, release_ownership), assignee)| FailedUpdate {
            ticket_id,
            release_ownership,
            assignee,
            sqlstate: "57014".to_owned(),
            error: "not tried: the table's triggers ran out of their time budget lately".to_owned(),
        })
        .collect();
    pending_ticket_updates::record(table, deferred, FAILED_RETRY);
}

/// Writes some tickets' SLA columns (and releases their assignees) after
/// their transitions were recorded, in subtransactions of their own: a
/// ticket whose row cannot be updated (a trigger of the application
/// raised, a NOT NULL assignee refused the release) is reported with its
/// SQLSTATE and kept in `sla.pending_ticket_updates`, retried on its own
/// later; its transition is not undone and never notified again. Returns
/// whether the time budget ran out (the table's triggers hang).
fn write_ticket_rows(table: &TrackedTable, ids: Vec<String>, updates: TicketUpdates) -> bool {
    if ids.is_empty() {
        return false;
    }
    let releases = updates.releases().to_vec();
    let released = |done: &[(usize, &String)]| -> Vec<String> {
        done.iter()
            .filter(|(i, _)| releases[*i])
            .map(|(_, id)| (*id).clone())
            .collect()
    };
    let whole = attempt(|| updates.clone().write(table, false));
    let failure = match whole {
        Ok(()) => {
            let done: Vec<(usize, &String)> = ids.iter().enumerate().collect();
            pending_ticket_updates::forget(table, &ids, Some(&released(&done)));
            return false;
        }
        Err(failure) => failure,
    };
    // Who the tickets whose release failed are assigned to now: a retry
    // releases only a ticket nobody reassigned meanwhile.
    let assignees = if releases.iter().any(|r| *r) {
        updates.assignees(table)
    } else {
        vec![None; ids.len()]
    };
    let failed_update = |i: usize, failure: &Failure| FailedUpdate {
        ticket_id: ids[i].clone(),
        release_ownership: releases[i],
        assignee: assignees[i].clone(),
        sqlstate: failure.sqlstate(),
        error: failure.error().to_owned(),
    };
    if failure.budget_ran_out {
        if ids.len() > 1 {
            // Many rows may just be many: failing the whole attempt makes
            // the caller try its tickets one by one, each with a budget of
            // its own, as for any batch over its budget.
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                format!(
                    "{TIMEOUT_MESSAGE}: the rows of {} tickets of table {} took longer than their time budget",
                    ids.len(),
                    table.name
                )
            );
        }
        report_slow_table(table, ids.len());
        let failed = (0..ids.len()).map(|i| failed_update(i, &failure)).collect();
        pending_ticket_updates::record(table, failed, FAILED_RETRY);
        return true;
    }
    // One by one, so that one ticket's failure does not keep the others'
    // rows behind.
    let mut done: Vec<(usize, &String)> = Vec::new();
    let mut failed = Vec::new();
    let mut slow = false;
    let mut streak = SameFailures::default();
    let singles = updates.split();
    for (i, single) in singles.into_iter().enumerate() {
        let failure = match attempt(|| single.write(table, false)) {
            Ok(()) => {
                done.push((i, &ids[i]));
                streak.succeeded();
                continue;
            }
            Err(failure) => failure,
        };
        if failure.budget_ran_out {
            report_slow_table(table, ids.len() - i);
            failed.extend((i..ids.len()).map(|j| failed_update(j, &failure)));
            slow = true;
            break;
        }
        report_failed_row(table, &ids[i], releases[i], &failure);
        failed.push(failed_update(i, &failure));
        let count = streak.failed(&failure);
        let rest = i + 1..ids.len();
        if count >= SAME_FAILURE_LIMIT && !rest.is_empty() {
            let message = format!(
                "pg_sla: {} more tickets of table {} had their transitions recorded and notified but their rows are updated in a minute without being tried now: the last {count} failed with the same error: {}",
                rest.len(),
                table.name,
                failure.message
            );
            pgrx::warning!("{message}");
            record_failure(message);
            failed.extend(rest.map(|j| failed_update(j, &failure)));
            break;
        }
    }
    let done_ids: Vec<String> = done.iter().map(|(_, id)| (*id).clone()).collect();
    if !done_ids.is_empty() {
        pending_ticket_updates::forget(table, &done_ids, Some(&released(&done)));
    }
    pending_ticket_updates::record(table, failed, FAILED_RETRY);
    slow
}

/// Reports a ticket whose transitions were recorded but whose row could
/// not be updated.
fn report_failed_row(table: &TrackedTable, id: &str, release: bool, failure: &Failure) {
    let what = if release {
        "its SLA columns and the release of its assignee"
    } else {
        "its SLA columns"
    };
    let message = format!(
        "pg_sla: ticket {id} of table {}: its transitions are recorded and notified, but updating {what} failed and is retried in a minute: {}",
        table.name, failure.message
    );
    pgrx::warning!("{message}");
    record_failure(message);
}

/// Tickets whose early messages are looked at per call of `process_due`.
const EARLY_BATCH: i32 = 1000;

/// Applies the messages kept for tickets that exist now: written before
/// their ticket in a transaction that committed after the ticket's insert
/// had looked for them, or that failed to apply when written.
fn apply_early_messages(
    configuration: &Configuration,
    skipped_tables: &[pg_sys::Oid],
    owned_by: Option<pg_sys::Oid>,
) {
    // Early messages come from messages tables only.
    if configuration.messages.is_empty() {
        return;
    }
    // Where the last call stopped: the next takes the following tickets,
    // and starts over once it reaches the end.
    let after = EARLY_CURSOR.with(|c| c.borrow().clone());
    let early = tracked_messages::early_tickets(EARLY_BATCH, skipped_tables, owned_by, after);
    let next = (early.len() == EARLY_BATCH as usize)
        .then(|| early.last().cloned())
        .flatten();
    EARLY_CURSOR.with(|c| *c.borrow_mut() = next);
    let mut by_table: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (relid, id) in early {
        by_table.entry(relid.to_u32()).or_default().push(id);
    }
    for (relid, ids) in by_table {
        let relid = pg_sys::Oid::from(relid);
        let Some(table) = configuration.tracked.get(&relid) else {
            continue;
        };
        let applied = attempt_within_budget(ids.len(), || {
            let missing: HashSet<String> = tickets::missing(table, &ids).into_iter().collect();
            let present: Vec<String> = ids.into_iter().filter(|id| !missing.contains(id)).collect();
            if !present.is_empty() {
                crate::messages::apply_early(table, &present);
            }
        });
        if let Err(failure) = applied {
            if failure.budget_ran_out {
                remember_slow(relid);
            }
            let message = format!(
                "pg_sla: applying early messages of table {} failed: {}",
                table.name, failure.message
            );
            pgrx::warning!("{message}");
            record_failure(message);
        }
    }
}

/// Pending ticket row updates retried per call of `process_due`.
const PENDING_BATCH: i32 = 1000;

/// Retries the ticket row updates that failed earlier and whose retry time
/// has come: each ticket's SLA columns as its clocks say now, and the
/// release of its assignee when the clock that released it is still open
/// and nobody reassigned the ticket (an agent who answered since, a closed
/// or reassigned ticket, keeps its assignee).
fn retry_pending_updates(
    configuration: &Configuration,
    skipped_tables: &[pg_sys::Oid],
    owned_by: Option<pg_sys::Oid>,
) {
    let mut by_table: BTreeMap<u32, Vec<Pending>> = BTreeMap::new();
    for (relid, id, release, assignee) in
        pending_ticket_updates::due(PENDING_BATCH, skipped_tables, owned_by)
    {
        by_table
            .entry(relid.to_u32())
            .or_default()
            .push((id, release, assignee));
    }
    for (relid, pending) in by_table {
        let relid = pg_sys::Oid::from(relid);
        // Untracked tables' rows went with their `sla.tracked_tables` row.
        let Some(table) = configuration.tracked.get(&relid) else {
            continue;
        };
        if !unsafe { pg_sys::ConditionalLockRelationOid(relid, pg_sys::RowExclusiveLock as i32) } {
            continue;
        }
        // One by one, each with a budget: one row whose trigger hangs must
        // not keep the others of its table from being retried; all of them
        // together within one budget a call.
        let started = std::time::Instant::now();
        for one in pending.chunks(1) {
            if table_budget().is_some_and(|budget| started.elapsed() > budget) {
                break;
            }
            let retried = attempt_within_budget(1, || retry_table_updates(table, one));
            let slow = match retried {
                Ok(slow) => slow,
                Err(failure) => {
                    let message = format!(
                        "pg_sla: retrying the failed ticket row updates of table {} failed: {}",
                        table.name, failure.message
                    );
                    pgrx::warning!("{message}");
                    record_failure(message);
                    failure.budget_ran_out
                }
            };
            if slow {
                remember_slow(relid);
                break;
            }
        }
    }
}

/// A pending row update: ticket id, release still owed, the assignee then.
type Pending = (String, bool, Option<String>);

/// Retries one table's pending row updates; returns whether its time
/// budget ran out.
fn retry_table_updates(table: &TrackedTable, pending: &[Pending]) -> bool {
    let ids: Vec<String> = pending.iter().map(|(id, _, _)| id.clone()).collect();
    let locked = tickets::lock_free(table, ids.clone());
    let missing = tickets::missing(table, &ids);
    if !missing.is_empty() {
        pending_ticket_updates::forget(table, &missing, None);
    }
    if locked.is_empty() {
        return false;
    }
    let owes_release: HashMap<&String, bool> = pending.iter().map(|(id, r, _)| (id, *r)).collect();
    let assignee_then: HashMap<&String, &Option<String>> =
        pending.iter().map(|(id, _, a)| (id, a)).collect();
    let locked_ids: Vec<String> = locked.iter().map(|(_, id)| id.clone()).collect();
    let stored = clocks::read(table, &locked_ids, true);
    let mut updates = TicketUpdates::default();
    let mut updated_ids = Vec::new();
    for (ctid, id) in &locked {
        let clocks: Vec<Clock> = stored
            .get(id)
            .map(|s| s.iter().map(|s| s.clock.clone()).collect())
            .unwrap_or_default();
        let release = owes_release.get(id).copied().unwrap_or(false)
            && clocks
                .iter()
                .any(|c| c.released_at.is_some() && c.is_open());
        updates.push(*ctid, None, &summarize(&clocks), release);
        if release {
            updates.guard_last_release(assignee_then.get(id).and_then(|a| (*a).clone()));
        }
        updated_ids.push(id.clone());
    }
    // A release no longer owed is done with.
    let moot: Vec<String> = updated_ids
        .iter()
        .zip(updates.releases())
        .filter(|(id, release)| !**release && owes_release.get(id).copied().unwrap_or(false))
        .map(|(id, _)| id.clone())
        .collect();
    pending_ticket_updates::release_no_longer_owed(table, &moot);
    write_ticket_rows(table, updated_ids, updates)
}
