//! Breach alerts with a threshold: an alert goes out once when a count of
//! breached open tickets reaches the threshold, and the rule re-arms only
//! once the count has fallen below it again.

/// What a rule's new count does to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStep {
    /// The count reached the threshold while the rule was armed: alert.
    Fire,
    /// The count fell below the threshold: the next crossing alerts again.
    Rearm,
    /// Nothing to announce.
    Stay,
}

/// The step for a rule that was `alerting` (its count was at or over the
/// threshold when last seen) and now counts `breached` tickets.
pub fn alert_step(breached: i64, min_breached: i32, alerting: bool) -> AlertStep {
    let reached = breached >= i64::from(min_breached);
    match (reached, alerting) {
        (true, false) => AlertStep::Fire,
        (false, true) => AlertStep::Rearm,
        _ => AlertStep::Stay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays a sequence of counts and returns the counts at which an
    /// alert went out.
    fn alerts(counts: &[i64], min_breached: i32) -> Vec<i64> {
        let mut alerting = false;
        let mut fired = Vec::new();
        for &count in counts {
            match alert_step(count, min_breached, alerting) {
                AlertStep::Fire => {
                    fired.push(count);
                    alerting = true;
                }
                AlertStep::Rearm => alerting = false,
                AlertStep::Stay => {}
            }
        }
        fired
    }

    #[test]
    fn fires_once_per_crossing() {
        assert_eq!(alerts(&[0, 1, 2, 3, 4, 3, 5], 3), vec![3]);
        assert_eq!(alerts(&[0, 3, 2, 3, 9, 0, 4], 3), vec![3, 3, 4]);
    }

    #[test]
    fn a_jump_over_the_threshold_fires_once() {
        assert_eq!(alerts(&[0, 10, 12], 3), vec![10]);
    }

    #[test]
    fn the_threshold_itself_counts_as_reached() {
        assert_eq!(alert_step(1, 1, false), AlertStep::Fire);
        assert_eq!(alert_step(0, 1, true), AlertStep::Rearm);
        assert_eq!(alert_step(1, 1, true), AlertStep::Stay);
        assert_eq!(alert_step(0, 1, false), AlertStep::Stay);
    }
}
