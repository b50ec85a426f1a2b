"""POSIX shared-memory segments: create exclusively (mode 0600), attach,
close (unmap) separately from unlink.  Only the creator or an explicit
destroy unlinks; attachers never do.  Only the name is pickled."""
import mmap
import os
import re

import posix_ipc

from .errors import CorruptSegmentError, InvalidNameError, NamespaceError

_NAME_RE = re.compile(r"^/[A-Za-z0-9._-]{1,200}$")


def check_name(name):
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidNameError(
            "bad segment name %r: use '/' followed by 1-200 of [A-Za-z0-9._-]" % (name,))
    return name


class Segment:
    """One mapped POSIX shm object."""

    __slots__ = ("name", "size", "mm", "owner", "_closed")

    def __init__(self, name, mm, size, owner):
        self.name, self.mm, self.size, self.owner = name, mm, size, owner
        self._closed = False

    @classmethod
    def create(cls, name, size, mode=0o600):
        check_name(name)
        if size <= 0:
            raise ValueError("segment size must be positive, got %d" % size)
        try:
            shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=mode, size=size)
        except posix_ipc.ExistentialError as exc:
            raise NamespaceError(
                "shared memory %s already exists: pick another name, or remove the stale one "
                "(`shmbroker destroy` for a namespace)" % name) from exc
        try:
            mm = mmap.mmap(shm.fd, size)
        except BaseException:
            shm.close_fd()
            posix_ipc.unlink_shared_memory(name)
            raise
        shm.close_fd()
        return cls(name, mm, size, True)

    @classmethod
    def attach(cls, name):
        check_name(name)
        try:
            shm = posix_ipc.SharedMemory(name)
        except posix_ipc.ExistentialError as exc:
            raise NamespaceError(
                "shared memory %s does not exist: create it first (or check the namespace name)" % name
            ) from exc
        try:
            size = shm.size
            if size <= 0:
                raise CorruptSegmentError("segment %s is empty (creation unfinished or truncated)" % name)
            mm = mmap.mmap(shm.fd, size)
        finally:
            shm.close_fd()
        return cls(name, mm, size, False)

    def close(self):
        if not self._closed:
            self._closed = True
            self.mm.close()

    def unlink(self):
        unlink(self.name)

    def __reduce__(self):
        return (Segment.attach, (self.name,))


def unlink(name):
    """Remove a segment by name; missing is fine (idempotent destroy)."""
    try:
        posix_ipc.unlink_shared_memory(name)
    except posix_ipc.ExistentialError:
        pass


def exists(name):
    return os.path.exists("/dev/shm/" + name.lstrip("/"))
