//! `efa`: every EFA interface the instance type has, up and usable, on fixture trees, through the
//! binary as a user runs it (`nodeprep --output json check --only efa`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use nodeprep_fixtures::{Layout, Spec};
use serde_json::{json, Value};

/// Writes `spec`, lets `extra` change the tree, runs `nodeprep [args] --output json check --only
/// efa`, and returns the exit code and the `efa` check of the report.
fn efa(spec: &Spec, extra: impl FnOnce(&Path), args: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    spec.write(dir.path()).unwrap();
    extra(dir.path());
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["check", "--only", "efa"]);
    let o = crate::common::nodeprep(dir.path(), &all);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(v["checks"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["checks"][0]["name"], "efa");
    (o.status.code().unwrap(), v["checks"][0].clone())
}

fn summary(c: &Value) -> &str {
    c["summary"].as_str().unwrap_or_else(|| panic!("no summary: {c}"))
}

fn remedy(c: &Value) -> &str {
    c["remedy"].as_str().unwrap_or_else(|| panic!("no remedy: {c}"))
}

fn p5(layout: Layout) -> Spec {
    let mut s = Spec::p5_48xlarge();
    s.layout = layout;
    s
}

/// A Mellanox ConnectX device (vendor 0x15b3), port down, with a uverbs device of its own: not EFA.
fn add_mlx5(root: &Path) {
    let d = root.join("sys/class/infiniband/mlx5_0");
    std::fs::create_dir_all(d.join("device")).unwrap();
    std::fs::create_dir_all(d.join("ports/1")).unwrap();
    std::fs::write(d.join("device/vendor"), "0x15b3\n").unwrap();
    std::fs::write(d.join("device/device"), "0x101d\n").unwrap();
    std::fs::write(d.join("ports/1/state"), "1: DOWN\n").unwrap();
    std::fs::write(d.join("ports/1/phys_state"), "3: Disabled\n").unwrap();
    let uv = root.join("sys/class/infiniband_verbs/uverbs99");
    std::fs::create_dir_all(&uv).unwrap();
    std::fs::write(uv.join("ibdev"), "mlx5_0\n").unwrap();
    std::fs::write(root.join("sys/class/infiniband_verbs/abi_version"), "6\n").unwrap();
}

#[test]
fn healthy_p5_has_32_usable_devices() {
    let (code, c) = efa(&p5(Layout::Flat), |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["status"], "pass");
    assert_eq!(c["required"], true);
    assert_eq!(summary(&c), "32 of 32 EFA devices usable");
    assert_eq!(c["expected"]["devices"], 32);
    assert_eq!(c["found"]["devices"], 32);
    assert_eq!(c["found"]["total"], 32);
    assert_eq!(c["found"]["down"], json!([]));
    assert_eq!(c["found"]["down_state"], json!({}));
    assert_eq!(c["found"]["no_uverbs"], json!([]));
    assert_eq!(c["found"]["driver"], Value::Null);
    assert!(
        c["found"].get("placement_group").is_none(),
        "IMDS was not asked: nothing said about it: {c}"
    );
    assert!(c.get("remedy").is_none(), "{c}");
}

#[test]
fn the_driver_version_is_reported_when_the_module_exports_it() {
    let (code, c) = efa(
        &p5(Layout::Flat),
        |root| {
            std::fs::create_dir_all(root.join("sys/module/efa")).unwrap();
            std::fs::write(root.join("sys/module/efa/version"), "2.13.0g\n").unwrap();
        },
        &[],
    );
    assert_eq!(code, 0, "{c}");
    assert_eq!(summary(&c), "32 of 32 EFA devices usable, efa driver 2.13.0g");
    assert_eq!(c["found"]["driver"], "2.13.0g");
}

#[test]
fn symlinked_sysfs_layout_reads_the_same() {
    let (code, c) = efa(&p5(Layout::Symlinked), |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["status"], "pass");
    assert_eq!(summary(&c), "32 of 32 EFA devices usable");
    assert_eq!(c["found"]["devices"], 32);
    // Ports and uverbs are read through the links too: a broken device behind them is seen.
    let mut s = p5(Layout::Symlinked);
    s.efa[3].state = "1: DOWN".into();
    s.efa[4].dev_node = false;
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1, "{c}");
    assert_eq!(c["found"]["devices"], 30);
    assert_eq!(c["found"]["down"], json!([s.efa[3].name]));
    assert_eq!(c["found"]["no_uverbs"], json!([s.efa[4].name]));
}

#[test]
fn one_port_down_fails_naming_it() {
    let mut s = Spec::p5_48xlarge();
    s.efa[0].state = "1: DOWN".into();
    s.efa[0].phys_state = "3: Disabled".into();
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1);
    assert_eq!(c["status"], "fail");
    assert_eq!(c["required"], true);
    assert_eq!(
        summary(&c),
        "31 of 32 EFA devices usable; rdmap79s0 port DOWN (state 1: DOWN, phys 3: Disabled)"
    );
    assert_eq!(c["found"]["devices"], 31);
    assert_eq!(c["found"]["down"], json!(["rdmap79s0"]));
    assert_eq!(
        c["found"]["down_state"],
        json!({"rdmap79s0": {"state": "1: DOWN", "phys_state": "3: Disabled"}})
    );
    assert!(remedy(&c).contains("self-referencing rule"), "{c}");
    assert!(remedy(&c).contains("relaunch the instance"), "{c}");
}

#[test]
fn the_text_report_shows_the_failure_and_its_remedy() {
    let mut s = Spec::p5_48xlarge();
    s.efa[0].state = "1: DOWN".into();
    s.efa[0].phys_state = "3: Disabled".into();
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    let o = crate::common::nodeprep(dir.path(), &["check", "--only", "efa"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.starts_with("nodeprep: p5.48xlarge: NOT READY (1 required check failed)"), "{out}");
    assert!(out.contains("FAIL    efa    31 of 32 EFA devices usable; rdmap79s0 port DOWN (state 1: DOWN, phys 3: Disabled)\n"), "{out}");
    assert!(
        out.contains("remedy: the security group must allow all traffic to and from itself"),
        "{out}"
    );
}

#[test]
fn missing_uverbs_device_or_node_fails_naming_it() {
    let mut s = Spec::p5_48xlarge();
    s.efa[1].uverbs = None;
    s.efa[2].dev_node = false;
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1);
    assert_eq!(c["status"], "fail");
    assert_eq!(summary(&c), "30 of 32 EFA devices usable; rdmap80s0 has no uverbs device; rdmap81s0 has no /dev/infiniband/uverbs2");
    assert_eq!(c["found"]["devices"], 30);
    assert_eq!(c["found"]["no_uverbs"], json!(["rdmap80s0", "rdmap81s0"]));
    assert_eq!(c["found"]["down"], json!([]));
    assert!(remedy(&c).contains("modprobe ib_uverbs"), "{c}");
}

#[test]
fn a_missing_interface_fails_with_the_launch_remedy() {
    let mut s = Spec::p5_48xlarge();
    s.efa.pop();
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1);
    assert_eq!(c["status"], "fail");
    assert_eq!(summary(&c), "31 of 32 EFA devices usable; 1 not present (found 31)");
    assert!(remedy(&c).contains("EC2NodeClass"), "{c}");
    assert!(remedy(&c).contains("aws-efa-installer"), "{c}");
}

#[test]
fn several_problems_are_all_named_each_with_its_remedy() {
    let mut s = Spec::p5_48xlarge();
    s.efa.pop();
    s.efa[0].state = "1: DOWN".into();
    s.efa[1].uverbs = None;
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        summary(&c),
        "29 of 32 EFA devices usable; 1 not present (found 31); rdmap79s0 port DOWN (state 1: DOWN, phys 5: LinkUp); rdmap80s0 has no uverbs device"
    );
    let r = remedy(&c);
    for part in [
        "missing devices: make the launch template",
        "ports down: the security group",
        "no verbs device: load the verbs module",
    ] {
        assert!(r.contains(part), "{r}");
    }
}

#[test]
fn other_rdma_devices_are_ignored() {
    for layout in [Layout::Flat, Layout::Symlinked] {
        let (code, c) = efa(&p5(layout), add_mlx5, &[]);
        assert_eq!(code, 0, "{layout:?}: {c}");
        assert_eq!(c["status"], "pass", "{c}");
        assert_eq!(summary(&c), "32 of 32 EFA devices usable");
        assert_eq!(c["found"]["devices"], 32);
        assert_eq!(c["found"]["total"], 32);
        assert!(!c.to_string().contains("mlx5_0"), "{c}");
    }
}

#[test]
fn no_infiniband_class_on_an_efa_type_fails() {
    let mut s = Spec::p5_48xlarge();
    s.efa.clear();
    let (code, c) =
        efa(&s, |root| std::fs::remove_dir_all(root.join("sys/class/infiniband")).unwrap(), &[]);
    assert_eq!(code, 1);
    assert_eq!(c["status"], "fail");
    assert_eq!(c["required"], true);
    assert_eq!(
        summary(&c),
        "no RDMA devices at all (/sys/class/infiniband is missing): the efa driver is not loaded; expected 32 EFA devices"
    );
    assert_eq!(c["found"]["devices"], 0);
    assert!(remedy(&c).contains("aws-efa-installer"), "{c}");
}

#[test]
fn a_type_without_efa_skips() {
    // g5.xlarge: no EFA in the catalog, none on the node.
    let mut s = Spec::empty();
    s.dmi = Some(("Amazon EC2".into(), "g5.xlarge".into()));
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0);
    assert_eq!(c["status"], "skip");
    assert_eq!(c["required"], false);
    assert_eq!(summary(&c), "no EFA on this instance type, none found");
    assert_eq!(c["expected"]["devices"], 0);
}

#[test]
fn an_unknown_type_is_checked_for_consistency_only() {
    let mut s = Spec::p5_48xlarge();
    s.dmi = None;
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["status"], "pass");
    assert_eq!(c["required"], false);
    assert_eq!(
        summary(&c),
        "32 of 32 EFA devices usable (instance type unknown: consistency only)"
    );
    assert_eq!(c["expected"]["devices"], Value::Null);
    // With none present there is nothing to say.
    let (code, c) = efa(&Spec::empty(), |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["status"], "skip");
    assert_eq!(summary(&c), "no EFA devices found (instance type unknown: consistency only)");
}

#[test]
fn an_unreadable_attribute_fails_naming_the_path() {
    // A directory where the `state` file should be: reading it fails (EISDIR), even as root.
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
    assert_eq!(c["status"], "fail");
    let s = summary(&c);
    assert!(s.starts_with("31 of 32 EFA devices usable; could not read: reading "), "{s}");
    assert!(s.contains("sys/class/infiniband/rdmap79s0/ports/1/state: Is a directory"), "{s}");
    let errors = c["found"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{c}");
    assert!(errors[0].as_str().unwrap().contains("rdmap79s0/ports/1/state"), "{c}");
    // Its state is unknown, so it is not reported as down (and not blamed on the security group).
    assert_eq!(c["found"]["down"], json!([]));
    // Root cannot read it either: the remedy says what is wrong, not "run as root".
    assert!(
        remedy(&c).starts_with("the kernel failed to read the paths above: the efa driver"),
        "{c}"
    );
    assert!(!remedy(&c).contains("root"), "{c}");
}

#[test]
fn config_expect_overrides_the_catalog() {
    let mut s = Spec::p5_48xlarge();
    s.config = Some("[expect]\nefa = 31\n".into());
    s.efa.pop();
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(summary(&c), "31 of 31 EFA devices usable");
    assert_eq!(c["expected"]["devices"], 31);
}

#[test]
fn more_devices_than_expected_warns() {
    let mut s = Spec::p5_48xlarge();
    s.config = Some("[expect]\nefa = 16\n".into());
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0, "a warning is still ready: {c}");
    assert_eq!(c["status"], "warn");
    assert_eq!(summary(&c), "32 EFA devices, more than the 16 expected for this type, all usable");
    assert!(remedy(&c).contains("[expect] efa"), "{c}");
}

/// A minimal IMDSv2 on 127.0.0.1 (one request per connection): a token, the instance type, and the
/// placement group when given (404 otherwise, as for an instance outside any placement group).
fn fake_imds(placement_group: Option<&'static str>) -> String {
    fn answer(mut s: TcpStream, placement_group: Option<&str>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let req = String::from_utf8_lossy(&buf);
        let mut line = req.lines().next().unwrap_or("").split(' ');
        let (method, path) = (line.next().unwrap_or(""), line.next().unwrap_or(""));
        let (code, body) = match (method, path) {
            ("PUT", "/latest/api/token") => ("200 OK", "token-0"),
            ("GET", "/latest/meta-data/instance-type") => ("200 OK", "p5.48xlarge"),
            ("GET", "/latest/meta-data/placement/availability-zone") => ("200 OK", "us-east-2b"),
            ("GET", "/latest/meta-data/placement/group-name") if placement_group.is_some() => {
                ("200 OK", placement_group.unwrap())
            }
            _ => ("404 Not Found", ""),
        };
        let _ =
            write!(s, "HTTP/1.1 {code}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || answer(s, placement_group));
        }
    });
    format!("http://{addr}")
}

fn with_imds(placement_group: Option<&'static str>) -> Spec {
    let mut s = Spec::p5_48xlarge();
    s.config = Some(format!(
        "[imds]\nenabled = \"always\"\nendpoint = \"{}\"\n",
        fake_imds(placement_group)
    ));
    s
}

#[test]
fn outside_a_cluster_placement_group_warns_when_imds_says_so() {
    let (code, c) = efa(&with_imds(None), |_| {}, &[]);
    assert_eq!(code, 0, "a warning is still ready: {c}");
    assert_eq!(c["status"], "warn");
    assert_eq!(summary(&c), "32 of 32 EFA devices usable; not in a cluster placement group");
    assert!(remedy(&c).contains("placement group"), "{c}");
    assert!(c["found"].get("placement_group").is_none(), "{c}");

    let (code, c) = efa(&with_imds(Some("training-cpg")), |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["status"], "pass");
    assert_eq!(summary(&c), "32 of 32 EFA devices usable");
    assert_eq!(c["found"]["placement_group"], "training-cpg");
}

/// `serve` reads each device's port error counters every run: their sums in the report, one
/// series per device and counter; a counter that is not a number is named with its file, the
/// verdict stays on the devices. A one-shot `check` does not read them.
#[test]
fn serve_samples_port_error_counters_and_names_an_unreadable_one() {
    use std::process::Stdio;
    let dir = crate::common::tree(&Spec::p5_48xlarge());
    let root = dir.path();
    let counters = |dev: &str| root.join(format!("sys/class/infiniband/{dev}/ports/1/hw_counters"));
    std::fs::write(counters("rdmap79s0").join("rx_drops"), "7\n").unwrap();
    std::fs::write(counters("rdmap80s0").join("rx_drops"), "5\n").unwrap();
    std::fs::write(counters("rdmap81s0").join("retrans_pkts"), "lots\n").unwrap();
    std::fs::remove_file(counters("rdmap82s0").join("retrans_bytes")).unwrap();

    let (_, c) = efa(
        &Spec::p5_48xlarge(),
        |r| {
            std::fs::write(
                r.join("sys/class/infiniband/rdmap79s0/ports/1/hw_counters/rx_drops"),
                "7\n",
            )
            .unwrap()
        },
        &[],
    );
    assert!(c["found"].get("port_errors").is_none(), "check read the counters: {c}");

    let mut cmd =
        crate::common::Nodeprep::new(root).args(["serve", "--listen", "127.0.0.1:0"]).command();
    cmd.stderr(Stdio::null());
    let srv = crate::common::Server::spawn(cmd);
    let (_, _, body) = srv.wait_for("/status", 200);
    let report: Value = serde_json::from_str(&body).unwrap();
    let efa = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "efa").unwrap();
    assert_eq!(efa["status"], "pass", "{efa}");
    assert_eq!(efa["found"]["port_errors"]["rx_drops"], 12, "{efa}");
    let errors = efa["found"]["counter_errors"].to_string();
    assert!(
        errors.contains("rdmap81s0/ports/1/hw_counters/retrans_pkts")
            && errors.contains("\\\"lots\\\""),
        "{errors}"
    );
    let (_, _, m) = srv.get("/metrics");
    let line = |s: &str| m.lines().any(|l| l == s);
    assert!(
        line("nodeprep_efa_port_errors_total{device=\"rdmap79s0\",counter=\"rx_drops\"} 7"),
        "{m}"
    );
    assert!(
        line("nodeprep_efa_port_errors_total{device=\"rdmap82s0\",counter=\"retrans_pkts\"} 0"),
        "{m}"
    );
    // The device whose counter is unreadable has no series; the one without retrans_bytes lacks that one.
    assert!(!m.contains("nodeprep_efa_port_errors_total{device=\"rdmap81s0\""), "{m}");
    assert!(
        !m.contains(
            "nodeprep_efa_port_errors_total{device=\"rdmap82s0\",counter=\"retrans_bytes\"}"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "nodeprep_efa_port_errors_total{device=\"rdmap96s0\",counter=\"retrans_bytes\"}"
        ),
        "{m}"
    );
}
