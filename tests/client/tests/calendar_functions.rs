//! The calendar functions through a real client on a real server.
use pg_sla_client_tests::{sql_error, Cluster};

const PARIS: &str = r#"{"timezone": "Europe/Paris",
  "hours": {"mon": ["09:00-12:00", "13:00-17:00"], "tue": ["09:00-17:00"], "wed": ["09:00-17:00"],
            "thu": ["09:00-17:00"], "fri": ["09:00-17:00", "22:00-06:00"], "sat": ["00:00-24:00"]},
  "holidays": ["2026-12-25", {"date": "2026-12-24", "hours": ["09:00-12:00"]}, {"every": "05-01"}]}"#;

/// Inserts the PARIS definition under `name`.
fn create_paris(db: &mut postgres::Client, name: &str) {
    db.execute(
        "INSERT INTO sla.calendars (name, definition) VALUES ($1, $2::text::jsonb)",
        &[&name, &PARIS],
    )
    .unwrap();
}

fn text(client: &mut postgres::Client, query: &str) -> String {
    client.query_one(query, &[]).unwrap().get::<_, String>(0)
}

#[test]
fn every_function_on_a_real_server() {
    let cluster = Cluster::start("functions", &[]);
    let mut db = cluster.connect();
    db.batch_execute("SET TimeZone = 'UTC'").unwrap();
    create_paris(&mut db, "paris");

    // Monday lunch break is closed: 11:30 + 1h = 13:30 Paris (12:30 UTC).
    assert_eq!(
        text(
            &mut db,
            "SELECT sla.add_business_time('paris', '2026-11-23 11:30+01', '1 hour')::text"
        ),
        "2026-11-23 12:30:00+00"
    );
    // Friday's overnight shift runs into Saturday, which is open all day:
    // they meet and count once.
    assert_eq!(
        text(
            &mut db,
            "SELECT string_agg(p::text, ' ' ORDER BY p) FROM \
             sla.business_periods('paris', '2026-11-27 12:00+01', '2026-11-29 12:00+01') p"
        ),
        "[\"2026-11-27 11:00:00+00\",\"2026-11-27 16:00:00+00\") [\"2026-11-27 21:00:00+00\",\"2026-11-28 23:00:00+00\")"
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT sla.business_time_between('paris', '2026-11-27 00:00+01', '2026-11-30 00:00+01')::text"
        ),
        "34:00:00"
    );
    let open: bool = db
        .query_one(
            "SELECT sla.is_business_time('paris', '2026-12-25 10:00+01')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!open, "Christmas is a holiday");
    assert_eq!(
        text(
            &mut db,
            "SELECT sla.next_business_time('paris', '2026-12-24 12:30+01')::text"
        ),
        // The shortened day closes at noon; 25th closed; Saturday 26th opens at 00:00.
        "2026-12-25 23:00:00+00"
    );
    // The jsonb variants give the same answers and are IMMUTABLE.
    let same: bool = db
        .query_one(
            &format!(
                "SELECT bool_and(sla.add_business_time('{PARIS}'::jsonb, t, '3 hours') \
                               = sla.add_business_time('paris', t, '3 hours')) \
                 FROM generate_series('2026-01-01'::timestamptz, '2026-12-31', '7 hours') t"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(same);
    // Name variants read sla.calendars (STABLE); jsonb variants are IMMUTABLE.
    // All are STRICT and PARALLEL SAFE.
    let rows = db
        .query(
            "SELECT p.proname::text, pg_get_function_identity_arguments(p.oid) LIKE 'definition jsonb%', \
                    p.provolatile::text, p.proparallel::text, p.proisstrict \
             FROM pg_proc p WHERE p.pronamespace = 'sla'::regnamespace \
             AND p.proname IN ('add_business_time', 'business_time_between', 'is_business_time', \
                               'next_business_time', 'business_periods')",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 10);
    for row in rows {
        let (name, inline): (String, bool) = (row.get(0), row.get(1));
        let expected = if inline { "i" } else { "s" };
        assert_eq!(
            row.get::<_, String>(2),
            expected,
            "volatility of {name} (inline: {inline})"
        );
        assert_eq!(row.get::<_, String>(3), "s", "parallel safety of {name}");
        assert!(row.get::<_, bool>(4), "{name} is strict");
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let cluster = Cluster::start("errors", &[]);
    let mut db = cluster.connect();
    create_paris(&mut db, "paris");
    let before = text(
        &mut db,
        "SELECT md5(string_agg(name || definition::text, ',')) FROM sla.calendars",
    );

    let invalid = [
        (
            r#"{"timezone": "Mars/Olympus", "hours": "24/7"}"#,
            "timezone: unknown time zone \"Mars/Olympus\"",
        ),
        (r#"{"hours": "24/7"}"#, "timezone: is required"),
        (
            r#"{"timezone": "UTC", "hours": {"mon": ["9h-17h"]}}"#,
            "hours.mon[0]: \"9h-17h\"",
        ),
        (
            r#"{"timezone": "UTC", "hours": {"mon": ["09:00-25:00"]}}"#,
            "hours.mon[0]: \"09:00-25:00\" has an invalid end time",
        ),
        (
            r#"{"timezone": "UTC", "hours": {"mon": ["09:60-10:00"]}}"#,
            "hours.mon[0]: \"09:60-10:00\" has an invalid start time",
        ),
        (
            r#"{"timezone": "UTC", "hours": {"mon": ["09:00-12:00", "11:00-13:00"]}}"#,
            "hours.mon: windows 09:00-12:00 and 11:00-13:00 overlap",
        ),
        (
            r#"{"timezone": "UTC", "hours": {"monday": ["09:00-12:00"]}}"#,
            "hours.monday: unknown weekday \"monday\"",
        ),
        (
            r#"{"timezone": "UTC", "hours": "24/7", "colour": "blue"}"#,
            "colour: unknown key",
        ),
        (
            r#"{"timezone": "UTC", "hours": "24/7", "holidays": ["2026-02-30"]}"#,
            "holidays[0]: \"2026-02-30\" is not a real date",
        ),
        (
            r#"{"timezone": "UTC", "hours": "24/7", "holidays": [{"every": "13-01"}]}"#,
            "holidays[0].every: \"13-01\" is not a real MM-DD day",
        ),
        (
            r#"{"timezone": "UTC", "hours": {"mon": [], "sat": []}}"#,
            "hours: the calendar has no open time at all",
        ),
        (r#"[]"#, "definition: must be a JSON object"),
        // Valid jsonb that no JSON library reads as a number or nests this deep.
        (
            r#"{"timezone": "UTC", "hours": "24/7", "holidays": [1e400]}"#,
            "definition: is not JSON that pg_sla can read: number out of range",
        ),
    ];
    for (definition, expected) in invalid {
        let (code, message) = sql_error(db.execute(
            "INSERT INTO sla.calendars (name, definition) VALUES ('bad', $1::text::jsonb)",
            &[&definition],
        ));
        assert_eq!(code, "22023", "{definition} -> {message}");
        assert!(
            message.starts_with("invalid calendar definition: ") && message.contains(expected),
            "{definition}: message {message:?} should contain {expected:?}"
        );
        // The same check guards UPDATE.
        let (code, _) = sql_error(db.execute(
            "UPDATE sla.calendars SET definition = $1::text::jsonb WHERE name = 'paris'",
            &[&definition],
        ));
        assert_eq!(code, "22023");
    }
    let after = text(
        &mut db,
        "SELECT md5(string_agg(name || definition::text, ',')) FROM sla.calendars",
    );
    assert_eq!(before, after, "rejected statements changed nothing");

    let calls = [
        (
            "SELECT sla.add_business_time('nowhere', now(), '1 hour')",
            "42704",
            "calendar \"nowhere\" does not exist",
        ),
        (
            "SELECT sla.is_business_time('nowhere', now())",
            "42704",
            "calendar \"nowhere\" does not exist",
        ),
        (
            "SELECT sla.add_business_time('paris', now(), '1 month')",
            "22023",
            "duration must not have a month or year part",
        ),
        (
            "SELECT sla.add_business_time('paris', now(), '1 year 2 days')",
            "22023",
            "duration must not have a month or year part",
        ),
        (
            "SELECT sla.business_time_between('paris', now(), 'infinity')",
            "22023",
            "to_ts must be a finite timestamp",
        ),
        (
            "SELECT * FROM sla.business_periods('paris', '-infinity', now())",
            "22023",
            "from_ts must be a finite timestamp",
        ),
        (
            r#"SELECT sla.add_business_time('{"timezone": "UTC", "hours": "24/7"}'::jsonb, '2026-01-01', '3000000 days')"#,
            "22008",
            "out of the range pg_sla supports",
        ),
        (
            r#"SELECT sla.add_business_time('{"timezone": "UTC"}'::jsonb, now(), '1 hour')"#,
            "22023",
            "hours: is required",
        ),
        (
            r#"SELECT sla.is_business_time(('{"timezone": "UTC", "hours": "24/7", "x": ' || repeat('[', 200) || repeat(']', 200) || '}')::jsonb, now())"#,
            "22023",
            "recursion limit exceeded",
        ),
        (
            "SELECT sla.add_business_time('paris', '2026-01-01', '100000000 days')",
            "22008",
            "result beyond 10000-01-01",
        ),
    ];
    for (query, expected_code, expected) in calls {
        let (code, message) = sql_error(db.query(query, &[]));
        assert_eq!(code, expected_code, "{query} -> {message}");
        assert!(
            message.contains(expected),
            "{query}: {message:?} should contain {expected:?}"
        );
    }

    // A calendar whose only weekday is closed by holidays for over ten years:
    // the search stops at the horizon with a clear error.
    db.batch_execute(
        r#"INSERT INTO sla.calendars (name, definition)
           SELECT 'mondays', jsonb_build_object('timezone', 'UTC', 'hours', '{"mon": ["09:00-10:00"]}'::jsonb,
                  'holidays', jsonb_agg(to_char(d, 'YYYY-MM-DD')))
           FROM generate_series('2026-01-05'::date, '2038-12-31', '7 days') d"#,
    )
    .unwrap();
    let (code, message) = sql_error(db.query(
        "SELECT sla.add_business_time('mondays', '2026-01-01', '1 hour')",
        &[],
    ));
    assert_eq!(code, "22023");
    assert!(
        message.starts_with("calendar \"mondays\": no business time within 10 years after"),
        "{message}"
    );
}

#[test]
fn edits_committed_by_another_session_are_seen_by_the_next_statement() {
    let cluster = Cluster::start("cache", &[]);
    let mut editor = cluster.connect();
    let mut reader = cluster.connect();
    create_paris(&mut editor, "paris");
    let saturday_noon = "SELECT sla.is_business_time('paris', '2026-11-28 12:00+01')";
    let open =
        |db: &mut postgres::Client| db.query_one(saturday_noon, &[]).unwrap().get::<_, bool>(0);
    assert!(
        open(&mut reader),
        "reader caches the calendar: Saturday open"
    );

    // Uncommitted edits are invisible to the reader; a rollback changes nothing.
    editor
        .batch_execute(r#"BEGIN; UPDATE sla.calendars SET definition = definition #- '{hours,sat}' WHERE name = 'paris'"#)
        .unwrap();
    assert!(open(&mut reader), "uncommitted edit is not seen");
    editor.batch_execute("ROLLBACK").unwrap();
    assert!(open(&mut reader), "rolled-back edit is not seen");

    editor
        .batch_execute(r#"UPDATE sla.calendars SET definition = definition #- '{hours,sat}' WHERE name = 'paris'"#)
        .unwrap();
    assert!(
        !open(&mut reader),
        "committed edit is seen by the next statement"
    );

    // Inside an open transaction the reader also picks up the next commit.
    reader.batch_execute("BEGIN").unwrap();
    assert!(!open(&mut reader));
    editor
        .batch_execute(r#"UPDATE sla.calendars SET definition = jsonb_set(definition, '{hours,sat}', '["10:00-14:00"]') WHERE name = 'paris'"#)
        .unwrap();
    assert!(
        open(&mut reader),
        "next statement in an open transaction sees the commit"
    );
    reader.batch_execute("COMMIT").unwrap();

    // Deleting and recreating the calendar, and dropping the extension.
    // Rows written as a replica (session_replication_role = replica, as sync
    // tools do) still invalidate the caches; logical replication itself is
    // tested in cache_invalidation.rs.
    editor
        .batch_execute(r#"SET session_replication_role = replica;
                          UPDATE sla.calendars SET definition = definition #- '{hours,sat}' WHERE name = 'paris';
                          RESET session_replication_role"#)
        .unwrap();
    assert!(!open(&mut reader), "an edit applied as a replica is seen");

    editor
        .batch_execute("DELETE FROM sla.calendars WHERE name = 'paris'")
        .unwrap();
    let (code, _) = sql_error(reader.query(saturday_noon, &[]));
    assert_eq!(code, "42704");
    editor
        .batch_execute("DROP EXTENSION pg_sla; CREATE EXTENSION pg_sla")
        .unwrap();
    create_paris(&mut editor, "paris");
    assert!(
        open(&mut reader),
        "recreated extension's calendar is read afresh"
    );
}

#[test]
fn long_computations_can_be_cancelled() {
    let cluster = Cluster::start("cancel", &[]);
    let mut db = cluster.connect();
    create_paris(&mut db, "paris");
    create_paris(&mut db, "paris too");
    // Eight thousand years of a calendar's timeline take a while to build the
    // first time (seconds in a debug build); a statement timeout stops it.
    let centuries = |calendar: &str| {
        format!(
            "SELECT sla.business_time_between('{calendar}', '1000-01-01+00', '9000-01-01+00')::text"
        )
    };
    db.batch_execute("SET statement_timeout = '50ms'").unwrap();
    let started = std::time::Instant::now();
    let (code, message) = sql_error(db.query(&centuries("paris"), &[]));
    let cancelled_after = started.elapsed();
    assert_eq!(code, "57014", "{message}");
    assert_eq!(message, "canceling statement due to statement timeout");

    db.batch_execute("RESET statement_timeout").unwrap();
    let started = std::time::Instant::now();
    let total = text(&mut db, &centuries("paris too"));
    let full = started.elapsed();
    // The same total, summed over eight millennia computed one by one.
    let by_millennium = text(
        &mut db,
        "SELECT sum(sla.business_time_between('paris', m, m + interval '1000 years'))::text \
         FROM generate_series(timestamptz '1000-01-01+00', '8000-01-01+00', '1000 years') m",
    );
    assert_eq!(total, by_millennium);
    // Not a speed goal: the interrupt lands inside the computation rather
    // than after it, so the cancelled call ends long before a full one.
    assert!(
        cancelled_after * 4 < full,
        "cancelled after {cancelled_after:?}, a full computation takes {full:?}"
    );
    assert_eq!(
        text(&mut db, &centuries("paris")),
        total,
        "the session goes on"
    );
}

#[test]
fn calendars_survive_dump_and_restore() {
    let cluster = Cluster::start("dump", &[]);
    let mut db = cluster.connect();
    create_paris(&mut db, "paris");
    db.batch_execute("CREATE DATABASE restored").unwrap();
    let bin = std::path::Path::new("/usr/lib/postgresql/15/bin");
    let source = cluster.connection_string("postgres", "postgres");
    let dump = std::process::Command::new(bin.join("pg_dump"))
        .arg(&source)
        .output()
        .expect("run pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let mut restore = std::process::Command::new(bin.join("psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(cluster.connection_string("restored", "postgres"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run psql");
    use std::io::Write;
    restore
        .stdin
        .take()
        .unwrap()
        .write_all(&dump.stdout)
        .unwrap();
    assert!(restore.wait().unwrap().success());

    let mut restored = postgres::Client::connect(
        &cluster.connection_string("restored", "postgres"),
        postgres::NoTls,
    )
    .unwrap();
    let query = "SELECT name || ' ' || definition::text || ' ' || \
                 sla.add_business_time('paris', '2026-11-23 11:30+01', '1 hour')::text \
                 FROM sla.calendars";
    restored.batch_execute("SET TimeZone = 'UTC'").unwrap();
    db.batch_execute("SET TimeZone = 'UTC'").unwrap();
    assert_eq!(text(&mut restored, query), text(&mut db, query));
}
