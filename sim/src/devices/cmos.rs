//! The CMOS real-time clock (MC146818) at ports 0x70/0x71, telling the
//! host's UTC time in binary, 24-hour mode, and 128 bytes of NVRAM.

use std::time::{SystemTime, UNIX_EPOCH};

/// The index port; bit 7 is the NMI mask, not part of the index.
pub const INDEX_PORT: u16 = 0x70;
/// The data port.
pub const DATA_PORT: u16 = 0x71;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const WEEKDAY: u8 = 0x06;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;
/// Status B: 24-hour (bit 1), binary (bit 2).
const BINARY_24_HOUR: u8 = 0b110;
/// Status A: 32.768 kHz time base, 1024 Hz rate; update-in-progress clear.
const TIME_BASE: u8 = 0x26;
/// Status D: the battery is good.
const VALID_RAM_AND_TIME: u8 = 0x80;

/// The clock and its NVRAM.
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
}

impl Default for Cmos {
    fn default() -> Self {
        Cmos {
            index: 0,
            nvram: [0; 128],
        }
    }
}

impl Cmos {
    /// A write to the index or data port.
    pub fn write(&mut self, port: u16, value: u8) {
        if port == INDEX_PORT {
            self.index = value & 0x7f;
        } else if !matches!(self.index, SECONDS..=YEAR | STATUS_A..=STATUS_D | CENTURY) {
            self.nvram[usize::from(self.index)] = value;
        }
    }

    /// A read of the index or data port.
    pub fn read(&mut self, port: u16) -> u8 {
        if port == INDEX_PORT {
            return self.index;
        }
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let t = civil(secs);
        match self.index {
            SECONDS => t.second,
            MINUTES => t.minute,
            HOURS => t.hour,
            WEEKDAY => t.weekday,
            DAY => t.day,
            MONTH => t.month,
            YEAR => (t.year % 100) as u8,
            CENTURY => (t.year / 100) as u8,
            STATUS_A => TIME_BASE,
            STATUS_B => BINARY_24_HOUR,
            STATUS_C => 0,
            STATUS_D => VALID_RAM_AND_TIME,
            i => self.nvram[usize::from(i)],
        }
    }
}

/// A UTC calendar time.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: u32,
    month: u8,
    day: u8,
    /// 1 = Sunday, as the RTC counts.
    weekday: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

/// Unix seconds to the calendar (the days-to-civil algorithm from Howard
/// Hinnant's "chrono-compatible low-level date algorithms").
fn civil(unix: u64) -> Civil {
    let days = unix / 86_400;
    let rem = unix % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    Civil {
        year: year as u32,
        month: month as u8,
        day: day as u8,
        // 1970-01-01 was a Thursday (5 when Sunday is 1).
        weekday: ((days + 4) % 7 + 1) as u8,
        hour: (rem / 3600) as u8,
        minute: (rem / 60 % 60) as u8,
        second: (rem % 60) as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_dates() {
        let epoch = civil(0);
        assert_eq!(
            (epoch.year, epoch.month, epoch.day, epoch.weekday),
            (1970, 1, 1, 5)
        );
        // 2000-02-29 12:34:56 UTC, a Tuesday.
        let leap = civil(951_827_696);
        assert_eq!(
            leap,
            Civil {
                year: 2000,
                month: 2,
                day: 29,
                weekday: 3,
                hour: 12,
                minute: 34,
                second: 56
            }
        );
        // 2026-11-21 00:00:00 UTC, a Saturday.
        let d = civil(1_795_219_200);
        assert_eq!((d.year, d.month, d.day, d.weekday), (2026, 11, 21, 7));
    }

    #[test]
    fn registers_read_in_binary() {
        let mut cmos = Cmos::default();
        cmos.write(INDEX_PORT, STATUS_B);
        assert_eq!(cmos.read(DATA_PORT), BINARY_24_HOUR);
        cmos.write(INDEX_PORT, 0x80 | SECONDS); // NMI mask bit ignored
        assert!(cmos.read(DATA_PORT) < 60);
        cmos.write(INDEX_PORT, 0x40);
        cmos.write(DATA_PORT, 0xab);
        assert_eq!(cmos.read(DATA_PORT), 0xab);
    }
}
