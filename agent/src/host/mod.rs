//! The one seam through which nodeprep looks at the host.
//!
//! Every read of sysfs, procfs, `/dev`, `/etc`, `/run` and `/var/lib` goes through [`Host`], which
//! prefixes the path with `--root`. Tests point the root at a fixture tree; a DaemonSet points it at
//! the host mounted at `/host`. Fixture trees use regular files and directories where a real host has
//! device nodes and symlinks, so callers read through paths and never assume a file type.
//!
//! On top of the plain reads sit typed readers, one per kind of host fact: [`pci`] functions,
//! [`rdma`] devices (EFA), [`block`] devices and md arrays, the kernel log ([`kmsg`]), processes
//! and `/proc` formats ([`proc`], parsed by procfs-core), [`mountinfo`], [`systemd`] unit files
//! and [`containerd`]'s config. Commands go through [`cmd::Commands`], which tests can fake.
//! Nothing here knows the config, the report or a check.
//!
//! Errors always carry the full path that was read and the cause, typed ([`HostError`]).

pub mod block;
pub mod cmd;
pub mod containerd;
pub mod cri;
pub mod fabric;
pub mod imds;
pub mod kmsg;
pub mod mountinfo;
pub mod pci;
pub mod proc;
pub mod rdma;
pub mod systemd;

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cmd::{CmdError, Commands, Live};

/// What kind of failure a host read was: remedies differ (run as root; the device vanished; the
/// file is not what its format says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Nothing there (ENOENT, or a path through something that is not a directory).
    Absent,
    /// EACCES / EPERM: only a more privileged process may read it.
    Denied,
    /// Read, but not in the format it must have.
    Malformed,
    /// Any other failure (EIO, a timeout, ...).
    Other,
}

/// An error reading something on the host: names the path (as seen by this process, i.e. with the
/// root prefix), what failed and why. It stays typed in snapshots until a check's verdict turns it
/// into words: [`HostError::kind`] picks the remedy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} {}: {detail}", path.display())]
pub struct HostError {
    pub op: &'static str,
    pub path: PathBuf,
    pub kind: ErrorKind,
    /// The cause in words: the operating system's (`Permission denied (os error 13)`), or what is
    /// wrong with the content.
    pub detail: String,
}

impl HostError {
    pub fn io(op: &'static str, path: PathBuf, e: &io::Error) -> HostError {
        let kind = match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => ErrorKind::Absent,
            io::ErrorKind::PermissionDenied => ErrorKind::Denied,
            _ => ErrorKind::Other,
        };
        HostError { op, path, kind, detail: e.to_string() }
    }

    /// Content that is not what its format says: `why` says what is wrong.
    pub fn malformed(path: PathBuf, why: impl Into<String>) -> HostError {
        HostError { op: "parsing", path, kind: ErrorKind::Malformed, detail: why.into() }
    }

    /// True when the file or directory does not exist (as opposed to existing but unreadable).
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::Absent
    }

    /// True when the error is a permission problem: the remedy is to run as root.
    pub fn is_permission(&self) -> bool {
        self.kind == ErrorKind::Denied
    }
}

pub type HostResult<T> = Result<T, HostError>;

/// Text that is not in the format it must have: what is wrong with it, in words. Parsers of host
/// formats return it; the seam makes it an [`ErrorKind::Malformed`] [`HostError`] naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

/// What [`Host::metadata`] tells about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub modified: Option<SystemTime>,
    /// `(major, minor)` of the device the file is on.
    pub dev: (u32, u32),
    pub is_dir: bool,
}

/// Size of a filesystem, from statvfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// Where a path with a symbolic link on the way leads ([`Host::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Another path under the root (as a host path).
    Inside(String),
    /// A path of this machine outside the root.
    Outside(PathBuf),
}

impl std::fmt::Display for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolved::Inside(p) => write!(f, "{p}"),
            Resolved::Outside(p) => write!(f, "{} (outside the root)", p.display()),
        }
    }
}

/// The most bytes one read of a whole file takes by default (`checks.max_read_bytes`): no host
/// file nodeprep reads is near it, and a planted one (a 64 GB sparse file at `dev/kmsg`) is refused
/// instead of sized into memory.
pub const DEFAULT_MAX_READ: u64 = 16 << 20;

/// The host reads in progress, each with its path and start, for a watchdog ([`Host::watched`]):
/// `boot` names a read that has not returned by its deadline instead of hanging until systemd's.
#[derive(Debug, Default)]
pub struct Inflight {
    reads: std::sync::Mutex<Vec<(u64, PathBuf, std::time::Instant)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Inflight {
    fn enter(&self, path: &Path) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut r = self.reads.lock().unwrap_or_else(|e| e.into_inner());
        r.push((id, path.to_path_buf(), std::time::Instant::now()));
        id
    }

    fn leave(&self, id: u64) {
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).retain(|(i, _, _)| *i != id);
    }

    /// Of the reads started at `since` or later, the one running longest, and for how long.
    pub fn oldest_since(&self, since: std::time::Instant) -> Option<(PathBuf, Duration)> {
        let r = self.reads.lock().unwrap_or_else(|e| e.into_inner());
        r.iter()
            .filter(|(_, _, t)| *t >= since)
            .min_by_key(|(_, _, t)| *t)
            .map(|(_, p, t)| (p.clone(), t.elapsed()))
    }
}

/// Registered for the length of one read.
struct Reading<'a>(Option<(&'a Inflight, u64)>);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if let Some((w, id)) = self.0 {
            w.leave(id);
        }
    }
}

/// Opens a file to read without ever waiting in open(2) or read(2) on a FIFO (`O_NONBLOCK`, which
/// regular files, sysfs, procfs and block devices ignore).
fn open_nonblocking(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// A FIFO or socket where a file must be: reading it could wait forever (or read someone else's
/// stream), so it is refused, naming it.
fn not_a_file(file: &std::fs::File, path: &Path) -> Option<HostError> {
    use std::os::unix::fs::FileTypeExt;
    let t = file.metadata().ok()?.file_type();
    let what = if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else {
        return None;
    };
    Some(HostError::malformed(
        path.to_path_buf(),
        format!("it is {what}, not a file: nodeprep does not read it (a read could wait forever); remove it"),
    ))
}

/// Reads to the end, at most `max` bytes: a longer file is an error naming the limit.
fn read_bounded(
    f: &mut std::fs::File,
    path: &Path,
    mut buf: Vec<u8>,
    max: u64,
) -> HostResult<Vec<u8>> {
    use std::io::Read;
    let have = buf.len() as u64;
    f.take((max + 1).saturating_sub(have))
        .read_to_end(&mut buf)
        .map_err(|e| HostError::io("reading", path.to_path_buf(), &e))?;
    if buf.len() as u64 > max {
        return Err(HostError {
            op: "reading",
            path: path.to_path_buf(),
            kind: ErrorKind::Malformed,
            detail: format!(
                "larger than {max} bytes (checks.max_read_bytes): not read; no file nodeprep reads is that large"
            ),
        });
    }
    Ok(buf)
}

/// Root-prefixed, read-only view of a host, and the one way to run its commands.
#[derive(Clone)]
pub struct Host {
    root: PathBuf,
    commands: Arc<dyn Commands>,
    max_read: u64,
    inflight: Option<Arc<Inflight>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("root", &self.root).finish_non_exhaustive()
    }
}

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Host::with_commands(root, Arc::new(Live))
    }

    /// A host whose commands go to `commands` (tests record and answer them).
    pub fn with_commands(root: impl Into<PathBuf>, commands: Arc<dyn Commands>) -> Self {
        Host { root: root.into(), commands, max_read: DEFAULT_MAX_READ, inflight: None }
    }

    /// The same host, reading whole files of at most `max` bytes.
    pub fn with_max_read(mut self, max: u64) -> Self {
        self.max_read = max;
        self
    }

    /// The same host, each read registered in `inflight` while it runs (for a watchdog).
    pub fn watched(mut self, inflight: Arc<Inflight>) -> Self {
        self.inflight = Some(inflight);
        self
    }

    fn reading(&self, path: &Path) -> Reading<'_> {
        Reading(self.inflight.as_deref().map(|w| (w, w.enter(path))))
    }

    /// The root every host path is resolved under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when the root is `/`: only then may nodeprep run host commands (systemctl, mdadm,
    /// mkfs, mount). Under any other root such actions are reported as skipped.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// True when the root is a directory (`--root` must be one).
    pub fn root_is_dir(&self) -> bool {
        self.root.is_dir()
    }

    /// Resolves a host path (absolute like `/sys/class/infiniband`, or relative to the root) to the
    /// path this process must open. Only the seam and `apply`'s effects open paths.
    pub(crate) fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let p = host_path.as_ref();
        let rel = p.strip_prefix("/").unwrap_or(p);
        if rel.as_os_str().is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// A host path as this process sees it, for messages.
    pub fn display(&self, host_path: impl AsRef<Path>) -> String {
        self.path(host_path).display().to_string()
    }

    /// The path to open for a host path where something exists there (a library to load).
    pub fn locate(&self, host_path: impl AsRef<Path>) -> Option<PathBuf> {
        Some(self.path(host_path)).filter(|p| p.exists())
    }

    /// A host path whose content is not in its format: `why` says what is wrong.
    pub fn malformed(&self, host_path: impl AsRef<Path>, why: impl Into<String>) -> HostError {
        HostError::malformed(self.path(host_path), why)
    }

    /// Runs `program args...` on the host with a deadline; its stdout. Under a root other than
    /// `/` the live runner refuses ([`CmdError::NotLive`]).
    pub fn run(&self, program: &str, args: &[&str], timeout: Duration) -> Result<String, CmdError> {
        self.commands.run(&self.root, program, args, timeout)
    }

    /// Reads a whole file (at most the host's maximum; never from a FIFO or socket).
    pub fn read_bytes(&self, host_path: impl AsRef<Path>) -> HostResult<Vec<u8>> {
        let path = self.path(host_path);
        let _r = self.reading(&path);
        let mut f =
            open_nonblocking(&path).map_err(|e| HostError::io("reading", path.clone(), &e))?;
        if let Some(e) = not_a_file(&f, &path) {
            return Err(e);
        }
        read_bounded(&mut f, &path, Vec::new(), self.max_read)
    }

    /// When the host path was last modified, the device it is on, whether it is a directory.
    pub fn metadata(&self, host_path: impl AsRef<Path>) -> HostResult<Meta> {
        let path = self.path(host_path);
        let _r = self.reading(&path);
        let m = std::fs::metadata(&path).map_err(|e| HostError::io("inspecting", path, &e))?;
        let dev = m.dev();
        Ok(Meta {
            modified: m.modified().ok(),
            dev: (libc::major(dev), libc::minor(dev)),
            is_dir: m.is_dir(),
        })
    }

    /// The name the host path has once its links are followed (`/dev/disk/by-id/nvme-...` →
    /// `nvme1n1`); `None` when it does not resolve.
    pub fn canonical_name(&self, host_path: impl AsRef<Path>) -> Option<String> {
        let p = std::fs::canonicalize(self.path(host_path)).ok()?;
        p.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// Where a host path really leads once every symbolic link in it is followed (the part that
    /// does not exist yet is kept as spelled), when that differs from the path itself: `Inside`
    /// another host path, or `Outside` the root altogether (a link in a `--root` tree that points
    /// at this machine's own files). None when no link is on the way.
    pub fn resolve(&self, host_path: impl AsRef<Path>) -> Option<Resolved> {
        let wanted = self.path(&host_path);
        let root = std::fs::canonicalize(&self.root).ok()?;
        // The deepest ancestor that exists, resolved, then the rest as spelled.
        let mut existing = wanted.clone();
        let mut rest = Vec::new();
        let mut hops = 0;
        let real = loop {
            match std::fs::canonicalize(&existing) {
                Ok(r) => break r,
                // A link to nothing (yet): follow it by hand.
                Err(_) if existing.is_symlink() && hops < 40 => {
                    hops += 1;
                    let target = std::fs::read_link(&existing).ok()?;
                    existing = existing.parent()?.join(target);
                }
                Err(_) => {
                    rest.push(existing.file_name()?.to_owned());
                    existing = existing.parent()?.to_path_buf();
                }
            }
        };
        let real = rest.iter().rev().fold(real, |p, n| p.join(n));
        let spelled = root.join(wanted.strip_prefix(&self.root).ok()?);
        if real == spelled {
            return None;
        }
        Some(match real.strip_prefix(&root) {
            Ok(inside) => Resolved::Inside(format!("/{}", inside.display())),
            Err(_) => Resolved::Outside(real),
        })
    }

    /// Size and free space of the filesystem holding the host path.
    pub fn statvfs(&self, host_path: impl AsRef<Path>) -> HostResult<Space> {
        let path = self.path(host_path);
        let _r = self.reading(&path);
        let s = rustix::fs::statvfs(&path)
            .map_err(|e| HostError::io("statvfs", path, &io::Error::from(e)))?;
        Ok(Space {
            total_bytes: s.f_blocks.saturating_mul(s.f_frsize),
            available_bytes: s.f_bavail.saturating_mul(s.f_frsize),
        })
    }

    /// Reads a whole file as UTF-8 (lossy: sysfs attributes can hold anything).
    pub fn read_string(&self, host_path: impl AsRef<Path>) -> HostResult<String> {
        self.read_bytes(host_path).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Reads a sysfs-style attribute: the file's content with surrounding whitespace trimmed.
    ///
    /// Attributes are small and sysfs returns one whole in the first read, so a short first read is
    /// the end of the file (as it is for a regular file in a fixture tree): open, read, close — no
    /// `stat` for a size hint and no second read for end-of-file. Checks read hundreds of these.
    pub fn read_attr(&self, host_path: impl AsRef<Path>) -> HostResult<String> {
        use std::io::Read;
        let path = self.path(host_path);
        let _r = self.reading(&path);
        let err = |e: io::Error| HostError::io("reading", path.clone(), &e);
        let mut f = open_nonblocking(&path).map_err(err)?;
        // A page on the stack holds any attribute; only a longer file moves to the heap.
        let mut page = [0u8; 4096];
        let first = loop {
            match f.read(&mut page) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(not_a_file(&f, &path).unwrap_or_else(|| err(e))),
            }
        };
        // Nothing read: an empty attribute, or a FIFO (only then is the type looked at).
        if first == 0 {
            if let Some(e) = not_a_file(&f, &path) {
                return Err(e);
            }
        }
        if first < page.len() {
            return Ok(String::from_utf8_lossy(&page[..first]).trim().to_string());
        }
        let buf = read_bounded(&mut f, &path, page.to_vec(), self.max_read)?;
        Ok(String::from_utf8_lossy(&buf).trim().to_string())
    }

    /// Up to `len` bytes at byte `offset` of a file or block device (`/dev/nvme1n1`); fewer at its
    /// end (a fixture file stands for a much larger disk: what it lacks reads as nothing).
    pub fn read_range(
        &self,
        host_path: impl AsRef<Path>,
        offset: u64,
        len: usize,
    ) -> HostResult<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let path = self.path(host_path);
        let _r = self.reading(&path);
        let err = |e: io::Error| HostError::io("reading", path.clone(), &e);
        let f = open_nonblocking(&path).map_err(err)?;
        if let Some(e) = not_a_file(&f, &path) {
            return Err(e);
        }
        let len = len.min(self.max_read as usize);
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(err(e)),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Like [`Host::read_attr`], but a missing file is `Ok(None)`; other errors are still errors.
    pub fn read_attr_opt(&self, host_path: impl AsRef<Path>) -> HostResult<Option<String>> {
        match self.read_attr(host_path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// True when something exists at the host path (file, directory, device node or symlink
    /// target).
    pub fn exists(&self, host_path: impl AsRef<Path>) -> bool {
        self.path(host_path).exists()
    }

    /// Names of the entries of a directory, sorted. A missing directory is an error; use
    /// [`Host::list_dir_opt`] where absence is normal.
    ///
    /// Read with getdents into a buffer on the stack: no `fstat` and no 32 KiB heap buffer per
    /// directory as `opendir` takes (checks list a few dozen directories per run).
    pub fn list_dir(&self, host_path: impl AsRef<Path>) -> HostResult<Vec<String>> {
        use rustix::fs::{Mode, OFlags, RawDir};
        let path = self.path(host_path);
        let _r = self.reading(&path);
        let err =
            |e: rustix::io::Errno| HostError::io("listing", path.clone(), &io::Error::from(e));
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
        let mut entries = RawDir::new(&fd, &mut buf);
        let mut names = Vec::new();
        while let Some(entry) = entries.next() {
            let entry = entry.map_err(err)?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        names.sort_by(|a, b| natural_cmp(a, b));
        Ok(names)
    }

    /// Like [`Host::list_dir`], but a missing directory is an empty list.
    pub fn list_dir_opt(&self, host_path: impl AsRef<Path>) -> HostResult<Vec<String>> {
        match self.list_dir(host_path) {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `(major, minor)` of a character device node; `None` when the path is something else (a
    /// fixture tree's stand-in file).
    pub fn char_device(&self, host_path: impl AsRef<Path>) -> HostResult<Option<(u32, u32)>> {
        use std::os::unix::fs::FileTypeExt;
        let path = self.path(host_path);
        let _r = self.reading(&path);
        let m = std::fs::metadata(&path).map_err(|e| HostError::io("inspecting", path, &e))?;
        let rdev = m.rdev();
        Ok(m.file_type().is_char_device().then(|| (libc::major(rdev), libc::minor(rdev))))
    }

    /// Where a symbolic link points, as written; `None` when nothing is there. A path that is not
    /// a link is an error naming it.
    pub fn link_target(&self, host_path: impl AsRef<Path>) -> HostResult<Option<PathBuf>> {
        let path = self.path(host_path);
        let _r = self.reading(&path);
        match std::fs::read_link(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                Err(HostError::malformed(path, "not a symbolic link"))
            }
            Err(e) => Err(HostError::io("reading link", path, &e)),
        }
    }

    /// The last path component a sysfs symlink points to (e.g. the driver name behind
    /// `device/driver`), or, in a fixture tree where the link is a regular file, its content.
    pub fn link_name(&self, host_path: impl AsRef<Path>) -> HostResult<Option<String>> {
        let host_path = host_path.as_ref();
        let path = self.path(host_path);
        match std::fs::read_link(&path) {
            Ok(target) => Ok(target.file_name().and_then(OsStr::to_str).map(str::to_string)),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                // Not a symlink: a fixture stands in for it with a file holding the name.
                self.read_attr(host_path).map(Some)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostError::io("reading link", path, &e)),
        }
    }
}

/// Reads a file of this machine (not a host path: `--config FILE` names one): never from a FIFO,
/// at most [`DEFAULT_MAX_READ`] bytes.
pub fn read_local(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_nonblocking(path)?;
    if let Some(e) = not_a_file(&f, path) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, e.detail));
    }
    read_bounded(&mut f, path, Vec::new(), DEFAULT_MAX_READ)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.detail))
}

/// The files of this machine under `dir` (recursively, sorted) whose extension is one of `exts`
/// (`nodeprep lint DIR`); None when `dir` is not a directory.
pub fn local_files_under(dir: &Path, exts: &[&str]) -> Option<io::Result<Vec<PathBuf>>> {
    fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) -> io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(&p, exts, out)?;
            } else if p.extension().and_then(OsStr::to_str).is_some_and(|x| exts.contains(&x)) {
                out.push(p);
            }
        }
        Ok(())
    }
    if !dir.is_dir() {
        return None;
    }
    let mut out = Vec::new();
    Some(walk(dir, exts, &mut out).map(|_| {
        out.sort();
        out
    }))
}

/// True when something exists at a path of this machine (not a host path).
pub fn local_exists(path: &Path) -> bool {
    path.exists()
}

/// Orders names the way people expect device names: `uverbs2` before `uverbs10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(s: &str) -> (&str, Option<u64>) {
        let idx = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (head, tail) = s.split_at(idx);
        (head, tail.parse().ok())
    }
    let (ha, na) = split(a);
    let (hb, nb) = split(b);
    ha.cmp(hb).then(na.cmp(&nb)).then(a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_prefixed_by_root() {
        let h = Host::new("/tmp/tree");
        assert_eq!(h.path("/sys/class"), PathBuf::from("/tmp/tree/sys/class"));
        assert_eq!(h.path("sys/class"), PathBuf::from("/tmp/tree/sys/class"));
        assert_eq!(h.path("/"), PathBuf::from("/tmp/tree"));
        assert!(!h.is_live());
        assert!(Host::new("/").is_live());
        assert_eq!(Host::new("/").path("/proc/1/mountinfo"), PathBuf::from("/proc/1/mountinfo"));
    }

    #[test]
    fn read_errors_name_the_full_path_and_cause() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        let err = h.read_attr("/sys/devices/virtual/dmi/id/product_name").unwrap_err();
        let msg = err.to_string();
        assert!(err.is_not_found());
        assert!(
            msg.contains(&format!(
                "{}/sys/devices/virtual/dmi/id/product_name",
                dir.path().display()
            )),
            "{msg}"
        );
        assert!(msg.contains("No such file"), "{msg}");
        assert_eq!(h.read_attr_opt("/nope").unwrap(), None);
    }

    #[test]
    fn attributes_are_trimmed_and_dirs_sorted_naturally() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        std::fs::create_dir_all(h.path("/d")).unwrap();
        for n in ["uverbs10", "uverbs2", "uverbs1"] {
            std::fs::write(h.path(format!("/d/{n}")), " x \n").unwrap();
        }
        assert_eq!(h.list_dir("/d").unwrap(), ["uverbs1", "uverbs2", "uverbs10"]);
        assert_eq!(h.read_attr("/d/uverbs1").unwrap(), "x");
        assert!(h.list_dir_opt("/missing").unwrap().is_empty());
    }

    #[test]
    fn attributes_of_any_length_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        for len in [0usize, 1, 4095, 4096, 4097, 10_000] {
            let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            std::fs::write(dir.path().join("attr"), format!("  {text}\n")).unwrap();
            assert_eq!(h.read_attr("attr").unwrap(), text, "{len} bytes");
        }
    }

    #[test]
    fn resolve_names_where_a_linked_path_leads_inside_or_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        std::fs::create_dir_all(h.path("/data/containerd")).unwrap();
        std::fs::create_dir_all(h.path("/var/lib")).unwrap();
        std::os::unix::fs::symlink("/data/containerd", h.path("/var/lib/containerd")).unwrap();
        std::os::unix::fs::symlink("../../data", h.path("/var/lib/data")).unwrap();
        assert_eq!(h.resolve("/data/containerd"), None);
        assert_eq!(h.resolve("/var/lib/kubelet"), None, "absent, no link on the way");
        assert_eq!(h.resolve("/var/lib/data/x/y"), Some(Resolved::Inside("/data/x/y".into())));
        // An absolute link in a tree points at this machine's own /data.
        assert_eq!(
            h.resolve("/var/lib/containerd"),
            Some(Resolved::Outside(PathBuf::from("/data/containerd")))
        );
        assert_eq!(Host::new("/").resolve("/proc/self/root"), Some(Resolved::Inside("/".into())));
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_and_a_huge_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path()).with_max_read(1 << 16);
        let fifo = h.path("/model");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // No writer: a blocking open would wait forever; with a writer that never writes a
        // blocking read would.
        for e in [h.read_attr("/model").unwrap_err(), h.read_bytes("/model").unwrap_err()] {
            assert!(e.to_string().contains("it is a FIFO (named pipe), not a file"), "{e}");
        }
        // Held open for writing (O_RDWR: a write-only open would wait for a reader).
        let _writer = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
        assert!(h.read_attr("/model").unwrap_err().to_string().contains("FIFO"));
        assert!(h.read_range("/model", 0, 4096).unwrap_err().to_string().contains("FIFO"));
        // A sparse file claiming 64 GB is refused after the limit, never sized into memory.
        let big = std::fs::File::create(h.path("/kmsg")).unwrap();
        big.set_len(64 << 30).unwrap();
        let e = h.read_bytes("/kmsg").unwrap_err();
        assert!(e.to_string().contains("larger than 65536 bytes (checks.max_read_bytes)"), "{e}");
        assert!(h.read_attr("/kmsg").is_err());
    }

    #[test]
    fn reads_in_flight_are_named_for_a_watchdog() {
        let dir = tempfile::tempdir().unwrap();
        let w = Arc::new(Inflight::default());
        let h = Host::new(dir.path()).watched(Arc::clone(&w));
        let t0 = std::time::Instant::now();
        let _r = h.reading(&h.path("/sys/block/nvme1n1/device/model"));
        std::thread::sleep(Duration::from_millis(20));
        let (p, age) = w.oldest_since(t0).unwrap();
        assert!(p.ends_with("sys/block/nvme1n1/device/model") && age >= Duration::from_millis(20));
        assert_eq!(w.oldest_since(std::time::Instant::now()), None, "started before: not counted");
        drop(_r);
        assert_eq!(w.oldest_since(t0), None, "done reads leave");
        let _ = h.read_attr("/nope");
        assert_eq!(w.oldest_since(t0), None);
    }

    #[test]
    fn link_name_reads_symlinks_and_fixture_files() {
        let dir = tempfile::tempdir().unwrap();
        let h = Host::new(dir.path());
        std::fs::create_dir_all(h.path("/a")).unwrap();
        std::os::unix::fs::symlink("../../bus/pci/drivers/efa", h.path("/a/driver")).unwrap();
        std::fs::write(h.path("/a/driver2"), "efa\n").unwrap();
        assert_eq!(h.link_name("/a/driver").unwrap().as_deref(), Some("efa"));
        assert_eq!(h.link_name("/a/driver2").unwrap().as_deref(), Some("efa"));
        assert_eq!(h.link_name("/a/none").unwrap(), None);
    }
}
