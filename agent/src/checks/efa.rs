//! `efa`: every EFA interface the instance type has, up and usable.
//!
//! Reads sysfs under `--root` (through paths, so real sysfs symlinks and flat fixture trees both work):
//! - `sys/class/infiniband/<ibdev>/device/{vendor,device}`: EFA is vendor `0x1d0f`, device
//!   `0xefa0`–`0xefa4`; other RDMA devices (e.g. Mellanox) are ignored;
//! - `sys/class/infiniband/<ibdev>/ports/1/{state,phys_state}`: must be `4: ACTIVE` and `5: LinkUp`;
//! - `sys/class/infiniband_verbs/uverbs<N>/ibdev` naming the device, and `dev/infiniband/uverbs<N>`:
//!   without them libfabric cannot open the device;
//! - `sys/module/efa/version`: the driver version, when the module exports it.
//!
//! A device is usable when all of that holds. The count is compared with the catalog (or `[expect]
//! efa`); the check is required on types whose catalog lists EFA.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Check, Context};
use crate::host::Host;
use crate::identity::Identity;
use crate::report::{CheckResult, Status};

const CLASS: &str = "/sys/class/infiniband";
const VERBS: &str = "/sys/class/infiniband_verbs";
const EFA_VENDOR: &str = "0x1d0f";
const EFA_DEVICES: &[&str] = &["0xefa0", "0xefa1", "0xefa2", "0xefa3", "0xefa4"];

/// One EFA device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub device_id: String,
    /// `ports/1/state` and `phys_state`, e.g. `4: ACTIVE`, `5: LinkUp` (`unreadable` when a read
    /// failed: see `port_readable`).
    pub state: String,
    pub phys_state: String,
    /// False when `state` or `phys_state` could not be read (the error is in [`Snapshot::errors`]).
    pub port_readable: bool,
    /// The uverbs index whose `ibdev` names this device.
    pub uverbs: Option<u32>,
    /// Whether `/dev/infiniband/uverbs<N>` exists.
    pub dev_node: bool,
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
    fn port_word(&self) -> &str {
        if self.state.starts_with("4:") {
            state_word(&self.phys_state)
        } else {
            state_word(&self.state)
        }
    }
}

/// Everything the check needs from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// False when `sys/class/infiniband` does not exist (no RDMA driver loaded at all).
    pub class_present: bool,
    pub devices: Vec<Device>,
    pub driver_version: Option<String>,
    /// Reads that failed (path and cause): the check never passes on what it could not read.
    pub errors: Vec<String>,
}

fn is_efa(host: &Host, name: &str) -> Result<Option<String>, String> {
    // An RDMA device without a PCI `device/vendor` (soft RoCE, siw) is not EFA.
    let vendor =
        host.read_attr_opt(format!("{CLASS}/{name}/device/vendor")).map_err(|e| e.to_string())?;
    if vendor.as_deref() != Some(EFA_VENDOR) {
        return Ok(None);
    }
    let device =
        host.read_attr(format!("{CLASS}/{name}/device/device")).map_err(|e| e.to_string())?;
    Ok(EFA_DEVICES.contains(&device.as_str()).then_some(device))
}

/// Reads the EFA devices under the root.
pub fn observe(host: &Host) -> Snapshot {
    let mut snap = Snapshot { class_present: host.exists(CLASS), ..Default::default() };
    let names = match host.list_dir_opt(CLASS) {
        Ok(n) => n,
        Err(e) => {
            snap.errors.push(e.to_string());
            return snap;
        }
    };
    // uverbs<N>/ibdev → N, for every uverbs device (the directory also holds `abi_version`).
    let mut uverbs: BTreeMap<String, u32> = BTreeMap::new();
    for uv in host.list_dir_opt(VERBS).unwrap_or_else(|e| {
        snap.errors.push(e.to_string());
        Vec::new()
    }) {
        let Some(n) = uv.strip_prefix("uverbs").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        match host.read_attr(format!("{VERBS}/{uv}/ibdev")) {
            Ok(ib) => {
                uverbs.insert(ib, n);
            }
            Err(e) => snap.errors.push(e.to_string()),
        }
    }
    // One listing of /dev/infiniband instead of a stat per device.
    let dev_nodes: Vec<String> = host.list_dir_opt("/dev/infiniband").unwrap_or_default();
    for name in names {
        let device_id = match is_efa(host, &name) {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) => {
                snap.errors.push(e);
                continue;
            }
        };
        let mut port_readable = true;
        let mut attr = |a: &str| match host.read_attr(format!("{CLASS}/{name}/ports/1/{a}")) {
            Ok(v) => v,
            Err(e) => {
                snap.errors.push(e.to_string());
                port_readable = false;
                "unreadable".into()
            }
        };
        let (state, phys_state) = (attr("state"), attr("phys_state"));
        let n = uverbs.get(&name).copied();
        let dev_node = n.is_some_and(|n| dev_nodes.contains(&format!("uverbs{n}")));
        snap.devices.push(Device {
            name,
            device_id,
            state,
            phys_state,
            port_readable,
            uverbs: n,
            dev_node,
        });
    }
    // The version is information, not a criterion: an unreadable one is logged and left out.
    snap.driver_version = host.read_attr_opt("/sys/module/efa/version").unwrap_or_else(|e| {
        tracing::warn!(error = %e, "efa driver version unreadable");
        None
    });
    snap
}

/// True when the node has at least one EFA device (used by `limits.apply = "auto"`).
/// Only the PCI IDs are read, and it stops at the first EFA device: `observe` would also read
/// every port and uverbs attribute.
pub fn present(host: &Host) -> bool {
    host.list_dir_opt(CLASS)
        .unwrap_or_default()
        .iter()
        .any(|name| matches!(is_efa(host, name), Ok(Some(_))))
}

const REMEDY_MISSING: &str = "make the launch template / EC2NodeClass request every EFA interface (one per network card, interfaceType efa), make sure the EFA driver is installed (aws-efa-installer) and loaded (`modprobe efa`), then relaunch the instance";
const REMEDY_DOWN: &str = "the security group must allow all traffic to and from itself (a self-referencing rule, inbound and outbound); if it does, relaunch the instance";
const REMEDY_UVERBS: &str = "load the verbs module (`modprobe ib_uverbs`; `lsmod | grep efa` shows whether the efa module is loaded, else `modprobe efa`) and check that /dev/infiniband is present (a container needs it mounted)";
const REMEDY_UNREADABLE: &str = "run nodeprep as root (the paths above could not be read); if root cannot read them either, the efa driver is in a bad state: reload it or relaunch the instance";

/// Decides the result from a snapshot. `expected`: EFA devices the type must have (None: unknown).
pub fn evaluate(snap: &Snapshot, expected: Option<u32>, identity: &Identity) -> CheckResult {
    let required = expected.is_some_and(|n| n > 0);
    let total = snap.devices.len();
    let usable = snap.devices.iter().filter(|d| d.usable()).count();
    let down: Vec<&Device> =
        snap.devices.iter().filter(|d| d.port_readable && !d.port_up()).collect();
    let no_uverbs: Vec<&Device> = snap.devices.iter().filter(|d| !d.has_verbs()).collect();
    let mut r = CheckResult::new("efa", Status::Pass, "").required(required);
    r = r.expect("devices", expected.map_or(Value::Null, Value::from));
    let down_state: Map<String, Value> = down
        .iter()
        .map(|d| {
            (d.name.clone(), serde_json::json!({"state": d.state, "phys_state": d.phys_state}))
        })
        .collect();
    r = r
        .found("devices", usable)
        .found("total", total)
        .found("down", down.iter().map(|d| d.name.clone()).collect::<Vec<_>>())
        .found("down_state", down_state)
        .found("no_uverbs", no_uverbs.iter().map(|d| d.name.clone()).collect::<Vec<_>>())
        .found("driver", snap.driver_version.clone().map_or(Value::Null, Value::from));
    if let Some(pg) = &identity.placement_group {
        r = r.found("placement_group", pg.as_str());
    }
    if !snap.errors.is_empty() {
        r = r.found("errors", snap.errors.clone());
    }
    let driver =
        snap.driver_version.as_deref().map(|v| format!(", efa driver {v}")).unwrap_or_default();

    if total == 0 && snap.errors.is_empty() && !required {
        r.status = Status::Skip;
        r.summary = match expected {
            Some(0) => "no EFA on this instance type, none found".into(),
            _ => "no EFA devices found (instance type unknown: consistency only)".into(),
        };
        return r;
    }
    if !snap.class_present && required {
        r.status = Status::Fail;
        r.summary = format!(
            "no RDMA devices at all ({CLASS} is missing): the efa driver is not loaded; expected {} EFA devices",
            expected.unwrap_or(0)
        );
        return r.remedy(REMEDY_MISSING);
    }

    // Each problem found, and the remedy for its kind (in this order, each once).
    let mut problems = Vec::new();
    let mut remedies: Vec<(&str, &str)> = Vec::new();
    let missing = expected.map_or(0, |n| (n as usize).saturating_sub(total));
    if missing > 0 {
        problems.push(format!("{missing} not present (found {total})"));
        remedies.push(("missing devices", REMEDY_MISSING));
    }
    for d in &down {
        problems.push(format!(
            "{} port {} (state {}, phys {})",
            d.name,
            d.port_word(),
            d.state,
            d.phys_state
        ));
    }
    if !down.is_empty() {
        remedies.push(("ports down", REMEDY_DOWN));
    }
    for d in &no_uverbs {
        match d.uverbs {
            None => problems.push(format!("{} has no uverbs device", d.name)),
            Some(n) => problems.push(format!("{} has no /dev/infiniband/uverbs{n}", d.name)),
        }
    }
    if !no_uverbs.is_empty() {
        remedies.push(("no verbs device", REMEDY_UVERBS));
    }
    if !snap.errors.is_empty() {
        problems.push(format!("could not read: {}", snap.errors.join("; ")));
        remedies.push(("unreadable files", REMEDY_UNREADABLE));
    }

    let extra = expected.filter(|&n| total > n as usize);
    if problems.is_empty() {
        if let Some(n) = extra {
            r.status = Status::Warn;
            r.summary = if n == 0 {
                format!(
                    "{total} EFA device{} found, but this instance type has none{driver}",
                    plural(total)
                )
            } else {
                format!("{total} EFA devices, more than the {n} expected for this type, all usable{driver}")
            };
            return r.remedy(
                "check [expect] efa in the config or the catalog entry (`nodeprep catalog`)",
            );
        }
        r.summary = match expected {
            Some(n) => format!("{usable} of {n} EFA devices usable{driver}"),
            None => format!("{usable} of {total} EFA devices usable{driver} (instance type unknown: consistency only)"),
        };
        if identity.imds_answered && identity.placement_group.is_none() {
            r.status = Status::Warn;
            r.summary.push_str("; not in a cluster placement group");
            return r.remedy("launch EFA instances in a cluster placement group (EC2NodeClass placementGroupSelector) for full EFA bandwidth and latency");
        }
        return r;
    }
    let head = match expected {
        Some(n) if total <= n as usize => format!("{usable} of {n} EFA devices usable"),
        Some(n) => format!("{usable} of {total} EFA devices usable ({n} expected)"),
        None => format!(
            "{usable} of {total} EFA devices usable (instance type unknown: consistency only)"
        ),
    };
    r.status = if required { Status::Fail } else { Status::Warn };
    r.summary = format!("{head}; {}", problems.join("; "));
    let remedy = match remedies.as_slice() {
        [(_, one)] => one.to_string(),
        many => {
            many.iter().map(|(kind, rem)| format!("{kind}: {rem}")).collect::<Vec<_>>().join("; ")
        }
    };
    r.remedy(remedy)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `1: DOWN` → `DOWN`.
fn state_word(s: &str) -> &str {
    s.split_once(':').map_or(s, |(_, w)| w.trim())
}

pub struct Efa;

impl Check for Efa {
    fn name(&self) -> &'static str {
        "efa"
    }

    fn required(&self, ctx: &Context) -> bool {
        ctx.expected.efa.is_some_and(|n| n > 0)
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        evaluate(&observe(&ctx.host), ctx.expected.efa, &ctx.identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, state: &str, uverbs: Option<u32>, node: bool) -> Device {
        Device {
            name: name.into(),
            device_id: "0xefa2".into(),
            state: state.into(),
            phys_state: "5: LinkUp".into(),
            port_readable: true,
            uverbs,
            dev_node: node,
        }
    }

    fn snap(devs: Vec<Device>) -> Snapshot {
        Snapshot {
            class_present: true,
            devices: devs,
            driver_version: Some("2.13.0g".into()),
            errors: vec![],
        }
    }

    #[test]
    fn all_usable_passes_and_names_the_driver() {
        let r = evaluate(
            &snap(vec![dev("a", "4: ACTIVE", Some(0), true), dev("b", "4: ACTIVE", Some(1), true)]),
            Some(2),
            &Identity::default(),
        );
        assert_eq!(r.status, Status::Pass);
        assert_eq!(r.summary, "2 of 2 EFA devices usable, efa driver 2.13.0g");
        assert!(r.required);
    }

    #[test]
    fn outside_a_placement_group_warns_only_when_imds_said_so() {
        let s = snap(vec![dev("a", "4: ACTIVE", Some(0), true)]);
        let unknown = Identity::default();
        assert_eq!(evaluate(&s, Some(1), &unknown).status, Status::Pass);
        let no_pg = Identity { imds_answered: true, ..Default::default() };
        let r = evaluate(&s, Some(1), &no_pg);
        assert_eq!(r.status, Status::Warn);
        assert!(r.summary.ends_with("not in a cluster placement group"), "{}", r.summary);
        let in_pg = Identity {
            imds_answered: true,
            placement_group: Some("cpg".into()),
            ..Default::default()
        };
        let r = evaluate(&s, Some(1), &in_pg);
        assert_eq!(r.status, Status::Pass);
        assert_eq!(r.found["placement_group"], "cpg");
    }

    #[test]
    fn more_devices_than_expected_warns() {
        let r = evaluate(
            &snap(vec![dev("a", "4: ACTIVE", Some(0), true), dev("b", "4: ACTIVE", Some(1), true)]),
            Some(1),
            &Identity::default(),
        );
        assert_eq!(r.status, Status::Warn);
        assert!(r.summary.starts_with("2 EFA devices, more than the 1 expected"), "{}", r.summary);
    }

    #[test]
    fn unknown_type_is_consistency_only() {
        let r =
            evaluate(&snap(vec![dev("a", "1: DOWN", Some(0), true)]), None, &Identity::default());
        assert_eq!(r.status, Status::Warn);
        assert!(!r.required);
        assert!(
            r.summary.starts_with(
                "0 of 1 EFA devices usable (instance type unknown: consistency only); a port DOWN"
            ),
            "{}",
            r.summary
        );
        let r =
            evaluate(&snap(vec![dev("a", "4: ACTIVE", Some(0), true)]), None, &Identity::default());
        assert_eq!(r.status, Status::Pass);
        assert_eq!(r.summary, "1 of 1 EFA devices usable, efa driver 2.13.0g (instance type unknown: consistency only)");
        assert_eq!(r.expected["devices"], Value::Null);
    }

    #[test]
    fn an_active_port_without_link_is_named_by_its_physical_state() {
        let mut d = dev("a", "4: ACTIVE", Some(0), true);
        d.phys_state = "2: Polling".into();
        let r = evaluate(&snap(vec![d]), Some(1), &Identity::default());
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.summary,
            "0 of 1 EFA devices usable; a port Polling (state 4: ACTIVE, phys 2: Polling)"
        );
        assert_eq!(r.found["down_state"]["a"]["phys_state"], "2: Polling");
    }

    #[test]
    fn devices_on_a_type_without_efa_warn_and_never_say_the_type_is_unknown() {
        let r = evaluate(
            &snap(vec![dev("a", "4: ACTIVE", Some(0), true)]),
            Some(0),
            &Identity::default(),
        );
        assert_eq!((r.status, r.required), (Status::Warn, false));
        assert_eq!(
            r.summary,
            "1 EFA device found, but this instance type has none, efa driver 2.13.0g"
        );
        let r = evaluate(
            &snap(vec![dev("a", "1: DOWN", Some(0), true)]),
            Some(0),
            &Identity::default(),
        );
        assert_eq!((r.status, r.required), (Status::Warn, false));
        assert!(
            r.summary.starts_with("0 of 1 EFA devices usable (0 expected); a port DOWN"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn every_kind_of_problem_gets_its_remedy() {
        let mut unreadable = dev("c", "unreadable", Some(2), true);
        unreadable.port_readable = false;
        let mut s = snap(vec![
            dev("a", "1: DOWN", Some(0), true),
            dev("b", "4: ACTIVE", None, false),
            unreadable,
        ]);
        s.errors.push(
            "reading /r/sys/class/infiniband/c/ports/1/state: Is a directory (os error 21)".into(),
        );
        let r = evaluate(&s, Some(4), &Identity::default());
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.summary,
            "0 of 4 EFA devices usable; 1 not present (found 3); a port DOWN (state 1: DOWN, phys 5: LinkUp); b has no uverbs device; \
             could not read: reading /r/sys/class/infiniband/c/ports/1/state: Is a directory (os error 21)"
        );
        // An unreadable port is not reported as down: its state is not known.
        assert_eq!(r.found["down"], serde_json::json!(["a"]));
        let remedy = r.remedy.unwrap();
        for part in [
            "missing devices: ",
            "ports down: ",
            "no verbs device: ",
            "unreadable files: run nodeprep as root",
        ] {
            assert!(remedy.contains(part), "{remedy}");
        }
    }

    #[test]
    fn one_kind_of_problem_gets_its_remedy_unprefixed() {
        let r = evaluate(
            &snap(vec![dev("a", "4: ACTIVE", Some(0), false)]),
            Some(1),
            &Identity::default(),
        );
        assert_eq!(r.summary, "0 of 1 EFA devices usable; a has no /dev/infiniband/uverbs0");
        assert!(r.remedy.unwrap().starts_with("load the verbs module (`modprobe ib_uverbs`"));
    }
}
