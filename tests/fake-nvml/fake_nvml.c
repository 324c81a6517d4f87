/*
 * A fake libnvidia-ml.so.1 for nodeprep's tests: the subset of NVML that nodeprep uses, with the
 * same entry points, struct layouts, return codes and rules as the real library (nothing works
 * before nvmlInit_v2, handles come from nvmlDeviceGetHandleByIndex_v2, buffers that are too small
 * get NVML_ERROR_INSUFFICIENT_SIZE, versioned structs must carry the right version).
 *
 * Its answers come from the file named by FAKE_NVML_CONFIG, read at nvmlInit_v2 (a missing or
 * unreadable file makes init fail with NVML_ERROR_UNKNOWN and a message on stderr). Without
 * FAKE_NVML_CONFIG it is a healthy p5.48xlarge: 8 H100 at the bus ids of the fixture generator's
 * p5 tree, driver 550.127.05, fabric registration complete.
 *
 * Control file, one directive per line ('#' starts a comment):
 *   driver_version 550.127.05
 *   error <function> <code>        a system-level call (nvmlInit_v2, nvmlDeviceGetCount_v2,
 *                                  nvmlSystemGetDriverVersion, ...) returns <code>
 *   hang <function>                that call never returns (a GPU wedged in the driver)
 *   delay <function> <ms>          that call takes <ms> milliseconds
 *   gpu <busId>                    adds a GPU (e.g. 00000000:53:00.0), healthy H100 80GB by
 *                                  default; the lines below it until the next `gpu` describe it:
 *     name <text>                  nvmlDeviceGetName
 *     uuid <text>                  nvmlDeviceGetUUID
 *     memory_total <bytes>         nvmlDeviceGetMemoryInfo(_v2)
 *     ecc_uncorrected <n>          volatile uncorrected ECC errors (nvmlDeviceGetTotalEccErrors)
 *     retired_pending <0|1>        nvmlDeviceGetRetiredPagesPendingStatus
 *     minor <n>                    nvmlDeviceGetMinorNumber (the N of /dev/nvidia<N>; default: its
 *                                  position among the GPUs, as the driver numbers them)
 *     remapped_rows <corr> <unc> <pending> <failure>   nvmlDeviceGetRemappedRows
 *     fabric <state> <status>      nvmlDeviceGetGpuFabricInfo (state 0..3, status an nvmlReturn_t);
 *                                  as the real driver: 0 (not supported) on GB200, whose NVLink
 *                                  fabric the rack's switch trays run; 2 (in progress) on Blackwell
 *                                  HGX while NVLSM is not running
 *     persistence <0|1>            nvmlDeviceGetPersistenceMode (default 1: nvidia-persistenced runs)
 *     clock_events <mask>          nvmlDeviceGetCurrentClocksEventReasons and its pre-R535 name
 *                                  nvmlDeviceGetCurrentClocksThrottleReasons (hex or decimal;
 *                                  default 0x1, GPU idle)
 *     error <function> <code>      that call on this GPU returns <code> (15: GPU is lost,
 *                                  3: not supported)
 *     hang <function>              that call on this GPU never returns
 *
 * The rest of the API is exported as stubs (see the end of the file). Variants without a function
 * (an older driver) are built with -DOMIT_<function>, e.g.
 * -DOMIT_nvmlDeviceGetGpuFabricInfo: the symbol is then absent, as in a driver that predates it.
 * -DOMIT_nvmlDeviceGetCurrentClocksEventReasons leaves only ...ThrottleReasons (a driver before R535);
 * with -DOMIT_nvmlDeviceGetCurrentClocksThrottleReasons too, neither name exists.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

typedef unsigned int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999,
};

typedef struct {
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned char clusterUuid[16];
    nvmlReturn_t status;
    unsigned int cliqueId;
    unsigned char state;
} nvmlGpuFabricInfo_t;

#define NVML_STRUCT_VERSION(size, ver) ((unsigned int)(size) | ((unsigned int)(ver) << 24))

#define MAX_GPUS 64
#define MAX_RULES 32

struct rule {
    char fn[64];
    nvmlReturn_t code;
    int hang;
    long delay_ms;
};

struct fake_gpu {
    char bus_id[32];
    char name[96];
    char uuid[96];
    unsigned long long memory_total;
    unsigned long long ecc_uncorrected;
    unsigned int retired_pending;
    unsigned int minor;
    unsigned int remap[4];
    unsigned char fabric_state;
    nvmlReturn_t fabric_status;
    unsigned int persistence;
    unsigned long long clock_events;
    struct rule rules[MAX_RULES];
    int nrules;
};

typedef struct fake_gpu *nvmlDevice_t;

static int init_count;
static char driver_version[80] = "550.127.05";
static struct fake_gpu gpus[MAX_GPUS];
static int ngpus;
static struct rule rules[MAX_RULES];
static int nrules;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Applies the rules for `fn` (global, then the GPU's): a hang never returns, a delay sleeps, an
 * error code is returned. NVML_SUCCESS: go on. */
static nvmlReturn_t apply_rules(const char *fn, struct fake_gpu *g) {
    struct rule *sets[2] = {rules, g ? g->rules : NULL};
    int counts[2] = {nrules, g ? g->nrules : 0};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < counts[s]; i++) {
            struct rule *r = &sets[s][i];
            if (strcmp(r->fn, fn) != 0) continue;
            if (r->hang)
                for (;;) sleep_ms(3600 * 1000);
            if (r->delay_ms) sleep_ms(r->delay_ms);
            if (r->code) return r->code;
        }
    }
    return NVML_SUCCESS;
}

static void gpu_defaults(struct fake_gpu *g, const char *bus_id, int index) {
    memset(g, 0, sizeof *g);
    snprintf(g->bus_id, sizeof g->bus_id, "%s", bus_id);
    snprintf(g->name, sizeof g->name, "NVIDIA H100 80GB HBM3");
    snprintf(g->uuid, sizeof g->uuid, "GPU-6a1f3c2e-0b7d-4d2a-9c1e-5f8a2b3c4d%02d", index);
    g->memory_total = 85520809984ULL;
    g->minor = (unsigned)index;
    g->fabric_state = 3; /* NVML_GPU_FABRIC_STATE_COMPLETED */
    g->fabric_status = NVML_SUCCESS;
    g->persistence = 1;
    g->clock_events = 0x1; /* nvmlClocksEventReasonGpuIdle */
}

static void defaults(void) {
    static const char *buses[] = {"00000000:53:00.0", "00000000:64:00.0", "00000000:75:00.0", "00000000:86:00.0",
                                  "00000001:97:00.0", "00000001:A8:00.0", "00000001:B9:00.0", "00000001:CA:00.0"};
    ngpus = 8;
    for (int i = 0; i < ngpus; i++) gpu_defaults(&gpus[i], buses[i], i);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
    return s;
}

static int load_config(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "fake NVML: cannot open FAKE_NVML_CONFIG %s\n", path);
        return -1;
    }
    char line[512];
    struct fake_gpu *g = NULL;
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = trim(line);
        if (!*s) continue;
        char key[64] = {0};
        int n = 0;
        if (sscanf(s, "%63s %n", key, &n) < 1) continue;
        char *rest = s + n;
        struct rule *rs = g ? g->rules : rules;
        int *nr = g ? &g->nrules : &nrules;
        if (!strcmp(key, "driver_version")) {
            snprintf(driver_version, sizeof driver_version, "%s", rest);
        } else if (!strcmp(key, "gpu")) {
            if (ngpus == MAX_GPUS) continue;
            g = &gpus[ngpus];
            gpu_defaults(g, rest, ngpus);
            ngpus++;
        } else if ((!strcmp(key, "error") || !strcmp(key, "hang") || !strcmp(key, "delay")) && *nr < MAX_RULES) {
            struct rule *r = &rs[(*nr)++];
            memset(r, 0, sizeof *r);
            long v = 0;
            sscanf(rest, "%63s %ld", r->fn, &v);
            if (!strcmp(key, "error")) r->code = (nvmlReturn_t)v;
            if (!strcmp(key, "hang")) r->hang = 1;
            if (!strcmp(key, "delay")) r->delay_ms = v;
        } else if (g && !strcmp(key, "name")) {
            snprintf(g->name, sizeof g->name, "%s", rest);
        } else if (g && !strcmp(key, "uuid")) {
            snprintf(g->uuid, sizeof g->uuid, "%s", rest);
        } else if (g && !strcmp(key, "memory_total")) {
            g->memory_total = strtoull(rest, NULL, 10);
        } else if (g && !strcmp(key, "ecc_uncorrected")) {
            g->ecc_uncorrected = strtoull(rest, NULL, 10);
        } else if (g && !strcmp(key, "minor")) {
            g->minor = (unsigned)strtoul(rest, NULL, 10);
        } else if (g && !strcmp(key, "retired_pending")) {
            g->retired_pending = (unsigned)strtoul(rest, NULL, 10);
        } else if (g && !strcmp(key, "remapped_rows")) {
            sscanf(rest, "%u %u %u %u", &g->remap[0], &g->remap[1], &g->remap[2], &g->remap[3]);
        } else if (g && !strcmp(key, "persistence")) {
            g->persistence = (unsigned)strtoul(rest, NULL, 10);
        } else if (g && !strcmp(key, "clock_events")) {
            g->clock_events = strtoull(rest, NULL, 0);
        } else if (g && !strcmp(key, "fabric")) {
            unsigned st = 0, status = 0;
            sscanf(rest, "%u %u", &st, &status);
            g->fabric_state = (unsigned char)st;
            g->fabric_status = status;
        } else {
            fprintf(stderr, "fake NVML: %s: unknown directive %s\n", path, key);
        }
    }
    fclose(f);
    return 0;
}

/* Every device call: initialized, a valid handle, then the rules. */
static nvmlReturn_t device_call(const char *fn, nvmlDevice_t d) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (d < gpus || d >= gpus + ngpus) return NVML_ERROR_INVALID_ARGUMENT;
    return apply_rules(fn, d);
}

static nvmlReturn_t copy_string(char *dst, unsigned int len, const char *src) {
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(src) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, strlen(src) + 1);
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlInit_v2(void) {
    if (!init_count) {
        ngpus = 0;
        nrules = 0;
        snprintf(driver_version, sizeof driver_version, "550.127.05");
        const char *path = getenv("FAKE_NVML_CONFIG");
        if (path && *path) {
            if (load_config(path) != 0) return NVML_ERROR_UNKNOWN;
        } else {
            defaults();
        }
    }
    nvmlReturn_t r = apply_rules("nvmlInit_v2", NULL);
    if (r != NVML_SUCCESS) return r;
    init_count++;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    init_count--;
    return NVML_SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 4: return "Insufficient Permissions";
    case 6: return "Not Found";
    case 7: return "Insufficient Size";
    case 9: return "Driver Not Loaded";
    case 10: return "Timeout";
    case 12: return "NVML Shared Library Not Found";
    case 13: return "Function Not Found";
    case 15: return "GPU is lost";
    case 18: return "RM has detected an NVML/RM version mismatch.";
    case 25: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

#ifndef OMIT_nvmlSystemGetDriverVersion
EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t r = apply_rules("nvmlSystemGetDriverVersion", NULL);
    if (r) return r;
    return copy_string(version, length, driver_version);
}
#endif

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = apply_rules("nvmlDeviceGetCount_v2", NULL);
    if (r) return r;
    *count = (unsigned)ngpus;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!init_count) return NVML_ERROR_UNINITIALIZED;
    if (!device || index >= (unsigned)ngpus) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = apply_rules("nvmlDeviceGetHandleByIndex_v2", &gpus[index]);
    if (r) return r;
    *device = &gpus[index];
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    nvmlReturn_t r = device_call("nvmlDeviceGetName", d);
    return r ? r : copy_string(name, length, d->name);
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length) {
    nvmlReturn_t r = device_call("nvmlDeviceGetUUID", d);
    return r ? r : copy_string(uuid, length, d->uuid);
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *pci) {
    nvmlReturn_t r = device_call("nvmlDeviceGetPciInfo_v3", d);
    if (r) return r;
    if (!pci) return NVML_ERROR_INVALID_ARGUMENT;
    memset(pci, 0, sizeof *pci);
    unsigned dom = 0, bus = 0, dev = 0, fn = 0;
    sscanf(d->bus_id, "%x:%x:%x.%x", &dom, &bus, &dev, &fn);
    pci->domain = dom;
    pci->bus = bus;
    pci->device = dev;
    pci->pciDeviceId = 0x233010de;
    pci->pciSubSystemId = 0x16c110de;
    snprintf(pci->busId, sizeof pci->busId, "%s", d->bus_id);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.%X", dom & 0xffff, bus, dev, fn);
    return NVML_SUCCESS;
}

#ifndef OMIT_nvmlDeviceGetMemoryInfo
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    nvmlReturn_t r = device_call("nvmlDeviceGetMemoryInfo", d);
    if (r) return r;
    if (!m) return NVML_ERROR_INVALID_ARGUMENT;
    m->total = d->memory_total;
    m->used = 0;
    m->free = d->memory_total;
    return NVML_SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    nvmlReturn_t r = device_call("nvmlDeviceGetMemoryInfo_v2", d);
    if (r) return r;
    if (!m) return NVML_ERROR_INVALID_ARGUMENT;
    if (m->version != NVML_STRUCT_VERSION(sizeof(nvmlMemory_v2_t), 2)) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    m->reserved = 512ULL << 20;
    m->total = d->memory_total;
    m->used = 0;
    m->free = d->memory_total - m->reserved;
    return NVML_SUCCESS;
}
#endif

#ifndef OMIT_nvmlDeviceGetTotalEccErrors
EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t d, unsigned int errorType, unsigned int counterType,
                                                unsigned long long *count) {
    nvmlReturn_t r = device_call("nvmlDeviceGetTotalEccErrors", d);
    if (r) return r;
    if (!count || errorType > 1 || counterType > 1) return NVML_ERROR_INVALID_ARGUMENT;
    /* Only volatile uncorrected errors are modelled; the others are zero. */
    *count = (errorType == 1 && counterType == 0) ? d->ecc_uncorrected : 0;
    return NVML_SUCCESS;
}
#endif

#ifndef OMIT_nvmlDeviceGetMinorNumber
EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t d, unsigned int *minorNumber) {
    nvmlReturn_t r = device_call("nvmlDeviceGetMinorNumber", d);
    if (r) return r;
    if (!minorNumber) return NVML_ERROR_INVALID_ARGUMENT;
    *minorNumber = d->minor;
    return NVML_SUCCESS;
}
#endif

#ifndef OMIT_nvmlDeviceGetRetiredPagesPendingStatus
EXPORT nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t d, unsigned int *isPending) {
    nvmlReturn_t r = device_call("nvmlDeviceGetRetiredPagesPendingStatus", d);
    if (r) return r;
    if (!isPending) return NVML_ERROR_INVALID_ARGUMENT;
    *isPending = d->retired_pending ? 1 : 0;
    return NVML_SUCCESS;
}
#endif

#ifndef OMIT_nvmlDeviceGetRemappedRows
EXPORT nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t d, unsigned int *corrRows, unsigned int *uncRows,
                                              unsigned int *isPending, unsigned int *failureOccurred) {
    nvmlReturn_t r = device_call("nvmlDeviceGetRemappedRows", d);
    if (r) return r;
    if (!corrRows || !uncRows || !isPending || !failureOccurred) return NVML_ERROR_INVALID_ARGUMENT;
    *corrRows = d->remap[0];
    *uncRows = d->remap[1];
    *isPending = d->remap[2];
    *failureOccurred = d->remap[3];
    return NVML_SUCCESS;
}
#endif

#ifndef OMIT_nvmlDeviceGetGpuFabricInfo
EXPORT nvmlReturn_t nvmlDeviceGetGpuFabricInfo(nvmlDevice_t d, nvmlGpuFabricInfo_t *info) {
    nvmlReturn_t r = device_call("nvmlDeviceGetGpuFabricInfo", d);
    if (r) return r;
    if (!info) return NVML_ERROR_INVALID_ARGUMENT;
    memset(info, 0, sizeof *info);
    info->state = d->fabric_state;
    info->status = d->fabric_status;
    if (d->fabric_state == 3) {
        memcpy(info->clusterUuid, "fake-nvml-clustr", 16);
        info->cliqueId = 1;
    }
    return NVML_SUCCESS;
}
#endif

#ifndef OMIT_nvmlDeviceGetPersistenceMode
/* nvmlEnableState_t: 0 disabled, 1 enabled. */
EXPORT nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t d, unsigned int *mode) {
    nvmlReturn_t r = device_call("nvmlDeviceGetPersistenceMode", d);
    if (r) return r;
    if (!mode) return NVML_ERROR_INVALID_ARGUMENT;
    *mode = d->persistence ? 1 : 0;
    return NVML_SUCCESS;
}
#endif

/* nvmlDeviceGetCurrentClocksEventReasons and its name before R535, ...ThrottleReasons (kept,
 * deprecated, by later drivers): one call, its rules looked up under the name it was called by. */
__attribute__((unused)) static nvmlReturn_t clock_events(const char *fn, nvmlDevice_t d, unsigned long long *reasons) {
    nvmlReturn_t r = device_call(fn, d);
    if (r) return r;
    if (!reasons) return NVML_ERROR_INVALID_ARGUMENT;
    *reasons = d->clock_events;
    return NVML_SUCCESS;
}

#ifndef OMIT_nvmlDeviceGetCurrentClocksEventReasons
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long *reasons) {
    return clock_events("nvmlDeviceGetCurrentClocksEventReasons", d, reasons);
}
#endif

#ifndef OMIT_nvmlDeviceGetCurrentClocksThrottleReasons
EXPORT nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *reasons) {
    return clock_events("nvmlDeviceGetCurrentClocksThrottleReasons", d, reasons);
}
#endif

/*
 * Every other function of the NVML API (those nvml-wrapper-sys 0.10 resolves when it loads the
 * library), as a current driver exports them all: loading the fake then costs what loading the real
 * library does (a missing symbol is a failed dlsym with an error message, hundreds of them for an
 * old driver). nodeprep does not call these; each answers NVML_ERROR_NOT_SUPPORTED after init
 * (NVML_ERROR_UNINITIALIZED before), whatever its real arguments.
 */
#define STUB(name) \
    EXPORT nvmlReturn_t name(void) { return init_count ? NVML_ERROR_NOT_SUPPORTED : NVML_ERROR_UNINITIALIZED; }
STUB(nvmlComputeInstanceDestroy)
STUB(nvmlComputeInstanceGetInfo)
STUB(nvmlComputeInstanceGetInfo_v2)
STUB(nvmlDeviceClearAccountingPids)
STUB(nvmlDeviceClearCpuAffinity)
STUB(nvmlDeviceClearEccErrorCounts)
STUB(nvmlDeviceClearFieldValues)
STUB(nvmlDeviceCreateGpuInstance)
STUB(nvmlDeviceCreateGpuInstanceWithPlacement)
STUB(nvmlDeviceDiscoverGpus)
STUB(nvmlDeviceFreezeNvLinkUtilizationCounter)
STUB(nvmlDeviceGetAPIRestriction)
STUB(nvmlDeviceGetAccountingBufferSize)
STUB(nvmlDeviceGetAccountingMode)
STUB(nvmlDeviceGetAccountingPids)
STUB(nvmlDeviceGetAccountingStats)
STUB(nvmlDeviceGetActiveVgpus)
STUB(nvmlDeviceGetAdaptiveClockInfoStatus)
STUB(nvmlDeviceGetAddressingMode)
STUB(nvmlDeviceGetApplicationsClock)
STUB(nvmlDeviceGetArchitecture)
STUB(nvmlDeviceGetAttributes)
STUB(nvmlDeviceGetAttributes_v2)
STUB(nvmlDeviceGetAutoBoostedClocksEnabled)
STUB(nvmlDeviceGetBAR1MemoryInfo)
STUB(nvmlDeviceGetBoardId)
STUB(nvmlDeviceGetBoardPartNumber)
STUB(nvmlDeviceGetBrand)
STUB(nvmlDeviceGetBridgeChipInfo)
STUB(nvmlDeviceGetBusType)
STUB(nvmlDeviceGetC2cModeInfoV)
STUB(nvmlDeviceGetCapabilities)
STUB(nvmlDeviceGetClkMonStatus)
STUB(nvmlDeviceGetClock)
STUB(nvmlDeviceGetClockInfo)
STUB(nvmlDeviceGetClockOffsets)
STUB(nvmlDeviceGetComputeInstanceId)
STUB(nvmlDeviceGetComputeMode)
STUB(nvmlDeviceGetComputeRunningProcesses)
STUB(nvmlDeviceGetComputeRunningProcesses_v2)
STUB(nvmlDeviceGetComputeRunningProcesses_v3)
STUB(nvmlDeviceGetConfComputeGpuAttestationReport)
STUB(nvmlDeviceGetConfComputeGpuCertificate)
STUB(nvmlDeviceGetConfComputeMemSizeInfo)
STUB(nvmlDeviceGetConfComputeProtectedMemoryUsage)
STUB(nvmlDeviceGetCoolerInfo)
STUB(nvmlDeviceGetCount)
STUB(nvmlDeviceGetCpuAffinity)
STUB(nvmlDeviceGetCpuAffinityWithinScope)
STUB(nvmlDeviceGetCreatableVgpus)
STUB(nvmlDeviceGetCudaComputeCapability)
STUB(nvmlDeviceGetCurrPcieLinkGeneration)
STUB(nvmlDeviceGetCurrPcieLinkWidth)
STUB(nvmlDeviceGetCurrentClockFreqs)
STUB(nvmlDeviceGetDecoderUtilization)
STUB(nvmlDeviceGetDefaultApplicationsClock)
STUB(nvmlDeviceGetDefaultEccMode)
STUB(nvmlDeviceGetDetailedEccErrors)
STUB(nvmlDeviceGetDeviceHandleFromMigDeviceHandle)
STUB(nvmlDeviceGetDisplayActive)
STUB(nvmlDeviceGetDisplayMode)
STUB(nvmlDeviceGetDramEncryptionMode)
STUB(nvmlDeviceGetDriverModel)
STUB(nvmlDeviceGetDriverModel_v2)
STUB(nvmlDeviceGetDynamicPstatesInfo)
STUB(nvmlDeviceGetEccMode)
STUB(nvmlDeviceGetEncoderCapacity)
STUB(nvmlDeviceGetEncoderSessions)
STUB(nvmlDeviceGetEncoderStats)
STUB(nvmlDeviceGetEncoderUtilization)
STUB(nvmlDeviceGetEnforcedPowerLimit)
STUB(nvmlDeviceGetFBCSessions)
STUB(nvmlDeviceGetFBCStats)
STUB(nvmlDeviceGetFanControlPolicy_v2)
STUB(nvmlDeviceGetFanSpeed)
STUB(nvmlDeviceGetFanSpeedRPM)
STUB(nvmlDeviceGetFanSpeed_v2)
STUB(nvmlDeviceGetFieldValues)
STUB(nvmlDeviceGetGpcClkMinMaxVfOffset)
STUB(nvmlDeviceGetGpcClkVfOffset)
STUB(nvmlDeviceGetGpuFabricInfoV)
STUB(nvmlDeviceGetGpuInstanceById)
STUB(nvmlDeviceGetGpuInstanceId)
STUB(nvmlDeviceGetGpuInstancePossiblePlacements)
STUB(nvmlDeviceGetGpuInstancePossiblePlacements_v2)
STUB(nvmlDeviceGetGpuInstanceProfileInfo)
STUB(nvmlDeviceGetGpuInstanceProfileInfoByIdV)
STUB(nvmlDeviceGetGpuInstanceProfileInfoV)
STUB(nvmlDeviceGetGpuInstanceRemainingCapacity)
STUB(nvmlDeviceGetGpuInstances)
STUB(nvmlDeviceGetGpuMaxPcieLinkGeneration)
STUB(nvmlDeviceGetGpuOperationMode)
STUB(nvmlDeviceGetGraphicsRunningProcesses)
STUB(nvmlDeviceGetGraphicsRunningProcesses_v2)
STUB(nvmlDeviceGetGraphicsRunningProcesses_v3)
STUB(nvmlDeviceGetGridLicensableFeatures)
STUB(nvmlDeviceGetGridLicensableFeatures_v2)
STUB(nvmlDeviceGetGridLicensableFeatures_v3)
STUB(nvmlDeviceGetGridLicensableFeatures_v4)
STUB(nvmlDeviceGetGspFirmwareMode)
STUB(nvmlDeviceGetGspFirmwareVersion)
STUB(nvmlDeviceGetHandleByIndex)
STUB(nvmlDeviceGetHandleByPciBusId)
STUB(nvmlDeviceGetHandleByPciBusId_v2)
STUB(nvmlDeviceGetHandleBySerial)
STUB(nvmlDeviceGetHandleByUUID)
STUB(nvmlDeviceGetHandleByUUIDV)
STUB(nvmlDeviceGetHostVgpuMode)
STUB(nvmlDeviceGetIndex)
STUB(nvmlDeviceGetInforomConfigurationChecksum)
STUB(nvmlDeviceGetInforomImageVersion)
STUB(nvmlDeviceGetInforomVersion)
STUB(nvmlDeviceGetIrqNum)
STUB(nvmlDeviceGetJpgUtilization)
STUB(nvmlDeviceGetLastBBXFlushTime)
STUB(nvmlDeviceGetMPSComputeRunningProcesses)
STUB(nvmlDeviceGetMPSComputeRunningProcesses_v2)
STUB(nvmlDeviceGetMPSComputeRunningProcesses_v3)
STUB(nvmlDeviceGetMarginTemperature)
STUB(nvmlDeviceGetMaxClockInfo)
STUB(nvmlDeviceGetMaxCustomerBoostClock)
STUB(nvmlDeviceGetMaxMigDeviceCount)
STUB(nvmlDeviceGetMaxPcieLinkGeneration)
STUB(nvmlDeviceGetMaxPcieLinkWidth)
STUB(nvmlDeviceGetMemClkMinMaxVfOffset)
STUB(nvmlDeviceGetMemClkVfOffset)
STUB(nvmlDeviceGetMemoryAffinity)
STUB(nvmlDeviceGetMemoryBusWidth)
STUB(nvmlDeviceGetMemoryErrorCounter)
STUB(nvmlDeviceGetMigDeviceHandleByIndex)
STUB(nvmlDeviceGetMigMode)
STUB(nvmlDeviceGetMinMaxClockOfPState)
STUB(nvmlDeviceGetMinMaxFanSpeed)
STUB(nvmlDeviceGetModuleId)
STUB(nvmlDeviceGetMultiGpuBoard)
STUB(nvmlDeviceGetNumFans)
STUB(nvmlDeviceGetNumGpuCores)
STUB(nvmlDeviceGetNumaNodeId)
STUB(nvmlDeviceGetNvLinkCapability)
STUB(nvmlDeviceGetNvLinkErrorCounter)
STUB(nvmlDeviceGetNvLinkInfo)
STUB(nvmlDeviceGetNvLinkRemoteDeviceType)
STUB(nvmlDeviceGetNvLinkRemotePciInfo)
STUB(nvmlDeviceGetNvLinkRemotePciInfo_v2)
STUB(nvmlDeviceGetNvLinkState)
STUB(nvmlDeviceGetNvLinkUtilizationControl)
STUB(nvmlDeviceGetNvLinkUtilizationCounter)
STUB(nvmlDeviceGetNvLinkVersion)
STUB(nvmlDeviceGetNvlinkBwMode)
STUB(nvmlDeviceGetNvlinkSupportedBwModes)
STUB(nvmlDeviceGetOfaUtilization)
STUB(nvmlDeviceGetP2PStatus)
STUB(nvmlDeviceGetPciInfo)
STUB(nvmlDeviceGetPciInfoExt)
STUB(nvmlDeviceGetPciInfo_v2)
STUB(nvmlDeviceGetPcieLinkMaxSpeed)
STUB(nvmlDeviceGetPcieReplayCounter)
STUB(nvmlDeviceGetPcieSpeed)
STUB(nvmlDeviceGetPcieThroughput)
STUB(nvmlDeviceGetPdi)
STUB(nvmlDeviceGetPerformanceModes)
STUB(nvmlDeviceGetPerformanceState)
STUB(nvmlDeviceGetPgpuMetadataString)
STUB(nvmlDeviceGetPlatformInfo)
STUB(nvmlDeviceGetPowerManagementDefaultLimit)
STUB(nvmlDeviceGetPowerManagementLimit)
STUB(nvmlDeviceGetPowerManagementLimitConstraints)
STUB(nvmlDeviceGetPowerManagementMode)
STUB(nvmlDeviceGetPowerMizerMode_v1)
STUB(nvmlDeviceGetPowerSource)
STUB(nvmlDeviceGetPowerState)
STUB(nvmlDeviceGetPowerUsage)
STUB(nvmlDeviceGetProcessUtilization)
STUB(nvmlDeviceGetProcessesUtilizationInfo)
STUB(nvmlDeviceGetRepairStatus)
STUB(nvmlDeviceGetRetiredPages)
STUB(nvmlDeviceGetRetiredPages_v2)
STUB(nvmlDeviceGetRowRemapperHistogram)
STUB(nvmlDeviceGetRunningProcessDetailList)
STUB(nvmlDeviceGetSamples)
STUB(nvmlDeviceGetSerial)
STUB(nvmlDeviceGetSramEccErrorStatus)
STUB(nvmlDeviceGetSramUniqueUncorrectedEccErrorCounts)
STUB(nvmlDeviceGetSupportedClocksEventReasons)
STUB(nvmlDeviceGetSupportedClocksThrottleReasons)
STUB(nvmlDeviceGetSupportedEventTypes)
STUB(nvmlDeviceGetSupportedGraphicsClocks)
STUB(nvmlDeviceGetSupportedMemoryClocks)
STUB(nvmlDeviceGetSupportedPerformanceStates)
STUB(nvmlDeviceGetSupportedVgpus)
STUB(nvmlDeviceGetTargetFanSpeed)
STUB(nvmlDeviceGetTemperature)
STUB(nvmlDeviceGetTemperatureThreshold)
STUB(nvmlDeviceGetTemperatureV)
STUB(nvmlDeviceGetThermalSettings)
STUB(nvmlDeviceGetTopologyCommonAncestor)
STUB(nvmlDeviceGetTopologyNearestGpus)
STUB(nvmlDeviceGetTotalEnergyConsumption)
STUB(nvmlDeviceGetUtilizationRates)
STUB(nvmlDeviceGetVbiosVersion)
STUB(nvmlDeviceGetVgpuCapabilities)
STUB(nvmlDeviceGetVgpuHeterogeneousMode)
STUB(nvmlDeviceGetVgpuInstancesUtilizationInfo)
STUB(nvmlDeviceGetVgpuMetadata)
STUB(nvmlDeviceGetVgpuProcessUtilization)
STUB(nvmlDeviceGetVgpuProcessesUtilizationInfo)
STUB(nvmlDeviceGetVgpuSchedulerCapabilities)
STUB(nvmlDeviceGetVgpuSchedulerLog)
STUB(nvmlDeviceGetVgpuSchedulerState)
STUB(nvmlDeviceGetVgpuTypeCreatablePlacements)
STUB(nvmlDeviceGetVgpuTypeSupportedPlacements)
STUB(nvmlDeviceGetVgpuUtilization)
STUB(nvmlDeviceGetViolationStatus)
STUB(nvmlDeviceGetVirtualizationMode)
STUB(nvmlDeviceIsMigDeviceHandle)
STUB(nvmlDeviceModifyDrainState)
STUB(nvmlDeviceOnSameBoard)
STUB(nvmlDevicePowerSmoothingActivatePresetProfile)
STUB(nvmlDevicePowerSmoothingSetState)
STUB(nvmlDevicePowerSmoothingUpdatePresetProfileParam)
STUB(nvmlDeviceQueryDrainState)
STUB(nvmlDeviceReadWritePRM_v1)
STUB(nvmlDeviceRegisterEvents)
STUB(nvmlDeviceRemoveGpu)
STUB(nvmlDeviceRemoveGpu_v2)
STUB(nvmlDeviceResetApplicationsClocks)
STUB(nvmlDeviceResetGpuLockedClocks)
STUB(nvmlDeviceResetMemoryLockedClocks)
STUB(nvmlDeviceResetNvLinkErrorCounters)
STUB(nvmlDeviceResetNvLinkUtilizationCounter)
STUB(nvmlDeviceSetAPIRestriction)
STUB(nvmlDeviceSetAccountingMode)
STUB(nvmlDeviceSetApplicationsClocks)
STUB(nvmlDeviceSetAutoBoostedClocksEnabled)
STUB(nvmlDeviceSetClockOffsets)
STUB(nvmlDeviceSetComputeMode)
STUB(nvmlDeviceSetConfComputeUnprotectedMemSize)
STUB(nvmlDeviceSetCpuAffinity)
STUB(nvmlDeviceSetDefaultAutoBoostedClocksEnabled)
STUB(nvmlDeviceSetDefaultFanSpeed_v2)
STUB(nvmlDeviceSetDramEncryptionMode)
STUB(nvmlDeviceSetDriverModel)
STUB(nvmlDeviceSetEccMode)
STUB(nvmlDeviceSetFanControlPolicy)
STUB(nvmlDeviceSetFanSpeed_v2)
STUB(nvmlDeviceSetGpcClkVfOffset)
STUB(nvmlDeviceSetGpuLockedClocks)
STUB(nvmlDeviceSetGpuOperationMode)
STUB(nvmlDeviceSetMemClkVfOffset)
STUB(nvmlDeviceSetMemoryLockedClocks)
STUB(nvmlDeviceSetMigMode)
STUB(nvmlDeviceSetNvLinkDeviceLowPowerThreshold)
STUB(nvmlDeviceSetNvLinkUtilizationControl)
STUB(nvmlDeviceSetNvlinkBwMode)
STUB(nvmlDeviceSetPersistenceMode)
STUB(nvmlDeviceSetPowerManagementLimit)
STUB(nvmlDeviceSetPowerManagementLimit_v2)
STUB(nvmlDeviceSetPowerMizerMode_v1)
STUB(nvmlDeviceSetTemperatureThreshold)
STUB(nvmlDeviceSetVgpuCapabilities)
STUB(nvmlDeviceSetVgpuHeterogeneousMode)
STUB(nvmlDeviceSetVgpuSchedulerState)
STUB(nvmlDeviceSetVirtualizationMode)
STUB(nvmlDeviceValidateInforom)
STUB(nvmlDeviceWorkloadPowerProfileClearRequestedProfiles)
STUB(nvmlDeviceWorkloadPowerProfileGetCurrentProfiles)
STUB(nvmlDeviceWorkloadPowerProfileGetProfilesInfo)
STUB(nvmlDeviceWorkloadPowerProfileSetRequestedProfiles)
STUB(nvmlEventSetCreate)
STUB(nvmlEventSetFree)
STUB(nvmlEventSetWait)
STUB(nvmlEventSetWait_v2)
STUB(nvmlGetExcludedDeviceCount)
STUB(nvmlGetExcludedDeviceInfoByIndex)
STUB(nvmlGetVgpuCompatibility)
STUB(nvmlGetVgpuDriverCapabilities)
STUB(nvmlGetVgpuVersion)
STUB(nvmlGpmMetricsGet)
STUB(nvmlGpmMigSampleGet)
STUB(nvmlGpmQueryDeviceSupport)
STUB(nvmlGpmQueryIfStreamingEnabled)
STUB(nvmlGpmSampleAlloc)
STUB(nvmlGpmSampleFree)
STUB(nvmlGpmSampleGet)
STUB(nvmlGpmSetStreamingEnabled)
STUB(nvmlGpuInstanceCreateComputeInstance)
STUB(nvmlGpuInstanceCreateComputeInstanceWithPlacement)
STUB(nvmlGpuInstanceDestroy)
STUB(nvmlGpuInstanceGetActiveVgpus)
STUB(nvmlGpuInstanceGetComputeInstanceById)
STUB(nvmlGpuInstanceGetComputeInstancePossiblePlacements)
STUB(nvmlGpuInstanceGetComputeInstanceProfileInfo)
STUB(nvmlGpuInstanceGetComputeInstanceProfileInfoV)
STUB(nvmlGpuInstanceGetComputeInstanceRemainingCapacity)
STUB(nvmlGpuInstanceGetComputeInstances)
STUB(nvmlGpuInstanceGetCreatableVgpus)
STUB(nvmlGpuInstanceGetInfo)
STUB(nvmlGpuInstanceGetVgpuHeterogeneousMode)
STUB(nvmlGpuInstanceGetVgpuSchedulerLog)
STUB(nvmlGpuInstanceGetVgpuSchedulerState)
STUB(nvmlGpuInstanceGetVgpuTypeCreatablePlacements)
STUB(nvmlGpuInstanceSetVgpuHeterogeneousMode)
STUB(nvmlGpuInstanceSetVgpuSchedulerState)
STUB(nvmlInit)
STUB(nvmlSetVgpuVersion)
STUB(nvmlSystemEventSetCreate)
STUB(nvmlSystemEventSetFree)
STUB(nvmlSystemEventSetWait)
STUB(nvmlSystemGetConfComputeCapabilities)
STUB(nvmlSystemGetConfComputeGpusReadyState)
STUB(nvmlSystemGetConfComputeKeyRotationThresholdInfo)
STUB(nvmlSystemGetConfComputeSettings)
STUB(nvmlSystemGetConfComputeState)
STUB(nvmlSystemGetCudaDriverVersion)
STUB(nvmlSystemGetCudaDriverVersion_v2)
STUB(nvmlSystemGetDriverBranch)
STUB(nvmlSystemGetHicVersion)
STUB(nvmlSystemGetNVMLVersion)
STUB(nvmlSystemGetNvlinkBwMode)
STUB(nvmlSystemGetProcessName)
STUB(nvmlSystemGetTopologyGpuSet)
STUB(nvmlSystemRegisterEvents)
STUB(nvmlSystemSetConfComputeGpusReadyState)
STUB(nvmlSystemSetConfComputeKeyRotationThresholdInfo)
STUB(nvmlSystemSetNvlinkBwMode)
STUB(nvmlUnitGetCount)
STUB(nvmlUnitGetDevices)
STUB(nvmlUnitGetFanSpeedInfo)
STUB(nvmlUnitGetHandleByIndex)
STUB(nvmlUnitGetLedState)
STUB(nvmlUnitGetPsuInfo)
STUB(nvmlUnitGetTemperature)
STUB(nvmlUnitGetUnitInfo)
STUB(nvmlUnitSetLedState)
STUB(nvmlVgpuInstanceClearAccountingPids)
STUB(nvmlVgpuInstanceGetAccountingMode)
STUB(nvmlVgpuInstanceGetAccountingPids)
STUB(nvmlVgpuInstanceGetAccountingStats)
STUB(nvmlVgpuInstanceGetEccMode)
STUB(nvmlVgpuInstanceGetEncoderCapacity)
STUB(nvmlVgpuInstanceGetEncoderSessions)
STUB(nvmlVgpuInstanceGetEncoderStats)
STUB(nvmlVgpuInstanceGetFBCSessions)
STUB(nvmlVgpuInstanceGetFBCStats)
STUB(nvmlVgpuInstanceGetFbUsage)
STUB(nvmlVgpuInstanceGetFrameRateLimit)
STUB(nvmlVgpuInstanceGetGpuInstanceId)
STUB(nvmlVgpuInstanceGetGpuPciId)
STUB(nvmlVgpuInstanceGetLicenseInfo)
STUB(nvmlVgpuInstanceGetLicenseInfo_v2)
STUB(nvmlVgpuInstanceGetLicenseStatus)
STUB(nvmlVgpuInstanceGetMdevUUID)
STUB(nvmlVgpuInstanceGetMetadata)
STUB(nvmlVgpuInstanceGetPlacementId)
STUB(nvmlVgpuInstanceGetRuntimeStateSize)
STUB(nvmlVgpuInstanceGetType)
STUB(nvmlVgpuInstanceGetUUID)
STUB(nvmlVgpuInstanceGetVmDriverVersion)
STUB(nvmlVgpuInstanceGetVmID)
STUB(nvmlVgpuInstanceSetEncoderCapacity)
STUB(nvmlVgpuTypeGetBAR1Info)
STUB(nvmlVgpuTypeGetCapabilities)
STUB(nvmlVgpuTypeGetClass)
STUB(nvmlVgpuTypeGetDeviceID)
STUB(nvmlVgpuTypeGetFbReservation)
STUB(nvmlVgpuTypeGetFrameRateLimit)
STUB(nvmlVgpuTypeGetFramebufferSize)
STUB(nvmlVgpuTypeGetGpuInstanceProfileId)
STUB(nvmlVgpuTypeGetGspHeapSize)
STUB(nvmlVgpuTypeGetLicense)
STUB(nvmlVgpuTypeGetMaxInstances)
STUB(nvmlVgpuTypeGetMaxInstancesPerGpuInstance)
STUB(nvmlVgpuTypeGetMaxInstancesPerVm)
STUB(nvmlVgpuTypeGetName)
STUB(nvmlVgpuTypeGetNumDisplayHeads)
STUB(nvmlVgpuTypeGetResolution)
