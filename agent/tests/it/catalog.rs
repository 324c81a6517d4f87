//! The instance catalog: `agent/data/catalog.toml` is what `scripts/catalog-gen.py` makes of
//! Karpenter's reference and the overlay, the generator refuses bad input, and `nodeprep catalog`
//! shows every entry with its source.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{example, nodeprep, stderr, stdout};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn data(name: &str) -> PathBuf {
    repo().join("agent/data").join(name)
}

/// `python3 scripts/catalog-gen.py ARGS` from the repository root.
fn generator(args: &[&str]) -> Output {
    Command::new("python3")
        .arg("scripts/catalog-gen.py")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("python3 runs (the catalog generator needs Python 3.11)")
}

#[test]
fn the_committed_catalog_is_the_generators_output() {
    let o = generator(&["--check"]);
    assert!(
        o.status.success(),
        "agent/data/catalog.toml is not what scripts/catalog-gen.py writes from \
         karpenter-instance-types.md and catalog-overlay.toml; run scripts/catalog-gen.py.\n\
         diff:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
}

/// The generator on temp copies of its inputs: `--karpenter`, `--overlay` and `--out`.
struct Copies {
    dir: tempfile::TempDir,
}

impl Copies {
    fn new() -> Copies {
        let dir = tempfile::tempdir().unwrap();
        for f in ["karpenter-instance-types.md", "catalog-overlay.toml"] {
            std::fs::copy(data(f), dir.path().join(f)).unwrap();
        }
        Copies { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn edit(&self, f: &str, change: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.path(f)).unwrap();
        let changed = change(text.clone());
        assert_ne!(text, changed, "the edit of {f} changed nothing");
        std::fs::write(self.path(f), changed).unwrap();
    }

    fn run(&self, extra: &[&str]) -> Output {
        let k = self.path("karpenter-instance-types.md");
        let o = self.path("catalog-overlay.toml");
        let out = self.path("catalog.toml");
        let mut args = vec![
            "--karpenter",
            k.to_str().unwrap(),
            "--overlay",
            o.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        generator(&args)
    }

    /// The generator fails (status 2), writes nothing, and says `want` (each part) on stderr.
    fn fails(&self, want: &[&str]) {
        let o = self.run(&[]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        for w in want {
            assert!(err.contains(w), "stderr lacks {w:?}: {err}");
        }
        assert!(!self.path("catalog.toml").exists(), "a failed run wrote the catalog");
    }
}

#[test]
fn the_generator_on_unchanged_copies_writes_the_committed_catalog() {
    let c = Copies::new();
    let o = c.run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = std::fs::read_to_string(c.path("catalog.toml")).unwrap();
    assert_eq!(got, std::fs::read_to_string(data("catalog.toml")).unwrap());
    // The excerpt of the excerpt is the excerpt.
    let again = c.path("again.md");
    let o = generator(&[
        "--excerpt",
        c.path("karpenter-instance-types.md").to_str().unwrap(),
        "--karpenter",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(again).unwrap(),
        std::fs::read_to_string(data("karpenter-instance-types.md")).unwrap()
    );
}

#[test]
fn the_generator_refuses_an_overlay_for_a_type_that_does_not_exist() {
    let c = Copies::new();
    c.edit("catalog-overlay.toml", |t| {
        t + "\n[types.\"p5.96xlarge\"]\nnvswitch = true\nsource = \"[ac]\"\n"
    });
    c.fails(&["types.p5.96xlarge", "no such type in Karpenter's reference (typo?)"]);
    let c = Copies::new();
    c.edit("catalog-overlay.toml", |t| {
        t + "\n[families.\"p9\"]\ngsp_off = true\nsource = \"[ac]\"\n"
    });
    c.fails(&["families.p9", "no type of that family"]);
}

#[test]
fn the_generator_refuses_an_unknown_gpu_name() {
    let c = Copies::new();
    c.edit("karpenter-instance-types.md", |t| {
        t.replacen(
            " |karpenter.k8s.aws/instance-gpu-name|h100|",
            " |karpenter.k8s.aws/instance-gpu-name|h900|",
            1,
        )
    });
    c.fails(&["p5", "unknown GPU name 'h900'", "GPU_MODELS"]);
}

/// A change to a copy of the overlay.
type Edit = Box<dyn Fn(String) -> String>;

#[test]
fn the_generator_refuses_impossible_overlay_values() {
    let add = |t: &'static str, keys: &'static str| {
        move |s: String| format!("{s}\n[types.\"{t}\"]\n{keys}\nsource = \"[ac]\"\n")
    };
    let cases: Vec<(Edit, &[&str])> = vec![
        // p5.4xlarge has one GPU: NVSwitch is impossible there.
        (
            Box::new(|s: String| {
                s.replacen(
                    "[types.\"p5.4xlarge\"]\n",
                    "[types.\"p5.4xlarge\"]\nnvswitch = true\n",
                    1,
                )
            }),
            &["p5.4xlarge", "nvswitch without 8 GPUs"],
        ),
        (
            Box::new(add("c6in.32xlarge", "gsp_off = true")),
            &["c6in.32xlarge", "gsp_off on a type without NVIDIA GPUs"],
        ),
        (
            Box::new(add("g6.2xlarge", "instance_store_disks = 2\ninstance_store_disk_gb = 900")),
            &["g6.2xlarge", "split 2 x 900 GB = 1800 GB is not the 450 GB total"],
        ),
        (
            Box::new(add("g6.4xlarge", "instance_store_disks = 1")),
            &["types.g6.4xlarge", "go together"],
        ),
        (
            Box::new(add("g6.8xlarge", "nvswitch = \"yes\"")),
            &["types.g6.8xlarge", "nvswitch must be true or false"],
        ),
        (
            Box::new(add("g6.16xlarge", "gpu_model = \"L4\"")),
            &["types.g6.16xlarge", "unknown key 'gpu_model'"],
        ),
        (Box::new(add("g6.24xlarge", "nvlsm = true")), &["g6.24xlarge", "nvlsm without nvswitch"]),
    ];
    for (edit, want) in cases {
        let c = Copies::new();
        c.edit("catalog-overlay.toml", edit);
        c.fails(want);
    }
}

#[test]
fn catalog_type_shows_every_field_and_its_source() {
    let o = nodeprep(&example(), &["catalog", "p6-b200.48xlarge"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(out.lines().next(), Some("p6-b200.48xlarge"), "{out}");
    assert!(out.contains("(NVSwitch, NVLSM)"), "{out}");
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.trim_start().strip_prefix(k).filter(|v| v.starts_with(' ')))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {k} line: {out}"))
    };
    assert_eq!(field("nvlsm"), "yes");
    assert_eq!(field("nvswitch"), "yes");
    assert_eq!(field("instance_store_disks"), "8");
    let source = field("source");
    assert!(source.starts_with("karpenter+overlay (karpenter 1d927085 ("), "{source}");
    assert!(source.contains("overlay p6-b200.48xlarge: nvswitch, nvlsm"), "{source}");
    assert!(source.contains("[ac]"), "{source}");
}

#[test]
fn catalog_table_has_arch_and_source() {
    let o = nodeprep(&example(), &["catalog"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let head: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(head[1], "ARCH", "{head:?}");
    assert_eq!(head.last(), Some(&"SOURCE"), "{head:?}");
    let row = |t: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(t))
            .unwrap_or_else(|| panic!("no {t} row: {out}"))
    };
    assert!(row("g5g.xlarge").contains(" arm64 "), "{}", row("g5g.xlarge"));
    assert!(row("c6in.32xlarge").ends_with(" karpenter"));
    assert!(row("p5.48xlarge").ends_with(" karpenter+overlay"));
    assert!(row("p6e-gb200.36xlarge").ends_with(" overlay"));
    assert!(row("g6f.large").contains(" frac "), "{}", row("g6f.large"));
    assert!(out.lines().count() > 300);
}

#[test]
fn catalog_json_has_every_entry_and_field() {
    let o = nodeprep(&example(), &["--output", "json", "catalog"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = v.as_object().unwrap();
    assert!(all.len() > 300, "{} entries", all.len());
    let g6f = &v["g6f.large"];
    assert_eq!((g6f["gpu_fraction"].as_bool(), g6f["gpus"].as_u64()), (Some(true), Some(0)));
    assert_eq!(g6f["gpu_model"], "L4");
    let trn2 = &v["trn2.48xlarge"];
    assert_eq!((trn2["neuron_devices"].as_u64(), trn2["efa"].as_u64()), (Some(16), Some(16)));
    assert_eq!(trn2["gpus"], 0);
    let gb200 = &v["p6e-gb200.36xlarge"];
    assert!(gb200["efa"].is_null() && gb200["instance_store_disks"].is_null(), "{gb200}");
    assert_eq!(gb200["imex"], true);
    for (t, e) in all {
        assert_eq!(e.as_object().unwrap().len(), 17, "{t}: every field: {e}");
        assert!(!e["source"].as_str().unwrap().is_empty(), "{t}");
    }
}
