/* shmlog_atomic.h - the only place ordering is expressed.
 *
 * Every shared-memory access that orders anything goes through one of these
 * helpers; each call site says in a comment which helper on the other side it
 * pairs with (the kernel's circular-buffers.rst habit).  C11 builtins, so the
 * same code is correct on x86-64 (TSO) and on weakly ordered CPUs.
 */
#ifndef SHMLOG_ATOMIC_H
#define SHMLOG_ATOMIC_H
#include <stdint.h>

static inline uint64_t atom_load_acquire64(const volatile uint64_t *p)
{ return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint64_t atom_load_relaxed64(const volatile uint64_t *p)
{ return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline uint32_t atom_load_acquire32(const volatile uint32_t *p)
{ return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t atom_load_seqcst32(const volatile uint32_t *p)
{ return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline uint32_t atom_load_relaxed32(const volatile uint32_t *p)
{ return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void atom_store_release32(volatile uint32_t *p, uint32_t v)
{ __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void atom_store_relaxed32(volatile uint32_t *p, uint32_t v)
{ __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void atom_store_release64(volatile uint64_t *p, uint64_t v)
{ __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void atom_store_seqcst32(volatile uint32_t *p, uint32_t v)
{ __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline void atom_store_relaxed64(volatile uint64_t *p, uint64_t v)
{ __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint64_t atom_fetch_add64(volatile uint64_t *p, uint64_t v)
{ return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t atom_fetch_add_relaxed64(volatile uint64_t *p, uint64_t v)
{ return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline uint32_t atom_fetch_add32(volatile uint32_t *p, uint32_t v)
{ return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t atom_fetch_sub32(volatile uint32_t *p, uint32_t v)
{ return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
/* CAS: acq_rel on success (publishes our ownership, sees the previous owner's
 * writes), acquire on failure (so the caller may inspect what it saw). */
static inline int atom_cas64(volatile uint64_t *p, uint64_t *expected, uint64_t desired)
{ return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE); }
static inline void atom_fence_seqcst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void atom_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }

/* 16-byte CAS on {offset, bytes}: the claim word.  Inlined cmpxchg16b on
 * x86-64 (-mcx16), ldaxp/stlxp on aarch64; full barrier either way. */
typedef struct { uint64_t lo, hi; } __attribute__((aligned(16))) atom_pair;
static inline int atom_cas128(volatile atom_pair *p, atom_pair *expected, atom_pair desired)
{
    unsigned __int128 e = ((unsigned __int128)expected->hi << 64) | expected->lo;
    unsigned __int128 d = ((unsigned __int128)desired.hi << 64) | desired.lo;
    unsigned __int128 seen = __sync_val_compare_and_swap((volatile unsigned __int128 *)p, e, d);
    if (seen == e) return 1;
    expected->lo = (uint64_t)seen;
    expected->hi = (uint64_t)(seen >> 64);
    return 0;
}
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}
#endif
