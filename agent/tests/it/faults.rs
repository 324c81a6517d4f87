//! Faults on the host, as a user meets them: sysfs entries that vanish between listing and reading
//! or come and go while checks run, reads that never return, files only root may read, a full /run,
//! and a Kubernetes API server that is down. Each one gives a report naming the file or service,
//! never a panic, and `serve` keeps answering. (NVML and IMDS hangs are in nvidia.rs and imds.rs; a
//! status directory that is a file, an API that hangs or refuses credentials in serve.rs; a
//! read-only /etc in limits.rs.)

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nodeprep_fixtures::{Layout, Spec};
use serde_json::Value;

use crate::common::{tree, Hung, Nodeprep, Server, BIN};

/// `nodeprep --root ROOT ARGS` with the fake NVML and a clean environment, run through `prefix`
/// (e.g. `setpriv ...`) when given.
fn command(prefix: &[&str], root: &Path, args: &[&str]) -> Command {
    Nodeprep::through(prefix, root).args(args).command()
}

fn no_panic(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// Runs `check --output json` and returns the exit code and the checks by name.
fn check(prefix: &[&str], root: &Path, only: &[&str]) -> (i32, Vec<Value>, Duration) {
    let mut args = vec!["--output", "json", "check"];
    for o in only {
        args.extend(["--only", o]);
    }
    let t0 = Instant::now();
    let o = command(prefix, root, &args).output().unwrap();
    let took = t0.elapsed();
    no_panic(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    });
    (o.status.code().unwrap(), v["checks"].as_array().unwrap().clone(), took)
}

fn named<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
}

fn summary(c: &Value) -> &str {
    c["summary"].as_str().unwrap_or_default()
}

#[test]
fn an_efa_device_whose_port_files_are_gone_is_named() {
    let dir = tree(&Spec::p5_48xlarge());
    std::fs::remove_dir_all(dir.path().join("sys/class/infiniband/rdmap80s0/ports")).unwrap();
    let (code, checks, _) = check(&[], dir.path(), &["efa"]);
    let c = named(&checks, "efa");
    assert_eq!((code, c["status"].as_str()), (1, Some("fail")), "{c}");
    let s = summary(c);
    assert!(s.starts_with("31 of 32 EFA devices usable; could not read: reading "), "{s}");
    assert!(s.contains("rdmap80s0/ports/1/state: No such file or directory"), "{s}");
    assert!(s.contains("rdmap80s0/ports/1/phys_state: No such file or directory"), "{s}");
    // Not blamed on the security group: its state is unknown.
    assert_eq!(c["found"]["down"], serde_json::json!([]));
    // Files that vanished: read again, not "run as root".
    assert!(
        c["remedy"].as_str().unwrap().starts_with("the paths above vanished while they were read"),
        "{c}"
    );
}

#[test]
fn an_efa_device_that_vanished_behind_its_sysfs_link_is_missing() {
    let mut spec = Spec::p5_48xlarge();
    spec.layout = Layout::Symlinked;
    let dir = tree(&spec);
    // The class link is listed, but the device directory it points to is gone (hot-unplug, driver
    // unbind between readdir and read).
    let link = dir.path().join("sys/class/infiniband/rdmap81s0");
    let target = std::fs::canonicalize(&link).unwrap();
    std::fs::remove_dir_all(&target).unwrap();
    assert!(std::fs::symlink_metadata(&link).is_ok());
    let (code, checks, _) = check(&[], dir.path(), &["efa"]);
    let c = named(&checks, "efa");
    assert_eq!(code, 1, "{c}");
    assert_eq!(
        summary(c),
        "31 of 32 EFA devices usable; PCI 0000:51:00.0 bound to efa but has no RDMA device (probe failed or it is going away)"
    );
    assert!(c["remedy"].as_str().unwrap().contains("dmesg | grep efa"), "{c}");
}

#[test]
fn a_uverbs_device_without_its_ibdev_file_is_named() {
    let spec = Spec::p5_48xlarge();
    let n = spec.efa[5].uverbs.unwrap();
    let name = spec.efa[5].name.clone();
    let dir = tree(&spec);
    std::fs::remove_file(dir.path().join(format!("sys/class/infiniband_verbs/uverbs{n}/ibdev")))
        .unwrap();
    let (code, checks, _) = check(&[], dir.path(), &["efa"]);
    let c = named(&checks, "efa");
    assert_eq!(code, 1, "{c}");
    let s = summary(c);
    assert!(s.contains(&format!("{name} has no uverbs device")), "{s}");
    assert!(
        s.contains(&format!(
            "could not read: reading {}/sys/class/infiniband_verbs/uverbs{n}/ibdev",
            dir.path().display()
        )),
        "{s}"
    );
}

#[test]
fn a_gpu_whose_pci_class_vanished_is_named() {
    let dir = tree(&Spec::p5_48xlarge());
    std::fs::remove_file(dir.path().join("sys/bus/pci/devices/0000:53:00.0/class")).unwrap();
    let (code, checks, _) = check(&[], dir.path(), &["nvidia"]);
    let c = named(&checks, "nvidia");
    assert_eq!((code, c["status"].as_str()), (1, Some("fail")), "{c}");
    let s = summary(c);
    assert!(s.contains("only 7 of 8 GPUs on the PCI bus"), "{s}");
    assert!(
        s.contains("could not read: reading ")
            && s.contains("sys/bus/pci/devices/0000:53:00.0/class: No such file"),
        "{s}"
    );
    // The class file vanished: read again (and the missing GPU's own remedy), not "run as root".
    let remedy = c["remedy"].as_str().unwrap();
    assert!(remedy.starts_with("the paths above vanished while they were read"), "{c}");
    assert!(remedy.contains("a GPU is missing from the PCI bus"), "{c}");
}

/// A FIFO stands in for a sysfs attribute whose read never returns (a wedged driver): the check
/// that reads it fails at its deadline, the others report as usual.
#[test]
fn a_read_that_never_returns_fails_the_check_at_its_deadline() {
    let mut spec = Spec::p5_48xlarge();
    spec.config = Some("[checks]\ntimeout_seconds = 2\n[nvidia]\nnvml_timeout_ms = 1000\n".into());
    let dir = tree(&spec);
    let state = dir.path().join("sys/class/infiniband/rdmap79s0/ports/1/state");
    let Some(hung) = Hung::at(&state) else { return };
    // Released well after the deadline: a check still waiting then would end with an I/O error,
    // not with the deadline's message.
    let release = hung.release_after(Duration::from_secs(6));
    let (code, checks, _) = check(&[], dir.path(), &[]);
    release.join().unwrap();
    assert_eq!(code, 1);
    let c = named(&checks, "efa");
    assert_eq!(
        (c["status"].as_str(), summary(c)),
        (Some("fail"), "did not finish within 2 s"),
        "{c}"
    );
    assert!(c["remedy"].as_str().unwrap().contains("something on the host hangs"), "{c}");
    for other in ["instance", "limits", "nvidia", "device-plugins"] {
        assert_eq!(named(&checks, other)["status"], "pass", "{other}: {checks:?}");
    }
}

/// A FIFO planted where a sysfs attribute is (a read of it could wait forever) is named at once:
/// it is never opened for a blocking read.
#[test]
fn a_fifo_where_a_file_must_be_is_named_without_waiting() {
    let dir = tree(&Spec::p5_48xlarge());
    let state = dir.path().join("sys/class/infiniband/rdmap79s0/ports/1/state");
    std::fs::remove_file(&state).unwrap();
    assert!(Command::new("mkfifo").arg(&state).status().unwrap().success());
    let (_, checks, took) = check(&[], dir.path(), &["efa"]);
    assert!(took < Duration::from_secs(5), "{took:?}");
    let c = named(&checks, "efa");
    assert!(c.to_string().contains("ports/1/state: it is a FIFO (named pipe), not a file"), "{c}");
}

/// Like the test above, with the wedged read in an EFA device's PCI vendor ID, which deciding
/// whether `limits` is required reads. `checks::run` asks each check whether it is required on the
/// check's own thread, under the deadline (it once asked on the calling thread and hung for good).
#[test]
fn a_wedged_read_while_deciding_what_is_required_still_meets_the_deadline() {
    let mut spec = Spec::p5_48xlarge();
    spec.config = Some("[checks]\ntimeout_seconds = 2\n[nvidia]\nnvml_timeout_ms = 1000\n".into());
    let dir = tree(&spec);
    // The first device in the order they are listed: `efa::present` stops at the first EFA device.
    let first =
        nodeprep::host::Host::new(dir.path()).list_dir("/sys/class/infiniband").unwrap()[0].clone();
    let vendor = dir.path().join(format!("sys/class/infiniband/{first}/device/vendor"));
    let Some(hung) = Hung::at(&vendor) else { return };
    let release = hung.release_after(Duration::from_secs(6));
    let out = command(&[], dir.path(), &["--output", "json", "check"]).output().unwrap();
    release.join().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(named(checks, "limits")["summary"], "did not finish within 2 s");
}

fn setpriv_nobody() -> Vec<&'static str> {
    vec!["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
}

/// Files only root may read (the tests run as root, so nodeprep runs as nobody): each check names
/// the file it could not read and says to run as root; none of them passes on what it could not see.
#[test]
fn files_only_root_may_read_are_named_with_run_as_root() {
    let spec = Spec::p5_48xlarge();
    let dir = tree(&spec);
    let root = dir.path();
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(root).status();
    let _ = Command::new("chmod").arg("755").arg(root).status();
    let (pid, _) = spec.containerd.clone().unwrap();
    for f in [
        "sys/class/infiniband/rdmap79s0/ports/1/state".to_string(),
        "var/lib/kubelet/device-plugins/kubelet_internal_checkpoint".into(),
        "dev/kmsg".into(),
        "etc/containerd/base-runtime-spec.json".into(),
        format!("proc/{pid}/limits"),
    ] {
        std::fs::set_permissions(
            root.join(&f),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
    }
    let (code, checks, _) = check(&setpriv_nobody(), root, &[]);
    assert_eq!(code, 1, "{checks:?}");
    let efa = named(&checks, "efa");
    assert_eq!(efa["status"], "fail");
    assert!(summary(efa).contains("rdmap79s0/ports/1/state: Permission denied"), "{efa}");
    assert!(efa["remedy"].as_str().unwrap().starts_with("run nodeprep as root"), "{efa}");
    let dp = named(&checks, "device-plugins");
    assert_eq!(dp["status"], "fail");
    assert!(
        summary(dp).starts_with("cannot read kubelet's device-plugin checkpoint: reading "),
        "{dp}"
    );
    assert!(
        summary(dp).ends_with("kubelet_internal_checkpoint: Permission denied (os error 13)"),
        "{dp}"
    );
    assert!(dp["remedy"].as_str().unwrap().starts_with("run nodeprep as root"), "{dp}");
    // The XID scan could not look: said so, never "no XID errors".
    let nv = named(&checks, "nvidia");
    assert_eq!(nv["status"], "warn", "{nv}");
    assert!(
        summary(nv).contains("XID errors unknown: opening ")
            && summary(nv).contains("dev/kmsg: Permission denied"),
        "{nv}"
    );
    // Neither the spec nor containerd's limits could be read: the limits pods get are unknown.
    let l = named(&checks, "limits");
    assert_eq!(l["status"], "fail", "{l}");
    assert_eq!(l["found"]["memlock"], Value::Null, "{l}");
    assert!(
        summary(l).contains("base-runtime-spec.json is unusable (reading ")
            && summary(l).contains("Permission denied"),
        "{l}"
    );
    let errors = l["found"]["errors"].to_string();
    assert!(errors.contains(&format!("proc/{pid}/limits: Permission denied")), "{l}");
}

/// Runs `script` in a private mount namespace (root only; the tests run as root in CI).
fn in_mount_namespace(script: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "sh", "-euc", script]);
    c
}

/// A shell snippet that mounts a 64 KiB tmpfs on `<root>/run`, with an old status file on it, and
/// fills it up.
fn full_run(root: &Path) -> String {
    format!(
        "mount -t tmpfs -o size=64k tmpfs {r}/run && mkdir -p {r}/run/nodeprep && echo old > {r}/run/nodeprep/status.json && \
         (dd if=/dev/zero of={r}/run/fill bs=4096 2>/dev/null || true)",
        r = root.display()
    )
}

#[test]
fn boot_with_a_full_run_says_so_and_keeps_the_old_status_file() {
    let dir = tree(&Spec::p5_48xlarge());
    let root = dir.path();
    std::fs::create_dir_all(root.join("run")).unwrap();
    let script = format!(
        "{} && set +e && {bin} --root {r} boot; echo \"exit=$?\"; cat {r}/run/nodeprep/status.json; ls -A {r}/run/nodeprep",
        full_run(root),
        bin = BIN,
        r = root.display()
    );
    let o = in_mount_namespace(&script)
        .env("NODEPREP_NVML_LIB", nodeprep_fixtures::fake_nvml(&[]))
        .output()
        .unwrap();
    no_panic(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("exit=1\n"), "{out}{}", String::from_utf8_lossy(&o.stderr));
    // The temporary file has a name of its own (`.status.json.XXXXXX.nodeprep-tmp`).
    let line =
        out.lines().find(|l| l.starts_with("status: FAIL: ")).unwrap_or_else(|| panic!("{out}"));
    let prefix = format!("status: FAIL: writing {}/run/nodeprep/.status.json.", root.display());
    assert!(
        line.starts_with(&prefix)
            && line.ends_with(".nodeprep-tmp: No space left on device (os error 28)"),
        "{line}"
    );
    // The report is still printed, and the old status file is left whole, with no temporary file.
    assert!(out.contains("nodeprep: p5.48xlarge: READY"), "{out}");
    assert!(out.ends_with("old\nboot.lock\nstatus.json\n"), "{out}");
}

/// Polls until `f` holds, at most 20 s.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `/readyz` answers 200 five times in a row, each within a generous bound, and `/livez` 200.
fn keeps_answering(srv: &Server) {
    for _ in 0..5 {
        let t0 = Instant::now();
        assert_eq!(srv.get("/readyz").0, 200);
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(srv.get("/livez").0, 200);
}

fn with_interval(mut spec: Spec, extra: &str) -> Spec {
    spec.config = Some(format!("[serve]\ninterval_seconds = 1\n{extra}"));
    spec
}

#[test]
fn serve_with_a_full_run_keeps_answering_and_counts_the_failures() {
    let dir = tree(&with_interval(Spec::p5_48xlarge(), ""));
    let root = dir.path();
    std::fs::create_dir_all(root.join("run")).unwrap();
    let script = format!(
        "{} && exec {} --root {} serve --listen 127.0.0.1:0",
        full_run(root),
        BIN,
        root.display()
    );
    let mut cmd = in_mount_namespace(&script);
    cmd.env("NODEPREP_NVML_LIB", nodeprep_fixtures::fake_nvml(&[])).stderr(Stdio::null());
    let srv = Server::spawn(cmd);
    wait_for("two failed status writes", || {
        srv.get("/metrics").2.contains("nodeprep_status_file_write_errors_total 2\n")
    });
    keeps_answering(&srv);
    // /status still has the report the file could not take.
    let (code, _, body) = srv.get("/status");
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ready"], true);
}

#[test]
fn serve_with_the_api_server_down_keeps_answering() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut spec = with_interval(
        Spec::p5_48xlarge(),
        "[kubernetes]\nenabled = true\nnode_name = \"node-1\"\nkubeconfig = \"/etc/nodeprep/kubeconfig\"\nstartup_taint = \"nodeprep.io/not-ready\"\n",
    );
    spec.files.push((
        "etc/nodeprep/kubeconfig".into(),
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: down\n  context:\n    cluster: down\n    user: u\ncurrent-context: down\nusers:\n- name: u\n  user:\n    token: t\n"),
    ));
    let dir = tree(&spec);
    let log = dir.path().join("serve.log");
    let mut cmd = command(&[], dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let srv = Server::spawn(cmd);
    wait_for("/readyz 200", || srv.get("/readyz").0 == 200);
    wait_for("the failed update in the log", || {
        std::fs::read_to_string(&log).unwrap().contains("Kubernetes update failed")
    });
    keeps_answering(&srv);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("panicked"), "{text}");
    let failure = text.lines().find(|l| l.contains("Kubernetes update failed")).unwrap();
    println!("{failure}");
    // It names the node, the server and why the connection failed.
    let want = format!("reading node node-1 at http://127.0.0.1:{port}/: ");
    assert!(failure.contains(&want) && failure.contains("Connection refused"), "{failure}");
}

/// Devices that come and go while checks read them (hot-unplug, a driver rebinding): an EFA
/// device's sysfs directory and a GPU's PCI directory are renamed away and back, again and again,
/// while `nodeprep check` runs. Whenever a read lands, each run gives a whole report: either all is
/// there, or the check fails on exactly that device, never a panic or a half-written report.
#[test]
fn devices_that_vanish_and_return_during_checks_give_whole_reports() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tree(&Spec::p5_48xlarge());
    let pairs: Vec<(std::path::PathBuf, std::path::PathBuf)> =
        ["sys/class/infiniband/rdmap80s0", "sys/bus/pci/devices/0000:53:00.0"]
            .iter()
            .enumerate()
            .map(|(i, p)| (dir.path().join(p), dir.path().join(format!("away-{i}"))))
            .collect();
    // The PCI function behind the EFA device that comes and goes.
    let efa_pci = std::fs::read_to_string(pairs[0].0.join("device/uevent"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("PCI_SLOT_NAME=").map(str::to_string))
        .unwrap();
    assert!(efa_pci.starts_with("0000:"), "{efa_pci}");
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (stop, pairs) = (Arc::clone(&stop), pairs.clone());
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (here, away) in &pairs {
                    std::fs::rename(here, away).unwrap();
                    std::thread::sleep(Duration::from_micros(50 + flips % 7 * 150));
                    std::fs::rename(away, here).unwrap();
                    flips += 1;
                }
            }
            flips
        })
    };
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..40 {
        let (code, checks, _) = check(&[], dir.path(), &["efa", "nvidia"]);
        let (efa, gpu) = (named(&checks, "efa"), named(&checks, "nvidia"));
        assert_eq!(
            code,
            i32::from(efa["status"] == "fail" || gpu["status"] == "fail"),
            "{checks:?}"
        );
        if efa["status"] == "fail" {
            // Gone when the devices were listed, or back by then but not when its function was
            // looked at: either way the failure names that device.
            let s = summary(efa);
            assert!(s.starts_with("31 of 32 EFA devices usable") || s.contains(&efa_pci), "{efa}");
        }
        if gpu["status"] == "fail" {
            let s = summary(gpu);
            assert!(s.contains("0000:53:00") || s.contains("7 of 8"), "{gpu}");
        }
        for c in [efa, gpu] {
            assert!(c["status"] == "pass" || c["status"] == "fail", "{c}");
            *seen.entry(format!("{}: {}", c["name"].as_str().unwrap(), summary(c))).or_default() +=
                1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let flips = churn.join().unwrap();
    println!("{flips} renames during 40 runs; outcomes:");
    for (what, n) in &seen {
        println!("  {n:3} × {what}");
    }
}

/// FIFOs planted where boot reads (a disk's model, the mount table, containerd's config, the
/// status file): a blocking open or read of any would hold boot, and containerd and kubelet behind
/// it, until systemd's timeout. Each is named and boot ends at once.
#[test]
fn boot_with_fifos_where_it_reads_ends_at_once_naming_them() {
    let dir = tree(&Spec::p5_48xlarge());
    let root = dir.path();
    let fifos = [
        "sys/block/nvme1n1/device/model",
        "proc/1/mountinfo",
        "etc/containerd/config.toml",
        "run/nodeprep/status.json",
    ];
    for f in fifos {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&p);
        assert!(Command::new("mkfifo").arg(&p).status().unwrap().success());
    }
    let t0 = Instant::now();
    let o = command(&[], root, &["boot"]).output().unwrap();
    let took = t0.elapsed();
    no_panic(&o);
    let out =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    println!("boot with {} FIFOs took {took:?}", fifos.len());
    assert!(took < Duration::from_secs(8), "{took:?}\n{out}");
    assert_eq!(o.status.code(), Some(1), "{out}");
    for f in &fifos[..3] {
        assert!(
            out.contains(&format!("{f}: it is a FIFO (named pipe), not a file")),
            "{f} not named:\n{out}"
        );
    }
    // The status file's FIFO is replaced by the file (never read from, never written into).
    let status = std::fs::symlink_metadata(root.join("run/nodeprep/status.json")).unwrap();
    assert!(status.file_type().is_file(), "{status:?}");
}

/// A read that never returns (a FUSE file whose reads are never answered, as a hung device or
/// network filesystem) in containerd's config, which boot reads to decide limits: boot's watchdog
/// ends boot at checks.timeout_seconds naming the file, instead of waiting forever.
#[test]
fn boot_stuck_in_a_read_names_it_and_ends_at_its_deadline() {
    let mut spec = Spec::p5_48xlarge();
    spec.config = Some("[checks]\ntimeout_seconds = 2\n[nvidia]\nnvml_timeout_ms = 1000\n".into());
    let dir = tree(&spec);
    let cfg = dir.path().join("etc/containerd/config.toml");
    let Some(hung) = Hung::at(&cfg) else { return };
    let mut child = command(&[], dir.path(), &["boot"]).stdout(Stdio::piped()).spawn().unwrap();
    // boot prints its verdict, then exits; the process ends only once its stuck thread can (the
    // FUSE server gone). The line must come by the deadline, long before the release.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((Instant::now(), l));
        }
    });
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let line = loop {
        match rx.recv_timeout(Duration::from_secs(8)) {
            Ok((at, l)) if l.starts_with("boot: FAIL: no answer reading") => break (at - t0, l),
            Ok((_, l)) => seen.push(l),
            Err(_) => panic!("no watchdog line within 8 s; boot said: {seen:#?}"),
        }
    };
    drop(hung);
    let status = child.wait().unwrap();
    println!("watchdog after {:?}: {}", line.0, line.1);
    assert!(
        line.1
            .contains(&format!("{}: no answer", cfg.display()).replace(": no answer", " for 2 s")),
        "{}",
        line.1
    );
    assert!(line.0 < Duration::from_secs(5), "{:?}", line.0);
    assert_eq!(status.code(), Some(1));
}

/// A 64 GB sparse file at dev/kmsg (its length claims it all) is refused at checks.max_read_bytes,
/// never sized into memory: the checks that read the kernel log name it, the process lives.
#[test]
fn a_huge_sparse_kmsg_is_refused_not_allocated() {
    let dir = tree(&Spec::p5_48xlarge());
    let kmsg = dir.path().join("dev/kmsg");
    std::fs::File::create(&kmsg).unwrap().set_len(64 << 30).unwrap();
    let (_, checks, took) = check(&[], dir.path(), &["nvidia", "efa"]);
    assert!(took < Duration::from_secs(10), "{took:?}");
    let text = serde_json::to_string(&checks).unwrap();
    assert!(
        text.contains("dev/kmsg: larger than 16777216 bytes (checks.max_read_bytes)"),
        "{text}"
    );
}
