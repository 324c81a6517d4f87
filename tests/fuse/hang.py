#!/usr/bin/python3
"""A FUSE filesystem whose files answer getattr but never answer read: a hung device or network
filesystem as a process reading it sees one (the read waits in the kernel).

    hang.py MOUNTPOINT [NAME...]

Each NAME is a regular file of 4096 bytes in the root of the filesystem. Without names the
MOUNTPOINT must be a regular file and the filesystem is that one file (mounted over it): exactly
that file hangs. Runs in the foreground until killed (SIGKILL ends the readers' wait with an
error) or unmounted. Needs python3-fusepy (or fusepy) and /dev/fuse.
"""
import errno
import stat
import sys
import threading
import time

try:
    from fusepy import FUSE, FuseOSError, Operations  # Debian's python3-fusepy
except ImportError:  # fusepy from PyPI
    from fuse import FUSE, FuseOSError, Operations


class Hang(Operations):
    def __init__(self, names):
        self.names = set(names)
        self.stop = threading.Event()

    def getattr(self, path, fh=None):
        now = time.time()
        if path == "/" and not self.names:
            return dict(st_mode=stat.S_IFREG | 0o644, st_nlink=1, st_size=4096, st_atime=now, st_mtime=now, st_ctime=now)
        if path == "/":
            return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2, st_atime=now, st_mtime=now, st_ctime=now)
        if path[1:] in self.names:
            return dict(st_mode=stat.S_IFREG | 0o644, st_nlink=1, st_size=4096, st_atime=now, st_mtime=now, st_ctime=now)
        raise FuseOSError(errno.ENOENT)

    def readdir(self, path, fh):
        return [".", ".."] + sorted(self.names)

    def open(self, path, flags):
        return 0

    def read(self, path, size, offset, fh):
        # Never answers; the reader waits until it is killed or the filesystem goes away.
        self.stop.wait()
        raise FuseOSError(errno.EIO)


if __name__ == "__main__":
    mnt, names = sys.argv[1], sys.argv[2:]
    print(f"hang.py: serving {names or 'the file itself'} at {mnt}", file=sys.stderr, flush=True)
    FUSE(Hang(names), mnt, foreground=True, nothreads=False, allow_other=True, direct_io=True, nonempty=True)
