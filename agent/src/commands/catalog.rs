//! `nodeprep catalog [TYPE]`: what each instance type must have.

use super::{out, UsageError, EXIT_READY};
use crate::catalog::{self, Entry};
use crate::cli::{Global, Output};

pub(super) fn catalog(g: &Global, only: Option<&str>) -> Result<u8, UsageError> {
    let entries: Vec<(&str, &Entry)> = match only {
        Some(t) => match catalog::lookup(t) {
            Some(e) => vec![(t, e)],
            None => {
                let known: Vec<&str> = catalog::all().map(|(t, _)| t).collect();
                return Err(UsageError::Catalog(format!(
                    "{t} is not in the catalog; set [expect] in the config for it. Known: {}",
                    known.join(", ")
                )));
            }
        },
        None => catalog::all().collect(),
    };
    match g.format() {
        Output::Json => {
            let map: serde_json::Map<_, _> = entries
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::to_value(v).expect("entry serializes")))
                .collect();
            out(&format!("{}\n", serde_json::to_string_pretty(&map).expect("catalog serializes")));
        }
        Output::Text => {
            let mut text = format!(
                "{:<20} {:>4}  {:<6} {:>7}  {:<8} {:>4}  {:>16}\n",
                "TYPE", "GPUS", "MODEL", "GPU_MEM", "NVSWITCH", "EFA", "INSTANCE_STORE"
            );
            for (t, e) in entries {
                text.push_str(&row(t, e));
            }
            out(&text);
        }
    }
    Ok(EXIT_READY)
}

fn row(t: &str, e: &Entry) -> String {
    let store = match e.instance_store_disks {
        0 => "-".into(),
        n => format!("{n} x {} GB", e.instance_store_disk_gb),
    };
    let model = match (e.gpus, e.neuron_devices) {
        (0, 0) => "-",
        (0, _) => "neuron",
        _ => e.gpu_model,
    };
    let mem = if e.gpus > 0 { format!("{} GiB", e.gpu_memory_gib) } else { "-".into() };
    let gpus = match (e.gpus, e.neuron_devices) {
        (0, n) if n > 0 => format!("{n}n"),
        (g, _) => g.to_string(),
    };
    let nvswitch = if e.nvswitch { "yes" } else { "no" };
    format!("{t:<20} {gpus:>4}  {model:<6} {mem:>7}  {nvswitch:<8} {:>4}  {store:>16}\n", e.efa)
}
