//! `serve` follows the kernel log between check runs: a record that can make the node not ready
//! (an XID in `nvidia.fatal_xids`, an XID 154 asking for a reset or reboot, an NVSwitch SXid
//! marked fatal, an efa driver error) wakes the check loop at once, so `/readyz` and the
//! conditions say so within a second instead of at the next interval. Everything else (sysfs,
//! NVML, mounts) keeps the interval; so do XIDs that only warn.

use std::sync::mpsc::Sender;
use std::time::Duration;

use crate::capability::efa;
use crate::capability::nvidia::xid;
use crate::host::{kmsg, Host};

/// What wakes the check loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    Stop,
    /// A kernel log record that can change readiness (the record, whole).
    Kernel(String),
}

/// How often a fixture's kmsg file is looked at (a host's `/dev/kmsg` wakes on each record).
const POLL: Duration = Duration::from_millis(100);

/// Whether a kernel log record (`PRI,SEQ,USEC,FLAGS;MESSAGE`) can make the node not ready.
pub fn matters(record: &str, fatal_xids: &[u32]) -> bool {
    let Some(message) = kmsg::record_message(record) else { return false };
    if let Some(x) = xid::parse_xid(message) {
        return xid::is_fatal(&x, fatal_xids);
    }
    if let Some(s) = xid::parse_sxid(message) {
        return s.fatal;
    }
    efa::parse_driver_error(record).is_some()
}

/// Starts following the host's kernel log on a thread of its own; each record that matters is
/// sent as [`Wake::Kernel`]. Without a kernel log (none under `--root`, no permission) it says so
/// once and the checks keep their interval.
pub fn start(host: Host, fatal_xids: Vec<u32>, tx: Sender<Wake>) {
    let spawned = std::thread::Builder::new().name("kmsg-follow".into()).spawn(move || {
        let result = kmsg::follow(&host, POLL, |record| {
            if !matters(record, &fatal_xids) {
                return true;
            }
            tracing::info!(record, "kernel log: a record that can change readiness; checking now");
            tx.send(Wake::Kernel(record.to_string())).is_ok()
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "not following the kernel log: XIDs and efa errors are seen at the next check interval");
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no thread to follow the kernel log: XIDs are seen at the next check interval");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_wakes_the_checks() {
        let fatal = crate::config::DEFAULT_FATAL_XIDS;
        assert!(matters(
            "3,1,1,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1, GPU has fallen off the bus.",
            fatal
        ));
        assert!(
            !matters("4,1,1,-;NVRM: Xid (PCI:0000:53:00): 13, pid=1, Graphics Exception", fatal),
            "warns only"
        );
        assert!(matters("4,1,1,-;NVRM: Xid (PCI:0000:53:00): 154, GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)", fatal));
        assert!(!matters("4,1,1,-;NVRM: Xid (PCI:0000:53:00): 154, GPU recovery action changed from 0x1 (GPU Reset Required) to 0x0 (None)", fatal));
        assert!(matters(
            "3,1,1,-;nvidia-nvswitch2: SXid (PCI:0000:09:00.0): 24007, Fatal, Link 30 ECC DBE",
            fatal
        ));
        assert!(!matters(
            "4,1,1,-;nvidia-nvswitch0: SXid (PCI:0000:07:00.0): 12028, Non-fatal, Link 44",
            fatal
        ));
        assert!(matters(
            "3,900,5123456,-;efa 0000:10:1c.0: Failed to submit admin command (opcode 9) -110",
            fatal
        ));
        assert!(!matters(
            "6,812,5123456,-;efa 0000:4f:00.0: Setup irq:0x7e name:efa-mgmnt@pci:0000:4f:00.0",
            fatal
        ));
        assert!(!matters("not a record", fatal));
    }
}
