//! `nodeprep catalog [TYPE]`: what each instance type must have, and where the catalog got it.

use std::fmt::Write as _;

use super::{out, UsageError, EXIT_READY};
use crate::catalog::{self, Entry, Expected};
use crate::cli::{Global, Output};

pub(super) fn catalog(g: &Global, only: Option<&str>) -> Result<u8, UsageError> {
    let entries: Vec<(&str, &Entry)> = match only {
        Some(t) => match catalog::lookup(t) {
            Some(e) => vec![(t, e)],
            None => return Err(UsageError::Catalog(unknown(t))),
        },
        None => catalog::all().collect(),
    };
    match g.format() {
        Output::Json => {
            let map: serde_json::Map<_, _> =
                entries.iter().map(|(k, v)| (k.to_string(), json(v))).collect();
            out(&format!("{}\n", serde_json::to_string_pretty(&map).expect("catalog serializes")));
        }
        Output::Text => match only {
            Some(t) => out(&detail(t, entries[0].1)),
            None => {
                let mut text = format!(
                    "{:<20} {:<5} {:>4}  {:<12} {:>9}  {:<14} {:>4}  {:>17}  {}\n",
                    "TYPE",
                    "ARCH",
                    "GPUS",
                    "MODEL",
                    "GPU_MEM",
                    "FABRIC",
                    "EFA",
                    "INSTANCE_STORE",
                    "SOURCE"
                );
                for (t, e) in entries {
                    text.push_str(&row(t, e));
                }
                out(&text);
            }
        },
    }
    Ok(EXIT_READY)
}

/// A type the catalog lacks: the error names the types of its family it has, if any.
fn unknown(t: &str) -> String {
    let fam = t.split_once('.').map_or(t, |(f, _)| f);
    let same: Vec<&str> = catalog::all()
        .map(|(k, _)| k)
        .filter(|k| k.split_once('.').is_some_and(|(f, _)| f == fam))
        .collect();
    let known = if same.is_empty() {
        format!("`nodeprep catalog` lists the {} known types", catalog::all().count())
    } else {
        format!("known {fam} types: {}", same.join(", "))
    };
    format!("{t} is not in the catalog; set [expect] in the config for it. {known}")
}

/// Every field, an unknown one as `null`.
fn json(e: &Entry) -> serde_json::Value {
    serde_json::to_value(e).expect("entry serializes")
}

fn row(t: &str, e: &Entry) -> String {
    let store = match (e.instance_store_disks, e.instance_store_disk_gb) {
        (Some(0), _) => "-".into(),
        (Some(n), Some(gb)) => format!("{n} x {gb} GB"),
        _ if e.instance_store_gb > 0 => format!("{} GB (split ?)", e.instance_store_gb),
        _ => "?".into(),
    };
    let model = if !e.gpu_model.is_empty() {
        e.gpu_model
    } else if e.neuron_devices > 0 {
        "neuron"
    } else if e.gpu_vendor == "amd" {
        "amd"
    } else if !e.other_accelerator.is_empty() {
        "other"
    } else {
        "-"
    };
    let mem = match e.gpu_memory_mib {
        0 if e.gpu_model.is_empty() => "-".into(),
        0 => "?".into(),
        m if e.gpu_fraction => format!("{m} MiB"),
        _ => e.gpu_memory(),
    };
    let gpus = match (e.gpus, e.neuron_devices) {
        (0, _) if e.gpu_fraction => "frac".into(),
        (0, n) if n > 0 => format!("{n}n"),
        (g, _) => g.to_string(),
    };
    let efa = e.efa.map_or("?".into(), |n| n.to_string());
    format!(
        "{t:<20} {:<5} {gpus:>4}  {model:<12} {mem:>9}  {:<14} {efa:>4}  {store:>17}  {}\n",
        e.arch,
        fabric(e),
        e.source_kind()
    )
}

/// `nvswitch`, `nvswitch+nvlsm`, `imex` or `-`.
fn fabric(e: &Entry) -> String {
    let parts: Vec<&str> = [(e.nvswitch, "nvswitch"), (e.nvlsm, "nvlsm"), (e.imex, "imex")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("+")
    }
}

/// One entry, every field (named as in the TOML and JSON) and its full source.
fn detail(t: &str, e: &Entry) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let unknown = |v: Option<String>| v.unwrap_or_else(|| "unknown".into());
    let text = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
    let memory = match e.gpu_memory_mib {
        0 if e.gpu_model.is_empty() => "-".into(),
        0 => "unknown".into(),
        m if e.gpu_fraction => format!("{m} MiB (the slice)"),
        m => format!("{m} MiB per GPU ({})", e.gpu_memory()),
    };
    let store = match e.instance_store_gb {
        0 if e.instance_store_disks == Some(0) => "0 (no instance store)".to_string(),
        0 if e.instance_store_disks.is_none() => "unknown".to_string(),
        gb => format!("{gb} GB"),
    };
    let disks = match e.instance_store_disks {
        None if e.instance_store_gb > 0 => "unknown (the split is not known)".into(),
        d => unknown(d.map(|d| d.to_string())),
    };
    let disk_gb = match (e.instance_store_disks, e.instance_store_disk_gb) {
        (Some(0), _) => "-".into(),
        (_, gb) => unknown(gb.map(|g| format!("{g} GB per disk"))),
    };
    let rows: Vec<(&str, String)> = vec![
        ("summary", Expected::describe(e)),
        ("arch", e.arch.into()),
        ("gpus", e.gpus.to_string()),
        ("gpu_model", text(e.gpu_model)),
        ("gpu_memory_mib", memory),
        ("gpu_fraction", yes(e.gpu_fraction).into()),
        ("gpu_vendor", text(e.gpu_vendor)),
        ("other_accelerator", text(e.other_accelerator)),
        ("nvswitch", yes(e.nvswitch).into()),
        ("nvlsm", yes(e.nvlsm).into()),
        ("imex", yes(e.imex).into()),
        ("gsp_off", yes(e.gsp_off).into()),
        ("efa", unknown(e.efa.map(|n| format!("{n} (the most the type supports)")))),
        ("neuron_devices", e.neuron_devices.to_string()),
        ("instance_store_gb", store),
        ("instance_store_disks", disks),
        ("instance_store_disk_gb", disk_gb),
        ("source", format!("{} ({})", e.source_kind(), e.source)),
    ];
    let mut s = format!("{t}\n");
    for (k, v) in rows {
        let _ = writeln!(s, "  {k:<23} {v}");
    }
    s
}
