//! Limits against a real containerd (Debian's containerd + runc), pods made through the CRI API as
//! kubelet makes them: what a pod's `/proc/self/limits` shows, what `check --only limits` says, and
//! what the `limits-canary` pod measures must agree.
//!
//! Each test runs its own containerd in a private mount namespace where the test's tree is bound
//! over `/etc/containerd` and `/run/containerd`, so the config's absolute paths are the ones a node
//! has and nodeprep reads the same files under `--root`. The sandbox image is built from
//! busybox-static (`tests/cri/make-image.py`) and imported: no registry is reachable here. The
//! tests take turns (one containerd at a time).
//!
//! Where this machine cannot raise a hard limit (no CAP_SYS_RESOURCE), the tests use the largest
//! value it can (this process's hard limit) instead of unlimited and say so; without
//! CAP_SYS_RESOURCE runc also cannot lower a container's oom_score_adj below containerd's, so the
//! config sets the CRI plugin's `restrict_oom_score_adj` (also said).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::common::{nodeprep, stdout};

static SERIAL: Mutex<()> = Mutex::new(());
const IMAGE: &str = "localhost/nodeprep-canary:1";
/// Debian's containerd's default sandbox image, for the stock config.
const DEBIAN_PAUSE: &str = "registry.k8s.io/pause:3.6";
const KIB64: u64 = 64 << 10;
const CANARY_LABEL: &str = "io.nodeprep.canary";

fn need(cmd: &str, pkg: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
        .unwrap_or(false);
    assert!(found, "{cmd} is not installed: run scripts/test (it installs Debian's {pkg}), or `apt-get install {pkg}`");
}

/// What this machine lets the tests set.
struct Caps {
    sys_resource: bool,
    /// The memlock the pods are asked to get: unlimited, or the most this process may set.
    memlock: Option<u64>,
    stack: Option<u64>,
    nofile_hard: u64,
}

fn hard(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(resource, &mut r) }, 0);
    (r.rlim_max != libc::RLIM_INFINITY).then_some(r.rlim_max)
}

fn caps() -> &'static Caps {
    static CAPS: OnceLock<Caps> = OnceLock::new();
    CAPS.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim();
        let sys_resource = u64::from_str_radix(eff, 16).unwrap() & (1 << 24) != 0;
        let c = Caps {
            sys_resource,
            memlock: if sys_resource { None } else { hard(libc::RLIMIT_MEMLOCK) },
            stack: if sys_resource { None } else { hard(libc::RLIMIT_STACK) },
            nofile_hard: hard(libc::RLIMIT_NOFILE).unwrap_or(1 << 20),
        };
        if !sys_resource {
            println!(
                "containerd tests: no CAP_SYS_RESOURCE here: pods are asked for memlock {} and stack {} (this process's hard limits) instead of unlimited, NOFILE at most {}; restrict_oom_score_adj is set",
                show(c.memlock),
                show(c.stack),
                c.nofile_hard
            );
        }
        c
    })
}

fn show(l: Option<u64>) -> String {
    l.map_or("unlimited".into(), |b| b.to_string())
}

fn toml_limit(l: Option<u64>) -> String {
    l.map_or("\"unlimited\"".into(), |b| b.to_string())
}

fn oci(l: Option<u64>) -> u64 {
    l.unwrap_or(u64::MAX)
}

/// The image archive, built once.
fn image_tar(name: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let tar = dir.path().join(format!("{}.tar", name.replace(['/', ':'], "_")));
    if !tar.exists() {
        need("busybox", "busybox-static");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cri/make-image.py");
        let o = Command::new("python3").arg(script).arg(&tar).arg(name).output().unwrap();
        assert!(o.status.success(), "make-image.py: {}", String::from_utf8_lossy(&o.stderr));
    }
    tar
}

/// A node's tree with a real containerd serving it.
struct Node {
    dir: tempfile::TempDir,
    child: Option<Child>,
    mnt_ns: Option<String>,
}

/// The CRI section's lines the tests need on this machine.
fn cri_extras() -> &'static str {
    if caps().sys_resource {
        ""
    } else {
        "restrict_oom_score_adj = true\n"
    }
}

impl Node {
    fn new() -> Node {
        need("containerd", "containerd");
        need("runc", "runc");
        need("ctr", "containerd");
        need("unshare", "util-linux");
        need("prlimit", "util-linux");
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "etc/containerd/conf.d",
            "run/containerd",
            "var/lib/containerd",
            "logs",
            "etc/nodeprep",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::os::unix::fs::symlink("/proc", dir.path().join("proc")).unwrap();
        let c = caps();
        std::fs::write(
            dir.path().join("etc/nodeprep/config.toml"),
            format!(
                "[imds]\nenabled = \"never\"\n[limits]\napply = \"always\"\nmemlock = {}\nstack = {}\n",
                toml_limit(c.memlock),
                toml_limit(c.stack)
            ),
        )
        .unwrap();
        Node { dir, child: None, mnt_ns: None }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The top of config.toml every scenario has: where containerd keeps its state (a node's paths
    /// inside the namespace), no CNI.
    fn head(&self) -> String {
        format!(
            "version = 2\nroot = \"{}\"\nstate = \"/run/containerd\"\n[grpc]\naddress = \"/run/containerd/containerd.sock\"\n",
            self.root().join("var/lib/containerd").display()
        )
    }

    /// The CRI section head: the sandbox image, no CNI, this machine's extras.
    fn cri(image: &str) -> String {
        format!(
            "[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"{image}\"\n{}\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\nbin_dir = \"/nonexistent\"\nconf_dir = \"/nonexistent\"\n",
            cri_extras()
        )
    }

    fn write(&self, path: &str, content: &str) {
        let p = self.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// A complete OCI spec as the EKS AMIs ship (`ctr oci spec`, NOFILE 65536/1048576 as theirs,
    /// capped by what this machine allows), plus `extra` rlimits.
    fn eks_spec(&self, extra: &[(&str, u64, u64)]) -> String {
        let o = Command::new("ctr").args(["oci", "spec"]).output().unwrap();
        let mut spec: Value = serde_json::from_slice(&o.stdout).unwrap();
        let cap = |v: u64| if caps().sys_resource { v } else { v.min(caps().nofile_hard) };
        let mut rl = vec![
            serde_json::json!({"type": "RLIMIT_NOFILE", "soft": cap(65536), "hard": cap(1048576)}),
        ];
        for (t, soft, hard) in extra {
            rl.push(serde_json::json!({"type": t, "soft": soft, "hard": hard}));
        }
        spec["process"]["rlimits"] = Value::from(rl);
        serde_json::to_string_pretty(&spec).unwrap()
    }

    fn socket(&self) -> PathBuf {
        self.root().join("run/containerd/containerd.sock")
    }

    /// Starts containerd as systemd would with Debian's unit and no nodeprep drop-in yet: memlock
    /// 64 KiB soft (hard as high as this machine allows), stack 8 MiB soft.
    fn start(&mut self) {
        for d in ["/etc/containerd", "/run/containerd"] {
            std::fs::create_dir_all(d).unwrap();
        }
        let c = caps();
        let script = format!(
            "mount --bind \"$1/etc/containerd\" /etc/containerd && mount --bind \"$1/run/containerd\" /run/containerd && cd / && \
             exec prlimit --memlock={KIB64}:{} --stack=8388608:{} containerd --config /etc/containerd/config.toml",
            c.memlock.map_or("unlimited".into(), |m| m.to_string()),
            c.stack.map_or("unlimited".into(), |m| m.to_string()),
        );
        let log = std::fs::File::create(self.root().join("containerd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
            .arg(self.root())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let text =
                std::fs::read_to_string(self.root().join("containerd.log")).unwrap_or_default();
            if text.contains("containerd successfully booted") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "containerd did not start: {text}"
            );
            assert!(
                self.child.as_mut().unwrap().try_wait().unwrap().is_none(),
                "containerd exited: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.mnt_ns =
            std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok().map(|p| p.display().to_string());
        for (name, tar) in [(IMAGE, image_tar(IMAGE)), (DEBIAN_PAUSE, image_tar(DEBIAN_PAUSE))] {
            let o = Command::new("ctr")
                .arg("-a")
                .arg(self.socket())
                .args(["-n", "k8s.io", "images", "import"])
                .arg(tar)
                .output()
                .unwrap();
            assert!(o.status.success(), "importing {name}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }

    fn cri_loaded(&self) -> bool {
        let o = Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["plugins", "ls"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        text.lines().any(|l| {
            l.contains("io.containerd.grpc.v1")
                && l.contains(" cri ")
                && l.trim_end().ends_with("ok")
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("containerd.log")).unwrap_or_default()
    }

    /// Removes every pod, stops containerd and kills what is left in its mount namespace (shims).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if self.socket().exists() {
            let _ = block_on(async {
                let mut rt = client(&self.socket()).await?;
                let items = rt
                    .list_pod_sandbox(ListPodSandboxRequest { filter: None })
                    .await?
                    .into_inner()
                    .items;
                for sb in items {
                    rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sb.id.clone() })
                        .await?;
                    rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sb.id })
                        .await?;
                }
                Ok::<_, Box<dyn std::error::Error>>(())
            });
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        if let Some(ns) = self.mnt_ns.take() {
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
                if std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .ok()
                    .map(|p| p.display().to_string())
                    .as_deref()
                    == Some(ns.as_str())
                {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.start();
    }

    fn check(&self, only: &str) -> Value {
        let o = nodeprep(self.root(), &["--output", "json", "check", "--only", only]);
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {o:?}"));
        v["checks"][0].clone()
    }

    fn boot(&self) -> String {
        let o = nodeprep(self.root(), &["boot"]);
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    }

    /// A pod made as kubelet makes one, whose container prints its `/proc/self/limits`.
    fn pod_limits(&self) -> Result<PodLimits, String> {
        let sock = self.socket();
        let logs = self.root().join("logs");
        block_on(async move {
            let mut rt = client(&sock).await.map_err(|e| e.to_string())?;
            let uid = format!(
                "test-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            );
            let pod = sandbox(&uid, &logs, HashMap::new());
            let sb = rt
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(pod.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .map_err(|e| format!("RunPodSandbox: {}", e.message()))?
                .into_inner()
                .pod_sandbox_id;
            let log = format!("{uid}.log");
            let cc = ContainerConfig {
                metadata: Some(ContainerMetadata { name: "limits".into(), attempt: 0 }),
                image: Some(ImageSpec { image: IMAGE.into(), ..Default::default() }),
                command: vec!["/bin/cat".into(), "/proc/self/limits".into()],
                log_path: log.clone(),
                working_dir: "/".into(),
                ..Default::default()
            };
            let id = rt
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: sb.clone(),
                    config: Some(cc),
                    sandbox_config: Some(pod),
                })
                .await
                .map_err(|e| format!("CreateContainer: {}", e.message()))?
                .into_inner()
                .container_id;
            rt.start_container(StartContainerRequest { container_id: id.clone() })
                .await
                .map_err(|e| e.message().to_string())?;
            let t = Instant::now();
            loop {
                let st = rt
                    .container_status(ContainerStatusRequest {
                        container_id: id.clone(),
                        verbose: false,
                    })
                    .await
                    .map_err(|e| e.message().to_string())?
                    .into_inner();
                if st.status.is_some_and(|s| s.state == ContainerState::ContainerExited as i32) {
                    break;
                }
                if t.elapsed() > Duration::from_secs(10) {
                    return Err("the container did not exit".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            rt.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: sb.clone() })
                .await
                .map_err(|e| e.message().to_string())?;
            rt.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: sb })
                .await
                .map_err(|e| e.message().to_string())?;
            // CRI log lines: "<time> stdout F <text>".
            let text: String = std::fs::read_to_string(logs.join(&log))
                .map_err(|e| e.to_string())?
                .lines()
                .filter_map(|l| l.splitn(4, ' ').nth(3))
                .map(|l| format!("{l}\n"))
                .collect();
            Ok(PodLimits::parse(&text))
        })
    }

    /// A canary pod as a crashed run leaves it: labelled, running; `owner`: the pid label a
    /// nodeprep that makes it puts on it (none: an older nodeprep's).
    fn leave_a_canary(&self, owner: Option<u32>) -> String {
        let sock = self.socket();
        let logs = self.root().join("logs");
        block_on(async move {
            let mut rt = client(&sock).await.unwrap();
            let mut labels = HashMap::from([(CANARY_LABEL.to_string(), "true".to_string())]);
            if let Some(pid) = owner {
                labels.insert("io.nodeprep.canary.pid".to_string(), pid.to_string());
            }
            let pod = sandbox(&format!("crashed-run-{owner:?}"), &logs, labels);
            rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id
        })
    }

    fn canary_pods(&self) -> usize {
        let sock = self.socket();
        block_on(async move {
            let mut rt = client(&sock).await.unwrap();
            let filter = PodSandboxFilter {
                label_selector: HashMap::from([(CANARY_LABEL.to_string(), "true".to_string())]),
                ..Default::default()
            };
            rt.list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) })
                .await
                .unwrap()
                .into_inner()
                .items
                .len()
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

async fn client(sock: &Path) -> Result<RuntimeServiceClient<Channel>, tonic::transport::Error> {
    let sock = sock.to_path_buf();
    let ch = Endpoint::try_from("http://localhost")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let s = sock.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(s).await?))
            }
        }))
        .await?;
    Ok(RuntimeServiceClient::new(ch))
}

fn sandbox(uid: &str, logs: &Path, labels: HashMap<String, String>) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: uid.into(),
            uid: uid.into(),
            namespace: "test".into(),
            attempt: 0,
        }),
        log_directory: logs.display().to_string(),
        labels,
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Soft/hard of the rows the tests look at, from `/proc/self/limits` text (`None`: unlimited).
#[derive(Debug, PartialEq)]
struct PodLimits {
    memlock: (Option<u64>, Option<u64>),
    stack: (Option<u64>, Option<u64>),
    nofile: (Option<u64>, Option<u64>),
}

impl PodLimits {
    fn parse(text: &str) -> PodLimits {
        let row = |name: &str| {
            let l = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name:?} in {text}"));
            let w: Vec<&str> = l[name.len()..].split_whitespace().collect();
            let v = |s: &str| if s == "unlimited" { None } else { Some(s.parse::<u64>().unwrap()) };
            (v(w[0]), v(w[1]))
        };
        PodLimits {
            memlock: row("Max locked memory"),
            stack: row("Max stack size"),
            nofile: row("Max open files"),
        }
    }
}

/// `found.<k>` of the limits check as the limit (`None`: unlimited).
fn found(c: &Value, key: &str) -> Option<u64> {
    match &c["found"][key] {
        Value::String(s) if s == "unlimited" => None,
        Value::Number(n) => n.as_u64(),
        other => panic!("found.{key} is {other}: {c}"),
    }
}

fn canary_soft(c: &Value, key: &str) -> Option<u64> {
    match &c["found"]["pod"][key]["soft"] {
        Value::String(s) if s == "unlimited" => None,
        Value::Number(n) => n.as_u64(),
        other => panic!("found.pod.{key}.soft is {other}: {c}"),
    }
}

#[test]
fn an_eks_node_booted_before_containerd_passes_and_the_canary_pod_agrees() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = Node::new();
    n.write(
        "/etc/containerd/config.toml",
        &format!(
            "{}{}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nbase_runtime_spec = \"/etc/containerd/base-runtime-spec.json\"\n",
            n.head(),
            Node::cri(IMAGE)
        ),
    );
    n.write("/etc/containerd/base-runtime-spec.json", &n.eks_spec(&[]));
    // As the shipped units order it: boot writes the spec, containerd starts right after.
    let boot = n.boot();
    assert!(boot.contains("base-runtime-spec.json"), "{boot}");
    n.start();
    let c = n.check("limits");
    assert_eq!(c["status"], "pass", "a spec written just before containerd started is loaded: {c}");
    let want = caps();
    assert_eq!((found(&c, "memlock"), found(&c, "stack")), (want.memlock, want.stack), "{c}");
    let pod = n.pod_limits().unwrap();
    assert_eq!(pod.memlock, (want.memlock, want.memlock), "{pod:?}");
    assert_eq!(pod.stack, (want.stack, want.stack), "{pod:?}");
    let nofile_cap = |v: u64| if want.sys_resource { v } else { v.min(want.nofile_hard) };
    assert_eq!(
        pod.nofile,
        (Some(nofile_cap(65536)), Some(nofile_cap(1048576))),
        "NOFILE kept: {pod:?}"
    );
    let canary = n.check("limits-canary");
    assert_eq!(canary_soft(&canary, "memlock"), pod.memlock.0);
    assert_eq!(canary_soft(&canary, "stack"), pod.stack.0);
    assert_eq!(canary_soft(&canary, "nofile"), pod.nofile.0);
    assert_eq!(n.canary_pods(), 0, "the canary removed what it made");
    println!(
        "canary: {} ms to the limits, {} ms to remove",
        canary["found"]["run_ms"], canary["found"]["cleanup_ms"]
    );
}

#[test]
fn a_spec_the_config_does_not_name_gives_pods_containerds_own_limits_and_nodeprep_says_so() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = Node::new();
    // Debian's stock config.toml (no base_runtime_spec) and the default sandbox image.
    let stock = std::fs::read_to_string("/etc/containerd/config.toml").unwrap_or_default();
    let stock: String = stock
        .lines()
        .filter(|l| !l.trim_start().starts_with("version"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!stock.contains("base_runtime_spec"), "{stock}");
    let cri = if stock.contains("[plugins.\"io.containerd.grpc.v1.cri\"]") {
        // Debian's has a CRI section (CNI paths); this machine's extras go into it.
        stock.replacen(
            "[plugins.\"io.containerd.grpc.v1.cri\"]\n",
            &format!("[plugins.\"io.containerd.grpc.v1.cri\"]\n{}", cri_extras()),
            1,
        )
    } else {
        format!("{stock}{}", Node::cri(DEBIAN_PAUSE))
    };
    n.write("/etc/containerd/config.toml", &format!("{}{cri}", n.head()));
    let spec = n.eks_spec(&[("RLIMIT_MEMLOCK", oci(caps().memlock), oci(caps().memlock))]);
    n.write("/etc/containerd/base-runtime-spec.json", &spec);
    let boot = n.boot();
    assert!(boot.contains("names no base_runtime_spec"), "{boot}");
    assert_eq!(
        std::fs::read_to_string(n.root().join("etc/containerd/base-runtime-spec.json")).unwrap(),
        spec,
        "left alone"
    );
    n.start();
    let pod = n.pod_limits().unwrap();
    assert_eq!(
        pod.memlock.0,
        Some(KIB64),
        "the pod gets containerd's own memlock, not the file's: {pod:?}"
    );
    let c = n.check("limits");
    assert_eq!(c["status"], "fail", "{c}");
    assert_eq!(found(&c, "memlock"), Some(KIB64), "{c}");
    let canary = n.check("limits-canary");
    assert_eq!(canary_soft(&canary, "memlock"), Some(KIB64), "{canary}");
    assert!(
        canary["summary"].as_str().unwrap().contains("config wants memlock"),
        "agrees, and short: {canary}"
    );
}

#[test]
fn an_nvidia_drop_in_import_that_replaces_the_cri_section_is_followed() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = Node::new();
    n.write(
        "/etc/containerd/config.toml",
        &format!(
            "imports = [\"conf.d/99-nvidia.toml\"]\n{}{}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nbase_runtime_spec = \"/etc/containerd/base-runtime-spec.json\"\n",
            n.head(),
            Node::cri(IMAGE)
        ),
    );
    // As nvidia-ctk writes it: the CRI section with `nvidia` the default runtime, and no spec.
    n.write(
        "/etc/containerd/conf.d/99-nvidia.toml",
        &format!(
            "version = 2\n{}[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"nvidia\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\nruntime_type = \"io.containerd.runc.v2\"\n",
            Node::cri(IMAGE)
        ),
    );
    let spec = n.eks_spec(&[("RLIMIT_MEMLOCK", oci(caps().memlock), oci(caps().memlock))]);
    n.write("/etc/containerd/base-runtime-spec.json", &spec);
    n.start();
    let pod = n.pod_limits().unwrap();
    assert_eq!(
        pod.memlock.0,
        Some(KIB64),
        "runc's spec is gone with the replaced section: {pod:?}"
    );
    let c = n.check("limits");
    assert_eq!(c["found"]["runtime"], "nvidia", "{c}");
    assert_eq!(found(&c, "memlock"), Some(KIB64), "{c}");
    assert_eq!(c["status"], "fail", "{c}");
    let canary = n.check("limits-canary");
    assert_eq!(canary_soft(&canary, "memlock"), Some(KIB64), "{canary}");
}

#[test]
fn a_spec_that_does_not_exist_or_is_not_json_stops_every_pod_and_nodeprep_says_so() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for broken in [None, Some("{ not json")] {
        let mut n = Node::new();
        n.write(
            "/etc/containerd/config.toml",
            &format!(
                "{}{}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nbase_runtime_spec = \"/etc/containerd/cri-base.json\"\n",
                n.head(),
                Node::cri(IMAGE)
            ),
        );
        if let Some(text) = broken {
            n.write("/etc/containerd/cri-base.json", text);
        }
        let boot = n.boot();
        assert!(boot.contains("no pod can start"), "{boot}");
        n.start();
        assert!(!n.cri_loaded(), "containerd's CRI plugin loaded with {broken:?}: {}", n.log());
        let pod = n.pod_limits();
        assert!(
            pod.as_ref().is_err_and(|e| e.contains("unknown service runtime.v1.RuntimeService")),
            "{pod:?}"
        );
        let c = n.check("limits");
        assert_eq!(
            (c["status"].as_str(), c["required"].as_bool()),
            (Some("fail"), Some(true)),
            "{c}"
        );
        assert!(c["summary"].as_str().unwrap().starts_with("no pod can start"), "{c}");
        let canary = n.check("limits-canary");
        assert_eq!(canary["status"], "fail", "{canary}");
        assert!(
            canary["remedy"].as_str().unwrap().contains("CRI plugin is not loaded"),
            "{canary}"
        );
    }
}

#[test]
fn a_spec_changed_after_containerd_started_is_not_what_pods_get_until_a_restart() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = Node::new();
    n.write(
        "/etc/containerd/config.toml",
        &format!(
            "{}{}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nbase_runtime_spec = \"/etc/containerd/base-runtime-spec.json\"\n",
            n.head(),
            Node::cri(IMAGE)
        ),
    );
    let hard = oci(caps().memlock);
    n.write(
        "/etc/containerd/base-runtime-spec.json",
        &n.eks_spec(&[("RLIMIT_MEMLOCK", KIB64, hard)]),
    );
    n.start();
    std::thread::sleep(Duration::from_millis(50));
    // boot runs on a node whose containerd already runs (a rerun over SSM).
    let boot = n.boot();
    assert!(boot.contains("containerd must be restarted"), "{boot}");
    let c = n.check("limits");
    assert!(c["summary"].as_str().unwrap().contains("changed after containerd started"), "{c}");
    assert_eq!(c["found"]["memlock"], Value::Null, "not the file's value: {c}");
    assert_eq!(
        n.pod_limits().unwrap().memlock.0,
        Some(KIB64),
        "containerd still uses what it loaded"
    );
    let canary = n.check("limits-canary");
    assert_eq!(canary_soft(&canary, "memlock"), Some(KIB64), "{canary}");
    assert_ne!(canary["status"], "pass", "{canary}");
    n.restart();
    let c = n.check("limits");
    assert_eq!(c["status"], "pass", "{c}");
    assert_eq!(n.pod_limits().unwrap().memlock.0, caps().memlock);
    assert_eq!(n.check("limits-canary")["status"], "pass");
}

#[test]
fn the_canary_removes_crashed_runs_pods_not_a_running_ones_and_skips_plainly_without_a_socket() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = Node::new();
    n.write("/etc/containerd/config.toml", &format!("{}{}", n.head(), Node::cri(IMAGE)));
    n.start();
    let left = n.leave_a_canary(None);
    // A pid that no longer runs: a crashed nodeprep's.
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let crashed = n.leave_a_canary(Some(gone_pid));
    // A nodeprep still running its canary (here: this test's pid): not a leftover.
    let running = n.leave_a_canary(Some(std::process::id()));
    assert_eq!(n.canary_pods(), 3);
    let canary = n.check("limits-canary");
    let mut removed: Vec<String> = canary["found"]["leftovers_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    removed.sort();
    let mut want = vec![left, crashed];
    want.sort();
    assert_eq!(removed, want, "{canary}");
    assert_eq!(n.canary_pods(), 1, "the running one's pod is left to it");
    let _ = running;
    // Not in a plain check; in --deep.
    let o = nodeprep(n.root(), &["--output", "json", "check"]);
    assert!(!stdout(&o).contains("limits-canary"), "plain check runs no canary");
    let o = nodeprep(n.root(), &["--output", "json", "check", "--deep"]);
    assert!(stdout(&o).contains("\"limits-canary\""), "{}", stdout(&o));
    n.stop();
    let _ = std::fs::remove_file(n.socket());
    let canary = n.check("limits-canary");
    assert_eq!(canary["status"], "skip", "{canary}");
    assert!(
        canary["summary"].as_str().unwrap().contains("CRI socket")
            && canary["summary"].as_str().unwrap().contains("does not exist"),
        "{canary}"
    );
}

#[test]
fn serve_runs_the_canary_once_containerd_is_up_and_keeps_its_result() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut n = Node::new();
    n.write(
        "/etc/containerd/config.toml",
        &format!(
            "{}{}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nbase_runtime_spec = \"/etc/containerd/base-runtime-spec.json\"\n",
            n.head(),
            Node::cri(IMAGE)
        ),
    );
    n.write("/etc/containerd/base-runtime-spec.json", &n.eks_spec(&[]));
    n.boot();
    let config = std::fs::read_to_string(n.root().join("etc/nodeprep/config.toml")).unwrap();
    n.write("/etc/nodeprep/config.toml", &format!("{config}[serve]\ninterval_seconds = 1\n"));
    let mut cmd =
        crate::common::Nodeprep::new(n.root()).args(["serve", "--listen", "127.0.0.1:0"]).command();
    cmd.stderr(Stdio::null());
    let srv = crate::common::Server::spawn(cmd);
    let canary = |srv: &crate::common::Server| -> Value {
        let (_, _, body) = srv.wait_for("/status", 200);
        let v: Value = serde_json::from_str(&body).unwrap();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "limits-canary")
            .cloned()
            .unwrap_or_else(|| panic!("serve runs the canary: {v}"))
    };
    let before = canary(&srv);
    assert_eq!(before["status"], "skip", "containerd is not up yet: {before}");
    n.start();
    let t = Instant::now();
    let first = loop {
        let c = canary(&srv);
        if c["status"] != "skip" {
            break c;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the canary never ran: {c}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(first["status"], "pass", "{first}");
    std::thread::sleep(Duration::from_millis(2500));
    let later = canary(&srv);
    assert_eq!(
        later["found"]["pid"], first["found"]["pid"],
        "one canary per serve process: {later}"
    );
    assert_eq!(n.canary_pods(), 0);
    srv.terminate();
}
