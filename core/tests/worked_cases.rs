//! Worked cases with answers computed by hand: DST transitions in five zones,
//! overnight windows, holidays and shortened days, leap days, year ends,
//! durations from a minute to a year, and definition errors.

use chrono::{Datelike, NaiveDateTime};
use sla_core::{Calendar, Error, Micros, MICROS_PER_HOUR, MICROS_PER_MINUTE, MICROS_PER_SECOND};

/// A UTC instant written "YYYY-MM-DD HH:MM".
fn utc(text: &str) -> Micros {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .and_utc()
        .timestamp_micros()
}

fn hours(h: i64) -> Micros {
    h * MICROS_PER_HOUR
}

fn minutes(m: i64) -> Micros {
    m * MICROS_PER_MINUTE
}

fn cal(json: &str) -> Calendar {
    Calendar::parse(json).unwrap_or_else(|e| panic!("{e}\n{json}"))
}

fn periods(cal: &Calendar, from: &str, to: &str) -> Vec<(Micros, Micros)> {
    cal.periods(utc(from), utc(to)).unwrap().collect()
}

fn span(from: &str, to: &str) -> (Micros, Micros) {
    (utc(from), utc(to))
}

const WEEKDAYS_9_17: &str = r#""mon":["09:00-17:00"],"tue":["09:00-17:00"],"wed":["09:00-17:00"],"thu":["09:00-17:00"],"fri":["09:00-17:00"]"#;

fn weekdays(zone: &str, holidays: &str) -> Calendar {
    cal(&format!(
        r#"{{"timezone":"{zone}","hours":{{{WEEKDAYS_9_17}}},"holidays":[{holidays}]}}"#
    ))
}

#[test]
fn seed_example_friday_afternoon_to_monday_morning() {
    let c = weekdays("UTC", "");
    let due = c.add(utc("2026-11-20 16:45"), minutes(30)).unwrap();
    assert_eq!(due, utc("2026-11-23 09:15"));
    assert_eq!(
        c.between(utc("2026-11-20 16:45"), due).unwrap(),
        minutes(30)
    );
    assert_eq!(
        c.next_open(utc("2026-11-21 10:00")).unwrap(),
        utc("2026-11-23 09:00")
    );
    assert_eq!(
        periods(&c, "2026-11-20 00:00", "2026-11-24 00:00"),
        vec![
            span("2026-11-20 09:00", "2026-11-20 17:00"),
            span("2026-11-23 09:00", "2026-11-23 17:00")
        ]
    );
}

#[test]
fn negative_durations_go_back_to_the_latest_instant() {
    let c = weekdays("UTC", "");
    assert_eq!(
        c.add(utc("2026-11-23 09:15"), minutes(-30)).unwrap(),
        utc("2026-11-20 16:45")
    );
    assert_eq!(
        c.add(utc("2026-11-23 09:00"), hours(-1)).unwrap(),
        utc("2026-11-20 16:00")
    );
    // Landing exactly on an opening: the latest such instant is the opening
    // itself, not the previous evening's closing.
    assert_eq!(
        c.add(utc("2026-11-23 10:00"), hours(-1)).unwrap(),
        utc("2026-11-23 09:00")
    );
    // Forward landing exactly on a closing stops there, not at the next opening.
    assert_eq!(
        c.add(utc("2026-11-23 16:00"), hours(1)).unwrap(),
        utc("2026-11-23 17:00")
    );
    assert_eq!(
        c.add(utc("2026-11-21 12:00"), 0).unwrap(),
        utc("2026-11-21 12:00")
    );
    assert_eq!(
        c.between(utc("2026-11-23 10:00"), utc("2026-11-20 16:00"))
            .unwrap(),
        hours(-2)
    );
}

#[test]
fn new_york_overnight_shift_lasts_7_and_9_hours() {
    // Nightly 22:00-06:00. 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01
    // 02:00 EDT -> 01:00 EST.
    let c = cal(
        r#"{"timezone":"America/New_York","hours":{"sat":["22:00-06:00"],"sun":["22:00-06:00"]}}"#,
    );
    // Sat 22:00 EST = 03:00 UTC to Sun 06:00 EDT = 10:00 UTC.
    assert_eq!(
        periods(&c, "2026-03-08 00:00", "2026-03-09 12:00"),
        vec![
            span("2026-03-08 03:00", "2026-03-08 10:00"),
            span("2026-03-09 02:00", "2026-03-09 10:00")
        ]
    );
    assert_eq!(
        c.between(utc("2026-03-08 00:00"), utc("2026-03-08 12:00"))
            .unwrap(),
        hours(7)
    );
    // Sat 22:00 EDT = 02:00 UTC to Sun 06:00 EST = 11:00 UTC.
    assert_eq!(
        c.between(utc("2026-11-01 00:00"), utc("2026-11-01 12:00"))
            .unwrap(),
        hours(9)
    );
    // 8.5 business hours from Sat 22:00 EDT end at 05:30 EST, not 06:30.
    assert_eq!(
        c.add(utc("2026-11-01 02:00"), minutes(510)).unwrap(),
        utc("2026-11-01 10:30")
    );
    assert_eq!(
        c.add(utc("2026-11-01 10:30"), minutes(-510)).unwrap(),
        utc("2026-11-01 02:00")
    );
}

#[test]
fn new_york_skipped_hour_counts_nothing_and_repeated_hour_twice() {
    let c = cal(r#"{"timezone":"America/New_York","hours":{"sun":["01:00-05:00"]}}"#);
    // 01:00 EST = 06:00 UTC; 05:00 EDT = 09:00 UTC: three real hours.
    assert_eq!(
        c.between(utc("2026-03-08 00:00"), utc("2026-03-09 00:00"))
            .unwrap(),
        hours(3)
    );
    // 01:00 EDT = 05:00 UTC; 05:00 EST = 10:00 UTC: five real hours.
    assert_eq!(
        c.between(utc("2026-11-01 00:00"), utc("2026-11-02 00:00"))
            .unwrap(),
        hours(5)
    );
    // 01:30 happens twice on 2026-11-01 and is business time both times.
    assert!(c.is_open(utc("2026-11-01 05:30")).unwrap());
    assert!(c.is_open(utc("2026-11-01 06:30")).unwrap());

    // A window lying wholly in the skipped hour gives no business time.
    let gap = cal(
        r#"{"timezone":"America/New_York","hours":{"sun":["02:15-02:45"],"mon":["09:00-10:00"]}}"#,
    );
    assert_eq!(
        gap.between(utc("2026-03-08 00:00"), utc("2026-03-09 00:00"))
            .unwrap(),
        0
    );
    assert_eq!(
        gap.next_open(utc("2026-03-08 05:00")).unwrap(),
        utc("2026-03-09 13:00")
    );
    // One lying in the repeated hour happens twice.
    let repeat = cal(r#"{"timezone":"America/New_York","hours":{"sun":["01:15-01:45"]}}"#);
    assert_eq!(
        periods(&repeat, "2026-11-01 00:00", "2026-11-02 00:00"),
        vec![
            span("2026-11-01 05:15", "2026-11-01 05:45"),
            span("2026-11-01 06:15", "2026-11-01 06:45")
        ]
    );
    assert_eq!(
        repeat.add(utc("2026-11-01 05:30"), minutes(30)).unwrap(),
        utc("2026-11-01 06:30")
    );
}

#[test]
fn paris_transitions_and_a_weekend_across_them() {
    // 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC); 2026-10-25 03:00 CEST
    // -> 02:00 CET (01:00 UTC).
    let night = cal(r#"{"timezone":"Europe/Paris","hours":{"sun":["01:00-05:00"]}}"#);
    // 01:00 CET = 00:00 UTC to 05:00 CEST = 03:00 UTC.
    assert_eq!(
        periods(&night, "2026-03-28 12:00", "2026-03-30 00:00"),
        vec![span("2026-03-29 00:00", "2026-03-29 03:00")]
    );
    // 01:00 CEST = 23:00 UTC the day before, to 05:00 CET = 04:00 UTC.
    assert_eq!(
        periods(&night, "2026-10-24 12:00", "2026-10-26 00:00"),
        vec![span("2026-10-24 23:00", "2026-10-25 04:00")]
    );

    let office = weekdays("Europe/Paris", "");
    // Fri 16:00 CET + 2 h: one hour on Friday, one on Monday 09:00-10:00 CEST.
    let due = office.add(utc("2026-03-27 15:00"), hours(2)).unwrap();
    assert_eq!(due, utc("2026-03-30 08:00"));
    assert_eq!(office.add(due, hours(-2)).unwrap(), utc("2026-03-27 15:00"));
    assert!(office.is_open(utc("2026-03-30 07:00")).unwrap());
    assert!(!office.is_open(utc("2026-03-27 16:00")).unwrap());
    // Fri 16:00 CEST + 2 h across the autumn change: Mon 10:00 CET.
    assert_eq!(
        office.add(utc("2026-10-23 14:00"), hours(2)).unwrap(),
        utc("2026-10-26 09:00")
    );
}

#[test]
fn lord_howe_half_hour_shift() {
    // 2026-04-05 02:00 (+11:00) -> 01:30 (+10:30); 2026-10-04 02:00 (+10:30)
    // -> 02:30 (+11:00).
    let c = cal(r#"{"timezone":"Australia/Lord_Howe","hours":{"sun":["01:00-03:00"]}}"#);
    // 01:00 +11 = 14:00 UTC to 03:00 +10:30 = 16:30 UTC: 2.5 hours.
    assert_eq!(
        periods(&c, "2026-04-04 00:00", "2026-04-05 00:00"),
        vec![span("2026-04-04 14:00", "2026-04-04 16:30")]
    );
    // 01:00 +10:30 = 14:30 UTC to 03:00 +11 = 16:00 UTC: 1.5 hours.
    assert_eq!(
        c.between(utc("2026-10-03 00:00"), utc("2026-10-04 00:00"))
            .unwrap(),
        minutes(90)
    );
    assert_eq!(
        c.add(utc("2026-10-03 14:30"), minutes(90)).unwrap(),
        utc("2026-10-03 16:00")
    );
    // 01:45 happens twice in April.
    assert!(c.is_open(utc("2026-04-04 14:45")).unwrap());
    assert!(c.is_open(utc("2026-04-04 15:15")).unwrap());
}

#[test]
fn kolkata_half_hour_offset() {
    let c = cal(
        r#"{"timezone":"Asia/Kolkata","hours":{"mon":["09:00-18:00"],"tue":["09:00-18:00"],"wed":["09:00-18:00"],"thu":["09:00-18:00"],"fri":["09:00-18:00"]}}"#,
    );
    // 09:00 IST = 03:30 UTC.
    assert!(!c.is_open(utc("2026-11-20 03:29")).unwrap());
    assert!(c.is_open(utc("2026-11-20 03:30")).unwrap());
    // Fri 17:30 IST + 1 h = Mon 09:30 IST = 04:00 UTC.
    assert_eq!(
        c.add(utc("2026-11-20 12:00"), hours(1)).unwrap(),
        utc("2026-11-23 04:00")
    );
    assert_eq!(
        c.between(utc("2026-11-16 00:00"), utc("2026-11-23 00:00"))
            .unwrap(),
        hours(45)
    );
}

#[test]
fn chatham_quarter_hour_offset_and_transitions() {
    // 2026-04-05 03:45 (+13:45) -> 02:45 (+12:45); 2026-09-27 02:45 (+12:45)
    // -> 03:45 (+13:45).
    let c = cal(r#"{"timezone":"Pacific/Chatham","hours":{"sun":["02:00-05:00"]}}"#);
    // 02:00 +13:45 = 12:15 UTC to 05:00 +12:45 = 16:15 UTC: 4 hours.
    assert_eq!(
        periods(&c, "2026-04-04 00:00", "2026-04-05 00:00"),
        vec![span("2026-04-04 12:15", "2026-04-04 16:15")]
    );
    // 02:00 +12:45 = 13:15 UTC to 05:00 +13:45 = 15:15 UTC: 2 hours.
    assert_eq!(
        periods(&c, "2026-09-26 00:00", "2026-09-27 00:00"),
        vec![span("2026-09-26 13:15", "2026-09-26 15:15")]
    );
    assert_eq!(
        c.add(utc("2026-09-26 13:15"), minutes(90)).unwrap(),
        utc("2026-09-26 14:45")
    );
}

#[test]
fn holidays_shortened_days_and_the_year_end() {
    let c = weekdays(
        "Europe/Paris",
        r#""2026-12-25", {"date":"2026-12-24","hours":["09:00-12:00"]}, {"every":"01-01"}"#,
    );
    // Thu 24 Dec 11:00 CET + 2 h: 11:00-12:00 on the shortened day, Friday is
    // a holiday, then Monday 28 Dec 09:00-10:00 CET.
    assert_eq!(
        c.add(utc("2026-12-24 10:00"), hours(2)).unwrap(),
        utc("2026-12-28 09:00")
    );
    assert!(!c.is_open(utc("2026-12-24 12:30")).unwrap());
    assert!(!c.is_open(utc("2026-12-25 10:00")).unwrap());
    // Thu 31 Dec 16:00 CET + 2 h: Fri 1 Jan 2027 is closed every year.
    assert_eq!(
        c.add(utc("2026-12-31 15:00"), hours(2)).unwrap(),
        utc("2027-01-04 09:00")
    );
    // ... and 1 Jan 2026 (a Thursday) too.
    assert_eq!(
        c.between(utc("2026-01-01 00:00"), utc("2026-01-02 00:00"))
            .unwrap(),
        0
    );
    // The week of Christmas: 3 + 0 + 8 * 3 (Mon-Wed) hours.
    assert_eq!(
        c.between(utc("2026-12-21 00:00"), utc("2026-12-28 00:00"))
            .unwrap(),
        hours(27)
    );
    // A shortened day with [] closes it.
    let closed = weekdays("UTC", r#"{"date":"2026-11-23","hours":[]}"#);
    assert_eq!(
        closed.next_open(utc("2026-11-23 08:00")).unwrap(),
        utc("2026-11-24 09:00")
    );
}

#[test]
fn a_holiday_closes_the_overnight_window_that_starts_on_it() {
    let json = |holidays: &str| {
        format!(
            r#"{{"timezone":"UTC","hours":{{"fri":["22:00-06:00"],"sat":["10:00-12:00"]}},"holidays":[{holidays}]}}"#
        )
    };
    // Friday 2026-11-20 is a holiday: its whole night is closed, Saturday's
    // own window is not.
    let friday_off = cal(&json(r#""2026-11-20""#));
    assert_eq!(
        periods(&friday_off, "2026-11-20 00:00", "2026-11-22 00:00"),
        vec![span("2026-11-21 10:00", "2026-11-21 12:00")]
    );
    // A Saturday holiday closes Saturday's window but not Friday's spill.
    let saturday_off = cal(&json(r#""2026-11-21""#));
    assert_eq!(
        periods(&saturday_off, "2026-11-20 00:00", "2026-11-22 00:00"),
        vec![span("2026-11-20 22:00", "2026-11-21 06:00")]
    );
}

#[test]
fn windows_meeting_through_an_overnight_spill_count_once() {
    let c = cal(r#"{"timezone":"UTC","hours":{"fri":["22:00-06:00"],"sat":["00:00-24:00"]}}"#);
    assert_eq!(
        periods(&c, "2026-11-20 00:00", "2026-11-23 00:00"),
        vec![span("2026-11-20 22:00", "2026-11-22 00:00")]
    );
    assert_eq!(
        c.between(utc("2026-11-20 00:00"), utc("2026-11-23 00:00"))
            .unwrap(),
        hours(26)
    );
    // An overnight window ending at its start time lasts 24 hours.
    let day = cal(r#"{"timezone":"UTC","hours":{"wed":["09:00-09:00"]}}"#);
    assert_eq!(
        periods(&day, "2026-11-16 00:00", "2026-11-23 00:00"),
        vec![span("2026-11-18 09:00", "2026-11-19 09:00")]
    );
}

#[test]
fn leap_days() {
    let c = weekdays("UTC", "");
    // Mon 2028-02-28 16:00 + 2 h -> Tue 2028-02-29 10:00.
    assert_eq!(
        c.add(utc("2028-02-28 16:00"), hours(2)).unwrap(),
        utc("2028-02-29 10:00")
    );
    // A yearly 29 February closure applies only in leap years.
    let feb29 = cal(r#"{"timezone":"UTC","hours":"24/7","holidays":[{"every":"02-29"}]}"#);
    assert_eq!(
        feb29
            .between(utc("2028-02-28 00:00"), utc("2028-03-01 00:00"))
            .unwrap(),
        hours(24)
    );
    assert_eq!(
        feb29
            .between(utc("2027-02-28 00:00"), utc("2027-03-02 00:00"))
            .unwrap(),
        hours(48)
    );
    assert_eq!(
        feb29.add(utc("2028-02-28 23:00"), hours(2)).unwrap(),
        utc("2028-03-01 01:00")
    );
    assert_eq!(
        feb29.next_open(utc("2028-02-29 12:00")).unwrap(),
        utc("2028-03-01 00:00")
    );
    // A dated 29 February exists only in leap years.
    assert!(
        Calendar::parse(r#"{"timezone":"UTC","hours":"24/7","holidays":["2027-02-29"]}"#).is_err()
    );
}

#[test]
fn year_ends_in_new_york() {
    let c = weekdays("America/New_York", "");
    // Thu 2026-12-31 16:00 EST (21:00 UTC) + 3 h: 1 h, then Fri 1 Jan
    // 09:00-11:00 EST (no holidays in this calendar).
    assert_eq!(
        c.add(utc("2026-12-31 21:00"), hours(3)).unwrap(),
        utc("2027-01-01 16:00")
    );
    assert_eq!(
        c.between(utc("2026-12-31 21:00"), utc("2027-01-01 16:00"))
            .unwrap(),
        hours(3)
    );
}

#[test]
fn durations_from_a_minute_to_a_year() {
    let utc_office = weekdays("UTC", "");
    let monday = utc("2026-01-05 09:00");
    assert_eq!(
        utc_office.add(utc("2026-01-05 16:59"), minutes(1)).unwrap(),
        utc("2026-01-05 17:00")
    );
    assert_eq!(
        utc_office.add(monday, hours(8)).unwrap(),
        utc("2026-01-05 17:00")
    );
    assert_eq!(
        utc_office.add(monday, hours(40)).unwrap(),
        utc("2026-01-09 17:00")
    );
    // 2,000 hours = 250 business days = 50 weeks, ending Friday 18 Dec 17:00.
    assert_eq!(
        utc_office.add(monday, hours(2000)).unwrap(),
        utc("2026-12-18 17:00")
    );
    assert_eq!(
        utc_office
            .add(utc("2026-12-18 17:00"), hours(-2000))
            .unwrap(),
        monday
    );

    // The same in Paris: business hours do not touch the DST changes, so the
    // answer is 17:00 CET on the same Friday.
    let paris = weekdays("Europe/Paris", "");
    assert_eq!(
        paris.add(utc("2026-01-05 08:00"), hours(2000)).unwrap(),
        utc("2026-12-18 16:00")
    );

    // 24/7: a year of business time is a year of real time.
    let always = cal(r#"{"timezone":"Europe/Paris","hours":"24/7"}"#);
    assert_eq!(
        always.add(monday, hours(24 * 365)).unwrap(),
        utc("2027-01-05 09:00")
    );
    assert_eq!(
        always.between(monday, utc("2027-01-05 09:00")).unwrap(),
        hours(24 * 365)
    );

    // Ten years of business time on weekdays, crossing many internal chunks.
    let far = utc_office.add(monday, hours(8 * 261 * 10)).unwrap();
    assert_eq!(
        utc_office.between(monday, far).unwrap(),
        hours(8 * 261 * 10)
    );
}

#[test]
fn no_business_time_within_the_horizon_is_an_error() {
    // Only Mondays open, and every Monday of 2026-2037 a holiday.
    let mut holidays = Vec::new();
    let mut day = chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
    while day.year() < 2038 {
        holidays.push(format!("\"{day}\""));
        day += chrono::Duration::days(7);
    }
    let c = cal(&format!(
        r#"{{"timezone":"UTC","hours":{{"mon":["09:00-17:00"]}},"holidays":[{}]}}"#,
        holidays.join(",")
    ));
    let from = utc("2026-01-01 00:00");
    assert!(matches!(
        c.next_open(from),
        Err(Error::NoBusinessTime { forward: true, .. })
    ));
    assert!(matches!(
        c.add(from, hours(1)),
        Err(Error::NoBusinessTime { .. })
    ));
    let message = c.next_open(from).unwrap_err().to_string();
    assert!(
        message.contains("no business time within 10 years after 2026-01-01"),
        "{message}"
    );
    // Backwards from 2038 the same closure is an error as well.
    assert!(matches!(
        c.add(utc("2037-12-31 00:00"), hours(-1)),
        Err(Error::NoBusinessTime { forward: false, .. })
    ));
    // Between and periods stay bounded by their range and simply find none.
    assert_eq!(c.between(from, utc("2030-01-01 00:00")).unwrap(), 0);
}

/// Mondays 09:00-17:00 in UTC, with every Monday from 2026-01-05 until
/// `until` a holiday.
fn mondays_closed_until(until: chrono::NaiveDate) -> Calendar {
    let mut holidays = Vec::new();
    let mut day = chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
    while day < until {
        holidays.push(format!("\"{day}\""));
        day += chrono::Duration::days(7);
    }
    cal(&format!(
        r#"{{"timezone":"UTC","hours":{{"mon":["09:00-17:00"]}},"holidays":[{}]}}"#,
        holidays.join(",")
    ))
}

#[test]
fn the_horizon_bounds_the_gap_between_business_times_not_chunks() {
    // The horizon is 3,660 days: from 2026-01-01 it ends on 2036-01-09.
    let from = utc("2026-01-01 00:00");
    let date = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
    // First opening Monday 2035-12-31, within the horizon: found.
    let c = mondays_closed_until(date(2035, 12, 25));
    assert_eq!(c.next_open(from).unwrap(), utc("2035-12-31 09:00"));
    assert_eq!(c.add(from, hours(1)).unwrap(), utc("2035-12-31 10:00"));
    // First opening Monday 2036-03-03, two months past it: none, although
    // the chunk holding it starts within the horizon.
    let c = mondays_closed_until(date(2036, 3, 1));
    assert!(matches!(
        c.next_open(from),
        Err(Error::NoBusinessTime { forward: true, .. })
    ));
    assert!(matches!(
        c.add(from, hours(1)),
        Err(Error::NoBusinessTime { forward: true, .. })
    ));
    // Backwards: from 2046-06-01, the last opening (Monday 2036-03-03,
    // Mondays being closed after it) lies 3,742 days back.
    let mut holidays = Vec::new();
    let mut day = date(2036, 3, 10);
    while day < date(2046, 6, 1) {
        holidays.push(format!("\"{day}\""));
        day += chrono::Duration::days(7);
    }
    let c = cal(&format!(
        r#"{{"timezone":"UTC","hours":{{"mon":["09:00-17:00"]}},"holidays":[{}]}}"#,
        holidays.join(",")
    ));
    assert!(matches!(
        c.add(utc("2046-06-01 00:00"), hours(-1)),
        Err(Error::NoBusinessTime { forward: false, .. })
    ));
}

#[test]
fn instants_outside_years_1_to_9999_are_refused() {
    let c = weekdays("UTC", "");
    let year_10000 = 253_402_300_800 * MICROS_PER_SECOND;
    assert!(matches!(
        c.is_open(year_10000),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        c.add(utc("9999-12-31 16:00"), hours(8)),
        Err(Error::OutOfRange { .. })
    ));
    let always = cal(r#"{"timezone":"UTC","hours":"24/7"}"#);
    assert!(matches!(
        always.add(utc("9999-12-31 16:00"), hours(9)),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        always.add(0, i64::MIN),
        Err(Error::OutOfRange { .. })
    ));
}

/// The field path and a fragment of the message for each refused definition.
#[test]
fn definition_errors_name_the_field_and_value() {
    let cases: &[(&str, &str, &str)] = &[
        (r#"{"hours":"24/7"}"#, "timezone", "is required"),
        (
            r#"{"timezone":"Mars/Olympus","hours":"24/7"}"#,
            "timezone",
            "Mars/Olympus",
        ),
        (
            r#"{"timezone":5,"hours":"24/7"}"#,
            "timezone",
            "must be a string",
        ),
        (r#"{"timezone":"UTC"}"#, "hours", "is required"),
        (r#"{"timezone":"UTC","hours":"9to5"}"#, "hours", "\"9to5\""),
        (r#"{"timezone":"UTC","hours":{}}"#, "hours", "no open time"),
        (
            r#"{"timezone":"UTC","hours":{"mon":[]}}"#,
            "hours",
            "no open time",
        ),
        (
            r#"{"timezone":"UTC","hours":{"monday":["09:00-17:00"]}}"#,
            "hours.monday",
            "unknown weekday",
        ),
        (
            r#"{"timezone":"UTC","hours":{"mon":["9:00-17:00"]}}"#,
            "hours.mon[0]",
            "\"9:00-17:00\"",
        ),
        (
            r#"{"timezone":"UTC","hours":{"mon":["09:00-25:00"]}}"#,
            "hours.mon[0]",
            "invalid end time",
        ),
        (
            r#"{"timezone":"UTC","hours":{"mon":["09:60-10:00"]}}"#,
            "hours.mon[0]",
            "invalid start time",
        ),
        (
            r#"{"timezone":"UTC","hours":{"mon":["24:00-02:00"]}}"#,
            "hours.mon[0]",
            "starts at 24:00",
        ),
        (
            r#"{"timezone":"UTC","hours":{"mon":["0900-1700"]}}"#,
            "hours.mon[0]",
            "\"0900-1700\"",
        ),
        (
            r#"{"timezone":"UTC","hours":{"mon":["09:00"]}}"#,
            "hours.mon[0]",
            "not a \"HH:MM-HH:MM\"",
        ),
        (
            r#"{"timezone":"UTC","hours":{"mon":[900]}}"#,
            "hours.mon[0]",
            "900",
        ),
        (
            r#"{"timezone":"UTC","hours":{"mon":"09:00-17:00"}}"#,
            "hours.mon",
            "must be an array",
        ),
        (
            r#"{"timezone":"UTC","hours":{"tue":["08:00-12:00","11:00-13:00"]}}"#,
            "hours.tue",
            "08:00-12:00 and 11:00-13:00 overlap",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","timezon":"UTC"}"#,
            "timezon",
            "unknown key",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":["2026-02-30"]}"#,
            "holidays[0]",
            "\"2026-02-30\" is not a real date",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":["26-12-25"]}"#,
            "holidays[0]",
            "YYYY-MM-DD",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":[{"every":"02-30"}]}"#,
            "holidays[0].every",
            "\"02-30\"",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":[{"every":"13-01"}]}"#,
            "holidays[0].every",
            "\"13-01\"",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":[{"every":"+1-+1"}]}"#,
            "holidays[0].every",
            "\"+1-+1\"",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":[{"every":12}]}"#,
            "holidays[0].every",
            "must be a \"MM-DD\" string",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":[1e400]}"#,
            "definition",
            "number out of range",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":[{"date":"2026-12-24"}]}"#,
            "holidays[0].hours",
            "is required",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":[{"date":"2026-12-24","hours":["25:00-26:00"]}]}"#,
            "holidays[0].hours[0]",
            "\"25:00-26:00\"",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":[{"day":"2026-12-24"}]}"#,
            "holidays[0].day",
            "unknown key",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":[true]}"#,
            "holidays[0]",
            "true",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":"2026-12-25"}"#,
            "holidays",
            "must be an array",
        ),
        (
            r#"{"timezone":"UTC","hours":"24/7","holidays":["2026-12-25","2026-12-25"]}"#,
            "holidays",
            "2026-12-25 is listed more than once",
        ),
        (r#"[1,2]"#, "definition", "must be a JSON object"),
        (
            r#"{"timezone":"UTC","#,
            "definition",
            "is not JSON that pg_sla can read",
        ),
    ];
    for &(json, field, fragment) in cases {
        match Calendar::parse(json) {
            Err(Error::InvalidDefinition { field: f, message }) => {
                assert_eq!(f, field, "{json}: {message}");
                assert!(
                    message.contains(fragment),
                    "{json}: {message:?} lacks {fragment:?}"
                );
            }
            other => panic!("{json}: expected an invalid definition, got {other:?}"),
        }
    }
}

#[test]
fn a_result_beyond_the_supported_range_is_refused_without_a_search() {
    let c = weekdays("UTC", "");
    let days = |n: i64| n * 24 * MICROS_PER_HOUR;
    // Counts chunk builds on this thread: a search would build many.
    sla_core::set_interrupt_check(count_check);
    let builds_before = CHECKS_ON_THIS_THREAD.with(std::cell::Cell::get);
    // Business time never outruns real time, so these are known at once.
    for (t, d) in [
        (utc("2026-01-01 00:00"), days(100_000_000)),
        (utc("2026-01-01 00:00"), days(-100_000_000)),
        (utc("2026-01-01 00:00"), i64::MAX),
        (utc("2026-01-01 00:00"), i64::MIN),
    ] {
        assert!(
            matches!(
                c.add(t, d),
                Err(Error::OutOfRange {
                    what: "result beyond",
                    ..
                })
            ),
            "{d}"
        );
    }
    assert_eq!(
        CHECKS_ON_THIS_THREAD.with(std::cell::Cell::get),
        builds_before,
        "no chunk was built"
    );
}

#[test]
fn long_ranges_agree_with_their_parts_across_evicted_chunks() {
    // 1900-2300 spans about 360 internal chunks, more than a calendar keeps
    // built at once; crossing them uses remembered chunk summaries.
    let c = weekdays("Europe/Paris", r#"{"every":"12-25"},"2026-05-01""#);
    let (from, to) = (utc("1900-01-01 00:00"), utc("2300-01-01 00:00"));
    let whole = c.between(from, to).unwrap();
    assert_eq!(c.between(from, to).unwrap(), whole, "the same answer twice");
    let cut = [
        from,
        utc("1950-06-01 12:00"),
        utc("2026-05-01 08:30"),
        utc("2099-12-31 23:00"),
        to,
    ];
    let parts: Micros = cut.windows(2).map(|w| c.between(w[0], w[1]).unwrap()).sum();
    assert_eq!(parts, whole);
    // Forward over the whole span lands on the last closing before `to`,
    // and back again on the first opening after `from`.
    let end = c.add(from, whole).unwrap();
    assert!(end <= to && c.is_open(end - 1).unwrap());
    assert_eq!(c.between(end, to).unwrap(), 0);
    assert_eq!(c.add(end, -whole).unwrap(), c.next_open(from).unwrap());
}

#[test]
fn business_time_nine_years_away_is_still_found() {
    // Only Mondays open, and every Monday of 2026-2034 a holiday.
    let mut holidays = Vec::new();
    let mut day = chrono::NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
    while day.year() < 2035 {
        holidays.push(format!("\"{day}\""));
        day += chrono::Duration::days(7);
    }
    let c = cal(&format!(
        r#"{{"timezone":"UTC","hours":{{"mon":["09:00-17:00"]}},"holidays":[{}]}}"#,
        holidays.join(",")
    ));
    let first_open_monday = day
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    assert_eq!(day.year(), 2035);
    assert_eq!(
        c.next_open(utc("2026-01-01 00:00")).unwrap(),
        first_open_monday
    );
    assert_eq!(
        c.add(utc("2026-01-01 00:00"), hours(1)).unwrap(),
        first_open_monday + hours(1)
    );
    assert_eq!(
        c.add(first_open_monday, hours(-1)).unwrap(),
        utc("2025-12-29 16:00")
    );
}

thread_local! {
    static CHECKS_ON_THIS_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count_check() {
    CHECKS_ON_THIS_THREAD.with(|c| c.set(c.get() + 1));
}

fn interrupting_check() {
    panic!("query cancelled");
}

#[test]
fn the_interrupt_check_runs_while_building_and_may_unwind() {
    let c = weekdays("UTC", "");
    sla_core::set_interrupt_check(count_check);
    let before = CHECKS_ON_THIS_THREAD.with(std::cell::Cell::get);
    c.between(utc("2000-01-01 00:00"), utc("2040-01-01 00:00"))
        .unwrap();
    assert!(CHECKS_ON_THIS_THREAD.with(std::cell::Cell::get) - before >= 30);

    // A cancel unwinds out of the engine; the calendar stays usable.
    sla_core::set_interrupt_check(interrupting_check);
    let cancelled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.between(utc("2100-01-01 00:00"), utc("2200-01-01 00:00"))
    }));
    assert!(cancelled.is_err());
    sla_core::set_interrupt_check(count_check);
    assert_eq!(
        c.between(utc("2100-01-04 00:00"), utc("2100-01-11 00:00"))
            .unwrap(),
        hours(40)
    );
}
