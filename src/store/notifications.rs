//! Notifications (`sla.notifications`), written as the owner of pg_sla's
//! tables, each also sent with NOTIFY. What a NOTIFY payload holds is
//! `NOTIFY_INSERTED`'s.
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use sla_core::{Clock, Micros, NotificationKind, Transition};

use crate::convert::timestamptz;
use crate::errors::SpiResultExt;

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
    /// A notification of `kind` about a clock, for the transition `step`.
    pub fn push(
        &mut self,
        ticket_id: &str,
        clock: &Clock,
        step: Transition,
        kind: NotificationKind,
        message: Option<String>,
    ) {
        self.ticket_id.push(ticket_id.to_owned());
        self.policy.push(clock.policy.clone());
        self.metric.push(clock.metric.as_str());
        self.cycle.push(clock.cycle);
        self.clock_started_at.push(timestamptz(clock.started_at));
        self.step.push(step.as_str());
        self.kind.push(kind.as_str());
        self.due_at.push(clock.due_at.map(timestamptz));
        self.message.push(message);
    }

    /// Writes the notifications not written before (the unique key makes a
    /// repeated transition a no-op), created at the time due processing ran
    /// at: its transaction's time, or the time a replay asked for.
    pub(super) fn write_as_owner(self, relid: pg_sys::Oid, created_at: Micros) {
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
        Spi::connect_mut(|client| {
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
        })
        .or_raise("write notifications");
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
