//! `nodeprep bundle` on fixture trees: the archive as support unpacks it (with the system's
//! `tar`), the categories, the manifest, planted secrets that must not come through, the size
//! cap, and what it refuses to do.

use std::path::{Path, PathBuf};
use std::process::Command;

use nodeprep_fixtures::Spec;
use serde_json::Value;

use crate::common::{nodeprep, stderr, stdout, tree, Nodeprep};

/// Secrets planted in the tree; none may appear anywhere in the archive.
const PLANTED: &[&str] = &[
    "hunter2-registry-pass",
    "dXNlcjpodW50ZXIyLXJlZ2lzdHJ5",
    "PLANTED-identity-token",
    "PLANTED-KUBECONFIG-TOKEN",
    "PLANTEDCLIENTKEYDATA",
    "PLANTEDsecretKEY123",
    "ASIAPLANTED000000001",
    "PLANTED-imds-secret-access-key",
    "PLANTED-imds-session-token",
    "PLANTEDbearer0123456789",
    "PLANTED-PRIVATE-KEY-BODY",
];

fn plant_secrets(root: &Path) {
    let w = |p: &str, text: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    // containerd with registry credentials (config version 2), still naming the base spec.
    w(
        "etc/containerd/config.toml",
        "version = 2\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
         base_runtime_spec = \"/etc/containerd/base-runtime-spec.json\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"123456789012.dkr.ecr.us-east-1.amazonaws.com\".auth]\n\
         username = \"AWS\"\n\
         password = \"hunter2-registry-pass\"\n\
         auth = \"dXNlcjpodW50ZXIyLXJlZ2lzdHJ5\"\n\
         identitytoken = \"PLANTED-identity-token\"\n",
    );
    // kubelet's config (collected) next to a kubeconfig (never read) as nodeadm lays them out.
    w(
        "etc/kubernetes/kubelet/config.json",
        "{\"kind\":\"KubeletConfiguration\",\"maxPods\":110}\n",
    );
    w(
        "etc/kubernetes/kubelet/kubeconfig",
        "users:\n- name: kubelet\n  user:\n    token: PLANTED-KUBECONFIG-TOKEN\n    client-key-data: PLANTEDCLIENTKEYDATA\n",
    );
    w("var/lib/kubelet/kubeconfig", "token: PLANTED-KUBECONFIG-TOKEN\n");
    w("etc/kubernetes/pki/ca.key", "-----BEGIN RSA PRIVATE KEY-----\nPLANTED-PRIVATE-KEY-BODY\n-----END RSA PRIVATE KEY-----\n");
    // A userData script that leaked credentials into the kernel log, and an IMDS credential reply.
    let mut k = std::fs::read_to_string(root.join("dev/kmsg")).unwrap_or_default();
    k.push_str(
        "6,900,9000000,-;cloud-init: export AWS_SECRET_ACCESS_KEY=PLANTEDsecretKEY123/abc+def\n",
    );
    k.push_str("6,901,9000001,-;debug: {\"Code\":\"Success\",\"AccessKeyId\":\"ASIAPLANTED000000001\",\"SecretAccessKey\":\"PLANTED-imds-secret-access-key\",\"Token\":\"PLANTED-imds-session-token\"}\n");
    k.push_str("6,902,9000002,-;curl: > Authorization: Bearer PLANTEDbearer0123456789\n");
    k.push_str("3,903,9000003,-;NVRM: Xid (PCI:0000:75:00): 13, pid=1, Graphics Exception\n");
    w("dev/kmsg", &k);
}

/// Unpacks `archive` with the system's tar into a new directory: (dir, its nodeprep-bundle/).
fn unpack(archive: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("tar").arg("xzf").arg(archive).arg("-C").arg(dir.path()).output().unwrap();
    assert!(o.status.success(), "tar xzf: {}", String::from_utf8_lossy(&o.stderr));
    let top = dir.path().join("nodeprep-bundle");
    (dir, top)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn manifest(top: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(top.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn a_bundle_has_each_category_and_no_planted_secret() {
    let dir = tree(&Spec::p5_48xlarge());
    let root = dir.path();
    plant_secrets(root);
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("b.tar.gz");
    let o = nodeprep(root, &["bundle", "--output", archive.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let line = stdout(&o);
    assert!(line.starts_with(&format!("nodeprep bundle: wrote {} (", archive.display())), "{line}");
    let size = std::fs::metadata(&archive).unwrap().len();
    assert!(line.contains(&format!("({size} bytes, ")), "{line}");

    let (_keep, top) = unpack(&archive);
    for cat in ["base", "device", "networking", "runtime", "system"] {
        assert!(top.join(cat).is_dir(), "no {cat}/ in the bundle");
    }
    // The fresh report, as `check --output json` gives it.
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(top.join("base/nodeprep/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (report["schema"].as_str(), report["ready"].as_bool()),
        (Some("nodeprep.report/v1"), Some(true))
    );
    for f in [
        "base/nodeprep/report.txt",
        "base/nodeprep/config-effective.toml",
        "system/kmsg.txt",
        "system/proc/1/mountinfo",
        "system/proc/mdstat",
        "runtime/etc/containerd/config.toml",
        "runtime/etc/containerd/base-runtime-spec.json",
        "runtime/etc/kubernetes/kubelet/config.json",
        "runtime/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint",
        "device/pci.txt",
        "device/block.txt",
        "device/dev-nodes.txt",
        "device/rdma-ports.txt",
        "device/rdma-hw-counters.txt",
        "networking/interfaces.txt",
    ] {
        assert!(top.join(f).is_file(), "no {f} in the bundle");
    }
    let ports = std::fs::read_to_string(top.join("device/rdma-ports.txt")).unwrap();
    assert!(ports.contains("rdmap79s0 1 \"4: ACTIVE\" \"5: LinkUp\""), "{ports}");
    assert_eq!(ports.lines().count(), 33, "a header and 32 EFA ports: {ports}");
    let counters = std::fs::read_to_string(top.join("device/rdma-hw-counters.txt")).unwrap();
    assert!(counters.contains("rdmap79s0 1 rx_drops 0\n"), "{counters}");
    let pci = std::fs::read_to_string(top.join("device/pci.txt")).unwrap();
    assert!(pci.contains("0000:75:00.0 0x10de "), "{pci}");
    // Redacted where they stood; the rest of the text is kept.
    let ctr = std::fs::read_to_string(top.join("runtime/etc/containerd/config.toml")).unwrap();
    assert!(
        ctr.contains("password = \"REDACTED\"") && ctr.contains("identitytoken = \"REDACTED\""),
        "{ctr}"
    );
    assert!(
        ctr.contains("base_runtime_spec = \"/etc/containerd/base-runtime-spec.json\""),
        "{ctr}"
    );
    let kmsg = std::fs::read_to_string(top.join("system/kmsg.txt")).unwrap();
    assert!(
        kmsg.contains("3,903,9000003,-;NVRM: Xid (PCI:0000:75:00): 13"),
        "records kept whole: {kmsg}"
    );
    assert!(kmsg.contains("AWS_SECRET_ACCESS_KEY=REDACTED"), "{kmsg}");

    // Not one planted secret anywhere, the manifest included.
    let mut files = Vec::new();
    files_under(&top, &mut files);
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        for s in PLANTED {
            assert!(!text.contains(s), "{s} is in {}", f.display());
        }
    }
    let m = manifest(&top);
    assert_eq!(m["schema"], "nodeprep.bundle/v1");
    assert_eq!(m["meta"]["live"], false);
    let refused: Vec<&str> =
        m["refused"].as_array().unwrap().iter().map(|r| r["source"].as_str().unwrap()).collect();
    assert!(refused.contains(&"/etc/kubernetes/kubelet/kubeconfig"), "{refused:?}");
    assert!(m["summary"]["redactions"].as_u64().unwrap() >= 8, "{}", m["summary"]);
    // Every file of the archive is in the manifest with its size; the commands say why not run.
    let entries = m["entries"].as_array().unwrap();
    assert_eq!(entries.len() + 1, files.len());
    for e in entries {
        let p = top.join(e["path"].as_str().unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), e["bytes"].as_u64().unwrap(), "{e}");
    }
    let not_run: Vec<&Value> = m["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["why"].as_str().unwrap().contains("not run: --root is"))
        .collect();
    for cmd in ["journalctl", "systemctl show", "nvidia-smi -q", "fi_info -p efa", "ip -d addr"] {
        assert!(
            not_run.iter().any(|l| l["source"].as_str().unwrap().starts_with(cmd)),
            "{cmd} not listed as not run"
        );
    }
}

/// Incompressible text (so the archive is as large as its content): `n` bytes in lines.
fn noise(n: usize, seed: u64) -> String {
    let mut x = seed | 1;
    let mut s = String::with_capacity(n + 100);
    let mut i = 0;
    while s.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("6,{i},{i},-;noise {x:016x}{:016x}\n", x.rotate_left(29)));
        i += 1;
    }
    s
}

#[test]
fn the_archive_stays_under_the_size_cap() {
    let dir = tree(&Spec::p5_48xlarge());
    let root = dir.path();
    // A 6 MB kernel log, and four 400 kB drop-ins.
    let mut k = noise(6 << 20, 7);
    k.push_str("3,999999,999999,-;the last record\n");
    std::fs::write(root.join("dev/kmsg"), &k).unwrap();
    std::fs::create_dir_all(root.join("etc/containerd/conf.d")).unwrap();
    for i in 0..4 {
        std::fs::write(
            root.join(format!("etc/containerd/conf.d/{i}.toml")),
            noise(400 << 10, i + 11),
        )
        .unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    for (cap, bytes) in [("2M", 2u64 << 20), ("1M", 1 << 20)] {
        let archive = out.path().join(format!("{cap}.tar.gz"));
        let o =
            nodeprep(root, &["bundle", "--max-size", cap, "--output", archive.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let size = std::fs::metadata(&archive).unwrap().len();
        println!("--max-size {cap}: {size} bytes; {}", stdout(&o).trim());
        assert!(size <= bytes, "--max-size {cap}: {size} bytes");
        let (_keep, top) = unpack(&archive);
        let m = manifest(&top);
        // The report always; the kernel log's end, marked.
        assert!(top.join("base/nodeprep/report.json").is_file());
        let kmsg = std::fs::read_to_string(top.join("system/kmsg.txt")).unwrap();
        assert!(kmsg.starts_with("[nodeprep bundle: the first "), "{}", &kmsg[..80]);
        assert!(kmsg.ends_with("3,999999,999999,-;the last record\n"));
        let e = m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == "system/kmsg.txt")
            .unwrap();
        assert_eq!(e["truncated_from"].as_u64(), Some(k.len() as u64), "{e}");
        if cap == "1M" {
            let capped: Vec<&Value> = m["left_out"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|l| l["why"].as_str().unwrap().starts_with("the size cap"))
                .collect();
            assert!(!capped.is_empty(), "nothing left out at 1M: {}", m["summary"]);
            assert!(
                capped
                    .iter()
                    .all(|l| l["source"].as_str().unwrap().starts_with("/etc/containerd/conf.d/")),
                "{capped:?}"
            );
            // What goes is the largest: never the small facts.
            for small in [
                "device/rdma-ports.txt",
                "device/pci.txt",
                "system/proc/mdstat",
                "runtime/etc/containerd/base-runtime-spec.json",
            ] {
                assert!(top.join(small).is_file(), "{small} was left out at 1M");
            }
        }
    }
    let o = nodeprep(root, &["bundle", "--max-size", "100K", "--output", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("below the least bundle, 1M"), "{}", stderr(&o));
}

#[test]
fn it_never_overwrites_writes_to_stdout_and_names_itself() {
    let dir = tree(&Spec::p5_48xlarge());
    let root = dir.path();
    let out = tempfile::tempdir().unwrap();
    // An existing file is kept as it was.
    let existing = out.path().join("keep.tar.gz");
    std::fs::write(&existing, "mine").unwrap();
    let o = nodeprep(root, &["bundle", "--output", existing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&existing.display().to_string()) && err.contains("nothing was overwritten"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "mine");
    // A directory that does not exist: named, nothing left behind.
    let o = nodeprep(
        root,
        &["bundle", "--output", out.path().join("no/such/b.tar.gz").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no/such"), "{}", stderr(&o));

    // `-`: the archive on stdout, the summary on stderr.
    let o = nodeprep(root, &["bundle", "--output", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("nodeprep bundle: wrote stdout ("), "{}", stderr(&o));
    let piped = out.path().join("piped.tar.gz");
    std::fs::write(&piped, &o.stdout).unwrap();
    let (_keep, top) = unpack(&piped);
    assert!(top.join("base/nodeprep/report.json").is_file());

    // No --output: a name of its own in the current directory, from the host name.
    std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
    std::fs::write(root.join("proc/sys/kernel/hostname"), "ip-10-0-1-2.ec2.internal\n").unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Nodeprep::new(root).args(["bundle"]).command();
    let o = cmd.current_dir(cwd.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let names: Vec<String> = std::fs::read_dir(cwd.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let n = &names[0];
    assert!(
        n.starts_with("nodeprep-bundle-ip-10-0-1-2.ec2.internal-20") && n.ends_with("Z.tar.gz"),
        "{n}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(cwd.path().join(n)).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the bundle is for support only");

    // The exit code is the report's.
    std::fs::remove_file(root.join("dev/nvidia3")).unwrap();
    let o =
        nodeprep(root, &["bundle", "--output", out.path().join("broken.tar.gz").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    // --output FILE is for bundle only.
    let o = nodeprep(root, &["check", "--output", "report.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--output report.json: a file is only for `nodeprep bundle`"),
        "{}",
        stderr(&o)
    );
}

/// On the live host (`--root /`) the commands run: their output is in the archive, or the
/// manifest says why not (a program missing, systemd not running here).
#[test]
fn on_the_live_host_the_commands_run() {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    // No IMDS from a test.
    std::fs::write(cfg.path(), "[imds]\nenabled = \"never\"\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("live.tar.gz");
    let o = Nodeprep::bare()
        .args([
            "--root",
            "/",
            "--config",
            cfg.path().to_str().unwrap(),
            "--instance-type",
            "m7i.large",
        ])
        .args(["bundle", "--max-size", "8M", "--output", archive.to_str().unwrap()])
        .output();
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let (_keep, top) = unpack(&archive);
    let m = manifest(&top);
    assert_eq!(m["meta"]["live"], true);
    let left = m["left_out"].as_array().unwrap();
    assert!(
        left.iter().all(|l| !l["why"].as_str().unwrap().contains("not run: --root")),
        "{left:?}"
    );
    let have_ip = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    if have_ip {
        let addrs = std::fs::read_to_string(top.join("networking/ip-addr.txt")).unwrap();
        assert!(addrs.contains(": lo:"), "{addrs}");
        println!("ip -d addr show: in the bundle");
    } else {
        let why = left.iter().find(|l| l["source"] == "ip -d addr show").expect("ip listed");
        assert!(why["why"].as_str().unwrap().contains("could not start"), "{why}");
        println!("ip is not installed here: the manifest says so ({})", why["why"]);
    }
    // Whatever happened to each command, the manifest accounts for it.
    for cmd in ["nvidia-smi -q", "fi_info -p efa", "systemctl --failed --no-pager"] {
        let path_of = |p: &str| m["entries"].as_array().unwrap().iter().any(|e| e["source"] == p);
        let listed = left.iter().any(|l| l["source"] == cmd);
        assert!(path_of(cmd) || listed, "{cmd}: neither in the archive nor in left_out");
        println!("{cmd}: {}", if listed { "left out (see manifest)" } else { "in the bundle" });
    }
}
