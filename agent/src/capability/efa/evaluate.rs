//! The `efa` verdict: what EC2 attached, bound and usable, against what the node must have, and
//! each problem with its remedy. Port state is reported, never judged: the efa driver reports every
//! port ACTIVE/LinkUp whatever the network does.

use serde_json::{Map, Value};

use super::kmsg::DriverError;
use super::{Device, Snapshot, EFA_DEVICES_EXPECTED, EFA_DEVICES_UP, EFA_DEVICE_USABLE};
use crate::capability::{error_lines, read_failure_remedy};
use crate::catalog::Expected;
use crate::host::pci::PciAddr;
use crate::host::rdma::Attached;
use crate::host::HostError;
use crate::identity::Identity;
use crate::report::{CheckResult, Status};

const REMEDY_MISSING: &str = "attach every EFA interface the node needs: a pod that requests vpc.amazonaws.com/efa makes Karpenter attach them (or the EC2NodeClass/launch template lists them, interfaceType efa, one per network card); EFA cannot be added to a running instance, so relaunch it";
const REMEDY_UNBOUND: &str = "load the efa driver (`modprobe efa`; installed by aws-efa-installer, or built into the EKS and Bottlerocket AMIs); an EFA function bound to another driver (vfio-pci) must be unbound from it first; `dmesg | grep efa` says why it did not probe";
const REMEDY_UVERBS: &str = "load the verbs module (`modprobe ib_uverbs`; `lsmod | grep efa` shows whether the efa module is loaded, else `modprobe efa`) and check that /dev/infiniband is present (a container needs it mounted)";
const REMEDY_DRIVER: &str = "the efa driver reported errors for the devices above this boot: drain the node and reboot it; if they come back, replace the instance (`dmesg | grep efa` has the lines)";
/// The last resort when EFA's sysfs files cannot be read.
const FIX_UNREADABLE: &str = "the efa driver is in a bad state: reload it or relaunch the instance";

/// What the check looks at.
pub struct Inputs<'a> {
    /// The RDMA devices (`sys/class/infiniband`).
    pub snap: &'a Snapshot,
    /// The EFA PCI functions EC2 attached, and the reads of them that failed.
    pub attached: &'a [Attached],
    pub attach_errors: &'a [HostError],
    /// The efa driver's errors of this boot (or why the kernel log could not be read).
    pub driver_errors: &'a Result<Vec<DriverError>, HostError>,
    pub expected: &'a Expected,
    pub identity: &'a Identity,
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Decides the result.
pub fn evaluate(i: &Inputs) -> CheckResult {
    let snap = i.snap;
    let pci_of = |d: &Device| d.pci.as_deref().and_then(PciAddr::parse);
    // Attached = the EFA PCI functions, and any EFA device whose function was not listed.
    let unbound: Vec<&Attached> = i
        .attached
        .iter()
        .filter(|a| !snap.devices.iter().any(|d| d.pci.as_deref() == Some(a.bdf.as_str())))
        .collect();
    // A device whose PCI address is known and not among them adds one; one whose address could
    // not be read (its sysfs going away) may be any function without a device, so only those
    // beyond such functions add one.
    let unlisted = snap
        .devices
        .iter()
        .filter(|d| d.pci.is_some())
        .filter(|d| !i.attached.iter().any(|a| d.pci.as_deref() == Some(a.bdf.as_str())))
        .count();
    let unknown = snap.devices.iter().filter(|d| d.pci.is_none()).count();
    let attached = i.attached.len() + unlisted + unknown.saturating_sub(unbound.len());
    let expected = i.expected.efa_requested.unwrap_or(attached as u32);
    let required = expected > 0;
    let driver_errors: &[DriverError] = i.driver_errors.as_deref().unwrap_or(&[]);
    let errors_of = |d: &Device| -> Vec<&DriverError> {
        match pci_of(d) {
            Some(p) => driver_errors.iter().filter(|e| e.pci.same_slot(&p)).collect(),
            None => Vec::new(),
        }
    };
    // A device whose port files cannot be read is not usable: its sysfs is going away.
    let usable_dev = |d: &Device| d.has_verbs() && d.port_readable && errors_of(d).is_empty();
    let usable = snap.devices.iter().filter(|d| usable_dev(d)).count();
    let no_uverbs: Vec<&Device> = snap.devices.iter().filter(|d| !d.has_verbs()).collect();
    let failing: Vec<(&Device, Vec<&DriverError>)> =
        snap.devices.iter().map(|d| (d, errors_of(d))).filter(|(_, e)| !e.is_empty()).collect();

    let mut r = CheckResult::new("efa", Status::Pass, "").required(required);
    r = r.expect("devices", expected);
    r = r.metric(&EFA_DEVICES_UP, [], usable as f64);
    r = r.metric(&EFA_DEVICES_EXPECTED, [], f64::from(expected));
    for d in &snap.devices {
        r = r.metric(&EFA_DEVICE_USABLE, [&d.name], f64::from(u8::from(usable_dev(d))));
    }
    // Port state: reported as the driver shows it, never judged.
    let ports: Map<String, Value> = snap
        .devices
        .iter()
        .map(|d| (d.name.clone(), Value::from(format!("{} / {}", d.state, d.phys_state))))
        .collect();
    let down: Vec<String> = snap
        .devices
        .iter()
        .filter(|d| d.port_readable && !d.port_up())
        .map(|d| d.name.clone())
        .collect();
    r = r
        .found("devices", usable)
        .found("attached", attached)
        .found("total", snap.devices.len())
        .found(
            "expected_from",
            match (i.expected.efa_requested, &i.expected.efa_max) {
                (Some(_), _) => "config (expect.efa)",
                _ => "attached",
            },
        )
        .found("ceiling", i.expected.efa_max.map_or(Value::Null, Value::from))
        .found(
            "unbound",
            unbound
                .iter()
                .map(|a| serde_json::json!({"pci": a.bdf, "driver": a.driver}))
                .collect::<Vec<_>>(),
        )
        .found("no_uverbs", no_uverbs.iter().map(|d| d.name.clone()).collect::<Vec<_>>())
        .found("ports", ports)
        .found("down", down)
        .found(
            "other_rdma",
            snap.other
                .iter()
                .map(|(n, drv)| serde_json::json!({"name": n, "driver": drv}))
                .collect::<Vec<_>>(),
        )
        .found("driver", snap.driver_version.clone().map_or(Value::Null, Value::from));
    if !failing.is_empty() {
        let m: Map<String, Value> = failing
            .iter()
            .map(|(d, e)| {
                (
                    d.name.clone(),
                    Value::from(e.iter().map(|x| x.message.clone()).collect::<Vec<_>>()),
                )
            })
            .collect();
        r = r.found("driver_errors", m);
    }
    if let Some(pg) = &i.identity.placement_group {
        r = r.found("placement_group", pg.as_str());
    }
    let mut read_errors: Vec<HostError> = snap.errors.clone();
    read_errors.extend(i.attach_errors.iter().cloned());
    if let Err(e) = i.driver_errors {
        read_errors.push(e.clone());
    }
    if !read_errors.is_empty() {
        r = r.found("errors", error_lines(&read_errors));
    }
    let driver =
        snap.driver_version.as_deref().map(|v| format!(", efa driver {v}")).unwrap_or_default();
    let type_name = i.expected.instance_type.as_deref().unwrap_or("this instance type");

    if attached == 0 && expected == 0 && read_errors.is_empty() {
        return match i.expected.efa_max {
            Some(max) if max > 0 => {
                r.summary = format!(
                    "0 EFA attached ({type_name} supports {max}; Karpenter attaches them only for pods that request vpc.amazonaws.com/efa)"
                );
                r
            }
            Some(_) => {
                r.status = Status::Skip;
                r.summary = "no EFA on this instance type, none attached".into();
                r
            }
            None => {
                r.status = Status::Skip;
                r.summary = "no EFA attached (instance type unknown)".into();
                r
            }
        };
    }

    // Each problem found, and the remedy for its kind (in this order, each once).
    let mut problems = Vec::new();
    let mut remedies: Vec<(&str, String)> = Vec::new();
    let missing = (expected as usize).saturating_sub(attached);
    if missing > 0 {
        problems.push(format!(
            "{missing} not attached (config asks for {expected}, EC2 attached {attached})"
        ));
        remedies.push(("not attached", REMEDY_MISSING.to_string()));
    }
    for a in &unbound {
        problems.push(match a.driver.as_deref() {
            None => format!("PCI {} attached but no driver bound (efa not loaded?)", a.bdf),
            Some("efa") => format!(
                "PCI {} bound to efa but has no RDMA device (probe failed or it is going away)",
                a.bdf
            ),
            Some(d) => format!("PCI {} attached but bound to {d}, not efa", a.bdf),
        });
    }
    if !unbound.is_empty() {
        remedies.push(("not bound", REMEDY_UNBOUND.to_string()));
    }
    for d in &no_uverbs {
        match d.uverbs {
            None => problems.push(format!("{} has no uverbs device", d.name)),
            Some(n) => problems.push(format!("{} has no /dev/infiniband/uverbs{n}", d.name)),
        }
    }
    if !no_uverbs.is_empty() {
        remedies.push(("no verbs device", REMEDY_UVERBS.to_string()));
    }
    for (d, errs) in &failing {
        problems.push(format!(
            "{} ({}) efa driver error{} this boot: {}",
            d.name,
            d.pci.as_deref().unwrap_or("?"),
            plural(errs.len()),
            errs.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ")
        ));
    }
    if !failing.is_empty() {
        remedies.push(("driver errors", REMEDY_DRIVER.to_string()));
    }
    if !read_errors.is_empty() {
        problems.push(format!("could not read: {}", error_lines(&read_errors).join("; ")));
        remedies.push(("unreadable files", read_failure_remedy(&read_errors, FIX_UNREADABLE)));
    }

    let over_ceiling = i.expected.efa_max.filter(|&max| attached > max as usize);
    if problems.is_empty() {
        if let Some(max) = over_ceiling {
            r.status = Status::Warn;
            r.summary = match max {
                0 => format!(
                    "{attached} EFA device{} attached, but {type_name} has none{driver}",
                    plural(attached)
                ),
                n => format!(
                    "{attached} EFA devices attached, more than the {n} {type_name} supports, all usable{driver}"
                ),
            };
            return r.remedy(
                "check the instance type (config instance_type, IMDS) and the catalog entry (`nodeprep catalog`)",
            );
        }
        r.summary = format!("{usable} of {expected} EFA devices usable{driver}");
        if usable > expected as usize {
            r.summary = format!("{usable} EFA devices usable ({expected} asked for){driver}");
        }
        if i.identity.imds_answered && i.identity.placement_group.is_none() {
            r.status = Status::Warn;
            r.summary.push_str("; not in a cluster placement group");
            return r.remedy("launch EFA instances in a cluster placement group (EC2NodeClass placementGroupSelector) for full EFA bandwidth and latency");
        }
        return r;
    }
    r.status = if required { Status::Fail } else { Status::Warn };
    // The hardware's fault: a device the efa driver failed on (an error in the kernel log, bound
    // but no RDMA device), or a function left without a driver while the efa driver took others.
    // No function bound to efa at all is a driver not installed: the node's configuration.
    let driver_present = i.attached.iter().any(|a| a.driver.as_deref() == Some("efa"));
    let hardware = failing
        .first()
        .map(|(d, _)| format!("EFA device {} reported driver errors", d.name))
        .or_else(|| {
            unbound
                .iter()
                .find(|a| {
                    a.driver.as_deref() == Some("efa") || (a.driver.is_none() && driver_present)
                })
                .map(|a| format!("EFA function {} not bound", a.bdf))
        });
    if let (true, Some(h)) = (required, hardware) {
        r = r.hardware_fault(h);
    }
    r.summary = format!(
        "{usable} of {} EFA devices usable; {}",
        (expected as usize).max(attached),
        problems.join("; ")
    );
    let remedy = match remedies.as_slice() {
        [(_, one)] => one.to_string(),
        many => {
            many.iter().map(|(kind, rem)| format!("{kind}: {rem}")).collect::<Vec<_>>().join("; ")
        }
    };
    r.remedy(remedy)
}

/// Attached EFA functions that have no RDMA device or no usable uverbs node yet (boot waits for
/// them: p5en initialises late).
pub fn not_ready(snap: &Snapshot, attached: &[Attached]) -> usize {
    let unbound = attached
        .iter()
        .filter(|a| !snap.devices.iter().any(|d| d.pci.as_deref() == Some(a.bdf.as_str())))
        .count();
    unbound + snap.devices.iter().filter(|d| !d.has_verbs()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EfaCount, Expect};

    fn dev(name: &str, pci: &str, uverbs: Option<u32>, node: bool) -> Device {
        Device {
            name: name.into(),
            device_id: "0xefa2".into(),
            state: "4: ACTIVE".into(),
            phys_state: "5: LinkUp".into(),
            port_readable: true,
            uverbs,
            dev_node: node,
            pci: Some(pci.into()),
        }
    }

    fn att(pci: &str, driver: Option<&str>) -> Attached {
        Attached {
            bdf: pci.into(),
            addr: PciAddr::parse(pci),
            device_id: "0xefa2".into(),
            driver: driver.map(str::to_string),
        }
    }

    fn snap(devs: Vec<Device>) -> Snapshot {
        Snapshot {
            class_present: true,
            devices: devs,
            driver_version: Some("2.13.0g".into()),
            other: vec![],
            errors: vec![],
        }
    }

    fn expected(t: &str, efa: Option<EfaCount>, attached: u32) -> Expected {
        Expected::new(Some(t), &Expect { efa, ..Default::default() }).with_attached_efa(attached)
    }

    fn run(s: &Snapshot, a: &[Attached], e: &Expected, k: Vec<DriverError>) -> CheckResult {
        evaluate(&Inputs {
            snap: s,
            attached: a,
            attach_errors: &[],
            driver_errors: &Ok(k),
            expected: e,
            identity: &Identity::default(),
        })
    }

    #[test]
    fn what_was_attached_is_what_must_work_and_port_state_is_never_judged() {
        let mut down = dev("b", "0000:20:00.0", Some(1), true);
        down.state = "1: DOWN".into();
        let s = snap(vec![dev("a", "0000:10:00.0", Some(0), true), down]);
        let a = [att("0000:10:00.0", Some("efa")), att("0000:20:00.0", Some("efa"))];
        let r = run(&s, &a, &expected("p5.48xlarge", None, 2), vec![]);
        assert_eq!((r.status, r.required), (Status::Pass, true), "{}", r.summary);
        assert_eq!(r.summary, "2 of 2 EFA devices usable, efa driver 2.13.0g");
        assert_eq!(r.found["down"], serde_json::json!(["b"]), "reported");
        assert_eq!(r.found["ports"]["b"], "1: DOWN / 5: LinkUp");
        assert!(r.remedy.is_none());
    }

    #[test]
    fn none_attached_on_an_efa_type_passes_with_a_note_unless_config_asks() {
        let s = snap(vec![]);
        let r = run(&s, &[], &expected("p5.48xlarge", None, 0), vec![]);
        assert_eq!((r.status, r.required), (Status::Pass, false));
        assert_eq!(r.summary, "0 EFA attached (p5.48xlarge supports 32; Karpenter attaches them only for pods that request vpc.amazonaws.com/efa)");
        for ask in [EfaCount::Max, EfaCount::Count(32)] {
            let r = run(&s, &[], &expected("p5.48xlarge", Some(ask), 0), vec![]);
            assert_eq!((r.status, r.required), (Status::Fail, true), "{ask:?}");
            assert!(
                r.summary.contains("32 not attached (config asks for 32, EC2 attached 0)"),
                "{}",
                r.summary
            );
        }
        let r = run(&s, &[], &expected("g5.xlarge", None, 0), vec![]);
        assert_eq!(r.status, Status::Skip);
    }

    #[test]
    fn an_attached_function_without_a_driver_fails_naming_its_pci_address() {
        let s = snap(vec![dev("a", "0000:10:00.0", Some(0), true)]);
        let a = [
            att("0000:10:00.0", Some("efa")),
            att("0000:20:00.0", None),
            att("0000:30:00.0", Some("vfio-pci")),
        ];
        let r = run(&s, &a, &expected("p5.48xlarge", None, 3), vec![]);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.summary,
            "1 of 3 EFA devices usable; PCI 0000:20:00.0 attached but no driver bound (efa not loaded?); PCI 0000:30:00.0 attached but bound to vfio-pci, not efa"
        );
        assert!(r.remedy.unwrap().starts_with("load the efa driver"));
    }

    #[test]
    fn more_than_the_type_supports_warns_and_other_rdma_devices_are_not_counted() {
        let mut s = snap(vec![
            dev("a", "0000:10:00.0", Some(0), true),
            dev("b", "0000:20:00.0", Some(1), true),
        ]);
        s.other.push(("ibp0s1".into(), "mlx5_core".into()));
        let a = [att("0000:10:00.0", Some("efa")), att("0000:20:00.0", Some("efa"))];
        let r = run(&s, &a, &expected("g6e.12xlarge", None, 2), vec![]);
        assert_eq!(r.found["other_rdma"][0]["name"], "ibp0s1");
        assert_eq!(r.found["attached"], 2);
        let r = run(&s, &a, &expected("g5.xlarge", None, 2), vec![]);
        assert_eq!(r.status, Status::Warn);
        assert!(
            r.summary.starts_with("2 EFA devices attached, but g5.xlarge has none"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn driver_errors_of_this_boot_fail_the_device_they_name() {
        let s = snap(vec![
            dev("a", "0000:10:00.0", Some(0), true),
            dev("b", "0000:20:00.0", Some(1), true),
        ]);
        let a = [att("0000:10:00.0", Some("efa")), att("0000:20:00.0", Some("efa"))];
        let k = vec![DriverError {
            pci: PciAddr::parse("0000:20:00.0").unwrap(),
            message: "Failed to reset device".into(),
        }];
        let r = run(&s, &a, &expected("p5.48xlarge", None, 2), k);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.summary, "1 of 2 EFA devices usable; b (0000:20:00.0) efa driver error this boot: Failed to reset device");
        assert!(r.remedy.unwrap().contains("reboot"));
        assert_eq!(r.found["driver_errors"]["b"][0], "Failed to reset device");
    }

    #[test]
    fn a_device_without_verbs_fails_as_before() {
        let s = snap(vec![dev("a", "0000:10:00.0", Some(0), false)]);
        let a = [att("0000:10:00.0", Some("efa"))];
        let r = run(&s, &a, &expected("p5.48xlarge", None, 1), vec![]);
        assert_eq!(r.summary, "0 of 1 EFA devices usable; a has no /dev/infiniband/uverbs0");
        assert!(r.remedy.unwrap().starts_with("load the verbs module (`modprobe ib_uverbs`"));
        assert_eq!(not_ready(&s, &a), 1);
    }
}
