//! Time: the pvclock and Hyper-V reference-TSC readers, TSC frequency
//! sources, and wall-clock arithmetic. Pure logic, tested on the host; the
//! instructions that read the TSC or ports are passed in.
