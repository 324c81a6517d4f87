//! What the `nvidia` check reads, once: GPUs and NVSwitches on PCI, `/dev/nvidia<N>` and their
//! `/dev/char` links, the driver version and kind, NVML (on its own thread, started first), the
//! kernel log's XIDs and SXids and, where the type needs them, the fabric manager, NVLSM and IMEX
//! services and the driver's GSP firmware setting.

use std::ffi::OsString;

use super::nvml::{self, Outcome};
use super::xid::{self, KmsgScan};
use super::{
    FM_PID_FILE, FM_UNIT, IMEX_UNIT, NVIDIA_VENDOR, NVLSM_PID_FILE, PROC_PARAMS, PROC_VERSION,
};
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

/// A service (fabric manager, NVLSM, IMEX) as the host shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FabricUnit {
    Running { pid: u32, how: &'static str },
    NotRunning,
}

/// How the kernel module runs the GPUs' firmware (GSP), from `/proc/driver/nvidia`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gsp {
    /// The open kernel module (`NVRM version: ... Open Kernel Module`): GSP firmware always on.
    pub open_kmod: Option<bool>,
    /// `EnableGpuFirmware:` in `/proc/driver/nvidia/params` (0: off); `None`: not listed.
    pub enable_gpu_firmware: Option<u32>,
}

/// One NVIDIA device node and its `/dev/char/MAJOR:MINOR` link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevChar {
    /// Its name under `/dev`, e.g. `nvidia0`, `nvidiactl`, `nvidia-uvm`.
    pub name: String,
    /// `(major, minor)`; `None`: not known (see `how`).
    pub number: Option<(u32, u32)>,
    /// Where the number comes from: the node itself (`stat`), or the driver's fixed numbering with
    /// the majors of `/proc/devices` (a fixture tree, whose nodes are plain files).
    pub how: &'static str,
    /// What `/dev/char/MAJOR:MINOR` is now.
    pub link: CharLink,
}

/// The state of one `/dev/char` link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CharLink {
    /// A link to the node.
    Ok,
    Missing,
    /// A link to something else, or not a link: left alone.
    Other(String),
    Unknown(String),
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
    /// NVLSM (Blackwell HGX types only).
    pub nvlsm: Option<FabricUnit>,
    /// The IMEX service (GB200 types only).
    pub imex: Option<FabricUnit>,
    /// The GSP firmware setting (types that need it off only).
    pub gsp: Option<Gsp>,
    /// NVIDIA device nodes and their `/dev/char` links.
    pub dev_char: Vec<DevChar>,
    /// Things that exist but could not be read.
    pub errors: Vec<HostError>,
}

/// How to observe.
#[derive(Debug, Clone)]
pub struct Options {
    pub expected_gpus: Option<u32>,
    /// Ask NVML for fabric state and look at the fabric manager service.
    pub nvswitch: bool,
    /// Look for NVLSM beside the fabric manager.
    pub nvlsm: bool,
    /// Look for the IMEX service (and ask NVML for fabric state).
    pub imex: bool,
    /// Read the GSP firmware setting.
    pub gsp_off: bool,
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
    nodes_in(&host.list_dir_opt("/dev").unwrap_or_default())
}

/// [`dev_nodes`] of a listing of `/dev`.
fn nodes_in(dev: &[String]) -> Vec<u32> {
    let mut v: Vec<u32> = dev
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

/// NVLSM: started by the fabric manager's start script inside `nvidia-fabricmanager.service`
/// (`/opt/nvidia/nvlsm/sbin/nvlsm ... --pid_file /var/run/nvlsm.pid`): its pid file naming a live
/// `nvlsm`, else an `nvlsm` among the unit's processes (or, with no such cgroup, anywhere).
pub fn nvlsm(host: &Host) -> FabricUnit {
    let is_it = |c: &str| c == "nvlsm";
    if let Some(pid) = live_pid_file(host, NVLSM_PID_FILE, is_it) {
        return FabricUnit::Running { pid, how: "pid file" };
    }
    match proc::find(host, FM_UNIT, is_it) {
        Some((pid, found)) => FabricUnit::Running { pid, how: found.as_str() },
        None => FabricUnit::NotRunning,
    }
}

/// The IMEX service (`nvidia-imex.service`, process `nvidia-imex`): a process in the unit's
/// cgroup, else (no such cgroup) an `nvidia-imex` process anywhere.
pub fn imex(host: &Host) -> FabricUnit {
    service(host, None, IMEX_UNIT, |c| c == "nvidia-imex")
}

/// The pid in a pid file when that process is alive and its `comm` is right.
fn live_pid_file(host: &Host, file: &str, is_it: impl Fn(&str) -> bool) -> Option<u32> {
    let pid = host.read_attr_opt(file).ok()??.parse::<u32>().ok()?;
    host.read_attr(format!("/proc/{pid}/comm")).is_ok_and(|c| is_it(&c)).then_some(pid)
}

/// `EnableGpuFirmware: N` in `/proc/driver/nvidia/params`.
pub fn parse_enable_gpu_firmware(params: &str) -> Option<u32> {
    params.lines().find_map(|l| l.strip_prefix("EnableGpuFirmware:")?.trim().parse().ok())
}

/// The GSP firmware setting: the kernel module's kind and its `EnableGpuFirmware` parameter.
pub fn gsp(host: &Host, errors: &mut Vec<HostError>) -> Gsp {
    let open_kmod = match host.read_string(PROC_VERSION) {
        Ok(t) => Some(t.contains("Open Kernel Module")),
        Err(_) => None,
    };
    let enable_gpu_firmware = match host.read_string(PROC_PARAMS) {
        Ok(t) => parse_enable_gpu_firmware(&t),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    Gsp { open_kmod, enable_gpu_firmware }
}

/// The NVIDIA driver's fixed major number (`NV_MAJOR_DEVICE_NUMBER`): `/dev/nvidia<N>` is
/// 195:N, `nvidiactl` 195:255, `nvidia-modeset` 195:254.
pub const NVIDIA_MAJOR: u32 = 195;

/// The majors of `/proc/devices`' character devices, by name.
pub fn parse_proc_devices(text: &str) -> Vec<(String, u32)> {
    let chars = text.split("Block devices:").next().unwrap_or("");
    chars
        .lines()
        .filter_map(|l| {
            let (n, name) = l.trim().split_once(' ')?;
            Some((name.trim().to_string(), n.parse().ok()?))
        })
        .collect()
}

/// The device number the NVIDIA driver gives a node of this name, with `/proc/devices`' majors
/// for the dynamically numbered ones (`nvidia-uvm`: minor 0, `nvidia-uvm-tools`: minor 1).
pub fn driver_number(name: &str, majors: &[(String, u32)]) -> Option<(u32, u32)> {
    let major_of = |n: &str| majors.iter().find(|(m, _)| m == n).map(|(_, v)| *v);
    match name {
        "nvidiactl" => Some((NVIDIA_MAJOR, 255)),
        "nvidia-modeset" => Some((NVIDIA_MAJOR, 254)),
        "nvidia-uvm" => major_of("nvidia-uvm").map(|m| (m, 0)),
        "nvidia-uvm-tools" => major_of("nvidia-uvm").map(|m| (m, 1)),
        n => {
            // The driver names them nvidia0, nvidia1, ...: digits only, no leading zero.
            let digits = n.strip_prefix("nvidia")?;
            let canonical = digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'));
            let i: u32 = digits.parse().ok().filter(|_| canonical)?;
            (i < 254).then_some((NVIDIA_MAJOR, i))
        }
    }
}

/// The NVIDIA device nodes containers get (`nvidia<N>`, `nvidiactl`, `nvidia-modeset`,
/// `nvidia-uvm`, `nvidia-uvm-tools`) and the state of each one's `/dev/char` link.
pub fn dev_char(host: &Host) -> Vec<DevChar> {
    dev_char_in(host, &host.list_dir_opt("/dev").unwrap_or_default())
}

/// [`dev_char`] of a listing of `/dev`.
fn dev_char_in(host: &Host, dev: &[String]) -> Vec<DevChar> {
    let names: Vec<&String> =
        dev.iter().filter(|n| driver_number(n, &[("nvidia-uvm".into(), 0)]).is_some()).collect();
    if names.is_empty() {
        return Vec::new();
    }
    let majors =
        host.read_string("/proc/devices").map(|t| parse_proc_devices(&t)).unwrap_or_default();
    let mut out: Vec<DevChar> = names
        .into_iter()
        .map(|name| {
            let (number, how) = match host.char_device(format!("/dev/{name}")) {
                Ok(Some(n)) => (Some(n), "stat"),
                _ => (driver_number(name, &majors), "/proc/devices"),
            };
            let link = match number {
                None => CharLink::Unknown(format!("no device number for /dev/{name}")),
                Some((ma, mi)) => char_link(host, &format!("/dev/char/{ma}:{mi}"), name),
            };
            DevChar { name: name.clone(), number, how, link }
        })
        .collect();
    // By device number (nvidia0, 1, ..., nvidiactl, nvidia-uvm), unknown ones last.
    out.sort_by(|a, b| {
        (a.number.is_none(), a.number, &a.name).cmp(&(b.number.is_none(), b.number, &b.name))
    });
    out
}

/// Whether `link` is a symbolic link to `/dev/<name>` (`../<name>` as udev and nvidia-ctk make
/// them, or `/dev/<name>`).
fn char_link(host: &Host, link: &str, name: &str) -> CharLink {
    match host.link_target(link) {
        Ok(None) => CharLink::Missing,
        Ok(Some(t)) => {
            let t = t.to_string_lossy().into_owned();
            if t == format!("../{name}") || t == format!("/dev/{name}") {
                CharLink::Ok
            } else {
                CharLink::Other(format!("{link} points to {t}"))
            }
        }
        Err(e) => CharLink::Unknown(e.to_string()),
    }
}

/// Whether the `nvidia-fabricmanager` service runs (see the module docs).
pub fn fabric_unit(host: &Host) -> FabricUnit {
    // comm is cut to 15 characters: "nv-fabricmanager" reads "nv-fabricmanage".
    let is_fm = |c: &str| c.starts_with("nv-fabricmanage");
    service(host, Some(FM_PID_FILE), FM_UNIT, is_fm)
}

/// Whether a service runs: its pid file (if it writes one) naming a live process whose `comm` is
/// right, else any process in the unit's cgroup (whatever it is called), else, without that
/// cgroup, such a process in `/proc`.
fn service(
    host: &Host,
    pid_file: Option<&str>,
    unit: &str,
    is_it: impl Fn(&str) -> bool,
) -> FabricUnit {
    if let Some(pid) = pid_file.and_then(|f| live_pid_file(host, f, &is_it)) {
        return FabricUnit::Running { pid, how: "pid file" };
    }
    // (An unreadable cgroup.procs tells nothing: /proc is walked as if there were none, as
    // proc::find does.)
    if let Some(text) = proc::unit_cgroup(host, unit).and_then(|p| host.read_attr(p).ok()) {
        let listed = text.lines().find_map(|l| l.trim().parse::<u32>().ok());
        return listed
            .map_or(FabricUnit::NotRunning, |pid| FabricUnit::Running { pid, how: "cgroup" });
    }
    match proc::walk(host, is_it) {
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
    let fabric = opts.nvswitch || opts.imex;
    let start_nvml =
        || nvml::start(nvml::choose_lib(host, opts.lib_env.clone()), fabric, opts.deadlines);
    let pending = early.then(start_nvml);
    let (pci_gpus, nvswitches) = pci_scan(host, &mut errors);
    // /dev listed once for the nodes and their /dev/char links.
    let dev = host.list_dir_opt("/dev").unwrap_or_default();
    let dev_nodes = nodes_in(&dev);
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
    let nvlsm = opts.nvlsm.then(|| nvlsm(host));
    let imex = opts.imex.then(|| imex(host));
    let gsp = (opts.gsp_off && ask).then(|| gsp(host, &mut errors));
    let dev_char = dev_char_in(host, &dev);
    let nvml = pending.map(nvml::Pending::wait);
    Snapshot {
        pci_gpus,
        nvswitches,
        dev_nodes,
        proc_version,
        nvml,
        kmsg,
        fabric_unit,
        nvlsm,
        imex,
        gsp,
        dev_char,
        errors,
    }
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
    fn device_numbers_follow_the_driver_and_proc_devices() {
        let devices = "Character devices:\n  1 mem\n195 nvidia-frontend\n234 nvidia-uvm\n237 nvidia-caps\n\nBlock devices:\n  9 md\n259 blkext\n";
        let majors = parse_proc_devices(devices);
        assert!(majors.contains(&("nvidia-uvm".into(), 234)));
        assert!(!majors.iter().any(|(n, _)| n == "md"), "block devices are not character devices");
        assert_eq!(driver_number("nvidia3", &majors), Some((195, 3)));
        assert_eq!(driver_number("nvidiactl", &majors), Some((195, 255)));
        assert_eq!(driver_number("nvidia-uvm", &majors), Some((234, 0)));
        assert_eq!(driver_number("nvidia-uvm-tools", &majors), Some((234, 1)));
        assert_eq!(driver_number("nvidia-uvm", &[]), None, "a dynamic major must be listed");
        assert_eq!(driver_number("nvidia-caps", &majors), None);
        assert_eq!(driver_number("nvidiax", &majors), None);
        assert_eq!(driver_number("nvidia083", &majors), None, "not a name the driver gives");
        assert_eq!(driver_number("nvidia+1", &majors), None);
        assert_eq!(driver_number("nvme0n1", &majors), None);
        assert_eq!(
            parse_enable_gpu_firmware("ResmanDebugLevel: 4294967295\nEnableGpuFirmware: 0\n"),
            Some(0)
        );
        assert_eq!(parse_enable_gpu_firmware("EnableGpuFirmware: 18\n"), Some(18));
        assert_eq!(parse_enable_gpu_firmware("Other: 1\n"), None);
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
