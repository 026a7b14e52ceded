//! What pvi-sim shares with its helper programs: counting a guest's VM
//! exits by kind (`pvi-exit-counter` does it beside QEMU).

pub mod exit_counting;
