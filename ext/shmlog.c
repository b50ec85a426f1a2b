/* shmlog.c - one Kafka partition as a crash-repairable multi-producer ring in
 * POSIX shared memory.
 *
 * Design (DESIGN.md's recommended two-ring layout, with two changes):
 *  - an index ring of N 64-byte slots; slot (o mod N) describes offset o and
 *    carries a tag  lap:36 | owner:26 | state:2  (EMPTY, CLAIMED, COMMITTED,
 *    TOMBSTONE), where lap = o / N + 1 modulo 2^36, and owner is the
 *    claimer's token: a raw pid (< 2^22, standalone logs) or a registration
 *    token handed out by the namespace (>= 2^22), so a reused pid never
 *    matches a dead registration's claims (invariant 11);
 *  - a data ring of D bytes holding {offset, length, checksum} + key +
 *    headers + value, 8-byte aligned, split in two at the physical end.
 *  Change 1: the offset and the byte reservation are claimed together by
 *  one 16-byte CAS on {next offset, next byte}.  So byte positions grow with
 *  offsets, the log start after overwrite is found by binary search, and a
 *  producer waits *before* it claims: one that times out or is interrupted
 *  has claimed nothing and leaves nothing to repair.
 *  Change 2, the overrun rule (invariant 10): a writer never reuses a slot or
 *  a data byte whose previous writer is unfinished.  A claim of {o, pos} for
 *  cnt offsets and len bytes is taken only when
 *   - the slots it reuses hold finished (COMMITTED or TOMBSTONE) records of
 *     the previous lap: checked on those very slots, the lines the claim
 *     writes next, or at once by the header word done_lo (every offset below
 *     it is finished); and
 *   - no unfinished writer holds the bytes it reuses: pos + len <= done_hi +
 *     D, where no unfinished writer holds a byte below done_hi.
 *  Both words only rise.  Each claimer checks its own slots' previous lap,
 *  so every offset below claim - N has been checked finished; the claimer
 *  that takes slot o so knows that every byte below the end of record o - N
 *  is finished, and raises done_hi to it when it lags by D/64 (a rare write
 *  of a shared line).  A batch also checks, while copying, the slots the
 *  next batch would reuse and raises done_lo past them.  A claimer that
 *  fails the check raises both words by a scan of tags from done_lo (at most
 *  the last N offsets; the byte mark is the end of the newest finished
 *  record, which its slot vouches for by storing its offset after pos and
 *  length) and, if the oldest unfinished writer is still at work, waits for
 *  it - so a stopped producer holds back the writers that would reach its
 *  bytes exactly as it holds back its slot.  A dead one is repaired
 *  (tombstoned) by the supervisor; a dead raw-pid owner also by the waiting
 *  producer itself.  Waits only ever point to lower offsets, so they cannot
 *  form a cycle.  So overwrite mode overwrites only finished records, and
 *  corrupt_skips stays 0 without hostile input.
 *
 * Append: wait for room (above; and in block mode for the retention floor);
 * CAS the claim; CAS the slot from its finished previous lap to CLAIMED by us
 * (if a repair moved the slot to our lap meanwhile we lost the offset and
 * simply claim again, so a slow producer loses nothing); record the
 * reservation; copy; fill the slot; CAS CLAIMED -> COMMITTED with release
 * ordering (it fails only if a repair tombstoned our claim: then we append
 * again); wake sleepers only if the waiters flag is set.
 * Read: acquire the tag, copy, acquire fence, re-check the tag, that no
 * writer went more than D bytes past the record (the data limit, which
 * producers raise in D/8 granules before writing, else the claim word), the
 * record's own header, its checksum and its header block; only then deliver.
 *
 * Memory order: every publication is a release store or a release CAS and
 * every observation an acquire load, each commented with its pair, so the
 * code is correct on weakly ordered CPUs (ARM), not only on x86's TSO; the
 * only seq_cst parts are the store-buffering pairs (waiters flag vs record,
 * floor waiters vs floor).
 *
 * Nothing read from the segment is trusted: the geometry is validated once
 * at attach and cached in the process-private view; every position, length
 * and count read from a slot or record is bounds-checked against it.
 *
 * Two parts of this translation unit live in their own files, #included
 * where they stood: shmlog_wait.c (waiting for records, one partition or
 * many) and shmwords.c (atomics, futexes and commit pairs on words of other
 * segments, the partitioners' hashes). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#include "shmlog_atomic.h"
#include "shmlog.h"

#ifndef SHMLOG_BUILD_ID
#define SHMLOG_BUILD_ID "unknown"
#endif

#define LOG_MAGIC 0x31474f4c4d485321ULL /* "!SHMLOG1" little-endian */
#define LOG_VERSION 5u /* 3: the finished watermark, 26-bit owners (registration tokens), waiters flag; 4: trim;
                          * 5: the wide checksum of long parts (hash_wide) */

#define LAP_BITS 36
#define LAP_MASK ((1ULL << LAP_BITS) - 1)
#define OWNER_BITS 26
#define OWNER_MASK ((1ULL << OWNER_BITS) - 1)
#define PID_OWNER_LIMIT (1ULL << 22) /* owners below are raw pids (standalone logs), above registration tokens */
#define ST_EMPTY 0ULL
#define ST_CLAIMED 1ULL
#define ST_COMMITTED 2ULL
#define ST_TOMBSTONE 3ULL

#define MIN_SLOTS 2ULL
#define MAX_SLOTS (1ULL << 30)
#define MIN_DATA 64ULL
#define MAX_DATA (1ULL << 40)
#define MAX_RECORD_LIMIT ((1ULL << 31) - 64)

/* ---- shared layout ---------------------------------------------------- */
struct log_header {
    /* 0: identity and geometry, written once before the magic */
    uint64_t magic;
    uint32_t version;
    uint32_t layout_hash;
    uint64_t segment_size;
    uint64_t slot_count;
    uint64_t data_capacity;
    uint64_t index_offset;
    uint64_t data_offset;
    uint64_t start_offset;
    uint64_t max_record;
    uint32_t overflow;
    uint32_t creator_pid;
    uint64_t geometry_check;
    uint8_t pad0[128 - 88];
    /* 128: the claim word, its own cache lines */
    atom_pair claim; /* lo = next offset, hi = next byte */
    uint8_t pad1[256 - 144];
    /* 256: reader wake-up */
    uint32_t futex_seq;
    uint32_t waiters;  /* a flag: 1 = someone may sleep on futex_seq; the next waker clears it */
    uint8_t pad2[384 - 264];
    /* 384: retention floor (block mode) and producer wake-up */
    uint64_t floor;
    uint64_t floor_bytes;
    uint32_t floor_seq;
    uint32_t floor_waiters;
    uint8_t pad3[512 - 408];
    /* 512: producer-side counters (slow paths only) */
    uint64_t wakeups, retries, block_waits, room_waits;
    uint8_t pad4[640 - 544];
    /* 640: reader-side counters (slow paths only) */
    uint64_t laps_seen, corrupt_skips;
    uint8_t pad5[768 - 656];
    /* 768: repair counters */
    uint64_t tombstones, repairs;
    uint8_t pad6[896 - 784];
    /* 896: data limit - no producer writes data-ring bytes at or past it.
     * Raised in granules of D/8 (rarely written), so readers check it
     * without pulling the claim line away from producers. */
    uint64_t data_limit;
    uint32_t deleted;  /* set once by log_mark_deleted; on the data-limit line, which appends read anyway */
    uint32_t pad7a;
    /* the log start set by log_trim (Kafka's DeleteRecords): offsets below
     * it read as LAPPED; only rises.  On the data-limit line, which every
     * read loads anyway, so the check costs no extra cache line */
    uint64_t trim;
    uint8_t pad7[1024 - 920];
    /* 1024: the finished watermarks: every offset below done_lo is COMMITTED
     * or TOMBSTONE, and no unfinished writer holds a data byte below
     * done_hi.  Each only rises (CAS-max), in steps, by producers. */
    uint64_t done_lo, done_hi;
    uint8_t pad8[LOG_HEADER_SIZE - 1040];
};

struct log_slot {
    uint64_t tag;
    uint64_t pos;
    uint64_t offset;
    int64_t timestamp_ns;
    uint32_t rec_len;
    uint32_t key_len;
    uint32_t hdr_len;
    uint32_t val_len;
    uint32_t flags;
    uint32_t checksum;
    uint32_t owner;     /* the owner token (see the tag), for stat and debugging */
    uint32_t pad;
};

struct log_rec_header {
    uint64_t offset;
    uint32_t rec_len;
    uint32_t checksum;
};

_Static_assert(sizeof(struct log_header) == LOG_HEADER_SIZE, "header size");
_Static_assert(offsetof(struct log_header, geometry_check) == 80, "geometry_check");
_Static_assert(offsetof(struct log_header, claim) == 128, "claim line");
_Static_assert(offsetof(struct log_header, futex_seq) == 256, "futex line");
_Static_assert(offsetof(struct log_header, floor) == 384, "floor line");
_Static_assert(offsetof(struct log_header, wakeups) == 512, "producer counters");
_Static_assert(offsetof(struct log_header, laps_seen) == 640, "reader counters");
_Static_assert(offsetof(struct log_header, tombstones) == 768, "repair counters");
_Static_assert(offsetof(struct log_header, data_limit) == 896, "data limit line");
_Static_assert(offsetof(struct log_header, deleted) == 904, "deleted flag");
_Static_assert(offsetof(struct log_header, trim) == 912, "trim word");
_Static_assert(offsetof(struct log_header, room_waits) == 536, "room waits");
_Static_assert(offsetof(struct log_header, done_lo) == 1024, "finished watermark line");
_Static_assert(offsetof(struct log_header, done_hi) == 1032, "finished byte mark");
_Static_assert(sizeof(struct log_slot) == LOG_SLOT_SIZE, "slot size");
_Static_assert(offsetof(struct log_slot, rec_len) == 32, "slot rec_len");
_Static_assert(offsetof(struct log_slot, owner) == 56, "slot owner");
_Static_assert(sizeof(struct log_rec_header) == LOG_RECORD_OVERHEAD, "record header");

/* ---- process-private view (validated geometry) ------------------------ */
struct log_view {
    struct log_header *h;
    struct log_slot *slots;
    uint8_t *data;
    uint64_t size, n, mask, shift, d, dmask, start, max_record, max_rec_len, granule;
    uint64_t mark_step; /* take_slot raises done_hi only when it lags by this much: its line is rarely written */
    uint32_t overflow, owner;
    /* block mode, optional: a claim also waits while it would pass
     * *limit_word + limit_count (a work queue's take position + maxsize);
     * the pointer is this process's own, the value read is only a number */
    const uint64_t *limit_word;
    uint64_t limit_count;
    int crash_point, crash_signal;
    uint64_t crash_countdown;
};

/* ---- helpers ----------------------------------------------------------- */
static inline uint64_t align8(uint64_t x) { return (x + 7) & ~7ULL; }
static inline int is_pow2(uint64_t x) { return x && !(x & (x - 1)); }
static inline uint64_t lap_field(uint64_t o, uint64_t shift) { return ((o >> shift) + 1) & LAP_MASK; }
static inline uint64_t lap_of(const log_view *v, uint64_t o) { return lap_field(o, v->shift); }
static inline uint64_t tag_lap(uint64_t t) { return t >> (64 - LAP_BITS); }
static inline uint64_t tag_state(uint64_t t) { return t & 3ULL; }
static inline uint64_t tag_owner(uint64_t t) { return (t >> 2) & OWNER_MASK; }
static inline uint64_t mk_tag(uint64_t lap, uint64_t owner, uint64_t st)
{ return (lap << (64 - LAP_BITS)) | ((owner & OWNER_MASK) << 2) | st; }
/* signed distance between two 40-bit laps: survives the lap counter wrap */
static inline int64_t lap_diff(uint64_t a, uint64_t b)
{ return (int64_t)(((a - b) & LAP_MASK) << (64 - LAP_BITS)) >> (64 - LAP_BITS); }

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
static inline int64_t wall_ns(void)
{   /* Kafka's CreateTime is epoch time; never used for timeouts */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long futex_wait(uint32_t *addr, uint32_t val, int64_t timeout_ns)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        tp = &ts;
    }
    /* shared futex (no FUTEX_PRIVATE_FLAG): waiters live in other processes */
    return syscall(SYS_futex, addr, FUTEX_WAIT, val, tp, NULL, 0);
}
static void futex_wake_all(uint32_t *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static inline void crash_at(log_view *v, int point)
{
    if (__builtin_expect(v->crash_point == point, 0) && --v->crash_countdown == 0) {
        kill(getpid(), v->crash_signal);
        v->crash_point = LOG_CP_NONE; /* a stopped process continues normally */
    }
}

#include "shmhash.h"

/* A record's checksum: seeded by its offset, timestamp, flags and every
 * length (so an empty key or header block needs no pass of its own: most
 * records have neither), then key, headers and value in turn, each with its
 * own seed, folded to 32 bits.  Appends and reads compute it while copying
 * (put_part, get_part), one part at a time. */
#define SUM_KEY_SEED 0x4B4559ULL
#define SUM_HDR_SEED 0x484452ULL
static inline uint64_t checksum_seed(uint64_t offset, int64_t ts, uint64_t flags, uint64_t kl, uint64_t hl,
                                     uint64_t vl)
{
    return offset * 0x9E3779B97F4A7C15ULL ^ (uint64_t)ts ^ ((uint64_t)flags << 56) ^ rotl(kl, 32) ^ rotl(hl, 16) ^
           rotl(vl, 48);
}
static inline uint32_t checksum_fold(uint64_t s) { return (uint32_t)(s ^ (s >> 32)); }

static uint32_t layout_hash(void)
{
    const uint64_t parts[] = {
        LOG_VERSION, sizeof(struct log_header), sizeof(struct log_slot), sizeof(struct log_rec_header),
        offsetof(struct log_header, claim), offsetof(struct log_header, futex_seq),
        offsetof(struct log_header, floor), offsetof(struct log_header, tombstones),
        offsetof(struct log_slot, pos), offsetof(struct log_slot, checksum), LAP_BITS, OWNER_BITS,
        offsetof(struct log_header, data_limit), offsetof(struct log_header, deleted),
        offsetof(struct log_header, done_lo), offsetof(struct log_header, done_hi),
        offsetof(struct log_header, room_waits), offsetof(struct log_header, trim),
    };
    uint64_t h = hash_bytes((const uint8_t *)parts, sizeof parts, 0x5348424b);
    return (uint32_t)(h ^ (h >> 32));
}
static uint64_t geometry_hash(const struct log_header *h)
{
    return hash_bytes((const uint8_t *)&h->segment_size,
                      offsetof(struct log_header, geometry_check) - offsetof(struct log_header, segment_size),
                      LOG_MAGIC);
}

/* copy into / out of the data ring at absolute byte position pos */
static inline void ring_put(log_view *v, uint64_t pos, const void *src, uint64_t n)
{
    uint64_t at = pos & v->dmask, first = v->d - at;
    if (n <= first) memcpy(v->data + at, src, n);
    else {
        memcpy(v->data + at, src, first);
        memcpy(v->data, (const uint8_t *)src + first, n - first);
    }
}
/* Write a record header at pos (8-aligned).  Field by field, not through a
 * struct on the stack: a 16-byte copy of a struct just built by narrower
 * stores stalls on store forwarding, once per record. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 512
#endif
static inline void put_header(log_view *v, uint64_t pos, uint64_t o, uint32_t rl, uint32_t sum)
{
    uint64_t at = pos & v->dmask;
    if (at + LOG_RECORD_OVERHEAD > v->d) {
        struct log_rec_header rh = { o, rl, sum };
        ring_put(v, pos, &rh, sizeof rh);
        return;
    }
    uint8_t *p = v->data + at;
    memcpy(p + offsetof(struct log_rec_header, offset), &o, 8);
    memcpy(p + offsetof(struct log_rec_header, rec_len), &rl, 4);
    memcpy(p + offsetof(struct log_rec_header, checksum), &sum, 4);
}
static inline void ring_get(const log_view *v, uint64_t pos, void *dst, uint64_t n)
{
    uint64_t at = pos & v->dmask, first = v->d - at;
    if (n <= first) memcpy(dst, v->data + at, n);
    else {
        memcpy(dst, v->data + at, first);
        memcpy((uint8_t *)dst + first, v->data, n - first);
    }
}

/* Copy n bytes of a record part into the ring at pos, returning
 * hash_part of them (seeded with seed) - one pass where the part does not
 * wrap, else the copy and the sum of src. */
static inline uint64_t put_part(log_view *v, uint64_t pos, const void *src, uint64_t n, uint64_t seed)
{
    uint64_t at = pos & v->dmask;
    if (n <= v->d - at) return hash_part_copy(v->data + at, (const uint8_t *)src, n, seed);
    ring_put(v, pos, src, n);
    return hash_part((const uint8_t *)src, n, seed);
}
/* Copy n bytes at pos out of the ring into dst, returning hash_part of the
 * bytes copied (what dst holds, whatever a writer did meanwhile). */
static inline uint64_t get_part(const log_view *v, uint64_t pos, uint8_t *dst, uint64_t n, uint64_t seed)
{
    uint64_t at = pos & v->dmask;
    if (n <= v->d - at) return hash_part_copy(dst, v->data + at, n, seed);
    ring_get(v, pos, dst, n);
    return hash_part(dst, n, seed);
}

/* statistics counters: relaxed, ordering nothing - read only by log_get_stats */
static inline void stat_add(uint64_t *c, uint64_t n) { atom_fetch_add_relaxed64(c, n); }
static inline uint64_t stat_get(const uint64_t *c) { return atom_load_relaxed64(c); }

static inline uint64_t claim_offset(const log_view *v)
{   /* acquire: pairs with the producers' claim CAS (full barrier) */
    return atom_load_acquire64(&v->h->claim.lo);
}
static inline uint64_t claim_bytes(const log_view *v)
{   /* acquire: pairs with the producers' claim CAS (full barrier) */
    return atom_load_acquire64(&v->h->claim.hi);
}

/* acquire: pairs with log_mark_deleted's release store */
static inline int is_deleted(const log_view *v) { return __atomic_load_n(&v->h->deleted, __ATOMIC_ACQUIRE) != 0; }

/* ---- creation and attach ---------------------------------------------- */
const char *log_build_id(void) { return SHMLOG_BUILD_ID; }

static uint64_t data_offset_for(uint64_t n) { return (LOG_HEADER_SIZE + n * LOG_SLOT_SIZE + 4095) & ~4095ULL; }

uint64_t log_segment_size(uint64_t slot_count, uint64_t data_capacity)
{
    if (!is_pow2(slot_count) || slot_count < MIN_SLOTS || slot_count > MAX_SLOTS) return 0;
    if (!is_pow2(data_capacity) || data_capacity < MIN_DATA || data_capacity > MAX_DATA) return 0;
    return data_offset_for(slot_count) + data_capacity;
}

int log_format(void *base, uint64_t size, uint64_t slot_count, uint64_t data_capacity,
               uint64_t max_record, int overflow, uint64_t start_offset, uint32_t creator_pid)
{
    uint64_t need = log_segment_size(slot_count, data_capacity);
    if (!need || !base) return LOG_E_BAD_ARG;
    if (size < need) return LOG_E_BAD_SIZE;
    if (max_record > MAX_RECORD_LIMIT || align8(LOG_RECORD_OVERHEAD + max_record) > data_capacity)
        return LOG_E_TOO_LARGE;
    if (overflow != LOG_OVERWRITE && overflow != LOG_BLOCK) return LOG_E_BAD_ARG;
    if (start_offset > (1ULL << 62)) return LOG_E_BAD_ARG;
    struct log_header *h = base;
    memset(h, 0, LOG_HEADER_SIZE);
    h->version = LOG_VERSION;
    h->layout_hash = layout_hash();
    h->segment_size = need;
    h->slot_count = slot_count;
    h->data_capacity = data_capacity;
    h->index_offset = LOG_HEADER_SIZE;
    h->data_offset = data_offset_for(slot_count);
    h->start_offset = start_offset;
    h->max_record = max_record;
    h->overflow = (uint32_t)overflow;
    h->creator_pid = creator_pid;
    h->geometry_check = geometry_hash(h);
    h->claim.lo = start_offset;
    h->claim.hi = 0;
    h->floor = start_offset;
    h->floor_bytes = 0;
    h->done_lo = start_offset; /* nothing below the start is unfinished */
    h->done_hi = 0;
    struct log_slot *slots = (struct log_slot *)((uint8_t *)base + LOG_HEADER_SIZE);
    uint64_t shift = __builtin_ctzll(slot_count), mask = slot_count - 1;
    for (uint64_t i = 0; i < slot_count; i++) {
        /* the first offset at or after the start that maps to slot i */
        uint64_t o = start_offset + ((i - start_offset) & mask);
        memset(&slots[i], 0, sizeof slots[i]);
        slots[i].tag = mk_tag((lap_field(o, shift) - 1) & LAP_MASK, 0, ST_EMPTY); /* previous lap, finished */
    }
    /* release: the magic is written last; pairs with log_attach's acquire load */
    atom_store_release64(&h->magic, LOG_MAGIC);
    return LOG_OK;
}

log_view *log_view_new(void) { return calloc(1, sizeof(log_view)); }
void log_view_free(log_view *v) { free(v); }
void log_view_set_pid(log_view *v, uint32_t pid) { v->owner = pid; }
int log_view_set_owner(log_view *v, uint32_t owner)
{
    if (!v || !owner || owner > OWNER_MASK) return LOG_E_BAD_ARG;
    v->owner = owner;
    return LOG_OK;
}
int log_view_set_limit(log_view *v, void *base, uint64_t size, uint64_t off, uint64_t count)
{
    if (!v || !v->h || v->overflow != LOG_BLOCK) return LOG_E_BAD_ARG;
    if (!base) { v->limit_word = NULL; return LOG_OK; }
    if (off % 8 || off > size || size - off < 8 || count == 0 || count > v->n) return LOG_E_BAD_ARG;
    v->limit_word = (const uint64_t *)((const uint8_t *)base + off);
    v->limit_count = count;
    return LOG_OK;
}
void log_wake_blocked(log_view *v)
{
    /* seq_cst fence: pairs with wait_floor's seq_cst waiter increment - either
     * it sees the moved limit or we see it waiting */
    atom_fence_seqcst();
    if (atom_load_seqcst32(&v->h->floor_waiters)) {
        atom_fetch_add32(&v->h->floor_seq, 1); /* pairs with wait_floor's futex value */
        futex_wake_all(&v->h->floor_seq);
    }
}
void log_set_crash_point(log_view *v, int point, uint64_t countdown, int sig)
{
    v->crash_point = point;
    v->crash_countdown = countdown ? countdown : 1;
    v->crash_signal = sig ? sig : SIGKILL;
}
uint64_t log_max_record(log_view *v) { return v->max_record; }

int log_attach(log_view *v, void *base, uint64_t size, uint32_t pid)
{
    if (!v || !base) return LOG_E_BAD_ARG;
    memset(v, 0, sizeof *v);
    if (size < LOG_HEADER_SIZE) return LOG_E_BAD_SIZE;
    struct log_header *h = base;
    /* acquire: pairs with log_format's release store of the magic */
    if (atom_load_acquire64(&h->magic) != LOG_MAGIC) return LOG_E_BAD_MAGIC;
    if (h->version != LOG_VERSION) return LOG_E_BAD_VERSION;
    if (h->layout_hash != layout_hash()) return LOG_E_BAD_LAYOUT;
    if (h->geometry_check != geometry_hash(h)) return LOG_E_BAD_LAYOUT;
    uint64_t n = h->slot_count, d = h->data_capacity, need = log_segment_size(n, d);
    if (!need || h->segment_size != need || h->index_offset != LOG_HEADER_SIZE ||
        h->data_offset != data_offset_for(n))
        return LOG_E_BAD_LAYOUT;
    if (size < need) return LOG_E_BAD_SIZE;
    if (h->max_record > MAX_RECORD_LIMIT || align8(LOG_RECORD_OVERHEAD + h->max_record) > d)
        return LOG_E_BAD_LAYOUT;
    if (h->overflow != LOG_OVERWRITE && h->overflow != LOG_BLOCK) return LOG_E_BAD_LAYOUT;
    if (h->start_offset > (1ULL << 62)) return LOG_E_BAD_LAYOUT;
    v->h = h;
    v->slots = (struct log_slot *)((uint8_t *)base + LOG_HEADER_SIZE);
    v->data = (uint8_t *)base + h->data_offset;
    v->size = size;
    v->n = n;
    v->mask = n - 1;
    v->shift = (uint64_t)__builtin_ctzll(n);
    v->d = d;
    v->dmask = d - 1;
    v->granule = d / 8 > 8 ? d / 8 : 8;
    v->mark_step = d / 64 > 8 ? d / 64 : 8;
    v->start = h->start_offset;
    v->max_record = h->max_record;
    v->max_rec_len = align8(LOG_RECORD_OVERHEAD + h->max_record);
    v->overflow = h->overflow;
    v->owner = pid;
    return LOG_OK;
}

/* ---- waking ------------------------------------------------------------ */
/* The waiters word is a flag, not a count: a sleeper sets it before it
 * sleeps; a waker that finds it set clears it, then moves futex_seq and wakes
 * everyone asleep on it.  A sleeper that is killed in its sleep so costs one
 * wake-up, not a syscall on every later append (a count would stay up). */
static void wake_readers(log_view *v, int force)
{
    /* seq_cst fence: pairs with the sleeper's seq_cst fence after it sets the
     * flag (log_wait_many_ex) - either it sees our COMMITTED or we its flag */
    atom_fence_seqcst();
    if (force || atom_load_seqcst32(&v->h->waiters)) { /* pairs with the sleeper's flag store */
        /* clear before the move: a sleeper that sets the flag after this
         * either reads the moved word (and sees our record) or is woken */
        atom_store_seqcst32(&v->h->waiters, 0);
        atom_fetch_add32(&v->h->futex_seq, 1); /* pairs with the sleeper's futex value check */
        stat_add(&v->h->wakeups, 1);
        futex_wake_all(&v->h->futex_seq);
    }
}

/* ---- append ------------------------------------------------------------ */
/* Block mode: would {o, bytes} -> {o + cnt, bytes + len} overwrite a record
 * some group has not committed past? */
static inline int blocked(log_view *v, atom_pair cur, uint64_t cnt, uint64_t len)
{
    /* acquire: pairs with log_set_floor's release stores */
    uint64_t fl = atom_load_acquire64(&v->h->floor);
    uint64_t fb = atom_load_acquire64(&v->h->floor_bytes); /* pairs with log_set_floor's release */
    if (cur.lo + cnt > fl + v->n || cur.hi + len > fb + v->d) return 1;
    /* acquire: pairs with the takers' head CAS (shmqueue.c) */
    return v->limit_word && cur.lo + cnt > atom_load_acquire64(v->limit_word) + v->limit_count;
}

static int wait_floor(log_view *v, atom_pair cur, uint64_t cnt, uint64_t len, int64_t deadline)
{
    struct log_header *h = v->h;
    stat_add(&h->block_waits, 1);
    for (int spins = 0;; spins++) {
        if (is_deleted(v)) return LOG_E_DELETED;
        if (!blocked(v, cur, cnt, len)) return LOG_OK;
        int64_t left = deadline < 0 ? -1 : deadline - now_ns();
        if (deadline >= 0 && left <= 0) return LOG_E_TIMEOUT;
        if (spins < 200) { cpu_relax(); continue; }
        atom_fetch_add32(&h->floor_waiters, 1); /* seq_cst: pairs with log_set_floor's fence */
        uint32_t seq = atom_load_seqcst32(&h->floor_seq);
        if (blocked(v, cur, cnt, len)) {
            int64_t chunk = 20000000; /* 20 ms: re-check even if a wake is lost to a dead setter */
            futex_wait(&h->floor_seq, seq, left >= 0 && left < chunk ? left : chunk);
        }
        atom_fetch_sub32(&h->floor_waiters, 1); /* seq_cst: pairs with log_set_floor's waiter check */
        /* re-read the claim: another producer may have moved it (relaxed:
         * a stale pair only makes the claim CAS fail and retry) */
        cur.lo = atom_load_relaxed64(&h->claim.lo);
        cur.hi = atom_load_relaxed64(&h->claim.hi);
    }
}

/* Is offset o finished: COMMITTED or TOMBSTONE in its lap, or its slot
 * already reused by a later lap?  *t gets the tag. */
static inline int finished(const log_view *v, uint64_t o, uint64_t *t)
{
    /* acquire: pairs with write_record's commit CAS and the repair CASes */
    *t = atom_load_acquire64(&v->slots[o & v->mask].tag);
    int64_t dl = lap_diff(tag_lap(*t), lap_of(v, o));
    return dl > 0 || (dl == 0 && tag_state(*t) >= ST_COMMITTED);
}

/* The end of finished offset o's bytes (its slot said *t), or 0 where the
 * slot does not vouch for them: reused by a later lap, or a tombstone whose
 * owner never recorded its reservation.  Nothing read is trusted: the end
 * must lie within the bytes claimed so far (limit). */
static uint64_t finished_end(const log_view *v, uint64_t o, uint64_t t, uint64_t limit)
{
    struct log_slot *s = &v->slots[o & v->mask];
    if (lap_diff(tag_lap(t), lap_of(v, o)) != 0) return 0;
    /* acquire: pairs with write_record's release store of the offset, which
     * vouches for pos and rec_len stored before it */
    uint64_t so = atom_load_acquire64(&s->offset);
    uint64_t pos = s->pos, rl = s->rec_len;
    atom_fence_acquire(); /* orders the field loads before the re-check; pairs with the next lap's take_slot CAS */
    if (atom_load_relaxed64(&s->tag) != t) return 0;
    if (so != o || rl < LOG_RECORD_OVERHEAD || rl > v->max_rec_len || pos > limit || limit - pos < rl) return 0;
    return pos + rl;
}

/* Raise *w to at least x, never down (CAS-max); pairs with the claimers'
 * acquire loads in has_room and with other raisers' CAS. */
static inline void raise_word(uint64_t *w, uint64_t x)
{
    uint64_t cur = atom_load_relaxed64(w); /* a guess: the CAS returns the real value */
    while (cur < x && !atom_cas64(w, &cur, x))
        ;
}

/* The slow path: raise both watermarks over every finished offset from
 * done_lo on (tags only; the byte mark is the end of the newest finished
 * record that vouches for its bytes).  Offsets below claim - N are finished
 * (each was checked by the claimer of its slot's next lap), so the scan
 * starts there at the latest.  Returns {done_lo, done_hi} as it leaves them. */
static atom_pair raise_done(log_view *v)
{
    struct log_header *h = v->h;
    uint64_t top = claim_offset(v), bytes = claim_bytes(v), t = 0; /* acquire: pair with the claim CAS */
    /* acquire: pairs with raise_word's CAS by other producers */
    atom_pair w = { atom_load_acquire64(&h->done_lo), atom_load_acquire64(&h->done_hi) };
    if (w.lo > top) return w; /* a corrupted word: never trusted to move anything */
    uint64_t from = top - w.lo > v->n ? top - v->n : w.lo, fo = from;
    while (fo < top && finished(v, fo, &t))
        fo++;
    /* the byte mark: the newest finished record that vouches for its end
     * (a few steps back at most: only repaired claims do not) */
    for (uint64_t b = fo; b > from && fo - b < 64; b--) {
        uint64_t e;
        if (finished(v, b - 1, &t) && (e = finished_end(v, b - 1, t, bytes)) != 0) {
            if (e > w.hi) w.hi = e;
            break;
        }
    }
    w.lo = fo; /* >= from >= the old done_lo: the first offset not finished */
    raise_word(&h->done_hi, w.hi);
    raise_word(&h->done_lo, w.lo);
    return w;
}

/* Is slot(o)'s previous lap finished, so a claim of o may reuse the slot?
 * (A slot already at o's lap or later means the offset is gone: the take
 * fails and the producer claims again.) */
static inline int slot_free(const log_view *v, uint64_t o)
{
    /* acquire: pairs with the previous owner's commit CAS and the repair CASes */
    uint64_t t = atom_load_acquire64(&v->slots[o & v->mask].tag);
    int64_t dl = lap_diff(tag_lap(t), lap_of(v, o));
    return dl >= 0 || (dl == -1 && tag_state(t) != ST_CLAIMED);
}

/* May a claim of cnt offsets and len bytes be taken at cur?  Only if every
 * slot it reuses holds a finished record of the previous lap (checked on
 * the very lines the claim writes next, or all at once by done_lo), and no
 * unfinished writer holds the bytes it reuses (below cur.hi + len - D). */
static inline int has_room(log_view *v, atom_pair cur, uint64_t cnt, uint64_t len, uint64_t lo, uint64_t hi)
{
    if (cur.hi + len > hi + v->d) return 0;
    if (cur.lo + cnt <= lo + v->n) return 1;
    for (uint64_t i = 0; i < cnt; i++)
        if (!slot_free(v, cur.lo + i)) return 0;
    return 1;
}
static inline int room(log_view *v, atom_pair cur, uint64_t cnt, uint64_t len)
{
    /* acquire: pairs with raise_word's CAS, which followed the raiser's
     * acquire loads of the finished tags - their writers' bytes happen
     * before ours; done_lo is only a shortcut for the slot checks */
    return has_room(v, cur, cnt, len, atom_load_relaxed64(&v->h->done_lo), atom_load_acquire64(&v->h->done_hi));
}

static int pid_dead(uint32_t pid)
{
    return pid && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* CAS slot s from the CLAIMED tag *t to a TOMBSTONE of the same lap and
 * owner, counted as it becomes visible; 0 if the tag moved (then *t has it). */
static int tombstone_claim(log_view *v, struct log_slot *s, uint64_t *t)
{
    /* acq_rel CAS: pairs with the owner's commit CAS (which then fails) and readers' acquire of the tag */
    if (!atom_cas64(&s->tag, t, mk_tag(tag_lap(*t), tag_owner(*t), ST_TOMBSTONE))) return 0;
    stat_add(&v->h->tombstones, 1);
    return 1;
}

/* A standalone log's producers are owned by raw pids (below PID_OWNER_LIMIT):
 * a claim at offset o whose pid is provably gone is repaired here, so the log
 * goes on without a supervisor.  Registration tokens (broker clients) are
 * repaired only by the supervisor, which knows their incarnation. */
static void repair_if_owner_gone(log_view *v, uint64_t o)
{
    struct log_slot *s = &v->slots[o & v->mask];
    uint64_t t = atom_load_acquire64(&s->tag); /* pairs with take_slot's CAS */
    if (lap_diff(tag_lap(t), lap_of(v, o)) != 0 || tag_state(t) != ST_CLAIMED) return;
    uint64_t owner = tag_owner(t);
    if (owner >= PID_OWNER_LIMIT || !pid_dead((uint32_t)owner)) return;
    if (tombstone_claim(v, s, &t)) {
        stat_add(&v->h->repairs, 1);
        wake_readers(v, 1);
    }
}

/* Wait, until the deadline, for room for a claim at *cur (re-read as the
 * claim moves).  LOG_OK: a claim at exactly *cur is safe - the caller's CAS
 * takes it only if the claim word still holds that pair. */
static int make_room(log_view *v, atom_pair *cur, uint64_t cnt, uint64_t len, int64_t timeout_ns,
                     int64_t *deadline, int nowait)
{
    for (uint64_t spins = 0;; spins++) {
        atom_pair w = raise_done(v);
        /* every offset below cur.lo finished: so is every byte below cur.hi */
        if (has_room(v, *cur, cnt, len, w.lo, w.hi) || w.lo >= cur->lo) return LOG_OK;
        if (nowait) return LOG_E_WOULD_BLOCK;
        if (is_deleted(v)) return LOG_E_DELETED;
        if (spins == 0) {
            stat_add(&v->h->room_waits, 1);
            if (*deadline == -1 && timeout_ns >= 0) *deadline = now_ns() + timeout_ns;
        }
        if (*deadline >= 0 && (spins & 63) == 0 && now_ns() >= *deadline) return LOG_E_TIMEOUT;
        if ((spins & 1023) == 1023) repair_if_owner_gone(v, w.lo);
        if (spins < 2000) cpu_relax();
        else {
            struct timespec ts = { 0, 50000 };
            nanosleep(&ts, NULL);
        }
        /* relaxed guesses, as in claim: the CAS there checks them */
        cur->lo = atom_load_relaxed64(&v->h->claim.lo);
        cur->hi = atom_load_relaxed64(&v->h->claim.hi);
    }
}

/* Claim cnt offsets and len bytes.  Every wait happens before the claim CAS
 * (the block-mode floor, room in both rings), so a caller that times out or
 * is interrupted has claimed nothing.  Returns LOG_OK with *o, *pos set.
 * nowait: LOG_E_WOULD_BLOCK, claiming nothing, rather than wait. */
static int claim(log_view *v, uint64_t cnt, uint64_t len, int64_t timeout_ns, int64_t *deadline, int nowait,
                 uint64_t *o, uint64_t *pos)
{
    struct log_header *h = v->h;
    /* relaxed, maybe torn: only a guess for the CAS below, which returns the real pair */
    atom_pair cur = { atom_load_relaxed64(&h->claim.lo), atom_load_relaxed64(&h->claim.hi) };
    for (;;) {
        if (v->overflow == LOG_BLOCK && blocked(v, cur, cnt, len)) {
            if (nowait) return LOG_E_WOULD_BLOCK;
            if (*deadline == -1 && timeout_ns >= 0) *deadline = now_ns() + timeout_ns;
            int rc = wait_floor(v, cur, cnt, len, timeout_ns < 0 ? -1 : *deadline);
            if (rc != LOG_OK) return rc;
            cur.lo = atom_load_relaxed64(&h->claim.lo); /* a guess for the CAS, as above */
            cur.hi = atom_load_relaxed64(&h->claim.hi);
            continue;
        }
        if (!room(v, cur, cnt, len)) {
            int rc = make_room(v, &cur, cnt, len, timeout_ns, deadline, nowait);
            if (rc != LOG_OK) return rc;
            if (v->overflow == LOG_BLOCK && blocked(v, cur, cnt, len)) continue;
        }
        atom_pair next = { cur.lo + cnt, cur.hi + len };
        /* full barrier CAS: pairs with other producers' claim CAS and with
         * the readers' acquire loads of claim.hi after their copy */
        if (atom_cas128(&h->claim, &cur, next)) break;
    }
    *o = cur.lo;
    *pos = cur.hi;
    return LOG_OK;
}

/* CAS slot(o) from its finished previous lap to CLAIMED by us.  claim() saw
 * that lap finished, so this never waits.  0 if the offset was taken from us
 * meanwhile (a grace repair of a stalled claim, or a hostile segment): the
 * caller claims again. */
static inline __attribute__((always_inline)) int take_slot(log_view *v, uint64_t o)
{
    struct log_slot *s = &v->slots[o & v->mask];
    uint64_t want = lap_of(v, o);
    /* acquire: pairs with the previous owner's commit CAS and the repair CASes */
    uint64_t t = atom_load_acquire64(&s->tag);
    while (lap_diff(tag_lap(t), want) == -1 && tag_state(t) != ST_CLAIMED) {
        /* acq_rel CAS: pairs with readers' tag re-check and the repairers' CAS */
        if (atom_cas64(&s->tag, &t, mk_tag(want, v->owner, ST_CLAIMED))) {
            /* The record we replace, o - N, is finished, and so is every
             * offset below it (each was checked by its slot's next claimer):
             * no unfinished writer holds a byte below its end.  Its fields
             * are ours to read now; publish the end when the mark lags. */
            uint64_t so = s->offset, end = s->pos + s->rec_len;
            if (end > atom_load_relaxed64(&v->h->done_hi) + v->mark_step && so == o - v->n &&
                tag_state(t) == ST_COMMITTED && s->rec_len <= v->max_rec_len && end <= claim_bytes(v))
                raise_word(&v->h->done_hi, end); /* nothing read is trusted: bounded by the bytes claimed */
            return 1;
        }
    }
    return 0;
}

/* Give back offset o, CLAIMED by us, as a tombstone (nothing written). */
static void tombstone_own(log_view *v, uint64_t o)
{
    uint64_t t = mk_tag(lap_of(v, o), v->owner, ST_CLAIMED);
    if (tombstone_claim(v, &v->slots[o & v->mask], &t)) /* fails if a repair did it first */
        stat_add(&v->h->repairs, 1);
}

/* Give back offsets o + from .. o + n - 1 of a claim we cannot fill: each we
 * can still take becomes a tombstone (a repair took the others), and
 * sleepers are woken to pass them. */
static void give_back(log_view *v, uint64_t o, uint64_t from, uint64_t n)
{
    for (uint64_t j = from; j < n; j++)
        if (take_slot(v, o + j)) tombstone_own(v, o + j);
    wake_readers(v, 1);
}

/* Make sure data_limit covers [.., end) before we write bytes below end. */
static inline void publish_limit(log_view *v, uint64_t end)
{
    /* acquire: pairs with other producers' CAS below */
    uint64_t l = atom_load_acquire64(&v->h->data_limit);
    if (end <= l) return;
    uint64_t want = (end + v->granule - 1) & ~(v->granule - 1);
    /* CAS up to want, never down: pairs with other producers' CAS and load above */
    while (l < end && !atom_cas64(&v->h->data_limit, &l, want))
        ;
    /* full fence: the raised limit is visible before any of our data
     * stores; pairs with read_one's acquire fence before it loads the limit */
    atom_fence_seqcst();
}

/* A header block is {u32 key length, i32 value length (-1: null), key,
 * value} repeated; 1 if blk holds whole entries only. */
static int headers_wellformed(const uint8_t *blk, uint64_t n)
{
    uint64_t i = 0;
    while (i < n) {
        uint32_t kl;
        int32_t vl;
        if (n - i < 8) return 0;
        memcpy(&kl, blk + i, 4);
        memcpy(&vl, blk + i + 4, 4);
        i += 8;
        if (vl < -1) return 0;
        uint64_t need = (uint64_t)kl + (vl > 0 ? (uint64_t)vl : 0);
        if (need > n - i) return 0;
        i += need;
    }
    return 1;
}

/* Fill the slot and the data ring for offset o, CLAIMED by us, and commit.
 * Returns 0 if our claim was repaired meanwhile (the supervisor declared our
 * registration dead): the record is not in the log and the caller appends
 * it again; the tombstone stays. */
static inline __attribute__((always_inline)) int write_record(log_view *v, uint64_t o, uint64_t pos, uint64_t rl, const char *val, int64_t vl,
                         const char *key, int64_t kl, const char *hd, uint64_t hl, int64_t ts)
{
    struct log_slot *s = &v->slots[o & v->mask];
    /* 64-bit, like every other spilled local here: a 32-bit spill read back
     * as 64 bits (the checksum's shift) cannot be store-forwarded and
     * stalls until the store buffer, full of record bytes, drains */
    uint64_t flags = (kl < 0 ? LOG_FLAG_KEY_NULL : 0) | (vl < 0 ? LOG_FLAG_VALUE_NULL : 0);
    uint64_t k = kl < 0 ? 0 : (uint64_t)kl, vv = vl < 0 ? 0 : (uint64_t)vl;
    s->pos = pos;
    s->rec_len = (uint32_t)rl;
    s->owner = v->owner;
    /* release: pos and rec_len before the offset that vouches for them;
     * pairs with finished_end's acquire load (a repaired claim's bytes) */
    atom_store_release64(&s->offset, o);
    crash_at(v, LOG_CP_AFTER_RESERVE);
    publish_limit(v, pos + rl);
    /* ask for the lines a few records on for writing now: their misses
     * overlap our copies instead of stalling the next locked instruction */
    __builtin_prefetch(v->data + ((pos + PREFETCH_AHEAD) & v->dmask), 1, 3);
    uint64_t sm = checksum_seed(o, ts, flags, k, hl, vv), at = pos + sizeof(struct log_rec_header);
    if (k) sm = put_part(v, at, key, k, sm ^ SUM_KEY_SEED);
    at += k;
    if (hl) sm = put_part(v, at, hd, hl, sm ^ SUM_HDR_SEED);
    at += hl;
    if (__builtin_expect(v->crash_point == LOG_CP_MID_COPY, 0)) {
        if (vv) ring_put(v, at, val, vv / 2);
        crash_at(v, LOG_CP_MID_COPY);
    }
    uint32_t sum = checksum_fold(put_part(v, at, val, vv, sm)); /* the value's pass even when empty */
    put_header(v, pos, o, (uint32_t)rl, sum);
    s->timestamp_ns = ts;
    s->key_len = (uint32_t)k;
    s->hdr_len = (uint32_t)hl;
    s->val_len = (uint32_t)vv;
    s->flags = (uint32_t)flags;
    s->checksum = sum;
    crash_at(v, LOG_CP_BEFORE_COMMIT);
    uint64_t lap = lap_of(v, o), t = mk_tag(lap, v->owner, ST_CLAIMED);
    /* acq_rel CAS, release on success: record bytes and slot fields before
     * COMMITTED; pairs with log_read's acquire load of the tag.  It fails
     * only if a repair tombstoned our claim: a tag never moves back. */
    return atom_cas64(&s->tag, &t, mk_tag(lap, v->owner, ST_COMMITTED));
}

#define MAX_CLAIM_TRIES 1000 /* claims lost in a row before the segment counts as corrupt */

static int64_t append_one(log_view *v, const char *val, int64_t val_len, const char *key, int64_t key_len,
                          const char *hdrs, uint64_t hdr_len, int64_t timestamp_ns, int64_t timeout_ns, int nowait)
{
    if (!v || !v->h) return LOG_E_BAD_ARG;
    uint64_t k = key_len < 0 ? 0 : (uint64_t)key_len, vv = val_len < 0 ? 0 : (uint64_t)val_len;
    if ((k && !key) || (vv && !val) || (hdr_len && !hdrs)) return LOG_E_BAD_ARG;
    if (k > v->max_record || vv > v->max_record || hdr_len > v->max_record || k + vv + hdr_len > v->max_record)
        return LOG_E_TOO_LARGE;
    if (hdr_len && !headers_wellformed((const uint8_t *)hdrs, hdr_len)) return LOG_E_BAD_ARG;
    uint64_t rl = align8(LOG_RECORD_OVERHEAD + k + vv + hdr_len);
    if (is_deleted(v)) return LOG_E_DELETED;
    int64_t ts = timestamp_ns ? timestamp_ns : wall_ns(), deadline = -1;
    uint64_t o, pos;
    for (int tries = 0;; tries++) {
        if (tries == MAX_CLAIM_TRIES) return LOG_E_BAD_LAYOUT;
        int rc = claim(v, 1, rl, timeout_ns, &deadline, nowait, &o, &pos);
        if (rc != LOG_OK) return rc;
        crash_at(v, LOG_CP_AFTER_CLAIM);
        if (take_slot(v, o)) {
            crash_at(v, LOG_CP_AFTER_SLOT_CAS);
            if (write_record(v, o, pos, rl, val, val_len, key, key_len, hdrs, hdr_len, ts)) break;
        }
        stat_add(&v->h->retries, 1); /* the offset was taken from us: nothing lost, claim again */
    }
    crash_at(v, LOG_CP_BEFORE_WAKE);
    wake_readers(v, 0);
    return (int64_t)o;
}

int64_t log_append(log_view *v, const char *val, int64_t val_len, const char *key, int64_t key_len,
                   const char *hdrs, uint64_t hdr_len, int64_t timestamp_ns, int64_t timeout_ns)
{
    return append_one(v, val, val_len, key, key_len, hdrs, hdr_len, timestamp_ns, timeout_ns, 0);
}

int64_t log_try_append_value(log_view *v, const char *val, uint64_t val_len, int64_t timestamp_ns)
{
    if (val_len > INT64_MAX) return LOG_E_TOO_LARGE;
    return append_one(v, val, (int64_t)val_len, NULL, -1, NULL, 0, timestamp_ns, 0, 1);
}

int64_t log_append_batch(log_view *v, const char *data, const uint32_t *lens, uint64_t fixed_len,
                         uint64_t n, int64_t timestamp_ns, int64_t timeout_ns)
{
    if (!v || !v->h || (!data && n)) return LOG_E_BAD_ARG;
    if (n == 0) return LOG_E_BAD_ARG;
    if (n > v->n) return LOG_E_TOO_LARGE;
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = lens ? lens[i] : fixed_len;
        if (l > v->max_record) return LOG_E_TOO_LARGE;
        total += align8(LOG_RECORD_OVERHEAD + l);
    }
    if (total > v->d) return LOG_E_TOO_LARGE;
    if (is_deleted(v)) return LOG_E_DELETED;
    int64_t ts = timestamp_ns ? timestamp_ns : wall_ns(), deadline = -1;
    uint64_t o, pos;
    for (int tries = 0;; tries++) {
        if (tries == MAX_CLAIM_TRIES) return LOG_E_BAD_LAYOUT;
        int rc = claim(v, n, total, timeout_ns, &deadline, 0, &o, &pos);
        if (rc != LOG_OK) return rc;
        crash_at(v, LOG_CP_AFTER_CLAIM);
        if (take_slot(v, o)) break;
        /* a grace repair took our first offset (we stalled past it after the
         * claim): give the whole claim back as tombstones and claim again */
        stat_add(&v->h->retries, 1);
        give_back(v, o, 1, n);
    }
    crash_at(v, LOG_CP_AFTER_SLOT_CAS);
    int64_t first = (int64_t)o;
    const char *p = data;
    /* Each slot is taken just before its record is written (one visit of
     * its line).  While copying, also check the slots a next batch of n
     * would reuse (their loads overlap the copies); if all hold finished
     * records, raise done_lo past them, so that batch claims without a
     * pass of its own. */
    int ahead = 1;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = lens ? lens[i] : fixed_len;
        uint64_t rl = align8(LOG_RECORD_OVERHEAD + l);
        ahead &= slot_free(v, o + n + i);
        if ((i == 0 || take_slot(v, o + i)) && write_record(v, o + i, pos, rl, p, (int64_t)l, NULL, -1, NULL, 0, ts)) {
            pos += rl;
            p += l;
            continue;
        }
        /* offset o + i was taken from us: a grace repair (we stalled past it
         * mid-batch) or a repair of our claim.  Records before it are in
         * the log; give back the rest of the claim and append the rest as a
         * batch of its own: nothing is lost, the first offset stays right,
         * and only here are the batch's offsets not all consecutive. */
        stat_add(&v->h->retries, 1);
        give_back(v, o, i + 1, n);
        /* the rest waits for room without the deadline once part of the
         * batch is in the log: a timeout here would have the caller (who
         * retries a timed-out batch whole) append that part twice */
        int64_t r = log_append_batch(v, p, lens ? lens + i : NULL, fixed_len, n - i, ts, i ? -1 : timeout_ns);
        if (r < 0) return r;
        return i == 0 ? r : first;
    }
    /* every offset below o + n - N was finished before our claim (checked by
     * its slot's next claimer), those up to o + 2n - N were just seen so */
    if (ahead && o + 2 * n > v->n) raise_word(&v->h->done_lo, o + 2 * n - v->n);
    crash_at(v, LOG_CP_BEFORE_WAKE);
    wake_readers(v, 0);
    return first;
}

/* ---- read ---------------------------------------------------------------- */
/* Read offset o into buf (key, headers, value back to back). */
/* Read offset o: key and headers (and the value, when vbuf is NULL) into
 * buf; with vbuf, the value into vbuf, which must be exactly vcap bytes
 * (else LOG_E_BUFFER, nothing delivered): a reader that knows the value's
 * size copies it once, straight into its own object. */
static int read_one_x(log_view *v, uint64_t o, log_rec *rec, uint8_t *buf, uint64_t cap, uint8_t *vbuf, uint64_t vcap,
                      uint64_t *view_at, int sum_view)
{
    if (o < v->start) return LOG_LAPPED;
    /* acquire: pairs with log_trim's CAS; trimmed records read as lapped */
    if (o < atom_load_acquire64(&v->h->trim)) return LOG_LAPPED;
    struct log_slot *s = &v->slots[o & v->mask];
    uint64_t want = lap_of(v, o);
    /* acquire: pairs with write_record's release-store of COMMITTED */
    uint64_t t = atom_load_acquire64(&s->tag);
    int64_t dl = lap_diff(tag_lap(t), want);
    if (dl < 0) return LOG_NOT_YET;
    if (dl > 0) return LOG_LAPPED;
    switch (tag_state(t)) {
    case ST_CLAIMED: return LOG_NOT_YET;
    case ST_TOMBSTONE: return LOG_TOMBSTONE;
    case ST_EMPTY: return LOG_LAPPED; /* only below the start */
    default: break;
    }
    uint64_t pos = s->pos, so = s->offset;
    uint64_t rl = s->rec_len, kl = s->key_len, hl = s->hdr_len, vl = s->val_len;
    uint32_t flags = s->flags, sum = s->checksum;
    int64_t ts = s->timestamp_ns;
    /* bounds: nothing from the slot is trusted */
    uint64_t payload = kl + hl + vl; /* each < 2^32: no overflow */
    if (so != o || rl < LOG_RECORD_OVERHEAD || rl > v->max_rec_len || payload > v->max_record ||
        align8(LOG_RECORD_OVERHEAD + payload) != rl) {
        /* a changed tag or passed claim: the fields were being rewritten (acquire pairs with take_slot's CAS) */
        if (atom_load_acquire64(&s->tag) != t || claim_bytes(v) - pos > v->d) return LOG_LAPPED;
        return LOG_CORRUPT_RECORD;
    }
    if (vbuf || view_at ? kl + hl > cap || (vbuf && vl != vcap) : payload > cap) return LOG_E_BUFFER;
    uint64_t vat = (pos + LOG_RECORD_OVERHEAD + kl + hl) & v->dmask; /* < D */
    if (view_at && vl > v->d - vat) return LOG_E_BUFFER; /* the value wraps the ring's end: no one view */
    struct log_rec_header rh;
    ring_get(v, pos, &rh, sizeof rh);
    uint64_t sm = checksum_seed(o, (int64_t)ts, flags, kl, hl, vl), at = pos + sizeof rh;
    if (kl) sm = get_part(v, at, buf, kl, sm ^ SUM_KEY_SEED);
    if (hl) sm = get_part(v, at + kl, buf + kl, hl, sm ^ SUM_HDR_SEED);
    if (view_at) { /* summed where it lies (if asked), not copied */
        if (sum_view) sm = hash_part(v->data + vat, vl, sm);
        *view_at = (uint64_t)(v->data - (uint8_t *)v->h) + vat;
    } else /* (an empty value: no pointer arithmetic on the NULL buf of an empty record) */
        sm = get_part(v, at + kl + hl, vbuf ? vbuf : vl ? buf + kl + hl : buf, vl, sm);
    /* acquire fence: orders the copies above before the re-checks below;
     * pairs with the next writer's claim CAS / slot CAS (full barriers) */
    atom_fence_acquire();
    if (atom_load_relaxed64(&s->tag) != t) return LOG_LAPPED; /* ordered by the fence above */
    /* no writer went past pos + D?  The data limit (rarely written) says so
     * for all but the oldest granule; only there ask the claim word, which
     * bounds every reservation exactly */
    if (atom_load_relaxed64(&v->h->data_limit) - pos > v->d &&
        atom_load_relaxed64(&v->h->claim.hi) - pos > v->d) /* both ordered by the fence above */
        return LOG_LAPPED;
    /* an unsummed view: the record header must still agree with its slot */
    if (rh.offset != o || rh.rec_len != rl || rh.checksum != sum || ((!view_at || sum_view) && checksum_fold(sm) != sum))
        return LOG_CORRUPT_RECORD;
    if (hl && !headers_wellformed(buf + kl, hl)) return LOG_CORRUPT_RECORD; /* a hostile writer's block */
    /* a view is the record's only while no producer may reuse its bytes: the
     * block-mode floor at or below it, in offsets and in bytes.  Acquire
     * loads: pair with log_set_floor's CASes, which raise floor_bytes first,
     * so a setter between its two CASes is seen here too.  Else: a copy. */
    if (view_at && (atom_load_acquire64(&v->h->floor_bytes) > pos || atom_load_acquire64(&v->h->floor) > o))
        return LOG_E_BUFFER;
    rec->offset = o;
    rec->timestamp_ns = ts;
    rec->key_len = (uint32_t)kl;
    rec->hdr_len = (uint32_t)hl;
    rec->val_len = (uint32_t)vl;
    rec->flags = flags & (LOG_FLAG_KEY_NULL | LOG_FLAG_VALUE_NULL);
    return LOG_OK;
}

static void count_read(log_view *v, int rc)
{
    if (rc == LOG_LAPPED) stat_add(&v->h->laps_seen, 1);
    else if (rc == LOG_CORRUPT_RECORD) stat_add(&v->h->corrupt_skips, 1);
}

static int read_one(log_view *v, uint64_t o, log_rec *rec, uint8_t *buf, uint64_t cap)
{
    return read_one_x(v, o, rec, buf, cap, NULL, 0, NULL, 0);
}

int64_t log_value_len_hint(log_view *v, uint64_t offset)
{
    if (!v || !v->h || offset < v->start) return -1;
    struct log_slot *s = &v->slots[offset & v->mask];
    /* acquire: pairs with write_record's commit; only a guess, read_one_x checks everything again */
    uint64_t t = atom_load_acquire64(&s->tag);
    if (lap_diff(tag_lap(t), lap_of(v, offset)) != 0 || tag_state(t) != ST_COMMITTED) return -1;
    uint64_t vl = atom_load_relaxed32(&s->val_len); /* a guess: may be mid-rewrite */
    uint32_t fl = atom_load_relaxed32(&s->flags); /* the same */
    return vl <= v->max_record && !(fl & LOG_FLAG_VALUE_NULL) ? (int64_t)vl : -1;
}

/* One counted read of a single record (log_read, log_read_value_into). */
static int read_single(log_view *v, uint64_t offset, log_rec *rec, uint8_t *buf, uint64_t cap, uint8_t *vbuf,
                       uint64_t vcap, uint64_t *view_at, int sum_view)
{
    int rc = read_one_x(v, offset, rec, buf, cap, vbuf, vcap, view_at, sum_view);
    if (rc == LOG_NOT_YET && is_deleted(v)) rc = LOG_E_DELETED;
    rec->buf_pos = 0;
    if (rc != LOG_OK) rec->offset = offset;
    count_read(v, rc);
    return rc;
}

int log_read_value_into(log_view *v, uint64_t offset, log_rec *rec, char *buf, uint64_t cap, char *vbuf,
                        uint64_t vlen)
{
    if (!v || !v->h || !rec || (!buf && cap) || (!vbuf && vlen)) return LOG_E_BAD_ARG;
    return read_single(v, offset, rec, (uint8_t *)buf, cap, (uint8_t *)(vbuf ? vbuf : buf), vlen, NULL, 0);
}

int log_read_value_view(log_view *v, uint64_t offset, log_rec *rec, char *buf, uint64_t cap, uint64_t *value_at,
                        int check)
{
    if (!v || !v->h || !rec || (!buf && cap) || !value_at) return LOG_E_BAD_ARG;
    return read_single(v, offset, rec, (uint8_t *)buf, cap, NULL, 0, value_at, check != 0);
}

int log_read(log_view *v, uint64_t offset, log_rec *rec, char *buf, uint64_t cap)
{
    if (!v || !v->h || !rec || (!buf && cap)) return LOG_E_BAD_ARG;
    return read_single(v, offset, rec, (uint8_t *)buf, cap, NULL, 0, NULL, 0);
}

int log_read_batch(log_view *v, uint64_t offset, uint64_t max_records, log_rec *recs,
                   char *buf, uint64_t cap, log_batch *out)
{
    if (!v || !v->h || !recs || !out || (!buf && cap)) return LOG_E_BAD_ARG;
    memset(out, 0, sizeof *out);
    uint64_t used = 0, o = offset;
    int stop = LOG_OK;
    while (out->count < max_records) {
        log_rec *r = &recs[out->count];
        int rc = read_one(v, o, r, (uint8_t *)buf + used, cap - used);
        count_read(v, rc);
        if (rc == LOG_OK) {
            r->buf_pos = used;
            used += (uint64_t)r->key_len + r->hdr_len + r->val_len;
            out->count++;
            o++;
        } else if (rc == LOG_TOMBSTONE) { out->tombstones++; o++; }
        else if (rc == LOG_CORRUPT_RECORD) { out->corrupt++; o++; }
        else if (rc == LOG_E_BUFFER) {
            if (out->count == 0) return LOG_E_BUFFER;
            break; /* the next call starts with an empty buffer */
        } else { stop = rc; break; }
    }
    out->next_offset = o;
    out->stop = stop;
    if (stop == LOG_NOT_YET && out->count == 0 && is_deleted(v)) return LOG_E_DELETED;
    return LOG_OK;
}

int log_read_batch_rows(log_view *v, uint64_t offset, uint64_t max_records, char *rows,
                        uint64_t row_len, uint32_t *lens, uint64_t *offsets, log_batch *out)
{
    if (!v || !v->h || !rows || !lens || !offsets || !out) return LOG_E_BAD_ARG;
    memset(out, 0, sizeof *out);
    uint64_t o = offset, cap = v->max_record;
    uint8_t *tmp = NULL;
    int stop = LOG_OK;
    while (out->count < max_records) {
        log_rec r;
        uint8_t *row = (uint8_t *)rows + out->count * row_len;
        /* read straight into the row when the whole payload fits */
        int rc = read_one(v, o, &r, row, row_len);
        if (rc == LOG_E_BUFFER) {
            if (!tmp && !(tmp = malloc(cap ? cap : 1))) return LOG_E_BAD_ARG;
            rc = read_one(v, o, &r, tmp, cap);
            if (rc == LOG_OK) {
                if (r.val_len > row_len) { stop = LOG_E_BUFFER; break; }
                memmove(row, tmp + r.key_len + r.hdr_len, r.val_len);
            }
        } else if (rc == LOG_OK && (r.key_len || r.hdr_len)) {
            memmove(row, row + r.key_len + r.hdr_len, r.val_len);
        }
        count_read(v, rc);
        if (rc == LOG_OK) {
            lens[out->count] = r.val_len;
            offsets[out->count] = o;
            out->count++;
            o++;
        } else if (rc == LOG_TOMBSTONE) { out->tombstones++; o++; }
        else if (rc == LOG_CORRUPT_RECORD) { out->corrupt++; o++; }
        else { stop = rc; break; }
    }
    free(tmp);
    out->next_offset = o;
    out->stop = stop;
    if (stop == LOG_E_BUFFER && out->count == 0) return LOG_E_BUFFER;
    if (stop == LOG_E_BUFFER) out->stop = LOG_OK;
    return LOG_OK;
}

#include "shmlog_wait.c"

/* ---- watermarks and stats ------------------------------------------------ */
/* Has offset o been overwritten (index or data ring)?  Monotone in o because
 * byte positions grow with offsets. */
static int overwritten(log_view *v, uint64_t o, uint64_t bytes)
{
    struct log_slot *s = &v->slots[o & v->mask];
    uint64_t t = atom_load_acquire64(&s->tag); /* pairs with write_record's release */
    int64_t dl = lap_diff(tag_lap(t), lap_of(v, o));
    if (dl > 0) return 1;
    if (dl == 0 && tag_state(t) == ST_COMMITTED) {
        uint64_t pos = s->pos;
        return bytes - pos > v->d;
    }
    return 0;
}

int log_watermarks(log_view *v, uint64_t *low, uint64_t *high)
{
    if (!v || !v->h || !low || !high) return LOG_E_BAD_ARG;
    uint64_t hi = claim_offset(v), bytes = claim_bytes(v);
    uint64_t lo = v->start;
    if (hi > v->start + v->n && hi - v->n > lo) lo = hi - v->n;
    if (hi < lo) hi = lo; /* a corrupted claim word cannot make low > high */
    uint64_t tr = atom_load_acquire64(&v->h->trim); /* pairs with log_trim's CAS */
    if (tr > lo) lo = tr < hi ? tr : hi;
    /* binary search for the first offset not overwritten */
    uint64_t a = lo, b = hi;
    while (a < b) {
        uint64_t m = a + (b - a) / 2;
        if (overwritten(v, m, bytes)) a = m + 1;
        else b = m;
    }
    *low = a;
    *high = hi;
    return LOG_OK;
}

int log_get_stats(log_view *v, log_stats *out)
{
    if (!v || !v->h || !out) return LOG_E_BAD_ARG;
    struct log_header *h = v->h;
    memset(out, 0, sizeof *out);
    log_watermarks(v, &out->low, &out->high);
    out->start_offset = v->start;
    out->floor = atom_load_acquire64(&h->floor); /* both pair with log_set_floor's releases */
    out->floor_bytes = atom_load_acquire64(&h->floor_bytes);
    out->bytes_claimed = claim_bytes(v);
    out->slot_count = v->n;
    out->data_capacity = v->d;
    out->max_record = v->max_record;
    out->overflow = v->overflow;
    out->laps_seen = stat_get(&h->laps_seen);
    out->tombstones = stat_get(&h->tombstones);
    out->corrupt_skips = stat_get(&h->corrupt_skips);
    out->repairs = stat_get(&h->repairs);
    out->wakeups = stat_get(&h->wakeups);
    out->retries = stat_get(&h->retries);
    out->block_waits = stat_get(&h->block_waits);
    out->room_waits = stat_get(&h->room_waits);
    out->done = atom_load_acquire64(&h->done_lo); /* a snapshot; pairs with raise_done's CAS */
    out->trim = atom_load_acquire64(&h->trim); /* pairs with log_trim's CAS */
    out->waiters = atom_load_acquire32(&h->waiters); /* a snapshot; pairs with the sleepers' flag stores */
    out->floor_waiters = atom_load_relaxed32(&h->floor_waiters); /* relaxed: a snapshot for stat */
    return LOG_OK;
}

/* ---- retention floor (block mode) --------------------------------------- */
int log_set_floor(log_view *v, uint64_t floor)
{
    if (!v || !v->h) return LOG_E_BAD_ARG;
    struct log_header *h = v->h;
    uint64_t hi = claim_offset(v);
    if (floor > hi) return LOG_E_OFFSET;
    uint64_t cur = atom_load_acquire64(&h->floor); /* pairs with earlier setters' release store */
    if (floor <= cur) return LOG_OK; /* only moves forward */
    /* byte floor: the end of the last committed record below the floor; a
     * lower bound of the floor record's start, so never too generous */
    uint64_t fb = atom_load_acquire64(&h->floor_bytes);
    uint64_t stop = floor > cur + v->n ? floor - v->n : cur;
    for (uint64_t o = floor; o > stop && o > v->start; o--) {
        struct log_slot *s = &v->slots[(o - 1) & v->mask];
        uint64_t t = atom_load_acquire64(&s->tag); /* pairs with write_record's release */
        if (lap_diff(tag_lap(t), lap_of(v, o - 1)) == 0 && tag_state(t) == ST_COMMITTED) {
            uint64_t end = s->pos + s->rec_len;
            /* re-check the tag (pairs with take_slot's CAS): the fields were stable */
            if (atom_load_acquire64(&s->tag) == t && end > fb && end <= claim_bytes(v)) fb = end;
            break;
        }
    }
    /* CAS-max, never a store: a setter that computed a lower floor must not
     * store it over a higher one set meanwhile (a floor that went back with
     * no setter left to raise it again held producers forever: the queue's
     * concurrent acks).  acq_rel CASes: pair with blocked()'s acquire loads */
    raise_word(&h->floor_bytes, fb);
    raise_word(&h->floor, floor);
    log_wake_blocked(v);
    return LOG_OK;
}

int log_trim(log_view *v, uint64_t offset)
{
    if (!v || !v->h) return LOG_E_BAD_ARG;
    if (offset > claim_offset(v)) return LOG_E_OFFSET;
    /* CAS-max (acq_rel): pairs with read_one's and log_watermarks' acquire loads */
    raise_word(&v->h->trim, offset);
    /* block mode: nobody reads below the trim again, so producers may reuse it */
    if (v->overflow == LOG_BLOCK) log_set_floor(v, offset);
    wake_readers(v, 1); /* a reader waiting below it learns at once */
    return LOG_OK;
}
uint64_t log_get_trim(log_view *v) { return atom_load_acquire64(&v->h->trim); /* pairs with log_trim */ }

/* acquire: pairs with log_set_floor's release store */
uint64_t log_get_floor(log_view *v) { return atom_load_acquire64(&v->h->floor); }

/* Block mode: should a group that has read up to pos commit now rather than
 * at its next interval?  Yes once pos is past the floor by a quarter of
 * either ring (as a raw reader moves the floor: producers refill the ring
 * while the reader reads on, never held for a whole interval), or once a
 * producer waits for the floor and the reader has read all there is (the
 * producer's record needs more than the quarters freed so far); the caller
 * checks that the group holds the floor (ext/fastpoll.c).  A hint:
 * the loads are relaxed (a stale word moves a commit by a poll) and the words
 * are compared, never used as an index; the claim line, which producers
 * write, is read only while one waits. */
int log_floor_wanted(log_view *v, uint64_t pos)
{
    if (!v || !v->h || v->overflow != LOG_BLOCK) return 0;
    struct log_header *h = v->h;
    uint64_t fl = atom_load_relaxed64(&h->floor); /* relaxed: a hint, as above */
    if (pos <= fl) return 0;
    if (pos - fl >= (v->n + 3) / 4) return 1;
    /* the bytes read: the end of record pos - 1, in the reader's cache (it
     * just read it); above the floor, so no producer may reuse its slot */
    const struct log_slot *s = &v->slots[(pos - 1) & v->mask];
    uint64_t t = atom_load_acquire64(&s->tag); /* pairs with write_record's release store */
    if (lap_diff(tag_lap(t), lap_of(v, pos - 1)) == 0 && tag_state(t) == ST_COMMITTED) {
        uint64_t end = s->pos + s->rec_len, fb = atom_load_relaxed64(&h->floor_bytes); /* relaxed: a hint */
        /* re-check the tag (pairs with take_slot's CAS): the fields were the record's */
        if (atom_load_acquire64(&s->tag) == t && end > fb && end - fb >= (v->d + 3) / 4) return 1;
    }
    if (!atom_load_relaxed32(&h->floor_waiters)) return 0; /* relaxed: a hint (set after wait_floor spins) */
    return atom_load_relaxed64(&h->claim.lo) == pos; /* relaxed: a hint */
}
uint64_t log_claimed(log_view *v) { return claim_offset(v); }
void log_wake_readers(log_view *v) { wake_readers(v, 1); }

/* ---- repair ------------------------------------------------------------- */
int64_t log_repair_dead(log_view *v, uint32_t owner)
{
    if (!v || !v->h || !owner || owner > OWNER_MASK) return LOG_E_BAD_ARG;
    int64_t n = 0;
    for (uint64_t i = 0; i < v->n; i++) {
        struct log_slot *s = &v->slots[i];
        uint64_t t = atom_load_acquire64(&s->tag); /* pairs with take_slot's CAS */
        while (tag_state(t) == ST_CLAIMED && tag_owner(t) == (owner & OWNER_MASK)) {
            if (tombstone_claim(v, s, &t)) {
                n++;
                break;
            }
        }
    }
    if (n) {
        stat_add(&v->h->repairs, 1);
        wake_readers(v, 1);
    }
    return n;
}

static int unclaimed(log_view *v, uint64_t o, uint64_t *tag)
{
    uint64_t t = atom_load_acquire64(&v->slots[o & v->mask].tag); /* pairs with take_slot's CAS */
    *tag = t;
    return lap_diff(tag_lap(t), lap_of(v, o)) < 0;
}

int64_t log_scan_unclaimed(log_view *v, uint64_t *out, uint64_t max)
{
    if (!v || !v->h || (!out && max)) return LOG_E_BAD_ARG;
    uint64_t hi = claim_offset(v), lo = v->start, t;
    if (hi > lo + v->n) lo = hi - v->n;
    int64_t n = 0;
    for (uint64_t o = lo; o < hi && (uint64_t)n < max; o++)
        if (unclaimed(v, o, &t)) out[n++] = o;
    return n;
}

int log_tombstone_unclaimed(log_view *v, uint64_t offset)
{
    if (!v || !v->h) return LOG_E_BAD_ARG;
    uint64_t hi = claim_offset(v);
    if (offset >= hi || offset < v->start || hi - offset > v->n) return LOG_E_OFFSET;
    uint64_t t;
    while (unclaimed(v, offset, &t)) {
        /* never take a slot from a live CLAIMED owner: its commit is a plain store */
        if (tag_state(t) == ST_CLAIMED) return LOG_NOT_YET;
        /* CAS forward to our lap: pairs with take_slot's CAS (which then fails
         * and re-claims) and readers' acquire */
        if (atom_cas64(&v->slots[offset & v->mask].tag, &t, mk_tag(lap_of(v, offset), 0, ST_TOMBSTONE))) {
            stat_add(&v->h->tombstones, 1);
            stat_add(&v->h->repairs, 1);
            wake_readers(v, 1);
            return LOG_OK;
        }
    }
    return LOG_NOT_YET;
}

/* ---- topic deletion ------------------------------------------------------ */
int log_mark_deleted(log_view *v)
{
    if (!v || !v->h) return LOG_E_BAD_ARG;
    /* release: pairs with is_deleted's acquire load */
    __atomic_store_n(&v->h->deleted, 1u, __ATOMIC_RELEASE);
    wake_readers(v, 1);
    atom_fetch_add32(&v->h->floor_seq, 1); /* pairs with wait_floor's futex value */
    futex_wake_all(&v->h->floor_seq);
    return LOG_OK;
}

#include "shmwords.c"
