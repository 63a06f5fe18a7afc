//! Property tests of the calendar engine.
//!
//! Calendars are generated at random (zone, weekday windows including
//! overnight ones, dated holidays, shortened days, yearly closures), written as
//! JSON definitions and parsed by the engine. Two kinds of checks follow:
//! - against an oracle that knows nothing of the engine's timeline: it converts
//!   one UTC instant at a time to local wall-clock time with chrono-tz and
//!   looks the windows up, so DST gaps and repeats fall out of the definition;
//! - the algebra of the operations (inverse, monotonic, additive) over long
//!   ranges and durations up to about a year of business time.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use sla_core::{Calendar, Micros, MICROS_PER_HOUR, MICROS_PER_MINUTE, MICROS_PER_SECOND};

const ZONES: [&str; 8] = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/St_Johns",
    "America/Santiago",
];

/// Windows in local minutes from the midnight of the day they belong to;
/// an overnight window ends after 1440.
type Windows = Vec<(u32, u32)>;

#[derive(Debug, Clone)]
struct Model {
    zone: &'static str,
    week: [Windows; 7],
    dated: BTreeMap<NaiveDate, Windows>,
    yearly: BTreeSet<(u32, u32)>,
}

fn clock(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn window_text((start, end): (u32, u32)) -> String {
    // An overnight window is written with its next-day end time.
    let end = if end > 1440 { end - 1440 } else { end };
    format!("\"{}-{}\"", clock(start), clock(end))
}

fn windows_json(windows: &Windows) -> String {
    let items: Vec<String> = windows.iter().copied().map(window_text).collect();
    format!("[{}]", items.join(","))
}

impl Model {
    fn json(&self) -> String {
        let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let hours: Vec<String> = names
            .iter()
            .zip(&self.week)
            .filter(|(_, windows)| !windows.is_empty())
            .map(|(name, windows)| format!("\"{name}\":{}", windows_json(windows)))
            .collect();
        let mut holidays: Vec<String> = Vec::new();
        for (date, windows) in &self.dated {
            if windows.is_empty() && date.day() % 2 == 0 {
                holidays.push(format!("\"{date}\""));
            } else {
                holidays.push(format!(
                    "{{\"date\":\"{date}\",\"hours\":{}}}",
                    windows_json(windows)
                ));
            }
        }
        for (month, day) in &self.yearly {
            holidays.push(format!("{{\"every\":\"{month:02}-{day:02}\"}}"));
        }
        format!(
            "{{\"timezone\":\"{}\",\"hours\":{{{}}},\"holidays\":[{}]}}",
            self.zone,
            hours.join(","),
            holidays.join(",")
        )
    }

    fn windows_on(&self, date: NaiveDate) -> &[(u32, u32)] {
        if let Some(windows) = self.dated.get(&date) {
            return windows;
        }
        if self.yearly.contains(&(date.month(), date.day())) {
            return &[];
        }
        &self.week[date.weekday().num_days_from_monday() as usize]
    }

    /// Whether the UTC second `t` is business time, by direct conversion.
    fn open_at(&self, t: i64) -> bool {
        let tz: Tz = self.zone.parse().unwrap();
        let local = tz.timestamp_opt(t, 0).unwrap().naive_local();
        let second = i64::from(local.num_seconds_from_midnight());
        let inside = |windows: &[(u32, u32)], s: i64| {
            windows
                .iter()
                .any(|&(start, end)| i64::from(start) * 60 <= s && s < i64::from(end) * 60)
        };
        inside(self.windows_on(local.date()), second)
            || inside(
                self.windows_on(local.date() - Duration::days(1)),
                second + 86_400,
            )
    }

    /// Open minutes of `[from, to)` (minute-aligned UTC seconds). Every zone
    /// in `ZONES` has whole-minute offsets in the years tested, so business
    /// time changes state only on UTC minute boundaries.
    fn open_minutes(&self, from: i64, to: i64) -> Vec<bool> {
        (from..to).step_by(60).map(|t| self.open_at(t)).collect()
    }
}

/// Up to two same-day windows and maybe an overnight one, on 5-minute steps.
fn day_windows() -> impl Strategy<Value = Windows> {
    (
        prop::collection::btree_set(0u32..=288, 0..=4),
        prop::option::weighted(0.3, (0u32..288, 0u32..288)),
    )
        .prop_map(|(cuts, overnight)| {
            let cuts: Vec<u32> = cuts.into_iter().map(|c| c * 5).collect();
            let mut windows: Windows = cuts.chunks_exact(2).map(|p| (p[0], p[1])).collect();
            if let Some((start, end)) = overnight {
                let (start, end) = (start * 5, end * 5);
                let last_end = windows.last().map_or(0, |w| w.1);
                if start >= last_end && end <= start {
                    windows.push((start, end + 1440));
                }
            }
            windows
        })
}

fn date_in_test_years() -> impl Strategy<Value = NaiveDate> {
    (0i64..3 * 366).prop_map(|d| NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + Duration::days(d))
}

fn model() -> impl Strategy<Value = Model> {
    (
        prop::sample::select(ZONES.to_vec()),
        prop::array::uniform7(day_windows()),
        prop::collection::btree_map(
            date_in_test_years(),
            prop::option::weighted(0.4, day_windows()),
            0..8,
        ),
        prop::collection::btree_set((1u32..=12, 1u32..=29), 0..3),
    )
        .prop_filter("a calendar needs open time", |(_, week, _, _)| {
            week.iter().any(|day| !day.is_empty())
        })
        .prop_map(|(zone, week, dated, yearly)| Model {
            zone,
            week,
            dated: dated
                .into_iter()
                .map(|(date, windows)| (date, windows.unwrap_or_default()))
                .collect(),
            yearly,
        })
}

fn seconds(date: &str) -> i64 {
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

/// An instant in 2025-2027, or one within three days of a boundary between
/// the engine's internal chunks (multiples of 2^45 µs), where splitting and
/// merging of intervals is easiest to get wrong.
fn instant() -> impl Strategy<Value = Micros> {
    let from = seconds("2025-01-01") * MICROS_PER_SECOND;
    let to = seconds("2028-01-01") * MICROS_PER_SECOND;
    let near_boundary = (
        50i64..=52,
        -3 * 86_400 * MICROS_PER_SECOND..3 * 86_400 * MICROS_PER_SECOND,
    )
        .prop_map(|(k, offset)| (k << 45) + offset);
    prop_oneof![from..to, near_boundary]
}

/// A minute-aligned instant (UTC seconds), for comparisons with the oracle.
fn minute_instant() -> impl Strategy<Value = i64> {
    instant().prop_map(|t| t.div_euclid(60 * MICROS_PER_SECOND) * 60)
}

/// Business-time durations from a microsecond to about a year (2,500 hours).
fn duration() -> impl Strategy<Value = Micros> {
    prop_oneof![
        1..=MICROS_PER_HOUR,
        MICROS_PER_HOUR..=40 * MICROS_PER_HOUR,
        40 * MICROS_PER_HOUR..=2_500 * MICROS_PER_HOUR,
    ]
}

fn calendar(model: &Model) -> Calendar {
    Calendar::parse(&model.json())
        .unwrap_or_else(|e| panic!("generated definition rejected: {e}\n{}", model.json()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn is_open_matches_oracle(model in model(), t in instant()) {
        let cal = calendar(&model);
        prop_assert_eq!(
            cal.is_open(t).unwrap(),
            model.open_at(t.div_euclid(MICROS_PER_SECOND)),
            "at {} in {}", t, model.json()
        );
    }

    #[test]
    fn between_and_periods_match_oracle(
        model in model(),
        from in minute_instant(),
        minutes in 0i64..4 * 1440,
    ) {
        let cal = calendar(&model);
        let to = from + minutes * 60;
        let open = model.open_minutes(from, to);
        let expected_total = open.iter().filter(|&&o| o).count() as i64 * MICROS_PER_MINUTE;
        let (from_us, to_us) = (from * MICROS_PER_SECOND, to * MICROS_PER_SECOND);
        prop_assert_eq!(cal.between(from_us, to_us).unwrap(), expected_total);
        prop_assert_eq!(cal.between(to_us, from_us).unwrap(), -expected_total);

        // Maximal runs of open minutes are the periods.
        let mut expected_periods = Vec::new();
        let mut run_start = None;
        for (i, &is_open) in open.iter().chain([&false]).enumerate() {
            let at = (from + i as i64 * 60) * MICROS_PER_SECOND;
            match (is_open, run_start) {
                (true, None) => run_start = Some(at),
                (false, Some(start)) => {
                    expected_periods.push((start, at));
                    run_start = None;
                }
                _ => {}
            }
        }
        let periods: Vec<_> = cal.periods(from_us, to_us).unwrap().collect();
        prop_assert_eq!(periods, expected_periods, "{}", model.json());
    }

    #[test]
    fn next_open_matches_oracle(model in model(), from in minute_instant()) {
        let cal = calendar(&model);
        let next = cal.next_open(from * MICROS_PER_SECOND).unwrap();
        // The oracle walks minute by minute up to two weeks; a longer closure
        // is possible with many holidays, then only the algebra is checked.
        let found = (0..14 * 1440).map(|m| from + m * 60).find(|&t| model.open_at(t));
        if let Some(expected) = found {
            prop_assert_eq!(next, expected * MICROS_PER_SECOND);
        } else {
            prop_assert!(next >= (from + 14 * 1440 * 60) * MICROS_PER_SECOND);
        }
    }

    #[test]
    fn add_then_between_gives_the_duration(model in model(), t in instant(), d in duration()) {
        let cal = calendar(&model);
        let due = cal.add(t, d).unwrap();
        prop_assert!(due > t);
        prop_assert_eq!(cal.between(t, due).unwrap(), d);
        // Earliest: a microsecond sooner is not enough.
        prop_assert_eq!(cal.between(t, due - 1).unwrap(), d - 1);

        let start = cal.add(t, -d).unwrap();
        prop_assert!(start < t);
        prop_assert_eq!(cal.between(start, t).unwrap(), d);
        // Latest: a microsecond later is not enough.
        prop_assert_eq!(cal.between(start + 1, t).unwrap(), d - 1);
    }

    #[test]
    fn add_is_monotonic(
        model in model(),
        t1 in instant(),
        t2 in instant(),
        d1 in duration(),
        d2 in duration(),
        backwards in any::<(bool, bool)>(),
    ) {
        let cal = calendar(&model);
        let d1 = if backwards.0 { -d1 } else { d1 };
        let d2 = if backwards.1 { -d2 } else { d2 };
        let (t1, t2) = (t1.min(t2), t1.max(t2));
        prop_assert!(cal.add(t1, d1).unwrap() <= cal.add(t2, d1).unwrap());
        let (d1, d2) = (d1.min(d2), d1.max(d2));
        prop_assert!(cal.add(t1, d1).unwrap() <= cal.add(t1, d2).unwrap());
    }

    #[test]
    fn adding_back_returns_to_the_start_or_the_end_of_its_closed_gap(
        model in model(),
        t in instant(),
        d in duration(),
    ) {
        let cal = calendar(&model);
        // Forward then back: `t` itself when it is business time, else the
        // opening that ends the closed gap `t` lies in.
        let there = cal.add(t, d).unwrap();
        prop_assert_eq!(cal.add(there, -d).unwrap(), cal.next_open(t).unwrap());

        // Back then forward: `t`, or the closing that starts its closed gap.
        let back = cal.add(t, -d).unwrap();
        let returned = cal.add(back, d).unwrap();
        prop_assert!(returned <= t);
        prop_assert_eq!(cal.between(returned, t).unwrap(), 0);
        prop_assert!(returned == t || cal.is_open(returned - 1).unwrap());
    }

    #[test]
    fn durations_and_ranges_are_additive(
        model in model(),
        t in instant(),
        d1 in duration(),
        d2 in duration(),
        u in instant(),
    ) {
        let cal = calendar(&model);
        let step = cal.add(cal.add(t, d1).unwrap(), d2).unwrap();
        prop_assert_eq!(step, cal.add(t, d1 + d2).unwrap());

        let (a, b, c) = {
            let mut v = [t, u, step];
            v.sort();
            (v[0], v[1], v[2])
        };
        prop_assert_eq!(
            cal.between(a, b).unwrap() + cal.between(b, c).unwrap(),
            cal.between(a, c).unwrap()
        );
    }

    #[test]
    fn periods_partition_the_business_time(model in model(), t in instant(), u in instant()) {
        let cal = calendar(&model);
        let (from, to) = (t.min(u), t.max(u));
        let periods: Vec<_> = cal.periods(from, to).unwrap().collect();
        let mut previous_end = None;
        for &(start, end) in &periods {
            prop_assert!(from <= start && start < end && end <= to);
            // Sorted and merged: a gap separates consecutive periods.
            if let Some(previous) = previous_end {
                prop_assert!(previous < start);
            }
            prop_assert!(cal.is_open(start).unwrap() && cal.is_open(end - 1).unwrap());
            prop_assert!(start == from || !cal.is_open(start - 1).unwrap());
            prop_assert!(end == to || !cal.is_open(end).unwrap());
            previous_end = Some(end);
        }
        let sum: Micros = periods.iter().map(|(s, e)| e - s).sum();
        prop_assert_eq!(sum, cal.between(from, to).unwrap());
    }

    #[test]
    fn next_open_is_the_first_business_instant(model in model(), t in instant()) {
        let cal = calendar(&model);
        let next = cal.next_open(t).unwrap();
        prop_assert!(next >= t);
        prop_assert!(cal.is_open(next).unwrap());
        prop_assert_eq!(cal.between(t, next).unwrap(), 0);
        prop_assert_eq!(next == t, cal.is_open(t).unwrap());
    }
}

#[test]
fn whole_minute_offsets_hold_for_the_zones_tested() {
    // The oracle comparisons step by UTC minutes; they rely on this.
    for zone in ZONES {
        let tz: Tz = zone.parse().unwrap();
        let mut t = seconds("2024-12-01");
        while t < seconds("2028-02-01") {
            let offset = tz
                .timestamp_opt(t, 0)
                .unwrap()
                .naive_local()
                .signed_duration_since(Utc.timestamp_opt(t, 0).unwrap().naive_utc())
                .num_seconds();
            assert_eq!(offset % 60, 0, "{zone} at {t}");
            t += 6 * 3600;
        }
    }
}
