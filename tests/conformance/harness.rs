//! Proof that a stub leaves the callee-saved registers alone: load known
//! values into rbx, rbp and r12–r15, call the stub through a C-ABI shim,
//! and compare afterwards.

use std::cell::RefCell;

thread_local! {
    static BODY: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
}

extern "C" fn shim() {
    BODY.with(|b| {
        if let Some(f) = b.borrow_mut().as_mut() {
            f();
        }
    });
}

/// Values loaded into the callee-saved registers before the call.
const MARKS: [u64; 6] = [
    0x1111_1111_1111_1111,
    0x2222_2222_2222_2222,
    0x3333_3333_3333_3333,
    0x4444_4444_4444_4444,
    0x5555_5555_5555_5555,
    0x6666_6666_6666_6666,
];

/// Run `body` with rbx, rbp, r12, r13, r14, r15 set to known values and
/// return them as they were after it: equal to [`MARKS`] if nothing
/// clobbered them.
pub fn callee_saved_after(body: impl FnMut() + 'static) -> [u64; 6] {
    BODY.with(|b| *b.borrow_mut() = Some(Box::new(body)));
    let mut after = [0u64; 6];
    let out = after.as_mut_ptr();
    let marks = MARKS.as_ptr();
    // The block saves the six callee-saved registers, loads the marks,
    // calls the shim (six pushes keep the stack 16-byte aligned), stores
    // the registers to `after` (six u64s) and restores them.

    // SAFETY: as just said; every other register the call may change is
    // declared by clobber_abi("C").
    unsafe {
        core::arch::asm!(
            "push rbx", "push rbp", "push r12", "push r13", "push r14", "push r15",
            "push rdi",
            "push rsi",
            "mov rbx, [rsi]", "mov rbp, [rsi + 8]", "mov r12, [rsi + 16]",
            "mov r13, [rsi + 24]", "mov r14, [rsi + 32]", "mov r15, [rsi + 40]",
            "call rax",
            "pop rsi",
            "pop rdi",
            "mov [rdi], rbx", "mov [rdi + 8], rbp", "mov [rdi + 16], r12",
            "mov [rdi + 24], r13", "mov [rdi + 32], r14", "mov [rdi + 40], r15",
            "pop r15", "pop r14", "pop r13", "pop r12", "pop rbp", "pop rbx",
            in("rax") shim as extern "C" fn(),
            in("rdi") out,
            in("rsi") marks,
            clobber_abi("C"),
        );
    }
    BODY.with(|b| *b.borrow_mut() = None);
    after
}

/// The marks, for comparison.
pub fn marks() -> [u64; 6] {
    MARKS
}
