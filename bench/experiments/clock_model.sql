-- Write-path experiment (docs/development.md, "The write path"): plain SQL,
-- no pg_sla. Run in a scratch database after bench/experiments/write_path.sql
-- (which defines bench_time).
\set ON_ERROR_STOP on
\pset footer off
SET jit = off; SET max_parallel_workers_per_gather = 0;
-- The clock model of issue 12 (a table per tracked table, the ticket's own
-- bigint key, small codes), with and without room for HOT updates.
DROP TABLE IF EXISTS c2, c3;
CREATE TABLE c2 (ticket_id bigint NOT NULL, sla_group smallint NOT NULL DEFAULT 0, metric smallint NOT NULL,
  cycle int NOT NULL, policy text NOT NULL, status smallint NOT NULL, started_at timestamptz NOT NULL,
  due_at timestamptz, warn_at timestamptz, release_at timestamptz, stopped_at timestamptz, breached_at timestamptz,
  paused_since timestamptz, paused_total interval NOT NULL DEFAULT '0', next_transition_at timestamptz,
  PRIMARY KEY (ticket_id, sla_group, metric, cycle));
CREATE INDEX c2_breached ON c2 (ticket_id) WHERE breached_at IS NOT NULL AND status IN (2, 3);
CREATE INDEX c2_next ON c2 (next_transition_at) WHERE next_transition_at IS NOT NULL;
INSERT INTO c2 SELECT g, 0, m, 1, 'desk', 0, now(), now() + interval '1 hour', NULL, NULL, NULL, NULL, NULL, '0', now() + interval '1 hour'
  FROM generate_series(1, 20000) g, unnest(ARRAY[1, 3]) m;
CREATE TABLE c3 (LIKE c2 INCLUDING ALL) WITH (fillfactor = 60);
INSERT INTO c3 SELECT * FROM c2;
VACUUM ANALYZE c2; VACUUM ANALYZE c3;
SELECT round(bench_time($q$ DO $d$ BEGIN
         UPDATE c2 SET status = CASE WHEN c2.metric = 1 THEN 4 ELSE c2.status END,
                      next_transition_at = CASE WHEN c2.metric = 1 THEN NULL ELSE c2.next_transition_at + interval '1 second' END
           FROM unnest(ARRAY(SELECT g::bigint FROM generate_series(1, 20000) g)) u(id)
          WHERE c2.ticket_id = u.id;
         RAISE EXCEPTION USING ERRCODE = 'P0001'; EXCEPTION WHEN SQLSTATE 'P0001' THEN NULL; END $d$ $q$)::numeric, 1)
       AS "40,000 clock writes in one statement, native keys",
       round(bench_time($q$ DO $d$ BEGIN
         UPDATE c3 SET status = CASE WHEN c3.metric = 1 THEN 4 ELSE c3.status END,
                      next_transition_at = CASE WHEN c3.metric = 1 THEN NULL ELSE c3.next_transition_at + interval '1 second' END
           FROM unnest(ARRAY(SELECT g::bigint FROM generate_series(1, 20000) g)) u(id)
          WHERE c3.ticket_id = u.id;
         RAISE EXCEPTION USING ERRCODE = 'P0001'; EXCEPTION WHEN SQLSTATE 'P0001' THEN NULL; END $d$ $q$)::numeric, 1)
       AS "the same, fillfactor 60",
       round(bench_time($q$ DO $d$ BEGIN
         UPDATE c3 SET status = CASE WHEN c3.metric = 1 THEN 4 ELSE c3.status END,
                      stopped_at = CASE WHEN c3.metric = 1 THEN now() END
           FROM unnest(ARRAY(SELECT g::bigint FROM generate_series(1, 20000) g)) u(id)
          WHERE c3.ticket_id = u.id;
         RAISE EXCEPTION USING ERRCODE = 'P0001'; EXCEPTION WHEN SQLSTATE 'P0001' THEN NULL; END $d$ $q$)::numeric, 1)
       AS "fillfactor 60, no indexed column changed (HOT)";
