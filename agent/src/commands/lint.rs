//! `nodeprep lint [FILE|DIR|-]...`: findings in manifests, before any node boots.

use std::path::{Path, PathBuf};

use super::{load_config, out, UsageError, EXIT_NOT_READY, EXIT_READY, EXIT_USAGE};
use crate::cli::{Global, Output};
use crate::host::Host;
use crate::lint::{self, Object, Severity};

/// An input that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
struct InputError {
    path: String,
    why: String,
}

/// Every input file: a file as given, a directory's *.yaml, *.yml and *.json (sorted), `-` stdin.
fn inputs(paths: &[PathBuf]) -> Result<Vec<(String, String)>, InputError> {
    let err = |p: &Path, why: String| InputError { path: p.display().to_string(), why };
    let mut files = Vec::new();
    for p in paths {
        if p == Path::new("-") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| err(p, format!("reading standard input: {e}")))?;
            files.push(("-".to_string(), text));
        } else if let Some(found) = crate::host::local_files_under(p, &["yaml", "yml", "json"]) {
            for f in found.map_err(|e| err(p, e.to_string()))? {
                files.push((f.display().to_string(), read(&f)?));
            }
        } else {
            files.push((p.display().to_string(), read(p)?));
        }
    }
    Ok(files)
}

fn read(p: &Path) -> Result<String, InputError> {
    let err = |why: String| InputError { path: p.display().to_string(), why };
    let bytes = crate::host::read_local(p).map_err(|e| err(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))
}

pub(super) fn lint(g: &Global, host: &Host, paths: &[PathBuf]) -> Result<u8, UsageError> {
    let t0 = std::time::Instant::now();
    // The config's startup taint, or the one the packaged NodePools and DaemonSet use.
    let startup_taint = Some(load_config(g, host)?.kubernetes.startup_taint)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| lint::DEFAULT_STARTUP_TAINT.to_string());
    let files = match inputs(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("nodeprep lint: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let mut objects: Vec<Object> = Vec::new();
    let mut unparsable = Vec::new();
    for (name, text) in &files {
        match lint::yaml::parse_stream(text) {
            Ok(docs) => objects.extend(docs.into_iter().flat_map(|d| lint::objects(name, d))),
            Err(e) => unparsable.push(format!("{name}:{}: cannot parse: {}", e.line, e.message)),
        }
    }
    if !unparsable.is_empty() {
        // Nothing else is reported: a file that cannot be read is not clean.
        for u in &unparsable {
            eprintln!("nodeprep lint: {u}");
        }
        return Ok(EXIT_USAGE);
    }
    let (known, skipped): (Vec<Object>, Vec<Object>) =
        objects.into_iter().partition(lint::known_kind);
    let findings = lint::lint(&known, &lint::Options { startup_taint });
    tracing::debug!(
        files = files.len(),
        objects = known.len(),
        skipped = skipped.len(),
        findings = findings.len(),
        elapsed_us = t0.elapsed().as_micros() as u64,
        "lint finished"
    );
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    match g.format() {
        Output::Json => {
            let skipped: Vec<_> = skipped
                .iter()
                .map(|o| {
                    serde_json::json!({"file": o.file, "line": o.node.line,
                        "apiVersion": o.node.str_at(&["apiVersion"]), "kind": o.node.str_at(&["kind"])})
                })
                .collect();
            let v = serde_json::json!({"objects": known.len(), "findings": findings, "skipped": skipped});
            out(&format!("{}\n", serde_json::to_string_pretty(&v).expect("findings serialize")));
        }
        Output::Text => {
            let mut text = String::new();
            for f in &findings {
                let sev = match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                text.push_str(&format!(
                    "{}:{}: {sev} [{}] {}\n    fix: {}\n",
                    f.file, f.line, f.rule, f.message, f.fix
                ));
            }
            for o in &skipped {
                let what = match (o.node.str_at(&["apiVersion"]), o.node.str_at(&["kind"])) {
                    (Some(v), Some(k)) => format!("{v} {k} (not a kind lint reads)"),
                    _ => "a document that is not a Kubernetes object (no apiVersion/kind)".into(),
                };
                text.push_str(&format!("{}:{}: skipped {what}\n", o.file, o.node.line));
            }
            let warnings = findings.len() - errors;
            text.push_str(&format!(
                "nodeprep lint: {} object(s) in {} file(s): {errors} error(s), {warnings} warning(s)\n",
                known.len(),
                files.len()
            ));
            out(&text);
        }
    }
    Ok(if errors > 0 { EXIT_NOT_READY } else { EXIT_READY })
}
