//! UTC offset segments of a time zone: the spans of UTC time during which the
//! zone's offset is constant. Local wall-clock windows become UTC intervals by
//! subtracting the offset of each segment they meet, which handles skipped
//! (spring-forward) and repeated (fall-back) local hours exactly.

use chrono::{DateTime, Offset, TimeZone};
use chrono_tz::Tz;

/// `[start, end)` in UTC seconds with a constant offset (local = utc + offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: i64,
    pub end: i64,
    pub offset: i64,
}

/// Real-world zones change offset at most a few times a year; probing at this
/// step and bisecting between probes that differ finds every change.
const PROBE_STEP: i64 = 6 * 3600;

fn offset_at(tz: Tz, utc_seconds: i64) -> i64 {
    let instant = DateTime::from_timestamp(utc_seconds, 0)
        .expect("caller keeps instants inside chrono's range")
        .naive_utc();
    i64::from(
        tz.offset_from_utc_datetime(&instant)
            .fix()
            .local_minus_utc(),
    )
}

/// The segments covering `[from, to)` (UTC seconds), in order.
pub fn segments(tz: Tz, from: i64, to: i64) -> Vec<Segment> {
    let mut result = Vec::new();
    let mut start = from;
    let mut offset = offset_at(tz, from);
    let mut probe = from;
    while probe < to {
        let next = (probe + PROBE_STEP).min(to);
        let next_offset = offset_at(tz, next);
        if next_offset != offset {
            // Bisect for the first second with the new offset.
            let (mut lo, mut hi) = (probe, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset_at(tz, mid) == offset {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            result.push(Segment {
                start,
                end: hi,
                offset,
            });
            start = hi;
            offset = offset_at(tz, hi);
            // A second change inside the same probe step is not possible in
            // practice, but re-probe from the change to stay exact.
            probe = hi;
            continue;
        }
        probe = next;
    }
    result.push(Segment {
        start,
        end: to,
        offset,
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_york_spring_forward_2026() {
        // 2026-03-08 07:00 UTC is 02:00 EST -> 03:00 EDT.
        let from = 1_772_841_600; // 2026-03-07 00:00 UTC
        let to = from + 3 * 86_400;
        let segs = segments(chrono_tz::America::New_York, from, to);
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].offset, -5 * 3600);
        assert_eq!(segs[0].end, 1_772_953_200);
        assert_eq!(segs[1].offset, -4 * 3600);
        assert_eq!(segs[1].end, to);
    }

    #[test]
    fn lord_howe_half_hour_shift() {
        let from = 1_775_000_000;
        let to = from + 10 * 86_400;
        let segs = segments(chrono_tz::Australia::Lord_Howe, from, to);
        let offsets: Vec<i64> = segs.iter().map(|s| s.offset).collect();
        assert_eq!(offsets, vec![11 * 3600, 10 * 3600 + 1800]);
    }
}
