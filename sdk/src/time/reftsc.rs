//! Hyper-V's reference TSC page: reference time (100 ns ticks since the
//! partition was created) = `((tsc · tsc_scale) >> 64) + tsc_offset`,
//! valid while `tsc_sequence` is non-zero and unchanged across the read
//! (Linux include/clocksource/hyperv_timer.h, `hv_read_tsc_page_tsc`).
//!
//! Unlike pvclock's version, the sequence has no odd/even meaning: 0 says
//! the page cannot be used at all (read `HV_X64_MSR_TIME_REF_COUNT`
//! instead), any other change says the hypervisor rewrote the page.

use core::fmt;
use core::hint::spin_loop;
use core::ptr::addr_of;
use core::sync::atomic::{fence, Ordering};

use super::tsc_freq;
use crate::types::{ms_hyperv_tsc_page, Hertz, Nanos};

/// Reference time runs at 10 MHz (100 ns per tick).
const REFERENCE_HZ: u64 = 10_000_000;

/// How many times the page is read before [`read`] gives up. The
/// hypervisor rewrites the page rarely (on migration, or a TSC frequency
/// change), so a read that sees the sequence change a thousand times in a
/// row is facing a broken or hostile hypervisor.
pub const MAX_RETRIES: u32 = 1000;

/// Why the reference TSC page gave no time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RefTscError {
    /// `tsc_sequence` is 0: the page is not usable now; read the
    /// `HV_X64_MSR_TIME_REF_COUNT` MSR instead.
    Invalid,
    /// The sequence changed during each of [`MAX_RETRIES`] reads.
    Unstable,
}

impl fmt::Display for RefTscError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid => f.write_str("Hyper-V reference TSC page is not valid (sequence 0)"),
            Self::Unstable => write!(
                f,
                "Hyper-V reference TSC page changed during each of {MAX_RETRIES} reads"
            ),
        }
    }
}

impl core::error::Error for RefTscError {}

/// Reference time in 100 ns ticks at TSC value `tsc`:
/// `((tsc · scale) >> 64) + offset`, with a 128-bit product.
///
/// Linux adds with wraparound; here the sum saturates instead, at 0 for a
/// negative result (an offset no correct hypervisor sets, since reference
/// time starts at 0) and at `u64::MAX` on overflow.
pub fn reference_time(scale: u64, offset: i64, tsc: u64) -> u64 {
    // (2^64 - 1)^2 >> 64 < 2^64: the cast loses nothing.
    let scaled = ((u128::from(tsc) * u128::from(scale)) >> 64) as u64;
    scaled.saturating_add_signed(offset)
}

/// Reference-time ticks (100 ns) as nanoseconds, saturating at `u64::MAX`
/// (reached after 58 000 years of uptime, or from a garbage page).
pub const fn to_nanos(ticks: u64) -> Nanos {
    Nanos(ticks.saturating_mul(100))
}

/// The TSC frequency a page's `tsc_scale` implies: reference time runs at
/// 10 MHz, so `hz = 10^7 · 2^64 / scale`, rounded down.
///
/// `None` for `scale == 0` and for a result outside
/// [`MIN_HZ`](super::tsc_freq::MIN_HZ)`..=`[`MAX_HZ`](super::tsc_freq::MAX_HZ).
pub fn tsc_hz(scale: u64) -> Option<Hertz> {
    if scale == 0 {
        return None;
    }
    let hz = (u128::from(REFERENCE_HZ) << 64) / u128::from(scale);
    tsc_freq::plausible(u64::try_from(hz).ok()?)
}

/// Reads the reference time from the page, sampling the TSC with `rdtsc`
/// inside the sequence window (it is called once per attempt).
///
/// Load the sequence (0: [`RefTscError::Invalid`]), load scale and offset,
/// read the TSC, load the sequence again, and start over if it changed, at
/// most [`MAX_RETRIES`] times. `rdtsc` should be an ordered TSC read
/// (`lfence; rdtsc` or `rdtscp`).
///
/// # Safety
///
/// `page` must point to the reference TSC page (an `ms_hyperv_tsc_page`,
/// naturally 8-byte aligned, in practice page-aligned) that stays mapped
/// and readable for the whole call. The hypervisor may write it
/// concurrently; nothing else may hold a Rust reference to it.
///
/// # Errors
///
/// [`RefTscError::Invalid`] if the sequence is 0 (fall back to the
/// `HV_X64_MSR_TIME_REF_COUNT` MSR); [`RefTscError::Unstable`] if it
/// changed during every attempt.
pub unsafe fn read(
    page: *const ms_hyperv_tsc_page,
    mut rdtsc: impl FnMut() -> u64,
) -> Result<u64, RefTscError> {
    for _ in 0..MAX_RETRIES {
        // SAFETY: the caller guarantees `page` is valid for reads and
        // aligned, so the u32 at offset 0 is too.
        let sequence = unsafe { addr_of!((*page).tsc_sequence).read_volatile() };
        if sequence == 0 {
            return Err(RefTscError::Invalid);
        }
        // Load the sequence before the fields (Linux: smp_rmb()).
        fence(Ordering::Acquire);
        // SAFETY: as above; the u64 and i64 at offsets 8 and 16 are 8-byte
        // aligned in an 8-byte aligned page.
        let (scale, offset) = unsafe {
            (
                addr_of!((*page).tsc_scale).read_volatile(),
                addr_of!((*page).tsc_offset).read_volatile(),
            )
        };
        let tsc = rdtsc();
        // Load the fields before the sequence again.
        fence(Ordering::Acquire);
        // SAFETY: as for the first load.
        let again = unsafe { addr_of!((*page).tsc_sequence).read_volatile() };
        if again == sequence {
            return Ok(reference_time(scale, offset, tsc));
        }
        spin_loop();
    }
    Err(RefTscError::Unstable)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::cell::Cell;
    use core::ptr::addr_of_mut;
    use std::boxed::Box;

    /// Independent model: exact rational arithmetic in i128.
    fn reference_model(scale: u64, offset: i64, tsc: u64) -> u64 {
        let scaled = (u128::from(tsc) * u128::from(scale)) / (1u128 << 64);
        let sum = i128::try_from(scaled).unwrap() + i128::from(offset);
        if sum < 0 {
            0
        } else {
            u64::try_from(sum).unwrap_or(u64::MAX)
        }
    }

    #[test]
    fn reference_time_matches_model_on_random_samples() {
        let mut rng = fastrand::Rng::with_seed(0x004E_F75C);
        for _ in 0..1000 {
            let (scale, offset, tsc) = (rng.u64(..), rng.i64(..), rng.u64(..));
            assert_eq!(
                reference_time(scale, offset, tsc),
                reference_model(scale, offset, tsc),
                "scale {scale} offset {offset} tsc {tsc}"
            );
        }
        // Realistic values: small offsets, scales of GHz-class TSCs.
        for _ in 0..1000 {
            let scale = rng.u64(1 << 55..1 << 60);
            let offset = rng.i64(-(1 << 40)..1 << 40);
            let tsc = rng.u64(..1 << 60);
            assert_eq!(
                reference_time(scale, offset, tsc),
                reference_model(scale, offset, tsc)
            );
        }
    }

    #[test]
    fn reference_time_edges() {
        // scale 2^63 halves the TSC.
        assert_eq!(reference_time(1 << 63, 0, 1_000), 500);
        assert_eq!(reference_time(1 << 63, 7, 1_000), 507);
        assert_eq!(reference_time(0, 5, u64::MAX), 5);
        assert_eq!(reference_time(u64::MAX, 0, u64::MAX), u64::MAX - 1);
        // Negative results saturate at 0.
        assert_eq!(reference_time(1 << 63, -501, 1_000), 0);
        assert_eq!(reference_time(1 << 63, -500, 1_000), 0);
        assert_eq!(reference_time(1 << 63, -499, 1_000), 1);
        assert_eq!(reference_time(0, i64::MIN, 0), 0);
        // Overflow saturates at u64::MAX.
        assert_eq!(reference_time(u64::MAX, i64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn nanos_conversion() {
        assert_eq!(to_nanos(0), Nanos(0));
        assert_eq!(to_nanos(10_000_000), Nanos(1_000_000_000));
        assert_eq!(to_nanos(u64::MAX / 100), Nanos(u64::MAX / 100 * 100));
        assert_eq!(to_nanos(u64::MAX / 100 + 1), Nanos(u64::MAX));
        assert_eq!(to_nanos(u64::MAX), Nanos(u64::MAX));
    }

    #[test]
    fn tsc_hz_known_scales() {
        // Hyper-V sets scale = 2^64 · 10^7 / hz; for 2.5 GHz that is 2^64 / 250.
        let scale = u64::try_from((1u128 << 64) / 250).unwrap();
        let hz = tsc_hz(scale).unwrap().0;
        assert!(hz.abs_diff(2_500_000_000) <= 1, "{hz}");
        // scale 2^62: a quarter tick per cycle → 40 MHz.
        assert_eq!(tsc_hz(1 << 62), Some(Hertz(40_000_000)));
        // Round trip for random frequencies.
        let mut rng = fastrand::Rng::with_seed(0x0010_AEF7);
        for _ in 0..1000 {
            let want = rng.u64(10_000_000..=10_000_000_000);
            let scale = u64::try_from((u128::from(REFERENCE_HZ) << 64) / u128::from(want)).unwrap();
            let got = tsc_hz(scale).unwrap().0;
            assert!(got.abs_diff(want) * 1_000_000 <= want, "{want} -> {got}");
        }
        // Rejected: zero, a TSC slower than reference time (scale > 2^64 is
        // impossible, so the slowest is 10 MHz at scale 2^64 - 1), absurd.
        assert_eq!(tsc_hz(0), None);
        assert_eq!(tsc_hz(u64::MAX), Some(Hertz(10_000_000)));
        assert_eq!(tsc_hz(1), None);
        assert_eq!(tsc_hz(1 << 20), None);
    }

    /// The page, boxed, with a raw pointer that stays valid until freed.
    struct Page(*mut ms_hyperv_tsc_page);

    impl Page {
        fn new(sequence: u32, scale: u64, offset: i64) -> Self {
            let page = Box::into_raw(Box::new(ms_hyperv_tsc_page {
                tsc_sequence: sequence,
                tsc_scale: scale,
                tsc_offset: offset,
                ..ms_hyperv_tsc_page::ZERO
            }));
            Self(page)
        }

        fn set_sequence(&self, sequence: u32) {
            // SAFETY: `self.0` is live and aligned; no references to the
            // page exist.
            unsafe { addr_of_mut!((*self.0).tsc_sequence).write_volatile(sequence) }
        }

        fn sequence(&self) -> u32 {
            // SAFETY: as above.
            unsafe { addr_of!((*self.0).tsc_sequence).read_volatile() }
        }
    }

    impl Drop for Page {
        fn drop(&mut self) {
            // SAFETY: from Box::into_raw in `new`, freed once.
            drop(unsafe { Box::from_raw(self.0) });
        }
    }

    #[test]
    fn read_valid_page() {
        let page = Page::new(1, 1 << 63, 100);
        let calls = Cell::new(0u32);
        // SAFETY: the page is live and aligned.
        let got = unsafe {
            read(page.0, || {
                calls.set(calls.get() + 1);
                1_000
            })
        };
        assert_eq!(got, Ok(600));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn read_sequence_zero_is_invalid() {
        let page = Page::new(0, 1 << 63, 100);
        let calls = Cell::new(0u32);
        // SAFETY: the page is live and aligned.
        let got = unsafe {
            read(page.0, || {
                calls.set(calls.get() + 1);
                1_000
            })
        };
        assert_eq!(got, Err(RefTscError::Invalid));
        // Not even the TSC was read.
        assert_eq!(calls.get(), 0);
    }

    #[test]
    fn read_page_invalidated_mid_read() {
        let page = Page::new(5, 1 << 63, 100);
        let calls = Cell::new(0u32);
        // SAFETY: the page is live and aligned; the closure writes it only
        // through the raw pointer, as the hypervisor would.
        let got = unsafe {
            read(page.0, || {
                calls.set(calls.get() + 1);
                page.set_sequence(0);
                1_000
            })
        };
        assert_eq!(got, Err(RefTscError::Invalid));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn read_retries_after_a_change() {
        let page = Page::new(7, 1 << 63, 100);
        let calls = Cell::new(0u32);
        // SAFETY: as above.
        let got = unsafe {
            read(page.0, || {
                let n = calls.get();
                calls.set(n + 1);
                if n < 2 {
                    // Rewrite the page: new scale, new sequence.
                    addr_of_mut!((*page.0).tsc_scale).write_volatile(1 << 62);
                    page.set_sequence(page.sequence() + 1);
                }
                1_000 + u64::from(n)
            })
        };
        // Third attempt: scale 2^62 quarters 1_002 → 250, plus 100.
        assert_eq!(got, Ok(350));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn read_unstable_after_exactly_max_retries() {
        let page = Page::new(1, 1 << 63, 100);
        let calls = Cell::new(0u32);
        // SAFETY: as above.
        let got = unsafe {
            read(page.0, || {
                calls.set(calls.get() + 1);
                // Wrap past 0 never happens within the bound: start at 1.
                page.set_sequence(page.sequence() + 1);
                1_000
            })
        };
        assert_eq!(got, Err(RefTscError::Unstable));
        assert_eq!(calls.get(), MAX_RETRIES);
        assert_eq!(page.sequence(), 1 + MAX_RETRIES);
    }

    #[test]
    fn read_negative_offset_saturates() {
        let page = Page::new(3, 1 << 63, -1_000_000);
        // SAFETY: the page is live and aligned.
        let got = unsafe { read(page.0, || 1_000) };
        assert_eq!(got, Ok(0));
    }

    #[test]
    fn error_displays() {
        let text = std::format!("{} / {}", RefTscError::Invalid, RefTscError::Unstable);
        assert!(
            text.contains("sequence 0") && text.contains("changed"),
            "{text}"
        );
    }
}
