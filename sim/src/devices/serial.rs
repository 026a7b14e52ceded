//! COM1 (ports 0x3f8-0x3ff): the rust-vmm 16550 model, its output to a
//! file or standard output. Interrupts are not wired: guests here poll.

use std::io::Write;
use std::path::Path;
use vm_superio::{Serial, Trigger};

const COM1: u16 = 0x3f8;

/// The register offset of `port` if it is one of COM1's.
pub fn offset(port: u16) -> Option<u8> {
    (COM1..COM1 + 8)
        .contains(&port)
        .then(|| (port - COM1) as u8)
}

/// An interrupt line going nowhere.
pub struct NoInterrupt;

impl Trigger for NoInterrupt {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        Ok(())
    }
}

/// COM1.
pub struct Com1(Serial<NoInterrupt, vm_superio::serial::NoEvents, Box<dyn Write + Send>>);

impl Com1 {
    /// COM1 writing to `path`, or to standard output.
    pub fn new(path: Option<&Path>) -> Result<Com1, String> {
        let out: Box<dyn Write + Send> = match path {
            Some(p) => {
                Box::new(std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?)
            }
            None => Box::new(std::io::stdout()),
        };
        Ok(Com1(Serial::new(NoInterrupt, out)))
    }

    /// A register write.
    pub fn write(&mut self, offset: u8, value: u8) {
        // The only errors are the writer's; a lost console byte must not
        // stop the guest.
        let _ = self.0.write(offset, value);
        let _ = self.0.writer_mut().flush();
    }

    /// Bytes straight onto the output, past the UART (a hypervisor console).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        let out = self.0.writer_mut();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    /// A register read.
    pub fn read(&mut self, offset: u8) -> u8 {
        self.0.read(offset)
    }
}
