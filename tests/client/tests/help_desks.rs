//! Real help desks' tables, tracked as they are: integer states and
//! priorities, `timestamp without time zone` columns holding UTC (or a
//! local time), and an owner column that is NOT NULL, where one value means
//! nobody. The fixtures are written from the public facts of such schemas
//! (column names, types and codes); no `ALTER TABLE` touches them except
//! through `sla.track`.
use pg_sla_client_tests::{
    execute_at, query_int as int, query_rows as rows, query_text as text, sql_error, Client,
    Cluster,
};

/// A ticket table shaped like Zammad's: states and priorities are integer
/// references (state 1 new, 2 open, 3 pending reminder, 4 closed, 5 merged,
/// 6 removed, 7 pending close; priority 1 low, 2 normal, 3 high), times are
/// `timestamp(3) without time zone` holding UTC, as Rails writes them, and
/// `owner_id` is NOT NULL, user 1 standing for nobody.
const ZAMMAD_TICKETS: &str = "
    CREATE TABLE ticket_states (id integer PRIMARY KEY, name varchar(250) NOT NULL);
    INSERT INTO ticket_states VALUES (1, 'new'), (2, 'open'), (3, 'pending reminder'),
        (4, 'closed'), (5, 'merged'), (6, 'removed'), (7, 'pending close');
    CREATE TABLE tickets (
        id serial PRIMARY KEY,
        group_id integer NOT NULL DEFAULT 1,
        priority_id integer NOT NULL DEFAULT 2,
        state_id integer NOT NULL REFERENCES ticket_states,
        owner_id integer NOT NULL DEFAULT 1,
        customer_id integer,
        number varchar(60) NOT NULL,
        title varchar(250) NOT NULL,
        first_response_at timestamp(3) without time zone,
        close_at timestamp(3) without time zone,
        last_contact_customer_at timestamp(3) without time zone,
        last_contact_agent_at timestamp(3) without time zone,
        created_at timestamp(3) without time zone NOT NULL,
        updated_at timestamp(3) without time zone NOT NULL);
    CREATE INDEX index_tickets_on_state_id ON tickets (state_id);
    CREATE INDEX index_tickets_on_owner_id ON tickets (owner_id);";

/// Policies on 24/7 time: high priority (3) answered in 30 minutes and
/// solved in 4 hours; the rest in 2 and 8 hours, the owner released at
/// half of the first response; pending states pause.
const POLICIES: &str = "
    INSERT INTO sla.policies (name, position, conditions, first_response, resolution,
                              release_ownership_at, pause_statuses)
    VALUES ('high', 1, '{\"priority_id\": 3}', '30 minutes', '4 hours', NULL, '{3,7}'),
           ('desk', 2, '{}', '2 hours', '8 hours', 0.5, '{3,7}');";

const TRACK_ZAMMAD: &str = "SELECT sla.track('tickets',
    status_column => 'state_id', closed_statuses => '{4,5,6}',
    customer_message_at_column => 'last_contact_customer_at',
    agent_reply_at_column => 'last_contact_agent_at',
    assignee_column => 'owner_id', unassigned_value => '1',
    timestamp_zone => 'UTC')";

/// The application's own write, at a time it gives in UTC (as Rails
/// does), whatever the session's zone.
fn at(db: &mut Client, utc: &str, statement: &str) {
    execute_at(db, &format!("{utc}Z"), statement);
}

fn clocks(db: &mut Client) -> Vec<String> {
    rows(
        db,
        "SELECT ticket_id || ' ' || metric || ' ' || status || ' ' || coalesce(to_char(due_at AT TIME ZONE 'UTC', 'HH24:MI'), '-')
           FROM sla.clocks ORDER BY ticket_id::int, metric",
    )
}

#[test]
fn a_zammad_shaped_desk_is_tracked_unchanged_and_its_day_gives_the_hand_worked_deadlines() {
    let cluster = Cluster::start("zammad", &[]);
    let mut db = cluster.connect();
    // The session's zone must not matter: the columns hold UTC.
    db.batch_execute("SET TimeZone = 'America/New_York'")
        .unwrap();
    db.batch_execute(ZAMMAD_TICKETS).unwrap();
    db.batch_execute(POLICIES).unwrap();
    let columns_before = int(
        &mut db,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'tickets'::regclass AND attnum > 0",
    );
    assert_eq!(int(&mut db, TRACK_ZAMMAD), 0);
    // What sla.track added, and nothing else.
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'tickets'::regclass AND attnum > 0"
        ),
        columns_before + 4
    );

    // Monday 09:00 UTC: five tickets, as the application inserts them.
    at(
        &mut db,
        "2026-11-30 09:00",
        "INSERT INTO tickets (state_id, owner_id, priority_id, number, title, created_at, updated_at)
         VALUES (1, 1, 2, '31001', 'Printer', '2026-11-30 09:00:00.000', '2026-11-30 09:00:00.000'),
                (2, 7, 2, '31002', 'VPN', '2026-11-30 09:00:00.000', '2026-11-30 09:00:00.000'),
                (2, 7, 2, '31003', 'Mail', '2026-11-30 09:00:00.000', '2026-11-30 09:00:00.000'),
                (2, 8, 2, '31004', 'Invoice', '2026-11-30 09:00:00.000', '2026-11-30 09:00:00.000'),
                (2, 8, 3, '31005', 'Outage', '2026-11-30 09:00:00.000', '2026-11-30 09:00:00.000')",
    );
    assert_eq!(
        clocks(&mut db),
        [
            "1 first_response running 11:00",
            "1 resolution running 17:00",
            "2 first_response running 11:00",
            "2 resolution running 17:00",
            "3 first_response running 11:00",
            "3 resolution running 17:00",
            "4 first_response running 11:00",
            "4 resolution running 17:00",
            "5 first_response running 09:30",
            "5 resolution running 13:00",
        ]
    );
    // 09:20: an agent answers ticket 3 and the outage; Zammad writes the
    // contact time and the state with the same UPDATE.
    at(
        &mut db,
        "2026-11-30 09:20",
        "UPDATE tickets SET last_contact_agent_at = '2026-11-30 09:20:00.000',
                first_response_at = '2026-11-30 09:20:00.000', updated_at = '2026-11-30 09:20:00.000'
          WHERE id IN (3, 5)",
    );
    // 10:00: ticket 3 waits for the customer (pending reminder).
    at(
        &mut db,
        "2026-11-30 10:00",
        "UPDATE tickets SET state_id = 3, updated_at = '2026-11-30 10:00:00.000' WHERE id = 3",
    );
    // 10:30: the owners of unanswered tickets are released to nobody (1).
    assert_eq!(
        int(&mut db, "SELECT sla.process_due('2026-11-30 10:30Z')"),
        3
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT id || ' ' || owner_id FROM tickets ORDER BY id"
        ),
        ["1 1", "2 1", "3 7", "4 1", "5 8"]
    );
    // 10:45: ticket 4 is closed before its first response was due.
    at(
        &mut db,
        "2026-11-30 10:45",
        "UPDATE tickets SET state_id = 4, close_at = '2026-11-30 10:45:00.000' WHERE id = 4",
    );
    // 12:00: the customer of ticket 3 answers; it is open again, its
    // resolution deadline two hours later than it was.
    at(
        &mut db,
        "2026-11-30 12:00",
        "UPDATE tickets SET state_id = 2, last_contact_customer_at = '2026-11-30 12:00:00.000',
                updated_at = '2026-11-30 12:00:00.000' WHERE id = 3",
    );
    assert_eq!(
        int(&mut db, "SELECT sla.process_due('2026-11-30 13:30Z')"),
        3
    );
    assert_eq!(
        clocks(&mut db),
        [
            "1 first_response breached 11:00",
            "1 resolution running 17:00",
            "2 first_response breached 11:00",
            "2 resolution running 17:00",
            "3 first_response achieved 11:00",
            "3 resolution running 19:00",
            "4 first_response cancelled 11:00",
            "4 resolution achieved 17:00",
            "5 first_response achieved 09:30",
            "5 resolution breached 13:00",
        ]
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT id || ' ' || sla_policy || ' ' || sla_status || ' ' || coalesce(to_char(sla_due_at AT TIME ZONE 'UTC', 'HH24:MI'), '-')
               FROM tickets ORDER BY id"
        ),
        [
            "1 desk breached 17:00",
            "2 desk breached 17:00",
            "3 desk running 19:00",
            "4 desk achieved -",
            "5 high breached -",
        ]
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT ticket_id || ' ' || metric || ' ' || kind FROM sla.notifications
              ORDER BY ticket_id::int, metric, kind"
        ),
        [
            "1 first_response breached",
            "1 first_response ownership_released",
            "2 first_response breached",
            "2 first_response ownership_released",
            "4 first_response ownership_released",
            "5 resolution breached",
        ]
    );
    // The day's report, as worked by hand: compliance counts the met
    // clocks against the met, missed and breached ones.
    assert_eq!(
        rows(
            &mut db,
            "SELECT concat_ws(' ', policy, metric, started, achieved, missed, cancelled, open,
                              breached_now, coalesce(compliance_pct::text, '-'),
                              coalesce(avg_time_to_stop::text, '-'))
               FROM sla.report('2026-11-30', '2026-12-01') ORDER BY policy, metric"
        ),
        [
            "desk first_response 4 1 0 1 2 2 33.3 00:20:00",
            "desk resolution 4 1 0 0 3 0 100.0 01:45:00",
            "high first_response 1 1 0 0 0 0 100.0 00:20:00",
            "high resolution 1 0 0 0 1 1 0.0 -",
        ]
    );
}

#[test]
fn times_without_time_zone_are_read_in_the_zone_given_as_at_time_zone_reads_them() {
    let cluster = Cluster::start("local-times", &[]);
    let mut db = cluster.connect();
    db.batch_execute(
        "INSERT INTO sla.policies (name, first_response) VALUES ('p', '1 hour');
         CREATE TABLE tickets (id int PRIMARY KEY, status smallint NOT NULL DEFAULT 0,
             created_at timestamp NOT NULL, replied_at timestamp, asked_at timestamptz);
         SELECT sla.track('tickets', closed_statuses => '{1}', customer_message_at_column => 'asked_at',
                          agent_reply_at_column => 'replied_at', timestamp_zone => 'America/New_York');
         -- 2026-11-01 01:30 happens twice in New York, 2026-03-08 02:30 never.
         INSERT INTO tickets (id, created_at) VALUES
             (1, '2026-11-30 09:00'), (2, '2026-11-01 01:30'), (3, '2026-03-08 02:30'),
             (4, 'infinity');",
    )
    .unwrap();
    assert_eq!(
        rows(
            &mut db,
            "SELECT c.ticket_id || ' ' || (c.started_at = (t.created_at AT TIME ZONE 'America/New_York'))
               FROM sla.clocks c JOIN tickets t ON t.id::text = c.ticket_id
              WHERE c.ticket_id <> '4' ORDER BY c.ticket_id"
        ),
        ["1 true", "2 true", "3 true"]
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT (started_at AT TIME ZONE 'UTC')::text FROM sla.clocks WHERE ticket_id = '1'"
        ),
        "2026-11-30 14:00:00"
    );
    // A reply in local time stops the clock at that local time.
    db.batch_execute("UPDATE tickets SET replied_at = '2026-11-30 09:40' WHERE id = 1")
        .unwrap();
    assert_eq!(
        text(
            &mut db,
            "SELECT status || ' ' || (stopped_at AT TIME ZONE 'UTC') FROM sla.clocks WHERE ticket_id = '1'"
        ),
        "achieved 2026-11-30 14:40:00"
    );
    // An infinite creation time reads as none: the write goes through.
    assert_eq!(int(&mut db, "SELECT count(*) FROM tickets WHERE id = 4"), 1);
}

/// Nothing of pg_sla is left on the table: no tracking row, no column, no
/// trigger.
fn assert_untouched(db: &mut Client) {
    assert_eq!(int(db, "SELECT count(*) FROM sla.tracked_tables"), 0);
    assert_eq!(
        int(
            db,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'tickets'::regclass AND attname LIKE 'sla%'"
        ),
        0
    );
    assert_eq!(
        int(
            db,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tickets'::regclass AND NOT tgisinternal"
        ),
        0
    );
}

#[test]
fn bad_statuses_zones_and_unassigned_values_are_refused_naming_them_and_change_nothing() {
    let cluster = Cluster::start("help-desk-refusals", &[]);
    let mut db = cluster.connect();
    db.batch_execute(ZAMMAD_TICKETS).unwrap();
    let track = |args: &str| {
        format!(
            "SELECT sla.track('tickets', status_column => 'state_id',
                 customer_message_at_column => 'last_contact_customer_at',
                 agent_reply_at_column => 'last_contact_agent_at', {args})"
        )
    };
    let cases = [
        (
            track("closed_statuses => '{4,closed}', assignee_column => 'owner_id', unassigned_value => '1'"),
            "22P02",
            "closed_statuses value \"closed\" is not a value of column \"state_id\" (integer) of table tickets",
        ),
        (
            // The default closed statuses are words, not states.
            track("assignee_column => 'owner_id', unassigned_value => '1'"),
            "22P02",
            "closed_statuses value \"solved\" is not a value of column \"state_id\" (integer)",
        ),
        (
            track("closed_statuses => '{4}', assignee_column => 'owner_id', unassigned_value => 'nobody'"),
            "22P02",
            "unassigned_value value \"nobody\" is not a value of column \"owner_id\" (integer) of table tickets",
        ),
        (
            track("closed_statuses => '{4}', assignee_column => 'owner_id'"),
            "22023",
            "assignee_column \"owner_id\" of table tickets is NOT NULL; releasing ownership sets it to NULL",
        ),
        (
            track("closed_statuses => '{4}', unassigned_value => '1'"),
            "22023",
            "unassigned_value needs an assignee_column",
        ),
        (
            track("closed_statuses => '{4}', timestamp_zone => 'Mars/Olympus_Mons'"),
            "22023",
            "timestamp_zone \"Mars/Olympus_Mons\" is not a time zone PostgreSQL knows",
        ),
        (
            // An abbreviation: its meaning depends on the session's
            // timezone_abbreviations.
            track("closed_statuses => '{4}', timestamp_zone => 'CEST'"),
            "22023",
            "timestamp_zone \"CEST\" is not a time zone PostgreSQL knows",
        ),
        (
            track("closed_statuses => '{4}', timestamp_zone => ''"),
            "22023",
            "timestamp_zone \"\" is not a time zone PostgreSQL knows",
        ),
    ];
    for (statement, code, message) in &cases {
        let (got_code, got_message) = sql_error(db.batch_execute(statement));
        assert_eq!(got_code, *code, "{statement}: {got_message}");
        assert!(got_message.contains(message), "{statement}: {got_message}");
        assert_untouched(&mut db);
    }
    // A zone for a table without such columns.
    db.batch_execute(
        "CREATE TABLE aware (id int PRIMARY KEY, status text, created_at timestamptz NOT NULL,
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz)",
    )
    .unwrap();
    let (code, message) =
        sql_error(db.batch_execute("SELECT sla.track('aware', timestamp_zone => 'UTC')"));
    assert_eq!(code, "22023", "{message}");
    assert!(
        message.contains("timestamp_zone is for timestamp without time zone columns, and the time columns of table aware are all timestamp with time zone"),
        "{message}"
    );
    assert_untouched(&mut db);
    // A status column of a type whose values do not print as one word.
    db.batch_execute(
        "CREATE TABLE odd (id int PRIMARY KEY, status jsonb, created_at timestamptz NOT NULL,
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz)",
    )
    .unwrap();
    let (code, message) = sql_error(db.batch_execute("SELECT sla.track('odd')"));
    assert_eq!(code, "42804", "{message}");
    assert!(
        message.contains("status_column \"status\" of table odd has type jsonb; expected text, varchar, an enum, smallint, integer, bigint or boolean"),
        "{message}"
    );
}

#[test]
fn boolean_and_enum_statuses_are_kept_as_they_print() {
    let cluster = Cluster::start("status-types", &[]);
    let mut db = cluster.connect();
    db.batch_execute(
        "INSERT INTO sla.policies (name, first_response, resolution) VALUES ('p', '1 hour', '1 day');
         CREATE TYPE ticket_status AS ENUM ('open', 'pending', 'solved');
         CREATE TABLE flags (id int PRIMARY KEY, done boolean NOT NULL DEFAULT false,
             created_at timestamptz NOT NULL DEFAULT now(),
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         CREATE TABLE enums (id int PRIMARY KEY, status ticket_status NOT NULL DEFAULT 'open',
             created_at timestamptz NOT NULL DEFAULT now(),
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         SELECT sla.track('flags', status_column => 'done', closed_statuses => '{true}');
         SELECT sla.track('enums', closed_statuses => '{solved}');
         INSERT INTO flags (id) VALUES (1), (2);
         INSERT INTO enums (id) VALUES (1), (2);
         UPDATE flags SET done = true WHERE id = 1;
         UPDATE enums SET status = 'solved' WHERE id = 1;",
    )
    .unwrap();
    assert_eq!(
        rows(
            &mut db,
            "SELECT ticket_table || ' ' || closed_statuses::text FROM sla.tracked_tables ORDER BY 1"
        ),
        ["enums {solved}", "flags {t}"]
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT 'flags ' || id || ' ' || sla_status FROM flags
             UNION ALL SELECT 'enums ' || id || ' ' || sla_status FROM enums ORDER BY 1"
        ),
        [
            "enums 1 achieved",
            "enums 2 running",
            "flags 1 achieved",
            "flags 2 running"
        ]
    );
    // A policy edit recomputes only the open tickets, found by the printed
    // status.
    db.batch_execute("UPDATE sla.policies SET resolution = '2 days'")
        .unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE metric = 'resolution' AND status = 'running'
                AND due_at = started_at + interval '2 days'"
        ),
        2
    );
}

#[test]
fn negated_and_null_conditions_choose_policies_on_real_rows() {
    let cluster = Cluster::start("negated-conditions", &[]);
    let mut db = cluster.connect();
    db.batch_execute(
        "INSERT INTO sla.policies (name, position, conditions, first_response) VALUES
             ('unassigned', 1, '{\"assignee_id\": null}', '10 minutes'),
             ('not_chat', 2, '{\"channel\": {\"not\": [\"chat\", null]}, \"assignee_id\": {\"not\": null}}', '1 hour'),
             ('rest', 3, '{}', '1 day');
         CREATE TABLE tickets (id int PRIMARY KEY, status integer NOT NULL DEFAULT 0,
             channel text, assignee_id integer, created_at timestamptz NOT NULL DEFAULT now(),
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         SELECT sla.track('tickets', closed_statuses => '{1}');
         INSERT INTO tickets (id, channel, assignee_id) VALUES
             (1, 'email', NULL), (2, 'email', 5), (3, 'chat', 5), (4, NULL, 5);",
    )
    .unwrap();
    assert_eq!(
        rows(
            &mut db,
            "SELECT id || ' ' || sla_policy FROM tickets ORDER BY id"
        ),
        ["1 unassigned", "2 not_chat", "3 rest", "4 rest"]
    );
    // Written conditions are checked: an operator other than "not" is
    // refused, naming the path, and nothing changes.
    let (code, message) = sql_error(db.batch_execute(
        "UPDATE sla.policies SET conditions = '{\"channel\": {\"in\": [\"chat\"]}}' WHERE name = 'rest'",
    ));
    assert_eq!(code, "22023", "{message}");
    assert!(
        message.contains(
            "conditions.channel must be a value, an array of values or {\"not\": value or array}"
        ),
        "{message}"
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT conditions::text FROM sla.policies WHERE name = 'rest'"
        ),
        "{}"
    );
}

#[test]
fn condition_values_a_column_cannot_hold_are_refused_for_named_tables_and_warned_about_otherwise() {
    let cluster = Cluster::start("policy-fit", &[]);
    let (mut db, notices) = cluster.connect_keeping_notices();
    db.batch_execute(ZAMMAD_TICKETS).unwrap();
    db.batch_execute(TRACK_ZAMMAD).unwrap();
    // A policy for every table: a word for an integer priority only warns
    // (another tracked table may have a text priority).
    db.batch_execute(
        "INSERT INTO sla.policies (name, conditions, first_response) VALUES ('urgent', '{\"priority_id\": \"urgent\"}', '1 hour')",
    )
    .unwrap();
    let warned = notices.lock().unwrap().clone();
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(
        warned[0],
        "policy \"urgent\": conditions.priority_id value \"urgent\" never matches column \"priority_id\" (integer) of table public.tickets: it is not a value of type integer"
    );
    // Restricted to that table, the same values are refused, and nothing
    // changes.
    for (statement, message) in [
        (
            "UPDATE sla.policies SET ticket_tables = '{tickets}' WHERE name = 'urgent'",
            "policy \"urgent\": conditions.priority_id value \"urgent\" never matches column \"priority_id\" (integer) of table public.tickets: it is not a value of type integer",
        ),
        (
            "INSERT INTO sla.policies (name, conditions, first_response, ticket_tables) VALUES ('padded', '{\"priority_id\": \"03\"}', '1 hour', '{tickets}')",
            "policy \"padded\": conditions.priority_id value \"03\" never matches column \"priority_id\" (integer) of table public.tickets: the column prints it as \"3\"",
        ),
        (
            "INSERT INTO sla.policies (name, first_response, pause_statuses, ticket_tables) VALUES ('paused', '1 hour', '{pending}', '{tickets}')",
            "policy \"paused\": pause_statuses value \"pending\" never matches column \"state_id\" (integer) of table public.tickets",
        ),
    ] {
        let (code, got) = sql_error(db.batch_execute(statement));
        assert_eq!(code, "22P02", "{statement}: {got}");
        assert!(got.contains(message), "{statement}: {got}");
    }
    assert_eq!(
        rows(
            &mut db,
            "SELECT name || ' ' || coalesce(ticket_tables::text, 'all') FROM sla.policies"
        ),
        ["urgent all"]
    );
    // A negated value the column cannot hold refuses nothing: harmless.
    db.batch_execute(
        "INSERT INTO sla.policies (name, conditions, first_response, ticket_tables, enabled)
         VALUES ('negated', '{\"priority_id\": {\"not\": \"high\"}}', '1 hour', '{tickets}', false);
         DELETE FROM sla.policies WHERE name = 'negated';",
    )
    .unwrap();
    // Values as the column prints them are fine.
    db.batch_execute(
        "UPDATE sla.policies SET conditions = '{\"priority_id\": 3}', ticket_tables = '{tickets}' WHERE name = 'urgent'",
    )
    .unwrap();

    // Tracking a table that a restricted policy cannot match is refused.
    db.batch_execute(
        "CREATE TABLE later (id int PRIMARY KEY, status integer NOT NULL DEFAULT 0,
             created_at timestamptz NOT NULL DEFAULT now(),
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         INSERT INTO later (id) VALUES (1);
         INSERT INTO sla.policies (name, conditions, first_response, ticket_tables)
         VALUES ('later_open', '{\"status\": \"open\"}', '1 hour', '{later}');",
    )
    .unwrap();
    let (code, message) =
        sql_error(db.batch_execute("SELECT sla.track('later', closed_statuses => '{1}')"));
    assert_eq!(code, "22P02", "{message}");
    assert!(
        message.contains("policy \"later_open\": conditions.status value \"open\" never matches column \"status\" (integer) of table public.later"),
        "{message}"
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.tracked_tables WHERE ticket_table = 'later'::regclass"
        ),
        0
    );
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.clocks"), 0);
    // Fixed, it tracks; the restricted policies apply to their own tables
    // only.
    db.batch_execute(
        "UPDATE sla.policies SET conditions = '{\"status\": 0}' WHERE name = 'later_open';
         SELECT sla.track('later', closed_statuses => '{1}');
         INSERT INTO tickets (state_id, priority_id, number, title, created_at, updated_at)
         VALUES (1, 3, '1', 'x', '2026-11-30 09:00', '2026-11-30 09:00');",
    )
    .unwrap();
    assert_eq!(
        rows(
            &mut db,
            "SELECT 'tickets ' || coalesce(sla_policy, '-') FROM tickets
             UNION ALL SELECT 'later ' || coalesce(sla_policy, '-') FROM later"
        ),
        ["tickets urgent", "later later_open"]
    );
    // A dropped table leaves the lists that named it.
    db.batch_execute("DROP TABLE later").unwrap();
    assert_eq!(
        text(
            &mut db,
            "SELECT ticket_tables::text FROM sla.policies WHERE name = 'later_open'"
        ),
        "{}"
    );
}

/// A conversations table shaped like Chatwoot's: integer status (0 open,
/// 1 resolved, 2 pending, 3 snoozed) and priority (0 low to 3 urgent),
/// `timestamp without time zone` columns holding UTC, no per-ticket
/// message times, but `waiting_since`: set when the customer starts
/// waiting, cleared when an agent replies.
const CHATWOOT_CONVERSATIONS: &str = "
    CREATE TABLE conversations (
        id serial PRIMARY KEY,
        account_id integer NOT NULL,
        inbox_id integer NOT NULL,
        status integer NOT NULL DEFAULT 0,
        assignee_id integer,
        contact_id bigint,
        display_id integer NOT NULL,
        priority integer,
        snoozed_until timestamp without time zone,
        waiting_since timestamp without time zone,
        first_reply_created_at timestamp without time zone,
        last_activity_at timestamp without time zone NOT NULL,
        created_at timestamp(6) without time zone NOT NULL,
        updated_at timestamp(6) without time zone NOT NULL);
    CREATE INDEX index_conversations_on_status_and_account_id ON conversations (status, account_id);";

#[test]
fn a_chatwoot_shaped_inbox_is_tracked_through_waiting_since() {
    let cluster = Cluster::start("chatwoot", &[]);
    let mut db = cluster.connect();
    db.batch_execute(CHATWOOT_CONVERSATIONS).unwrap();
    db.batch_execute(
        "INSERT INTO sla.policies (name, first_response, next_response, resolution, pause_statuses)
         VALUES ('inbox', '1 hour', '30 minutes', '1 day', '{2,3}');
         SELECT sla.track('conversations', closed_statuses => '{1}',
             customer_message_at_column => NULL, agent_reply_at_column => NULL,
             waiting_since_column => 'waiting_since', assignee_column => 'assignee_id');",
    )
    .unwrap();
    // 09:00: two conversations; the customer waits from their start.
    at(
        &mut db,
        "2026-11-30 09:00",
        "INSERT INTO conversations (account_id, inbox_id, display_id, waiting_since, last_activity_at, created_at, updated_at)
         VALUES (1, 1, 1, '2026-11-30 09:00', '2026-11-30 09:00', '2026-11-30 09:00', '2026-11-30 09:00'),
                (1, 1, 2, '2026-11-30 09:00', '2026-11-30 09:00', '2026-11-30 09:00', '2026-11-30 09:00')",
    );
    // 09:40: an agent answers the first: the wait is cleared.
    at(
        &mut db,
        "2026-11-30 09:40",
        "UPDATE conversations SET waiting_since = NULL, first_reply_created_at = '2026-11-30 09:40',
                last_activity_at = '2026-11-30 09:40' WHERE id = 1",
    );
    // 10:00 the customer writes again, 10:20 the agent answers.
    at(
        &mut db,
        "2026-11-30 10:00",
        "UPDATE conversations SET waiting_since = '2026-11-30 10:00' WHERE id = 1",
    );
    // An update that touches nothing the clocks read changes nothing.
    at(
        &mut db,
        "2026-11-30 10:10",
        "UPDATE conversations SET last_activity_at = '2026-11-30 10:10', priority = 2 WHERE id = 1",
    );
    at(
        &mut db,
        "2026-11-30 10:20",
        "UPDATE conversations SET waiting_since = NULL WHERE id = 1",
    );
    assert_eq!(
        int(&mut db, "SELECT sla.process_due('2026-11-30 11:00Z')"),
        1
    );
    // 11:05 the customer writes; 11:10 snoozed, 11:50 open again; 12:00
    // resolved while the customer waits.
    at(
        &mut db,
        "2026-11-30 11:05",
        "UPDATE conversations SET waiting_since = '2026-11-30 11:05' WHERE id = 1",
    );
    at(
        &mut db,
        "2026-11-30 11:10",
        "UPDATE conversations SET status = 3, snoozed_until = '2026-11-30 11:50' WHERE id = 1",
    );
    at(
        &mut db,
        "2026-11-30 11:50",
        "UPDATE conversations SET status = 0, snoozed_until = NULL WHERE id = 1",
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT to_char(due_at AT TIME ZONE 'UTC', 'HH24:MI') FROM sla.clocks
              WHERE ticket_id = '1' AND metric = 'next_response' AND cycle = 2"
        ),
        "12:15"
    );
    at(
        &mut db,
        "2026-11-30 12:00",
        "UPDATE conversations SET status = 1 WHERE id = 1",
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT ticket_id || ' ' || metric || ' ' || cycle || ' ' || status || ' '
                    || to_char(due_at AT TIME ZONE 'UTC', 'DD HH24:MI')
                    || coalesce(' ' || to_char(stopped_at AT TIME ZONE 'UTC', 'HH24:MI'), '')
               FROM sla.clocks ORDER BY ticket_id::int, metric, cycle"
        ),
        [
            "1 first_response 1 achieved 30 10:00 09:40",
            "1 next_response 1 achieved 30 10:30 10:20",
            "1 next_response 2 cancelled 30 12:15 12:00",
            "1 resolution 1 achieved 01 09:40 12:00",
            "2 first_response 1 breached 30 10:00",
            "2 resolution 1 running 01 09:00",
        ]
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT ticket_id || ' ' || metric || ' ' || kind FROM sla.notifications ORDER BY id"
        ),
        ["2 first_response breached"]
    );
}

#[test]
fn waiting_since_is_checked_when_tracking() {
    let cluster = Cluster::start("waiting-since-refusals", &[]);
    let mut db = cluster.connect();
    db.batch_execute(CHATWOOT_CONVERSATIONS).unwrap();
    for (statement, code, message) in [
        (
            "SELECT sla.track('conversations', closed_statuses => '{1}', waiting_since_column => 'waiting_since')",
            "22023",
            "waiting_since_column replaces customer_message_at_column and agent_reply_at_column",
        ),
        (
            "SELECT sla.track('conversations', closed_statuses => '{1}', customer_message_at_column => NULL,
                 agent_reply_at_column => NULL, waiting_since_column => 'display_id')",
            "42804",
            "waiting_since_column \"display_id\" of table conversations has type integer",
        ),
        (
            "SELECT sla.track('conversations', closed_statuses => '{1}', customer_message_at_column => NULL,
                 agent_reply_at_column => NULL, waiting_since_column => 'waiting')",
            "42703",
            "waiting_since_column \"waiting\" is not a column of table conversations",
        ),
        (
            "SELECT sla.track('conversations', closed_statuses => '{1}', customer_message_at_column => NULL)",
            "22023",
            "customer_message_at_column and agent_reply_at_column go together",
        ),
    ] {
        let (got_code, got) = sql_error(db.batch_execute(statement));
        assert_eq!(got_code, code, "{statement}: {got}");
        assert!(got.contains(message), "{statement}: {got}");
        assert_eq!(int(&mut db, "SELECT count(*) FROM sla.tracked_tables"), 0);
    }
}

/// Messages shaped like Chatwoot's: `message_type` 0 incoming, 1 outgoing,
/// 2 activity, 3 template; `private` marks internal notes; `sender_type`
/// tells contacts, agents (`User`) and bots (`AgentBot`) apart.
const CHATWOOT_MESSAGES: &str = "
    CREATE TABLE messages (
        id bigserial PRIMARY KEY,
        content text,
        account_id integer NOT NULL,
        inbox_id integer NOT NULL,
        conversation_id integer NOT NULL,
        message_type integer NOT NULL,
        private boolean NOT NULL DEFAULT false,
        sender_type varchar,
        sender_id bigint,
        created_at timestamp(6) without time zone NOT NULL,
        updated_at timestamp(6) without time zone NOT NULL);
    CREATE INDEX index_messages_on_conversation_id ON messages (conversation_id);";

/// Inserts messages of conversations as (conversation, type, private,
/// sender type, UTC time), at that time.
fn messages(db: &mut Client, rows: &[(i32, i32, bool, &str, &str)]) {
    let values: Vec<String> = rows
        .iter()
        .map(|(conversation, kind, private, sender, at)| {
            format!("('x', 1, 1, {conversation}, {kind}, {private}, '{sender}', 1, '2026-11-30 {at}', '2026-11-30 {at}')")
        })
        .collect();
    let last = rows.last().map(|r| r.4).unwrap_or("09:00");
    at(
        db,
        &format!("2026-11-30 {last}"),
        &format!(
            "INSERT INTO messages (content, account_id, inbox_id, conversation_id, message_type, private,
                                   sender_type, sender_id, created_at, updated_at)
             VALUES {}",
            values.join(", ")
        ),
    );
}

#[test]
fn a_messages_table_drives_first_and_next_responses_and_ignores_notes_and_bots() {
    let cluster = Cluster::start("messages", &[]);
    let mut db = cluster.connect();
    db.batch_execute(CHATWOOT_CONVERSATIONS).unwrap();
    db.batch_execute(CHATWOOT_MESSAGES).unwrap();
    db.batch_execute(
        "INSERT INTO sla.policies (name, first_response, next_response, resolution, pause_statuses, ticket_tables)
         VALUES ('inbox', '1 hour', '30 minutes', '1 day', '{2,3}', '{conversations}');
         SELECT sla.track('conversations', closed_statuses => '{1}',
             customer_message_at_column => NULL, agent_reply_at_column => NULL,
             assignee_column => 'assignee_id');
         -- A message that was there before tracking (conversation 4 comes below).
         INSERT INTO messages (account_id, inbox_id, conversation_id, message_type, sender_type, created_at, updated_at)
         VALUES (1, 1, 4, 0, 'Contact', '2026-11-30 09:00', '2026-11-30 09:00'),
                (1, 1, 4, 1, 'User', '2026-11-30 09:05', '2026-11-30 09:05');",
    )
    .unwrap();
    at(
        &mut db,
        "2026-11-30 09:00",
        "INSERT INTO conversations (account_id, inbox_id, display_id, last_activity_at, created_at, updated_at)
         SELECT 1, 1, g, '2026-11-30 09:00', '2026-11-30 09:00', '2026-11-30 09:00' FROM generate_series(1, 2) g",
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT sla.track_messages('messages', 'conversations', 'conversation_id',
                 customer_message => '{\"message_type\": 0}',
                 agent_reply => '{\"message_type\": 1, \"private\": false, \"sender_type\": {\"not\": \"AgentBot\"}}')"
        ),
        2,
        "the messages already there are applied"
    );
    // Conversation 1, message by message: a bot's answer and an internal
    // note are not replies; the agent's is.
    messages(&mut db, &[(1, 0, false, "Contact", "09:00")]);
    messages(&mut db, &[(1, 1, false, "AgentBot", "09:10")]);
    messages(&mut db, &[(1, 1, true, "User", "09:20")]);
    assert_eq!(
        text(
            &mut db,
            "SELECT status FROM sla.clocks WHERE ticket_id = '1' AND metric = 'first_response'"
        ),
        "running"
    );
    messages(&mut db, &[(1, 1, false, "User", "09:40")]);
    messages(&mut db, &[(1, 0, false, "Contact", "10:00")]);
    messages(&mut db, &[(1, 2, false, "", "10:05")]);
    messages(&mut db, &[(1, 1, false, "User", "10:20")]);
    // Conversation 2's history in one statement; a reply to conversation 3,
    // which does not exist yet.
    messages(
        &mut db,
        &[
            (2, 0, false, "Contact", "09:00"),
            (2, 1, false, "User", "09:30"),
            (2, 0, false, "Contact", "09:50"),
            (2, 0, false, "Contact", "09:55"),
            (3, 1, false, "User", "09:15"),
            (2, 1, false, "User", "10:40"),
        ],
    );
    // Conversation 3's reply, and conversation 4's two messages applied
    // when tracking began, wait for their conversations.
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.early_messages"), 3);
    at(
        &mut db,
        "2026-11-30 10:45",
        "INSERT INTO conversations (id, account_id, inbox_id, display_id, last_activity_at, created_at, updated_at)
         VALUES (3, 1, 1, 3, '2026-11-30 09:00', '2026-11-30 09:00', '2026-11-30 09:00'),
                (4, 1, 1, 4, '2026-11-30 09:00', '2026-11-30 09:00', '2026-11-30 09:00')",
    );
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.early_messages"), 0);
    // Deleting a reply, or making it a note, changes no clock.
    db.batch_execute(
        "DELETE FROM messages WHERE conversation_id = 1 AND created_at = '2026-11-30 10:20';
         UPDATE messages SET private = true WHERE conversation_id = 2 AND created_at = '2026-11-30 09:30';",
    )
    .unwrap();
    assert_eq!(
        rows(
            &mut db,
            "SELECT ticket_id || ' ' || metric || ' ' || cycle || ' ' || status
                    || coalesce(' ' || to_char(stopped_at AT TIME ZONE 'UTC', 'HH24:MI'), '')
               FROM sla.clocks WHERE metric <> 'resolution' ORDER BY ticket_id::int, metric, cycle"
        ),
        [
            "1 first_response 1 achieved 09:40",
            "1 next_response 1 achieved 10:20",
            "2 first_response 1 achieved 09:30",
            "2 next_response 1 missed 10:40",
            "3 first_response 1 achieved 09:15",
            "4 first_response 1 achieved 09:05",
        ]
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT id || ' ' || sla_status FROM conversations ORDER BY id"
        ),
        ["1 running", "2 running", "3 running", "4 running"]
    );
}

#[test]
fn track_messages_refuses_bad_mappings_and_changes_nothing() {
    let cluster = Cluster::start("messages-refusals", &[]);
    let mut db = cluster.connect();
    db.batch_execute(CHATWOOT_CONVERSATIONS).unwrap();
    db.batch_execute(CHATWOOT_MESSAGES).unwrap();
    let track =
        |args: &str| format!("SELECT sla.track_messages('messages', 'conversations', {args})");
    let ok_conditions =
        "customer_message => '{\"message_type\": 0}', agent_reply => '{\"message_type\": 1}'";
    // Before the conversations are tracked.
    let (code, message) =
        sql_error(db.batch_execute(&track(&format!("'conversation_id', {ok_conditions}"))));
    assert_eq!(code, "55000", "{message}");
    db.batch_execute(
        "SELECT sla.track('conversations', closed_statuses => '{1}',
             customer_message_at_column => NULL, agent_reply_at_column => NULL)",
    )
    .unwrap();
    for (args, code, message) in [
        (format!("'conversation', {ok_conditions}"), "42703", "ticket_column \"conversation\" is not a column of table messages"),
        (format!("'private', {ok_conditions}"), "42804", "ticket_column \"private\" of table messages has type boolean"),
        (format!("'content', {ok_conditions}"), "42804", "ticket_column \"content\" of table messages has type text, and the id column \"id\" of table public.conversations has type integer: they must both be an integer type"),
        (format!("'conversation_id', created_at_column => 'sender_id', {ok_conditions}"), "42804", "created_at_column \"sender_id\" of table messages has type bigint"),
        ("'conversation_id', customer_message => '{\"kind\": 0}', agent_reply => '{\"message_type\": 1}'".to_owned(), "42703", "customer_message: column \"kind\" is not a column of table messages"),
        ("'conversation_id', customer_message => '{\"message_type\": \"incoming\"}', agent_reply => '{\"message_type\": 1}'".to_owned(), "22P02", "customer_message: conditions.message_type value 'incoming' never matches column \"message_type\" (integer)"),
        ("'conversation_id', customer_message => '{\"message_type\": 0}', agent_reply => '{\"message_type\": {\"in\": 1}}'".to_owned(), "22023", "agent_reply: conditions.message_type must be a value"),
        ("'conversation_id', customer_message => '{\"message_type\": 0}'".to_owned(), "22004", "agent_reply must not be NULL"),
    ] {
        let statement = track(&args);
        let (got_code, got) = sql_error(db.batch_execute(&statement));
        assert_eq!(got_code, code, "{statement}: {got}");
        assert!(got.contains(message), "{statement}: {got}");
        assert_eq!(int(&mut db, "SELECT count(*) FROM sla.tracked_messages"), 0);
        assert_eq!(
            int(&mut db, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'messages'::regclass"),
            0
        );
    }
    // A role that owns a messages table but not the ticket table cannot
    // drive that table's tickets.
    db.batch_execute(
        "CREATE ROLE eve LOGIN;
         CREATE TABLE eve_messages (id int PRIMARY KEY, conversation_id integer, message_type integer,
             created_at timestamptz);
         ALTER TABLE eve_messages OWNER TO eve;",
    )
    .unwrap();
    let mut eve = cluster.connect_as("eve");
    let (code, message) = sql_error(eve.batch_execute(&format!(
        "SELECT sla.track_messages('eve_messages', 'conversations', 'conversation_id', {ok_conditions})"
    )));
    assert_eq!(code, "42501", "{message}");
    assert!(
        message.contains(
            "must be owner of table public.conversations to drive its tickets from messages"
        ),
        "{message}"
    );
    // Tracked once; twice is refused, and so is tracking it as tickets;
    // untracked, its triggers go.
    db.batch_execute(&track(&format!("'conversation_id', {ok_conditions}")))
        .unwrap();
    let (code, _) =
        sql_error(db.batch_execute(&track(&format!("'conversation_id', {ok_conditions}"))));
    assert_eq!(code, "42710");
    let (code, message) = sql_error(db.batch_execute("SELECT sla.track('messages')"));
    assert_eq!(code, "42710", "{message}");
    assert!(
        message.contains("is tracked as a messages table"),
        "{message}"
    );
    // A message for a conversation not there yet waits; untracking the
    // messages table lets it go with it.
    messages(&mut db, &[(77, 0, false, "Contact", "09:00")]);
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.early_messages"), 1);
    db.batch_execute("SELECT sla.untrack_messages('messages')")
        .unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'messages'::regclass"
        ),
        0
    );
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.early_messages"), 0);
    // Untracking the ticket table ends its messages tables' tracking too,
    // triggers included.
    db.batch_execute(&track(&format!("'conversation_id', {ok_conditions}")))
        .unwrap();
    db.batch_execute("SELECT sla.untrack('conversations')")
        .unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'messages'::regclass"
        ),
        0
    );
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.tracked_messages"), 0);
}

#[test]
fn a_large_table_is_tracked_without_holding_its_lock_and_backfilled_in_batches() {
    let cluster = Cluster::start("online-track", &[]);
    let (mut db, notices) = cluster.connect_keeping_notices();
    db.batch_execute(
        "INSERT INTO sla.policies (name, first_response, resolution) VALUES ('p', '1 hour', '1 day');
         CREATE TABLE tickets (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'open',
             created_at timestamptz NOT NULL DEFAULT now(),
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         INSERT INTO tickets (id) SELECT generate_series(1, 20000);",
    )
    .unwrap();
    // Left from an earlier tracking: clocks of a ticket deleted since.
    db.batch_execute(
        "SELECT sla.track('tickets');
         SELECT sla.untrack('tickets');
         DELETE FROM tickets WHERE id = 20000;
         ALTER TABLE tickets DROP COLUMN sla_policy, DROP COLUMN sla_status,
             DROP COLUMN sla_due_at, DROP COLUMN sla_breached_at;",
    )
    .unwrap();
    notices.lock().unwrap().clear();
    assert_eq!(
        int(&mut db, "SELECT sla.track('tickets', backfill => false)"),
        0
    );
    assert!(
        notices.lock().unwrap()[0].contains("CALL sla.backfill('tickets')"),
        "{:?}",
        notices.lock().unwrap()
    );
    // Changed before the backfill reaches it: the trigger gives it clocks.
    db.batch_execute("UPDATE tickets SET status = 'pending' WHERE id = 5")
        .unwrap();
    // The backfill runs in batches while the application inserts and reads
    // without waiting for a lock.
    let backfill = {
        let (mut session, notices) = cluster.connect_keeping_notices();
        std::thread::spawn(move || {
            session
                .batch_execute("CALL sla.backfill('tickets', 100)")
                .unwrap();
            notices.lock().unwrap().clone()
        })
    };
    let mut app = cluster.connect();
    app.batch_execute("SET lock_timeout = '100ms'").unwrap();
    for i in 0..20 {
        app.batch_execute(&format!(
            "INSERT INTO tickets (id) VALUES ({}); SELECT count(*) FROM tickets WHERE id < 100;",
            30000 + i
        ))
        .unwrap_or_else(|e| panic!("the application waited: {e}"));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let backfill_notices = backfill.join().unwrap();
    // Its count: the tickets there, and those inserted meanwhile that a
    // later batch reached.
    let last = backfill_notices.last().cloned().unwrap_or_default();
    let counted: i64 = last
        .strip_prefix("pg_sla: the ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{backfill_notices:?}"));
    assert!((19999..=20019).contains(&counted), "{last}");
    assert!(
        last.contains("existing tickets of table tickets have their clocks"),
        "{last}"
    );
    // Every ticket has its two clocks, once; the deleted one has none.
    assert_eq!(
        rows(
            &mut db,
            "SELECT count(*) || ' ' || count(DISTINCT ticket_id) FROM sla.clocks"
        ),
        ["40038 20019"]
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_id = '20000'"
        ),
        0
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM tickets WHERE sla_status IS NULL"
        ),
        0
    );
    assert_eq!(
        text(&mut db, "SELECT sla_status FROM tickets WHERE id = 5"),
        "running"
    );
    // Bad input.
    let (code, message) = sql_error(db.batch_execute("CALL sla.backfill('tickets', 0)"));
    assert_eq!(code, "22023", "{message}");
    db.batch_execute("CREATE TABLE untracked (id int PRIMARY KEY)")
        .unwrap();
    let (code, message) = sql_error(db.batch_execute("CALL sla.backfill('untracked')"));
    assert_eq!(code, "42704", "{message}");
}

#[test]
fn a_message_write_never_fails_for_pg_slas_bookkeeping_and_waiting_messages_are_applied_later() {
    let cluster = Cluster::start("messages-isolated", &[]);
    let (mut db, notices) = cluster.connect_keeping_notices();
    db.batch_execute(CHATWOOT_CONVERSATIONS).unwrap();
    db.batch_execute(CHATWOOT_MESSAGES).unwrap();
    db.batch_execute(
        "ALTER TABLE messages ALTER COLUMN conversation_id TYPE bigint;
         INSERT INTO sla.policies (name, first_response, ticket_tables) VALUES ('inbox', '1 hour', '{conversations}');
         SELECT sla.track('conversations', closed_statuses => '{1}',
             customer_message_at_column => NULL, agent_reply_at_column => NULL);
         SELECT sla.track_messages('messages', 'conversations', 'conversation_id',
             customer_message => '{\"message_type\": 0}', agent_reply => '{\"message_type\": 1}');
         INSERT INTO conversations (account_id, inbox_id, display_id, last_activity_at, created_at, updated_at)
         VALUES (1, 1, 1, now(), now(), now());
         CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'conversations are frozen'; END $$;
         CREATE TRIGGER frozen BEFORE UPDATE ON conversations FOR EACH ROW EXECUTE FUNCTION frozen();",
    )
    .unwrap();
    notices.lock().unwrap().clear();
    // The conversation cannot be updated: the reply is written all the
    // same, with a warning, and waits. An id no conversation can have (past
    // the integer range of their ids) is no error either.
    db.batch_execute(
        "INSERT INTO messages (account_id, inbox_id, conversation_id, message_type, created_at, updated_at)
         VALUES (1, 1, 1, 1, now(), now()), (1, 1, 99999999999, 1, now(), now())",
    )
    .unwrap();
    let warned = notices.lock().unwrap().clone();
    assert!(
        warned.iter().any(|w| w
            .contains("could not be applied now, due processing applies them later")
            && w.contains("conversations are frozen")),
        "{warned:?}"
    );
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.early_messages"), 1);
    assert_eq!(
        text(
            &mut db,
            "SELECT status FROM sla.clocks WHERE metric = 'first_response'"
        ),
        "running"
    );
    // Cured, due processing applies it.
    db.batch_execute("DROP TRIGGER frozen ON conversations; SELECT sla.process_due();")
        .unwrap();
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.early_messages"), 0);
    assert_eq!(
        text(
            &mut db,
            "SELECT status FROM sla.clocks WHERE metric = 'first_response'"
        ),
        "achieved"
    );
}

#[test]
fn a_table_tracked_without_columns_is_left_as_it_is_and_read_through_ticket_sla() {
    let cluster = Cluster::start("no-columns", &[]);
    let mut db = cluster.connect();
    db.batch_execute(ZAMMAD_TICKETS).unwrap();
    db.batch_execute(POLICIES).unwrap();
    let definition = |db: &mut Client| {
        rows(
            db,
            "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = 'tickets'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        )
    };
    let before = definition(&mut db);
    db.batch_execute(&TRACK_ZAMMAD.replace(
        "timestamp_zone => 'UTC')",
        "timestamp_zone => 'UTC', add_columns => false)",
    ))
    .unwrap();
    assert_eq!(definition(&mut db), before, "no column added");
    at(
        &mut db,
        "2026-11-30 09:00",
        "INSERT INTO tickets (state_id, owner_id, priority_id, number, title, created_at, updated_at)
         VALUES (1, 7, 2, '1', 'a', '2026-11-30 09:00', '2026-11-30 09:00'),
                (2, 8, 3, '2', 'b', '2026-11-30 09:00', '2026-11-30 09:00'),
                (2, 9, 2, '3', 'c', '2026-11-30 08:00', '2026-11-30 08:00')",
    );
    at(
        &mut db,
        "2026-11-30 09:10",
        "UPDATE tickets SET last_contact_agent_at = '2026-11-30 09:10' WHERE id = 2",
    );
    // The worker's releases (tickets 1 and 3) still write the owner column
    // (to 1); ticket 3 also breaches.
    assert_eq!(
        int(&mut db, "SELECT sla.process_due('2026-11-30 10:05Z')"),
        3
    );
    // Read by the ticket's own id, joined laterally, sorted by due time.
    assert_eq!(
        rows(
            &mut db,
            "SELECT t.id || ' ' || t.owner_id || ' ' || s.policy || ' ' || s.status || ' '
                    || coalesce(to_char(s.due_at AT TIME ZONE 'UTC', 'HH24:MI'), '-')
               FROM tickets t CROSS JOIN LATERAL sla.ticket_sla('tickets', t.id) s
              ORDER BY s.due_at, t.id"
        ),
        [
            "1 1 desk running 11:00",
            "2 8 high running 13:00",
            "3 1 desk breached 16:00"
        ]
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.ticket_sla('tickets', 42)"
        ),
        0,
        "a ticket without clocks has no row"
    );
    // A role that cannot read the table cannot read its tickets' SLA.
    db.batch_execute("CREATE ROLE stranger LOGIN").unwrap();
    let mut stranger = cluster.connect_as("stranger");
    let (code, _) = sql_error(stranger.batch_execute("SELECT * FROM sla.ticket_sla('tickets', 1)"));
    assert_eq!(code, "42501");
}
