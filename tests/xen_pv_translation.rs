//! The Xen PV backend's arithmetic, on the host: a page-table entry's
//! pseudo-physical frame becomes the machine frame Xen's tables need, and
//! a local flush becomes the mmuext_op requests Xen takes.

use pvi_backends::xen_pv::{flush_requests, machine_entry};
use pvi_sdk::generated::xen_pv::{MMUEXT_INVLPG_LOCAL, MMUEXT_TLB_FLUSH_LOCAL};
use pvi_sdk::types::mmuext_op;

/// Present, writable, user, accessed, dirty, NX: bits an entry keeps.
const FLAGS: u64 = 0x67 | 1 << 63;

#[test]
fn a_present_entry_gets_the_machine_frame_and_keeps_its_flags() {
    let p2m = |pfn: u64| (pfn == 0x146).then_some(0x3d145);
    assert_eq!(
        machine_entry(0x146 << 12 | FLAGS, p2m),
        Some(0x3d145 << 12 | FLAGS)
    );
}

#[test]
fn a_frame_without_a_machine_frame_is_refused_not_written() {
    assert_eq!(machine_entry(0x999 << 12 | FLAGS, |_| None), None);
    // A machine frame too wide for bits 51:12 would spill into the flags.
    assert_eq!(machine_entry(0x146 << 12 | 1, |_| Some(1 << 40)), None);
}

#[test]
fn a_non_present_entry_is_written_as_given() {
    let translated = std::cell::Cell::new(false);
    let p2m = |_| {
        translated.set(true);
        None
    };
    assert_eq!(machine_entry(0x146 << 12, p2m), Some(0x146 << 12));
    assert!(
        !translated.get(),
        "a non-present entry has no frame to translate"
    );
}

#[test]
fn a_short_flush_is_one_invlpg_per_page_in_one_batch() {
    let mut out = [mmuext_op::ZERO; 32];
    let n = flush_requests(0x14_6000, 3, &mut out);
    assert_eq!(n, 3);
    for (i, op) in out[..n].iter().enumerate() {
        assert_eq!(op.cmd, MMUEXT_INVLPG_LOCAL);
        assert_eq!(op.arg1, 0x14_6000 + i as u64 * 4096);
    }
}

#[test]
fn a_long_flush_is_one_whole_flush_as_natively() {
    let mut out = [mmuext_op::ZERO; 32];
    // 32 pages: one invlpg each, as the native routine does; 33: everything.
    assert_eq!(flush_requests(0, 32, &mut out), 32);
    assert_eq!(flush_requests(0, 33, &mut out), 1);
    assert_eq!(out[0].cmd, MMUEXT_TLB_FLUSH_LOCAL);
    // Never more requests than the buffer holds.
    let mut small = [mmuext_op::ZERO; 4];
    assert_eq!(flush_requests(0, 8, &mut small), 1);
    assert_eq!(small[0].cmd, MMUEXT_TLB_FLUSH_LOCAL);
}
