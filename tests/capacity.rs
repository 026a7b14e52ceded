//! A CPU beyond the backends' per-CPU records is refused with a reason,
//! never given another CPU's record (a clock the hypervisor writes).

use pvi_backends::percpu::MAX_CPUS;
use pvi_backends::select::{check_capacity, BeyondCapacity};

#[test]
fn a_cpu_beyond_the_per_cpu_capacity_is_refused_with_a_reason() {
    assert_eq!(check_capacity(0), Ok(()));
    assert_eq!(check_capacity(MAX_CPUS - 1), Ok(()));
    let refused = check_capacity(MAX_CPUS).unwrap_err();
    assert_eq!(
        refused,
        BeyondCapacity {
            cpu: MAX_CPUS,
            capacity: MAX_CPUS
        }
    );
    let why = refused.to_string();
    assert!(
        why.contains(&format!("CPU {MAX_CPUS} is beyond the {MAX_CPUS} CPUs")),
        "{why}"
    );
    assert!(why.contains("must not use the ops"), "{why}");
}

#[test]
fn a_cpu_whose_area_the_inline_forms_would_miss_is_refused_with_a_reason() {
    use pvi_backends::select::CpuRefused;
    let beyond: CpuRefused = check_capacity(MAX_CPUS).unwrap_err().into();
    assert!(matches!(beyond, CpuRefused::BeyondCapacity(_)));
    let why = CpuRefused::NoCpuArea { cpu: 3 }.to_string();
    assert!(why.starts_with("CPU 3: "), "{why}");
    assert!(why.contains("must not use the ops"), "{why}");
}
