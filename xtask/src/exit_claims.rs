//! What the exit counts and the instruction counts say about the claims
//! paravirtualization makes, hypervisor by hypervisor as the IDL maps the
//! ops: a clock read from a shared structure costs no exit where every
//! emulated timer costs at least one; a paravirtual EOI with nothing else
//! pending costs none where the local APIC's costs one; a paravirtual IPI
//! to three CPUs costs fewer exits than three ICR writes; and the cost
//! model's clock speed-up.

use crate::cost_model::{self, Side};
use crate::exit_bench::ExitTable;
use crate::kernel_bench::KernelBench;
use pvi_codegen::ir::Mechanism;
use pvi_codegen::Model;
#[cfg(test)]
use std::collections::BTreeMap;

/// The emulated timers a kernel reads without a paravirtual clock.
const EMULATED_CLOCKS: [&str; 3] = ["hpet", "pm_timer", "pit"];
/// The speed-up the model must show for a shared-structure clock.
pub const CLOCK_SPEEDUP_CLAIM: f64 = 50.0;

/// The claims, checked, and the figures the report keeps.
pub struct Assessment {
    /// One line per claim and hypervisor: `holds`, `does not hold` or
    /// `not measured here`, with the figures.
    pub claims: Vec<String>,
    /// `clock_pv_exits`, `clock_hw_exits_min`, `model_clock_speedup`.
    pub ratios: serde_json::Map<String, serde_json::Value>,
    /// The model's inputs and result per hypervisor.
    pub models: Vec<serde_json::Value>,
}

/// The hypervisors whose chain for `op` has a paravirtual step, with the
/// mechanism of its first step.
fn mapping(model: &Model, op: &str) -> Vec<(String, Mechanism)> {
    model
        .hypervisors()
        .filter_map(|hv| {
            let name = hv.name.name.clone();
            let chain = model.chains(&name).iter().find(|c| c.op == op)?;
            let first = chain.steps.first()?;
            (first.mechanism != Mechanism::Native).then(|| (name, first.mechanism.clone()))
        })
        .collect()
}

/// Which record-read the instruction count of a shared clock structure
/// comes from (the kernel's bench reads records it fills itself).
fn record_of(structure: &str) -> Option<&'static str> {
    match structure {
        "pvclock_vcpu_time_info" | "vcpu_time_info" => Some("pvclock-record"),
        "ms_hyperv_tsc_page" => Some("reftsc-record"),
        _ => None,
    }
}

/// Whether every paravirtual step of the op's chain was withdrawn before
/// it was counted, so that the count is the native routine's.
fn withdrawn(c: &crate::exit_bench::ExitCount) -> bool {
    c.served.as_deref() == Some("native")
}

fn verdict(holds: bool) -> &'static str {
    if holds {
        "holds"
    } else {
        "does not hold"
    }
}

/// Check the claims against one run's exit table and counting boot, as
/// `idl/` maps the ops.
pub fn assess(table: &ExitTable, counted: &KernelBench) -> Result<Assessment, String> {
    Ok(assess_with(&crate::hypervisors::model()?, table, counted))
}

/// [`assess`] against `model`.
fn assess_with(model: &Model, table: &ExitTable, counted: &KernelBench) -> Assessment {
    let mut claims = Vec::new();
    let mut ratios = serde_json::Map::new();
    let mut models = Vec::new();
    let not_measured = |key: &str| {
        let on_real_xen = table
            .real_xen
            .iter()
            .find(|(_, boot)| boot.counts.contains_key(key));
        match on_real_xen {
            // Only the real Xen runs it (a PV guest): its claim is there.
            Some((label, _)) => {
                format!("not measured here (no VMM of ours runs it; see its claim on {label})")
            }
            None => {
                let why = table
                    .skipped
                    .iter()
                    .find(|s| s.contains(&format!("key={key} ")))
                    .map_or("no VMM here runs it", String::as_str);
                format!("not measured here ({why})")
            }
        }
    };
    // Every emulated clock exits at least once.
    let mut hw_min: Option<u64> = None;
    let mut hardware = Vec::new();
    for clock in EMULATED_CLOCKS {
        match table.counts.get(clock) {
            Some(c) => {
                hw_min = Some(hw_min.map_or(c.all, |m| m.min(c.all)));
                claims.push(format!(
                    "{}: emulated clock {clock}: {} exits per read (≥1)",
                    verdict(c.all >= 1),
                    c.all
                ));
                if let Some(&i) = counted.clocks.get(clock) {
                    hardware.push(Side::new(clock, i, c));
                }
            }
            None => claims.push(format!("emulated clock {clock}: {}", not_measured(clock))),
        }
    }
    ratios.insert("clock_hw_exits_min".into(), hw_min.into());
    // A shared-structure clock costs no exit; the model's speed-up.
    let dispatch = match (counted.clocks.get("backend"), counted.clocks.get("tsc")) {
        (Some(b), Some(t)) => (b - t).max(0.0),
        _ => 0.0,
    };
    let mut pv_max: Option<u64> = None;
    let mut speedup_min: Option<f64> = None;
    for (hv, first) in mapping(model, "clock_ns") {
        let Mechanism::Shared { structure, .. } = first else {
            continue;
        };
        let key = format!("clock_ns/{hv}/runtime");
        let Some(c) = table.counts.get(&key) else {
            claims.push(format!(
                "{hv} clock_ns (shared {structure}): {}",
                not_measured(&key)
            ));
            continue;
        };
        pv_max = Some(pv_max.map_or(c.all, |m| m.max(c.all)));
        claims.push(format!(
            "{}: {hv} clock_ns (shared {structure}): {} exits per read (0)",
            verdict(c.all == 0),
            c.all
        ));
        let read = record_of(&structure).and_then(|r| counted.clocks.get(r).map(|i| (r, *i)));
        let Some((record, instructions)) = read else {
            claims.push(format!(
                "{hv} clock model: not computed (no instruction count for reading {structure})"
            ));
            continue;
        };
        let pv = Side::new(&key, instructions + dispatch, c);
        match cost_model::speedup(&pv, &hardware) {
            Some((speedup, cheapest)) => {
                speedup_min = Some(speedup_min.map_or(speedup, |m: f64| m.min(speedup)));
                claims.push(format!(
                    "{}: {hv} clock model speed-up {speedup:.1}× over {} (≥{CLOCK_SPEEDUP_CLAIM}×; a model: {:.0} against {:.0} cycles)",
                    verdict(speedup >= CLOCK_SPEEDUP_CLAIM),
                    cheapest.what,
                    pv.cycles,
                    cheapest.cycles
                ));
                models.push(serde_json::json!({
                    "hypervisor": hv,
                    "speedup": speedup,
                    "paravirtual": pv.json(),
                    "paravirtual_instructions_from": format!("{record} + run-time dispatch ({dispatch:.2})"),
                    "cheapest_hardware": cheapest.json(),
                    "hardware": hardware.iter().map(Side::json).collect::<Vec<_>>(),
                }));
            }
            None => claims.push(format!(
                "{hv} clock model: not computed (no emulated clock was both counted and measured)"
            )),
        }
    }
    ratios.insert("clock_pv_exits".into(), pv_max.into());
    ratios.insert("model_clock_speedup".into(), speedup_min.into());
    lapic_claims(model, table, &mut claims, &not_measured);
    real_xen_claims(model, table, &mut claims);
    Assessment {
        claims,
        ratios,
        models,
    }
}

/// End of interrupt and IPIs, paravirtual against the local APIC's.
fn lapic_claims(
    model: &Model,
    table: &ExitTable,
    claims: &mut Vec<String>,
    not_measured: &dyn Fn(&str) -> String,
) {
    let apic_eois: Vec<(&String, u64)> = table
        .counts
        .iter()
        .filter(|(k, _)| k.starts_with("lapic_eoi/"))
        .map(|(k, c)| (k, c.all))
        .collect();
    for (key, all) in &apic_eois {
        claims.push(format!("{}: {key}: {all} exits (≥1)", verdict(*all >= 1)));
    }
    for (hv, first) in mapping(model, "eoi") {
        let key = format!("eoi/{hv}/runtime");
        match table.counts.get(&key) {
            Some(c) if withdrawn(c) => claims.push(format!(
                "{hv} eoi: not measured here (every paravirtual step was withdrawn; {} exits, native)",
                c.all
            )),
            Some(c) => claims.push(format!(
                "{}: {hv} eoi with nothing else pending, by {}: {} exits (0); exit-free EOIs KVM saw: {}",
                verdict(c.all == 0),
                first.keyword(),
                c.all,
                c.pv_eoi
            )),
            None => claims.push(format!("{hv} eoi: {}", not_measured(&key))),
        }
    }
    let icr = table.all("send_ipi/native/static");
    for (hv, first) in mapping(model, "send_ipi") {
        let key = format!("send_ipi/{hv}/runtime");
        match (table.counts.get(&key), icr) {
            (Some(c), _) if withdrawn(c) => claims.push(format!(
                "{hv} send_ipi: not measured here (its {} step was withdrawn: the first call took {} exits, then the native routine {})",
                first.keyword(),
                c.most,
                c.all
            )),
            (Some(c), Some(icr)) => claims.push(format!(
                "{}: {hv} send_ipi to 3 CPUs, by {}: {} exits against {icr} for 3 ICR writes (fewer)",
                verdict(c.all < icr),
                first.keyword(),
                c.all
            )),
            _ => claims.push(format!("{hv} send_ipi: {}", not_measured(&key))),
        }
    }
}

/// The same claims on the real Xen 4.17, each boot against its own local
/// APIC and native rows: the paravirtual EOI, the shared-structure clock
/// (with the `rdtsc` Xen emulates here named), and the IPI. A PV guest
/// has neither a local APIC nor a native lowering that runs: its boot is
/// judged against the rows of the PVH `xen` boot, on the same Xen, and
/// says so.
fn real_xen_claims(model: &Model, table: &ExitTable, claims: &mut Vec<String>) {
    for (label, boot) in &table.real_xen {
        let hv = boot.backend.as_str();
        let counts = &boot.counts;
        let on = format!("on {label} (xen-4.17, counted by xentrace)");
        // A hardware row: this boot's own, else the PVH boot's.
        let own_or_pvh = |key: &str| match counts.get(key) {
            Some(c) => Some((c, "there")),
            None => table
                .real_xen
                .get("xen")
                .and_then(|b| b.counts.get(key))
                .map(|c| (c, "in the PVH boot `xen` (this guest has none)")),
        };
        let first = |op: &str| {
            mapping(model, op)
                .into_iter()
                .find(|(name, _)| name == hv)
                .map(|(_, m)| m)
        };
        if let (Some(m), Some(c), Some((apic, where_))) = (
            first("eoi"),
            counts.get(&format!("eoi/{hv}/runtime")),
            own_or_pvh("lapic_eoi/x2apic"),
        ) {
            claims.push(if withdrawn(c) {
                format!("{hv} eoi {on}: not measured (every paravirtual step was withdrawn)")
            } else {
                format!(
                    "{}: {hv} eoi with nothing else pending {on}, by {}: {} exits (0) against {} for the local APIC's EOI {where_} (≥1)",
                    verdict(c.all == 0 && apic.all >= 1),
                    m.keyword(),
                    c.all,
                    apic.all
                )
            });
        }
        if let (Some(Mechanism::Shared { structure, .. }), Some(c)) = (
            first("clock_ns"),
            counts.get(&format!("clock_ns/{hv}/runtime")),
        ) {
            let rdtsc = c.rdtsc.unwrap_or(0);
            let privop = c.privop.unwrap_or(0);
            let bare_tsc = counts.get("tsc").map_or(0, |t| t.privop.unwrap_or(0));
            claims.push(if c.served.as_deref() != Some("1") {
                format!(
                    "{hv} clock_ns {on}: not measured (served by step {}, not the shared {structure})",
                    c.served.as_deref().unwrap_or("?")
                )
            } else if privop > 0 {
                // Xen's PV trace names no instruction: a bare rdtsc's count
                // on the same boot says whether it is the one.
                format!(
                    "{}: {hv} clock_ns (shared {structure}) {on}: {} entries into Xen per read (0), of them {privop} a privileged instruction Xen emulated (a bare rdtsc costs {bare_tsc} such here: Xen emulates the TSC where the CPU announces no invariant TSC, as QEMU's TCG CPU here, unless the domain's tsc_mode is native)",
                    verdict(c.all == 0),
                    c.all,
                )
            } else {
                format!(
                    "{}: {hv} clock_ns (shared {structure}) {on}: {} exits per read (0){}",
                    verdict(c.all == 0),
                    c.all,
                    match (rdtsc, c.all == rdtsc) {
                        (0, _) => String::new(),
                        (_, true) => format!(", of them {rdtsc} an rdtsc Xen emulates (Xen emulates the TSC where the CPU announces no invariant TSC, as QEMU's TCG CPU here, unless the domain's tsc_mode is native; the record read makes no other exit)"),
                        (_, false) => format!(", of them {rdtsc} an rdtsc Xen emulates (Xen emulates the TSC where the CPU announces no invariant TSC, as QEMU's TCG CPU here, unless the domain's tsc_mode is native)"),
                    }
                )
            });
        }
        if let (Some(m), Some(c), Some((icr, where_))) = (
            first("send_ipi"),
            counts.get(&format!("send_ipi/{hv}/runtime")),
            own_or_pvh("send_ipi/native/static"),
        ) {
            claims.push(if withdrawn(c) {
                format!("{hv} send_ipi {on}: not measured (its {} step was withdrawn; {} exits, native)", m.keyword(), c.all)
            } else {
                format!(
                    "{}: {hv} send_ipi to 3 CPUs {on}, by {}: {} exits against {} for 3 ICR writes {where_} (fewer)",
                    verdict(c.all < icr.all),
                    m.keyword(),
                    c.all,
                    icr.all
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit_bench::parse;

    fn model() -> Model {
        let idl = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../idl");
        let (_, model) = pvi_codegen::check_paths(&[idl]).unwrap();
        model.unwrap()
    }

    /// Exit lines as the kernel prints them: `key all to_vmm pv_eoi
    /// served`.
    fn table(rows: &[(&str, u64, u64, &str)]) -> ExitTable {
        let mut serial = String::new();
        for (key, all, to_vmm, served) in rows {
            serial.push_str(&format!(
                "exits key={key} all={all} io={all} mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm={to_vmm} pv_eoi=0 most={all}\n"
            ));
            if !served.is_empty() {
                serial.push_str(&format!("exits served key={key} step={served}\n"));
            }
        }
        ExitTable {
            counts: parse("test", &serial).counts,
            skipped: vec!["qemu-kvm: key=clock_ns/kvm/runtime skipped: because".into()],
            real_xen: BTreeMap::new(),
        }
    }

    /// What the real Xen 4.17 counted (2026-12-07): the Hyper-V backend on
    /// its viridian, and the Xen backend, whose clock read costs the
    /// `rdtsc` Xen emulates here.
    #[test]
    fn the_real_xen_is_judged_against_its_own_apic() {
        let viridian = parse(
            "xen-4.17",
            "exits: per op, between markers for the hypervisor's trace (backend hyperv)\n\
             exits key=eoi/hyperv/runtime all=0 io=0 mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=0 rdtsc=0\n\
             exits served key=eoi/hyperv/runtime step=1\n\
             exits key=lapic_eoi/x2apic all=1 io=0 mmio=0 msr=1 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=2 rdtsc=0\n\
             exits key=send_ipi/hyperv/runtime all=3 io=0 mmio=0 msr=3 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=3 rdtsc=0\n\
             exits served key=send_ipi/hyperv/runtime step=native\n\
             exits key=send_ipi/native/static all=3 io=0 mmio=0 msr=3 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=3 rdtsc=0\n\
             exits key=clock_ns/hyperv/runtime all=1 io=0 mmio=0 msr=1 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=1 rdtsc=0\n\
             exits served key=clock_ns/hyperv/runtime step=2\n",
        );
        let pv = parse(
            "xen-4.17",
            "exits: per op, between markers for the hypervisor's trace (backend xen_pv)\n\
             exits key=clock_ns/xen_pv/runtime all=1 io=0 mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=1 rdtsc=0 privop=1\n\
             exits served key=clock_ns/xen_pv/runtime step=1\n\
             exits key=tsc all=1 io=0 mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=1 rdtsc=0 privop=1\n\
             exits key=eoi/xen_pv/runtime all=0 io=0 mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=0 rdtsc=0 privop=0\n\
             exits served key=eoi/xen_pv/runtime step=1\n\
             exits key=send_ipi/xen_pv/runtime all=1 io=0 mmio=0 msr=0 cpuid=0 hypercall=1 to_vmm=0 pv_eoi=0 most=1 rdtsc=0 privop=0\n\
             exits served key=send_ipi/xen_pv/runtime step=1\n",
        );
        let xen_with_apic = format!(
            "{}exits key=lapic_eoi/x2apic all=1 io=0 mmio=0 msr=1 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=1 rdtsc=0\n\
             exits key=send_ipi/native/static all=3 io=0 mmio=0 msr=3 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=3 rdtsc=0\n",
            "exits: per op, between markers for the hypervisor's trace (backend xen)\n\
             exits key=clock_ns/xen/runtime all=1 io=0 mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=1 rdtsc=1\n\
             exits served key=clock_ns/xen/runtime step=1\n"
        );
        let xen = parse("xen-4.17", &xen_with_apic);
        let mut t = table(&[]);
        t.real_xen.insert("xen-viridian", viridian);
        t.real_xen.insert("xen", xen);
        t.real_xen.insert("xen-pv", pv);
        let a = assess_with(&model(), &t, &counted());
        let has = |text: &str| a.claims.iter().any(|c| c.contains(text));
        assert!(
            has("holds: hyperv eoi with nothing else pending on xen-viridian (xen-4.17, counted by xentrace), by shared: 0 exits (0) against 1"),
            "{:#?}",
            a.claims
        );
        assert!(has("hyperv send_ipi on xen-viridian (xen-4.17, counted by xentrace): not measured (its hypercall step was withdrawn"));
        assert!(has("hyperv clock_ns on xen-viridian (xen-4.17, counted by xentrace): not measured (served by step 2, not the shared ms_hyperv_tsc_page)"));
        assert!(has("does not hold: xen clock_ns (shared vcpu_time_info) on xen (xen-4.17, counted by xentrace): 1 exits per read (0), of them 1 an rdtsc Xen emulates"));
        // The PV guest against the PVH boot's local APIC, and its clock's
        // entry named by what the trace can say.
        assert!(has("holds: xen_pv eoi with nothing else pending on xen-pv (xen-4.17, counted by xentrace), by routine: 0 exits (0) against 1 for the local APIC's EOI in the PVH boot `xen` (this guest has none)"), "{:#?}", a.claims);
        assert!(has("holds: xen_pv send_ipi to 3 CPUs on xen-pv (xen-4.17, counted by xentrace), by routine: 1 exits against 3 for 3 ICR writes in the PVH boot `xen`"));
        assert!(has(
            "xen_pv send_ipi: not measured here (no VMM of ours runs it; see its claim on xen-pv)"
        ));
        assert!(has("does not hold: xen_pv clock_ns (shared vcpu_time_info) on xen-pv (xen-4.17, counted by xentrace): 1 entries into Xen per read (0), of them 1 a privileged instruction Xen emulated (a bare rdtsc costs 1 such here"));
    }

    fn counted() -> KernelBench {
        crate::kernel_bench::parse(
            "tcg-icount",
            "bench clock=backend name=native ticks=38.00\n\
             bench clock=tsc ticks=39.01\n\
             bench clock=pvclock-record ticks=65.01\n\
             bench clock=reftsc-record ticks=32.01\n\
             bench clock=hpet ticks=2.00\n\
             bench clock=pm_timer ticks=3.01\n\
             bench clock=pit ticks=12.01\n",
        )
    }

    #[test]
    fn claims_follow_the_idl_and_say_what_was_not_measured() {
        let t = table(&[
            ("clock_ns/xen/runtime", 0, 0, "1"),
            ("clock_ns/hyperv/runtime", 1, 1, "1"),
            ("hpet", 1, 1, ""),
            ("pm_timer", 1, 1, ""),
            ("pit", 3, 0, ""),
            ("lapic_eoi/x2apic", 1, 0, ""),
            ("eoi/kvm/runtime", 1, 0, "1"),
            ("eoi/hyperv/runtime", 0, 0, "native"),
            ("send_ipi/native/static", 3, 0, ""),
            ("send_ipi/hyperv/runtime", 1, 1, "1"),
            ("send_ipi/kvm/runtime", 3, 0, "native"),
        ]);
        let a = assess_with(&model(), &t, &counted());
        let has = |text: &str| a.claims.iter().any(|c| c.contains(text));
        assert!(
            has("holds: xen clock_ns (shared vcpu_time_info): 0 exits"),
            "{:#?}",
            a.claims
        );
        assert!(has(
            "does not hold: hyperv clock_ns (shared ms_hyperv_tsc_page): 1 exits"
        ));
        assert!(has("kvm clock_ns (shared pvclock_vcpu_time_info): not measured here (qemu-kvm: key=clock_ns/kvm/runtime skipped: because)"));
        assert!(
            !a.claims.iter().any(|c| c.contains("vmware clock_ns")),
            "VMware maps no clock"
        );
        assert!(has("holds: emulated clock pit: 3 exits"));
        assert!(has(
            "does not hold: kvm eoi with nothing else pending, by shared: 1 exits"
        ));
        assert!(has(
            "hyperv eoi: not measured here (every paravirtual step was withdrawn"
        ));
        assert!(has(
            "holds: hyperv send_ipi to 3 CPUs, by hypercall: 1 exits against 3"
        ));
        assert!(has(
            "kvm send_ipi: not measured here (its hypercall step was withdrawn"
        ));
        assert_eq!(a.ratios["clock_pv_exits"], 1);
        assert_eq!(a.ratios["clock_hw_exits_min"], 1);
    }

    #[test]
    fn the_model_uses_the_record_read_and_the_cheapest_emulated_clock() {
        let t = table(&[
            ("clock_ns/xen/runtime", 0, 0, "1"),
            ("hpet", 1, 1, ""),
            ("pm_timer", 1, 1, ""),
            ("pit", 3, 0, ""),
        ]);
        let a = assess_with(&model(), &t, &counted());
        // The dispatch (38) costs no more than the direct call (39).
        let pit = 12.01 + 3.0 * cost_model::IN_KERNEL_EXIT_CYCLES;
        let speedup = a.ratios["model_clock_speedup"].as_f64().unwrap();
        assert!((speedup - pit / 65.01).abs() < 1e-9, "{speedup}");
        assert_eq!(a.models.len(), 1);
        assert_eq!(a.models[0]["cheapest_hardware"]["what"], "pit");
        assert!(a
            .claims
            .iter()
            .any(|c| c.starts_with("holds: xen clock model speed-up 70.7×")));
    }
}
