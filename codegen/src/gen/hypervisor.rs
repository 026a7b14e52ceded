//! `<hypervisor>.rs`: one hypervisor's ABI constants under their upstream
//! names, feature bits, lookup tables, error mapping and hypercall stubs.

use super::names::{camel, cfg, ident, int_literal, rust_type};
use super::types::{flags_text, item_docs, owners};
use super::{render, stubs, Piece};
use crate::ast::*;
use crate::model::Model;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// The Rust type of a constant's declared type, and its value expression.
fn const_value(model: &Model, c: &Const) -> (TokenStream, TokenStream) {
    let ty = rust_type(&c.ty);
    let v = int_literal(&c.value);
    match &c.ty {
        TypeRef::Named { name, .. } => match model.types.get(&name.name) {
            Some(TypeDecl::Newtype(_)) => (ty.clone(), quote!(#ty(#v))),
            Some(TypeDecl::Flags(_)) => (ty.clone(), quote!(#ty::from_bits_retain(#v))),
            _ => (ty, v),
        },
        TypeRef::Array { .. } => (ty, v),
    }
}

/// The item tables a hypervisor's module lists, filled item by item.
#[derive(Default)]
struct Tables {
    consts: Vec<TokenStream>,
    leaf_rows: Vec<TokenStream>,
    msr_rows: Vec<TokenStream>,
    hc_rows: Vec<TokenStream>,
    error_arms: Vec<TokenStream>,
    error_rows: Vec<TokenStream>,
    const_rows: Vec<TokenStream>,
    feature_rows: Vec<TokenStream>,
}

impl Tables {
    /// Add `item`'s constant and table rows; a feature set's flags type
    /// goes to `pieces`.
    fn add(
        &mut self,
        model: &Model,
        item: &HvItem,
        hv_display: Option<&str>,
        pieces: &mut Vec<Piece>,
    ) {
        match item {
            HvItem::Detect(d) => {
                let sigs: Vec<_> = d
                    .signatures
                    .iter()
                    .map(|s| proc_macro2::Literal::byte_string(&s.value))
                    .collect();
                let probes = d.probes.iter().map(|p| p.name.clone());
                let entries = d.entries.iter().map(|e| e.name.clone());
                self.consts.push(quote! {
                    #[doc = " CPUID signatures (EBX, ECX, EDX of the base leaf) that identify this hypervisor."]
                    pub const SIGNATURES: &[[u8; 12]] = &[#(*#sigs),*];
                    #[doc = " Probes to try when no CPUID signature is found."]
                    pub const PROBES: &[&str] = &[#(#probes),*];
                    #[doc = " ELF notes (upstream names) whose entry point, once the kernel came in"]
                    #[doc = " through it, says this is the hypervisor."]
                    pub const ENTRIES: &[&str] = &[#(#entries),*];
                });
            }
            HvItem::Abi(_) | HvItem::Convention(_) => {}
            HvItem::Leaf(l) => {
                let name = ident(&l.name.name);
                let v = int_literal(&l.address);
                let mut extra = vec![format!("CPUID leaf {} (at base 0x40000000; read relative to the base where the hypervisor was found).", l.address.text)];
                for r in &l.registers {
                    extra.push(format!(
                        "`{}`: {}{}.",
                        r.name.name,
                        r.meta.docs.summary(),
                        model
                            .unit_of(&r.ty)
                            .map(|u| format!(" (in `{u}`)"))
                            .unwrap_or_default()
                    ));
                }
                let doc = item_docs(&l.meta, &extra, hv_display);
                let gate = cfg(model, &l.meta);
                self.consts
                    .push(quote!(#doc #gate pub const #name: u32 = #v;));
                let n = &l.name.name;
                self.leaf_rows.push(quote!((#v, #n)));
            }
            HvItem::Features(f) => {
                let extra = vec![format!("Bits of `{}`.", crate::fmt::path_text(&f.register))];
                let e = Enumeration {
                    meta: f.meta.clone(),
                    name: f.name.clone(),
                    repr: crate::ast::Ident {
                        name: "u32".into(),
                        span: f.span,
                    },
                    members: f.bits.clone(),
                    span: f.span,
                };
                let mut e = e;
                // Feature docs carry `@hv_since`; keep them in the member docs.
                for (m, b) in e.members.iter_mut().zip(&f.bits) {
                    m.meta
                        .docs
                        .lines
                        .extend(super::types::version_notes(&b.meta, hv_display));
                    m.meta.attrs.clear();
                }
                pieces.push(flags_text(&e, &extra, None));
                for b in &f.bits {
                    let n = &b.name.name;
                    let bit = proc_macro2::Literal::u32_unsuffixed(b.value.value as u32);
                    self.feature_rows.push(quote!((#n, #bit)));
                }
            }
            HvItem::Msr(m) => {
                let name = ident(&m.name.name);
                let v = int_literal(&m.index);
                let mut extra = vec![format!("MSR {}.", m.index.text)];
                if let Some(ty) = &m.ty {
                    extra.push(format!("Holds: `{}`.", crate::fmt::type_text(ty)));
                }
                if !m.requires.is_empty() {
                    extra.push(format!(
                        "Announced by: {}.",
                        m.requires
                            .iter()
                            .map(|r| format!("`{}`", r.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                let doc = item_docs(&m.meta, &extra, hv_display);
                let gate = cfg(model, &m.meta);
                self.consts
                    .push(quote!(#doc #gate pub const #name: u32 = #v;));
                let n = &m.name.name;
                self.msr_rows.push(quote!((#v, #n)));
            }
            HvItem::Const(c) => {
                let name = ident(&c.name.name);
                let (ty, v) = const_value(model, c);
                let doc = item_docs(&c.meta, &[], hv_display);
                let gate = cfg(model, &c.meta);
                self.consts
                    .push(quote!(#doc #gate pub const #name: #ty = #v;));
                let n = &c.name.name;
                let raw = int_literal(&c.value);
                self.const_rows.push(quote!((#n, #raw)));
            }
            HvItem::Hypercall(h) => {
                let name = ident(&h.name.name);
                let v = int_literal(&h.number);
                let doc = item_docs(
                    &h.meta,
                    &[format!(
                        "Hypercall number; see [`Hypercalls::{}`].",
                        super::names::fn_name(&h.name.name)
                    )],
                    hv_display,
                );
                let gate = cfg(model, &h.meta);
                self.consts
                    .push(quote!(#doc #gate pub const #name: u64 = #v;));
                let n = &h.name.name;
                self.hc_rows.push(quote!((#v, #n)));
            }
            HvItem::Error(e) => {
                let name = ident(&e.name.name);
                let v = int_literal(&e.code);
                let kind = format_ident!("{}", camel(&e.kind.name));
                let doc = item_docs(
                    &e.meta,
                    &[format!("Means [`ErrorKind::{kind}`].")],
                    hv_display,
                );
                let gate = cfg(model, &e.meta);
                self.consts
                    .push(quote!(#doc #gate pub const #name: i64 = #v;));
                self.error_arms.push(quote!(#v => Some(ErrorKind::#kind)));
                let n = &e.name.name;
                self.error_rows.push(quote!((#v, #n)));
            }
            HvItem::Map(_) | HvItem::Type(_) => {}
        }
    }

    /// The constants, the tables and the error decoding of `hv`.
    fn tokens(self, model: &Model, hv: &Hypervisor) -> TokenStream {
        let Tables {
            consts,
            leaf_rows,
            msr_rows,
            hc_rows,
            error_arms,
            error_rows,
            const_rows,
            feature_rows,
        } = self;
        let origin = format_ident!("{}", camel(&hv.name.name));
        let error_body = if error_arms.is_empty() {
            quote!(let _ = code; None)
        } else {
            quote!(match code { #(#error_arms,)* _ => None })
        };
        // Codes the IDL does not list mean `failed`, if the interface has that
        // kind; otherwise the error constructor is not generated.
        let fallback_error = if model.error_kinds().any(|k| k.name.name == "failed") {
            quote! {
                #[doc = " A [`PvError`] for an error code of this hypervisor; codes the IDL does"]
                #[doc = " not list are `Failed`."]
                pub const fn error(code: i64) -> PvError {
                    let kind = match error_kind(code) { Some(k) => k, None => ErrorKind::Failed };
                    PvError::new(kind, ErrorOrigin::#origin(code))
                }
            }
        } else {
            quote!()
        };
        quote! {
            #(#consts)*
            #[doc = " A step of this hypervisor's chain is not available on this vCPU, as"]
            #[doc = " the backend finds (a record not registered, a page not valid). Code 0:"]
            #[doc = " not the hypervisor's own answer, so it withdraws no step."]
            pub const fn unsupported() -> PvError {
                PvError::new(ErrorKind::Unsupported, ErrorOrigin::#origin(0))
            }
            #[doc = " Every CPUID leaf of this ABI by number, with its upstream name."]
            pub const LEAVES: &[(u32, &str)] = &[#(#leaf_rows),*];
            #[doc = " Every MSR of this ABI by index, with its upstream name."]
            pub const MSRS: &[(u32, &str)] = &[#(#msr_rows),*];
            #[doc = " Every hypercall of this ABI by number, with its upstream name."]
            pub const HYPERCALLS: &[(u64, &str)] = &[#(#hc_rows),*];
            #[doc = " Every constant of this ABI by upstream name, with its value."]
            pub const CONSTANTS: &[(&str, i128)] = &[#(#const_rows),*];
            #[doc = " Every feature bit of this ABI by upstream name, with its bit number."]
            pub const FEATURE_BITS: &[(&str, u32)] = &[#(#feature_rows),*];
            #[doc = " Every error code of this ABI, with its upstream name."]
            pub const ERRORS: &[(i64, &str)] = &[#(#error_rows),*];
            #[doc = " The pvi error kind of an error code, as the IDL maps it."]
            pub const fn error_kind(code: i64) -> Option<ErrorKind> {
                #error_body
            }
            #fallback_error
        }
    }
}

/// The module's doc: the hypervisor's, then its file's.
fn module_docs(model: &Model, hv: &Hypervisor) -> Vec<String> {
    let mut doc = hv.meta.docs.lines.clone();
    if let Some(f) = model.files.iter().find(|f| {
        f.items
            .iter()
            .any(|i| matches!(i, Item::Hypervisor(h) if h.name == hv.name))
    }) {
        if !f.docs.lines.is_empty() {
            doc.push(String::new());
            doc.extend(f.docs.lines.iter().cloned());
        }
    }
    doc
}

pub fn file(model: &Model, hv: &Hypervisor) -> String {
    let display = String::from_utf8_lossy(&hv.display.value).into_owned();
    let doc = module_docs(model, hv);
    let own_types: Vec<_> = owners(model)
        .into_iter()
        .filter(|(_, o)| o.as_deref() == Some(hv.name.name.as_str()))
        .map(|(t, _)| {
            let gate = model
                .types
                .get(&t)
                .map(|d| cfg(model, d.meta()))
                .unwrap_or_default();
            let t = ident(&t);
            quote!(#gate #[doc(inline)] pub use super::types::#t;)
        })
        .collect();
    let mut pieces = vec![Piece::Tokens(quote! {
        #![allow(non_upper_case_globals)]
        #[allow(unused_imports)]
        use super::types::*;
        #(#own_types)*
    })];
    let hv_display = Some(display.as_str());
    let mut tables = Tables::default();
    for item in &hv.items {
        tables.add(model, item, hv_display, &mut pieces);
    }
    match hv.abi() {
        // The ABI is its owner's, declared once there: its constants,
        // tables, error decoding and hypercall stubs are re-exported, and
        // this module adds its detection, features, steps and chains (which
        // shadow the owner's of the same names).
        Some(abi) => {
            let owner = ident(&abi.name);
            let consts = tables.consts;
            pieces.push(Piece::Tokens(quote! {
                #[doc(no_inline)]
                pub use super::#owner::*;
                #(#consts)*
            }));
        }
        None => {
            pieces.push(Piece::Tokens(tables.tokens(model, hv)));
            pieces.extend(stubs::pieces(model, hv));
        }
    }
    pieces.push(Piece::Tokens(super::chains::tokens(model, hv)));
    render(&doc, pieces)
}
