//! Per-CPU GDT and TSS (the double-fault handler gets its own stack, so a
//! kernel stack overflow reports instead of triple-faulting), the GDT
//! loaded through the `gdt_load` op (`lgdt` natively), and the IDT,
//! shared by all CPUs, pointing every vector at its entry stub in
//! [`crate::traps`]. The IDT is loaded through the `trap_table_load` op:
//! `lidt` natively, Xen's virtual IDT on Xen PV, from the same table.

use crate::firmware::MAX_CPUS;
use pvi_sdk::PvOps;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// The IST slot (1-based in hardware, 0-based here) of the double-fault stack.
const DOUBLE_FAULT_IST: u16 = 0;
const FAULT_STACK_BYTES: usize = 16 * 1024;

#[repr(C, align(16))]
struct FaultStack([u8; FAULT_STACK_BYTES]);

/// Each CPU's double-fault stack; only the CPU itself (through its TSS)
/// touches its own, so `static mut` is never aliased.
static mut FAULT_STACKS: [FaultStack; MAX_CPUS] =
    [const { FaultStack([0; FAULT_STACK_BYTES]) }; MAX_CPUS];

static TSS: [spin::Once<TaskStateSegment>; MAX_CPUS] = [const { spin::Once::new() }; MAX_CPUS];
static GDT: [spin::Once<Gdt>; MAX_CPUS] = [const { spin::Once::new() }; MAX_CPUS];
static IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

struct Gdt {
    table: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

/// Load this CPU's GDT and TSS and the shared IDT.
///
/// # Safety
///
/// Ring 0, once per CPU, with `cpu` the calling CPU's index: the stack and
/// TSS of `cpu` become this CPU's.
pub unsafe fn load(cpu: usize) {
    let tss = TSS[cpu].call_once(|| {
        let mut tss = TaskStateSegment::new();
        // SAFETY: only the address is taken; CPU `cpu` alone uses this stack.
        let stack = unsafe { core::ptr::addr_of!(FAULT_STACKS[cpu]) } as u64;
        tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST)] =
            VirtAddr::new(stack + FAULT_STACK_BYTES as u64);
        tss
    });
    let gdt = GDT[cpu].call_once(|| {
        let mut table = GlobalDescriptorTable::new();
        let code = table.append(Descriptor::kernel_code_segment());
        let data = table.append(Descriptor::kernel_data_segment());
        let tss = table.append(Descriptor::tss_segment(tss));
        Gdt {
            table,
            code,
            data,
            tss,
        }
    });
    let entries = gdt.table.entries();
    let (table, count) = (entries.as_ptr() as u64, entries.len() as u16);
    // SAFETY: this CPU's static table, never changed again, holds the descriptors named below.
    let loaded = unsafe { crate::backend().gdt_load(table, count) };
    if let Err(why) = loaded {
        panic!("CPU {cpu}: the GDT was not loaded: {why:?}");
    }
    // SAFETY: the selectors name this GDT's code, data and TSS descriptors, which it just loaded and which live for ever.
    unsafe {
        CS::set_reg(gdt.code);
        DS::set_reg(gdt.data);
        ES::set_reg(gdt.data);
        SS::set_reg(gdt.data);
        load_tss(gdt.tss);
    }
    // SAFETY: ring 0, this CPU; the IDT is built once and never changes.
    if let Err(why) = unsafe { load_idt() } {
        panic!("the IDT was not loaded: {why:?}");
    }
}

/// Load the shared IDT through the backend's `trap_table_load` (bare
/// metal's before a backend is chosen).
///
/// # Safety
///
/// The kernel's privilege, on the CPU that is to use it; its handlers are
/// [`crate::traps`]'s stubs, which take the CPU's frame.
pub unsafe fn load_idt() -> Result<(), pvi_sdk::types::PvError> {
    let idt = IDT.call_once(build_idt);
    // SAFETY: 256 gates built by `build_idt` in a static that is never
    // changed again; every present gate's handler is a stub of `traps`.
    unsafe { crate::backend().trap_table_load(core::ptr::from_ref(idt) as u64, 256) }
}

fn build_idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    let stub = |vector: u8| VirtAddr::new(crate::traps::stub_address(vector));
    // SAFETY: for every `set_handler_addr` below, the stub saves the
    // registers, calls the Rust dispatcher and returns with `iretq`, with
    // the error code popped where the CPU pushes one (see `traps`).
    unsafe {
        idt.divide_error.set_handler_addr(stub(0));
        idt.debug.set_handler_addr(stub(1));
        idt.non_maskable_interrupt.set_handler_addr(stub(2));
        idt.breakpoint.set_handler_addr(stub(3));
        idt.overflow.set_handler_addr(stub(4));
        idt.bound_range_exceeded.set_handler_addr(stub(5));
        idt.invalid_opcode.set_handler_addr(stub(6));
        idt.device_not_available.set_handler_addr(stub(7));
        idt.double_fault
            .set_handler_addr(stub(8))
            .set_stack_index(DOUBLE_FAULT_IST);
        idt.invalid_tss.set_handler_addr(stub(10));
        idt.segment_not_present.set_handler_addr(stub(11));
        idt.stack_segment_fault.set_handler_addr(stub(12));
        idt.general_protection_fault.set_handler_addr(stub(13));
        idt.page_fault.set_handler_addr(stub(14));
        idt.x87_floating_point.set_handler_addr(stub(16));
        idt.alignment_check.set_handler_addr(stub(17));
        idt.machine_check.set_handler_addr(stub(18));
        idt.simd_floating_point.set_handler_addr(stub(19));
        idt.virtualization.set_handler_addr(stub(20));
        idt.cp_protection_exception.set_handler_addr(stub(21));
        idt.hv_injection_exception.set_handler_addr(stub(28));
        idt.vmm_communication_exception.set_handler_addr(stub(29));
        idt.security_exception.set_handler_addr(stub(30));
        for vector in 32..=255u8 {
            idt[vector].set_handler_addr(stub(vector));
        }
    }
    idt
}
