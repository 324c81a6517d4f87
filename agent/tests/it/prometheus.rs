//! A real Prometheus (Debian's 2.42, started by the test) scrapes `nodeprep serve` on a fixture
//! tree every second, with packaging/monitoring's rules loaded (their `for:` shortened). The test
//! breaks the tree the way nodes break and asserts, through Prometheus' HTTP API, that the right
//! series change and the right alert fires. It also runs the rules' own checks (`promtool check
//! rules`, `promtool test rules`) and every expression of the Grafana dashboard.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nodeprep_fixtures::Spec;
use serde_json::Value;

use crate::common::{tree, Nodeprep, Server};

/// GET `path` from `addr`: (status, body); `None` while nothing listens.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    crate::common::get(addr, path).map(|(code, _, body)| (code, body))
}

/// A program of the test machine that these tests need; scripts/test installs them.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run scripts/test (it installs Debian's prometheus package), or `apt-get install prometheus`");
}

/// A Python that can import prometheus_client: Debian's python3 with python3-prometheus-client
/// (scripts/test installs it), else the `python3` on PATH if it has the module.
pub fn python_with_prometheus_client() -> PathBuf {
    let can = |python: &Path| {
        Command::new(python)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    ["/usr/bin/python3", "python3"].into_iter().map(PathBuf::from).find(|p| can(p)).unwrap_or_else(|| {
        panic!("no python3 can import prometheus_client: run scripts/test, or `apt-get install python3-prometheus-client`")
    })
}

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/monitoring")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Prometheus scraping `target` every second, evaluating `rules` (the shipped rules with every
    /// `for:` set to `for_`) every second.
    fn start(target: &str, for_: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = std::fs::read_to_string(monitoring().join("nodeprep-rules.yml")).unwrap();
        let short: String = rules
            .lines()
            .map(|l| match l.trim_start().strip_prefix("for: ") {
                Some(_) => format!("{}for: {for_}\n", &l[..l.len() - l.trim_start().len()]),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(dir.path().join("rules.yml"), short).unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
                 scrape_configs:\n  - job_name: nodeprep\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let p = Prometheus { child, url: format!("127.0.0.1:{port}"), dir };
        p.wait("Prometheus ready", Duration::from_secs(30), || {
            http_get(&p.url, "/-/ready").is_some_and(|(c, _)| c == 200)
        });
        p
    }

    fn wait(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            if t0.elapsed() > limit {
                let log = std::fs::read_to_string(self.dir.path().join("prometheus.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                panic!("timed out after {limit:?} waiting for {what}; prometheus log (last lines, newest first):\n{}", tail.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        println!("{what}: after {:.1} s", t0.elapsed().as_secs_f64());
    }

    /// An instant query: the result vector, or the error Prometheus gives.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}", encode(expr));
        let (code, body) = http_get(&self.url, &path).ok_or("no answer")?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(format!("HTTP {code}: {}", v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The one value `expr` gives, if it gives exactly one.
    fn value(&self, expr: &str) -> Option<f64> {
        let r = self.query(expr).ok()?;
        match r.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// The firing alerts named `name`: their labels.
    fn firing(&self, name: &str) -> Vec<Value> {
        let Some((200, body)) = http_get(&self.url, "/api/v1/alerts") else { return vec![] };
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
            .map(|a| a["labels"].clone())
            .collect()
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let promtool = tool("promtool");
    let dir = monitoring();
    for args in [
        vec!["check", "rules", "nodeprep-rules.yml"],
        vec!["test", "rules", "nodeprep-rules.test.yml"],
    ] {
        let o = Command::new(&promtool).args(&args).current_dir(&dir).output().unwrap();
        let out =
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success(), "promtool {}: {out}", args.join(" "));
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

/// A node breaks five ways while Prometheus watches (an EFA port down, a GPU device node gone, XID
/// 79, the instance store unmounted, EFA drops rising): each shows in the series and fires its alert.
#[test]
fn prometheus_sees_each_fault_and_fires_its_alert() {
    let mut spec = Spec::p5_48xlarge();
    spec.config = Some("[serve]\ninterval_seconds = 1\n".into());
    let dir = tree(&spec);
    let root = dir.path();
    // Prometheus scrapes the metrics-only address, as a cluster Prometheus scrapes the node IP.
    let mut cmd = Nodeprep::new(root)
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .command();
    cmd.stderr(Stdio::null());
    let mut srv = Server::spawn(cmd);
    let metrics_addr = srv.metrics_addr();
    let prom = Prometheus::start(&metrics_addr, "1s");
    let long = Duration::from_secs(45);
    prom.wait("the first scrape of a ready node", long, || {
        prom.value("nodeprep_ready{job=\"nodeprep\"}") == Some(1.0)
            && prom.value("nodeprep_gpus_healthy") == Some(8.0)
    });
    // Prometheus asked for OpenMetrics and read it: the target is up, without a scrape error.
    let (_, targets) = http_get(&prom.url, "/api/v1/targets").unwrap();
    let t: Value = serde_json::from_str(&targets).unwrap();
    let target = &t["data"]["activeTargets"][0];
    assert_eq!(
        (target["health"].as_str(), target["lastError"].as_str()),
        (Some("up"), Some("")),
        "{target}"
    );
    assert!(prom.firing("NodeprepNodeNotReady").is_empty());

    // An EFA device's uverbs node goes (its port state would prove nothing: the driver reports it
    // constant).
    std::fs::remove_file(root.join("dev/infiniband/uverbs0")).unwrap();
    prom.wait("efa_devices_up 31 and NodeprepEFADeviceUnusable", long, || {
        prom.value("nodeprep_efa_devices_up") == Some(31.0)
            && prom.value("nodeprep_efa_device_usable{device=\"rdmap79s0\"}") == Some(0.0)
            && !prom.firing("NodeprepEFADeviceUnusable").is_empty()
    });
    // GPU 3's device node goes.
    std::fs::remove_file(root.join("dev/nvidia3")).unwrap();
    prom.wait("gpus_healthy 7 and NodeprepGPULost", long, || {
        prom.value("nodeprep_gpus_healthy") == Some(7.0)
            && prom.value("nodeprep_gpu_healthy{gpu=\"3\"}") == Some(0.0)
            && !prom.firing("NodeprepGPULost").is_empty()
    });
    // XID 79 on GPU 2.
    let mut k = std::fs::read_to_string(root.join("dev/kmsg")).unwrap();
    k.push_str(
        "3,900,9000000,-;NVRM: Xid (PCI:0000:75:00): 79, pid=1, GPU has fallen off the bus.\n",
    );
    std::fs::write(root.join("dev/kmsg"), k).unwrap();
    prom.wait("NodeprepFatalXID on 0000:75:00.0", long, || {
        prom.firing("NodeprepFatalXID")
            .iter()
            .any(|l| l["pci"] == "0000:75:00.0" && l["xid"] == "79")
    });
    // The instance store is no longer mounted.
    let m = std::fs::read_to_string(root.join("proc/1/mountinfo")).unwrap();
    let kept: String =
        m.lines().filter(|l| !l.contains(" 9:127 ")).map(|l| format!("{l}\n")).collect();
    std::fs::write(root.join("proc/1/mountinfo"), kept).unwrap();
    prom.wait("storage_mounted 0 and NodeprepStorageNotMounted", long, || {
        prom.value("nodeprep_storage_mounted") == Some(0.0)
            && !prom.firing("NodeprepStorageNotMounted").is_empty()
    });
    // EFA drops rise fast on one device.
    let drops = root.join("sys/class/infiniband/rdmap80s0/ports/1/hw_counters/rx_drops");
    let t0 = Instant::now();
    prom.wait("NodeprepEFAErrorsRising on rdmap80s0", long, || {
        let n = (t0.elapsed().as_secs_f64() * 1e6) as u64;
        std::fs::write(&drops, format!("{n}\n")).unwrap();
        prom.firing("NodeprepEFAErrorsRising")
            .iter()
            .any(|l| l["device"] == "rdmap80s0" && l["counter"] == "rx_drops")
    });
    // And the node as a whole.
    prom.wait("NodeprepNodeNotReady", long, || !prom.firing("NodeprepNodeNotReady").is_empty());
    assert_eq!(prom.value("nodeprep:nodes_not_ready:count"), Some(1.0));
    for check in ["efa", "nvidia", "storage"] {
        let q = format!("nodeprep:checks_failing:count{{check=\"{check}\"}}");
        assert_eq!(prom.value(&q), Some(1.0), "{q}");
    }
}

/// Every expression of the Grafana dashboard is valid PromQL to a real Prometheus that scraped a
/// fixture node, names only series nodeprep exports (or its recording rules, or `up`), and gives
/// data.
#[test]
fn every_dashboard_query_runs_on_what_nodeprep_exports() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("nodeprep-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push(e.clone());
                }
                // A variable's query: `label_values(<selector>, <label>)` runs its selector.
                if let Some(Value::String(q)) =
                    m.get("query").filter(|_| m.contains_key("datasource"))
                {
                    let selector = q
                        .strip_prefix("label_values(")
                        .and_then(|rest| rest.rsplit_once(','))
                        .map(|(sel, _)| sel.to_string());
                    out.push(selector.unwrap_or_else(|| q.clone()));
                }
                m.values().for_each(|v| walk(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");

    let mut spec = Spec::p5_48xlarge();
    spec.config = Some("[serve]\ninterval_seconds = 1\n".into());
    let dir = tree(&spec);
    let mut cmd = Nodeprep::new(dir.path()).args(["serve", "--listen", "127.0.0.1:0"]).command();
    cmd.stderr(Stdio::null());
    let srv = Server::spawn(cmd);
    let (_, _, metrics) = srv.get("/metrics");
    let exported: Vec<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let rules = std::fs::read_to_string(monitoring().join("nodeprep-rules.yml")).unwrap();
    let prom = Prometheus::start(&srv.addr, "1s");
    prom.wait("a scrape and the recording rules", Duration::from_secs(45), || {
        prom.value("nodeprep:nodes_ready:count") == Some(1.0)
            && prom.value("count_over_time(nodeprep_ready[1m])").is_some_and(|n| n >= 3.0)
    });
    // The dashboard's variables, as Grafana fills them in.
    let instance = srv.addr.clone();
    for e in &exprs {
        let q = e
            .replace("$__rate_interval", "1m")
            .replace("$__range", "5m")
            .replace("${instance}", &instance)
            .replace("$instance", &instance)
            .replace("$job", "nodeprep");
        for name in names_in(&q) {
            let known = exported.contains(&name)
                || name == "up"
                || rules.contains(&format!("record: {name}"));
            assert!(known, "dashboard query {e:?} uses {name}, which nodeprep does not export");
        }
        let result = prom.query(&q).unwrap_or_else(|err| panic!("dashboard query {e:?}: {err}"));
        println!("{} series: {e}", result.len());
        // A ready fixture node gives every panel data, except those that show faults (a filter
        // such as `== 0`) and free space, which only a real mount of the instance store has.
        let fault_only = [" == 0", " > 0"].iter().any(|f| e.ends_with(f));
        let real_mount_only = e.contains("nodeprep_storage_available_bytes");
        assert!(
            !result.is_empty() || fault_only || real_mount_only,
            "dashboard query {e:?} gives no data on a ready node"
        );
    }
}

/// The metric names a PromQL expression uses: identifiers outside label matchers (`{...}`),
/// strings, durations and the label lists of `by`, `without`, `on`, `ignoring`, `group_left` and
/// `group_right`, that are not functions, aggregations or keywords.
fn names_in(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        // Aggregations, which may be followed by `by (...)` instead of their parenthesis.
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    let b = expr.as_bytes();
    let (mut out, mut i, mut braces) = (Vec::new(), 0, 0);
    // For each open parenthesis: whether it holds a label list.
    let mut parens: Vec<bool> = Vec::new();
    let mut last_word = String::new();
    while i < b.len() {
        let c = b[i] as char;
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < b.len() && b[i] as char != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => {
                // A range or subquery duration: skip to its end.
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
            }
            '(' => parens.push(LISTS.contains(&last_word.as_str())),
            ')' => {
                parens.pop();
            }
            _ => {}
        }
        if (c.is_ascii_alphabetic() || c == '_') && braces == 0 {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let function = expr[i..].trim_start().starts_with('(');
            let label_list = parens.last().copied().unwrap_or(false);
            if !function && !label_list && !KEYWORDS.contains(&word) && !word.starts_with("__") {
                out.push(word.to_string());
            }
            last_word = word.to_string();
            continue;
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        names_in("sum by (instance, check) (nodeprep_check_status{status=\"fail\"} * on (instance) nodeprep_check_required)"),
        ["nodeprep_check_required", "nodeprep_check_status"]
    );
    assert_eq!(
        names_in("rate(nodeprep_efa_port_errors_total[5m]) > 100"),
        ["nodeprep_efa_port_errors_total"]
    );
    assert_eq!(names_in("nodeprep:gpus_missing > 0 or up == 0"), ["nodeprep:gpus_missing", "up"]);
    assert_eq!(names_in("topk(5, max by (device) (nodeprep_x{a=\"b c\"}))"), ["nodeprep_x"]);
}
