-- pg_sla demo: business-hours deadlines computed in the database.
\pset footer off
SET TimeZone = 'UTC';
CREATE EXTENSION IF NOT EXISTS pg_sla;

-- Two support desks in two time zones, with holidays and a shortened day.
INSERT INTO sla.calendars (name, definition) VALUES
('paris', '{"timezone": "Europe/Paris",
            "hours": {"mon": ["09:00-12:00", "13:00-17:00"], "tue": ["09:00-17:00"],
                      "wed": ["09:00-17:00"], "thu": ["09:00-17:00"], "fri": ["09:00-17:00"]},
            "holidays": ["2026-12-25", {"date": "2026-12-24", "hours": ["09:00-12:00"]},
                         {"every": "01-01"}, {"every": "05-01"}]}'),
('new_york', '{"timezone": "America/New_York",
               "hours": {"mon": ["08:00-20:00"], "tue": ["08:00-20:00"], "wed": ["08:00-20:00"],
                         "thu": ["08:00-20:00"], "fri": ["08:00-20:00"], "sat": ["10:00-14:00"]},
               "holidays": ["2026-11-26", "2026-12-25"]}')
ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition;

\echo
\echo 'The seed example: a message on Friday 16:45 with a 30-minute first-response target'
SELECT sla.add_business_time('paris', '2026-11-20 16:45 Europe/Paris', '30 minutes')
         AT TIME ZONE 'Europe/Paris' AS "due (Paris time)";

\echo
\echo 'Deadlines for a few tickets, in each desk''s business hours'
SELECT t.received AT TIME ZONE 'UTC' AS "received (UTC)",
       t.target,
       sla.add_business_time('paris', t.received, t.target) AT TIME ZONE 'Europe/Paris' AS "due in Paris",
       sla.add_business_time('new_york', t.received, t.target) AT TIME ZONE 'America/New_York' AS "due in New York"
FROM (VALUES ('2026-11-25 18:30+00'::timestamptz, '4 hours'::interval),
             ('2026-12-23 15:00+00', '8 hours'),
             ('2026-12-31 22:00+00', '1 hour'),
             ('2027-03-26 16:00+00', '2 days')) AS t(received, target);

\echo
\echo 'Business time a ticket waited, and the open periods around Christmas in Paris'
SELECT sla.business_time_between('paris', '2026-12-23 10:00+01', '2026-12-28 10:00+01') AS "waited";
SELECT p AS "open periods" FROM sla.business_periods('paris', '2026-12-23', '2026-12-29') AS p;

\echo
\echo 'Calendars are plain rows: an invalid edit is refused with a clear error'
\set ON_ERROR_STOP 0
UPDATE sla.calendars SET definition = jsonb_set(definition, '{hours,mon}', '["09:00-12:00", "11:00-18:00"]')
WHERE name = 'paris';
\set ON_ERROR_STOP 1
