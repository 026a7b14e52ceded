//! Stub conformance: every generated hypercall stub runs in this process
//! against an in-process emulator of its hypervisor (`conformance/
//! emulator.rs`). For every hypercall of the IDL, the number and each
//! argument arrive in the documented register, fixed registers hold their
//! values, the results come back in order, and the callee-saved registers
//! (rbx, rbp, r12–r15) survive.
//!
//! KVM's `vmcall`/`vmmcall` (and VMware's vmcall forms) do not trap from
//! user mode on these machines, which are VMs themselves, so those stubs run
//! as their generated twins with `ud2` in place of the instruction
//! (`conformance/trap/`); a disassembly test shows the twins differ only
//! there. VMware's `in eax, dx` faults by itself; Xen and Hyper-V call into
//! an mmap'd hypercall page of `ud2; ret` trampolines.

#[path = "conformance/emulator.rs"]
mod emulator;
#[path = "conformance/harness.rs"]
mod harness;
#[rustfmt::skip]
#[path = "conformance/trap/kvm.rs"]
mod trap_kvm;
#[rustfmt::skip]
#[path = "conformance/trap/vmware.rs"]
mod trap_vmware;

use emulator::{trap, Behaviour, Page, Seen};
use pvi_codegen::ast::{HvItem, Hypercall, Hypervisor};
use pvi_codegen::ir::{Number, Register};
use pvi_codegen::Model;
use pvi_sdk::generated::{hyperv, kvm, vmware, xen};
use pvi_sdk::types::*;

fn model() -> Model {
    let (_, result) = pvi_codegen::check_paths(&[pvi_tests::root().join("idl")]).unwrap();
    result.expect("idl/ checks clean")
}

/// A hypervisor's calling convention, read from the IDL.
struct Conv {
    number: String,
    args: Vec<String>,
    results: Vec<String>,
    fixed: Vec<(String, u64, Option<String>)>,
    stride: usize,
}

/// The convention as the generator reads it (`Model::convention`, the
/// typed IR), in register names the emulator's tables use.
fn convention(model: &Model, hv: &Hypervisor) -> Conv {
    let c = model
        .convention(&hv.name.name)
        .unwrap_or_else(|| panic!("{} has no convention", hv.name.name));
    let names = |regs: &[Register]| regs.iter().map(|r| r.name().to_string()).collect();
    Conv {
        number: match c.number {
            Number::Register(r) => r.name().to_string(),
            Number::Slot => "slot".to_string(),
        },
        args: names(&c.args),
        results: names(&c.results),
        fixed: c
            .fixed
            .iter()
            .map(|f| {
                let form = f.form.map(|f| f.name().to_string());
                (f.register.name().to_string(), f.value.value as u64, form)
            })
            .collect(),
        stride: c.page.as_ref().map_or(0, |p| p.stride as usize),
    }
}

fn hypercalls<'m>(model: &'m Model, hv: &str) -> (&'m Hypervisor, Vec<&'m Hypercall>) {
    let hv = model.hypervisors().find(|h| h.name.name == hv).unwrap();
    let calls = hv.items.iter().filter_map(|i| match i {
        HvItem::Hypercall(h) => Some(h),
        _ => None,
    });
    (hv, calls.collect())
}

/// Distinct argument values, recognisable in a failure.
fn args_for(number: i128, arity: usize) -> Vec<u64> {
    (0..arity)
        .map(|i| 0xa000_0000_0000 | ((number as u64) << 8) | i as u64)
        .collect()
}

/// Distinct response values for the result registers.
fn responses(count: usize) -> Vec<u64> {
    (0..count)
        .map(|i| 0x5e5e_0000_0000_0000 | i as u64)
        .collect()
}

/// Registers the real hypervisors may change besides their results,
/// written down independently of the IDL from the upstream guest code
/// (Linux: kvm_para.h kvm_hypercallN; xen/hypercall.h; mshyperv.h
/// hv_do_hypercall; vmware.h), so that the emulator behaves like them
/// rather than like the IDL says they behave.
fn real_clobbers(hv: &str) -> &'static [&'static str] {
    match hv {
        "kvm" => &[],
        "xen" => &["rdi", "rsi", "rdx", "r10", "r8"],
        "hyperv" => &["rcx", "rdx", "r8", "r9", "r10", "r11"],
        "vmware" => &[],
        // Xen PV makes Xen's hypercalls through the same kind of page.
        "xen_pv" => real_clobbers("xen"),
        other => panic!(
            "{other}: list the registers its hypercalls change (from its upstream guest code) in real_clobbers"
        ),
    }
}

#[test]
fn idl_clobbers_cover_what_the_hypervisors_really_change() {
    let model = model();
    for hv in model.hypervisors() {
        // A hypervisor without a convention makes no hypercalls: it changes
        // nothing, and `real_clobbers` still has to say so.
        let declared: Vec<&str> = model
            .convention(&hv.name.name)
            .map(|c| {
                c.clobbers
                    .iter()
                    .chain(&c.results)
                    .map(|r| r.name())
                    .collect()
            })
            .unwrap_or_default();
        for reg in real_clobbers(&hv.name.name) {
            assert!(
                declared.contains(reg),
                "{}: the hypervisor may change {reg}, but the IDL neither clobbers nor returns it",
                hv.name.name
            );
        }
    }
}

/// One stub call under test.
struct Call<'a> {
    /// `hypervisor hypercall (form)`, for messages.
    what: String,
    /// The instruction form used.
    form: &'a str,
    /// The call number.
    nr: u64,
    /// The arguments given.
    args: &'a [u64],
    /// The hypercall page slot entered, for slot conventions.
    slot: Option<u64>,
}

/// Check one trap: number, arguments and fixed registers where the
/// convention puts them; results as the hypervisor answered.
fn check(conv: &Conv, c: &Call, seen: &Seen, returned: &[u64], answered: &[u64]) {
    let (what, form, nr, args, slot) = (&c.what, c.form, c.nr, c.args, c.slot);
    match slot {
        Some(s) => assert_eq!(s, nr, "{what}: entered page slot {s}, expected {nr}"),
        None => assert_eq!(
            seen.reg(&conv.number),
            nr,
            "{what}: number not in {}",
            conv.number
        ),
    }
    for (i, (reg, value)) in conv.args.iter().zip(args).enumerate() {
        assert_eq!(seen.reg(reg), *value, "{what}: argument {i} not in {reg}");
    }
    for (reg, value, only) in &conv.fixed {
        if only.as_deref().is_none_or(|f| f == form) {
            assert_eq!(
                seen.reg(reg),
                *value,
                "{what}: fixed {reg} is {:#x}, expected {value:#x}",
                seen.reg(reg)
            );
        }
    }
    assert_eq!(returned, answered, "{what}: results came back wrong");
}

fn callee_saved_survive(what: &str, body: impl FnMut() + 'static) {
    let after = harness::callee_saved_after(body);
    assert_eq!(
        after,
        harness::marks(),
        "{what}: a callee-saved register (rbx, rbp, r12-r15) changed"
    );
}

macro_rules! raw_call {
    ($h:expr, $nr:expr, $a:expr, [$($n:literal => $f:ident($($i:literal),*)),*]) => {
        match $a.len() {
            $($n => {
                // SAFETY: the emulator is installed (emulator::lock) and
                // answers the trap this raw call raises.
                to_vec(unsafe { $h.$f($nr, $($a[$i]),*) })
            })*
            n => panic!("no call{n}"),
        }
    };
}

trait ToVec {
    fn to_vec(self) -> Vec<u64>;
}
impl ToVec for u64 {
    fn to_vec(self) -> Vec<u64> {
        vec![self]
    }
}
impl<const N: usize> ToVec for [u64; N] {
    fn to_vec(self) -> Vec<u64> {
        self.into()
    }
}
fn to_vec(v: impl ToVec) -> Vec<u64> {
    v.to_vec()
}

#[test]
fn kvm_every_hypercall_with_vmcall_and_vmmcall() {
    let _lock = emulator::lock();
    let model = model();
    let (hv, calls) = hypercalls(&model, "kvm");
    let conv = convention(&model, hv);
    let answer = responses(conv.results.len());
    let results: Vec<&str> = conv.results.iter().map(String::as_str).collect();
    let behaviour = Behaviour {
        results: &results,
        responses: &answer,
        scrambles: real_clobbers("kvm"),
    };
    for (form, instruction) in [
        ("vmcall", trap_kvm::Instruction::Vmcall),
        ("vmmcall", trap_kvm::Instruction::Vmmcall),
    ] {
        let h = trap_kvm::Hypercalls::new(instruction);
        for call in &calls {
            let args = args_for(call.number.value, call.params.len());
            let nr = call.number.value as u64;
            let (seen, returned) = trap(
                &behaviour,
                || raw_call!(h, nr, args, [0 => call0(), 1 => call1(0), 2 => call2(0, 1), 3 => call3(0, 1, 2), 4 => call4(0, 1, 2, 3)]),
            );
            check(
                &conv,
                &Call {
                    what: format!("kvm {} ({})", call.name.name, form),
                    form,
                    nr,
                    args: &args,
                    slot: None,
                },
                &seen,
                &returned,
                &answer,
            );
            let a = args.clone();
            callee_saved_survive(&format!("kvm {}", call.name.name), move || {
                let b = Behaviour {
                    results: &["rax"],
                    responses: &[0],
                    scrambles: &[],
                };
                let _ = trap(
                    &b,
                    || raw_call!(h, nr, a, [0 => call0(), 1 => call1(0), 2 => call2(0, 1), 3 => call3(0, 1, 2), 4 => call4(0, 1, 2, 3)]),
                );
            });
        }
    }
    println!("kvm: {} hypercalls x 2 forms conform", calls.len());
}

#[test]
fn xen_every_hypercall_through_the_hypercall_page() {
    let _lock = emulator::lock();
    let model = model();
    let (hv, calls) = hypercalls(&model, "xen");
    let conv = convention(&model, hv);
    let page = Page::new(conv.stride);
    // SAFETY: the page holds `ud2; ret` trampolines at every slot and lives
    // until the end of the test.
    let h = unsafe { xen::Hypercalls::new(page.base()) };
    let answer = responses(conv.results.len());
    let results: Vec<&str> = conv.results.iter().map(String::as_str).collect();
    let behaviour = Behaviour {
        results: &results,
        responses: &answer,
        scrambles: real_clobbers("xen"),
    };
    for call in &calls {
        let args = args_for(call.number.value, call.params.len());
        let nr = call.number.value as u64;
        let (seen, returned) = trap(
            &behaviour,
            || raw_call!(h, nr, args, [0 => call0(), 1 => call1(0), 2 => call2(0, 1), 3 => call3(0, 1, 2), 4 => call4(0, 1, 2, 3)]),
        );
        let slot = (seen.rip() - page.base() as u64) / conv.stride as u64;
        check(
            &conv,
            &Call {
                what: format!("xen {} ({})", call.name.name, "page"),
                form: "page",
                nr,
                args: &args,
                slot: Some(slot),
            },
            &seen,
            &returned,
            &answer,
        );
        let base = page.base() as u64;
        let a = args.clone();
        callee_saved_survive(&format!("xen {}", call.name.name), move || {
            // SAFETY: as above; the page outlives this closure's call.
            let h = unsafe { xen::Hypercalls::new(base as *const u8) };
            let b = Behaviour {
                results: &["rax"],
                responses: &[0],
                scrambles: real_clobbers("xen"),
            };
            let _ = trap(
                &b,
                || raw_call!(h, nr, a, [0 => call0(), 1 => call1(0), 2 => call2(0, 1), 3 => call3(0, 1, 2), 4 => call4(0, 1, 2, 3)]),
            );
        });
    }
    println!("xen: {} hypercalls conform", calls.len());
}

#[test]
fn hyperv_every_hypercall_through_the_hypercall_page() {
    let _lock = emulator::lock();
    let model = model();
    let (hv, calls) = hypercalls(&model, "hyperv");
    let conv = convention(&model, hv);
    let page = Page::new(conv.stride);
    // SAFETY: the page holds a `ud2; ret` trampoline at its start and
    // lives until the end of the test.
    let h = unsafe { hyperv::Hypercalls::new(page.base()) };
    let answer = responses(conv.results.len());
    let results: Vec<&str> = conv.results.iter().map(String::as_str).collect();
    let behaviour = Behaviour {
        results: &results,
        responses: &answer,
        scrambles: real_clobbers("hyperv"),
    };
    for call in &calls {
        let args = args_for(call.number.value, call.params.len());
        let nr = call.number.value as u64;
        let (seen, returned) = trap(
            &behaviour,
            || raw_call!(h, nr, args, [0 => call0(), 1 => call1(0), 2 => call2(0, 1)]),
        );
        assert_eq!(
            seen.rip(),
            page.base() as u64,
            "hyperv {}: did not enter at the page start",
            call.name.name
        );
        check(
            &conv,
            &Call {
                what: format!("hyperv {} ({})", call.name.name, "page"),
                form: "page",
                nr,
                args: &args,
                slot: None,
            },
            &seen,
            &returned,
            &answer,
        );
        let base = page.base() as u64;
        let a = args.clone();
        callee_saved_survive(&format!("hyperv {}", call.name.name), move || {
            // SAFETY: as above; the page outlives this closure's call.
            let h = unsafe { hyperv::Hypercalls::new(base as *const u8) };
            let b = Behaviour {
                results: &["rax"],
                responses: &[0],
                scrambles: real_clobbers("hyperv"),
            };
            let _ = trap(
                &b,
                || raw_call!(h, nr, a, [0 => call0(), 1 => call1(0), 2 => call2(0, 1)]),
            );
        });
    }
    println!("hyperv: {} hypercalls conform", calls.len());
}

#[test]
fn vmware_every_command_through_port_vmcall_and_vmmcall() {
    let _lock = emulator::lock();
    let model = model();
    let (hv, calls) = hypercalls(&model, "vmware");
    let conv = convention(&model, hv);
    let answer = responses(conv.results.len());
    let results: Vec<&str> = conv.results.iter().map(String::as_str).collect();
    let behaviour = Behaviour {
        results: &results,
        responses: &answer,
        scrambles: real_clobbers("vmware"),
    };
    for call in &calls {
        let args = args_for(call.number.value, call.params.len());
        let nr = call.number.value as u64;
        // The port form is the real stub: `in` faults in user mode.
        let h = vmware::Hypercalls::new(vmware::Instruction::InPort);
        let (seen, returned) = trap(
            &behaviour,
            || raw_call!(h, nr, args, [0 => call0(), 1 => call1(0), 2 => call2(0, 1), 3 => call3(0, 1, 2)]),
        );
        check(
            &conv,
            &Call {
                what: format!("vmware {} ({})", call.name.name, "in_port"),
                form: "in_port",
                nr,
                args: &args,
                slot: None,
            },
            &seen,
            &returned,
            &answer,
        );
        for (form, instruction) in [
            ("vmcall", trap_vmware::Instruction::Vmcall),
            ("vmmcall", trap_vmware::Instruction::Vmmcall),
        ] {
            let h = trap_vmware::Hypercalls::new(instruction);
            let (seen, returned) = trap(
                &behaviour,
                || raw_call!(h, nr, args, [0 => call0(), 1 => call1(0), 2 => call2(0, 1), 3 => call3(0, 1, 2)]),
            );
            check(
                &conv,
                &Call {
                    what: format!("vmware {} ({})", call.name.name, form),
                    form,
                    nr,
                    args: &args,
                    slot: None,
                },
                &seen,
                &returned,
                &answer,
            );
        }
        let a = args.clone();
        callee_saved_survive(&format!("vmware {}", call.name.name), move || {
            let h = vmware::Hypercalls::new(vmware::Instruction::InPort);
            let b = Behaviour {
                results: &["rax", "rbx", "rcx", "rdx", "rsi", "rdi"],
                responses: &[1, 2, 3, 4, 5, 6],
                scrambles: &[],
            };
            let _ = trap(
                &b,
                || raw_call!(h, nr, a, [0 => call0(), 1 => call1(0), 2 => call2(0, 1), 3 => call3(0, 1, 2)]),
            );
        });
    }
    println!("vmware: {} commands x 3 forms conform", calls.len());
}

#[test]
fn typed_wrappers_convert_arguments_results_and_status() {
    let _lock = emulator::lock();
    // KVM: a newtype argument, and a negated errno becoming a PvError.
    let h = trap_kvm::Hypercalls::new(trap_kvm::Instruction::Vmcall);
    let ok = Behaviour {
        results: &["rax"],
        responses: &[0],
        scrambles: &[],
    };
    // SAFETY: the emulator is installed and answers this call's trap.
    let (seen, r) = trap(&ok, || unsafe { h.kvm_hc_kick_cpu(0, ApicId(7)) });
    assert_eq!(
        (seen.reg("rax"), seen.reg("rbx"), seen.reg("rcx")),
        (kvm::KVM_HC_KICK_CPU, 0, 7)
    );
    assert_eq!(r, Ok(0));
    let enosys = (kvm::KVM_ENOSYS as u64).wrapping_neg();
    let fail = Behaviour {
        results: &["rax"],
        responses: &[enosys],
        scrambles: &[],
    };
    // SAFETY: the emulator is installed and answers this call's trap.
    let (_, r) = trap(&fail, || unsafe { h.kvm_hc_kick_cpu(0, ApicId(7)) });
    assert_eq!(
        r,
        Err(PvError::new(
            ErrorKind::Unsupported,
            ErrorOrigin::Kvm(kvm::KVM_ENOSYS)
        ))
    );

    // Hyper-V: a fast call sets the fast bit in the control word; a status
    // in the low 16 bits of rax becomes a PvError.
    let page = Page::new(0);
    // SAFETY: the page holds a `ud2; ret` trampoline and outlives the calls.
    let hv = unsafe { hyperv::Hypercalls::new(page.base()) };
    let hv_ok = Behaviour {
        results: &["rax"],
        responses: &[0],
        scrambles: real_clobbers("hyperv"),
    };
    // SAFETY: the emulator is installed and answers this call's trap.
    let (seen, r) = trap(&hv_ok, || unsafe {
        hv.hvcall_send_ipi(Vector(0x40), CpuSet(0b1010))
    });
    assert_eq!(
        seen.reg("rcx"),
        hyperv::HVCALL_SEND_IPI | 1 << 16,
        "fast bit"
    );
    assert_eq!((seen.reg("rdx"), seen.reg("r8")), (0x40, 0b1010));
    assert!(r.is_ok());
    let status = hyperv::HV_STATUS_INVALID_HYPERCALL_CODE as u64;
    let hv_fail = Behaviour {
        results: &["rax"],
        responses: &[status],
        scrambles: &[],
    };
    // SAFETY: the emulator is installed and answers this call's trap.
    let (_, r) = trap(&hv_fail, || unsafe {
        hv.hvcall_send_ipi(Vector(0x40), CpuSet(1))
    });
    assert_eq!(
        r.map_err(|e| e.origin),
        Err(ErrorOrigin::Hyperv(status as i64))
    );

    // Hyper-V: a rep call puts its rep count in the control word.
    let flush = hyperv::hv_tlb_flush::ZERO;
    // SAFETY: the emulator is installed and answers this call's trap.
    let (seen, r) = trap(&hv_ok, || unsafe {
        hv.hvcall_flush_virtual_address_list(3, &flush, 0)
    });
    assert_eq!(
        seen.reg("rcx"),
        hyperv::HVCALL_FLUSH_VIRTUAL_ADDRESS_LIST | 3 << hyperv::HV_HYPERCALL_REP_COMP_OFFSET,
        "rep count"
    );
    assert_eq!(
        (seen.reg("rdx"), seen.reg("r8")),
        (core::ptr::from_ref(&flush) as u64, 0)
    );
    assert!(r.is_ok());

    // Xen: the page slot is the call number; an argument structure's
    // address arrives as it was given.
    let xpage = Page::new(32);
    // SAFETY: as above.
    let x = unsafe { xen::Hypercalls::new(xpage.base()) };
    let shutdown = xen::sched_shutdown {
        reason: xen::SHUTDOWN_crash,
    };
    let address = core::ptr::from_ref(&shutdown) as u64;
    let xen_ok = Behaviour {
        results: &["rax"],
        responses: &[0],
        scrambles: real_clobbers("xen"),
    };
    // SAFETY: the emulator is installed and answers this call's trap.
    let (seen, r) = trap(&xen_ok, || unsafe {
        x.hypervisor_sched_op(xen::SCHEDOP_shutdown, address)
    });
    assert_eq!(
        (seen.rip() - xpage.base() as u64) / 32,
        xen::__HYPERVISOR_sched_op
    );
    assert_eq!(
        (seen.reg("rdi"), seen.reg("rsi")),
        (xen::SCHEDOP_shutdown as u64, address)
    );
    assert_eq!(r, Ok(0));

    // VMware: named results from six registers.
    let vm = vmware::Hypercalls::new(vmware::Instruction::InPort);
    let answer = Behaviour {
        results: &["rax", "rbx", "rcx", "rdx", "rsi", "rdi"],
        responses: &[6, 0x564D5868, 2, 4, 5, 6],
        scrambles: &[],
    };
    // SAFETY: the emulator is installed and answers this call's trap.
    let (seen, out) = trap(&answer, || unsafe { vm.bdoor_cmd_getversion(u32::MAX) });
    assert_eq!(
        (seen.reg("rcx"), seen.reg("rbx")),
        (vmware::BDOOR_CMD_GETVERSION, u32::MAX as u64)
    );
    assert_eq!((out.version, out.magic, out.vmx_type), (6, 0x564D5868, 2));
}

/// The size of the function symbol at `address` in `exe`, from `nm`.
fn symbol_size(exe: &std::path::Path, address: u64) -> Option<u64> {
    let out = std::process::Command::new("nm")
        .args(["-S", "--defined-only"])
        .arg(exe)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let at = u64::from_str_radix(fields.next()?, 16).ok()?;
            let size = u64::from_str_radix(fields.next()?, 16).ok()?;
            let kind = fields.next()?;
            (at == address && kind.eq_ignore_ascii_case("t")).then_some(size)
        })
}

/// The disassembly of a function in this test binary, one instruction per
/// line, jump targets inside the function written as instruction indices
/// (so that a 2-byte `ud2` in place of a 3-byte `vmcall` shifts nothing).
fn disassemble(symbol_part: &str) -> Option<Vec<String>> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new("objdump")
        .args(["-d", "-C", "--no-show-raw-insn", "-M", "intel"])
        .arg(&exe)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let wanted = format!("<{symbol_part}>:");
    let mut lines = text.lines().skip_while(|l| !l.ends_with(&wanted));
    let start = u64::from_str_radix(lines.next()?.split_whitespace().next()?, 16).ok()?;
    // The symbol's size bounds it: a real stub's fix-up landings follow
    // it in the text, in a section of their own, and are not its code.
    let end = start + symbol_size(&exe, start)?;
    let mut listing = Vec::new();
    for line in lines.take_while(|l| !l.trim().is_empty()) {
        let (address, insn) = line.split_once(":\t")?;
        let address = u64::from_str_radix(address.trim(), 16).ok()?;
        if address >= end {
            break;
        }
        listing.push((
            address,
            insn.split(" <").next().unwrap_or(insn).trim().to_string(),
        ));
    }
    // Alignment padding after the last instruction is not the function's.
    while listing
        .last()
        .is_some_and(|(_, i)| i == "int3" || i.starts_with("nop") || i.contains(" nop"))
    {
        listing.pop();
    }
    let body = listing
        .iter()
        .map(|(_, insn)| match insn.split_once(' ') {
            Some((op, target)) if op.starts_with('j') => {
                match u64::from_str_radix(target.trim(), 16) {
                    Ok(t) => match listing.iter().position(|(a, _)| *a == t) {
                        Some(index) => format!("{op} #{index}"),
                        None => insn.clone(),
                    },
                    Err(_) => insn.clone(),
                }
            }
            _ => insn.clone(),
        })
        .collect();
    Some(body)
}

#[test]
fn trapping_twins_differ_from_the_real_stubs_only_in_the_instruction() {
    if !cfg!(debug_assertions) {
        // Optimized builds merge the twins' identical `ud2` arms, so the
        // two functions no longer line up instruction by instruction.
        println!("skipped: needs a debug build (cargo test without --release)");
        return;
    }
    if std::process::Command::new("objdump")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("objdump (binutils) is needed for this test");
    }
    // Keep both copies of call2 in the binary.
    std::hint::black_box(
        kvm::Hypercalls::call2 as unsafe fn(kvm::Hypercalls, u64, u64, u64) -> u64,
    );
    std::hint::black_box(
        trap_kvm::Hypercalls::call2 as unsafe fn(trap_kvm::Hypercalls, u64, u64, u64) -> u64,
    );
    std::hint::black_box(
        vmware::Hypercalls::call1 as unsafe fn(vmware::Hypercalls, u64, u64) -> [u64; 6],
    );
    std::hint::black_box(
        trap_vmware::Hypercalls::call1 as unsafe fn(trap_vmware::Hypercalls, u64, u64) -> [u64; 6],
    );
    for (real, twin) in [
        (
            "pvi_sdk::generated::kvm::Hypercalls::call2",
            "conformance::trap_kvm::Hypercalls::call2",
        ),
        (
            "pvi_sdk::generated::vmware::Hypercalls::call1",
            "conformance::trap_vmware::Hypercalls::call1",
        ),
    ] {
        let a = disassemble(real).unwrap_or_else(|| panic!("{real} not found in the disassembly"));
        let b = disassemble(twin).unwrap_or_else(|| panic!("{twin} not found in the disassembly"));
        assert_eq!(
            a.len(),
            b.len(),
            "{real}: different instruction counts\n{a:#?}\n{b:#?}"
        );
        let mut replaced = 0;
        for (x, y) in a.iter().zip(&b) {
            if x == y {
                continue;
            }
            assert!(
                (x == "vmcall" || x == "vmmcall") && y == "ud2",
                "{real}: `{x}` became `{y}`; only vmcall/vmmcall may differ"
            );
            replaced += 1;
        }
        assert_eq!(
            replaced, 2,
            "{real}: expected vmcall and vmmcall each replaced once"
        );
    }
}

#[test]
fn the_linked_fixup_table_names_the_stubs_hypercall_instructions() {
    // This binary links the generated stubs, as a kernel does, through the
    // host's linker and no linker script.
    std::hint::black_box(
        kvm::Hypercalls::call2 as unsafe fn(kvm::Hypercalls, u64, u64, u64) -> u64,
    );
    let table = pvi_sdk::fixup::table();
    assert!(!table.is_empty(), "no fix-up records found");
    for fixup in table {
        // SAFETY: `at` is the address of an instruction in this binary's
        // text, which is mapped and readable.
        let bytes = unsafe { std::slice::from_raw_parts(fixup.at as *const u8, 3) };
        assert!(
            bytes == [0x0f, 0x01, 0xc1] || bytes == [0x0f, 0x01, 0xd9],
            "{fixup:x?} is not at a vmcall or vmmcall: {bytes:02x?}"
        );
        assert_eq!(
            pvi_sdk::fixup::landing(table, fixup.at),
            Some(fixup.landing)
        );
    }
}
