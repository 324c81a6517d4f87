//! The storage plan: assemble or create the RAID0 array (or use the single disk), make the xfs
//! filesystem, mount it, and bind each target onto it — each step only when the host shows it is
//! not done yet, so a rerun on a prepared node changes nothing and a rerun after a crash at any step
//! picks up where it stopped.
//!
//! Safety rules (DESIGN.md: never destroy what is not ours):
//! - a disk is ours when it is blank, or carries our md array name or our xfs label ([`NAME`]);
//!   anything else (a filesystem, partition table, LVM, LUKS, another array) stops the whole plan
//!   with a message naming the disk and what is on it;
//! - an existing complete array of ours is assembled, never recreated (its data survives reboots);
//! - binds never go over a target that has another mount or mounts below it, nor through a
//!   symbolic link, nor while containerd/kubelet run;
//! - nothing is written to the root volume's configuration: no fstab line, no mdadm.conf, no mount
//!   units. Each boot decides again from the disks and `/proc/1/mountinfo`.

use std::collections::BTreeMap;

use super::probe::Content;
use super::{bind_in_place, bind_order, bind_source, enabled, Disk, Snapshot, NAME};
use crate::apply::{programs, Action, Plan};
use crate::config::{Mode, StorageConfig};
use crate::host::mountinfo;

/// Per-mount options of the instance-store filesystem. Bind mounts inherit them.
pub const MOUNT_OPTIONS: &[&str] = &["nosuid", "nodev", "noatime"];
/// RAID0 chunk size in KiB.
pub const CHUNK_KIB: u32 = 256;

/// Why the plan does nothing: doing it could destroy data or hide live state. It replaces the
/// whole plan (notes kept): nothing is done halfway.
struct Refusal(String);

/// The actions planned so far.
struct Steps {
    actions: Vec<Action>,
}

impl Steps {
    fn push(&mut self, a: Action) {
        self.actions.push(a);
    }

    fn note(&mut self, message: String) {
        self.actions.push(Action::Notice { message });
    }

    fn into_plan(self) -> Plan {
        Plan { capability: "storage", actions: self.actions }
    }

    fn refused(mut self, Refusal(message): Refusal) -> Plan {
        self.actions.retain(|a| matches!(a, Action::Notice { .. }));
        self.actions.push(Action::Refuse { message });
        self.into_plan()
    }
}

/// The device the filesystem goes on, and what it holds now.
struct Device {
    path: String,
    /// Known when it exists already; a device the plan assembles or creates has none yet.
    devnum: Option<(u32, u32)>,
    content: Content,
    /// Created by this plan: formatted whatever it seems to hold.
    fresh: bool,
}

/// Is this content ours to reuse or overwrite?
fn ours(c: &Content) -> bool {
    match c {
        Content::Blank => true,
        Content::Md(m) => m.short_name() == NAME,
        Content::Xfs { label, .. } => label == NAME,
        Content::Other(_) => false,
    }
}

/// The first free md device name, counting down from md127 as mdadm does. Arrays the plan stops
/// first (`stopped`) count as free.
fn free_md(snap: &Snapshot, stopped: &[String]) -> String {
    (0..=127)
        .rev()
        .map(|n| format!("md{n}"))
        .find(|n| !snap.md_names.contains(n) || stopped.contains(n))
        .unwrap_or_else(|| "md127".into())
}

/// A complete set of our md members among the disks: `(disks in role order)`.
fn complete_set<'a>(disks: &[&'a Disk]) -> Option<Vec<&'a Disk>> {
    let mut sets: BTreeMap<[u8; 16], Vec<&Disk>> = BTreeMap::new();
    for d in disks {
        if let Some(m) = d.md().filter(|m| m.short_name() == NAME) {
            sets.entry(m.uuid).or_default().push(d);
        }
    }
    sets.into_values().find_map(|mut set| {
        let first = set[0].md()?;
        let n = first.raid_disks as usize;
        set.sort_by_key(|d| d.md().and_then(|m| m.role).unwrap_or(u32::MAX));
        let roles: Vec<Option<u32>> = set.iter().map(|d| d.md().and_then(|m| m.role)).collect();
        let complete = first.level == 0
            && n >= 2
            && set.len() == n
            && roles.iter().enumerate().all(|(i, r)| *r == Some(i as u32));
        complete.then_some(set)
    })
}

/// Plans storage from what the host shows now (a snapshot taken with `probe = true`): the runbook,
/// one named step after another.
pub fn plan(snap: &Snapshot, cfg: &StorageConfig) -> Plan {
    let mut steps = Steps { actions: Vec::new() };
    if !enabled(cfg, snap) {
        let why = match cfg.enabled {
            Mode::Never => "storage.enabled = never".to_string(),
            _ => "no instance-store disks (NVMe model \"Amazon EC2 NVMe Instance Storage\") on this node".to_string(),
        };
        steps.push(Action::Skip { what: "instance storage".into(), why });
        return steps.into_plan();
    }
    let result = (|| {
        let disks = usable_disks(snap, &mut steps)?;
        refuse_what_is_not_ours(snap, &disks)?;
        refuse_a_partial_array(&disks)?;
        let device = block_device(snap, &disks, &mut steps);
        filesystem(&device, &mut steps)?;
        let mounted = mount(snap, cfg, &device, &mut steps)?;
        binds(snap, cfg, mounted, device.devnum, &mut steps)
    })();
    match result {
        Ok(()) => steps.into_plan(),
        Err(refusal) => steps.refused(refusal),
    }
}

/// What `boot` would refuse on this snapshot (taken with `probe = true`), in its own words: the
/// `storage` check says it when storage is not in place, so that the check and `boot` judge the
/// disks by the same rules. `None`: boot would prepare storage (or skip it).
pub fn refusal(snap: &Snapshot, cfg: &StorageConfig) -> Option<String> {
    plan(snap, cfg).actions.into_iter().find_map(|a| match a {
        Action::Refuse { message } => Some(message),
        _ => None,
    })
}

/// The disks to use: every instance-store disk not in use by someone else (named in a note), all
/// of them read completely.
fn usable_disks<'a>(snap: &'a Snapshot, steps: &mut Steps) -> Result<Vec<&'a Disk>, Refusal> {
    if !snap.errors.is_empty() {
        let errors: Vec<String> = snap.errors.iter().map(ToString::to_string).collect();
        return Err(Refusal(format!(
            "cannot see the disks completely, so nothing is changed: {}",
            errors.join("; ")
        )));
    }
    for d in snap.disks.iter().filter(|d| d.in_use.is_some()) {
        let why = d.in_use.clone().unwrap_or_default();
        if snap.explicit {
            return Err(Refusal(format!(
                "{} (listed in storage.devices) is {why}; remove it from storage.devices",
                d.dev()
            )));
        }
        steps.note(format!("{} ({}) is {why}: not used", d.dev(), d.serial));
    }
    let disks = snap.usable();
    if disks.is_empty() {
        return Err(Refusal(
            "storage.enabled = always, but no usable instance-store disk was found".into(),
        ));
    }
    Ok(disks)
}

/// Never touch what is not ours: a signature nodeprep did not write, a disk not probed, a holder
/// that is not one of the arrays seen.
fn refuse_what_is_not_ours(snap: &Snapshot, disks: &[&Disk]) -> Result<(), Refusal> {
    for d in disks {
        if let Some(c) = d.content.as_ref().filter(|c| !ours(c)) {
            let without = if snap.explicit {
                "remove it from storage.devices"
            } else {
                "list only the other disks in storage.devices"
            };
            return Err(Refusal(format!(
                "{} ({}) carries {}; nothing was formatted: nodeprep formats only blank disks or its own \
                 (array or label \"{NAME}\"). If that data is not wanted, erase it with `wipefs --all {}`, \
                 or {without}; then restart nodeprep-boot.service (or run `nodeprep boot`)",
                d.dev(),
                if d.serial.is_empty() { "no serial" } else { d.serial.as_str() },
                c.describe(),
                d.dev()
            )));
        }
        if d.content.is_none() {
            return Err(Refusal(format!(
                "{} was not probed for signatures; nothing is changed",
                d.dev()
            )));
        }
        // Held by an md array: judged by its superblock above. Anything else (device mapper) is
        // not ours.
        if let Some(h) = d.holders.iter().find(|h| !snap.arrays.iter().any(|a| &a.name == *h)) {
            return Err(Refusal(format!(
                "{} is in use by {h} (device mapper or another array); nothing is changed",
                d.dev()
            )));
        }
    }
    Ok(())
}

/// A set of our members that is missing disks while fewer disks are present than it had: a member
/// has not appeared (or failed). Recreating would erase the rest; wait for it instead.
fn refuse_a_partial_array(disks: &[&Disk]) -> Result<(), Refusal> {
    let partial = disks
        .iter()
        .filter_map(|d| d.md())
        .find(|m| m.short_name() == NAME && disks.len() < m.raid_disks as usize);
    match partial {
        Some(m) if complete_set(disks).is_none() => Err(Refusal(format!(
            "our array {} had {} disks, only {} are present; recreating it would erase their data. \
             If a disk is slow to appear, rerun `nodeprep boot` (or raise storage.wait_seconds); \
             if it failed, stop and start the instance",
            m.uuid_string(),
            m.raid_disks,
            disks.len()
        ))),
        _ => Ok(()),
    }
}

/// The block device to format and mount: the single disk, our running array, our array assembled,
/// or a new RAID0.
fn block_device(snap: &Snapshot, disks: &[&Disk], steps: &mut Steps) -> Device {
    if disks.len() == 1 && snap.array_of(&disks[0].name).is_none() {
        let d = disks[0];
        let content = d.content.clone().unwrap_or(Content::Blank);
        return Device { path: d.dev(), devnum: d.devnum, content, fresh: false };
    }
    let running = disks.iter().find_map(|d| snap.array_of(&d.name)).filter(|a| a.is_running());
    if let Some(a) = running {
        let outside: Vec<String> =
            disks.iter().filter(|d| !a.members.contains(&d.name)).map(|d| d.dev()).collect();
        if !outside.is_empty() {
            steps.note(format!(
                "{} not in the running array {}; recreating it would erase its data, so they stay unused",
                outside.join(", "),
                a.dev()
            ));
        }
        let content = a.content.clone().unwrap_or(Content::Blank);
        return Device { path: a.dev(), devnum: a.devnum, content, fresh: false };
    }
    // Arrays holding our disks that are not running (udev's incremental assembly stopped halfway,
    // or a member is missing): stop them so the disks can be assembled or reused.
    for a in &snap.arrays {
        let why = format!(
            "{} is {} with {} of {} members",
            a.dev(),
            a.state,
            a.members.len(),
            a.raid_disks
        );
        steps.push(programs::mdadm_stop(&a.dev(), &why));
    }
    let stopped: Vec<String> = snap.arrays.iter().map(|a| a.name.clone()).collect();
    let md = format!("/dev/{}", free_md(snap, &stopped));
    match complete_set(disks) {
        Some(set) => mdadm_assemble(md, disks, &set, steps),
        None => mdadm_create(md, disks, steps),
    }
}

/// Assembles our array from a complete set of its members: its data is kept.
fn mdadm_assemble(md: String, disks: &[&Disk], set: &[&Disk], steps: &mut Steps) -> Device {
    let members: Vec<String> = set.iter().map(|d| d.dev()).collect();
    let uuid = set[0].md().map(|m| m.uuid_string()).unwrap_or_default();
    let why = format!("the disks hold our array {uuid}: assemble it, data kept");
    steps.push(programs::mdadm_assemble(&md, &members, &why));
    let leftover: Vec<String> =
        disks.iter().filter(|d| !set.iter().any(|s| s.name == d.name)).map(|d| d.dev()).collect();
    if !leftover.is_empty() {
        steps.note(format!(
            "{} not in our array {uuid}; left unused so its data is kept",
            leftover.join(", ")
        ));
    }
    let content = set[0].array_content.clone().unwrap_or(Content::Blank);
    Device { path: md, devnum: None, content, fresh: false }
}

/// A new RAID0 of every disk, named ours.
fn mdadm_create(md: String, disks: &[&Disk], steps: &mut Steps) -> Device {
    let members: Vec<String> = disks.iter().map(|d| d.dev()).collect();
    let why = format!("RAID0 of {} blank instance-store disks", disks.len());
    steps.push(programs::mdadm_create_raid0(&md, NAME, CHUNK_KIB, &members, &why));
    Device { path: md, devnum: None, content: Content::Blank, fresh: true }
}

/// xfs on the device unless our xfs is there: forced over our own content (a new array, an
/// interrupted mkfs), refused over anything else.
fn filesystem(device: &Device, steps: &mut Steps) -> Result<(), Refusal> {
    let force = match &device.content {
        _ if device.fresh => true,
        Content::Blank => false,
        Content::Xfs { in_progress: true, .. } => true,
        Content::Xfs { .. } => return Ok(()),
        other => {
            return Err(Refusal(format!(
                "{} (our array) carries {}, not our xfs; refusing to format it. Inspect it, then wipe it if disposable",
                device.path,
                other.describe()
            )))
        }
    };
    steps.push(programs::mkfs_xfs(&device.path, NAME, force));
    Ok(())
}

/// Mounts the device at the mount point unless it is there already; never over another mount.
/// True when it is mounted already.
fn mount(
    snap: &Snapshot,
    cfg: &StorageConfig,
    device: &Device,
    steps: &mut Steps,
) -> Result<bool, Refusal> {
    let mp = cfg.mount_point.as_str();
    let top = mountinfo::top_at(&snap.mounts, mp);
    if matches!((top, device.devnum), (Some(m), Some(d)) if m.dev == d) {
        return Ok(true);
    }
    if let Some(m) = top {
        return Err(Refusal(format!(
            "{mp} already has {} ({}) mounted; nodeprep does not mount over it. Unmount it or set storage.mount_point",
            m.source, m.fstype
        )));
    }
    steps.push(Action::MakeDir { path: mp.into(), why: "mount point".into() });
    steps.push(Action::Mount {
        source: device.path.clone(),
        target: mp.into(),
        fstype: "xfs".into(),
        options: MOUNT_OPTIONS.iter().map(|s| s.to_string()).collect(),
        why: "instance store".into(),
    });
    steps.push(Action::VerifyMount { path: mp.into(), fstype: "xfs".into() });
    Ok(false)
}

/// True when `path` lies strictly below the directory `dir`.
fn is_below(path: &str, dir: &str) -> bool {
    path != dir && std::path::Path::new(path).starts_with(dir)
}

/// Binds each target onto its directory of the instance store, parents first; never over another
/// mount or one with mounts below it, never through a symbolic link, never while containerd or
/// kubelet run.
fn binds(
    snap: &Snapshot,
    cfg: &StorageConfig,
    mounted: bool,
    devnum: Option<(u32, u32)>,
    steps: &mut Steps,
) -> Result<(), Refusal> {
    let mp = cfg.mount_point.as_str();
    let mut binds = Vec::new();
    for target in bind_order(&cfg.bind) {
        if let Some((_, real)) = snap.links.iter().find(|(t, _)| *t == target) {
            return Err(Refusal(format!(
                "{target} is reached through a symbolic link (it leads to {real}): a bind there \
                 would bind the root volume's directory onto itself and stack one more mount every \
                 boot. Name the real directory in storage.bind, or replace the link with a directory"
            )));
        }
        if mounted && bind_in_place(snap, devnum, &target) {
            continue;
        }
        let ours = |m: &mountinfo::Mount| mounted && Some(m.dev) == devnum;
        if let Some(m) = snap.mounts.iter().find(|m| is_below(&m.mount_point, &target) && !ours(m))
        {
            return Err(Refusal(format!(
                "{} ({}, {}) is mounted below {target}: copying {target} onto the instance store \
                 would copy that mount's files there and the bind would hide the mount. A stopped \
                 kubelet leaves its pods' volumes mounted: unmount them (`umount -R {}`) or reboot, \
                 then run boot again",
                m.mount_point, m.source, m.fstype, m.mount_point
            )));
        }
        if let Some(m) = mountinfo::top_at(&snap.mounts, &target) {
            if !(mounted && Some(m.dev) == devnum) {
                return Err(Refusal(format!(
                    "{target} already has {} ({}) mounted; nodeprep does not bind over another mount",
                    m.source, m.fstype
                )));
            }
        }
        let source = bind_source(mp, &target);
        let staging =
            bind_source(&format!("{}/.nodeprep-staging", mp.trim_end_matches('/')), &target);
        binds.push(Action::PrepareBindSource {
            target: target.clone(),
            source: source.clone(),
            staging,
        });
        binds.push(Action::Bind { source, target });
    }
    if binds.is_empty() {
        return Ok(());
    }
    if let Some((comm, pid)) = snap.users.first() {
        return Err(Refusal(format!(
            "{comm} (pid {pid}) is running: binding {} now would hide the files it has open. \
             nodeprep-boot.service runs before containerd and kubelet; or stop them (`systemctl stop kubelet containerd`) and rerun",
            cfg.bind.join(", ")
        )));
    }
    steps.actions.extend(binds);
    Ok(())
}
