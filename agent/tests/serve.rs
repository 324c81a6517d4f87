//! `nodeprep serve` over real HTTP on 127.0.0.1, with its systemd notifications on a test socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodeprep_fixtures::Spec;

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(root: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodeprep"));
        if env.iter().any(|(k, _)| *k == "WATCHDOG_USEC") {
            // systemd sets WATCHDOG_PID to the service's pid: exec keeps the shell's pid.
            cmd = Command::new("sh");
            cmd.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_nodeprep")]);
        }
        cmd.arg("--root").arg(root).args(["serve", "--listen", "127.0.0.1:0"]);
        for k in [
            "NODEPREP_CONFIG",
            "NODEPREP_INSTANCE_TYPE",
            "NODEPREP_OUTPUT",
            "NODEPREP_ROOT",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
        ] {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().copied()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("nodeprep serve: listening on http://").unwrap_or_else(|| panic!("first line: {line:?}")).to_string();
        Server { child, addr }
    }

    /// Sends one request and returns (status, headers, body).
    fn request(&self, raw: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, head.to_lowercase(), body.to_string())
    }

    fn get(&self, path: &str) -> (u16, String, String) {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
    }

    /// Polls `path` until its status is `want` (the first run may not have finished yet).
    fn wait_for(&self, path: &str, want: u16) -> (u16, String, String) {
        let t0 = Instant::now();
        loop {
            let r = self.get(path);
            if r.0 == want || t0.elapsed() > Duration::from_secs(15) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(mut self) -> i32 {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let srv = Server::start(dir.path(), &[]);
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
    let (code, head, body) = srv.get("/metrics");
    assert_eq!(code, 200);
    assert!(head.contains("content-type: application/openmetrics-text"), "{head}");
    assert!(body.contains("nodeprep_ready 1\n") && body.contains("nodeprep_check_runs_total 1\n"), "{body}");
    // Other methods and paths.
    let (code, head, _) = srv.request("POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(code, 405);
    assert!(head.contains("allow: get,head"), "{head}");
    assert_eq!(srv.get("/nope").0, 404);
    // Bounded headers, garbage.
    let (code, _, _) = srv.request(&format!("GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000)));
    assert_eq!(code, 431);
    assert_eq!(srv.request("\x00\x01garbage\r\n\r\n").0, 400);
    // The status file is the same report.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run/nodeprep/status.json")).unwrap()).unwrap();
    assert_eq!(file["generated_at"], v["generated_at"]);
    assert_eq!(srv.terminate(), 0);
}

#[test]
fn readiness_flips_when_the_host_changes_between_runs() {
    let dir = prepared(1);
    let srv = Server::start(dir.path(), &[]);
    assert_eq!(srv.wait_for("/readyz", 200).0, 200);
    let checkpoint = dir.path().join("var/lib/kubelet/device-plugins/kubelet_internal_checkpoint");
    let saved = std::fs::read(&checkpoint).unwrap();
    std::fs::remove_file(&checkpoint).unwrap();
    let (code, _, body) = srv.wait_for("/readyz", 503);
    assert_eq!(code, 503);
    assert!(body.starts_with("not ready\ndevice-plugins: no device plugin has registered with kubelet"), "{body}");
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
    let srv = Server::start(dir.path(), &[]);
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
    let srv = Server::start(dir.path(), &[("NOTIFY_SOCKET", sock_path.to_str().unwrap()), ("WATCHDOG_USEC", "200000")]);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    while !(seen.iter().any(|m: &String| m == "READY=1") && seen.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2) {
        assert!(t0.elapsed() < Duration::from_secs(15), "no READY=1 and two WATCHDOG=1 yet: {seen:?}");
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
    }
    let status_pos = seen.iter().position(|m| m.starts_with("STATUS=")).expect("STATUS= sent");
    let ready_pos = seen.iter().position(|m| m == "READY=1").unwrap();
    assert!(status_pos < ready_pos, "STATUS before READY, after the first run: {seen:?}");
    assert_eq!(seen[status_pos], format!("STATUS=ready: {} of {} checks pass", passes(dir.path()), total(dir.path())));
    assert_eq!(srv.terminate(), 0);
    let mut rest = Vec::new();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
    }
    assert!(rest.iter().any(|m| m == "STOPPING=1"), "{rest:?}");
}

fn report(root: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root.join("run/nodeprep/status.json")).unwrap()).unwrap()
}
fn passes(root: &Path) -> usize {
    report(root)["checks"].as_array().unwrap().iter().filter(|c| c["status"] == "pass").count()
}
fn total(root: &Path) -> usize {
    report(root)["checks"].as_array().unwrap().len()
}

#[test]
fn busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_nodeprep"))
        .arg("--root")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--listen", &addr])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}: Address already in use")), "{err}");
}
