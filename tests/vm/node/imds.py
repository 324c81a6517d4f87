#!/usr/bin/env python3
"""A fake EC2 instance metadata service (IMDSv2) for the full-node VM, one connection per run.

qemu's user network runs it for each TCP connection the guest opens to 169.254.169.254:80
(`guestfwd=tcp:169.254.169.254:80-cmd:imds.py DIR`), with the connection on stdin/stdout: no
socket is opened on this machine. DIR holds the answers:

  DIR/instance-type      the instance type (meta-data/instance-type)
  DIR/user-data          the userData (latest/user-data); absent: 404, as EC2 answers without one
  DIR/log                one line per request, appended (method, path, status)

As IMDSv2 does: PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds gives a token;
every GET must carry it in X-aws-ec2-metadata-token, else 401; unknown paths are 404.
"""
import os
import sys

TOKEN = "vmtest-imds-token"


def respond(out, status, body=b"", reason=None):
    reasons = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
    head = "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
        status, reason or reasons.get(status, "Error"), len(body))
    out.write(head.encode() + body)
    out.flush()


def main():
    root = sys.argv[1]
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    line = inp.readline().decode("latin-1").strip()
    headers = {}
    while True:
        h = inp.readline()
        if not h or h in (b"\r\n", b"\n"):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0") or 0)
    if length:
        inp.read(length)
    parts = line.split()
    method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("", "")
    status, body = 404, b""
    if method == "PUT" and path == "/latest/api/token":
        status, body = (200, TOKEN.encode()) if "x-aws-ec2-metadata-token-ttl-seconds" in headers else (400, b"")
    elif method != "GET":
        status = 405
    elif headers.get("x-aws-ec2-metadata-token") != TOKEN:
        status = 401
    else:
        files = {"/latest/meta-data/instance-type": "instance-type", "/latest/user-data": "user-data"}
        name = files.get(path)
        if name and os.path.exists(os.path.join(root, name)):
            with open(os.path.join(root, name), "rb") as f:
                status, body = 200, f.read()
    with open(os.path.join(root, "log"), "a") as log:
        log.write("%s %s %d\n" % (method, path, status))
    respond(out, status, body)


if __name__ == "__main__":
    main()
