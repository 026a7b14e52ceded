//! A hypervisor's calling convention, resolved: what its `convention { … }`
//! block means, typed. The checker validates the statements; this is made
//! once, from a checked block, and the stubs, the chains, the trap twins
//! and the conformance tests all read it rather than the statements.

use crate::ast::{self, ChoiceCond, ConvStmt, HvItem, Hypervisor};

/// A general-purpose register, by its 64-bit name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Register {
    /// `rax`
    Rax,
    /// `rbx`: LLVM reserves it, so a stub swaps it with a scratch register.
    Rbx,
    /// `rcx`
    Rcx,
    /// `rdx`
    Rdx,
    /// `rsi`
    Rsi,
    /// `rdi`
    Rdi,
    /// `rbp`
    Rbp,
    /// `rsp`
    Rsp,
    /// `r8`
    R8,
    /// `r9`
    R9,
    /// `r10`
    R10,
    /// `r11`
    R11,
    /// `r12`
    R12,
    /// `r13`
    R13,
    /// `r14`
    R14,
    /// `r15`
    R15,
}

impl Register {
    /// Every register, in declaration order.
    pub const ALL: [Register; 16] = [
        Register::Rax,
        Register::Rbx,
        Register::Rcx,
        Register::Rdx,
        Register::Rsi,
        Register::Rdi,
        Register::Rbp,
        Register::Rsp,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
        Register::R12,
        Register::R13,
        Register::R14,
        Register::R15,
    ];

    /// Every register's name as the IDL and `asm!` write it, in the
    /// order of [`Register::ALL`]: what the checker accepts.
    pub const NAMES: [&'static str; 16] = [
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15",
    ];

    /// The register's name as the IDL and `asm!` write it.
    pub fn name(self) -> &'static str {
        Register::NAMES[self as usize]
    }

    /// The register called `name`.
    pub fn named(name: &str) -> Option<Register> {
        Register::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// How the guest enters the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Form {
    /// `vmcall`: Intel VMX.
    Vmcall,
    /// `vmmcall`: AMD SVM.
    Vmmcall,
    /// A `call` into the hypercall page the hypervisor filled in.
    Page,
    /// `in eax, dx` on a backdoor port (VMware).
    InPort,
}

impl Form {
    /// Every form, as the IDL names them.
    pub const ALL: [Form; 4] = [Form::Vmcall, Form::Vmmcall, Form::Page, Form::InPort];

    /// Every form's name in the IDL, in the order of [`Form::ALL`].
    pub const NAMES: [&'static str; 4] = ["vmcall", "vmmcall", "page", "in_port"];

    /// The form's name in the IDL.
    pub fn name(self) -> &'static str {
        Form::NAMES[self as usize]
    }

    /// The form called `name`.
    pub fn named(name: &str) -> Option<Form> {
        Form::ALL.into_iter().find(|f| f.name() == name)
    }

    /// A hypercall instruction (which a host test replaces by `ud2`).
    pub fn is_hypercall_instruction(self) -> bool {
        matches!(self, Form::Vmcall | Form::Vmmcall)
    }
}

/// Where the call number goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Number {
    /// In a register.
    Register(Register),
    /// It picks the slot of the hypercall page that is called.
    Slot,
}

/// How a call reports failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The first result is 0/positive, or a negated error code (Linux, Xen, KVM).
    NegatedErrno,
    /// The low 16 bits of the first result are a status, 0 for success
    /// (Hyper-V's HV_STATUS).
    HvStatus,
    /// Calls do not fail by a status (VMware's backdoor).
    None,
}

impl Status {
    /// Every style's name in the IDL, in declaration order.
    pub const NAMES: [&'static str; 3] = ["negated_errno", "hv_status", "none"];

    /// The style's name in the IDL.
    pub fn name(self) -> &'static str {
        Status::NAMES[self as usize]
    }

    /// The style called `name`.
    pub fn named(name: &str) -> Option<Status> {
        [Status::NegatedErrno, Status::HvStatus, Status::None]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// A register that holds a fixed value on entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fixed {
    /// The register.
    pub register: Register,
    /// Its value, as written in the IDL (with its text, for generated code).
    pub value: ast::Int,
    /// Only when entering with this form; `None`: always.
    pub form: Option<Form>,
}

/// What decides that a [`Choice`] applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The CPU's vendor string (CPUID leaf 0: ebx, edx, ecx) is one of these.
    Vendor(Vec<[u8; 12]>),
    /// The hypervisor announces this feature bit.
    Feature(String),
}

/// One rule of `choose`: this form, when the condition holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The form.
    pub form: Form,
    /// When.
    pub when: Condition,
}

/// The hypercall page: where its address is registered, and the bytes
/// between two hypercalls' entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The MSR, or the leaf register that names the MSR.
    pub register_with: ast::Path,
    /// Bytes per entry.
    pub stride: u64,
}

/// A calling convention, typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Convention {
    /// The forms that may enter, in the IDL's order (the first is the default).
    pub forms: Vec<Form>,
    /// The `choose` rules, in order: the first that holds picks the form.
    pub choices: Vec<Choice>,
    /// The hypercall page, if a form is `page`.
    pub page: Option<Page>,
    /// Where the call number goes.
    pub number: Number,
    /// Argument registers, in order.
    pub args: Vec<Register>,
    /// Result registers, in order.
    pub results: Vec<Register>,
    /// Registers with fixed values.
    pub fixed: Vec<Fixed>,
    /// Registers the hypervisor may change besides the results.
    pub clobbers: Vec<Register>,
    /// Whether it may write memory (Rust's `asm!` assumes so unless told).
    pub clobbers_memory: bool,
    /// The bit of the control word that makes a call register-only.
    pub fast_bit: Option<u32>,
    /// Where a rep call's count goes in the control word.
    pub rep_shift: Option<u32>,
    /// How calls report failure.
    pub status: Status,
    /// What the first result holds for a call the hypervisor does not
    /// have (`-ENOSYS` for a negated-errno convention, from the IDL's
    /// `error … => unsupported`): what a faulting hypercall instruction is
    /// made to return.
    pub unsupported: Option<i128>,
}

impl Convention {
    /// The convention of `hv`, which passed the checker; `None` for a
    /// hypervisor without one (it makes no hypercalls).
    pub fn of(hv: &Hypervisor) -> Option<Convention> {
        let block = hv.all_items().find_map(|i| match i {
            HvItem::Convention(c) => Some(c),
            _ => None,
        })?;
        let registers = |names: &[ast::Ident]| -> Vec<Register> {
            names
                .iter()
                .filter_map(|n| Register::named(&n.name))
                .collect()
        };
        let mut c = Convention {
            forms: Vec::new(),
            choices: Vec::new(),
            page: None,
            number: Number::Slot,
            args: Vec::new(),
            results: Vec::new(),
            fixed: Vec::new(),
            clobbers: Vec::new(),
            clobbers_memory: false,
            fast_bit: None,
            rep_shift: None,
            status: Status::None,
            unsupported: None,
        };
        for stmt in &block.stmts {
            match stmt {
                ConvStmt::Instruction(forms, _) => {
                    c.forms = forms.iter().filter_map(|f| Form::named(&f.name)).collect()
                }
                ConvStmt::Page(path, stride, _) => {
                    c.page = Some(Page {
                        register_with: path.clone(),
                        stride: stride.value as u64,
                    })
                }
                ConvStmt::Number(r, _) => {
                    c.number = Register::named(&r.name).map_or(Number::Slot, Number::Register)
                }
                ConvStmt::Args(r, _) => c.args = registers(r),
                ConvStmt::Result(r, _) => c.results = registers(r),
                ConvStmt::Fixed(pairs, _) => {
                    c.fixed = pairs
                        .iter()
                        .filter_map(|p| {
                            Some(Fixed {
                                register: Register::named(&p.reg.name)?,
                                value: p.value.clone(),
                                form: p.form.as_ref().and_then(|f| Form::named(&f.name)),
                            })
                        })
                        .collect()
                }
                ConvStmt::Clobbers(r, _) => {
                    c.clobbers = registers(r);
                    c.clobbers_memory = r.iter().any(|n| n.name == "memory");
                }
                ConvStmt::FastBit(b, _) => c.fast_bit = Some(b.value as u32),
                ConvStmt::RepShift(b, _) => c.rep_shift = Some(b.value as u32),
                ConvStmt::Status(s, _) => c.status = Status::named(&s.name).unwrap_or(Status::None),
                ConvStmt::Choose(rules, _) => {
                    c.choices = rules
                        .iter()
                        .filter_map(|r| {
                            let when = match &r.when {
                                ChoiceCond::Vendor(names) => Condition::Vendor(
                                    names
                                        .iter()
                                        .filter_map(|n| n.value.as_slice().try_into().ok())
                                        .collect(),
                                ),
                                ChoiceCond::Feature(bit) => Condition::Feature(bit.name.clone()),
                            };
                            Some(Choice {
                                form: Form::named(&r.form.name)?,
                                when,
                            })
                        })
                        .collect()
                }
            }
        }
        if c.status == Status::NegatedErrno {
            c.unsupported = hv.all_items().find_map(|i| match i {
                HvItem::Error(e) if e.kind.name == "unsupported" => Some(-e.code.value),
                _ => None,
            });
        }
        Some(c)
    }

    /// Whether calls go through the hypercall page.
    pub fn uses_page(&self) -> bool {
        self.forms.contains(&Form::Page)
    }

    /// The form used when no `choose` rule holds: the first listed.
    pub fn default_form(&self) -> Form {
        self.forms.first().copied().unwrap_or(Form::Vmcall)
    }

    /// Whether a call can fail by its status.
    pub fn reports_failure(&self) -> bool {
        self.status != Status::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_itself() {
        for r in Register::ALL {
            assert_eq!(Register::named(r.name()), Some(r));
        }
        for f in Form::ALL {
            assert_eq!(Form::named(f.name()), Some(f));
        }
        for s in [Status::NegatedErrno, Status::HvStatus, Status::None] {
            assert_eq!(Status::named(s.name()), Some(s));
        }
        assert_eq!(Register::named("eax"), None, "64-bit names only");
    }
}
