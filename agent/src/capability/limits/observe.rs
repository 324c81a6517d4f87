//! What the host shows about limits now: containerd's base runtime spec, the running containerd's
//! limits and start, its unit's `LimitMEMLOCK=`/`LimitSTACK=`, the files `boot` writes.

use std::time::SystemTime;

use serde_json::Value;

use super::{Kind, DROPIN, LIMITS_D, RLIM_INFINITY, SYSTEMD_DEFAULT};
use crate::config::Limit;
use crate::host::containerd::Cri;
use crate::host::proc::{self, Rlimit, Started};
use crate::host::{containerd, rdma, systemd, ErrorKind, Host, HostError};

impl SpecState {
    /// Why the spec is unusable, in words: what is wrong with its content, or why it could not be
    /// read.
    pub fn problem(&self) -> Option<String> {
        match self {
            SpecState::Invalid { error } if error.kind == ErrorKind::Malformed => {
                Some(error.detail.clone())
            }
            SpecState::Invalid { error } | SpecState::ConfigUnreadable { error } => {
                Some(error.to_string())
            }
            _ => None,
        }
    }
}

/// The default runtime's base runtime spec as found.
#[derive(Debug, Clone, PartialEq)]
pub enum SpecState {
    /// containerd's config names none for its default runtime: containers get containerd's own
    /// limits (whatever exists at [`super::BASE_RUNTIME_SPEC`]; containerd has no default spec).
    NotNamed,
    /// containerd's config could not be read, so which spec (if any) it uses is unknown.
    ConfigUnreadable {
        error: HostError,
    },
    /// Named but does not exist: containerd's CRI plugin does not load, no pod can start.
    Missing,
    /// Present but unusable (unreadable, not JSON, or `process.rlimits` not a list): left
    /// untouched. containerd's CRI plugin does not load either: no pod can start.
    Invalid {
        error: HostError,
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
    /// When the process started (from `/proc/<pid>/stat` and the boot time), if known.
    pub started: Option<Started>,
    /// Soft limits from `/proc/<pid>/limits`, or why they are unknown.
    pub limits: Result<(Limit, Limit), HostError>,
}

/// A limit set in containerd's unit or a drop-in, and the file that sets it.
pub type UnitLimit = (Limit, String);

/// Everything about limits the host shows now.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// containerd's effective config (`None`: unreadable, see `spec`).
    pub cri: Option<Cri>,
    /// The base runtime spec file the config names for the default runtime, if any.
    pub spec_path: Option<String>,
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
    pub errors: Vec<HostError>,
}

impl Snapshot {
    pub fn containerd_limit(&self, k: Kind) -> Option<Limit> {
        let (memlock, stack) = self.containerd.as_ref()?.limits.as_ref().ok()?;
        Some(match k {
            Kind::Memlock => *memlock,
            Kind::Stack => *stack,
        })
    }

    pub fn unit_limit(&self, k: Kind) -> Option<&UnitLimit> {
        match k {
            Kind::Memlock => self.unit_memlock.as_ref(),
            Kind::Stack => self.unit_stack.as_ref(),
        }
    }

    /// The spec path for messages (`(none)` when the config names none).
    pub fn spec_name(&self) -> &str {
        self.spec_path.as_deref().unwrap_or("(none)")
    }

    /// The config file that names the spec, for messages.
    pub fn spec_set_in(&self) -> String {
        self.cri
            .as_ref()
            .and_then(|c| c.base_runtime_spec.as_ref())
            .map_or_else(|| containerd::CONFIG.to_string(), |s| s.set_in.clone())
    }

    /// The default runtime's name, for messages.
    pub fn runtime(&self) -> &str {
        self.cri.as_ref().map_or("runc", |c| c.default_runtime.as_str())
    }

    /// True when no pod can start because of the spec: containerd's CRI plugin does not load when
    /// the spec it is told to use does not exist or is not an OCI spec it can parse (measured with
    /// containerd 1.6: "failed to load base OCI spec from file").
    /// A spec nodeprep cannot read (not root) is only unknown: containerd runs as root.
    pub fn blocks_every_pod(&self) -> bool {
        match &self.spec {
            SpecState::Missing => true,
            SpecState::Invalid { error } => error.kind == ErrorKind::Malformed,
            _ => false,
        }
    }

    /// True when the base runtime spec changed after containerd started: containerd reads it only at
    /// start, so new pods still get the old one. A change within the start's uncertainty (a tick on
    /// this kernel, a second on a fixture) counts as loaded: containerd reads the spec when its CRI
    /// plugin initialises, well after the process starts.
    pub fn spec_newer_than_containerd(&self) -> bool {
        match (&self.spec, self.containerd.as_ref().and_then(|c| c.started)) {
            (SpecState::Valid { modified: Some(m), .. }, Some(s)) => *m > s.at + s.within,
            _ => false,
        }
    }

    /// The soft limit the spec on disk sets for `k`, if it sets one.
    pub fn spec_limit(&self, k: Kind) -> Option<Limit> {
        match &self.spec {
            SpecState::Valid { value, .. } => spec_rlimit(value, k.oci()),
            _ => None,
        }
    }

    /// What a new pod gets for `k`, and where that comes from. `None`: cannot be known (the source
    /// says why) or no pod can start.
    pub fn effective(&self, k: Kind) -> (Option<Limit>, String) {
        let path = self.spec_name();
        match &self.spec {
            SpecState::ConfigUnreadable { error } => {
                return (None, format!("unknown: containerd's config could not be read ({error})"))
            }
            SpecState::Missing => {
                return (
                    None,
                    format!(
                        "none: no pod can start: {path} (base_runtime_spec of runtime `{}` in {}) does not exist, so containerd's CRI plugin does not load",
                        self.runtime(),
                        self.spec_set_in()
                    ),
                )
            }
            SpecState::Invalid { .. } if !self.blocks_every_pod() => {
                let why = self.spec.problem().unwrap_or_default();
                return (None, format!("unknown: {path} is unusable ({why})"));
            }
            SpecState::Invalid { .. } => {
                let why = self.spec.problem().unwrap_or_default();
                return (
                    None,
                    format!("none: no pod can start: {path} is unusable ({why}), so containerd's CRI plugin does not load"),
                );
            }
            SpecState::Valid { .. } if self.spec_newer_than_containerd() => {
                return (
                    None,
                    format!(
                        "unknown: {path} changed after containerd started; new pods get what containerd loaded at start{}",
                        self.spec_limit(k).map_or(String::new(), |l| format!(
                            " (the file now says {})",
                            super::evaluate::human(l)
                        ))
                    ),
                )
            }
            SpecState::Valid { .. } => {
                if let Some(l) = self.spec_limit(k) {
                    return (Some(l), format!("{path} process.rlimits"));
                }
            }
            SpecState::NotNamed => {}
        }
        let why = match self.spec {
            SpecState::NotNamed => format!(
                "containerd's config names no base_runtime_spec for runtime `{}`",
                self.runtime()
            ),
            _ => format!("{path} sets no {}", k.oci()),
        };
        if let Some(c) = &self.containerd {
            return match &c.limits {
                Ok(_) => (
                    self.containerd_limit(k),
                    format!("running containerd's own limit (pid {}): {why}", c.pid),
                ),
                Err(e) => (None, format!("unknown: {e}")),
            };
        }
        match self.unit_limit(k) {
            Some((l, file)) => (
                Some(*l),
                format!(
                    "containerd unit ({} in {file}); containerd not running; {why}",
                    k.systemd()
                ),
            ),
            None => (
                Some(Limit::Bytes(SYSTEMD_DEFAULT)),
                format!(
                    "systemd default; containerd not running and no {} set; {why}",
                    k.systemd()
                ),
            ),
        }
    }
}

/// Why a base runtime spec is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("process.rlimits is not a list")]
    RlimitsNotAList,
    #[error("not an OCI runtime spec object")]
    NotASpec,
}

/// Parses the base runtime spec: a JSON object whose `process`, if present, is an object and whose
/// `process.rlimits`, if present, is a list.
pub fn parse_spec(text: &str) -> Result<Value, SpecError> {
    let value: Value = serde_json::from_str(text).map_err(|e| SpecError::NotJson(e.to_string()))?;
    match value.get("process").and_then(|p| p.get("rlimits")) {
        Some(r) if !r.is_array() => Err(SpecError::RlimitsNotAList),
        _ if !value.is_object() || value.get("process").is_some_and(|p| !p.is_object()) => {
            Err(SpecError::NotASpec)
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

fn limit(r: Rlimit) -> Limit {
    match r {
        Rlimit::Unlimited => Limit::Unlimited,
        Rlimit::Bytes(b) => Limit::Bytes(b),
    }
}

/// The process whose comm is exactly `containerd` (not the shims), in containerd.service's cgroup
/// when systemd has one (see [`proc::find`]).
fn find_containerd(host: &Host, errors: &mut Vec<HostError>) -> Option<Containerd> {
    let (pid, _) = proc::find(host, "containerd.service", |c| c == "containerd")?;
    let limits = proc::limits(host, pid).map(|l| (limit(l.memlock), limit(l.stack)));
    if let Err(e) = &limits {
        errors.push(e.clone());
    }
    Some(Containerd { pid, started: proc::start_time(host, pid).ok(), limits })
}

/// The effective `LimitMEMLOCK=`/`LimitSTACK=` of containerd.service (its unit and drop-ins, the
/// last one wins).
fn unit_limits(host: &Host, errors: &mut Vec<HostError>) -> (Option<UnitLimit>, Option<UnitLimit>) {
    let (settings, unreadable) = systemd::settings(host, "containerd.service", "Service");
    errors.extend(unreadable);
    let (mut memlock, mut stack) = (None, None);
    for s in settings {
        let slot = match s.key.as_str() {
            "LimitMEMLOCK" => &mut memlock,
            "LimitSTACK" => &mut stack,
            _ => continue,
        };
        match parse_systemd_limit(&s.value) {
            Some(l) => *slot = Some((l, s.file)),
            None => {
                errors.push(host.malformed(&s.file, format!("cannot parse {}={}", s.key, s.value)))
            }
        }
    }
    (memlock, stack)
}

/// The default runtime's spec as containerd's config names it, and its state.
fn spec(host: &Host, cri: &Result<Cri, HostError>) -> (Option<String>, SpecState) {
    let path = match cri {
        Err(error) => return (None, SpecState::ConfigUnreadable { error: error.clone() }),
        Ok(c) => match &c.base_runtime_spec {
            None => return (None, SpecState::NotNamed),
            Some(s) => s.path.clone(),
        },
    };
    let state = match host.read_string(&path) {
        Err(e) if e.is_not_found() => SpecState::Missing,
        Err(error) => SpecState::Invalid { error },
        Ok(text) => match parse_spec(&text) {
            Err(why) => SpecState::Invalid { error: host.malformed(&path, why.to_string()) },
            Ok(value) => SpecState::Valid {
                text,
                value,
                modified: host.metadata(&path).ok().and_then(|m| m.modified),
            },
        },
    };
    (Some(path), state)
}

/// Reads everything about limits the host shows now.
pub fn observe(host: &Host) -> Snapshot {
    let mut errors = Vec::new();
    let cri = containerd::load(host);
    let (spec_path, spec) = spec(host, &cri);
    if let Err(e) = &cri {
        errors.push(e.clone());
    }
    let containerd = find_containerd(host, &mut errors);
    let (unit_memlock, unit_stack) = unit_limits(host, &mut errors);
    let mut read_opt = |p: &str| match host.read_string(p) {
        Ok(t) => Some(t),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let dropin = read_opt(DROPIN);
    let limits_d = read_opt(LIMITS_D);
    Snapshot {
        cri: cri.ok(),
        spec_path,
        spec,
        containerd,
        unit_memlock,
        unit_stack,
        dropin,
        limits_d,
        efa_present: rdma::efa_present(host),
        systemd_running: host.exists("/run/systemd/system"),
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
