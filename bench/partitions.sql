-- Partitioned-table benchmark: run by bench/partitions.sh in a scratch
-- cluster with a release build of pg_sla. The same writes to a tracked
-- ticket table partitioned by month and to a tracked plain table: 20,000
-- tickets in one INSERT, one UPDATE of all of them (an agent reply and a
-- status), then 2,000 single-row INSERTs and UPDATEs. Untracked copies of
-- both give the cost of partitioning itself.

\ir bench_time.sql
CREATE EXTENSION IF NOT EXISTS pg_sla;
INSERT INTO sla.policies (name, first_response, next_response, resolution, pause_statuses)
VALUES ('desk', '1 hour', '30 minutes', '1 day', '{pending}');

CREATE TABLE plain_untracked (
  id bigint PRIMARY KEY, created_at timestamptz NOT NULL, status text NOT NULL DEFAULT 'open',
  priority text NOT NULL DEFAULT 'normal', team text, assignee_id int, subject text,
  last_customer_message_at timestamptz, last_agent_reply_at timestamptz,
  sla_policy text, sla_status text, sla_due_at timestamptz, sla_breached_at timestamptz);
CREATE INDEX ON plain_untracked (status);
CREATE INDEX ON plain_untracked (assignee_id);
CREATE TABLE plain_tracked (LIKE plain_untracked INCLUDING ALL);
SELECT sla.track('plain_tracked') \gset

CREATE TABLE part_untracked (
  id bigint NOT NULL, created_at timestamptz NOT NULL, status text NOT NULL DEFAULT 'open',
  priority text NOT NULL DEFAULT 'normal', team text, assignee_id int, subject text,
  last_customer_message_at timestamptz, last_agent_reply_at timestamptz,
  sla_policy text, sla_status text, sla_due_at timestamptz, sla_breached_at timestamptz,
  PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE INDEX ON part_untracked (status);
CREATE INDEX ON part_untracked (assignee_id);
CREATE TABLE part_tracked (LIKE part_untracked INCLUDING ALL) PARTITION BY RANGE (created_at);
SELECT format('CREATE TABLE %s_%s PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
              t, to_char(m, 'YYYY_MM'), t, m, m + interval '1 month')
  FROM unnest(ARRAY['part_untracked', 'part_tracked']) t,
       generate_series('2026-01-01Z'::timestamptz, '2026-12-01Z', interval '1 month') m \gexec
SELECT sla.track('part_tracked') \gset

-- 20,000 tickets over the year, in id order.
CREATE VIEW ticket_rows AS
SELECT g AS id, '2026-01-01Z'::timestamptz + (g - 1) * interval '26 minutes' AS created_at
  FROM generate_series(1, 20000) g;

CREATE TABLE bench_samples (measure text, target text, ms float8);
CREATE PROCEDURE bench_writes(runs int) LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
  target text;
  targets text[] := ARRAY['plain_untracked', 'plain_tracked', 'part_untracked', 'part_tracked'];
BEGIN
  SET LOCAL pg_sla.event_time = '2026-12-31Z';
  FOR i IN 0..runs LOOP
    -- Alternate the order from run to run.
    IF i % 2 = 1 THEN
      targets := ARRAY(SELECT targets[5 - k] FROM generate_series(1, 4) k);
    END IF;
    FOREACH target IN ARRAY targets LOOP
      EXECUTE format('TRUNCATE %s', target);
      COMMIT;
      SET LOCAL pg_sla.event_time = '2026-12-31Z';
      started := clock_timestamp();
      EXECUTE format('INSERT INTO %s (id, created_at, subject)
                      SELECT id, created_at, ''Order not delivered'' FROM ticket_rows', target);
      COMMIT;
      IF i > 0 THEN
        INSERT INTO bench_samples VALUES ('insert 20,000 in one statement', target,
                                          extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      COMMIT;
      SET LOCAL pg_sla.event_time = '2026-12-31 01:00Z';
      started := clock_timestamp();
      EXECUTE format('UPDATE %s SET last_agent_reply_at = ''2026-12-31 01:00Z'', status = ''pending''',
                     target);
      COMMIT;
      IF i > 0 THEN
        INSERT INTO bench_samples VALUES ('update 20,000 in one statement', target,
                                          extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      COMMIT;
      SET LOCAL pg_sla.event_time = '2026-12-31 02:00Z';
      started := clock_timestamp();
      FOR k IN 20001..22000 LOOP
        EXECUTE format('INSERT INTO %s (id, created_at, subject) VALUES ($1, $2, ''Refund'')', target)
          USING k, '2026-01-01Z'::timestamptz + (k % 20000) * interval '26 minutes';
      END LOOP;
      COMMIT;
      IF i > 0 THEN
        INSERT INTO bench_samples VALUES ('2,000 single-row inserts', target,
                                          extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      COMMIT;
      SET LOCAL pg_sla.event_time = '2026-12-31 03:00Z';
      started := clock_timestamp();
      FOR k IN 1..2000 LOOP
        EXECUTE format('UPDATE %s SET last_customer_message_at = ''2026-12-31 03:00Z'', status = ''open''
                         WHERE id = $1', target)
          USING k * 10;
      END LOOP;
      COMMIT;
      IF i > 0 THEN
        INSERT INTO bench_samples VALUES ('2,000 single-row updates', target,
                                          extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      COMMIT;
    END LOOP;
  END LOOP;
END $$;
CALL bench_writes(3);

\echo
\echo 'Writes to a table partitioned by month (12 partitions) and to a plain table, median of 3 runs (ms):'
WITH m AS (SELECT measure, target, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
             FROM bench_samples GROUP BY measure, target)
SELECT pu.measure,
       round(pu.ms::numeric, 1) AS "plain untracked", round(pt.ms::numeric, 1) AS "plain tracked",
       round(qu.ms::numeric, 1) AS "partitioned untracked", round(qt.ms::numeric, 1) AS "partitioned tracked",
       round((qt.ms / pt.ms)::numeric, 2) AS "partitioned / plain, tracked (goal <= 1.2)",
       round((qu.ms / pu.ms)::numeric, 2) AS "partitioned / plain, untracked"
  FROM m pu
  JOIN m pt ON pt.measure = pu.measure AND pt.target = 'plain_tracked'
  JOIN m qu ON qu.measure = pu.measure AND qu.target = 'part_untracked'
  JOIN m qt ON qt.measure = pu.measure AND qt.target = 'part_tracked'
 WHERE pu.target = 'plain_untracked'
 ORDER BY pu.measure DESC;
SELECT count(*) AS "clocks of the partitioned table"
  FROM sla.clocks WHERE ticket_table::oid = 'part_tracked'::regclass::oid;
