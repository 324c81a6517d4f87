//! `/proc/<pid>/mountinfo`: what is mounted where, in the mount namespace of that process.
//!
//! Storage decides from this every time (no marker files): whether the instance store is mounted at
//! its mount point and whether each bind target shows the right directory of it. Format (proc(5)):
//! `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`, with
//! space, tab, newline and backslash in paths escaped as `\040`, `\011`, `\012`, `\134`.

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u64,
    pub parent: u64,
    /// `(major, minor)` of the device the filesystem is on.
    pub dev: (u32, u32),
    /// The directory of that filesystem that is mounted here (`/` for a whole filesystem; the
    /// directory for a bind mount).
    pub root: String,
    pub mount_point: String,
    /// Per-mount options: `rw,nosuid,nodev,noatime`.
    pub options: Vec<String>,
    pub fstype: String,
    pub source: String,
}

impl Mount {
    pub fn has_option(&self, opt: &str) -> bool {
        self.options.iter().any(|o| o == opt)
    }
}

/// A line that is not a mountinfo record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mountinfo line {line}: {why}")]
pub struct ParseError {
    pub line: usize,
    pub why: &'static str,
}

/// Undoes the kernel's octal escapes (`\040` → space). Anything that is not a valid escape is kept.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_line(line: &str, n: usize) -> Result<Mount, ParseError> {
    let err = |why| ParseError { line: n, why };
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-").ok_or(err("no ` - ` separator"))?;
    if sep < 6 || fields.len() < sep + 3 {
        return Err(err("too few fields"));
    }
    let id = fields[0].parse().map_err(|_| err("mount ID is not a number"))?;
    let parent = fields[1].parse().map_err(|_| err("parent ID is not a number"))?;
    let (maj, min) = fields[2].split_once(':').ok_or(err("device is not MAJOR:MINOR"))?;
    let dev = (
        maj.parse().map_err(|_| err("major is not a number"))?,
        min.parse().map_err(|_| err("minor is not a number"))?,
    );
    Ok(Mount {
        id,
        parent,
        dev,
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        options: fields[5].split(',').map(str::to_string).collect(),
        fstype: unescape(fields[sep + 1]),
        source: unescape(fields[sep + 2]),
    })
}

/// Parses a whole mountinfo file. A malformed line is an error naming its number: a mount table we
/// cannot read completely is not a basis for mounting anything.
pub fn parse(text: &str) -> Result<Vec<Mount>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l, i + 1))
        .collect()
}

/// The mount a path shows: the last (topmost) mount whose mount point is exactly `path`.
pub fn top_at<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    mounts.iter().rev().find(|m| m.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 259:1 / / rw,relatime shared:1 - xfs /dev/nvme0n1p1 rw,attr2,inode64,noquota
90 22 9:127 / /mnt/nodeprep rw,nosuid,nodev,noatime shared:40 - xfs /dev/md127 rw,attr2
91 22 9:127 /var/lib/containerd /var/lib/containerd rw,nosuid,nodev,noatime shared:40 - xfs /dev/md127 rw
92 22 0:50 / /var/lib/containerd rw master:3 - tmpfs tmpfs rw
93 22 0:51 / /mnt/with\\040space rw - tmpfs none rw
";

    #[test]
    fn parses_fields_escapes_and_finds_the_topmost_mount() {
        let m = parse(SAMPLE).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m[1].dev, (9, 127));
        assert_eq!(m[1].fstype, "xfs");
        assert_eq!(m[1].source, "/dev/md127");
        assert!(m[1].has_option("nosuid") && m[1].has_option("noatime") && !m[1].has_option("ro"));
        assert_eq!(m[2].root, "/var/lib/containerd");
        assert_eq!(
            top_at(&m, "/var/lib/containerd").unwrap().fstype,
            "tmpfs",
            "the later mount hides the earlier one"
        );
        assert_eq!(top_at(&m, "/mnt/nodeprep/").unwrap().id, 90);
        assert_eq!(top_at(&m, "/mnt/with space").unwrap().id, 93);
        assert!(top_at(&m, "/var/lib/kubelet").is_none());
    }

    #[test]
    fn malformed_lines_name_their_number() {
        assert_eq!(
            parse("22 1 259:1 / / rw - xfs /dev/x rw\nbroken line\n").unwrap_err().to_string(),
            "mountinfo line 2: no ` - ` separator"
        );
        assert_eq!(
            parse("x 1 259:1 / / rw - xfs /dev/x rw\n").unwrap_err().why,
            "mount ID is not a number"
        );
        assert_eq!(
            parse("1 1 259 / / rw - xfs /dev/x rw\n").unwrap_err().why,
            "device is not MAJOR:MINOR"
        );
        assert_eq!(parse("1 1 1:2 / / rw - xfs\n").unwrap_err().why, "too few fields");
    }

    #[test]
    fn unescape_keeps_what_is_not_an_escape() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("tail\\04"), "tail\\04");
        assert_eq!(unescape("\\999x"), "\\999x");
        assert_eq!(unescape("\\777"), "\\777", "out of byte range stays as written");
    }
}
