//! The calendar model and its JSON definition format.
//!
//! ```json
//! {"timezone": "Europe/Paris",
//!  "hours": {"mon": ["09:00-12:00", "13:00-17:00"], "fri": ["22:00-06:00"]},
//!  "holidays": ["2026-12-25", {"date": "2026-12-24", "hours": ["09:00-12:00"]},
//!               {"every": "05-01"}]}
//! ```

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub use crate::timeline::Calendar;

const MINUTES_PER_DAY: u32 = 24 * 60;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// An opening window in local wall-clock minutes from the midnight that starts
/// the day it belongs to. `end` may exceed a day for overnight windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    pub start: u32,
    pub end: u32,
}

/// A validated calendar definition.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarSpec {
    pub timezone: Tz,
    /// Windows per weekday, Monday first.
    pub week: [Vec<Window>; 7],
    /// Dated holidays and shortened days, sorted by date: the windows that
    /// replace the weekday's (empty for a closed day).
    pub dated: Vec<(NaiveDate, Vec<Window>)>,
    /// Days closed every year, as sorted (month, day).
    pub yearly_closed: Vec<(u32, u32)>,
}

impl CalendarSpec {
    /// Parses and validates a definition given as JSON text.
    pub fn parse(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Error::invalid(
                "definition",
                format!("is not JSON that pg_sla can read: {e}"),
            )
        })?;
        Self::from_json(&value)
    }

    /// Validates a definition given as a JSON value.
    pub fn from_json(value: &Value) -> Result<Self> {
        let object = value.as_object().ok_or_else(|| {
            Error::invalid(
                "definition",
                format!("must be a JSON object, got {}", describe(value)),
            )
        })?;
        for key in object.keys() {
            if !["timezone", "hours", "holidays"].contains(&key.as_str()) {
                return Err(Error::invalid(
                    key.as_str(),
                    "unknown key (expected \"timezone\", \"hours\" or \"holidays\")",
                ));
            }
        }
        let timezone = parse_timezone(object.get("timezone"))?;
        let week = parse_hours(object.get("hours"))?;
        let (dated, yearly_closed) = match object.get("holidays") {
            None | Some(Value::Null) => (Vec::new(), Vec::new()),
            Some(value) => parse_holidays(value)?,
        };
        Ok(CalendarSpec {
            timezone,
            week,
            dated,
            yearly_closed,
        })
    }

    /// The windows of a local date, holidays applied.
    pub fn windows_on(&self, date: NaiveDate) -> &[Window] {
        if let Ok(i) = self.dated.binary_search_by(|(d, _)| d.cmp(&date)) {
            return &self.dated[i].1;
        }
        if self
            .yearly_closed
            .binary_search(&(date.month(), date.day()))
            .is_ok()
        {
            return &[];
        }
        &self.week[date.weekday().num_days_from_monday() as usize]
    }

    /// True when every day is open around the clock and no holiday applies.
    pub fn is_always_open(&self) -> bool {
        self.dated.is_empty()
            && self.yearly_closed.is_empty()
            && self.week.iter().all(|day| {
                day.first()
                    .is_some_and(|w| w.start == 0 && w.end >= MINUTES_PER_DAY)
            })
    }
}

fn describe(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        format!("{}...", &text[..text.floor_char_boundary(57)])
    } else {
        text
    }
}

fn parse_timezone(value: Option<&Value>) -> Result<Tz> {
    match value {
        None | Some(Value::Null) => Err(Error::invalid(
            "timezone",
            "is required (an IANA time zone name such as \"Europe/Paris\")",
        )),
        Some(Value::String(name)) => name.parse::<Tz>().map_err(|_| {
            Error::invalid(
                "timezone",
                format!("unknown time zone \"{name}\" (expected an IANA name such as \"America/New_York\")"),
            )
        }),
        Some(other) => Err(Error::invalid(
            "timezone",
            format!("must be a string, got {}", describe(other)),
        )),
    }
}

fn parse_hours(value: Option<&Value>) -> Result<[Vec<Window>; 7]> {
    let always = || {
        std::array::from_fn(|_| {
            vec![Window {
                start: 0,
                end: MINUTES_PER_DAY,
            }]
        })
    };
    let days: &Map<String, Value> =
        match value {
            None | Some(Value::Null) => return Err(Error::invalid(
                "hours",
                "is required (weekday windows such as {\"mon\": [\"09:00-17:00\"]}, or \"24/7\")",
            )),
            Some(Value::String(s)) if s == "24/7" => return Ok(always()),
            Some(Value::Object(days)) => days,
            Some(other) => {
                return Err(Error::invalid(
                    "hours",
                    format!(
                        "must be an object of weekday windows or \"24/7\", got {}",
                        describe(other)
                    ),
                ))
            }
        };
    let mut week: [Vec<Window>; 7] = Default::default();
    for (key, windows) in days {
        let Some(index) = WEEKDAYS.iter().position(|d| d == key) else {
            return Err(Error::invalid(
                format!("hours.{key}"),
                format!(
                    "unknown weekday \"{key}\" (expected one of mon, tue, wed, thu, fri, sat, sun)"
                ),
            ));
        };
        week[index] = parse_windows(&format!("hours.{key}"), windows)?;
    }
    if week.iter().all(Vec::is_empty) {
        return Err(Error::invalid(
            "hours",
            "the calendar has no open time at all (every weekday is closed)",
        ));
    }
    Ok(week)
}

fn parse_windows(field: &str, value: &Value) -> Result<Vec<Window>> {
    let items = value.as_array().ok_or_else(|| {
        Error::invalid(
            field,
            format!(
                "must be an array of \"HH:MM-HH:MM\" windows, got {}",
                describe(value)
            ),
        )
    })?;
    let mut windows = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let text = item.as_str().ok_or_else(|| {
            Error::invalid(
                &item_field,
                format!("must be a \"HH:MM-HH:MM\" string, got {}", describe(item)),
            )
        })?;
        windows.push(parse_window(&item_field, text)?);
    }
    windows.sort();
    for pair in windows.windows(2) {
        if pair[0].end > pair[1].start {
            return Err(Error::invalid(
                field,
                format!(
                    "windows {} and {} overlap",
                    format_window(pair[0]),
                    format_window(pair[1])
                ),
            ));
        }
    }
    Ok(windows)
}

/// Parses `"HH:MM-HH:MM"`; an end not after the start runs into the next day.
pub fn parse_window(field: &str, text: &str) -> Result<Window> {
    let bad = |why: &str| Error::invalid(field, format!("\"{text}\" {why}"));
    let (from, to) = text
        .split_once('-')
        .ok_or_else(|| bad("is not a \"HH:MM-HH:MM\" window"))?;
    let start = parse_clock(from.trim()).ok_or_else(|| {
        bad("has an invalid start time (expected HH:MM with hours 00-23 and minutes 00-59)")
    })?;
    let end = parse_clock(to.trim()).ok_or_else(|| {
        bad("has an invalid end time (expected HH:MM with hours 00-24 and minutes 00-59)")
    })?;
    if start >= MINUTES_PER_DAY {
        return Err(bad("starts at 24:00; a window must start before midnight"));
    }
    let end = if end <= start {
        end + MINUTES_PER_DAY
    } else {
        end
    };
    Ok(Window { start, end })
}

/// `HH:MM` in minutes; `24:00` is accepted (as an end) and nothing later.
fn parse_clock(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

pub fn format_window(w: Window) -> String {
    let clock = |m: u32| format!("{:02}:{:02}", (m / 60) % 24, m % 60);
    let end = if w.end == MINUTES_PER_DAY {
        "24:00".to_string()
    } else {
        clock(w.end)
    };
    format!("{}-{}", clock(w.start), end)
}

type Holidays = (Vec<(NaiveDate, Vec<Window>)>, Vec<(u32, u32)>);

fn parse_holidays(value: &Value) -> Result<Holidays> {
    let items = value.as_array().ok_or_else(|| {
        Error::invalid(
            "holidays",
            format!("must be an array, got {}", describe(value)),
        )
    })?;
    let mut dated: Vec<(NaiveDate, Vec<Window>)> = Vec::new();
    let mut yearly: Vec<(u32, u32)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("holidays[{i}]");
        match item {
            Value::String(text) => dated.push((parse_date(&field, text)?, Vec::new())),
            Value::Object(entry) => {
                if let Some(every) = entry.get("every") {
                    if let Some(extra) = entry.keys().find(|k| *k != "every") {
                        return Err(Error::invalid(
                            format!("{field}.{extra}"),
                            "unknown key beside \"every\"",
                        ));
                    }
                    yearly.push(parse_month_day(&format!("{field}.every"), every)?);
                } else {
                    if let Some(extra) = entry.keys().find(|k| *k != "date" && *k != "hours") {
                        return Err(Error::invalid(
                            format!("{field}.{extra}"),
                            "unknown key (expected \"date\" with \"hours\", or \"every\")",
                        ));
                    }
                    let date = match entry.get("date") {
                        Some(Value::String(text)) => parse_date(&format!("{field}.date"), text)?,
                        Some(other) => {
                            return Err(Error::invalid(
                                format!("{field}.date"),
                                format!("must be a \"YYYY-MM-DD\" string, got {}", describe(other)),
                            ))
                        }
                        None => {
                            return Err(Error::invalid(
                                &field,
                                "needs \"date\" (with \"hours\") or \"every\"",
                            ))
                        }
                    };
                    let windows = match entry.get("hours") {
                        Some(hours) => parse_windows(&format!("{field}.hours"), hours)?,
                        None => {
                            return Err(Error::invalid(
                                format!("{field}.hours"),
                                "is required beside \"date\" (use [] to close the day, or a plain date string)",
                            ))
                        }
                    };
                    dated.push((date, windows));
                }
            }
            other => {
                return Err(Error::invalid(
                    &field,
                    format!(
                        "must be a \"YYYY-MM-DD\" date or an object, got {}",
                        describe(other)
                    ),
                ))
            }
        }
    }
    dated.sort_by_key(|(date, _)| *date);
    if let Some(pair) = dated.windows(2).find(|p| p[0].0 == p[1].0) {
        return Err(Error::invalid(
            "holidays",
            format!("{} is listed more than once", pair[0].0),
        ));
    }
    yearly.sort();
    yearly.dedup();
    Ok((dated, yearly))
}

fn parse_date(field: &str, text: &str) -> Result<NaiveDate> {
    let well_formed = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !well_formed {
        return Err(Error::invalid(
            field,
            format!("\"{text}\" is not a date in YYYY-MM-DD form"),
        ));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Error::invalid(field, format!("\"{text}\" is not a real date")))
}

fn parse_month_day(field: &str, value: &Value) -> Result<(u32, u32)> {
    let text = value.as_str().ok_or_else(|| {
        Error::invalid(
            field,
            format!("must be a \"MM-DD\" string, got {}", describe(value)),
        )
    })?;
    let bad = || Error::invalid(field, format!("\"{text}\" is not a real MM-DD day"));
    let (m, d) = text.split_once('-').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(m) || !two_digits(d) {
        return Err(bad());
    }
    let (m, d): (u32, u32) = (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    // 2000 is a leap year, so 02-29 is accepted and applies in leap years only.
    NaiveDate::from_ymd_opt(2000, m, d).ok_or_else(bad)?;
    Ok((m, d))
}
