//! Partitioned ticket tables, tracked through the partitioned table:
//! writes that name the parent or a partition, rows an UPDATE moves to
//! another partition, partitions created, attached, detached, truncated
//! and dropped, due processing, pg_dump and pg_restore.
use pg_sla_client_tests::{
    execute_at as at, query_int as int, query_rows as rows, query_text as text, sql_error, Client,
    Cluster, NoTls,
};

/// Tickets partitioned by month of creation, as a help desk keeping years
/// of tickets does: the primary key must hold the partition key.
const MONTHLY_TICKETS: &str = "
    CREATE TABLE tickets (
        id bigint NOT NULL,
        created_at timestamptz NOT NULL,
        status text NOT NULL DEFAULT 'open',
        priority text NOT NULL DEFAULT 'normal',
        last_customer_message_at timestamptz,
        last_agent_reply_at timestamptz,
        PRIMARY KEY (id, created_at)
    ) PARTITION BY RANGE (created_at);
    CREATE TABLE tickets_2026_11 PARTITION OF tickets
        FOR VALUES FROM ('2026-11-01Z') TO ('2026-12-01Z');
    CREATE TABLE tickets_2026_12 PARTITION OF tickets
        FOR VALUES FROM ('2026-12-01Z') TO ('2027-01-01Z');
    INSERT INTO sla.policies (name, first_response, resolution)
    VALUES ('desk', '1 hour', '8 hours');";

/// Which tickets have clocks, and how many each.
fn clocked(db: &mut Client) -> Vec<String> {
    rows(
        db,
        "SELECT ticket_id || ':' || count(*) FROM sla.clocks
          GROUP BY ticket_id ORDER BY ticket_id::bigint",
    )
}

/// pg_sla's triggers, by table.
fn triggers(db: &mut Client) -> Vec<String> {
    rows(
        db,
        "SELECT tgrelid::regclass || ' ' || string_agg(tgname, ',' ORDER BY tgname)
           FROM pg_trigger WHERE tgname LIKE 'zz_pg_sla%'
          GROUP BY tgrelid ORDER BY 1",
    )
}

#[test]
fn a_monthly_partitioned_desk_is_tracked_through_its_parent() {
    let cluster = Cluster::start("partitions_monthly", &[]);
    let mut db = cluster.connect();
    db.batch_execute(MONTHLY_TICKETS).unwrap();
    db.batch_execute(
        "INSERT INTO tickets (id, created_at) VALUES
             (1, '2026-11-30 09:00Z'), (2, '2026-12-01 09:00Z')",
    )
    .unwrap();

    // Existing rows of every partition get their clocks.
    assert_eq!(int(&mut db, "SELECT sla.track('tickets')"), 2);
    assert_eq!(clocked(&mut db), ["1:2", "2:2"]);
    assert_eq!(
        triggers(&mut db),
        [
            "tickets zz_pg_sla_deleted,zz_pg_sla_inserted,zz_pg_sla_partition_truncated,zz_pg_sla_row,zz_pg_sla_truncated,zz_pg_sla_updated",
            "tickets_2026_11 zz_pg_sla_deleted,zz_pg_sla_inserted,zz_pg_sla_partition_truncated,zz_pg_sla_row,zz_pg_sla_updated",
            "tickets_2026_12 zz_pg_sla_deleted,zz_pg_sla_inserted,zz_pg_sla_partition_truncated,zz_pg_sla_row,zz_pg_sla_updated",
        ]
    );

    // Inserts that name a partition count as much as those through the
    // parent.
    at(
        &mut db,
        "2026-12-02 10:00Z",
        "INSERT INTO tickets_2026_12 (id, created_at) VALUES (3, '2026-12-02 10:00Z')",
    );
    at(
        &mut db,
        "2026-12-02 11:00Z",
        "INSERT INTO tickets (id, created_at) VALUES (4, '2026-12-02 11:00Z')",
    );
    assert_eq!(clocked(&mut db), ["1:2", "2:2", "3:2", "4:2"]);
    assert_eq!(
        text(
            &mut db,
            "SELECT sla_policy || ' ' || sla_status || ' ' || to_char(sla_due_at AT TIME ZONE 'UTC', 'DD HH24:MI')
               FROM tickets_2026_12 WHERE id = 3"
        ),
        "desk running 02 11:00"
    );

    // An UPDATE that moves a ticket to another partition (its creation
    // date corrected) with a reply: the same ticket, its clocks as they
    // were (started when it arrived), its first response achieved.
    at(
        &mut db,
        "2026-12-02 10:30Z",
        "UPDATE tickets SET created_at = '2026-11-30 22:00Z',
                            last_agent_reply_at = '2026-12-02 10:30Z'
          WHERE id = 3",
    );
    assert_eq!(clocked(&mut db), ["1:2", "2:2", "3:2", "4:2"]);
    assert_eq!(
        rows(
            &mut db,
            "SELECT metric || ' ' || status || ' ' || to_char(due_at AT TIME ZONE 'UTC', 'DD HH24:MI')
               FROM sla.clocks WHERE ticket_id = '3' ORDER BY metric"
        ),
        ["first_response achieved 02 11:00", "resolution running 02 18:00"]
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT tableoid::regclass || ' ' || sla_status || ' ' || to_char(sla_due_at AT TIME ZONE 'UTC', 'DD HH24:MI')
               FROM tickets WHERE id = 3"
        ),
        "tickets_2026_11 running 02 18:00"
    );

    // Due processing finds, locks and updates rows in every partition.
    assert_eq!(
        int(&mut db, "SELECT sla.process_due('2026-12-02 12:30Z')"),
        // First responses of 1, 2 and 4 and resolutions of 1 and 2.
        5
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT id || ' ' || tableoid::regclass || ' ' || sla_status FROM tickets ORDER BY id"
        ),
        [
            "1 tickets_2026_11 breached",
            "2 tickets_2026_12 breached",
            "3 tickets_2026_11 running",
            "4 tickets_2026_12 breached",
        ]
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.notifications WHERE kind = 'breached'"
        ),
        5
    );

    // A DELETE that names a partition.
    db.batch_execute("DELETE FROM tickets_2026_12 WHERE id = 2")
        .unwrap();
    assert_eq!(clocked(&mut db), ["1:2", "3:2", "4:2"]);

    // A partition created later is tracked with the others.
    db.batch_execute(
        "CREATE TABLE tickets_2027_01 PARTITION OF tickets
             FOR VALUES FROM ('2027-01-01Z') TO ('2027-02-01Z')",
    )
    .unwrap();
    at(
        &mut db,
        "2027-01-02 09:00Z",
        "INSERT INTO tickets_2027_01 (id, created_at) VALUES (5, '2027-01-02 09:00Z')",
    );
    assert_eq!(clocked(&mut db), ["1:2", "3:2", "4:2", "5:2"]);

    // A table attached with rows: they become tickets with clocks.
    db.batch_execute(
        "CREATE TABLE tickets_2026_10 (LIKE tickets INCLUDING DEFAULTS);
         INSERT INTO tickets_2026_10 (id, created_at) VALUES
             (100, '2026-10-05 09:00Z'), (101, '2026-10-06 09:00Z');
         ALTER TABLE tickets ATTACH PARTITION tickets_2026_10
             FOR VALUES FROM ('2026-10-01Z') TO ('2026-11-01Z')",
    )
    .unwrap();
    assert_eq!(
        clocked(&mut db),
        ["1:2", "3:2", "4:2", "5:2", "100:2", "101:2"]
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT sla_status || ' ' || to_char(sla_due_at AT TIME ZONE 'UTC', 'DD HH24:MI')
               FROM tickets WHERE id = 100"
        ),
        "running 05 10:00"
    );

    // Detached, its rows are tickets no more, and writing to it is the
    // application's business alone.
    db.batch_execute("ALTER TABLE tickets DETACH PARTITION tickets_2026_10")
        .unwrap();
    assert_eq!(clocked(&mut db), ["1:2", "3:2", "4:2", "5:2"]);
    assert!(!triggers(&mut db)
        .iter()
        .any(|t| t.starts_with("tickets_2026_10")));
    db.batch_execute(
        "INSERT INTO tickets_2026_10 (id, created_at) VALUES (102, '2026-10-07Z');
         UPDATE tickets_2026_10 SET status = 'solved'; DELETE FROM tickets_2026_10;",
    )
    .unwrap();
    assert_eq!(clocked(&mut db), ["1:2", "3:2", "4:2", "5:2"]);

    // So does a detach that lets the application go on meanwhile.
    db.batch_execute(
        "CREATE TABLE tickets_2027_02 PARTITION OF tickets
             FOR VALUES FROM ('2027-02-01Z') TO ('2027-03-01Z');
         INSERT INTO tickets_2027_02 (id, created_at) VALUES (6, '2027-02-02 09:00Z')",
    )
    .unwrap();
    assert_eq!(clocked(&mut db), ["1:2", "3:2", "4:2", "5:2", "6:2"]);
    db.batch_execute("ALTER TABLE tickets DETACH PARTITION tickets_2027_02 CONCURRENTLY")
        .unwrap();
    assert_eq!(clocked(&mut db), ["1:2", "3:2", "4:2", "5:2"]);

    // Partition DDL elsewhere, and a role's trigger that borrows pg_sla's
    // trigger name on a table nobody else may read, change nothing for
    // the tracked table's partitions.
    db.batch_execute(
        "CREATE ROLE mallory LOGIN;
         GRANT CREATE ON SCHEMA public TO mallory;
         SET ROLE mallory;
         CREATE TABLE decoy (id bigint);
         CREATE FUNCTION decoy_trigger() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
         CREATE TRIGGER zz_pg_sla_partition_truncated BEFORE TRUNCATE ON decoy
             FOR EACH STATEMENT EXECUTE FUNCTION decoy_trigger();
         CREATE TABLE other_parted (id bigint, created_at timestamptz) PARTITION BY RANGE (created_at);
         CREATE TABLE other_part PARTITION OF other_parted FOR VALUES FROM ('2026-01-01Z') TO ('2027-01-01Z');
         REVOKE ALL ON decoy FROM mallory;
         RESET ROLE;
         CREATE TABLE tickets_2027_03 PARTITION OF tickets
             FOR VALUES FROM ('2027-03-01Z') TO ('2027-04-01Z');",
    )
    .unwrap();
    assert!(triggers(&mut db)
        .iter()
        .any(|t| t.starts_with("tickets_2027_03 zz_pg_sla_deleted")));
    // CREATE TABLE IF NOT EXISTS … PARTITION OF a table that exists
    // creates nothing, and pg_sla touches nothing; neither the decoy nor
    // the other partitioned table's partition gets pg_sla's triggers.
    db.batch_execute(
        "CREATE TABLE IF NOT EXISTS decoy PARTITION OF tickets
             FOR VALUES FROM ('2027-05-01Z') TO ('2027-06-01Z')",
    )
    .unwrap();
    let all = triggers(&mut db);
    assert!(
        all.contains(&"decoy zz_pg_sla_partition_truncated".to_owned()),
        "{all:?}"
    );
    assert!(!all.iter().any(|t| t.starts_with("other_part")), "{all:?}");
    // A partition created by CREATE SCHEMA is tracked like any other.
    db.batch_execute(
        "CREATE SCHEMA archive
             CREATE TABLE tickets_2027_04 PARTITION OF public.tickets
                 FOR VALUES FROM ('2027-04-01Z') TO ('2027-05-01Z')",
    )
    .unwrap();
    assert!(triggers(&mut db)
        .iter()
        .any(|t| t.starts_with("archive.tickets_2027_04 zz_pg_sla_deleted")));

    // TRUNCATE and DROP of a partition take its tickets' clocks.
    db.batch_execute("TRUNCATE tickets_2027_01").unwrap();
    assert_eq!(clocked(&mut db), ["1:2", "3:2", "4:2"]);
    db.batch_execute("DROP TABLE tickets_2026_11").unwrap();
    assert_eq!(clocked(&mut db), ["4:2"]);
    // A DROP that fails changes nothing.
    let refused = sql_error(db.batch_execute("DROP TABLE tickets_2026_12, no_such_table"));
    assert_eq!(refused.0, "42P01");
    assert_eq!(clocked(&mut db), ["4:2"]);

    // The report and the timeline read across partitions: ticket 4 (now
    // the only one) by its priority, a column of the partitioned table.
    assert_eq!(
        rows(
            &mut db,
            "SELECT metric || ' ' || (group_values->>'priority') || ' ' || started || ' ' || breached_now
               FROM sla.report('2026-11-01Z', '2027-02-01Z', '{priority}', 'tickets')
              ORDER BY metric"
        ),
        ["first_response normal 1 1", "resolution normal 1 0"]
    );
    assert_eq!(
        rows(
            &mut db,
            "SELECT event || ' ' || metric FROM sla.ticket_timeline('tickets', '4')
              ORDER BY at, metric, event"
        ),
        [
            "started first_response",
            "started resolution",
            "breached first_response",
            "notified breached first_response",
            "due resolution"
        ]
    );

    // An id a ticket already has, which the partitioned table's key
    // (id, created_at) allows: the insert goes through, with a warning, and
    // the row shares ticket 4's clocks.
    let (mut app, warnings) = cluster.connect_keeping_notices();
    app.batch_execute(
        "INSERT INTO tickets (id, created_at) VALUES (4, '2026-12-03 09:00Z'), (7, '2026-12-03 09:00Z')",
    )
    .unwrap();
    assert_eq!(clocked(&mut db), ["4:2", "7:2"]);
    let warnings = warnings.lock().unwrap().clone();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("1 new rows of partitioned table public.tickets have the id of a ticket it already has (ids 4)")),
        "{warnings:?}"
    );
    db.batch_execute("DELETE FROM tickets WHERE id = 7")
        .unwrap();

    // Rows of one statement that share an id, in two partitions: one set
    // of clocks, with a warning. Dropping a partition, or deleting a row,
    // leaves the clocks to the rows the table still has.
    let (mut app, warnings) = cluster.connect_keeping_notices();
    app.batch_execute(
        "INSERT INTO tickets (id, created_at) VALUES
             (8, '2026-12-04 09:00Z'), (8, '2027-03-05 09:00Z'), (8, '2027-04-06 09:00Z')",
    )
    .unwrap();
    assert_eq!(clocked(&mut db), ["4:2", "8:2"]);
    let warnings = warnings.lock().unwrap().clone();
    assert!(
        warnings.iter().any(|w| w.contains("(ids 8)")),
        "{warnings:?}"
    );
    db.batch_execute("DROP TABLE tickets_2027_03").unwrap();
    assert_eq!(clocked(&mut db), ["4:2", "8:2"]);
    db.batch_execute("DELETE FROM tickets WHERE id = 8 AND created_at = '2026-12-04 09:00Z'")
        .unwrap();
    assert_eq!(clocked(&mut db), ["4:2", "8:2"]);
    db.batch_execute("DELETE FROM tickets WHERE id = 8")
        .unwrap();
    assert_eq!(clocked(&mut db), ["4:2"]);
}

#[test]
fn a_hash_partitioned_desk_with_sub_partitions_and_its_refusals() {
    let cluster = Cluster::start("partitions_hash", &[]);
    let mut db = cluster.connect();
    db.batch_execute(
        "CREATE TABLE tickets (
             id integer PRIMARY KEY,
             created_at timestamptz NOT NULL,
             status text NOT NULL DEFAULT 'open',
             last_customer_message_at timestamptz,
             last_agent_reply_at timestamptz
         ) PARTITION BY HASH (id);
         CREATE TABLE tickets_0 PARTITION OF tickets FOR VALUES WITH (MODULUS 2, REMAINDER 0);
         CREATE TABLE tickets_1 PARTITION OF tickets FOR VALUES WITH (MODULUS 2, REMAINDER 1)
             PARTITION BY HASH (id);
         CREATE TABLE tickets_1a PARTITION OF tickets_1 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
         CREATE TABLE tickets_1b PARTITION OF tickets_1 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
         INSERT INTO sla.policies (name, first_response, resolution)
         VALUES ('desk', '1 hour', '8 hours');
         CREATE TABLE no_key (id integer, created_at timestamptz, status text,
                              last_customer_message_at timestamptz,
                              last_agent_reply_at timestamptz)
             PARTITION BY RANGE (created_at);
         CREATE TABLE created_first (id integer, created_at timestamptz, status text,
                              last_customer_message_at timestamptz,
                              last_agent_reply_at timestamptz, PRIMARY KEY (created_at, id))
             PARTITION BY RANGE (created_at);
         CREATE TABLE parent (id integer PRIMARY KEY, created_at timestamptz, status text,
                              last_customer_message_at timestamptz,
                              last_agent_reply_at timestamptz);
         CREATE TABLE child () INHERITS (parent);",
    )
    .unwrap();

    // A partition is tracked through its partitioned table; a partitioned
    // table needs a unique key holding the id; inheritance is refused;
    // nothing changes.
    let refused = sql_error(db.query("SELECT sla.track('tickets_0')", &[]));
    assert_eq!(refused.0, "42809", "{refused:?}");
    assert!(
        refused.1.contains("tickets_0 is a partition"),
        "{refused:?}"
    );
    let refused = sql_error(db.query("SELECT sla.track('no_key')", &[]));
    assert_eq!(refused.0, "42P10", "{refused:?}");
    assert!(refused.1.contains("\"id\""), "{refused:?}");
    // An index the id does not lead cannot find a ticket by id.
    let refused = sql_error(db.query("SELECT sla.track('created_first')", &[]));
    assert_eq!(refused.0, "42P10", "{refused:?}");
    assert!(refused.1.contains("does not lead"), "{refused:?}");
    let refused = sql_error(db.query("SELECT sla.track('parent')", &[]));
    assert_eq!(refused.0, "42809", "{refused:?}");
    assert!(triggers(&mut db).is_empty());
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.tracked_tables"), 0);

    db.batch_execute("SELECT sla.track('tickets')").unwrap();
    // Rows written straight into a leaf, into the partitioned partition
    // and into the partitioned table.
    at(
        &mut db,
        "2026-12-02 09:00Z",
        "INSERT INTO tickets_1a SELECT i, '2026-12-02 09:00Z' FROM generate_series(1, 40) i
          WHERE satisfies_hash_partition('tickets_1'::regclass, 2, 0, i)
            AND satisfies_hash_partition('tickets'::regclass, 2, 1, i);
         INSERT INTO tickets_1 SELECT i, '2026-12-02 09:00Z' FROM generate_series(1, 40) i
          WHERE satisfies_hash_partition('tickets_1'::regclass, 2, 1, i)
            AND satisfies_hash_partition('tickets'::regclass, 2, 1, i);
         INSERT INTO tickets SELECT i, '2026-12-02 09:00Z' FROM generate_series(1, 40) i
          WHERE satisfies_hash_partition('tickets'::regclass, 2, 0, i)",
    );
    assert_eq!(int(&mut db, "SELECT count(*) FROM tickets"), 40);
    assert_eq!(
        int(&mut db, "SELECT count(DISTINCT ticket_id) FROM sla.clocks"),
        40
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM tickets WHERE sla_status = 'running'"
        ),
        40
    );
    // An UPDATE that names a leaf; a TRUNCATE of the partitioned partition.
    at(
        &mut db,
        "2026-12-02 09:30Z",
        "UPDATE tickets_1b SET last_agent_reply_at = '2026-12-02 09:30Z'",
    );
    let replied = int(&mut db, "SELECT count(*) FROM tickets_1b");
    assert!(replied > 0);
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE metric = 'first_response' AND status = 'achieved'"
        ),
        replied
    );
    // A function that updates a ticket, deletes it and inserts it again
    // makes a new ticket, though all happens in one client statement.
    at(
        &mut db,
        "2026-12-02 10:00Z",
        "DO $$ BEGIN
             UPDATE tickets SET status = 'pending' WHERE id = 1;
             DELETE FROM tickets WHERE id = 1;
             INSERT INTO tickets (id, created_at) VALUES (1, '2026-12-02 10:00Z');
         END $$",
    );
    assert_eq!(
        text(
            &mut db,
            "SELECT sla_status || ' ' || to_char(sla_due_at AT TIME ZONE 'UTC', 'HH24:MI') FROM tickets WHERE id = 1"
        ),
        "running 11:00"
    );
    assert_eq!(
        int(
            &mut db,
            "SELECT count(*) FROM sla.clocks WHERE ticket_id = '1'"
        ),
        2
    );
    let in_tickets_1 = int(&mut db, "SELECT count(*) FROM tickets_1");
    db.batch_execute("TRUNCATE tickets_1").unwrap();
    assert_eq!(
        int(&mut db, "SELECT count(DISTINCT ticket_id) FROM sla.clocks"),
        40 - in_tickets_1
    );

    // A TRUNCATE of the whole table.
    db.batch_execute("TRUNCATE tickets").unwrap();
    assert_eq!(int(&mut db, "SELECT count(*) FROM sla.clocks"), 0);

    // Untracking takes pg_sla's triggers off every partition.
    db.batch_execute("SELECT sla.untrack('tickets')").unwrap();
    assert!(triggers(&mut db).is_empty(), "{:?}", triggers(&mut db));
    db.batch_execute(
        "INSERT INTO tickets_1a SELECT i, now() FROM generate_series(41, 80) i
          WHERE satisfies_hash_partition('tickets_1'::regclass, 2, 0, i)
            AND satisfies_hash_partition('tickets'::regclass, 2, 1, i)",
    )
    .unwrap();
}

#[test]
fn a_tracked_partitioned_table_survives_pg_dump_and_pg_restore() {
    let cluster = Cluster::start("partitions_dump", &[]);
    let mut db = cluster.connect();
    db.batch_execute(MONTHLY_TICKETS).unwrap();
    db.batch_execute(
        "SELECT sla.track('tickets');
         INSERT INTO tickets (id, created_at) VALUES (1, '2026-11-30 09:00Z'), (2, '2026-12-01 09:00Z');",
    )
    .unwrap();
    // The restore creates the partitions' triggers itself: pg_sla must not
    // have made them first.
    cluster.dump_and_restore(
        &cluster.connection_string("postgres", "postgres"),
        &[],
        "partitions.dump",
        "restored",
    );
    let mut restored =
        Client::connect(&cluster.connection_string("restored", "postgres"), NoTls).unwrap();
    assert_eq!(triggers(&mut restored), triggers(&mut db));
    assert_eq!(clocked(&mut restored), ["1:2", "2:2"]);
    restored
        .batch_execute(
            "INSERT INTO tickets_2026_12 (id, created_at) VALUES (3, '2026-12-02 09:00Z');
             CREATE TABLE tickets_2027_01 PARTITION OF tickets
                 FOR VALUES FROM ('2027-01-01Z') TO ('2027-02-01Z');
             INSERT INTO tickets_2027_01 (id, created_at) VALUES (4, '2027-01-02 09:00Z');",
        )
        .unwrap();
    assert_eq!(clocked(&mut restored), ["1:2", "2:2", "3:2", "4:2"]);
}
