//! What every integration test uses: the command builder for the binary (a clean environment, the
//! fake NVML of a healthy p5.48xlarge, run directly or through a wrapper such as `setpriv`,
//! `prlimit`, `unshare` or `sh`), fixture trees, and a running `serve` with its HTTP client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nodeprep_fixtures::Spec;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_nodeprep");

/// Environment variables that would change what a test runs: removed from every command.
const CLEARED: &[&str] = &[
    "NODEPREP_CONFIG",
    "NODEPREP_INSTANCE_TYPE",
    "NODEPREP_OUTPUT",
    "NODEPREP_ROOT",
    "NODEPREP_LOG",
    "NODEPREP_NVML_LIB",
    "NODEPREP_METRICS_LISTEN",
    "FAKE_NVML_CONFIG",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// `nodeprep` as a test runs it.
pub struct Nodeprep {
    cmd: Command,
}

impl Nodeprep {
    /// `nodeprep --root ROOT`, with the fake NVML of a healthy p5.48xlarge (fixture trees carry no
    /// driver library).
    pub fn new(root: &Path) -> Nodeprep {
        Nodeprep::through(&[], root)
    }

    /// `PREFIX... nodeprep --root ROOT` (e.g. `setpriv --reuid=65534 ...`, `prlimit --nofile=64`).
    pub fn through(prefix: &[&str], root: &Path) -> Nodeprep {
        let mut n = Nodeprep::bare_through(prefix);
        n.cmd.arg("--root").arg(root);
        n.cmd.env("NODEPREP_NVML_LIB", nodeprep_fixtures::fake_nvml(&[]));
        n
    }

    /// `nodeprep` with a clean environment and nothing else: no root, no NVML library.
    pub fn bare() -> Nodeprep {
        Nodeprep::bare_through(&[])
    }

    fn bare_through(prefix: &[&str]) -> Nodeprep {
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        for k in CLEARED {
            cmd.env_remove(k);
        }
        Nodeprep { cmd }
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, args: I) -> Self {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// The command, to spawn or adjust further.
    pub fn command(self) -> Command {
        self.cmd
    }

    /// Runs it to the end.
    pub fn output(mut self) -> Output {
        self.cmd.output().expect("nodeprep runs")
    }
}

/// `nodeprep --root ROOT ARGS...`, run to the end.
pub fn nodeprep(root: &Path, args: &[&str]) -> Output {
    Nodeprep::new(root).args(args).output()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fixture tree written from `spec`, removed when dropped.
pub fn tree(spec: &Spec) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    spec.write(dir.path()).unwrap();
    dir
}

/// The bundled example tree of a healthy p5.48xlarge.
pub fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/p5.48xlarge")
}

/// A running `nodeprep serve` (killed when dropped) and its address.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The rest of serve's stdout, kept open: serve may print more lines (a closed pipe would fail
    /// its writes).
    pub stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    /// Spawns `cmd` (a `serve --listen 127.0.0.1:0` command; stderr goes where `cmd` says, else
    /// nowhere) and reads the address it prints first.
    pub fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("nodeprep serve: listening on http://")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_string();
        Server { child, addr, stdout }
    }

    /// The next line serve prints on stdout, without its newline.
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    pub fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.addr).unwrap()
    }

    /// Sends `raw` on a new connection and reads until the server closes: (status, head in lower
    /// case, body); status 0 when the connection closed without a response.
    pub fn request(&self, raw: impl AsRef<[u8]>) -> (u16, String, String) {
        request(&self.addr, raw).unwrap_or_else(|| panic!("nothing listens on {}", self.addr))
    }

    /// Reads serve's second line, `nodeprep serve: metrics only on http://ADDR/metrics`: ADDR.
    pub fn metrics_addr(&mut self) -> String {
        let line = self.next_line();
        line.strip_prefix("nodeprep serve: metrics only on http://")
            .and_then(|l| l.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("not the metrics address line: {line:?}"))
            .to_string()
    }

    /// GET `path`: (status, head in lower case, body).
    pub fn get(&self, path: &str) -> (u16, String, String) {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
    }

    /// Polls `path` until its status is `want` (the first run may not have finished yet), at most
    /// 15 s; the last answer.
    pub fn wait_for(&self, path: &str, want: u16) -> (u16, String, String) {
        let t0 = Instant::now();
        loop {
            let r = self.get(path);
            if r.0 == want || t0.elapsed() > Duration::from_secs(15) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit code.
    pub fn terminate(mut self) -> i32 {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `raw` to `addr` on a new connection and reads until the server closes: (status, head in
/// lower case, body, its chunks joined); status 0 when the connection closed without a response,
/// `None` when nothing listens there.
pub fn request(addr: &str, raw: impl AsRef<[u8]>) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(raw.as_ref());
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head = head.to_lowercase();
    let body = match head.contains("transfer-encoding: chunked") {
        true => dechunk(body)?,
        false => body.to_string(),
    };
    Some((status_of(&head), head, body))
}

/// GET `path` from `addr` (see [`request`]).
pub fn get(addr: &str, path: &str) -> Option<(u16, String, String)> {
    request(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"))
}

/// A chunked body's chunks, joined; `None` when it is not whole.
fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            break;
        }
        out.push_str(tail.get(..n)?);
        rest = tail.get(n + 2..)?;
    }
    Some(out)
}

/// The status code of an HTTP response's text; 0 when there is none.
pub fn status_of(text: &str) -> u16 {
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// A file whose reads never return, as on a hung device or network filesystem: a FUSE filesystem
/// (tests/fuse/hang.py) mounted over it whose reads are never answered. The reader waits in the
/// kernel (state D, not even SIGKILL ends it) until [`Hung::release`] kills the server.
pub struct Hung {
    server: Option<Child>,
    path: PathBuf,
}

impl Hung {
    /// Mounts the hanging filesystem over the (existing, regular) file; None, saying why, where
    /// this machine cannot (no /dev/fuse, no fusepy).
    pub fn at(path: &Path) -> Option<Hung> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuse/hang.py");
        if !Path::new("/dev/fuse").exists() {
            println!("NOT TESTED here: no /dev/fuse, so no read that never returns can be made");
            return None;
        }
        let server = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut hung = Hung { server: Some(server), path: path.to_path_buf() };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            if mi.lines().any(|l| l.split(' ').nth(4) == path.to_str() && l.contains(" - fuse")) {
                return Some(hung);
            }
            if let Some(status) = hung.server.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                let _ = hung.server.take().unwrap().stderr.unwrap().read_to_string(&mut err);
                println!(
                    "NOT TESTED here: the hanging FUSE filesystem did not start ({status}): {err}"
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tests/fuse/hang.py did not mount {} within 10 s", path.display());
    }

    /// Kills the server (the readers' waits end with an error) and unmounts.
    pub fn release(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }

    /// Releases the reads after `after`, from another thread (a test then waits for nodeprep to
    /// end, which it cannot while one of its threads waits in the kernel).
    pub fn release_after(mut self, after: Duration) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            std::thread::sleep(after);
            self.release();
        })
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.release();
    }
}

/// Polls `f` every 100 ms until it holds; fails naming `what` after `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
