//! The generated module root: the interface version, the ABI fingerprint,
//! and the list of modules.

use super::names::{docs, ident};
use super::{render, Piece};
use crate::ast::*;
use crate::fmt::string_text;
use crate::model::Model;
use proc_macro2::TokenStream;
use quote::quote;
use std::fmt::Write;
use std::hash::Hasher;

/// The ABI as canonical text: what a guest and a hypervisor agree on (op
/// signatures, types and layouts, every number, conventions, mappings),
/// without docs, attributes, comments or layout. Two IDLs with the same
/// normalized ABI are interchangeable for a guest.
pub fn normalized_abi(model: &Model) -> String {
    let mut s = String::new();
    let ty = |t: &TypeRef| crate::fmt::type_text(t);
    let _ = writeln!(
        s,
        "interface {} {}",
        model.interface.name.name, model.interface.version.text
    );
    for (name, unit) in &model.units {
        let _ = writeln!(s, "unit {name} {} {}", unit.factor, unit.dimension);
    }
    for t in model.types.values() {
        match t {
            TypeDecl::Newtype(n) => drop(writeln!(s, "newtype {} {}", n.name.name, ty(&n.repr))),
            TypeDecl::Flags(e) | TypeDecl::Enum(e) => {
                let members: Vec<String> = e
                    .members
                    .iter()
                    .map(|m| format!("{}={}", m.name.name, m.value.value))
                    .collect();
                let _ = writeln!(
                    s,
                    "enum {} {} {}",
                    e.name.name,
                    e.repr.name,
                    members.join(",")
                );
            }
            TypeDecl::Struct(st) => {
                let fields: Vec<String> = st
                    .fields
                    .iter()
                    .map(|f| format!("{}:{}@{}", f.name.name, ty(&f.ty), f.offset.value))
                    .collect();
                let _ = writeln!(
                    s,
                    "struct {} {} {} {}",
                    st.name.name,
                    st.packed,
                    st.size.value,
                    fields.join(",")
                );
            }
        }
    }
    for k in model.error_kinds() {
        let _ = writeln!(s, "error {}", k.name.name);
    }
    for op in model.ops() {
        let params: Vec<String> = op
            .op
            .params
            .iter()
            .map(|p| format!("{}:{}", p.name.name, ty(&p.ty)))
            .collect();
        let result = op.op.result.as_ref().map(ty).unwrap_or_default();
        let errors: Vec<&str> = op
            .op
            .stmts
            .iter()
            .flat_map(|st| match st {
                OpStmt::Errors(k, _) => k.iter().map(|i| i.name.as_str()).collect(),
                _ => Vec::new(),
            })
            .collect();
        let _ = writeln!(
            s,
            "op {}({}) {} {}",
            op.op.name.name,
            params.join(","),
            result,
            errors.join(",")
        );
    }
    for hv in model.hypervisors() {
        let _ = writeln!(s, "hypervisor {}", hv.name.name);
        for item in &hv.items {
            let line = match item {
                HvItem::Detect(d) => format!(
                    "detect {:?} {:?}",
                    d.signatures
                        .iter()
                        .map(|x| string_text(&x.value))
                        .collect::<Vec<_>>(),
                    d.probes.iter().map(|p| &p.name).collect::<Vec<_>>()
                ),
                HvItem::Convention(c) => format!(
                    "convention {}",
                    c.stmts
                        .iter()
                        .map(crate::fmt::conv_text)
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                HvItem::Leaf(l) => format!("leaf {}={}", l.name.name, l.address.value),
                HvItem::Features(f) => {
                    let bits: Vec<String> = f
                        .bits
                        .iter()
                        .map(|b| format!("{}={}", b.name.name, b.value.value))
                        .collect();
                    format!(
                        "features {}@{} {}",
                        f.name.name,
                        crate::fmt::path_text(&f.register),
                        bits.join(",")
                    )
                }
                HvItem::Msr(m) => format!(
                    "msr {}={} {}",
                    m.name.name,
                    m.index.value,
                    m.ty.as_ref().map(ty).unwrap_or_default()
                ),
                HvItem::Const(c) => format!("const {}={}", c.name.name, c.value.value),
                HvItem::Hypercall(h) => {
                    let params: Vec<String> = h.params.iter().map(|p| ty(&p.ty)).collect();
                    format!(
                        "hypercall {}={} fast={} rep={} ({})",
                        h.name.name,
                        h.number.value,
                        h.fast,
                        h.rep,
                        params.join(",")
                    )
                }
                HvItem::Error(e) => {
                    format!("error {}={}=>{}", e.name.name, e.code.value, e.kind.name)
                }
                HvItem::Map(m) => {
                    let steps: Vec<String> = m.steps.iter().map(crate::fmt::step_text).collect();
                    format!("map {} {}", m.op.name, steps.join(" "))
                }
                HvItem::Type(_) => continue,
            };
            let _ = writeln!(s, "  {line}");
        }
    }
    s
}

/// A stable 64-bit fingerprint (FNV-1a) of [`normalized_abi`].
pub fn fingerprint(model: &Model) -> u64 {
    let mut h = fnv::FnvHasher::default();
    h.write(normalized_abi(model).as_bytes());
    h.finish()
}

/// `mod.rs`: version, fingerprint, modules.
pub fn module(model: &Model) -> String {
    let version = &model.interface.version.text;
    let parts: Vec<u16> = model
        .interface
        .version
        .parts
        .iter()
        .map(|p| *p as u16)
        .collect();
    let (major, minor, patch) = (parts[0], parts[1], parts[2]);
    let fp = proc_macro2::Literal::u64_unsuffixed(fingerprint(model));
    let fp = syn::parse_str::<syn::LitInt>(&format!("{:#018x}", fingerprint(model)))
        .map(|l| quote!(#l))
        .unwrap_or(quote!(#fp));
    let hvs: Vec<_> = model
        .hypervisors()
        .map(|h| {
            let name = ident(&h.name.name);
            let doc = docs(&[format!(
                "The {} ABI: constants, feature bits, structures and hypercall stubs.",
                String::from_utf8_lossy(&h.display.value)
            )]);
            quote!(#doc pub mod #name;)
        })
        .collect();
    let table = model.hypervisors().map(|h| {
        let name = &h.name.name;
        let display = String::from_utf8_lossy(&h.display.value).into_owned();
        let module = ident(&h.name.name);
        quote!(HypervisorInfo { name: #name, display: #display, signatures: #module::SIGNATURES, probes: #module::PROBES })
    });
    let interface_doc = docs(&model.interface.meta.docs.lines);
    let interface_name = &model.interface.name.name;
    let (base_major, base_minor) = model.baseline();
    let (base_major, base_minor) = (base_major as u16, base_minor as u16);
    // Newest first: the first feature enabled wins.
    let newer: Vec<TokenStream> = model
        .gated_versions()
        .into_iter()
        .rev()
        .map(|(major, minor)| {
            let feature = crate::model::feature_name((major, minor));
            let (major, minor) = (major as u16, minor as u16);
            quote!(if cfg!(feature = #feature) { (#major, #minor) } else)
        })
        .collect();
    let guest_interface = if newer.is_empty() {
        quote!((#base_major, #base_minor))
    } else {
        quote!(#(#newer)* { (#base_major, #base_minor) })
    };
    let tokens = quote! {
        #interface_doc
        #[doc = " The interface's semantic version, as declared in the IDL."]
        pub const INTERFACE_VERSION: &str = #version;
        #[doc = " The interface's name, as declared in the IDL."]
        pub const INTERFACE_NAME: &str = #interface_name;
        #[doc = " The interface version as numbers (major, minor, patch)."]
        pub const INTERFACE_VERSION_PARTS: (u16, u16, u16) = (#major, #minor, #patch);
        #[doc = " A fingerprint of the normalized ABI (op signatures, types, layouts,"]
        #[doc = " every number, conventions and mappings; not docs or formatting): equal"]
        #[doc = " fingerprints mean interchangeable ABIs."]
        pub const INTERFACE_FINGERPRINT: u64 = #fp;
        #[doc = " The interface version this build was made for (major, minor): the"]
        #[doc = " baseline, or the newest `interface-MAJOR-MINOR` feature enabled. Ops"]
        #[doc = " newer than it are not compiled; a guest records it in `.note.pvi`."]
        pub const GUEST_INTERFACE: (u16, u16) = #guest_interface;
        #[doc = " A hypervisor ABI of the interface, as detection sees it."]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct HypervisorInfo {
            #[doc = " The IDL name, e.g. `kvm` (also its module and `pvi.backend=` name)."]
            pub name: &'static str,
            #[doc = " The name people use, e.g. `KVM`."]
            pub display: &'static str,
            #[doc = " CPUID signatures (EBX, ECX, EDX of its base leaf)."]
            pub signatures: &'static [[u8; 12]],
            #[doc = " Probes to try when CPUID shows no signature at all."]
            pub probes: &'static [&'static str],
        }
        #[doc = " Every hypervisor ABI of the interface, in IDL order."]
        pub const HYPERVISORS: &[HypervisorInfo] = &[#(#table),*];
        #[doc = " Types, units, error kinds and shared structures."]
        pub mod types;
        #[doc = " The ops trait and the native routines behind it."]
        pub mod ops;
        #(#hvs)*
    };
    let text = render(
        &["Code generated from the IDL in `idl/`.".into()],
        vec![Piece::Tokens(tokens)],
    );
    // Right after the two-line header: which IDL this came from.
    let hash_line = format!("{}{:#018x}\n", super::SOURCE_HASH_PREFIX, model.source_hash);
    let after_header = text
        .match_indices('\n')
        .nth(1)
        .map(|(i, _)| i + 1)
        .unwrap_or(text.len());
    format!(
        "{}{hash_line}{}",
        &text[..after_header],
        &text[after_header..]
    )
}
