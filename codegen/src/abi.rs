//! The ABI as keyed facts: every number, signature, layout, convention
//! and mapping of a checked interface, one fact per thing a guest could
//! depend on, each with where it was written and the version it arrived
//! in. The lock file (`idl/abi.lock`) is these facts written out, the
//! fingerprint is their hash, and `pvi compat` compares two sets of them.

use crate::ast::*;
use crate::fmt::{conv_text, path_text, string_text, type_text};
use crate::model::{since, Model};
use crate::source::{FileId, Span};
use std::collections::BTreeMap;

/// What a fact describes; decides which rule a change to it breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A unit and its scale.
    Unit,
    /// A newtype and what it wraps.
    Newtype,
    /// An enum or flags type and its representation.
    Enum,
    /// A member of an enum or flags type and its value.
    Member,
    /// A structure: size and packing.
    Struct,
    /// A field of a structure: type and offset.
    Field,
    /// An error kind of the interface.
    ErrorKind,
    /// An op (its id is assigned by the lock, once).
    Op,
    /// One parameter of an op.
    Param,
    /// An op's result type.
    Result,
    /// Where an op may be called.
    Context,
    /// The error kinds an op may return.
    Errors,
    /// Whether an op is hot (inlined, patchable).
    Hot,
    /// A hypervisor ABI and its display name.
    Hypervisor,
    /// How a hypervisor is detected.
    Detect,
    /// How a hypervisor's hypercalls are made.
    Convention,
    /// A CPUID leaf's address.
    Leaf,
    /// What a register of a leaf holds.
    LeafRegister,
    /// Which leaf register holds a feature set.
    FeatureSet,
    /// A feature bit.
    Feature,
    /// An MSR's index.
    Msr,
    /// What an MSR holds and which features announce it.
    MsrType,
    /// A constant's value.
    Const,
    /// A hypercall's number.
    Hypercall,
    /// A hypercall's arguments, result, flavour and announcing features.
    HypercallSignature,
    /// A hypervisor error code and the pvi kind it maps to.
    HvError,
    /// How a hypervisor serves an op: its fallback chain.
    Mapping,
}

impl Kind {
    /// The word the lock file and messages use.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Unit => "unit",
            Kind::Newtype => "newtype",
            Kind::Enum => "enum",
            Kind::Member => "member",
            Kind::Struct => "struct",
            Kind::Field => "field",
            Kind::ErrorKind => "error kind",
            Kind::Op => "op",
            Kind::Param => "parameter",
            Kind::Result => "result",
            Kind::Context => "context",
            Kind::Errors => "errors",
            Kind::Hot => "hot",
            Kind::Hypervisor => "hypervisor",
            Kind::Detect => "detection",
            Kind::Convention => "convention",
            Kind::Leaf => "leaf",
            Kind::LeafRegister => "leaf register",
            Kind::FeatureSet => "feature set",
            Kind::Feature => "feature",
            Kind::Msr => "msr",
            Kind::MsrType => "msr type",
            Kind::Const => "constant",
            Kind::Hypercall => "hypercall",
            Kind::HypercallSignature => "hypercall signature",
            Kind::HvError => "error code",
            Kind::Mapping => "mapping",
        }
    }
}

/// One thing a guest can depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    /// Unique within an interface: `op irq_restore param 0`,
    /// `kvm hypercall KVM_HC_KICK_CPU`.
    pub key: String,
    /// What it describes.
    pub kind: Kind,
    /// The key of the fact it belongs to (an op for its parameters, a
    /// structure for its fields), if any.
    pub parent: Option<String>,
    /// Its canonical value: equal values, equal ABI.
    pub value: String,
    /// `@since`, inherited from the parent where the fact has none.
    pub since: Option<(u64, u64)>,
    /// Marked `@deprecated`.
    pub deprecated: bool,
    /// Its doc comment (not part of the ABI: a change is docs-only);
    /// `None` where unknown (a fact read from a lock file).
    pub docs: Option<String>,
    /// Where it was written.
    pub span: Span,
}

fn deprecated(meta: &Meta) -> bool {
    meta.attrs.iter().any(|a| a.name.name == "deprecated")
}

/// An interface's ABI: its version and facts, read from a checked model
/// or from a lock file.
#[derive(Clone, Debug)]
pub struct Abi {
    /// The interface name.
    pub name: String,
    /// Its version as written.
    pub version: String,
    /// The version's numbers.
    pub version_parts: Vec<u64>,
    /// The facts, in declaration (or lock) order. `since` is `None` for
    /// facts of the interface's baseline version, so that two sides with
    /// different baselines compare item by item.
    pub facts: Vec<Fact>,
}

impl Abi {
    /// The ABI of a checked interface.
    pub fn of(model: &Model) -> Abi {
        let base = model.baseline();
        let mut facts = facts(model);
        for f in &mut facts {
            if f.since.is_some_and(|s| s <= base) {
                f.since = None;
            }
        }
        Abi {
            name: model.interface.name.name.clone(),
            version: model.interface.version.text.clone(),
            version_parts: model.interface.version.parts.clone(),
            facts,
        }
    }

    /// A stable 64-bit hash (FNV-1a) of the interface's name, version and
    /// every fact's kind, key and value: what the lock records and `pvi
    /// compat` compares, nothing else (docs, `@since` and `@deprecated` are
    /// not ABI). Equal fingerprints mean interchangeable ABIs.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::Hasher;
        let mut h = fnv::FnvHasher::default();
        // Every field ends in a byte no IDL text contains, so that moving
        // text from one field to the next changes the hash.
        let mut field = |text: &str| {
            h.write(text.as_bytes());
            h.write_u8(0);
        };
        field(&self.name);
        field(&self.version);
        for f in &self.facts {
            field(f.kind.word());
            field(&f.key);
            field(&f.value);
        }
        h.finish()
    }

    /// The ABI a lock file records; `file` is the lock's id in the source
    /// map, so that facts point at their lines.
    pub fn from_lock(lock: &crate::lock::Lock, file: FileId) -> Abi {
        let base = lock.entries.iter().map(|e| e.since).min();
        let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
        let mut facts = Vec::new();
        for e in &lock.entries {
            let (kind, parent) = kind_of_key(&e.key, &e.value, &kinds);
            kinds.insert(e.key.clone(), kind);
            // An op's locked id is the lock's own numbering, not a fact the
            // IDL states.
            let value = if kind == Kind::Op {
                String::new()
            } else {
                e.value.clone()
            };
            facts.push(Fact {
                key: e.key.clone(),
                kind,
                parent,
                value,
                since: (Some(e.since) != base).then_some(e.since),
                deprecated: false,
                docs: None,
                span: Span::new(file, e.span.0, e.span.1),
            });
        }
        Abi {
            name: lock.interface.clone(),
            version: lock.version.clone(),
            version_parts: lock
                .version
                .split('.')
                .filter_map(|p| p.parse().ok())
                .collect(),
            facts,
        }
    }
}

/// What a lock line's key names, and the key of the fact it belongs to,
/// given the kinds of the lines before it.
fn kind_of_key(key: &str, value: &str, seen: &BTreeMap<String, Kind>) -> (Kind, Option<String>) {
    let words: Vec<&str> = key.split(' ').collect();
    let owner = || key.rsplit_once('.').map(|(parent, _)| parent.to_string());
    let of_hv = |hv: &str| Some(format!("hypervisor {hv}"));
    match words.as_slice() {
        ["unit", _] => (Kind::Unit, None),
        ["error", _] => (Kind::ErrorKind, None),
        ["hypervisor", _] => (Kind::Hypervisor, None),
        ["type", name] if name.contains('.') => {
            let parent = owner();
            let kind = match parent.as_ref().and_then(|p| seen.get(p)) {
                Some(Kind::Enum) => Kind::Member,
                _ => Kind::Field,
            };
            (kind, parent)
        }
        ["type", _] if value.starts_with("size ") => (Kind::Struct, None),
        ["type", _] if value.starts_with("flags ") || value.starts_with("enum ") => {
            (Kind::Enum, None)
        }
        ["type", _] => (Kind::Newtype, None),
        ["op", _] => (Kind::Op, None),
        ["op", op, rest @ ..] => {
            let kind = match rest {
                ["param", _] => Kind::Param,
                ["result"] => Kind::Result,
                ["context"] => Kind::Context,
                ["errors"] => Kind::Errors,
                _ => Kind::Hot,
            };
            (kind, Some(format!("op {op}")))
        }
        [hv, "detect"] => (Kind::Detect, of_hv(hv)),
        [hv, "convention"] => (Kind::Convention, of_hv(hv)),
        [_, "leaf", name] if name.contains('.') => (Kind::LeafRegister, owner()),
        [hv, "leaf", _] => (Kind::Leaf, of_hv(hv)),
        [_, "features", name] if name.contains('.') => (Kind::Feature, owner()),
        [hv, "features", _] => (Kind::FeatureSet, of_hv(hv)),
        [hv, "msr", m, "type"] => (Kind::MsrType, Some(format!("{hv} msr {m}"))),
        [hv, "msr", _] => (Kind::Msr, of_hv(hv)),
        [hv, "hypercall", h, "signature"] => (
            Kind::HypercallSignature,
            Some(format!("{hv} hypercall {h}")),
        ),
        [hv, "hypercall", _] => (Kind::Hypercall, of_hv(hv)),
        [hv, "error", _] => (Kind::HvError, of_hv(hv)),
        [hv, "map", _] => (Kind::Mapping, of_hv(hv)),
        _ => (Kind::Const, None),
    }
}

/// Every fact of `model`, in a stable order (declaration order).
pub fn facts(model: &Model) -> Vec<Fact> {
    let mut out = Facts(Vec::new());
    for file in &model.files {
        for item in &file.items {
            match item {
                Item::Interface(_) => {}
                Item::Unit(u) => {
                    let value = match &u.scale {
                        Some((n, base)) => format!("{} {}", n.value, base.name),
                        None => "base".into(),
                    };
                    out.push(
                        Kind::Unit,
                        format!("unit {}", u.name.name),
                        None,
                        value,
                        &u.meta,
                        None,
                        u.name.span,
                    );
                }
                Item::Type(t) => out.type_decl(t, None),
                Item::Errors(e) => {
                    for k in &e.kinds {
                        out.push(
                            Kind::ErrorKind,
                            format!("error {}", k.name.name),
                            None,
                            String::new(),
                            &k.meta,
                            None,
                            k.name.span,
                        );
                    }
                }
                Item::Group(_) | Item::Hypervisor(_) => {}
            }
        }
    }
    for op in &model.resolved_ops {
        out.op(op);
    }
    for hv in model.hypervisors() {
        out.hypervisor(model, hv);
    }
    out.0
}

struct Facts(Vec<Fact>);

impl Facts {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        kind: Kind,
        key: String,
        parent: Option<&str>,
        value: String,
        meta: &Meta,
        inherited: Option<(u64, u64)>,
        span: Span,
    ) -> Option<(u64, u64)> {
        let since = since(meta).or(inherited);
        self.0.push(Fact {
            key,
            kind,
            parent: parent.map(str::to_string),
            value,
            since,
            deprecated: deprecated(meta),
            docs: Some(meta.docs.text()),
            span,
        });
        since
    }

    /// A fact with no docs or attributes of its own.
    fn part(
        &mut self,
        kind: Kind,
        key: String,
        parent: &str,
        value: String,
        since: Option<(u64, u64)>,
        span: Span,
    ) {
        self.push(
            kind,
            key,
            Some(parent),
            value,
            &Meta::default(),
            since,
            span,
        );
    }

    fn type_decl(&mut self, t: &TypeDecl, owner: Option<&str>) {
        let key = format!("type {}", t.name().name);
        match t {
            TypeDecl::Newtype(n) => {
                self.push(
                    Kind::Newtype,
                    key,
                    owner,
                    type_text(&n.repr),
                    &n.meta,
                    None,
                    n.name.span,
                );
            }
            TypeDecl::Flags(e) | TypeDecl::Enum(e) => {
                let word = if matches!(t, TypeDecl::Flags(_)) {
                    "flags"
                } else {
                    "enum"
                };
                let since = self.push(
                    Kind::Enum,
                    key.clone(),
                    owner,
                    format!("{word} {}", e.repr.name),
                    &e.meta,
                    None,
                    e.name.span,
                );
                for m in &e.members {
                    self.push(
                        Kind::Member,
                        format!("{key}.{}", m.name.name),
                        Some(&key),
                        m.value.value.to_string(),
                        &m.meta,
                        since,
                        m.name.span,
                    );
                }
            }
            TypeDecl::Struct(s) => {
                let value = format!(
                    "size {}{}",
                    s.size.value,
                    if s.packed { " packed" } else { "" }
                );
                let since = self.push(
                    Kind::Struct,
                    key.clone(),
                    owner,
                    value,
                    &s.meta,
                    None,
                    s.name.span,
                );
                for f in &s.fields {
                    let value = format!("{} @ {}", type_text(&f.ty), f.offset.value);
                    self.push(
                        Kind::Field,
                        format!("{key}.{}", f.name.name),
                        Some(&key),
                        value,
                        &f.meta,
                        since,
                        f.name.span,
                    );
                }
            }
        }
    }

    fn op(&mut self, resolved: &crate::ir::Op) {
        let op = &resolved.syntax;
        let key = format!("op {}", op.name.name);
        // An op's id is not its place in the IDL: the lock assigns it once
        // (see `lock::render`), so the fact itself has no value.
        let since = self.push(
            Kind::Op,
            key.clone(),
            None,
            String::new(),
            &op.meta,
            None,
            op.name.span,
        );
        for (i, p) in op.params.iter().enumerate() {
            let value = format!("{}: {}", p.name.name, type_text(&p.ty));
            self.part(
                Kind::Param,
                format!("{key} param {i}"),
                &key,
                value,
                since,
                p.name.span,
            );
        }
        if let Some(r) = &op.result {
            self.part(
                Kind::Result,
                format!("{key} result"),
                &key,
                type_text(r),
                since,
                r.span(),
            );
        }
        let context = resolved.context.name().to_string();
        let mut errors: Vec<&str> = resolved.errors.iter().map(String::as_str).collect();
        errors.sort_unstable();
        let hot = resolved.hot;
        self.part(
            Kind::Context,
            format!("{key} context"),
            &key,
            context,
            since,
            op.name.span,
        );
        self.part(
            Kind::Errors,
            format!("{key} errors"),
            &key,
            errors.join(", "),
            since,
            op.name.span,
        );
        self.part(
            Kind::Hot,
            format!("{key} hot"),
            &key,
            hot.to_string(),
            since,
            op.name.span,
        );
    }

    fn hypervisor(&mut self, model: &Model, hv: &Hypervisor) {
        let h = hv.name.name.as_str();
        let key = format!("hypervisor {h}");
        let display = string_text(&hv.display.value);
        let hv_since = self.push(
            Kind::Hypervisor,
            key.clone(),
            None,
            display,
            &hv.meta,
            None,
            hv.name.span,
        );
        for item in &hv.items {
            match item {
                HvItem::Abi(a) => {
                    // The ABI's own items are recorded under its owner; here,
                    // that this hypervisor speaks it.
                    self.push(
                        Kind::Convention,
                        format!("{h} convention"),
                        Some(&key),
                        format!("abi {}", a.name.name),
                        &a.meta,
                        hv_since,
                        a.span,
                    );
                }
                HvItem::Detect(d) => {
                    let signatures: Vec<String> =
                        d.signatures.iter().map(|s| string_text(&s.value)).collect();
                    let probes: Vec<&str> = d.probes.iter().map(|p| p.name.as_str()).collect();
                    let entries: Vec<&str> = d.entries.iter().map(|e| e.name.as_str()).collect();
                    let mut value = format!(
                        "signatures [{}] probes [{}]",
                        signatures.join(", "),
                        probes.join(", ")
                    );
                    // Only where there is one, so that every lock written
                    // before `entry` existed still reads the same.
                    if !entries.is_empty() {
                        value.push_str(&format!(" entries [{}]", entries.join(", ")));
                    }
                    self.push(
                        Kind::Detect,
                        format!("{h} detect"),
                        Some(&key),
                        value,
                        &d.meta,
                        hv_since,
                        d.span,
                    );
                }
                HvItem::Convention(c) => {
                    // `choose` is the guest's pick among forms the
                    // hypervisor accepts alike, not something it agrees to.
                    let value: Vec<String> = c
                        .stmts
                        .iter()
                        .filter(|s| !matches!(s, ConvStmt::Choose(..)))
                        .map(conv_text)
                        .collect();
                    self.push(
                        Kind::Convention,
                        format!("{h} convention"),
                        Some(&key),
                        value.join(" "),
                        &c.meta,
                        hv_since,
                        c.span,
                    );
                }
                HvItem::Leaf(l) => self.hv_leaf(h, &key, hv_since, l),
                HvItem::Features(f) => self.hv_feature_set(h, &key, hv_since, f),
                HvItem::Msr(m) => self.hv_msr(h, &key, hv_since, m),
                HvItem::Const(c) => {
                    self.push(
                        Kind::Const,
                        format!("{h} const {}", c.name.name),
                        Some(&key),
                        format!("{}: {}", c.value.value, type_text(&c.ty)),
                        &c.meta,
                        hv_since,
                        c.name.span,
                    );
                }
                HvItem::Hypercall(c) => self.hv_hypercall(h, &key, hv_since, c),
                HvItem::Error(e) => {
                    self.push(
                        Kind::HvError,
                        format!("{h} error {}", e.name.name),
                        Some(&key),
                        format!("{} => {}", e.code.value, e.kind.name),
                        &e.meta,
                        hv_since,
                        e.name.span,
                    );
                }
                HvItem::Map(m) => {
                    // Each step's text, as the resolved chain has it.
                    let steps: Vec<String> = model
                        .chain(h, &m.op.name)
                        .map_or(&[][..], |c| &c.steps)
                        .iter()
                        .map(|s| format!("{};", s.text))
                        .collect();
                    self.push(
                        Kind::Mapping,
                        format!("{h} map {}", m.op.name),
                        Some(&key),
                        steps.join(" "),
                        &m.meta,
                        hv_since,
                        m.op.span,
                    );
                }
                HvItem::Type(t) => self.type_decl(t, Some(&key)),
            }
        }
    }

    /// A CPUID leaf and its registers.
    fn hv_leaf(&mut self, h: &str, key: &str, hv_since: Option<(u64, u64)>, l: &Leaf) {
        let leaf = format!("{h} leaf {}", l.name.name);
        let since = self.push(
            Kind::Leaf,
            leaf.clone(),
            Some(key),
            format!("{:#x}", l.address.value),
            &l.meta,
            hv_since,
            l.name.span,
        );
        for r in &l.registers {
            self.push(
                Kind::LeafRegister,
                format!("{leaf}.{}", r.name.name),
                Some(&leaf),
                type_text(&r.ty),
                &r.meta,
                since,
                r.name.span,
            );
        }
    }

    /// A feature set and its bits.
    fn hv_feature_set(&mut self, h: &str, key: &str, hv_since: Option<(u64, u64)>, f: &Features) {
        let set = format!("{h} features {}", f.name.name);
        let since = self.push(
            Kind::FeatureSet,
            set.clone(),
            Some(key),
            path_text(&f.register),
            &f.meta,
            hv_since,
            f.name.span,
        );
        for b in &f.bits {
            self.push(
                Kind::Feature,
                format!("{set}.{}", b.name.name),
                Some(&set),
                format!("bit {}", b.value.value),
                &b.meta,
                since,
                b.name.span,
            );
        }
    }

    /// An MSR and its type.
    fn hv_msr(&mut self, h: &str, key: &str, hv_since: Option<(u64, u64)>, m: &Msr) {
        let msr = format!("{h} msr {}", m.name.name);
        let since = self.push(
            Kind::Msr,
            msr.clone(),
            Some(key),
            format!("{:#x}", m.index.value),
            &m.meta,
            hv_since,
            m.name.span,
        );
        let value = format!(
            "{}{}",
            m.ty.as_ref()
                .map(type_text)
                .unwrap_or_else(|| "untyped".into()),
            requires(&m.requires)
        );
        self.part(
            Kind::MsrType,
            format!("{msr} type"),
            &msr,
            value,
            since,
            m.name.span,
        );
    }

    /// A hypercall and its signature.
    fn hv_hypercall(&mut self, h: &str, key: &str, hv_since: Option<(u64, u64)>, c: &Hypercall) {
        let call = format!("{h} hypercall {}", c.name.name);
        let since = self.push(
            Kind::Hypercall,
            call.clone(),
            Some(key),
            c.number.value.to_string(),
            &c.meta,
            hv_since,
            c.name.span,
        );
        self.part(
            Kind::HypercallSignature,
            format!("{call} signature"),
            &call,
            hypercall_signature(c),
            since,
            c.name.span,
        );
    }
}

fn requires(features: &[Ident]) -> String {
    if features.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
    format!(" requires {}", names.join(", "))
}

fn hypercall_signature(c: &Hypercall) -> String {
    let params: Vec<String> = c.params.iter().map(|p| type_text(&p.ty)).collect();
    let result = match &c.result {
        None => String::new(),
        Some(HcResult::Single(t)) => format!(" -> {}", type_text(t)),
        Some(HcResult::Named(named)) => {
            let named: Vec<String> = named
                .iter()
                .map(|p| format!("{}: {}", p.name.name, type_text(&p.ty)))
                .collect();
            format!(" -> ({})", named.join(", "))
        }
    };
    format!(
        "{}{}({}){}{}",
        if c.fast { "fast " } else { "" },
        if c.rep { "rep " } else { "" },
        params.join(", "),
        result,
        requires(&c.requires)
    )
}
