//! The `storage` verdict: disks against what the type has, the array, the mount, the binds and the
//! space they give; and, when storage is not in place, what `boot` refuses about it.

use super::{
    bind_in_place, bind_order, human, storage_device, BootWould, ObserveError, Snapshot,
    STORAGE_AVAILABLE_BYTES, STORAGE_DISKS, STORAGE_DISKS_EXPECTED, STORAGE_MOUNTED,
    STORAGE_USABLE_BYTES,
};
use crate::capability::read_failure_remedy;
use crate::config::{Mode, StorageConfig};
use crate::host::{mountinfo, HostError};
use crate::report::{CheckResult, Status};

/// The check's verdict on a snapshot, with its metrics taken from the verdict itself (so a gauge
/// cannot say what the report does not). `boot`: what boot's planner says about the same disks,
/// when the check asked it.
pub fn evaluate(
    snap: &Snapshot,
    cfg: &StorageConfig,
    expected: Option<u32>,
    boot: &BootWould,
) -> CheckResult {
    with_metrics(verdict(snap, cfg, expected, boot))
}

fn with_metrics(mut r: CheckResult) -> CheckResult {
    let num = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_f64);
    for (def, value) in [
        (&STORAGE_DISKS, num(r.found.get("disks"))),
        (&STORAGE_DISKS_EXPECTED, num(r.expected.get("disks"))),
        (
            &STORAGE_MOUNTED,
            r.found.get("mounted").and_then(|m| m.as_bool()).map(|m| f64::from(u8::from(m))),
        ),
        (&STORAGE_USABLE_BYTES, num(r.found.get("usable_bytes"))),
        (&STORAGE_AVAILABLE_BYTES, num(r.found.get("available_bytes"))),
    ] {
        if let Some(v) = value {
            r = r.metric(def, [], v);
        }
    }
    r
}

fn verdict(
    snap: &Snapshot,
    cfg: &StorageConfig,
    expected: Option<u32>,
    boot: &BootWould,
) -> CheckResult {
    let mp = cfg.mount_point.as_str();
    let found = snap.disks.len() as u32;
    let mk = |status, summary: String| {
        let mut r = CheckResult::new("storage", status, summary)
            .found("disks", found)
            .found("mount_point", mp);
        if let Some(e) = expected {
            r = r.expect("disks", e);
        }
        r
    };
    if cfg.enabled == Mode::Never {
        return mk(
            Status::Skip,
            "storage.enabled = never: instance-store disks are left alone".into(),
        )
        .found("mounted", false);
    }
    if !snap.errors.is_empty() {
        let errors: Vec<String> = snap.errors.iter().map(ToString::to_string).collect();
        return mk(Status::Fail, format!("could not look: {}", errors.join("; ")))
            .found("mounted", false)
            .remedy(could_not_look(&snap.errors));
    }
    if found == 0 && expected.unwrap_or(0) == 0 && cfg.enabled == Mode::Auto {
        return mk(Status::Skip, "no instance-store disks on this instance type".into())
            .found("mounted", false);
    }
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if let Some(e) = expected {
        if found < e {
            problems.push(format!("{found} of {e} instance-store disks present"));
        } else if found > e {
            warnings.push(format!("{found} instance-store disks present, {e} expected"));
        }
    }
    for d in snap.disks.iter().filter(|d| d.in_use.is_some()) {
        warnings.push(format!(
            "{} ({}) not used: {}",
            d.dev(),
            d.serial,
            d.in_use.as_deref().unwrap_or_default()
        ));
    }
    let usable = snap.usable();
    let raw: u64 = usable.iter().map(|d| d.size_bytes).sum();
    let mut array_json = serde_json::Value::Null;
    let mut degraded: Option<String> = None;
    if usable.len() >= 2 {
        match usable.iter().find_map(|d| snap.array_of(&d.name)) {
            None => problems.push(format!("no RAID0 array assembled from {} disks", usable.len())),
            Some(a) => {
                array_json = serde_json::json!({"device": a.dev(), "state": a.state, "level": a.level,
                    "members": a.members.len(), "raid_disks": a.raid_disks});
                if !a.is_running() {
                    let text = format!(
                        "{} is {} with {} of {} members (degraded)",
                        a.dev(),
                        a.state,
                        a.members.len(),
                        a.raid_disks
                    );
                    degraded = Some(text.clone());
                    problems.push(text);
                }
                let outside: Vec<_> = usable
                    .iter()
                    .filter(|d| !a.members.contains(&d.name))
                    .map(|d| d.dev())
                    .collect();
                if !outside.is_empty() {
                    warnings.push(format!("{} not in {}", outside.join(", "), a.dev()));
                }
            }
        }
    }
    let device = storage_device(snap);
    let top = mountinfo::top_at(&snap.mounts, mp);
    let mounted = match (&device, top) {
        (Some((_, Some(dn))), Some(m)) => m.dev == *dn,
        _ => false,
    };
    if !mounted && problems.is_empty() {
        match top {
            Some(m) => problems
                .push(format!("{mp} shows {} ({}), not the instance store", m.source, m.fstype)),
            None => problems.push(format!("nothing mounted at {mp}")),
        }
    } else if !mounted {
        problems.push(format!("not mounted at {mp}"));
    }
    let devnum = device.as_ref().and_then(|d| d.1);
    let missing: Vec<String> =
        bind_order(&cfg.bind).into_iter().filter(|t| !bind_in_place(snap, devnum, t)).collect();
    if mounted && !missing.is_empty() {
        problems.push(format!("not bind-mounted onto the instance store: {}", missing.join(", ")));
    }
    let mut result_found =
        vec![("mounted", serde_json::json!(mounted)), ("raw_bytes", serde_json::json!(raw))];
    if !array_json.is_null() {
        result_found.push(("array", array_json));
    }
    if !missing.is_empty() {
        result_found.push(("binds_missing", serde_json::json!(missing)));
    }
    let cap = snap.space.filter(|_| mounted).map(|s| (s.total_bytes, s.available_bytes));
    if let Some((total, avail)) = cap {
        result_found.push(("usable_bytes", serde_json::json!(total)));
        result_found.push(("available_bytes", serde_json::json!(avail)));
        // xfs keeps 1–2 % of a large filesystem (its log is at most 2 GiB); much less than the disks
        // means the filesystem does not span them all (an old, smaller array or partition).
        if raw.saturating_sub(total) > (raw / 10).max(1 << 30) {
            warnings.push(format!("{} usable of {} raw", human(total), human(raw)));
        }
    }
    let lost = expected
        .filter(|&e| found < e)
        .map(|e| format!("{found} of {e} instance-store disks present"));
    let refused = match boot {
        BootWould::Refuse(message) if !problems.is_empty() => Some(message.as_str()),
        _ => None,
    };
    if let Some(message) = refused {
        // What boot refuses says why the array, the mount or the binds are not there (and what to
        // do); only the hardware's part of the story stays beside it.
        problems = lost.iter().chain(&degraded).cloned().collect();
        problems.push(format!("boot refuses: {message}"));
    }
    let (status, summary) = if !problems.is_empty() {
        (Status::Fail, problems.join("; "))
    } else {
        let what = if usable.len() == 1 {
            usable[0].dev()
        } else {
            device.as_ref().map(|d| d.0.clone()).unwrap_or_default()
        };
        let size = cap.map(|(t, _)| human(t)).unwrap_or_else(|| format!("{} raw", human(raw)));
        let base = format!(
            "{} disk{} as {what} ({size}) at {mp}, {} binds in place",
            usable.len(),
            if usable.len() == 1 { "" } else { "s" },
            cfg.bind.len()
        );
        if warnings.is_empty() {
            (Status::Pass, base)
        } else {
            (Status::Warn, format!("{base}; {}", warnings.join("; ")))
        }
    };
    let mut r = mk(status, summary);
    // A disk gone or an array degraded is the hardware's fault; an array not made or not mounted
    // is boot's job, and what boot refuses (someone's filesystem on a disk) is the configuration's
    // or the node's state, never the hardware's: the repair bridge must not replace the node.
    if status == Status::Fail {
        if let Some(h) = lost.or(degraded) {
            r = r.hardware_fault(h);
        }
    }
    for (k, v) in result_found {
        r = r.found(k, v);
    }
    if let Some(message) = refused {
        r = r.found("refused", message);
    }
    if let (BootWould::Unknown(why), Status::Fail) = (boot, status) {
        r = r.found("signatures_unread", why.as_str());
    }
    if status == Status::Fail {
        r = r.remedy(if snap.disks.len() < expected.unwrap_or(0) as usize {
            "an instance-store disk is missing: stop and start the instance (moves it to healthy hardware); instance-store data does not survive".to_string()
        } else if refused.is_some() {
            "boot changes nothing while it refuses: do what the refusal says, then restart nodeprep-boot.service (or run `nodeprep boot`); `nodeprep boot --dry-run` shows what it would then do, `lsblk -f` what each disk carries".to_string()
        } else if matches!(boot, BootWould::Unknown(_)) {
            "the disks could not be read here to tell whether boot refuses them: run `nodeprep boot --dry-run` on the node to see what would be done, then `nodeprep boot` (or restart nodeprep-boot.service)".to_string()
        } else {
            "run `nodeprep boot --dry-run` to see what would be done, then `nodeprep boot` (or restart nodeprep-boot.service); `cat /proc/mdstat` and `findmnt` show the current state".to_string()
        });
    }
    r
}

/// What to do when storage could not look.
fn could_not_look(errors: &[ObserveError]) -> String {
    let mut parts = Vec::new();
    if errors.iter().any(|e| matches!(e, ObserveError::NotABlockDevice { .. })) {
        parts.push(
            "list only block devices of this host in storage.devices (`lsblk -d -o NAME,MODEL,SERIAL` \
             shows them); a disk that is still appearing is waited for by `nodeprep boot` \
             (storage.wait_seconds)"
                .to_string(),
        );
    }
    let host: Vec<HostError> = errors.iter().filter_map(ObserveError::host).cloned().collect();
    if !host.is_empty() {
        parts.push(read_failure_remedy(&host, "see `dmesg` for the disk or controller that fails"));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::super::probe::Content;
    use super::super::{plan, refusal, Disk};
    use super::*;

    fn disk(n: u32, content: Content) -> Disk {
        Disk {
            name: format!("nvme{n}n1"),
            serial: format!("AWS{n:04}"),
            model: super::super::INSTANCE_STORE_MODEL.into(),
            size_bytes: 3_840_000_000_000,
            devnum: Some((259, n)),
            holders: Vec::new(),
            in_use: None,
            content: Some(content),
            array_content: None,
        }
    }

    fn foreign() -> Snapshot {
        let ext4 = Content::Other("ext4 filesystem (label \"data\")".into());
        Snapshot {
            disks: vec![disk(1, Content::Blank), disk(2, ext4), disk(3, Content::Blank)],
            ..Snapshot::default()
        }
    }

    #[test]
    fn boot_s_refusal_is_the_summary_and_never_a_hardware_fault() {
        let (snap, cfg) = (foreign(), StorageConfig::default());
        let message = refusal(&snap, &cfg).expect("refused");
        assert!(plan(&snap, &cfg).refuses());
        assert!(
            message.starts_with(
                "/dev/nvme2n1 (AWS0002) carries ext4 filesystem (label \"data\"); nothing was formatted"
            ),
            "{message}"
        );
        let r = evaluate(&snap, &cfg, Some(3), &BootWould::Refuse(message.clone()));
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.summary, format!("boot refuses: {message}"));
        assert_eq!(r.found["refused"], message.as_str());
        assert_eq!(r.hardware_fault, None);
        // Without asking, the old words: the array is not there.
        let r = evaluate(&snap, &cfg, Some(3), &BootWould::NotAsked);
        assert_eq!(
            r.summary,
            "no RAID0 array assembled from 3 disks; not mounted at /mnt/nodeprep"
        );
        assert!(!r.found.contains_key("refused"));
    }

    #[test]
    fn a_missing_disk_stays_the_hardware_s_beside_a_refusal() {
        let (snap, cfg) = (foreign(), StorageConfig::default());
        let r = evaluate(&snap, &cfg, Some(4), &BootWould::Refuse("x".into()));
        assert_eq!(r.summary, "3 of 4 instance-store disks present; boot refuses: x");
        assert_eq!(r.hardware_fault.as_deref(), Some("3 of 4 instance-store disks present"));
    }

    #[test]
    fn disks_that_cannot_be_read_are_said_not_guessed() {
        let (snap, cfg) = (foreign(), StorageConfig::default());
        let why = "reading /host/dev/nvme1n1: Operation not permitted (os error 1) (looking for signatures)";
        let r = evaluate(&snap, &cfg, Some(3), &BootWould::Unknown(why.into()));
        assert_eq!(r.status, Status::Fail);
        assert!(r.summary.starts_with("no RAID0 array assembled from 3 disks"), "{}", r.summary);
        assert_eq!(r.found["signatures_unread"], why);
        assert!(r
            .remedy
            .as_deref()
            .unwrap_or_default()
            .contains("`nodeprep boot --dry-run` on the node"));
        // Blank disks: boot would build it; nothing more to say.
        let blank =
            Snapshot { disks: vec![disk(1, Content::Blank), disk(2, Content::Blank)], ..foreign() };
        assert_eq!(refusal(&blank, &cfg), None);
    }
}
