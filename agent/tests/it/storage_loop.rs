//! Instance storage on real block devices: loop devices with xfs, mounts and binds inside a private
//! mount namespace (`unshare -m`), driven through `nodeprep boot --root /` with explicit devices.
//! This kernel has no md RAID; RAID0 runs in the VM test (tests/vm/storage.sh).
//!
//! Needs root, util-linux (losetup, unshare, nsenter) and xfsprogs; scripts/test installs them.
//! Covers: format + mount + binds with existing content copied, rerun changes nothing, a "reboot"
//! (new namespace, same disk) keeps the data, a "stop/start" (blank disk) starts afresh, a foreign
//! disk is refused untouched, and kill -9 at random points always converges on the next run.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::BIN;

fn sh(cmd: &str) -> String {
    let o = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(o.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A loop device over a sparse file, detached on drop.
struct Loop {
    dev: String,
    _img: PathBuf,
}

impl Loop {
    fn new(dir: &Path, name: &str, mib: u64) -> Loop {
        let img = dir.join(name);
        std::fs::File::create(&img).unwrap().set_len(mib << 20).unwrap();
        let dev = sh(&format!("losetup --find --show {}", img.display()));
        Loop { dev, _img: img }
    }

    /// What EC2 gives after a stop/start: a disk that reads as zeros.
    fn blank(&self) {
        sh(&format!("dd if=/dev/zero of={} bs=1M count=8 conv=fsync status=none", self.dev));
    }

    fn sha(&self) -> String {
        sh(&format!("sha256sum {}", self.dev))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // The namespaces holding its mounts are gone by now; the kernel may need a moment to let go.
        for _ in 0..50 {
            if Command::new("losetup").args(["-d", &self.dev]).status().is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A private mount namespace with its own /run, alive while this value lives: like one boot of the
/// node. Mounts made in it vanish with it.
struct Ns {
    holder: Child,
}

impl Ns {
    fn new() -> Ns {
        let holder = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                "mount -t tmpfs nodeprep-test /run && exec sleep 100000",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) runs");
        let ns = Ns { holder };
        // Wait until /run is mounted in it.
        for _ in 0..100 {
            if ns
                .cmd("sh")
                .args(["-c", "grep -q nodeprep-test /proc/self/mountinfo"])
                .status()
                .is_ok_and(|s| s.success())
            {
                return ns;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the test mount namespace did not come up");
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-m", "--", program]);
        c
    }

    fn nodeprep(&self, cfg: &Path, args: &[&str]) -> Output {
        self.cmd(BIN)
            .arg("--config")
            .arg(cfg)
            .args(args)
            .env("NODEPREP_LOG", "warn")
            .output()
            .unwrap()
    }

    fn mountinfo(&self) -> String {
        String::from_utf8(self.cmd("cat").arg("/proc/self/mountinfo").output().unwrap().stdout)
            .unwrap()
    }

    fn read(&self, path: &Path) -> Option<String> {
        let o = self.cmd("cat").arg(path).output().unwrap();
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

struct Node {
    dir: tempfile::TempDir,
    cfg: PathBuf,
}

impl Node {
    fn new(devices: &[&str]) -> Node {
        // Not under /tmp if /tmp is a tmpfs of this namespace; the test's temp dir is fine.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let cfg = dir.path().join("config.toml");
        let devices: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
        std::fs::write(
            &cfg,
            format!(
                "instance_type = \"loop.test\"\n[expect]\ngpus = 0\nefa = 0\ninstance_store_disks = {}\n[limits]\napply = \"never\"\n\
                 [imds]\nenabled = \"never\"\n[storage]\ndevices = [{}]\nmount_point = \"{d}/mnt/nodeprep\"\n\
                 bind = [\"{d}/var/lib/kubelet\", \"{d}/var/lib/containerd\", \"{d}/var/log/pods\"]\n",
                devices.len(),
                devices.join(", ")
            ),
        )
        .unwrap();
        Node { dir, cfg }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// containerd's directory on the root volume before nodeprep: nested files, modes, an owner and a
    /// symlink that must survive the copy.
    fn seed(&self) {
        let c = self.path("var/lib/containerd");
        let _ = std::fs::remove_dir_all(&c);
        for i in 0..200 {
            let d = c.join(format!("io.containerd.content.v1.content/blobs/sha256/{:02}", i % 16));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("blob{i}")), format!("layer {i} ").repeat(200)).unwrap();
        }
        std::fs::write(c.join("meta.db"), b"bolt").unwrap();
        std::fs::set_permissions(c.join("meta.db"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::os::unix::fs::chown(c.join("meta.db"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::symlink("meta.db", c.join("link")).unwrap();
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
}

/// What the seeded containerd directory looks like from inside the namespace (through the bind).
fn containerd_view(ns: &Ns, node: &Node) -> String {
    let c = node.path("var/lib/containerd");
    let o = ns
        .cmd("sh")
        .args([
            "-c",
            &format!(
                "cd {} && find . -printf '%p %m %u %g %l\\n' | sort && cat meta.db && md5sum $(find . -type f | sort) | md5sum",
                c.display()
            ),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_prepared(ns: &Ns, node: &Node, dev: &str) {
    let mi = ns.mountinfo();
    let mp = node.path("mnt/nodeprep");
    let line = mi
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mp.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{mp:?} not mounted:\n{mi}"));
    assert!(line.contains(" - xfs ") && line.contains(dev), "{line}");
    for opt in ["nosuid", "nodev", "noatime"] {
        assert!(
            line.split(' ').nth(5).unwrap().split(',').any(|o| o == opt),
            "{opt} missing: {line}"
        );
    }
    for t in ["var/lib/kubelet", "var/lib/containerd", "var/log/pods"] {
        let target = node.path(t);
        let target = target.to_str().unwrap();
        let bind = mi
            .lines()
            .rev()
            .find(|l| l.split(' ').nth(4) == Some(target))
            .unwrap_or_else(|| panic!("{target} not bound:\n{mi}"));
        assert_eq!(bind.split(' ').nth(3), Some(target), "bind root is the mirrored path: {bind}");
    }
}

#[test]
fn one_disk_is_formatted_mounted_bound_and_survives_reruns_and_reboots() {
    let work = tempfile::tempdir().unwrap();
    let disk = Loop::new(work.path(), "nvme.img", 512);
    let node = Node::new(&[&disk.dev]);
    node.seed();
    let ns = Ns::new();
    let before = containerd_view(&ns, &node);

    let o = ns.nodeprep(&node.cfg, &["boot"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!("storage: done: ran `mkfs.xfs -K -L nodeprep {}`", disk.dev)),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "storage: done: copied {}",
            node.path("var/lib/containerd").display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "storage: done: created {}/mnt/nodeprep{}/var/lib/kubelet",
            node.dir.path().display(),
            node.dir.path().display()
        )),
        "{out}"
    );
    assert_prepared(&ns, &node, &disk.dev);
    assert_eq!(
        containerd_view(&ns, &node),
        before,
        "content, modes, owners and links kept through copy and bind"
    );
    let staging = node.path("mnt/nodeprep/.nodeprep-staging");
    assert!(
        !ns.cmd("test").arg("-e").arg(&staging).status().unwrap().success(),
        "staging directory left behind"
    );

    // Rerun on the prepared node: nothing happens.
    let o = ns.nodeprep(&node.cfg, &["boot"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("storage: up to date"), "{}", text(&o));
    assert!(!text(&o).contains("done: "), "{}", text(&o));
    let o = ns.nodeprep(&node.cfg, &["--output", "json", "check", "--only", "storage"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = &v["checks"][0];
    assert_eq!(c["status"], "pass", "{c}");
    let (usable, raw) =
        (c["found"]["usable_bytes"].as_u64().unwrap(), c["found"]["raw_bytes"].as_u64().unwrap());
    assert!(usable > raw / 2 && usable < raw, "statfs of the real mount: {usable} of {raw}");

    // Data written now lives on the disk...
    let marker = node.path("var/lib/kubelet/marker");
    assert!(ns
        .cmd("sh")
        .args(["-c", &format!("echo boot-1 > {} && sync", marker.display())])
        .status()
        .unwrap()
        .success());
    assert!(!marker.exists(), "written through the bind, not to the root volume");
    drop(ns);

    // ...and is there after a reboot: same disk, nothing mounted, no state on the root volume.
    let ns = Ns::new();
    let o = ns.nodeprep(&node.cfg, &["boot"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(!out.contains("mkfs"), "reboot must not reformat: {out}");
    assert!(out.contains("storage: done: kept"), "{out}");
    assert_eq!(ns.read(&marker).as_deref(), Some("boot-1\n"));
    assert_prepared(&ns, &node, &disk.dev);
    drop(ns);

    // Stop/start: the disk comes back blank. A new filesystem, no stale state, the root volume's
    // content copied again.
    disk.blank();
    let ns = Ns::new();
    let o = ns.nodeprep(&node.cfg, &["boot"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("ran `mkfs.xfs -K -L nodeprep"), "{out}");
    assert_eq!(ns.read(&marker), None);
    assert_eq!(containerd_view(&ns, &node), before);
}

#[test]
fn a_disk_with_someone_elses_filesystem_is_refused_and_left_untouched() {
    let work = tempfile::tempdir().unwrap();
    let disk = Loop::new(work.path(), "foreign.img", 64);
    sh(&format!("mkfs.ext4 -q -F -L scratch {}", disk.dev));
    let sum = disk.sha();
    let node = Node::new(&[&disk.dev]);
    let ns = Ns::new();
    let o = ns.nodeprep(&node.cfg, &["boot"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "storage: FAIL: refused: {} (no serial) carries ext4 filesystem (label \"scratch\")",
            disk.dev
        )),
        "{out}"
    );
    assert!(!ns.mountinfo().contains(&disk.dev), "nothing mounted");
    // The check reads the real disk's signatures as boot does and says boot's refusal, word for
    // word; a configuration state, not a hardware fault.
    let refusal = out
        .lines()
        .find_map(|l| l.strip_prefix("storage: FAIL: refused: "))
        .expect("boot's refusal")
        .to_string();
    assert!(refusal.ends_with("or remove it from storage.devices; then restart nodeprep-boot.service (or run `nodeprep boot`)"), "{refusal}");
    let o = ns.nodeprep(&node.cfg, &["--output", "json", "check", "--only", "storage"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = &v["checks"][0];
    assert_eq!(c["summary"], format!("boot refuses: {refusal}"), "{c}");
    assert_eq!(c["found"]["refused"], refusal.as_str());
    assert!(c.get("hardware_fault").is_none(), "{c}");
    assert_eq!(disk.sha(), sum, "not one byte changed");
}

#[test]
fn boot_waits_for_a_listed_disk_then_names_it() {
    let work = tempfile::tempdir().unwrap();
    let disk = Loop::new(work.path(), "nvme.img", 64);
    let node = Node::new(&[&disk.dev, "/dev/nodeprep-never-appears"]);
    let cfg = std::fs::read_to_string(&node.cfg)
        .unwrap()
        .replace("[storage]\n", "[storage]\nwait_seconds = 2\n");
    std::fs::write(&node.cfg, cfg).unwrap();
    let ns = Ns::new();
    let t0 = Instant::now();
    let o = ns
        .cmd(BIN)
        .arg("--config")
        .arg(&node.cfg)
        .arg("boot")
        .env("NODEPREP_LOG", "info")
        .output()
        .unwrap();
    let waited = t0.elapsed();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        waited >= Duration::from_secs(2),
        "gave up after {waited:?} instead of waiting storage.wait_seconds"
    );
    assert!(out.contains("not every instance-store disk appeared"), "{out}");
    assert!(
        out.contains(
            "storage.devices: /dev/nodeprep-never-appears is not a block device on this host"
        ),
        "{out}"
    );
    assert!(!ns.mountinfo().contains(&disk.dev), "nothing done with the disk that is there");
}

/// A tiny deterministic generator: the seed is printed, and `NODEPREP_CRASH_SEED` replays a run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn kill_9_at_random_points_always_converges() {
    let runs: u32 =
        std::env::var("NODEPREP_CRASH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let seed = std::env::var("NODEPREP_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        });
    eprintln!("crash convergence: {runs} runs, NODEPREP_CRASH_SEED={seed}");
    let mut rng = Lcg(seed);
    let work = tempfile::tempdir().unwrap();
    let disk = Loop::new(work.path(), "nvme.img", 512);
    // A disk that is not ours sits next to it the whole time.
    let foreign = Loop::new(work.path(), "foreign.img", 32);
    sh(&format!("mkfs.ext4 -q -F -L keep {}", foreign.dev));
    let foreign_sum = foreign.sha();
    let node = Node::new(&[&disk.dev]);

    // One undisturbed boot measures how long a whole run takes.
    node.seed();
    let ns = Ns::new();
    let reference = containerd_view(&ns, &node);
    let t0 = Instant::now();
    let o = ns.nodeprep(&node.cfg, &["boot"]);
    let full = t0.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    drop(ns);
    eprintln!("an undisturbed boot takes {} ms", full.as_millis());

    let mut killed_midway = 0;
    for run in 0..runs {
        // Half the runs start from a blank disk (first boot), half from our own disk (reboot).
        if run % 2 == 0 {
            disk.blank();
        }
        node.seed();
        let ns = Ns::new();
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64 + 1));
        let mut child = ns.cmd(BIN);
        child
            .arg("--config")
            .arg(&node.cfg)
            .arg("boot")
            .env("NODEPREP_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that the kill takes mkfs/cp with it, as systemd does.
        child.process_group(0);
        let mut child = child.spawn().unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        unsafe {
            libc::kill(-(child.id() as i32), libc::SIGKILL);
        }
        let _ = child.wait();
        killed_midway += u32::from(!finished);
        let o = ns.nodeprep(&node.cfg, &["boot"]);
        let out = text(&o);
        assert_eq!(
            o.status.code(),
            Some(0),
            "run {run} (seed {seed}, killed after {delay:?}): the rerun did not converge:\n{out}"
        );
        assert_prepared(&ns, &node, &disk.dev);
        assert_eq!(
            containerd_view(&ns, &node),
            reference,
            "run {run} (seed {seed}, killed after {delay:?}): content differs"
        );
        let again = ns.nodeprep(&node.cfg, &["boot"]);
        assert!(
            text(&again).contains("storage: up to date"),
            "run {run}: a third run still changes things:\n{}",
            text(&again)
        );
        let staging = node.path("mnt/nodeprep/.nodeprep-staging");
        let leftovers = ns
            .cmd("sh")
            .args([
                "-c",
                &format!(
                    "find {} -mindepth 1 -not -type d 2>/dev/null | head -3",
                    staging.display()
                ),
            ])
            .output()
            .unwrap();
        assert!(
            leftovers.stdout.is_empty(),
            "run {run}: a half copy was left behind: {}",
            text(&leftovers)
        );
    }
    assert_eq!(foreign.sha(), foreign_sum, "the foreign disk was touched");
    eprintln!(
        "crash convergence: {runs} runs, {killed_midway} killed before finishing, all converged"
    );
    assert!(
        killed_midway >= runs / 3,
        "too few runs were interrupted to prove anything ({killed_midway} of {runs})"
    );
}

/// Two boots at once (a retried unit and an operator over SSM): the second waits for the first,
/// naming its pid, and every one of 20,000 files reaches the instance store. Without the lock the
/// second deleted the first's staging copy while `cp -a` ran and a partial copy was renamed into
/// place (4,549 of 20,000 files, exit 0).
#[test]
fn two_boots_at_once_run_one_after_the_other_and_lose_nothing() {
    let work = tempfile::tempdir().unwrap();
    let disk = Loop::new(work.path(), "nvme.img", 512);
    let node = Node::new(&[&disk.dev]);
    let c = node.path("var/lib/containerd");
    for i in 0..20_000 {
        let d = c.join(format!("snapshots/{:03}", i % 200));
        if i < 200 {
            std::fs::create_dir_all(&d).unwrap();
        }
        std::fs::write(d.join(format!("f{i}")), i.to_string()).unwrap();
    }
    let ns = Ns::new();
    let start = |ns: &Ns| {
        ns.cmd(BIN)
            .arg("--config")
            .arg(&node.cfg)
            .arg("boot")
            .env("NODEPREP_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = start(&ns);
    // The second starts while the first copies.
    std::thread::sleep(Duration::from_millis(150));
    let second = start(&ns);
    let (a, b) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    let (ta, tb) = (text(&a), text(&b));
    assert_eq!(a.status.code(), Some(0), "{ta}");
    assert_eq!(b.status.code(), Some(0), "{tb}");
    let waited = [&ta, &tb]
        .into_iter()
        .filter(|t| t.contains("boot: waiting for another nodeprep boot (pid "))
        .count();
    println!(
        "boots: first {} lines, second {} lines, {waited} waited",
        ta.lines().count(),
        tb.lines().count()
    );
    assert_eq!(
        waited, 1,
        "exactly one boot waited for the other:\n--- first\n{ta}\n--- second\n{tb}"
    );
    let copied = [&ta, &tb].into_iter().filter(|t| t.contains("storage: done: copied")).count();
    assert_eq!(copied, 1, "one copy, the other found it done:\n{ta}\n{tb}");
    let n = ns
        .cmd("sh")
        .args(["-c", &format!("find {} -type f | wc -l", c.display())])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&n.stdout).trim(), "20000", "files through the bind");
    assert_prepared(&ns, &node, &disk.dev);
}
