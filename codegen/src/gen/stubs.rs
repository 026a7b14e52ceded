//! Hypercall stubs generated from a hypervisor's calling convention: raw
//! `callN` functions with exact register constraints, and a typed wrapper
//! per hypercall.
//!
//! The convention is data: which instruction forms enter the hypervisor
//! (`vmcall`, `vmmcall`, `in eax, dx`, a `call` into the hypercall page),
//! where the number and the arguments go, which registers come back, which
//! hold fixed values (per form), and which are clobbered. `rbx` cannot be an
//! `asm!` operand (LLVM reserves it), so a stub that uses it swaps it with a
//! scratch register around the instruction.

use super::names::{camel, fn_name, from_register, ident, out_struct, rust_type};
use super::types::item_docs;
use super::Piece;
use crate::ast::*;
use crate::ir::{Condition, Convention, Form, Number, Register, Status};
use crate::model::Model;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// Which instruction a generated stub executes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The real instruction.
    Real,
    /// `ud2` in place of `vmcall`/`vmmcall`, for host tests where those do
    /// not trap (these machines are VMs themselves).
    Trap,
}

fn instruction_text(form: Form, mode: Mode) -> &'static str {
    match (form, mode) {
        (Form::Vmcall | Form::Vmmcall, Mode::Trap) => "ud2",
        (Form::Vmcall, _) => "vmcall",
        (Form::Vmmcall, _) => "vmmcall",
        (Form::InPort, _) => "in eax, dx",
        (Form::Page, _) => "call {entry}",
    }
}

fn variant(form: Form) -> proc_macro2::Ident {
    format_ident!("{}", camel(form.name()))
}

/// A fixed register value as a `u64` operand.
fn fixed_value(value: &Int) -> TokenStream {
    let text = format!("{}_u64", value.text.replace('_', ""));
    syn::parse_str::<syn::Expr>(&text)
        .map(|e| quote!(#e))
        .unwrap_or_else(|_| super::names::int_literal(value))
}

/// The `asm!` invocation for one form and arity.
fn asm_for(conv: &Convention, form: Form, arity: usize, mode: Mode) -> TokenStream {
    #[derive(Default)]
    struct Role {
        input: Option<TokenStream>,
        output: Option<proc_macro2::Ident>,
        clobbered: bool,
    }
    // By register name: the operands come out in the order they always had.
    let mut roles: std::collections::BTreeMap<&'static str, Role> = Default::default();
    if let Number::Register(reg) = conv.number {
        roles.entry(reg.name()).or_default().input = Some(quote!(nr));
    }
    for (i, reg) in conv.args.iter().take(arity).enumerate() {
        let a = format_ident!("a{}", i);
        roles.entry(reg.name()).or_default().input = Some(quote!(#a));
    }
    for fixed in &conv.fixed {
        if fixed.form.is_none_or(|f| f == form) {
            let value = fixed_value(&fixed.value);
            roles.entry(fixed.register.name()).or_default().input = Some(value);
        }
    }
    for (i, reg) in conv.results.iter().enumerate() {
        roles.entry(reg.name()).or_default().output = Some(format_ident!("r{}", i));
    }
    for reg in &conv.clobbers {
        roles.entry(reg.name()).or_default().clobbered = true;
    }
    let mut operands = Vec::new();
    let mut uses_rbx = false;
    let mut rbx_operand = quote!();
    for (reg, role) in &roles {
        let input = role.input.clone();
        let out = role.output.clone();
        if *reg == Register::Rbx.name() {
            uses_rbx = true;
            let input = input.unwrap_or(quote!(0u64));
            let out = match out {
                Some(o) => quote!(#o),
                None => quote!(_),
            };
            rbx_operand = quote!(rbx = inout(reg) #input => #out,);
            continue;
        }
        let r = *reg;
        operands.push(match (input, out, role.clobbered) {
            (Some(i), Some(o), _) => quote!(inout(#r) #i => #o),
            (Some(i), None, true) => quote!(inout(#r) #i => _),
            (Some(i), None, false) => quote!(in(#r) #i),
            (None, Some(o), _) => quote!(lateout(#r) #o),
            (None, None, _) => quote!(lateout(#r) _),
        });
    }
    let instruction = instruction_text(form, mode);
    let mut lines: Vec<String> = Vec::new();
    if uses_rbx {
        lines.push("xchg {rbx}, rbx".into());
    }
    // A hypercall instruction that faults in the guest (a host that does
    // not handle it and tries to rewrite it, say) resumes after itself with
    // "unsupported" in the result register: the chain then falls back. The
    // kernel's exception handler finds the landing in `pvi_fixups`
    // (`pvi_sdk::fixup`): a section named as an identifier, so that any
    // link defines `__start_pvi_fixups`/`__stop_pvi_fixups`, retained ("R")
    // under `--gc-sections`, which would otherwise drop it, and writable
    // ("w") because a position-independent link relocates its addresses.
    let fixup = match (
        form.is_hypercall_instruction(),
        mode,
        conv.unsupported,
        conv.results.first(),
    ) {
        (true, Mode::Real, Some(value), Some(Register::Rax)) => Some(value),
        _ => None,
    };
    match fixup {
        Some(value) => lines.extend([
            "771:".to_string(),
            instruction.to_string(),
            "772:".to_string(),
            ".pushsection pvi_fixups, \"awR\"".to_string(),
            ".balign 8".to_string(),
            ".quad 771b".to_string(),
            ".quad 773f".to_string(),
            ".popsection".to_string(),
            ".pushsection .text.pvi_fixup, \"ax\"".to_string(),
            "773:".to_string(),
            format!("mov rax, {value}"),
            "jmp 772b".to_string(),
            ".popsection".to_string(),
        ]),
        None => lines.push(instruction.to_string()),
    }
    if uses_rbx {
        lines.push("xchg {rbx}, rbx".into());
    }
    let (entry, options) = if form == Form::Page {
        (quote!(entry = in(reg) entry,), quote!())
    } else {
        (quote!(), quote!(, options(nostack)))
    };
    quote!(core::arch::asm!(#(#lines),*, #rbx_operand #entry #(#operands),* #options))
}

/// Raw `callN` for N arguments: number and arguments in, result registers
/// out.
fn raw_call(conv: &Convention, arity: usize, mode: Mode, hv_display: &str) -> TokenStream {
    let name = format_ident!("call{}", arity);
    let args: Vec<_> = (0..arity).map(|i| format_ident!("a{}", i)).collect();
    let outs: Vec<_> = (0..conv.results.len())
        .map(|i| format_ident!("r{}", i))
        .collect();
    let ret_ty = if outs.len() == 1 {
        quote!(u64)
    } else {
        let n = proc_macro2::Literal::usize_unsuffixed(outs.len());
        quote!([u64; #n])
    };
    let ret = if outs.len() == 1 {
        quote!(r0)
    } else {
        quote!([#(#outs),*])
    };
    let entry = if let Some(page) = conv.page.as_ref().filter(|_| conv.uses_page()) {
        let stride = proc_macro2::Literal::usize_unsuffixed(page.stride as usize);
        if conv.number == Number::Slot {
            quote!(let entry = self.page.wrapping_add(nr as usize * #stride);)
        } else {
            quote!(let entry = self.page;)
        }
    } else {
        quote!()
    };
    let why = format!("the caller guarantees (see # Safety) that {hv_display} is the hypervisor and that the call's arguments are valid for it; the operands follow its calling convention in idl/, so every register it changes is declared.");
    let arms: Vec<TokenStream> = conv
        .forms
        .iter()
        .map(|&form| {
            let asm = asm_for(conv, form, arity, mode);
            let v = variant(form);
            if conv.forms.len() == 1 {
                // SAFETY: (generator source) each emitted block gets its
                // comment from `__safety__!(#why)`.
                quote!(__safety__!(#why); unsafe { #asm };)
            } else {
                // SAFETY: (generator source) as above.
                quote!(Instruction::#v => { __safety__!(#why); unsafe { #asm }; })
            }
        })
        .collect();
    let body = if conv.forms.len() == 1 {
        quote!(#(#arms)*)
    } else {
        quote!(match self.instruction { #(#arms)* })
    };
    // self, nr and the arguments: clippy's limit is seven.
    let many = if arity + 2 > 7 {
        quote!(#[allow(clippy::too_many_arguments)])
    } else {
        quote!()
    };
    let doc = format!(" A raw {hv_display} hypercall with {arity} argument(s): `nr` goes where the convention puts the call number, `a0`… into the argument registers in order.");
    quote! {
        #[doc = #doc]
        #[doc = ""]
        #[doc = " # Safety"]
        #[doc = ""]
        #[doc = " The hypervisor must be the one this module describes, and the call"]
        #[doc = " and its arguments must be valid for it: an address argument must point"]
        #[doc = " to memory the hypervisor may read or write as the call says."]
        #[inline]
        #many
        pub unsafe fn #name(self, nr: u64, #(#args: u64),*) -> #ret_ty {
            #entry
            #(let #outs: u64;)*
            #body
            #ret
        }
    }
}

/// A typed wrapper: converts arguments to registers, calls, converts back,
/// and turns the convention's failure status into a `PvError`.
/// A typed hypercall method's parameters (`reps` first for a rep call)
/// and their names, and its return clause: shared by the stub and by the
/// `Steps` method the chains call it through.
pub(super) fn signature(
    model: &Model,
    conv: &Convention,
    h: &Hypercall,
) -> (Vec<TokenStream>, Vec<proc_macro2::Ident>, TokenStream) {
    let mut params = Vec::new();
    let mut names = Vec::new();
    if let (true, Some(_)) = (h.rep, conv.rep_shift) {
        params.push(quote!(reps: u16));
        names.push(format_ident!("reps"));
    }
    for p in &h.params {
        let n = ident(&p.name.name);
        let ty = rust_type(&p.ty);
        let is_struct = matches!(super::names::repr(model, &p.ty), super::names::Repr::Struct);
        params.push(if is_struct {
            quote!(#n: &#ty)
        } else {
            quote!(#n: #ty)
        });
        names.push(n);
    }
    let value_ty = match &h.result {
        None => quote!(()),
        Some(HcResult::Single(ty)) => rust_type(ty),
        Some(HcResult::Named(_)) => {
            let s = out_struct(&h.name.name);
            quote!(#s)
        }
    };
    let ret_ty = if conv.reports_failure() {
        quote!(Result<#value_ty, PvError>)
    } else {
        value_ty
    };
    (params, names, super::names::returns(&ret_ty))
}

fn wrapper(model: &Model, conv: &Convention, h: &Hypercall, hv_display: &str) -> TokenStream {
    let name = fn_name(&h.name.name);
    let number = ident(&h.name.name);
    let (params, _, ret_clause) = signature(model, conv, h);
    let regs: Vec<TokenStream> = h
        .params
        .iter()
        .map(|p| super::names::to_register(model, &p.ty, &ident(&p.name.name)))
        .collect();
    let arity = h.params.len();
    let call = format_ident!("call{}", arity);
    let mut nr = quote!(#number);
    if let (true, Some(bit)) = (h.fast, conv.fast_bit) {
        let bit = proc_macro2::Literal::u32_unsuffixed(bit);
        nr = quote!(#nr | 1 << #bit);
    }
    if let (true, Some(shift)) = (h.rep, conv.rep_shift) {
        let shift = proc_macro2::Literal::u32_unsuffixed(shift);
        nr = quote!(#nr | (reps as u64) << #shift);
    }
    let value = match &h.result {
        None => quote!(()),
        Some(HcResult::Single(ty)) => {
            let first = if conv.results.len() > 1 {
                quote!(raw[0])
            } else {
                quote!(raw)
            };
            let r = format_ident!("r0");
            let conv_expr = from_register(model, ty, &r);
            quote!({ let r0 = #first; #conv_expr })
        }
        Some(HcResult::Named(results)) => {
            let s = out_struct(&h.name.name);
            let fields = results.iter().enumerate().map(|(i, r)| {
                let f = ident(&r.name.name);
                let i = proc_macro2::Literal::usize_unsuffixed(i);
                let v = format_ident!("v");
                let conv_expr = from_register(model, &r.ty, &v);
                quote!(#f: { let v = raw[#i]; #conv_expr })
            });
            quote!(#s { #(#fields),* })
        }
    };
    let first = if conv.results.len() > 1 {
        quote!(raw[0])
    } else {
        quote!(raw)
    };
    let finish = match conv.status {
        Status::NegatedErrno => {
            quote!(let status = #first as i64; if status < 0 { return Err(error(status.wrapping_neg())); } Ok(#value))
        }
        Status::HvStatus => {
            quote!(let status = (#first & 0xffff) as i64; if status != 0 { return Err(error(status)); } Ok(#value))
        }
        Status::None => {
            if value.to_string() == "()" {
                quote!()
            } else {
                quote!(#value)
            }
        }
    };
    let mut extra = vec![format!(
        "Number: `{}`{}{}; arguments in {}.",
        h.number.text,
        if h.fast { ", fast (register-only)" } else { "" },
        if h.rep {
            ", rep (`reps` goes in the control word)"
        } else {
            ""
        },
        if arity == 0 {
            "no registers".to_string()
        } else {
            conv.args
                .iter()
                .take(arity)
                .map(|r| format!("`{}`", r.name()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    )];
    if !h.requires.is_empty() {
        extra.push(format!(
            "Announced by: {}.",
            h.requires
                .iter()
                .map(|r| format!("`{}`", r.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let doc = item_docs(&h.meta, &extra, Some(hv_display));
    let why = format!("the caller upholds `{}`'s contract (# Safety).", name);
    let gate = super::names::cfg(model, &h.meta);
    let used = if h.result.is_none() && !conv.reports_failure() {
        quote!(let _ = raw;)
    } else {
        quote!()
    };
    quote! {
        #doc
        #gate
        #[doc = ""]
        #[doc = " # Safety"]
        #[doc = ""]
        #[doc = " As for the raw calls: the hypervisor must be this one, and every"]
        #[doc = " address argument must point to memory it may use as the call says."]
        #[inline]
        pub unsafe fn #name(self, #(#params),*) #ret_clause {
            __safety__!(#why);
            // SAFETY: (generator source) the line above emits the comment.
            let raw = unsafe { self.#call(#nr, #(#regs),*) };
            #used
            #finish
        }
    }
}

fn out_structs(model: &Model, hv: &Hypervisor) -> Vec<TokenStream> {
    hv.items
        .iter()
        .filter_map(|i| match i {
            HvItem::Hypercall(h) => match &h.result {
                Some(HcResult::Named(results)) => {
                    let s = out_struct(&h.name.name);
                    let doc = format!(" What [`Hypercalls::{}`] returns.", fn_name(&h.name.name));
                    let fields = results.iter().map(|r| {
                        let f = ident(&r.name.name);
                        let t = rust_type(&r.ty);
                        let d = model.unit_of(&r.ty).map(|u| format!(" `{}` (in `{u}`).", r.name.name)).unwrap_or_else(|| format!(" `{}`.", r.name.name));
                        quote!(#[doc = #d] pub #f: #t)
                    });
                    Some(quote!(#[doc = #doc] #[derive(Clone, Copy, Debug, PartialEq, Eq)] pub struct #s { #(#fields),* }))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The stub items of one hypervisor module.
pub fn stub_tokens(model: &Model, hv: &Hypervisor, mode: Mode) -> Option<TokenStream> {
    let conv = model.convention(&hv.name.name)?;
    let display = String::from_utf8_lossy(&hv.display.value).into_owned();
    let hypercalls: Vec<&Hypercall> = hv
        .items
        .iter()
        .filter_map(|i| match i {
            HvItem::Hypercall(h) => Some(h),
            _ => None,
        })
        .collect();
    let max_arity = hypercalls
        .iter()
        .map(|h| h.params.len())
        .max()
        .unwrap_or(0)
        .min(conv.args.len());
    let raws: Vec<_> = (0..=max_arity)
        .map(|n| raw_call(conv, n, mode, &display))
        .collect();
    let wrappers: Vec<_> = hypercalls
        .iter()
        .filter(|h| h.params.len() <= conv.args.len())
        .map(|h| wrapper(model, conv, h, &display))
        .collect();
    let uses_page = conv.uses_page();
    let (state, constructor) = if uses_page {
        (
            quote!(page: *const u8),
            quote! {
                #[doc = " Hypercalls through the hypercall page at `page`."]
                #[doc = ""]
                #[doc = " # Safety"]
                #[doc = ""]
                #[doc = " `page` must be the hypercall page this hypervisor filled in, mapped"]
                #[doc = " executable for as long as these hypercalls are made."]
                pub const unsafe fn new(page: *const u8) -> Self { Self { page } }
                #[doc = " Where the hypercall page is."]
                pub const fn page(self) -> *const u8 { self.page }
            },
        )
    } else {
        (
            quote!(instruction: Instruction),
            quote! {
                #[doc = " Hypercalls entered with `instruction`, chosen at boot."]
                pub const fn new(instruction: Instruction) -> Self { Self { instruction } }
                #[doc = " The instruction these hypercalls use."]
                pub const fn instruction(self) -> Instruction { self.instruction }
            },
        )
    };
    let instruction_enum = if uses_page {
        quote!()
    } else {
        let variants = conv.forms.iter().map(|&f| {
            let v = variant(f);
            let doc = match f {
                Form::Vmcall => " `vmcall`: Intel VMX.",
                Form::Vmmcall => " `vmmcall`: AMD SVM.",
                Form::InPort | Form::Page => " `in eax, dx` on the backdoor port.",
            };
            quote!(#[doc = #doc] #v)
        });
        let choose = match mode {
            Mode::Real => choose_fn(hv, conv),
            Mode::Trap => quote!(),
        };
        quote! {
            #[doc = " How this CPU enters the hypervisor."]
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub enum Instruction { #(#variants),* }
            #choose
        }
    };
    let sync = if uses_page {
        quote! {
            __safety__!("the hypercall page is code the hypervisor wrote once and never changes; any CPU may call it, so the handle may move and be shared between threads.");
            unsafe impl Send for Hypercalls {}
            __safety__!("as for Send: calls through the page do not touch the handle.");
            unsafe impl Sync for Hypercalls {}
        }
    } else {
        quote!()
    };
    let doc = format!(" {display} hypercalls: one raw `callN` per argument count and a typed method per hypercall.");
    let outs = out_structs(model, hv);
    Some(quote! {
        #instruction_enum
        #(#outs)*
        #[doc = #doc]
        #[derive(Clone, Copy, Debug)]
        pub struct Hypercalls { #state }
        #sync
        impl Hypercalls {
            #constructor
            #(#raws)*
            #(#wrappers)*
        }
    })
}

/// The stub pieces of a hypervisor's module.
pub fn pieces(model: &Model, hv: &Hypervisor) -> Vec<Piece> {
    stub_tokens(model, hv, Mode::Real)
        .map(Piece::Tokens)
        .into_iter()
        .collect()
}

/// `Instruction::choose`: the convention's `choose` rules in order, then
/// the first form listed, so no backend writes its own vendor check.
fn choose_fn(hv: &Hypervisor, conv: &Convention) -> TokenStream {
    let tests = conv.choices.iter().map(|r| {
        let form = variant(r.form);
        let cond = match &r.when {
            Condition::Vendor(names) => {
                let names = names.iter().map(|n| proc_macro2::Literal::byte_string(n));
                quote!(#(vendor == #names)||*)
            }
            Condition::Feature(bit) => super::chains::feature_test(hv, bit),
        };
        quote!(if #cond { return Instruction::#form; })
    });
    let default = variant(conv.default_form());
    let mut said: Vec<String> = conv
        .choices
        .iter()
        .map(|r| match &r.when {
            Condition::Vendor(names) => format!(
                "`{}` on a CPU whose vendor is {}",
                r.form.name(),
                names
                    .iter()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Condition::Feature(bit) => {
                format!("`{}` where `{bit}` is announced", r.form.name())
            }
        })
        .collect();
    said.push(format!("otherwise `{}`", conv.default_form().name()));
    let doc = format!(
        " The form this CPU must use, by the IDL's `choose`: {}. `vendor` is CPUID leaf 0's ebx, edx, ecx ([`crate::detect::cpu_vendor`]).",
        said.join("; ")
    );
    quote! {
        impl Instruction {
            #[doc = #doc]
            #[allow(unused_variables)]
            pub fn choose(features: &Features, vendor: &[u8; 12]) -> Instruction {
                #(#tests)*
                Instruction::#default
            }
        }
    }
}
