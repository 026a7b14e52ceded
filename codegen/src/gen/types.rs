//! `types.rs`: unit newtypes, flags, enums, shared structures, and the
//! error types.

use super::names::{camel, cfg, docs, ident, int_literal, rust_type, rustdoc_prose};
use super::{render, Piece};
use crate::ast::*;
use crate::model::{int_primitive, layout_of, Model};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use std::collections::BTreeMap;

/// Which hypervisor's file declared each type (None: the interface).
pub fn owners(model: &Model) -> BTreeMap<String, Option<String>> {
    let mut owners = BTreeMap::new();
    for file in &model.files {
        let hv = file.items.iter().find_map(|i| match i {
            Item::Hypervisor(h) => Some(h),
            _ => None,
        });
        for item in &file.items {
            match item {
                Item::Type(t) => {
                    drop(owners.insert(t.name().name.clone(), hv.map(|h| h.name.name.clone())))
                }
                Item::Hypervisor(h) => {
                    for i in &h.items {
                        if let HvItem::Type(t) = i {
                            owners.insert(t.name().name.clone(), Some(h.name.name.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    owners
}

/// `Since interface 0.1.0.` and the like, from attributes.
pub fn version_notes(meta: &Meta, hv_display: Option<&str>) -> Vec<String> {
    let mut notes = Vec::new();
    for attr in &meta.attrs {
        let arg = |i: usize| match attr.args.get(i) {
            Some(AttrArg::Version(v)) => v.text.clone(),
            Some(AttrArg::Str(s)) => String::from_utf8_lossy(&s.value).into_owned(),
            _ => String::new(),
        };
        match attr.name.name.as_str() {
            "since" => notes.push(format!("Since interface {}.", arg(0))),
            "deprecated" => notes.push(
                format!("Deprecated since interface {}. {}", arg(0), arg(1))
                    .trim_end()
                    .to_string(),
            ),
            "hv_since" => notes.push(format!(
                "Since {} {}.",
                hv_display.unwrap_or("the hypervisor"),
                arg(0)
            )),
            _ => {}
        }
    }
    notes
}

/// Doc lines of an item followed by its version notes.
pub fn item_docs(meta: &Meta, extra: &[String], hv_display: Option<&str>) -> TokenStream {
    let mut lines: Vec<String> = meta.docs.lines.iter().map(|l| rustdoc_prose(l)).collect();
    let notes: Vec<String> = extra
        .iter()
        .cloned()
        .chain(version_notes(meta, hv_display))
        .collect();
    if !notes.is_empty() {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        lines.extend(notes);
    }
    docs(&lines)
}

fn unit_note(model: &Model, ty: &TypeRef) -> Vec<String> {
    model
        .unit_of(ty)
        .map(|u| vec![format!("Unit: `{u}`.")])
        .unwrap_or_default()
}

pub fn file(model: &Model) -> String {
    let owners = owners(model);
    let mut pieces = vec![Piece::Tokens(quote! {
        #![allow(non_camel_case_types)]
    })];
    for t in model.types.values() {
        let owner = owners.get(&t.name().name).cloned().flatten();
        let origin = match &owner {
            Some(hv) => vec![format!("Declared by the `{hv}` ABI in `idl/`.")],
            None => Vec::new(),
        };
        let gate = cfg(model, t.meta());
        pieces.push(match t {
            TypeDecl::Newtype(n) => newtype(model, n, gate),
            TypeDecl::Flags(e) => flags_text(e, &origin, model.gate(&e.meta)),
            TypeDecl::Enum(e) => enumeration(e, gate),
            TypeDecl::Struct(s) => structure(model, s, &origin, gate),
        });
    }
    pieces.push(errors(model));
    render(
        &["Types of the interface: units, flags, enums, shared structures, errors.".into()],
        pieces,
    )
}

fn newtype(model: &Model, n: &Newtype, gate: TokenStream) -> Piece {
    let name = ident(&n.name.name);
    let inner = match &n.repr {
        TypeRef::Named { name, .. } => ident(&name.name),
        TypeRef::Array { .. } => ident("u64"),
    };
    let doc = item_docs(&n.meta, &unit_note(model, &n.repr), None);
    Piece::Tokens(quote! {
        #doc
        #gate
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct #name(pub #inner);
    })
}

/// A `bitflags!` block, written as text: prettyplease leaves macro bodies
/// on one line.
pub fn flags_text(e: &Enumeration, extra: &[String], gate: Option<String>) -> Piece {
    let mut t = match gate {
        Some(feature) => format!("#[cfg(feature = \"{feature}\")]\nbitflags::bitflags! {{\n"),
        None => String::from("bitflags::bitflags! {\n"),
    };
    let mut lines = e.meta.docs.lines.clone();
    if !extra.is_empty() {
        lines.push(String::new());
        lines.extend(extra.iter().cloned());
    }
    for line in &lines {
        t.push_str(&doc_line(1, line));
    }
    t.push_str(
        "    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]\n    #[repr(transparent)]\n",
    );
    t.push_str(&format!(
        "    pub struct {}: {} {{\n",
        e.name.name, e.repr.name
    ));
    for m in &e.members {
        for line in m
            .meta
            .docs
            .lines
            .iter()
            .chain(version_notes(&m.meta, None).iter())
        {
            t.push_str(&doc_line(2, line));
        }
        t.push_str(&doc_line(2, &format!("Bit {}.", m.value.value)));
        t.push_str(&format!(
            "        const {} = 1 << {};\n",
            m.name.name, m.value.value
        ));
    }
    t.push_str("    }\n}\n");
    Piece::Text(t)
}

fn doc_line(indent: usize, line: &str) -> String {
    let pad = "    ".repeat(indent);
    if line.is_empty() {
        format!("{pad}///\n")
    } else {
        format!("{pad}/// {line}\n")
    }
}

fn enumeration(e: &Enumeration, gate: TokenStream) -> Piece {
    let name = ident(&e.name.name);
    let repr = ident(&e.repr.name);
    let doc = item_docs(&e.meta, &[], None);
    let variants = e.members.iter().map(|m| {
        let v = format_ident!("{}", camel(&m.name.name));
        let value = int_literal(&m.value);
        let doc = item_docs(&m.meta, &[format!("IDL name: `{}`.", m.name.name)], None);
        quote!(#doc #v = #value)
    });
    let arms = e.members.iter().map(|m| {
        let v = format_ident!("{}", camel(&m.name.name));
        let value = int_literal(&m.value);
        quote!(#value => Some(Self::#v))
    });
    Piece::Tokens(quote! {
        #doc
        #gate
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(#repr)]
        pub enum #name { #(#variants,)* }
        #gate
        impl #name {
            #[doc = " The variant with this raw value, if there is one."]
            pub const fn from_raw(raw: #repr) -> Option<Self> {
                match raw { #(#arms,)* _ => None }
            }
        }
    })
}

/// The all-zero value of a field type, as a constant expression.
fn zero(model: &Model, ty: &TypeRef) -> TokenStream {
    match ty {
        TypeRef::Array { elem, len, .. } => {
            let z = zero(model, elem);
            let n = proc_macro2::Literal::usize_unsuffixed(len.value as usize);
            quote!([#z; #n])
        }
        TypeRef::Named { name, .. } => {
            let t = ident(&name.name);
            if int_primitive(&name.name).is_some() {
                return quote!(0);
            }
            match model.types.get(&name.name) {
                Some(TypeDecl::Newtype(_)) => quote!(#t(0)),
                Some(TypeDecl::Flags(_)) => quote!(#t::empty()),
                Some(TypeDecl::Struct(_)) => quote!(#t::ZERO),
                _ => quote!(false),
            }
        }
    }
}

fn structure(model: &Model, s: &Struct, extra: &[String], gate: TokenStream) -> Piece {
    let name = ident(&s.name.name);
    let size = s.size.value as usize;
    let mut notes = extra.to_vec();
    notes.push(format!(
        "Size: {size} bytes{}.",
        if s.packed { ", packed" } else { "" }
    ));
    let doc = item_docs(&s.meta, &notes, None);
    let mut fields: Vec<&Field> = s.fields.iter().collect();
    fields.sort_by_key(|f| f.offset.value);
    let mut defs = Vec::new();
    let mut zeros = Vec::new();
    let mut asserts = Vec::new();
    let mut at = 0usize;
    let pad =
        |defs: &mut Vec<TokenStream>, zeros: &mut Vec<TokenStream>, from: usize, to: usize| {
            if to > from {
                let p = format_ident!("_pad_at_{}", from);
                let n = proc_macro2::Literal::usize_unsuffixed(to - from);
                defs.push(quote!(#[doc = " Padding; keep zero."] pub #p: [u8; #n]));
                zeros.push(quote!(#p: [0; #n]));
            }
        };
    for f in &fields {
        let offset = f.offset.value as usize;
        pad(&mut defs, &mut zeros, at, offset);
        let fname = ident(&f.name.name);
        let ty = rust_type(&f.ty);
        let mut notes = vec![format!("Offset {offset}.")];
        notes.extend(unit_note(model, &f.ty));
        let fdoc = item_docs(&f.meta, &notes, None);
        defs.push(quote!(#fdoc pub #fname: #ty));
        let z = zero(model, &f.ty);
        zeros.push(quote!(#fname: #z));
        let off = proc_macro2::Literal::usize_unsuffixed(offset);
        // Gated like the struct: a versioned struct's layout is checked
        // wherever it exists, and nowhere else.
        asserts.push(quote!(
            #gate
            const _: () = assert!(core::mem::offset_of!(#name, #fname) == #off);
        ));
        at = offset
            + layout_of(&model.types, &f.ty)
                .map(|l| l.size as usize)
                .unwrap_or(0);
    }
    pad(&mut defs, &mut zeros, at, size);
    let repr = if s.packed {
        quote!(#[repr(C, packed)])
    } else {
        quote!(#[repr(C)])
    };
    let size_lit = proc_macro2::Literal::usize_unsuffixed(size);
    Piece::Tokens(quote! {
        #doc
        #gate
        #repr
        #[derive(Clone, Copy, Debug)]
        pub struct #name { #(#defs,)* }
        #gate
        impl #name {
            #[doc = " Every byte zero: the state before the hypervisor first writes it."]
            pub const ZERO: Self = Self { #(#zeros,)* };
        }
        #gate
        impl Default for #name {
            fn default() -> Self { Self::ZERO }
        }
        #gate
        const _: () = assert!(core::mem::size_of::<#name>() == #size_lit);
        #(#asserts)*
    })
}

fn errors(model: &Model) -> Piece {
    let kinds: Vec<&ErrorKind> = model.error_kinds().collect();
    let variants = kinds.iter().map(|k| {
        let v = format_ident!("{}", camel(&k.name.name));
        let doc = item_docs(&k.meta, &[], None);
        quote!(#doc #v)
    });
    let origins = model.hypervisors().map(|h| {
        let v = format_ident!("{}", camel(&h.name.name));
        let doc = format!(
            " {}: the code as the hypervisor returned it.",
            String::from_utf8_lossy(&h.display.value)
        );
        quote!(#[doc = #doc] #v(i64))
    });
    let all = kinds.iter().map(|k| {
        let v = format_ident!("{}", camel(&k.name.name));
        quote!(ErrorKind::#v)
    });
    let codes = model.hypervisors().map(|h| {
        let v = format_ident!("{}", camel(&h.name.name));
        quote!(Self::#v(code) => Some(code))
    });
    Piece::Tokens(quote! {
        #[doc = " Why a paravirtual call did not do what was asked: one kind for every"]
        #[doc = " hypervisor."]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorKind { #(#variants,)* }
        impl ErrorKind {
            #[doc = " Every kind, in IDL order: `ALL[kind as usize] == kind`, for"]
            #[doc = " compact logs that store a kind as its index."]
            pub const ALL: &'static [ErrorKind] = &[#(#all),*];
        }
        #[doc = " Where an error came from, with the hypervisor's own code."]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorOrigin {
            #[doc = " The native lowering (no hypervisor involved)."]
            Native,
            #(#origins,)*
        }
        impl ErrorOrigin {
            #[doc = " The hypervisor's own code, or `None` when pvi itself decided (the"]
            #[doc = " native lowering): what code that must treat every hypervisor alike"]
            #[doc = " asks, so that one added to the IDL is not left out."]
            pub const fn code(self) -> Option<i64> {
                match self {
                    Self::Native => None,
                    #(#codes,)*
                }
            }
        }
        #[doc = " An error of any op on any backend: its kind and its origin."]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct PvError {
            #[doc = " What went wrong, in hypervisor-neutral terms."]
            pub kind: ErrorKind,
            #[doc = " Who said so, and with which code."]
            pub origin: ErrorOrigin,
        }
        impl PvError {
            #[doc = " An error of `kind` from `origin`."]
            pub const fn new(kind: ErrorKind, origin: ErrorOrigin) -> Self { Self { kind, origin } }
            #[doc = " `kind`, found by pvi itself rather than answered by a hypervisor: never"]
            #[doc = " taken for a hypervisor's refusal, so it withdraws no step."]
            pub const fn native(kind: ErrorKind) -> Self { Self { kind, origin: ErrorOrigin::Native } }
            #[doc = " The mechanism is not available here, by pvi's own finding: a chain"]
            #[doc = " goes on to its next step."]
            pub const UNSUPPORTED: PvError = PvError::native(ErrorKind::Unsupported);
        }
    })
}
