//! Who is this node? Instance type (and, from IMDS, placement group and zone).
//!
//! Order: `--instance-type`/`NODEPREP_INSTANCE_TYPE`, config `instance_type`, DMI
//! (`sys/devices/virtual/dmi/id/product_name` when `sys_vendor` is `Amazon EC2`), then IMDSv2.
//! IMDS is also asked for the placement group and zone when it is enabled; with `imds.enabled =
//! "auto"` that is only when `--root` is `/` (a fixture tree or a host mounted elsewhere has no IMDS of
//! its own; a DaemonSet sets `imds.enabled = "always"`).

use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, Mode};
use crate::host::imds::{ImdsClient, ImdsFacts};
use crate::host::{Host, HostError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `--instance-type` or `NODEPREP_INSTANCE_TYPE`
    Flag,
    Config,
    Dmi,
    Imds,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Flag => "--instance-type",
            Source::Config => "config",
            Source::Dmi => "DMI",
            Source::Imds => "IMDS",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub instance_type: Option<String>,
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Whether IMDS answered (so `placement_group: None` means "not in a placement group").
    pub imds_answered: bool,
    /// Why each discovery step found nothing, in order; shown when the type stays unknown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

const DMI_VENDOR: &str = "/sys/devices/virtual/dmi/id/sys_vendor";
const DMI_PRODUCT: &str = "/sys/devices/virtual/dmi/id/product_name";

/// Why DMI names no instance type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DmiError {
    #[error("DMI: {0}")]
    Unreadable(#[from] HostError),
    #[error("DMI: sys_vendor is \"{0}\", not \"Amazon EC2\"")]
    NotEc2(String),
    /// Xen-based instances report "HVM domU" here.
    #[error("DMI: product_name \"{0}\" is not an instance type")]
    NotAType(String),
}

/// Reads the instance type from DMI.
pub fn from_dmi(host: &Host) -> Result<String, DmiError> {
    let vendor = host.read_attr(DMI_VENDOR)?;
    if vendor != "Amazon EC2" {
        return Err(DmiError::NotEc2(vendor));
    }
    let product = host.read_attr(DMI_PRODUCT)?;
    if product.contains('.') && !product.contains(' ') {
        Ok(product)
    } else {
        Err(DmiError::NotAType(product))
    }
}

pub fn imds_enabled(cfg: &Config, host: &Host) -> bool {
    match cfg.imds.enabled {
        Mode::Always => true,
        Mode::Never => false,
        Mode::Auto => host.is_live(),
    }
}

/// Discovers the identity. Never fails: what could not be learned is recorded in `notes`.
pub fn discover(host: &Host, cfg: &Config, flag: Option<&str>) -> Identity {
    let mut id = Identity::default();
    if let Some(t) = flag {
        id.instance_type = Some(t.to_string());
        id.source = Some(Source::Flag);
    } else if let Some(t) = &cfg.instance_type {
        id.instance_type = Some(t.clone());
        id.source = Some(Source::Config);
    } else {
        match from_dmi(host) {
            Ok(t) => {
                id.instance_type = Some(t);
                id.source = Some(Source::Dmi);
            }
            Err(why) => id.notes.push(why.to_string()),
        }
    }
    if imds_enabled(cfg, host) {
        let client =
            ImdsClient::new(&cfg.imds.endpoint, Duration::from_millis(cfg.imds.timeout_ms));
        match client.facts_blocking() {
            Ok(ImdsFacts { instance_type, placement_group, availability_zone }) => {
                id.imds_answered = true;
                id.placement_group = placement_group;
                id.availability_zone = availability_zone;
                if id.instance_type.is_none() {
                    if let Some(t) = instance_type {
                        id.instance_type = Some(t);
                        id.source = Some(Source::Imds);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "IMDS query failed");
                id.notes.push(e.to_string());
            }
        }
    } else {
        id.notes.push(match cfg.imds.enabled {
            Mode::Never => "IMDS: not queried (imds.enabled = \"never\")".into(),
            _ => "IMDS: not queried (imds.enabled = \"auto\" and --root is not /)".into(),
        });
    }
    if id.instance_type.is_some() {
        tracing::info!(instance_type = id.instance_type.as_deref(), source = %id.source.unwrap(), "instance identified");
    } else {
        tracing::warn!(notes = ?id.notes, "instance type unknown");
    }
    id
}
