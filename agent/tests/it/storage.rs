//! Instance storage on fixture trees: what `boot --dry-run` plans and what `check` says, for blank
//! disks, disks that are ours already, foreign data, one disk, no disks, and the states a crash or
//! udev leaves behind. Effects on real block devices are in storage_loop.rs (loop devices) and
//! tests/vm (mdadm RAID0 on emulated NVMe).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use nodeprep_fixtures::{ext4_superblock, md_superblock, snapshot, xfs_superblock, Disk, Spec};
use serde_json::Value;

use crate::common::nodeprep;

const MODEL: &str = "Amazon EC2 NVMe Instance Storage";
const NO_LIMITS: &str = "[limits]\napply = \"never\"\n";

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `boot --dry-run`: (exit code, the storage lines).
/// A fixture tree; limits are not applied unless the spec's config says so (storage tests see only
/// storage actions).
fn tree(spec: &Spec) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec.clone();
    spec.config.get_or_insert_with(|| NO_LIMITS.into());
    spec.write(dir.path()).unwrap();
    dir
}

fn dry_run(root: &Path) -> (i32, Vec<String>) {
    let o = nodeprep(root, &["boot", "--dry-run"]);
    let lines = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("storage:"))
        .map(str::to_string)
        .collect();
    (o.status.code().unwrap(), lines)
}

fn storage_check(root: &Path) -> (i32, Value) {
    let o = nodeprep(root, &["--output", "json", "check", "--only", "storage"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", out(&o)));
    (o.status.code().unwrap(), v["checks"][0].clone())
}

fn instance_store(spec: &mut Spec) -> Vec<&mut Disk> {
    spec.disks.iter_mut().filter(|d| d.model == MODEL).collect()
}

/// Drops the mounts of the array (md127, 9:127): /mnt/nodeprep and the binds onto it.
fn without_array_mounts(spec: &mut Spec) {
    spec.mountinfo = spec
        .mountinfo
        .lines()
        .filter(|l| !l.contains(" 9:127 "))
        .map(|l| format!("{l}\n"))
        .collect();
}

/// The node after a reboot before anything assembled the array: no array, no holders, no mounts.
fn array_stopped(spec: &mut Spec) {
    spec.arrays.clear();
    for d in instance_store(spec) {
        d.holders.clear();
    }
    without_array_mounts(spec);
}

#[test]
fn blank_disks_get_one_raid0_xfs_mount_and_binds_parent_first() {
    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.config = Some(format!("{NO_LIMITS}[storage]\nbind = [\"/var/lib/kubelet/pods\", \"/var/log/pods\", \"/var/lib/kubelet\"]\n"));
    // The kernel numbered the disks differently from their serials: members are ordered by serial.
    instance_store(&mut spec)[0].serial = "AWSZZZZZZZZZZZZZZZZZ".into();
    let dir = tree(&spec);
    let before = snapshot(dir.path());
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 0, "{lines:#?}");
    let disks: Vec<String> =
        (2..=8).map(|i| format!("/dev/nvme{i}n1")).chain(["/dev/nvme1n1".to_string()]).collect();
    let want = [
        format!(
            "storage: would run `mdadm --create /dev/md127 --run --metadata=1.2 --homehost=any --name=nodeprep --level=0 --chunk 256 --raid-devices 8 {}`: RAID0 of 8 blank instance-store disks",
            disks.join(" ")
        ),
        "storage: would run `mkfs.xfs -f -K -L nodeprep /dev/md127`: xfs on our own array/disk (old content is ours)".into(),
        "storage: would create directory /mnt/nodeprep if missing: mount point".into(),
        "storage: would mount /dev/md127 on /mnt/nodeprep (xfs, nosuid,nodev,noatime): instance store".into(),
        "storage: would verify /mnt/nodeprep is xfs and writable before use".into(),
        "storage: would copy /var/log/pods to /mnt/nodeprep/var/log/pods (kept as is if it exists: data from an earlier boot)".into(),
        "storage: would bind-mount /mnt/nodeprep/var/log/pods on /var/log/pods".into(),
        "storage: would copy /var/lib/kubelet to /mnt/nodeprep/var/lib/kubelet (kept as is if it exists: data from an earlier boot)".into(),
        "storage: would bind-mount /mnt/nodeprep/var/lib/kubelet on /var/lib/kubelet".into(),
        "storage: would copy /var/lib/kubelet/pods to /mnt/nodeprep/var/lib/kubelet/pods (kept as is if it exists: data from an earlier boot)".into(),
        "storage: would bind-mount /mnt/nodeprep/var/lib/kubelet/pods on /var/lib/kubelet/pods".into(),
    ];
    assert_eq!(lines, want);
    assert_eq!(snapshot(dir.path()), before, "--dry-run changed the tree");
    let (code, c) = storage_check(dir.path());
    assert_eq!(code, 1);
    assert_eq!(c["status"], "fail");
    assert_eq!(c["required"], true);
    assert_eq!(c["summary"], "no RAID0 array assembled from 8 disks; not mounted at /mnt/nodeprep");
    assert_eq!(
        (
            c["expected"]["disks"].as_u64(),
            c["found"]["disks"].as_u64(),
            c["found"]["mounted"].as_bool()
        ),
        (Some(8), Some(8), Some(false))
    );
}

#[test]
fn a_prepared_node_needs_nothing_and_passes() {
    let dir = tree(&Spec::p5_48xlarge());
    assert_eq!(dry_run(dir.path()), (0, vec!["storage: nothing to do".to_string()]));
    let o = nodeprep(dir.path(), &["boot"]);
    assert!(out(&o).contains("storage: up to date"), "{}", out(&o));
    let (code, c) = storage_check(dir.path());
    assert_eq!((code, c["status"].as_str()), (0, Some("pass")), "{c}");
    assert_eq!(
        c["summary"],
        "8 disks as /dev/md127 (30.7 TB raw) at /mnt/nodeprep, 4 binds in place"
    );
    assert_eq!(c["found"]["array"]["state"], "clean");
}

#[test]
fn our_array_after_a_reboot_is_assembled_not_recreated() {
    let mut spec = Spec::p5_48xlarge();
    array_stopped(&mut spec);
    spec.containerd = None;
    let dir = tree(&spec);
    // The array's xfs starts at the data offset of the member in role 0.
    let f = std::fs::OpenOptions::new().write(true).open(dir.path().join("dev/nvme1n1")).unwrap();
    f.write_at(&xfs_superblock("nodeprep"), 264_192 * 512).unwrap();
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 0);
    let members: Vec<String> = (1..=8).map(|i| format!("/dev/nvme{i}n1")).collect();
    assert_eq!(
        lines[0],
        format!(
            "storage: would run `mdadm --assemble --run /dev/md127 {}`: the disks hold our array 5e117a2b:903c4d1e:a2076f3d:8b19c455: assemble it, data kept",
            members.join(" ")
        )
    );
    assert!(lines.iter().all(|l| !l.contains("mkfs") && !l.contains("--create")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("would mount /dev/md127 on /mnt/nodeprep")));

    // mkfs had not finished when the node went down: the array is formatted again (it is ours).
    let mut unfinished = xfs_superblock("nodeprep");
    unfinished[126] = 1;
    f.write_at(&unfinished, 264_192 * 512).unwrap();
    let (_, lines) = dry_run(dir.path());
    assert!(lines[1].contains("would run `mkfs.xfs -f -K -L nodeprep /dev/md127`"), "{lines:#?}");

    // A member has not appeared (or failed): never recreate over the others.
    let mut missing = spec.clone();
    missing.disks.retain(|d| d.name != "nvme8n1");
    let dir2 = tree(&missing);
    let (code, lines) = dry_run(dir2.path());
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        ["storage: REFUSED: our array 5e117a2b:903c4d1e:a2076f3d:8b19c455 had 8 disks, only 7 are present; recreating it would \
          erase their data. If a disk is slow to appear, rerun `nodeprep boot` (or raise storage.wait_seconds); if it failed, \
          stop and start the instance"]
    );

    // A crash in the middle of `mdadm --create`: only some disks got a superblock. Every disk is ours
    // or blank, so the array is created again from all of them.
    for i in 5..=8 {
        std::fs::write(dir.path().join(format!("dev/nvme{i}n1")), b"").unwrap();
    }
    let (_, lines) = dry_run(dir.path());
    assert!(lines[0].contains("would run `mdadm --create /dev/md127"), "{lines:#?}");
}

#[test]
fn a_half_assembled_array_from_udev_is_stopped_then_assembled() {
    let mut spec = Spec::p5_48xlarge();
    spec.arrays[0].state = "inactive".into();
    spec.arrays[0].members.truncate(5);
    for d in instance_store(&mut spec).into_iter().skip(5) {
        d.holders.clear();
    }
    without_array_mounts(&mut spec);
    spec.containerd = None;
    let dir = tree(&spec);
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("dev/nvme1n1"))
        .unwrap()
        .write_at(&xfs_superblock("nodeprep"), 264_192 * 512)
        .unwrap();
    let (_, lines) = dry_run(dir.path());
    assert_eq!(
        lines[0],
        "storage: would run `mdadm --stop /dev/md127`: /dev/md127 is inactive with 5 of 8 members"
    );
    assert!(
        lines[1].starts_with("storage: would run `mdadm --assemble --run /dev/md127 /dev/nvme1n1"),
        "{lines:#?}"
    );
    let (code, c) = storage_check(dir.path());
    assert_eq!(code, 1);
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .starts_with("/dev/md127 is inactive with 5 of 8 members (degraded)"),
        "{c}"
    );
}

#[test]
fn a_foreign_filesystem_stops_storage_and_names_the_disk() {
    let mut spec = Spec::p5_48xlarge().unprepared();
    instance_store(&mut spec)[2].content = ext4_superblock("scratch");
    let dir = tree(&spec);
    let before = snapshot(dir.path());
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 1, "a refusal is not ready");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(
        lines[0],
        "storage: REFUSED: /dev/nvme3n1 (AWS2D4B1E5A8C0000003) carries ext4 filesystem (label \"scratch\"); nothing was formatted: \
         nodeprep formats only blank disks or its own (array or label \"nodeprep\"). If that data is not wanted, erase it with \
         `wipefs --all /dev/nvme3n1`, or list only the other disks in storage.devices; then restart nodeprep-boot.service (or run \
         `nodeprep boot`)"
    );
    // boot refuses too, and changes nothing but the status file.
    let o = nodeprep(dir.path(), &["boot"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("storage: FAIL: refused: /dev/nvme3n1"), "{}", out(&o));
    let after: Vec<_> =
        snapshot(dir.path()).into_iter().filter(|(p, _)| !p.starts_with("run")).collect();
    assert_eq!(after, before);

    // Another array's member and a partition table are foreign too.
    for (content, what) in [
        (
            md_superblock("other-host:data", [7; 16], 0, 2),
            "md 1.2 RAID member of array \"other-host:data\"",
        ),
        (xfs_superblock("backups"), "xfs filesystem (label \"backups\")"),
        ([vec![0u8; 510], vec![0x55, 0xaa], b"EFI PART".to_vec()].concat(), "GPT partition table"),
    ] {
        let mut spec = Spec::p5_48xlarge().unprepared();
        instance_store(&mut spec)[5].content = content;
        let dir = tree(&spec);
        let (code, lines) = dry_run(dir.path());
        assert_eq!(code, 1);
        assert!(
            lines[0].contains(&format!("/dev/nvme6n1 (AWS2D4B1E5A8C0000006) carries {what}")),
            "{lines:#?}"
        );
    }
}

/// What boot refuses is what the check says, in the same words: `check` (JSON and text), `serve`'s
/// /readyz and /status name the disk, what is on it and the remedy, as a failure that is not the
/// hardware's (the repair bridge must not replace a node for someone's filesystem).
#[test]
fn the_check_says_what_boot_refuses_in_boots_words() {
    let mut spec = Spec::p5_48xlarge().unprepared();
    instance_store(&mut spec)[2].content = ext4_superblock("scratch");
    let dir = tree(&spec);
    let (_, lines) = dry_run(dir.path());
    let refusal = lines[0].strip_prefix("storage: REFUSED: ").expect("a refusal").to_string();
    for part in [
        "/dev/nvme3n1 (AWS2D4B1E5A8C0000003) carries ext4 filesystem",
        "nothing was formatted",
        "`wipefs --all /dev/nvme3n1`",
        "storage.devices",
        "restart nodeprep-boot.service",
    ] {
        assert!(refusal.contains(part), "{part:?} missing: {refusal}");
    }
    let (code, c) = storage_check(dir.path());
    assert_eq!((code, c["status"].as_str()), (1, Some("fail")), "{c}");
    assert_eq!(c["summary"], format!("boot refuses: {refusal}"));
    assert_eq!(c["found"]["refused"], refusal.as_str());
    assert_eq!(c["found"]["mounted"], false);
    assert!(c.get("hardware_fault").is_none(), "a foreign filesystem is not the hardware's: {c}");
    assert!(c["remedy"].as_str().unwrap().contains("do what the refusal says"), "{c}");
    let o = nodeprep(dir.path(), &["check", "--only", "storage"]);
    assert!(out(&o).contains(&format!("boot refuses: {refusal}")), "{}", out(&o));

    // The rest of the story beside it: a member of our array gone is the hardware's, and stays so.
    let mut gone = Spec::p5_48xlarge();
    gone.disks.retain(|d| d.name != "nvme8n1");
    array_stopped(&mut gone);
    let dir2 = tree(&gone);
    let (code, c) = storage_check(dir2.path());
    assert_eq!(code, 1);
    let summary = c["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("7 of 8 instance-store disks present; boot refuses: our array ")
            && summary.contains("only 7 are present"),
        "{c}"
    );
    assert_eq!(c["hardware_fault"], "7 of 8 instance-store disks present", "{c}");

    // serve: /readyz and /status carry the refusal.
    let mut cmd = crate::common::Nodeprep::new(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .command();
    cmd.stderr(std::process::Stdio::null());
    let srv = crate::common::Server::spawn(cmd);
    let mut body = String::new();
    crate::common::wait_until("the first run on /readyz", Duration::from_secs(15), || {
        let (code, _, b) = srv.get("/readyz");
        body = b;
        code == 503 && body.contains("storage: ")
    });
    assert!(body.contains(&format!("\nstorage: boot refuses: {refusal}\n")), "{body}");
    let (_, _, status) = srv.get("/status");
    let v: Value = serde_json::from_str(&status).unwrap();
    let c = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "storage").unwrap();
    assert_eq!(c["found"]["refused"], refusal.as_str());
    assert_eq!(srv.terminate(), 0);
}

#[test]
fn one_disk_is_formatted_directly_without_mdadm() {
    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.disks.truncate(2);
    spec.dmi = Some(("Amazon EC2".into(), "g5.xlarge".into()));
    let dir = tree(&spec);
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 0);
    assert_eq!(
        lines[0],
        "storage: would run `mkfs.xfs -K -L nodeprep /dev/nvme1n1`: xfs, discard skipped (-K)"
    );
    assert!(lines[2].contains("would mount /dev/nvme1n1 on /mnt/nodeprep"), "{lines:#?}");
    assert!(lines.iter().all(|l| !l.contains("mdadm")));
    // Formatted before (ours): only mounted.
    std::fs::write(dir.path().join("dev/nvme1n1"), xfs_superblock("nodeprep")).unwrap();
    let (_, lines) = dry_run(dir.path());
    assert!(lines[0].contains("would create directory /mnt/nodeprep"), "{lines:#?}");
    // The one disk present is a member of our 2-disk array: the other has not appeared. Never format it.
    std::fs::write(dir.path().join("dev/nvme1n1"), md_superblock("nodeprep", [3; 16], 0, 2))
        .unwrap();
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 1);
    assert!(
        lines[0].starts_with("storage: REFUSED: our array 03030303:03030303:03030303:03030303 had 2 disks, only 1 are present"),
        "{lines:#?}"
    );
}

#[test]
fn no_instance_store_means_skip() {
    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.disks.truncate(1);
    spec.dmi = Some(("Amazon EC2".into(), "p4d.24xlarge".into()));
    spec.config = Some(format!("{NO_LIMITS}[expect]\ninstance_store_disks = 0\n"));
    let dir = tree(&spec);
    let (code, lines) = dry_run(dir.path());
    assert_eq!((code, lines.len()), (0, 1));
    assert_eq!(
        lines[0],
        "storage: skip instance storage: no instance-store disks (NVMe model \"Amazon EC2 NVMe Instance Storage\") on this node"
    );
    let (code, c) = storage_check(dir.path());
    assert_eq!(
        (code, c["status"].as_str(), c["required"].as_bool()),
        (0, Some("skip"), Some(false)),
        "{c}"
    );
    // The catalog promises 8 disks and none are there: that is a failure, not a skip.
    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.disks.truncate(1);
    let dir = tree(&spec);
    let (code, c) = storage_check(dir.path());
    assert_eq!(code, 1);
    assert!(
        c["summary"].as_str().unwrap().starts_with("0 of 8 instance-store disks present"),
        "{c}"
    );
    assert!(c["remedy"].as_str().unwrap().contains("stop and start the instance"), "{c}");
}

#[test]
fn disks_in_use_are_skipped_and_running_containerd_blocks_binds() {
    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.mountinfo.push_str("80 22 259:4 / /data rw,relatime shared:30 - ext4 /dev/nvme3n1 rw\n");
    instance_store(&mut spec)[3].partitions = vec![("nvme4n1p1".into(), "259:20".into())];
    let dir = tree(&spec);
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 0, "{lines:#?}");
    assert_eq!(
        lines[0],
        "storage: note: /dev/nvme3n1 (AWS2D4B1E5A8C0000003) is mounted at /data: not used"
    );
    assert_eq!(
        lines[1],
        "storage: note: /dev/nvme4n1 (AWS2D4B1E5A8C0000004) is partitioned (nvme4n1p1): not used"
    );
    assert!(
        lines[2].contains("--raid-devices 6 /dev/nvme1n1 /dev/nvme2n1 /dev/nvme5n1"),
        "{lines:#?}"
    );

    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.containerd = Some((1843, nodeprep_fixtures::proc_limits(None, None)));
    let dir = tree(&spec);
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 1);
    assert!(
        lines.last().unwrap().starts_with(
            "storage: REFUSED: containerd (pid 1843) is running: binding /var/lib/containerd"
        ),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("mdadm")),
        "nothing is planned when part of it is refused: {lines:#?}"
    );
}

#[test]
fn a_crash_between_mount_and_binds_only_binds_what_is_missing() {
    let mut spec = Spec::p5_48xlarge();
    spec.mountinfo = spec
        .mountinfo
        .lines()
        .filter(|l| !l.contains("/var/log/pods") && !l.contains("soci"))
        .map(|l| format!("{l}\n"))
        .collect();
    spec.containerd = None;
    let dir = tree(&spec);
    let (_, lines) = dry_run(dir.path());
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[1].ends_with("bind-mount /mnt/nodeprep/var/log/pods on /var/log/pods"));
    assert!(lines[3].ends_with(
        "bind-mount /mnt/nodeprep/var/lib/soci-snapshotter-grpc on /var/lib/soci-snapshotter-grpc"
    ));
    let (code, c) = storage_check(dir.path());
    assert_eq!(code, 1);
    assert_eq!(
        c["summary"],
        "not bind-mounted onto the instance store: /var/log/pods, /var/lib/soci-snapshotter-grpc"
    );
    assert_eq!(c["found"]["binds_missing"][0], "/var/log/pods");
}

#[test]
fn something_else_at_the_mount_point_or_a_target_is_never_covered() {
    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.mountinfo.push_str("80 22 0:60 / /mnt/nodeprep rw,relatime shared:30 - tmpfs tmpfs rw\n");
    let dir = tree(&spec);
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 1);
    assert_eq!(
        lines.last().unwrap(),
        "storage: REFUSED: /mnt/nodeprep already has tmpfs (tmpfs) mounted; nodeprep does not mount over it. Unmount it or set storage.mount_point"
    );
    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.mountinfo.push_str(
        "80 22 259:0 /kubelet /var/lib/kubelet rw,relatime shared:30 - xfs /dev/nvme0n1p1 rw\n",
    );
    let dir = tree(&spec);
    let (_, lines) = dry_run(dir.path());
    assert!(
        lines
            .last()
            .unwrap()
            .contains("REFUSED: /var/lib/kubelet already has /dev/nvme0n1p1 (xfs) mounted"),
        "{lines:#?}"
    );
}

/// A stopped kubelet leaves its pods' secret volumes mounted: copying /var/lib/kubelet would copy
/// the secrets onto the instance store and the bind would hide the tmpfs.
#[test]
fn a_mount_below_a_bind_target_stops_the_binds_naming_it() {
    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.mountinfo.push_str(
        "81 22 0:61 / /var/lib/kubelet/pods/1b2c/volumes/kubernetes.io~projected/kube-api-access rw,relatime shared:31 - tmpfs tmpfs rw,size=1048576k\n",
    );
    let dir = tree(&spec);
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 1);
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("storage: REFUSED: /var/lib/kubelet/pods/1b2c/volumes/kubernetes.io~projected/kube-api-access (tmpfs, tmpfs) is mounted below /var/lib/kubelet"),
        "{lines:#?}"
    );
    assert!(last.contains("umount -R /var/lib/kubelet/pods/1b2c/volumes"), "{last}");
    assert!(!lines.iter().any(|l| l.contains("bind-mount")), "nothing bound: {lines:#?}");
}

/// A bind target that is a symlink would be bound onto itself on the root disk (one more mount
/// each boot); one whose link leaves a --root tree would write to this machine's own files.
#[test]
fn a_bind_target_reached_through_a_symlink_is_refused_naming_where_it_leads() {
    let spec = Spec::p5_48xlarge().unprepared();
    let dir = tree(&spec);
    let c = dir.path().join("var/lib/containerd");
    let _ = std::fs::remove_dir_all(&c);
    std::fs::create_dir_all(dir.path().join("data/containerd")).unwrap();
    std::os::unix::fs::symlink("../../data/containerd", &c).unwrap();
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 1);
    assert!(
        lines.last().unwrap().starts_with(
            "storage: REFUSED: /var/lib/containerd is reached through a symbolic link (it leads to /data/containerd)"
        ),
        "{lines:#?}"
    );
    std::fs::remove_file(&c).unwrap();
    std::os::unix::fs::symlink("/nonexistent-host-dir/containerd", &c).unwrap();
    let (_, lines) = dry_run(dir.path());
    assert!(
        lines
            .last()
            .unwrap()
            .contains("(it leads to /nonexistent-host-dir/containerd (outside the root))"),
        "{lines:#?}"
    );
}

#[test]
fn explicit_devices_must_exist_and_be_free() {
    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.config =
        Some(format!("{NO_LIMITS}[storage]\ndevices = [\"/dev/nvme1n1\", \"/dev/nvme9n1\"]\n"));
    let dir = tree(&spec);
    let (code, lines) = dry_run(dir.path());
    assert_eq!(code, 1);
    assert!(
        lines[0].contains("storage.devices: /dev/nvme9n1 is not a block device on this host"),
        "{lines:#?}"
    );
    spec.config = Some(format!("{NO_LIMITS}[storage]\ndevices = [\"/dev/nvme0n1\"]\n"));
    let dir = tree(&spec);
    let (_, lines) = dry_run(dir.path());
    assert_eq!(lines[0], "storage: REFUSED: /dev/nvme0n1 (listed in storage.devices) is the root disk; remove it from storage.devices");
    spec.config =
        Some(format!("{NO_LIMITS}[storage]\ndevices = [\"/dev/nvme2n1\", \"/dev/nvme1n1\"]\n"));
    let dir = tree(&spec);
    let (_, lines) = dry_run(dir.path());
    assert!(
        lines[0].contains("--raid-devices 2 /dev/nvme2n1 /dev/nvme1n1`"),
        "explicit devices keep their order: {lines:#?}"
    );
}

#[test]
fn storage_never_leaves_the_disks_alone() {
    let mut spec = Spec::p5_48xlarge().unprepared();
    spec.config = Some(format!("{NO_LIMITS}[storage]\nenabled = \"never\"\n"));
    let dir = tree(&spec);
    assert_eq!(
        dry_run(dir.path()),
        (0, vec!["storage: skip instance storage: storage.enabled = never".to_string()])
    );
    let (code, c) = storage_check(dir.path());
    assert_eq!(
        (code, c["status"].as_str(), c["required"].as_bool()),
        (0, Some("skip"), Some(false))
    );
}

#[test]
fn discovery_follows_real_sysfs_symlinks() {
    let mut spec = Spec::p5_48xlarge();
    spec.layout = nodeprep_fixtures::Layout::Symlinked;
    let dir = tree(&spec);
    assert!(std::fs::symlink_metadata(dir.path().join("sys/block/nvme1n1"))
        .unwrap()
        .file_type()
        .is_symlink());
    let (code, c) = storage_check(dir.path());
    assert_eq!((code, c["status"].as_str()), (0, Some("pass")), "{c}");
}
