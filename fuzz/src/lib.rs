//! What each fuzz target checks, for any input: the parser returns (no panic, no hang, no overflow)
//! and what it returns is well-formed; where a parser's output can be printed and read back, it
//! reads back the same. The targets in `fuzz_targets/` call these functions, and so does
//! `agent/tests/fuzz_props.rs` (it includes this file), which runs them on random input in the
//! normal test suite and replays every file under `fuzz/regressions/<target>/`.

use std::path::{Path, PathBuf};

use nodeprep::capability::device_plugins;
use nodeprep::capability::efa;
use nodeprep::capability::limits;
use nodeprep::capability::nvidia::{self, xid as kmsg, PciAddr};
use nodeprep::config::{self, Limit, LimitsConfig};
use nodeprep::host::imds;
use nodeprep::host::mountinfo;
use nodeprep::host::Host;
use nodeprep::identity::Identity;
use serde_json::Value;

/// A check run on one input.
pub type Target = fn(&[u8]);

/// Every target, by name (the names of the fuzz binaries and of the folders in `fuzz/regressions`).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("kmsg", kmsg),
    ("proc_limits", proc_limits),
    ("sysfs", sysfs),
    ("pci_addr", pci_addr),
    ("checkpoint", checkpoint),
    ("imds_reply", imds_reply),
    ("nvidia_version", nvidia_version),
    ("runtime_spec", runtime_spec),
    ("containerd_config", containerd_config),
    ("mountinfo", mountinfo),
    ("lint_yaml", lint_yaml),
];

/// `nodeprep lint`'s YAML front end: any text parses to documents whose every node has a line
/// within the text, or is an error naming a line within it; linting what parses never panics.
pub fn lint_yaml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // YAML breaks lines at \n, \r and \r\n; the end of the text may be one line further.
    let lines = text.matches(['\n', '\r']).count() + 2;
    match nodeprep::lint::yaml::parse_stream(&text) {
        Ok(docs) => {
            fn check(n: &nodeprep::lint::yaml::Node, lines: usize) {
                assert!(n.line >= 1 && n.line <= lines, "line {} of {lines}", n.line);
                n.items().iter().for_each(|c| check(c, lines));
                n.entries().iter().for_each(|(_, c)| check(c, lines));
            }
            docs.iter().for_each(|d| check(d, lines));
            let objs: Vec<_> =
                docs.into_iter().flat_map(|d| nodeprep::lint::objects("fuzz.yaml", d)).collect();
            let opts = nodeprep::lint::Options { startup_taint: "nodeprep.io/not-ready".into() };
            for f in nodeprep::lint::lint(&objs, &opts) {
                assert!(!f.message.is_empty() && !f.fix.is_empty(), "{f:?}");
            }
        }
        Err(e) => assert!(e.line >= 1 && e.line <= lines, "{e} of {lines} lines"),
    }
}

/// `config.toml`: accepted text means something `config show` can print and read back; rejected
/// text gets a message naming the file, and a line of the file and the key unless the TOML is
/// malformed.
pub fn config(data: &[u8]) {
    // `config::load` rejects text that is not UTF-8 before parsing.
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("/etc/nodeprep/config.toml");
    match config::parse(text, file) {
        Ok(cfg) => {
            let shown = config::show(&cfg, &config::Origin::File(file.into()));
            let back = config::parse(&shown, file);
            assert_eq!(
                back.as_ref(),
                Ok(&cfg),
                "`config show` of {text:?} reads back differently:\n{shown}"
            );
        }
        Err(e) => {
            assert_eq!(e.file, file);
            assert!(!e.message.trim().is_empty(), "{e:?}");
            let lines = text.split('\n').count();
            if let Some(line) = e.line {
                assert!((1..=lines).contains(&line), "line {line} of a {lines}-line file: {e}");
            }
            assert!(e.to_string().starts_with("/etc/nodeprep/config.toml"), "{e}");
            // Past the syntax, every error is about a key, and names it and the line setting it.
            if !e.message.starts_with("invalid TOML") {
                assert!(e.key.is_some() && e.line.is_some(), "no key or line for {text:?}: {e}");
            }
        }
    }
}

/// `/dev/kmsg` text: the scan counts exactly the record lines and finds exactly the XIDs that
/// `record_message` and `parse_xid` find line by line; parsed PCI addresses print and read back.
pub fn kmsg(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut scan = kmsg::KmsgScan::default();
    kmsg::scan_text(&text, &mut scan);
    let mut records = 0;
    let (mut xids, mut sxids) = (Vec::new(), Vec::new());
    for line in text.split('\n').filter(|l| !l.starts_with(' ')) {
        if let Some(message) = kmsg::record_message(line) {
            assert!(line.contains(message), "{line:?} → {message:?}");
            records += 1;
            match kmsg::parse_xid(message) {
                Some(x) => xids.push(x),
                None => sxids.extend(kmsg::parse_sxid(message)),
            }
        }
    }
    assert_eq!(scan.records, records);
    assert_eq!(scan.xids, xids);
    assert_eq!(scan.sxids, sxids);
    for x in &scan.xids {
        if let Some(p) = x.pci {
            assert_eq!(PciAddr::parse(&p.to_string()), Some(p), "{x:?}");
            assert_eq!(PciAddr::parse(&x.pci_text), Some(p), "{x:?}");
        }
        // Every XID has a bucket; XID 154's comes from its own words, "None" meaning recovered.
        let b = kmsg::bucket(x);
        if x.xid == 154 {
            assert_eq!(kmsg::recovery_action(&x.message).unwrap_or(kmsg::Bucket::Unknown), b);
        }
        assert!(!b.action(&x.pci_text).is_empty());
    }
    for s in &scan.sxids {
        assert!(text.contains(&format!("{}", s.sxid)), "{s:?}");
        assert!(text.contains(s.message.as_str()), "{s:?}");
    }
}

/// `/proc/<pid>/limits` rows, systemd `LimitMEMLOCK=` values and config limits: a byte count
/// comes from digits that are in the text.
pub fn proc_limits(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // A whole limits file: the soft values are those of their rows, as written.
    if let Ok(l) = nodeprep::host::proc::parse_limits(&text) {
        for (row, got) in [("Max locked memory", l.memlock), ("Max stack size", l.stack)] {
            // The row is the last line whose words before soft, hard and unit are its name.
            let words: Vec<&str> = text
                .lines()
                .rev()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|w| w.len() >= 4 && w[..w.len() - 3].join(" ") == row)
                .expect("a row was found");
            let (line, soft) = (words.join(" "), words[words.len() - 3]);
            let want = match soft {
                "unlimited" => nodeprep::host::proc::Rlimit::Unlimited,
                n => nodeprep::host::proc::Rlimit::Bytes(n.parse().expect("a number")),
            };
            assert_eq!(got, want, "{line:?}");
        }
    }
    for line in text.lines() {
        if let Some(Limit::Bytes(b)) = Limit::parse(line) {
            let digits = line.trim().trim_start_matches('0');
            assert_eq!(b.to_string(), if digits.is_empty() { "0" } else { digits });
        }
        if let Some(Limit::Bytes(b)) = limits::parse_systemd_limit(line) {
            let soft = line.split(':').next().unwrap_or_default().trim();
            let (num, mult) = match soft.chars().last() {
                Some('K') => (&soft[..soft.len() - 1], 1u64 << 10),
                Some('M') => (&soft[..soft.len() - 1], 1 << 20),
                Some('G') => (&soft[..soft.len() - 1], 1 << 30),
                Some('T') => (&soft[..soft.len() - 1], 1 << 40),
                _ => (soft, 1),
            };
            assert_eq!(
                num.trim().parse::<u64>().ok().and_then(|n| n.checked_mul(mult)),
                Some(b),
                "{line:?}"
            );
        }
    }
}

/// A sysfs tree written from the input: one RDMA device (vendor, device, port state, physical
/// state, uverbs `ibdev`), one PCI device (vendor, device, class) and the driver version files,
/// each from a NUL-separated field, with directory names from the input where they are valid
/// names. The EFA and NVIDIA readers count exactly the devices whose IDs say so.
pub fn sysfs(data: &[u8]) {
    let mut fields = data.split(|&b| b == 0);
    let mut next = || fields.next().unwrap_or_default();
    let (vendor, device, state, phys, ibdev) = (next(), next(), next(), next(), next());
    let (pci_vendor, pci_device, class, version, efa_version) =
        (next(), next(), next(), next(), next());
    let name = |field: &[u8], default: &str| {
        let s = String::from_utf8_lossy(field);
        let ok = !s.is_empty() && s.len() < 200 && s != "." && s != ".." && !s.contains('/');
        if ok {
            s.into_owned()
        } else {
            default.to_string()
        }
    };
    let (ib_name, bdf, uverbs) =
        (name(next(), "rdmap79s0"), name(next(), "0000:53:00.0"), name(next(), "uverbs0"));

    let scratch = Scratch::new();
    let root = &scratch.0;
    let write = |path: &str, content: &[u8]| {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    let dev = format!("sys/class/infiniband/{ib_name}");
    write(&format!("{dev}/device/vendor"), vendor);
    write(&format!("{dev}/device/device"), device);
    write(&format!("{dev}/ports/1/state"), state);
    write(&format!("{dev}/ports/1/phys_state"), phys);
    write(&format!("sys/class/infiniband_verbs/{uverbs}/ibdev"), ibdev);
    write("dev/infiniband/uverbs0", b"");
    write(&format!("sys/bus/pci/devices/{bdf}/vendor"), pci_vendor);
    write(&format!("sys/bus/pci/devices/{bdf}/device"), pci_device);
    write(&format!("sys/bus/pci/devices/{bdf}/class"), class);
    write("proc/driver/nvidia/version", version);
    write("sys/module/efa/version", efa_version);
    let host = Host::new(root);
    let attr = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();

    let snap = efa::observe(&host);
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    let is_efa = attr(vendor) == "0x1d0f"
        && ["0xefa0", "0xefa1", "0xefa2", "0xefa3", "0xefa4"].contains(&attr(device).as_str());
    assert_eq!(snap.devices.len(), usize::from(is_efa), "{snap:?}");
    let efa_ids = ["0xefa0", "0xefa1", "0xefa2", "0xefa3", "0xefa4"];
    // A PCI function the kernel made has a DDDD:BB:DD.F name; other names are not counted.
    let pci_efa = attr(pci_vendor) == "0x1d0f"
        && efa_ids.contains(&attr(pci_device).as_str())
        && nodeprep::host::pci::PciAddr::parse(&bdf).is_some();
    assert_eq!(nodeprep::host::rdma::efa_present(&host), is_efa || pci_efa);
    // Port state is reported, never judged (the efa driver reports it constant).
    let _ = (state, phys);
    let usable = is_efa
        && uverbs.strip_prefix("uverbs").and_then(|n| n.parse::<u32>().ok()) == Some(0)
        && attr(ibdev) == ib_name;
    let (attached, attach_errors) = nodeprep::host::rdma::attached(&host);
    let expected = nodeprep::catalog::Expected::new(None, &Default::default())
        .with_attached_efa(attached.len() as u32);
    let r = efa::evaluate(&efa::Inputs {
        snap: &snap,
        attached: &attached,
        attach_errors: &attach_errors,
        driver_errors: &Ok(vec![]),
        expected: &expected,
        identity: &Identity::default(),
    });
    assert_eq!(r.found["devices"], usize::from(usable), "{r:?}");
    // The tree gives the PCI function no driver and the RDMA device no uevent naming it: an EFA
    // function there is one EC2 attached with no driver bound, which fails whatever the device.
    assert_eq!(r.status == nodeprep::report::Status::Pass, usable && !pci_efa, "{r:?}");
    assert!(!r.summary.is_empty());

    let mut errors = Vec::new();
    let (gpus, switches) = nvidia::pci_scan(&host, &mut errors);
    let class = u32::from_str_radix(attr(class).trim_start_matches("0x"), 16).unwrap_or(0) >> 8;
    let nvidia = attr(pci_vendor) == nvidia::NVIDIA_VENDOR;
    let is_gpu = nvidia && matches!(class, 0x0300 | 0x0302);
    assert_eq!(gpus.len() + errors.len(), usize::from(is_gpu), "{gpus:?} {errors:?}");
    assert_eq!(gpus.len(), usize::from(is_gpu && PciAddr::parse(&bdf).is_some()));
    assert_eq!(switches, usize::from(nvidia && class == 0x0680));
    if let Some(v) = nvidia::parse_proc_version(&String::from_utf8_lossy(version)) {
        assert!(v.contains('.'));
    }
}

/// A scratch directory of this process and thread for [`sysfs`], on tmpfs where there is one,
/// removed when dropped (also when a check fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(
            format!("nodeprep-fuzz-{}-{:?}", std::process::id(), std::thread::current().id())
                .replace(['(', ')'], ""),
        );
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// PCI addresses in every spelling: what parses prints and reads back the same.
pub fn pci_addr(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(p) = PciAddr::parse(&text) {
        assert_eq!(PciAddr::parse(&p.to_string()), Some(p), "{text:?}");
        assert!(p.device < 0x20 && p.function.is_none_or(|f| f < 8), "{p:?}");
        assert!(p.same_slot(&p));
    }
}

/// kubelet's device-plugin checkpoint: each resource once, with as many devices as its list.
pub fn checkpoint(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(counts) = device_plugins::parse_checkpoint(&text) {
        let v: Value = serde_json::from_str(&text).expect("accepted text is JSON");
        let registered = &v["Data"]["RegisteredDevices"];
        for (i, (name, n)) in counts.iter().enumerate() {
            assert_eq!(registered[name].as_array().map_or(0, Vec::len), *n, "{name}");
            assert!(!counts[..i].iter().any(|(other, _)| other == name), "{name} twice");
        }
    }
}

/// An IMDS reply body: a value is short, one line, trimmed, and the text of the body.
pub fn imds_reply(data: &[u8]) {
    match imds::reply_value(data) {
        Ok(v) => {
            assert!(v.len() <= imds::MAX_REPLY_BYTES);
            assert_eq!(v, std::str::from_utf8(data).expect("a value is UTF-8").trim());
            assert!(!v.chars().any(char::is_control), "{v:?}");
            if nodeprep::host::imds::is_instance_type(&v) {
                assert!(v.is_ascii() && v.split('.').count() == 2, "{v:?}");
            }
        }
        Err(e) => assert!(!e.0.is_empty() && e.0.len() < 1024, "{e}"),
    }
}

/// `/proc/driver/nvidia/version` and GPU model names: the version is a dotted number on the
/// `NVRM version:` line; a model always matches itself.
pub fn nvidia_version(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(v) = nvidia::parse_proc_version(&text) {
        let line = text.lines().find(|l| l.starts_with("NVRM version:")).expect("the version line");
        assert!(line.split_whitespace().any(|t| t == v), "{v} not in {line:?}");
        assert!(
            v.split('.').count() >= 2
                && v.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
            "{v}"
        );
    }
    // /proc/devices: every major is a number written in the text, before "Block devices:"; the
    // NVIDIA nodes' numbers follow the driver's.
    let chars = text.split("Block devices:").next().unwrap_or("");
    for (name, major) in nvidia::parse_proc_devices(&text) {
        assert!(
            chars.contains(&format!("{major} {name}")) || chars.contains(&name),
            "{major} {name}"
        );
        if name == "nvidia-uvm" {
            let got = nvidia::driver_number("nvidia-uvm", &nvidia::parse_proc_devices(&text));
            assert_eq!(got.map(|(_, mi)| mi), Some(0));
        }
    }
    for line in text.lines() {
        if let Some(n) = line.trim().strip_prefix("/dev/") {
            if let Some((ma, mi)) = nvidia::driver_number(n, &[]) {
                assert_eq!(ma, 195, "{n}");
                assert!(
                    n == "nvidiactl" || n == "nvidia-modeset" || n == format!("nvidia{mi}"),
                    "{n}"
                );
            }
        }
    }
    if let Some(v) = nvidia::parse_enable_gpu_firmware(&text) {
        assert!(text.contains(&format!("{v}")), "{v}");
    }
    let (name, model) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = nvidia::model_matches(name, model);
    if !name.trim().is_empty() {
        assert!(nvidia::model_matches(name, name), "{name:?}");
    }
}

/// containerd's base runtime spec: a spec nodeprep accepts, once updated and written, is accepted
/// again, sets both limits, needs no second update, and keeps every other rlimit entry.
pub fn runtime_spec(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(spec) = limits::parse_spec(&text) else { return };
    let wanted = [
        LimitsConfig::default(),
        LimitsConfig {
            memlock: Limit::Bytes(1 << 30),
            stack: Limit::Bytes(8 << 20),
            ..LimitsConfig::default()
        },
    ];
    for cfg in wanted {
        let new =
            nodeprep::capability::limits::updated_spec(&spec, &cfg).unwrap_or_else(|| spec.clone());
        let written = serde_json::to_string_pretty(&new).expect("JSON value serializes");
        let back = limits::parse_spec(&written)
            .unwrap_or_else(|e| panic!("nodeprep wrote a spec it rejects ({e}):\n{written}"));
        assert_eq!(limits::spec_rlimit(&back, "RLIMIT_MEMLOCK"), Some(cfg.memlock), "{written}");
        assert_eq!(limits::spec_rlimit(&back, "RLIMIT_STACK"), Some(cfg.stack), "{written}");
        assert_eq!(
            nodeprep::capability::limits::updated_spec(&back, &cfg),
            None,
            "a second update changes {written}"
        );
        let others = |v: &Value| -> Vec<Value> {
            v.pointer("/process/rlimits")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|e| {
                            !matches!(
                                e.get("type").and_then(Value::as_str),
                                Some("RLIMIT_MEMLOCK" | "RLIMIT_STACK")
                            )
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(others(&new), others(&spec), "other rlimits changed");
    }
}

/// containerd's `config.toml`: a base runtime spec path comes only from a TOML document, and
/// reading the document again gives the same path.
pub fn containerd_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(path) = nodeprep::host::containerd::spec_path_from_config(&text) {
        let doc: toml::Table = text.parse().expect("a path comes from TOML");
        let again = doc.to_string();
        // The TOML writer turns deep dotted keys into table headers that its own parser refuses
        // (recursion limit): only a document that reads back says anything about nodeprep.
        if again.parse::<toml::Table>().is_ok() {
            assert_eq!(
                nodeprep::host::containerd::spec_path_from_config(&again),
                Some(path),
                "{doc}"
            );
        }
    }
}

/// `/proc/<pid>/mountinfo`: every non-blank line is one mount, or the error names a line; the
/// kernel's escaping of a path reads back as the path.
pub fn mountinfo(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match mountinfo::parse(&text) {
        Ok(mounts) => {
            assert_eq!(mounts.len(), text.lines().filter(|l| !l.trim().is_empty()).count());
            for m in mounts.iter().filter(|m| m.mount_point == "/" || !m.mount_point.ends_with('/'))
            {
                assert!(mountinfo::top_at(&mounts, &m.mount_point).is_some(), "{m:?}");
            }
        }
        Err(e) => assert!((1..=text.lines().count()).contains(&e.line), "{e}"),
    }
    let escaped = text
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    assert_eq!(mountinfo::unescape(&escaped), text, "{escaped:?}");
}
