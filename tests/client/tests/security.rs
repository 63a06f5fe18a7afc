//! What an application role, an unprivileged role and a careless setup can
//! do to pg_sla, and what stops them (the threat model of
//! docs/privileges.md).
use pg_sla_client_tests::{query_int as int, query_rows as rows, query_text as text, sql_error};
use pg_sla_client_tests::{Client, Cluster};

/// A 24/7 policy and a tracked `tickets` table owned by the superuser.
fn setup(db: &mut Client) {
    db.batch_execute(
        r#"SET TimeZone = 'UTC';
           INSERT INTO sla.calendars (name, definition) VALUES ('utc', '{"timezone": "UTC",
             "hours": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"], "wed": ["09:00-17:00"],
                       "thu": ["09:00-17:00"], "fri": ["09:00-17:00"]}}');
           INSERT INTO sla.policies (name, calendar, first_response, resolution, warn_at)
             VALUES ('standard', NULL, '4 hours', '2 days', 0.5);
           CREATE TABLE tickets (
               id bigint PRIMARY KEY,
               status text NOT NULL DEFAULT 'open',
               assignee text,
               created_at timestamptz NOT NULL DEFAULT now(),
               last_customer_message_at timestamptz,
               last_agent_reply_at timestamptz);
           SELECT sla.track('tickets', assignee_column => 'assignee');
           INSERT INTO tickets (id, created_at) VALUES (1, now() - interval '5 hours'),
                                                       (2, now() - interval '1 hour');"#,
    )
    .unwrap();
}

/// Operators pg_sla and the guide compare with, for each type they compare.
const PLANTED_OPERATORS: &[(&str, &[&str])] = &[
    (
        "=",
        &[
            "text",
            "regclass",
            "oid",
            "name",
            "timestamptz",
            "interval",
            "integer",
            "bigint",
            "boolean",
        ],
    ),
    ("<>", &["text", "regclass", "oid", "timestamptz", "integer"]),
    (
        "<",
        &["text", "timestamptz", "interval", "integer", "bigint"],
    ),
    (
        "<=",
        &["text", "timestamptz", "interval", "integer", "bigint"],
    ),
    (
        ">",
        &["text", "timestamptz", "interval", "integer", "bigint"],
    ),
    (
        ">=",
        &["text", "timestamptz", "interval", "integer", "bigint"],
    ),
];

/// Functions pg_sla's SQL calls, planted with the same signature: (name,
/// argument types, result type).
const PLANTED_FUNCTIONS: &[(&str, &[&str], &str)] = &[
    ("now", &[], "timestamptz"),
    ("clock_timestamp", &[], "timestamptz"),
    ("current_setting", &["text"], "text"),
    ("current_setting", &["text", "boolean"], "text"),
    ("btrim", &["text"], "text"),
    ("date_part", &["text", "timestamptz"], "double precision"),
    ("date_part", &["text", "interval"], "double precision"),
    ("date_trunc", &["text", "interval"], "interval"),
    ("round", &["numeric", "integer"], "numeric"),
    ("has_table_privilege", &["oid", "text"], "boolean"),
    ("has_table_privilege", &["regclass", "text"], "boolean"),
    ("pg_has_role", &["oid", "oid", "text"], "boolean"),
    ("format", &["text"], "text"),
    ("format", &["text", "text"], "text"),
    ("jsonb_typeof", &["jsonb"], "text"),
    ("array_position", &["anyarray", "anyelement"], "integer"),
];

/// SQL that plants every trap in schema `public`; each records its name in
/// `public.trap_fired` and then does what pg_catalog's would.
fn traps() -> String {
    let mut sql = String::new();
    for (op, types) in PLANTED_OPERATORS {
        for ty in *types {
            let name = format!(
                "trap_{}_{}",
                match *op {
                    "=" => "eq",
                    "<>" => "ne",
                    "<" => "lt",
                    "<=" => "le",
                    ">" => "gt",
                    _ => "ge",
                },
                ty.replace(' ', "_")
            );
            sql.push_str(&format!(
                "CREATE FUNCTION public.{name}({ty}, {ty}) RETURNS boolean LANGUAGE sql AS
                   $$ INSERT INTO public.trap_fired VALUES ('{op} {ty}'); SELECT $1::text OPERATOR(pg_catalog.{op}) $2::text $$;
                 CREATE OPERATOR public.{op} (LEFTARG = {ty}, RIGHTARG = {ty}, FUNCTION = public.{name});\n"
            ));
        }
    }
    for (name, args, result) in PLANTED_FUNCTIONS {
        let params: Vec<String> = (1..=args.len()).map(|i| format!("${i}")).collect();
        sql.push_str(&format!(
            "CREATE FUNCTION public.{name}({args}) RETURNS {result} LANGUAGE sql AS
               $$ INSERT INTO public.trap_fired VALUES ('{name}'); SELECT pg_catalog.{name}({params}) $$;\n",
            args = args.join(", "),
            params = params.join(", "),
        ));
    }
    sql
}

/// Every way a superuser reaches pg_sla's code: its views, its functions
/// (each one, checked against pg_proc below) and its triggers.
const SUPERUSER_RUNS: &[&str] = &[
    "SELECT count(*) FROM sla.open_clocks",
    "SELECT count(*) FROM sla.report(pg_catalog.now() - interval '1 day', pg_catalog.now() + interval '1 day', '{status}')",
    "SELECT count(*) FROM sla.ticket_timeline('public.tickets', '1')",
    "SELECT sla.clock_business_time('utc', pg_catalog.now() - interval '3 days', pg_catalog.now())",
    "SELECT sla.clock_business_time(NULL, pg_catalog.now() - interval '3 days', pg_catalog.now())",
    "SELECT sla.event_time()",
    "SELECT count(*) FROM sla.ticket_sla('public.tickets', 1::bigint)",
    "SELECT sla.clock_is_open('paused'), sla.clock_is_breached_open('paused', pg_catalog.now())",
    "SELECT sla.readable_tracked_tables(), sla.tracked_table_list(), sla.reads_all_data()",
    "SELECT sla.add_business_time('utc', pg_catalog.now(), '1 hour')",
    r#"SELECT sla.add_business_time('{"timezone": "UTC", "hours": "24/7"}'::jsonb, pg_catalog.now(), '1 hour')"#,
    "SELECT sla.business_time_between('utc', pg_catalog.now() - interval '3 days', pg_catalog.now())",
    "SELECT sla.is_business_time('utc', pg_catalog.now()), sla.next_business_time('utc', pg_catalog.now())",
    "SELECT count(*) FROM sla.business_periods('utc', pg_catalog.now(), pg_catalog.now() + interval '7 days')",
    r#"SELECT sla.validate_calendar('{"timezone": "UTC", "hours": "24/7"}')"#,
    "SELECT sla.validate_policy('p', '1 hour', NULL, NULL, 0.5, NULL, '{}', '{}')",
    "SELECT count(*) FROM sla.preview_due(pg_catalog.now() + interval '3 days')",
    "SELECT sla.process_due()",
    "SELECT count(*) FROM sla.worker_status()",
    // Triggers: tickets, calendars, policies, alert rules, tracking.
    "INSERT INTO tickets (id) VALUES (3)",
    "UPDATE tickets SET last_agent_reply_at = pg_catalog.now() WHERE id = 2",
    "UPDATE tickets SET status = 'solved' WHERE id = 3",
    "DELETE FROM tickets WHERE id = 3",
    r#"UPDATE sla.calendars SET definition = definition || '{"holidays": ["2030-01-01"]}'"#,
    "UPDATE sla.policies SET warn_at = 0.6",
    "INSERT INTO sla.alert_rules (recipient, min_breached) VALUES ('lead', 1)",
    "CREATE TABLE spare (LIKE tickets INCLUDING ALL)",
    "SELECT sla.track('spare')",
    "INSERT INTO spare (id) VALUES (1)",
    "TRUNCATE spare",
    "SELECT sla.untrack('spare')",
    "DROP TABLE spare",
    // Messages tables: tracking, their triggers, early messages.
    "CREATE TABLE spare (LIKE tickets INCLUDING ALL)",
    "SELECT sla.track('spare', customer_message_at_column => NULL, agent_reply_at_column => NULL)",
    "CREATE TABLE spare_messages (id int PRIMARY KEY, ticket_id bigint, kind text, private boolean, created_at timestamptz)",
    r#"SELECT sla.track_messages('spare_messages', 'spare', 'ticket_id', customer_message => '{"kind": "in"}', agent_reply => '{"kind": {"not": "in"}, "private": false}')"#,
    "INSERT INTO spare (id) VALUES (1)",
    "INSERT INTO spare_messages VALUES (1, 1, 'in', false, pg_catalog.now()), (2, 2, 'out', false, pg_catalog.now())",
    "UPDATE spare_messages SET kind = 'out'",
    "INSERT INTO spare (id) VALUES (2)",
    "SELECT sla.untrack_messages('spare_messages')",
    "SELECT count(*) FROM sla.backfill_batch('spare', NULL)",
    "CALL sla.backfill('spare')",
    "DROP TABLE spare_messages",
    "SELECT sla.untrack('spare')",
    "DROP TABLE spare",
];

#[test]
fn objects_planted_on_the_search_path_never_run_in_pg_slas_place() {
    let cluster = Cluster::start("security-planted", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    // The careless setup this guards against: an application role with
    // CREATE on a schema on the administrator's search path.
    db.batch_execute(
        "CREATE ROLE mallory LOGIN;
         GRANT CREATE ON SCHEMA public TO mallory;
         CREATE TABLE trap_fired (what text);
         GRANT INSERT ON trap_fired TO mallory;",
    )
    .unwrap();
    let mut mallory = cluster.connect_as("mallory");
    mallory.batch_execute(&traps()).unwrap();

    // Every function of pg_sla is run below (trigger functions by the
    // statements that fire them).
    let functions = rows(
        &mut db,
        "SELECT DISTINCT p.proname FROM pg_proc p
          WHERE p.pronamespace = 'sla'::regnamespace
            AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
          ORDER BY 1",
    );
    for function in &functions {
        assert!(
            SUPERUSER_RUNS
                .iter()
                .any(|statement| statement.contains(&format!("sla.{function}("))),
            "sla.{function} is not exercised by this test"
        );
    }

    for search_path in ["\"$user\", public", "public, pg_catalog"] {
        db.batch_execute(&format!("SET search_path = {search_path}"))
            .unwrap();
        for statement in SUPERUSER_RUNS {
            db.batch_execute(statement)
                .unwrap_or_else(|e| panic!("{search_path}: {statement}: {e}"));
        }
        db.batch_execute("RESET search_path").unwrap();
        db.batch_execute("DELETE FROM sla.alert_rules").unwrap();
    }
    // The documented queries, under the default search path.
    for query in [
        "SELECT kind FROM sla.notifications WHERE ticket_table::oid = 'tickets'::regclass::oid",
        "SELECT string_agg(metric || ' ' || status, ', ' ORDER BY metric)
           FROM sla.clocks WHERE ticket_table::oid = 'tickets'::regclass::oid AND ticket_id = '1'",
    ] {
        db.batch_execute(query)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
    }
    assert_eq!(
        rows(&mut db, "SELECT DISTINCT what FROM trap_fired ORDER BY 1"),
        Vec::<String>::new(),
        "a planted function or operator ran as the superuser"
    );
    // The traps are live: the comparison the guide used to show fires one.
    db.batch_execute("SELECT count(*) FROM sla.clocks WHERE ticket_table = 'tickets'::regclass")
        .unwrap();
    assert_eq!(
        rows(&mut db, "SELECT DISTINCT what FROM trap_fired"),
        ["= regclass"]
    );
}

#[test]
fn a_role_granted_due_processing_acts_at_the_present_on_its_own_tables() {
    let cluster = Cluster::start("security-due", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "CREATE ROLE app LOGIN;
         CREATE SCHEMA app AUTHORIZATION app;
         GRANT EXECUTE ON FUNCTION sla.process_due(timestamptz, int) TO app;",
    )
    .unwrap();
    // A rule over every table, and one over the superuser's table.
    db.batch_execute(
        "INSERT INTO sla.alert_rules (recipient, min_breached) VALUES ('everyone', 1);
         INSERT INTO sla.alert_rules (recipient, min_breached, ticket_table, every_assignee)
           VALUES ('admin', 1, 'tickets', true);",
    )
    .unwrap();
    let mut app = cluster.connect_as("app");
    app.batch_execute(
        "SET search_path = app;
         CREATE TABLE own (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'open',
             created_at timestamptz NOT NULL, last_customer_message_at timestamptz,
             last_agent_reply_at timestamptz);
         SELECT sla.track('own');
         INSERT INTO own (id, created_at) VALUES (1, now() - interval '5 hours');",
    )
    .unwrap();
    let notifications = |db: &mut Client| int(db, "SELECT count(*) FROM sla.notifications");
    let before = notifications(&mut db);

    // The future, or the past, is refused, naming the rule; nothing written.
    for at in ["'2100-01-01'", "now() - interval '1 day'"] {
        let (code, message) =
            sql_error(app.batch_execute(&format!("SELECT sla.process_due({at})")));
        assert_eq!(code, "42501", "{message}");
        assert!(message.contains("the present"), "{message}");
    }
    assert_eq!(notifications(&mut db), before);

    // The preview shows what would fall due, on the tables it may read
    // only, and writes nothing.
    assert_eq!(
        rows(
            &mut app,
            "SELECT ticket_table::text || ' ' || ticket_id || ' ' || metric || ' ' || transition
               FROM sla.preview_due(now() + interval '3 days') ORDER BY 1"
        ),
        ["own 1 first_response breached", "own 1 resolution breached"]
    );
    assert!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.preview_due(now() + interval '3 days')"
        ) >= 3,
        "the superuser sees every table's"
    );
    assert_eq!(notifications(&mut db), before);

    // At the present it processes its own table and leaves the others'
    // due tickets (the superuser's ticket 1 is past its first response).
    assert_eq!(int(&mut app, "SELECT sla.process_due()"), 1);
    assert_eq!(
        rows(
            &mut db,
            "SELECT ticket_table::text || ' ' || kind FROM sla.notifications ORDER BY id"
        ),
        ["app.own breached"],
        "and no alert of a rule about other tables"
    );
    assert_eq!(
        int(&mut db, "SELECT sla.process_due()"),
        1,
        "the other table's breach is left for a privileged caller"
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.notifications WHERE kind = 'breach_alert'"
        ),
        2,
        "a privileged caller evaluates every rule"
    );
}

#[test]
fn mapped_columns_pg_sla_cannot_read_in_time_are_refused() {
    let cluster = Cluster::start("security-columns", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "CREATE TABLE gen (id bigint PRIMARY KEY, state int NOT NULL DEFAULT 0,
             status text GENERATED ALWAYS AS (CASE WHEN state = 1 THEN 'solved' ELSE 'open' END) STORED,
             created_at timestamptz NOT NULL DEFAULT now(),
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz)",
    )
    .unwrap();
    // A generated status is computed after the BEFORE triggers read it.
    let (code, message) = sql_error(db.batch_execute("SELECT sla.track('gen')"));
    assert_eq!(code, "0A000", "{message}");
    assert!(message.contains("status_column \"status\""), "{message}");
    assert!(message.contains("generated"), "{message}");
    // pg_sla's own columns are not the application's.
    for (argument, column) in [
        ("status_column", "sla_status"),
        ("created_at_column", "sla_due_at"),
    ] {
        let (code, message) = sql_error(db.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS spare (LIKE tickets INCLUDING ALL);
             SELECT sla.track('spare', {argument} => '{column}')"
        )));
        assert_eq!(code, "22023", "{message}");
        assert!(message.contains(column), "{message}");
    }
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.tracked_tables"), 1);
    // A mapped column made generated after tracking: writes are refused
    // with the column named, as for a changed type.
    db.batch_execute(
        "ALTER TABLE tickets DROP COLUMN status;
         ALTER TABLE tickets ADD COLUMN status text GENERATED ALWAYS AS ('open') STORED;",
    )
    .unwrap();
    let (code, message) = sql_error(db.batch_execute("INSERT INTO tickets (id) VALUES (9)"));
    assert_eq!(code, "0A000", "{message}");
    assert!(message.contains("\"status\""), "{message}");
    // A mapped column renamed: writes fail naming it, until renamed back.
    db.batch_execute(
        "ALTER TABLE tickets DROP COLUMN status;
         ALTER TABLE tickets ADD COLUMN status text NOT NULL DEFAULT 'open';
         ALTER TABLE tickets RENAME COLUMN last_agent_reply_at TO replied_at;",
    )
    .unwrap();
    let (code, message) = sql_error(db.batch_execute("INSERT INTO tickets (id) VALUES (9)"));
    assert_eq!(code, "42703", "{message}");
    assert!(message.contains("\"last_agent_reply_at\""), "{message}");
    db.batch_execute(
        "ALTER TABLE tickets RENAME COLUMN replied_at TO last_agent_reply_at;
         INSERT INTO tickets (id) VALUES (9);",
    )
    .unwrap();
}

#[test]
fn deadlines_that_cannot_be_represented_never_fail_an_applications_write() {
    let cluster = Cluster::start("security-targets", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    // Refused when the policy is written, naming the field.
    let (code, message) = sql_error(db.batch_execute(
        "INSERT INTO sla.policies (name, position, first_response) VALUES ('forever', 0, '100000000 hours')",
    ));
    assert_eq!(code, "22023", "{message}");
    assert!(
        message.contains("first_response must be at most"),
        "{message}"
    );
    // A ticket whose deadline lies beyond the supported range: the write
    // goes through, with a warning, and the ticket has no clocks.
    db.batch_execute("INSERT INTO tickets (id, created_at) VALUES (10, '9999-12-31 23:00Z')")
        .unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_id = '10'"
        ),
        0
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT coalesce(sla_status, 'none') FROM tickets WHERE id = 10"
        ),
        "none"
    );
    db.batch_execute(
        "UPDATE tickets SET last_customer_message_at = '9999-12-31 23:30Z' WHERE id = 10",
    )
    .unwrap();
    // Nor does it hold up an edit of the policies.
    db.batch_execute("UPDATE sla.policies SET warn_at = 0.6")
        .unwrap();
    // The other tickets still get theirs.
    db.batch_execute("INSERT INTO tickets (id) VALUES (11)")
        .unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_id = '11'"
        ),
        2
    );
}

#[test]
fn a_bad_event_time_is_refused_when_set() {
    let cluster = Cluster::start("security-event-time", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    for value in ["garbage", "infinity", "2026-13-40"] {
        let (code, message) =
            sql_error(db.batch_execute(&format!("SET pg_sla.event_time = '{value}'")));
        assert_eq!(code, "22023", "{value}: {message}");
        assert!(message.contains("pg_sla.event_time"), "{message}");
    }
    // A good value and the empty one are accepted, and ticket writes work.
    db.batch_execute(
        "SET pg_sla.event_time = '2026-11-23 09:00+01';
         INSERT INTO tickets (id, created_at) VALUES (20, '2026-11-23 08:00Z');
         SET pg_sla.event_time = '';
         INSERT INTO tickets (id, created_at) VALUES (21, '2026-11-23 08:00Z');
         RESET pg_sla.event_time;",
    )
    .unwrap();
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_id IN ('20', '21')"
        ),
        4
    );
}

#[test]
fn parallel_workers_take_the_event_time_their_leader_accepted() {
    let cluster = Cluster::start("security-event-time-parallel", &[]);
    let (mut db, notices) = cluster.connect_keeping_notices();
    setup(&mut db);
    // pg_sla is loaded in this backend, so parallel workers load it and
    // restore the setting, a time in a zone abbreviation ('Z') among them.
    db.batch_execute(
        "SET pg_sla.event_time = '2026-11-23 09:00Z';
         INSERT INTO tickets (id, created_at)
         SELECT g, '2026-11-23 08:00Z' FROM generate_series(10, 20009) g;
         DELETE FROM tickets WHERE id % 2 = 0;
         SET min_parallel_index_scan_size = 0;
         SET max_parallel_maintenance_workers = 2;",
    )
    .unwrap();
    db.batch_execute("VACUUM (PARALLEL 2, VERBOSE) sla.clocks")
        .unwrap();
    let said = notices.lock().unwrap().join("\n");
    assert!(
        said.contains("launched 2 parallel vacuum workers"),
        "no parallel worker ran:\n{said}"
    );
    // Tickets 1 and the 10,000 odd ones, two clocks each.
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM sla.clocks"),
        2 * (1 + 10000)
    );
}
