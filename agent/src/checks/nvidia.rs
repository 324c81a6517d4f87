//! `nvidia`: the GPUs the instance type promises are present and healthy, the driver answers, the
//! NVSwitch fabric is up, and the kernel has logged no fatal XID error this boot.
//!
//! GPUs are counted three ways and compared with the catalog: on PCI (vendor 0x10de, class
//! 0x0300xx/0x0302xx; NVSwitch bridges 0x0680xx are counted apart), as `/dev/nvidia<N>` nodes,
//! and by NVML. NVML (see [`nvml`]) also gives each GPU's name, UUID, bus id, memory, volatile
//! uncorrected ECC errors, pending page retirement and row remapping, and on NVSwitch types the
//! GPU fabric state. XID errors come from the kernel log (see [`kmsg`]) and are mapped to GPUs by
//! PCI address. [`observe`] reads everything once; [`evaluate`] decides, without touching the
//! host.
//!
//! Fabric manager: NVML's `nvmlDeviceGetGpuFabricInfo` (R525+) says whether each GPU's fabric
//! registration completed. When the driver lacks it or says "not supported", nodeprep falls back
//! to the `nvidia-fabricmanager` service, read-only: its pid file
//! (`/run/nvidia-fabricmanager/nv-fabricmanager.pid`, the unit's `PIDFile=`) naming a live
//! `nv-fabricmanager` process, else a non-empty `cgroup.procs` of `nvidia-fabricmanager.service`,
//! else (no such cgroup: not started by systemd) any such process in `/proc`. Running is all those
//! fallbacks can tell.

pub mod kmsg;
pub mod nvml;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Check, Context};
use crate::host::{procs, Host};
use crate::report::{CheckResult, Status};
use kmsg::KmsgScan;
use nvml::{FabricInfo, Field, GpuInfo, NvmlErrorKind, Outcome};

pub const PCI_DEVICES: &str = "/sys/bus/pci/devices";
pub const PROC_VERSION: &str = "/proc/driver/nvidia/version";
pub const FM_PID_FILE: &str = "/run/nvidia-fabricmanager/nv-fabricmanager.pid";
pub const FM_UNIT: &str = "nvidia-fabricmanager.service";
pub const NVIDIA_VENDOR: &str = "0x10de";

/// A PCI address: sysfs writes `0000:53:00.0`, NVML `00000000:53:00.0`, XID lines `0000:53:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: Option<u8>,
}

impl PciAddr {
    /// Parses `[PCI:][domain:]bus:device[.function]` (hexadecimal, any case).
    pub fn parse(s: &str) -> Option<PciAddr> {
        let s = s.trim();
        let s = s.strip_prefix("PCI:").unwrap_or(s);
        let (addr, function) = match s.rsplit_once('.') {
            Some((a, f)) => (a, Some(u8::from_str_radix(f, 16).ok().filter(|f| *f < 8)?)),
            None => (s, None),
        };
        let hex = |t: &str| {
            (!t.is_empty() && t.len() <= 8).then(|| u32::from_str_radix(t, 16).ok()).flatten()
        };
        let parts: Vec<&str> = addr.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, dev] => (hex(d)?, hex(b)?, hex(dev)?),
            [b, dev] => (0, hex(b)?, hex(dev)?),
            _ => return None,
        };
        (bus <= 0xff && device < 0x20).then_some(PciAddr {
            domain,
            bus: bus as u8,
            device: device as u8,
            function,
        })
    }

    /// Same domain, bus and device (the function is not always logged).
    pub fn same_slot(&self, other: &PciAddr) -> bool {
        (self.domain, self.bus, self.device) == (other.domain, other.bus, other.device)
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}", self.domain, self.bus, self.device)?;
        if let Some(func) = self.function {
            write!(f, ".{func:x}")?;
        }
        Ok(())
    }
}

/// A GPU on the PCI bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciGpu {
    pub addr: PciAddr,
    /// The sysfs directory name, e.g. `0000:53:00.0`.
    pub bdf: String,
    pub device: String,
}

/// The `nvidia-fabricmanager` service as the host shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FabricUnit {
    Running { pid: u32, how: &'static str },
    NotRunning,
}

/// Everything the check reads, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub pci_gpus: Vec<PciGpu>,
    pub nvswitches: usize,
    /// N of each `/dev/nvidia<N>`.
    pub dev_nodes: Vec<u32>,
    /// The driver version in `/proc/driver/nvidia/version`.
    pub proc_version: Option<String>,
    /// `None`: NVML was not asked (no GPU anywhere and none expected).
    pub nvml: Option<Outcome>,
    pub kmsg: Result<KmsgScan, String>,
    /// Looked at on NVSwitch types only.
    pub fabric_unit: Option<FabricUnit>,
    /// Things that exist but could not be read.
    pub errors: Vec<String>,
}

/// How to observe.
#[derive(Debug, Clone)]
pub struct Options {
    pub expected_gpus: Option<u32>,
    /// Ask NVML for fabric state and look at the fabric manager service.
    pub nvswitch: bool,
    pub deadlines: nvml::Deadlines,
    /// `NODEPREP_NVML_LIB`.
    pub lib_env: Option<OsString>,
}

/// NVIDIA GPUs and NVSwitches on the PCI bus.
pub fn pci_scan(host: &Host, errors: &mut Vec<String>) -> (Vec<PciGpu>, usize) {
    let names = host.list_dir_opt(PCI_DEVICES).unwrap_or_else(|e| {
        errors.push(e.to_string());
        Vec::new()
    });
    let (mut gpus, mut switches) = (Vec::new(), 0);
    for bdf in names {
        let attr = |a: &str| host.read_attr(format!("{PCI_DEVICES}/{bdf}/{a}"));
        match attr("vendor") {
            Ok(v) if v == NVIDIA_VENDOR => {}
            Ok(_) => continue,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        }
        let class = match attr("class") {
            Ok(c) => u32::from_str_radix(c.trim_start_matches("0x"), 16).unwrap_or(0),
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        match class >> 8 {
            0x0300 | 0x0302 => match PciAddr::parse(&bdf) {
                Some(addr) => gpus.push(PciGpu {
                    addr,
                    bdf: bdf.clone(),
                    device: attr("device").unwrap_or_default(),
                }),
                None => errors.push(format!(
                    "{}: not a PCI address",
                    host.path(format!("{PCI_DEVICES}/{bdf}")).display()
                )),
            },
            0x0680 => switches += 1,
            _ => {}
        }
    }
    gpus.sort_by_key(|g| g.addr);
    (gpus, switches)
}

/// N of each `/dev/nvidia<N>` (not `nvidiactl`, `nvidia-uvm`, ...).
pub fn dev_nodes(host: &Host) -> Vec<u32> {
    let mut v: Vec<u32> = host
        .list_dir_opt("/dev")
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.strip_prefix("nvidia"))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|n| n.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// The driver version in `/proc/driver/nvidia/version`'s first line, e.g. `550.127.05` from
/// `NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.127.05  Release Build ...`.
pub fn parse_proc_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    line.split_whitespace()
        .find(|t| {
            t.contains('.')
                && t.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// Whether the `nvidia-fabricmanager` service runs (see the module docs).
pub fn fabric_unit(host: &Host) -> FabricUnit {
    // comm is cut to 15 characters: "nv-fabricmanager" reads "nv-fabricmanage".
    let is_fm = |c: &str| c.starts_with("nv-fabricmanage");
    if let Ok(Some(pid)) =
        host.read_attr_opt(FM_PID_FILE).map(|p| p.and_then(|p| p.parse::<u32>().ok()))
    {
        if host.read_attr(format!("/proc/{pid}/comm")).is_ok_and(|c| is_fm(&c)) {
            return FabricUnit::Running { pid, how: "pid file" };
        }
    }
    // The unit's cgroup: any process in it is the service running (whatever it is called).
    // (An unreadable one tells nothing: /proc is walked as if there were none, as procs::find does.)
    if let Some(text) = procs::unit_cgroup(host, FM_UNIT).and_then(|p| host.read_attr(p).ok()) {
        let listed = text.lines().find_map(|l| l.trim().parse::<u32>().ok());
        return listed
            .map_or(FabricUnit::NotRunning, |pid| FabricUnit::Running { pid, how: "cgroup" });
    }
    match procs::walk(host, is_fm) {
        Some(pid) => FabricUnit::Running { pid, how: procs::Found::Walk.as_str() },
        None => FabricUnit::NotRunning,
    }
}

/// Reads everything the check needs.
pub fn observe(host: &Host, opts: &Options) -> Snapshot {
    let mut errors = Vec::new();
    // Where GPUs are expected NVML is asked in any case: its thread starts first and loads the
    // library while sysfs is read here.
    let early = opts.expected_gpus.is_some_and(|n| n > 0);
    let start_nvml =
        || nvml::start(nvml::choose_lib(host, opts.lib_env.clone()), opts.nvswitch, opts.deadlines);
    let pending = early.then(start_nvml);
    let (pci_gpus, nvswitches) = pci_scan(host, &mut errors);
    let dev_nodes = dev_nodes(host);
    let proc_version = match host.read_string(PROC_VERSION) {
        Ok(t) => parse_proc_version(&t),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    let ask = early || !pci_gpus.is_empty() || !dev_nodes.is_empty();
    let pending = pending.or_else(|| ask.then(start_nvml));
    // The kernel log only matters where there are GPUs.
    let kmsg =
        if ask { kmsg::scan(host).map_err(|e| e.to_string()) } else { Ok(KmsgScan::default()) };
    let fabric_unit = opts.nvswitch.then(|| fabric_unit(host));
    let nvml = pending.map(nvml::Pending::wait);
    Snapshot { pci_gpus, nvswitches, dev_nodes, proc_version, nvml, kmsg, fabric_unit, errors }
}

/// What the node must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub instance_type: Option<String>,
    pub gpus: Option<u32>,
    pub gpu_model: Option<String>,
    pub nvswitch: Option<bool>,
    pub fatal_xids: Vec<u32>,
}

/// True when `name` contains `model` as whole words, ignoring case: "H100" is in
/// "NVIDIA H100 80GB HBM3", "L4" is not in "NVIDIA L40S".
pub fn model_matches(name: &str, model: &str) -> bool {
    let (name, model) = (name.to_ascii_lowercase(), model.trim().to_ascii_lowercase());
    if model.is_empty() {
        return true;
    }
    let bytes = name.as_bytes();
    name.match_indices(&model).any(|(i, m)| {
        let before = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let end = i + m.len();
        let after = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
        before && after
    })
}

/// Why something is wrong, and so what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Remedy {
    NvmlMissing,
    NvmlLoad,
    DriverNotLoaded,
    VersionMismatch,
    Permission,
    Unreadable,
    Hung,
    PciMissing,
    DevNodes,
    GpuFault,
    Model,
    Fabric,
    Other,
}

impl Remedy {
    fn text(self) -> &'static str {
        match self {
            Remedy::NvmlMissing => "install the NVIDIA driver (AL2023/RHEL: the nvidia-driver packages; Ubuntu: nvidia-driver-<version>-server; or use an EKS accelerated AMI), or set NODEPREP_NVML_LIB to the path of libnvidia-ml.so.1",
            Remedy::NvmlLoad => "set NODEPREP_NVML_LIB to a libnvidia-ml.so.1 built for this architecture, or reinstall the NVIDIA driver",
            Remedy::DriverNotLoaded => "the NVIDIA kernel module is not loaded: run `modprobe nvidia` and read `dmesg` (a module built for another kernel does not load: reinstall the driver for this kernel)",
            Remedy::VersionMismatch => "the NVIDIA library and kernel module differ (the driver was upgraded without a reboot): reboot the node",
            Remedy::Permission => "run nodeprep as root (NVML and /dev/kmsg need it)",
            Remedy::Unreadable => "run nodeprep as root (the paths above could not be read); if root cannot read them either, the device is in a bad state: reboot the node or replace the instance",
            Remedy::Hung => "a GPU or the driver is hung: look for XID errors (`dmesg | grep -i xid`), drain the node and reboot it; replace the instance if it happens again",
            Remedy::PciMissing => "a GPU is missing from the PCI bus: stop and start the instance (it moves to other hardware) or replace it",
            Remedy::DevNodes => "the driver has not created a /dev/nvidia<N> node for every GPU: check `dmesg | grep NVRM`; nvidia-persistenced (or one run of nvidia-smi) creates them",
            Remedy::GpuFault => "drain the node (`kubectl drain`) and reboot it; if the error comes back, stop and start the instance to move to other hardware, or replace it",
            Remedy::Model => "the GPUs are not the model this instance type has: check the instance type, or set expect.gpu_model in the config",
            Remedy::Fabric => "start the fabric manager: `systemctl enable --now nvidia-fabricmanager` (its version must match the driver's exactly); GPUs of NVSwitch instances cannot run CUDA until it has registered them",
            Remedy::Other => "run `nodeprep check --only nvidia -vv` and `nvidia-smi -q` to see more",
        }
    }
}

/// Joins up to three items and says how many more there are.
fn some(items: &[String]) -> String {
    match items.len() {
        0..=3 => items.join(", "),
        n => format!("{} and {} more", items[..3].join(", "), n - 3),
    }
}

/// A field for the report: its value, `"unknown"`, or `"error: ..."`.
fn field_json<T: Into<Value> + Clone>(f: &Field<T>) -> Value {
    field_with(f, |v| v.clone().into())
}

fn field_with<T>(f: &Field<T>, show: impl Fn(&T) -> Value) -> Value {
    match f {
        Field::Value(v) => show(v),
        Field::Unknown(_) => Value::from("unknown"),
        Field::Error(e) => Value::from(format!("error: {e}")),
    }
}

/// One XID, counted over the boot.
struct XidGroup {
    xid: u32,
    pci: String,
    gpu: Option<u32>,
    message: String,
    count: usize,
    fatal: bool,
}

/// Decides the check's result from a snapshot.
pub fn evaluate(snap: &Snapshot, want: &Expect) -> CheckResult {
    let required = want.gpus.is_some_and(|n| n > 0);
    let nvswitch = want.nvswitch == Some(true);
    let mut r = CheckResult::new("nvidia", Status::Pass, "")
        .required(required)
        .expect("gpus", want.gpus.map_or(Value::Null, Value::from))
        .expect("gpu_model", want.gpu_model.clone().map_or(Value::Null, Value::from))
        .expect("nvswitch", want.nvswitch.map_or(Value::Null, Value::from));
    let report = match &snap.nvml {
        Some(Outcome::Answered(rep)) => Some(rep),
        _ => None,
    };
    let driver_version = report
        .and_then(|rep| rep.driver_version.value().cloned().map(|v| (v, "nvml")))
        .or_else(|| snap.proc_version.clone().map(|v| (v, PROC_VERSION)));
    r = r
        .found("pci_gpus", snap.pci_gpus.len())
        .found("dev_nodes", snap.dev_nodes.len())
        .found("nvswitches", snap.nvswitches)
        .found(
            "driver_version",
            driver_version.as_ref().map_or(Value::Null, |(v, _)| Value::from(v.clone())),
        )
        .found(
            "driver_version_source",
            driver_version.as_ref().map_or(Value::Null, |(_, s)| Value::from(*s)),
        );
    if !snap.errors.is_empty() {
        r = r.found("errors", snap.errors.clone());
    }
    if snap.nvml.is_none() {
        r.status = Status::Skip;
        r.summary = match (&want.gpus, &want.instance_type) {
            (Some(_), Some(t)) => format!("{t} has no NVIDIA GPUs and none are present"),
            _ => "no NVIDIA GPUs on this node".into(),
        };
        return r.found("gpus", 0).found("xid_errors", Vec::<Value>::new());
    }

    let mut problems: Vec<(String, Remedy)> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    // Per NVML GPU index: what is wrong with it.
    let mut gpu_problems: BTreeMap<u32, Vec<(String, Remedy)>> = BTreeMap::new();
    let gpus: &[GpuInfo] = report.map_or(&[], |rep| &rep.gpus);
    let addr_of = |g: &GpuInfo| g.pci.value().and_then(|p| PciAddr::parse(p));
    let label = |g: &GpuInfo| match addr_of(g) {
        Some(a) => format!("GPU {} ({a})", g.index),
        None => format!("GPU {}", g.index),
    };

    // NVML itself.
    match &snap.nvml {
        Some(Outcome::NotFound { searched, error }) => {
            let dirs: Vec<String> = searched
                .iter()
                .map(|s| s.rsplit_once('/').map_or(s.as_str(), |(d, _)| d).to_string())
                .collect();
            problems.push((
                format!(
                    "NVML not found: no {} under --root (in {}) and the dynamic loader has none ({error})",
                    nvml::LIB_NAME,
                    some(&dirs)
                ),
                Remedy::NvmlMissing,
            ))
        }
        Some(Outcome::LoadFailed { library, error }) => {
            problems.push((format!("cannot load NVML {library}: {error}"), Remedy::NvmlLoad))
        }
        Some(Outcome::InitFailed { library, error, message }) => {
            let remedy = match error {
                NvmlErrorKind::DriverNotLoaded => Remedy::DriverNotLoaded,
                NvmlErrorKind::NoPermission => Remedy::Permission,
                NvmlErrorKind::VersionMismatch => Remedy::VersionMismatch,
                NvmlErrorKind::Other => Remedy::Other,
            };
            problems.push((format!("NVML ({library}) failed to start: {message}"), remedy));
        }
        Some(Outcome::TimedOut { call, after_ms, .. }) => problems
            .push((format!("NVML did not answer within {after_ms} ms ({call})"), Remedy::Hung)),
        Some(Outcome::StillStuck { call, since_ms }) => problems.push((
            format!(
                "NVML has not answered for {} s ({call}); it is not asked again until it does",
                since_ms / 1000
            ),
            Remedy::Hung,
        )),
        Some(Outcome::Answered(_)) | None => {}
    }
    if let Some(rep) = report {
        r = r.found("nvml_library", rep.library.clone());
        if driver_version.is_none() {
            let why = match &rep.driver_version {
                Field::Error(e) | Field::Unknown(e) => e.as_str(),
                Field::Value(_) => "",
            };
            warnings.push(format!("driver version unknown ({why}; no {PROC_VERSION})"));
        }
    }

    // Counts, three ways.
    let (p, d) = (snap.pci_gpus.len(), snap.dev_nodes.len());
    let n = report.and_then(|rep| rep.count.value().copied()).map(|n| n as usize);
    if let Some(Field::Error(e) | Field::Unknown(e)) = report.map(|rep| &rep.count) {
        problems.push((format!("NVML cannot count GPUs: {e}"), Remedy::Other));
    }
    let missing: Vec<String> = if report.is_some() {
        snap.pci_gpus
            .iter()
            .filter(|pg| !gpus.iter().any(|g| addr_of(g).is_some_and(|a| a.same_slot(&pg.addr))))
            .map(|pg| pg.bdf.clone())
            .collect()
    } else {
        Vec::new()
    };
    for g in gpus {
        if let Some(a) = addr_of(g) {
            if !snap.pci_gpus.iter().any(|pg| pg.addr.same_slot(&a)) {
                warnings.push(format!("{} is not under {PCI_DEVICES}", label(g)));
            }
        }
    }
    let missing_text = if missing.is_empty() {
        String::new()
    } else {
        format!(": {} on PCI but not seen by NVML", some(&missing))
    };
    match want.gpus {
        Some(e) => {
            let e = e as usize;
            if p < e {
                problems.push((format!("only {p} of {e} GPUs on the PCI bus"), Remedy::PciMissing));
            } else if p > e {
                problems.push((format!("{p} GPUs on the PCI bus, expected {e}"), Remedy::Model));
            }
            if d != e {
                problems
                    .push((format!("{d} of {e} /dev/nvidia<N> device nodes"), Remedy::DevNodes));
            }
            match n {
                Some(n) if n != e => problems
                    .push((format!("NVML sees {n} of {e} GPUs{missing_text}"), Remedy::GpuFault)),
                Some(_) if !missing.is_empty() => problems
                    .push((format!("NVML GPUs differ from PCI{missing_text}"), Remedy::GpuFault)),
                _ => {}
            }
        }
        None => {
            let nv = n.map_or("?".to_string(), |n| n.to_string());
            if p != d || n.is_some_and(|n| n != p) || !missing.is_empty() {
                problems
                    .push((format!("GPU counts disagree: {p} on PCI, {d} /dev/nvidia<N>, {nv} in NVML{missing_text}"), Remedy::GpuFault));
            }
        }
    }

    // What could not be read is never taken as absent or healthy.
    if !snap.errors.is_empty() {
        problems.push((format!("could not read: {}", some(&snap.errors)), Remedy::Unreadable));
    }

    // Each GPU NVML answered for.
    for g in gpus {
        let mine = gpu_problems.entry(g.index).or_default();
        if let Some(e) = &g.handle_error {
            mine.push((e.clone(), Remedy::GpuFault));
            continue;
        }
        for (what, f) in [("name", &g.name), ("UUID", &g.uuid), ("bus id", &g.pci)] {
            if let Field::Error(e) = f {
                mine.push((format!("{what}: {e}"), Remedy::GpuFault));
            }
        }
        if let Field::Error(e) = &g.memory_total {
            mine.push((e.clone(), Remedy::GpuFault));
        }
        match (&g.name, &want.gpu_model) {
            (Field::Value(name), Some(model)) if !model_matches(name, model) => {
                mine.push((format!("is a {name}, expected {model}"), Remedy::Model));
            }
            (Field::Unknown(_), Some(model)) => {
                warnings.push(format!("{}: name unknown, so not confirmed to be {model}", label(g)))
            }
            _ => {}
        }
        match &g.ecc_uncorrected_volatile {
            Field::Value(0) | Field::Unknown(_) => {}
            Field::Value(c) => mine.push((
                format!("{c} uncorrected ECC errors since the driver loaded"),
                Remedy::GpuFault,
            )),
            Field::Error(e) => mine.push((e.clone(), Remedy::GpuFault)),
        }
        match &g.retired_pages_pending {
            Field::Value(true) => mine
                .push(("retired pages pending (a reboot retires them)".into(), Remedy::GpuFault)),
            Field::Error(e) => mine.push((e.clone(), Remedy::GpuFault)),
            _ => {}
        }
        match &g.remapped_rows {
            Field::Value(rows) if rows.failure => {
                mine.push(("row remapping failed".into(), Remedy::GpuFault))
            }
            Field::Value(rows) if rows.pending => mine.push((
                "row remapping pending (a GPU reset or reboot applies it)".into(),
                Remedy::GpuFault,
            )),
            Field::Error(e) => mine.push((e.clone(), Remedy::GpuFault)),
            _ => {}
        }
        if matches!(g.ecc_uncorrected_volatile, Field::Unknown(_))
            && matches!(g.retired_pages_pending, Field::Unknown(_))
            && matches!(g.remapped_rows, Field::Unknown(_))
        {
            warnings.push(format!("{}: memory health unknown (this driver reports no ECC, page retirement or row remapping)", label(g)));
        }
    }

    // Fabric (NVSwitch types).
    let mut fabric_state: Option<String> = None;
    if nvswitch {
        let mut use_unit = report.is_none() || gpus.is_empty();
        let mut complete = 0;
        for g in gpus {
            match &g.fabric {
                Some(Field::Value(FabricInfo { state: nvml::FABRIC_COMPLETED, error: None })) => {
                    complete += 1
                }
                Some(Field::Value(FabricInfo {
                    state: nvml::FABRIC_COMPLETED,
                    error: Some(e),
                })) => gpu_problems
                    .entry(g.index)
                    .or_default()
                    .push((format!("fabric registration failed: {e}"), Remedy::Fabric)),
                Some(Field::Value(FabricInfo { state: nvml::FABRIC_NOT_STARTED, .. })) => {
                    gpu_problems.entry(g.index).or_default().push((
                        "fabric manager has not started registering it".into(),
                        Remedy::Fabric,
                    ))
                }
                Some(Field::Value(FabricInfo { state: nvml::FABRIC_IN_PROGRESS, .. })) => {
                    gpu_problems
                        .entry(g.index)
                        .or_default()
                        .push(("fabric registration still in progress".into(), Remedy::Fabric))
                }
                Some(Field::Error(e)) => {
                    gpu_problems.entry(g.index).or_default().push((e.clone(), Remedy::Fabric))
                }
                Some(Field::Value(_) | Field::Unknown(_)) | None => use_unit = true,
            }
        }
        if use_unit {
            match &snap.fabric_unit {
                Some(FabricUnit::Running { pid, how }) => {
                    fabric_state = Some(format!("fabric manager running (pid {pid}, from its {how}); NVML gives no fabric state"))
                }
                _ => {
                    fabric_state = Some("fabric manager not running".into());
                    problems.push(("nvidia-fabricmanager is not running (NVSwitch fabric down)".into(), Remedy::Fabric));
                }
            }
        } else if complete == gpus.len() {
            fabric_state = Some("fabric complete".into());
        } else {
            fabric_state = Some(format!("fabric complete on {complete} of {} GPUs", gpus.len()));
        }
    }

    // XID errors this boot.
    let mut groups: Vec<XidGroup> = Vec::new();
    match &snap.kmsg {
        Ok(scan) => {
            let mut index: BTreeMap<(u32, String), usize> = BTreeMap::new();
            for x in &scan.xids {
                let gpu = x.pci.and_then(|a| {
                    gpus.iter().find(|g| addr_of(g).is_some_and(|b| b.same_slot(&a)))
                });
                let pci_gpu =
                    x.pci.and_then(|a| snap.pci_gpus.iter().find(|pg| pg.addr.same_slot(&a)));
                let pci = match (pci_gpu, x.pci) {
                    (Some(pg), _) => pg.bdf.clone(),
                    (None, Some(a)) => a.to_string(),
                    (None, None) => x.pci_text.clone(),
                };
                let key = (x.xid, pci.clone());
                match index.get(&key) {
                    Some(&i) => groups[i].count += 1,
                    None => {
                        index.insert(key, groups.len());
                        groups.push(XidGroup {
                            xid: x.xid,
                            pci,
                            gpu: gpu.map(|g| g.index),
                            message: x.message.clone(),
                            count: 1,
                            fatal: want.fatal_xids.contains(&x.xid),
                        });
                    }
                }
            }
        }
        Err(e) => warnings.push(format!("XID errors unknown: {e}")),
    }
    for x in &groups {
        let times = if x.count > 1 { format!(" ({} times)", x.count) } else { String::new() };
        let what = format!("XID {}{times}: {}", x.xid, x.message);
        match (x.fatal, x.gpu) {
            (true, Some(i)) => gpu_problems.entry(i).or_default().push((what, Remedy::GpuFault)),
            (true, None) => problems.push((format!("{what} on {}", x.pci), Remedy::GpuFault)),
            (false, Some(i)) => {
                let g = gpus.iter().find(|g| g.index == i).expect("mapped to a GPU of this report");
                warnings.push(format!("{} on {}", what, label(g)));
            }
            (false, None) => warnings.push(format!("{what} on {}", x.pci)),
        }
    }

    // Per-GPU problems into the list, and healthy GPUs.
    let healthy =
        gpus.iter().filter(|g| gpu_problems.get(&g.index).is_none_or(Vec::is_empty)).count();
    for g in gpus {
        for (text, remedy) in gpu_problems.get(&g.index).into_iter().flatten() {
            problems.push((format!("{}: {text}", label(g)), *remedy));
        }
    }

    let devices: Vec<Value> = gpus
        .iter()
        .map(|g| {
            let mut v = json!({
                "index": g.index,
                "name": field_json(&g.name),
                "uuid": field_json(&g.uuid),
                "pci": field_with(&g.pci, |p| Value::from(PciAddr::parse(p).map_or(p.clone(), |a| a.to_string()))),
                "memory_total_bytes": field_json(&g.memory_total),
                "ecc_uncorrected_volatile": field_json(&g.ecc_uncorrected_volatile),
                "retired_pages_pending": field_json(&g.retired_pages_pending),
                "remapped_rows": field_with(&g.remapped_rows, |rr| json!({"corrected": rr.corrected, "uncorrected": rr.uncorrected, "pending": rr.pending, "failure": rr.failure})),
                "healthy": gpu_problems.get(&g.index).is_none_or(Vec::is_empty),
                "problems": gpu_problems.get(&g.index).map_or(Vec::new(), |ps| ps.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>()),
            });
            if let Some(e) = &g.handle_error {
                v["error"] = Value::from(e.clone());
            }
            if let Some(f) = &g.fabric {
                v["fabric_state"] = match f {
                    Field::Value(fi) => Value::from(match fi.state {
                        nvml::FABRIC_NOT_SUPPORTED => "not supported",
                        nvml::FABRIC_NOT_STARTED => "not started",
                        nvml::FABRIC_IN_PROGRESS => "in progress",
                        nvml::FABRIC_COMPLETED if fi.error.is_none() => "completed",
                        nvml::FABRIC_COMPLETED => "failed",
                        _ => "unknown",
                    }),
                    Field::Unknown(_) => Value::from("unknown"),
                    Field::Error(e) => Value::from(format!("error: {e}")),
                };
            }
            v
        })
        .collect();
    let xid_errors: Vec<Value> = groups
        .iter()
        .map(|x| json!({"xid": x.xid, "pci": x.pci, "message": x.message, "count": x.count, "fatal": x.fatal, "gpu": x.gpu}))
        .collect();
    r = r
        .found("gpus", healthy)
        .found("nvml_gpus", n.map_or(Value::Null, Value::from))
        .found("xid_errors", xid_errors)
        .found("devices", devices);
    if let Some(f) = &fabric_state {
        r = r.found("fabric", f.clone());
    }
    if let Ok(scan) = &snap.kmsg {
        r = r.found("kmsg_records", scan.records);
    }

    // The verdict.
    if problems.is_empty() {
        let mut names: Vec<&str> =
            gpus.iter().filter_map(|g| g.name.value().map(String::as_str)).collect();
        names.dedup();
        let mut s = match want.gpus {
            Some(e) => format!("{healthy} of {e} GPUs healthy"),
            None => format!("{healthy} GPUs healthy"),
        };
        if !names.is_empty() {
            s.push_str(&format!(" ({})", names.join(", ")));
        }
        if let Some((v, _)) = &driver_version {
            s.push_str(&format!(", driver {v}"));
        }
        if let Some(f) = &fabric_state {
            s.push_str(&format!(", {f}"));
        }
        if want.gpus.is_none() {
            s.push_str("; instance type unknown: counts checked for consistency only");
        }
        if !warnings.is_empty() {
            r.status = Status::Warn;
            s.push_str(&format!("; {}", some(&warnings)));
            let xid_warn = groups.iter().any(|x| !x.fatal);
            r = r.remedy(if xid_warn {
                "non-fatal XID errors usually point at the application (e.g. XID 13, 31, 43); watch for repeats on the same GPU and drain the node if they continue"
            } else {
                Remedy::Other.text()
            });
        }
        r.summary = s;
        return r;
    }
    r.status = if required { Status::Fail } else { Status::Warn };
    let texts: Vec<String> = problems.iter().map(|(t, _)| t.clone()).collect();
    r.summary = some(&texts);
    if !required {
        r.summary.push_str(if want.gpus.is_some() {
            "; not required: no GPUs expected"
        } else {
            "; not required: instance type unknown"
        });
    }
    let mut remedies: Vec<Remedy> = problems.iter().map(|(_, rem)| *rem).collect();
    remedies.sort();
    remedies.dedup();
    let text: Vec<&str> = remedies.iter().map(|r| r.text()).collect();
    r.remedy(text.join(". Also: "))
}

pub struct Nvidia;

impl Nvidia {
    fn expect(ctx: &Context) -> Expect {
        Expect {
            instance_type: ctx.expected.instance_type.clone(),
            gpus: ctx.expected.gpus,
            gpu_model: ctx.expected.gpu_model.clone(),
            nvswitch: ctx.expected.nvswitch,
            fatal_xids: ctx.config.nvidia.fatal_xids.clone(),
        }
    }

    /// Each NVML call gets `nvidia.nvml_timeout_ms`; all of them together get three quarters of
    /// the check's own deadline, so the check reports NVML's timeout itself.
    pub fn deadlines(ctx: &Context) -> nvml::Deadlines {
        let per_call = Duration::from_millis(ctx.config.nvidia.nvml_timeout_ms);
        let check = Duration::from_secs(ctx.config.checks.timeout_seconds);
        nvml::Deadlines { per_call, total: (check * 3 / 4).max(per_call) }
    }
}

impl Check for Nvidia {
    fn name(&self) -> &'static str {
        "nvidia"
    }

    fn required(&self, ctx: &Context) -> bool {
        ctx.expected.gpus.is_some_and(|n| n > 0)
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        let want = Self::expect(ctx);
        let opts = Options {
            expected_gpus: want.gpus,
            nvswitch: want.nvswitch == Some(true),
            deadlines: Self::deadlines(ctx),
            lib_env: std::env::var_os(nvml::LIB_ENV),
        };
        let snap = observe(&ctx.host, &opts);
        evaluate(&snap, &want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvml::{NvmlReport, RemappedRows};

    #[test]
    fn pci_addresses_in_every_spelling() {
        let sysfs = PciAddr::parse("0000:53:00.0").unwrap();
        let nvml = PciAddr::parse("00000000:53:00.0").unwrap();
        let xid = PciAddr::parse("PCI:0000:53:00").unwrap();
        assert_eq!(sysfs, nvml);
        assert!(sysfs.same_slot(&xid) && sysfs != xid);
        assert_eq!(PciAddr::parse("00000001:A8:00.0").unwrap().to_string(), "0001:a8:00.0");
        assert_eq!(xid.to_string(), "0000:53:00");
        assert_eq!(PciAddr::parse("53:00.0").unwrap(), sysfs);
        for bad in
            ["", "gpu0", "0000:53", "0000:zz:00.0", "0000:53:00.9", "0000:100:00.0", "0000:53:20.0"]
        {
            assert_eq!(PciAddr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn driver_version_from_proc() {
        let t = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.127.05  Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Oct  8 02:32:30 UTC 2024\nGCC version:  gcc version 11.4.1 20230605\n";
        assert_eq!(parse_proc_version(t).as_deref(), Some("550.127.05"));
        assert_eq!(
            parse_proc_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n").as_deref(),
            Some("535.183.01")
        );
        assert_eq!(parse_proc_version("garbage"), None);
    }

    #[test]
    fn model_is_matched_as_whole_words() {
        assert!(model_matches("NVIDIA H100 80GB HBM3", "H100"));
        assert!(model_matches("NVIDIA A100-SXM4-40GB", "A100"));
        assert!(model_matches("Tesla T4", "t4"));
        assert!(model_matches("NVIDIA H100 80GB HBM3", "H100 80GB"));
        assert!(!model_matches("NVIDIA L40S", "L4"));
        assert!(!model_matches("NVIDIA A10G", "A100"));
        assert!(!model_matches("NVIDIA H200", "H100"));
    }

    fn gpu(index: u32, bus: &str) -> GpuInfo {
        GpuInfo {
            index,
            handle_error: None,
            name: Field::Value("NVIDIA H100 80GB HBM3".into()),
            uuid: Field::Value(format!("GPU-{index}")),
            pci: Field::Value(format!("00000000:{bus}:00.0")),
            memory_total: Field::Value(85520809984),
            ecc_uncorrected_volatile: Field::Value(0),
            retired_pages_pending: Field::Unknown(
                "nvmlDeviceGetRetiredPagesPendingStatus: not supported".into(),
            ),
            remapped_rows: Field::Value(RemappedRows {
                corrected: 0,
                uncorrected: 0,
                pending: false,
                failure: false,
            }),
            fabric: Some(Field::Value(FabricInfo { state: nvml::FABRIC_COMPLETED, error: None })),
        }
    }

    const BUSES: [&str; 8] = ["53", "64", "75", "86", "97", "a8", "b9", "ca"];

    fn healthy() -> Snapshot {
        Snapshot {
            pci_gpus: BUSES
                .iter()
                .map(|b| PciGpu {
                    addr: PciAddr::parse(&format!("0000:{b}:00.0")).unwrap(),
                    bdf: format!("0000:{b}:00.0"),
                    device: "0x2330".into(),
                })
                .collect(),
            nvswitches: 4,
            dev_nodes: (0..8).collect(),
            proc_version: Some("550.127.05".into()),
            nvml: Some(Outcome::Answered(NvmlReport {
                library: "/usr/lib64/libnvidia-ml.so.1".into(),
                driver_version: Field::Value("550.127.05".into()),
                count: Field::Value(8),
                gpus: BUSES.iter().enumerate().map(|(i, b)| gpu(i as u32, b)).collect(),
            })),
            kmsg: Ok(KmsgScan::default()),
            fabric_unit: Some(FabricUnit::NotRunning),
            errors: vec![],
        }
    }

    fn p5() -> Expect {
        Expect {
            instance_type: Some("p5.48xlarge".into()),
            gpus: Some(8),
            gpu_model: Some("H100".into()),
            nvswitch: Some(true),
            fatal_xids: vec![48, 79],
        }
    }

    fn gpus_mut(s: &mut Snapshot) -> &mut Vec<GpuInfo> {
        match s.nvml.as_mut() {
            Some(Outcome::Answered(r)) => &mut r.gpus,
            _ => panic!("not answered"),
        }
    }

    #[test]
    fn a_healthy_p5_passes() {
        let r = evaluate(&healthy(), &p5());
        assert_eq!(r.status, Status::Pass, "{}", r.summary);
        assert!(r.required);
        assert_eq!(
            r.summary,
            "8 of 8 GPUs healthy (NVIDIA H100 80GB HBM3), driver 550.127.05, fabric complete"
        );
        assert_eq!(r.found["gpus"], 8);
        assert_eq!(r.found["devices"][2]["pci"], "0000:75:00.0");
        assert_eq!(r.found["devices"][2]["retired_pages_pending"], "unknown");
        assert_eq!(r.found["devices"][2]["fabric_state"], "completed");
    }

    #[test]
    fn unhealthy_memory_and_fabric_name_the_gpu() {
        let mut s = healthy();
        gpus_mut(&mut s)[1].ecc_uncorrected_volatile = Field::Value(3);
        gpus_mut(&mut s)[2].remapped_rows = Field::Value(RemappedRows {
            corrected: 0,
            uncorrected: 1,
            pending: true,
            failure: false,
        });
        gpus_mut(&mut s)[3].fabric =
            Some(Field::Value(FabricInfo { state: nvml::FABRIC_IN_PROGRESS, error: None }));
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.found["gpus"], 5);
        assert!(
            r.summary.contains("GPU 1 (0000:64:00.0): 3 uncorrected ECC errors"),
            "{}",
            r.summary
        );
        assert!(r.summary.contains("GPU 2 (0000:75:00.0): row remapping pending"), "{}", r.summary);
        assert!(
            r.summary.contains("GPU 3 (0000:86:00.0): fabric registration still in progress"),
            "{}",
            r.summary
        );
        assert!(r.remedy.as_deref().unwrap().contains("nvidia-fabricmanager"));
    }

    #[test]
    fn missing_fabric_info_falls_back_to_the_service() {
        let mut s = healthy();
        for g in gpus_mut(&mut s) {
            g.fabric = Some(Field::Unknown(
                "nvmlDeviceGetGpuFabricInfo: function symbol failed to load".into(),
            ));
        }
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.summary, "nvidia-fabricmanager is not running (NVSwitch fabric down)");
        s.fabric_unit = Some(FabricUnit::Running { pid: 4242, how: "pid file" });
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Pass, "{}", r.summary);
        assert_eq!(
            r.found["fabric"],
            "fabric manager running (pid 4242, from its pid file); NVML gives no fabric state"
        );
        assert_eq!(r.found["devices"][0]["fabric_state"], "unknown");
    }

    #[test]
    fn unknown_fields_are_not_passes() {
        let mut s = healthy();
        let g = &mut gpus_mut(&mut s)[0];
        g.ecc_uncorrected_volatile = Field::Unknown("x".into());
        g.remapped_rows = Field::Unknown("y".into());
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Warn);
        assert!(r.summary.contains("GPU 0 (0000:53:00.0): memory health unknown"), "{}", r.summary);
        assert_eq!(r.found["devices"][0]["ecc_uncorrected_volatile"], "unknown");
        assert_eq!(r.found["devices"][0]["remapped_rows"], "unknown");
    }

    #[test]
    fn wrong_model_fails() {
        let mut want = p5();
        want.gpu_model = Some("H200".into());
        let r = evaluate(&healthy(), &want);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.found["gpus"], 0);
        assert!(
            r.summary
                .starts_with("GPU 0 (0000:53:00.0): is a NVIDIA H100 80GB HBM3, expected H200"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn xids_map_to_gpus_and_repeat_counts() {
        let mut s = healthy();
        let mut scan = KmsgScan::default();
        kmsg::scan_text(
            "3,1,1,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1, GPU has fallen off the bus.\n\
             3,2,2,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1, GPU has fallen off the bus.\n\
             3,3,3,-;NVRM: Xid (PCI:0000:64:00): 13, pid=2, Graphics Exception\n",
            &mut scan,
        );
        s.kmsg = Ok(scan);
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.found["gpus"], 7);
        assert_eq!(
            r.summary,
            "GPU 0 (0000:53:00.0): XID 79 (2 times): pid=1, GPU has fallen off the bus."
        );
        let x = &r.found["xid_errors"];
        assert_eq!(
            x[0],
            json!({"xid": 79, "pci": "0000:53:00.0", "message": "pid=1, GPU has fallen off the bus.", "count": 2, "fatal": true, "gpu": 0})
        );
        assert_eq!(x[1]["xid"], 13);
        assert_eq!(x[1]["fatal"], false);
    }

    #[test]
    fn no_gpus_expected_or_present_is_a_skip() {
        let s = Snapshot {
            pci_gpus: vec![],
            nvswitches: 0,
            dev_nodes: vec![],
            proc_version: None,
            nvml: None,
            kmsg: Ok(KmsgScan::default()),
            fabric_unit: None,
            errors: vec![],
        };
        let want = Expect {
            instance_type: Some("m7i.large".into()),
            gpus: Some(0),
            gpu_model: None,
            nvswitch: Some(false),
            fatal_xids: vec![],
        };
        let r = evaluate(&s, &want);
        assert_eq!((r.status, r.required), (Status::Skip, false));
        assert_eq!(r.summary, "m7i.large has no NVIDIA GPUs and none are present");
        assert_eq!(r.found["gpus"], 0);
        assert_eq!(r.found["xid_errors"], json!([]));
    }

    #[test]
    fn unknown_type_checks_consistency_only() {
        let mut s = healthy();
        let want = Expect {
            instance_type: None,
            gpus: None,
            gpu_model: None,
            nvswitch: None,
            fatal_xids: vec![79],
        };
        let r = evaluate(&s, &want);
        assert_eq!((r.status, r.required), (Status::Pass, false), "{}", r.summary);
        assert!(
            r.summary.ends_with("instance type unknown: counts checked for consistency only"),
            "{}",
            r.summary
        );
        s.dev_nodes.pop();
        let r = evaluate(&s, &want);
        assert_eq!(r.status, Status::Warn);
        assert!(
            r.summary.starts_with("GPU counts disagree: 8 on PCI, 7 /dev/nvidia<N>, 8 in NVML"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn nvml_outcomes_fail_with_their_remedy() {
        let mut s = healthy();
        s.nvml = Some(Outcome::TimedOut {
            library: "x".into(),
            call: "nvmlDeviceGetTotalEccErrors (GPU 3)".into(),
            after_ms: 2000,
        });
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.summary.starts_with(
                "NVML did not answer within 2000 ms (nvmlDeviceGetTotalEccErrors (GPU 3))"
            ),
            "{}",
            r.summary
        );
        assert_eq!(r.found["gpus"], 0);
        assert_eq!(r.found["driver_version"], "550.127.05");
        assert_eq!(r.found["driver_version_source"], PROC_VERSION);
        s.nvml = Some(Outcome::InitFailed {
            library: "x".into(),
            error: NvmlErrorKind::DriverNotLoaded,
            message: "nvmlInit_v2: NVIDIA driver is not loaded".into(),
        });
        let r = evaluate(&s, &p5());
        assert!(r.remedy.as_deref().unwrap().contains("modprobe nvidia"), "{r:?}");
    }

    #[test]
    fn fabric_manager_service_states() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        let w = |p: &str, c: &str| {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        assert_eq!(fabric_unit(&host), FabricUnit::NotRunning);
        w("run/nvidia-fabricmanager/nv-fabricmanager.pid", "777\n");
        assert_eq!(
            fabric_unit(&host),
            FabricUnit::NotRunning,
            "a stale pid file is not a running service"
        );
        w("proc/777/comm", "nv-fabricmanage\n");
        assert_eq!(fabric_unit(&host), FabricUnit::Running { pid: 777, how: "pid file" });
        std::fs::remove_file(dir.path().join("run/nvidia-fabricmanager/nv-fabricmanager.pid"))
            .unwrap();
        assert_eq!(fabric_unit(&host), FabricUnit::Running { pid: 777, how: "process" });
        w("sys/fs/cgroup/system.slice/nvidia-fabricmanager.service/cgroup.procs", "");
        assert_eq!(
            fabric_unit(&host),
            FabricUnit::NotRunning,
            "an empty cgroup: the service is stopped, /proc is not walked"
        );
        w("sys/fs/cgroup/system.slice/nvidia-fabricmanager.service/cgroup.procs", "4242\n");
        assert_eq!(fabric_unit(&host), FabricUnit::Running { pid: 4242, how: "cgroup" });
        // An unreadable cgroup.procs (a directory here: root reads any file) tells nothing.
        let procs =
            dir.path().join("sys/fs/cgroup/system.slice/nvidia-fabricmanager.service/cgroup.procs");
        std::fs::remove_file(&procs).unwrap();
        std::fs::create_dir(&procs).unwrap();
        assert_eq!(fabric_unit(&host), FabricUnit::Running { pid: 777, how: "process" });
    }
}
