//! The SLA engine among tables it does not control: other tenants' tables
//! and triggers, DDL on tracked tables, dropped tables, and privileges.
use pg_sla_client_tests::{query_int as int, query_text as text, sql_error, Client, Cluster};

const NY: &str = r#"{"timezone": "America/New_York",
  "hours": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"], "wed": ["09:00-17:00"],
            "thu": ["09:00-17:00"], "fri": ["09:00-17:00"]}}"#;

/// A calendar, an urgent policy (30 min / 8 h, no warning), a catch-all
/// 24/7 one, and a tracked `tickets` table.
fn setup(db: &mut Client) {
    db.execute(
        "INSERT INTO sla.calendars (name, definition) VALUES ('ny', $1::text::jsonb)",
        &[&NY],
    )
    .unwrap();
    db.batch_execute(
        "SET TimeZone = 'America/New_York';
         INSERT INTO sla.policies (name, position, calendar, conditions, first_response, resolution)
         VALUES ('urgent', 1, 'ny', '{\"priority\": \"urgent\"}', '30 minutes', '8 hours'),
                ('default', 2, NULL, '{}', '4 hours', NULL);
         CREATE TABLE tickets (
             id bigint PRIMARY KEY,
             priority text NOT NULL DEFAULT 'normal',
             status text NOT NULL DEFAULT 'open',
             created_at timestamptz NOT NULL DEFAULT '2026-11-30 09:00',
             last_customer_message_at timestamptz,
             last_agent_reply_at timestamptz);
         SELECT sla.track('tickets');",
    )
    .unwrap();
}

#[test]
fn settings_made_by_a_tenants_trigger_do_not_outlive_due_processing() {
    let cluster = Cluster::start("guc-leak", &[]);
    let mut admin = cluster.connect();
    setup(&mut admin);
    admin
        .batch_execute(
            "CREATE ROLE mallory LOGIN;
             CREATE SCHEMA mallory AUTHORIZATION mallory;",
        )
        .unwrap();
    let mut mallory = cluster.connect_as("mallory");
    mallory
        .batch_execute(
            "CREATE TABLE mallory.m (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'open',
                                      created_at timestamptz NOT NULL,
                                      last_customer_message_at timestamptz,
                                      last_agent_reply_at timestamptz);
             CREATE FUNCTION mallory.plant() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               PERFORM set_config('search_path', 'mallory, pg_catalog, public', false);
               PERFORM set_config('work_mem', '77kB', false);
               RETURN NULL;
             END $$;
             CREATE TRIGGER plant AFTER UPDATE ON mallory.m
               FOR EACH STATEMENT EXECUTE FUNCTION mallory.plant();
             SELECT sla.track('mallory.m');
             INSERT INTO mallory.m (id, created_at) VALUES (1, '2000-01-01');",
        )
        .unwrap();
    let before = text(&mut admin, "SHOW search_path");
    // Due processing updates mallory's ticket as mallory, firing her trigger.
    assert_eq!(int(&mut admin, "SELECT sla.process_due('2026-12-31')"), 1);
    assert_eq!(text(&mut admin, "SHOW search_path"), before);
    assert_eq!(text(&mut admin, "SHOW work_mem"), "4MB");
    // So does a policy edit, which recomputes her ticket.
    admin
        .batch_execute("UPDATE sla.policies SET first_response = '5 hours' WHERE name = 'default'")
        .unwrap();
    assert_eq!(text(&mut admin, "SHOW search_path"), before);
    // And the recomputation is not a function anyone can call.
    let (code, _) = sql_error(mallory.batch_execute("SELECT sla.resync_open_tickets(NULL)"));
    assert_eq!(code, "42883");
}

#[test]
fn one_tenants_failing_trigger_does_not_stop_the_others() {
    let cluster = Cluster::start("poison", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "CREATE TABLE other (LIKE tickets INCLUDING ALL);
         SELECT sla.track('other');
         CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.id = 2 THEN RAISE EXCEPTION 'ticket 2 is frozen'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION refuse();
         INSERT INTO tickets (id, created_at) SELECT g, '2026-11-30 09:00' FROM generate_series(1, 3) g;
         INSERT INTO other (id, created_at) VALUES (1, '2026-11-30 09:00');",
    )
    .unwrap();
    // Every ticket breaches, ticket 2 too: only its row cannot be updated,
    // which is reported and kept to be retried on its own.
    assert_eq!(
        int(&mut db, "SELECT sla.process_due('2026-11-30 14:00')"),
        4
    );
    assert_eq!(
        text(&mut db, "SELECT string_agg(ticket_table || ':' || ticket_id, ',' ORDER BY ticket_table::text, ticket_id) FROM sla.notifications"),
        "other:1,tickets:1,tickets:2,tickets:3"
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(id || ':' || sla_status, ',' ORDER BY id) FROM tickets"
        ),
        "1:breached,2:running,3:breached"
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT concat_ws(' ', ticket_table, ticket_id, release_ownership, attempts, sqlstate, error,
                              retry_at > now() + interval '50 seconds')
               FROM sla.pending_ticket_updates"
        ),
        "tickets 2 f 1 P0001 ticket 2 is frozen t"
    );
    let log = cluster.log_tail(40);
    assert!(
        log.contains("ticket 2 of table public.tickets: its transitions are recorded and notified, but updating its SLA columns failed and is retried in a minute: ticket 2 is frozen (SQLSTATE P0001)"),
        "{log}"
    );
    // It is left alone for a minute, and never notified again.
    assert_eq!(
        int(&mut db, "SELECT sla.process_due('2026-11-30 14:00')"),
        0
    );
    assert_eq!(
        int(&mut db, "SELECT attempts FROM sla.pending_ticket_updates"),
        1
    );
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.notifications"), 4);
    // A policy edit that would leave that table's clocks behind is refused,
    // naming the table, and changes nothing.
    let (code, message) = sql_error(db.batch_execute(
        "UPDATE sla.policies SET first_response = '1 hour', resolution = '2 days' WHERE name = 'default'",
    ));
    assert_eq!(code, "P0001", "{message}");
    assert!(
        message.contains(
            "pg_sla could not recompute the SLA clocks of table public.tickets: ticket 2 is frozen"
        ),
        "{message}"
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT first_response::text FROM sla.policies WHERE name = 'default'"
        ),
        "04:00:00"
    );
    // A user's error raised with a cancel's SQLSTATE is still that ticket's
    // failure, not a cancel of everyone's due processing.
    db.batch_execute(
        "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.id = 2 THEN RAISE EXCEPTION 'pretend cancel' USING ERRCODE = 'query_canceled'; END IF;
           RETURN NEW;
         END $$;
         UPDATE sla.pending_ticket_updates SET retry_at = now();
         INSERT INTO other (id, created_at) VALUES (3, '2026-11-30 09:00');",
    )
    .unwrap();
    assert_eq!(
        int(&mut db, "SELECT sla.process_due('2026-11-30 14:00')"),
        1
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT concat_ws(' ', attempts, sqlstate, error) FROM sla.pending_ticket_updates"
        ),
        "2 57014 pretend cancel"
    );
    // Once the trigger is fixed and the minute has passed, ticket 2's row
    // is updated, and nothing is notified again.
    db.batch_execute(
        "DROP TRIGGER refuse ON tickets; UPDATE sla.pending_ticket_updates SET retry_at = now()",
    )
    .unwrap();
    assert_eq!(
        int(&mut db, "SELECT sla.process_due('2026-11-30 14:00')"),
        0
    );
    assert_eq!(
        text(&mut db, "SELECT sla_status FROM tickets WHERE id = 2"),
        "breached"
    );
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM sla.pending_ticket_updates"),
        0
    );
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.notifications"), 5);
}

#[test]
fn ddl_on_a_tracked_table_gives_clear_errors_and_drops_clean_up() {
    let cluster = Cluster::start("ddl", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute("INSERT INTO tickets (id) VALUES (1)")
        .unwrap();
    // A renamed table is still tracked under its new name.
    db.batch_execute("ALTER TABLE tickets RENAME TO tickets_renamed")
        .unwrap();
    assert_eq!(int(&mut db, "SELECT sla.process_due('2026-12-31')"), 1);
    db.batch_execute("INSERT INTO tickets_renamed (id) VALUES (2)")
        .unwrap();
    // A mapped column changed to another type: a clear error, no crash.
    db.batch_execute("ALTER TABLE tickets_renamed ALTER created_at TYPE date")
        .unwrap();
    let (code, message) =
        sql_error(db.batch_execute("INSERT INTO tickets_renamed (id) VALUES (3)"));
    assert_eq!(code, "42804", "{message}");
    assert!(
        message.contains("column \"created_at\" (created_at_column) of tracked table public.tickets_renamed has type date"),
        "{message}"
    );
    // A condition column changing type is read with its new type.
    db.batch_execute(
        "ALTER TABLE tickets_renamed ALTER created_at TYPE timestamptz;
         ALTER TABLE tickets_renamed ALTER priority DROP DEFAULT, ALTER priority TYPE int USING 1;
         INSERT INTO tickets_renamed (id, priority) VALUES (3, 12345);",
    )
    .unwrap();
    assert_eq!(
        text(
            &mut db,
            "SELECT sla_policy FROM tickets_renamed WHERE id = 3"
        ),
        "default"
    );
    // Dropping a tracked table takes its tracking and clocks with it, so
    // they never crowd the due index.
    db.batch_execute(
        "CREATE TABLE junk (LIKE tickets_renamed INCLUDING ALL);
         SELECT sla.track('junk');
         INSERT INTO junk (id, priority, created_at) SELECT g, 0, '2000-01-01' FROM generate_series(1, 5) g;
         DROP TABLE junk;",
    )
    .unwrap();
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.tracked_tables"), 1);
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_table <> 'tickets_renamed'::regclass"
        ),
        0
    );
    assert_eq!(int(&mut db, "SELECT sla.process_due('2026-12-31', 1)"), 1);
}

#[test]
fn triggers_of_the_users_own_meet_pg_sla_consistently() {
    let cluster = Cluster::start("user-triggers", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    // An AFTER ROW trigger that triages new tickets by updating them.
    db.batch_execute(
        "CREATE FUNCTION triage() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           UPDATE tickets SET priority = 'urgent' WHERE id = NEW.id AND NEW.id % 2 = 0;
           RETURN NULL;
         END $$;
         CREATE TRIGGER triage AFTER INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION triage();
         INSERT INTO tickets (id) SELECT g FROM generate_series(1, 4) g;",
    )
    .unwrap();
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(id || ':' || sla_policy, ',' ORDER BY id) FROM tickets"
        ),
        "1:default,2:urgent,3:default,4:urgent"
    );
    assert_eq!(
        text(&mut db, "SELECT string_agg(ticket_id || ':' || metric, ',' ORDER BY ticket_id, metric) FROM sla.clocks"),
        "1:first_response,2:first_response,2:resolution,3:first_response,4:first_response,4:resolution"
    );
    // A condition on a mapped time column reads the same in triggers and in
    // the recomputation after a policy edit.
    db.batch_execute(
        "DROP TRIGGER triage ON tickets;
         INSERT INTO sla.policies (name, position, conditions, first_response)
         VALUES ('unanswered', 0, '{\"last_agent_reply_at\": null, \"priority\": \"vip\"}', '10 minutes');
         INSERT INTO tickets (id, priority, last_agent_reply_at) VALUES (10, 'vip', '2026-11-30 09:05'),
                                                                       (11, 'vip', NULL);
         UPDATE sla.policies SET first_response = '15 minutes' WHERE name = 'unanswered';",
    )
    .unwrap();
    assert_eq!(
        text(&mut db, "SELECT string_agg(id || ':' || sla_policy, ',' ORDER BY id) FROM tickets WHERE id >= 10"),
        "10:default,11:unanswered"
    );
    // A ticket moving out of every policy and back gets its clocks back,
    // the time without a policy not counted.
    db.batch_execute(
        "DELETE FROM sla.policies WHERE name = 'default';
         SET pg_sla.event_time = '2026-11-30 09:10';
         UPDATE tickets SET priority = 'normal' WHERE id = 2;",
    )
    .unwrap();
    assert_eq!(
        text(
            &mut db,
            "SELECT coalesce(sla_status, '-') FROM tickets WHERE id = 2"
        ),
        "-"
    );
    db.batch_execute(
        "SET pg_sla.event_time = '2026-11-30 10:10';
         UPDATE tickets SET priority = 'urgent' WHERE id = 2;",
    )
    .unwrap();
    assert_eq!(
        text(&mut db, "SELECT string_agg(metric || ' ' || status || ' ' || due_at, ', ' ORDER BY metric) FROM sla.clocks WHERE ticket_id = '2'"),
        "first_response running 2026-11-30 10:30:00-05, resolution running 2026-12-01 10:00:00-05"
    );
    // A policy added later reaches open tickets that had no clock left open.
    db.batch_execute(
        "RESET pg_sla.event_time;
         UPDATE tickets SET last_agent_reply_at = '2026-11-30 09:20' WHERE id = 1;
         INSERT INTO sla.policies (name, position, conditions, first_response, resolution)
         VALUES ('everything', 5, '{}', '4 hours', '2 days');",
    )
    .unwrap();
    assert_eq!(
        text(
            &mut db,
            "SELECT sla_policy || ' ' || sla_status FROM tickets WHERE id = 1"
        ),
        "everything running"
    );
    // Notification ids go on from where they were after a dump and restore.
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'pg_sla' AND c = 'sla.notifications_id_seq'::regclass"),
        1
    );
}

#[test]
fn pg_slas_trigger_functions_cannot_be_attached_elsewhere() {
    let cluster = Cluster::start("attach", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute("CREATE ROLE eve LOGIN; GRANT CREATE ON SCHEMA public TO eve")
        .unwrap();
    let mut eve = cluster.connect_as("eve");
    eve.batch_execute("CREATE TABLE evil (a int); INSERT INTO evil VALUES (1)")
        .unwrap();
    for function in [
        "calendars_edited",
        "policies_edited",
        "ticket_row_changed",
        "tickets_inserted",
    ] {
        let (code, message) = sql_error(eve.batch_execute(&format!(
            "CREATE TRIGGER t AFTER UPDATE ON evil FOR EACH STATEMENT EXECUTE FUNCTION sla.{function}()"
        )));
        assert_eq!(code, "42501", "{function}: {message}");
    }
    // Even a superuser attaching them by hand gets an error, not a crash.
    db.batch_execute(
        "CREATE TABLE evil2 (a int); INSERT INTO evil2 VALUES (1);
         CREATE TRIGGER c AFTER UPDATE ON evil2 REFERENCING OLD TABLE AS o
           FOR EACH STATEMENT EXECUTE FUNCTION sla.calendars_edited();
         CREATE TRIGGER r BEFORE UPDATE ON tickets FOR EACH STATEMENT
           EXECUTE FUNCTION sla.ticket_row_changed();",
    )
    .unwrap();
    let (code, message) = sql_error(db.batch_execute("UPDATE evil2 SET a = a"));
    assert_eq!(code, "39P01", "{message}");
    let (code, message) = sql_error(db.batch_execute("UPDATE tickets SET status = status"));
    assert_eq!(code, "39P01", "{message}");
    // Fired as pg_sla fires them, on a table it does not track: refused
    // too, not a silent no-op.
    db.batch_execute(
        "DROP TRIGGER r ON tickets;
         CREATE TABLE untracked (LIKE tickets INCLUDING ALL);
         CREATE TRIGGER zz_row BEFORE INSERT OR UPDATE ON untracked FOR EACH ROW
           EXECUTE FUNCTION sla.ticket_row_changed();
         CREATE TABLE untracked2 (LIKE tickets INCLUDING ALL);
         CREATE TRIGGER zz_inserted AFTER INSERT ON untracked2 REFERENCING NEW TABLE AS n
           FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_inserted();
         CREATE TRIGGER zz_truncated AFTER TRUNCATE ON untracked2
           FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_truncated();",
    )
    .unwrap();
    for statement in [
        "INSERT INTO untracked (id) VALUES (1)",
        "INSERT INTO untracked2 (id) VALUES (1)",
        "TRUNCATE untracked2",
    ] {
        let (code, message) = sql_error(db.batch_execute(statement));
        assert_eq!(code, "39P01", "{statement}: {message}");
        assert!(message.contains("is not tracked"), "{message}");
    }
    // pg_sla's own triggers on a copy of a table without its tracking (a
    // restore of some tables, pg_dump -t) do nothing, and sla.track
    // replaces them.
    db.batch_execute(
        "CREATE TABLE copied (LIKE tickets INCLUDING ALL);
         CREATE TRIGGER zz_pg_sla_row BEFORE INSERT OR UPDATE ON copied FOR EACH ROW
           EXECUTE FUNCTION sla.ticket_row_changed();
         CREATE TRIGGER zz_pg_sla_inserted AFTER INSERT ON copied REFERENCING NEW TABLE AS n
           FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_inserted();
         INSERT INTO copied (id) VALUES (1);",
    )
    .unwrap();
    assert_eq!(int(&mut db, "SELECT sla.track('copied')"), 1);
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'copied'::regclass AND tgname LIKE 'zz_pg_sla_%'"
        ),
        5
    );
    assert_eq!(int(&mut db, "SELECT 1"), 1, "the session survived");
}

#[test]
fn row_security_and_renamed_schemas_do_not_lose_clocks() {
    let cluster = Cluster::start("rls", &[]);
    let mut db = cluster.connect();
    setup(&mut db);
    db.batch_execute(
        "CREATE ROLE tenant_owner LOGIN;
         CREATE SCHEMA app AUTHORIZATION tenant_owner;",
    )
    .unwrap();
    let mut owner = cluster.connect_as("tenant_owner");
    owner
        .batch_execute(
            "CREATE TABLE app.t (id bigint PRIMARY KEY, tenant int NOT NULL DEFAULT 1,
                                 status text NOT NULL DEFAULT 'open',
                                 created_at timestamptz NOT NULL DEFAULT '2000-01-01',
                                 last_customer_message_at timestamptz,
                                 last_agent_reply_at timestamptz);
             SELECT sla.track('app.t');
             INSERT INTO app.t (id) VALUES (1), (2);
             ALTER TABLE app.t ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
             CREATE POLICY only_mine ON app.t USING (tenant = current_setting('app.tenant', true)::int);",
        )
        .unwrap();
    // Due processing cannot see the owner's rows through the policy: the
    // tickets stay due (with a warning) and keep their clocks.
    assert_eq!(int(&mut db, "SELECT sla.process_due('2026-12-31')"), 0);
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_table = 'app.t'::regclass"
        ),
        2
    );
    assert!(
        cluster.log_tail(20).contains("row-level security"),
        "{}",
        cluster.log_tail(20)
    );
    // Without the policy's filter, and after the schema is renamed in another
    // session, due processing finds the table under its new name.
    owner
        .batch_execute("ALTER TABLE app.t NO FORCE ROW LEVEL SECURITY")
        .unwrap();
    cluster
        .connect()
        .batch_execute("ALTER SCHEMA app RENAME TO app2")
        .unwrap();
    db.batch_execute("UPDATE sla.clocks SET retry_at = NULL")
        .unwrap();
    assert_eq!(int(&mut db, "SELECT sla.process_due('2026-12-31')"), 2);
    // An edit of policies that changes nothing about matching or targets
    // does not touch tickets (an application holding one is not in its way).
    let mut app = cluster.connect_as("tenant_owner");
    app.batch_execute("BEGIN; UPDATE app2.t SET tenant = 1 WHERE id = 1")
        .unwrap();
    db.batch_execute(
        "SET lock_timeout = '2s';
         UPDATE sla.policies SET feedback_message = 'We are looking into it' WHERE name = 'default';
         UPDATE sla.policies SET first_response = '9 hours' WHERE false;",
    )
    .expect("no ticket lock taken");
    app.batch_execute("COMMIT").unwrap();
}
