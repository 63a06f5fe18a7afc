-- SLA engine benchmark: run by bench/engine.sh in a scratch cluster with a
-- release build of pg_sla. Prints figures measured in this one run.

\ir bench_time.sql
CREATE EXTENSION IF NOT EXISTS pg_sla;
INSERT INTO sla.calendars (name, definition) VALUES
  ('paris', '{"timezone": "Europe/Paris",
    "hours": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"], "wed": ["09:00-17:00"],
              "thu": ["09:00-17:00"], "fri": ["09:00-17:00"]},
    "holidays": ["2026-12-25", "2027-01-01", {"date": "2026-12-24", "hours": ["09:00-12:00"]}]}'),
  ('new_york', '{"timezone": "America/New_York",
    "hours": {"mon": ["08:00-20:00"], "tue": ["08:00-20:00"], "wed": ["08:00-20:00"],
              "thu": ["08:00-20:00"], "fri": ["08:00-20:00"]},
    "holidays": ["2026-11-26", "2026-12-25"]}');
INSERT INTO sla.policies (name, position, calendar, conditions, first_response, next_response,
                          resolution, warn_at, release_ownership_at, pause_statuses) VALUES
  ('urgent email', 1, 'paris', '{"priority": "urgent", "channel": "email"}', '30 minutes', '1 hour', '8 hours', 0.75, 0.5, '{waiting}'),
  ('urgent', 2, NULL, '{"priority": "urgent"}', '15 minutes', '30 minutes', '4 hours', 0.75, NULL, '{waiting}'),
  ('us team', 3, 'new_york', '{"team": "us"}', '2 hours', '4 hours', '3 days', 0.8, NULL, '{waiting}'),
  ('default', 4, 'paris', '{}', '4 hours', '8 hours', '5 days', 0.8, NULL, '{waiting}');

-- Two ticket tables, each twice (one copy tracked). "minimal": the mapped
-- columns, a subject and three indexes. "typical": what help desks store
-- (a description, requester and organisation, tags, updated_at) with the
-- indexes their screens need.
CREATE TABLE minimal_plain (
  id bigint PRIMARY KEY, subject text NOT NULL, priority text NOT NULL, channel text NOT NULL,
  team text NOT NULL, status text NOT NULL, assignee text, created_at timestamptz NOT NULL,
  last_customer_message_at timestamptz, last_agent_reply_at timestamptz,
  sla_policy text, sla_status text, sla_due_at timestamptz, sla_breached_at timestamptz);
CREATE INDEX ON minimal_plain (status);
CREATE INDEX ON minimal_plain (assignee);
CREATE INDEX ON minimal_plain (created_at);
CREATE TABLE minimal_tracked (LIKE minimal_plain INCLUDING ALL);
SELECT sla.track('minimal_tracked', assignee_column => 'assignee') \gset

CREATE TABLE typical_plain (
  id bigint PRIMARY KEY, subject text NOT NULL, description text NOT NULL,
  requester_id bigint NOT NULL, organization_id bigint, priority text NOT NULL,
  channel text NOT NULL, team text NOT NULL, status text NOT NULL, assignee text,
  tags text[] NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL, last_customer_message_at timestamptz,
  last_agent_reply_at timestamptz,
  sla_policy text, sla_status text, sla_due_at timestamptz, sla_breached_at timestamptz);
CREATE INDEX ON typical_plain (requester_id);
CREATE INDEX ON typical_plain (organization_id);
CREATE INDEX ON typical_plain (assignee, status);
CREATE INDEX ON typical_plain (team, status);
CREATE INDEX ON typical_plain (created_at);
CREATE INDEX ON typical_plain (updated_at);
CREATE TABLE typical_tracked (LIKE typical_plain INCLUDING ALL);
SELECT sla.track('typical_tracked', assignee_column => 'assignee') \gset

-- 100,000 tickets over one week of November 2026.
CREATE VIEW minimal_rows AS
SELECT g AS id, 'Order #' || g || ' has not arrived' AS subject,
       (ARRAY['low', 'normal', 'high', 'urgent'])[1 + g % 4] AS priority,
       (ARRAY['email', 'chat', 'phone'])[1 + g % 3] AS channel,
       (ARRAY['eu', 'us'])[1 + g % 2] AS team,
       'open' AS status, 'agent' || (g % 50) AS assignee,
       '2026-11-23'::timestamptz + (g % 604800) * interval '1 second' AS created_at
  FROM generate_series(1, 100000) g;
CREATE VIEW typical_rows AS
SELECT id, subject,
       'Hello, I ordered on ' || created_at::date || ' and the parcel has still not arrived. '
         || repeat('The tracking page says it left the warehouse but nothing since. ', 5) AS description,
       id % 20000 AS requester_id, id % 700 AS organization_id, priority, channel, team, status,
       assignee, ARRAY['shipping', channel] AS tags, created_at, created_at AS updated_at
  FROM minimal_rows;

CREATE TABLE bench_samples (measure text, ms float8);

-- Each run empties the tables, then times one 100,000-row INSERT into each,
-- each in its own transaction, in an order that rotates between runs.
CREATE PROCEDURE bench_inserts(runs int) LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
  tables text[] := ARRAY['minimal_plain', 'minimal_tracked', 'typical_plain', 'typical_tracked'];
  target text;
BEGIN
  FOR i IN 0..runs LOOP
    FOR k IN 0..3 LOOP
      target := tables[1 + (i + k) % 4];
      TRUNCATE sla.clocks;
      EXECUTE format('TRUNCATE %I', target);
      COMMIT;
      started := clock_timestamp();
      EXECUTE format('INSERT INTO %I SELECT * FROM %I', target,
                     CASE WHEN target LIKE 'minimal%' THEN 'minimal_rows' ELSE 'typical_rows' END);
      COMMIT;
      IF i > 0 THEN  -- run 0 warms caches up
        INSERT INTO bench_samples VALUES (target, extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      COMMIT;
    END LOOP;
  END LOOP;
END $$;
CALL bench_inserts(7);
TRUNCATE sla.clocks;
TRUNCATE minimal_tracked;
INSERT INTO minimal_tracked SELECT * FROM minimal_rows;
SELECT count(*) AS clocks_per_100k FROM sla.clocks \gset

\echo
\echo 'Inserting 100,000 tickets in one statement (median of 7 runs):'
WITH m AS (SELECT measure, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
             FROM bench_samples GROUP BY measure)
SELECT t.shape AS "ticket table",
       round(p.ms::numeric, 1) AS "untracked ms", round(tr.ms::numeric, 1) AS "tracked ms",
       round((tr.ms / p.ms)::numeric, 2) AS "tracked / untracked (goal <= 2.5)",
       round(((tr.ms - p.ms) / 100)::numeric, 1) AS "added µs per ticket"
  FROM (VALUES ('typical'), ('minimal')) t(shape)
  JOIN m p ON p.measure = t.shape || '_plain'
  JOIN m tr ON tr.measure = t.shape || '_tracked';
\echo 'Clocks written per 100,000 tickets:' :clocks_per_100k

-- The same tickets one INSERT statement at a time, as applications write
-- them: 10,000 statements per run, each firing the statement triggers.
CREATE TABLE bench_single (measure text, ms float8);
CREATE PROCEDURE bench_single_inserts(runs int) LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
  target text;
  r record;
BEGIN
  FOR i IN 0..runs LOOP
    FOREACH target IN ARRAY CASE WHEN i % 2 = 0 THEN ARRAY['minimal_plain', 'minimal_tracked']
                                 ELSE ARRAY['minimal_tracked', 'minimal_plain'] END LOOP
      TRUNCATE sla.clocks;
      EXECUTE format('TRUNCATE %I', target);
      COMMIT;
      started := clock_timestamp();
      FOR r IN SELECT * FROM minimal_rows LIMIT 10000 LOOP
        IF target = 'minimal_plain' THEN
          INSERT INTO minimal_plain (id, subject, priority, channel, team, status, assignee, created_at)
          VALUES (r.id, r.subject, r.priority, r.channel, r.team, r.status, r.assignee, r.created_at);
        ELSE
          INSERT INTO minimal_tracked (id, subject, priority, channel, team, status, assignee, created_at)
          VALUES (r.id, r.subject, r.priority, r.channel, r.team, r.status, r.assignee, r.created_at);
        END IF;
      END LOOP;
      COMMIT;
      IF i > 0 THEN
        INSERT INTO bench_single VALUES (target, extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      COMMIT;
    END LOOP;
  END LOOP;
END $$;
CALL bench_single_inserts(5);
\echo 'Inserting 10,000 tickets one statement each (minimal table, median of 5 runs):'
WITH m AS (SELECT measure, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
             FROM bench_single GROUP BY measure)
SELECT round(p.ms::numeric, 1) AS "untracked ms", round(t.ms::numeric, 1) AS "tracked ms",
       round((t.ms / p.ms)::numeric, 2) AS "tracked / untracked",
       round(((t.ms - p.ms) / 10)::numeric, 1) AS "added µs per ticket"
  FROM m p, m t WHERE p.measure = 'minimal_plain' AND t.measure = 'minimal_tracked';

-- Updates that move clocks (an agent's reply stops the first response): one
-- statement per ticket, as applications write them, then one statement for
-- all. Each run starts from 10,000 fresh tickets in both tables.
CREATE TABLE bench_update (measure text, ms float8);
CREATE PROCEDURE bench_updates(runs int) LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
  target text;
  r record;
BEGIN
  FOR i IN 0..runs LOOP
    FOREACH target IN ARRAY CASE WHEN i % 2 = 0 THEN ARRAY['minimal_plain', 'minimal_tracked']
                                 ELSE ARRAY['minimal_tracked', 'minimal_plain'] END LOOP
      TRUNCATE sla.clocks;
      EXECUTE format('TRUNCATE %I', target);
      EXECUTE format('INSERT INTO %I (id, subject, priority, channel, team, status, assignee, created_at)
                      SELECT id, subject, priority, channel, team, status, assignee, created_at
                        FROM minimal_rows LIMIT 10000', target);
      COMMIT;
      started := clock_timestamp();
      FOR r IN SELECT id, created_at FROM minimal_rows LIMIT 10000 LOOP
        EXECUTE format('UPDATE %I SET last_agent_reply_at = $2 WHERE id = $1', target)
          USING r.id, r.created_at + interval '10 minutes';
      END LOOP;
      COMMIT;
      IF i > 0 THEN
        INSERT INTO bench_update VALUES (target || ' single', extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      started := clock_timestamp();
      EXECUTE format('UPDATE %I SET status = %L', target, 'waiting');
      COMMIT;
      IF i > 0 THEN
        INSERT INTO bench_update VALUES (target || ' bulk', extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      COMMIT;
    END LOOP;
  END LOOP;
END $$;
CALL bench_updates(5);
\echo
\echo 'Updating 10,000 tickets that have clocks (minimal table, median of 5 runs):'
WITH m AS (SELECT measure, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
             FROM bench_update GROUP BY measure)
SELECT k.kind AS "updates", round(p.ms::numeric, 1) AS "untracked ms", round(t.ms::numeric, 1) AS "tracked ms",
       round((t.ms / p.ms)::numeric, 2) AS "tracked / untracked",
       round(((t.ms - p.ms) / 10)::numeric, 1) AS "added µs per ticket"
  FROM (VALUES ('single'), ('bulk')) k(kind)
  JOIN m p ON p.measure = 'minimal_plain ' || k.kind
  JOIN m t ON t.measure = 'minimal_tracked ' || k.kind;

-- 1,000,000 open clocks, nothing due: 500,000 tickets created "now".
TRUNCATE minimal_tracked;
TRUNCATE sla.clocks;
INSERT INTO minimal_tracked (id, subject, priority, channel, team, status, assignee, created_at)
SELECT g, 'Ticket ' || g, (ARRAY['low', 'normal', 'high', 'urgent'])[1 + g % 4],
       (ARRAY['email', 'chat', 'phone'])[1 + g % 3], (ARRAY['eu', 'us'])[1 + g % 2], 'open',
       'agent' || (g % 50), '2026-11-23 10:00'::timestamptz + (g % 3600) * interval '1 second'
  FROM generate_series(1, 500000) g;
VACUUM ANALYZE sla.clocks;
VACUUM ANALYZE minimal_tracked;
SELECT count(*) AS open_clocks FROM sla.clocks WHERE status IN ('running', 'due_soon', 'breached', 'paused') \gset


\echo
\echo 'Due processing with nothing due (median of 50 calls):'
SELECT :open_clocks AS "open clocks",
       round(bench_time($q$SELECT sla.process_due('2026-11-23 09:00')$q$, 50)::numeric, 3) AS "process_due ms (goal < 5)",
       round(bench_time($q$SELECT count(*) FROM sla.clocks WHERE status = 'running'$q$, 5)::numeric, 1) AS "for scale: one scan of sla.clocks, ms";

-- A policy edit recomputes every ticket not closed, in the same transaction.
SELECT count(*) AS open_tickets FROM minimal_tracked \gset
SELECT clock_timestamp() AS edit_started \gset
UPDATE sla.policies SET warn_at = 0.7 WHERE name = 'us team';
\echo
\echo 'Editing a policy with every ticket open:'
SELECT :open_tickets AS "open tickets",
       round(extract(epoch FROM clock_timestamp() - :'edit_started'::timestamptz)::numeric, 1) AS "seconds";

-- Many transitions due: replay time one week on, in batches of 10,000, each
-- batch its own transaction, as the worker runs it.
CREATE TABLE bench_rate (transitions bigint, ms float8);
CREATE PROCEDURE bench_due(batches int) LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
  applied bigint := 0;
BEGIN
  started := clock_timestamp();
  FOR i IN 1..batches LOOP
    applied := applied + sla.process_due('2026-11-30 12:00', 10000);
    COMMIT;
  END LOOP;
  INSERT INTO bench_rate VALUES (applied, extract(epoch FROM clock_timestamp() - started) * 1000);
END $$;
CALL bench_due(20);
\echo
\echo 'Applying due transitions (20 batches of up to 10,000 clocks):'
SELECT transitions, round(ms::numeric, 0) AS ms,
       round((transitions / (ms / 1000))::numeric, 0) AS "transitions per second (goal >= 20000)",
       (SELECT count(*) FROM sla.notifications) AS notifications
  FROM bench_rate;
