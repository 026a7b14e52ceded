//! The `pvi` command as users run it: exit codes, where output goes, and
//! what it says.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn pvi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvi"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("pvi runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_passes_on_the_interface_and_defaults_to_idl() {
    for args in [&["check", "idl"][..], &["check"][..]] {
        let out = pvi(args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).starts_with("ok: interface pvi "),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn check_reports_errors_with_location_and_exits_1() {
    let out = pvi(&["check", "tests/idl-errors/unknown-type.pvi"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("error[unknown-type]: unknown type `Nanoz`"),
        "{err}"
    );
    assert!(
        err.contains("tests/idl-errors/unknown-type.pvi:19:13"),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `Nanos`?"), "{err}");
}

#[test]
fn a_missing_path_is_an_error_of_its_own() {
    let out = pvi(&["check", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no/such/dir"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn fmt_check_accepts_idl_and_rejects_an_unformatted_file_without_touching_it() {
    assert_eq!(pvi(&["fmt", "--check", "idl"]).status.code(), Some(0));
    let dir = std::env::temp_dir().join(format!("pvi-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("messy.pvi");
    let messy = "interface   t 0.1.0 ;   // kept\n";
    std::fs::write(&file, messy).unwrap();
    let path = file.to_str().unwrap();
    let out = pvi(&["fmt", "--check", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("not formatted"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        messy,
        "--check must not write"
    );
    assert_eq!(pvi(&["fmt", path]).status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "interface t 0.1.0;  // kept\n"
    );
    assert_eq!(pvi(&["fmt", "--check", path]).status.code(), Some(0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn explain_shows_native_meaning_and_every_hypervisor() {
    let out = pvi(&["explain", "clock_ns"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("op clock_ns() -> Nanos"), "{s}");
    assert!(
        s.contains("Native meaning:") && s.contains("Native lowering: routine tsc_clock_ns"),
        "{s}"
    );
    for hv in [
        "On KVM (kvm):",
        "On Xen (xen):",
        "On Hyper-V (hyperv):",
        "On VMware (vmware):",
    ] {
        assert!(s.contains(hv), "missing `{hv}` in\n{s}");
    }
    assert!(
        s.contains("MSR_KVM_SYSTEM_TIME_NEW requires KVM_FEATURE_CLOCKSOURCE2   [MSR 0x4b564d01]"),
        "{s}"
    );
}

#[test]
fn explain_an_unknown_op_suggests_the_closest() {
    let out = pvi(&["explain", "clok_ns"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("did you mean `clock_ns`?"),
        "{}",
        text(&out.stderr)
    );
}

/// A reader that stops early (`pvi callsites … | head -1`) ends the report
/// quietly: no panic, success.
#[test]
fn callsites_stops_quietly_when_its_reader_goes_away() {
    use std::process::Stdio;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pvi"))
        .current_dir(&root)
        .args(["callsites", "example-kernel/src"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pvi runs");
    // Close the pipe before the first line is read.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("pvi ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}
