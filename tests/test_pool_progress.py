"""The progress bar of ``Executor.map(..., progress=True)`` and
``Pool.imap(..., progress=True)`` (broker/pool/_progress.py): tqdm when it
can be imported (here a fake tqdm module injected through sys.modules: tqdm
is not a dependency), else one plain line on stderr redrawn in place."""
import io
import sys
import types

import pytest

import pool_helpers as H
from pool_helpers import clean  # noqa: F401 (fixture)

from broker.pool import Executor, Pool, _progress

pytestmark = pytest.mark.usefixtures("clean")


class FakeBar:
    made = []

    def __init__(self, total=None, desc=None, unit=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.updates, self.closed = [], 0
        FakeBar.made.append(self)

    def update(self, n=1):
        assert not self.closed, "update after close"
        self.updates.append(n)

    def close(self):
        self.closed += 1


@pytest.fixture
def fake_tqdm(monkeypatch):
    FakeBar.made = []
    mod = types.ModuleType("tqdm")
    mod.tqdm = FakeBar
    monkeypatch.setitem(sys.modules, "tqdm", mod)
    return FakeBar.made


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def plain(monkeypatch):
    """No tqdm (whether installed or not); calling it makes stderr a
    terminal-like stream (in the test: pytest sets its own at the call)."""
    monkeypatch.setitem(sys.modules, "tqdm", None)

    def tty():
        err = Tty()
        monkeypatch.setattr(sys, "stderr", err)
        return err
    return tty


@pytest.mark.parametrize("chunksize", [1, 4])
def test_executor_map_tqdm(fake_tqdm, chunksize):
    with Executor(2) as ex:
        assert list(ex.map(H.square, range(30), chunksize=chunksize, progress=True)) == [i * i for i in range(30)]
    (bar,) = fake_tqdm
    assert (bar.total, bar.desc, bar.unit) == (30, "square", "task")
    assert sum(bar.updates) == 30 and bar.closed == 1
    assert sorted(bar.updates) == sorted([1] * 30 if chunksize == 1 else [4] * 7 + [2])  # one per chunk done


def test_executor_map_tqdm_closed_on_error_and_abandon(fake_tqdm):
    with Executor(2) as ex:
        with pytest.raises(ValueError, match="boom"):
            list(ex.map(H.fail, ["boom"] * 3, progress=True))
        it = ex.map(H.square, range(10), progress=True)
        assert next(it) == 0
        it.close()  # abandoned: the bar closes with the iterator
    assert [b.closed for b in fake_tqdm] == [1, 1]


def test_pool_imap_tqdm(fake_tqdm):
    with Pool(2) as p:
        assert list(p.imap(H.square, range(12), 5, progress=True)) == [i * i for i in range(12)]
        assert sorted(p.imap_unordered(H.square, iter(range(4)), progress=True)) == [0, 1, 4, 9]
    ordered, unordered = fake_tqdm
    assert (ordered.total, ordered.desc) == (12, "square") and sorted(ordered.updates) == [2, 5, 5]
    assert unordered.total is None and sum(unordered.updates) == 4  # an iterator: no total
    assert ordered.closed == unordered.closed == 1


def test_executor_map_plain_line(plain):
    err = plain()
    with Executor(2) as ex:
        assert list(ex.map(H.square, range(30), chunksize=4, progress=True)) == [i * i for i in range(30)]
    out = err.getvalue()
    assert out.startswith("\rsquare: 0/30   0% ") and out.endswith("\n") and out.count("\n") == 1
    last = out.rsplit("\r", 1)[1]
    assert last.startswith("square: 30/30 100% ") and last.rstrip().endswith("s")


def test_pool_imap_plain_line(plain):
    err = plain()
    with Pool(2) as p:
        assert list(p.imap(H.square, range(12), progress=True)) == [i * i for i in range(12)]
        assert sorted(p.imap_unordered(H.square, iter(range(4)), progress=True)) == [0, 1, 4, 9]
    first, second = err.getvalue().split("\n")[:2]
    assert first.rsplit("\r", 1)[1].startswith("square: 12/12 100% ")
    assert second.rsplit("\r", 1)[1].startswith("square: 4 ")  # no total: the count alone


def test_plain_bar_redraws_at_most_every_interval():
    out = Tty()
    bar = _progress.PlainBar(5, "job", file=out, interval=3600)
    for _ in range(5):
        bar.update()
    assert out.getvalue() == "\rjob: 0/5   0% 0/s 0.0s"  # drawn at start; updates within the interval are not
    bar.close()
    bar.close()  # once
    assert out.getvalue().count("\r") == 2 and out.getvalue().endswith("\n")
    assert out.getvalue().split("\r")[2].startswith("job: 5/5 100% ")
    out = Tty()
    bar = _progress.PlainBar(3, "job", file=out, interval=0)
    bar.update(2)
    assert out.getvalue().split("\r")[-1].startswith("job: 2/3  67% ")


def test_plain_bar_on_a_closed_stream():
    out = Tty()
    bar = _progress.PlainBar(2, "job", file=out, interval=0)
    out.close()
    bar.update()
    bar.close()  # a closed stream: no bar, no error
    assert bar.done == 1 and bar.closed
