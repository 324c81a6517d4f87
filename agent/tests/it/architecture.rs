//! The layout's rules (README "Architecture"), checked on the source: each test fails naming the
//! file and the line that breaks a rule. Test modules (`#[cfg(test)] mod tests`) are not held to
//! them: they build fixture trees with `std::fs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file of the agent: its path under `src/` and its code without its test module.
struct Source {
    rel: String,
    lines: Vec<(usize, String)>,
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            // The test module: `#[cfg(test)]` then `mod tests` (of any visibility).
            let cut = text.match_indices("#[cfg(test)]\n").map(|(i, _)| i).find(|&i| {
                let next = text[i..].lines().nth(1).unwrap_or_default();
                next.ends_with("mod tests {")
            });
            let code = &text[..cut.unwrap_or(text.len())];
            let lines = code
                .lines()
                .enumerate()
                .map(|(i, l)| (i + 1, l.to_string()))
                // Comments may name anything.
                .filter(|(_, l)| !l.trim_start().starts_with("//"))
                .collect();
            Source { rel: p.strip_prefix(&src).unwrap().to_string_lossy().into_owned(), lines }
        })
        .collect()
}

/// The top-level module a file belongs to (`capability/efa/mod.rs` → `capability`).
fn top(rel: &str) -> &str {
    rel.split('/').next().unwrap().trim_end_matches(".rs")
}

/// Every `crate::NAME` a line uses.
fn crate_refs(line: &str) -> Vec<String> {
    line.match_indices("crate::")
        .filter(|(i, _)| !line[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(i, m)| {
            line[i + m.len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
        })
        .collect()
}

fn violations(check: impl Fn(&Source, &str) -> Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    for s in sources() {
        for (n, line) in &s.lines {
            if let Some(why) = check(&s, line) {
                out.push(format!("agent/src/{}:{n}: {why}: {}", s.rel, line.trim()));
            }
        }
    }
    out
}

fn assert_none(rule: &str, found: Vec<String>) {
    assert!(found.is_empty(), "{rule}:\n{}", found.join("\n"));
}

/// The capabilities: every module under `capability/` but the registry and the runner.
fn capabilities() -> Vec<String> {
    let mut caps: BTreeSet<String> = BTreeSet::new();
    for s in sources().iter().filter(|s| s.rel.starts_with("capability/")) {
        let name = s.rel["capability/".len()..].split('/').next().unwrap().trim_end_matches(".rs");
        if name != "mod" && name != "runner" {
            caps.insert(name.to_string());
        }
    }
    caps.into_iter().collect()
}

/// Rule 1: a capability never imports another; what two of them need lives in host/.
#[test]
fn no_capability_imports_another() {
    let caps = capabilities();
    assert!(caps.len() >= 6, "{caps:?}");
    assert_none(
        "a capability imports another (put the shared fact in host/)",
        violations(|s, line| {
            let mine =
                s.rel.strip_prefix("capability/")?.split('/').next()?.trim_end_matches(".rs");
            let nested = s.rel.matches('/').count() > 1;
            caps.iter().filter(|c| c.as_str() != mine).find_map(|other| {
                let via_crate = line.contains(&format!("capability::{other}"));
                let via_super = if nested {
                    line.contains(&format!("super::super::{other}"))
                } else {
                    line.contains(&format!("super::{other}"))
                };
                (via_crate || via_super).then(|| format!("{mine} uses {other}"))
            })
        }),
    );
}

/// Rule 2: only a capability's plan produces Plan/Action; observe and evaluate never import apply.
#[test]
fn only_plans_import_apply() {
    assert_none(
        "a capability file other than plan.rs uses apply/",
        violations(|s, line| {
            let in_cap = s.rel.starts_with("capability/") && !s.rel.ends_with("/plan.rs");
            (in_cap && line.contains("apply::")).then(|| "apply outside a plan".into())
        }),
    );
}

/// Rule 3: apply/ imports host/ only: the executor knows no capability.
#[test]
fn apply_imports_only_host() {
    assert_none(
        "apply/ uses a module other than host/",
        violations(|s, line| {
            if top(&s.rel) != "apply" {
                return None;
            }
            crate_refs(line)
                .into_iter()
                .find(|r| r != "apply" && r != "host")
                .map(|r| format!("apply uses {r}"))
        }),
    );
}

/// Rule 4: host/ imports nothing above it (config, report, a capability, ...).
#[test]
fn host_imports_nothing_above_it() {
    assert_none(
        "host/ uses a module above the seam",
        violations(|s, line| {
            if top(&s.rel) != "host" {
                return None;
            }
            crate_refs(line)
                .into_iter()
                .find(|r| r != "host" && r != "error_chain")
                .map(|r| format!("host uses {r}"))
        }),
    );
}

/// Rule 4: file system calls on host paths only in host/ and apply/'s effects; everything else
/// reads through `Host`.
#[test]
fn only_the_seam_touches_the_file_system() {
    const CALLS: &[&str] = &[
        "std::fs",
        "fs::",
        "File::open",
        "File::create",
        "OpenOptions",
        ".exists()",
        ".is_dir()",
        ".is_file()",
        "read_link",
        "canonicalize",
        "::statvfs",
        "::statfs",
        ".metadata()",
        "host.path(",
        "host().path(",
    ];
    assert_none(
        "a file system call outside host/ and apply/ (go through Host)",
        violations(|s, line| {
            if matches!(top(&s.rel), "host" | "apply") {
                return None;
            }
            CALLS.iter().find(|c| line.contains(*c)).map(|c| format!("`{c}`"))
        }),
    );
}

/// Rule 5: serve/ never imports commands/ or cli; only commands/ imports cli.
#[test]
fn only_commands_know_the_cli() {
    assert_none(
        "cli or commands used outside commands/",
        violations(|s, line| {
            let t = top(&s.rel);
            let refs = crate_refs(line);
            if t != "commands" && t != "cli" && t != "main" && refs.iter().any(|r| r == "cli") {
                return Some(format!("{t} uses cli"));
            }
            if t != "commands" && t != "main" && refs.iter().any(|r| r == "commands") {
                return Some(format!("{t} uses commands"));
            }
            None
        }),
    );
}

/// Rule 7: errors are typed; `anyhow` is not used, and a `Result<_, String>` only where the string
/// is a message for a typed error (a config key's reason, a mount's failed test, a clap value
/// parser's message, which clap prints as the usage error).
#[test]
fn errors_are_typed() {
    const MESSAGE_ONLY: &[&str] =
        &["config/validate.rs", "config/mod.rs", "apply/effects.rs", "cli.rs"];
    assert_none(
        "an untyped error",
        violations(|s, line| {
            if line.contains("anyhow") {
                return Some("anyhow".into());
            }
            let string_err = line.contains("Result<") && line.contains(", String>");
            (string_err && !MESSAGE_ONLY.contains(&s.rel.as_str()))
                .then(|| "Result<_, String>".into())
        }),
    );
}

/// No import circle between top-level modules.
#[test]
fn no_import_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources() {
        let from = top(&s.rel).to_string();
        if matches!(from.as_str(), "lib" | "main") {
            continue;
        }
        let edges = graph.entry(from.clone()).or_default();
        for (_, line) in &s.lines {
            for r in crate_refs(line) {
                if r != from
                    && r != "error_chain"
                    && r.chars().next().is_some_and(char::is_lowercase)
                {
                    edges.insert(r);
                }
            }
        }
    }
    // Depth-first search for a back edge, naming the circle.
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut circle = path[i..].to_vec();
            circle.push(n.to_string());
            return Some(circle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(circle) = visit(n, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {}\n(graph: {graph:?})", circle.join(" -> "));
        }
    }
    // The layers as the README draws them.
    for (module, must_not) in [
        ("host", &["config", "report", "capability", "run", "serve", "commands"][..]),
        ("capability", &["run", "serve", "commands", "cli"]),
        ("run", &["serve", "commands", "cli"]),
        ("serve", &["commands", "cli"]),
    ] {
        for m in must_not {
            assert!(!graph[module].contains(*m), "{module} uses {m}: {:?}", graph[module]);
        }
    }
}

/// Rule 6: adding a check is its module (or, for a check that needs a capability's own facts, a
/// second registration in that capability, as limits' canary) and one registry line: every
/// capability registers itself, every registration is listed once, and the registry names nothing
/// else.
#[test]
fn every_capability_is_in_the_registry_once() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/capability/mod.rs");
    let text = std::fs::read_to_string(src).unwrap();
    let start = text.find("pub static REGISTRY").expect("the registry");
    let registry = &text[start..start + text[start..].find("];").unwrap()];
    let listed: Vec<(&str, &str)> = registry
        .lines()
        .filter_map(|l| l.trim().strip_prefix('&')?.strip_suffix(',')?.split_once("::"))
        .collect();
    let mut modules: Vec<&str> = listed.iter().map(|(m, _)| *m).collect();
    modules.sort();
    modules.dedup();
    assert_eq!(modules, capabilities(), "registry lines vs capability modules");
    let mut registered = Vec::new();
    for s in sources() {
        let Some(cap) = s.rel.strip_prefix("capability/") else { continue };
        let name = cap.split('/').next().unwrap().trim_end_matches(".rs");
        for (_, l) in &s.lines {
            let Some(rest) = l.trim().strip_prefix("pub static ") else { continue };
            let Some((stat, _)) = rest.split_once(": Registration") else { continue };
            registered.push((name.to_string(), stat.to_string()));
        }
    }
    for (m, stat) in &registered {
        assert!(
            listed.iter().any(|(lm, ls)| lm == m && ls == stat),
            "{m}::{stat} is a registration the registry lacks"
        );
    }
    for m in capabilities() {
        assert!(
            registered.iter().any(|(rm, s)| *rm == m && s == "REGISTRATION"),
            "{m} has no REGISTRATION"
        );
    }
    let names: Vec<&str> = nodeprep::capability::REGISTRY.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), listed.len());
    assert_eq!(registered.len(), listed.len(), "{registered:?}");
}
