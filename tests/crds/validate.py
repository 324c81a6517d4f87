#!/usr/bin/env python3
"""Validates every manifest under packaging/ against its schema, strictly (an unknown field is an
error, as `kubectl apply --validate=strict` makes it):

- built-in kinds (Namespace, DaemonSet, RBAC, ValidatingAdmissionPolicy, ...) with
  kubernetes-validate (PyPI) against Kubernetes KUBERNETES_VERSION's OpenAPI schemas;
- custom resources (Karpenter's NodePool and EC2NodeClass, the Node Readiness Controller's
  NodeReadinessRule, the Prometheus Operator's PodMonitor and PrometheusRule) with jsonschema
  against the openAPIV3Schema of the CRDs saved beside this file (see README.md here).

The CRDs' CEL rules (x-kubernetes-validations) are not evaluated here: agent/tests/it/manifests.rs
evaluates those its CEL library can. Prints one line per document; exits 1 when any fails, 2 when
a document's kind has no schema at all.

  tests/crds/validate.py [FILE...]      # default: every *.yaml under packaging/
"""
import copy
import glob
import json
import os
import subprocess
import sys

import jsonschema
import yaml  # kubernetes-validate depends on PyYAML

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KUBERNETES_VERSION = os.environ.get("KUBERNETES_VERSION", "1.33.0")
# API groups of Kubernetes itself (the core group has no "/" in its apiVersion).
BUILTIN_GROUPS = {
    "apps", "batch", "policy", "autoscaling", "rbac.authorization.k8s.io",
    "admissionregistration.k8s.io", "networking.k8s.io", "storage.k8s.io", "scheduling.k8s.io",
    "node.k8s.io", "resource.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "events.k8s.io",
}


def crd_schemas():
    """(apiVersion, kind) -> JSON schema, from every CRD here."""
    out = {}
    for path in sorted(glob.glob(os.path.join(HERE, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for v in spec["versions"]:
                    if not v.get("served", True):
                        continue
                    key = (f"{spec['group']}/{v['name']}", spec["names"]["kind"])
                    out[key] = (strict(v["schema"]["openAPIV3Schema"]), os.path.basename(path))
    return out


def strict(schema):
    """A structural CRD schema as JSON Schema: int-or-string and preserved unknown fields as the
    API server reads them, every other object closed (an unknown field is an error)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
        embedded = node.pop("x-kubernetes-embedded-resource", False)
        for k in [k for k in node if k.startswith("x-kubernetes-")]:
            node.pop(k)
        props = node.get("properties")
        if isinstance(props, dict):
            for p in props.values():
                walk(p)
            if not preserve and not embedded and "additionalProperties" not in node:
                node["additionalProperties"] = False
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(key, []):
                walk(sub)

    walk(s)
    # Every object has metadata as the API server does (the CRD says only "object").
    s.setdefault("properties", {})["metadata"] = {"type": "object"}
    return s


def documents(files):
    for path in files:
        with open(path) as f:
            for i, doc in enumerate(yaml.safe_load_all(f)):
                if doc:
                    yield path, i, doc


def main(argv):
    files = argv[1:] or sorted(glob.glob(os.path.join(ROOT, "packaging", "**", "*.yaml"), recursive=True))
    schemas = crd_schemas()
    failed = unknown = 0
    builtin = []
    for path, i, doc in documents(files):
        rel = os.path.relpath(path, ROOT)
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = doc.get("metadata", {}).get("name", "?")
        if key in schemas:
            schema, crd = schemas[key]
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
            if errors:
                failed += 1
                for e in errors:
                    where = "/".join(str(p) for p in e.path) or "(top)"
                    print(f"FAIL {rel} {key[1]}/{name} against {crd}: {where}: {e.message}")
            else:
                print(f"ok   {rel} {key[1]}/{name} against {crd} (strict; CEL rules checked in Rust)")
        elif "/" in (key[0] or "") and key[0].split("/")[0] not in BUILTIN_GROUPS:
            unknown += 1
            print(f"FAIL {rel} {key[1]}/{name}: no CRD for {key[0]} {key[1]} under tests/crds")
        else:
            builtin.append((rel, i, key, name, doc))
    # Built-in kinds through kubernetes-validate, one file per document (its report names each).
    if builtin:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            for rel, i, key, name, doc in builtin:
                p = os.path.join(tmp, f"{i}-{key[1]}-{name}.yaml")
                with open(p, "w") as f:
                    yaml.safe_dump(doc, f)
                r = subprocess.run(
                    [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION, p],
                    capture_output=True, text=True,
                )
                text = (r.stdout + r.stderr).strip()
                if r.returncode != 0 or "ERROR" in text or "Couldn't find schema" in text:
                    failed += 1
                    print(f"FAIL {rel} {key[1]}/{name} against Kubernetes {KUBERNETES_VERSION}: {text}")
                else:
                    print(f"ok   {rel} {key[1]}/{name} against Kubernetes {KUBERNETES_VERSION} (kubernetes-validate --strict)")
    if unknown:
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
