//! `nodeprep serve` under bad HTTP input: malformed and oversized requests, other methods, slowloris
//! and idle connections, peers that stop reading, more connections than it serves, a low open-file
//! limit. Bad requests get a 4xx or a closed connection; the service stays up and `/readyz` keeps
//! answering (the bound asserted is a generous 2 s; measured latencies are printed).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nodeprep::serve::http::{HEADER_TIMEOUT, MAX_CONNECTIONS, WAITING, WRITE_TIMEOUT};
use nodeprep_fixtures::Spec;

use crate::common;

/// `serve` on a healthy p5.48xlarge tree of its own.
struct Server {
    inner: common::Server,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Serves a healthy p5.48xlarge tree, through `prefix` (e.g. `prlimit ...`) when given, with
    /// its log in `log` when given.
    fn start(prefix: &[&str], log: Option<&Path>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = Spec::p5_48xlarge();
        spec.config = Some("[serve]\ninterval_seconds = 30\n".into());
        spec.write(dir.path()).unwrap();
        let mut cmd = common::Nodeprep::through(prefix, dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .command();
        match log {
            Some(p) => cmd.stderr(std::fs::File::create(p).unwrap()),
            None => cmd.stderr(Stdio::null()),
        };
        let srv = Server { inner: common::Server::spawn(cmd), _dir: dir };
        let t0 = Instant::now();
        while srv.readyz().ok() != Some(200) {
            assert!(t0.elapsed() < Duration::from_secs(15), "serve never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        srv
    }

    fn connect(&self) -> TcpStream {
        self.inner.connect()
    }

    /// Sends `raw` and reads until the server closes; returns the response's status (0 when the
    /// connection was closed without one) and everything read.
    fn raw(&self, raw: &[u8]) -> (u16, String) {
        let mut s = self.connect();
        s.set_read_timeout(Some(HEADER_TIMEOUT + Duration::from_secs(5))).unwrap();
        let _ = s.write_all(raw);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        (status_of(&text), text)
    }

    /// GET /readyz on a new connection: its status, or why there is none.
    fn readyz(&self) -> Result<u16, String> {
        self.probe("/readyz", Duration::from_secs(5))
    }

    /// A probe as kubelet makes one: a new connection, one GET, the answer within `timeout`.
    fn probe(&self, path: &str, timeout: Duration) -> Result<u16, String> {
        let mut s = TcpStream::connect(&self.inner.addr).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout)).unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
        Some(status_of(&buf)).filter(|c| *c != 0).ok_or_else(|| format!("no response: {buf:?}"))
    }

    /// `/readyz` answers 200 `n` times while something else goes on; prints the latencies.
    fn readyz_keeps_answering(&self, what: &str, n: usize) {
        let mut took = Vec::new();
        for _ in 0..n {
            let t0 = Instant::now();
            assert_eq!(self.readyz(), Ok(200), "during {what}");
            took.push(t0.elapsed());
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "/readyz took {:?} during {what}",
                t0.elapsed()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        took.sort();
        println!(
            "/readyz during {what}: {n} answers, median {:?}, max {:?}",
            took[n / 2],
            took[n - 1]
        );
    }

    fn alive(&mut self) -> bool {
        self.inner.alive()
    }
}

fn status_of(text: &str) -> u16 {
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Raises this process's soft open-file limit to `n` (the servers it starts inherit it).
fn raise_open_files(n: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read or write only the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < n {
            assert!(
                lim.rlim_max >= n,
                "these tests need {n} open files; the hard limit is {} (raise `ulimit -Hn`)",
                lim.rlim_max
            );
            lim.rlim_cur = n;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}

/// True when the server has closed `s` (EOF or reset), reading away whatever it sent first.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// Waits until the server has closed every connection in `conns`; returns how long that took.
fn all_closed(conns: &mut [TcpStream], limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut open: Vec<usize> = (0..conns.len()).collect();
    while !open.is_empty() {
        open.retain(|&i| !closed_by_server(&mut conns[i]));
        assert!(
            t0.elapsed() < limit,
            "{} of {} connections still open after {limit:?}",
            open.len(),
            conns.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t0.elapsed()
}

#[test]
fn bad_requests_get_a_4xx_or_a_closed_connection() {
    let mut srv = Server::start(&[], None);
    let close = "Connection: close\r\n";
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "POST",
            format!("POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n{close}\r\nabc")
                .into(),
            &[405],
        ),
        (
            "PUT",
            format!("PUT /status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{close}\r\n").into(),
            &[405],
        ),
        ("DELETE", format!("DELETE /metrics HTTP/1.1\r\nHost: x\r\n{close}\r\n").into(), &[405]),
        ("TRACE", format!("TRACE /livez HTTP/1.1\r\nHost: x\r\n{close}\r\n").into(), &[405]),
        (
            "unknown method",
            format!("BREW /readyz HTTP/1.1\r\nHost: x\r\n{close}\r\n").into(),
            &[405],
        ),
        ("OPTIONS *", format!("OPTIONS * HTTP/1.1\r\nHost: x\r\n{close}\r\n").into(), &[404, 405]),
        (
            "CONNECT",
            format!("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n{close}\r\n")
                .into(),
            &[400, 404, 405],
        ),
        ("HTTP/0.9", b"GET /readyz\r\n".to_vec(), &[400]),
        ("HTTP/1.2", b"GET /readyz HTTP/1.2\r\nHost: x\r\n\r\n".to_vec(), &[400, 505]),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), &[0, 400]),
        ("TLS hello", [&[0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01][..], &[0u8; 300]].concat(), &[400]),
        ("binary garbage", (0..=255u8).cycle().take(1024).collect(), &[400]),
        ("NUL in the path", b"GET /ready\0z HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), &[400]),
        (
            "100 KiB request line",
            [b"GET /".as_slice(), &[b'a'; 100_000], b" HTTP/1.1\r\nHost: x\r\n\r\n"].concat(),
            &[0, 414, 431],
        ),
        (
            "9 KiB header",
            [b"GET /readyz HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000], b"\r\n\r\n"].concat(),
            &[431],
        ),
        (
            "200 headers",
            [
                b"GET /readyz HTTP/1.1\r\n".to_vec(),
                (0..200).flat_map(|i| format!("X-{i}: y\r\n").into_bytes()).collect(),
                b"\r\n".to_vec(),
            ]
            .concat(),
            &[431],
        ),
        (
            "bad Content-Length",
            b"GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "two Content-Lengths",
            b"GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                .to_vec(),
            &[400],
        ),
        ("space before colon", b"GET /readyz HTTP/1.1\r\nHost : x\r\n\r\n".to_vec(), &[400]),
        (
            "folded header",
            b"GET /readyz HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "unknown path",
            format!("GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n{close}\r\n").into(),
            &[404],
        ),
    ];
    for (what, raw, want) in &cases {
        let t0 = Instant::now();
        let (code, text) = srv.raw(raw);
        assert!(want.contains(&code), "{what}: got {code}, want one of {want:?}: {text:?}");
        // A request that cannot be served ends its connection at once, not at an idle timeout.
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{what}: connection held for {:?}",
            t0.elapsed()
        );
    }
    let (code, text) = srv.raw(
        format!("POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n{close}\r\n").as_bytes(),
    );
    assert!(code == 405 && text.to_lowercase().contains("allow: get,head"), "{text}");
    // HEAD is GET without the body.
    let (code, text) =
        srv.raw(format!("HEAD /readyz HTTP/1.1\r\nHost: x\r\n{close}\r\n").as_bytes());
    assert!(code == 200 && text.ends_with("\r\n\r\n"), "{text:?}");
    assert!(srv.alive());
    srv.readyz_keeps_answering("nothing", 3);
}

/// A body on a GET is read past, whatever its framing, and the next request on the connection is
/// answered.
#[test]
fn a_body_on_a_get_is_skipped() {
    let srv = Server::start(&[], None);
    let next = "GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for body in [
        "Content-Length: 5\r\n\r\nhello",
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let (code, text) =
            srv.raw(format!("GET /readyz HTTP/1.1\r\nHost: x\r\n{body}{next}").as_bytes());
        assert_eq!(code, 200, "{text}");
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "both requests answered: {text}");
    }
    // A body announced but never sent: the response comes anyway, and the connection is closed
    // rather than kept waiting for the rest.
    let t0 = Instant::now();
    let (code, _) =
        srv.raw(b"GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc");
    assert_eq!(code, 200);
    assert!(t0.elapsed() < HEADER_TIMEOUT + Duration::from_secs(2), "{:?}", t0.elapsed());
}

/// 150 idle connections and 150 slowloris ones (a header byte every 100 ms, never finished): every
/// one is closed within the header deadline, and `/readyz` answers all along.
#[test]
fn slowloris_and_idle_connections_are_cut_and_readyz_answers() {
    raise_open_files(4096);
    let mut srv = Server::start(&[], None);
    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..150).map(|_| srv.connect()).collect();
    let mut slow: Vec<TcpStream> = (0..150).map(|_| srv.connect()).collect();
    for s in &mut slow {
        s.write_all(b"GET /readyz HTTP/1.1\r\nX-Slow: ").unwrap();
    }
    let dripping: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drip = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut dripping = dripping;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &mut dripping {
                    let _ = s.write_all(b"a");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    srv.readyz_keeps_answering("300 idle and slowloris connections", 10);
    let limit = HEADER_TIMEOUT + Duration::from_secs(10);
    all_closed(&mut slow, limit.saturating_sub(opened.elapsed()));
    let slow_closed = opened.elapsed();
    all_closed(&mut idle, limit.saturating_sub(opened.elapsed()));
    let idle_closed = opened.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drip.join().unwrap();
    println!("slowloris connections all closed {slow_closed:?} after they opened, idle ones {idle_closed:?} (header deadline {HEADER_TIMEOUT:?})");
    assert!(srv.alive());
    srv.readyz_keeps_answering("the aftermath", 3);
}

/// A client that pipelines requests and never reads the responses is disconnected once the
/// socket buffers are full and nothing moves for WRITE_TIMEOUT, instead of holding its connection
/// for ever.
#[test]
fn a_peer_that_stops_reading_is_disconnected() {
    let mut srv = Server::start(&[], None);
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let s = srv.connect();
        s.set_nonblocking(true).unwrap();
        stalled.push(s);
    }
    let requests = b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100);
    // Fill both directions: the server's replies back up until it cannot write.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        for s in &mut stalled {
            let _ = s.write(&requests);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    srv.readyz_keeps_answering("4 stalled readers", 3);
    // Closed by the server: a write then fails (reset), where a live but full connection would
    // just not take more.
    let deadline = Instant::now() + WRITE_TIMEOUT + Duration::from_secs(15);
    let mut open: Vec<usize> = (0..stalled.len()).collect();
    while !open.is_empty() {
        open.retain(|&i| match stalled[i].write(b"x") {
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Ok(_) => true,
            Err(_) => false,
        });
        assert!(
            Instant::now() < deadline,
            "{} stalled connections still open {:?} after they stalled",
            open.len(),
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("stalled readers disconnected {:?} after they started", t0.elapsed());
    assert!(srv.alive());
    srv.readyz_keeps_answering("the aftermath", 3);
}

/// More connections than it serves: the extra ones are closed at once, the service stays up, and
/// once the idle ones reach the header deadline `/readyz` answers again.
#[test]
fn connections_past_the_cap_are_closed_and_it_recovers() {
    raise_open_files(4096);
    let mut srv = Server::start(&[], None);
    // Past the cap, each new connection closes the oldest idle one and takes its place (up to
    // WAITING at once); past that too, they are closed at accept.
    let n = MAX_CONNECTIONS + WAITING + 64;
    let mut conns: Vec<TcpStream> = (0..n).map(|_| srv.connect()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let closed: Vec<bool> = conns.iter_mut().map(closed_by_server).collect();
    let refused = closed.iter().filter(|c| **c).count();
    println!("{n} connections: {refused} closed");
    assert_eq!(refused, WAITING + 64, "{refused} of {n} closed at once");
    assert!(closed[..WAITING].iter().all(|c| *c), "the oldest are the ones closed to make room");
    assert!(srv.alive());
    // Recovers once the idle connections are cut.
    let t0 = Instant::now();
    while srv.readyz() != Ok(200) {
        assert!(
            t0.elapsed() < HEADER_TIMEOUT + Duration::from_secs(10),
            "/readyz did not come back: {:?}",
            srv.readyz()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("/readyz answered again {:?} after the cap was reached", t0.elapsed());
    srv.readyz_keeps_answering("the aftermath", 3);
}

/// 600 local clients that hold connections and reconnect as soon as one is closed, all at once:
/// kubelet's /livez probe is still answered (it once got 0–5 answers of 40), because a new
/// connection closes the oldest idle one and takes its place.
#[test]
fn probes_are_answered_while_600_clients_reconnect_at_once() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    raise_open_files(8192);
    let srv = Server::start(&[], None);
    let stop = Arc::new(AtomicBool::new(false));
    let reconnects = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..600)
        .map(|_| {
            let (stop, reconnects, addr) =
                (Arc::clone(&stop), Arc::clone(&reconnects), srv.inner.addr.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(&addr) else { continue };
                    reconnects.fetch_add(1, Ordering::Relaxed);
                    // Hold it, idle, until the server closes it; then come straight back.
                    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                    let mut b = [0u8; 64];
                    while !stop.load(Ordering::Relaxed) {
                        match s.read(&mut b) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(e)
                                if e.kind() == ErrorKind::WouldBlock
                                    || e.kind() == ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let mut answered = 0;
    let mut took = Vec::new();
    for _ in 0..40 {
        let t0 = Instant::now();
        // kubelet's default probe timeout is 1 s.
        if srv.probe("/livez", Duration::from_secs(1)) == Ok(200) {
            answered += 1;
        }
        took.push(t0.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    took.sort();
    println!(
        "/livez: {answered} of 40 answered while 600 clients held connections ({} connects); median {:?}, max {:?}",
        reconnects.load(Ordering::Relaxed),
        took[20],
        took[39]
    );
    assert_eq!(answered, 40);
}

/// A soft open-file limit below what the connections need (a shell's 256, say) is raised at
/// start, so 300 connections do not make accept fail; a hard limit too low for that caps the
/// connections and says so.
#[test]
fn a_low_open_file_limit_is_raised_or_reported() {
    raise_open_files(4096);
    let srv = Server::start(&["prlimit", "--nofile=256:4096", "--"], None);
    let _idle: Vec<TcpStream> = (0..300).map(|_| srv.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    srv.readyz_keeps_answering("300 idle connections with a soft limit of 256", 5);

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let srv = Server::start(&["prlimit", "--nofile=128:128", "--"], Some(&log));
    srv.readyz_keeps_answering("nothing, with a hard limit of 128", 2);
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("the open-file limit (LimitNOFILE) allows only"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("open_files=128") && line.contains("connections=64"), "{line}");
}
