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
//! - binds never go over a target that has another mount, nor while containerd/kubelet run;
//! - nothing is written to the root volume's configuration: no fstab line, no mdadm.conf, no mount
//!   units. Each boot decides again from the disks and `/proc/1/mountinfo`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::{Action, Outcome, Plan};
use crate::checks::storage::probe::Content;
use crate::checks::storage::{self, bind_in_place, bind_order, bind_source, Disk, Snapshot, NAME};
use crate::config::StorageConfig;
use crate::host::{cmd, mountinfo, Host};

/// Per-mount options of the instance-store filesystem. Bind mounts inherit them.
pub const MOUNT_OPTIONS: &[&str] = &["nosuid", "nodev", "noatime"];
/// RAID0 chunk size in KiB.
pub const CHUNK_KIB: u32 = 256;

fn run(program: &str, args: &[&str], why: &str, timeout_s: u64) -> Action {
    Action::Run {
        program: program.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        why: why.into(),
        timeout_s,
    }
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

/// Computes the storage plan from a snapshot taken with `probe = true`.
pub fn plan(snap: &Snapshot, cfg: &StorageConfig) -> Plan {
    let mut actions = Vec::new();
    // A refusal replaces the whole plan (notes kept): nothing is done halfway.
    let refuse = |actions: &mut Vec<Action>, message: String| {
        actions.retain(|a| matches!(a, Action::Notice { .. }));
        actions.push(Action::Refuse { message });
        Plan { capability: "storage", actions: std::mem::take(actions) }
    };
    if !storage::enabled(cfg, snap) {
        let why = match cfg.enabled {
            crate::config::Mode::Never => "storage.enabled = never".to_string(),
            _ => "no instance-store disks (NVMe model \"Amazon EC2 NVMe Instance Storage\") on this node".to_string(),
        };
        actions.push(Action::Skip { what: "instance storage".into(), why });
        return Plan { capability: "storage", actions };
    }
    if !snap.errors.is_empty() {
        return refuse(
            &mut actions,
            format!(
                "cannot see the disks completely, so nothing is changed: {}",
                snap.errors.join("; ")
            ),
        );
    }
    for d in snap.disks.iter().filter(|d| d.in_use.is_some()) {
        let why = d.in_use.clone().unwrap_or_default();
        if snap.explicit {
            return refuse(
                &mut actions,
                format!(
                    "{} (listed in storage.devices) is {why}; remove it from storage.devices",
                    d.dev()
                ),
            );
        }
        actions.push(Action::Notice {
            message: format!("{} ({}) is {why}: not used", d.dev(), d.serial),
        });
    }
    let disks = snap.usable();
    if disks.is_empty() {
        return refuse(
            &mut actions,
            "storage.enabled = always, but no usable instance-store disk was found".into(),
        );
    }
    // Never touch what is not ours.
    for d in &disks {
        if let Some(c) = d.content.as_ref().filter(|c| !ours(c)) {
            return refuse(
                &mut actions,
                format!(
                    "{} ({}) carries {}; nodeprep only formats blank disks or its own (array or label \"{NAME}\"). \
                     If that data is disposable, erase it with `wipefs --all {}` and rerun",
                    d.dev(),
                    if d.serial.is_empty() { "no serial" } else { d.serial.as_str() },
                    c.describe(),
                    d.dev()
                ),
            );
        }
        if d.content.is_none() {
            return refuse(
                &mut actions,
                format!("{} was not probed for signatures; nothing is changed", d.dev()),
            );
        }
        // Held by an md array: judged by its superblock above. Anything else (device mapper) is not ours.
        if let Some(h) = d.holders.iter().find(|h| !snap.arrays.iter().any(|a| &a.name == *h)) {
            return refuse(
                &mut actions,
                format!(
                    "{} is in use by {h} (device mapper or another array); nothing is changed",
                    d.dev()
                ),
            );
        }
    }

    // A set of our members that is missing disks while fewer disks are present than it had: a
    // member has not appeared (or failed). Recreating would erase the rest; wait for it instead.
    if let Some(m) = disks
        .iter()
        .filter_map(|d| d.md())
        .find(|m| m.short_name() == NAME && disks.len() < m.raid_disks as usize)
    {
        if complete_set(&disks).is_none() {
            return refuse(
                &mut actions,
                format!(
                    "our array {} had {} disks, only {} are present; recreating it would erase their data. \
                     If a disk is slow to appear, rerun `nodeprep boot` (or raise storage.wait_seconds); \
                     if it failed, stop and start the instance",
                    m.uuid_string(),
                    m.raid_disks,
                    disks.len()
                ),
            );
        }
    }

    // 1. The block device to format and mount.
    let (device, devnum, content, fresh) = if disks.len() == 1
        && snap.array_of(&disks[0].name).is_none()
    {
        let d = disks[0];
        (d.dev(), d.devnum, d.content.clone().unwrap_or(Content::Blank), false)
    } else if let Some(a) =
        disks.iter().find_map(|d| snap.array_of(&d.name)).filter(|a| a.is_running())
    {
        let outside: Vec<String> =
            disks.iter().filter(|d| !a.members.contains(&d.name)).map(|d| d.dev()).collect();
        if !outside.is_empty() {
            actions.push(Action::Notice {
                message: format!(
                    "{} not in the running array {}; recreating it would erase its data, so they stay unused",
                    outside.join(", "),
                    a.dev()
                ),
            });
        }
        (a.dev(), a.devnum, a.content.clone().unwrap_or(Content::Blank), false)
    } else {
        // Arrays holding our disks that are not running (udev's incremental assembly stopped
        // halfway, or a member is missing): stop them so the disks can be assembled or reused.
        for a in &snap.arrays {
            actions.push(run(
                "mdadm",
                &["--stop", &a.dev()],
                &format!(
                    "{} is {} with {} of {} members",
                    a.dev(),
                    a.state,
                    a.members.len(),
                    a.raid_disks
                ),
                60,
            ));
        }
        let stopped: Vec<String> = snap.arrays.iter().map(|a| a.name.clone()).collect();
        let md = format!("/dev/{}", free_md(snap, &stopped));
        if let Some(set) = complete_set(&disks) {
            let names: Vec<String> = set.iter().map(|d| d.dev()).collect();
            let mut args = vec!["--assemble", "--run", md.as_str()];
            args.extend(names.iter().map(String::as_str));
            let uuid = set[0].md().map(|m| m.uuid_string()).unwrap_or_default();
            actions.push(run(
                "mdadm",
                &args,
                &format!("the disks hold our array {uuid}: assemble it, data kept"),
                120,
            ));
            let leftover: Vec<String> = disks
                .iter()
                .filter(|d| !set.iter().any(|s| s.name == d.name))
                .map(|d| d.dev())
                .collect();
            if !leftover.is_empty() {
                actions.push(Action::Notice {
                    message: format!(
                        "{} not in our array {uuid}; left unused so its data is kept",
                        leftover.join(", ")
                    ),
                });
            }
            let c = set[0].array_content.clone().unwrap_or(Content::Blank);
            (md, None, c, false)
        } else {
            let names: Vec<String> = disks.iter().map(|d| d.dev()).collect();
            let count = disks.len().to_string();
            let chunk = CHUNK_KIB.to_string();
            let name = format!("--name={NAME}");
            let mut args = vec![
                "--create",
                md.as_str(),
                "--run",
                "--metadata=1.2",
                "--homehost=any",
                name.as_str(),
                "--level=0",
                "--chunk",
                chunk.as_str(),
                "--raid-devices",
                count.as_str(),
            ];
            args.extend(names.iter().map(String::as_str));
            actions.push(run(
                "mdadm",
                &args,
                &format!("RAID0 of {} blank instance-store disks", disks.len()),
                120,
            ));
            (md, None, Content::Blank, true)
        }
    };

    // 2. The filesystem.
    let mkfs = |force: bool| {
        let mut args = vec!["-K", "-L", NAME];
        if force {
            args.insert(0, "-f");
        }
        args.push(device.as_str());
        run(
            "mkfs.xfs",
            &args,
            if force {
                "xfs on our own array/disk (old content is ours)"
            } else {
                "xfs, discard skipped (-K)"
            },
            900,
        )
    };
    match &content {
        _ if fresh => actions.push(mkfs(true)),
        Content::Blank => actions.push(mkfs(false)),
        Content::Xfs { in_progress: true, .. } => actions.push(mkfs(true)),
        Content::Xfs { .. } => {}
        other => {
            return refuse(
                &mut actions,
                format!(
                    "{device} (our array) carries {}, not our xfs; refusing to format it. Inspect it, then wipe it if disposable",
                    other.describe()
                ),
            )
        }
    }

    // 3. The mount point.
    let mp = cfg.mount_point.as_str();
    let top = mountinfo::top_at(&snap.mounts, mp);
    let mounted = matches!((top, devnum), (Some(m), Some(d)) if m.dev == d);
    if !mounted {
        if let Some(m) = top {
            return refuse(
                &mut actions,
                format!(
                    "{mp} already has {} ({}) mounted; nodeprep does not mount over it. Unmount it or set storage.mount_point",
                    m.source, m.fstype
                ),
            );
        }
        actions.push(Action::MakeDir { path: mp.into(), why: "mount point".into() });
        actions.push(Action::Mount {
            source: device.clone(),
            target: mp.into(),
            fstype: "xfs".into(),
            options: MOUNT_OPTIONS.iter().map(|s| s.to_string()).collect(),
            why: "instance store".into(),
        });
        actions.push(Action::VerifyMount { path: mp.into(), fstype: "xfs".into() });
    }

    // 4. Bind mounts, parents first.
    let mut binds = Vec::new();
    for target in bind_order(&cfg.bind) {
        if mounted && bind_in_place(snap, devnum, &target) {
            continue;
        }
        if let Some(m) = mountinfo::top_at(&snap.mounts, &target) {
            if !(mounted && Some(m.dev) == devnum) {
                return refuse(
                    &mut actions,
                    format!("{target} already has {} ({}) mounted; nodeprep does not bind over another mount", m.source, m.fstype),
                );
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
    if !binds.is_empty() {
        if let Some((comm, pid)) = snap.users.first() {
            return refuse(
                &mut actions,
                format!(
                    "{comm} (pid {pid}) is running: binding {} now would hide the files it has open. \
                     nodeprep-boot.service runs before containerd and kubelet; or stop them (`systemctl stop kubelet containerd`) and rerun",
                    cfg.bind.join(", ")
                ),
            );
        }
        actions.extend(binds);
    }
    Plan { capability: "storage", actions }
}

fn not_live(host: &Host, what: &str) -> Option<Outcome> {
    (!host.is_live()).then(|| {
        Outcome::Skipped(format!(
            "{what} not done: --root is {}, not / (mounts only happen on the live host)",
            host.root().display()
        ))
    })
}

fn mkdirs(path: &str) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("creating directory {path}: {e}"))
}

fn mount_flags(options: &[String]) -> Result<nix::mount::MsFlags, String> {
    use nix::mount::MsFlags;
    let mut f = MsFlags::empty();
    for o in options {
        f |= match o.as_str() {
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "ro" => MsFlags::MS_RDONLY,
            other => return Err(format!("unknown mount option {other}")),
        };
    }
    Ok(f)
}

/// Applies one storage action on the live host.
pub fn effect(host: &Host, a: &Action) -> Outcome {
    match a {
        Action::MakeDir { path, .. } => {
            if let Some(o) = not_live(host, &format!("mkdir {path}")) {
                return o;
            }
            match Path::new(path).is_dir() {
                true => Outcome::Skipped(format!("{path} exists")),
                false => mkdirs(path)
                    .map_or_else(Outcome::Failed, |_| Outcome::Done(format!("created {path}"))),
            }
        }
        Action::Mount { source, target, fstype, options, .. } => {
            if let Some(o) = not_live(host, &format!("mount {source} on {target}")) {
                return o;
            }
            let flags = match mount_flags(options) {
                Ok(f) => f,
                Err(e) => return Outcome::Failed(e),
            };
            match nix::mount::mount(Some(source.as_str()), target.as_str(), Some(fstype.as_str()), flags, None::<&str>) {
                Ok(()) => Outcome::Done(format!("mounted {source} on {target} ({fstype}, {})", options.join(","))),
                Err(e) => Outcome::Failed(format!(
                    "mount {source} on {target} ({fstype}): {e}; `dmesg | tail` shows the kernel's reason (is the {fstype} module available?)"
                )),
            }
        }
        Action::VerifyMount { path, fstype } => {
            if let Some(o) = not_live(host, &format!("verify {path}")) {
                return o;
            }
            verify(path, fstype).map_or_else(
                |e| {
                    // Unmount a filesystem we cannot use, so nothing gets written into a bad mount.
                    let _ = nix::mount::umount2(path.as_str(), nix::mount::MntFlags::MNT_DETACH);
                    Outcome::Failed(format!(
                        "{path} failed its test after mounting and was unmounted: {e}"
                    ))
                },
                |_| Outcome::Done(format!("verified {path}: {fstype}, writable")),
            )
        }
        Action::PrepareBindSource { target, source, staging } => {
            if let Some(o) = not_live(host, &format!("copy {target} to {source}")) {
                return o;
            }
            prepare_bind_source(host, target, source, staging)
                .map_or_else(Outcome::Failed, Outcome::Done)
        }
        Action::Bind { source, target } => {
            if let Some(o) = not_live(host, &format!("bind {source} on {target}")) {
                return o;
            }
            if let Err(e) = mkdirs(target) {
                return Outcome::Failed(e);
            }
            match nix::mount::mount(
                Some(source.as_str()),
                target.as_str(),
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            ) {
                Ok(()) => Outcome::Done(format!("bind-mounted {source} on {target}")),
                Err(e) => Outcome::Failed(format!("bind-mount {source} on {target}: {e}")),
            }
        }
        other => Outcome::Failed(format!("not a storage action: {other:?}")),
    }
}

/// A fresh mount is the filesystem we made and takes a write, or it is not used.
fn verify(path: &str, fstype: &str) -> Result<(), String> {
    let st = nix::sys::statfs::statfs(path).map_err(|e| format!("statfs: {e}"))?;
    if fstype == "xfs" && st.filesystem_type() != nix::sys::statfs::XFS_SUPER_MAGIC {
        return Err(format!("it is not xfs (filesystem magic {:#x})", st.filesystem_type().0));
    }
    let probe = Path::new(path).join(".nodeprep-write-test");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(b"nodeprep\n")?;
        f.sync_all()?;
        std::fs::remove_file(&probe)
    };
    write().map_err(|e| format!("writing {}: {e}", probe.display()))
}

fn prepare_bind_source(
    host: &Host,
    target: &str,
    source: &str,
    staging: &str,
) -> Result<String, String> {
    if Path::new(source).is_dir() {
        return Ok(format!("kept {source} (data from an earlier boot; the root volume's {target} stays hidden under the bind)"));
    }
    if Path::new(staging).exists() {
        // A copy that did not finish (crash, kill): start it again.
        std::fs::remove_dir_all(staging)
            .map_err(|e| format!("removing unfinished copy {staging}: {e}"))?;
    }
    let parent = |p: &str| {
        Path::new(p)
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into())
    };
    mkdirs(&parent(staging))?;
    let what = if Path::new(target).is_dir() {
        // cp -a keeps owners, modes, timestamps, links, xattrs (SELinux labels) and device nodes.
        cmd::run(host, "cp", &["-a", target, staging], Duration::from_secs(3600))
            .map_err(|e| e.to_string())?;
        format!("copied {target} to {source}")
    } else {
        mkdirs(target)?;
        std::fs::create_dir(staging).map_err(|e| format!("creating {staging}: {e}"))?;
        let _ = std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o755));
        format!("created {source} ({target} did not exist)")
    };
    mkdirs(&parent(source))?;
    std::fs::rename(staging, source).map_err(|e| format!("renaming {staging} to {source}: {e}"))?;
    // Tidy the staging tree's now-empty parents (remove_dir only removes empty directories).
    let mut dir = Path::new(staging).parent();
    while let Some(d) = dir.filter(|d| d.to_string_lossy().contains("/.nodeprep-staging")) {
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    if let Ok(d) = std::fs::File::open(parent(source)) {
        let _ = d.sync_all();
    }
    Ok(what)
}
