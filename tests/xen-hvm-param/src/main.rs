//! `pvi-xen-hvm-param DOMID INDEX VALUE`: set HVM parameter INDEX of
//! domain DOMID to VALUE, as libxenctrl's `xc_hvm_param_set` does. The
//! real-Xen harness runs it in its Linux dom0 on a domU created paused,
//! to set `HVM_PARAM_VIRIDIAN` (Xen's Hyper-V emulation): `xl` offers
//! `viridian` only for HVM guests, not PVH ones.
//!
//! libxenctrl is loaded at run time (`dlopen`), so building this needs no
//! Xen development files: only the dom0 that runs it has the library.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::process::ExitCode;

extern "C" {
    fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
    fn dlerror() -> *const c_char;
}

/// `RTLD_NOW` (glibc's dlfcn.h).
const RTLD_NOW: c_int = 2;
/// The library Debian's xen-utils-4.17 links against.
const LIBRARY: &CStr = c"libxenctrl.so.4.17";

/// `xc_interface *xc_interface_open(xentoollog_logger *,
/// xentoollog_logger *, unsigned open_flags)`.
type Open = unsafe extern "C" fn(*mut c_void, *mut c_void, u32) -> *mut c_void;
/// `int xc_hvm_param_set(xc_interface *, uint32_t domid, uint32_t param,
/// uint64_t value)`.
type ParamSet = unsafe extern "C" fn(*mut c_void, u32, u32, u64) -> c_int;

fn last_dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string that stays
    // valid until the next dl* call on this thread.
    let text = unsafe { dlerror() };
    if text.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-null, NUL-terminated (above).
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }
}

fn symbol(library: *mut c_void, name: &CStr) -> Result<*mut c_void, String> {
    // SAFETY: `library` is a live dlopen handle and `name` NUL-terminated.
    let found = unsafe { dlsym(library, name.as_ptr()) };
    if found.is_null() {
        Err(format!("{}: {}", name.to_string_lossy(), last_dl_error()))
    } else {
        Ok(found)
    }
}

fn set(domid: u32, index: u32, value: u64) -> Result<(), String> {
    // SAFETY: a NUL-terminated library name; the handle is kept for the
    // process's life.
    let library = unsafe { dlopen(LIBRARY.as_ptr(), RTLD_NOW) };
    if library.is_null() {
        return Err(format!(
            "{}: {}",
            LIBRARY.to_string_lossy(),
            last_dl_error()
        ));
    }
    // SAFETY: the symbols have these C signatures in libxenctrl 4.17
    // (tools/include/xenctrl.h).
    let (open, param_set) = unsafe {
        (
            std::mem::transmute::<*mut c_void, Open>(symbol(library, c"xc_interface_open")?),
            std::mem::transmute::<*mut c_void, ParamSet>(symbol(library, c"xc_hvm_param_set")?),
        )
    };
    // SAFETY: NULL loggers are allowed (libxenctrl then logs to stderr).
    let xch = unsafe { open(std::ptr::null_mut(), std::ptr::null_mut(), 0) };
    if xch.is_null() {
        return Err("xc_interface_open failed (is /dev/xen/privcmd there?)".into());
    }
    // SAFETY: a live xc_interface.
    let rc = unsafe { param_set(xch, domid, index, value) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "xc_hvm_param_set(domain {domid}, param {index}, {value:#x}) returned {rc}: {}",
            std::io::Error::last_os_error()
        ))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |s: &str| {
        s.strip_prefix("0x").map_or_else(
            || s.parse::<u64>().ok(),
            |h| u64::from_str_radix(h, 16).ok(),
        )
    };
    let (Some(domid), Some(index), Some(value)) = (
        args.first().and_then(|a| parse(a)),
        args.get(1).and_then(|a| parse(a)),
        args.get(2).and_then(|a| parse(a)),
    ) else {
        eprintln!("usage: pvi-xen-hvm-param DOMID INDEX VALUE (numbers, 0x… for hex)");
        return ExitCode::from(2);
    };
    match set(domid as u32, index as u32, value) {
        Ok(()) => {
            println!("pvi-xen-hvm-param: domain {domid}: param {index} = {value:#x}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pvi-xen-hvm-param: {e}");
            ExitCode::FAILURE
        }
    }
}
