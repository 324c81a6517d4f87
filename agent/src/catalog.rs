//! The embedded catalog of instance types (`data/catalog.toml`) and the expectations derived from
//! it, with the config's `[expect]` table taking precedence.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::config::Expect;

const CATALOG_TOML: &str = include_str!("../data/catalog.toml");

/// What an instance type has, per the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub gpus: u32,
    pub gpu_model: String,
    pub gpu_memory_gib: u32,
    pub nvswitch: bool,
    pub efa: u32,
    pub instance_store_disks: u32,
    pub instance_store_disk_gb: u64,
    pub neuron_devices: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    types: BTreeMap<String, Entry>,
}

/// All catalog entries by instance type. Parsed once; a broken catalog is a build defect caught by
/// the tests, so it panics with the parser's message.
pub fn all() -> &'static BTreeMap<String, Entry> {
    static CATALOG: OnceLock<BTreeMap<String, Entry>> = OnceLock::new();
    CATALOG.get_or_init(|| {
        toml::from_str::<File>(CATALOG_TOML)
            .unwrap_or_else(|e| panic!("data/catalog.toml: {e}"))
            .types
    })
}

/// The entry of one instance type. Only its own table is read (a whole-catalog parse costs more
/// than the rest of `nodeprep check`'s start-up): its `key = value` lines directly when they are as
/// plain as the catalog writes them, else through the TOML parser. The tests prove this finds
/// exactly what the whole parse does, for every type.
pub fn lookup(instance_type: &str) -> Option<Entry> {
    let header = format!("[types.\"{instance_type}\"]");
    if instance_type.contains(['"', '\\']) {
        return all().get(instance_type).cloned();
    }
    let mut lines = CATALOG_TOML.lines();
    lines.find(|l| l.trim() == header)?;
    let table: Vec<&str> = lines.take_while(|l| !l.trim_start().starts_with('[')).collect();
    Some(plain_table(&table).unwrap_or_else(|| {
        toml::from_str::<Entry>(&table.join("\n"))
            .unwrap_or_else(|e| panic!("data/catalog.toml, table {header}: {e}"))
    }))
}

/// An entry from `key = value` lines holding integers, `true`/`false` and strings without escapes,
/// each key once; None for anything else (the TOML parser then decides).
fn plain_table(lines: &[&str]) -> Option<Entry> {
    let (mut gpus, mut gpu_model, mut gpu_memory_gib, mut nvswitch, mut efa) =
        (None, None, None, None, None);
    let (mut disks, mut disk_gb, mut neuron) = (None, None, None);
    fn set<T>(slot: &mut Option<T>, v: Option<T>) -> Option<()> {
        slot.replace(v?).is_none().then_some(())
    }
    for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=')?;
        let v = v.trim();
        let int = || v.parse::<u64>().ok().filter(|_| v.bytes().all(|b| b.is_ascii_digit()));
        match k.trim() {
            "gpus" => set(&mut gpus, int().and_then(|n| u32::try_from(n).ok()))?,
            "gpu_memory_gib" => {
                set(&mut gpu_memory_gib, int().and_then(|n| u32::try_from(n).ok()))?
            }
            "efa" => set(&mut efa, int().and_then(|n| u32::try_from(n).ok()))?,
            "instance_store_disks" => set(&mut disks, int().and_then(|n| u32::try_from(n).ok()))?,
            "neuron_devices" => set(&mut neuron, int().and_then(|n| u32::try_from(n).ok()))?,
            "instance_store_disk_gb" => set(&mut disk_gb, int())?,
            "nvswitch" => {
                set(&mut nvswitch, ["false", "true"].iter().position(|b| *b == v).map(|i| i == 1))?
            }
            "gpu_model" => {
                let inner = v.strip_prefix('"')?.strip_suffix('"')?;
                set(&mut gpu_model, (!inner.contains(['"', '\\'])).then(|| inner.to_string()))?
            }
            _ => return None,
        }
    }
    Some(Entry {
        gpus: gpus?,
        gpu_model: gpu_model?,
        gpu_memory_gib: gpu_memory_gib?,
        nvswitch: nvswitch?,
        efa: efa?,
        instance_store_disks: disks?,
        instance_store_disk_gb: disk_gb?,
        neuron_devices: neuron?,
    })
}

/// The hardware this node must show. `None`: nothing is known, check consistency only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    pub instance_type: Option<String>,
    pub in_catalog: bool,
    pub gpus: Option<u32>,
    pub gpu_model: Option<String>,
    pub nvswitch: Option<bool>,
    pub efa: Option<u32>,
    pub instance_store_disks: Option<u32>,
    pub instance_store_disk_gb: Option<u64>,
}

impl Expected {
    pub fn new(instance_type: Option<&str>, overrides: &Expect) -> Expected {
        let entry = instance_type.and_then(lookup);
        let entry = entry.as_ref();
        Expected {
            instance_type: instance_type.map(str::to_string),
            in_catalog: entry.is_some(),
            gpus: overrides.gpus.or(entry.map(|e| e.gpus)),
            gpu_model: overrides
                .gpu_model
                .clone()
                .or(entry.filter(|e| e.gpus > 0).map(|e| e.gpu_model.clone())),
            nvswitch: overrides.nvswitch.or(entry.map(|e| e.nvswitch)),
            efa: overrides.efa.or(entry.map(|e| e.efa)),
            instance_store_disks: overrides
                .instance_store_disks
                .or(entry.map(|e| e.instance_store_disks)),
            instance_store_disk_gb: entry.map(|e| e.instance_store_disk_gb),
        }
    }

    /// One line describing the entry, e.g. "8 × H100 80 GiB (NVSwitch), 32 EFA, 8 × 3800 GB NVMe".
    pub fn describe(e: &Entry) -> String {
        let mut parts = Vec::new();
        if e.gpus > 0 {
            let nvs = if e.nvswitch { " (NVSwitch)" } else { "" };
            parts.push(format!("{} × {} {} GiB{nvs}", e.gpus, e.gpu_model, e.gpu_memory_gib));
        }
        if e.neuron_devices > 0 {
            parts.push(format!("{} Neuron devices", e.neuron_devices));
        }
        parts.push(if e.efa > 0 { format!("{} EFA", e.efa) } else { "no EFA".into() });
        parts.push(if e.instance_store_disks > 0 {
            format!(
                "{} × {} GB NVMe instance store",
                e.instance_store_disks, e.instance_store_disk_gb
            )
        } else {
            "no instance store".into()
        });
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_parses_and_covers_the_required_types() {
        for t in [
            "p4d.24xlarge",
            "p4de.24xlarge",
            "p5.48xlarge",
            "p5e.48xlarge",
            "p5en.48xlarge",
            "p6-b200.48xlarge",
            "g4dn.xlarge",
            "g5.xlarge",
            "g5.48xlarge",
            "g6.xlarge",
            "g6e.48xlarge",
            "trn1.32xlarge",
        ] {
            assert!(lookup(t).is_some(), "{t} missing from data/catalog.toml");
        }
    }

    #[test]
    fn catalog_entries_are_self_consistent() {
        for (t, e) in all() {
            assert_eq!(
                e.gpus == 0,
                e.gpu_model.is_empty(),
                "{t}: gpu_model must be set exactly when gpus > 0"
            );
            assert_eq!(
                e.gpus == 0,
                e.gpu_memory_gib == 0,
                "{t}: gpu_memory_gib must be set exactly when gpus > 0"
            );
            assert!(!e.nvswitch || e.gpus == 8, "{t}: NVSwitch types have 8 GPUs");
            assert_eq!(
                e.instance_store_disks == 0,
                e.instance_store_disk_gb == 0,
                "{t}: disk size without disks"
            );
            assert!(e.efa <= 32 && e.gpus <= 16, "{t}: implausible counts");
        }
    }

    #[test]
    fn looking_up_one_type_finds_what_the_whole_catalog_says() {
        assert!(all().len() > 20);
        for (t, e) in all() {
            assert_eq!(lookup(t).as_ref(), Some(e), "{t}");
        }
        for absent in ["m7i.large", "p5", "48xlarge", "", "types", "p5.48xlarge\"]"] {
            assert_eq!(lookup(absent), None, "{absent}");
        }
        // Every table of the catalog is plain enough for the direct read.
        for t in all().keys() {
            let mut lines = CATALOG_TOML.lines();
            lines.find(|l| l.trim() == format!("[types.\"{t}\"]"));
            let table: Vec<&str> = lines.take_while(|l| !l.trim_start().starts_with('[')).collect();
            assert_eq!(plain_table(&table).as_ref(), all().get(t), "{t}");
        }
    }

    #[test]
    fn the_direct_read_leaves_anything_unusual_to_the_toml_parser() {
        let ok = [
            "gpus = 8",
            "gpu_model = \"H100\"",
            "gpu_memory_gib = 80",
            "nvswitch = true",
            "efa = 32",
        ];
        let rest =
            ["instance_store_disks = 8", "instance_store_disk_gb = 3800", "neuron_devices = 0  "];
        let all_lines: Vec<&str> = ok.iter().chain(rest.iter()).copied().collect();
        assert!(plain_table(&all_lines).is_some());
        for odd in [
            "gpus = 0x8",
            "gpus = +8",
            "gpu_model = 'H100'",
            "gpu_model = \"H\\u0031\"",
            "nvswitch = yes",
            "gpus = 8 # eight",
            "extra = 1",
            "gpus = 9",
        ] {
            let mut lines = all_lines.clone();
            lines.push(odd);
            assert_eq!(plain_table(&lines), None, "{odd}");
        }
        assert_eq!(plain_table(&all_lines[1..]), None, "a missing key");
    }

    #[test]
    fn p5_numbers() {
        let e = lookup("p5.48xlarge").unwrap();
        assert_eq!((e.gpus, e.efa, e.instance_store_disks, e.nvswitch), (8, 32, 8, true));
        assert!(e.gpu_model.contains("H100"));
    }

    #[test]
    fn config_overrides_the_catalog() {
        let o = Expect { efa: Some(31), ..Default::default() };
        let x = Expected::new(Some("p5.48xlarge"), &o);
        assert_eq!(x.efa, Some(31));
        assert_eq!(x.gpus, Some(8));
        let unknown = Expected::new(Some("m7i.large"), &Expect::default());
        assert!(!unknown.in_catalog);
        assert_eq!(unknown.gpus, None);
        let none = Expected::new(None, &Expect { gpus: Some(2), ..Default::default() });
        assert_eq!(none.gpus, Some(2));
        assert_eq!(none.efa, None);
    }
}
