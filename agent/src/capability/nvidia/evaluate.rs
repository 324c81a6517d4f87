//! The `nvidia` verdict, step by step: NVML itself, the GPU counts three ways, each GPU's health
//! and hygiene, the NVLink fabric as the generation needs it (fabric manager, NVLSM, IMEX), the
//! GSP firmware setting, the `/dev/char` links, the XIDs and SXids of this boot; then the summary
//! and one remedy per kind of problem.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::nvml::{self, FabricInfo, Field, GpuInfo, NvmlErrorKind, NvmlReport, Outcome};
use super::xid::{self, Bucket};
use super::{
    CharLink, Expect, FabricUnit, Snapshot, GPUS_EXPECTED, GPUS_HEALTHY, GPU_HEALTHY, PCI_DEVICES,
    PROC_PARAMS, PROC_VERSION, XID_ERRORS,
};
use crate::capability::{error_lines, read_failure_remedy};
use crate::host::pci::PciAddr;
use crate::report::{CheckResult, Status};

/// The last resort when GPU files cannot be read.
const FIX_UNREADABLE: &str =
    "the device is in a bad state: reboot the node or replace the instance";

/// True when `name` contains `model` as whole words, ignoring case: "H100" is in
/// "NVIDIA H100 80GB HBM3", "L4" is not in "NVIDIA L40S".
pub fn model_matches(name: &str, model: &str) -> bool {
    let (name, model) = (name.to_ascii_lowercase(), model.trim().to_ascii_lowercase());
    if model.is_empty() {
        return true;
    }
    let bytes = name.as_bytes();
    name.match_indices(&model).any(|(i, m)| {
        let before = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let end = i + m.len();
        let after = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
        before && after
    })
}

/// Why something is wrong, and so what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Remedy {
    NvmlMissing,
    NvmlLoad,
    DriverNotLoaded,
    VersionMismatch,
    Permission,
    Unreadable,
    Hung,
    PciMissing,
    DevNodes,
    GpuMissing,
    GpuFault,
    Model,
    Fabric,
    Nvlsm,
    Imex,
    Nvswitch,
    XidIsolate,
    XidReboot,
    XidReset,
    XidWarn,
    MemoryPending,
    Clocks,
    Persistence,
    Gsp,
    DevChar,
    Other,
}

impl Remedy {
    /// The hardware's fault (a repair replaces the node), not the node's configuration.
    fn is_hardware(self) -> bool {
        matches!(
            self,
            Remedy::Hung
                | Remedy::PciMissing
                | Remedy::GpuMissing
                | Remedy::GpuFault
                | Remedy::Nvswitch
                | Remedy::XidIsolate
                | Remedy::XidReboot
                | Remedy::XidReset
        )
    }

    fn text(self) -> &'static str {
        match self {
            Remedy::NvmlMissing => "install the NVIDIA driver (AL2023/RHEL: the nvidia-driver packages; Ubuntu: nvidia-driver-<version>-server; or use an EKS accelerated AMI), or set NODEPREP_NVML_LIB to the path of libnvidia-ml.so.1",
            Remedy::NvmlLoad => "set NODEPREP_NVML_LIB to a libnvidia-ml.so.1 built for this architecture, or reinstall the NVIDIA driver",
            Remedy::DriverNotLoaded => "the NVIDIA kernel module is not loaded: run `modprobe nvidia` and read `dmesg` (a module built for another kernel does not load: reinstall the driver for this kernel)",
            Remedy::VersionMismatch => "the NVIDIA library and kernel module differ (the driver was upgraded without a reboot): reboot the node",
            Remedy::Permission => "run nodeprep as root (NVML and /dev/kmsg need it)",
            Remedy::Unreadable => "run nodeprep as root (the paths above could not be read)",
            Remedy::Hung => "a GPU or the driver is hung: look for XID errors (`dmesg | grep -i xid`), drain the node and reboot it; replace the instance if it happens again",
            Remedy::PciMissing => "a GPU is missing from the PCI bus: stop and start the instance (it moves to other hardware) or replace it",
            Remedy::DevNodes => "the driver has not created a /dev/nvidia<N> node for every GPU: check `dmesg | grep NVRM`; nvidia-persistenced (or one run of nvidia-smi) creates them",
            Remedy::GpuMissing => "a GPU on the PCI bus is not seen by NVML (it fell off the bus or failed to initialise): drain the node and reboot it; if it stays missing, stop and start the instance to move to other hardware, or replace it",
            Remedy::GpuFault => "drain the node (`kubectl drain`) and reboot it; if the error comes back, stop and start the instance to move to other hardware, or replace it",
            Remedy::Model => "the GPUs are not the model this instance type has: check the instance type, or set expect.gpu_model in the config",
            Remedy::Fabric => "start the fabric manager: `systemctl enable --now nvidia-fabricmanager` (its version must match the driver's exactly); GPUs of NVSwitch instances cannot run CUDA until it has registered them",
            Remedy::Nvlsm => "Blackwell HGX needs NVLSM (the NVLink subnet manager) running beside the fabric manager: install nvlsm (the EKS AL2023 NVIDIA AMIs ship it since 2025-05) and restart nvidia-fabricmanager, whose start script launches it; until it runs the GPUs' fabric stays \"In Progress\" and CUDA returns cudaErrorSystemNotReady",
            Remedy::Imex => "start the IMEX service: `systemctl enable --now nvidia-imex`, with /etc/nvidia-imex/nodes_config.cfg listing every node of the NVLink domain; multi-node NVLink on GB200 needs it (the fabric manager's \"not supported\" is normal there)",
            Remedy::Nvswitch => "a fatal NVSwitch error (SXid) breaks the NVLink fabric: drain the node and reboot it to reset the fabric; if it comes back, replace the instance",
            Remedy::XidIsolate => "NVIDIA's XID catalog says to take the GPU out of service: drain the node and replace the instance",
            Remedy::XidReboot => "NVIDIA's XID catalog says to reboot: drain the node (`kubectl drain`) and reboot it; if the XID comes back, stop and start the instance to move to other hardware",
            Remedy::XidReset => "NVIDIA's XID catalog says to reset the GPU: drain the node and reset the GPU named (`nvidia-smi -r -i <index>`) or reboot the node; if the XID comes back, stop and start the instance",
            Remedy::XidWarn => "non-fatal XID errors usually point at the application (e.g. XID 13, 31, 43); watch for repeats on the same GPU and drain the node if they continue",
            Remedy::MemoryPending => "a pending row remap or page retirement is applied by a GPU reset or a reboot: drain the node, then `nvidia-smi -r -i <index>` or reboot",
            Remedy::Clocks => "the hardware is holding the GPU's clocks down (thermal, power brake or slowdown): check `nvidia-smi -q -d PERFORMANCE`; if it stays, drain the node and stop and start the instance",
            Remedy::Persistence => "enable persistence mode: `systemctl enable --now nvidia-persistenced` (or `nvidia-smi -pm 1`); without it every new client re-initialises the GPUs",
            Remedy::Gsp => "this type runs the proprietary NVIDIA kernel module with GSP firmware off, as the EKS AMI's nvidia-kmod-load does: load the proprietary module with `options nvidia NVreg_EnableGpuFirmware=0` (/etc/modprobe.d) and reboot",
            Remedy::DevChar => "run `nodeprep boot` (it creates the missing /dev/char links) or `nvidia-ctk system create-dev-char-symlinks --create-all`; without them a `systemctl daemon-reload` cuts the GPUs from running containers (\"Failed to initialize NVML: Unknown Error\")",
            Remedy::Other => "run `nodeprep check --only nvidia -vv` and `nvidia-smi -q` to see more",
        }
    }
}

/// Joins up to three items and says how many more there are.
fn some(items: &[String]) -> String {
    match items.len() {
        0..=3 => items.join(", "),
        n => format!("{} and {} more", items[..3].join(", "), n - 3),
    }
}

/// A field for the report: its value, `"unknown"`, or `"error: ..."`.
fn field_json<T: Into<Value> + Clone>(f: &Field<T>) -> Value {
    field_with(f, |v| v.clone().into())
}

fn field_with<T>(f: &Field<T>, show: impl Fn(&T) -> Value) -> Value {
    match f {
        Field::Value(v) => show(v),
        Field::Unknown(_) => Value::from("unknown"),
        Field::Error(e) => Value::from(format!("error: {e}")),
    }
}

/// One XID, counted over the boot.
#[derive(Debug)]
struct XidGroup {
    xid: u32,
    pci: String,
    gpu: Option<u32>,
    message: String,
    count: usize,
    fatal: bool,
    bucket: Bucket,
}

/// One named part of the check (a generation's requirement): `ok`, `warn`, `fail` or `unknown`,
/// and what was seen.
struct Part {
    name: &'static str,
    status: &'static str,
    detail: String,
}

/// What the steps found: problems (with their remedy), warnings, and problems of each GPU by its
/// NVML index.
struct Findings<'a> {
    snap: &'a Snapshot,
    want: &'a Expect,
    report: Option<&'a NvmlReport>,
    gpus: &'a [GpuInfo],
    problems: Vec<(String, Remedy)>,
    warnings: Vec<(String, Remedy)>,
    per_gpu: BTreeMap<u32, Vec<(String, Remedy)>>,
    parts: Vec<Part>,
    /// A problem of the whole node that stops every GPU, once the steps have looked.
    node_fault: Option<String>,
}

impl Findings<'_> {
    fn problem(&mut self, text: String, remedy: Remedy) {
        self.problems.push((text, remedy));
    }

    fn gpu_problem(&mut self, index: u32, text: String, remedy: Remedy) {
        self.per_gpu.entry(index).or_default().push((text, remedy));
    }

    fn warn(&mut self, text: String, remedy: Remedy) {
        self.warnings.push((text, remedy));
    }

    fn part(&mut self, name: &'static str, status: &'static str, detail: String) {
        self.parts.push(Part { name, status, detail });
    }

    /// No problem of its own and no fault of the node.
    fn healthy(&self, g: &GpuInfo) -> bool {
        self.node_fault.is_none() && self.per_gpu.get(&g.index).is_none_or(Vec::is_empty)
    }
}

fn addr_of(g: &GpuInfo) -> Option<PciAddr> {
    g.pci.value().and_then(|p| PciAddr::parse(p))
}

/// `GPU 3 (0000:86:00.0)`.
fn label(g: &GpuInfo) -> String {
    match addr_of(g) {
        Some(a) => format!("GPU {} ({a})", g.index),
        None => format!("GPU {}", g.index),
    }
}

/// Decides the check's result from a snapshot.
pub fn evaluate(snap: &Snapshot, want: &Expect) -> CheckResult {
    let required = want.needs_gpus();
    let mut r = CheckResult::new("nvidia", Status::Pass, "")
        .required(required)
        .expect("gpus", want.gpus.map_or(Value::Null, Value::from))
        .expect("gpu_model", want.gpu_model.clone().map_or(Value::Null, Value::from))
        .expect("nvswitch", want.nvswitch.map_or(Value::Null, Value::from));
    if want.fractional {
        r = r.expect("gpu_fraction", true);
    }
    let report = match &snap.nvml {
        Some(Outcome::Answered(rep)) => Some(rep),
        _ => None,
    };
    let driver_version = report
        .and_then(|rep| rep.driver_version.value().cloned().map(|v| (v, "nvml")))
        .or_else(|| snap.proc_version.clone().map(|v| (v, PROC_VERSION)));
    r = r
        .found("pci_gpus", snap.pci_gpus.len())
        .found("dev_nodes", snap.dev_nodes.len())
        .found("nvswitches", snap.nvswitches)
        .found(
            "driver_version",
            driver_version.as_ref().map_or(Value::Null, |(v, _)| Value::from(v.clone())),
        )
        .found(
            "driver_version_source",
            driver_version.as_ref().map_or(Value::Null, |(_, s)| Value::from(*s)),
        );
    if !snap.errors.is_empty() {
        r = r.found("errors", error_lines(&snap.errors));
    }
    if let Some(n) = want.gpus {
        r = r.metric(&GPUS_EXPECTED, [], f64::from(n));
    }
    if snap.nvml.is_none() {
        r.status = Status::Skip;
        r = r.metric(&GPUS_HEALTHY, [], 0.0);
        r.summary = match (&want.gpus, &want.instance_type) {
            (Some(_), Some(t)) => format!("{t} has no NVIDIA GPUs and none are present"),
            _ => "no NVIDIA GPUs on this node".into(),
        };
        return r.found("gpus", 0).found("xid_errors", Vec::<Value>::new());
    }
    let gpus: &[GpuInfo] = report.map_or(&[], |rep| &rep.gpus);
    let mut f = Findings {
        snap,
        want,
        report,
        gpus,
        problems: Vec::new(),
        warnings: Vec::new(),
        per_gpu: BTreeMap::new(),
        parts: Vec::new(),
        node_fault: None,
    };
    nvml_itself(&mut f, driver_version.is_some());
    if let Some(rep) = report {
        r = r.found("nvml_library", rep.library.clone());
    }
    let nvml_count = counts(&mut f);
    // What could not be read is never taken as absent or healthy.
    if !snap.errors.is_empty() {
        f.problem(
            format!("could not read: {}", some(&error_lines(&snap.errors))),
            Remedy::Unreadable,
        );
    }
    for g in gpus {
        gpu_health(&mut f, g);
    }
    let fabric_state = if want.imex {
        Some(imex_fabric(&mut f))
    } else {
        (want.nvswitch == Some(true)).then(|| fabric(&mut f))
    };
    if want.gsp_off {
        gsp(&mut f);
    }
    dev_char(&mut f);
    let groups = xids(&mut f);
    sxids(&mut f);

    // A fault of the node (the driver, NVML, the fabric, what could not be read) stops every GPU:
    // none counts as healthy then. Counting GPUs (one missing from PCI or NVML, one too many, a
    // device node missing: each named on its GPU where it can be) does not.
    f.node_fault = f
        .problems
        .iter()
        .find(|(_, r)| {
            !matches!(r, Remedy::PciMissing | Remedy::Model | Remedy::DevNodes | Remedy::GpuMissing)
        })
        .map(|(t, _)| t.clone());
    // Per-GPU problems into the list, and healthy GPUs.
    let healthy = gpus.iter().filter(|g| f.healthy(g)).count();
    for g in gpus {
        let mine: Vec<(String, Remedy)> = f.per_gpu.get(&g.index).cloned().unwrap_or_default();
        for (text, remedy) in mine {
            f.problem(format!("{}: {text}", label(g)), remedy);
        }
    }
    r = r.metric(&GPUS_HEALTHY, [], healthy as f64);
    for g in gpus {
        let pci = addr_of(g).map(|a| a.to_string()).unwrap_or_default();
        let one = f64::from(u8::from(f.healthy(g)));
        r = r.metric(&GPU_HEALTHY, [&g.index.to_string(), &pci], one);
    }
    for x in &groups {
        let fatal = if x.fatal { "true" } else { "false" };
        r = r.metric(&XID_ERRORS, [&x.xid.to_string(), &x.pci, fatal], x.count as f64);
    }
    if let Some(fault) = &f.node_fault {
        r = r.found("gpus_stopped_by", fault.clone());
    }
    let xid_errors: Vec<Value> = groups
        .iter()
        .map(|x| json!({"xid": x.xid, "pci": x.pci, "message": x.message, "count": x.count, "fatal": x.fatal, "gpu": x.gpu, "bucket": x.bucket.as_str(), "action": x.bucket.action(&short_pci(&x.pci))}))
        .collect();
    let parts: serde_json::Map<String, Value> = f
        .parts
        .iter()
        .map(|p| (p.name.to_string(), json!({"status": p.status, "detail": p.detail})))
        .collect();
    r = r
        .found("gpus", healthy)
        .found("nvml_gpus", nvml_count.map_or(Value::Null, Value::from))
        .found("xid_errors", xid_errors)
        .found("devices", devices(&f))
        .found("parts", parts);
    if let Ok(scan) = &snap.kmsg {
        if !scan.sxids.is_empty() {
            let sx: Vec<Value> = scan
                .sxids
                .iter()
                .map(|x| json!({"sxid": x.sxid, "pci": x.pci_text, "fatal": x.fatal, "message": x.message}))
                .collect();
            r = r.found("sxid_errors", sx);
        }
    }
    if let Some(state) = &fabric_state {
        r = r.found("fabric", state.clone());
    }
    if let Ok(scan) = &snap.kmsg {
        r = r.found("kmsg_records", scan.records);
    }
    verdict(r, &f, healthy, driver_version.map(|(v, _)| v), fabric_state, &groups)
}

/// NVML itself: found, loaded, started, answering.
fn nvml_itself(f: &mut Findings, driver_version_known: bool) {
    match &f.snap.nvml {
        Some(Outcome::NotFound { searched, error }) => {
            let dirs: Vec<String> = searched
                .iter()
                .map(|s| s.rsplit_once('/').map_or(s.as_str(), |(d, _)| d).to_string())
                .collect();
            f.problem(
                format!(
                    "NVML not found: no {} under --root (in {}) and the dynamic loader has none ({error})",
                    nvml::LIB_NAME,
                    some(&dirs)
                ),
                Remedy::NvmlMissing,
            )
        }
        Some(Outcome::LoadFailed { library, error }) => {
            f.problem(format!("cannot load NVML {library}: {error}"), Remedy::NvmlLoad)
        }
        Some(Outcome::InitFailed { library, error, message }) => {
            let remedy = match error {
                NvmlErrorKind::DriverNotLoaded => Remedy::DriverNotLoaded,
                NvmlErrorKind::NoPermission => Remedy::Permission,
                NvmlErrorKind::VersionMismatch => Remedy::VersionMismatch,
                NvmlErrorKind::Other => Remedy::Other,
            };
            f.problem(format!("NVML ({library}) failed to start: {message}"), remedy);
        }
        Some(Outcome::TimedOut { call, after_ms, .. }) => {
            f.problem(format!("NVML did not answer within {after_ms} ms ({call})"), Remedy::Hung)
        }
        Some(Outcome::StillStuck { call, since_ms }) => f.problem(
            format!(
                "NVML has not answered for {} s ({call}); it is not asked again until it does",
                since_ms / 1000
            ),
            Remedy::Hung,
        ),
        Some(Outcome::Answered(_)) | None => {}
    }
    if let Some(rep) = f.report {
        if !driver_version_known {
            let why = match &rep.driver_version {
                Field::Error(e) | Field::Unknown(e) => e.as_str(),
                Field::Value(_) => "",
            };
            f.warn(format!("driver version unknown ({why}; no {PROC_VERSION})"), Remedy::Other);
        }
    }
}

/// The GPUs counted three ways (PCI, `/dev/nvidia<N>`, NVML) against what the type has, and the
/// PCI functions NVML does not see. Returns NVML's count.
fn counts(f: &mut Findings) -> Option<usize> {
    let (snap, gpus) = (f.snap, f.gpus);
    let (p, d) = (snap.pci_gpus.len(), snap.dev_nodes.len());
    let n = f.report.and_then(|rep| rep.count.value().copied()).map(|n| n as usize);
    if let Some(Field::Error(e) | Field::Unknown(e)) = f.report.map(|rep| &rep.count) {
        f.problem(format!("NVML cannot count GPUs: {e}"), Remedy::Other);
    }
    let missing: Vec<String> = match f.report {
        Some(_) => snap
            .pci_gpus
            .iter()
            .filter(|pg| !gpus.iter().any(|g| addr_of(g).is_some_and(|a| a.same_slot(&pg.addr))))
            .map(|pg| pg.bdf.clone())
            .collect(),
        None => Vec::new(),
    };
    for g in gpus {
        if let Some(a) = addr_of(g) {
            if !snap.pci_gpus.iter().any(|pg| pg.addr.same_slot(&a)) {
                f.gpu_problem(g.index, format!("not under {PCI_DEVICES}"), Remedy::PciMissing);
            }
        }
        // Each GPU's own device node, by its minor number (its index where NVML cannot tell).
        let minor = g.minor.value().copied().unwrap_or(g.index);
        if g.handle_error.is_none() && !snap.dev_nodes.contains(&minor) {
            f.gpu_problem(g.index, format!("no /dev/nvidia{minor} device node"), Remedy::DevNodes);
        }
    }
    let missing_text = match missing.is_empty() {
        true => String::new(),
        false => format!(": {} on PCI but not seen by NVML", some(&missing)),
    };
    if f.want.fractional && p == 0 && n.unwrap_or(0) == 0 {
        let model = f.want.gpu_model.as_deref().unwrap_or("NVIDIA");
        f.problem(
            format!("no GPU on the PCI bus or in NVML: this type has a fractional {model} GPU"),
            Remedy::PciMissing,
        );
    }
    match f.want.gpus {
        Some(e) => {
            let e = e as usize;
            if p < e {
                f.problem(format!("only {p} of {e} GPUs on the PCI bus"), Remedy::PciMissing);
            } else if p > e {
                f.problem(format!("{p} GPUs on the PCI bus, expected {e}"), Remedy::Model);
            }
            if d != e {
                f.problem(format!("{d} of {e} /dev/nvidia<N> device nodes"), Remedy::DevNodes);
            }
            match n {
                Some(n) if n != e => f.problem(
                    format!("NVML sees {n} of {e} GPUs{missing_text}"),
                    Remedy::GpuMissing,
                ),
                Some(_) if !missing.is_empty() => f.problem(
                    format!("NVML GPUs differ from PCI{missing_text}"),
                    Remedy::GpuMissing,
                ),
                _ => {}
            }
        }
        None => {
            let nv = n.map_or("?".to_string(), |n| n.to_string());
            if p != d || n.is_some_and(|n| n != p) || !missing.is_empty() {
                f.problem(
                    format!("GPU counts disagree: {p} on PCI, {d} /dev/nvidia<N>, {nv} in NVML{missing_text}"),
                    Remedy::GpuFault,
                );
            }
        }
    }
    n
}

/// One GPU NVML answered for: its handle, identity, model, memory health.
fn gpu_health(f: &mut Findings, g: &GpuInfo) {
    let i = g.index;
    f.per_gpu.entry(i).or_default();
    if let Some(e) = &g.handle_error {
        f.gpu_problem(i, e.clone(), Remedy::GpuFault);
        return;
    }
    for (what, field) in [("name", &g.name), ("UUID", &g.uuid), ("bus id", &g.pci)] {
        if let Field::Error(e) = field {
            f.gpu_problem(i, format!("{what}: {e}"), Remedy::GpuFault);
        }
    }
    if let Field::Error(e) = &g.memory_total {
        f.gpu_problem(i, e.clone(), Remedy::GpuFault);
    }
    match (&g.name, &f.want.gpu_model) {
        (Field::Value(name), Some(model)) if !model_matches(name, model) => {
            f.gpu_problem(i, format!("is a {name}, expected {model}"), Remedy::Model);
        }
        (Field::Unknown(_), Some(model)) => f.warn(
            format!("{}: name unknown, so not confirmed to be {model}", label(g)),
            Remedy::Other,
        ),
        _ => {}
    }
    match &g.ecc_uncorrected_volatile {
        Field::Value(0) | Field::Unknown(_) => {}
        Field::Value(c) => f.gpu_problem(
            i,
            format!("{c} uncorrected ECC errors since the driver loaded"),
            Remedy::GpuFault,
        ),
        Field::Error(e) => f.gpu_problem(i, e.clone(), Remedy::GpuFault),
    }
    let pci = addr_of(g).map_or_else(|| format!("GPU {i}"), |a| short_pci(&a.to_string()));
    match &g.retired_pages_pending {
        Field::Value(true) => f.warn(
            format!(
                "{}: retired pages pending (reset GPU {pci} or reboot to retire them)",
                label(g)
            ),
            Remedy::MemoryPending,
        ),
        Field::Error(e) => f.gpu_problem(i, e.clone(), Remedy::GpuFault),
        _ => {}
    }
    match &g.remapped_rows {
        Field::Value(rows) if rows.failure => {
            f.gpu_problem(i, "row remapping failed".into(), Remedy::GpuFault)
        }
        Field::Value(rows) if rows.pending => f.warn(
            format!("{}: row remapping pending (reset GPU {pci} or reboot to apply it)", label(g)),
            Remedy::MemoryPending,
        ),
        Field::Error(e) => f.gpu_problem(i, e.clone(), Remedy::GpuFault),
        _ => {}
    }
    if matches!(g.ecc_uncorrected_volatile, Field::Unknown(_))
        && matches!(g.retired_pages_pending, Field::Unknown(_))
        && matches!(g.remapped_rows, Field::Unknown(_))
    {
        f.warn(format!("{}: memory health unknown (this driver reports no ECC, page retirement or row remapping)", label(g)), Remedy::Other);
    }
    hygiene(f, g);
}

/// Warnings of one GPU that do not stop it: persistence mode off, clocks held down by the
/// hardware. A field this driver cannot tell is not a warning of its own.
fn hygiene(f: &mut Findings, g: &GpuInfo) {
    if let Field::Value(false) = g.persistence {
        f.warn(format!("{}: persistence mode off", label(g)), Remedy::Persistence);
    }
    if let Field::Value(bits) = g.clock_events {
        let held: Vec<&str> =
            nvml::CLOCK_EVENTS.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect();
        if !held.is_empty() {
            f.warn(
                format!(
                    "{}: clocks held down by {} (clock event reasons {bits:#x})",
                    label(g),
                    held.join(", ")
                ),
                Remedy::Clocks,
            );
        }
    }
}

/// `0000:75:00.0` → `0000:75:00` (the GPU, as the driver's XID lines name it).
fn short_pci(pci: &str) -> String {
    pci.strip_suffix(".0").unwrap_or(pci).to_string()
}

/// The NVSwitch fabric: each GPU's registration from NVML, else whether the fabric manager runs;
/// on Blackwell HGX also NVLSM (without it the fabric stays "in progress", so those problems get
/// its remedy). Returns the state in words.
fn fabric(f: &mut Findings) -> String {
    let nvlsm_down = f.want.nvlsm && !matches!(f.snap.nvlsm, Some(FabricUnit::Running { .. }));
    let fabric_remedy = if nvlsm_down { Remedy::Nvlsm } else { Remedy::Fabric };
    if f.want.nvlsm {
        match &f.snap.nvlsm {
            Some(FabricUnit::Running { pid, how }) => {
                f.part("nvlsm", "ok", format!("NVLSM running (pid {pid}, from its {how})"))
            }
            _ => {
                f.part("nvlsm", "fail", "NVLSM not running".into());
                f.problem(
                    "NVLSM (NVLink subnet manager) is not running: Blackwell's NVSwitch fabric cannot come up without it".into(),
                    Remedy::Nvlsm,
                );
            }
        }
    }
    let count = |f: &Findings| f.problems.len() + f.per_gpu.values().map(Vec::len).sum::<usize>();
    let before = count(f);
    let state = fabric_states(f, fabric_remedy);
    let status = if count(f) > before { "fail" } else { "ok" };
    f.part("fabric-manager", status, state.clone());
    state
}

fn fabric_states(f: &mut Findings, fabric_remedy: Remedy) -> String {
    let gpus = f.gpus;
    let mut use_unit = f.report.is_none() || gpus.is_empty();
    let mut complete = 0;
    for g in gpus {
        let i = g.index;
        match &g.fabric {
            Some(Field::Value(FabricInfo { state: nvml::FABRIC_COMPLETED, error: None })) => {
                complete += 1
            }
            Some(Field::Value(FabricInfo { state: nvml::FABRIC_COMPLETED, error: Some(e) })) => {
                f.gpu_problem(i, format!("fabric registration failed: {e}"), fabric_remedy)
            }
            Some(Field::Value(FabricInfo { state: nvml::FABRIC_NOT_STARTED, .. })) => f
                .gpu_problem(
                    i,
                    "fabric manager has not started registering it".into(),
                    fabric_remedy,
                ),
            Some(Field::Value(FabricInfo { state: nvml::FABRIC_IN_PROGRESS, .. })) => {
                f.gpu_problem(i, "fabric registration still in progress".into(), fabric_remedy)
            }
            Some(Field::Error(e)) => f.gpu_problem(i, e.clone(), fabric_remedy),
            Some(Field::Value(_) | Field::Unknown(_)) | None => use_unit = true,
        }
    }
    if use_unit {
        return match &f.snap.fabric_unit {
            Some(FabricUnit::Running { pid, how }) => format!(
                "fabric manager running (pid {pid}, from its {how}); NVML gives no fabric state"
            ),
            _ => {
                f.problem(
                    "nvidia-fabricmanager is not running (NVSwitch fabric down)".into(),
                    fabric_remedy,
                );
                "fabric manager not running".into()
            }
        };
    }
    if complete == gpus.len() {
        "fabric complete".into()
    } else {
        format!("fabric complete on {complete} of {} GPUs", gpus.len())
    }
}

/// GB200: each GPU's NVLink fabric state from NVML ("not supported" is normal: the rack's switch
/// trays run the fabric), and the IMEX service, which multi-node NVLink needs. Returns the state in
/// words.
fn imex_fabric(f: &mut Findings) -> String {
    match &f.snap.imex {
        Some(FabricUnit::Running { pid, how }) => {
            f.part("imex", "ok", format!("nvidia-imex running (pid {pid}, from its {how})"))
        }
        _ => {
            f.part("imex", "fail", "nvidia-imex not running".into());
            f.problem(
                "the IMEX service (nvidia-imex) is not running: GB200's multi-node NVLink needs it"
                    .into(),
                Remedy::Imex,
            );
        }
    }
    let mut states: BTreeMap<&'static str, usize> = BTreeMap::new();
    for g in f.gpus {
        let state = match &g.fabric {
            Some(Field::Value(FabricInfo { state: nvml::FABRIC_COMPLETED, error: None })) => {
                "completed"
            }
            Some(Field::Value(FabricInfo { state: nvml::FABRIC_COMPLETED, error: Some(e) })) => {
                f.gpu_problem(
                    g.index,
                    format!("NVLink fabric registration failed: {e}"),
                    Remedy::Imex,
                );
                "failed"
            }
            Some(Field::Value(FabricInfo { state: nvml::FABRIC_NOT_SUPPORTED, .. })) => {
                "not supported (normal on GB200)"
            }
            Some(Field::Value(FabricInfo {
                state: nvml::FABRIC_NOT_STARTED | nvml::FABRIC_IN_PROGRESS,
                ..
            })) => {
                f.warn(
                    format!("{}: NVLink fabric registration not complete yet", label(g)),
                    Remedy::Imex,
                );
                "in progress"
            }
            _ => "unknown",
        };
        *states.entry(state).or_default() += 1;
    }
    let words: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("NVLink fabric: {}", if words.is_empty() { "no GPUs".into() } else { words.join(", ") })
}

/// g4dn/g5/g5g: the proprietary kernel module with GSP firmware off, as the EKS AMI loads it.
fn gsp(f: &mut Findings) {
    let Some(gsp) = f.snap.gsp.clone() else { return };
    match (gsp.open_kmod, gsp.enable_gpu_firmware) {
        (Some(true), _) => {
            f.part(
                "gsp-off",
                "warn",
                "the open kernel module is loaded (GSP firmware always on)".into(),
            );
            f.warn(
                "the open NVIDIA kernel module is loaded; this type runs the proprietary one with GSP firmware off".into(),
                Remedy::Gsp,
            );
        }
        (_, Some(0)) => f.part(
            "gsp-off",
            "ok",
            format!("proprietary kernel module, {PROC_PARAMS} EnableGpuFirmware: 0"),
        ),
        (_, Some(v)) => {
            f.part("gsp-off", "warn", format!("{PROC_PARAMS} EnableGpuFirmware: {v}"));
            f.warn(
                format!("GSP firmware is on (EnableGpuFirmware: {v}); this type runs with it off"),
                Remedy::Gsp,
            );
        }
        (_, None) => {
            f.part("gsp-off", "unknown", format!("no EnableGpuFirmware in {PROC_PARAMS}"));
            f.warn(
                format!("GSP firmware setting unknown (no EnableGpuFirmware in {PROC_PARAMS})"),
                Remedy::Gsp,
            );
        }
    }
}

/// Every NVIDIA device node's `/dev/char` link: missing ones are a warning (`boot` makes them).
fn dev_char(f: &mut Findings) {
    let nodes = &f.snap.dev_char;
    if nodes.is_empty() {
        return;
    }
    let missing: Vec<String> = nodes
        .iter()
        .filter(|n| n.link == CharLink::Missing)
        .map(|n| match n.number {
            Some((ma, mi)) => format!("/dev/char/{ma}:{mi} (/dev/{})", n.name),
            None => format!("/dev/{}", n.name),
        })
        .collect();
    let other: Vec<String> = nodes
        .iter()
        .filter_map(|n| match &n.link {
            CharLink::Other(t) | CharLink::Unknown(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let how = nodes.iter().map(|n| n.how).find(|h| *h != "stat").unwrap_or("stat");
    if missing.is_empty() && other.is_empty() {
        f.part(
            "dev-char",
            "ok",
            format!(
                "{} NVIDIA device nodes linked under /dev/char (numbers from {how})",
                nodes.len()
            ),
        );
        return;
    }
    let mut words = Vec::new();
    if !missing.is_empty() {
        words.push(format!(
            "{} of {} NVIDIA device nodes have no /dev/char link: {}",
            missing.len(),
            nodes.len(),
            some(&missing)
        ));
    }
    if !other.is_empty() {
        words.push(some(&other));
    }
    let text = words.join("; ");
    f.part("dev-char", "warn", text.clone());
    f.warn(text, Remedy::DevChar);
}

/// NVSwitch SXids of this boot: a fatal one breaks the fabric (a fault of the node); others warn.
fn sxids(f: &mut Findings) {
    let Ok(scan) = &f.snap.kmsg else { return };
    let mut seen: BTreeMap<(u32, String, bool), (usize, String)> = BTreeMap::new();
    for x in &scan.sxids {
        let e = seen.entry((x.sxid, x.pci_text.clone(), x.fatal)).or_insert((0, x.message.clone()));
        e.0 += 1;
    }
    for ((sxid, pci, fatal), (count, message)) in seen {
        let times = if count > 1 { format!(" ({count} times)") } else { String::new() };
        let text = format!("NVSwitch {pci}: SXid {sxid}{times}: {message}");
        if fatal {
            f.problem(format!("{text} (fatal)"), Remedy::Nvswitch);
        } else {
            f.warn(text, Remedy::XidWarn);
        }
    }
}

/// The XIDs of this boot, one group per (XID, PCI address), each mapped to its GPU: fatal ones
/// are problems of that GPU, others warnings.
fn xids(f: &mut Findings) -> Vec<XidGroup> {
    let (snap, gpus) = (f.snap, f.gpus);
    let mut groups: Vec<XidGroup> = Vec::new();
    match &snap.kmsg {
        Ok(scan) => {
            let mut index: BTreeMap<(u32, String), usize> = BTreeMap::new();
            for x in &scan.xids {
                let gpu = x.pci.and_then(|a| {
                    gpus.iter().find(|g| addr_of(g).is_some_and(|b| b.same_slot(&a)))
                });
                let pci_gpu =
                    x.pci.and_then(|a| snap.pci_gpus.iter().find(|pg| pg.addr.same_slot(&a)));
                let pci = match (pci_gpu, x.pci) {
                    (Some(pg), _) => pg.bdf.clone(),
                    (None, Some(a)) => a.to_string(),
                    (None, None) => x.pci_text.clone(),
                };
                let key = (x.xid, pci.clone());
                match index.get(&key) {
                    Some(&i) => groups[i].count += 1,
                    None => {
                        index.insert(key, groups.len());
                        groups.push(XidGroup {
                            xid: x.xid,
                            pci,
                            gpu: gpu.map(|g| g.index),
                            message: x.message.clone(),
                            count: 1,
                            fatal: xid::is_fatal(x, &f.want.fatal_xids),
                            bucket: xid::bucket(x),
                        });
                    }
                }
            }
        }
        Err(e) => f.warn(format!("XID errors unknown: {e}"), Remedy::Other),
    }
    for x in &groups {
        let times = if x.count > 1 { format!(" ({} times)", x.count) } else { String::new() };
        let action = x.bucket.action(&short_pci(&x.pci));
        let what = format!("XID {}{times}: {} [{}: {action}]", x.xid, x.message, x.bucket.as_str());
        let remedy = match x.bucket {
            Bucket::Isolate => Remedy::XidIsolate,
            Bucket::Reboot => Remedy::XidReboot,
            Bucket::ResetGpu | Bucket::DrainAndReset | Bucket::DrainP2p => Remedy::XidReset,
            _ if x.fatal => Remedy::GpuFault,
            _ => Remedy::XidWarn,
        };
        match (x.fatal, x.gpu) {
            (true, Some(i)) => f.gpu_problem(i, what, remedy),
            (true, None) => f.problem(format!("{what} on {}", x.pci), remedy),
            (false, Some(i)) => {
                let g = gpus.iter().find(|g| g.index == i).expect("mapped to a GPU of this report");
                f.warn(format!("{} on {}", what, label(g)), Remedy::XidWarn);
            }
            (false, None) => f.warn(format!("{what} on {}", x.pci), Remedy::XidWarn),
        }
    }
    groups
}

/// Each GPU for the report: what NVML said and what is wrong with it.
fn devices(f: &Findings) -> Vec<Value> {
    f.gpus
        .iter()
        .map(|g| {
            let problems: Vec<String> =
                f.per_gpu.get(&g.index).map_or(Vec::new(), |ps| ps.iter().map(|(t, _)| t.clone()).collect());
            let mut v = json!({
                "index": g.index,
                "name": field_json(&g.name),
                "uuid": field_json(&g.uuid),
                "pci": field_with(&g.pci, |p| Value::from(PciAddr::parse(p).map_or(p.clone(), |a| a.to_string()))),
                "memory_total_bytes": field_json(&g.memory_total),
                "ecc_uncorrected_volatile": field_json(&g.ecc_uncorrected_volatile),
                "retired_pages_pending": field_json(&g.retired_pages_pending),
                "remapped_rows": field_with(&g.remapped_rows, |rr| json!({"corrected": rr.corrected, "uncorrected": rr.uncorrected, "pending": rr.pending, "failure": rr.failure})),
                "healthy": f.healthy(g),
                "problems": problems,
            });
            if let Some(e) = &g.handle_error {
                v["error"] = Value::from(e.clone());
            }
            if let Some(fi) = &g.fabric {
                v["fabric_state"] = match fi {
                    Field::Value(fi) => Value::from(match fi.state {
                        nvml::FABRIC_NOT_SUPPORTED => "not supported",
                        nvml::FABRIC_NOT_STARTED => "not started",
                        nvml::FABRIC_IN_PROGRESS => "in progress",
                        nvml::FABRIC_COMPLETED if fi.error.is_none() => "completed",
                        nvml::FABRIC_COMPLETED => "failed",
                        _ => "unknown",
                    }),
                    Field::Unknown(_) => Value::from("unknown"),
                    Field::Error(e) => Value::from(format!("error: {e}")),
                };
            }
            v
        })
        .collect()
}

/// The summary, status and remedy from what the steps found.
fn verdict(
    mut r: CheckResult,
    f: &Findings,
    healthy: usize,
    driver_version: Option<String>,
    fabric_state: Option<String>,
    _groups: &[XidGroup],
) -> CheckResult {
    let want = f.want;
    let remedy_text = |remedies: &mut Vec<Remedy>| {
        remedies.sort();
        remedies.dedup();
        let text: Vec<String> = remedies
            .iter()
            .map(|r| match r {
                Remedy::Unreadable => read_failure_remedy(&f.snap.errors, FIX_UNREADABLE),
                other => other.text().to_string(),
            })
            .collect();
        text.join(". Also: ")
    };
    if f.problems.is_empty() {
        let mut names: Vec<&str> =
            f.gpus.iter().filter_map(|g| g.name.value().map(String::as_str)).collect();
        names.dedup();
        let mut s = match want.gpus {
            Some(e) => format!("{healthy} of {e} GPUs healthy"),
            None if want.fractional => format!("{healthy} fractional GPU healthy"),
            None => format!("{healthy} GPUs healthy"),
        };
        if !names.is_empty() {
            s.push_str(&format!(" ({})", names.join(", ")));
        }
        if let Some(v) = &driver_version {
            s.push_str(&format!(", driver {v}"));
        }
        if let Some(state) = &fabric_state {
            s.push_str(&format!(", {state}"));
        }
        if want.gpus.is_none() && !want.fractional {
            s.push_str("; instance type unknown: counts checked for consistency only");
        }
        if !f.warnings.is_empty() {
            r.status = Status::Warn;
            let texts: Vec<String> = f.warnings.iter().map(|(t, _)| t.clone()).collect();
            s.push_str(&format!("; {}", some(&texts)));
            let mut remedies: Vec<Remedy> = f.warnings.iter().map(|(_, r)| *r).collect();
            r = r.remedy(remedy_text(&mut remedies));
        }
        r.summary = s;
        return r;
    }
    let required = want.needs_gpus();
    r.status = if required { Status::Fail } else { Status::Warn };
    let texts: Vec<String> = f.problems.iter().map(|(t, _)| t.clone()).collect();
    r.summary = some(&texts);
    if !required {
        r.summary.push_str(if want.gpus.is_some() {
            "; not required: no GPUs expected"
        } else {
            "; not required: instance type unknown"
        });
    }
    // A GPU lost, a fatal XID, a broken NVSwitch, a hung GPU: what replacing the node fixes (a
    // missing driver, NVLSM or IMEX is the node's configuration, never this).
    if required {
        if let Some((t, _)) = f.problems.iter().find(|(_, rem)| rem.is_hardware()) {
            r = r.hardware_fault(t.clone());
        }
    }
    let mut remedies: Vec<Remedy> = f.problems.iter().map(|(_, rem)| *rem).collect();
    r.remedy(remedy_text(&mut remedies))
}
#[cfg(test)]
mod tests {
    use super::super::xid::{self as kmsg, KmsgScan};
    use super::super::PciGpu;
    use super::*;
    use nvml::RemappedRows;

    #[test]
    fn model_is_matched_as_whole_words() {
        assert!(model_matches("NVIDIA H100 80GB HBM3", "H100"));
        assert!(model_matches("NVIDIA A100-SXM4-40GB", "A100"));
        assert!(model_matches("Tesla T4", "t4"));
        assert!(model_matches("NVIDIA H100 80GB HBM3", "H100 80GB"));
        assert!(!model_matches("NVIDIA L40S", "L4"));
        assert!(!model_matches("NVIDIA A10G", "A100"));
        assert!(!model_matches("NVIDIA H200", "H100"));
    }

    fn gpu(index: u32, bus: &str) -> GpuInfo {
        GpuInfo {
            index,
            handle_error: None,
            name: Field::Value("NVIDIA H100 80GB HBM3".into()),
            uuid: Field::Value(format!("GPU-{index}")),
            pci: Field::Value(format!("00000000:{bus}:00.0")),
            minor: Field::Value(index),
            memory_total: Field::Value(85520809984),
            ecc_uncorrected_volatile: Field::Value(0),
            retired_pages_pending: Field::Unknown(
                "nvmlDeviceGetRetiredPagesPendingStatus: not supported".into(),
            ),
            remapped_rows: Field::Value(RemappedRows {
                corrected: 0,
                uncorrected: 0,
                pending: false,
                failure: false,
            }),
            persistence: Field::Value(true),
            clock_events: Field::Value(0x1),
            fabric: Some(Field::Value(FabricInfo { state: nvml::FABRIC_COMPLETED, error: None })),
        }
    }

    const BUSES: [&str; 8] = ["53", "64", "75", "86", "97", "a8", "b9", "ca"];

    fn healthy() -> Snapshot {
        Snapshot {
            pci_gpus: BUSES
                .iter()
                .map(|b| PciGpu {
                    addr: PciAddr::parse(&format!("0000:{b}:00.0")).unwrap(),
                    bdf: format!("0000:{b}:00.0"),
                    device: "0x2330".into(),
                })
                .collect(),
            nvswitches: 4,
            dev_nodes: (0..8).collect(),
            proc_version: Some("550.127.05".into()),
            nvml: Some(Outcome::Answered(NvmlReport {
                library: "/usr/lib64/libnvidia-ml.so.1".into(),
                driver_version: Field::Value("550.127.05".into()),
                count: Field::Value(8),
                gpus: BUSES.iter().enumerate().map(|(i, b)| gpu(i as u32, b)).collect(),
            })),
            kmsg: Ok(KmsgScan::default()),
            fabric_unit: Some(FabricUnit::NotRunning),
            nvlsm: None,
            imex: None,
            gsp: None,
            dev_char: vec![],
            errors: vec![],
        }
    }

    fn p5() -> Expect {
        Expect {
            instance_type: Some("p5.48xlarge".into()),
            gpus: Some(8),
            gpu_model: Some("H100".into()),
            nvswitch: Some(true),
            fractional: false,
            nvlsm: false,
            imex: false,
            gsp_off: false,
            fatal_xids: vec![48, 79],
        }
    }

    fn gpus_mut(s: &mut Snapshot) -> &mut Vec<GpuInfo> {
        match s.nvml.as_mut() {
            Some(Outcome::Answered(r)) => &mut r.gpus,
            _ => panic!("not answered"),
        }
    }

    #[test]
    fn a_healthy_p5_passes() {
        let r = evaluate(&healthy(), &p5());
        assert_eq!(r.status, Status::Pass, "{}", r.summary);
        assert!(r.required);
        assert_eq!(
            r.summary,
            "8 of 8 GPUs healthy (NVIDIA H100 80GB HBM3), driver 550.127.05, fabric complete"
        );
        assert_eq!(r.found["gpus"], 8);
        assert_eq!(r.found["devices"][2]["pci"], "0000:75:00.0");
        assert_eq!(r.found["devices"][2]["retired_pages_pending"], "unknown");
        assert_eq!(r.found["devices"][2]["fabric_state"], "completed");
    }

    #[test]
    fn unhealthy_memory_and_fabric_name_the_gpu() {
        let mut s = healthy();
        gpus_mut(&mut s)[1].ecc_uncorrected_volatile = Field::Value(3);
        gpus_mut(&mut s)[2].remapped_rows = Field::Value(RemappedRows {
            corrected: 0,
            uncorrected: 1,
            pending: true,
            failure: false,
        });
        gpus_mut(&mut s)[3].fabric =
            Some(Field::Value(FabricInfo { state: nvml::FABRIC_IN_PROGRESS, error: None }));
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.found["gpus"], 6, "a pending remap warns: GPU 2 still counts");
        assert!(
            r.summary.contains("GPU 1 (0000:64:00.0): 3 uncorrected ECC errors"),
            "{}",
            r.summary
        );
        assert_eq!(r.found["devices"][2]["healthy"], true);
        assert!(
            r.summary.contains("GPU 3 (0000:86:00.0): fabric registration still in progress"),
            "{}",
            r.summary
        );
        assert!(r.remedy.as_deref().unwrap().contains("nvidia-fabricmanager"));
    }

    #[test]
    fn missing_fabric_info_falls_back_to_the_service() {
        let mut s = healthy();
        for g in gpus_mut(&mut s) {
            g.fabric = Some(Field::Unknown(
                "nvmlDeviceGetGpuFabricInfo: function symbol failed to load".into(),
            ));
        }
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.summary, "nvidia-fabricmanager is not running (NVSwitch fabric down)");
        s.fabric_unit = Some(FabricUnit::Running { pid: 4242, how: "pid file" });
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Pass, "{}", r.summary);
        assert_eq!(
            r.found["fabric"],
            "fabric manager running (pid 4242, from its pid file); NVML gives no fabric state"
        );
        assert_eq!(r.found["devices"][0]["fabric_state"], "unknown");
    }

    #[test]
    fn unknown_fields_are_not_passes() {
        let mut s = healthy();
        let g = &mut gpus_mut(&mut s)[0];
        g.ecc_uncorrected_volatile = Field::Unknown("x".into());
        g.remapped_rows = Field::Unknown("y".into());
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Warn);
        assert!(r.summary.contains("GPU 0 (0000:53:00.0): memory health unknown"), "{}", r.summary);
        assert_eq!(r.found["devices"][0]["ecc_uncorrected_volatile"], "unknown");
        assert_eq!(r.found["devices"][0]["remapped_rows"], "unknown");
    }

    #[test]
    fn wrong_model_fails() {
        let mut want = p5();
        want.gpu_model = Some("H200".into());
        let r = evaluate(&healthy(), &want);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.found["gpus"], 0);
        assert!(
            r.summary
                .starts_with("GPU 0 (0000:53:00.0): is a NVIDIA H100 80GB HBM3, expected H200"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn xids_map_to_gpus_and_repeat_counts() {
        let mut s = healthy();
        let mut scan = KmsgScan::default();
        kmsg::scan_text(
            "3,1,1,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1, GPU has fallen off the bus.\n\
             3,2,2,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1, GPU has fallen off the bus.\n\
             3,3,3,-;NVRM: Xid (PCI:0000:64:00): 13, pid=2, Graphics Exception\n",
            &mut scan,
        );
        s.kmsg = Ok(scan);
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.found["gpus"], 7);
        assert_eq!(
            r.summary,
            "GPU 0 (0000:53:00.0): XID 79 (2 times): pid=1, GPU has fallen off the bus. [reboot: reboot the node]"
        );
        let x = &r.found["xid_errors"];
        assert_eq!(
            x[0],
            json!({"xid": 79, "pci": "0000:53:00.0", "message": "pid=1, GPU has fallen off the bus.", "count": 2, "fatal": true, "gpu": 0, "bucket": "reboot", "action": "reboot the node"})
        );
        assert_eq!(x[1]["xid"], 13);
        assert_eq!(x[1]["fatal"], false);
    }

    #[test]
    fn no_gpus_expected_or_present_is_a_skip() {
        let s = Snapshot {
            pci_gpus: vec![],
            nvswitches: 0,
            dev_nodes: vec![],
            proc_version: None,
            nvml: None,
            kmsg: Ok(KmsgScan::default()),
            fabric_unit: None,
            nvlsm: None,
            imex: None,
            gsp: None,
            dev_char: vec![],
            errors: vec![],
        };
        let want = Expect {
            instance_type: Some("m7i.large".into()),
            gpus: Some(0),
            gpu_model: None,
            nvswitch: Some(false),
            fractional: false,
            nvlsm: false,
            imex: false,
            gsp_off: false,
            fatal_xids: vec![],
        };
        let r = evaluate(&s, &want);
        assert_eq!((r.status, r.required), (Status::Skip, false));
        assert_eq!(r.summary, "m7i.large has no NVIDIA GPUs and none are present");
        assert_eq!(r.found["gpus"], 0);
        assert_eq!(r.found["xid_errors"], json!([]));
    }

    #[test]
    fn unknown_type_checks_consistency_only() {
        let mut s = healthy();
        let want = Expect {
            instance_type: None,
            gpus: None,
            gpu_model: None,
            nvswitch: None,
            fractional: false,
            nvlsm: false,
            imex: false,
            gsp_off: false,
            fatal_xids: vec![79],
        };
        let r = evaluate(&s, &want);
        assert_eq!((r.status, r.required), (Status::Pass, false), "{}", r.summary);
        assert!(
            r.summary.ends_with("instance type unknown: counts checked for consistency only"),
            "{}",
            r.summary
        );
        s.dev_nodes.pop();
        let r = evaluate(&s, &want);
        assert_eq!(r.status, Status::Warn);
        assert!(
            r.summary.starts_with("GPU counts disagree: 8 on PCI, 7 /dev/nvidia<N>, 8 in NVML"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn nvml_outcomes_fail_with_their_remedy() {
        let mut s = healthy();
        s.nvml = Some(Outcome::TimedOut {
            library: "x".into(),
            call: "nvmlDeviceGetTotalEccErrors (GPU 3)".into(),
            after_ms: 2000,
        });
        let r = evaluate(&s, &p5());
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.summary.starts_with(
                "NVML did not answer within 2000 ms (nvmlDeviceGetTotalEccErrors (GPU 3))"
            ),
            "{}",
            r.summary
        );
        assert_eq!(r.found["gpus"], 0);
        assert_eq!(r.found["driver_version"], "550.127.05");
        assert_eq!(r.found["driver_version_source"], PROC_VERSION);
        s.nvml = Some(Outcome::InitFailed {
            library: "x".into(),
            error: NvmlErrorKind::DriverNotLoaded,
            message: "nvmlInit_v2: NVIDIA driver is not loaded".into(),
        });
        let r = evaluate(&s, &p5());
        assert!(r.remedy.as_deref().unwrap().contains("modprobe nvidia"), "{r:?}");
    }
}
