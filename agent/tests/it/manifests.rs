//! The deployment manifests under `packaging/` (Karpenter EC2NodeClass/NodePool, the DaemonSet with
//! its RBAC, the ValidatingAdmissionPolicy): every YAML document parses, carries what nodeprep relies
//! on, and every nodeprep config embedded in them (userData heredoc, Bottlerocket bootstrap-container
//! user-data, ConfigMap) is valid by nodeprep's own parser.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use nodeprep::config::{self, Config, Mode};
use serde::Deserialize;
use serde_json::Value;

const TAINT: &str = "nodeprep.io/not-ready";

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

/// The Kubernetes manifests under `dir`: every `.yaml`. Prometheus' own files (rules and their
/// unit tests in packaging/monitoring) are `.yml`, and prometheus.rs checks them with promtool.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

/// Every document of every YAML file, as JSON values, with the file it came from.
fn documents() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&packaging(), &mut files);
    assert!(!files.is_empty(), "no YAML under {}", packaging().display());
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for d in serde_norway::Deserializer::from_str(&text) {
            let v = serde_norway::Value::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if v.is_null() {
                continue;
            }
            let j = serde_json::to_value(&v).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            docs.push((f.clone(), j));
        }
    }
    docs
}

fn of_kind(kind: &str) -> Vec<(PathBuf, Value)> {
    documents().into_iter().filter(|(_, d)| d["kind"] == kind).collect()
}

fn one(kind: &str) -> Value {
    let mut v = of_kind(kind);
    assert_eq!(v.len(), 1, "expected one {kind}");
    v.pop().unwrap().1
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_else(|| panic!("no string at {ptr} in {v}"))
}

/// Parses an embedded nodeprep config exactly as `nodeprep --config` would.
fn nodeprep_config(text: &str, origin: &str) -> Config {
    config::parse(text, Path::new(origin))
        .unwrap_or_else(|e| panic!("embedded config {origin} is invalid: {e}\n{text}"))
}

#[test]
fn every_document_parses_and_the_kinds_are_there() {
    let docs = documents();
    let mut kinds = BTreeSet::new();
    for (f, d) in &docs {
        let kind = str_at(d, "/kind");
        str_at(d, "/apiVersion");
        assert!(!str_at(d, "/metadata/name").is_empty(), "{}: {kind} without a name", f.display());
        kinds.insert(kind.to_string());
    }
    for k in [
        "EC2NodeClass",
        "NodePool",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "PodMonitor",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "NodeReadinessRule",
    ] {
        assert!(kinds.contains(k), "no {k} in packaging/: {kinds:?}");
    }
    for (_, d) in of_kind("EC2NodeClass") {
        assert_eq!(d["apiVersion"], "karpenter.k8s.aws/v1");
    }
    for (_, d) in of_kind("NodePool") {
        assert_eq!(d["apiVersion"], "karpenter.sh/v1");
    }
}

#[test]
fn no_karpenter_raid0_anywhere() {
    // nodeprep (AL2023) or Bottlerocket's ephemeral-storage command owns instance storage; Karpenter's
    // instanceStorePolicy must not be a second owner. Comments may explain why; no value may set it.
    for (f, d) in documents() {
        assert!(
            d.pointer("/spec/instanceStorePolicy").is_none(),
            "{}: instanceStorePolicy set",
            f.display()
        );
    }
    let mut files = Vec::new();
    yaml_files(&packaging(), &mut files);
    for f in files {
        for (n, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            // The line without its comment (YAML and shell comments alike).
            let code = line.trim_start();
            let code = if code.starts_with('#') { "" } else { code.split(" #").next().unwrap() };
            assert!(
                !code.contains("instanceStorePolicy") && !code.contains("RAID0"),
                "{}:{}: {line}",
                f.display(),
                n + 1
            );
        }
    }
}

#[test]
fn rbac_is_exactly_nodes_get_patch_status_patch_slices_read_and_events_in_default() {
    // Every (group, resource) a role grants, with its verbs.
    let grants = |role: &Value| {
        let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for rule in role["rules"].as_array().unwrap() {
            assert!(
                rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
                "{rule}"
            );
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    let key = format!("{}/{}", g.as_str().unwrap(), r.as_str().unwrap());
                    got.entry(key).or_default().extend(
                        rule["verbs"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_str().unwrap().to_string()),
                    );
                }
            }
        }
        got
    };
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
    let role = one("ClusterRole");
    let want: BTreeMap<String, BTreeSet<String>> = [
        ("/nodes".to_string(), set(&["get", "patch"])),
        ("/nodes/status".to_string(), set(&["patch"])),
        // DRA added read access to ResourceSlices, nothing else.
        ("resource.k8s.io/resourceslices".to_string(), set(&["get", "list"])),
    ]
    .into_iter()
    .collect();
    assert_eq!(grants(&role), want);
    // Events only in `default` (where a Node's Events go), only create.
    let events = one("Role");
    assert_eq!(events["metadata"]["namespace"], "default");
    assert_eq!(grants(&events), [("/events".to_string(), set(&["create"]))].into_iter().collect());
    let rb = one("RoleBinding");
    assert_eq!(rb["roleRef"]["name"], events["metadata"]["name"]);
    assert_eq!(rb["subjects"][0]["name"], "nodeprep");

    let binding = one("ClusterRoleBinding");
    let sa = one("ServiceAccount");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    let subjects = binding["subjects"].as_array().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], sa["metadata"]["name"]);
    assert_eq!(subjects[0]["namespace"], sa["metadata"]["namespace"]);
}

#[test]
fn daemonset_runs_serve_on_the_host_root_read_only() {
    let ds = one("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["serviceAccountName"], one("ServiceAccount")["metadata"]["name"]);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    let args: Vec<&str> =
        c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let pos = |s: &str| {
        args.iter().position(|a| *a == s).unwrap_or_else(|| panic!("{s} not in {args:?}"))
    };
    assert_eq!(args[pos("--root") + 1], "/host");
    assert!(pos("serve") > pos("--root"), "global options come before the command: {args:?}");
    let config_path = args[pos("--config") + 1];

    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], 9477, "{probe}");
        // hostNetwork + a loopback listener: kubelet must probe 127.0.0.1, not the node IP.
        assert_eq!(get["host"], "127.0.0.1", "{probe}");
    }

    let env = c["env"].as_array().unwrap();
    let node_name = env.iter().find(|e| e["name"] == "NODE_NAME").expect("NODE_NAME");
    assert_eq!(node_name["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");

    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    for r in ["requests", "limits"] {
        assert!(
            c["resources"][r]["memory"].is_string() && c["resources"][r]["cpu"].is_string(),
            "resources.{r}"
        );
    }

    // Volumes: the host root read-only at /host; the config from the ConfigMap at --config.
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &Value| volumes.iter().find(|v| &v["name"] == name).unwrap().clone();
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(!mounts.iter().any(|m| m["mountPath"] == "/host"), "the whole host is never mounted");
    for m in mounts {
        let p = str_at(m, "/mountPath");
        if let Some(host_path) = p.strip_prefix("/host") {
            // Each host path at the same path under --root; only the status directory writable.
            assert_eq!(str_at(&volume(&m["name"]), "/hostPath/path"), host_path, "{m}");
            assert_ne!(host_path, "/", "{m}");
            if p != "/host/run/nodeprep" {
                assert_eq!(m["readOnly"], true, "writable host path {p}");
            }
            for secret in [
                "/var/lib/kubelet",
                "/var/lib/kubelet/pods",
                "/root",
                "/etc",
                "/var",
                "/run/containerd",
            ] {
                assert_ne!(host_path, secret, "{p} exposes more than the checks read");
            }
        }
    }
    let caps = &sc["capabilities"];
    assert_eq!(caps["drop"], serde_json::json!(["ALL"]));
    assert!(
        !caps["add"].as_array().unwrap().iter().any(|c| c == "DAC_READ_SEARCH" || c == "SYS_ADMIN"),
        "{caps}"
    );
    let cm_mount = mounts
        .iter()
        .find(|m| Path::new(config_path).parent() == Some(Path::new(str_at(m, "/mountPath"))))
        .expect("--config points into a mounted volume");
    let cm_name = str_at(&volume(&cm_mount["name"]), "/configMap/name").to_string();
    let cm = of_kind("ConfigMap")
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| d["metadata"]["name"] == cm_name.as_str())
        .unwrap();
    let file = Path::new(config_path).file_name().unwrap().to_str().unwrap();
    let cfg = nodeprep_config(str_at(&cm, &format!("/data/{file}")), config_path);
    assert_eq!(cfg.imds.enabled, Mode::Always);
    assert!(cfg.kubernetes.enabled);
    assert_eq!(cfg.kubernetes.startup_taint, TAINT);
    assert_eq!(cfg.serve.listen, "127.0.0.1:9477", "the probes target 127.0.0.1:9477");

    // Scheduling: tolerates the startup taint (it is the one that removes it) and the GPU taint.
    let tolerations = pod["tolerations"].as_array().unwrap();
    for key in [TAINT, "nvidia.com/gpu"] {
        assert!(tolerations.iter().any(|t| t["key"] == key), "no toleration for {key}");
    }
    assert!(pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        .is_object());
}

#[test]
fn nodepools_have_the_startup_taint_and_a_gpu_taint() {
    let pools = of_kind("NodePool");
    assert!(pools.len() >= 2, "one per AMI family");
    let classes: BTreeSet<String> = of_kind("EC2NodeClass")
        .into_iter()
        .map(|(_, d)| str_at(&d, "/metadata/name").to_string())
        .collect();
    for (f, p) in pools {
        let spec = &p["spec"]["template"]["spec"];
        let startup = spec["startupTaints"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no startupTaints", f.display()));
        assert!(
            startup.iter().any(|t| t["key"] == TAINT && t["effect"] == "NoSchedule"),
            "{}",
            f.display()
        );
        let taints = spec["taints"].as_array().unwrap();
        assert!(taints.iter().any(|t| t["key"] == "nvidia.com/gpu"), "{}", f.display());
        let types = spec["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == "node.kubernetes.io/instance-type")
            .expect("instance-type requirement");
        assert_eq!(types["values"], serde_json::json!(["p5.48xlarge"]));
        assert_eq!(spec["nodeClassRef"]["kind"], "EC2NodeClass");
        assert!(
            classes.contains(str_at(spec, "/nodeClassRef/name")),
            "{}: nodeClassRef",
            f.display()
        );
    }
}

/// A MIME multipart document: the parts' (content type, body).
fn mime_parts(doc: &str) -> Vec<(String, String)> {
    let (head, body) = doc.split_once("\n\n").expect("MIME headers, a blank line, the body");
    assert!(head.lines().any(|l| l.trim() == "MIME-Version: 1.0"), "{head}");
    let ctype = head.lines().find(|l| l.starts_with("Content-Type:")).expect("Content-Type header");
    assert!(ctype.contains("multipart/mixed"), "{ctype}");
    let boundary = ctype.split("boundary=").nth(1).expect("boundary").trim().trim_matches('"');
    let delim = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines.iter().rev().find(|l| !l.trim().is_empty()).copied(),
        Some(close.as_str()),
        "closing boundary"
    );
    let mut parts = Vec::new();
    let mut cur: Option<Vec<&str>> = None;
    for l in lines {
        if l == delim || l == close {
            if let Some(p) = cur.take() {
                parts.push(p.join("\n"));
            }
            if l == delim {
                cur = Some(Vec::new());
            }
        } else if let Some(p) = cur.as_mut() {
            p.push(l);
        }
    }
    parts
        .into_iter()
        .map(|p| {
            let (h, b) = p.split_once("\n\n").expect("part headers, a blank line, the body");
            let t = h
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type:"))
                .expect("part Content-Type")
                .split(';')
                .next()
                .unwrap()
                .trim()
                .to_string();
            (t, b.to_string())
        })
        .collect()
}

fn node_class(amifamily_file: &str) -> Value {
    of_kind("EC2NodeClass")
        .into_iter()
        .find(|(f, _)| f.ends_with(amifamily_file))
        .unwrap_or_else(|| panic!("no EC2NodeClass in {amifamily_file}"))
        .1
}

#[test]
fn al2023_user_data_installs_and_runs_nodeprep_boot_before_nodeadm() {
    let nc = node_class("karpenter/al2023.yaml");
    assert!(str_at(&nc, "/spec/amiSelectorTerms/0/alias").starts_with("al2023@"));
    assert!(!str_at(&nc, "/spec/placementGroupSelector/name").is_empty());
    let parts = mime_parts(str_at(&nc, "/spec/userData"));
    let types: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["text/x-shellscript", "application/node.eks.aws"]);

    let script = &parts[0].1;
    assert!(script.starts_with("#!/bin/bash"), "{script}");
    let code: Vec<&str> = script.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    assert!(code.iter().any(|l| l.contains("nodeprep boot")), "the script runs `nodeprep boot`");
    assert!(
        code.iter()
            .any(|l| l.contains("nodeprep-boot.service") && l.contains("nodeprep-config.path")),
        "and enables the units for reboots (and for a config written later)"
    );
    // Issue 22: on an AMI with the unit enabled, boot has run before cloud-final; a start of the
    // finished oneshot is a no-op and the node would run on the AMI's config.
    assert!(
        !code.iter().any(|l| l.contains("systemctl start nodeprep-boot")),
        "no `systemctl start` of the finished oneshot"
    );
    assert!(script.contains("REPLACE-ME"), "the download location is an obvious placeholder");

    // The config it writes is valid for nodeprep and matches the NodePool's startup taint.
    let (_, rest) = script.split_once("<<'NODEPREP_CONFIG'\n").expect("config heredoc");
    let (toml, _) = rest.split_once("\nNODEPREP_CONFIG\n").expect("heredoc terminator");
    let cfg = nodeprep_config(toml, "/etc/nodeprep/config.toml");
    assert!(cfg.kubernetes.enabled);
    assert_eq!(cfg.kubernetes.startup_taint, TAINT);
    assert!(code.iter().any(|l| l.starts_with("nodeprep config check")), "validated before boot");

    let node_config: serde_norway::Value = serde_norway::from_str(&parts[1].1).unwrap();
    assert_eq!(node_config["kind"].as_str(), Some("NodeConfig"));
    assert_eq!(node_config["apiVersion"].as_str(), Some("node.eks.aws/v1alpha1"));
}

#[test]
fn bottlerocket_settings_run_nodeprep_in_a_bootstrap_container() {
    let nc = node_class("karpenter/bottlerocket.yaml");
    assert_eq!(
        nc["spec"]["amiSelectorTerms"][0]["alias"].as_str().map(|a| a.starts_with("bottlerocket@")),
        Some(true)
    );
    let settings: toml::Table =
        toml::from_str(str_at(&nc, "/spec/userData")).expect("userData is TOML");
    let s = settings["settings"].as_table().unwrap();
    assert!(!s.contains_key("kubernetes"), "Karpenter fills settings.kubernetes");
    let rl = s["oci-defaults"]["resource-limits"].as_table().unwrap();
    for k in ["max-locked-memory", "max-stack-size"] {
        assert_eq!(rl[k]["hard-limit"].as_str(), Some("unlimited"), "{k}");
        assert_eq!(rl[k]["soft-limit"].as_str(), Some("unlimited"), "{k}");
    }
    let cmds = s["bootstrap-commands"].as_table().unwrap().values().next().unwrap()["commands"]
        .as_array()
        .unwrap();
    assert!(cmds.iter().any(|c| c
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str() == Some("ephemeral-storage"))));

    let bc = &s["bootstrap-containers"]["nodeprep"];
    assert_eq!(bc["mode"].as_str(), Some("always"));
    assert!(bc["source"].as_str().unwrap().contains("REPLACE-ME"));
    let text = String::from_utf8(base64_decode(bc["user-data"].as_str().unwrap())).unwrap();
    let cfg = nodeprep_config(&text, "/tmp/nodeprep.toml");
    // Bottlerocket owns limits (oci-defaults) and instance storage (ephemeral-storage).
    assert_eq!(cfg.limits.apply, Mode::Never);
    assert_eq!(cfg.storage.enabled, Mode::Never);
    assert_eq!(cfg.kubernetes.startup_taint, TAINT);
}

#[test]
fn admission_policy_limits_the_service_account_to_removing_its_taint() {
    let vap = one("ValidatingAdmissionPolicy");
    let binding = one("ValidatingAdmissionPolicyBinding");
    assert_eq!(vap["apiVersion"], "admissionregistration.k8s.io/v1");
    assert_eq!(binding["spec"]["policyName"], vap["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], serde_json::json!(["Deny"]));
    let rule = &vap["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(rule["resources"], serde_json::json!(["nodes", "nodes/status"]));
    assert_eq!(rule["operations"], serde_json::json!(["UPDATE"]));

    let sa = one("ServiceAccount");
    let user = format!(
        "system:serviceaccount:{}:{}",
        str_at(&sa, "/metadata/namespace"),
        str_at(&sa, "/metadata/name")
    );
    let cond = str_at(&vap, "/spec/matchConditions/0/expression");
    assert!(cond.contains(&format!("'{user}'")), "{cond}");

    let all: String = vap["spec"]["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| str_at(v, "/expression").to_string())
        .chain(
            vap["spec"]["variables"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| str_at(v, "/expression").to_string()),
        )
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        TAINT,
        "oldObject.spec.taints",
        "object.spec.taints",
        "object.metadata.labels",
        "object.spec.unschedulable",
        "authentication.kubernetes.io/node-name",
        "ownerReferences",
        "finalizers",
    ] {
        assert!(all.contains(needle), "policy does not look at {needle}:\n{all}");
    }
}

#[test]
fn kubectl_client_dry_run_when_available() {
    let Ok(out) = Command::new("kubectl").arg("version").arg("--client").output() else {
        println!("kubectl dry-run skipped: kubectl is not installed");
        return;
    };
    if !out.status.success() {
        println!("kubectl dry-run skipped: `kubectl version --client` failed");
        return;
    }
    let mut files = Vec::new();
    yaml_files(&packaging(), &mut files);
    for f in files {
        let out = Command::new("kubectl")
            .args(["apply", "--dry-run=client", "--validate=false", "--request-timeout=5s", "-f"])
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            println!("kubectl apply --dry-run=client {}: ok", f.display());
        } else if err.contains("connection refused")
            || err.contains("couldn't get current server API group list")
            || err.contains("no such host")
            || err.contains("i/o timeout")
        {
            // Client-side dry-run still maps kinds through the API server's discovery.
            println!("kubectl dry-run skipped for {}: no API server reachable", f.display());
        } else if err.contains("no matches for kind")
            && ["karpenter", "monitoring"].iter().any(|d| f.to_string_lossy().contains(d))
        {
            println!(
                "kubectl dry-run of {}: its CRDs (Karpenter, Prometheus Operator) are not installed in this cluster",
                f.display()
            );
        } else {
            panic!("kubectl apply --dry-run=client {}: {err}", f.display());
        }
    }
}

/// Standard base64 (with padding), enough for the Bottlerocket user-data setting.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert_eq!(bytes.len() % 4, 0, "base64 length");
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().filter(|&&b| b == b'=').count();
        let n = chunk
            .iter()
            .take(4 - pad)
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | val(b) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

/// A cluster Prometheus can scrape /metrics, and only /metrics, on each node: the DaemonSet passes
/// the node IP to --metrics-listen (Kubernetes expands `$(NODE_IP)` only from a variable defined
/// before), names the port, and annotates its pods; the PodMonitor selects those pods and that
/// port; the probes and /status stay on the loopback.
#[test]
fn the_daemonset_exposes_metrics_alone_on_the_node_ip() {
    let ds = one("DaemonSet");
    let tpl = &ds["spec"]["template"];
    let c = &tpl["spec"]["containers"][0];
    let env = c["env"].as_array().unwrap();
    let at = |name: &str| {
        env.iter().position(|e| e["name"] == name).unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(env[at("NODE_IP")]["valueFrom"]["fieldRef"]["fieldPath"], "status.hostIP");
    assert!(
        at("NODE_IP") < at("NODEPREP_METRICS_LISTEN"),
        "NODE_IP must come first to be expanded"
    );
    let listen = str_at(&env[at("NODEPREP_METRICS_LISTEN")], "/value");
    assert_eq!(listen, "$(NODE_IP):9478");
    // What serve gets, for an IPv4 and an IPv6 node, is an address it takes.
    for ip in ["10.0.12.34", "2600:1f14:abc:de00::5"] {
        let value = listen.replace("$(NODE_IP)", ip);
        nodeprep::config::parse_listen(&value).unwrap_or_else(|e| panic!("{e}"));
    }
    let ports = c["ports"].as_array().unwrap();
    let metrics = ports.iter().find(|p| p["name"] == "metrics").expect("a port named metrics");
    assert_eq!(metrics["containerPort"], 9478);
    let ann = &tpl["metadata"]["annotations"];
    assert_eq!(
        (ann["prometheus.io/scrape"].as_str(), ann["prometheus.io/port"].as_str()),
        (Some("true"), Some("9478"))
    );
    assert_eq!(ann["prometheus.io/path"], "/metrics");

    let pm = one("PodMonitor");
    assert_eq!(pm["metadata"]["namespace"], ds["metadata"]["namespace"]);
    assert_eq!(pm["spec"]["namespaceSelector"]["matchNames"][0], ds["metadata"]["namespace"]);
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&tpl["metadata"]["labels"][k], v, "the PodMonitor selects the DaemonSet's pods");
    }
    let ep = &pm["spec"]["podMetricsEndpoints"][0];
    assert_eq!((ep["port"].as_str(), ep["path"].as_str()), (Some("metrics"), Some("/metrics")));
    // The job the alerts and the dashboard use.
    let job_label = str_at(&pm, "/spec/jobLabel");
    assert_eq!(tpl["metadata"]["labels"][job_label], "nodeprep");
}

/// The PrometheusRule is nodeprep-rules.yml, group for group and rule for rule.
#[test]
fn the_prometheus_rule_is_the_rules_file() {
    let file = packaging().join("monitoring/nodeprep-rules.yml");
    let text = std::fs::read_to_string(&file).unwrap();
    let rules: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let rules = serde_json::to_value(rules).unwrap();
    let pr = one("PrometheusRule");
    assert_eq!(
        pr["spec"]["groups"],
        rules["groups"],
        "prometheus-rule.yaml differs from {}",
        file.display()
    );
    assert!(rules["groups"].as_array().is_some_and(|g| g.len() == 2));
}

/// The DaemonSet mounts only what the checks read: on a tree holding only those paths of the
/// example node (what `--root /host` shows in the pod), every check says what it says on the whole
/// tree.
#[test]
fn the_daemonsets_mounts_hold_everything_the_checks_read() {
    let ds = one("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let volumes = pod["volumes"].as_array().unwrap();
    let view = tempfile::tempdir().unwrap();
    let example = crate::common::example();
    let mut mounted = Vec::new();
    for m in c["volumeMounts"].as_array().unwrap() {
        let Some(host_path) = str_at(m, "/mountPath").strip_prefix("/host/") else { continue };
        let v = volumes.iter().find(|v| v["name"] == m["name"]).unwrap();
        assert!(v["hostPath"].is_object(), "{v}");
        let from = example.join(host_path);
        let to = view.path().join(host_path);
        std::fs::create_dir_all(&to).unwrap();
        if from.exists() {
            let ok = std::process::Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", from.display()))
                .arg(&to)
                .status()
                .unwrap()
                .success();
            assert!(ok, "cp -a {}", from.display());
        }
        mounted.push(host_path.to_string());
    }
    println!("mounted under /host: {mounted:?}");
    let report = |root: &Path| -> Vec<(String, String, String)> {
        let o = crate::common::nodeprep(root, &["--output", "json", "check"]);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let root = root.display().to_string();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    str_at(c, "/name").to_string(),
                    str_at(c, "/status").to_string(),
                    str_at(c, "/summary").replace(&root, "ROOT"),
                )
            })
            .collect()
    };
    let (whole, narrow) = (report(&example), report(view.path()));
    assert!(whole.iter().all(|(_, s, _)| s == "pass" || s == "skip" || s == "warn"), "{whole:#?}");
    assert_eq!(narrow, whole, "the checks see less through the DaemonSet's mounts");
}

/// The admission policy's CEL, run by a real CEL evaluator (the `cel` crate) on the requests the
/// API server would send it: what nodeprep itself sends is allowed; writing another node, a token
/// without the node's name, other taints, labels, owner references, finalizers, other conditions
/// or other status fields are denied, each by the rule that says so.
#[test]
fn admission_policy_cel_allows_nodeprep_and_denies_everything_else() {
    use serde_json::json;
    let vap = one("ValidatingAdmissionPolicy");
    let spec = &vap["spec"];
    let compile = |e: &str| {
        cel::Program::compile(e).unwrap_or_else(|err| panic!("CEL does not compile: {e}\n{err}"))
    };
    let matches = compile(str_at(spec, "/matchConditions/0/expression"));
    let variables: Vec<(String, cel::Program)> = spec["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (str_at(v, "/name").to_string(), compile(str_at(v, "/expression"))))
        .collect();
    let rules: Vec<(String, cel::Program)> = spec["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (str_at(v, "/message").to_string(), compile(str_at(v, "/expression"))))
        .collect();
    // The messages of the rules that deny the request; empty when it is allowed.
    let admit = |old: &Value, new: &Value, sub: Option<&str>, node: Option<&str>| -> Vec<String> {
        let mut user = json!({"username": "system:serviceaccount:nodeprep:nodeprep"});
        if let Some(n) = node {
            user["extra"] = json!({"authentication.kubernetes.io/node-name": [n]});
        }
        let mut request = json!({"userInfo": user, "operation": "UPDATE"});
        if let Some(s) = sub {
            request["subResource"] = json!(s);
        }
        let mut ctx = cel::Context::default();
        ctx.add_variable("request", request).unwrap();
        ctx.add_variable("object", new.clone()).unwrap();
        ctx.add_variable("oldObject", old.clone()).unwrap();
        assert_eq!(matches.execute(&ctx).unwrap(), cel::Value::Bool(true));
        let mut vars = serde_json::Map::new();
        for (name, p) in &variables {
            let v = p.execute(&ctx).unwrap_or_else(|e| panic!("variable {name}: {e}"));
            vars.insert(name.clone(), v.json().unwrap());
            ctx.add_variable("variables", Value::Object(vars.clone())).unwrap();
        }
        rules
            .iter()
            .filter(|(_, p)| p.execute(&ctx).unwrap() != cel::Value::Bool(true))
            .map(|(m, _)| m.clone())
            .collect()
    };
    let node = json!({
        "metadata": {"name": "node-1", "labels": {"karpenter.sh/registered": "true"}},
        "spec": {"providerID": "aws:///us-east-2a/i-0abc", "taints": [
            {"key": "nodeprep.io/not-ready", "effect": "NoSchedule"},
            {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]},
        "status": {"capacity": {"nvidia.com/gpu": "8"}, "allocatable": {"nvidia.com/gpu": "8"},
                   "conditions": [{"type": "Ready", "status": "True"},
                                  {"type": "nodeprep.io/EFAReady", "status": "False"},
                                  {"type": "NetworkingReady", "status": "True", "reason": "NodeprepHardwareHealthy"}]}
    });
    let with = |f: &dyn Fn(&mut Value)| {
        let mut n = node.clone();
        f(&mut n);
        n
    };
    let untainted =
        with(&|n| n["spec"]["taints"].as_array_mut().unwrap().remove(0).to_string().clear());
    let me = Some("node-1");
    let denied_by = |why: &[String], rule: &str| {
        assert!(why.iter().any(|m| m.contains(rule)), "not denied by `{rule}`: {why:?}");
    };
    // What nodeprep sends.
    assert_eq!(admit(&node, &untainted, None, me), Vec::<String>::new(), "taint removal");
    let cond = with(&|n| {
        n["status"]["conditions"][1]["status"] = json!("True");
        n["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "nodeprep.io/Ready", "status": "True"}));
    });
    assert_eq!(admit(&node, &cond, Some("status"), me), Vec::<String>::new(), "its conditions");
    // The repair bridge: the node repair conditions.
    let repair = with(&|n| {
        n["status"]["conditions"][2]["status"] = json!("False");
        n["status"]["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "AcceleratedHardwareReady", "status": "False", "reason": "NodeprepHardwareFault"}));
    });
    assert_eq!(
        admit(&node, &repair, Some("status"), me),
        Vec::<String>::new(),
        "repair conditions"
    );
    // A condition of another writer that merely starts like ours is not ours.
    denied_by(
        &admit(
            &node,
            &with(&|n| {
                n["status"]["conditions"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "NodeprepReady", "status": "True"}))
            }),
            Some("status"),
            me,
        ),
        "only its own nodeprep.io/ conditions",
    );
    // What it must not.
    let denied = |old: &Value, new: &Value, sub: Option<&str>, who: Option<&str>, rule: &str| {
        let why = admit(old, new, sub, who);
        assert!(why.iter().any(|m| m.contains(rule)), "not denied by `{rule}`: {why:?}\n{new}");
    };
    denied(&node, &untainted, None, Some("node-2"), "only the Node its pod runs on");
    denied(&node, &untainted, None, None, "only the Node its pod runs on");
    denied(&node, &cond, Some("status"), Some("node-2"), "only the Node its pod runs on");
    denied(
        &node,
        &with(&|n| n["spec"]["taints"].as_array_mut().unwrap().truncate(0)),
        None,
        me,
        "other taints must not change",
    );
    denied(&untainted, &node, None, me, "not add or change it");
    denied(
        &node,
        &with(&|n| n["spec"]["unschedulable"] = json!(true)),
        None,
        me,
        "spec other than",
    );
    denied(
        &node,
        &with(&|n| n["metadata"]["labels"]["x"] = json!("y")),
        None,
        me,
        "labels, annotations",
    );
    denied(
        &node,
        &with(&|n| {
            n["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"}])
        }),
        None,
        me,
        "owner references",
    );
    denied(&node, &with(&|n| n["metadata"]["finalizers"] = json!(["x/y"])), None, me, "finalizers");
    denied(
        &node,
        &with(&|n| n["status"]["conditions"][0]["status"] = json!("False")),
        Some("status"),
        me,
        "only its own nodeprep.io/ conditions",
    );
    denied(
        &node,
        &with(&|n| n["status"]["allocatable"]["nvidia.com/gpu"] = json!("0")),
        Some("status"),
        me,
        "status other than",
    );
    denied(
        &node,
        &with(&|n| n["metadata"]["labels"]["x"] = json!("y")),
        Some("status"),
        me,
        "labels, annotations",
    );
}

/// The Python with kubernetes-validate and jsonschema that `scripts/test` installs.
fn test_python() -> PathBuf {
    let p = std::env::var_os("NODEPREP_TEST_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/python")
    });
    assert!(
        p.exists(),
        "{} not found: kubernetes-validate and jsonschema are not installed; run `scripts/test --install` (it makes target/test-venv) or set NODEPREP_TEST_PYTHON",
        p.display()
    );
    p
}

fn validate(files: &[&Path]) -> (i32, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/crds/validate.py");
    let out = Command::new(test_python()).arg(script).args(files).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Every manifest under packaging/ against Kubernetes' own schemas (kubernetes-validate) and the
/// saved CRDs of Karpenter, the Node Readiness Controller and the Prometheus Operator (jsonschema),
/// strictly; and the validator fails on what a typo makes of them.
#[test]
fn every_manifest_validates_against_kubernetes_and_crd_schemas() {
    let (code, text) = validate(&[]);
    println!("{text}");
    assert_eq!(code, 0, "{text}");
    for kind in [
        "DaemonSet/nodeprep",
        "NodePool/gpu-efa-p5",
        "EC2NodeClass/gpu-efa-al2023",
        "NodeReadinessRule/nodeprep",
        "ValidatingAdmissionPolicy/nodeprep-node-patch",
        "PrometheusRule/nodeprep",
        "Role/nodeprep-events",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with("ok") && l.contains(kind)),
            "{kind} not validated:\n{text}"
        );
    }
    // What a typo makes of them is caught, and named.
    let dir = tempfile::tempdir().unwrap();
    let broken = |src: &str, from: &str, to: &str, name: &str| {
        let text = std::fs::read_to_string(packaging().join(src)).unwrap();
        assert!(text.contains(from), "{src} has no {from:?}");
        let p = dir.path().join(name);
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
        p
    };
    let np = broken("karpenter/al2023.yaml", "  template:", "  tmplate:", "np.yaml");
    let nrr = broken(
        "kubernetes/node-readiness-rule.yaml",
        "requiredStatus: \"True\"",
        "requiredStatus: \"Yes\"",
        "nrr.yaml",
    );
    let ds = broken(
        "kubernetes/daemonset.yaml",
        "hostNetwork: true",
        "hostNetwork: true\n      hostNetworking: true",
        "ds.yaml",
    );
    let (code, text) = validate(&[&np, &nrr, &ds]);
    assert_eq!(code, 1, "{text}");
    for want in [
        "'tmplate' was unexpected",
        "'Yes' is not one of ['True', 'False', 'Unknown']",
        "'hostNetworking' was unexpected",
    ] {
        assert!(text.contains(want), "not caught: {want}\n{text}");
    }
}

/// The CEL rules (x-kubernetes-validations) of the saved CRDs, evaluated with the `cel` crate on our
/// custom resources as the API server does on create: `self` is the value the rule sits on;
/// transition rules (they name `oldSelf`) apply to updates only. Rules this CEL library cannot run
/// (Kubernetes' own string functions) are listed as not evaluated, never counted as passed.
#[test]
fn crd_cel_rules_hold_for_our_custom_resources() {
    fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<(String, String, String)>) {
        for rule in schema["x-kubernetes-validations"].as_array().into_iter().flatten() {
            let r = rule["rule"].as_str().unwrap_or("").to_string();
            let msg = rule["message"].as_str().unwrap_or("").to_string();
            if !r.contains("oldSelf") {
                out.push((path.to_string(), r, serde_json::to_string(&(value, msg)).unwrap()));
            }
        }
        if let (Some(props), Some(obj)) = (schema["properties"].as_object(), value.as_object()) {
            for (k, sub) in props {
                if let Some(v) = obj.get(k) {
                    walk(sub, v, &format!("{path}.{k}"), out);
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                walk(items, v, &format!("{path}[{i}]"), out);
            }
        }
    }
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/crds");
    let schema_of = |file: &str| -> Value {
        let text = std::fs::read_to_string(crds.join(file)).unwrap();
        let crd: Value = serde_norway::from_str(&text).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    };
    // Evaluates every rule on `doc`: (evaluated and held, the rules that did not hold, not evaluated).
    let judge = |schema: &Value, doc: &Value| {
        let mut rules = Vec::new();
        walk(schema, doc, "", &mut rules);
        let (mut held, mut broke, mut skipped) = (0, Vec::new(), Vec::new());
        for (path, rule, ctx) in rules {
            let (value, msg): (Value, String) = serde_json::from_str(&ctx).unwrap();
            let mut c = cel::Context::default();
            c.add_variable("self", value).unwrap();
            match cel::Program::compile(&rule)
                .map_err(|e| e.to_string())
                .and_then(|p| p.execute(&c).map_err(|e| e.to_string()))
            {
                Ok(cel::Value::Bool(true)) => held += 1,
                Ok(cel::Value::Bool(false)) => broke.push(format!("{path}: {msg}")),
                Ok(other) => skipped.push(format!("{path}: {rule} gave {other:?}")),
                Err(e) => skipped.push(format!("{path}: {rule}: {e}")),
            }
        }
        (held, broke, skipped)
    };
    let nrr_schema = schema_of("readiness.node.x-k8s.io_nodereadinessrules.yaml");
    let nrr = one("NodeReadinessRule");
    let (held, broke, skipped) = judge(&nrr_schema, &nrr);
    println!("NodeReadinessRule: {held} CEL rules hold; not evaluated here: {skipped:#?}");
    assert!(broke.is_empty(), "{broke:?}");
    assert!(held >= 3, "too few rules evaluated ({held}): {skipped:?}");
    // A taint the controller would refuse is caught by its rule.
    let mut bad = nrr.clone();
    bad["spec"]["taint"]["key"] = Value::from("nodeprep.io/not-ready");
    let (_, broke, _) = judge(&nrr_schema, &bad);
    assert!(
        broke.iter().any(|m| m.contains("taint key must start with 'readiness.k8s.io/'")),
        "{broke:?}"
    );
    for (_, np) in of_kind("NodePool") {
        let (held, broke, skipped) = judge(&schema_of("karpenter.sh_nodepools.yaml"), &np);
        println!(
            "NodePool {}: {held} CEL rules hold; not evaluated here: {}",
            np["metadata"]["name"],
            skipped.len()
        );
        assert!(broke.is_empty(), "{broke:?}");
    }
    for (_, nc) in of_kind("EC2NodeClass") {
        let (held, broke, skipped) =
            judge(&schema_of("karpenter.k8s.aws_ec2nodeclasses.yaml"), &nc);
        println!(
            "EC2NodeClass {}: {held} CEL rules hold; not evaluated here: {}",
            nc["metadata"]["name"],
            skipped.len()
        );
        assert!(broke.is_empty(), "{broke:?}");
    }
}
