"""perf/compare.py's rings in pure Python: the naive ring the targets measure shmbroker against,
and the open-loop Python floor (a reference row, not a contender).  The face they have:
compare_base.Peer."""

import mmap
import struct
import time

from compare_base import Peer, ring_bytes

# ---- the naive pure-Python ring ------------------------------------------------------------
class PyRing(Peer):
    """A naive single-producer single-consumer ring in pure Python: an
    anonymous shared mapping, a head and a tail counter, records as a 4-byte
    length and the bytes, spinning waits (x86's store order; no checksum, no
    crash safety).  What a few lines of Python get: the yardstick the targets
    measure shmbroker against."""
    name, label = "pyring", "naive pure-Python ring"
    HDR = 128  # head at 0, tail at 64 (own cache lines)
    LEN = struct.Struct("<I")
    WRAP = 0xFFFFFFFF

    def setup(self, env, size):
        # the same data capacity as shmbroker's rings (ring_bytes): a ring that stays in the CPU's cache
        # while the other streams through memory would measure the cache, not the design
        cap = ring_bytes(size)
        return {"mm": mmap.mmap(-1, self.HDR + cap), "cap": cap}

    def teardown(self, spec):
        spec["mm"].close()

    @staticmethod
    def _populate(mm):
        """Map the ring's pages in this process now, as shmbroker's peers do (shm.pre.touch)."""
        try:
            mm.madvise(getattr(mmap, "MADV_POPULATE_WRITE", 23))  # Linux 5.14+
        except (OSError, ValueError):
            pass

    def sender(self, spec):
        mm, cap, H, LEN, WRAP = spec["mm"], spec["cap"], self.HDR, self.LEN, self.WRAP
        self._populate(mm)
        mv = memoryview(mm)
        ctr = mv[:H].cast("q")  # [0] head (written), [8] tail (read)
        pack = LEN.pack_into
        head = [0]

        def send(v):
            n = len(v)
            rec = (n + 4 + 7) & ~7
            h = head[0]
            pos = h % cap
            skip = cap - pos if pos + rec > cap else 0  # no room before the end: a wrap mark, then at 0
            if h + skip + rec - ctr[8] > cap:
                end = time.monotonic() + 60
                while h + skip + rec - ctr[8] > cap:
                    if time.monotonic() > end:
                        raise TimeoutError("naive ring: the consumer freed no room in 60 s")
            if skip:
                pack(mv, H + pos, WRAP)
                pos = 0
            pack(mv, H + pos, n)
            mv[H + pos + 4:H + pos + 4 + n] = v
            head[0] = ctr[0] = h + skip + rec  # published last (x86 keeps the stores in order)
        return send, mv.release

    def receiver(self, spec, mode):
        mm, cap, H, LEN, WRAP = spec["mm"], spec["cap"], self.HDR, self.LEN, self.WRAP
        self._populate(mm)
        mv = memoryview(mm)
        ctr = mv[:H].cast("q")
        unpack = LEN.unpack_from
        tail = [0]

        def recv(timeout):
            t = tail[0]
            if ctr[0] == t:
                end = time.monotonic() + timeout
                while ctr[0] == t:
                    if time.monotonic() > end:
                        return None
            pos = t % cap
            n, = unpack(mv, H + pos)
            if n == WRAP:
                t += cap - pos
                pos = 0
                n, = unpack(mv, H)
            v = mv[H + pos + 4:H + pos + 4 + n].tobytes()
            tail[0] = ctr[8] = t + ((n + 4 + 7) & ~7)
            return v
        return recv, lambda: None


# ---- the open-loop Python floor --------------------------------------------------------------
class PyFloor(Peer):
    """Not a contender: the least a Python producer and a Python consumer can do
    to hand a record over through this harness's send() and recv(), in the open
    loop the latency rows run, so those rows have a reference measured the same
    way (the ping-pong floor is a closed loop: no idle gap between records, no
    send or recv call, no stamps).  The producer copies the record into one
    of SLOTS fixed 64-byte-aligned slots of an anonymous shared mapping and bumps
    a counter; the consumer spins on the counter and hands out a view of the
    slot.  No length, no checksum, no crash safety; the consumer publishes its
    position only every SLOTS/4 records, and the producer waits only when it is
    a whole ring ahead (never at the rates it is run at)."""
    name, label = "pyfloor", "Python store-and-spin hand-off (reference, not a contender: no ring logic)"
    SLOTS = 256
    HDR = 128  # the counter at 0, the consumer's position at 64 (own cache lines)

    def setup(self, env, size):
        stride = (size + 63) & ~63  # a slot: the record, on whole cache lines
        return {"mm": mmap.mmap(-1, self.HDR + self.SLOTS * stride), "size": size, "stride": stride}

    def teardown(self, spec):
        spec["mm"].close()

    def sender(self, spec):
        mv, S, H, stride = memoryview(spec["mm"]), self.SLOTS, self.HDR, spec["stride"]
        ctr = mv[:H].cast("q")  # [0] records published, [8] the consumer's position
        at = [0]

        def send(v):
            i = at[0]
            if i - ctr[8] >= S:
                end = time.monotonic() + 60
                while i - ctr[8] >= S:
                    if time.monotonic() > end:
                        raise TimeoutError("Python floor: the consumer did not move in 60 s")
            o = H + (i % S) * stride
            mv[o:o + len(v)] = v
            at[0] = ctr[0] = i + 1  # published last (x86 keeps the stores in order)
        return send, mv.release

    def receiver(self, spec, mode):
        mv, S, H, n, stride = memoryview(spec["mm"]), self.SLOTS, self.HDR, spec["size"], spec["stride"]
        ctr = mv[:H].cast("q")
        at = [0]

        def recv(timeout):
            i = at[0]
            if ctr[0] <= i:
                end = time.monotonic() + timeout
                while ctr[0] <= i:
                    if time.monotonic() > end:
                        return None
            at[0] = i + 1
            if not (i + 1) % (S // 4):
                ctr[8] = i + 1
            o = H + (i % S) * stride
            return mv[o:o + n]  # valid until the producer comes round again
        return recv, lambda: None
