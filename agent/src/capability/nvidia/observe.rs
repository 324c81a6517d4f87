//! What the `nvidia` check reads, once: GPUs and NVSwitches on PCI, `/dev/nvidia<N>`, the driver
//! version, NVML (on its own thread, started first), the kernel log's XIDs and, on NVSwitch types,
//! the fabric manager service.

use std::ffi::OsString;

use super::nvml::{self, Outcome};
use super::xid::{self, KmsgScan};
use super::{FM_PID_FILE, FM_UNIT, NVIDIA_VENDOR, PROC_VERSION};
use crate::host::pci::{self, PciAddr, PCI_DEVICES};
use crate::host::{proc, Host, HostError};

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
    pub kmsg: Result<KmsgScan, HostError>,
    /// Looked at on NVSwitch types only.
    pub fabric_unit: Option<FabricUnit>,
    /// Things that exist but could not be read.
    pub errors: Vec<HostError>,
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

/// NVIDIA GPUs and NVSwitches on the PCI bus (GPUs: class 0x0300xx/0x0302xx; NVSwitch bridges:
/// 0x0680xx).
pub fn pci_scan(host: &Host, errors: &mut Vec<HostError>) -> (Vec<PciGpu>, usize) {
    let scan = pci::functions(host, NVIDIA_VENDOR);
    errors.extend(scan.errors);
    let (mut gpus, mut switches) = (Vec::new(), 0);
    for f in scan.functions {
        match (f.class >> 8, f.addr) {
            (0x0300 | 0x0302, Some(addr)) => {
                gpus.push(PciGpu { addr, bdf: f.bdf, device: f.device })
            }
            (0x0300 | 0x0302, None) => {
                errors.push(host.malformed(format!("{PCI_DEVICES}/{}", f.bdf), "not a PCI address"))
            }
            (0x0680, _) => switches += 1,
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
    // (An unreadable one tells nothing: /proc is walked as if there were none, as proc::find does.)
    if let Some(text) = proc::unit_cgroup(host, FM_UNIT).and_then(|p| host.read_attr(p).ok()) {
        let listed = text.lines().find_map(|l| l.trim().parse::<u32>().ok());
        return listed
            .map_or(FabricUnit::NotRunning, |pid| FabricUnit::Running { pid, how: "cgroup" });
    }
    match proc::walk(host, is_fm) {
        Some(pid) => FabricUnit::Running { pid, how: proc::Found::Walk.as_str() },
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
            errors.push(e);
            None
        }
    };
    let ask = early || !pci_gpus.is_empty() || !dev_nodes.is_empty();
    let pending = pending.or_else(|| ask.then(start_nvml));
    // The kernel log only matters where there are GPUs.
    let kmsg = if ask { xid::scan(host) } else { Ok(KmsgScan::default()) };
    let fabric_unit = opts.nvswitch.then(|| fabric_unit(host));
    let nvml = pending.map(nvml::Pending::wait);
    Snapshot { pci_gpus, nvswitches, dev_nodes, proc_version, nvml, kmsg, fabric_unit, errors }
}

#[cfg(test)]
mod tests {
    use super::*;

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
