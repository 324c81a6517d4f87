//! The `nodeprep` binary: an ordinary `main` over the library's command layer.
//!
//! Rust's own start-up runs first: it reopens closed fds 0–2 on /dev/null (started with stdout
//! closed, a report would otherwise land in the first file nodeprep opened) and ignores SIGPIPE (a
//! closed pipe is an error the output code handles, not a silent death). A panic exits 101.

fn main() -> std::process::ExitCode {
    nodeprep::commands::main()
}
