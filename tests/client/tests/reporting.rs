//! Reporting (`sla.report`, `sla.open_clocks`, `sla.ticket_timeline`) and who
//! may read clocks and notifications, on a real server.
use pg_sla_client_tests::{query_int, query_rows as rows, sql_error, Client, Cluster};

/// A week of hand-worked history. Paris business hours are Mon–Fri
/// 09:00–17:00 (UTC+1 in November); "vip" uses them, "standard" is 24/7.
///
/// | ticket | policy | what happened (UTC) |
/// | 1 | vip, billing | Mon 08:00 created, 08:30 reply (30 min), 11:00 solved (3 h) |
/// | 2 | vip, tech | Fri 15:30 created, Mon 08:45 reply: 30 min Fri + 45 min Mon, missed |
/// | 3 | standard, billing | Mon 08:00 created, no reply: breached at 12:00 |
/// | 4 | standard, tech | Mon 08:00 created, 10:00 reply (2 h), Tue 08:00 solved (24 h) |
/// | 5 | standard, tech | Mon 08:00 created, 09:00 pending (paused) |
/// | 6 | standard, billing | October: outside the report's range |
/// | 7 | vip, billing | Fri 15:00 created, no reply: due Fri 16:00, breached |
///
/// Due processing runs at Mon 13:00.
fn setup(db: &mut Client) {
    db.batch_execute(
        "SET TimeZone = 'UTC';
         INSERT INTO sla.calendars (name, definition) VALUES ('paris', '{\"timezone\": \"Europe/Paris\",
           \"hours\": {\"mon\": [\"09:00-17:00\"], \"tue\": [\"09:00-17:00\"], \"wed\": [\"09:00-17:00\"],
                     \"thu\": [\"09:00-17:00\"], \"fri\": [\"09:00-17:00\"]}}');
         INSERT INTO sla.policies (name, position, calendar, conditions, first_response, resolution, pause_statuses)
         VALUES ('vip', 0, 'paris', '{\"priority\": \"urgent\"}', '1 hour', '8 hours', '{pending}'),
                ('standard', 1, NULL, '{}', '4 hours', '2 days', '{pending}');
         CREATE TABLE tickets (id int PRIMARY KEY, priority text NOT NULL DEFAULT 'normal', team text,
             status text NOT NULL DEFAULT 'open', created_at timestamptz NOT NULL,
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         SELECT sla.track('tickets');
         -- A second table without team or priority columns.
         CREATE TABLE chats (id text PRIMARY KEY, status text NOT NULL DEFAULT 'open', created_at timestamptz NOT NULL,
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         SELECT sla.track('chats');
         INSERT INTO chats (id, created_at) VALUES ('c1', '2026-10-05 08:00Z');

         SET pg_sla.event_time = '2026-11-20 15:00Z';
         INSERT INTO tickets (id, priority, team, created_at) VALUES (7, 'urgent', 'billing', '2026-11-20 15:00Z');
         SET pg_sla.event_time = '2026-11-20 15:30Z';
         INSERT INTO tickets (id, priority, team, created_at) VALUES (2, 'urgent', 'tech', '2026-11-20 15:30Z');
         SET pg_sla.event_time = '2026-11-23 08:00Z';
         INSERT INTO tickets (id, priority, team, created_at) VALUES
             (1, 'urgent', 'billing', '2026-11-23 08:00Z'), (3, 'normal', 'billing', '2026-11-23 08:00Z'),
             (4, 'normal', 'tech', '2026-11-23 08:00Z'), (5, 'normal', 'tech', '2026-11-23 08:00Z');
         INSERT INTO tickets (id, priority, team, created_at) VALUES (6, 'normal', 'billing', '2026-10-05 08:00Z');
         SET pg_sla.event_time = '2026-11-23 08:30Z';
         UPDATE tickets SET last_agent_reply_at = '2026-11-23 08:30Z' WHERE id = 1;
         SET pg_sla.event_time = '2026-11-23 08:45Z';
         UPDATE tickets SET last_agent_reply_at = '2026-11-23 08:45Z' WHERE id = 2;
         SET pg_sla.event_time = '2026-11-23 09:00Z';
         UPDATE tickets SET status = 'pending' WHERE id = 5;
         SET pg_sla.event_time = '2026-11-23 10:00Z';
         UPDATE tickets SET last_agent_reply_at = '2026-11-23 10:00Z' WHERE id = 4;
         SET pg_sla.event_time = '2026-11-23 11:00Z';
         UPDATE tickets SET status = 'solved' WHERE id = 1;
         RESET pg_sla.event_time;
         SELECT sla.process_due('2026-11-23 13:00Z');
         SET pg_sla.event_time = '2026-11-24 08:00Z';
         UPDATE tickets SET status = 'solved' WHERE id = 4;
         RESET pg_sla.event_time;",
    )
    .unwrap();
}

const REPORT_COLUMNS: &str =
    "policy, metric, group_values, started, achieved, missed, cancelled, open, \
     breached_now, compliance_pct, avg_time_to_stop, median_time_to_stop, p90_time_to_stop";

#[test]
fn the_report_counts_outcomes_and_business_time_to_stop() {
    let cluster = Cluster::start("report", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    assert_eq!(
        rows(
            &mut db,
            &format!("SELECT {REPORT_COLUMNS} FROM sla.report('2026-11-01', '2026-12-01')")
        ),
        [
            "standard | first_response | {} | 3 | 1 | 0 | 0 | 2 | 1 | 50.0 | 02:00:00 | 02:00:00 | 02:00:00",
            "standard | resolution | {} | 3 | 1 | 0 | 0 | 2 | 0 | 100.0 | 24:00:00 | 24:00:00 | 24:00:00",
            // Of 1, 2 and 7, one achieved, 2 missed and 7 breached. Time to
            // stop 30 min and 1 h 15 (in business hours): p90 interpolates.
            "vip | first_response | {} | 3 | 1 | 1 | 0 | 1 | 1 | 33.3 | 00:52:30 | 00:52:30 | 01:10:30",
            "vip | resolution | {} | 3 | 1 | 0 | 0 | 2 | 0 | 100.0 | 03:00:00 | 03:00:00 | 03:00:00",
        ]
    );
    // October holds ticket 6 and chat c1 only.
    assert_eq!(
        rows(
            &mut db,
            "SELECT policy, metric, started, open FROM sla.report('2026-10-01', '2026-11-01')"
        ),
        [
            "standard | first_response | 2 | 2",
            "standard | resolution | 2 | 2"
        ]
    );
    assert_eq!(
        rows(
            &mut db,
            &format!(
                "SELECT {REPORT_COLUMNS} FROM sla.report('2026-11-01', '2026-12-01', '{{team}}', 'tickets')
                 WHERE metric = 'first_response'"
            )
        ),
        [
            "standard | first_response | {\"team\": \"billing\"} | 1 | 0 | 0 | 0 | 1 | 1 | 0.0 | NULL | NULL | NULL",
            "standard | first_response | {\"team\": \"tech\"} | 2 | 1 | 0 | 0 | 1 | 0 | 100.0 | 02:00:00 | 02:00:00 | 02:00:00",
            "vip | first_response | {\"team\": \"billing\"} | 2 | 1 | 0 | 0 | 1 | 1 | 50.0 | 00:30:00 | 00:30:00 | 00:30:00",
            "vip | first_response | {\"team\": \"tech\"} | 1 | 0 | 1 | 0 | 0 | 0 | 0.0 | 01:15:00 | 01:15:00 | 01:15:00",
        ]
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT group_values, started FROM sla.report('2026-11-23', '2026-11-24', '{priority,status}', 'tickets')
             WHERE policy = 'standard' AND metric = 'resolution'"
        ),
        [
            "{\"status\": \"open\", \"priority\": \"normal\"} | 1",
            "{\"status\": \"pending\", \"priority\": \"normal\"} | 1",
            "{\"status\": \"solved\", \"priority\": \"normal\"} | 1",
        ]
    );
    // A deleted policy's stopped clocks still count; their time to stop is
    // unknown. Ticket 7's open clock moved to the policy that now applies.
    db.batch_execute(
        "UPDATE sla.policies SET enabled = false WHERE name = 'vip';
         DELETE FROM sla.policies WHERE name = 'vip';",
    )
    .unwrap();
    assert_eq!(
        rows(
            &mut db,
            "SELECT started, achieved, missed, cancelled, avg_time_to_stop FROM sla.report('2026-11-01', '2026-12-01')
             WHERE policy = 'vip' AND metric = 'first_response'"
        ),
        ["2 | 1 | 1 | 0 | NULL"]
    );
}

#[test]
fn bad_report_arguments_are_refused_with_the_field_named() {
    let cluster = Cluster::start("report_errors", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    let cases: &[(&str, &str, &str)] = &[
        (
            "SELECT * FROM sla.report(NULL, '2026-12-01')",
            "22004",
            "sla.report: from_ts must not be NULL",
        ),
        (
            "SELECT * FROM sla.report('2026-12-01', NULL)",
            "22004",
            "sla.report: to_ts must not be NULL",
        ),
        (
            "SELECT * FROM sla.report('2026-12-01', '2026-11-01')",
            "22023",
            "sla.report: from_ts (2026-12-01 00:00:00+00) is after to_ts (2026-11-01 00:00:00+00)",
        ),
        (
            "SELECT * FROM sla.report('2026-11-01', '2026-12-01', '{team}')",
            "42703",
            "sla.report: group_by column \"team\" does not exist in tracked table public.chats",
        ),
        (
            "SELECT * FROM sla.report('2026-11-01', '2026-12-01', '{colour}', 'tickets')",
            "42703",
            "sla.report: group_by column \"colour\" does not exist in tracked table public.tickets",
        ),
        (
            "SELECT * FROM sla.report('2026-11-01', '2026-12-01', '{team,\"\"}', 'tickets')",
            "22023",
            "sla.report: group_by must name ticket columns, got {team,\"\"}",
        ),
        (
            "SELECT * FROM sla.report('2026-11-01', '2026-12-01', '{}', 'pg_class')",
            "42704",
            "sla.report: table pg_class is not tracked",
        ),
        (
            "SELECT * FROM sla.ticket_timeline('tickets', NULL)",
            "22004",
            "sla.ticket_timeline: ticket_id must not be NULL",
        ),
        (
            "SELECT * FROM sla.ticket_timeline('tickets', '99')",
            "P0002",
            "sla.ticket_timeline: no ticket with id = '99' in public.tickets",
        ),
        (
            "SELECT * FROM sla.ticket_timeline('tickets', 'abc')",
            "P0002",
            "sla.ticket_timeline: no ticket with id = 'abc' in public.tickets",
        ),
        (
            "SELECT * FROM sla.ticket_timeline('pg_class', '1')",
            "42704",
            "sla.ticket_timeline: table pg_class is not tracked",
        ),
    ];
    for (query, code, message) in cases {
        let (got_code, got_message) = sql_error(db.simple_query(query));
        assert_eq!(
            (got_code.as_str(), got_message.as_str()),
            (*code, *message),
            "{query}"
        );
    }
}

#[test]
fn open_clocks_show_what_is_left_and_how_long_since_the_breach() {
    let cluster = Cluster::start("open_clocks", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    // Monday 14:00 UTC is 15:00 in Paris.
    db.batch_execute("SET pg_sla.event_time = '2026-11-23 14:00Z'")
        .unwrap();
    assert_eq!(
        rows(
            &mut db,
            "SELECT ticket_table, ticket_id, metric, policy, status, due_at, remaining, breached_for, breached_for_business
             FROM sla.open_clocks ORDER BY ticket_table::text, ticket_id, metric"
        ),
        [
            // Due processing on Monday 13:00 found October's clocks overdue.
            "chats | c1 | first_response | standard | breached | 2026-10-05 12:00:00+00 | 00:00:00 | 1178:00:00 | 1178:00:00",
            "chats | c1 | resolution | standard | breached | 2026-10-07 08:00:00+00 | 00:00:00 | 1134:00:00 | 1134:00:00",
            // Paris hours: Monday 15:00 to 16:30.
            "tickets | 2 | resolution | vip | running | 2026-11-23 15:30:00+00 | 01:30:00 | NULL | NULL",
            // 24/7: two hours since the deadline, in both measures.
            "tickets | 3 | first_response | standard | breached | 2026-11-23 12:00:00+00 | 00:00:00 | 02:00:00 | 02:00:00",
            "tickets | 3 | resolution | standard | running | 2026-11-25 08:00:00+00 | 42:00:00 | NULL | NULL",
            // Paused at 09:00, three hours before its deadline: frozen.
            "tickets | 5 | first_response | standard | paused | 2026-11-23 12:00:00+00 | 03:00:00 | NULL | NULL",
            "tickets | 5 | resolution | standard | paused | 2026-11-25 08:00:00+00 | 47:00:00 | NULL | NULL",
            "tickets | 6 | first_response | standard | breached | 2026-10-05 12:00:00+00 | 00:00:00 | 1178:00:00 | 1178:00:00",
            "tickets | 6 | resolution | standard | breached | 2026-10-07 08:00:00+00 | 00:00:00 | 1134:00:00 | 1134:00:00",
            // Due Friday 17:00 Paris: 70 hours ago, 6 business hours (Monday 09:00-15:00).
            "tickets | 7 | first_response | vip | breached | 2026-11-20 16:00:00+00 | 00:00:00 | 70:00:00 | 06:00:00",
            "tickets | 7 | resolution | vip | running | 2026-11-23 15:00:00+00 | 01:00:00 | NULL | NULL",
        ]
    );
    // A longer target moves the deadline past now; the breach stays, and
    // its age is measured from the deadline it breached.
    db.batch_execute(
        "UPDATE sla.policies SET first_response = '100 hours' WHERE name = 'standard'",
    )
    .unwrap();
    assert_eq!(
        rows(
            &mut db,
            "SELECT status, due_at, remaining, breached_for FROM sla.open_clocks
              WHERE ticket_id = '3' AND metric = 'first_response'"
        ),
        ["breached | 2026-11-27 12:00:00+00 | 94:00:00 | 02:00:00"]
    );
}

/// Reports are read by privileged roles: names in pg_sla's SQL functions
/// must not resolve to objects a less privileged role planted on their
/// search_path.
#[test]
fn reporting_functions_ignore_objects_planted_on_the_search_path() {
    let cluster = Cluster::start("report_search_path", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "CREATE ROLE mallory LOGIN;
         GRANT CREATE ON SCHEMA public TO mallory;
         CREATE TABLE trap_fired (what text);
         GRANT INSERT ON trap_fired TO mallory;",
    )
    .unwrap();
    let mut mallory = cluster.connect_as("mallory");
    mallory
        .batch_execute(
            "CREATE FUNCTION public.make_interval(secs numeric) RETURNS interval LANGUAGE sql AS
               $$ INSERT INTO public.trap_fired VALUES ('make_interval'); SELECT pg_catalog.make_interval(secs => secs::float8) $$;
             CREATE FUNCTION public.date_part(text, interval) RETURNS float8 LANGUAGE sql AS
               $$ INSERT INTO public.trap_fired VALUES ('date_part'); SELECT pg_catalog.date_part($1, $2) $$;
             CREATE FUNCTION public.btrim(text) RETURNS text LANGUAGE sql AS
               $$ INSERT INTO public.trap_fired VALUES ('btrim'); SELECT pg_catalog.btrim($1) $$;
             CREATE FUNCTION public.trap_le(timestamptz, timestamptz) RETURNS boolean LANGUAGE sql AS
               $$ INSERT INTO public.trap_fired VALUES ('<='); SELECT $1 OPERATOR(pg_catalog.<=) $2 $$;
             CREATE OPERATOR public.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.trap_le);
             CREATE FUNCTION public.trap_minus(timestamptz, timestamptz) RETURNS interval LANGUAGE sql AS
               $$ INSERT INTO public.trap_fired VALUES ('-'); SELECT $1 OPERATOR(pg_catalog.-) $2 $$;
             CREATE OPERATOR public.- (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.trap_minus);",
        )
        .unwrap();
    // The superuser reads reports with the planted schema first on its path.
    for search_path in ["\"$user\", public", "public, pg_catalog"] {
        db.batch_execute(&format!(
            "SET search_path = {search_path}; SET pg_sla.event_time = '2026-11-23 14:00Z'"
        ))
        .unwrap();
        for query in [
            "SELECT count(*) FROM sla.open_clocks WHERE breached_for IS NOT NULL OR remaining IS NOT NULL",
            "SELECT count(*) FROM sla.report('2026-11-01', '2026-12-01', '{team}', 'tickets')",
            "SELECT sla.clock_business_time(NULL, '2026-11-23', '2026-11-24')::text",
            "SELECT sla.event_time()::text",
            "SELECT count(*) FROM sla.ticket_timeline('tickets', '3')",
        ] {
            db.simple_query(query)
                .unwrap_or_else(|e| panic!("{search_path}: {query}: {e}"));
        }
    }
    db.batch_execute("RESET search_path; RESET pg_sla.event_time")
        .unwrap();
    assert_eq!(
        rows(&mut db, "SELECT what FROM trap_fired"),
        Vec::<String>::new(),
        "a planted function or operator ran as the superuser"
    );
    // The traps are live: an unqualified call in the same session fires one.
    db.batch_execute("SET search_path = public, pg_catalog; SELECT make_interval(secs => 1.5::numeric); RESET search_path")
        .unwrap();
    assert_eq!(
        rows(&mut db, "SELECT what FROM trap_fired"),
        ["make_interval"]
    );
}

#[test]
fn a_ticket_timeline_lists_clock_events_and_notifications_in_order() {
    let cluster = Cluster::start("timeline", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    assert_eq!(
        rows(
            &mut db,
            "SELECT at, event, metric, detail FROM sla.ticket_timeline('tickets', '3') WHERE event NOT LIKE 'notified%'"
        ),
        [
            "2026-11-23 08:00:00+00 | started | first_response | target 04:00:00",
            "2026-11-23 08:00:00+00 | started | resolution | target 48:00:00",
            "2026-11-23 12:00:00+00 | breached | first_response | was due at 2026-11-23 12:00:00+00",
            "2026-11-25 08:00:00+00 | due | resolution | status running",
        ]
    );
    // Notifications are stamped with the time due processing ran at, here
    // a replayed Monday 13:00, and come after the events at that time.
    assert_eq!(
        rows(
            &mut db,
            "SELECT at, event, metric FROM sla.ticket_timeline('tickets', '3') WHERE at < '2026-11-24'"
        ),
        [
            "2026-11-23 08:00:00+00 | started | first_response",
            "2026-11-23 08:00:00+00 | started | resolution",
            "2026-11-23 12:00:00+00 | breached | first_response",
            "2026-11-23 13:00:00+00 | notified breached | first_response",
        ]
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT at, event, metric FROM sla.ticket_timeline('tickets', '5')"
        ),
        [
            "2026-11-23 08:00:00+00 | started | first_response",
            "2026-11-23 08:00:00+00 | started | resolution",
            "2026-11-23 09:00:00+00 | paused | first_response",
            "2026-11-23 09:00:00+00 | paused | resolution",
        ]
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT at, event, metric FROM sla.ticket_timeline('tickets', '1')"
        ),
        [
            "2026-11-23 08:00:00+00 | started | first_response",
            "2026-11-23 08:00:00+00 | started | resolution",
            "2026-11-23 08:30:00+00 | achieved | first_response",
            "2026-11-23 11:00:00+00 | achieved | resolution",
        ]
    );
}

/// An application role owns and tracks its table; a role without privileges
/// reads nothing of it and edits no settings.
#[test]
fn roles_read_the_clocks_and_notifications_of_the_tables_they_may_read() {
    let cluster = Cluster::start("reporting_privileges", &[]);
    let mut admin = cluster.connect();
    setup(&mut admin);
    admin
        .batch_execute(
            "CREATE ROLE app LOGIN; CREATE ROLE nobody LOGIN;
             GRANT CREATE ON SCHEMA public TO app;
             GRANT EXECUTE ON FUNCTION sla.process_due(timestamptz, int) TO app;
             INSERT INTO sla.alert_rules (recipient, min_breached) VALUES ('lead', 1);",
        )
        .unwrap();
    let mut app = cluster.connect_as("app");
    app.batch_execute(
        "SET TimeZone = 'UTC';
         CREATE TABLE app_tickets (id bigint PRIMARY KEY, priority text, status text NOT NULL DEFAULT 'open',
             created_at timestamptz NOT NULL, last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         SELECT sla.track('app_tickets');
         INSERT INTO app_tickets (id, priority, created_at) VALUES (1, 'normal', '2026-11-23 08:00Z'),
                                                                   (2, 'urgent', '2026-11-23 08:00Z');",
    )
    .unwrap();
    // A replay at a past time is the administrator's (a granted role acts
    // at the present only).
    assert_eq!(
        query_int(&mut admin, "SELECT sla.process_due('2026-11-23 13:00Z')"),
        2,
        "ticket 1's first response and ticket 2's"
    );
    // The application sees its own clocks and notifications, through every
    // reporting entry point, and nothing of the admin's tickets.
    assert_eq!(
        rows(
            &mut app,
            "SELECT DISTINCT ticket_table::text FROM sla.clocks"
        ),
        ["app_tickets"]
    );
    assert_eq!(
        rows(
            &mut app,
            "SELECT ticket_id, kind FROM sla.notifications ORDER BY ticket_id"
        ),
        ["1 | breached", "2 | breached"]
    );
    assert_eq!(
        query_int(&mut app, "SELECT count(*) FROM sla.open_clocks"),
        4
    );
    assert_eq!(
        rows(
            &mut app,
            "SELECT policy, metric, started, breached_now FROM sla.report('2026-11-01', '2026-12-01') WHERE metric = 'first_response'"
        ),
        [
            "standard | first_response | 1 | 1",
            "vip | first_response | 1 | 1"
        ]
    );
    assert_eq!(
        query_int(
            &mut app,
            "SELECT count(*) FROM sla.ticket_timeline('app_tickets', '2')"
        ),
        5,
        "two starts, a breach, its notification, the resolution deadline"
    );
    assert_eq!(
        query_int(
            &mut app,
            "SELECT count(*) FROM sla.business_periods('paris', '2026-11-23', '2026-11-30')"
        ),
        5
    );
    let (code, message) =
        sql_error(app.simple_query("SELECT * FROM sla.ticket_timeline('tickets', '3')"));
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("42501", "permission denied for table public.tickets")
    );
    // The admin's breach alert covers every table: only roles that may
    // read them all see it.
    assert_eq!(
        query_int(
            &mut admin,
            "SELECT count(*) FROM sla.notifications WHERE kind = 'breach_alert'"
        ),
        1
    );
    assert_eq!(
        query_int(
            &mut app,
            "SELECT count(*) FROM sla.notifications WHERE kind = 'breach_alert'"
        ),
        0
    );

    // A role without privileges reads no clocks and edits no settings.
    let mut nobody = cluster.connect_as("nobody");
    for query in [
        "SELECT count(*) FROM sla.clocks",
        "SELECT count(*) FROM sla.notifications",
        "SELECT count(*) FROM sla.open_clocks",
        "SELECT count(*) FROM sla.report('2000-01-01', '2100-01-01')",
        "SELECT count(*) FROM sla.report('2000-01-01', '2100-01-01', '{priority}', 'app_tickets')",
    ] {
        assert_eq!(query_int(&mut nobody, query), 0, "{query}");
    }
    let before = rows(
        &mut admin,
        "SELECT name, definition::text FROM sla.calendars UNION ALL SELECT name, first_response::text FROM sla.policies",
    );
    for statement in [
        "UPDATE sla.calendars SET definition = '{\"hours\": {}}'",
        "INSERT INTO sla.calendars (name, definition) VALUES ('mine', '{\"hours\": {}}')",
        "UPDATE sla.policies SET first_response = '1 minute'",
        "DELETE FROM sla.policies",
        "INSERT INTO sla.alert_rules (recipient, min_breached) VALUES ('me', 1)",
        "DELETE FROM sla.clocks",
        "SELECT sla.process_due()",
        "SELECT sla.untrack('app_tickets')",
    ] {
        let (code, message) = sql_error(nobody.batch_execute(statement));
        assert_eq!(code, "42501", "{statement}: {message}");
    }
    assert_eq!(
        rows(
            &mut admin,
            "SELECT name, definition::text FROM sla.calendars UNION ALL SELECT name, first_response::text FROM sla.policies"
        ),
        before
    );
    // A member of pg_read_all_data (a backup or audit role) reads every row,
    // and a role granted DELETE purges old notifications.
    admin
        .batch_execute(
            "CREATE ROLE auditor LOGIN IN ROLE pg_read_all_data;
             GRANT DELETE ON sla.notifications TO auditor;",
        )
        .unwrap();
    let mut auditor = cluster.connect_as("auditor");
    assert_eq!(
        query_int(&mut auditor, "SELECT count(*) FROM sla.clocks"),
        query_int(&mut admin, "SELECT count(*) FROM sla.clocks")
    );
    assert_eq!(
        query_int(
            &mut auditor,
            "SELECT count(*) FROM sla.notifications WHERE kind = 'breach_alert'"
        ),
        1
    );
    let admins = query_int(
        &mut admin,
        "SELECT count(*) FROM sla.notifications WHERE ticket_table = 'tickets'::regclass",
    );
    assert!(admins > 0);
    assert_eq!(
        auditor
            .execute(
                "DELETE FROM sla.notifications WHERE ticket_table = 'tickets'::regclass",
                &[]
            )
            .unwrap() as i64,
        admins
    );

    // Granted SELECT on the table, the role sees its clocks.
    app.batch_execute("GRANT SELECT ON app_tickets TO nobody")
        .unwrap();
    assert_eq!(query_int(&mut nobody, "SELECT count(*) FROM sla.clocks"), 4);
    assert_eq!(
        query_int(&mut nobody, "SELECT count(*) FROM sla.open_clocks"),
        4
    );
}
