//! The guest's port I/O: COM1, the CMOS clock, the debug exit port, pvpanic
//! and the ACPI power-off register (PM1a control). (The PIC, PIT and local APIC are KVM's
//! in-kernel ones.)

mod cmos;
mod serial;

use std::path::Path;

/// What the run loop does after a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Resume the guest.
    Continue,
    /// Stop with this exit status.
    Exit(u8),
}

/// QEMU's isa-debug-exit, as the example kernel expects it: a write of v
/// ends the VM with status (v << 1) | 1.
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// QEMU's pvpanic ISA device: bit 0 written means "guest panicked".
const PVPANIC_PORT: u16 = 0x505;
/// Port 0x80: the POST code port, written by `io_delay`.
const POST_PORT: u16 = 0x80;

/// Every emulated port device.
pub struct Devices {
    serial: serial::Com1,
    /// The CMOS RTC, unless the platform has none (`--fault
    /// no-legacy-devices`): its ports then read as an empty bus.
    cmos: Option<cmos::Cmos>,
    /// ACPI hardware-reduced mode (`--fault hardware-reduced-acpi`): the
    /// sleep control register instead of PM1a, and no debug-exit device.
    hardware_reduced: bool,
    trace: bool,
}

impl Devices {
    /// The devices, the serial output going to `serial` (or stdout); the
    /// CMOS RTC only with `rtc`; a hardware-reduced ACPI platform's power
    /// control (and no debug-exit device) with `hardware_reduced`.
    pub fn new(
        serial: Option<&Path>,
        trace: bool,
        rtc: bool,
        hardware_reduced: bool,
    ) -> Result<Devices, String> {
        Ok(Devices {
            serial: serial::Com1::new(serial)?,
            cmos: rtc.then(cmos::Cmos::default),
            hardware_reduced,
            trace,
        })
    }

    /// A guest `out` to `port`.
    pub fn port_write(&mut self, port: u16, data: &[u8]) -> Next {
        let value = data.first().copied().unwrap_or(0);
        if let Some(offset) = serial::offset(port) {
            self.serial.write(offset, value);
            return Next::Continue;
        }
        match port {
            DEBUG_EXIT_PORT if !self.hardware_reduced => {
                let v = u32::from_le_bytes(pad4(data));
                return Next::Exit(((v << 1) | 1) as u8);
            }
            PVPANIC_PORT if value & 1 != 0 => {
                eprintln!("pvi-sim: the guest panicked (pvpanic)");
                return Next::Exit(1);
            }
            cmos::INDEX_PORT | cmos::DATA_PORT => {
                if let Some(cmos) = &mut self.cmos {
                    cmos.write(port, value);
                }
            }
            crate::acpi::SLEEP_CONTROL_PORT if self.hardware_reduced => {
                // SLP_EN (bit 5) with SLP_TYP (bits 4:2) of \_S5.
                if value & (1 << 5) != 0 && (value >> 2) & 7 == crate::acpi::S5_SLEEP_TYPE {
                    eprintln!(
                        "pvi-sim: the guest powered off (ACPI S5, hardware-reduced sleep control)"
                    );
                    return Next::Exit(0);
                }
            }
            crate::acpi::PM1A_CONTROL_PORT if !self.hardware_reduced => {
                let v = u16::from_le_bytes([value, data.get(1).copied().unwrap_or(0)]);
                // SLP_EN (bit 13) with SLP_TYP (bits 12:10) of \_S5.
                if v & (1 << 13) != 0 && (v >> 10) & 7 == u16::from(crate::acpi::S5_SLEEP_TYPE) {
                    eprintln!("pvi-sim: the guest powered off (ACPI S5)");
                    return Next::Exit(0);
                }
            }
            POST_PORT => {}
            _ => {
                if self.trace {
                    eprintln!("pvi-sim: out {port:#06x} <- {data:02x?} (no device)");
                }
            }
        }
        Next::Continue
    }

    /// Text the hypervisor's console call was given, onto the serial output.
    pub fn console_write(&mut self, bytes: &[u8]) {
        self.serial.write_raw(bytes);
    }

    /// A guest `in` from `port`.
    pub fn port_read(&mut self, port: u16, data: &mut [u8]) {
        if let Some(offset) = serial::offset(port) {
            data.fill(0);
            data[0] = self.serial.read(offset);
            return;
        }
        match (port, &mut self.cmos) {
            (cmos::INDEX_PORT | cmos::DATA_PORT, Some(cmos)) => {
                data.fill(0);
                data[0] = cmos.read(port);
            }
            _ => {
                // What an empty ISA bus answers.
                data.fill(0xff);
                if self.trace {
                    eprintln!("pvi-sim: in {port:#06x} (no device) -> ff");
                }
            }
        }
    }
}

fn pad4(data: &[u8]) -> [u8; 4] {
    let mut v = [0; 4];
    let n = data.len().min(4);
    v[..n].copy_from_slice(&data[..n]);
    v
}
