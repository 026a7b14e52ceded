//! Each mapped op's fallback chain, resolved: for every step, the mechanism
//! it uses with the numbers behind its names, the feature bits it needs,
//! the hypervisor version it needs and the units it reads in. Made once,
//! from checked `map` blocks; the chains' generator, `pvi explain`, the
//! reference pages and the verification matrix read it instead of
//! resolving names in the syntax tree again.

use crate::ast::{self, AttrArg, Expr, HvItem, Hypervisor, Meta, Source, TypeDecl};
use std::collections::BTreeMap;

/// A hypervisor version, (major, minor, patch).
pub type Version = (u64, u64, u64);

/// A feature bit a step needs, and the set it is declared in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureBit {
    /// The `features` set (its generated type's name).
    pub set: String,
    /// The bit's upstream name.
    pub bit: String,
}

/// A step that applies only when an enum parameter has one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// The parameter.
    pub param: String,
    /// The variant it must be.
    pub variant: String,
}

/// What a step does, with the numbers behind the names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// A hypercall.
    Hypercall {
        /// Its upstream name.
        name: String,
        /// Its number as the IDL writes it.
        number: String,
        /// `each PARAM`: one call per byte of that `bytes` parameter.
        per_byte: Option<String>,
    },
    /// An MSR read, converted to the op's unit.
    MsrRead {
        /// Its upstream name.
        name: String,
        /// Its index as the IDL writes it.
        index: String,
        /// The unit its value is in.
        unit: Option<String>,
    },
    /// An MSR write.
    MsrWrite {
        /// Its upstream name.
        name: String,
        /// Its index as the IDL writes it.
        index: String,
    },
    /// A shared structure.
    Shared {
        /// The structure.
        structure: String,
        /// The field read, if one is named.
        field: Option<String>,
        /// The unit that field is in.
        unit: Option<String>,
        /// How the guest registers it: the MSR or hypercall's name and
        /// number ("MSR 0x…", "hypercall 34"); `None`: the platform
        /// supplies its address.
        registered_by: Option<(String, String)>,
    },
    /// A CPUID leaf register.
    Cpuid {
        /// The leaf's upstream name.
        leaf: String,
        /// Its number as the IDL writes it.
        address: String,
        /// The register, 0 to 3 for eax, ebx, ecx, edx.
        register: usize,
        /// The unit its value is in.
        unit: Option<String>,
    },
    /// The backend's own method.
    Routine(String),
    /// Nothing to do.
    Nop,
    /// The native lowering.
    Native,
}

impl Mechanism {
    /// The step's keyword: what coverage tables and the matrix show.
    pub fn keyword(&self) -> &'static str {
        match self {
            Mechanism::Hypercall { .. } => "hypercall",
            Mechanism::MsrRead { .. } | Mechanism::MsrWrite { .. } => "msr",
            Mechanism::Shared { .. } => "shared",
            Mechanism::Cpuid { .. } => "cpuid",
            Mechanism::Routine(_) => "routine",
            Mechanism::Nop => "nop",
            Mechanism::Native => "native",
        }
    }
}

/// One step of a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Its number in the chain, from 1 (0 is the native lowering's record).
    pub number: usize,
    /// Its IDL text, without the `;`: what plans, `explain` and the
    /// reference pages show.
    pub text: String,
    /// What it does.
    pub mechanism: Mechanism,
    /// The feature bits it needs, all of them.
    pub requires: Vec<FeatureBit>,
    /// When it applies, if only for one value of a parameter.
    pub guard: Option<Guard>,
    /// The oldest hypervisor version that has everything it uses: the
    /// newest `@hv_since` of its hypercall, MSR, leaf and constants.
    pub needs_version: Option<Version>,
    /// The step as written: its argument expressions, checked, which the
    /// generator turns into code.
    pub syntax: ast::Step,
}

/// An op's chain on one hypervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The op.
    pub op: String,
    /// Its steps, in order; the last is `native`.
    pub steps: Vec<Step>,
}

impl Chain {
    /// The keywords of its steps, `hypercall → native`.
    pub fn mechanisms(&self) -> String {
        self.steps
            .iter()
            .map(|s| s.mechanism.keyword())
            .collect::<Vec<_>>()
            .join(" → ")
    }
}

/// The chains of `hv`, in its file's order, resolved against its
/// declarations and the model's `types`.
pub fn chains_of(hv: &Hypervisor, types: &BTreeMap<String, TypeDecl>) -> Vec<Chain> {
    let r = Resolver { hv, types };
    hv.items
        .iter()
        .filter_map(|i| match i {
            HvItem::Map(m) => Some(Chain {
                op: m.op.name.clone(),
                steps: m
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| r.step(i + 1, s))
                    .collect(),
            }),
            _ => None,
        })
        .collect()
}

struct Resolver<'a> {
    hv: &'a Hypervisor,
    types: &'a BTreeMap<String, TypeDecl>,
}

impl Resolver<'_> {
    fn step(&self, number: usize, s: &ast::Step) -> Step {
        Step {
            number,
            text: crate::fmt::step_text(s).trim_end_matches(';').to_string(),
            mechanism: self.mechanism(&s.kind),
            requires: s
                .requires
                .iter()
                .filter_map(|r| self.feature(&r.name))
                .collect(),
            guard: s.guard.as_ref().map(|g| Guard {
                param: g.param.name.clone(),
                variant: g.variant.name.clone(),
            }),
            needs_version: self.needs_version(&s.kind),
            syntax: s.clone(),
        }
    }

    fn mechanism(&self, kind: &ast::StepKind) -> Mechanism {
        use ast::StepKind as K;
        match kind {
            K::Hypercall(name, args) => Mechanism::Hypercall {
                name: name.name.clone(),
                number: self.hypercall_number(&name.name).unwrap_or_default(),
                per_byte: args.iter().find_map(|a| match a {
                    Expr::Each(p, _) => Some(p.name.clone()),
                    _ => None,
                }),
            },
            K::MsrRead(name, _) => {
                let msr = self.msr(&name.name);
                Mechanism::MsrRead {
                    name: name.name.clone(),
                    index: msr.map(|m| m.index.text.clone()).unwrap_or_default(),
                    unit: msr
                        .and_then(|m| m.ty.as_ref())
                        .and_then(|t| crate::model::unit_of(self.types, t)),
                }
            }
            K::MsrWrite(name, _) => Mechanism::MsrWrite {
                name: name.name.clone(),
                index: self
                    .msr(&name.name)
                    .map(|m| m.index.text.clone())
                    .unwrap_or_default(),
            },
            K::Shared(path, _, source) => {
                let field = path.member.as_ref().map(|m| m.name.clone());
                let unit = match self.types.get(&path.base.name) {
                    Some(TypeDecl::Struct(st)) => st
                        .fields
                        .iter()
                        .find(|f| Some(&f.name.name) == field.as_ref())
                        .and_then(|f| crate::model::unit_of(self.types, &f.ty)),
                    _ => None,
                };
                let registered_by = match source {
                    Source::Via(via) => {
                        let detail = self
                            .msr(&via.name)
                            .map(|m| format!("MSR {}", m.index.text))
                            .or_else(|| {
                                self.hypercall_number(&via.name)
                                    .map(|n| format!("hypercall {n}"))
                            })
                            .unwrap_or_default();
                        Some((via.name.clone(), detail))
                    }
                    Source::Platform(_) => None,
                };
                Mechanism::Shared {
                    structure: path.base.name.clone(),
                    field,
                    unit,
                    registered_by,
                }
            }
            K::Cpuid(path, _) => {
                let register = path.member.as_ref().map_or("eax", |m| m.name.as_str());
                let leaf = self.hv.all_items().find_map(|i| match i {
                    HvItem::Leaf(l) if l.name.name == path.base.name => Some(l),
                    _ => None,
                });
                Mechanism::Cpuid {
                    leaf: path.base.name.clone(),
                    address: leaf.map(|l| l.address.text.clone()).unwrap_or_default(),
                    register: ["eax", "ebx", "ecx", "edx"]
                        .iter()
                        .position(|r| *r == register)
                        .unwrap_or(0),
                    unit: leaf
                        .and_then(|l| l.registers.iter().find(|r| r.name.name == register))
                        .and_then(|r| crate::model::unit_of(self.types, &r.ty)),
                }
            }
            K::Routine(name) => Mechanism::Routine(name.name.clone()),
            K::Nop => Mechanism::Nop,
            K::Native => Mechanism::Native,
        }
    }

    fn msr(&self, name: &str) -> Option<&ast::Msr> {
        self.hv.all_items().find_map(|i| match i {
            HvItem::Msr(m) if m.name.name == name => Some(m),
            _ => None,
        })
    }

    fn hypercall_number(&self, name: &str) -> Option<String> {
        self.hv.all_items().find_map(|i| match i {
            HvItem::Hypercall(h) if h.name.name == name => Some(h.number.text.clone()),
            _ => None,
        })
    }

    fn feature(&self, bit: &str) -> Option<FeatureBit> {
        self.hv.all_items().find_map(|i| match i {
            HvItem::Features(f) if f.bits.iter().any(|b| b.name.name == bit) => Some(FeatureBit {
                set: f.name.name.clone(),
                bit: bit.to_string(),
            }),
            _ => None,
        })
    }

    /// The newest `@hv_since` among what the step uses.
    fn needs_version(&self, kind: &ast::StepKind) -> Option<Version> {
        use ast::StepKind as K;
        fn names<'e>(e: &'e Expr, out: &mut Vec<&'e str>) {
            match e {
                Expr::Name(n) => out.push(&n.name),
                Expr::Struct(_, fields, _) => fields.iter().for_each(|(_, v)| names(v, out)),
                Expr::As(inner, _, _) => names(inner, out),
                Expr::Int(_) | Expr::Member(..) | Expr::Each(..) => {}
            }
        }
        let mut used = Vec::new();
        match kind {
            K::Hypercall(h, args) => {
                used.push(h.name.as_str());
                args.iter().for_each(|a| names(a, &mut used));
            }
            K::MsrWrite(m, value) => {
                used.push(m.name.as_str());
                names(value, &mut used);
            }
            K::MsrRead(m, _) => used.push(m.name.as_str()),
            K::Shared(_, _, Source::Via(via)) => used.push(via.name.as_str()),
            K::Cpuid(path, _) => used.push(path.base.name.as_str()),
            K::Shared(_, _, Source::Platform(_)) | K::Routine(_) | K::Nop | K::Native => {}
        }
        used.into_iter()
            .filter_map(|name| self.meta_of(name))
            .filter_map(hv_since)
            .max()
    }

    /// The meta of the hypercall, MSR, leaf or constant called `name`.
    fn meta_of(&self, name: &str) -> Option<&Meta> {
        self.hv.all_items().find_map(|i| match i {
            HvItem::Hypercall(h) if h.name.name == name => Some(&h.meta),
            HvItem::Msr(m) if m.name.name == name => Some(&m.meta),
            HvItem::Leaf(l) if l.name.name == name => Some(&l.meta),
            HvItem::Const(c) if c.name.name == name => Some(&c.meta),
            _ => None,
        })
    }
}

/// An item's `@hv_since(MAJOR.MINOR[.PATCH])`.
pub fn hv_since(meta: &Meta) -> Option<Version> {
    meta.attrs
        .iter()
        .find(|a| a.name.name == "hv_since")
        .and_then(|a| match a.args.first() {
            Some(AttrArg::Version(v)) => Some((
                v.parts.first().copied().unwrap_or(0),
                v.parts.get(1).copied().unwrap_or(0),
                v.parts.get(2).copied().unwrap_or(0),
            )),
            _ => None,
        })
}
