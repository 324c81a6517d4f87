#!/usr/bin/env python3
"""Builds a one-layer OCI image archive from Debian's busybox-static, for `ctr images import`.

Usage: make-image.py OUT.tar NAME:TAG

No registry is reachable in the test environment, so the CRI tests build the sandbox image the
node "already has" themselves. The image's entrypoint sleeps (as the pause image's /pause does),
so it serves both as the sandbox image and as the canary container's image; with busybox it can
also run `cat /proc/self/limits` for the tests' own pods.
"""
import hashlib
import io
import json
import sys
import tarfile

BUSYBOX = "/bin/busybox"


def add(tar, name, data=None, mode=0o755, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.type = kind
    info.linkname = link
    info.mtime = 0
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp"]:
            add(tar, d, kind=tarfile.DIRTYPE)
        with open(BUSYBOX, "rb") as f:
            add(tar, "bin/busybox", f.read())
        for tool in ["sh", "cat", "sleep", "grep", "echo"]:
            add(tar, "bin/" + tool, kind=tarfile.SYMTYPE, link="busybox")
    return buf.getvalue()


def blob(tar, data):
    digest = hashlib.sha256(data).hexdigest()
    add(tar, "blobs/sha256/" + digest, data, mode=0o644)
    return "sha256:" + digest, len(data)


def is_static(path):
    """True when the ELF file has no PT_INTERP program header (no dynamic loader)."""
    with open(path, "rb") as f:
        elf = f.read()
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff = int.from_bytes(elf[0x20:0x28], "little")
    phentsize = int.from_bytes(elf[0x36:0x38], "little")
    phnum = int.from_bytes(elf[0x38:0x3A], "little")
    return all(int.from_bytes(elf[phoff + i * phentsize:phoff + i * phentsize + 4], "little") != 3
               for i in range(phnum))


def main():
    out, ref = sys.argv[1], sys.argv[2]
    if not is_static(BUSYBOX):
        sys.exit(f"{BUSYBOX} is not a static binary: install Debian's busybox-static")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(__import__("os").uname().machine, "amd64")
    lay = layer()
    diff_id = "sha256:" + hashlib.sha256(lay).hexdigest()
    config = json.dumps({
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sleep", "3600"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()
    with tarfile.open(out, mode="w") as tar:
        add(tar, "blobs", kind=tarfile.DIRTYPE)
        add(tar, "blobs/sha256", kind=tarfile.DIRTYPE)
        ldig, lsize = blob(tar, lay)
        cdig, csize = blob(tar, config)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cdig, "size": csize},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": ldig, "size": lsize}],
        }).encode()
        mdig, msize = blob(tar, manifest)
        index = json.dumps({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": mdig, "size": msize,
                           "annotations": {"io.containerd.image.name": ref,
                                           "org.opencontainers.image.ref.name": ref.split(":")[-1]}}],
        }).encode()
        add(tar, "index.json", index, mode=0o644)
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', mode=0o644)


if __name__ == "__main__":
    main()
