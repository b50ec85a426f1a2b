"""Regex subscriptions without super-linear backtracking risk.

Python's ``re`` backtracks: a quantifier over something that can itself
match in several ways (``^(a+)+$``, ``^(a|aa)*$``) takes exponential time on
a topic name that almost matches, and the supervisor matches every member's
subscription against every topic name.  Two layers, both simple:

- ``regex_risk``, a static check on the parsed pattern: no quantified group
  may contain a variable-width quantifier or an alternation, and no
  backreference.  The client refuses such a pattern at ``subscribe()``
  (rewrite ``(\\w+\\.)*`` as ``[\\w.]*``); the supervisor, which trusts nothing
  it reads from the segment, applies it too.
- ``Matcher``, the supervisor's side: what passes the check is still matched
  on a budget - each pattern may spend BUDGET seconds of matching in all
  (per cache generation), a SIGALRM timer cutting a match short (the ``re``
  engine checks for signals as it backtracks).  A pattern that runs out is
  logged once and matches nothing from then on.  Results are cached per
  (pattern, topic), so a reconcile costs dictionary lookups.
"""
import re
import signal
import threading
import time

try:
    from re import _parser as _sre  # Python >= 3.11
except ImportError:  # pragma: no cover - Python 3.9, 3.10
    import sre_parse as _sre

BUDGET = 0.05  # seconds of matching per pattern: ~25,000 matches of an ordinary one
MAX_PATTERNS = 1024  # cached patterns (then the cache starts again)
MAX_RESULTS = 4096  # cached topic results per pattern (then its cache and budget start again)

_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT)}
_BACKREFS = {getattr(_sre, n) for n in ("GROUPREF", "GROUPREF_IGNORE", "GROUPREF_LOC_IGNORE", "GROUPREF_UNI_IGNORE",
                                        "GROUPREF_EXISTS") if hasattr(_sre, n)}


def _risk(items, repeated):
    """Why the parsed *items* risk exponential backtracking, or None;
    *repeated*: they are inside a quantifier that can repeat."""
    for op, av in items:
        if op in _REPEATS:
            lo, hi, body = av
            if repeated and lo != hi:
                return "a quantifier inside a repeated group"
            why = _risk(body, repeated or hi > 1)
        elif op is _sre.BRANCH:
            if repeated:
                return "an alternation inside a repeated group"
            why = next((w for w in map(lambda b: _risk(b, repeated), av[1]) if w), None)
        elif op in _BACKREFS:
            return "a backreference"
        elif op is _sre.SUBPATTERN:
            why = _risk(av[-1], repeated)
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            why = _risk(av[1], repeated)
        elif op is getattr(_sre, "ATOMIC_GROUP", None):
            why = _risk(av, repeated)
        else:
            continue  # a character, a class, an anchor
        if why:
            return why
    return None


def regex_risk(pattern):
    """Why a subscription regex is refused (it does not compile, or it
    risks exponential backtracking), or None if it is fine."""
    try:
        parsed = _sre.parse(pattern)
        re.compile(pattern)
    except Exception as exc:  # re.error, or RecursionError/OverflowError on a monster
        return "it does not compile (%s)" % exc
    why = _risk(parsed, False)
    if why == "a backreference":
        return "a backreference can take exponential time to match a topic name: remove it"
    if why:
        return ("%s can take exponential time to match a topic name: use a character class instead (as in "
                "^[a-z.]*$ rather than ^([a-z]+\\.)*$)" % why)
    return None


class _OutOfTime(Exception):
    pass


_armed = False


def _alarm(signum, frame):
    global _armed
    if _armed:  # once, and only inside the match below
        _armed = False
        raise _OutOfTime()


def bounded_match(rx, text, seconds):
    """``rx.match(text) is not None``, or None if that takes over *seconds*.
    The timer needs the main thread (signals are handled there); in another
    thread the match is unbounded (regex_risk still applies)."""
    global _armed
    if threading.current_thread() is not threading.main_thread():
        return rx.match(text) is not None
    prev = signal.signal(signal.SIGALRM, _alarm)
    try:
        _armed = True
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-6))
        try:
            return rx.match(text) is not None
        finally:
            _armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _OutOfTime:
        return None
    finally:
        if prev is not None:
            signal.signal(signal.SIGALRM, prev)


class Matcher:
    """The supervisor's subscription matching: stored subscriptions (one
    topic name or ^regex a line) -> topic predicates, bounded and cached.
    *report(pattern, why)* is told once about each pattern refused."""

    def __init__(self, report):
        self._report = report
        self._patterns = {}  # text -> [compiled or None, ns spent, {topic: bool}]

    def predicate(self, text):
        names, pats = set(), []
        for line in text.split("\n"):
            if line.startswith("^"):
                pats.append(self._pattern(line))
            elif line:
                names.add(line)
        return lambda t: t in names or any(self._match(p, t) for p in pats)

    def _pattern(self, text):
        p = self._patterns.get(text)
        if p is None:
            if len(self._patterns) >= MAX_PATTERNS:
                self._patterns.clear()
            why = regex_risk(text)
            if why:
                self._report(text, why)
            p = self._patterns[text] = [None if why else re.compile(text), 0, {}]
        return p

    def _match(self, p, topic):
        rx, spent, seen = p
        if rx is None:
            return False
        hit = seen.get(topic)
        if hit is None:
            if len(seen) >= MAX_RESULTS:
                seen.clear()
                p[1] = spent = 0
            t0 = time.monotonic_ns()
            hit = bounded_match(rx, topic, BUDGET - spent / 1e9)
            p[1] += time.monotonic_ns() - t0
            if hit is None or p[1] > BUDGET * 1e9:
                p[0] = None
                self._report(rx.pattern, "took over %d ms matching topic names (catastrophic backtracking?): it "
                             "matches nothing now; subscribe with a simpler pattern" % (BUDGET * 1000))
                return False
            seen[topic] = hit
        return hit
