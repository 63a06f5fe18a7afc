//! Errors raised inside pg_sla's SPI statements reach the client as
//! PostgreSQL raised them (SQLSTATE, message, detail, hint), with no Rust
//! backtrace or panic text, even with `RUST_BACKTRACE` set in the server's
//! environment; the server log has none either.
use pg_sla_client_tests::{query_int as int, Client, Cluster, Error};

/// A calendar, one policy, a tracked `tickets` table with two tickets.
fn setup(db: &mut Client) {
    db.batch_execute(
        r#"INSERT INTO sla.calendars (name, definition)
             VALUES ('utc', '{"timezone": "UTC", "hours": {"mon": ["00:00-24:00"],
               "tue": ["00:00-24:00"], "wed": ["00:00-24:00"], "thu": ["00:00-24:00"],
               "fri": ["00:00-24:00"], "sat": ["00:00-24:00"], "sun": ["00:00-24:00"]}}');
           INSERT INTO sla.policies (name, calendar, conditions, first_response, resolution)
             VALUES ('default', 'utc', '{}', '1 hour', '8 hours');
           CREATE TABLE tickets (
               id bigint PRIMARY KEY,
               priority text NOT NULL DEFAULT 'normal',
               status text NOT NULL DEFAULT 'open',
               created_at timestamptz NOT NULL DEFAULT now(),
               last_customer_message_at timestamptz,
               last_agent_reply_at timestamptz);
           SELECT sla.track('tickets');
           INSERT INTO tickets (id) VALUES (1), (2);"#,
    )
    .unwrap();
}

/// What the client got: SQLSTATE, message, detail, hint.
struct Reported {
    code: String,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
}

fn reported(result: Result<impl std::fmt::Debug, Error>, what: &str) -> Reported {
    let error = result.expect_err(what);
    let db = error
        .as_db_error()
        .unwrap_or_else(|| panic!("{what}: not a server error: {error}"));
    let reported = Reported {
        code: db.code().code().to_owned(),
        message: db.message().to_owned(),
        detail: db.detail().map(str::to_owned),
        hint: db.hint().map(str::to_owned),
    };
    for text in [
        Some(&reported.message),
        reported.detail.as_ref(),
        reported.hint.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        assert_no_rust_internals(text, what);
    }
    reported
}

/// Lines a Rust backtrace or panic report is made of.
fn assert_no_rust_internals(text: &str, what: &str) {
    let frame = text.lines().any(|line| {
        let line = line.trim_start();
        line.split_once(": ").is_some_and(|(number, _)| {
            !number.is_empty() && number.chars().all(|c| c.is_ascii_digit())
        }) || line.starts_with("at ")
    });
    assert!(
        !frame
            && !text.contains("backtrace")
            && !text.contains(".rs:")
            && !text.contains("panicked"),
        "{what}: Rust internals reached the client:\n{text}"
    );
}

#[test]
fn errors_inside_spi_pass_through_every_entry_point_without_backtraces() {
    let cluster = Cluster::start_with_env(
        "errors",
        &[],
        &[("RUST_BACKTRACE", "full"), ("RUST_LIB_BACKTRACE", "1")],
    );
    let mut db = cluster.connect();
    setup(&mut db);

    // sla.track and sla.untrack: another extension forbids the DDL they run
    // (here an event trigger), with its own SQLSTATE, detail and hint.
    db.batch_execute(
        "CREATE FUNCTION forbid_triggers() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN
           RAISE EXCEPTION 'triggers are managed by the platform'
             USING ERRCODE = 'feature_not_supported', DETAIL = 'policy 7 forbids them',
                   HINT = 'ask the platform team';
         END $$;
         CREATE EVENT TRIGGER forbid_triggers ON ddl_command_start
           WHEN TAG IN ('CREATE TRIGGER', 'DROP TRIGGER') EXECUTE FUNCTION forbid_triggers();
         CREATE TABLE other (LIKE tickets);
         ALTER TABLE other ADD PRIMARY KEY (id);",
    )
    .unwrap();
    for (statement, what) in [
        ("SELECT sla.track('other')", "sla.track"),
        ("SELECT sla.untrack('tickets')", "sla.untrack"),
    ] {
        let error = reported(db.batch_execute(statement), what);
        assert_eq!(error.code, "0A000", "{what}");
        assert_eq!(
            error.message, "triggers are managed by the platform",
            "{what}"
        );
        assert_eq!(
            error.detail.as_deref(),
            Some("policy 7 forbids them"),
            "{what}"
        );
        assert_eq!(
            error.hint.as_deref(),
            Some("ask the platform team"),
            "{what}"
        );
    }
    db.batch_execute("DROP EVENT TRIGGER forbid_triggers")
        .unwrap();
    assert_eq!(
        int(&mut db, "SELECT count(*) FROM sla.tracked_tables"),
        1,
        "nothing changed"
    );

    // The ticket trigger: writing a clock fails on a constraint.
    db.batch_execute(
        "ALTER TABLE sla.clocks ADD CONSTRAINT never_achieved CHECK (status <> 'achieved') NOT VALID",
    )
    .unwrap();
    let error = reported(
        db.batch_execute("UPDATE tickets SET last_agent_reply_at = now() WHERE id = 1"),
        "ticket trigger",
    );
    assert_eq!(error.code, "23514");
    assert!(
        error.message.contains("never_achieved"),
        "{}",
        error.message
    );
    assert!(
        error
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with("Failing row contains (")),
        "{:?}",
        error.detail
    );
    db.batch_execute("ALTER TABLE sla.clocks DROP CONSTRAINT never_achieved")
        .unwrap();

    // Recomputation after a policy edit: a trigger of the ticket table
    // refuses the update; the edit fails with that trigger's SQLSTATE.
    db.batch_execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           RAISE EXCEPTION 'tickets are frozen' USING ERRCODE = 'division_by_zero';
         END $$;
         CREATE TRIGGER refuse BEFORE UPDATE ON tickets FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .unwrap();
    for (statement, what) in [
        (
            "UPDATE sla.policies SET first_response = '2 hours'",
            "policy edit",
        ),
        (
            // Deadlines move, so the tickets' SLA columns are written.
            r#"UPDATE sla.calendars SET definition = '{"timezone": "UTC", "hours": {"mon": ["09:00-10:00"]}}'"#,
            "calendar edit",
        ),
    ] {
        let error = reported(db.batch_execute(statement), what);
        assert_eq!(error.code, "22012", "{what}");
        assert!(
            error.message.contains("tickets are frozen"),
            "{what}: {}",
            error.message
        );
    }
    db.batch_execute("DROP TRIGGER refuse ON tickets").unwrap();

    // Due processing, a delete trigger and a calendar function wait for a
    // lock that another session holds, until lock_timeout.
    for (table, statement, what) in [
        ("sla.clocks", "SELECT sla.process_due()", "sla.process_due"),
        (
            "sla.clocks",
            "DELETE FROM tickets WHERE id = 2",
            "ticket delete trigger",
        ),
        (
            "sla.calendars",
            "SELECT sla.add_business_time('utc', now(), '1 hour')",
            "sla.add_business_time",
        ),
    ] {
        let mut holder = cluster.connect();
        holder
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .unwrap();
        let mut caller = cluster.connect();
        caller.batch_execute("SET lock_timeout = '100ms'").unwrap();
        let error = reported(caller.batch_execute(statement), what);
        assert_eq!(error.code, "55P03", "{what}: {}", error.message);
        holder.batch_execute("ROLLBACK").unwrap();
    }

    // pg_sla's own errors, raised from Rust, carry no backtrace either.
    let error = reported(
        db.batch_execute("SELECT sla.add_business_time('nowhere', now(), '1 hour')"),
        "unknown calendar",
    );
    assert_eq!(error.code, "42704");
    let error = reported(
        db.batch_execute("INSERT INTO sla.policies (name, warn_at) VALUES ('p', 2)"),
        "policy check",
    );
    assert_eq!(error.code, "22023");

    let log = cluster.server_log();
    assert!(
        !log.contains("backtrace") && !log.contains(".rs:") && !log.contains("panicked"),
        "the server log has Rust internals:\n{log}"
    );
}
