//! `cargo xtask bench`: measurements, never pass/fail timings in tests.
//! Writes `target/bench/report.json` and `report.md`.
//!
//! Measured: the example kernel's `bench` boot under KVM (when /dev/kvm
//! works) and TCG (ticks per call of the hot ops three ways, and of each
//! clock); the toolchain's speed (`pvi check` and `pvi gen` on the whole
//! IDL, and an IDL edit regenerated and rebuilt); and the kernel's code
//! size with every backend, with none, and with each alone.

use crate::size;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const RUNS: usize = 21;

/// Median, fastest and slowest of `RUNS` timings (ms) of `f`, which fails
/// with a message.
fn timed(mut f: impl FnMut() -> Result<(), String>) -> Result<[f64; 3], String> {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok([times[RUNS / 2], times[0], times[RUNS - 1]])
}

use crate::cargo::cargo;

fn ok(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `pvi check idl` and `pvi gen` (release build), `RUNS` times each.
fn toolchain_speed(pvi: &Path) -> Result<([f64; 3], [f64; 3]), String> {
    let check = timed(|| ok(Command::new(pvi).args(["check", "idl"]), "pvi check idl"))?;
    let out = PathBuf::from("target/bench/generated");
    let gen = timed(|| {
        ok(
            Command::new(pvi).args(["gen", "--out"]).arg(&out),
            "pvi gen",
        )
    })?;
    Ok((check, gen))
}

/// One IDL edit, regenerated and rebuilt: append a comment line to a copy
/// of `idl/pvi.pvi`, run `pvi gen` into a copy of the SDK and build it for
/// the kernel target. The copy's build is warmed first, so this is the
/// incremental cost a user pays per edit (ms).
fn edit_regenerate_rebuild(pvi: &Path) -> Result<f64, String> {
    let work = std::fs::canonicalize("target")
        .map_err(|e| format!("target/: {e}"))?
        .join("bench/edit");
    let _ = std::fs::remove_dir_all(&work);
    crate::scratch::copy_repository(Path::new("."), &work).map_err(|e| format!("copying: {e}"))?;
    let target_dir = work.join("target");
    let build = || {
        let mut c = cargo();
        c.current_dir(&work)
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "pvi-sdk",
                "--target",
                "x86_64-unknown-none",
            ])
            .env("CARGO_TARGET_DIR", &target_dir);
        ok(&mut c, "building the SDK")
    };
    build()?;
    let idl = work.join("idl/pvi.pvi");
    let mut text = std::fs::read_to_string(&idl).map_err(|e| format!("{}: {e}", idl.display()))?;
    text.push_str("// an edit, for the benchmark\n");
    let start = Instant::now();
    std::fs::write(&idl, &text).map_err(|e| format!("{}: {e}", idl.display()))?;
    ok(
        Command::new(pvi)
            .current_dir(&work)
            .args(["gen", "--out", "sdk/src/generated"]),
        "pvi gen",
    )?;
    build()?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

/// Lines of IDL (the `.pvi` files; not the lock beside them).
fn pvi_idl_lines() -> usize {
    std::fs::read_dir("idl")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pvi"))
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .map(|t| t.lines().count())
                .sum()
        })
        .unwrap_or(0)
}

/// The exit table as JSON: per key, the fewest exits by kind, the most,
/// and the VMM that counted.
fn exits_json(table: &crate::exit_bench::ExitTable) -> serde_json::Value {
    counts_json(&table.counts)
}

/// The real Xen's tables as JSON, by boot (`xen`, `xen-viridian`,
/// `xen-pv`), each as [`exits_json`], with the `rdtsc`s Xen emulated and,
/// for the PV guest, the privileged instructions.
fn real_xen_json(table: &crate::exit_bench::ExitTable) -> serde_json::Value {
    let boots = table.real_xen.iter().map(|(label, boot)| {
        let mut counts = counts_json(&boot.counts);
        for (key, c) in &boot.counts {
            counts[key]["rdtsc"] = c.rdtsc.into();
            counts[key]["privop"] = c.privop.into();
        }
        (
            label.to_string(),
            serde_json::json!({ "backend": boot.backend, "exits_per_call": counts, "skipped": boot.skipped }),
        )
    });
    serde_json::Value::Object(boots.collect())
}

fn counts_json(
    counts: &std::collections::BTreeMap<String, crate::exit_bench::ExitCount>,
) -> serde_json::Value {
    let per_key = counts.iter().map(|(key, c)| {
        let mut entry = serde_json::json!({
            "all": c.all,
            "to_user_space": c.to_vmm,
            "pv_eoi_without_exit": c.pv_eoi,
            "most": c.most,
            "vmm": c.vmm,
            "served_by_step": c.served,
        });
        for (kind, n) in crate::exit_bench::KINDS.iter().zip(c.kinds) {
            entry[*kind] = n.into();
        }
        (key.clone(), entry)
    });
    serde_json::Value::Object(per_key.collect())
}

/// Run every measurement and write the reports.
pub fn bench() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    println!("==> building pvi (release)");
    ok(
        cargo().args([
            "build",
            "--quiet",
            "--release",
            "--package",
            "pvi-codegen",
            "--bin",
            "pvi",
        ]),
        "the release build of pvi",
    )?;
    let pvi = std::fs::canonicalize("target/release/pvi").map_err(|e| format!("pvi: {e}"))?;
    std::fs::create_dir_all("target/bench").map_err(|e| format!("target/bench: {e}"))?;
    let lines = pvi_idl_lines();
    println!("==> pvi check and pvi gen on idl/ ({lines} lines), {RUNS} runs each");
    let (check, gen) = toolchain_speed(&pvi)?;
    println!(
        "pvi check: median {:.1} ms (min {:.1}, max {:.1}); pvi gen: median {:.1} ms (min {:.1}, max {:.1})",
        check[0], check[1], check[2], gen[0], gen[1], gen[2]
    );
    println!("==> one IDL edit: regenerate and rebuild the SDK");
    let edit = edit_regenerate_rebuild(&pvi)?;
    println!("edit, regenerate, rebuild: {edit:.0} ms");
    let kernel = crate::kernel_bench::kernel()?;
    let mut boots = Vec::new();
    let mut accels = vec![crate::qemu::Accel::Tcg];
    match crate::qemu::kvm_usable() {
        Ok(()) => accels.insert(0, crate::qemu::Accel::Kvm),
        Err(why) => println!("==> no KVM ({why}): the kernel bench boots under TCG only"),
    }
    for accel in accels {
        println!(
            "==> booting the example kernel's bench under {}",
            accel.name()
        );
        let b = crate::kernel_bench::boot(&kernel, accel)?;
        for ((op, form), ticks) in &b.ops {
            println!("{:<4} {op:<12} {form:<8} {ticks:>12.2} ticks", b.accel);
        }
        for (clock, ticks) in &b.clocks {
            println!("{:<4} clock {clock:<15} {ticks:>12.2} ticks", b.accel);
        }
        boots.push(b);
    }
    // Guest code here runs far slower than on hardware, so ticks under KVM
    // or TCG say little; counted instructions are exact, whatever the load.
    println!(
        "==> booting the example kernel's bench under TCG, counting instructions (-icount shift=0)"
    );
    let counted = crate::kernel_bench::boot_counting(&kernel)?;
    for ((op, form), n) in &counted.ops {
        println!("instructions {op:<12} {form:<9} {n:>8.2} per call");
    }
    // Xen PV's inline forms: the same kernel as the real Xen's PV dom0,
    // still counting instructions.
    println!(
        "==> booting the example kernel as the real Xen 4.17's PV dom0 under TCG, counting instructions (-icount shift=0)"
    );
    let xen_pv = match crate::xen_pv::bench_counting(&kernel) {
        Ok(b) => {
            for ((op, form), n) in &b.ops {
                println!("instructions {op:<12} xen_pv {form:<9} {n:>8.2} per call");
            }
            Ok(b)
        }
        Err(why) => {
            println!("==> Xen PV instruction counts not measured: {why}");
            Err(why)
        }
    };
    let mut claims = instruction_claims(&counted);
    claims.extend(xen_pv_claims(&counted, xen_pv.as_ref()));
    for line in &claims {
        println!("{line}");
    }
    // Exits need a host that counts them: pvi-sim and QEMU, both on KVM.
    let exits = match crate::qemu::kvm_usable() {
        Ok(()) => Some(crate::exit_bench::measure(&kernel)?),
        Err(why) => {
            println!("==> exits per call skipped: they are counted on /dev/kvm ({why})");
            None
        }
    };
    let assessment = match &exits {
        Some(table) => {
            for (key, c) in &table.counts {
                println!(
                    "exits {key:<32} {:>3} (to user space {}, most {}) [{}]",
                    c.all, c.to_vmm, c.most, c.vmm
                );
            }
            for line in &table.skipped {
                println!("exits {line}");
            }
            for (label, boot) in &table.real_xen {
                for (key, c) in &boot.counts {
                    println!(
                        "exits {key:<32} {:>3} (rdtsc {}, privop {}, most {}) [{label}]",
                        c.all,
                        c.rdtsc.unwrap_or(0),
                        c.privop.unwrap_or(0),
                        c.most
                    );
                }
            }
            let a = crate::exit_claims::assess(table, &counted)?;
            for line in &a.claims {
                println!("{line}");
            }
            Some(a)
        }
        None => None,
    };
    let variants = size::measure()?;
    let text = |name: &str| {
        variants
            .iter()
            .find(|v| v.name == name)
            .map_or(0, |v| v.text)
    };
    let (all, native) = (text("all"), text("native"));
    for v in &variants {
        println!(
            ".text {:<7} {:>8} bytes ({:+} over native){}",
            v.name,
            v.text,
            v.text as i64 - native as i64,
            if v.foreign.is_empty() {
                String::new()
            } else {
                format!("; {} symbols of backends left out", v.foreign.len())
            }
        );
    }
    let leaks: Vec<String> = variants
        .iter()
        .flat_map(|v| v.foreign.iter().map(move |f| format!("{}: {f}", v.name)))
        .collect();
    // The ratios come from the first boot: KVM when it works.
    let first = boots.first();
    let ratio = |f: &dyn Fn(&crate::kernel_bench::KernelBench) -> Option<f64>| {
        first
            .and_then(f)
            .map_or(serde_json::Value::Null, serde_json::Value::from)
    };
    let boots_json: Vec<serde_json::Value> = boots
        .iter()
        .map(|b| {
            serde_json::json!({
                "accel": b.accel,
                "backend": b.backend,
                "ops": b.ops.iter().map(|((op, form), t)| serde_json::json!({"op": op, "form": form, "ticks": t})).collect::<Vec<_>>(),
                "clocks": b.clocks.iter().map(|(c, t)| (c.clone(), serde_json::Value::from(*t))).collect::<serde_json::Map<_, _>>(),
                "skipped": b.skipped,
                "hot_runtime_vs_raw": b.hot_vs_raw("runtime"),
                "hot_static_vs_raw": b.hot_vs_raw("static"),
                "patched_vs_raw": b.patched_vs_raw(),
                "clock_pv_speedup": b.clock_pv_speedup(),
                "eoi": b.eoi,
                "ipi": b.ipi,
                "tsc_discovery": b.discovery,
                "eoi_pv_speedup": b.eoi_pv_speedup(),
                "ipi_pv_speedup": b.ipi_pv_speedup(),
                "tsc_discovery_pv_speedup": b.tsc_discovery_pv_speedup(),
                "ticks_per_instruction": b.instruction_ticks,
                "instructions_emulated": b.emulated(),
                "kvmclock_attempts_per_read": b.clock_attempts.map(|(a, r)| a as f64 / r.max(1) as f64),
            })
        })
        .collect();
    let report = serde_json::json!({
        "ratios": {
            "from": first.map(|b| b.accel),
            "hot_runtime_vs_raw": ratio(&|b| b.hot_vs_raw("runtime")),
            "hot_static_vs_raw": ratio(&|b| b.hot_vs_raw("static")),
            "clock_pv_speedup": ratio(&|b| b.clock_pv_speedup()),
            "patched_vs_raw": ratio(&|b| b.patched_vs_raw()),
            "eoi_pv_speedup": ratio(&|b| b.eoi_pv_speedup()),
            "ipi_pv_speedup": ratio(&|b| b.ipi_pv_speedup()),
            "tsc_discovery_pv_speedup": ratio(&|b| b.tsc_discovery_pv_speedup()),
            "ticks_per_instruction": ratio(&|b| b.instruction_ticks),
            "hot_patched_extra_instructions": counted.hot_extra("patched"),
            "xen_pv_patched_extra_over_native_patched": xen_pv.as_ref().ok().and_then(|pv| xen_pv_extra(&counted, pv)),
            "hot_static_extra_instructions": counted.hot_extra("static"),
            "hot_runtime_extra_instructions": counted.hot_extra("runtime"),
            "clock_pv_exits": assessment.as_ref().and_then(|a| a.ratios.get("clock_pv_exits").cloned()),
            "clock_hw_exits_min": assessment.as_ref().and_then(|a| a.ratios.get("clock_hw_exits_min").cloned()),
            "model_clock_speedup": assessment.as_ref().and_then(|a| a.ratios.get("model_clock_speedup").cloned()),
        },
        "instructions_per_call": counted
            .per_call()
            .into_iter()
            .chain(xen_pv.as_ref().map(|b| b.per_call()).unwrap_or_default())
            .collect::<std::collections::BTreeMap<_, _>>(),
        "xen_pv_instructions_not_measured": xen_pv.as_ref().err(),
        "instruction_claims": claims,
        "exits_per_call": exits.as_ref().map(exits_json),
        "exits_per_call_real_xen": exits.as_ref().map(real_xen_json),
        "exits_skipped": exits.as_ref().map(|t| t.skipped.clone()),
        "exit_claims": assessment.as_ref().map(|a| a.claims.clone()),
        "cost_model": {
            "constants": crate::cost_model::constants(),
            "clock": assessment.as_ref().map(|a| a.models.clone()),
        },
        "boots": boots_json,
        "machine": machine(),
        "run": run_name(),
        "idl_lines": lines,
        "codegen_ms": gen[0],
        "check_ms": check[0],
        "edit_regenerate_rebuild_ms": edit,
        "text_all_backends_bytes": all,
        "text_native_only_bytes": native,
        "text_bytes": variants.iter().map(|v| (v.name.clone(), serde_json::Value::from(v.text))).collect::<serde_json::Map<_, _>>(),
        "foreign_symbols": leaks,
    });
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write("target/bench/report.json", json + "\n").map_err(|e| e.to_string())?;
    let mut md = String::from("# pvi benchmark report\n\n");
    md.push_str(&format!("Run: {}\n\n", run_name()));
    md.push_str(&format!("Machine: {}\n\n", machine()));
    md.push_str("| measure | value |\n|---|---|\n");
    md.push_str(&format!(
        "| `pvi check` on idl/ ({lines} lines of IDL, and its lock), median of {RUNS} | {:.1} ms |\n",
        check[0]
    ));
    md.push_str(&format!(
        "| `pvi gen` on idl/, median of {RUNS} | {:.1} ms |\n",
        gen[0]
    ));
    md.push_str(&format!(
        "| one IDL edit: `pvi gen` + SDK rebuild | {edit:.0} ms |\n"
    ));
    for b in &boots {
        md.push_str(&format!(
            "\n## The kernel's bench under {} (backend {}), TSC ticks per call\n\n| op | raw | compile time | run time | call site, unpatched | call site, patched |\n|---|---|---|---|---|---|\n",
            b.accel, b.backend
        ));
        for op in crate::kernel_bench::HOT_OPS {
            let cells = b.cells(op, &crate::kernel_bench::FORMS);
            md.push_str(&format!("| `{op}` | {cells} |\n"));
        }
        md.push_str(&format!(
            "| `eoi` (no fixed instruction: redirected) | — | — | — | {} |\n",
            b.cells("eoi", &["unpatched", "patched"])
        ));
        md.push_str("\n| clock | ticks per read |\n|---|---|\n");
        for (clock, t) in &b.clocks {
            md.push_str(&format!("| {clock} | {t:.2} |\n"));
        }
        let show = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}"));
        let figure = |m: &std::collections::BTreeMap<String, f64>, k: &str| {
            m.get(k)
                .map_or("skipped".to_string(), |t| format!("{t:.2}"))
        };
        md.push_str(&format!(
            "\n| paravirtual against hardware | backend | hardware | speed-up |\n|---|---|---|---|\n\
             | clock read (fastest of HPET, PM timer, PIT) | {} | {} | {} |\n\
             | end of interrupt, in a handler (LAPIC) | {} | {} | {} |\n\
             | IPI to this CPU (ICR write) | {} | {} | {} |\n\
             | TSC frequency discovery (CPUID, else PIT) | {} | {} | {} |\n",
            figure(&b.clocks, "backend"),
            b.fastest_emulated_clock().map_or("—".into(), |t| format!("{t:.2}")),
            show(b.clock_pv_speedup()),
            figure(&b.eoi, "backend"),
            figure(&b.eoi, "lapic"),
            show(b.eoi_pv_speedup()),
            figure(&b.ipi, "backend"),
            figure(&b.ipi, "icr"),
            show(b.ipi_pv_speedup()),
            figure(&b.discovery, "backend"),
            figure(&b.discovery, "native"),
            show(b.tsc_discovery_pv_speedup()),
        ));
        md.push_str(&format!(
            "\nWorst hot op, run time / raw: {}; compile time / raw: {}; patched call site / raw: {}.\n",
            show(b.hot_vs_raw("runtime")),
            show(b.hot_vs_raw("static")),
            show(b.patched_vs_raw()),
        ));
        if let Some((attempts, reads)) = b.clock_attempts {
            md.push_str(&format!(
                "\nkvmclock: {attempts} version-protocol attempts over {reads} reads.\n"
            ));
        }
        if let Some(t) = b.instruction_ticks {
            md.push_str(&format!(
                "\nOne dependent `add` costs {t:.2} ticks in this guest"
            ));
            if b.emulated() {
                md.push_str(&format!(
                    " (about 1 on hardware): its code does not run at hardware speed. \
                     Every figure above then counts instructions more than exits, and a \
                     paravirtual path of many instructions can lose to one trapping \
                     instruction. The speed-ups of this boot say nothing about a host \
                     that runs guest code natively (more than {} ticks per `add` is \
                     taken to mean it does not).\n",
                    crate::kernel_bench::EMULATED_INSTRUCTION_TICKS
                ));
            } else {
                md.push_str(".\n");
            }
        }
        for s in &b.skipped {
            md.push_str(&format!("\nNot measured: {s}.\n"));
        }
    }
    md.push_str(
        "\n## Code size\n\n| example kernel | `.text` bytes | over native |\n|---|---|---|\n",
    );
    for v in &variants {
        md.push_str(&format!(
            "| {} | {} | {:+} |\n",
            v.name,
            v.text,
            v.text as i64 - native as i64
        ));
    }
    md.push_str(&format!(
        "\nSymbols of a backend in a build without it: {}.\n",
        if leaks.is_empty() {
            "none".to_string()
        } else {
            leaks.join(", ")
        }
    ));
    md.push_str(&crate::exit_report::instructions_markdown(
        &counted,
        xen_pv.as_ref().ok(),
        &claims,
    ));
    if let (Some(table), Some(a)) = (&exits, &assessment) {
        md.push_str(&crate::exit_report::exits_markdown(table, a));
    }
    std::fs::write("target/bench/report.md", md).map_err(|e| e.to_string())?;
    let mut groups = chart(&boots);
    groups.extend(crate::exit_report::chart_groups(&counted, exits.as_ref()));
    std::fs::write("target/bench/chart.svg", crate::chart::svg(&groups))
        .map_err(|e| e.to_string())?;
    println!("xtask bench: wrote target/bench/report.json, report.md and chart.svg");
    if !leaks.is_empty() {
        return Err(format!(
            "{} symbols of backends left out were linked",
            leaks.len()
        ));
    }
    Ok(())
}

/// When and from which commit this run was made, so that a figure quoted
/// elsewhere names its run: `2026-12-06, commit 10db7f1` (`+ changes`
/// when the tree differs from it).
fn run_name() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let date = Command::new("date")
        .arg("+%F")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let changed =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    format!(
        "{date}, commit {commit}{}",
        if changed { " + changes" } else { "" }
    )
}

/// The CPU and core count, for the report.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// The chart's timed groups: for each boot, the hot ops three ways, then
/// the clocks.
fn chart(boots: &[crate::kernel_bench::KernelBench]) -> Vec<crate::chart::Group> {
    use crate::chart::{Bar, Group};
    let mut groups = Vec::new();
    const FORMS: [(&str, &str); 5] = [
        ("raw", "raw"),
        ("static", "compile time"),
        ("runtime", "run time"),
        ("unpatched", "site, unpatched"),
        ("patched", "site, patched"),
    ];
    for b in boots {
        let bars = crate::kernel_bench::HOT_OPS
            .iter()
            .flat_map(|op| {
                FORMS.iter().filter_map(move |(form, label)| {
                    let t = b.ops.get(&(op.to_string(), form.to_string()))?;
                    Some(Bar {
                        label: format!("{op}, {label}"),
                        value: *t,
                    })
                })
            })
            .collect();
        groups.push(Group {
            title: format!("{}: hot ops, TSC ticks per call", b.accel),
            bars,
        });
        // One bar per figure; `backend` is labelled with the backend's name.
        let bars_of = |figures: &std::collections::BTreeMap<String, f64>,
                       pv: &str,
                       other: &dyn Fn(&str) -> String| {
            figures
                .iter()
                .map(|(way, t)| Bar {
                    label: if way == "backend" {
                        format!("{pv} ({})", b.backend)
                    } else {
                        other(way)
                    },
                    value: *t,
                })
                .collect()
        };
        groups.push(Group {
            title: format!("{}: clock reads, TSC ticks per read", b.accel),
            bars: bars_of(&b.clocks, "clock_ns", &|c| c.to_string()),
        });
        let pairs = [
            ("end of interrupt", &b.eoi, "lapic"),
            ("IPI", &b.ipi, "icr"),
        ];
        let bars = pairs
            .into_iter()
            .flat_map(|(what, figures, hardware)| {
                [("backend", b.backend.as_str()), (hardware, hardware)]
                    .into_iter()
                    .filter_map(move |(way, label)| {
                        figures.get(way).map(|t| Bar {
                            label: format!("{what}, {label}"),
                            value: *t,
                        })
                    })
            })
            .collect();
        groups.push(Group {
            title: format!("{}: interrupts, TSC ticks per call", b.accel),
            bars,
        });
        groups.push(Group {
            title: format!("{}: finding the TSC frequency, TSC ticks", b.accel),
            bars: bars_of(&b.discovery, "tsc_hz", &|_| "CPUID, else PIT".into()),
        });
    }
    groups
}

/// The instruction counts the project promises for the hot ops, checked
/// op by op against a counting boot: the compile-time form retires exactly
/// the raw instruction's count, a patched site the raw count plus its one
/// NOP (every hot site is 5 bytes and each native sequence shorter, so the
/// padding is one NOP instruction), the run-time form (`Dispatch`) at most
/// two more. One line per op and form, saying whether it holds.
/// The most a Xen PV inline form at a patched site retires beyond the
/// native instructions at the same site, over the irq ops.
fn xen_pv_extra(
    native: &crate::kernel_bench::KernelBench,
    xen_pv: &crate::kernel_bench::KernelBench,
) -> Option<f64> {
    crate::kernel_bench::HOT_OPS
        .iter()
        .map(|op| {
            let key = (op.to_string(), "patched".to_string());
            Some(xen_pv.ops.get(&key)? - native.ops.get(&key)?)
        })
        .collect::<Option<Vec<f64>>>()
        .and_then(|d| d.into_iter().reduce(f64::max))
}

/// Xen PV's inline forms against the native instructions at the same
/// sites: at most one instruction more (a store for `cli`; a store, a
/// compare and a branch for `sti`), and fewer than through the dispatch.
fn xen_pv_claims(
    native: &crate::kernel_bench::KernelBench,
    xen_pv: Result<&crate::kernel_bench::KernelBench, &String>,
) -> Vec<String> {
    const EXACT: f64 = 0.05;
    let xen_pv = match xen_pv {
        Ok(b) => b,
        Err(why) => return vec![format!("claim xen_pv patched sites: not measured ({why})")],
    };
    let mut lines = Vec::new();
    for op in crate::kernel_bench::HOT_OPS {
        let get = |b: &crate::kernel_bench::KernelBench, form: &str| {
            b.ops.get(&(op.to_string(), form.to_string())).copied()
        };
        let line = match (
            get(native, "patched"),
            get(xen_pv, "patched"),
            get(xen_pv, "runtime"),
        ) {
            (Some(n), Some(pv), Some(rt)) => {
                let holds = pv <= n + 1.0 + EXACT && pv < rt;
                format!(
                    "claim {op} xen_pv patched <= native patched + 1 and < xen_pv runtime: {} ({pv:.2} vs native patched {n:.2}, xen_pv runtime {rt:.2})",
                    if holds { "holds" } else { "FAILS" }
                )
            }
            _ => format!("claim {op} xen_pv patched: not measured"),
        };
        lines.push(line);
    }
    lines
}

fn instruction_claims(counted: &crate::kernel_bench::KernelBench) -> Vec<String> {
    // Medians of batches, in hundredths: a count within 0.05 is exact.
    const EXACT: f64 = 0.05;
    let mut lines = Vec::new();
    for op in crate::kernel_bench::HOT_OPS {
        let get = |form: &str| {
            counted
                .ops
                .get(&(op.to_string(), form.to_string()))
                .copied()
        };
        let Some(raw) = get("raw") else {
            lines.push(format!("claim {op}: not measured (no raw figure)"));
            continue;
        };
        for (form, allowed, what) in [
            ("static", 0.0, "= raw"),
            (
                "patched",
                1.0,
                "= raw + 1 (a NOP, or a jump over the site's rest)",
            ),
            ("runtime", 2.0, "<= raw + 2"),
        ] {
            let line = match get(form) {
                Some(n) => {
                    let extra = n - raw;
                    let holds = if form == "runtime" {
                        extra <= allowed + EXACT
                    } else {
                        (extra - allowed).abs() <= EXACT
                    };
                    let verdict = if holds { "holds" } else { "FAILS" };
                    format!("claim {op} {form} {what}: {verdict} ({n:.2} vs raw {raw:.2})")
                }
                None => format!("claim {op} {form} {what}: not measured"),
            };
            lines.push(line);
        }
    }
    lines
}
