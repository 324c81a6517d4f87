//! `nodeprep bundle`: one tar.gz a support engineer can read without access to the node, in the
//! categories of the EKS NodeDiagnostic log capture (`base/`, `device/`, `networking/`,
//! `runtime/`, `system/`), with `manifest.json` saying what is in it, what was left out and why.
//!
//! Everything is read through [`Host`], so the bundle of a `--root` tree holds that tree's files;
//! host commands (journalctl, systemctl, nvidia-smi, fi_info, ip) only run on the live host and
//! are listed as not run otherwise. Credential files are never read ([`redact::secret_path`]),
//! every text is redacted ([`redact::redact`]), and the archive stays under a size cap: each file
//! keeps at most its last [`Bundle::per_file`] bytes; then nodeprep's report, and the other files
//! smallest first, take the room there is; a file that no longer fits keeps its end in what is
//! left (at least 64 KiB), or is left out (listed in the manifest). Many small facts therefore
//! survive a large log.

pub mod redact;

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::host::{self, Host};

/// The EKS NodeDiagnostic categories, as the archive's top directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// nodeprep itself, unit status and journals.
    Base,
    /// GPUs, EFA, NVMe.
    Device,
    Networking,
    /// containerd, kubelet, device plugins.
    Runtime,
    /// The kernel, mounts, md, limits.
    System,
}

impl Category {
    fn dir(self) -> &'static str {
        match self {
            Category::Base => "base",
            Category::Device => "device",
            Category::Networking => "networking",
            Category::Runtime => "runtime",
            Category::System => "system",
        }
    }
}

/// One file of the archive.
#[derive(Debug)]
pub struct Entry {
    pub path: String,
    pub category: Category,
    /// The host path or command it came from.
    pub source: String,
    pub truncated_from: Option<usize>,
    pub redactions: usize,
    text: String,
}

impl Entry {
    /// Its line in the manifest.
    fn manifest(&self) -> serde_json::Value {
        let mut m = serde_json::json!({
            "path": self.path,
            "category": self.category,
            "source": self.source,
            "bytes": self.text.len(),
        });
        if let Some(full) = self.truncated_from {
            m["truncated_from"] = full.into();
        }
        if self.redactions > 0 {
            m["redactions"] = self.redactions.into();
        }
        m
    }
}

/// Something not in the archive, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Left {
    pub source: String,
    pub why: String,
}

/// A bundle being collected.
#[derive(Debug)]
pub struct Bundle {
    entries: Vec<Entry>,
    /// Absent on this host (normal: not every node has every file).
    absent: Vec<String>,
    /// Not collected: unreadable, a command not run or failed, the size cap.
    left_out: Vec<Left>,
    /// Never read: credentials.
    refused: Vec<Left>,
    /// Bytes the archive may hold, less room for the manifest.
    budget: usize,
    /// The archive's limit.
    max: usize,
    /// The most bytes kept of one file (its end).
    pub per_file: usize,
}

/// Room kept for the manifest and the gzip/tar framing of it.
const MANIFEST_RESERVE: usize = 256 * 1024;
/// tar's header (and a GNU long-name header) per file, counted against the cap.
const TAR_OVERHEAD: usize = 1024;
/// The least end of a file worth keeping when the whole does not fit.
const MIN_TAIL: usize = 64 * 1024;
/// The least `--max-size` that leaves room for anything besides the manifest.
pub const MIN_MAX_BYTES: u64 = 1024 * 1024;
/// Each file is capped at this (its end is kept: logs are newest last).
const PER_FILE: usize = 16 * 1024 * 1024;

/// The units whose status and journal a bundle holds.
const UNITS: &[&str] =
    &["nodeprep-boot.service", "nodeprep.service", "containerd.service", "kubelet.service"];

impl Bundle {
    /// An empty bundle whose archive stays under `max_bytes`.
    pub fn new(max_bytes: u64) -> Bundle {
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let budget = max.saturating_sub(MANIFEST_RESERVE);
        Bundle {
            entries: Vec::new(),
            absent: Vec::new(),
            left_out: Vec::new(),
            refused: Vec::new(),
            budget,
            max,
            per_file: PER_FILE.min(budget / 4).max(4096),
        }
    }

    /// Adds a text under `category/name`, redacted and capped.
    pub fn add(&mut self, category: Category, name: &str, source: &str, text: &str) {
        let (text, redactions) = redact::redact(text);
        let full = text.len();
        let (text, cut) = tail(text, self.per_file);
        let path = format!("{}/{name}", category.dir());
        self.entries.push(Entry {
            path,
            category,
            source: source.into(),
            truncated_from: cut.then_some(full),
            redactions,
            text,
        });
    }

    /// Adds a host file, under its own path in `category`; absent files are listed as such.
    pub fn file(&mut self, host: &Host, category: Category, host_path: &str) {
        if let Some(why) = redact::secret_path(host_path) {
            self.refused.push(Left { source: host_path.into(), why: why.into() });
            return;
        }
        if self.entries.iter().any(|e| e.source == host_path) {
            return;
        }
        match host.read_bytes(host_path) {
            Ok(bytes) => {
                let name = host_path.trim_start_matches('/');
                self.add(category, name, host_path, &String::from_utf8_lossy(&bytes));
            }
            Err(e) if e.is_not_found() => self.absent.push(host_path.into()),
            Err(e) => self.left_out.push(Left { source: host_path.into(), why: e.to_string() }),
        }
    }

    /// Adds a host file when it exists, without listing its absence (sysfs attributes that some
    /// drivers and kernels do not have).
    pub fn file_if_present(&mut self, host: &Host, category: Category, host_path: &str) {
        if host.exists(host_path) {
            self.file(host, category, host_path);
        }
    }

    /// Adds every regular file directly in a host directory (drop-in and conf.d directories).
    pub fn dir(&mut self, host: &Host, category: Category, host_dir: &str) {
        match host.list_dir_opt(host_dir) {
            Ok(names) if names.is_empty() => self.absent.push(format!("{host_dir}/")),
            Ok(names) => {
                for n in names {
                    let p = format!("{host_dir}/{n}");
                    if !host.metadata(&p).is_ok_and(|m| m.is_dir) {
                        self.file(host, category, &p);
                    }
                }
            }
            Err(e) => self.left_out.push(Left { source: host_dir.into(), why: e.to_string() }),
        }
    }

    /// Adds a command's output (live host only).
    pub fn command(
        &mut self,
        host: &Host,
        category: Category,
        name: &str,
        argv: &[&str],
        timeout: Duration,
    ) {
        let line = argv.join(" ");
        if !host.is_live() {
            self.left_out.push(Left {
                source: line,
                why: format!(
                    "not run: --root is {}, not / (host commands only run on the live host)",
                    host.root().display()
                ),
            });
            return;
        }
        match host.run(argv[0], &argv[1..], timeout) {
            Ok(out) => self.add(category, name, &line, &out),
            Err(e) => self.left_out.push(Left { source: line, why: e.to_string() }),
        }
    }

    /// Fits the entries into the budget: nodeprep's own files first, then the others smallest
    /// first; one that does not fit keeps its end in the room left, or is left out.
    fn fit(&mut self) {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        let own = |e: &Entry| !e.path.starts_with("base/nodeprep/");
        order.sort_by_key(|&i| (own(&self.entries[i]), self.entries[i].text.len()));
        let mut used = 0;
        let mut drop = vec![false; self.entries.len()];
        for i in order {
            let e = &mut self.entries[i];
            let left = self.budget.saturating_sub(used + TAR_OVERHEAD);
            if e.text.len() <= left {
                used += e.text.len() + TAR_OVERHEAD;
            } else if left >= MIN_TAIL {
                let full = e.truncated_from.unwrap_or(e.text.len());
                e.text = tail(std::mem::take(&mut e.text), left - 512).0;
                e.truncated_from = Some(full);
                used += e.text.len() + TAR_OVERHEAD;
            } else {
                drop[i] = true;
                self.left_out.push(Left {
                    source: e.source.clone(),
                    why: format!(
                        "the size cap: its {} bytes do not fit in --max-size after the rest (raise it to include this)",
                        e.text.len()
                    ),
                });
            }
        }
        let mut i = 0;
        self.entries.retain(|_| {
            i += 1;
            !drop[i - 1]
        });
    }

    /// The archive (tar.gz): every entry that fits, then `manifest.json` with `meta` in it.
    pub fn finish(mut self, meta: serde_json::Value) -> std::io::Result<(Vec<u8>, Summary)> {
        self.fit();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let summary = Summary {
            files: self.entries.len() + 1,
            redactions: self.entries.iter().map(|e| e.redactions).sum(),
            truncated: self.entries.iter().filter(|e| e.truncated_from.is_some()).count(),
            left_out: self.left_out.len(),
            refused: self.refused.len(),
        };
        let manifest = serde_json::json!({
            "schema": "nodeprep.bundle/v1",
            "meta": meta,
            "summary": summary,
            "entries": self.entries.iter().map(Entry::manifest).collect::<Vec<_>>(),
            "absent": self.absent,
            "left_out": self.left_out,
            "refused": self.refused,
        });
        let manifest = serde_json::to_string_pretty(&manifest).map_err(std::io::Error::other)?;
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mut append = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_mtime(now.as_secs());
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, format!("nodeprep-bundle/{path}"), data)
        };
        for e in &self.entries {
            append(&e.path, e.text.as_bytes())?;
        }
        append("manifest.json", format!("{manifest}\n").as_bytes())?;
        let mut gz = tar.into_inner()?;
        gz.flush()?;
        let archive = gz.finish()?;
        if archive.len() > self.max {
            return Err(std::io::Error::other(format!(
                "the archive came to {} bytes, over --max-size {} (a bug: please report it)",
                archive.len(),
                self.max
            )));
        }
        Ok((archive, summary))
    }
}

/// The last `max` bytes of a text from a line start, marked; whether it was cut.
fn tail(text: String, max: usize) -> (String, bool) {
    let full = text.len();
    if full <= max {
        return (text, false);
    }
    let mut cut = full - max;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    if let Some(nl) = text[cut..].find('\n') {
        cut += nl + 1;
    }
    let note = format!(
        "[nodeprep bundle: the first {cut} of {full} bytes are left out; the end is kept]\n"
    );
    (note + &text[cut..], true)
}

/// Counts for the line `bundle` prints.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub files: usize,
    pub redactions: usize,
    pub truncated: usize,
    pub left_out: usize,
    pub refused: usize,
}

/// Collects everything but nodeprep's own report (the caller adds it first: it matters most).
pub fn collect(b: &mut Bundle, host: &Host) {
    use Category::*;
    let t = |s| Duration::from_secs(s);

    // Base: nodeprep's own files, unit status, journals.
    b.file(host, Base, crate::run::STATUS_FILE);
    b.file(host, Base, crate::config::DEFAULT_PATH);
    let mut show = vec!["systemctl", "show", "--no-pager"];
    show.push("--property=Id,LoadState,ActiveState,SubState,Result,ExecMainStatus,NRestarts,ActiveEnterTimestamp,InactiveEnterTimestamp,FragmentPath,DropInPaths");
    show.extend(UNITS);
    b.command(host, Base, "systemd/units.txt", &show, t(30));
    b.command(host, Base, "systemd/failed.txt", &["systemctl", "--failed", "--no-pager"], t(30));
    for unit in UNITS {
        for dir in ["/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"] {
            b.file_if_present(host, Base, &format!("{dir}/{unit}"));
            let d = format!("{dir}/{unit}.d");
            if host.exists(&d) {
                b.dir(host, Base, &d);
            }
        }
        let name = format!("journal/{}.log", unit.trim_end_matches(".service"));
        let argv = [
            "journalctl",
            "--no-pager",
            "-b",
            "-o",
            "short-iso-precise",
            "-n",
            "50000",
            "-u",
            unit,
        ];
        b.command(host, Base, &name, &argv, t(60));
    }

    // System: kernel, boot, mounts, md, limits.
    for p in [
        "/proc/version",
        "/proc/cmdline",
        "/proc/uptime",
        "/proc/meminfo",
        "/proc/mdstat",
        "/proc/1/mountinfo",
        "/etc/os-release",
        "/etc/fstab",
        "/etc/mdadm.conf",
        "/etc/mdadm/mdadm.conf",
        "/etc/security/limits.conf",
        "/proc/sys/kernel/dmesg_restrict",
    ] {
        b.file(host, System, p);
    }
    if host.is_live() {
        b.file(host, System, "/proc/self/mountinfo");
    }
    b.dir(host, System, "/etc/security/limits.d");
    let mut kmsg = String::new();
    match host::kmsg::read_raw(host, |line| {
        kmsg.push_str(line);
        kmsg.push('\n');
    }) {
        Ok(_) => b.add(System, "kmsg.txt", host::kmsg::KMSG, &kmsg),
        Err(e) if e.is_not_found() => b.absent.push(host::kmsg::KMSG.into()),
        Err(e) => b.left_out.push(Left { source: host::kmsg::KMSG.into(), why: e.to_string() }),
    }

    // Runtime: containerd and its spec, kubelet's config, device plugins.
    b.file(host, Runtime, host::containerd::CONFIG);
    b.dir(host, Runtime, "/etc/containerd/conf.d");
    match host::containerd::load(host) {
        Ok(cri) => {
            // Imports beyond conf.d (the main file is collected above).
            for f in cri.files.iter().skip(1).filter(|f| !f.starts_with("/etc/containerd/conf.d/"))
            {
                b.file(host, Runtime, f);
            }
            if let Some(spec) = cri.base_runtime_spec {
                b.file(host, Runtime, &spec.path);
            }
        }
        Err(e) => b.left_out.push(Left { source: "base_runtime_spec".into(), why: e.to_string() }),
    }
    // Where the EKS AMIs and nodeprep boot put it.
    b.file_if_present(host, Runtime, "/etc/containerd/base-runtime-spec.json");
    // The limits containerd and kubelet run with (new containers inherit containerd's).
    for (comm, pid) in host::proc::named(host, &["containerd", "kubelet"]) {
        let p = format!("/proc/{pid}/limits");
        if let Ok(text) = host.read_string(&p) {
            b.add(Runtime, &format!("limits/{comm}-{pid}.txt"), &p, &text);
        }
    }
    // AL2023 (nodeadm) keeps kubelet's config in /etc/kubernetes/kubelet; Ubuntu and Bottlerocket
    // in /var/lib/kubelet. Kubeconfigs next to them are refused.
    b.dir(host, Runtime, "/etc/kubernetes/kubelet");
    b.dir(host, Runtime, "/etc/kubernetes/kubelet/config.json.d");
    b.file(host, Runtime, "/var/lib/kubelet/config.yaml");
    b.file(host, Runtime, "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint");
    b.command(host, Runtime, "containerd-version.txt", &["containerd", "--version"], t(10));

    // Device: NVIDIA, EFA, NVMe, PCI.
    b.file(host, Device, "/proc/driver/nvidia/version");
    for gpu in host.list_dir_opt("/proc/driver/nvidia/gpus").unwrap_or_default() {
        b.file(host, Device, &format!("/proc/driver/nvidia/gpus/{gpu}/information"));
    }
    let dev_nodes: Vec<String> = host
        .list_dir_opt("/dev")
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with("nvidia"))
        .collect();
    let infiniband = host.list_dir_opt("/dev/infiniband").unwrap_or_default();
    b.add(
        Device,
        "dev-nodes.txt",
        "/dev/nvidia*, /dev/infiniband/*",
        &format!("/dev: {}\n/dev/infiniband: {}\n", dev_nodes.join(" "), infiniband.join(" ")),
    );
    b.add(Device, "pci.txt", host::pci::PCI_DEVICES, &pci_table(host));
    b.file(host, Device, "/sys/module/efa/version");
    let (ports, counters) = rdma_tables(host);
    b.add(Device, "rdma-ports.txt", host::rdma::CLASS, &ports);
    b.add(Device, "rdma-hw-counters.txt", host::rdma::CLASS, &counters);
    b.add(Device, "block.txt", host::block::SYS_BLOCK, &block_table(host));
    b.command(host, Device, "nvidia-smi-q.txt", &["nvidia-smi", "-q"], t(60));
    b.command(host, Device, "fi_info-efa.txt", &["fi_info", "-p", "efa"], t(30));

    // Networking.
    b.file(host, Networking, "/proc/net/dev");
    b.file(host, Networking, "/etc/resolv.conf");
    b.add(Networking, "interfaces.txt", "/sys/class/net", &net_table(host));
    b.command(host, Networking, "ip-addr.txt", &["ip", "-d", "addr", "show"], t(10));
    b.command(host, Networking, "ip-route.txt", &["ip", "route", "show", "table", "all"], t(10));
}

/// A sysfs attribute for a table: its value, or `-` when it is absent or unreadable.
fn attr_or_dash(host: &Host, path: &str) -> String {
    host.read_attr_opt(path).ok().flatten().unwrap_or_else(|| "-".into())
}

/// One line per PCI function: address, vendor, device, class, NUMA node, driver.
fn pci_table(host: &Host) -> String {
    let mut out = String::from("address vendor device class numa_node driver\n");
    for a in host.list_dir_opt(host::pci::PCI_DEVICES).unwrap_or_default() {
        let d = format!("{}/{a}", host::pci::PCI_DEVICES);
        let attr = |f: &str| attr_or_dash(host, &format!("{d}/{f}"));
        let driver =
            host.link_name(format!("{d}/driver")).ok().flatten().unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{a} {} {} {} {} {driver}\n",
            attr("vendor"),
            attr("device"),
            attr("class"),
            attr("numa_node")
        ));
    }
    out
}

/// The RDMA devices (EFA): one line per port with its state, and one line per port counter.
fn rdma_tables(host: &Host) -> (String, String) {
    let mut ports = String::from("device port state phys_state rate link_layer node_type fw_ver\n");
    let mut counters = String::from("device port counter value\n");
    for dev in host.list_dir_opt(host::rdma::CLASS).unwrap_or_default() {
        let base = format!("{}/{dev}", host::rdma::CLASS);
        let attr = |f: &str| attr_or_dash(host, &format!("{base}/{f}"));
        for port in host.list_dir_opt(format!("{base}/ports")).unwrap_or_default() {
            let p = format!("ports/{port}");
            ports.push_str(&format!(
                "{dev} {port} {:?} {:?} {:?} {} {:?} {}\n",
                attr(&format!("{p}/state")),
                attr(&format!("{p}/phys_state")),
                attr(&format!("{p}/rate")),
                attr(&format!("{p}/link_layer")),
                attr("node_type"),
                attr("fw_ver"),
            ));
            for c in host.list_dir_opt(format!("{base}/{p}/hw_counters")).unwrap_or_default() {
                counters.push_str(&format!(
                    "{dev} {port} {c} {}\n",
                    attr(&format!("{p}/hw_counters/{c}"))
                ));
            }
        }
    }
    (ports, counters)
}

/// One line per block device: name, size in 512-byte sectors, model, serial.
fn block_table(host: &Host) -> String {
    let mut out = String::from("name sectors model serial\n");
    for n in host::block::names(host).unwrap_or_default() {
        let d = format!("{}/{n}", host::block::SYS_BLOCK);
        let attr = |f: &str| attr_or_dash(host, &format!("{d}/{f}"));
        out.push_str(&format!(
            "{n} {} {:?} {:?}\n",
            attr("size"),
            attr("device/model"),
            attr("device/serial")
        ));
    }
    out
}

/// One line per network interface: name, state, MTU, MAC.
fn net_table(host: &Host) -> String {
    let mut out = String::from("name operstate mtu address\n");
    for n in host.list_dir_opt("/sys/class/net").unwrap_or_default() {
        let d = format!("/sys/class/net/{n}");
        let attr = |f: &str| attr_or_dash(host, &format!("{d}/{f}"));
        out.push_str(&format!("{n} {} {} {}\n", attr("operstate"), attr("mtu"), attr("address")));
    }
    out
}
