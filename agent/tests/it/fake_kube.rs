//! A fake Kubernetes API server for `serve`'s Kubernetes updates: one Node, bearer-token auth,
//! strategic merge of `status.conditions` by type, resourceVersion preconditions on merge patches
//! (409 on mismatch), `resource.k8s.io/v1` ResourceSlices listed by `spec.nodeName` (or absent, as
//! on a cluster before 1.34: 404), core/v1 Events, and the failures seen in the field: a conflict,
//! 401, a hung server, and connections closed before an answer (a dropped watch or keep-alive).
//! It answers as the real API server documents (Status objects with code and reason).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Mode {
    Normal,
    ConflictOnce,
    Unauthorized,
    Hang,
}

pub struct Api {
    pub node: Value,
    pub mode: Mode,
    pub conflicts: usize,
    pub status_patches: Vec<(String, Value)>,
    pub requests: usize,
    /// `None`: the cluster has no `resource.k8s.io/v1` (404).
    pub slices: Option<Vec<Value>>,
    pub events: Vec<Value>,
    /// Connections the server closes right after accepting them, before any answer.
    pub drop_connections: usize,
    pub dropped: usize,
}

pub type Shared = Arc<Mutex<Api>>;

/// The keys of the Node's taints, in order.
pub fn taint_keys(api: &Shared) -> Vec<String> {
    let a = api.lock().unwrap();
    a.node["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap().to_string())
        .collect()
}

type Resp = (StatusCode, [(&'static str, &'static str); 1], String);

fn status(code: u16, reason: &str, msg: &str) -> Resp {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": msg, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), [("content-type", "application/json")], body.to_string())
}

fn ok(code: StatusCode, v: &Value) -> Resp {
    (code, [("content-type", "application/json")], v.to_string())
}

async fn gate(s: &Shared, headers: &HeaderMap) -> Option<Resp> {
    let mode = {
        let mut a = s.lock().unwrap();
        a.requests += 1;
        a.mode
    };
    if mode == Mode::Hang {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if mode == Mode::Unauthorized || auth != "Bearer test-token" {
        return Some(status(401, "Unauthorized", "Unauthorized"));
    }
    None
}

async fn get_node(State(s): State<Shared>, Path(name): Path<String>, headers: HeaderMap) -> Resp {
    if let Some(r) = gate(&s, &headers).await {
        return r;
    }
    let a = s.lock().unwrap();
    if a.node["metadata"]["name"] != name.as_str() {
        return status(404, "NotFound", &format!("nodes \"{name}\" not found"));
    }
    ok(StatusCode::OK, &a.node)
}

async fn patch_status(
    State(s): State<Shared>,
    Path(_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Resp {
    if let Some(r) = gate(&s, &headers).await {
        return r;
    }
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let patch: Value = serde_json::from_slice(&body).unwrap();
    let mut a = s.lock().unwrap();
    a.status_patches.push((ct, patch.clone()));
    // Strategic merge of status.conditions by type.
    let mut conds = a.node["status"]["conditions"].as_array().cloned().unwrap_or_default();
    for c in patch["status"]["conditions"].as_array().unwrap() {
        conds.retain(|e| e["type"] != c["type"]);
        conds.push(c.clone());
    }
    a.node["status"]["conditions"] = Value::Array(conds);
    bump(&mut a.node);
    ok(StatusCode::OK, &a.node)
}

async fn patch_node(
    State(s): State<Shared>,
    Path(_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Resp {
    if let Some(r) = gate(&s, &headers).await {
        return r;
    }
    let patch: Value = serde_json::from_slice(&body).unwrap();
    let mut a = s.lock().unwrap();
    if a.mode == Mode::ConflictOnce && a.conflicts == 0 {
        a.conflicts += 1;
        // Someone else changed the node meanwhile.
        bump(&mut a.node);
        return status(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again");
    }
    if patch["metadata"]["resourceVersion"] != a.node["metadata"]["resourceVersion"] {
        a.conflicts += 1;
        return status(409, "Conflict", "the object has been modified");
    }
    a.node["spec"]["taints"] = patch["spec"]["taints"].clone();
    bump(&mut a.node);
    ok(StatusCode::OK, &a.node)
}

async fn list_slices(State(s): State<Shared>, RawQuery(q): RawQuery, headers: HeaderMap) -> Resp {
    if let Some(r) = gate(&s, &headers).await {
        return r;
    }
    let a = s.lock().unwrap();
    let Some(slices) = &a.slices else {
        return status(404, "NotFound", "the server could not find the requested resource");
    };
    // fieldSelector=spec.nodeName=<node>, as the API server supports for ResourceSlices.
    let decoded = q.unwrap_or_default().replace("%3D", "=").replace("%3d", "=").replace("%2F", "/");
    let node = decoded
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldSelector="))
        .and_then(|f| f.strip_prefix("spec.nodeName="))
        .map(str::to_string);
    let items: Vec<Value> = slices
        .iter()
        .filter(|s| node.as_deref().is_none_or(|n| s["spec"]["nodeName"] == n))
        .cloned()
        .collect();
    ok(
        StatusCode::OK,
        &json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSliceList", "metadata": {"resourceVersion": "7"}, "items": items}),
    )
}

async fn create_event(
    State(s): State<Shared>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Resp {
    if let Some(r) = gate(&s, &headers).await {
        return r;
    }
    let ev: Value = serde_json::from_slice(&body).unwrap();
    if ev["metadata"]["namespace"].as_str().is_some_and(|n| n != ns) {
        return status(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    for field in ["involvedObject", "reason", "message"] {
        if ev.get(field).is_none() {
            return status(
                422,
                "Invalid",
                &format!("Event \"\" is invalid: {field}: Required value"),
            );
        }
    }
    s.lock().unwrap().events.push(ev.clone());
    ok(StatusCode::CREATED, &ev)
}

fn bump(node: &mut Value) {
    let rv: u64 = node["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    node["metadata"]["resourceVersion"] = Value::from((rv + 1).to_string());
}

/// A node as kubelet registers it (Karpenter adds labels; `created` is its creationTimestamp).
pub fn node(allocatable: Value, labels: Value, created: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "uid": "5b2c8d2e-1f7a-4c7e-9d43-0c1f2e3a4b5c", "resourceVersion": "100",
                     "creationTimestamp": created, "labels": labels},
        "spec": {"taints": [
            {"key": "nodeprep.io/not-ready", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
        ]},
        "status": {"allocatable": allocatable, "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": "2026-11-25T00:00:00Z", "lastTransitionTime": "2026-11-25T00:00:00Z"}
        ]}
    })
}

/// A ResourceSlice of `driver` for node-1 with `devices` devices (one slice in its pool).
pub fn slice(driver: &str, devices: usize) -> Value {
    let devs: Vec<Value> = (0..devices).map(|i| json!({"name": format!("dev-{i}")})).collect();
    json!({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": {"name": format!("node-1-{driver}"), "resourceVersion": "5"},
        "spec": {"driver": driver, "nodeName": "node-1",
                 "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
                 "devices": devs}})
}

/// Starts the fake with the node of [`node`] (no labels, created now) and these allocatable.
pub fn start(mode: Mode, allocatable: Value) -> (String, Shared) {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    start_with(mode, node(allocatable, json!({}), &now))
}

/// Starts the fake serving `node`; returns its URL (through a proxy that can drop connections).
pub fn start_with(mode: Mode, node: Value) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(Api {
        node,
        mode,
        conflicts: 0,
        status_patches: vec![],
        requests: 0,
        slices: Some(vec![]),
        events: vec![],
        drop_connections: 0,
        dropped: 0,
    }));
    let app = Router::new()
        .route("/api/v1/nodes/{name}", get(get_node).patch(patch_node))
        .route("/api/v1/nodes/{name}/status", axum::routing::patch(patch_status))
        .route("/apis/resource.k8s.io/v1/resourceslices", get(list_slices))
        .route("/api/v1/namespaces/{ns}/events", post(create_event))
        .with_state(Arc::clone(&shared));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let inner = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            axum::serve(tokio::net::TcpListener::from_std(listener).unwrap(), app).await.unwrap()
        });
    });
    // The front door: closes the connections it is told to drop, forwards the others.
    let front = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = front.local_addr().unwrap();
    let proxy_state = Arc::clone(&shared);
    std::thread::spawn(move || {
        for conn in front.incoming() {
            let Ok(client) = conn else { continue };
            {
                let mut a = proxy_state.lock().unwrap();
                if a.dropped < a.drop_connections {
                    a.dropped += 1;
                    // Read the request, then close without a word: "connection closed before
                    // message completed" on the client's side.
                    let mut c = client;
                    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = c.read(&mut [0u8; 4096]);
                    continue;
                }
            }
            let Ok(server) = TcpStream::connect(inner) else { continue };
            pipe(client, server);
        }
    });
    (format!("http://{addr}"), shared)
}

/// Copies both ways between two connections until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    copy(a, b2);
    copy(b, a2);
}
