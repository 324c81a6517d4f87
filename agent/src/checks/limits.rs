//! `limits`: the RLIMIT_MEMLOCK and RLIMIT_STACK a new pod gets.
//!
//! A container's rlimits come from the OCI spec's `process.rlimits` when containerd's base runtime
//! spec sets them; otherwise the container inherits containerd's own limits (through the shim), which
//! come from its systemd unit (`LimitMEMLOCK=`), else systemd's default of 8 MiB. limits.d is read by
//! PAM for login sessions only and never reaches pods. EFA (libfabric) fails with ENOMEM when memlock
//! is low, so on EFA nodes this check is required.
//!
//! [`observe`] reads everything once; both this check and the planner in `apply::limits` use it.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{Check, Context};
use crate::config::{Limit, LimitsConfig, Mode};
use crate::host::{procs, Host};
use crate::report::{CheckResult, Status};

/// Where EKS AMIs keep containerd's base runtime spec; used when containerd's config names none.
pub const BASE_RUNTIME_SPEC: &str = "/etc/containerd/base-runtime-spec.json";
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const DROPIN: &str = "/etc/systemd/system/containerd.service.d/50-nodeprep-limits.conf";
pub const LIMITS_D: &str = "/etc/security/limits.d/50-nodeprep.conf";
/// systemd's DefaultLimitMEMLOCK (8 MiB since v253) and the kernel's default stack soft limit.
pub const SYSTEMD_DEFAULT: u64 = 8 << 20;
/// The value an OCI spec or setrlimit uses for "unlimited".
pub const RLIM_INFINITY: u64 = u64::MAX;

const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memlock,
    Stack,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Memlock, Kind::Stack];
    pub fn key(self) -> &'static str {
        match self {
            Kind::Memlock => "memlock",
            Kind::Stack => "stack",
        }
    }
    pub fn oci(self) -> &'static str {
        match self {
            Kind::Memlock => "RLIMIT_MEMLOCK",
            Kind::Stack => "RLIMIT_STACK",
        }
    }
    pub fn systemd(self) -> &'static str {
        match self {
            Kind::Memlock => "LimitMEMLOCK",
            Kind::Stack => "LimitSTACK",
        }
    }
    fn proc_row(self) -> &'static str {
        match self {
            Kind::Memlock => "Max locked memory",
            Kind::Stack => "Max stack size",
        }
    }
    pub fn wanted(self, cfg: &LimitsConfig) -> Limit {
        match self {
            Kind::Memlock => cfg.memlock,
            Kind::Stack => cfg.stack,
        }
    }
}

/// The base runtime spec as found.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecState {
    Absent,
    /// Present but unusable (not JSON, or `process.rlimits` not a list): left untouched.
    Invalid {
        error: String,
    },
    Valid {
        text: String,
        value: Value,
        modified: Option<SystemTime>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containerd {
    pub pid: u32,
    /// When the process started (from `/proc/<pid>/stat` and `/proc/stat` btime), if known.
    pub started_at: Option<SystemTime>,
    /// Soft limits from `/proc/<pid>/limits` (None: row missing or unparsable).
    pub memlock: Option<Limit>,
    pub stack: Option<Limit>,
}

/// A limit set in containerd's unit or a drop-in, and the file that sets it.
pub type UnitLimit = (Limit, String);

/// Everything about limits the host shows now.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The base runtime spec file of containerd's default runtime (from its config.toml), else
    /// [`BASE_RUNTIME_SPEC`].
    pub spec_path: String,
    pub spec: SpecState,
    pub containerd: Option<Containerd>,
    /// `(value, file)` of the last `LimitMEMLOCK=` / `LimitSTACK=` in containerd's unit and drop-ins.
    pub unit_memlock: Option<UnitLimit>,
    pub unit_stack: Option<UnitLimit>,
    pub dropin: Option<String>,
    pub limits_d: Option<String>,
    pub efa_present: bool,
    pub systemd_running: bool,
    /// Files that exist but could not be read: never treated as absent.
    pub errors: Vec<String>,
}

impl Snapshot {
    pub fn containerd_limit(&self, k: Kind) -> Option<Limit> {
        self.containerd.as_ref().and_then(|c| match k {
            Kind::Memlock => c.memlock,
            Kind::Stack => c.stack,
        })
    }

    pub fn unit_limit(&self, k: Kind) -> Option<&UnitLimit> {
        match k {
            Kind::Memlock => self.unit_memlock.as_ref(),
            Kind::Stack => self.unit_stack.as_ref(),
        }
    }

    /// True when the base runtime spec changed after containerd started: containerd reads it only at
    /// start, so new pods still get the old one.
    pub fn spec_newer_than_containerd(&self) -> bool {
        match (&self.spec, self.containerd.as_ref().and_then(|c| c.started_at)) {
            (SpecState::Valid { modified: Some(m), .. }, Some(started)) => *m > started,
            _ => false,
        }
    }

    /// The soft limit the spec sets for `k`, if it sets one.
    pub fn spec_limit(&self, k: Kind) -> Option<Limit> {
        match &self.spec {
            SpecState::Valid { value, .. } => spec_rlimit(value, k.oci()),
            _ => None,
        }
    }

    /// What a new pod gets for `k`, and where that comes from. `None`: cannot be known.
    pub fn effective(&self, k: Kind) -> (Option<Limit>, String) {
        if let SpecState::Invalid { error } = &self.spec {
            return (None, format!("unknown: {} is unusable ({error})", self.spec_path));
        }
        if let Some(l) = self.spec_limit(k) {
            return (Some(l), format!("{} process.rlimits", self.spec_path));
        }
        if let Some(c) = &self.containerd {
            return match self.containerd_limit(k) {
                Some(l) => (Some(l), format!("running containerd (pid {})", c.pid)),
                None => (
                    None,
                    format!("unknown: /proc/{}/limits has no \"{}\" row", c.pid, k.proc_row()),
                ),
            };
        }
        match self.unit_limit(k) {
            Some((l, file)) => (
                Some(*l),
                format!("containerd unit ({} in {file}); containerd not running", k.systemd()),
            ),
            None => (
                Some(Limit::Bytes(SYSTEMD_DEFAULT)),
                format!("systemd default; containerd not running and no {} set", k.systemd()),
            ),
        }
    }
}

/// Parses the base runtime spec: a JSON object whose `process`, if present, is an object and whose
/// `process.rlimits`, if present, is a list. `Err` says why it is unusable.
pub fn parse_spec(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    match value.get("process").and_then(|p| p.get("rlimits")) {
        Some(r) if !r.is_array() => Err("process.rlimits is not a list".into()),
        _ if !value.is_object() || value.get("process").is_some_and(|p| !p.is_object()) => {
            Err("not an OCI runtime spec object".into())
        }
        _ => Ok(value),
    }
}

/// Soft limit of an OCI `process.rlimits` entry.
pub fn spec_rlimit(spec: &Value, oci_type: &str) -> Option<Limit> {
    let list = spec.get("process")?.get("rlimits")?.as_array()?;
    let entry = list.iter().find(|e| e.get("type").and_then(Value::as_str) == Some(oci_type))?;
    let soft = entry.get("soft")?.as_u64()?;
    Some(if soft == RLIM_INFINITY { Limit::Unlimited } else { Limit::Bytes(soft) })
}

/// Parses one row of `/proc/<pid>/limits`; returns the soft limit.
pub fn parse_proc_limits(text: &str, row: &str) -> Option<Limit> {
    let rest = text.lines().find_map(|l| l.strip_prefix(row))?;
    let soft = rest.split_whitespace().next()?;
    Limit::parse(soft)
}

/// Parses a systemd limit value (`infinity`, bytes, or with K/M/G/T suffix, base 1024). A
/// `soft:hard` pair yields the soft part.
pub fn parse_systemd_limit(v: &str) -> Option<Limit> {
    let v = v.trim();
    let soft = v.split(':').next()?.trim();
    if soft.eq_ignore_ascii_case("infinity") {
        return Some(Limit::Unlimited);
    }
    let (num, mult) = match soft.char_indices().last()? {
        (i, 'K') => (&soft[..i], 1u64 << 10),
        (i, 'M') => (&soft[..i], 1 << 20),
        (i, 'G') => (&soft[..i], 1 << 30),
        (i, 'T') => (&soft[..i], 1 << 40),
        _ => (soft, 1),
    };
    num.trim().parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).map(Limit::Bytes)
}

/// Start time of a process: boot time (`btime` in /proc/stat) plus field 22 of /proc/<pid>/stat in
/// clock ticks (USER_HZ, 100 on every Linux architecture EC2 runs).
fn process_start(host: &Host, pid: u32) -> Option<SystemTime> {
    let stat = host.read_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let btime: u64 = host
        .read_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(btime) + Duration::from_millis(ticks * 10))
}

/// Finds the process whose comm is exactly `containerd` (not the shims), in containerd.service's
/// cgroup when systemd has one (see [`procs`]).
fn find_containerd(host: &Host, errors: &mut Vec<String>) -> Option<Containerd> {
    let (pid, _) = procs::find(host, "containerd.service", |c| c == "containerd")?;
    match host.read_string(format!("/proc/{pid}/limits")) {
        Ok(text) => Some(Containerd {
            pid,
            started_at: process_start(host, pid),
            memlock: parse_proc_limits(&text, Kind::Memlock.proc_row()),
            stack: parse_proc_limits(&text, Kind::Stack.proc_row()),
        }),
        Err(e) => {
            errors.push(e.to_string());
            Some(Containerd {
                pid,
                started_at: process_start(host, pid),
                memlock: None,
                stack: None,
            })
        }
    }
}

/// The effective `LimitMEMLOCK=`/`LimitSTACK=` of containerd.service: the unit file, then drop-ins
/// ordered by file name (a name in /etc hides the same name in /run and /usr/lib), last one wins.
fn unit_limits(host: &Host, errors: &mut Vec<String>) -> (Option<UnitLimit>, Option<UnitLimit>) {
    let mut files: Vec<String> = Vec::new();
    if let Some(unit) =
        UNIT_DIRS.iter().map(|d| format!("{d}/containerd.service")).find(|p| host.exists(p))
    {
        files.push(unit);
    }
    let mut dropins: Vec<(String, String)> = Vec::new();
    for dir in UNIT_DIRS {
        let d = format!("{dir}/containerd.service.d");
        for name in host.list_dir_opt(&d).unwrap_or_default() {
            if name.ends_with(".conf") && !dropins.iter().any(|(n, _)| *n == name) {
                dropins.push((name.clone(), format!("{d}/{name}")));
            }
        }
    }
    dropins.sort();
    files.extend(dropins.into_iter().map(|(_, p)| p));
    let (mut memlock, mut stack) = (None, None);
    for f in files {
        let text = match host.read_string(&f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let mut in_service = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
            } else if in_service {
                if let Some((k, v)) = line.split_once('=') {
                    let slot = match k.trim() {
                        "LimitMEMLOCK" => &mut memlock,
                        "LimitSTACK" => &mut stack,
                        _ => continue,
                    };
                    match parse_systemd_limit(v) {
                        Some(l) => *slot = Some((l, f.clone())),
                        None => errors.push(format!(
                            "{}: cannot parse {}={}",
                            host.path(&f).display(),
                            k.trim(),
                            v.trim()
                        )),
                    }
                }
            }
        }
    }
    (memlock, stack)
}

/// The base runtime spec containerd's default runtime uses, from `/etc/containerd/config.toml`:
/// `default_runtime_name` (on GPU AMIs often `nvidia`), then `runtimes.<name>.base_runtime_spec`,
/// under the CRI plugin of config version 2 (`io.containerd.grpc.v1.cri`) or 3
/// (`io.containerd.cri.v1.runtime`). `None` when the config names none (or is unreadable).
pub fn spec_path_from_config(text: &str) -> Option<String> {
    let doc: toml::Table = text.parse().ok()?;
    let plugins = doc.get("plugins")?.as_table()?;
    ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"].iter().find_map(|p| {
        let ctr = plugins.get(*p)?.get("containerd")?;
        let default = ctr.get("default_runtime_name").and_then(|v| v.as_str()).unwrap_or("runc");
        ctr.get("runtimes")?.get(default)?.get("base_runtime_spec")?.as_str().map(str::to_string)
    })
}

/// Reads everything about limits the host shows now.
pub fn observe(host: &Host) -> Snapshot {
    let mut errors = Vec::new();
    let spec_path = match host.read_string(CONTAINERD_CONFIG) {
        Ok(text) => spec_path_from_config(&text).unwrap_or_else(|| BASE_RUNTIME_SPEC.to_string()),
        Err(_) => BASE_RUNTIME_SPEC.to_string(),
    };
    let spec = match host.read_string(&spec_path) {
        Err(e) if e.is_not_found() => SpecState::Absent,
        Err(e) => SpecState::Invalid { error: e.to_string() },
        Ok(text) => match parse_spec(&text) {
            Err(error) => SpecState::Invalid { error },
            Ok(value) => SpecState::Valid {
                text,
                value,
                modified: std::fs::metadata(host.path(&spec_path)).and_then(|m| m.modified()).ok(),
            },
        },
    };
    let containerd = find_containerd(host, &mut errors);
    let (unit_memlock, unit_stack) = unit_limits(host, &mut errors);
    let mut read_opt = |p: &str| match host.read_string(p) {
        Ok(t) => Some(t),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    let dropin = read_opt(DROPIN);
    let limits_d = read_opt(LIMITS_D);
    Snapshot {
        spec_path,
        spec,
        containerd,
        unit_memlock,
        unit_stack,
        dropin,
        limits_d,
        efa_present: super::efa::present(host),
        systemd_running: host.exists("/run/systemd/system"),
        errors,
    }
}

fn show(l: Option<Limit>) -> Value {
    match l {
        Some(Limit::Unlimited) => Value::from("unlimited"),
        Some(Limit::Bytes(b)) => Value::from(b),
        None => Value::Null,
    }
}

fn human(l: Limit) -> String {
    match l {
        Limit::Unlimited => "unlimited".into(),
        Limit::Bytes(b) if b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        Limit::Bytes(b) if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        Limit::Bytes(b) if b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        Limit::Bytes(b) => format!("{b} bytes"),
    }
}

pub struct Limits;

impl Limits {
    /// `efa_present` is asked only when the type and the config do not already decide.
    fn is_required(ctx: &Context, efa_present: impl FnOnce() -> bool) -> bool {
        ctx.expected.efa.is_some_and(|n| n > 0)
            || ctx.config.limits.apply == Mode::Always
            || efa_present()
    }
}

impl Check for Limits {
    fn name(&self) -> &'static str {
        "limits"
    }

    fn required(&self, ctx: &Context) -> bool {
        Limits::is_required(ctx, || super::efa::present(&ctx.host))
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        let snap = observe(&ctx.host);
        let cfg = &ctx.config.limits;
        let required = Limits::is_required(ctx, || snap.efa_present);
        let mut r = CheckResult::new("limits", Status::Pass, "").required(required);
        let mut short = Vec::new();
        let mut parts = Vec::new();
        let mut restart = false;
        for k in Kind::ALL {
            let want = k.wanted(cfg);
            let (have, source) = snap.effective(k);
            r = r
                .expect(k.key(), show(Some(want)))
                .found(k.key(), show(have))
                .found(&format!("{}_source", k.key()), source.clone());
            let ok = have.is_some_and(|h| h >= want);
            parts.push(format!("{} {}", k.key(), have.map_or("unknown".into(), human)));
            if !ok {
                short.push(k);
                // containerd started before its unit's limit was raised: only a restart helps.
                let unit = snap.unit_limit(k).map(|(l, _)| *l);
                if snap.spec_limit(k).is_none()
                    && snap.containerd.is_some()
                    && unit.is_some_and(|u| u >= want)
                {
                    restart = true;
                }
            }
        }
        // containerd reads the spec only at start: what is on disk may not be what it uses.
        let stale = snap.spec_newer_than_containerd();
        let source = snap.effective(Kind::Memlock).1;
        r.found.insert("restart_needed".into(), Value::from(restart || stale));
        if !snap.errors.is_empty() {
            r.found.insert("errors".into(), Value::from(snap.errors.clone()));
        }
        if short.is_empty() && !stale {
            r.summary = format!("new pods get {} (from {source})", parts.join(", "));
            return r;
        }
        r.status = if required { Status::Fail } else { Status::Warn };
        r.summary = if short.is_empty() {
            format!("{} changed after containerd started: new pods still get the spec containerd loaded at start", snap.spec_path)
        } else {
            let wants: Vec<String> =
                short.iter().map(|&k| format!("{} {}", k.key(), human(k.wanted(cfg)))).collect();
            format!(
                "new pods get {} (from {source}); config wants {}",
                parts.join(", "),
                wants.join(", ")
            )
        };
        if !required {
            r.summary.push_str("; not required without EFA");
        }
        let remedy = if let SpecState::Invalid { error } = &snap.spec {
            format!("fix {} ({error}); nodeprep leaves an unusable spec untouched", snap.spec_path)
        } else if restart || stale {
            "restart containerd so it picks up its new limits: `systemctl restart containerd` (running containers keep running; do it before GPU/EFA pods are scheduled)".into()
        } else {
            "run `nodeprep boot` (it writes the containerd drop-in and the base runtime spec rlimits), then `systemctl restart containerd` if it is running".into()
        };
        r.remedy(remedy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_runtimes_spec_path_comes_from_containerds_config() {
        let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nbase_runtime_spec = \"/etc/a.json\"\n";
        assert_eq!(
            spec_path_from_config(v2).as_deref(),
            Some("/etc/a.json"),
            "runc is the default runtime"
        );
        let v3 = "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\ndefault_runtime_name = \"nvidia\"\n\
                  [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.nvidia]\nbase_runtime_spec = \"/etc/b.json\"\n";
        assert_eq!(spec_path_from_config(v3).as_deref(), Some("/etc/b.json"));
        let other = "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"nvidia\"\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nbase_runtime_spec = \"/etc/a.json\"\n";
        assert_eq!(spec_path_from_config(other), None, "the default runtime names no spec");
        assert_eq!(spec_path_from_config("not toml ["), None);
    }

    #[test]
    fn proc_limits_rows() {
        let t = "Limit                     Soft Limit           Hard Limit           Units     \nMax stack size            8388608              unlimited            bytes     \nMax locked memory         unlimited            unlimited            bytes     \n";
        assert_eq!(parse_proc_limits(t, "Max stack size"), Some(Limit::Bytes(8388608)));
        assert_eq!(parse_proc_limits(t, "Max locked memory"), Some(Limit::Unlimited));
        assert_eq!(parse_proc_limits(t, "Max open files"), None);
    }

    #[test]
    fn systemd_values() {
        assert_eq!(parse_systemd_limit("infinity"), Some(Limit::Unlimited));
        assert_eq!(parse_systemd_limit("8M"), Some(Limit::Bytes(8 << 20)));
        assert_eq!(parse_systemd_limit("65536"), Some(Limit::Bytes(65536)));
        assert_eq!(parse_systemd_limit("64K:infinity"), Some(Limit::Bytes(64 << 10)));
        assert_eq!(parse_systemd_limit("lots"), None);
    }

    #[test]
    fn spec_rlimits() {
        let v: Value = serde_json::from_str(r#"{"process":{"rlimits":[{"type":"RLIMIT_MEMLOCK","hard":18446744073709551615,"soft":18446744073709551615},{"type":"RLIMIT_STACK","hard":16777216,"soft":8388608}]}}"#).unwrap();
        assert_eq!(spec_rlimit(&v, "RLIMIT_MEMLOCK"), Some(Limit::Unlimited));
        assert_eq!(spec_rlimit(&v, "RLIMIT_STACK"), Some(Limit::Bytes(8388608)));
        assert_eq!(spec_rlimit(&v, "RLIMIT_NOFILE"), None);
    }
}
