//! Upgrades and backups: a 0.1.0 database updated with ALTER EXTENSION keeps
//! its data and behaviour and ends with the same schema as a fresh install;
//! pg_dump and pg_restore carry settings, clocks, notifications and tracking.
use std::process::Command;

use pg_sla_client_tests::{query_int, query_rows as rows, query_text, Client, Cluster, NoTls};

fn connect(cluster: &Cluster, database: &str) -> Client {
    let mut db = Client::connect(&cluster.connection_string(database, "postgres"), NoTls)
        .unwrap_or_else(|e| panic!("connect to {database}: {e}"));
    db.batch_execute("SET TimeZone = 'UTC'").unwrap();
    db
}

/// A help desk in use: a calendar, two policies, a tracked table with
/// answered, paused, solved and breached tickets, notifications and an alert.
fn fill(db: &mut Client) {
    db.batch_execute(
        "INSERT INTO sla.calendars (name, definition) VALUES ('paris', '{\"timezone\": \"Europe/Paris\",
           \"hours\": {\"mon\": [\"09:00-17:00\"], \"tue\": [\"09:00-17:00\"], \"wed\": [\"09:00-17:00\"],
                     \"thu\": [\"09:00-17:00\"], \"fri\": [\"09:00-17:00\"]}, \"holidays\": [\"2026-12-25\"]}');
         INSERT INTO sla.policies (name, position, calendar, conditions, first_response, next_response, resolution,
                                   warn_at, pause_statuses)
         VALUES ('vip', 0, 'paris', '{\"priority\": \"urgent\"}', '1 hour', '2 hours', '8 hours', 0.5, '{pending}'),
                ('standard', 1, NULL, '{}', '4 hours', NULL, '2 days', NULL, '{pending}');
         CREATE TABLE tickets (id bigint PRIMARY KEY, priority text NOT NULL DEFAULT 'normal',
             status text NOT NULL DEFAULT 'open', assignee text, created_at timestamptz NOT NULL,
             last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
         SELECT sla.track('tickets', assignee_column => 'assignee');
         INSERT INTO sla.alert_rules (recipient, min_breached, every_assignee) VALUES ('lead', 2, true);
         SET pg_sla.event_time = '2026-11-23 08:00Z';
         INSERT INTO tickets (id, priority, assignee, created_at)
         SELECT g, CASE WHEN g % 3 = 0 THEN 'urgent' ELSE 'normal' END, 'agent' || g % 4, '2026-11-23 08:00Z'
           FROM generate_series(1, 60) g;
         SET pg_sla.event_time = '2026-11-23 09:30Z';
         UPDATE tickets SET last_agent_reply_at = '2026-11-23 09:30Z' WHERE id % 5 = 0;
         UPDATE tickets SET status = 'pending' WHERE id % 7 = 0;
         SET pg_sla.event_time = '2026-11-23 15:00Z';
         UPDATE tickets SET status = 'solved' WHERE id % 11 = 0;
         RESET pg_sla.event_time;
         SELECT sla.process_due('2026-11-23 13:00Z');",
    )
    .unwrap();
    assert!(query_int(db, "SELECT count(*) FROM sla.notifications") > 20);
    assert_eq!(
        query_int(
            db,
            "SELECT count(*) FROM sla.notifications WHERE kind = 'breach_alert'"
        ),
        1
    );
}

/// What the user's data looks like, table by table, in a stable order.
fn data(db: &mut Client) -> Vec<String> {
    let mut all = Vec::new();
    for query in [
        "SELECT name, definition::text, created_at, updated_at FROM sla.calendars ORDER BY name",
        // Without the column 0.3.0 adds (NULL for policies written before).
        "SELECT (pg_catalog.to_jsonb(p) - 'ticket_tables')::text FROM sla.policies p ORDER BY name",
        // The columns every version has (0.3.0 adds two, NULL for tables
        // tracked before).
        "SELECT (ticket_table, id_column, created_at_column, status_column, closed_statuses,
                 customer_message_at_column, agent_reply_at_column, assignee_column, tracked_at)::text
           FROM sla.tracked_tables t ORDER BY ticket_table::text",
        "SELECT c::text FROM sla.clocks c ORDER BY ticket_table::text, ticket_id, metric, cycle",
        "SELECT n::text FROM sla.notifications n ORDER BY id",
        "SELECT a::text FROM sla.alert_rules a ORDER BY id",
        "SELECT t::text FROM tickets t ORDER BY id",
    ] {
        all.push(format!("-- {query}"));
        all.extend(rows(db, query));
    }
    all
}

/// The extension's schema as the catalogs describe it: members, function
/// definitions and privileges, columns, constraints, indexes, triggers,
/// row-level security, views, comments and what pg_dump keeps.
fn schema(db: &mut Client) -> Vec<String> {
    let mut all = Vec::new();
    for query in [
        "SELECT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d
           JOIN pg_extension e ON e.oid = d.refobjid
          WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'pg_sla' AND d.deptype = 'e'",
        "SELECT p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '')
           FROM pg_proc p WHERE p.pronamespace = 'sla'::regnamespace",
        "SELECT c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.relacl::text, '') || ' rls ' || c.relrowsecurity
                || ' ' || coalesce(array_to_string(c.reloptions, ','), '') || ' ' || coalesce(obj_description(c.oid), '')
           FROM pg_class c WHERE c.relnamespace = 'sla'::regnamespace",
        "SELECT a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '') || ' '
                || coalesce((SELECT collname FROM pg_collation WHERE oid = a.attcollation), '')
                || ' ' || coalesce(a.attacl::text, '')
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
          WHERE c.relnamespace = 'sla'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped",
        "SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
           FROM pg_constraint WHERE connamespace = 'sla'::regnamespace",
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
          WHERE c.relnamespace = 'sla'::regnamespace",
        "SELECT pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE c.relnamespace = 'sla'::regnamespace AND NOT t.tgisinternal",
        "SELECT p.tablename || ' ' || p.policyname || ' ' || p.cmd || ' ' || p.roles::text || ' ' || p.qual
           FROM pg_policies p WHERE p.schemaname = 'sla'",
        "SELECT c.relname || ' ' || pg_get_viewdef(c.oid) FROM pg_class c
          WHERE c.relnamespace = 'sla'::regnamespace AND c.relkind = 'v'",
        "SELECT evtname || ' ' || evtevent || ' ' || evtfoid::regproc || ' ' || evtenabled::text FROM pg_event_trigger",
        "SELECT array_to_string(ARRAY(SELECT unnest(extconfig)::regclass::text ORDER BY 1), ',')
           FROM pg_extension WHERE extname = 'pg_sla'",
        "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'sla'",
    ] {
        let mut found = rows(db, query);
        found.sort();
        all.extend(found);
    }
    all
}

#[test]
fn updating_from_0_1_0_through_0_2_0_keeps_data_and_behaviour_and_matches_a_fresh_install() {
    let cluster = Cluster::start("upgrade", &[]);
    let mut admin = cluster.connect();
    admin.batch_execute("CREATE DATABASE old").unwrap();
    let mut old = connect(&cluster, "old");
    old.batch_execute("CREATE EXTENSION pg_sla VERSION '0.1.0'")
        .unwrap();
    fill(&mut old);
    let before = data(&mut old);
    // 0.1.0 had no reporting.
    assert_eq!(
        query_int(
            &mut old,
            "SELECT count(*) FROM pg_proc WHERE proname = 'report' AND pronamespace = 'sla'::regnamespace"
        ),
        0
    );

    // Through every released version, then to this one: each update script
    // runs on the schema the one before it left.
    for version in ["0.2.0", "0.3.0"] {
        old.batch_execute(&format!("ALTER EXTENSION pg_sla UPDATE TO '{version}'"))
            .unwrap();
        assert_eq!(
            query_text(
                &mut old,
                "SELECT extversion FROM pg_extension WHERE extname = 'pg_sla'"
            ),
            version
        );
        assert_eq!(
            data(&mut old),
            before,
            "data survives the update to {version}"
        );
    }

    // The updated schema is the one a fresh install creates.
    let mut fresh = connect(&cluster, "postgres");
    let (updated, installed) = (schema(&mut old), schema(&mut fresh));
    let only_updated: Vec<_> = updated.iter().filter(|l| !installed.contains(l)).collect();
    let only_installed: Vec<_> = installed.iter().filter(|l| !updated.contains(l)).collect();
    assert!(
        only_updated.is_empty() && only_installed.is_empty(),
        "schemas differ\nonly after update: {only_updated:#?}\nonly in a fresh install: {only_installed:#?}"
    );
    assert!(updated.len() > 150, "the comparison covers the schema");

    // A database created at 0.2.0 (its frozen install script) and updated
    // ends with the same schema too.
    admin.batch_execute("CREATE DATABASE from_020").unwrap();
    let mut from_020 = connect(&cluster, "from_020");
    from_020
        .batch_execute("CREATE EXTENSION pg_sla VERSION '0.2.0'; ALTER EXTENSION pg_sla UPDATE")
        .unwrap();
    let updated_020 = schema(&mut from_020);
    let differ: Vec<_> = updated_020
        .iter()
        .filter(|l| !installed.contains(l))
        .chain(installed.iter().filter(|l| !updated_020.contains(l)))
        .collect();
    assert!(
        differ.is_empty(),
        "0.2.0 updated differs from a fresh install: {differ:#?}"
    );

    // Behaviour: triggers, due processing, alerts and the new reporting.
    old.batch_execute(
        "SET pg_sla.event_time = '2026-11-24 08:00Z';
         INSERT INTO tickets (id, priority, created_at) VALUES (100, 'urgent', '2026-11-24 08:00Z');
         RESET pg_sla.event_time;",
    )
    .unwrap();
    assert_eq!(
        rows(
            &mut old,
            "SELECT metric, status, due_at FROM sla.clocks WHERE ticket_id = '100' ORDER BY metric"
        ),
        [
            "first_response | running | 2026-11-24 09:00:00+00",
            "resolution | running | 2026-11-24 16:00:00+00"
        ]
    );
    let notified = query_int(&mut old, "SELECT max(id) FROM sla.notifications");
    assert!(query_int(&mut old, "SELECT sla.process_due('2026-11-24 12:00Z')") > 0);
    assert_eq!(
        rows(
            &mut old,
            "SELECT metric || ' ' || kind FROM sla.notifications WHERE ticket_id = '100' ORDER BY 1"
        ),
        // Caught up after its deadline: the breach, without a late warning.
        ["first_response breached", "resolution due_soon"]
    );
    assert_eq!(
        query_int(
            &mut old,
            &format!("SELECT min(id) FROM sla.notifications WHERE id > {notified}")
        ),
        notified + 1,
        "notification ids go on"
    );
    assert_eq!(
        query_int(
            &mut old,
            "SELECT sum(started) FROM sla.report('2026-11-01', '2026-12-01')"
        ),
        query_int(&mut old, "SELECT count(*) FROM sla.clocks")
    );
    assert!(
        query_int(
            &mut old,
            "SELECT count(*) FROM sla.open_clocks WHERE breached_for IS NOT NULL"
        ) > 0
    );
}

#[test]
fn dump_and_restore_keeps_settings_clocks_notifications_and_tracking() {
    let cluster = Cluster::start("dump", &[]);
    let mut source = connect(&cluster, "postgres");
    fill(&mut source);
    let before = data(&mut source);

    cluster.dump_and_restore(
        &cluster.connection_string("postgres", "postgres"),
        &[],
        "pg_sla.dump",
        "restored",
    );

    let mut restored = connect(&cluster, "restored");
    assert_eq!(
        data(&mut restored),
        before,
        "same calendars, policies, tracking, clocks, notifications, alert rules and tickets"
    );
    // Still tracked: the triggers are back and keep the clocks.
    restored
        .batch_execute(
            "SET pg_sla.event_time = '2026-11-24 08:00Z';
             INSERT INTO tickets (id, priority, created_at) VALUES (100, 'urgent', '2026-11-24 08:00Z');
             SET pg_sla.event_time = '2026-11-24 08:10Z';
             UPDATE tickets SET last_agent_reply_at = '2026-11-24 08:10Z' WHERE id IN (100, 1);
             RESET pg_sla.event_time;",
        )
        .unwrap();
    assert_eq!(
        rows(
            &mut restored,
            "SELECT ticket_id, metric, cycle, status FROM sla.clocks
              WHERE ticket_id IN ('1', '100') AND metric <> 'resolution' ORDER BY 1, 2, 3"
        ),
        [
            "1 | first_response | 1 | missed",
            "100 | first_response | 1 | achieved"
        ]
    );
    let notified = query_int(&mut restored, "SELECT max(id) FROM sla.notifications");
    assert!(query_int(&mut restored, "SELECT sla.process_due('2026-11-25 12:00Z')") > 0);
    assert_eq!(
        query_int(
            &mut restored,
            &format!("SELECT min(id) FROM sla.notifications WHERE id > {notified}")
        ),
        notified + 1,
        "the notification sequence goes on where it was"
    );
    // A backup role that is not a superuser reads every row as a member of
    // pg_read_all_data, with row security on (pg_dump's default, off,
    // refuses tables that have row security).
    source
        .batch_execute("CREATE ROLE backup LOGIN IN ROLE pg_read_all_data")
        .unwrap();
    let as_backup = cluster.connection_string("postgres", "backup");
    let refused = Command::new("pg_dump")
        .args(["--format=custom", "--file=/dev/null", &as_backup])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("row-level security"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    cluster.dump_and_restore(
        &as_backup,
        &["--enable-row-security"],
        "pg_sla_backup.dump",
        "restored2",
    );
    assert_eq!(
        data(&mut connect(&cluster, "restored2")),
        before,
        "a non-superuser backup restores the same data"
    );

    // Dropping a restored table still takes its tracking with it.
    restored.batch_execute("DROP TABLE tickets").unwrap();
    assert_eq!(
        query_int(&mut restored, "SELECT count(*) FROM sla.clocks"),
        0
    );
}

#[test]
fn before_the_update_a_failing_ticket_row_keeps_its_transition_due_as_in_0_2_0() {
    let cluster = Cluster::start("upgrade-pending", &[]);
    let mut admin = cluster.connect();
    admin.batch_execute("CREATE DATABASE old").unwrap();
    let mut old = connect(&cluster, "old");
    // The new library on a 0.2.0 schema, which has no
    // sla.pending_ticket_updates: the 0.2.0 behaviour, not an error.
    old.batch_execute(
        "CREATE EXTENSION pg_sla VERSION '0.2.0';
         INSERT INTO sla.policies (name, first_response) VALUES ('p', '1 hour');
         CREATE TABLE tickets (id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'open',
             created_at timestamptz NOT NULL, last_customer_message_at timestamptz,
             last_agent_reply_at timestamptz);
         SELECT sla.track('tickets');
         CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.id = 2 THEN RAISE EXCEPTION 'ticket 2 is frozen'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION refuse();
         INSERT INTO tickets (id, created_at) VALUES (1, '2026-11-30 09:00Z'), (2, '2026-11-30 09:00Z');",
    )
    .unwrap();
    assert_eq!(
        query_int(&mut old, "SELECT sla.process_due('2026-11-30 14:00Z')"),
        1
    );
    assert_eq!(
        query_text(
            &mut old,
            "SELECT string_agg(ticket_id, ',') FROM sla.clocks WHERE retry_at IS NOT NULL"
        ),
        "2"
    );
    // Updated, the same ticket is breached and only its row waits.
    old.batch_execute(
        "ALTER EXTENSION pg_sla UPDATE;
         UPDATE sla.clocks SET retry_at = NULL;",
    )
    .unwrap();
    assert_eq!(
        query_int(&mut old, "SELECT sla.process_due('2026-11-30 14:00Z')"),
        1
    );
    assert_eq!(
        query_text(
            &mut old,
            "SELECT ticket_id || ' ' || sqlstate FROM sla.pending_ticket_updates"
        ),
        "2 P0001"
    );
}
