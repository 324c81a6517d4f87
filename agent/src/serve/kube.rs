//! Kubernetes updates from `serve` (opt-in, `[kubernetes] enabled = true`):
//!
//! - one node condition per check plus `NodeprepReady`, type `Nodeprep<Check>` (e.g. `NodeprepEfa`):
//!   `True` when the check passed (or warned), `False` when it failed, `Unknown` when it was skipped.
//!   `lastTransitionTime` changes only when the status changes. Conditions are merged by type with a
//!   strategic merge patch, so other conditions are never touched.
//! - the startup taint (`kubernetes.startup_taint`, e.g. from a Karpenter NodePool's `startupTaints`)
//!   is removed only once the report is ready **and** kubelet reports the expected
//!   `nvidia.com/gpu` and `vpc.amazonaws.com/efa` allocatable. The patch carries the node's
//!   resourceVersion, so a concurrent change gives 409 and the removal is retried on fresh data;
//!   other taints are kept as they are.
//!
//! The API being down never stops the endpoints: updates are retried with backoff (1 s doubling to
//! 60 s) from the latest report.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::capability::device_plugins::{EFA, GPU};
use crate::capability::Context;
use crate::config::KubernetesConfig;
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

/// `device-plugins` → `NodeprepDevicePlugins`.
pub fn condition_type(check: &str) -> String {
    let camel: String = check
        .split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    format!("Nodeprep{camel}")
}

/// The conditions for a report, keeping `lastTransitionTime` of existing conditions whose status
/// did not change.
pub fn conditions(report: &Report, existing: &[Value], now: &str) -> Vec<Value> {
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
    if report.ready {
        push(
            "NodeprepReady".into(),
            "True",
            "AllRequiredChecksPassed",
            "every required nodeprep check passed".into(),
        );
    } else {
        push(
            "NodeprepReady".into(),
            "False",
            "RequiredChecksFailed",
            format!("failing: {}", failing.join(", ")),
        );
    }
    out
}

/// What kubelet reports short of the expected allocatable of each device resource; `None` when
/// it reports them all.
pub fn allocatable_shortfall(node: &Node, expected: &[(&str, Option<u32>)]) -> Option<String> {
    let alloc = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    for (res, want) in expected {
        let Some(want) = want.filter(|w| *w > 0) else { continue };
        let have =
            alloc.and_then(|a| a.get(*res)).and_then(|q| q.0.parse::<u64>().ok()).unwrap_or(0);
        if have < u64::from(want) {
            return Some(format!("kubelet reports {res} allocatable {have}, expected {want}"));
        }
    }
    None
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub struct Sync {
    nodes: Api<Node>,
    /// The API server's URL, named in every error.
    server: String,
    name: String,
    taint: Option<String>,
    expected: Vec<(&'static str, Option<u32>)>,
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
            nodes: Api::all(client),
            server,
            name,
            taint: (!cfg.startup_taint.is_empty()).then(|| cfg.startup_taint.clone()),
            expected: vec![(GPU, ctx.expected.gpus), (EFA, ctx.expected.efa)],
        }
    }

    /// Publishes the conditions for `report` and removes the startup taint when allowed.
    /// Publishes the conditions; removes the startup taint when allowed. Whether the taint is on
    /// the Node afterwards (`None`: no taint is configured).
    pub async fn update(&self, report: &Report) -> Result<Option<bool>, KubeError> {
        let node = self.nodes.get(&self.name).await.map_err(|e| self.error("reading node", e))?;
        let existing: Vec<Value> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| cs.iter().filter_map(|c| serde_json::to_value(c).ok()).collect())
            .unwrap_or_default();
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let patch = json!({"status": {"conditions": conditions(report, &existing, &now)}});
        self.nodes
            .patch_status(&self.name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(|e| self.error("updating conditions of node", e))?;
        tracing::debug!(node = %self.name, ready = report.ready, "node conditions updated");
        match &self.taint {
            Some(key) => self.remove_taint(key, report, node).await.map(Some),
            None => Ok(None),
        }
    }

    /// The startup taint's key, if one is configured.
    pub fn taint(&self) -> Option<&str> {
        self.taint.as_deref()
    }

    async fn remove_taint(
        &self,
        key: &str,
        report: &Report,
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
            if let Some(why) = allocatable_shortfall(&node, &self.expected) {
                tracing::info!(node = %self.name, taint = key, reason = %why, "startup taint kept: devices not allocatable yet");
                return Ok(true);
            }
            let kept: Vec<_> = taints.into_iter().filter(|t| t.key != key).collect();
            let rv = node.metadata.resource_version.clone();
            let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"taints": kept}});
            match self.nodes.patch(&self.name, &PatchParams::default(), &Patch::Merge(patch)).await
            {
                Ok(_) => {
                    tracing::info!(node = %self.name, taint = key, "startup taint removed: node ready and devices allocatable");
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
            let c = conditions(&report, &[], "T1");
            let message = c[0]["message"].as_str().unwrap();
            assert!(message.len() <= MAX_MESSAGE_BYTES, "{} bytes", message.len());
            assert!(message.ends_with('…') && message.len() > MAX_MESSAGE_BYTES - 8, "{message}");
            assert!(text.starts_with(message.trim_end_matches('…')));
        }
        assert_eq!(shorten("short".into(), MAX_MESSAGE_BYTES), "short");
    }

    #[test]
    fn condition_names() {
        assert_eq!(condition_type("device-plugins"), "NodeprepDevicePlugins");
        assert_eq!(condition_type("efa"), "NodeprepEfa");
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
        let first = conditions(&pass, &[], "T1");
        assert_eq!(first[0]["type"], "NodeprepEfa");
        assert_eq!(first[0]["status"], "True");
        assert_eq!(first[1]["type"], "NodeprepReady");
        let same = conditions(&pass, &first, "T2");
        assert_eq!(same[0]["lastTransitionTime"], "T1");
        assert_eq!(same[0]["lastHeartbeatTime"], "T2");
        let changed = conditions(&fail, &same, "T3");
        assert_eq!(changed[0]["status"], "False");
        assert_eq!(changed[0]["lastTransitionTime"], "T3");
        assert_eq!(changed[1]["message"], "failing: efa");
    }
}
