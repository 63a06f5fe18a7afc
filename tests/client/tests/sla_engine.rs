//! The SLA engine on a real server: policies, tracked tables, clocks, due
//! processing and notifications, through real client connections.
//!
//! Dates: 2026-11-27 and 2026-12-25 are Fridays; the `ny` calendar is open
//! Monday to Friday 09:00–17:00 in New York and closed on 2026-12-25.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pg_sla_client_tests::{query_int as int, query_text as text, sql_error, Client, Cluster};

const NY: &str = r#"{"timezone": "America/New_York",
  "hours": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"], "wed": ["09:00-17:00"],
            "thu": ["09:00-17:00"], "fri": ["09:00-17:00"]},
  "holidays": ["2026-12-25"]}"#;

/// A calendar, two policies and a tracked `tickets` table.
fn setup(db: &mut Client) {
    db.execute(
        "INSERT INTO sla.calendars (name, definition) VALUES ('ny', $1::text::jsonb)",
        &[&NY],
    )
    .unwrap();
    db.batch_execute(
        "SET TimeZone = 'America/New_York';
         INSERT INTO sla.policies (name, position, calendar, conditions, first_response,
                                   next_response, resolution, warn_at, feedback_message,
                                   pause_statuses)
         VALUES ('urgent', 1, 'ny', '{\"priority\": [\"urgent\", \"high\"]}', '30 minutes',
                 '2 hours', '8 hours', 0.5, 'We are on it', '{waiting}'),
                ('default', 2, NULL, '{}', '4 hours', NULL, NULL, NULL, NULL, '{}');
         CREATE TABLE tickets (
             id bigint PRIMARY KEY,
             priority text NOT NULL DEFAULT 'normal',
             status text NOT NULL DEFAULT 'open',
             assignee text,
             created_at timestamptz NOT NULL DEFAULT now(),
             last_customer_message_at timestamptz,
             last_agent_reply_at timestamptz);
         SELECT sla.track('tickets', assignee_column => 'assignee');",
    )
    .unwrap();
}

/// status and due time of one clock, as "status due_at".
fn clock(db: &mut Client, id: i64, metric: &str, cycle: i32) -> String {
    text(
        db,
        &format!(
            "SELECT status || ' ' || coalesce(due_at::text, '-') FROM sla.clocks
              WHERE ticket_table = 'tickets'::regclass AND ticket_id = '{id}'
                AND metric = '{metric}' AND cycle = {cycle}"
        ),
    )
}

/// sla_policy, sla_status, sla_due_at and sla_breached_at of a ticket.
fn ticket(db: &mut Client, id: i64) -> String {
    text(
        db,
        &format!(
            "SELECT concat_ws(' ', coalesce(sla_policy, '-'), coalesce(sla_status, '-'),
                              coalesce(sla_due_at::text, '-'), coalesce(sla_breached_at::text, '-'))
               FROM tickets WHERE id = {id}"
        ),
    )
}

fn process_due(db: &mut Client, now: &str) -> i64 {
    int(db, &format!("SELECT sla.process_due('{now}')"))
}

fn notifications(db: &mut Client, id: i64) -> String {
    text(
        db,
        &format!(
            "SELECT coalesce(string_agg(metric || '/' || cycle || ' ' || kind, ', ' ORDER BY id), '')
               FROM sla.notifications WHERE ticket_id = '{id}'"
        ),
    )
}

#[test]
fn seed_example_friday_message_is_due_monday_and_breaches_once() {
    let cluster = Cluster::start("seed", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "INSERT INTO tickets (id, priority, created_at) VALUES (1, 'urgent', '2026-11-27 16:45')",
    )
    .unwrap();
    // 15 minutes on Friday, then Monday from 09:00.
    assert_eq!(
        clock(&mut db, 1, "first_response", 1),
        "running 2026-11-30 09:15:00-05"
    );
    assert_eq!(
        ticket(&mut db, 1),
        "urgent running 2026-11-30 09:15:00-05 -"
    );
    // Warned at half the target (Friday 17:00), breached at the deadline.
    assert_eq!(process_due(&mut db, "2026-11-27 16:59:59"), 0);
    assert_eq!(process_due(&mut db, "2026-11-27 17:00"), 1);
    assert_eq!(
        clock(&mut db, 1, "first_response", 1).split(' ').next(),
        Some("due_soon")
    );
    assert_eq!(process_due(&mut db, "2026-11-30 09:14:59"), 0);
    assert_eq!(
        process_due(&mut db, "2026-11-30 09:15"),
        0,
        "the deadline itself is in time"
    );
    assert_eq!(process_due(&mut db, "2026-11-30 09:15:01"), 1);
    assert_eq!(
        process_due(&mut db, "2026-11-30 09:15:01"),
        0,
        "applied once"
    );
    assert_eq!(
        process_due(&mut db, "2026-12-30 09:15"),
        1,
        "only the resolution is left"
    );
    assert_eq!(
        notifications(&mut db, 1),
        "first_response/1 due_soon, first_response/1 customer_feedback, \
         first_response/1 breached, first_response/1 customer_feedback, resolution/1 breached"
    );
    assert_eq!(
        text(&mut db, "SELECT string_agg(message, ',') FROM sla.notifications WHERE kind = 'customer_feedback'"),
        "We are on it,We are on it"
    );
    assert_eq!(
        ticket(&mut db, 1),
        "urgent breached - 2026-11-30 09:15:00-05"
    );
    // A late reply: the clock is missed, and the ticket keeps its first breach.
    db.batch_execute("UPDATE tickets SET last_agent_reply_at = '2026-11-30 10:00' WHERE id = 1")
        .unwrap();
    assert_eq!(
        clock(&mut db, 1, "first_response", 1),
        "missed 2026-11-30 09:15:00-05"
    );
}

#[test]
fn each_metric_across_a_weekend_and_a_holiday() {
    let cluster = Cluster::start("metrics", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "INSERT INTO tickets (id, priority, created_at) VALUES (1, 'high', '2026-12-24 15:00')",
    )
    .unwrap();
    // first response: 30 min of Thursday afternoon.
    assert_eq!(
        clock(&mut db, 1, "first_response", 1),
        "running 2026-12-24 15:30:00-05"
    );
    // resolution, 8 h: 2 h Thursday, Friday is a holiday, the weekend, 6 h Monday.
    assert_eq!(
        clock(&mut db, 1, "resolution", 1),
        "running 2026-12-28 15:00:00-05"
    );

    // The agent replies in time; the customer writes back at 16:30 Thursday.
    db.batch_execute(
        "UPDATE tickets SET last_agent_reply_at = '2026-12-24 15:10' WHERE id = 1;
         UPDATE tickets SET last_customer_message_at = '2026-12-24 16:30' WHERE id = 1;",
    )
    .unwrap();
    assert_eq!(
        clock(&mut db, 1, "first_response", 1),
        "achieved 2026-12-24 15:30:00-05"
    );
    // next response, 2 h: 30 min Thursday, holiday, weekend, 1 h 30 Monday.
    assert_eq!(
        clock(&mut db, 1, "next_response", 1),
        "running 2026-12-28 10:30:00-05"
    );
    // A second message before any reply does not open another cycle.
    db.batch_execute(
        "UPDATE tickets SET last_customer_message_at = '2026-12-28 09:05' WHERE id = 1",
    )
    .unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE metric = 'next_response'"
        ),
        1
    );
    // The reply at 10:00 Monday achieves it; a new message opens cycle 2.
    db.batch_execute(
        "UPDATE tickets SET last_agent_reply_at = '2026-12-28 10:00' WHERE id = 1;
         UPDATE tickets SET last_customer_message_at = '2026-12-28 11:00' WHERE id = 1;",
    )
    .unwrap();
    assert_eq!(
        clock(&mut db, 1, "next_response", 1),
        "achieved 2026-12-28 10:30:00-05"
    );
    assert_eq!(
        clock(&mut db, 1, "next_response", 2),
        "running 2026-12-28 13:00:00-05"
    );
    // Nobody answers cycle 2: breached at 13:00 (its warning folded in).
    assert_eq!(process_due(&mut db, "2026-12-28 13:00:01"), 1 + 1);
    assert_eq!(
        clock(&mut db, 1, "next_response", 2),
        "breached 2026-12-28 13:00:00-05"
    );
    assert_eq!(
        ticket(&mut db, 1),
        "urgent breached 2026-12-28 15:00:00-05 2026-12-28 13:00:00-05"
    );
    db.batch_execute(
        "SET pg_sla.event_time = '2026-12-28 14:00';
         UPDATE tickets SET status = 'solved' WHERE id = 1;",
    )
    .unwrap();
    // Closing at 14:00 Monday: resolution achieved; the unanswered response
    // clock had breached, so it is missed rather than cancelled.
    assert_eq!(
        clock(&mut db, 1, "resolution", 1),
        "achieved 2026-12-28 15:00:00-05"
    );
    assert_eq!(
        clock(&mut db, 1, "next_response", 2),
        "missed 2026-12-28 13:00:00-05"
    );
    assert_eq!(ticket(&mut db, 1).split(' ').nth(1), Some("missed"));
}

#[test]
fn pause_resume_reopen_policy_switch_and_edits() {
    let cluster = Cluster::start("lifecycle", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "INSERT INTO tickets (id, priority, created_at) VALUES (1, 'urgent', '2026-11-30 09:00');
         INSERT INTO tickets (id, priority, created_at) VALUES (2, 'low', '2026-11-30 09:00');",
    )
    .unwrap();
    assert_eq!(
        clock(&mut db, 1, "resolution", 1),
        "running 2026-11-30 17:00:00-05"
    );

    // Pause at 10:00 Monday, resume at 09:00 Tuesday: 7 business hours paused.
    db.batch_execute(
        "SET pg_sla.event_time = '2026-11-30 10:00';
         UPDATE tickets SET status = 'waiting' WHERE id = 1;",
    )
    .unwrap();
    assert_eq!(
        clock(&mut db, 1, "resolution", 1).split(' ').next(),
        Some("paused")
    );
    assert_eq!(ticket(&mut db, 1).split(' ').nth(1), Some("paused"));
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM sla.clocks WHERE ticket_id = '1' AND metric = 'resolution' AND next_transition_at IS NOT NULL"),
        0,
        "a paused clock has nothing due"
    );
    // But the first response, paused after its 09:30 deadline, still has
    // its breach to record.
    assert_eq!(
        text(&mut db, "SELECT next_transition_at::text FROM sla.clocks WHERE ticket_id = '1' AND metric = 'first_response'"),
        "2026-11-30 09:30:00-05"
    );
    assert_eq!(
        process_due(&mut db, "2026-12-31"),
        2,
        "ticket 2's clock, and ticket 1's first response breached before its pause"
    );
    assert_eq!(
        text(&mut db, "SELECT status || ' ' || breached_at FROM sla.clocks WHERE ticket_id = '1' AND metric = 'first_response'"),
        "paused 2026-11-30 09:30:00-05"
    );
    assert_eq!(ticket(&mut db, 1).split(' ').nth(1), Some("breached"));
    db.batch_execute(
        "SET pg_sla.event_time = '2026-12-01 09:00';
         UPDATE tickets SET status = 'open' WHERE id = 1;",
    )
    .unwrap();
    // 8 h + 7 h paused from Monday 09:00: 8 h Monday, 7 h Tuesday.
    assert_eq!(
        clock(&mut db, 1, "resolution", 1),
        "running 2026-12-01 16:00:00-05"
    );
    assert_eq!(
        text(&mut db, "SELECT paused_time::text FROM sla.clocks WHERE ticket_id = '1' AND metric = 'resolution'"),
        "07:00:00"
    );

    // Close at 10:00 Tuesday, reopen at 15:00: 5 closed business hours.
    db.batch_execute(
        "SET pg_sla.event_time = '2026-12-01 10:00';
         UPDATE tickets SET status = 'closed' WHERE id = 1;",
    )
    .unwrap();
    assert_eq!(
        clock(&mut db, 1, "resolution", 1),
        "achieved 2026-12-01 16:00:00-05"
    );
    // The first response was due at 09:30 Monday, before the pause began
    // (so the pause did not move it): closed unanswered after that, missed.
    assert_eq!(
        clock(&mut db, 1, "first_response", 1),
        "missed 2026-11-30 09:30:00-05"
    );
    assert_eq!(ticket(&mut db, 1).split(' ').nth(1), Some("missed"));
    db.batch_execute(
        "SET pg_sla.event_time = '2026-12-01 15:00';
         UPDATE tickets SET status = 'open' WHERE id = 1;",
    )
    .unwrap();
    // 15 h + 5 h from Monday 09:00: Monday 8 h, Tuesday 8 h, Wednesday 4 h.
    assert_eq!(
        clock(&mut db, 1, "resolution", 1),
        "running 2026-12-02 13:00:00-05"
    );
    assert_eq!(
        clock(&mut db, 1, "first_response", 1).split(' ').next(),
        Some("missed"),
        "reopening does not revive a stopped response clock"
    );

    // Policy switch: ticket 2 (default, 24/7, 4 h) becomes urgent at 09:10
    // Monday; its first response now has 30 business minutes from 09:00.
    let mut fresh = cluster.connect();
    fresh
        .batch_execute("SET TimeZone = 'America/New_York'")
        .unwrap();
    fresh
        .batch_execute(
            "INSERT INTO tickets (id, priority, created_at) VALUES (3, 'low', '2026-11-30 09:00');
             SET pg_sla.event_time = '2026-11-30 09:10';
             UPDATE tickets SET priority = 'urgent' WHERE id = 3;",
        )
        .unwrap();
    assert_eq!(
        clock(&mut fresh, 3, "first_response", 1),
        "running 2026-11-30 09:30:00-05"
    );
    assert_eq!(
        clock(&mut fresh, 3, "resolution", 1),
        "running 2026-11-30 17:00:00-05"
    );
    assert_eq!(
        text(
            &mut fresh,
            "SELECT string_agg(DISTINCT policy, ',') FROM sla.clocks WHERE ticket_id = '3'"
        ),
        "urgent"
    );
    // And back: the default policy has no resolution target.
    fresh
        .batch_execute("UPDATE tickets SET priority = 'low' WHERE id = 3")
        .unwrap();
    assert_eq!(
        clock(&mut fresh, 3, "first_response", 1),
        "running 2026-11-30 13:00:00-05"
    );
    assert_eq!(
        clock(&mut fresh, 3, "resolution", 1).split(' ').next(),
        Some("cancelled")
    );

    // A calendar edit moves open deadlines in the same transaction; a
    // rollback moves them back.
    fresh
        .batch_execute(
            "RESET pg_sla.event_time;
             INSERT INTO tickets (id, priority, created_at) VALUES (4, 'urgent', '2026-11-27 16:45');",
        )
        .unwrap();
    assert_eq!(
        clock(&mut fresh, 4, "first_response", 1),
        "running 2026-11-30 09:15:00-05"
    );
    let mut tx = fresh.transaction().unwrap();
    tx.batch_execute(
        "UPDATE sla.calendars SET definition = jsonb_set(definition, '{hours,mon}', '[\"08:00-17:00\"]')
          WHERE name = 'ny'",
    )
    .unwrap();
    let due: String = tx
        .query_one(
            "SELECT due_at::text FROM sla.clocks WHERE ticket_id = '4' AND metric = 'first_response'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(due, "2026-11-30 08:15:00-05");
    let ticket_due: String = tx
        .query_one("SELECT sla_due_at::text FROM tickets WHERE id = 4", &[])
        .unwrap()
        .get(0);
    assert_eq!(ticket_due, "2026-11-30 08:15:00-05");
    tx.rollback().unwrap();
    assert_eq!(
        clock(&mut fresh, 4, "first_response", 1),
        "running 2026-11-30 09:15:00-05"
    );

    // A policy edit too: a 1-hour first response.
    fresh
        .batch_execute("UPDATE sla.policies SET first_response = '1 hour' WHERE name = 'urgent'")
        .unwrap();
    assert_eq!(
        clock(&mut fresh, 4, "first_response", 1),
        "running 2026-11-30 09:45:00-05"
    );
    // Stopped clocks keep their history.
    assert_eq!(
        clock(&mut fresh, 1, "first_response", 1),
        "missed 2026-11-30 09:30:00-05"
    );
    // Disabling it sends its tickets to the next matching policy.
    fresh
        .batch_execute("UPDATE sla.policies SET enabled = false WHERE name = 'urgent'")
        .unwrap();
    assert_eq!(
        clock(&mut fresh, 4, "first_response", 1),
        "running 2026-11-27 20:45:00-05"
    );
    assert_eq!(ticket(&mut fresh, 4).split(' ').next(), Some("default"));
}

#[test]
fn ownership_release_and_untracked_changes() {
    let cluster = Cluster::start("release", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "UPDATE sla.policies SET release_ownership_at = 0.8 WHERE name = 'urgent';
         INSERT INTO tickets (id, priority, assignee, created_at)
         VALUES (1, 'urgent', 'ana', '2026-11-30 09:00'), (2, 'urgent', 'bo', '2026-11-30 09:00');
         UPDATE tickets SET last_agent_reply_at = '2026-11-30 09:05' WHERE id = 2;",
    )
    .unwrap();
    // 80% of 30 minutes: 09:24. Ticket 2 was answered, so it keeps its agent.
    assert_eq!(
        process_due(&mut db, "2026-11-30 09:24"),
        2,
        "warning + release"
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(coalesce(assignee, '-'), ',' ORDER BY id) FROM tickets"
        ),
        "-,bo"
    );
    assert_eq!(
        notifications(&mut db, 1),
        "first_response/1 ownership_released, first_response/1 due_soon, first_response/1 customer_feedback"
    );

    // Deleting a ticket deletes its clocks; TRUNCATE all of them.
    db.batch_execute("DELETE FROM tickets WHERE id = 2")
        .unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_id = '2'"
        ),
        0
    );
    // Untracking leaves data alone and stops the clocks.
    db.batch_execute("SELECT sla.untrack('tickets')").unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_id = '1'"
        ),
        2
    );
    assert_eq!(process_due(&mut db, "2027-01-01"), 0);
    db.batch_execute("INSERT INTO tickets (id, priority) VALUES (5, 'urgent')")
        .unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_id = '5'"
        ),
        0
    );
    assert_eq!(ticket(&mut db, 5), "- - - -");
    // Tracking again backfills the new ticket.
    assert_eq!(
        int(
            &mut db,
            "SELECT sla.track('tickets', assignee_column => 'assignee')"
        ),
        2
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_id = '5'"
        ),
        2
    );
    db.batch_execute("TRUNCATE tickets").unwrap();
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.clocks"), 0);
    // Bulk inserts skipping conflicts give clocks to inserted rows only.
    db.batch_execute(
        "INSERT INTO tickets (id) SELECT g FROM generate_series(1, 100) g;
         INSERT INTO tickets (id) SELECT g FROM generate_series(50, 150) g ON CONFLICT DO NOTHING;",
    )
    .unwrap();
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.clocks"), 150);
}

#[test]
fn key_types_and_awkward_names() {
    let cluster = Cluster::start("keys", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    for (key_type, value) in [
        ("integer", "7"),
        ("uuid", "'4b3c5c1e-7f0a-4a5e-9a43-0f2a0e0d9c11'"),
        ("text", "'TCK-7'"),
    ] {
        let table = format!("\"Help \"\"Desk\"\" {key_type}\"");
        db.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"Support Team\";
             CREATE TABLE \"Support Team\".{table} (
                 \"Ticket ID\" {key_type} PRIMARY KEY,
                 \"Priority\" text, \"State\" text NOT NULL DEFAULT 'new',
                 \"Opened At\" timestamptz NOT NULL DEFAULT '2026-11-30 09:00',
                 \"Customer Wrote\" timestamptz, \"Agent Wrote\" timestamptz);
             SELECT sla.track('\"Support Team\".{table}', id_column => 'Ticket ID',
                 created_at_column => 'Opened At', status_column => 'State',
                 closed_statuses => '{{done}}', customer_message_at_column => 'Customer Wrote',
                 agent_reply_at_column => 'Agent Wrote');
             INSERT INTO \"Support Team\".{table} (\"Ticket ID\") VALUES ({value});
             UPDATE \"Support Team\".{table} SET \"Agent Wrote\" = '2026-11-30 09:10';"
        ))
        .unwrap();
        let summary = text(
            &mut db,
            &format!(
                "SELECT sla_status || ' ' || (SELECT string_agg(metric || ':' || status, ',')
                                                FROM sla.clocks c
                                               WHERE c.ticket_table = '\"Support Team\".{table}'::regclass
                                                 AND c.ticket_id = t.\"Ticket ID\"::text)
                   FROM \"Support Team\".{table} t"
            ),
        );
        assert_eq!(summary, "achieved first_response:achieved", "{key_type}");
        db.batch_execute(&format!(
            "UPDATE \"Support Team\".{table} SET \"State\" = 'done'"
        ))
        .unwrap();
    }
    // Names are data, never SQL: a column named like an injection is just a
    // missing column.
    let (code, message) = sql_error(db.batch_execute(
        "SELECT sla.track('tickets_x', id_column => 'id\"; DROP TABLE tickets; --')",
    ));
    assert_eq!(code, "42P01", "{message}");
    db.batch_execute("CREATE TABLE tickets_x (LIKE tickets)")
        .unwrap();
    let (code, message) = sql_error(db.batch_execute(
        "SELECT sla.track('tickets_x', id_column => 'id\"; DROP TABLE tickets; --')",
    ));
    assert_eq!(code, "42703", "{message}");
    assert!(message.contains("id_column"), "{message}");
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM tickets"),
        0,
        "tickets still exists"
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let cluster = Cluster::start("errors", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    let policies = |db: &mut Client| {
        text(db, "SELECT string_agg(name || ':' || first_response::text, ',' ORDER BY name) FROM sla.policies")
    };
    let before = policies(&mut db);
    let cases = [
        (
            "INSERT INTO sla.policies (name, calendar, first_response) VALUES ('p', 'nope', '1 hour')",
            "23503",
            "nope",
        ),
        (
            "INSERT INTO sla.policies (name, first_response) VALUES ('p', '-30 minutes')",
            "22023",
            "first_response must be a positive interval",
        ),
        (
            "INSERT INTO sla.policies (name, resolution) VALUES ('p', '1 month')",
            "22023",
            "resolution must be a positive interval without months",
        ),
        (
            "UPDATE sla.policies SET warn_at = 1.5 WHERE name = 'urgent'",
            "22023",
            "warn_at must be a fraction between 0 and 1 (exclusive), got 1.5",
        ),
        (
            "UPDATE sla.policies SET warn_at = 0 WHERE name = 'urgent'",
            "22023",
            "warn_at",
        ),
        (
            "INSERT INTO sla.policies (name, release_ownership_at) VALUES ('p', 0.5)",
            "22023",
            "needs a first_response target",
        ),
        (
            "INSERT INTO sla.policies (name, conditions) VALUES ('p', '{\"team\": [{\"a\": 1}]}')",
            "22023",
            "conditions.team",
        ),
        (
            "DELETE FROM sla.calendars WHERE name = 'ny'",
            "23503",
            "policies",
        ),
        ("SELECT sla.process_due(now(), 0)", "22023", "max_rows must be at least 1, got 0"),
        ("SELECT sla.process_due('infinity')", "22023", "now must be a finite timestamp"),
        (
            // Refused when set, naming the setting, not at the next write.
            "SET pg_sla.event_time = 'yesterday-ish'",
            "22023",
            "invalid value for parameter \"pg_sla.event_time\": \"yesterday-ish\"",
        ),
        ("SELECT sla.track('tickets')", "42710", "already tracked"),
        ("SELECT sla.untrack('pg_class')", "42704", "table pg_class is not tracked"),
    ];
    db.batch_execute("INSERT INTO tickets (id) VALUES (1)")
        .unwrap();
    for (statement, code, fragment) in cases {
        let (got, message) = sql_error(db.batch_execute(statement));
        assert_eq!(got, code, "{statement}: {message}");
        assert!(message.contains(fragment), "{statement}: {message}");
        db.batch_execute("RESET pg_sla.event_time").unwrap();
    }
    assert_eq!(policies(&mut db), before);
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.calendars"), 1);
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM tickets WHERE status = 'x'"),
        0
    );

    // Tracking a table without the mapped columns, or with wrong types,
    // fails and leaves the table as it was.
    let columns = |db: &mut Client, table: &str| {
        text(
            db,
            &format!(
                "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
                  WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped"
            ),
        )
    };
    db.batch_execute(
        "CREATE TABLE bare (id bigint PRIMARY KEY, created_at timestamptz, status text);
         CREATE TABLE typed (id numeric PRIMARY KEY, created_at text, status text,
                             last_customer_message_at timestamptz, last_agent_reply_at timestamptz,
                             owner_id int NOT NULL UNIQUE);
         CREATE TABLE nokey (id bigint, created_at timestamptz, status text,
                             last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         CREATE TABLE padded (id bigint PRIMARY KEY, created_at timestamptz, status char(10),
                              last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         CREATE TABLE parted (id bigint, created_at timestamptz, status text,
                              last_customer_message_at timestamptz, last_agent_reply_at timestamptz)
             PARTITION BY RANGE (id);
         CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
         CREATE TABLE base (id bigint PRIMARY KEY, created_at timestamptz, status text,
                            last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         CREATE TABLE child () INHERITS (base);",
    )
    .unwrap();
    let bare = columns(&mut db, "bare");
    let typed = columns(&mut db, "typed");
    let cases = [
        ("SELECT sla.track('bare')", "42703", "customer_message_at_column \"last_customer_message_at\" is not a column of table bare"),
        ("SELECT sla.track('bare', status_column => 'state')", "42703", "status_column \"state\""),
        ("SELECT sla.track('typed')", "42804", "id_column \"id\" of table typed has type numeric"),
        ("SELECT sla.track('typed', id_column => 'owner_id')", "42804", "created_at_column \"created_at\" of table typed has type text"),
        ("SELECT sla.track('typed', id_column => 'owner_id', created_at_column => 'last_customer_message_at', assignee_column => 'owner_id')", "22023", "NOT NULL"),
        ("SELECT sla.track('typed', closed_statuses => '{done,NULL}')", "22004", "closed_statuses"),
        ("SELECT sla.track('no_such_table')", "42P01", "no_such_table"),
        ("SELECT sla.track('nokey')", "42P10", "id_column \"id\" of table nokey has no primary key or unique index"),
        ("SELECT sla.track('padded')", "42804", "status_column \"status\" of table padded has type character(10); expected text, varchar, an enum, smallint, integer, bigint or boolean"),
        ("SELECT sla.track('parted')", "42P10", "id_column \"id\" of partitioned table parted does not lead a primary key or unique index"),
        ("SELECT sla.track('parted_1')", "42809", "parted_1 is a partition"),
        ("SELECT sla.track('child')", "42809", "child is not a table pg_sla can track"),
        ("SELECT sla.track('base')", "42809", "base is not a table pg_sla can track"),
        ("SELECT sla.track(NULL)", "22004", "ticket_table must not be NULL"),
        ("SELECT sla.track('typed', id_column => NULL)", "22004", "id_column must not be NULL"),
        ("SELECT sla.track('typed', closed_statuses => NULL)", "22004", "closed_statuses must not be NULL"),
        ("SELECT sla.untrack(NULL)", "22004", "ticket_table must not be NULL"),
        ("CREATE TEMP TABLE scratch (LIKE tickets INCLUDING ALL); SELECT sla.track('scratch')", "42809", "temporary table"),
    ];
    for (statement, code, fragment) in cases {
        let (got, message) = sql_error(db.batch_execute(statement));
        assert_eq!(got, code, "{statement}: {message}");
        assert!(message.contains(fragment), "{statement}: {message}");
    }
    assert_eq!(columns(&mut db, "bare"), bare);
    assert_eq!(columns(&mut db, "typed"), typed);
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('bare'::regclass, 'typed'::regclass, 'nokey'::regclass, 'padded'::regclass) AND NOT tgisinternal"),
        0
    );
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.tracked_tables"), 1);
}

#[test]
fn privileges_of_an_application_role() {
    let cluster = Cluster::start("privileges", &[]);
    let mut admin = cluster.connect();
    setup(&mut admin);
    admin
        .batch_execute(
            "CREATE ROLE app LOGIN; CREATE ROLE intruder LOGIN;
             GRANT CREATE ON SCHEMA public TO app;
             GRANT SELECT, INSERT, UPDATE ON tickets TO intruder;",
        )
        .unwrap();
    let mut app = cluster.connect_as("app");
    app.batch_execute(
        "SET TimeZone = 'America/New_York';
         CREATE TABLE app_tickets (id bigint PRIMARY KEY, priority text, status text NOT NULL DEFAULT 'open',
             created_at timestamptz NOT NULL DEFAULT '2026-11-27 16:45',
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         SELECT sla.track('app_tickets');
         INSERT INTO app_tickets (id, priority) VALUES (1, 'urgent');
         UPDATE app_tickets SET last_agent_reply_at = '2026-11-30 09:00' WHERE id = 1;",
    )
    .unwrap();
    assert_eq!(
        text(
            &mut app,
            "SELECT sla_status || ' ' || sla_due_at::text FROM app_tickets"
        ),
        "running 2026-11-30 16:45:00-05"
    );
    // Its own table's clocks are pg_sla's to write, not the role's.
    let (code, _) = sql_error(app.batch_execute("UPDATE sla.clocks SET status = 'achieved'"));
    assert_eq!(code, "42501");
    let (code, _) = sql_error(app.batch_execute("SELECT sla.process_due()"));
    assert_eq!(code, "42501", "due processing needs a grant");
    let (code, message) = sql_error(app.batch_execute("SELECT sla.untrack('tickets')"));
    assert_eq!(code, "42501", "{message}");
    assert!(
        message.contains("must be owner of table tickets"),
        "{message}"
    );
    let (code, _) = sql_error(app.batch_execute("DELETE FROM sla.policies"));
    assert_eq!(code, "42501");
    admin
        .batch_execute("CREATE TABLE admin_tickets (LIKE tickets INCLUDING ALL)")
        .unwrap();
    let (code, message) = sql_error(app.batch_execute("SELECT sla.track('admin_tickets')"));
    assert_eq!(code, "42501", "{message}");
    assert!(
        message.contains("must be owner of table admin_tickets to track it"),
        "{message}"
    );
    // A role that may write someone else's tickets still cannot track them.
    let mut intruder = cluster.connect_as("intruder");
    let (code, message) = sql_error(intruder.batch_execute("SELECT sla.untrack('tickets')"));
    assert_eq!(code, "42501", "{message}");
    intruder
        .batch_execute("INSERT INTO tickets (id, priority, created_at) VALUES (9, 'urgent', '2026-11-27 16:45-05')")
        .unwrap();
    assert_eq!(
        clock(&mut admin, 9, "first_response", 1),
        "running 2026-11-30 09:15:00-05"
    );
    admin
        .batch_execute("GRANT EXECUTE ON FUNCTION sla.process_due(timestamptz, int) TO app")
        .unwrap();
    // Granted due processing, it acts at the present only, on its own
    // tables: a replay at another time is refused.
    let (code, message) = sql_error(app.batch_execute("SELECT sla.process_due('2026-12-31')"));
    assert_eq!(code, "42501", "{message}");
    // Ticket 9: first response and resolution; app ticket 1: resolution.
    assert_eq!(
        int(&mut admin, "SELECT sla.process_due('2026-12-31')"),
        2 + 1
    );
}

#[test]
fn concurrent_due_processing_never_duplicates_or_deadlocks() {
    let cluster = Cluster::start("concurrency", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    // 2,000 urgent tickets created ten seconds apart on Friday: their first
    // response and resolution are both overdue on Monday at 17:00, and they
    // fall due in id order (no warnings: one transition per clock).
    db.batch_execute(
        "UPDATE sla.policies SET warn_at = NULL WHERE name = 'urgent';
         INSERT INTO tickets (id, priority, created_at)
         SELECT g, 'urgent', '2026-11-27 09:00-05'::timestamptz + g * interval '10 seconds'
           FROM generate_series(1, 2000) g;",
    )
    .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    // An application updates tickets in transactions of five, in descending
    // id order (against due processing's ascending order), holding each
    // ticket while it moves to the next.
    let app = {
        let mut app = cluster.connect();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for round in 0..60i64 {
                let mut tx = app.transaction().unwrap();
                let top = 2000 - (round * 131) % 1900;
                for step in 0..5i64 {
                    tx.execute(
                        "UPDATE tickets SET last_customer_message_at = '2026-11-27 16:50-05',
                                            priority = 'high' WHERE id = $1",
                        &[&(top - step * 7)],
                    )
                    .expect("application updates never deadlock with due processing");
                    std::thread::sleep(std::time::Duration::from_millis(3));
                }
                tx.commit().unwrap();
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let processors: Vec<_> = (0..2)
        .map(|_| {
            let mut client = cluster.connect();
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut applied = 0i64;
                // A session leaves out tickets it found held for a second:
                // once the application is done, go on until a call made
                // after that second finds nothing.
                let mut idle_since: Option<std::time::Instant> = None;
                loop {
                    let n: i32 = client
                        .query_one("SELECT sla.process_due('2026-11-30 17:00-05', 40)", &[])
                        .expect("process_due never fails, never deadlocks")
                        .get(0);
                    applied += i64::from(n);
                    if n > 0 || !done.load(Ordering::Relaxed) {
                        idle_since = None;
                        continue;
                    }
                    let since = *idle_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > std::time::Duration::from_millis(1200) {
                        break applied;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            })
        })
        .collect();
    app.join().unwrap();
    let applied: i64 = processors.into_iter().map(|p| p.join().unwrap()).sum();
    assert_eq!(process_due(&mut db, "2026-11-30 17:00-05"), 0);
    let notified = int(
        &mut db,
        "SELECT count(*) FROM sla.notifications WHERE kind <> 'customer_feedback'",
    );
    assert_eq!(notified, 4000, "both clocks of every ticket breached");
    assert_eq!(
        applied, 4000,
        "each transition applied by exactly one session"
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM tickets WHERE sla_status = 'breached'"
        ),
        2000
    );
    // Each breach notified once per step and kind.
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM (SELECT DISTINCT ticket_id, metric, cycle, step, kind FROM sla.notifications) d"),
        int(&mut db, "SELECT count(*) FROM sla.notifications")
    );
}

#[test]
fn due_processing_skips_tickets_an_application_holds() {
    let cluster = Cluster::start("skip-locked", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "UPDATE sla.policies SET warn_at = NULL WHERE name = 'urgent';
         INSERT INTO tickets (id, priority, created_at)
         VALUES (1, 'urgent', '2026-11-27 16:00'), (2, 'urgent', '2026-11-27 16:01');",
    )
    .unwrap();
    // The application holds ticket 2 in an open transaction.
    let mut app = cluster.connect();
    app.batch_execute(
        "BEGIN; UPDATE tickets SET last_customer_message_at = '2026-11-27 16:30-05' WHERE id = 2",
    )
    .unwrap();
    // Due processing handles ticket 1 and leaves ticket 2 without waiting
    // (waiting there while holding ticket 1 is how a deadlock starts).
    let mut processor = cluster.connect();
    let worker = std::thread::spawn(move || -> i32 {
        processor
            .query_one("SELECT sla.process_due('2026-11-27 16:45-05')", &[])
            .unwrap()
            .get(0)
    });
    let started = std::time::Instant::now();
    while !worker.is_finished() && started.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        worker.is_finished(),
        "process_due waited for the application's lock"
    );
    assert_eq!(worker.join().unwrap(), 1, "ticket 1's first response only");
    // The application goes on, touching the ticket due processing just did.
    app.batch_execute(
        "SET lock_timeout = '5s';
         UPDATE tickets SET priority = 'high' WHERE id = 1;
         COMMIT;",
    )
    .expect("the application is not blocked either");
    // Ticket 2 is still due and is handled by the next call.
    assert_eq!(process_due(&mut db, "2026-11-27 16:45-05"), 1);
    assert_eq!(
        text(&mut db, "SELECT string_agg(ticket_id, ',' ORDER BY ticket_id) FROM sla.notifications WHERE kind = 'breached'"),
        "1,2"
    );
}

/// Recomputations and due processing keep the plan of their clock read for
/// the session's life. Made while `sla.clocks` was nearly empty, it must
/// still probe by key once the table has grown: a scan or hash of the whole
/// table would then run for every ticket. (One ticket's clocks are read,
/// and changed clocks written, without a plan, through the table access
/// method.)
#[test]
fn kept_clock_plans_probe_by_key_even_when_made_on_an_empty_table() {
    // No autovacuum: its ANALYZE would make the session plan again.
    let cluster = Cluster::start("kept-plans", &["autovacuum = off"]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "INSERT INTO tickets (id, created_at) VALUES (1, '2026-11-30 09:00'), (2, '2026-11-30 09:00');
         UPDATE sla.policies SET first_response = '5 hours' WHERE name = 'default';
         UPDATE tickets SET last_agent_reply_at = '2026-11-30 09:05' WHERE id = 1;
         INSERT INTO tickets (id, created_at)
         SELECT g, '2026-11-30 09:00' FROM generate_series(3, 20000) g;
         LOAD 'auto_explain';
         SET auto_explain.log_min_duration = 0;
         SET auto_explain.log_nested_statements = on;
         DO $$ BEGIN RAISE WARNING 'kept plans: from here'; END $$;
         UPDATE tickets SET last_agent_reply_at = '2026-11-30 09:05' WHERE id IN (2, 3);
         UPDATE sla.policies SET first_response = '6 hours' WHERE name = 'default';",
    )
    .unwrap();
    assert!(int(&mut db, "SELECT count(*) FROM sla.clocks") >= 20000);
    let log = cluster.server_log();
    let plans = &log[log.find("kept plans: from here").expect("marker logged")..];
    let clock_plans: Vec<&str> = plans
        .split("duration:")
        // The kept statements: those reading their tickets from arrays,
        // and the read of one ticket's clocks.
        .filter(|plan| {
            plan.contains("sla.clocks")
                && (plan.contains("unnest(") || plan.contains("c.ticket_id = $2::text"))
        })
        .collect();
    assert!(
        clock_plans.len() >= 3,
        "the recomputation's clock reads were explained:\n{plans}"
    );
    for plan in clock_plans {
        assert!(
            !plan.contains("Seq Scan on clocks")
                && !plan.contains("Hash Join")
                && !plan.contains("Merge Join"),
            "a kept plan scans sla.clocks:\n{plan}"
        );
    }
}

/// One policy on 24/7 time (first response in an hour, resolution in
/// eight) and a tracked table `tickets` with tickets 1 to `count`.
fn small_desk(db: &mut Client, count: i64) {
    db.batch_execute(&format!(
        "INSERT INTO sla.policies (name, first_response, resolution) VALUES ('desk', '1 hour', '8 hours');
         CREATE TABLE tickets (id bigint PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(),
             status text NOT NULL DEFAULT 'open', last_customer_message_at timestamptz,
             last_agent_reply_at timestamptz);
         SELECT sla.track('tickets');
         INSERT INTO tickets (id) SELECT g FROM generate_series(1, {count}) g;"
    ))
    .unwrap();
}

/// A policy edit that recomputes many tickets says how far it is every 5
/// seconds, and the total at the end. 150,000 tickets take about 12 s to
/// recompute with the debug build the tests use (60,000 took 5 s).
#[test]
fn a_long_recomputation_says_how_far_it_is() {
    let cluster = Cluster::start("recompute-progress", &[]);
    let (mut db, notices) = cluster.connect_keeping_notices();
    small_desk(&mut db, 150_000);
    notices.lock().unwrap().clear();
    db.batch_execute("UPDATE sla.policies SET resolution = '9 hours'")
        .unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE metric = 'resolution'
                AND due_at = started_at + interval '9 hours'"
        ),
        150_000
    );
    let notices = notices.lock().unwrap().clone();
    let progress: Vec<&String> = notices
        .iter()
        .filter(|n| n.starts_with("pg_sla: recomputing the SLA clocks of table public.tickets: "))
        .collect();
    assert!(!progress.is_empty(), "{notices:?}");
    assert!(
        progress.iter().all(|n| n.ends_with(" of 150000 tickets")),
        "{progress:?}"
    );
    assert!(
        notices.last().is_some_and(|n| n.starts_with(
            "pg_sla: the SLA clocks of the 150000 tickets of table public.tickets are recomputed ("
        )),
        "{notices:?}"
    );
}

/// The clock changes of an UPDATE's tickets are written together at the
/// end of the statement: an UPDATE that fails midway, its error caught,
/// leaves every clock as it was, and the next statement's changes are its
/// own.
#[test]
fn an_update_that_fails_midway_leaves_every_clock_as_it_was() {
    let cluster = Cluster::start("deferred-clocks", &[]);
    let mut db = cluster.connect();
    small_desk(&mut db, 5);
    db.batch_execute(
        "CREATE FUNCTION refuse_ticket_3() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.id = 3 THEN RAISE EXCEPTION 'ticket 3 may not change'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_ticket_3 AFTER UPDATE ON tickets
             FOR EACH ROW EXECUTE FUNCTION refuse_ticket_3();",
    )
    .unwrap();
    let achieved =
        "SELECT count(*) FROM sla.clocks WHERE metric = 'first_response' AND status = 'achieved'";
    db.batch_execute(
        "DO $$
         BEGIN
             BEGIN
                 UPDATE tickets SET last_agent_reply_at = now();
             EXCEPTION WHEN raise_exception THEN NULL;
             END;
             UPDATE tickets SET status = 'pending' WHERE id = 5;
         END $$",
    )
    .unwrap();
    assert_eq!(int(&mut db, achieved), 0);
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM tickets WHERE last_agent_reply_at IS NOT NULL"
        ),
        0
    );
    // Without the failing row, all five replies count, once each.
    db.batch_execute("UPDATE tickets SET last_agent_reply_at = now() WHERE id <> 3")
        .unwrap();
    assert_eq!(int(&mut db, achieved), 4);
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(id || ' ' || sla_status, ', ' ORDER BY id) FROM tickets"
        ),
        "1 running, 2 running, 3 running, 4 running, 5 running"
    );
}

/// A trigger of the application's that runs an UPDATE of tickets in a
/// block whose error it catches writes the clock changes its statement
/// kept so far, then rolls that write back: they must be kept again and
/// written at the end of the statement all the same.
#[test]
fn clock_changes_written_by_a_nested_update_that_is_rolled_back_are_kept() {
    let cluster = Cluster::start("deferred-nested", &[]);
    let mut db = cluster.connect();
    small_desk(&mut db, 3);
    db.batch_execute(
        "CREATE FUNCTION touch_and_fail() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             BEGIN
                 UPDATE tickets SET status = status WHERE id = -1;
                 RAISE EXCEPTION 'audit unavailable';
             EXCEPTION WHEN raise_exception THEN NULL;
             END;
             RETURN NULL;
         END $$;
         CREATE TRIGGER touch_and_fail AFTER UPDATE ON tickets
             FOR EACH ROW EXECUTE FUNCTION touch_and_fail();",
    )
    .unwrap();
    db.batch_execute("UPDATE tickets SET last_agent_reply_at = now() WHERE id IN (1, 2)")
        .unwrap();
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(ticket_id || ' ' || status, ', ' ORDER BY ticket_id)
               FROM sla.clocks WHERE metric = 'first_response'"
        ),
        "1 achieved, 2 achieved, 3 running"
    );
}

/// A ticket's clocks are read, changed and written alike whether pg_sla
/// reads them through the primary key directly or, with system indexes
/// ignored (where that read would scan the whole table), through SPI.
#[test]
fn an_update_changes_the_same_clocks_with_system_indexes_ignored() {
    let cluster = Cluster::start("clock-read-paths", &[]);
    let mut db = cluster.connect();
    small_desk(&mut db, 3);
    let mut ignoring = Client::connect(
        &format!(
            "{} options='-c ignore_system_indexes=on'",
            cluster.connection_string("postgres", "postgres")
        ),
        postgres::NoTls,
    )
    .unwrap();
    assert_eq!(text(&mut ignoring, "SHOW ignore_system_indexes"), "on");
    let reply = "UPDATE tickets SET last_agent_reply_at = created_at + interval '10 minutes',
                                    status = 'closed' WHERE id = $1";
    db.execute(reply, &[&1_i64]).unwrap();
    ignoring.execute(reply, &[&2_i64]).unwrap();
    let clocks = |db: &mut Client, id: &str| {
        text(
            db,
            &format!(
                // The reply stops the first response 10 minutes in; closing
                // stops the resolution at the present.
                "SELECT string_agg(metric || ' ' || status || ' '
                                   || CASE metric WHEN 'first_response' THEN (stopped_at - started_at)::text
                                                  ELSE (stopped_at IS NOT NULL)::text END,
                                   ', ' ORDER BY metric)
                   FROM sla.clocks WHERE ticket_id = '{id}'"
            ),
        )
    };
    let direct = clocks(&mut db, "1");
    assert_eq!(
        direct,
        "first_response achieved 00:10:00, resolution achieved true"
    );
    assert_eq!(clocks(&mut db, "2"), direct);
}
