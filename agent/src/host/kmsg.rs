//! The kernel log (`/dev/kmsg`): this boot's records only, since the kernel's ring buffer starts
//! at boot.
//!
//! On a host `/dev/kmsg` is a character device: opened `O_RDONLY|O_NONBLOCK`, each `read()`
//! returns one record, starting at the oldest one still in the ring buffer, until `EAGAIN`
//! (`EPIPE` means records were overwritten while reading: reading goes on). A fixture tree has a
//! regular file with one record per line. Records are `PRI,SEQ,USEC,FLAGS;MESSAGE`, optionally
//! followed by continuation lines that start with a space (`" KEY=value"` dictionary entries),
//! which are skipped.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

use super::{Host, HostError, HostResult};

pub const KMSG: &str = "/dev/kmsg";

/// Reads the kernel log under the host root, calling `each` with every record's message; returns
/// how many records there were.
pub fn read(host: &Host, each: impl FnMut(&str)) -> HostResult<usize> {
    read_with(host, false, each)
}

/// Like [`read`], but `each` gets every record whole (`PRI,SEQ,USEC,FLAGS;MESSAGE`: the time
/// since boot stays), as a support bundle keeps them.
pub fn read_raw(host: &Host, each: impl FnMut(&str)) -> HostResult<usize> {
    read_with(host, true, each)
}

fn read_with(host: &Host, raw: bool, mut each: impl FnMut(&str)) -> HostResult<usize> {
    let path = host.path(KMSG);
    let _r = host.reading(&path);
    let err = |op: &'static str, e: std::io::Error| HostError::io(op, path.clone(), &e);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| err("opening", e))?;
    if let Some(e) = super::not_a_file(&file, &path) {
        return Err(e);
    }
    let meta = file.metadata().map_err(|e| err("reading", e))?;
    let mut records = 0;
    let mut line = |l: &str| {
        if let Some(m) = record_line(l) {
            records += 1;
            each(if raw { l.trim_end_matches('\r') } else { m });
        }
    };
    if meta.file_type().is_char_device() {
        read_records(&mut file, host.max_read, &mut line).map_err(|e| err("reading", e))?;
    } else {
        // Never sized from the file's length (a sparse file can claim any); bounded by the maximum.
        let bytes = super::read_bounded(&mut file, &path, Vec::new(), host.max_read)?;
        String::from_utf8_lossy(&bytes).split('\n').for_each(line);
    }
    Ok(records)
}

/// Follows the kernel log from its end, calling `each` with every new record whole
/// (`PRI,SEQ,USEC,FLAGS;MESSAGE`) as it is logged, until `each` returns false or reading fails.
/// On a host `/dev/kmsg` is opened blocking and sought to its end: each `read()` waits for the
/// next record. A fixture's regular file is looked at every `poll` for appended lines (a file
/// that shrinks was rewritten: it is read again from its start). Never returns while the log is
/// quiet: run it on a thread of its own.
pub fn follow(
    host: &Host,
    poll: std::time::Duration,
    mut each: impl FnMut(&str) -> bool,
) -> HostResult<()> {
    use std::io::{Seek, SeekFrom};
    let path = host.path(KMSG);
    let err = |op: &'static str, e: std::io::Error| HostError::io(op, path.clone(), &e);
    let mut file = File::open(&path).map_err(|e| err("opening", e))?;
    if let Some(e) = super::not_a_file(&file, &path) {
        return Err(e);
    }
    let meta = file.metadata().map_err(|e| err("reading", e))?;
    if meta.file_type().is_char_device() {
        file.seek(SeekFrom::End(0)).map_err(|e| err("seeking to the end of", e))?;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if let Some(first) = text.lines().next() {
                        if record_message(first).is_some() && !each(first) {
                            return Ok(());
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) => return Err(err("reading", e)),
            }
        }
    }
    let mut offset = meta.len();
    let mut partial = String::new();
    loop {
        std::thread::sleep(poll);
        let len = std::fs::metadata(&path).map_err(|e| err("inspecting", e))?.len();
        if len < offset {
            offset = 0;
            partial.clear();
        }
        if len == offset {
            continue;
        }
        let mut f = File::open(&path).map_err(|e| err("opening", e))?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| err("seeking in", e))?;
        let want = (len - offset).min(host.max_read);
        let mut bytes = Vec::with_capacity(want as usize);
        (&mut f).take(want).read_to_end(&mut bytes).map_err(|e| err("reading", e))?;
        offset += bytes.len() as u64;
        partial.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if record_line(line).is_some() && !each(line) {
                return Ok(());
            }
        }
    }
}

/// Reads a `/dev/kmsg` character device record by record until it has no more (`EAGAIN`).
/// At most `max` bytes in all: the kernel's ring buffer is far smaller, so more is not a kmsg.
fn read_records(file: &mut File, max: u64, line: &mut impl FnMut(&str)) -> std::io::Result<()> {
    // A record is at most about 1 KiB of text plus its dictionary; a smaller buffer gets EINVAL.
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        if total > max {
            return Err(std::io::Error::other(format!(
                "more than {max} bytes (checks.max_read_bytes) without an end: not the kernel log"
            )));
        }
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                total += n as u64;
                let text = String::from_utf8_lossy(&buf[..n]);
                // The first line is the record; the rest is its dictionary.
                if let Some(first) = text.lines().next() {
                    line(first);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Records were overwritten while reading: the next read returns the oldest one left.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The message of a record line; `None` for continuation (dictionary) lines, blank lines and
/// anything that is not a record.
fn record_line(line: &str) -> Option<&str> {
    if line.is_empty() || line.starts_with(' ') {
        return None;
    }
    record_message(line)
}

/// Calls `each` with the message of every record in kmsg text with one record per line (a
/// fixture, or a saved copy of /dev/kmsg); returns how many records there were.
pub fn scan_text(text: &str, mut each: impl FnMut(&str)) -> usize {
    let mut records = 0;
    for m in text.split('\n').filter_map(record_line) {
        records += 1;
        each(m);
    }
    records
}

/// The message of a `PRI,SEQ,USEC,FLAGS;MESSAGE` record; `None` when the line is not a record.
pub fn record_message(line: &str) -> Option<&str> {
    let (header, message) = line.split_once(';')?;
    let mut fields = header.split(',');
    let numeric =
        |f: Option<&str>| f.is_some_and(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    (numeric(fields.next()) && numeric(fields.next()) && numeric(fields.next()))
        .then_some(message.trim_end_matches('\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_their_messages() {
        assert_eq!(record_message("6,1436,10012345,-;NVRM: loading"), Some("NVRM: loading"));
        assert_eq!(record_message("4,2,3,c;a;b"), Some("a;b"));
        assert_eq!(record_message("6,1,0;short header"), Some("short header"));
        assert_eq!(record_message(" SUBSYSTEM=pci"), None);
        assert_eq!(record_message("no header here; at all"), None);
        assert_eq!(record_message(""), None);
    }

    #[test]
    fn regular_file_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        let e = read(&host, |_| {}).unwrap_err();
        assert!(e.is_not_found() && e.to_string().contains("dev/kmsg"), "{e}");
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        std::fs::write(dir.path().join("dev/kmsg"), "3,9,1,-;one\n SUBSYSTEM=pci\n4,10,2,-;two\n")
            .unwrap();
        let mut seen = Vec::new();
        assert_eq!(read(&host, |m| seen.push(m.to_string())).unwrap(), 2);
        assert_eq!(seen, ["one", "two"]);
    }

    #[test]
    fn following_a_fixture_sees_appended_records_and_not_old_ones() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        let path = dir.path().join("dev/kmsg");
        std::fs::write(&path, "3,1,1,-;old\n").unwrap();
        let host = Host::new(dir.path());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            follow(&host, std::time::Duration::from_millis(10), |r| {
                tx.send(r.to_string()).is_ok() && !r.ends_with("stop")
            })
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        // A record written in two pieces is one record; a dictionary line is none.
        f.write_all(b"4,2,2,-;new").unwrap();
        f.flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(40));
        f.write_all(b" one\n SUBSYSTEM=pci\n6,3,3,-;stop\n").unwrap();
        let got: Vec<String> = rx.iter().take(2).collect();
        assert_eq!(got, ["4,2,2,-;new one", "6,3,3,-;stop"]);
    }

    /// The real /dev/kmsg, where this process may read it: read record by record until EAGAIN,
    /// without blocking.
    #[test]
    fn the_real_kmsg_does_not_block() {
        let host = Host::new("/");
        match read(&host, |_| {}) {
            Ok(n) => println!("/dev/kmsg: {n} records"),
            Err(e) => println!("/dev/kmsg not read here ({e}): only the fixture paths were tested"),
        }
    }
}
