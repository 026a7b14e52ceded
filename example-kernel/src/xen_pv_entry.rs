//! Xen PV entry: the same ELF that boots through PVH (boot.rs) carries the
//! notes Xen's loader reads to build a 64-bit PV domain. Xen then starts
//! it in 64-bit mode, in ring 3, on page tables Xen built and validates,
//! with `rsi` pointing at the `start_info` and a hypercall page Xen has
//! filled (`XEN_ELFNOTE_HYPERCALL_PAGE`).
//!
//! The image is linked with virtual = physical addresses (PVH runs
//! identity-mapped), so `VIRT_BASE` and `PADDR_OFFSET` are both 0, as
//! Mini-OS has them.
//!
//! What runs here: the entry hands what Xen gave it to the SDK's Xen PV
//! backend (`pvi_backends::entry::xen_pv`), chooses that backend by the
//! entry (`Detection::entered`), and from then on goes through the ops
//! alone: the report and the PV checks (`xen_pv_checks`) write through
//! `console_write` (Xen's console from dom0, the PV console ring from a
//! domU), and the domain stops through `shutdown`. The kernel's IDT is
//! loaded through `trap_table_load` (Xen's virtual IDT, and the upcall
//! vector's handler as Xen's event callback), so a fault reaches the
//! kernel's own handler and Xen's timer event its upcall handler; the irq
//! ops mask events in vcpu_info. With `selftest`, the kernel's self-tests
//! (`selftest.rs`) follow, as under every entry: what they read
//! differently in ring 3 (the interrupt flag, the CPU's id, the boot page
//! tables, the text's protection) asks `platform::entry`. What this entry
//! does not do is the PVH path's firmware and APIC work: no ACPI table
//! and no local APIC reach a PV guest, and its second vCPU is started
//! here (`xen_pv_smp`), not by INIT-SIPI.

use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use pvi_backends::platform::{Platform, Vectors};
use pvi_sdk::detect::Detection;
use pvi_sdk::generated::xen_pv::{
    __HYPERVISOR_console_io, __HYPERVISOR_sched_op, __HYPERVISOR_vcpu_op, CONSOLEIO_write,
    SCHEDOP_shutdown, SHUTDOWN_poweroff, SIF_INITDOMAIN, XEN_ELFNOTE_ENTRY, XEN_ELFNOTE_FEATURES,
    XEN_ELFNOTE_GUEST_OS, XEN_ELFNOTE_GUEST_VERSION, XEN_ELFNOTE_HYPERCALL_PAGE,
    XEN_ELFNOTE_LOADER, XEN_ELFNOTE_PADDR_OFFSET, XEN_ELFNOTE_VIRT_BASE, XEN_ELFNOTE_XEN_VERSION,
};
use pvi_sdk::generated::Hypervisor;
use pvi_sdk::types::{sched_shutdown, start_info, ApicId, Gpa};
use pvi_sdk::PvOps;

/// What `start_info.magic` starts with for a 64-bit PV guest.
const MAGIC: &[u8] = b"xen-3.0-x86_64";

core::arch::global_asm!(
    // One ELF note of owner "Xen": its type, then its descriptor.
    ".macro pvi_xen_note type, body:vararg",
    ".pushsection .note.Xen, \"a\", @note",
    ".balign 4",
    ".long 4, 2f - 1f, \\type",
    ".asciz \"Xen\"",
    ".balign 4",
    "1: \\body",
    "2: .balign 4",
    ".popsection",
    ".endm",
    "pvi_xen_note {guest_os}, .asciz \"pvi-example-kernel\"",
    "pvi_xen_note {guest_version}, .asciz \"0.2\"",
    "pvi_xen_note {xen_version}, .asciz \"xen-3.0\"",
    "pvi_xen_note {virt_base}, .quad 0",
    "pvi_xen_note {paddr_offset}, .quad 0",
    "pvi_xen_note {entry}, .quad xen_pv_start",
    "pvi_xen_note {hypercall_page}, .quad xen_pv_hypercall_page",
    "pvi_xen_note {loader}, .asciz \"generic\"",
    // The kernel writes page tables through `page_table_write`, which a
    // PV mapping turns into `mmu_update`: it needs no writable tables.
    "pvi_xen_note {features}, .asciz \"!writable_page_tables\"",
    // Xen writes its stubs here before the entry runs; int3 until then
    // (and for ever under PVH, where nothing calls it).
    ".pushsection pvi_hypercall_pages, \"ax\"",
    ".balign 4096",
    ".global xen_pv_hypercall_page",
    "xen_pv_hypercall_page: .fill 4096, 1, 0xcc",
    ".popsection",
    ".pushsection .text.xen_pv_start, \"ax\"",
    ".global xen_pv_start",
    "xen_pv_start:",
    "lea rsp, [rip + xen_pv_stack_top]",
    "mov rdi, rsi",
    "call xen_pv_main",
    "3: jmp 3b",
    ".popsection",
    ".pushsection .bss.xen_pv_stack, \"aw\", @nobits",
    ".balign 16",
    "xen_pv_stack: .space 64 * 1024",
    "xen_pv_stack_top:",
    ".popsection",
    guest_os = const XEN_ELFNOTE_GUEST_OS,
    guest_version = const XEN_ELFNOTE_GUEST_VERSION,
    xen_version = const XEN_ELFNOTE_XEN_VERSION,
    virt_base = const XEN_ELFNOTE_VIRT_BASE,
    paddr_offset = const XEN_ELFNOTE_PADDR_OFFSET,
    entry = const XEN_ELFNOTE_ENTRY,
    hypercall_page = const XEN_ELFNOTE_HYPERCALL_PAGE,
    loader = const XEN_ELFNOTE_LOADER,
    features = const XEN_ELFNOTE_FEATURES,
);

// SAFETY: the page the global_asm! above reserves; only its address is taken.
extern "C" {
    static xen_pv_hypercall_page: u8;
}

/// The hypercall page Xen fills from the kernel's note before the PV
/// entry runs (int3 under any other entry).
pub(crate) fn hypercall_page() -> *const u8 {
    core::ptr::addr_of!(xen_pv_hypercall_page)
}

/// What the backends learn of the kernel on Xen PV: virtual addresses are
/// pseudo-physical ones (VIRT_BASE 0, PADDR_OFFSET 0), a vCPU's index is
/// its Xen vCPU id, and everything below the bootstrap page tables is mapped read-write
/// (xen.h's "Start-of-day memory layout": image, page-frame list,
/// start_info, and a domU's xenstore and console pages, in that order).
struct PvPlatform;

/// The first byte past what the bootstrap mapping maps read-write: the
/// bootstrap page tables' address (start_info's pt_base).
static MAPPED_END: AtomicU64 = AtomicU64::new(0);

impl Platform for PvPlatform {
    fn gpa(&self, addr: usize) -> u64 {
        addr as u64
    }

    /// From the per-CPU block once GS points at one: vCPU 0 until then.
    fn cpu_index(&self) -> usize {
        crate::cpu_local::index_if_set().unwrap_or(0)
    }

    /// A PV vCPU has no APIC: its "APIC id" is its vCPU id, which is its
    /// index (`send_ipi`'s targets on Xen PV).
    fn cpu_of_apic(&self, apic: ApicId) -> Option<usize> {
        let cpu = apic.0 as usize;
        (cpu < crate::firmware::MAX_CPUS).then_some(cpu)
    }

    /// No local APIC is programmed on Xen PV: these are the kernel's
    /// usual numbers, which nothing sends yet.
    fn vectors(&self) -> Vectors {
        crate::platform::vectors()
    }

    fn map_gpa(&self, gpa: u64) -> Option<usize> {
        (gpa.checked_add(4096)? <= MAPPED_END.load(Relaxed)).then_some(gpa as usize)
    }

    fn cpu_area(&self) -> Option<usize> {
        crate::cpu_local::area(self.cpu_index())
    }
}

static PV_PLATFORM: PvPlatform = PvPlatform;

/// The start_info Xen passed, once the entry checked its magic (0 until
/// then, and under every other entry).
static START_INFO: AtomicU64 = AtomicU64::new(0);

/// The start_info, if the kernel came in through the PV entry.
fn start_info_given() -> Option<&'static start_info> {
    let at = START_INFO.load(Relaxed);
    // SAFETY: set only to the start_info Xen passed, mapped read-write
    // for the domain's life and written by nothing after the entry.
    (at != 0).then(|| unsafe { &*(at as *const start_info) })
}

/// The bootstrap root Xen started the kernel on (start_info's pt_base:
/// its virtual address, which is its pseudo-physical one here).
pub(crate) fn bootstrap_root() -> u64 {
    start_info_given().map_or(0, |info| info.pt_base)
}

/// This domain's frame of machine frame `mfn`, through Xen's
/// machine-to-physical table, if `mfn` is the domain's own: the frame
/// must map back to it through start_info's page-frame list.
pub(crate) fn own_frame(mfn: u64) -> Option<u64> {
    let info = start_info_given()?;
    let pfn = crate::xen_pv_checks::pseudo_frame(mfn);
    (crate::xen_pv_checks::machine_frame(info, pfn)? == mfn).then_some(pfn)
}

/// The text of a NUL-padded byte field.
pub(crate) fn text(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..end]).unwrap_or("(not UTF-8)")
}

/// A hypercall through the page's stub, without the SDK: Xen's answer.
///
/// # Safety
///
/// The PV entry ran (Xen filled the page), and the hypercall `number`
/// with these arguments is one the caller may make: Xen reads and writes
/// what they point at.
unsafe fn hypercall3(number: u64, arg1: u64, arg2: u64, arg3: u64) -> i64 {
    let stub = hypercall_page() as u64 + 32 * number;
    let answer: i64;
    // SAFETY: the caller's contract; the 64-bit PV stub takes arguments in rdi, rsi, rdx, returns in rax and changes rcx and r11 (syscall).
    unsafe {
        core::arch::asm!(
            "call {stub}",
            stub = in(reg) stub,
            inout("rdi") arg1 => _,
            inout("rsi") arg2 => _,
            inout("rdx") arg3 => _,
            out("rax") answer, out("rcx") _, out("r11") _,
        );
    }
    answer
}

/// Marker `n` for Xen's trace (the `exits.markers` mode on Xen PV, where
/// a CPUID does not trap): `VCPUOP` `command`, a number no Xen defines,
/// for vCPU `n`, of which Xen records the command and the vCPU before it
/// answers -ENOENT or -ENOSYS and does nothing. Under another entry,
/// nothing.
pub(crate) fn trace_marker(command: u32, n: u32) {
    if crate::platform::entry() != crate::platform::Entry::XenPv {
        return;
    }
    // SAFETY: the PV entry ran; an unknown VCPUOP command reads nothing (its argument is null).
    let _ = unsafe { hypercall3(__HYPERVISOR_vcpu_op, u64::from(command), u64::from(n), 0) };
}

/// Stop without the SDK: for a start_info the backend must not trust, or
/// a build without the Xen PV backend, which must link none of its code
/// (the size benchmark checks). dom0 still gets its line on Xen's
/// console. The hypercalls are made by hand, through the page's stubs.
fn refuse(line: &str) -> ! {
    // SAFETY: Xen entered us here and filled the page; CONSOLEIO_write reads `count` bytes at `buffer`, which `line` holds.
    let _ = unsafe {
        hypercall3(
            __HYPERVISOR_console_io,
            u64::from(CONSOLEIO_write),
            line.len() as u64,
            line.as_ptr() as u64,
        )
    };
    let reason = sched_shutdown {
        reason: SHUTDOWN_poweroff,
    };
    // SAFETY: as above; SCHEDOP_shutdown reads one sched_shutdown at the address, which `reason` holds.
    let _ = unsafe {
        hypercall3(
            __HYPERVISOR_sched_op,
            u64::from(SCHEDOP_shutdown),
            core::ptr::addr_of!(reason) as u64,
            0,
        )
    };
    loop {
        core::hint::spin_loop();
    }
}

/// The PV entry's Rust half: hand Xen's start_info to the SDK, choose the
/// Xen PV backend, report and check through its ops, then stop.
#[no_mangle]
extern "C" fn xen_pv_main(info: *const start_info) -> ! {
    // First, so that a build without the backend (a constant) drops
    // everything below, which is the backend's code.
    if !pvi_backends::registry::BUILT.contains(&Hypervisor::XenPv) {
        refuse(
            "pvi: Xen PV entry: this build has no Xen PV backend (pvi-backends feature xen_pv); stopping\n",
        );
    }
    let page = hypercall_page();
    // SAFETY: Xen passes the start_info's virtual address in rsi, mapped
    // read-write inside the initial mapping for as long as the domain
    // does not unmap it; nothing else writes it.
    let info = unsafe { &*info };
    if !info.magic.starts_with(MAGIC) {
        refuse("pvi: Xen PV entry: start_info's magic is not xen-3.0-x86_64; stopping\n");
    }
    MAPPED_END.store(info.pt_base, Relaxed);
    START_INFO.store(core::ptr::from_ref(info) as u64, Relaxed);
    crate::platform::set_entry(crate::platform::Entry::XenPv);
    pvi_backends::platform::install(&PV_PLATFORM);
    // SAFETY: the start_info Xen passed, unchanged and mapped for the
    // domain's life, and the page its note names (see above).
    unsafe { pvi_backends::entry::xen_pv(info, page) };
    let Some(detection) = Detection::entered(Hypervisor::XenPv) else {
        refuse("pvi: Xen PV entry: the IDL gives xen_pv no entry note; stopping\n");
    };
    let cmdline = text(&info.cmd_line);
    // SAFETY: the kernel's privilege (ring 3 on Xen PV), the boot vCPU,
    // once, after the platform was installed.
    let selection = unsafe { crate::select_once(detection, cmdline) };
    let backend = selection.backend;
    // This vCPU's per-CPU block, through the op (set_segment_base here),
    // before its hypervisor area is registered and reached through GS.

    // SAFETY: the boot vCPU, CPU 0, once, before GS-relative code runs.
    unsafe { crate::cpu_local::set(0) };
    // This vCPU's records: Xen's timer event bound to a port of its own,
    // and its vcpu_info moved into its block's hypervisor area.
    if selection.init_cpu().is_err() {
        refuse("pvi: Xen PV entry: the boot vCPU's records were refused\n");
    }
    // Ports through Xen's I/O emulation, for the CMOS clock's self-tests:
    // without it `in` and `out` fault in ring 3.
    backend.io_ports_enable();
    // Through the chosen backend's console_write, as every entry writes.
    let mut console = crate::console::Console;
    let cs = crate::platform::code_segment();
    let ring = cs & 3;
    let _ = writeln!(console, "pvi: Xen PV entry: ring {ring} (CS {cs:#x})");
    let dom0 = info.flags & SIF_INITDOMAIN != 0;
    let _ = writeln!(
        console,
        "pvi: Xen PV entry: start_info {:?}: {} pages, shared_info at machine address {:#x}, {} initial page-table frames, {}",
        text(&info.magic),
        info.nr_pages,
        info.shared_info,
        info.nr_pt_frames,
        if dom0 { "the initial domain (SIF_INITDOMAIN)" } else { "a domU" },
    );
    let _ = writeln!(console, "pvi: Xen PV entry: command line {cmdline:?}");
    let _ = writeln!(
        console,
        "pvi: Xen PV entry: I/O ports: {}",
        if io_privileged() {
            "privilege level 1 through io_ports_enable (physdev_op)"
        } else {
            "no I/O privilege: io_ports_enable fell back"
        }
    );
    // The boot report every entry prints: detection, the backend, and
    // each op's planned step.
    let _ = write!(console, "{selection}");
    // The hot ops' sites: Xen PV's inline forms, which reach the
    // vcpu_info just registered through GS.
    let patched = crate::hot_sites::patch(selection);
    let _ = writeln!(
        console,
        "pvi: Xen PV entry: hot sites: {} inline, {} native, {} calls, {} kept",
        patched.inline, patched.native, patched.direct, patched.kept
    );
    // The text read-only from here on, as under PVH: patching is done.

    // SAFETY: once, on the boot vCPU before any other starts, on Xen's
    // bootstrap tables.
    match unsafe { crate::text::protect() } {
        Ok(()) => {
            let _ = writeln!(console, "pvi: Xen PV entry: kernel text read-only");
        }
        Err(why) => {
            let _ = writeln!(
                console,
                "pvi: Xen PV entry: kernel text left writable: {why}"
            );
        }
    }
    // The kernel's IDT, through the op: Xen's virtual IDT here. Until it
    // is loaded, a fault makes Xen crash the domain.

    // SAFETY: the boot vCPU; the table's handlers are `traps`' stubs.
    let loaded = unsafe { crate::descriptors::load_idt() };
    let _ = writeln!(
        console,
        "pvi: Xen PV entry: the IDT through trap_table_load: {loaded:?}"
    );
    if cmdline.split_ascii_whitespace().any(|w| w == "exits") {
        // Exits per op, counted by Xen's trace in the dom0: the PV checks'
        // hypercalls would only fill its buffers. Three other vCPUs for
        // the IPI, where the domain has them.
        let others = crate::xen_pv_smp::start_serving(backend, Gpa(info.pt_base));
        let _ = writeln!(
            console,
            "pvi: Xen PV entry: exits: {others} other vCPUs online; the PV checks are skipped"
        );
        let machine = crate::platform::set_machine(machine());
        crate::exits::run(selection, machine, cmdline, &|_| false)
    }
    let failed = crate::xen_pv_checks::run(selection, info, loaded, &mut console);
    // What fell back, and what answered, as the chains recorded it.
    crate::run_report::write(&mut console);
    if cmdline
        .split_ascii_whitespace()
        .any(|w| w == "pvi-pv-fault")
    {
        // What any fault the kernel does not expect meets: its handler's
        // report, a panic, and the crash shutdown, never a hang.
        let _ = writeln!(
            console,
            "pvi: Xen PV entry: pvi-pv-fault: an unexpected #UD follows"
        );
        // SAFETY: `ud2` raises #UD, which the kernel's handler (through the trap table) reports before the kernel panics and stops.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    }
    if cmdline.split_ascii_whitespace().any(|w| w == "bench") {
        crate::xen_pv_bench::run(backend);
    }
    let words = || cmdline.split_ascii_whitespace();
    if failed == 0 && words().any(|w| w == "selftest") {
        let _ = writeln!(
            console,
            "pvi: Xen PV entry: checks: 0 failed; the kernel's self-tests follow"
        );
        // The checks started vCPU 1; the rest too, for the IPIs to many.
        crate::xen_pv_smp::start_serving(backend, Gpa(info.pt_base));
        let machine = crate::platform::set_machine(machine());
        crate::selftest::run(selection, machine, cmdline)
    }
    let _ = writeln!(
        console,
        "pvi: Xen PV entry: checks: {failed} failed; powering off"
    );
    if failed > 0 {
        crate::exit::failure()
    }
    crate::exit::success()
}

/// The machine as a Xen PV guest sees it, for the self-tests: its vCPUs
/// (the boot one and those the PV checks started, each numbered by its
/// vCPU id, which the IPI ops take where an APIC id would be), and no
/// firmware: no ACPI tables reach a PV guest, and in ring 3 without I/O
/// privilege the CMOS clock's ports fault.
fn machine() -> crate::firmware::Machine {
    let mut machine = crate::firmware::Machine::default();
    let cpus = (1..crate::firmware::MAX_CPUS)
        .take_while(|&cpu| crate::smp::online(cpu))
        .count()
        + 1;
    for (cpu, id) in machine.apic_ids[..cpus].iter_mut().enumerate() {
        *id = cpu as u32;
    }
    machine.cpus = cpus;
    // With I/O privilege the CMOS ports reach Xen, which reads the clock
    // for a domain granted it (dom0) and 0xff for one that is not: the
    // self-tests then look. Without it they would fault.
    if !io_privileged() {
        machine.no_cmos_rtc = Some(
            "a Xen PV guest in ring 3 without I/O privilege (io_ports_enable fell back), where the CMOS ports fault",
        );
    }
    machine
}

/// Whether Xen gave the boot vCPU I/O privilege: a paravirtual step of
/// `io_ports_enable` answered (its native end, "nothing", is ring 0's
/// answer, not ring 3's).
fn io_privileged() -> bool {
    pvi_backends::served::summary().any(|(op, steps)| op == "io_ports_enable" && steps & !1 != 0)
}
