/* shmrobust.c - the early notice of a pool worker's death: one robust,
 * process-shared pthread mutex per worker slot, in the pool's status
 * segment (broker/pool/_status.py owns the layout and creates the segment).
 *
 * Why.  The parent's sentinel of a worker (pipe, pidfd) becomes readable at
 * the very end of the worker's exit: do_exit runs exit_mm - the process's
 * memory is torn down (mmput) - before exit_files and exit_notify.  That is
 * 1.5-3 ms for a small worker and grows with its memory (a worker holding
 * gigabytes takes far longer).  Earlier, in exit_mm_release (before mmput),
 * the kernel walks each exiting thread's robust futex list: every robust
 * mutex the thread holds gets FUTEX_OWNER_DIED and one waiter is woken, who
 * locks it with EOWNERDEAD.  A worker's main thread locks its slot's mutex
 * at start and unlocks it only when it exits cleanly; a watcher thread of
 * the parent waits to lock it and so hears of a death before the teardown.
 *
 * Safety (what the parent may do on EOWNERDEAD: give the worker's tasks to
 * others at once).  EOWNERDEAD for the worker's main thread means that
 * thread is inside do_exit past exit_mm_release (or past exec, whose
 * exec_mm_release walks the list too): it never runs user code again.  The
 * main thread is the only one of a worker that takes, acks or writes
 * results (broker/pool/_worker.py), so after EOWNERDEAD no ack or result of
 * that pid can come: giving its leases back cannot race with it.
 *
 * Slot layout (SHM_ROBUST_SLOT = 128 bytes, 64-aligned):
 *   0   pthread_mutex_t: robust, process-shared, error-checking (<= 64 bytes)
 *   64  u32 holder: pid of the worker holding the mutex; 0 none.  A futex
 *       word: the watcher sleeps on it while it is 0, a slot's next worker
 *       while it still holds the last one's pid.
 *   68  reserved
 * Holder protocol (slot reuse: the replacement worker locks the same mutex):
 *   worker   wait until holder == 0 (the watcher heard the previous
 *            holder's end); lock; holder = pid (release); wake holder.  At a clean exit
 *            (Python's, which may unmap the segment: the thread's robust
 *            list must not point into unmapped memory, or the kernel cannot
 *            mark the mutex and it stays locked for good) it unlocks: the
 *            watcher acquires it - a clean exit, not a death.
 *   watcher  while holder == 0: sleep on it.  Then lock (timed, in chunks):
 *            EOWNERDEAD or acquired -> read holder, clear it to 0 WHILE
 *            HOLDING the mutex, consistent, unlock, wake a next worker
 *            waiting for the 0; report the pid read.  (A pool whose watcher
 *            of a slot stopped clears the word itself before it starts that
 *            slot's next worker: broker/pool/_manager.py.)
 *   Clearing under the mutex: the next worker stores its pid only after it
 *   locked the mutex, i.e. after our unlock, so the clear never erases a
 *   newer holder, and the watcher never takes the free mutex again before
 *   the next worker has it (it sleeps on holder == 0 meanwhile).  A worker
 *   that dies between its lock and its store leaves holder 0 and the mutex
 *   owner-died: the next worker's lock gets EOWNERDEAD, makes it consistent
 *   and holds it (it took no task: nothing to report).
 *
 * Nothing read from the segment is trusted: the slot index and the area
 * offset are bounds-checked against the mapping; the mutex's kind is
 * compared with the kind this glibc gives such a mutex before any pthread
 * call (a garbage kind could make glibc take its PI path, which can block
 * for good or assert); glibc's errors on a garbage mutex (EINVAL,
 * ENOTRECOVERABLE, EDEADLK, EPERM) come back as LOG_E_BAD_LAYOUT.  What no
 * check can stop: a process that rewrites the mutex's robust-list pointers
 * in the microseconds a watcher holds it (glibc's unlock writes through
 * them) - only the pool's own processes can write the segment (0600).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#include "shmlog.h"
#include "shmlog_atomic.h"

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
#define HAVE_CLOCKLOCK 1
#endif

struct robust_slot {
    pthread_mutex_t m;
    uint8_t pad0[64 - sizeof(pthread_mutex_t)];
    uint32_t holder; /* 64: futex word */
    uint32_t pad1;
    uint8_t pad2[SHM_ROBUST_SLOT - 72];
};
_Static_assert(sizeof(pthread_mutex_t) <= 64, "pthread_mutex_t fits its 64 bytes");
_Static_assert(offsetof(struct robust_slot, holder) == 64, "holder word");
_Static_assert(sizeof(struct robust_slot) == SHM_ROBUST_SLOT, "robust slot size");

/* Slot i of the area at base + area (slots of them), or NULL if any of it
 * lies outside the mapping [base, base + size). */
static struct robust_slot *slot_at(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i)
{
    if (!base || ((uintptr_t)base & 63) || (area & 63) || !slots || slots > SHM_ROBUST_MAX_SLOTS || i >= slots)
        return NULL;
    if (area > size || (size - area) / SHM_ROBUST_SLOT < slots) return NULL;
    return (struct robust_slot *)((uint8_t *)base + area + i * SHM_ROBUST_SLOT);
}

static int make_attr(pthread_mutexattr_t *a)
{
    if (pthread_mutexattr_init(a)) return -1;
    if (pthread_mutexattr_setpshared(a, PTHREAD_PROCESS_SHARED) || pthread_mutexattr_setrobust(a, PTHREAD_MUTEX_ROBUST)
        || pthread_mutexattr_settype(a, PTHREAD_MUTEX_ERRORCHECK)) {
        pthread_mutexattr_destroy(a);
        return -1;
    }
    return 0;
}

#ifdef __GLIBC__
/* The __kind word glibc writes into a mutex made by make_attr: from a
 * private template, once per process. */
static pthread_once_t kind_once = PTHREAD_ONCE_INIT;
static int kind_want = -1;
static void find_kind(void)
{
    pthread_mutexattr_t a;
    pthread_mutex_t t;
    if (make_attr(&a)) return;
    if (!pthread_mutex_init(&t, &a)) {
        kind_want = t.__data.__kind;
        pthread_mutex_destroy(&t);
    }
    pthread_mutexattr_destroy(&a);
}
/* Is the shared mutex of the kind we make?  Relaxed: the kind is written
 * once by init, before any user of the mutex starts; this guards against
 * garbage, not against a race. */
static int kind_ok(pthread_mutex_t *m)
{
    pthread_once(&kind_once, find_kind);
    return kind_want >= 0 && (int)atom_load_relaxed32((const uint32_t *)&m->__data.__kind) == kind_want;
}
#else
static int kind_ok(pthread_mutex_t *m) { (void)m; return 1; }
#endif

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Lock m, waiting at most timeout_ns (>= 0): pthread's 0 / EOWNERDEAD /
 * ETIMEDOUT / an error. */
static int lock_for(pthread_mutex_t *m, int64_t timeout_ns)
{
    struct timespec ts;
#ifdef HAVE_CLOCKLOCK
    clock_gettime(CLOCK_MONOTONIC, &ts);
#else
    /* No pthread_mutex_clocklock (glibc < 2.30, other libcs): timedlock's
     * deadline is on CLOCK_REALTIME, so a wall-clock step moves it.  That is
     * why callers wait in short chunks and keep their own deadline on
     * CLOCK_MONOTONIC: a step forward ends one chunk early (the caller just
     * waits again), a step back stretches that one chunk by the step. */
    clock_gettime(CLOCK_REALTIME, &ts);
#endif
    ts.tv_sec += timeout_ns / 1000000000;
    ts.tv_nsec += timeout_ns % 1000000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
#ifdef HAVE_CLOCKLOCK
    return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
#else
    return pthread_mutex_timedlock(m, &ts);
#endif
}

int shm_robust_init(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i)
{
    struct robust_slot *s = slot_at(base, size, area, slots, i);
    if (!s) return LOG_E_BAD_ARG;
    pthread_mutexattr_t a;
    if (make_attr(&a)) return LOG_E_BAD_LAYOUT;
    memset(s, 0, sizeof *s);
    int rc = pthread_mutex_init(&s->m, &a);
    pthread_mutexattr_destroy(&a);
    /* no fence of our own: the creator writes the magic after every slot's
     * init (PoolStatus.create), and the processes that use the mutexes
     * (workers, the creator's threads) start after the segment is made: the
     * process or thread creation orders our stores before their loads */
    return rc ? LOG_E_BAD_LAYOUT : LOG_OK;
}

int shm_robust_hold(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i, uint32_t pid,
                    int64_t timeout_ns)
{
    struct robust_slot *s = slot_at(base, size, area, slots, i);
    if (!s || !pid || timeout_ns < 0) return LOG_E_BAD_ARG;
    if (!kind_ok(&s->m)) return LOG_E_BAD_LAYOUT;
    /* The previous holder's end must be heard before we lock: its pid stays in
     * holder until the watcher takes the mutex and clears it.  Locking first
     * (the mutex is free once a holder let go, or it may be free before the
     * watcher's next lock attempt) would overwrite that pid: a clean exit, or
     * a death, nobody hears of. */
    int64_t now = mono_ns(), end = timeout_ns > INT64_MAX - now ? INT64_MAX : now + timeout_ns;
    for (;;) {
        /* acquire: pairs with the watcher's release store of 0 (seeing it, the
         * watcher's lock of the mutex came before) */
        uint32_t h = atom_load_acquire32(&s->holder);
        if (h == 0) break;
        int64_t left = end - mono_ns();
        if (left <= 0) return LOG_E_TIMEOUT;
        struct timespec ts = { left / 1000000000, left % 1000000000 };
        /* sleeps only while the word is still h (the kernel compares): pairs
         * with the watcher's store of 0 then FUTEX_WAKE */
        syscall(SYS_futex, &s->holder, FUTEX_WAIT, h, &ts, NULL, 0);
    }
    int64_t left = end - mono_ns();
    int rc = lock_for(&s->m, left > 0 ? left : 0);
    int prev_died = 0;
    if (rc == EOWNERDEAD) { /* a worker died between its lock and its holder store: it took nothing */
        if (pthread_mutex_consistent(&s->m)) { /* not robust after all: a garbage mutex */
            pthread_mutex_unlock(&s->m); /* we hold it: never leave it locked (it is unrecoverable now) */
            return LOG_E_BAD_LAYOUT;
        }
        prev_died = 1;
        rc = 0;
    }
    if (rc == ETIMEDOUT) return LOG_E_TIMEOUT;
    if (rc) return LOG_E_BAD_LAYOUT; /* EINVAL, ENOTRECOVERABLE, EDEADLK: not a mutex we made */
    /* release: after our lock (whose CAS wrote the mutex word); pairs with the
     * watcher's acquire load of holder, so a watcher that sees our pid finds
     * the mutex locked by us (or owner-died) */
    atom_store_release32(&s->holder, pid);
    /* a watcher sleeping while holder == 0: the kernel compares the word, so a
     * watcher that read 0 before our store is woken or does not sleep */
    syscall(SYS_futex, &s->holder, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    return prev_died;
}

int shm_robust_watch(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i, int64_t timeout_ns,
                     uint32_t *pid)
{
    struct robust_slot *s = slot_at(base, size, area, slots, i);
    if (!s || !pid || timeout_ns < 0) return LOG_E_BAD_ARG;
    *pid = 0;
    /* acquire: pairs with shm_robust_hold's release store (seeing the pid, we
     * see the holder's lock of the mutex) */
    if (atom_load_acquire32(&s->holder) == 0) {
        struct timespec ts = { timeout_ns / 1000000000, timeout_ns % 1000000000 };
        /* sleeps only while the word is still 0 (the kernel compares): pairs
         * with the holder's store then FUTEX_WAKE */
        syscall(SYS_futex, &s->holder, FUTEX_WAIT, 0u, &ts, NULL, 0);
        return SHM_ROBUST_NO_HOLDER; /* the caller looks again */
    }
    if (!kind_ok(&s->m)) return LOG_E_BAD_LAYOUT;
    int rc = lock_for(&s->m, timeout_ns);
    if (rc == ETIMEDOUT) return SHM_ROBUST_TIMEOUT;
    if (rc != 0 && rc != EOWNERDEAD) return LOG_E_BAD_LAYOUT;
    /* We hold the mutex.  acquire: pairs with the holder's release store (the
     * dead holder's pid, if it stored it before dying) */
    uint32_t h = atom_load_acquire32(&s->holder);
    /* clear it while we hold the mutex (see the holder protocol).  release:
     * pairs with the next holder's acquire load of 0 before its lock, which
     * then waits for our unlock */
    atom_store_release32(&s->holder, 0u);
    int bad = rc == EOWNERDEAD && pthread_mutex_consistent(&s->m) != 0; /* a garbage mutex: unrecoverable */
    int unlock_failed = pthread_mutex_unlock(&s->m) != 0;
    /* a next holder asleep until holder is 0 (shm_robust_hold): the kernel
     * compares the word, so one that read the old pid is woken or does not sleep */
    syscall(SYS_futex, &s->holder, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    if (unlock_failed || bad) return LOG_E_BAD_LAYOUT; /* we held it: never left locked */
    *pid = h;
    return rc == EOWNERDEAD ? SHM_ROBUST_OWNER_DIED : SHM_ROBUST_ACQUIRED;
}

int shm_robust_let_go(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i)
{
    struct robust_slot *s = slot_at(base, size, area, slots, i);
    if (!s) return LOG_E_BAD_ARG;
    if (!kind_ok(&s->m)) return LOG_E_BAD_LAYOUT;
    /* the holder word stays: the watcher that now locks the free mutex reads
     * and clears it (ACQUIRED), under the mutex as after a death.  The
     * unlock's release orders our earlier stores before its lock */
    return pthread_mutex_unlock(&s->m) ? LOG_E_BAD_LAYOUT : LOG_OK; /* EPERM: we do not hold it */
}

void shm_robust_wake(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i)
{
    struct robust_slot *s = slot_at(base, size, area, slots, i);
    /* a wake without a store: a watcher asleep on holder == 0 returns
     * NO_HOLDER and checks its stop flag */
    if (s) syscall(SYS_futex, &s->holder, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void shm_robust_clear(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i)
{
    struct robust_slot *s = slot_at(base, size, area, slots, i);
    if (!s) return;
    /* release: pairs with a next holder's acquire load of 0 (shm_robust_hold),
     * as the watcher's clear does */
    atom_store_release32(&s->holder, 0u);
    /* a next holder asleep until the word is 0: the kernel compares it */
    syscall(SYS_futex, &s->holder, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
