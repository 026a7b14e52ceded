//! Which hypervisor is there, and why: the CPUID hypervisor bit, a scan of
//! the hypervisor leaves, the backdoor probe, and the choice among what was
//! found. Pure logic over [`Cpu`], so that every case runs on the host.
//!
//! Rules, in order:
//! 1. CPUID.1:ECX\[31\] says a hypervisor is present. Without it the
//!    0x4000_0000 leaves are not scanned: on bare metal they return
//!    unrelated data.
//! 2. Every base from 0x4000_0000 to 0x4000_FF00 in steps of 0x100 is read.
//!    Its EAX is the highest leaf of that block, taken as given only within
//!    the block (base..=base+0xFF); EBX, ECX, EDX are the signature. An
//!    all-zero answer, or one identical to the previous base's (a CPU
//!    repeating its last leaf), is nothing.
//! 3. Among recognized signatures the one at the highest base wins: a
//!    hypervisor that offers another's interface for guests that expect it
//!    (KVM or Xen with Hyper-V enlightenments) puts that one at 0x4000_0000
//!    and its own at a higher base.
//! 4. When CPUID shows no signature at all, the probes of the IDL (the
//!    VMware backdoor) are tried.

use crate::generated::{Hypervisor, HypervisorInfo, HYPERVISORS};
use core::fmt;

/// The first hypervisor leaf.
pub const FIRST_BASE: u32 = 0x4000_0000;
/// The last base the scan reads.
pub const LAST_BASE: u32 = 0x4000_FF00;
/// Distance between bases.
pub const BASE_STEP: u32 = 0x100;
/// How many signatures a report keeps.
pub const MAX_FOUND: usize = 8;

/// The four output registers of CPUID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl Regs {
    /// As an array: eax, ebx, ecx, edx.
    pub const fn to_array(self) -> [u32; 4] {
        [self.eax, self.ebx, self.ecx, self.edx]
    }
}

/// What detection asks of the CPU; the hardware implementation is in
/// [`crate::arch`], tests implement it with fixtures.
pub trait Cpu {
    /// CPUID with `leaf` in EAX and `subleaf` in ECX.
    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> Regs;
    /// Run the probe named in the IDL (`backdoor`); `Some(version)` if
    /// something answered it correctly.
    fn probe(&mut self, probe: &str) -> Option<u32>;
}

/// The CPU vendor string: CPUID leaf 0's ebx, edx and ecx, in that order
/// ("GenuineIntel", "AuthenticAMD"), what a convention's `choose FORM when
/// vendor "…"` compares (the generated `Instruction::choose`).
pub fn cpu_vendor(cpu: &mut impl Cpu) -> [u8; 12] {
    let r = cpu.cpuid(0, 0);
    let mut v = [0; 12];
    v[..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.edx.to_le_bytes());
    v[8..].copy_from_slice(&r.ecx.to_le_bytes());
    v
}

/// A signature found in the hypervisor leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Its base leaf.
    pub base: u32,
    /// The highest leaf of its block, after bounding.
    pub max_leaf: u32,
    /// What EAX said, before bounding.
    pub reported_max: u32,
    /// EBX, ECX, EDX as bytes.
    pub signature: [u8; 12],
    /// Which hypervisor, if recognized.
    pub hypervisor: Option<Hypervisor>,
}

impl Found {
    /// Whether the reported highest leaf had to be bounded.
    pub fn bounded(&self) -> bool {
        self.reported_max != self.max_leaf
    }
}

/// How the chosen hypervisor was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Its CPUID signature, the only recognized one.
    Signature,
    /// Its CPUID signature, at a higher base than another recognized one.
    Stacked {
        /// The hypervisor it was preferred over.
        over: Hypervisor,
    },
    /// A probe answered (CPUID showed no signature).
    Probe {
        /// The version the probe returned.
        version: u32,
    },
    /// The kernel came in through the entry point one of the hypervisor's
    /// `detect { entry NOTE; }` ELF notes announces (Xen's PV entry): only
    /// that hypervisor jumps there, whatever CPUID says.
    Entry {
        /// The note's upstream name.
        note: &'static str,
    },
}

/// The chosen hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Which hypervisor.
    pub hypervisor: Hypervisor,
    /// The base its leaves are read at.
    pub base: u32,
    /// Why.
    pub how: How,
}

impl Choice {
    /// The hypervisor's description.
    pub fn info(&self) -> &'static HypervisorInfo {
        self.hypervisor.info()
    }

    /// Where the leaf `upstream` (numbered at base 0x4000_0000, as the IDL
    /// and the headers do) is for this hypervisor.
    pub fn leaf(&self, upstream: u32) -> u32 {
        upstream.wrapping_sub(FIRST_BASE).wrapping_add(self.base)
    }
}

/// What detection saw and decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    /// CPUID.1:ECX\[31\].
    pub hypervisor_bit: bool,
    found: [Option<Found>; MAX_FOUND],
    /// Signatures beyond [`MAX_FOUND`], and unprintable ones, not kept.
    pub others: u32,
    /// The probe that was run, if any, and whether it answered.
    pub probed: Option<(&'static str, bool)>,
    /// The hypervisor chosen, or `None` for bare metal.
    pub chosen: Option<Choice>,
}

impl Detection {
    /// The signatures kept, in base order.
    pub fn found(&self) -> impl Iterator<Item = &Found> {
        self.found.iter().flatten()
    }

    /// The chosen hypervisor's IDL name, or `native`.
    pub fn backend_name(&self) -> &'static str {
        self.chosen.map(|c| c.info().name).unwrap_or("native")
    }

    /// Why `hypervisor` was or was not chosen.
    pub fn verdict(&self, hypervisor: Hypervisor) -> Verdict {
        match self.chosen {
            Some(c) if c.hypervisor == hypervisor => Verdict::Chosen,
            Some(c) if self.found().any(|f| f.hypervisor == Some(hypervisor)) => {
                Verdict::Outranked { by: c.hypervisor }
            }
            _ => Verdict::NotFound,
        }
    }

    /// Keep `found`; when the report is full, a recognized signature takes
    /// the place of an unrecognized one, so that no number of unknown
    /// signatures can hide a known hypervisor.
    fn push(&mut self, found: Found) {
        if let Some(slot) = self.found.iter_mut().find(|f| f.is_none()) {
            *slot = Some(found);
            return;
        }
        self.others += 1;
        if found.hypervisor.is_some() {
            if let Some(slot) = self
                .found
                .iter_mut()
                .find(|f| f.is_some_and(|f| f.hypervisor.is_none()))
            {
                *slot = Some(found);
            }
        }
    }
}

/// Why a hypervisor was or was not chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It is the one.
    Chosen,
    /// Found, but another was preferred.
    Outranked {
        /// The hypervisor chosen instead.
        by: Hypervisor,
    },
    /// Not found.
    NotFound,
}

fn signature(r: Regs) -> [u8; 12] {
    let mut s = [0u8; 12];
    s[..4].copy_from_slice(&r.ebx.to_le_bytes());
    s[4..8].copy_from_slice(&r.ecx.to_le_bytes());
    s[8..].copy_from_slice(&r.edx.to_le_bytes());
    s
}

/// Printable ASCII, NUL padding allowed at the end: what signatures are.
fn plausible(sig: &[u8; 12]) -> bool {
    let text = sig
        .iter()
        .rposition(|b| *b != 0)
        .map(|end| &sig[..=end])
        .unwrap_or(&[]);
    !text.is_empty() && text.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
}

/// Detect the hypervisor.
pub fn detect(cpu: &mut impl Cpu) -> Detection {
    let mut d = Detection {
        hypervisor_bit: cpu.cpuid(1, 0).ecx & (1 << 31) != 0,
        found: [None; MAX_FOUND],
        others: 0,
        probed: None,
        chosen: None,
    };
    let mut seen_any = false;
    if d.hypervisor_bit {
        let mut previous: Option<Regs> = None;
        let mut base = FIRST_BASE;
        while base <= LAST_BASE {
            let r = cpu.cpuid(base, 0);
            let repeated = previous == Some(r);
            previous = Some(r);
            let sig = signature(r);
            if !repeated && sig != [0; 12] {
                seen_any = true;
                let hypervisor = HYPERVISORS
                    .iter()
                    .find(|h| h.signatures.contains(&sig))
                    .map(|h| h.id);
                if hypervisor.is_some() || plausible(&sig) {
                    let max_leaf = r.eax.clamp(base, base + (BASE_STEP - 1));
                    d.push(Found {
                        base,
                        max_leaf,
                        reported_max: r.eax,
                        signature: sig,
                        hypervisor,
                    });
                } else {
                    d.others += 1;
                }
            }
            base += BASE_STEP;
        }
    }
    let recognized = || d.found().filter_map(|f| f.hypervisor.map(|h| (h, f.base)));
    let best = recognized().max_by_key(|(_, base)| *base);
    if let Some((hypervisor, base)) = best {
        let over = recognized()
            .filter(|(h, _)| *h != hypervisor)
            .map(|(h, _)| h)
            .next();
        let how = match over {
            Some(over) => How::Stacked { over },
            None => How::Signature,
        };
        d.chosen = Some(Choice {
            hypervisor,
            base,
            how,
        });
        return d;
    }
    if !seen_any {
        for info in HYPERVISORS {
            for probe in info.probes {
                let answer = cpu.probe(probe);
                d.probed = Some((probe, answer.is_some()));
                if let Some(version) = answer {
                    d.chosen = Some(Choice {
                        hypervisor: info.id,
                        base: FIRST_BASE,
                        how: How::Probe { version },
                    });
                    return d;
                }
            }
        }
    }
    d
}

impl Detection {
    /// What a kernel that came in through `hypervisor`'s own entry point
    /// knows: that hypervisor, chosen by the entry (its leaves, if a
    /// backend reads any, at the first base); no CPUID scan. `None` for a
    /// hypervisor no ELF note finds (`entries` empty in the IDL), which a
    /// kernel cannot have been entered by.
    pub fn entered(hypervisor: Hypervisor) -> Option<Detection> {
        let note = hypervisor.info().entries.first()?;
        Some(Detection {
            hypervisor_bit: true,
            found: [None; MAX_FOUND],
            others: 0,
            probed: None,
            chosen: Some(Choice {
                hypervisor,
                base: FIRST_BASE,
                how: How::Entry { note },
            }),
        })
    }
}

/// The backend named by `pvi.backend=NAME` on a kernel command line.
pub fn backend_override(cmdline: &str) -> Option<&str> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("pvi.backend="))
        .next_back()
}

/// The steps `pvi.withdraw=OP:STEP[,OP:STEP…]` on a kernel command line asks
/// to withdraw, so that the steps after them can be tried on a hypervisor
/// where the first one always answers. Each item is `Ok((op, step))`, or
/// `Err(item)` when it is not `OP:STEP` with a step from 1.
pub fn withdraw_requests(cmdline: &str) -> impl Iterator<Item = Result<(&str, usize), &str>> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("pvi.withdraw="))
        .flat_map(|list| list.split(','))
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (op, step) = item.split_once(':').ok_or(item)?;
            match step.parse::<usize>() {
                Ok(n) if n >= 1 && !op.is_empty() => Ok((op, n)),
                _ => Err(item),
            }
        })
}

/// A signature for display: printable bytes as they are, others as `\xNN`.
struct Sig<'a>(&'a [u8; 12]);

impl fmt::Display for Sig<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for b in self.0 {
            if b.is_ascii_graphic() || *b == b' ' {
                write!(f, "{}", *b as char)?;
            } else if *b == 0 {
                f.write_str("\\0")?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\"")
    }
}

impl fmt::Display for Detection {
    /// A report for a boot log: one line per fact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "hypervisor bit (CPUID.1:ECX[31]): {}",
            if self.hypervisor_bit { "set" } else { "clear" }
        )?;
        for found in self.found() {
            let name = found
                .hypervisor
                .map(|h| h.info().display)
                .unwrap_or("unknown");
            write!(
                f,
                "signature {} at {:#x} ({name}), leaves to {:#x}",
                Sig(&found.signature),
                found.base,
                found.max_leaf
            )?;
            if found.bounded() {
                write!(
                    f,
                    " (reported {:#x}, bounded to its block)",
                    found.reported_max
                )?;
            }
            writeln!(f)?;
        }
        if self.others > 0 {
            writeln!(f, "{} more answer(s) in the hypervisor leaves ignored (unprintable or beyond {MAX_FOUND})", self.others)?;
        }
        if let Some((probe, answered)) = self.probed {
            writeln!(
                f,
                "probe {probe}: {}",
                if answered { "answered" } else { "no answer" }
            )?;
        }
        match self.chosen {
            None if self.hypervisor_bit => writeln!(
                f,
                "chosen: native (a hypervisor is present, but its interface is not one pvi knows)"
            ),
            None => writeln!(f, "chosen: native (no hypervisor)"),
            Some(c) => {
                let info = c.info();
                match c.how {
                    How::Signature => writeln!(f, "chosen: {} (signature at {:#x})", info.name, c.base),
                    How::Stacked { over } => writeln!(
                        f,
                        "chosen: {} at {:#x}, over {} at a lower base (the interface it offers for other guests)",
                        info.name,
                        c.base,
                        over.name()
                    ),
                    How::Probe { version } => writeln!(f, "chosen: {} (probe answered, version {version})", info.name),
                    How::Entry { note } => writeln!(f, "chosen: {} (the kernel came in through its {note} entry)", info.name),
                }
            }
        }
    }
}
