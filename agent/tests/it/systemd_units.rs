//! The unit files in systemd/ are valid (`systemd-analyze verify`) and say what the service does.

use std::path::{Path, PathBuf};
use std::process::Command;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(units_dir().join(name)).unwrap()
}

/// Copies the units with ExecStart pointing at the built binary, so verify can check it exists.
fn verify(mutate: impl Fn(&str) -> String) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    for name in ["nodeprep-boot.service", "nodeprep.service"] {
        let text = unit(name).replace("/usr/bin/nodeprep", env!("CARGO_BIN_EXE_nodeprep"));
        std::fs::write(dir.path().join(name), mutate(&text)).unwrap();
    }
    // The man page is packaging's (not installed here): skip that part of verify.
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join("nodeprep-boot.service"))
        .arg(dir.path().join("nodeprep.service"))
        .output()
        .expect("systemd-analyze runs (Debian package systemd)");
    (
        o.status.success(),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    )
}

#[test]
fn units_verify() {
    let (ok, out) = verify(|t| t.to_string());
    assert!(ok, "{out}");
    // And verify really looks: a unit with a broken ExecStart fails.
    let (ok, out) = verify(|t| t.replace(env!("CARGO_BIN_EXE_nodeprep"), "/nonexistent/nodeprep"));
    assert!(!ok && out.contains("/nonexistent/nodeprep"), "{out}");
}

#[test]
fn boot_runs_once_before_containerd_and_kubelet_without_blocking_them() {
    let u = unit("nodeprep-boot.service");
    for line in [
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ExecStart=/usr/bin/nodeprep boot",
        "Before=containerd.service kubelet.service nodeadm-run.service",
    ] {
        assert!(u.lines().any(|l| l == line), "{line} missing:\n{u}");
    }
    assert!(
        !u.lines().any(|l| l.starts_with("RequiredBy=")),
        "must not block containerd unless configured"
    );
}

#[test]
fn serve_is_notify_with_watchdog_and_hardened() {
    let u = unit("nodeprep.service");
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/nodeprep serve",
        "WatchdogSec=90s",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "ReadWritePaths=/run/nodeprep",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_SYSLOG",
    ] {
        assert!(u.lines().any(|l| l == line), "{line} missing:\n{u}");
    }
}
