-- Reporting: who may read which clocks, the SLA report, open clocks and a
-- ticket's timeline: SQL over sla.clocks, readable from any client.

-- sla.clock_business_time (business time from from_ts to to_ts in a
-- calendar, wall-clock time when calendar is NULL, zero when to_ts is not
-- after from_ts) and sla.event_time are Rust functions (src/reporting.rs):
-- reports measure time exactly as the clocks do, and no search_path can
-- redirect them.
COMMENT ON FUNCTION sla.clock_business_time(text, timestamptz, timestamptz) IS
    'pg_sla: business time between two instants in a calendar, wall-clock time for a NULL (24/7) calendar, never negative';

COMMENT ON FUNCTION sla.event_time() IS
    'pg_sla: the setting pg_sla.event_time when set, else now()';

-- Clocks and notifications are about tickets: a role reads those of the
-- tables it may SELECT. Tracked tables are checked once per query (the
-- functions are called in scalar subqueries, run once); clocks that
-- untrack() left behind are checked row by row, and are few.
CREATE FUNCTION sla.readable_tracked_tables() RETURNS regclass[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(t.ticket_table), '{}') FROM sla.tracked_tables t
    WHERE has_table_privilege(t.ticket_table, 'SELECT')
$$;
CREATE FUNCTION sla.tracked_table_list() RETURNS regclass[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(t.ticket_table), '{}') FROM sla.tracked_tables t
$$;
-- Members of pg_read_all_data (PostgreSQL 14 and later), such as backup
-- roles, read every row.
CREATE FUNCTION sla.reads_all_data() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM pg_roles r
                   WHERE r.rolname = 'pg_read_all_data' AND pg_has_role(r.oid, 'MEMBER'))
$$;

ALTER TABLE sla.clocks ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable_tickets ON sla.clocks FOR SELECT USING (
    ticket_table = ANY ((SELECT sla.readable_tracked_tables())::regclass[])
    OR (SELECT sla.reads_all_data())
    OR (ticket_table <> ALL ((SELECT sla.tracked_table_list())::regclass[])
        AND has_table_privilege(ticket_table, 'SELECT')));

-- A breach alert over every table counts tickets of every table: it is for
-- the roles that read all data.
ALTER TABLE sla.notifications ENABLE ROW LEVEL SECURITY;
CREATE POLICY readable_tickets ON sla.notifications FOR SELECT USING (
    ticket_table = ANY ((SELECT sla.readable_tracked_tables())::regclass[])
    OR (SELECT sla.reads_all_data())
    OR (ticket_table <> ALL ((SELECT sla.tracked_table_list())::regclass[])
        AND has_table_privilege(ticket_table, 'SELECT')));

-- Writes stay governed by table privileges alone, as before row security:
-- only roles the owner granted them may write (a retention job deleting old
-- notifications, say). A statement that reads columns (a WHERE clause on
-- them) reaches only the rows above; one that reads none reaches every row.
CREATE POLICY granted_writes ON sla.clocks FOR INSERT WITH CHECK (true);
CREATE POLICY granted_updates ON sla.clocks FOR UPDATE USING (true);
CREATE POLICY granted_deletes ON sla.clocks FOR DELETE USING (true);
CREATE POLICY granted_writes ON sla.notifications FOR INSERT WITH CHECK (true);
CREATE POLICY granted_updates ON sla.notifications FOR UPDATE USING (true);
CREATE POLICY granted_deletes ON sla.notifications FOR DELETE USING (true);

GRANT SELECT ON sla.clocks, sla.notifications TO PUBLIC;

-- Every open clock, with what is left and, once breached, how long ago.
-- A security barrier: the view reads sla.clocks as its owner, so it applies
-- the same rule as the policy above, before any predicate of the caller.
CREATE VIEW sla.open_clocks WITH (security_barrier) AS
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
COMMENT ON VIEW sla.open_clocks IS
    'pg_sla: open SLA clocks of the tables you may read, with remaining business time and time since the breach';
GRANT SELECT ON sla.open_clocks TO PUBLIC;

-- Compliance per policy and metric (and per value of ticket columns) over
-- the clocks started in [from_ts, to_ts).
CREATE FUNCTION sla.report(
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
COMMENT ON FUNCTION sla.report(timestamptz, timestamptz, text[], regclass) IS
    'pg_sla: SLA compliance per policy, metric and group_by ticket columns, over the clocks started in [from_ts, to_ts)';

-- Every clock and notification of one ticket, in time order.
CREATE FUNCTION sla.ticket_timeline(ticket_table regclass, ticket_id text)
RETURNS TABLE (at timestamptz, event text, metric text, cycle int, policy text, detail text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    the_table regclass := ticket_timeline.ticket_table;
    -- The collation of the clocks' ticket ids.
    the_id text COLLATE "C" := ticket_timeline.ticket_id;
    id_column name;
    found_ticket boolean;
BEGIN
    IF the_table IS NULL OR the_id IS NULL THEN
        RAISE EXCEPTION 'sla.ticket_timeline: % must not be NULL',
            CASE WHEN the_table IS NULL THEN 'ticket_table' ELSE 'ticket_id' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT has_table_privilege(the_table, 'SELECT') THEN
        RAISE EXCEPTION 'permission denied for table %', the_table
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT t.id_column INTO id_column FROM sla.tracked_tables t WHERE t.ticket_table = the_table;
    IF id_column IS NOT NULL THEN
        -- Compared in the id column's own type, so its key is used; text
        -- that is no such value is no ticket.
        BEGIN
            EXECUTE format('SELECT EXISTS (SELECT FROM %s WHERE %I = $1::%s)', the_table, id_column,
                           (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                             WHERE a.attrelid = the_table AND a.attname = id_column))
                INTO found_ticket USING the_id;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            found_ticket := false;
        END;
        IF NOT found_ticket THEN
            RAISE EXCEPTION 'sla.ticket_timeline: no ticket with % = % in %', id_column, quote_literal(the_id), the_table
                USING ERRCODE = 'no_data_found';
        END IF;
    ELSIF NOT EXISTS (SELECT FROM sla.clocks c WHERE c.ticket_table = the_table AND c.ticket_id = the_id) THEN
        RAISE EXCEPTION 'sla.ticket_timeline: table % is not tracked', the_table
            USING ERRCODE = 'undefined_object';
    END IF;

    RETURN QUERY
    SELECT e.at, e.event, e.metric::text, e.cycle, e.policy, e.detail
    FROM (
        SELECT c.started_at AS at, 1 AS rank, 'started' AS event, c.metric, c.cycle, c.policy,
               format('target %s', c.target) AS detail
        FROM sla.clocks c WHERE c.ticket_table = the_table AND c.ticket_id = the_id
        UNION ALL
        SELECT c.warned_at, 2, 'due_soon', c.metric, c.cycle, c.policy, format('due at %s', c.due_at)
        FROM sla.clocks c WHERE c.ticket_table = the_table AND c.ticket_id = the_id AND c.warned_at IS NOT NULL
        UNION ALL
        SELECT c.released_at, 2, 'ownership_released', c.metric, c.cycle, c.policy, NULL
        FROM sla.clocks c WHERE c.ticket_table = the_table AND c.ticket_id = the_id AND c.released_at IS NOT NULL
        UNION ALL
        SELECT c.breached_at, 2, 'breached', c.metric, c.cycle, c.policy, format('was due at %s', c.due_at)
        FROM sla.clocks c WHERE c.ticket_table = the_table AND c.ticket_id = the_id AND c.breached_at IS NOT NULL
        UNION ALL
        SELECT c.paused_since, 2, 'paused', c.metric, c.cycle, c.policy,
               CASE WHEN c.paused_time > interval '0' THEN format('after %s paused earlier', c.paused_time) END
        FROM sla.clocks c WHERE c.ticket_table = the_table AND c.ticket_id = the_id AND c.paused_since IS NOT NULL
        UNION ALL
        SELECT c.stopped_at, 3, c.status, c.metric, c.cycle, c.policy,
               CASE WHEN c.due_at IS NOT NULL THEN format('due at %s', c.due_at) END
        FROM sla.clocks c WHERE c.ticket_table = the_table AND c.ticket_id = the_id AND c.stopped_at IS NOT NULL
        UNION ALL
        -- What is coming: the deadline of a running clock.
        SELECT c.due_at, 4, 'due', c.metric, c.cycle, c.policy, format('status %s', c.status)
        FROM sla.clocks c WHERE c.ticket_table = the_table AND c.ticket_id = the_id
          AND c.status IN ('running', 'due_soon') AND c.due_at IS NOT NULL
        UNION ALL
        SELECT n.created_at, 5, 'notified ' || n.kind, n.metric, n.cycle, n.policy,
               concat_ws(': ', format('notification %s', n.id), n.message)
        FROM sla.notifications n WHERE n.ticket_table = the_table AND n.ticket_id = the_id
    ) e
    ORDER BY e.at, e.rank, e.metric, e.cycle, e.event;
END $$;
COMMENT ON FUNCTION sla.ticket_timeline(regclass, text) IS
    'pg_sla: every clock event and notification of one ticket, in time order';
