//! An in-process hypervisor for the stub conformance tests.
//!
//! A stub enters "the hypervisor" by a trapping instruction: `ud2` (SIGILL;
//! the trapping twin of `vmcall`/`vmmcall`, or the trampolines of a
//! hypercall page) or the VMware backdoor's `in eax, dx` (SIGSEGV in user
//! mode). The signal handler plays the hypervisor: it records the register
//! file from the `ucontext`, writes the prepared responses into the result
//! registers, scrambles the registers the real hypervisor may change, and
//! steps `rip` past the instruction.
//!
//! The handler touches only atomics. Tests serialize on [`lock`].

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, Once};

/// The general-purpose registers by name, with their `gregs` index.
pub const REGISTERS: &[(&str, libc::c_int)] = &[
    ("rax", libc::REG_RAX),
    ("rbx", libc::REG_RBX),
    ("rcx", libc::REG_RCX),
    ("rdx", libc::REG_RDX),
    ("rsi", libc::REG_RSI),
    ("rdi", libc::REG_RDI),
    ("rbp", libc::REG_RBP),
    ("rsp", libc::REG_RSP),
    ("r8", libc::REG_R8),
    ("r9", libc::REG_R9),
    ("r10", libc::REG_R10),
    ("r11", libc::REG_R11),
    ("r12", libc::REG_R12),
    ("r13", libc::REG_R13),
    ("r14", libc::REG_R14),
    ("r15", libc::REG_R15),
];

fn index(reg: &str) -> libc::c_int {
    REGISTERS
        .iter()
        .find(|(n, _)| *n == reg)
        .unwrap_or_else(|| panic!("unknown register {reg}"))
        .1
}

const GREGS: usize = 23;
static CAPTURED: [AtomicU64; GREGS] = [const { AtomicU64::new(0) }; GREGS];
static RESULT_REGS: [AtomicI32; 8] = [const { AtomicI32::new(-1) }; 8];
static RESPONSES: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static SCRAMBLE: [AtomicI32; 16] = [const { AtomicI32::new(-1) }; 16];
static TRAPS: AtomicUsize = AtomicUsize::new(0);

/// What the hypervisor answers: values for the result registers, in order,
/// and registers it may change (filled with garbage).
pub struct Behaviour<'a> {
    /// Result registers, in the convention's order.
    pub results: &'a [&'a str],
    /// The values to return in them.
    pub responses: &'a [u64],
    /// Registers the hypervisor may change besides the results.
    pub scrambles: &'a [&'a str],
}

/// The registers as the hypervisor saw them at the last trap.
pub struct Seen {
    gregs: [u64; GREGS],
}

impl Seen {
    /// The value of `reg` at the trap.
    pub fn reg(&self, reg: &str) -> u64 {
        self.gregs[index(reg) as usize]
    }

    /// Where the trapping instruction was.
    pub fn rip(&self) -> u64 {
        self.gregs[libc::REG_RIP as usize]
    }
}

extern "C" fn on_trap(sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler,
    // and nothing else refers to it while the handler runs.
    let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
    let rip = gregs[libc::REG_RIP as usize] as *const u8;
    // SAFETY: rip points at the instruction that trapped, which is mapped
    // and readable (it was just fetched); `ud2` is two bytes long.
    let (b0, b1) = unsafe { (*rip, *rip.add(1)) };
    let length = match (sig, b0, b1) {
        (libc::SIGILL, 0x0f, 0x0b) => 2,
        (libc::SIGSEGV, 0xed, _) => 1,
        _ => {
            // Not ours: let the default action happen (the instruction
            // traps again and the test process dies, loudly).

            // SAFETY: restoring the default disposition is always allowed.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
            return;
        }
    };
    for (i, slot) in CAPTURED.iter().enumerate() {
        slot.store(gregs[i] as u64, SeqCst);
    }
    for slot in &SCRAMBLE {
        let r = slot.load(SeqCst);
        if r >= 0 {
            gregs[r as usize] = (0xdead_0000_0000_0000u64 | r as u64) as i64;
        }
    }
    for (reg, value) in RESULT_REGS.iter().zip(&RESPONSES) {
        let r = reg.load(SeqCst);
        if r >= 0 {
            gregs[r as usize] = value.load(SeqCst) as i64;
        }
    }
    gregs[libc::REG_RIP as usize] += length;
    TRAPS.fetch_add(1, SeqCst);
}

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGILL, libc::SIGSEGV] {
            // SAFETY: a zeroed sigaction is a valid starting point; the
            // handler has the SA_SIGINFO signature and touches only atomics.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_trap
                    as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                    as usize;
                action.sa_flags = libc::SA_SIGINFO;
                libc::sigemptyset(&mut action.sa_mask);
                assert_eq!(libc::sigaction(sig, &action, std::ptr::null_mut()), 0);
            }
        }
    });
}

static LOCK: Mutex<()> = Mutex::new(());

/// Exclusive use of the emulator for one test.
pub fn lock() -> MutexGuard<'static, ()> {
    install();
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `call`, which must trap exactly once, with the hypervisor behaving
/// as `behaviour` says; return what the hypervisor saw and what `call`
/// returned.
pub fn trap<T>(behaviour: &Behaviour, call: impl FnOnce() -> T) -> (Seen, T) {
    for (slot, reg) in RESULT_REGS.iter().zip(
        behaviour
            .results
            .iter()
            .map(Some)
            .chain(std::iter::repeat(None)),
    ) {
        slot.store(reg.map(|r| index(r)).unwrap_or(-1), SeqCst);
    }
    for (slot, value) in RESPONSES
        .iter()
        .zip(behaviour.responses.iter().chain(std::iter::repeat(&0)))
    {
        slot.store(*value, SeqCst);
    }
    for (slot, reg) in SCRAMBLE.iter().zip(
        behaviour
            .scrambles
            .iter()
            .map(Some)
            .chain(std::iter::repeat(None)),
    ) {
        slot.store(reg.map(|r| index(r)).unwrap_or(-1), SeqCst);
    }
    let before = TRAPS.load(SeqCst);
    let out = call();
    let traps = TRAPS.load(SeqCst) - before;
    assert_eq!(traps, 1, "the stub trapped {traps} times, expected once");
    let mut gregs = [0u64; GREGS];
    for (g, slot) in gregs.iter_mut().zip(&CAPTURED) {
        *g = slot.load(SeqCst);
    }
    (Seen { gregs }, out)
}

/// An executable page of hypercall trampolines, `ud2; ret` every `stride`
/// bytes (or once, at the start, for stride 0).
pub struct Page {
    base: *mut u8,
}

impl Page {
    /// A page of trampolines.
    pub fn new(stride: usize) -> Page {
        // SAFETY: an anonymous private mapping of one page; the result is
        // checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap failed");
        let base = base.cast::<u8>();
        // SAFETY: the page is ours, 4096 bytes, writable.
        let page = unsafe { std::slice::from_raw_parts_mut(base, 4096) };
        page.fill(0xcc);
        let step = if stride == 0 { 4096 } else { stride };
        for slot in page.chunks_mut(step) {
            slot[..3].copy_from_slice(&[0x0f, 0x0b, 0xc3]);
        }
        let read_execute = libc::PROT_READ | libc::PROT_EXEC;
        // SAFETY: same page, now read + execute.
        let protected = unsafe { libc::mprotect(base.cast(), 4096, read_execute) };
        assert_eq!(protected, 0, "mprotect failed");
        Page { base }
    }

    /// The page's address.
    pub fn base(&self) -> *const u8 {
        self.base
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: unmapping the page this value mapped; no stub holds it
        // any more.
        unsafe { libc::munmap(self.base.cast(), 4096) };
    }
}
