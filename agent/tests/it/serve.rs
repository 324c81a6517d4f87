//! `nodeprep serve` over real HTTP on 127.0.0.1, with its systemd notifications on a test socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nodeprep_fixtures::Spec;

use crate::common::{Nodeprep, Server};
use crate::fake_kube::{self, taint_keys};

/// `serve` on `root` with `env` set (a test's systemd variables); stderr dropped.
fn start(root: &Path, env: &[(&str, &str)]) -> Server {
    let prefix: &[&str] = if env.iter().any(|(k, _)| *k == "WATCHDOG_USEC") {
        // systemd sets WATCHDOG_PID to the service's pid: exec keeps the shell's pid.
        &["sh", "-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""]
    } else {
        &[]
    };
    let mut cmd =
        Nodeprep::through(prefix, root).args(["serve", "--listen", "127.0.0.1:0"]).command();
    cmd.envs(env.iter().copied()).stderr(Stdio::null());
    Server::spawn(cmd)
}

fn prepared(interval: u32) -> tempfile::TempDir {
    let mut s = Spec::p5_48xlarge();
    s.config = Some(format!("[serve]\ninterval_seconds = {interval}\n"));
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    dir
}

#[test]
fn endpoints_answer_with_codes_types_and_bodies() {
    let dir = prepared(30);
    let srv = start(dir.path(), &[]);
    let (code, head, body) = srv.wait_for("/readyz", 200);
    assert_eq!((code, body.as_str()), (200, "ready\n"), "{head}");
    assert!(head.contains("content-type: text/plain; charset=utf-8"), "{head}");
    let (code, _, body) = srv.get("/livez");
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, head, body) = srv.get("/status");
    assert_eq!(code, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["schema"], "nodeprep.report/v1");
    assert_eq!(v["ready"], true);
    // Text 0.0.4 by default (curl, promtool); OpenMetrics when asked for, as Prometheus does.
    let (code, head, body) = srv.get("/metrics");
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    assert!(
        body.contains("nodeprep_ready 1\n")
            && body.contains(
                "# TYPE nodeprep_check_runs_total counter\nnodeprep_check_runs_total 1\n"
            )
            && !body.contains("# EOF"),
        "{body}"
    );
    let (code, head, body) = srv.request(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,\
         text/plain;version=0.0.4;q=0.5\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200);
    assert!(head.contains("content-type: application/openmetrics-text; version=1.0.0"), "{head}");
    assert!(
        body.contains("# TYPE nodeprep_check_runs counter\n") && body.ends_with("# EOF\n"),
        "{body}"
    );
    // Other methods and paths.
    let (code, head, _) = srv.request(
        "POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 405);
    assert!(head.contains("allow: get,head"), "{head}");
    assert_eq!(srv.get("/nope").0, 404);
    // Bounded headers, garbage.
    let (code, _, _) = srv.request(format!(
        "GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    ));
    assert_eq!(code, 431);
    assert_eq!(srv.request("\x00\x01garbage\r\n\r\n").0, 400);
    // The status file is the same report.
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("run/nodeprep/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(file["generated_at"], v["generated_at"]);
    assert_eq!(srv.terminate(), 0);
}

#[test]
fn readiness_flips_when_the_host_changes_between_runs() {
    let dir = prepared(1);
    let srv = start(dir.path(), &[]);
    assert_eq!(srv.wait_for("/readyz", 200).0, 200);
    let checkpoint = dir.path().join("var/lib/kubelet/device-plugins/kubelet_internal_checkpoint");
    let saved = std::fs::read(&checkpoint).unwrap();
    std::fs::remove_file(&checkpoint).unwrap();
    let (code, _, body) = srv.wait_for("/readyz", 503);
    assert_eq!(code, 503);
    assert!(
        body.starts_with("not ready\ndevice-plugins: no device plugin has registered with kubelet"),
        "{body}"
    );
    assert!(srv.get("/metrics").2.contains("nodeprep_ready 0\n"));
    std::fs::write(&checkpoint, saved).unwrap();
    assert_eq!(srv.wait_for("/readyz", 200).0, 200);
}

#[test]
fn status_file_failure_keeps_serving_and_counts() {
    let dir = prepared(1);
    // run/nodeprep is a file: the status file cannot be written.
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    std::fs::write(dir.path().join("run/nodeprep"), "not a directory").unwrap();
    let srv = start(dir.path(), &[]);
    assert_eq!(srv.wait_for("/readyz", 200).0, 200);
    let t0 = Instant::now();
    loop {
        let m = srv.get("/metrics").2;
        if m.contains("nodeprep_status_file_write_errors_total 2\n") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(srv.get("/livez").0, 200);
}

#[test]
fn systemd_notify_ready_status_watchdog_and_stopping() {
    let dir = prepared(30);
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let srv = start(
        dir.path(),
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")],
    );
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    while !(seen.iter().any(|m: &String| m == "READY=1")
        && seen.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no READY=1 and two WATCHDOG=1 yet: {seen:?}"
        );
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
    }
    let status_pos = seen.iter().position(|m| m.starts_with("STATUS=")).expect("STATUS= sent");
    let ready_pos = seen.iter().position(|m| m == "READY=1").unwrap();
    assert!(status_pos < ready_pos, "STATUS before READY, after the first run: {seen:?}");
    assert_eq!(
        seen[status_pos],
        format!("STATUS=ready: {} of {} checks pass", passes(dir.path()), total(dir.path()))
    );
    assert_eq!(srv.terminate(), 0);
    let mut rest = Vec::new();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
    }
    assert!(rest.iter().any(|m| m == "STOPPING=1"), "{rest:?}");
}

fn report(root: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root.join("run/nodeprep/status.json")).unwrap())
        .unwrap()
}
fn passes(root: &Path) -> usize {
    report(root)["checks"].as_array().unwrap().iter().filter(|c| c["status"] == "pass").count()
}
fn total(root: &Path) -> usize {
    report(root)["checks"].as_array().unwrap().len()
}

#[test]
fn slowloris_and_odd_requests_do_not_stop_readyz() {
    // Checks rerun every second during the attack.
    let dir = prepared(1);
    let srv = start(dir.path(), &[]);
    assert_eq!(srv.wait_for("/readyz", 200).0, 200);
    // 300 connections held open: half never send a byte, half stop in the middle of a header.
    let mut held: Vec<TcpStream> = (0..300)
        .map(|i| {
            let mut c = TcpStream::connect(&srv.addr).unwrap();
            if i % 2 == 1 {
                c.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            }
            c
        })
        .collect();
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let t0 = Instant::now();
        let (code, _, body) = srv.get("/readyz");
        worst = worst.max(t0.elapsed());
        assert_eq!((code, body.as_str()), (200, "ready\n"));
    }
    eprintln!(
        "/readyz with 300 idle or half-sent connections held open: slowest of 20 answers {worst:?}"
    );
    assert!(worst < Duration::from_secs(2), "/readyz waited behind idle connections: {worst:?}");
    // Odd requests get an answer or a closed connection, never a hang or a crash.
    assert_eq!(srv.request("GET /readyz\r\n\r\n").0, 400, "HTTP/0.9 request line");
    let (code, _, _) = srv.request(format!(
        "GET /{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(16_384)
    ));
    assert!(code == 414 || code == 431 || code == 0, "oversized request line: {code}");
    let (code, _, body) = srv.request(
        "GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!((code, body.as_str()), (200, "ready\n"), "a body on GET is ignored");
    for m in ["PUT", "DELETE", "PATCH"] {
        assert_eq!(
            srv.request(format!(
                "{m} /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ))
            .0,
            405,
            "{m}"
        );
    }
    // Connections that never finish their header are closed after the header deadline (5 s).
    std::thread::sleep(Duration::from_secs(6));
    for c in held.iter_mut().take(20) {
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 256];
        // EOF (or hyper's parting 408): either way the server let go; a timeout means it did not.
        assert!(
            c.read(&mut buf).is_ok(),
            "an idle connection was still open after the header deadline"
        );
    }
    drop(held);
    assert_eq!(srv.get("/livez").0, 200);
    assert_eq!(srv.terminate(), 0);
}

#[test]
fn busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = Nodeprep::new(Path::new(env!("CARGO_MANIFEST_DIR")))
        .args(["serve", "--listen", &addr])
        .output();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}: Address already in use")), "{err}");
}

fn kube_node(api: &str) -> tempfile::TempDir {
    let mut s = Spec::p5_48xlarge();
    s.config = Some(
        "[serve]\ninterval_seconds = 1\n[kubernetes]\nenabled = true\nnode_name = \"node-1\"\nkubeconfig = \"/etc/nodeprep/kubeconfig\"\nstartup_taint = \"nodeprep.io/not-ready\"\n".into(),
    );
    s.files.push((
        "etc/nodeprep/kubeconfig".into(),
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {api}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: test-token\n"),
    ));
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    dir
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    crate::common::wait_until(what, Duration::from_secs(20), f)
}

#[test]
fn conditions_are_set_and_the_taint_waits_for_allocatable_devices() {
    let (url, api) = fake_kube::start(
        fake_kube::Mode::Normal,
        serde_json::json!({"cpu": "192", "memory": "2000Gi"}),
    );
    let dir = kube_node(&url);
    let srv = start(dir.path(), &[]);
    wait_until("three status patches", || api.lock().unwrap().status_patches.len() >= 3);
    {
        let a = api.lock().unwrap();
        let (ct, first) = &a.status_patches[0];
        assert_eq!(ct, "application/strategic-merge-patch+json");
        let types: Vec<&str> = first["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert!(
            types.contains(&"nodeprep.io/Ready")
                && types.contains(&"nodeprep.io/LimitsReady")
                && types.contains(&"nodeprep.io/GPUReady")
                && types.contains(&"nodeprep.io/DevicePluginsReady"),
            "{types:?}"
        );
        assert!(
            types.iter().all(|t| t.starts_with("nodeprep.io/")),
            "only our conditions are sent: {types:?}"
        );
        let ready = |p: &serde_json::Value| {
            p["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "nodeprep.io/Ready")
                .cloned()
                .unwrap()
        };
        // Every check passes, but kubelet does not offer the GPUs and EFA devices yet: not ready
        // for workloads, and the condition says why.
        assert_eq!(ready(first)["status"], "False");
        assert_eq!(ready(first)["reason"], "DevicesNotUsable");
        assert!(
            ready(first)["message"].as_str().unwrap().contains("nvidia.com/gpu allocatable 0"),
            "{}",
            ready(first)
        );
        // Same status on later runs: the transition time stays.
        assert_eq!(
            ready(&a.status_patches[2].1)["lastTransitionTime"],
            ready(first)["lastTransitionTime"]
        );
        // kubelet's own Ready condition is untouched.
        assert!(a.node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["reason"] == "KubeletReady"));
    }
    // Ready, but kubelet does not report the GPUs/EFA as allocatable yet: the taint stays.
    assert_eq!(taint_keys(&api), ["nodeprep.io/not-ready", "dedicated"]);
    api.lock().unwrap().node["status"]["allocatable"] =
        serde_json::json!({"cpu": "192", "nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "32"});
    wait_until("the startup taint to go", || taint_keys(&api) == ["dedicated"]);
    assert_eq!(srv.get("/readyz").0, 200);
    wait_until("nodeprep.io/Ready True", || {
        api.lock().unwrap().node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "nodeprep.io/Ready" && c["status"] == "True")
    });
}

#[test]
fn a_conflict_is_retried_on_fresh_data() {
    let (url, api) = fake_kube::start(
        fake_kube::Mode::ConflictOnce,
        serde_json::json!({"nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "32"}),
    );
    let dir = kube_node(&url);
    let _srv = start(dir.path(), &[]);
    wait_until("the startup taint to go", || taint_keys(&api) == ["dedicated"]);
    assert_eq!(api.lock().unwrap().conflicts, 1);
}

#[test]
fn api_failures_never_stop_the_endpoints() {
    for mode in [fake_kube::Mode::Unauthorized, fake_kube::Mode::Hang] {
        let (url, api) = fake_kube::start(
            mode,
            serde_json::json!({"nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "32"}),
        );
        let dir = kube_node(&url);
        let srv = start(dir.path(), &[]);
        assert_eq!(srv.wait_for("/readyz", 200).0, 200);
        wait_until("a request to the API", || api.lock().unwrap().requests >= 1);
        // Endpoints answer at once while the API refuses or hangs; the taint is not touched.
        for _ in 0..5 {
            let t0 = Instant::now();
            assert_eq!(srv.get("/readyz").0, 200);
            assert!(t0.elapsed() < Duration::from_secs(1));
        }
        assert_eq!(taint_keys(&api), ["nodeprep.io/not-ready", "dedicated"]);
        assert!(api.lock().unwrap().status_patches.is_empty());
    }
}

#[test]
fn kubernetes_without_credentials_is_a_clear_startup_error() {
    let mut s = Spec::p5_48xlarge();
    s.config = Some("[kubernetes]\nenabled = true\nnode_name = \"node-1\"\n".into());
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    let o = Nodeprep::new(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("kubernetes: no in-cluster service account")
            && err.contains("set kubernetes.kubeconfig"),
        "{err}"
    );
}

/// boot and serve write the status file at once (serve every second, four boots back to back):
/// every read of it is one whole report, and no temporary file is left behind. With a temporary
/// name shared by both writers, one truncated the other's file before the rename.
#[test]
fn boot_and_serve_writing_the_status_file_at_once_never_tear_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = prepared(1);
    let status = dir.path().join("run/nodeprep/status.json");
    let srv = start(dir.path(), &[]);
    assert_eq!(srv.wait_for("/readyz", 200).0, 200);
    let stop = AtomicBool::new(false);
    let reads = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&status) {
                    let v: serde_json::Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("a torn status file ({e}): {text:?}"));
                    assert_eq!(v["schema"], "nodeprep.report/v1");
                    reads += 1;
                }
            }
            reads
        });
        let boots: Vec<_> = (0..4)
            .map(|_| s.spawn(|| crate::common::nodeprep(dir.path(), &["boot"]).status.code()))
            .collect();
        let codes: Vec<Option<i32>> = boots.into_iter().map(|b| b.join().unwrap()).collect();
        // serve rewrites the file every second: let it write while nothing else does, too.
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        assert!(codes.iter().all(|c| *c == Some(0)), "{codes:?}");
        reader.join().unwrap()
    });
    assert!(reads > 10, "{reads} reads");
    drop(srv);
    let mut left: Vec<String> = std::fs::read_dir(dir.path().join("run/nodeprep"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // boot's lock file stays (empty; the lock itself ends with the process), and the record of
    // the config it applied.
    assert_eq!(
        left,
        ["boot-config.toml", "boot.lock", "status.json"],
        "temporary files left behind"
    );
}

/// `--metrics-listen` (or serve.metrics_listen) opens a second address that answers `/metrics`
/// only: a cluster Prometheus scrapes it while the report and the probes stay on serve.listen.
#[test]
fn metrics_listen_serves_only_metrics() {
    let get = |addr: &str, path: &str| {
        let (code, _, body) = crate::common::get(addr, path).expect("serve listens");
        (code, body)
    };
    // From the flag.
    let dir = prepared(30);
    let mut cmd = Nodeprep::new(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .command();
    cmd.stderr(Stdio::null());
    let mut srv = Server::spawn(cmd);
    let maddr = srv.metrics_addr();
    assert_ne!(maddr, srv.addr);
    srv.wait_for("/readyz", 200);
    let (code, body) = get(&maddr, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("nodeprep_ready 1\n"), "{body}");
    for path in ["/status", "/readyz", "/livez", "/"] {
        let (code, body) = get(&maddr, path);
        assert_eq!(code, 404, "{path} on the metrics address: {body}");
        assert!(body.contains(&format!("serve.listen (http://{})", srv.addr)), "{body}");
    }
    assert_eq!(srv.get("/status").0, 200, "the main address still serves the report");

    // From the config key, and its errors.
    let mut spec = Spec::p5_48xlarge();
    spec.config = Some("[serve]\nmetrics_listen = \"127.0.0.1:0\"\n".into());
    let dir = crate::common::tree(&spec);
    let mut cmd = Nodeprep::new(dir.path()).args(["serve", "--listen", "127.0.0.1:0"]).command();
    cmd.stderr(Stdio::null());
    let mut srv = Server::spawn(cmd);
    let maddr = srv.metrics_addr();
    let t0 = Instant::now();
    while !get(&maddr, "/metrics").1.contains("nodeprep_ready 1\n") {
        assert!(t0.elapsed() < Duration::from_secs(15), "no report on {maddr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (value, want) in [
        ("node-ip:9478", "key `serve.metrics_listen`: \"node-ip:9478\" is not an address:port"),
        ("127.0.0.1:9477", "key `serve.metrics_listen`: \"127.0.0.1:9477\" is serve.listen itself"),
    ] {
        let mut spec = Spec::p5_48xlarge();
        spec.config = Some(format!("[serve]\nmetrics_listen = \"{value}\"\n"));
        let dir = crate::common::tree(&spec);
        let o = crate::common::nodeprep(dir.path(), &["serve"]);
        assert_eq!(o.status.code(), Some(2), "{value}");
        let err = crate::common::stderr(&o);
        assert!(err.contains(want), "{value}: {err}");
    }
}

/// A fatal XID logged between runs flips /readyz at once: serve follows the kernel log instead of
/// waiting for its interval (30 s here). The same line with `follow_kernel_log = false` waits.
#[test]
fn a_fatal_xid_between_runs_flips_readyz_without_waiting_for_the_interval() {
    use std::io::Write as _;
    let line =
        "3,9000,99000000,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus.\n";
    let append = |root: &Path| {
        let mut f = std::fs::OpenOptions::new().append(true).open(root.join("dev/kmsg")).unwrap();
        f.write_all(line.as_bytes()).unwrap();
    };
    let dir = prepared(30);
    let srv = start(dir.path(), &[]);
    assert_eq!(srv.wait_for("/readyz", 200).0, 200);
    std::thread::sleep(Duration::from_millis(300));
    append(dir.path());
    let t0 = Instant::now();
    let (code, _, body) = loop {
        let r = srv.get("/readyz");
        if r.0 == 503 || t0.elapsed() > Duration::from_secs(20) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t0.elapsed();
    println!(
        "XID 79 appended to the kernel log -> /readyz 503 in {} ms (interval 30 s)",
        took.as_millis()
    );
    assert_eq!(code, 503, "{body}");
    assert!(took < Duration::from_secs(10), "took {took:?}: not the kernel log, the interval");
    assert!(body.contains("nvidia: GPU 0 (0000:53:00.0): XID 79"), "{body}");

    let mut s = Spec::p5_48xlarge();
    s.config = Some("[serve]\ninterval_seconds = 30\nfollow_kernel_log = false\n".into());
    let dir = tempfile::tempdir().unwrap();
    s.write(dir.path()).unwrap();
    let srv = start(dir.path(), &[]);
    assert_eq!(srv.wait_for("/readyz", 200).0, 200);
    append(dir.path());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(srv.get("/readyz").0, 200, "without following, the next run (30 s) would see it");
}
