//! PCI functions under `sys/bus/pci/devices/<bdf>/{vendor,device,class}`, and PCI addresses in
//! the spellings sysfs, NVML and the kernel log use.

use std::fmt;

use super::{Host, HostError};

pub const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// A PCI address: sysfs writes `0000:53:00.0`, NVML `00000000:53:00.0`, XID lines `0000:53:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: Option<u8>,
}

impl PciAddr {
    /// Parses `[PCI:][domain:]bus:device[.function]` (hexadecimal, any case).
    pub fn parse(s: &str) -> Option<PciAddr> {
        let s = s.trim();
        let s = s.strip_prefix("PCI:").unwrap_or(s);
        let (addr, function) = match s.rsplit_once('.') {
            Some((a, f)) => (a, Some(u8::from_str_radix(f, 16).ok().filter(|f| *f < 8)?)),
            None => (s, None),
        };
        let hex = |t: &str| {
            (!t.is_empty() && t.len() <= 8).then(|| u32::from_str_radix(t, 16).ok()).flatten()
        };
        let parts: Vec<&str> = addr.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, dev] => (hex(d)?, hex(b)?, hex(dev)?),
            [b, dev] => (0, hex(b)?, hex(dev)?),
            _ => return None,
        };
        (bus <= 0xff && device < 0x20).then_some(PciAddr {
            domain,
            bus: bus as u8,
            device: device as u8,
            function,
        })
    }

    /// Same domain, bus and device (the function is not always logged).
    pub fn same_slot(&self, other: &PciAddr) -> bool {
        (self.domain, self.bus, self.device) == (other.domain, other.bus, other.device)
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}", self.domain, self.bus, self.device)?;
        if let Some(func) = self.function {
            write!(f, ".{func:x}")?;
        }
        Ok(())
    }
}

/// One PCI function of the vendor asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// `None` when the directory name is not a PCI address.
    pub addr: Option<PciAddr>,
    /// The sysfs directory name, e.g. `0000:53:00.0`.
    pub bdf: String,
    /// `device`, e.g. `0x2330`; empty when unreadable.
    pub device: String,
    /// `class`, e.g. `0x030200`.
    pub class: u32,
}

/// What [`functions`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Functions of the vendor, in address order.
    pub functions: Vec<Function>,
    /// What could not be read (a function whose vendor or class is unreadable is not counted).
    pub errors: Vec<HostError>,
}

/// Every PCI function whose `vendor` is `vendor` (e.g. `0x10de`): the vendor of every function is
/// read, the class and device only of those that match.
pub fn functions(host: &Host, vendor: &str) -> Scan {
    let mut scan = Scan::default();
    let names = host.list_dir_opt(PCI_DEVICES).unwrap_or_else(|e| {
        scan.errors.push(e);
        Vec::new()
    });
    for bdf in names {
        let attr = |a: &str| host.read_attr(format!("{PCI_DEVICES}/{bdf}/{a}"));
        match attr("vendor") {
            Ok(v) if v == vendor => {}
            Ok(_) => continue,
            Err(e) => {
                scan.errors.push(e);
                continue;
            }
        }
        let class = match attr("class") {
            Ok(c) => u32::from_str_radix(c.trim_start_matches("0x"), 16).unwrap_or(0),
            Err(e) => {
                scan.errors.push(e);
                continue;
            }
        };
        let device = attr("device").unwrap_or_default();
        scan.functions.push(Function { addr: PciAddr::parse(&bdf), bdf, device, class });
    }
    scan.functions.sort_by_key(|f| f.addr);
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses_in_every_spelling() {
        let sysfs = PciAddr::parse("0000:53:00.0").unwrap();
        let nvml = PciAddr::parse("00000000:53:00.0").unwrap();
        let xid = PciAddr::parse("PCI:0000:53:00").unwrap();
        assert_eq!(sysfs, nvml);
        assert!(sysfs.same_slot(&xid) && sysfs != xid);
        assert_eq!(PciAddr::parse("00000001:A8:00.0").unwrap().to_string(), "0001:a8:00.0");
        assert_eq!(xid.to_string(), "0000:53:00");
        assert_eq!(PciAddr::parse("53:00.0").unwrap(), sysfs);
        for bad in
            ["", "gpu0", "0000:53", "0000:zz:00.0", "0000:53:00.9", "0000:100:00.0", "0000:53:20.0"]
        {
            assert_eq!(PciAddr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn functions_of_one_vendor_in_address_order() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path());
        let dev = |bdf: &str, vendor: &str, class: &str| {
            let d = dir.path().join("sys/bus/pci/devices").join(bdf);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
            std::fs::write(d.join("class"), format!("{class}\n")).unwrap();
            std::fs::write(d.join("device"), "0x2330\n").unwrap();
        };
        dev("0000:64:00.0", "0x10de", "0x030200");
        dev("0000:53:00.0", "0x10de", "0x068000");
        dev("0000:00:04.0", "0x1d0f", "0x020000");
        let scan = functions(&host, "0x10de");
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        let got: Vec<(&str, u32)> =
            scan.functions.iter().map(|f| (f.bdf.as_str(), f.class)).collect();
        assert_eq!(got, [("0000:53:00.0", 0x068000), ("0000:64:00.0", 0x030200)]);
        std::fs::remove_file(dir.path().join("sys/bus/pci/devices/0000:64:00.0/class")).unwrap();
        let scan = functions(&host, "0x10de");
        assert_eq!(scan.functions.len(), 1);
        assert_eq!(scan.functions[0].addr, PciAddr::parse("0000:53:00.0"));
        assert!(
            scan.errors[0].is_not_found()
                && scan.errors[0].to_string().contains("0000:64:00.0/class")
        );
    }
}
