//! The `nvidia` check as a user runs it: fixture trees for PCI, /dev, /proc and /dev/kmsg, and a
//! fake `libnvidia-ml.so.1` (tests/fake-nvml) loaded through NODEPREP_NVML_LIB, whose answers each
//! test writes in a control file (FAKE_NVML_CONFIG).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nodeprep_fixtures::{fake_nvml, Spec};
use serde_json::{json, Value};

use crate::common::{tree, Nodeprep};

/// The p5 fixture's GPU bus ids, as NVML writes them.
pub const P5_BUSES: [&str; 8] = [
    "00000000:53:00.0",
    "00000000:64:00.0",
    "00000000:75:00.0",
    "00000000:86:00.0",
    "00000001:97:00.0",
    "00000001:A8:00.0",
    "00000001:B9:00.0",
    "00000001:CA:00.0",
];

/// Where NVML comes from in a run.
enum Lib {
    /// The fake, built without these functions.
    Fake(&'static [&'static str]),
    /// This path in NODEPREP_NVML_LIB.
    Path(PathBuf),
    /// No NODEPREP_NVML_LIB: nodeprep searches under --root, then asks the loader.
    Search,
}

struct Run {
    code: i32,
    check: Value,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `nodeprep [args] check --only nvidia` on `root` with NVML from `lib` answering as
/// `control` says (None: the fake's default, a healthy p5.48xlarge).
fn run(root: &Path, lib: Lib, control: Option<&str>, args: &[&str], json: bool) -> Run {
    let mut cmd = Nodeprep::bare()
        .args([std::ffi::OsStr::new("--root"), root.as_os_str()])
        .args(args)
        .command();
    if json {
        cmd.args(["--output", "json"]);
    }
    cmd.args(["check", "--only", "nvidia"]);
    match lib {
        Lib::Fake(omit) => {
            cmd.env("NODEPREP_NVML_LIB", fake_nvml(omit));
        }
        Lib::Path(p) => {
            cmd.env("NODEPREP_NVML_LIB", p);
        }
        Lib::Search => {}
    }
    let ctl_dir = tempfile::tempdir().unwrap();
    if let Some(c) = control {
        let p = ctl_dir.path().join("fake-nvml.conf");
        std::fs::write(&p, c).unwrap();
        cmd.env("FAKE_NVML_CONFIG", p);
    }
    let t0 = Instant::now();
    let o: Output = cmd.output().expect("nodeprep runs");
    let elapsed = t0.elapsed();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let check = if json {
        let v: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
        assert_eq!(v["checks"].as_array().map(Vec::len), Some(1), "{stdout}");
        v["checks"][0].clone()
    } else {
        Value::Null
    };
    Run { code: o.status.code().expect("exit code"), check, stdout, stderr, elapsed }
}

fn p5() -> tempfile::TempDir {
    tree(&Spec::p5_48xlarge())
}

/// A control file for the p5's 8 GPUs, with `extra(i)` lines added under GPU i.
fn p5_control(extra: impl Fn(usize) -> String) -> String {
    let mut s = String::from("driver_version 550.127.05\n");
    for (i, b) in P5_BUSES.iter().enumerate() {
        s.push_str(&format!("gpu {b}\n{}", extra(i)));
    }
    s
}

fn summary(c: &Value) -> &str {
    c["summary"].as_str().unwrap_or_default()
}

#[test]
fn healthy_p5_passes_with_every_gpu_counted_three_ways() {
    let dir = p5();
    let r = run(dir.path(), Lib::Fake(&[]), None, &[], true);
    let c = &r.check;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(c["name"], "nvidia");
    assert_eq!(c["status"], "pass");
    assert_eq!(c["required"], true);
    assert_eq!(
        summary(c),
        "8 of 8 GPUs healthy (NVIDIA H100 80GB HBM3), driver 550.127.05, fabric complete"
    );
    assert_eq!(c["expected"], json!({"gpus": 8, "gpu_model": "H100", "nvswitch": true}));
    let f = &c["found"];
    assert_eq!(f["gpus"], 8);
    assert_eq!(f["driver_version"], "550.127.05");
    assert_eq!(f["driver_version_source"], "nvml");
    assert_eq!(f["xid_errors"], json!([]));
    assert_eq!(
        (&f["pci_gpus"], &f["dev_nodes"], &f["nvml_gpus"], &f["nvswitches"]),
        (&json!(8), &json!(8), &json!(8), &json!(4))
    );
    assert_eq!(f["fabric"], "fabric complete");
    let d0 = &f["devices"][0];
    assert_eq!(d0["pci"], "0000:53:00.0");
    assert_eq!(d0["uuid"], "GPU-6a1f3c2e-0b7d-4d2a-9c1e-5f8a2b3c4d00");
    assert_eq!(d0["memory_total_bytes"], 85520809984u64);
    assert_eq!(d0["ecc_uncorrected_volatile"], 0);
    assert_eq!(
        d0["remapped_rows"],
        json!({"corrected": 0, "uncorrected": 0, "pending": false, "failure": false})
    );
    assert_eq!(d0["healthy"], true);
    assert_eq!(f["devices"][7]["pci"], "0001:ca:00.0");
    // The text table says the same.
    let t = run(dir.path(), Lib::Fake(&[]), None, &[], false);
    assert_eq!(t.code, 0);
    assert!(
        t.stdout.contains("pass    nvidia  8 of 8 GPUs healthy (NVIDIA H100 80GB HBM3), driver 550.127.05, fabric complete"),
        "{}",
        t.stdout
    );
}

#[test]
fn the_library_is_found_under_the_root() {
    let dir = p5();
    let lib = dir.path().join("usr/lib64/libnvidia-ml.so.1");
    std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
    std::fs::copy(fake_nvml(&[]), &lib).unwrap();
    let r = run(dir.path(), Lib::Search, None, &[], true);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.check["status"], "pass");
    assert_eq!(r.check["found"]["nvml_library"], lib.display().to_string());
}

#[test]
fn a_gpu_on_pci_but_missing_from_nvml_fails_naming_its_bus_id() {
    let dir = p5();
    let mut control = String::from("driver_version 550.127.05\n");
    for b in P5_BUSES.iter().filter(|b| !b.contains(":75:")) {
        control.push_str(&format!("gpu {b}\n"));
    }
    let r = run(dir.path(), Lib::Fake(&[]), Some(&control), &[], true);
    let c = &r.check;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(c["status"], "fail");
    assert_eq!(summary(c), "NVML sees 7 of 8 GPUs: 0000:75:00.0 on PCI but not seen by NVML");
    assert_eq!(c["found"]["gpus"], 7);
    assert_eq!(c["found"]["nvml_gpus"], 7);
    assert_eq!(c["found"]["pci_gpus"], 8);
    assert!(c["remedy"].as_str().unwrap().contains("drain the node"), "{c}");
}

/// True when this machine has a real NVML the loader would find (a GPU test host).
fn machine_has_nvml() -> bool {
    let ldconfig = Command::new("ldconfig")
        .arg("-p")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    ldconfig.contains("libnvidia-ml.so.1")
        || ["/usr/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]
            .iter()
            .any(|d| Path::new(d).join("libnvidia-ml.so.1").exists())
}

#[test]
fn nvml_absent_fails_with_a_remedy() {
    let dir = p5();
    // Named but not there.
    let r = run(dir.path(), Lib::Path(dir.path().join("nope/libnvidia-ml.so.1")), None, &[], true);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.check["status"], "fail");
    assert!(summary(&r.check).starts_with("cannot load NVML "), "{}", r.check);
    assert!(summary(&r.check).contains("nope/libnvidia-ml.so.1: no such file"), "{}", r.check);
    assert!(r.check["remedy"].as_str().unwrap().contains("NODEPREP_NVML_LIB"), "{}", r.check);
    // Neither named nor under the root: the loader is asked last.
    if machine_has_nvml() {
        eprintln!("this machine has a real libnvidia-ml.so.1: the loader finds it, so 'absent' cannot be shown here");
        return;
    }
    let r = run(dir.path(), Lib::Search, None, &[], true);
    let c = &r.check;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(c["status"], "fail");
    assert_eq!(c["required"], true);
    assert!(
        summary(c).starts_with(
            "NVML not found: no libnvidia-ml.so.1 under --root (in /usr/lib64, /usr/lib/"
        ),
        "{c}"
    );
    assert!(summary(c).contains("and the dynamic loader has none"), "{c}");
    let remedy = c["remedy"].as_str().unwrap();
    assert!(
        remedy.starts_with("install the NVIDIA driver") && remedy.contains("set NODEPREP_NVML_LIB"),
        "{remedy}"
    );
    // What can be known without NVML is still reported, and nothing is called healthy.
    assert_eq!(c["found"]["gpus"], 0);
    assert_eq!(c["found"]["pci_gpus"], 8);
    assert_eq!(c["found"]["driver_version"], "550.127.05");
    assert_eq!(c["found"]["driver_version_source"], "/proc/driver/nvidia/version");
}

#[test]
fn a_hanging_nvml_call_is_reported_at_its_deadline() {
    let dir = p5();
    let control = p5_control(|i| {
        if i == 3 {
            "hang nvmlDeviceGetTotalEccErrors\n".into()
        } else {
            String::new()
        }
    });
    let r = run(dir.path(), Lib::Fake(&[]), Some(&control), &[], true);
    assert!(r.elapsed < Duration::from_secs(10), "took {:?}", r.elapsed);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.check["status"], "fail");
    assert!(
        summary(&r.check).starts_with(
            "NVML did not answer within 2000 ms (nvmlDeviceGetTotalEccErrors (GPU 3))"
        ),
        "{}",
        r.check
    );
    // Without NVML the fabric manager service is all there is to go on, and this tree has none.
    assert!(
        summary(&r.check).ends_with(", nvidia-fabricmanager is not running (NVSwitch fabric down)"),
        "{}",
        r.check
    );
    assert!(r.check["remedy"].as_str().unwrap().contains("hung"), "{}", r.check);
    assert_eq!(r.check["found"]["gpus"], 0);
    // A hang in init, with a shorter deadline from the config.
    let mut spec = Spec::p5_48xlarge();
    spec.config = Some("[nvidia]\nnvml_timeout_ms = 300\n".into());
    let dir = tree(&spec);
    let r = run(dir.path(), Lib::Fake(&[]), Some("hang nvmlInit_v2\n"), &[], true);
    assert!(r.elapsed < Duration::from_secs(10), "took {:?}", r.elapsed);
    assert_eq!(r.code, 1);
    assert!(
        summary(&r.check).starts_with("NVML did not answer within 300 ms (nvmlInit_v2)"),
        "{}",
        r.check
    );
}

#[test]
fn slow_calls_within_their_deadline_are_fine() {
    let mut spec = Spec::p5_48xlarge();
    spec.config = Some("[nvidia]\nnvml_timeout_ms = 1000\n".into());
    let dir = tree(&spec);
    // Each GPU's name takes 100 ms: 800 ms in all, but no call is late.
    let control = p5_control(|_| "delay nvmlDeviceGetName 100\n".into());
    let r = run(dir.path(), Lib::Fake(&[]), Some(&control), &[], true);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.check["status"], "pass");
}

#[test]
fn nvml_init_failure_fails_with_the_drivers_remedy() {
    let dir = p5();
    let r = run(dir.path(), Lib::Fake(&[]), Some("error nvmlInit_v2 9\n"), &[], true);
    assert_eq!(r.code, 1);
    assert!(
        summary(&r.check).contains("failed to start: nvmlInit_v2: NVIDIA driver is not loaded"),
        "{}",
        r.check
    );
    assert!(r.check["remedy"].as_str().unwrap().contains("modprobe nvidia"), "{}", r.check);
    let r = run(dir.path(), Lib::Fake(&[]), Some("error nvmlInit_v2 18\n"), &[], true);
    assert!(r.check["remedy"].as_str().unwrap().contains("reboot the node"), "{}", r.check);
}

#[test]
fn xid_79_fails_naming_the_gpu() {
    let mut spec = Spec::p5_48xlarge();
    spec.kmsg.push(
        "3,2210,86400123,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus."
            .into(),
    );
    let dir = tree(&spec);
    let r = run(dir.path(), Lib::Fake(&[]), None, &[], true);
    let c = &r.check;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(c["status"], "fail");
    assert_eq!(
        summary(c),
        "GPU 0 (0000:53:00.0): XID 79: pid=1234, GPU has fallen off the bus. [reboot: reboot the node]"
    );
    assert_eq!(c["found"]["gpus"], 7);
    assert_eq!(
        c["found"]["xid_errors"],
        json!([{"xid": 79, "pci": "0000:53:00.0", "message": "pid=1234, GPU has fallen off the bus.", "count": 1, "fatal": true, "gpu": 0, "bucket": "reboot", "action": "reboot the node"}])
    );
    assert_eq!(c["found"]["devices"][0]["healthy"], false);
    assert!(
        c["remedy"]
            .as_str()
            .unwrap()
            .starts_with("NVIDIA's XID catalog says to reboot: drain the node"),
        "{c}"
    );
}

#[test]
fn xid_13_warns_and_the_node_stays_ready() {
    let mut spec = Spec::p5_48xlarge();
    spec.kmsg.push(
        "4,2300,90000000,-;NVRM: Xid (PCI:0000:64:00): 13, pid='<unknown>', name=<unknown>, Graphics Exception: ESR 0x514648=0x1000f"
            .into(),
    );
    let dir = tree(&spec);
    let r = run(dir.path(), Lib::Fake(&[]), None, &[], true);
    let c = &r.check;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(c["status"], "warn");
    assert_eq!(
        summary(c),
        "8 of 8 GPUs healthy (NVIDIA H100 80GB HBM3), driver 550.127.05, fabric complete; XID 13: pid='<unknown>', name=<unknown>, Graphics Exception: ESR 0x514648=0x1000f [monitor: watch GPU 0000:64:00 for repeats] on GPU 1 (0000:64:00.0)"
    );
    assert_eq!(c["found"]["gpus"], 8);
    assert_eq!(c["found"]["xid_errors"][0]["xid"], 13);
    assert_eq!(c["found"]["xid_errors"][0]["pci"], "0000:64:00.0");
    assert_eq!(c["found"]["xid_errors"][0]["fatal"], false);
}

#[test]
fn the_fatal_list_is_configurable() {
    let mut spec = Spec::p5_48xlarge();
    spec.config = Some("[nvidia]\nfatal_xids = [13]\n".into());
    spec.kmsg.push(
        "4,2300,90000000,-;NVRM: Xid (PCI:0001:a8:00): 13, pid=77, Graphics Exception".into(),
    );
    spec.kmsg.push(
        "3,2301,90000001,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus."
            .into(),
    );
    let dir = tree(&spec);
    let r = run(dir.path(), Lib::Fake(&[]), None, &[], true);
    assert_eq!(r.code, 1);
    assert_eq!(
        summary(&r.check),
        "GPU 5 (0001:a8:00.0): XID 13: pid=77, Graphics Exception [monitor: watch GPU 0001:a8:00 for repeats]"
    );
    assert_eq!(r.check["found"]["xid_errors"][1]["fatal"], false);
}

#[test]
fn kmsg_fixture_is_a_regular_file_read_line_by_line() {
    let spec = Spec::p5_48xlarge();
    let dir = tree(&spec);
    assert!(std::fs::metadata(dir.path().join("dev/kmsg")).unwrap().is_file());
    let r = run(dir.path(), Lib::Fake(&[]), None, &[], true);
    assert_eq!(r.check["found"]["kmsg_records"], spec.kmsg.len());
    assert_eq!(r.check["found"]["xid_errors"], json!([]));
}

#[test]
fn a_100k_line_kmsg_is_parsed_completely() {
    let mut spec = Spec::p5_48xlarge();
    let base = spec.kmsg.len();
    for i in 0..100_000u64 {
        let line = match i % 25_000 {
            7 => format!("4,{},{},-;NVRM: Xid (PCI:0001:ca:00): 31, pid={i}, Ch 00000008, intr 10000000. MMU Fault", 5000 + i, i * 1000),
            _ => format!("6,{},{},-;systemd[1]: Started session-{i}.scope - Session {i} of User ec2-user.", 5000 + i, i * 1000),
        };
        spec.kmsg.push(line);
    }
    spec.kmsg.push("3,200000,999999999,-;NVRM: Xid (PCI:0000:86:00): 48, pid=9, An uncorrectable double bit error".into());
    let dir = tree(&spec);
    let r = run(dir.path(), Lib::Fake(&[]), None, &[], true);
    let c = &r.check;
    assert_eq!(c["found"]["kmsg_records"], base + 100_001);
    let x = c["found"]["xid_errors"].as_array().unwrap();
    assert_eq!(x.len(), 2, "{x:?}");
    assert_eq!(
        x[0],
        json!({"xid": 31, "pci": "0001:ca:00.0", "message": "pid=7, Ch 00000008, intr 10000000. MMU Fault", "count": 4, "fatal": false, "gpu": 7, "bucket": "monitor", "action": "watch GPU 0001:ca:00 for repeats"})
    );
    assert_eq!((&x[1]["xid"], &x[1]["fatal"], &x[1]["gpu"]), (&json!(48), &json!(true), &json!(3)));
    assert_eq!(r.code, 1);
    assert!(
        summary(c)
            .starts_with("GPU 3 (0000:86:00.0): XID 48: pid=9, An uncorrectable double bit error"),
        "{c}"
    );
}

#[test]
fn uncorrected_ecc_and_failed_remaps_make_gpus_unhealthy_pending_ones_warn() {
    let dir = p5();
    let control = p5_control(|i| match i {
        2 => "ecc_uncorrected 4\n".into(),
        6 => "remapped_rows 0 1 1 0\n".into(),
        7 => "remapped_rows 0 2 0 1\n".into(),
        _ => String::new(),
    });
    let r = run(dir.path(), Lib::Fake(&[]), Some(&control), &[], true);
    let c = &r.check;
    assert_eq!(r.code, 1);
    assert_eq!(c["found"]["gpus"], 6, "GPU 6's pending remap does not stop it");
    assert_eq!(
        summary(c),
        "GPU 2 (0000:75:00.0): 4 uncorrected ECC errors since the driver loaded, GPU 7 (0001:ca:00.0): row remapping failed"
    );
    assert_eq!(c["found"]["devices"][6]["healthy"], true);
    // Alone, a pending remap is a warning naming the GPU to reset; the node stays ready.
    let control = p5_control(|i| {
        if i == 6 {
            "remapped_rows 0 1 1 0\nretired_pending 1\n".into()
        } else {
            String::new()
        }
    });
    let r = run(dir.path(), Lib::Fake(&[]), Some(&control), &[], true);
    assert_eq!((r.code, r.check["status"].as_str()), (0, Some("warn")), "{}", r.check);
    assert!(summary(&r.check).contains("GPU 6 (0001:b9:00.0): row remapping pending (reset GPU 0001:b9:00 or reboot to apply it)"), "{}", r.check);
    assert!(
        summary(&r.check).contains("GPU 6 (0001:b9:00.0): retired pages pending"),
        "{}",
        r.check
    );
    assert!(r.check["remedy"].as_str().unwrap().contains("nvidia-smi -r -i"), "{}", r.check);
    assert_eq!(
        c["found"]["devices"][2]["problems"],
        json!(["4 uncorrected ECC errors since the driver loaded"])
    );
}

#[test]
fn a_lost_gpu_and_a_wrong_model_fail() {
    let dir = p5();
    let control = p5_control(|i| match i {
        4 => "error nvmlDeviceGetUUID 15\n".into(),
        5 => "name NVIDIA L40S\n".into(),
        _ => String::new(),
    });
    let r = run(dir.path(), Lib::Fake(&[]), Some(&control), &[], true);
    let c = &r.check;
    assert_eq!(r.code, 1);
    assert_eq!(c["found"]["gpus"], 6);
    assert!(
        summary(c)
            .contains("GPU 4 (0001:97:00.0): UUID: nvmlDeviceGetUUID: device fell off the bus"),
        "{c}"
    );
    assert!(summary(c).contains("GPU 5 (0001:a8:00.0): is a NVIDIA L40S, expected H100"), "{c}");
    assert_eq!(
        c["found"]["devices"][4]["uuid"],
        "error: nvmlDeviceGetUUID: device fell off the bus or has otherwise become inacessible"
    );
}

#[test]
fn fabric_not_complete_fails() {
    let dir = p5();
    let control = p5_control(|i| if i == 0 { "fabric 2 0\n".into() } else { String::new() });
    let r = run(dir.path(), Lib::Fake(&[]), Some(&control), &[], true);
    assert_eq!(r.code, 1);
    assert_eq!(summary(&r.check), "GPU 0 (0000:53:00.0): fabric registration still in progress");
    assert_eq!(r.check["found"]["fabric"], "fabric complete on 7 of 8 GPUs");
    assert!(
        r.check["remedy"].as_str().unwrap().contains("systemctl enable --now nvidia-fabricmanager"),
        "{}",
        r.check
    );
}

#[test]
fn a_driver_without_fabric_info_or_row_remapping_falls_back_and_reports_unknown() {
    const OLD: &[&str] = &["nvmlDeviceGetGpuFabricInfo", "nvmlDeviceGetRemappedRows"];
    let dir = p5();
    let r = run(dir.path(), Lib::Fake(OLD), None, &[], true);
    let c = &r.check;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(summary(c), "nvidia-fabricmanager is not running (NVSwitch fabric down)");
    assert_eq!(c["found"]["devices"][0]["remapped_rows"], "unknown");
    assert_eq!(c["found"]["devices"][0]["fabric_state"], "unknown");
    // The service runs: its pid file names a live nv-fabricmanager.
    let mut spec = Spec::p5_48xlarge();
    spec.files.push(("run/nvidia-fabricmanager/nv-fabricmanager.pid".into(), "2718\n".into()));
    spec.files.push(("proc/2718/comm".into(), "nv-fabricmanage\n".into()));
    let dir = tree(&spec);
    let r = run(dir.path(), Lib::Fake(OLD), None, &[], true);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.check["status"], "pass");
    assert_eq!(
        r.check["found"]["fabric"],
        "fabric manager running (pid 2718, from its pid file); NVML gives no fabric state"
    );
    assert!(r.stderr.is_empty() || !r.stderr.contains("panicked"), "{}", r.stderr);
}

#[test]
fn dev_nodes_missing_fail() {
    let mut spec = Spec::p5_48xlarge();
    spec.nvidia_dev_nodes = 6;
    let dir = tree(&spec);
    let r = run(dir.path(), Lib::Fake(&[]), None, &[], true);
    assert_eq!(r.code, 1);
    // The count, and each GPU without its node: those two are not healthy.
    assert_eq!(
        summary(&r.check),
        "6 of 8 /dev/nvidia<N> device nodes, GPU 6 (0001:b9:00.0): no /dev/nvidia6 device node, \
         GPU 7 (0001:ca:00.0): no /dev/nvidia7 device node"
    );
    assert_eq!(r.check["found"]["gpus"], 6, "{}", r.check);
    assert_eq!(r.check["found"]["devices"][6]["healthy"], false, "{}", r.check);
    assert!(r.check["remedy"].as_str().unwrap().contains("nvidia-persistenced"), "{}", r.check);
}

#[test]
fn types_without_gpus_skip_and_unknown_types_check_consistency() {
    let dir = tree(&Spec::empty());
    let r = run(dir.path(), Lib::Fake(&[]), None, &["--instance-type", "trn1.32xlarge"], true);
    assert_eq!(r.code, 0);
    assert_eq!((&r.check["status"], &r.check["required"]), (&json!("skip"), &json!(false)));
    assert_eq!(summary(&r.check), "trn1.32xlarge has no NVIDIA GPUs and none are present");
    let r = run(dir.path(), Lib::Search, None, &[], true);
    assert_eq!(r.check["status"], "skip");
    assert_eq!(summary(&r.check), "no NVIDIA GPUs on this node");
    // A type the catalog does not know: the three counts must agree, nothing is required.
    let dir = p5();
    let r = run(dir.path(), Lib::Fake(&[]), None, &["--instance-type", "m7i.large"], true);
    assert_eq!(r.code, 0);
    assert_eq!((&r.check["status"], &r.check["required"]), (&json!("pass"), &json!(false)));
    assert!(
        summary(&r.check).ends_with("instance type unknown: counts checked for consistency only"),
        "{}",
        r.check
    );
    let control = "gpu 00000000:53:00.0\n";
    let r = run(dir.path(), Lib::Fake(&[]), Some(control), &["--instance-type", "m7i.large"], true);
    assert_eq!(r.code, 0, "not required, so still ready");
    assert_eq!(r.check["status"], "warn");
    assert!(
        summary(&r.check).starts_with(
            "GPU counts disagree: 8 on PCI, 8 /dev/nvidia<N>, 1 in NVML: 0000:64:00.0"
        ),
        "{}",
        r.check
    );
}

/// In `serve` the check runs every interval: a call that never returns must not cost a thread per
/// run. While the first probe's call is stuck, later probes report that instead of asking again;
/// once it answers, NVML is asked again.
#[test]
fn a_stuck_nvml_is_not_asked_again_until_it_answers() {
    use nodeprep::capability::nvidia::nvml::{probe, Deadlines, LibChoice, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("fake-nvml.conf");
    std::fs::write(
        &control,
        format!("delay nvmlDeviceGetCount_v2 1500\n{}", p5_control(|_| String::new())),
    )
    .unwrap();
    // Only this test loads NVML in this process; the others run nodeprep as a child.
    std::env::set_var("FAKE_NVML_CONFIG", &control);
    let lib = LibChoice::Env(fake_nvml(&[]));
    let short = Deadlines { per_call: Duration::from_millis(200), total: Duration::from_secs(5) };
    match probe(lib.clone(), false, short) {
        Outcome::TimedOut { call, after_ms, .. } => {
            assert_eq!((call.as_str(), after_ms), ("nvmlDeviceGetCount_v2", 200))
        }
        other => panic!("{other:?}"),
    }
    match probe(lib.clone(), false, short) {
        Outcome::StillStuck { call, .. } => assert_eq!(call, "nvmlDeviceGetCount_v2"),
        other => panic!("{other:?}"),
    }
    // The slow call returns after 1.5 s; then NVML is asked again (patiently this time).
    let patient = Deadlines { per_call: Duration::from_secs(5), total: Duration::from_secs(8) };
    let t0 = Instant::now();
    loop {
        match probe(lib.clone(), false, patient) {
            Outcome::Answered(r) => {
                assert_eq!(r.gpus.len(), 8);
                break;
            }
            Outcome::StillStuck { .. } if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => panic!("{other:?}"),
        }
    }
}
