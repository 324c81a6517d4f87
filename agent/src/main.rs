//! The `nodeprep` binary: a thin shell over the library (`nodeprep::app`).
//!
//! `main` is the C entry point (`#![no_main]`): Rust's own start-up is skipped. It would read
//! `/proc/self/maps` to locate the main thread's stack and give every thread a signal stack, only to
//! turn a stack overflow into a message instead of a plain SIGSEGV — a sixth of a millisecond that
//! every `nodeprep check` paid. SIGPIPE is ignored here as Rust's start-up would (a closed pipe or
//! socket is an error, not a silent death), and `std::process::exit` flushes stdout.
// (Not in `cargo test`'s build of this file: the test harness brings its own `main`.)
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = std::panic::catch_unwind(nodeprep::app::main).unwrap_or(101);
    std::process::exit(code)
}
