-- Reporting benchmark: run by bench/report.sh in a scratch cluster with a
-- release build of pg_sla. 1,000,000 clocks of 500,000 tickets over November;
-- each figure is a median, printed with its ratio to a baseline measured in
-- this run: the same aggregates over wall-clock durations, which a report
-- without business hours would compute.

\ir bench_time.sql
CREATE EXTENSION IF NOT EXISTS pg_sla;
INSERT INTO sla.calendars (name, definition) VALUES
  ('paris', '{"timezone": "Europe/Paris",
    "hours": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"], "wed": ["09:00-17:00"],
              "thu": ["09:00-17:00"], "fri": ["09:00-17:00"]},
    "holidays": ["2026-11-11", {"date": "2026-11-27", "hours": ["09:00-12:00"]}]}'),
  ('new_york', '{"timezone": "America/New_York",
    "hours": {"mon": ["08:00-20:00"], "tue": ["08:00-20:00"], "wed": ["08:00-20:00"],
              "thu": ["08:00-20:00"], "fri": ["08:00-20:00"]},
    "holidays": ["2026-11-26"]}');
INSERT INTO sla.policies (name, position, calendar, conditions, first_response, resolution) VALUES
  ('urgent', 1, NULL, '{"priority": "urgent"}', '15 minutes', '4 hours'),
  ('us team', 2, 'new_york', '{"team": "us"}', '2 hours', '3 days'),
  ('default', 3, 'paris', '{}', '4 hours', '5 days');
CREATE TABLE tickets (
  id bigint PRIMARY KEY, priority text NOT NULL, channel text NOT NULL, team text NOT NULL,
  status text NOT NULL, created_at timestamptz NOT NULL,
  last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
SELECT sla.track('tickets') \gset

-- The clocks are written directly (the engine's own speed is bench/engine.sh's
-- business): what matters here is what the report reads.
SET session_replication_role = replica;
INSERT INTO tickets (id, priority, channel, team, status, created_at)
SELECT g, (ARRAY['low', 'normal', 'high', 'urgent'])[1 + g % 4], (ARRAY['email', 'chat', 'phone'])[1 + g % 3],
       (ARRAY['eu', 'us'])[1 + g / 7 % 2], 'open',
       '2026-11-01'::timestamptz + (g * 5.1839) * interval '1 second'
  FROM generate_series(1, 500000) g;
RESET session_replication_role;
SELECT setseed(0.42);
INSERT INTO sla.clocks (ticket_table, ticket_id, metric, cycle, policy, status, started_at, target,
                        due_at, stopped_at, breached_at)
SELECT 'tickets'::regclass, t.id::text, m.metric, 1, p.policy, s.status, t.created_at, m.target,
       t.created_at + m.target,
       CASE WHEN s.status IN ('achieved', 'missed', 'cancelled') THEN t.created_at + r.took END,
       CASE WHEN s.status IN ('missed', 'breached') THEN t.created_at + m.target END
  FROM tickets t
  CROSS JOIN (VALUES ('first_response', interval '4 hours'), ('resolution', interval '3 days')) AS m(metric, target)
  CROSS JOIN LATERAL (SELECT CASE WHEN t.priority = 'urgent' THEN 'urgent'
                                  WHEN t.team = 'us' THEN 'us team' ELSE 'default' END AS policy) p
  -- Refers to the row, so that it is drawn again for each clock.
  CROSS JOIN LATERAL (SELECT random() + 0 * t.id AS x, (random() + 0 * t.id) * interval '60 hours' AS took) r
  CROSS JOIN LATERAL (SELECT CASE WHEN r.x < 0.60 THEN 'achieved' WHEN r.x < 0.75 THEN 'missed'
                                  WHEN r.x < 0.80 THEN 'cancelled' WHEN r.x < 0.90 THEN 'running'
                                  ELSE 'breached' END AS status) s;
VACUUM ANALYZE sla.clocks;
VACUUM ANALYZE tickets;
SELECT count(*) AS clocks FROM sla.clocks \gset


CREATE TABLE bench_report (measure text, ms float8);
INSERT INTO bench_report VALUES
  ('baseline', bench_time($q$
     SELECT policy, metric, count(*), count(*) FILTER (WHERE status = 'achieved'),
            avg(stopped_at - started_at), percentile_cont(0.5) WITHIN GROUP (ORDER BY stopped_at - started_at),
            percentile_cont(0.9) WITHIN GROUP (ORDER BY stopped_at - started_at)
       FROM sla.clocks WHERE started_at >= '2026-11-01' AND started_at < '2026-12-01'
         AND status IN ('achieved', 'missed') GROUP BY 1, 2$q$, 3)),
  ('report', bench_time($q$SELECT * FROM sla.report('2026-11-01', '2026-12-01')$q$, 3)),
  ('baseline by team', bench_time($q$
     SELECT c.policy, c.metric, t.team, count(*), avg(c.stopped_at - c.started_at),
            percentile_cont(0.5) WITHIN GROUP (ORDER BY c.stopped_at - c.started_at),
            percentile_cont(0.9) WITHIN GROUP (ORDER BY c.stopped_at - c.started_at)
       FROM sla.clocks c JOIN tickets t ON t.id::text COLLATE "C" = c.ticket_id
      WHERE c.started_at >= '2026-11-01' AND c.started_at < '2026-12-01'
        AND c.status IN ('achieved', 'missed') GROUP BY 1, 2, 3$q$, 3)),
  ('report by team', bench_time($q$SELECT * FROM sla.report('2026-11-01', '2026-12-01', '{team}')$q$, 3)),
  ('report, one day', bench_time($q$SELECT * FROM sla.report('2026-11-16', '2026-11-17')$q$, 5)),
  ('open_clocks, breached', bench_time($q$SELECT count(*) FROM sla.open_clocks WHERE breached_for IS NOT NULL$q$, 3));

\echo
\echo 'sla.report over the clocks started in November (medians):'
SELECT :clocks AS clocks,
       round(b.ms::numeric) AS "baseline ms", round(r.ms::numeric) AS "report ms",
       round((r.ms / b.ms)::numeric, 2) AS "report / baseline",
       round(bt.ms::numeric) AS "baseline by team ms", round(rt.ms::numeric) AS "report by team ms",
       round((rt.ms / bt.ms)::numeric, 2) AS "by team / baseline"
  FROM bench_report b, bench_report r, bench_report bt, bench_report rt
 WHERE b.measure = 'baseline' AND r.measure = 'report'
   AND bt.measure = 'baseline by team' AND rt.measure = 'report by team';
\echo
\echo 'Smaller reads (medians):'
SELECT measure, round(ms::numeric, 1) AS ms FROM bench_report
 WHERE measure IN ('report, one day', 'open_clocks, breached');
SELECT * FROM sla.report('2026-11-01', '2026-12-01') ORDER BY policy, metric;
