//! The generated module root: the interface version, the ABI fingerprint,
//! and the list of modules.

use super::names::{docs, ident};
use super::{render, Piece};
use crate::model::Model;
use proc_macro2::TokenStream;
use quote::quote;

/// The fingerprint of `model`'s ABI: the hash of the same facts the lock
/// records and `pvi compat` compares ([`crate::abi::Abi::fingerprint`]),
/// so a change any of them sees changes it too.
pub fn fingerprint(model: &Model) -> u64 {
    crate::abi::Abi::of(model).fingerprint()
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
    let hypervisor_list = hypervisor_list(model);
    let inline_sequences = super::inline::inline_sequences(model);
    let interface_lines: Vec<String> = model
        .interface
        .meta
        .docs
        .lines
        .iter()
        .map(|l| super::names::rustdoc_prose(l))
        .collect();
    let interface_doc = docs(&interface_lines);
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
        #[doc = " A hash of the ABI facts `idl/abi.lock` records and `pvi compat`"]
        #[doc = " compares (op signatures, types, layouts, every number, conventions and"]
        #[doc = " mappings; not docs or formatting): equal fingerprints mean"]
        #[doc = " interchangeable ABIs."]
        pub const INTERFACE_FINGERPRINT: u64 = #fp;
        #[doc = " The interface version this build was made for (major, minor): the"]
        #[doc = " baseline, or the newest `interface-MAJOR-MINOR` feature enabled. Ops"]
        #[doc = " newer than it are not compiled; a guest records it in `.note.pvi`."]
        pub const GUEST_INTERFACE: (u16, u16) = #guest_interface;
        #hypervisor_list
        #inline_sequences
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

/// The hypervisors of the interface as `mod.rs` lists them: `Hypervisor`,
/// `HypervisorInfo` and `HYPERVISORS`, and `for_each_hypervisor!`.
fn hypervisor_list(model: &Model) -> TokenStream {
    let table = model.hypervisors().map(|h| {
        let name = &h.name.name;
        let display = String::from_utf8_lossy(&h.display.value).into_owned();
        let module = ident(&h.name.name);
        let variant = quote::format_ident!("{}", super::names::camel(&h.name.name));
        quote!(HypervisorInfo { id: Hypervisor::#variant, name: #name, display: #display, signatures: #module::SIGNATURES, probes: #module::PROBES, entries: #module::ENTRIES })
    });
    let variants: Vec<_> = model
        .hypervisors()
        .map(|h| quote::format_ident!("{}", super::names::camel(&h.name.name)))
        .collect();
    let variant_docs = model.hypervisors().map(|h| {
        format!(
            " {} (`idl/`'s `{}`).",
            String::from_utf8_lossy(&h.display.value),
            h.name.name
        )
    });
    let count = proc_macro2::Literal::usize_unsuffixed(variants.len());
    let registry = model.hypervisors().map(|h| {
        let name = ident(&h.name.name);
        let feature = &h.name.name;
        let variant = quote::format_ident!("{}", super::names::camel(&h.name.name));
        quote!((#name, #feature, #variant))
    });
    quote! {
        #[doc = " A hypervisor ABI of the interface, by identity: detection's choice,"]
        #[doc = " the registry's match and the boot report compare these, not names."]
        #[doc = " Its discriminant is its row of [`HYPERVISORS`]."]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Hypervisor { #(#[doc = #variant_docs] #variants),* }
        impl Hypervisor {
            #[doc = " Every hypervisor, in IDL order."]
            pub const ALL: [Hypervisor; #count] = [#(Hypervisor::#variants),*];
            #[doc = " Its row of [`HYPERVISORS`]."]
            pub const fn info(self) -> &'static HypervisorInfo {
                &HYPERVISORS[self as usize]
            }
            #[doc = " Its IDL name: its module, cargo feature and `pvi.backend=` name."]
            pub const fn name(self) -> &'static str {
                self.info().name
            }
            #[doc = " The hypervisor whose IDL name is `name` (a command line's, a"]
            #[doc = " tool's); `None` for any other."]
            pub fn named(name: &str) -> Option<Hypervisor> {
                Hypervisor::ALL.into_iter().find(|h| h.name() == name)
            }
        }
        #[doc = " A hypervisor ABI of the interface, as detection sees it."]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct HypervisorInfo {
            #[doc = " Which one."]
            pub id: Hypervisor,
            #[doc = " The IDL name, e.g. `kvm` (also its module and `pvi.backend=` name)."]
            pub name: &'static str,
            #[doc = " The name people use, e.g. `KVM`."]
            pub display: &'static str,
            #[doc = " CPUID signatures (EBX, ECX, EDX of its base leaf)."]
            pub signatures: &'static [[u8; 12]],
            #[doc = " Probes to try when CPUID shows no signature at all."]
            pub probes: &'static [&'static str],
            #[doc = " The ELF notes (upstream names) of the entry points that find it: a"]
            #[doc = " kernel entered through one chooses it whatever CPUID says (Xen PV);"]
            #[doc = " empty for a hypervisor found by CPUID or a probe."]
            pub entries: &'static [&'static str],
        }
        #[doc = " Every hypervisor ABI of the interface, in IDL order."]
        pub const HYPERVISORS: &[HypervisorInfo] = &[#(#table),*];
        #[doc = " Calls `$callback! { (name, \"name\", Variant), … }` once with every"]
        #[doc = " hypervisor of the interface, in IDL order (the order of `Dispatch`'s"]
        #[doc = " parameters): its module name, its IDL name (also the cargo feature a"]
        #[doc = " backend crate builds it under) and its `Dispatch` variant. A backend"]
        #[doc = " crate derives its registry from this one list, so a new IDL file is"]
        #[doc = " registered everywhere at once."]
        #[macro_export]
        macro_rules! for_each_hypervisor {
            ($callback:ident) => {
                $callback! { #(#registry),* }
            };
        }
    }
}
