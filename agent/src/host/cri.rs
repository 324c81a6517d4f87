//! containerd's CRI API, as kubelet uses it: the canary pod that proves which limits pods get.
//!
//! The canary is a pod sandbox with the host's network (no CNI needed) and one container, both
//! from the sandbox image the node already has (nothing is pulled), made through containerd's CRI
//! socket exactly as kubelet makes pods, so it gets the default runtime and its base runtime spec.
//! Its process's `/proc/<pid>/limits` is read from the host (the container runs the image's own
//! entrypoint: the pause image has no shell). Everything it creates carries the label
//! [`CANARY_LABEL`] and [`OWNER_LABEL`] (the pid of the nodeprep that made it). A run removes its
//! own pod at the end, and first the leftovers of runs that crashed: labelled pods whose owner is
//! gone or that are older than [`LEFTOVER_AGE`]. A canary of another nodeprep still running (serve's
//! beside a `check --only limits-canary` over SSM) is left alone. The whole run is under one
//! deadline, cleanup included; cleanup always runs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest, ImageSpec,
    ImageStatusRequest, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
    VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

use super::proc::{self, PodLimits};
use super::{Host, HostError};

/// The label on everything the canary creates.
pub const CANARY_LABEL: (&str, &str) = ("io.nodeprep.canary", "true");
/// The label with the pid of the nodeprep process that made the pod.
pub const OWNER_LABEL: &str = "io.nodeprep.canary.pid";
/// A canary pod lives for its deadline (at most 10 s); one older than this is a leftover whoever
/// made it (a reused pid, a hung owner).
pub const LEFTOVER_AGE: Duration = Duration::from_secs(120);
/// The pod's namespace and name in containerd's metadata (`crictl pods` shows them).
pub const CANARY_NAMESPACE: &str = "nodeprep";
pub const CANARY_NAME: &str = "nodeprep-canary";

/// What the canary saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// The limits of the container's process, read from the host.
    pub limits: PodLimits,
    pub pid: u32,
    /// `containerd 1.6.20~ds1` (the CRI Version call).
    pub runtime: String,
    pub image: String,
    /// Sandboxes of an earlier run that were found by their label and removed first.
    pub leftovers_removed: Vec<String>,
    /// Time from connecting to the limits read, and of the cleanup.
    pub run_ms: u64,
    pub cleanup_ms: u64,
}

/// Why the canary could not say what pods get.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CriError {
    #[error("containerd's CRI socket {path} does not exist")]
    NoSocket { path: String },
    #[error("cannot connect to containerd's CRI socket {path}: {cause}")]
    Connect { path: String, cause: String },
    #[error("the sandbox image {image} is not on this node (the canary never pulls an image)")]
    ImageAbsent { image: String },
    #[error("CRI {call} failed: {cause}")]
    Call { call: &'static str, cause: String },
    #[error("the canary did not finish within {} ms (at: {at})", deadline.as_millis())]
    Deadline { deadline: Duration, at: &'static str },
    #[error("reading the canary's limits: {0}")]
    Limits(HostError),
    #[error("the canary left {ids:?} behind: {cause}")]
    NotRemoved { ids: Vec<String>, cause: String },
    #[error("no async runtime for the canary: {0}")]
    Runtime(String),
}

impl CriError {
    /// The CRI service itself is absent (containerd runs but its CRI plugin did not load).
    pub fn cri_not_loaded(&self) -> bool {
        matches!(self, CriError::Call { cause, .. } if cause.contains("unknown service runtime.v1"))
    }
}

fn call(call: &'static str) -> impl Fn(tonic::Status) -> CriError {
    move |s| CriError::Call { call, cause: format!("{}: {}", code_name(s.code()), s.message()) }
}

fn code_name(c: tonic::Code) -> String {
    format!("{c:?}")
}

/// The label every canary pod has: what finds them all.
fn selector() -> HashMap<String, String> {
    HashMap::from([(CANARY_LABEL.0.to_string(), CANARY_LABEL.1.to_string())])
}

/// A new canary pod's labels: the canary label and its owner, this process.
fn labels() -> HashMap<String, String> {
    let mut l = selector();
    l.insert(OWNER_LABEL.to_string(), std::process::id().to_string());
    l
}

/// Connects to the CRI socket at `address` (a host path, under the root).
async fn connect(host: &Host, address: &str) -> Result<Channel, CriError> {
    let path = host.path(address);
    let shown = host.display(address);
    if !path.exists() {
        return Err(CriError::NoSocket { path: shown });
    }
    Endpoint::try_from("http://localhost")
        .map_err(|e| CriError::Connect { path: shown.clone(), cause: e.to_string() })?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|e| CriError::Connect { path: shown, cause: error_chain(&e) })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Stops and removes every sandbox with the canary's label (its containers go with it); the ids.
/// Which labelled pods a run removes.
#[derive(Clone, Copy)]
enum Whose {
    /// Its own (at the end of a run).
    Mine,
    /// Those left by runs that are gone (before it starts).
    Leftovers,
}

/// True when a labelled pod is a leftover: made by a process that no longer runs, without an
/// owner label (an older nodeprep), or older than [`LEFTOVER_AGE`].
fn is_leftover(host: &Host, labels: &HashMap<String, String>, created_at_ns: i64) -> bool {
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
        .saturating_sub(created_at_ns);
    let owner = labels.get(OWNER_LABEL).and_then(|p| p.parse::<u32>().ok());
    match owner {
        None => true,
        Some(pid) => age > LEFTOVER_AGE.as_nanos() as i64 || !host.exists(format!("/proc/{pid}")),
    }
}

async fn remove_labelled(
    host: &Host,
    rt: &mut RuntimeServiceClient<Channel>,
    whose: Whose,
) -> Result<Vec<String>, CriError> {
    let filter = PodSandboxFilter { label_selector: selector(), ..Default::default() };
    let found = rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) })
        .await
        .map_err(call("ListPodSandbox"))?
        .into_inner()
        .items;
    let me = std::process::id().to_string();
    let mut ids = Vec::new();
    for sb in found {
        let remove = match whose {
            Whose::Mine => sb.labels.get(OWNER_LABEL) == Some(&me),
            Whose::Leftovers => {
                sb.labels.get(OWNER_LABEL) != Some(&me)
                    && is_leftover(host, &sb.labels, sb.created_at)
            }
        };
        if !remove {
            continue;
        }
        rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sb.id.clone() })
            .await
            .map_err(call("StopPodSandbox"))?;
        rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sb.id.clone() })
            .await
            .map_err(call("RemovePodSandbox"))?;
        ids.push(sb.id);
    }
    Ok(ids)
}

/// The cgroup parent of the canary pod when containerd's runtime uses systemd cgroups: a slice, as
/// kubelet's `kubepods-besteffort-pod<uid>.slice` is (runc refuses a path there: "expected
/// cgroupsPath to be of format \"slice:prefix:name\""). With cgroupfs, containerd's default.
pub const SYSTEMD_PARENT: &str = "nodeprep.slice";

/// The pod as kubelet makes a host-network pod: no hostname (a host-network pod has the node's),
/// pod-private PID and IPC namespaces; a slice for its cgroup when `systemd_cgroup`.
fn sandbox_config(uid: &str, systemd_cgroup: bool) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: CANARY_NAME.into(),
            uid: uid.into(),
            namespace: CANARY_NAMESPACE.into(),
            attempt: 0,
        }),
        labels: labels(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Pod as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            cgroup_parent: if systemd_cgroup { SYSTEMD_PARENT.into() } else { String::new() },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pid of a container from its verbose status (`info.pid`, containerd's CRI).
fn pid_of(info: &HashMap<String, String>) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    v.get("pid")?.as_u64().and_then(|p| u32::try_from(p).ok()).filter(|&p| p > 0)
}

struct Progress {
    at: &'static str,
}

async fn work(
    host: &Host,
    rt: &mut RuntimeServiceClient<Channel>,
    images: &mut ImageServiceClient<Channel>,
    image: &str,
    systemd_cgroup: bool,
    progress: &mut Progress,
) -> Result<(String, Vec<String>, u32, PodLimits), CriError> {
    progress.at = "Version";
    let v = rt
        .version(VersionRequest { version: "v1".into() })
        .await
        .map_err(call("Version"))?
        .into_inner();
    let runtime = format!("{} {}", v.runtime_name, v.runtime_version);
    progress.at = "removing leftovers";
    let leftovers = remove_labelled(host, rt, Whose::Leftovers).await?;
    if !leftovers.is_empty() {
        tracing::warn!(sandboxes = ?leftovers, "removed canary pods left by an earlier run");
    }
    progress.at = "ImageStatus";
    let spec = ImageSpec { image: image.into(), ..Default::default() };
    let present = images
        .image_status(ImageStatusRequest { image: Some(spec.clone()), verbose: false })
        .await
        .map_err(call("ImageStatus"))?
        .into_inner()
        .image
        .is_some();
    if !present {
        return Err(CriError::ImageAbsent { image: image.into() });
    }
    let uid = format!(
        "nodeprep-canary-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let pod = sandbox_config(&uid, systemd_cgroup);
    progress.at = "RunPodSandbox";
    let sandbox = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(call("RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id;
    let container = ContainerConfig {
        metadata: Some(ContainerMetadata { name: "canary".into(), attempt: 0 }),
        image: Some(spec),
        labels: labels(),
        // As kubelet: the image's working directory unless the pod names one.
        working_dir: "/".into(),
        ..Default::default()
    };
    progress.at = "CreateContainer";
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container),
            sandbox_config: Some(pod),
        })
        .await
        .map_err(call("CreateContainer"))?
        .into_inner()
        .container_id;
    progress.at = "StartContainer";
    rt.start_container(StartContainerRequest { container_id: id.clone() })
        .await
        .map_err(call("StartContainer"))?;
    progress.at = "ContainerStatus";
    let status = rt
        .container_status(ContainerStatusRequest { container_id: id, verbose: true })
        .await
        .map_err(call("ContainerStatus"))?
        .into_inner();
    let pid = pid_of(&status.info).ok_or(CriError::Call {
        call: "ContainerStatus",
        cause: "the verbose status names no pid of the running container".into(),
    })?;
    progress.at = "reading the limits";
    let limits = proc::pod_limits(host, pid).map_err(CriError::Limits)?;
    Ok((runtime, leftovers, pid, limits))
}

/// Runs the canary through the CRI socket at `address` with `image`, within `deadline` (cleanup
/// included: 70 % for the pod, the rest to remove it). `systemd_cgroup`: the runtime's
/// `SystemdCgroup` (the pod's cgroup parent is then a slice).
pub fn canary(
    host: &Host,
    address: &str,
    image: &str,
    systemd_cgroup: bool,
    deadline: Duration,
) -> Result<Canary, CriError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CriError::Runtime(e.to_string()))?;
    runtime.block_on(async {
        let started = Instant::now();
        let budget = deadline.mul_f64(0.7);
        let channel = tokio::time::timeout(budget, connect(host, address))
            .await
            .map_err(|_| CriError::Deadline { deadline, at: "connecting" })??;
        let mut rt = RuntimeServiceClient::new(channel.clone());
        let mut images = ImageServiceClient::new(channel);
        let mut progress = Progress { at: "starting" };
        let outcome = tokio::time::timeout(
            budget,
            work(host, &mut rt, &mut images, image, systemd_cgroup, &mut progress),
        )
        .await
        .unwrap_or(Err(CriError::Deadline { deadline, at: progress.at }));
        let run_ms = started.elapsed().as_millis() as u64;
        let cleaned = Instant::now();
        let left = deadline.saturating_sub(started.elapsed()).max(Duration::from_millis(500));
        let cleanup =
            match tokio::time::timeout(left, remove_labelled(host, &mut rt, Whose::Mine)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("removal did not finish within {} ms", left.as_millis())),
            };
        let cleanup_ms = cleaned.elapsed().as_millis() as u64;
        tracing::info!(run_ms, cleanup_ms, ok = outcome.is_ok(), "canary pod done");
        let (runtime, leftovers_removed, pid, limits) = outcome?;
        if let Err(cause) = cleanup {
            return Err(CriError::NotRemoved {
                ids: vec![format!(
                    "label {}={},{OWNER_LABEL}={}",
                    CANARY_LABEL.0,
                    CANARY_LABEL.1,
                    std::process::id()
                )],
                cause,
            });
        }
        Ok(Canary {
            limits,
            pid,
            runtime,
            image: image.into(),
            leftovers_removed,
            run_ms,
            cleanup_ms,
        })
    })
}
