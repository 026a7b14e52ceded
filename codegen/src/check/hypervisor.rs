//! Hypervisor ABIs: detection, calling convention, leaves, feature bits,
//! MSRs, constants, hypercalls and error codes — names unique within the
//! hypervisor, numbers unique per kind.

use super::types::TypePlace;
use super::Checker;
use crate::ast::*;
use crate::diagnostic::Diagnostic;
use crate::model::{fits, int_primitive, layout_of};
use crate::parser::closest;
use crate::source::Span;
use std::collections::BTreeMap;

/// General-purpose registers by their 64-bit names: the typed IR's.
pub const REGISTERS: &[&str] = &crate::ir::Register::NAMES;
/// Instruction forms a convention may use.
pub const INSTRUCTIONS: &[&str] = &crate::ir::Form::NAMES;
/// How a convention reports failure.
pub const STATUS_STYLES: &[&str] = &crate::ir::Status::NAMES;
/// Probes a detect block may ask for.
pub const PROBES: &[&str] = &["backdoor"];
/// CPUID output registers.
pub const LEAF_REGISTERS: &[&str] = &["eax", "ebx", "ecx", "edx"];
/// The CPUID range hypervisors use, at the standard base.
pub const HV_LEAF_RANGE: std::ops::RangeInclusive<i128> = 0x4000_0000..=0x4000_00ff;

/// Whether `item` belongs to a hypervisor's ABI (what `abi NAME;` takes
/// from NAME), not to how one kind of guest finds and uses it.
fn is_abi_item(item: &HvItem) -> bool {
    !matches!(item, HvItem::Abi(_) | HvItem::Detect(_) | HvItem::Map(_))
}

/// A hypervisor's declarations by name, for resolving references.
#[derive(Default)]
pub(super) struct Scope<'a> {
    pub names: BTreeMap<String, Span>,
    pub leaves: BTreeMap<String, &'a Leaf>,
    pub features: BTreeMap<String, &'a Member>,
    pub msrs: BTreeMap<String, &'a Msr>,
    pub consts: BTreeMap<String, &'a Const>,
    pub hypercalls: BTreeMap<String, &'a Hypercall>,
    /// Argument and result registers of the convention.
    pub arg_regs: usize,
    pub result_regs: usize,
    /// Whether the convention places a fast bit / a rep count.
    pub fast_bit: bool,
    pub rep_shift: bool,
}

impl<'a> Scope<'a> {
    /// What kind of declaration `name` is, for "X is an MSR, not a hypercall".
    pub fn kind_of(&self, name: &str) -> Option<&'static str> {
        if self.msrs.contains_key(name) {
            Some("an MSR")
        } else if self.hypercalls.contains_key(name) {
            Some("a hypercall")
        } else if self.consts.contains_key(name) {
            Some("a constant")
        } else if self.leaves.contains_key(name) {
            Some("a CPUID leaf")
        } else if self.features.contains_key(name) {
            Some("a feature bit")
        } else {
            None
        }
    }
}

/// What the statements of a convention said, for the checks of the whole.
#[derive(Default)]
struct ConvState<'a> {
    /// Each statement's keyword, where it was first given.
    seen: BTreeMap<&'static str, Span>,
    /// `instruction` lists `page`.
    uses_page: bool,
    page: Option<&'a Path>,
    number: Option<&'a Ident>,
    /// Registers with a role, and where it was given.
    regs_used: BTreeMap<String, Span>,
    /// `REG@FORM` keys of `fixed` values.
    used_fixed: std::collections::BTreeSet<String>,
    /// Instruction forms named by `fixed` values, and those `instruction`
    /// declares.
    forms_named: Vec<Ident>,
    forms_declared: Vec<String>,
}

impl Checker {
    pub(super) fn check_hypervisors(&mut self, files: &[File]) {
        let hvs: Vec<&Hypervisor> = files
            .iter()
            .flat_map(|f| &f.items)
            .filter_map(|i| match i {
                Item::Hypervisor(h) => Some(h),
                _ => None,
            })
            .collect();
        for hv in hvs {
            self.check_hypervisor(hv);
        }
    }

    /// Give each hypervisor with `abi NAME;` the declarations of NAME
    /// (all but its `detect` and `map` items), so that its maps resolve
    /// against them; report an `abi` that names nothing, names a hypervisor
    /// that itself borrows its ABI, or sits beside ABI items of its own.
    pub(super) fn inherit_abis(&mut self, files: &mut [File]) {
        // Each hypervisor by name: whether it borrows an ABI itself.
        let owners: BTreeMap<&str, (&Hypervisor, bool)> = files
            .iter()
            .flat_map(|f| &f.items)
            .filter_map(|i| match i {
                Item::Hypervisor(h) => Some((h.name.name.as_str(), (h, h.abi().is_some()))),
                _ => None,
            })
            .collect();
        let names: Vec<&str> = owners.keys().copied().collect();
        let mut fills = Vec::new();
        for (fi, file) in files.iter().enumerate() {
            for (ii, item) in file.items.iter().enumerate() {
                let Item::Hypervisor(hv) = item else { continue };
                let abis: Vec<&AbiRef> = hv
                    .items
                    .iter()
                    .filter_map(|i| match i {
                        HvItem::Abi(a) => Some(a),
                        _ => None,
                    })
                    .collect();
                let Some(abi) = abis.first() else { continue };
                for again in &abis[1..] {
                    self.duplicate_block("abi", again.span, abi.span);
                }
                for own in &hv.items {
                    if is_abi_item(own) {
                        self.error(
                            Diagnostic::new(
                                "abi-item-elsewhere",
                                own.span(),
                                format!(
                                    "`{}` takes its ABI from `{}`, so it declares no ABI items of its own",
                                    hv.name.name, abi.name.name
                                ),
                            )
                            .label("an ABI item")
                            .related(abi.span, "the ABI comes from here")
                            .hint(format!(
                                "move this declaration into `hypervisor {}`, where every guest of that ABI sees it; keep only `detect` and `map` here",
                                abi.name.name
                            )),
                        );
                    }
                }
                match owners.get(abi.name.name.as_str()) {
                    None => {
                        let d = Diagnostic::new(
                            "unknown-abi",
                            abi.name.span,
                            format!("no hypervisor `{}` to take the ABI from", abi.name.name),
                        )
                        .label("not a hypervisor")
                        .suggest(
                            &abi.name.name,
                            &names,
                            "name a hypervisor declared in one of the IDL's files",
                        );
                        self.error(d);
                    }
                    Some((_, true)) | Some(_) if abi.name.name == hv.name.name => {
                        self.error(
                            Diagnostic::new(
                                "abi-chain",
                                abi.name.span,
                                format!("`{}` cannot take its ABI from itself", hv.name.name),
                            )
                            .label("itself")
                            .hint("name the hypervisor whose block declares the ABI's items"),
                        );
                    }
                    Some((_, true)) => {
                        self.error(
                            Diagnostic::new(
                                "abi-chain",
                                abi.name.span,
                                format!(
                                    "`{}` takes its own ABI from another hypervisor",
                                    abi.name.name
                                ),
                            )
                            .label("borrows its ABI too")
                            .hint(format!(
                                "name the hypervisor whose block declares the ABI's items (the one `{}` names)",
                                abi.name.name
                            )),
                        );
                    }
                    // Only what an `abi` names is copied.
                    Some((owner, false)) => fills.push((
                        fi,
                        ii,
                        owner
                            .items
                            .iter()
                            .filter(|i| is_abi_item(i))
                            .cloned()
                            .collect::<Vec<_>>(),
                    )),
                }
            }
        }
        for (fi, ii, items) in fills {
            if let Item::Hypervisor(hv) = &mut files[fi].items[ii] {
                hv.inherited = items;
            }
        }
        self.fill_like_maps(files);
    }

    /// `map OP like HV;`: the chain HV's block gives OP, copied in, where HV
    /// is the hypervisor whose ABI this block borrows (the same calls, so
    /// the same chain is meaningful).
    fn fill_like_maps(&mut self, files: &mut [File]) {
        let hypervisors = |files: &[File]| -> Vec<(usize, usize)> {
            let mut at = Vec::new();
            for (fi, file) in files.iter().enumerate() {
                for (ii, item) in file.items.iter().enumerate() {
                    if matches!(item, Item::Hypervisor(_)) {
                        at.push((fi, ii));
                    }
                }
            }
            at
        };
        // Each hypervisor's own chains, by (hypervisor, op).
        let mut chains: BTreeMap<(String, String), Vec<Step>> = BTreeMap::new();
        for &(fi, ii) in &hypervisors(files) {
            let Item::Hypervisor(hv) = &files[fi].items[ii] else {
                continue;
            };
            for item in &hv.items {
                if let HvItem::Map(m) = item {
                    if m.like.is_none() {
                        chains.insert((hv.name.name.clone(), m.op.name.clone()), m.steps.clone());
                    }
                }
            }
        }
        for (fi, ii) in hypervisors(files) {
            let Item::Hypervisor(hv) = &mut files[fi].items[ii] else {
                continue;
            };
            let abi = hv.abi().map(|a| a.name.clone());
            // A `like` that failed is dropped once reported, so that its
            // empty chain reports nothing more.
            let mut failed = Vec::new();
            for (index, item) in hv.items.iter_mut().enumerate() {
                let HvItem::Map(m) = item else { continue };
                let Some(like) = &m.like else { continue };
                if abi.as_deref() != Some(like.name.as_str()) {
                    let d = Diagnostic::new(
                        "map-like-not-abi",
                        like.span,
                        format!(
                            "`map {} like {}`: `{}` is not the hypervisor whose ABI this block borrows",
                            m.op.name, like.name, like.name
                        ),
                    )
                    .label("not this block's `abi`")
                    .hint(match &abi {
                        Some(abi) => format!(
                            "`like` names the hypervisor of the block's `abi {abi};`, whose chains make the same calls; write this chain out as `map {} {{ …; native; }}`",
                            m.op.name
                        ),
                        None => format!(
                            "`like` is for a block that borrows an ABI (`abi NAME;`); write this chain out as `map {} {{ …; native; }}`",
                            m.op.name
                        ),
                    });
                    self.error(d);
                    failed.push(index);
                    continue;
                }
                match chains.get(&(like.name.clone(), m.op.name.clone())) {
                    Some(steps) => m.steps = steps.clone(),
                    None => {
                        failed.push(index);
                        let d = Diagnostic::new(
                            "map-like-unmapped",
                            like.span,
                            format!("`{}` does not map `{}`", like.name, m.op.name),
                        )
                        .label("no chain to copy")
                        .hint(format!(
                            "map the op in `hypervisor {}` first, or write this chain out as `map {} {{ …; native; }}`",
                            like.name, m.op.name
                        ));
                        self.error(d);
                    }
                }
            }
            for index in failed.into_iter().rev() {
                hv.items.remove(index);
            }
        }
    }

    fn check_hypervisor(&mut self, hv: &Hypervisor) {
        let mut scope = Scope::default();
        let mut detect: Option<&Detect> = None;
        let mut convention: Option<&Convention> = None;
        // Names first, so that references may point forwards; an `abi`'s
        // names too, which its owner's check reports on.
        for item in hv.all_items() {
            match item {
                HvItem::Detect(d) => {
                    if let Some(first) = detect {
                        self.duplicate_block("detect", d.span, first.span);
                    } else {
                        detect = Some(d);
                    }
                }
                HvItem::Convention(c) => {
                    if let Some(first) = convention {
                        self.duplicate_block("convention", c.span, first.span);
                    } else {
                        convention = Some(c);
                    }
                }
                HvItem::Leaf(l) => {
                    if self.unique(&mut scope.names, &l.name, "name") {
                        scope.leaves.insert(l.name.name.clone(), l);
                    }
                }
                HvItem::Features(f) => {
                    self.unique(&mut scope.names, &f.name, "name");
                    for bit in &f.bits {
                        if self.unique(&mut scope.names, &bit.name, "name") {
                            scope.features.insert(bit.name.name.clone(), bit);
                        }
                    }
                }
                HvItem::Msr(m) => {
                    if self.unique(&mut scope.names, &m.name, "name") {
                        scope.msrs.insert(m.name.name.clone(), m);
                    }
                }
                HvItem::Const(c) => {
                    if self.unique(&mut scope.names, &c.name, "name") {
                        scope.consts.insert(c.name.name.clone(), c);
                    }
                }
                HvItem::Hypercall(h) => {
                    if self.unique(&mut scope.names, &h.name, "name") {
                        scope.hypercalls.insert(h.name.name.clone(), h);
                    }
                }
                HvItem::Error(e) => {
                    self.unique(&mut scope.names, &e.name, "name");
                }
                HvItem::Abi(_) | HvItem::Map(_) | HvItem::Type(_) => {}
            }
        }
        match detect {
            // Entry notes resolve against the ABI; one that could not be
            // taken was reported already.
            Some(d) => self.check_detect(
                d,
                (hv.abi().is_none() || !hv.inherited.is_empty()).then_some(&scope),
            ),
            None => self.error(
                Diagnostic::new(
                    "missing-detect",
                    hv.name.span,
                    format!("hypervisor `{}` has no `detect` block", hv.name.name),
                )
                .label("cannot be detected")
                .hint("add `detect { signature \"…\"; }` with its 12-byte CPUID signature"),
            ),
        }
        match convention {
            Some(c) => self.check_convention(c, &mut scope),
            // Its `abi` names no usable owner, which `inherit_abis` reported.
            None if hv.abi().is_some() => {}
            None => self.error(
                Diagnostic::new(
                    "missing-convention",
                    hv.name.span,
                    format!("hypervisor `{}` has no calling `convention`", hv.name.name),
                )
                .label("no convention")
                .hint("add `convention { instruction …; number …; args …; result …; status …; }`"),
            ),
        }
        self.check_own_items(hv, &scope);
        self.check_maps(hv, &scope);
    }

    /// The hypervisor's own declarations, each on its own: ranges, unique
    /// numbers, types, references (an `abi`'s are its owner's to check).
    fn check_own_items(&mut self, hv: &Hypervisor, scope: &Scope) {
        let mut leaf_addrs = BTreeMap::new();
        let mut msr_indexes = BTreeMap::new();
        let mut hc_numbers = BTreeMap::new();
        let mut error_codes = BTreeMap::new();
        for item in &hv.items {
            match item {
                HvItem::Leaf(l) => {
                    if !HV_LEAF_RANGE.contains(&l.address.value) {
                        self.error(
                            Diagnostic::new("leaf-out-of-range", l.address.span, format!("leaf {} is outside the hypervisor range", l.address.text))
                                .label("not in 0x40000000–0x400000FF")
                                .hint("declare hypervisor leaves at their upstream address, relative to base 0x40000000"),
                        );
                    }
                    self.unique_number(&mut leaf_addrs, &l.address, &l.name, "leaf");
                    let mut regs = BTreeMap::new();
                    for r in &l.registers {
                        self.unique(&mut regs, &r.name, "register");
                        self.check_leaf_register(&r.name);
                        if self.check_type_ref(&r.ty, TypePlace::Value) {
                            self.check_register_width(&r.ty, 4);
                        }
                    }
                }
                HvItem::Features(f) => self.check_features(f, scope),
                HvItem::Msr(m) => {
                    self.unique_number(&mut msr_indexes, &m.index, &m.name, "MSR");
                    if !fits(m.index.value, 4, false) {
                        self.error(
                            Diagnostic::new(
                                "value-out-of-range",
                                m.index.span,
                                "an MSR index is a 32-bit number",
                            )
                            .label("out of range")
                            .hint("check the upstream header"),
                        );
                    }
                    if let Some(ty) = &m.ty {
                        if self.check_type_ref(ty, TypePlace::Value) {
                            self.check_register_width(ty, 8);
                        }
                    }
                    self.check_requires(&m.requires, scope);
                }
                HvItem::Const(c) => {
                    if self.check_type_ref(&c.ty, TypePlace::Value) {
                        self.check_const_value(c);
                    }
                }
                HvItem::Hypercall(h) => {
                    self.unique_number(&mut hc_numbers, &h.number, &h.name, "hypercall");
                    self.check_hypercall(h, scope);
                }
                HvItem::Error(e) => {
                    self.unique_number(&mut error_codes, &e.code, &e.name, "error code");
                    self.check_error_kind(&e.kind);
                }
                HvItem::Abi(_)
                | HvItem::Detect(_)
                | HvItem::Convention(_)
                | HvItem::Map(_)
                | HvItem::Type(_) => {}
            }
        }
    }

    fn duplicate_block(&mut self, what: &str, span: Span, first: Span) {
        self.error(
            Diagnostic::new("duplicate-key", span, format!("a second `{what}` block"))
                .label("second block")
                .related(first, "first block")
                .hint(format!("merge the two `{what}` blocks into one")),
        );
    }

    fn unique_number(
        &mut self,
        seen: &mut BTreeMap<i128, (String, Span)>,
        n: &Int,
        name: &Ident,
        what: &str,
    ) {
        if let Some((first, span)) = seen.get(&n.value) {
            let (first, span) = (first.clone(), *span);
            self.error(
                Diagnostic::new(
                    "duplicate-number",
                    n.span,
                    format!("{what} number {} is already used by `{first}`", n.text),
                )
                .label("used twice")
                .related(span, "first used here")
                .hint(format!(
                    "each {what} needs its own number; check the upstream header"
                )),
            );
        } else {
            seen.insert(n.value, (name.name.clone(), n.span));
        }
    }

    fn check_detect(&mut self, d: &Detect, scope: Option<&Scope>) {
        if let Some(scope) = scope {
            for e in &d.entries {
                if !scope.consts.contains_key(&e.name) {
                    let consts: Vec<&str> = scope.consts.keys().map(String::as_str).collect();
                    let d = Diagnostic::new(
                        "unknown-entry-note",
                        e.span,
                        format!("`{}` is not a constant of this hypervisor's ABI", e.name),
                    )
                    .label("no such ELF note constant")
                    .suggest(
                        &e.name,
                        &consts,
                        "name the constant whose value is the ELF note type of the entry point, e.g. `XEN_ELFNOTE_ENTRY`",
                    );
                    self.error(d);
                }
            }
        }
        for s in &d.signatures {
            if s.value.len() != 12 {
                self.error(
                    Diagnostic::new(
                        "bad-signature",
                        s.span,
                        format!(
                            "a CPUID signature is 12 bytes; this one has {}",
                            s.value.len()
                        ),
                    )
                    .label("wrong length")
                    .hint("pad short signatures with `\\0`, e.g. \"KVMKVMKVM\\0\\0\\0\""),
                );
            }
        }
        for p in &d.probes {
            if !PROBES.contains(&p.name.as_str()) {
                self.error(
                    Diagnostic::new(
                        "unknown-probe",
                        p.span,
                        format!("unknown probe `{}`", p.name),
                    )
                    .label("not a probe")
                    .hint(format!("probes are: {}", PROBES.join(", "))),
                );
            }
        }
        if d.signatures.is_empty() && d.probes.is_empty() && d.entries.is_empty() {
            self.error(
                Diagnostic::new(
                    "empty-detect",
                    d.span,
                    "`detect` gives no way to find the hypervisor",
                )
                .label("empty")
                .hint("add a `signature \"…\";`, a `probe backdoor;` or an `entry NOTE;`"),
            );
        }
    }

    fn check_register(&mut self, r: &Ident) -> bool {
        if REGISTERS.contains(&r.name.as_str()) {
            return true;
        }
        let d = Diagnostic::new(
            "unknown-register",
            r.span,
            format!("`{}` is not a general-purpose register", r.name),
        )
        .label("not a register")
        .suggest(
            &r.name,
            REGISTERS,
            "registers are written by their 64-bit names: rax, rbx, …, r15",
        );
        self.error(d);
        false
    }

    fn check_leaf_register(&mut self, r: &Ident) -> bool {
        if LEAF_REGISTERS.contains(&r.name.as_str()) {
            return true;
        }
        self.error(
            Diagnostic::new(
                "unknown-register",
                r.span,
                format!("`{}` is not a CPUID output register", r.name),
            )
            .label("not eax, ebx, ecx or edx")
            .hint("CPUID returns its answer in eax, ebx, ecx and edx"),
        );
        false
    }

    fn check_register_width(&mut self, ty: &TypeRef, max: u64) {
        if let Some(layout) = layout_of(&self.types, ty) {
            if layout.size > max {
                self.error(
                    Diagnostic::new(
                        "too-wide",
                        ty.span(),
                        format!(
                            "a {}-byte value does not fit in a register of {max} bytes",
                            layout.size
                        ),
                    )
                    .label("too wide")
                    .hint("use a narrower type"),
                );
            }
        }
    }

    fn check_convention(&mut self, c: &Convention, scope: &mut Scope) {
        let mut st = ConvState::default();
        for stmt in &c.stmts {
            let key = stmt.keyword();
            if let Some(first) = st.seen.get(key) {
                let first = *first;
                self.error(
                    Diagnostic::new(
                        "duplicate-key",
                        stmt.span(),
                        format!("`{key}` is given twice in the convention"),
                    )
                    .label("second time")
                    .related(first, "first given here")
                    .hint("each convention statement may appear once"),
                );
                continue;
            }
            st.seen.insert(key, stmt.span());
            self.convention_stmt(stmt, &mut st, scope);
        }
        self.convention_complete(c, &st, scope);
    }

    /// One statement of a convention, checked; what later checks need goes
    /// to `st`.
    fn convention_stmt<'a>(
        &mut self,
        stmt: &'a ConvStmt,
        st: &mut ConvState<'a>,
        scope: &mut Scope,
    ) {
        match stmt {
            ConvStmt::Instruction(forms, _) => {
                let mut listed = BTreeMap::new();
                for f in forms {
                    self.unique(&mut listed, f, "instruction form");
                    if !INSTRUCTIONS.contains(&f.name.as_str()) {
                        let d = Diagnostic::new(
                            "unknown-instruction",
                            f.span,
                            format!("unknown instruction form `{}`", f.name),
                        )
                        .label("not an instruction form")
                        .suggest(
                            &f.name,
                            INSTRUCTIONS,
                            format!("forms are: {}", INSTRUCTIONS.join(", ")),
                        );
                        self.error(d);
                    }
                    st.uses_page |= f.name == "page";
                    st.forms_declared.push(f.name.clone());
                }
            }
            ConvStmt::Page(path, stride, _) => {
                st.page = Some(path);
                if stride.value < 0 || stride.value > 4096 {
                    self.error(
                        Diagnostic::new(
                            "value-out-of-range",
                            stride.span,
                            "a hypercall page stride is between 0 and 4096",
                        )
                        .label("out of range")
                        .hint("Xen uses 32; a single entry point is stride 0"),
                    );
                }
            }
            ConvStmt::Number(r, _) => {
                st.number = Some(r);
                if r.name != "slot" && self.check_register(r) {
                    self.register_once(&mut st.regs_used, r, "carries the call number");
                }
            }
            ConvStmt::Args(regs, _) => {
                scope.arg_regs = regs.len();
                for r in regs {
                    if self.check_register(r) {
                        if r.name == "rsp" {
                            self.error(
                                Diagnostic::new(
                                    "bad-register",
                                    r.span,
                                    "`rsp` cannot carry an argument",
                                )
                                .label("the stack pointer")
                                .hint("choose another register"),
                            );
                        }
                        self.register_once(&mut st.regs_used, r, "is an argument register");
                    }
                }
            }
            ConvStmt::Result(regs, _) => {
                scope.result_regs = regs.len();
                let mut listed = BTreeMap::new();
                for r in regs {
                    if self.check_register(r) {
                        self.unique(&mut listed, r, "result register");
                    }
                }
            }
            ConvStmt::Clobbers(regs, _) => {
                let mut listed = BTreeMap::new();
                for r in regs {
                    // `memory`: the call may write guest memory the
                    // compiler must not cache across it.
                    if r.name == "memory" || self.check_register(r) {
                        self.unique(&mut listed, r, "clobbered register");
                    }
                }
            }
            ConvStmt::Fixed(pairs, _) => self.convention_fixed(pairs, st),
            ConvStmt::Choose(choices, _) => self.convention_choose(choices, st, scope),
            ConvStmt::RepShift(b, _) => {
                scope.rep_shift = true;
                if !(0..64).contains(&b.value) {
                    self.error(
                        Diagnostic::new(
                            "bit-out-of-range",
                            b.span,
                            "the rep count must start at a bit of the 64-bit control word",
                        )
                        .label("must be 0..63")
                        .hint(
                            "Hyper-V's rep count starts at bit 32 (HV_HYPERCALL_REP_COMP_OFFSET)",
                        ),
                    );
                }
            }
            ConvStmt::FastBit(b, _) => {
                scope.fast_bit = true;
                if !(0..64).contains(&b.value) {
                    self.error(
                        Diagnostic::new(
                            "bit-out-of-range",
                            b.span,
                            "the fast bit must be a bit of the 64-bit control word",
                        )
                        .label("must be 0..63")
                        .hint("Hyper-V's fast bit is 16"),
                    );
                }
            }
            ConvStmt::Status(s, _) => {
                if !STATUS_STYLES.contains(&s.name.as_str()) {
                    self.error(
                        Diagnostic::new(
                            "unknown-status",
                            s.span,
                            format!("unknown status style `{}`", s.name),
                        )
                        .label("not a status style")
                        .hint(format!("styles are: {}", STATUS_STYLES.join(", "))),
                    );
                }
            }
        }
    }

    /// `fixed` register values: one role per register and form, each value
    /// within 64 bits.
    fn convention_fixed<'a>(&mut self, pairs: &'a [FixedReg], st: &mut ConvState<'a>) {
        for f in pairs {
            if self.check_register(&f.reg) {
                // One role per register and form: the same register
                // may hold different values for different forms.
                let key = Ident {
                    name: format!(
                        "{}@{}",
                        f.reg.name,
                        f.form.as_ref().map(|w| w.name.as_str()).unwrap_or("")
                    ),
                    span: f.reg.span,
                };
                if st.used_fixed.insert(key.name.clone()) {
                    if f.form.is_none() || !st.regs_used.contains_key(&f.reg.name) {
                        self.register_once(&mut st.regs_used, &f.reg, "holds a fixed value");
                    }
                } else {
                    self.register_once(&mut st.regs_used, &f.reg, "holds a fixed value");
                }
            }
            if let Some(form) = &f.form {
                st.forms_named.push(form.clone());
            }
            if !fits(f.value.value, 8, false) {
                self.error(
                    Diagnostic::new(
                        "value-out-of-range",
                        f.value.span,
                        "a register value must fit in 64 bits unsigned",
                    )
                    .label("out of range")
                    .hint("write the value as the upstream header does"),
                );
            }
        }
    }

    /// What holds only of the convention as a whole: every form named is
    /// declared, every required statement is there, the page and its use
    /// agree.
    /// `choose`: each rule names a declared form (checked with the rest in
    /// [`Self::convention_complete`]) and a 12-byte CPUID vendor string or
    /// a feature bit of this hypervisor.
    fn convention_choose(&mut self, choices: &[Choice], st: &mut ConvState<'_>, scope: &Scope) {
        for c in choices {
            st.forms_named.push(c.form.clone());
            match &c.when {
                ChoiceCond::Vendor(vendors) => {
                    for v in vendors.iter().filter(|v| v.value.len() != 12) {
                        self.error(
                            Diagnostic::new(
                                "bad-signature",
                                v.span,
                                format!(
                                    "a CPU vendor string is 12 bytes (CPUID leaf 0's ebx, edx, ecx), not {}",
                                    v.value.len()
                                ),
                            )
                            .label("not 12 bytes")
                            .hint("write it as CPUID returns it: \"AuthenticAMD\", \"GenuineIntel\", \"HygonGenuine\""),
                        );
                    }
                }
                ChoiceCond::Feature(bit) => {
                    if !scope.features.contains_key(&bit.name) {
                        self.unknown_in_scope(bit, scope.features.keys(), "feature bit", scope);
                    }
                }
            }
        }
    }

    fn convention_complete(&mut self, c: &Convention, st: &ConvState<'_>, scope: &Scope) {
        if let Some(span) = st.seen.get("choose") {
            if st.forms_declared.len() < 2 {
                self.error(
                    Diagnostic::new(
                        "nothing-to-choose",
                        *span,
                        "`choose` picks among `instruction` forms, but only one is declared",
                    )
                    .label("one form")
                    .hint("list the forms the hypervisor accepts, `instruction vmcall | vmmcall;`, or remove `choose`"),
                );
            }
        }
        for form in &st.forms_named {
            if !st.forms_declared.contains(&form.name) {
                self.error(
                    Diagnostic::new(
                        "unknown-instruction",
                        form.span,
                        format!(
                            "`{}` is not one of this convention's instruction forms",
                            form.name
                        ),
                    )
                    .label("not used by `instruction`")
                    .hint(format!("the forms are: {}", st.forms_declared.join(", "))),
                );
            }
        }
        for required in ["instruction", "number", "args", "result", "status"] {
            if !st.seen.contains_key(required) {
                self.error(
                    Diagnostic::new(
                        "missing-key",
                        c.span,
                        format!("the convention does not say `{required}`"),
                    )
                    .label(format!("no `{required}`"))
                    .hint("a convention needs instruction, number, args, result and status"),
                );
            }
        }
        if st.uses_page != st.page.is_some() {
            let (span, message, hint) = if st.uses_page {
                (
                    c.span,
                    "the convention calls the hypercall page but does not say where it comes from",
                    "add `page MSR stride N;`",
                )
            } else {
                (
                    st.seen["page"],
                    "a `page` is declared but the instruction is not `page`",
                    "add `page` to `instruction`, or remove this line",
                )
            };
            self.error(
                Diagnostic::new("page-mismatch", span, message)
                    .label("inconsistent")
                    .hint(hint),
            );
        }
        if let Some(path) = st.page {
            self.check_page_ref(path, scope);
        }
        if let Some(n) = st.number {
            if n.name == "slot" && !st.uses_page {
                self.error(
                    Diagnostic::new(
                        "page-mismatch",
                        n.span,
                        "`number slot` selects a hypercall page entry, but there is no page",
                    )
                    .label("no page")
                    .hint("use a register, or `instruction page`"),
                );
            }
        }
    }

    fn register_once(&mut self, used: &mut BTreeMap<String, Span>, r: &Ident, role: &str) {
        if let Some(first) = used.get(&r.name) {
            let first = *first;
            self.error(
                Diagnostic::new(
                    "register-reused",
                    r.span,
                    format!("`{}` is given two roles", r.name),
                )
                .label(format!("also {role}"))
                .related(first, "first role here")
                .hint("each input register has one role"),
            );
        } else {
            used.insert(r.name.clone(), r.span);
        }
    }

    fn check_page_ref(&mut self, path: &Path, scope: &Scope) {
        match &path.member {
            None if scope.msrs.contains_key(&path.base.name) => {}
            Some(reg) if scope.leaves.contains_key(&path.base.name) => {
                self.check_leaf_register(reg);
            }
            _ => self.error(
                Diagnostic::new("unknown-name", path.span, format!("`{}` is neither an MSR nor a leaf register of this hypervisor", path_text(path)))
                    .label("cannot find the hypercall page MSR")
                    .hint("name the MSR (`HV_X64_MSR_HYPERCALL`) or the leaf register that holds its index (`LEAF.ebx`)"),
            ),
        }
    }

    fn check_features(&mut self, f: &Features, scope: &Scope) {
        match (&f.register.member, scope.leaves.get(&f.register.base.name)) {
            (Some(reg), Some(_)) => {
                self.check_leaf_register(reg);
            }
            (None, Some(_)) => self.error(
                Diagnostic::new(
                    "missing-register",
                    f.register.span,
                    "feature bits live in one register of the leaf",
                )
                .label("which register?")
                .hint(format!(
                    "write `{}.eax` (or ebx, ecx, edx)",
                    f.register.base.name
                )),
            ),
            (_, None) => {
                self.unknown_in_scope(&f.register.base, scope.leaves.keys(), "CPUID leaf", scope)
            }
        }
        let mut bits: BTreeMap<i128, (String, Span)> = BTreeMap::new();
        for b in &f.bits {
            if !(0..32).contains(&b.value.value) {
                self.error(
                    Diagnostic::new(
                        "bit-out-of-range",
                        b.value.span,
                        format!(
                            "bit {} does not exist in a 32-bit CPUID register",
                            b.value.text
                        ),
                    )
                    .label("must be 0..31")
                    .hint("feature members are bit positions, not masks"),
                );
                continue;
            }
            self.unique_number(&mut bits, &b.value, &b.name, "feature bit");
        }
    }

    pub(super) fn check_requires(&mut self, requires: &[Ident], scope: &Scope) {
        for r in requires {
            if !scope.features.contains_key(&r.name) {
                self.unknown_in_scope(r, scope.features.keys(), "feature bit", scope);
            }
        }
    }

    /// Report `name` as unknown among `known`, saying what it is instead if
    /// it is something else of this hypervisor.
    pub(super) fn unknown_in_scope<'k>(
        &mut self,
        name: &Ident,
        known: impl Iterator<Item = &'k String>,
        what: &str,
        scope: &Scope,
    ) {
        let known: Vec<&str> = known.map(String::as_str).collect();
        let mut d = Diagnostic::new(
            "unknown-name",
            name.span,
            format!("unknown {what} `{}`", name.name),
        )
        .label(format!("no such {what}"));
        d = if let Some(kind) = scope.kind_of(&name.name) {
            d.hint(format!("`{}` is {kind}, not a {what}", name.name))
        } else if let Some(best) = closest(&name.name, &known) {
            d.hint(format!("did you mean `{best}`?"))
        } else {
            d.hint(format!("declare the {what} in this hypervisor block first"))
        };
        self.error(d);
    }

    fn check_const_value(&mut self, c: &Const) {
        let Some(layout) = layout_of(&self.types, &c.ty) else {
            return;
        };
        let signed = match &c.ty {
            TypeRef::Named { name, .. } => {
                int_primitive(&name.name).map(|(_, s)| s).unwrap_or(false)
            }
            TypeRef::Array { .. } => false,
        };
        if !fits(c.value.value, layout.size, signed) {
            self.error(
                Diagnostic::new(
                    "value-out-of-range",
                    c.value.span,
                    format!("{} does not fit the constant's type", c.value.text),
                )
                .label("out of range")
                .hint("choose a wider type or check the value"),
            );
        }
    }

    fn check_hypercall(&mut self, h: &Hypercall, scope: &Scope) {
        let mut names = BTreeMap::new();
        for p in &h.params {
            self.unique(&mut names, &p.name, "parameter");
            self.check_type_ref(&p.ty, TypePlace::Value);
        }
        if scope.arg_regs > 0 && h.params.len() > scope.arg_regs {
            self.error(
                Diagnostic::new(
                    "too-many-params",
                    h.name.span,
                    format!(
                        "`{}` takes {} parameters but the convention has only {} argument register(s)",
                        h.name.name,
                        h.params.len(),
                        scope.arg_regs
                    ),
                )
                .label("too many parameters")
                .hint("pass the extra values in a struct by address"),
            );
        }
        match &h.result {
            Some(HcResult::Single(ty)) => {
                self.check_type_ref(ty, TypePlace::Value);
            }
            Some(HcResult::Named(results)) => {
                let mut names = BTreeMap::new();
                for r in results {
                    self.unique(&mut names, &r.name, "result");
                    self.check_type_ref(&r.ty, TypePlace::Value);
                }
                if scope.result_regs > 0 && results.len() > scope.result_regs {
                    self.error(
                        Diagnostic::new(
                            "too-many-results",
                            h.name.span,
                            format!(
                                "`{}` returns {} values but the convention has only {} result register(s)",
                                h.name.name,
                                results.len(),
                                scope.result_regs
                            ),
                        )
                        .label("too many results")
                        .hint("list at most one result per result register"),
                    );
                }
            }
            None => {}
        }
        self.check_requires(&h.requires, scope);
        for (used, declared, what, key) in [
            (h.fast, scope.fast_bit, "fast", "fast_bit"),
            (h.rep, scope.rep_shift, "rep", "rep_shift"),
        ] {
            if used && !declared {
                self.error(
                    Diagnostic::new("modifier-without-convention", h.name.span, format!("`{}` is a {what} call, but the convention has no `{key}`", h.name.name))
                        .label(format!("{what} call"))
                        .hint(format!("declare where the control word takes it, e.g. `{key} N;`, or drop `{what}`")),
                );
            }
        }
    }
}

/// `NAME` or `NAME.member` as written.
pub(super) fn path_text(p: &Path) -> String {
    match &p.member {
        Some(m) => format!("{}.{}", p.base.name, m.name),
        None => p.base.name.clone(),
    }
}
