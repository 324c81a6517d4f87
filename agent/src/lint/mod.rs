//! `nodeprep lint`: the NodePool, EC2NodeClass, DaemonSet and pod mistakes that leave GPU/EFA pods
//! Pending, found in the YAML before any node boots. Each finding has a rule id, a severity, the
//! file:line of the offending field, why, and the fix. Pure: documents in, findings out.

pub mod yaml;

use serde::Serialize;
use yaml::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub message: String,
    pub fix: String,
}

/// One Kubernetes object of the input and where it is.
#[derive(Debug, Clone)]
pub struct Object {
    pub file: String,
    pub node: Node,
}

impl Object {
    fn kind(&self) -> &str {
        self.node.str_at(&["kind"]).unwrap_or("")
    }
    fn group(&self) -> &str {
        let v = self.node.str_at(&["apiVersion"]).unwrap_or("");
        v.rsplit_once('/').map_or("", |(g, _)| g)
    }
    fn name(&self) -> &str {
        self.node.str_at(&["metadata", "name"]).unwrap_or("")
    }
}

/// What lint knows about the node side.
#[derive(Debug, Clone)]
pub struct Options {
    /// nodeprep's `kubernetes.startup_taint`.
    pub startup_taint: String,
}

/// The rules, each with its id and what it catches (for `--help` and the README).
pub const RULES: &[(&str, &str)] = &[
    ("untolerated-nodepool-taint", "a workload that targets a NodePool does not tolerate one of its taints (matched as the scheduler does)"),
    ("near-miss-key", "a toleration or taint key one typo away from a known one (vpc.amazon.com/efa, nvidia.com/gpus)"),
    ("taint-nobody-tolerates", "a NodePool taint that no workload in the input tolerates"),
    ("daemonset-does-not-tolerate", "a device-plugin or nodeprep DaemonSet that does not tolerate a NodePool's taints and startup taints (DESIRED 0)"),
    ("requirements-allow-no-efa", "a workload requests vpc.amazonaws.com/efa on a NodePool whose requirements allow types without EFA"),
    ("requirements-allow-no-gpu", "a workload requests nvidia.com/gpu on a NodePool whose requirements allow no GPU type"),
    ("label-domain", "NodePool requirements with another API's label domain (karpenter.k8s.aws in Auto Mode, eks.amazonaws.com in Karpenter)"),
    ("userdata-limits", "userData sets memlock/stack with /etc/security/limits.d or ulimit, which never reaches pods"),
    ("two-disk-owners", "instanceStorePolicy RAID0 or Bottlerocket ephemeral-storage together with nodeprep storage"),
    ("startup-taint", "a NodePool startupTaints key that differs from nodeprep's kubernetes.startup_taint"),
    ("efa-zones", "an EFA NodePool spread over several zones (EFA traffic stays within one)"),
    ("hostpath-infiniband", "a hostPath mount of the whole /dev/infiniband (exposes non-EFA devices; NCCL falls back to TCP)"),
];

/// The startup taint of nodeprep's packaged NodePools and DaemonSet.
pub const DEFAULT_STARTUP_TAINT: &str = "nodeprep.io/not-ready";
const GPU: &str = "nvidia.com/gpu";
const EFA: &str = "vpc.amazonaws.com/efa";
const KNOWN_KEYS: &[&str] = &[GPU, EFA, "aws.amazon.com/neuron", "nodeprep.io/not-ready"];

/// A pod spec of the input: the object it belongs to and the spec node.
struct PodSpec<'a> {
    obj: &'a Object,
    spec: &'a Node,
}

/// The pod specs of workloads (Pods and the pod templates of controllers).
fn pod_specs(objs: &[Object]) -> Vec<PodSpec<'_>> {
    objs.iter()
        .filter_map(|o| {
            let spec = match o.kind() {
                "Pod" => o.node.get("spec"),
                "Deployment" | "StatefulSet" | "Job" | "DaemonSet" | "ReplicaSet" => {
                    o.node.at(&["spec", "template", "spec"])
                }
                "CronJob" => o.node.at(&["spec", "jobTemplate", "spec", "template", "spec"]),
                _ => None,
            }?;
            Some(PodSpec { obj: o, spec })
        })
        .collect()
}

/// A taint (or a toleration's fields) as text.
#[derive(Debug, Clone)]
struct Taint {
    key: String,
    value: String,
    effect: String,
    line: usize,
}

fn taints(list: Option<&Node>) -> Vec<Taint> {
    list.map(Node::items)
        .unwrap_or_default()
        .iter()
        .map(|t| Taint {
            key: t.str_at(&["key"]).unwrap_or("").to_string(),
            value: t.str_at(&["value"]).unwrap_or("").to_string(),
            effect: t.str_at(&["effect"]).unwrap_or("").to_string(),
            line: t.line,
        })
        .collect()
}

/// Whether a toleration tolerates a taint, as the scheduler decides (k8s.io/api
/// `Toleration.ToleratesTaint`): effect empty or equal; key empty with Exists matches every key;
/// Exists ignores the value; Equal (the default) compares it.
fn tolerates(tol: &Node, t: &Taint) -> bool {
    let effect = tol.str_at(&["effect"]).unwrap_or("");
    if !effect.is_empty() && effect != t.effect {
        return false;
    }
    let key = tol.str_at(&["key"]).unwrap_or("");
    let op = tol.str_at(&["operator"]).unwrap_or("Equal");
    if key.is_empty() {
        return op == "Exists";
    }
    if key != t.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" => tol.str_at(&["value"]).unwrap_or("") == t.value,
        _ => false,
    }
}

fn tolerated(spec: &Node, t: &Taint) -> bool {
    spec.list("tolerations").iter().any(|tol| tolerates(tol, t))
}

/// The NodePools a pod spec targets: by `karpenter.sh/nodepool` in its nodeSelector or required
/// node affinity, or by a nodeSelector that the NodePool's template labels satisfy.
fn targets<'a>(spec: &Node, pools: &'a [&'a Object]) -> Vec<&'a Object> {
    let selector: Vec<(&str, &str)> = spec
        .get("nodeSelector")
        .map(Node::entries)
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.str()?)))
        .collect();
    let mut names: Vec<String> = selector
        .iter()
        .filter(|(k, _)| *k == "karpenter.sh/nodepool")
        .map(|(_, v)| v.to_string())
        .collect();
    let terms = spec.at(&[
        "affinity",
        "nodeAffinity",
        "requiredDuringSchedulingIgnoredDuringExecution",
        "nodeSelectorTerms",
    ]);
    for term in terms.map(Node::items).unwrap_or_default() {
        for e in term.list("matchExpressions") {
            if e.str_at(&["key"]) == Some("karpenter.sh/nodepool")
                && e.str_at(&["operator"]) == Some("In")
            {
                names.extend(
                    e.get("values")
                        .map(Node::items)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|v| v.str().map(str::to_string)),
                );
            }
        }
    }
    pools
        .iter()
        .copied()
        .filter(|p| {
            if names.iter().any(|n| n == p.name()) {
                return true;
            }
            let labels = p.node.at(&["spec", "template", "metadata", "labels"]);
            !selector.is_empty()
                && names.is_empty()
                && selector.iter().all(|(k, v)| labels.and_then(|l| l.str_at(&[k])) == Some(*v))
        })
        .collect()
}

/// Edit distance, for near-miss keys.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn near_miss(key: &str, known: &[&str]) -> Option<String> {
    if key.is_empty() || known.contains(&key) {
        return None;
    }
    known
        .iter()
        .find(|k| distance(key, k) <= 3 || (k.starts_with(key) && key.contains('.')))
        .map(|k| k.to_string())
}

/// The resources a pod spec requests or limits (any container, init containers too).
fn requests(spec: &Node, resource: &str) -> bool {
    ["containers", "initContainers"].iter().any(|c| {
        spec.list(c).iter().any(|ct| {
            ["limits", "requests"].iter().any(|k| ct.at(&["resources", k, resource]).is_some())
        })
    })
}

/// The values of a NodePool requirement with operator In, if it has one for `key`.
fn requirement<'a>(pool: &'a Object, key: &str) -> Option<(Vec<&'a str>, usize)> {
    let reqs = pool.node.at(&["spec", "template", "spec", "requirements"])?;
    reqs.items()
        .iter()
        .find(|r| r.str_at(&["key"]) == Some(key) && r.str_at(&["operator"]) == Some("In"))
        .map(|r| {
            (
                r.get("values")
                    .map(Node::items)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Node::str)
                    .collect(),
                r.line,
            )
        })
}

fn userdata<'a>(objs: &'a [Object], pool: &Object) -> Option<(&'a Object, &'a Node)> {
    let class = pool.node.str_at(&["spec", "template", "spec", "nodeClassRef", "name"])?;
    let c = objs.iter().find(|o| o.kind() == "EC2NodeClass" && o.name() == class)?;
    Some((c, c.node.at(&["spec", "userData"])?))
}

/// Finds every mistake in the objects.
pub fn lint(objs: &[Object], opts: &Options) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |rule, severity, o: &Object, line: usize, message: String, fix: String| {
        out.push(Finding { rule, severity, file: o.file.clone(), line, message, fix })
    };
    let pools: Vec<&Object> = objs.iter().filter(|o| o.kind() == "NodePool").collect();
    let specs = pod_specs(objs);
    let workloads: Vec<&PodSpec> = specs.iter().filter(|p| p.obj.kind() != "DaemonSet").collect();

    // Near-miss keys in tolerations and taints.
    for p in &specs {
        for tol in p.spec.list("tolerations") {
            let key = tol.str_at(&["key"]).unwrap_or("");
            if let Some(k) = near_miss(key, KNOWN_KEYS) {
                add(
                    "near-miss-key",
                    Severity::Error,
                    p.obj,
                    tol.line,
                    format!(
                        "{} {}: toleration key \"{key}\" is not \"{k}\"",
                        p.obj.kind(),
                        p.obj.name()
                    ),
                    format!("use the key \"{k}\""),
                );
            }
        }
    }
    for pool in &pools {
        let spec = pool.node.at(&["spec", "template", "spec"]);
        for t in taints(spec.and_then(|s| s.get("taints")))
            .iter()
            .chain(taints(spec.and_then(|s| s.get("startupTaints"))).iter())
        {
            if let Some(k) = near_miss(&t.key, KNOWN_KEYS) {
                add("near-miss-key", Severity::Error, pool, t.line, format!("NodePool {}: taint key \"{}\" is not \"{k}\"", pool.name(), t.key), format!("use the key \"{k}\" (or a key of your own that no system component expects)"));
            }
        }
    }

    for pool in &pools {
        let spec = pool.node.at(&["spec", "template", "spec"]);
        let pool_taints = taints(spec.and_then(|s| s.get("taints")));
        let startup = taints(spec.and_then(|s| s.get("startupTaints")));
        let hard = |t: &Taint| t.effect == "NoSchedule" || t.effect == "NoExecute";
        let targeting: Vec<&&PodSpec> = workloads
            .iter()
            .filter(|w| targets(w.spec, std::slice::from_ref(pool)).len() == 1)
            .collect();
        // Workloads that target the pool and do not tolerate one of its taints.
        for w in &targeting {
            for t in pool_taints.iter().filter(|t| hard(t)) {
                if !tolerated(w.spec, t) {
                    let line = w.spec.get("tolerations").map_or(w.spec.line, |n| n.line);
                    add("untolerated-nodepool-taint", Severity::Error, w.obj, line,
                        format!("{} {} targets NodePool {} ({}:{}) but does not tolerate its taint {}={}:{}: it stays Pending", w.obj.kind(), w.obj.name(), pool.name(), pool.file, t.line, t.key, t.value, t.effect),
                        format!("add a toleration {{key: \"{}\", operator: Exists, effect: {}}}", t.key, t.effect));
                }
            }
            let reqs_line =
                spec.and_then(|s| s.get("requirements")).map_or(pool.node.line, |n| n.line);
            if requests(w.spec, EFA) {
                let cats = requirement(pool, "karpenter.k8s.aws/instance-category");
                let types = requirement(pool, "node.kubernetes.io/instance-type");
                let no_efa: Vec<String> = match (&types, &cats) {
                    (Some((ts, _)), _) => ts
                        .iter()
                        .filter(|t| crate::catalog::lookup(t).is_some_and(|e| e.efa == Some(0)))
                        .map(|t| t.to_string())
                        .collect(),
                    (None, Some((cs, _))) => cs
                        .iter()
                        .filter(|c| !matches!(**c, "p" | "trn"))
                        .map(|c| format!("category {c}"))
                        .collect(),
                    (None, None) => {
                        if requirement(pool, "karpenter.k8s.aws/instance-family").is_none() {
                            vec!["any type".into()]
                        } else {
                            vec![]
                        }
                    }
                };
                if !no_efa.is_empty() {
                    let line = cats.map(|c| c.1).or(types.map(|t| t.1)).unwrap_or(reqs_line);
                    add("requirements-allow-no-efa", Severity::Warning, pool, line,
                        format!("{} {} requests {EFA}, but NodePool {} allows types without EFA ({}): Karpenter may have no EFA type to launch within the other requirements, and nodes launched for other pods have none", w.obj.kind(), w.obj.name(), pool.name(), no_efa.join(", ")),
                        "restrict the NodePool to EFA types, e.g. node.kubernetes.io/instance-type In [p5.48xlarge, p5en.48xlarge]".into());
                }
            }
            if requests(w.spec, GPU) {
                if let Some((cs, line)) = requirement(pool, "karpenter.k8s.aws/instance-category") {
                    if !cs.iter().any(|c| matches!(*c, "p" | "g")) {
                        add("requirements-allow-no-gpu", Severity::Error, pool, line,
                            format!("{} {} requests {GPU}, but NodePool {} allows only categories {:?}: none has an NVIDIA GPU, so the pod stays Pending", w.obj.kind(), w.obj.name(), pool.name(), cs),
                            "allow category p or g (or name GPU instance types)".into());
                    }
                }
            }
        }
        // Taints no workload of the input tolerates.
        if !workloads.is_empty() {
            for t in pool_taints.iter().filter(|t| hard(t)) {
                if !workloads.iter().any(|w| tolerated(w.spec, t)) {
                    add(
                        "taint-nobody-tolerates",
                        Severity::Warning,
                        pool,
                        t.line,
                        format!(
                            "NodePool {}: no workload in the input tolerates its taint {}={}:{}",
                            pool.name(),
                            t.key,
                            t.value,
                            t.effect
                        ),
                        "tolerate it in the workloads meant for these nodes, or remove the taint"
                            .into(),
                    );
                }
            }
        }
        // DaemonSets that must run on these nodes.
        for ds in specs.iter().filter(|p| p.obj.kind() == "DaemonSet") {
            let text = format!(
                "{} {}",
                ds.obj.name(),
                ds.spec
                    .get("containers")
                    .map(Node::items)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|c| c.str_at(&["image"]))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let role = if text.contains("nvidia-device-plugin")
                || text.contains("k8s-device-plugin")
            {
                "NVIDIA device plugin"
            } else if text.contains("efa-k8s-device-plugin") || text.contains("efa-device-plugin") {
                "EFA device plugin"
            } else if text.contains("nodeprep") {
                "nodeprep"
            } else {
                continue;
            };
            for t in pool_taints.iter().chain(startup.iter()).filter(|t| hard(t)) {
                if !tolerated(ds.spec, t) {
                    add("daemonset-does-not-tolerate", Severity::Error, ds.obj, ds.spec.get("tolerations").map_or(ds.spec.line, |n| n.line),
                        format!("DaemonSet {} ({role}) does not tolerate NodePool {}'s taint {}={}:{}: it gets no pod on those nodes (DESIRED 0) and their devices never become allocatable", ds.obj.name(), pool.name(), t.key, t.value, t.effect),
                        format!("add a toleration {{key: \"{}\", operator: Exists}}", t.key));
                }
            }
        }
        // Label domains.
        let auto =
            spec.and_then(|s| s.str_at(&["nodeClassRef", "group"])) == Some("eks.amazonaws.com");
        for r in spec.and_then(|s| s.get("requirements")).map(Node::items).unwrap_or_default() {
            let key = r.str_at(&["key"]).unwrap_or("");
            let (bad, other) = if auto {
                ("karpenter.k8s.aws/", "eks.amazonaws.com/")
            } else {
                ("eks.amazonaws.com/", "karpenter.k8s.aws/")
            };
            if key.starts_with(bad) {
                add("label-domain", Severity::Error, pool, r.line,
                    format!("NodePool {} ({}) uses {key}: that label is another API's, so no node ever satisfies it", pool.name(), if auto { "EKS Auto Mode" } else { "Karpenter" }),
                    format!("use the {other}* label of the same name"));
            }
        }
        // EFA pools in several zones.
        let efa_pool = pool_taints.iter().any(|t| t.key == EFA)
            || targeting.iter().any(|w| requests(w.spec, EFA));
        if efa_pool {
            match requirement(pool, "topology.kubernetes.io/zone") {
                Some((zones, line)) if zones.len() > 1 => add("efa-zones", Severity::Warning, pool, line,
                    format!("EFA NodePool {} spans {} zones: EFA traffic does not cross zones, and a job's nodes may land apart", pool.name(), zones.len()),
                    "pin the NodePool to one zone (and a cluster placement group)".into()),
                None => add("efa-zones", Severity::Warning, pool, pool.node.line,
                    format!("EFA NodePool {} has no zone requirement: its nodes may land in several zones, which EFA traffic does not cross", pool.name()),
                    "add topology.kubernetes.io/zone In [one zone] (and a cluster placement group)".into()),
                _ => {}
            }
        }
        // nodeprep's startup taint.
        let uses_nodeprep =
            userdata(objs, pool).is_some_and(|(_, u)| u.str().unwrap_or("").contains("nodeprep"));
        for t in &startup {
            if t.key != opts.startup_taint
                && (distance(&t.key, &opts.startup_taint) <= 3
                    || (uses_nodeprep && t.key.starts_with("nodeprep")))
            {
                add("startup-taint", Severity::Error, pool, t.line,
                    format!("NodePool {}: startup taint \"{}\" is not nodeprep's kubernetes.startup_taint \"{}\": nobody removes it and the nodes never take pods", pool.name(), t.key, opts.startup_taint),
                    format!("use \"{}\" (or set kubernetes.startup_taint to it)", opts.startup_taint));
            }
        }
        if uses_nodeprep && !startup.iter().any(|t| t.key == opts.startup_taint) {
            add("startup-taint", Severity::Warning, pool, spec.map_or(pool.node.line, |s| s.line),
                format!("NodePool {} runs nodeprep but has no startupTaint {}: pods may land before the node is ready", pool.name(), opts.startup_taint),
                format!("add startupTaints: [{{key: {}, effect: NoSchedule}}]", opts.startup_taint));
        }
    }

    // Node classes: userData and disk owners.
    for c in objs.iter().filter(|o| matches!(o.kind(), "EC2NodeClass" | "NodeClass")) {
        let Some(ud) = c.node.at(&["spec", "userData"]) else { continue };
        let text = ud.str().unwrap_or("");
        // A block scalar's line is its first line of text, so its lines are the file's; a quoted
        // string's lines are not, and its findings name its key's line.
        let line_of = |i: usize| if ud.block { ud.line + i } else { ud.line };
        for (i, l) in text.lines().enumerate() {
            let t = l.trim();
            if t.starts_with('#') {
                continue;
            }
            let limits_d = t.contains("/etc/security/limits");
            let ulimit = t.starts_with("ulimit")
                && (t.contains("-l") || t.contains("-s") || t.contains("memlock"));
            if limits_d || ulimit {
                add("userdata-limits", Severity::Warning, c, line_of(i),
                    format!("{} {}: `{t}` sets limits for login sessions only: containerd's pods never get them (they get the base runtime spec's rlimits)", c.kind(), c.name()),
                    "let nodeprep set them where pods get them: run `nodeprep boot` (limits.memlock/stack), and check with `nodeprep check --deep`".into());
            }
        }
        // nodeprep's storage is on unless its config (in the userData, or base64 in a Bottlerocket
        // bootstrap container's user-data) says `[storage] enabled = "never"`.
        let nodeprep = text.contains("nodeprep") && !nodeprep_storage_off(text);
        if nodeprep {
            if let Some(p) =
                c.node.at(&["spec", "instanceStorePolicy"]).filter(|p| p.str() == Some("RAID0"))
            {
                add("two-disk-owners", Severity::Error, c, p.line,
                    format!("{} {}: instanceStorePolicy RAID0 and nodeprep storage both own the instance-store disks", c.kind(), c.name()),
                    "remove instanceStorePolicy (nodeprep assembles and mounts them), or set storage.enabled = \"never\"".into());
            }
            if let Some(i) = text
                .lines()
                .position(|l| !l.trim().starts_with('#') && l.contains("ephemeral-storage"))
            {
                add("two-disk-owners", Severity::Error, c, line_of(i),
                    format!("{} {}: Bottlerocket ephemeral-storage and nodeprep storage both own the instance-store disks", c.kind(), c.name()),
                    "remove the ephemeral-storage settings, or set storage.enabled = \"never\"".into());
            }
        }
    }

    // /dev/infiniband whole.
    for p in &specs {
        for v in p.spec.list("volumes") {
            if let Some(path) = v
                .at(&["hostPath", "path"])
                .filter(|n| n.str().is_some_and(|s| s.trim_end_matches('/') == "/dev/infiniband"))
            {
                add("hostpath-infiniband", Severity::Warning, p.obj, path.line,
                    format!("{} {} mounts the whole /dev/infiniband: on p6-b200 it holds mlx5 devices that are not EFA, and NCCL falls back to TCP", p.obj.kind(), p.obj.name()),
                    "request vpc.amazonaws.com/efa and let the EFA device plugin pass exactly the EFA devices".into());
            }
        }
    }
    out.sort_by(|a, b| (&a.file, a.line, a.rule).cmp(&(&b.file, b.line, b.rule)));
    out.dedup();
    out
}

/// True when a nodeprep config in this user data turns storage off: `[storage]` with
/// `enabled = "never"`, in the text itself or in a base64 `user-data` of a Bottlerocket bootstrap
/// container (TOML).
fn nodeprep_storage_off(text: &str) -> bool {
    fn off(cfg: &str) -> bool {
        let mut in_storage = false;
        for l in cfg.lines().map(str::trim) {
            if l.starts_with('[') {
                in_storage = l == "[storage]";
            } else if in_storage && l.replace(' ', "") == "enabled=\"never\"" {
                return true;
            }
        }
        false
    }
    if off(text) {
        return true;
    }
    use base64::Engine as _;
    let Ok(doc) = text.parse::<toml::Table>() else { return false };
    let containers = doc
        .get("settings")
        .and_then(|s| s.get("bootstrap-containers"))
        .and_then(toml::Value::as_table);
    containers.into_iter().flatten().any(|(_, c)| {
        c.get("user-data")
            .and_then(toml::Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .is_some_and(|d| off(&String::from_utf8_lossy(&d)))
    })
}

/// The objects of one parsed document: itself, or a `List`'s items.
pub fn objects(file: &str, doc: Node) -> Vec<Object> {
    if doc.str_at(&["kind"]) == Some("List")
        || doc.str_at(&["kind"]).is_some_and(|k| k.ends_with("List"))
    {
        return doc
            .get("items")
            .map(Node::items)
            .unwrap_or_default()
            .iter()
            .map(|n| Object { file: file.into(), node: n.clone() })
            .collect();
    }
    vec![Object { file: file.into(), node: doc }]
}

/// Kinds lint reads; others are listed as skipped.
pub fn known_kind(o: &Object) -> bool {
    match o.kind() {
        "Pod" | "Deployment" | "StatefulSet" | "Job" | "DaemonSet" | "ReplicaSet" | "CronJob" => {
            true
        }
        "NodePool" => matches!(o.group(), "karpenter.sh" | "eks.amazonaws.com"),
        "EC2NodeClass" => o.group() == "karpenter.k8s.aws",
        "NodeClass" => o.group() == "eks.amazonaws.com",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tol(y: &str) -> Node {
        yaml::parse_stream(y).unwrap().remove(0)
    }

    #[test]
    fn tolerations_match_taints_as_the_scheduler_does() {
        let t = Taint {
            key: "nvidia.com/gpu".into(),
            value: "present".into(),
            effect: "NoSchedule".into(),
            line: 1,
        };
        assert!(tolerates(&tol("{key: nvidia.com/gpu, operator: Exists}"), &t));
        assert!(tolerates(&tol("{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}"), &t));
        assert!(!tolerates(&tol("{key: nvidia.com/gpu, operator: Exists, effect: NoExecute}"), &t));
        assert!(
            tolerates(&tol("{key: nvidia.com/gpu, value: present}"), &t),
            "Equal is the default"
        );
        assert!(!tolerates(&tol("{key: nvidia.com/gpu, value: true}"), &t));
        assert!(tolerates(&tol("{operator: Exists}"), &t), "empty key + Exists tolerates all");
        assert!(!tolerates(&tol("{value: present}"), &t));
        assert!(!tolerates(&tol("{key: vpc.amazon.com/efa, operator: Exists}"), &t));
    }

    #[test]
    fn near_misses() {
        assert_eq!(near_miss("vpc.amazon.com/efa", KNOWN_KEYS).as_deref(), Some(EFA));
        assert_eq!(near_miss("nvidia.com/gpus", KNOWN_KEYS).as_deref(), Some(GPU));
        assert_eq!(near_miss("vpc.amazonaws.com", KNOWN_KEYS).as_deref(), Some(EFA));
        assert_eq!(near_miss(GPU, KNOWN_KEYS), None);
        assert_eq!(near_miss("example.com/dedicated", KNOWN_KEYS), None);
    }
}
