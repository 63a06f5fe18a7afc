-- Write-path benchmark: run by bench/write_path.sh in a scratch cluster with
-- a release build of pg_sla. The figures the write-path issue sets goals
-- for, each a ratio measured in this one run: the application's writes to
-- a typical help-desk table, tracked against the same table untracked
-- (without pg_sla's columns), and the bytes pg_sla adds per ticket.
-- psql variable :part selects what runs: setup, writes, storage, recompute.

\ir bench_time.sql
SET pg_sla.event_time = '2026-11-30 10:00Z';

\if :{?part}
\else
\set part all
\endif
SELECT :'part' IN ('all', 'setup') AS run_setup, :'part' IN ('all', 'writes') AS run_writes,
       :'part' IN ('all', 'storage') AS run_storage, :'part' IN ('all', 'recompute') AS run_recompute \gset

\if :run_setup
CREATE EXTENSION IF NOT EXISTS pg_sla;
-- Business hours with a lunch break, and a holiday.
INSERT INTO sla.calendars (name, definition) VALUES
  ('office', '{"timezone": "Europe/Paris",
    "hours": {"mon": ["09:00-12:00", "13:00-17:00"], "tue": ["09:00-12:00", "13:00-17:00"],
              "wed": ["09:00-12:00", "13:00-17:00"], "thu": ["09:00-12:00", "13:00-17:00"],
              "fri": ["09:00-12:00", "13:00-17:00"]},
    "holidays": ["2026-12-25"]}');
INSERT INTO sla.policies (name, position, calendar, conditions, first_response, next_response,
                          resolution, warn_at, pause_statuses) VALUES
  ('urgent', 1, 'office', '{"priority": "urgent"}', '1 hour', '2 hours', '1 day', 0.8, '{pending}'),
  ('standard', 2, 'office', '{}', '4 hours', '8 hours', '5 days', 0.8, '{pending}');

-- A help desk's tickets: ten columns and three secondary indexes. The
-- untracked copy has no SLA columns: it is the table without pg_sla.
CREATE TABLE tickets_untracked (
  id bigint PRIMARY KEY, subject text NOT NULL, status text NOT NULL DEFAULT 'open',
  priority text NOT NULL DEFAULT 'normal', requester_id bigint NOT NULL, assignee_id int,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
  last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
CREATE INDEX ON tickets_untracked (status);
CREATE INDEX ON tickets_untracked (assignee_id);
CREATE INDEX ON tickets_untracked (requester_id);
CREATE TABLE tickets_tracked (LIKE tickets_untracked INCLUDING ALL);
SELECT sla.track('tickets_tracked', assignee_column => 'assignee_id') \gset

-- Tickets opened on the morning of Monday 2026-11-30, all open at the
-- event time above.
CREATE FUNCTION ticket_rows(n int) RETURNS TABLE (
  id bigint, subject text, priority text, requester_id bigint, assignee_id int,
  created_at timestamptz, updated_at timestamptz, last_customer_message_at timestamptz)
LANGUAGE sql AS $$
  SELECT g, 'Order #' || g || ' has not arrived', CASE WHEN g % 10 = 0 THEN 'urgent' ELSE 'normal' END,
         g % 5000, (g % 40)::int,
         '2026-11-30 07:00Z'::timestamptz + (g % 3600) * interval '1 second',
         '2026-11-30 07:00Z'::timestamptz + (g % 3600) * interval '1 second',
         '2026-11-30 07:00Z'::timestamptz + (g % 3600) * interval '1 second'
    FROM generate_series(1, n) g
$$;
-- The same n tickets into both tables.
CREATE PROCEDURE fill_tickets(n int) LANGUAGE sql AS $$
  INSERT INTO tickets_untracked (id, subject, priority, requester_id, assignee_id, created_at, updated_at,
                                 last_customer_message_at)
  SELECT * FROM ticket_rows(n);
  INSERT INTO tickets_tracked (id, subject, priority, requester_id, assignee_id, created_at, updated_at,
                               last_customer_message_at)
  SELECT * FROM ticket_rows(n);
$$;
CREATE TABLE bench_samples (measure text, target text, ms float8);
\endif

\if :run_writes
-- 20,000 tickets in one INSERT, then one UPDATE of them all (an agent
-- reply and a status change), each table in turn, alternating the order.
CREATE PROCEDURE bench_writes(runs int) LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
  target text;
BEGIN
  FOR i IN 0..runs LOOP
    FOREACH target IN ARRAY CASE WHEN i % 2 = 0 THEN ARRAY['tickets_untracked', 'tickets_tracked']
                                 ELSE ARRAY['tickets_tracked', 'tickets_untracked'] END LOOP
      EXECUTE format('TRUNCATE %I', target);
      COMMIT;
      SET LOCAL pg_sla.event_time = '2026-11-30 10:00Z';
      started := clock_timestamp();
      EXECUTE format('INSERT INTO %I (id, subject, priority, requester_id, assignee_id, created_at,
                                      updated_at, last_customer_message_at)
                      SELECT * FROM ticket_rows(20000)', target);
      IF i > 0 THEN
        INSERT INTO bench_samples VALUES ('insert', target, extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      COMMIT;
      SET LOCAL pg_sla.event_time = '2026-11-30 10:00Z';
      started := clock_timestamp();
      EXECUTE format('UPDATE %I SET last_agent_reply_at = created_at + interval ''2 hours'',
                                    status = ''pending'', updated_at = created_at + interval ''2 hours''', target);
      IF i > 0 THEN
        INSERT INTO bench_samples VALUES ('update', target, extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      COMMIT;
    END LOOP;
  END LOOP;
END $$;
CALL bench_writes(7);
\echo
\echo 'One statement on 20,000 tickets of a typical help-desk table (median of 7 runs):'
WITH m AS (SELECT measure, target, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
             FROM bench_samples GROUP BY measure, target)
SELECT u.measure AS statement, round(u.ms::numeric, 1) AS "untracked ms", round(t.ms::numeric, 1) AS "tracked ms",
       round((t.ms / u.ms)::numeric, 2) AS "tracked / untracked",
       CASE u.measure WHEN 'insert' THEN '<= 2' ELSE '<= 3' END AS goal
  FROM m u JOIN m t ON t.measure = u.measure AND t.target = 'tickets_tracked'
 WHERE u.target = 'tickets_untracked' ORDER BY u.measure;
-- Leave 20,000 fresh tickets in each for the single-row updates.
TRUNCATE tickets_untracked, tickets_tracked;
CALL fill_tickets(20000);
VACUUM ANALYZE tickets_untracked, tickets_tracked, sla.clocks;
\endif

\if :run_storage
-- Bytes pg_sla adds per ticket with two open clocks: everything in schema
-- sla (heap, indexes, TOAST) and the growth of the ticket table, measured
-- from an empty start after VACUUM.
TRUNCATE tickets_untracked, tickets_tracked, sla.clocks;
CREATE TEMP TABLE sla_size_before AS
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) AS bytes
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'sla' AND c.relkind IN ('r', 'm', 'p');
CALL fill_tickets(200000);
VACUUM ANALYZE tickets_untracked, tickets_tracked, sla.clocks;
\echo
\echo 'Bytes pg_sla adds per tracked ticket (200,000 tickets, two open clocks each):'
WITH sla_now AS (
  SELECT sum(pg_total_relation_size(c.oid)) AS bytes
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'sla' AND c.relkind IN ('r', 'm', 'p')),
counts AS (SELECT count(*) AS clocks, count(*) FILTER (WHERE sla.clock_is_open(status)) AS open FROM sla.clocks)
SELECT counts.clocks, counts.open AS "open clocks",
       round((sla_now.bytes - b.bytes) / 200000.0, 1) AS "schema sla",
       round((pg_total_relation_size('tickets_tracked') - pg_total_relation_size('tickets_untracked')) / 200000.0, 1)
         AS "ticket table growth",
       round((sla_now.bytes - b.bytes + pg_total_relation_size('tickets_tracked')
              - pg_total_relation_size('tickets_untracked')) / 200000.0, 1) AS "bytes per ticket (goal <= 250)",
       round(pg_total_relation_size('tickets_untracked') / 200000.0, 1) AS "untracked ticket, for scale"
  FROM sla_now, sla_size_before b, counts;
\echo 'Schema sla by relation, bytes per ticket:'
SELECT c.relname, round(pg_relation_size(c.oid) / 200000.0, 1) AS "heap or index"
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'sla' AND c.relkind IN ('r', 'i') AND pg_relation_size(c.oid) > 200000
 ORDER BY pg_relation_size(c.oid) DESC;
\endif

\if :run_recompute
-- A calendar edit that moves the deadline of each of 500,000 open tickets
-- (the office opens an hour later), against an untracked UPDATE of the
-- same 500,000 rows; alternately, three times each.
TRUNCATE tickets_untracked, tickets_tracked, sla.clocks;
CALL fill_tickets(500000);
VACUUM ANALYZE tickets_untracked, tickets_tracked, sla.clocks;
CREATE PROCEDURE bench_recompute(runs int) LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
  opens text;
BEGIN
  SET LOCAL client_min_messages = warning;
  FOR i IN 1..runs LOOP
    SET LOCAL pg_sla.event_time = '2026-11-30 10:00Z';
    started := clock_timestamp();
    UPDATE tickets_untracked SET updated_at = updated_at + interval '1 second';
    INSERT INTO bench_samples VALUES ('recompute', 'untracked update', extract(epoch FROM clock_timestamp() - started) * 1000);
    COMMIT;
    SET LOCAL client_min_messages = warning;
    SET LOCAL pg_sla.event_time = '2026-11-30 10:00Z';
    opens := CASE WHEN i % 2 = 1 THEN '10:00' ELSE '09:00' END;
    started := clock_timestamp();
    UPDATE sla.calendars
       SET definition = jsonb_set(definition, '{hours}', (
             SELECT jsonb_object_agg(day, jsonb_build_array(opens || '-12:00', '13:00-17:00'))
               FROM unnest(ARRAY['mon', 'tue', 'wed', 'thu', 'fri']) day))
     WHERE name = 'office';
    INSERT INTO bench_samples VALUES ('recompute', 'calendar edit', extract(epoch FROM clock_timestamp() - started) * 1000);
    COMMIT;
  END LOOP;
END $$;
CALL bench_recompute(3);
\echo
\echo 'A calendar edit that moves the deadlines of 500,000 open tickets (median of 3 runs):'
WITH m AS (SELECT target, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
             FROM bench_samples WHERE measure = 'recompute' GROUP BY target)
SELECT round(u.ms::numeric) AS "untracked UPDATE of the rows, ms", round(e.ms::numeric) AS "calendar edit, ms",
       round((e.ms / u.ms)::numeric, 2) AS "edit / update (goal <= 1.5)"
  FROM m u, m e WHERE u.target = 'untracked update' AND e.target = 'calendar edit';
SELECT count(*) FILTER (WHERE sla_due_at IS NOT NULL) AS "tickets with a deadline" FROM tickets_tracked;
\endif
