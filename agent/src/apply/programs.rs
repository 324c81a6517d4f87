//! One wrapper per external program nodeprep runs: its name and deadline, and the actions (or the
//! run) made of it. Plans build their commands here, so every program's arguments live in one place.

use std::time::Duration;

use super::Action;
use crate::host::cmd::CmdError;
use crate::host::Host;

/// A program and the longest one run of it may take.
pub struct Program {
    pub name: &'static str,
    pub timeout_s: u64,
}

/// md RAID (assembling a few disks takes seconds; creating a RAID0 writes only superblocks).
pub const MDADM: Program = Program { name: "mdadm", timeout_s: 120 };
/// xfs on up to 30 TB of NVMe, discard skipped: well under a minute; a slow disk gets more.
pub const MKFS_XFS: Program = Program { name: "mkfs.xfs", timeout_s: 900 };
pub const SYSTEMCTL: Program = Program { name: "systemctl", timeout_s: 60 };
/// Copying a bind target's content (containerd's images on an AMI with a warm cache).
pub const CP: Program = Program { name: "cp", timeout_s: 3600 };

fn run(p: &Program, args: &[&str], why: &str, timeout_s: u64) -> Action {
    Action::Run {
        program: p.name.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        why: why.into(),
        timeout_s,
    }
}

/// `mdadm --stop MD`: an array that is not running (a half-assembled one) lets its disks go.
pub fn mdadm_stop(md: &str, why: &str) -> Action {
    run(&MDADM, &["--stop", md], why, 60)
}

/// `mdadm --assemble --run MD MEMBERS...`: an array from its members, data kept.
pub fn mdadm_assemble(md: &str, members: &[String], why: &str) -> Action {
    let mut args = vec!["--assemble", "--run", md];
    args.extend(members.iter().map(String::as_str));
    run(&MDADM, &args, why, MDADM.timeout_s)
}

/// `mdadm --create`: a RAID0 of `members` with metadata 1.2, named `name` on any host.
pub fn mdadm_create_raid0(
    md: &str,
    name: &str,
    chunk_kib: u32,
    members: &[String],
    why: &str,
) -> Action {
    let (name, chunk, count) =
        (format!("--name={name}"), chunk_kib.to_string(), members.len().to_string());
    let mut args = vec![
        "--create",
        md,
        "--run",
        "--metadata=1.2",
        "--homehost=any",
        name.as_str(),
        "--level=0",
        "--chunk",
        chunk.as_str(),
        "--raid-devices",
        count.as_str(),
    ];
    args.extend(members.iter().map(String::as_str));
    run(&MDADM, &args, why, MDADM.timeout_s)
}

/// `mkfs.xfs [-f] -K -L LABEL DEVICE`: discard skipped (instance store is blank); `force` over
/// content that is ours (a new array, an interrupted mkfs).
pub fn mkfs_xfs(device: &str, label: &str, force: bool) -> Action {
    let mut args = vec!["-K", "-L", label, device];
    let why = if force {
        args.insert(0, "-f");
        "xfs on our own array/disk (old content is ours)"
    } else {
        "xfs, discard skipped (-K)"
    };
    run(&MKFS_XFS, &args, why, MKFS_XFS.timeout_s)
}

/// `systemctl daemon-reload`: systemd reads changed unit files and drop-ins.
pub fn systemctl_daemon_reload(why: &str) -> Action {
    run(&SYSTEMCTL, &["daemon-reload"], why, SYSTEMCTL.timeout_s)
}

/// `cp -a FROM TO`, run now: keeps owners, modes, timestamps, links, xattrs (SELinux labels) and
/// device nodes.
pub fn cp_archive(host: &Host, from: &str, to: &str) -> Result<String, CmdError> {
    host.run(CP.name, &["-a", from, to], Duration::from_secs(CP.timeout_s))
}
