-- Write-path experiment (docs/development.md, "The write path"): plain SQL,
-- no pg_sla, in a scratch database: psql -f bench/experiments/write_path.sql
\set ON_ERROR_STOP on
\pset footer off
SET jit = off; SET max_parallel_workers_per_gather = 0; SET TimeZone = 'UTC';
\ir ../bench_time.sql
-- A typical help-desk table (ten columns, three secondary indexes) and a
-- clock table shaped like sla.clocks today (text key, three indexes).
DROP TABLE IF EXISTS t, c;
CREATE TABLE t (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, status text NOT NULL DEFAULT 'open',
  priority text NOT NULL DEFAULT 'normal', team text, assignee_id int, subject text,
  last_customer_message_at timestamptz, last_agent_reply_at timestamptz, updated_at timestamptz,
  sla_policy text, sla_status text, sla_due_at timestamptz, sla_breached_at timestamptz);
CREATE INDEX ON t (status); CREATE INDEX ON t (assignee_id); CREATE INDEX ON t (team, created_at);
INSERT INTO t (id, created_at, team, assignee_id, subject, sla_policy, sla_status, sla_due_at)
SELECT g, '2026-12-01Z'::timestamptz + g * interval '1 minute', 'team' || g % 7, g % 50, 'Order not delivered', 'desk', 'running', now()
  FROM generate_series(1, 20000) g;
CREATE TABLE c (ticket_table regclass NOT NULL, ticket_id text COLLATE "C" NOT NULL, metric text COLLATE "C" NOT NULL,
  cycle int NOT NULL, policy text NOT NULL, status text NOT NULL, started_at timestamptz NOT NULL,
  due_at timestamptz, warn_at timestamptz, release_at timestamptz, stopped_at timestamptz, breached_at timestamptz,
  paused_since timestamptz, paused_total interval NOT NULL DEFAULT '0', next_transition_at timestamptz,
  PRIMARY KEY (ticket_table, ticket_id, metric, cycle));
CREATE INDEX c_breached ON c (ticket_table, ticket_id) WHERE breached_at IS NOT NULL AND status IN ('breached', 'paused');
CREATE INDEX c_next ON c (next_transition_at) WHERE next_transition_at IS NOT NULL;
INSERT INTO c SELECT 't'::regclass, g::text, m, 1, 'desk', 'running', now(), now() + interval '1 hour', NULL, NULL, NULL, NULL, NULL, '0', now() + interval '1 hour'
  FROM generate_series(1, 20000) g, unnest(ARRAY['first_response', 'resolution']) m;
VACUUM ANALYZE t; VACUUM ANALYZE c;

CREATE FUNCTION per_row_reads() RETURNS void LANGUAGE plpgsql AS $$
DECLARE n int;
BEGIN
  FOR i IN 1..20000 LOOP
    SELECT count(*) INTO n FROM c WHERE ticket_table = 't'::regclass AND ticket_id = i::text;
  END LOOP;
END $$;
CREATE FUNCTION per_row_writes() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..20000 LOOP
    UPDATE c SET status = 'achieved', stopped_at = now(), next_transition_at = NULL
     WHERE ticket_table = 't'::regclass AND ticket_id = i::text AND metric = 'first_response' AND cycle = 1;
    UPDATE c SET next_transition_at = next_transition_at + interval '1 second'
     WHERE ticket_table = 't'::regclass AND ticket_id = i::text AND metric = 'resolution' AND cycle = 1;
  END LOOP;
END $$;

\echo 'Each measure in a rolled-back transaction, median of 5 (ms):'
SELECT round(bench_time($q$ DO $d$ BEGIN
         UPDATE t SET last_agent_reply_at = now(), status = 'pending';
         RAISE EXCEPTION USING ERRCODE = 'P0001'; EXCEPTION WHEN SQLSTATE 'P0001' THEN NULL; END $d$ $q$)::numeric, 1)
       AS "app UPDATE of 20,000 (untracked)",
       round(bench_time($q$ DO $d$ BEGIN
         UPDATE t SET last_agent_reply_at = now(), status = 'pending';
         UPDATE t SET sla_status = u.s, sla_due_at = u.d
           FROM unnest(ARRAY(SELECT g::bigint FROM generate_series(1, 20000) g),
                       ARRAY(SELECT 'paused' FROM generate_series(1, 20000)),
                       ARRAY(SELECT now() + interval '2 hours' FROM generate_series(1, 20000))) AS u(id, s, d)
          WHERE t.id = u.id;
         RAISE EXCEPTION USING ERRCODE = 'P0001'; EXCEPTION WHEN SQLSTATE 'P0001' THEN NULL; END $d$ $q$)::numeric, 1)
       AS "the same plus a second set-based write of sla_*",
       round(bench_time($q$ DO $d$ BEGIN PERFORM per_row_reads();
         RAISE EXCEPTION USING ERRCODE = 'P0001'; EXCEPTION WHEN SQLSTATE 'P0001' THEN NULL; END $d$ $q$)::numeric, 1)
       AS "20,000 clock reads, one query each",
       round(bench_time($q$ DO $d$ DECLARE n int; BEGIN
         SELECT count(*) INTO n FROM unnest(ARRAY(SELECT g::text FROM generate_series(1, 20000) g)) u(id),
           LATERAL (SELECT * FROM c WHERE ticket_table = 't'::regclass AND ticket_id = u.id OFFSET 0) x;
         RAISE EXCEPTION USING ERRCODE = 'P0001'; EXCEPTION WHEN SQLSTATE 'P0001' THEN NULL; END $d$ $q$)::numeric, 1)
       AS "the same reads in one query",
       round(bench_time($q$ DO $d$ BEGIN PERFORM per_row_writes();
         RAISE EXCEPTION USING ERRCODE = 'P0001'; EXCEPTION WHEN SQLSTATE 'P0001' THEN NULL; END $d$ $q$)::numeric, 1)
       AS "40,000 clock writes, one statement each",
       round(bench_time($q$ DO $d$ BEGIN
         UPDATE c SET status = CASE WHEN c.metric = 'first_response' THEN 'achieved' ELSE c.status END,
                      next_transition_at = CASE WHEN c.metric = 'first_response' THEN NULL ELSE c.next_transition_at + interval '1 second' END
           FROM unnest(ARRAY(SELECT g::text FROM generate_series(1, 20000) g)) u(id)
          WHERE c.ticket_table = 't'::regclass AND c.ticket_id = u.id;
         RAISE EXCEPTION USING ERRCODE = 'P0001'; EXCEPTION WHEN SQLSTATE 'P0001' THEN NULL; END $d$ $q$)::numeric, 1)
       AS "the same writes in one statement";
