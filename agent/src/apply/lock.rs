//! One `boot` at a time: an exclusive `flock` on `/run/nodeprep/boot.lock` (under `--root`), held
//! until the process exits. A second boot waits for it, saying which process holds it (found in
//! `/proc/locks`, so a holder that never wrote its pid is named too), and gives up at a deadline.
//! Two boots at once would otherwise copy the same bind target into the same staging directory,
//! each deleting the other's copy.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};

use crate::host::Host;

/// The lock file, a host path.
pub const BOOT_LOCK: &str = "/run/nodeprep/boot.lock";

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct Held {
    _file: File,
    pub path: PathBuf,
    /// How long this boot waited for another.
    pub waited: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another nodeprep boot{} has held {} for {:.0} s (waited up to --lock-timeout): let it finish \
         (`journalctl -u nodeprep-boot`), or stop it, then run boot again",
        holder.map_or(String::new(), |p| format!(" (pid {p})")),
        path.display(),
        waited.as_secs_f64()
    )]
    Timeout { path: PathBuf, holder: Option<u32>, waited: Duration },
    #[error("{op} {}: {source} — nodeprep boot must run as root with /run writable", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Takes the boot lock, waiting up to `timeout` for another boot to release it; `waiting` is
/// called once, with the holder's pid when known, when this boot has to wait.
pub fn acquire(
    host: &Host,
    timeout: Duration,
    mut waiting: impl FnMut(Option<u32>, &Path),
) -> Result<Held, LockError> {
    let path = host.path(BOOT_LOCK);
    let io = |op, source| LockError::Io { op, path: path.clone(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| io("opening", e))?;
    let start = Instant::now();
    let mut told = false;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = holder_of(&file);
                if start.elapsed() >= timeout {
                    return Err(LockError::Timeout { path, holder, waited: start.elapsed() });
                }
                if !told {
                    tracing::warn!(holder = ?holder, lock = %path.display(), "waiting for another nodeprep boot");
                    waiting(holder, &path);
                    told = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io("locking", e.into())),
        }
    }
    // Nothing is written into it: the holder is the kernel's to say (/proc/locks), and a rerun
    // changes no file.
    Ok(Held { _file: file, path, waited: start.elapsed() })
}

/// The pid holding a flock on the file, from this machine's `/proc/locks` (lines like
/// `1: FLOCK  ADVISORY  WRITE 4242 00:1a:12345 0 EOF`, device as hex major:minor).
fn holder_of(file: &File) -> Option<u32> {
    let m = file.metadata().ok()?;
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    parse_holder(&text, libc::major(m.dev()), libc::minor(m.dev()), m.ino())
}

fn parse_holder(locks: &str, major: u32, minor: u32, ino: u64) -> Option<u32> {
    locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // "->" marks a waiter, not the holder.
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let id = f.get(5)?;
        let mut parts = id.split(':');
        let (ma, mi, i) = (parts.next()?, parts.next()?, parts.next()?);
        (u32::from_str_radix(ma, 16).ok()? == major
            && u32::from_str_radix(mi, 16).ok()? == minor
            && i.parse::<u64>().ok()? == ino)
            .then(|| f.get(4)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_names_the_holder_of_this_file_only() {
        let locks = "1: POSIX  ADVISORY  WRITE 10 00:1a:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 fd:01:12345 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 4343 fd:01:12345 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 99 fd:01:54321 0 EOF\n";
        assert_eq!(parse_holder(locks, 0xfd, 1, 12345), Some(4242));
        assert_eq!(parse_holder(locks, 0xfd, 1, 54321), Some(99));
        assert_eq!(parse_holder(locks, 0xfd, 2, 12345), None);
        assert_eq!(parse_holder(locks, 0, 0x1a, 77), None, "a POSIX lock is not ours");
    }

    #[test]
    fn a_second_taker_waits_names_the_holder_and_gives_up_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        let first =
            acquire(&host, Duration::from_secs(1), |_, _| panic!("nobody holds it")).unwrap();
        let mut told = None;
        let err = std::thread::scope(|s| {
            s.spawn(|| acquire(&host, Duration::from_millis(300), |h, _| told = Some(h)))
                .join()
                .unwrap()
        })
        .unwrap_err();
        // flock locks belong to the open file description: this process holds it.
        assert_eq!(told, Some(Some(std::process::id())));
        let msg = err.to_string();
        assert!(msg.contains(&format!("(pid {})", std::process::id())), "{msg}");
        assert!(msg.contains("run/nodeprep/boot.lock"), "{msg}");
        drop(first);
        let again = acquire(&host, Duration::from_secs(1), |_, _| panic!("released")).unwrap();
        assert_eq!(std::fs::read_to_string(&again.path).unwrap(), "", "nothing written into it");
    }
}
