//! `pvi new-backend`: the first lines of a hypervisor nobody here has
//! added yet. It writes the IDL file (detection by signature, a calling
//! convention to replace with the hypervisor's own, the required ops mapped
//! `native`), the backend file (its `Steps` and `HypervisorBackend`,
//! serving everything natively) and the cargo feature that builds it, so
//! that `pvi check`, `cargo xtask codegen` and the build pass from the first
//! minute; the backend guide goes on from there.

use crate::model::Model;

/// What the scaffold writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scaffold {
    /// `idl/NAME.pvi`.
    pub idl: String,
    /// `backends/src/NAME.rs`.
    pub backend: String,
}

/// Why a scaffold cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What is wrong.
    pub message: String,
    /// What to do instead.
    pub hint: String,
}

fn refuse(message: impl Into<String>, hint: impl Into<String>) -> Refusal {
    Refusal {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Rust keywords and names the generated code already uses at the top of
/// `pvi_sdk::generated`: a hypervisor cannot be called one of these.
const TAKEN: &[&str] = &[
    "native", "ops", "types", "as", "break", "const", "continue", "crate", "else", "enum",
    "extern", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move",
    "mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "async", "await", "dyn",
];

/// The files for hypervisor `name` (its IDL name: module, cargo feature,
/// `pvi.backend=`), called `display` by people, whose CPUID signature is
/// `signature` (12 bytes), in the interface `model`.
pub fn new_backend(
    model: &Model,
    name: &str,
    display: &str,
    signature: &[u8],
) -> Result<Scaffold, Refusal> {
    let snake = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !snake || TAKEN.contains(&name) {
        return Err(refuse(
            format!("`{name}` cannot name a hypervisor"),
            "use its name in snake_case, as Linux's arch/x86 does (`kvm`, `hyperv`, `acrn`): it becomes a module, a cargo feature and `pvi.backend=NAME`",
        ));
    }
    if model.hypervisors().any(|h| h.name.name == name) {
        return Err(refuse(
            format!("the interface already has a hypervisor `{name}`"),
            format!("edit idl/{name}.pvi and backends/src/{name}.rs instead"),
        ));
    }
    if display.trim().is_empty() || display.contains(['"', '\\', '\n']) {
        return Err(refuse(
            format!("{display:?} cannot be its display name"),
            "give the name people use, e.g. \"Jailhouse\" (no quotes or backslashes)",
        ));
    }
    if signature.len() != 12 {
        return Err(refuse(
            format!(
                "a CPUID signature is 12 bytes (ebx, ecx, edx of leaf 0x40000000); this one has {}",
                signature.len()
            ),
            "pad a short one with \\0, e.g. 'KVMKVMKVM\\0\\0\\0'",
        ));
    }
    let required: Vec<&str> = model
        .ops()
        .filter(|o| {
            o.op.stmts
                .iter()
                .any(|s| matches!(s, crate::ast::OpStmt::Required(_)))
        })
        .map(|o| o.op.name.name.as_str())
        .collect();
    Ok(Scaffold {
        idl: idl(name, display, signature, &required),
        backend: backend(name, display),
    })
}

fn idl(name: &str, display: &str, signature: &[u8], required: &[&str]) -> String {
    let signature = crate::fmt::string_text(signature);
    let maps: String = required
        .iter()
        .map(|op| format!("\n    map {op} {{\n        native;\n    }}\n"))
        .collect();
    format!(
        r#"//! {display}'s guest ABI on x86-64, as a guest sees it.
//!
//! Sources: the upstream files each number below comes from.

hypervisor {name} "{display}" {{
    // CPUID 0x40000000 returns this signature in ebx, ecx, edx.
    // Source: the upstream file that says so.
    detect {{
        signature {signature};
    }}

    // A PLACEHOLDER, KVM's convention: replace it with {display}'s own
    // (which instruction, where the number, the arguments and the results
    // go, what else it changes) before declaring a hypercall. The
    // conformance tests hold every stub to this block.
    convention {{
        instruction vmcall | vmmcall;
        choose vmmcall when vendor "AuthenticAMD" | "HygonGenuine";
        number rax;
        args rbx, rcx, rdx, rsi;
        result rax;
        clobbers memory;
        status negated_errno;
    }}

    // Every hypervisor says how it serves these, if only natively.
{maps}}}
"#
    )
}

fn backend(name: &str, display: &str) -> String {
    let ty = crate::gen::names::camel(name);
    format!(
        r#"//! {display}: every op native so far. Each step the IDL maps asks for
//! a `Steps` method the build names.

use crate::native::BareMetal;
use crate::registry::HypervisorBackend;
use pvi_sdk::arch::cpuid;
use pvi_sdk::detect::Choice;
use pvi_sdk::generated::{name}::*;

/// The {display} backend.
#[derive(Clone, Copy, Debug)]
pub struct {ty} {{
    features: Features,
}}

impl HypervisorBackend for {ty} {{
    unsafe fn new(choice: &Choice) -> {ty} {{
        {ty} {{
            features: Features::read(|leaf| cpuid(choice.leaf(leaf), 0).to_array()),
        }}
    }}
}}

// SAFETY: a `{ty}` is only made by `HypervisorBackend::new`, whose
// contract is that {display} is the hypervisor.
unsafe impl Steps for {ty} {{
    type Native = BareMetal;

    fn features(&self) -> &Features {{
        &self.features
    }}
}}

/// The {display} backend's ops.
pub type Ops = Paravirt<{ty}>;
"#
    )
}

/// The bytes of `text` written with the IDL's string escapes, as a shell
/// passes a signature.
pub fn unescape(text: &str) -> Result<Vec<u8>, Refusal> {
    let (value, bad) = crate::escape::unescape(text);
    match bad.first() {
        None => Ok(value),
        Some(&(at, len)) => Err(refuse(
            format!(
                "`{}` is not an escape",
                &text[at..(at + len).min(text.len())]
            ),
            format!("escapes are {}, as in the IDL", crate::escape::ESCAPES),
        )),
    }
}

/// `backends/Cargo.toml` with the feature `name` declared and on by
/// default; `None` when its `[features]` table has no `default` list.
pub fn add_feature(cargo_toml: &str, name: &str) -> Option<String> {
    let mut out = String::new();
    let mut done = false;
    for line in cargo_toml.lines() {
        match line.strip_prefix("default = [") {
            Some(rest) if !done => {
                let sep = if rest.trim_start().starts_with(']') {
                    ""
                } else {
                    ", "
                };
                out.push_str(&format!("default = [\"{name}\"{sep}{rest}\n{name} = []\n"));
                done = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    done.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_take_the_idl_escapes() {
        assert_eq!(unescape("Jailhouse\\0\\0\\0").unwrap(), b"Jailhouse\0\0\0");
        assert_eq!(unescape("a\\x41").unwrap(), b"aA");
        assert!(unescape("a\\q").is_err());
        assert!(unescape("a\\xZZ").is_err());
    }

    #[test]
    fn the_feature_goes_first_in_the_default_set() {
        let toml = "[features]\ndefault = [\"kvm\", \"xen\"]\nkvm = []\n";
        assert_eq!(
            add_feature(toml, "acrn").unwrap(),
            "[features]\ndefault = [\"acrn\", \"kvm\", \"xen\"]\nacrn = []\nkvm = []\n"
        );
        assert_eq!(
            add_feature("default = []\n", "acrn").unwrap(),
            "default = [\"acrn\"]\nacrn = []\n"
        );
        assert_eq!(add_feature("[features]\n", "acrn"), None);
    }
}

#[cfg(test)]
mod checks {
    use super::*;
    use std::path::Path;

    /// The scaffold's IDL file joins `idl/` and the whole still checks.
    #[test]
    fn a_scaffolded_hypervisor_checks() {
        let idl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../idl");
        let (_, model) = crate::check_paths(std::slice::from_ref(&idl)).unwrap();
        let model = model.unwrap();
        let files = new_backend(&model, "demo", "Demo", b"DemoDemo\0\0\0\0").unwrap();
        let dir = std::env::temp_dir().join(format!("pvi-scaffold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&idl).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "pvi") {
                std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
            }
        }
        std::fs::write(dir.join("demo.pvi"), &files.idl).unwrap();
        let (sources, result) = crate::check_paths(std::slice::from_ref(&dir)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        match result {
            Ok(m) => assert!(m.hypervisors().any(|h| h.name.name == "demo")),
            Err(d) => panic!(
                "{}",
                d.iter()
                    .map(|d| d.render(&sources, false))
                    .collect::<String>()
            ),
        }
        assert!(files.backend.contains("pub type Ops = Paravirt<Demo>;"));
    }

    #[test]
    fn names_and_signatures_it_cannot_use_are_refused() {
        let idl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../idl");
        let model = crate::check_paths(&[idl]).unwrap().1.unwrap();
        for (name, sig) in [
            ("kvm", &b"KVMKVMKVM\0\0\0"[..]),
            ("Demo", b"DemoDemoDemo"),
            ("type", b"DemoDemoDemo"),
            ("demo", b"Demo"),
        ] {
            assert!(new_backend(&model, name, "Demo", sig).is_err(), "{name}");
        }
    }
}
