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

/// A calling convention, read out of its statements.
pub struct Conv {
    pub forms: Vec<String>,
    pub page_stride: Option<i128>,
    pub number: String,
    pub args: Vec<String>,
    pub results: Vec<String>,
    pub fixed: Vec<(String, TokenStream, Option<String>)>,
    pub clobbers: Vec<String>,
    pub fast_bit: Option<i128>,
    pub rep_shift: Option<i128>,
    pub status: String,
    /// What the first result register holds when the hypervisor does not
    /// implement a call (`-ENOSYS` for a negated-errno convention): what a
    /// hypercall instruction that faults is made to return.
    pub unsupported: Option<i128>,
}

pub fn convention(hv: &Hypervisor) -> Option<Conv> {
    let c = hv.items.iter().find_map(|i| match i {
        HvItem::Convention(c) => Some(c),
        _ => None,
    })?;
    let mut conv = Conv {
        forms: Vec::new(),
        page_stride: None,
        number: String::new(),
        args: Vec::new(),
        results: Vec::new(),
        fixed: Vec::new(),
        clobbers: Vec::new(),
        fast_bit: None,
        rep_shift: None,
        status: String::new(),
        unsupported: None,
    };
    let names = |v: &[crate::ast::Ident]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    for s in &c.stmts {
        match s {
            ConvStmt::Instruction(f, _) => conv.forms = names(f),
            ConvStmt::Page(_, stride, _) => conv.page_stride = Some(stride.value),
            ConvStmt::Number(r, _) => conv.number = r.name.clone(),
            ConvStmt::Args(r, _) => conv.args = names(r),
            ConvStmt::Result(r, _) => conv.results = names(r),
            ConvStmt::Fixed(f, _) => {
                conv.fixed = f
                    .iter()
                    .map(|f| {
                        // A register operand: the literal must be a u64.
                        let text = format!("{}_u64", f.value.text.replace('_', ""));
                        let value = syn::parse_str::<syn::Expr>(&text)
                            .map(|e| quote!(#e))
                            .unwrap_or_else(|_| super::names::int_literal(&f.value));
                        (
                            f.reg.name.clone(),
                            value,
                            f.form.as_ref().map(|w| w.name.clone()),
                        )
                    })
                    .collect()
            }
            ConvStmt::Clobbers(r, _) => {
                conv.clobbers = names(r).into_iter().filter(|r| r != "memory").collect()
            }
            ConvStmt::FastBit(b, _) => conv.fast_bit = Some(b.value),
            ConvStmt::RepShift(b, _) => conv.rep_shift = Some(b.value),
            ConvStmt::Status(s, _) => conv.status = s.name.clone(),
            ConvStmt::Choose(..) => {}
        }
    }
    if conv.status == "negated_errno" {
        conv.unsupported = hv.items.iter().find_map(|i| match i {
            HvItem::Error(e) if e.kind.name == "unsupported" => Some(-e.code.value),
            _ => None,
        });
    }
    Some(conv)
}

fn instruction_text(form: &str, mode: Mode) -> &'static str {
    match (form, mode) {
        ("vmcall" | "vmmcall", Mode::Trap) => "ud2",
        ("vmcall", _) => "vmcall",
        ("vmmcall", _) => "vmmcall",
        ("in_port", _) => "in eax, dx",
        _ => "call {entry}",
    }
}

fn variant(form: &str) -> proc_macro2::Ident {
    format_ident!("{}", camel(form))
}

/// The `asm!` invocation for one form and arity.
fn asm_for(conv: &Conv, form: &str, arity: usize, mode: Mode) -> TokenStream {
    #[derive(Default)]
    struct Role {
        input: Option<TokenStream>,
        output: Option<proc_macro2::Ident>,
        clobbered: bool,
    }
    let mut roles: std::collections::BTreeMap<String, Role> = Default::default();
    if conv.number != "slot" {
        roles.entry(conv.number.clone()).or_default().input = Some(quote!(nr));
    }
    for (i, reg) in conv.args.iter().take(arity).enumerate() {
        let a = format_ident!("a{}", i);
        roles.entry(reg.clone()).or_default().input = Some(quote!(#a));
    }
    for (reg, value, only) in &conv.fixed {
        if only.as_deref().is_none_or(|f| f == form) {
            roles.entry(reg.clone()).or_default().input = Some(quote!(#value));
        }
    }
    for (i, reg) in conv.results.iter().enumerate() {
        roles.entry(reg.clone()).or_default().output = Some(format_ident!("r{}", i));
    }
    for reg in &conv.clobbers {
        roles.entry(reg.clone()).or_default().clobbered = true;
    }
    let mut operands = Vec::new();
    let mut uses_rbx = false;
    let mut rbx_operand = quote!();
    for (reg, role) in &roles {
        let input = role.input.clone();
        let out = role.output.clone();
        if reg == "rbx" {
            uses_rbx = true;
            let input = input.unwrap_or(quote!(0u64));
            let out = match out {
                Some(o) => quote!(#o),
                None => quote!(_),
            };
            rbx_operand = quote!(rbx = inout(reg) #input => #out,);
            continue;
        }
        let r = reg.as_str();
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
    // kernel's exception handler finds the landing in `.pvi_fixups`
    // (`pvi_sdk::fixup`).
    let fixup = match (instruction, mode, conv.unsupported, conv.results.first()) {
        ("vmcall" | "vmmcall", Mode::Real, Some(value), Some(reg)) if reg == "rax" => Some(value),
        _ => None,
    };
    match fixup {
        Some(value) => lines.extend([
            "771:".to_string(),
            instruction.to_string(),
            "772:".to_string(),
            ".pushsection .pvi_fixups, \"a\"".to_string(),
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
    let (entry, options) = if form == "page" {
        (quote!(entry = in(reg) entry,), quote!())
    } else {
        (quote!(), quote!(, options(nostack)))
    };
    quote!(core::arch::asm!(#(#lines),*, #rbx_operand #entry #(#operands),* #options))
}

/// Raw `callN` for N arguments: number and arguments in, result registers
/// out.
fn raw_call(conv: &Conv, arity: usize, mode: Mode, hv_display: &str) -> TokenStream {
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
    let entry = if conv.forms.iter().any(|f| f == "page") {
        let stride = proc_macro2::Literal::usize_unsuffixed(conv.page_stride.unwrap_or(0) as usize);
        if conv.number == "slot" {
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
        .map(|form| {
            let asm = asm_for(conv, form, arity, mode);
            let v = variant(form);
            // SAFETY: (generator source) each emitted block gets its
            // comment from `__safety__!(#why)`.
            if conv.forms.len() == 1 {
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
    conv: &Conv,
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
    let ret_ty = match conv.status.as_str() {
        "negated_errno" | "hv_status" => quote!(Result<#value_ty, PvError>),
        _ => value_ty,
    };
    (params, names, super::names::returns(&ret_ty))
}

fn wrapper(model: &Model, conv: &Conv, h: &Hypercall, hv_display: &str) -> TokenStream {
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
        let bit = proc_macro2::Literal::u32_unsuffixed(bit as u32);
        nr = quote!(#nr | 1 << #bit);
    }
    if let (true, Some(shift)) = (h.rep, conv.rep_shift) {
        let shift = proc_macro2::Literal::u32_unsuffixed(shift as u32);
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
    let finish = match conv.status.as_str() {
        "negated_errno" => {
            quote!(let status = #first as i64; if status < 0 { return Err(error(status.wrapping_neg())); } Ok(#value))
        }
        "hv_status" => {
            quote!(let status = (#first & 0xffff) as i64; if status != 0 { return Err(error(status)); } Ok(#value))
        }
        _ => {
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
                .map(|r| format!("`{r}`"))
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
    let used = if h.result.is_none() && conv.status == "none" {
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
    let conv = convention(hv)?;
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
        .map(|n| raw_call(&conv, n, mode, &display))
        .collect();
    let wrappers: Vec<_> = hypercalls
        .iter()
        .filter(|h| h.params.len() <= conv.args.len())
        .map(|h| wrapper(model, &conv, h, &display))
        .collect();
    let uses_page = conv.forms.iter().any(|f| f == "page");
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
        let variants = conv.forms.iter().map(|f| {
            let v = variant(f);
            let doc = match f.as_str() {
                "vmcall" => " `vmcall`: Intel VMX.",
                "vmmcall" => " `vmmcall`: AMD SVM.",
                _ => " `in eax, dx` on the backdoor port.",
            };
            quote!(#[doc = #doc] #v)
        });
        let choose = match mode {
            Mode::Real => choose_fn(hv, &conv),
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
fn choose_fn(hv: &Hypervisor, conv: &Conv) -> TokenStream {
    let rules: Vec<&Choice> = hv
        .items
        .iter()
        .filter_map(|i| match i {
            HvItem::Convention(c) => Some(c),
            _ => None,
        })
        .flat_map(|c| &c.stmts)
        .flat_map(|s| match s {
            ConvStmt::Choose(rules, _) => rules.iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    let tests = rules.iter().map(|r| {
        let form = variant(&r.form.name);
        let cond = match &r.when {
            ChoiceCond::Vendor(names) => {
                let names = names
                    .iter()
                    .map(|n| proc_macro2::Literal::byte_string(&n.value));
                quote!(#(vendor == #names)||*)
            }
            ChoiceCond::Feature(bit) => super::chains::feature_test(hv, &bit.name),
        };
        quote!(if #cond { return Instruction::#form; })
    });
    let default = variant(conv.forms.first().map_or("vmcall", String::as_str));
    let mut said: Vec<String> = rules
        .iter()
        .map(|r| match &r.when {
            ChoiceCond::Vendor(names) => format!(
                "`{}` on a CPU whose vendor is {}",
                r.form.name,
                names
                    .iter()
                    .map(|n| String::from_utf8_lossy(&n.value).into_owned())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            ChoiceCond::Feature(bit) => {
                format!("`{}` where `{}` is announced", r.form.name, bit.name)
            }
        })
        .collect();
    said.push(format!(
        "otherwise `{}`",
        conv.forms.first().map_or("vmcall", String::as_str)
    ));
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
