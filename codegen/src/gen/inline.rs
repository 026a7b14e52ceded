//! `for_each_inline_sequence!` and `CPU_AREA_SIZE` in the SDK's generated
//! `mod.rs`: every hot op's `inline` form, per hypervisor, with its
//! placeholders bound ([`crate::ir::inline`]), for a backend crate to
//! assemble and hand to the patcher.

use crate::ast::HvItem;
use crate::model::Model;
use proc_macro2::TokenStream;
use quote::quote;

/// The macro and the area's size.
pub fn inline_sequences(model: &Model) -> TokenStream {
    let mut rows = Vec::new();
    for hv in model.hypervisors() {
        let name = super::names::ident(&hv.name.name);
        let variant = quote::format_ident!("{}", super::names::camel(&hv.name.name));
        for item in &hv.items {
            let HvItem::Map(map) = item else { continue };
            let Some(form) = map.inline.first() else {
                continue;
            };
            let Some(op) = model.op(&map.op.name) else {
                continue;
            };
            // Checked: every form that reaches here resolves.
            let Ok(inline) = crate::ir::inline::resolve(form, op.op, &model.types) else {
                continue;
            };
            let op_name = super::names::ident(&map.op.name);
            let text = inline.text;
            rows.push(quote!((#name, #variant, #op_name, #text)));
        }
    }
    let size = proc_macro2::Literal::usize_unsuffixed(crate::ir::inline::CPU_AREA_SIZE as usize);
    quote! {
        #[doc = " Bytes of each CPU's hypervisor area, the block at a fixed GS offset"]
        #[doc = " (`pvi_sdk::cpu_area`) where a backend may have the hypervisor keep its"]
        #[doc = " per-CPU structure, so that a hot op's inline form reaches it with one"]
        #[doc = " GS-relative instruction."]
        pub const CPU_AREA_SIZE: usize = #size;
        #[doc = " Calls `$callback! { (name, Variant, op, \"asm\"), … }` once with every"]
        #[doc = " hot op's `inline` form in the IDL: the hypervisor's module name and"]
        #[doc = " `Dispatch` variant, the op, and its assembly (Intel syntax) with the"]
        #[doc = " operands `area` (a `const`: the area's GS offset) and `op` (a `sym`: the"]
        #[doc = " op's callee-save entry through the run-time dispatch); the local label"]
        #[doc = " `7770` marks the end of its `call {op}` (or its start, without one)."]
        #[macro_export]
        macro_rules! for_each_inline_sequence {
            ($callback:ident) => {
                $callback! { #(#rows),* }
            };
        }
    }
}
