//! The boot matrix of `cargo xtask test`: the example kernel's self-tests
//! under TCG and KVM with one and two CPUs, the demo (which must power the
//! machine off) and a deliberate panic (which QEMU's pvpanic must see);
//! first, the same kernel as the real Xen 4.17's PVH dom0 (see `xen.rs`).

use crate::probe::Probe;
use crate::qemu::{
    self, Accel, Boot, EXIT_FAILURE, EXIT_GUEST_PANICKED, EXIT_POWERED_OFF, EXIT_SUCCESS,
};
use crate::steps::{Outcome, Step};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One boot: how, and what the kernel must say and how QEMU must end.
struct Case {
    name: &'static str,
    accel: Accel,
    smp: u32,
    cpu_extra: &'static str,
    /// Kernel command-line words (more are added: `host_time=`, and under
    /// KVM perhaps `selftest.no-hypercalls`).
    words: &'static str,
    vm_args: &'static [&'static str],
    exit: i32,
    expect: &'static [&'static str],
    /// A check of the whole serial log beyond `expect`'s substrings.
    check: fn(&str) -> Result<(), String>,
    /// The op that ends this run, and the variant of its guard, when
    /// `expect` and `exit` prove it did its work (the hypervisor's own
    /// report of the shutdown reason, QEMU's status): the book's Verified
    /// where table credits the step that serves it.
    proves: Option<(&'static str, Option<&'static str>)>,
}

/// A power-off the boot's end proves.
const POWERS_OFF: Option<(&str, Option<&str>)> = Some(("shutdown", Some("poweroff")));

/// No check beyond `expect`.
fn no_check(_: &str) -> Result<(), String> {
    Ok(())
}

/// The demo's ticks must come 100 ms apart by `clock_ns`: every tick after
/// the one before, and the median gap 100 ms ± 10 ms. A clock that stands
/// still (the real Xen's first finding) or races fails; one tick that
/// TCG's host delayed (23 ms once in CI) shortens or stretches the gaps
/// beside it, not the median.
fn ticks_advance_100ms(log: &str) -> Result<(), String> {
    let clocks: Vec<u64> = log
        .lines()
        .filter(|l| l.starts_with("tick "))
        .filter_map(|l| l.split("clock_ns ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    if clocks.len() < 2 {
        return Err(format!(
            "{} tick line(s) with a clock_ns reading",
            clocks.len()
        ));
    }
    let mut gaps = Vec::new();
    for (i, pair) in clocks.windows(2).enumerate() {
        let Some(gap) = pair[1].checked_sub(pair[0]).filter(|&g| g > 0) else {
            return Err(format!(
                "tick {} came {} ns after tick {}: the clock did not advance",
                i + 2,
                pair[1].saturating_sub(pair[0]),
                i + 1
            ));
        };
        gaps.push(gap);
    }
    gaps.sort_unstable();
    let middle = gaps.len() / 2;
    let median = if gaps.len() % 2 == 0 {
        (gaps[middle - 1] + gaps[middle]) / 2
    } else {
        gaps[middle]
    };
    if !(90_000_000..=110_000_000).contains(&median) {
        return Err(format!(
            "the ticks came a median {median} ns apart, not 100 ms ± 10 ms (gaps {gaps:?})"
        ));
    }
    Ok(())
}

/// The `eoi` self-test must find at least one EOI the hypervisor did
/// itself: the paravirtual EOI step is in use *and* the hypervisor armed
/// its flag (Xen's viridian sets Hyper-V's `apic_assist` for an edge
/// interrupt with nothing else in service). An EOI that was skipped wrongly
/// would have stopped the ticks the test counts, so the line's "ok" also
/// says each skipped EOI was done by the hypervisor.
fn eois_assisted(log: &str) -> Result<(), String> {
    let line = log
        .lines()
        .find(|l| l.contains("test eoi "))
        .ok_or("no `test eoi` line")?;
    let assisted: u64 = line
        .split("of the paravirtual EOIs, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("the eoi test counted no paravirtual EOI: {line}"))?;
    if !line.contains("] ok:") || assisted == 0 {
        return Err(format!("no EOI done by the hypervisor: {line}"));
    }
    Ok(())
}

/// What a KVM boot must show: the KVM backend, kvmclock, PV EOI and steal
/// time in use.
const KVM_EXPECT: &[&str] = &[
    "backend: kvm",
    "clock_ns           step 1: shared pvclock_vcpu_time_info",
    "eoi                step 1: shared kvm_pv_eoi_word",
    "steal_ns           step 1: shared kvm_steal_time",
];

/// What every self-test run must end with (besides exit status 33).
/// Every call site patched, too.
const SELFTEST_EXPECT: &[&str] = &[
    " 0 failed,",
    "console_write: pvi-console-check",
    "to direct calls, 0 kept",
];

/// What a boot as the real Xen's dom0 must show: the Xen backend with its
/// shared clock and timer hypercall, the hardware domain recognised.
const XEN_DOM0_EXPECT: &[&str] = &[
    "chosen: xen",
    "xen version: 4.17",
    "xen: this is the hardware domain (XENFEAT_dom0)",
    "clock_ns           step 1: shared vcpu_time_info.system_time",
    "timer: step 1 (hypercall __HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer",
];

/// ... and with two vCPUs, both online (found through Xen's MADT and its
/// memory map).
const XEN_DOM0_SMP_EXPECT: &[&str] = &[
    "chosen: xen",
    "xen: this is the hardware domain (XENFEAT_dom0)",
    "CPUs: 2 (APIC ids [0, 2])",
    "smp: 2 of 2 CPUs online",
];

/// What a boot as a PVH domU of the real Xen must show: the self-tests'
/// lines carried by the PV console ring, both vCPUs up, the RTC tests
/// skipped for the platform's reason, and the domU's own power-off.
const XEN_PVH_EXPECT: &[&str] = &[
    "chosen: xen",
    "pvi.withdraw=tsc_hz:1: followed",
    "  tsc_hz             step 2",
    "console_write      step 1: shared xencons_interface",
    "smp: 2 of 2 CPUs online",
    "skipped: no CMOS RTC on this platform",
    "pvi-dom0: the domU shut down with reason code 0",
];

/// The Xen PV entry as a domU: ring 3, a domU's start_info with the
/// words given, the Xen PV backend chosen by the entry, every PV check
/// passed, then the kernel's self-tests with both vCPUs (the CMOS clock's
/// skipped: with I/O privilege its ports reach Xen, which grants a domU
/// none and reads 0xff), every line through
/// the PV console ring (the console chain's step 1; a domU's `console_io`
/// is refused), and a power-off Xen reports as reason 0.
const XEN_PV_DOMU_EXPECT: &[&str] = &[
    "pvi: Xen PV entry: ring 3 (CS 0xe033)",
    "pvi: Xen PV entry: start_info \"xen-3.0-x86_64\": ",
    "initial page-table frames, a domU",
    "pvi: Xen PV entry: command line \"pvi-pv-check selftest host_time=",
    "pvi: Xen PV entry: kernel text read-only",
    "calls, 0 kept",
    "chosen: xen_pv (the kernel came in through its XEN_ELFNOTE_ENTRY entry)",
    "backend: xen_pv",
    "pvi: Xen PV check trap_table_load: ok",
    "pvi: Xen PV check fault_address: ok",
    "pvi: Xen PV check gdt_load: ok",
    "pvi: Xen PV check gs_base_set: ok",
    "pvi: Xen PV check event_masking: ok",
    "pvi: Xen PV check patched_irq_sites: ok",
    "pvi: Xen PV check clock_ns: ok",
    "pvi: Xen PV check tsc_hz: ok",
    "pvi: Xen PV check wallclock: ok",
    "pvi: Xen PV check page_table_write: ok",
    "pvi: Xen PV check address_space_switch: ok",
    "pvi: Xen PV check pinned_table_write: ok",
    "pvi: Xen PV check halt: ok",
    "pvi: Xen PV check io_delay: ok",
    "pvi: Xen PV check smp_start: ok",
    "pvi: Xen PV check send_ipi: ok",
    "pvi: Xen PV check flush_tlb: ok",
    "pvi: Xen PV check kick_cpu: ok",
    "  console_write      step 1",
    "pvi: Xen PV entry: checks: 0 failed; the kernel's self-tests follow",
    "console_write: pvi-console-check",
    "pvi: Xen PV entry: I/O ports: privilege level 1 through io_ports_enable (physdev_op)",
    "skipped: no CMOS RTC on this platform (its ports read 0xff: nothing answers)",
    crate::xen_pv::SELFTEST_DOMU_TWO_VCPUS,
    "pvi-dom0: the domU shut down with reason code 0",
];

/// With Xen's Hyper-V emulation on: both interfaces seen, stacked, and Xen
/// chosen as the one meant for this guest.
const XEN_VIRIDIAN_EXPECT: &[&str] = &[
    "signature \"Microsoft Hv\" at 0x40000000 (Hyper-V)",
    "signature \"XenVMMXenVMM\" at 0x40000100 (Xen)",
    "chosen: xen at 0x40000100, over hyperv",
    "pvi-dom0: the domU shut down with reason code 0",
];

/// ... and the Hyper-V backend forced: the steps Xen's emulation serves
/// (its TSC frequency MSR, its hypercall page, the recommendations it gives
/// a guest whose id passes its OS bar) in use, the invalid reference TSC
/// page handing the clock to the reference counter, in the lines Xen prints
/// for the guest (`(dN) …`, matched without the prefix).
const XEN_VIRIDIAN_HYPERV_EXPECT: &[&str] = &[
    "backend: hyperv",
    "  tsc_hz             step 1: msr HV_X64_MSR_TSC_FREQUENCY",
    "  eoi                step 1: shared hv_vp_assist_page via HV_X64_MSR_VP_ASSIST_PAGE",
    "  send_ipi           step 1: hypercall HVCALL_SEND_IPI",
    "  flush_tlb          step 1: hypercall HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE",
    "  yield_to           step 1: hypercall HVCALL_NOTIFY_LONG_SPIN_WAIT",
    "  clock_ns           step 2",
    "pvi-dom0: the domU shut down with reason code 0",
];

const PANIC_ACTION: &[&str] = &["-action", "panic=exit-failure"];

fn cases() -> Vec<Case> {
    let selftest = |name, accel, smp, cpu_extra, expect: &'static [&'static str]| Case {
        name,
        accel,
        smp,
        cpu_extra,
        words: "selftest",
        vm_args: &[],
        exit: EXIT_SUCCESS,
        expect,
        check: no_check,
        proves: None,
    };
    let demo = |name, accel, expect| Case {
        name,
        accel,
        smp: 1,
        cpu_extra: "",
        words: "demo",
        vm_args: &[],
        exit: EXIT_POWERED_OFF,
        expect,
        check: ticks_advance_100ms,
        proves: POWERS_OFF,
    };
    let panic = |name, accel: Accel| Case {
        name,
        accel,
        smp: 1,
        cpu_extra: "",
        words: "panic",
        // pvi-sim always ends a panicked guest with status 1.
        vm_args: if let Accel::Sim(_) = accel {
            &[]
        } else {
            PANIC_ACTION
        },
        exit: EXIT_GUEST_PANICKED,
        expect: &["panic_notify: telling the hypervisor"],
        check: no_check,
        proves: Some(("panic_notify", None)),
    };
    // A hostile hypervisor: the kernel must fall back, say so, and pass.
    let fault = |name, personality, args, expect| Case {
        vm_args: args,
        ..selftest(name, Accel::Sim(personality), 1, "", expect)
    };
    vec![
        // The real Xen 4.17, the kernel its PVH hardware domain (issue
        // [xen-real]): first, since the rest of the matrix only imitates it.
        selftest(
            "xen dom0: selftest, 1 vcpu",
            Accel::XenDom0,
            1,
            "",
            XEN_DOM0_EXPECT,
        ),
        selftest(
            "xen dom0: selftest, 2 vcpus",
            Accel::XenDom0,
            2,
            "",
            XEN_DOM0_SMP_EXPECT,
        ),
        Case {
            smp: 2,
            ..demo(
                "xen dom0: demo, 2 vcpus, powers off",
                Accel::XenDom0,
                &[
                    "backend: xen",
                    "smp: 2 of 2 CPUs online",
                    "tick 5:",
                    "shutdown           step 1 withdrawn at run time",
                    "shutdown: powering off",
                ],
            )
        },
        Case {
            proves: POWERS_OFF,
            // The domU powers itself off after its self-tests (nothing
            // answers the debug-exit port there); the dom0 then powers the
            // machine off, or exits 35 for any other shutdown reason.
            // tsc_hz's first step (the time record, which the dom0 boots
            // use) is withdrawn, so that its second (Xen's CPUID time
            // leaf) answers on the real Xen too.
            exit: EXIT_POWERED_OFF,
            words: "selftest pvi.withdraw=tsc_hz:1",
            ..selftest(
                "xen pvh domU: selftest, 2 vcpus, tsc_hz step 1 withdrawn",
                Accel::XenPvh { viridian: false },
                2,
                "",
                XEN_PVH_EXPECT,
            )
        },
        Case {
            // A panic ends a domU through SCHEDOP_shutdown(SHUTDOWN_crash),
            // which the dom0 reports as reason 3 (and ends QEMU with 35).
            exit: EXIT_FAILURE,
            vm_args: &[],
            expect: &[
                "panic_notify: telling the hypervisor",
                "shutdown           step 1: hypercall __HYPERVISOR_sched_op",
                "pvi-dom0: the domU shut down with reason code 3",
            ],
            proves: Some(("shutdown", Some("crash"))),
            ..panic("xen pvh domU: panic, crash reported to Xen", Accel::XenPvh { viridian: false })
        },
        Case {
            // The reboot reason, reported as reason 1; xl's on_reboot is
            // "destroy", so the domain ends and the dom0 exits 35.
            exit: EXIT_FAILURE,
            words: "reboot",
            expect: &[
                "shutdown: rebooting",
                "pvi-dom0: the domU shut down with reason code 1",
            ],
            proves: Some(("shutdown", Some("reboot"))),
            check: no_check,
            ..demo(
                "xen pvh domU: reboot, reported to Xen",
                Accel::XenPvh { viridian: false },
                &[],
            )
        },
        Case {
            // The same ELF as a 64-bit PV domU, entered through its Xen PV
            // notes: it chooses the Xen PV backend by the entry, runs its
            // PV checks through the ops, reports through its PV console
            // ring and powers off through `shutdown` (reason 0: the dom0
            // powers the machine off). Two vCPUs: the second is started
            // through VCPUOP_initialise and VCPUOP_up and sent an IPI.
            // Then the kernel's self-tests, on both vCPUs (judged by
            // XEN_PV_DOMU_EXPECT: the PVH patch line is not printed here).
            words: "pvi-pv-check selftest",
            smp: 2,
            proves: POWERS_OFF,
            check: no_check,
            ..demo(
                "xen pv domU, 2 vCPUs: the example kernel's ELF enters in ring 3",
                Accel::XenPv,
                XEN_PV_DOMU_EXPECT,
            )
        },
        Case {
            proves: POWERS_OFF,
            exit: EXIT_POWERED_OFF,
            ..selftest(
                "xen pvh domU, viridian: selftest, the chosen backend",
                Accel::XenPvh { viridian: true },
                1,
                "",
                XEN_VIRIDIAN_EXPECT,
            )
        },
        Case {
            proves: POWERS_OFF,
            // The Hyper-V backend has no console of its own here (COM1 is
            // absent): its lines reach Xen's console through port 0xE9.
            exit: EXIT_POWERED_OFF,
            words: "selftest pvi.backend=hyperv console.e9",
            check: eois_assisted,
            ..selftest(
                "xen pvh domU, viridian: selftest, pvi.backend=hyperv",
                Accel::XenPvh { viridian: true },
                1,
                "",
                XEN_VIRIDIAN_HYPERV_EXPECT,
            )
        },
        Case {
            // Hyper-V's crash MSRs under Xen's viridian: Xen records the
            // crash as the domain's shutdown reason (and logs it), and
            // keeps it when the kernel then ends. Two vCPUs: nothing answers
            // the native power-off in a PVH domU, so the domain ends only
            // once the kernel has stopped the other vCPU too (all vCPUs
            // down); with it idling, this boot hung until its timeout.
            smp: 2,
            exit: EXIT_FAILURE,
            vm_args: &[],
            words: "panic pvi.backend=hyperv console.e9",
            expect: &[
                "panic_notify       step 1: msr HV_X64_MSR_CRASH_CTL",
                "VIRIDIAN CRASH",
                "pvi-dom0: the domU shut down with reason code 3",
            ],
            ..panic(
                "xen pvh domU, viridian: panic, 2 vcpus, pvi.backend=hyperv, crash MSR",
                Accel::XenPvh { viridian: true },
            )
        },
        selftest(
            "selftest: tcg, 1 cpu",
            Accel::Tcg,
            1,
            "",
            &["signature \"TCGTCGTCGTCG\"", "backend: native"],
        ),
        selftest(
            "selftest: tcg, 2 cpus",
            Accel::Tcg,
            2,
            "",
            &["backend: native"],
        ),
        selftest("selftest: kvm, 1 cpu", Accel::Kvm, 1, "", KVM_EXPECT),
        selftest("selftest: kvm, 2 cpus", Accel::Kvm, 2, "", KVM_EXPECT),
        // Past 64 CPUs (the backends' old capacity) and past the 8 this
        // kernel once started: every CPU online, and under KVM each with a
        // kvmclock record of its own that KVM wrote.
        selftest(
            "selftest: tcg, 128 cpus",
            Accel::Tcg,
            128,
            "",
            &["smp: 128 of 128 CPUs online", "backend: native"],
        ),
        selftest(
            "selftest: kvm, 128 cpus",
            Accel::Kvm,
            128,
            "",
            &[
                "smp: 128 of 128 CPUs online",
                "ok: 128 CPU(s), each record written by the hypervisor",
                "backend: kvm",
            ],
        ),
        Case {
            // The native routines on real (virtual) hardware: IPIs, kick
            // and remote flush through the APIC, no hypercall involved.
            words: "selftest pvi.backend=native",
            ..selftest(
                "selftest: kvm, 2 cpus, pvi.backend=native",
                Accel::Kvm,
                2,
                "",
                &["pvi.backend=native: followed", "backend: native"],
            )
        },
        selftest(
            "selftest: kvm, vmware-cpuid-freq, invtsc",
            Accel::Kvm,
            1,
            ",vmware-cpuid-freq=on,+invtsc",
            KVM_EXPECT,
        ),
        demo(
            "demo: tcg, powers off",
            Accel::Tcg,
            &["tick 5:", "shutdown: powering off"],
        ),
        demo(
            "demo: kvm, powers off",
            Accel::Kvm,
            &["backend: kvm", "tick 5:", "shutdown: powering off"],
        ),
        Case {
            // A backend detection did not find is refused, and said so:
            // Xen's hypercalls would fault under KVM.
            words: "demo pvi.backend=xen",
            ..demo(
                "demo: kvm, pvi.backend=xen refused",
                Accel::Kvm,
                &[
                    "pvi.backend=xen: ignored (detection did not find it: its calls would fault)",
                    "backend: kvm",
                    "shutdown: powering off",
                ],
            )
        },
        panic("panic_notify: tcg, pvpanic", Accel::Tcg),
        panic("panic_notify: kvm, pvpanic", Accel::Kvm),
        demo(
            "demo: pvi-sim none, powers off",
            Accel::Sim("none"),
            &["tick 5:", "shutdown: powering off"],
        ),
        panic("panic_notify: pvi-sim none", Accel::Sim("none")),
        panic(
            "panic_notify: pvi-sim hyperv, crash MSR",
            Accel::Sim("hyperv"),
        ),
        demo(
            "demo: pvi-sim xen, SCHEDOP_shutdown",
            Accel::Sim("xen"),
            &[
                "tick 5:",
                "pvi-sim: the guest shut down (SCHEDOP_shutdown, reason 0)",
            ],
        ),
        selftest(
            "selftest: pvi-sim none, 2 cpus",
            Accel::Sim("none"),
            2,
            "",
            &["hypervisor bit (CPUID.1:ECX[31]): clear", "backend: native"],
        ),
        selftest(
            "selftest: pvi-sim kvm, 2 cpus",
            Accel::Sim("kvm"),
            2,
            "",
            KVM_EXPECT,
        ),
        selftest(
            "selftest: pvi-sim vmware, 4 cpus",
            Accel::Sim("vmware"),
            4,
            "",
            &[
                "chosen: vmware",
                "tsc_hz             step 1: cpuid CPUID_VMWARE_FEATURES_LEAF.eax",
                "wallclock          step 1: hypercall BDOOR_CMD_GETTIMEFULL()",
            ],
        ),
        selftest(
            "selftest: pvi-sim hyperv, 2 cpus",
            Accel::Sim("hyperv"),
            2,
            "",
            &[
                "chosen: hyperv",
                "clock_ns           step 1: shared ms_hyperv_tsc_page",
                "tsc_hz             step 1: msr HV_X64_MSR_TSC_FREQUENCY",
                "yield_to           step 1: hypercall HVCALL_NOTIFY_LONG_SPIN_WAIT",
                "eoi                step 1: shared hv_vp_assist_page via HV_X64_MSR_VP_ASSIST_PAGE",
                "send_ipi           step 1: hypercall HVCALL_SEND_IPI",
                "flush_tlb          step 1: hypercall HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE",
                "timer: step 1 (msr HV_X64_MSR_STIMER0_COUNT = deadline as ns100",
            ],
        ),
        selftest(
            "selftest: pvi-sim xen, 2 cpus",
            Accel::Sim("xen"),
            2,
            "",
            &[
                "chosen: xen",
                "clock_ns           step 1: shared vcpu_time_info.system_time",
                "console_write      step 1: shared xencons_interface",
                "  console_write      step 1",
                "steal_ns           step 1: shared vcpu_runstate_info",
                "timer: step 1 (hypercall __HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer",
            ],
        ),
        fault(
            "fault: xen, pvclock stuck odd",
            "xen",
            &["--fault", "pvclock-stuck-odd"],
            &["chosen: xen", "clock_ns step 1: Busy"],
        ),
        fault(
            "fault: xen, hypercall page empty",
            "xen",
            &["--fault", "hypercall-page-empty"],
            &["setup: hypercall page left empty step 0: Unsupported"],
        ),
        fault(
            "fault: hyperv, hypercall page empty",
            "hyperv",
            &["--fault", "hypercall-page-empty"],
            &["setup: hypercall page left empty step 0: Unsupported"],
        ),
        fault(
            "fault: xen, hypercalls unsupported",
            "xen",
            &["--fault", "hypercalls-unsupported"],
            &[
                "wallclock step 1: Unsupported",
                "yield_to step 1: Unsupported",
            ],
        ),
        fault(
            "fault: hyperv, hypercalls unsupported",
            "hyperv",
            &["--fault", "hypercalls-unsupported"],
            &["yield_to step 1: Unsupported"],
        ),
        fault(
            "fault: hyperv, reference TSC sequence 0",
            "hyperv",
            &["--fault", "tsc-page-sequence-zero"],
            &["clock_ns step 1: Unsupported"],
        ),
        fault(
            "fault: vmware, backdoor 0xffffffff",
            "vmware",
            &["--fault", "backdoor-ffffffff"],
            &["wallclock step 1: Unsupported"],
        ),
        fault(
            "fault: kvm, CPUID garbage",
            "kvm",
            &["--fault", "cpuid-garbage"],
            &["chosen: native (a hypervisor is present, but its interface is not one pvi knows)"],
        ),
        fault(
            "fault: xen, absurd max leaf",
            "xen",
            &["--fault", "absurd-max-leaf"],
            &["chosen: xen", "reported 0xffffffff, bounded to its block"],
        ),
        fault(
            "fault: xen, timer never fires",
            "xen",
            &["--fault", "timer-never-fires"],
            &[
                "no interrupt within 100 ms of the deadline: withdrawn; the native timer fires",
                "timer_oneshot step 1: Failed",
            ],
        ),
        fault(
            "fault: xen, version 3.0",
            "xen",
            &["--fault", "xen-version-3.0"],
            &[
                "xen version: 3.0",
                "timer_oneshot      native (its paravirtual steps' features are absent, or need a newer hypervisor)",
                "flush_tlb          native (its paravirtual steps' features are absent, or need a newer hypervisor)",
                "clock_ns           step 1: shared vcpu_time_info.system_time via __HYPERVISOR_memory_op",
            ],
        ),
        Case {
            // What the real Xen does with its hardware domain, taught to
            // pvi-sim: SCHEDOP_shutdown(poweroff) would halt the machine and
            // leave it on; the kernel must power off through ACPI S5.
            vm_args: &["--fault", "hardware-domain"],
            ..demo(
                "demo: pvi-sim xen as the hardware domain, powers off",
                Accel::Sim("xen"),
                &[
                    "xen: this is the hardware domain (XENFEAT_dom0)",
                    "memory map: none from the loader; 4 entries from XENMEM_memory_map",
                    "ACPI: the XSDT's signature reads [53, ff, 00, f0]",
                    "console_write      step 1 withdrawn at run time",
                    "shutdown           step 1 withdrawn at run time",
                    "tick 5:",
                    "shutdown: powering off",
                ],
            )
        },
        fault(
            // What the real Xen showed of a PVH domU, taught to pvi-sim:
            // no PIT, no CMOS RTC, and ACPI tables that say so.
            "fault: xen, no legacy devices (as a PVH domU)",
            "xen",
            &["--fault", "no-legacy-devices"],
            &["skipped: no CMOS RTC on this platform (the FADT's IAPC_BOOT_ARCH says so"],
        ),
        fault(
            // What the real Xen's Hyper-V emulation does, taught to
            // pvi-sim: no direct-mode timers, an invalid reference TSC page.
            "fault: hyperv as Xen's viridian",
            "hyperv",
            &["--fault", "viridian"],
            &[
                "timer_oneshot      native (its paravirtual steps' features are absent",
                "eoi                step 1: shared hv_vp_assist_page via HV_X64_MSR_VP_ASSIST_PAGE",
                "clock_ns step 1: Unsupported",
                "  clock_ns           step 2",
            ],
        ),
        fault(
            "fault: hyperv, timer never fires",
            "hyperv",
            &["--fault", "timer-never-fires"],
            &[
                "no interrupt within 100 ms of the deadline: withdrawn; the native timer fires",
                "timer_oneshot step 1: Failed",
            ],
        ),
        Case {
            // The platform of VMMs such as cloud-hypervisor: ACPI
            // hardware-reduced mode and no isa-debug-exit device. The
            // self-tests end by powering off through the sleep control
            // register, since nothing answers the debug-exit port.
            exit: EXIT_POWERED_OFF,
            ..fault(
                "fault: kvm, hardware-reduced ACPI, no debug-exit: selftest powers off",
                "kvm",
                &["--fault", "hardware-reduced-acpi"],
                &[
                    "power-off: hardware-reduced ACPI: sleep control register 0x3b0, SLP_TYP 5",
                    " 0 failed,",
                    "pvi-sim: the guest powered off (ACPI S5, hardware-reduced sleep control)",
                ],
            )
        },
    ]
}

fn log_path(name: &str) -> PathBuf {
    PathBuf::from(format!(
        "target/boot/{}.log",
        name.replace([' ', ':', ','], "_")
    ))
}

/// Whether a KVM hypercall returns on this host, as a step of its own.
fn probe_kvm_hypercalls(kernel: &Path, steps: &mut Vec<Step>) -> bool {
    let name = "probe: kvm hypercalls return";
    let (probe, elapsed) = crate::probe::kvm_hypercalls(kernel, &log_path(name));
    let (outcome, works) = match probe {
        Probe::Returns => {
            println!("    {name}: yes");
            (Outcome::Passed, true)
        }
        Probe::FixedUp => {
            println!("    {name}: yes, as unsupported: the instruction faulted and the SDK's fix-up resumed it, so hypercall ops fall back");
            (Outcome::Passed, true)
        }
        Probe::Hangs => {
            let why = format!(
                "a vmcall did not return in {} s (nested KVM): KVM self-tests skip the ops hypercalls serve",
                crate::probe::PROBE_TIMEOUT.as_secs()
            );
            println!("    {name}: no; {why}");
            (Outcome::Skipped(why), false)
        }
        Probe::Faults(report) => {
            let why = format!(
                "a KVM hypercall faulted in the guest ({report}): KVM self-tests skip the ops hypercalls serve"
            );
            println!("    {name}: no; {why}");
            (Outcome::Skipped(why), false)
        }
        Probe::Failed(why) => {
            println!("    {name}: FAILED ({why})");
            (Outcome::Failed, false)
        }
    };
    steps.push(Step {
        name,
        outcome,
        seconds: elapsed.as_secs_f64(),
    });
    works
}

/// Run the matrix, one step per case.
pub fn boots(steps: &mut Vec<Step>) {
    println!("\n==> boot matrix (QEMU)");
    let cases = cases();
    let fail_all = |steps: &mut Vec<Step>, why: &str| {
        println!("==> boot matrix: FAILED ({why})");
        for case in &cases {
            steps.push(Step {
                name: case.name,
                outcome: Outcome::Failed,
                seconds: 0.0,
            });
        }
    };
    if let Err(why) = qemu::provision() {
        return fail_all(steps, &why);
    }
    let kernel = match qemu::build_kernel(false).and_then(|k| qemu::build_sim().map(|_| k)) {
        Ok(k) => k,
        Err(e) => return fail_all(steps, &e),
    };
    let _ = std::fs::create_dir_all("target/boot");
    let xen = crate::xen::provision().and_then(|_| crate::dom0::provision().map(|_| ()));
    if let Err(why) = &xen {
        println!("    the real Xen could not be had: {why}");
    }
    let kvm = qemu::kvm_usable();
    let kvm_hypercalls = kvm.is_ok() && probe_kvm_hypercalls(&kernel, steps);
    let mut passed = Vec::new();
    let mut not_passed = Vec::new();
    for case in &cases {
        // Every arm below that does not pass a boot names it here.
        not_passed.push(case.name);
        if let (true, Err(why)) = (case.accel.needs_kvm(), &kvm) {
            println!("    {}: skipped: {why}", case.name);
            steps.push(Step {
                name: case.name,
                outcome: Outcome::Skipped(why.clone()),
                seconds: 0.0,
            });
            continue;
        }
        if let (true, Err(why)) = (case.accel.is_xen(), &xen) {
            // Debian's archive is one of this project's package sources:
            // without it the real-Xen boots fail rather than pass unseen.
            println!("    {}: FAILED (no Xen: {why})", case.name);
            steps.push(Step {
                name: case.name,
                outcome: Outcome::Failed,
                seconds: 0.0,
            });
            continue;
        }
        let (step, output) = boot_case(&kernel, case, kvm_hypercalls);
        if let Some(output) = output {
            not_passed.pop();
            passed.push(crate::verified::Passed {
                boot: crate::verified::Boot::Matrix(case.accel),
                proves: case.proves,
                output,
            });
        }
        steps.push(step);
    }
    // The PV dom0 boot is a step of its own (no Linux dom0, no QEMU set-up
    // of the matrix's), but what it served counts as a boot that passed.
    not_passed.push(crate::xen_pv::NAME);
    if let Some(output) = crate::xen_pv::steps(steps) {
        not_passed.pop();
        passed.push(crate::verified::Passed {
            boot: crate::verified::Boot::XenPvDom0,
            proves: None,
            output,
        });
    }
    steps.push(crate::verified::check(&passed, &not_passed));
}

/// The line a Linux dom0 prints once its own start-up is done and its
/// toolstack is about to start the domU (`dom0::INIT`).
const DOM0_UP: &str = "pvi-dom0: toolstack up";

/// How long a Linux dom0 may take to reach [`DOM0_UP`]: about 15 s under
/// TCG here, 40 s on a loaded CI machine.
const DOM0_UP_WITHIN: Duration = Duration::from_secs(150);

/// The Linux dom0's start-up as a milestone of a boot: [`DOM0_UP`] within
/// [`DOM0_UP_WITHIN`].
pub fn dom0_milestone() -> qemu::Milestone<'static> {
    qemu::Milestone {
        line: DOM0_UP,
        within: DOM0_UP_WITHIN,
    }
}

/// Boot a case; a domU boot whose Linux dom0 never reached its toolstack
/// (once in about 20 boots under TCG it hung in its own xenbus probe,
/// before any pvi code ran) is booted once more, and says so. A second
/// such hang fails the case.
fn captured_retrying_dom0(
    boot: &Boot,
    log: &Path,
    limit: u64,
    name: &str,
) -> Result<(Option<i32>, String, Duration), String> {
    retrying_dom0(boot, log, limit, name, DOM0_UP_WITHIN)
}

fn retrying_dom0(
    boot: &Boot,
    log: &Path,
    limit: u64,
    name: &str,
    within: Duration,
) -> Result<(Option<i32>, String, Duration), String> {
    let limit = Duration::from_secs(limit);
    if boot.accel.under_linux_dom0().is_none() {
        return boot.captured(log, limit);
    }
    let milestone = qemu::Milestone {
        line: DOM0_UP,
        within,
    };
    let first = boot.captured_with_milestone(log, limit, &milestone)?;
    if !first.milestone_missed {
        return Ok((first.code, first.output, first.elapsed));
    }
    println!(
        "    {name}: the Linux dom0 did not reach its toolstack within {} s (no pvi code ran); booting again",
        within.as_secs()
    );
    let second = boot.captured_with_milestone(log, limit, &milestone)?;
    let mut output = second.output;
    if second.milestone_missed {
        output.push_str(&format!(
            "\n[xtask] the Linux dom0 did not reach \"{DOM0_UP}\" within {} s, twice\n",
            within.as_secs()
        ));
    }
    Ok((second.code, output, first.elapsed + second.elapsed))
}

/// Boot one case; with a passed boot, its serial output.
fn boot_case(kernel: &Path, case: &Case, kvm_hypercalls: bool) -> (Step, Option<String>) {
    let host_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut cmdline = format!("{} host_time={host_time}", case.words);
    if case.accel == Accel::Kvm && !kvm_hypercalls {
        cmdline.push_str(" selftest.no-hypercalls");
    }
    let log = log_path(case.name);
    let boot = Boot {
        kernel,
        accel: case.accel,
        smp: case.smp,
        cpu_extra: case.cpu_extra,
        cmdline: &cmdline,
        vm_args: case.vm_args,
    };
    // A domU boot includes a Linux dom0's (about 15 s under TCG here),
    // and up to three attempts at the domU of at most 90 s each when the
    // toolstack hangs (`dom0::INIT`).
    let limit = if case.accel.under_linux_dom0().is_some() {
        360
    } else {
        120
    };
    let (outcome, seconds, passed) = match captured_retrying_dom0(&boot, &log, limit, case.name) {
        Err(e) => {
            println!("    {}: FAILED ({e})", case.name);
            (Outcome::Failed, 0.0, None)
        }
        Ok((code, output, elapsed)) => {
            let guest_output: String = output
                .lines()
                .map(crate::verified::guest_line)
                .collect::<Vec<_>>()
                .join("\n");
            let missing: Vec<&&str> = case
                .expect
                .iter()
                .chain(if case.words.starts_with("selftest") {
                    SELFTEST_EXPECT
                } else {
                    &[]
                })
                // The console check's line goes through the op alone; with
                // `console.e9` the op's own output (a COM1 that is not
                // there) cannot be seen, only the copy of the kernel's
                // other lines.
                .filter(|e| !(case.words.contains("console.e9") && e.contains("pvi-console-check")))
                // A domU's lines come as `(dN) …`, N the domain's id,
                // which a retried toolstack makes 2: compare without it.
                .filter(|e| !output.contains(**e) && !guest_output.contains(**e))
                .collect();
            let seconds = elapsed.as_secs_f64();
            // The kernel's own tally, for the line below.
            let tally = output
                .lines()
                .rev()
                .find(|l| l.contains(" passed, ") && l.contains(" skipped"))
                .map(|l| format!(" ({})", l.trim()))
                .unwrap_or_default();
            let checked = (case.check)(&output);
            if code == Some(case.exit) && missing.is_empty() && checked.is_ok() {
                println!(
                    "    {}: ok, boot to result in {seconds:.2}s{tally}",
                    case.name
                );
                (Outcome::Passed, seconds, Some(output))
            } else {
                let why = match code {
                    None => "timed out".to_string(),
                    Some(c) if c != case.exit => {
                        format!("QEMU exit status {c}, expected {}", case.exit)
                    }
                    _ if !missing.is_empty() => format!("missing {missing:?}"),
                    _ => checked.err().unwrap_or_default(),
                };
                println!(
                    "    {}: FAILED ({why}); serial log {}:\n{output}",
                    case.name,
                    log.display()
                );
                (Outcome::Failed, seconds, None)
            }
        }
    };
    let step = Step {
        name: case.name,
        outcome,
        seconds,
    };
    (step, passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_eoi_test_with_assisted_eois_passes() {
        // The real Xen's viridian, 2026-12-07.
        let xen = "(d1) test eoi                            [hyperv] ok: 10 timer interrupts in a row; of the paravirtual EOIs, 10 done by the hypervisor (no exit), 0 written (12 ms)\n";
        assert_eq!(eois_assisted(xen), Ok(()));
        // pvi-sim's Hyper-V, which never arms the flag.
        let never = "test eoi                            [hyperv] ok: 10 timer interrupts in a row; of the paravirtual EOIs, 0 done by the hypervisor (no exit), 10 written (26 ms)\n";
        assert!(eois_assisted(never).unwrap_err().contains("no EOI done"));
        let native = "test eoi                            [native] ok: 10 timer interrupts in a row, each acknowledged by the handler (9 ms)\n";
        assert!(eois_assisted(native).is_err());
        let failed = "test eoi                            [hyperv] FAILED: interrupt 2 of 10 missing: no interrupt\n";
        assert!(eois_assisted(failed).is_err());
        assert!(eois_assisted("").is_err());
    }

    #[test]
    fn ticks_100_ms_apart_pass_and_a_frozen_clock_fails() {
        let good = "tick 1: clock_ns 1435404024 (9120 us after the deadline)\n\
                    tick 2: clock_ns 1527787221 (1503 us after the deadline)\n\
                    tick 3: clock_ns 1627288854 (1005 us after the deadline)\n";
        assert_eq!(ticks_advance_100ms(good), Ok(()));
        // What the real Xen showed before the pvclock fix.
        let frozen = "tick 1: clock_ns 890816525 (0 us after the deadline)\n\
                      tick 2: clock_ns 890816525 (0 us after the deadline)\n";
        assert!(ticks_advance_100ms(frozen)
            .unwrap_err()
            .contains("tick 2 came 0 ns"));
        assert!(ticks_advance_100ms("shutdown: powering off\n").is_err());
        // One late first tick (a CI run on the real Xen) passes.
        let late_first = "tick 1: clock_ns 2754139551 (22982 us after the deadline)\n\
                          tick 2: clock_ns 2832759325 (1602 us after the deadline)\n\
                          tick 3: clock_ns 2932694484 (1537 us after the deadline)\n\
                          tick 4: clock_ns 3032384849 (1227 us after the deadline)\n\
                          tick 5: clock_ns 3132146589 (989 us after the deadline)\n";
        assert_eq!(ticks_advance_100ms(late_first), Ok(()));
        // A clock at half speed: every gap 50 ms.
        let slow = "tick 1: clock_ns 1000000000 (0 us after the deadline)\n\
                    tick 2: clock_ns 1050000000 (0 us after the deadline)\n\
                    tick 3: clock_ns 1100000000 (0 us after the deadline)\n";
        assert!(ticks_advance_100ms(slow)
            .unwrap_err()
            .contains("median 50000000"));
    }
}
