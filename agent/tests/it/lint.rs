//! `nodeprep lint`: the walkthrough whose pods stay Pending gives the findings a user would expect
//! and nothing else; the packaged manifests give none; each rule has a case that fires and a
//! near one that does not; unparsable input is exit 2 naming file:line, nothing else reported.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::common::{stderr, stdout, Nodeprep};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lint_paths(paths: &[&Path], json: bool) -> Output {
    let mut n = Nodeprep::bare();
    if json {
        n = n.args(["--output", "json"]);
    }
    n.args(["lint"]).args(paths).output()
}

/// Lints YAML given on standard input; exit code and the findings as (rule, severity, line).
fn lint_text(yaml: &str) -> (i32, Vec<(String, String, u64)>, Value) {
    let mut child = Nodeprep::bare()
        .args(["--output", "json", "lint", "-"])
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let code = o.status.code().unwrap();
    if code == 2 {
        return (code, Vec::new(), Value::String(stderr(&o)));
    }
    let v: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    (code, f, v)
}

fn rules(f: &[(String, String, u64)]) -> Vec<&str> {
    let mut r: Vec<&str> = f.iter().map(|(r, _, _)| r.as_str()).collect();
    r.sort();
    r.dedup();
    r
}

#[test]
fn the_walkthrough_gives_what_keeps_its_pods_pending_and_nothing_else() {
    let dir = repo().join("tests/lint/walkthrough");
    let o = lint_paths(&[&dir], true);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut got: Vec<(String, String, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let file = Path::new(f["file"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (f["rule"].as_str().unwrap().to_string(), file, f["line"].as_u64().unwrap())
        })
        .collect();
    got.sort();
    let want: Vec<(String, String, u64)> = [
        // The pod tolerates vpc.amazon.com/efa: not the key of any taint.
        ("near-miss-key", "efa-test-pod.yaml", 15),
        // The NodePool's taint key vpc.amazonaws.com is a truncated vpc.amazonaws.com/efa...
        ("near-miss-key", "efa-nodepool.yaml", 71),
        // ...that the pod, which targets this NodePool, does not tolerate: Pending.
        ("untolerated-nodepool-taint", "efa-test-pod.yaml", 12),
        ("taint-nobody-tolerates", "efa-nodepool.yaml", 71),
        // userData limits that never reach pods.
        ("userdata-limits", "efa-nodepool.yaml", 29),
        ("userdata-limits", "efa-nodepool.yaml", 36),
        ("userdata-limits", "efa-nodepool.yaml", 37),
        // An EFA pod on a NodePool of categories c, p, g.
        ("requirements-allow-no-efa", "efa-nodepool.yaml", 51),
    ]
    .iter()
    .map(|(r, f, l)| (r.to_string(), f.to_string(), *l))
    .collect::<Vec<_>>()
    .into_iter()
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect();
    assert_eq!(got, want, "{}", serde_json::to_string_pretty(&v).unwrap());
    // The text form names file:line, the rule, why and the fix.
    let o = lint_paths(&[&dir], false);
    let out = stdout(&o);
    assert!(out.contains("efa-test-pod.yaml:12: error [untolerated-nodepool-taint] Pod efa-test-pod targets NodePool gpu-efa ("), "{out}");
    assert!(
        out.contains(
            "does not tolerate its taint vpc.amazonaws.com=true:NoSchedule: it stays Pending"
        ),
        "{out}"
    );
    assert!(
        out.contains("toleration key \"vpc.amazon.com/efa\" is not \"vpc.amazonaws.com/efa\""),
        "{out}"
    );
    assert!(
        out.contains("nodeprep lint: 3 object(s) in 2 file(s): 3 error(s), 5 warning(s)"),
        "{out}"
    );
}

#[test]
fn the_packaged_manifests_are_clean() {
    let o = lint_paths(&[&repo().join("packaging")], true);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["findings"], serde_json::json!([]), "{v}");
    assert!(v["objects"].as_u64().unwrap() >= 5, "{v}");
    // Kinds it does not read are listed, not silently passed.
    let skipped = v["skipped"].as_array().unwrap();
    assert!(skipped.iter().any(|s| s["kind"] == "ValidatingAdmissionPolicy"), "{v}");
}

#[test]
fn input_it_cannot_parse_is_exit_2_naming_file_and_line_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Pod\nspec:\n  containers: [\n").unwrap();
    let good = repo().join("tests/lint/walkthrough");
    let o = lint_paths(&[&good, &bad], false);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{}:", bad.display())) && stderr(&o).contains("cannot parse"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "", "nothing reported as clean or otherwise");
    let o = lint_paths(&[Path::new("/nonexistent.yaml")], false);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent.yaml"), "{}", stderr(&o));
}

const POOL: &str = "apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: gpu}
spec:
  template:
    metadata: {labels: {team: ml}}
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: gpu}
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [p5.48xlarge]}
        - {key: topology.kubernetes.io/zone, operator: In, values: [us-west-2a]}
      startupTaints:
        - {key: nodeprep.io/not-ready, effect: NoSchedule}
      taints:
        - {key: nvidia.com/gpu, value: present, effect: NoSchedule}
        - {key: vpc.amazonaws.com/efa, value: present, effect: NoSchedule}
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: gpu}
spec:
  amiSelectorTerms: [{alias: al2023@latest}]
  userData: |
    #!/bin/bash
    /usr/bin/nodeprep boot
";

const POD: &str = "---
apiVersion: v1
kind: Pod
metadata: {name: train}
spec:
  nodeSelector: {karpenter.sh/nodepool: gpu}
  tolerations:
    - {key: nvidia.com/gpu, operator: Exists}
    - {key: vpc.amazonaws.com/efa, operator: Exists, effect: NoSchedule}
  containers:
    - name: c
      image: x
      resources: {limits: {nvidia.com/gpu: 8, vpc.amazonaws.com/efa: 32}}
";

/// The clean pair: a p5 NodePool with nodeprep and a pod that targets and tolerates it.
#[test]
fn a_correct_nodepool_and_pod_give_nothing() {
    let (code, f, v) = lint_text(&format!("{POOL}{POD}"));
    assert_eq!((code, f.len()), (0, 0), "{v}");
}

/// The NVIDIA device plugin's DaemonSet with `tolerations`, beside the clean NodePool.
fn device_plugin(tolerations: &str) -> String {
    format!(
        "{POOL}---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: nvidia-device-plugin-daemonset}}
spec:
  template:
    spec:
      tolerations: [{tolerations}]
      containers: [{{name: p, image: nvcr.io/nvidia/k8s-device-plugin:v0.17.0}}]
"
    )
}

/// Each rule: one change that makes it fire (and the clean pair above is its negative case).
#[test]
fn every_rule_fires_on_its_mistake() {
    let cases: Vec<(&str, String)> = vec![
        ("untolerated-nodepool-taint", format!("{POOL}{}", POD.replace("    - {key: nvidia.com/gpu, operator: Exists}\n", ""))),
        // Selected by the template's labels instead of the pool's name: still its taints.
        ("untolerated-nodepool-taint", format!("{POOL}{}", POD.replace("{karpenter.sh/nodepool: gpu}", "{team: ml}").replace("{key: vpc.amazonaws.com/efa, operator: Exists, effect: NoSchedule}", "{key: vpc.amazonaws.com/efa, value: other, effect: NoSchedule}"))),
        ("near-miss-key", format!("{POOL}{}", POD.replace("key: nvidia.com/gpu, operator", "key: nvidia.com/gpus, operator"))),
        ("taint-nobody-tolerates", format!("{}{POD}", POOL.replace("        - {key: nvidia.com/gpu, value: present, effect: NoSchedule}\n", "        - {key: nvidia.com/gpu, value: present, effect: NoSchedule}\n        - {key: example.com/dedicated, value: ml, effect: NoSchedule}\n"))),
        ("daemonset-does-not-tolerate", device_plugin("{key: nvidia.com/gpu, operator: Exists}")),
        ("requirements-allow-no-efa", format!("{}{POD}", POOL.replace("{key: node.kubernetes.io/instance-type, operator: In, values: [p5.48xlarge]}", "{key: karpenter.k8s.aws/instance-category, operator: In, values: [p, g]}"))),
        ("requirements-allow-no-gpu", format!("{}{POD}", POOL.replace("{key: node.kubernetes.io/instance-type, operator: In, values: [p5.48xlarge]}", "{key: karpenter.k8s.aws/instance-category, operator: In, values: [c, m]}"))),
        ("label-domain", format!("{}{POD}", POOL.replace("{key: topology.kubernetes.io/zone", "{key: eks.amazonaws.com/instance-family, operator: In, values: [p5]}\n        - {key: topology.kubernetes.io/zone"))),
        ("userdata-limits", POOL.replace("/usr/bin/nodeprep boot", "/usr/bin/nodeprep boot\n    ulimit -l unlimited")),
        ("two-disk-owners", POOL.replace("  amiSelectorTerms:", "  instanceStorePolicy: RAID0\n  amiSelectorTerms:")),
        ("startup-taint", POOL.replace("{key: nodeprep.io/not-ready, effect", "{key: nodeprep.io/notready, effect")),
        ("efa-zones", POOL.replace("values: [us-west-2a]", "values: [us-west-2a, us-west-2b]")),
        ("hostpath-infiniband", format!("{POOL}{POD}  volumes:\n    - {{name: ib, hostPath: {{path: /dev/infiniband}}}}\n")),
    ];
    let mut covered: Vec<&str> = Vec::new();
    for (rule, yaml) in &cases {
        let (_, f, v) = lint_text(yaml);
        assert!(rules(&f).contains(rule), "{rule} did not fire:\n{yaml}\n{v}");
        covered.push(rule);
    }
    // Near, correct variants that must not fire.
    let clean: Vec<(&str, String)> = vec![
        ("daemonset-does-not-tolerate", device_plugin("{operator: Exists}")),
        ("two-disk-owners", POOL.replace("  amiSelectorTerms:", "  instanceStorePolicy: RAID0\n  amiSelectorTerms:").replace("/usr/bin/nodeprep boot", "mkdir -p /etc/nodeprep\n    cat > /etc/nodeprep/config.toml <<EOF\n    [storage]\n    enabled = \"never\"\n    EOF\n    /usr/bin/nodeprep boot")),
        ("label-domain", format!("{}{POD}", POOL.replace("{key: topology.kubernetes.io/zone", "{key: karpenter.k8s.aws/instance-family, operator: In, values: [p5]}\n        - {key: topology.kubernetes.io/zone"))),
        ("hostpath-infiniband", format!("{POOL}{POD}  volumes:\n    - {{name: ib, hostPath: {{path: /dev/infiniband/uverbs0}}}}\n")),
        ("userdata-limits", POOL.replace("/usr/bin/nodeprep boot", "/usr/bin/nodeprep boot\n    # ulimit -l unlimited (not needed: nodeprep sets it for pods)")),
    ];
    for (rule, yaml) in &clean {
        let (code, f, v) = lint_text(yaml);
        assert!(!rules(&f).contains(rule), "{rule} fired on a correct variant:\n{yaml}\n{v}");
        assert_eq!(code, 0, "{v}");
    }
    let all: Vec<&str> = nodeprep::lint::RULES.iter().map(|(id, _)| *id).collect();
    for id in &all {
        assert!(covered.contains(id), "rule {id} has no case");
    }
}

/// The JSON of `kubectl get -o json` (a List) is read like YAML; unknown kinds are listed.
#[test]
fn kubectl_json_lists_are_read_and_unknown_kinds_listed_as_skipped() {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}],
            "volumes": [{"name": "ib", "hostPath": {"path": "/dev/infiniband"}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    ]});
    let (code, f, v) = lint_text(&list.to_string());
    assert_eq!(code, 0, "warnings only: {v}");
    assert_eq!(rules(&f), ["hostpath-infiniband"], "{v}");
    assert_eq!(v["skipped"][0]["kind"], "Service", "{v}");
}

/// Many documents at once (a cluster's dump): timing printed, not judged here (bench/ has it).
#[test]
fn a_thousand_documents() {
    let mut yaml = String::from(POOL);
    for i in 0..1000 {
        yaml.push_str(&POD.replace("name: train", &format!("name: train-{i}")));
    }
    let t0 = std::time::Instant::now();
    let (code, f, _) = lint_text(&yaml);
    println!("lint of 1002 documents (one process): {:?}", t0.elapsed());
    assert_eq!((code, f.len()), (0, 0));
}
