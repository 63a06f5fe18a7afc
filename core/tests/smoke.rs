use chrono::{TimeZone, Utc};
use sla_core::{Calendar, MICROS_PER_MINUTE};

fn ts(s: &str) -> i64 {
    Utc.from_utc_datetime(&chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap())
        .timestamp_micros()
}

#[test]
fn seed_example() {
    let cal = Calendar::parse(r#"{"timezone":"UTC","hours":{"mon":["09:00-17:00"],"tue":["09:00-17:00"],"wed":["09:00-17:00"],"thu":["09:00-17:00"],"fri":["09:00-17:00"]}}"#).unwrap();
    // Friday 2026-11-20 16:45 + 30 min -> Monday 2026-11-23 09:15
    let due = cal
        .add(ts("2026-11-20 16:45"), 30 * MICROS_PER_MINUTE)
        .unwrap();
    assert_eq!(due, ts("2026-11-23 09:15"));
    assert_eq!(
        cal.between(ts("2026-11-20 16:45"), due).unwrap(),
        30 * MICROS_PER_MINUTE
    );
    assert_eq!(
        cal.add(due, -30 * MICROS_PER_MINUTE).unwrap(),
        ts("2026-11-20 16:45")
    );
    let p: Vec<_> = cal
        .periods(ts("2026-11-20 00:00"), ts("2026-11-24 00:00"))
        .unwrap()
        .collect();
    assert_eq!(
        p,
        vec![
            (ts("2026-11-20 09:00"), ts("2026-11-20 17:00")),
            (ts("2026-11-23 09:00"), ts("2026-11-23 17:00"))
        ]
    );
    assert_eq!(
        cal.next_open(ts("2026-11-21 10:00")).unwrap(),
        ts("2026-11-23 09:00")
    );
    // a year of business hours
    let far = cal
        .add(ts("2026-11-20 16:45"), 2000 * 60 * MICROS_PER_MINUTE)
        .unwrap();
    assert_eq!(
        cal.between(ts("2026-11-20 16:45"), far).unwrap(),
        2000 * 60 * MICROS_PER_MINUTE
    );
}
