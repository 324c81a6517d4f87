//! Kubernetes updates from `serve` (opt-in, `[kubernetes] enabled = true`). Every check run:
//!
//! - **Conditions** the Node Readiness Controller can consume: `nodeprep.io/Ready` and one per
//!   check, `nodeprep.io/<Check>Ready` (`nodeprep.io/GPUReady`, `nodeprep.io/EFAReady`,
//!   `nodeprep.io/StorageReady`, `nodeprep.io/LimitsReady`, ...): `True` = healthy (passed or
//!   warned), `False` = failed, `Unknown` = skipped; CamelCase reasons. `nodeprep.io/Ready` is
//!   `True` only when the report is ready *and* the devices are usable by pods (below).
//!   `lastTransitionTime` changes only with the status. Conditions are merged by type with a
//!   strategic merge patch, so other writers' conditions are never touched.
//! - **The startup taint** (`kubernetes.startup_taint`, a Karpenter NodePool's `startupTaints`) is
//!   removed only when the report is ready, the node is registered (`karpenter.sh/registered=true`
//!   on a node with Karpenter labels: Karpenter re-merges startup taints until then), and the
//!   expected GPUs and EFA devices are usable: `nvidia.com/gpu` / `vpc.amazonaws.com/efa`
//!   allocatable, or published by the DRA drivers' `resource.k8s.io/v1` ResourceSlices for this
//!   node (`kubernetes.device_evidence`). The patch carries the node's resourceVersion: a
//!   concurrent change gives 409 and the removal is retried on fresh data. Other taints (and
//!   `karpenter.sh/unregistered`) are never touched.
//! - **The gate deadline**: with the taint still on `kubernetes.gate_deadline_seconds` after the
//!   Node was created, one Warning Event on the Node names the one blocker, `nodeprep.io/Ready`'s
//!   reason becomes `GateTimedOut`, and the taint stays (or, with `gate_deadline_action = "repair"`,
//!   hardware failures become repair-eligible as below).
//! - **The repair bridge** (`kubernetes.repair_conditions`): hardware failures (a check's
//!   `hardware_fault`) also set `AcceleratedHardwareReady` (nvidia), `NetworkingReady` (efa) or
//!   `StorageReady` (storage) `False`, the conditions Karpenter's node repair and EKS auto repair
//!   act on; configuration mistakes never do. When another writer (the EKS node monitoring agent)
//!   already owns one of them, the bridge does not start, and says so once.
//!
//! The API being down never stops the endpoints: updates are retried with backoff (1 s doubling to
//! 60 s) from the latest report. nodeprep reads the Node on every run and watches nothing, so a
//! dropped connection costs one retry.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::capability::device_plugins::{EFA, GPU};
use crate::capability::Context;
use crate::config::{DeviceEvidence, GateAction, KubernetesConfig};
use crate::host::{Host, HostError};
use crate::report::{Report, Status};

const API_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest condition message nodeprep writes: a summary naming many devices is cut here.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes at a character boundary, with `…` where it was cut.
pub fn shorten(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let ellipsis = "…";
    let mut end = max.saturating_sub(ellipsis.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What went wrong talking to Kubernetes: each names what was done, to which node, at which API
/// server, with the whole cause.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("no node name: kubernetes.node_name and NODE_NAME are empty, and {0}")]
    NoHostname(HostError),
    #[error("no node name: the hostname is empty; set kubernetes.node_name")]
    EmptyHostname,
    #[error("kubernetes: no in-cluster service account ({0}); set kubernetes.kubeconfig")]
    InCluster(String),
    #[error("kubernetes.kubeconfig {path}: {cause}")]
    Kubeconfig { path: String, cause: String },
    #[error("kubernetes client: {0}")]
    Client(String),
    #[error("{what} {node} at {server}: {cause}")]
    Api { what: String, node: String, server: String, cause: String },
    #[error(
        "removing taint {taint} from node {node} at {server}: still conflicting after 5 attempts"
    )]
    Conflict { taint: String, node: String, server: String },
}

/// The node name: config, then `NODE_NAME`, then the host's hostname.
pub fn node_name(cfg: &KubernetesConfig, host: &Host) -> Result<String, KubeError> {
    if !cfg.node_name.is_empty() {
        return Ok(cfg.node_name.clone());
    }
    if let Ok(n) = std::env::var("NODE_NAME") {
        if !n.is_empty() {
            return Ok(n);
        }
    }
    match host.read_attr("/proc/sys/kernel/hostname") {
        Ok(h) if h.is_empty() => Err(KubeError::EmptyHostname),
        Ok(h) => Ok(h),
        Err(e) => Err(KubeError::NoHostname(e)),
    }
}

/// Builds the API client from the kubeconfig (a host path) or the in-cluster service account, and
/// says which API server it talks to (for logs and errors).
pub async fn client(cfg: &KubernetesConfig, host: &Host) -> Result<(Client, String), KubeError> {
    let mut config = if cfg.kubeconfig.is_empty() {
        kube::Config::incluster().map_err(|e| KubeError::InCluster(crate::error_chain(&e)))?
    } else {
        let path = host.display(&cfg.kubeconfig);
        let bad = |cause: String| KubeError::Kubeconfig { path: path.clone(), cause };
        let text = host.read_string(&cfg.kubeconfig).map_err(|e| bad(e.detail))?;
        let kc = Kubeconfig::from_yaml(&text).map_err(|e| bad(crate::error_chain(&e)))?;
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| bad(crate::error_chain(&e)))?
    };
    config.connect_timeout = Some(API_TIMEOUT);
    config.read_timeout = Some(API_TIMEOUT);
    config.write_timeout = Some(API_TIMEOUT);
    let server = config.cluster_url.to_string();
    Client::try_from(config)
        .map(|c| (c, server))
        .map_err(|e| KubeError::Client(crate::error_chain(&e)))
}

/// The prefix of every condition nodeprep owns.
pub const CONDITION_PREFIX: &str = "nodeprep.io/";
/// The node-wide condition: ready, and the devices usable by pods.
pub const READY_CONDITION: &str = "nodeprep.io/Ready";
/// Reasons of the repair conditions nodeprep writes: how it knows its own from another writer's.
const REPAIR_REASON_FAULT: &str = "NodeprepHardwareFault";
const REPAIR_REASON_OK: &str = "NodeprepHardwareHealthy";
/// The conditions Karpenter's node repair and EKS auto repair act on, and the check whose
/// hardware faults set each.
pub const REPAIR_CONDITIONS: [(&str, &str); 3] = [
    ("AcceleratedHardwareReady", "nvidia"),
    ("NetworkingReady", "efa"),
    ("StorageReady", "storage"),
];
/// Karpenter's label once it has registered the node (it re-merges startup taints until then).
pub const KARPENTER_REGISTERED: &str = "karpenter.sh/registered";

/// `nvidia` → `nodeprep.io/GPUReady`, `device-plugins` → `nodeprep.io/DevicePluginsReady`.
pub fn condition_type(check: &str) -> String {
    let camel: String = check
        .split(['-', '_'])
        .map(|w| match w {
            "nvidia" | "gpu" => "GPU".to_string(),
            "efa" => "EFA".to_string(),
            w => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect();
    format!("{CONDITION_PREFIX}{camel}Ready")
}

/// What the gate is waiting for: the one thing a person must look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// A required check fails: its name and summary.
    Check { name: String, summary: String },
    /// The expected devices are not usable by pods yet.
    Devices(String),
    /// Karpenter has not registered the node (only the taint waits for this).
    Unregistered,
}

impl Blocker {
    pub fn text(&self) -> String {
        match self {
            Blocker::Check { name, summary } => format!("{name}: {summary}"),
            Blocker::Devices(why) => why.clone(),
            Blocker::Unregistered => format!(
                "Karpenter has not registered the node (no {KARPENTER_REGISTERED}=true label)"
            ),
        }
    }
}

/// The first required check that fails, as a blocker.
pub fn failing_check(report: &Report) -> Option<Blocker> {
    report
        .checks
        .iter()
        .find(|c| c.blocks_readiness())
        .map(|c| Blocker::Check { name: c.name.clone(), summary: c.summary.clone() })
}

/// Whether the node waits for Karpenter's registration: it has Karpenter's labels but not
/// `karpenter.sh/registered=true`. A node without Karpenter labels never waits.
pub fn awaits_registration(node: &Node) -> bool {
    let Some(labels) = node.metadata.labels.as_ref() else { return false };
    let karpenter = labels.keys().any(|k| k.starts_with("karpenter.sh/"));
    karpenter && labels.get(KARPENTER_REGISTERED).map(String::as_str) != Some("true")
}

/// Devices the DRA drivers publish for this node, by driver, counting only pools whose every slice
/// of the newest generation is there (`resourceSliceCount`), as the scheduler sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DraDevices {
    pub by_driver: std::collections::BTreeMap<String, u64>,
    /// Pools still being published: driver and pool name.
    pub incomplete: Vec<(String, String)>,
}

/// Counts the devices of `resource.k8s.io/v1` ResourceSlices (as JSON objects).
pub fn dra_devices(slices: &[Value]) -> DraDevices {
    use std::collections::BTreeMap;
    // (driver, pool) → (generation, slice count wanted, slices seen at that generation, devices)
    let mut pools: BTreeMap<(String, String), (i64, i64, i64, u64)> = BTreeMap::new();
    for s in slices {
        let spec = &s["spec"];
        let Some(driver) = spec["driver"].as_str() else { continue };
        let pool = spec["pool"]["name"].as_str().unwrap_or("").to_string();
        let generation = spec["pool"]["generation"].as_i64().unwrap_or(0);
        let count = spec["pool"]["resourceSliceCount"].as_i64().unwrap_or(1);
        let devices = spec["devices"].as_array().map_or(0, |d| d.len() as u64);
        let e = pools.entry((driver.to_string(), pool)).or_insert((generation, count, 0, 0));
        if generation > e.0 {
            *e = (generation, count, 0, 0);
        }
        if generation == e.0 {
            e.2 += 1;
            e.3 += devices;
        }
    }
    let mut out = DraDevices::default();
    for ((driver, pool), (_, want, seen, devices)) in pools {
        if seen < want {
            out.incomplete.push((driver, pool));
        } else {
            *out.by_driver.entry(driver).or_default() += devices;
        }
    }
    out
}

/// What shows the devices usable by pods, for one kind of device.
pub struct DeviceWant<'a> {
    /// The extended resource, e.g. `nvidia.com/gpu`.
    pub resource: &'a str,
    /// The DRA driver publishing the same devices, e.g. `gpu.nvidia.com`.
    pub driver: &'a str,
    pub want: Option<u32>,
}

/// Why the expected devices are not usable yet (`None`: they are), from kubelet's allocatable
/// and the DRA drivers' ResourceSlices (`None`: not looked at / not available), as
/// `kubernetes.device_evidence` says.
pub fn device_shortfall(
    node: &Node,
    dra: Option<&DraDevices>,
    wants: &[DeviceWant],
    evidence: DeviceEvidence,
) -> Option<String> {
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    for w in wants {
        let Some(want) = w.want.filter(|n| *n > 0).map(u64::from) else { continue };
        let ext = alloc
            .and_then(|a| a.get(w.resource))
            .and_then(|q| q.0.parse::<u64>().ok())
            .unwrap_or(0);
        let slices = dra.map(|d| d.by_driver.get(w.driver).copied().unwrap_or(0));
        let pending = dra.is_some_and(|d| d.incomplete.iter().any(|(dr, _)| dr == w.driver));
        let ok = match evidence {
            DeviceEvidence::ExtendedResources => ext >= want,
            DeviceEvidence::Dra => slices.unwrap_or(0) >= want,
            DeviceEvidence::Auto => ext >= want || slices.unwrap_or(0) >= want,
        };
        if ok {
            continue;
        }
        let dra_text = match (slices, pending) {
            (_, true) => format!("{} ResourceSlices still being published", w.driver),
            (Some(n), false) => format!("{} publishes {n}", w.driver),
            (None, false) => "no ResourceSlices readable".into(),
        };
        return Some(match evidence {
            DeviceEvidence::ExtendedResources => {
                format!("kubelet reports {} allocatable {ext}, expected {want}", w.resource)
            }
            DeviceEvidence::Dra => format!("{dra_text} devices, expected {want}"),
            DeviceEvidence::Auto => format!(
                "kubelet reports {} allocatable {ext} and {dra_text}, expected {want}",
                w.resource
            ),
        });
    }
    None
}

/// The gate's state this run, for the conditions.
#[derive(Debug, Clone, Default)]
pub struct GateView {
    /// Why `nodeprep.io/Ready` is not True beyond the report: devices not usable.
    pub devices: Option<String>,
    /// The deadline passed with the taint still on: what blocks it.
    pub timed_out: Option<String>,
}

/// The conditions for a report, keeping `lastTransitionTime` of existing conditions whose status
/// did not change. `repair`: also the repair conditions, from the checks' hardware faults.
pub fn conditions(
    report: &Report,
    existing: &[Value],
    now: &str,
    gate: &GateView,
    repair: bool,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut push = |kind: String, status: &str, reason: &str, message: String| {
        let prev =
            existing.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(kind.as_str()));
        let transition = match prev {
            Some(p) if p.get("status").and_then(Value::as_str) == Some(status) => {
                p.get("lastTransitionTime").cloned().unwrap_or_else(|| now.into())
            }
            _ => now.into(),
        };
        let message = shorten(message, MAX_MESSAGE_BYTES);
        out.push(json!({"type": kind, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": transition}));
    };
    for c in &report.checks {
        let (status, reason) = match c.status {
            Status::Pass => ("True", "CheckPassed"),
            Status::Warn => ("True", "CheckPassedWithWarnings"),
            Status::Fail => ("False", "CheckFailed"),
            Status::Skip => ("Unknown", "CheckSkipped"),
        };
        push(condition_type(&c.name), status, reason, c.summary.clone());
    }
    let failing: Vec<&str> =
        report.checks.iter().filter(|c| c.blocks_readiness()).map(|c| c.name.as_str()).collect();
    let (status, mut reason, mut message) = match (&gate.devices, report.ready) {
        (_, false) => ("False", "RequiredChecksFailed", format!("failing: {}", failing.join(", "))),
        (Some(why), true) => ("False", "DevicesNotUsable", why.clone()),
        (None, true) => {
            ("True", "AllRequiredChecksPassed", "every required nodeprep check passed".into())
        }
    };
    if let Some(blocker) = &gate.timed_out {
        reason = "GateTimedOut";
        message = format!("startup taint still on past the gate deadline: {blocker}");
    }
    push(READY_CONDITION.into(), status, reason, message);
    if repair {
        for (kind, check) in REPAIR_CONDITIONS {
            let fault = report
                .checks
                .iter()
                .find(|c| c.name == check && c.status == Status::Fail)
                .and_then(|c| c.hardware_fault.clone());
            match fault {
                Some(what) => push(kind.into(), "False", REPAIR_REASON_FAULT, what),
                None => push(
                    kind.into(),
                    "True",
                    REPAIR_REASON_OK,
                    format!("nodeprep: no hardware fault ({check})"),
                ),
            }
        }
    }
    out
}

/// The repair condition another writer owns (its type, reason and message), if any: one whose
/// reason is not nodeprep's.
pub fn foreign_repair_condition(existing: &[Value]) -> Option<(String, String, String)> {
    existing.iter().find_map(|c| {
        let kind = c.get("type")?.as_str()?;
        if !REPAIR_CONDITIONS.iter().any(|(k, _)| *k == kind) {
            return None;
        }
        let reason = c.get("reason").and_then(Value::as_str).unwrap_or("");
        (!reason.starts_with("Nodeprep")).then(|| {
            let message = c.get("message").and_then(Value::as_str).unwrap_or("").to_string();
            (kind.to_string(), reason.to_string(), message)
        })
    })
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// The ResourceSlice API (`resource.k8s.io/v1`).
fn resource_slices() -> ApiResource {
    ApiResource {
        group: "resource.k8s.io".into(),
        version: "v1".into(),
        api_version: "resource.k8s.io/v1".into(),
        kind: "ResourceSlice".into(),
        plural: "resourceslices".into(),
    }
}

/// What the bridge may do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bridge {
    Off,
    On,
    /// Another writer owns a repair condition: never started.
    Refused,
}

pub struct Sync {
    nodes: Api<Node>,
    slices: Api<DynamicObject>,
    events: Api<Event>,
    /// The API server's URL, named in every error.
    server: String,
    name: String,
    cfg: KubernetesConfig,
    gpus: Option<u32>,
    efa: Option<u32>,
    bridge: std::sync::Mutex<Bridge>,
    /// The blocker an Event was sent for (one Event per blocker).
    event_sent: std::sync::Mutex<Option<String>>,
    started: std::time::SystemTime,
}

impl Sync {
    pub fn new(
        client: Client,
        server: String,
        name: String,
        cfg: &KubernetesConfig,
        ctx: &Context,
    ) -> Self {
        Sync {
            nodes: Api::all(client.clone()),
            slices: Api::all_with(client.clone(), &resource_slices()),
            events: Api::namespaced(client, "default"),
            server,
            name,
            cfg: cfg.clone(),
            gpus: ctx.expected.gpus,
            efa: ctx.expected.efa,
            bridge: std::sync::Mutex::new(if cfg.repair_conditions {
                Bridge::On
            } else {
                Bridge::Off
            }),
            event_sent: std::sync::Mutex::new(None),
            started: std::time::SystemTime::now(),
        }
    }

    fn taint_key(&self) -> Option<&str> {
        (!self.cfg.startup_taint.is_empty()).then_some(self.cfg.startup_taint.as_str())
    }

    /// The devices the DRA drivers publish for this node; `None` when not needed or not readable
    /// (a cluster without `resource.k8s.io/v1` answers 404: no DRA there).
    async fn dra(&self) -> Option<DraDevices> {
        if self.cfg.device_evidence == DeviceEvidence::ExtendedResources {
            return None;
        }
        let lp = ListParams::default().fields(&format!("spec.nodeName={}", self.name));
        match self.slices.list(&lp).await {
            Ok(list) => {
                let slices: Vec<Value> =
                    list.items.iter().filter_map(|o| serde_json::to_value(o).ok()).collect();
                let d = dra_devices(&slices);
                tracing::debug!(node = %self.name, slices = slices.len(), devices = ?d.by_driver, "ResourceSlices read");
                Some(d)
            }
            Err(e) => {
                tracing::debug!(node = %self.name, error = %crate::error_chain(&e), "ResourceSlices not readable");
                None
            }
        }
    }

    /// When the gate's deadline passes: the Node's creation plus the deadline (serve's start when
    /// the Node does not say).
    fn deadline_passed(&self, node: &Node) -> bool {
        if self.cfg.gate_deadline_seconds == 0 {
            return false;
        }
        let created = node
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| humantime::parse_rfc3339(&t.0.to_string()).ok())
            .unwrap_or(self.started);
        created.elapsed().is_ok_and(|e| e.as_secs() >= self.cfg.gate_deadline_seconds)
    }

    /// Publishes the conditions for `report`; removes the startup taint when allowed. Whether the
    /// taint is on the Node afterwards (`None`: no taint is configured).
    pub async fn update(&self, report: &Report) -> Result<Option<bool>, KubeError> {
        let node = self.nodes.get(&self.name).await.map_err(|e| self.error("reading node", e))?;
        let existing: Vec<Value> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| cs.iter().filter_map(|c| serde_json::to_value(c).ok()).collect())
            .unwrap_or_default();
        let wants_devices = self.gpus.is_some_and(|n| n > 0) || self.efa.is_some_and(|n| n > 0);
        let dra = if wants_devices { self.dra().await } else { None };
        let d = &self.cfg.dra_drivers;
        let wants = [
            DeviceWant { resource: GPU, driver: &d.gpu, want: self.gpus },
            DeviceWant { resource: EFA, driver: &d.efa, want: self.efa },
        ];
        let devices = device_shortfall(&node, dra.as_ref(), &wants, self.cfg.device_evidence);
        let tainted = self.taint_key().is_some_and(|key| {
            node.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|ts| ts.iter().any(|t| t.key == key))
        });
        let blocker = failing_check(report)
            .or_else(|| devices.clone().map(Blocker::Devices))
            .or_else(|| awaits_registration(&node).then_some(Blocker::Unregistered));
        let timed_out = match (&blocker, tainted && self.deadline_passed(&node)) {
            (Some(b), true) => Some(b.clone()),
            _ => None,
        };
        if let Some(b) = &timed_out {
            self.gate_event(&node, b).await;
        }
        let repair = self.repair_allowed(&existing, timed_out.is_some());
        let gate = GateView { devices, timed_out: timed_out.map(|b| b.text()) };
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let patch =
            json!({"status": {"conditions": conditions(report, &existing, &now, &gate, repair)}});
        self.nodes
            .patch_status(&self.name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(|e| self.error("updating conditions of node", e))?;
        tracing::debug!(node = %self.name, ready = report.ready, repair, "node conditions updated");
        match self.taint_key() {
            Some(key) => self.remove_taint(key, report, &wants, dra.as_ref(), node).await.map(Some),
            None => Ok(None),
        }
    }

    /// Whether the repair conditions are written this run: the bridge is on (or the deadline
    /// passed with `gate_deadline_action = "repair"`) and no other writer owns them.
    fn repair_allowed(&self, existing: &[Value], timed_out: bool) -> bool {
        let mut bridge = self.bridge.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = *bridge == Bridge::On
            || (timed_out && self.cfg.gate_deadline_action == GateAction::Repair);
        if !wanted || *bridge == Bridge::Refused {
            return false;
        }
        if let Some((kind, reason, message)) = foreign_repair_condition(existing) {
            tracing::warn!(
                node = %self.name, condition = %kind, reason = %reason, message = %message,
                "repair bridge not started: {kind} is written by another agent (the EKS node monitoring agent writes these); Karpenter node repair and EKS auto repair already act on its conditions, so nodeprep leaves them alone"
            );
            *bridge = Bridge::Refused;
            return false;
        }
        true
    }

    /// One Warning Event on the Node per blocker, once the gate's deadline has passed.
    async fn gate_event(&self, node: &Node, blocker: &Blocker) {
        let text = blocker.text();
        {
            let sent = self.event_sent.lock().unwrap_or_else(|e| e.into_inner());
            if sent.as_deref() == Some(text.as_str()) {
                return;
            }
        }
        let taint = self.taint_key().unwrap_or_default();
        let minutes = self.cfg.gate_deadline_seconds / 60;
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let message = shorten(
            format!("startup taint {taint} still on after {minutes} min: {text}"),
            MAX_MESSAGE_BYTES,
        );
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{}.{stamp:x}", self.name), "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": node.metadata.uid},
            "reason": "NodeprepGateTimedOut",
            "message": message,
            "type": "Warning",
            "source": {"component": "nodeprep", "host": self.name},
            "reportingComponent": "nodeprep.io/nodeprep",
            "reportingInstance": self.name,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let event: Event = match serde_json::from_value(event) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "gate Event not built");
                return;
            }
        };
        match self.events.create(&PostParams::default(), &event).await {
            Ok(_) => {
                tracing::warn!(node = %self.name, taint, blocker = %text, "gate deadline passed; Event sent");
                *self.event_sent.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
            }
            Err(e) => {
                tracing::warn!(node = %self.name, error = %crate::error_chain(&e), "gate deadline passed; Event not sent (retried next run)")
            }
        }
    }

    /// The startup taint's key, if one is configured.
    pub fn taint(&self) -> Option<&str> {
        self.taint_key()
    }

    async fn remove_taint(
        &self,
        key: &str,
        report: &Report,
        wants: &[DeviceWant<'_>],
        dra: Option<&DraDevices>,
        mut node: Node,
    ) -> Result<bool, KubeError> {
        for attempt in 1..=5 {
            let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
            if !taints.iter().any(|t| t.key == key) {
                return Ok(false);
            }
            if !report.ready {
                tracing::info!(node = %self.name, taint = key, "startup taint kept: node not ready");
                return Ok(true);
            }
            if awaits_registration(&node) {
                tracing::info!(node = %self.name, taint = key, "startup taint kept: Karpenter has not registered the node yet (karpenter.sh/registered)");
                return Ok(true);
            }
            if let Some(why) = device_shortfall(&node, dra, wants, self.cfg.device_evidence) {
                tracing::info!(node = %self.name, taint = key, reason = %why, "startup taint kept: devices not usable yet");
                return Ok(true);
            }
            let kept: Vec<_> = taints.into_iter().filter(|t| t.key != key).collect();
            let rv = node.metadata.resource_version.clone();
            let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"taints": kept}});
            match self.nodes.patch(&self.name, &PatchParams::default(), &Patch::Merge(patch)).await
            {
                Ok(_) => {
                    tracing::info!(node = %self.name, taint = key, "startup taint removed: node ready, registered and its devices usable");
                    return Ok(false);
                }
                Err(e) if api_code(&e) == Some(409) => {
                    tracing::info!(node = %self.name, attempt, "node changed while removing the taint (409); retrying on fresh data");
                    node = self
                        .nodes
                        .get(&self.name)
                        .await
                        .map_err(|e| self.error("reading node", e))?;
                }
                Err(e) => return Err(self.error(&format!("removing taint {key} from node"), e)),
            }
        }
        Err(KubeError::Conflict {
            taint: key.into(),
            node: self.name.clone(),
            server: self.server.clone(),
        })
    }

    /// "reading node n1 at https://10.0.0.1/: <the error and its causes>".
    fn error(&self, what: &str, e: kube::Error) -> KubeError {
        KubeError::Api {
            what: what.into(),
            node: self.name.clone(),
            server: self.server.clone(),
            cause: crate::error_chain(&e),
        }
    }
}

/// Applies every new report, retrying failures with backoff, until the sender is dropped; tells
/// `taint_seen` whether the startup taint is on the Node after each update.
pub async fn run(
    sync: Arc<Sync>,
    mut reports: watch::Receiver<Option<Arc<Report>>>,
    taint_seen: impl Fn(&str, Option<bool>),
) {
    let mut backoff: Option<Duration> = None;
    loop {
        match backoff {
            None => {
                if reports.changed().await.is_err() {
                    return;
                }
            }
            Some(wait) => {
                // Retry after the backoff, or sooner with a newer report.
                tokio::select! {
                    r = reports.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        let Some(report) = reports.borrow_and_update().clone() else { continue };
        match sync.update(&report).await {
            Ok(present) => {
                if let Some(key) = sync.taint() {
                    taint_seen(key, present);
                }
                backoff = None;
            }
            Err(e) => {
                let next = backoff.map_or(Duration::from_secs(1), |b| (b * 2).min(MAX_BACKOFF));
                tracing::warn!(error = %e, retry_in_s = next.as_secs(), "Kubernetes update failed; endpoints keep serving");
                backoff = Some(next);
            }
        }
    }
}

/// Where the credentials come from, for the startup log line.
pub fn describe(cfg: &KubernetesConfig, host: &Host) -> String {
    if cfg.kubeconfig.is_empty() {
        "in-cluster service account".into()
    } else {
        format!("kubeconfig {}", host.display(&cfg.kubeconfig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CheckResult;

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        // Cyrillic device names (two bytes a letter): at one of four offsets the cut falls inside
        // a letter.
        let devices: Vec<String> = (0..400).map(|i| format!("устройство-{i}")).collect();
        let summary = format!("missing: {}", devices.join(", "));
        assert!(summary.len() > 4 * MAX_MESSAGE_BYTES);
        for offset in 0..4 {
            let text = format!("{}{summary}", "x".repeat(offset));
            let failing = CheckResult::new("efa", Status::Fail, text.clone()).required(true);
            let report = Report::new(None, None, vec![failing], 1);
            let c = conditions(&report, &[], "T1", &GateView::default(), false);
            let message = c[0]["message"].as_str().unwrap();
            assert!(message.len() <= MAX_MESSAGE_BYTES, "{} bytes", message.len());
            assert!(message.ends_with('…') && message.len() > MAX_MESSAGE_BYTES - 8, "{message}");
            assert!(text.starts_with(message.trim_end_matches('…')));
        }
        assert_eq!(shorten("short".into(), MAX_MESSAGE_BYTES), "short");
    }

    #[test]
    fn condition_names_are_domain_qualified_for_the_node_readiness_controller() {
        assert_eq!(condition_type("device-plugins"), "nodeprep.io/DevicePluginsReady");
        assert_eq!(condition_type("efa"), "nodeprep.io/EFAReady");
        assert_eq!(condition_type("nvidia"), "nodeprep.io/GPUReady");
        assert_eq!(condition_type("storage"), "nodeprep.io/StorageReady");
        assert_eq!(condition_type("limits"), "nodeprep.io/LimitsReady");
        assert_eq!(condition_type("efa-loopback"), "nodeprep.io/EFALoopbackReady");
        // A condition type is a qualified name: prefix/name, name at most 63 characters.
        for c in crate::capability::REGISTRY.iter() {
            let t = condition_type(c.name);
            let name = t.strip_prefix(CONDITION_PREFIX).unwrap();
            assert!(name.len() <= 63 && name.bytes().all(|b| b.is_ascii_alphanumeric()), "{t}");
        }
    }

    fn node(v: Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn registration_waits_only_on_karpenter_nodes() {
        let plain =
            node(json!({"metadata": {"name": "n", "labels": {"kubernetes.io/os": "linux"}}}));
        assert!(!awaits_registration(&plain));
        let launched =
            node(json!({"metadata": {"name": "n", "labels": {"karpenter.sh/nodepool": "gpu"}}}));
        assert!(awaits_registration(&launched));
        let registered = node(
            json!({"metadata": {"name": "n", "labels": {"karpenter.sh/nodepool": "gpu", "karpenter.sh/registered": "true"}}}),
        );
        assert!(!awaits_registration(&registered));
        assert!(!awaits_registration(&node(json!({"metadata": {"name": "n"}}))));
    }

    fn slice(driver: &str, pool: &str, generation: i64, count: i64, devices: usize) -> Value {
        let devs: Vec<Value> = (0..devices).map(|i| json!({"name": format!("d{i}")})).collect();
        json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "spec": {"driver": driver, "nodeName": "n",
            "pool": {"name": pool, "generation": generation, "resourceSliceCount": count}, "devices": devs}})
    }

    #[test]
    fn dra_devices_count_complete_pools_of_the_newest_generation() {
        let d = dra_devices(&[
            slice("gpu.nvidia.com", "n", 2, 1, 8),
            slice("gpu.nvidia.com", "n", 1, 1, 4),
            slice("efa.amazonaws.com", "n", 1, 2, 16),
        ]);
        assert_eq!(
            d.by_driver.get("gpu.nvidia.com"),
            Some(&8),
            "the old generation is not counted"
        );
        assert_eq!(d.by_driver.get("efa.amazonaws.com"), None, "1 of 2 slices: still publishing");
        assert_eq!(d.incomplete, vec![("efa.amazonaws.com".to_string(), "n".to_string())]);
        let d = dra_devices(&[
            slice("efa.amazonaws.com", "n", 1, 2, 16),
            slice("efa.amazonaws.com", "n", 1, 2, 16),
        ]);
        assert_eq!(d.by_driver.get("efa.amazonaws.com"), Some(&32));
    }

    #[test]
    fn devices_are_usable_by_extended_resources_or_dra_as_configured() {
        let n = node(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"nvidia.com/gpu": "0"}}}),
        );
        let wants = [DeviceWant { resource: GPU, driver: "gpu.nvidia.com", want: Some(8) }];
        let dra = dra_devices(&[slice("gpu.nvidia.com", "n", 1, 1, 8)]);
        assert_eq!(
            device_shortfall(&n, Some(&dra), &wants, DeviceEvidence::Auto),
            None,
            "DRA-only node"
        );
        assert_eq!(device_shortfall(&n, Some(&dra), &wants, DeviceEvidence::Dra), None);
        assert_eq!(
            device_shortfall(&n, Some(&dra), &wants, DeviceEvidence::ExtendedResources).as_deref(),
            Some("kubelet reports nvidia.com/gpu allocatable 0, expected 8")
        );
        assert_eq!(
            device_shortfall(&n, None, &wants, DeviceEvidence::Auto).as_deref(),
            Some("kubelet reports nvidia.com/gpu allocatable 0 and no ResourceSlices readable, expected 8")
        );
        let ext = node(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"nvidia.com/gpu": "8"}}}),
        );
        assert_eq!(device_shortfall(&ext, None, &wants, DeviceEvidence::Auto), None);
        assert!(device_shortfall(&ext, Some(&DraDevices::default()), &wants, DeviceEvidence::Dra)
            .is_some());
    }

    #[test]
    fn the_gate_and_the_repair_bridge_in_the_conditions() {
        let mut hw = CheckResult::new("nvidia", Status::Fail, "GPU 3 lost").required(true);
        hw = hw.hardware_fault("GPU 3 (0000:86:00.0): not under /sys/bus/pci/devices");
        let cfg_mistake = CheckResult::new("limits", Status::Fail, "memlock 64 KiB").required(true);
        let report = Report::new(None, None, vec![hw, cfg_mistake], 1);
        let gate = GateView { devices: None, timed_out: Some("nvidia: GPU 3 lost".into()) };
        let c = conditions(&report, &[], "T1", &gate, true);
        let find = |t: &str| c.iter().find(|x| x["type"] == t).cloned().unwrap();
        assert_eq!(find(READY_CONDITION)["reason"], "GateTimedOut");
        assert_eq!(find(READY_CONDITION)["status"], "False");
        assert!(find(READY_CONDITION)["message"].as_str().unwrap().ends_with("nvidia: GPU 3 lost"));
        assert_eq!(find("AcceleratedHardwareReady")["status"], "False");
        assert_eq!(
            find("AcceleratedHardwareReady")["message"],
            "GPU 3 (0000:86:00.0): not under /sys/bus/pci/devices"
        );
        assert_eq!(find("StorageReady")["status"], "True", "a limits mistake never marks hardware");
        assert_eq!(find("NetworkingReady")["status"], "True");
        let plain = conditions(&report, &[], "T1", &GateView::default(), false);
        assert!(plain.iter().all(|x| x["type"].as_str().unwrap().starts_with(CONDITION_PREFIX)));
        // Ready report, devices not usable: Ready is False with that reason.
        let ok = Report::new(
            None,
            None,
            vec![CheckResult::new("efa", Status::Pass, "ok").required(true)],
            1,
        );
        let gate = GateView {
            devices: Some("kubelet reports vpc.amazonaws.com/efa allocatable 0".into()),
            timed_out: None,
        };
        let c = conditions(&ok, &[], "T1", &gate, false);
        let ready = c.iter().find(|x| x["type"] == READY_CONDITION).unwrap();
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("False"), Some("DevicesNotUsable"))
        );
    }

    #[test]
    fn another_writers_repair_condition_is_named() {
        let nma = json!({"type": "AcceleratedHardwareReady", "status": "True", "reason": "NvidiaAcceleratedHardwareIsReady", "message": "Monitoring for the Nvidia system is active"});
        let ours = json!({"type": "StorageReady", "status": "True", "reason": REPAIR_REASON_OK, "message": "x"});
        assert_eq!(foreign_repair_condition(std::slice::from_ref(&ours)), None);
        let (kind, reason, _) = foreign_repair_condition(&[ours, nma]).unwrap();
        assert_eq!(
            (kind.as_str(), reason.as_str()),
            ("AcceleratedHardwareReady", "NvidiaAcceleratedHardwareIsReady")
        );
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let pass = Report::new(
            None,
            None,
            vec![CheckResult::new("efa", Status::Pass, "ok").required(true)],
            1,
        );
        let fail = Report::new(
            None,
            None,
            vec![CheckResult::new("efa", Status::Fail, "31 of 32").required(true)],
            1,
        );
        let none = GateView::default();
        let first = conditions(&pass, &[], "T1", &none, false);
        assert_eq!(first[0]["type"], "nodeprep.io/EFAReady");
        assert_eq!(first[0]["status"], "True");
        assert_eq!(first[1]["type"], "nodeprep.io/Ready");
        let same = conditions(&pass, &first, "T2", &none, false);
        assert_eq!(same[0]["lastTransitionTime"], "T1");
        assert_eq!(same[0]["lastHeartbeatTime"], "T2");
        let changed = conditions(&fail, &same, "T3", &none, false);
        assert_eq!(changed[0]["status"], "False");
        assert_eq!(changed[0]["lastTransitionTime"], "T3");
        assert_eq!(changed[1]["message"], "failing: efa");
    }
}
