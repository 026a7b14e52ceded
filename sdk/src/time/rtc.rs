//! Wall-clock arithmetic for the CMOS real-time clock (MC146818 and its
//! descendants) and for VMware's GETTIMEFULL backdoor command: register
//! values in, Unix-epoch nanoseconds out, every out-of-range field refused.
//!
//! Reading the registers (port 0x70/0x71, waiting out the update-in-progress
//! flag, reading twice until two reads agree) is the caller's job; this
//! module only interprets what was read.

use crate::generated::vmware::BDOOR_MAGIC;
use crate::types::Nanos;

const NANOS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: u64 = 86_400;

/// Status register B bit 1: hours are 0-23. Clear: 12-hour mode, 1-12 with
/// bit 7 of the hours register meaning PM.
pub const STATUS_B_24_HOUR: u8 = 1 << 1;

/// Status register B bit 2: registers hold binary values. Clear: BCD.
pub const STATUS_B_BINARY: u8 = 1 << 2;

/// The first year [`unix_nanos`] accepts: the Unix epoch.
pub const MIN_YEAR: u16 = 1970;

/// The last year [`unix_nanos`] accepts; dates after 2554-07-21 still fail
/// because they do not fit in [`Nanos`].
pub const MAX_YEAR: u16 = 9999;

/// Decodes one packed-BCD byte (`0x59` → 59); `None` if either nibble is
/// above 9, which is how a binary-mode value or a glitch read shows up.
pub const fn bcd_to_binary(bcd: u8) -> Option<u8> {
    let (high, low) = (bcd >> 4, bcd & 0x0F);
    if high > 9 || low > 9 {
        None
    } else {
        Some(high * 10 + low)
    }
}

/// The RTC time registers exactly as read, before any decoding. A struct
/// rather than eight `u8` arguments, so that they cannot be passed in the
/// wrong order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RtcRegisters {
    /// Register 0x00.
    pub seconds: u8,
    /// Register 0x02.
    pub minutes: u8,
    /// Register 0x04 (bit 7 is PM in 12-hour mode).
    pub hours: u8,
    /// Register 0x07, day of the month.
    pub day: u8,
    /// Register 0x08.
    pub month: u8,
    /// Register 0x09, year within the century.
    pub year: u8,
    /// The century register, if the ACPI FADT names one (its `century`
    /// field); without it the year is taken to be in 1970-2069.
    pub century: Option<u8>,
    /// Status register B (0x0B), which says how the others are encoded.
    pub status_b: u8,
}

/// A calendar date and time of day (UTC, or whatever zone the RTC keeps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RtcTime {
    /// Full year, e.g. 2026.
    pub year: u16,
    /// 1-12.
    pub month: u8,
    /// 1-31, within the month's length.
    pub day: u8,
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
    /// 0-59 (the RTC has no leap second).
    pub second: u8,
}

impl RtcTime {
    /// Whether every field is in range and the day exists in that month
    /// and year (the year itself is not limited here).
    pub const fn is_valid(&self) -> bool {
        self.month >= 1
            && self.month <= 12
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
    }
}

/// Gregorian leap year.
const fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Length of `month` (1-12) in `year`; 0 for a month that does not exist.
const fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Decodes the RTC registers into a validated [`RtcTime`].
///
/// Honours status register B: bit 2 ([`STATUS_B_BINARY`]) selects binary
/// over BCD for every register including the century, bit 1
/// ([`STATUS_B_24_HOUR`]) 24-hour over 12-hour mode, where hours run 1-12
/// and bit 7 marks PM (12 AM is hour 0, 12 PM hour 12). Without a century
/// register a two-digit year below 70 is 20xx and the rest 19xx, as Linux
/// does. `None` for invalid BCD, any field out of range, or a day the
/// month does not have.
pub fn decode(raw: &RtcRegisters) -> Option<RtcTime> {
    let binary = raw.status_b & STATUS_B_BINARY != 0;
    let field = |value: u8| {
        if binary {
            Some(value)
        } else {
            bcd_to_binary(value)
        }
    };

    let hour = if raw.status_b & STATUS_B_24_HOUR != 0 {
        field(raw.hours)?
    } else {
        let pm = raw.hours & 0x80 != 0;
        let hour = field(raw.hours & 0x7F)?;
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour % 12 + if pm { 12 } else { 0 }
    };

    let year_in_century = field(raw.year)?;
    if year_in_century > 99 {
        return None;
    }
    let year = match raw.century {
        Some(century) => {
            let century = field(century)?;
            if century > 99 {
                return None;
            }
            u16::from(century) * 100 + u16::from(year_in_century)
        }
        None if year_in_century < 70 => 2000 + u16::from(year_in_century),
        None => 1900 + u16::from(year_in_century),
    };

    let time = RtcTime {
        year,
        month: field(raw.month)?,
        day: field(raw.day)?,
        hour,
        minute: field(raw.minutes)?,
        second: field(raw.seconds)?,
    };
    time.is_valid().then_some(time)
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian),
/// counted in 400-year eras of 146 097 days that start on 1 March, so that
/// the leap day falls at the end of each era-relative year.
fn days_since_epoch(year: u16, month: u8, day: u8) -> u64 {
    // Years starting in March: January and February belong to the year
    // before. `year >= 1970` here, so nothing below goes negative.
    let y = u64::from(year) - u64::from(month <= 2);
    let era = y / 400;
    let year_of_era = y % 400;
    let march_month = (u64::from(month) + 9) % 12; // March = 0 ... February = 11
    let day_of_year = (153 * march_month + 2) / 5 + u64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719 468 days separate 0000-03-01 from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// Nanoseconds since the Unix epoch at `t`, taken as UTC.
///
/// `None` if `t` is not a valid date and time, if its year is outside
/// [`MIN_YEAR`]`..=`[`MAX_YEAR`], or if it is after
/// 2554-07-21T23:34:33Z, the last second [`Nanos`] (a `u64`) can hold.
pub fn unix_nanos(t: &RtcTime) -> Option<Nanos> {
    if !t.is_valid() || t.year < MIN_YEAR || t.year > MAX_YEAR {
        return None;
    }
    let days = days_since_epoch(t.year, t.month, t.day);
    let secs = days * SECS_PER_DAY
        + u64::from(t.hour) * 3_600
        + u64::from(t.minute) * 60
        + u64::from(t.second);
    secs.checked_mul(NANOS_PER_SEC).map(Nanos)
}

/// Host Unix time from VMware's backdoor GETTIMEFULL (command 46), given
/// the registers it returned.
///
/// Seconds are `esi:edx` (high:low) and microseconds `ebx`; `ecx` (the
/// maximum time lag the host tolerates) is not needed for the time itself.
/// The command leaves `eax` as [`BDOOR_MAGIC`] on success, so any other
/// value means unsupported or failed (QEMU `vmport_cmd_time_full` returns
/// `u32::MAX`). `None` for that, for 0 seconds (open-vm-tools' timeSync
/// treats a host time `<= 0` as invalid), for microseconds of a second or
/// more, and for a time that does not fit in [`Nanos`].
pub fn from_vmware_gettimefull(eax: u32, ebx: u32, _ecx: u32, edx: u32, esi: u32) -> Option<Nanos> {
    if eax != BDOOR_MAGIC || ebx >= 1_000_000 {
        return None;
    }
    let secs = u64::from(esi) << 32 | u64::from(edx);
    if secs == 0 {
        return None;
    }
    secs.checked_mul(NANOS_PER_SEC)?
        .checked_add(u64::from(ebx) * 1_000)
        .map(Nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers for a BCD, 24-hour RTC with a century register.
    fn bcd24(
        century: u8,
        year: u8,
        month: u8,
        day: u8,
        hours: u8,
        minutes: u8,
        seconds: u8,
    ) -> RtcRegisters {
        RtcRegisters {
            seconds,
            minutes,
            hours,
            day,
            month,
            year,
            century: Some(century),
            status_b: STATUS_B_24_HOUR,
        }
    }

    fn time(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> RtcTime {
        RtcTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    /// Independent day count: walk years and months one by one.
    fn naive_days(year: u16, month: u8, day: u8) -> u64 {
        let mut days = 0u64;
        for y in 1970..year {
            days += if is_leap_naive(y) { 366 } else { 365 };
        }
        const LENGTHS: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        for m in 1..month {
            days += LENGTHS[usize::from(m - 1)];
            if m == 2 && is_leap_naive(year) {
                days += 1;
            }
        }
        days + u64::from(day) - 1
    }

    fn is_leap_naive(y: u16) -> bool {
        if y.is_multiple_of(400) {
            true
        } else if y.is_multiple_of(100) {
            false
        } else {
            y.is_multiple_of(4)
        }
    }

    #[test]
    fn bcd_decoding() {
        assert_eq!(bcd_to_binary(0x00), Some(0));
        assert_eq!(bcd_to_binary(0x09), Some(9));
        assert_eq!(bcd_to_binary(0x10), Some(10));
        assert_eq!(bcd_to_binary(0x59), Some(59));
        assert_eq!(bcd_to_binary(0x99), Some(99));
        assert_eq!(bcd_to_binary(0x0A), None);
        assert_eq!(bcd_to_binary(0xA0), None);
        assert_eq!(bcd_to_binary(0x1F), None);
        assert_eq!(bcd_to_binary(0xFF), None);
        // Exhaustive: exactly the 100 valid codes decode, each to its value.
        let mut valid = 0;
        for byte in 0..=u8::MAX {
            if let Some(v) = bcd_to_binary(byte) {
                assert_eq!(v, (byte >> 4) * 10 + (byte & 0xF));
                valid += 1;
            }
        }
        assert_eq!(valid, 100);
    }

    #[test]
    fn decode_bcd_24_hour() {
        let raw = bcd24(0x20, 0x26, 0x11, 0x21, 0x23, 0x59, 0x58);
        assert_eq!(decode(&raw), Some(time(2026, 11, 21, 23, 59, 58)));
    }

    #[test]
    fn decode_binary_24_hour() {
        let raw = RtcRegisters {
            seconds: 58,
            minutes: 59,
            hours: 23,
            day: 21,
            month: 11,
            year: 26,
            century: Some(20),
            status_b: STATUS_B_24_HOUR | STATUS_B_BINARY,
        };
        assert_eq!(decode(&raw), Some(time(2026, 11, 21, 23, 59, 58)));
        // Binary mode accepts bytes that are not BCD...
        let raw = RtcRegisters {
            minutes: 0x3B,
            ..raw
        };
        assert_eq!(decode(&raw).map(|t| t.minute), Some(59));
        // ...but not out-of-range values.
        assert_eq!(decode(&RtcRegisters { minutes: 60, ..raw }), None);
        assert_eq!(decode(&RtcRegisters { hours: 24, ..raw }), None);
        assert_eq!(decode(&RtcRegisters { year: 100, ..raw }), None);
        assert_eq!(
            decode(&RtcRegisters {
                century: Some(100),
                ..raw
            }),
            None
        );
    }

    #[test]
    fn decode_12_hour_bcd() {
        let at = |hours: u8| {
            decode(&RtcRegisters {
                status_b: 0,
                ..bcd24(0x20, 0x26, 0x01, 0x01, hours, 0, 0)
            })
            .map(|t| t.hour)
        };
        assert_eq!(at(0x12), Some(0)); // 12 AM
        assert_eq!(at(0x01), Some(1)); // 1 AM
        assert_eq!(at(0x11), Some(11)); // 11 AM
        assert_eq!(at(0x80 | 0x12), Some(12)); // 12 PM
        assert_eq!(at(0x80 | 0x01), Some(13)); // 1 PM
        assert_eq!(at(0x80 | 0x11), Some(23)); // 11 PM
        assert_eq!(at(0x00), None); // no hour 0 in 12-hour mode
        assert_eq!(at(0x80), None);
        assert_eq!(at(0x13), None);
        assert_eq!(at(0x1A), None); // invalid BCD
    }

    #[test]
    fn decode_12_hour_binary() {
        let at = |hours: u8| {
            decode(&RtcRegisters {
                seconds: 0,
                minutes: 0,
                hours,
                day: 1,
                month: 1,
                year: 26,
                century: None,
                status_b: STATUS_B_BINARY,
            })
            .map(|t| t.hour)
        };
        assert_eq!(at(12), Some(0));
        assert_eq!(at(0x80 | 12), Some(12));
        assert_eq!(at(0x80 | 7), Some(19));
        assert_eq!(at(0x80 | 13), None);
        assert_eq!(at(0), None);
    }

    #[test]
    fn decode_24_hour_rejects_pm_bit() {
        // 0x85 would be BCD 85: out of range, not "5 PM".
        assert_eq!(decode(&bcd24(0x20, 0x26, 0x01, 0x01, 0x85, 0, 0)), None);
    }

    #[test]
    fn decode_invalid_bcd_anywhere() {
        let good = bcd24(0x20, 0x26, 0x11, 0x21, 0x12, 0x00, 0x00);
        assert!(decode(&good).is_some());
        assert_eq!(
            decode(&RtcRegisters {
                seconds: 0x5A,
                ..good
            }),
            None
        );
        assert_eq!(
            decode(&RtcRegisters {
                minutes: 0xF0,
                ..good
            }),
            None
        );
        assert_eq!(
            decode(&RtcRegisters {
                hours: 0x0B,
                ..good
            }),
            None
        );
        assert_eq!(decode(&RtcRegisters { day: 0x2A, ..good }), None);
        assert_eq!(
            decode(&RtcRegisters {
                month: 0x1C,
                ..good
            }),
            None
        );
        assert_eq!(decode(&RtcRegisters { year: 0xA6, ..good }), None);
        assert_eq!(
            decode(&RtcRegisters {
                century: Some(0x2F),
                ..good
            }),
            None
        );
        // Valid BCD but out of range.
        assert_eq!(
            decode(&RtcRegisters {
                seconds: 0x60,
                ..good
            }),
            None
        );
        assert_eq!(
            decode(&RtcRegisters {
                month: 0x13,
                ..good
            }),
            None
        );
        assert_eq!(
            decode(&RtcRegisters {
                month: 0x00,
                ..good
            }),
            None
        );
        assert_eq!(decode(&RtcRegisters { day: 0x00, ..good }), None);
        assert_eq!(decode(&RtcRegisters { day: 0x32, ..good }), None);
        assert_eq!(
            decode(&RtcRegisters {
                day: 0x31,
                month: 0x11,
                ..good
            }),
            None
        );
    }

    #[test]
    fn decode_without_century_register() {
        let at = |year: u8| {
            decode(&RtcRegisters {
                century: None,
                ..bcd24(0, year, 0x01, 0x01, 0, 0, 0)
            })
            .map(|t| t.year)
        };
        assert_eq!(at(0x69), Some(2069));
        assert_eq!(at(0x70), Some(1970));
        assert_eq!(at(0x99), Some(1999));
        assert_eq!(at(0x00), Some(2000));
        assert_eq!(at(0x26), Some(2026));
    }

    #[test]
    fn leap_years() {
        assert!(decode(&bcd24(0x20, 0x00, 0x02, 0x29, 0, 0, 0)).is_some());
        assert!(decode(&bcd24(0x19, 0x00, 0x02, 0x29, 0, 0, 0)).is_none());
        assert!(decode(&bcd24(0x20, 0x24, 0x02, 0x29, 0, 0, 0)).is_some());
        assert!(decode(&bcd24(0x20, 0x26, 0x02, 0x29, 0, 0, 0)).is_none());
        assert!(decode(&bcd24(0x21, 0x00, 0x02, 0x29, 0, 0, 0)).is_none());
        assert!(time(2000, 2, 29, 0, 0, 0).is_valid());
        assert!(!time(1900, 2, 29, 0, 0, 0).is_valid());
        assert!(!time(2100, 2, 29, 0, 0, 0).is_valid());
        assert!(time(2400, 2, 29, 0, 0, 0).is_valid());
        assert_eq!(unix_nanos(&time(1900, 2, 29, 0, 0, 0)), None);
        // 2000-02-29 00:00:00 UTC = 951782400 (computed with Python's
        // calendar.timegm).
        assert_eq!(
            unix_nanos(&time(2000, 2, 29, 0, 0, 0)),
            Some(Nanos(951_782_400 * NANOS_PER_SEC))
        );
    }

    #[test]
    fn known_epochs() {
        assert_eq!(unix_nanos(&time(1970, 1, 1, 0, 0, 0)), Some(Nanos(0)));
        assert_eq!(
            unix_nanos(&time(1970, 1, 1, 0, 0, 1)),
            Some(Nanos(NANOS_PER_SEC))
        );
        assert_eq!(
            unix_nanos(&time(2000, 1, 1, 0, 0, 0)),
            Some(Nanos(946_684_800 * NANOS_PER_SEC))
        );
        // 2026-11-21 12:00:00: 20 778 days (naive count below) · 86 400 +
        // 43 200 = 1 795 262 400, which calendar.timegm agrees with.
        assert_eq!(naive_days(2026, 11, 21), 20_778);
        assert_eq!(
            unix_nanos(&time(2026, 11, 21, 12, 0, 0)),
            Some(Nanos(1_795_262_400 * NANOS_PER_SEC))
        );
        // 2038-01-19 03:14:08, one past i32 time.
        assert_eq!(
            unix_nanos(&time(2038, 1, 19, 3, 14, 8)),
            Some(Nanos(2_147_483_648 * NANOS_PER_SEC))
        );
    }

    #[test]
    fn range_limits() {
        assert_eq!(unix_nanos(&time(1969, 12, 31, 23, 59, 59)), None);
        assert_eq!(unix_nanos(&time(0, 1, 1, 0, 0, 0)), None);
        // Last representable second, and the one after.
        assert_eq!(
            unix_nanos(&time(2554, 7, 21, 23, 34, 33)),
            Some(Nanos(18_446_744_073 * NANOS_PER_SEC))
        );
        assert_eq!(unix_nanos(&time(2554, 7, 21, 23, 34, 34)), None);
        assert_eq!(unix_nanos(&time(9999, 12, 31, 23, 59, 59)), None);
        assert_eq!(unix_nanos(&time(10_000, 1, 1, 0, 0, 0)), None);
        assert_eq!(unix_nanos(&time(u16::MAX, 12, 31, 23, 59, 59)), None);
        // Invalid fields.
        assert_eq!(unix_nanos(&time(2026, 13, 1, 0, 0, 0)), None);
        assert_eq!(unix_nanos(&time(2026, 0, 1, 0, 0, 0)), None);
        assert_eq!(unix_nanos(&time(2026, 4, 31, 0, 0, 0)), None);
        assert_eq!(unix_nanos(&time(2026, 1, 1, 24, 0, 0)), None);
        assert_eq!(unix_nanos(&time(2026, 1, 1, 0, 60, 0)), None);
        assert_eq!(unix_nanos(&time(2026, 1, 1, 0, 0, 60)), None);
        assert_eq!(unix_nanos(&RtcTime::default()), None);
    }

    #[test]
    fn days_match_naive_count_on_random_dates() {
        let mut rng = fastrand::Rng::with_seed(0x000C_4105);
        for _ in 0..1000 {
            let year = rng.u16(1970..=2554);
            let month = rng.u8(1..=12);
            let day = rng.u8(1..=days_in_month(year, month));
            let t = time(year, month, day, rng.u8(..24), rng.u8(..60), rng.u8(..60));
            let secs = naive_days(year, month, day) * SECS_PER_DAY
                + u64::from(t.hour) * 3600
                + u64::from(t.minute) * 60
                + u64::from(t.second);
            let want = secs.checked_mul(NANOS_PER_SEC).map(Nanos);
            assert_eq!(unix_nanos(&t), want, "{t:?}");
        }
        // Every day of a leap and a common year, in order.
        for year in [2024u16, 2026] {
            let mut expected = naive_days(year, 1, 1);
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    assert_eq!(days_since_epoch(year, month, day), expected);
                    expected += 1;
                }
            }
        }
    }

    #[test]
    fn decode_then_convert() {
        let raw = bcd24(0x20, 0x26, 0x11, 0x21, 0x12, 0x00, 0x00);
        let t = decode(&raw).unwrap();
        assert_eq!(unix_nanos(&t), Some(Nanos(1_795_262_400 * NANOS_PER_SEC)));
    }

    #[test]
    fn decode_never_panics() {
        let mut rng = fastrand::Rng::with_seed(0xDEC0DE);
        for _ in 0..10_000 {
            let raw = RtcRegisters {
                seconds: rng.u8(..),
                minutes: rng.u8(..),
                hours: rng.u8(..),
                day: rng.u8(..),
                month: rng.u8(..),
                year: rng.u8(..),
                century: if rng.bool() { Some(rng.u8(..)) } else { None },
                status_b: rng.u8(..),
            };
            if let Some(t) = decode(&raw) {
                assert!(t.is_valid());
                let _ = unix_nanos(&t);
            }
        }
    }

    #[test]
    fn vmware_gettimefull() {
        let secs: u64 = 1_795_262_400;
        let (lo, hi) = (secs as u32, (secs >> 32) as u32);
        assert_eq!(
            from_vmware_gettimefull(BDOOR_MAGIC, 250_000, 0, lo, hi),
            Some(Nanos(secs * NANOS_PER_SEC + 250_000_000))
        );
        // Seconds past 2^32 (year 2106+) need esi.
        let secs: u64 = 5_000_000_000;
        assert_eq!(
            from_vmware_gettimefull(BDOOR_MAGIC, 1, 7, secs as u32, (secs >> 32) as u32),
            Some(Nanos(secs * NANOS_PER_SEC + 1_000))
        );
        // eax not the magic: unsupported or failed.
        assert_eq!(from_vmware_gettimefull(u32::MAX, 0, 0, lo, hi), None);
        assert_eq!(from_vmware_gettimefull(0, 0, 0, lo, hi), None);
        assert_eq!(from_vmware_gettimefull(BDOOR_MAGIC + 1, 0, 0, lo, hi), None);
        // Garbage fields.
        assert_eq!(
            from_vmware_gettimefull(BDOOR_MAGIC, 1_000_000, 0, lo, hi),
            None
        );
        assert_eq!(from_vmware_gettimefull(BDOOR_MAGIC, 0, 0, 0, 0), None);
        assert_eq!(
            from_vmware_gettimefull(BDOOR_MAGIC, 999_999, 0, u32::MAX, u32::MAX),
            None
        );
        // Largest second that fits, with the largest microsecond that fits.
        let max_secs = u64::MAX / NANOS_PER_SEC;
        let spare_us = (u64::MAX - max_secs * NANOS_PER_SEC) / 1_000;
        let spare_us = u32::try_from(spare_us).unwrap();
        assert_eq!(
            from_vmware_gettimefull(
                BDOOR_MAGIC,
                spare_us,
                0,
                max_secs as u32,
                (max_secs >> 32) as u32
            ),
            Some(Nanos(
                max_secs * NANOS_PER_SEC + u64::from(spare_us) * 1_000
            ))
        );
        assert_eq!(
            from_vmware_gettimefull(
                BDOOR_MAGIC,
                spare_us + 1,
                0,
                max_secs as u32,
                (max_secs >> 32) as u32
            ),
            None
        );
    }
}
