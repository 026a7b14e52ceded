//! Turning a deadline on a nanosecond clock into a count for a hardware
//! timer (TSC-deadline ticks, APIC timer counts) that runs at a known rate.

use crate::types::{Hertz, Nanos};

/// Ticks at `hz` from `now` until `deadline`, both read from the same
/// clock: 0 for a deadline already past, and never more than
/// `u64::MAX / 2`, so that adding the result to a counter read at `now`
/// cannot wrap it.
///
/// `now` must be read immediately before the timer's own counter (or the
/// timer is started): whatever runs between the two readings makes the
/// interrupt that much late.
pub fn ticks_until(deadline: Nanos, now: Nanos, hz: Hertz) -> u64 {
    let delay = deadline.0.saturating_sub(now.0);
    let ticks = u128::from(delay) * u128::from(hz.0) / 1_000_000_000;
    ticks.min(u128::from(u64::MAX / 2)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const GHZ_2_6: Hertz = Hertz(2_600_000_000);

    #[test]
    fn a_millisecond_at_2_6_ghz_is_2_6_million_ticks() {
        assert_eq!(
            ticks_until(Nanos(5_001_000_000), Nanos(5_000_000_000), GHZ_2_6),
            2_600_000
        );
    }

    #[test]
    fn a_deadline_now_or_past_is_zero_ticks() {
        assert_eq!(ticks_until(Nanos(10), Nanos(10), GHZ_2_6), 0);
        assert_eq!(ticks_until(Nanos(10), Nanos(11), GHZ_2_6), 0);
        assert_eq!(ticks_until(Nanos(0), Nanos(u64::MAX), GHZ_2_6), 0);
    }

    #[test]
    fn a_far_deadline_is_capped_so_adding_it_cannot_wrap() {
        assert_eq!(
            ticks_until(Nanos(u64::MAX), Nanos(0), Hertz(u64::MAX)),
            u64::MAX / 2
        );
    }

    #[test]
    fn sub_tick_remainders_round_down() {
        // 1 ns at 1 GHz is one tick; 1 ns at 999 MHz is not yet one.
        assert_eq!(ticks_until(Nanos(1), Nanos(0), Hertz(1_000_000_000)), 1);
        assert_eq!(ticks_until(Nanos(1), Nanos(0), Hertz(999_999_999)), 0);
    }
}
