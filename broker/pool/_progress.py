"""Progress bars for ``Executor.map(..., progress=True)`` and
``Pool.imap(..., progress=True)``: tqdm when it is installed, else one plain
line on stderr redrawn in place (at most 10 times a second)."""
import sys
import threading
import time


def progress(total, desc):
    try:
        import tqdm
    except ImportError:
        return PlainBar(total, desc)
    return _Tqdm(tqdm.tqdm(total=total, desc=desc, unit="task"))


class _Tqdm:
    def __init__(self, bar):
        self.bar = bar
        self.lock = threading.Lock()

    def update(self, n=1):
        with self.lock:
            self.bar.update(n)

    def close(self):
        with self.lock:
            self.bar.close()


class PlainBar:
    """``desc: done/total pct% rate/s elapsed`` on one line of *file*."""

    def __init__(self, total, desc, file=None, interval=0.1):
        self.total, self.desc = total, desc
        self.file = file if file is not None else sys.stderr
        self.done = 0
        self.start = self.last = time.monotonic()
        self.interval = interval
        self.lock = threading.Lock()
        self.closed = False
        self._draw(self.start)

    def line(self, now):
        el = now - self.start
        rate = self.done / el if el > 0 else 0.0
        if self.total:
            return "%s: %d/%d %3.0f%% %.0f/s %.1fs" % (self.desc, self.done, self.total,
                                                      100.0 * self.done / self.total, rate, el)
        return "%s: %d %.0f/s %.1fs" % (self.desc, self.done, rate, el)

    def _draw(self, now, end=""):
        try:
            self.file.write("\r" + self.line(now) + end)
            self.file.flush()
        except (OSError, ValueError):
            pass  # closed stream: no bar

    def update(self, n=1):
        with self.lock:
            self.done += n
            now = time.monotonic()
            if not self.closed and now - self.last >= self.interval:
                self.last = now
                self._draw(now)

    def close(self):
        with self.lock:
            if not self.closed:
                self.closed = True
                self._draw(time.monotonic(), "\n")
