"""Objects to queue records and back: pickle protocol 5 with out-of-band
buffers.

A record is ``HEADER | pickle stream | inline buffers``.  Buffers (numpy
arrays, bytearrays, anything exposing ``__reduce_ex__(5)`` buffers) are never
pickled into a bytes copy: small ones (< ``BIG``) follow the stream in the
record; big ones are written once into a segment of their own, named
``<prefix>.b<pid>_<n>``, which the getter maps without a copy (the object it
gets views the mapping).  The segment goes when the item is done
(``discard``), or with the queue (every name starts with its prefix).

    data, segs = dumps(obj, prefix)      # segs: big-buffer segment names
    obj, segs = loads(data)              # ... to discard() once done
"""
import itertools
import os
import pickle
import struct

from shm.segment import Segment, unlink

BIG = 1 << 20  # buffers at least this large travel in a segment of their own
_HDR = struct.Struct("<BBHI")  # magic, version, number of buffers, pickle length
_BUF = struct.Struct("<BQ")    # kind (0 inline, 1 segment), length
_MAGIC, _VERSION = 0xB5, 1
_counter = itertools.count()


class SerdeError(ValueError):
    pass


def dumps(obj, prefix, big=BIG):
    """(record bytes, [segment names]) for *obj*.  Raises what pickle raises
    for an unpicklable object (nothing is left behind)."""
    bufs = []
    stream = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    if not bufs:
        return _HDR.pack(_MAGIC, _VERSION, 0, len(stream)) + stream, []
    parts, inline, segs = [None, stream], [], []
    try:
        for pb in bufs:
            mv = pb.raw()
            n = mv.nbytes
            if n >= big:
                name = "%s.b%d_%d" % (prefix, os.getpid(), next(_counter))
                seg = Segment.create(name, n)
                segs.append(name)
                seg.mm[:] = mv  # the one copy
                seg.close()
                enc = name.encode()
                parts.insert(-1, _BUF.pack(1, n) + struct.pack("<H", len(enc)) + enc)
            else:
                parts.insert(-1, _BUF.pack(0, n))
                inline.append(mv)
    except BaseException:
        for name in segs:
            unlink(name)
        raise
    parts[0] = _HDR.pack(_MAGIC, _VERSION, len(bufs), len(stream))
    return b"".join(parts + inline), segs


def loads(data):
    """(object, [segment names]) from a record made by dumps.  Big buffers
    are mapped, not copied: the object views them."""
    mv = memoryview(data)
    if len(mv) < _HDR.size:
        raise SerdeError("record of %d bytes is too short for a queue item" % len(mv))
    magic, version, nbufs, plen = _HDR.unpack_from(mv, 0)
    if magic != _MAGIC or version != _VERSION:
        raise SerdeError("record is not a shmbroker queue item (magic %#x, version %d)" % (magic, version))
    pos, descr, segs = _HDR.size, [], []
    for _ in range(nbufs):
        kind, n = _BUF.unpack_from(mv, pos)
        pos += _BUF.size
        if kind == 1:
            (ln,) = struct.unpack_from("<H", mv, pos)
            name = bytes(mv[pos + 2:pos + 2 + ln]).decode()
            pos += 2 + ln
            segs.append(name)
            descr.append((1, n, name))
        else:
            descr.append((0, n, None))
    stream = mv[pos:pos + plen]
    pos += plen
    buffers = []
    for kind, n, name in descr:
        if kind == 1:
            seg = Segment.attach(name)
            if seg.size < n:
                seg.close()
                raise SerdeError("buffer segment %s holds %d bytes, the item says %d" % (name, seg.size, n))
            buffers.append(memoryview(seg.mm)[:n])
        else:
            buffers.append(mv[pos:pos + n])
            pos += n
    if pos > len(mv):
        raise SerdeError("queue item is truncated (%d bytes, needs %d)" % (len(mv), pos))
    return pickle.loads(stream, buffers=buffers), segs


def discard(segs):
    """Remove the big-buffer segments of a done item (mappings stay valid)."""
    for name in segs:
        unlink(name)
