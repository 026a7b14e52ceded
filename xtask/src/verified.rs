//! The book's "Verified where" page: for every paravirtual step of every
//! hypervisor's mapping, the most convincing place the boot matrix saw it
//! answer a call. The kernel's report ends with the steps that served
//! each op (`served`); a boot that passed contributes them, graded by
//! where it ran: the real hypervisor, someone else's emulation of its
//! interface, or only pvi-sim, this project's own reading of the
//! specification. `cargo xtask test` renders the page from the run and
//! fails when the checked-in page says something else.

use crate::qemu::Accel;

/// Which boot an output came from: a matrix case, or the step that boots
/// the kernel as the real Xen's PV dom0 (`crate::xen_pv`), which needs no
/// QEMU set-up of the matrix's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// A case of the boot matrix, by how it ran.
    Matrix(Accel),
    /// The example kernel as Xen 4.17's PV dom0.
    XenPvDom0,
}
use crate::steps::{Outcome, Step};
use pvi_codegen::ir::Mechanism;
use pvi_codegen::Model;
use std::collections::BTreeMap;

/// Where the page lives, and where a run writes its own.
pub const PAGE: &str = "book/src/verified-where.md";
pub const RENDERED: &str = "target/verified-where.md";

/// How convincing a sighting is; later is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// pvi-sim only.
    Sim,
    /// Another project's implementation of the interface.
    Emulation,
    /// The hypervisor itself.
    Real,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Sim => "pvi-sim",
            Level::Emulation => "emulation",
            Level::Real => "real",
        }
    }
}

/// One step seen answering: `hypervisor`'s mapping of `op`, step `step`
/// (from 1), in a boot at `venue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    pub hypervisor: String,
    pub op: String,
    pub step: usize,
    pub level: Level,
    pub venue: &'static str,
}

/// Where a boot (`boot`) whose kernel chose `backend` ran that
/// backend's interface, if anywhere paravirtual.
fn venue(boot: Boot, backend: &str) -> Option<(Level, &'static str)> {
    let Boot::Matrix(accel) = boot else {
        return (backend == "xen_pv").then_some((Level::Real, "Xen 4.17, PV dom0"));
    };
    Some(match (accel, backend) {
        (Accel::Sim(_), _) => (Level::Sim, "pvi-sim"),
        (Accel::XenDom0, "xen") => (Level::Real, "Xen 4.17, PVH dom0"),
        (Accel::XenPvh { .. }, "xen") => (Level::Real, "Xen 4.17, PVH domU"),
        (Accel::XenPv, "xen_pv") => (Level::Real, "Xen 4.17, PV domU"),
        (Accel::XenPvh { viridian: true }, "hyperv") => (Level::Emulation, "Xen 4.17's viridian"),
        (Accel::Kvm, "kvm") => (Level::Real, "KVM (this host's, nested)"),
        (Accel::Kvm, "vmware") => (Level::Emulation, "QEMU's VMware interface"),
        (Accel::Kvm, "hyperv") => (Level::Emulation, "KVM's Hyper-V emulation"),
        _ => return None,
    })
}

/// A guest line without the `(dN) ` Xen puts before a domU's lines.
pub fn guest_line(line: &str) -> &str {
    match line.strip_prefix("(d") {
        Some(rest) => match rest.find(") ") {
            Some(end) if rest[..end].bytes().all(|b| b.is_ascii_digit()) => &rest[end + 2..],
            _ => line,
        },
        None => line,
    }
}

/// The step of `hypervisor`'s mapping of `op` whose guard is
/// `PARAM == variant` (Xen's `shutdown` steps, one per reason).
fn guarded_step(model: &Model, hypervisor: &str, op: &str, variant: &str) -> Option<usize> {
    model
        .chain(hypervisor, op)?
        .steps
        .iter()
        .find(|s| s.guard.as_ref().is_some_and(|g| g.variant == variant))
        .map(|s| s.number)
}

/// What a passed boot's serial `output` shows: the steps its kernel's
/// `served` report lists; and, for an op that ends a run and so never
/// returns to be counted (`shutdown`, `panic_notify`), the step the boot
/// `proves`: the case's expectations (the hypervisor's own report of the
/// shutdown reason, QEMU's exit status) showed that op did its work. The
/// step is the one for the given variant of the op's guard (Xen's
/// `shutdown` has one per reason), else the planned one; none when the
/// boot report shows the op native or its step withdrawn.
pub fn sightings(
    model: &Model,
    output: &str,
    boot: Boot,
    proves: Option<(&str, Option<&str>)>,
) -> Vec<Sighting> {
    let lines: Vec<&str> = output.lines().map(guest_line).collect();
    let Some(backend) = lines
        .iter()
        .find_map(|l| l.strip_prefix("backend: "))
        .map(str::trim)
    else {
        return Vec::new();
    };
    let Some((level, venue)) = venue(boot, backend) else {
        return Vec::new();
    };
    let seen = |op: &str, step: usize| Sighting {
        hypervisor: backend.to_string(),
        op: op.to_string(),
        step,
        level,
        venue,
    };
    let mut out = Vec::new();
    // The last report: the served steps only accumulate, and a run that
    // reports twice (the Xen PV entry's checks, then its self-tests) has
    // served more by the end.
    let last = lines
        .iter()
        .rposition(|l| l.starts_with("served ("))
        .unwrap_or(lines.len());
    let served = lines
        .iter()
        .skip(last + 1)
        .take_while(|l| l.starts_with("  "));
    for line in served {
        let mut words = line.split_whitespace();
        let Some(op) = words.next() else { continue };
        let rest: String = words.collect::<Vec<_>>().join(" ");
        for part in rest.split(", ") {
            if let Some(step) = part.strip_prefix("step ").and_then(|n| n.parse().ok()) {
                out.push(seen(op, step));
            }
        }
    }
    // A withdrawn or native plan line does not parse as "step N:".
    let planned = |op: &str| -> Option<usize> {
        lines.iter().find_map(|l| {
            let rest = l.strip_prefix("  ")?.strip_prefix(op)?.trim_start();
            rest.strip_prefix("step ")?.split(':').next()?.parse().ok()
        })
    };
    if let Some((op, variant)) = proves {
        if let Some(planned) = planned(op) {
            let step = variant
                .and_then(|v| guarded_step(model, backend, op, v))
                .unwrap_or(planned);
            out.push(seen(op, step));
        }
    }
    out
}

/// One hypervisor's mapping of one op: its paravirtual steps' texts.
struct Mapping {
    hypervisor: String,
    steps: Vec<String>,
}

fn mappings(model: &Model) -> BTreeMap<String, Vec<Mapping>> {
    let mut by_op: BTreeMap<String, Vec<Mapping>> = BTreeMap::new();
    for hv in model.hypervisors() {
        for chain in model.chains(&hv.name.name) {
            let steps: Vec<String> = chain
                .steps
                .iter()
                .filter(|s| s.mechanism != Mechanism::Native)
                .map(|s| s.text.clone())
                .collect();
            if steps.is_empty() {
                continue;
            }
            by_op.entry(chain.op.clone()).or_default().push(Mapping {
                hypervisor: hv.name.name.clone(),
                steps,
            });
        }
    }
    by_op
}

/// The page, from the IDL's mappings and what the matrix saw.
pub fn render(model: &Model, seen: &[Sighting]) -> String {
    let by_op = mappings(model);
    let hypervisors: Vec<(String, String)> = model
        .hypervisors()
        .map(|h| {
            (
                h.name.name.clone(),
                String::from_utf8_lossy(&h.display.value).into_owned(),
            )
        })
        .collect();
    let best = |hv: &str, op: &str, step: usize| {
        seen.iter()
            .filter(|s| s.hypervisor == hv && s.op == op && s.step == step)
            .map(|s| s.level)
            .max()
    };
    let mut page = String::from(
        "# Verified where\n\n\
         <!-- Made by `cargo xtask test` from its boot matrix; every run makes it\n\
         again and fails if this page says otherwise. Do not edit. -->\n\n\
         For each paravirtual step of each hypervisor's mapping (the IDL's\n\
         `map` blocks; the native end of every chain is left out), the most\n\
         convincing place `cargo xtask test`'s boot matrix saw it answer a call:\n\n\
         - **real**: the hypervisor itself: this host's KVM (nested), or Xen\n  \
         4.17 (Debian's build) under QEMU TCG, as its PVH dom0, a PVH domU,\n  \
         its PV dom0 or a PV domU;\n\
         - **emulation**: someone else's implementation of the interface: Xen's\n  \
         Hyper-V emulation (viridian), QEMU's VMware CPUID leaves and backdoor;\n\
         - **pvi-sim**: only pvi-sim, this project's own reading of the\n  \
         specification, which can share a misreading with the backend;\n\
         - **not run**: no boot of the matrix reached it.\n\n\
         A step answered when it returned a result to its op (the kernel's\n\
         `served` report at the end of a run); a `shutdown` or `panic_notify`\n\
         step, which does not return, when the boot ended the way that step\n\
         ends it. Only boots that passed count. [The real Xen](real-xen.md)\n\
         says why some Hyper-V steps are not run under viridian.\n\n",
    );
    page.push_str("| op |");
    for (_, display) in &hypervisors {
        page.push_str(&format!(" {display} |"));
    }
    page.push_str("\n|---|");
    for _ in &hypervisors {
        page.push_str("---|");
    }
    page.push('\n');
    let ops: Vec<String> = model.ops().map(|o| o.op.name.name.clone()).collect();
    for op in ops.iter().filter(|op| by_op.contains_key(*op)) {
        page.push_str(&format!("| `{op}` |"));
        for (hv, _) in &hypervisors {
            let cell = by_op[op]
                .iter()
                .find(|m| &m.hypervisor == hv)
                .map(|m| {
                    (1..=m.steps.len())
                        .map(|n| {
                            let level = best(hv, op, n).map_or("not run", Level::word);
                            format!("{n}: {level}")
                        })
                        .collect::<Vec<_>>()
                        .join("<br>")
                })
                .unwrap_or_else(|| "native".to_string());
            page.push_str(&format!(" {cell} |"));
        }
        page.push('\n');
    }
    page.push_str("\n## Each step, and the boots it answered in\n");
    for (hv, display) in &hypervisors {
        page.push_str(&format!(
            "\n### {display}\n\n| op | step | mechanism | answered in |\n|---|---|---|---|\n"
        ));
        for op in &ops {
            let Some(m) = by_op
                .get(op)
                .and_then(|ms| ms.iter().find(|m| &m.hypervisor == hv))
            else {
                continue;
            };
            for (i, text) in m.steps.iter().enumerate() {
                let mut venues: Vec<&str> = seen
                    .iter()
                    .filter(|s| &s.hypervisor == hv && &s.op == op && s.step == i + 1)
                    .map(|s| s.venue)
                    .collect();
                venues.sort();
                venues.dedup();
                let venues = if venues.is_empty() {
                    "not run".to_string()
                } else {
                    venues.join("; ")
                };
                page.push_str(&format!(
                    "| `{op}` | {} | `{}` | {venues} |\n",
                    i + 1,
                    text.replace('|', "\\|")
                ));
            }
        }
    }
    page
}

/// A boot that passed: how it ran, how it ended, its serial output.
pub struct Passed {
    pub boot: Boot,
    /// The op (and guard variant) whose work the case's expectations
    /// proved, if it ends the run.
    pub proves: Option<(&'static str, Option<&'static str>)>,
    pub output: String,
}

/// The matrix's last step: render the page from what the `passed` boots
/// show, write it to [`RENDERED`], and compare it with [`PAGE`].
/// `not_run` names the boots that did not pass: when the page differs and
/// some did not, the difference may be theirs, and the step is skipped
/// with that reason instead of failed.
pub fn check(passed: &[Passed], not_run: &[&str]) -> Step {
    let name = "book: the Verified where table is what the matrix saw";
    println!("\n==> {name}");
    let step = |outcome| Step {
        name,
        outcome,
        seconds: 0.0,
    };
    let model = match pvi_codegen::check_paths(&["idl".into()]) {
        Ok((_, Ok(model))) => model,
        _ => {
            println!("    FAILED: the IDL does not check (see `cargo xtask codegen`)");
            return step(Outcome::Failed);
        }
    };
    let seen: Vec<Sighting> = passed
        .iter()
        .flat_map(|b| sightings(&model, &b.output, b.boot, b.proves))
        .collect();
    let page = render(&model, &seen);
    if let Err(e) = std::fs::write(RENDERED, &page) {
        println!("    FAILED: writing {RENDERED}: {e}");
        return step(Outcome::Failed);
    }
    let current = std::fs::read_to_string(PAGE).unwrap_or_default();
    if current == page {
        println!("    ok: {PAGE} holds for this run");
        return step(Outcome::Passed);
    }
    let changed: Vec<String> = page
        .lines()
        .filter(|l| !current.lines().any(|c| c == *l))
        .map(|l| format!("      + {l}"))
        .chain(
            current
                .lines()
                .filter(|c| !page.lines().any(|l| l == *c))
                .map(|c| format!("      - {c}")),
        )
        .collect();
    println!("    {PAGE} differs from this run's ({RENDERED}):");
    println!("{}", changed.join("\n"));
    if !not_run.is_empty() {
        let why = format!(
            "{} boot(s) did not pass ({}), so this run cannot tell",
            not_run.len(),
            not_run.join(", ")
        );
        println!("    skipped: {why}");
        return step(Outcome::Skipped(why));
    }
    println!("    FAILED: if the change is meant, cp {RENDERED} {PAGE}");
    step(Outcome::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMU: &str = "\
(d1) backend: xen
(d1)   clock_ns           step 1: shared vcpu_time_info.system_time via __HYPERVISOR_memory_op
(d1)   shutdown           step 1: hypercall __HYPERVISOR_sched_op(SCHEDOP_shutdown, ...) when reason == poweroff
(d1) served (the steps that answered each op's calls):
(d1)   clock_ns           step 1
(d1)   console_write      step 1, native
(d1) 23 passed, 0 failed, 4 skipped
pvi-dom0: the domU shut down with reason code 0
";

    fn model() -> Model {
        let idl = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../idl");
        let (_, model) = pvi_codegen::check_paths(&[idl]).unwrap();
        model.unwrap()
    }

    #[test]
    fn a_domu_shows_its_served_steps_and_its_power_off() {
        let seen = sightings(
            &model(),
            DOMU,
            Boot::Matrix(Accel::XenPvh { viridian: false }),
            Some(("shutdown", Some("poweroff"))),
        );
        let found: Vec<(&str, usize)> = seen.iter().map(|s| (s.op.as_str(), s.step)).collect();
        assert_eq!(
            found,
            [("clock_ns", 1), ("console_write", 1), ("shutdown", 1)]
        );
        assert!(seen
            .iter()
            .all(|s| s.level == Level::Real && s.hypervisor == "xen"));
    }

    #[test]
    fn the_pv_dom0_boot_is_a_venue_of_its_own_for_xen_pv_alone() {
        let out = "backend: xen_pv\nserved (the steps that answered each op's calls):\n  clock_ns           step 1\n  console_write      step 2\n";
        let seen = sightings(&model(), out, Boot::XenPvDom0, None);
        let found: Vec<(&str, usize, &str)> = seen
            .iter()
            .map(|s| (s.op.as_str(), s.step, s.venue))
            .collect();
        assert_eq!(
            found,
            [
                ("clock_ns", 1, "Xen 4.17, PV dom0"),
                ("console_write", 2, "Xen 4.17, PV dom0")
            ]
        );
        let other = out.replace("backend: xen_pv", "backend: xen");
        assert!(sightings(&model(), &other, Boot::XenPvDom0, None).is_empty());
        // Two reports (the PV checks', then the self-tests'): the last one
        // counts, with what the self-tests called too.
        let twice = format!("{out}pvi: Xen PV entry: checks: 0 failed\nserved (the steps that answered each op's calls):\n  clock_ns           step 1\n  console_write      step 2\n  steal_ns           step 1\n");
        let seen = sightings(&model(), &twice, Boot::XenPvDom0, None);
        let found: Vec<(&str, usize)> = seen.iter().map(|s| (s.op.as_str(), s.step)).collect();
        assert_eq!(
            found,
            [("clock_ns", 1), ("console_write", 2), ("steal_ns", 1)]
        );
    }

    #[test]
    fn a_withdrawn_ending_step_and_a_native_backend_count_for_nothing() {
        let dom0 = "backend: xen\n  shutdown           step 1 withdrawn at run time (…): the chain falls back past it\n";
        let poweroff = Some(("shutdown", Some("poweroff")));
        assert!(sightings(&model(), dom0, Boot::Matrix(Accel::XenDom0), poweroff).is_empty());
        let tcg = "backend: native\nserved (the steps):\n  clock_ns           native\n";
        assert!(sightings(&model(), tcg, Boot::Matrix(Accel::Tcg), poweroff).is_empty());
    }

    #[test]
    fn a_domu_that_crashed_shows_the_crash_step() {
        let crashed = DOMU.replace("reason code 0", "reason code 3");
        let seen = sightings(
            &model(),
            &crashed,
            Boot::Matrix(Accel::XenPvh { viridian: false }),
            Some(("shutdown", Some("crash"))),
        );
        let shutdown: Vec<usize> = seen
            .iter()
            .filter(|s| s.op == "shutdown")
            .map(|s| s.step)
            .collect();
        // Xen's chain: poweroff, reboot, crash, native.
        assert_eq!(shutdown, [3]);
    }

    #[test]
    fn the_hyperv_backend_under_viridian_is_someone_elses_emulation() {
        let out = "(d1) backend: hyperv\n(d1) served (x):\n(d1)   clock_ns           step 2\n";
        let seen = sightings(
            &model(),
            out,
            Boot::Matrix(Accel::XenPvh { viridian: true }),
            None,
        );
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].level, seen[0].step, seen[0].venue),
            (Level::Emulation, 2, "Xen 4.17's viridian")
        );
    }

    #[test]
    fn the_page_grades_each_step_by_its_best_sighting() {
        let model = model();
        let mut seen = sightings(
            &model,
            DOMU,
            Boot::Matrix(Accel::XenPvh { viridian: false }),
            Some(("shutdown", Some("poweroff"))),
        );
        seen.push(Sighting {
            hypervisor: "xen".into(),
            op: "clock_ns".into(),
            step: 1,
            level: Level::Sim,
            venue: "pvi-sim",
        });
        let page = render(&model, &seen);
        let row = page
            .lines()
            .find(|l| l.starts_with("| `clock_ns` |"))
            .unwrap();
        assert!(row.contains("| 1: real |"), "{row}");
        assert!(page.contains("| `console_write` | 2 | `hypercall __HYPERVISOR_console_io"));
        assert!(page.contains("Xen 4.17, PVH domU; pvi-sim |"));
    }
}
