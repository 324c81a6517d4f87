//! Property tests of every parser of host or user input, in the default test suite: random bytes,
//! token salads built from the fuzz dictionaries and structured inputs (generated valid records,
//! limits files, checkpoints, specs, configs, mount tables, disk signatures) never panic and parse
//! to what was generated. The per-input checks are those of the cargo-fuzz targets
//! (`fuzz/src/lib.rs`, included here); every input under `fuzz/regressions/<target>/` and
//! `fuzz/seeds/<target>/` is replayed through them. A few hundred cases each by default;
//! `PROPTEST_CASES=4000` (CI) or more runs every property longer. A failing case is shrunk and
//! printed: keep it as a file under `fuzz/regressions/<target>/`.

#[path = "../../../fuzz/src/lib.rs"]
mod targets;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nodeprep::capability::device_plugins;
use nodeprep::capability::efa;
use nodeprep::capability::limits::parse_systemd_limit;
use nodeprep::capability::nvidia::{self, xid as kmsg, PciAddr};
use nodeprep::capability::storage::probe::{probe, Content, Sample, HEAD_BYTES};
use nodeprep::config::{self, Limit};
use nodeprep::host::imds::ImdsClient;
use nodeprep::host::{mountinfo, Host};
use nodeprep::identity::Identity;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::{json, Value};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn target(name: &str) -> targets::Target {
    targets::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"))
        .1
}

/// `default` cases, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn runner(default_cases: u32) -> TestRunner {
    runner_max(default_cases, u32::MAX)
}

/// A runner of `default_cases`, or `PROPTEST_CASES` up to `max`.
fn runner_max(default_cases: u32, max: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: cases(default_cases).min(max),
        // A failure prints its minimal input; keep it as a file under fuzz/regressions/.
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

/// Files of `fuzz/<kind>/<target>/`, checking that every folder there is named after a target.
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(fuzz_dir().join(kind)) else { return out };
    for dir in dirs {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            targets::TARGETS.iter().any(|(n, _)| *n == name),
            "fuzz/{kind}/{name} is not a fuzz target"
        );
        for f in std::fs::read_dir(&dir).unwrap() {
            out.push((name.clone(), f.unwrap().path()));
        }
    }
    out
}

#[test]
fn fuzz_regressions_and_seeds_replay() {
    let regressions = inputs("regressions");
    let seeds = inputs("seeds");
    assert!(!seeds.is_empty(), "fuzz/seeds is empty");
    for (name, file) in regressions.iter().chain(&seeds) {
        let data = std::fs::read(file).unwrap();
        let check = target(name);
        if let Err(p) = std::panic::catch_unwind(|| check(&data)) {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{} fails its fuzz target {name}: {why}", file.display());
        }
    }
    println!("replayed {} regressions and {} seeds", regressions.len(), seeds.len());
}

/// The tokens of `fuzz/dicts/<target>.dict` (libFuzzer format: `"text"` with `\xNN` escapes).
fn dict(name: &str) -> Vec<Vec<u8>> {
    let text =
        std::fs::read_to_string(fuzz_dir().join(format!("dicts/{name}.dict"))).unwrap_or_default();
    let mut out = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('"') && l.ends_with('"') && l.len() >= 2)
    {
        let inner = &line.as_bytes()[1..line.len() - 1];
        let mut tok = Vec::new();
        let mut i = 0;
        while i < inner.len() {
            if inner[i] == b'\\' && inner.get(i + 1) == Some(&b'x') && i + 3 < inner.len() {
                tok.push(
                    u8::from_str_radix(std::str::from_utf8(&inner[i + 2..i + 4]).unwrap(), 16)
                        .unwrap(),
                );
                i += 4;
            } else if inner[i] == b'\\' && i + 1 < inner.len() {
                tok.push(inner[i + 1]);
                i += 2;
            } else {
                tok.push(inner[i]);
                i += 1;
            }
        }
        out.push(tok);
    }
    out
}

/// Random bytes, and text spliced from the target's dictionary, seeds and a few separators.
fn fuzzish(name: &str) -> BoxedStrategy<Vec<u8>> {
    let mut tokens = dict(name);
    for (_, f) in inputs("seeds").into_iter().filter(|(n, _)| n == name) {
        let seed = std::fs::read(f).unwrap();
        tokens.extend(seed.split(|&b| b == b'\n').map(|l| [l, b"\n"].concat()));
    }
    tokens.extend([
        b"\n".to_vec(),
        b" ".to_vec(),
        b"\0".to_vec(),
        b"\xff".to_vec(),
        "é".into(),
        b"0".to_vec(),
        b"99999999999999999999".to_vec(),
    ]);
    let salad =
        proptest::collection::vec(proptest::sample::select(tokens), 0..40).prop_map(|v| v.concat());
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..512), salad].boxed()
}

fn run_target(name: &str, cases: u32) {
    let check = target(name);
    runner(cases)
        .run(&fuzzish(name), |data| {
            check(&data);
            Ok(())
        })
        .unwrap();
}

#[test]
fn config_random_text() {
    run_target("config", 512);
}
#[test]
fn kmsg_random_text() {
    run_target("kmsg", 512);
}
#[test]
fn proc_limits_random_text() {
    run_target("proc_limits", 512);
}
#[test]
fn sysfs_random_values() {
    run_target("sysfs", 128);
}
#[test]
fn pci_addr_random_text() {
    run_target("pci_addr", 1000);
}
#[test]
fn checkpoint_random_text() {
    run_target("checkpoint", 512);
}
#[test]
fn imds_reply_random_bytes() {
    run_target("imds_reply", 1000);
}
#[test]
fn nvidia_version_random_text() {
    run_target("nvidia_version", 512);
}
#[test]
fn runtime_spec_random_text() {
    run_target("runtime_spec", 512);
}
#[test]
fn containerd_config_random_text() {
    run_target("containerd_config", 512);
}
#[test]
fn mountinfo_random_text() {
    run_target("mountinfo", 512);
}

fn pci_addr() -> impl Strategy<Value = PciAddr> {
    (any::<u32>(), any::<u8>(), 0u8..0x20, proptest::option::of(0u8..8))
        .prop_map(|(domain, bus, device, function)| PciAddr { domain, bus, device, function })
}

proptest! {
    #![proptest_config(RunnerConfig { cases: cases(256), ..RunnerConfig::default() })]

    /// Every spelling of an address (sysfs, NVML's upper-case 8-digit domain, XID lines without a
    /// function) reads back as the address.
    #[test]
    fn pci_addresses_read_back_in_every_spelling(p in pci_addr()) {
        prop_assert_eq!(PciAddr::parse(&p.to_string()), Some(p));
        let f = p.function.map_or(String::new(), |f| format!(".{f}"));
        prop_assert_eq!(PciAddr::parse(&format!("{:08X}:{:02X}:{:02X}{f}", p.domain, p.bus, p.device)), Some(p));
        let xid = PciAddr::parse(&format!("PCI:{:04x}:{:02x}:{:02x}", p.domain, p.bus, p.device)).unwrap();
        prop_assert!(xid.same_slot(&p));
    }

    /// A generated XID record, among other records and dictionary lines, is found with its number,
    /// address and message, and every record is counted.
    #[test]
    fn generated_xid_records_parse_back(
        p in pci_addr(),
        xid in 1u32..1000,
        pid in any::<u32>(),
        tail in "[A-Za-z0-9 .:=<>'_-]{0,60}",
        (pri, seq, usec) in (0u8..8, any::<u32>(), any::<u64>()),
        noise in proptest::collection::vec("[a-z0-9 :.=-]{0,40}", 0..6),
        crlf in any::<bool>(),
    ) {
        let message = format!("pid={pid}, {}", tail.trim()).trim().to_string();
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        for (i, n) in noise.iter().enumerate() {
            text.push_str(&format!("6,{i},{i},-;{n}{eol} SUBSYSTEM=pci{eol}"));
        }
        text.push_str(&format!("{pri},{seq},{usec},-;NVRM: Xid (PCI:{:04x}:{:02x}:{:02x}): {xid}, {message}{eol}", p.domain, p.bus, p.device));
        let mut scan = kmsg::KmsgScan::default();
        kmsg::scan_text(&text, &mut scan);
        prop_assert_eq!(scan.records, noise.len() + 1);
        prop_assert_eq!(scan.xids.len(), 1);
        let x = &scan.xids[0];
        prop_assert_eq!(x.xid, xid);
        prop_assert!(x.pci.is_some_and(|a| a.same_slot(&p)), "{:?}", x);
        prop_assert_eq!(&x.message, &message);
    }

    /// A `/proc/<pid>/limits` as Linux prints it gives the soft limits it shows.
    #[test]
    fn generated_proc_limits_parse_to_their_values(
        memlock in proptest::option::of(any::<u64>()),
        stack in proptest::option::of(any::<u64>()),
    ) {
        let text = nodeprep_fixtures::proc_limits(memlock, stack);
        use nodeprep::host::proc::{parse_limits, Rlimit, SoftLimits};
        let want = |v: Option<u64>| v.map_or(Rlimit::Unlimited, Rlimit::Bytes);
        prop_assert_eq!(parse_limits(&text), Ok(SoftLimits { memlock: want(memlock), stack: want(stack) }));
    }

    /// systemd limit values: `N[KMGT]` is N times the unit, or nothing when that overflows.
    #[test]
    fn systemd_limit_values_scale_by_their_suffix(n in any::<u64>(), suffix in 0usize..5, hard in proptest::option::of("[0-9a-z]{1,8}")) {
        let (s, mult) = [("", 1u64), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40)][suffix];
        let text = match &hard { Some(h) => format!(" {n}{s}:{h} "), None => format!("{n}{s}") };
        prop_assert_eq!(parse_systemd_limit(&text), n.checked_mul(mult).map(Limit::Bytes));
    }

    /// kubelet's checkpoint gives each resource's registered device count.
    #[test]
    fn generated_checkpoints_count_devices(
        resources in proptest::collection::btree_map("[a-z]{1,8}(\\.[a-z]{2,5})?/[a-z-]{1,8}", 0usize..40, 0..5),
        pod_entries in any::<bool>(),
    ) {
        let registered: serde_json::Map<String, Value> = resources
            .iter()
            .map(|(k, n)| (k.clone(), Value::from((0..*n).map(|i| format!("dev-{i}")).collect::<Vec<_>>())))
            .collect();
        let pods = if pod_entries { json!([{"PodUID": "u", "ContainerName": "c", "ResourceName": "nvidia.com/gpu", "DeviceIDs": {"0": ["dev-0"]}}]) } else { Value::Null };
        let text = json!({"Data": {"PodDeviceEntries": pods, "RegisteredDevices": registered}, "Checksum": 12345}).to_string();
        let counts = device_plugins::parse_checkpoint(&text).unwrap();
        prop_assert_eq!(counts, resources.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn mountinfo_lines_round_trip(id in 1u64..100000, parent in 1u64..100000, major in 0u32..4096, minor in 0u32..1_000_000,
                                   dir in "/[a-z0-9 ]{1,20}", fstype in "[a-z0-9]{2,8}", opts in prop::collection::vec("[a-z]{2,8}", 1..5)) {
        let esc = |p: &str| p.replace(' ', "\\040");
        let line = format!("{id} {parent} {major}:{minor} / {} {} shared:1 - {fstype} /dev/x rw\n", esc(&dir), opts.join(","));
        let m = &mountinfo::parse(&line).unwrap()[0];
        prop_assert_eq!((m.id, m.parent, m.dev), (id, parent, (major, minor)));
        prop_assert_eq!(&m.mount_point, &dir);
        prop_assert_eq!(&m.fstype, &fstype);
        prop_assert_eq!(&m.options, &opts);
    }

    /// Disk signatures and md superblocks (storage refuses foreign disks by them).
    #[test]
    fn disk_signature_probe_never_panics(head in prop::collection::vec(any::<u8>(), 0..6000), tail in prop::collection::vec(any::<u8>(), 0..600),
                                         size in any::<u64>(), at in 0usize..HEAD_BYTES, magic in prop::sample::select(vec![
                                             &b"XFSB"[..], &[0xfc, 0x4e, 0x2b, 0xa9], &[0x53, 0xef], b"LABELONE", b"EFI PART", b"_BHRfS_M"])) {
        let _ = probe(&Sample { head: &head, tail: &tail, size }).describe();
        // A magic number at an arbitrary place of otherwise arbitrary bytes.
        let mut h = vec![0u8; HEAD_BYTES];
        h[..head.len()].copy_from_slice(&head);
        let end = (at + magic.len()).min(HEAD_BYTES);
        h[at..end].copy_from_slice(&magic[..end - at]);
        let _ = probe(&Sample { head: &h, tail: &tail, size: size.max(1) }).describe();
    }

    #[test]
    fn md_superblocks_round_trip(name in "[a-z][a-z0-9-]{0,20}", role in 0u16..32, disks in 1u32..33, uuid in any::<[u8; 16]>()) {
        let role = role % disks as u16;
        let sb = nodeprep_fixtures::md_superblock(&name, uuid, role, disks);
        match probe(&Sample { head: &sb, tail: &[], size: 1 << 40 }) {
            Content::Md(m) => {
                prop_assert_eq!(m.name, name);
                prop_assert_eq!(m.uuid, uuid);
                prop_assert_eq!(m.role, Some(role as u32));
                prop_assert_eq!(m.raid_disks, disks);
            }
            other => prop_assert!(false, "not md: {:?}", other),
        }
    }

    /// containerd's config names the default runtime's base runtime spec, in config versions 2 and 3.
    #[test]
    fn containerd_configs_name_the_default_runtimes_spec(v3 in any::<bool>(), runtime in "[a-z][a-z0-9_-]{0,10}", named in any::<bool>(), path in "/[a-z0-9/._-]{1,30}") {
        let plugin = if v3 { "io.containerd.cri.v1.runtime" } else { "io.containerd.grpc.v1.cri" };
        let default = if named { format!("[plugins.\"{plugin}\".containerd]\ndefault_runtime_name = \"{runtime}\"\n") } else { String::new() };
        let name = if named { runtime.as_str() } else { "runc" };
        let text = format!("version = {}\n{default}[plugins.\"{plugin}\".containerd.runtimes.{name}]\nbase_runtime_spec = {path:?}\n", if v3 { 3 } else { 2 });
        prop_assert_eq!(nodeprep::host::containerd::spec_path_from_config(&text), Some(path));
    }

    /// `/proc/driver/nvidia/version` of open and proprietary drivers gives the version.
    #[test]
    fn generated_driver_versions_parse(a in 100u32..1000, b in 0u32..1000, c in proptest::option::of(0u32..100), open in any::<bool>()) {
        let v = match c { Some(c) => format!("{a}.{b}.{c:02}"), None => format!("{a}.{b}") };
        let line = if open {
            format!("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {v}  Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Oct  8 02:32:30 UTC 2024")
        } else {
            format!("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Sun May 12 19:39:15 UTC 2024")
        };
        let text = format!("{line}\nGCC version:  gcc version 11.4.1 20230605 (Red Hat 11.4.1-2) (GCC) \n");
        prop_assert_eq!(nvidia::parse_proc_version(&text), Some(v));
    }
}

/// A JSON value of the kinds found in OCI specs (and some that are not).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        "[A-Za-z_]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An rlimits entry: real types with any values, missing or odd fields, or not an object at all.
fn rlimit_entry() -> impl Strategy<Value = Value> {
    let ty = prop_oneof![
        Just(json!("RLIMIT_MEMLOCK")),
        Just(json!("RLIMIT_STACK")),
        Just(json!("RLIMIT_NOFILE")),
        json_value()
    ];
    let num = prop_oneof![any::<u64>().prop_map(Value::from), Just(json!(u64::MAX)), json_value()];
    prop_oneof![
        4 => (ty, proptest::option::of(num.clone()), proptest::option::of(num), proptest::option::of(json_value())).prop_map(|(t, h, s, extra)| {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), t);
            if let Some(h) = h { m.insert("hard".into(), h); }
            if let Some(s) = s { m.insert("soft".into(), s); }
            if let Some(x) = extra { m.insert("comment".into(), x); }
            Value::Object(m)
        }),
        1 => json_value(),
    ]
}

#[test]
fn generated_runtime_specs_update_to_what_the_config_wants() {
    let check = target("runtime_spec");
    let spec = (
        proptest::option::of(proptest::option::of(proptest::collection::vec(rlimit_entry(), 0..6))),
        proptest::collection::btree_map("[a-z]{1,8}", json_value(), 0..3),
    )
        .prop_map(|(process, other)| {
            let mut top: serde_json::Map<String, Value> = other.into_iter().collect();
            top.insert("ociVersion".into(), json!("1.1.0"));
            match process {
                None => {}
                Some(None) => {
                    top.insert("process".into(), json!({"cwd": "/"}));
                }
                Some(Some(rlimits)) => {
                    top.insert("process".into(), json!({"cwd": "/", "rlimits": rlimits}));
                }
            }
            serde_json::to_string_pretty(&Value::Object(top)).unwrap()
        });
    runner(256)
        .run(&spec, |text| {
            // Every generated spec is one nodeprep accepts; the target checks the update.
            assert!(nodeprep::capability::limits::parse_spec(&text).is_ok(), "{text}");
            check(text.as_bytes());
            Ok(())
        })
        .unwrap();
}

/// A TOML value for a config key: right and wrong types, edge numbers, valid and invalid text.
fn toml_value() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        proptest::sample::select(vec![
            "unlimited",
            "infinity",
            "auto",
            "always",
            "never",
            "sometimes",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775808",
            "65536",
            "",
            " ",
            "/dev/nvme1n1",
            "/dev/",
            "/mnt/nodeprep",
            "/mnt",
            "/var/lib/kubelet",
            "/var/lib/kubelet/",
            "/data/../etc",
            "127.0.0.1:9477",
            "[::]:9477",
            "localhost",
            "http://169.254.169.254",
            "https://x",
            "http://",
            "p5.48xlarge",
            "P5 48xl",
            "node-1",
            "nodeprep.io/not-ready",
            "a/b/c!",
            "H100",
        ])
        .prop_map(str::to_string),
        "\\PC{0,12}",
    ];
    let int = prop_oneof![
        proptest::sample::select(vec![
            i64::MIN,
            -1,
            0,
            1,
            8,
            32,
            64,
            65,
            99,
            100,
            300,
            301,
            999,
            1000,
            10000,
            60000,
            65536,
            86400,
            1 << 20,
            1 << 30,
            i64::MAX
        ]),
        any::<i64>()
    ];
    prop_oneof![
        3 => int.clone().prop_map(|i| i.to_string()),
        3 => text.clone().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => (-1e20f64..1e20).prop_map(|f| format!("{f:e}")),
        1 => proptest::collection::vec(int.prop_map(|i| i.to_string()), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        1 => proptest::collection::vec(text.prop_map(|s| serde_json::to_string(&s).unwrap()), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
    ]
}

/// Values a user might write for `key`, mostly valid ones, as TOML.
fn plausible(key: &str) -> BoxedStrategy<String> {
    let q = |v: &[&str]| {
        proptest::sample::select(
            v.iter().map(|s| serde_json::to_string(s).unwrap()).collect::<Vec<_>>(),
        )
        .boxed()
    };
    let ints = |lo: i64, hi: i64| (lo..hi).prop_map(|i| i.to_string()).boxed();
    let list = |s: BoxedStrategy<String>| {
        proptest::collection::vec(s, 0..4).prop_map(|v| format!("[{}]", v.join(", "))).boxed()
    };
    let paths = [
        "/var/lib/containerd",
        "/var/lib/kubelet",
        "/var/log/pods",
        "/data",
        "/data/x",
        "/mnt/nodeprep",
        "/var/lib",
    ];
    match key {
        "instance_type" => q(&["p5.48xlarge", "g6e.xlarge", "trn2.48xlarge", "P5 48xl", "p5"]),
        "expect.gpu_model" => q(&["H100", "L40S", "", " "]),
        "expect.nvswitch" | "kubernetes.enabled" => {
            any::<bool>().prop_map(|b| b.to_string()).boxed()
        }
        k if k.starts_with("expect.") => ints(0, 70),
        "limits.memlock" | "limits.stack" => prop_oneof![
            q(&[
                "unlimited",
                "infinity",
                "18446744073709551615",
                "9223372036854775808",
                "1048576",
                "65536"
            ]),
            any::<u64>().prop_map(|b| format!("\"{b}\"")),
            ints(0, 1 << 40)
        ]
        .boxed(),
        "limits.apply" | "storage.enabled" | "imds.enabled" => q(&["auto", "always", "never"]),
        "storage.devices" => {
            list(q(&["/dev/nvme1n1", "/dev/nvme2n1", "/dev/nvme1n1", "nvme3n1", "/dev/../sda"]))
        }
        "storage.mount_point" => q(&[
            "/mnt/nodeprep",
            "/data",
            "/data/",
            "/mnt",
            "/var/lib/kubelet",
            "/var/lib/containerd/x",
            "data",
        ]),
        "storage.bind" => list(q(&paths)),
        "serve.listen" => {
            q(&["127.0.0.1:9477", "0.0.0.0:0", "[::1]:9477", "localhost:9477", "9477"])
        }
        "serve.interval_seconds" => ints(0, 86402),
        "kubernetes.node_name" => q(&["ip-10-0-1-2.ec2.internal", "node-1", "Node_1", ""]),
        "kubernetes.kubeconfig" => q(&["/etc/nodeprep/kubeconfig", ""]),
        "kubernetes.startup_taint" => q(&["nodeprep.io/not-ready", "not-ready", "a/b/c!", ""]),
        "imds.endpoint" => q(&[
            "http://169.254.169.254",
            "http://[fd00:ec2::254]",
            "https://169.254.169.254",
            "http://",
        ]),
        "imds.timeout_ms" => ints(0, 10002),
        "checks.timeout_seconds" => ints(0, 302),
        "nvidia.fatal_xids" => list(ints(0, 1001)),
        "nvidia.nvml_timeout_ms" => ints(0, 61000),
        _ => toml_value().boxed(),
    }
}

/// A config file setting some keys (sometimes misspelt) in one of TOML's three spellings of tables.
fn config_file() -> impl Strategy<Value = String> {
    let keys: Vec<&'static str> = config::KEYS.iter().map(|k| k.key).collect();
    let entry = proptest::sample::select(keys).prop_flat_map(|k| {
        (
            Just(k),
            prop_oneof![4 => plausible(k), 1 => toml_value().boxed()],
            prop::bool::weighted(0.03),
        )
    });
    (proptest::collection::vec(entry, 0..8), 0usize..3).prop_map(|(entries, style)| {
        let mut tables: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let mut seen = Vec::new();
        for (key, value, typo) in entries {
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            // A key of a nested table (kubernetes.dra_drivers.gpu) goes into its top table as a
            // dotted key (dra_drivers.gpu): a table and its sub-table never both stand alone.
            let (table, name) = match key.split_once('.') {
                Some((t, rest)) => (t, rest),
                None => ("", key),
            };
            let name = if typo { format!("{name}x") } else { name.to_string() };
            match tables.iter_mut().find(|(t, _)| t == table) {
                Some((_, v)) => v.push((name, value)),
                None => tables.push((table.to_string(), vec![(name, value)])),
            }
        }
        // Top-level keys first: after a [table] header they would belong to the table.
        tables.sort_by_key(|(t, _)| !t.is_empty());
        let mut out = String::new();
        for (table, entries) in tables {
            if table.is_empty() || style == 1 {
                for (k, v) in entries {
                    let dotted = if table.is_empty() { k } else { format!("{table}.{k}") };
                    out.push_str(&format!("{dotted} = {v}\n"));
                }
            } else if style == 0 {
                out.push_str(&format!("\n[{table}]\n"));
                for (k, v) in entries {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            } else {
                let inner: Vec<String> =
                    entries.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                out.push_str(&format!("{table} = {{ {} }}\n", inner.join(", ")));
            }
        }
        out
    })
}

/// Any config built from the documented keys either parses (and `config show` reads back the
/// same, checked by the fuzz target) or is rejected naming the file, the key and the line that
/// sets it.
#[test]
fn generated_configs_parse_or_name_file_line_and_key() {
    let check = target("config");
    let file = Path::new("/etc/nodeprep/config.toml");
    let (accepted, rejected) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner(1000)
        .run(&config_file(), |text| {
            check(text.as_bytes());
            match config::parse(&text, file) {
                Ok(_) => accepted.set(accepted.get() + 1),
                Err(e) => {
                    rejected.set(rejected.get() + 1);
                    let key =
                        e.key.as_deref().unwrap_or_else(|| panic!("no key named for\n{text}\n{e}"));
                    let line = e.line.unwrap_or_else(|| panic!("no line named for\n{text}\n{e}"));
                    let at = text
                        .lines()
                        .nth(line - 1)
                        .unwrap_or_else(|| panic!("line {line} is not in\n{text}\n{e}"));
                    let last = key.rsplit('.').next().unwrap();
                    assert!(
                        at.contains(last),
                        "line {line} ({at:?}) does not set `{key}`:\n{text}\n{e}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    let (accepted, rejected) = (accepted.get(), rejected.get());
    println!("configs: {accepted} accepted, {rejected} rejected");
    assert!(
        accepted > 10 && rejected > 10,
        "{accepted} accepted, {rejected} rejected: the generator needs fixing"
    );
}

/// EFA devices in a sysfs tree with generated port states and uverbs: the check counts exactly the
/// devices whose port is ACTIVE/LinkUp with a uverbs device and node, and names every other one.
#[test]
fn generated_efa_trees_count_usable_devices() {
    let state = proptest::sample::select(vec![
        "4: ACTIVE",
        "1: DOWN",
        "2: INIT",
        "3: ARMED",
        "5: ACTIVE_DEFER",
        "",
        "ACTIVE",
        "4:",
    ]);
    let phys = proptest::sample::select(vec![
        "5: LinkUp",
        "3: Disabled",
        "2: Polling",
        "1: Sleep",
        "7: PhyTest",
        "",
        "LinkUp",
    ]);
    let dev = (state, phys, any::<bool>(), any::<bool>());
    let dir = tempfile::tempdir().unwrap();
    let p5_efa = nodeprep_fixtures::Spec::p5_48xlarge().efa;
    // Each case writes a tree: a longer run (PROPTEST_CASES) gets at most 256 of them.
    runner_max(64, 256)
        .run(&(proptest::collection::vec(dev, 1..6), 0u32..8), |(devs, expected)| {
            let root = dir.path().join("t");
            let _ = std::fs::remove_dir_all(&root);
            // Only the EFA devices: a whole p5 tree per case is slow to write.
            let mut spec = nodeprep_fixtures::Spec::empty();
            spec.efa = p5_efa[..devs.len()].to_vec();
            for (e, (state, phys, uverbs, node)) in spec.efa.iter_mut().zip(&devs) {
                e.state = state.to_string();
                e.phys_state = phys.to_string();
                if !uverbs {
                    e.uverbs = None;
                }
                e.dev_node = *node;
            }
            spec.write(&root).unwrap();
            let snap = efa::observe(&Host::new(&root));
            assert!(snap.errors.is_empty(), "{:?}", snap.errors);
            // Port state is reported, never judged: only the verbs device and node count.
            let usable = devs.iter().filter(|(_, _, u, n)| *u && *n).count();
            let host = Host::new(&root);
            let (attached, attach_errors) = nodeprep::host::rdma::attached(&host);
            let want = nodeprep::catalog::Expected::new(
                Some("p5.48xlarge"),
                &nodeprep::config::Expect {
                    efa: Some(nodeprep::config::EfaCount::Count(expected)),
                    ..Default::default()
                },
            )
            .with_attached_efa(attached.len() as u32);
            let r = efa::evaluate(&efa::Inputs {
                snap: &snap,
                attached: &attached,
                attach_errors: &attach_errors,
                driver_errors: &Ok(vec![]),
                expected: &want,
                identity: &Identity::default(),
            });
            assert_eq!(r.found["devices"], usable, "{r:?}");
            assert_eq!(r.found["total"], devs.len());
            let ok = usable == devs.len() && devs.len() >= expected as usize;
            assert_eq!(r.status != nodeprep::report::Status::Fail, ok || expected == 0, "{r:?}");
            for (e, (_, _, u, n)) in spec.efa.iter().zip(&devs) {
                if !(*u && *n) {
                    assert!(r.summary.contains(&e.name), "{} not named: {}", e.name, r.summary);
                }
            }
            Ok(())
        })
        .unwrap();
}

/// A fake IMDS that answers every connection with `reply` and closes it.
fn raw_imds(reply: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(&reply);
            // Never reached by the test's last connection: the thread ends with the process.
        }
    });
    format!("http://{addr}")
}

/// Whatever bytes IMDS answers with, discovery returns a value or an error naming the endpoint,
/// within its deadlines; a value is an instance type.
#[test]
fn arbitrary_imds_replies_give_a_value_or_an_error() {
    let status = proptest::sample::select(vec![
        "HTTP/1.1 200 OK",
        "HTTP/1.1 401 Unauthorized",
        "HTTP/1.1 404 Not Found",
        "HTTP/1.0 200",
        "HTTP/1.1 999 ?",
        "ICY 200 OK",
        "",
    ]);
    let header = proptest::sample::select(vec![
        "Content-Length: 11",
        "Content-Length: 0",
        "Content-Length: 99999999",
        "Content-Length: -1",
        "Content-Length: 1, 2",
        "Transfer-Encoding: chunked",
        "Content-Type: text/plain; charset=utf-16",
        "Connection: close",
        "X: \u{1}",
        ": empty",
    ]);
    let body = prop_oneof![
        Just(b"p5.48xlarge".to_vec()),
        Just(b"b\r\np5.48xlarge\r\n0\r\n\r\n".to_vec()),
        Just(b"<html>proxy login</html>".to_vec()),
        Just(vec![b'a'; 70_000]),
        Just(b"p5.48xlarge\nsecond line".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ];
    let reply = prop_oneof![
        4 => (status, proptest::collection::vec(header, 0..3), body).prop_map(|(s, h, b)| {
            let mut r = format!("{s}\r\n{}\r\n", h.iter().map(|h| format!("{h}\r\n")).collect::<String>()).into_bytes();
            r.extend(b);
            r
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ];
    let timeout = Duration::from_millis(300);
    runner(48)
        .run(&reply, |reply| {
            let url = raw_imds(reply.clone());
            let t0 = Instant::now();
            let got = ImdsClient::new(&url, timeout).facts_blocking();
            // Each of at most 4 requests (token, 3 keys, a retry each) has a deadline of 2x timeout.
            assert!(
                t0.elapsed() < Duration::from_secs(6),
                "{:?} for {:?}",
                t0.elapsed(),
                String::from_utf8_lossy(&reply)
            );
            match got {
                Ok(f) => {
                    if let Some(t) = &f.instance_type {
                        assert!(nodeprep::host::imds::is_instance_type(t), "{t:?}");
                    }
                }
                Err(e) => assert!(e.to_string().contains(&url), "{e}"),
            }
            Ok(())
        })
        .unwrap();
}
#[test]
fn lint_yaml_random_text() {
    run_target("lint_yaml", 512);
}
