-- Calendar arithmetic benchmark: run by bench/calendar.sh inside a scratch
-- cluster with pg_sla installed from a release build. Prints ratios measured
-- in this one run; absolute times are only context.
\ir bench_time.sql

CREATE EXTENSION IF NOT EXISTS pg_sla;
INSERT INTO sla.calendars (name, definition) VALUES ('paris', '{
  "timezone": "Europe/Paris",
  "hours": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"], "wed": ["09:00-17:00"],
            "thu": ["09:00-17:00"], "fri": ["09:00-17:00"]},
  "holidays": ["2026-01-01", "2026-04-06", "2026-05-01", "2026-05-08", "2026-05-14",
               "2026-05-25", "2026-07-14", "2026-08-15", "2026-11-01", "2026-11-11",
               "2026-12-25", "2027-01-01", {"date": "2026-12-24", "hours": ["09:00-12:00"]}]
}') ON CONFLICT (name) DO NOTHING;

-- 1,000,000 instants spread over 2026.
DROP TABLE IF EXISTS bench_ts;
CREATE TABLE bench_ts AS
SELECT '2026-01-01'::timestamptz + (random() * 365 * 86400) * interval '1 second' AS ts
FROM generate_series(1, 1000000);
VACUUM ANALYZE bench_ts;

-- The same calendar written by hand, day by day, as people do in PL/pgSQL.
DROP TABLE IF EXISTS bench_holidays;
CREATE TABLE bench_holidays (day date PRIMARY KEY);
INSERT INTO bench_holidays
SELECT value::date FROM jsonb_array_elements_text(
  (SELECT definition->'holidays' FROM sla.calendars WHERE name = 'paris')) WHERE value LIKE '____-__-__';

CREATE OR REPLACE FUNCTION bench_plpgsql_add(start_ts timestamptz, duration interval)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
  zone constant text := 'Europe/Paris';
  remaining interval := duration;
  cursor_ts timestamp := start_ts AT TIME ZONE zone;
  d date := cursor_ts::date;
  opens timestamp;
  closes timestamp;
BEGIN
  LOOP
    IF extract(isodow FROM d) BETWEEN 1 AND 5
       AND NOT EXISTS (SELECT 1 FROM bench_holidays h WHERE h.day = d) THEN
      closes := d + CASE WHEN d = '2026-12-24' THEN time '12:00' ELSE time '17:00' END;
      opens := greatest(d + time '09:00', cursor_ts);
      IF opens < closes THEN
        IF remaining <= closes - opens THEN
          RETURN (opens + remaining) AT TIME ZONE zone;
        END IF;
        remaining := remaining - (closes - opens);
      END IF;
    END IF;
    d := d + 1;
    cursor_ts := d::timestamp;
  END LOOP;
END $$;


CREATE TEMP TABLE results AS
SELECT
  bench_time($q$SELECT max(ts + interval '1 hour') FROM bench_ts$q$) AS plain_1m,
  bench_time($q$SELECT max(sla.add_business_time('paris', ts, interval '1 hour')) FROM bench_ts$q$) AS ext_1h_1m,
  bench_time($q$SELECT max(sla.add_business_time('paris', ts, interval '2000 hours')) FROM bench_ts$q$) AS ext_2000h_1m,
  bench_time($q$SELECT max(sla.business_time_between('paris', ts, ts + interval '30 days')) FROM bench_ts$q$) AS ext_between_1m,
  bench_time($q$SELECT max(sla.add_business_time((SELECT definition FROM sla.calendars WHERE name = 'paris'), ts, interval '1 hour')) FROM bench_ts$q$) AS ext_inline_1h_1m,
  bench_time($q$SELECT max(bench_plpgsql_add(ts, interval '1 hour')) FROM (SELECT ts FROM bench_ts LIMIT 10000) s$q$, 3) AS plpgsql_1h_10k,
  bench_time($q$SELECT max(sla.add_business_time('paris', ts, interval '1 hour')) FROM (SELECT ts FROM bench_ts LIMIT 10000) s$q$, 3) AS ext_1h_10k,
  bench_time($q$SELECT max(bench_plpgsql_add(ts, interval '2000 hours')) FROM (SELECT ts FROM bench_ts LIMIT 1000) s$q$, 3) AS plpgsql_2000h_1k,
  bench_time($q$SELECT max(sla.add_business_time('paris', ts, interval '2000 hours')) FROM (SELECT ts FROM bench_ts LIMIT 1000) s$q$, 3) AS ext_2000h_1k;

-- The hand-written version must agree with the extension, or the comparison means nothing.
SELECT count(*) AS plpgsql_disagreements
FROM (SELECT ts FROM bench_ts LIMIT 2000) s
WHERE bench_plpgsql_add(ts, interval '1 hour') <> sla.add_business_time('paris', ts, interval '1 hour')
\gset
\if :plpgsql_disagreements
  \echo 'PL/pgSQL baseline disagrees with pg_sla on' :plpgsql_disagreements 'rows'
  SELECT 1/0;
\endif

\echo
\echo 'Times (median ms):'
SELECT round(plain_1m::numeric, 1) AS "ts + interval, 1M rows",
       round(ext_1h_1m::numeric, 1) AS "add_business_time 1h, 1M rows",
       round(ext_2000h_1m::numeric, 1) AS "add_business_time 2000h, 1M rows",
       round(ext_between_1m::numeric, 1) AS "business_time_between 30d, 1M rows",
       round(ext_inline_1h_1m::numeric, 1) AS "add_business_time(jsonb) 1h, 1M rows"
FROM results;
\echo 'Ratios:'
SELECT round((ext_1h_1m / plain_1m)::numeric, 2) AS "add_business_time(name) / ts+interval (goal <= 3)",
       round((ext_2000h_1m / ext_1h_1m)::numeric, 2) AS "2000h / 1h (goal <= 3)",
       round((ext_inline_1h_1m / plain_1m)::numeric, 2) AS "add_business_time(jsonb) / ts+interval",
       round((plpgsql_1h_10k / ext_1h_10k)::numeric, 0) AS "PL/pgSQL day-by-day / pg_sla, 1h",
       round((plpgsql_2000h_1k / ext_2000h_1k)::numeric, 0) AS "PL/pgSQL day-by-day / pg_sla, 2000h"
FROM results;
