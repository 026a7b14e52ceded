//! The validated model: the syntax trees of all files plus the tables the
//! checker resolved (units, types, ops). Code generators and `pvi explain`
//! read this; it exists only for IDL that passed every check.

use crate::ast::*;
use std::collections::BTreeMap;

/// Integer primitives and their sizes in bytes.
pub const INT_PRIMITIVES: &[(&str, u64, bool)] = &[
    ("u8", 1, false),
    ("u16", 2, false),
    ("u32", 4, false),
    ("u64", 8, false),
    ("i8", 1, true),
    ("i16", 2, true),
    ("i32", 4, true),
    ("i64", 8, true),
];

/// A primitive integer type: size in bytes and signedness.
pub fn int_primitive(name: &str) -> Option<(u64, bool)> {
    INT_PRIMITIVES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, size, signed)| (*size, *signed))
}

/// Whether `value` fits an integer of `size` bytes and the given signedness.
pub fn fits(value: i128, size: u64, signed: bool) -> bool {
    let bits = size * 8;
    if signed {
        let half = 1i128 << (bits - 1);
        (-half..half).contains(&value)
    } else {
        (0..(1i128 << bits)).contains(&value)
    }
}

/// A unit resolved to its dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitInfo {
    /// The root unit of its dimension (`ns` for `ns100`).
    pub dimension: String,
    /// How many root units one of this unit is.
    pub factor: u128,
}

/// Size and alignment of a type, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Size in bytes.
    pub size: u64,
    /// Alignment in bytes.
    pub align: u64,
}

/// Where an op is: its group and its declaration.
#[derive(Clone, Debug)]
pub struct OpRef<'m> {
    /// The group it belongs to.
    pub group: &'m Group,
    /// The op.
    pub op: &'m Op,
}

/// An IDL that passed every check.
#[derive(Clone, Debug)]
pub struct Model {
    /// The files, in the order they were given.
    pub files: Vec<File>,
    /// The interface name and version.
    pub interface: Interface,
    /// Every unit by name.
    pub units: BTreeMap<String, UnitInfo>,
    /// Every declared type by name (top level and hypervisor blocks).
    pub types: BTreeMap<String, TypeDecl>,
    /// [`source_hash`] of the files the model was read from: generated code
    /// records it, so a build can tell when the IDL changed since.
    pub source_hash: u64,
    /// Each hypervisor's calling convention, typed, by hypervisor name.
    pub conventions: BTreeMap<String, crate::ir::Convention>,
    /// Each hypervisor's chains, resolved, in its file's order.
    pub chains: BTreeMap<String, Vec<crate::ir::Chain>>,
    /// The ops, resolved, in IDL order (an op's id is its index).
    pub resolved_ops: Vec<crate::ir::Op>,
}

/// A hash of IDL source files (FNV-1a 64 over each file's name, a zero
/// byte, its bytes and a zero byte, files sorted by name). The SDK's build
/// script computes the same over `idl/*.pvi`.
pub fn source_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> u64 {
    use std::hash::Hasher;
    let mut files: Vec<(&str, &[u8])> = files.into_iter().collect();
    files.sort();
    let mut h = fnv::FnvHasher::default();
    for (name, bytes) in files {
        h.write(name.as_bytes());
        h.write(&[0]);
        h.write(bytes);
        h.write(&[0]);
    }
    h.finish()
}

impl Model {
    /// Groups of ops in source order.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.files
            .iter()
            .flat_map(|f| &f.items)
            .filter_map(|i| match i {
                Item::Group(g) => Some(g),
                _ => None,
            })
    }

    /// Every op, with its group, in source order.
    pub fn ops(&self) -> impl Iterator<Item = OpRef<'_>> {
        self.groups()
            .flat_map(|group| group.ops.iter().map(move |op| OpRef { group, op }))
    }

    /// The calling convention of the hypervisor called `name`; `None` for
    /// one that makes no hypercalls.
    pub fn convention(&self, name: &str) -> Option<&crate::ir::Convention> {
        self.conventions.get(name)
    }

    /// The chains of the hypervisor called `hv`, in its file's order.
    pub fn chains(&self, hv: &str) -> &[crate::ir::Chain] {
        self.chains.get(hv).map_or(&[], Vec::as_slice)
    }

    /// The chain of `op` on the hypervisor called `hv`, if it maps it.
    pub fn chain(&self, hv: &str, op: &str) -> Option<&crate::ir::Chain> {
        self.chains(hv).iter().find(|c| c.op == op)
    }

    /// The resolved op called `name`.
    pub fn resolved_op(&self, name: &str) -> Option<&crate::ir::Op> {
        self.resolved_ops.iter().find(|o| o.name == name)
    }

    /// The op called `name`.
    pub fn op(&self, name: &str) -> Option<OpRef<'_>> {
        self.ops().find(|o| o.op.name.name == name)
    }

    /// Hypervisor ABIs in source order.
    pub fn hypervisors(&self) -> impl Iterator<Item = &Hypervisor> {
        self.files
            .iter()
            .flat_map(|f| &f.items)
            .filter_map(|i| match i {
                Item::Hypervisor(h) => Some(h),
                _ => None,
            })
    }

    /// The error kinds.
    pub fn error_kinds(&self) -> impl Iterator<Item = &ErrorKind> {
        self.files
            .iter()
            .flat_map(|f| &f.items)
            .filter_map(|i| match i {
                Item::Errors(e) => Some(e),
                _ => None,
            })
            .flat_map(|e| &e.kinds)
    }

    /// The size and alignment of a type. Only meaningful for types that
    /// passed the checker.
    pub fn layout(&self, ty: &TypeRef) -> Option<Layout> {
        layout_of(&self.types, ty)
    }

    /// The oldest interface version the IDL mentions (MAJOR, MINOR): the
    /// interface's own and every `@since`. Items of this version are in
    /// every build; newer ones are behind a cargo feature.
    pub fn baseline(&self) -> (u64, u64) {
        let mut oldest = (
            self.interface.version.parts[0],
            self.interface.version.parts[1],
        );
        let mut visit = |meta: &Meta| {
            if let Some(v) = since(meta) {
                oldest = oldest.min(v);
            }
        };
        for file in &self.files {
            for item in &file.items {
                match item {
                    Item::Interface(i) => visit(&i.meta),
                    Item::Unit(u) => visit(&u.meta),
                    Item::Type(t) => visit(t.meta()),
                    Item::Errors(e) => e.kinds.iter().for_each(|k| visit(&k.meta)),
                    Item::Group(g) => g.ops.iter().for_each(|o| visit(&o.meta)),
                    Item::Hypervisor(h) => {
                        for i in &h.items {
                            match i {
                                HvItem::Leaf(l) => visit(&l.meta),
                                HvItem::Msr(m) => visit(&m.meta),
                                HvItem::Const(c) => visit(&c.meta),
                                HvItem::Hypercall(c) => visit(&c.meta),
                                HvItem::Error(e) => visit(&e.meta),
                                HvItem::Type(t) => visit(t.meta()),
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        oldest
    }

    /// The cargo feature an item needs, if it is newer than the baseline:
    /// `interface-MAJOR-MINOR`.
    pub fn gate(&self, meta: &Meta) -> Option<String> {
        let v = since(meta)?;
        (v > self.baseline()).then(|| feature_name(v))
    }

    /// Every gated version, oldest first.
    pub fn gated_versions(&self) -> Vec<(u64, u64)> {
        let base = self.baseline();
        let mut versions = vec![(
            self.interface.version.parts[0],
            self.interface.version.parts[1],
        )];
        let mut push = |meta: &Meta| versions.extend(since(meta));
        for op in self.ops() {
            push(&op.op.meta);
        }
        for t in self.types.values() {
            push(t.meta());
        }
        for hv in self.hypervisors() {
            for i in &hv.items {
                match i {
                    HvItem::Leaf(l) => push(&l.meta),
                    HvItem::Msr(m) => push(&m.meta),
                    HvItem::Const(c) => push(&c.meta),
                    HvItem::Hypercall(c) => push(&c.meta),
                    HvItem::Error(e) => push(&e.meta),
                    _ => {}
                }
            }
        }
        versions.retain(|v| *v > base);
        versions.sort();
        versions.dedup();
        versions
    }

    /// The unit of a type, if it has one.
    pub fn unit_of(&self, ty: &TypeRef) -> Option<String> {
        unit_of(&self.types, ty)
    }
}

/// Size and alignment of `ty` given the declared types.
pub fn layout_of(types: &BTreeMap<String, TypeDecl>, ty: &TypeRef) -> Option<Layout> {
    layout_depth(types, ty, 0)
}

fn layout_depth(types: &BTreeMap<String, TypeDecl>, ty: &TypeRef, depth: usize) -> Option<Layout> {
    if depth > 16 {
        return None;
    }
    match ty {
        TypeRef::Array { elem, len, .. } => {
            let e = layout_depth(types, elem, depth + 1)?;
            let n = u64::try_from(len.value).ok()?;
            Some(Layout {
                size: e.size.checked_mul(n)?,
                align: e.align,
            })
        }
        TypeRef::Named { name, .. } => {
            if name.name == "bool" {
                return Some(Layout { size: 1, align: 1 });
            }
            if let Some((size, _)) = int_primitive(&name.name) {
                return Some(Layout { size, align: size });
            }
            match types.get(&name.name)? {
                TypeDecl::Newtype(n) => layout_depth(types, &n.repr, depth + 1),
                TypeDecl::Flags(e) | TypeDecl::Enum(e) => {
                    let (size, _) = int_primitive(&e.repr.name)?;
                    Some(Layout { size, align: size })
                }
                TypeDecl::Struct(s) => {
                    let size = u64::try_from(s.size.value).ok()?;
                    let mut align = 1;
                    if !s.packed {
                        for f in &s.fields {
                            align = align.max(layout_depth(types, &f.ty, depth + 1)?.align);
                        }
                    }
                    Some(Layout { size, align })
                }
            }
        }
    }
}

/// The unit of `ty` given the declared types.
pub fn unit_of(types: &BTreeMap<String, TypeDecl>, ty: &TypeRef) -> Option<String> {
    match ty {
        TypeRef::Array { .. } => None,
        TypeRef::Named { name, unit, .. } => match unit {
            Some(u) => Some(u.name.clone()),
            None => match types.get(&name.name) {
                Some(TypeDecl::Newtype(n)) => match &n.repr {
                    TypeRef::Named { unit: Some(u), .. } => Some(u.name.clone()),
                    _ => None,
                },
                _ => None,
            },
        },
    }
}

/// The (MAJOR, MINOR) of an item's `@since`, if it has one.
pub fn since(meta: &Meta) -> Option<(u64, u64)> {
    meta.attrs
        .iter()
        .find(|a| a.name.name == "since")
        .and_then(|a| match a.args.first() {
            Some(AttrArg::Version(v)) if v.parts.len() >= 2 => Some((v.parts[0], v.parts[1])),
            _ => None,
        })
}

/// The cargo feature of an interface version: `interface-1-2`.
pub fn feature_name((major, minor): (u64, u64)) -> String {
    format!("interface-{major}-{minor}")
}
