//! Time: the pvclock and Hyper-V reference-TSC readers, TSC frequency
//! sources, and wall-clock arithmetic. Pure logic, tested on the host; the
//! instructions that read the TSC or ports are passed in.

/// A deadline on a nanosecond clock as ticks of a hardware timer.
pub mod deadline;
/// KVM's and Xen's pvclock records: TSC-to-nanosecond scaling and the
/// version (seqlock) protocol for reading them.
pub mod pvclock;
/// Hyper-V's reference TSC page: TSC to 100 ns reference time under its
/// sequence number.
pub mod reftsc;
/// CMOS RTC decoding and VMware host time, turned into Unix nanoseconds.
pub mod rtc;
/// TSC frequency from CPUID, hypervisor leaves, VMware's backdoor or a
/// calibration, with garbage rejected.
pub mod tsc_freq;
