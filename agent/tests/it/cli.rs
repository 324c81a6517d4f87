//! The binary as a user runs it: exit codes, messages, the report in both formats, the example tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use nodeprep_fixtures::{snapshot, Spec};

use crate::common::{example, nodeprep, stderr, stdout, tree, Nodeprep};

/// The table row of a check, e.g. "pass    instance  p5.48xlarge ...".
fn row(out: &str, check: &str) -> String {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no row for {check}:\n{out}"))
        .to_string()
}

#[test]
fn example_tree_is_what_the_generator_writes() {
    let fresh = tree(&Spec::p5_48xlarge());
    let want = snapshot(fresh.path());
    let have = snapshot(&example());
    let names = |v: &[(PathBuf, Vec<u8>)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    let (have_names, want_names) = (names(&have), names(&want));
    let regen = "run `rm -r examples/p5.48xlarge && cargo run -p nodeprep-fixtures -- p5.48xlarge examples/p5.48xlarge`";
    if let Some(extra) = have_names.iter().find(|n| !want_names.contains(n)) {
        panic!("examples/p5.48xlarge/{} is not written by the generator: {regen}", extra.display());
    }
    if let Some(missing) = want_names.iter().find(|n| !have_names.contains(n)) {
        panic!("examples/p5.48xlarge/{} is missing: {regen}", missing.display());
    }
    for ((p, a), (_, b)) in have.iter().zip(&want) {
        assert!(
            a == b,
            "examples/p5.48xlarge/{} differs from the generator's: {regen}",
            p.display()
        );
    }
}

#[test]
fn check_on_the_example_tree_is_ready() {
    let o = nodeprep(&example(), &["check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(out.starts_with("nodeprep: p5.48xlarge: READY"), "{out}");
    assert!(
        row(&out, "instance").starts_with("pass")
            && row(&out, "instance").contains("p5.48xlarge (from DMI): 8 × H100"),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "no colour when stdout is not a terminal");
}

#[test]
fn json_report_has_the_design_schema() {
    let o = nodeprep(&example(), &["--output", "json", "check"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "nodeprep.report/v1");
    assert_eq!(v["ready"], true);
    assert_eq!(v["instance_type"], "p5.48xlarge");
    assert_eq!(v["identity"]["source"], "dmi");
    let inst = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "instance").unwrap();
    assert_eq!(inst["status"], "pass");
    assert_eq!(inst["expected"]["efa"], 32);
    assert_eq!(inst["expected"]["gpus"], 8);
    // The env var does the same as the flag.
    let o2 = Nodeprep::bare()
        .env("NODEPREP_NVML_LIB", nodeprep_fixtures::fake_nvml(&[]))
        .env("NODEPREP_ROOT", example())
        .env("NODEPREP_OUTPUT", "json")
        .args(["check"])
        .output();
    let v2: serde_json::Value = serde_json::from_slice(&o2.stdout).unwrap();
    assert_eq!(v2["instance_type"], "p5.48xlarge");
}

#[test]
fn instance_type_flag_overrides_dmi_and_unknown_types_warn() {
    let o = nodeprep(&example(), &["--instance-type", "m7i.large", "check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let inst = row(&out, "instance");
    assert!(
        inst.starts_with("warn")
            && inst.ends_with("m7i.large (from --instance-type) is not in the catalog: hardware is checked for consistency only"),
        "{out}"
    );
    assert!(out.contains("remedy: set [expect]"), "{out}");
}

#[test]
fn node_without_identity_still_gets_a_report() {
    let dir = tree(&Spec::empty());
    let o = nodeprep(dir.path(), &["check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.starts_with("nodeprep: unknown instance type: READY"), "{out}");
    assert!(out.contains("instance type unknown (DMI: reading"), "{out}");
    assert!(
        out.contains("IMDS: not queried (imds.enabled = \"auto\" and --root is not /)"),
        "{out}"
    );
    // The note names the setting as it is.
    let mut spec = Spec::empty();
    spec.config = Some("[imds]\nenabled = \"never\"\n".into());
    let dir = tree(&spec);
    let out = stdout(&nodeprep(dir.path(), &["check"]));
    assert!(out.contains("IMDS: not queried (imds.enabled = \"never\")"), "{out}");
    assert!(!out.contains("\"auto\""), "{out}");
}

#[test]
fn config_errors_exit_2_naming_file_line_and_key() {
    let mut spec = Spec::p5_48xlarge();
    spec.config = Some("[limits]\nmemlock = \"lots\"\n".into());
    let dir = tree(&spec);
    let before = snapshot(dir.path());
    for cmd in [
        &["check"][..],
        &["boot"],
        &["boot", "--dry-run"],
        &["serve"],
        &["config", "check"],
        &["status"],
    ] {
        let o = nodeprep(dir.path(), cmd);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", stderr(&o));
        let want = format!("nodeprep: configuration error: {}/etc/nodeprep/config.toml:2: key `limits.memlock`: expected \"unlimited\" or a number of bytes, found \"lots\"", dir.path().display());
        assert!(stderr(&o).contains(&want), "{cmd:?}: {}", stderr(&o));
        assert!(
            stdout(&o).is_empty() || cmd == ["status"],
            "{cmd:?} printed a report: {}",
            stdout(&o)
        );
    }
    assert_eq!(snapshot(dir.path()), before, "nothing on the host changed");
}

#[test]
fn explicit_config_must_exist() {
    let o = nodeprep(&example(), &["--config", "/nonexistent/nodeprep.toml", "config", "check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/nodeprep.toml: cannot read: no such file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn config_check_and_show() {
    let o = nodeprep(&example(), &["config", "check"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("configuration ok: built-in defaults"), "{}", stdout(&o));
    let o = nodeprep(&example(), &["config", "show"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0));
    for key in [
        "memlock = \"unlimited\"",
        "mount_point = \"/mnt/nodeprep\"",
        "listen = \"127.0.0.1:9477\"",
        "interval_seconds = 30",
        "[kubernetes]",
        "# instance_type =",
    ] {
        assert!(out.contains(key), "{key} missing from config show:\n{out}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["check", "--only", "efa-typo"],
            "unknown check `efa-typo`; known checks: instance, limits, limits-canary, efa",
        ),
        (
            &["--instance-type", "P5!", "check"],
            "--instance-type: \"P5!\" is not an EC2 instance type",
        ),
        (&["catalog", "x9.huge"], "x9.huge is not in the catalog"),
        (&["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (
            &["--output", "yaml", "check"],
            "--output yaml: a file is only for `nodeprep bundle`; reports are text or json",
        ),
    ];
    for (args, want) in cases {
        let o = nodeprep(&example(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let o = Nodeprep::bare().args(["--root", "/nonexistent/root", "check"]).output();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--root /nonexistent/root: not a directory"), "{}", stderr(&o));
}

#[test]
fn only_runs_the_named_checks_and_rejects_unknown_ones() {
    let o = nodeprep(&example(), &["check", "--only", "storage,efa"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("pass    efa") && out.contains("pass    storage") && !out.contains("nvidia"),
        "{out}"
    );
    let o = nodeprep(&example(), &["check", "--only", "raid"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown check `raid`; known checks: instance, limits, limits-canary, efa, efa-loopback, nvidia, storage, device-plugins"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty(), "no report for a usage error");
}

#[test]
fn help_and_version_exit_0() {
    let o = nodeprep(&example(), &["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = stdout(&o);
    assert!(help.contains("Exit codes (all commands)"), "{help}");
    assert!(help.contains("--root <DIR>"), "{help}");
    let o = nodeprep(&example(), &["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("nodeprep "));
}

#[test]
fn status_reads_the_status_file_with_its_age() {
    let dir = tree(&Spec::p5_48xlarge());
    // No status file: says so and runs the checks.
    let o = nodeprep(dir.path(), &["status"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("no status file at"), "{}", stdout(&o));
    // A not-ready report written by boot/serve an hour ago: shown as is, with its age and exit 1.
    let then = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
    )
    .to_string();
    let report = format!(
        r#"{{"schema":"nodeprep.report/v1","ready":false,"instance_type":"p5.48xlarge","generated_at":"{then}","duration_ms":9,
        "checks":[{{"name":"efa","status":"fail","required":true,"summary":"31 of 32 EFA devices active","expected":{{"devices":32}},"found":{{"devices":31}},"remedy":"relaunch","duration_ms":1}}]}}"#
    );
    std::fs::create_dir_all(dir.path().join("run/nodeprep")).unwrap();
    std::fs::write(dir.path().join("run/nodeprep/status.json"), report).unwrap();
    let o = nodeprep(dir.path(), &["status"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("(1h old)"), "{out}");
    assert!(out.contains("FAIL    efa    31 of 32 EFA devices active"), "{out}");
    // --fresh ignores the file.
    let o = nodeprep(dir.path(), &["status", "--fresh"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn catalog_prints_entries() {
    let o = nodeprep(&example(), &["catalog", "p5.48xlarge"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(out.lines().next(), Some("p5.48xlarge"), "{out}");
    assert!(out.contains("H100"), "{out}");
    let o = nodeprep(&example(), &["catalog"]);
    assert!(stdout(&o).lines().nth(1).is_some_and(|l| l.starts_with("c5n.18xlarge")));
    let o = nodeprep(&example(), &["--output", "json", "catalog"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["p5.48xlarge"]["efa"], 32);
    assert_eq!(v["g5.xlarge"]["efa"], 0);
}

#[test]
fn readme_documents_every_config_key_and_exit_code() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    for k in nodeprep::config::KEYS {
        assert!(
            readme.contains(&format!("| `{}` |", k.key)),
            "README's config table lacks `{}`",
            k.key
        );
    }
    for code in ["| 0 | ready", "| 1 | not ready", "| 2 | usage or configuration error"] {
        assert!(readme.contains(code), "README lacks exit code row {code}");
    }
}

/// The README's table of checks is the registry: the same checks, in report order, each with
/// when it runs and what it checks.
#[test]
fn readme_check_table_is_the_registry() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme.find("| check | runs | what it checks |").expect("README's check table");
    let rows: Vec<Vec<String>> = readme[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|').split('|').map(|c| c.trim().trim_matches('`').to_string()).collect()
        })
        .collect();
    let want: Vec<Vec<String>> = nodeprep::capability::REGISTRY
        .iter()
        .map(|r| vec![r.name.to_string(), r.when.describe().to_string(), r.about.to_string()])
        .collect();
    assert_eq!(rows, want, "README's check table differs from capability::REGISTRY");
    // And --help lists the same checks, from the same registry.
    let help = stdout(&Nodeprep::bare().args(["check", "--help"]).output());
    for r in nodeprep::capability::REGISTRY {
        assert!(help.contains(r.name) && help.contains(r.about), "{help}");
    }
}

#[test]
fn logs_go_to_stderr_with_structured_fields_and_verbosity() {
    let dir = tree(&Spec::empty());
    // Default: warnings only (the unknown instance type is one); stdout keeps the report alone.
    let o = nodeprep(dir.path(), &["check"]);
    let err = stderr(&o);
    assert!(err.contains("WARN") && err.contains("instance type unknown"), "{err}");
    assert!(!err.contains("INFO"), "{err}");
    assert!(!stdout(&o).contains("WARN"));
    // -vv: info and debug lines, each with key=value fields.
    let o = nodeprep(&example(), &["check", "-vv"]);
    let err = stderr(&o);
    assert!(
        err.contains("INFO")
            && err.contains("instance identified instance_type=\"p5.48xlarge\" source=DMI"),
        "{err}"
    );
    assert!(
        err.contains("DEBUG") && err.contains("check finished check=\"instance\" status=\"pass\""),
        "{err}"
    );
    // -q: errors only.
    let o = nodeprep(dir.path(), &["-q", "check"]);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

/// Runs nodeprep through `sh`, with stdout and stderr closed (`>&- 2>&-`), as a unit or script
/// may start it.
fn closed_fds(root: &Path, args: &[&str]) -> Command {
    Nodeprep::through(&["sh", "-c", "exec \"$0\" \"$@\" >&- 2>&-"], root).args(args).command()
}

/// Without std's start-up (a C `main`), a closed stdout or stderr is the first file nodeprep
/// opens, and its report and logs land there (or `serve` dies printing its address). std reopens
/// fds 0-2 on /dev/null, so every file is what a normal run writes.
#[test]
fn started_with_stdout_and_stderr_closed_no_file_gets_the_report() {
    let files = [
        "run/nodeprep/status.json",
        "etc/systemd/system/containerd.service.d/50-nodeprep-limits.conf",
        "etc/security/limits.d/50-nodeprep.conf",
        "etc/containerd/base-runtime-spec.json",
    ];
    let (closed, normal) =
        (tree(&Spec::p5_48xlarge().unprepared()), tree(&Spec::p5_48xlarge().unprepared()));
    for f in &files[1..3] {
        let _ = std::fs::remove_file(closed.path().join(f));
        let _ = std::fs::remove_file(normal.path().join(f));
    }
    let o = closed_fds(closed.path(), &["-vvv", "boot"]).output().unwrap();
    let n = nodeprep(normal.path(), &["-vvv", "boot"]);
    assert_eq!(o.status.code(), n.status.code(), "{}", stdout(&n));
    for f in &files[1..] {
        let (a, b) = (
            std::fs::read(closed.path().join(f)).unwrap(),
            std::fs::read(normal.path().join(f)).unwrap(),
        );
        assert!(a == b, "{f} differs from a normal run's:\n{}", String::from_utf8_lossy(&a));
    }
    let masked = |root: &Path| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join(files[0])).unwrap())
                .expect("the status file is a whole report");
        v["generated_at"] = "T".into();
        v["duration_ms"] = 0.into();
        for c in v["checks"].as_array_mut().unwrap() {
            c["duration_ms"] = 0.into();
        }
        v
    };
    assert_eq!(masked(closed.path()), masked(normal.path()));

    // serve: it prints its address on stdout first; it must keep running and keep the status file whole.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let serve = closed_fds(closed.path(), &["-vvv", "serve", "--listen", &listen]).spawn();
    let mut child = Killed(serve.unwrap());
    let t0 = std::time::Instant::now();
    let answer = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("serve exited ({status}) with stdout and stderr closed");
        }
        if let Ok(mut s) = std::net::TcpStream::connect(&listen) {
            use std::io::{Read, Write};
            s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            if text.starts_with("HTTP/1.1 200") {
                break text;
            }
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(20), "serve never answered /status");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop(child);
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["schema"], "nodeprep.report/v1");
    masked(closed.path());
}
