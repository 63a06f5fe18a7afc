-- SLA engine: policies, tracked tables, clocks and notifications.

-- Policies: which targets apply to which tickets, edited with plain DML.
CREATE TABLE sla.policies (
    name                  text PRIMARY KEY CHECK (name <> ''),
    position              int NOT NULL DEFAULT 0,
    calendar              text REFERENCES sla.calendars (name) ON UPDATE CASCADE,
    conditions            jsonb NOT NULL DEFAULT '{}',
    first_response        interval,
    next_response         interval,
    resolution            interval,
    warn_at               double precision,
    release_ownership_at  double precision,
    feedback_message      text,
    pause_statuses        text[] NOT NULL DEFAULT '{}',
    enabled               boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- The ticket tables the policy applies to; NULL: every tracked table.
    ticket_tables         regclass[],
    CONSTRAINT policies_valid CHECK (sla.validate_policy(name, first_response, next_response,
        resolution, warn_at, release_ownership_at, conditions, pause_statuses))
);
COMMENT ON TABLE sla.policies IS
    'pg_sla policies: the first enabled policy (by position, then name) whose conditions match a ticket sets its targets';

-- What a policy row may hold is checked by the core (sla.validate_policy,
-- the CHECK constraint above); this trigger adds what needs a table: the
-- calendar must exist (with a message that names it), and updated_at.
CREATE FUNCTION sla.policies_validate() RETURNS trigger
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

CREATE TRIGGER policies_validate BEFORE INSERT OR UPDATE ON sla.policies
    FOR EACH ROW EXECUTE FUNCTION sla.policies_validate();
CREATE TRIGGER policies_changed AFTER INSERT OR UPDATE OR DELETE ON sla.policies
    FOR EACH ROW EXECUTE FUNCTION sla.catalog_changed();
CREATE TRIGGER policies_truncated AFTER TRUNCATE ON sla.policies
    FOR EACH STATEMENT EXECUTE FUNCTION sla.catalog_changed();
ALTER TABLE sla.policies ENABLE ALWAYS TRIGGER policies_changed;
ALTER TABLE sla.policies ENABLE ALWAYS TRIGGER policies_truncated;

-- Tables whose rows are tickets, and how their columns map.
CREATE TABLE sla.tracked_tables (
    ticket_table                regclass PRIMARY KEY,
    id_column                   name NOT NULL,
    created_at_column           name NOT NULL,
    status_column               name NOT NULL,
    closed_statuses             text[] NOT NULL,
    customer_message_at_column  name,
    agent_reply_at_column       name,
    assignee_column             name,
    tracked_at                  timestamptz NOT NULL DEFAULT now(),
    -- The zone timestamp-without-time-zone columns are read in (NULL: UTC).
    timestamp_zone              text,
    -- What releasing ownership writes into the assignee column (NULL: NULL).
    unassigned_value            text,
    -- When the customer started waiting, cleared by a reply: instead of the
    -- two time columns of customer messages and agent replies.
    waiting_since_column        name,
    -- sla.track added the sla_* columns (false: add_columns => false).
    sla_columns                 boolean NOT NULL DEFAULT true,
    -- Replies come from two time columns, from "waiting since", or (both
    -- NULL) from a messages table (sla.tracked_messages).
    CONSTRAINT tracked_tables_replies_mapped CHECK (
        (customer_message_at_column IS NULL) = (agent_reply_at_column IS NULL)
        AND (waiting_since_column IS NULL OR customer_message_at_column IS NULL))
);
COMMENT ON TABLE sla.tracked_tables IS
    'pg_sla: ticket tables tracked with sla.track() and how their columns map';
CREATE TRIGGER tracked_tables_changed AFTER INSERT OR UPDATE OR DELETE ON sla.tracked_tables
    FOR EACH ROW EXECUTE FUNCTION sla.catalog_changed();
CREATE TRIGGER tracked_tables_truncated AFTER TRUNCATE ON sla.tracked_tables
    FOR EACH STATEMENT EXECUTE FUNCTION sla.catalog_changed();
ALTER TABLE sla.tracked_tables ENABLE ALWAYS TRIGGER tracked_tables_changed;
ALTER TABLE sla.tracked_tables ENABLE ALWAYS TRIGGER tracked_tables_truncated;

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

-- One row per ticket, metric and cycle, kept by the ticket table's triggers.
CREATE TABLE sla.clocks (
    ticket_table        regclass NOT NULL,
    ticket_id           text COLLATE "C" NOT NULL,
    metric              text COLLATE "C" NOT NULL
        CHECK (metric IN ('first_response', 'next_response', 'resolution')),
    cycle               int NOT NULL,
    policy              text NOT NULL,
    status              text NOT NULL
        CHECK (status IN ('running', 'due_soon', 'breached', 'paused', 'achieved', 'missed', 'cancelled')),
    started_at          timestamptz NOT NULL,
    target              interval NOT NULL,
    due_at              timestamptz,
    warn_at             timestamptz,
    release_at          timestamptz,
    next_transition_at  timestamptz,
    paused_since        timestamptz,
    paused_time         interval NOT NULL DEFAULT '0',
    stopped_at          timestamptz,
    warned_at           timestamptz,
    breached_at         timestamptz,
    released_at         timestamptz,
    -- After due processing failed on the ticket (its table's trigger raised),
    -- not before this wall-clock time.
    retry_at            timestamptz,
    PRIMARY KEY (ticket_table, ticket_id, metric, cycle)
);
COMMENT ON TABLE sla.clocks IS
    'pg_sla: one SLA clock per ticket, metric and cycle; maintained by triggers and sla.process_due()';
-- The clock statuses that are open, and breached but still open (paused
-- after the breach or not): the core's ClockStatus::OPEN and
-- Clock::is_breached_open, which a test compares with these. Reports and
-- views call them; they are inlined, so they cost nothing per row.
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

-- Due processing probes this index; it holds only clocks with a pending transition.
CREATE INDEX clocks_next_transition ON sla.clocks (next_transition_at)
    WHERE next_transition_at IS NOT NULL;

-- Breach alerts count breached open tickets here; it holds only those clocks.
CREATE INDEX clocks_breached ON sla.clocks (ticket_table, ticket_id)
    WHERE breached_at IS NOT NULL AND status IN ('breached', 'paused');

CREATE TABLE sla.notifications (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- NULL only for a breach alert over every tracked table.
    ticket_table      regclass,
    -- NULL only for a breach alert, which is about many tickets.
    ticket_id         text COLLATE "C",
    policy            text,
    metric            text COLLATE "C",
    cycle             int,
    clock_started_at  timestamptz,
    step              text COLLATE "C" NOT NULL,
    kind              text COLLATE "C" NOT NULL
        CHECK (kind IN ('due_soon', 'breached', 'ownership_released', 'customer_feedback', 'breach_alert')),
    due_at            timestamptz,
    message           text,
    -- Breach alerts: who is alerted, and how many breached tickets they had.
    recipient         text,
    breached_count    int,
    CHECK (kind = 'breach_alert' OR (ticket_table IS NOT NULL AND ticket_id IS NOT NULL)),
    -- Exactly once: one notification of a kind per step of a clock.
    UNIQUE (ticket_table, ticket_id, metric, cycle, clock_started_at, step, kind)
);
COMMENT ON TABLE sla.notifications IS
    'pg_sla: what sla.process_due() announced; each kind at most once per clock transition, also sent with NOTIFY on channel pg_sla';

-- Breach alerts: tell a recipient once when their breached open tickets
-- reach a threshold, and again only after the count fell below it.
CREATE TABLE sla.alert_rules (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient       text NOT NULL,
    min_breached    int NOT NULL,
    -- NULL: every tracked table.
    ticket_table    regclass REFERENCES sla.tracked_tables ON DELETE CASCADE,
    -- On tables with an assignee column, only the recipient's tickets count,
    -- unless this is set (a team lead's alert).
    every_assignee  boolean NOT NULL DEFAULT false,
    enabled         boolean NOT NULL DEFAULT true,
    -- Kept by sla.process_due(): whether the count is at or over the
    -- threshold, the count last seen and when the last alert went out.
    alerting        boolean NOT NULL DEFAULT false,
    breached_count  int,
    alerted_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sla.alert_rules IS
    'pg_sla: one breach_alert notification to recipient each time its breached open tickets reach min_breached';

CREATE FUNCTION sla.alert_rules_validate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.recipient IS NULL OR btrim(NEW.recipient) = '' THEN
        RAISE EXCEPTION 'alert rule: recipient must not be empty, got %', coalesce(quote_literal(NEW.recipient), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NEW.min_breached IS NULL OR NEW.min_breached < 1 THEN
        RAISE EXCEPTION 'alert rule for "%": min_breached must be at least 1, got %',
            NEW.recipient, coalesce(NEW.min_breached::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NEW.ticket_table IS NOT NULL
       AND NOT EXISTS (SELECT FROM sla.tracked_tables WHERE ticket_table = NEW.ticket_table) THEN
        RAISE EXCEPTION 'alert rule for "%": table % is not tracked', NEW.recipient, NEW.ticket_table
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'Track it with sla.track() first, or leave ticket_table NULL for every tracked table.';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.recipient, NEW.min_breached, NEW.ticket_table, NEW.every_assignee)
                  IS DISTINCT FROM (OLD.recipient, OLD.min_breached, OLD.ticket_table, OLD.every_assignee) THEN
        -- A changed rule is a new rule: it alerts when its count is reached.
        NEW.alerting := false;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER alert_rules_validate BEFORE INSERT OR UPDATE ON sla.alert_rules
    FOR EACH ROW EXECUTE FUNCTION sla.alert_rules_validate();

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

-- Edits of policies and calendars reach the open clocks in the same transaction.
CREATE TRIGGER policies_edited AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sla.policies
    FOR EACH STATEMENT EXECUTE FUNCTION sla.policies_edited();
CREATE TRIGGER calendars_edited AFTER UPDATE ON sla.calendars
    REFERENCING OLD TABLE AS old_calendars
    FOR EACH STATEMENT EXECUTE FUNCTION sla.calendars_edited();

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

-- A dropped ticket table takes its tracking and its clocks with it (no
-- trigger of the table fires on DROP TABLE).
CREATE FUNCTION sla.tables_dropped() RETURNS event_trigger
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
CREATE EVENT TRIGGER pg_sla_tables_dropped ON sql_drop
    EXECUTE FUNCTION sla.tables_dropped();

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

-- Everyone may use the functions and read the settings; only the extension's
-- owner (or roles it grants) may change them.
GRANT USAGE ON SCHEMA sla TO PUBLIC;
GRANT SELECT ON sla.calendars, sla.policies, sla.tracked_tables, sla.tracked_messages, sla.alert_rules TO PUBLIC;

-- Applying transitions changes tickets and notifies people: only roles
-- granted it may run due processing (and replay time with its argument).
REVOKE ALL ON FUNCTION sla.process_due(timestamptz, int) FROM PUBLIC;
-- pg_sla attaches its trigger functions itself, as the owner of its tables.
REVOKE ALL ON FUNCTION sla.ticket_row_changed(), sla.tickets_inserted(), sla.tickets_deleted(), sla.tickets_updated(),
    sla.tickets_truncated(), sla.messages_written(), sla.policies_edited(), sla.calendars_edited(), sla.catalog_changed(),
    sla.tables_dropped(), sla.partitions_changed() FROM PUBLIC;
-- The worker's last error may quote ticket data: like other sessions'
-- activity, it is for monitoring roles.
REVOKE ALL ON FUNCTION sla.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION sla.worker_status() TO pg_read_all_stats;
GRANT SELECT ON sla.pending_ticket_updates TO pg_read_all_stats;

SELECT pg_catalog.pg_extension_config_dump('sla.policies', '');
SELECT pg_catalog.pg_extension_config_dump('sla.tracked_tables', '');
SELECT pg_catalog.pg_extension_config_dump('sla.clocks', '');
SELECT pg_catalog.pg_extension_config_dump('sla.notifications', '');
SELECT pg_catalog.pg_extension_config_dump('sla.alert_rules', '');
SELECT pg_catalog.pg_extension_config_dump('sla.pending_ticket_updates', '');
SELECT pg_catalog.pg_extension_config_dump('sla.tracked_messages', '');
SELECT pg_catalog.pg_extension_config_dump('sla.early_messages', '');
SELECT pg_catalog.pg_extension_config_dump('sla.alert_rules_id_seq', '');
-- Its ids must go on from where they were after a restore.
SELECT pg_catalog.pg_extension_config_dump('sla.notifications_id_seq', '');
