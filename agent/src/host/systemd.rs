//! systemd unit files as systemd reads them: the unit from the first unit directory that has it,
//! then its drop-ins (`<unit>.d/*.conf`) ordered by file name, a name in an earlier directory hiding
//! the same name in a later one; for each setting, the last assignment wins.

use super::{Host, HostError};

/// Where units live, in systemd's order of precedence.
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// One `Key=value` line of a unit file's section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: String,
    /// The host path of the file that sets it.
    pub file: String,
}

/// Every `key=value` of section `[section]` of `unit` and its drop-ins, in the order systemd
/// applies them (so the last one of a key is in effect). Files that exist but cannot be read are
/// in the errors; a unit that does not exist gives nothing.
pub fn settings(host: &Host, unit: &str, section: &str) -> (Vec<Setting>, Vec<HostError>) {
    let mut files: Vec<String> = Vec::new();
    if let Some(f) = UNIT_DIRS.iter().map(|d| format!("{d}/{unit}")).find(|p| host.exists(p)) {
        files.push(f);
    }
    let mut dropins: Vec<(String, String)> = Vec::new();
    for dir in UNIT_DIRS {
        let d = format!("{dir}/{unit}.d");
        for name in host.list_dir_opt(&d).unwrap_or_default() {
            if name.ends_with(".conf") && !dropins.iter().any(|(n, _)| *n == name) {
                dropins.push((name.clone(), format!("{d}/{name}")));
            }
        }
    }
    dropins.sort();
    files.extend(dropins.into_iter().map(|(_, p)| p));
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    let header = format!("[{section}]");
    for file in files {
        let text = match host.read_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut inside = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                inside = line == header;
            } else if inside && !line.starts_with(['#', ';']) {
                if let Some((k, v)) = line.split_once('=') {
                    let (key, value) = (k.trim().to_string(), v.trim().to_string());
                    out.push(Setting { key, value, file: file.clone() });
                }
            }
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_then_its_drop_ins_by_name_etc_hiding_usr_lib() {
        let dir = tempfile::tempdir().unwrap();
        let w = |p: &str, c: &str| {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        };
        w(
            "usr/lib/systemd/system/containerd.service",
            "[Unit]\nLimitSTACK=1\n[Service]\nLimitMEMLOCK=1\n",
        );
        w("usr/lib/systemd/system/containerd.service.d/20-x.conf", "[Service]\nLimitMEMLOCK=2\n");
        w(
            "etc/systemd/system/containerd.service.d/20-x.conf",
            "[Service]\n# LimitMEMLOCK=9\nLimitMEMLOCK=3\n",
        );
        w("run/systemd/system/containerd.service.d/10-a.conf", "[Service]\nLimitSTACK = 4\n");
        let (s, errors) = settings(&Host::new(dir.path()), "containerd.service", "Service");
        assert!(errors.is_empty());
        let got: Vec<(&str, &str, &str)> =
            s.iter().map(|s| (s.key.as_str(), s.value.as_str(), s.file.as_str())).collect();
        assert_eq!(
            got,
            [
                ("LimitMEMLOCK", "1", "/usr/lib/systemd/system/containerd.service"),
                ("LimitSTACK", "4", "/run/systemd/system/containerd.service.d/10-a.conf"),
                ("LimitMEMLOCK", "3", "/etc/systemd/system/containerd.service.d/20-x.conf"),
            ]
        );
        assert!(settings(&Host::new(dir.path()), "kubelet.service", "Service").0.is_empty());
    }
}
