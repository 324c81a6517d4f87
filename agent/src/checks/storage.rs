//! `storage`: instance-store NVMe disks, their RAID0 array, the filesystem at the mount point and
//! the bind mounts onto it.
//!
//! [`observe`] reads everything once (sysfs, `/proc/1/mountinfo`, and, for `boot`, the first and last
//! bytes of each disk); both this check and the planner in `apply::storage` use it. Nothing is
//! remembered between boots: every decision comes from what the disks and the mount table show now.
//!
//! Host paths: `sys/block/<dev>/{dev,size,device/model,device/serial,holders/,<part>/partition}`,
//! `sys/block/md<N>/{dev,slaves/,md/array_state,md/level,md/raid_disks}`, `proc/1/mountinfo`
//! (`/proc/self/mountinfo` on the live host),
//! `dev/<dev>` (read only by `boot`), `proc/<pid>/comm` (is containerd or kubelet running?).

pub mod probe;

use std::path::{Path, PathBuf};

use self::probe::{Content, MdMember, Sample};
use super::{Check, Context};
use crate::config::{Mode, StorageConfig};
use crate::host::mountinfo::{self, Mount};
use crate::host::{natural_cmp, Host};
use crate::report::{CheckResult, Status};

/// The NVMe model string of EC2 instance-store disks (`sys/block/<dev>/device/model`).
pub const INSTANCE_STORE_MODEL: &str = "Amazon EC2 NVMe Instance Storage";
/// Our md array name and xfs label: what makes a disk "ours".
pub const NAME: &str = "nodeprep";
/// Processes that keep files open under the bind targets; binding over a directory they use hides
/// their live state.
pub const USERS: &[&str] = &["containerd", "kubelet", "soci-snapshotter-grpc", "dockerd"];

/// One disk nodeprep may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name: `nvme1n1`, `loop0`.
    pub name: String,
    pub serial: String,
    pub model: String,
    pub size_bytes: u64,
    /// `(major, minor)` from sysfs.
    pub devnum: Option<(u32, u32)>,
    /// Devices built on top of it (`md127`, `dm-0`).
    pub holders: Vec<String>,
    /// Why it must not be used (mounted, partitioned, the root disk); `None`: usable.
    pub in_use: Option<String>,
    /// What it carries (read only when probing, i.e. by `boot`).
    pub content: Option<Content>,
    /// For the first member of an md array: what the array's data area starts with.
    pub array_content: Option<Content>,
}

impl Disk {
    pub fn dev(&self) -> String {
        format!("/dev/{}", self.name)
    }

    /// The md superblock on it, if any.
    pub fn md(&self) -> Option<&MdMember> {
        match &self.content {
            Some(Content::Md(m)) => Some(m),
            _ => None,
        }
    }
}

/// An md array that holds at least one of the disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Array {
    /// `md127`
    pub name: String,
    pub devnum: Option<(u32, u32)>,
    /// `sys/block/mdN/md/array_state`: `clean`, `active`, `inactive`, ...
    pub state: String,
    pub level: String,
    pub raid_disks: u32,
    pub members: Vec<String>,
    /// What the array starts with (read only when probing).
    pub content: Option<Content>,
}

impl Array {
    pub fn dev(&self) -> String {
        format!("/dev/{}", self.name)
    }

    /// Running with every member: usable.
    pub fn is_running(&self) -> bool {
        matches!(
            self.state.as_str(),
            "clean" | "active" | "active-idle" | "read-auto" | "write-pending"
        ) && self.members.len() as u32 >= self.raid_disks
    }
}

/// Everything storage looks at.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Instance-store disks (or the configured devices), usable or not, ordered by serial.
    pub disks: Vec<Disk>,
    /// True when the disks come from `storage.devices`.
    pub explicit: bool,
    /// md arrays holding any of the disks.
    pub arrays: Vec<Array>,
    /// Every md device that exists (`md127`), to pick a free name.
    pub md_names: Vec<String>,
    pub mounts: Vec<Mount>,
    /// Running processes that use the bind targets: `(comm, pid)`.
    pub users: Vec<(String, u32)>,
    /// What could not be read; any of these stops `boot` from changing anything.
    pub errors: Vec<String>,
}

impl Snapshot {
    pub fn usable(&self) -> Vec<&Disk> {
        self.disks.iter().filter(|d| d.in_use.is_none()).collect()
    }

    /// The array holding a disk.
    pub fn array_of(&self, disk: &str) -> Option<&Array> {
        self.arrays.iter().find(|a| a.members.iter().any(|m| m == disk))
    }
}

fn parse_devnum(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Is `name` a whole NVMe namespace (`nvme1n1`, not the partition `nvme1n1p1` or controller `nvme1`)?
fn is_nvme_namespace(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("nvme") else { return false };
    let Some((ctrl, ns)) = rest.split_once('n') else { return false };
    !ctrl.is_empty()
        && !ns.is_empty()
        && ctrl.bytes().all(|c| c.is_ascii_digit())
        && ns.bytes().all(|c| c.is_ascii_digit())
}

/// What the device carries, and for a first md member what the array's data starts with.
fn probe_device(host: &Host, name: &str, size: u64) -> Result<(Content, Option<Content>), String> {
    let dev = format!("/dev/{name}");
    let read = |off, len| {
        host.read_range(&dev, off, len).map_err(|e| format!("{e} (looking for signatures)"))
    };
    let head = read(0, probe::HEAD_BYTES)?;
    let tail = read(size.saturating_sub(probe::TAIL_BYTES as u64), probe::TAIL_BYTES)?;
    let content = probe::probe(&Sample { head: &head, tail: &tail, size });
    let array_content = match &content {
        Content::Md(m) if m.role == Some(0) && m.data_offset > 0 => {
            let off = m.data_offset.saturating_mul(512);
            let data = read(off, probe::HEAD_BYTES)?;
            Some(probe::probe(&Sample { head: &data, tail: &[], size: size.saturating_sub(off) }))
        }
        _ => None,
    };
    Ok((content, array_content))
}

/// Reads one block device's facts from sysfs.
/// `model`: when the caller has read it already.
fn read_disk(
    host: &Host,
    name: &str,
    model: Option<String>,
    cfg: &StorageConfig,
    mounts: &[Mount],
    probe: bool,
    errors: &mut Vec<String>,
) -> Disk {
    let base = PathBuf::from("/sys/block").join(name);
    let attr = |rel: &str| host.read_attr_opt(base.join(rel)).ok().flatten().unwrap_or_default();
    let size_bytes = attr("size").parse::<u64>().unwrap_or(0).saturating_mul(512);
    let devnum = parse_devnum(&attr("dev"));
    let holders = host.list_dir_opt(base.join("holders")).unwrap_or_default();
    let entries = host.list_dir_opt(&base).unwrap_or_default();
    let partitions: Vec<String> = entries
        .into_iter()
        .filter(|e| e.starts_with(name) && host.exists(base.join(e).join("partition")))
        .collect();
    let part_devnums: Vec<(u32, u32)> = partitions
        .iter()
        .filter_map(|p| parse_devnum(&host.read_attr_opt(base.join(p).join("dev")).ok().flatten()?))
        .collect();
    // Mounted by us (at the mount point or a bind target) is not "in use by someone else".
    let ours = |m: &Mount| {
        m.mount_point == cfg.mount_point.trim_end_matches('/')
            || cfg.bind.iter().any(|b| b.trim_end_matches('/') == m.mount_point)
    };
    let mounted_at = mounts.iter().filter(|m| !ours(m)).find(|m| {
        Some(m.dev) == devnum
            || part_devnums.contains(&m.dev)
            || m.source == format!("/dev/{name}")
            || partitions.iter().any(|p| m.source == format!("/dev/{p}"))
    });
    let in_use = if let Some(m) = mounted_at {
        Some(if m.mount_point == "/" {
            "the root disk".to_string()
        } else {
            format!("mounted at {}", m.mount_point)
        })
    } else if !partitions.is_empty() {
        Some(format!("partitioned ({})", partitions.join(", ")))
    } else {
        None
    };
    let mut disk = Disk {
        name: name.to_string(),
        serial: attr("device/serial"),
        model: model.unwrap_or_else(|| attr("device/model")),
        size_bytes,
        devnum,
        holders,
        in_use,
        content: None,
        array_content: None,
    };
    if probe && disk.in_use.is_none() {
        match probe_device(host, name, size_bytes) {
            Ok((c, a)) => {
                disk.content = Some(c);
                disk.array_content = a;
            }
            Err(e) => errors.push(e),
        }
    }
    disk
}

fn read_array(
    host: &Host,
    name: &str,
    members: Vec<String>,
    probe: bool,
    errors: &mut Vec<String>,
) -> Array {
    let base = PathBuf::from("/sys/block").join(name);
    let attr = |rel: &str| host.read_attr_opt(base.join(rel)).ok().flatten().unwrap_or_default();
    let size = attr("size").parse::<u64>().unwrap_or(0).saturating_mul(512);
    let mut a = Array {
        name: name.to_string(),
        devnum: parse_devnum(&attr("dev")),
        state: attr("md/array_state"),
        level: attr("md/level"),
        raid_disks: attr("md/raid_disks").parse().unwrap_or(0),
        members,
        content: None,
    };
    if probe && a.is_running() {
        match probe_device(host, name, size) {
            Ok((c, _)) => a.content = Some(c),
            Err(e) => errors.push(e),
        }
    }
    a
}

/// Reads what storage needs. `probe`: also read each disk's first and last bytes for signatures
/// (`boot` does; the periodic check does not touch the disks).
pub fn observe(host: &Host, cfg: &StorageConfig, probe: bool) -> Snapshot {
    let mut snap = Snapshot { explicit: !cfg.devices.is_empty(), ..Snapshot::default() };
    let table = mountinfo_path(host);
    match host.read_string(table) {
        Ok(text) => match mountinfo::parse(&text) {
            Ok(m) => snap.mounts = m,
            Err(e) => snap.errors.push(format!("{}: {e}", host.path(table).display())),
        },
        Err(e) => snap.errors.push(e.to_string()),
    }
    let block = match host.list_dir_opt("/sys/block") {
        Ok(b) => b,
        Err(e) => {
            snap.errors.push(e.to_string());
            Vec::new()
        }
    };
    let mounts = snap.mounts.clone();
    let mut errors = Vec::new();
    if snap.explicit {
        for dev in &cfg.devices {
            // /dev/disk/by-id/... links resolve to the kernel name on a live host.
            let resolved = std::fs::canonicalize(host.path(dev)).ok();
            let name = resolved
                .as_deref()
                .and_then(Path::file_name)
                .or_else(|| Path::new(dev).file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !block.contains(&name) {
                errors.push(format!(
                    "storage.devices: {dev} is not a block device on this host (no {})",
                    host.path("/sys/block").join(&name).display()
                ));
                continue;
            }
            snap.disks.push(read_disk(host, &name, None, cfg, &mounts, probe, &mut errors));
        }
    } else {
        for name in block.iter().filter(|n| is_nvme_namespace(n)) {
            let model = host
                .read_attr_opt(format!("/sys/block/{name}/device/model"))
                .ok()
                .flatten()
                .unwrap_or_default();
            if model == INSTANCE_STORE_MODEL {
                snap.disks.push(read_disk(
                    host,
                    name,
                    Some(model),
                    cfg,
                    &mounts,
                    probe,
                    &mut errors,
                ));
            }
        }
        // Keyed by serial: the same disks give the same order, whatever names the kernel gave them.
        snap.disks
            .sort_by(|a, b| a.serial.cmp(&b.serial).then_with(|| natural_cmp(&a.name, &b.name)));
    }
    snap.md_names = block.iter().filter(|n| n.starts_with("md")).cloned().collect();
    let holders: Vec<String> = snap.disks.iter().flat_map(|d| d.holders.iter().cloned()).collect();
    for md in snap.md_names.clone() {
        let members = host.list_dir_opt(format!("/sys/block/{md}/slaves")).unwrap_or_default();
        if holders.contains(&md) || members.iter().any(|m| snap.disks.iter().any(|d| &d.name == m))
        {
            snap.arrays.push(read_array(host, &md, members, probe, &mut errors));
        }
    }
    // Only boot binds; the periodic check does not walk (or even list) every process.
    if let Ok(procs) = if probe { host.list_dir_opt("/proc") } else { Ok(Vec::new()) } {
        for pid in procs.iter().filter_map(|p| p.parse::<u32>().ok()) {
            if let Ok(Some(comm)) = host.read_attr_opt(format!("/proc/{pid}/comm")) {
                if USERS.contains(&comm.as_str()) {
                    snap.users.push((comm, pid));
                }
            }
        }
    }
    snap.errors.extend(errors);
    snap
}

/// The mount table to read: on the live host our own (`/proc/self/mountinfo`: the namespace our
/// mounts go into, the host's under systemd); under another root, its init's (`proc/1/mountinfo`: a
/// fixture tree, or the host seen from a DaemonSet).
pub fn mountinfo_path(host: &Host) -> &'static str {
    if host.is_live() {
        "/proc/self/mountinfo"
    } else {
        "/proc/1/mountinfo"
    }
}

/// Waits (up to `storage.wait_seconds`) until `want` disks are visible: NVMe namespaces can appear
/// seconds after boot starts, and acting on 7 of 8 disks would build the wrong array. Returns how
/// many were found.
pub fn wait_for_disks(host: &Host, cfg: &StorageConfig, want: usize) -> usize {
    let started = std::time::Instant::now();
    let deadline = std::time::Duration::from_secs(cfg.wait_seconds);
    let mut last_log = started;
    loop {
        let found = observe(host, cfg, false).disks.len();
        if found >= want || started.elapsed() >= deadline || !host.is_live() {
            if found < want {
                tracing::warn!(
                    found,
                    want,
                    waited_s = started.elapsed().as_secs(),
                    "not every instance-store disk appeared"
                );
            } else if started.elapsed().as_millis() > 0 {
                tracing::info!(
                    found,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "instance-store disks present"
                );
            }
            return found;
        }
        if last_log.elapsed() >= std::time::Duration::from_secs(5) {
            tracing::info!(
                found,
                want,
                waited_s = started.elapsed().as_secs(),
                "waiting for instance-store disks to appear"
            );
            last_log = std::time::Instant::now();
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Whether storage is wanted on this node: `never`, `always`, or `auto` = when instance-store disks
/// (or configured devices) exist.
pub fn enabled(cfg: &StorageConfig, snap: &Snapshot) -> bool {
    match cfg.enabled {
        Mode::Never => false,
        Mode::Always => true,
        Mode::Auto => !snap.disks.is_empty(),
    }
}

/// Where a bind target's data lives on the instance store: the same path under the mount point
/// (`/var/lib/containerd` → `/mnt/nodeprep/var/lib/containerd`), so names never collide and a
/// person can find it.
pub fn bind_source(mount_point: &str, target: &str) -> String {
    format!("{}/{}", mount_point.trim_end_matches('/'), target.trim_start_matches('/'))
}

/// Bind targets, parents before children (a child bound first would be hidden by its parent).
pub fn bind_order(targets: &[String]) -> Vec<String> {
    let mut t = targets.to_vec();
    t.sort_by_key(|p| p.trim_end_matches('/').matches('/').count());
    t
}

/// The device the instance store is mounted from, once prepared: the running array holding the
/// disks, or the single disk.
pub fn storage_device(snap: &Snapshot) -> Option<(String, Option<(u32, u32)>)> {
    let usable = snap.usable();
    if usable.len() == 1 && snap.array_of(&usable[0].name).is_none() {
        return Some((usable[0].dev(), usable[0].devnum));
    }
    usable.iter().find_map(|d| snap.array_of(&d.name)).map(|a| (a.dev(), a.devnum))
}

/// Is `target` bind-mounted from `dev` (the right directory of it)?
pub fn bind_in_place(snap: &Snapshot, devnum: Option<(u32, u32)>, target: &str) -> bool {
    match (mountinfo::top_at(&snap.mounts, target), devnum) {
        (Some(m), Some(d)) => m.dev == d && m.root == target,
        _ => false,
    }
}

/// Bytes of the filesystem at `path` (total, available), when `path` really shows the device
/// `devnum` (a fixture tree or a DaemonSet without mount propagation shows something else).
fn capacity(host: &Host, path: &str, devnum: (u32, u32)) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let p = host.path(path);
    let st = std::fs::metadata(&p).ok()?;
    let dev = st.dev();
    if (libc::major(dev), libc::minor(dev)) != devnum {
        return None;
    }
    let s = nix::sys::statvfs::statvfs(&p).ok()?;
    let frsize = s.fragment_size() as u64;
    Some((s.blocks() as u64 * frsize, s.blocks_available() as u64 * frsize))
}

pub struct Storage;

impl Check for Storage {
    fn name(&self) -> &'static str {
        "storage"
    }

    fn required(&self, ctx: &Context) -> bool {
        match ctx.config.storage.enabled {
            Mode::Never => false,
            Mode::Always => true,
            Mode::Auto => {
                ctx.expected.instance_store_disks.is_some_and(|n| n > 0)
                    || !ctx.config.storage.devices.is_empty()
            }
        }
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        let cfg = &ctx.config.storage;
        let snap = observe(&ctx.host, cfg, false);
        evaluate(
            &ctx.host,
            &snap,
            cfg,
            if snap.explicit {
                Some(cfg.devices.len() as u32)
            } else {
                ctx.expected.instance_store_disks
            },
        )
        .required(self.required(ctx))
    }
}

/// The check's verdict on a snapshot.
pub fn evaluate(
    host: &Host,
    snap: &Snapshot,
    cfg: &StorageConfig,
    expected: Option<u32>,
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
        return mk(Status::Fail, format!("could not look: {}", snap.errors.join("; ")))
            .found("mounted", false)
            .remedy("run nodeprep as root; see the error for the file that could not be read");
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
    if usable.len() >= 2 {
        match usable.iter().find_map(|d| snap.array_of(&d.name)) {
            None => problems.push(format!("no RAID0 array assembled from {} disks", usable.len())),
            Some(a) => {
                array_json = serde_json::json!({"device": a.dev(), "state": a.state, "level": a.level,
                    "members": a.members.len(), "raid_disks": a.raid_disks});
                if !a.is_running() {
                    problems.push(format!(
                        "{} is {} with {} of {} members (degraded)",
                        a.dev(),
                        a.state,
                        a.members.len(),
                        a.raid_disks
                    ));
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
    let cap = if mounted { devnum.and_then(|d| capacity(host, mp, d)) } else { None };
    if let Some((total, avail)) = cap {
        result_found.push(("usable_bytes", serde_json::json!(total)));
        result_found.push(("available_bytes", serde_json::json!(avail)));
        // xfs keeps 1–2 % of a large filesystem (its log is at most 2 GiB); much less than the disks
        // means the filesystem does not span them all (an old, smaller array or partition).
        if raw.saturating_sub(total) > (raw / 10).max(1 << 30) {
            warnings.push(format!("{} usable of {} raw", human(total), human(raw)));
        }
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
    for (k, v) in result_found {
        r = r.found(k, v);
    }
    if status == Status::Fail {
        r = r.remedy(if snap.disks.len() < expected.unwrap_or(0) as usize {
            "an instance-store disk is missing: stop and start the instance (moves it to healthy hardware); instance-store data does not survive".to_string()
        } else {
            "run `nodeprep boot --dry-run` to see what would be done, then `nodeprep boot` (or restart nodeprep-boot.service); `cat /proc/mdstat` and `findmnt` show the current state".to_string()
        });
    }
    r
}

/// Bytes for a person: `30.0 TB`.
pub fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvme_namespaces_only() {
        for (n, want) in [
            ("nvme1n1", true),
            ("nvme10n2", true),
            ("nvme1n1p1", false),
            ("nvme1", false),
            ("nvmen1", false),
            ("sda", false),
        ] {
            assert_eq!(is_nvme_namespace(n), want, "{n}");
        }
    }

    #[test]
    fn binds_go_parent_first_and_mirror_their_path() {
        let t: Vec<String> = ["/var/lib/kubelet/pods", "/var/log/pods", "/var/lib/kubelet"]
            .map(String::from)
            .to_vec();
        assert_eq!(bind_order(&t), ["/var/log/pods", "/var/lib/kubelet", "/var/lib/kubelet/pods"]);
        assert_eq!(
            bind_source("/mnt/nodeprep/", "/var/lib/containerd"),
            "/mnt/nodeprep/var/lib/containerd"
        );
    }

    #[test]
    fn sizes_read_like_disk_labels() {
        assert_eq!(human(3_840_000_000_000), "3.8 TB");
        assert_eq!(human(512), "512 B");
    }
}
