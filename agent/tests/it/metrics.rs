//! `/metrics` tells what `/status` tells: for a healthy p5.48xlarge and each failure the fixtures
//! can make, every series of a run agrees with the report of the same run, and no gauge says a node
//! is whole while its check fails. The format checks are `promtool check metrics` (text 0.0.4) and
//! prometheus_client's strict OpenMetrics parser; prometheus.rs has a real Prometheus scrape it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use nodeprep_fixtures::{proc_limits, Spec};
use serde_json::Value;

use crate::common::{tree, Nodeprep, Server};

/// One series: name and labels (sorted) → value.
pub type Series = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// Parses text exposition (0.0.4 or OpenMetrics) into series; panics on a line it cannot read.
pub fn parse(text: &str) -> Series {
    let mut out = Series::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
        };
        let (name, labels) = match head.split_once('{') {
            None => (head.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"));
                let mut labels = BTreeMap::new();
                // Values here hold no `",` (device names, PCI addresses, numbers).
                for pair in body.split("\",").map(|p| p.trim_end_matches('"')) {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line:?}"));
                    labels.insert(k.to_string(), v.to_string());
                }
                (name.to_string(), labels)
            }
        };
        assert!(out.insert((name, labels), value).is_none(), "series twice: {line}");
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn get(s: &Series, name: &str, l: &[(&str, &str)]) -> Option<f64> {
    s.get(&(name.to_string(), labels(l))).copied()
}

/// Every series named `name`.
fn all<'a>(s: &'a Series, name: &str) -> Vec<(&'a BTreeMap<String, String>, f64)> {
    s.iter().filter(|((n, _), _)| n == name).map(|((_, l), v)| (l, *v)).collect()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

/// One run of `serve` on `root`: its report and its metrics, taken after that one run.
fn scrape(root: &Path, env: &[(&str, &str)]) -> (Value, String) {
    let mut cmd = Nodeprep::new(root).args(["serve", "--listen", "127.0.0.1:0"]).command();
    cmd.envs(env.iter().copied()).stderr(Stdio::null());
    let srv = Server::spawn(cmd);
    let (code, _, body) = srv.wait_for("/status", 200);
    assert_eq!(code, 200, "no report from serve on {}", root.display());
    let report: Value = serde_json::from_str(&body).unwrap();
    let (_, _, metrics) = srv.get("/metrics");
    (report, metrics)
}

/// The agreement of one run's metrics with its report.
fn agrees(what: &str, report: &Value, text: &str) {
    let m = parse(text);
    let ready = f64::from(u8::from(report["ready"] == true));
    assert_eq!(get(&m, "nodeprep_ready", &[]), Some(ready), "{what}: ready");
    for c in report["checks"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        for st in ["pass", "warn", "fail", "skip"] {
            let want = f64::from(u8::from(c["status"] == st));
            let got = get(&m, "nodeprep_check_status", &[("check", name), ("status", st)]);
            assert_eq!(got, Some(want), "{what}: {name} {st}");
        }
        let req = f64::from(u8::from(c["required"] == true));
        assert_eq!(get(&m, "nodeprep_check_required", &[("check", name)]), Some(req), "{what}");
    }
    let num = |v: &Value| v.as_f64();
    // efa: the count, the expected count, each device.
    let efa = check(report, "efa");
    assert_eq!(get(&m, "nodeprep_efa_devices_up", &[]), num(&efa["found"]["devices"]), "{what}");
    assert_eq!(
        get(&m, "nodeprep_efa_devices_expected", &[]),
        num(&efa["expected"]["devices"]),
        "{what}"
    );
    let usable: f64 = all(&m, "nodeprep_efa_device_usable").iter().map(|(_, v)| v).sum();
    assert_eq!(Some(usable), num(&efa["found"]["devices"]), "{what}: per-device usable");
    // nvidia: healthy, expected, each GPU, each XID.
    let nv = check(report, "nvidia");
    assert_eq!(get(&m, "nodeprep_gpus_healthy", &[]), num(&nv["found"]["gpus"]), "{what}");
    assert_eq!(get(&m, "nodeprep_gpus_expected", &[]), num(&nv["expected"]["gpus"]), "{what}");
    for d in nv["found"]["devices"].as_array().into_iter().flatten() {
        let (gpu, pci) =
            (d["index"].to_string(), d["pci"].as_str().unwrap_or_default().to_string());
        let want = f64::from(u8::from(d["healthy"] == true));
        assert_eq!(
            get(&m, "nodeprep_gpu_healthy", &[("gpu", &gpu), ("pci", &pci)]),
            Some(want),
            "{what}: GPU {gpu}"
        );
    }
    let xids: Vec<(String, String, String, f64)> = nv["found"]["xid_errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            (
                x["xid"].to_string(),
                x["pci"].as_str().unwrap().into(),
                x["fatal"].to_string(),
                x["count"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut series: Vec<(String, String, String, f64)> = all(&m, "nodeprep_xid_errors")
        .into_iter()
        .map(|(l, v)| (l["xid"].clone(), l["pci"].clone(), l["fatal"].clone(), v))
        .collect();
    series.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut want = xids;
    want.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(series, want, "{what}: XIDs");
    // storage and limits.
    let st = check(report, "storage");
    assert_eq!(get(&m, "nodeprep_storage_disks", &[]), num(&st["found"]["disks"]), "{what}");
    let mounted = st["found"]["mounted"].as_bool().map(|b| f64::from(u8::from(b)));
    assert_eq!(get(&m, "nodeprep_storage_mounted", &[]), mounted, "{what}");
    let lim = check(report, "limits");
    for k in ["memlock", "stack"] {
        let want = match &lim["found"][k] {
            Value::String(s) if s == "unlimited" => Some(f64::INFINITY),
            v => v.as_f64(),
        };
        assert_eq!(get(&m, "nodeprep_pod_rlimit_bytes", &[("limit", k)]), want, "{what}: {k}");
    }
    // No gauge says the hardware is whole while its required check fails.
    if nv["status"] == "fail" && nv["required"] == true {
        let (h, e) =
            (get(&m, "nodeprep_gpus_healthy", &[]), get(&m, "nodeprep_gpus_expected", &[]));
        assert!(
            h < e || nv["found"]["pci_gpus"].as_f64() > e,
            "{what}: nvidia fails but {h:?} of {e:?} GPUs healthy"
        );
    }
    if efa["status"] == "fail" && efa["required"] == true {
        let (u, e) = (
            get(&m, "nodeprep_efa_devices_up", &[]),
            get(&m, "nodeprep_efa_devices_expected", &[]),
        );
        assert!(u < e, "{what}: efa fails but {u:?} of {e:?} devices up");
    }
}

type Break = Box<dyn Fn(&Path)>;
/// A fault: what it is, the tree, how the test breaks it, the environment serve runs with.
type Case = (&'static str, Spec, Break, Vec<(&'static str, String)>);

#[test]
fn every_gauge_agrees_with_the_report_for_each_failure() {
    let p5 = Spec::p5_48xlarge();
    let efa0 = p5.efa[0].clone();
    let mut cases: Vec<Case> = vec![
        ("healthy", p5.clone(), Box::new(|_| {}), vec![]),
        (
            "an EFA device's uverbs node gone",
            p5.clone(),
            Box::new(|r: &Path| {
                std::fs::remove_file(r.join("dev/infiniband/uverbs0")).unwrap();
            }),
            vec![],
        ),
        (
            "an EFA device gone",
            p5.clone(),
            Box::new(move |r: &Path| {
                std::fs::remove_dir_all(r.join(format!("sys/class/infiniband/{}", efa0.name)))
                    .unwrap();
            }),
            vec![],
        ),
        (
            "a uverbs node gone",
            p5.clone(),
            Box::new(|r: &Path| {
                std::fs::remove_file(r.join("dev/infiniband/uverbs5")).unwrap();
            }),
            vec![],
        ),
        (
            "/dev/nvidia3 gone",
            p5.clone(),
            Box::new(|r: &Path| {
                std::fs::remove_file(r.join("dev/nvidia3")).unwrap();
            }),
            vec![],
        ),
        (
            "every NVIDIA device node gone",
            p5.clone(),
            Box::new(|r: &Path| {
                for i in 0..8 {
                    std::fs::remove_file(r.join(format!("dev/nvidia{i}"))).unwrap();
                }
            }),
            vec![],
        ),
        (
            "a GPU's PCI class gone",
            p5.clone(),
            Box::new(|r: &Path| {
                std::fs::remove_file(r.join("sys/bus/pci/devices/0000:53:00.0/class")).unwrap();
            }),
            vec![],
        ),
        (
            "XID 79 and XID 13",
            p5.clone(),
            Box::new(|r: &Path| {
                let mut k = std::fs::read_to_string(r.join("dev/kmsg")).unwrap();
                k.push_str("3,900,9000000,-;NVRM: Xid (PCI:0000:75:00): 79, pid=1, GPU has fallen off the bus.\n");
                k.push_str(
                    "4,901,9000001,-;NVRM: Xid (PCI:0000:64:00): 13, pid=2, Graphics Exception\n",
                );
                k.push_str("3,902,9000002,-;NVRM: Xid (PCI:0000:75:00): 79, pid=1, GPU has fallen off the bus.\n");
                std::fs::write(r.join("dev/kmsg"), k).unwrap();
            }),
            vec![],
        ),
        (
            "NVML absent",
            p5.clone(),
            Box::new(|_| {}),
            vec![("NODEPREP_NVML_LIB", "/nonexistent/libnvidia-ml.so.1".into())],
        ),
        ("fabric registration in progress", p5.clone(), Box::new(|_| {}), vec![]),
        (
            "storage not mounted",
            p5.clone(),
            Box::new(|r: &Path| {
                let m = std::fs::read_to_string(r.join("proc/1/mountinfo")).unwrap();
                let kept: String = m
                    .lines()
                    .filter(|l| !l.contains(" 9:127 "))
                    .map(|l| format!("{l}\n"))
                    .collect();
                std::fs::write(r.join("proc/1/mountinfo"), kept).unwrap();
            }),
            vec![],
        ),
        (
            "a disk gone",
            p5.clone(),
            Box::new(|r: &Path| {
                std::fs::remove_dir_all(r.join("sys/block/nvme8n1")).unwrap();
            }),
            vec![],
        ),
        (
            "containerd at 64 KiB memlock",
            p5.clone(),
            Box::new(|r: &Path| {
                std::fs::remove_file(r.join("etc/containerd/base-runtime-spec.json")).unwrap();
                std::fs::write(
                    r.join("proc/1843/limits"),
                    proc_limits(Some(64 << 10), Some(8 << 20)),
                )
                .unwrap();
            }),
            vec![],
        ),
        (
            "no device plugin checkpoint",
            p5.clone(),
            Box::new(|r: &Path| {
                std::fs::remove_file(
                    r.join("var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"),
                )
                .unwrap();
            }),
            vec![],
        ),
        ("an unknown instance type", Spec::empty(), Box::new(|_| {}), vec![]),
    ];
    // Fabric registration in progress on two GPUs, through the fake NVML's control file.
    let ctl = tempfile::tempdir().unwrap();
    let control = ctl.path().join("fabric.conf");
    let text: String = crate::nvidia::P5_BUSES
        .iter()
        .enumerate()
        .map(|(i, b)| format!("gpu {b}\n{}", if i < 2 { "fabric 2 0\n" } else { "" }))
        .collect();
    std::fs::write(&control, text).unwrap();
    let fabric = cases.iter_mut().find(|c| c.0 == "fabric registration in progress").unwrap();
    fabric.3.push(("FAKE_NVML_CONFIG", control.display().to_string()));
    let mut seen_fail = 0;
    for (what, spec, break_it, env) in &cases {
        let dir = tree(spec);
        break_it(dir.path());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (report, metrics) = scrape(dir.path(), &env);
        agrees(what, &report, &metrics);
        if report["ready"] == false {
            seen_fail += 1;
        }
        println!("{what}: ready {}, metrics agree", report["ready"]);
    }
    assert_eq!(
        seen_fail,
        cases.len() - 2,
        "every broken tree (all but healthy and unknown) is not ready"
    );
}

/// promtool (text 0.0.4) and prometheus_client's OpenMetrics parser (the strict one Python
/// clients use) accept what `/metrics` writes, with XIDs and a failing check in it.
#[test]
fn both_formats_pass_their_parsers() {
    let dir = tree(&Spec::p5_48xlarge());
    let mut k = std::fs::read_to_string(dir.path().join("dev/kmsg")).unwrap();
    k.push_str(
        "3,900,9000000,-;NVRM: Xid (PCI:0000:75:00): 79, pid=1, GPU has fallen off the bus.\n",
    );
    std::fs::write(dir.path().join("dev/kmsg"), k).unwrap();
    let mut cmd = Nodeprep::new(dir.path()).args(["serve", "--listen", "127.0.0.1:0"]).command();
    cmd.stderr(Stdio::null());
    let srv = Server::spawn(cmd);
    srv.wait_for("/status", 200);
    let (_, _, text) = srv.get("/metrics");
    let (_, head, open) = srv.request(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n",
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let promtool = crate::prometheus::tool("promtool");
    let mut p = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let python = crate::prometheus::python_with_prometheus_client();
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
                  fams = list(p(sys.stdin.read()))\nprint(len(fams), sum(len(f.samples) for f in fams))\n";
    let mut p = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(open.as_bytes()).unwrap();
    let o = p.wait_with_output().unwrap();
    assert!(o.status.success(), "OpenMetrics parser: {}", String::from_utf8_lossy(&o.stderr));
    println!("OpenMetrics: {} families, samples", String::from_utf8_lossy(&o.stdout).trim());
    // The same series in both formats.
    assert_eq!(parse(&text), parse(&open));
}
