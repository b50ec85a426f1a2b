/* shmqueue.c - a work queue over one block-mode partition log: each record
 * goes to exactly one taker, and a taker that dies holding records gives
 * them back.
 *
 * The log holds the items (appended with the log's own producer path).  A
 * lease segment beside it holds one 64-bit lease word per log slot
 * (lease[o mod N] speaks for offset o):  lap:36 | owner:26 | state:2, the
 * log's tag format, with states FREE, TAKEN, DONE.  A lease of an older lap
 * than o's means "free for o".  The header's head word is where takers look
 * first: every offset below it is leased or done, except offsets given back
 * by a release, which moves head back down to them.
 *
 * Take: at h = head, read record h from the log (not written yet: the queue
 * is empty at h); CAS lease[h] from its free value to (lap, owner, TAKEN) -
 * the CAS alone makes the record ours, so a taker that dies anywhere after
 * it is found by its owner token; then CAS head h -> h + 1 (anyone may:
 * takers that find lease[h] taken or done help head on).  A tombstone (a
 * dead producer's repaired claim) or a corrupt record is leased DONE by
 * whoever meets it.
 * Ack: CAS (lap, owner, TAKEN) -> DONE; then the log's retention floor is
 * raised over the DONE prefix, so producers (block mode) reuse slots and
 * bytes only of finished items (and head with it, if head is lower).  An
 * ack fails if the lease was released (the owner was declared dead): the
 * item belongs to another taker now.
 * Release (an owner died): CAS each (lap, owner, TAKEN) -> (lap, 0, FREE),
 * count the attempt, and CAS head down to the lowest released offset.
 * The taker of a released item walks head back up past what is leased or
 * done, so head again counts untaken items (qsize, maxsize).
 * Attempts: per slot, written only by the lease's owner (reset by the first
 * take in a lap, raised by a failed release); acks leave them alone.
 * maxsize: producers wait (the log's limit word) while claim > head + max.
 *
 * Memory order: lease CASes are acq_rel (the record bytes were read before
 * the take CAS, and block mode keeps them until the DONE that follows it);
 * head only orders the limit check (pairs with log.c's blocked()).
 *
 * Nothing read from the segment is trusted: n is checked against the log's
 * slot count at attach, every index is masked, and a head past the log's
 * claim is refused (LOG_E_BAD_LAYOUT). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef SHMQUEUE_AFTER_SHMLOG /* ext/fastlog.c includes us after shmlog.c, which has both */
#include "shmlog.h"
#include "shmlog_atomic.h"
#endif

#define Q_MAGIC 0x3145555142484d53ULL /* "SMHBQUE1" little-endian */
#define Q_VERSION 2 /* 2: the release word */
#define LAP_BITS 36
#define OWNER_BITS 26
#define OWNER_MASK ((1ULL << OWNER_BITS) - 1)
#define LAP_MASK ((1ULL << LAP_BITS) - 1)
enum { L_FREE = 0, L_TAKEN = 1, L_DONE = 2 };

struct q_header {
    uint64_t magic;
    uint32_t version, layout;
    uint64_t n, size;
    uint64_t check;            /* hash of the words above: a torn or foreign header fails attach */
    uint8_t pad0[64 - 40];
    uint64_t head;             /* 64: takers' line */
    uint32_t release_seq;      /* 72: moved (and its sleepers woken) by every release */
    uint32_t pad1a;
    uint8_t pad1[128 - 80];
    uint64_t taken, acked, released, skipped, lost_acks; /* 128: counters, relaxed */
    uint8_t pad2[Q_HEADER_SIZE - 168];
};
_Static_assert(sizeof(struct q_header) == Q_HEADER_SIZE, "queue header size");
_Static_assert(offsetof(struct q_header, head) == Q_HEAD_OFF, "queue head word");
_Static_assert(offsetof(struct q_header, release_seq) == Q_RELEASE_OFF, "queue release word");
_Static_assert(offsetof(struct q_header, taken) == 128, "queue counters");

struct q_view {
    struct q_header *h;
    uint64_t *lease;
    uint32_t *attempts;
    uint64_t n, mask, shift, size;
};

static inline uint64_t lap_of(const q_view *q, uint64_t o) { return ((o >> q->shift) + 1) & LAP_MASK; }
static inline uint64_t l_lap(uint64_t w) { return w >> (64 - LAP_BITS); }
static inline uint64_t l_owner(uint64_t w) { return (w >> 2) & OWNER_MASK; }
static inline uint64_t l_state(uint64_t w) { return w & 3ULL; }
static inline uint64_t mk(uint64_t lap, uint64_t owner, uint64_t st)
{ return (lap << (64 - LAP_BITS)) | ((owner & OWNER_MASK) << 2) | st; }
static inline int64_t lap_diff(uint64_t a, uint64_t b)
{ return (int64_t)(((a - b) & LAP_MASK) << (64 - LAP_BITS)) >> (64 - LAP_BITS); }

static uint64_t q_check(const struct q_header *h)
{
    uint64_t x = h->magic ^ ((uint64_t)h->version << 32 | h->layout) ^ h->n * 0x9E3779B97F4A7C15ULL ^ h->size;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    return x ^ (x >> 29);
}
static uint32_t q_layout(void)
{
    return (uint32_t)(sizeof(struct q_header) * 131 + offsetof(struct q_header, head) * 7 + LAP_BITS * 3 + OWNER_BITS);
}

uint64_t q_segment_size(uint64_t n) { return Q_HEADER_SIZE + n * 8 + n * 4; }

int q_format(void *base, uint64_t size, uint64_t n, uint64_t head)
{
    if (!base || !n || (n & (n - 1)) || n > (1ULL << 32) || size < q_segment_size(n)) return LOG_E_BAD_SIZE;
    struct q_header *h = base;
    memset(base, 0, q_segment_size(n));
    h->version = Q_VERSION;
    h->layout = q_layout();
    h->n = n;
    h->size = size;
    h->head = head;
    h->magic = Q_MAGIC;
    h->check = q_check(h);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* the formatted segment before any attacher's acquire of magic */
    return LOG_OK;
}

q_view *q_view_new(void) { q_view *q = calloc(1, sizeof *q); return q; }
void q_view_free(q_view *q) { free(q); }

int q_attach(q_view *q, void *base, uint64_t size, uint64_t log_slots)
{
    if (!q || !base || size < sizeof(struct q_header)) return LOG_E_BAD_SIZE;
    struct q_header *h = base;
    if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != Q_MAGIC) return LOG_E_BAD_MAGIC; /* pairs with q_format's fence */
    if (h->version != Q_VERSION) return LOG_E_BAD_VERSION;
    if (h->layout != q_layout() || h->check != q_check(h)) return LOG_E_BAD_LAYOUT;
    uint64_t n = h->n;
    if (n != log_slots || !n || (n & (n - 1)) || h->size != size || size < q_segment_size(n)) return LOG_E_BAD_SIZE;
    q->h = h;
    q->n = n;
    q->mask = n - 1;
    q->shift = (uint64_t)__builtin_ctzll(n);
    q->size = size;
    q->lease = (uint64_t *)((uint8_t *)base + Q_HEADER_SIZE);
    q->attempts = (uint32_t *)((uint8_t *)base + Q_HEADER_SIZE + n * 8);
    return LOG_OK;
}

static inline void help_head(q_view *q, uint64_t h)
{
    uint64_t e = h;
    atom_cas64(&q->h->head, &e, h + 1); /* acq_rel: pairs with blocked()'s acquire of head; failure is fine */
}

/* Move head on from h over offsets leased or done in their lap: a taker that
 * took a released item (head had moved back to it) so leaves head where the
 * next free item is, not below items others hold (qsize and maxsize count
 * from head).  At most one lap; stops where someone else moves head. */
static void advance_head(q_view *q, log_view *lv, uint64_t h)
{
    uint64_t hi = log_claimed(lv);
    for (uint64_t k = 0; h < hi && k < q->n; k++, h++) {
        uint64_t w = atom_load_acquire64(&q->lease[h & q->mask]); /* pairs with the lease CASes */
        int64_t d = lap_diff(l_lap(w), lap_of(q, h));
        if (d < 0 || (d == 0 && l_state(w) == L_FREE)) break; /* free: the next taker's */
        uint64_t e = h;
        if (!atom_cas64(&q->h->head, &e, h + 1)) break; /* acq_rel: as help_head; pairs with the head loads */
    }
}

/* Raise the log's floor over the DONE prefix (at most max offsets a call),
 * and head with it: a DONE offset above head (acked after a taker moved
 * head back to a released item below it) must not hold the floor. */
static void raise_floor(q_view *q, log_view *lv, uint64_t max)
{
    uint64_t f = log_get_floor(lv), hi = log_claimed(lv), f0 = f;
    while (f < hi && f - f0 < max) {
        uint64_t w = atom_load_acquire64(&q->lease[f & q->mask]); /* pairs with the DONE CASes */
        if (lap_diff(l_lap(w), lap_of(q, f)) != 0 || l_state(w) != L_DONE) break;
        f++;
    }
    if (f > f0 && log_set_floor(lv, f) == LOG_OK) {
        /* every offset below f is DONE, so no release can move head below f
         * meanwhile: raise it to f if it is lower.  acq_rel CAS: pairs with
         * the takers' head loads and blocked()'s acquire of the limit word */
        uint64_t head = atom_load_acquire64(&q->h->head); /* pairs with the head CASes */
        while (head < f && !atom_cas64(&q->h->head, &head, f))
            ;
        /* log_set_floor woke producers waiting on the floor; one waiting on
         * maxsize (the limit word, head) needs a wake of its own */
        log_wake_blocked(lv);
    }
}

/* Mark offset o, free at lease value w, DONE without an owner (a tombstone or
 * corrupt record nobody can take). */
static void skip(q_view *q, uint64_t o, uint64_t w)
{
    if (atom_cas64(&q->lease[o & q->mask], &w, mk(lap_of(q, o), 0, L_DONE))) /* acq_rel: pairs with raise_floor's acquire */
        atom_fetch_add_relaxed64(&q->h->skipped, 1);
}

int64_t q_take(q_view *q, log_view *lv, uint32_t owner, log_rec *rec, char *buf, uint64_t cap,
               uint32_t *attempts, uint64_t *wait_at)
{
    if (!q || !q->h || !lv || !rec || !attempts || !wait_at || !owner || owner > OWNER_MASK) return LOG_E_BAD_ARG;
    for (uint64_t tries = 0; tries < 4 * q->n + 1024; tries++) {
        uint64_t h = atom_load_acquire64(&q->h->head); /* pairs with help_head's and q_release's CASes */
        /* head never passes the claim (it moves past h only once record h
         * existed); loaded after head, so a larger head is a hostile one */
        if (h > log_claimed(lv)) return LOG_E_BAD_LAYOUT;
        uint64_t fl = log_get_floor(lv);
        if (h < fl) { /* below the floor (only a hostile head is): everything there is done */
            uint64_t e = h;
            atom_cas64(&q->h->head, &e, fl); /* acq_rel: as help_head */
            continue;
        }
        uint64_t *l = &q->lease[h & q->mask];
        uint64_t w = atom_load_acquire64(l); /* pairs with the lease CASes */
        int64_t d = lap_diff(l_lap(w), lap_of(q, h));
        if (d > 0 || (d == 0 && l_state(w) != L_FREE)) { help_head(q, h); continue; }
        int rc = log_read(lv, h, rec, buf, cap);
        if (rc == LOG_NOT_YET) {
            if (atom_load_acquire64(&q->h->head) != h) continue; /* moved meanwhile (a release): look again */
            *wait_at = h;
            return LOG_E_WOULD_BLOCK;
        }
        if (rc == LOG_E_DELETED || rc == LOG_E_BUFFER) return rc;
        if (rc != LOG_OK) { /* tombstone, corrupt, lapped: nothing to deliver at h */
            skip(q, h, w);
            help_head(q, h);
            raise_floor(q, lv, 64);
            continue;
        }
        /* acq_rel CAS: the lease is ours; pairs with other takers' CAS and q_release's */
        if (!atom_cas64(l, &w, mk(lap_of(q, h), owner, L_TAKEN))) continue;
        if (d == 0) advance_head(q, lv, h); /* a released item: head goes back up past what others hold */
        else help_head(q, h);
        log_wake_blocked(lv); /* head moved: a producer waiting on maxsize may go on */
        atom_fetch_add_relaxed64(&q->h->taken, 1);
        /* A lease of an older lap: the item's first take, so no failed attempt
         * yet (the slot's count is the previous lap's).  Only the lease owner
         * writes attempts (here, or release_one before its FREE CAS): the
         * relaxed accesses are ordered by the lease CASes around them. */
        if (d < 0) __atomic_store_n(&q->attempts[h & q->mask], 0, __ATOMIC_RELAXED);
        *attempts = __atomic_load_n(&q->attempts[h & q->mask], __ATOMIC_RELAXED); /* ordered by the CAS above */
        return (int64_t)h;
    }
    return LOG_E_BAD_LAYOUT; /* no progress over every lease: a hostile segment */
}

int q_ack(q_view *q, log_view *lv, uint64_t o, uint32_t owner)
{
    if (!q || !q->h || !lv || !owner) return LOG_E_BAD_ARG;
    uint64_t *l = &q->lease[o & q->mask];
    uint64_t want = mk(lap_of(q, o), owner, L_TAKEN);
    /* attempts stay as they are: a failed (stale) ack must not reset the
     * count of the taker that has the item now; the next lap's first take
     * resets it (q_take) */
    if (!atom_cas64(l, &want, mk(lap_of(q, o), owner, L_DONE))) { /* acq_rel: pairs with raise_floor's acquire */
        atom_fetch_add_relaxed64(&q->h->lost_acks, 1);
        return LOG_E_OFFSET; /* released: another taker has it */
    }
    atom_fetch_add_relaxed64(&q->h->acked, 1);
    raise_floor(q, lv, 4096);
    return LOG_OK;
}

/* Ack the previous item and take the next: one crossing from Python instead
 * of two.  No atomics of its own: q_ack's DONE CAS (acq_rel, paired with
 * raise_floor's acquire) is complete before q_take's first head load
 * (acquire, paired with the head CASes), exactly as two separate calls. */
int64_t q_ack_take(q_view *q, log_view *lv, int64_t ack_off, uint32_t ack_owner, uint32_t owner, log_rec *rec,
                   char *buf, uint64_t cap, uint32_t *attempts, uint64_t *wait_at, int *ack_rc)
{
    if (!ack_rc) return LOG_E_BAD_ARG;
    *ack_rc = ack_off < 0 ? LOG_OK : q_ack(q, lv, (uint64_t)ack_off, ack_owner);
    return q_take(q, lv, owner, rec, buf, cap, attempts, wait_at);
}

/* Give back one record taken by owner (counted as an attempt if failed). */
static int release_one(q_view *q, uint64_t o, uint64_t w, int failed)
{
    uint64_t *l = &q->lease[o & q->mask];
    uint32_t a = __atomic_load_n(&q->attempts[o & q->mask], __ATOMIC_RELAXED);
    if (failed) __atomic_store_n(&q->attempts[o & q->mask], a + 1, __ATOMIC_RELAXED); /* ordered before the CAS */
    if (!atom_cas64(l, &w, mk(l_lap(w), 0, L_FREE))) { /* acq_rel: pairs with the next taker's CAS */
        if (failed) __atomic_store_n(&q->attempts[o & q->mask], a, __ATOMIC_RELAXED);
        return 0;
    }
    uint64_t head = atom_load_acquire64(&q->h->head);
    while (head > o && !atom_cas64(&q->h->head, &head, o)) /* acq_rel: pairs with the takers' head loads */
        ;
    atom_fetch_add_relaxed64(&q->h->released, 1);
    return 1;
}

/* Released items are below the offset sleeping takers wait for (the old
 * head: a wait for a record there does not end when head moves back), so
 * they also sleep on the release word (WorkQueue.take reads it before its
 * take attempt and passes it to log_wait_many_ex as the extra word).
 * shm_futex_wake32's seq_cst increment comes after our FREE and head CASes:
 * a taker that read the old value sleeps only until it moves, and one that
 * read the new value takes after the CASes.  The log's readers are woken
 * too, for takers that wait on the log alone. */
static void wake_takers(q_view *q, log_view *lv)
{
    shm_futex_wake32(q->h, q->size, Q_RELEASE_OFF); /* seq_cst increment: pairs with the takers' acquire load */
    log_wake_readers(lv);
}

/* The offsets a lease can be TAKEN at: the floor up to the claim, at most
 * one lap (a hostile floor or claim cannot make a scan run longer). */
static uint64_t scan_from(const q_view *q, log_view *lv, uint64_t *hi)
{
    uint64_t from = log_get_floor(lv);
    *hi = log_claimed(lv);
    if (*hi < from || *hi - from > q->n) from = *hi > q->n ? *hi - q->n : 0; /* bounded: one lap */
    return from;
}

/* lease[o]'s word if o is TAKEN at its own lap (by anyone), else 0. */
static inline uint64_t taken_at(const q_view *q, uint64_t o)
{
    uint64_t w = atom_load_acquire64(&q->lease[o & q->mask]); /* pairs with the take CAS */
    return lap_diff(l_lap(w), lap_of(q, o)) == 0 && l_state(w) == L_TAKEN ? w : 0;
}

int64_t q_release_owner(q_view *q, log_view *lv, uint32_t owner, uint64_t *out, uint64_t max)
{
    if (!q || !q->h || !lv || !owner) return LOG_E_BAD_ARG;
    uint64_t n = 0, hi, from = scan_from(q, lv, &hi);
    for (uint64_t o = from; o < hi; o++) {
        uint64_t w = taken_at(q, o);
        if (w && l_owner(w) == owner && release_one(q, o, w, 1)) {
            if (out && n < max) out[n] = o;
            n++;
        }
    }
    if (n) wake_takers(q, lv);
    return (int64_t)n;
}

int q_release(q_view *q, log_view *lv, uint64_t o, uint32_t owner, int failed)
{
    if (!q || !q->h || !lv || !owner) return LOG_E_BAD_ARG;
    uint64_t w = mk(lap_of(q, o), owner, L_TAKEN);
    if (atom_load_acquire64(&q->lease[o & q->mask]) != w) return LOG_E_OFFSET; /* pairs with the take CAS */
    if (!release_one(q, o, w, failed)) return LOG_E_OFFSET;
    wake_takers(q, lv);
    return LOG_OK;
}

uint32_t q_attempts(q_view *q, uint64_t o)
{
    if (!q || !q->h) return 0;
    return __atomic_load_n(&q->attempts[o & q->mask], __ATOMIC_RELAXED); /* a snapshot */
}

int64_t q_held(q_view *q, log_view *lv, uint32_t owner, uint64_t *out, uint64_t max)
{
    if (!q || !q->h || !lv || !owner) return LOG_E_BAD_ARG;
    uint64_t n = 0, hi, from = scan_from(q, lv, &hi);
    for (uint64_t o = from; o < hi && n < max; o++) {
        uint64_t w = taken_at(q, o);
        if (w && l_owner(w) == owner) out[n++] = o;
    }
    return (int64_t)n;
}

int q_get_stats(q_view *q, log_view *lv, q_stats *out)
{
    if (!q || !q->h || !out) return LOG_E_BAD_ARG;
    struct q_header *h = q->h;
    out->head = atom_load_acquire64(&h->head); /* a snapshot; pairs with the head CASes */
    out->taken = atom_load_relaxed64(&h->taken);
    out->acked = atom_load_relaxed64(&h->acked);
    out->released = atom_load_relaxed64(&h->released);
    out->skipped = atom_load_relaxed64(&h->skipped);
    out->lost_acks = atom_load_relaxed64(&h->lost_acks);
    out->in_flight = 0;
    if (lv) {
        uint64_t hi, from = scan_from(q, lv, &hi);
        for (uint64_t o = from; o < hi; o++)
            if (taken_at(q, o)) out->in_flight++;
    }
    return LOG_OK;
}

/* Cancel offset o before any taker has it (an executor's Future.cancel): its
 * free lease becomes DONE without an owner, as skip() does, so no taker ever
 * gets it and the floor may pass it.  LOG_OK, or LOG_E_OFFSET when a taker
 * holds it, it is done, or it is not in the ring. */
int q_cancel(q_view *q, log_view *lv, uint64_t o)
{
    if (!q || !q->h || !lv) return LOG_E_BAD_ARG;
    if (o >= log_claimed(lv) || o < log_get_floor(lv)) return LOG_E_OFFSET;
    uint64_t *l = &q->lease[o & q->mask];
    uint64_t w = atom_load_acquire64(l); /* pairs with the lease CASes */
    int64_t d = lap_diff(l_lap(w), lap_of(q, o));
    if (d > 0 || (d == 0 && l_state(w) != L_FREE)) return LOG_E_OFFSET;
    /* acq_rel CAS: pairs with the take CAS in q_take (exactly one of the two
     * moves this free value).  TAKEN by owner 0 (no taker's token, so no ack,
     * release or take matches it) while the attempts are zeroed */
    if (!atom_cas64(l, &w, mk(lap_of(q, o), 0, L_TAKEN))) return LOG_E_OFFSET;
    /* a released item may carry attempts: zero them for the slot's next lap */
    __atomic_store_n(&q->attempts[o & q->mask], 0, __ATOMIC_RELAXED); /* ordered by the release store below */
    atom_store_release64(l, mk(lap_of(q, o), 0, L_DONE)); /* pairs with raise_floor's acquire of DONE */
    atom_fetch_add_relaxed64(&q->h->skipped, 1);
    raise_floor(q, lv, 4096);
    return LOG_OK;
}
