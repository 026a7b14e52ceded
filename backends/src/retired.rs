//! A shared time record that stayed mid-update is not read again. The first
//! read that gives up (after `pvclock::MAX_RETRIES` attempts) retires the
//! record. From then on the step fails at once and the chain falls back,
//! instead of every call paying a thousand reads (each with an `rdtsc`,
//! itself a VM exit on some hosts).

use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
use pvi_sdk::types::PvError;

/// Whether a record has been given up on.
pub struct Retired(AtomicBool);

impl Retired {
    /// Not retired.
    pub const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Run `read` unless the record is retired (then fail with `retired`);
    /// retire it if `read` fails.
    pub fn guard<T>(
        &self,
        retired: PvError,
        read: impl FnOnce() -> Result<T, PvError>,
    ) -> Result<T, PvError> {
        if self.0.load(Relaxed) {
            return Err(retired);
        }
        let result = read();
        if result.is_err() {
            self.0.store(true, Relaxed);
        }
        result
    }

    /// Whether it has been given up on.
    pub fn is_retired(&self) -> bool {
        self.0.load(Relaxed)
    }
}

impl Default for Retired {
    fn default() -> Self {
        Self::new()
    }
}
