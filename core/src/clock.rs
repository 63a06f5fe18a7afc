//! SLA clocks: the state of one target (first response, next response,
//! resolution) of one ticket, and how ticket facts and time move it.
//!
//! The model is declarative: [`reconcile`] takes what is known about a ticket
//! now (its facts and its policy) and brings the ticket's clocks in line with
//! it. Calling it twice with the same facts changes nothing, so the same code
//! serves a new ticket, an edited ticket, a policy switch and a calendar edit.
//! Warnings, breaches and ownership release happen only in [`apply_due`], at
//! times stored in each clock, so that each produces exactly one transition.
use crate::error::format_instant;
use crate::error::Result;
use crate::{Calendar, Error, Micros, MAX_INSTANT, MIN_INSTANT};

/// What a clock measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    FirstResponse,
    NextResponse,
    Resolution,
}

impl Metric {
    pub const ALL: [Metric; 3] = [
        Metric::FirstResponse,
        Metric::NextResponse,
        Metric::Resolution,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::FirstResponse => "first_response",
            Metric::NextResponse => "next_response",
            Metric::Resolution => "resolution",
        }
    }

    pub fn parse(text: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == text)
    }

    /// Response clocks end with an agent reply and are cancelled when the
    /// ticket closes without one.
    pub fn is_response(self) -> bool {
        !matches!(self, Metric::Resolution)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockStatus {
    Running,
    DueSoon,
    Breached,
    Paused,
    Achieved,
    Missed,
    Cancelled,
}

impl ClockStatus {
    pub const ALL: [ClockStatus; 7] = [
        ClockStatus::Running,
        ClockStatus::DueSoon,
        ClockStatus::Breached,
        ClockStatus::Paused,
        ClockStatus::Achieved,
        ClockStatus::Missed,
        ClockStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClockStatus::Running => "running",
            ClockStatus::DueSoon => "due_soon",
            ClockStatus::Breached => "breached",
            ClockStatus::Paused => "paused",
            ClockStatus::Achieved => "achieved",
            ClockStatus::Missed => "missed",
            ClockStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<ClockStatus> {
        ClockStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Statuses of a clock still counting (or paused): it can still move.
    /// The SQL helper `sla.clock_is_open` and the reports say the same; a
    /// test compares them.
    pub const OPEN: [ClockStatus; 4] = [
        ClockStatus::Running,
        ClockStatus::DueSoon,
        ClockStatus::Breached,
        ClockStatus::Paused,
    ];

    /// Statuses a clock that breached and is still open can have (paused
    /// after the breach, or not): with `breached_at` set, see
    /// [`Clock::is_breached_open`].
    pub const BREACHED_OPEN: [ClockStatus; 2] = [ClockStatus::Breached, ClockStatus::Paused];

    pub fn is_open(self) -> bool {
        ClockStatus::OPEN.contains(&self)
    }

    /// Rank for the ticket's summary status: the worst open clock wins.
    fn severity(self) -> u8 {
        match self {
            ClockStatus::Breached => 4,
            ClockStatus::DueSoon => 3,
            ClockStatus::Running => 2,
            ClockStatus::Paused => 1,
            _ => 0,
        }
    }
}

/// The targets of the policy that applies to a ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub first_response: Option<Micros>,
    pub next_response: Option<Micros>,
    pub resolution: Option<Micros>,
    /// Fraction of a target after which the clock is due soon (the
    /// policy's `warn_at` column; the clock's `warn_at` is the instant).
    pub warn_fraction: Option<f64>,
    /// Fraction of the first-response target after which an unanswered
    /// ticket loses its assignee (the policy's `release_ownership_at`).
    pub release_fraction: Option<f64>,
}

impl Targets {
    pub fn target(&self, metric: Metric) -> Option<Micros> {
        match metric {
            Metric::FirstResponse => self.first_response,
            Metric::NextResponse => self.next_response,
            Metric::Resolution => self.resolution,
        }
    }
}

/// Business time of a policy: its calendar, or 24/7 when it has none.
#[derive(Clone, Copy)]
pub enum Hours<'a> {
    Calendar(&'a Calendar),
    AlwaysOpen,
}

impl Hours<'_> {
    fn add(&self, t: Micros, duration: Micros) -> Result<Micros> {
        match self {
            Hours::Calendar(calendar) => calendar.add(t, duration),
            Hours::AlwaysOpen => t
                .checked_add(duration)
                .filter(|r| (MIN_INSTANT..=MAX_INSTANT).contains(r))
                .ok_or_else(|| Error::OutOfRange {
                    what: "result beyond",
                    value: format_instant(if duration > 0 {
                        MAX_INSTANT
                    } else {
                        MIN_INSTANT
                    }),
                }),
        }
    }

    /// Business time in `[from, to)`, zero when `to` is not after `from`:
    /// what a clock counts, and what reports measure clocks with.
    pub fn between(&self, from: Micros, to: Micros) -> Result<Micros> {
        if to <= from {
            return Ok(0);
        }
        match self {
            Hours::Calendar(calendar) => calendar.between(from, to),
            Hours::AlwaysOpen => to.checked_sub(from).ok_or_else(|| Error::OutOfRange {
                what: "duration from",
                value: format!("{} to {}", format_instant(from), format_instant(to)),
            }),
        }
    }
}

/// What the clocks need to know about a ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketFacts {
    pub created_at: Micros,
    /// The ticket's status is one of the table's closed statuses.
    pub closed: bool,
    /// The ticket's status is one of its policy's pause statuses.
    pub paused: bool,
    pub last_customer_message_at: Option<Micros>,
    pub last_agent_reply_at: Option<Micros>,
}

/// One SLA clock of one ticket. `cycle` numbers the next-response clocks;
/// the others always have cycle 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Clock {
    pub metric: Metric,
    pub cycle: i32,
    pub policy: String,
    pub status: ClockStatus,
    pub started_at: Micros,
    pub target: Micros,
    pub due_at: Option<Micros>,
    pub warn_at: Option<Micros>,
    pub release_at: Option<Micros>,
    /// Earliest of the pending warning, release and breach: where
    /// [`apply_due`] must look next. `None` when nothing is pending.
    pub next_transition_at: Option<Micros>,
    pub paused_since: Option<Micros>,
    /// Business time spent paused (or closed, for a reopened resolution).
    pub paused_time: Micros,
    pub stopped_at: Option<Micros>,
    pub warned_at: Option<Micros>,
    pub breached_at: Option<Micros>,
    pub released_at: Option<Micros>,
}

impl Clock {
    /// A clock of `metric` that starts running at `started_at`, with
    /// nothing scheduled yet.
    pub fn start(
        metric: Metric,
        cycle: i32,
        policy: &str,
        started_at: Micros,
        target: Micros,
    ) -> Clock {
        Clock {
            metric,
            cycle,
            policy: policy.to_owned(),
            status: ClockStatus::Running,
            started_at,
            target,
            due_at: None,
            warn_at: None,
            release_at: None,
            next_transition_at: None,
            paused_since: None,
            paused_time: 0,
            stopped_at: None,
            warned_at: None,
            breached_at: None,
            released_at: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.status.is_open()
    }

    /// Breached and still open: what breach alerts count and reports call
    /// "breached now". A pause does not undo the lateness.
    pub fn is_breached_open(&self) -> bool {
        self.breached_at.is_some() && ClockStatus::BREACHED_OPEN.contains(&self.status)
    }

    /// The status of an open clock that is not paused, from what has
    /// already happened to it.
    fn running_status(&self) -> ClockStatus {
        if self.breached_at.is_some() {
            ClockStatus::Breached
        } else if self.warned_at.is_some() {
            ClockStatus::DueSoon
        } else {
            ClockStatus::Running
        }
    }

    /// Stops the clock at `at`, with its deadline as of then.
    fn stop(&mut self, at: Micros, targets: &Targets, hours: Hours) -> Result<()> {
        self.end_pause(at, hours)?;
        self.schedule(targets, hours, false)?;
        let late = self.breached_at.is_some() || self.due_at.is_some_and(|due| at > due);
        self.status = if late {
            ClockStatus::Missed
        } else {
            ClockStatus::Achieved
        };
        self.stopped_at = Some(at);
        self.next_transition_at = None;
        Ok(())
    }

    fn cancel(&mut self, at: Micros) {
        self.status = ClockStatus::Cancelled;
        self.stopped_at = Some(at);
        self.paused_since = None;
        self.next_transition_at = None;
    }

    /// Folds a pause that ends at `at` into the paused business time.
    /// Folds a pause that ends at `at` into the paused business time. A
    /// pause that began after the deadline had passed does not count: the
    /// clock was already late, whether or not due processing had noticed,
    /// so the outcome never depends on when the worker last ran.
    /// The deadline under the current target and the pauses counted so far.
    fn deadline(&self, hours: Hours) -> Result<Micros> {
        hours.add(self.started_at, self.target + self.paused_time)
    }

    fn end_pause(&mut self, at: Micros, hours: Hours) -> Result<()> {
        if let Some(since) = self.paused_since.take() {
            let deadline = self.deadline(hours)?;
            if since <= deadline && self.breached_at.is_none() {
                self.paused_time += hours.between(since, at)?;
            }
        }
        Ok(())
    }

    /// Deadlines from the start, the target and the paused time, and the
    /// next pending transition.
    fn schedule(&mut self, targets: &Targets, hours: Hours, releasable: bool) -> Result<()> {
        let shifted = |fraction: f64| -> Result<Micros> {
            // Fractions are in (0, 1), so the product stays within the target.
            let part = (self.target as f64 * fraction).round() as Micros;
            hours.add(self.started_at, part + self.paused_time)
        };
        self.due_at = Some(hours.add(self.started_at, self.target + self.paused_time)?);
        self.warn_at = targets.warn_fraction.map(&shifted).transpose()?;
        self.release_at = if self.metric == Metric::FirstResponse && releasable {
            targets.release_fraction.map(&shifted).transpose()?
        } else {
            None
        };
        self.next_transition_at = self.pending_transition();
        Ok(())
    }

    /// The deadline of a clock paused after it had passed, not yet recorded
    /// as breached. Such a pause does not count, so the breach stands; due
    /// processing records it during the pause, as it would have before, and
    /// the outcome does not depend on when it last ran.
    fn breach_behind_pause(&self) -> Option<Micros> {
        let since = self.paused_since?;
        let due = self.due_at?;
        (self.breached_at.is_none() && since > due).then_some(due)
    }

    fn pending_transition(&self) -> Option<Micros> {
        if !self.is_open() {
            return None;
        }
        if self.status == ClockStatus::Paused {
            return self.breach_behind_pause();
        }
        let warn = self
            .warn_at
            .filter(|_| self.warned_at.is_none() && self.breached_at.is_none());
        let release = self.release_at.filter(|_| self.released_at.is_none());
        let breach = self.due_at.filter(|_| self.breached_at.is_none());
        [warn, release, breach].into_iter().flatten().min()
    }
}

/// Brings a ticket's clocks in line with its facts and policy at `now`.
///
/// `clocks` holds every clock of the ticket (any order); clocks are updated
/// in place and new ones appended. `policy` is the name and targets of the
/// policy that matches the ticket now, or `None` when none does: open clocks
/// are then cancelled. `releasable` says whether the table maps an assignee
/// column, so that ownership release is scheduled.
pub fn reconcile(
    clocks: &mut Vec<Clock>,
    facts: &TicketFacts,
    policy: Option<(&str, &Targets)>,
    hours: Hours,
    now: Micros,
    releasable: bool,
) -> Result<()> {
    let Some((policy_name, targets)) = policy else {
        for clock in clocks.iter_mut().filter(|c| c.is_open()) {
            // A pause running now ends here, counted, as at a close.
            clock.end_pause(now, hours)?;
            clock.cancel(now);
        }
        return Ok(());
    };

    // Clocks that should exist and do not yet.
    for metric in [Metric::FirstResponse, Metric::Resolution] {
        if let Some(target) = targets.target(metric) {
            if !clocks.iter().any(|c| c.metric == metric) {
                clocks.push(Clock::start(
                    metric,
                    1,
                    policy_name,
                    facts.created_at,
                    target,
                ));
            }
        }
    }
    if let (Some(target), Some(reply), Some(message)) = (
        targets.next_response,
        facts.last_agent_reply_at,
        facts.last_customer_message_at,
    ) {
        let last_cycle = clocks
            .iter()
            .filter(|c| c.metric == Metric::NextResponse)
            .max_by_key(|c| c.cycle);
        // A customer message after the last reply opens a cycle, unless this
        // run of messages already has one.
        let covered = last_cycle.is_some_and(|c| c.started_at > reply);
        if message > reply && !covered && !facts.closed {
            let cycle = last_cycle.map_or(1, |c| c.cycle + 1);
            clocks.push(Clock::start(
                Metric::NextResponse,
                cycle,
                policy_name,
                message,
                target,
            ));
        }
    }

    let last_cycle = clocks
        .iter()
        .filter(|c| c.metric == Metric::NextResponse)
        .map(|c| c.cycle)
        .max();
    for clock in clocks.iter_mut() {
        let latest = clock.metric != Metric::NextResponse || Some(clock.cycle) == last_cycle;
        reconcile_clock(
            clock,
            facts,
            policy_name,
            targets,
            hours,
            now,
            releasable,
            latest,
        )?;
    }
    Ok(())
}

/// `latest`: the clock is not an earlier next-response cycle.
#[allow(clippy::too_many_arguments)]
fn reconcile_clock(
    clock: &mut Clock,
    facts: &TicketFacts,
    policy_name: &str,
    targets: &Targets,
    hours: Hours,
    now: Micros,
    releasable: bool,
    latest: bool,
) -> Result<()> {
    if resumes(clock, facts, targets, latest) {
        // Time spent closed, or under a policy without this target, does not
        // count: treat it as a pause that ends now.
        clock.paused_since = clock.stopped_at.take();
        clock.status = ClockStatus::Paused;
    }
    if !clock.is_open() {
        return Ok(());
    }
    let Some(target) = targets.target(clock.metric) else {
        // The policy that now applies has no such target.
        clock.end_pause(now, hours)?;
        clock.cancel(now);
        return Ok(());
    };
    if clock.policy != policy_name || clock.target != target {
        clock.policy = policy_name.to_owned();
        clock.target = target;
    }

    let replied_at = facts
        .last_agent_reply_at
        .filter(|&reply| reply >= clock.started_at);
    match clock.metric {
        Metric::FirstResponse | Metric::NextResponse => {
            if let Some(reply) = replied_at.or(match clock.metric {
                // A reply dated before creation (imported data) still counts.
                Metric::FirstResponse => facts.last_agent_reply_at,
                _ => None,
            }) {
                return clock.stop(reply.max(clock.started_at), targets, hours);
            }
            if facts.closed {
                // Closed without a reply: nothing left to measure, unless the
                // deadline had passed (noticed by due processing or not),
                // which stays on record as missed.
                clock.end_pause(now, hours)?;
                let deadline = clock.deadline(hours)?;
                if clock.breached_at.is_some() || deadline < now {
                    return clock.stop(now, targets, hours);
                }
                clock.cancel(now);
                return Ok(());
            }
        }
        Metric::Resolution => {
            if facts.closed {
                return clock.stop(now, targets, hours);
            }
        }
    }

    // Open and staying open: pause or resume, then reschedule.
    if facts.paused {
        if clock.paused_since.is_none() {
            clock.paused_since = Some(now);
        }
        clock.status = ClockStatus::Paused;
    } else {
        clock.end_pause(now, hours)?;
        clock.status = clock.running_status();
    }
    clock.schedule(targets, hours, releasable)
}

/// Whether a stopped clock runs again: a resolution clock when its ticket
/// reopens; a cancelled clock when what cancelled it is over (the ticket
/// reopened without a reply, or a policy with its target applies again).
fn resumes(clock: &Clock, facts: &TicketFacts, targets: &Targets, latest: bool) -> bool {
    if facts.closed || targets.target(clock.metric).is_none() {
        return false;
    }
    match (clock.status, clock.metric) {
        (ClockStatus::Achieved | ClockStatus::Missed, Metric::Resolution) => true,
        (ClockStatus::Cancelled, Metric::Resolution) => true,
        (ClockStatus::Cancelled, Metric::FirstResponse) => facts.last_agent_reply_at.is_none(),
        (ClockStatus::Cancelled, Metric::NextResponse) => {
            latest
                && facts
                    .last_agent_reply_at
                    .is_none_or(|reply| reply < clock.started_at)
        }
        _ => false,
    }
}

/// A transition applied by [`apply_due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    DueSoon,
    Breached,
    OwnershipReleased,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::DueSoon => "due_soon",
            Transition::Breached => "breached",
            Transition::OwnershipReleased => "ownership_released",
        }
    }
}

/// What a row of `sla.notifications` announces (its `kind`): a transition,
/// the customer feedback message a transition sends, or a breach alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    DueSoon,
    Breached,
    OwnershipReleased,
    CustomerFeedback,
    BreachAlert,
}

impl NotificationKind {
    pub const ALL: [NotificationKind; 5] = [
        NotificationKind::DueSoon,
        NotificationKind::Breached,
        NotificationKind::OwnershipReleased,
        NotificationKind::CustomerFeedback,
        NotificationKind::BreachAlert,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::DueSoon => "due_soon",
            NotificationKind::Breached => "breached",
            NotificationKind::OwnershipReleased => "ownership_released",
            NotificationKind::CustomerFeedback => "customer_feedback",
            NotificationKind::BreachAlert => "breach_alert",
        }
    }

    pub fn parse(text: &str) -> Option<NotificationKind> {
        NotificationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

impl From<Transition> for NotificationKind {
    fn from(transition: Transition) -> Self {
        match transition {
            Transition::DueSoon => NotificationKind::DueSoon,
            Transition::Breached => NotificationKind::Breached,
            Transition::OwnershipReleased => NotificationKind::OwnershipReleased,
        }
    }
}

/// Applies the transitions of `clock` whose time is at or before `now`, and
/// returns them in order. A warning whose breach is also due is folded into
/// the breach: nobody needs "due soon" for a clock that is already late.
pub fn apply_due(clock: &mut Clock, now: Micros) -> Vec<Transition> {
    let mut applied = Vec::new();
    if !clock.is_open() {
        return applied;
    }
    if clock.status == ClockStatus::Paused {
        // Only a breach that happened before the pause; nothing else moves
        // while the clock is stopped.
        if let Some(due) = clock.breach_behind_pause().filter(|&due| due < now) {
            clock.breached_at = Some(due);
            applied.push(Transition::Breached);
        }
        clock.next_transition_at = clock.pending_transition();
        return applied;
    }
    if let Some(release) = clock.release_at {
        if release <= now && clock.released_at.is_none() {
            clock.released_at = Some(release);
            applied.push(Transition::OwnershipReleased);
        }
    }
    match (clock.due_at, clock.warn_at) {
        // The deadline itself is still in time; breached is after it.
        (Some(due), _) if due < now && clock.breached_at.is_none() => {
            clock.breached_at = Some(due);
            clock.status = ClockStatus::Breached;
            applied.push(Transition::Breached);
        }
        (_, Some(warn))
            if warn <= now && clock.warned_at.is_none() && clock.breached_at.is_none() =>
        {
            clock.warned_at = Some(warn);
            clock.status = ClockStatus::DueSoon;
            applied.push(Transition::DueSoon);
        }
        _ => {}
    }
    clock.next_transition_at = clock.pending_transition();
    applied
}

/// What a ticket shows of its clocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The worst open clock's status (a paused clock that breached counts
    /// as breached); once none is open, `missed` if any clock was missed,
    /// else `achieved`; `None` for a ticket without clocks.
    pub status: Option<ClockStatus>,
    /// The nearest deadline of an open clock that has not breached.
    pub due_at: Option<Micros>,
    /// The first breach of any clock.
    pub breached_at: Option<Micros>,
}

pub fn summarize(clocks: &[Clock]) -> Summary {
    let open = clocks.iter().filter(|c| c.is_open());
    // A breach stays a breach while the ticket waits on the customer: the
    // pause stops the clock, it does not undo the lateness.
    let shown = |c: &Clock| {
        if c.status == ClockStatus::Paused && c.breached_at.is_some() {
            ClockStatus::Breached
        } else {
            c.status
        }
    };
    let status = open.clone().map(shown).max_by_key(|s| s.severity());
    let status = status.or_else(|| {
        let ended = |s| clocks.iter().any(|c| c.status == s);
        if ended(ClockStatus::Missed) {
            Some(ClockStatus::Missed)
        } else if ended(ClockStatus::Achieved) {
            Some(ClockStatus::Achieved)
        } else {
            // No clock, or only cancelled ones: nothing was measured.
            None
        }
    });
    let due_at = open
        .filter(|c| c.status != ClockStatus::Paused && c.breached_at.is_none())
        .filter_map(|c| c.due_at)
        .min();
    let breached_at = clocks.iter().filter_map(|c| c.breached_at).min();
    Summary {
        status,
        due_at,
        breached_at,
    }
}
