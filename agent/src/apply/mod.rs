//! Plans and their executor.
//!
//! Each capability that changes the host computes a [`Plan`] from what the host shows now (pure,
//! tested on fixture trees); [`execute`] applies it with thin [`effects`]: files are written
//! atomically (a temporary file of its own in the same directory, same mode and owner, fsync,
//! rename) and only when their content differs; mounts are mount(2); each external program has one
//! wrapper in [`programs`] and runs through [`Host::run`]. `--dry-run` prints [`Plan::render`]
//! instead: every file with its diff and every command. The executor knows no capability.

pub mod effects;
pub mod lock;
pub mod programs;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use effects::{write_atomic, write_new_local, Durability, WriteError};

use crate::host::cmd::CmdError;
use crate::host::Host;

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
    /// Make the host path `link` a symbolic link to `target` (relative to the link's directory)
    /// where nothing is.
    Symlink { link: String, target: String, why: String },
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
                Action::Symlink { link, target, why } => {
                    let _ =
                        writeln!(out, "{}: would link {link} -> {target}: {why}", self.capability);
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
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Action::Run { program, args, why, timeout_s } => {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                match host.run(program, &args, Duration::from_secs(*timeout_s)) {
                    Ok(_) => Outcome::Done(format!("ran `{program} {}` ({why})", args.join(" "))),
                    Err(e @ CmdError::NotLive { .. }) => Outcome::Skipped(e.to_string()),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Action::Notice { message } => Outcome::Notice(message.clone()),
            Action::Skip { what, why } => Outcome::Skipped(format!("{what}: {why}")),
            Action::Refuse { message } => Outcome::Failed(format!("refused: {message}")),
            Action::Symlink { link, target, .. } => {
                match effects::symlink(host, Path::new(link), target) {
                    Ok(true) => Outcome::Done(format!("linked {link} -> {target}")),
                    Ok(false) => Outcome::Skipped(format!("{link} already links to {target}")),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Action::MakeDir { .. }
            | Action::Mount { .. }
            | Action::VerifyMount { .. }
            | Action::PrepareBindSource { .. }
            | Action::Bind { .. } => effects::storage(host, a),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The executor runs each program through the host's commands, in order, and stops at the
    /// first failure: a recorder stands in for the host (any root).
    #[test]
    fn commands_run_through_the_host_and_a_failure_stops_the_plan() {
        use crate::host::cmd::Recorder;
        let dir = tempfile::tempdir().unwrap();
        let recorder = std::sync::Arc::new(Recorder::default());
        let host = Host::with_commands(dir.path(), recorder.clone());
        let plan = Plan {
            capability: "storage",
            actions: vec![
                programs::mdadm_stop("/dev/md127", "inactive"),
                programs::mkfs_xfs("/dev/md127", "nodeprep", false),
                programs::systemctl_daemon_reload("reload"),
            ],
        };
        recorder.fail("mkfs.xfs", "mkfs.xfs: /dev/md127 is busy");
        let outcomes = execute(&host, &plan);
        assert_eq!(
            recorder.calls(),
            ["mdadm --stop /dev/md127", "mkfs.xfs -K -L nodeprep /dev/md127"]
        );
        assert_eq!(outcomes.len(), 2, "stopped at the failure: {outcomes:?}");
        assert!(
            matches!(&outcomes[0], Outcome::Done(t) if t == "ran `mdadm --stop /dev/md127` (inactive)")
        );
        assert!(
            matches!(&outcomes[1], Outcome::Failed(t) if t.ends_with("failed (exit status: 1): mkfs.xfs: /dev/md127 is busy")),
            "{outcomes:?}"
        );
        // The live runner refuses under a fixture root: a skip, never a run.
        let outcomes = execute(&Host::new(dir.path()), &plan);
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Outcome::Skipped(t) if t.contains("not run: --root is"))),
            "{outcomes:?}"
        );
    }
}
