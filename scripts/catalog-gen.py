#!/usr/bin/env python3
"""Generates agent/data/catalog.toml from Karpenter's instance-types reference and a hand overlay.

  scripts/catalog-gen.py                     # write agent/data/catalog.toml
  scripts/catalog-gen.py --check             # write nothing; exit 1 with a diff when it is stale
  scripts/catalog-gen.py --excerpt FULL.md   # write agent/data/karpenter-instance-types.md from a
                                             # full download of Karpenter's reference

  --karpenter PATH, --overlay PATH, --out PATH point it at other files (the tests use temp copies).

Inputs:
  agent/data/karpenter-instance-types.md  an excerpt of Karpenter's generated reference
      (website/content/en/preview/reference/instance-types.md at the commit named in the overlay's
      [karpenter] table): one `### `<type>`` block per type with its label and resource rows, only
      the types with a GPU, Neuron or EFA resource or a GPU/accelerator count label.
  agent/data/catalog-overlay.toml  what Karpenter does not say (NVSwitch, NVLSM, IMEX, GSP firmware,
      the per-disk instance-store split) and whole entries for types Karpenter lacks; every table
      cites its source.

Exit status: 0 done (or --check: up to date), 1 --check: the committed file differs (diff on
stdout), 2 an input is wrong (each problem on stderr, naming the file, the type and why).
Python 3.11 standard library only.
"""

import argparse
import difflib
import os
import re
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KARPENTER = ROOT / "agent/data/karpenter-instance-types.md"
OVERLAY = ROOT / "agent/data/catalog-overlay.toml"
OUT = ROOT / "agent/data/catalog.toml"

K = "karpenter.k8s.aws/"
# A type is in the catalog when Karpenter gives it one of these resources or labels.
SELECT_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "aws.amazon.com/neuron", "vpc.amazonaws.com/efa")
SELECT_LABELS = (K + "instance-gpu-count", K + "instance-accelerator-count")

# Karpenter's instance-gpu-name (EC2's GpuInfo name, lower-cased) -> the text NVML's device name
# contains as whole words (the nvidia check's gpu_model). Every name must be here: an unknown one
# fails the run instead of being guessed.
GPU_MODELS = {
    "a100": "A100",  # "NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB"
    "a10g": "A10G",  # "NVIDIA A10G"
    "b200": "B200",  # "NVIDIA B200"
    "b300": "B300",  # "NVIDIA B300 SXM6 AC"
    "h100": "H100",  # "NVIDIA H100 80GB HBM3"
    "h200": "H200",  # "NVIDIA H200"
    "l4": "L4",  # "NVIDIA L4"
    "l40s": "L40S",  # "NVIDIA L40S"
    "rtx-pro-4500": "RTX PRO 4500",  # "NVIDIA RTX PRO 4500 Blackwell Server Edition"
    "rtx-pro-server-6000": "RTX PRO 6000",  # "NVIDIA RTX PRO 6000 Blackwell Server Edition"
    "t4": "T4",  # "Tesla T4"
    "t4g": "T4G",  # "NVIDIA T4G"
    "v100": "V100",  # "Tesla V100-SXM2-32GB"
}
# Manufacturers as other_accelerator text spells them (Karpenter lower-cases them).
MANUFACTURERS = {"amd": "AMD", "aws": "AWS", "habana": "Habana", "nvidia": "NVIDIA",
                 "qualcomm": "Qualcomm", "xilinx": "Xilinx"}
ARCHES = ("amd64", "arm64")
FIELDS = ("arch", "gpus", "gpu_model", "gpu_memory_mib", "gpu_fraction", "gpu_vendor",
          "other_accelerator", "nvswitch", "nvlsm", "imex", "gsp_off", "efa", "neuron_devices",
          "instance_store_gb", "instance_store_disks", "instance_store_disk_gb", "source")
STRINGS = ("arch", "gpu_model", "gpu_vendor", "other_accelerator", "source")
BOOLS = ("gpu_fraction", "nvswitch", "nvlsm", "imex", "gsp_off")
# Keys an overlay [families.X] or [types.X] table may set.
FLAG_KEYS = ("nvswitch", "nvlsm", "imex", "gsp_off")
SPLIT_KEYS = ("instance_store_disks", "instance_store_disk_gb")
OVERLAY_KEYS = FLAG_KEYS + SPLIT_KEYS + ("source",)
# How far the per-disk split may be from Karpenter's total (GB rounding on AWS's side).
SPLIT_TOLERANCE = 0.05

HEADING = re.compile(r"^### `([^`]+)`\s*$")
ROW = re.compile(r"^ \|([^|]*)\|([^|]*)\|\s*$")
TAG = re.compile(r"\[([a-z][a-z0-9-]*)\]")


class Bad(Exception):
    """Input problems: each a line naming the file, the type and what is wrong."""

    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def rel(p):
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def parse_karpenter(text, path):
    """Every `### `type`` block: {type: {"labels", "resources", "block" (its lines, verbatim)}}."""
    types, problems, cur, section = {}, [], None, None
    for n, line in enumerate(text.splitlines(), 1):
        m = HEADING.match(line)
        if m:
            name = m.group(1)
            if name in types:
                problems.append(f"{rel(path)}:{n}: {name}: listed twice")
            cur = types.setdefault(name, {"labels": {}, "resources": {}, "block": [], "line": n})
            cur["block"].append(line)
            section = None
            continue
        if line.startswith("## ") or line.startswith("# ") or (line.startswith("### ") and not m):
            cur, section = None, None
            continue
        if cur is None:
            continue
        cur["block"].append(line)
        if line.startswith("#### "):
            section = {"#### Labels": "labels", "#### Resources": "resources"}.get(line.strip())
            continue
        r = ROW.match(line)
        if not r or section is None:
            continue
        key, value = r.group(1).strip(), r.group(2).strip()
        if key in ("Label", "Resource") or set(key) <= {"-"}:
            continue
        cur[section][key] = value
    for name, t in types.items():
        while t["block"] and not t["block"][-1].strip():
            t["block"].pop()
        said = t["labels"].get("node.kubernetes.io/instance-type")
        if said != name:
            problems.append(f"{rel(path)}:{t['line']}: {name}: its node.kubernetes.io/instance-type label is {said!r}")
    if problems:
        raise Bad(problems)
    if not types:
        raise Bad([f"{rel(path)}: no `### `<type>`` blocks: not Karpenter's instance-types reference"])
    return types


def selected(t):
    return any(k in t["resources"] for k in SELECT_RESOURCES) or any(k in t["labels"] for k in SELECT_LABELS)


def excerpt_commit(text):
    m = re.search(r"^commit: ([0-9a-f]{40})$", text, re.M)
    return m.group(1) if m else None


def load_overlay(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise Bad([f"{rel(path)}: {e}"])


def integer(t, table, key, path, name, problems):
    v = t[table].get(key)
    if v is None:
        return None
    try:
        n = int(v)
    except ValueError:
        problems.append(f"{rel(path)}: {name}: {key} = {v!r} is not a whole number")
        return None
    if n < 0:
        problems.append(f"{rel(path)}: {name}: {key} = {v!r} is negative")
    return n


def from_karpenter(name, t, path, short, problems):
    """An entry from Karpenter's labels and resources, and the names of the fields it gave."""
    lab, res = t["labels"], t["resources"]
    num = lambda table, key: integer(t, table, key, path, name, problems)
    e = {"arch": lab.get("kubernetes.io/arch", ""), "gpus": 0, "gpu_model": "", "gpu_memory_mib": 0,
         "gpu_fraction": False, "gpu_vendor": "", "other_accelerator": "", "nvswitch": False,
         "nvlsm": False, "imex": False, "gsp_off": False, "efa": 0, "neuron_devices": 0,
         "instance_store_gb": 0, "instance_store_disks": 0, "instance_store_disk_gb": None}
    given = ["arch"]
    if e["arch"] not in ARCHES:
        problems.append(f"{rel(path)}: {name}: kubernetes.io/arch {e['arch']!r} is not one of {', '.join(ARCHES)}")
    other = []
    mfr = lab.get(K + "instance-gpu-manufacturer")
    gpu_name = lab.get(K + "instance-gpu-name")
    count = num("labels", K + "instance-gpu-count")
    memory = num("labels", K + "instance-gpu-memory") or 0
    if (mfr is None) != (gpu_name is None):
        problems.append(f"{rel(path)}: {name}: a GPU manufacturer without a GPU name, or a name without a manufacturer")
    if mfr == "nvidia":
        model = GPU_MODELS.get(gpu_name)
        if model is None:
            problems.append(
                f"{rel(path)}: {name}: unknown GPU name {gpu_name!r}: add it to GPU_MODELS in "
                "scripts/catalog-gen.py with the text NVML's device name contains")
            model = ""
        resource = num("resources", "nvidia.com/gpu")
        gpus = resource if resource is not None else (count or 0)
        if resource is not None and count is not None and resource != count:
            problems.append(f"{rel(path)}: {name}: nvidia.com/gpu {resource} but instance-gpu-count {count}")
        e.update(gpus=gpus, gpu_model=model, gpu_memory_mib=memory, gpu_vendor="nvidia")
        if gpus == 0:
            # A fractional GPU (g6f, gr6f): a slice of one, which must never be demanded whole.
            e["gpu_fraction"] = True
            given += ["gpu_fraction", "gpu_model", "gpu_memory_mib", "gpu_vendor"]
        else:
            given += ["gpus", "gpu_model", "gpu_memory_mib", "gpu_vendor"]
    elif mfr is not None:
        if mfr not in MANUFACTURERS:
            problems.append(f"{rel(path)}: {name}: unknown GPU manufacturer {mfr!r}: add it to MANUFACTURERS")
        if mfr != "amd":
            problems.append(f"{rel(path)}: {name}: GPU manufacturer {mfr!r}: only nvidia and amd are known")
        resource = num("resources", "amd.com/gpu")
        n = resource if resource is not None else (count or 0)
        e["gpu_vendor"] = mfr
        other.append(f"{n} x {MANUFACTURERS.get(mfr, mfr)} {gpu_name} {memory} MiB")
        given += ["gpu_vendor"]
    acc_mfr = lab.get(K + "instance-accelerator-manufacturer")
    acc_name = lab.get(K + "instance-accelerator-name")
    acc_count = num("labels", K + "instance-accelerator-count")
    if acc_name is not None or acc_count is not None:
        if acc_mfr not in MANUFACTURERS:
            problems.append(f"{rel(path)}: {name}: unknown accelerator manufacturer {acc_mfr!r}: add it to MANUFACTURERS")
        other.append(f"{acc_count} x {MANUFACTURERS.get(acc_mfr, acc_mfr)} {acc_name}")
    if other:
        e["other_accelerator"] = "; ".join(other)
        given.append("other_accelerator")
    efa = num("resources", "vpc.amazonaws.com/efa")
    e["efa"] = efa or 0
    given.append("efa")
    neuron = num("resources", "aws.amazon.com/neuron")
    if neuron:
        e["neuron_devices"] = neuron
        given.append("neuron_devices")
    nvme = num("labels", K + "instance-local-nvme")
    e["instance_store_gb"] = nvme or 0
    # No instance-local-nvme label: no NVMe instance store (Some(0) disks). With one: the total,
    # and the split stays unknown unless the overlay gives it.
    e["instance_store_disks"] = None if nvme else 0
    given.append("instance_store_gb")
    return e, f"karpenter {short} ({', '.join(given)})"


def family(t):
    return t.split(".", 1)[0]


def check_table(path, where, table, allowed, problems):
    for k in table:
        if k not in allowed:
            problems.append(f"{rel(path)}: {where}: unknown key {k!r} (allowed: {', '.join(allowed)})")
    if not isinstance(table.get("source"), str) or not table.get("source").strip():
        problems.append(f"{rel(path)}: {where}: no source: say where each value comes from")
    for k in FLAG_KEYS:
        if k in table and not isinstance(table[k], bool):
            problems.append(f"{rel(path)}: {where}: {k} must be true or false")
    for k in SPLIT_KEYS:
        if k in table and (isinstance(table[k], bool) or not isinstance(table[k], int) or table[k] <= 0):
            problems.append(f"{rel(path)}: {where}: {k} must be a positive whole number")
    if ("instance_store_disks" in table) != ("instance_store_disk_gb" in table):
        problems.append(f"{rel(path)}: {where}: instance_store_disks and instance_store_disk_gb go together")


def describe_keys(table):
    keys = [k for k in FLAG_KEYS if k in table]
    if "instance_store_disks" in table:
        keys.append(f"instance-store split {table['instance_store_disks']} x {table['instance_store_disk_gb']} GB")
    return keys


def validate(name, e, path, problems):
    """The rules an entry must keep, whatever gave its values (build.rs checks them again)."""
    def need(ok, why):
        if not ok:
            problems.append(f"{rel(path)}: {name}: {why}")
    nvidia = e["gpu_vendor"] == "nvidia"
    need(e["arch"] in ARCHES, f"arch {e['arch']!r} is not one of {', '.join(ARCHES)}")
    need(not e["nvswitch"] or e["gpus"] == 8, f"nvswitch without 8 GPUs (it has {e['gpus']})")
    need(not e["nvlsm"] or e["nvswitch"], "nvlsm without nvswitch")
    need(not e["imex"] or (nvidia and e["gpus"] > 0), "imex on a type without NVIDIA GPUs")
    need(not e["gsp_off"] or nvidia, "gsp_off on a type without NVIDIA GPUs")
    need(not e["gpu_fraction"] or e["gpus"] == 0, "gpu_fraction with whole GPUs")
    need(bool(e["gpu_model"]) == (e["gpus"] > 0 or e["gpu_fraction"]),
         "gpu_model must be set exactly when there are NVIDIA GPUs (whole or fractional)")
    need(not (e["gpus"] > 0 or e["gpu_fraction"]) or nvidia, "NVIDIA GPUs without gpu_vendor = \"nvidia\"")
    need(e["gpu_memory_mib"] == 0 or bool(e["gpu_model"]), "gpu_memory_mib without a GPU model")
    disks, size, total = e["instance_store_disks"], e["instance_store_disk_gb"], e["instance_store_gb"]
    if disks == 0:
        need(total == 0 and size is None, f"no instance-store disks but {total} GB of instance store")
    elif disks is not None:
        need(size is not None and size > 0, "instance_store_disks without instance_store_disk_gb")
        if size:
            need(abs(disks * size - total) <= total * SPLIT_TOLERANCE,
                 f"instance-store split {disks} x {size} GB = {disks * size} GB is not the "
                 f"{total} GB total (more than {SPLIT_TOLERANCE:.0%} apart)")
    else:
        need(size is None, "instance_store_disk_gb without instance_store_disks")
    need(e["efa"] is None or e["efa"] <= 32, "more than 32 EFA")
    need(e["gpus"] <= 16 and e["neuron_devices"] <= 32, "implausible counts")
    for k in ("gpu_model", "other_accelerator", "source"):
        need(not any(c in e[k] for c in '"\\\n'), f"{k} must not contain quotes, backslashes or newlines")


def generate(karpenter_path, overlay_path):
    """The catalog's text, or Bad with every problem found."""
    text = Path(karpenter_path).read_text()
    overlay = load_overlay(overlay_path)
    problems = []
    meta = overlay.get("karpenter", {})
    commit = meta.get("commit", "")
    if not re.fullmatch(r"[0-9a-f]{40}", str(commit)):
        raise Bad([f"{rel(overlay_path)}: [karpenter] commit must be the 40-digit commit of the reference"])
    said = excerpt_commit(text)
    if said is not None and said != commit:
        problems.append(f"{rel(karpenter_path)}: excerpt of commit {said}, but {rel(overlay_path)} [karpenter] says {commit}")
    short = commit[:8]
    sources = overlay.get("sources", {})
    types = {n: t for n, t in parse_karpenter(text, karpenter_path).items() if selected(t)}
    families = {family(n) for n in types}
    for section in overlay:
        if section not in ("karpenter", "sources", "families", "types", "entries"):
            problems.append(f"{rel(overlay_path)}: unknown table [{section}]")
    fam_tables = overlay.get("families", {})
    type_tables = overlay.get("types", {})
    entry_tables = overlay.get("entries", {})
    for f, table in fam_tables.items():
        if f not in families:
            problems.append(f"{rel(overlay_path)}: families.{f}: no type of that family in Karpenter's reference (typo?)")
        check_table(overlay_path, f"families.{f}", table, FLAG_KEYS + ("source",), problems)
    for n, table in type_tables.items():
        if n not in types:
            problems.append(
                f"{rel(overlay_path)}: types.{n}: no such type in Karpenter's reference (typo?); "
                "a type Karpenter lacks is a whole [entries] table")
        check_table(overlay_path, f"types.{n}", table, OVERLAY_KEYS, problems)
    if problems:
        # Values of the wrong kind would only confuse what follows.
        raise Bad(problems)
    entries = {}
    for n, t in sorted(types.items()):
        e, src = from_karpenter(n, t, karpenter_path, short, problems)
        parts = [src]
        for where, table in ((f"{family(n)}", fam_tables.get(family(n))), (n, type_tables.get(n))):
            if not table:
                continue
            # A type's own table wins over its family's: name only what each table decided.
            effective = {k: v for k, v in table.items()
                         if k == "source" or where == n or k not in type_tables.get(n, {})}
            for k in FLAG_KEYS + SPLIT_KEYS:
                if k in effective:
                    e[k] = effective[k]
            keys = describe_keys(effective)
            if keys:
                parts.append(f"overlay {where}: {', '.join(keys)} ({table.get('source', '').strip()})")
        if e["instance_store_disks"] is None:
            parts.append("instance-store split unknown")
        e["source"] = "; ".join(parts)
        validate(n, e, overlay_path, problems)
        entries[n] = e
    for n, table in entry_tables.items():
        where = f"entries.{n}"
        if n in types:
            problems.append(f"{rel(overlay_path)}: {where}: Karpenter's reference has this type: overlay it in [types]")
            continue
        if not re.fullmatch(r"[a-z0-9-]+\.[a-z0-9-]+", n):
            problems.append(f"{rel(overlay_path)}: {where}: not an instance type (family.size)")
        before = len(problems)
        for k, v in table.items():
            if k not in FIELDS:
                problems.append(f"{rel(overlay_path)}: {where}: unknown key {k!r}")
            elif k in STRINGS and not isinstance(v, str):
                problems.append(f"{rel(overlay_path)}: {where}: {k} must be a string")
            elif k in BOOLS and not isinstance(v, bool):
                problems.append(f"{rel(overlay_path)}: {where}: {k} must be true or false")
            elif k not in STRINGS + BOOLS and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                problems.append(f"{rel(overlay_path)}: {where}: {k} must be a whole number")
        required = ("arch", "gpus", "gpu_vendor", "neuron_devices", "source")
        for k in required:
            if k not in table:
                problems.append(f"{rel(overlay_path)}: {where}: {k} is required (an entry Karpenter lacks is whole)")
        if len(problems) > before:
            continue
        e = {"gpu_model": "", "gpu_memory_mib": 0, "gpu_fraction": False, "other_accelerator": "",
             "nvswitch": False, "nvlsm": False, "imex": False, "gsp_off": False, "efa": None,
             "instance_store_gb": 0, "instance_store_disks": None, "instance_store_disk_gb": None}
        e.update(table)
        e["source"] = f"overlay {n} (not in Karpenter's reference at {short}): {table['source'].strip()}"
        validate(n, e, overlay_path, problems)
        entries[n] = e
    # Every [tag] a source cites is defined in [sources].
    for n, e in entries.items():
        for tag in TAG.findall(e["source"]):
            if tag not in sources:
                problems.append(f"{rel(overlay_path)}: {n}: its source cites [{tag}], which [sources] does not define")
    if problems:
        raise Bad(sorted(set(problems), key=problems.index))
    return render(entries, meta, sources)


def toml_str(s):
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return toml_str(v)


def render(entries, meta, sources):
    commit = meta["commit"]
    lines = [
        "# nodeprep instance-type catalog: generated by scripts/catalog-gen.py: edit catalog-overlay.toml instead",
        "# (or refresh karpenter-instance-types.md with `scripts/catalog-gen.py --excerpt FULL.md`), then run",
        "# scripts/catalog-gen.py. build.rs compiles this file into the agent; a broken entry fails the build.",
        "#",
        "# One [types.\"<instance type>\"] table per EC2 type with a GPU, Neuron device, other accelerator or",
        "# EFA: the hardware a healthy, fully configured node of that type must show. Types not listed are",
        "# checked for consistency only. The config's [expect] keys (gpus, gpu_model, nvswitch, efa,",
        "# instance_store_disks) override an entry for one node.",
        "#",
        "# Fields (a field absent from an entry is unknown):",
        "#   arch                    kubernetes.io/arch: amd64 or arm64.",
        "#   gpus                    whole NVIDIA GPUs (nvidia.com/gpu); 0 for a fractional GPU, which is never",
        "#                           demanded whole.",
        "#   gpu_model               text NVML's device name contains as whole words, e.g. \"H100\" in",
        "#                           \"NVIDIA H100 80GB HBM3\"; set for whole and fractional NVIDIA GPUs.",
        "#   gpu_memory_mib          per GPU (per slice when fractional), MiB, as EC2 reports it (NVML shows",
        "#                           a little less); 0 = unknown.",
        "#   gpu_fraction            a slice of one GPU (g6f, gr6f): gpus = 0 and gpu_model is the slice's GPU.",
        "#   gpu_vendor              \"nvidia\", \"amd\" (no NVIDIA check; the GPUs are in other_accelerator) or \"\".",
        "#   other_accelerator       what else the type has, as text: AMD GPUs, Neuron, Qualcomm accelerators.",
        "#   nvswitch                NVSwitch fabric (8-GPU HGX): fabric manager must run and the fabric be complete.",
        "#   nvlsm                   the NVLink subnet manager must run too (Blackwell HGX).",
        "#   imex                    multi-node NVLink through the IMEX service (GB200 racks).",
        "#   gsp_off                 the driver runs with GSP firmware off (NVreg_EnableGpuFirmware=0).",
        "#   efa                     the most EFA interfaces the type supports (MaximumEfaInterfaces); 0 = none.",
        "#   neuron_devices          aws.amazon.com/neuron devices (Trainium, Inferentia); no NVIDIA check.",
        "#   instance_store_gb       NVMe instance store in total, GB (instance-local-nvme); 0 with",
        "#                           instance_store_disks = 0: none; 0 without it: unknown.",
        "#   instance_store_disks    NVMe instance-store disks; absent when the split is unknown.",
        "#   instance_store_disk_gb  per disk, GB as AWS lists it (\"8 x 3800 GB\"); absent with the split.",
        "#   source                  where each value came from: karpenter <commit> (the fields it gave),",
        "#                           overlay <family or type>: the keys the overlay set (its citation).",
        "#",
        "# Sources:",
        f"#   karpenter  github.com/{meta.get('repo', '?')} {meta.get('path', '?')}",
        f"#              at {commit} ({meta.get('date', '?')}), excerpt in karpenter-instance-types.md",
    ]
    for tag, text in sources.items():
        lines += textwrap.wrap(f"[{tag}] {text}", width=100, initial_indent="#   ",
                               subsequent_indent="#              ", break_long_words=False,
                               break_on_hyphens=False)
    lines.append("")
    for n in sorted(entries):
        e = entries[n]
        lines.append(f"[types.{toml_str(n)}]")
        for k in FIELDS:
            if e.get(k) is not None:
                lines.append(f"{k} = {toml_value(e[k])}")
        lines.append("")
    return "\n".join(lines)


def excerpt(full_path, overlay_path):
    text = Path(full_path).read_text()
    meta = load_overlay(overlay_path).get("karpenter", {})
    types = parse_karpenter(text, full_path)
    said = excerpt_commit(text)
    if said is not None and said != meta.get("commit"):
        raise Bad([f"{rel(full_path)}: excerpt of commit {said}, but {rel(overlay_path)} [karpenter] says {meta.get('commit')}"])
    head = [
        "<!--",
        "Excerpt of Karpenter's generated instance-types reference, the input of scripts/catalog-gen.py.",
        f"source: github.com/{meta.get('repo', '?')}",
        f"path: {meta.get('path', '?')}",
        f"commit: {meta.get('commit', '?')}",
        f"date: {meta.get('date', '?')}",
        "excerpt: only the types with nvidia.com/gpu, amd.com/gpu, aws.amazon.com/neuron,",
        "vpc.amazonaws.com/efa resources or karpenter.k8s.aws/instance-gpu-count /",
        "instance-accelerator-count labels, each block verbatim, in the reference's order (its",
        "\"## <family> Family\" headings dropped); regenerate with scripts/catalog-gen.py --excerpt FULL.md",
        "-->",
    ]
    body = []
    for t in types.values():
        if selected(t):
            body.extend(t["block"])
    return "\n".join(head + body) + "\n", sum(1 for t in types.values() if selected(t))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 with a diff when --out is stale")
    ap.add_argument("--excerpt", metavar="FULL.md", help="write --karpenter from a full download of the reference")
    ap.add_argument("--karpenter", default=KARPENTER, help=f"the excerpt (default {rel(KARPENTER)})")
    ap.add_argument("--overlay", default=OVERLAY, help=f"the overlay (default {rel(OVERLAY)})")
    ap.add_argument("--out", default=OUT, help=f"the catalog (default {rel(OUT)})")
    a = ap.parse_args()
    try:
        if a.excerpt:
            text, n = excerpt(a.excerpt, a.overlay)
            if a.check:
                ap.error("--excerpt writes the excerpt; --check compares the catalog")
            Path(a.karpenter).write_text(text)
            print(f"catalog-gen: {rel(a.karpenter)}: {n} types from {a.excerpt}", file=sys.stderr)
            return 0
        text = generate(a.karpenter, a.overlay)
    except Bad as b:
        for p in b.problems:
            print(f"catalog-gen: {p}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"catalog-gen: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    if a.check:
        old = out.read_text() if out.exists() else ""
        if old == text:
            return 0
        try:
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(True), text.splitlines(True), f"{rel(out)} (committed)", f"{rel(out)} (generated)"))
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader stopped (| head): the status still says stale (as Python's docs advise).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

        print(f"catalog-gen: {rel(out)} is not what scripts/catalog-gen.py writes: run it and commit the result",
              file=sys.stderr)
        return 1
    out.write_text(text)
    print(f"catalog-gen: {rel(out)}: {text.count(chr(10) + '[types.')} types", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
