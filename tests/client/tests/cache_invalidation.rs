//! Edits reach other sessions' calendar caches in the harder cases: between
//! statements of one multi-statement message, and when the rows arrive by
//! logical replication.
use std::time::Duration;

use pg_sla_client_tests::{wait_for, Cluster};
use postgres::{Client, NoTls, SimpleQueryMessage};

const CALENDAR: &str = r#"{"timezone": "UTC", "hours": {"sat": ["09:00-17:00"]}}"#;
const CLOSED_SATURDAY: &str = r#"{"timezone": "UTC", "hours": {"sun": ["09:00-17:00"]}}"#;
const SATURDAY_NOON: &str = "SELECT sla.is_business_time('desk', '2026-11-28 12:00+00')::text";

fn values(messages: Vec<SimpleQueryMessage>) -> Vec<String> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_string()),
            _ => None,
        })
        .collect()
}

fn waiting_on_advisory_lock(db: &mut Client) -> Option<()> {
    let waiting: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            &[],
        )
        .unwrap()
        .get(0);
    (waiting > 0).then_some(())
}

#[test]
fn the_next_statement_of_the_same_message_sees_a_commit() {
    let cluster = Cluster::start("cache-message", &[]);
    let mut editor = cluster.connect();
    editor
        .execute(
            "INSERT INTO sla.calendars (name, definition) VALUES ('desk', $1::text::jsonb)",
            &[&CALENDAR],
        )
        .unwrap();
    editor.batch_execute("SELECT pg_advisory_lock(1)").unwrap();

    // One message, one implicit transaction, one statement start time: the
    // reader caches the calendar, waits for the lock, then asks again.
    let mut reader = cluster.connect();
    let message = format!("{SATURDAY_NOON}; SELECT pg_advisory_lock(1)::text; {SATURDAY_NOON}");
    let pending = std::thread::spawn(move || values(reader.simple_query(&message).unwrap()));

    let mut observer = cluster.connect();
    wait_for(
        "the reader to wait on the lock",
        Duration::from_secs(30),
        || waiting_on_advisory_lock(&mut observer),
    );
    editor
        .execute(
            "UPDATE sla.calendars SET definition = $1::text::jsonb WHERE name = 'desk'",
            &[&CLOSED_SATURDAY],
        )
        .unwrap();
    editor
        .batch_execute("SELECT pg_advisory_unlock(1)")
        .unwrap();

    let results = pending.join().unwrap();
    // pg_advisory_lock returns void, which reads as an empty string.
    assert_eq!(results, ["true", "", "false"]);
}

#[test]
fn edits_arriving_by_logical_replication_reach_the_caches() {
    let cluster = Cluster::start("cache-replication", &["wal_level = logical"]);
    let mut publisher = cluster.connect();
    publisher
        .execute(
            "INSERT INTO sla.calendars (name, definition) VALUES ('desk', $1::text::jsonb)",
            &[&CALENDAR],
        )
        .unwrap();
    for statement in [
        "CREATE DATABASE subscriber",
        "CREATE PUBLICATION calendars FOR TABLE sla.calendars",
        "SELECT pg_create_logical_replication_slot('calendars', 'pgoutput')",
    ] {
        publisher.batch_execute(statement).unwrap();
    }

    let subscriber_db = cluster.connection_string("subscriber", "postgres");
    let mut subscriber = Client::connect(&subscriber_db, NoTls).unwrap();
    // A subscription to a database of the same cluster needs its slot made
    // beforehand (above), or CREATE SUBSCRIPTION waits for itself.
    subscriber.batch_execute("CREATE EXTENSION pg_sla").unwrap();
    subscriber
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION calendars CONNECTION '{}' PUBLICATION calendars
                 WITH (create_slot = false, slot_name = 'calendars')",
            cluster.connection_string("postgres", "postgres")
        ))
        .unwrap();
    let mut reader = Client::connect(&subscriber_db, NoTls).unwrap();
    let open = |db: &mut Client| -> Option<String> {
        db.query_opt(SATURDAY_NOON, &[])
            .ok()
            .flatten()
            .map(|row| row.get(0))
    };
    wait_for("the initial copy", Duration::from_secs(60), || {
        open(&mut reader).filter(|v| v == "true")
    });

    publisher
        .execute(
            "UPDATE sla.calendars SET definition = $1::text::jsonb WHERE name = 'desk'",
            &[&CLOSED_SATURDAY],
        )
        .unwrap();
    // Wait, in another session, for the row to arrive; the reader's next
    // statement must then see it through its cache.
    wait_for("the update to be applied", Duration::from_secs(60), || {
        let row = subscriber
            .query_one(
                "SELECT definition::text FROM sla.calendars WHERE name = 'desk'",
                &[],
            )
            .unwrap();
        row.get::<_, String>(0).contains("sun").then_some(())
    });
    assert_eq!(open(&mut reader).as_deref(), Some("false"));
}

#[test]
fn a_long_lived_session_follows_settings_after_the_extension_is_created_again() {
    let cluster = Cluster::start("cache-recreate", &[]);
    let mut pooled = cluster.connect();
    let mut admin = cluster.connect();
    let ticket_table = |name: &str| {
        format!(
            "CREATE TABLE {name} (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'open',
                 created_at timestamptz NOT NULL DEFAULT now(),
                 last_customer_message_at timestamptz, last_agent_reply_at timestamptz);"
        )
    };
    admin
        .batch_execute(&format!(
            "{} SELECT sla.track('old_tickets');
             INSERT INTO sla.calendars (name, definition)
             VALUES ('always', '{{\"timezone\": \"UTC\", \"hours\": {{\"mon\": [\"00:00-24:00\"]}}}}');
             INSERT INTO sla.policies (name, calendar, first_response) VALUES ('old', 'always', '1 hour');",
            ticket_table("old_tickets")
        ))
        .unwrap();
    // The pooled session caches settings and a calendar (learning where
    // pg_sla's tables are), then settings again once the extension is
    // dropped and created again, while its new tables are empty.
    pooled
        .batch_execute(
            "SELECT sla.process_due(); SELECT sla.is_business_time('always', now());
             INSERT INTO old_tickets (id) VALUES (1);",
        )
        .unwrap();
    admin
        .batch_execute("DROP EXTENSION pg_sla CASCADE; CREATE EXTENSION pg_sla;")
        .unwrap();
    pooled.batch_execute("SELECT sla.process_due()").unwrap();
    // Settings added now must reach it.
    admin
        .batch_execute(&format!(
            "{} SELECT sla.track('tickets');
             INSERT INTO sla.policies (name, first_response) VALUES ('fast', '1 hour');",
            ticket_table("tickets")
        ))
        .unwrap();
    pooled
        .batch_execute("INSERT INTO tickets (id) VALUES (1)")
        .unwrap();
    let status: Option<String> = pooled
        .query_one("SELECT sla_policy || ' ' || sla_status FROM tickets", &[])
        .unwrap()
        .get(0);
    assert_eq!(status.as_deref(), Some("fast running"));
}
