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
    for layout in [Layout::Flat, Layout::Symlinked] {
        let (code, c) = efa(&p5(layout), |_| {}, &[]);
        assert_eq!(code, 0, "{c}");
        assert_eq!(c["status"], "pass");
        assert_eq!(c["required"], true);
        assert_eq!(summary(&c), "32 of 32 EFA devices usable");
        assert_eq!(c["expected"]["devices"], 32);
        assert_eq!(c["found"]["devices"], 32);
        assert_eq!(c["found"]["attached"], 32, "{layout:?}: {c}");
        assert_eq!(c["found"]["expected_from"], "attached");
        assert_eq!(c["found"]["ceiling"], 32);
        assert_eq!(c["found"]["unbound"], json!([]));
        assert_eq!(c["found"]["no_uverbs"], json!([]));
        assert_eq!(c["found"]["driver"], Value::Null);
        // Counters: totals since the driver loaded, both scopes; rates need serve.
        assert_eq!(c["found"]["counters"]["completed_cmds"], 1234 * 32, "{c}");
        assert_eq!(c["found"]["port_errors"]["rx_drops"], 0);
        assert_eq!(c["found"]["rates"], Value::Null);
        assert!(c["found"]["rates_note"].as_str().unwrap().contains("nodeprep serve"), "{c}");
        assert!(c["found"].get("placement_group").is_none(), "IMDS was not asked: {c}");
        assert!(c.get("remedy").is_none(), "{c}");
    }
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

/// The efa driver reports every port ACTIVE/LinkUp whatever the network does: a port shown DOWN
/// (an old fixture, another driver) is reported, never failed, never blamed on a security group.
#[test]
fn port_state_is_reported_and_never_judged() {
    for layout in [Layout::Flat, Layout::Symlinked] {
        let mut s = p5(layout);
        s.efa[0].state = "1: DOWN".into();
        s.efa[0].phys_state = "3: Disabled".into();
        let (code, c) = efa(&s, |_| {}, &[]);
        assert_eq!(code, 0, "{c}");
        assert_eq!(c["status"], "pass");
        assert_eq!(c["found"]["down"], json!(["rdmap79s0"]));
        assert_eq!(c["found"]["ports"]["rdmap79s0"], "1: DOWN / 3: Disabled");
        assert!(!c.to_string().contains("security group"), "{c}");
    }
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
    assert_eq!(c["found"]["no_uverbs"], json!(["rdmap80s0", "rdmap81s0"]));
    assert!(remedy(&c).contains("modprobe ib_uverbs"), "{c}");
}

/// Karpenter attaches EFA only for pods that request it: a p5.48xlarge launched for a GPU-only
/// pod has none, and is healthy, unless config asks for them.
#[test]
fn a_p5_with_no_efa_attached_passes_with_a_note_unless_config_asks() {
    let mut s = Spec::p5_48xlarge_gpu_only();
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!((c["status"].as_str(), c["required"].as_bool()), (Some("pass"), Some(false)));
    assert_eq!(summary(&c), "0 EFA attached (p5.48xlarge supports 32; Karpenter attaches them only for pods that request vpc.amazonaws.com/efa)");
    for ask in ["\"max\"", "32"] {
        s.config = Some(format!("[expect]\nefa = {ask}\n"));
        let (code, c) = efa(&s, |_| {}, &[]);
        assert_eq!(code, 1, "{ask}: {c}");
        assert!(
            summary(&c).contains("32 not attached (config asks for 32, EC2 attached 0)"),
            "{c}"
        );
        assert_eq!(c["found"]["expected_from"], "config (expect.efa)");
        assert!(remedy(&c).contains("vpc.amazonaws.com/efa"), "{c}");
    }
    // And the whole node agrees: device-plugins expects no EFA either.
    let dir = tempfile::tempdir().unwrap();
    s.config = None;
    s.write(dir.path()).unwrap();
    let o = crate::common::nodeprep(
        dir.path(),
        &["--output", "json", "check", "--only", "device-plugins"],
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["checks"][0]["expected"]["vpc.amazonaws.com/efa"], 0, "{v}");
}

#[test]
fn an_attached_function_without_the_efa_driver_fails_naming_its_pci_address() {
    for layout in [Layout::Flat, Layout::Symlinked] {
        let mut s = p5(layout);
        s.efa[0].driver = None;
        s.efa[1].driver = Some("vfio-pci".into());
        let (code, c) = efa(&s, |_| {}, &[]);
        assert_eq!(code, 1, "{layout:?}: {c}");
        assert_eq!(summary(&c), "30 of 32 EFA devices usable; PCI 0000:4f:00.0 attached but no driver bound (efa not loaded?); PCI 0000:50:00.0 attached but bound to vfio-pci, not efa");
        assert_eq!(c["found"]["attached"], 32);
        assert_eq!(c["found"]["unbound"][1], json!({"pci": "0000:50:00.0", "driver": "vfio-pci"}));
        assert!(remedy(&c).starts_with("load the efa driver"), "{c}");
    }
}

#[test]
fn efa_driver_errors_of_this_boot_fail_the_device_they_name() {
    let mut s = Spec::p5_48xlarge();
    s.kmsg.push(
        "3,900,9123456,-;efa 0000:50:00.0: Failed to submit admin command (opcode 9) -110".into(),
    );
    s.kmsg.push("4,901,9123457,-;efa 0000:51:00.0: Admin command timed out".into());
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1, "{c}");
    assert!(summary(&c).starts_with("30 of 32 EFA devices usable; rdmap80s0 (0000:50:00.0) efa driver error this boot: Failed to submit admin command"), "{c}");
    assert!(
        summary(&c).contains(
            "rdmap81s0 (0000:51:00.0) efa driver error this boot: Admin command timed out"
        ),
        "{c}"
    );
    assert!(remedy(&c).contains("reboot"), "{c}");
}

#[test]
fn a_missing_interface_config_asked_for_fails_with_the_launch_remedy() {
    let mut s = Spec::p5_48xlarge();
    s.config = Some("[expect]\nefa = \"max\"\n".into());
    s.efa.pop();
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        summary(&c),
        "31 of 32 EFA devices usable; 1 not attached (config asks for 32, EC2 attached 31)"
    );
    assert!(remedy(&c).contains("EC2NodeClass"), "{c}");
    // Without the config, 31 attached is what must work.
    s.config = None;
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!((code, summary(&c)), (0, "31 of 31 EFA devices usable"), "{c}");
}

#[test]
fn several_problems_are_all_named_each_with_its_remedy() {
    let mut s = Spec::p5_48xlarge();
    s.config = Some("[expect]\nefa = 32\n".into());
    s.efa.pop();
    s.efa[0].driver = None;
    s.efa[1].uverbs = None;
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        summary(&c),
        "29 of 32 EFA devices usable; 1 not attached (config asks for 32, EC2 attached 31); PCI 0000:4f:00.0 attached but no driver bound (efa not loaded?); rdmap80s0 has no uverbs device"
    );
    let r = remedy(&c);
    for part in [
        "not attached: attach every EFA",
        "not bound: load the efa driver",
        "no verbs device: load the verbs module",
    ] {
        assert!(r.contains(part), "{r}");
    }
}

/// p6-b200's two mlx5 `ibp*` NVSwitch management ports, and any other RDMA device, are never
/// counted; they are named in found.other_rdma.
#[test]
fn other_rdma_devices_are_named_and_never_counted() {
    for layout in [Layout::Flat, Layout::Symlinked] {
        let mut s = p5(layout);
        s.rdma_other = vec![
            ("ibp154s0".into(), "0000:9a:00.0".into()),
            ("ibp192s0".into(), "0000:c0:00.0".into()),
        ];
        let (code, c) = efa(&s, add_mlx5, &[]);
        assert_eq!(code, 0, "{layout:?}: {c}");
        assert_eq!(summary(&c), "32 of 32 EFA devices usable");
        assert_eq!(c["found"]["attached"], 32);
        let other: Vec<&str> = c["found"]["other_rdma"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(other, ["ibp154s0", "ibp192s0", "mlx5_0"], "{c}");
        assert_eq!(c["found"]["other_rdma"][0]["driver"], "mlx5_core");
    }
}

#[test]
fn a_type_without_efa_skips_and_efa_on_it_warns() {
    let mut s = Spec::empty();
    s.dmi = Some(("Amazon EC2".into(), "g5.xlarge".into()));
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0);
    assert_eq!(c["status"], "skip");
    assert_eq!(summary(&c), "no EFA on this instance type, none attached");
    let mut s = Spec::p5_48xlarge();
    s.dmi = Some(("Amazon EC2".into(), "g5.xlarge".into()));
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0, "a warning is still ready: {c}");
    assert_eq!(c["status"], "warn");
    assert_eq!(summary(&c), "32 EFA devices attached, but g5.xlarge has none");
}

#[test]
fn an_unknown_type_judges_what_was_attached() {
    let mut s = Spec::p5_48xlarge();
    s.dmi = None;
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!((c["status"].as_str(), c["required"].as_bool()), (Some("pass"), Some(true)));
    assert_eq!(summary(&c), "32 of 32 EFA devices usable");
    assert_eq!(c["found"]["ceiling"], Value::Null);
    let (code, c) = efa(&Spec::empty(), |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(c["status"], "skip");
    assert_eq!(summary(&c), "no EFA attached (instance type unknown)");
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
    assert!(s.contains("could not read: reading "), "{s}");
    assert!(s.contains("sys/class/infiniband/rdmap79s0/ports/1/state: Is a directory"), "{s}");
    assert_eq!(c["found"]["down"], json!([]), "unknown is not down");
    assert!(
        remedy(&c).starts_with("the kernel failed to read the paths above: the efa driver"),
        "{c}"
    );
}

#[test]
fn config_expect_overrides_what_was_attached() {
    let mut s = Spec::p5_48xlarge();
    s.config = Some("[expect]\nefa = 31\n".into());
    s.efa.pop();
    let (code, c) = efa(&s, |_| {}, &[]);
    assert_eq!(code, 0, "{c}");
    assert_eq!(summary(&c), "31 of 31 EFA devices usable");
    assert_eq!(c["expected"]["devices"], 31);
    let (code, c) = efa(&Spec::p5_48xlarge(), |_| {}, &[]);
    assert_eq!((code, c["expected"]["devices"].as_u64()), (0, Some(32)));
}

/// `boot` waits (efa.init_wait_seconds) for attached EFA devices that are not ready yet, as p5en
/// initialises them late, and says how long it waited.
#[test]
fn boot_waits_for_late_efa_devices() {
    let mut s = Spec::p5en_48xlarge_late_efa();
    s.config = Some("[efa]\ninit_wait_seconds = 20\n[storage]\nenabled = \"never\"\n".into());
    let dir = crate::common::tree(&s);
    let nodes: Vec<_> =
        (0..4).map(|n| dir.path().join(format!("dev/infiniband/uverbs{n}"))).collect();
    let appear = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        for n in nodes {
            std::fs::write(n, "").unwrap();
        }
    });
    let t = std::time::Instant::now();
    let o = crate::common::nodeprep(dir.path(), &["boot"]);
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    appear.join().unwrap();
    assert!(out.contains("efa: waited 1.") || out.contains("efa: waited 2."), "{out}");
    assert!(out.contains("pass    efa"), "{out}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "it stopped waiting once they were ready"
    );
    // Never ready: it gives up at the limit and says so; the check then fails naming the device.
    let mut s = Spec::p5en_48xlarge_late_efa();
    s.config = Some("[efa]\ninit_wait_seconds = 1\n[storage]\nenabled = \"never\"\n".into());
    let dir = crate::common::tree(&s);
    let o = crate::common::nodeprep(dir.path(), &["boot"]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(out.contains("4 still not ready (efa.init_wait_seconds)"), "{out}");
    assert!(out.contains("rdmap32s0 has no /dev/infiniband/uverbs0"), "{out}");
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

/// `serve` reads every counter each run: sums in the report, one series per device and counter; a
/// counter that is not a number is named with its file and the verdict stays on the devices; error
/// counters rising faster than efa.rate_limits warn (or fail, with efa.rate_exceeded = "fail").
#[test]
fn serve_rates_error_counters_against_their_limits() {
    use std::process::Stdio;
    for (severity, want) in [("warn", "warn"), ("fail", "fail")] {
        let mut s = Spec::p5_48xlarge();
        s.config =
            Some(format!("[serve]\ninterval_seconds = 1\n[efa]\nrate_exceeded = \"{severity}\"\n"));
        let dir = crate::common::tree(&s);
        let root = dir.path().to_path_buf();
        let counters =
            |dev: &str| root.join(format!("sys/class/infiniband/{dev}/ports/1/hw_counters"));
        std::fs::write(counters("rdmap79s0").join("rx_drops"), "7\n").unwrap();
        std::fs::write(counters("rdmap80s0").join("rx_drops"), "5\n").unwrap();
        std::fs::write(counters("rdmap81s0").join("retrans_pkts"), "lots\n").unwrap();
        std::fs::remove_file(counters("rdmap82s0").join("retrans_bytes")).unwrap();
        let mut cmd = crate::common::Nodeprep::new(&root)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .command();
        cmd.stderr(Stdio::null());
        let srv = crate::common::Server::spawn(cmd);
        let efa_of = |srv: &crate::common::Server| -> Value {
            let (_, _, body) = srv.wait_for("/status", 200);
            let report: Value = serde_json::from_str(&body).unwrap();
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == "efa")
                .unwrap()
                .clone()
        };
        let e = efa_of(&srv);
        assert_eq!(e["status"], "pass", "{e}");
        assert_eq!(e["found"]["port_errors"]["rx_drops"], 12, "{e}");
        let errors = e["found"]["counter_errors"].to_string();
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
        assert!(line("nodeprep_efa_hw_stat_total{device=\"rdmap79s0\",scope=\"device\",counter=\"completed_cmds\"} 1234"), "{m}");
        assert!(!m.contains("nodeprep_efa_port_errors_total{device=\"rdmap81s0\""), "{m}");
        // rx_drops of rdmap80s0 jumps by 5000 within a second: over the 100/s limit.
        std::fs::write(counters("rdmap80s0").join("rx_drops"), "5005\n").unwrap();
        let t = std::time::Instant::now();
        let e = loop {
            let e = efa_of(&srv);
            if e["found"]["rates_over_limit"].is_array() {
                break e;
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(10), "never judged: {e}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        assert_eq!(e["status"], want, "{e}");
        let over = e["found"]["rates_over_limit"][0].as_str().unwrap();
        assert!(
            over.starts_with("rdmap80s0 rx_drops ") && over.ends_with("(limit 100/s)"),
            "{over}"
        );
        assert!(
            e["summary"].as_str().unwrap().contains("error counters rising: rdmap80s0 rx_drops"),
            "{e}"
        );
        assert!(e["found"]["rates"]["rdmap79s0"]["rx_drops"] == 0.0, "{e}");
        let (_, _, m) = srv.get("/metrics");
        assert!(
            m.contains("nodeprep_efa_error_rate{device=\"rdmap80s0\",counter=\"rx_drops\"}"),
            "{m}"
        );
        srv.terminate();
    }
}

/// The on-demand loopback against Debian's libfabric-bin: tcp through `lo` stands in for efa
/// (no EFA here), so the command line, output parsing, deadline and cleanup are real.
#[test]
fn the_loopback_runs_fi_pingpong_and_kills_it_at_its_deadline() {
    let bin = ["/usr/bin/fi_pingpong", "/opt/amazon/efa/bin/fi_pingpong"]
        .iter()
        .find(|p| Path::new(p).exists());
    assert!(bin.is_some(), "fi_pingpong is not installed: run scripts/test (it installs Debian's libfabric-bin), or `apt-get install libfabric-bin`");
    let run = |cfg: &str, env_path: Option<&str>| -> (i32, Value) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, format!("[imds]\nenabled = \"never\"\n[efa]\n{cfg}")).unwrap();
        let mut n = crate::common::Nodeprep::bare()
            .args(["--root", "/", "--config"])
            .args([&file])
            .args(["--output", "json", "check", "--only", "efa-loopback"]);
        if let Some(p) = env_path {
            n = n.env("PATH", p);
        }
        let o = n.output();
        let v: Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        (o.status.code().unwrap(), v["checks"][0].clone())
    };
    let tcp = "loopback_provider = \"tcp\"\nloopback_endpoint = \"msg\"\nloopback_domains = [\"lo\"]\nloopback_size = 65536\n";
    let (_, c) = run(&format!("{tcp}loopback_min_gbps = 0.001\n"), None);
    assert_eq!(c["status"], "pass", "{c}");
    assert!(c["found"]["devices"]["lo"]["gbps"].as_f64().unwrap() > 0.0, "{c}");
    assert!(summary(&c).contains("cannot prove the security group's self-referencing rule"), "{c}");
    println!("loopback through lo: {}", c["found"]["devices"]["lo"]);
    let (_, c) = run(&format!("{tcp}loopback_min_gbps = 100000\n"), None);
    assert_ne!(c["status"], "pass", "{c}");
    assert!(summary(&c).contains("below 100000 Gbit/s: lo "), "{c}");
    // A run that cannot finish in time (100 x 1 GiB over tcp): the deadline kills both processes.
    let t = std::time::Instant::now();
    let (_, c) = run("loopback_provider = \"tcp\"\nloopback_endpoint = \"msg\"\nloopback_domains = [\"lo\"]\nloopback_size = 1073741824\nloopback_timeout_seconds = 2\n", None);
    assert!(t.elapsed() < std::time::Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(
        c["found"]["devices"]["lo"]["error"]
            .as_str()
            .unwrap()
            .contains("did not finish within 2 s"),
        "{c}"
    );
    let left = std::process::Command::new("pgrep")
        .args(["-f", "fi_pingpong.*1073741824"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "fi_pingpong left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    // Not installed: a skip with the install hint, never a pass.
    let (_, c) = run(tcp, Some("/nonexistent"));
    assert_eq!(c["status"], "skip", "{c}");
    assert!(c["remedy"].as_str().unwrap().contains("libfabric-bin"), "{c}");
    // On a fixture tree it runs nothing.
    let (_, c) = {
        let dir = crate::common::tree(&Spec::p5_48xlarge());
        let o = crate::common::nodeprep(
            dir.path(),
            &["--output", "json", "check", "--only", "efa-loopback"],
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        (0, v["checks"][0].clone())
    };
    assert_eq!(c["status"], "skip");
    assert!(summary(&c).contains("--root /"), "{c}");
}
