"""What a read of the partition log hands out: records (a tuple the C fast
path builds without running Python code), the statuses of offsets that are
not records (not yet written, lapped, skipped), and the record header block
format (length-prefixed key/value pairs)."""
import struct

from operator import itemgetter

from .errors import CorruptSegmentError


# ---- records and read statuses ------------------------------------------------
class Record(tuple):
    """A delivered record: (offset, value, key, headers, timestamp_ns), with
    those names as attributes.  A tuple so the C fast path builds it without
    running Python code."""

    __slots__ = ()
    status = "ok"
    offset = property(itemgetter(0))
    value = property(itemgetter(1))
    key = property(itemgetter(2))
    headers = property(itemgetter(3))
    timestamp_ns = property(itemgetter(4))

    def __new__(cls, offset, value, key=None, headers=None, timestamp_ns=0):
        return tuple.__new__(cls, (offset, value, key, headers, timestamp_ns))

    def __repr__(self):
        v = self[1]
        return "Record(offset=%d, key=%r, value=%r)" % (self[0], self[2], v[:32] if v else v)


class NotYet:
    """The offset is not written yet (or its producer is mid-append)."""

    __slots__ = ("offset",)
    status = "not_yet"

    def __init__(self, offset):
        self.offset = offset

    def __repr__(self):
        return "NotYet(%d)" % self.offset


class Lapped:
    """The offset was overwritten (or is below the log start); ``low`` is
    the current low watermark."""

    __slots__ = ("offset", "low")
    status = "lapped"

    def __init__(self, offset, low):
        self.offset, self.low = offset, low

    def __repr__(self):
        return "Lapped(%d, low=%d)" % (self.offset, self.low)


class Skipped:
    """A tombstone (a dead producer's repaired claim) or a corrupt record."""

    __slots__ = ("offset", "reason")

    def __init__(self, offset, reason):
        self.offset, self.reason = offset, reason

    @property
    def status(self):
        return self.reason

    def __repr__(self):
        return "Skipped(%d, %s)" % (self.offset, self.reason)


# ---- headers ----------------------------------------------------------------
_H = struct.Struct("<Ii")


def encode_headers(headers):
    """[(str, bytes|str|None), ...] or a dict -> bytes (length-prefixed)."""
    if not headers:
        return b""
    if not isinstance(headers, (list, dict)):
        raise TypeError("headers must be a list of (key, value) pairs or a dict, got %s" % type(headers).__name__)
    items = headers.items() if isinstance(headers, dict) else headers
    out = []
    for item in items:
        try:
            k, v = item
        except (TypeError, ValueError):
            raise TypeError("headers must be (key, value) pairs or a dict, got %r" % (item,)) from None
        kb = k.encode() if isinstance(k, str) else k
        if not isinstance(kb, bytes):
            raise TypeError("header key must be str or bytes, got %s" % type(k).__name__)
        if v is None:
            out.append(_H.pack(len(kb), -1) + kb)
            continue
        if isinstance(v, str):
            vb = v.encode()
        elif isinstance(v, (bytes, bytearray, memoryview)):
            vb = bytes(v)
        else:
            raise TypeError("header value must be bytes, str or None, got %s for header %r" % (type(v).__name__, k))
        out.append(_H.pack(len(kb), len(vb)) + kb + vb)
    return b"".join(out)


def decode_headers(blob):
    out = []
    i, n = 0, len(blob)
    while i < n:
        if i + 8 > n:
            raise CorruptSegmentError("record headers are truncated")
        kl, vl = _H.unpack_from(blob, i)
        i += 8
        if i + kl + max(vl, 0) > n:
            raise CorruptSegmentError("record headers are truncated")
        k = blob[i:i + kl].decode("utf-8", "replace")
        i += kl
        if vl < 0:
            out.append((k, None))
        else:
            out.append((k, blob[i:i + vl]))
            i += vl
    return out
