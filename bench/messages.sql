-- Messages-table benchmark: run by bench/messages.sh in a scratch cluster
-- with a release build of pg_sla. One INSERT of 100,000 messages (about
-- three per conversation, one in five an internal note) into a tracked
-- messages table, against the same INSERT into an untracked copy.

\ir bench_time.sql
CREATE EXTENSION IF NOT EXISTS pg_sla;
INSERT INTO sla.policies (name, first_response, next_response, resolution, pause_statuses)
VALUES ('inbox', '1 hour', '30 minutes', '1 day', '{2,3}');

-- Conversations and messages shaped like Chatwoot's, twice: one pair
-- tracked, one not.
CREATE TABLE conversations_plain (
  id integer PRIMARY KEY, account_id integer NOT NULL, inbox_id integer NOT NULL,
  status integer NOT NULL DEFAULT 0, assignee_id integer, priority integer,
  last_activity_at timestamp NOT NULL, created_at timestamp NOT NULL, updated_at timestamp NOT NULL,
  sla_policy text, sla_status text, sla_due_at timestamptz, sla_breached_at timestamptz);
CREATE INDEX ON conversations_plain (status, account_id);
CREATE INDEX ON conversations_plain (assignee_id);
CREATE TABLE conversations_tracked (LIKE conversations_plain INCLUDING ALL);
SELECT sla.track('conversations_tracked', closed_statuses => '{1}',
    customer_message_at_column => NULL, agent_reply_at_column => NULL) \gset
CREATE TABLE messages_plain (
  id bigint PRIMARY KEY, content text, account_id integer NOT NULL, inbox_id integer NOT NULL,
  conversation_id integer NOT NULL, message_type integer NOT NULL,
  private boolean NOT NULL DEFAULT false, sender_type varchar, sender_id bigint,
  created_at timestamp NOT NULL, updated_at timestamp NOT NULL);
CREATE INDEX ON messages_plain (conversation_id);
CREATE INDEX ON messages_plain (account_id, inbox_id);
CREATE TABLE messages_tracked (LIKE messages_plain INCLUDING ALL);
SELECT sla.track_messages('messages_tracked', 'conversations_tracked', 'conversation_id',
    customer_message => '{"message_type": 0}',
    agent_reply => '{"message_type": 1, "private": false}') \gset

-- 33,334 conversations over one week; 100,000 messages: incoming, then an
-- outgoing reply (every fifth message a private note instead), then
-- incoming again, minutes apart.
CREATE VIEW conversation_rows AS
SELECT g AS id, 1 AS account_id, 1 + g % 5 AS inbox_id, 0 AS status, g % 40 AS assignee_id,
       g % 4 AS priority, t AS last_activity_at, t AS created_at, t AS updated_at
  FROM generate_series(1, 33334) g,
       LATERAL (SELECT '2026-11-23'::timestamp + (g % 604800) * interval '1 second') s(t);
CREATE VIEW message_rows AS
SELECT m AS id, 'Hello, any news about my order?' AS content, 1 AS account_id, 1 AS inbox_id,
       1 + (m - 1) / 3 AS conversation_id,
       CASE (m - 1) % 3 WHEN 1 THEN 1 ELSE 0 END AS message_type,
       m % 5 = 0 AS private, CASE (m - 1) % 3 WHEN 1 THEN 'User' ELSE 'Contact' END AS sender_type,
       m AS sender_id, t AS created_at, t AS updated_at
  FROM generate_series(1, 100000) m,
       LATERAL (SELECT '2026-11-23'::timestamp + (((m - 1) / 3) % 604800) * interval '1 second'
                       + ((m - 1) % 3) * interval '20 minutes') s(t);

CREATE TABLE bench_samples (measure text, ms float8);
CREATE PROCEDURE bench_messages(runs int) LANGUAGE plpgsql AS $$
DECLARE
  started timestamptz;
  target text;
BEGIN
  FOR i IN 0..runs LOOP
    FOREACH target IN ARRAY CASE WHEN i % 2 = 0 THEN ARRAY['plain', 'tracked']
                                 ELSE ARRAY['tracked', 'plain'] END LOOP
      EXECUTE format('TRUNCATE messages_%s, conversations_%s', target, target);
      EXECUTE format('INSERT INTO conversations_%s (id, account_id, inbox_id, status, assignee_id,
                          priority, last_activity_at, created_at, updated_at)
                      SELECT * FROM conversation_rows', target);
      COMMIT;
      started := clock_timestamp();
      EXECUTE format('INSERT INTO messages_%s SELECT * FROM message_rows', target);
      COMMIT;
      IF i > 0 THEN  -- run 0 warms caches up
        INSERT INTO bench_samples VALUES (target, extract(epoch FROM clock_timestamp() - started) * 1000);
      END IF;
      COMMIT;
    END LOOP;
  END LOOP;
END $$;
CALL bench_messages(3);

\echo
\echo 'Inserting 100,000 messages in one statement (median of 3 runs):'
WITH m AS (SELECT measure, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms
             FROM bench_samples GROUP BY measure)
SELECT round(p.ms::numeric, 1) AS "untracked ms", round(t.ms::numeric, 1) AS "tracked ms",
       round((t.ms / p.ms)::numeric, 2) AS "tracked / untracked (goal <= 2.5)",
       round(((t.ms - p.ms) / 100)::numeric, 1) AS "added µs per message"
  FROM m p, m t WHERE p.measure = 'plain' AND t.measure = 'tracked';
SELECT count(*) FILTER (WHERE metric = 'first_response' AND status = 'achieved') AS "first responses met",
       count(*) FILTER (WHERE metric = 'next_response') AS "next-response clocks"
  FROM sla.clocks;
