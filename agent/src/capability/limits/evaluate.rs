//! The `limits` verdict: what a new pod gets against what the config wants, and what to do.

use serde_json::Value;

use super::{Kind, Snapshot, SpecState, POD_RLIMIT_BYTES};
use crate::capability::error_lines;
use crate::config::{Limit, LimitsConfig};
use crate::report::{CheckResult, Status};

/// The check's result for a snapshot; `required`: a shortfall fails (EFA nodes) or only warns.
pub fn evaluate(snap: &Snapshot, cfg: &LimitsConfig, required: bool) -> CheckResult {
    // A spec that stops containerd's CRI plugin stops every pod, EFA or not.
    let required = required || snap.blocks_every_pod();
    let mut r = CheckResult::new("limits", Status::Pass, "").required(required);
    let mut short = Vec::new();
    let mut parts = Vec::new();
    let mut restart = false;
    for k in Kind::ALL {
        let want = k.wanted(cfg);
        let (have, source) = snap.effective(k);
        if let Some(h) = have {
            let bytes = match h {
                Limit::Unlimited => f64::INFINITY,
                Limit::Bytes(b) => b as f64,
            };
            r = r.metric(&POD_RLIMIT_BYTES, [k.key()], bytes);
        }
        r = r
            .expect(k.key(), show(Some(want)))
            .found(k.key(), show(have))
            .found(&format!("{}_source", k.key()), source.clone());
        let ok = have.is_some_and(|h| h >= want);
        parts.push(format!("{} {}", k.key(), have.map_or("unknown".into(), human)));
        if !ok {
            short.push(k);
            // containerd started before its unit's limit was raised: only a restart helps.
            let unit = snap.unit_limit(k).map(|(l, _)| *l);
            if snap.spec_limit(k).is_none()
                && snap.containerd.is_some()
                && unit.is_some_and(|u| u >= want)
            {
                restart = true;
            }
        }
    }
    // containerd reads the spec only at start: what is on disk may not be what it uses.
    let stale = snap.spec_newer_than_containerd();
    let source = snap.effective(Kind::Memlock).1;
    r = r
        .found("runtime", Value::from(snap.runtime()))
        .found("base_runtime_spec", snap.spec_path.as_deref().map_or(Value::Null, Value::from));
    if let Some(cri) = &snap.cri {
        r = r.found("containerd_config", Value::from(cri.describe_files()));
    }
    if stale {
        r = r.found(
            "note",
            Value::from(format!(
                "{} changed after containerd started: what new pods get is what containerd loaded at start, which nodeprep cannot read (`nodeprep check --only limits-canary` measures it)",
                snap.spec_name()
            )),
        );
    }
    r.found.insert("restart_needed".into(), Value::from(restart || stale));
    if !snap.errors.is_empty() {
        r.found.insert("errors".into(), Value::from(error_lines(&snap.errors)));
    }
    if snap.blocks_every_pod() {
        r.status = Status::Fail;
        let what = match snap.spec.problem() {
            None => "does not exist".to_string(),
            Some(why) => format!("is unusable ({why})"),
        };
        r.summary = format!(
            "no pod can start: containerd's config ({}) names {} as the base runtime spec of runtime `{}` and it {what}, so containerd's CRI plugin does not load",
            snap.spec_set_in(),
            snap.spec_name(),
            snap.runtime(),
        );
        let path = snap.spec_name();
        let fix = match snap.spec.problem() {
            None => format!("create {path} as a complete OCI runtime spec (`ctr oci spec > {path}`; `nodeprep boot` then sets its memlock/stack rlimits)"),
            Some(why) => format!("fix {path} ({why}; nodeprep leaves an unusable spec untouched): it must be a complete OCI runtime spec, as `ctr oci spec` prints"),
        };
        return r.remedy(format!(
            "{fix}, or remove base_runtime_spec from {}; then `systemctl restart containerd`",
            snap.spec_set_in()
        ));
    }
    if short.is_empty() && !stale {
        r.summary = format!("new pods get {} (from {source})", parts.join(", "));
        return r;
    }
    r.status = if required { Status::Fail } else { Status::Warn };
    r.summary = if stale {
        format!("{} changed after containerd started: new pods still get the spec containerd loaded at start", snap.spec_name())
    } else {
        let wants: Vec<String> =
            short.iter().map(|&k| format!("{} {}", k.key(), human(k.wanted(cfg)))).collect();
        format!(
            "new pods get {} (from {source}); config wants {}",
            parts.join(", "),
            wants.join(", ")
        )
    };
    if !required {
        r.summary.push_str("; not required without EFA");
    }
    let remedy = if let Some(why) = snap.spec.problem() {
        match &snap.spec {
            SpecState::ConfigUnreadable { .. } => format!(
                "fix containerd's config ({why}); containerd does not start on a config it cannot load"
            ),
            _ => format!(
                "fix {} ({why}); nodeprep leaves an unusable spec untouched",
                snap.spec_name()
            ),
        }
    } else if restart || stale {
        "restart containerd so it picks up its new limits: `systemctl restart containerd` (running containers keep running; do it before GPU/EFA pods are scheduled)".into()
    } else {
        "run `nodeprep boot` (it writes the containerd drop-in and the base runtime spec rlimits), then `systemctl restart containerd` if it is running".into()
    };
    r.remedy(remedy)
}

fn show(l: Option<Limit>) -> Value {
    match l {
        Some(Limit::Unlimited) => Value::from("unlimited"),
        Some(Limit::Bytes(b)) => Value::from(b),
        None => Value::Null,
    }
}

pub(super) fn human(l: Limit) -> String {
    match l {
        Limit::Unlimited => "unlimited".into(),
        Limit::Bytes(b) if b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        Limit::Bytes(b) if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        Limit::Bytes(b) if b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        Limit::Bytes(b) => format!("{b} bytes"),
    }
}
