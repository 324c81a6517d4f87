//! The effects plans are made of: atomic file writes, directories, mount(2), bind mounts, the
//! test of a fresh mount, and a bind target's copy onto the instance store. Each acts on the live
//! host only (a write goes under `--root`, which tests point at a tree).

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

use super::{programs, Action, Outcome};
use crate::host::Host;

/// A file that could not be written: the step, the path and the cause, with what to do when the
/// cause has a usual fix.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}{}", path.display(), hint(source))]
pub struct WriteError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            " — nodeprep boot must run as root (the nodeprep-boot.service unit does)"
        }
        std::io::ErrorKind::AlreadyExists => {
            " — nothing was overwritten: remove it or name another file"
        }
        std::io::ErrorKind::ReadOnlyFilesystem => {
            " — the filesystem is read-only; on Bottlerocket use its settings API instead"
        }
        _ => "",
    }
}

/// Whether a write must survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and its directory (configuration under /etc).
    Durable,
    /// Atomic rename only (files under /run, which is tmpfs and gone at reboot anyway): no fsync
    /// disturbing the node every few seconds.
    Volatile,
}

/// Writes `content` to the host path atomically, keeping the mode and owner of an existing file
/// (`mode` for a new one). Returns false when the file already has this content (nothing written).
pub fn write_atomic(
    host: &Host,
    host_path: &Path,
    content: &str,
    mode: u32,
    durability: Durability,
) -> Result<bool, WriteError> {
    let path = host.path(host_path);
    let explain =
        |op: &'static str, p: &Path, source| WriteError { op, path: p.to_path_buf(), source };
    let refuse = |why: String| WriteError {
        op: "writing",
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
    };
    // Never through or over a symbolic link: it could point at any file of the host (the mode and
    // owner of that file would be copied, or that file replaced).
    let existing = std::fs::symlink_metadata(&path).ok();
    if existing.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
        let to = std::fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default();
        return Err(refuse(format!(
            "it is a symbolic link (to {to}); nodeprep does not write through links: replace it with the file itself"
        )));
    }
    // Under --root, a link on the way must not lead out of the tree.
    if let Some(crate::host::Resolved::Outside(real)) =
        host_path.parent().and_then(|d| host.resolve(d))
    {
        return Err(refuse(format!(
            "its directory leads to {} outside --root {} (a symbolic link on the way); nothing was written",
            real.display(),
            host.root().display()
        )));
    }
    if existing.is_some() {
        if let Ok(cur) = host.read_bytes(host_path) {
            if cur == content.as_bytes() {
                return Ok(false);
            }
        }
    }
    let dir = path.parent().ok_or_else(|| WriteError {
        op: "writing",
        path: path.clone(),
        source: std::io::Error::other("no parent directory"),
    })?;
    std::fs::create_dir_all(dir).map_err(|e| explain("creating directory", dir, e))?;
    // A temporary file of its own in the same directory (unique name, O_EXCL): two writers at once
    // (boot and serve both write the status file) never share one, so the rename always moves a
    // whole file of one of them into place.
    let (mode, owner) = match &existing {
        Some(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
        None => (mode, None),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".nodeprep-tmp")
        .tempfile_in(dir)
        .map_err(|e| explain("creating a temporary file in", dir, e))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.as_file_mut()
        .write_all(content.as_bytes())
        .map_err(|e| explain("writing", &tmp_path, e))?;
    // Mode and owner set on the open file, never by name (a name can be swapped for a link).
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| explain("setting mode of", &tmp_path, e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(tmp.as_file(), Some(uid), Some(gid))
            .map_err(|e| explain("setting owner of", &tmp_path, e))?;
    }
    if durability == Durability::Durable {
        tmp.as_file().sync_all().map_err(|e| explain("syncing", &tmp_path, e))?;
    }
    // On failure the temporary file is removed when `tmp` drops.
    tmp.persist(&path).map_err(|e| explain("renaming onto", &path, e.error))?;
    if durability == Durability::Durable {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(true)
}

/// Makes the host path `link` a symbolic link to `target` (as written: relative to the link's
/// directory) when nothing is there, creating its directory if needed. Returns false when it is
/// already that link. Anything else there is left alone and is an error naming it; so is a
/// directory that leads out of `--root`.
pub fn symlink(host: &Host, link: &Path, target: &str) -> Result<bool, WriteError> {
    let path = host.path(link);
    let refuse = |why: String| WriteError {
        op: "linking",
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, why),
    };
    if let Some(crate::host::Resolved::Outside(real)) = link.parent().and_then(|d| host.resolve(d))
    {
        return Err(refuse(format!(
            "its directory leads to {} outside --root {}; nothing was linked",
            real.display(),
            host.root().display()
        )));
    }
    let same = |p: &Path| std::fs::read_link(p).is_ok_and(|t| t == Path::new(target));
    if std::fs::symlink_metadata(&path).is_ok() {
        return if same(&path) {
            Ok(false)
        } else {
            Err(refuse(
                "something else is there; left alone (nodeprep links only where nothing is)".into(),
            ))
        };
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| WriteError {
            op: "creating directory",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    match std::os::unix::fs::symlink(target, &path) {
        Ok(()) => Ok(true),
        // udev (or another boot) made it meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && same(&path) => Ok(false),
        Err(source) => Err(WriteError { op: "linking", path, source }),
    }
}

/// Writes a new file of this machine (not a host path: a file the operator named, such as a
/// support bundle), mode 0600: whole or not at all, and never over an existing file.
pub fn write_new_local(path: &Path, content: &[u8]) -> Result<(), WriteError> {
    let explain =
        |op: &'static str, p: &Path, source| WriteError { op, path: p.to_path_buf(), source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(explain(
            "writing",
            path,
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".nodeprep-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| explain("creating a temporary file in", dir, e))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.as_file_mut().write_all(content).map_err(|e| explain("writing", &tmp_path, e))?;
    tmp.as_file().sync_all().map_err(|e| explain("syncing", &tmp_path, e))?;
    // tempfile creates it 0600. No clobbering: a file that appeared meanwhile is kept.
    tmp.persist_noclobber(path).map_err(|e| explain("renaming onto", path, e.error))?;
    Ok(())
}

/// A storage effect that failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    #[error("creating directory {path}: {source}")]
    MakeDir { path: String, source: std::io::Error },
    #[error("unknown mount option {0}")]
    MountOption(String),
    #[error(
        "mount {device} on {target} ({fstype}): {source}; `dmesg | tail` shows the kernel's reason \
         (is the {fstype} module available?)"
    )]
    Mount { device: String, target: String, fstype: String, source: std::io::Error },
    #[error("{path} failed its test after mounting and was unmounted: {why}")]
    Verify { path: String, why: String },
    #[error("bind-mount {from} on {target}: {source}")]
    Bind { from: String, target: String, source: std::io::Error },
    #[error("{op} {path}: {source}")]
    Copy { op: &'static str, path: String, source: std::io::Error },
    #[error(transparent)]
    Command(#[from] crate::host::cmd::CmdError),
}

fn not_live(host: &Host, what: &str) -> Option<Outcome> {
    (!host.is_live()).then(|| {
        Outcome::Skipped(format!(
            "{what} not done: --root is {}, not / (mounts only happen on the live host)",
            host.root().display()
        ))
    })
}

fn mkdirs(path: &str) -> Result<(), EffectError> {
    std::fs::create_dir_all(path)
        .map_err(|source| EffectError::MakeDir { path: path.into(), source })
}

fn mount_flags(options: &[String]) -> Result<MountFlags, EffectError> {
    let mut f = MountFlags::empty();
    for o in options {
        f |= match o.as_str() {
            "nosuid" => MountFlags::NOSUID,
            "nodev" => MountFlags::NODEV,
            "noexec" => MountFlags::NOEXEC,
            "noatime" => MountFlags::NOATIME,
            "ro" => MountFlags::RDONLY,
            other => return Err(EffectError::MountOption(other.into())),
        };
    }
    Ok(f)
}

/// Applies one storage action (a directory, a mount, its test, a bind source, a bind) on the live
/// host; under another root it is skipped.
pub fn storage(host: &Host, a: &Action) -> Outcome {
    let what = match a {
        Action::MakeDir { path, .. } => format!("mkdir {path}"),
        Action::Mount { source, target, .. } => format!("mount {source} on {target}"),
        Action::VerifyMount { path, .. } => format!("verify {path}"),
        Action::PrepareBindSource { target, source, .. } => format!("copy {target} to {source}"),
        Action::Bind { source, target } => format!("bind {source} on {target}"),
        other => return Outcome::Failed(format!("not a storage action: {other:?}")),
    };
    if let Some(skipped) = not_live(host, &what) {
        return skipped;
    }
    let done = match a {
        Action::MakeDir { path, .. } if Path::new(path).is_dir() => {
            return Outcome::Skipped(format!("{path} exists"))
        }
        Action::MakeDir { path, .. } => mkdirs(path).map(|_| format!("created {path}")),
        Action::Mount { source, target, fstype, options, .. } => {
            mount(source, target, fstype, options)
                .map(|_| format!("mounted {source} on {target} ({fstype}, {})", options.join(",")))
        }
        Action::VerifyMount { path, fstype } => verify(path, fstype)
            .map_err(|why| {
                // Unmount a filesystem we cannot use, so nothing gets written into a bad mount.
                let _ = rustix::mount::unmount(path.as_str(), UnmountFlags::DETACH);
                EffectError::Verify { path: path.clone(), why }
            })
            .map(|_| format!("verified {path}: {fstype}, writable")),
        Action::PrepareBindSource { target, source, staging } => {
            prepare_bind_source(host, target, source, staging)
        }
        Action::Bind { source, target } => bind(source, target),
        _ => unreachable!("matched above"),
    };
    done.map_or_else(|e| Outcome::Failed(e.to_string()), Outcome::Done)
}

fn mount(device: &str, target: &str, fstype: &str, options: &[String]) -> Result<(), EffectError> {
    let flags = mount_flags(options)?;
    rustix::mount::mount(device, target, fstype, flags, None).map_err(|e| EffectError::Mount {
        device: device.into(),
        target: target.into(),
        fstype: fstype.into(),
        source: e.into(),
    })
}

fn bind(from: &str, target: &str) -> Result<String, EffectError> {
    mkdirs(target)?;
    rustix::mount::mount_bind(from, target).map_err(|e| EffectError::Bind {
        from: from.into(),
        target: target.into(),
        source: e.into(),
    })?;
    Ok(format!("bind-mounted {from} on {target}"))
}

/// statfs's `f_type` of xfs.
const XFS_SUPER_MAGIC: i64 = 0x5846_5342;

/// A fresh mount is the filesystem we made and takes a write, or it is not used.
fn verify(path: &str, fstype: &str) -> Result<(), String> {
    let st = rustix::fs::statfs(path).map_err(|e| format!("statfs: {e}"))?;
    if fstype == "xfs" && st.f_type as i64 != XFS_SUPER_MAGIC {
        return Err(format!("it is not xfs (filesystem magic {:#x})", st.f_type));
    }
    let probe = Path::new(path).join(".nodeprep-write-test");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(b"nodeprep\n")?;
        f.sync_all()?;
        std::fs::remove_file(&probe)
    };
    write().map_err(|e| format!("writing {}: {e}", probe.display()))
}

/// Gives a bind target its directory on the instance store: one from an earlier boot is kept as
/// is; else the target's content is copied (`cp -a`) into a staging directory that is renamed into
/// place only when the copy is complete.
fn prepare_bind_source(
    host: &Host,
    target: &str,
    source: &str,
    staging: &str,
) -> Result<String, EffectError> {
    let io = |op: &'static str, path: &str| {
        let path = path.to_string();
        move |source| EffectError::Copy { op, path, source }
    };
    if Path::new(source).is_dir() {
        return Ok(format!("kept {source} (data from an earlier boot; the root volume's {target} stays hidden under the bind)"));
    }
    if Path::new(staging).exists() {
        // A copy that did not finish (crash, kill): start it again.
        std::fs::remove_dir_all(staging).map_err(io("removing unfinished copy", staging))?;
    }
    let parent = |p: &str| {
        Path::new(p)
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into())
    };
    mkdirs(&parent(staging))?;
    let what = if Path::new(target).is_dir() {
        programs::cp_archive(host, target, staging)?;
        format!("copied {target} to {source}")
    } else {
        mkdirs(target)?;
        std::fs::create_dir(staging).map_err(io("creating", staging))?;
        let _ = std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o755));
        format!("created {source} ({target} did not exist)")
    };
    mkdirs(&parent(source))?;
    std::fs::rename(staging, source).map_err(io("renaming onto", source))?;
    // Tidy the staging tree's now-empty parents (remove_dir only removes empty directories).
    let mut dir = Path::new(staging).parent();
    while let Some(d) = dir.filter(|d| d.to_string_lossy().contains("/.nodeprep-staging")) {
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    if let Ok(d) = std::fs::File::open(parent(source)) {
        let _ = d.sync_all();
    }
    Ok(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_keeps_mode_and_skips_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        assert!(write_atomic(
            &host,
            Path::new("/etc/a/b.conf"),
            "one\n",
            0o644,
            Durability::Durable
        )
        .unwrap());
        let p = host.path("/etc/a/b.conf");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let before = std::fs::metadata(&p).unwrap().modified().unwrap();
        assert!(!write_atomic(
            &host,
            Path::new("/etc/a/b.conf"),
            "one\n",
            0o644,
            Durability::Durable
        )
        .unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), before);
        assert!(write_atomic(
            &host,
            Path::new("/etc/a/b.conf"),
            "two\n",
            0o644,
            Durability::Volatile
        )
        .unwrap());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "mode kept");
        assert_eq!(
            std::fs::read_dir(host.path("/etc/a")).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    /// A link planted at the file (or on the way out of a --root tree) is refused; the file it
    /// points at keeps its content and mode.
    #[test]
    fn a_link_is_made_only_where_nothing_is_and_never_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        let link = Path::new("/dev/char/195:0");
        assert!(symlink(&host, link, "../nvidia0").unwrap(), "made, with its directory");
        assert_eq!(
            std::fs::read_link(dir.path().join("dev/char/195:0")).unwrap(),
            Path::new("../nvidia0")
        );
        assert!(!symlink(&host, link, "../nvidia0").unwrap(), "already there: nothing to do");
        let e = symlink(&host, link, "../nvidia1").unwrap_err();
        assert!(e.to_string().contains("something else is there; left alone"), "{e}");
        // dev/char leading out of the tree: refused, nothing made outside.
        let outside = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("dev")).unwrap();
        std::os::unix::fs::symlink(outside.path(), other.path().join("dev/char")).unwrap();
        let e = symlink(&Host::new(other.path()), link, "../nvidia0").unwrap_err();
        assert!(e.to_string().contains("outside --root"), "{e}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn atomic_write_never_goes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("shadow");
        std::fs::write(&secret, "root:x\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let host = Host::new(dir.path());
        std::fs::create_dir_all(host.path("/etc/containerd")).unwrap();
        std::os::unix::fs::symlink(&secret, host.path("/etc/containerd/base-runtime-spec.json"))
            .unwrap();
        let err = write_atomic(
            &host,
            Path::new("/etc/containerd/base-runtime-spec.json"),
            "{}",
            0o644,
            Durability::Durable,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is a symbolic link (to "), "{err}");
        assert!(err.contains("base-runtime-spec.json"), "{err}");
        std::os::unix::fs::symlink(outside.path(), host.path("/run")).unwrap();
        let err = write_atomic(
            &host,
            Path::new("/run/nodeprep/status.json"),
            "{}",
            0o644,
            Durability::Volatile,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("outside --root"), "{err}");
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root:x\n");
        assert_eq!(std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            1,
            "nothing written outside"
        );
    }

    /// boot and serve write the status file at once: every read sees one whole file, never a torn
    /// or mixed one, and no temporary file is left behind.
    #[test]
    fn writers_at_once_never_leave_a_torn_or_mixed_file() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        let file = Path::new("/run/nodeprep/status.json");
        // Large enough that a write takes several syscalls; each writer's content is uniform.
        let contents: Vec<String> = ["a", "b", "c"].iter().map(|c| c.repeat(256 * 1024)).collect();
        write_atomic(&host, file, &contents[0], 0o644, Durability::Volatile).unwrap();
        let writing = AtomicUsize::new(contents.len());
        let reads = std::thread::scope(|s| {
            for c in &contents {
                let (host, writing) = (&host, &writing);
                s.spawn(move || {
                    for _ in 0..150 {
                        write_atomic(host, file, c, 0o644, Durability::Volatile).unwrap();
                    }
                    writing.fetch_sub(1, Ordering::SeqCst);
                });
            }
            let mut reads = 0;
            while writing.load(Ordering::SeqCst) > 0 {
                let got = std::fs::read_to_string(host.path(file)).unwrap();
                assert!(contents.contains(&got), "a torn or mixed file of {} bytes", got.len());
                reads += 1;
            }
            reads
        });
        assert!(reads > 0);
        let left: Vec<_> = std::fs::read_dir(host.path("/run/nodeprep"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["status.json"], "temporary files left: {left:?}");
    }
}
