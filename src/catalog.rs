//! Every read of pg_sla's own tables goes through here.
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiHeapTupleData, SpiTupleTable};
use sla_core::{Clock, ClockStatus, Metric, Micros, Summary};

use crate::convert::{duration, finite_instant, interval, timestamptz};
use crate::settings::TrackedTable;

/// A calendar row: its definition as JSON text and the OID of the table it
/// came from (for cache invalidation).
pub struct CalendarRow {
    pub definition: String,
    pub table_oid: pg_sys::Oid,
}

/// Reads a calendar by name using the snapshot that is active now.
pub fn read_calendar(name: &str) -> Option<CalendarRow> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT definition::text, tableoid FROM sla.calendars WHERE name OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[name.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let row = rows.first();
        Ok(Some(CalendarRow {
            definition: row.get::<String>(1)?.unwrap_or_default(),
            table_oid: row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
        }))
    })
    .unwrap_or_else(|e| pgrx::error!("pg_sla could not read sla.calendars: {e}"))
}

// ---------------------------------------------------------------------------
// Clocks and notifications. Callers run these as the owner of pg_sla's
// tables (`security::as_sla_owner`).

/// Columns of `sla.clocks` after `ticket_table`, in the order read.
const CLOCK_COLUMNS: &str = "c.ticket_id, c.metric, c.cycle, c.policy, c.status, c.started_at, \
     c.target, c.due_at, c.warn_at, c.release_at, c.next_transition_at, c.paused_since, \
     c.paused_time, c.stopped_at, c.warned_at, c.breached_at, c.released_at";

/// A clock as read, with the row's address for updating it in place (it is
/// locked, so the address holds until the transaction ends).
pub struct StoredClock {
    pub ctid: pg_sys::ItemPointerData,
    pub clock: Clock,
}

/// The clocks of some tickets of one table, by ticket id, in key order,
/// locked when `lock` is set.
pub fn read_clocks(
    relid: pg_sys::Oid,
    ticket_ids: &[String],
    lock: bool,
) -> HashMap<String, Vec<StoredClock>> {
    // The lateral join probes the primary key once per ticket: with a
    // plain `= ANY` of thousands of ids the planner may scan the table.
    let query = format!(
        "SELECT c.ctid, {CLOCK_COLUMNS}
           FROM unnest($2::text[]) AS u(id),
                LATERAL (SELECT c.ctid, c.* FROM sla.clocks c
                          WHERE c.ticket_table = $1::oid::regclass AND c.ticket_id = u.id
                          OFFSET 0) AS c
          ORDER BY c.ticket_id, c.metric, c.cycle{}",
        if lock { " FOR UPDATE OF c" } else { "" }
    );
    let mut by_ticket: HashMap<String, Vec<StoredClock>> = HashMap::new();
    spi_or_error(Spi::connect_mut(|client| {
        let rows = update_prepared(client, &query, &[relid.into(), ticket_ids.to_vec().into()])?;
        for row in rows {
            let ctid = row
                .get::<pg_sys::ItemPointerData>(1)?
                .unwrap_or_else(|| pgrx::error!("sla.clocks row without a ctid"));
            let ticket_id: String = row.get(2)?.unwrap_or_default();
            by_ticket.entry(ticket_id).or_default().push(StoredClock {
                ctid,
                clock: clock_from_row(&row)?,
            });
        }
        Ok(())
    }));
    by_ticket
}

fn clock_from_row(row: &SpiHeapTupleData) -> Result<Clock, pgrx::spi::Error> {
    let instant = |i: usize| -> Result<Option<Micros>, pgrx::spi::Error> {
        Ok(row
            .get::<TimestampWithTimeZone>(i)?
            .and_then(finite_instant))
    };
    let micros = |i: usize, field: &str| -> Result<Micros, pgrx::spi::Error> {
        Ok(row.get::<Interval>(i)?.map_or(0, |v| duration(v, field)))
    };
    let metric: String = row.get(3)?.unwrap_or_default();
    let status: String = row.get(6)?.unwrap_or_default();
    Ok(Clock {
        metric: Metric::parse(&metric)
            .unwrap_or_else(|| pgrx::error!("sla.clocks holds an unknown metric \"{metric}\"")),
        cycle: row.get(4)?.unwrap_or(1),
        policy: row.get(5)?.unwrap_or_default(),
        status: ClockStatus::parse(&status)
            .unwrap_or_else(|| pgrx::error!("sla.clocks holds an unknown status \"{status}\"")),
        started_at: instant(7)?.unwrap_or_default(),
        target: micros(8, "target")?,
        due_at: instant(9)?,
        warn_at: instant(10)?,
        release_at: instant(11)?,
        next_transition_at: instant(12)?,
        paused_since: instant(13)?,
        paused_time: micros(14, "paused_time")?,
        stopped_at: instant(15)?,
        warned_at: instant(16)?,
        breached_at: instant(17)?,
        released_at: instant(18)?,
    })
}

/// Clocks to write: changed ones, updated in place by address, and new
/// ones, inserted in bulk.
#[derive(Default)]
pub struct ClockChanges {
    ctid: Vec<pg_sys::ItemPointerData>,
    policy: Vec<String>,
    status: Vec<String>,
    target: Vec<Interval>,
    due_at: Vec<Option<TimestampWithTimeZone>>,
    warn_at: Vec<Option<TimestampWithTimeZone>>,
    release_at: Vec<Option<TimestampWithTimeZone>>,
    next_transition_at: Vec<Option<TimestampWithTimeZone>>,
    paused_since: Vec<Option<TimestampWithTimeZone>>,
    paused_time: Vec<Interval>,
    stopped_at: Vec<Option<TimestampWithTimeZone>>,
    warned_at: Vec<Option<TimestampWithTimeZone>>,
    breached_at: Vec<Option<TimestampWithTimeZone>>,
    released_at: Vec<Option<TimestampWithTimeZone>>,
    inserts: Vec<(String, Clock)>,
}

impl ClockChanges {
    /// Records what differs between a ticket's clocks as read (`stored`)
    /// and as they are now (`clocks`: the same clocks in the same order,
    /// then any new ones).
    pub fn add_ticket(&mut self, ticket_id: &str, stored: &[StoredClock], clocks: &[Clock]) {
        for (i, clock) in clocks.iter().enumerate() {
            match stored.get(i) {
                Some(before) if before.clock == *clock => {}
                Some(before) => self.update(before.ctid, clock),
                None => self.inserts.push((ticket_id.to_owned(), clock.clone())),
            }
        }
    }

    fn update(&mut self, ctid: pg_sys::ItemPointerData, clock: &Clock) {
        let at = |t: Option<Micros>| t.map(timestamptz);
        self.ctid.push(ctid);
        self.policy.push(clock.policy.clone());
        self.status.push(clock.status.as_str().to_owned());
        self.target.push(interval(clock.target));
        self.due_at.push(at(clock.due_at));
        self.warn_at.push(at(clock.warn_at));
        self.release_at.push(at(clock.release_at));
        self.next_transition_at.push(at(clock.next_transition_at));
        self.paused_since.push(at(clock.paused_since));
        self.paused_time.push(interval(clock.paused_time));
        self.stopped_at.push(at(clock.stopped_at));
        self.warned_at.push(at(clock.warned_at));
        self.breached_at.push(at(clock.breached_at));
        self.released_at.push(at(clock.released_at));
    }

    /// Writes the changes to the clocks of table `relid`.
    pub fn write(self, relid: pg_sys::Oid) {
        if !self.ctid.is_empty() {
            let args: Vec<DatumWithOid> = vec![
                self.ctid.into(),
                self.policy.into(),
                self.status.into(),
                self.target.into(),
                self.due_at.into(),
                self.warn_at.into(),
                self.release_at.into(),
                self.next_transition_at.into(),
                self.paused_since.into(),
                self.paused_time.into(),
                self.stopped_at.into(),
                self.warned_at.into(),
                self.breached_at.into(),
                self.released_at.into(),
            ];
            spi_or_error(Spi::connect_mut(|client| {
                update_prepared(
                    client,
                    "UPDATE sla.clocks c SET policy = u.policy, status = u.status,
                                target = u.target, due_at = u.due_at, warn_at = u.warn_at,
                                release_at = u.release_at,
                                next_transition_at = u.next_transition_at,
                                paused_since = u.paused_since, paused_time = u.paused_time,
                                stopped_at = u.stopped_at, warned_at = u.warned_at,
                                breached_at = u.breached_at, released_at = u.released_at
                           FROM unnest($1::tid[], $2::text[], $3::text[], $4::interval[],
                                       $5::timestamptz[], $6::timestamptz[], $7::timestamptz[],
                                       $8::timestamptz[], $9::timestamptz[], $10::interval[],
                                       $11::timestamptz[], $12::timestamptz[], $13::timestamptz[],
                                       $14::timestamptz[])
                                AS u(ctid, policy, status, target, due_at, warn_at, release_at,
                                     next_transition_at, paused_since, paused_time, stopped_at,
                                     warned_at, breached_at, released_at)
                          WHERE c.ctid = u.ctid",
                    &args,
                )
                .map(|_| ())
            }));
        }
        crate::bulk_insert::insert_clocks(crate::security::clocks_relid(), relid, self.inserts);
    }
}

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
fn update_prepared<'conn>(
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

/// Deletes the clocks of some tickets of a table, or all of them.
pub fn delete_clocks(relid: pg_sys::Oid, ticket_ids: Option<Vec<String>>) {
    spi_or_error(Spi::connect_mut(|client| {
        match ticket_ids {
            Some(ids) => client.update(
                "DELETE FROM sla.clocks WHERE ticket_table = $1::oid::regclass AND ticket_id = ANY($2)",
                None,
                &[relid.into(), ids.into()],
            ),
            None => client.update(
                "DELETE FROM sla.clocks WHERE ticket_table = $1::oid::regclass",
                None,
                &[relid.into()],
            ),
        }
        .map(|_| ())
    }));
}

/// Moves a ticket's clocks to a new id (its key column was updated).
pub fn rename_ticket(relid: pg_sys::Oid, old_id: &str, new_id: &str) {
    spi_or_error(Spi::connect_mut(|client| {
        client
            .update(
                "UPDATE sla.clocks SET ticket_id = $3
                  WHERE ticket_table = $1::oid::regclass AND ticket_id = $2",
                None,
                &[relid.into(), old_id.into(), new_id.into()],
            )
            .map(|_| ())
    }));
}

/// Tickets with a transition due at `now`, earliest first, leaving out
/// `skipped_tables` and the `held` tickets (table, id).
pub fn due_tickets(
    now: TimestampWithTimeZone,
    limit: i32,
    skipped_tables: &[pg_sys::Oid],
    held: &[(pg_sys::Oid, String)],
) -> Vec<(pg_sys::Oid, String)> {
    let held_tables: Vec<pg_sys::Oid> = held.iter().map(|(relid, _)| *relid).collect();
    let held_ids: Vec<String> = held.iter().map(|(_, id)| id.clone()).collect();
    spi_or_error(Spi::connect(|client| {
        let rows = client.select(
            "SELECT ticket_table::oid, ticket_id FROM sla.clocks
              WHERE next_transition_at <= $1
                AND (retry_at IS NULL OR retry_at <= pg_catalog.clock_timestamp())
                AND ticket_table::oid <> ALL ($3::oid[])
                AND (ticket_table::oid, ticket_id) NOT IN
                    (SELECT h.relid, h.id FROM unnest($4::oid[], $5::text[]) AS h(relid, id))
              ORDER BY next_transition_at LIMIT $2",
            None,
            &[
                now.into(),
                limit.into(),
                skipped_tables.to_vec().into(),
                held_tables.into(),
                held_ids.into(),
            ],
        )?;
        let mut due = Vec::new();
        for row in rows {
            due.push((
                row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                row.get::<String>(2)?.unwrap_or_default(),
            ));
        }
        Ok(due)
    }))
}

/// Open clocks' tickets of one table, optionally only those whose policy
/// runs on one of `calendars`.
pub fn tickets_with_open_clocks(relid: pg_sys::Oid, calendars: Option<Vec<String>>) -> Vec<String> {
    text_column(
        "SELECT DISTINCT ticket_id FROM sla.clocks
          WHERE ticket_table = $1::oid::regclass
            AND status IN ('running', 'due_soon', 'breached', 'paused')
            AND ($2::text[] IS NULL OR policy IN (
                  SELECT name FROM sla.policies WHERE calendar = ANY($2)))",
        &[relid.into(), calendars.into()],
    )
}

/// Every ticket id of a table.
pub fn all_tickets(table: &TrackedTable) -> Vec<String> {
    let query = format!(
        "SELECT t.{id}::text FROM ONLY {name} t",
        id = quote_identifier(&table.id_column),
        name = table.name,
    );
    text_column(&query, &[])
}

/// Notifications to write, column by column.
#[derive(Default)]
pub struct NotificationBatch {
    ticket_id: Vec<String>,
    policy: Vec<String>,
    metric: Vec<&'static str>,
    cycle: Vec<i32>,
    clock_started_at: Vec<TimestampWithTimeZone>,
    step: Vec<&'static str>,
    kind: Vec<&'static str>,
    due_at: Vec<Option<TimestampWithTimeZone>>,
    message: Vec<Option<String>>,
}

impl NotificationBatch {
    pub fn push(
        &mut self,
        ticket_id: &str,
        clock: &Clock,
        step: &'static str,
        kind: &'static str,
        message: Option<String>,
    ) {
        self.ticket_id.push(ticket_id.to_owned());
        self.policy.push(clock.policy.clone());
        self.metric.push(clock.metric.as_str());
        self.cycle.push(clock.cycle);
        self.clock_started_at.push(timestamptz(clock.started_at));
        self.step.push(step);
        self.kind.push(kind);
        self.due_at.push(clock.due_at.map(timestamptz));
        self.message.push(message);
    }

    /// Writes the notifications not written before (the unique key makes a
    /// repeated transition a no-op), created at the time due processing ran
    /// at: its transaction's time, or the time a replay asked for.
    pub fn write(self, relid: pg_sys::Oid, created_at: Micros) {
        if self.ticket_id.is_empty() {
            return;
        }
        let owned = |v: Vec<&'static str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
        let args: Vec<DatumWithOid> = vec![
            relid.into(),
            self.ticket_id.into(),
            self.policy.into(),
            owned(self.metric).into(),
            self.cycle.into(),
            self.clock_started_at.into(),
            owned(self.step).into(),
            owned(self.kind).into(),
            self.due_at.into(),
            self.message.into(),
            timestamptz(created_at).into(),
        ];
        spi_or_error(Spi::connect_mut(|client| {
            client
                .update(
                    &format!(
                        "WITH inserted AS (
                           INSERT INTO sla.notifications (ticket_table, ticket_id, policy, metric, cycle,
                                                          clock_started_at, step, kind, due_at, message,
                                                          created_at)
                           SELECT $1::oid::regclass, u.*, $11 FROM unnest($2::text[], $3::text[], $4::text[],
                               $5::int[], $6::timestamptz[], $7::text[], $8::text[], $9::timestamptz[],
                               $10::text[]) AS u
                           ON CONFLICT (ticket_table, ticket_id, metric, cycle, clock_started_at, step, kind)
                           DO NOTHING
                           RETURNING *)
                         {NOTIFY_INSERTED}"
                    ),
                    None,
                    &args,
                )
                .map(|_| ())
        }));
    }
}

/// Sends every row of a CTE `inserted` (rows of `sla.notifications`) with
/// NOTIFY on channel `pg_sla`, delivered when the transaction commits. The
/// payload is JSON; NOTIFY takes less than 8000 bytes, so a ticket id too
/// long for that is left out (`ticket_id_truncated`) and read from the row.
/// With `pg_sla.notify_payload = id`, only the id and kind are sent.
pub const NOTIFY_INSERTED: &str = concat!(
    "SELECT count(pg_notify('pg_sla',
       CASE WHEN current_setting('pg_sla.notify_payload') = 'id'
            THEN json_build_object('id', n.id, 'kind', n.kind)::text
            -- JSON escaping makes a character 6 bytes at most: below this
            -- bound the full payload surely fits, and is built once.
            WHEN coalesce(octet_length(n.ticket_id), 0) + coalesce(octet_length(n.policy), 0)
                 + coalesce(octet_length(n.recipient), 0) < 1100
            THEN ",
    full_payload!(),
    " WHEN octet_length(",
    full_payload!(),
    ") < 8000 THEN ",
    full_payload!(),
    " ELSE json_build_object('id', n.id, 'kind', n.kind,
                 'ticket_table', n.ticket_table::text, 'ticket_id', NULL,
                 'ticket_id_truncated', true, 'metric', n.metric, 'due_at', n.due_at,
                 'policy', left(n.policy, 1000), 'recipient', left(n.recipient, 1000),
                 'breached_count', n.breached_count)::text
       END))
     FROM inserted n"
);

/// The full NOTIFY payload of a notification row `n`.
macro_rules! full_payload {
    () => {
        "json_build_object('id', n.id, 'kind', n.kind, 'ticket_table', n.ticket_table::text,
             'ticket_id', n.ticket_id, 'metric', n.metric, 'due_at', n.due_at,
             'policy', n.policy, 'recipient', n.recipient,
             'breached_count', n.breached_count)::text"
    };
}
use full_payload;

// ---------------------------------------------------------------------------
// Ticket tables. Callers run these as the table's owner.

/// Locks the tickets with these ids that nobody else has locked, and
/// returns their addresses and ids. Never waits: a ticket an application is
/// changing now is left for the next round.
pub fn lock_free_tickets(
    table: &TrackedTable,
    ids: Vec<String>,
) -> Vec<(pg_sys::ItemPointerData, String)> {
    let query = format!(
        "SELECT t.ctid, t.{id}::text
           FROM unnest($1::text[]) AS u(id),
                LATERAL (SELECT t.ctid, t.{id} FROM ONLY {table} t WHERE t.{id} = u.id::{ty} OFFSET 0) AS t
          FOR NO KEY UPDATE OF t SKIP LOCKED",
        id = quote_identifier(&table.id_column),
        table = table.name,
        ty = table.id_type,
    );
    spi_or_error(Spi::connect_mut(|client| {
        let rows = client.update(&query, None, &[ids.into()])?;
        let mut locked = Vec::new();
        for row in rows {
            if let Some(ctid) = row.get::<pg_sys::ItemPointerData>(1)? {
                locked.push((ctid, row.get::<String>(2)?.unwrap_or_default()));
            }
        }
        Ok(locked)
    }))
}

/// Tickets whose status is not closed (a policy edit may concern any).
pub fn open_tickets(table: &TrackedTable) -> Vec<String> {
    let query = format!(
        "SELECT t.{id}::text FROM ONLY {name} t
          WHERE t.{status} IS NULL OR NOT (t.{status}::text = ANY($1))",
        id = quote_identifier(&table.id_column),
        status = quote_identifier(&table.status_column),
        name = table.name,
    );
    text_column(&query, &[table.closed_statuses.clone().into()])
}

/// Which of these ticket ids no longer exist in the table.
pub fn missing_tickets(table: &TrackedTable, ids: &[String]) -> Vec<String> {
    let query = format!(
        "SELECT u.id FROM unnest($1::text[]) AS u(id)
          WHERE NOT EXISTS (SELECT FROM ONLY {name} t WHERE t.{id} = u.id::{ty})",
        id = quote_identifier(&table.id_column),
        name = table.name,
        ty = table.id_type,
    );
    text_column(&query, &[ids.to_vec().into()])
}

/// Which of these tickets already have clocks.
pub fn tickets_with_clocks(relid: pg_sys::Oid, ids: &[String]) -> Vec<String> {
    text_column(
        "SELECT u.id FROM unnest($2::text[]) AS u(id)
          WHERE EXISTS (SELECT FROM sla.clocks c
                         WHERE c.ticket_table = $1::oid::regclass AND c.ticket_id = u.id)",
        &[relid.into(), ids.to_vec().into()],
    )
}

/// Takes the clocks of a table out of the due index if the table is not
/// tracked (checked again here: the caller's view may be older).
pub fn unschedule_table(relid: pg_sys::Oid) {
    spi_or_error(Spi::connect_mut(|client| {
        client
            .update(
                "UPDATE sla.clocks SET next_transition_at = NULL
                  WHERE ticket_table = $1::oid::regclass AND next_transition_at IS NOT NULL
                    AND NOT EXISTS (SELECT FROM sla.tracked_tables
                                     WHERE ticket_table = $1::oid::regclass)",
                None,
                &[relid.into()],
            )
            .map(|_| ())
    }));
}

/// Leaves a ticket that due processing failed on alone for a while, so that
/// it does not hold places at the head of the due index.
pub fn postpone_tickets(relid: pg_sys::Oid, ticket_ids: &[String], delay: &str) {
    spi_or_error(Spi::connect_mut(|client| {
        client
            .update(
                // SKIP LOCKED: due processing never waits for a lock.
                "UPDATE sla.clocks SET retry_at = pg_catalog.clock_timestamp() + $3::interval
                  WHERE ctid = ANY (ARRAY(
                        SELECT ctid FROM sla.clocks
                         WHERE ticket_table = $1::oid::regclass AND ticket_id = ANY ($2::text[])
                           AND next_transition_at IS NOT NULL
                           FOR UPDATE SKIP LOCKED))",
                None,
                &[relid.into(), ticket_ids.to_vec().into(), delay.into()],
            )
            .map(|_| ())
    }));
}

/// The next time a clock has a transition due after `now`, for the worker
/// to wake at.
pub fn next_transition_after(now: TimestampWithTimeZone) -> Option<TimestampWithTimeZone> {
    spi_or_error(Spi::get_one_with_args(
        "SELECT min(next_transition_at) FROM sla.clocks WHERE next_transition_at >= $1",
        &[now.into()],
    ))
}

// ---------------------------------------------------------------------------
// Breach alerts.

pub struct AlertRule {
    pub id: i64,
    pub recipient: String,
    pub min_breached: i32,
    /// `None`: every tracked table.
    pub table: Option<pg_sys::Oid>,
    pub every_assignee: bool,
    pub alerting: bool,
    pub breached_count: Option<i32>,
}

pub fn enabled_alert_rules() -> Vec<AlertRule> {
    spi_or_error(Spi::connect(|client| {
        let rows = client.select(
            "SELECT id, recipient, min_breached, ticket_table::oid, every_assignee, alerting,
                    breached_count
               FROM sla.alert_rules WHERE enabled ORDER BY id",
            None,
            &[],
        )?;
        let mut rules = Vec::new();
        for row in rows {
            rules.push(AlertRule {
                id: row.get::<i64>(1)?.unwrap_or_default(),
                recipient: row.get::<String>(2)?.unwrap_or_default(),
                min_breached: row.get::<i32>(3)?.unwrap_or_default(),
                table: row.get::<pg_sys::Oid>(4)?,
                every_assignee: row.get::<bool>(5)?.unwrap_or_default(),
                alerting: row.get::<bool>(6)?.unwrap_or_default(),
                breached_count: row.get::<i32>(7)?,
            });
        }
        Ok(rules)
    }))
}

/// Tickets of a table with a breached clock still open (paused or not, so
/// that a pause does not make an alert fire again when it ends).
pub fn breached_tickets(relid: pg_sys::Oid) -> Vec<String> {
    // Read-write SPI: a fresh snapshot, which sees the breaches this very
    // call of process_due just wrote (a read-only one would not).
    spi_or_error(Spi::connect_mut(|client| {
        let rows = client.update(
            "SELECT DISTINCT ticket_id FROM sla.clocks
              WHERE ticket_table = $1::oid::regclass
                AND breached_at IS NOT NULL AND status IN ('breached', 'paused')",
            None,
            &[relid.into()],
        )?;
        let mut ids = Vec::new();
        for row in rows {
            if let Some(id) = row.get::<String>(1)? {
                ids.push(id);
            }
        }
        Ok(ids)
    }))
}

/// How many of these tickets each of `recipients` is assigned, by the
/// table's assignee column. Run as the table's owner.
pub fn tickets_by_assignee(
    table: &TrackedTable,
    assignee_column: &str,
    ids: &[String],
    recipients: &[String],
) -> HashMap<String, i64> {
    let query = format!(
        "SELECT t.{assignee}::text, count(*) FROM unnest($1::text[]) AS u(id)
           JOIN ONLY {name} t ON t.{id} = u.id::{ty}
          WHERE t.{assignee}::text = ANY($2::text[])
          GROUP BY 1",
        assignee = quote_identifier(assignee_column),
        name = table.name,
        id = quote_identifier(&table.id_column),
        ty = table.id_type,
    );
    // Read-write SPI for a fresh snapshot, as in `breached_tickets`.
    spi_or_error(Spi::connect_mut(|client| {
        let rows = client.update(
            &query,
            None,
            &[ids.to_vec().into(), recipients.to_vec().into()],
        )?;
        let mut counts = HashMap::new();
        for row in rows {
            if let (Some(recipient), Some(count)) = (row.get::<String>(1)?, row.get::<i64>(2)?) {
                counts.insert(recipient, count);
            }
        }
        Ok(counts)
    }))
}

/// Moves a rule to `alerting` with its new count, if it is still as read
/// (`rule`) and nobody else holds it; when `fire`, writes and sends its
/// `breach_alert` notification in the same statement. Returns whether the
/// rule was updated.
/// `at` is the time due processing runs at: the alert's time, as for the
/// other notifications.
pub fn update_alert_rule(
    rule: &AlertRule,
    alerting: bool,
    breached: i32,
    fire: bool,
    at: Micros,
) -> bool {
    let query = format!(
        "WITH updated AS (
           UPDATE sla.alert_rules r
              SET alerting = $2, breached_count = $3,
                  alerted_at = CASE WHEN $4 THEN $10 ELSE r.alerted_at END
            WHERE r.id = (SELECT id FROM sla.alert_rules
                           WHERE id = $1 AND enabled AND alerting = $5 AND min_breached = $6
                             AND recipient = $7 AND ticket_table IS NOT DISTINCT FROM $8::oid::regclass
                             AND every_assignee = $9
                             FOR UPDATE SKIP LOCKED)
           RETURNING r.*),
         inserted AS (
           INSERT INTO sla.notifications (ticket_table, step, kind, recipient, breached_count, message,
                                          created_at)
           SELECT u.ticket_table, 'breach_alert', 'breach_alert', u.recipient, $3,
                  format('%s breached open tickets (alert threshold %s)', $3, u.min_breached), $10
             FROM updated u WHERE $4
           RETURNING *),
         notified AS ({NOTIFY_INSERTED})
         SELECT count(*) FROM updated, notified"
    );
    let args: Vec<DatumWithOid> = vec![
        rule.id.into(),
        alerting.into(),
        breached.into(),
        fire.into(),
        rule.alerting.into(),
        rule.min_breached.into(),
        rule.recipient.clone().into(),
        rule.table.into(),
        rule.every_assignee.into(),
        timestamptz(at).into(),
    ];
    spi_or_error(Spi::connect_mut(|client| {
        let rows = client.update(&query, None, &args)?;
        Ok(rows.first().get_one::<i64>()?.unwrap_or(0) > 0)
    }))
}

/// The first column of a query's rows, as text.
fn text_column(query: &str, args: &[DatumWithOid]) -> Vec<String> {
    spi_or_error(Spi::connect(|client| {
        let rows = client.select(query, None, args)?;
        let mut values = Vec::new();
        for row in rows {
            if let Some(value) = row.get::<String>(1)? {
                values.push(value);
            }
        }
        Ok(values)
    }))
}

/// New SLA columns for tickets, and whether to release their assignee.
#[derive(Default)]
pub struct TicketUpdates {
    ctid: Vec<pg_sys::ItemPointerData>,
    policy: Vec<Option<String>>,
    status: Vec<Option<&'static str>>,
    due_at: Vec<Option<TimestampWithTimeZone>>,
    breached_at: Vec<Option<TimestampWithTimeZone>>,
    release: Vec<bool>,
}

impl TicketUpdates {
    /// `ctid` is the address of the ticket's row, which the caller holds
    /// locked.
    pub fn push(
        &mut self,
        ctid: pg_sys::ItemPointerData,
        policy: Option<&str>,
        summary: &Summary,
        release: bool,
    ) {
        self.ctid.push(ctid);
        self.policy.push(policy.map(str::to_owned));
        self.status.push(summary.status.map(ClockStatus::as_str));
        self.due_at.push(summary.due_at.map(timestamptz));
        self.breached_at.push(summary.breached_at.map(timestamptz));
        self.release.push(release);
    }

    /// Writes the SLA columns (and `sla_policy` when `set_policy`).
    pub fn write(self, table: &TrackedTable, set_policy: bool) {
        if self.ctid.is_empty() {
            return;
        }
        let release = match &table.assignee_column {
            Some(column) if self.release.iter().any(|r| *r) => format!(
                ", {c} = CASE WHEN u.release THEN NULL ELSE t.{c} END",
                c = quote_identifier(column)
            ),
            _ => String::new(),
        };
        let policy = if set_policy {
            ", sla_policy = u.policy"
        } else {
            ""
        };
        // The ANY() lets the planner fetch the rows by address rather than
        // hash the whole table for a join with the array.
        let query = format!(
            "UPDATE ONLY {table} t SET sla_status = u.status, sla_due_at = u.due_at,
                    sla_breached_at = u.breached_at{policy}{release}
               FROM unnest($1::tid[], $2::text[], $3::text[], $4::timestamptz[],
                           $5::timestamptz[], $6::bool[]) AS u(ctid, policy, status, due_at,
                                                             breached_at, release)
              WHERE t.ctid = u.ctid AND t.ctid = ANY($1)",
            table = table.name,
        );
        let status: Vec<Option<String>> = self
            .status
            .into_iter()
            .map(|s| s.map(str::to_owned))
            .collect();
        let args: Vec<DatumWithOid> = vec![
            self.ctid.into(),
            self.policy.into(),
            status.into(),
            self.due_at.into(),
            self.breached_at.into(),
            self.release.into(),
        ];
        spi_or_error(Spi::connect_mut(|client| {
            client.update(&query, None, &args).map(|_| ())
        }));
    }
}

pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn spi_or_error<T>(result: Result<T, pgrx::spi::Error>) -> T {
    result.unwrap_or_else(|e| pgrx::error!("pg_sla: {e}"))
}
