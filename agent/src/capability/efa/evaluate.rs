//! The `efa` verdict: attached devices against what the type must have, and each problem with its
//! remedy.

use serde_json::{Map, Value};

use super::{Device, Snapshot, EFA_DEVICES_EXPECTED, EFA_DEVICES_UP, EFA_DEVICE_USABLE};
use crate::capability::{error_lines, read_failure_remedy};
use crate::host::rdma;
use crate::identity::Identity;
use crate::report::{CheckResult, Status};

const REMEDY_MISSING: &str = "make the launch template / EC2NodeClass request every EFA interface (one per network card, interfaceType efa), make sure the EFA driver is installed (aws-efa-installer) and loaded (`modprobe efa`), then relaunch the instance";
const REMEDY_DOWN: &str = "the security group must allow all traffic to and from itself (a self-referencing rule, inbound and outbound); if it does, relaunch the instance";
const REMEDY_UVERBS: &str = "load the verbs module (`modprobe ib_uverbs`; `lsmod | grep efa` shows whether the efa module is loaded, else `modprobe efa`) and check that /dev/infiniband is present (a container needs it mounted)";
/// The last resort when EFA's sysfs files cannot be read.
const FIX_UNREADABLE: &str = "the efa driver is in a bad state: reload it or relaunch the instance";

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
    r = r.metric(&EFA_DEVICES_UP, [], usable as f64);
    if let Some(n) = expected {
        r = r.metric(&EFA_DEVICES_EXPECTED, [], f64::from(n));
    }
    for d in &snap.devices {
        r = r.metric(&EFA_DEVICE_USABLE, [&d.name], f64::from(u8::from(d.usable())));
    }
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
        r = r.found("errors", error_lines(&snap.errors));
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
            "no RDMA devices at all ({} is missing): the efa driver is not loaded; expected {} EFA devices",
            rdma::CLASS,
            expected.unwrap_or(0)
        );
        return r.remedy(REMEDY_MISSING);
    }

    // Each problem found, and the remedy for its kind (in this order, each once).
    let mut problems = Vec::new();
    let mut remedies: Vec<(&str, String)> = Vec::new();
    let missing = expected.map_or(0, |n| (n as usize).saturating_sub(total));
    if missing > 0 {
        problems.push(format!("{missing} not present (found {total})"));
        remedies.push(("missing devices", REMEDY_MISSING.to_string()));
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
        remedies.push(("ports down", REMEDY_DOWN.to_string()));
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
    if !snap.errors.is_empty() {
        problems.push(format!("could not read: {}", error_lines(&snap.errors).join("; ")));
        remedies.push(("unreadable files", read_failure_remedy(&snap.errors, FIX_UNREADABLE)));
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
        s.errors.push(crate::host::HostError {
            op: "reading",
            path: "/r/sys/class/infiniband/c/ports/1/state".into(),
            kind: crate::host::ErrorKind::Denied,
            detail: "Permission denied (os error 13)".into(),
        });
        let r = evaluate(&s, Some(4), &Identity::default());
        assert_eq!(r.status, Status::Fail);
        assert_eq!(
            r.summary,
            "0 of 4 EFA devices usable; 1 not present (found 3); a port DOWN (state 1: DOWN, phys 5: LinkUp); b has no uverbs device; \
             could not read: reading /r/sys/class/infiniband/c/ports/1/state: Permission denied (os error 13)"
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
