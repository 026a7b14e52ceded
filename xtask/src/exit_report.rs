//! The counted figures in `target/bench/report.md` and the chart:
//! instructions per call (TCG with icount), VM exits per call by kind
//! (pvi-sim, QEMU+KVM, and the real Xen by its trace), the claims they
//! settle, and the cost model.

use crate::chart::{Bar, Group};
use crate::exit_bench::{ExitTable, KINDS};
use crate::exit_claims::Assessment;
use crate::kernel_bench::{KernelBench, FORMS, HOT_OPS};
use std::collections::BTreeSet;

/// The backends in `table`'s keys (`<op>/<backend>/<form>`), in order.
fn backends(table: &ExitTable) -> BTreeSet<String> {
    table
        .counts
        .keys()
        .filter_map(|k| {
            let mut parts = k.split('/');
            let (_, backend, _) = (parts.next()?, parts.next()?, parts.next()?);
            Some(backend.to_string())
        })
        .collect()
}

/// The instruction counts as Markdown.
pub fn instructions_markdown(
    counted: &KernelBench,
    xen_pv: Option<&KernelBench>,
    claims: &[String],
) -> String {
    let mut md = String::from(
        "\n## Instructions per call (TCG, `-icount shift=0`: one TSC tick per retired instruction)\n\n\
         | op | raw | compile time | run time | site, unpatched | site, patched |\n|---|---|---|---|---|---|\n",
    );
    for op in HOT_OPS.iter().chain(&["eoi"]) {
        md.push_str(&format!("| `{op}` | {} |\n", counted.cells(op, &FORMS)));
    }
    if let Some(pv) = xen_pv {
        md.push_str(
            "\nThe same kernel as the real Xen 4.17's PV dom0 (TCG, `-icount shift=0`; Xen's own \
             instructions count too, if it ran during a batch): Xen PV's inline forms at patched \
             sites, and the ops through the run-time dispatch (the Xen PV backend's routines).\n\n\
             | op | Xen PV, site patched | Xen PV, run time |\n|---|---|---|\n",
        );
        for op in HOT_OPS {
            md.push_str(&format!(
                "| `{op}` | {} |\n",
                pv.cells(op, &["patched", "runtime"])
            ));
        }
    }
    md.push_str("\n| read | instructions |\n|---|---|\n");
    for (clock, n) in &counted.clocks {
        let what = match clock.as_str() {
            "backend" => "`clock_ns` through the run-time dispatch (native here: TCG is no hypervisor pvi knows)".to_string(),
            "tsc" => "the bare-metal TSC clock, called directly".to_string(),
            "pvclock-record" => "a pvclock record (KVM, Xen) the kernel filled".to_string(),
            "reftsc-record" => "a Hyper-V reference TSC page the kernel filled".to_string(),
            other => format!("{other} (the read sequence; its exits are not instructions)"),
        };
        md.push_str(&format!("| {what} | {n:.2} |\n"));
    }
    md.push('\n');
    for line in claims {
        md.push_str(&format!("- {line}\n"));
    }
    md
}

/// The exit table, the claims and the model as Markdown.
pub fn exits_markdown(table: &ExitTable, assessment: &Assessment) -> String {
    let mut md = String::from(
        "\n## VM exits per call, counted by the host\n\n\
         The fewest over the guest's repeats of one call, by kind; `most` is the most one call took.\n\n\
         | key | exits | io | mmio | msr | cpuid | hypercall | completed in user space | most | served by step | counted by |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (key, c) in &table.counts {
        let kinds: Vec<String> = c.kinds.iter().map(u64::to_string).collect();
        md.push_str(&format!(
            "| `{key}` | {} | {} | {} | {} | {} | {} |\n",
            c.all,
            kinds.join(" | "),
            c.to_vmm,
            c.most,
            c.served.as_deref().unwrap_or("—"),
            c.vmm
        ));
    }
    debug_assert_eq!(KINDS.len(), 5);
    for (label, boot) in &table.real_xen {
        let pv = boot.backend == "xen_pv";
        let (guest, counted) = if pv {
            (
                "PV domU",
                "the entries into Xen (hypercalls, emulated privileged instructions, faults) between the kernel's marker hypercalls",
            )
        } else {
            ("PVH domU", "the exits between the kernel's CPUID markers")
        };
        md.push_str(&format!(
            "\nOn the real Xen 4.17 (`{label}`: {guest}, backend {}, QEMU TCG, 4 vCPUs), \
             counted by Xen's own trace (`xentrace` in the dom0; {counted}, vCPU 0 alone on \
             its physical CPU). `rdtsc`: of the exits, the TSC reads Xen emulates; \
             `privop`: of a PV guest's entries, the privileged instructions Xen emulated.\n\n\
             | key | exits | io | mmio | msr | cpuid | hypercall | rdtsc | privop | most | served by step |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
            boot.backend
        ));
        for (key, c) in &boot.counts {
            let kinds: Vec<String> = c.kinds.iter().map(u64::to_string).collect();
            let dash = |n: Option<u64>| n.map_or("—".to_string(), |n| n.to_string());
            md.push_str(&format!(
                "| `{key}` | {} | {} | {} | {} | {} | {} |\n",
                c.all,
                kinds.join(" | "),
                dash(c.rdtsc),
                dash(c.privop),
                c.most,
                c.served.as_deref().unwrap_or("—"),
            ));
        }
        for s in &boot.skipped {
            md.push_str(&format!("\n- not measured on {label}: {s}"));
        }
        if !boot.skipped.is_empty() {
            md.push('\n');
        }
    }
    if !table.skipped.is_empty() {
        md.push_str("\nNot measured:\n\n");
        for s in &table.skipped {
            md.push_str(&format!("- {s}\n"));
        }
    }
    md.push_str("\n### The claims\n\n");
    for line in &assessment.claims {
        md.push_str(&format!("- {line}\n"));
    }
    md.push_str(&format!(
        "\n### The cost model (a model, not a measurement)\n\n\
         cycles = instructions × {} (CPI) + exits × {} + exits completed in user space × {}\n\n\
         | hypervisor | clock read: instructions, exits, cycles | cheapest emulated clock: instructions, exits (in user space), cycles | speed-up |\n|---|---|---|---|\n",
        crate::cost_model::CPI,
        crate::cost_model::IN_KERNEL_EXIT_CYCLES,
        crate::cost_model::USER_SPACE_EXTRA_CYCLES,
    ));
    for m in &assessment.models {
        let side = |s: &serde_json::Value| {
            format!(
                "{}: {:.2}, {} ({}), {:.0}",
                s["what"].as_str().unwrap_or("?"),
                s["instructions"].as_f64().unwrap_or(0.0),
                s["exits"],
                s["exits_to_user_space"],
                s["cycles"].as_f64().unwrap_or(0.0)
            )
        };
        md.push_str(&format!(
            "| {} | {} | {} | {:.1}× |\n",
            m["hypervisor"].as_str().unwrap_or("?"),
            side(&m["paravirtual"]),
            side(&m["cheapest_hardware"]),
            m["speedup"].as_f64().unwrap_or(0.0)
        ));
    }
    md
}

/// Chart groups: the counted instructions of the hot ops, then one group
/// of exits per backend and one for the emulated hardware.
pub fn chart_groups(counted: &KernelBench, table: Option<&ExitTable>) -> Vec<Group> {
    let mut groups = vec![Group {
        title: "tcg-icount: instructions per call".into(),
        bars: counted
            .ops
            .iter()
            .map(|((op, form), n)| Bar {
                label: format!("{op}, {form}"),
                value: *n,
            })
            .collect(),
    }];
    let Some(table) = table else {
        return groups;
    };
    for backend in backends(table) {
        let bars = table
            .counts
            .iter()
            .filter(|(k, _)| k.split('/').nth(1) == Some(backend.as_str()))
            .map(|(k, c)| Bar {
                label: k.split('/').next().unwrap_or(k).to_string()
                    + k.rsplit('/')
                        .next()
                        .filter(|f| f.contains("xapic"))
                        .map_or("", |_| " (xAPIC)"),
                value: c.all as f64,
            })
            .collect();
        let vmm = table
            .counts
            .iter()
            .find(|(k, _)| k.split('/').nth(1) == Some(backend.as_str()))
            .map_or("", |(_, c)| c.vmm);
        groups.push(Group {
            title: format!("{backend}: VM exits per call ({vmm})"),
            bars,
        });
    }
    groups.push(Group {
        title: "emulated hardware: VM exits per access (qemu-kvm)".into(),
        bars: table
            .counts
            .iter()
            .filter(|(k, _)| !k.contains('/') || k.starts_with("lapic_eoi/"))
            // The TSC frequency's discovery (thousands of exits) would
            // flatten the other bars; the table has it.
            .filter(|(k, _)| *k != "nothing" && *k != "tsc_discovery")
            .map(|(k, c)| Bar {
                label: k.clone(),
                value: c.all as f64,
            })
            .collect(),
    });
    groups
}
