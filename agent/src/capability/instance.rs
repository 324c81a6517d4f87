//! `instance`: what this node is and what it must therefore have. Never required: a node that
//! cannot be identified is still checked for consistency, and says so.

use super::{Check, Context, Registration, When};
use crate::catalog::{self, Expected};
use crate::report::{CheckResult, Status};

/// The `instance` check's line in the registry.
pub static REGISTRATION: Registration = Registration {
    name: "instance",
    when: When::EveryRun,
    start_rank: 5,
    about: "instance type (config, DMI, IMDSv2) and what the catalog says it has",
    metrics: &[],
    check: &Instance,
};

pub struct Instance;

impl Check for Instance {
    fn required(&self, _: &Context) -> bool {
        false
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        let id = &ctx.identity;
        let x = &ctx.expected;
        let mut r = match (&id.instance_type, id.source) {
            (Some(t), Some(src)) => {
                let base = CheckResult::new("instance", Status::Pass, "")
                    .found("instance_type", t.as_str())
                    .found("source", serde_json::to_value(src).expect("source serializes"));
                match catalog::lookup(t) {
                    Some(e) => CheckResult { summary: format!("{t} (from {src}): {}", Expected::describe(e)), ..base },
                    None if has_overrides(ctx) => CheckResult { summary: format!("{t} (from {src}): not in the catalog; using [expect] from the config"), ..base },
                    None => CheckResult {
                        status: Status::Warn,
                        summary: format!("{t} (from {src}) is not in the catalog: hardware is checked for consistency only"),
                        ..base
                    }
                    .remedy("set [expect] gpus/efa/instance_store_disks in the config, or use a nodeprep version whose catalog has this type (`nodeprep catalog`)"),
                }
            }
            _ => CheckResult::new(
                "instance",
                Status::Warn,
                format!(
                    "instance type unknown ({}): hardware is checked for consistency only",
                    id.notes.join("; ")
                ),
            )
            .found("instance_type", serde_json::Value::Null)
            .remedy("set instance_type in /etc/nodeprep/config.toml or pass --instance-type"),
        };
        if let Some(pg) = &id.placement_group {
            r = r.found("placement_group", pg.as_str());
        }
        if let Some(az) = &id.availability_zone {
            r = r.found("availability_zone", az.as_str());
        }
        for (key, v) in
            [("gpus", x.gpus), ("efa", x.efa), ("instance_store_disks", x.instance_store_disks)]
        {
            if let Some(v) = v {
                r = r.expect(key, v);
            }
        }
        r
    }
}

fn has_overrides(ctx: &Context) -> bool {
    let e = &ctx.config.expect;
    e.gpus.is_some()
        || e.efa.is_some()
        || e.instance_store_disks.is_some()
        || e.gpu_model.is_some()
        || e.nvswitch.is_some()
}
