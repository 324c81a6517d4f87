//! `device-plugins`: the devices kubelet has registered from its device plugins, read from kubelet's
//! checkpoint file, so it works without API access. A GPU/EFA node whose plugins have not registered
//! cannot run GPU/EFA pods: they sit Pending.
//!
//! kubelet writes `var/lib/kubelet/device-plugins/kubelet_internal_checkpoint` as
//! `{"Data":{"PodDeviceEntries":[...],"RegisteredDevices":{"nvidia.com/gpu":["GPU-…",…]}},"Checksum":N}`.

use serde_json::Value;

use super::{Check, Context, Registration, When};
use crate::report::{CheckResult, MetricDef, MetricKind, Sample, Status};

pub const CHECKPOINT: &str = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint";
pub const GPU: &str = "nvidia.com/gpu";
pub const EFA: &str = "vpc.amazonaws.com/efa";

/// What is wrong with a checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("no \"Data\" object")]
    NoData,
    #[error("\"Data.RegisteredDevices\" is not an object")]
    NotAnObject,
    #[error("\"Data.RegisteredDevices.{0}\" is not a list")]
    NotAList(String),
}

/// Registered device counts per resource name, from the checkpoint's text.
pub fn parse_checkpoint(text: &str) -> Result<Vec<(String, usize)>, CheckpointError> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| CheckpointError::NotJson(e.to_string()))?;
    let data = v.get("Data").ok_or(CheckpointError::NoData)?;
    let registered = match data.get("RegisteredDevices") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(CheckpointError::NotAnObject),
    };
    let mut out = Vec::new();
    for (name, devs) in registered {
        let n = match devs {
            Value::Array(a) => a.len(),
            Value::Null => 0,
            _ => return Err(CheckpointError::NotAList(name.clone())),
        };
        out.push((name.clone(), n));
    }
    Ok(out)
}

pub static DEVICES_REGISTERED: MetricDef = MetricDef {
    name: "device_plugin_devices",
    help: "Devices registered with kubelet per resource (the device-plugins check's found)",
    kind: MetricKind::Gauge,
    labels: &["resource"],
};
pub static DEVICES_EXPECTED: MetricDef = MetricDef {
    name: "device_plugin_devices_expected",
    help: "Devices this node must register per resource (the device-plugins check's expected)",
    kind: MetricKind::Gauge,
    labels: &["resource"],
};

/// The `device-plugins` check's line in the registry.
pub static REGISTRATION: Registration = Registration {
    name: "device-plugins",
    when: When::AfterKubelet,
    start_rank: 4,
    about: "GPUs and EFA registered with kubelet by their device plugins",
    metrics: &[&DEVICES_REGISTERED, &DEVICES_EXPECTED],
    check: &DevicePlugins,
};

pub struct DevicePlugins;

impl DevicePlugins {
    /// `(resource, expected count)` for the resources this node must register.
    fn expected(ctx: &Context) -> Vec<(&'static str, Option<u32>)> {
        vec![(GPU, ctx.expected.gpus), (EFA, ctx.expected.efa)]
    }
}

impl Check for DevicePlugins {
    fn required(&self, ctx: &Context) -> bool {
        Self::expected(ctx).iter().any(|(_, n)| n.is_some_and(|n| n > 0))
    }

    fn run(&self, ctx: &Context) -> CheckResult {
        // The metrics are the verdict's own numbers.
        let mut r = self.verdict(ctx);
        for res in [GPU, EFA] {
            for (def, map) in [(&DEVICES_REGISTERED, &r.found), (&DEVICES_EXPECTED, &r.expected)] {
                if let Some(n) = map.get(res).and_then(Value::as_f64) {
                    r.metrics.push(Sample { metric: def, labels: vec![res.to_string()], value: n });
                }
            }
        }
        r
    }
}

impl DevicePlugins {
    fn verdict(&self, ctx: &Context) -> CheckResult {
        let required = self.required(ctx);
        let expected = Self::expected(ctx);
        let mut r = CheckResult::new("device-plugins", Status::Pass, "").required(required);
        for (res, n) in &expected {
            r = r.expect(res, n.map_or(Value::Null, Value::from));
        }
        let path = ctx.host.display(CHECKPOINT);
        let text = match ctx.host.read_string(CHECKPOINT) {
            Ok(t) => Some(t),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                r.status = Status::Fail;
                r.summary = format!("cannot read kubelet's device-plugin checkpoint: {e}");
                return r
                    .remedy("run nodeprep as root, or mount /var/lib/kubelet into its container");
            }
        };
        if !required {
            r.status = Status::Skip;
            r.summary = "no GPUs or EFA expected on this instance type".into();
            return r;
        }
        let Some(text) = text else {
            r.status = Status::Fail;
            r.summary = format!("no device plugin has registered with kubelet ({path} absent)");
            for (res, _) in &expected {
                r = r.found(res, 0);
            }
            return r.remedy("check that kubelet runs and that the NVIDIA and EFA device plugin DaemonSets have pods on this node (`kubectl get pods -A -o wide --field-selector spec.nodeName=<node>`)");
        };
        // Kubelet's state survives a reboot on the instance store: a checkpoint from before this
        // boot says what plugins registered last boot, not now.
        if let (Ok(meta), Ok(boot)) =
            (ctx.host.metadata(CHECKPOINT), crate::host::proc::booted(&ctx.host))
        {
            if let Some(written) = meta.modified.filter(|m| *m < boot.at) {
                let when =
                    |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
                r.status = Status::Fail;
                r.summary = format!(
                    "no device plugin has registered since this boot: {path} is from before it (written {}, booted {}), so it is not believed",
                    when(written),
                    when(boot.at)
                );
                for (res, _) in &expected {
                    r = r.found(res, 0);
                }
                return r.found("checkpoint_before_boot", true).remedy("check that kubelet runs and that the NVIDIA and EFA device plugin DaemonSets have pods on this node; kubelet rewrites the checkpoint when a plugin registers");
            }
        }
        let counts = match parse_checkpoint(&text) {
            Ok(c) => c,
            Err(e) => {
                r.status = Status::Fail;
                r.summary = format!("{path}: {e}");
                return r.remedy("kubelet rewrites this file when a plugin registers; restart kubelet if it stays unreadable");
            }
        };
        let mut short = Vec::new();
        let mut parts = Vec::new();
        for (res, want) in &expected {
            let have = counts.iter().find(|(n, _)| n == res).map_or(0, |(_, c)| *c);
            r = r.found(res, have);
            if let Some(want) = want.filter(|w| *w > 0) {
                parts.push(format!("{res} {have}/{want}"));
                if have < want as usize {
                    short.push(*res);
                }
            }
        }
        r.summary = format!("registered with kubelet: {}", parts.join(", "));
        if !short.is_empty() {
            r.status = Status::Fail;
            let plugin = |res: &str| {
                if res == GPU {
                    "NVIDIA device plugin (or GPU operator)"
                } else {
                    "aws-efa-k8s-device-plugin"
                }
            };
            let names: Vec<String> = short.iter().map(|s| plugin(s).to_string()).collect();
            r = r.remedy(format!("the {} has not registered every device: check its pod logs on this node; a plugin started before the driver was ready must be restarted", names.join(" and ")));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_parsing() {
        let t = r#"{"Data":{"PodDeviceEntries":null,"RegisteredDevices":{"nvidia.com/gpu":["a","b"],"vpc.amazonaws.com/efa":[]}},"Checksum":1}"#;
        let c = parse_checkpoint(t).unwrap();
        assert_eq!(
            c,
            vec![("nvidia.com/gpu".to_string(), 2), ("vpc.amazonaws.com/efa".to_string(), 0)]
        );
        assert_eq!(
            parse_checkpoint(r#"{"Data":{"RegisteredDevices":null},"Checksum":1}"#).unwrap(),
            vec![]
        );
        assert!(parse_checkpoint("{").unwrap_err().to_string().starts_with("not valid JSON"));
        assert_eq!(
            parse_checkpoint(r#"{"Checksum":1}"#).unwrap_err().to_string(),
            "no \"Data\" object"
        );
        assert_eq!(
            parse_checkpoint(r#"{"Data":{"RegisteredDevices":{"x":5}}}"#).unwrap_err().to_string(),
            "\"Data.RegisteredDevices.x\" is not a list"
        );
    }
}
