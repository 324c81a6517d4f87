//! Configuration: `<root>/etc/nodeprep/config.toml` (or `--config`).
//!
//! Every key has a default, so the default file may be absent. Unknown keys, wrong types and
//! impossible values are errors that name the file, the line and the dotted key; nothing on the host
//! is touched before the configuration is valid. [`KEYS`] documents every key: `config show`, the
//! README and a test that keeps them in step all use it.

use std::fmt;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::host::{self, ErrorKind, Host};

mod show;
mod validate;

pub use show::{show, KeyDoc, KEYS};

/// Default config path, relative to `--root`.
pub const DEFAULT_PATH: &str = "/etc/nodeprep/config.toml";
/// Default address of the health endpoint: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9477";

/// An `address:port` to listen on. Besides Rust's forms (`1.2.3.4:80`, `[::1]:80`) a bare IPv6
/// address before the last colon (`2600:1f14::5:9478`): what `$(NODE_IP):9478` gives from the
/// downward API on an IPv6 cluster.
pub fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let bare = s.rsplit_once(':').and_then(|(ip, port)| {
        let ip: std::net::Ipv6Addr = ip.parse().ok()?;
        Some(std::net::SocketAddr::from((ip, port.parse::<u16>().ok()?)))
    });
    bare.ok_or_else(|| format!("\"{s}\" is not an address:port"))
}

/// The effective configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Skip discovery and use this instance type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    pub expect: Expect,
    pub limits: LimitsConfig,
    pub storage: StorageConfig,
    pub serve: ServeConfig,
    pub kubernetes: KubernetesConfig,
    pub imds: ImdsConfig,
    pub checks: ChecksConfig,
    pub nvidia: NvidiaConfig,
    pub efa: EfaConfig,
}

/// Overrides of the catalog entry for this instance type.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nvswitch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub efa: Option<EfaCount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_store_disks: Option<u32>,
}

/// `expect.efa`: a count, or `"max"` (every EFA interface the instance type supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EfaCount {
    Count(u32),
    Max,
}

impl Serialize for EfaCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            EfaCount::Count(n) => s.serialize_u32(*n),
            EfaCount::Max => s.serialize_str("max"),
        }
    }
}

impl<'de> Deserialize<'de> for EfaCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EfaCount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a number of EFA devices or "max""#)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EfaCount, E> {
                u32::try_from(v).map(EfaCount::Count).map_err(|_| {
                    E::custom(format!(r#"expected a number of EFA devices or "max", found {v}"#))
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EfaCount, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EfaCount, E> {
                match v {
                    "max" => Ok(EfaCount::Max),
                    _ => Err(E::custom(format!(
                        r#"expected a number of EFA devices or "max", found "{v}""#
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// What the `efa` check judges by, beyond the count.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EfaConfig {
    /// `boot` waits up to this long for attached EFA functions to be bound (p5en initialises
    /// late).
    pub init_wait_seconds: u64,
    /// Per-second rates of hardware counters above which `serve` reports the device (defaults:
    /// the EKS node monitoring agent's).
    pub rate_limits: std::collections::BTreeMap<String, f64>,
    /// `warn` or `fail` when a rate is above its limit.
    pub rate_exceeded: Severity,
    /// The libfabric provider of the on-demand loopback (`efa`; `tcp`/`udp` in tests).
    pub loopback_provider: String,
    /// Its endpoint type (`rdm` for efa).
    pub loopback_endpoint: String,
    /// Its libfabric domains; empty: one per usable EFA device (`<device>-rdm`).
    pub loopback_domains: Vec<String>,
    /// The bandwidth each device must reach.
    pub loopback_min_gbps: f64,
    /// The message size (bytes) and the deadline of each device's run.
    pub loopback_size: u64,
    pub loopback_timeout_seconds: u64,
}

/// The error counters the EKS node monitoring agent watches, and the burst each may grow by in a
/// second before it reports (aws/eks-node-monitoring-agent `monitors/networking/efa/efa.go`).
pub const EFA_RATE_LIMITS: &[(&str, f64)] = &[
    ("rx_drops", 100.0),
    ("rdma_read_wr_err", 100.0),
    ("rdma_write_wr_err", 100.0),
    ("unresponsive_remote_events", 100.0),
    ("impaired_remote_conn_events", 100.0),
    ("retrans_timeout_events", 100.0),
    ("retrans_pkts", 1000.0),
    ("retrans_bytes", 1_000_000.0),
];

impl Default for EfaConfig {
    fn default() -> Self {
        EfaConfig {
            init_wait_seconds: 15,
            rate_limits: EFA_RATE_LIMITS.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            rate_exceeded: Severity::Warn,
            loopback_provider: "efa".into(),
            loopback_endpoint: "rdm".into(),
            loopback_domains: Vec::new(),
            loopback_min_gbps: 20.0,
            loopback_size: 1 << 20,
            loopback_timeout_seconds: 10,
        }
    }
}

/// How a finding counts: `warn` (reported) or `fail` (not ready when the check is required).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Warn,
    Fail,
}

/// `auto | always | never`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Auto,
    Always,
    Never,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Auto => "auto",
            Mode::Always => "always",
            Mode::Never => "never",
        })
    }
}

/// A resource limit: `"unlimited"` or a number of bytes (a TOML integer or a string of digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Limit {
    Bytes(u64),
    Unlimited,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Unlimited => f.write_str("unlimited"),
            Limit::Bytes(b) => write!(f, "{b}"),
        }
    }
}

impl Serialize for Limit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Limit::Unlimited => s.serialize_str("unlimited"),
            // TOML integers stop at i64::MAX: larger byte counts are written as strings of digits,
            // which read back the same.
            Limit::Bytes(b) if i64::try_from(*b).is_err() => s.serialize_str(&b.to_string()),
            Limit::Bytes(b) => s.serialize_u64(*b),
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Limit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""unlimited" or a number of bytes"#)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Limit, E> {
                u64::try_from(v).map(Limit::Bytes).map_err(|_| {
                    E::custom(format!(r#"expected "unlimited" or a number of bytes, found {v}"#))
                })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Limit, E> {
                Ok(Limit::Bytes(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Limit, E> {
                Limit::parse(v).ok_or_else(|| {
                    E::custom(format!(r#"expected "unlimited" or a number of bytes, found "{v}""#))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Limit {
    /// Parses `unlimited`/`infinity` or a decimal byte count.
    pub fn parse(s: &str) -> Option<Limit> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("infinity") {
            return Some(Limit::Unlimited);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().ok().map(Limit::Bytes);
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub apply: Mode,
    pub memlock: Limit,
    pub stack: Limit,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { apply: Mode::Auto, memlock: Limit::Unlimited, stack: Limit::Unlimited }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub enabled: Mode,
    pub devices: Vec<String>,
    pub mount_point: String,
    pub bind: Vec<String>,
    pub wait_seconds: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            enabled: Mode::Auto,
            devices: Vec::new(),
            mount_point: "/mnt/nodeprep".into(),
            bind: [
                "/var/lib/containerd",
                "/var/lib/kubelet",
                "/var/log/pods",
                "/var/lib/soci-snapshotter-grpc",
            ]
            .map(String::from)
            .to_vec(),
            wait_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub listen: String,
    /// A second address that serves only `/metrics` (for a cluster Prometheus); empty: none.
    pub metrics_listen: String,
    pub interval_seconds: u64,
    /// Follow the kernel log between runs: a fatal XID or efa driver error reruns the checks at once.
    pub follow_kernel_log: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: DEFAULT_LISTEN.into(),
            metrics_listen: String::new(),
            interval_seconds: 30,
            follow_kernel_log: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    pub enabled: bool,
    pub node_name: String,
    pub kubeconfig: String,
    pub startup_taint: String,
    /// What shows kubelet can hand the devices to pods before the taint goes.
    pub device_evidence: DeviceEvidence,
    /// The DRA drivers whose ResourceSlices publish the node's devices.
    pub dra_drivers: DraDrivers,
    /// Also set the node repair conditions (AcceleratedHardwareReady, StorageReady,
    /// NetworkingReady) on hardware failures.
    pub repair_conditions: bool,
    /// How long the startup taint may stay before nodeprep says so (an Event, reason
    /// GateTimedOut); 0: never.
    pub gate_deadline_seconds: u64,
    /// What else happens at the deadline.
    pub gate_deadline_action: GateAction,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            enabled: false,
            node_name: String::new(),
            kubeconfig: String::new(),
            startup_taint: String::new(),
            device_evidence: DeviceEvidence::Auto,
            dra_drivers: DraDrivers::default(),
            repair_conditions: false,
            gate_deadline_seconds: 900,
            gate_deadline_action: GateAction::KeepTaint,
        }
    }
}

/// `auto | extended-resources | dra`: where the node's devices show up as usable by pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceEvidence {
    /// Either: extended resources allocatable, or the DRA drivers' ResourceSlices.
    #[default]
    Auto,
    /// `nvidia.com/gpu` / `vpc.amazonaws.com/efa` allocatable (device plugins).
    ExtendedResources,
    /// The DRA drivers' `resource.k8s.io/v1` ResourceSlices for this node.
    Dra,
}

impl fmt::Display for DeviceEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceEvidence::Auto => "auto",
            DeviceEvidence::ExtendedResources => "extended-resources",
            DeviceEvidence::Dra => "dra",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DraDrivers {
    pub gpu: String,
    pub efa: String,
}

impl Default for DraDrivers {
    fn default() -> Self {
        DraDrivers { gpu: "gpu.nvidia.com".into(), efa: "efa.amazonaws.com".into() }
    }
}

/// `keep-taint | repair`: at the gate deadline, besides the Event and the reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateAction {
    /// Keep the taint: a person decides.
    #[default]
    KeepTaint,
    /// Also mark hardware failures repair-eligible (the node repair conditions False), so
    /// Karpenter's node repair or EKS auto repair replaces the node.
    Repair,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImdsConfig {
    pub enabled: Mode,
    pub endpoint: String,
    pub timeout_ms: u64,
}

impl Default for ImdsConfig {
    fn default() -> Self {
        ImdsConfig {
            enabled: Mode::Auto,
            endpoint: "http://169.254.169.254".into(),
            timeout_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    pub timeout_seconds: u64,
    /// The most bytes any one read of a host file takes (a bigger file is refused, named).
    pub max_read_bytes: u64,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig { timeout_seconds: 10, max_read_bytes: crate::host::DEFAULT_MAX_READ }
    }
}

/// The XIDs the EKS node monitoring agent treats as fatal.
pub const DEFAULT_FATAL_XIDS: &[u32] = &[
    46, 48, 54, 62, 63, 64, 74, 79, 95, 109, 110, 119, 120, 136, 140, 142, 143, 151, 155, 156, 158,
];

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NvidiaConfig {
    pub fatal_xids: Vec<u32>,
    pub nvml_timeout_ms: u64,
}

impl Default for NvidiaConfig {
    fn default() -> Self {
        NvidiaConfig { fatal_xids: DEFAULT_FATAL_XIDS.to_vec(), nvml_timeout_ms: 2000 }
    }
}

/// A configuration error: names the file, the line (when the key is in the file) and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}{}{}: {message}",
    .file.display(),
    .line.map(|l| format!(":{l}")).unwrap_or_default(),
    .key.as_ref().map(|k| format!(": key `{k}`")).unwrap_or_default()
)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The file, read.
    File(PathBuf),
    /// The default path, absent: built-in defaults.
    Defaults(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Defaults(p) => write!(f, "built-in defaults ({} not present)", p.display()),
        }
    }
}

/// Loads the configuration. `explicit` is `--config` (a path on this machine, which must exist);
/// otherwise `<root>/etc/nodeprep/config.toml`, which may be absent.
pub fn load(host: &Host, explicit: Option<&Path>) -> Result<(Config, Origin), ConfigError> {
    let (path, must_exist, read) = match explicit {
        Some(p) => (p.to_path_buf(), true, host::read_local(p)),
        None => {
            let path = PathBuf::from(host.display(DEFAULT_PATH));
            let read = host.read_bytes(DEFAULT_PATH).map_err(|e| match e.kind {
                ErrorKind::Absent => std::io::Error::from(std::io::ErrorKind::NotFound),
                _ => std::io::Error::other(e.detail),
            });
            (path, false, read)
        }
    };
    match read {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|e| ConfigError {
                file: path.clone(),
                line: None,
                key: None,
                message: format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            })?;
            let cfg = parse(&text, &path)?;
            Ok((cfg, Origin::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            Ok((Config::default(), Origin::Defaults(path)))
        }
        Err(e) => Err(ConfigError {
            file: path,
            line: None,
            key: None,
            message: if e.kind() == std::io::ErrorKind::NotFound {
                "cannot read: no such file (a file named with --config/NODEPREP_CONFIG must exist)"
                    .into()
            } else {
                format!("cannot read: {e}")
            },
        }),
    }
}

/// Parses and validates configuration text. `file` is used in error messages only.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let err = |line, key, message| ConfigError { file: file.to_path_buf(), line, key, message };
    // Syntax first, with toml_edit: it keeps spans for keys, which locate later errors.
    let doc = toml_edit::ImDocument::parse(text.to_string()).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        err(line, None, format!("invalid TOML: {}", e.message().trim()))
    })?;
    let mut cfg: Config = toml::from_str(text).map_err(|e| {
        let (line, key) = match e.span() {
            Some(s) => (Some(line_of(text, s.start)), key_at(&doc, s.start)),
            None => (None, None),
        };
        err(line, key, e.message().trim().to_string())
    })?;
    if let Err(blame) = validate::validate(&cfg) {
        // The first key the file sets, with its message; else the first (a default is wrong
        // together with another key's value).
        let (key, message, line) = blame
            .iter()
            .find_map(|(k, m)| key_line(&doc, text, k).map(|l| (k, m, Some(l))))
            .unwrap_or_else(|| (&blame[0].0, &blame[0].1, None));
        return Err(err(line, Some(key.to_string()), message.clone()));
    }
    validate::normalise(&mut cfg);
    Ok(cfg)
}

/// Checks an instance type given on the command line by the config key's rule; the message says
/// what is wrong.
pub fn check_instance_type(t: &str) -> Result<(), String> {
    validate::instance_type(t)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The dotted key whose key or value contains `offset`, most specific first.
fn key_at(doc: &toml_edit::ImDocument<String>, offset: usize) -> Option<String> {
    fn walk(t: &dyn toml_edit::TableLike, offset: usize, prefix: &str) -> Option<String> {
        for (k, item) in t.iter() {
            let path = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
            if let Some(sub) = item.as_table_like() {
                if let Some(found) = walk(sub, offset, &path) {
                    return Some(found);
                }
            }
            let in_key = t.key(k).and_then(|k| k.span()).is_some_and(|s| s.contains(&offset));
            let in_val =
                item.span().is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1));
            // No key inside it matched: the error is about this key (a table where a value belongs).
            if in_key || in_val {
                return Some(path);
            }
        }
        None
    }
    walk(doc.as_table(), offset, "")
}

/// The line of a dotted key in the file, if the file sets it.
fn key_line(doc: &toml_edit::ImDocument<String>, text: &str, key: &str) -> Option<usize> {
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (k, item) = table.get_key_value(part)?;
        if i + 1 == parts.len() {
            let span = k.span().or_else(|| item.span())?;
            return Some(line_of(text, span.start));
        }
        table = item.as_table_like()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("/etc/nodeprep/config.toml"))
    }

    #[test]
    fn listen_addresses_take_bare_ipv6_from_the_downward_api() {
        assert_eq!(parse_listen("0.0.0.0:9478").unwrap().to_string(), "0.0.0.0:9478");
        assert_eq!(parse_listen("[::1]:9478").unwrap().to_string(), "[::1]:9478");
        // $(NODE_IP):9478 on an IPv6 cluster.
        assert_eq!(
            parse_listen("2600:1f14:abc::5:9478").unwrap().to_string(),
            "[2600:1f14:abc::5]:9478"
        );
        for bad in ["node-ip:9478", "10.0.0.1", "10.0.0.1:99999", "2600:1f14::5", ""] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = p("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.limits.memlock, Limit::Unlimited);
        assert_eq!(c.storage.mount_point, "/mnt/nodeprep");
        assert_eq!(c.serve.listen, DEFAULT_LISTEN);
    }

    #[test]
    fn full_example_parses() {
        let c = p(r#"
instance_type = "p5.48xlarge"
[expect]
gpus = 8
efa = 32
instance_store_disks = 8
[limits]
apply = "always"
memlock = 1073741824
stack = "unlimited"
[storage]
enabled = "never"
devices = ["/dev/nvme1n1"]
[kubernetes]
enabled = true
startup_taint = "nodeprep.io/not-ready"
"#)
        .unwrap();
        assert_eq!(c.instance_type.as_deref(), Some("p5.48xlarge"));
        assert_eq!(c.expect.efa, Some(EfaCount::Count(32)));
        assert_eq!(c.limits.memlock, Limit::Bytes(1 << 30));
        assert_eq!(c.limits.apply, Mode::Always);
        assert_eq!(c.storage.enabled, Mode::Never);
        assert!(c.kubernetes.enabled);
    }

    /// A table of bad files, each with the message a user must see.
    #[test]
    fn bad_files_name_file_line_and_key() {
        let cases: &[(&str, &str)] = &[
            ("bogus = 1\n", "/etc/nodeprep/config.toml:1: key `bogus`: unknown field `bogus`"),
            ("[limits]\nmemlok = 1\n", "/etc/nodeprep/config.toml:2: key `limits.memlok`: unknown field `memlok`"),
            ("[limit]\nmemlock = 1\n", "/etc/nodeprep/config.toml:1: key `limit`: unknown field `limit`"),
            (
                "[limits]\nmemlock = \"lots\"\n",
                "/etc/nodeprep/config.toml:2: key `limits.memlock`: expected \"unlimited\" or a number of bytes, found \"lots\"",
            ),
            (
                "[limits]\nmemlock = -5\n",
                "/etc/nodeprep/config.toml:2: key `limits.memlock`: expected \"unlimited\" or a number of bytes, found -5",
            ),
            ("[limits]\nstack = 4096\n", "/etc/nodeprep/config.toml:2: key `limits.stack`: 4096 bytes is too small"),
            (
                "\n[limits]\napply = \"sometimes\"\n",
                "/etc/nodeprep/config.toml:3: key `limits.apply`: unknown variant `sometimes`, expected one of `auto`, `always`, `never`",
            ),
            (
                "[expect]\ngpus = \"eight\"\n",
                "/etc/nodeprep/config.toml:2: key `expect.gpus`: invalid type: string \"eight\", expected u32",
            ),
            ("[expect]\nefa = 320\n", "/etc/nodeprep/config.toml:2: key `expect.efa`: 320 is impossible"),
            ("instance_type = \"P5 48xl\"\n", "/etc/nodeprep/config.toml:1: key `instance_type`: \"P5 48xl\" is not an EC2 instance type"),
            ("[storage]\nmount_point = \"/\"\n", "/etc/nodeprep/config.toml:2: key `storage.mount_point`: \"/\" is a system directory"),
            // Spellings of a system directory are that directory (normalised before comparing).
            ("[storage]\nmount_point = \"/etc/.\"\n", "/etc/nodeprep/config.toml:2: key `storage.mount_point`: \"/etc/.\" is a system directory (/etc)"),
            ("[storage]\nmount_point = \"/var//lib/\"\n", "/etc/nodeprep/config.toml:2: key `storage.mount_point`: \"/var//lib/\" is a system directory (/var/lib)"),
            ("[storage]\nmount_point = \"/.\"\n", "/etc/nodeprep/config.toml:2: key `storage.mount_point`: \"/.\" is a system directory (/)"),
            ("[storage]\nmount_point = \"/mnt/a/../../etc\"\n", "/etc/nodeprep/config.toml:2: key `storage.mount_point`: \"/mnt/a/../../etc\" must be an absolute path without .."),
            ("[storage]\nmount_point = \"/mnt/x\\u0000y\"\n", "/etc/nodeprep/config.toml:2: key `storage.mount_point`: \"/mnt/x\\0y\" must be an absolute path without .. components or NUL bytes"),
            ("[storage]\nbind = [\"/var/./lib\"]\n", "/etc/nodeprep/config.toml:2: key `storage.bind`: \"/var/./lib\" must be an absolute path below a system directory"),
            ("[storage]\nbind = [\"/var/lib/kubelet\", \"/var//lib/kubelet/\"]\n", "/etc/nodeprep/config.toml:2: key `storage.bind`: \"/var//lib/kubelet/\" is listed twice (as /var/lib/kubelet)"),
            ("[storage]\ndevices = [\"/dev/nvme1n1\", \"/dev/nvme1n1/\"]\n", "/etc/nodeprep/config.toml:2: key `storage.devices`: \"/dev/nvme1n1/\" is listed twice (as \"/dev/nvme1n1\" too; both are /dev/nvme1n1)"),
            ("[storage]\ndevices = [\"/dev/\"]\n", "/etc/nodeprep/config.toml:2: key `storage.devices`: \"/dev/\" is not a block device path under /dev/"),
            ("[storage]\nmount_point = \"/data\"\nbind = [\"/data/./x\"]\n", "/etc/nodeprep/config.toml:3: key `storage.bind`: \"/data/./x\" overlaps storage.mount_point"),
            (
                "[storage]\nmount_point = \"mnt/x\"\n",
                "/etc/nodeprep/config.toml:2: key `storage.mount_point`: \"mnt/x\" must be an absolute path",
            ),
            (
                "[storage]\nbind = [\"/var/lib/kubelet\", \"/var/lib/kubelet\"]\n",
                "/etc/nodeprep/config.toml:2: key `storage.bind`: \"/var/lib/kubelet\" is listed twice",
            ),
            (
                "[storage]\nmount_point = \"/data\"\nbind = [\"/data/x\"]\n",
                "/etc/nodeprep/config.toml:3: key `storage.bind`: \"/data/x\" overlaps storage.mount_point",
            ),
            (
                "[storage]\ndevices = [\"nvme1n1\"]\n",
                "/etc/nodeprep/config.toml:2: key `storage.devices`: \"nvme1n1\" is not a block device path under /dev/",
            ),
            (
                "[storage]\ndevices = \"/dev/nvme1n1\"\n",
                "/etc/nodeprep/config.toml:2: key `storage.devices`: invalid type: string \"/dev/nvme1n1\", expected a sequence",
            ),
            ("[serve]\nlisten = \"localhost\"\n", "/etc/nodeprep/config.toml:2: key `serve.listen`: \"localhost\" is not an address:port"),
            ("[serve]\ninterval_seconds = 0\n", "/etc/nodeprep/config.toml:2: key `serve.interval_seconds`: 0 is out of range 1..86400"),
            (
                "[kubernetes]\nnode_name = \"Node_1\"\n",
                "/etc/nodeprep/config.toml:2: key `kubernetes.node_name`: \"Node_1\" is not a valid node name",
            ),
            (
                "[kubernetes]\nstartup_taint = \"a/b/c!\"\n",
                "/etc/nodeprep/config.toml:2: key `kubernetes.startup_taint`: \"a/b/c!\" is not a valid taint key",
            ),
            (
                "[kubernetes]\nenabled = \"yes\"\n",
                "/etc/nodeprep/config.toml:2: key `kubernetes.enabled`: invalid type: string \"yes\", expected a boolean",
            ),
            (
                "[imds]\nendpoint = \"https://169.254.169.254\"\n",
                "/etc/nodeprep/config.toml:2: key `imds.endpoint`: \"https://169.254.169.254\" must be a plain http:// URL",
            ),
            ("[checks]\ntimeout_seconds = 0\n", "/etc/nodeprep/config.toml:2: key `checks.timeout_seconds`: 0 is out of range 1..300"),
            ("[nvidia]\nfatal_xids = [79, 0]\n", "/etc/nodeprep/config.toml:2: key `nvidia.fatal_xids`: 0 is not an XID (1..999)"),
            ("[nvidia]\nfatal_xids = [79, 79]\n", "/etc/nodeprep/config.toml:2: key `nvidia.fatal_xids`: 79 is listed twice"),
            (
                "[nvidia]\nfatal_xids = 79\n",
                "/etc/nodeprep/config.toml:2: key `nvidia.fatal_xids`: invalid type: integer `79`, expected a sequence",
            ),
            (
                "[nvidia]\nnvml_timeout_ms = 10\n",
                "/etc/nodeprep/config.toml:2: key `nvidia.nvml_timeout_ms`: 10 is out of range 100..60000",
            ),
            (
                "[checks]\ntimeout_seconds = 2\n[nvidia]\nnvml_timeout_ms = 5000\n",
                "/etc/nodeprep/config.toml:4: key `nvidia.nvml_timeout_ms`: 5000 ms is not below checks.timeout_seconds (2 s)",
            ),
            (
                "[checks]\ntimeout_seconds = 1\n",
                "/etc/nodeprep/config.toml:2: key `checks.timeout_seconds`: 1 s is not above nvidia.nvml_timeout_ms (2000 ms)",
            ),
            (
                "[storage]\nmount_point = \"/var/lib/kubelet\"\n",
                "/etc/nodeprep/config.toml:2: key `storage.mount_point`: \"/var/lib/kubelet\" overlaps \"/var/lib/kubelet\" in storage.bind",
            ),
            ("[limits\nmemlock = 1\n", "/etc/nodeprep/config.toml:1: invalid TOML"),
            ("a = 1\na = 2\n", "/etc/nodeprep/config.toml:2: invalid TOML: duplicate key `a`"),
        ];
        for (text, want) in cases {
            let got = p(text).expect_err(text).to_string();
            assert!(got.starts_with(want), "config {text:?}\n  got:  {got}\n  want: {want}…");
        }
    }

    #[test]
    fn storage_paths_are_kept_in_their_normal_spelling() {
        let c = p("[storage]\nmount_point = \"/mnt//nodeprep/./\"\ndevices = [\"/dev/nvme1n1/\"]\nbind = [\"/var/lib/./kubelet/\"]\n").unwrap();
        assert_eq!(c.storage.mount_point, "/mnt/nodeprep");
        assert_eq!(c.storage.devices, ["/dev/nvme1n1"]);
        assert_eq!(c.storage.bind, ["/var/lib/kubelet"]);
    }

    #[test]
    fn explicit_missing_file_is_an_error_default_missing_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, origin) = load(&Host::new(dir.path()), None).unwrap();
        assert_eq!(cfg, Config::default());
        assert!(matches!(origin, Origin::Defaults(_)));
        let e = load(&Host::new(dir.path()), Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(e.to_string().contains("nope.toml: cannot read: no such file"), "{e}");
        std::fs::write(dir.path().join("bin.toml"), [0xffu8, 0xfe]).unwrap();
        let e = load(&Host::new(dir.path()), Some(&dir.path().join("bin.toml"))).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    #[test]
    fn show_documents_every_key_with_its_default() {
        let shown = show(&Config::default(), &Origin::Defaults(DEFAULT_PATH.into()));
        for k in KEYS {
            let name = k.key.rsplit('.').next().unwrap();
            assert!(shown.contains(k.doc), "{} undocumented", k.key);
            assert!(shown.contains(&format!("{name} =")), "{} not shown", k.key);
        }
        assert!(shown.contains("memlock = \"unlimited\""));
        assert!(shown.contains("listen = \"127.0.0.1:9477\""));
        assert!(!shown.contains(". (changed)"), "{shown}");
        // The output is itself a valid config that means the same thing.
        assert_eq!(p(&shown).unwrap(), Config::default());
    }

    #[test]
    fn show_marks_changed_keys() {
        let c = p("[limits]\nmemlock = 1073741824\n").unwrap();
        let shown = show(&c, &Origin::File("/x".into()));
        assert!(
            shown.contains("Default: \"unlimited\". (changed)\nmemlock = 1073741824"),
            "{shown}"
        );
    }

    /// Every key that `Config` can hold is in KEYS, so docs cannot fall behind the struct.
    #[test]
    fn keys_cover_the_whole_struct() {
        let full = p("instance_type = \"p5.48xlarge\"\n[expect]\ngpus = 1\ngpu_model = \"H100\"\nnvswitch = true\nefa = 1\ninstance_store_disks = 1\n").unwrap();
        let v = toml::Value::try_from(&full).unwrap();
        let mut leaves = Vec::new();
        fn collect(v: &toml::Value, prefix: String, out: &mut Vec<String>) {
            // A map-valued key (efa.rate_limits) is one documented key.
            match v.as_table().filter(|_| prefix != "efa.rate_limits") {
                Some(t) => t.iter().for_each(|(k, v)| {
                    collect(
                        v,
                        if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") },
                        out,
                    )
                }),
                None => out.push(prefix),
            }
        }
        collect(&v, String::new(), &mut leaves);
        let documented: Vec<&str> = KEYS.iter().map(|k| k.key).collect();
        for leaf in &leaves {
            assert!(documented.contains(&leaf.as_str()), "{leaf} is not in config::KEYS");
        }
        assert_eq!(leaves.len(), KEYS.len());
    }
}
