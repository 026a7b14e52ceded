//! The hot ops' inline forms, patched into real sites and disassembled:
//! this test binary's own `patchable_irq_*!` sites are rewritten by
//! `pvi_sdk::patch::apply` to each hypervisor's form
//! (`pvi_backends::inline_forms`), as a kernel's are at boot, and
//! `objdump` reads the result. On Xen PV, `irq_disable` must be one store
//! and `irq_enable` a store, a compare and a branch over its call: no call
//! and no hypercall on the path taken when no event is pending.

use pvi_backends::inline_forms::all_inline_forms;
use pvi_sdk::patch::{apply, sites, HotOp, Patch, Sequence};
use std::collections::BTreeMap;

/// One site of each irq op; never run (`cli` would fault here), only
/// patched and read.
#[inline(never)]
fn one_site_of_each_irq_op() {
    pvi_sdk::patchable_irq_disable!();
    pvi_sdk::patchable_irq_enable!();
    let flags = pvi_sdk::patchable_irq_save!();
    pvi_sdk::patchable_irq_restore!(flags);
}

/// `bytes`, at address `at`, as `objdump` reads them: (address,
/// instruction) per line, Intel syntax.
fn disassemble(bytes: &[u8], at: usize) -> Vec<(u64, String)> {
    let path = std::env::temp_dir().join(format!("pvi-inline-site-{at:x}.bin"));
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("objdump")
        .args([
            "-D",
            "-b",
            "binary",
            "-m",
            "i386:x86-64",
            "-M",
            "intel",
            "--no-show-raw-insn",
        ])
        .arg(format!("--adjust-vma={at:#x}"))
        .arg(&path)
        .output()
        .expect("objdump (binutils) is needed for this test");
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (address, insn) = line.split_once(":\t")?;
            let address = u64::from_str_radix(address.trim(), 16).ok()?;
            Some((address, insn.trim().to_string()))
        })
        .collect()
}

/// The instructions run from the site's start when every conditional
/// branch is taken (no event pending: the forms branch over their rare
/// path), up to the site's end.
fn common_path(listing: &[(u64, String)], end: u64) -> Vec<String> {
    let mut path = Vec::new();
    let mut i = 0;
    while let Some((_, insn)) = listing.get(i) {
        path.push(insn.clone());
        let mut words = insn.split_whitespace();
        let op = words.next().unwrap_or("");
        if op.starts_with('j') {
            let target = words
                .next()
                .and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok())
                .expect("a direct branch");
            if target >= end {
                break;
            }
            i = listing
                .iter()
                .position(|(a, _)| *a == target)
                .expect("a branch into the site");
        } else {
            i += 1;
        }
    }
    path
}

#[test]
fn xen_pv_patched_irq_sites_run_no_call_and_no_hypercall_when_nothing_is_pending() {
    std::hint::black_box(one_site_of_each_irq_op as fn());
    let forms: BTreeMap<(&str, u8), Sequence> = all_inline_forms()
        .map(|(hv, op, form)| ((hv, op as u8), form))
        .collect();
    let ours: Vec<_> = sites()
        .iter()
        .copied()
        .filter(|s| s.op != HotOp::Eoi as u8)
        .collect();
    assert_eq!(ours.len(), 4, "one site of each irq op in this binary");
    for site in &ours {
        let page = site.at & !0xfff;
        let span = site.at + usize::from(site.len) - page;
        // SAFETY: the pages of this binary's own text that hold the site,
        // made writable for the patch; nothing runs the site.
        let made = unsafe {
            libc::mprotect(
                page as *mut libc::c_void,
                span.div_ceil(4096) * 4096,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            )
        };
        assert_eq!(made, 0, "mprotect of the text");
    }
    let decide = |op: HotOp| match forms.get(&("xen_pv", op as u8)) {
        Some(form) => Patch::Inline(*form),
        None => Patch::Keep,
    };
    // SAFETY: the records are this binary's, their text is writable (above)
    // and no thread runs it.
    let applied = unsafe { apply(&ours, decide) };
    assert_eq!(
        applied.inline, 4,
        "every irq op has a Xen PV inline form that fits its site"
    );

    let mut report = String::new();
    for site in &ours {
        let op = HotOp::ALL[usize::from(site.op)];
        let len = usize::from(site.len);
        // SAFETY: the site's bytes, in this binary's text.
        let bytes = unsafe { std::slice::from_raw_parts(site.at as *const u8, len) };
        let listing = disassemble(bytes, site.at);
        let end = (site.at + len) as u64;
        report.push_str(&format!("{} ({len} bytes):\n", op.name()));
        for (address, insn) in &listing {
            report.push_str(&format!("  +{:2}  {insn}\n", address - site.at as u64));
        }
        let path = common_path(&listing, end);
        for insn in &path {
            for forbidden in [
                "call", "syscall", "int", "vmcall", "vmmcall", "hlt", "cli", "sti", "popf",
            ] {
                assert!(
                    insn.split_whitespace().next() != Some(forbidden),
                    "{}'s patched site runs `{insn}` when nothing is pending:\n{report}",
                    op.name()
                );
            }
        }
        let stores_to_gs = path.iter().filter(|i| i.contains("gs:")).count();
        assert!(
            stores_to_gs >= 1,
            "{} reaches vcpu_info through GS:\n{report}",
            op.name()
        );
        // The rare path's call, if any, goes to the op's callee-save entry.
        for (_, insn) in listing.iter().filter(|(_, i)| i.starts_with("call")) {
            let target = insn
                .split_whitespace()
                .nth(1)
                .and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok());
            assert_eq!(
                target,
                pvi_backends::direct::irq_callee_save(op).map(|a| a as u64),
                "{}'s rare-path call moved with the site:\n{report}",
                op.name()
            );
        }
    }
    println!("{report}");
    // The two the issue names, instruction by instruction.
    assert!(
        report.contains("irq_disable (9 bytes):\n  + 0  mov    BYTE PTR gs:0x41,0x1\n"),
        "{report}"
    );
    assert!(
        report.contains("irq_enable (25 bytes):\n  + 0  mov    BYTE PTR gs:0x41,0x0\n  + 9  cmp    BYTE PTR gs:0x40,0x0\n  +18  je "),
        "{report}"
    );
}
