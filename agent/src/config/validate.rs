//! Values that parse but cannot be right, one function per section of the config. Each returns
//! the dotted keys to blame and the reason: a value wrong only together with another key's names
//! both keys, in the order to blame them (the first one the file sets is named).

use std::path::{Component, Path};

use super::{
    parse_listen, ChecksConfig, Config, Expect, ImdsConfig, KubernetesConfig, Limit, LimitsConfig,
    NvidiaConfig, ServeConfig, StorageConfig, DEFAULT_LISTEN,
};
use crate::host::imds::is_instance_type;

/// Each dotted key an invalid value can be blamed on, with the reason in its terms.
pub(super) type Invalid = Vec<(&'static str, String)>;

fn bad(key: &'static str, message: impl Into<String>) -> Result<(), Invalid> {
    Err(vec![(key, message.into())])
}

/// Rewrites the storage paths of a validated config in their normal spelling ([`normal_path`]),
/// so that boot, the mount table and the messages all compare one form.
pub(super) fn normalise(c: &mut Config) {
    let s = &mut c.storage;
    for p in s.devices.iter_mut().chain(s.bind.iter_mut()).chain([&mut s.mount_point]) {
        if let Some(n) = normal_path(p) {
            *p = n;
        }
    }
}

/// Every section, in the order of the file's documentation.
pub(super) fn validate(c: &Config) -> Result<(), Invalid> {
    if let Some(t) = &c.instance_type {
        instance_type(t).or_else(|m| bad("instance_type", m))?;
    }
    expect(&c.expect)?;
    limits(&c.limits)?;
    storage(&c.storage)?;
    serve(&c.serve)?;
    kubernetes(&c.kubernetes)?;
    imds(&c.imds)?;
    checks_and_nvidia(&c.checks, &c.nvidia)?;
    efa(&c.efa)
}

/// `[efa]`.
fn efa(e: &super::EfaConfig) -> Result<(), Invalid> {
    if e.init_wait_seconds > 300 {
        return bad(
            "efa.init_wait_seconds",
            format!("{} is out of range 0..300", e.init_wait_seconds),
        );
    }
    for (counter, limit) in &e.rate_limits {
        if !limit.is_finite() || *limit < 0.0 {
            return bad(
                "efa.rate_limits",
                format!(
                    "{counter} = {limit}: a rate limit is a number of events per second, 0 or more"
                ),
            );
        }
    }
    for (key, v) in [
        ("efa.loopback_provider", &e.loopback_provider),
        ("efa.loopback_endpoint", &e.loopback_endpoint),
    ] {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return bad(key, format!("\"{v}\" is not a libfabric name (letters, digits, _)"));
        }
    }
    if let Some(d) = e
        .loopback_domains
        .iter()
        .find(|d| d.is_empty() || d.starts_with('-') || d.contains(char::is_whitespace))
    {
        return bad("efa.loopback_domains", format!("\"{d}\" is not a libfabric domain name"));
    }
    if e.loopback_provider != "efa" && e.loopback_domains.is_empty() {
        return bad("efa.loopback_provider", format!("\"{}\" is not efa, so the loopback has no EFA devices to take its domains from: set efa.loopback_domains (e.g. [\"lo\"])", e.loopback_provider));
    }
    if !(e.loopback_min_gbps.is_finite() && e.loopback_min_gbps >= 0.0) {
        return bad(
            "efa.loopback_min_gbps",
            format!("{} is not a bandwidth in Gbit/s", e.loopback_min_gbps),
        );
    }
    if !(1..=(1u64 << 30)).contains(&e.loopback_size) {
        return bad(
            "efa.loopback_size",
            format!("{} is out of range 1..1073741824 bytes", e.loopback_size),
        );
    }
    if !(1..=300).contains(&e.loopback_timeout_seconds) {
        return bad(
            "efa.loopback_timeout_seconds",
            format!("{} is out of range 1..300", e.loopback_timeout_seconds),
        );
    }
    Ok(())
}

/// `instance_type` (and `--instance-type`).
pub(super) fn instance_type(t: &str) -> Result<(), String> {
    match is_instance_type(t) {
        true => Ok(()),
        false => Err(format!(
            "\"{t}\" is not an EC2 instance type (expected family.size, e.g. \"p5.48xlarge\")"
        )),
    }
}

fn expect(e: &Expect) -> Result<(), Invalid> {
    let efa = match e.efa {
        Some(super::EfaCount::Count(n)) => Some(n),
        _ => None,
    };
    for (key, v) in [
        ("expect.gpus", e.gpus),
        ("expect.efa", efa),
        ("expect.instance_store_disks", e.instance_store_disks),
    ] {
        if let Some(n) = v.filter(|n| *n > 64) {
            return bad(key, format!("{n} is impossible: no EC2 instance type has more than 32"));
        }
    }
    if e.gpu_model.as_ref().is_some_and(|m| m.trim().is_empty()) {
        return bad("expect.gpu_model", "must not be empty (remove the key to use the catalog)");
    }
    Ok(())
}

fn limits(l: &LimitsConfig) -> Result<(), Invalid> {
    if let Limit::Bytes(b) = l.memlock {
        if b < 65536 {
            return bad(
                "limits.memlock",
                format!("{b} bytes is below the kernel default of 65536; EFA needs \"unlimited\""),
            );
        }
    }
    if let Limit::Bytes(b) = l.stack {
        if b < 1 << 20 {
            return bad(
                "limits.stack",
                format!("{b} bytes is too small for a process stack (at least 1048576)"),
            );
        }
    }
    Ok(())
}

/// Directories that must never be the mount point or a bind target themselves.
const SYSTEM: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/proc", "/root", "/run", "/sbin",
    "/sys", "/tmp", "/usr", "/var", "/var/lib", "/mnt",
];

/// Compared after normalisation: `/etc/.`, `/var//lib/` and `/./` are `/etc`, `/var/lib` and `/`.
fn is_system(p: &str) -> bool {
    normal_path(p).is_some_and(|n| SYSTEM.contains(&n.as_str()))
}

/// The path as the kernel resolves its spelling (no symlinks followed): absolute, `.` and empty
/// components dropped, no trailing `/`. None for a relative path, a `..` component or a NUL byte
/// (which no system call takes and which would cut the path short).
pub(crate) fn normal_path(p: &str) -> Option<String> {
    if p.contains('\0') {
        return None;
    }
    let path = Path::new(p);
    if !path.is_absolute() {
        return None;
    }
    let mut out = String::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => {
                out.push('/');
                out.push_str(n.to_str()?);
            }
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(if out.is_empty() { "/".into() } else { out })
}

fn storage(s: &StorageConfig) -> Result<(), Invalid> {
    let mut seen: Vec<(String, &String)> = Vec::new();
    for d in &s.devices {
        let n = normal_path(d).filter(|n| n.starts_with("/dev/"));
        let Some(n) = n else {
            return bad(
                "storage.devices",
                format!("\"{}\" is not a block device path under /dev/", d.escape_debug()),
            );
        };
        if let Some((_, first)) = seen.iter().find(|(m, _)| *m == n) {
            return bad(
                "storage.devices",
                format!("\"{d}\" is listed twice (as \"{first}\" too; both are {n})"),
            );
        }
        seen.push((n, d));
    }
    let mp_raw = &s.mount_point;
    let Some(mp) = normal_path(mp_raw) else {
        return bad(
            "storage.mount_point",
            format!(
                "\"{}\" must be an absolute path without .. components or NUL bytes",
                mp_raw.escape_debug()
            ),
        );
    };
    let mp = &mp;
    if is_system(mp) {
        return bad(
            "storage.mount_point",
            format!(
                "\"{mp_raw}\" is a system directory{}; use a directory of its own such as /mnt/nodeprep",
                if mp_raw != mp { format!(" ({mp})") } else { String::new() }
            ),
        );
    }
    let mut seen: Vec<String> = Vec::new();
    for b_raw in &s.bind {
        let b = match normal_path(b_raw) {
            Some(b) if !is_system(&b) => b,
            _ => {
                return bad(
                    "storage.bind",
                    format!(
                        "\"{}\" must be an absolute path below a system directory (e.g. /var/lib/containerd), without .. or NUL",
                        b_raw.escape_debug()
                    ),
                )
            }
        };
        let b = &b;
        if is_within(b, mp) || is_within(mp, b) {
            return Err(vec![
                ("storage.bind", format!("\"{b_raw}\" overlaps storage.mount_point \"{mp}\"")),
                (
                    "storage.mount_point",
                    format!(
                        "\"{mp}\" overlaps \"{b}\" in storage.bind (the default binds unless set)"
                    ),
                ),
            ]);
        }
        if seen.contains(b) {
            return bad("storage.bind", format!("\"{b_raw}\" is listed twice (as {b})"));
        }
        seen.push(b.clone());
    }
    if s.wait_seconds > 600 {
        return bad("storage.wait_seconds", format!("{} is out of range 0..600", s.wait_seconds));
    }
    Ok(())
}

fn serve(s: &ServeConfig) -> Result<(), Invalid> {
    if parse_listen(&s.listen).is_err() {
        return bad(
            "serve.listen",
            format!("\"{}\" is not an address:port (e.g. \"{DEFAULT_LISTEN}\")", s.listen),
        );
    }
    if !s.metrics_listen.is_empty() {
        match parse_listen(&s.metrics_listen) {
            Err(_) => {
                return bad(
                    "serve.metrics_listen",
                    format!(
                        "\"{}\" is not an address:port (e.g. \"0.0.0.0:9478\"; empty: no second listener)",
                        s.metrics_listen
                    ),
                )
            }
            Ok(m) if m.port() != 0 && parse_listen(&s.listen).is_ok_and(|l| l == m) => {
                return bad(
                    "serve.metrics_listen",
                    format!("\"{}\" is serve.listen itself: name another port", s.metrics_listen),
                )
            }
            Ok(_) => {}
        }
    }
    if !(1..=86400).contains(&s.interval_seconds) {
        return bad(
            "serve.interval_seconds",
            format!("{} is out of range 1..86400", s.interval_seconds),
        );
    }
    Ok(())
}

fn kubernetes(k: &KubernetesConfig) -> Result<(), Invalid> {
    if !k.node_name.is_empty() && !is_dns_subdomain(&k.node_name) {
        return bad(
            "kubernetes.node_name",
            format!("\"{}\" is not a valid node name (lowercase DNS subdomain)", k.node_name),
        );
    }
    if !k.startup_taint.is_empty() && !is_label_key(&k.startup_taint) {
        return bad(
            "kubernetes.startup_taint",
            format!(
                "\"{}\" is not a valid taint key ([prefix/]name, name up to 63 of [A-Za-z0-9-_.])",
                k.startup_taint
            ),
        );
    }
    if k.startup_taint == "karpenter.sh/unregistered" {
        return bad(
            "kubernetes.startup_taint",
            "karpenter.sh/unregistered is Karpenter's own taint (it removes it at registration): use the NodePool's startupTaints key, e.g. nodeprep.io/not-ready",
        );
    }
    if k.startup_taint.starts_with("readiness.k8s.io/") {
        return bad(
            "kubernetes.startup_taint",
            format!(
                "{} is a Node Readiness Controller taint (readiness.k8s.io/): the controller removes it from the conditions; leave startup_taint empty (see packaging/kubernetes/node-readiness-rule.yaml)",
                k.startup_taint
            ),
        );
    }
    for (key, driver) in [
        ("kubernetes.dra_drivers.gpu", &k.dra_drivers.gpu),
        ("kubernetes.dra_drivers.efa", &k.dra_drivers.efa),
    ] {
        if !driver.is_empty() && !is_dns_subdomain(driver) {
            return bad(
                key,
                format!(
                    "\"{driver}\" is not a DRA driver name (a DNS subdomain, e.g. gpu.nvidia.com)"
                ),
            );
        }
    }
    if k.gate_deadline_seconds != 0 && !(60..=86400).contains(&k.gate_deadline_seconds) {
        return bad(
            "kubernetes.gate_deadline_seconds",
            format!("{} is out of range 60..86400 (0: no deadline)", k.gate_deadline_seconds),
        );
    }
    Ok(())
}

fn imds(i: &ImdsConfig) -> Result<(), Invalid> {
    match i.endpoint.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() && reqwest::Url::parse(&i.endpoint).is_ok() => {}
        _ => {
            return bad(
                "imds.endpoint",
                format!("\"{}\" must be a plain http:// URL (IMDS has no TLS)", i.endpoint),
            )
        }
    }
    if !(100..=10000).contains(&i.timeout_ms) {
        return bad("imds.timeout_ms", format!("{} is out of range 100..10000", i.timeout_ms));
    }
    Ok(())
}

/// `[checks]` and `[nvidia]` together: NVML's deadline must fall inside the check's.
fn checks_and_nvidia(c: &ChecksConfig, n: &NvidiaConfig) -> Result<(), Invalid> {
    if !(1..=300).contains(&c.timeout_seconds) {
        return bad(
            "checks.timeout_seconds",
            format!("{} is out of range 1..300", c.timeout_seconds),
        );
    }
    if !((64 << 10)..=(1 << 30)).contains(&c.max_read_bytes) {
        return bad(
            "checks.max_read_bytes",
            format!("{} is out of range 65536..1073741824", c.max_read_bytes),
        );
    }
    let mut seen = Vec::new();
    for x in &n.fatal_xids {
        if !(1..=999).contains(x) {
            return bad("nvidia.fatal_xids", format!("{x} is not an XID (1..999)"));
        }
        if seen.contains(&x) {
            return bad("nvidia.fatal_xids", format!("{x} is listed twice"));
        }
        seen.push(x);
    }
    let nvml_ms = n.nvml_timeout_ms;
    if !(100..=60000).contains(&nvml_ms) {
        return bad("nvidia.nvml_timeout_ms", format!("{nvml_ms} is out of range 100..60000"));
    }
    if nvml_ms >= c.timeout_seconds * 1000 {
        let checks_s = c.timeout_seconds;
        return Err(vec![
            (
                "nvidia.nvml_timeout_ms",
                format!("{nvml_ms} ms is not below checks.timeout_seconds ({checks_s} s): the check would time out before NVML does"),
            ),
            (
                "checks.timeout_seconds",
                format!("{checks_s} s is not above nvidia.nvml_timeout_ms ({nvml_ms} ms): the check would time out before NVML does"),
            ),
        ]);
    }
    Ok(())
}

/// True when `inner` equals `outer` or lies below it.
fn is_within(inner: &str, outer: &str) -> bool {
    Path::new(inner).starts_with(Path::new(outer))
}

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|l| is_dns_label(l, 63))
}

fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    name_ok && prefix.is_none_or(is_dns_subdomain)
}
