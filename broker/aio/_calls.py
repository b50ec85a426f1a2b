"""User callbacks that may be coroutine functions, called from inside a
synchronous client call running on the event loop (a rebalance callback
inside the consumer's poll, a delivery report inside the producer's poll).

A coroutine is run in place, on the calling thread, until it first
suspends: one that only awaits this package's own calls (``commit``,
``pause``, ``incremental_assign``, ``position``... which never suspend)
finishes right there, exactly where a plain function would have run.  One
that does suspend (real I/O) is finished by a task; the client awaits those
tasks (:meth:`Pending.settle`) before its call returns.
"""
import asyncio
import inspect


class Pending:
    """The callbacks of one client that suspended, still to be awaited."""

    def __init__(self):
        self.tasks = []

    def call(self, fn, *args):
        """Call *fn(*args)*; a coroutine runs until it first suspends.  :returns: what a plain function returned."""
        r = fn(*args)
        if inspect.iscoroutine(r):
            task = _start(r)
            if task is not None:
                self.tasks.append(task)
            return None
        if inspect.isawaitable(r):
            self.tasks.append(asyncio.ensure_future(r))
            return None
        return r

    def wrap(self, fn, first=None):
        """*fn* as a plain callable for a synchronous client; *first*: replaces the first argument (the
        synchronous client) with the asyncio one."""
        if fn is None:
            return None
        if first is None:
            return lambda *args: self.call(fn, *args)
        return lambda _client, *args: self.call(fn, first, *args)

    async def settle(self):
        """Await every suspended callback (their exceptions are raised here, the first one)."""
        while self.tasks:
            tasks, self.tasks = self.tasks, []
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r


def _start(coro):
    """Run *coro* until it first suspends.  :returns: None if it finished, else a Task finishing it."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coro, yielded))


async def _finish(coro, yielded):
    """Drive *coro* on, as a Task would, from where it suspended on *yielded*."""
    while True:
        if yielded is None:  # a bare yield: asyncio.sleep(0)
            await asyncio.sleep(0)
        elif asyncio.isfuture(yielded):
            yielded._asyncio_future_blocking = False
            try:
                await asyncio.wait([yielded])
            except asyncio.CancelledError:
                yielded.cancel()  # the coroutine sees the cancellation where it waited
                await asyncio.wait([yielded])
        else:
            try:
                yielded = coro.throw(RuntimeError("a callback awaited %r, which is not an asyncio awaitable" %
                                                  (yielded,)))
            except StopIteration:
                return
            continue
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
