/* store_bound.c - what bounds a producer that copies 64 KiB records into a
 * ring larger than the CPU's L2 cache and checksums them: the stores or
 * the sum.  One process, no consumer, no shmbroker code but the record
 * checksum itself (ext/shmhash.h).  Each row copies (or sums) 64 KiB blocks
 * into rotating places of a 4 MiB ring (perf/compare.py's ring for 64 KiB
 * records) and prints GB/s, best of 3 rounds.
 *
 *   gcc -O2 -o /tmp/store_bound perf/store_bound.c && taskset -c 1 /tmp/store_bound
 *
 * How to read it: "memcpy" and "rep movsb" write whole lines without reading
 * them first; "vector stores" is a plain AVX-512 copy loop, whose stores
 * read each line in before writing it; "copy+checksum" is the producer's
 * fused loop (ext/shmhash.h's hash_wide_copy, AVX2); "checksum" rows sum 64
 * KiB in cache; the last row is the best two-pass producer (rep movsb, then
 * the sum of the source).  If "copy+checksum" is close to "vector stores",
 * the stores bound the producer, not the sum.  The AVX-512 rows need a CPU
 * with AVX-512 (else they are skipped). */
#include "../ext/shmhash.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BLOCK 65536
#define RING (64 * BLOCK)
#define ROUNDS 20000

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static inline void movsb(void *d, const void *s, size_t n)
{
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n)::"memory");
}

/* hash_wide's lane sums with two AVX-512 accumulators (the same sums: each
 * lane's additions in another order) */
__attribute__((target("avx512f"))) static void sum_avx512(uint64_t *acc, const uint8_t *p, uint64_t stripes)
{
    __m512i a = _mm512_loadu_si512(acc), b = _mm512_setzero_si512(), k = _mm512_loadu_si512(WIDE_K);
    __m512i step = _mm512_set1_epi64((long long)WIDE_STEP), k2 = _mm512_add_epi64(k, step);
    __m512i step2 = _mm512_add_epi64(step, step);
    for (uint64_t s = 0; s + 2 <= stripes; s += 2, p += 128) {
        __m512i d = _mm512_loadu_si512(p), dk = _mm512_xor_si512(d, k);
        __m512i e = _mm512_loadu_si512(p + 64), ek = _mm512_xor_si512(e, k2);
        a = _mm512_add_epi64(a, _mm512_add_epi64(_mm512_mul_epu32(dk, _mm512_srli_epi64(dk, 32)),
                                                 _mm512_shuffle_epi32(d, 0x4E)));
        b = _mm512_add_epi64(b, _mm512_add_epi64(_mm512_mul_epu32(ek, _mm512_srli_epi64(ek, 32)),
                                                 _mm512_shuffle_epi32(e, 0x4E)));
        k = _mm512_add_epi64(k, step2);
        k2 = _mm512_add_epi64(k2, step2);
    }
    _mm512_storeu_si512(acc, _mm512_add_epi64(a, b));
}

__attribute__((target("avx512f"))) static void copy_avx512(uint8_t *dst, const uint8_t *p, uint64_t n)
{
    for (uint64_t o = 0; o < n; o += 64) _mm512_storeu_si512(dst + o, _mm512_loadu_si512(p + o));
}

enum { MEMCPY, MOVSB, VSTORE, FUSED, SUM, SUM512, MOVSB_SUM512, NROWS };
static const char *NAMES[NROWS] = {"memcpy", "rep movsb", "vector stores (AVX-512)",
                                   "copy+checksum (the producer's)", "checksum (the producer's, in cache)",
                                   "checksum (AVX-512, in cache)", "rep movsb, then checksum (AVX-512)"};

int main(void)
{
    uint8_t *src = aligned_alloc(64, BLOCK), *ring = aligned_alloc(64, RING);
    if (!src || !ring) return 1;
    for (size_t i = 0; i < BLOCK; i++) src[i] = (uint8_t)(i * 7 + 3);
    memset(ring, 1, RING);
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f");
    uint64_t ref[8], got[8];
    wide_init(ref, 1);
    WIDE_FNS[wide_level()](ref, src, BLOCK / 64);
    wide_init(got, 1);
    if (avx512) {
        sum_avx512(got, src, BLOCK / 64);
        if (memcmp(ref, got, sizeof ref)) {
            printf("the AVX-512 sums differ from the producer's: a bug here\n");
            return 1;
        }
    }
    double best[NROWS] = {0};
    volatile uint64_t sink = 0; /* the fused row's checksums: used, so none is optimised away */
    for (int round = 0; round < 3; round++)
        for (int row = 0; row < NROWS; row++) {
            if (!avx512 && (row == VSTORE || row == SUM512 || row == MOVSB_SUM512)) continue;
            uint64_t acc[8];
            wide_init(acc, 1);
            double t = now();
            for (size_t r = 0; r < ROUNDS; r++) {
                uint8_t *dst = ring + (r % (RING / BLOCK)) * BLOCK;
                switch (row) {
                case MEMCPY: memcpy(dst, src, BLOCK); break;
                case MOVSB: movsb(dst, src, BLOCK); break;
                case VSTORE: copy_avx512(dst, src, BLOCK); break;
                case FUSED: sink ^= hash_wide_copy(dst, src, BLOCK, r); break;
                case SUM: WIDE_FNS[wide_level()](acc, src, BLOCK / 64); break;
                case SUM512: sum_avx512(acc, src, BLOCK / 64); break;
                case MOVSB_SUM512: movsb(dst, src, BLOCK); sum_avx512(acc, src, BLOCK / 64); break;
                }
                __asm__ volatile("" ::"r"(acc), "r"(dst) : "memory");
            }
            double gbs = (double)BLOCK * ROUNDS / (now() - t) / 1e9;
            if (gbs > best[row]) best[row] = gbs;
        }
    for (int row = 0; row < NROWS; row++)
        if (best[row] > 0) printf("%-40s %6.1f GB/s\n", NAMES[row], best[row]);
        else printf("%-40s skipped (no AVX-512)\n", NAMES[row]);
    return 0;
}
