-- Shared by the benchmark scripts (\ir bench_time.sql): their session
-- settings, and bench_time(query, runs), the median wall time in ms of
-- `runs` executions of a query after one warm-up run.
\set ON_ERROR_STOP on
\pset footer off
SET max_parallel_workers_per_gather = 0;
SET jit = off;
SET TimeZone = 'UTC';

CREATE OR REPLACE FUNCTION bench_time(query text, runs int DEFAULT 5)
RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
  samples float8[] := '{}';
BEGIN
  EXECUTE query;  -- warm-up: caches, calendar chunks, buffers
  FOR i IN 1..runs LOOP
    started := clock_timestamp();
    EXECUTE query;
    samples := samples || extract(epoch FROM clock_timestamp() - started) * 1000;
  END LOOP;
  RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s) FROM unnest(samples) s);
END $$;
