"""ext/shmaio.c, the asyncio bridge's kernel path: a vectored futex wait io_uring completes - on a record
landing, on an extra word moving, on cancel - and the arguments it refuses."""
import os
import time

import pytest

from broker.aio import _waker

DEADLINE = 30.0

pytestmark = pytest.mark.skipif(not _waker.ring_available(),
                                reason="this kernel gives no io_uring futex waits (Linux >= 6.7, io_uring allowed)")


def _ring(efd=-1):
    from shm._native import ffi, lib
    err = ffi.new("int *")
    r = lib.aio_ring_open(16, efd, err)
    assert r != ffi.NULL, os.strerror(err[0])
    return ffi.gc(r, lib.aio_ring_close)


def _ring_wait(r, ud, parts, offsets, words=(), vals=()):
    from shm._native import ffi, lib
    for p in parts:
        p._pin()
    try:
        return lib.aio_ring_wait(r, ud, ffi.new("log_view *[]", [p._v for p in parts] or 1),
                                 ffi.new("uint64_t[]", list(offsets) or 1), len(parts),
                                 ffi.new("void *[]", list(words) or 1), ffi.new("uint64_t[]", [4] * len(words) or 1),
                                 ffi.new("uint64_t[]", len(words) or 1), ffi.new("uint32_t[]", list(vals) or 1),
                                 len(words))
    finally:
        for p in parts:
            p._unpin()


def _reap(r, deadline=DEADLINE, want=1):
    """Completions of ring *r* until *want* came (the eventfd-less way: poll the ring's fd)."""
    import select
    from shm._native import ffi, lib
    uds, res, got = ffi.new("uint64_t[]", 16), ffi.new("int32_t[]", 16), []
    end = time.monotonic() + deadline
    while len(got) < want:
        left = end - time.monotonic()
        assert left > 0, "no completion within %.0f s (got %r)" % (deadline, got)
        select.select([lib.aio_ring_fd(r)], [], [], left)
        n = lib.aio_ring_reap(r, uds, res, 16)
        got += [(uds[i], res[i]) for i in range(n)]
    return got


def test_ring_wait_completes_on_an_append_and_on_cancel(logs):
    """ext/shmaio.c: a submitted wait completes when a record lands (another thread appends), a word it
    watches moves, or it is cancelled; a wait whose record is there already is not submitted."""
    import errno
    import threading
    from shm._native import ffi, lib
    parts = [logs.create(slot_count=4, data_capacity=1024) for _ in range(3)]
    r = _ring()
    assert _ring_wait(r, 7, parts, [0, 0, 0]) == -1  # submitted: nothing there
    t = threading.Thread(target=parts[2].append, args=(b"x",))
    t.start()
    assert _reap(r) == [(7, 2)]  # the kernel says which word woke it: partition 2's
    t.join()
    assert _ring_wait(r, 8, parts, [0, 0, 0]) == 2  # readable now: not submitted
    word = ffi.new("uint32_t[1]")
    assert _ring_wait(r, 9, parts, [0, 0, 1], [word], [0]) == -1
    lib.shm_futex_wake32(word, 4, 0)  # moves the word and wakes it
    (ud, res), = _reap(r)
    assert ud == 9 and res == 3  # index 3: the extra word after the 3 partitions
    assert _ring_wait(r, 10, parts, [0, 0, 1], [word], [0]) == -2  # off its value already: not submitted
    assert _ring_wait(r, 11, parts, [0, 0, 1]) == -1
    assert lib.aio_ring_cancel(r, 11) == 0
    assert sorted(_reap(r, want=2)) == [(0, 1), (11, -errno.ECANCELED)]  # the cancel (1 cancelled), the wait


def test_ring_wait_refuses_bad_arguments(logs):
    from shm._native import ffi, lib
    r = _ring()
    parts = [logs.create(slot_count=2, data_capacity=1024) for _ in range(2)]
    words = [ffi.new("uint32_t[1]") for _ in range(lib.LOG_WAIT_XMAX + 1)]
    assert _ring_wait(r, 1, [], []) == lib.LOG_E_BAD_ARG  # nothing to wait on
    assert _ring_wait(r, 1, [], [], words, [0] * len(words)) == lib.LOG_E_BAD_ARG  # too many words
    assert _ring_wait(r, 1, parts * 64 + parts[:1], [0] * 129) == lib.LOG_E_BAD_ARG  # over 128 futex words
    assert lib.aio_ring_wait(r, 1, ffi.new("log_view *[]", 1), ffi.new("uint64_t[]", 1), 1, ffi.NULL, ffi.NULL,
                             ffi.NULL, ffi.NULL, 0) == lib.LOG_E_BAD_ARG  # a NULL view
    assert lib.aio_ring_wait(ffi.NULL, 1, ffi.NULL, ffi.NULL, 0, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL,
                             0) == lib.LOG_E_BAD_ARG
    assert lib.aio_ring_reap(r, ffi.NULL, ffi.NULL, 4) == lib.LOG_E_BAD_ARG
    # an extra word past the end of its segment: refused before any submission
    assert lib.aio_ring_wait(r, 1, ffi.new("log_view *[]", 1), ffi.new("uint64_t[]", 1), 0,
                             ffi.new("void *[]", [words[0]]), ffi.new("uint64_t[]", [4]), ffi.new("uint64_t[]", [4]),
                             ffi.new("uint32_t[]", [0]), 1) == lib.LOG_E_BAD_ARG



def test_ring_reaps_more_completions_than_its_queue_holds():
    """ext/shmaio.c: completions beyond the completion queue's size (2 x 16 here) wait in the kernel's
    overflow list; aio_ring_reap brings them in - every one of them, and the completions that come after."""
    from shm._native import ffi, lib
    r = _ring()
    word = ffi.new("uint32_t[1]")
    n = 100
    for ud in range(1, n + 1):
        assert _ring_wait(r, ud, [], [], [word], [0]) == -1
    lib.shm_futex_wake32(word, 4, 0)  # all 100 complete at once
    assert sorted(ud for ud, _ in _reap(r, deadline=5.0, want=n)) == list(range(1, n + 1))
    assert _ring_wait(r, 500, [], [], [word], [1]) == -1
    lib.shm_futex_wake32(word, 4, 0)
    assert _reap(r, deadline=5.0) == [(500, 0)]  # a later one still comes through


def test_bell_ring_resolves_a_wait_after_many_cancels():
    """broker.aio: a loop's ring whose coroutines drop many waits at once (each cancel completes twice: the
    cancel and the wait) still resolves the next wait when its word moves."""
    import asyncio
    from shm._native import ffi, lib

    async def main(loop):
        bell = _waker.bell_of(loop)
        ring = bell._ring_for(True)
        word = ffi.new("uint32_t[1]")
        ws = []
        for _ in range(80):  # 160 completions before the loop reaps: more than the ring's queue holds (128)
            w = _waker.Wait([], [], [(word, 4, 0, 0)], loop.create_future(), bell)
            bell.enter()
            assert bell.add(w, "io_uring") is ring
            ws.append(w)
        for w in ws:
            ring.remove(w)
            bell.leave()
        fut = loop.create_future()
        w = _waker.Wait([], [], [(word, 4, 0, 0)], fut, bell)
        bell.enter()
        assert bell.add(w, "io_uring") is ring
        lib.shm_futex_wake32(word, 4, 0)
        try:
            done, _ = await asyncio.wait([fut], timeout=5.0)
            assert fut in done, "the wait was not resolved within 5 s (its completion stayed in the kernel)"
            assert not ring._pending
        finally:
            ring.remove(w)
            bell.leave()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main(loop))
    finally:
        loop.close()
