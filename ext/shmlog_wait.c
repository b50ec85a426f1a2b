/* shmlog_wait.c - waiting for records: one partition or many at once
 * (futex_waitv, split into groups past its 128 words), the spin / adaptive /
 * sleep modes and the waiters-flag protocol producers wake by.  Part of
 * shmlog.c's translation unit (it #includes this file): it uses the log's
 * private view and helpers. */

/* ---- wait ---------------------------------------------------------------- */
static inline int readable(log_view *v, uint64_t o)
{
    if (o < v->start) return 1;
    /* acquire: pairs with write_record's release-store / repair CAS */
    uint64_t t = atom_load_acquire64(&v->slots[o & v->mask].tag);
    int64_t dl = lap_diff(tag_lap(t), lap_of(v, o));
    if (dl > 0 || (dl == 0 && tag_state(t) != ST_CLAIMED)) return 1;
    return is_deleted(v); /* only while waiting: the tag comes first on the hot path */
}

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
struct futex_waitv_arg { uint64_t val; uint64_t uaddr; uint32_t flags; uint32_t reserved; };
#define FUTEX2_SIZE_U32_FLAG 0x02
#define FUTEX2_PRIVATE_FLAG 128 /* FUTEX2_PRIVATE: the per-call done word below is process-private */
#define WAITV_MAX 128 /* the kernel's FUTEX_WAITV_MAX */

/* The optional extra word of log_wait_many_ex: a u32 futex in another
 * segment (a group member's notify word), bounds-checked like word_at. */
static inline uint32_t *word32_at(void *base, uint64_t size, uint64_t off)
{
    if (!base || (off & 3) || off > size || size - off < 4) return NULL;
    return (uint32_t *)((uint8_t *)base + off);
}

/* index of a readable view, -2 if an extra word moved off its xval, else -1 */
static int any_readable(log_view **views, const uint64_t *offsets, int n, uint32_t *const *extras,
                        const uint32_t *xvals, int nx)
{
    for (int k = 0; k < nx; k++)
        /* acquire: pairs with shm_futex_wake32's seq_cst increment */
        if (__atomic_load_n(extras[k], __ATOMIC_ACQUIRE) != xvals[k]) return -2;
    for (int i = 0; i < n; i++)
        if (readable(views[i], offsets[i])) return i;
    return -1;
}

/* ---- sleeping on more partitions than futex_waitv takes ------------------
 * futex_waitv sleeps on at most 128 words.  A wait on more partitions (a
 * consumer assigned hundreds) is split into groups: the calling thread
 * sleeps on the first group (and the extra word), and one short-lived helper
 * thread per further group of 127 sleeps on its own.  Every sleeper also
 * waits on a process-private `done` word, 0 while all sleep: the first one
 * to wake - one of its partitions' futex words moved, the extra word moved,
 * or the chunk's deadline passed - stores 1 there and wakes the others, so
 * they all return together and the caller rescans every partition.
 * Each group runs the same waiters / futex_seq protocol as a lone sleeper
 * (raise the waiters flag, read the word, re-check, sleep on the value read), so
 * no wake-up is lost on any partition and nothing spins: an idle wait costs
 * one thread start per 127 partitions per chunk (<= 100 ms).  Producers are
 * untouched: they still wake one word per partition.  Chunking the waits
 * with short timeouts instead would spin (or see partition 129 late), and a
 * per-consumer notify word would cost every append a second wake.  Helpers
 * block every signal, so Ctrl-C interrupts the caller's own sleep, which
 * then ends the helpers' too. */
#include <pthread.h>

struct wait_group {
    log_view **views;
    const uint64_t *offsets;
    int n;
    uint32_t *const *extras; /* the caller's group only */
    const uint32_t *xvals;
    int nx;
    uint32_t *done;    /* NULL when one group covers everything */
    const struct timespec *abs; /* CLOCK_MONOTONIC end of this sleep */
    int r;             /* any_readable's answer for this group, before sleeping */
};

/* The sleeper's half of the waiters / futex_seq protocol, into w[0 .. n + nx):
 * raise each partition's waiters flag and read its futex word, then the
 * extra words with their expected values.  The caller checks readability
 * after this and sleeps on w only if nothing is: a record committed after
 * the check moves a word the sleep compares. */
static int waitv_fill(log_view **views, int n, uint32_t *const *extras, const uint32_t *xvals, int nx,
                      struct futex_waitv_arg *w)
{
    int nw = 0;
    for (int i = 0; i < n; i++, nw++) {
        atom_store_seqcst32(&views[i]->h->waiters, 1); /* the flag: pairs with wake_readers' load and clear */
        atom_fence_seqcst(); /* pairs with wake_readers' fence: it sees the flag or we its record */
        w[nw].val = atom_load_seqcst32(&views[i]->h->futex_seq); /* pairs with wake_readers' increment */
        w[nw].uaddr = (uint64_t)(uintptr_t)&views[i]->h->futex_seq;
        w[nw].flags = FUTEX2_SIZE_U32_FLAG; /* shared: no FUTEX2_PRIVATE */
        w[nw].reserved = 0;
    }
    for (int k = 0; k < nx; k++, nw++) { /* the kernel compares each to its xval: a wake between our check
                                          * and the sleep is not lost */
        w[nw].val = xvals[k];
        w[nw].uaddr = (uint64_t)(uintptr_t)extras[k];
        w[nw].flags = FUTEX2_SIZE_U32_FLAG;
        w[nw].reserved = 0;
    }
    return nw;
}

/* For a sleep elsewhere (shmaio.c's io_uring futex wait): the arguments
 * checked as log_wait_many_xv checks them, the protocol's first half into
 * waitv (room for cap entries of the kernel's struct futex_waitv), then the
 * readiness check.  Returns any_readable's answer (>= 0 a readable view,
 * -2 an extra word moved, -1: sleep on waitv[0 .. n + nx)), or LOG_E_BAD_ARG. */
int log_waitv_prep(log_view **views, const uint64_t *offsets, int n, void **xbases, const uint64_t *xsizes,
                   const uint64_t *xoffs, const uint32_t *xvals, int nx, void *waitv, int cap)
{
    uint32_t *extras[LOG_WAIT_XMAX];
    if (nx < 0 || nx > LOG_WAIT_XMAX || (nx && (!xbases || !xsizes || !xoffs || !xvals))) return LOG_E_BAD_ARG;
    if (!views || !offsets || !waitv || n < 0 || n + nx > cap || (n == 0 && !nx)) return LOG_E_BAD_ARG;
    for (int k = 0; k < nx; k++)
        if (!(extras[k] = word32_at(xbases[k], xsizes[k], xoffs[k]))) return LOG_E_BAD_ARG;
    for (int i = 0; i < n; i++)
        if (!views[i] || !views[i]->h) return LOG_E_BAD_ARG;
    int r = any_readable(views, offsets, n, extras, xvals, nx);
    if (r != -1) return r;
    waitv_fill(views, n, extras, xvals, nx, (struct futex_waitv_arg *)waitv);
    return any_readable(views, offsets, n, extras, xvals, nx);
}

static void sleep_group(struct wait_group *g)
{
    struct futex_waitv_arg w[WAITV_MAX];
    int nw = waitv_fill(g->views, g->n, g->extras, g->xvals, g->nx, w);
    if (g->done) { /* compared to 0 by the kernel: a sibling that woke first is not missed */
        w[nw].val = 0;
        w[nw].uaddr = (uint64_t)(uintptr_t)g->done;
        w[nw].flags = FUTEX2_SIZE_U32_FLAG | FUTEX2_PRIVATE_FLAG;
        w[nw].reserved = 0;
        nw++;
    }
    g->r = any_readable(g->views, g->offsets, g->n, g->extras, g->xvals, g->nx);
    /* acquire: pairs with a sibling's release store of done */
    if (g->r == -1 && !(g->done && __atomic_load_n(g->done, __ATOMIC_ACQUIRE))) {
        long rc = syscall(SYS_futex_waitv, w, (unsigned)nw, 0, g->abs, CLOCK_MONOTONIC);
        if (rc < 0 && errno == ENOSYS) { /* old kernel: sleep on the first word, briefly */
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t left = (int64_t)(g->abs->tv_sec - now.tv_sec) * 1000000000LL + (g->abs->tv_nsec - now.tv_nsec);
            futex_wait((uint32_t *)(uintptr_t)w[0].uaddr, (uint32_t)w[0].val,
                       left < 0 ? 0 : left < 1000000 ? left : 1000000);
        }
    }
    /* no clearing of the waiters flags: the next waker of each partition does
     * (another sleeper may still need it), so a sleeper killed here costs one wake-up */
    if (g->done) {
        __atomic_store_n(g->done, 1u, __ATOMIC_RELEASE); /* pairs with the acquire load above */
        syscall(SYS_futex, g->done, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    }
}

static void *sleep_group_thread(void *arg)
{
    sleep_group((struct wait_group *)arg);
    return NULL;
}

/* One sleep (until abs) over every group: groups[0] in this thread, the
 * rest in helper threads.  A helper that cannot start leaves its group
 * unwatched, so this sleep is then cut to 1 ms (slow, never blind). */
static void sleep_groups(struct wait_group *groups, pthread_t *tids, int ngroups, uint32_t *done,
                         const struct timespec *abs)
{
    __atomic_store_n(done, 0u, __ATOMIC_RELAXED); /* before the helpers start: pthread_create orders it */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* helpers inherit it: signals go to the caller's thread */
    pthread_attr_t attr;
    int have_attr = pthread_attr_init(&attr) == 0;
    if (have_attr) pthread_attr_setstacksize(&attr, 64 * 1024);
    int started = 1;
    for (int k = 1; k < ngroups; k++, started++)
        if (pthread_create(&tids[k], have_attr ? &attr : NULL, sleep_group_thread, &groups[k]) != 0) break;
    if (have_attr) pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    struct timespec mine = *abs; /* our own copy: the helpers read *abs concurrently */
    if (started < ngroups) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        now.tv_nsec += 1000000;
        if (now.tv_nsec >= 1000000000L) { now.tv_sec++; now.tv_nsec -= 1000000000L; }
        if (now.tv_sec < mine.tv_sec || (now.tv_sec == mine.tv_sec && now.tv_nsec < mine.tv_nsec)) mine = now;
    }
    groups[0].abs = &mine;
    sleep_group(&groups[0]);
    for (int k = 1; k < started; k++) pthread_join(tids[k], NULL);
}

int log_wait_many(log_view **views, const uint64_t *offsets, int n, int64_t timeout_ns, int mode, int64_t spin_ns)
{
    return log_wait_many_ex(views, offsets, n, timeout_ns, mode, spin_ns, NULL, 0, 0, 0);
}

int log_wait_many_ex(log_view **views, const uint64_t *offsets, int n, int64_t timeout_ns, int mode, int64_t spin_ns,
                     void *xbase, uint64_t xsize, uint64_t xoff, uint32_t xval)
{
    void *bases[1] = {xbase};
    uint64_t sizes[1] = {xsize}, offs[1] = {xoff};
    uint32_t vals[1] = {xval};
    return log_wait_many_xv(views, offsets, n, timeout_ns, mode, spin_ns, bases, sizes, offs, vals, xbase ? 1 : 0);
}

int log_wait_many_xv(log_view **views, const uint64_t *offsets, int n, int64_t timeout_ns, int mode, int64_t spin_ns,
                     void **xbases, const uint64_t *xsizes, const uint64_t *xoffs, const uint32_t *xvals, int nx)
{
    uint32_t *extras[LOG_WAIT_XMAX];
    if (nx < 0 || nx > LOG_WAIT_XMAX || (nx && (!xbases || !xsizes || !xoffs || !xvals))) return LOG_E_BAD_ARG;
    for (int k = 0; k < nx; k++)
        if (!(extras[k] = word32_at(xbases[k], xsizes[k], xoffs[k]))) return LOG_E_BAD_ARG;
    if (!views || !offsets || n < 0 || n > LOG_WAIT_MAX || (n == 0 && !nx)) return LOG_E_BAD_ARG;
    for (int i = 0; i < n; i++)
        if (!views[i] || !views[i]->h) return LOG_E_BAD_ARG;
    int r = any_readable(views, offsets, n, extras, xvals, nx);
    if (r != -1) return r;
    int64_t start = now_ns(), deadline = timeout_ns < 0 ? -1 : start + timeout_ns;
    if (mode == LOG_WAIT_SPIN) spin_ns = timeout_ns < 0 ? INT64_MAX : timeout_ns;
    else if (mode == LOG_WAIT_SLEEP) spin_ns = 0;
    else if (spin_ns < 0) spin_ns = 50000;
    for (uint32_t i = 1;; i++) {
        if ((r = any_readable(views, offsets, n, extras, xvals, nx)) != -1) return r;
        cpu_relax();
        if ((i & 15) == 0) {
            int64_t t = now_ns();
            if (deadline >= 0 && t >= deadline) return -1;
            if (t - start >= spin_ns) break;
        }
    }
    /* the groups: the first (ours) takes the extra words, and the done word
     * when there are several; the others take WAITV_MAX - 1 partitions each */
    uint32_t done = 0;
    struct wait_group one, *groups = &one;
    pthread_t *tids = NULL;
    int ngroups = 1;
    if (n + nx > WAITV_MAX) {
        int first = WAITV_MAX - 1 - nx; /* >= 0: nx <= LOG_WAIT_XMAX < WAITV_MAX */
        ngroups = 1 + (n - first + WAITV_MAX - 2) / (WAITV_MAX - 1);
        groups = calloc((size_t)ngroups, sizeof *groups);
        tids = calloc((size_t)ngroups, sizeof *tids);
        if (!groups || !tids) {
            free(groups);
            free(tids);
            return LOG_E_BAD_ARG; /* out of memory: the caller raises */
        }
        for (int k = 0, at = 0; k < ngroups; k++) {
            int cnt = k == 0 ? first : WAITV_MAX - 1;
            if (cnt > n - at) cnt = n - at;
            groups[k] = (struct wait_group){views + at, offsets + at, cnt, k == 0 ? extras : NULL, xvals,
                                            k == 0 ? nx : 0, &done, NULL, -1};
            at += cnt;
        }
    } else {
        one = (struct wait_group){views, offsets, n, extras, xvals, nx, NULL, NULL, -1};
    }
    for (;;) {
        int64_t left = deadline < 0 ? -1 : deadline - now_ns();
        if (deadline >= 0 && left <= 0) {
            r = any_readable(views, offsets, n, extras, xvals, nx);
            break;
        }
        int64_t chunk = 100000000; /* bounded, as in log_wait */
        if (left >= 0 && left < chunk) chunk = left;
        struct timespec abs;
        clock_gettime(CLOCK_MONOTONIC, &abs);
        abs.tv_sec += chunk / 1000000000LL;
        abs.tv_nsec += chunk % 1000000000LL;
        if (abs.tv_nsec >= 1000000000L) { abs.tv_sec++; abs.tv_nsec -= 1000000000L; }
        for (int k = 0; k < ngroups; k++) groups[k].abs = &abs;
        if (ngroups == 1) {
            sleep_group(&one);
            r = one.r;
        } else {
            sleep_groups(groups, tids, ngroups, &done, &abs);
            r = -1;
        }
        if (r != -1 || (r = any_readable(views, offsets, n, extras, xvals, nx)) != -1) break;
    }
    if (groups != &one) {
        free(groups);
        free(tids);
    }
    return r;
}

int log_wait(log_view *v, uint64_t offset, int64_t timeout_ns, int mode, int64_t spin_ns)
{
    /* one partition is the one-element case of waiting on many */
    int r = log_wait_many(&v, &offset, 1, timeout_ns, mode, spin_ns);
    return r == 0 ? LOG_OK : r == -1 ? LOG_NOT_YET : r;
}
