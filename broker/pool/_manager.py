"""The manager thread of a pool engine (a mixin of _engine.Engine), and
the watcher threads.  A slot's watcher hears of its worker's death from
the worker's death-watch mutex (owner-died: before the kernel tears the
dead worker's memory down) and gives its tasks back at once.  The manager
waits on the worker sentinels (the process has exited), reaps it and
gives back whatever is left (``release(failed=True)``: they run again) or, at
max_attempts, ends them (``ack``) and fails their futures with
WorkerCrashedError/TaskTimeoutError; tombstones the result the dead worker
was writing; starts a replacement; kills workers over task_timeout; and
stops the pool: drained (close) or at once (terminate), then removes its
segments."""
import multiprocessing.connection
import os
import signal
import threading
import time
import warnings

from shm.errors import ClosedError, CorruptSegmentError, TaskTimeoutError

from . import _serde, _worker
from ._status import ACQUIRED, EXITED, OWNER_DIED, RUNNING, STARTING

STARTUP_DEATHS = 3  # workers dying before they are ready, in a row: the pool is broken
WATCH_CHUNK_NS = 100_000_000  # a watcher's wait in C (GIL released) between looks at the stop flag


def worker_crashed(msg, pid=None, exitcode=None, attempts=None):
    from shm.errors import WorkerCrashedError
    e = WorkerCrashedError(msg)
    e.pid, e.exitcode, e.attempts = pid, exitcode, attempts
    return e


def describe_exit(code):
    if code is None:
        return "an unknown exit"
    if code < 0:
        try:
            return "signal %d (%s)" % (-code, signal.Signals(-code).name)
        except ValueError:
            return "signal %d" % -code
    return "exit code %d" % code


PF_EXITING = 0x4  # include/linux/sched.h: set by do_exit (exit_signals) before it releases the robust list
_PROC = os.path.exists("/proc/self/stat")


def exiting(pid):
    """Has process *pid* (an unreaped child of ours: its pid is not reused)
    begun to exit?  /proc/<pid>/stat's flags are its main thread's task
    flags: PF_EXITING from the start of do_exit on; a zombie has exited.
    False when there is no /proc to tell: no early give-back then."""
    if not _PROC:
        return False
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True  # reaped meanwhile
    except OSError:
        return False
    fields = data[data.rindex(b")") + 2:].split()  # after the command name, which may hold anything
    try:
        return fields[0] in (b"Z", b"X", b"x") or int(fields[6]) & PF_EXITING != 0
    except (IndexError, ValueError):
        return False


def _signal(p, sig):
    try:
        os.kill(p.pid, sig)
    except (ProcessLookupError, TypeError):
        pass


class Manager:
    """Engine's worker side: every method here runs in the manager thread,
    except close/terminate/join/worker_pids (any thread)."""

    def _start_worker(self, slot):
        if slot < len(self._watchers) and not self._watchers[slot].is_alive() and not self._watch_stop:
            # the slot's watcher stopped (watch_error): nobody will clear the last holder's pid, and the new
            # worker would wait for that (shm_robust_hold) before every start; its end is heard by the sentinel
            self.status.clear_holder(slot)
        p = self.ctx.Process(target=_worker.worker_main, args=(self._spec, slot), daemon=False,
                             name="shmbroker-pool-worker-%d" % slot)
        p.start()
        self.status.set_slot(slot, p.pid, STARTING)  # a death before the worker writes it counts as one at start
        self._workers[slot] = p
        return p

    def _poke(self):
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # full: the manager wakes anyway; closed: it is gone

    def _watch_slot(self, slot):
        """Thread, one per worker slot for the pool's life: wait (in C, no
        GIL) for the death of the slot's worker, whichever worker that is,
        and give its tasks back at once (_on_early_death).  Why a thread per
        slot: a pthread mutex is waited on alone (one waiter per lock call);
        the threads sleep in the kernel and look at the stop flag every
        WATCH_CHUNK_NS; _destroy wakes and joins them before the segments
        are unmapped.  Why here and not in the manager thread: one thread
        wake fewer between the death and the re-run (on a busy machine each
        wake may wait for a CPU)."""
        try:
            wait = self.status.watcher(slot)
            while not self._watch_stop:
                rc, pid = wait(WATCH_CHUNK_NS)
                if rc == OWNER_DIED and pid:  # pid 0: it died before it published itself (it took nothing)
                    self.notices[slot] += 1
                    self._on_early_death(slot, pid)
                elif rc == ACQUIRED and pid:  # it let go: a clean exit (it acked all it took), not a death
                    self.clean_exits[slot] += 1
        except Exception as e:  # CorruptSegmentError; anything else is a bug: the sentinel still tells
            self.watch_error = e
            warnings.warn(str(e) if isinstance(e, CorruptSegmentError) else
                          "a pool's death watch of slot %d stopped: %s: %s; its deaths are handled when the "
                          "process has exited" % (slot, type(e).__name__, e), RuntimeWarning)

    def _stop_watchers(self):
        """Stop the watcher threads: True once none is left in C on the status mapping."""
        self._watch_stop = True
        if not self._watchers:
            return True
        for slot in range(len(self._watchers)):
            self.status.unwatch(slot)  # one waiting for a holder; one waiting on the mutex: its chunk ends
        end = time.monotonic() + 10 * WATCH_CHUNK_NS / 1e9
        for t in self._watchers:
            t.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self._watchers)

    def _manage(self):
        try:
            self._manage_loop()
        finally:
            self._shut_down()

    def _manage_loop(self):
        wait = multiprocessing.connection.wait
        stop_at = None
        while True:
            timeout = None
            if self.task_timeout is not None:
                timeout = min(0.05, max(0.002, self.task_timeout / 8))
            if self._unclaimed is not None:
                timeout = max(0.0, min(timeout or 1.0, self._unclaimed[1] - time.monotonic()))
            if self._restart_at and len(self._workers) < self.nworkers:
                timeout = max(0.0, min(timeout or 1.0, self._restart_at - time.monotonic()))
            if stop_at is not None:
                timeout = 0.05
            procs = dict(self._workers)
            ready = wait([p.sentinel for p in procs.values()] + [self._wake_r], timeout)
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            for slot, p in procs.items():
                if p.sentinel in ready or p.exitcode is not None:
                    self._on_exit(slot, p)
            if self._unclaimed is not None and time.monotonic() >= self._unclaimed[1]:
                seen, self._unclaimed = self._unclaimed[0], None
                for o in self.rlog.scan_unclaimed():
                    if o in seen:
                        self.rlog.tombstone_unclaimed(o)
            if self.terminating or self.broken is not None or (self.closing and self.outstanding() == 0):
                if stop_at is None:
                    stop_at = time.monotonic() + 5.0
                    self.status.stop()
                    if self.terminating or self.broken is not None:
                        for p in self._workers.values():
                            _signal(p, signal.SIGTERM)
                if not self._workers:
                    return
                if time.monotonic() > stop_at:
                    for p in self._workers.values():
                        _signal(p, signal.SIGKILL)
                continue
            if self.task_timeout is not None:
                self._check_timeouts()
            if time.monotonic() < self._restart_at:
                continue  # workers died while starting: a short pause before the next ones
            for slot in range(self.nworkers):
                if slot not in self._workers and self.broken is None:
                    try:
                        self._start_worker(slot)
                    except Exception as e:
                        self._break(worker_crashed("cannot start a pool worker: %s: %s" % (type(e).__name__, e)))
            self._publish()

    def _on_early_death(self, slot, pid):
        """In *slot*'s watcher thread: worker *pid* died (its death-watch
        mutex owner-died, ext/shmrobust.c).  Safe to act on at once: the
        kernel walks a thread's robust list only when that thread exits (or
        execs), so the worker's main thread - the only one that takes, acks
        and writes results - never runs again and nothing it held can still
        be acked.  So its tasks go back now, before the kernel has torn its
        memory down and the sentinel fires.  Only re-runs: a task at its last
        attempt fails in _on_exit, which knows the exit code for the error;
        reaping, the result log's repair, the start-up accounting, the exit's
        count and the replacement stay the manager's _on_exit.  Both give
        back under _give_lock, and whichever comes second finds in held(pid)
        only what the first left (the last attempts): nothing is given back
        or counted twice."""
        p = self._workers.get(slot)
        if p is None or p.pid != pid or self.terminating or self._watch_stop:
            return  # reaped already (the sentinel came first, _on_exit gave its tasks back); stopping: all fail
        # an unreaped child: its pid is not reused, so the kernel's word on it is about our worker
        if not exiting(pid):
            # not exiting: the mutex's word was written by someone else (a corrupt segment) or the worker
            # exec'd; never hand out the tasks of a live worker - the sentinel will tell
            with self._give_lock:
                self.false_notices += 1
            return
        with self._give_lock:
            timed = self._timed_out.get(pid)
            released = [o for o in self.wq.held(pid) if self._give_back(o, pid, None, timed == o, early=True)]
            self.early_retried += len(released)
        if released:
            self.status.kick()  # idle workers sleep until a new task: the given-back ones are older
            self._publish()

    def _on_exit(self, slot, p):
        p.join()
        code, pid = p.exitcode, p.pid
        del self._workers[slot]
        try:
            _, state, _, _, _ = self.status.running(slot)
        except Exception:
            state = None
        with self._give_lock:  # the watcher may give back early meanwhile (_on_early_death)
            timed = self._timed_out.pop(pid, None)
            held = [] if self.terminating else self.wq.held(pid)  # terminate: _shut_down fails what is left
            for o in held:
                self._give_back(o, pid, code, timed == o)
        if held:
            self.status.kick()  # idle workers sleep until a new task: the given-back ones are older
        self.rlog.repair_dead(pid)  # its half-written result (claimed, not committed): a tombstone
        un = self.rlog.scan_unclaimed()
        if un:  # offsets it took but never claimed: tombstoned if still so after a grace
            self._unclaimed = (set(un), time.monotonic() + 0.05)
        self.status.set_slot(slot, pid, EXITED)
        if state == STARTING and code != 0 and not self.terminating and not (self.closing and self.status.stopped()):
            # died before it was ready: back off (5 ms doubling to 1 s); killed (OOM killer, a user): not the
            # pool's fault; anything else (import error, segfault, exit in the initializer) 3 times: broken
            self._start_fails += 1
            self._restart_at = time.monotonic() + min(1.0, 0.005 * 2 ** self._start_fails)
            if code not in (-signal.SIGKILL, -signal.SIGTERM):
                self._startup_deaths += 1
            if self._startup_deaths >= STARTUP_DEATHS:
                self._break(worker_crashed(
                    "%d pool workers in a row died while starting (last: pid %d, %s): check the initializer "
                    "and that the worker can import what it needs (spawn/forkserver)"
                    % (self._startup_deaths, pid, describe_exit(code)), pid, code))
        elif state != STARTING:
            self._startup_deaths = self._start_fails = 0
            self._restart_at = 0.0
        self._publish()

    def _give_back(self, o, pid, code, timed, early=False):
        """Task *o* of dead worker *pid* (caller holds _give_lock): re-run it,
        or end it at max_attempts (early: leave that to _on_exit).  True if
        it was released to run again."""
        wq = self.wq
        with self._lock:
            sink = self._tasks.get(o)
            feeding = self._feeding
        if sink is None and not feeding:
            wq.ack(o, pid)  # its result came: nothing to re-run
            return False
        attempts = wq.attempts(o) + 1
        if sink is None or attempts < self.max_attempts:
            wq.release(o, pid, failed=True)  # runs again on another worker
            self.retried += 1
            return True
        if early:
            return False  # its future fails with the exit code, which only the sentinel's _on_exit knows
        with self._lock:
            if self._tasks.get(o) is sink:
                del self._tasks[o]
            else:
                sink = None
        wq.ack(o, pid)
        if sink is None:
            return
        self.failed += 1
        _serde.discard(sink._segs)
        if timed:
            err = TaskTimeoutError("task ran over task_timeout=%gs %d time(s) (max_attempts=%d); its worker "
                                   "(last pid %d) was killed each time" % (self.task_timeout, attempts,
                                                                           self.max_attempts, pid))
            err.pid, err.exitcode, err.attempts = pid, code, attempts
        else:
            err = worker_crashed(
                "the worker running this task died: pid %d, %s; the task was tried %d time(s) (max_attempts=%d) "
                "and its worker died each time, so it likely kills the process (segfault, os._exit, out of "
                "memory). The pool goes on" % (pid, describe_exit(code), attempts, self.max_attempts),
                pid, code, attempts)
        sink._engine_fail(err)
        self.completed()
        if self.closing:
            self._poke()
        return False

    def _check_timeouts(self):
        now = time.monotonic_ns()
        limit = int(self.task_timeout * 1e9)
        for slot, p in list(self._workers.items()):
            pid, state, off, start, _ = self.status.running(slot)
            if state == RUNNING and pid == p.pid and start and now - start > limit and pid not in self._timed_out:
                _, state2, off2, start2, _ = self.status.running(slot)
                if (state2, off2, start2) != (state, off, start):
                    continue  # moved on meanwhile
                self._timed_out[pid] = off
                self.timeouts += 1
                _signal(p, signal.SIGKILL)

    def _break(self, err, cause=None):
        """The pool cannot run tasks (initializer fails, workers die at
        start): every outstanding task fails with *err*."""
        if cause is not None:
            err.__cause__ = cause
        if self.broken is None:
            self.broken = err
        self._fail_all(self.broken)
        self._poke()

    def _fail_all(self, err):
        with self._lock:
            sinks = list(self._tasks.values())
            self._tasks.clear()
            backlog = [s for _, s in self._backlog]
            self._backlog.clear()
        for s in sinks + backlog:
            _serde.discard(s._segs)
            self.failed += 1
            s._engine_fail(err)
        self.completed()

    def _publish(self):
        try:
            self.status.publish(self.submitted, self.done, self.retried, self.failed, self.cancelled,
                                self.timeouts)
        except Exception:
            pass  # closed meanwhile

    def _kill_all(self):
        for p in list(self._workers.values()):
            _signal(p, signal.SIGKILL)
            p.join(5)
        self._workers.clear()

    def _shut_down(self):
        """Manager thread's last act: workers are gone; stop the threads
        (and wait for those reading results in result() to leave the
        mappings), remove every segment."""
        self._kill_all()
        with self._lock:
            self.finished = True  # under the lock: no submit, cancel or helper starts after this
        if self.outstanding():  # terminate, or a bug: never leave a future waiting
            self._fail_all(self.broken or ClosedError("the pool was terminated before this task finished"))
        self.status.wake()
        self._result_thread.join(10)
        self._feed_event.set()
        if self._feeder is not None:
            self._feeder.join(10)
        end = time.monotonic() + 10
        while self._helpers and time.monotonic() < end:
            self.status.bump_done()
            self._no_helpers.wait(0.01)
        self._destroy()

    def _destroy(self):
        watched = self._stop_watchers()
        for obj in ("wq", "rlog", "status"):
            o = getattr(self, obj, None)
            if o is not None and watched:  # a watcher still running (it may give back): the mappings stay
                o.close()
        _worker.remove_pool_segments(self.prefix)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
        self._forget()

    # ------------------------------------------------------------------ control
    def close(self):
        """No new tasks; the workers stop once every task is done."""
        self.closing = True
        self._poke()

    def terminate(self):
        """Stop now: workers are killed, unfinished tasks fail."""
        self.terminating = True
        self.closing = True
        self._poke()

    def join(self, timeout=None):
        if self._manager is not threading.current_thread():
            self._manager.join(timeout)
        return not self._manager.is_alive()

    def worker_pids(self):
        return [p.pid for p in list(self._workers.values())]


