//! NVML, loaded at run time and asked under deadlines.
//!
//! The library is `NODEPREP_NVML_LIB` when set, else the first `libnvidia-ml.so.1` found in the
//! host's usual library directories under `--root` ([`lib_dirs`]), else whatever the dynamic
//! loader finds by name (in a container, the NVIDIA container toolkit mounts it there).
//!
//! NVML can block forever on a broken GPU, so every call runs on a worker thread: the worker
//! reports each call before it makes it, and the caller gives each call `per_call` and the whole
//! probe `total`. When a deadline passes the caller reports which call did not answer and moves
//! on; the worker thread is left behind (it cannot be cancelled). While it stays stuck, later
//! probes do not start another one: they report that NVML is still stuck instead, so `serve`
//! leaks at most one thread.
//!
//! A call the driver does not have (the symbol is missing from an older library, or NVML answers
//! "not supported" / "function not found") makes that field [`Field::Unknown`]: never a crash and
//! never a pass of that field.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError};
use nvml_wrapper::error::{nvml_try, NvmlError};
use nvml_wrapper::{Device, Nvml};

use crate::host::Host;

pub const LIB_NAME: &str = "libnvidia-ml.so.1";
pub const LIB_ENV: &str = "NODEPREP_NVML_LIB";

/// The host directories searched for [`LIB_NAME`] under `--root`, in order: the distribution's
/// 64-bit library directories (AL2023 and RHEL: lib64; Debian and Ubuntu: lib/<triplet>), then
/// where the GPU operator's driver container puts its root (`/run/nvidia/driver`).
pub fn lib_dirs() -> Vec<String> {
    let triplet =
        if cfg!(target_arch = "aarch64") { "aarch64-linux-gnu" } else { "x86_64-linux-gnu" };
    let mut dirs = Vec::new();
    for prefix in ["", "/run/nvidia/driver"] {
        for d in [
            "/usr/lib64".to_string(),
            format!("/usr/lib/{triplet}"),
            "/usr/lib".into(),
            "/lib64".into(),
            format!("/lib/{triplet}"),
        ] {
            dirs.push(format!("{prefix}{d}"));
        }
    }
    dirs
}

/// Which library to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LibChoice {
    /// `NODEPREP_NVML_LIB`.
    Env(PathBuf),
    /// Found under the root (the path this process opens).
    Found(PathBuf),
    /// Not under the root: let the loader look for [`LIB_NAME`]. `searched` are the host paths
    /// that were tried.
    Loader { searched: Vec<String> },
}

impl LibChoice {
    pub fn describe(&self) -> String {
        match self {
            LibChoice::Env(p) => format!("{} ({LIB_ENV})", p.display()),
            LibChoice::Found(p) => p.display().to_string(),
            LibChoice::Loader { .. } => format!("{LIB_NAME} (dynamic loader)"),
        }
    }

    fn path(&self) -> OsString {
        match self {
            LibChoice::Env(p) | LibChoice::Found(p) => p.clone().into_os_string(),
            LibChoice::Loader { .. } => LIB_NAME.into(),
        }
    }
}

pub fn choose_lib(host: &Host, env: Option<OsString>) -> LibChoice {
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return LibChoice::Env(PathBuf::from(p));
    }
    let mut searched = Vec::new();
    for d in lib_dirs() {
        let host_path = format!("{d}/{LIB_NAME}");
        if let Some(p) = host.locate(&host_path) {
            return LibChoice::Found(p);
        }
        searched.push(host_path);
    }
    LibChoice::Loader { searched }
}

/// A value NVML gave, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<T> {
    Value(T),
    /// This driver cannot tell (missing symbol, not supported on this GPU).
    Unknown(String),
    /// The call failed (GPU lost, no permission, ...).
    Error(String),
}

impl<T> Field<T> {
    pub fn value(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }

    fn from_result(call: &str, r: Result<T, NvmlError>) -> Field<T> {
        match r {
            Ok(v) => Field::Value(v),
            Err(e) if is_unknown(&e) => Field::Unknown(format!("{call}: {e}")),
            Err(e) => Field::Error(format!("{call}: {e}")),
        }
    }
}

/// Errors that mean "this driver or GPU cannot tell", not "something is wrong".
pub fn is_unknown(e: &NvmlError) -> bool {
    matches!(
        e,
        NvmlError::FailedToLoadSymbol(_) | NvmlError::NotSupported | NvmlError::FunctionNotFound
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemappedRows {
    pub corrected: u32,
    pub uncorrected: u32,
    pub pending: bool,
    pub failure: bool,
}

/// `nvmlGpuFabricState_t`.
pub const FABRIC_NOT_SUPPORTED: u8 = 0;
pub const FABRIC_NOT_STARTED: u8 = 1;
pub const FABRIC_IN_PROGRESS: u8 = 2;
pub const FABRIC_COMPLETED: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricInfo {
    pub state: u8,
    /// The registration's result when completed: `None` for success, else NVML's error text.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub index: u32,
    /// `nvmlDeviceGetHandleByIndex_v2` failed: nothing else was asked.
    pub handle_error: Option<String>,
    pub name: Field<String>,
    pub uuid: Field<String>,
    /// NVML's bus id, e.g. `00000000:53:00.0`.
    pub pci: Field<String>,
    /// The N of its `/dev/nvidia<N>` device node.
    pub minor: Field<u32>,
    pub memory_total: Field<u64>,
    pub ecc_uncorrected_volatile: Field<u64>,
    pub retired_pages_pending: Field<bool>,
    pub remapped_rows: Field<RemappedRows>,
    /// `nvmlDeviceGetPersistenceMode`: the driver stays initialised between clients.
    pub persistence: Field<bool>,
    /// `nvmlDeviceGetCurrentClocksEventReasons` (R535+; `...ThrottleReasons` before): the bits of
    /// [`CLOCK_EVENTS`] that hold the clocks down now.
    pub clock_events: Field<u64>,
    /// Asked only where the type has an NVLink fabric (NVSwitch or IMEX).
    pub fabric: Option<Field<FabricInfo>>,
}

/// `nvmlClocksEventReasons`: the bits that mean the hardware holds the GPU back (the others, e.g.
/// 0x1 GPU idle or 0x4 the software power cap, are normal).
pub const CLOCK_EVENTS: &[(u64, &str)] = &[
    (0x8, "hardware slowdown"),
    (0x20, "software thermal slowdown"),
    (0x40, "hardware thermal slowdown"),
    (0x80, "hardware power brake"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmlReport {
    pub library: String,
    pub driver_version: Field<String>,
    pub count: Field<u32>,
    pub gpus: Vec<GpuInfo>,
}

/// What asking NVML gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No library under the root and none the loader could find.
    NotFound {
        searched: Vec<String>,
        error: String,
    },
    /// The library exists but could not be loaded (wrong architecture, missing file named by
    /// `NODEPREP_NVML_LIB`, ...).
    LoadFailed {
        library: String,
        error: String,
    },
    /// `nvmlInit_v2` failed.
    InitFailed {
        library: String,
        error: NvmlErrorKind,
        message: String,
    },
    /// A call did not return within its deadline.
    TimedOut {
        library: String,
        call: String,
        after_ms: u64,
    },
    /// A call from an earlier probe still has not returned: NVML is not asked again.
    StillStuck {
        call: String,
        since_ms: u64,
    },
    Answered(NvmlReport),
}

/// The init errors that have a remedy of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvmlErrorKind {
    DriverNotLoaded,
    NoPermission,
    VersionMismatch,
    Other,
}

#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Each call.
    pub per_call: Duration,
    /// The whole probe.
    pub total: Duration,
}

/// The call the NVML thread is in, and since when: written by the thread before each call, read by
/// the waiter only when a deadline comes (no wake-up per call).
struct Progress {
    call: String,
    since: Instant,
}

struct Stuck {
    id: u64,
    call: String,
    since: Instant,
}

/// The probe whose worker is stuck in NVML, if any.
static STUCK: Mutex<Option<Stuck>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Asks NVML about every GPU, under `deadlines`. `fabric`: also ask for GPU fabric state.
pub fn probe(lib: LibChoice, fabric: bool, deadlines: Deadlines) -> Outcome {
    start(lib, fabric, deadlines).wait()
}

/// A probe under way: its worker thread loads NVML and asks while the caller reads sysfs.
pub struct Pending {
    state: PendingState,
}

enum PendingState {
    /// Answered before it started (NVML is still stuck from an earlier probe, or no thread).
    Ready(Outcome),
    Running {
        id: u64,
        rx: mpsc::Receiver<Outcome>,
        done: Arc<AtomicBool>,
        progress: Arc<Mutex<Progress>>,
        library: String,
        started: Instant,
        deadlines: Deadlines,
    },
}

/// Starts a probe (see [`probe`]); [`Pending::wait`] collects its answer. The deadlines count from
/// here.
pub fn start(lib: LibChoice, fabric: bool, deadlines: Deadlines) -> Pending {
    if let Some(s) = STUCK.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        let outcome = Outcome::StillStuck {
            call: s.call.clone(),
            since_ms: s.since.elapsed().as_millis() as u64,
        };
        return Pending { state: PendingState::Ready(outcome) };
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel::<Outcome>();
    let library = lib.describe();
    let started = Instant::now();
    let progress =
        Arc::new(Mutex::new(Progress { call: "loading the library".into(), since: started }));
    let worker_progress = Arc::clone(&progress);
    // Set by the worker when it has answered, under the STUCK lock, so that a timeout racing
    // with the answer never marks NVML stuck for good.
    let done = Arc::new(AtomicBool::new(false));
    let worker_done = Arc::clone(&done);
    let spawned = std::thread::Builder::new().name("nvml".into()).spawn(move || {
        let outcome = ask(&lib, fabric, &worker_progress);
        let mut stuck = STUCK.lock().unwrap_or_else(|e| e.into_inner());
        worker_done.store(true, Ordering::SeqCst);
        if stuck.as_ref().is_some_and(|s| s.id == id) {
            tracing::warn!("NVML answered after all; it will be asked again on the next run");
            *stuck = None;
        }
        let _ = tx.send(outcome);
    });
    if let Err(e) = spawned {
        return Pending {
            state: PendingState::Ready(Outcome::LoadFailed {
                library,
                error: format!("could not start a thread for NVML: {e}"),
            }),
        };
    }
    Pending { state: PendingState::Running { id, rx, done, progress, library, started, deadlines } }
}

impl Pending {
    /// The answer, or the call NVML did not return from within its deadline.
    pub fn wait(self) -> Outcome {
        let (id, rx, done, progress, library, started, deadlines) = match self.state {
            PendingState::Ready(outcome) => return outcome,
            PendingState::Running { id, rx, done, progress, library, started, deadlines } => {
                (id, rx, done, progress, library, started, deadlines)
            }
        };
        let call_now = || {
            let p = progress.lock().unwrap_or_else(|e| e.into_inner());
            (p.call.clone(), p.since)
        };
        loop {
            let (call, call_started) = call_now();
            let left = deadlines
                .total
                .saturating_sub(started.elapsed())
                .min(deadlines.per_call.saturating_sub(call_started.elapsed()));
            if !left.is_zero() {
                match rx.recv_timeout(left) {
                    Ok(outcome) => return outcome,
                    Err(RecvTimeoutError::Disconnected) => {
                        return Outcome::LoadFailed {
                            library,
                            error: "the NVML thread ended without an answer (it panicked)".into(),
                        };
                    }
                    // A deadline came: for the call under way then, or for one that has since
                    // returned (look again).
                    Err(RecvTimeoutError::Timeout) => continue,
                }
            }
            let mut stuck = STUCK.lock().unwrap_or_else(|e| e.into_inner());
            if done.load(Ordering::SeqCst) {
                // It answered just now: take the answer.
                drop(stuck);
                return rx.recv().unwrap_or_else(|_| Outcome::LoadFailed {
                    library,
                    error: "the NVML thread ended without an answer".into(),
                });
            }
            let after = if call_started.elapsed() >= deadlines.per_call {
                deadlines.per_call
            } else {
                started.elapsed()
            };
            tracing::error!(call = %call, after_ms = after.as_millis() as u64, "NVML did not answer");
            *stuck = Some(Stuck { id, call: call.clone(), since: call_started });
            return Outcome::TimedOut { library, call, after_ms: after.as_millis() as u64 };
        }
    }
}

/// The worker: loads NVML and asks everything, announcing each call first.
fn ask(lib: &LibChoice, fabric: bool, progress: &Mutex<Progress>) -> Outcome {
    let say = |c: String| {
        tracing::trace!(call = %c, "NVML call");
        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        *p = Progress { call: c, since: Instant::now() };
    };
    let library = lib.describe();
    if let LibChoice::Env(p) = lib {
        if !crate::host::local_exists(p) {
            return Outcome::LoadFailed {
                library,
                error: format!("{}: no such file", p.display()),
            };
        }
    }
    say("nvmlInit_v2".into());
    let path = lib.path();
    let nvml = match Nvml::builder().lib_path(&path).init() {
        Ok(n) => n,
        Err(NvmlError::LibloadingError(e)) => {
            let error = e.to_string();
            return match lib {
                LibChoice::Loader { searched } => {
                    Outcome::NotFound { searched: searched.clone(), error }
                }
                _ => Outcome::LoadFailed { library, error },
            };
        }
        Err(e @ NvmlError::FailedToLoadSymbol(_)) => {
            return Outcome::LoadFailed { library, error: format!("not an NVML library: {e}") }
        }
        Err(e) => {
            let kind = match e {
                NvmlError::DriverNotLoaded => NvmlErrorKind::DriverNotLoaded,
                NvmlError::NoPermission => NvmlErrorKind::NoPermission,
                NvmlError::LibRmVersionMismatch => NvmlErrorKind::VersionMismatch,
                _ => NvmlErrorKind::Other,
            };
            return Outcome::InitFailed {
                library,
                error: kind,
                message: format!("nvmlInit_v2: {e}"),
            };
        }
    };
    say("nvmlSystemGetDriverVersion".into());
    let driver_version =
        Field::from_result("nvmlSystemGetDriverVersion", nvml.sys_driver_version());
    say("nvmlDeviceGetCount_v2".into());
    let count = Field::from_result("nvmlDeviceGetCount_v2", nvml.device_count());
    let mut gpus = Vec::new();
    for index in 0..count.value().copied().unwrap_or(0) {
        let on = |f: &str| format!("{f} (GPU {index})");
        say(on("nvmlDeviceGetHandleByIndex_v2"));
        let device = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                gpus.push(GpuInfo {
                    index,
                    handle_error: Some(format!("nvmlDeviceGetHandleByIndex_v2: {e}")),
                    name: no_handle(),
                    uuid: no_handle(),
                    pci: no_handle(),
                    minor: no_handle(),
                    memory_total: no_handle(),
                    ecc_uncorrected_volatile: no_handle(),
                    retired_pages_pending: no_handle(),
                    remapped_rows: no_handle(),
                    persistence: no_handle(),
                    clock_events: no_handle(),
                    fabric: None,
                });
                continue;
            }
        };
        say(on("nvmlDeviceGetName"));
        let name = Field::from_result("nvmlDeviceGetName", device.name());
        say(on("nvmlDeviceGetUUID"));
        let uuid = Field::from_result("nvmlDeviceGetUUID", device.uuid());
        say(on("nvmlDeviceGetPciInfo_v3"));
        let pci =
            Field::from_result("nvmlDeviceGetPciInfo_v3", device.pci_info().map(|p| p.bus_id));
        say(on("nvmlDeviceGetMinorNumber"));
        let minor = Field::from_result("nvmlDeviceGetMinorNumber", device.minor_number());
        say(on("nvmlDeviceGetMemoryInfo_v2"));
        let memory_total =
            Field::from_result("nvmlDeviceGetMemoryInfo_v2", device.memory_info().map(|m| m.total));
        say(on("nvmlDeviceGetTotalEccErrors"));
        let ecc_uncorrected_volatile = Field::from_result(
            "nvmlDeviceGetTotalEccErrors",
            device.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile),
        );
        say(on("nvmlDeviceGetRetiredPagesPendingStatus"));
        let retired_pages_pending = Field::from_result(
            "nvmlDeviceGetRetiredPagesPendingStatus",
            device.are_pages_pending_retired(),
        );
        say(on("nvmlDeviceGetRemappedRows"));
        let remapped_rows =
            Field::from_result("nvmlDeviceGetRemappedRows", remapped_rows(&nvml, &device));
        say(on("nvmlDeviceGetPersistenceMode"));
        let persistence =
            Field::from_result("nvmlDeviceGetPersistenceMode", device.is_in_persistent_mode());
        say(on("nvmlDeviceGetCurrentClocksEventReasons"));
        let clock_events = Field::from_result(
            "nvmlDeviceGetCurrentClocksEventReasons",
            clock_events(&nvml, &device),
        );
        let fabric = fabric.then(|| {
            say(on("nvmlDeviceGetGpuFabricInfo"));
            Field::from_result("nvmlDeviceGetGpuFabricInfo", fabric_info(&nvml, &device))
        });
        gpus.push(GpuInfo {
            index,
            handle_error: None,
            name,
            uuid,
            pci,
            minor,
            memory_total,
            ecc_uncorrected_volatile,
            retired_pages_pending,
            remapped_rows,
            persistence,
            clock_events,
            fabric,
        });
    }
    say("nvmlShutdown".into());
    drop(nvml);
    Outcome::Answered(NvmlReport { library, driver_version, count, gpus })
}

fn no_handle<T>() -> Field<T> {
    Field::Unknown("no device handle".into())
}

/// `nvmlDeviceGetRemappedRows` (Ampere and newer), which nvml-wrapper does not wrap.
fn remapped_rows(nvml: &Nvml, device: &Device) -> Result<RemappedRows, NvmlError> {
    let f = nvml
        .lib()
        .nvmlDeviceGetRemappedRows
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let (mut corrected, mut uncorrected, mut pending, mut failure) = (0, 0, 0, 0);
    // SAFETY: the handle comes from this NVML instance, which is alive; the out pointers are
    // valid for the duration of the call.
    nvml_try(unsafe {
        f(device.handle(), &mut corrected, &mut uncorrected, &mut pending, &mut failure)
    })?;
    Ok(RemappedRows { corrected, uncorrected, pending: pending != 0, failure: failure != 0 })
}

/// `nvmlDeviceGetCurrentClocksEventReasons` (R535 and newer), else its older name
/// `nvmlDeviceGetCurrentClocksThrottleReasons` (the same call): nvml-wrapper knows only the old.
fn clock_events(nvml: &Nvml, device: &Device) -> Result<u64, NvmlError> {
    let lib = nvml.lib();
    let f = lib
        .nvmlDeviceGetCurrentClocksEventReasons
        .as_ref()
        .or(lib.nvmlDeviceGetCurrentClocksThrottleReasons.as_ref())
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let mut reasons = 0;
    // SAFETY: as for remapped_rows; `reasons` is a valid out pointer for the call.
    nvml_try(unsafe { f(device.handle(), &mut reasons) })?;
    Ok(reasons)
}

/// `nvmlDeviceGetGpuFabricInfo` (R525 and newer), which nvml-wrapper does not wrap.
fn fabric_info(nvml: &Nvml, device: &Device) -> Result<FabricInfo, NvmlError> {
    let f = nvml
        .lib()
        .nvmlDeviceGetGpuFabricInfo
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    // SAFETY: a plain C struct of integers and bytes: all zeroes is a valid value.
    let mut info: nvml_wrapper_sys::bindings::nvmlGpuFabricInfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as for remapped_rows; `info` is a valid nvmlGpuFabricInfo_t for the call.
    nvml_try(unsafe { f(device.handle(), &mut info) })?;
    let error = (info.state == FABRIC_COMPLETED && info.status != 0)
        .then(|| NvmlError::from(info.status).to_string());
    Ok(FabricInfo { state: info.state, error })
}
