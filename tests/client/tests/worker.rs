//! The background worker on servers started with `pg_sla` preloaded: SLAs
//! advance with nobody touching the tickets, notifications are written once
//! and sent with NOTIFY, and the worker survives crashes, reloads, errors
//! and the extension being dropped.
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pg_sla_client_tests::{query_int as int, query_text as text, wait_for, Client, Cluster};

/// A cluster with the worker preloaded, ticking every 100 ms.
fn worker_cluster(name: &str, extra: &[&str]) -> Cluster {
    let mut settings = vec![
        "shared_preload_libraries = 'pg_sla'",
        "pg_sla.naptime = '100ms'",
    ];
    settings.extend_from_slice(extra);
    Cluster::start(name, &settings)
}

/// A 24/7 policy whose first response is due `target` after creation, and
/// a tracked `tickets` table with an assignee column.
fn setup(db: &mut Client, target: &str) {
    db.batch_execute(&format!(
        "INSERT INTO sla.policies (name, first_response, pause_statuses)
         VALUES ('fast', '{target}', '{{waiting}}');
         CREATE TABLE tickets (
             id bigint PRIMARY KEY,
             status text NOT NULL DEFAULT 'open',
             assignee text,
             created_at timestamptz NOT NULL DEFAULT now(),
             last_customer_message_at timestamptz,
             last_agent_reply_at timestamptz);
         SELECT sla.track('tickets', assignee_column => 'assignee');"
    ))
    .unwrap();
}

/// Tickets 1..=count, their first responses falling due evenly over the
/// next `spread_ms` milliseconds (policy target: 1 minute).
fn tickets_due_soon(db: &mut Client, count: i64, spread_ms: i64) {
    db.batch_execute(&format!(
        "INSERT INTO tickets (id, created_at)
         SELECT i, now() - interval '1 minute' + i * interval '{spread_ms} milliseconds' / {count}
           FROM generate_series(1, {count}) i"
    ))
    .unwrap();
}

fn worker_pid(db: &mut Client) -> Option<i64> {
    let pid = int(
        db,
        "SELECT coalesce((SELECT pid FROM sla.worker_status()), 0)",
    );
    (pid != 0).then_some(pid)
}

fn breached_notifications(db: &mut Client) -> i64 {
    int(
        db,
        "SELECT count(*) FROM sla.notifications WHERE kind = 'breached'",
    )
}

fn breached_tickets(db: &mut Client) -> i64 {
    int(
        db,
        "SELECT count(*) FROM tickets WHERE sla_status = 'breached'",
    )
}

/// Waits until `count` tickets show as breached.
fn wait_for_breached(db: &mut Client, what: &str, count: i64, timeout: Duration) {
    wait_for(what, timeout, || {
        (breached_tickets(db) == count).then_some(())
    });
}

/// Every ticket is breached, and has exactly one `breached` notification.
fn assert_each_breached_once(db: &mut Client, count: i64) {
    assert_eq!(breached_tickets(db), count);
    assert_eq!(
        int(
            db,
            "SELECT count(DISTINCT ticket_id) FROM sla.notifications WHERE kind = 'breached'"
        ),
        count,
        "one notification per ticket"
    );
    assert_eq!(breached_notifications(db), count, "no duplicate");
}

/// Waits for the server to go through crash recovery and for a new worker
/// (not `old_worker`) to run; returns a new session.
fn reconnect_after_crash(cluster: &Cluster, old_worker: i64) -> Client {
    wait_for("crash recovery", Duration::from_secs(30), || {
        cluster
            .server_log()
            .contains("all server processes terminated; reinitializing")
            .then_some(())
    });
    wait_for("a new worker", Duration::from_secs(60), || {
        let mut db = Client::connect(
            &cluster.connection_string("postgres", "postgres"),
            pg_sla_client_tests::NoTls,
        )
        .ok()?;
        let pid: i32 = db
            .query_one(
                "SELECT coalesce((SELECT pid FROM sla.worker_status()), 0)",
                &[],
            )
            .ok()?
            .get(0);
        (pid != 0 && i64::from(pid) != old_worker).then_some(db)
    })
}

/// Runs an ALTER SYSTEM statement and reloads the configuration (SIGHUP).
fn reload_with(db: &mut Client, alter_system: &str) {
    db.batch_execute(alter_system).unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
}

fn kill(pid: i64, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

#[test]
fn the_worker_alone_breaches_a_ticket_once_and_a_listener_hears_it() {
    let cluster = worker_cluster("worker-breach", &[]);
    let mut db = cluster.connect();
    setup(&mut db, "2 seconds");
    let mut listener = cluster.connect();
    listener.batch_execute("LISTEN pg_sla").unwrap();

    // Taken before the INSERT: the ticket's created_at (the transaction's
    // start) is later, however long a loaded machine takes to answer.
    let created = Instant::now();
    db.batch_execute("INSERT INTO tickets (id) VALUES (7)")
        .unwrap();
    assert_eq!(text(&mut db, "SELECT sla_status FROM tickets"), "running");
    wait_for(
        "the worker to breach ticket 7",
        Duration::from_secs(10),
        || (text(&mut db, "SELECT sla_status FROM tickets") == "breached").then_some(()),
    );
    assert!(created.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        text(
            &mut db,
            "SELECT (n.created_at > t.created_at + interval '2 seconds')::text
               FROM sla.notifications n, tickets t"
        ),
        "true",
        "not before the deadline"
    );

    // Nobody touched the ticket: the worker wrote the breach, once.
    assert_eq!(breached_notifications(&mut db), 1);
    assert_eq!(
        text(
            &mut db,
            "SELECT (sla_breached_at IS NOT NULL)::text FROM tickets"
        ),
        "true"
    );

    let mut notifications = listener.notifications();
    let mut arriving = notifications.timeout_iter(Duration::from_secs(5));
    use postgres::fallible_iterator::FallibleIterator;
    let heard = arriving.next().unwrap().expect("a notification within 5 s");
    assert_eq!(heard.channel(), "pg_sla");
    let payload = heard.payload();
    for field in [
        "\"kind\" : \"breached\"",
        "\"ticket_table\" : \"public.tickets\"",
        "\"ticket_id\" : \"7\"",
        "\"metric\" : \"first_response\"",
        "\"due_at\" : \"20",
    ] {
        assert!(payload.contains(field), "{field} in {payload}");
    }
    let id = int(&mut db, "SELECT id FROM sla.notifications");
    assert!(payload.contains(&format!("\"id\" : {id},")), "{payload}");
    assert!(arriving.next().unwrap().is_none(), "a single notification");

    // A second breach would be a second notification: none comes.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(breached_notifications(&mut db), 1);
    let status = text(
        &mut db,
        "SELECT concat_ws(' ', running, transitions >= 1, errors, ticks > 3)
           FROM sla.worker_status()",
    );
    assert_eq!(status, "t t 0 t");
}

#[test]
fn the_listen_example_prints_each_notification() {
    let cluster = worker_cluster("worker-listen-example", &[]);
    let mut db = cluster.connect();
    setup(&mut db, "1 second");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg_sla_listen"))
        .args([
            &cluster.connection_string("postgres", "postgres"),
            "2",
            "30",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start pg_sla_listen");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "listening on channel pg_sla"
    );
    // Anyone may NOTIFY pg_sla: the client acts only on rows pg_sla wrote.
    db.batch_execute(
        r#"NOTIFY pg_sla, '{"id" : 999999, "kind" : "breached", "ticket_id" : "forged"}';
           NOTIFY pg_sla, 'not json';"#,
    )
    .unwrap();
    db.batch_execute("INSERT INTO tickets (id) VALUES (1), (2)")
        .unwrap();
    let printed: Vec<String> = lines.map(|line| line.unwrap()).collect();
    assert!(child.wait().unwrap().success());
    assert_eq!(printed.len(), 2, "{printed:?}");
    assert!(!printed.iter().any(|l| l.contains("forged")), "{printed:?}");
    // It prints the rows, not the payloads.
    assert!(
        printed.iter().all(|l| l.contains("\"kind\":\"breached\"")),
        "{printed:?}"
    );
    for id in ["1", "2"] {
        let ticket = format!("\"ticket_id\":\"{id}\"");
        assert!(printed.iter().any(|l| l.contains(&ticket)), "{printed:?}");
    }
}

#[test]
fn killing_the_worker_loses_and_duplicates_nothing() {
    // Committed means durable here, as on a production server.
    let cluster = worker_cluster("worker-kill", &["synchronous_commit = on"]);
    let mut db = cluster.connect();
    setup(&mut db, "1 minute");
    let first_pid = wait_for("the worker", Duration::from_secs(10), || {
        worker_pid(&mut db)
    });
    tickets_due_soon(&mut db, 2000, 3000);
    wait_for("some breaches", Duration::from_secs(10), || {
        (breached_notifications(&mut db) > 0).then_some(())
    });
    assert!(breached_notifications(&mut db) < 2000, "killed mid-way");
    kill(first_pid, "-KILL");
    drop(db);

    // The postmaster resets every backend and starts the worker again.
    let mut db = reconnect_after_crash(&cluster, first_pid);
    let second_pid = worker_pid(&mut db).unwrap();
    wait_for_breached(
        &mut db,
        "every ticket breached",
        2000,
        Duration::from_secs(30),
    );
    assert_each_breached_once(&mut db, 2000);

    // SIGTERM (pg_terminate_backend) stops it promptly; it comes back.
    let stopped = Instant::now();
    assert_eq!(
        text(
            &mut db,
            &format!("SELECT pg_terminate_backend({second_pid})::text")
        ),
        "true"
    );
    wait_for("the worker to exit", Duration::from_secs(5), || {
        (int(
            &mut db,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {second_pid}"),
        ) == 0)
            .then_some(())
    });
    assert!(stopped.elapsed() < Duration::from_secs(2), "prompt");
    let third_pid = wait_for("the worker to restart", Duration::from_secs(15), || {
        worker_pid(&mut db)
    });
    assert_ne!(third_pid, second_pid);
}

#[test]
fn a_backend_crash_in_the_middle_of_a_tick_loses_and_duplicates_nothing() {
    let cluster = worker_cluster("worker-crash", &["synchronous_commit = on"]);
    let mut db = cluster.connect();
    setup(&mut db, "1 minute");
    // Every breach written into a ticket takes a millisecond, so that the
    // worker's tick lasts seconds.
    db.batch_execute(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(0.001); RETURN NEW; END $$;
         CREATE TRIGGER slow BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION slow();",
    )
    .unwrap();
    tickets_due_soon(&mut db, 3000, 10);
    wait_for("the worker to be mid-tick", Duration::from_secs(20), || {
        let done = breached_notifications(&mut db);
        let processing = text(&mut db, "SELECT state FROM sla.worker_status()") == "processing";
        (processing && done > 0 && done < 2000).then_some(())
    });
    let worker = worker_pid(&mut db).unwrap();
    let mut victim = cluster.connect();
    let victim_pid = int(&mut victim, "SELECT pg_backend_pid()");
    kill(victim_pid, "-KILL");
    drop(db);

    let mut db = reconnect_after_crash(&cluster, worker);
    wait_for_breached(
        &mut db,
        "every ticket breached",
        3000,
        Duration::from_secs(60),
    );
    assert_each_breached_once(&mut db, 3000);
}

#[test]
fn reloading_the_configuration_changes_the_nap_time() {
    let cluster = worker_cluster("worker-reload", &["pg_sla.naptime = '1h'"]);
    let mut db = cluster.connect();
    setup(&mut db, "1 second");
    let ticks = |db: &mut Client| int(db, "SELECT ticks FROM sla.worker_status()");
    // The worker ticked once after the extension appeared... or not yet:
    // with an hour's nap, it saw the extension missing at start and sleeps.
    let before = ticks(&mut db);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(ticks(&mut db), before, "sleeping for an hour");

    reload_with(&mut db, "ALTER SYSTEM SET pg_sla.naptime = '50ms'");
    wait_for("ticks every 50 ms", Duration::from_secs(5), || {
        (ticks(&mut db) >= before + 10).then_some(())
    });
    assert_eq!(text(&mut db, "SHOW pg_sla.naptime"), "50ms");

    // Turned off, it leaves due tickets alone; back on, it breaches them.
    reload_with(&mut db, "ALTER SYSTEM SET pg_sla.enabled = off");
    wait_for("the worker to be disabled", Duration::from_secs(5), || {
        (text(&mut db, "SELECT state FROM sla.worker_status()") == "disabled").then_some(())
    });
    db.batch_execute("INSERT INTO tickets (id) VALUES (1)")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(text(&mut db, "SELECT sla_status FROM tickets"), "running");
    reload_with(&mut db, "ALTER SYSTEM RESET pg_sla.enabled");
    wait_for("the breach", Duration::from_secs(5), || {
        (text(&mut db, "SELECT sla_status FROM tickets") == "breached").then_some(())
    });
}

#[test]
fn the_worker_waits_while_the_extension_is_dropped_and_resumes_when_created_again() {
    let cluster = worker_cluster("worker-drop", &[]);
    let mut db = cluster.connect();
    setup(&mut db, "1 second");
    let pid = wait_for("the worker", Duration::from_secs(10), || {
        worker_pid(&mut db)
    });
    let waiting_lines = || {
        cluster
            .server_log()
            .matches("waiting for CREATE EXTENSION pg_sla")
            .count()
    };
    let found_lines = || {
        cluster
            .server_log()
            .matches("extension pg_sla found")
            .count()
    };
    wait_for(
        "the worker to see the extension",
        Duration::from_secs(5),
        || (found_lines() == 1).then_some(()),
    );
    let before = waiting_lines();

    db.batch_execute("DROP EXTENSION pg_sla CASCADE").unwrap();
    wait_for("the worker to notice", Duration::from_secs(5), || {
        (waiting_lines() == before + 1).then_some(())
    });
    // Many ticks later, still one line, and the same worker.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        waiting_lines(),
        before + 1,
        "one log line, not one per tick"
    );
    let same_worker = int(
        &mut db,
        &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND backend_type = 'pg_sla worker'"),
    );
    assert_eq!(same_worker, 1, "it neither exited nor crashed");

    // Created again, its tables are new and empty when the worker first
    // reads them; what is added afterwards must still reach the worker.
    db.batch_execute("CREATE EXTENSION pg_sla").unwrap();
    wait_for(
        "the worker to see the new extension",
        Duration::from_secs(5),
        || (found_lines() == 2).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(300));
    db.batch_execute(
        "ALTER TABLE tickets DROP COLUMN sla_policy, DROP COLUMN sla_status,
             DROP COLUMN sla_due_at, DROP COLUMN sla_breached_at;
         INSERT INTO sla.policies (name, first_response) VALUES ('fast', '1 second');
         SELECT sla.track('tickets', assignee_column => 'assignee');
         INSERT INTO tickets (id) VALUES (1);",
    )
    .unwrap();
    wait_for(
        "a breach by the same worker",
        Duration::from_secs(10),
        || (text(&mut db, "SELECT sla_status FROM tickets") == "breached").then_some(()),
    );
    assert_eq!(worker_pid(&mut db), Some(pid));
    assert_eq!(breached_notifications(&mut db), 1);
    assert_eq!(found_lines(), 2, "it logged finding the extension again");
}

#[test]
fn a_ticket_whose_trigger_raises_is_breached_all_the_same_and_its_row_is_retried() {
    let cluster = worker_cluster("worker-poison", &[]);
    let mut db = cluster.connect();
    setup(&mut db, "1 second");
    db.batch_execute(
        "CREATE FUNCTION poisoned() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.id = 2 THEN RAISE EXCEPTION 'ticket 2 is poisoned'; END IF;
             -- A resource SQLSTATE raised by user code is the ticket's
             -- problem too, not the worker's.
             IF NEW.id = 4 THEN RAISE EXCEPTION 'ticket 4 claims a full disk' USING ERRCODE = '53100'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER poisoned BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION poisoned();
         INSERT INTO tickets (id) SELECT generate_series(1, 5);",
    )
    .unwrap();
    let pid = wait_for("the worker", Duration::from_secs(10), || {
        worker_pid(&mut db)
    });
    wait_for_breached(
        &mut db,
        "the healthy tickets' breaches",
        3,
        Duration::from_secs(10),
    );
    // Every breach is recorded and notified, the poisoned ones too: only
    // their rows are behind, and kept to be retried with their SQLSTATE.
    wait_for("every breach notified", Duration::from_secs(10), || {
        (breached_notifications(&mut db) == 5).then_some(())
    });
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM tickets WHERE sla_status = 'running'"
        ),
        "2,4"
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(concat_ws(' ', ticket_id, sqlstate, error, attempts), ' | ' ORDER BY ticket_id)
               FROM sla.pending_ticket_updates"
        ),
        "2 P0001 ticket 2 is poisoned 1 | 4 53100 ticket 4 claims a full disk 1"
    );
    wait_for("both failures counted", Duration::from_secs(5), || {
        (int(&mut db, "SELECT errors FROM sla.worker_status()") >= 2).then_some(())
    });
    let error = text(
        &mut db,
        "SELECT concat_ws(' | ', running, errors > 0, last_error, last_error_at IS NOT NULL)
           FROM sla.worker_status()",
    );
    assert!(error.starts_with("t | t | "), "{error}");
    assert!(
        (error.contains("ticket 2 of table public.tickets")
            && error.contains("ticket 2 is poisoned"))
            || (error.contains("ticket 4 of table public.tickets")
                && error.contains("(SQLSTATE 53100)")),
        "{error}"
    );
    let log = cluster.server_log();
    assert!(
        log.contains("ticket 2 of table public.tickets: its transitions are recorded and notified, but updating its SLA columns failed and is retried in a minute: ticket 2 is poisoned (SQLSTATE P0001)"),
        "logged"
    );
    assert!(log.contains("ticket 4 claims a full disk"), "logged");
    // Still failing when retried (the test skips the minute): one more
    // attempt each, and no second notification.
    db.batch_execute("UPDATE sla.pending_ticket_updates SET retry_at = now()")
        .unwrap();
    wait_for("a second attempt", Duration::from_secs(10), || {
        (int(
            &mut db,
            "SELECT count(*) FROM sla.pending_ticket_updates WHERE attempts = 2",
        ) == 2)
            .then_some(())
    });
    assert_eq!(breached_notifications(&mut db), 5);
    // Cured, the rows are updated on their own; the worker never died.
    db.batch_execute(
        "DROP TRIGGER poisoned ON tickets;
         UPDATE sla.pending_ticket_updates SET retry_at = now();",
    )
    .unwrap();
    wait_for_breached(
        &mut db,
        "the cured tickets' rows",
        5,
        Duration::from_secs(10),
    );
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM sla.pending_ticket_updates"),
        0
    );
    assert_eq!(worker_pid(&mut db), Some(pid));
    assert_each_breached_once(&mut db, 5);
}

#[test]
fn a_release_refused_by_a_not_null_assignee_does_not_withhold_the_breach() {
    let cluster = worker_cluster("worker-release-refused", &[]);
    let mut db = cluster.connect();
    // First response due in 2 s, the assignee released at half of it.
    db.batch_execute(
        "INSERT INTO sla.policies (name, first_response, release_ownership_at)
         VALUES ('fast', '2 seconds', 0.5);
         CREATE TABLE tickets (
             id bigint PRIMARY KEY,
             status text NOT NULL DEFAULT 'open',
             assignee text,
             created_at timestamptz NOT NULL DEFAULT now(),
             last_customer_message_at timestamptz,
             last_agent_reply_at timestamptz);
         SELECT sla.track('tickets', assignee_column => 'assignee');
         -- Made NOT NULL after tracking: releasing the assignee now fails.
         UPDATE tickets SET assignee = 'nobody' WHERE assignee IS NULL;
         ALTER TABLE tickets ALTER COLUMN assignee SET NOT NULL;
         INSERT INTO tickets (id, assignee) VALUES (1, 'ann'), (2, 'bob'), (3, 'cid');",
    )
    .unwrap();
    wait_for("the breaches notified", Duration::from_secs(10), || {
        (breached_notifications(&mut db) == 3).then_some(())
    });
    wait_for("the failures kept", Duration::from_secs(10), || {
        (int(&mut db, "SELECT count(*) FROM sla.pending_ticket_updates") == 3).then_some(())
    });
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(concat_ws(' ', ticket_id, release_ownership, assignee, sqlstate), ', ' ORDER BY ticket_id)
               FROM sla.pending_ticket_updates"
        ),
        "1 t ann 23502, 2 t bob 23502, 3 t cid 23502"
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.notifications WHERE kind = 'ownership_released'"
        ),
        3,
        "the release is recorded and notified too"
    );
    assert!(cluster
        .server_log()
        .contains("updating its SLA columns and the release of its assignee failed"));
    // Meanwhile an agent answers ticket 2: its clock stops, so its release
    // is no longer owed and it keeps its assignee; ticket 3 is reassigned,
    // and keeps its new assignee.
    db.batch_execute(
        "UPDATE tickets SET last_agent_reply_at = now() WHERE id = 2;
         UPDATE tickets SET assignee = 'dan' WHERE id = 3;
         ALTER TABLE tickets ALTER COLUMN assignee DROP NOT NULL;
         UPDATE sla.pending_ticket_updates SET retry_at = now();",
    )
    .unwrap();
    wait_for("the retried rows", Duration::from_secs(10), || {
        (int(&mut db, "SELECT count(*) FROM sla.pending_ticket_updates") == 0).then_some(())
    });
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(concat_ws(' ', id, coalesce(assignee, '-'), sla_status), ', ' ORDER BY id) FROM tickets"
        ),
        "1 - breached, 2 bob missed, 3 dan breached"
    );
    // Nothing was notified twice.
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(kind || ':' || n, ',' ORDER BY kind)
               FROM (SELECT kind, count(*) n FROM sla.notifications GROUP BY kind) k"
        ),
        "breached:3,ownership_released:3"
    );
}

#[test]
fn the_worker_changes_tickets_with_their_owner_privileges() {
    let cluster = worker_cluster("worker-privileges", &[]);
    let mut db = cluster.connect();
    db.batch_execute(
        "CREATE ROLE app LOGIN;
         GRANT CREATE ON SCHEMA public TO app;
         INSERT INTO sla.policies (name, first_response) VALUES ('fast', '1 second');",
    )
    .unwrap();
    let mut app = cluster.connect_as("app");
    app.batch_execute(
        "CREATE TABLE tickets (
             id bigint PRIMARY KEY,
             status text NOT NULL DEFAULT 'open',
             created_at timestamptz NOT NULL DEFAULT now(),
             last_customer_message_at timestamptz,
             last_agent_reply_at timestamptz);
         CREATE TABLE seen (who text, reads_pg_authid boolean);
         -- Ticket tables are changed with search_path = pg_catalog, pg_temp.
         CREATE FUNCTION record_who() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             BEGIN
                 PERFORM count(*) FROM pg_catalog.pg_authid;
                 INSERT INTO public.seen VALUES (current_user, true);
             EXCEPTION WHEN insufficient_privilege THEN
                 INSERT INTO public.seen VALUES (current_user, false);
             END;
             RETURN NEW;
         END $$;
         CREATE TRIGGER record_who BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION record_who();
         SELECT sla.track('tickets');
         INSERT INTO tickets (id) VALUES (1);",
    )
    .unwrap();
    wait_for("the breach", Duration::from_secs(10), || {
        (text(&mut app, "SELECT sla_status FROM tickets") == "breached").then_some(())
    });
    assert_eq!(
        text(
            &mut app,
            "SELECT string_agg(DISTINCT who || '/' || reads_pg_authid, ',') FROM seen"
        ),
        "app/false"
    );
}

#[test]
fn breach_alerts_fire_once_per_crossing_of_the_threshold() {
    let cluster = worker_cluster("worker-alerts", &[]);
    let mut db = cluster.connect();
    setup(&mut db, "1 second");
    db.batch_execute(
        "INSERT INTO sla.alert_rules (recipient, min_breached) VALUES ('ann', 2);
         INSERT INTO sla.alert_rules (recipient, min_breached, every_assignee) VALUES ('lead', 3, true);",
    )
    .unwrap();
    let alerts = |db: &mut Client, recipient: &str| {
        int(
            db,
            &format!(
                "SELECT count(*) FROM sla.notifications
                  WHERE kind = 'breach_alert' AND recipient = '{recipient}'"
            ),
        )
    };
    // Alerts are counted in the same transaction as the breaches.
    let breached = |db: &mut Client, count: i64| {
        wait_for_breached(db, "breaches", count, Duration::from_secs(10))
    };

    // One of ann's tickets breached: under her threshold of 2.
    db.batch_execute("INSERT INTO tickets (id, assignee) VALUES (1, 'ann'), (2, 'bob')")
        .unwrap();
    breached(&mut db, 2);
    assert_eq!(alerts(&mut db, "ann"), 0);
    assert_eq!(alerts(&mut db, "lead"), 0);

    // Her second: one alert. A third: none more.
    db.batch_execute("INSERT INTO tickets (id, assignee) VALUES (3, 'ann')")
        .unwrap();
    breached(&mut db, 3);
    assert_eq!(alerts(&mut db, "ann"), 1);
    assert_eq!(
        alerts(&mut db, "lead"),
        1,
        "every assignee's tickets count for the lead"
    );
    // Her count is 2, at the threshold: a pause of a breached ticket
    // (waiting for the customer) and its end are not a new crossing.
    db.batch_execute("UPDATE tickets SET status = 'waiting' WHERE id = 3")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    db.batch_execute("UPDATE tickets SET status = 'open' WHERE id = 3")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(alerts(&mut db, "ann"), 1);

    db.batch_execute("INSERT INTO tickets (id, assignee) VALUES (4, 'ann')")
        .unwrap();
    breached(&mut db, 4);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(alerts(&mut db, "ann"), 1);
    assert_eq!(
        text(
            &mut db,
            "SELECT message FROM sla.notifications WHERE recipient = 'ann'"
        ),
        "2 breached open tickets (alert threshold 2)"
    );

    // Replies bring her count down to 1: the rule re-arms...
    db.batch_execute("UPDATE tickets SET last_agent_reply_at = now() WHERE id IN (1, 3)")
        .unwrap();
    wait_for("the rule to re-arm", Duration::from_secs(5), || {
        (text(
            &mut db,
            "SELECT alerting::text || ' ' || breached_count FROM sla.alert_rules WHERE recipient = 'ann'",
        ) == "false 1")
            .then_some(())
    });
    assert_eq!(alerts(&mut db, "ann"), 1);
    // ...and the next crossing alerts again.
    db.batch_execute("INSERT INTO tickets (id, assignee) VALUES (5, 'ann')")
        .unwrap();
    wait_for("a second alert", Duration::from_secs(10), || {
        (alerts(&mut db, "ann") == 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(alerts(&mut db, "ann"), 2);
    // The lead's count fell to 2 (tickets 2 and 4) and rose back to 3.
    assert_eq!(alerts(&mut db, "lead"), 2);
}

#[test]
fn without_preloading_the_status_says_so_and_process_due_still_works() {
    let cluster = Cluster::start("worker-not-loaded", &[]);
    let mut db = cluster.connect();
    assert_eq!(
        text(
            &mut db,
            "SELECT running || ' ' || state FROM sla.worker_status()"
        ),
        "false not loaded: add pg_sla to shared_preload_libraries"
    );
    setup(&mut db, "1 second");
    db.batch_execute("INSERT INTO tickets (id) VALUES (1)")
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(text(&mut db, "SELECT sla_status FROM tickets"), "running");
    assert_eq!(int(&mut db, "SELECT sla.process_due()"), 1);
    assert_eq!(text(&mut db, "SELECT sla_status FROM tickets"), "breached");
}

#[test]
fn a_locked_table_or_ticket_does_not_hold_up_the_others_and_sigterm_is_prompt() {
    // One clock per transaction: a locked ticket at the head of the due
    // queue must not stop the others behind it.
    let cluster = worker_cluster("worker-locks", &["pg_sla.batch_size = 1"]);
    let mut db = cluster.connect();
    setup(&mut db, "2 seconds");
    db.batch_execute(
        "CREATE TABLE other (LIKE tickets INCLUDING ALL);
         SELECT sla.track('other', assignee_column => 'assignee');",
    )
    .unwrap();
    // Table `other`'s ticket falls due first, then ticket 1; someone holds
    // the whole of `other`, and an application holds ticket 1's row.
    db.batch_execute(
        "INSERT INTO other (id, created_at) VALUES (1, now() - interval '1.5 seconds');
         INSERT INTO tickets (id, created_at) VALUES (1, now() - interval '1 second');
         INSERT INTO tickets (id) SELECT generate_series(2, 4);",
    )
    .unwrap();
    let mut row_holder = cluster.connect();
    row_holder
        .batch_execute("BEGIN; SELECT * FROM tickets WHERE id = 1 FOR UPDATE;")
        .unwrap();
    let mut table_holder = cluster.connect();
    table_holder
        .batch_execute("BEGIN; LOCK TABLE other IN ACCESS EXCLUSIVE MODE;")
        .unwrap();
    wait_for("the tickets nobody holds", Duration::from_secs(10), || {
        (text(
            &mut db,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM tickets WHERE sla_status = 'breached'",
        ) == "2,3,4")
            .then_some(())
    });
    // (Its clock, not its row: reading `other` would wait for the lock.)
    assert_eq!(
        text(
            &mut db,
            "SELECT status FROM sla.clocks WHERE ticket_table = 'other'::regclass"
        ),
        "running"
    );
    assert_eq!(
        text(&mut db, "SELECT status FROM sla.clocks WHERE ticket_table = 'tickets'::regclass AND ticket_id = '1'"),
        "running"
    );
    row_holder.batch_execute("COMMIT").unwrap();
    table_holder.batch_execute("COMMIT").unwrap();
    wait_for(
        "the held tickets, once released",
        Duration::from_secs(10),
        || {
            (int(
                &mut db,
                "SELECT count(*) FROM sla.notifications WHERE kind = 'breached'",
            ) == 5)
                .then_some(())
        },
    );
    assert_eq!(text(&mut db, "SELECT sla_status FROM other"), "breached");

    // A cancel reaching the idle worker has nothing to cancel: it goes on.
    let before = worker_pid(&mut db).unwrap();
    db.batch_execute(&format!("SELECT pg_cancel_backend({before})"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(worker_pid(&mut db), Some(before));

    // A trigger that takes a minute: SIGTERM interrupts it, not waits for it.
    db.batch_execute(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$;
         CREATE TRIGGER slow BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION slow();
         INSERT INTO tickets (id) VALUES (5);",
    )
    .unwrap();
    let pid = wait_for(
        "the worker in the slow trigger",
        Duration::from_secs(10),
        || {
            db.query_opt(
                "SELECT pid FROM pg_stat_activity
              WHERE backend_type = 'pg_sla worker' AND wait_event = 'PgSleep'",
                &[],
            )
            .unwrap()
            .map(|row| i64::from(row.get::<_, i32>(0)))
        },
    );
    let stopped = Instant::now();
    db.batch_execute(&format!("SELECT pg_terminate_backend({pid})"))
        .unwrap();
    wait_for("the worker to exit", Duration::from_secs(10), || {
        (int(
            &mut db,
            &format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"),
        ) == 0)
            .then_some(())
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "prompt: {:?}",
        stopped.elapsed()
    );
    assert_eq!(
        text(&mut db, "SELECT sla_status FROM tickets WHERE id = 5"),
        "running",
        "the interrupted transaction rolled back"
    );
}

#[test]
fn database_defaults_do_not_change_how_the_worker_runs() {
    let cluster = worker_cluster("worker-defaults", &[]);
    let mut db = cluster.connect();
    setup(&mut db, "1 second");
    // Defaults that would stop due processing (REPEATABLE READ, read-only),
    // cut it short, or make it run a database owner's code as a superuser:
    // an operator placed before pg_catalog's.
    db.batch_execute(
        "CREATE SCHEMA evil;
         CREATE TABLE public.trapped (who text);
         CREATE FUNCTION evil.ge(timestamptz, timestamptz) RETURNS boolean
           LANGUAGE plpgsql AS $$
           BEGIN
               INSERT INTO public.trapped VALUES (current_user);
               RETURN $1 OPERATOR(pg_catalog.>=) $2;
           END $$;
         CREATE OPERATOR evil.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ge);
         ALTER DATABASE postgres SET default_transaction_isolation = 'repeatable read';
         ALTER DATABASE postgres SET default_transaction_read_only = on;
         ALTER DATABASE postgres SET statement_timeout = '1ms';
         ALTER DATABASE postgres SET search_path = evil, pg_catalog, public;",
    )
    .unwrap();
    let old = worker_pid(&mut db).unwrap();
    db.batch_execute(&format!("SELECT pg_terminate_backend({old})"))
        .unwrap();
    // Each poll connects anew. A PostgreSQL 15 postmaster that reaps the
    // worker while it is busy (starting this very connection, say) sleeps
    // on the timeout it computed before, up to a minute, and misses the
    // worker's 3-second restart time; any connection wakes it, as a
    // monitoring client's would (see docs/worker.md).
    // The database's own defaults are overridden from the start (a 1 ms
    // statement timeout could cancel the very statements that turn it off).
    let connect = || {
        Client::connect(
            &format!(
                "{} options='-c statement_timeout=0 -c default_transaction_read_only=off'",
                cluster.connection_string("postgres", "postgres")
            ),
            pg_sla_client_tests::NoTls,
        )
        .unwrap()
    };
    wait_for("a new worker", Duration::from_secs(15), || {
        worker_pid(&mut connect()).filter(|&pid| pid != old)
    });
    let mut db = connect();
    db.batch_execute("INSERT INTO public.tickets (id) VALUES (1)")
        .unwrap();
    wait_for("the breach", Duration::from_secs(10), || {
        (text(&mut db, "SELECT sla_status FROM public.tickets") == "breached").then_some(())
    });
    assert_eq!(int(&mut db, "SELECT errors FROM sla.worker_status()"), 0);
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM public.trapped"),
        0,
        "the worker never used the database's search_path"
    );
}

#[test]
fn notify_payloads_can_be_reduced_to_the_id_for_listeners_without_privileges() {
    let cluster = worker_cluster("worker-notify-id", &[]);
    let mut db = cluster.connect();
    setup(&mut db, "1 second");
    db.batch_execute("CREATE ROLE stranger LOGIN").unwrap();
    let mut stranger = cluster.connect_as("stranger");
    // Set server-wide only, where the worker sees it too.
    let (code, message) = pg_sla_client_tests::sql_error(
        stranger.batch_execute("SET pg_sla.notify_payload = 'full'"),
    );
    assert_eq!(code, "55P02", "{message}");
    reload_with(&mut db, "ALTER SYSTEM SET pg_sla.notify_payload = 'id'");
    wait_for("the reload", Duration::from_secs(5), || {
        (text(&mut stranger, "SHOW pg_sla.notify_payload") == "id").then_some(())
    });
    stranger.batch_execute("LISTEN pg_sla").unwrap();
    db.batch_execute("INSERT INTO tickets (id) VALUES (31)")
        .unwrap();
    use postgres::fallible_iterator::FallibleIterator;
    let heard = {
        let mut notifications = stranger.notifications();
        let mut arriving = notifications.timeout_iter(Duration::from_secs(10));
        arriving.next().unwrap().expect("a notification")
    };
    let id = int(&mut db, "SELECT id FROM sla.notifications");
    assert_eq!(
        heard.payload(),
        format!("{{\"id\" : {id}, \"kind\" : \"breached\"}}")
    );
    // The row itself stays out of the stranger's reach: row security hides
    // the notifications of tables it may not read.
    assert_eq!(
        int(&mut stranger, "SELECT count(*) FROM sla.notifications"),
        0
    );
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.notifications"), 1);
}

#[test]
fn a_table_failing_for_every_ticket_row_is_not_retried_ticket_by_ticket() {
    let cluster = Cluster::start("due-failing-table", &[]);
    let mut db = cluster.connect();
    setup(&mut db, "1 second");
    db.batch_execute(
        "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'no space left on device' USING ERRCODE = '53100'; END $$;
         CREATE TRIGGER full_disk BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION full_disk();
         INSERT INTO tickets (id, created_at)
         SELECT i, now() - interval '1 minute' FROM generate_series(1, 10) i;",
    )
    .unwrap();
    let warnings = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = warnings.clone();
    let mut config: postgres::Config = cluster
        .connection_string("postgres", "postgres")
        .parse()
        .unwrap();
    config.notice_callback(move |notice| seen.lock().unwrap().push(notice.message().to_string()));
    let mut processor = config.connect(pg_sla_client_tests::NoTls).unwrap();
    // The breaches are recorded and notified; only the rows are behind.
    assert_eq!(int(&mut processor, "SELECT sla.process_due()"), 10);
    assert_eq!(breached_notifications(&mut db), 10);
    let warnings = warnings.lock().unwrap().clone();
    // Three rows tried one by one, then the seven others left at once.
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    assert!(
        warnings[3].contains("7 more tickets of table public.tickets")
            && warnings[3].contains("no space left on device"),
        "{}",
        warnings[3]
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.pending_ticket_updates
              WHERE sqlstate = '53100' AND retry_at > now() + interval '50 seconds'"
        ),
        10,
        "every ticket row is retried in a minute"
    );
}

#[test]
fn payloads_stay_under_the_notify_limit_whatever_the_ticket_id() {
    let cluster = Cluster::start("notify-long-ids", &[]);
    let mut db = cluster.connect();
    db.batch_execute(
        "INSERT INTO sla.policies (name, first_response) VALUES ('fast', '1 second');
         CREATE TABLE tickets (
             id text PRIMARY KEY,
             status text NOT NULL DEFAULT 'open',
             created_at timestamptz NOT NULL DEFAULT now() - interval '1 minute',
             last_customer_message_at timestamptz,
             last_agent_reply_at timestamptz);
         SELECT sla.track('tickets');
         INSERT INTO tickets (id) VALUES ('short'), (repeat('m', 1500)), (repeat('x', 9000));
         LISTEN pg_sla;",
    )
    .unwrap();
    assert_eq!(int(&mut db, "SELECT sla.process_due()"), 3);
    use postgres::fallible_iterator::FallibleIterator;
    let mut payloads: Vec<String> = db
        .notifications()
        .iter()
        .map(|n| Ok(n.payload().to_string()))
        .collect()
        .unwrap();
    payloads.sort_by_key(String::len);
    assert_eq!(payloads.len(), 3, "{payloads:?}");
    assert!(payloads.iter().all(|p| p.len() < 8000));
    assert!(
        payloads[0].contains("\"ticket_id\" : \"short\""),
        "{}",
        payloads[0]
    );
    assert!(
        payloads[2].contains(&format!("\"ticket_id\" : \"{}\"", "m".repeat(1500))),
        "a long id that fits is sent whole"
    );
    assert!(
        payloads[1].contains("\"ticket_id\" : null")
            && payloads[1].contains("\"ticket_id_truncated\" : true"),
        "{}",
        payloads[1]
    );
}

/// Two tenants whose trigger never returns once a ticket breaches, created
/// first (so processed first, by table order), and a third whose breaches
/// must still arrive on time: a table's part of each tick has a time budget.
#[test]
fn tenants_whose_triggers_hang_do_not_delay_the_others_breaches() {
    use postgres::fallible_iterator::FallibleIterator;
    let cluster = worker_cluster("worker-slow-tenants", &["pg_sla.naptime = '1s'"]);
    let mut db = cluster.connect();
    db.batch_execute(
        "CREATE FUNCTION hang() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM pg_sleep(3600);
             RETURN NEW;
         END $$;",
    )
    .unwrap();
    let columns = "(id bigint PRIMARY KEY, status text NOT NULL DEFAULT 'open',
                    created_at timestamptz NOT NULL DEFAULT now(),
                    last_customer_message_at timestamptz, last_agent_reply_at timestamptz)";
    for table in ["stuck_a", "stuck_b", "healthy"] {
        db.batch_execute(&format!("CREATE TABLE {table} {columns}"))
            .unwrap();
    }
    db.batch_execute(
        "INSERT INTO sla.policies (name, first_response) VALUES ('fast', '3 seconds');
         SELECT sla.track('stuck_a'), sla.track('stuck_b'), sla.track('healthy');
         CREATE TRIGGER hang BEFORE UPDATE ON stuck_a FOR EACH ROW
           WHEN (NEW.sla_status = 'breached') EXECUTE FUNCTION hang();
         CREATE TRIGGER hang BEFORE UPDATE ON stuck_b FOR EACH ROW
           WHEN (NEW.sla_status = 'breached') EXECUTE FUNCTION hang();",
    )
    .unwrap();
    let mut listener = cluster.connect();
    listener.batch_execute("LISTEN pg_sla").unwrap();
    // Deadlines every 0.4 s for 12 s in each table, the stuck ones
    // interleaved with the healthy one.
    for (table, offset) in [("stuck_a", 0.1), ("stuck_b", 0.2), ("healthy", 0.3)] {
        db.batch_execute(&format!(
            "INSERT INTO {table} (id, created_at)
             SELECT i, now() - interval '3 seconds' + interval '2 seconds'
                       + (i * 0.4 + {offset}) * interval '1 second'
               FROM generate_series(1, 30) i"
        ))
        .unwrap();
    }
    // Each healthy breach, when it was heard.
    let mut heard: Vec<(i64, f64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while heard.len() < 30 && Instant::now() < deadline {
        let mut notifications = listener.notifications();
        let Some(notification) = notifications
            .timeout_iter(Duration::from_secs(1))
            .next()
            .unwrap()
        else {
            continue;
        };
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let payload = notification.payload();
        if payload.contains("\"ticket_table\" : \"public.healthy\"")
            && payload.contains("\"kind\" : \"breached\"")
        {
            let id: i64 = payload
                .split("\"id\" : ")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .and_then(|id| id.trim().parse().ok())
                .expect("an id in the payload");
            heard.push((id, at));
        }
    }
    assert_eq!(heard.len(), 30, "every healthy breach was heard");
    let mut lags: Vec<f64> = heard
        .iter()
        .map(|(id, at)| {
            let due: f64 = db
                .query_one(
                    "SELECT extract(epoch FROM due_at)::float8 FROM sla.notifications WHERE id = $1",
                    &[id],
                )
                .unwrap()
                .get(0);
            at - due
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let p50 = lags[lags.len() / 2];
    let p99 = lags[(lags.len() * 99).div_ceil(100) - 1];
    println!("healthy breach lag beside two hanging tenants: p50 {p50:.3} s, p99 {p99:.3} s");
    assert!(
        p99 < 2.0,
        "p99 lag {p99:.3} s, over two nap times; all: {lags:?}"
    );
    // The hanging tables were reported, and the worker is still running.
    let last_error = text(
        &mut db,
        "SELECT coalesce(last_error, '') FROM sla.worker_status()",
    );
    assert!(last_error.contains("time budget"), "{last_error}");
    assert!(worker_pid(&mut db).is_some());
    // Their breaches are recorded and notified all the same, every one of
    // them: only their rows wait, without their triggers being run again.
    wait_for(
        "every breach of the hanging tenants",
        Duration::from_secs(10),
        || {
            (int(
                &mut db,
                "SELECT count(*) FROM sla.notifications
                  WHERE kind = 'breached' AND ticket_table::text LIKE 'stuck%'",
            ) == 60)
                .then_some(())
        },
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.pending_ticket_updates WHERE sqlstate = '57014'"
        ),
        60
    );
}
