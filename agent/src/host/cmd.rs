//! Every external command nodeprep runs goes through [`Commands`], behind [`super::Host::run`]:
//! [`Live`] refuses to run host commands under a root other than `/`, puts a deadline on each, and
//! logs what ran, how long it took and how it ended; tests put a [`Recorder`] in its place.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("`{cmd}` not run: --root is {root}, not / (host commands only run on the live host)")]
    NotLive { cmd: String, root: String },
    #[error("`{cmd}` could not start: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` did not finish within {} s and was killed", timeout.as_secs())]
    Timeout { cmd: String, timeout: Duration },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed { cmd: String, status: String, stderr: String },
}

/// Runs a host's commands.
pub trait Commands: Send + Sync {
    /// Runs `program args...` for the host at `root` with a deadline; returns its stdout.
    fn run(
        &self,
        root: &Path,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, CmdError>;
}

/// The command line as it is logged and named in errors.
fn line(program: &str, args: &[&str]) -> String {
    std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ")
}

/// Runs commands for real, on the live host only.
pub struct Live;

impl Commands for Live {
    fn run(
        &self,
        root: &Path,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, CmdError> {
        let cmd = line(program, args);
        if root != Path::new("/") {
            return Err(CmdError::NotLive { cmd, root: root.display().to_string() });
        }
        run_live(cmd, program, args, timeout)
    }
}

/// Records each command it is asked to run and answers `Ok("")`, or the error a test scripted
/// for a program: for tests of what plans run, under any root.
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<String>>,
    fail: Mutex<Vec<(String, String)>>,
}

impl Recorder {
    /// Makes every run of `program` fail with `stderr`.
    pub fn fail(&self, program: &str, stderr: &str) {
        self.fail.lock().unwrap_or_else(|e| e.into_inner()).push((program.into(), stderr.into()));
    }

    /// The command lines run so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Commands for Recorder {
    fn run(&self, _: &Path, program: &str, args: &[&str], _: Duration) -> Result<String, CmdError> {
        let cmd = line(program, args);
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(cmd.clone());
        let fail = self.fail.lock().unwrap_or_else(|e| e.into_inner());
        match fail.iter().find(|(p, _)| p == program) {
            Some((_, stderr)) => Err(CmdError::Failed {
                cmd,
                status: "exit status: 1".into(),
                stderr: stderr.clone(),
            }),
            None => Ok(String::new()),
        }
    }
}

fn run_live(
    cmd: String,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, CmdError> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CmdError::Spawn { cmd: cmd.clone(), source })?;
    // Both pipes are drained while the child runs: a child that writes more than a pipe holds
    // (64 KiB) would otherwise block on its write and never exit.
    let stdout = Drain::start(child.stdout.take());
    let stderr = Drain::start(child.stderr.take());
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::error!(command = %cmd, timeout_s = timeout.as_secs(), "command timed out");
                return Err(CmdError::Timeout { cmd, timeout });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(source) => return Err(CmdError::Spawn { cmd, source }),
        }
    };
    // A child that left a process behind holding its pipes (a daemon it started) has exited:
    // take what came within a moment and do not wait for the pipes to close.
    let grace = Duration::from_millis(500);
    let stdout = stdout.finish(grace);
    let stderr = stderr.finish(grace);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if status.success() {
        tracing::info!(command = %cmd, elapsed_ms, "command ran");
        Ok(stdout)
    } else {
        tracing::warn!(command = %cmd, elapsed_ms, %status, stderr = stderr.trim(), "command failed");
        Err(CmdError::Failed { cmd, status: status.to_string(), stderr: stderr.trim().to_string() })
    }
}

/// A child's pipe, read to its end on a thread of its own while the child runs.
struct Drain {
    text: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Drain {
    fn start(pipe: Option<impl Read + Send + 'static>) -> Drain {
        let text = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        if let Some(mut pipe) = pipe {
            let sink = Arc::clone(&text);
            let spawned = std::thread::Builder::new().name("cmd-pipe".into()).spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => sink
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                let _ = tx.send(());
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no thread to read a command's output");
            }
        }
        Drain { text, done }
    }

    /// What was read once the pipe closed, or after `grace` (a process the child left behind still
    /// holds it): never waits longer.
    fn finish(self, grace: Duration) -> String {
        let _ = self.done.recv_timeout(grace);
        let bytes = std::mem::take(&mut *self.text.lock().unwrap_or_else(|e| e.into_inner()));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        root: &str,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, CmdError> {
        Live.run(Path::new(root), program, args, timeout)
    }

    #[test]
    fn commands_never_run_under_a_fixture_root() {
        let e = run("/tmp/x", "true", &[], Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`true` not run: --root is /tmp/x, not / (host commands only run on the live host)"
        );
    }

    #[test]
    fn output_failure_and_timeout() {
        let live = "/";
        assert_eq!(run(live, "echo", &["hi"], Duration::from_secs(5)).unwrap(), "hi\n");
        let e =
            run(live, "sh", &["-c", "echo boom >&2; exit 3"], Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.to_string(), "`sh -c echo boom >&2; exit 3` failed (exit status: 3): boom");
        let t0 = Instant::now();
        let e = run(live, "sleep", &["10"], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, CmdError::Timeout { .. }));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(matches!(
            run(live, "/nonexistent/prog", &[], Duration::from_secs(1)),
            Err(CmdError::Spawn { .. })
        ));
    }

    #[test]
    fn a_child_writing_more_than_a_pipe_holds_finishes() {
        let live = "/";
        // 1 MiB on stdout, then 1 MiB on stderr and a failure: 16 pipe buffers each.
        let t0 = Instant::now();
        let out =
            run(live, "head", &["-c", "1048576", "/dev/zero"], Duration::from_secs(20)).unwrap();
        assert_eq!(out.len(), 1 << 20);
        let script = "head -c 1048576 /dev/zero | tr '\\0' x >&2; exit 4";
        match run(live, "sh", &["-c", script], Duration::from_secs(20)).unwrap_err() {
            CmdError::Failed { stderr, .. } => assert_eq!(stderr.len(), 1 << 20),
            other => panic!("{other}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    }

    #[test]
    fn a_child_leaving_a_process_behind_on_its_pipes_returns() {
        let live = "/";
        let t0 = Instant::now();
        let script = "echo started; sleep 30 &";
        let out = run(live, "sh", &["-c", script], Duration::from_secs(20)).unwrap();
        assert_eq!(out, "started\n");
        assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    }
}
