//! What storage sees now: the instance-store disks (or the configured devices) from
//! [`crate::host::block`], their md arrays, the mount table, with `probe` each disk's signatures and
//! the processes using the bind targets. Nothing is remembered between boots.

use std::path::Path;

use super::probe::{self, Content, Sample};
use super::{storage_device, Array, Disk, ObserveError, Snapshot, INSTANCE_STORE_MODEL, USERS};
use crate::config::StorageConfig;
use crate::host::mountinfo::{self, Mount};
use crate::host::{block, natural_cmp, proc, Host, Space};

/// What the device carries, and for a first md member what the array's data starts with.
fn probe_device(
    host: &Host,
    name: &str,
    size: u64,
) -> Result<(Content, Option<Content>), ObserveError> {
    let dev = format!("/dev/{name}");
    let read = |off, len| host.read_range(&dev, off, len).map_err(ObserveError::Probe);
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

/// One disk from its sysfs facts: whether someone else uses it (mounted, partitioned, the root
/// disk), and with `probe`, what it carries.
fn read_disk(
    host: &Host,
    dev: block::Device,
    cfg: &StorageConfig,
    mounts: &[Mount],
    probe: bool,
    errors: &mut Vec<ObserveError>,
) -> Disk {
    let name = dev.name.as_str();
    // Mounted by us (at the mount point or a bind target) is not "in use by someone else".
    let ours = |m: &Mount| {
        m.mount_point == cfg.mount_point.trim_end_matches('/')
            || cfg.bind.iter().any(|b| b.trim_end_matches('/') == m.mount_point)
    };
    let mounted_at = mounts.iter().filter(|m| !ours(m)).find(|m| {
        Some(m.dev) == dev.devnum
            || dev.partitions.iter().any(|(_, d)| *d == Some(m.dev))
            || m.source == format!("/dev/{name}")
            || dev.partitions.iter().any(|(p, _)| m.source == format!("/dev/{p}"))
    });
    let in_use = if let Some(m) = mounted_at {
        Some(if m.mount_point == "/" {
            "the root disk".to_string()
        } else {
            format!("mounted at {}", m.mount_point)
        })
    } else if !dev.partitions.is_empty() {
        let names: Vec<&str> = dev.partitions.iter().map(|(p, _)| p.as_str()).collect();
        Some(format!("partitioned ({})", names.join(", ")))
    } else {
        None
    };
    let mut disk = Disk {
        name: dev.name.clone(),
        serial: dev.serial,
        model: dev.model,
        size_bytes: dev.size_bytes,
        devnum: dev.devnum,
        holders: dev.holders,
        in_use,
        content: None,
        array_content: None,
    };
    if probe && disk.in_use.is_none() {
        match probe_device(host, &disk.name, disk.size_bytes) {
            Ok((c, a)) => {
                disk.content = Some(c);
                disk.array_content = a;
            }
            Err(e) => errors.push(e),
        }
    }
    disk
}

/// One md array holding our disks, and with `probe` (when it runs) what it starts with.
fn read_array(
    host: &Host,
    md: block::MdArray,
    probe: bool,
    errors: &mut Vec<ObserveError>,
) -> Array {
    let mut a = Array {
        name: md.name.clone(),
        devnum: md.devnum,
        state: md.state.clone(),
        level: md.level.clone(),
        raid_disks: md.raid_disks,
        members: md.members.clone(),
        content: None,
    };
    if probe && md.is_running() {
        match probe_device(host, &md.name, md.size_bytes) {
            Ok((c, _)) => a.content = Some(c),
            Err(e) => errors.push(e),
        }
    }
    a
}

/// Reads what storage needs. `probe`: also read each disk's first and last bytes for signatures
/// and list the processes using the bind targets (`boot` does; the check only when storage is not
/// in place, to say what boot refuses: a prepared node's disks are never read).
pub fn observe(host: &Host, cfg: &StorageConfig, probe: bool) -> Snapshot {
    let mut snap = Snapshot { explicit: !cfg.devices.is_empty(), ..Snapshot::default() };
    let table = mountinfo_path(host);
    match host.read_string(table) {
        Ok(text) => match mountinfo::parse(&text) {
            Ok(m) => snap.mounts = m,
            Err(e) => snap.errors.push(host.malformed(table, e.to_string()).into()),
        },
        Err(e) => snap.errors.push(e.into()),
    }
    let names = block::names(host).unwrap_or_else(|e| {
        snap.errors.push(e.into());
        Vec::new()
    });
    let mounts = snap.mounts.clone();
    let mut errors = Vec::new();
    if snap.explicit {
        for dev in &cfg.devices {
            // /dev/disk/by-id/... links resolve to the kernel name on a live host.
            let name = host
                .canonical_name(dev)
                .or_else(|| Path::new(dev).file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default();
            if !names.contains(&name) {
                let path = host.display(format!("{}/{name}", block::SYS_BLOCK));
                errors.push(ObserveError::NotABlockDevice { dev: dev.clone(), path });
                continue;
            }
            let d = block::device(host, &name, None);
            snap.disks.push(read_disk(host, d, cfg, &mounts, probe, &mut errors));
        }
    } else {
        for name in names.iter().filter(|n| block::is_nvme_namespace(n)) {
            let model = match block::model(host, name) {
                Ok(m) => m,
                Err(e) => {
                    errors.push(e.into());
                    continue;
                }
            };
            if model == INSTANCE_STORE_MODEL {
                let d = block::device(host, name, Some(model));
                snap.disks.push(read_disk(host, d, cfg, &mounts, probe, &mut errors));
            }
        }
        // Keyed by serial: the same disks give the same order, whatever names the kernel gave them.
        snap.disks
            .sort_by(|a, b| a.serial.cmp(&b.serial).then_with(|| natural_cmp(&a.name, &b.name)));
    }
    snap.md_names = names.iter().filter(|n| n.starts_with("md")).cloned().collect();
    let holders: Vec<String> = snap.disks.iter().flat_map(|d| d.holders.iter().cloned()).collect();
    for md in snap.md_names.clone() {
        let members = block::members(host, &md);
        if holders.contains(&md) || members.iter().any(|m| snap.disks.iter().any(|d| &d.name == m))
        {
            let array = block::md_array(host, &md, members);
            snap.arrays.push(read_array(host, array, probe, &mut errors));
        }
    }
    // Only a probing look (boot's) walks the processes: a check on a prepared node never does.
    if probe {
        snap.users = proc::named(host, USERS);
    }
    snap.links = cfg.bind.iter().filter_map(|t| host.resolve(t).map(|r| (t.clone(), r))).collect();
    snap.errors.extend(errors);
    snap.space = space(host, &snap, &cfg.mount_point);
    snap
}

/// The size of the filesystem at the mount point, when the mount point shows the instance store.
fn space(host: &Host, snap: &Snapshot, mount_point: &str) -> Option<Space> {
    let (_, devnum) = storage_device(snap)?;
    let devnum = devnum?;
    let top = mountinfo::top_at(&snap.mounts, mount_point)?;
    if top.dev != devnum || host.metadata(mount_point).ok()?.dev != devnum {
        return None;
    }
    host.statvfs(mount_point).ok()
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
