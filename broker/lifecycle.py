"""Starting and finding a namespace's supervisor process (supervisor.py is
what it does once started).

- Singleton: an exclusive ``flock`` on ``/dev/shm/shmb.<ns>.sup``, held for
  the supervisor's life.  A client that finds it free takes it and hands it
  to the supervisor it starts, so racing clients start one, not one each.
- Isolated start: the package's own interpreter (``sys.executable``) with
  ``-I`` (no PYTHON* variables, no user site, no script or working
  directory on ``sys.path``), cwd ``/``, the package's own directory put on
  ``sys.path`` explicitly: a ``./broker/`` in the client's working directory
  is never run.  Detached (its own session, reparented away from the client
  by a ``/bin/sh ... &`` that exits at once), its command line
  ``... shmbroker serve --namespace NS``, its process name ``shmbroker``.
- Always there when needed: clients check from the paths where they wait
  (``SupervisorCheck``: a poll that found nothing, an append waiting for
  room, flush), at most every CHECK_EVERY_NS, and start a new one if it died.
- Gone when not: a supervisor with no registered client for its idle time
  (``SHMBROKER_SUPERVISOR_IDLE`` seconds, or ``serve --idle-timeout``)
  exits; the namespace's topics and records stay.
"""
import errno
import fcntl
import math
import os
import stat
import subprocess
import sys
import time

from shm.errors import ConfigError, NamespaceError

IDLE_ENV = "SHMBROKER_SUPERVISOR_IDLE"
DEFAULT_IDLE = 30.0  # seconds
CHECK_EVERY_NS = 500_000_000  # a client checks on its supervisor at most this often
# the directory holding broker/ and shm/: the supervisor runs this code, whatever sys.path says
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# run as `python -I -c BOOT shmbroker serve ...`: argv[0] becomes "shmbroker"
_BOOT = ("import sys; r = %r; sys.path[:0] = [] if r in sys.path else [r]; sys.argv[0] = sys.argv.pop(1); "
         "from broker.cli import main; sys.exit(main(sys.argv[1:]))")


def idle_timeout(value=None, what=IDLE_ENV):
    """Seconds a supervisor with no registered client waits before it exits
    (0: never): *value*, else $SHMBROKER_SUPERVISOR_IDLE, else 30."""
    if value is None:
        value = os.environ.get(IDLE_ENV)
        if value is None:
            return DEFAULT_IDLE
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not 0 <= v <= 1e9:
        raise ConfigError("%s must be a number of seconds >= 0 (0: never exit when idle), got %r" % (what, value))
    return v


def lock_path(namespace):
    return "/dev/shm/shmb.%s.sup" % namespace


def open_lock(namespace, mode):
    """Open (create) the namespace's singleton lock file: never through a
    symlink, mode *mode* (the namespace's) whatever the umask, and refused
    (NamespaceError) if its owner or mode is not one this client accepts
    (shm.segment.owner_problem), so no one else can hold our lock."""
    from shm.segment import owner_problem
    path = lock_path(namespace)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise NamespaceError("the supervisor lock of namespace %r (%s) is a symbolic link, planted by someone "
                             "else: use another namespace" % (namespace, path)) from None
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and st.st_nlink == 1 and st.st_size == 0 and not st.st_mode & 0o777 & ~mode:
        os.fchmod(fd, mode)  # ours, maybe just created under a umask: set exactly the namespace's mode
        st = os.fstat(fd)
    problem = owner_problem(st, mode) if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 else "is not a plain file"
    if problem:
        os.close(fd)
        raise NamespaceError("the supervisor lock of namespace %r (%s) %s: use another namespace (shm.namespace)"
                             % (namespace, path, problem))
    return fd


def _names(path, fd):
    """Does *path* name the file open as *fd*?"""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)


def unlink_if(path, fd):
    """Remove *path* if it is the file open as *fd*."""
    if _names(path, fd):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def holds_lock(namespace, fd):
    """Does the lock file's path still name the file open as *fd*?  (Not if
    it was deleted, and maybe re-created and locked by a second supervisor.)"""
    return _names(lock_path(namespace), fd)


def supervisor_alive(namespace):
    """Does a supervisor hold the namespace's singleton lock?"""
    try:
        fd = os.open(lock_path(namespace), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # none, or a symlink someone planted: no supervisor of ours
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def set_process_name():
    """Name this process ``shmbroker`` (what ps and pgrep show)."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("shmbroker")
    except OSError:
        pass  # no /proc: the command line still says shmbroker


def command(namespace, lock_fd):
    """The supervisor's argv, isolated from the caller's directory and environment."""
    return [sys.executable, "-I", "-c", _BOOT % (_ROOT,), "shmbroker", "serve", "--namespace", namespace,
            "--quiet", "--attach", "--lock-fd", str(lock_fd)]


def ensure_supervisor(namespace):
    """Start the namespace's supervisor if none is alive: detached (its own
    session, reparented away from us, so it outlives this client), isolated
    (see the module docstring).  We take the singleton lock first and hand
    it to the new process (an inherited open file description shares a
    flock).  Returns True if one was started."""
    if os.environ.get("SHMBROKER_SUPERVISOR", "auto") == "off":
        return False
    from .namespace import namespace_mode
    idle_timeout()  # a bad setting is the client's error here, not a supervisor that silently never starts
    try:
        fd = open_lock(namespace, namespace_mode(namespace))
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # alive, or being started by another client
        # /bin/sh only detaches: it backgrounds the supervisor and exits at once
        subprocess.run(["/bin/sh", "-c", 'exec "$@" </dev/null >/dev/null 2>&1 &', "sh"] + command(namespace, fd),
                       cwd="/", start_new_session=True, check=False, timeout=30, pass_fds=(fd,))
        return True
    finally:
        os.close(fd)  # the lock stays with the supervisor's copy


class SupervisorCheck:
    """A client's "is our supervisor alive?" for the paths where it waits
    (an empty poll, an append waiting for room, flush): a clock read, and a
    lock probe at most every CHECK_EVERY_NS, so a dead supervisor is back
    within about a second and the hot path (records flowing) pays nothing."""

    __slots__ = ("namespace", "_next")

    def __init__(self, namespace):
        self.namespace = namespace
        self._next = 0

    def __call__(self):
        now = time.monotonic_ns()
        if now < self._next:
            return
        self._next = now + CHECK_EVERY_NS
        try:
            ensure_supervisor(self.namespace)
        except (OSError, subprocess.SubprocessError):
            pass  # no process to spare right now: the next check tries again


def client_check(conf, namespace):
    """The SupervisorCheck of a client with config *conf* (None with
    shm.supervisor=off)."""
    return None if conf.get("shm.supervisor", "auto") == "off" else SupervisorCheck(namespace)


def wait_supervisor(namespace, timeout=30.0):
    """Start the namespace's supervisor if none runs and wait until it is up
    (benchmarks: its start-up must not overlap what they time).  Returns its pid."""
    from .namespace import Namespace, namespace_mode, proc_start_ticks
    ensure_supervisor(namespace)
    end = time.monotonic() + timeout
    with Namespace(namespace, create=False, mode=namespace_mode(namespace)) as ns:
        while True:
            pid = ns.supervisor_pid()
            if pid and proc_start_ticks(pid) and supervisor_alive(namespace):
                return pid
            if time.monotonic() > end:
                from .logs import log_path
                raise NamespaceError("the supervisor of namespace %r did not start within %.0f s: see %s"
                                     % (namespace, timeout, log_path(namespace)))
            time.sleep(0.005)
