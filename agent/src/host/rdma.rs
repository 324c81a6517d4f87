//! RDMA devices under `sys/class/infiniband`, and which of them are EFA.
//!
//! Reads sysfs under `--root` (through paths, so real sysfs symlinks and flat fixture trees both
//! work):
//! - `sys/class/infiniband/<ibdev>/device/{vendor,device}`: EFA is vendor `0x1d0f`, device
//!   `0xefa0`–`0xefa4`; other RDMA devices (e.g. Mellanox) are not EFA;
//! - `sys/class/infiniband/<ibdev>/ports/1/{state,phys_state}`;
//! - `sys/class/infiniband_verbs/uverbs<N>/ibdev` naming the device, and `dev/infiniband/uverbs<N>`:
//!   without them libfabric cannot open the device;
//! - `sys/module/efa/version`: the driver version, when the module exports it.

use std::collections::BTreeMap;

use super::pci::{self, PciAddr};
use super::{Host, HostError, HostResult};

pub const CLASS: &str = "/sys/class/infiniband";
pub const VERBS: &str = "/sys/class/infiniband_verbs";
pub const EFA_VENDOR: &str = "0x1d0f";
pub const EFA_DEVICES: &[&str] = &["0xefa0", "0xefa1", "0xefa2", "0xefa3", "0xefa4"];

/// One EFA device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub device_id: String,
    /// `ports/1/state` and `phys_state`, e.g. `4: ACTIVE`, `5: LinkUp` (`unreadable` when a read
    /// failed: see `port_readable`).
    pub state: String,
    pub phys_state: String,
    /// False when `state` or `phys_state` could not be read (the error is in [`Scan::errors`]).
    pub port_readable: bool,
    /// The uverbs index whose `ibdev` names this device.
    pub uverbs: Option<u32>,
    /// Whether `/dev/infiniband/uverbs<N>` exists.
    pub dev_node: bool,
    /// The PCI function behind it (`device/uevent` `PCI_SLOT_NAME`, else where `device` points).
    pub pci: Option<String>,
}

impl Device {
    pub fn port_up(&self) -> bool {
        self.port_readable && self.state.starts_with("4:") && self.phys_state.starts_with("5:")
    }

    pub fn has_verbs(&self) -> bool {
        self.uverbs.is_some() && self.dev_node
    }

    pub fn usable(&self) -> bool {
        self.port_up() && self.has_verbs()
    }

    /// What is wrong with the port in one word: the state when it is not ACTIVE, else the physical
    /// state (`DOWN`, `INIT`, `Polling`, `Disabled`, ...).
    pub fn port_word(&self) -> &str {
        if self.state.starts_with("4:") {
            state_word(&self.phys_state)
        } else {
            state_word(&self.state)
        }
    }
}

/// The EFA devices the host shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// False when `sys/class/infiniband` does not exist (no RDMA driver loaded at all).
    pub class_present: bool,
    pub devices: Vec<Device>,
    pub driver_version: Option<String>,
    /// RDMA devices that are not EFA (p6-b200's mlx5 `ibp*` NVSwitch management ports, soft RoCE):
    /// name and driver (or `unknown`). Never counted as EFA.
    pub other: Vec<(String, String)>,
    /// Reads that failed (path and cause): a check never passes on what it could not read.
    pub errors: Vec<HostError>,
}

/// One EFA PCI function: what EC2 attached, bound to a driver or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub bdf: String,
    pub addr: Option<PciAddr>,
    pub device_id: String,
    /// The driver bound to it (`efa`; `vfio-pci` when passed through), `None` when unbound.
    pub driver: Option<String>,
}

/// The EFA PCI functions (vendor `0x1d0f`, device `0xefa0`–`0xefa4`), driver bound or not, and the
/// reads that failed.
pub fn attached(host: &Host) -> (Vec<Attached>, Vec<HostError>) {
    let scan = pci::functions(host, EFA_VENDOR);
    // A function that vanished while it was listed (any vendor) is not an EFA read failure.
    let mut errors: Vec<HostError> =
        scan.errors.into_iter().filter(|e| !e.is_not_found()).collect();
    let mut out = Vec::new();
    // A name that is not a PCI address (DDDD:BB:DD.F) is not a function the kernel made.
    let functions = scan.functions.into_iter().filter(|f| f.addr.is_some());
    for f in functions.filter(|f| EFA_DEVICES.contains(&f.device.as_str())) {
        let driver = match host.link_name(format!("{}/{}/driver", pci::PCI_DEVICES, f.bdf)) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        out.push(Attached { bdf: f.bdf, addr: f.addr, device_id: f.device, driver });
    }
    (out, errors)
}

/// The PCI function behind RDMA device `name`.
fn pci_of(host: &Host, name: &str) -> Option<String> {
    let uevent = host.read_attr_opt(format!("{CLASS}/{name}/device/uevent")).ok().flatten();
    uevent
        .as_deref()
        .and_then(|u| u.lines().find_map(|l| l.strip_prefix("PCI_SLOT_NAME=")))
        .map(str::to_string)
        .or_else(|| host.canonical_name(format!("{CLASS}/{name}/device")))
        .filter(|n| PciAddr::parse(n).is_some())
}

/// The PCI device id of an RDMA device when it is EFA.
fn is_efa(host: &Host, name: &str) -> HostResult<Option<String>> {
    // An RDMA device without a PCI `device/vendor` (soft RoCE, siw) is not EFA.
    let vendor = host.read_attr_opt(format!("{CLASS}/{name}/device/vendor"))?;
    if vendor.as_deref() != Some(EFA_VENDOR) {
        return Ok(None);
    }
    let device = host.read_attr(format!("{CLASS}/{name}/device/device"))?;
    Ok(EFA_DEVICES.contains(&device.as_str()).then_some(device))
}

/// Reads the EFA devices under the root: PCI ids, port state, uverbs device and node.
pub fn efa_devices(host: &Host) -> Scan {
    let mut snap = Scan { class_present: host.exists(CLASS), ..Default::default() };
    let names = match host.list_dir_opt(CLASS) {
        Ok(n) => n,
        Err(e) => {
            snap.errors.push(e);
            return snap;
        }
    };
    // uverbs<N>/ibdev → N, for every uverbs device (the directory also holds `abi_version`).
    let mut uverbs: BTreeMap<String, u32> = BTreeMap::new();
    for uv in host.list_dir_opt(VERBS).unwrap_or_else(|e| {
        snap.errors.push(e);
        Vec::new()
    }) {
        let Some(n) = uv.strip_prefix("uverbs").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        match host.read_attr(format!("{VERBS}/{uv}/ibdev")) {
            Ok(ib) => {
                uverbs.insert(ib, n);
            }
            Err(e) => snap.errors.push(e),
        }
    }
    // One listing of /dev/infiniband instead of a stat per device.
    let dev_nodes: Vec<String> = host.list_dir_opt("/dev/infiniband").unwrap_or_default();
    for name in names {
        let device_id = match is_efa(host, &name) {
            Ok(Some(d)) => d,
            Ok(None) => {
                let driver = host
                    .link_name(format!("{CLASS}/{name}/device/driver"))
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "unknown".into());
                snap.other.push((name, driver));
                continue;
            }
            Err(e) => {
                snap.errors.push(e);
                continue;
            }
        };
        let mut port_readable = true;
        let mut attr = |a: &str| match host.read_attr(format!("{CLASS}/{name}/ports/1/{a}")) {
            Ok(v) => v,
            Err(e) => {
                snap.errors.push(e);
                port_readable = false;
                "unreadable".into()
            }
        };
        let (state, phys_state) = (attr("state"), attr("phys_state"));
        let n = uverbs.get(&name).copied();
        let dev_node = n.is_some_and(|n| dev_nodes.contains(&format!("uverbs{n}")));
        let pci = pci_of(host, &name);
        snap.devices.push(Device {
            name,
            device_id,
            state,
            phys_state,
            port_readable,
            uverbs: n,
            dev_node,
            pci,
        });
    }
    // The version is information, not a criterion: an unreadable one is logged and left out.
    snap.driver_version = host.read_attr_opt("/sys/module/efa/version").unwrap_or_else(|e| {
        tracing::warn!(error = %e, "efa driver version unreadable");
        None
    });
    snap
}

/// True when the node has at least one EFA device (`limits.apply = "auto"` asks).
/// Only the PCI IDs are read, and it stops at the first EFA device: `observe` would also read
/// every port and uverbs attribute.
/// An EFA PCI function attached but not (yet) bound counts too: it needs the same limits.
pub fn efa_present(host: &Host) -> bool {
    host.list_dir_opt(CLASS)
        .unwrap_or_default()
        .iter()
        .any(|name| matches!(is_efa(host, name), Ok(Some(_))))
        || !attached(host).0.is_empty()
}

/// Where a hardware counter lives: the device (`hw_counters/`) or port 1 (`ports/1/hw_counters/`).
pub const DEVICE_SCOPE: &str = "device";
pub const PORT_SCOPE: &str = "port1";

/// One hardware counter: scope ([`DEVICE_SCOPE`] or [`PORT_SCOPE`]), name, value.
pub type Counter = (&'static str, String, u64);

/// Every hardware counter of EFA device `device`: `(scope, name, value)`, device counters first,
/// names in order; a directory that does not exist has none. (The efa driver exports them since
/// 2.x; they only grow until it reloads.)
pub fn all_counters(host: &Host, device: &str) -> HostResult<Vec<Counter>> {
    let mut out = Vec::new();
    for (scope, dir) in [
        (DEVICE_SCOPE, format!("{CLASS}/{device}/hw_counters")),
        (PORT_SCOPE, format!("{CLASS}/{device}/ports/1/hw_counters")),
    ] {
        for name in host.list_dir_opt(&dir)? {
            // `lifespan` is the driver's refresh period in ms, not a count of anything.
            if name == "lifespan" {
                continue;
            }
            let file = format!("{dir}/{name}");
            let text = host.read_attr(&file)?;
            let value = text
                .parse()
                .map_err(|_| host.malformed(&file, format!("{text:?} is not a count")))?;
            out.push((scope, name, value));
        }
    }
    Ok(out)
}

/// `1: DOWN` → `DOWN`.
fn state_word(s: &str) -> &str {
    s.split_once(':').map_or(s, |(_, w)| w.trim())
}
