//! Block devices as sysfs shows them: `sys/block/<dev>/{dev,size,device/model,device/serial,
//! holders/,<part>/partition}`, and md arrays: `sys/block/md<N>/{dev,size,slaves/,md/array_state,
//! md/level,md/raid_disks}`. md arrays are found here, never through `/dev/md/<name>` links (udev
//! makes those, and may not have run yet).

use std::path::PathBuf;

use super::{Host, HostResult};

pub const SYS_BLOCK: &str = "/sys/block";

/// The names under `sys/block` (`nvme1n1`, `md127`, `loop0`), in natural order.
pub fn names(host: &Host) -> HostResult<Vec<String>> {
    host.list_dir_opt(SYS_BLOCK)
}

/// `MAJOR:MINOR` → `(major, minor)`.
pub fn parse_devnum(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Is `name` a whole NVMe namespace (`nvme1n1`, not the partition `nvme1n1p1` or controller
/// `nvme1`)?
pub fn is_nvme_namespace(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("nvme") else { return false };
    let Some((ctrl, ns)) = rest.split_once('n') else { return false };
    !ctrl.is_empty()
        && !ns.is_empty()
        && ctrl.bytes().all(|c| c.is_ascii_digit())
        && ns.bytes().all(|c| c.is_ascii_digit())
}

/// One block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub serial: String,
    pub model: String,
    pub size_bytes: u64,
    pub devnum: Option<(u32, u32)>,
    /// Devices built on top of it (`md127`, `dm-0`).
    pub holders: Vec<String>,
    /// Its partitions and their device numbers.
    pub partitions: Vec<(String, Option<(u32, u32)>)>,
}

fn base(name: &str) -> PathBuf {
    PathBuf::from(SYS_BLOCK).join(name)
}

/// An attribute of a block device, empty when absent or unreadable (sysfs attributes of a device
/// that is going away).
fn attr(host: &Host, name: &str, rel: &str) -> String {
    host.read_attr_opt(base(name).join(rel)).ok().flatten().unwrap_or_default()
}

/// The NVMe model of a device (`device/model`): `Amazon EC2 NVMe Instance Storage` on instance
/// store; empty when the device has none. A model that exists and cannot be read is an error (a
/// disk whose model cannot be read might be instance store: not knowing is not "no").
pub fn model(host: &Host, name: &str) -> super::HostResult<String> {
    host.read_attr_opt(base(name).join("device/model")).map(Option::unwrap_or_default)
}

/// Reads one block device. `model`: when the caller has read it already.
pub fn device(host: &Host, name: &str, model: Option<String>) -> Device {
    let dir = base(name);
    let partitions = host
        .list_dir_opt(&dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.starts_with(name) && host.exists(dir.join(e).join("partition")))
        .map(|p| {
            let devnum = parse_devnum(&attr(host, &format!("{name}/{p}"), "dev"));
            (p, devnum)
        })
        .collect();
    Device {
        name: name.to_string(),
        serial: attr(host, name, "device/serial"),
        model: model.unwrap_or_else(|| attr(host, name, "device/model")),
        size_bytes: attr(host, name, "size").parse::<u64>().unwrap_or(0).saturating_mul(512),
        devnum: parse_devnum(&attr(host, name, "dev")),
        holders: host.list_dir_opt(dir.join("holders")).unwrap_or_default(),
        partitions,
    }
}

/// An md array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdArray {
    /// `md127`
    pub name: String,
    pub devnum: Option<(u32, u32)>,
    /// `md/array_state`: `clean`, `active`, `inactive`, ...
    pub state: String,
    pub level: String,
    pub raid_disks: u32,
    /// The member devices (`slaves/`).
    pub members: Vec<String>,
    pub size_bytes: u64,
}

impl MdArray {
    /// Running with every member: usable.
    pub fn is_running(&self) -> bool {
        md_running(&self.state, self.members.len(), self.raid_disks)
    }
}

/// Whether an md array in `state` (`md/array_state`) with `members` of its `raid_disks` runs with
/// every member.
pub fn md_running(state: &str, members: usize, raid_disks: u32) -> bool {
    matches!(state, "clean" | "active" | "active-idle" | "read-auto" | "write-pending")
        && members as u32 >= raid_disks
}

/// The member devices of md array `name`.
pub fn members(host: &Host, name: &str) -> Vec<String> {
    host.list_dir_opt(base(name).join("slaves")).unwrap_or_default()
}

/// Reads md array `name` whose members are `members`.
pub fn md_array(host: &Host, name: &str, members: Vec<String>) -> MdArray {
    MdArray {
        name: name.to_string(),
        devnum: parse_devnum(&attr(host, name, "dev")),
        state: attr(host, name, "md/array_state"),
        level: attr(host, name, "md/level"),
        raid_disks: attr(host, name, "md/raid_disks").parse().unwrap_or(0),
        members,
        size_bytes: attr(host, name, "size").parse::<u64>().unwrap_or(0).saturating_mul(512),
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
    fn a_disk_its_partition_and_an_array() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, c: &str| {
            let p = dir.path().join("sys/block").join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        w("nvme0n1/dev", "259:0\n");
        w("nvme0n1/size", "16\n");
        w("nvme0n1/device/model", "Amazon Elastic Block Store\n");
        w("nvme0n1/nvme0n1p1/partition", "1\n");
        w("nvme0n1/nvme0n1p1/dev", "259:1\n");
        w("nvme1n1/holders/md127", "");
        w("md127/dev", "9:127\n");
        w("md127/md/array_state", "clean\n");
        w("md127/md/raid_disks", "1\n");
        w("md127/slaves/nvme1n1", "");
        let host = Host::new(dir.path());
        let d = device(&host, "nvme0n1", None);
        assert_eq!((d.size_bytes, d.devnum), (8192, Some((259, 0))));
        assert_eq!(d.model, "Amazon Elastic Block Store");
        assert_eq!(d.partitions, [("nvme0n1p1".to_string(), Some((259, 1)))]);
        assert_eq!(device(&host, "nvme1n1", None).holders, ["md127"]);
        let a = md_array(&host, "md127", members(&host, "md127"));
        assert!(a.is_running(), "{a:?}");
        assert_eq!(a.devnum, Some((9, 127)));
        assert_eq!(names(&host).unwrap(), ["md127", "nvme0n1", "nvme1n1"]);
    }
}
