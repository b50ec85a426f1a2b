"""Child processes for the demo, the benchmarks and the tests: run a
function in a forked child (its exception printed, its exit code saying
whether it returned), and reap a child with a deadline."""
import os
import signal
import time
import traceback


def fork(fn, *args):
    """Run fn(*args) in a forked child; exit code 0 if it returned, 1 if it raised."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn(*args)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def reap(pid, timeout=0.0, kill=False):
    """Has child *pid* exited (and been reaped)?  Waits up to *timeout*
    seconds; with *kill*, one still running then is SIGKILLed and reaped."""
    end = time.monotonic() + timeout
    while True:
        try:
            p, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if p == pid:
            return True
        if time.monotonic() >= end:
            if kill:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            return False
        time.sleep(0.005)
