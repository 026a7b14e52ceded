//! No input makes the IDL toolchain panic: at least 100,000 random and
//! mutated inputs, plus fixed extremes, each must end in a model or in
//! diagnostics whose spans lie inside the input and which render.
//!
//! `PVI_FUZZ_CASES` and `PVI_FUZZ_SEED` change the run; a failing input is
//! saved under `target/fuzz-failures/` for replay.

use pvi_codegen::fmt::format_file;
use std::panic::{catch_unwind, AssertUnwindSafe};

const DEFAULT_CASES: usize = 100_000;
const DEFAULT_SEED: u64 = 0x05ee_d1d1;

/// Pieces the token-soup generator strings together.
const VOCABULARY: &[&str] = &[
    "interface",
    "unit",
    "newtype",
    "flags",
    "enum",
    "struct",
    "packed",
    "size",
    "errors",
    "group",
    "op",
    "hot",
    "required",
    "context",
    "native",
    "asm",
    "routine",
    "hypervisor",
    "detect",
    "signature",
    "probe",
    "convention",
    "instruction",
    "page",
    "stride",
    "number",
    "args",
    "result",
    "fixed",
    "clobbers",
    "fast_bit",
    "status",
    "leaf",
    "features",
    "msr",
    "const",
    "hypercall",
    "fast",
    "requires",
    "error",
    "map",
    "shared",
    "via",
    "cpuid",
    "nop",
    "when",
    "as",
    "in",
    "any",
    "rax",
    "rbx",
    "u64",
    "u8",
    "Nanos",
    "ns",
    "x",
    "t",
    "0",
    "1",
    "0x40000001",
    "-38",
    "0.1.0",
    "3.10",
    "\"KVMKVMKVM\\0\\0\\0\"",
    "\"\"",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ";",
    ":",
    ",",
    ".",
    "=",
    "==",
    "=>",
    "->",
    "@",
    "@since",
    "|",
    "///",
    "//!",
    "// c\n",
    "/* c */",
    "\n",
    " ",
    "this_cpu",
    "cli",
    "{ret}",
];

/// Hostile pieces spliced into real text.
const HOSTILE: &[&str] = &[
    "99999999999999999999999999999999999999999999",
    "0x",
    "0b2",
    "-0x8000000000000001",
    "\"unterminated",
    "/* unterminated",
    "\"\\q\"",
    "\"\\x\"",
    "\u{0}",
    "\u{feff}",
    "é",
    "𝕏",
    "\r\n",
    "@",
    "@since(",
    "@since(99999999999999999999999.0.0)",
    "[u8; 0]",
    "[[[[u8; 1]; 1]; 1]; 1]",
    "as as as",
    "struct s size 0 { }",
    "u64 in",
];

fn cases() -> usize {
    std::env::var("PVI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn seed() -> u64 {
    std::env::var("PVI_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// Run the whole toolchain on `input`; Err describes a broken promise.
fn exercise(input: &[u8]) -> Result<(), String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let (sources, result) = pvi_codegen::check_bytes("fuzz.pvi", input);
        match result {
            Ok(_) => {
                // A valid input must also survive formatting.
                let text =
                    std::str::from_utf8(input).map_err(|_| "accepted invalid UTF-8".to_string())?;
                let file = pvi_codegen::parse(0, text)
                    .map_err(|_| "checked but does not parse".to_string())?;
                let formatted = format_file(&file, text);
                match pvi_codegen::parse(0, &formatted) {
                    Ok(again) if again == file => Ok(()),
                    _ => Err("formatting changed a valid input".to_string()),
                }
            }
            Err(diags) if diags.is_empty() => Err("rejected without a diagnostic".to_string()),
            Err(diags) => {
                let len = sources.text(0).len();
                for d in &diags {
                    if d.span.start > d.span.end || d.span.end > len {
                        return Err(format!(
                            "span {}..{} outside the input ({len} bytes): {}",
                            d.span.start, d.span.end, d.message
                        ));
                    }
                }
                let rendered = diags[0].render(&sources, false);
                if rendered.is_empty() {
                    return Err("empty rendering".into());
                }
                Ok(())
            }
        }
    }));
    match outcome {
        Ok(result) => result,
        Err(panic) => Err(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut files = pvi_tests::idl_files();
    let errors = pvi_tests::root().join("tests/idl-errors");
    files.extend(
        std::fs::read_dir(errors)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pvi")),
    );
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// A window of whole lines from a seed file: small inputs keep 100k cases fast
/// while still reaching every construct.
fn window(rng: &mut fastrand::Rng, text: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
    if lines.is_empty() || rng.u8(..) < 3 {
        return text.to_vec();
    }
    let start = rng.usize(..lines.len());
    let len = rng.usize(1..=60.min(lines.len() - start));
    let mut out = if rng.bool() {
        b"interface t 0.1.0;\n".to_vec()
    } else {
        Vec::new()
    };
    for l in &lines[start..start + len] {
        out.extend_from_slice(l);
    }
    out
}

fn mutate(rng: &mut fastrand::Rng, seeds: &[Vec<u8>], case: usize) -> Vec<u8> {
    let base = &seeds[rng.usize(..seeds.len())];
    let mut input = window(rng, base);
    match case % 7 {
        0 => {
            for _ in 0..rng.usize(1..=8) {
                if !input.is_empty() {
                    let at = rng.usize(..input.len());
                    input[at] = rng.u8(..);
                }
            }
        }
        1 => {
            let cut = rng.usize(..=input.len());
            input.truncate(cut);
        }
        2 => {
            if !input.is_empty() {
                let a = rng.usize(..input.len());
                let b = rng.usize(a..=input.len().min(a + 200));
                input.drain(a..b);
            }
        }
        3 => {
            let other = &seeds[rng.usize(..seeds.len())];
            let a = rng.usize(..=other.len());
            let b = rng.usize(a..=other.len().min(a + 300));
            let at = rng.usize(..=input.len());
            input.splice(at..at, other[a..b].iter().copied());
        }
        4 => {
            input.clear();
            for _ in 0..rng.usize(1..200) {
                input.extend_from_slice(VOCABULARY[rng.usize(..VOCABULARY.len())].as_bytes());
                input.push(b' ');
            }
        }
        5 => {
            let piece = HOSTILE[rng.usize(..HOSTILE.len())].as_bytes();
            let at = rng.usize(..=input.len());
            input.splice(at..at, piece.iter().copied());
        }
        _ => {
            // Swap two lines: declarations before use, blocks torn apart.
            let mut lines: Vec<Vec<u8>> = input
                .split_inclusive(|b| *b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            if lines.len() > 1 {
                let (a, b) = (rng.usize(..lines.len()), rng.usize(..lines.len()));
                lines.swap(a, b);
            }
            input = lines.concat();
        }
    }
    input
}

#[test]
fn no_input_makes_the_toolchain_panic() {
    let seeds = seeds();
    let (count, seed) = (cases(), seed());
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut failures = Vec::new();
    let mut accepted = 0;
    // The panic message is collected; the default hook would print each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for case in 0..count {
        let input = mutate(&mut rng, &seeds, case);
        match exercise(&input) {
            Ok(()) => {
                if pvi_codegen::check_bytes("fuzz.pvi", &input).1.is_ok() {
                    accepted += 1;
                }
            }
            Err(why) => failures.push((case, input, why)),
        }
        if failures.len() >= 10 {
            break;
        }
    }
    std::panic::set_hook(hook);
    report(&failures);
    assert!(
        failures.is_empty(),
        "{} of {count} inputs broke the toolchain (seed {seed:#x}); see above",
        failures.len()
    );
    println!("{count} inputs (seed {seed:#x}): {accepted} accepted, the rest rejected with diagnostics, none panicked");
}

fn report(failures: &[(usize, Vec<u8>, String)]) {
    if failures.is_empty() {
        return;
    }
    let dir = pvi_tests::root().join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    for (case, input, why) in failures {
        let path = dir.join(format!("case-{case}.pvi"));
        let _ = std::fs::write(&path, input);
        eprintln!("case {case}: {why}  (input saved to {})", path.display());
    }
}

#[test]
fn extreme_inputs_end_in_diagnostics() {
    let deep = |open: &str, n: usize| open.repeat(n).into_bytes();
    let mut huge_number = b"interface t 0.1.0;\nunit a = ".to_vec();
    huge_number.extend(std::iter::repeat_n(b'9', 100_000));
    huge_number.extend_from_slice(b" ns;\n");
    let mut many_items = b"interface t 0.1.0;\nunit ns;\n".to_vec();
    for i in 0..20_000 {
        many_items.extend_from_slice(format!("unit u{i} = {} ns;\n", i + 1).as_bytes());
    }
    let mut long_ident = b"interface t 0.1.0;\nunit ".to_vec();
    long_ident.extend(std::iter::repeat_n(b'a', 1_000_000));
    long_ident.extend_from_slice(b";\n");
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("100k open parens", deep("(", 100_000)),
        ("100k open braces", deep("{", 100_000)),
        ("100k open brackets", deep("[", 100_000)),
        (
            "100k nested arrays",
            [
                b"interface t 0.1.0;\nstruct s size 8 { f: ".to_vec(),
                deep("[", 100_000),
            ]
            .concat(),
        ),
        (
            "100k nested blocks after a name",
            [b"zzz ".to_vec(), deep("{", 100_000)].concat(),
        ),
        ("100k closing braces", deep("}", 100_000)),
        ("a 100k-digit number", huge_number),
        ("20k declarations", many_items),
        ("a 1M-character name", long_ident),
        ("invalid UTF-8 only", vec![0xff, 0xfe, 0xfd]),
        ("NUL bytes", vec![0; 1000]),
        ("empty", Vec::new()),
        ("comments only", b"// a\n/* b */\n".to_vec()),
    ];
    for (what, input) in inputs {
        if let Err(why) = exercise(&input) {
            panic!("{what}: {why}");
        }
    }
}
