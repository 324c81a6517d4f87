//! Memlock/stack limits: what `check` says a new pod gets, and what `boot` writes, on fixture trees.

use std::path::Path;
use std::process::Output;

use nodeprep_fixtures::{base_runtime_spec, proc_limits, snapshot, Spec, UNLIMITED_RLIMIT};
use serde_json::Value;

use crate::common::{nodeprep, Nodeprep, BIN};

const DROPIN: &str = "etc/systemd/system/containerd.service.d/50-nodeprep-limits.conf";
const LIMITS_D: &str = "etc/security/limits.d/50-nodeprep.conf";
const SPEC: &str = "etc/containerd/base-runtime-spec.json";
const MIB8: u64 = 8 << 20;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A p5.48xlarge (EFA, so limits are required) before nodeprep ran: no drop-in, no limits.d, the
/// given containerd limits and spec.
fn unprepared(containerd_memlock: Option<Option<u64>>, spec: Option<String>) -> tempfile::TempDir {
    let mut s = Spec::p5_48xlarge();
    s.files.clear();
    s.containerd = containerd_memlock.map(|m| (1843, proc_limits(m, None)));
    s.base_runtime_spec = spec;
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    dir
}

fn limits_check(root: &Path) -> (i32, Value) {
    let o = nodeprep(root, &["--output", "json", "check", "--only", "limits"]);
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    (o.status.code().unwrap(), v["checks"][0].clone())
}

#[test]
fn containerd_at_8_mib_fails_on_an_efa_node() {
    let dir = unprepared(Some(Some(MIB8)), None);
    let (code, c) = limits_check(dir.path());
    assert_eq!(code, 1);
    assert_eq!(c["status"], "fail");
    assert_eq!(c["required"], true);
    assert_eq!(c["expected"]["memlock"], "unlimited");
    assert_eq!(c["found"]["memlock"], MIB8);
    assert_eq!(c["found"]["stack"], "unlimited");
    let source = "running containerd's own limit (pid 1843): containerd's config names no \
                  base_runtime_spec for runtime `runc`";
    assert_eq!(c["found"]["memlock_source"], source);
    assert_eq!(
        c["summary"],
        format!("new pods get memlock 8 MiB, stack unlimited (from {source}); config wants memlock unlimited")
    );
    assert!(c["remedy"].as_str().unwrap().contains("nodeprep boot"), "{c}");
}

#[test]
fn containerd_unlimited_passes() {
    let dir = unprepared(Some(None), None);
    let (code, c) = limits_check(dir.path());
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["status"], "pass");
    assert_eq!(c["found"]["memlock"], "unlimited");
    assert_eq!(c["found"]["restart_needed"], false);
}

#[test]
fn base_runtime_spec_overrides_containerd() {
    let spec = base_runtime_spec(&[
        ("RLIMIT_NOFILE", 65536, 65536),
        ("RLIMIT_MEMLOCK", UNLIMITED_RLIMIT, UNLIMITED_RLIMIT),
        ("RLIMIT_STACK", UNLIMITED_RLIMIT, UNLIMITED_RLIMIT),
    ]);
    let dir = unprepared(Some(Some(MIB8)), Some(spec));
    let (code, c) = limits_check(dir.path());
    assert_eq!(code, 0, "{c}");
    assert_eq!(
        c["found"]["memlock_source"],
        "/etc/containerd/base-runtime-spec.json process.rlimits"
    );
    // And the other way round: a spec that pins memlock low beats an unlimited containerd.
    let low = base_runtime_spec(&[("RLIMIT_MEMLOCK", 65536, 65536)]);
    let dir = unprepared(Some(None), Some(low));
    let (code, c) = limits_check(dir.path());
    assert_eq!(code, 1);
    assert_eq!(c["found"]["memlock"], 65536);
}

#[test]
fn no_containerd_reports_what_the_unit_will_give() {
    let dir = unprepared(None, None);
    let (code, c) = limits_check(dir.path());
    assert_eq!(code, 1);
    assert_eq!(c["found"]["memlock"], MIB8);
    assert_eq!(
        c["found"]["memlock_source"],
        "systemd default; containerd not running and no LimitMEMLOCK set; containerd's config \
         names no base_runtime_spec for runtime `runc`"
    );
    let o = nodeprep(dir.path(), &["boot"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (code, c) = limits_check(dir.path());
    assert_eq!(code, 0, "{c}");
    assert_eq!(
        c["found"]["memlock_source"],
        "containerd unit (LimitMEMLOCK in /etc/systemd/system/containerd.service.d/50-nodeprep-limits.conf); containerd not running; containerd's config names no base_runtime_spec for runtime `runc`"
    );
}

#[test]
fn boot_writes_dropin_limits_d_and_spec_keeping_nofile() {
    let spec = base_runtime_spec(&[("RLIMIT_NOFILE", 65536, 32768)]);
    let original: Value = serde_json::from_str(&spec).unwrap();
    let dir = unprepared(None, Some(spec));
    let o = nodeprep(dir.path(), &["boot"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(
            "limits: done: wrote /etc/systemd/system/containerd.service.d/50-nodeprep-limits.conf"
        ),
        "{out}"
    );
    assert!(out.contains("limits: skip: systemctl daemon-reload: --root is not /"), "{out}");
    let dropin = std::fs::read_to_string(dir.path().join(DROPIN)).unwrap();
    assert!(dropin.contains("[Service]\nLimitMEMLOCK=infinity\nLimitSTACK=infinity\n"), "{dropin}");
    let limits_d = std::fs::read_to_string(dir.path().join(LIMITS_D)).unwrap();
    assert!(limits_d.contains("*    hard    memlock    unlimited\n"), "{limits_d}");
    let new: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(SPEC)).unwrap()).unwrap();
    let rl = new["process"]["rlimits"].as_array().unwrap();
    assert_eq!(
        rl[0],
        serde_json::json!({"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 32768}),
        "NOFILE kept exactly"
    );
    assert_eq!(rl.len(), 3);
    assert!(rl.contains(&serde_json::json!({"type": "RLIMIT_MEMLOCK", "hard": UNLIMITED_RLIMIT, "soft": UNLIMITED_RLIMIT})));
    assert!(rl.contains(&serde_json::json!({"type": "RLIMIT_STACK", "hard": UNLIMITED_RLIMIT, "soft": UNLIMITED_RLIMIT})));
    // Everything but process.rlimits is as it was.
    let (mut a, mut b) = (original.clone(), new.clone());
    a["process"]["rlimits"] = Value::Null;
    b["process"]["rlimits"] = Value::Null;
    assert_eq!(a, b);
    // The status file is the report.
    let status: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/nodeprep/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["schema"], "nodeprep.report/v1");
}

#[test]
fn byte_limits_are_written_in_each_files_units() {
    let mut s = Spec::p5_48xlarge();
    s.files.clear();
    s.base_runtime_spec = Some(base_runtime_spec(&[]));
    s.config = Some("[limits]\nmemlock = 1073741824\nstack = 16777216\n".into());
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    let o = nodeprep(dir.path(), &["boot"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let dropin = std::fs::read_to_string(dir.path().join(DROPIN)).unwrap();
    assert!(dropin.contains("LimitMEMLOCK=1073741824\nLimitSTACK=16777216\n"), "{dropin}");
    let limits_d = std::fs::read_to_string(dir.path().join(LIMITS_D)).unwrap();
    assert!(
        limits_d.contains("soft    memlock    1048576\n"),
        "limits.conf counts KiB: {limits_d}"
    );
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(SPEC)).unwrap()).unwrap();
    assert!(spec["process"]["rlimits"].as_array().unwrap().contains(
        &serde_json::json!({"type": "RLIMIT_MEMLOCK", "hard": 1073741824u64, "soft": 1073741824u64})
    ));
}

#[test]
fn malformed_spec_is_left_untouched_and_reported() {
    let broken = "{ \"ociVersion\": \"1.1.0\", \"process\": { \"rlimits\": [ \n".to_string();
    let dir = unprepared(Some(Some(MIB8)), Some(broken.clone()));
    let o = nodeprep(dir.path(), &["boot"]);
    let out = text(&o);
    // Boot did what it could (the drop-in, limits.d); the spec is the limits check's to fail:
    // readiness, exit 1 only with --strict.
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("boot: the node is prepared; a required check failed"), "{out}");
    let strict = nodeprep(dir.path(), &["boot", "--strict"]);
    assert_eq!(strict.status.code(), Some(1), "{}", text(&strict));
    assert!(
        out.contains(
            "limits: note: /etc/containerd/base-runtime-spec.json left untouched: not valid JSON"
        ),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(SPEC)).unwrap(),
        broken,
        "not one byte changed"
    );
    let (_, c) = limits_check(dir.path());
    assert_eq!(c["status"], "fail");
    assert_eq!(c["found"]["memlock"], Value::Null, "never guessed");
    // containerd's CRI plugin does not load a spec it cannot parse: no pod starts (it/containerd.rs
    // shows it on a real containerd).
    assert!(
        c["found"]["memlock_source"].as_str().unwrap().starts_with(
            "none: no pod can start: /etc/containerd/base-runtime-spec.json is unusable (not valid JSON"
        ),
        "{c}"
    );
    assert!(
        c["remedy"].as_str().unwrap().starts_with("fix /etc/containerd/base-runtime-spec.json"),
        "{c}"
    );
}

#[test]
fn second_boot_changes_nothing() {
    let dir = unprepared(None, Some(base_runtime_spec(&[("RLIMIT_NOFILE", 65536, 65536)])));
    assert_eq!(nodeprep(dir.path(), &["boot"]).status.code(), Some(0));
    let after_first = snapshot(dir.path());
    let mtime = std::fs::metadata(dir.path().join(SPEC)).unwrap().modified().unwrap();
    let o = nodeprep(dir.path(), &["boot"]);
    assert!(text(&o).contains("limits: up to date"), "{}", text(&o));
    let after_second = snapshot(dir.path());
    // Only the status file (a new report with a new timestamp) may differ.
    let strip = |s: Vec<(std::path::PathBuf, Vec<u8>)>| {
        s.into_iter().filter(|(p, _)| !p.ends_with("status.json")).collect::<Vec<_>>()
    };
    assert_eq!(strip(after_first), strip(after_second));
    assert_eq!(
        std::fs::metadata(dir.path().join(SPEC)).unwrap().modified().unwrap(),
        mtime,
        "spec not rewritten"
    );
}

#[test]
fn prepared_example_node_needs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    Spec::p5_48xlarge().write(dir.path()).unwrap();
    let o = nodeprep(dir.path(), &["boot", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).contains("limits: nothing to do"), "{}", text(&o));
}

#[test]
fn dry_run_shows_diffs_and_changes_no_byte() {
    let dir =
        unprepared(Some(Some(MIB8)), Some(base_runtime_spec(&[("RLIMIT_NOFILE", 65536, 65536)])));
    let before = snapshot(dir.path());
    let o = nodeprep(dir.path(), &["boot", "--dry-run"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(
            "limits: would create /etc/systemd/system/containerd.service.d/50-nodeprep-limits.conf"
        ),
        "{out}"
    );
    assert!(out.contains("+LimitMEMLOCK=infinity"), "{out}");
    assert!(out.contains("limits: would update /etc/containerd/base-runtime-spec.json"), "{out}");
    assert!(out.contains("+        \"type\": \"RLIMIT_MEMLOCK\","), "{out}");
    assert!(out.contains("limits: note: containerd must be restarted"), "{out}");
    assert_eq!(snapshot(dir.path()), before, "dry run changed the tree");
}

#[test]
fn running_containerd_with_a_low_limit_is_not_restarted_but_reported() {
    let dir = unprepared(Some(Some(MIB8)), None);
    let o = nodeprep(dir.path(), &["boot"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("limits: note: containerd must be restarted: it runs with a lower memlock than configured (pid 1843); nodeprep does not restart it because pods may be running: run `systemctl restart containerd`"), "{out}");
    let (_, c) = limits_check(dir.path());
    assert_eq!(c["found"]["restart_needed"], true);
    assert!(c["remedy"].as_str().unwrap().contains("systemctl restart containerd"), "{c}");
}

#[test]
fn spec_changed_after_containerd_started_needs_a_restart() {
    let spec = base_runtime_spec(&[
        ("RLIMIT_MEMLOCK", UNLIMITED_RLIMIT, UNLIMITED_RLIMIT),
        ("RLIMIT_STACK", UNLIMITED_RLIMIT, UNLIMITED_RLIMIT),
    ]);
    let dir = unprepared(Some(None), Some(spec));
    // containerd started at boot (btime) + 10 s; the spec file was written just now, long after.
    let boot =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
            - 3600;
    std::fs::write(dir.path().join("proc/stat"), format!("cpu  1 2 3 4\nbtime {boot}\n")).unwrap();
    let fields: Vec<String> =
        (3..=52).map(|i| if i == 22 { "1000".into() } else { "0".into() }).collect();
    std::fs::write(
        dir.path().join("proc/1843/stat"),
        format!("1843 (containerd) {}\n", fields.join(" ")),
    )
    .unwrap();
    let (code, c) = limits_check(dir.path());
    assert_eq!(code, 1, "{c}");
    assert_eq!(c["found"]["restart_needed"], true);
    assert!(c["summary"].as_str().unwrap().contains("changed after containerd started"), "{c}");
    // What new pods get is what containerd loaded, not the file: unknown, said so.
    assert_eq!(c["found"]["memlock"], Value::Null, "{c}");
    assert!(
        c["found"]["memlock_source"].as_str().unwrap().contains("the file now says unlimited"),
        "{c}"
    );
    assert!(c["found"]["note"].as_str().unwrap().contains("limits-canary"), "{c}");
    // A spec older than containerd is what containerd loaded: pass.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3595);
    std::fs::File::options()
        .write(true)
        .open(dir.path().join(SPEC))
        .unwrap()
        .set_modified(old - std::time::Duration::from_secs(60))
        .unwrap();
    let (code, c) = limits_check(dir.path());
    assert_eq!(code, 0, "{c}");
}

#[test]
fn auto_mode_skips_nodes_without_efa() {
    let mut s = Spec::empty();
    s.containerd = Some((77, proc_limits(Some(MIB8), None)));
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    let o = nodeprep(dir.path(), &["boot"]);
    let out = text(&o);
    assert!(out.contains("limits: skip: memlock/stack limits: no EFA devices on this node (limits.apply = \"auto\")"), "{out}");
    assert!(!dir.path().join(DROPIN).exists());
    let (code, c) = limits_check(dir.path());
    assert_eq!(code, 0);
    assert_eq!(c["status"], "warn");
    assert_eq!(c["required"], false);
    assert!(c["summary"].as_str().unwrap().ends_with("not required without EFA"), "{c}");
}

/// Runs `script` in a private mount namespace (root only; the tests run as root in CI).
fn in_mount_namespace(script: &str) -> Output {
    std::process::Command::new("unshare")
        .args(["-m", "sh", "-euc", script])
        .output()
        .expect("unshare runs")
}

#[test]
fn read_only_target_is_explained_and_nothing_half_written() {
    let dir = unprepared(None, None);
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let o = in_mount_namespace(&format!(
        "mount --bind {etc} {etc} && mount -o remount,ro,bind {etc} && {BIN} --root {root} boot",
        etc = etc.display(),
        root = dir.path().display()
    ));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("limits: FAIL: creating directory"), "{out}");
    assert!(
        out.contains("Read-only file system") && out.contains("the filesystem is read-only"),
        "{out}"
    );
    assert!(!dir.path().join(DROPIN).exists());
}

#[test]
fn unprivileged_run_says_it_needs_root() {
    let dir = unprepared(None, None);
    // World-readable so that nobody can look, but not write.
    let _ = std::process::Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path()).status();
    let _ = std::process::Command::new("chmod").arg("755").arg(dir.path()).status();
    let setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let o = Nodeprep::through(&setpriv, dir.path()).args(["boot"]).output();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("Permission denied") && out.contains("nodeprep boot must run as root"),
        "{out}"
    );
}

#[test]
fn the_spec_of_containerds_default_runtime_is_the_one_checked_and_written() {
    // A GPU AMI whose containerd runs pods with the nvidia runtime and a spec at another path
    // (kind, kubespray: cri-base.json). The EKS path exists too but is not used by this containerd.
    let low = base_runtime_spec(&[("RLIMIT_NOFILE", 65536, 65536), ("RLIMIT_MEMLOCK", MIB8, MIB8)]);
    let dir = unprepared(
        None,
        Some(base_runtime_spec(&[("RLIMIT_MEMLOCK", UNLIMITED_RLIMIT, UNLIMITED_RLIMIT)])),
    );
    std::fs::write(dir.path().join("etc/containerd/cri-base.json"), &low).unwrap();
    std::fs::write(
        dir.path().join("etc/containerd/config.toml"),
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"nvidia\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nbase_runtime_spec = \"/etc/containerd/base-runtime-spec.json\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\nruntime_type = \"io.containerd.runc.v2\"\n\
         base_runtime_spec = \"/etc/containerd/cri-base.json\"\n",
    )
    .unwrap();
    let (code, c) = limits_check(dir.path());
    assert_eq!(code, 1, "{c}");
    assert!(
        c["summary"].as_str().unwrap().contains("memlock 8 MiB")
            && c["summary"].as_str().unwrap().contains("/etc/containerd/cri-base.json"),
        "{c}"
    );
    let eks_before = std::fs::read(dir.path().join(SPEC)).unwrap();
    let o = nodeprep(dir.path(), &["boot"]);
    assert!(text(&o).contains("wrote /etc/containerd/cri-base.json"), "{}", text(&o));
    assert_eq!(
        std::fs::read(dir.path().join(SPEC)).unwrap(),
        eks_before,
        "the unused spec is not touched"
    );
    let (_, c) = limits_check(dir.path());
    assert_eq!(c["status"], "pass", "{c}");
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("etc/containerd/cri-base.json")).unwrap(),
    )
    .unwrap();
    assert!(
        spec["process"]["rlimits"].as_array().unwrap().iter().any(|r| r["type"] == "RLIMIT_NOFILE"),
        "NOFILE kept: {spec}"
    );
}

/// Runs `boot` then `check --only limits` on a p5 tree whose containerd (64 KiB memlock, as Debian's
/// own) and config are given; returns boot's output and the check.
fn with_containerd_config(
    config: Option<&str>,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, String, Value) {
    let mut s = Spec::p5_48xlarge();
    s.files.clear();
    s.containerd = Some((1843, proc_limits(Some(64 << 10), None)));
    s.base_runtime_spec = Some(base_runtime_spec(&[("RLIMIT_NOFILE", 65536, 1048576)]));
    s.files.push(("etc/containerd/config.toml".into(), config.unwrap_or("").into()));
    for (p, c) in files {
        s.files.push((p.to_string(), c.to_string()));
    }
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    if config.is_none() {
        std::fs::remove_file(dir.path().join("etc/containerd/config.toml")).unwrap();
    }
    let boot = text(&nodeprep(dir.path(), &["boot"]));
    let (_, c) = limits_check(dir.path());
    (dir, boot, c)
}

#[test]
fn a_spec_the_config_does_not_name_is_neither_written_nor_believed() {
    let before = base_runtime_spec(&[("RLIMIT_NOFILE", 65536, 1048576)]);
    // Debian's stock config (no CRI section), and no config.toml at all.
    for config in [Some("version = 2\n"), None] {
        let (dir, boot, c) = with_containerd_config(config, &[]);
        assert_eq!(std::fs::read_to_string(dir.path().join(SPEC)).unwrap(), before, "{boot}");
        assert!(
            boot.contains("names no base_runtime_spec for its default runtime `runc`"),
            "{boot}"
        );
        assert!(!boot.contains("wrote /etc/containerd/base-runtime-spec.json"), "{boot}");
        assert_eq!(c["status"], "fail", "{c}");
        assert_eq!(c["found"]["memlock"], 64 << 10, "{c}");
        assert_eq!(c["found"]["base_runtime_spec"], Value::Null);
        assert!(
            c["found"]["memlock_source"]
                .as_str()
                .unwrap()
                .starts_with("running containerd's own limit"),
            "{c}"
        );
        assert!(
            c["found"]["restart_needed"] == true,
            "the drop-in is written, containerd runs with 64 KiB: {c}"
        );
    }
}

#[test]
fn an_nvidia_ctk_import_that_drops_the_spec_is_followed() {
    let main = "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n\
                [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
                base_runtime_spec = \"/etc/containerd/base-runtime-spec.json\"\n";
    let nvidia = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n\
                  default_runtime_name = \"nvidia\"\n\
                  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n\
                  runtime_type = \"io.containerd.runc.v2\"\n";
    let (_dir, boot, c) =
        with_containerd_config(Some(main), &[("etc/containerd/conf.d/99-nvidia.toml", nvidia)]);
    assert_eq!(c["found"]["runtime"], "nvidia", "{c}");
    assert_eq!(c["found"]["memlock"], 64 << 10, "{c}");
    assert_eq!(
        c["found"]["containerd_config"],
        "/etc/containerd/config.toml + /etc/containerd/conf.d/99-nvidia.toml"
    );
    assert!(boot.contains("default runtime `nvidia`"), "{boot}");
}

#[test]
fn a_named_spec_that_does_not_exist_fails_every_node_with_the_remedy() {
    let main = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
                base_runtime_spec = \"/etc/containerd/cri-base.json\"\n";
    let (dir, boot, c) = with_containerd_config(Some(main), &[]);
    assert!(!dir.path().join("etc/containerd/cri-base.json").exists(), "nothing invented");
    assert!(
        boot.contains("does not exist: containerd's CRI plugin will not load and no pod can start"),
        "{boot}"
    );
    assert!(!boot.contains("containers get containerd's limits"), "{boot}");
    assert_eq!((c["status"].as_str(), c["required"].as_bool()), (Some("fail"), Some(true)), "{c}");
    assert!(c["summary"].as_str().unwrap().starts_with("no pod can start"), "{c}");
    assert_eq!(c["found"]["memlock"], Value::Null);
    let remedy = c["remedy"].as_str().unwrap();
    assert!(
        remedy.contains("ctr oci spec > /etc/containerd/cri-base.json")
            && remedy.contains("remove base_runtime_spec from /etc/containerd/config.toml"),
        "{remedy}"
    );
    // Required on a node without EFA too: no pod at all can start.
    let mut s = Spec::empty();
    s.containerd = Some((77, proc_limits(Some(MIB8), None)));
    s.files.push(("etc/containerd/config.toml".into(), main.into()));
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    let (code, c) = limits_check(dir.path());
    assert_eq!((code, c["required"].as_bool()), (1, Some(true)), "{c}");
}

#[test]
fn a_config_written_after_boot_is_applied_by_if_config_changed_and_only_when_it_changed() {
    // What nodeprep-reconfigure.service runs when userData writes the config after boot ran.
    let dir = unprepared(None, None);
    let cfg = dir.path().join("etc/nodeprep/config.toml");
    let dropin = dir.path().join(DROPIN);
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    // Writes the config, runs `boot --if-config-changed`: its exit code and output.
    let reconfigure = |config: &str| {
        std::fs::write(&cfg, config).unwrap();
        let o = nodeprep(dir.path(), &["boot", "--if-config-changed"]);
        (o.status.code(), text(&o))
    };
    let (code, out) = reconfigure("[limits]\napply = \"always\"\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no record of an applied configuration"), "{out}");
    let record = std::fs::read_to_string(dir.path().join("run/nodeprep/boot-config.toml")).unwrap();
    assert!(record.contains("[limits]"), "{record}");
    // The same effective config with other comments and an explicit default: nothing is done.
    let (code, out) = reconfigure(
        "# rewritten by userData\n[limits]\nstack = \"unlimited\"\napply = \"always\"\n",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("the configuration is the one the last boot applied"), "{out}");
    assert!(!out.contains("limits: "), "nothing applied: {out}");
    // A changed value: applied.
    let (code, out) = reconfigure("[limits]\napply = \"always\"\nstack = 67108864\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("the configuration changed since the last boot applied it"), "{out}");
    let d = std::fs::read_to_string(&dropin).unwrap();
    assert!(d.contains("LimitSTACK=67108864"), "{d}");
    // A config error: exit 2, nothing changed.
    let (code, out) = reconfigure("[limits]\nstack = \"a lot\"\n");
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(std::fs::read_to_string(&dropin).unwrap(), d);
}
