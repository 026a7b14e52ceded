//! VM exits per op on the real Xen, from Xen's own trace buffers.
//!
//! Xen records every `#VMEXIT` of an HVM or PVH guest in its trace buffers
//! (`TRC_HVM_VMEXIT64`: the exit code and the guest's rip), and the CPUID
//! leaf of every CPUID exit (`TRC_HVM_CPUID`). `xentrace` in the dom0
//! copies the buffers to a file. The example kernel's `exits.markers` mode
//! brackets each measured call with a CPUID of [`MARK_LEAF`], the marker's
//! number in the subleaf, and prints which markers opened which key's
//! calls (`exits marks key=… at=n,…`). The exits Xen recorded between
//! marker n's exit and marker n + 1's are what the call cost; the two
//! markers' own exits are not counted.
//!
//! A PV guest has no VM exits: it enters Xen by a hypercall (`syscall`
//! through the hypercall page) or by a fault Xen handles for it, and Xen's
//! PV trace class records each such entry (`TRC_PV_ENTRY`: the hypercall
//! with some of its arguments, the privileged instruction Xen emulated,
//! the fault it fixed up or passed on). A CPUID does not trap there, so
//! the kernel's PV marker is a hypercall whose recorded arguments carry
//! the marker: `VCPUOP` [`MARK_LEAF`] for vCPU n, a command no Xen knows
//! (`-ENOENT` or `-ENOSYS`, nothing done), of which `__trace_hypercall`
//! records the command and the vCPU. An interrupt that takes the physical
//! CPU from the guest leaves no PV record: a PV count is of the entries
//! the guest's own instructions made.
//!
//! The file is a run of windows, each a `cpu_change` record (the physical
//! CPU and the window's length in bytes) followed by that CPU's records
//! (`struct t_rec`, `xen/include/public/trace.h`; `tools/xentrace`). The
//! measured vCPU is pinned to one physical CPU, whose windows are read in
//! file order; HVM records there are that vCPU's alone, since the dom0 is a
//! PV guest and records none.
//!
//! Exit codes are AMD SVM's (`xen/arch/x86/include/asm/hvm/svm/vmcb.h`):
//! the only hardware virtualization QEMU's TCG emulates, under which the
//! real Xen runs here. A trace with VMX exits would be misread, so a
//! VMX-only code is not guessed at: kinds other than the five counted
//! (and `rdtsc`, which Xen intercepts when it emulates the TSC) count in
//! `all` only.

use std::collections::BTreeMap;

/// The CPUID leaf of a marker (ASCII "PVMK"): no vendor defines it, and
/// Xen answers it with zeros.
pub const MARK_LEAF: u32 = 0x5056_4d4b;

/// `TRC_TRACE_CPU_CHANGE`: xentrace's window header.
const TRC_TRACE_CPU_CHANGE: u32 = 0x0001_f003;
/// `TRC_LOST_RECORDS`: Xen dropped records (a full buffer).
const TRC_LOST_RECORDS: u32 = 0x0001_f001;
/// `TRC_HVM_VMEXIT` and its 64-bit form (`TRC_64_FLAG`, 0x100).
const TRC_HVM_VMEXIT: u32 = 0x0008_1002;
const TRC_HVM_VMEXIT64: u32 = 0x0008_1102;
/// `TRC_HVM_NESTEDFLAG`, set on exits from a nested guest.
const TRC_HVM_NESTEDFLAG: u32 = 0x0000_4000;
/// `TRC_HVM_CPUID`: leaf, subleaf, then the four results.
const TRC_HVM_CPUID: u32 = 0x0008_200e;

/// `TRC_PV_ENTRY`'s subclass: every record of a PV guest's entry into Xen
/// (`TRC_64_FLAG` set or not).
const TRC_PV_ENTRY: u32 = 0x0020_1000;
/// `TRC_PV_HYPERCALL` and `TRC_PV_HYPERCALL_V2` (the hypercall's number,
/// with flags above bit 20 saying which arguments follow).
const TRC_PV_HYPERCALL: u32 = 0x0020_1001;
const TRC_PV_HYPERCALL_V2: u32 = 0x0020_100d;
/// `TRC_PV_HYPERCALL_V2_ARG_MASK`: the argument flags in its first word.
const TRC_PV_HYPERCALL_V2_ARG_MASK: u32 = 0xfff0_0000;
/// `TRC_PV_EMULATE_PRIVOP`: a privileged instruction Xen emulated after
/// its #GP (`in`, `out`, `rdmsr`, `rdtsc` where Xen emulates the TSC).
const TRC_PV_EMULATE_PRIVOP: u32 = 0x0020_1006;
/// `TRC_64_FLAG`: the record's addresses are 64-bit.
const TRC_64_FLAG: u32 = 0x100;
/// `__HYPERVISOR_vcpu_op`, the PV marker's hypercall.
const HYPERVISOR_VCPU_OP: u32 = 24;

/// SVM exit codes of the kinds counted apart.
const VMEXIT_CPUID: u32 = 0x72;
const VMEXIT_IOIO: u32 = 0x7b;
const VMEXIT_MSR: u32 = 0x7c;
const VMEXIT_VMMCALL: u32 = 0x81;
const VMEXIT_NPF: u32 = 0x400;
/// `VMEXIT_RDTSC`: Xen intercepts `rdtsc` when it emulates the TSC (its
/// default where the host's TSC is not invariant, as under TCG).
const VMEXIT_RDTSC: u32 = 0x6e;

/// One trace record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The physical CPU whose buffer held it.
    pub cpu: u32,
    /// The event number (28 bits).
    pub event: u32,
    /// Its data words.
    pub data: Vec<u32>,
}

/// Why a trace file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Every record of a xentrace file, window by window, in file order.
pub fn records(file: &[u8]) -> Result<Vec<Record>, Malformed> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let header =
            word(file, at).ok_or_else(|| Malformed(format!("a partial word at byte {at}")))?;
        if header & 0x0fff_ffff != TRC_TRACE_CPU_CHANGE {
            return Err(Malformed(format!(
                "byte {at}: {header:#010x} where a cpu_change record should start a window"
            )));
        }
        let (cpu, size) = match (word(file, at + 4), word(file, at + 8)) {
            (Some(cpu), Some(size)) => (cpu, size as usize),
            _ => return Err(Malformed(format!("byte {at}: a cut cpu_change record"))),
        };
        let start = at + 12;
        let end = start
            .checked_add(size)
            .filter(|&end| end <= file.len())
            .ok_or_else(|| {
                Malformed(format!(
                    "byte {at}: a {size}-byte window past the file's end"
                ))
            })?;
        let mut r = start;
        while r < end {
            let header =
                word(file, r).ok_or_else(|| Malformed(format!("byte {r}: a cut record")))?;
            let extra = ((header >> 28) & 7) as usize;
            let cycles = header >> 31 == 1;
            let data_at = r + 4 + if cycles { 8 } else { 0 };
            let next = data_at + 4 * extra;
            if next > end {
                return Err(Malformed(format!(
                    "byte {r}: a record past its window's end"
                )));
            }
            out.push(Record {
                cpu,
                event: header & 0x0fff_ffff,
                data: (0..extra)
                    .filter_map(|i| word(file, data_at + 4 * i))
                    .collect(),
            });
            r = next;
        }
        at = end;
    }
    Ok(out)
}

/// Exits by kind, in the order of the example kernel's `exits` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exits {
    /// Every exit.
    pub all: u64,
    /// Port I/O (`VMEXIT_IOIO`).
    pub io: u64,
    /// Nested page faults (`VMEXIT_NPF`): MMIO Xen emulates.
    pub mmio: u64,
    /// `VMEXIT_MSR`.
    pub msr: u64,
    /// `VMEXIT_CPUID`.
    pub cpuid: u64,
    /// `VMEXIT_VMMCALL`: hypercalls.
    pub hypercall: u64,
    /// `VMEXIT_RDTSC`: an emulated TSC read.
    pub rdtsc: u64,
    /// A PV guest's privileged instruction Xen emulated.
    pub privop: u64,
}

impl Exits {
    fn add(&mut self, code: u32) {
        self.all += 1;
        match code {
            VMEXIT_IOIO => self.io += 1,
            VMEXIT_NPF => self.mmio += 1,
            VMEXIT_MSR => self.msr += 1,
            VMEXIT_CPUID => self.cpuid += 1,
            VMEXIT_VMMCALL => self.hypercall += 1,
            VMEXIT_RDTSC => self.rdtsc += 1,
            _ => {}
        }
    }

    /// A PV guest's entry, by its record's event (`TRC_64_FLAG` cleared).
    fn add_pv(&mut self, event: u32) {
        self.all += 1;
        match event {
            TRC_PV_HYPERCALL | TRC_PV_HYPERCALL_V2 => self.hypercall += 1,
            TRC_PV_EMULATE_PRIVOP => self.privop += 1,
            _ => {}
        }
    }
}

/// Marker n, if `record` is a PV guest's marker hypercall.
fn pv_marker(event: u32, data: &[u32]) -> Option<u32> {
    match (event, data) {
        (TRC_PV_HYPERCALL_V2, [op, MARK_LEAF, n, ..])
            if op & !TRC_PV_HYPERCALL_V2_ARG_MASK == HYPERVISOR_VCPU_OP =>
        {
            Some(*n)
        }
        _ => None,
    }
}

/// What was measured after one marker, up to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    /// The exits between the two markers.
    Counted(Exits),
    /// Xen lost records in between: not a measurement.
    Lost,
}

/// The exits after each marker on physical CPU `cpu`, by marker number:
/// those between its CPUID exit and the next marker's (for a PV guest,
/// the entries between its marker hypercall and the next).
pub fn intervals(records: &[Record], cpu: u32) -> BTreeMap<u32, Interval> {
    let mut out = BTreeMap::new();
    // The marker the exits belong to, and what they came to so far.
    let mut open: Option<(u32, Interval)> = None;
    // An exit not yet attributed: it may be the next marker's own.
    let mut pending: Option<u32> = None;
    for r in records.iter().filter(|r| r.cpu == cpu) {
        // An exit from a nested guest carries TRC_HVM_NESTEDFLAG.
        let event = if r.event & 0x000f_0000 == 0x0008_0000 {
            r.event & !TRC_HVM_NESTEDFLAG
        } else {
            r.event
        };
        if event & 0xffff_f000 == TRC_PV_ENTRY {
            let event = event & !TRC_64_FLAG;
            match pv_marker(event, &r.data) {
                Some(n) => {
                    if let Some((m, interval)) = open.take() {
                        out.insert(m, interval);
                    }
                    open = Some((n, Interval::Counted(Exits::default())));
                }
                None => {
                    if let Some((_, Interval::Counted(exits))) = &mut open {
                        exits.add_pv(event);
                    }
                }
            }
        } else if event == TRC_LOST_RECORDS {
            if let Some((_, interval)) = &mut open {
                *interval = Interval::Lost;
            }
        } else if event == TRC_HVM_VMEXIT64 || event == TRC_HVM_VMEXIT {
            if let (Some(code), Some((_, Interval::Counted(exits)))) = (pending, &mut open) {
                exits.add(code);
            }
            pending = r.data.first().copied();
        } else if event == TRC_HVM_CPUID && r.data.first() == Some(&MARK_LEAF) {
            // The pending exit is this marker's own CPUID.
            pending = None;
            if let Some((n, interval)) = open.take() {
                out.insert(n, interval);
            }
            if let Some(&n) = r.data.get(1) {
                open = Some((n, Interval::Counted(Exits::default())));
            }
        }
    }
    out
}

/// One key's calls, as the kernel listed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marks {
    /// `<op>/<backend>/<form>` or the hardware's name.
    pub key: String,
    /// The marker opening each call.
    pub at: Vec<u32>,
}

/// The `exits marks key=K at=a,b,…` lines of a guest's log (any prefix,
/// such as Xen's `(d1) `, is skipped).
pub fn marks(log: &str) -> Vec<Marks> {
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find("exits marks key=")? + "exits marks key=".len()..];
            let (key, at) = rest.split_once(" at=")?;
            let at = at
                .trim()
                .split(',')
                .map(|n| n.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some(Marks {
                key: key.to_string(),
                at,
            })
        })
        .collect()
}

/// The line the bench reads for `marks`: the fewest exits over its calls
/// (by `all`), and the most; or why there is none.
pub fn line(marks: &Marks, intervals: &BTreeMap<u32, Interval>) -> String {
    let counted: Vec<Exits> = marks
        .at
        .iter()
        .filter_map(|n| match intervals.get(n) {
            Some(Interval::Counted(e)) => Some(*e),
            _ => None,
        })
        .collect();
    let key = &marks.key;
    let Some(fewest) = counted.iter().min_by_key(|e| e.all) else {
        let lost = marks
            .at
            .iter()
            .any(|n| intervals.get(n) == Some(&Interval::Lost));
        let why = if lost {
            "Xen's trace lost records during every call"
        } else {
            "its markers are not in the trace"
        };
        return format!("exits key={key} skipped: {why}");
    };
    let most = counted.iter().map(|e| e.all).max().unwrap_or(0);
    format!(
        "exits key={key} all={} io={} mmio={} msr={} cpuid={} hypercall={} to_vmm=0 pv_eoi=0 most={most} rdtsc={} privop={}",
        fewest.all, fewest.io, fewest.mmio, fewest.msr, fewest.cpuid, fewest.hypercall, fewest.rdtsc, fewest.privop
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(out: &mut Vec<u8>, event: u32, cycles: bool, data: &[u32]) {
        let header = event | (data.len() as u32) << 28 | u32::from(cycles) << 31;
        out.extend(header.to_le_bytes());
        if cycles {
            out.extend(7u64.to_le_bytes());
        }
        for d in data {
            out.extend(d.to_le_bytes());
        }
    }

    fn window(file: &mut Vec<u8>, cpu: u32, body: &[u8]) {
        rec(file, TRC_TRACE_CPU_CHANGE, false, &[cpu, body.len() as u32]);
        file.extend(body);
    }

    fn exit(body: &mut Vec<u8>, code: u32) {
        rec(body, TRC_HVM_VMEXIT64, true, &[code, 0x1000, 0]);
    }

    fn marker(body: &mut Vec<u8>, n: u32) {
        exit(body, VMEXIT_CPUID);
        rec(body, TRC_HVM_CPUID, false, &[MARK_LEAF, n, 0, 0, 0, 0]);
    }

    #[test]
    fn exits_between_two_markers_are_the_calls_and_not_the_markers() {
        let mut body = Vec::new();
        marker(&mut body, 1);
        marker(&mut body, 2); // nothing in between
        marker(&mut body, 3);
        exit(&mut body, VMEXIT_MSR);
        exit(&mut body, VMEXIT_INTR_FOR_TEST);
        marker(&mut body, 4);
        let mut file = Vec::new();
        window(&mut file, 1, &body);
        let got = intervals(&records(&file).unwrap(), 1);
        assert_eq!(got[&1], Interval::Counted(Exits::default()));
        assert_eq!(
            got[&3],
            Interval::Counted(Exits {
                all: 2,
                msr: 1,
                ..Exits::default()
            })
        );
        assert!(!got.contains_key(&4), "the last marker closes nothing");
    }

    const VMEXIT_INTR_FOR_TEST: u32 = 0x60;

    #[test]
    fn other_cpus_and_windows_are_kept_apart() {
        let mut first = Vec::new();
        marker(&mut first, 1);
        exit(&mut first, VMEXIT_IOIO);
        let mut other = Vec::new();
        exit(&mut other, VMEXIT_VMMCALL);
        let mut second = Vec::new();
        exit(&mut second, VMEXIT_NPF);
        marker(&mut second, 2);
        let mut file = Vec::new();
        window(&mut file, 1, &first);
        window(&mut file, 0, &other);
        window(&mut file, 1, &second);
        let got = intervals(&records(&file).unwrap(), 1);
        assert_eq!(
            got[&1],
            Interval::Counted(Exits {
                all: 2,
                io: 1,
                mmio: 1,
                ..Exits::default()
            })
        );
    }

    #[test]
    fn lost_records_void_the_interval() {
        let mut body = Vec::new();
        marker(&mut body, 1);
        rec(&mut body, TRC_LOST_RECORDS, true, &[5, 0]);
        marker(&mut body, 2);
        exit(&mut body, VMEXIT_MSR);
        marker(&mut body, 3);
        let mut file = Vec::new();
        window(&mut file, 0, &body);
        let got = intervals(&records(&file).unwrap(), 0);
        assert_eq!(got[&1], Interval::Lost);
        let m = Marks {
            key: "eoi/hyperv/runtime".into(),
            at: vec![1, 2],
        };
        assert_eq!(
            line(&m, &got),
            "exits key=eoi/hyperv/runtime all=1 io=0 mmio=0 msr=1 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=1 rdtsc=0 privop=0"
        );
        let only_lost = Marks {
            key: "x".into(),
            at: vec![1],
        };
        assert!(line(&only_lost, &got).contains("lost records"));
        let absent = Marks {
            key: "x".into(),
            at: vec![9],
        };
        assert!(line(&absent, &got).contains("not in the trace"));
    }

    #[test]
    fn the_fewest_call_is_reported_with_the_most() {
        let mut body = Vec::new();
        marker(&mut body, 1);
        exit(&mut body, VMEXIT_MSR);
        exit(&mut body, VMEXIT_INTR_FOR_TEST);
        marker(&mut body, 2);
        marker(&mut body, 3);
        exit(&mut body, VMEXIT_MSR);
        marker(&mut body, 4);
        let mut file = Vec::new();
        window(&mut file, 0, &body);
        let got = intervals(&records(&file).unwrap(), 0);
        let m = Marks {
            key: "lapic_eoi/x2apic".into(),
            at: vec![1, 3],
        };
        assert_eq!(
            line(&m, &got),
            "exits key=lapic_eoi/x2apic all=1 io=0 mmio=0 msr=1 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=2 rdtsc=0 privop=0"
        );
    }

    #[test]
    fn an_emulated_tsc_read_is_named() {
        let mut body = Vec::new();
        marker(&mut body, 1);
        exit(&mut body, VMEXIT_RDTSC);
        marker(&mut body, 2);
        let mut file = Vec::new();
        window(&mut file, 0, &body);
        let m = Marks {
            key: "clock_ns/xen/runtime".into(),
            at: vec![1],
        };
        let got = intervals(&records(&file).unwrap(), 0);
        assert!(line(&m, &got).ends_with(
            "all=1 io=0 mmio=0 msr=0 cpuid=0 hypercall=0 to_vmm=0 pv_eoi=0 most=1 rdtsc=1 privop=0"
        ));
    }

    fn pv_marker_rec(body: &mut Vec<u8>, n: u32) {
        // __trace_hypercall: the op with ARG_32(0) | ARG_32(1), then cmd
        // and vCPU.
        let op = HYPERVISOR_VCPU_OP | 1 << 20 | 1 << 22;
        rec(body, TRC_PV_HYPERCALL_V2, true, &[op, MARK_LEAF, n]);
    }

    #[test]
    fn a_pv_guest_s_entries_between_its_marker_hypercalls_are_counted() {
        let mut body = Vec::new();
        pv_marker_rec(&mut body, 1);
        pv_marker_rec(&mut body, 2);
        // EVTCHNOP_send (__HYPERVISOR_event_channel_op, 32): no args kept.
        rec(&mut body, TRC_PV_HYPERCALL_V2, true, &[32]);
        // A multicall's sub-call is no entry of its own.
        rec(&mut body, 0x0020_200e, true, &[32]);
        // rdtsc emulated after its #GP, at a 64-bit rip.
        rec(
            &mut body,
            TRC_PV_EMULATE_PRIVOP | TRC_64_FLAG,
            true,
            &[0x1000, 0],
        );
        // A vcpu_op that is not a marker (VCPUOP_is_up, vCPU 2).
        rec(
            &mut body,
            TRC_PV_HYPERCALL_V2,
            true,
            &[HYPERVISOR_VCPU_OP | 1 << 20 | 1 << 22, 6, 2],
        );
        pv_marker_rec(&mut body, 3);
        let mut file = Vec::new();
        window(&mut file, 3, &body);
        let got = intervals(&records(&file).unwrap(), 3);
        assert_eq!(got[&1], Interval::Counted(Exits::default()));
        assert_eq!(
            got[&2],
            Interval::Counted(Exits {
                all: 3,
                hypercall: 2,
                privop: 1,
                ..Exits::default()
            })
        );
        let m = Marks {
            key: "send_ipi/xen_pv/runtime".into(),
            at: vec![2],
        };
        assert!(line(&m, &got).ends_with("hypercall=2 to_vmm=0 pv_eoi=0 most=3 rdtsc=0 privop=1"));
    }

    #[test]
    fn marks_lines_are_read_behind_any_prefix() {
        let log = "(d1) exits marks key=clock_ns/xen/runtime at=3,5,7\nexits marks key=tsc at=9\nexits marks key=bad at=1,x\n";
        assert_eq!(
            marks(log),
            [
                Marks {
                    key: "clock_ns/xen/runtime".into(),
                    at: vec![3, 5, 7]
                },
                Marks {
                    key: "tsc".into(),
                    at: vec![9]
                }
            ]
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_panic() {
        assert!(records(&[1, 2, 3]).is_err());
        let mut file = Vec::new();
        rec(&mut file, 0x1234, false, &[]);
        assert!(records(&file).unwrap_err().0.contains("cpu_change"));
        let mut file = Vec::new();
        rec(&mut file, TRC_TRACE_CPU_CHANGE, false, &[0, 400]);
        assert!(records(&file)
            .unwrap_err()
            .0
            .contains("past the file's end"));
        let mut body = Vec::new();
        rec(&mut body, TRC_HVM_CPUID, false, &[MARK_LEAF, 1, 0, 0, 0, 0]);
        let mut file = Vec::new();
        window(&mut file, 0, &body[..body.len() - 4]);
        assert!(records(&file).unwrap_err().0.contains("past its window"));
    }
}
