//! Tests of the SLA clocks (`sla_core::clock`): worked cases with answers
//! computed by hand, then property tests that drive a ticket through random
//! histories (messages, replies, pauses, closes and reopens, policy switches,
//! the due-transition worker) and check the invariants the module promises.

use std::collections::{BTreeMap, HashSet};

use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use proptest::prelude::*;
use sla_core::{
    apply_due, reconcile, summarize, Calendar, Clock, ClockStatus, Hours, Metric, Micros, Summary,
    Targets, TicketFacts, Transition, MICROS_PER_HOUR, MICROS_PER_MINUTE,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A wall-clock time "YYYY-MM-DD HH:MM" in `zone`, as an instant.
fn local(zone: &str, text: &str) -> Micros {
    let tz: Tz = zone.parse().unwrap();
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
        .unwrap_or_else(|e| panic!("{text}: {e}"));
    tz.from_local_datetime(&naive)
        .single()
        .unwrap_or_else(|| panic!("{text} is ambiguous or skipped in {zone}"))
        .timestamp_micros()
}

const NY: &str = "America/New_York";

/// New York wall-clock time (EST, UTC-5, for every date used below).
fn ny(text: &str) -> Micros {
    local(NY, text)
}

fn utc(text: &str) -> Micros {
    local("UTC", text)
}

fn hours(h: i64) -> Micros {
    h * MICROS_PER_HOUR
}

fn minutes(m: i64) -> Micros {
    m * MICROS_PER_MINUTE
}

const WEEKDAYS_9_17: &str = r#""mon":["09:00-17:00"],"tue":["09:00-17:00"],"wed":["09:00-17:00"],"thu":["09:00-17:00"],"fri":["09:00-17:00"]"#;

/// Monday to Friday 09:00-17:00 in `zone`, with the given holiday items.
fn weekdays(zone: &str, holidays: &str) -> Calendar {
    let json =
        format!(r#"{{"timezone":"{zone}","hours":{{{WEEKDAYS_9_17}}},"holidays":[{holidays}]}}"#);
    Calendar::parse(&json).unwrap_or_else(|e| panic!("{e}\n{json}"))
}

fn targets(
    first_response: Option<Micros>,
    next_response: Option<Micros>,
    resolution: Option<Micros>,
) -> Targets {
    Targets {
        first_response,
        next_response,
        resolution,
        warn_fraction: None,
        release_fraction: None,
    }
}

/// A ticket as the extension would hold it: its facts, its policy and its
/// clocks, reconciled after every change.
struct Ticket<'a> {
    hours: Hours<'a>,
    facts: TicketFacts,
    policy: Option<(String, Targets)>,
    releasable: bool,
    clocks: Vec<Clock>,
}

impl<'a> Ticket<'a> {
    fn new(hours: Hours<'a>, created_at: Micros, policy: &str, targets: Targets) -> Self {
        Ticket {
            hours,
            facts: TicketFacts {
                created_at,
                closed: false,
                paused: false,
                last_customer_message_at: None,
                last_agent_reply_at: None,
            },
            policy: Some((policy.to_owned(), targets)),
            releasable: false,
            clocks: Vec::new(),
        }
    }

    fn reconcile(&mut self, now: Micros) {
        let policy = self.policy.as_ref().map(|(name, t)| (name.as_str(), t));
        reconcile(
            &mut self.clocks,
            &self.facts,
            policy,
            self.hours,
            now,
            self.releasable,
        )
        .unwrap();
    }

    fn customer_message(&mut self, at: Micros) {
        self.facts.last_customer_message_at = Some(at);
        self.reconcile(at);
    }

    fn agent_reply(&mut self, at: Micros) {
        self.facts.last_agent_reply_at = Some(at);
        self.reconcile(at);
    }

    fn set_paused(&mut self, paused: bool, at: Micros) {
        self.facts.paused = paused;
        self.reconcile(at);
    }

    fn set_closed(&mut self, closed: bool, at: Micros) {
        self.facts.closed = closed;
        self.reconcile(at);
    }

    fn switch_policy(&mut self, policy: Option<(&str, Targets)>, at: Micros) {
        self.policy = policy.map(|(name, t)| (name.to_owned(), t));
        self.reconcile(at);
    }

    fn index(&self, metric: Metric, cycle: i32) -> usize {
        self.clocks
            .iter()
            .position(|c| c.metric == metric && c.cycle == cycle)
            .unwrap_or_else(|| panic!("no {} clock, cycle {cycle}", metric.as_str()))
    }

    fn clock(&self, metric: Metric, cycle: i32) -> &Clock {
        &self.clocks[self.index(metric, cycle)]
    }

    fn apply_due(&mut self, metric: Metric, cycle: i32, now: Micros) -> Vec<Transition> {
        let i = self.index(metric, cycle);
        apply_due(&mut self.clocks[i], now)
    }

    fn cycles(&self, metric: Metric) -> Vec<i32> {
        let mut cycles: Vec<i32> = self
            .clocks
            .iter()
            .filter(|c| c.metric == metric)
            .map(|c| c.cycle)
            .collect();
        cycles.sort();
        cycles
    }
}

use Metric::{FirstResponse as FR, NextResponse as NR, Resolution as RES};

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

#[test]
fn metric_and_status_names_round_trip() {
    for metric in Metric::ALL {
        assert_eq!(Metric::parse(metric.as_str()), Some(metric));
    }
    for status in ClockStatus::ALL {
        assert_eq!(ClockStatus::parse(status.as_str()), Some(status));
    }
    assert_eq!(Metric::parse("First_Response"), None);
    assert_eq!(ClockStatus::parse(""), None);
    assert!(FR.is_response() && NR.is_response() && !RES.is_response());
    let open: Vec<_> = ClockStatus::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .collect();
    assert_eq!(
        open,
        [
            ClockStatus::Running,
            ClockStatus::DueSoon,
            ClockStatus::Breached,
            ClockStatus::Paused
        ]
    );
    assert_eq!(Transition::OwnershipReleased.as_str(), "ownership_released");
}

// ---------------------------------------------------------------------------
// Worked cases (calendar: Mon-Fri 09:00-17:00 America/New_York unless noted;
// 2026-11-20 is a Friday, 2026-11-23 the Monday after; all dates are in EST)
// ---------------------------------------------------------------------------

#[test]
fn seed_example_friday_afternoon_first_response_is_due_monday_morning() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-20 16:45");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "standard",
        targets(Some(minutes(30)), None, None),
    );
    t.reconcile(created);

    // Only the metric with a target gets a clock.
    assert_eq!(t.clocks.len(), 1);
    // 30 min: Fri 16:45-17:00 (15 min), closed all weekend, Mon 09:00-09:15
    // (15 min).
    let due = ny("2026-11-23 09:15");
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.policy, "standard");
    assert_eq!((c.started_at, c.target), (created, minutes(30)));
    assert_eq!(c.due_at, Some(due));
    assert_eq!(c.warn_at, None);
    assert_eq!(c.release_at, None);
    assert_eq!(c.next_transition_at, Some(due));

    // A minute before the deadline nothing happens.
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 09:14")), vec![]);
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Running);
    // Due Monday 09:15 means breached after that: the deadline itself is
    // still in time.
    assert_eq!(t.apply_due(FR, 1, due), vec![]);
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.breached_at, None);
    assert_eq!(c.next_transition_at, Some(due));
    // One microsecond later: breached, dated at the deadline itself.
    assert_eq!(t.apply_due(FR, 1, due + 1), vec![Transition::Breached]);
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Breached);
    assert_eq!(c.breached_at, Some(due));
    assert_eq!(c.next_transition_at, None);
    // Exactly once: the worker running again (or late) finds nothing.
    assert_eq!(t.apply_due(FR, 1, due + 1), vec![]);
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 09:16")), vec![]);
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-24 12:00")), vec![]);
    // The breach survives a reconcile with unchanged facts.
    t.reconcile(ny("2026-11-23 10:00"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Breached);
    assert_eq!(t.clock(FR, 1).breached_at, Some(due));
}

#[test]
fn warning_at_half_the_target_then_breach() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut policy = targets(Some(hours(2)), None, None);
    policy.warn_fraction = Some(0.5);
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy);
    t.reconcile(created);

    // Target 2 h from Mon 10:00: warning after 1 h (11:00), due 12:00.
    let c = t.clock(FR, 1);
    assert_eq!(c.warn_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(c.due_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(c.next_transition_at, c.warn_at);

    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 10:59")), vec![]);
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 11:00")),
        vec![Transition::DueSoon]
    );
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::DueSoon);
    assert_eq!(c.warned_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(c.next_transition_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 11:30")), vec![]);

    // At 12:00 the clock is due, not yet late; a minute later it breached,
    // dated at the deadline.
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 12:00")), vec![]);
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 12:01")),
        vec![Transition::Breached]
    );
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Breached);
    assert_eq!(c.warned_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(c.breached_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(c.next_transition_at, None);
}

#[test]
fn a_breached_ticket_paused_for_the_customer_still_shows_breached() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(2)), None, Some(hours(8))),
    );
    t.reconcile(created);
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 12:01")),
        vec![Transition::Breached]
    );
    t.set_paused(true, ny("2026-11-23 13:00"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Paused);
    assert_eq!(t.clock(RES, 1).status, ClockStatus::Paused);
    let summary = summarize(&t.clocks);
    assert_eq!(summary.status, Some(ClockStatus::Breached));
    assert_eq!(summary.breached_at, Some(ny("2026-11-23 12:00")));
    // Nothing is due while paused.
    assert_eq!(summary.due_at, None);
    // Without the breach, the paused ticket shows paused.
    let mut u = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(2)), None, Some(hours(8))),
    );
    u.reconcile(created);
    u.set_paused(true, ny("2026-11-23 11:00"));
    assert_eq!(summarize(&u.clocks).status, Some(ClockStatus::Paused));

    // Paused at 13:00, after the 12:00 deadline that due processing had not
    // recorded yet: the pause does not count, the breach is still due, and
    // due processing records it during the pause, dated at the deadline.
    // The ticket ends as the first one, whenever due processing ran.
    let mut v = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(2)), None, Some(hours(8))),
    );
    v.reconcile(created);
    v.set_paused(true, ny("2026-11-23 13:00"));
    assert_eq!(
        v.clock(FR, 1).next_transition_at,
        Some(ny("2026-11-23 12:00"))
    );
    assert_eq!(v.clock(RES, 1).next_transition_at, None);
    assert_eq!(summarize(&v.clocks).status, Some(ClockStatus::Paused));
    assert_eq!(
        v.apply_due(FR, 1, ny("2026-11-23 13:01")),
        vec![Transition::Breached]
    );
    let fr = v.clock(FR, 1);
    assert_eq!(fr.status, ClockStatus::Paused);
    assert_eq!(fr.breached_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(fr.next_transition_at, None);
    assert_eq!(v.apply_due(FR, 1, ny("2026-11-23 14:00")), vec![]);
    assert_eq!(summarize(&v.clocks), summary);
}

#[test]
fn warning_and_breach_both_due_fold_into_one_breach() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut policy = targets(Some(hours(2)), None, None);
    policy.warn_fraction = Some(0.5);
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy);
    t.reconcile(created);

    // The worker first looks at 12:30: warning (11:00) and breach (12:00) are
    // both past; only the breach is reported and the warning never is.
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 12:30")),
        vec![Transition::Breached]
    );
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Breached);
    assert_eq!(c.warned_at, None);
    assert_eq!(c.breached_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(c.next_transition_at, None);
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 13:00")), vec![]);
}

#[test]
fn worker_first_looking_exactly_at_the_deadline_warns_without_breaching() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut policy = targets(Some(hours(2)), None, None);
    policy.warn_fraction = Some(0.5);
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy);
    t.reconcile(created);
    // Warning 11:00, due 12:00. The worker first looks at 12:00 exactly: the
    // warning is past but the clock is still in time, so it only warns.
    let due = ny("2026-11-23 12:00");
    assert_eq!(t.apply_due(FR, 1, due), vec![Transition::DueSoon]);
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::DueSoon);
    assert_eq!(c.warned_at, Some(ny("2026-11-23 11:00")));
    // The breach is what is pending now, at the deadline.
    assert_eq!(c.next_transition_at, Some(due));
    assert_eq!(t.apply_due(FR, 1, due), vec![]);
    assert_eq!(t.apply_due(FR, 1, due + 1), vec![Transition::Breached]);
    assert_eq!(t.clock(FR, 1).breached_at, Some(due));
}

#[test]
fn warning_can_land_on_a_closing_time() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-20 16:00");
    let mut policy = targets(Some(hours(2)), None, None);
    policy.warn_fraction = Some(0.5);
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy);
    t.reconcile(created);
    // Half of 2 h from Fri 16:00 is reached at the Friday closing (the
    // earliest instant with 1 h elapsed); the rest runs Mon 09:00-10:00.
    let c = t.clock(FR, 1);
    assert_eq!(c.warn_at, Some(ny("2026-11-20 17:00")));
    assert_eq!(c.due_at, Some(ny("2026-11-23 10:00")));
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-21 12:00")),
        vec![Transition::DueSoon]
    );
    assert_eq!(t.clock(FR, 1).warned_at, Some(ny("2026-11-20 17:00")));
}

fn release_policy() -> Targets {
    Targets {
        first_response: Some(hours(4)),
        next_response: None,
        resolution: Some(hours(8)),
        warn_fraction: Some(0.5),
        release_fraction: Some(0.25),
    }
}

#[test]
fn ownership_release_is_scheduled_for_first_response_only_when_releasable() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", release_policy());
    t.releasable = true;
    t.reconcile(created);

    // First response, 4 h from Mon 10:00: release after 1 h (11:00), warning
    // after 2 h (12:00), due after 4 h (14:00).
    let c = t.clock(FR, 1);
    assert_eq!(c.release_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(c.warn_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(c.due_at, Some(ny("2026-11-23 14:00")));
    assert_eq!(c.next_transition_at, Some(ny("2026-11-23 11:00")));
    // Resolution, 8 h: Mon 10:00-17:00 (7 h) + Tue 09:00-10:00; warning
    // after 4 h (Mon 14:00); never a release.
    let r = t.clock(RES, 1);
    assert_eq!(r.release_at, None);
    assert_eq!(r.warn_at, Some(ny("2026-11-23 14:00")));
    assert_eq!(r.due_at, Some(ny("2026-11-24 10:00")));

    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 10:59")), vec![]);
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 11:00")),
        vec![Transition::OwnershipReleased]
    );
    let c = t.clock(FR, 1);
    assert_eq!(c.released_at, Some(ny("2026-11-23 11:00")));
    // A release changes nobody's deadline and is not a status.
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.next_transition_at, Some(ny("2026-11-23 12:00")));
    // Applied once, however often the worker comes back.
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 11:00")), vec![]);
    t.reconcile(ny("2026-11-23 11:30"));
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 11:30")), vec![]);
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 12:00")),
        vec![Transition::DueSoon]
    );
    // Due 14:00: breached only after it.
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 14:00")), vec![]);
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 14:05")),
        vec![Transition::Breached]
    );
    assert_eq!(t.clock(FR, 1).breached_at, Some(ny("2026-11-23 14:00")));
    assert_eq!(t.clock(FR, 1).released_at, Some(ny("2026-11-23 11:00")));
}

#[test]
fn release_and_breach_due_together_are_both_applied() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", release_policy());
    t.releasable = true;
    t.reconcile(created);
    // At 15:00 release (11:00), warning (12:00) and breach (14:00) are all
    // past: the release and the breach, in that order; the warning folds.
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 15:00")),
        vec![Transition::OwnershipReleased, Transition::Breached]
    );
    let c = t.clock(FR, 1);
    assert_eq!(c.released_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(c.breached_at, Some(ny("2026-11-23 14:00")));
    assert_eq!(c.warned_at, None);
    assert_eq!(c.next_transition_at, None);
}

#[test]
fn no_release_without_an_assignee_column_or_a_release_fraction() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    // Not releasable: the release fraction is ignored.
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", release_policy());
    t.reconcile(created);
    assert_eq!(t.clock(FR, 1).release_at, None);
    assert_eq!(
        t.clock(FR, 1).next_transition_at,
        Some(ny("2026-11-23 12:00"))
    );
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 12:00")),
        vec![Transition::DueSoon]
    );
    assert_eq!(t.clock(FR, 1).released_at, None);

    // Releasable, but the policy has no release fraction.
    let mut policy = release_policy();
    policy.release_fraction = None;
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy);
    t.releasable = true;
    t.reconcile(created);
    assert!(t.clocks.iter().all(|c| c.release_at.is_none()));
}

#[test]
fn reply_before_the_deadline_achieves_the_first_response() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), None, None),
    );
    t.reconcile(created);
    // Due 11:00; the reply comes at 10:40.
    t.agent_reply(ny("2026-11-23 10:40"));
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Achieved);
    assert_eq!(c.stopped_at, Some(ny("2026-11-23 10:40")));
    assert_eq!(c.due_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(c.next_transition_at, None);
    assert!(!c.is_open());
    // A stopped clock has nothing more to apply.
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 12:00")), vec![]);
    assert_eq!(t.clock(FR, 1).breached_at, None);
}

#[test]
fn reply_after_the_deadline_misses_the_first_response() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), None, None),
    );
    t.reconcile(created);
    // Due 11:00; the worker never ran; the reply comes at 11:20.
    t.agent_reply(ny("2026-11-23 11:20"));
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Missed);
    assert_eq!(c.stopped_at, Some(ny("2026-11-23 11:20")));
    assert_eq!(c.breached_at, None);
}

#[test]
fn reply_on_a_breached_clock_misses_it() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), None, None),
    );
    t.reconcile(created);
    // Due 11:00; the worker finds it late at 11:01.
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 11:01")),
        vec![Transition::Breached]
    );
    t.agent_reply(ny("2026-11-23 11:05"));
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Missed);
    assert_eq!(c.breached_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(c.stopped_at, Some(ny("2026-11-23 11:05")));
}

#[test]
fn reply_dated_before_creation_counts_as_an_immediate_response() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), None, None),
    );
    // Imported data: the reply is dated half an hour before the ticket.
    t.facts.last_agent_reply_at = Some(ny("2026-11-23 09:30"));
    t.reconcile(ny("2026-11-23 12:00"));
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Achieved);
    assert_eq!(c.stopped_at, Some(created));
}

#[test]
fn reply_while_paused_counts_the_pause_up_to_the_reply() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), None, None),
    );
    t.reconcile(created);
    t.set_paused(true, ny("2026-11-23 10:15"));
    // Reply at 12:30, still paused: 2 h 15 min paused, so the deadline is
    // 10:00 + 1 h + 2 h 15 min = 13:15 and the reply is on time.
    t.agent_reply(ny("2026-11-23 12:30"));
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Achieved);
    assert_eq!(c.paused_time, minutes(135));
    assert_eq!(c.paused_since, None);
    assert_eq!(c.due_at, Some(ny("2026-11-23 13:15")));
    assert_eq!(c.stopped_at, Some(ny("2026-11-23 12:30")));
}

#[test]
fn next_response_cycles_open_on_customer_messages_and_stop_on_replies() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), Some(hours(2)), None),
    );
    t.customer_message(created);
    // No next response before the first reply: that is the first response.
    assert_eq!(t.cycles(NR), Vec::<i32>::new());

    t.agent_reply(ny("2026-11-23 10:30"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Achieved);
    // The customer's message predates the reply: nothing to answer.
    assert_eq!(t.cycles(NR), Vec::<i32>::new());

    // Customer writes at 11:00: cycle 1, due 11:00 + 2 h = 13:00.
    t.customer_message(ny("2026-11-23 11:00"));
    assert_eq!(t.cycles(NR), vec![1]);
    let c = t.clock(NR, 1);
    assert_eq!(c.started_at, ny("2026-11-23 11:00"));
    assert_eq!(c.due_at, Some(ny("2026-11-23 13:00")));
    assert_eq!(c.status, ClockStatus::Running);

    // A second message of the same run does not open another cycle nor move
    // the start.
    t.customer_message(ny("2026-11-23 11:30"));
    assert_eq!(t.cycles(NR), vec![1]);
    assert_eq!(t.clock(NR, 1).started_at, ny("2026-11-23 11:00"));

    // The reply at 12:00 stops cycle 1 in time.
    t.agent_reply(ny("2026-11-23 12:00"));
    let c = t.clock(NR, 1);
    assert_eq!(c.status, ClockStatus::Achieved);
    assert_eq!(c.stopped_at, Some(ny("2026-11-23 12:00")));
    t.reconcile(ny("2026-11-23 12:10"));
    assert_eq!(t.cycles(NR), vec![1]);

    // Customer writes at 16:30: cycle 2, 2 h = Mon 16:30-17:00 (30 min) +
    // Tue 09:00-10:30 (1 h 30 min).
    t.customer_message(ny("2026-11-23 16:30"));
    assert_eq!(t.cycles(NR), vec![1, 2]);
    assert_eq!(t.clock(NR, 2).due_at, Some(ny("2026-11-24 10:30")));
    // Reply at Tue 11:00, half an hour late.
    t.agent_reply(ny("2026-11-24 11:00"));
    assert_eq!(t.clock(NR, 2).status, ClockStatus::Missed);
    assert_eq!(t.clock(NR, 1).status, ClockStatus::Achieved);

    t.customer_message(ny("2026-11-24 11:15"));
    assert_eq!(t.cycles(NR), vec![1, 2, 3]);
    assert_eq!(t.clock(NR, 3).started_at, ny("2026-11-24 11:15"));
    // The first response is untouched by all of this.
    assert_eq!(t.clock(FR, 1).stopped_at, Some(ny("2026-11-23 10:30")));
}

#[test]
fn reply_and_new_message_seen_together_close_one_cycle_and_open_the_next() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(None, Some(hours(2)), None),
    );
    t.agent_reply(ny("2026-11-23 10:10"));
    t.customer_message(ny("2026-11-23 10:20"));
    assert_eq!(t.cycles(NR), vec![1]);
    // Reply at 11:00 and a new message at 11:10 reach reconcile together.
    t.facts.last_agent_reply_at = Some(ny("2026-11-23 11:00"));
    t.facts.last_customer_message_at = Some(ny("2026-11-23 11:10"));
    t.reconcile(ny("2026-11-23 11:15"));
    assert_eq!(t.cycles(NR), vec![1, 2]);
    assert_eq!(t.clock(NR, 1).status, ClockStatus::Achieved);
    assert_eq!(t.clock(NR, 1).stopped_at, Some(ny("2026-11-23 11:00")));
    let c = t.clock(NR, 2);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.started_at, ny("2026-11-23 11:10"));
    assert_eq!(c.due_at, Some(ny("2026-11-23 13:10")));
}

#[test]
fn closing_stops_resolution_and_cancels_unanswered_response_clocks() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(6)), None, Some(hours(8))),
    );
    t.reconcile(created);
    // First response 6 h from Mon 10:00: Mon 16:00. Resolution 8 h: 7 h on
    // Monday, 1 h on Tuesday.
    assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 16:00")));
    assert_eq!(t.clock(RES, 1).due_at, Some(ny("2026-11-24 10:00")));

    // Closed Mon 15:00 without a reply, before the first-response deadline:
    // that clock is cancelled.
    t.set_closed(true, ny("2026-11-23 15:00"));
    let fr = t.clock(FR, 1);
    assert_eq!(fr.status, ClockStatus::Cancelled);
    assert_eq!(fr.stopped_at, Some(ny("2026-11-23 15:00")));
    assert_eq!(fr.next_transition_at, None);
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Achieved);
    assert_eq!(res.stopped_at, Some(ny("2026-11-23 15:00")));
    assert_eq!(res.next_transition_at, None);
    assert_eq!(t.apply_due(RES, 1, ny("2026-11-24 12:00")), vec![]);
    t.reconcile(ny("2026-11-24 12:00"));
    assert_eq!(t.clock(RES, 1).stopped_at, Some(ny("2026-11-23 15:00")));

    // Reopened Wed 11:00. Closed business time: Mon 15:00-17:00 (2 h) + Tue
    // (8 h) + Wed 09:00-11:00 (2 h) = 12 h. So the resolution deadline is
    // Mon 10:00 + 8 h + 12 h = 20 h of business time: Mon 7 h, Tue 8 h,
    // Wed 09:00-14:00 (5 h), i.e. Wed 14:00.
    let reopened = ny("2026-11-25 11:00");
    t.set_closed(false, reopened);
    let closed_time = cal.between(ny("2026-11-23 15:00"), reopened).unwrap();
    assert_eq!(closed_time, hours(12));
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Running);
    assert_eq!(res.paused_time, closed_time);
    assert_eq!(res.paused_since, None);
    assert_eq!(res.stopped_at, None);
    assert_eq!(res.due_at, Some(ny("2026-11-25 14:00")));
    assert_eq!(res.next_transition_at, Some(ny("2026-11-25 14:00")));
    // The first response, still unanswered, resumes too: it was cancelled at
    // Mon 15:00, before its 16:00 deadline, so the same 12 h closed do not
    // count. Due Mon 10:00 + 6 h + 12 h = 18 h of business time: Mon 7 h,
    // Tue 8 h, Wed 09:00-12:00 (3 h), i.e. Wed 12:00.
    let fr = t.clock(FR, 1);
    assert_eq!(fr.status, ClockStatus::Running);
    assert_eq!(fr.paused_time, closed_time);
    assert_eq!(fr.stopped_at, None);
    assert_eq!(fr.due_at, Some(ny("2026-11-25 12:00")));

    // Closed again at Wed 15:00, an hour past the moved resolution deadline
    // and three past the first-response one, still without a reply: both
    // missed, with no breach recorded.
    t.set_closed(true, ny("2026-11-25 15:00"));
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Missed);
    assert_eq!(res.breached_at, None);
    assert_eq!(res.stopped_at, Some(ny("2026-11-25 15:00")));
    let fr = t.clock(FR, 1);
    assert_eq!(fr.status, ClockStatus::Missed);
    assert_eq!(fr.breached_at, None);
    assert_eq!(fr.stopped_at, Some(ny("2026-11-25 15:00")));
}

#[test]
fn closing_after_a_breach_misses_the_resolution_and_reopening_keeps_the_breach() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(None, None, Some(hours(2))),
    );
    t.reconcile(created);
    // Due 12:00; the worker finds it late at 12:01.
    assert_eq!(
        t.apply_due(RES, 1, ny("2026-11-23 12:01")),
        vec![Transition::Breached]
    );
    t.set_closed(true, ny("2026-11-23 12:30"));
    assert_eq!(t.clock(RES, 1).status, ClockStatus::Missed);
    // Reopened the next morning: back to breached, not to running, and the
    // breach is not reported again.
    t.set_closed(false, ny("2026-11-24 09:30"));
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Breached);
    assert_eq!(res.breached_at, Some(ny("2026-11-23 12:00")));
    // The time closed (Mon 12:30-17:00 and Tue 09:00-09:30, 5 h of business
    // time) began after the deadline, with the breach on record: it does not
    // count, and the deadline stays at Mon 12:00.
    assert_eq!(res.paused_time, 0);
    assert_eq!(res.due_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(res.next_transition_at, None);
    assert_eq!(t.apply_due(RES, 1, ny("2026-11-24 17:00")), vec![]);
}

#[test]
fn reopened_while_paused_stays_paused_and_counts_closed_and_paused_time() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(None, None, Some(hours(4))),
    );
    t.reconcile(created);
    t.set_closed(true, ny("2026-11-23 11:00"));
    // Reopened into a pause status at 13:00.
    t.facts.closed = false;
    t.facts.paused = true;
    t.reconcile(ny("2026-11-23 13:00"));
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Paused);
    assert_eq!(res.paused_since, Some(ny("2026-11-23 11:00")));
    assert_eq!(res.next_transition_at, None);
    // Unpaused at 14:00: closed 11:00-13:00 and paused 13:00-14:00, 3 h; due
    // 10:00 + 4 h + 3 h = 17:00.
    t.set_paused(false, ny("2026-11-23 14:00"));
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Running);
    assert_eq!(res.paused_time, hours(3));
    assert_eq!(res.due_at, Some(ny("2026-11-23 17:00")));
}

#[test]
fn pause_freezes_the_clock_and_resume_shifts_its_deadlines() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut policy = targets(None, None, Some(hours(4)));
    policy.warn_fraction = Some(0.5);
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy);
    t.reconcile(created);
    // 4 h from Mon 10:00: warning 12:00, due 14:00.
    assert_eq!(t.clock(RES, 1).warn_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(t.clock(RES, 1).due_at, Some(ny("2026-11-23 14:00")));

    let paused_at = ny("2026-11-23 11:00");
    t.set_paused(true, paused_at);
    let c = t.clock(RES, 1);
    assert_eq!(c.status, ClockStatus::Paused);
    assert_eq!(c.paused_since, Some(paused_at));
    assert_eq!(c.next_transition_at, None);
    // The worker passes the original deadline while the clock is paused.
    assert_eq!(t.apply_due(RES, 1, ny("2026-11-23 15:00")), vec![]);
    assert_eq!(t.clock(RES, 1).status, ClockStatus::Paused);
    // Reconciling while still paused does not restart the pause.
    t.reconcile(ny("2026-11-23 15:10"));
    assert_eq!(t.clock(RES, 1).paused_since, Some(paused_at));

    // Resumed at 15:30: 4 h 30 min of business time paused.
    let resumed_at = ny("2026-11-23 15:30");
    t.set_paused(false, resumed_at);
    let paused = cal.between(paused_at, resumed_at).unwrap();
    assert_eq!(paused, minutes(270));
    let c = t.clock(RES, 1);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.paused_since, None);
    assert_eq!(c.paused_time, paused);
    // Due 10:00 + 4 h + 4 h 30 min = 8 h 30 min: Mon 7 h, Tue 09:00-10:30.
    assert_eq!(c.due_at, Some(ny("2026-11-24 10:30")));
    assert_eq!(c.due_at, Some(cal.add(created, hours(4) + paused).unwrap()));
    assert_eq!(
        c.due_at,
        Some(cal.add(ny("2026-11-23 14:00"), paused).unwrap())
    );
    // Warning 10:00 + 2 h + 4 h 30 min = 16:30.
    assert_eq!(c.warn_at, Some(ny("2026-11-23 16:30")));
    assert_eq!(c.next_transition_at, Some(ny("2026-11-23 16:30")));
}

#[test]
fn pause_over_a_weekend_shifts_by_business_time_only() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-20 16:00");
    // 2 h from Fri 16:00: Fri 16:00-17:00 and Mon 09:00-10:00.
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(2)), None, None),
    );
    t.reconcile(created);
    assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 10:00")));
    // Paused Fri 17:30 to Mon 08:30: no business time at all.
    t.set_paused(true, ny("2026-11-20 17:30"));
    t.set_paused(false, ny("2026-11-23 08:30"));
    let c = t.clock(FR, 1);
    assert_eq!(c.paused_time, 0);
    assert_eq!(c.due_at, Some(ny("2026-11-23 10:00")));
    assert_eq!(c.status, ClockStatus::Running);

    // Paused again Mon 09:30 (after 1 h 30 min used) to Tue 09:15: Mon
    // 09:30-17:00 (7 h 30 min) + Tue 09:00-09:15 (15 min) paused, so the
    // remaining 30 min run Tue 09:15-09:45.
    t.set_paused(true, ny("2026-11-23 09:30"));
    t.set_paused(false, ny("2026-11-24 09:15"));
    let c = t.clock(FR, 1);
    assert_eq!(c.paused_time, minutes(465));
    assert_eq!(c.due_at, Some(ny("2026-11-24 09:45")));
}

#[test]
fn pause_spanning_a_weekend_counts_the_weekday_parts() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-20 16:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(2)), None, None),
    );
    t.reconcile(created);
    // Paused Fri 16:30 to Mon 09:30: 30 min Friday + 30 min Monday.
    t.set_paused(true, ny("2026-11-20 16:30"));
    t.set_paused(false, ny("2026-11-23 09:30"));
    let c = t.clock(FR, 1);
    assert_eq!(c.paused_time, hours(1));
    assert_eq!(c.due_at, Some(ny("2026-11-23 11:00")));
}

#[test]
fn policy_switch_remeasures_from_the_original_start_and_cancels_dropped_metrics() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let standard = targets(Some(hours(4)), Some(hours(2)), Some(hours(16)));
    let priority = targets(Some(hours(1)), None, None);
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "standard", standard.clone());
    t.reconcile(created);
    // First response 4 h: Mon 14:00. Resolution 16 h: Mon 7 h + Tue 8 h + Wed
    // 09:00-10:00.
    assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 14:00")));
    assert_eq!(t.clock(RES, 1).due_at, Some(ny("2026-11-25 10:00")));

    // Switched to "priority" at 10:30: first response 1 h from the original
    // start (10:00), so due 11:00; no resolution target, so cancelled.
    t.switch_policy(Some(("priority", priority)), ny("2026-11-23 10:30"));
    let fr = t.clock(FR, 1);
    assert_eq!(fr.policy, "priority");
    assert_eq!(fr.target, hours(1));
    assert_eq!(fr.started_at, created);
    assert_eq!(fr.due_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(fr.next_transition_at, Some(ny("2026-11-23 11:00")));
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Cancelled);
    assert_eq!(res.stopped_at, Some(ny("2026-11-23 10:30")));
    assert_eq!(res.next_transition_at, None);

    // Back to "standard" at 10:45: the first response is 4 h again; the
    // cancelled resolution clock resumes (it is not duplicated). The 15 min
    // without a resolution target began at 10:30, before its deadline (Wed
    // 10:00), and do not count: due Wed 10:15.
    t.switch_policy(Some(("standard", standard)), ny("2026-11-23 10:45"));
    assert_eq!(t.clock(FR, 1).policy, "standard");
    assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 14:00")));
    assert_eq!(t.cycles(RES), vec![1]);
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Running);
    assert_eq!(res.policy, "standard");
    assert_eq!(res.stopped_at, None);
    assert_eq!(res.paused_time, minutes(15));
    assert_eq!(res.due_at, Some(ny("2026-11-25 10:15")));

    // No policy matches any more at 11:30: every open clock is cancelled.
    t.switch_policy(None, ny("2026-11-23 11:30"));
    for metric in [FR, RES] {
        let c = t.clock(metric, 1);
        assert_eq!(c.status, ClockStatus::Cancelled);
        assert_eq!(c.stopped_at, Some(ny("2026-11-23 11:30")));
        assert_eq!(c.next_transition_at, None);
    }
    assert!(t.clocks.iter().all(|c| !c.is_open()));
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 15:00")), vec![]);
}

#[test]
fn policy_switch_keeps_a_breach_already_applied() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "fast",
        targets(Some(hours(1)), None, None),
    );
    t.reconcile(created);
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 11:01")),
        vec![Transition::Breached]
    );
    // A slower policy moves the deadline to 14:00, but the breach was
    // reported and stays.
    t.switch_policy(
        Some(("slow", targets(Some(hours(4)), None, None))),
        ny("2026-11-23 11:30"),
    );
    let c = t.clock(FR, 1);
    assert_eq!(c.due_at, Some(ny("2026-11-23 14:00")));
    assert_eq!(c.status, ClockStatus::Breached);
    assert_eq!(c.breached_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(c.next_transition_at, None);
    t.agent_reply(ny("2026-11-23 12:00"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Missed);
}

#[test]
fn always_open_hours_are_plain_elapsed_time() {
    let created = utc("2026-11-20 16:45");
    let mut policy = targets(Some(minutes(30)), None, Some(hours(72)));
    policy.warn_fraction = Some(0.5);
    let mut t = Ticket::new(Hours::AlwaysOpen, created, "p", policy);
    t.reconcile(created);
    // Fri 16:45 + 30 min = 17:15, warning at 17:00; + 72 h = Mon 16:45,
    // warning at + 36 h = Sun 04:45.
    let fr = t.clock(FR, 1);
    assert_eq!(fr.due_at, Some(utc("2026-11-20 17:15")));
    assert_eq!(fr.warn_at, Some(utc("2026-11-20 17:00")));
    let res = t.clock(RES, 1);
    assert_eq!(res.due_at, Some(utc("2026-11-23 16:45")));
    assert_eq!(res.warn_at, Some(utc("2026-11-22 04:45")));

    // The first response warns at 17:00 and breaches after 17:15 (the worker
    // sees it at 17:16), before any pause.
    assert_eq!(
        t.apply_due(FR, 1, utc("2026-11-20 17:00")),
        vec![Transition::DueSoon]
    );
    assert_eq!(t.apply_due(FR, 1, utc("2026-11-20 17:15")), vec![]);
    assert_eq!(
        t.apply_due(FR, 1, utc("2026-11-20 17:16")),
        vec![Transition::Breached]
    );

    // Paused Sat 00:00-06:00: a weekend counts too, 6 h.
    t.set_paused(true, utc("2026-11-21 00:00"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Paused);
    t.set_paused(false, utc("2026-11-21 06:00"));
    let res = t.clock(RES, 1);
    assert_eq!(res.paused_time, hours(6));
    // 72 h + 6 h from Fri 16:45 = Mon 22:45; warning 36 h + 6 h = Sun 10:45.
    assert_eq!(res.due_at, Some(utc("2026-11-23 22:45")));
    assert_eq!(res.warn_at, Some(utc("2026-11-22 10:45")));
    assert_eq!(res.next_transition_at, Some(utc("2026-11-22 10:45")));
    // The breach stays, dated where it happened.
    let fr = t.clock(FR, 1);
    assert_eq!(fr.status, ClockStatus::Breached);
    assert_eq!(fr.breached_at, Some(utc("2026-11-20 17:15")));
}

#[test]
fn a_holiday_in_the_middle_pushes_the_deadline_a_day() {
    // 2026-11-26 is Thanksgiving, a Thursday.
    let with = weekdays(NY, r#""2026-11-26""#);
    let without = weekdays(NY, "");
    let created = ny("2026-11-25 15:00");
    let policy = targets(Some(hours(3)), None, Some(hours(4)));
    let mut a = Ticket::new(Hours::Calendar(&with), created, "p", policy.clone());
    let mut b = Ticket::new(Hours::Calendar(&without), created, "p", policy);
    a.reconcile(created);
    b.reconcile(created);
    // Resolution 4 h: Wed 15:00-17:00 (2 h), then 2 h of the next open day:
    // Thu 11:00 normally, Fri 11:00 with Thursday closed.
    assert_eq!(b.clock(RES, 1).due_at, Some(ny("2026-11-26 11:00")));
    assert_eq!(a.clock(RES, 1).due_at, Some(ny("2026-11-27 11:00")));
    // First response 3 h: 2 h Wednesday, then Thu 10:00 or Fri 10:00.
    assert_eq!(b.clock(FR, 1).due_at, Some(ny("2026-11-26 10:00")));
    assert_eq!(a.clock(FR, 1).due_at, Some(ny("2026-11-27 10:00")));
    // A pause over the holiday costs nothing.
    a.set_paused(true, ny("2026-11-25 18:00"));
    a.set_paused(false, ny("2026-11-27 08:00"));
    assert_eq!(a.clock(RES, 1).paused_time, 0);
    assert_eq!(a.clock(RES, 1).due_at, Some(ny("2026-11-27 11:00")));
}

// ---------------------------------------------------------------------------
// The deadline instant, and pauses that begin after the deadline.
//
// A clock is breached only after its deadline: the instant itself is still in
// time. A pause counts only if it begins at or before the deadline as it
// stands when the pause ends (with the clock's target then) and no breach is
// recorded: a pause, or the time a resumed clock spent stopped (closed, or
// under a policy without its target), that begins once the clock is already
// late does not move its deadline, whether or not the worker has noticed the
// lateness yet. A pause is judged once: one that counted stays counted after
// a later policy switch. Likewise a response clock whose ticket closes
// without a reply is missed if its deadline is before the close, noticed by
// the worker or not, and otherwise cancelled.
// ---------------------------------------------------------------------------

#[test]
fn reply_exactly_at_the_deadline_is_achieved_whether_or_not_the_worker_ran_first() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let due = ny("2026-11-23 11:00");
    let policy = targets(Some(hours(1)), None, None);
    // The reply is recorded first, at the deadline: in time.
    let mut a = Ticket::new(Hours::Calendar(&cal), created, "p", policy.clone());
    a.reconcile(created);
    a.agent_reply(due);
    assert_eq!(a.clock(FR, 1).status, ClockStatus::Achieved);
    // The worker runs first at the same instant: nothing is late yet, and
    // the reply then achieves the clock just the same.
    let mut b = Ticket::new(Hours::Calendar(&cal), created, "p", policy.clone());
    b.reconcile(created);
    assert_eq!(b.apply_due(FR, 1, due), vec![]);
    b.agent_reply(due);
    assert_eq!(b.clock(FR, 1).status, ClockStatus::Achieved);
    assert_eq!(b.clock(FR, 1).breached_at, None);
    assert_eq!(a.clocks, b.clocks);

    // One microsecond later is late, again whether or not the worker ran.
    let mut c = Ticket::new(Hours::Calendar(&cal), created, "p", policy.clone());
    c.reconcile(created);
    c.agent_reply(due + 1);
    assert_eq!(c.clock(FR, 1).status, ClockStatus::Missed);
    assert_eq!(c.clock(FR, 1).breached_at, None);
    let mut d = Ticket::new(Hours::Calendar(&cal), created, "p", policy);
    d.reconcile(created);
    assert_eq!(d.apply_due(FR, 1, due + 1), vec![Transition::Breached]);
    d.agent_reply(due + 1);
    assert_eq!(d.clock(FR, 1).status, ClockStatus::Missed);
    assert_eq!(d.clock(FR, 1).breached_at, Some(due));
}

#[test]
fn pause_after_an_unrecorded_breach_does_not_move_its_date() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let policy = targets(Some(hours(1)), None, None);
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy.clone());
    t.reconcile(created);
    // Due 11:00. The worker has not run yet when the ticket is paused at
    // 11:30; it is resumed at 12:30 and the worker runs then.
    t.set_paused(true, ny("2026-11-23 11:30"));
    t.set_paused(false, ny("2026-11-23 12:30"));
    // The pause began after the deadline: it does not count.
    let c = t.clock(FR, 1);
    assert_eq!(c.paused_time, 0);
    assert_eq!(c.due_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.next_transition_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 12:30")),
        vec![Transition::Breached]
    );
    // Breached at 11:00, as when the worker ran before the pause.
    assert_eq!(t.clock(FR, 1).breached_at, Some(ny("2026-11-23 11:00")));

    let mut eager = Ticket::new(Hours::Calendar(&cal), created, "p", policy);
    eager.reconcile(created);
    assert_eq!(
        eager.apply_due(FR, 1, ny("2026-11-23 11:30")),
        vec![Transition::Breached]
    );
    eager.set_paused(true, ny("2026-11-23 11:30"));
    eager.set_paused(false, ny("2026-11-23 12:30"));
    assert_eq!(eager.clocks, t.clocks);
}

#[test]
fn pause_after_an_unrecorded_deadline_cannot_turn_a_late_reply_into_an_achievement() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 09:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(8)), None, None),
    );
    t.reconcile(created);
    // First response due Mon 17:00. No worker run; the ticket is paused at
    // Mon 18:00 and the agent replies, still paused, on Wednesday at 15:00.
    assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 17:00")));
    t.set_paused(true, ny("2026-11-23 18:00"));
    t.agent_reply(ny("2026-11-25 15:00"));
    // Missed, two days late. Had the pause counted, its 14 h of business
    // time (Tue 8 h + Wed 09:00-15:00) would have moved the deadline to Mon
    // 09:00 + 8 h + 14 h = Wed 15:00, the reply instant itself.
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Missed);
    assert_eq!(c.paused_time, 0);
    assert_eq!(c.paused_since, None);
    assert_eq!(c.due_at, Some(ny("2026-11-23 17:00")));
    assert_eq!(c.stopped_at, Some(ny("2026-11-25 15:00")));
    assert_eq!(c.breached_at, None);
}

#[test]
fn pause_beginning_exactly_at_the_deadline_counts() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), None, None),
    );
    t.reconcile(created);
    // Due 11:00. The worker runs at 11:00 (nothing: still in time) and the
    // ticket is paused at that same instant, until 12:00.
    let due = ny("2026-11-23 11:00");
    assert_eq!(t.apply_due(FR, 1, due), vec![]);
    t.set_paused(true, due);
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 11:30")), vec![]);
    t.set_paused(false, ny("2026-11-23 12:00"));
    // The hour paused counts: due 10:00 + 1 h + 1 h = 12:00.
    let c = t.clock(FR, 1);
    assert_eq!(c.paused_time, hours(1));
    assert_eq!(c.due_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 12:00")), vec![]);
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 12:01")),
        vec![Transition::Breached]
    );
    assert_eq!(t.clock(FR, 1).breached_at, Some(ny("2026-11-23 12:00")));
}

#[test]
fn reply_during_a_pause_begun_at_the_deadline_can_still_be_on_time() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 09:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(8)), None, None),
    );
    t.reconcile(created);
    // Due Mon 17:00, the closing time; paused at exactly that instant. The
    // reply, still paused, at Wed 15:00: the pause holds 14 h of business
    // time (Tue 8 h + Wed 09:00-15:00), so the deadline moved to Mon 09:00 +
    // 22 h = Wed 15:00, the reply instant, which is still in time.
    t.set_paused(true, ny("2026-11-23 17:00"));
    t.agent_reply(ny("2026-11-25 15:00"));
    let c = t.clock(FR, 1);
    assert_eq!(c.paused_time, hours(14));
    assert_eq!(c.due_at, Some(ny("2026-11-25 15:00")));
    assert_eq!(c.status, ClockStatus::Achieved);
}

#[test]
fn only_pauses_begun_by_the_deadline_they_move_count() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), None, None),
    );
    t.reconcile(created);
    // Due 11:00. Paused 10:30-11:00: due 11:30.
    t.set_paused(true, ny("2026-11-23 10:30"));
    t.set_paused(false, ny("2026-11-23 11:00"));
    assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 11:30")));
    // Paused again at 11:30, the moved deadline itself, until 11:45: counts,
    // due 11:45.
    t.set_paused(true, ny("2026-11-23 11:30"));
    t.set_paused(false, ny("2026-11-23 11:45"));
    assert_eq!(t.clock(FR, 1).paused_time, minutes(45));
    assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 11:45")));
    // Paused a third time at 12:00, after it; the reply comes at 12:10 during
    // that pause, which does not count: missed.
    t.set_paused(true, ny("2026-11-23 12:00"));
    t.agent_reply(ny("2026-11-23 12:10"));
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Missed);
    assert_eq!(c.paused_time, minutes(45));
    assert_eq!(c.due_at, Some(ny("2026-11-23 11:45")));
    assert_eq!(c.stopped_at, Some(ny("2026-11-23 12:10")));
}

#[test]
fn reopening_after_an_unrecorded_resolution_breach_does_not_move_its_date() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(None, None, Some(hours(2))),
    );
    t.reconcile(created);
    // Resolution due 12:00; closed late at 13:00 (missed), then reopened at
    // 14:00 with the breach still unrecorded. The hour closed began after the
    // deadline and does not count.
    t.set_closed(true, ny("2026-11-23 13:00"));
    assert_eq!(t.clock(RES, 1).status, ClockStatus::Missed);
    t.set_closed(false, ny("2026-11-23 14:00"));
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Running);
    assert_eq!(res.paused_time, 0);
    assert_eq!(res.due_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(
        t.apply_due(RES, 1, ny("2026-11-23 14:00")),
        vec![Transition::Breached]
    );
    assert_eq!(t.clock(RES, 1).breached_at, Some(ny("2026-11-23 12:00")));
}

#[test]
fn reopening_a_resolution_closed_exactly_at_its_deadline_counts_the_closed_time() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(None, None, Some(hours(2))),
    );
    t.reconcile(created);
    // Due 12:00 and closed at 12:00: achieved.
    t.set_closed(true, ny("2026-11-23 12:00"));
    assert_eq!(t.clock(RES, 1).status, ClockStatus::Achieved);
    // Reopened at 13:00: the hour closed counts, due 10:00 + 2 h + 1 h =
    // 13:00, which is now and still in time.
    t.set_closed(false, ny("2026-11-23 13:00"));
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Running);
    assert_eq!(res.paused_time, hours(1));
    assert_eq!(res.due_at, Some(ny("2026-11-23 13:00")));
    assert_eq!(t.apply_due(RES, 1, ny("2026-11-23 13:00")), vec![]);
    assert_eq!(
        t.apply_due(RES, 1, ny("2026-11-23 13:01")),
        vec![Transition::Breached]
    );
    assert_eq!(t.clock(RES, 1).breached_at, Some(ny("2026-11-23 13:00")));
}

#[test]
fn policy_switch_while_paused_to_an_exceeded_target_breaches_at_its_deadline() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let slow = targets(Some(hours(4)), None, None);
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "slow", slow.clone());
    t.reconcile(created);
    t.set_paused(true, ny("2026-11-23 11:00"));
    // Still paused at 12:00, the ticket moves to a 30 min policy, measured
    // from the original start: that deadline, 10:30, passed before the pause,
    // so the pause does not count.
    t.switch_policy(
        Some(("fast", targets(Some(minutes(30)), None, None))),
        ny("2026-11-23 12:00"),
    );
    t.set_paused(false, ny("2026-11-23 13:00"));
    assert_eq!(t.clock(FR, 1).paused_time, 0);
    assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 10:30")));
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 13:00")),
        vec![Transition::Breached]
    );
    assert_eq!(t.clock(FR, 1).breached_at, Some(ny("2026-11-23 10:30")));

    // To a 2 h policy instead, due 12:00: the pause began at 11:00, before
    // that deadline, and counts in full. Paused 11:00-13:00, so due 10:00 +
    // 2 h + 2 h = 14:00.
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "slow", slow);
    t.reconcile(created);
    t.set_paused(true, ny("2026-11-23 11:00"));
    t.switch_policy(
        Some(("medium", targets(Some(hours(2)), None, None))),
        ny("2026-11-23 12:00"),
    );
    t.set_paused(false, ny("2026-11-23 13:00"));
    let c = t.clock(FR, 1);
    assert_eq!(c.paused_time, hours(2));
    assert_eq!(c.due_at, Some(ny("2026-11-23 14:00")));
    assert_eq!(c.status, ClockStatus::Running);
}

// A pause is judged once, when it ends, against the deadline in force then
// (the target of that moment and the pauses counted so far). clock.rs keeps
// only the total of paused time, not the list of pauses, so a later policy
// switch re-measures the clock from its original start with the new target
// plus that total: a pause that counted stays counted, even when the new
// target's own deadline passed before the pause began. This is the defined
// behaviour; compare the switch during the pause above, which gives 10:30.
#[test]
fn policy_switch_after_a_pause_keeps_the_pause_counted_under_the_old_target() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "slow",
        targets(Some(hours(4)), None, None),
    );
    t.reconcile(created);
    // Paused 11:00-12:00 under the 4 h target (due 14:00): the hour counts,
    // due 15:00.
    t.set_paused(true, ny("2026-11-23 11:00"));
    t.set_paused(false, ny("2026-11-23 12:00"));
    assert_eq!(t.clock(FR, 1).paused_time, hours(1));
    assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 15:00")));
    // At 12:30 the ticket moves to a 30 min policy. Its own deadline, 10:30,
    // passed before the pause began, but the hour already counted stays: due
    // 10:00 + 30 min + 1 h = 11:30, an instant inside the pause.
    t.switch_policy(
        Some(("fast", targets(Some(minutes(30)), None, None))),
        ny("2026-11-23 12:30"),
    );
    let c = t.clock(FR, 1);
    assert_eq!(c.target, minutes(30));
    assert_eq!(c.paused_time, hours(1));
    assert_eq!(c.due_at, Some(ny("2026-11-23 11:30")));
    assert_eq!(c.next_transition_at, Some(ny("2026-11-23 11:30")));
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 12:30")),
        vec![Transition::Breached]
    );
    assert_eq!(t.clock(FR, 1).breached_at, Some(ny("2026-11-23 11:30")));
}

#[test]
fn closing_without_a_reply_misses_a_response_clock_past_its_deadline_else_cancels_it() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let policy = targets(Some(hours(1)), Some(hours(1)), None);
    // First response at 10:10 (achieved); the customer writes at 10:20, so
    // next response cycle 1 is due 11:20.
    let answered_then_asked = || {
        let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy.clone());
        t.customer_message(created);
        t.agent_reply(ny("2026-11-23 10:10"));
        t.customer_message(ny("2026-11-23 10:20"));
        assert_eq!(t.clock(NR, 1).due_at, Some(ny("2026-11-23 11:20")));
        t
    };
    let due = ny("2026-11-23 11:20");

    // The worker finds the cycle late at 11:21; closed at 11:30 without a
    // reply: the breach stays on record, missed.
    let mut t = answered_then_asked();
    assert_eq!(
        t.apply_due(NR, 1, ny("2026-11-23 11:21")),
        vec![Transition::Breached]
    );
    t.set_closed(true, ny("2026-11-23 11:30"));
    let nr = t.clock(NR, 1);
    assert_eq!(nr.status, ClockStatus::Missed);
    assert_eq!(nr.breached_at, Some(due));
    assert_eq!(nr.stopped_at, Some(ny("2026-11-23 11:30")));
    assert_eq!(nr.next_transition_at, None);
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Achieved);
    assert_eq!(summarize(&t.clocks).status, Some(ClockStatus::Missed));

    // The same history, but the worker has not run when the ticket closes:
    // the deadline (11:20) is before the close all the same, so the clock
    // is missed too, with no breach recorded. Only the breach differs.
    let mut u = answered_then_asked();
    u.set_closed(true, ny("2026-11-23 11:30"));
    let nr = u.clock(NR, 1);
    assert_eq!(nr.status, ClockStatus::Missed);
    assert_eq!(nr.breached_at, None);
    assert_eq!(nr.stopped_at, Some(ny("2026-11-23 11:30")));
    assert_eq!(nr.next_transition_at, None);
    assert_eq!(summarize(&u.clocks).status, Some(ClockStatus::Missed));
    let mut without_breach = t.clocks.clone();
    without_breach[t.index(NR, 1)].breached_at = None;
    without_breach[t.index(NR, 1)].status = ClockStatus::Missed;
    assert_eq!(without_breach, u.clocks);

    // Closed one microsecond after the deadline: missed.
    let mut v = answered_then_asked();
    v.set_closed(true, due + 1);
    assert_eq!(v.clock(NR, 1).status, ClockStatus::Missed);
    assert_eq!(v.clock(NR, 1).stopped_at, Some(due + 1));

    // Closed exactly at the deadline, which is still in time (the worker
    // running first at that instant finds nothing): cancelled.
    let mut w = answered_then_asked();
    assert_eq!(w.apply_due(NR, 1, due), vec![]);
    w.set_closed(true, due);
    let nr = w.clock(NR, 1);
    assert_eq!(nr.status, ClockStatus::Cancelled);
    assert_eq!(nr.breached_at, None);
    assert_eq!(nr.stopped_at, Some(due));
    assert_eq!(nr.next_transition_at, None);
    // Nothing measured on the cycle: the ticket shows the achieved first
    // response.
    assert_eq!(summarize(&w.clocks).status, Some(ClockStatus::Achieved));

    // Closed at 11:00, well before the deadline: cancelled.
    let mut x = answered_then_asked();
    x.set_closed(true, ny("2026-11-23 11:00"));
    assert_eq!(x.clock(NR, 1).status, ClockStatus::Cancelled);
    assert_eq!(x.clock(NR, 1).stopped_at, Some(ny("2026-11-23 11:00")));
}

#[test]
fn closing_without_a_reply_judges_a_response_clock_by_its_paused_and_switched_deadline() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    // First response 1 h, due 11:00; paused 10:30-11:30, which began before
    // the deadline and counts: due 12:00.
    let paused_an_hour = || {
        let mut t = Ticket::new(
            Hours::Calendar(&cal),
            created,
            "p",
            targets(Some(hours(1)), None, None),
        );
        t.reconcile(created);
        t.set_paused(true, ny("2026-11-23 10:30"));
        t.set_paused(false, ny("2026-11-23 11:30"));
        assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 12:00")));
        t
    };
    // Closed at 11:45, after the original 11:00 but before the moved
    // deadline: cancelled.
    let mut t = paused_an_hour();
    t.set_closed(true, ny("2026-11-23 11:45"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Cancelled);
    // Closed at 12:15, after it: missed, without any worker run.
    let mut t = paused_an_hour();
    t.set_closed(true, ny("2026-11-23 12:15"));
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Missed);
    assert_eq!(c.breached_at, None);
    assert_eq!(c.due_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(c.stopped_at, Some(ny("2026-11-23 12:15")));

    // The deadline is the one under the target in force at the close: a
    // switch to a 3 h policy at 11:40 moves it to 10:00 + 3 h + 1 h = 14:00,
    // so a close at 13:00 cancels the clock...
    let mut t = paused_an_hour();
    t.switch_policy(
        Some(("slow", targets(Some(hours(3)), None, None))),
        ny("2026-11-23 11:40"),
    );
    t.set_closed(true, ny("2026-11-23 13:00"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Cancelled);
    // ...while a switch to a 15 min policy moves it back to 10:00 + 15 min +
    // 1 h = 11:15, so a close at 11:45 misses it.
    let mut t = paused_an_hour();
    t.switch_policy(
        Some(("fast", targets(Some(minutes(15)), None, None))),
        ny("2026-11-23 11:40"),
    );
    t.set_closed(true, ny("2026-11-23 11:45"));
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Missed);
    assert_eq!(c.due_at, Some(ny("2026-11-23 11:15")));
    assert_eq!(c.stopped_at, Some(ny("2026-11-23 11:45")));
}

#[test]
fn closing_a_breached_unanswered_first_response_misses_it() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), None, None),
    );
    t.reconcile(created);
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 11:05")),
        vec![Transition::Breached]
    );
    t.set_closed(true, ny("2026-11-23 12:00"));
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Missed);
    assert_eq!(c.breached_at, Some(ny("2026-11-23 11:00")));
    assert_eq!(c.stopped_at, Some(ny("2026-11-23 12:00")));
    // Reopening does not revive a missed response clock: only a cancelled
    // one resumes.
    t.set_closed(false, ny("2026-11-23 13:00"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Missed);
    assert_eq!(t.clock(FR, 1).stopped_at, Some(ny("2026-11-23 12:00")));
}

// ---------------------------------------------------------------------------
// Stopped clocks resume when what stopped them is over.
//
// A resolution clock that is achieved, missed or cancelled runs again once
// the ticket is open and its policy has a resolution target; a cancelled
// first-response clock, once the ticket is open, its policy has a
// first-response target and no agent has replied at all; a cancelled
// next-response cycle, once it is the latest cycle, the ticket is open, its
// policy has a next-response target and no agent has replied since the cycle
// began. The time since the clock stopped is a pause that ends on resuming,
// judged like any other: it counts if it began by the deadline in force and
// no breach is on record.
// ---------------------------------------------------------------------------

#[test]
fn losing_and_regaining_the_policy_resumes_the_clocks_and_moves_them_by_the_gap() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let urgent = targets(Some(hours(2)), None, Some(hours(8)));
    let new_ticket = || {
        let mut t = Ticket::new(Hours::Calendar(&cal), created, "urgent", urgent.clone());
        t.reconcile(created);
        // First response 2 h: Mon 12:00. Resolution 8 h: Mon 10:00-17:00 (7
        // h) + Tue 09:00-10:00.
        assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 12:00")));
        assert_eq!(t.clock(RES, 1).due_at, Some(ny("2026-11-24 10:00")));
        t
    };

    // At 11:00 the ticket's priority changes and no policy matches: both
    // clocks are cancelled and the ticket shows no SLA.
    let mut t = new_ticket();
    t.switch_policy(None, ny("2026-11-23 11:00"));
    for metric in [FR, RES] {
        let c = t.clock(metric, 1);
        assert_eq!(c.status, ClockStatus::Cancelled);
        assert_eq!(c.stopped_at, Some(ny("2026-11-23 11:00")));
        assert_eq!(c.next_transition_at, None);
    }
    assert_eq!(summarize(&t.clocks).status, None);
    // The first-response deadline passes meanwhile; nothing happens.
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 12:05")), vec![]);

    // Urgent again at 13:30: both clocks resume. The 2 h 30 min without a
    // policy began at 11:00, before either deadline, and do not count: first
    // response due 10:00 + 2 h + 2 h 30 min = 14:30; resolution 10:00 + 8 h
    // + 2 h 30 min = 10 h 30 min of business time: Mon 7 h, Tue 09:00-12:30.
    t.switch_policy(Some(("urgent", urgent.clone())), ny("2026-11-23 13:30"));
    assert_eq!(t.cycles(FR), vec![1]);
    assert_eq!(t.cycles(RES), vec![1]);
    let fr = t.clock(FR, 1);
    assert_eq!(fr.status, ClockStatus::Running);
    assert_eq!(fr.policy, "urgent");
    assert_eq!(fr.stopped_at, None);
    assert_eq!(fr.paused_since, None);
    assert_eq!(fr.paused_time, minutes(150));
    assert_eq!(fr.due_at, Some(ny("2026-11-23 14:30")));
    assert_eq!(fr.next_transition_at, Some(ny("2026-11-23 14:30")));
    let res = t.clock(RES, 1);
    assert_eq!(res.status, ClockStatus::Running);
    assert_eq!(res.paused_time, minutes(150));
    assert_eq!(res.due_at, Some(ny("2026-11-24 12:30")));
    assert_eq!(
        summarize(&t.clocks),
        Summary {
            status: Some(ClockStatus::Running),
            due_at: Some(ny("2026-11-23 14:30")),
            breached_at: None
        }
    );
    // Not late at 14:00, two hours after the original deadline: a reply then
    // achieves the first response.
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 14:00")), vec![]);
    t.agent_reply(ny("2026-11-23 14:00"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Achieved);
    assert_eq!(t.clock(FR, 1).stopped_at, Some(ny("2026-11-23 14:00")));

    // The policy is lost at 12:30 instead, after the first-response deadline
    // (12:00), which the worker has not applied yet: losing the policy
    // cancels the clock all the same, without judging it.
    let mut t = new_ticket();
    t.switch_policy(None, ny("2026-11-23 12:30"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Cancelled);
    // Back at 13:00. For the first response the gap began after its deadline
    // and does not count: still due 12:00, and breached at 12:00 when the
    // worker runs. For the resolution it began in time: due Tue 10:30.
    t.switch_policy(Some(("urgent", urgent.clone())), ny("2026-11-23 13:00"));
    let fr = t.clock(FR, 1);
    assert_eq!(fr.status, ClockStatus::Running);
    assert_eq!(fr.paused_time, 0);
    assert_eq!(fr.due_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(fr.next_transition_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 13:00")),
        vec![Transition::Breached]
    );
    assert_eq!(t.clock(FR, 1).breached_at, Some(ny("2026-11-23 12:00")));
    let res = t.clock(RES, 1);
    assert_eq!(res.paused_time, minutes(30));
    assert_eq!(res.due_at, Some(ny("2026-11-24 10:30")));

    // With the breach recorded before the policy is lost (worker at 12:01),
    // the clock resumes breached: the breach stays, dated 12:00, and is not
    // reported again.
    let mut t = new_ticket();
    assert_eq!(
        t.apply_due(FR, 1, ny("2026-11-23 12:01")),
        vec![Transition::Breached]
    );
    t.switch_policy(None, ny("2026-11-23 12:30"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Cancelled);
    assert_eq!(t.clock(FR, 1).breached_at, Some(ny("2026-11-23 12:00")));
    t.switch_policy(Some(("urgent", urgent)), ny("2026-11-23 13:00"));
    let fr = t.clock(FR, 1);
    assert_eq!(fr.status, ClockStatus::Breached);
    assert_eq!(fr.breached_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(fr.paused_time, 0);
    assert_eq!(fr.due_at, Some(ny("2026-11-23 12:00")));
    assert_eq!(fr.next_transition_at, None);
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 13:00")), vec![]);
}

#[test]
fn closing_without_a_reply_cancels_the_first_response_and_reopening_resumes_it() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let policy = targets(Some(hours(2)), None, None);
    let new_ticket = || {
        let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy.clone());
        t.reconcile(created);
        // Due Mon 12:00.
        assert_eq!(t.clock(FR, 1).due_at, Some(ny("2026-11-23 12:00")));
        t
    };
    let closed_at = ny("2026-11-23 11:00");
    let reopened = ny("2026-11-24 10:00");
    // Closed business time: Mon 11:00-17:00 (6 h) + Tue 09:00-10:00 (1 h).
    assert_eq!(cal.between(closed_at, reopened).unwrap(), hours(7));

    // Closed Mon 11:00 without a reply, before the deadline: cancelled, and
    // nothing is measured while closed.
    let mut t = new_ticket();
    t.set_closed(true, closed_at);
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Cancelled);
    assert_eq!(c.stopped_at, Some(closed_at));
    assert_eq!(summarize(&t.clocks).status, None);
    t.reconcile(ny("2026-11-23 18:00"));
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 18:00")), vec![]);
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Cancelled);

    // Reopened Tue 10:00, still unanswered: the first response resumes. The
    // 7 h closed began before the deadline and do not count: due Mon 10:00 +
    // 2 h + 7 h = 9 h of business time: Mon 7 h, Tue 09:00-11:00.
    t.set_closed(false, reopened);
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.stopped_at, None);
    assert_eq!(c.paused_since, None);
    assert_eq!(c.paused_time, hours(7));
    assert_eq!(c.due_at, Some(ny("2026-11-24 11:00")));
    assert_eq!(c.next_transition_at, Some(ny("2026-11-24 11:00")));
    assert_eq!(summarize(&t.clocks).status, Some(ClockStatus::Running));
    // Answered Tue 10:45: in time.
    t.agent_reply(ny("2026-11-24 10:45"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Achieved);
    assert_eq!(t.clock(FR, 1).stopped_at, Some(ny("2026-11-24 10:45")));

    // An agent replies Mon 16:00 while the ticket is closed: once reopened
    // there is a reply, and the cancelled clock stays as it is.
    let mut t = new_ticket();
    t.set_closed(true, closed_at);
    t.agent_reply(ny("2026-11-23 16:00"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Cancelled);
    t.set_closed(false, reopened);
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Cancelled);
    assert_eq!(c.stopped_at, Some(closed_at));
    assert_eq!(summarize(&t.clocks).status, None);

    // Paused at 10:30 and closed, still paused, at 11:00: the pause counts up
    // to the close (30 min), then the clock is cancelled. Reopened Tue 10:00
    // out of the pause: 30 min + 7 h, so due Mon 10:00 + 9 h 30 min = Tue
    // 11:30.
    let mut t = new_ticket();
    t.set_paused(true, ny("2026-11-23 10:30"));
    t.set_closed(true, closed_at);
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Cancelled);
    assert_eq!(c.paused_time, minutes(30));
    t.facts.paused = false;
    t.set_closed(false, reopened);
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.paused_time, minutes(450));
    assert_eq!(c.due_at, Some(ny("2026-11-24 11:30")));

    // Reopened into a pause status: paused since the close, and unpaused at
    // Tue 10:30, 7 h 30 min later in business time: due Tue 11:30 as well.
    let mut t = new_ticket();
    t.set_closed(true, closed_at);
    t.facts.paused = true;
    t.set_closed(false, reopened);
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Paused);
    assert_eq!(c.paused_since, Some(closed_at));
    assert_eq!(c.stopped_at, None);
    assert_eq!(c.next_transition_at, None);
    t.set_paused(false, ny("2026-11-24 10:30"));
    let c = t.clock(FR, 1);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.paused_time, minutes(450));
    assert_eq!(c.due_at, Some(ny("2026-11-24 11:30")));
}

#[test]
fn a_cancelled_next_response_cycle_resumes_only_while_latest_and_unanswered() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let policy = targets(None, Some(hours(1)), None);
    // Answered at 10:10; the customer writes at 10:20: cycle 1, due 11:20.
    let asked = || {
        let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy.clone());
        t.agent_reply(ny("2026-11-23 10:10"));
        t.customer_message(ny("2026-11-23 10:20"));
        assert_eq!(t.cycles(NR), vec![1]);
        assert_eq!(t.clock(NR, 1).due_at, Some(ny("2026-11-23 11:20")));
        t
    };
    let closed_at = ny("2026-11-23 10:50");

    // Closed at 10:50, unanswered and in time: cancelled. Reopened at 11:30,
    // still unanswered: cycle 1 is the latest and resumes. The 40 min closed
    // began before its deadline: due 11:20 + 40 min = 12:00.
    let mut t = asked();
    t.set_closed(true, closed_at);
    assert_eq!(t.clock(NR, 1).status, ClockStatus::Cancelled);
    t.set_closed(false, ny("2026-11-23 11:30"));
    assert_eq!(t.cycles(NR), vec![1]);
    let c = t.clock(NR, 1);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.stopped_at, None);
    assert_eq!(c.paused_time, minutes(40));
    assert_eq!(c.due_at, Some(ny("2026-11-23 12:00")));
    t.agent_reply(ny("2026-11-23 11:50"));
    assert_eq!(t.clock(NR, 1).status, ClockStatus::Achieved);

    // The same cycle cancelled by a policy without a next-response target at
    // 10:40, and back under "p" at 11:00: it resumes, due 11:20 + 20 min =
    // 11:40.
    let mut t = asked();
    t.switch_policy(
        Some(("none", targets(None, None, None))),
        ny("2026-11-23 10:40"),
    );
    assert_eq!(t.clock(NR, 1).status, ClockStatus::Cancelled);
    t.switch_policy(Some(("p", policy.clone())), ny("2026-11-23 11:00"));
    let c = t.clock(NR, 1);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.policy, "p");
    assert_eq!(c.paused_time, minutes(20));
    assert_eq!(c.due_at, Some(ny("2026-11-23 11:40")));

    // Answered at 11:00 while closed: on reopening at 11:30 the cycle has its
    // reply and stays cancelled; the customer has not written since, so no
    // cycle opens either.
    let mut t = asked();
    t.set_closed(true, closed_at);
    t.agent_reply(ny("2026-11-23 11:00"));
    t.set_closed(false, ny("2026-11-23 11:30"));
    assert_eq!(t.cycles(NR), vec![1]);
    assert_eq!(t.clock(NR, 1).status, ClockStatus::Cancelled);
    assert_eq!(t.clock(NR, 1).stopped_at, Some(closed_at));
    assert!(t.clocks.iter().all(|c| !c.is_open()));

    // Answered at 11:00 and written to again at 11:10 while closed: no cycle
    // opens on a closed ticket; on reopening at 11:30 cycle 2 opens from
    // 11:10 (due 12:10) and cycle 1 stays cancelled.
    let mut t = asked();
    t.set_closed(true, closed_at);
    t.agent_reply(ny("2026-11-23 11:00"));
    t.customer_message(ny("2026-11-23 11:10"));
    assert_eq!(t.cycles(NR), vec![1]);
    t.set_closed(false, ny("2026-11-23 11:30"));
    assert_eq!(t.cycles(NR), vec![1, 2]);
    assert_eq!(t.clock(NR, 1).status, ClockStatus::Cancelled);
    let c = t.clock(NR, 2);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.started_at, ny("2026-11-23 11:10"));
    assert_eq!(c.due_at, Some(ny("2026-11-23 12:10")));
    // The 11:00 reply is then removed, so that the last reply is the 10:10
    // one again: cycle 1 has no reply since it began, but it is no longer
    // the latest cycle and stays cancelled; cycle 2 runs on.
    t.facts.last_agent_reply_at = Some(ny("2026-11-23 10:10"));
    t.reconcile(ny("2026-11-23 11:40"));
    assert_eq!(t.cycles(NR), vec![1, 2]);
    let c = t.clock(NR, 1);
    assert_eq!(c.status, ClockStatus::Cancelled);
    assert_eq!(c.stopped_at, Some(closed_at));
    let c = t.clock(NR, 2);
    assert_eq!(c.status, ClockStatus::Running);
    assert_eq!(c.due_at, Some(ny("2026-11-23 12:10")));

    // A reply at the cycle's very start answers it: written to and closed at
    // 10:20, a reply recorded at that same instant, reopened at 10:30: the
    // cycle stays cancelled.
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "p", policy);
    t.agent_reply(ny("2026-11-23 10:10"));
    t.customer_message(ny("2026-11-23 10:20"));
    t.set_closed(true, ny("2026-11-23 10:20"));
    assert_eq!(t.clock(NR, 1).status, ClockStatus::Cancelled);
    t.agent_reply(ny("2026-11-23 10:20"));
    t.set_closed(false, ny("2026-11-23 10:30"));
    assert_eq!(t.cycles(NR), vec![1]);
    assert_eq!(t.clock(NR, 1).status, ClockStatus::Cancelled);
}

// ---------------------------------------------------------------------------
// summarize
// ---------------------------------------------------------------------------

/// A clock in a given state, for summaries.
fn summary_clock(
    metric: Metric,
    cycle: i32,
    status: ClockStatus,
    due_at: Micros,
    breached_at: Option<Micros>,
) -> Clock {
    Clock {
        metric,
        cycle,
        policy: "p".to_owned(),
        status,
        started_at: 0,
        target: hours(1),
        due_at: Some(due_at),
        warn_at: None,
        release_at: None,
        next_transition_at: None,
        paused_since: None,
        paused_time: 0,
        stopped_at: (!status.is_open()).then_some(due_at),
        warned_at: None,
        breached_at,
        released_at: None,
    }
}

#[test]
fn summary_status_is_the_worst_open_clock() {
    use ClockStatus::*;
    let h = hours;
    let status_of = |statuses: &[ClockStatus]| {
        let clocks: Vec<Clock> = statuses
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let breached = (s == Breached).then_some(h(1));
                summary_clock(NR, i as i32 + 1, s, h(10 + i as i64), breached)
            })
            .collect();
        summarize(&clocks).status
    };
    assert_eq!(status_of(&[]), None);
    assert_eq!(status_of(&[Paused]), Some(Paused));
    assert_eq!(status_of(&[Paused, Running]), Some(Running));
    assert_eq!(status_of(&[Running, Paused]), Some(Running));
    assert_eq!(status_of(&[Running, DueSoon, Paused]), Some(DueSoon));
    assert_eq!(status_of(&[DueSoon, Breached, Paused]), Some(Breached));
    assert_eq!(status_of(&[Breached, Running]), Some(Breached));
    // Closed clocks do not count while any clock is open.
    assert_eq!(status_of(&[Missed, Running]), Some(Running));
    assert_eq!(status_of(&[Achieved, Paused, Cancelled]), Some(Paused));
    // All closed: missed if any was missed, else achieved if any was
    // achieved, else (only cancelled clocks) nothing was measured.
    assert_eq!(status_of(&[Achieved, Cancelled]), Some(Achieved));
    assert_eq!(status_of(&[Achieved, Missed, Cancelled]), Some(Missed));
    assert_eq!(status_of(&[Cancelled, Missed]), Some(Missed));
    assert_eq!(status_of(&[Cancelled]), None);
    assert_eq!(status_of(&[Cancelled, Cancelled]), None);
}

#[test]
fn summary_due_at_is_the_nearest_deadline_still_ahead() {
    use ClockStatus::*;
    let clocks = vec![
        // Paused: its deadline will move, so it does not count.
        summary_clock(FR, 1, Paused, hours(1), None),
        // Breached: already late, it does not count either.
        summary_clock(NR, 1, Breached, hours(2), Some(hours(2))),
        // Closed clocks never count.
        summary_clock(NR, 2, Missed, hours(3), Some(hours(3))),
        summary_clock(NR, 3, Achieved, hours(4), None),
        summary_clock(RES, 1, DueSoon, hours(6), None),
        summary_clock(NR, 4, Running, hours(5), None),
    ];
    assert_eq!(
        summarize(&clocks),
        Summary {
            status: Some(Breached),
            due_at: Some(hours(5)),
            // The first breach of any clock, open or not.
            breached_at: Some(hours(2)),
        }
    );
    // Only paused and breached clocks open: no deadline ahead.
    assert_eq!(summarize(&clocks[..3]).due_at, None);
    assert_eq!(
        summarize(&[]),
        Summary {
            status: None,
            due_at: None,
            breached_at: None
        }
    );
    // All closed, one of them breached.
    assert_eq!(
        summarize(&clocks[2..4]),
        Summary {
            status: Some(Missed),
            due_at: None,
            breached_at: Some(hours(3)),
        }
    );
}

#[test]
fn summary_of_a_reconciled_ticket() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), None, Some(hours(4))),
    );
    t.reconcile(created);
    // Running both; nearest deadline is the first response at 11:00.
    assert_eq!(
        summarize(&t.clocks),
        Summary {
            status: Some(ClockStatus::Running),
            due_at: Some(ny("2026-11-23 11:00")),
            breached_at: None
        }
    );
    // Still in time at 11:00 itself.
    assert_eq!(t.apply_due(FR, 1, ny("2026-11-23 11:00")), vec![]);
    assert_eq!(summarize(&t.clocks).status, Some(ClockStatus::Running));
    t.apply_due(FR, 1, ny("2026-11-23 11:01"));
    // Breached first response; the next deadline is the resolution, 14:00.
    assert_eq!(
        summarize(&t.clocks),
        Summary {
            status: Some(ClockStatus::Breached),
            due_at: Some(ny("2026-11-23 14:00")),
            breached_at: Some(ny("2026-11-23 11:00"))
        }
    );
    t.agent_reply(ny("2026-11-23 11:30"));
    t.set_closed(true, ny("2026-11-23 13:00"));
    assert_eq!(
        summarize(&t.clocks),
        Summary {
            status: Some(ClockStatus::Missed),
            due_at: None,
            breached_at: Some(ny("2026-11-23 11:00"))
        }
    );
}

#[test]
fn summary_of_a_ticket_whose_clocks_were_all_cancelled_is_empty() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let mut t = Ticket::new(
        Hours::Calendar(&cal),
        created,
        "p",
        targets(Some(hours(1)), None, None),
    );
    t.reconcile(created);
    // Closed at 10:30 without a reply: the only clock is cancelled and
    // nothing was measured.
    t.set_closed(true, ny("2026-11-23 10:30"));
    assert_eq!(t.clock(FR, 1).status, ClockStatus::Cancelled);
    assert_eq!(
        summarize(&t.clocks),
        Summary {
            status: None,
            due_at: None,
            breached_at: None
        }
    );
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

const ZONES: [&str; 4] = [
    "UTC",
    "America/New_York",
    "Europe/Paris",
    "Australia/Lord_Howe",
];

/// A simple calendar: one window a day on some weekdays, maybe one holiday.
#[derive(Debug, Clone)]
struct SimpleCalendar {
    zone: &'static str,
    /// Bit i: weekday i (Monday first) is open.
    days: u8,
    /// Local minutes, on half hours; `end` may be 1440.
    start: u32,
    end: u32,
    holiday: Option<NaiveDate>,
}

impl SimpleCalendar {
    fn json(&self) -> String {
        let clock = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let days: Vec<String> = (0..7)
            .filter(|i| self.days & (1 << i) != 0)
            .map(|i| {
                format!(
                    "\"{}\":[\"{}-{}\"]",
                    names[i],
                    clock(self.start),
                    clock(self.end)
                )
            })
            .collect();
        let holidays = self.holiday.map(|d| format!("\"{d}\"")).unwrap_or_default();
        format!(
            "{{\"timezone\":\"{}\",\"hours\":{{{}}},\"holidays\":[{}]}}",
            self.zone,
            days.join(","),
            holidays
        )
    }
}

fn simple_calendar() -> impl Strategy<Value = SimpleCalendar> {
    (
        prop::sample::select(ZONES.to_vec()),
        1u8..128,
        0u32..47,
        1u32..=48,
        prop::option::of(0i64..70),
    )
        .prop_map(|(zone, days, start, length, holiday)| {
            let start = start * 30;
            let end = (start + length * 30).min(1440);
            SimpleCalendar {
                zone,
                days,
                start,
                end,
                holiday: holiday
                    .map(|d| NaiveDate::from_ymd_opt(2026, 3, 2).unwrap() + Duration::days(d)),
            }
        })
}

fn fraction() -> impl Strategy<Value = Option<f64>> {
    prop::option::of((1u32..100).prop_map(|p| f64::from(p) / 100.0))
}

fn target() -> impl Strategy<Value = Option<Micros>> {
    prop::option::weighted(0.8, (1i64..=1200).prop_map(minutes))
}

fn any_targets() -> impl Strategy<Value = Targets> {
    (target(), target(), target(), fraction(), fraction()).prop_map(
        |(first_response, next_response, resolution, warn_fraction, release_fraction)| Targets {
            first_response,
            next_response,
            resolution,
            warn_fraction,
            release_fraction,
        },
    )
}

#[derive(Debug, Clone)]
enum Event {
    CustomerMessage,
    AgentReply,
    TogglePause,
    ToggleClosed,
    /// Switch to policy `i` of the scenario, or to none when out of range.
    Policy(usize),
    /// The due-transition worker runs.
    ApplyDue,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => Just(Event::CustomerMessage),
        3 => Just(Event::AgentReply),
        2 => Just(Event::TogglePause),
        2 => Just(Event::ToggleClosed),
        1 => (0usize..4).prop_map(Event::Policy),
        8 => Just(Event::ApplyDue),
    ]
}

/// How far time moves before an event.
#[derive(Debug, Clone)]
enum Step {
    Minutes(i64),
    /// To the earliest deadline, warning or release of an open clock that is
    /// still ahead (or nowhere if none is), so that events land exactly on
    /// the instants where the rules change.
    ToNextScheduled,
}

/// Often no time at all (simultaneous events), often a little, sometimes
/// days, and sometimes exactly to the next scheduled instant.
fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(0i64).prop_map(Step::Minutes),
        6 => (1i64..90).prop_map(Step::Minutes),
        3 => (90i64..900).prop_map(Step::Minutes),
        1 => (900i64..6000).prop_map(Step::Minutes),
        3 => Just(Step::ToNextScheduled),
    ]
}

#[derive(Debug, Clone)]
struct Scenario {
    calendar: Option<SimpleCalendar>,
    policies: Vec<Targets>,
    releasable: bool,
    /// Minutes after 2026-03-02 00:00 UTC.
    created: i64,
    initial_policy: usize,
    events: Vec<(Step, Event)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::option::weighted(0.8, simple_calendar()),
        prop::collection::vec(any_targets(), 3),
        any::<bool>(),
        0i64..30 * 1440,
        0usize..4,
        prop::collection::vec((step(), event()), 1..60),
    )
        .prop_map(
            |(calendar, policies, releasable, created, initial_policy, events)| Scenario {
                calendar,
                policies,
                releasable,
                created,
                initial_policy,
                events,
            },
        )
}

fn business_add(hours: Hours, t: Micros, d: Micros) -> Micros {
    match hours {
        Hours::Calendar(cal) => cal.add(t, d).unwrap(),
        Hours::AlwaysOpen => t + d,
    }
}

fn business_between(hours: Hours, from: Micros, to: Micros) -> Micros {
    if to <= from {
        return 0;
    }
    match hours {
        Hours::Calendar(cal) => cal.between(from, to).unwrap(),
        Hours::AlwaysOpen => to - from,
    }
}

type Key = (Metric, i32);

/// The pause bookkeeping the test expects of one clock, kept from what the
/// test has seen (not from the clock's own fields).
#[derive(Debug, Clone, Default)]
struct ExpectedPause {
    since: Option<Micros>,
    time: Micros,
    /// Pauses that have ended, in order (the time stopped too, for a clock
    /// that resumed), whether or not they counted.
    intervals: Vec<Pause>,
}

/// A pause that has ended.
#[derive(Debug, Clone, Copy)]
struct Pause {
    from: Micros,
    to: Micros,
    /// The clock's target when the pause ended, when it is judged.
    target: Micros,
}

/// When a clock's business time runs out, from the pauses the test has seen
/// (not from any breach on record): `target` of business time from the
/// start, plus the pauses that count. A pause is judged once, when it ends,
/// against the deadline in force then: the start plus the target of that
/// moment plus the pauses counted before it. It counts if it began at or
/// before that deadline (the instant itself is still in time), and then
/// stays counted whatever later switches do to the target: clock.rs keeps
/// the total of paused time, not the pauses. With a constant target this is
/// the earliest instant by which `target` of business time has elapsed
/// outside the pauses that began in time.
fn oracle_deadline(hours: Hours, started_at: Micros, target: Micros, pauses: &[Pause]) -> Micros {
    let mut paused = 0;
    for pause in pauses {
        let then = business_add(hours, started_at, pause.target + paused);
        if pause.from <= then {
            paused += business_between(hours, pause.from.max(started_at), pause.to);
        }
    }
    business_add(hours, started_at, target + paused)
}

/// How a run is driven and judged.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// The worker runs `apply_due(now)` before every change of facts, as it
    /// would if it never lagged; otherwise only at `ApplyDue` events.
    eager_worker: bool,
    /// Check breaches and misses against [`oracle_deadline`].
    oracle: bool,
}

struct Run<'a> {
    hours: Hours<'a>,
    scenario: &'a Scenario,
    facts: TicketFacts,
    policy: Option<usize>,
    clocks: Vec<Clock>,
    applied: HashSet<(Metric, i32, &'static str)>,
    pauses: BTreeMap<Key, ExpectedPause>,
    /// Customer message instants, for the starts of next-response cycles.
    messages: Vec<Micros>,
    now: Micros,
    mode: Mode,
}

impl Run<'_> {
    fn policy(&self) -> Option<(String, &Targets)> {
        self.policy
            .map(|i| (format!("p{i}"), &self.scenario.policies[i]))
    }

    fn targets(&self) -> Option<&Targets> {
        self.policy.map(|i| &self.scenario.policies[i])
    }

    fn reconcile_at(&self, clocks: &mut Vec<Clock>, now: Micros) {
        let policy = self.policy();
        reconcile(
            clocks,
            &self.facts,
            policy.as_ref().map(|(name, t)| (name.as_str(), *t)),
            self.hours,
            now,
            self.scenario.releasable,
        )
        .unwrap_or_else(|e| panic!("reconcile failed: {e}"));
    }

    /// Reconciles after a change of facts or policy and checks everything
    /// that must hold of the change.
    fn reconcile(&mut self) -> Result<(), TestCaseError> {
        let before = self.clocks.clone();
        let mut clocks = std::mem::take(&mut self.clocks);
        self.reconcile_at(&mut clocks, self.now);
        self.clocks = clocks;

        // Idempotent, and time alone changes nothing: only apply_due does.
        for later in [0, minutes(1), hours(50)] {
            let mut again = self.clocks.clone();
            self.reconcile_at(&mut again, self.now + later);
            prop_assert_eq!(&again, &self.clocks, "reconcile again at now + {}", later);
        }

        // Existing clocks keep their place and identity; new ones are appended.
        prop_assert!(self.clocks.len() >= before.len());
        for (old, new) in before.iter().zip(&self.clocks) {
            prop_assert_eq!((old.metric, old.cycle), (new.metric, new.cycle));
            prop_assert_eq!(old.started_at, new.started_at);
            // Transitions are recorded by apply_due only.
            prop_assert_eq!(old.warned_at, new.warned_at);
            prop_assert_eq!(old.breached_at, new.breached_at);
            prop_assert_eq!(old.released_at, new.released_at);
            self.check_stopped_stays_stopped(old, new)?;
        }
        self.check_pause_bookkeeping(&before)?;
        self.check_closed_without_reply(&before)?;
        self.check_facts_reflected()?;
        self.check_state()
    }

    /// Whether `clock` is the latest next-response cycle (always true of
    /// the other metrics).
    fn is_latest(&self, clock: &Clock) -> bool {
        clock.metric != Metric::NextResponse || clock.cycle == nr_count(&self.clocks)
    }

    /// Whether a stopped clock must run again under the facts and policy of
    /// now, because what stopped it is over: a resolution clock (achieved,
    /// missed or cancelled) once the ticket is open; a cancelled first
    /// response once the ticket is open and no agent has replied at all; a
    /// cancelled next-response cycle once the ticket is open, the cycle is
    /// the latest and no agent has replied since it began. Always with a
    /// policy that has the clock's target.
    fn should_resume(&self, clock: &Clock) -> bool {
        let Some(targets) = self.targets() else {
            return false;
        };
        if self.facts.closed || targets.target(clock.metric).is_none() {
            return false;
        }
        let reply = self.facts.last_agent_reply_at;
        match (clock.status, clock.metric) {
            (ClockStatus::Achieved | ClockStatus::Missed, Metric::Resolution) => true,
            (ClockStatus::Cancelled, Metric::Resolution) => true,
            (ClockStatus::Cancelled, Metric::FirstResponse) => reply.is_none(),
            (ClockStatus::Cancelled, Metric::NextResponse) => {
                self.is_latest(clock) && reply.is_none_or(|r| r < clock.started_at)
            }
            _ => false,
        }
    }

    /// A stopped clock stays exactly as it was, unless it must resume: then
    /// it is open again (a resumed clock has its target, no reply since it
    /// began and an open ticket, so nothing stops it again at once).
    fn check_stopped_stays_stopped(&self, old: &Clock, new: &Clock) -> Result<(), TestCaseError> {
        if old.is_open() {
            return Ok(());
        }
        if self.should_resume(old) {
            prop_assert!(new.is_open(), "{:?} -> {:?}", old, new);
            prop_assert_eq!(new.stopped_at, None);
        } else {
            prop_assert_eq!(old, new);
        }
        Ok(())
    }

    /// Recomputes each clock's paused business time from the pauses the test
    /// has seen, and compares.
    fn check_pause_bookkeeping(&mut self, before: &[Clock]) -> Result<(), TestCaseError> {
        let now = self.now;
        for (i, new) in self.clocks.iter().enumerate() {
            let key = (new.metric, new.cycle);
            let old = before.get(i);
            let expected = self.pauses.entry(key).or_default();
            let was_paused = old.is_some_and(|o| o.status == ClockStatus::Paused);
            let resumed = old.is_some_and(|o| !o.is_open()) && new.is_open();
            if resumed {
                // The time stopped (closed, or under a policy without the
                // clock's target) is a pause from when the clock stopped.
                expected.since = old.and_then(|o| o.stopped_at);
            }
            match new.status {
                // Paused now: the pause starts.
                ClockStatus::Paused if !was_paused && !resumed => expected.since = Some(now),
                // Still paused, or resumed into a pause that began when the
                // clock stopped.
                ClockStatus::Paused => {}
                _ if new.is_open() || old.is_some_and(|o| o.is_open()) || resumed => {
                    // Resumed now, or stopped at `stopped_at` (a reply may be
                    // dated before the check; the resolution stops now, and
                    // a response clock closed without a reply is missed or
                    // cancelled now). The pause counts only if it began by
                    // the deadline as it stands (current target, time counted
                    // so far) and no breach is on record.
                    if let Some(since) = expected.since.take() {
                        let end = new.stopped_at.unwrap_or(now);
                        let deadline =
                            business_add(self.hours, new.started_at, new.target + expected.time);
                        if since <= deadline && new.breached_at.is_none() {
                            expected.time += business_between(self.hours, since, end);
                        }
                        if end > since {
                            expected.intervals.push(Pause {
                                from: since,
                                to: end,
                                target: new.target,
                            });
                        }
                    }
                }
                _ => {}
            }
            prop_assert_eq!(new.paused_since, expected.since, "{:?}", new);
            prop_assert_eq!(new.paused_time, expected.time, "{:?}", new);
            let stopped_now = old.is_none_or(|o| o.is_open())
                && matches!(new.status, ClockStatus::Achieved | ClockStatus::Missed);
            let deadline =
                oracle_deadline(self.hours, new.started_at, new.target, &expected.intervals);
            if stopped_now && self.mode.oracle {
                let late = new.breached_at.is_some() || new.stopped_at > Some(deadline);
                prop_assert_eq!(
                    new.status == ClockStatus::Missed,
                    late,
                    "oracle deadline {} for {:?}, pauses {:?}",
                    deadline,
                    new,
                    expected.intervals
                );
            }
        }
        Ok(())
    }

    /// A response clock still open when its ticket closes without a reply is
    /// stopped now, missed, if its breach is on record or its deadline (the
    /// current target plus the paused time counted so far) is before now,
    /// whether or not the worker has noticed; otherwise it is cancelled.
    fn check_closed_without_reply(&self, before: &[Clock]) -> Result<(), TestCaseError> {
        let Some(targets) = self.targets() else {
            return Ok(());
        };
        if !self.facts.closed {
            return Ok(());
        }
        for (i, new) in self.clocks.iter().enumerate() {
            let old = before.get(i);
            if !new.metric.is_response()
                || targets.target(new.metric).is_none()
                || old.is_some_and(|o| !o.is_open())
            {
                continue;
            }
            let replied = match new.metric {
                // Any reply answers the first response, even one dated before
                // the ticket.
                Metric::FirstResponse => self.facts.last_agent_reply_at.is_some(),
                _ => self
                    .facts
                    .last_agent_reply_at
                    .is_some_and(|r| r >= new.started_at),
            };
            if replied {
                continue;
            }
            prop_assert_eq!(new.stopped_at, Some(self.now));
            let breached = old.is_some_and(|o| o.breached_at.is_some());
            // The paused time counted before the close (a clock created by
            // this reconcile has none), checked against the test's own
            // bookkeeping when it was last reconciled.
            let paused = old.map_or(0, |o| o.paused_time);
            let before_close = business_add(self.hours, new.started_at, new.target + paused);
            // A pause still running at the close ends there first, counted
            // if it began by the deadline (and no breach is on record).
            let still_paused = old
                .and_then(|o| o.paused_since)
                .filter(|&since| since <= before_close && !breached)
                .map_or(0, |since| business_between(self.hours, since, self.now));
            let deadline = business_add(
                self.hours,
                new.started_at,
                new.target + paused + still_paused,
            );
            let late = breached || deadline < self.now;
            let expected = if late {
                ClockStatus::Missed
            } else {
                ClockStatus::Cancelled
            };
            prop_assert_eq!(
                new.status,
                expected,
                "deadline {} at {}: {:?} -> {:?}",
                deadline,
                self.now,
                old,
                new
            );
        }
        Ok(())
    }

    /// What the facts and the policy say must show in the clocks.
    fn check_facts_reflected(&self) -> Result<(), TestCaseError> {
        // Nothing that must run again is left stopped.
        for c in self.clocks.iter().filter(|c| !c.is_open()) {
            prop_assert!(!self.should_resume(c), "left stopped: {:?}", c);
        }
        let Some(targets) = self.targets() else {
            prop_assert!(self.clocks.iter().all(|c| !c.is_open()));
            return Ok(());
        };
        let name = format!("p{}", self.policy.unwrap());
        for c in self.clocks.iter().filter(|c| c.is_open()) {
            // Open clocks follow the policy that applies now.
            prop_assert_eq!(&c.policy, &name);
            prop_assert_eq!(Some(c.target), targets.target(c.metric));
            prop_assert!(!self.facts.closed, "open clock on a closed ticket: {:?}", c);
            prop_assert_eq!(self.facts.paused, c.status == ClockStatus::Paused);
            if c.metric.is_response() {
                // An open response clock has had no reply since it started.
                prop_assert!(self
                    .facts
                    .last_agent_reply_at
                    .is_none_or(|r| r < c.started_at && c.metric == Metric::NextResponse));
            }
        }
        // Every metric with a target has its first-response and resolution
        // clock once the policy applies.
        for metric in [Metric::FirstResponse, Metric::Resolution] {
            if targets.target(metric).is_some() {
                prop_assert!(self.clocks.iter().any(|c| c.metric == metric));
            }
        }
        // An unanswered customer message on an open ticket has its cycle.
        if let (Some(_), Some(reply), Some(message), false) = (
            targets.next_response,
            self.facts.last_agent_reply_at,
            self.facts.last_customer_message_at,
            self.facts.closed,
        ) {
            if message > reply {
                prop_assert!(self
                    .clocks
                    .iter()
                    .any(|c| c.metric == Metric::NextResponse && c.started_at > reply));
            }
        }
        Ok(())
    }

    /// Invariants of the clocks at any moment.
    fn check_state(&self) -> Result<(), TestCaseError> {
        let mut nr_cycles = Vec::new();
        let mut open_nr = 0;
        for metric in [Metric::FirstResponse, Metric::Resolution] {
            prop_assert!(self.clocks.iter().filter(|c| c.metric == metric).count() <= 1);
        }
        for c in &self.clocks {
            match c.metric {
                Metric::NextResponse => {
                    nr_cycles.push(c.cycle);
                    open_nr += usize::from(c.is_open());
                    prop_assert!(self.messages.contains(&c.started_at));
                }
                _ => {
                    prop_assert_eq!(c.cycle, 1);
                    prop_assert_eq!(c.started_at, self.facts.created_at);
                }
            }
            let pending = {
                let warn = c
                    .warn_at
                    .filter(|_| c.warned_at.is_none() && c.breached_at.is_none());
                let release = c.release_at.filter(|_| c.released_at.is_none());
                let breach = c.due_at.filter(|_| c.breached_at.is_none());
                [warn, release, breach].into_iter().flatten().min()
            };
            // Ownership release: first response only, and only if releasable.
            if c.release_at.is_some() || c.released_at.is_some() {
                prop_assert_eq!(c.metric, Metric::FirstResponse);
            }
            if c.is_open() && c.release_at.is_some() {
                prop_assert!(self.scenario.releasable);
            }
            // Deadlines follow from the start, the target and the paused time.
            if c.status != ClockStatus::Cancelled {
                let due = business_add(self.hours, c.started_at, c.target + c.paused_time);
                prop_assert_eq!(c.due_at, Some(due), "{:?}", c);
                if let Some(warn) = c.warn_at {
                    prop_assert!(warn <= due);
                }
                if let Some(release) = c.release_at {
                    prop_assert!(release <= due);
                }
            }
            match c.status {
                ClockStatus::Paused => {
                    // Only a breach whose deadline passed before the pause
                    // began is still to be recorded.
                    let breach_behind = c
                        .due_at
                        .filter(|&due| c.breached_at.is_none() && c.paused_since > Some(due));
                    prop_assert_eq!(c.next_transition_at, breach_behind, "{:?}", c);
                    prop_assert!(c.paused_since.is_some());
                    prop_assert_eq!(c.stopped_at, None);
                }
                s if s.is_open() => {
                    prop_assert_eq!(c.next_transition_at, pending, "{:?}", c);
                    prop_assert_eq!(c.paused_since, None);
                    prop_assert_eq!(c.stopped_at, None);
                    let expected = if c.breached_at.is_some() {
                        ClockStatus::Breached
                    } else if c.warned_at.is_some() {
                        ClockStatus::DueSoon
                    } else {
                        ClockStatus::Running
                    };
                    prop_assert_eq!(s, expected);
                }
                s => {
                    prop_assert!(c.stopped_at.is_some(), "{:?}", c);
                    prop_assert_eq!(c.next_transition_at, None);
                    prop_assert_eq!(c.paused_since, None);
                    prop_assert!(c.stopped_at <= Some(self.now));
                    if s != ClockStatus::Cancelled {
                        let late = c.breached_at.is_some() || c.stopped_at > c.due_at;
                        prop_assert_eq!(s == ClockStatus::Missed, late, "{:?}", c);
                    }
                }
            }
        }
        nr_cycles.sort();
        prop_assert_eq!(nr_cycles, (1..=nr_count(&self.clocks)).collect::<Vec<_>>());
        prop_assert!(open_nr <= 1);

        // The summary agrees with the clocks: the worst open clock (paused
        // after a breach counts as breached); when none is open, missed if
        // any clock was, else achieved if any clock was, else nothing (no
        // clocks, or only cancelled ones).
        let summary = summarize(&self.clocks);
        let rank = |s: ClockStatus| match s {
            ClockStatus::Breached => 4,
            ClockStatus::DueSoon => 3,
            ClockStatus::Running => 2,
            ClockStatus::Paused => 1,
            _ => 0,
        };
        let any = |s: ClockStatus| self.clocks.iter().any(|c| c.status == s);
        let expected_status = self
            .clocks
            .iter()
            .filter(|c| c.is_open())
            .map(|c| match c.status {
                ClockStatus::Paused if c.breached_at.is_some() => ClockStatus::Breached,
                status => status,
            })
            .max_by_key(|&s| rank(s))
            .or_else(|| {
                [ClockStatus::Missed, ClockStatus::Achieved]
                    .into_iter()
                    .find(|&s| any(s))
            });
        prop_assert_eq!(summary.status, expected_status);
        let open_due = self
            .clocks
            .iter()
            .filter(|c| c.is_open() && c.status != ClockStatus::Paused && c.breached_at.is_none())
            .filter_map(|c| c.due_at)
            .min();
        prop_assert_eq!(summary.due_at, open_due);
        prop_assert_eq!(
            summary.breached_at,
            self.clocks.iter().filter_map(|c| c.breached_at).min()
        );
        Ok(())
    }

    /// The worker runs at `now` over every clock, twice.
    fn apply_due(&mut self) -> Result<(), TestCaseError> {
        let now = self.now;
        for c in self.clocks.iter_mut() {
            let before = c.clone();
            let transitions = apply_due(c, now);
            for &t in &transitions {
                let first = self.applied.insert((c.metric, c.cycle, t.as_str()));
                prop_assert!(first, "{:?} applied twice to {:?}", t, c);
                let (field, at) = match t {
                    Transition::DueSoon => (c.warned_at, c.warn_at),
                    Transition::Breached => (c.breached_at, c.due_at),
                    Transition::OwnershipReleased => (c.released_at, c.release_at),
                };
                // Dated at the scheduled instant, never in the future.
                prop_assert_eq!(field, at);
                prop_assert!(at.is_some_and(|at| at <= now));
                // A breach comes strictly after the deadline; a warning or a
                // release at its instant.
                if t == Transition::Breached {
                    prop_assert!(at.is_some_and(|at| at < now));
                }
                let pauses = self.pauses.get(&(c.metric, c.cycle));
                let intervals = pauses.map_or(&[][..], |p| &p.intervals[..]);
                let deadline = oracle_deadline(self.hours, c.started_at, c.target, intervals);
                if t == Transition::Breached && self.mode.oracle {
                    prop_assert_eq!(
                        c.breached_at,
                        Some(deadline),
                        "oracle deadline for {:?}, pauses {:?}",
                        c,
                        intervals
                    );
                }
            }
            prop_assert!(
                !(transitions.contains(&Transition::DueSoon)
                    && transitions.contains(&Transition::Breached))
            );
            if transitions.is_empty() {
                prop_assert_eq!(&before, &*c);
            }
            if !before.is_open() {
                prop_assert!(transitions.is_empty());
            }
            if before.status == ClockStatus::Paused {
                // Only the breach of a deadline that had passed before the
                // pause began; the clock stays paused.
                let behind = before.due_at.filter(|&due| {
                    before.breached_at.is_none() && before.paused_since > Some(due) && due < now
                });
                let expected = if behind.is_some() {
                    vec![Transition::Breached]
                } else {
                    vec![]
                };
                prop_assert_eq!(&transitions, &expected);
                prop_assert_eq!(c.status, ClockStatus::Paused);
                prop_assert!(c.next_transition_at.is_none_or(|t| t > now));
            }
            // Exactly once: again at the same instant does nothing.
            let after = c.clone();
            prop_assert_eq!(apply_due(c, now), vec![]);
            prop_assert_eq!(&after, &*c);
            // Nothing pending is left before `now`, nor at `now` but a
            // breach due exactly then (the deadline itself is still in time).
            if c.is_open() && c.status != ClockStatus::Paused {
                let breach_at_now = c.breached_at.is_none() && c.due_at == Some(now);
                prop_assert!(
                    c.next_transition_at
                        .is_none_or(|t| t > now || (t == now && breach_at_now)),
                    "{:?} at {}",
                    c,
                    now
                );
                if c.breached_at.is_none() {
                    prop_assert!(c.due_at >= Some(now), "{:?} at {}", c, now);
                }
            }
        }
        self.check_state()
    }
}

fn nr_count(clocks: &[Clock]) -> i32 {
    clocks
        .iter()
        .filter(|c| c.metric == Metric::NextResponse)
        .count() as i32
}

fn run(scenario: &Scenario, mode: Mode) -> Result<(), TestCaseError> {
    let calendar = scenario.calendar.as_ref().map(|c| {
        Calendar::parse(&c.json())
            .unwrap_or_else(|e| panic!("generated definition rejected: {e}\n{}", c.json()))
    });
    let hours = calendar.as_ref().map_or(Hours::AlwaysOpen, Hours::Calendar);
    let created = utc("2026-03-02 00:00") + minutes(scenario.created);
    let mut run = Run {
        hours,
        scenario,
        facts: TicketFacts {
            created_at: created,
            closed: false,
            paused: false,
            last_customer_message_at: None,
            last_agent_reply_at: None,
        },
        policy: (scenario.initial_policy < scenario.policies.len())
            .then_some(scenario.initial_policy),
        clocks: Vec::new(),
        applied: HashSet::new(),
        pauses: BTreeMap::new(),
        messages: Vec::new(),
        now: created,
        mode,
    };
    run.reconcile()?;
    for (step, event) in &scenario.events {
        run.now = match step {
            Step::Minutes(m) => run.now + minutes(*m),
            Step::ToNextScheduled => run
                .clocks
                .iter()
                .filter(|c| c.is_open())
                .flat_map(|c| [c.due_at, c.warn_at, c.release_at])
                .flatten()
                .filter(|&t| t > run.now)
                .min()
                .unwrap_or(run.now),
        };
        let now = run.now;
        match event {
            Event::CustomerMessage => {
                run.facts.last_customer_message_at = Some(now);
                run.messages.push(now);
            }
            Event::AgentReply => run.facts.last_agent_reply_at = Some(now),
            Event::TogglePause => run.facts.paused = !run.facts.paused,
            Event::ToggleClosed => run.facts.closed = !run.facts.closed,
            Event::Policy(i) => run.policy = (*i < scenario.policies.len()).then_some(*i),
            Event::ApplyDue => {
                run.apply_due()?;
                continue;
            }
        }
        if mode.eager_worker {
            run.apply_due()?;
        }
        run.reconcile()?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The worker runs only now and then, so reconcile often meets clocks
    /// whose transitions are overdue.
    #[test]
    fn random_ticket_histories_keep_the_clock_invariants(scenario in scenario()) {
        run(&scenario, Mode { eager_worker: false, oracle: false })?;
    }

    /// Breaches and misses agree with deadlines computed from the pauses the
    /// test has seen, each judged when it ended under the target of that
    /// moment, for every clock, including clocks whose target a policy
    /// switch changed after one of their pauses had ended.
    #[test]
    fn breaches_match_the_deadline_oracle(
        scenario in scenario(),
        eager_worker in any::<bool>(),
    ) {
        run(&scenario, Mode { eager_worker, oracle: true })?;
    }

    /// The same with a lagging worker only: pauses (and closed time) that
    /// begin after a deadline the worker has not applied yet must not move
    /// it either.
    #[test]
    fn breaches_match_the_deadline_oracle_when_the_worker_lags(scenario in scenario()) {
        run(&scenario, Mode { eager_worker: false, oracle: true })?;
    }
}

#[test]
fn a_pause_running_when_the_policy_drops_the_target_is_counted() {
    let cal = weekdays(NY, "");
    let created = ny("2026-11-23 10:00");
    let urgent = targets(Some(hours(2)), None, None);
    let mut t = Ticket::new(Hours::Calendar(&cal), created, "urgent", urgent.clone());
    t.reconcile(created);
    // First response 2 h: due 12:00. Paused at 10:30 (before the deadline).
    t.set_paused(true, ny("2026-11-23 10:30"));
    // No policy from 11:00, the ticket still paused: the pause ends there,
    // counted (30 min), and the clock is cancelled.
    t.switch_policy(None, ny("2026-11-23 11:00"));
    let fr = t.clock(FR, 1);
    assert_eq!(fr.status, ClockStatus::Cancelled);
    assert_eq!(fr.paused_time, minutes(30));
    assert_eq!(fr.paused_since, None);
    // Urgent again and unpaused at 11:30: the 30 min without a policy began
    // by the deadline (12:30 by then) and count too: due 10:00 + 2 h + 1 h.
    t.switch_policy(Some(("urgent", urgent)), ny("2026-11-23 11:30"));
    t.set_paused(false, ny("2026-11-23 11:30"));
    let fr = t.clock(FR, 1);
    assert_eq!(fr.status, ClockStatus::Running);
    assert_eq!(fr.paused_time, hours(1));
    assert_eq!(fr.due_at, Some(ny("2026-11-23 13:00")));
}
