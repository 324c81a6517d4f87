//! Processes and the `/proc` formats nodeprep reads: finding the process of a systemd service (its
//! cgroup first, a walk of `/proc` only when the cgroup is not there), its soft limits
//! (`/proc/<pid>/limits`) and when it started (`/proc/<pid>/stat` and `/proc/stat`).
//!
//! procfs-core parses `limits` and `stat` from the bytes the seam read. Its parsers index into
//! lines they expect to be well formed (a short line panics), so each file is first checked to
//! have the kernel's shape; anything else is [`ErrorKind::Malformed`](super::ErrorKind), never a
//! panic. (Mount tables are read by [`super::mountinfo`]: procfs-core leaves the kernel's octal
//! escapes in paths.)
//!
//! A walk reads `/proc/<pid>/comm` for every process: a few on a fixture tree, but hundreds on a
//! busy Kubernetes node, and `serve` asks every interval. The service's cgroup lists its processes in
//! one read (`cgroup.procs` under the unified hierarchy, or under the v1 `systemd` one). systemd
//! removes the cgroup of a stopped service, so a missing cgroup means "not running, or not run by
//! systemd": only then is `/proc` walked, so a process started by hand is still found.

use std::time::{Duration, SystemTime};

use procfs_core::process::{LimitValue, Limits, Stat};
use procfs_core::{FromBufRead, FromRead};

use super::{FormatError, Host, HostResult};

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

/// The `comm` of every process whose `comm` is one of `names`, with its pid, in pid order.
pub fn named(host: &Host, names: &[&str]) -> Vec<(String, u32)> {
    let mut pids: Vec<u32> = host
        .list_dir_opt("/proc")
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter()
        .filter_map(|pid| {
            let comm = host.read_attr_opt(format!("/proc/{pid}/comm")).ok().flatten()?;
            names.contains(&comm.as_str()).then_some((comm, pid))
        })
        .collect()
}

/// A soft resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    Unlimited,
    Bytes(u64),
}

/// The soft limits of a process that nodeprep looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftLimits {
    pub memlock: Rlimit,
    pub stack: Rlimit,
}

/// Parses the text of `/proc/<pid>/limits`. `Err` says what is wrong with it.
pub fn parse_limits(text: &str) -> Result<SoftLimits, FormatError> {
    // Every row the kernel writes has its name, a soft and a hard value, and (but for the two
    // priority rows) a unit: at least four words. procfs-core indexes from the end of each row.
    if let Some(short) = text.lines().skip(1).find(|l| l.split_whitespace().count() < 4) {
        return Err(FormatError(format!("not a limits row: {:?}", short.trim())));
    }
    if !text.starts_with("Limit") {
        return Err(FormatError("no \"Limit  Soft Limit  Hard Limit  Units\" header".into()));
    }
    let limits = Limits::from_buf_read(text.as_bytes()).map_err(|e| FormatError(e.to_string()))?;
    let soft = |l: LimitValue| match l {
        LimitValue::Unlimited => Rlimit::Unlimited,
        LimitValue::Value(b) => Rlimit::Bytes(b),
    };
    Ok(SoftLimits {
        memlock: soft(limits.max_locked_memory.soft_limit),
        stack: soft(limits.max_stack_size.soft_limit),
    })
}

/// A soft and a hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub soft: Rlimit,
    pub hard: Rlimit,
}

/// The limits a pod's process shows: memlock and stack (bytes), open files (count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodLimits {
    pub memlock: Pair,
    pub stack: Pair,
    pub nofile: Pair,
}

/// Parses `/proc/<pid>/limits` for soft and hard memlock, stack and open files.
pub fn parse_pod_limits(text: &str) -> Result<PodLimits, FormatError> {
    parse_limits(text)?;
    let limits = Limits::from_buf_read(text.as_bytes()).map_err(|e| FormatError(e.to_string()))?;
    let v = |l: LimitValue| match l {
        LimitValue::Unlimited => Rlimit::Unlimited,
        LimitValue::Value(b) => Rlimit::Bytes(b),
    };
    let pair =
        |l: procfs_core::process::Limit| Pair { soft: v(l.soft_limit), hard: v(l.hard_limit) };
    Ok(PodLimits {
        memlock: pair(limits.max_locked_memory),
        stack: pair(limits.max_stack_size),
        nofile: pair(limits.max_open_files),
    })
}

/// [`parse_pod_limits`] of process `pid`.
pub fn pod_limits(host: &Host, pid: u32) -> HostResult<PodLimits> {
    let file = format!("/proc/{pid}/limits");
    let text = host.read_string(&file)?;
    parse_pod_limits(&text).map_err(|why| host.malformed(&file, why.0))
}

/// The soft limits of process `pid`.
pub fn limits(host: &Host, pid: u32) -> HostResult<SoftLimits> {
    let file = format!("/proc/{pid}/limits");
    let text = host.read_string(&file)?;
    parse_limits(&text).map_err(|why| host.malformed(&file, why.0))
}

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ: 100 on every Linux architecture
/// EC2 runs).
const TICKS_PER_SECOND: u64 = 100;

/// The start of process `pid` in clock ticks after boot (field 22 of `/proc/<pid>/stat`).
pub fn parse_start_ticks(stat: &str) -> Result<u64, FormatError> {
    // procfs-core slices around the parenthesised command name: "PID (COMM) S ...".
    let t = stat.trim();
    let (open, close) = (t.find('('), t.rfind(')'));
    match (open, close) {
        (Some(o), Some(c)) if o >= 2 && c > o && t[c..].starts_with(") ") && t.len() > c + 2 => {}
        _ => return Err(FormatError("not \"PID (COMM) STATE ...\"".into())),
    }
    Stat::from_read(t.as_bytes()).map(|s| s.starttime).map_err(|e| FormatError(e.to_string()))
}

/// When a process started, and how far off that may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The earliest the process can have started.
    pub at: SystemTime,
    /// It started in `[at, at + within]`.
    pub within: Duration,
}

/// When process `pid` started: the boot time plus its start in clock ticks after boot (10 ms
/// steps). `/proc/stat`'s `btime` is whole seconds, so it is used only for a tree that is not this
/// kernel's (a fixture), with a second of uncertainty; this kernel's boot time comes from its clocks
/// (`CLOCK_REALTIME - CLOCK_BOOTTIME`, nanoseconds), so a spec written 10 ms before containerd
/// started is told apart from one written after it.
pub fn start_time(host: &Host, pid: u32) -> HostResult<Started> {
    let file = format!("/proc/{pid}/stat");
    let ticks =
        parse_start_ticks(&host.read_string(&file)?).map_err(|why| host.malformed(&file, why.0))?;
    let tick = Duration::from_millis(1000 / TICKS_PER_SECOND);
    let since_boot = Duration::from_millis(ticks.saturating_mul(1000 / TICKS_PER_SECOND));
    let Started { at: boot, within } = booted(host)?;
    Ok(Started { at: boot + since_boot, within: within + tick })
}

/// When the host booted: this kernel's clocks when the root's `/proc` is this kernel's (its
/// `btime` agrees to the second), else `/proc/stat`'s `btime` with a second of uncertainty.
pub fn booted(host: &Host) -> HostResult<Started> {
    let stat = host.read_string("/proc/stat")?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| host.malformed("/proc/stat", "no \"btime N\" line"))?;
    Ok(match this_kernels_boot() {
        Some(b)
            if b.duration_since(SystemTime::UNIX_EPOCH)
                .is_ok_and(|d| d.as_secs().abs_diff(btime) <= 1) =>
        {
            Started { at: b, within: Duration::ZERO }
        }
        _ => Started {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(btime),
            within: Duration::from_secs(1),
        },
    })
}

/// This kernel's boot time to the nanosecond: `CLOCK_REALTIME - CLOCK_BOOTTIME` (what the kernel
/// rounds down to whole seconds for `btime`).
fn this_kernels_boot() -> Option<SystemTime> {
    use rustix::time::{clock_gettime, ClockId};
    let d = |t: rustix::time::Timespec| {
        Duration::new(u64::try_from(t.tv_sec).ok()?, u32::try_from(t.tv_nsec).ok()?).into()
    };
    let since_boot: Option<Duration> = d(clock_gettime(ClockId::Boottime));
    let now: Option<Duration> = d(clock_gettime(ClockId::Realtime));
    Some(SystemTime::UNIX_EPOCH + now?.checked_sub(since_boot?)?)
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

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max file size             unlimited            unlimited            bytes     \n\
Max data size             unlimited            unlimited            bytes     \n\
Max stack size            8388608              unlimited            bytes     \n\
Max core file size        0                    unlimited            bytes     \n\
Max resident set          unlimited            unlimited            bytes     \n\
Max processes             1545337              1545337              processes \n\
Max open files            1048576              1048576              files     \n\
Max locked memory         unlimited            unlimited            bytes     \n\
Max address space         unlimited            unlimited            bytes     \n\
Max file locks            unlimited            unlimited            locks     \n\
Max pending signals       1545337              1545337              signals   \n\
Max msgqueue size         819200               819200               bytes     \n\
Max nice priority         0                    0                    \n\
Max realtime priority     0                    0                    \n\
Max realtime timeout      unlimited            unlimited            us        \n";

    #[test]
    fn limits_as_the_kernel_writes_them() {
        let p = parse_pod_limits(LIMITS).unwrap();
        assert_eq!(p.nofile, Pair { soft: Rlimit::Bytes(1048576), hard: Rlimit::Bytes(1048576) });
        assert_eq!(p.stack, Pair { soft: Rlimit::Bytes(8388608), hard: Rlimit::Unlimited });
        let l = parse_limits(LIMITS).unwrap();
        assert_eq!(l, SoftLimits { memlock: Rlimit::Unlimited, stack: Rlimit::Bytes(8388608) });
        // A row missing, a short row, no header: malformed, never a panic.
        let without: String = LIMITS
            .lines()
            .filter(|l| !l.starts_with("Max locked"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_limits(&without).is_err());
        assert!(parse_limits(&format!("{LIMITS}Max\n"))
            .unwrap_err()
            .0
            .contains("not a limits row"));
        assert!(parse_limits(&LIMITS[LIMITS.find('\n').unwrap() + 1..]).is_err());
        assert!(parse_limits("").is_err());
    }

    #[test]
    fn start_ticks_from_stat_and_a_start_time_from_btime() {
        let fields: Vec<String> =
            (3..=52).map(|i| if i == 22 { "1000".into() } else { "0".into() }).collect();
        let stat = format!("1843 (contain erd) )) {}\n", fields.join(" "));
        assert_eq!(parse_start_ticks(&stat).unwrap(), 1000);
        for bad in ["", "(x) S 1", "1 (x)", "1 x) S", "12 (x)S 1 2"] {
            assert!(parse_start_ticks(bad).is_err(), "{bad:?}");
        }
        let (_d, host) = tree(&[
            ("proc/1843/stat", &format!("1843 (containerd) {}\n", fields.join(" "))),
            ("proc/stat", "cpu  1 2 3 4\nbtime 1700000000\n"),
        ]);
        let want = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_010);
        let started = start_time(&host, 1843).unwrap();
        assert_eq!(started.at, want, "a fixture's btime: whole seconds");
        assert_eq!(started.within, Duration::from_millis(1010));
        // This kernel's own /proc: the boot time from its clocks, to a tick.
        let me = std::process::id();
        let live = start_time(&Host::new("/"), me).unwrap();
        assert_eq!(live.within, Duration::from_millis(10));
        let age = SystemTime::now().duration_since(live.at).unwrap();
        assert!(age < Duration::from_secs(3600), "this test process started {age:?} ago");
        let e = start_time(&host, 9).unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }

    #[test]
    fn processes_by_name() {
        let (_d, host) = tree(&[
            ("proc/30/comm", "kubelet\n"),
            ("proc/7/comm", "containerd\n"),
            ("proc/8/comm", "bash\n"),
        ]);
        assert_eq!(
            named(&host, &["containerd", "kubelet"]),
            [("containerd".to_string(), 7), ("kubelet".to_string(), 30)]
        );
    }
}
