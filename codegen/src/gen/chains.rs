//! Each hypervisor's fallback chains as code: its `Features`, the `Steps`
//! a backend must supply, and `Paravirt<S>`, the `PvOps` that walks every
//! mapped op's chain in the IDL's order.
//!
//! A step whose features are absent is skipped; a step that fails is
//! recorded through `Steps::fell_back` and the next is tried, except that an
//! error the op declares (other than `unsupported`) is returned. Every chain
//! ends in the op's native lowering. Hypercall steps of ops without a
//! result, MSR reads and writes, CPUID reads and `nop` are carried out here;
//! a `shared` step, or a hypercall whose result must be interpreted, is a
//! `Steps` method the backend implements, so a missing mechanism is a
//! compile error rather than a silent gap.

use super::names::{camel, fn_name, from_register, ident, int_literal, rust_type, to_register};
use crate::ast::*;
use crate::ir::{self, FeatureBit, Mechanism};
use crate::model::Model;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// `KvmFeatures` → `kvm_features`.
fn snake(camel_name: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel_name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

struct Hv<'a> {
    model: &'a Model,
    hv: &'a Hypervisor,
}

impl<'a> Hv<'a> {
    fn features(&self) -> Vec<&'a Features> {
        self.hv
            .all_items()
            .filter_map(|i| match i {
                HvItem::Features(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn hypercall(&self, name: &str) -> Option<&'a Hypercall> {
        self.hv.all_items().find_map(|i| match i {
            HvItem::Hypercall(h) if h.name.name == name => Some(h),
            _ => None,
        })
    }

    fn structure(&self, name: &str) -> Option<&'a Struct> {
        match self.model.types.get(name) {
            Some(TypeDecl::Struct(s)) => Some(s),
            _ => None,
        }
    }

    fn constant(&self, name: &str) -> Option<&'a Const> {
        self.hv.all_items().find_map(|i| match i {
            HvItem::Const(c) if c.name.name == name => Some(c),
            _ => None,
        })
    }

    /// Whether the step is a `Steps` method rather than generated code:
    /// a registered structure's reads, a hypercall whose result becomes
    /// the op's (results need a reading the IDL does not give), a platform
    /// region the chain does not read one field of, a `routine`.
    fn needs_method(&self, op: &Op, step: &ir::Step) -> bool {
        match &step.mechanism {
            Mechanism::Shared {
                field,
                registered_by: None,
                ..
            } => field.is_none() || op.result.is_none(),
            Mechanism::Shared { .. } | Mechanism::Routine(_) => true,
            Mechanism::Hypercall { .. } => op.result.is_some(),
            _ => false,
        }
    }
}

/// A value of `ty` built from a `u64` expression.
fn typed(model: &Model, ty: &TypeRef, raw: TokenStream) -> TokenStream {
    use super::names::Repr;
    let t = rust_type(ty);
    let narrow = |p: &str| {
        let p = ident(p);
        if p == "u64" {
            quote!(#raw)
        } else {
            quote!((#raw) as #p)
        }
    };
    match super::names::repr(model, ty) {
        Repr::Int(p) => narrow(&p),
        Repr::Newtype(p) => {
            let v = narrow(&p);
            quote!(#t(#v))
        }
        Repr::Flags(p) => {
            let v = narrow(&p);
            quote!(#t::from_bits_retain(#v))
        }
        _ => {
            let v = format_ident!("v");
            let conv = from_register(model, ty, &v);
            quote!({ let v: u64 = #raw; #conv })
        }
    }
}

/// Multiply or divide a `u64` expression to convert between two units of
/// one dimension.
fn convert(model: &Model, raw: TokenStream, from: Option<&str>, to: Option<&str>) -> TokenStream {
    let (Some(from), Some(to)) = (
        from.and_then(|u| model.units.get(u)),
        to.and_then(|u| model.units.get(u)),
    ) else {
        return raw;
    };
    let (f, t) = (from.factor, to.factor);
    if f == t {
        raw
    } else if f > t {
        let n = proc_macro2::Literal::u64_unsuffixed((f / t) as u64);
        quote!((#raw).saturating_mul(#n))
    } else {
        let n = proc_macro2::Literal::u64_unsuffixed((t / f) as u64);
        quote!((#raw) / #n)
    }
}

impl Hv<'_> {
    /// An argument expression as a `u64`, and its unit.
    fn raw(&self, op: &Op, e: &Expr) -> (TokenStream, Option<String>) {
        let model = self.model;
        match e {
            Expr::Int(i) => {
                // A register value: negative literals wrap, as in C.
                let raw = if i.value < 0 {
                    let v = int_literal(i);
                    quote!((#v as i64) as u64)
                } else {
                    let text = format!("{}_u64", i.text.replace('_', ""));
                    syn::parse_str::<syn::Expr>(&text)
                        .map(|e| quote!(#e))
                        .unwrap_or_else(|_| quote!(0u64))
                };
                (raw, None)
            }
            Expr::Name(n) if n.name == "this_cpu" => (quote!(s.this_cpu()), None),
            Expr::Name(n) => {
                if let Some(p) = op.params.iter().find(|p| p.name == *n) {
                    let name = ident(&p.name.name);
                    return (to_register(model, &p.ty, &name), model.unit_of(&p.ty));
                }
                if let Some(c) = self.constant(&n.name) {
                    let name = ident(&c.name.name);
                    return (to_register(model, &c.ty, &name), model.unit_of(&c.ty));
                }
                (quote!(0u64), None)
            }
            Expr::Member(base, member, _) => {
                let b = ident(&base.name);
                if member.name == "len" {
                    (quote!(#b.len() as u64), None)
                } else {
                    (quote!(#b.as_ptr() as u64), None)
                }
            }
            Expr::As(inner, unit, _) => {
                let (raw, from) = self.raw(op, inner);
                (
                    convert(model, raw, from.as_deref(), Some(&unit.name)),
                    Some(unit.name.clone()),
                )
            }
            Expr::Struct(..) => (quote!(0u64), None),
            // The byte of the per-byte loop the step runs in.
            Expr::Each(..) => (quote!(u64::from(byte)), None),
        }
    }

    /// An argument for a parameter of type `ty`.
    fn arg(&self, op: &Op, e: &Expr, ty: &TypeRef) -> TokenStream {
        if let Expr::Struct(name, fields, _) = e {
            let s = ident(&name.name);
            let Some(TypeDecl::Struct(decl)) = self.model.types.get(&name.name) else {
                return quote!(&#s::ZERO);
            };
            let inits = fields.iter().filter_map(|(f, v)| {
                let field = decl.fields.iter().find(|d| d.name == *f)?;
                let fname = ident(&f.name);
                let value = self.arg(op, v, &field.ty);
                Some(quote!(#fname: #value))
            });
            // `..ZERO` fills what the literal leaves out: other fields, and
            // the padding the generator adds for gaps.
            let named_all = decl
                .fields
                .iter()
                .all(|d| fields.iter().any(|(f, _)| *f == d.name));
            let mut spans: Vec<(i128, u64)> = decl
                .fields
                .iter()
                .map(|f| {
                    (
                        f.offset.value,
                        crate::model::layout_of(&self.model.types, &f.ty)
                            .map(|l| l.size)
                            .unwrap_or(0),
                    )
                })
                .collect();
            spans.sort();
            let mut end = 0i128;
            let mut gaps = false;
            for (offset, size) in spans {
                gaps |= offset > end;
                end = end.max(offset + size as i128);
            }
            gaps |= end < decl.size.value;
            let rest = if named_all && !gaps {
                quote!()
            } else {
                quote!(..#s::ZERO)
            };
            let literal = quote!(&#s { #(#inits,)* #rest });
            // A structure where the hypercall takes a plain number travels
            // as its address; the temporary lives until the call returns.
            return match super::names::repr(self.model, ty) {
                super::names::Repr::Struct => literal,
                _ => typed(self.model, ty, quote!(core::ptr::from_ref(#literal) as u64)),
            };
        }
        // The byte of a per-byte loop, where a byte goes.
        if matches!(e, Expr::Each(..)) && rust_type(ty).to_string() == "u8" {
            return quote!(byte);
        }
        // A parameter or constant that already has the wanted type.
        if let Expr::Name(n) = e {
            let same = |t: &TypeRef| rust_type(t).to_string() == rust_type(ty).to_string();
            if op.params.iter().any(|p| p.name == *n && same(&p.ty))
                || self.constant(&n.name).is_some_and(|c| same(&c.ty))
            {
                let name = ident(&n.name);
                return quote!(#name);
            }
        }
        let (raw, _) = self.raw(op, e);
        typed(self.model, ty, raw)
    }
}

/// The `Steps` method of step `index`: a routine's own name, else
/// `OP_stepN`.
fn method_name(op: &Op, step: &ir::Step) -> proc_macro2::Ident {
    match &step.mechanism {
        Mechanism::Routine(name) => ident(name),
        _ => format_ident!("{}_step{}", op.name.name, step.number),
    }
}

/// The Rust type of an op's value, and whether it returns it in a
/// `Result` (it lists error kinds).
fn op_return(op: &ir::Op) -> (TokenStream, bool) {
    let value = op
        .syntax
        .result
        .as_ref()
        .map(rust_type)
        .unwrap_or_else(|| quote!(()));
    (value, op.fallible())
}

/// Tokens for an hypervisor module: Features, Steps and Paravirt.
/// Which services of `Steps` the chains use: only those are declared.
#[derive(Default)]
struct Uses {
    hypercalls: bool,
    /// Hypercalls the chains make, by name: each gets a `Steps` method.
    calls: std::collections::BTreeSet<String>,
    /// Structures whose address the platform supplies, by name: each
    /// gets a `Steps` accessor.
    regions: std::collections::BTreeSet<String>,
    this_cpu: bool,
    read_msr: bool,
    write_msr: bool,
    cpuid: bool,
    version: bool,
}

/// One mapped op's chain as code: the `PvOps` method, its plan entry
/// and its coverage line.
struct Chain {
    code: TokenStream,
    plan: TokenStream,
    coverage: TokenStream,
}

/// What the steps of one op's chain are generated from.
struct OpCx<'a> {
    op: &'a Op,
    op_name: &'a str,
    display: &'a str,
    /// The op as the generated `Op` names it: `Op::ClockNs`.
    row: TokenStream,
    /// The op's interface feature, if newer than the baseline: its chain
    /// and step methods exist only with it.
    gate: TokenStream,
    value_ty: TokenStream,
    fallible: bool,
    params: Vec<TokenStream>,
    args: Vec<proc_macro2::Ident>,
    /// The errors the op declares, other than `unsupported`: returned, not
    /// fallen back from.
    returnable: Vec<TokenStream>,
}

impl<'a> OpCx<'a> {
    fn new(
        model: &Model,
        resolved: &ir::Op,
        op: &'a Op,
        display: &'a str,
        value_ty: TokenStream,
        fallible: bool,
    ) -> Self {
        let op_name = op.name.name.as_str();
        let variant = format_ident!("{}", camel(op_name));
        let row = quote!(Op::#variant);
        let params = op
            .params
            .iter()
            .map(|p| {
                let n = ident(&p.name.name);
                let t = rust_type(&p.ty);
                quote!(#n: #t)
            })
            .collect();
        let returnable = resolved
            .errors
            .iter()
            .filter(|k| *k != "unsupported")
            .map(|k| {
                let v = format_ident!("{}", camel(k));
                quote!(ErrorKind::#v)
            })
            .collect();
        OpCx {
            op,
            op_name,
            display,
            row,
            gate: super::names::cfg(model, &op.meta),
            value_ty,
            fallible,
            params,
            args: op.params.iter().map(|p| ident(&p.name.name)).collect(),
            returnable,
        }
    }

    /// `raw`, a register's value in unit `from`, as the op's result type
    /// (converted to its unit); `()` for an op without a result.
    fn result(&self, model: &Model, raw: TokenStream, from: Option<&str>) -> TokenStream {
        let Some(ty) = self.op.result.as_ref() else {
            return quote!(());
        };
        let to = model.unit_of(ty);
        typed(model, ty, convert(model, raw, from, to.as_deref()))
    }

    /// `v` as the op returns it.
    fn ok(&self, v: TokenStream) -> TokenStream {
        match (self.fallible, v.to_string() == "()") {
            (true, _) => quote!(Ok(#v)),
            (false, true) => quote!(),
            (false, false) => v,
        }
    }

    /// Record that step `index` (from 0) answered.
    fn served(&self, index: usize) -> TokenStream {
        let row = &self.row;
        let step = proc_macro2::Literal::usize_unsuffixed(index + 1);
        quote!(s.served(#row, #step);)
    }

    /// The match arm for step `index`'s failure: a declared error is
    /// returned, anything else falls back.
    fn on_error(&self, index: usize) -> TokenStream {
        let (row, returnable) = (&self.row, &self.returnable);
        let step = proc_macro2::Literal::usize_unsuffixed(index + 1);
        if self.fallible && !returnable.is_empty() {
            quote!(Err(e) => { if matches!(e.kind, #(#returnable)|*) { return Err(e); } s.fell_back(#row, #step, e); })
        } else {
            quote!(Err(e) => s.fell_back(#row, #step, e))
        }
    }
}

/// The `Features` struct of an ABI's feature sets, with its reads and its
/// list of bits by name.
fn features_tokens(sets: &[&Features]) -> TokenStream {
    let fields = sets.iter().map(|s| {
        let f = format_ident!("{}", snake(&s.name.name));
        let t = ident(&s.name.name);
        let doc = format!(" `{}` bits.", crate::fmt::path_text(&s.register));
        quote!(#[doc = #doc] pub #f: #t)
    });
    let none = sets.iter().map(|s| {
        let f = format_ident!("{}", snake(&s.name.name));
        let t = ident(&s.name.name);
        quote!(#f: #t::empty())
    });
    let reads = sets.iter().map(|s| {
        let f = format_ident!("{}", snake(&s.name.name));
        let t = ident(&s.name.name);
        let leaf = ident(&s.register.base.name);
        let index = match s.register.member.as_ref().map(|m| m.name.as_str()) {
            Some("ebx") => 1usize,
            Some("ecx") => 2,
            Some("edx") => 3,
            _ => 0,
        };
        let index = proc_macro2::Literal::usize_unsuffixed(index);
        quote!(#f: #t::from_bits_retain(leaf(#leaf)[#index]))
    });
    let names = sets.iter().flat_map(|s| {
        let f = format_ident!("{}", snake(&s.name.name));
        let t = ident(&s.name.name);
        s.bits.iter().map(move |b| {
            let n = &b.name.name;
            let bit = ident(n);
            quote!((#n, self.#f.contains(#t::#bit)))
        })
    });
    let count = proc_macro2::Literal::usize_unsuffixed(sets.iter().map(|s| s.bits.len()).sum());
    // With no feature sets there is nothing to read.
    let leaf_param = if sets.is_empty() {
        quote!(_leaf: impl FnMut(u32) -> [u32; 4])
    } else {
        quote!(mut leaf: impl FnMut(u32) -> [u32; 4])
    };

    quote! {
        #[doc = " Every feature set of this ABI, as read at the base where the hypervisor was found."]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct Features { #(#fields,)* }

        impl Features {
            #[doc = " No features: every chain goes to its native step."]
            pub const NONE: Self = Self { #(#none,)* };

            #[doc = " Read every feature set. `leaf(address)` returns eax, ebx, ecx, edx of"]
            #[doc = " the leaf with that upstream number, at the base the hypervisor was found at."]
            pub fn read(#leaf_param) -> Self {
                Self { #(#reads,)* }
            }

            #[doc = " Every feature bit by upstream name, and whether it is set: for reports."]
            pub fn list(&self) -> [(&'static str, bool); #count] {
                [#(#names),*]
            }
        }
    }
}

/// The services a backend supplies beyond its features: only those the
/// chains use.
fn services(h: &Hv<'_>, uses: &Uses) -> Vec<TokenStream> {
    let mut services = Vec::new();
    if uses.hypercalls {
        services.push(quote!(
            #[doc = " The hypercall stubs, entered the way this CPU needs."]
            fn hypercalls(&self) -> Hypercalls;
        ));
    }
    services.extend(call_hooks(h, uses));
    for region in &uses.regions {
        let ty = ident(region);
        let doc = format!(" Where the platform put this guest's `{region}` (configured, not registered by the guest): `None` when it gave none or the backend does not trust it (a wrong signature or revision); the steps reading it then fall back.");
        // Behind the structure's interface version, as the type itself is.
        let gate = h
            .model
            .types
            .get(region.as_str())
            .map(|t| super::names::cfg(h.model, t.meta()))
            .unwrap_or_default();
        services.push(quote!(
            #[doc = #doc]
            #gate
            fn #ty(&self) -> Option<core::ptr::NonNull<#ty>>;
        ));
    }
    if uses.this_cpu {
        services.push(quote!(
            #[doc = " The calling CPU's index as the hypervisor numbers it."]
            fn this_cpu(&self) -> u64;
        ));
    }
    if uses.read_msr {
        services.push(quote!(
            #[doc = " Read an MSR (`rdmsr`)."]
            #[doc = ""]
            #[doc = " # Safety"]
            #[doc = ""]
            #[doc = " `msr` is one of this hypervisor's MSRs that the IDL maps, its"]
            #[doc = " features present, and the caller runs in ring 0: reading another MSR"]
            #[doc = " may fault, or have side effects."]
            unsafe fn read_msr(&self, msr: u32) -> u64;
        ));
    }
    if uses.write_msr {
        services.push(quote!(
            #[doc = " Write an MSR (`wrmsr`)."]
            #[doc = ""]
            #[doc = " # Safety"]
            #[doc = ""]
            #[doc = " `msr` is one of this hypervisor's MSRs that the IDL maps, its"]
            #[doc = " features present, `value` one the mapping writes, and the caller runs"]
            #[doc = " in ring 0. An arbitrary MSR write can break memory safety (a page"]
            #[doc = " the hypervisor then writes to, an interrupt routed anywhere)."]
            unsafe fn write_msr(&self, msr: u32, value: u64);
        ));
    }
    if uses.version {
        services.push(quote!(
            #[doc = " The hypervisor's version (major, minor, patch), if it says: steps"]
            #[doc = " that need a newer one (`@hv_since` in the IDL) are skipped. `None`"]
            #[doc = " skips nothing."]
            fn hv_version(&self) -> Option<(u32, u32, u32)> {
                None
            }
        ));
    }
    if uses.cpuid {
        services.push(quote!(#[doc = " CPUID leaf `leaf` (upstream numbering) read at the base where the hypervisor was found: eax, ebx, ecx, edx."] fn cpuid(&self, leaf: u32) -> [u32; 4];));
    }
    services
}

/// A `Steps` method per hypercall the chains make, which the chains call:
/// by default through [`Steps::hypercalls`]' stub; a host test overrides
/// it to see each call without a hypervisor.
fn call_hooks(h: &Hv<'_>, uses: &Uses) -> Vec<TokenStream> {
    let Some(conv) = h.model.convention(&h.hv.name.name) else {
        return Vec::new();
    };
    uses.calls
        .iter()
        .filter_map(|name| h.hypercall(name))
        .map(|hc| {
            let f = fn_name(&hc.name.name);
            let (params, args, ret) = super::stubs::signature(h.model, conv, hc);
            let gate = super::names::cfg(h.model, &hc.meta);
            let doc = format!(" `{}` as the chains make it: through [`Steps::hypercalls`]. A host test overrides it to watch the calls.", hc.name.name);
            let contract = format!(" As for `Hypercalls::{f}`: the hypervisor must be this one, and every address argument must point to memory it may use as the call says.");
            let why = format!("the caller upholds this method's contract, which is `Hypercalls::{f}`'s.");
            quote! {
                #[doc = #doc]
                #[doc = ""]
                #[doc = " # Safety"]
                #[doc = ""]
                #[doc = #contract]
                #gate
                #[inline(always)]
                unsafe fn #f(&self, #(#params),*) #ret {
                    __safety__!(#why);
                    // SAFETY: (generator source) the `__safety__!` line before it emits the generated block's comment.
                    unsafe { self.hypercalls().#f(#(#args),*) }
                }
            }
        })
        .collect()
}

/// `plan` (and with version-gated steps `plan_at`): each mapped op's first
/// step given the features.
fn plan_fns(plans: &[TokenStream], uses_version: bool) -> TokenStream {
    let plan_len = proc_macro2::Literal::usize_unsuffixed(plans.len());
    let this_plan = if uses_version {
        quote!(plan_at(self.0.features(), self.0.hv_version()))
    } else {
        quote!(plan(self.0.features()))
    };
    // The same question for every hypervisor, so that a registry of
    // backends asks it without knowing which one it holds.
    let planned = quote! {
        impl<S: Steps> Paravirt<S> {
            #[doc = " The step `op`'s chain starts with on this hypervisor (its number from"]
            #[doc = " 1, and its IDL text), as [`plan`] says for the features found; `None`"]
            #[doc = " for an op this hypervisor does not map."]
            pub fn planned(&self, op: Op) -> Option<(usize, &'static str)> {
                #this_plan.iter().find(|(o, _)| *o == op).map(|(_, s)| *s)
            }
        }
    };
    // With version-gated steps, the plan also depends on the hypervisor's
    // version; `plan` is then `plan_at` an unknown version.
    if uses_version {
        quote! {
            #[doc = " For each mapped op, the step its chain starts with given `features`"]
            #[doc = " (its number from 1, and its IDL text): what a boot report shows."]
            pub fn plan(features: &Features) -> [(Op, (usize, &'static str)); #plan_len] {
                plan_at(features, None)
            }

            #[doc = " [`plan`] for a hypervisor of `version` (see [`Steps::hv_version`])."]
            #[allow(unused_variables)]
            pub fn plan_at(features: &Features, version: Option<(u32, u32, u32)>) -> [(Op, (usize, &'static str)); #plan_len] {
                [#(#plans),*]
            }

            #planned
        }
    } else {
        quote! {
            #[doc = " For each mapped op, the step its chain starts with given `features`"]
            #[doc = " (its number from 1, and its IDL text): what a boot report shows."]
            #[allow(unused_variables)]
            pub fn plan(features: &Features) -> [(Op, (usize, &'static str)); #plan_len] {
                [#(#plans),*]
            }

            #planned
        }
    }
}

/// The `PvOps` method walking `map`'s chain, its plan entry and its
/// coverage line; `None` for a map of an op the model does not know.
fn chain(
    h: &Hv<'_>,
    chain: &ir::Chain,
    display: &str,
    uses: &mut Uses,
    step_methods: &mut Vec<TokenStream>,
) -> Option<Chain> {
    let model = h.model;
    let resolved = model.resolved_op(&chain.op)?;
    let op = &resolved.syntax;
    let op_name = op.name.name.as_str();
    let name = ident(op_name);
    // An op newer than the baseline exists only with its interface
    // feature: so do its chain and its step methods.
    let (value_ty, fallible) = op_return(resolved);
    let ret_ty = if fallible {
        quote!(Result<#value_ty, PvError>)
    } else {
        quote!(#value_ty)
    };
    let ret_clause = super::names::returns(&ret_ty);
    let cx = OpCx::new(model, resolved, op, display, value_ty, fallible);
    let (gate, params, row) = (&cx.gate, &cx.params, &cx.row);
    let mut body = Vec::new();
    for step in &chain.steps {
        let mut conds: Vec<TokenStream> = step.requires.iter().map(feature_bit_test).collect();
        if let Some(g) = &step.guard {
            let p = ident(&g.param);
            let ty = op
                .params
                .iter()
                .find(|x| x.name.name == g.param)
                .map(|x| rust_type(&x.ty))
                .unwrap_or_default();
            let v = format_ident!("{}", camel(&g.variant));
            conds.push(quote!(#p == #ty::#v));
        }
        // A step the hypervisor's version predates is skipped, as if
        // its features were absent (an unknown version does not skip).
        if let Some(test) = version_test(step, quote!(s.hv_version())) {
            uses.version = true;
            conds.push(test);
        }
        let action = action(h, &cx, step, uses, step_methods);
        if let Some(action) = action {
            let step_no = proc_macro2::Literal::usize_unsuffixed(step.number);
            conds.push(quote!(!s.withdrawn(#row, #step_no)));
            let cond = quote!(#(#conds)&&*);
            body.push(quote!(if #cond { #action }));
        }
    }
    let native = super::ops::within_contract(
        resolved,
        super::ops::native_call(resolved, quote!(S::Native), quote!(self)),
    );
    let (safety_doc, qualifier) = (
        super::ops::safety_section(resolved),
        super::ops::unsafety(resolved),
    );
    // A per-byte step hands what it could not send to the steps after it
    // (a convention without a status cannot fail).
    let can_fail = h
        .model
        .convention(&h.hv.name.name)
        .is_some_and(|c| c.reports_failure());
    let rebind = chain
        .steps
        .iter()
        .filter(|_| can_fail)
        .find_map(|st| match &st.mechanism {
            Mechanism::Hypercall {
                per_byte: Some(b), ..
            } => {
                let b = ident(b);
                Some(quote!(let mut #b = #b;))
            }
            _ => None,
        });
    let code = quote! {
        #safety_doc
        #gate
        #qualifier fn #name(&self, #(#params),*) #ret_clause {
            let s = &self.0;
            #[allow(unused_variables)]
            let features = s.features();
            #rebind
            #(#body)*
            s.served(#row, 0);
            #native
        }
    };
    // The plan: the first step whose features are present (guards and
    // run-time failures aside).
    let candidates = chain.steps.iter().map(|step| {
        let mut conds: Vec<TokenStream> = step.requires.iter().map(feature_bit_test).collect();
        conds.extend(version_test(step, quote!(version)));
        let cond = if conds.is_empty() {
            quote!(true)
        } else {
            quote!(#(#conds)&&*)
        };
        let n = proc_macro2::Literal::usize_unsuffixed(step.number);
        let text = &step.text;
        quote!(if #cond { return (#n, #text); })
    });
    let plan = quote!((#row, { let step = || -> (usize, &'static str) { #(#candidates)* (0, "native") }; step() }));
    let kinds_text = chain.mechanisms();
    let coverage = quote!((#op_name, #kinds_text));
    Some(Chain {
        code,
        plan,
        coverage,
    })
}

/// `version` (an `Option<(u32, u32, u32)>` expression) is new enough for
/// `step`, or unknown; `None` when the step needs no version.
fn version_test(step: &ir::Step, version: TokenStream) -> Option<TokenStream> {
    let (major, minor, patch) = step.needs_version?;
    let (major, minor, patch) = (major as u32, minor as u32, patch as u32);
    Some(quote!(#version.is_none_or(|v| v >= (#major, #minor, #patch))))
}

/// `features.kvm_features.contains(KvmFeatures::X)`.
fn feature_bit_test(f: &FeatureBit) -> TokenStream {
    let field = format_ident!("{}", snake(&f.set));
    let ty = ident(&f.set);
    let bit = ident(&f.bit);
    quote!(features.#field.contains(#ty::#bit))
}

/// The code of step `index` of `cx`'s chain: carried out here (hypercall,
/// MSR, CPUID, `nop`), or a call of the `Steps` method it declares in
/// `step_methods`; `None` for a step with no code here (`native`).
fn action(
    h: &Hv<'_>,
    cx: &OpCx<'_>,
    step: &ir::Step,
    uses: &mut Uses,
    step_methods: &mut Vec<TokenStream>,
) -> Option<TokenStream> {
    let (op, op_name, display, model) = (cx.op, cx.op_name, cx.display, h.model);
    let (value_ty, gate, params, args) = (&cx.value_ty, &cx.gate, &cx.params, &cx.args);
    let index = step.number - 1;
    let err = cx.on_error(index);
    let ok = |v: TokenStream| cx.ok(v);
    let served = |index: usize| cx.served(index);
    if let Mechanism::Shared {
        structure,
        registered_by: None,
        ..
    } = &step.mechanism
    {
        uses.regions.insert(structure.clone());
    }
    if h.needs_method(op, step) {
        let m = method_name(op, step);
        let doc = format!(" `{op_name}`, step {}: `{}`", step.number, step.text);
        let note = if matches!(step.mechanism, Mechanism::Routine(_)) {
            " The backend's own code, for what the IDL cannot say: `pvi explain`, the matrix and the boot report name it. Return `unsupported` when it cannot serve the call; the chain then goes on."
        } else {
            " Return `unsupported` when the mechanism is not available on this vCPU; the chain then goes on."
        };
        let r = if op.result.is_some() {
            quote!(Result<#value_ty, PvError>)
        } else {
            quote!(Result<(), PvError>)
        };
        let resolved = model.resolved_op(op_name)?;
        let (safety_doc, qualifier) = (
            super::ops::safety_docs(resolved),
            super::ops::unsafety(resolved),
        );
        step_methods.push(quote!(#[doc = #doc] #[doc = ""] #[doc = #note] #safety_doc #gate #qualifier fn #m(&self, #(#params),*) -> #r;));
        let done = ok(quote!(v));
        let served = served(index);
        if resolved.safety.is_some() {
            // The contract's block first: a block as the `match` scrutinee
            // reads badly (clippy's blocks_in_conditions).
            let call = super::ops::within_contract(resolved, quote!(s.#m(#(#args),*)));
            return Some(
                quote!({ let result = #call; match result { Ok(v) => { #served return #done } #err } }),
            );
        }
        return Some(quote!(match s.#m(#(#args),*) { Ok(v) => { #served return #done } #err }));
    }
    match (&step.mechanism, &step.syntax.kind) {
        (Mechanism::Hypercall { .. }, StepKind::Hypercall(hc, exprs)) => {
            hypercall_step(h, cx, index, hc, exprs, uses)
        }
        (Mechanism::MsrWrite { name, .. }, StepKind::MsrWrite(_, value)) => {
            uses.write_msr = true;
            let m = ident(name);
            let (raw, _) = h.raw(op, value);
            let done = ok(quote!(()));
            let served = served(index);
            let why = format!("Steps is an unsafe trait whose implementor promises that {display} is the hypervisor; `{name}` is its MSR, written as the IDL maps `{op_name}`, after the step's features were checked.");
            Some(
                // SAFETY: (generator source) the `__safety__!` line before it emits the generated block's comment.
                quote!({ __safety__!(#why); unsafe { s.write_msr(#m, #raw) }; #served return #done; }),
            )
        }
        (Mechanism::MsrRead { name, unit, .. }, _) => {
            uses.read_msr = true;
            let m = ident(name);
            let done = ok(cx.result(model, quote!(msr_value), unit.as_deref()));
            let served = served(index);
            let why = format!("Steps is an unsafe trait whose implementor promises that {display} is the hypervisor; `{name}` is its MSR, read as the IDL maps `{op_name}`, after the step's features were checked.");
            Some(
                // SAFETY: (generator source) the `__safety__!` line before it emits the generated block's comment.
                quote!({ __safety__!(#why); let msr_value = unsafe { s.read_msr(#m) }; #served return #done; }),
            )
        }
        (
            Mechanism::Cpuid {
                leaf,
                register,
                unit,
                ..
            },
            _,
        ) => {
            uses.cpuid = true;
            let leaf = ident(leaf);
            let register = proc_macro2::Literal::usize_unsuffixed(*register);
            let done = ok(cx.result(model, quote!(u64::from(raw)), unit.as_deref()));
            let step_no = proc_macro2::Literal::usize_unsuffixed(step.number);
            let served = served(index);
            let row = &cx.row;
            // A leaf register of zero says "not provided".
            Some(quote! {{
                let raw = s.cpuid(#leaf)[#register];
                if raw != 0 { #served return #done; }
                s.fell_back(#row, #step_no, PvError::UNSUPPORTED);
            }})
        }
        (
            Mechanism::Shared {
                registered_by: None,
                ..
            },
            _,
        ) => platform_read(h, cx, step),
        (Mechanism::Nop, _) => {
            let done = ok(quote!(()));
            let served = served(index);
            Some(quote!({ #served return #done; }))
        }
        _ => None,
    }
}

/// A generated hypercall step, through the `Steps` method of the call.
fn hypercall_step(
    h: &Hv<'_>,
    cx: &OpCx<'_>,
    index: usize,
    hc: &Ident,
    exprs: &[Expr],
    uses: &mut Uses,
) -> Option<TokenStream> {
    let (op, op_name, display) = (cx.op, cx.op_name, cx.display);
    uses.hypercalls = true;
    uses.calls.insert(hc.name.clone());
    let decl = h.hypercall(&hc.name)?;
    let f = fn_name(&hc.name);
    let vals: Vec<TokenStream> = exprs
        .iter()
        .zip(&decl.params)
        .map(|(e, p)| h.arg(op, e, &p.ty))
        .collect();
    let reports_failure = h
        .model
        .convention(&h.hv.name.name)
        .is_some_and(|c| c.reports_failure());
    let done = cx.ok(quote!(()));
    let served = cx.served(index);
    let err = cx.on_error(index);
    let why = format!("Steps is an unsafe trait whose implementor promises that {display} is the hypervisor; the arguments follow the IDL's mapping of `{op_name}`.");
    let call = quote!(s.#f(#(#vals),*));
    if let Some(bytes) = exprs.iter().find_map(|e| match e {
        Expr::Each(b, _) => Some(ident(&b.name)),
        _ => None,
    }) {
        let unit = decl.result.is_none();
        return Some(per_byte(
            cx,
            index,
            &bytes,
            call,
            &why,
            !reports_failure,
            unit,
        ));
    }
    if !reports_failure {
        // SAFETY: (generator source) `__safety__!(#why)` emits the
        // comment above each generated block.
        Some(quote!({ __safety__!(#why); let _ = unsafe { #call }; #served return #done; }))
    } else {
        Some(
            // SAFETY: (generator source) the `__safety__!` line before it emits the generated block's comment.
            quote!({ __safety__!(#why); match unsafe { #call } { Ok(_) => { #served return #done } #err } }),
        )
    }
}

/// A field of a region the platform supplies, read by generated code: one
/// aligned volatile load (a misaligned region falls back); zero says "not
/// provided", as for a leaf.
fn platform_read(h: &Hv<'_>, cx: &OpCx<'_>, step: &ir::Step) -> Option<TokenStream> {
    let model = h.model;
    let Mechanism::Shared {
        structure,
        field: Some(member),
        unit: from,
        ..
    } = &step.mechanism
    else {
        return None;
    };
    let index = step.number - 1;
    let region = ident(structure);
    let field = ident(member);
    let decl = h
        .structure(structure)?
        .fields
        .iter()
        .find(|f| f.name.name == *member)?;
    let widened = match rust_type(&decl.ty).to_string().as_str() {
        "u64" => quote!(raw),
        "u8" | "u16" | "u32" => quote!(u64::from(raw)),
        _ => quote!(raw as u64),
    };
    let done = cx.ok(cx.result(model, widened, from.as_deref()));
    let step_no = proc_macro2::Literal::usize_unsuffixed(index + 1);
    let served = cx.served(index);
    let row = &cx.row;
    let display = cx.display;
    let place = format!("Steps is an unsafe trait whose implementor promises that a region it returns points to a mapped `{structure}`: the field's place is inside it (no reference is made).");
    let why = format!("as above, and {display} lays the region out as declared, for the program's life; the load is aligned (checked first).");
    Some(quote! {{
        if let Some(region) = s.#region() {
            __safety__!(#place);
            // SAFETY: (generator source) the `__safety__!` line before it emits the generated block's comment.
            let field = unsafe { &raw const (*region.as_ptr()).#field };
            if field.is_aligned() {
                __safety__!(#why);
                // SAFETY: (generator source) the `__safety__!` line before it emits the generated block's comment.
                let raw = unsafe { field.read_volatile() };
                if raw != 0 { #served return #done; }
            }
        }
        s.fell_back(#row, #step_no, PvError::UNSUPPORTED);
    }})
}

/// A hypercall step made once per byte of `bytes`: `call` makes one with
/// `byte`. When a call fails the rest of the buffer, from the byte it
/// refused, goes to the next step: nothing is written twice or lost.
fn per_byte(
    cx: &OpCx<'_>,
    index: usize,
    bytes: &proc_macro2::Ident,
    call: TokenStream,
    why: &str,
    no_status: bool,
    returns_unit: bool,
) -> TokenStream {
    let done = cx.ok(quote!(()));
    let served = cx.served(index);
    if no_status {
        let call = if returns_unit {
            // SAFETY: (generator source) the `__safety__!` line before it emits the generated block's comment.
            quote!(unsafe { #call };)
        } else {
            // SAFETY: (generator source) the `__safety__!` line before it emits the generated block's comment.
            quote!(let _ = unsafe { #call };)
        };
        return quote!({
            for &byte in #bytes {
                __safety__!(#why);
                #call
            }
            #served return #done;
        });
    }
    let err = cx.on_error(index);
    quote!({
        let mut sent = 0;
        let mut refused = None;
        for &byte in #bytes {
            __safety__!(#why);
            // SAFETY: (generator source) the `__safety__!` line before it emits the generated block's comment.
            match unsafe { #call } {
                Ok(_) => sent += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let outcome = match refused {
            None => Ok(()),
            Some(e) => {
                #bytes = &#bytes[sent..];
                Err(e)
            }
        };
        match outcome { Ok(()) => { #served return #done } #err }
    })
}

pub fn tokens(model: &Model, hv: &Hypervisor) -> TokenStream {
    let h = Hv { model, hv };
    let display = String::from_utf8_lossy(&hv.display.value).into_owned();
    let features = features_tokens(&h.features());

    // Steps and chains.
    let mut uses = Uses {
        this_cpu: model.chains(&hv.name.name).iter().any(|c| {
            c.steps.iter().any(|st| matches!(&st.syntax.kind, StepKind::Hypercall(_, a) if a.iter().any(|e| matches!(e, Expr::Name(n) if n.name == "this_cpu"))))
        }),
        ..Uses::default()
    };
    let mut step_methods = Vec::new();
    let mut plans = Vec::new();
    let mut chains = Vec::new();
    let mut coverage = Vec::new();
    for c in model.chains(&hv.name.name) {
        if let Some(c) = chain(&h, c, &display, &mut uses, &mut step_methods) {
            chains.push(c.code);
            plans.push(c.plan);
            coverage.push(c.coverage);
        }
    }
    let services = services(&h, &uses);
    let plan_fns = plan_fns(&plans, uses.version);
    let steps_doc = format!(" What a {display} backend supplies: its features, the means to reach the hypervisor, and the mechanisms of the IDL's mappings that generated code cannot carry out.");
    quote! {
        use super::ops::{native, NativeRoutines, Op, PvOps};

        #features

        #[doc = #steps_doc]
        #[doc = ""]
        #[doc = " # Safety"]
        #[doc = ""]
        #[doc = " An implementor promises that the hypervisor this module describes is"]
        #[doc = " present, so that the generated chains may make its hypercalls, and"]
        #[doc = " that a shared region it returns is mapped for the program's life."]
        pub unsafe trait Steps {
            #[doc = " The native routines at the end of every chain."]
            type Native: NativeRoutines;
            #[doc = " The features found at detection."]
            fn features(&self) -> &Features;
            #[doc = " Step `step` (from 1) of `op`'s chain failed with `error`; the next is"]
            #[doc = " tried. The default logs it, and withdraws the step when the hypervisor"]
            #[doc = " itself answered \"no such call\" (`crate::record::withdrawn::fell_back`)."]
            #[inline]
            fn fell_back(&self, op: Op, step: usize, error: PvError) {
                crate::record::withdrawn::fell_back(op, step, error)
            }
            #[doc = " Whether step `step` (from 1) of `op`'s chain is withdrawn: announced, but"]
            #[doc = " seen to fail for good (a timer that never fires, a call the hypervisor"]
            #[doc = " refused), so the chain skips it. The default reads the SDK's record: one"]
            #[doc = " relaxed load until anything is withdrawn."]
            #[inline(always)]
            fn withdrawn(&self, op: Op, step: usize) -> bool {
                crate::record::withdrawn::is_withdrawn(op, step)
            }
            #[doc = " Step `step` (from 1; 0 for the native lowering) of `op`'s chain"]
            #[doc = " answered a call: where each op was served from, for a boot"]
            #[doc = " report that says which mechanisms ran, not only which were planned."]
            #[doc = " The default records it in the SDK's record (a load and a branch)."]
            #[inline(always)]
            fn served(&self, op: Op, step: usize) {
                crate::record::served::record(op, step)
            }
            #(#services)*
            #(#step_methods)*
        }

        #[doc = " The ops of a guest of this hypervisor: every mapped op walks its"]
        #[doc = " fallback chain from the IDL; the others are native."]
        #[derive(Clone, Copy, Debug)]
        pub struct Paravirt<S>(pub S);

        impl<S: Steps> PvOps for Paravirt<S> {
            type Native = S::Native;
            #(#chains)*
        }

        #plan_fns

        #[doc = " Each mapped op and the mechanisms of its chain, in order: for coverage tables."]
        pub const CHAINS: &[(&str, &str)] = &[#(#coverage),*];
    }
}

/// `features.kvm_features.contains(KvmFeatures::X)` for a feature bit of
/// `hv` (`false` for a name the checker would have rejected).
pub(super) fn feature_test(hv: &Hypervisor, name: &str) -> TokenStream {
    let sets = hv.all_items().filter_map(|i| match i {
        HvItem::Features(f) => Some(f),
        _ => None,
    });
    for set in sets {
        if set.bits.iter().any(|b| b.name.name == name) {
            let field = format_ident!("{}", snake(&set.name.name));
            let ty = ident(&set.name.name);
            let bit = ident(name);
            return quote!(features.#field.contains(#ty::#bit));
        }
    }
    quote!(false)
}
