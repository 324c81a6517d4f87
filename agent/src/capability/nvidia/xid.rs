//! XID errors from the kernel log: the NVIDIA driver logs
//! `NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus.` The records come from
//! [`crate::host::kmsg`].

use crate::host::pci::PciAddr;
use crate::host::{kmsg, Host, HostError};

pub use crate::host::kmsg::record_message;

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
    let mut out = KmsgScan::default();
    out.records = kmsg::read(host, |m| out.xids.extend(parse_xid(m)))?;
    Ok(out)
}

/// Scans kmsg text with one record per line (a fixture, or a saved copy of /dev/kmsg).
pub fn scan_text(text: &str, out: &mut KmsgScan) {
    out.records += kmsg::scan_text(text, |m| out.xids.extend(parse_xid(m)));
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
}
