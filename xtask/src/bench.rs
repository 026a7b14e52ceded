//! `cargo xtask bench`: measurements, never pass/fail timings in tests.

use std::process::{Command, ExitCode};
use std::time::Instant;

const RUNS: usize = 21;

/// `pvi check idl` with a release build: the median of 21 runs, and the
/// fastest and slowest.
pub fn bench() -> ExitCode {
    println!("==> building pvi (release)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "--package",
            "pvi-codegen",
            "--bin",
            "pvi",
        ])
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("xtask bench: the release build failed");
        return ExitCode::FAILURE;
    }
    let pvi = "target/release/pvi";
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = Command::new(pvi).args(["check", "idl"]).output();
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        match out {
            Ok(o) if o.status.success() => times.push(elapsed),
            _ => {
                eprintln!("xtask bench: `pvi check idl` failed; fix the IDL first");
                return ExitCode::FAILURE;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let lines: usize = pvi_idl_lines();
    println!(
        "pvi check idl ({lines} lines, {RUNS} runs): median {:.1} ms, min {:.1} ms, max {:.1} ms",
        times[RUNS / 2],
        times[0],
        times[RUNS - 1]
    );
    ExitCode::SUCCESS
}

fn pvi_idl_lines() -> usize {
    std::fs::read_dir("idl")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|t| t.lines().count())
                .sum()
        })
        .unwrap_or(0)
}
