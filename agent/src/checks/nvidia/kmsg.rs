//! XID errors from the kernel log (`/dev/kmsg`): this boot's records only, since the kernel's ring
//! buffer starts at boot.
//!
//! On a host `/dev/kmsg` is a character device: opened `O_RDONLY|O_NONBLOCK`, each `read()`
//! returns one record, starting at the oldest one still in the ring buffer, until `EAGAIN`
//! (`EPIPE` means records were overwritten while reading: reading goes on). A fixture tree has a
//! regular file with one record per line. Records are `PRI,SEQ,USEC,FLAGS;MESSAGE`, optionally
//! followed by continuation lines that start with a space (`" KEY=value"` dictionary entries),
//! which are skipped.
//!
//! The NVIDIA driver logs `NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus.`

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};

use super::PciAddr;
use crate::host::{Host, HostError};

pub const KMSG: &str = "/dev/kmsg";

/// One XID line from the kernel log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XidEvent {
    pub xid: u32,
    /// The address as logged (`0000:53:00`: domain, bus, device), parsed; `None` when unparsable.
    pub pci: Option<PciAddr>,
    /// The address text as logged, for when it does not parse.
    pub pci_text: String,
    /// What follows the XID number, e.g. `pid=1234, GPU has fallen off the bus.`
    pub message: String,
}

/// What the kernel log shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KmsgScan {
    /// Records read.
    pub records: usize,
    pub xids: Vec<XidEvent>,
}

/// Reads the kernel log under the host root and returns its XID events.
pub fn scan(host: &Host) -> Result<KmsgScan, HostError> {
    let path = host.path(KMSG);
    let err =
        |op: &'static str, source: std::io::Error| HostError { op, path: path.clone(), source };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| err("opening", e))?;
    let meta = file.metadata().map_err(|e| err("reading", e))?;
    let mut out = KmsgScan::default();
    if meta.file_type().is_char_device() {
        read_records(&mut file, &mut out).map_err(|e| err("reading", e))?;
    } else {
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes).map_err(|e| err("reading", e))?;
        scan_text(&String::from_utf8_lossy(&bytes), &mut out);
    }
    Ok(out)
}

/// Reads a `/dev/kmsg` character device record by record until it has no more (`EAGAIN`).
fn read_records(file: &mut File, out: &mut KmsgScan) -> std::io::Result<()> {
    // A record is at most about 1 KiB of text plus its dictionary; a smaller buffer gets EINVAL.
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                // The first line is the record; the rest is its dictionary.
                if let Some(line) = text.lines().next() {
                    scan_line(line, out);
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

/// Scans kmsg text with one record per line (a fixture, or a saved copy of /dev/kmsg).
pub fn scan_text(text: &str, out: &mut KmsgScan) {
    for line in text.split('\n') {
        scan_line(line, out);
    }
}

fn scan_line(line: &str, out: &mut KmsgScan) {
    // Continuation lines (dictionary entries) start with a space; blank lines are nothing.
    if line.is_empty() || line.starts_with(' ') {
        return;
    }
    let Some(message) = record_message(line) else { return };
    out.records += 1;
    if let Some(x) = parse_xid(message) {
        out.xids.push(x);
    }
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

const XID_MARK: &str = "NVRM: Xid (";

/// Parses `NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus.`
pub fn parse_xid(message: &str) -> Option<XidEvent> {
    let start = message.find(XID_MARK)? + XID_MARK.len();
    let after = &message[start..];
    let close = after.find("):")?;
    let inner = after[..close].trim();
    let pci_text = inner.strip_prefix("PCI:").unwrap_or(inner).trim().to_string();
    let rest = after[close + 2..].trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let xid: u32 = rest[..digits].parse().ok()?;
    let message = rest[digits..].trim_start_matches(',').trim().to_string();
    Some(XidEvent { xid, pci: PciAddr::parse(&pci_text), pci_text, message })
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
    fn xid_lines_in_the_formats_drivers_print() {
        let x = parse_xid("NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus.")
            .unwrap();
        assert_eq!(x.xid, 79);
        assert_eq!(x.pci_text, "0000:53:00");
        assert_eq!(x.pci, PciAddr::parse("0000:53:00"));
        assert!(x.pci.unwrap().same_slot(&PciAddr::parse("00000000:53:00.0").unwrap()));
        assert_eq!(x.message, "pid=1234, GPU has fallen off the bus.");
        // 535+ drivers quote the pid and add the process name.
        let x = parse_xid("NVRM: Xid (PCI:0001:a8:00): 13, pid='<unknown>', name=<unknown>, Graphics Exception: ESR 0x50").unwrap();
        assert_eq!((x.xid, x.pci_text.as_str()), (13, "0001:a8:00"));
        assert_eq!(x.message, "pid='<unknown>', name=<unknown>, Graphics Exception: ESR 0x50");
        // Older drivers: no PCI: prefix, no comma after the number.
        let x = parse_xid("NVRM: Xid (0000:3b:00): 48").unwrap();
        assert_eq!((x.xid, x.pci.map(|p| p.to_string())), (48, Some("0000:3b:00".into())));
        assert_eq!(x.message, "");
        // Not XIDs.
        assert_eq!(
            parse_xid("NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  550.127.05"),
            None
        );
        assert_eq!(parse_xid("NVRM: Xid (PCI:0000:53:00): lots"), None);
        assert_eq!(parse_xid("NVRM: Xid (PCI:0000:53:00"), None);
        // An unparsable address is kept as text.
        let x = parse_xid("NVRM: Xid (PCI:gpu0): 31, pid=1, Ch 00000008").unwrap();
        assert_eq!((x.pci, x.pci_text.as_str()), (None, "gpu0"));
    }

    #[test]
    fn text_scan_skips_dictionary_lines_and_counts_records() {
        let text = "6,1,0,-;Linux version 6.1\n SUBSYSTEM=pci\n DEVICE=+pci:0000:53:00.0\n4,2,5,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus.\n\n";
        let mut s = KmsgScan::default();
        scan_text(text, &mut s);
        assert_eq!(s.records, 2);
        assert_eq!(s.xids.len(), 1);
        assert_eq!(s.xids[0].xid, 79);
    }

    #[test]
    fn a_large_log_is_scanned_completely() {
        let mut text = String::new();
        for i in 0..100_000u32 {
            if i % 10_000 == 5 {
                text.push_str(&format!(
                    "3,{i},{},-;NVRM: Xid (PCI:0000:64:00): 13, pid={i}, Graphics Exception\n",
                    i * 7
                ));
            } else {
                text.push_str(&format!(
                    "6,{i},{},-;eth0: link up {i} with a long enough message to look real\n",
                    i * 7
                ));
            }
        }
        let mut s = KmsgScan::default();
        scan_text(&text, &mut s);
        assert_eq!(s.records, 100_000);
        assert_eq!(s.xids.len(), 10);
        assert!(s.xids.iter().all(|x| x.xid == 13 && x.pci == PciAddr::parse("0000:64:00")));
        assert_eq!(s.xids[9].message, "pid=90005, Graphics Exception");
    }

    #[test]
    fn regular_file_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        let e = scan(&host).unwrap_err();
        assert!(e.is_not_found() && e.to_string().contains("dev/kmsg"), "{e}");
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        std::fs::write(
            dir.path().join("dev/kmsg"),
            "3,9,1,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1, GPU has fallen off the bus.\n",
        )
        .unwrap();
        let s = scan(&host).unwrap();
        assert_eq!((s.records, s.xids.len()), (1, 1));
    }

    /// The real /dev/kmsg, where this process may read it: read record by record until EAGAIN,
    /// without blocking.
    #[test]
    fn the_real_kmsg_does_not_block() {
        let host = Host::new("/");
        if let Ok(s) = scan(&host) {
            assert!(s.records > 0 || s.xids.is_empty());
        }
    }
}
