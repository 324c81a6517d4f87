//! Every integration test of nodeprep, in one binary: the binary as a user runs it, on fixture
//! trees (`--root`), against fakes that behave as the real peers do (NVML, IMDS, a Kubernetes API
//! server) and real ones where this machine has them (loop devices, mount namespaces, systemd's
//! verifier, kubectl). One module per area; [`common`] builds the commands.
//!
//!   cargo test -p nodeprep --test it                 # all of them
//!   cargo test -p nodeprep --test it efa::           # one area
//!   NODEPREP_UPDATE_GOLDEN=1 cargo test -p nodeprep --test it golden   # rewrite the golden report

mod architecture;
mod bundle;
mod catalog;
mod cli;
mod common;
mod containerd;
mod device_plugins;
mod efa;
mod fake_kube;
mod faults;
mod fuzz_props;
mod gate;
mod generations;
mod golden;
mod imds;
mod limits;
mod lint;
mod manifests;
mod metrics;
mod nvidia;
mod prometheus;
mod serve;
mod serve_abuse;
mod storage;
mod storage_loop;
mod systemd_units;
