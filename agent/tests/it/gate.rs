//! The readiness gate of `serve` against the fake API server (tests/it/fake_kube.rs), as the field
//! runs it: Karpenter nodes before and after registration, a DRA-only node, the Node Readiness
//! Controller's mode (nodeprep never touches a taint), the repair bridge with and without the
//! EKS node monitoring agent present, the gate deadline, and connections dropped by the server.
//! The Kubernetes API server itself is only faked here (none can run on this machine).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nodeprep_fixtures::Spec;
use serde_json::{json, Value};

use crate::common::{Nodeprep, Server};
use crate::fake_kube::{self, taint_keys as taints, Mode, Shared};

const KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {API}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: test-token\n";

/// A p5 tree whose serve talks to `api` with `kube` added to its [kubernetes] table.
fn tree(spec: Spec, api: &str, kube: &str) -> tempfile::TempDir {
    let mut s = spec;
    s.config = Some(format!(
        "[serve]\ninterval_seconds = 1\n[kubernetes]\nenabled = true\nnode_name = \"node-1\"\nkubeconfig = \"/etc/nodeprep/kubeconfig\"\n{kube}\n"
    ));
    s.files.push(("etc/nodeprep/kubeconfig".into(), KUBECONFIG.replace("{API}", api)));
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    dir
}

const TAINT: &str = "startup_taint = \"nodeprep.io/not-ready\"";

/// `serve` on `root`, its log in `log`.
fn serve(root: &Path, log: &Path) -> Server {
    let mut cmd = Nodeprep::new(root).args(["serve", "--listen", "127.0.0.1:0"]).command();
    cmd.env("NODEPREP_LOG", "info").stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    Server::spawn(cmd)
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    crate::common::wait_until(what, Duration::from_secs(25), f)
}

/// `nodeprep config check` refuses `key` as the startup taint (exit 2), saying `says`.
fn refused_as_startup_taint(key: &str, says: &str) {
    let mut s = Spec::p5_48xlarge();
    s.config = Some(format!("[kubernetes]\nstartup_taint = \"{key}\"\n"));
    let d = crate::common::tree(&s);
    let o = Nodeprep::new(d.path()).args(["config", "check"]).output();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(says), "{err}");
}

fn condition(api: &Shared, kind: &str) -> Option<Value> {
    let a = api.lock().unwrap();
    a.node["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == kind).cloned()
}

fn patches(api: &Shared) -> usize {
    api.lock().unwrap().status_patches.len()
}

const DEVICES: fn() -> Value =
    || json!({"cpu": "192", "nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "32"});

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[test]
fn a_karpenter_node_keeps_the_taint_until_registered() {
    let mut node =
        fake_kube::node(DEVICES(), json!({"karpenter.sh/nodepool": "gpu-efa-p5"}), &now());
    node["spec"]["taints"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "karpenter.sh/unregistered", "effect": "NoExecute"}));
    let (url, api) = fake_kube::start_with(Mode::Normal, node);
    let dir = tree(Spec::p5_48xlarge(), &url, TAINT);
    let log = dir.path().join("serve.log");
    let _srv = serve(dir.path(), &log);
    wait_until("three runs", || patches(&api) >= 3);
    // Ready and devices allocatable, but Karpenter has not registered it: removing the taint now
    // would see Karpenter put it back.
    assert_eq!(condition(&api, "nodeprep.io/Ready").unwrap()["status"], "True");
    assert_eq!(taints(&api), ["nodeprep.io/not-ready", "dedicated", "karpenter.sh/unregistered"]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Karpenter has not registered the node yet"), "{text}");
    // Karpenter registers it (and removes its own taint): now nodeprep's goes, nothing else.
    {
        let mut a = api.lock().unwrap();
        a.node["metadata"]["labels"]["karpenter.sh/registered"] = json!("true");
        a.node["spec"]["taints"].as_array_mut().unwrap().pop();
    }
    wait_until("the startup taint to go", || taints(&api) == ["dedicated"]);
}

#[test]
fn karpenter_s_own_taint_is_never_touched_even_when_registered() {
    let mut node = fake_kube::node(
        DEVICES(),
        json!({"karpenter.sh/nodepool": "gpu-efa-p5", "karpenter.sh/registered": "true"}),
        &now(),
    );
    node["spec"]["taints"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "karpenter.sh/unregistered", "effect": "NoExecute"}));
    let (url, api) = fake_kube::start_with(Mode::Normal, node);
    let dir = tree(Spec::p5_48xlarge(), &url, TAINT);
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("the startup taint to go", || {
        !taints(&api).contains(&"nodeprep.io/not-ready".into())
    });
    assert_eq!(taints(&api), ["dedicated", "karpenter.sh/unregistered"]);
    // And it cannot be configured as the startup taint.
    refused_as_startup_taint(
        "karpenter.sh/unregistered",
        "karpenter.sh/unregistered is Karpenter's own taint",
    );
}

#[test]
fn a_dra_only_node_is_ready_by_its_resource_slices() {
    // DRA nodes: the extended resources stay 0 for good.
    let alloc = json!({"cpu": "192", "nvidia.com/gpu": "0", "vpc.amazonaws.com/efa": "0"});
    let (url, api) = fake_kube::start(Mode::Normal, alloc.clone());
    let dir = tree(Spec::p5_48xlarge(), &url, TAINT);
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("two runs", || patches(&api) >= 2);
    let ready = condition(&api, "nodeprep.io/Ready").unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("DevicesNotUsable")),
        "{ready}"
    );
    assert!(ready["message"].as_str().unwrap().contains("gpu.nvidia.com publishes 0"), "{ready}");
    assert_eq!(taints(&api)[0], "nodeprep.io/not-ready");
    // The drivers publish their slices: the GPUs, then the EFA devices.
    api.lock().unwrap().slices = Some(vec![fake_kube::slice("gpu.nvidia.com", 8)]);
    let p = patches(&api);
    wait_until("two more runs", || patches(&api) >= p + 2);
    assert_eq!(taints(&api)[0], "nodeprep.io/not-ready", "EFA not published yet");
    api.lock().unwrap().slices.as_mut().unwrap().push(fake_kube::slice("efa.amazonaws.com", 32));
    wait_until("the startup taint to go", || taints(&api) == ["dedicated"]);
    assert_eq!(condition(&api, "nodeprep.io/Ready").unwrap()["status"], "True");

    // device_evidence = "extended-resources": slices are not evidence.
    let (url, api) = fake_kube::start(Mode::Normal, alloc.clone());
    api.lock().unwrap().slices = Some(vec![
        fake_kube::slice("gpu.nvidia.com", 8),
        fake_kube::slice("efa.amazonaws.com", 32),
    ]);
    let dir = tree(
        Spec::p5_48xlarge(),
        &url,
        &format!("{TAINT}\ndevice_evidence = \"extended-resources\""),
    );
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("three runs", || patches(&api) >= 3);
    assert_eq!(taints(&api)[0], "nodeprep.io/not-ready");

    // A cluster without resource.k8s.io/v1 (404) and no allocatable: not usable, said so.
    let (url, api) = fake_kube::start(Mode::Normal, alloc);
    api.lock().unwrap().slices = None;
    let dir = tree(Spec::p5_48xlarge(), &url, TAINT);
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("two runs", || patches(&api) >= 2);
    let ready = condition(&api, "nodeprep.io/Ready").unwrap();
    assert!(ready["message"].as_str().unwrap().contains("no ResourceSlices readable"), "{ready}");
    assert_eq!(taints(&api)[0], "nodeprep.io/not-ready");
}

#[test]
fn with_the_node_readiness_controller_nodeprep_never_touches_a_taint() {
    let mut node = fake_kube::node(DEVICES(), json!({}), &now());
    node["spec"]["taints"] =
        json!([{"key": "readiness.k8s.io/nodeprep", "value": "pending", "effect": "NoSchedule"}]);
    let (url, api) = fake_kube::start_with(Mode::Normal, node);
    let dir = tree(Spec::p5_48xlarge(), &url, "");
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("three runs", || patches(&api) >= 3);
    // The condition the NodeReadinessRule waits for is True; the taint is the controller's.
    assert_eq!(condition(&api, "nodeprep.io/Ready").unwrap()["status"], "True");
    assert_eq!(taints(&api), ["readiness.k8s.io/nodeprep"]);
    let a = api.lock().unwrap();
    let rv = (100 + a.status_patches.len()).to_string();
    assert_eq!(a.node["metadata"]["resourceVersion"], json!(rv), "nothing but status patches");
    drop(a);
    // The controller's taint cannot be made nodeprep's startup taint.
    refused_as_startup_taint("readiness.k8s.io/nodeprep", "Node Readiness Controller taint");
}

/// A p5 whose GPU at 0000:86:00 fell off the bus (NVML reports it lost), and one whose storage
/// is not mounted (boot's job: a configuration state, not hardware).
fn gpu_lost() -> Spec {
    let mut s = Spec::p5_48xlarge();
    s.kmsg.push(
        "3,2210,86400123,-;NVRM: Xid (PCI:0000:86:00): 79, pid=1234, GPU has fallen off the bus."
            .into(),
    );
    s
}

#[test]
fn the_repair_bridge_marks_hardware_failures_and_never_configuration() {
    let (url, api) = fake_kube::start(Mode::Normal, DEVICES());
    let dir = tree(gpu_lost(), &url, &format!("{TAINT}\nrepair_conditions = true"));
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("the repair conditions", || condition(&api, "AcceleratedHardwareReady").is_some());
    let acc = condition(&api, "AcceleratedHardwareReady").unwrap();
    assert_eq!(
        (acc["status"].as_str(), acc["reason"].as_str()),
        (Some("False"), Some("NodeprepHardwareFault")),
        "{acc}"
    );
    assert!(acc["message"].as_str().unwrap().contains("XID 79"), "{acc}");
    assert_eq!(condition(&api, "StorageReady").unwrap()["status"], "True");
    assert_eq!(condition(&api, "NetworkingReady").unwrap()["status"], "True");
    assert_eq!(taints(&api)[0], "nodeprep.io/not-ready");

    // Storage not mounted: the node is not ready, but nothing for repair to replace.
    let (url, api) = fake_kube::start(Mode::Normal, DEVICES());
    let dir =
        tree(Spec::p5_48xlarge().unprepared(), &url, &format!("{TAINT}\nrepair_conditions = true"));
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("the repair conditions", || condition(&api, "StorageReady").is_some());
    assert_eq!(condition(&api, "nodeprep.io/StorageReady").unwrap()["status"], "False");
    assert_eq!(condition(&api, "StorageReady").unwrap()["status"], "True", "a configuration state");

    // Someone's ext4 on a disk: boot refuses, the storage condition names the disk and the remedy,
    // and repair is still not asked for.
    let mut s = Spec::p5_48xlarge().unprepared();
    let d = s.disks.iter_mut().find(|d| d.name == "nvme3n1").unwrap();
    d.content = nodeprep_fixtures::ext4_superblock("scratch");
    let (url, api) = fake_kube::start(Mode::Normal, DEVICES());
    let dir = tree(s, &url, &format!("{TAINT}\nrepair_conditions = true"));
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("the repair conditions", || condition(&api, "StorageReady").is_some());
    let storage = condition(&api, "nodeprep.io/StorageReady").unwrap();
    assert_eq!(storage["status"], "False");
    let message = storage["message"].as_str().unwrap();
    assert!(
        message.starts_with("boot refuses: /dev/nvme3n1 (AWS2D4B1E5A8C0000003) carries ext4")
            && message.contains("`wipefs --all /dev/nvme3n1`"),
        "{message}"
    );
    assert_eq!(condition(&api, "StorageReady").unwrap()["status"], "True", "not the hardware's");

    // A disk gone: the hardware's.
    let mut s = Spec::p5_48xlarge();
    s.disks.retain(|d| d.name != "nvme8n1");
    let (url, api) = fake_kube::start(Mode::Normal, DEVICES());
    let dir = tree(s, &url, &format!("{TAINT}\nrepair_conditions = true"));
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("StorageReady False", || {
        condition(&api, "StorageReady").is_some_and(|c| c["status"] == "False")
    });
    assert!(condition(&api, "StorageReady").unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("7 of 8 instance-store disks present"));

    // Without the option the repair conditions are never written.
    let (url, api) = fake_kube::start(Mode::Normal, DEVICES());
    let dir = tree(gpu_lost(), &url, TAINT);
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("three runs", || patches(&api) >= 3);
    assert!(condition(&api, "AcceleratedHardwareReady").is_none());
}

#[test]
fn the_repair_bridge_stays_off_when_the_node_monitoring_agent_owns_the_conditions() {
    let mut node = fake_kube::node(DEVICES(), json!({}), &now());
    node["status"]["conditions"].as_array_mut().unwrap().push(json!({
        "type": "AcceleratedHardwareReady", "status": "True", "reason": "NvidiaAcceleratedHardwareIsReady",
        "message": "Monitoring for the Nvidia system is active",
        "lastHeartbeatTime": "2026-11-25T00:00:00Z", "lastTransitionTime": "2026-11-25T00:00:00Z"}));
    let (url, api) = fake_kube::start_with(Mode::Normal, node);
    let dir = tree(gpu_lost(), &url, &format!("{TAINT}\nrepair_conditions = true"));
    let log = dir.path().join("serve.log");
    let _srv = serve(dir.path(), &log);
    wait_until("three runs", || patches(&api) >= 3);
    let acc = condition(&api, "AcceleratedHardwareReady").unwrap();
    assert_eq!(
        acc["reason"], "NvidiaAcceleratedHardwareIsReady",
        "the agent's condition is left alone"
    );
    let a = api.lock().unwrap();
    for (_, p) in &a.status_patches {
        let kinds: Vec<&str> = p["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert!(kinds.iter().all(|k| k.starts_with("nodeprep.io/")), "{kinds:?}");
    }
    drop(a);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("repair bridge not started").count(), 1, "said once: {text}");
    assert!(text.contains("NvidiaAcceleratedHardwareIsReady"), "{text}");
}

#[test]
fn past_the_gate_deadline_one_event_names_the_blocker_and_the_taint_stays() {
    // The node was created 20 minutes ago; the deadline is 15.
    let created =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(1200))
            .to_string();
    let (url, api) =
        fake_kube::start_with(Mode::Normal, fake_kube::node(DEVICES(), json!({}), &created));
    let dir = tree(gpu_lost(), &url, TAINT);
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("an Event", || !api.lock().unwrap().events.is_empty());
    let p = patches(&api);
    wait_until("three more runs", || patches(&api) >= p + 3);
    let a = api.lock().unwrap();
    assert_eq!(a.events.len(), 1, "one Event per blocker: {:?}", a.events);
    let e = &a.events[0];
    assert_eq!(
        (e["type"].as_str(), e["reason"].as_str()),
        (Some("Warning"), Some("NodeprepGateTimedOut"))
    );
    assert_eq!(
        (e["involvedObject"]["kind"].as_str(), e["involvedObject"]["name"].as_str()),
        (Some("Node"), Some("node-1"))
    );
    assert_eq!(e["metadata"]["namespace"], "default");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.starts_with("startup taint nodeprep.io/not-ready still on after 15 min: nvidia: GPU 3 (0000:86:00.0): XID 79"), "{msg}");
    drop(a);
    let ready = condition(&api, "nodeprep.io/Ready").unwrap();
    assert_eq!(ready["reason"], "GateTimedOut", "{ready}");
    assert_eq!(taints(&api)[0], "nodeprep.io/not-ready");
    assert!(
        condition(&api, "AcceleratedHardwareReady").is_none(),
        "keep-taint: nothing for repair"
    );

    // gate_deadline_action = "repair": the hardware failure becomes repair-eligible.
    let (url, api) =
        fake_kube::start_with(Mode::Normal, fake_kube::node(DEVICES(), json!({}), &created));
    let dir = tree(gpu_lost(), &url, &format!("{TAINT}\ngate_deadline_action = \"repair\""));
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("AcceleratedHardwareReady False", || {
        condition(&api, "AcceleratedHardwareReady").is_some_and(|c| c["status"] == "False")
    });

    // Before the deadline nothing is said.
    let (url, api) = fake_kube::start(Mode::Normal, DEVICES());
    let dir = tree(gpu_lost(), &url, TAINT);
    let _srv = serve(dir.path(), &dir.path().join("serve.log"));
    wait_until("three runs", || patches(&api) >= 3);
    assert!(api.lock().unwrap().events.is_empty());
    assert_eq!(condition(&api, "nodeprep.io/Ready").unwrap()["reason"], "RequiredChecksFailed");
}

#[test]
fn connections_dropped_by_the_server_are_retried() {
    let (url, api) = fake_kube::start(Mode::Normal, DEVICES());
    api.lock().unwrap().drop_connections = 2;
    let dir = tree(Spec::p5_48xlarge(), &url, TAINT);
    let srv = serve(dir.path(), &dir.path().join("serve.log"));
    assert_eq!(srv.wait_for("/readyz", 200).0, 200);
    wait_until("the startup taint to go", || taints(&api) == ["dedicated"]);
    assert_eq!(api.lock().unwrap().dropped, 2);
    assert!(condition(&api, "nodeprep.io/Ready").is_some());
}
