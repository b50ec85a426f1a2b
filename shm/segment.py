"""POSIX shared-memory segments: create exclusively (mode 0600 unless told,
whatever the umask), allocated at creation (``posix_fallocate``: a full
``/dev/shm`` is an error here, never a SIGBUS later), attach, close (unmap)
separately from unlink.  Only the creator or an explicit destroy unlinks;
attachers never do.  Only the name is pickled.

Creation order: the object is created empty, its mode set, then its size
allocated in one step; an attacher that opens it before that waits (with a
deadline) for the size, so it never sees an unfinished segment.  An attacher
that passes ``mode`` also checks the object's owner and mode (``check_owner``).
"""
import errno
import mmap
import os
import pwd
import re
import sys
import time

import posix_ipc

from .errors import ConfigError, CorruptSegmentError, InvalidNameError, NamespaceError

_NAME_RE = re.compile(r"^/[A-Za-z0-9._-]{1,200}$")
SHM_DIR = "/dev/shm"
ATTACH_WAIT = 2.0  # seconds an attacher waits for a creator to finish
_HINT = (". If it is not yours, use another namespace (shm.namespace); to share one on purpose, its creator and "
         "every client set the same shm.mode (e.g. 0660 for a group)")


def check_name(name):
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidNameError(
            "bad segment name %r: use '/' followed by 1-200 of [A-Za-z0-9._-]" % (name,))
    return name


def shm_free():
    """Bytes free in /dev/shm for this user."""
    st = os.statvfs(SHM_DIR)
    return st.f_bavail * st.f_frsize


def mem_available():
    """Bytes of memory the kernel can give without swapping (MemAvailable), or None if unknown."""
    import psutil  # a runtime dependency; imported on the first segment made
    try:
        return psutil.virtual_memory().available
    except (OSError, RuntimeError):
        return None


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1024.0


def _user(uid):
    try:
        return "user %s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except KeyError:
        return "uid %d" % uid


def owner_problem(st, mode):
    """Why a file with stat *st* is not one this user may use as a private
    (mode 0600) or deliberately shared (*mode* with group/other bits) object
    of ours; None if it is fine.  Private: ours, exactly *mode*.  Shared:
    exactly *mode* (and, for a group-only mode, one of our groups)."""
    actual = st.st_mode & 0o7777
    me = os.geteuid()
    if actual != mode:
        pass
    elif st.st_uid == me:
        return None
    elif mode & 0o007:
        return None
    elif mode & 0o070 and (st.st_gid == os.getegid() or st.st_gid in os.getgroups()):
        return None
    return "is owned by %s with mode %04o, but this client accepts only %s" % (
        _user(st.st_uid), actual, "its own user's (%s), mode %04o" % (_user(me), mode) if not mode & 0o077
        else "mode %04o%s" % (mode, " in one of its groups" if not mode & 0o007 else ""))


class MissingSegmentError(NamespaceError):
    """Segment.attach: no such segment."""


def _map_flags(populate):
    """mmap flags: shared, and with *populate* every page mapped at once (MAP_POPULATE, where the
    platform has it): the first touch of each page of a ring otherwise takes a page fault - a
    microsecond or two - in the middle of an append or a read."""
    if not populate:
        return mmap.MAP_SHARED
    # (Python 3.9 has no mmap.MAP_POPULATE; Linux's value is 0x8000 on every architecture; elsewhere: nothing)
    return mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0x8000 if sys.platform.startswith("linux") else 0)


class Segment:
    """One mapped POSIX shm object."""

    __slots__ = ("name", "size", "mm", "owner", "ino", "_closed")

    def __init__(self, name, mm, size, owner, ino=0):
        self.name, self.mm, self.size, self.owner, self.ino = name, mm, size, owner, ino
        self._closed = False

    @classmethod
    def create(cls, name, size, mode=0o600, populate=False):
        check_name(name)
        if size <= 0:
            raise ValueError("segment size must be positive, got %d" % size)
        # before any page is taken: /dev/shm may be as large as memory itself, and filling it
        # to its end then wakes the OOM killer instead of failing with ENOSPC
        free, avail = shm_free(), mem_available()
        if size > free or (avail is not None and size > avail):
            raise ConfigError("not enough shared memory: %s needed, %s free in %s%s" % (
                human(size), human(free), SHM_DIR, "" if avail is None else ", %s of memory available" % human(avail)))
        try:
            shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=mode, size=0)
        except posix_ipc.ExistentialError as exc:
            raise NamespaceError(
                "shared memory %s already exists: pick another name, or remove the stale one "
                "(`shmbroker destroy` for a namespace)" % name) from exc
        try:
            os.fchmod(shm.fd, mode)  # whatever the umask; before the size, which attachers wait for
            try:
                os.posix_fallocate(shm.fd, 0, size)  # the pages exist now: no SIGBUS when /dev/shm fills
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
                    raise
                raise ConfigError("not enough shared memory: %s needed, %s free in %s"
                                  % (human(size), human(shm_free()), SHM_DIR)) from None
            ino = os.fstat(shm.fd).st_ino
            mm = mmap.mmap(shm.fd, size, flags=_map_flags(populate))
        except BaseException:
            shm.close_fd()
            unlink(name)
            raise
        shm.close_fd()
        return cls(name, mm, size, True, ino)

    @classmethod
    def attach(cls, name, mode=None, what=None, populate=False):
        """Map an existing segment.  With *mode*, refuse (NamespaceError) one
        whose owner or mode is not what a client with that mode accepts
        (``owner_problem``); *what* names it in that error.  *populate*: map
        every page now (MAP_POPULATE), so no access faults later."""
        check_name(name)
        end = time.monotonic() + ATTACH_WAIT
        while True:
            try:
                shm = posix_ipc.SharedMemory(name)
                break
            except posix_ipc.ExistentialError as exc:
                raise MissingSegmentError(
                    "shared memory %s does not exist: create it first (or check the namespace name)" % name
                ) from exc
            except posix_ipc.PermissionsError:
                try:
                    st = os.stat(SHM_DIR + name)
                except FileNotFoundError:
                    continue  # removed meanwhile: the next open says so
                if st.st_size == 0 and time.monotonic() < end:
                    time.sleep(0.001)  # a creator still setting its mode
                    continue
                problem = owner_problem(st, 0o600 if mode is None else mode) or "cannot be opened: permission denied"
                raise NamespaceError("%s %s%s" % (what or "shared memory " + name, problem, _HINT)) from None
        try:
            while True:
                st = os.fstat(shm.fd)
                if st.st_size > 0:
                    break
                if time.monotonic() > end:  # a creator that died half way, or truncated
                    raise CorruptSegmentError("segment %s is empty (creation unfinished or truncated): remove it "
                                              "(`shmbroker destroy` for a namespace)" % name)
                time.sleep(0.001)  # the creator sets the mode, then the size, in one step each
            if mode is not None:
                problem = owner_problem(st, mode)
                if problem:
                    raise NamespaceError("%s %s%s" % (what or "shared memory " + name, problem, _HINT))
            mm = mmap.mmap(shm.fd, st.st_size, flags=_map_flags(populate))
        finally:
            shm.close_fd()
        return cls(name, mm, st.st_size, False, st.st_ino)

    def close(self):
        if not self._closed:
            self._closed = True
            try:
                self.mm.close()
            except BufferError:
                # memoryviews of the mapping are alive (LogReader.poll_view's): dropped here, the mapping
                # is unmapped when the last of them goes, never under them
                self.mm = None

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
    return os.path.exists(SHM_DIR + "/" + name.lstrip("/"))
