//! containerd's config as containerd itself loads it (`/etc/containerd/config.toml` and its
//! `imports`): which runtime its CRI plugin uses by default, which base runtime spec (if any) that
//! runtime's containers get, the sandbox image and the gRPC socket.
//!
//! Loading follows containerd (`services/server/config/config.go` in 1.6/1.7,
//! `cmd/containerd/server/config/config.go` in 2.x): the main file first, then its imports
//! breadth-first, each file once; a path without `*` is relative to the importing file's folder; a
//! pattern with `*` is globbed as written in config version 1/2 (containerd's working directory is
//! `/` under systemd) and relative to the importing file's folder in version 3. In versions 1 and 2
//! a plugin section of an imported file **replaces** the whole section before it (this is how an
//! `nvidia-ctk` drop-in that makes `nvidia` the default runtime drops runc's `base_runtime_spec`);
//! in version 3 sections merge key by key. containerd has no default base spec: a config that names
//! none means no spec, whatever exists at `/etc/containerd/base-runtime-spec.json`.

use super::{Host, HostError};

pub const CONFIG: &str = "/etc/containerd/config.toml";
/// containerd's gRPC socket when the config names none.
pub const DEFAULT_ADDRESS: &str = "/run/containerd/containerd.sock";

/// The CRI plugin's runtime table: version 1/2 and version 3.
const CRI_V2: &str = "io.containerd.grpc.v1.cri";
const CRI_V3_RUNTIME: &str = "io.containerd.cri.v1.runtime";
const CRI_V3_IMAGES: &str = "io.containerd.cri.v1.images";
/// The sandbox image containerd uses when the config names none (1.6 / 2.x defaults).
const SANDBOX_V2: &str = "registry.k8s.io/pause:3.6";
const SANDBOX_V3: &str = "registry.k8s.io/pause:3.10";

/// The default runtime's base runtime spec as the config names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecRef {
    /// The spec file (absolute, as containerd opens it).
    pub path: String,
    /// The config file that set it.
    pub set_in: String,
}

/// containerd's effective CRI config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cri {
    /// `version` of the main file (1 when unset).
    pub version: i64,
    /// The files loaded, in containerd's order (empty: no config.toml, containerd's defaults).
    pub files: Vec<String>,
    /// The CRI plugin's `default_runtime_name` (`runc` when unset).
    pub default_runtime: String,
    /// The file that set `default_runtime_name`, if one did.
    pub default_runtime_set_in: Option<String>,
    /// The default runtime's `base_runtime_spec`; `None`: the config names none.
    pub base_runtime_spec: Option<SpecRef>,
    /// The files whose CRI runtime section is in effect (version 2: the last one that had the
    /// section replaced all before it).
    pub cri_section_from: Vec<String>,
    pub sandbox_image: String,
    /// The default runtime's `options.SystemdCgroup`: runc puts containers in systemd units, and
    /// a pod's cgroup parent must be a slice name (kubelet's `cgroupDriver: systemd`; the EKS
    /// AMIs set it).
    pub systemd_cgroup: bool,
    /// The gRPC socket (`grpc.address`).
    pub address: String,
}

impl Cri {
    /// The config files in words, for messages: `/etc/containerd/config.toml` or
    /// `containerd's built-in defaults (no /etc/containerd/config.toml)`.
    pub fn describe_files(&self) -> String {
        match self.files.is_empty() {
            true => format!("containerd's built-in defaults (no {CONFIG})"),
            false => self.files.join(" + "),
        }
    }
}

/// Loads containerd's config from the host as containerd does: `Ok` with the defaults when
/// `/etc/containerd/config.toml` does not exist; an error naming the file when a file (the main one
/// or an import) cannot be read or is not TOML: containerd refuses to start on those as well.
pub fn load(host: &Host) -> Result<Cri, HostError> {
    load_from(host, CONFIG)
}

/// [`load`] from another main file (tests; `containerd --config`).
pub fn load_from(host: &Host, main: &str) -> Result<Cri, HostError> {
    resolve(host, main)
}

/// The default runtime's base runtime spec named by one config document (its imports are not
/// followed): the fuzzers' and property tests' entry.
pub fn spec_path_from_config(text: &str) -> Option<String> {
    resolve(&OneFile(text), CONFIG).ok()?.base_runtime_spec.map(|s| s.path)
}

/// Where config files come from: the host, or one document in memory.
trait Files {
    fn read(&self, path: &str) -> Result<String, HostError>;
    fn list(&self, dir: &str) -> Vec<String>;
    fn exists(&self, path: &str) -> bool;
    fn malformed(&self, path: &str, why: String) -> HostError;
}

impl Files for Host {
    fn read(&self, path: &str) -> Result<String, HostError> {
        self.read_string(path)
    }
    fn list(&self, dir: &str) -> Vec<String> {
        self.list_dir(dir).unwrap_or_default()
    }
    fn exists(&self, path: &str) -> bool {
        Host::exists(self, path)
    }
    fn malformed(&self, path: &str, why: String) -> HostError {
        Host::malformed(self, path, why)
    }
}

/// The main config's text, and no other file.
struct OneFile<'a>(&'a str);

impl Files for OneFile<'_> {
    fn read(&self, path: &str) -> Result<String, HostError> {
        match path == CONFIG {
            true => Ok(self.0.to_string()),
            false => Err(HostError::io(
                "reading",
                path.into(),
                &std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
        }
    }
    fn list(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn exists(&self, path: &str) -> bool {
        path == CONFIG
    }
    fn malformed(&self, path: &str, why: String) -> HostError {
        HostError::malformed(path.into(), why)
    }
}

fn resolve(host: &dyn Files, main: &str) -> Result<Cri, HostError> {
    let mut merged = toml::Table::new();
    let mut files: Vec<String> = Vec::new();
    let mut pending = vec![main.to_string()];
    let mut version = None;
    let mut cri_from: Vec<String> = Vec::new();
    let mut runtime_name_from: Option<String> = None;
    let mut spec_from: Vec<(String, Option<String>)> = Vec::new();
    while !pending.is_empty() {
        let path = pending.remove(0);
        if files.contains(&path) {
            continue;
        }
        let text = match host.read(&path) {
            Ok(t) => t,
            Err(e) if e.is_not_found() && files.is_empty() => return Ok(defaults(version)),
            Err(e) => return Err(e),
        };
        let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            host.malformed(&path, format!("not TOML: {}", e.message()))
        })?;
        let v = doc.get("version").and_then(toml::Value::as_integer).unwrap_or(1);
        let root_version = *version.get_or_insert(v);
        if v > root_version {
            return Err(host.malformed(
                &path,
                format!("drop-in config version {v} higher than the main config's {root_version}"),
            ));
        }
        normalise_plugin_names(&mut doc);
        let imports: Vec<String> = doc
            .get("imports")
            .and_then(toml::Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let cri_key = if root_version >= 3 { CRI_V3_RUNTIME } else { CRI_V2 };
        if let Some(section) = doc.get("plugins").and_then(|p| p.get(cri_key)) {
            if root_version >= 3 {
                cri_from.push(path.clone());
            } else {
                cri_from = vec![path.clone()];
                runtime_name_from = None;
                spec_from.clear();
            }
            let ctr = section.get("containerd");
            if ctr.and_then(|c| c.get("default_runtime_name")).is_some() {
                runtime_name_from = Some(path.clone());
            }
            if let Some(rts) = ctr.and_then(|c| c.get("runtimes")).and_then(toml::Value::as_table) {
                for (name, rt) in rts {
                    if rt.get("base_runtime_spec").is_some() {
                        spec_from.push((name.clone(), Some(path.clone())));
                    }
                }
            }
        }
        merge(&mut merged, doc, root_version);
        files.push(path.clone());
        for i in imports {
            pending.extend(resolve_import(host, &path, &i, root_version));
        }
    }
    let version = version.unwrap_or(1);
    let plugins = merged.get("plugins");
    let (runtime_key, images) = if version >= 3 {
        (CRI_V3_RUNTIME, plugins.and_then(|p| p.get(CRI_V3_IMAGES)))
    } else {
        (CRI_V2, plugins.and_then(|p| p.get(CRI_V2)))
    };
    let ctr = plugins.and_then(|p| p.get(runtime_key)).and_then(|c| c.get("containerd"));
    let default_runtime = ctr
        .and_then(|c| c.get("default_runtime_name"))
        .and_then(toml::Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("runc")
        .to_string();
    let runtime = ctr.and_then(|c| c.get("runtimes")).and_then(|r| r.get(&default_runtime));
    let systemd_cgroup = runtime
        .and_then(|r| r.get("options"))
        .and_then(|o| o.get("SystemdCgroup"))
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    let spec = runtime
        .and_then(|r| r.get("base_runtime_spec"))
        .and_then(toml::Value::as_str)
        .filter(|s| !s.is_empty());
    let base_runtime_spec = spec.map(|p| SpecRef {
        path: absolute(p),
        set_in: spec_from
            .iter()
            .rev()
            .find(|(n, _)| *n == default_runtime)
            .and_then(|(_, f)| f.clone())
            .unwrap_or_else(|| files[0].clone()),
    });
    let sandbox_image = if version >= 3 {
        images.and_then(|i| i.get("pinned_images")).and_then(|p| p.get("sandbox"))
    } else {
        images.and_then(|i| i.get("sandbox_image"))
    }
    .and_then(toml::Value::as_str)
    .map(str::to_string)
    .unwrap_or_else(|| if version >= 3 { SANDBOX_V3 } else { SANDBOX_V2 }.to_string());
    let address = merged
        .get("grpc")
        .and_then(|g| g.get("address"))
        .or_else(|| {
            plugins
                .and_then(|p| p.get("io.containerd.server.v1.grpc"))
                .and_then(|g| g.get("address"))
        })
        .and_then(toml::Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_ADDRESS)
        .to_string();
    Ok(Cri {
        version,
        files,
        default_runtime,
        default_runtime_set_in: runtime_name_from,
        base_runtime_spec,
        cri_section_from: cri_from,
        sandbox_image,
        systemd_cgroup,
        address,
    })
}

fn defaults(version: Option<i64>) -> Cri {
    let v3 = version.unwrap_or(2) >= 3;
    Cri {
        version: version.unwrap_or(1),
        files: Vec::new(),
        default_runtime: "runc".into(),
        default_runtime_set_in: None,
        base_runtime_spec: None,
        cri_section_from: Vec::new(),
        sandbox_image: if v3 { SANDBOX_V3 } else { SANDBOX_V2 }.into(),
        systemd_cgroup: false,
        address: DEFAULT_ADDRESS.into(),
    }
}

/// containerd opens a relative spec path from its working directory, `/` under systemd.
fn absolute(p: &str) -> String {
    match p.starts_with('/') {
        true => p.to_string(),
        false => format!("/{p}"),
    }
}

/// Version 1 names plugins without their type (`cri`); containerd reads them as
/// `io.containerd.grpc.v1.<name>`.
fn normalise_plugin_names(doc: &mut toml::Table) {
    let Some(plugins) = doc.get_mut("plugins").and_then(toml::Value::as_table_mut) else {
        return;
    };
    let short: Vec<String> = plugins.keys().filter(|k| !k.contains('.')).cloned().collect();
    for k in short {
        if let Some(v) = plugins.remove(&k) {
            plugins.insert(format!("io.containerd.grpc.v1.{k}"), v);
        }
    }
}

/// Merges `from` into `to` as containerd does: scalars override, arrays append, tables merge, and
/// in versions 1/2 each plugin section of `from` replaces the whole section in `to`.
fn merge(to: &mut toml::Table, from: toml::Table, version: i64) {
    for (k, v) in from {
        if k == "plugins" && version < 3 {
            if let toml::Value::Table(sections) = v {
                let dst =
                    to.entry("plugins").or_insert_with(|| toml::Value::Table(Default::default()));
                if let Some(dst) = dst.as_table_mut() {
                    for (name, section) in sections {
                        dst.insert(name, section);
                    }
                }
            }
            continue;
        }
        match (to.get_mut(&k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b, 3),
            (Some(toml::Value::Array(a)), toml::Value::Array(b)) => a.extend(b),
            (_, v) => {
                to.insert(k, v);
            }
        }
    }
}

/// The files one `imports` entry names: a path without `*` as is (relative to the importing
/// file's folder), a pattern globbed (see the module's note on versions), matches sorted.
fn resolve_import(host: &dyn Files, parent: &str, import: &str, version: i64) -> Vec<String> {
    let dir = parent.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d });
    let joined = |p: &str| match p.starts_with('/') {
        true => clean(p),
        false => clean(&format!("{dir}/{p}")),
    };
    if !import.contains('*') {
        return vec![joined(import)];
    }
    let pattern = match (import.starts_with('/'), version >= 3) {
        (true, _) => clean(import),
        (false, true) => joined(import),
        (false, false) => clean(&format!("/{import}")),
    };
    glob(host, &pattern)
}

/// Lexical cleaning as Go's `filepath.Clean`: no `.`, no empty parts, `..` removes its parent.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Go's `filepath.Glob` on the host for an absolute pattern with `*` and `?` in any component;
/// entries that cannot be listed match nothing, as in Go.
fn glob(host: &dyn Files, pattern: &str) -> Vec<String> {
    let mut found = vec![String::new()];
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if !part.contains(['*', '?']) {
                next.push(format!("{base}/{part}"));
                continue;
            }
            let dir = if base.is_empty() { "/".to_string() } else { base.clone() };
            let mut names = host.list(&dir);
            names.sort();
            next.extend(
                names.into_iter().filter(|n| wildcard(part, n)).map(|n| format!("{base}/{n}")),
            );
        }
        found = next;
    }
    found.into_iter().filter(|p| !p.is_empty() && host.exists(p)).collect()
}

/// `*` (any run of characters but `/`) and `?` (one character) against a file name; a leading
/// `.` is matched like any other character, as Go does.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Host) {
        let dir = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let path = dir.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        let host = Host::new(dir.path());
        (dir, host)
    }

    const RUNC_SPEC: &str = "version = 2\n\
        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
        base_runtime_spec = \"/etc/containerd/base-runtime-spec.json\"\n";

    #[test]
    fn the_default_runtimes_spec_comes_from_the_config_and_only_from_it() {
        let (_d, h) = tree(&[(CONFIG, RUNC_SPEC)]);
        let c = load(&h).unwrap();
        assert_eq!(c.default_runtime, "runc");
        assert_eq!(
            c.base_runtime_spec,
            Some(SpecRef {
                path: "/etc/containerd/base-runtime-spec.json".into(),
                set_in: CONFIG.into()
            })
        );
        let v3 = "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n\
                  default_runtime_name = \"nvidia\"\n\
                  [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.nvidia]\n\
                  base_runtime_spec = \"/etc/b.json\"\n\
                  [plugins.\"io.containerd.cri.v1.images\".pinned_images]\nsandbox = \"localhost/p:1\"\n";
        let (_d, h) = tree(&[(CONFIG, v3)]);
        let c = load(&h).unwrap();
        assert_eq!(c.base_runtime_spec.unwrap().path, "/etc/b.json");
        assert_eq!(c.sandbox_image, "localhost/p:1");
        assert!(!c.systemd_cgroup);
        let systemd = format!(
            "{v3}[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.nvidia.options]\nSystemdCgroup = true\n"
        );
        let (_d, h) = tree(&[(CONFIG, &systemd)]);
        assert!(load(&h).unwrap().systemd_cgroup, "the default runtime's SystemdCgroup");
        let other = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"nvidia\"\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
                     base_runtime_spec = \"/etc/a.json\"\n";
        let (_d, h) = tree(&[(CONFIG, other), ("/etc/containerd/base-runtime-spec.json", "{}")]);
        let c = load(&h).unwrap();
        assert_eq!(c.base_runtime_spec, None, "the default runtime names no spec");
        assert_eq!(c.default_runtime_set_in.as_deref(), Some(CONFIG));
        // Debian's stock config: no CRI section at all; no config.toml: containerd's defaults.
        let (_d, h) = tree(&[(CONFIG, "version = 2\n")]);
        assert_eq!(load(&h).unwrap().base_runtime_spec, None);
        let (_d, h) = tree(&[("/etc/containerd/base-runtime-spec.json", "{}")]);
        let c = load(&h).unwrap();
        assert_eq!((c.base_runtime_spec, c.files.len()), (None, 0));
        assert_eq!(c.address, DEFAULT_ADDRESS);
        let (_d, h) = tree(&[(CONFIG, "not toml [")]);
        let e = load(&h).unwrap_err();
        assert!(e.to_string().contains("config.toml") && e.to_string().contains("not TOML"), "{e}");
    }

    #[test]
    fn an_imported_plugin_section_replaces_the_whole_section_in_version_2() {
        let main = format!("imports = [\"conf.d/99-nvidia.toml\"]\n{RUNC_SPEC}");
        let nvidia = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n\
                      default_runtime_name = \"nvidia\"\n\
                      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n\
                      runtime_type = \"io.containerd.runc.v2\"\n";
        let (_d, h) = tree(&[(CONFIG, &main), ("/etc/containerd/conf.d/99-nvidia.toml", nvidia)]);
        let c = load(&h).unwrap();
        assert_eq!(c.files, [CONFIG, "/etc/containerd/conf.d/99-nvidia.toml"]);
        assert_eq!(c.default_runtime, "nvidia");
        assert_eq!(c.base_runtime_spec, None);
        assert_eq!(c.cri_section_from, ["/etc/containerd/conf.d/99-nvidia.toml"]);
        // Even a drop-in that names runc again drops the spec: the section is replaced, not merged.
        let runc_again =
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
                          runtime_type = \"io.containerd.runc.v2\"\n";
        let main = format!("imports = [\"/etc/containerd/conf.d/*.toml\"]\n{RUNC_SPEC}");
        let (_d, h) = tree(&[(CONFIG, &main), ("/etc/containerd/conf.d/10-runc.toml", runc_again)]);
        assert_eq!(load(&h).unwrap().base_runtime_spec, None);
    }

    #[test]
    fn version_3_merges_sections_and_globs_relative_to_the_importing_file() {
        let main = "version = 3\nimports = [\"conf.d/*.toml\"]\n\
                    [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc]\n\
                    base_runtime_spec = \"/etc/containerd/base-runtime-spec.json\"\n";
        let nvidia = "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n\
                      default_runtime_name = \"nvidia\"\n\
                      [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.nvidia]\n\
                      runtime_type = \"io.containerd.runc.v2\"\n";
        let (_d, h) = tree(&[
            (CONFIG, main),
            ("/etc/containerd/conf.d/99-nvidia.toml", nvidia),
            ("/etc/containerd/conf.d/README", "not imported"),
        ]);
        let c = load(&h).unwrap();
        assert_eq!(c.files.len(), 2, "{:?}", c.files);
        assert_eq!(c.default_runtime, "nvidia");
        assert_eq!(c.base_runtime_spec, None, "nvidia names no spec; runc's stays runc's");
        let spec_for_nvidia =
            "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.nvidia]\n\
                               base_runtime_spec = \"/etc/n.json\"\n";
        let (_d, h) = tree(&[
            (CONFIG, main),
            ("/etc/containerd/conf.d/10-nvidia.toml", nvidia),
            ("/etc/containerd/conf.d/20-spec.toml", spec_for_nvidia),
        ]);
        let c = load(&h).unwrap();
        assert_eq!(
            c.base_runtime_spec,
            Some(SpecRef {
                path: "/etc/n.json".into(),
                set_in: "/etc/containerd/conf.d/20-spec.toml".into()
            })
        );
        // A relative glob in version 2 is containerd's working directory's (`/`), not the folder's.
        let v2 = format!("imports = [\"conf.d/*.toml\"]\n{RUNC_SPEC}");
        let (_d, h) = tree(&[(CONFIG, &v2), ("/etc/containerd/conf.d/99-nvidia.toml", nvidia)]);
        assert_eq!(load(&h).unwrap().files, [CONFIG]);
    }

    #[test]
    fn imports_load_once_and_a_missing_or_higher_version_import_is_an_error_naming_it() {
        let main = format!("imports = [\"a.toml\", \"./a.toml\"]\n{RUNC_SPEC}");
        let a = "version = 2\nimports = [\"/etc/containerd/config.toml\"]\n";
        let (_d, h) = tree(&[(CONFIG, &main), ("/etc/containerd/a.toml", a)]);
        assert_eq!(load(&h).unwrap().files, [CONFIG, "/etc/containerd/a.toml"]);
        let main = format!("imports = [\"gone.toml\"]\n{RUNC_SPEC}");
        let (_d, h) = tree(&[(CONFIG, &main)]);
        let e = load(&h).unwrap_err();
        assert!(e.is_not_found() && e.to_string().contains("gone.toml"), "{e}");
        let (_d, h) = tree(&[
            (CONFIG, "version = 2\nimports = [\"b.toml\"]\n"),
            ("/etc/containerd/b.toml", "version = 3\n"),
        ]);
        assert!(load(&h).unwrap_err().to_string().contains("higher than"));
    }

    #[test]
    fn version_1_plugin_names_and_go_style_paths() {
        let v1 = "[plugins.cri]\nsandbox_image = \"x/pause:1\"\n[plugins.cri.containerd.runtimes.runc]\nbase_runtime_spec = \"etc/s.json\"\n";
        let (_d, h) = tree(&[(CONFIG, v1)]);
        let c = load(&h).unwrap();
        assert_eq!((c.version, c.sandbox_image.as_str()), (1, "x/pause:1"));
        assert_eq!(c.base_runtime_spec.unwrap().path, "/etc/s.json");
        assert_eq!(clean("/etc/containerd/./conf.d/../a.toml"), "/etc/containerd/a.toml");
        assert!(wildcard("*.toml", "99-nvidia.toml") && !wildcard("*.toml", "README"));
        assert!(wildcard("a?c*", "abcdef") && !wildcard("a?c", "ac"));
    }
}
