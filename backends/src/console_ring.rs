//! Writing into a console ring that another party drains: Xen's PV
//! console (`xencons_interface.output`, which xenconsoled reads), kept
//! apart from the memory it lives in so that it runs in host tests.
//!
//! Indexes run free and wrap at 2^32; the producer's index minus the
//! consumer's is how full the ring is. Bytes are stored before the index
//! that publishes them (Linux's hvc_xen: `wmb()` before `out_prod`).

use core::sync::atomic::{AtomicU32, Ordering::SeqCst};

/// The ring's two indexes and its bytes.
pub struct Ring<'a> {
    /// The consumer's index (read only here).
    pub consumer: &'a AtomicU32,
    /// The producer's index (this side's).
    pub producer: &'a AtomicU32,
    /// Stores `byte` at ring offset `index` (below the ring's size).
    pub store: &'a dyn Fn(usize, u8),
    /// The ring's size in bytes (a power of two).
    pub size: u32,
}

/// The ring stayed full for as many waits as allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stalled {
    /// Bytes of the data that were written before it stalled.
    pub written: usize,
}

/// Write all of `data`, calling `wait` whenever the ring is full (to
/// notify and yield to the consumer); after `max_waits` waits with no room
/// made, give up. Never spins unbounded.
pub fn write(
    ring: &Ring,
    data: &[u8],
    max_waits: u32,
    mut wait: impl FnMut(),
) -> Result<(), Stalled> {
    let mut written = 0;
    let mut waits = 0;
    while written < data.len() {
        let at = ring.producer.load(SeqCst);
        let used = at.wrapping_sub(ring.consumer.load(SeqCst));
        let free = ring.size.saturating_sub(used) as usize;
        if free == 0 {
            if waits == max_waits {
                return Err(Stalled { written });
            }
            waits += 1;
            wait();
            continue;
        }
        waits = 0;
        let n = free.min(data.len() - written);
        for (i, &byte) in data[written..written + n].iter().enumerate() {
            (ring.store)((at.wrapping_add(i as u32) % ring.size) as usize, byte);
        }
        ring.producer.store(at.wrapping_add(n as u32), SeqCst);
        written += n;
    }
    Ok(())
}

/// Wait until the consumer has read everything written, calling `wait`
/// (to notify and yield to it) between looks, at most `max_waits` times;
/// whether it has. For the last lines before a power-off, which the
/// consumer would otherwise never read.
pub fn drain(ring: &Ring, max_waits: u32, mut wait: impl FnMut()) -> bool {
    for _ in 0..max_waits {
        if ring.consumer.load(SeqCst) == ring.producer.load(SeqCst) {
            return true;
        }
        wait();
    }
    ring.consumer.load(SeqCst) == ring.producer.load(SeqCst)
}

/// Bytes of `xencons_interface.output`, Xen's console ring from the guest.
pub const XENCONS_OUTPUT_BYTES: u32 = 2048;
/// Waits for the consumer while the ring stays full, before a write gives
/// up: a stalled console must not hang the kernel.
pub const STALL_WAITS: u32 = 10_000;

/// `f` on the output half of the Xen console page at `page` (its
/// `out_cons`/`out_prod` indexes and `output` bytes).
///
/// # Safety
///
/// `page` is a mapped `xencons_interface` that xenconsoled (or whoever
/// consumes it) shares with this guest under the ring protocol, for as
/// long as `f` runs.
pub unsafe fn with_xencons_output<T>(
    page: *mut pvi_sdk::types::xencons_interface,
    f: impl FnOnce(&Ring) -> T,
) -> T {
    // SAFETY: the caller's contract: out_cons/out_prod are 4-byte aligned
    // u32s in the mapped page that the consumer and this guest update.
    let (consumer, producer) = unsafe {
        (
            AtomicU32::from_ptr(core::ptr::addr_of_mut!((*page).out_cons)),
            AtomicU32::from_ptr(core::ptr::addr_of_mut!((*page).out_prod)),
        )
    };
    let store = |index: usize, byte: u8| {
        // SAFETY: `write` passes index < XENCONS_OUTPUT_BYTES, inside the
        // mapped page's output half.
        unsafe { core::ptr::addr_of_mut!((*page).output[index]).write_volatile(byte) }
    };
    f(&Ring {
        consumer,
        producer,
        store: &store,
        size: XENCONS_OUTPUT_BYTES,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::cell::RefCell;
    use std::vec::Vec;

    #[test]
    fn bytes_wrap_around_the_ring_and_the_consumer_makes_room() {
        let bytes = RefCell::new([0u8; 8]);
        let (cons, prod) = (AtomicU32::new(u32::MAX - 2), AtomicU32::new(u32::MAX - 2));
        let store = |i: usize, b: u8| bytes.borrow_mut()[i] = b;
        let ring = Ring {
            consumer: &cons,
            producer: &prod,
            store: &store,
            size: 8,
        };
        let mut seen = Vec::new();
        let drained = write(&ring, b"0123456789ab", 3, || {
            // The consumer drains everything written so far.
            let (c, p) = (cons.load(SeqCst), prod.load(SeqCst));
            let mut i = c;
            while i != p {
                seen.push(bytes.borrow()[(i % 8) as usize]);
                i = i.wrapping_add(1);
            }
            cons.store(p, SeqCst);
        });
        assert_eq!(drained, Ok(()));
        assert_eq!(seen, b"01234567");
        // The indexes wrapped past 2^32.
        assert_eq!(prod.load(SeqCst), 9);
    }

    #[test]
    fn draining_waits_for_the_consumer_and_gives_up_on_a_dead_one() {
        let (cons, prod) = (AtomicU32::new(0), AtomicU32::new(5));
        let store = |_: usize, _: u8| {};
        let ring = Ring {
            consumer: &cons,
            producer: &prod,
            store: &store,
            size: 8,
        };
        let mut waits = 0;
        // A consumer that reads one byte per wait.
        assert!(drain(&ring, 10, || {
            waits += 1;
            cons.fetch_add(1, SeqCst);
        }));
        assert_eq!(waits, 5);
        prod.store(9, SeqCst);
        let mut waits = 0;
        assert!(!drain(&ring, 3, || waits += 1), "nobody reads");
        assert_eq!(waits, 3);
    }

    #[test]
    fn a_ring_nobody_drains_stalls_instead_of_hanging() {
        let (cons, prod) = (AtomicU32::new(0), AtomicU32::new(0));
        let store = |_: usize, _: u8| {};
        let ring = Ring {
            consumer: &cons,
            producer: &prod,
            store: &store,
            size: 4,
        };
        let mut waits = 0;
        assert_eq!(
            write(&ring, b"abcdef", 10, || waits += 1),
            Err(Stalled { written: 4 })
        );
        assert_eq!(waits, 10);
    }
}
