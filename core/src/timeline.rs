//! Business-time arithmetic over a calendar.
//!
//! The calendar's open time is materialised lazily as sorted UTC intervals in
//! fixed chunks of about 407 days, each with prefix sums of business time.
//! Within a chunk every operation is a binary search; across chunks it uses
//! the chunk totals, so the cost of adding a year of business time is a few
//! lookups more than adding an hour. A chunk is built once per calendar (day by
//! day, with the zone's offset changes) and then reused by every call.

use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use chrono::NaiveDate;

use crate::calendar::CalendarSpec;
use crate::error::{format_instant, Error, Result};
use crate::offsets;
use crate::{Micros, MICROS_PER_SECOND, SEARCH_HORIZON};

/// Chunk width: 2^45 µs, about 407 days.
const CHUNK_BITS: u32 = 45;
const CHUNK: Micros = 1 << CHUNK_BITS;
/// Chunks kept per calendar before the cache starts over (about 100 years).
const MAX_CACHED_CHUNKS: usize = 96;

/// 0001-01-01 00:00:00 UTC.
pub const MIN_INSTANT: Micros = -62_135_596_800 * MICROS_PER_SECOND;
/// 10000-01-01 00:00:00 UTC (exclusive).
pub const MAX_INSTANT: Micros = 253_402_300_800 * MICROS_PER_SECOND;

const FIRST_CHUNK: i64 = MIN_INSTANT >> CHUNK_BITS;
const CHUNK_SLOTS: usize = ((MAX_INSTANT >> CHUNK_BITS) - FIRST_CHUNK + 1) as usize;

const SECONDS_PER_DAY: i64 = 86_400;
/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i64 = 719_163;

/// Open intervals of one chunk, clipped to it, with prefix sums.
#[derive(Debug)]
struct Chunk {
    starts: Vec<Micros>,
    ends: Vec<Micros>,
    /// `cum[i]` is the business time before interval `i`; `cum[n]` the total.
    cum: Vec<Micros>,
}

impl Chunk {
    fn total(&self) -> Micros {
        self.cum[self.cum.len() - 1]
    }

    /// Business time from the chunk's start up to `t`.
    fn before(&self, t: Micros) -> Micros {
        let i = self.starts.partition_point(|&s| s <= t);
        if i > 0 && t < self.ends[i - 1] {
            self.cum[i - 1] + (t - self.starts[i - 1])
        } else {
            self.cum[i]
        }
    }

    fn contains(&self, t: Micros) -> bool {
        let i = self.starts.partition_point(|&s| s <= t);
        i > 0 && t < self.ends[i - 1]
    }

    /// The earliest instant at which `target` (0 < target <= total) of
    /// business time has elapsed since the chunk's start.
    fn earliest_reaching(&self, target: Micros) -> Micros {
        let i = self.cum[1..].partition_point(|&c| c < target);
        self.starts[i] + (target - self.cum[i])
    }

    /// The latest instant from which business time up to the chunk's start
    /// equals `target` (0 <= target < total).
    fn latest_reaching(&self, target: Micros) -> Micros {
        let n = self.starts.len();
        let i = self.cum[..n].partition_point(|&c| c <= target) - 1;
        self.starts[i] + (target - self.cum[i])
    }

    /// Index of the first interval ending after `t`.
    fn first_ending_after(&self, t: Micros) -> usize {
        self.ends.partition_point(|&e| e <= t)
    }
}

/// What crossing a whole chunk needs: its business time and where its open
/// time begins and ends (meaningful when `total > 0`).
#[derive(Debug, Clone, Copy)]
struct Summary {
    total: Micros,
    first_start: Micros,
    last_end: Micros,
}

impl Chunk {
    fn summary(&self) -> Summary {
        Summary {
            total: self.total(),
            first_start: self.starts.first().copied().unwrap_or(0),
            last_end: self.ends.last().copied().unwrap_or(0),
        }
    }
}

thread_local! {
    static INTERRUPT_CHECK: Cell<Option<fn()>> = const { Cell::new(None) };
}

/// Registers a function called before each chunk is built, the one step that
/// takes time (tens of microseconds). The PostgreSQL extension passes its
/// interrupt check, so that a query computing over centuries can be
/// cancelled; the function may unwind.
pub fn set_interrupt_check(check: fn()) {
    INTERRUPT_CHECK.with(|c| c.set(Some(check)));
}

/// A validated calendar with its lazily built timeline. Not `Sync`: each
/// PostgreSQL backend keeps its own.
#[derive(Debug)]
pub struct Calendar {
    spec: CalendarSpec,
    always_open: bool,
    /// Built chunks, indexed directly by chunk number (about 9,000 slots
    /// cover years 1 to 9999), so the per-call lookup hashes nothing.
    chunks: RefCell<Vec<Option<Rc<Chunk>>>>,
    built: Cell<usize>,
    /// Summaries of every chunk ever built (at most about 9,000, 24 bytes
    /// each), kept when the chunks themselves are dropped: long durations and
    /// ranges cross whole chunks using these alone.
    summaries: RefCell<HashMap<i64, Summary>>,
}

fn chunk_of(t: Micros) -> i64 {
    t >> CHUNK_BITS
}

fn chunk_start(k: i64) -> Micros {
    k << CHUNK_BITS
}

fn check_instant(what: &'static str, t: Micros) -> Result<()> {
    if (MIN_INSTANT..MAX_INSTANT).contains(&t) {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            what,
            value: format_instant(t),
        })
    }
}

impl Calendar {
    pub fn new(spec: CalendarSpec) -> Self {
        Calendar {
            always_open: spec.is_always_open(),
            spec,
            chunks: RefCell::new(Vec::new()),
            built: Cell::new(0),
            summaries: RefCell::new(HashMap::new()),
        }
    }

    /// Parses and validates a JSON definition.
    pub fn parse(text: &str) -> Result<Self> {
        CalendarSpec::parse(text).map(Calendar::new)
    }

    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        CalendarSpec::from_json(value).map(Calendar::new)
    }

    pub fn spec(&self) -> &CalendarSpec {
        &self.spec
    }

    fn build(&self, k: i64) -> Chunk {
        if let Some(check) = INTERRUPT_CHECK.with(Cell::get) {
            check();
        }
        let chunk = build_chunk(&self.spec, k);
        self.summaries.borrow_mut().insert(k, chunk.summary());
        chunk
    }

    fn summary(&self, k: i64) -> Summary {
        let known = self.summaries.borrow().get(&k).copied();
        known.unwrap_or_else(|| self.chunk(k).summary())
    }

    fn chunk(&self, k: i64) -> Rc<Chunk> {
        let Some(slot) = usize::try_from(k - FIRST_CHUNK)
            .ok()
            .filter(|&slot| slot < CHUNK_SLOTS)
        else {
            // Only reachable at the very edges of the supported range.
            return Rc::new(self.build(k));
        };
        if let Some(Some(chunk)) = self.chunks.borrow().get(slot) {
            return Rc::clone(chunk);
        }
        let chunk = Rc::new(self.build(k));
        let mut chunks = self.chunks.borrow_mut();
        if chunks.is_empty() || self.built.get() >= MAX_CACHED_CHUNKS {
            chunks.clear();
            chunks.resize(CHUNK_SLOTS, None);
            self.built.set(0);
        }
        chunks[slot] = Some(Rc::clone(&chunk));
        self.built.set(self.built.get() + 1);
        chunk
    }

    /// Whether `t` is business time.
    pub fn is_open(&self, t: Micros) -> Result<bool> {
        check_instant("timestamp", t)?;
        Ok(self.always_open || self.chunk(chunk_of(t)).contains(t))
    }

    /// `t` when it is business time, else the next opening.
    pub fn next_open(&self, t: Micros) -> Result<Micros> {
        check_instant("timestamp", t)?;
        if self.always_open {
            return Ok(t);
        }
        let mut k = chunk_of(t);
        let chunk = self.chunk(k);
        let i = chunk.first_ending_after(t);
        if i < chunk.starts.len() {
            return Ok(chunk.starts[i].max(t));
        }
        loop {
            k += 1;
            self.check_progress(t, chunk_start(k), true)?;
            let summary = self.summary(k);
            if summary.total > 0 {
                self.check_gap(t, summary.first_start, true)?;
                return Ok(summary.first_start);
            }
        }
    }

    /// The horizon holds between business times, not chunk boundaries: a
    /// chunk that starts within it may open only after it.
    fn check_gap(&self, from: Micros, opening: Micros, forward: bool) -> Result<()> {
        if (opening - from).abs() > SEARCH_HORIZON {
            return Err(Error::NoBusinessTime { from, forward });
        }
        Ok(())
    }

    fn check_progress(&self, from: Micros, reached: Micros, forward: bool) -> Result<()> {
        if (reached - from).abs() > SEARCH_HORIZON {
            return Err(Error::NoBusinessTime { from, forward });
        }
        let bound = if forward { MAX_INSTANT } else { MIN_INSTANT };
        if (forward && reached >= bound) || (!forward && reached <= bound) {
            return Err(Error::OutOfRange {
                what: "result beyond",
                value: format_instant(bound),
            });
        }
        Ok(())
    }

    /// The earliest instant at which `duration` of business time has elapsed
    /// since `t`; for a negative duration, the latest instant from which
    /// `|duration|` of business time elapses up to `t`.
    pub fn add(&self, t: Micros, duration: Micros) -> Result<Micros> {
        check_instant("timestamp", t)?;
        if duration == 0 {
            return Ok(t);
        }
        // Business time never runs faster than real time: a result beyond
        // the supported range is known without a search (and, once this
        // passes, `t + duration` cannot overflow).
        let reachable = if duration > 0 {
            duration < MAX_INSTANT - t
        } else {
            duration >= MIN_INSTANT - t
        };
        if !reachable {
            let bound = if duration > 0 {
                MAX_INSTANT
            } else {
                MIN_INSTANT
            };
            return Err(Error::OutOfRange {
                what: "result beyond",
                value: format_instant(bound),
            });
        }
        if self.always_open {
            return Ok(t + duration);
        }
        let result = if duration > 0 {
            self.add_forward(t, duration)?
        } else {
            self.add_backward(t, -duration)?
        };
        check_instant("result", result)?;
        Ok(result)
    }

    fn add_forward(&self, t: Micros, mut remaining: Micros) -> Result<Micros> {
        let mut k = chunk_of(t);
        // Where business time was last seen, for the horizon check.
        let mut last_open = t;
        // Fast path for short durations: the result lies in the interval
        // holding `t` or in the next one, found with a single search.
        let chunk = self.chunk(k);
        let i = chunk.first_ending_after(t);
        if i < chunk.starts.len() {
            let from = chunk.starts[i].max(t);
            if remaining <= chunk.ends[i] - from {
                return Ok(from + remaining);
            }
        }
        let done = chunk.before(t);
        let available = chunk.total() - done;
        if remaining <= available {
            return Ok(chunk.earliest_reaching(done + remaining));
        }
        remaining -= available;
        if available > 0 {
            last_open = chunk.ends[chunk.ends.len() - 1];
        }
        // Whole chunks by their summaries, until the one holding the result.
        loop {
            k += 1;
            self.check_progress(last_open, chunk_start(k), true)?;
            let summary = self.summary(k);
            if summary.total > 0 {
                self.check_gap(last_open, summary.first_start, true)?;
            }
            if remaining <= summary.total {
                return Ok(self.chunk(k).earliest_reaching(remaining));
            }
            remaining -= summary.total;
            if summary.total > 0 {
                last_open = summary.last_end;
            }
        }
    }

    fn add_backward(&self, t: Micros, mut remaining: Micros) -> Result<Micros> {
        let mut k = chunk_of(t);
        let mut last_open = t;
        let chunk = self.chunk(k);
        let available = chunk.before(t);
        if remaining < available {
            return Ok(chunk.latest_reaching(available - remaining));
        }
        if remaining == available {
            // Landing exactly on the chunk's first opening: the latest
            // instant is that opening, even when closed time precedes it.
            return Ok(chunk.starts[0]);
        }
        remaining -= available;
        if available > 0 {
            last_open = chunk.starts[0];
        }
        loop {
            self.check_progress(last_open, chunk_start(k), false)?;
            k -= 1;
            let summary = self.summary(k);
            if summary.total > 0 {
                self.check_gap(last_open, summary.last_end, false)?;
            }
            if remaining < summary.total {
                return Ok(self.chunk(k).latest_reaching(summary.total - remaining));
            }
            if remaining == summary.total {
                return Ok(summary.first_start);
            }
            remaining -= summary.total;
            if summary.total > 0 {
                last_open = summary.first_start;
            }
        }
    }

    /// Business time in `[from, to)`; negative when `to < from`.
    pub fn between(&self, from: Micros, to: Micros) -> Result<Micros> {
        check_instant("timestamp", from)?;
        check_instant("timestamp", to)?;
        if to < from {
            return self.between(to, from).map(|d| -d);
        }
        if self.always_open {
            return Ok(to - from);
        }
        let (first, last) = (chunk_of(from), chunk_of(to));
        let head = self.chunk(first);
        if first == last {
            return Ok(head.before(to) - head.before(from));
        }
        let mut total = head.total() - head.before(from);
        for k in first + 1..last {
            total += self.summary(k).total;
        }
        Ok(total + self.chunk(last).before(to))
    }

    /// The open periods within `[from, to)`, clipped to it, in order.
    pub fn periods(&self, from: Micros, to: Micros) -> Result<Periods<&Calendar>> {
        Periods::new(self, from, to)
    }
}

/// Iterator over the open periods of a range; owns or borrows its calendar.
pub struct Periods<C: Borrow<Calendar>> {
    calendar: C,
    to: Micros,
    chunk_index: i64,
    chunk: Option<Rc<Chunk>>,
    next: usize,
    /// The latest period, held back until we know the next chunk does not
    /// continue it (intervals are split at chunk boundaries).
    pending: Option<(Micros, Micros)>,
    from: Micros,
}

impl<C: Borrow<Calendar>> Periods<C> {
    pub fn new(calendar: C, from: Micros, to: Micros) -> Result<Self> {
        check_instant("timestamp", from)?;
        check_instant("timestamp", to)?;
        Ok(Periods {
            chunk_index: chunk_of(from),
            calendar,
            to,
            chunk: None,
            next: 0,
            pending: None,
            from,
        })
    }

    /// The next raw (possibly chunk-split) interval clipped to the range.
    fn next_raw(&mut self) -> Option<(Micros, Micros)> {
        let calendar = self.calendar.borrow();
        if self.from >= self.to {
            return None;
        }
        if calendar.always_open {
            let whole = (self.from, self.to);
            self.from = self.to;
            return Some(whole);
        }
        loop {
            if chunk_start(self.chunk_index) >= self.to {
                return None;
            }
            let chunk = match &self.chunk {
                Some(chunk) => Rc::clone(chunk),
                None => {
                    let chunk = calendar.chunk(self.chunk_index);
                    self.next = chunk.first_ending_after(self.from);
                    self.chunk = Some(Rc::clone(&chunk));
                    chunk
                }
            };
            if self.next < chunk.starts.len() {
                let i = self.next;
                self.next += 1;
                let start = chunk.starts[i].max(self.from);
                if start >= self.to {
                    return None;
                }
                return Some((start, chunk.ends[i].min(self.to)));
            }
            self.chunk_index += 1;
            self.chunk = None;
        }
    }
}

impl<C: Borrow<Calendar>> Iterator for Periods<C> {
    type Item = (Micros, Micros);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match (self.next_raw(), self.pending) {
                (Some((s, e)), Some((ps, pe))) if s == pe => self.pending = Some((ps, e)),
                (Some(raw), Some(pending)) => {
                    self.pending = Some(raw);
                    return Some(pending);
                }
                (Some(raw), None) => self.pending = Some(raw),
                (None, pending) => {
                    self.pending = None;
                    return pending;
                }
            }
        }
    }
}

fn build_chunk(spec: &CalendarSpec, k: i64) -> Chunk {
    let start = chunk_start(k);
    let end = start + CHUNK;
    // Local days whose windows (up to 48 h long, offsets well under a day)
    // can reach into the chunk, and the offsets over the same span.
    let margin = 3 * SECONDS_PER_DAY;
    let from_s = start.div_euclid(MICROS_PER_SECOND) - margin;
    let to_s = end.div_euclid(MICROS_PER_SECOND) + 1 + margin;
    let segments = offsets::segments(spec.timezone, from_s, to_s);

    let mut raw: Vec<(Micros, Micros)> = Vec::new();
    for day in from_s.div_euclid(SECONDS_PER_DAY)..=to_s.div_euclid(SECONDS_PER_DAY) {
        let Some(date) = i32::try_from(day + UNIX_EPOCH_FROM_CE)
            .ok()
            .and_then(NaiveDate::from_num_days_from_ce_opt)
        else {
            continue;
        };
        let midnight = day * SECONDS_PER_DAY;
        for window in spec.windows_on(date) {
            let local_start = midnight + i64::from(window.start) * 60;
            let local_end = midnight + i64::from(window.end) * 60;
            for segment in &segments {
                let lo = (local_start - segment.offset).max(segment.start);
                let hi = (local_end - segment.offset).min(segment.end);
                if lo < hi {
                    raw.push((lo * MICROS_PER_SECOND, hi * MICROS_PER_SECOND));
                }
            }
        }
    }
    raw.sort_unstable();

    let mut chunk = Chunk {
        starts: Vec::new(),
        ends: Vec::new(),
        cum: vec![0],
    };
    let mut current: Option<(Micros, Micros)> = None;
    let push = |chunk: &mut Chunk, (s, e): (Micros, Micros)| {
        let (s, e) = (s.max(start), e.min(end));
        if s < e {
            let before = chunk.cum[chunk.cum.len() - 1];
            chunk.starts.push(s);
            chunk.ends.push(e);
            chunk.cum.push(before + (e - s));
        }
    };
    for (s, e) in raw {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some(done) => {
                push(&mut chunk, done);
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some(done) = current {
        push(&mut chunk, done);
    }
    chunk
}
