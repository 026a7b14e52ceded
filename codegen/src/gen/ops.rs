//! `ops.rs`: the `PvOps` trait whose default methods are the native
//! lowering, the `NativeRoutines` those defaults call, and a table of ops.

use super::names::{camel, cfg, from_register, ident, returns, rust_type, to_register};
use super::types::item_docs;
use super::{render, Piece};
use crate::ast::*;
use crate::ir::{self, Lowering};
use crate::model::Model;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// The ops `op`'s native routine reads of the op set it serves (`uses`).
fn uses(op: &ir::Op) -> &[String] {
    match &op.lowering {
        Lowering::Routine { uses, .. } => uses,
        Lowering::Asm(_) => &[],
    }
}

/// A call of `op`'s native lowering for the op set `ops` whose native
/// routines are `natives`: a routine that `uses` ops is handed the op set,
/// so that it reads that backend's clock, not bare metal's.
pub(super) fn native_call(op: &ir::Op, natives: TokenStream, ops: TokenStream) -> TokenStream {
    let name = ident(&op.name);
    let args = op.syntax.params.iter().map(|p| ident(&p.name.name));
    if uses(op).is_empty() {
        quote!(native::#name::<#natives>(#(#args),*))
    } else {
        quote!(native::#name::<#natives, _>(#ops, #(#args),*))
    }
}

/// The Rust return type of an op (or of its routine).
fn return_type(op: &ir::Op) -> TokenStream {
    let value = op
        .syntax
        .result
        .as_ref()
        .map(rust_type)
        .unwrap_or_else(|| quote!(()));
    if op.fallible() {
        quote!(Result<#value, PvError>)
    } else {
        quote!(#value)
    }
}

fn op_params(op: &ir::Op) -> Vec<TokenStream> {
    op.syntax
        .params
        .iter()
        .map(|p| {
            let n = ident(&p.name.name);
            let t = rust_type(&p.ty);
            quote!(#n: #t)
        })
        .collect()
}

/// `unsafe` for an op with a contract.
pub(super) fn unsafety(op: &ir::Op) -> TokenStream {
    if op.safety.is_some() {
        quote!(unsafe)
    } else {
        quote!()
    }
}

/// The `# Safety` section of an unsafe op's docs, after other docs: its
/// contract.
pub(super) fn safety_docs(op: &ir::Op) -> TokenStream {
    match &op.safety {
        Some(_) => {
            let section = safety_section(op);
            quote!(#[doc = ""] #section)
        }
        None => quote!(),
    }
}

/// The `# Safety` section alone (for an item with no other docs).
pub(super) fn safety_section(op: &ir::Op) -> TokenStream {
    match &op.safety {
        Some(contract) => {
            let contract = format!(" {contract}");
            quote!(#[doc = " # Safety"] #[doc = ""] #[doc = #contract])
        }
        None => quote!(),
    }
}

/// `call`, inside an `unsafe` block when `op` is unsafe: the code around
/// it is an `unsafe fn` whose caller upholds the op's contract, which is
/// the one `call` needs.
pub(super) fn within_contract(op: &ir::Op, call: TokenStream) -> TokenStream {
    if op.safety.is_some() {
        let why = format!(
            "the caller upholds `{}`'s contract (this fn is unsafe with the same one).",
            op.name
        );
        // SAFETY: (generator source) the `__safety__!` line before it emits the generated block's comment.
        quote!({ __safety__!(#why); unsafe { #call } })
    } else {
        call
    }
}

fn notes(op: &ir::Op) -> Vec<String> {
    let mut notes = vec![format!(
        "Group `{}`; context `{}`.",
        op.group,
        op.context.name()
    )];
    if op.hot {
        notes.push("Hot: costs no more than the native instruction.".into());
    }
    if op.required {
        notes.push("Required: every hypervisor ABI says how it serves this op.".into());
    }
    match &op.lowering {
        Lowering::Asm(text) => notes.push(format!("Native lowering: `{text}`.")),
        Lowering::Routine { name, .. } => {
            notes.push(format!("Native lowering: [`NativeRoutines::{name}`]."))
        }
    }
    if op.fallible() {
        notes.push(format!(
            "Errors: {}.",
            op.errors
                .iter()
                .map(|e| format!("`{}`", camel(e)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    notes
}

/// The default method body: the inline asm of the native lowering.
fn asm_body(model: &Model, op: &ir::Op, template: &str) -> TokenStream {
    let lines: Vec<String> = template
        .split(';')
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let mut prepare = Vec::new();
    let mut operands = Vec::new();
    for p in &op.syntax.params {
        let name = ident(&p.name.name);
        let raw = to_register(model, &p.ty, &name);
        prepare.push(quote!(let #name: u64 = #raw;));
        operands.push(quote!(#name = in(reg) #name));
    }
    let uses_stack = ["push", "pop", "call"].iter().any(|w| template.contains(w));
    let options = if uses_stack {
        quote!()
    } else {
        quote!(, options(nostack))
    };
    let why = match &op.safety {
        // An unsafe op's instruction changes what its contract covers.
        Some(_) => format!("`{template}` is the native lowering of `{0}` declared in idl/; the caller upholds `{0}`'s contract (this fn is unsafe with the same one).", op.name),
        None => format!("`{template}` is the native lowering of `{}` declared in idl/; it changes only the CPU state that op's documented meaning names.", op.name),
    };
    let ret = format_ident!("ret");
    let (declare, out, finish) = match &op.syntax.result {
        Some(ty) => {
            let value = from_register(model, ty, &ret);
            (quote!(let ret: u64;), quote!(, ret = out(reg) ret), value)
        }
        None => (quote!(), quote!(), quote!()),
    };
    let finish = match (!op.fallible(), op.syntax.result.is_some()) {
        (true, _) => finish,
        (false, true) => quote!(Ok(#finish)),
        (false, false) => quote!(Ok(())),
    };
    quote! {
        #(#prepare)*
        #declare
        __safety__!(#why);
        // SAFETY: (generator source) the line above emits the comment.
        unsafe { core::arch::asm!(#(#lines),* #(, #operands)* #out #options) };
        #finish
    }
}

/// What each op contributes to the module, gathered op by op.
#[derive(Default)]
struct OpItems {
    methods: Vec<TokenStream>,
    routines: Vec<TokenStream>,
    natives: Vec<TokenStream>,
    table: Vec<TokenStream>,
    op_variants: Vec<TokenStream>,
    op_all: Vec<TokenStream>,
    views: Vec<TokenStream>,
}

impl OpItems {
    /// The type through which `routine` reads the ops it `uses` of the op
    /// set it serves, and nothing else; returns its name.
    fn add_uses_view(
        &mut self,
        model: &Model,
        routine: &str,
        used: &[String],
    ) -> proc_macro2::Ident {
        let view = format_ident!("{}Uses", camel(routine));
        let methods = used.iter().filter_map(|u| {
            let target = model.resolved_op(u)?;
            let name = ident(u);
            let ret = returns(&return_type(target));
            let gate = cfg(model, &target.syntax.meta);
            let doc = format!(" The serving op set's [`PvOps::{u}`].");
            Some(quote!(#[doc = #doc] #gate #[inline] pub fn #name(&self) #ret { self.0.#name() }))
        });
        let names: Vec<&str> = used.iter().map(String::as_str).collect();
        let doc = format!(
            " What [`NativeRoutines::{routine}`] may read of the op set whose chain it \
             ends (the IDL's `uses {}`): that backend's values, which differ from bare \
             metal's (a deadline is in the backend's clock).",
            names.join(", ")
        );
        self.views.push(quote! {
            #[doc = #doc]
            pub struct #view<'a, P: ?Sized>(&'a P);
            impl<P: PvOps + ?Sized> #view<'_, P> { #(#methods)* }
        });
        view
    }

    /// Add `found`'s `PvOps` method(s), native routine and lowering, table
    /// row and `Op` variant.
    fn add(&mut self, model: &Model, resolved: &ir::Op) {
        let op = &resolved.syntax;
        let name = ident(&op.name.name);
        let ps = op_params(resolved);
        let ret = return_type(resolved);
        let ret_clause = returns(&ret);
        let doc = item_docs(&op.meta, &notes(resolved), None);
        let safety_doc = safety_docs(resolved);
        let qualifier = unsafety(resolved);
        let hot = resolved.hot;
        let gate = cfg(model, &op.meta);
        let inline = if hot {
            quote!(#[inline(always)])
        } else {
            quote!(#[inline])
        };
        let body = match &resolved.lowering {
            Lowering::Asm(text) => asm_body(model, resolved, text),
            Lowering::Routine {
                name: routine_name,
                uses: used,
            } => {
                let routine = ident(routine_name);
                let args = op.params.iter().map(|p| ident(&p.name.name));
                let rdoc = format!(
                    " Bare-metal `{}`: {}",
                    op.name.name,
                    op.meta.docs.first_sentence()
                );
                let r = returns(&ret);
                // Not gated: a backend serves every interface version, and
                // the guest's choice of version decides only what it may call.
                if used.is_empty() {
                    self.routines.push(
                        quote!(#[doc = #rdoc] #safety_doc #qualifier fn #routine(#(#ps),*) #r;),
                    );
                    within_contract(
                        resolved,
                        quote!(<N as NativeRoutines>::#routine(#(#args),*)),
                    )
                } else {
                    let view = self.add_uses_view(model, routine_name, used);
                    self.routines.push(quote! {
                        #[doc = #rdoc]
                        #safety_doc
                        #qualifier fn #routine<P: PvOps + ?Sized>(uses: #view<'_, P>, #(#ps),*) #r;
                    });
                    within_contract(
                        resolved,
                        quote!(<N as NativeRoutines>::#routine(super::#view(ops), #(#args),*)),
                    )
                }
            }
        };
        let ndoc = format!(
            " The native lowering of [`PvOps::{0}`](super::PvOps::{0}): the default and the end of every fallback chain.",
            op.name.name
        );
        let generics = if uses(resolved).is_empty() {
            quote!(<N: NativeRoutines>(#(#ps),*))
        } else {
            quote!(<N: NativeRoutines, P: super::PvOps + ?Sized>(ops: &P, #(#ps),*))
        };
        self.natives.push(quote! {
            #[doc = #ndoc]
            #safety_doc
            #gate
            #inline
            pub #qualifier fn #name #generics #ret_clause { #body }
        });
        let call = within_contract(
            resolved,
            native_call(resolved, quote!(Self::Native), quote!(self)),
        );
        self.methods.push(quote! {
            #doc
            #safety_doc
            #gate
            #inline
            #qualifier fn #name(&self, #(#ps),*) #ret_clause { #call }
        });
        // Without the op's interface feature, the method stays, bound on a
        // marker no type implements: calling it then says which feature
        // the guest needs instead of "no method named …".
        if let Some(feature) = model.gate(&op.meta) {
            let marker = marker_trait(&feature);
            let doc = format!(
                " Not in this build: `{}` needs the SDK's `{feature}` feature.",
                op.name.name
            );
            self.methods.push(quote! {
                #[doc = #doc]
                #safety_doc
                #[cfg(not(feature = #feature))]
                #[allow(unused_variables)]
                #qualifier fn #name(&self, #(#ps),*) #ret_clause where Self: needs::#marker {
                    unreachable!("no type implements needs::{}", stringify!(#marker))
                }
            });
        }
        let op_name = &op.name.name;
        let group = &resolved.group;
        let ctx = format_ident!("{}", camel(resolved.context.name()));
        let required = resolved.required;
        self.table.push(quote!(OpInfo { name: #op_name, group: #group, hot: #hot, required: #required, context: Context::#ctx }));
        let variant = format_ident!("{}", camel(op_name));
        let variant_doc = format!(" `{op_name}`.");
        self.op_variants
            .push(quote!(#[doc = #variant_doc] #variant));
        self.op_all.push(quote!(Op::#variant));
    }
}

/// The `needs` module: one marker trait per interface version newer than
/// the baseline, which no type implements.
fn needs_module(model: &Model) -> TokenStream {
    let markers: Vec<_> = model
        .gated_versions()
        .into_iter()
        .map(|v| {
            let feature = crate::model::feature_name(v);
            let marker = marker_trait(&feature);
            let message = format!(
                "this op arrived in interface {}.{}, newer than the one this guest selected",
                v.0, v.1
            );
            let label = format!("needs the SDK's `{feature}` feature");
            let note =
                format!("enable `{feature}` in the features of the SDK dependency in Cargo.toml");
            let doc = format!(
                " Marks ops of interface {}.{}; implemented by no type.",
                v.0, v.1
            );
            quote! {
                #[doc = #doc]
                #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
                pub trait #marker {}
            }
        })
        .collect();
    if markers.is_empty() {
        quote!()
    } else {
        quote! {
            #[doc = " Markers of interface versions newer than the one a guest selected:"]
            #[doc = " an op of such a version is bound on its marker, which no type"]
            #[doc = " implements, so calling it names the missing feature."]
            #[allow(non_camel_case_types)]
            pub mod needs { #(#markers)* }
        }
    }
}

pub fn file(model: &Model) -> String {
    let mut items = OpItems::default();
    for op in &model.resolved_ops {
        items.add(model, op);
    }
    let OpItems {
        methods,
        routines,
        natives,
        table,
        op_variants,
        op_all,
        views,
    } = items;
    let needs = needs_module(model);
    let contexts = crate::check::CONTEXTS.iter().map(|c| {
        let v = format_ident!("{}", camel(c));
        let doc = format!(" `context {c}` in the IDL.");
        quote!(#[doc = #doc] #v)
    });
    let dispatch = dispatch(model);
    let tokens = quote! {
        use super::types::*;

        #[doc = " The bare-metal routines behind ops whose native lowering is more than"]
        #[doc = " a few instructions. The SDK's native layer implements them; a host test"]
        #[doc = " may implement them with a mock."]
        pub trait NativeRoutines {
            #(#routines)*
        }

        #(#views)*

        #[doc = " The paravirtual interface. Every method's default is its native"]
        #[doc = " lowering, so a backend overrides only the ops its hypervisor"]
        #[doc = " paravirtualizes."]
        pub trait PvOps {
            #[doc = " The native routines that serve the ops this backend does not override."]
            type Native: NativeRoutines;
            #(#methods)*
        }

        #needs

        #[doc = " Each op's native lowering as a function, for the trait's defaults and"]
        #[doc = " the generated fallback chains of every backend."]
        pub mod native {
            use super::super::types::*;
            use super::NativeRoutines;
            #(#natives)*
        }

        #[doc = " Where an op may be called."]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Context { #(#contexts,)* }

        #[doc = " What the IDL says about an op, for reports and coverage tables."]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct OpInfo {
            #[doc = " The op's name."]
            pub name: &'static str,
            #[doc = " Its group."]
            pub group: &'static str,
            #[doc = " Whether it must cost no more than the native instruction."]
            pub hot: bool,
            #[doc = " Whether every hypervisor ABI must map it."]
            pub required: bool,
            #[doc = " Where it may be called."]
            pub context: Context,
        }

        #[doc = " Every op, in IDL order."]
        pub const OPS: &[OpInfo] = &[#(#table),*];

        #[doc = " An op by identity, for run-time records (fallbacks, withdrawn and"]
        #[doc = " served steps) that must not search by name on a hot path. Its"]
        #[doc = " discriminant is its row in [`OPS`]."]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(usize)]
        pub enum Op { #(#op_variants,)* }

        impl Op {
            #[doc = " Every op, in IDL order (as [`OPS`])."]
            pub const ALL: &'static [Op] = &[#(#op_all),*];

            #[doc = " Its row in [`OPS`]."]
            pub const fn row(self) -> usize {
                self as usize
            }

            #[doc = " What the IDL says about it."]
            pub const fn info(self) -> &'static OpInfo {
                &OPS[self as usize]
            }

            #[doc = " Its IDL name."]
            pub const fn name(self) -> &'static str {
                self.info().name
            }

            #[doc = " The op called `name` in the IDL."]
            pub fn from_name(name: &str) -> Option<Op> {
                Op::ALL.iter().copied().find(|op| op.name() == name)
            }
        }

        #dispatch
    };
    render(
        &["The ops trait: what a guest kernel calls, with native semantics as defaults.".into()],
        vec![Piece::Tokens(tokens)],
    )
}

/// `interface-1-2` → `Interface_1_2`.
fn marker_trait(feature: &str) -> proc_macro2::Ident {
    format_ident!(
        "Interface_{}",
        feature.trim_start_matches("interface-").replace('-', "_")
    )
}

/// `Dispatch`: run-time selection among the backends, forwarding every op;
/// an op no hypervisor maps goes straight to its native lowering.
fn dispatch(model: &Model) -> TokenStream {
    let hvs: Vec<&Hypervisor> = model.hypervisors().collect();
    let params: Vec<proc_macro2::Ident> = hvs
        .iter()
        .map(|h| format_ident!("{}", camel(&h.name.name)))
        .collect();
    let variants = hvs.iter().zip(&params).map(|(h, p)| {
        let doc = format!(
            " The {} backend.",
            String::from_utf8_lossy(&h.display.value)
        );
        quote!(#[doc = #doc] #p(#p))
    });
    let bounds = params.iter().map(|p| quote!(#p: PvOps<Native = N>));
    let mapped = |op: &str| hvs.iter().any(|h| model.chain(&h.name.name, op).is_some());
    let methods = model.resolved_ops.iter().map(|resolved| {
        let op = &resolved.syntax;
        let name = ident(&op.name.name);
        let ps = op_params(resolved);
        let args: Vec<_> = op.params.iter().map(|p| ident(&p.name.name)).collect();
        let ret = returns(&return_type(resolved));
        let gate = cfg(model, &op.meta);
        let inline = if resolved.hot { quote!(#[inline(always)]) } else { quote!(#[inline]) };
        let native = within_contract(resolved, native_call(resolved, quote!(N), quote!(self)));
        let safety_doc = safety_docs(resolved);
        let qualifier = unsafety(resolved);
        if mapped(&op.name.name) {
            let arms = params.iter().map(|p| {
                let call = within_contract(resolved, quote!(b.#name(#(#args),*)));
                quote!(Self::#p(b) => #call)
            });
            quote!(#safety_doc #gate #inline #qualifier fn #name(&self, #(#ps),*) #ret { match self { Self::Native => #native, #(#arms,)* Self::_Marker(_, never) => match *never {} } })
        } else {
            quote!(#safety_doc #gate #inline #qualifier fn #name(&self, #(#ps),*) #ret { #native })
        }
    });
    let names = hvs.iter().zip(&params).map(|(h, p)| {
        let n = &h.name.name;
        quote!(Self::#p(_) => #n)
    });
    quote! {
        #[doc = " The backend chosen at run time: one variant per hypervisor ABI of the"]
        #[doc = " IDL. Every op is forwarded; an op no hypervisor maps (the hot irq ops)"]
        #[doc = " runs its native lowering directly, with neither a match nor an"]
        #[doc = " indirect call. A build leaves a backend out by naming [`Absent`] for it."]
        #[derive(Clone, Copy, Debug)]
        pub enum Dispatch<N, #(#params),*> {
            #[doc = " No hypervisor, or none pvi knows: everything native."]
            Native,
            #(#variants,)*
            #[doc = " Unused: carries the native routines' type."]
            #[doc(hidden)]
            _Marker(core::marker::PhantomData<N>, core::convert::Infallible),
        }

        impl<N, #(#params),*> Dispatch<N, #(#params),*> {
            #[doc = " The IDL name of the active backend (`native`, `kvm`, …)."]
            pub fn name(&self) -> &'static str {
                match self { Self::Native => "native", #(#names,)* Self::_Marker(_, never) => match *never {} }
            }
        }

        impl<N: NativeRoutines, #(#bounds),*> PvOps for Dispatch<N, #(#params),*> {
            type Native = N;
            #(#methods)*
        }

        #[doc = " A backend a build leaves out: it has no values, so its variant of"]
        #[doc = " [`Dispatch`] cannot exist and its code is not linked."]
        #[derive(Clone, Copy, Debug)]
        pub enum Absent<N> {
            #[doc(hidden)]
            _Never(core::marker::PhantomData<N>, core::convert::Infallible),
        }

        impl<N: NativeRoutines> PvOps for Absent<N> {
            type Native = N;
        }
    }
}
