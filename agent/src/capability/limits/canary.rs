//! `limits-canary`: proves the `limits` check's claim on the node. A short-lived pod made through
//! containerd's CRI socket (see [`crate::host::cri`]) reports the memlock, stack and open-files
//! limits its process really has, next to what `limits` predicted from the host's files;
//! disagreement fails naming both. On demand in `check` (`--only limits-canary`, `--deep`), once
//! in `serve` after containerd is up; never in a plain `check`.

use std::time::Duration;

use serde_json::{json, Value};

use super::{evaluate, observe, Kind, Limits};
use crate::capability::{Check, Context, Registration, When};
use crate::config::Limit;
use crate::host::cri::{self, CriError};
use crate::host::proc::{Pair, Rlimit};
use crate::report::{CheckResult, Status};

pub const NAME: &str = "limits-canary";
/// The whole canary (pod, limits read, removal) finishes within this, or within the checks'
/// deadline less a second when that is shorter.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The canary's line in the registry.
pub static CANARY: Registration = Registration {
    name: NAME,
    when: When::OnDemandOnceInServe,
    start_rank: 0,
    about: "a canary pod through containerd's CRI: the limits pods really get",
    metrics: &[],
    check: &Canary,
};

pub struct Canary;

fn limit(r: Rlimit) -> Limit {
    match r {
        Rlimit::Unlimited => Limit::Unlimited,
        Rlimit::Bytes(b) => Limit::Bytes(b),
    }
}

fn show(r: Rlimit) -> Value {
    match r {
        Rlimit::Unlimited => Value::from("unlimited"),
        Rlimit::Bytes(b) => Value::from(b),
    }
}

fn pair(p: Pair) -> Value {
    json!({"soft": show(p.soft), "hard": show(p.hard)})
}

fn count(r: Rlimit) -> String {
    match r {
        Rlimit::Unlimited => "unlimited".into(),
        Rlimit::Bytes(n) => n.to_string(),
    }
}

impl Check for Canary {
    fn required(&self, ctx: &Context) -> bool {
        Limits.required(ctx)
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        if ctx.sample_counters {
            if let Some(done) = ctx.once.lock().ok().and_then(|m| m.get(NAME).cloned()) {
                return done;
            }
        }
        let r = measure(ctx);
        // In serve: a conclusive result is kept; a skip (containerd not up yet) is retried next run.
        if ctx.sample_counters && r.status != Status::Skip {
            if let Ok(mut m) = ctx.once.lock() {
                m.insert(NAME, r.clone());
            }
        }
        r
    }
}

fn measure(ctx: &Context) -> CheckResult {
    let snap = observe(&ctx.host);
    let required = Limits::is_required(ctx, || snap.efa_present) || snap.blocks_every_pod();
    let r = CheckResult::new(NAME, Status::Pass, "").required(required);
    let (address, image, systemd_cgroup) = match &snap.cri {
        Some(c) => (c.address.clone(), c.sandbox_image.clone(), c.systemd_cgroup),
        None => {
            return r.status(Status::Skip).summary(format!(
                "no canary: containerd's config could not be read ({})",
                snap.spec.problem().unwrap_or_default()
            ))
        }
    };
    let deadline = DEADLINE
        .min(
            Duration::from_secs(ctx.config.checks.timeout_seconds)
                .saturating_sub(Duration::from_secs(1)),
        )
        .max(Duration::from_secs(1));
    let r = r.found("socket", ctx.host.display(&address)).found("image", image.clone());
    let got = match cri::canary(&ctx.host, &address, &image, systemd_cgroup, deadline) {
        Ok(c) => c,
        Err(e @ CriError::NoSocket { .. }) => {
            return r
                .status(Status::Skip)
                .summary(format!("no canary: {e} (containerd is not running, or runs elsewhere)"))
        }
        Err(e @ CriError::ImageAbsent { .. }) => {
            return r.status(Status::Skip).summary(format!("no canary: {e}")).remedy(format!(
                "pull the sandbox image once (`ctr -n k8s.io images pull {image}`; kubelet does for the first pod)"
            ))
        }
        Err(e) => {
            let remedy = if e.cri_not_loaded() {
                "containerd's CRI plugin is not loaded, so no pod can start: `journalctl -u containerd | grep -i cri` names why (a base_runtime_spec that does not exist or is not JSON, a bad CRI section)".to_string()
            } else {
                format!("see containerd's log (`journalctl -u containerd`); a leftover canary carries the label {}={} and is removed by the next run", cri::CANARY_LABEL.0, cri::CANARY_LABEL.1)
            };
            return r
                .status(Status::Fail)
                .required(true)
                .summary(format!("the canary pod could not be made or read: {e}"))
                .remedy(remedy);
        }
    };
    let mut r = r
        .found(
            "pod",
            json!({
                "memlock": pair(got.limits.memlock),
                "stack": pair(got.limits.stack),
                "nofile": pair(got.limits.nofile),
            }),
        )
        .found("pid", got.pid)
        .found("runtime", got.runtime.clone())
        .found("run_ms", got.run_ms)
        .found("cleanup_ms", got.cleanup_ms)
        .found("leftovers_removed", got.leftovers_removed.clone());
    let mut disagree = Vec::new();
    let mut short = Vec::new();
    let mut predicted = serde_json::Map::new();
    let mut parts = Vec::new();
    for k in Kind::ALL {
        let pod = limit(match k {
            Kind::Memlock => got.limits.memlock.soft,
            Kind::Stack => got.limits.stack.soft,
        });
        let (want_now, source) = snap.effective(k);
        predicted.insert(k.key().into(), want_now.map_or(Value::Null, show_limit));
        parts.push(format!("{} {}", k.key(), evaluate::human(pod)));
        match want_now {
            Some(p) if p != pod => disagree.push(format!(
                "{} {} where the limits check predicted {} (from {source})",
                k.key(),
                evaluate::human(pod),
                evaluate::human(p)
            )),
            _ => {}
        }
        let wanted = k.wanted(&ctx.config.limits);
        if pod < wanted {
            short.push(format!("{} {}", k.key(), evaluate::human(wanted)));
        }
        r = r.expect(k.key(), show_limit(wanted));
    }
    r = r.found("predicted", Value::Object(predicted));
    let nofile =
        format!("nofile {}/{}", count(got.limits.nofile.soft), count(got.limits.nofile.hard));
    parts.push(nofile);
    let what = format!("a pod made through containerd's CRI got {}", parts.join(", "));
    if !disagree.is_empty() {
        return r
            .status(Status::Fail)
            .summary(format!("{what}: {}", disagree.join("; ")))
            .remedy("believe the canary: it measured a real pod. The limits check's model of containerd is wrong on this node; `nodeprep bundle` collects what is needed to report it");
    }
    if !short.is_empty() {
        let mut summary = format!("{what}; config wants {}", short.join(", "));
        if !required {
            summary.push_str("; not required without EFA");
        }
        return r
            .status(if required { Status::Fail } else { Status::Warn })
            .summary(summary)
            .remedy("run `nodeprep boot` (it writes the containerd drop-in and the base runtime spec rlimits), then `systemctl restart containerd`; `nodeprep check --only limits` says which file decides");
    }
    r.summary(format!("{what}, as the limits check predicted"))
}

fn show_limit(l: Limit) -> Value {
    match l {
        Limit::Unlimited => Value::from("unlimited"),
        Limit::Bytes(b) => Value::from(b),
    }
}
