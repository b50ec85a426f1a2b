/* shmwords.c - words of other segments (the namespace segment's group
 * tables): bounds-checked atomics and futexes at an offset, the 16-byte
 * {owner, value} commit pairs, the block floor over a commit table, and the
 * partitioners' key hashes.  Nothing here knows the partition log's layout.
 * Part of shmlog.c's translation unit (it #includes this file): it uses
 * shmlog.c's futex helpers. */

/* ---- atomics on other segments ------------------------------------------- */
static inline uint64_t *word_at(void *base, uint64_t size, uint64_t off)
{
    if (!base || (off & 7) || off > size || size - off < 8) return NULL;
    return (uint64_t *)((uint8_t *)base + off);
}
/* acquire: pairs with shm_store64's release / the RMWs below */
uint64_t shm_load64(void *base, uint64_t size, uint64_t off)
{ uint64_t *p = word_at(base, size, off); return p ? atom_load_acquire64(p) : 0; }
/* release: pairs with shm_load64's acquire */
int shm_store64(void *base, uint64_t size, uint64_t off, uint64_t val)
{ uint64_t *p = word_at(base, size, off); if (!p) return LOG_E_BAD_ARG; atom_store_release64(p, val); return LOG_OK; }
/* acq_rel CAS: pairs with the loads, stores and RMWs above */
int shm_cas64(void *base, uint64_t size, uint64_t off, uint64_t expected, uint64_t desired)
{ uint64_t *p = word_at(base, size, off); return p ? atom_cas64(p, &expected, desired) : 0; }
/* seq_cst RMW: pairs with the loads and stores above */
int64_t shm_fetch_add64(void *base, uint64_t size, uint64_t off, uint64_t delta)
{ uint64_t *p = word_at(base, size, off); return p ? (int64_t)atom_fetch_add64(p, delta) : LOG_E_BAD_ARG; }

/* A u32 futex word in another segment: sleep while it equals val (at most
 * timeout_ns; < 0 forever); 0 when it moved or we were woken, -1 on timeout. */
int shm_futex_wait32(void *base, uint64_t size, uint64_t off, uint32_t val, int64_t timeout_ns)
{
    uint32_t *p = word32_at(base, size, off);
    if (!p) return LOG_E_BAD_ARG;
    /* acquire: pairs with shm_futex_wake32's increment */
    if (__atomic_load_n(p, __ATOMIC_ACQUIRE) != val) return 0;
    long rc = futex_wait(p, val, timeout_ns);
    return rc < 0 && errno == ETIMEDOUT ? -1 : 0;
}
/* Move the word on and wake every sleeper (always a syscall: for rare
 * events - group changes - never the data path). */
int shm_futex_wake32(void *base, uint64_t size, uint64_t off)
{
    uint32_t *p = word32_at(base, size, off);
    if (!p) return LOG_E_BAD_ARG;
    atom_fetch_add32(p, 1); /* seq_cst: pairs with the sleepers' acquire load and the kernel's compare */
    futex_wake_all(p);
    return LOG_OK;
}

/* A 16-byte {owner, value} pair (a committed offset and the token of the
 * member allowed to move it).  off must be 16-aligned. */
static inline atom_pair *pair_at(void *base, uint64_t size, uint64_t off)
{
    if (!base || (off & 15) || off > size || size - off < 16) return NULL;
    return (atom_pair *)((uint8_t *)base + off);
}
/* Set the value if the owner is still `owner`: 1 done, 0 fenced (another
 * owner holds it), LOG_E_BAD_ARG for a bad offset. */
int shm_pair_commit(void *base, uint64_t size, uint64_t off, uint64_t owner, uint64_t value)
{
    atom_pair *p = pair_at(base, size, off);
    if (!p) return LOG_E_BAD_ARG;
    /* relaxed guesses: the CAS returns the real pair */
    atom_pair cur = { atom_load_relaxed64(&p->lo), atom_load_relaxed64(&p->hi) };
    for (;;) {
        if (cur.lo != owner) return 0;
        atom_pair next = { owner, value };
        /* full barrier: pairs with shm_pair_own's CAS (a hand-over fences us) */
        if (atom_cas128(p, &cur, next)) return 1;
    }
}
/* Clear the owner if it is still `owner` (a member that is gone): 1 done,
 * 0 someone else owns it now. */
int shm_pair_release(void *base, uint64_t size, uint64_t off, uint64_t owner)
{
    atom_pair *p = pair_at(base, size, off);
    if (!p) return LOG_E_BAD_ARG;
    atom_pair cur = { atom_load_relaxed64(&p->lo), atom_load_relaxed64(&p->hi) };
    for (;;) {
        if (cur.lo != owner) return 0;
        atom_pair next = { 0, cur.hi };
        /* full barrier: pairs with shm_pair_own's and shm_pair_commit's CAS */
        if (atom_cas128(p, &cur, next)) return 1;
    }
}
/* Hand the pair to a new owner, keeping its value; returns the value. */
uint64_t shm_pair_own(void *base, uint64_t size, uint64_t off, uint64_t owner)
{
    atom_pair *p = pair_at(base, size, off);
    if (!p) return 0;
    atom_pair cur = { atom_load_relaxed64(&p->lo), atom_load_relaxed64(&p->hi) };
    for (;;) {
        atom_pair next = { owner, cur.hi };
        /* full barrier: pairs with shm_pair_commit's CAS */
        if (atom_cas128(p, &cur, next)) return next.hi;
    }
}

/* The commit table (broker/groups.py): n entries of esize bytes at off,
 * open addressing with linear probing from home(key); an entry's key word
 * is written last (release), 0 free, 1 deleted.  The block-mode floor of
 * one partition: the lowest committed value (offset + 1; 0 = assigned,
 * nothing committed yet) over the entries of every group index in
 * [0, max_groups) keyed (gidx + 1) << 52 | key_low.  1 with *low set, 0 when
 * no group has an entry, LOG_E_BAD_ARG for a bad geometry.  At most
 * 9 * max_groups * n probes however the table was corrupted. */
int shm_commit_floor(void *base, uint64_t size, uint64_t off, uint64_t n, uint64_t esize, uint64_t value_off,
                     uint64_t key_low, uint32_t max_groups, uint64_t *low)
{
    if (!base || !low || !n || (n & (n - 1)) || (off & 7) || (esize & 7) || esize < 16 || (value_off & 7) ||
        value_off > esize - 8 || off > size || n > (size - off) / esize || max_groups > 4095 ||
        key_low >= (1ULL << 52))
        return LOG_E_BAD_ARG;
    uint8_t *tab = (uint8_t *)base + off;
    int found = 0;
    uint64_t best = 0;
    for (uint32_t g = 0; g < max_groups; g++) {
        uint64_t key = ((uint64_t)(g + 1) << 52) | key_low;
        unsigned retries = 0;
        uint64_t h = (uint64_t)(((unsigned __int128)key * 0x9E3779B97F4A7C15ULL) >> 20) & (n - 1); /* home() */
        for (uint64_t k = 0; k < n; k++) {
            const volatile uint64_t *e = (const volatile uint64_t *)(tab + ((h + k) & (n - 1)) * esize);
            /* acquire: pairs with the release store of the key that publishes an entry */
            uint64_t cur = atom_load_acquire64(e);
            if (cur == 0) break; /* free: the end of key's chain */
            if (cur != key) continue;
            /* acquire: pairs with the committer's CAS on the {owner, value} pair */
            uint64_t v = atom_load_acquire64(e + value_off / 8);
            /* acquire: a deleted and reused entry changes its key after its value: read the key again */
            if (atom_load_acquire64(e) != key) {
                if (++retries <= 8) k = (uint64_t)-1; /* probe this key's chain again (bounded) */
                continue;
            }
            if (!found || v < best) best = v;
            found = 1;
            break;
        }
    }
    *low = best;
    return found;
}

/* ---- partitioner hashes -------------------------------------------------- */
int32_t part_murmur2(const char *key, uint64_t len)
{
    const uint32_t m = 0x5bd1e995u, seed = 0x9747b28cu;
    const uint8_t *d = (const uint8_t *)key;
    uint32_t h = seed ^ (uint32_t)len;
    uint64_t n4 = len / 4;
    for (uint64_t i = 0; i < n4; i++) {
        uint32_t k = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 | (uint32_t)d[4 * i + 2] << 16 |
                     (uint32_t)d[4 * i + 3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *t = d + 4 * n4;
    switch (len & 3) {
    case 3: h ^= (uint32_t)t[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)t[1] << 8;  /* fall through */
    case 1: h ^= t[0]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

uint32_t part_fnv1a(const char *key, uint64_t len)
{
    uint32_t h = 0x811C9DC5u;
    for (uint64_t i = 0; i < len; i++) {
        h ^= (uint8_t)key[i];
        h *= 0x01000193u;
    }
    return h;
}
