//! `#[pg_test]`s: the SQL functions inside a real backend (each test runs in a
//! transaction that is rolled back).
use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    const WEEKDAYS_PARIS: &str = r#"{"timezone": "Europe/Paris",
        "hours": {"mon": ["09:00-17:00"], "tue": ["09:00-17:00"], "wed": ["09:00-17:00"],
                  "thu": ["09:00-17:00"], "fri": ["09:00-17:00"]},
        "holidays": ["2026-12-25", {"date": "2026-12-24", "hours": ["09:00-12:00"]}, {"every": "05-01"}]}"#;

    fn setup() {
        Spi::run(&format!(
            "INSERT INTO sla.calendars (name, definition) VALUES ('paris', '{WEEKDAYS_PARIS}')"
        ))
        .unwrap();
    }

    fn text(query: &str) -> String {
        Spi::get_one::<String>(query).unwrap().unwrap()
    }

    fn run_in_utc() {
        Spi::run("SET LOCAL TimeZone = 'UTC'").unwrap();
    }

    #[pg_test]
    fn seed_example_friday_afternoon_is_due_monday() {
        setup();
        run_in_utc();
        // Friday 16:45 Paris (15:45 UTC) + 30 business minutes = Monday 09:15 Paris.
        assert_eq!(
            text(
                "SELECT sla.add_business_time('paris', '2026-11-20 16:45+01', '30 minutes')::text"
            ),
            "2026-11-23 08:15:00+00"
        );
    }

    #[pg_test]
    fn between_is_the_inverse_of_add() {
        setup();
        assert_eq!(
            text("SELECT sla.business_time_between('paris', '2026-11-20 16:45+01', '2026-11-23 09:15+01')::text"),
            "00:30:00"
        );
        assert_eq!(
            text("SELECT sla.business_time_between('paris', '2026-11-23 09:15+01', '2026-11-20 16:45+01')::text"),
            "-00:30:00"
        );
    }

    #[pg_test]
    fn negative_and_zero_durations() {
        setup();
        run_in_utc();
        assert_eq!(
            text(
                "SELECT sla.add_business_time('paris', '2026-11-23 09:15+01', '-30 minutes')::text"
            ),
            "2026-11-20 15:45:00+00"
        );
        assert_eq!(
            text("SELECT sla.add_business_time('paris', '2026-11-21 12:00+01', '0')::text"),
            "2026-11-21 11:00:00+00"
        );
    }

    #[pg_test]
    fn holidays_and_shortened_days_in_periods() {
        setup();
        run_in_utc();
        assert_eq!(
            text(
                "SELECT string_agg(p::text, ' ' ORDER BY p) FROM \
                 sla.business_periods('paris', '2026-12-23', '2026-12-29') p"
            ),
            "[\"2026-12-23 08:00:00+00\",\"2026-12-23 16:00:00+00\") \
             [\"2026-12-24 08:00:00+00\",\"2026-12-24 11:00:00+00\") \
             [\"2026-12-28 08:00:00+00\",\"2026-12-28 16:00:00+00\")"
        );
    }

    #[pg_test]
    fn is_and_next_business_time() {
        setup();
        run_in_utc();
        assert!(Spi::get_one::<bool>(
            "SELECT sla.is_business_time('paris', '2026-11-24 10:00+01')"
        )
        .unwrap()
        .unwrap());
        assert!(!Spi::get_one::<bool>(
            "SELECT sla.is_business_time('paris', '2026-05-01 10:00+02')"
        )
        .unwrap()
        .unwrap());
        assert_eq!(
            text("SELECT sla.next_business_time('paris', '2026-12-25 10:00+01')::text"),
            "2026-12-28 08:00:00+00"
        );
        assert_eq!(
            text("SELECT sla.next_business_time('paris', '2026-11-24 10:00+01')::text"),
            "2026-11-24 09:00:00+00"
        );
    }

    #[pg_test]
    fn inline_definitions_match_named_ones() {
        setup();
        let same = Spi::get_one::<bool>(&format!(
            "SELECT sla.add_business_time('{WEEKDAYS_PARIS}'::jsonb, t, '7 hours') \
                  = sla.add_business_time('paris', t, '7 hours') \
             FROM (VALUES ('2026-12-23 15:00+01'::timestamptz)) v(t)"
        ))
        .unwrap()
        .unwrap();
        assert!(same);
    }

    /// Definitions read per row from a table, one of them large enough to be
    /// stored out of line, alternating row by row: each row must be computed
    /// with its own definition (the inline cache keys on the jsonb bytes).
    #[pg_test]
    fn inline_definitions_per_row_toasted_and_alternating() {
        setup();
        run_in_utc();
        Spi::run(
            r#"CREATE TEMP TABLE defs (id int PRIMARY KEY, definition jsonb);
               ALTER TABLE defs ALTER COLUMN definition SET STORAGE EXTERNAL;
               INSERT INTO defs SELECT 1, definition FROM sla.calendars WHERE name = 'paris';
               INSERT INTO defs SELECT 2, jsonb_build_object(
                   'timezone', 'America/New_York',
                   'hours', '{"mon": ["08:00-18:00"], "tue": ["08:00-18:00"], "wed": ["08:00-18:00"]}'::jsonb,
                   'holidays', (SELECT jsonb_agg(to_char(d, 'YYYY-MM-DD'))
                                FROM generate_series(date '2020-01-01', date '2035-12-31', interval '1 day') d
                                WHERE extract(isodow FROM d) = 2));
               INSERT INTO sla.calendars (name, definition) SELECT 'big', definition FROM defs WHERE id = 2;"#,
        )
        .unwrap();
        // Above the 2 kB threshold with EXTERNAL storage: kept out of line.
        let size = text("SELECT pg_column_size(definition)::text FROM defs WHERE id = 2");
        assert!(size.parse::<i32>().unwrap() > 2000, "{size} bytes");
        let mismatches = Spi::get_one::<i64>(
            r#"SELECT count(*) FROM (
                 SELECT d.id, t,
                        sla.add_business_time(d.definition, t, '9 hours') AS inline,
                        sla.add_business_time(CASE d.id WHEN 1 THEN 'paris' ELSE 'big' END, t, '9 hours') AS named
                 FROM generate_series(timestamptz '2026-11-01', '2026-11-30', '7 hours') t
                 JOIN defs d ON d.id = 1 + (extract(epoch FROM t)::bigint / 3600 / 7) % 2) s
               WHERE inline IS DISTINCT FROM named"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(mismatches, 0);
        // The two calendars do give different answers, so the check has teeth.
        assert_ne!(
            text("SELECT sla.add_business_time(definition, '2026-11-23 12:00+00', '9 hours')::text FROM defs WHERE id = 1"),
            text("SELECT sla.add_business_time(definition, '2026-11-23 12:00+00', '9 hours')::text FROM defs WHERE id = 2"),
        );
    }

    #[pg_test]
    fn infinity_passes_through() {
        setup();
        assert_eq!(
            text("SELECT sla.add_business_time('paris', 'infinity', '1 hour')::text"),
            "infinity"
        );
        assert_eq!(
            text("SELECT sla.next_business_time('paris', '-infinity')::text"),
            "-infinity"
        );
    }

    #[pg_test]
    fn day_parts_count_as_24_hours() {
        Spi::run("SET LOCAL TimeZone = 'UTC'").unwrap();
        assert_eq!(
            text(
                r#"SELECT sla.add_business_time('{"timezone": "UTC", "hours": "24/7"}'::jsonb, '2026-03-01', '2 days 3 hours')::text"#
            ),
            "2026-03-03 03:00:00+00"
        );
    }

    #[pg_test]
    fn edits_are_seen_by_the_next_statement() {
        setup();
        run_in_utc();
        assert_eq!(
            text("SELECT sla.next_business_time('paris', '2026-11-21 10:00+01')::text"),
            "2026-11-23 08:00:00+00"
        );
        Spi::run(r#"UPDATE sla.calendars SET definition = jsonb_set(definition, '{hours,sat}', '["10:00-12:00"]') WHERE name = 'paris'"#).unwrap();
        assert_eq!(
            text("SELECT sla.next_business_time('paris', '2026-11-21 10:00+01')::text"),
            "2026-11-21 09:00:00+00"
        );
    }

    #[pg_test(error = "calendar \"nowhere\" does not exist")]
    fn unknown_calendar_is_an_error() {
        Spi::run("SELECT sla.add_business_time('nowhere', now(), '1 hour')").unwrap();
    }

    #[pg_test(error = "duration must not have a month or year part, got 1 mon")]
    fn month_intervals_are_refused() {
        setup();
        Spi::run("SELECT sla.add_business_time('paris', now(), '1 month')").unwrap();
    }

    #[pg_test(
        error = "invalid calendar definition: hours.mon: windows 09:00-17:00 and 16:00-18:00 overlap"
    )]
    fn overlapping_windows_are_refused() {
        Spi::run(
            r#"INSERT INTO sla.calendars VALUES ('x', '{"timezone": "UTC", "hours": {"mon": ["09:00-17:00", "16:00-18:00"]}}')"#,
        )
        .unwrap();
    }

    #[pg_test(error = "from_ts must be a finite timestamp, got -infinity")]
    fn between_needs_finite_bounds() {
        setup();
        Spi::run("SELECT sla.business_time_between('paris', '-infinity', now())").unwrap();
    }

    // -----------------------------------------------------------------------
    // The schema agrees with the Rust definitions it must not drift from.

    fn texts(query: &str) -> Vec<String> {
        Spi::connect(|client| {
            let mut found = Vec::new();
            for row in client.select(query, None, &[])? {
                found.push(row.get::<String>(1)?.unwrap_or_default());
            }
            Ok::<_, pgrx::spi::Error>(found)
        })
        .unwrap()
    }

    /// `clock_layout::CLOCK_ROW` is `sla.clocks` as `pg_attribute` has it:
    /// the names, the types and the order.
    #[pg_test]
    fn the_clock_row_layout_is_the_table() {
        use crate::store::clock_layout::CLOCK_ROW;
        let described: Vec<String> = CLOCK_ROW
            .iter()
            .map(|c| format!("{} {}", c.name(), c.sql_type()))
            .collect();
        let table = texts(
            "SELECT attname || ' ' || format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = 'sla.clocks'::regclass AND attnum > 0 AND NOT attisdropped
              ORDER BY attnum",
        );
        assert_eq!(described, table);
    }

    /// A CHECK constraint's list of accepted words on `column`.
    fn check_words(table: &str, column: &str) -> Vec<String> {
        let definitions = texts(&format!(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
              WHERE conrelid = '{table}'::regclass AND contype = 'c'
                AND pg_get_constraintdef(oid) ~ '\\m{column} = ANY'"
        ));
        assert_eq!(
            definitions.len(),
            1,
            "one CHECK on {table}.{column}: {definitions:?}"
        );
        definitions[0]
            .split('\'')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    /// Statuses, metrics and notification kinds are defined once, in the
    /// core; the CHECK constraints, the SQL helpers and the partial index
    /// say the same.
    #[pg_test]
    fn the_sql_vocabulary_is_the_core_vocabulary() {
        use sla_core::{ClockStatus, Metric, NotificationKind};
        let words = |all: Vec<&str>| all.into_iter().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            check_words("sla.clocks", "status"),
            words(ClockStatus::ALL.iter().map(|s| s.as_str()).collect())
        );
        assert_eq!(
            check_words("sla.clocks", "metric"),
            words(Metric::ALL.iter().map(|m| m.as_str()).collect())
        );
        assert_eq!(
            check_words("sla.notifications", "kind"),
            words(NotificationKind::ALL.iter().map(|k| k.as_str()).collect())
        );
        for status in ClockStatus::ALL {
            let name = status.as_str();
            let open = Spi::get_one::<bool>(&format!("SELECT sla.clock_is_open('{name}')"))
                .unwrap()
                .unwrap();
            assert_eq!(open, status.is_open(), "sla.clock_is_open('{name}')");
            for breached in [false, true] {
                let clock = sla_core::Clock {
                    status,
                    breached_at: breached.then_some(0),
                    ..sla_core::Clock::start(Metric::Resolution, 1, "", 0, 0)
                };
                let at = if breached { "now()" } else { "NULL" };
                let sql = Spi::get_one::<bool>(&format!(
                    "SELECT sla.clock_is_breached_open('{name}', {at})"
                ))
                .unwrap()
                .unwrap();
                assert_eq!(sql, clock.is_breached_open(), "{name}, breached {breached}");
            }
        }
        // The index breach alerts read holds the breached open clocks.
        let predicate = texts(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index
              WHERE indexrelid = 'sla.clocks_breached'::regclass",
        );
        let statuses: Vec<String> = ClockStatus::BREACHED_OPEN
            .iter()
            .map(|s| format!("'{}'::text", s.as_str()))
            .collect();
        assert_eq!(
            predicate,
            [format!(
                "((breached_at IS NOT NULL) AND (status = ANY (ARRAY[{}])))",
                statuses.join(", ")
            )]
        );
        // Nothing else in the schema spells out the open statuses again.
        let spelled_again = texts(
            "SELECT p.proname FROM pg_proc p
              WHERE p.pronamespace = 'sla'::regnamespace
                AND p.proname NOT IN ('clock_is_open', 'clock_is_breached_open')
                AND p.prosrc ~ 'running.{0,20}due_soon.{0,20}breached.{0,20}paused'
             UNION ALL
             SELECT c.relname FROM pg_class c
              WHERE c.relnamespace = 'sla'::regnamespace AND c.relkind = 'v'
                AND pg_get_viewdef(c.oid) ~ 'running.{0,20}due_soon.{0,20}breached.{0,20}paused'",
        );
        assert!(spelled_again.is_empty(), "{spelled_again:?}");
    }

    /// The policy CHECK runs the core's validation: a day counts as 24 hours
    /// when a target is compared with zero, and a fraction prints as
    /// PostgreSQL prints it.
    #[pg_test(
        error = "policy \"p\": warn_at must be a fraction between 0 and 1 (exclusive), got 1e+20"
    )]
    fn the_policy_check_is_the_core_validation() {
        Spi::run(
            "INSERT INTO sla.policies (name, first_response) VALUES ('ok', '-1 day 25 hours')",
        )
        .unwrap();
        Spi::run("INSERT INTO sla.policies (name, warn_at) VALUES ('p', 1e20)").unwrap();
    }
}
