//! The golden report: `nodeprep --output json check` on the bundled example tree
//! (`examples/p5.48xlarge`, NVML answered by the fake library), with what changes from run to run
//! masked (timestamps, durations, the fake library's build path), compared with
//! `tests/it/golden/p5.48xlarge.json`. Any change to what a check reports shows here as a diff.
//!
//! After a deliberate change, rewrite it and review the diff before committing:
//!
//!   NODEPREP_UPDATE_GOLDEN=1 cargo test -p nodeprep --test it golden

use std::path::Path;

use serde_json::Value;

use crate::common::{example, nodeprep, stderr};

/// The report with what differs between runs replaced by fixed words.
fn masked(mut v: Value) -> Value {
    v["generated_at"] = "<generated_at>".into();
    v["duration_ms"] = "<duration_ms>".into();
    for c in v["checks"].as_array_mut().expect("checks") {
        c["duration_ms"] = "<duration_ms>".into();
        if let Some(lib) = c["found"].get_mut("nvml_library") {
            // target/debug/fake-nvml/<hash>/libnvidia-ml.so.1 (NODEPREP_NVML_LIB)
            let text = lib.as_str().unwrap_or_default();
            let tail = text.rsplit_once('/').map_or(text, |(_, t)| t);
            *lib = format!("<fake NVML>/{tail}").into();
        }
    }
    v
}

#[test]
fn golden_report_of_the_example_tree() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/golden/p5.48xlarge.json");
    let o = nodeprep(&example(), &["--output", "json", "check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).expect("a JSON report");
    let got = serde_json::to_string_pretty(&masked(report)).unwrap() + "\n";
    if std::env::var_os("NODEPREP_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
        println!("golden report rewritten: {}", golden.display());
        return;
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!("{}: {e}; create it with NODEPREP_UPDATE_GOLDEN=1", golden.display())
    });
    if got != want {
        let diff = similar::TextDiff::from_lines(&want, &got);
        panic!(
            "the report differs from {} (- golden, + now); if the change is meant, rerun with \
             NODEPREP_UPDATE_GOLDEN=1 and commit the file:\n{}",
            golden.display(),
            diff.unified_diff().context_radius(2)
        );
    }
}
