//! The unit files in systemd/ are valid (`systemd-analyze verify`) and say what the service does.

use std::path::{Path, PathBuf};
use std::process::Command;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

/// Every unit file the packages install.
const UNITS: [&str; 4] = [
    "nodeprep-boot.service",
    "nodeprep.service",
    "nodeprep-config.path",
    "nodeprep-reconfigure.service",
];

fn unit(name: &str) -> String {
    std::fs::read_to_string(units_dir().join(name)).unwrap()
}

/// Copies the units with ExecStart pointing at the built binary, so verify can check it exists.
fn verify(mutate: impl Fn(&str) -> String) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    for name in UNITS {
        let text = unit(name).replace("/usr/bin/nodeprep", env!("CARGO_BIN_EXE_nodeprep"));
        std::fs::write(dir.path().join(name), mutate(&text)).unwrap();
    }
    // The man page is packaging's (not installed here): skip that part of verify.
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(UNITS.map(|u| dir.path().join(u)))
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

/// The unit's lines (continuations are not used in these files).
fn has(u: &str, line: &str) -> bool {
    u.lines().any(|l| l == line)
}

/// Every one of `lines` is a line of the unit.
fn assert_has(u: &str, lines: &[&str]) {
    for line in lines {
        assert!(has(u, line), "{line} missing:\n{u}");
    }
}

#[test]
fn boot_runs_once_after_the_driver_units_and_before_containerd_without_blocking_it() {
    let u = unit("nodeprep-boot.service");
    assert_has(
        &u,
        &[
            "Type=oneshot",
            "RemainAfterExit=yes",
            "ExecStart=/usr/bin/nodeprep boot",
            "After=nvidia-kmod-load.service nvidia-fabricmanager.service nvidia-persistenced.service",
            "After=nodeadm-config.service cloud-init.service",
            "Before=containerd.service kubelet.service nodeadm-run.service soci-snapshotter.service",
            "SyslogIdentifier=nodeprep-boot",
        ],
    );
    assert!(
        !u.lines().any(|l| l.starts_with("RequiredBy=")),
        "must not block containerd unless configured"
    );
    // userData runs inside cloud-final: ordering after it deadlocks a userData that starts a unit
    // ordered after boot.
    assert!(!u.lines().any(|l| l.starts_with("After=") && l.contains("cloud-final")), "{u}");
}

#[test]
fn boot_is_hardened_without_a_mount_namespace() {
    let u = unit("nodeprep-boot.service");
    // Each of these gives the service its own mount namespace: the array's mount and the binds
    // would not be the host's. ProtectClock (< systemd 252) closes the disks' device nodes.
    for key in [
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "PrivateDevices=",
        "PrivateMounts=",
        "ProtectKernelTunables=",
        "ProtectKernelModules=",
        "ProtectKernelLogs=",
        "ProtectControlGroups=",
        "ProtectProc=",
        "ProcSubset=",
        "ReadWritePaths=",
        "ReadOnlyPaths=",
        "InaccessiblePaths=",
        "TemporaryFileSystem=",
        "BindPaths=",
        "ProtectClock=",
        "DeviceAllow=",
        "RestrictSUIDSGID=",
    ] {
        assert!(!u.lines().any(|l| l.starts_with(key)), "{key} must not be set:\n{u}");
    }
    assert_has(
        &u,
        &[
            "NoNewPrivileges=yes",
            "SystemCallFilter=@system-service @mount",
            "SystemCallErrorNumber=EPERM",
            "IPAddressDeny=any",
        ],
    );
    // The reconfigure unit runs the same boot: the same sandbox.
    let r = unit("nodeprep-reconfigure.service");
    let sandbox = |t: &str| -> Vec<String> {
        let from = t.find("NoNewPrivileges=").expect("a sandbox");
        t[from..]
            .lines()
            .filter(|l| l.contains('=') && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    let boot_sandbox: Vec<String> = sandbox(&u)
        .into_iter()
        .take_while(|l| !l.starts_with("WantedBy"))
        .filter(|l| !l.starts_with('['))
        .collect();
    assert_eq!(
        sandbox(&r),
        boot_sandbox,
        "nodeprep-reconfigure.service's sandbox differs from nodeprep-boot.service's"
    );
}

/// `systemd-analyze security --offline=yes`'s overall exposure of a unit (0 safe .. 10 unsafe).
fn exposure(name: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, unit(name)).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{out}"));
    let score = line
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{line}"));
    eprintln!("{name}: {}", line.trim());
    score.parse().unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn security_exposure_stays_where_it_was_brought() {
    // serve reads; boot is root and mounts (9.6 UNSAFE before it had any sandbox).
    let serve = exposure("nodeprep.service");
    assert!(serve <= 3.0, "nodeprep.service exposure {serve} > 3.0");
    let boot = exposure("nodeprep-boot.service");
    assert!(boot <= 5.0, "nodeprep-boot.service exposure {boot} > 5.0");
    assert!(boot < 9.0, "the sandbox did not count");
}

#[test]
fn a_changed_config_is_applied_again_after_boot_and_before_containerd() {
    let p = unit("nodeprep-config.path");
    assert!(has(&p, "PathChanged=/etc/nodeprep/config.toml"), "{p}");
    assert!(has(&p, "Unit=nodeprep-reconfigure.service"), "{p}");
    let r = unit("nodeprep-reconfigure.service");
    assert_has(
        &r,
        &[
            "ExecStart=/usr/bin/nodeprep boot --if-config-changed",
            "After=nodeprep-boot.service",
            "Before=containerd.service kubelet.service nodeadm-run.service soci-snapshotter.service",
            // serve is ordered after this unit: a blocking restart from inside it would wait forever.
        ],
    );
    let post = r.lines().find(|l| l.starts_with("ExecStopPost=")).expect("ExecStopPost");
    assert!(
        post.contains("--no-block try-restart nodeprep.service")
            && post.contains("is-failed nodeprep.service")
            && post.contains("--no-block restart nodeprep.service")
            && !post.contains("systemctl try-restart"),
        "{post}"
    );
    assert!(!r.contains("[Install]"), "started by the path unit only:\n{r}");
    let s = unit("nodeprep.service");
    assert!(
        has(&s, "After=network-online.target nodeprep-boot.service nodeprep-reconfigure.service"),
        "{s}"
    );
}

#[test]
fn serve_is_notify_with_watchdog_and_hardened() {
    let u = unit("nodeprep.service");
    assert_has(
        &u,
        &[
            "Type=notify",
            "ExecStart=/usr/bin/nodeprep serve",
            "WatchdogSec=90s",
            "Restart=on-failure",
            "ProtectSystem=strict",
            "ReadWritePaths=/run/nodeprep",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=CAP_DAC_READ_SEARCH CAP_SYSLOG",
            // A config error (exit 2) is not fixed by restarting every 5 s.
            "RestartPreventExitStatus=2",
            "SystemCallFilter=@system-service",
            "SyslogIdentifier=nodeprep",
        ],
    );
    // systemd < 252: ProtectClock implies DeviceAllow=char-rtc r, closing /dev/nvidia* and /dev/kmsg.
    assert!(
        !u.lines().any(|l| l.starts_with("ProtectClock=") || l.starts_with("DeviceAllow=")),
        "{u}"
    );
}
