//! Names and types as generated Rust spells them.

use crate::ast::*;
use crate::model::{int_primitive, Model};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

/// `invalid_argument` → `InvalidArgument`.
pub fn camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

/// An identifier; names that are Rust keywords become raw identifiers.
pub fn ident(name: &str) -> Ident {
    match syn::parse_str::<Ident>(name) {
        Ok(i) => i,
        Err(_) => Ident::new_raw(name, Span::call_site()),
    }
}

/// `KVM_HC_KICK_CPU` → `kvm_hc_kick_cpu`; `__HYPERVISOR_sched_op` →
/// `hypervisor_sched_op`: the upstream name, lowercased, as a function name.
pub fn fn_name(upstream: &str) -> Ident {
    ident(
        upstream
            .trim_start_matches('_')
            .to_ascii_lowercase()
            .as_str(),
    )
}

/// An integer literal as the IDL wrote it (hex stays hex).
pub fn int_literal(i: &Int) -> TokenStream {
    let text = i.text.replace('_', "");
    syn::parse_str::<syn::Expr>(&text)
        .map(|e| quote!(#e))
        .unwrap_or_else(|_| {
            let v = proc_macro2::Literal::i128_unsuffixed(i.value);
            quote!(#v)
        })
}

/// The Rust type of an IDL type.
pub fn rust_type(ty: &TypeRef) -> TokenStream {
    match ty {
        TypeRef::Named { name, .. } if name.name == "bytes" => quote!(&[u8]),
        TypeRef::Named { name, .. } => {
            let i = ident(&name.name);
            quote!(#i)
        }
        TypeRef::Array { elem, len, .. } => {
            let e = rust_type(elem);
            let n = proc_macro2::Literal::usize_unsuffixed(len.value as usize);
            quote!([#e; #n])
        }
    }
}

/// How values of a type cross a register.
pub enum Repr {
    /// An integer primitive of this name.
    Int(String),
    /// `bool`.
    Bool,
    /// A newtype over this primitive.
    Newtype(String),
    /// A bitflags type over this primitive.
    Flags(String),
    /// An enum stored in this primitive.
    Enum(String),
    /// A structure: passed by address.
    Struct,
    /// A byte slice.
    Bytes,
}

/// The register representation of `ty`.
pub fn repr(model: &Model, ty: &TypeRef) -> Repr {
    let TypeRef::Named { name, .. } = ty else {
        return Repr::Struct;
    };
    let n = name.name.as_str();
    if int_primitive(n).is_some() {
        return Repr::Int(n.to_string());
    }
    match n {
        "bool" => return Repr::Bool,
        "bytes" => return Repr::Bytes,
        _ => {}
    }
    match model.types.get(n) {
        Some(TypeDecl::Newtype(t)) => match &t.repr {
            TypeRef::Named { name, .. } => Repr::Newtype(name.name.clone()),
            TypeRef::Array { .. } => Repr::Struct,
        },
        Some(TypeDecl::Flags(e)) => Repr::Flags(e.repr.name.clone()),
        Some(TypeDecl::Enum(e)) => Repr::Enum(e.repr.name.clone()),
        _ => Repr::Struct,
    }
}

/// `value` (of type `ty`) as a `u64` for a register.
pub fn to_register(model: &Model, ty: &TypeRef, value: &Ident) -> TokenStream {
    let widen = |p: &str, v: TokenStream| if p == "u64" { v } else { quote!(#v as u64) };
    match repr(model, ty) {
        Repr::Int(p) => widen(&p, quote!(#value)),
        Repr::Bool => quote!(#value as u64),
        Repr::Newtype(p) => widen(&p, quote!(#value.0)),
        Repr::Flags(p) => widen(&p, quote!(#value.bits())),
        Repr::Enum(_) => quote!(#value as u64),
        Repr::Struct => quote!(core::ptr::from_ref(#value) as u64),
        Repr::Bytes => quote!(#value.as_ptr() as u64),
    }
}

/// The `-> T` of a function, or nothing for `()`.
pub fn returns(ty: &TokenStream) -> TokenStream {
    if ty.to_string() == "()" {
        quote!()
    } else {
        quote!(-> #ty)
    }
}

/// A register value (`u64` named `raw`) as a value of type `ty`.
pub fn from_register(model: &Model, ty: &TypeRef, raw: &Ident) -> TokenStream {
    let t = rust_type(ty);
    let narrow = |p: &str| {
        let i = ident(p);
        if p == "u64" {
            quote!(#raw)
        } else {
            quote!(#raw as #i)
        }
    };
    match repr(model, ty) {
        Repr::Int(p) => narrow(&p),
        Repr::Bool => quote!(#raw != 0),
        Repr::Newtype(p) => {
            let v = narrow(&p);
            quote!(#t(#v))
        }
        Repr::Flags(p) => {
            let v = narrow(&p);
            quote!(#t::from_bits_retain(#v))
        }
        // Checked by the generator: no op returns an enum or a struct from asm.
        Repr::Enum(_) | Repr::Struct | Repr::Bytes => quote!(#raw),
    }
}

/// An IDL doc line as rustdoc prose: square brackets outside code spans
/// escaped, so that upstream notation such as `EAX[31:16]` or
/// `time[RUNSTATE_runnable]` reads as written instead of as a broken
/// intra-doc link. (IDL docs carry no rustdoc links of their own.)
pub fn rustdoc_prose(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        match c {
            '`' => in_code = !in_code,
            '[' | ']' if !in_code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

/// `#[doc = …]` attributes, one per line.
pub fn docs(lines: &[String]) -> TokenStream {
    let lines = lines.iter().map(|l| format!(" {l}"));
    quote!(#(#[doc = #lines])*)
}

/// A name for the result struct of a hypercall with several results.
pub fn out_struct(hypercall: &str) -> Ident {
    format_ident!("{}Out", camel(hypercall.trim_start_matches('_')))
}

/// `#[cfg(feature = "interface-M-m")]` for an item newer than the baseline.
pub fn cfg(model: &Model, meta: &Meta) -> TokenStream {
    match model.gate(meta) {
        Some(feature) => quote!(#[cfg(feature = #feature)]),
        None => quote!(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn brackets_outside_code_are_escaped() {
        assert_eq!(
            super::rustdoc_prose("EAX[31:16] and `time[i]`"),
            "EAX\\[31:16\\] and `time[i]`"
        );
    }
}
