//! containerd's config (`/etc/containerd/config.toml`): which base runtime spec its default
//! runtime's containers get, if any.

use super::{Host, HostError};

pub const CONFIG: &str = "/etc/containerd/config.toml";

/// The CRI plugin's table, in config version 2 and in version 3.
const CRI_PLUGINS: [&str; 2] = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"];

/// The base runtime spec containerd's default runtime uses, from config text:
/// `default_runtime_name` (on GPU AMIs often `nvidia`; `runc` when unset), then
/// `runtimes.<name>.base_runtime_spec`, under the CRI plugin. `None` when the config names none
/// (or is not TOML).
pub fn spec_path_from_config(text: &str) -> Option<String> {
    let doc: toml::Table = text.parse().ok()?;
    let plugins = doc.get("plugins")?.as_table()?;
    CRI_PLUGINS.iter().find_map(|p| {
        let ctr = plugins.get(*p)?.get("containerd")?;
        let default = ctr.get("default_runtime_name").and_then(|v| v.as_str()).unwrap_or("runc");
        ctr.get("runtimes")?.get(default)?.get("base_runtime_spec")?.as_str().map(str::to_string)
    })
}

/// The default runtime's base runtime spec path named by the host's containerd config: `Ok(None)`
/// when the config names none or does not exist.
pub fn spec_path(host: &Host) -> Result<Option<String>, HostError> {
    match host.read_string(CONFIG) {
        Ok(text) => Ok(spec_path_from_config(&text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_runtimes_spec_path_comes_from_containerds_config() {
        let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
                  base_runtime_spec = \"/etc/a.json\"\n";
        assert_eq!(
            spec_path_from_config(v2).as_deref(),
            Some("/etc/a.json"),
            "runc is the default"
        );
        let v3 = "version = 3\n[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n\
                  default_runtime_name = \"nvidia\"\n\
                  [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.nvidia]\n\
                  base_runtime_spec = \"/etc/b.json\"\n";
        assert_eq!(spec_path_from_config(v3).as_deref(), Some("/etc/b.json"));
        let other = "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"nvidia\"\n\
                     [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n\
                     base_runtime_spec = \"/etc/a.json\"\n";
        assert_eq!(spec_path_from_config(other), None, "the default runtime names no spec");
        assert_eq!(spec_path_from_config("not toml ["), None);
    }
}
