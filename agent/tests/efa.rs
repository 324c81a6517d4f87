//! `efa`: every EFA interface the instance type has, up and usable, on fixture trees.

use std::path::Path;

use nodeprep_fixtures::{Layout, Spec};
use serde_json::Value;

fn efa(spec: &Spec, extra: impl FnOnce(&Path), args: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    spec.write(dir.path()).unwrap();
    extra(dir.path());
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["check", "--only", "efa"]);
    let o = nodeprep_fixtures::run_nodeprep(env!("CARGO_BIN_EXE_nodeprep"), dir.path(), &all);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code().unwrap(), v["checks"][0].clone())
}

fn healthy(layout: Layout) -> (i32, Value) {
    let mut s = Spec::p5_48xlarge();
    s.layout = layout;
    efa(&s, |_| {}, &[])
}

#[test]
fn healthy_p5_has_32_usable_devices() {
    let (code, c) = healthy(Layout::Flat);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["status"], "pass");
    assert_eq!(c["required"], true);
    assert_eq!(c["summary"], "32 of 32 EFA devices usable");
    assert_eq!(c["expected"]["devices"], 32);
    assert_eq!(c["found"]["devices"], 32);
    assert_eq!(c["found"]["down"], serde_json::json!([]));
}

#[test]
fn symlinked_sysfs_layout_reads_the_same() {
    let (code, c) = healthy(Layout::Symlinked);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["found"]["devices"], 32);
}

#[test]
fn one_port_down_fails_naming_it() {
    let mut s = Spec::p5_48xlarge();
    s.efa[0].state = "1: DOWN".into();
    s.efa[0].phys_state = "3: Disabled".into();
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1);
    assert_eq!(c["status"], "fail");
    assert_eq!(c["summary"], "31 of 32 EFA devices usable; rdmap79s0 port DOWN (state 1: DOWN, phys 3: Disabled)");
    assert_eq!(c["found"]["down"], serde_json::json!(["rdmap79s0"]));
    assert!(c["remedy"].as_str().unwrap().contains("self-referencing rule"), "{c}");
}

#[test]
fn missing_uverbs_device_or_node_fails_naming_it() {
    let mut s = Spec::p5_48xlarge();
    s.efa[1].uverbs = None;
    s.efa[2].dev_node = false;
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1);
    assert_eq!(c["summary"], "30 of 32 EFA devices usable; rdmap80s0 has no uverbs device; rdmap81s0 has no /dev/infiniband/uverbs2");
    assert_eq!(c["found"]["no_uverbs"], serde_json::json!(["rdmap80s0", "rdmap81s0"]));
    assert!(c["remedy"].as_str().unwrap().contains("modprobe ib_uverbs"), "{c}");
}

#[test]
fn a_missing_interface_fails_with_the_launch_remedy() {
    let mut s = Spec::p5_48xlarge();
    s.efa.pop();
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1);
    assert_eq!(c["summary"], "31 of 32 EFA devices usable; 1 not present (found 31)");
    assert!(c["remedy"].as_str().unwrap().contains("EC2NodeClass"), "{c}");
}

#[test]
fn other_rdma_devices_are_ignored() {
    let (code, c) = efa(
        &Spec::p5_48xlarge(),
        |root| {
            let d = root.join("sys/class/infiniband/mlx5_0");
            std::fs::create_dir_all(d.join("device")).unwrap();
            std::fs::create_dir_all(d.join("ports/1")).unwrap();
            std::fs::write(d.join("device/vendor"), "0x15b3\n").unwrap();
            std::fs::write(d.join("device/device"), "0x101d\n").unwrap();
            std::fs::write(d.join("ports/1/state"), "1: DOWN\n").unwrap();
            std::fs::write(d.join("ports/1/phys_state"), "3: Disabled\n").unwrap();
        },
        &[],
    );
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["found"]["total"], 32);
}

#[test]
fn no_infiniband_class_on_an_efa_type_fails() {
    let mut s = Spec::p5_48xlarge();
    s.efa.clear();
    let (code, c) = efa(&s, |root| std::fs::remove_dir_all(root.join("sys/class/infiniband")).unwrap(), &[]);
    assert_eq!(code, 1);
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .starts_with("no RDMA devices at all (/sys/class/infiniband is missing): the efa driver is not loaded"),
        "{c}"
    );
    assert!(c["remedy"].as_str().unwrap().contains("aws-efa-installer"), "{c}");
}

#[test]
fn a_type_without_efa_skips() {
    let mut s = Spec::empty();
    s.dmi = Some(("Amazon EC2".into(), "g5.xlarge".into()));
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0);
    assert_eq!(c["status"], "skip");
    assert_eq!(c["required"], false);
    assert_eq!(c["summary"], "no EFA on this instance type, none found");
}

#[test]
fn an_unreadable_attribute_fails_naming_the_path() {
    let (code, c) = efa(
        &Spec::p5_48xlarge(),
        |root| {
            let state = root.join("sys/class/infiniband/rdmap79s0/ports/1/state");
            std::fs::remove_file(&state).unwrap();
            std::fs::create_dir(&state).unwrap();
        },
        &[],
    );
    assert_eq!(code, 1);
    let summary = c["summary"].as_str().unwrap();
    assert!(
        summary.contains("could not read: reading ") && summary.contains("sys/class/infiniband/rdmap79s0/ports/1/state: Is a directory"),
        "{summary}"
    );
}

#[test]
fn config_expect_overrides_the_catalog() {
    let mut s = Spec::p5_48xlarge();
    s.config = Some("[expect]\nefa = 31\n".into());
    s.efa.pop();
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["summary"], "31 of 31 EFA devices usable");
}
