//! `device-plugins`: devices registered with kubelet, from its checkpoint file.

use std::path::Path;

use nodeprep_fixtures::Spec;
use serde_json::Value;

const CHECKPOINT: &str = "var/lib/kubelet/device-plugins/kubelet_internal_checkpoint";

fn check(spec: &Spec, args: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    spec.write(dir.path()).unwrap();
    run(dir.path(), args)
}

fn run(root: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let o = crate::common::nodeprep(root, &all);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "device-plugins")
        .cloned()
        .unwrap();
    (o.status.code().unwrap(), c)
}

#[test]
fn all_devices_registered_passes() {
    let (code, c) = check(&Spec::p5_48xlarge(), &["check", "--only", "device-plugins"]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["status"], "pass");
    assert_eq!(
        c["summary"],
        "registered with kubelet: nvidia.com/gpu 8/8, vpc.amazonaws.com/efa 32/32"
    );
    assert_eq!(c["expected"]["nvidia.com/gpu"], 8);
    assert_eq!(c["found"]["vpc.amazonaws.com/efa"], 32);
}

#[test]
fn missing_checkpoint_fails_with_a_remedy() {
    let mut s = Spec::p5_48xlarge();
    s.kubelet_checkpoint = None;
    let (code, c) = check(&s, &["check", "--only", "device-plugins"]);
    assert_eq!(code, 1);
    assert_eq!(c["required"], true);
    assert!(
        c["summary"].as_str().unwrap().starts_with("no device plugin has registered with kubelet"),
        "{c}"
    );
    assert_eq!(c["found"]["nvidia.com/gpu"], 0);
    assert!(c["remedy"].as_str().unwrap().contains("device plugin DaemonSets"), "{c}");
}

#[test]
fn partial_registration_names_the_plugin() {
    let mut s = Spec::p5_48xlarge();
    s.kubelet_checkpoint = Some(r#"{"Data":{"PodDeviceEntries":null,"RegisteredDevices":{"nvidia.com/gpu":["GPU-1","GPU-2","GPU-3","GPU-4","GPU-5","GPU-6","GPU-7"]}},"Checksum":1}"#.into());
    let (code, c) = check(&s, &["check", "--only", "device-plugins"]);
    assert_eq!(code, 1);
    assert_eq!(
        c["summary"],
        "registered with kubelet: nvidia.com/gpu 7/8, vpc.amazonaws.com/efa 0/32"
    );
    let remedy = c["remedy"].as_str().unwrap();
    assert!(
        remedy.contains("NVIDIA device plugin (or GPU operator) and aws-efa-k8s-device-plugin"),
        "{remedy}"
    );
}

#[test]
fn corrupt_checkpoint_is_a_failure_naming_the_file() {
    let mut s = Spec::p5_48xlarge();
    s.kubelet_checkpoint = Some("{\"Data\": [".into());
    let (code, c) = check(&s, &["check", "--only", "device-plugins"]);
    assert_eq!(code, 1);
    let summary = c["summary"].as_str().unwrap();
    assert!(summary.contains(CHECKPOINT) && summary.contains("not valid JSON"), "{summary}");
}

#[test]
fn nodes_without_gpus_or_efa_skip() {
    let (code, c) = check(&Spec::empty(), &["check", "--only", "device-plugins"]);
    assert_eq!(code, 0);
    assert_eq!(c["status"], "skip");
    assert_eq!(c["required"], false);
}

#[test]
fn boot_runs_before_kubelet_and_skips_it() {
    let mut s = Spec::p5_48xlarge();
    s.kubelet_checkpoint = None;
    let (code, c) = check(&s, &["boot"]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["status"], "skip");
    assert!(c["summary"].as_str().unwrap().starts_with("not checked at boot"), "{c}");
}

/// Kubelet's state lives on the instance store and survives a reboot: a checkpoint written before
/// this boot says what registered last boot. It is not believed, and the check says why.
#[test]
fn a_checkpoint_from_before_this_boot_is_not_believed() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let dir = tempfile::tempdir().unwrap();
    Spec::p5_48xlarge().write(dir.path()).unwrap();
    let booted = SystemTime::now() - Duration::from_secs(600);
    let btime = booted.duration_since(UNIX_EPOCH).unwrap().as_secs();
    std::fs::create_dir_all(dir.path().join("proc")).unwrap();
    std::fs::write(dir.path().join("proc/stat"), format!("cpu  1 2 3 4\nbtime {btime}\n")).unwrap();
    let cp = std::fs::File::options().write(true).open(dir.path().join(CHECKPOINT)).unwrap();
    // Written a minute after the boot: believed.
    cp.set_modified(booted + Duration::from_secs(60)).unwrap();
    let (code, c) = run(dir.path(), &["check", "--only", "device-plugins"]);
    assert_eq!((code, c["status"].as_str()), (0, Some("pass")), "{c}");
    // Written an hour before it: last boot's.
    cp.set_modified(booted - Duration::from_secs(3600)).unwrap();
    let (code, c) = run(dir.path(), &["check", "--only", "device-plugins"]);
    assert_eq!(code, 1, "{c}");
    let s = c["summary"].as_str().unwrap();
    assert!(s.starts_with("no device plugin has registered since this boot: "), "{s}");
    assert!(s.contains("kubelet_internal_checkpoint is from before it (written "), "{s}");
    assert_eq!(c["found"]["nvidia.com/gpu"], 0);
    assert_eq!(c["found"]["checkpoint_before_boot"], true);
}
