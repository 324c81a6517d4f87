//! Every external command nodeprep runs goes through [`run`]: one place that refuses to run host
//! commands under a root other than `/`, puts a deadline on each, and logs what ran, how long it took
//! and how it ended.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Host;

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

/// Runs `program args...` on the live host with a deadline; returns its stdout.
pub fn run(
    host: &Host,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, CmdError> {
    let cmd = std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
    if !host.is_live() {
        return Err(CmdError::NotLive { cmd, root: host.root().display().to_string() });
    }
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CmdError::Spawn { cmd: cmd.clone(), source })?;
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
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if status.success() {
        tracing::info!(command = %cmd, elapsed_ms, "command ran");
        Ok(stdout)
    } else {
        tracing::warn!(command = %cmd, elapsed_ms, %status, stderr = stderr.trim(), "command failed");
        Err(CmdError::Failed { cmd, status: status.to_string(), stderr: stderr.trim().to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_never_run_under_a_fixture_root() {
        let e = run(&Host::new("/tmp/x"), "true", &[], Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`true` not run: --root is /tmp/x, not / (host commands only run on the live host)"
        );
    }

    #[test]
    fn output_failure_and_timeout() {
        let live = Host::new("/");
        assert_eq!(run(&live, "echo", &["hi"], Duration::from_secs(5)).unwrap(), "hi\n");
        let e =
            run(&live, "sh", &["-c", "echo boom >&2; exit 3"], Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.to_string(), "`sh -c echo boom >&2; exit 3` failed (exit status: 3): boom");
        let t0 = Instant::now();
        let e = run(&live, "sleep", &["10"], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, CmdError::Timeout { .. }));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(matches!(
            run(&live, "/nonexistent/prog", &[], Duration::from_secs(1)),
            Err(CmdError::Spawn { .. })
        ));
    }
}
