/* shmaio.c - the asyncio bridge's kernel path: partition futex waits that
 * io_uring completes (IORING_OP_FUTEX_WAITV, Linux >= 6.7).
 *
 * An event loop owns one ring.  A coroutine that finds nothing to read
 * submits one vectored futex wait over its partitions' futex words and its
 * extra words (the same waiters / futex_seq protocol as a sleeping reader,
 * shmlog.c's log_waitv_prep).  A producer's futex wake completes it in the
 * kernel, which posts a completion and signals the eventfd registered with
 * the ring - the one the loop's selector watches.  So a record wakes the
 * loop's own thread, once: no helper thread, no GIL hand-off on the way.
 * Where io_uring or the opcode is missing (older kernels, seccomp profiles
 * that forbid io_uring), aio_ring_open fails and broker.aio falls back to
 * its waker thread.
 *
 * One thread uses a ring (the loop's): the submission and completion
 * indices below are shared with the kernel only.  The structures are the
 * kernel's stable ABI, spelled out here so a build does not depend on how
 * new the installed linux headers are. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shmlog.h"

/* shmlog.c: the sleeper's protocol for a sleep elsewhere (declared here: not part of the cdef) */
int log_waitv_prep(log_view **views, const uint64_t *offsets, int n, void **xbases, const uint64_t *xsizes,
                   const uint64_t *xoffs, const uint32_t *xvals, int nx, void *waitv, int cap);

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#define SYS_io_uring_enter 426
#define SYS_io_uring_register 427
#endif

#define SB_OP_ASYNC_CANCEL 14
#define SB_OP_FUTEX_WAITV 53
#define SB_REGISTER_EVENTFD 4
#define SB_REGISTER_PROBE 8
#define SB_OP_SUPPORTED 1u
#define SB_FEAT_SINGLE_MMAP 1u
#define SB_SQ_CQ_OVERFLOW 2u /* IORING_SQ_CQ_OVERFLOW: completions wait in the kernel for an enter */
#define SB_ENTER_GETEVENTS 1u
#define SB_OFF_SQ_RING 0ULL
#define SB_OFF_CQ_RING 0x8000000ULL
#define SB_OFF_SQES 0x10000000ULL
#define SB_WAITV_MAX 128 /* the kernel's FUTEX_WAITV_MAX */

struct sb_sqring_offsets { uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1; uint64_t user_addr; };
struct sb_cqring_offsets { uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1; uint64_t user_addr; };
struct sb_params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd, resv[3];
    struct sb_sqring_offsets sq_off;
    struct sb_cqring_offsets cq_off;
};
struct sb_sqe {
    uint8_t opcode, flags;
    uint16_t ioprio;
    int32_t fd;
    uint64_t off, addr;
    uint32_t len, op_flags;
    uint64_t user_data;
    uint16_t buf_index, personality;
    int32_t file_index;
    uint64_t addr3, pad2;
};
struct sb_cqe { uint64_t user_data; int32_t res; uint32_t flags; };
struct sb_probe_op { uint8_t op, resv; uint16_t flags; uint32_t resv2; };
struct sb_probe { uint8_t last_op, ops_len; uint16_t resv; uint32_t resv2[3]; struct sb_probe_op ops[256]; };
struct sb_waitv { uint64_t val, uaddr; uint32_t flags, reserved; }; /* the kernel's struct futex_waitv */

_Static_assert(sizeof(struct sb_sqe) == 64, "io_uring_sqe is 64 bytes");
_Static_assert(sizeof(struct sb_cqe) == 16, "io_uring_cqe is 16 bytes");
_Static_assert(sizeof(struct sb_params) == 120, "io_uring_params is 120 bytes");

struct aio_ring {
    int fd;
    void *sq_map, *cq_map;
    size_t sq_len, cq_len;
    struct sb_sqe *sqes;
    size_t sqes_len;
    uint32_t *sq_head, *sq_tail, *sq_flags, *sq_array, sq_mask, sq_entries;
    uint32_t *cq_head, *cq_tail, cq_mask;
    struct sb_cqe *cqes;
};

static int enter(int fd, unsigned to_submit, unsigned flags)
{
    for (;;) {
        long r = syscall(SYS_io_uring_enter, fd, to_submit, 0, flags, NULL, 0);
        if (r >= 0) return (int)r;
        if (errno != EINTR) return -errno;
    }
}

void aio_ring_close(aio_ring *r)
{
    if (!r) return;
    if (r->sqes) munmap(r->sqes, r->sqes_len);
    if (r->cq_map && r->cq_map != r->sq_map) munmap(r->cq_map, r->cq_len);
    if (r->sq_map) munmap(r->sq_map, r->sq_len);
    if (r->fd >= 0) close(r->fd); /* the kernel cancels the waits still pending */
    free(r);
}

aio_ring *aio_ring_open(unsigned entries, int eventfd, int *err)
{
    struct sb_params p;
    memset(&p, 0, sizeof p);
    aio_ring *r = calloc(1, sizeof *r);
    if (!r) {
        *err = ENOMEM;
        return NULL;
    }
    r->fd = (int)syscall(SYS_io_uring_setup, entries, &p);
    if (r->fd < 0) {
        *err = errno;
        free(r);
        return NULL;
    }
    struct sb_probe *probe = calloc(1, sizeof *probe);
    if (!probe) {
        *err = ENOMEM;
        goto fail;
    }
    long pr = syscall(SYS_io_uring_register, r->fd, SB_REGISTER_PROBE, probe, 256);
    int ok = pr >= 0 && probe->last_op >= SB_OP_FUTEX_WAITV && probe->ops_len > SB_OP_FUTEX_WAITV &&
             (probe->ops[SB_OP_FUTEX_WAITV].flags & SB_OP_SUPPORTED) &&
             (probe->ops[SB_OP_ASYNC_CANCEL].flags & SB_OP_SUPPORTED);
    free(probe);
    if (!ok) {
        *err = ENOSYS; /* a kernel without IORING_OP_FUTEX_WAITV */
        goto fail;
    }
    r->sq_len = p.sq_off.array + p.sq_entries * sizeof(uint32_t);
    r->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct sb_cqe);
    if (p.features & SB_FEAT_SINGLE_MMAP) {
        if (r->cq_len > r->sq_len) r->sq_len = r->cq_len;
        r->cq_len = r->sq_len;
    }
    r->sq_map = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, SB_OFF_SQ_RING);
    if (r->sq_map == MAP_FAILED) {
        r->sq_map = NULL;
        *err = errno;
        goto fail;
    }
    if (p.features & SB_FEAT_SINGLE_MMAP) r->cq_map = r->sq_map;
    else {
        r->cq_map = mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, SB_OFF_CQ_RING);
        if (r->cq_map == MAP_FAILED) {
            r->cq_map = NULL;
            *err = errno;
            goto fail;
        }
    }
    r->sqes_len = p.sq_entries * sizeof(struct sb_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, SB_OFF_SQES);
    if (r->sqes == MAP_FAILED) {
        r->sqes = NULL;
        *err = errno;
        goto fail;
    }
    char *sq = r->sq_map, *cq = r->cq_map;
    r->sq_head = (uint32_t *)(sq + p.sq_off.head);
    r->sq_tail = (uint32_t *)(sq + p.sq_off.tail);
    r->sq_flags = (uint32_t *)(sq + p.sq_off.flags);
    r->sq_array = (uint32_t *)(sq + p.sq_off.array);
    r->sq_mask = *(uint32_t *)(sq + p.sq_off.ring_mask);
    r->sq_entries = p.sq_entries;
    r->cq_head = (uint32_t *)(cq + p.cq_off.head);
    r->cq_tail = (uint32_t *)(cq + p.cq_off.tail);
    r->cq_mask = *(uint32_t *)(cq + p.cq_off.ring_mask);
    r->cqes = (struct sb_cqe *)(cq + p.cq_off.cqes);
    if (eventfd >= 0 && syscall(SYS_io_uring_register, r->fd, SB_REGISTER_EVENTFD, &eventfd, 1) < 0) {
        *err = errno;
        goto fail;
    }
    return r;
fail:
    aio_ring_close(r);
    return NULL;
}

int aio_ring_fd(aio_ring *r)
{
    return r ? r->fd : -1;
}

/* One SQE, filled by the caller, then submitted.  0, or -errno. */
static int push(aio_ring *r, const struct sb_sqe *e)
{
    uint32_t tail = *r->sq_tail; /* only this thread moves the tail */
    /* acquire: pairs with the kernel's release store of the head as it consumes entries */
    uint32_t head = __atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE);
    if (tail - head >= r->sq_entries) return -EBUSY; /* cannot happen: each push is submitted at once */
    uint32_t i = tail & r->sq_mask;
    r->sqes[i] = *e;
    r->sq_array[i] = i;
    /* release: the entry before the tail that publishes it; pairs with the kernel's acquire load of the tail */
    __atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
    int n = enter(r->fd, 1, 0);
    if (n == 1) return 0;
    /* not consumed (EAGAIN, ENOMEM): take the entry back, so the next push does not submit it in its stead -
     * a wait's entry points at its caller's stack.  Safe: only this thread submits, and without SQPOLL the
     * kernel consumes entries only inside our enter.  acquire: pairs with the kernel's release of the head */
    if (__atomic_load_n(r->sq_head, __ATOMIC_ACQUIRE) == tail)
        __atomic_store_n(r->sq_tail, tail, __ATOMIC_RELEASE); /* release: pairs with the kernel's tail load */
    return n < 0 ? n : -EAGAIN;
}

int aio_ring_wait(aio_ring *r, uint64_t user_data, log_view **views, const uint64_t *offsets, int n, void **xbases,
                  const uint64_t *xsizes, const uint64_t *xoffs, const uint32_t *xvals, int nx)
{
    struct sb_waitv w[SB_WAITV_MAX];
    if (!r || n < 0 || nx < 0 || n + nx > SB_WAITV_MAX) return LOG_E_BAD_ARG;
    int rc = log_waitv_prep(views, offsets, n, xbases, xsizes, xoffs, xvals, nx, w, SB_WAITV_MAX);
    if (rc != -1) return rc; /* readable now, a word moved, or bad arguments: nothing submitted */
    struct sb_sqe e;
    memset(&e, 0, sizeof e);
    e.opcode = SB_OP_FUTEX_WAITV;
    e.addr = (uint64_t)(uintptr_t)w; /* copied by the kernel while it prepares the entry, in the enter below */
    e.len = (uint32_t)(n + nx);
    e.user_data = user_data;
    rc = push(r, &e);
    return rc < 0 ? AIO_E_RING : -1;
}

int aio_ring_cancel(aio_ring *r, uint64_t user_data)
{
    struct sb_sqe e;
    if (!r) return LOG_E_BAD_ARG;
    memset(&e, 0, sizeof e);
    e.opcode = SB_OP_ASYNC_CANCEL;
    e.addr = user_data;
    e.user_data = 0; /* its own completion carries 0: the reaper skips it */
    return push(r, &e) < 0 ? AIO_E_RING : 0;
}

int aio_ring_reap(aio_ring *r, uint64_t *user_data, int32_t *res, int max)
{
    if (!r || max < 0 || (max && (!user_data || !res))) return LOG_E_BAD_ARG;
    uint32_t head = *r->cq_head; /* only this thread moves the head */
    int k = 0;
    for (;;) {
        /* acquire: pairs with the kernel's release store of the tail after it writes the entries */
        uint32_t tail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
        for (; head != tail && k < max; head++, k++) {
            const struct sb_cqe *c = &r->cqes[head & r->cq_mask];
            user_data[k] = c->user_data;
            res[k] = c->res;
        }
        /* release: our reads of the entries before the kernel may reuse them; pairs with its acquire load of
         * the head */
        __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
        if (k == max) return k;
        /* drained.  Completions posted while the queue was full (more waits ended, or were cancelled, between
         * two reaps than it holds) wait in the kernel's overflow list - and every later one queues behind
         * them - until an enter asks for events: flush them in, read on. */
        if (!(__atomic_load_n(r->sq_flags, __ATOMIC_RELAXED) & SB_SQ_CQ_OVERFLOW)) return k;
        if (enter(r->fd, 0, SB_ENTER_GETEVENTS) < 0 || __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE) == head)
            return k;
    }
}
