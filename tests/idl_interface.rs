//! The real interface in `idl/`: it checks clean, stays a small API, is in
//! canonical form, and formatting never changes its meaning.

use pvi_codegen::ast::File;
use pvi_codegen::fmt::format_file;
use std::fs;

fn parse_text(text: &str) -> File {
    pvi_codegen::parse(0, text).unwrap_or_else(|d| panic!("does not parse: {}", d[0].message))
}

#[test]
fn the_interface_checks_clean() {
    let (sources, result) = pvi_codegen::check_paths(&[pvi_tests::root().join("idl")]).unwrap();
    if let Err(diags) = &result {
        let text: String = diags.iter().map(|d| d.render(&sources, false)).collect();
        panic!("idl/ has errors:\n{text}");
    }
}

#[test]
fn the_api_is_cut_at_the_right_level() {
    let (_, result) = pvi_codegen::check_paths(&[pvi_tests::root().join("idl")]).unwrap();
    let model = result.expect("idl/ checks clean");
    let ops: Vec<String> = model.ops().map(|o| o.op.name.name.clone()).collect();
    // The 2007 argument: ~100 hooks at most, Linux pv_ops has 80 slots;
    // the matrix page states the bound.
    assert!(
        ops.len() <= pvi_codegen::doc::MAX_OPS,
        "{} ops: the interface must stay at most {}",
        ops.len(),
        pvi_codegen::doc::MAX_OPS
    );
    for wanted in [
        "irq_disable",
        "irq_enable",
        "irq_save",
        "irq_restore",
        "safe_halt",
        "halt",
        "io_delay",
        "clock_ns",
        "tsc_hz",
        "wallclock",
        "steal_ns",
        "timer_oneshot",
        "timer_cancel",
        "eoi",
        "send_ipi",
        "kick_cpu",
        "yield_to",
        "vcpu_is_preempted",
        "flush_tlb",
        "console_write",
        "shutdown",
        "panic_notify",
    ] {
        assert!(ops.iter().any(|o| o == wanted), "op `{wanted}` is missing");
    }
    for op in model.ops() {
        assert!(
            !op.op.meta.docs.lines.is_empty(),
            "op `{}` has no doc comment stating its native meaning",
            op.op.name.name
        );
    }
    // The four the project promises; more may be added (the backend guide
    // adds ACRN).
    let hvs: Vec<&str> = model.hypervisors().map(|h| h.name.name.as_str()).collect();
    for wanted in ["hyperv", "kvm", "vmware", "xen"] {
        assert!(
            hvs.contains(&wanted),
            "hypervisor `{wanted}` is missing: {hvs:?}"
        );
    }
}

#[test]
fn every_idl_file_is_in_canonical_form() {
    for path in pvi_tests::idl_files() {
        let text = fs::read_to_string(&path).unwrap();
        let formatted = format_file(&parse_text(&text), &text);
        assert!(
            formatted == text,
            "{} is not formatted: run `cargo run -p pvi-codegen -- fmt idl`",
            path.display()
        );
    }
}

/// Squash the layout of a file without touching comments, docs or strings:
/// indentation, spacing around punctuation, and blank lines.
fn mess_up(text: &str, seed: u64) -> String {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") || trimmed.contains('"') {
            out.push_str(line);
        } else {
            let mut l = " ".repeat(rng.usize(0..7)) + trimmed;
            if rng.bool() {
                l = l.replace(": ", ":").replace(" = ", "=").replace(", ", ",");
            }
            if rng.bool() {
                l = l.replace(';', " ;").replace('{', " {  ");
            }
            out.push_str(&l);
        }
        out.push('\n');
        if rng.u8(..) < 20 {
            out.push_str("\n\n");
        }
    }
    out
}

#[test]
fn formatting_keeps_the_model_and_every_comment_and_is_idempotent() {
    for path in pvi_tests::idl_files() {
        let text = fs::read_to_string(&path).unwrap();
        let original = parse_text(&text);
        for seed in 0..8 {
            let messy = mess_up(&text, seed);
            let once = format_file(&parse_text(&messy), &messy);
            let reparsed = parse_text(&once);
            assert!(
                reparsed == original,
                "{} (seed {seed}): formatting changed the model",
                path.display()
            );
            let twice = format_file(&reparsed, &once);
            assert!(
                twice == once,
                "{} (seed {seed}): formatting is not idempotent",
                path.display()
            );
            let comments = |s: &str| {
                s.lines()
                    .filter(|l| l.trim_start().starts_with("//"))
                    .count()
            };
            assert_eq!(
                comments(&once),
                comments(&messy),
                "{} (seed {seed}): a comment was lost",
                path.display()
            );
        }
    }
}

#[test]
fn comments_inside_a_statement_move_above_it_and_survive() {
    let text = "interface t 0.1.0;\ngroup g {\n    op x() { context /* why */ any; native routine r; }  // after\n}\n";
    let out = format_file(&parse_text(text), text);
    assert!(
        out.contains("/* why */") && out.contains("// after"),
        "{out}"
    );
    assert_eq!(parse_text(&out), parse_text(text));
}

/// The call sites `pvi_sdk::patch` rewrites carry each hot op's native
/// instructions as the assembler encodes them from a template of the SDK's:
/// it must be the IDL's `native asm`, with the operands bound where a
/// site's C-ABI call puts them (result `rax`, arguments `rdi`, `rsi`, …).
#[test]
fn patch_sites_carry_the_idl_native_instructions_of_every_hot_op() {
    use pvi_codegen::ast::{Native, OpStmt};
    use pvi_sdk::patch::HotOp;
    let (_, result) = pvi_codegen::check_paths(&[pvi_tests::root().join("idl")]).unwrap();
    let model = result.expect("idl/ checks clean");
    const ARGS: [&str; 6] = ["rdi", "rsi", "rdx", "rcx", "r8", "r9"];
    for op in model.ops() {
        let op = &op.op;
        let name = op.name.name.as_str();
        let hot = op.stmts.iter().any(|s| matches!(s, OpStmt::Hot(_)));
        let Some(patchable) = HotOp::ALL.into_iter().find(|h| h.name() == name) else {
            assert!(
                !hot,
                "hot op `{name}` has no patchable call site in pvi_sdk::patch::HotOp"
            );
            continue;
        };
        let native = op.stmts.iter().find_map(|s| match s {
            OpStmt::Native(Native::Asm(text), _) => {
                Some(String::from_utf8_lossy(&text.value).into_owned())
            }
            _ => None,
        });
        let bound = native.map(|template| {
            let mut t = template.replace("{ret}", "rax");
            for (param, reg) in op.params.iter().zip(ARGS) {
                t = t.replace(&format!("{{{}}}", param.name.name), reg);
            }
            t
        });
        assert_eq!(
            patchable.native_template().map(str::to_string),
            bound,
            "`{name}`: the patch site's native instructions and the IDL's `native asm` differ"
        );
    }
}
