//! Plans memlock/stack limits where pods get them: a containerd drop-in (LimitMEMLOCK/LimitSTACK),
//! the base runtime spec's `process.rlimits` (only RLIMIT_MEMLOCK and RLIMIT_STACK; every other
//! entry, notably RLIMIT_NOFILE, stays exactly as it was), and limits.d for login sessions.
//! containerd is never restarted: pods may be running. When it runs with lower limits the plan
//! says so, with the command.

use serde_json::Value;

use super::{Kind, Snapshot, SpecState, BASE_RUNTIME_SPEC, DROPIN, LIMITS_D, RLIM_INFINITY};
use crate::apply::{programs, Action, Plan};
use crate::config::{Limit, LimitsConfig, Mode};

fn systemd_value(l: Limit) -> String {
    match l {
        Limit::Unlimited => "infinity".into(),
        Limit::Bytes(b) => b.to_string(),
    }
}

/// limits.conf counts memlock and stack in KiB.
fn limits_conf_value(l: Limit) -> String {
    match l {
        Limit::Unlimited => "unlimited".into(),
        Limit::Bytes(b) => b.div_ceil(1024).to_string(),
    }
}

fn oci_value(l: Limit) -> u64 {
    match l {
        Limit::Unlimited => RLIM_INFINITY,
        Limit::Bytes(b) => b,
    }
}

pub fn dropin_content(cfg: &LimitsConfig) -> String {
    format!(
        "# Written by `nodeprep boot`; set [limits] in /etc/nodeprep/config.toml instead of editing.\n\
         # containerd passes these limits to every container whose OCI spec does not set its own.\n\
         [Service]\nLimitMEMLOCK={}\nLimitSTACK={}\n",
        systemd_value(cfg.memlock),
        systemd_value(cfg.stack)
    )
}

pub fn limits_d_content(cfg: &LimitsConfig) -> String {
    let (m, s) = (limits_conf_value(cfg.memlock), limits_conf_value(cfg.stack));
    format!(
        "# Written by `nodeprep boot` for login sessions (SSM shells). Pods never read this file:\n\
         # their limits come from containerd (see 50-nodeprep-limits.conf) and its base runtime spec.\n\
         *    soft    memlock    {m}\n*    hard    memlock    {m}\n*    soft    stack      {s}\n*    hard    stack      {s}\n"
    )
}

/// The spec with RLIMIT_MEMLOCK and RLIMIT_STACK set; `None` when it already has them.
pub fn updated_spec(spec: &Value, cfg: &LimitsConfig) -> Option<Value> {
    let mut new = spec.clone();
    let process =
        new.as_object_mut()?.entry("process").or_insert_with(|| Value::Object(Default::default()));
    let rlimits = process
        .as_object_mut()?
        .entry("rlimits")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()?;
    for k in Kind::ALL {
        let v = oci_value(k.wanted(cfg));
        let entry = serde_json::json!({"type": k.oci(), "hard": v, "soft": v});
        match rlimits.iter_mut().find(|e| e.get("type").and_then(Value::as_str) == Some(k.oci())) {
            Some(e) => {
                // Keep any other fields of the entry; set only hard and soft.
                if let Some(obj) = e.as_object_mut() {
                    obj.insert("hard".into(), Value::from(v));
                    obj.insert("soft".into(), Value::from(v));
                } else {
                    *e = entry;
                }
            }
            None => rlimits.push(entry),
        }
    }
    (new != *spec).then_some(new)
}

/// Why limits are not applied on this node, if they are not.
pub fn skipped_because(cfg: &LimitsConfig, snap: &Snapshot) -> Option<String> {
    match cfg.apply {
        Mode::Never => Some("limits.apply = \"never\"".into()),
        Mode::Auto if !snap.efa_present => {
            Some("no EFA devices on this node (limits.apply = \"auto\")".into())
        }
        _ => None,
    }
}

/// Computes the limits plan from what the host shows now. `live`: `--root` is `/`.
pub fn plan(snap: &Snapshot, cfg: &LimitsConfig, live: bool) -> Plan {
    let mut actions = Vec::new();
    if let Some(why) = skipped_because(cfg, snap) {
        actions.push(Action::Skip { what: "memlock/stack limits".into(), why });
        return Plan { capability: "limits", actions };
    }
    let dropin = dropin_content(cfg);
    let dropin_changes = snap.dropin.as_deref() != Some(dropin.as_str());
    if dropin_changes {
        actions.push(Action::WriteFile {
            path: DROPIN.into(),
            content: dropin,
            old: snap.dropin.clone(),
            mode: 0o644,
            why: "containerd's own memlock/stack, inherited by containers".into(),
        });
    }
    let limits_d = limits_d_content(cfg);
    if snap.limits_d.as_deref() != Some(limits_d.as_str()) {
        actions.push(Action::WriteFile {
            path: LIMITS_D.into(),
            content: limits_d,
            old: snap.limits_d.clone(),
            mode: 0o644,
            why: "login sessions (SSM shells)".into(),
        });
    }
    let mut spec_changes = false;
    let path = snap.spec_name();
    match &snap.spec {
        SpecState::NotNamed => actions.push(Action::Skip {
            what: "base runtime spec".into(),
            why: format!(
                "containerd's config ({}) names no base_runtime_spec for its default runtime `{}`: containers get containerd's own limits (the drop-in above); containerd never reads {BASE_RUNTIME_SPEC} unless its config names it, so nodeprep leaves that file alone",
                snap.cri.as_ref().map_or_else(String::new, |c| c.describe_files()),
                snap.runtime()
            ),
        }),
        SpecState::Missing => actions.push(Action::Notice {
            message: format!(
                "containerd's config ({}) names {path} as the base runtime spec of runtime `{}` but it does not exist: containerd's CRI plugin will not load and no pod can start. nodeprep does not invent a whole OCI spec: create it (`ctr oci spec > {path}`, then run `nodeprep boot` again to set its rlimits) or remove base_runtime_spec from {}",
                snap.spec_set_in(),
                snap.runtime(),
                snap.spec_set_in()
            ),
        }),
        SpecState::ConfigUnreadable { .. } => actions.push(Action::Notice {
            message: format!(
                "containerd's config could not be read ({}): which base runtime spec it uses is unknown, so nodeprep writes none; fix the config",
                snap.spec.problem().unwrap_or_default()
            ),
        }),
        SpecState::Invalid { .. } => actions.push(Action::Notice {
            message: format!(
                "{path} left untouched: {}; containerd's CRI plugin does not load a spec it cannot parse, so no pod can start: fix it, or remove base_runtime_spec from {}",
                snap.spec.problem().unwrap_or_default(),
                snap.spec_set_in()
            ),
        }),
        SpecState::Valid { text, value, .. } => {
            if let Some(new) = updated_spec(value, cfg) {
                spec_changes = true;
                let content =
                    serde_json::to_string_pretty(&new).expect("JSON value serializes") + "\n";
                actions.push(Action::WriteFile {
                    path: path.into(),
                    content,
                    old: Some(text.clone()),
                    mode: 0o644,
                    why: "RLIMIT_MEMLOCK/RLIMIT_STACK in process.rlimits (other entries kept)"
                        .into(),
                });
            }
        }
    }
    if dropin_changes {
        match (live, snap.systemd_running) {
            (true, true) => {
                actions.push(programs::systemctl_daemon_reload("load the containerd drop-in"))
            }
            (false, _) => actions.push(Action::Skip {
                what: "systemctl daemon-reload".into(),
                why: "--root is not /".into(),
            }),
            (true, false) => actions.push(Action::Skip {
                what: "systemctl daemon-reload".into(),
                why: "systemd is not running".into(),
            }),
        }
    }
    if let Some(c) = &snap.containerd {
        // With a usable spec, pods get its rlimits, but containerd reads the spec only when it
        // starts. Without one, pods inherit containerd's own limits.
        let reason = match &snap.spec {
            SpecState::Valid { .. } if spec_changes || snap.spec_newer_than_containerd() => {
                Some("it has not loaded the updated base runtime spec".to_string())
            }
            SpecState::Valid { .. } => None,
            _ => {
                let low: Vec<&str> = Kind::ALL
                    .into_iter()
                    .filter(|&k| snap.containerd_limit(k).is_none_or(|have| have < k.wanted(cfg)))
                    .map(Kind::key)
                    .collect();
                (!low.is_empty())
                    .then(|| format!("it runs with a lower {} than configured", low.join(" and ")))
            }
        };
        if let Some(reason) = reason {
            actions.push(Action::Notice {
                message: format!(
                    "containerd must be restarted: {reason} (pid {}); nodeprep does not restart it because pods may be running: run `systemctl restart containerd`",
                    c.pid
                ),
            });
        }
    }
    Plan { capability: "limits", actions }
}
