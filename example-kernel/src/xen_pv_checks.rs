//! The checks the kernel runs as a Xen PV guest, through the Xen PV
//! backend's ops, each against evidence the op did not produce: Xen's
//! clock advancing, a wall clock in this century, and a page-table entry
//! written through `page_table_write` (mmu_update under Xen) read back
//! both through the address it maps and in the table Xen keeps.
//!
//! The bootstrap page tables are Xen's (start_info's pt_base), mapped
//! read-only; their entries hold machine frames, which Xen's read-only
//! machine-to-physical table turns back into this domain's frames.

use core::fmt::Write;
use pvi_backends::registry::Backend;
use pvi_backends::select::Selection;
use pvi_sdk::generated::ops::{Op, PvOps};
use pvi_sdk::generated::xen_pv::{Hypercalls, MACH2PHYS_VIRT_START, UVMF_INVLPG};
use pvi_sdk::types::{start_info, ApicId, Gpa, IrqFlags, Nanos, PvError};

/// An entry's frame field: bits 51:12.
const FRAME: u64 = 0x000f_ffff_ffff_f000;
/// Present; and, at L3 and L2, a large page (which PV tables never hold).
const PRESENT: u64 = 1;
const LARGE: u64 = 1 << 7;
/// 2024-01-01 and 2100-01-01, in seconds since the Unix epoch.
const PLAUSIBLE_WALL_SECONDS: core::ops::Range<u64> = 1_704_067_200..4_102_444_800;

/// A page of its own, filled with one byte.
#[repr(C, align(4096))]
struct ProbePage([u8; 4096]);

/// The page whose mapping the check moves, and the page it moves it to.
static PROBE: ProbePage = ProbePage([b'A'; 4096]);
static OTHER: ProbePage = ProbePage([b'B'; 4096]);

/// The first byte of `page` through its current mapping.
fn first_byte(page: &'static ProbePage) -> u8 {
    // SAFETY: an aligned static, mapped for the kernel's life (to one
    // frame or, during the check, the other); volatile, since its mapping
    // changes under the compiler.
    unsafe { core::ptr::addr_of!(page.0[0]).read_volatile() }
}

/// This domain's frame of machine frame `mfn`, through Xen's read-only
/// machine-to-physical table. Only asked about frames the lower half of
/// this domain's bootstrap page tables names, whose entries are there.
pub(crate) fn pseudo_frame(mfn: u64) -> u64 {
    // SAFETY: Xen maps the table read-only at MACH2PHYS_VIRT_START in
    // every 64-bit PV guest, an entry per machine frame of RAM; `mfn` is
    // one of this domain's page-table frames.
    unsafe {
        (MACH2PHYS_VIRT_START as *const u64)
            .add(mfn as usize)
            .read_volatile()
    }
}

/// Each level's index shift, from the root (L4) down to L1.
const SHIFTS: [u64; 4] = [39, 30, 21, 12];

/// The slot of `va` in a table of level `4 - depth`.
fn slot(va: u64, depth: usize) -> usize {
    (va >> SHIFTS[depth] & 511) as usize
}

/// The tables (virtual addresses, L4 first) the bootstrap root maps `va`
/// through, found by walking from pt_base; each must be one of the
/// bootstrap frames (read-only mapped at virtual = pseudo-physical).
fn path(info: &start_info, va: u64) -> Result<[u64; 4], &'static str> {
    let tables = info.pt_base..info.pt_base + info.nr_pt_frames * 4096;
    let mut path = [info.pt_base; 4];
    for depth in 0..3 {
        let at = path[depth] + slot(va, depth) as u64 * 8;
        // SAFETY: inside a bootstrap page-table frame (checked below for
        // every table after the first, which is pt_base itself), mapped
        // read-only for the guest.
        let entry = unsafe { (at as *const u64).read_volatile() };
        if entry & PRESENT == 0 || (depth != 0 && entry & LARGE != 0) {
            return Err("the walk met a non-present or large entry");
        }
        path[depth + 1] = pseudo_frame((entry & FRAME) >> 12) << 12;
        if !tables.contains(&path[depth + 1]) {
            return Err("the walk left the bootstrap page tables");
        }
    }
    Ok(path)
}

/// The virtual address of the L1 entry that maps `va`.
fn l1_entry_of(info: &start_info, va: u64) -> Result<u64, &'static str> {
    Ok(path(info, va)?[3] + slot(va, 3) as u64 * 8)
}

/// A second root's four tables (L4, L3, L2, L1): copies of the bootstrap
/// path to PROBE whose L1 maps PROBE's address to OTHER's frame.
#[repr(C, align(4096))]
struct SecondRoot(core::cell::UnsafeCell<[[u64; 512]; 4]>);
// SAFETY: written by the one vCPU that runs the checks, before the tables
// are given to Xen (pinned), then only read, by Xen.
unsafe impl Sync for SecondRoot {}
static SECOND_ROOT: SecondRoot = SecondRoot(core::cell::UnsafeCell::new([[0; 512]; 4]));

/// The writable bit of an entry.
const WRITABLE: u64 = 1 << 1;

/// Fill SECOND_ROOT from the bootstrap path to `probe` (machine frames,
/// as Xen's tables hold them), its L1 pointing `probe` at `other_mfn`;
/// the tables' own pages, where that L1 maps them, read-only (Xen types
/// no page as a table while a writable mapping of it exists). Their
/// addresses, L4 first.
fn build_second_root(
    info: &start_info,
    probe: u64,
    other_mfn: u64,
) -> Result<[u64; 4], &'static str> {
    let path = path(info, probe)?;
    let tables = SECOND_ROOT.0.get();
    let base = tables as u64;
    let va = |depth: usize| base + depth as u64 * 4096;
    let mut mfns = [0; 4];
    for (depth, mfn) in mfns.iter_mut().enumerate() {
        *mfn = machine_frame(info, va(depth) >> 12).ok_or("a table page has no machine frame")?;
    }
    for depth in 0..4 {
        let source = path[depth] as *const [u64; 512];
        // SAFETY: SECOND_ROOT is this function's alone until it returns
        // (the checks run once, on one vCPU); the source is a bootstrap
        // table, mapped read-only, 512 entries.
        let (copy, source) = unsafe { (&mut (*tables)[depth], &*source) };
        copy.copy_from_slice(source);
        let next = if depth == 3 {
            other_mfn
        } else {
            mfns[depth + 1]
        };
        let entry = &mut copy[slot(probe, depth)];
        *entry = *entry & !FRAME | next << 12;
        if depth == 3 {
            for entry in copy.iter_mut() {
                if mfns.contains(&((*entry & FRAME) >> 12)) {
                    *entry &= !WRITABLE;
                }
            }
        }
    }
    Ok([va(0), va(1), va(2), va(3)])
}

/// Ask Xen, directly and not through an op, to map the page at `va`
/// (machine frame `mfn`) writable: what a kernel would need to write a
/// table behind Xen's back. Xen refuses it for a pinned table.
fn writable_again(va: u64, mfn: u64) -> Result<i64, PvError> {
    const PRESENT_WRITABLE_ACCESSED_DIRTY: u64 = 0x63;
    // SAFETY: the page Xen filled from the kernel's note (the entry's
    // contract); Xen is the hypervisor.
    let hypercalls = unsafe { Hypercalls::new(crate::xen_pv_entry::hypercall_page()) };
    // SAFETY: Xen validates the new entry; if it took it, the page (one of
    // SECOND_ROOT's, which no reference writes) would only become writable.
    unsafe {
        hypercalls.hypervisor_update_va_mapping(
            va,
            mfn << 12 | PRESENT_WRITABLE_ACCESSED_DIRTY,
            UVMF_INVLPG,
        )
    }
}

/// Pin SECOND_ROOT (L1 up to L4) through `page_table_alloc`, check that
/// Xen will not map its L1 writable, switch to it
/// and back through `address_space_switch`, release it: what PROBE's
/// address reads in each root.
fn switch_roots(
    backend: &Backend,
    info: &start_info,
    tables: [u64; 4],
    traps: bool,
) -> Result<Switched, PvError> {
    let l1_mfn = machine_frame(info, tables[3] >> 12).unwrap_or(0);
    let mut pinned = 0;
    let mut result = Ok(());
    for depth in (0..4).rev() {
        // SAFETY: a table built above from valid entries, of level
        // `4 - depth`, used by nothing else, and written by nothing until
        // it is released.
        result = unsafe { backend.page_table_alloc(Gpa(tables[depth]), 4 - depth as u8) };
        if result.is_err() {
            break;
        }
        pinned += 1;
    }
    let mut seen = (0, 0);
    // Xen must refuse: a pinned table is written only through Xen.
    let mut refusal = PvError::new(
        pvi_sdk::types::ErrorKind::Failed,
        pvi_sdk::types::ErrorOrigin::Xen(0),
    );
    if result.is_ok() {
        match writable_again(tables[3], l1_mfn) {
            Ok(_) => result = Err(refusal),
            Err(why) => refusal = why,
        }
    }
    // A write into the pinned root faults (Xen emulates faulting writes
    // only into L1 tables); only with a trap table can the kernel see it.
    let write_fault = (result.is_ok() && traps).then(|| page_fault_at(tables[0], true));
    if result.is_ok() {
        // SAFETY: the second root maps everything the bootstrap root does
        // (it is a copy) but PROBE, which only these checks read; the
        // bootstrap root is the one Xen started the kernel on.
        unsafe { backend.address_space_switch(Gpa(tables[0])) };
        seen.0 = first_byte(&PROBE);
        // SAFETY: as above.
        unsafe { backend.address_space_switch(Gpa(info.pt_base)) };
        seen.1 = first_byte(&PROBE);
    }
    // The pinned ones, top-down (pinning went bottom-up).
    for &table in &tables[4 - pinned..] {
        // SAFETY: no root in use refers to the second root's tables now.
        let released = unsafe { backend.page_table_release(Gpa(table)) };
        result = result.and(released);
    }
    result.map(|()| Switched {
        seen,
        refusal,
        write_fault,
    })
}

/// A GDT of its own for the `gdt_load` check, alone in its page: the
/// null descriptor, then a flat data descriptor of privilege 3 (selector
/// 0x08, 0x0b with RPL 3); nothing past it.
#[repr(C, align(4096))]
struct GdtPage([u64; 512]);

/// Present, privilege 3, read/write data, 4 GiB flat.
const FLAT_DATA_DPL3: u64 = 0x00cf_f200_0000_ffff;
static PV_GDT: GdtPage = GdtPage({
    let mut table = [0; 512];
    table[1] = FLAT_DATA_DPL3;
    table
});
/// The data descriptor's selector, and one past the loaded table's end.
const LOADED_SELECTOR: u16 = 0x0b;
const UNLOADED_SELECTOR: u16 = 0x13;

/// Load `selector` into ES with the kernel's handler told to expect a #GP
/// and to resume after the 2-byte `mov es, eax`: whether it faulted.
fn es_load_faults(selector: u16) -> bool {
    use core::sync::atomic::Ordering::SeqCst;
    let before = crate::traps::CAUGHT.load(SeqCst);
    crate::traps::expect_fault(13, 2);
    // SAFETY: ES addresses nothing in 64-bit mode; a bad load takes the expected #GP.
    unsafe {
        core::arch::asm!(
            ".byte 0x8e, 0xc0", // mov es, eax
            in("eax") u32::from(selector),
            options(nostack, nomem)
        )
    };
    let faulted = crate::traps::CAUGHT.load(SeqCst) - before == 1;
    crate::traps::expect_none();
    faulted
}

/// ES's selector.
fn es() -> u16 {
    let selector: u16;
    // SAFETY: reads a segment register.
    unsafe { core::arch::asm!("mov {0:x}, es", out(reg) selector, options(nostack, nomem)) };
    selector
}

/// `gdt_load` with PV_GDT (two descriptors): the op's answer, then what
/// the CPU says through Xen's copy: the data selector loads into ES and
/// reads back, and the one past the table faults. ES is restored.
fn gdt_load_check(backend: &Backend) -> (Result<(), PvError>, u16, bool) {
    let before = es();
    // SAFETY: PV_GDT is alone in its page, never written; only ES reloads (CS, SS are Xen's).
    let loaded = unsafe { backend.gdt_load(core::ptr::addr_of!(PV_GDT) as u64, 2) };
    let read_back = if es_load_faults(LOADED_SELECTOR) {
        0
    } else {
        es()
    };
    let beyond = es_load_faults(UNLOADED_SELECTOR);
    let _ = es_load_faults(before);
    (loaded, read_back, beyond)
}

/// What `switch_roots` saw.
struct Switched {
    /// PROBE's first byte through the second root, then the first.
    seen: (u8, u8),
    /// Xen's answer to a writable mapping of the pinned L1.
    refusal: PvError,
    /// A write into the pinned L4: faulted once, and the address the
    /// handler read through `fault_address` (not tried without a trap
    /// table).
    write_fault: Option<(bool, u64)>,
}

/// A lower-half address no bootstrap table maps (its L4 slot is empty in
/// every domain Xen builds small enough for this harness; checked before
/// use).
const UNMAPPED: u64 = 0x0000_4000_0000_0000;

/// Read (or, with `write`, write back) the 8 bytes at `va` with the
/// kernel's handler told to expect a page fault and to resume after the
/// 3-byte instruction: whether exactly one fault was caught, and the
/// address `fault_address` gave the handler.
fn page_fault_at(va: u64, write: bool) -> (bool, u64) {
    use core::sync::atomic::Ordering::SeqCst;
    let before = crate::traps::CAUGHT.load(SeqCst);
    crate::traps::expect_fault(14, 3);
    if write {
        // SAFETY: a page-table page pinned by Xen and mapped read-only:
        // the write faults and the handler resumes after it; were it
        // taken, the word written is the one read from it.
        unsafe {
            core::arch::asm!(
                "mov rax, qword ptr [rdi]",
                ".byte 0x48, 0x89, 0x07", // mov [rdi], rax
                in("rdi") va,
                out("rax") _,
                options(nostack)
            )
        };
    } else {
        // SAFETY: the read faults (nothing maps `va`); the handler, told
        // to expect it, resumes after the 3-byte `mov rax, [rdi]`.
        unsafe {
            core::arch::asm!(
                ".byte 0x48, 0x8b, 0x07", // mov rax, [rdi]
                in("rdi") va,
                out("rax") _,
                options(nostack, readonly)
            )
        };
    }
    let caught = crate::traps::CAUGHT.load(SeqCst) - before;
    (caught == 1, crate::traps::LAST_FAULT_ADDRESS.load(SeqCst))
}

/// What `event_masking` saw.
#[derive(Default)]
struct Masking {
    /// Timer events delivered while masked.
    held: u64,
    /// Timer events delivered once unmasked.
    delivered: u64,
    /// IF in `irq_save`'s flags, masked and unmasked.
    saved: (bool, bool),
    /// Timer events seen once `safe_halt` returned, with the timer armed
    /// 1 ms ahead and events masked before it.
    woke: u64,
}

/// Spin until Xen's clock reaches `until` or `done` holds.
fn wait(backend: &Backend, until: u64, done: impl Fn() -> bool) {
    while backend.clock_ns().0 < until && !done() {
        core::hint::spin_loop();
    }
}

/// Arm the timer 1 ms ahead with events masked, count its events for
/// 20 ms past the deadline, unmask, count again (up to 200 ms); then arm
/// it again and wait in `safe_halt`; events masked again at the end.
fn event_masking(backend: &Backend) -> (Result<(), PvError>, Masking) {
    use crate::events::{seen, Event};
    let ticks = || seen(crate::cpu_local::index(), Event::Timer);
    let mut masking = Masking::default();
    backend.irq_disable();
    let masked = backend.irq_save();
    backend.irq_restore(masked);
    let before = ticks();
    let now = backend.clock_ns().0;
    let armed = backend.timer_oneshot(Nanos(now + 1_000_000));
    wait(backend, now + 21_000_000, || false);
    masking.held = ticks() - before;
    backend.irq_enable();
    let unmasked = backend.irq_save();
    backend.irq_restore(unmasked);
    let after = backend.clock_ns().0;
    wait(backend, after + 200_000_000, || {
        ticks() > before + masking.held
    });
    masking.delivered = ticks() - before - masking.held;
    backend.irq_disable();
    // safe_halt: unmask and wait, with no window for a lost wake-up; only
    // once a timer event has been seen to arrive, so that the wait ends.
    let before_halt = ticks();
    let now = backend.clock_ns().0;
    if masking.delivered == 1 && backend.timer_oneshot(Nanos(now + 1_000_000)).is_ok() {
        backend.safe_halt();
        masking.woke = ticks() - before_halt;
    }
    backend.irq_disable();
    // Nothing armed is left behind (the deadline has passed: a no-op).
    backend.timer_cancel();
    masking.saved = (
        masked.contains(IrqFlags::IF),
        unmasked.contains(IrqFlags::IF),
    );
    (armed, masking)
}

/// `halt` with events unmasked and the timer armed 10 ms ahead (far more
/// than the few instructions before the block, so that the event cannot
/// come first and leave nothing to wake it); its answer and the timer
/// events seen once it returned. Events masked at the end.
fn halt_until_timer(backend: &Backend) -> (Result<(), PvError>, u64) {
    use crate::events::{seen, Event};
    let ticks = || seen(crate::cpu_local::index(), Event::Timer);
    backend.irq_enable();
    let before = ticks();
    let armed = backend.timer_oneshot(Nanos(backend.clock_ns().0 + 10_000_000));
    if armed.is_ok() && ticks() == before {
        backend.halt();
    }
    let woke = ticks() - before;
    backend.irq_disable();
    backend.timer_cancel();
    (armed, woke)
}

/// Two clock_ns readings on this vCPU: the first, and the first that
/// differs from it (up to a million tries).
pub(crate) fn clock_moves(backend: &Backend) -> (u64, u64) {
    let first = backend.clock_ns().0;
    let mut later = first;
    for _ in 0..1_000_000 {
        later = backend.clock_ns().0;
        if later != first {
            break;
        }
    }
    (first, later)
}

/// One site of each irq op, which the entry's `hot_sites::patch` made Xen
/// PV's inline forms.
#[inline(never)]
pub(crate) fn site_irq_disable() {
    pvi_sdk::patchable_irq_disable!();
}

#[inline(never)]
fn site_irq_enable() {
    pvi_sdk::patchable_irq_enable!();
}

#[inline(never)]
fn site_irq_save() -> IrqFlags {
    pvi_sdk::patchable_irq_save!()
}

#[inline(never)]
fn site_irq_restore(flags: IrqFlags) {
    pvi_sdk::patchable_irq_restore!(flags);
}

/// evtchn_upcall_mask of vCPU `cpu`'s vcpu_info, read where Xen keeps it
/// once registered: byte 1 of its block's hypervisor area.
pub(crate) fn upcall_mask(cpu: usize) -> u8 {
    let Some(area) = crate::cpu_local::area(cpu) else {
        return 0xff;
    };
    // SAFETY: a CPU's area, a static in the kernel's block array, where
    // Xen keeps that vCPU's vcpu_info once registered (byte 1:
    // evtchn_upcall_mask); read only, volatile, as Xen writes it behind
    // the compiler's back.
    unsafe { ((area + 1) as *const u8).read_volatile() }
}

/// What `patched_sites` saw.
#[derive(Default)]
struct Patched {
    /// irq sites in the kernel, and how many read as their inline form
    /// (the rare path's call displacement aside).
    sites: (usize, usize),
    /// The mask after the irq_disable site, the irq_enable site, the
    /// irq_save site, and the irq_restore site given IF then not.
    masks: [u8; 5],
    /// Timer events held back while the sites had masked, and delivered
    /// by the irq_enable site's rare path.
    held: u64,
    delivered: u64,
    /// IF in the irq_save site's flags, masked and unmasked.
    saved: (bool, bool),
}

/// Whether each irq site reads as its op's inline form.
fn sites_inline() -> (usize, usize) {
    let mut counted = (0, 0);
    for site in pvi_sdk::patch::sites() {
        let Some(op) = pvi_sdk::patch::HotOp::ALL.get(usize::from(site.op)) else {
            continue;
        };
        let Some(form) = pvi_backends::inline_forms::inline_form(*op) else {
            continue;
        };
        counted.0 += 1;
        // SAFETY: the site's bytes, in the kernel's text.
        let bytes = unsafe { core::slice::from_raw_parts(site.at as *const u8, form.bytes.len()) };
        let displacement = form.call_end.saturating_sub(4)..form.call_end;
        let same = bytes
            .iter()
            .zip(form.bytes)
            .enumerate()
            .all(|(i, (a, b))| a == b || displacement.contains(&i));
        counted.1 += usize::from(same);
    }
    counted
}

/// The patched sites, run: the irq_disable site masks, a timer event
/// armed meanwhile is held back, and the irq_enable site's rare path
/// delivers it; irq_save and irq_restore sites read and set the mask.
/// Events masked at the end, as `event_masking` leaves them.
fn patched_sites(backend: &Backend) -> Patched {
    use crate::events::{seen, Event};
    let ticks = || seen(crate::cpu_local::index(), Event::Timer);
    let mut patched = Patched {
        sites: sites_inline(),
        ..Patched::default()
    };
    site_irq_disable();
    patched.masks[0] = upcall_mask(0);
    let before = ticks();
    let now = backend.clock_ns().0;
    let _ = backend.timer_oneshot(Nanos(now + 1_000_000));
    wait(backend, now + 21_000_000, || false);
    patched.held = ticks() - before;
    let masked = site_irq_save();
    site_irq_enable();
    patched.masks[1] = upcall_mask(0);
    let after = backend.clock_ns().0;
    wait(backend, after + 200_000_000, || {
        ticks() > before + patched.held
    });
    patched.delivered = ticks() - before - patched.held;
    let unmasked = site_irq_save();
    patched.masks[2] = upcall_mask(0);
    site_irq_restore(IrqFlags::IF);
    patched.masks[3] = upcall_mask(0);
    site_irq_restore(IrqFlags::empty());
    patched.masks[4] = upcall_mask(0);
    backend.timer_cancel();
    patched.saved = (
        masked.contains(IrqFlags::IF),
        unmasked.contains(IrqFlags::IF),
    );
    patched
}

/// The machine frame Xen keeps for this domain's frame `pfn`.
pub(crate) fn machine_frame(info: &start_info, pfn: u64) -> Option<u64> {
    // SAFETY: start_info's page-frame list, nr_pages entries, mapped by
    // Xen in the bootstrap region; in bounds.
    (pfn < info.nr_pages).then(|| unsafe {
        (info.mfn_list as *const u64)
            .add(pfn as usize)
            .read_volatile()
    })
}

/// `patched_sites`' evidence, or why it did not run.
struct DisplayPatched<'a>(Option<&'a Patched>);

impl core::fmt::Display for DisplayPatched<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        let Some(p) = self.0 else {
            return write!(
                f,
                "not tried: no trap table, or no timer event through event_masking"
            );
        };
        write!(
            f,
            "{} of {} irq sites read as Xen PV's inline forms; evtchn_upcall_mask after the sites irq_disable, irq_enable, irq_save, irq_restore(IF), irq_restore(0): {:?}; timer events held while masked: {}, delivered by irq_enable's rare path: {}; irq_save saw IF {} when masked, {} when not",
            p.sites.1, p.sites.0, p.masks, p.held, p.delivered, p.saved.0, p.saved.1
        )
    }
}

/// One check's line: `ok` or `FAILED`, and why.
fn report(
    console: &mut impl Write,
    failed: &mut u32,
    name: &str,
    ok: bool,
    evidence: core::fmt::Arguments,
) {
    *failed += u32::from(!ok);
    let verdict = if ok { "ok" } else { "FAILED" };
    let _ = writeln!(console, "pvi: Xen PV check {name}: {verdict} ({evidence})");
}

/// Run the checks; how many failed.
pub(crate) fn run(
    selection: &Selection,
    info: &start_info,
    loaded: Result<(), PvError>,
    console: &mut impl Write,
) -> u32 {
    let backend: &Backend = selection.backend;
    let mut failed = 0;

    // trap_table_load: the entry loaded the kernel's IDT through it; the
    // faults below are the evidence that Xen enters its handlers.
    let traps = loaded.is_ok();
    let served = selection.serving(Op::TrapTableLoad).map(|(step, _)| step);
    report(
        console,
        &mut failed,
        "trap_table_load",
        traps && served == Some(1),
        format_args!("the kernel's 256 gates: {loaded:?}, served by step {served:?}"),
    );

    // fault_address: a read of an address nothing maps faults, Xen
    // bounces the #PF through the trap table, and the handler reads the
    // address through the op (vcpu_info.arch.cr2 here).

    // SAFETY: the bootstrap root, pt_base, mapped read-only; in bounds.
    let l4_slot = unsafe {
        (info.pt_base as *const u64)
            .add(slot(UNMAPPED, 0))
            .read_volatile()
    };
    let fault = (traps && l4_slot & PRESENT == 0).then(|| page_fault_at(UNMAPPED, false));
    report(
        console,
        &mut failed,
        "fault_address",
        fault == Some((true, UNMAPPED)) && selection.serving(Op::FaultAddress).is_some(),
        format_args!(
            "a read of {UNMAPPED:#x}: {}",
            match fault {
                None if !traps => "not tried: no trap table",
                None => "not tried: the address is mapped",
                Some((true, at)) if at == UNMAPPED => "#PF, fault_address naming it; resumed",
                Some((true, _)) => "#PF, but fault_address named another address",
                Some((false, _)) => "no single fault",
            }
        ),
    );

    // gdt_load: a GDT of the kernel's, through set_gdt; the CPU loads a
    // selector from it, and faults on one past it.
    if traps {
        let (loaded, read_back, beyond) = gdt_load_check(backend);
        report(
            console,
            &mut failed,
            "gdt_load",
            loaded.is_ok() && read_back == LOADED_SELECTOR && beyond,
            format_args!(
                "two descriptors through set_gdt: {loaded:?}; ES loaded {LOADED_SELECTOR:#x} and reads {read_back:#x}; {UNLOADED_SELECTOR:#x}, past the table, {}",
                if beyond { "faults (#GP)" } else { "did not fault" }
            ),
        );
    }

    // gs_base_set: a GS-relative read follows the base the op set (the
    // entry set block 0's; here block 1's, then block 0's again).
    let seen = [1, 0].map(|cpu| {
        // SAFETY: one vCPU, no event or interrupt handler running, and
        // nothing GS-relative between the two sets but `index`'s read:
        // block 1 stands for CPU 0 only for that read.
        unsafe { crate::cpu_local::set(cpu) };
        crate::cpu_local::index()
    });
    report(
        console,
        &mut failed,
        "gs_base_set",
        seen == [1, 0] && selection.serving(Op::GsBaseSet).is_some(),
        format_args!("gs:[0] read {seen:?} with the base at block 1, then block 0"),
    );

    // irq_disable, irq_enable, irq_save, irq_restore and timer_oneshot:
    // Xen's timer event, armed while events are masked, is held back, and
    // irq_enable delivers it to the kernel's upcall handler.
    let (armed, masking) = if traps {
        event_masking(backend)
    } else {
        (
            Err(pvi_sdk::generated::xen_pv::unsupported()),
            Masking::default(),
        )
    };
    report(
        console,
        &mut failed,
        "event_masking",
        armed.is_ok()
            && masking.held == 0
            && masking.delivered == 1
            && masking.saved == (false, true)
            && masking.woke == 1
            && [Op::IrqDisable, Op::IrqEnable, Op::TimerOneshot, Op::SafeHalt]
                .iter()
                .all(|&op| selection.serving(op).is_some()),
        format_args!(
            "timer_oneshot 1 ms ahead with events masked: {armed:?}; timer events in the 20 ms past the deadline: {}; after irq_enable: {}; irq_save saw IF {} when masked, {} when not; armed again, safe_halt returned after {} timer event(s)",
            masking.held, masking.delivered, masking.saved.0, masking.saved.1, masking.woke
        ),
    );

    // The hot ops' patched sites: Xen PV's inline forms, run.
    let patched = if traps && masking.delivered == 1 {
        Some(patched_sites(backend))
    } else {
        None
    };
    report(
        console,
        &mut failed,
        "patched_irq_sites",
        patched.as_ref().is_some_and(|p| {
            p.sites.0 >= 4
                && p.sites.1 == p.sites.0
                && p.masks == [1, 0, 1, 0, 1]
                && p.held == 0
                && p.delivered == 1
                && p.saved == (false, true)
        }),
        format_args!("{}", DisplayPatched(patched.as_ref())),
    );

    // halt with events unmasked: SCHEDOP_block until the timer's event.
    if traps && masking.delivered == 1 {
        let (halted, woke) = halt_until_timer(backend);
        report(
            console,
            &mut failed,
            "halt",
            halted.is_ok() && woke == 1,
            format_args!(
                "events unmasked, the timer armed 10 ms ahead: halt {halted:?}, returned after {woke} timer event(s)"
            ),
        );
    }

    // io_delay: nothing to wait for on Xen PV (the port write would fault).
    backend.io_delay();
    let served = selection.serving(Op::IoDelay);
    report(
        console,
        &mut failed,
        "io_delay",
        matches!(served, Some((1, "nop"))),
        format_args!("returned, served by {served:?}"),
    );

    // clock_ns: Xen system time from shared_info, moving.
    let (first, later) = clock_moves(backend);
    let served = selection.serving(Op::ClockNs).map(|(step, _)| step);
    report(
        console,
        &mut failed,
        "clock_ns",
        served == Some(1) && later > first,
        format_args!("served by step {served:?}; {first} ns, then {later} ns"),
    );

    // tsc_hz: from the same record.
    let hz = backend.tsc_hz().0;
    report(
        console,
        &mut failed,
        "tsc_hz",
        selection.serving(Op::TscHz).is_some() && (100_000_000..10_000_000_000).contains(&hz),
        format_args!("{hz} Hz, from vcpu_time_info"),
    );

    // wallclock: Xen's, from the host's clock: this century.
    let seconds = backend.wallclock().0 / 1_000_000_000;
    report(
        console,
        &mut failed,
        "wallclock",
        selection.serving(Op::Wallclock).is_some() && PLAUSIBLE_WALL_SECONDS.contains(&seconds),
        format_args!("{seconds} s since 1970"),
    );

    // yield_to: SCHEDOP_yield answers (the chain records the step that
    // did; a refused call would have fallen to the native pause).
    backend.yield_to(ApicId(0));
    let answered = pvi_backends::served::summary()
        .find(|(op, _)| *op == "yield_to")
        .map(|(_, steps)| steps);
    report(
        console,
        &mut failed,
        "yield_to",
        answered == Some(1 << 1),
        format_args!(
            "served by {}",
            pvi_sdk::record::served::Steps(answered.unwrap_or(0))
        ),
    );

    // page_table_write + flush_tlb_local: move PROBE's mapping to OTHER's
    // frame and back.
    let probe = core::ptr::addr_of!(PROBE) as u64;
    let other = core::ptr::addr_of!(OTHER) as u64;
    match l1_entry_of(info, probe) {
        Err(why) => report(
            console,
            &mut failed,
            "page_table_write",
            false,
            format_args!("{why}"),
        ),
        Ok(entry) => {
            // SAFETY: the L1 entry found above, in a read-only mapped
            // bootstrap table.
            let read_entry = || unsafe { (entry as *const u64).read_volatile() };
            let flags = read_entry() & !FRAME;
            let before = first_byte(&PROBE);
            // SAFETY: the entry maps PROBE, which only this check reads,
            // through volatile loads; pointing it at OTHER's frame (read
            // only here too) and back breaks no reference, stack or code.
            unsafe { backend.page_table_write(entry, flags | other & FRAME) };
            backend.flush_tlb_local(probe, 1);
            let moved = first_byte(&PROBE);
            let in_table = (read_entry() & FRAME) >> 12;
            // SAFETY: as above: PROBE's own frame back.
            unsafe { backend.page_table_write(entry, flags | probe & FRAME) };
            backend.flush_tlb_local(probe, 1);
            let back = first_byte(&PROBE);
            let expected = machine_frame(info, other >> 12).unwrap_or(0);
            report(
                console,
                &mut failed,
                "page_table_write",
                selection.serving(Op::PageTableWrite).is_some()
                    && (before, moved, back) == (b'A', b'B', b'A')
                    && expected == in_table,
                format_args!(
                    "{:?} at {probe:#x}, then {:?} with machine frame {in_table:#x} in the L1 entry at {entry:#x} (OTHER's is {expected:#x}), then {:?}",
                    before as char, moved as char, back as char
                ),
            );
        }
    }
    // page_table_alloc + address_space_switch + page_table_release: a
    // second root, pinned, in which PROBE's address maps OTHER's frame.
    let second = machine_frame(info, other >> 12)
        .ok_or("OTHER has no machine frame")
        .and_then(|mfn| build_second_root(info, probe, mfn));
    match second {
        Err(why) => report(
            console,
            &mut failed,
            "address_space_switch",
            false,
            format_args!("{why}"),
        ),
        Ok(tables) => {
            let switched = switch_roots(backend, info, tables, traps);
            report(
                console,
                &mut failed,
                "address_space_switch",
                selection.serving(Op::AddressSpaceSwitch).is_some()
                    && selection.serving(Op::PageTableAlloc).is_some()
                    && switched.as_ref().is_ok_and(|s| s.seen == (b'B', b'A')),
                format_args!(
                    "a second root at {:#x}..{:#x}, pinned L1 to L4 through page_table_alloc; Xen's answer to a writable mapping of its L1: {:?}; {probe:#x} read (through it, then through the first root): {:?}; released",
                    tables[0],
                    tables[3] + 4096,
                    switched.as_ref().map(|s| s.refusal.origin),
                    switched.as_ref().map(|s| [s.seen.0 as char, s.seen.1 as char])
                ),
            );
            let write_fault = switched.ok().and_then(|s| s.write_fault);
            report(
                console,
                &mut failed,
                "pinned_table_write",
                write_fault == Some((true, tables[0])),
                format_args!(
                    "a write into the pinned root at {:#x}: {}",
                    tables[0],
                    match write_fault {
                        None => "not tried (no trap table, or the root was not pinned)",
                        Some((true, at)) if at == tables[0] =>
                            "#PF, through the trap table, fault_address naming it; resumed",
                        Some((true, _)) => "#PF, but fault_address named another address",
                        Some((false, _)) => "no single fault: the write was taken or faulted again",
                    }
                ),
            );
        }
    }

    // SMP, the PV way: vCPU 1 started through VCPUOP_initialise and
    // VCPUOP_up, set up through the ops on itself, its patched irq site
    // masking its own events (the boot vCPU's unmasked meanwhile, so that
    // a store into the wrong area would show).
    if traps {
        let second = smp_start(backend, info, console, &mut failed);
        ipis(selection, second, console, &mut failed);
    }
    failed
}

/// The kick to vCPU 1, as `ipis` reports it.
struct ToSecond(Option<(Result<(), PvError>, u64)>);

impl core::fmt::Display for ToSecond {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match &self.0 {
            None => write!(f, "not tried (one vCPU)"),
            Some((sent, n)) => write!(f, "{sent:?}, counted {n} time(s) by its handler there"),
        }
    }
}

/// `send_ipi` as event channels: a kick to this vCPU, with its events
/// unmasked, and to vCPU 1 if it runs (blocked in `safe_halt`), each
/// counted by the kernel's handler on its target.
fn ipis(selection: &Selection, second: bool, console: &mut impl Write, failed: &mut u32) {
    let backend: &Backend = selection.backend;
    use crate::events::{seen, Event};
    use pvi_sdk::types::{CpuSet, Vector};
    let kick = Vector(crate::platform::KICK_VECTOR);
    let wait_for = |cpu: usize, before: u64| {
        let until = backend.clock_ns().0 + 2_000_000_000;
        wait(backend, until, || seen(cpu, Event::Kick) > before);
        seen(cpu, Event::Kick) - before
    };
    backend.irq_enable();
    let before = seen(0, Event::Kick);
    let to_self = backend.send_ipi(CpuSet(1), kick);
    let own = wait_for(0, before);
    backend.irq_disable();
    let other = second.then(|| {
        let before = seen(1, Event::Kick);
        let sent = backend.send_ipi(CpuSet(1 << 1), kick);
        (sent, wait_for(1, before))
    });
    // kick_cpu: the same vector, to vCPU 1 asleep again in safe_halt.
    let kicked = second.then(|| {
        let before = seen(1, Event::Kick);
        backend.kick_cpu(pvi_sdk::types::ApicId(1));
        wait_for(1, before)
    });
    report(
        console,
        failed,
        "send_ipi",
        to_self.is_ok() && own == 1 && other.as_ref().is_none_or(|(sent, n)| sent.is_ok() && *n == 1),
        format_args!(
            "a kick to vCPU 0 through its IPI event channel: {to_self:?}, counted {own} time(s) by its handler; to vCPU 1: {}",
            ToSecond(other)
        ),
    );
    // flush_tlb, flush_tlb_range: Xen's answer to a flush of every vCPU
    // (the evidence is its acceptance only: no stale translation is shown).
    let all = if second { CpuSet(0b11) } else { CpuSet(1) };
    backend.flush_tlb(all);
    backend.flush_tlb_range(all, PROBE.0.as_ptr() as u64, 1);
    let served = [Op::FlushTlb, Op::FlushTlbRange].map(|op| selection.serving(op));
    report(
        console,
        failed,
        "flush_tlb",
        served.iter().all(|s| matches!(s, Some((1, _)))),
        format_args!(
            "vCPUs {:#b}, the whole TLB, then one page: returned, served by {:?} (Xen accepted both; no stale translation is shown; the native IPIs would have faulted)",
            all.0, served
        ),
    );
    if let Some(n) = kicked {
        report(
            console,
            failed,
            "kick_cpu",
            n == 1,
            format_args!("vCPU 1, asleep in safe_halt: its kick handler counted {n}"),
        );
    }
}

/// Start the second vCPU, if the domain has one, and report what it saw;
/// whether it runs.
fn smp_start(
    backend: &Backend,
    info: &start_info,
    console: &mut impl Write,
    failed: &mut u32,
) -> bool {
    use crate::xen_pv_smp::{start_second, Second};
    backend.irq_enable();
    let second = start_second(backend, Gpa(info.pt_base));
    backend.irq_disable();
    match second {
        Second::Absent(why) => {
            let _ = writeln!(
                console,
                "pvi: Xen PV check smp_start: skipped (this domain has one vCPU: VCPUOP_is_up(1) answered -ENOENT, {why:?})"
            );
            false
        }
        Second::Failed(why) => {
            report(console, failed, "smp_start", false, format_args!("{why}"));
            false
        }
        Second::Ran {
            index,
            idt,
            init,
            own_mask,
            boot_mask,
            clock,
        } => {
            report(
            console,
            failed,
            "smp_start",
            index == 1 && idt && init && own_mask == 1 && boot_mask == [0, 0] && clock[1] > clock[0],
            format_args!(
                "vCPU 1 through VCPUOP_initialise and VCPUOP_up: its GS-relative index {index}; trap_table_load on it {}, init_cpu {}; its evtchn_upcall_mask after its patched irq_disable site {own_mask}, vCPU 0's before and after {boot_mask:?}; its clock_ns {} ns, then {} ns",
                if idt { "ok" } else { "failed" },
                if init { "ok" } else { "refused" },
                clock[0],
                clock[1]
            ),
            );
            true
        }
    }
}
