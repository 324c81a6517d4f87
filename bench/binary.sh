# Sourced by bench/*.sh: sets B, the nodeprep binary measured. NODEPREP_BIN when set (CI passes the
# release binary of scripts/release); else a release build for this machine made with the release
# flags (scripts/rustflags.sh: non-PIE), so the figures are those of the shipped binary.
if [[ -n ${NODEPREP_BIN:-} ]]; then
  B=$NODEPREP_BIN
else
  host=$(rustc -vV | sed -n 's/^host: //p')
  (source scripts/rustflags.sh && cargo build --release -q -p nodeprep --target "$host")
  B=target/$host/release/nodeprep
fi
cargo build --release -q -p nodeprep-fixtures
