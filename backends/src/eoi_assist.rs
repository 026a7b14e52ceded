//! How the paravirtual EOI steps ended interrupts: by finding the flag the
//! hypervisor set when it delivered the interrupt (KVM's PV EOI bit, the
//! `apic_assist` bit of Hyper-V's VP assist page), which means the
//! hypervisor does the EOI itself and the guest makes no access that
//! exits; or by writing the EOI register after all. The counts are what
//! shows, on a given hypervisor, that the exit-free path was taken at all:
//! a hypervisor may offer the mechanism and never arm it (this machine's
//! KVM never sets its PV EOI bit), and then every EOI still exits.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

static ASSISTED: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// EOIs the paravirtual steps have ended so far, on every CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EoiCounts {
    /// The hypervisor had armed its flag: the EOI was its own, and the
    /// guest cleared the flag (one atomic exchange in memory).
    pub assisted: u64,
    /// The flag was clear: the step wrote the EOI register (an exit).
    pub written: u64,
}

impl EoiCounts {
    /// The EOIs between `earlier` and `self`.
    pub fn since(self, earlier: EoiCounts) -> EoiCounts {
        EoiCounts {
            assisted: self.assisted.wrapping_sub(earlier.assisted),
            written: self.written.wrapping_sub(earlier.written),
        }
    }
}

/// The counts so far. A native or MSR-only EOI counts in neither.
pub fn counts() -> EoiCounts {
    EoiCounts {
        assisted: ASSISTED.load(Relaxed),
        written: WRITTEN.load(Relaxed),
    }
}

/// End the interrupt in service: clear `flag` in `word`, the hypervisor's
/// mark that it does this EOI itself; only if it was clear, call
/// `write_eoi` (the register write that exits). One atomic
/// read-modify-write, so that the hypervisor's own look at the word sees
/// either the flag still set (its EOI) or cleared by the guest, never an
/// EOI done twice or skipped. Returns whether the hypervisor's flag was
/// set, and counts it.
pub fn end_interrupt(word: &AtomicU32, flag: u32, write_eoi: impl FnOnce()) -> bool {
    let assisted = word.fetch_and(!flag, SeqCst) & flag != 0;
    if assisted {
        ASSISTED.fetch_add(1, Relaxed);
    } else {
        write_eoi();
        WRITTEN.fetch_add(1, Relaxed);
    }
    assisted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_flag_is_cleared_and_the_register_left_alone() {
        let word = AtomicU32::new(0b101);
        let mut writes = 0;
        assert!(end_interrupt(&word, 1, || writes += 1));
        assert_eq!(writes, 0, "the hypervisor does this EOI");
        assert_eq!(word.load(SeqCst), 0b100, "only the flag is cleared");
    }

    #[test]
    fn a_clear_flag_means_one_register_write() {
        let word = AtomicU32::new(0b100);
        let mut writes = 0;
        assert!(!end_interrupt(&word, 1, || writes += 1));
        assert_eq!(writes, 1);
        assert!(!end_interrupt(&word, 1, || writes += 1));
        assert_eq!(writes, 2, "every EOI without the flag writes once");
    }

    #[test]
    fn counts_since_a_reading_are_the_difference() {
        let earlier = EoiCounts {
            assisted: 3,
            written: 7,
        };
        let now = EoiCounts {
            assisted: 13,
            written: 8,
        };
        assert_eq!(
            now.since(earlier),
            EoiCounts {
                assisted: 10,
                written: 1
            }
        );
    }
}
