-- pg_sla 0.2.0 → 0.3.0. One cumulative script for the unreleased 0.3.0: each
-- change of 0.3.0 adds its part here, and tests/client/tests/upgrade.rs checks
-- that 0.1.0 → 0.2.0 → 0.3.0 gives the schema of a fresh 0.3.0, data intact.

-- Architecture (one definition of each rule) ------------------------------

-- Policy rows are checked by the core, through a CHECK constraint; the
-- trigger keeps what needs a table (the calendar exists) and updated_at.
CREATE FUNCTION sla."validate_policy"(
	"name" TEXT,
	"first_response" interval,
	"next_response" interval,
	"resolution" interval,
	"warn_at" double precision,
	"release_ownership_at" double precision,
	"conditions" jsonb,
	"pause_statuses" TEXT[]
) RETURNS bool
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'validate_policy_wrapper';

-- Existing rows passed the same rules in the 0.2.0 trigger, which keeps
-- only its other checks (replaced below).
ALTER TABLE sla.policies ADD CONSTRAINT policies_valid CHECK (sla.validate_policy(name, first_response, next_response,
        resolution, warn_at, release_ownership_at, conditions, pause_statuses));

-- The open and breached-open rules, once, for reports and views.
CREATE FUNCTION sla.clock_is_open(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT status OPERATOR(pg_catalog.=) ANY ('{running,due_soon,breached,paused}'::pg_catalog.text[])
$$;
COMMENT ON FUNCTION sla.clock_is_open(text) IS
    'pg_sla: whether a clock with this status is open (running, due soon, breached or paused)';
CREATE FUNCTION sla.clock_is_breached_open(status text, breached_at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT breached_at IS NOT NULL
       AND status OPERATOR(pg_catalog.=) ANY ('{breached,paused}'::pg_catalog.text[])
$$;
COMMENT ON FUNCTION sla.clock_is_breached_open(text, timestamptz) IS
    'pg_sla: whether a clock breached and is still open (a pause does not undo the lateness)';

-- Reports measure time exactly as the clocks do: Rust functions.
CREATE OR REPLACE FUNCTION sla."clock_business_time"(
	"calendar" TEXT,
	"from_ts" timestamp with time zone,
	"to_ts" timestamp with time zone
) RETURNS interval
STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'clock_business_time_wrapper';
CREATE OR REPLACE FUNCTION sla."event_time"() RETURNS timestamp with time zone
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'event_time_now_wrapper';

CREATE OR REPLACE VIEW sla.open_clocks WITH (security_barrier) AS
SELECT c.ticket_table,
       c.ticket_id,
       c.metric,
       c.cycle,
       c.policy,
       c.status,
       c.started_at,
       c.due_at,
       -- A paused clock keeps what it had left when the pause began.
       sla.clock_business_time(p.calendar,
           CASE WHEN c.status = 'paused' THEN least(c.paused_since, n.now) ELSE n.now END,
           c.due_at) AS remaining,
       c.paused_since,
       c.breached_at,
       -- From the deadline the clock breached (a later policy edit may move
       -- due_at); wall-clock time in hours, like every other duration here.
       sla.clock_business_time(NULL, c.breached_at, n.now) AS breached_for,
       sla.clock_business_time(p.calendar, c.breached_at, n.now) AS breached_for_business
FROM sla.clocks c
LEFT JOIN sla.policies p ON p.name = c.policy
CROSS JOIN (SELECT sla.event_time() AS now) n
WHERE sla.clock_is_open(c.status)
  AND (c.ticket_table = ANY ((SELECT sla.readable_tracked_tables())::regclass[])
       OR (SELECT sla.reads_all_data())
       OR (c.ticket_table <> ALL ((SELECT sla.tracked_table_list())::regclass[])
           AND has_table_privilege(c.ticket_table, 'SELECT')));

CREATE OR REPLACE FUNCTION sla.report(
    from_ts timestamptz,
    to_ts timestamptz,
    group_by text[] DEFAULT '{}',
    ticket_table regclass DEFAULT NULL
) RETURNS TABLE (
    policy text,
    metric text,
    group_values jsonb,
    started bigint,
    achieved bigint,
    missed bigint,
    cancelled bigint,
    open bigint,
    breached_now bigint,
    compliance_pct numeric,
    avg_time_to_stop interval,
    median_time_to_stop interval,
    p90_time_to_stop interval
)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    only_table regclass := report.ticket_table;
    tracked record;
    column_name text;
    group_expr text;
    sources text[] := '{}';
BEGIN
    IF from_ts IS NULL OR to_ts IS NULL THEN
        RAISE EXCEPTION 'sla.report: % must not be NULL', CASE WHEN from_ts IS NULL THEN 'from_ts' ELSE 'to_ts' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF from_ts > to_ts THEN
        RAISE EXCEPTION 'sla.report: from_ts (%) is after to_ts (%)', from_ts, to_ts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    group_by := coalesce(group_by, '{}');
    FOREACH column_name IN ARRAY group_by LOOP
        IF column_name IS NULL OR column_name = '' THEN
            RAISE EXCEPTION 'sla.report: group_by must name ticket columns, got %', group_by
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;
    IF only_table IS NOT NULL
       AND NOT EXISTS (SELECT FROM sla.tracked_tables t WHERE t.ticket_table = only_table) THEN
        RAISE EXCEPTION 'sla.report: table % is not tracked', only_table
            USING ERRCODE = 'undefined_object';
    END IF;

    IF cardinality(group_by) = 0 THEN
        -- No ticket columns: the clocks alone, whether or not still tracked.
        sources := ARRAY[format(
            'SELECT c.policy, c.metric, c.status, c.started_at, c.stopped_at, c.paused_time,
                    c.breached_at, jsonb ''{}'' AS group_values
             FROM sla.clocks c
             WHERE c.started_at >= $1 AND c.started_at < $2 %s',
            CASE WHEN only_table IS NULL THEN '' ELSE format('AND c.ticket_table = %s::oid', only_table::oid) END)];
    ELSE
        FOR tracked IN
            SELECT t.ticket_table, t.id_column FROM sla.tracked_tables t
            WHERE (only_table IS NULL OR t.ticket_table = only_table)
              -- Clocks of other tables are hidden from this role anyway.
              AND has_table_privilege(t.ticket_table, 'SELECT')
            ORDER BY t.ticket_table::text
        LOOP
            group_expr := '';
            FOREACH column_name IN ARRAY group_by LOOP
                IF NOT EXISTS (SELECT FROM pg_attribute a
                               WHERE a.attrelid = tracked.ticket_table AND a.attname = column_name
                                 AND a.attnum > 0 AND NOT a.attisdropped) THEN
                    RAISE EXCEPTION 'sla.report: group_by column "%" does not exist in tracked table %',
                        column_name, tracked.ticket_table
                        USING ERRCODE = 'undefined_column',
                              HINT = 'Group by columns every tracked table has, or pass ticket_table to report on one table.';
                END IF;
                group_expr := group_expr || format(', %L, t.%I', column_name, column_name);
            END LOOP;
            sources := sources || format(
                'SELECT c.policy, c.metric, c.status, c.started_at, c.stopped_at, c.paused_time,
                        c.breached_at, jsonb_build_object(%s) AS group_values
                 FROM sla.clocks c
                 JOIN %s t ON (t.%I)::text COLLATE "C" = c.ticket_id
                 WHERE c.ticket_table = %s::oid AND c.started_at >= $1 AND c.started_at < $2',
                substr(group_expr, 3), tracked.ticket_table, tracked.id_column, tracked.ticket_table::oid);
        END LOOP;
        IF cardinality(sources) = 0 THEN
            RETURN;
        END IF;
    END IF;

    -- Time to stop is measured in the calendar of the clock's policy, pauses
    -- left out; unknown when that policy no longer exists.
    RETURN QUERY EXECUTE format(
        'WITH clocks AS (%s),
         measured AS (
            SELECT c.*,
                   CASE WHEN c.status IN (''achieved'', ''missed'') AND p.name IS NOT NULL
                        THEN greatest(sla.clock_business_time(p.calendar, c.started_at, c.stopped_at)
                                      - c.paused_time, interval ''0'')
                   END AS time_to_stop,
                   sla.clock_is_breached_open(c.status, c.breached_at) AS breached_open
            FROM clocks c LEFT JOIN sla.policies p ON p.name = c.policy)
         SELECT m.policy, m.metric::text, m.group_values,
                count(*),
                count(*) FILTER (WHERE m.status = ''achieved''),
                count(*) FILTER (WHERE m.status = ''missed''),
                count(*) FILTER (WHERE m.status = ''cancelled''),
                count(*) FILTER (WHERE sla.clock_is_open(m.status)),
                count(*) FILTER (WHERE m.breached_open),
                round(100.0 * count(*) FILTER (WHERE m.status = ''achieved'')
                      / nullif(count(*) FILTER (WHERE m.status IN (''achieved'', ''missed'') OR m.breached_open), 0), 1),
                date_trunc(''second'', avg(m.time_to_stop)),
                date_trunc(''second'', percentile_cont(0.5) WITHIN GROUP (ORDER BY m.time_to_stop)),
                date_trunc(''second'', percentile_cont(0.9) WITHIN GROUP (ORDER BY m.time_to_stop))
         FROM measured m
         GROUP BY m.policy, m.metric, m.group_values
         ORDER BY m.policy, m.metric, m.group_values::text',
        array_to_string(sources, ' UNION ALL '))
    USING from_ts, to_ts;
END $$;

-- Security and reliability ---------------------------------------------------

-- Every function sets its search_path or qualifies what it calls.
CREATE OR REPLACE FUNCTION sla.calendars_touch() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

-- What due processing would do at any time, for any role, writing nothing.
CREATE FUNCTION sla."preview_due"(
	"at" timestamp with time zone DEFAULT now(),
	"max_rows" INT DEFAULT 1000
) RETURNS TABLE (
	"ticket_table" regclass,
	"ticket_id" TEXT,
	"metric" TEXT,
	"cycle" INT,
	"transition" TEXT,
	"transition_at" timestamp with time zone
)
STRICT STABLE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'preview_due_wrapper';

-- A breach is recorded even when updating its ticket row fails.
-- Ticket rows that due processing could not update (a trigger of the
-- application raised, a NOT NULL assignee refused the release): the breach
-- or warning itself is recorded in sla.clocks and sla.notifications; this
-- row is what is left to do, retried on its own until it succeeds.
CREATE TABLE sla.pending_ticket_updates (
    ticket_table        regclass NOT NULL REFERENCES sla.tracked_tables ON DELETE CASCADE,
    ticket_id           text COLLATE "C" NOT NULL,
    -- The assignee is still to be released (when its clock is still open
    -- and the ticket still has the assignee it had then, as text).
    release_ownership   boolean NOT NULL,
    assignee            text,
    first_failed_at     timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    attempts            int NOT NULL DEFAULT 1,
    -- Not retried before this wall-clock time.
    retry_at            timestamptz NOT NULL,
    sqlstate            text NOT NULL,
    error               text NOT NULL,
    PRIMARY KEY (ticket_table, ticket_id)
);
COMMENT ON TABLE sla.pending_ticket_updates IS
    'pg_sla: ticket rows whose update by sla.process_due() failed after their transition was recorded; retried until done';
CREATE INDEX pending_ticket_updates_retry ON sla.pending_ticket_updates (retry_at);
-- The errors may quote ticket data: like the worker's status, for monitoring roles.
GRANT SELECT ON sla.pending_ticket_updates TO pg_read_all_stats;
SELECT pg_catalog.pg_extension_config_dump('sla.pending_ticket_updates', '');

-- Real help desks' tables --------------------------------------------------

-- Timestamps without time zone read in a zone, and an owner column whose
-- "nobody" is a value rather than NULL.
ALTER TABLE sla.tracked_tables
    ADD COLUMN timestamp_zone text,
    ADD COLUMN unassigned_value text,
    ADD COLUMN waiting_since_column name,
    ADD COLUMN sla_columns boolean NOT NULL DEFAULT true,
    ALTER COLUMN customer_message_at_column DROP NOT NULL,
    ALTER COLUMN agent_reply_at_column DROP NOT NULL,
    ADD CONSTRAINT tracked_tables_replies_mapped CHECK (
        (customer_message_at_column IS NULL) = (agent_reply_at_column IS NULL)
        AND (waiting_since_column IS NULL OR customer_message_at_column IS NULL));
DROP FUNCTION sla.track(regclass, text, text, text, text[], text, text, text);
CREATE FUNCTION sla."track"(
	"ticket_table" regclass,
	"id_column" TEXT DEFAULT 'id',
	"created_at_column" TEXT DEFAULT 'created_at',
	"status_column" TEXT DEFAULT 'status',
	"closed_statuses" TEXT[] DEFAULT '{solved,closed}',
	"customer_message_at_column" TEXT DEFAULT 'last_customer_message_at',
	"agent_reply_at_column" TEXT DEFAULT 'last_agent_reply_at',
	"assignee_column" TEXT DEFAULT NULL,
	"timestamp_zone" TEXT DEFAULT NULL,
	"unassigned_value" TEXT DEFAULT NULL,
	"waiting_since_column" TEXT DEFAULT NULL,
	"backfill" bool DEFAULT true,
	"add_columns" bool DEFAULT true
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'track_table_wrapper';

-- Policies restricted to named tables. The trigger keeps only what the
-- CHECK constraint above cannot see (another table, NULLs in the list).
ALTER TABLE sla.policies ADD COLUMN ticket_tables regclass[];
CREATE OR REPLACE FUNCTION sla.policies_validate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.calendar IS NOT NULL AND NOT EXISTS (SELECT FROM sla.calendars WHERE name = NEW.calendar) THEN
        RAISE EXCEPTION 'policy "%": calendar "%" does not exist', NEW.name, NEW.calendar
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'Create it in sla.calendars first, or leave calendar NULL for 24/7.';
    END IF;
    IF array_position(NEW.ticket_tables, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'policy "%": ticket_tables must not contain NULL, got %', NEW.name, NEW.ticket_tables
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Leave ticket_tables NULL for a policy that applies to every tracked table.';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

-- Messages tables.
-- Messages tables whose rows drive their tickets' response clocks.
CREATE TABLE sla.tracked_messages (
    messages_table      regclass PRIMARY KEY,
    ticket_table        regclass NOT NULL REFERENCES sla.tracked_tables ON DELETE CASCADE,
    -- The messages table's column holding the ticket's id.
    ticket_column       name NOT NULL,
    created_at_column   name NOT NULL,
    -- Conditions in the language of policy conditions: a message matching
    -- customer_message is the customer's, one matching agent_reply (and not
    -- the first) an agent's reply; others are ignored.
    customer_message    jsonb NOT NULL,
    agent_reply         jsonb NOT NULL,
    tracked_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sla.tracked_messages IS
    'pg_sla: messages tables tracked with sla.track_messages(), and which of their rows are customer messages and agent replies';
CREATE TRIGGER tracked_messages_changed AFTER INSERT OR UPDATE OR DELETE ON sla.tracked_messages
    FOR EACH ROW EXECUTE FUNCTION sla.catalog_changed();
CREATE TRIGGER tracked_messages_truncated AFTER TRUNCATE ON sla.tracked_messages
    FOR EACH STATEMENT EXECUTE FUNCTION sla.catalog_changed();
ALTER TABLE sla.tracked_messages ENABLE ALWAYS TRIGGER tracked_messages_changed;
ALTER TABLE sla.tracked_messages ENABLE ALWAYS TRIGGER tracked_messages_truncated;

-- Messages whose ticket pg_sla could not find when they were written
-- (written before it, or for an id not in the table): applied when a
-- ticket with that id is inserted.
CREATE TABLE sla.early_messages (
    ticket_table        regclass NOT NULL REFERENCES sla.tracked_tables ON DELETE CASCADE,
    ticket_id           text COLLATE "C" NOT NULL,
    sent_at             timestamptz NOT NULL,
    from_customer       boolean NOT NULL,
    PRIMARY KEY (ticket_table, ticket_id, sent_at, from_customer)
);
COMMENT ON TABLE sla.early_messages IS
    'pg_sla: messages that arrived before their ticket, applied when it is inserted';

GRANT SELECT ON sla.tracked_messages TO PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('sla.tracked_messages', '');
SELECT pg_catalog.pg_extension_config_dump('sla.early_messages', '');
CREATE OR REPLACE FUNCTION sla.tables_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped regclass[];
BEGIN
    dropped := ARRAY(SELECT d.objid::regclass FROM pg_event_trigger_dropped_objects() d
                      WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0
                        AND d.object_type = 'table');
    IF cardinality(dropped) = 0 THEN
        RETURN;
    END IF;
    -- Both by key: dropping tables that were never tracked costs probes only.
    DELETE FROM sla.tracked_tables WHERE ticket_table = ANY (dropped);
    DELETE FROM sla.tracked_messages WHERE messages_table = ANY (dropped);
    DELETE FROM sla.clocks WHERE ticket_table = ANY (dropped);
    -- A policy restricted to a dropped table no longer names it (its OID
    -- may be reused by another table).
    UPDATE sla.policies
       SET ticket_tables = ARRAY(SELECT t FROM unnest(ticket_tables) t WHERE t <> ALL (dropped))
     WHERE ticket_tables && dropped;
END $$;
CREATE FUNCTION sla."track_messages"(
	"messages_table" regclass,
	"ticket_table" regclass,
	"ticket_column" TEXT,
	"created_at_column" TEXT DEFAULT 'created_at',
	"customer_message" jsonb DEFAULT NULL,
	"agent_reply" jsonb DEFAULT NULL
) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'track_messages_wrapper';
CREATE FUNCTION sla."untrack_messages"(
	"messages_table" regclass
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'untrack_messages_wrapper';
CREATE FUNCTION sla."messages_written"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'messages_written_wrapper';
-- pg_sla attaches it itself, as the owner of its tables.
REVOKE ALL ON FUNCTION sla.messages_written() FROM PUBLIC;

-- Tracking a large table without holding its lock: the backfill in batches.
CREATE FUNCTION sla."backfill_batch"(
	"ticket_table" regclass,
	"after_id" TEXT,
	"batch_size" INT DEFAULT 5000
) RETURNS TABLE (
	"tickets" bigint,
	"last_id" TEXT
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'backfill_batch_wrapper';
-- Creates the clocks of a tracked table's existing tickets (after
-- sla.track(..., backfill => false)) in batches, committing after each, so
-- that the application keeps reading and writing its tickets meanwhile.
-- No SET clause (it would forbid COMMIT): every name is qualified.
CREATE PROCEDURE sla.backfill(ticket_table regclass, batch_size int DEFAULT 5000)
LANGUAGE plpgsql AS $$
DECLARE
    after_id pg_catalog.text;
    batch_tickets pg_catalog.int8;
    done pg_catalog.int8 := 0;
    started pg_catalog.timestamptz := pg_catalog.clock_timestamp();
    reported pg_catalog.timestamptz := pg_catalog.clock_timestamp();
BEGIN
    LOOP
        SELECT b.tickets, b.last_id INTO batch_tickets, after_id
          FROM sla.backfill_batch(ticket_table, after_id, batch_size) b;
        COMMIT;
        EXIT WHEN batch_tickets OPERATOR(pg_catalog.=) 0;
        done := done OPERATOR(pg_catalog.+) batch_tickets;
        IF pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) reported
           OPERATOR(pg_catalog.>=) pg_catalog.make_interval(secs => 5) THEN
            RAISE NOTICE 'pg_sla: % tickets of table % have their clocks so far', done, ticket_table;
            reported := pg_catalog.clock_timestamp();
        END IF;
    END LOOP;
    RAISE NOTICE 'pg_sla: the % existing tickets of table % have their clocks (% s)', done, ticket_table,
        pg_catalog.round(pg_catalog.date_part('epoch',
            pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) started)::pg_catalog.numeric, 1);
END $$;

-- Tables tracked without the sla_* columns read their tickets' SLA here.
CREATE FUNCTION sla."ticket_sla"(
	"ticket_table" regclass,
	"ticket_id" anyelement
) RETURNS TABLE (
	"policy" TEXT,
	"status" TEXT,
	"due_at" timestamp with time zone,
	"breached_at" timestamp with time zone
)
STRICT STABLE
LANGUAGE c
AS 'MODULE_PATHNAME', 'ticket_sla_wrapper';

-- Partitioned ticket tables (issue 14).
-- Partitions of tracked partitioned tables get pg_sla's statement triggers
-- as they are created or attached, and their tickets lose their clocks when
-- they are detached or dropped (src/partitions.rs). DROP is seen before it
-- runs, while the partition's rows can still be read.
CREATE FUNCTION sla.partitions_changed() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'partitions_changed';
CREATE EVENT TRIGGER pg_sla_partitions_dropping ON ddl_command_start
    WHEN TAG IN ('DROP TABLE')
    EXECUTE FUNCTION sla.partitions_changed();
CREATE EVENT TRIGGER pg_sla_partitions_changed ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE SCHEMA')
    EXECUTE FUNCTION sla.partitions_changed();
REVOKE ALL ON FUNCTION sla.partitions_changed() FROM PUBLIC;

-- The clock changes of a statement's updated tickets are written together at
-- its end (the write path): every tracked table gets the trigger that does it.
CREATE FUNCTION sla."tickets_updated"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'tickets_updated_wrapper';
REVOKE ALL ON FUNCTION sla.tickets_updated() FROM PUBLIC;
DO $$
DECLARE
    tracked regclass;
BEGIN
    FOR tracked IN SELECT ticket_table FROM sla.tracked_tables ORDER BY ticket_table::oid LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER zz_pg_sla_updated AFTER UPDATE ON %s
               FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_updated()', tracked);
    END LOOP;
END $$;
