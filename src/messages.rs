//! Messages tables (`sla.track_messages`): help desks that keep messages in
//! a table of their own, one row per customer message, reply or internal
//! note. Inserting (or updating) message rows drives the tickets' first
//! response, next response and pause/resume as the two time columns would;
//! a message whose ticket is not there yet waits in `sla.early_messages`
//! until it is inserted. Deleting a message, or turning a reply into a
//! note, changes no clock: what was measured stays measured.
use std::collections::HashMap;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use pgrx::trigger_support::{
    trigger_fired_after, trigger_fired_by_insert, trigger_fired_by_update,
    trigger_fired_for_statement,
};
use sla_core::policy::{matches, parse_conditions, ColumnValue, Condition};

use crate::configuration::{self, TrackedMessages, TrackedTable};
use crate::convert::required;
use crate::identity::current_user;
use crate::jsonb_arg::JsonbArg;
use crate::policy_fit::{checked_values, why_never_matches};
use crate::recompute::{resync_tickets_with_messages, RESYNC_CHUNK};
use crate::regclass::RegClass;
use crate::sql_text::quote_literal;
use crate::store::ticket_definitions::{self, column_type, table_info};
use crate::store::tracked_messages::{self, EarlyMessage, MessagesTable};
use crate::subxact::attempt;
use crate::ticket::Message;
use crate::ticket_columns::{find_column, Column, ID_TYPES, TIME_TYPES};
use crate::time_budget::TIMEOUT_MESSAGE;
use crate::trigger_support::{for_each_transition_row, require_firing, untracked, TriggerResult};

/// Starts driving a tracked ticket table's replies from a messages table:
/// checks the mapping and the two conditions, installs pg_sla's triggers on
/// the messages table and applies the messages it already has. Returns how
/// many messages it applied.
#[pg_extern(volatile, parallel_unsafe)]
fn track_messages(
    messages_table: Option<RegClass>,
    ticket_table: Option<RegClass>,
    ticket_column: Option<&str>,
    created_at_column: default!(Option<&str>, "'created_at'"),
    customer_message: default!(Option<JsonbArg>, "NULL"),
    agent_reply: default!(Option<JsonbArg>, "NULL"),
) -> i64 {
    let messages_relid = required(messages_table, "messages_table").0;
    let ticket_relid = required(ticket_table, "ticket_table").0;
    let ticket_column = required(ticket_column, "ticket_column");
    let created_at_column = required(created_at_column, "created_at_column");
    let customer_message = required(customer_message, "customer_message").to_text();
    let agent_reply = required(agent_reply, "agent_reply").to_text();

    let info = table_info(messages_relid);
    let name = info.name.as_str();
    if !info.owned_by_caller {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be owner of table {name} to track its messages")
        );
    }
    if info.relkind != "r" || info.in_hierarchy || info.temporary {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{name} is not a plain, permanent table; pg_sla tracks messages in tables that are not partitioned, partitions, part of table inheritance or temporary")
        );
    }
    let configuration = configuration::current();
    let Some(table) = configuration.tracked(ticket_relid) else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "ticket_table {} is not tracked",
                table_info(ticket_relid).name
            ),
            "Track it with sla.track() first."
        );
    };
    // Its rows will change that table's tickets: the caller must act for
    // that table's owner too.
    if !unsafe { pg_sys::has_privs_of_role(current_user(), table.owner) } {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "must be owner of table {} to drive its tickets from messages",
                table.name
            )
        );
    }
    if configuration.tracked.contains_key(&messages_relid)
        || configuration.messages.contains_key(&messages_relid)
    {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("table {name} is already tracked"),
            "Call sla.untrack_messages() first to change its mapping."
        );
    }
    if table.agent_reply_at_column.is_some() || table.waiting_since_column.is_some() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "ticket table {} already takes its replies from its own columns",
                table.name
            ),
            "Track the ticket table with customer_message_at_column => NULL and agent_reply_at_column => NULL (sla.untrack() first) to take replies from messages."
        );
    }
    let column = |argument: &str, column: &str, accepted: &crate::ticket_columns::Accepted| {
        let Some(found) = column_type(messages_relid, column) else {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("{argument} \"{column}\" is not a column of table {name}")
            );
        };
        if !accepted.accepts(found.type_oid, found.is_enum) {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "{argument} \"{column}\" of table {name} has type {}; expected {}",
                    found.type_name, accepted.expected
                )
            );
        }
        found
    };
    let ticket_type = column("ticket_column", ticket_column, &ID_TYPES);
    // Ids compare as they print, and are cast to the ticket id's type to
    // find tickets: both columns must be of one kind.
    let id_type = column_type(ticket_relid, &table.id_column);
    let kind_of = |oid: pg_sys::Oid| {
        if [pg_sys::INT2OID, pg_sys::INT4OID, pg_sys::INT8OID].contains(&oid) {
            "an integer type"
        } else if oid == pg_sys::UUIDOID {
            "uuid"
        } else {
            "text or varchar"
        }
    };
    if let Some(id_type) = id_type {
        if kind_of(id_type.type_oid) != kind_of(ticket_type.type_oid) {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "ticket_column \"{ticket_column}\" of table {name} has type {}, and the id column \"{}\" of table {} has type {}: they must both be {}",
                    ticket_type.type_name,
                    table.id_column,
                    table.name,
                    id_type.type_name,
                    kind_of(id_type.type_oid)
                )
            );
        }
    }
    column("created_at_column", created_at_column, &TIME_TYPES);
    for (argument, text) in [
        ("customer_message", &customer_message),
        ("agent_reply", &agent_reply),
    ] {
        check_conditions(messages_relid, name, argument, text);
    }

    let mapping = MessagesTable {
        relid: messages_relid,
        name: info.name.clone(),
        ticket_table: ticket_relid,
        ticket_column: ticket_column.to_owned(),
        created_at_column: created_at_column.to_owned(),
        customer_message,
        agent_reply,
    };
    ticket_definitions::drop_message_triggers(messages_relid, &info.qualified);
    ticket_definitions::create_message_triggers(&info.qualified);
    tracked_messages::insert(&mapping);
    unsafe { pg_sys::CommandCounterIncrement() };
    apply_existing(messages_relid, &info.qualified)
}

/// A condition object must parse, name columns the messages table has, and
/// list values those columns can hold.
fn check_conditions(relid: pg_sys::Oid, table_name: &str, argument: &str, text: &str) {
    let refuse = |code: PgSqlErrorCode, message: String| -> ! {
        ereport!(ERROR, code, format!("{argument}: {message}"));
    };
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("cannot be read: {e}"),
        )
    });
    let conditions = parse_conditions(&value)
        .unwrap_or_else(|message| refuse(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message));
    for condition in &conditions {
        let Some(found) = column_type(relid, &condition.column) else {
            refuse(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "column \"{}\" is not a column of table {table_name}",
                    condition.column
                ),
            );
        };
        for value in checked_values(condition) {
            if let Some(why) = why_never_matches(value, &found) {
                refuse(
                    PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                    format!(
                        "conditions.{} value {} never matches column \"{}\" ({}) of table {table_name}: {why}",
                        condition.column,
                        quote_literal(value),
                        condition.column,
                        found.type_name
                    ),
                );
            }
        }
    }
}

/// Stops driving replies from a messages table: drops pg_sla's triggers on
/// it. Clocks stay as they are.
#[pg_extern(volatile, parallel_unsafe)]
fn untrack_messages(messages_table: Option<RegClass>) {
    let relid = required(messages_table, "messages_table").0;
    let info = table_info(relid);
    let configuration = configuration::current();
    let Some(messages) = configuration.messages.get(&relid) else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("table {} is not a tracked messages table", info.name)
        );
    };
    // The owner of either table may end the link.
    let owns_tickets = configuration
        .tracked(messages.table.ticket_table)
        .is_some_and(|t| unsafe { pg_sys::has_privs_of_role(current_user(), t.owner) });
    if !info.owned_by_caller && !owns_tickets {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "must be owner of table {} or of its ticket table to untrack its messages",
                info.name
            )
        );
    }
    ticket_definitions::drop_message_triggers(relid, &info.qualified);
    tracked_messages::delete(relid);
}

/// A messages table's columns as the trigger reads them.
struct MessageColumns {
    ticket: Column,
    sent_at: Column,
    conditions: HashMap<String, Column>,
}

impl MessageColumns {
    fn resolve(
        tupdesc: pg_sys::TupleDesc,
        messages: &TrackedMessages,
        table: &TrackedTable,
    ) -> MessageColumns {
        let find = |name: &str, argument: &str| {
            find_column(tupdesc, name).unwrap_or_else(|| {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!(
                        "column \"{name}\" ({argument}) of tracked messages table {} does not exist",
                        messages.table.name
                    ),
                    "Restore the column, or call sla.untrack_messages() and sla.track_messages() with the new mapping."
                );
            })
        };
        let ticket = find(&messages.table.ticket_column, "ticket_column");
        let mut sent_at = find(&messages.table.created_at_column, "created_at_column");
        if !TIME_TYPES.accepts(sent_at.type_oid, false) {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "column \"{}\" (created_at_column) of tracked messages table {} no longer has a timestamp type",
                    sent_at.name, messages.table.name
                )
            );
        }
        if sent_at.type_oid == pg_sys::TIMESTAMPOID {
            sent_at.local_zone = Some(
                table
                    .timestamp_zone
                    .clone()
                    .unwrap_or_else(|| "UTC".to_owned()),
            );
        }
        let conditions = messages
            .customer_message
            .iter()
            .chain(&messages.agent_reply)
            .filter_map(|c| find_column(tupdesc, &c.column).map(|col| (c.column.clone(), col)))
            .collect();
        MessageColumns {
            ticket,
            sent_at,
            conditions,
        }
    }
}

/// Whether a message's ticket value can be an id of the ticket table's id
/// type (an integer id narrower than the messages' column).
fn fits_id(id: &str, id_type: &str) -> bool {
    match id_type {
        "smallint" => id.parse::<i16>().is_ok(),
        "integer" => id.parse::<i32>().is_ok(),
        _ => true,
    }
}

/// Whether a message is the customer's (`Some(true)`), an agent's reply
/// (`Some(false)`) or neither (an internal note, a bot, an event).
fn kind(
    customer_message: &[Condition],
    agent_reply: &[Condition],
    mut value_of: impl FnMut(&str) -> ColumnValue<'static>,
) -> Option<bool> {
    if matches(customer_message, &mut value_of) {
        Some(true)
    } else if matches(agent_reply, &mut value_of) {
        Some(false)
    } else {
        None
    }
}

/// Trigger on a tracked messages table (AFTER INSERT or UPDATE, per
/// statement, with a NEW TABLE): applies the new rows that are customer
/// messages or replies to their tickets.
#[pg_trigger]
fn messages_written<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    let data = trigger.trigger_data();
    let event = data.tg_event;
    require_firing(
        trigger,
        trigger_fired_for_statement(event)
            && trigger_fired_after(event)
            && (trigger_fired_by_insert(event) || trigger_fired_by_update(event))
            && !data.tg_newtable.is_null(),
        "AFTER INSERT OR UPDATE, FOR EACH STATEMENT, with a NEW TABLE",
    );
    let configuration = configuration::current();
    let Some(messages) = configuration.messages.get(&trigger.relid()?).cloned() else {
        untracked(trigger);
        return Ok(None);
    };
    let Some(table) = configuration.tracked(messages.table.ticket_table) else {
        return Ok(None);
    };
    let tupdesc = unsafe { (*data.tg_relation).rd_att };
    let columns = MessageColumns::resolve(tupdesc, &messages, &table);
    let mut by_ticket: HashMap<String, Vec<Message>> = HashMap::new();
    for_each_transition_row(data.tg_newtable, tupdesc, |row| {
        let Some(ticket_id) = row.text(&columns.ticket) else {
            return;
        };
        if !fits_id(&ticket_id, &table.id_type) {
            // No ticket can have it (a bigint past an integer id's range):
            // looking it up would fail the application's write.
            return;
        }
        let Some(sent_at) = row.instant(&columns.sent_at) else {
            return;
        };
        let from_customer =
            kind(
                &messages.customer_message,
                &messages.agent_reply,
                |name| match columns.conditions.get(name) {
                    None => ColumnValue::Absent,
                    Some(column) => match row.text(column) {
                        Some(text) => ColumnValue::Text(text.into()),
                        None => ColumnValue::Null,
                    },
                },
            );
        if let Some(from_customer) = from_customer {
            by_ticket.entry(ticket_id).or_default().push(Message {
                sent_at,
                from_customer,
            });
        }
    });
    apply(&table, by_ticket);
    Ok(None)
}

/// Applies messages to their tickets, in batches; messages of tickets not
/// found are kept until they are inserted.
pub fn apply(table: &TrackedTable, by_ticket: HashMap<String, Vec<Message>>) {
    let mut ids: Vec<String> = by_ticket.keys().cloned().collect();
    ids.sort();
    for chunk in ids.chunks(RESYNC_CHUNK) {
        // The application's write must not fail for pg_sla's bookkeeping
        // (a trigger of its ticket table raising, a calendar without
        // business time): the messages then wait to be applied later.
        let found = match attempt(|| resync_tickets_with_messages(table, chunk, &by_ticket)) {
            Ok(found) => found,
            // Due processing's own time budget: its caller sets the table
            // aside.
            Err(failure) if failure.budget_ran_out => {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                    format!(
                        "{TIMEOUT_MESSAGE}: applying the messages of table {} took longer than its time budget",
                        table.name
                    )
                );
            }
            Err(failure) => {
                pgrx::warning!(
                    "pg_sla: the new messages of {} tickets of table {} could not be applied now, due processing applies them later: {}",
                    chunk.len(),
                    table.name,
                    failure.message
                );
                Vec::new()
            }
        };
        if found.len() < chunk.len() {
            let found: std::collections::HashSet<&String> = found.iter().collect();
            let early = chunk
                .iter()
                .filter(|id| !found.contains(id))
                .flat_map(|id| {
                    by_ticket[id].iter().map(move |m| EarlyMessage {
                        ticket_id: id.clone(),
                        sent_at: m.sent_at,
                        from_customer: m.from_customer,
                    })
                })
                .collect();
            tracked_messages::keep_early(table, early);
        }
    }
}

/// Applies the messages a table already has, when it starts being tracked.
fn apply_existing(relid: pg_sys::Oid, qualified: &str) -> i64 {
    let configuration = configuration::current();
    let Some(messages) = configuration.messages.get(&relid).cloned() else {
        return 0;
    };
    let Some(table) = configuration.tracked(messages.table.ticket_table) else {
        return 0;
    };
    let condition_columns: Vec<String> = {
        let mut names: Vec<String> = messages
            .customer_message
            .iter()
            .chain(&messages.agent_reply)
            .map(|c| c.column.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let created_at = crate::sql_text::quote_identifier(&messages.table.created_at_column);
    let sent_at = match column_type(relid, &messages.table.created_at_column) {
        Some(found) if found.type_oid == pg_sys::TIMESTAMPOID => format!(
            "(m.{created_at} AT TIME ZONE {})",
            quote_literal(table.timestamp_zone.as_deref().unwrap_or("UTC"))
        ),
        _ => format!("m.{created_at}"),
    };
    let rows = tracked_messages::all_messages(
        qualified,
        &messages.table.ticket_column,
        &sent_at,
        &condition_columns,
    );
    let mut by_ticket: HashMap<String, Vec<Message>> = HashMap::new();
    let mut applied = 0;
    for (ticket_id, sent_at, values) in rows {
        let Some(sent_at) = sent_at else { continue };
        if !fits_id(&ticket_id, &table.id_type) {
            continue;
        }
        let from_customer =
            kind(
                &messages.customer_message,
                &messages.agent_reply,
                |name| match condition_columns.iter().position(|c| c == name) {
                    None => ColumnValue::Absent,
                    Some(i) => match &values[i] {
                        Some(text) => ColumnValue::Text(text.clone().into()),
                        None => ColumnValue::Null,
                    },
                },
            );
        if let Some(from_customer) = from_customer {
            applied += 1;
            by_ticket.entry(ticket_id).or_default().push(Message {
                sent_at,
                from_customer,
            });
        }
    }
    apply(&table, by_ticket);
    applied
}

/// Applies the messages that arrived before these newly inserted tickets.
pub fn apply_early(table: &TrackedTable, ticket_ids: &[String]) {
    let early = tracked_messages::take_early(table, ticket_ids);
    if early.is_empty() {
        return;
    }
    let mut by_ticket: HashMap<String, Vec<Message>> = HashMap::new();
    for m in early {
        by_ticket.entry(m.ticket_id).or_default().push(Message {
            sent_at: m.sent_at,
            from_customer: m.from_customer,
        });
    }
    apply(table, by_ticket);
}
