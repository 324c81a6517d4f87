//! What a block device carries, from its first and last bytes: the signatures `blkid`/`wipefs` know
//! for filesystems, partition tables, RAID and volume-manager metadata.
//!
//! Storage formats a disk only when this finds nothing, or finds our own md array name / xfs label.
//! It never refuses on unrecognised bytes alone: instance-store disks after a stop/start read as
//! whatever the controller returns, and only a recognised signature means someone's data.
//!
//! Offsets (all little-endian unless noted):
//! - md 1.x superblock (`struct mdp_superblock_1`, magic 0xa92b4efc): 1.1 at 0, 1.2 at 4096, 1.0 at
//!   `((sectors - 16) & !7) * 512`; md 0.90 at `(size & !0xffff) - 0x10000`.
//! - xfs: `XFSB` at 0 (big-endian), label at 108 (12 bytes), `sb_inprogress` at 126.
//! - ext2/3/4: 0xEF53 at 1080, label at 1144, feature flags at 1116/1120.
//! - btrfs `_BHRfS_M` at 65600; swap `SWAPSPACE2` at page size − 10; LVM2 `LABELONE` in sectors 0–3;
//!   LUKS `LUKS\xba\xbe` at 0; bcache at 4120; ISO 9660 `CD001` at 32769; GPT `EFI PART` at 512;
//!   MBR/boot sector 0x55AA at 510.

/// How many bytes of the start of a device [`probe`] looks at.
pub const HEAD_BYTES: usize = 72 * 1024;
/// How many bytes of the end of a device [`probe`] looks at.
pub const TAIL_BYTES: usize = 128 * 1024;

const MD_MAGIC: u32 = 0xa92b_4efc;
const BCACHE_MAGIC: [u8; 16] = [
    0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba, 0x6d, 0x81,
];

/// An md RAID member superblock (metadata 1.x).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdMember {
    /// `1.0`, `1.1` or `1.2`.
    pub metadata: &'static str,
    pub uuid: [u8; 16],
    /// The array name as stored: `name`, or `homehost:name`.
    pub name: String,
    pub level: i32,
    pub raid_disks: u32,
    /// This device's slot in the array; `None` for a spare or faulty device.
    pub role: Option<u32>,
    /// Where the array's data starts on this device, in 512-byte sectors.
    pub data_offset: u64,
    pub chunk_sectors: u32,
}

impl MdMember {
    /// The array name without a `homehost:` prefix.
    pub fn short_name(&self) -> &str {
        self.name.rsplit_once(':').map_or(self.name.as_str(), |(_, n)| n)
    }

    pub fn uuid_string(&self) -> String {
        let h: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{}:{}:{}", &h[0..8], &h[8..16], &h[16..24], &h[24..32])
    }
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// No signature nodeprep knows.
    Blank,
    /// An md 1.x RAID member.
    Md(MdMember),
    /// An xfs filesystem; `in_progress`: mkfs did not finish.
    Xfs { label: String, in_progress: bool },
    /// Anything else that means someone's data, described for a person (`ext4 filesystem (label "data")`).
    Other(String),
}

impl Content {
    pub fn describe(&self) -> String {
        match self {
            Content::Blank => "no signature".into(),
            Content::Md(m) => format!(
                "md {} RAID member of array \"{}\" ({})",
                m.metadata,
                m.name,
                m.uuid_string()
            ),
            Content::Xfs { label, in_progress: false } => {
                format!("xfs filesystem (label \"{label}\")")
            }
            Content::Xfs { label, in_progress: true } => {
                format!("unfinished xfs filesystem (label \"{label}\")")
            }
            Content::Other(s) => s.clone(),
        }
    }
}

/// The first bytes and last bytes of a device of `size` bytes. Bytes beyond what was read are zero
/// (a fixture file is shorter than the device it stands for).
pub struct Sample<'a> {
    pub head: &'a [u8],
    pub tail: &'a [u8],
    pub size: u64,
}

impl Sample<'_> {
    fn tail_start(&self) -> u64 {
        self.size.saturating_sub(TAIL_BYTES as u64)
    }

    /// `len` bytes at `off`; zeros where nothing was read.
    fn bytes(&self, off: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for (i, b) in out.iter_mut().enumerate() {
            let at = off.saturating_add(i as u64);
            let ts = self.tail_start();
            *b = if at >= ts && at < self.size && ((at - ts) as usize) < self.tail.len() {
                self.tail[(at - ts) as usize]
            } else if (at as usize as u64) == at && (at as usize) < self.head.len() {
                self.head[at as usize]
            } else {
                0
            };
        }
        out
    }

    fn eq(&self, off: u64, want: &[u8]) -> bool {
        self.bytes(off, want.len()) == want
    }

    fn le32(&self, off: u64) -> u32 {
        let b = self.bytes(off, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn le64(&self, off: u64) -> u64 {
        let b = self.bytes(off, 8);
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    }

    fn text(&self, off: u64, len: usize) -> String {
        let b = self.bytes(off, len);
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).trim().to_string()
    }
}

fn md1(s: &Sample, at: u64, metadata: &'static str) -> Option<MdMember> {
    if s.le32(at) != MD_MAGIC || s.le32(at + 4) != 1 {
        return None;
    }
    let dev_number = s.le32(at + 160);
    let max_dev = s.le32(at + 220);
    let role = if dev_number < max_dev.min(1920) {
        let b = s.bytes(at + 256 + 2 * dev_number as u64, 2);
        match u16::from_le_bytes([b[0], b[1]]) {
            r @ 0..=0xfffd => Some(r as u32),
            _ => None,
        }
    } else {
        None
    };
    Some(MdMember {
        metadata,
        uuid: s.bytes(at + 16, 16).try_into().expect("16 bytes"),
        name: s.text(at + 32, 32),
        level: s.le32(at + 72) as i32,
        raid_disks: s.le32(at + 92),
        role,
        data_offset: s.le64(at + 128),
        chunk_sectors: s.le32(at + 88),
    })
}

fn labelled(kind: &str, label: String) -> String {
    if label.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} (label \"{label}\")")
    }
}

/// Identifies what a device carries. The most specific signature wins, in the order `blkid` uses:
/// RAID metadata first (a member of an md 1.0 array also shows the array's filesystem at 0).
pub fn probe(s: &Sample) -> Content {
    let sectors = s.size / 512;
    if let Some(m) = md1(s, 4096, "1.2").or_else(|| md1(s, 0, "1.1")) {
        return Content::Md(m);
    }
    if sectors >= 16 {
        if let Some(m) = md1(s, ((sectors - 16) & !7) * 512, "1.0") {
            return Content::Md(m);
        }
    }
    if s.size >= 0x20000 && s.le32((s.size & !0xffff) - 0x10000) == MD_MAGIC {
        return Content::Other("md 0.90 RAID member superblock".into());
    }
    if s.eq(0, b"LUKS\xba\xbe") || s.eq(16384, b"SKUL\xba\xbe") {
        return Content::Other("LUKS encrypted volume".into());
    }
    if (0..4).any(|i| s.eq(i * 512, b"LABELONE") && s.eq(i * 512 + 24, b"LVM2 001")) {
        return Content::Other("LVM2 physical volume".into());
    }
    if s.eq(4096 + 24, &BCACHE_MAGIC) {
        return Content::Other("bcache device".into());
    }
    if s.eq(512, b"EFI PART") {
        return Content::Other("GPT partition table".into());
    }
    if s.eq(0, b"XFSB") {
        return Content::Xfs { label: s.text(108, 12), in_progress: s.bytes(126, 1)[0] != 0 };
    }
    if s.eq(1080, &[0x53, 0xef]) {
        let compat = s.le32(1024 + 0x5c);
        let incompat = s.le32(1024 + 0x60);
        let kind = if incompat & (0x40 | 0x80 | 0x200) != 0 {
            "ext4 filesystem"
        } else if compat & 0x4 != 0 {
            "ext3 filesystem"
        } else {
            "ext2 filesystem"
        };
        return Content::Other(labelled(kind, s.text(1024 + 0x78, 16)));
    }
    if s.eq(65536 + 64, b"_BHRfS_M") {
        return Content::Other(labelled("btrfs filesystem", s.text(65536 + 0x12b, 256)));
    }
    if [4086u64, 8182, 16374, 65526]
        .iter()
        .any(|&o| s.eq(o, b"SWAPSPACE2") || s.eq(o, b"SWAP-SPACE"))
    {
        return Content::Other("swap space".into());
    }
    if s.eq(32769, b"CD001") {
        return Content::Other("ISO 9660 filesystem".into());
    }
    if s.eq(510, &[0x55, 0xaa]) {
        return Content::Other("MBR partition table or boot sector (0x55AA at byte 510)".into());
    }
    Content::Blank
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a metadata-1.2 member superblock the way mdadm lays it out.
    pub(crate) fn md12(name: &str, uuid: u8, role: u16, raid_disks: u32) -> Vec<u8> {
        let mut b = vec![0u8; 4096 + 512];
        let sb = &mut b[4096..];
        sb[0..4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        sb[4..8].copy_from_slice(&1u32.to_le_bytes());
        sb[16..32].copy_from_slice(&[uuid; 16]);
        sb[32..32 + name.len()].copy_from_slice(name.as_bytes());
        sb[88..92].copy_from_slice(&512u32.to_le_bytes());
        sb[92..96].copy_from_slice(&raid_disks.to_le_bytes());
        sb[128..136].copy_from_slice(&264192u64.to_le_bytes());
        sb[160..164].copy_from_slice(&(role as u32).to_le_bytes());
        sb[220..224].copy_from_slice(&raid_disks.to_le_bytes());
        for r in 0..raid_disks as usize {
            let v = if r == role as usize { role } else { r as u16 };
            sb[256 + 2 * r..258 + 2 * r].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn at(content: &[(u64, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; HEAD_BYTES];
        for (off, bytes) in content {
            b[*off as usize..*off as usize + bytes.len()].copy_from_slice(bytes);
        }
        b
    }

    fn probe_head(head: &[u8]) -> Content {
        probe(&Sample { head, tail: &[], size: 1 << 30 })
    }

    #[test]
    fn blank_and_unrecognised_bytes_are_blank() {
        assert_eq!(probe_head(&[]), Content::Blank);
        assert_eq!(probe_head(&vec![0u8; HEAD_BYTES]), Content::Blank);
        let noise: Vec<u8> = (0..HEAD_BYTES).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(probe_head(&noise), Content::Blank, "unrecognised data is not a signature");
    }

    #[test]
    fn md_members_carry_name_uuid_and_role() {
        let Content::Md(m) = probe_head(&md12("any:nodeprep", 0xab, 2, 4)) else {
            panic!("not md")
        };
        assert_eq!(
            (m.metadata, m.short_name(), m.role, m.raid_disks, m.data_offset),
            ("1.2", "nodeprep", Some(2), 4, 264192)
        );
        assert_eq!(m.uuid_string(), "abababab:abababab:abababab:abababab");
        assert!(probe_head(&md12("any:nodeprep", 1, 0, 2))
            .describe()
            .contains("array \"any:nodeprep\""));
    }

    #[test]
    fn md_superblocks_at_the_end_of_the_device_are_found() {
        let size: u64 = 1 << 30;
        let mut tail = vec![0u8; TAIL_BYTES];
        // metadata 1.0: 8 KiB from the end, 4 KiB aligned.
        let sb = md12("data", 9, 0, 2);
        let off10 = ((size / 512 - 16) & !7) * 512 - (size - TAIL_BYTES as u64);
        tail[off10 as usize..off10 as usize + 512].copy_from_slice(&sb[4096..]);
        let s = Sample { head: &[], tail: &tail, size };
        assert!(matches!(probe(&s), Content::Md(MdMember { metadata: "1.0", .. })));
        // metadata 0.90: 64 KiB from the end (64 KiB aligned).
        let mut tail = vec![0u8; TAIL_BYTES];
        tail[TAIL_BYTES - 65536..TAIL_BYTES - 65536 + 4].copy_from_slice(&MD_MAGIC.to_le_bytes());
        assert_eq!(
            probe(&Sample { head: &[], tail: &tail, size }),
            Content::Other("md 0.90 RAID member superblock".into())
        );
    }

    #[test]
    fn filesystems_and_partition_tables_are_named() {
        let mut xfs = at(&[(0, b"XFSB"), (108, b"nodeprep")]);
        assert_eq!(probe_head(&xfs), Content::Xfs { label: "nodeprep".into(), in_progress: false });
        xfs[126] = 1;
        assert_eq!(probe_head(&xfs).describe(), "unfinished xfs filesystem (label \"nodeprep\")");
        let ext4 = at(&[(1080, &[0x53, 0xef]), (1024 + 0x60, &[0x40, 0, 0, 0]), (1144, b"data")]);
        assert_eq!(probe_head(&ext4).describe(), "ext4 filesystem (label \"data\")");
        assert_eq!(
            probe_head(&at(&[(1080, &[0x53, 0xef]), (1024 + 0x5c, &[4, 0, 0, 0])])).describe(),
            "ext3 filesystem"
        );
        for (bytes, want) in [
            (at(&[(510, &[0x55, 0xaa]), (512, b"EFI PART")]), "GPT partition table"),
            (
                at(&[(510, &[0x55, 0xaa])]),
                "MBR partition table or boot sector (0x55AA at byte 510)",
            ),
            (at(&[(512, b"LABELONE"), (536, b"LVM2 001")]), "LVM2 physical volume"),
            (at(&[(0, b"LUKS\xba\xbe")]), "LUKS encrypted volume"),
            (at(&[(65600, b"_BHRfS_M")]), "btrfs filesystem"),
            (at(&[(4086, b"SWAPSPACE2")]), "swap space"),
            (at(&[(32769, b"CD001")]), "ISO 9660 filesystem"),
            (at(&[(4120, &BCACHE_MAGIC)]), "bcache device"),
        ] {
            assert_eq!(probe_head(&bytes).describe(), want);
        }
    }

    #[test]
    fn a_real_mkfs_xfs_and_mkfs_ext4_are_recognised() {
        // The real tools' output, not just our idea of the layout (scripts/test installs them).
        let dir = tempfile::tempdir().unwrap();
        for (tool, args, want) in [
            (
                "mkfs.xfs",
                &["-q", "-K", "-L", "nodeprep"][..],
                "xfs filesystem (label \"nodeprep\")",
            ),
            (
                "mkfs.ext4",
                &["-q", "-F", "-L", "scratch"][..],
                "ext4 filesystem (label \"scratch\")",
            ),
        ] {
            let img = dir.path().join(tool);
            std::fs::File::create(&img).unwrap().set_len(320 << 20).unwrap();
            let st = std::process::Command::new(tool).args(args).arg(&img).status().unwrap_or_else(
                |e| panic!("{tool}: {e}; install xfsprogs and e2fsprogs (scripts/test does)"),
            );
            assert!(st.success(), "{tool} failed");
            let bytes = std::fs::read(&img).unwrap();
            let s = Sample {
                head: &bytes[..HEAD_BYTES],
                tail: &bytes[bytes.len() - TAIL_BYTES..],
                size: bytes.len() as u64,
            };
            assert_eq!(probe(&s).describe(), want);
        }
    }
}
