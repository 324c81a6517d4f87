//! Each GPU generation's own way of being not ready, as a user sees it in `nodeprep check`: one
//! fixture per generation (tests/fixtures `GpuNode`) with the fake NVML answering as that
//! generation's driver does, the services its fabric needs, the GSP setting, the `/dev/char`
//! links (and `boot` making them), XIDs by what to do, NVSwitch SXids, and GPU hygiene.

use std::path::Path;

use nodeprep_fixtures::{fake_nvml, GpuNode, Services, Spec};
use serde_json::{json, Value};

use crate::common::{stdout, tree, Nodeprep};

/// `nodeprep --output json check --only nvidia` on `root`, NVML answering per `control` (empty:
/// the fake's default p5), built without `omit`. Returns the exit code and the check.
fn check(root: &Path, control: &str, omit: &[&str]) -> (i32, Value) {
    let ctl = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ctl.path(), control).unwrap();
    let mut n = Nodeprep::bare()
        .args([std::ffi::OsStr::new("--root"), root.as_os_str()])
        .args(["--output", "json", "check", "--only", "nvidia"])
        .env("NODEPREP_NVML_LIB", fake_nvml(omit));
    if !control.is_empty() {
        n = n.env("FAKE_NVML_CONFIG", ctl.path());
    }
    let o = n.output();
    let text = stdout(&o);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code().unwrap(), v["checks"][0].clone())
}

fn node_check(node: &GpuNode) -> (i32, Value) {
    let dir = tree(&node.spec);
    check(dir.path(), &node.nvml, &[])
}

fn summary(c: &Value) -> &str {
    c["summary"].as_str().unwrap_or_default()
}

fn remedy(c: &Value) -> &str {
    c["remedy"].as_str().unwrap_or_default()
}

#[test]
fn every_generation_healthy_gets_the_verdict_a_user_expects() {
    // (type, exit code, status, summary, named parts that must be ok)
    let cases: &[(&str, i32, &str, &str, &[&str])] = &[
        (
            "p4d.24xlarge",
            0,
            "pass",
            "8 of 8 GPUs healthy (NVIDIA A100-SXM4-40GB), driver 570.172.08, fabric complete",
            &["fabric-manager", "dev-char"],
        ),
        (
            "p5.48xlarge",
            0,
            "pass",
            "8 of 8 GPUs healthy (NVIDIA H100 80GB HBM3), driver 570.172.08, fabric complete",
            &["fabric-manager", "dev-char"],
        ),
        (
            "p5en.48xlarge",
            0,
            "pass",
            "8 of 8 GPUs healthy (NVIDIA H200), driver 570.172.08, fabric complete",
            &["fabric-manager", "dev-char"],
        ),
        (
            "p6-b200.48xlarge",
            0,
            "pass",
            "8 of 8 GPUs healthy (NVIDIA B200), driver 570.172.08, fabric complete",
            &["nvlsm", "fabric-manager", "dev-char"],
        ),
        (
            "p6e-gb200.36xlarge",
            0,
            "pass",
            "4 of 4 GPUs healthy (NVIDIA GB200), driver 570.172.08, NVLink fabric: 4 not supported (normal on GB200)",
            &["imex", "dev-char"],
        ),
        (
            "g5.xlarge",
            0,
            "pass",
            "1 of 1 GPUs healthy (NVIDIA A10G), driver 570.172.08",
            &["gsp-off", "dev-char"],
        ),
        ("g6f.large", 0, "pass", "1 fractional GPU healthy (NVIDIA L4-3Q), driver 570.172.08", &["dev-char"]),
        ("trn2.48xlarge", 0, "skip", "trn2.48xlarge has no NVIDIA GPUs and none are present", &[]),
    ];
    for (t, code, status, want, parts) in cases {
        let (got, c) = node_check(&GpuNode::of(t));
        assert_eq!((got, c["status"].as_str().unwrap()), (*code, *status), "{t}: {c}");
        assert_eq!(summary(&c), *want, "{t}: {c}");
        for p in *parts {
            assert_eq!(c["found"]["parts"][p]["status"], "ok", "{t}: part {p}: {c}");
        }
        let required = *t != "trn2.48xlarge";
        assert_eq!(c["required"], required, "{t}: {c}");
    }
    // A fractional type never asks for a whole GPU, and says it is a slice.
    let (_, c) = node_check(&GpuNode::of("g6f.large"));
    assert_eq!(c["expected"]["gpus"], Value::Null, "{c}");
    assert_eq!(c["expected"]["gpu_fraction"], true, "{c}");
}

#[test]
fn blackwell_without_nvlsm_fails_naming_nvlsm() {
    // Without NVLSM the fabric manager does not start either, and NVML says "in progress".
    let node = GpuNode::with("p6-b200.48xlarge", Services::default());
    let (code, c) = node_check(&node);
    assert_eq!(code, 1, "{c}");
    assert_eq!(c["status"], "fail");
    assert!(
        summary(&c).starts_with("NVLSM (NVLink subnet manager) is not running"),
        "{}",
        summary(&c)
    );
    assert!(summary(&c).contains("fabric registration still in progress"), "{c}");
    assert_eq!(c["found"]["parts"]["nvlsm"]["status"], "fail");
    assert_eq!(c["found"]["gpus"], 0, "no GPU can run CUDA");
    let r = remedy(&c);
    assert!(r.contains("NVLSM") && r.contains("cudaErrorSystemNotReady"), "{r}");
    assert!(!r.contains("start the fabric manager"), "the fabric's remedy is NVLSM's here: {r}");
    // With NVLSM back and the fabric manager running, it passes (see the healthy table).
    let node = GpuNode::with(
        "p6-b200.48xlarge",
        Services { fabric_manager: true, nvlsm: true, imex: false },
    );
    assert_eq!(node_check(&node).0, 0);
}

#[test]
fn gb200_needs_imex_and_not_the_fabric_manager() {
    // No fabric manager runs on GB200 (the rack's switch trays run the fabric): that is fine.
    let node = GpuNode::of("p6e-gb200.36xlarge");
    assert!(!node.spec.files.iter().any(|(p, _)| p.contains("fabricmanager")));
    assert_eq!(node_check(&node).0, 0);
    let node = GpuNode::with("p6e-gb200.36xlarge", Services::default());
    let (code, c) = node_check(&node);
    assert_eq!(code, 1, "{c}");
    assert_eq!(
        summary(&c),
        "the IMEX service (nvidia-imex) is not running: GB200's multi-node NVLink needs it"
    );
    assert!(remedy(&c).contains("systemctl enable --now nvidia-imex"), "{c}");
    assert_eq!(c["found"]["parts"]["imex"]["status"], "fail");
}

#[test]
fn g5_with_the_open_module_or_gsp_on_warns() {
    let mut node = GpuNode::of("g5.xlarge");
    node.spec.nvidia_driver = Some(nodeprep_fixtures::OPEN_KMOD.into());
    let (code, c) = node_check(&node);
    assert_eq!((code, c["status"].as_str()), (0, Some("warn")), "{c}");
    assert!(summary(&c).contains("the open NVIDIA kernel module is loaded"), "{c}");
    assert!(remedy(&c).contains("NVreg_EnableGpuFirmware=0"), "{c}");
    let mut node = GpuNode::of("g5.xlarge");
    node.spec.nvidia_params = Some("EnableGpuFirmware: 18\n".into());
    let (_, c) = node_check(&node);
    assert_eq!(c["found"]["parts"]["gsp-off"]["status"], "warn", "{c}");
    assert!(summary(&c).contains("GSP firmware is on (EnableGpuFirmware: 18)"), "{c}");
    // p5 does not care: its open module has GSP on.
    let (code, c) = node_check(&GpuNode::of("p5.48xlarge"));
    assert_eq!(code, 0, "{c}");
    assert!(c["found"]["parts"].get("gsp-off").is_none(), "{c}");
}

#[test]
fn a_fractional_type_without_its_gpu_fails() {
    let mut node = GpuNode::of("g6f.large");
    node.spec.pci.clear();
    node.spec.nvidia_dev_nodes = 0;
    let (code, c) = node_check(&GpuNode { nvml: "driver_version 570.172.08\n".into(), ..node });
    assert_eq!(code, 1, "{c}");
    assert_eq!(summary(&c), "no GPU on the PCI bus or in NVML: this type has a fractional L4 GPU");
}

#[test]
fn missing_dev_char_links_warn_and_boot_makes_them() {
    let mut spec = Spec::p5_48xlarge();
    spec.dev_char_links = false;
    let dir = tree(&spec);
    let (code, c) = check(dir.path(), "", &[]);
    assert_eq!((code, c["status"].as_str()), (0, Some("warn")), "{c}");
    assert!(
        summary(&c).contains(
            "10 of 10 NVIDIA device nodes have no /dev/char link: /dev/char/195:0 (/dev/nvidia0)"
        ),
        "{c}"
    );
    assert!(remedy(&c).contains("nodeprep boot"), "{c}");
    // The dry run shows each link and makes none.
    let dry = Nodeprep::new(dir.path()).args(["boot", "--dry-run"]).output();
    let text = stdout(&dry);
    assert!(text.contains("nvidia: would link /dev/char/195:0 -> ../nvidia0"), "{text}");
    assert!(text.contains("nvidia: would link /dev/char/195:255 -> ../nvidiactl"), "{text}");
    assert!(text.contains("nvidia: would link /dev/char/234:0 -> ../nvidia-uvm"), "{text}");
    assert!(!dir.path().join("dev/char").exists(), "a dry run changes nothing");
    // boot makes them; the check then passes that part.
    let o = Nodeprep::new(dir.path()).args(["boot"]).output();
    let text = stdout(&o);
    assert!(text.contains("nvidia: done: linked /dev/char/195:7 -> ../nvidia7"), "{text}");
    assert_eq!(
        std::fs::read_link(dir.path().join("dev/char/195:3")).unwrap(),
        Path::new("../nvidia3")
    );
    let (_, c) = check(dir.path(), "", &[]);
    assert_eq!(c["found"]["parts"]["dev-char"]["status"], "ok", "{c}");
    // A second boot has nothing to link, and a link someone else made to another node is left.
    std::fs::remove_file(dir.path().join("dev/char/195:5")).unwrap();
    std::os::unix::fs::symlink("../nvme0n1", dir.path().join("dev/char/195:5")).unwrap();
    let o = Nodeprep::new(dir.path()).args(["boot"]).output();
    let text = stdout(&o);
    assert!(
        text.contains(
            "nvidia: note: /dev/char/195:5 points to ../nvme0n1, not to /dev/nvidia5: left alone"
        ),
        "{text}"
    );
    assert_eq!(
        std::fs::read_link(dir.path().join("dev/char/195:5")).unwrap(),
        Path::new("../nvme0n1")
    );
}

/// Real character device nodes (made with mknod, as the driver's nvidia-modprobe does): the
/// numbers come from the nodes themselves, not from /proc/devices.
#[test]
fn device_numbers_of_real_nodes_come_from_the_nodes() {
    let mut spec = Spec::p5_48xlarge();
    spec.dev_char_links = false;
    spec.nvidia_dev_nodes = 0; // made below as real nodes
    let dir = tree(&spec);
    let dev = dir.path().join("dev");
    let mut made = true;
    for (name, major, minor) in
        [("nvidia0", 195, 0), ("nvidiactl", 195, 255), ("nvidia-uvm", 511, 0)]
    {
        let _ = std::fs::remove_file(dev.join(name));
        let ok = std::process::Command::new("mknod")
            .arg(dev.join(name))
            .args(["c", &major.to_string(), &minor.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        made &= ok;
    }
    if !made {
        println!("mknod is not permitted here: real device nodes NOT tested (the fixture path is)");
        return;
    }
    std::fs::write(dir.path().join("proc/devices"), nodeprep_fixtures::PROC_DEVICES).unwrap();
    let o = Nodeprep::new(dir.path()).args(["boot", "--dry-run"]).output();
    let text = stdout(&o);
    // 511, from the node: /proc/devices says 234.
    assert!(text.contains("nvidia: would link /dev/char/511:0 -> ../nvidia-uvm"), "{text}");
    assert!(text.contains("nvidia: would link /dev/char/195:255 -> ../nvidiactl"), "{text}");
}

#[test]
fn xids_say_what_to_do_and_xid_154_is_judged_by_its_action() {
    let mut spec = Spec::p5_48xlarge();
    spec.kmsg.push("3,2210,86400123,-;NVRM: Xid (PCI:0000:75:00): 48, pid=9, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.".into());
    spec.kmsg.push("4,2211,86400124,-;NVRM: Xid (PCI:0000:86:00): 154, GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)".into());
    spec.kmsg.push("4,2212,86400125,-;NVRM: Xid (PCI:0001:97:00): 154, GPU recovery action changed from 0x1 (GPU Reset Required) to 0x0 (None)".into());
    let dir = tree(&spec);
    let (code, c) = check(dir.path(), "", &[]);
    assert_eq!(code, 1, "{c}");
    let s = summary(&c);
    assert!(
        s.contains("GPU 2 (0000:75:00.0): XID 48: pid=9, An uncorrectable double bit error"),
        "{s}"
    );
    assert!(s.contains("[reset-gpu: reset GPU 0000:75:00]"), "{s}");
    assert!(s.contains("GPU 3 (0000:86:00.0): XID 154: GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required) [reboot: reboot the node]"), "{s}");
    let x = c["found"]["xid_errors"].as_array().unwrap();
    let by = |xid: u64, pci: &str| {
        x.iter().find(|e| e["xid"] == xid && e["pci"] == pci).unwrap().clone()
    };
    assert_eq!(
        (by(48, "0000:75:00.0")["bucket"].as_str(), by(48, "0000:75:00.0")["fatal"].as_bool()),
        (Some("reset-gpu"), Some(true))
    );
    assert_eq!(
        by(154, "0000:86:00.0")["fatal"],
        true,
        "154 is not in the fatal list; its action is"
    );
    assert_eq!(by(154, "0001:97:00.0")["fatal"], false, "recovered: action None");
    assert_eq!(by(154, "0001:97:00.0")["bucket"], "ignore");
    assert_eq!(c["found"]["gpus"], 6);
    let r = remedy(&c);
    assert!(r.contains("NVIDIA's XID catalog says to reboot"), "{r}");
    assert!(r.contains("nvidia-smi -r -i"), "{r}");
}

#[test]
fn nvswitch_sxids_are_read() {
    let mut spec = Spec::p5_48xlarge();
    spec.kmsg.push("4,3000,90000000,-;nvidia-nvswitch0: SXid (PCI:0000:07:00.0): 12028, Non-fatal, Link 44 egress non-posted PRIV error (First)".into());
    let dir = tree(&spec);
    let (code, c) = check(dir.path(), "", &[]);
    assert_eq!((code, c["status"].as_str()), (0, Some("warn")), "{c}");
    assert!(
        summary(&c).contains(
            "NVSwitch 0000:07:00.0: SXid 12028: Link 44 egress non-posted PRIV error (First)"
        ),
        "{c}"
    );
    spec.kmsg.push("3,3001,90000001,-;nvidia-nvswitch2: SXid (PCI:0000:09:00.0): 24007, Fatal, Link 30 sourcetrack TCEN0 crumbstore ECC DBE Error (First)".into());
    let dir = tree(&spec);
    let (code, c) = check(dir.path(), "", &[]);
    assert_eq!(code, 1, "{c}");
    assert!(summary(&c).starts_with("NVSwitch 0000:09:00.0: SXid 24007: Link 30 sourcetrack TCEN0 crumbstore ECC DBE Error (First) (fatal)"), "{c}");
    assert_eq!(c["found"]["gpus"], 0, "a broken fabric stops every GPU");
    assert!(remedy(&c).contains("reset the fabric"), "{c}");
    assert_eq!(
        c["found"]["sxid_errors"][1],
        json!({"sxid": 24007, "pci": "0000:09:00.0", "fatal": true, "message": "Link 30 sourcetrack TCEN0 crumbstore ECC DBE Error (First)"})
    );
}

#[test]
fn gpu_hygiene_warns_and_the_node_stays_ready() {
    let node = GpuNode::of("p5.48xlarge");
    let dir = tree(&node.spec);
    let mut control = String::from("driver_version 570.172.08\n");
    for (i, b) in node.buses.iter().enumerate() {
        control.push_str(&format!("gpu {b}\n"));
        match i {
            1 => control.push_str("persistence 0\n"),
            2 => control.push_str("clock_events 0x48\n"),
            _ => {}
        }
    }
    let (code, c) = check(dir.path(), &control, &[]);
    assert_eq!((code, c["status"].as_str()), (0, Some("warn")), "{c}");
    let s = summary(&c);
    assert!(s.contains("GPU 1 (0000:20:00.0): persistence mode off"), "{s}");
    assert!(s.contains("GPU 2 (0000:30:00.0): clocks held down by hardware slowdown, hardware thermal slowdown (clock event reasons 0x48)"), "{s}");
    assert_eq!(c["found"]["gpus"], 8);
    assert!(remedy(&c).contains("nvidia-persistenced"), "{c}");
    // A driver before R535 has only the old name of the call: still read.
    let (_, c) = check(dir.path(), &control, &["nvmlDeviceGetCurrentClocksEventReasons"]);
    assert!(summary(&c).contains("clocks held down by hardware slowdown"), "{c}");
    // A driver with neither, and without persistence mode: unknown, no warning, no crash.
    let old = [
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetCurrentClocksThrottleReasons",
        "nvmlDeviceGetPersistenceMode",
    ];
    let (code, c) = check(dir.path(), &control, &old);
    assert_eq!((code, c["status"].as_str()), (0, Some("pass")), "{c}");
}
