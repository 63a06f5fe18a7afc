-- Single-row UPDATEs, 10,000 statements, with the clock changes written by
-- the statement trigger zz_pg_sla_updated (deferred) and, that trigger
-- disabled, by the row trigger per ticket as before: one build, one run,
-- alternated. Run in a scratch database with pg_sla installed.
\set ON_ERROR_STOP on
\ir ../bench_time.sql
CREATE EXTENSION pg_sla;
INSERT INTO sla.policies (name, first_response, next_response, resolution) VALUES ('desk', '1 hour', '30 minutes', '1 day');
CREATE TABLE t (id bigint PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), status text NOT NULL DEFAULT 'open',
  last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
SELECT sla.track('t') \gset
INSERT INTO t (id) SELECT g FROM generate_series(1, 10000) g;
CREATE PROCEDURE single_updates() LANGUAGE plpgsql AS $$
BEGIN
  FOR k IN 1..10000 LOOP
    EXECUTE 'UPDATE t SET last_customer_message_at = clock_timestamp(), last_agent_reply_at = NULL WHERE id = $1' USING k;
  END LOOP;
END $$;
CREATE TABLE samples (mode text, ms float8);
CREATE PROCEDURE ab(runs int) LANGUAGE plpgsql AS $$
DECLARE started timestamptz;
BEGIN
  FOR i IN 1..runs LOOP
    FOR m IN 0..1 LOOP
      IF (i + m) % 2 = 0 THEN
        ALTER TABLE t ENABLE TRIGGER zz_pg_sla_updated;
      ELSE
        ALTER TABLE t DISABLE TRIGGER zz_pg_sla_updated;
      END IF;
      COMMIT;
      started := clock_timestamp();
      CALL single_updates();
      COMMIT;
      INSERT INTO samples VALUES (CASE WHEN (i + m) % 2 = 0 THEN 'deferred' ELSE 'per ticket' END,
                                  extract(epoch FROM clock_timestamp() - started) * 1000);
      COMMIT;
    END LOOP;
  END LOOP;
END $$;
CALL ab(6);
SELECT mode, round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1) AS median_ms, round(min(ms)::numeric,1) AS min_ms, round(max(ms)::numeric,1) AS max_ms
  FROM samples GROUP BY mode ORDER BY mode;
