//! Breach alert rules (`sla.alert_rules`), read and written as the owner
//! of pg_sla's tables.
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use sla_core::{Micros, NotificationKind};

use super::notifications::NOTIFY_INSERTED;
use crate::convert::timestamptz;
use crate::errors::SpiResultExt;
use crate::identity::as_sla_owner;

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

/// The enabled rules, by id.
pub fn enabled() -> Vec<AlertRule> {
    as_sla_owner(|| {
        Spi::connect(|client| {
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
        })
        .or_raise("read sla.alert_rules")
    })
}

/// Moves a rule to `alerting` with its new count, if it is still as read
/// (`rule`) and nobody else holds it; when `fire`, writes and sends its
/// `breach_alert` notification in the same statement. Returns whether the
/// rule was updated.
/// `at` is the time due processing runs at: the alert's time, as for the
/// other notifications.
pub fn update(rule: &AlertRule, alerting: bool, breached: i32, fire: bool, at: Micros) -> bool {
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
           SELECT u.ticket_table, 'breach_alert', '{breach_alert}', u.recipient, $3,
                  format('%s breached open tickets (alert threshold %s)', $3, u.min_breached), $10
             FROM updated u WHERE $4
           RETURNING *),
         notified AS ({NOTIFY_INSERTED})
         SELECT count(*) FROM updated, notified",
        breach_alert = NotificationKind::BreachAlert.as_str()
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
    as_sla_owner(|| {
        Spi::connect_mut(|client| {
            let rows = client.update(&query, None, &args)?;
            Ok(rows.first().get_one::<i64>()?.unwrap_or(0) > 0)
        })
        .or_raise("update sla.alert_rules")
    })
}
