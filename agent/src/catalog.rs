//! The embedded catalog of instance types and the expectations derived from it, with the config's
//! `[expect]` table taking precedence. `build.rs` compiles `data/catalog.toml` into a sorted table
//! at build time: a broken catalog fails the build, and nothing parses it at run time.

use serde::Serialize;

use crate::config::{EfaCount, Expect};

/// What an instance type has, per the catalog (`data/catalog.toml`, compiled in by `build.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub gpus: u32,
    pub gpu_model: &'static str,
    pub gpu_memory_gib: u32,
    pub nvswitch: bool,
    pub efa: u32,
    pub instance_store_disks: u32,
    pub instance_store_disk_gb: u64,
    pub neuron_devices: u32,
}

include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// Every catalog entry, by instance type in sorted order.
pub fn all() -> impl Iterator<Item = (&'static str, &'static Entry)> {
    ENTRIES.iter().map(|(t, e)| (*t, e))
}

/// The entry of one instance type.
pub fn lookup(instance_type: &str) -> Option<&'static Entry> {
    ENTRIES.binary_search_by(|(t, _)| (*t).cmp(instance_type)).ok().map(|i| &ENTRIES[i].1)
}

/// The hardware this node must show. `None`: nothing is known, check consistency only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    pub instance_type: Option<String>,
    pub in_catalog: bool,
    pub gpus: Option<u32>,
    pub gpu_model: Option<String>,
    pub nvswitch: Option<bool>,
    /// EFA devices this node must have: what config asks (a count, or the type's maximum), else
    /// what EC2 attached (see [`Expected::with_attached_efa`]), else the catalog's maximum until
    /// that is known.
    pub efa: Option<u32>,
    /// The instance type's maximum (a ceiling: more is a warning).
    pub efa_max: Option<u32>,
    /// What config asks for, resolved (`"max"`: the catalog's maximum).
    pub efa_requested: Option<u32>,
    /// The EFA PCI functions EC2 attached, once counted.
    pub efa_attached: Option<u32>,
    pub instance_store_disks: Option<u32>,
    pub instance_store_disk_gb: Option<u64>,
}

impl Expected {
    pub fn new(instance_type: Option<&str>, overrides: &Expect) -> Expected {
        let entry = instance_type.and_then(lookup);
        let requested = match overrides.efa {
            Some(EfaCount::Count(n)) => Some(n),
            Some(EfaCount::Max) => entry.map(|e| e.efa),
            None => None,
        };
        Expected {
            instance_type: instance_type.map(str::to_string),
            in_catalog: entry.is_some(),
            gpus: overrides.gpus.or(entry.map(|e| e.gpus)),
            gpu_model: overrides
                .gpu_model
                .clone()
                .or(entry.filter(|e| e.gpus > 0).map(|e| e.gpu_model.to_string())),
            nvswitch: overrides.nvswitch.or(entry.map(|e| e.nvswitch)),
            efa: requested.or(entry.map(|e| e.efa)),
            efa_max: entry.map(|e| e.efa),
            efa_requested: requested,
            efa_attached: None,
            instance_store_disks: overrides
                .instance_store_disks
                .or(entry.map(|e| e.instance_store_disks)),
            instance_store_disk_gb: entry.map(|e| e.instance_store_disk_gb),
        }
    }

    /// With the EFA functions EC2 attached counted: unless config asks for a count, that is what
    /// the node must have (Karpenter attaches EFA only for pods that request it).
    pub fn with_attached_efa(mut self, attached: u32) -> Expected {
        self.efa_attached = Some(attached);
        self.efa = self.efa_requested.or(Some(attached));
        self
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
#[allow(dead_code)]
#[path = "../build.rs"]
mod build_rs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_covers_the_required_types() {
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

    /// The compiled table is the data file, entry for entry, and every type is found.
    #[test]
    fn the_compiled_table_is_the_data_file() {
        let text = include_str!("../data/catalog.toml");
        let parsed: toml::Table = text.parse().unwrap();
        let types = parsed["types"].as_table().unwrap();
        assert_eq!(types.len(), ENTRIES.len());
        assert!(ENTRIES.len() > 20);
        assert!(ENTRIES.windows(2).all(|w| w[0].0 < w[1].0), "sorted, each type once");
        for (t, v) in types {
            let e = lookup(t).unwrap_or_else(|| panic!("{t} not found"));
            let want = toml::Value::try_from(e).unwrap();
            assert_eq!(&want, v, "{t}");
        }
        for absent in ["m7i.large", "p5", "48xlarge", "", "types", "p5.48xlarge\"]"] {
            assert_eq!(lookup(absent), None, "{absent}");
        }
    }

    /// What fails the build: each rule of build.rs on an entry that breaks it.
    #[test]
    fn a_broken_entry_fails_the_build() {
        let ok = || build_rs::Entry {
            gpus: 8,
            gpu_model: "H100".into(),
            gpu_memory_gib: 80,
            nvswitch: true,
            efa: 32,
            instance_store_disks: 8,
            instance_store_disk_gb: 3800,
            neuron_devices: 0,
        };
        assert!(build_rs::problems("p5.48xlarge", &ok()).is_empty());
        let cases: Vec<(&str, build_rs::Entry, &str)> = vec![
            ("P5 48xl", ok(), "not an instance type"),
            ("x.y", build_rs::Entry { gpu_model: String::new(), ..ok() }, "gpu_model must be set"),
            ("x.y", build_rs::Entry { gpu_memory_gib: 0, ..ok() }, "gpu_memory_gib"),
            ("x.y", build_rs::Entry { gpus: 4, ..ok() }, "NVSwitch types have 8 GPUs"),
            ("x.y", build_rs::Entry { instance_store_disk_gb: 0, ..ok() }, "disk size"),
            ("x.y", build_rs::Entry { efa: 64, ..ok() }, "implausible"),
        ];
        for (t, e, want) in cases {
            let p = build_rs::problems(t, &e);
            assert!(p.iter().any(|m| m.contains(want)), "{t}: {p:?}");
        }
    }

    #[test]
    fn p5_numbers() {
        let e = lookup("p5.48xlarge").unwrap();
        assert_eq!((e.gpus, e.efa, e.instance_store_disks, e.nvswitch), (8, 32, 8, true));
        assert!(e.gpu_model.contains("H100"));
    }

    #[test]
    fn config_overrides_the_catalog() {
        let o = Expect { efa: Some(EfaCount::Count(31)), ..Default::default() };
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
