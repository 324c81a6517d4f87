//! `storage`: instance-store NVMe disks, their RAID0 array, the filesystem at the mount point and
//! the bind mounts onto it; and `boot`'s plan to make them so.
//!
//! [`observe`] reads everything once (sysfs, the mount table, and, for `boot`, the first and last
//! bytes of each disk); [`evaluate`] (the check) and [`plan`] (`boot`) decide from it. When storage
//! is not in place the check also asks the planner ([`BootWould`]), so that it names what `boot`
//! refuses (a foreign filesystem on a disk) in boot's words. Every decision comes from what the
//! disks and the mount table show now.
//!
//! Host paths: `sys/block/<dev>/{dev,size,device/model,device/serial,holders/,<part>/partition}`,
//! `sys/block/md<N>/{dev,slaves/,md/array_state,md/level,md/raid_disks}`, `proc/1/mountinfo`
//! (`/proc/self/mountinfo` on the live host), `dev/<dev>` (read by `boot`, and by the check only
//! when storage is not in place), `proc/<pid>/comm` (is containerd or kubelet running?).

mod evaluate;
mod observe;
mod plan;
pub mod probe;

pub use evaluate::evaluate;
pub use observe::{mountinfo_path, observe, wait_for_disks};
pub use plan::{plan, refusal, CHUNK_KIB, MOUNT_OPTIONS};

use self::probe::{Content, MdMember};
use super::{Check, Context, Registration, When};
use crate::config::{Mode, StorageConfig};
use crate::host::mountinfo::{self, Mount};
use crate::host::{block, Host, HostError, Space};
use crate::report::{CheckResult, MetricDef, MetricKind, Status};

/// The NVMe model string of EC2 instance-store disks (`sys/block/<dev>/device/model`).
pub const INSTANCE_STORE_MODEL: &str = "Amazon EC2 NVMe Instance Storage";
/// Our md array name and xfs label: what makes a disk "ours".
pub const NAME: &str = "nodeprep";
/// Processes that keep files open under the bind targets; binding over a directory they use hides
/// their live state.
pub const USERS: &[&str] = &["containerd", "kubelet", "soci-snapshotter-grpc", "dockerd"];

/// What storage could not see; any of these stops `boot` from changing anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("storage.devices: {dev} is not a block device on this host (no {path})")]
    NotABlockDevice { dev: String, path: String },
    #[error("{0} (looking for signatures)")]
    Probe(HostError),
}

impl ObserveError {
    /// The host read that failed, if that is what it was.
    pub fn host(&self) -> Option<&HostError> {
        match self {
            ObserveError::Host(e) | ObserveError::Probe(e) => Some(e),
            ObserveError::NotABlockDevice { .. } => None,
        }
    }
}

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
    /// What it carries (read only when probing: by `boot`, and by the check when storage is not
    /// in place).
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
        block::md_running(&self.state, self.members.len(), self.raid_disks)
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
    /// Bind targets with a symbolic link on the way, and where they lead.
    pub links: Vec<(String, crate::host::Resolved)>,
    /// Running processes that use the bind targets: `(comm, pid)`.
    pub users: Vec<(String, u32)>,
    /// Size and free space of the filesystem at the mount point, when it really shows the
    /// instance store (a fixture tree or a DaemonSet without mount propagation shows something
    /// else).
    pub space: Option<Space>,
    /// What could not be read; any of these stops `boot` from changing anything.
    pub errors: Vec<ObserveError>,
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

/// What `boot`'s planner says about the disks as they are now. The check asks it only when storage
/// is not in place: the question costs a read of each disk's first and last bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootWould {
    /// Not asked: storage is in place, or the check could not look.
    NotAsked,
    /// Prepare storage: nothing on the disks stops it.
    Proceed,
    /// Refuse, in boot's words ([`refusal`]).
    Refuse(String),
    /// Not known: the disks' signatures could not be read (a container the device cgroup keeps
    /// from opening the disks).
    Unknown(String),
}

impl BootWould {
    /// Asks the planner on a snapshot with the disks' signatures (as `boot` takes it).
    pub fn ask(host: &Host, cfg: &StorageConfig) -> BootWould {
        let probed = observe(host, cfg, true);
        if !probed.errors.is_empty() {
            let errors: Vec<String> = probed.errors.iter().map(ToString::to_string).collect();
            return BootWould::Unknown(errors.join("; "));
        }
        match refusal(&probed, cfg) {
            Some(message) => BootWould::Refuse(message),
            None => BootWould::Proceed,
        }
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

const fn gauge(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef { name, help, kind: MetricKind::Gauge, labels: &[] }
}
pub static STORAGE_DISKS: MetricDef =
    gauge("storage_disks", "Instance-store disks found (the storage check's found.disks)");
pub static STORAGE_DISKS_EXPECTED: MetricDef = gauge(
    "storage_disks_expected",
    "Instance-store disks this node must have (the storage check's expected.disks; absent when unknown)",
);
pub static STORAGE_MOUNTED: MetricDef = gauge(
    "storage_mounted",
    "1 when the instance store is mounted at storage.mount_point (the storage check's found.mounted)",
);
pub static STORAGE_USABLE_BYTES: MetricDef = gauge(
    "storage_usable_bytes",
    "Size of the instance-store filesystem (absent unless the mount point shows it)",
);
pub static STORAGE_AVAILABLE_BYTES: MetricDef = gauge(
    "storage_available_bytes",
    "Free space on the instance-store filesystem (absent unless the mount point shows it)",
);

/// The `storage` check's line in the registry.
pub static REGISTRATION: Registration = Registration {
    name: "storage",
    when: When::EveryRun,
    start_rank: 2,
    about: "instance-store NVMe RAID0, its mount and binds, or why boot refuses them",
    metrics: &[
        &STORAGE_DISKS,
        &STORAGE_DISKS_EXPECTED,
        &STORAGE_MOUNTED,
        &STORAGE_USABLE_BYTES,
        &STORAGE_AVAILABLE_BYTES,
    ],
    check: &Storage,
};

pub struct Storage;

impl Check for Storage {
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
        let expected = if snap.explicit {
            Some(cfg.devices.len() as u32)
        } else {
            ctx.expected.instance_store_disks
        };
        let mut r = evaluate(&snap, cfg, expected, &BootWould::NotAsked);
        // Not in place: say why boot did not (or will not) build it, by boot's own rules. A prepared
        // node never reads its disks.
        if r.status == Status::Fail && snap.errors.is_empty() && cfg.enabled != Mode::Never {
            r = evaluate(&snap, cfg, expected, &BootWould::ask(&ctx.host, cfg));
        }
        r.required(self.required(ctx))
    }
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
