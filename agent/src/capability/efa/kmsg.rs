//! The efa driver's errors of this boot, from the kernel log: each names its PCI function
//! (`efa 0000:10:1c.0: Failed to ...`), and fails the device behind it.

use crate::host::kmsg;
use crate::host::pci::PciAddr;
use crate::host::{Host, HostError};

/// One error line of the efa driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverError {
    pub pci: PciAddr,
    /// The message after `efa <pci>: `.
    pub message: String,
}

/// Words of the efa driver's failure messages (admin command timeouts, the admin queue closed or
/// not running, a device reset that failed, ...), for lines logged below the error level.
const FAILURE_WORDS: &[&str] =
    &["timed out", "timeout", "failed", "failure", "not in running state", "closed", "error"];

/// The driver error in one kmsg record (`PRI,SEQ,USEC,FLAGS;MESSAGE`), if it is one: a message of
/// the efa driver (`efa <pci>: ...`) at error level or worse (`PRI & 7 <= 3`), or one that says a
/// command or the device failed.
pub fn parse(record: &str) -> Option<DriverError> {
    let (header, message) = record.split_once(';')?;
    let level = header.split(',').next()?.parse::<u32>().ok()? & 7;
    let rest = message.strip_prefix("efa ")?;
    let (addr, text) = rest.split_once(": ")?;
    let pci = PciAddr::parse(addr)?;
    let lower = text.to_ascii_lowercase();
    (level <= 3 || FAILURE_WORDS.iter().any(|w| lower.contains(w)))
        .then(|| DriverError { pci, message: text.trim_end().to_string() })
}

/// Every efa driver error of this boot.
pub fn errors(host: &Host) -> Result<Vec<DriverError>, HostError> {
    let mut out = Vec::new();
    match kmsg::read_raw(host, |r| out.extend(parse(r))) {
        Ok(_) => Ok(out),
        Err(e) if e.is_not_found() => Ok(out),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_name_their_pci_function_and_setup_lines_are_not_errors() {
        let e = parse(
            "3,900,5123456,-;efa 0000:10:1c.0: Failed to submit admin command (opcode 9) -110",
        )
        .unwrap();
        assert_eq!(e.pci, PciAddr::parse("0000:10:1c.0").unwrap());
        assert!(e.message.starts_with("Failed to submit admin command"));
        let warn =
            parse("4,901,5123457,-;efa 0000:10:1c.0: Admin command timed out (opcode 3)").unwrap();
        assert!(warn.message.contains("timed out"));
        for fine in [
            "6,812,5123456,-;efa 0000:4f:00.0: Setup irq:0x7e name:efa-mgmnt@pci:0000:4f:00.0",
            "6,813,5123456,-;efa: loading out-of-tree module taints kernel.",
            "3,814,5123456,-;nvme 0000:4f:00.0: I/O 12 QID 0 timeout",
            "not a record",
        ] {
            assert_eq!(parse(fine), None, "{fine}");
        }
    }
}
