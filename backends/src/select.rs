//! The run-time choice: detection, `pvi.backend=`, the backend, per-CPU
//! setup, and a report of which mechanism serves each op.

use crate::percpu::MAX_CPUS;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use pvi_sdk::detect::{backend_override, withdraw_requests, Choice, Detection, How};
use pvi_sdk::generated::ops::{Op, OPS};
use pvi_sdk::generated::{Hypervisor, HYPERVISORS};
use pvi_sdk::types::{ErrorKind, ErrorOrigin, PvError};

pub use crate::registry::{Backend, COMPILED_IN};

/// The backend [`select`] chose, for the patched call sites of
/// [`crate::direct`], which jump to its routines. Nothing else reads it:
/// a native routine that needs the serving backend's clock is handed that
/// backend (the IDL's `uses`), so a kernel that picks its backend at
/// compile time never needs this.
static ACTIVE: spin::Once<Backend> = spin::Once::new();

/// The backend in use, once [`select`] has chosen.
pub fn active() -> Option<&'static Backend> {
    ACTIVE.get()
}

/// What `pvi.backend=` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Override {
    /// Not given.
    None,
    /// Followed.
    Followed(&'static str),
    /// Ignored: it names a hypervisor detection did not find (its calls
    /// would fault).
    NotFound(&'static str),
    /// Ignored: neither `native` nor a hypervisor of the interface.
    Unknown,
    /// Ignored: that backend is not in this build.
    NotBuilt(&'static str),
}

/// What `pvi.withdraw=` did: the steps withdrawn on request (as rows of
/// `OPS` and step numbers; up to [`Requested::MAX`]), and how many items
/// were ignored (no such op, not `OP:STEP`, or beyond the maximum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requested {
    withdrawn: [Option<(Op, usize)>; Requested::MAX],
    count: usize,
    /// Items ignored.
    pub ignored: usize,
}

impl Requested {
    /// How many requests are kept.
    pub const MAX: usize = 16;

    /// Withdraw what `cmdline`'s `pvi.withdraw=` asks, logging each as a
    /// fallback of kind `Unsupported` from pvi itself.
    fn follow(cmdline: &str) -> Requested {
        let mut done = Requested::default();
        for request in withdraw_requests(cmdline) {
            let found = request.ok().and_then(|(op, step)| {
                let op = Op::from_name(op)?;
                (step <= 8).then_some((op, step))
            });
            match found {
                Some((op, step)) if done.count < Self::MAX => {
                    let why = PvError::new(ErrorKind::Unsupported, ErrorOrigin::Native);
                    crate::withdrawn::withdraw(op, step, why);
                    done.withdrawn[done.count] = Some((op, step));
                    done.count += 1;
                }
                _ => done.ignored += 1,
            }
        }
        done
    }

    /// The steps withdrawn on request: (op, step).
    pub fn steps(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        self.withdrawn
            .iter()
            .flatten()
            .map(|&(op, step)| (op.name(), step))
    }
}

/// What an event upcall brought ([`Selection::upcall_interrupt`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upcall {
    /// The paravirtual timer fired (Xen's `VIRQ_TIMER` on this vCPU).
    pub timer: bool,
    /// The vectors of IPIs that came as events (Xen PV's `send_ipi`),
    /// one bit per vector: handle each as if it had arrived on its own.
    pub ipi_vectors: [u64; 4],
}

impl Upcall {
    /// The IPI vectors that came, lowest first: the set bits only (an
    /// upcall handler runs this on every event).
    pub fn ipis(&self) -> impl Iterator<Item = u8> + '_ {
        self.ipi_vectors
            .iter()
            .enumerate()
            .flat_map(|(word, &bits)| {
                let mut left = bits;
                core::iter::from_fn(move || {
                    let bit = (left != 0).then(|| left.trailing_zeros())?;
                    left &= left - 1;
                    Some((word as u32 * 64 + bit) as u8)
                })
            })
    }
}

/// The outcome of [`select`].
pub struct Selection {
    /// The backend.
    pub backend: &'static Backend,
    /// What detection saw.
    pub detection: Detection,
    /// The choice the backend was built for.
    pub choice: Option<Choice>,
    /// What `pvi.backend=` did.
    pub override_: Override,
    /// What `pvi.withdraw=` did.
    pub requested: Requested,
}

/// Choose and build the backend for what `detection` found and `cmdline`
/// asks. A hypervisor detection found but this build left out is served
/// natively.
///
/// # Safety
///
/// At the kernel's privilege (ring 0; ring 3 for a Xen PV kernel), on the
/// boot CPU, once, after [`crate::platform::install`]:
/// building a backend writes the hypervisor's setup MSRs.
pub unsafe fn select(detection: Detection, cmdline: &str) -> Selection {
    let mut choice = detection.chosen;
    let mut override_ = Override::None;
    if let Some(name) = backend_override(cmdline) {
        override_ = Override::Unknown;
        if name == "native" {
            choice = None;
            override_ = Override::Followed("native");
        } else if let Some(id) = Hypervisor::named(name) {
            override_ = Override::NotFound(id.name());
            if !crate::registry::BUILT.contains(&id) {
                override_ = Override::NotBuilt(id.name());
            } else if let Some(found) = detection.found().find(|f| f.hypervisor == Some(id)) {
                let how = detection
                    .chosen
                    .filter(|c| c.hypervisor == id)
                    .map(|c| c.how)
                    .unwrap_or(How::Signature);
                choice = Some(Choice {
                    hypervisor: id,
                    base: found.base,
                    how,
                });
                override_ = Override::Followed(id.name());
            } else if detection.chosen.is_some_and(|c| c.hypervisor == id) {
                override_ = Override::Followed(id.name());
            }
        }
    }
    // SAFETY: `choice` is what detection found (chosen, or taken by the
    // override); the caller guarantees the kernel's privilege, boot CPU,
    // once.
    let backend = unsafe { crate::registry::build(choice) };
    let choice = if matches!(backend, Backend::Native) {
        None
    } else {
        choice
    };
    // A second call keeps the first backend: the hypervisor's setup MSRs
    // were written once, for it.
    let backend = ACTIVE.call_once(|| backend);
    // After the backend, which may withdraw steps of its own at setup.
    let requested = Requested::follow(cmdline);
    Selection {
        backend,
        detection,
        choice,
        override_,
        requested,
    }
}

/// A CPU whose index is beyond the per-CPU records the backends keep
/// ([`MAX_CPUS`]): registering it would share a record (a clock the
/// hypervisor writes) with another CPU, so it is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeyondCapacity {
    /// The CPU's index (the platform's `cpu_index`).
    pub cpu: usize,
    /// How many CPUs the backends keep records for.
    pub capacity: usize,
}

impl fmt::Display for BeyondCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CPU {} is beyond the {} CPUs pvi's backends keep per-CPU records for (pvi_backends::percpu::MAX_CPUS); it must not use the ops",
            self.cpu, self.capacity
        )
    }
}

/// Why [`Selection::init_cpu`] refused a CPU, which must then not use the
/// ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuRefused {
    /// Its index is beyond what the backends keep records for.
    BeyondCapacity(BeyondCapacity),
    /// The hypervisor keeps the boot CPU's per-CPU structure in its CPU
    /// area, where the hot sites' inline forms reach it through GS, but
    /// not this CPU's: on this CPU a patched `irq_disable` would mask
    /// nothing.
    NoCpuArea {
        /// The CPU's index.
        cpu: usize,
    },
}

impl fmt::Display for CpuRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuRefused::BeyondCapacity(b) => b.fmt(f),
            CpuRefused::NoCpuArea { cpu } => write!(
                f,
                "CPU {cpu}: the hypervisor would not keep its per-CPU structure in its CPU area (see the setup log), where the patched hot sites reach it; it must not use the ops"
            ),
        }
    }
}

impl From<BeyondCapacity> for CpuRefused {
    fn from(b: BeyondCapacity) -> Self {
        CpuRefused::BeyondCapacity(b)
    }
}

/// `Ok` for a CPU index the backends keep records for.
pub fn check_capacity(cpu: usize) -> Result<(), BeyondCapacity> {
    if cpu < MAX_CPUS {
        Ok(())
    } else {
        Err(BeyondCapacity {
            cpu,
            capacity: MAX_CPUS,
        })
    }
}

impl Selection {
    /// Register this CPU's shared records with the hypervisor (kvmclock,
    /// steal time, PV EOI, runstate, Xen PV's vcpu_info in its CPU area).
    /// Call it on every CPU, the boot CPU included, before it uses the ops.
    /// A CPU beyond the backends' capacity, or one whose per-CPU structure
    /// the hot sites' inline forms would miss, is refused, and must be left
    /// out (not use the ops).
    pub fn init_cpu(&self) -> Result<(), CpuRefused> {
        let cpu = crate::platform::get().map_or(0, |p| p.cpu_index());
        check_capacity(cpu)?;
        if let Some(backend) = crate::registry::hooks(self.backend) {
            backend.init_cpu();
            if backend.cpu_area_in_use() && !backend.cpu_area_here() {
                return Err(CpuRefused::NoCpuArea { cpu });
            }
        }
        Ok(())
    }

    /// The kernel's timer-vector handler calls this before its EOI: it
    /// acknowledges what the hypervisor wants acknowledged there (under Xen
    /// whose upcall shares the timer's vector, the event channel, without
    /// which no further timer event is sent) and counts the interrupt for
    /// [`check_timer`](Self::check_timer).
    pub fn timer_interrupt(&self) {
        if let Some(count) = TIMER_INTERRUPTS.get(crate::platform::cpu_index()) {
            count.fetch_add(1, Relaxed);
        }
        if let Some(backend) = crate::registry::hooks(self.backend) {
            backend.timer_interrupt();
        }
    }

    /// The kernel's upcall-vector handler ([`Vectors::upcall`](crate::platform::Vectors::upcall))
    /// calls this before its EOI: it acknowledges the events the hypervisor
    /// delivered and says which arrived. When `timer` is set the
    /// paravirtual timer fired: do the timer's work (this has already done
    /// what [`timer_interrupt`](Self::timer_interrupt) would, and counted
    /// it for [`check_timer`](Self::check_timer)).
    pub fn upcall_interrupt(&self) -> Upcall {
        let upcall = crate::registry::hooks(self.backend)
            .map(|backend| backend.upcall_interrupt())
            .unwrap_or_default();
        if upcall.timer {
            if let Some(count) = TIMER_INTERRUPTS.get(crate::platform::cpu_index()) {
                count.fetch_add(1, Relaxed);
            }
        }
        upcall
    }

    /// The guest's memory map from the hypervisor (Xen's
    /// `XENMEM_memory_map`), into `regions`: how many entries it wrote.
    /// `None` natively or where the hypervisor has no such call. For a
    /// loader that gave no map (Xen 4.17 gives a PVH dom0 none).
    pub fn memory_map(
        &self,
        regions: &mut [crate::platform::MemoryRegion],
    ) -> Option<Result<usize, PvError>> {
        crate::registry::hooks(self.backend)?.memory_map(regions)
    }

    /// Before powering off: wait (bounded) until the hypervisor's console
    /// reader (Xen's xenconsoled) has read everything written, so that the
    /// last lines are not lost with the domain; whether it has.
    pub fn flush_console(&self) -> bool {
        crate::registry::hooks(self.backend).is_none_or(|backend| backend.flush_console())
    }

    /// Whether the hypervisor has written CPU `cpu`'s own per-CPU record
    /// (kvmclock, Xen's runstate area); `None` where the backend keeps no
    /// such record.
    pub fn cpu_record_written(&self, cpu: usize) -> Option<bool> {
        crate::registry::hooks(self.backend)?.cpu_record_written(cpu)
    }

    /// Attempts the backend's shared clock record took over `reads` reads
    /// on this CPU (kvmclock's version protocol); `None` without one.
    pub fn clock_attempts(&self, reads: u32) -> Option<u64> {
        crate::registry::hooks(self.backend)?.clock_attempts(reads)
    }

    /// Check that the timer `timer_oneshot` arms really interrupts, as
    /// Linux's timer_irq_works() does at boot: arm it 1 ms ahead, enable
    /// interrupts and watch the clock (spinning, never halting) for
    /// [`TIMER_SILENCE_NS`]. A paravirtual timer that stays silent is
    /// withdrawn, with `timer_cancel`'s paravirtual step, and the native
    /// timer is checked in its place. Call it on the boot CPU once the
    /// timer vector's handler calls [`timer_interrupt`](Self::timer_interrupt);
    /// interrupts are disabled again on return.
    pub fn check_timer(&self) -> TimerCheck {
        let calibrating = !crate::native::lapic::calibrated();
        let mut first = self.timer_fires();
        // The native timer's first arm measures its rate against the
        // serving clock (10 ms), and so fires late by that: time a second
        // arm for the timer's own lateness, and report both.
        let mut calibration_late_ns = None;
        if calibrating && crate::native::lapic::calibrated() {
            if let Ok(late) = first {
                calibration_late_ns = Some(late);
                first = self.timer_fires();
            }
        }
        // After the first arm: reading the clock may have withdrawn the
        // timer steps (a Xen time record stuck mid-update).
        let planned = self.serving(Op::TimerOneshot);
        match (first, planned) {
            (Ok(late_ns), _) => TimerCheck::Fires {
                planned,
                late_ns,
                calibration_late_ns,
            },
            (Err(silence), Some((step, text))) => {
                let why = PvError::new(ErrorKind::Failed, ErrorOrigin::Native);
                crate::withdrawn::withdraw(Op::TimerOneshot, step, why);
                if let Some((cancel, _)) = self.serving(Op::TimerCancel) {
                    crate::withdrawn::withdraw(Op::TimerCancel, cancel, why);
                }
                TimerCheck::Withdrawn {
                    step,
                    text,
                    silence,
                    native: self.timer_fires(),
                }
            }
            (Err(silence), None) => TimerCheck::Silent(silence),
        }
    }

    /// Arm the timer 1 ms ahead and wait with interrupts enabled: how late
    /// its interrupt came (ns), or why none did.
    fn timer_fires(&self) -> Result<u64, Silence> {
        use pvi_sdk::PvOps;
        let b = self.backend;
        let Some(count) = TIMER_INTERRUPTS.get(crate::platform::cpu_index()) else {
            return Err(Silence::NotCounted);
        };
        let before = count.load(Relaxed);
        let deadline = b.clock_ns().0.saturating_add(1_000_000);
        b.timer_oneshot(pvi_sdk::types::Nanos(deadline))
            .map_err(Silence::Arm)?;
        b.irq_enable();
        let give_up = deadline.saturating_add(TIMER_SILENCE_NS);
        let result = loop {
            let now = b.clock_ns().0;
            if count.load(Relaxed) != before {
                break Ok(now.saturating_sub(deadline));
            }
            if now > give_up {
                break Err(Silence::NoInterrupt);
            }
            core::hint::spin_loop();
        };
        b.irq_disable();
        if result.is_err() {
            b.timer_cancel();
        }
        result
    }

    /// The paravirtual step serving `op` now: the planned one, unless that
    /// is native or has been withdrawn (`None`: native).
    pub fn serving(&self, op: Op) -> Option<(usize, &'static str)> {
        self.planned(op)
            .filter(|&(step, text)| text != "native" && !crate::withdrawn::is_withdrawn(op, step))
    }

    /// The step `op`'s chain starts with on the active backend, as its
    /// features select (number from 1, IDL text); `None` natively or for an
    /// op the hypervisor does not map.
    pub fn planned(&self, op: Op) -> Option<(usize, &'static str)> {
        crate::registry::planned(self.backend, op)
    }
}

/// How long [`Selection::check_timer`] waits past the deadline before it
/// calls a timer silent: far beyond the lateness of any working timer seen
/// (5 ms on nested KVM), short enough not to slow a boot noticeably.
pub const TIMER_SILENCE_NS: u64 = 100_000_000;

/// Timer interrupts taken per CPU, counted by [`Selection::timer_interrupt`].
static TIMER_INTERRUPTS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Why no timer interrupt came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// `timer_oneshot` refused the deadline.
    Arm(PvError),
    /// Armed, but no interrupt within [`TIMER_SILENCE_NS`] of the deadline.
    NoInterrupt,
    /// This CPU's index is beyond what is counted.
    NotCounted,
}

impl fmt::Display for Silence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Silence::Arm(e) => write!(f, "timer_oneshot refused the deadline ({e:?})"),
            Silence::NoInterrupt => write!(
                f,
                "armed, but no interrupt within {} ms of the deadline",
                TIMER_SILENCE_NS / 1_000_000
            ),
            Silence::NotCounted => write!(f, "this CPU's interrupts are not counted"),
        }
    }
}

/// What [`Selection::check_timer`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerCheck {
    /// The timer interrupted, `late_ns` after its deadline; `planned` is
    /// the paravirtual step that served it (`None`: native).
    Fires {
        /// Step number and IDL text.
        planned: Option<(usize, &'static str)>,
        /// Lateness.
        late_ns: u64,
        /// How late the first arm fired, when it measured the native
        /// timer's rate (and `late_ns` is a second arm's).
        calibration_late_ns: Option<u64>,
    },
    /// Paravirtual step `step` stayed silent and was withdrawn; `native`
    /// is how the native timer did in its place.
    Withdrawn {
        /// The step withdrawn.
        step: usize,
        /// Its IDL text.
        text: &'static str,
        /// Why it was withdrawn.
        silence: Silence,
        /// The native timer's check.
        native: Result<u64, Silence>,
    },
    /// The native timer itself stayed silent: nothing to fall back to.
    Silent(Silence),
}

impl fmt::Display for TimerCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerCheck::Fires {
                planned,
                late_ns,
                calibration_late_ns,
            } => {
                match planned {
                    Some((step, text)) => write!(f, "timer: step {step} ({text}) fires,")?,
                    None => write!(f, "timer: native, fires")?,
                }
                write!(f, " {} us after its deadline", late_ns / 1_000)?;
                match calibration_late_ns {
                    Some(first) => write!(
                        f,
                        " (the first arm, which measured the native timer's rate against \
                         clock_ns, fired {} us late)",
                        first / 1_000
                    ),
                    None => Ok(()),
                }
            }
            TimerCheck::Withdrawn {
                step,
                text,
                silence,
                native,
            } => {
                write!(f, "timer: step {step} ({text}) {silence}: withdrawn; ")?;
                match native {
                    Ok(late) => write!(
                        f,
                        "the native timer fires, {} us after its deadline",
                        late / 1_000
                    ),
                    Err(why) => write!(f, "the native timer too: {why}"),
                }
            }
            TimerCheck::Silent(why) => write!(f, "timer: native, {why}"),
        }
    }
}

impl fmt::Display for Selection {
    /// The boot report: detection, the backend and why, and for every op
    /// the mechanism that serves it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.detection)?;
        match self.override_ {
            Override::None => {}
            Override::Followed(name) => writeln!(f, "pvi.backend={name}: followed")?,
            Override::NotFound(name) => writeln!(
                f,
                "pvi.backend={name}: ignored (detection did not find it: its calls would fault)"
            )?,
            Override::Unknown => {
                write!(f, "pvi.backend=: ignored (the backends are native")?;
                for h in HYPERVISORS {
                    write!(f, ", {}", h.name)?;
                }
                writeln!(f, ")")?;
            }
            Override::NotBuilt(name) => writeln!(
                f,
                "pvi.backend={name}: ignored (that backend is not in this build)"
            )?,
        }
        for (op, step) in self.requested.steps() {
            writeln!(f, "pvi.withdraw={op}:{step}: followed")?;
        }
        if self.requested.ignored > 0 {
            writeln!(
                f,
                "pvi.withdraw=: {} item(s) ignored (each must be OP:STEP, an op of the interface and a step from 1 to 8; at most {})",
                self.requested.ignored,
                Requested::MAX
            )?;
        }
        if let Some(c) = self.detection.chosen {
            if !crate::registry::BUILT.contains(&c.hypervisor) {
                writeln!(f, "{} is not in this build: served natively", c.info().name)?;
            }
        }
        writeln!(f, "backend: {}", self.backend.name())?;
        #[cfg(feature = "xen")]
        if let Backend::Xen(x) = self.backend {
            if let Some((major, minor, _)) = x.0.version() {
                writeln!(
                    f,
                    "xen version: {major}.{minor} (steps the IDL marks @hv_since a newer Xen are not tried)"
                )?;
            }
            if x.0.hardware_domain() {
                writeln!(
                    f,
                    "xen: this is the hardware domain (XENFEAT_dom0): Xen halts rather than powers off the machine on its SCHEDOP_shutdown(poweroff), so power-off is ACPI S5"
                )?;
            }
        }
        for (&id, op) in Op::ALL.iter().zip(OPS) {
            match self.planned(id) {
                Some((step, text)) if crate::withdrawn::is_withdrawn(id, step) => writeln!(
                    f,
                    "  {:<18} step {step} withdrawn at run time ({text}): the chain falls back past it",
                    op.name
                )?,
                Some((_, "native")) => writeln!(
                    f,
                    "  {:<18} native (its paravirtual steps' features are absent, or need a newer hypervisor)",
                    op.name
                )?,
                Some((step, text)) => writeln!(f, "  {:<18} step {step}: {text}", op.name)?,
                None => writeln!(f, "  {:<18} native", op.name)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod upcall_tests {
    use super::Upcall;

    #[test]
    fn the_ipi_vectors_come_out_lowest_first() {
        let upcall = Upcall {
            timer: false,
            ipi_vectors: [1 << 3 | 1 << 63, 0, 1, 1 << 63],
        };
        let mut vectors = upcall.ipis();
        for expected in [3, 63, 128, 255] {
            assert_eq!(vectors.next(), Some(expected));
        }
        assert_eq!(vectors.next(), None);
        assert_eq!(Upcall::default().ipis().count(), 0);
    }
}
