//! Finding the process of a systemd service: its cgroup first, a walk of `/proc` only when the
//! cgroup is not there.
//!
//! A walk reads `/proc/<pid>/comm` for every process: a few on a fixture tree, but hundreds on a
//! busy Kubernetes node, and `serve` asks every interval. The service's cgroup lists its processes in
//! one read (`cgroup.procs` under the unified hierarchy, or under the v1 `systemd` one). systemd
//! removes the cgroup of a stopped service, so a missing cgroup means "not running, or not run by
//! systemd": only then is `/proc` walked, so a process started by hand is still found.

use super::Host;

/// Where systemd keeps `system.slice`: the unified (v2) hierarchy, then the v1 `systemd` one.
const SLICES: &[&str] = &["/sys/fs/cgroup/system.slice", "/sys/fs/cgroup/systemd/system.slice"];

/// How a process was found (shown in reports and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Listed in the unit's `cgroup.procs`.
    Cgroup,
    /// By reading every `/proc/<pid>/comm`.
    Walk,
}

impl Found {
    pub fn as_str(self) -> &'static str {
        match self {
            Found::Cgroup => "cgroup",
            Found::Walk => "process",
        }
    }
}

/// The `cgroup.procs` path of `unit` that exists under the root, if any.
pub fn unit_cgroup(host: &Host, unit: &str) -> Option<String> {
    SLICES.iter().map(|s| format!("{s}/{unit}/cgroup.procs")).find(|p| host.exists(p))
}

/// The first process (lowest pid) whose `comm` satisfies `is_it`: among the processes of `unit`'s
/// cgroup when systemd has one, else among all processes. A process that ends while it is looked at
/// is simply not found.
pub fn find(host: &Host, unit: &str, is_it: impl Fn(&str) -> bool) -> Option<(u32, Found)> {
    let comm_is = |pid: u32| host.read_attr(format!("/proc/{pid}/comm")).is_ok_and(|c| is_it(&c));
    if let Some(procs) = unit_cgroup(host, unit) {
        if let Ok(text) = host.read_string(&procs) {
            let mut pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            pids.sort_unstable();
            return pids.into_iter().find(|&p| comm_is(p)).map(|p| (p, Found::Cgroup));
        }
    }
    walk(host, is_it).map(|p| (p, Found::Walk))
}

/// The lowest pid among all processes whose `comm` satisfies `is_it` (one read per process).
pub fn walk(host: &Host, is_it: impl Fn(&str) -> bool) -> Option<u32> {
    let mut pids: Vec<u32> = host
        .list_dir_opt("/proc")
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|&p| host.read_attr(format!("/proc/{p}/comm")).is_ok_and(|c| is_it(&c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        let host = Host::new(dir.path());
        (dir, host)
    }

    #[test]
    fn the_cgroup_is_read_instead_of_every_process() {
        // 900 (a shim, listed first) and 120 are containerd.service's; 50 is another containerd
        // outside the unit, which the cgroup answer does not see.
        let (_d, host) = tree(&[
            ("sys/fs/cgroup/system.slice/containerd.service/cgroup.procs", "900\n120\n"),
            ("proc/50/comm", "containerd\n"),
            ("proc/120/comm", "containerd\n"),
            ("proc/900/comm", "containerd-shim\n"),
        ]);
        assert_eq!(
            find(&host, "containerd.service", |c| c == "containerd"),
            Some((120, Found::Cgroup))
        );
    }

    #[test]
    fn an_empty_cgroup_means_not_running() {
        let (_d, host) = tree(&[
            ("sys/fs/cgroup/system.slice/containerd.service/cgroup.procs", ""),
            ("proc/50/comm", "containerd\n"),
        ]);
        assert_eq!(find(&host, "containerd.service", |c| c == "containerd"), None);
    }

    #[test]
    fn cgroup_v1_systemd_hierarchy() {
        let (_d, host) = tree(&[
            ("sys/fs/cgroup/systemd/system.slice/containerd.service/cgroup.procs", "77\n"),
            ("proc/77/comm", "containerd\n"),
        ]);
        assert_eq!(
            find(&host, "containerd.service", |c| c == "containerd"),
            Some((77, Found::Cgroup))
        );
    }

    #[test]
    fn without_a_cgroup_every_process_is_looked_at_in_pid_order() {
        let (_d, host) = tree(&[
            ("proc/1000/comm", "containerd\n"),
            ("proc/99/comm", "containerd\n"),
            ("proc/5/comm", "systemd\n"),
            ("proc/self/comm", "containerd\n"),
        ]);
        assert_eq!(
            find(&host, "containerd.service", |c| c == "containerd"),
            Some((99, Found::Walk))
        );
        assert_eq!(find(&host, "kubelet.service", |c| c == "kubelet"), None);
    }

    #[test]
    fn a_listed_process_that_is_gone_is_not_found() {
        let (_d, host) =
            tree(&[("sys/fs/cgroup/system.slice/containerd.service/cgroup.procs", "4242\n")]);
        assert_eq!(find(&host, "containerd.service", |c| c == "containerd"), None);
    }
}
