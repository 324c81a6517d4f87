//! Plans and their executor.
//!
//! Each capability computes a [`Plan`] from what the host shows now (pure, tested on fixture trees);
//! [`execute`] applies it with thin effects: files are written atomically (temporary file in the same
//! directory, same mode and owner, fsync, rename) and only when their content differs; commands go
//! through [`crate::host::cmd`]. `--dry-run` prints [`Plan::render`] instead: every file with its diff
//! and every command.

pub mod limits;
pub mod storage;

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::{cmd, Host};

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Replace a file (host path) with `content`. `old` is its current content (None: absent).
    WriteFile { path: PathBuf, content: String, old: Option<String>, mode: u32, why: String },
    /// Run a host command (skipped under a root other than /) with a deadline.
    Run { program: String, args: Vec<String>, why: String, timeout_s: u64 },
    /// Create a directory (and its parents) with mode 0755 if missing.
    MakeDir { path: String, why: String },
    /// mount(2) a filesystem.
    Mount { source: String, target: String, fstype: String, options: Vec<String>, why: String },
    /// Prove a fresh mount is the filesystem we expect and is writable before anything uses it.
    VerifyMount { path: String, fstype: String },
    /// Give a bind target its directory on the instance store: keep one from an earlier boot, else copy
    /// the target's current content (through a staging directory, renamed into place when complete).
    PrepareBindSource { target: String, source: String, staging: String },
    /// Bind-mount `source` onto `target`.
    Bind { source: String, target: String },
    /// Something a person must know or do; nodeprep does not do it itself.
    Notice { message: String },
    /// A part of the plan that is not done, and why.
    Skip { what: String, why: String },
    /// nodeprep will not do this part: doing it could destroy data or hide live state. Executing it
    /// fails (exit 1) and stops the plan.
    Refuse { message: String },
}

/// What one capability will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub capability: &'static str,
    pub actions: Vec<Action>,
}

/// How one action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done(String),
    Skipped(String),
    Notice(String),
    Failed(String),
}

impl Outcome {
    pub fn text(&self) -> (&'static str, &str) {
        match self {
            Outcome::Done(s) => ("done", s),
            Outcome::Skipped(s) => ("skip", s),
            Outcome::Notice(s) => ("note", s),
            Outcome::Failed(s) => ("FAIL", s),
        }
    }
}

impl Plan {
    /// True when executing the plan would change nothing.
    pub fn is_noop(&self) -> bool {
        self.actions.iter().all(|a| matches!(a, Action::Notice { .. } | Action::Skip { .. }))
    }

    /// True when the plan skips its whole job (disabled, nothing to do it on).
    pub fn skips(&self) -> bool {
        self.actions.iter().any(|a| matches!(a, Action::Skip { .. }))
    }

    /// True when the plan refuses part of its job.
    pub fn refuses(&self) -> bool {
        self.actions.iter().any(|a| matches!(a, Action::Refuse { .. }))
    }

    /// The dry-run view: every action, files with a unified diff.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.actions.is_empty() {
            let _ = writeln!(out, "{}: nothing to do", self.capability);
        }
        for a in &self.actions {
            match a {
                Action::WriteFile { path, content, old, mode, why } => {
                    let verb = if old.is_some() { "would update" } else { "would create" };
                    let _ = writeln!(
                        out,
                        "{}: {verb} {} (mode {mode:o}): {why}",
                        self.capability,
                        path.display()
                    );
                    let old_text = old.as_deref().unwrap_or("");
                    let diff = similar::TextDiff::from_lines(old_text, content.as_str());
                    let from =
                        if old.is_some() { path.display().to_string() } else { "/dev/null".into() };
                    let _ = write!(
                        out,
                        "{}",
                        diff.unified_diff()
                            .context_radius(3)
                            .header(&from, &path.display().to_string())
                    );
                }
                Action::Run { program, args, why, .. } => {
                    let _ = writeln!(
                        out,
                        "{}: would run `{program} {}`: {why}",
                        self.capability,
                        args.join(" ")
                    );
                }
                Action::MakeDir { path, why } => {
                    let _ = writeln!(
                        out,
                        "{}: would create directory {path} if missing: {why}",
                        self.capability
                    );
                }
                Action::Mount { source, target, fstype, options, why } => {
                    let _ = writeln!(
                        out,
                        "{}: would mount {source} on {target} ({fstype}, {}): {why}",
                        self.capability,
                        options.join(",")
                    );
                }
                Action::VerifyMount { path, fstype } => {
                    let _ = writeln!(
                        out,
                        "{}: would verify {path} is {fstype} and writable before use",
                        self.capability
                    );
                }
                Action::PrepareBindSource { target, source, .. } => {
                    let _ = writeln!(
                        out,
                        "{}: would copy {target} to {source} (kept as is if it exists: data from an earlier boot)",
                        self.capability
                    );
                }
                Action::Bind { source, target } => {
                    let _ =
                        writeln!(out, "{}: would bind-mount {source} on {target}", self.capability);
                }
                Action::Refuse { message } => {
                    let _ = writeln!(out, "{}: REFUSED: {message}", self.capability);
                }
                Action::Notice { message } => {
                    let _ = writeln!(out, "{}: note: {message}", self.capability);
                }
                Action::Skip { what, why } => {
                    let _ = writeln!(out, "{}: skip {what}: {why}", self.capability);
                }
            }
        }
        out
    }
}

/// Applies a plan. Stops at the first failed write (later steps may depend on it) and reports it.
pub fn execute(host: &Host, plan: &Plan) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for a in &plan.actions {
        let started = std::time::Instant::now();
        let outcome = match a {
            Action::WriteFile { path, content, mode, .. } => {
                match write_atomic(host, path, content, *mode, Durability::Durable) {
                    Ok(true) => Outcome::Done(format!("wrote {}", path.display())),
                    Ok(false) => Outcome::Skipped(format!("{} already up to date", path.display())),
                    Err(e) => Outcome::Failed(e),
                }
            }
            Action::Run { program, args, why, timeout_s } => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                match cmd::run(host, program, &args, Duration::from_secs(*timeout_s)) {
                    Ok(_) => Outcome::Done(format!("ran `{program} {}` ({why})", args.join(" "))),
                    Err(e @ cmd::CmdError::NotLive { .. }) => Outcome::Skipped(e.to_string()),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Action::Notice { message } => Outcome::Notice(message.clone()),
            Action::Skip { what, why } => Outcome::Skipped(format!("{what}: {why}")),
            Action::Refuse { message } => Outcome::Failed(format!("refused: {message}")),
            Action::MakeDir { .. }
            | Action::Mount { .. }
            | Action::VerifyMount { .. }
            | Action::PrepareBindSource { .. }
            | Action::Bind { .. } => storage::effect(host, a),
        };
        let (kind, text) = outcome.text();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &outcome {
            Outcome::Failed(_) => {
                tracing::error!(capability = plan.capability, outcome = kind, elapsed_ms, "{text}")
            }
            _ => tracing::info!(capability = plan.capability, outcome = kind, elapsed_ms, "{text}"),
        }
        let failed = matches!(outcome, Outcome::Failed(_));
        outcomes.push(outcome);
        if failed {
            break;
        }
    }
    outcomes
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
) -> Result<bool, String> {
    let path = host.path(host_path);
    let explain = |op: &str, p: &Path, e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                " — nodeprep boot must run as root (the nodeprep-boot.service unit does)"
            }
            std::io::ErrorKind::ReadOnlyFilesystem => {
                " — the filesystem is read-only; on Bottlerocket use its settings API instead"
            }
            _ => "",
        };
        format!("{op} {}: {e}{hint}", p.display())
    };
    let existing = std::fs::metadata(&path).ok();
    if existing.is_some() {
        if let Ok(cur) = std::fs::read(&path) {
            if cur == content.as_bytes() {
                return Ok(false);
            }
        }
    }
    let dir = path.parent().ok_or_else(|| format!("{} has no parent directory", path.display()))?;
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
    tmp.write_all(content.as_bytes()).map_err(|e| explain("writing", &tmp_path, e))?;
    std::fs::set_permissions(&tmp_path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| explain("setting mode of", &tmp_path, e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&tmp_path, Some(uid), Some(gid))
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

    #[test]
    fn dry_run_render_shows_a_diff() {
        let plan = Plan {
            capability: "limits",
            actions: vec![
                Action::WriteFile {
                    path: "/etc/x.conf".into(),
                    content: "a\nB\n".into(),
                    old: Some("a\nb\n".into()),
                    mode: 0o644,
                    why: "test".into(),
                },
                Action::Run {
                    program: "systemctl".into(),
                    args: vec!["daemon-reload".into()],
                    why: "reload".into(),
                    timeout_s: 60,
                },
            ],
        };
        let r = plan.render();
        assert!(r.contains("limits: would update /etc/x.conf (mode 644): test"), "{r}");
        assert!(
            r.contains("--- /etc/x.conf\n+++ /etc/x.conf\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n"),
            "{r}"
        );
        assert!(r.contains("limits: would run `systemctl daemon-reload`: reload"), "{r}");
        assert!(!plan.is_noop());
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
