//! libfabric's `fi_pingpong`, run as a loopback through one domain: a server and a client on this
//! host, their control channel on a free TCP port of 127.0.0.1, both under one deadline and both
//! killed at it. Only on the live host (`--root /`): it runs programs.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Host;

/// Where the EFA installer puts libfabric's tools; then `PATH`.
pub const EFA_BIN: &str = "/opt/amazon/efa/bin/fi_pingpong";

/// `fi_pingpong` on this host, if installed.
pub fn find_pingpong(host: &Host) -> Option<PathBuf> {
    if let Some(p) = host.locate(EFA_BIN) {
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("fi_pingpong")).find(|p| p.is_file())
}

/// One loopback's parameters.
#[derive(Debug, Clone)]
pub struct Pingpong<'a> {
    pub bin: &'a std::path::Path,
    pub provider: &'a str,
    pub endpoint: &'a str,
    pub domain: &'a str,
    pub size: u64,
    pub iterations: u32,
    pub deadline: Duration,
}

/// What a loopback measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// MB/s as fi_pingpong prints it (10^6 bytes per second).
    pub mb_per_s: f64,
    pub usec_per_xfer: f64,
    pub elapsed: Duration,
}

impl Measured {
    pub fn gbps(&self) -> f64 {
        self.mb_per_s * 8.0 / 1000.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    #[error("{what} did not finish within {} s (killed)", deadline.as_secs_f64())]
    Deadline { what: &'static str, deadline: Duration },
    #[error("starting {bin}: {cause}")]
    Spawn { bin: String, cause: String },
    #[error("fi_pingpong failed (exit {code}): {output}")]
    Failed { code: String, output: String },
    #[error("fi_pingpong printed no result line: {output}")]
    NoResult { output: String },
}

/// The result row of fi_pingpong's table (`bytes #sent #ack total time MB/sec usec/xfer
/// Mxfers/sec`), the last one when there are several sizes.
pub fn parse_output(text: &str) -> Option<(f64, f64)> {
    let mut header = false;
    let mut last = None;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first() == Some(&"bytes") && w.contains(&"MB/sec") {
            header = true;
            continue;
        }
        if header && w.len() >= 8 {
            if let (Ok(mb), Ok(us)) = (w[5].parse::<f64>(), w[6].parse::<f64>()) {
                last = Some((mb, us));
            }
        }
    }
    last
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn output(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut s);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s.trim().chars().take(600).collect()
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for `child` until `until`; `None` when the deadline passed (the child is still running).
fn wait_until(child: &mut Child, until: Instant) -> Option<std::process::ExitStatus> {
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the loopback: the server, then the client (retried while the server is not listening yet),
/// both killed at the deadline.
pub fn loopback(p: &Pingpong) -> Result<Measured, PingError> {
    let start = Instant::now();
    let until = start + p.deadline;
    let port = free_port()
        .map_err(|e| PingError::Spawn { bin: "a TCP port".into(), cause: e.to_string() })?
        .to_string();
    let (size, iters) = (p.size.to_string(), p.iterations.to_string());
    let common = ["-p", p.provider, "-e", p.endpoint, "-d", p.domain, "-S", &size, "-I", &iters];
    let spawn = |extra: &[&str]| {
        Command::new(p.bin)
            .args(common)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PingError::Spawn {
                bin: p.bin.display().to_string(),
                cause: e.to_string(),
            })
    };
    let mut server = spawn(&["-B", &port])?;
    let result = (|| loop {
        let mut client = spawn(&["-P", &port, "127.0.0.1"])?;
        match wait_until(&mut client, until) {
            None => {
                kill(&mut client);
                return Err(PingError::Deadline { what: "the loopback", deadline: p.deadline });
            }
            Some(s) if s.success() => {
                let text = output(&mut client);
                return parse_output(&text)
                    .map(|(mb, us)| Measured {
                        mb_per_s: mb,
                        usec_per_xfer: us,
                        elapsed: start.elapsed(),
                    })
                    .ok_or(PingError::NoResult { output: text });
            }
            Some(s) => {
                let text = output(&mut client);
                // The server is not listening yet: try again while there is time; a server that
                // already exited will not come.
                let refused = text.contains("Connection refused");
                let server_gone = matches!(server.try_wait(), Ok(Some(_)));
                if !refused || server_gone || Instant::now() + Duration::from_millis(100) >= until {
                    let mut out = text;
                    if server_gone {
                        out.push_str(" | server: ");
                        out.push_str(&output(&mut server));
                    }
                    return Err(PingError::Failed {
                        code: s.code().map_or("signal".into(), |c| c.to_string()),
                        output: out,
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })();
    match wait_until(&mut server, (Instant::now() + Duration::from_millis(500)).min(until)) {
        Some(_) => {}
        None => kill(&mut server),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_row_of_fi_pingpong() {
        let out =
            "bytes   #sent   #ack     total       time     MB/sec    usec/xfer   Mxfers/sec\n\
                   1m      20      =20      40m         0.15s    277.24    3782.18       0.00\n";
        assert_eq!(parse_output(out), Some((277.24, 3782.18)));
        assert_eq!(parse_output("[error] util/pingpong.c:408 : failed to connect"), None);
        assert_eq!(parse_output(""), None);
    }
}
