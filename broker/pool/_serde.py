"""Objects to queue records and back: pickle protocol 5 with out-of-band
buffers.

A record is ``HEADER | buffer table | pickle stream | inline buffers``; a
bytes object that fits the ring is its own record, unpickled: ``RAW HEADER |
its bytes`` (ext/fastqueue.c writes and reads both forms too).
Buffers (numpy arrays, bytearrays, anything exposing ``__reduce_ex__(5)``
buffers) are never pickled into a bytes copy: small ones (< ``BIG``) follow
the stream in the record; big ones are written once into a segment of their
own, named ``<prefix>.b<pid>_<n>``, which the getter maps without a copy (the
object it gets views the mapping).  Given the ring's largest record
(``limit``), the largest other buffers, and then the pickle stream itself (a
100 MB bytes object, say), move to segments too until the record fits.  The
segments go when the item is done (``discard``), or with the queue (every
name starts with its prefix).

    data, segs = dumps(obj, prefix, limit=max_record)  # segs: segment names
    obj, segs = loads(data)              # ... to discard() once done
"""
import errno
import functools
import itertools
import os
import pickle
import struct

from shm.errors import ConfigError, NamespaceError
from shm.segment import SHM_DIR, Segment, human, shm_free, unlink

BIG = 1 << 20  # buffers at least this large travel in a segment of their own
_HDR = struct.Struct("<BBHI")  # magic, version, number of buffers, pickle length
_BUF = struct.Struct("<BQ")    # kind (0 inline, 1 segment, 2 the stream in a segment), length
_MAGIC, _VERSION = 0xB5, 1
_RAW = 0xB6  # the record is a bytes object's bytes: (_RAW, _VERSION, 0, length) + the bytes
#: stream_head(n): the header of a record holding a pickle stream of n bytes and no buffers (one C call)
stream_head = functools.partial(_HDR.pack, _MAGIC, _VERSION, 0)
_SEGREF = _BUF.size + 2 + 255  # a table entry naming a segment, at most
_counter = itertools.count()


class SerdeError(ValueError):
    pass


def _new_segment(prefix, data, mode):
    """Write *data* (a byte view) into a segment of its own; its name.
    Written with pwrite, not through a mapping: the kernel copies straight
    into the pages it allocates (no zeroing pass as posix_fallocate does, no
    page fault per 4 KiB); a full /dev/shm is an error here, not a SIGBUS."""
    name = "%s.b%d_%d" % (prefix, os.getpid(), next(_counter))
    path = SHM_DIR + name
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise NamespaceError("shared memory %s already exists: remove the stale one" % name) from None
    try:
        os.fchmod(fd, mode)  # whatever the umask
        total = data.nbytes
        if total == 0:
            os.ftruncate(fd, 1)
        done = 0
        while done < total:
            done += os.pwrite(fd, data[done:], done)  # the one copy
    except BaseException as exc:
        os.close(fd)
        unlink(name)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
            raise ConfigError("not enough shared memory: %d bytes needed, %s free in %s"
                              % (total, human(shm_free()), SHM_DIR)) from None
        raise
    os.close(fd)
    return name


def dumps(obj, prefix, big=BIG, limit=None, mode=0o600):
    """(record bytes, [segment names]) for *obj*.  Buffers of *big* bytes
    or more go to segments of their own (created with *mode*, the queue's);
    with *limit* (the ring's largest record), so do the largest others, and
    the pickle stream itself, until the record fits.  Raises what pickle
    raises for an unpicklable object (nothing is left behind)."""
    if type(obj) is bytes and (limit is None or _HDR.size + len(obj) <= limit):
        return _HDR.pack(_RAW, _VERSION, 0, len(obj)) + obj, []
    bufs = []
    stream = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    return assemble(stream, bufs, prefix, big, limit, mode)


def assemble(stream, bufs, prefix, big=BIG, limit=None, mode=0o600):
    """dumps, given the pickle *stream* and its out-of-band *bufs*."""
    if not bufs and (limit is None or _HDR.size + len(stream) <= limit):
        return stream_head(len(stream)) + stream, []
    views = [pb.raw() for pb in bufs]
    out = [mv.nbytes >= big for mv in views]  # True: a segment of its own
    spill_stream = False
    if limit is not None:
        def size():
            n = _HDR.size + (_SEGREF if spill_stream else len(stream))
            return n + sum(_SEGREF if o else _BUF.size + mv.nbytes for mv, o in zip(views, out))
        for i in sorted(range(len(views)), key=lambda i: -views[i].nbytes):
            if size() <= limit:
                break
            out[i] = True
        spill_stream = size() > limit
    parts, inline, segs = [], [], []
    try:
        if spill_stream:
            segs.append(_new_segment(prefix, memoryview(stream), mode))
            parts.append(_ref(2, len(stream), segs[-1]))
        for mv, o in zip(views, out):
            if o:
                segs.append(_new_segment(prefix, mv, mode))
                parts.append(_ref(1, mv.nbytes, segs[-1]))
            else:
                parts.append(_BUF.pack(0, mv.nbytes))
                inline.append(mv)
    except BaseException:
        discard(segs)
        raise
    head = _HDR.pack(_MAGIC, _VERSION, len(parts), 0 if spill_stream else len(stream))
    return b"".join([head] + parts + ([] if spill_stream else [stream]) + inline), segs


def _ref(kind, n, name):
    enc = name.encode()
    return _BUF.pack(kind, n) + struct.pack("<H", len(enc)) + enc


def _table(mv):
    """The record's header and buffer table: (pickle length, [(kind, length,
    segment name or None)], position after the table)."""
    if len(mv) < _HDR.size:
        raise SerdeError("record of %d bytes is too short for a queue item" % len(mv))
    magic, version, nbufs, plen = _HDR.unpack_from(mv, 0)
    if magic != _MAGIC or version != _VERSION:
        raise SerdeError("record is not a shmbroker queue item (magic %#x, version %d)" % (magic, version))
    pos, descr = _HDR.size, []
    for _ in range(nbufs):
        if pos + _BUF.size > len(mv):
            raise SerdeError("queue item is truncated in its buffer table")
        kind, n = _BUF.unpack_from(mv, pos)
        pos += _BUF.size
        if kind in (1, 2):
            (ln,) = struct.unpack_from("<H", mv, pos)
            name = bytes(mv[pos + 2:pos + 2 + ln]).decode("ascii", "replace")
            pos += 2 + ln
            descr.append((kind, n, name))
        elif kind == 0:
            descr.append((0, n, None))
        else:
            raise SerdeError("queue item has a buffer of unknown kind %d" % kind)
    return plen, descr, pos


def segments(data):
    """The segment names an item refers to (to discard an item that could
    not be loaded); [] if its table is unreadable."""
    try:
        return [name for _, _, name in _table(memoryview(data))[1] if name]
    except (SerdeError, struct.error):
        return []


def loads(data):
    """(object, [segment names]) from a record made by dumps.  Big buffers
    (and a spilled stream) are mapped, not copied: the object views them."""
    mv = memoryview(data)
    if len(mv) >= _HDR.size:  # the common item: no buffers, the stream fills the record
        magic, version, nbufs, plen = _HDR.unpack_from(mv, 0)
        if not nbufs and magic == _MAGIC and version == _VERSION and _HDR.size + plen == len(mv):
            return pickle.loads(mv[_HDR.size:]), []
        if magic == _RAW:
            if version != _VERSION or nbufs or _HDR.size + plen != len(mv):
                raise SerdeError("queue item of raw bytes is malformed (version %d, %d buffers, %d of %d bytes)"
                                 % (version, nbufs, plen, len(mv) - _HDR.size))
            return bytes(mv[_HDR.size:]), []
    plen, descr, pos = _table(mv)
    segs = [name for _, _, name in descr if name]
    stream = None
    mapped = {}
    for kind, n, name in descr:
        if kind:
            seg = Segment.attach(name)
            if seg.size < n:
                seg.close()
                raise SerdeError("buffer segment %s holds %d bytes, the item says %d" % (name, seg.size, n))
            view = memoryview(seg.mm)[:n]
            if kind == 2:
                stream = view
            else:
                mapped[name] = view
    if stream is None:  # inline: after the table, before the inline buffers
        stream = mv[pos:pos + plen]
        pos += plen
    buffers = []
    for kind, n, name in descr:
        if kind == 1:
            buffers.append(mapped[name])
        elif kind == 0:
            buffers.append(mv[pos:pos + n])
            pos += n
    if pos > len(mv):
        raise SerdeError("queue item is truncated (%d bytes, needs %d)" % (len(mv), pos))
    return pickle.loads(stream, buffers=buffers), segs


def discard(segs):
    """Remove the big-buffer segments of a done item (mappings stay valid).
    One another user created in a shared namespace may not be ours to
    unlink (/dev/shm is sticky): it goes with the queue."""
    for name in segs:
        try:
            unlink(name)
        except Exception:  # posix_ipc.PermissionsError is no OSError
            pass
