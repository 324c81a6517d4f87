//! XID errors from the kernel log: the NVIDIA driver logs
//! `NVRM: Xid (PCI:0000:53:00): 79, pid=1234, GPU has fallen off the bus.`, and the NVSwitch
//! driver `nvidia-nvswitch3: SXid (PCI:0000:0a:00.0): 24007, Fatal, Link 30 ...`. The records
//! come from [`crate::host::kmsg`].
//!
//! Each XID is sorted into NVIDIA's resolution bucket ([`Bucket`], the r590 XID catalog): what to
//! do about it. XID 154 carries its recovery action as text ("GPU recovery action changed from
//! 0x0 (None) to 0x1 (GPU Reset Required)"), which is read instead of a fixed bucket.

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

/// One NVSwitch SXid line from the kernel log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SxidEvent {
    pub sxid: u32,
    /// The switch's PCI address as logged (`0000:0a:00.0`).
    pub pci_text: String,
    /// The driver says `Fatal` (the fabric must be reset) rather than `Non-fatal`.
    pub fatal: bool,
    /// What follows the severity, e.g. `Link 30 sourcetrack TCEN0 crumbstore ECC DBE Error`.
    pub message: String,
}

/// What the kernel log shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KmsgScan {
    /// Records read.
    pub records: usize,
    pub xids: Vec<XidEvent>,
    pub sxids: Vec<SxidEvent>,
}

impl KmsgScan {
    fn take(&mut self, message: &str) {
        if let Some(x) = parse_xid(message) {
            self.xids.push(x);
        } else if let Some(x) = parse_sxid(message) {
            self.sxids.push(x);
        }
    }
}

/// Reads the kernel log under the host root and returns its XID and SXid events.
pub fn scan(host: &Host) -> Result<KmsgScan, HostError> {
    let mut out = KmsgScan::default();
    out.records = kmsg::read(host, |m| out.take(m))?;
    Ok(out)
}

/// Scans kmsg text with one record per line (a fixture, or a saved copy of /dev/kmsg).
pub fn scan_text(text: &str, out: &mut KmsgScan) {
    let mut taken = KmsgScan::default();
    out.records += kmsg::scan_text(text, |m| taken.take(m));
    out.xids.append(&mut taken.xids);
    out.sxids.append(&mut taken.sxids);
}

/// What NVIDIA's XID catalog says to do about an XID (its "resolution bucket").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    /// Nothing to do (the application's own fault, or informational).
    Ignore,
    /// Watch it: repeats on one GPU point at hardware.
    Monitor,
    /// Stop peer-to-peer traffic through the GPU (XID 154's "Drain P2P").
    DrainP2p,
    /// Reset the GPU (or reboot the node) to recover.
    ResetGpu,
    /// Drain the node, then reset the GPU (XID 154's "Drain and Reset").
    DrainAndReset,
    /// Reboot the node.
    Reboot,
    /// Take the GPU out of service: the instance must be replaced.
    Isolate,
    /// Not in NVIDIA's catalog as nodeprep knows it.
    Unknown,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Ignore => "ignore",
            Bucket::Monitor => "monitor",
            Bucket::DrainP2p => "drain-p2p",
            Bucket::ResetGpu => "reset-gpu",
            Bucket::DrainAndReset => "drain-and-reset",
            Bucket::Reboot => "reboot",
            Bucket::Isolate => "isolate",
            Bucket::Unknown => "unknown",
        }
    }

    /// What a person does, for the GPU at `pci` (e.g. "reset GPU 0000:75:00").
    pub fn action(self, pci: &str) -> String {
        match self {
            Bucket::Ignore => "nothing (application error or informational)".into(),
            Bucket::Monitor => format!("watch GPU {pci} for repeats"),
            Bucket::DrainP2p => format!("stop peer-to-peer traffic through GPU {pci}"),
            Bucket::ResetGpu => format!("reset GPU {pci}"),
            Bucket::DrainAndReset => format!("drain the node, then reset GPU {pci}"),
            Bucket::Reboot => "reboot the node".into(),
            Bucket::Isolate => format!("take GPU {pci} out of service: replace the instance"),
            Bucket::Unknown => "see NVIDIA's XID catalog".into(),
        }
    }
}

/// NVIDIA's resolution buckets of the r590 XID catalog (see FIELD-NOTES, NVIDIA).
const BUCKETS: &[(Bucket, &[u32])] = &[
    (Bucket::Isolate, &[54]),
    (Bucket::Reboot, &[79, 151, 168]),
    (Bucket::ResetGpu, &[48, 64, 95, 109, 110, 119, 120, 136, 140, 143, 155, 156, 158]),
    (Bucket::Monitor, &[13, 31, 94, 126]),
    (Bucket::Ignore, &[43, 63, 92, 121]),
];

/// The bucket of one XID event: XID 154 by the recovery action it names, others by the table.
pub fn bucket(x: &XidEvent) -> Bucket {
    if x.xid == 154 {
        return recovery_action(&x.message).unwrap_or(Bucket::Unknown);
    }
    BUCKETS.iter().find(|(_, xids)| xids.contains(&x.xid)).map_or(Bucket::Unknown, |(b, _)| *b)
}

/// Whether an XID stops its GPU: one of `fatal_xids` (`nvidia.fatal_xids`); XID 154 by the
/// recovery action it names instead (a reset, a reboot or isolation needed: fatal; "None":
/// recovered).
pub fn is_fatal(x: &XidEvent, fatal_xids: &[u32]) -> bool {
    if x.xid == 154 {
        return matches!(
            bucket(x),
            Bucket::ResetGpu | Bucket::DrainAndReset | Bucket::Reboot | Bucket::Isolate
        );
    }
    fatal_xids.contains(&x.xid)
}

/// XID 154's recovery action: `GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset
/// Required)` → the bucket of what it changed *to*. `None` (recovered) is [`Bucket::Ignore`].
pub fn recovery_action(message: &str) -> Option<Bucket> {
    let to = &message[message.rfind(" to ")? + 4..];
    let open = to.find('(')?;
    let close = to[open..].find(')')? + open;
    let code = to[..open].trim();
    let text = to[open + 1..close].trim().to_ascii_lowercase();
    let by_text = match text.as_str() {
        "none" => Some(Bucket::Ignore),
        "gpu reset required" => Some(Bucket::ResetGpu),
        "node reboot required" => Some(Bucket::Reboot),
        "drain p2p" => Some(Bucket::DrainP2p),
        "drain and reset" => Some(Bucket::DrainAndReset),
        _ => None,
    };
    let by_code = match code.strip_prefix("0x").and_then(|h| u32::from_str_radix(h, 16).ok()) {
        Some(0) => Some(Bucket::Ignore),
        Some(1) => Some(Bucket::ResetGpu),
        Some(2) => Some(Bucket::Reboot),
        Some(3) => Some(Bucket::DrainP2p),
        Some(4) => Some(Bucket::DrainAndReset),
        _ => None,
    };
    by_text.or(by_code)
}

const SXID_MARK: &str = "SXid (";

/// Parses `nvidia-nvswitch3: SXid (PCI:0000:0a:00.0): 24007, Fatal, Link 30 ... (First)`.
pub fn parse_sxid(message: &str) -> Option<SxidEvent> {
    let at = message.find(SXID_MARK)?;
    if !message[..at].contains("nvswitch") {
        return None;
    }
    let after = &message[at + SXID_MARK.len()..];
    let close = after.find("):")?;
    let inner = after[..close].trim();
    let pci_text = inner.strip_prefix("PCI:").unwrap_or(inner).trim().to_string();
    let rest = after[close + 2..].trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let sxid: u32 = rest[..digits].parse().ok()?;
    let rest = rest[digits..].trim_start_matches(',').trim_start();
    let (severity, message) = rest.split_once(',').unwrap_or((rest, ""));
    let fatal = severity.trim().eq_ignore_ascii_case("fatal");
    Some(SxidEvent { sxid, pci_text, fatal, message: message.trim().to_string() })
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
    fn buckets_follow_nvidias_catalog_and_xid_154_reads_its_action() {
        let x = |xid: u32, m: &str| XidEvent {
            xid,
            pci: None,
            pci_text: "0000:75:00".into(),
            message: m.into(),
        };
        assert_eq!(bucket(&x(79, "")), Bucket::Reboot);
        assert_eq!(bucket(&x(54, "")), Bucket::Isolate);
        assert_eq!(bucket(&x(48, "")), Bucket::ResetGpu);
        assert_eq!(bucket(&x(13, "")), Bucket::Monitor);
        assert_eq!(bucket(&x(63, "")), Bucket::Ignore);
        assert_eq!(bucket(&x(999, "")), Bucket::Unknown);
        let m = "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)";
        assert_eq!(bucket(&x(154, m)), Bucket::ResetGpu);
        let m = "GPU recovery action changed from 0x1 (GPU Reset Required) to 0x2 (Node Reboot Required)";
        assert_eq!(bucket(&x(154, m)), Bucket::Reboot);
        let m = "GPU recovery action changed from 0x1 (GPU Reset Required) to 0x0 (None)";
        assert_eq!(bucket(&x(154, m)), Bucket::Ignore, "recovered");
        assert_eq!(bucket(&x(154, "changed to 0x4 (Drain and Reset)")), Bucket::DrainAndReset);
        assert_eq!(
            bucket(&x(154, "changed to 0x3 (something new)")),
            Bucket::DrainP2p,
            "by its code"
        );
        assert_eq!(bucket(&x(154, "garbled")), Bucket::Unknown);
        assert_eq!(Bucket::ResetGpu.action("0000:75:00"), "reset GPU 0000:75:00");
        assert_eq!(Bucket::Reboot.action("0000:75:00"), "reboot the node");
    }

    #[test]
    fn sxid_lines_are_read_with_their_severity() {
        let s = parse_sxid("nvidia-nvswitch3: SXid (PCI:0000:0a:00.0): 24007, Fatal, Link 30 sourcetrack TCEN0 crumbstore ECC DBE Error (First)").unwrap();
        assert_eq!((s.sxid, s.fatal, s.pci_text.as_str()), (24007, true, "0000:0a:00.0"));
        assert_eq!(s.message, "Link 30 sourcetrack TCEN0 crumbstore ECC DBE Error (First)");
        let s = parse_sxid("nvidia-nvswitch0: SXid (PCI:0000:07:00.0): 12028, Non-fatal, Link 44 egress non-posted PRIV error (First)").unwrap();
        assert_eq!((s.sxid, s.fatal), (12028, false));
        assert_eq!(
            parse_sxid("someone: SXid (PCI:0000:07:00.0): 1, Fatal"),
            None,
            "not the nvswitch driver"
        );
        assert_eq!(parse_sxid("nvidia-nvswitch0: SXid (PCI:0000:07:00.0): x"), None);
        let mut scan = KmsgScan::default();
        scan_text("4,1,1,-;nvidia-nvswitch1: SXid (PCI:0000:08:00.0): 20034, Fatal, Link 36 LTSSM Fault Up\n4,2,2,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1, off the bus\n", &mut scan);
        assert_eq!((scan.records, scan.xids.len(), scan.sxids.len()), (2, 1, 1));
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
