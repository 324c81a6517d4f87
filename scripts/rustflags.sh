# Sourced, in a subshell, by scripts/release and bench/binary.sh: the flags release binaries are built
# with. They apply to an explicit --target only, and must not reach a later host build (cargo run,
# cargo test): proc macros cannot be linked non-PIE.
#
# relocation-model=static: a non-PIE executable (as kubelet and containerd ship). A PIE nodeprep
# spends its start-up relocating its pointers and copy-on-write faulting the pages they sit in (what
# that costs: bench/README.md). The stack, heap, shared libraries (and NVML) stay randomized; only
# the executable's own addresses are fixed.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C relocation-model=static"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C relocation-model=static"
