-- bench_time(query, runs): the median time of a query, in milliseconds,
-- over `runs` runs after one warm-up run. Included by the benchmark scripts.
CREATE FUNCTION bench_time(query text, runs int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
  samples float8[] := '{}';
BEGIN
  EXECUTE query;
  FOR i IN 1..runs LOOP
    started := clock_timestamp();
    EXECUTE query;
    samples := samples || extract(epoch FROM clock_timestamp() - started) * 1000;
  END LOOP;
  RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s) FROM unnest(samples) s);
END $$;
