//! The Xen PV backend's arithmetic, on the host: a page-table entry's
//! pseudo-physical frame becomes the machine frame Xen's tables need, a
//! local flush becomes the mmuext_op requests Xen takes, and an IDT gate
//! becomes the trap_info Xen's virtual IDT takes.

use pvi_backends::native::idt::limit;
use pvi_backends::xen_pv::{flush_requests, machine_entry};
use pvi_backends::xen_pv_traps::{gate, trap_entry, Gate, NotAGate};
use pvi_sdk::generated::xen_pv::{FLAT_KERNEL_CS, MMUEXT_INVLPG_LOCAL, MMUEXT_TLB_FLUSH_LOCAL};
use pvi_sdk::types::{mmuext_op, ErrorKind};

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

/// A 64-bit IDT gate as the CPU reads it: `handler`, selector 8, and the
/// attribute byte (present, DPL, type).
fn raw_gate(handler: u64, attributes: u8) -> [u64; 2] {
    let low =
        handler & 0xffff | 8 << 16 | u64::from(attributes) << 40 | (handler >> 16 & 0xffff) << 48;
    [low, handler >> 32]
}

#[test]
fn a_present_gate_gives_its_handler_and_privilege() {
    let handler = 0xffff_8000_1234_5678;
    // Present interrupt gate, DPL 0; present trap gate, DPL 3.
    assert_eq!(
        gate(raw_gate(handler, 0x8e)),
        Ok(Some(Gate {
            handler,
            privilege: 0
        }))
    );
    assert_eq!(
        gate(raw_gate(0x20_1000, 0xef)),
        Ok(Some(Gate {
            handler: 0x20_1000,
            privilege: 3
        }))
    );
}

#[test]
fn an_absent_gate_is_skipped_and_a_foreign_one_refused() {
    assert_eq!(gate(raw_gate(0x20_1000, 0x0e)), Ok(None));
    assert_eq!(gate([0, 0]), Ok(None));
    // A present call gate (type 0xc) is no interrupt or trap gate.
    assert_eq!(gate(raw_gate(0x20_1000, 0x8c)), Err(NotAGate(0x8c)));
}

#[test]
fn xen_enters_the_trampoline_in_the_kernel_segment_with_events_as_they_are() {
    let present = Gate {
        handler: 0x20_1000,
        privilege: 3,
    };
    let entry = trap_entry(14, present, 0x12_a080);
    assert_eq!(entry.vector, 14);
    assert_eq!(entry.cs, FLAT_KERNEL_CS);
    assert_eq!(entry.address, 0x12_a080);
    // Bits 1:0 the privilege; bit 2 (mask events on entry) clear, since
    // the handler's `iretq` would not unmask them.
    assert_eq!(entry.flags, 3);
}

#[test]
fn a_table_is_one_to_256_gates_at_a_canonical_address() {
    assert_eq!(limit(0x20_0000, 256), Ok(4095));
    assert_eq!(limit(0x20_0000, 1), Ok(15));
    for (table, entries) in [
        (0x20_0000, 0),
        (0x20_0000, 257),
        (0x0000_8000_0000_0000, 256),
    ] {
        assert_eq!(
            limit(table, entries).map_err(|e| e.kind),
            Err(ErrorKind::InvalidArgument),
            "{table:#x}, {entries} gates"
        );
    }
}
