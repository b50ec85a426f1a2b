/* shmhash.h - the checksums of the partition log's records (shmlog.c
 * includes it; one translation unit).  Not cryptographic: they detect torn,
 * corrupted or foreign records at memory speed.  Their results are part of
 * the segment format (shmlog.c's LOG_VERSION): a change here is a new
 * version. */
#ifndef SHMHASH_H
#define SHMHASH_H

#include <stdint.h>
#include <string.h>

/* 4-lane multiply-rotate hash (not cryptographic): detects torn or
 * corrupted records at memory speed. */
static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline __attribute__((always_inline)) uint64_t hash_bytes(const uint8_t *p, uint64_t n, uint64_t seed)
{
    const uint64_t P1 = 0x9E3779B185EBCA87ULL, P2 = 0xC2B2AE3D27D4EB4FULL;
    uint64_t a = seed ^ P1, b = seed + P2, c = rotl(seed, 17) ^ n, d = ~seed;
    while (n >= 32) {
        uint64_t w[4];
        memcpy(w, p, 32);
        a = rotl(a ^ (w[0] * P2), 31) * P1;
        b = rotl(b ^ (w[1] * P2), 31) * P1;
        c = rotl(c ^ (w[2] * P2), 31) * P1;
        d = rotl(d ^ (w[3] * P2), 31) * P1;
        p += 32;
        n -= 32;
    }
    uint64_t h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = rotl(h ^ (w * P2), 27) * P1 + 0x85EBCA77C2B2AE63ULL;
        p += 8;
        n -= 8;
    }
    while (n--) h = rotl(h ^ (*p++ * P1), 11) * P2;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    return h;
}
/* The checksum of long parts (>= WIDE_MIN bytes): 64-byte stripes into 8
 * u64 lanes, lane i += lo32(d ^ k) * hi32(d ^ k) + d[i ^ 1], the key k
 * moving on every stripe (so stripes are not interchangeable) - xxh3's
 * accumulate, which SIMD does 2 (SSE2) or 4 (AVX2) lanes an instruction:
 * ~20 / ~45 GB/s here against ~12 for hash_bytes, where a 64 KiB record
 * spent more time hashed than copied.  Each version computes exactly the
 * scalar one's sums (the tests compare them); the fold and the tail are
 * hash_bytes. */
#define WIDE_MIN 256
#define WIDE_STEP 0x9E3779B97F4A7C15ULL
static const uint64_t WIDE_K[8] = {0xBE4BA423396CFEB8ULL, 0x1CAD21F72C81017CULL, 0xDB979083E96DD4DEULL,
                                   0x1F67B3B7A4A44072ULL, 0x78E5C0CC4EE679CBULL, 0x2172FFCC7DD05A82ULL,
                                   0x8E2443F7744608B8ULL, 0x4C263A81E69035E0ULL};

/* Each version is one body: with copy (a constant, folded away) it also
 * stores every stripe to dst (no overlap) from the registers it sums, so a
 * copied record is read once, not once to copy and again to sum, and the
 * sums are those of the bytes stored, whatever a racing writer did to p. */
#define WIDE_ALWAYS static inline __attribute__((always_inline))
WIDE_ALWAYS void wide_scalar_t(uint64_t *acc, uint8_t *dst, const uint8_t *p, uint64_t stripes, int copy)
{
    for (uint64_t s = 0; s < stripes; s++, p += 64, dst = copy ? dst + 64 : dst)
        for (int i = 0; i < 8; i++) {
            uint64_t d, dk;
            memcpy(&d, p + 8 * i, 8);
            if (copy) memcpy(dst + 8 * i, &d, 8);
            dk = d ^ (WIDE_K[i] + s * WIDE_STEP);
            acc[i ^ 1] += d;
            acc[i] += (dk & 0xFFFFFFFFULL) * (dk >> 32);
        }
}
static void wide_scalar(uint64_t *acc, const uint8_t *p, uint64_t n) { wide_scalar_t(acc, NULL, p, n, 0); }
static void wide_copy_scalar(uint64_t *acc, uint8_t *dst, const uint8_t *p, uint64_t n)
{
    wide_scalar_t(acc, dst, p, n, 1);
}

#if defined(__x86_64__)
#include <immintrin.h>
WIDE_ALWAYS void wide_sse2_t(uint64_t *acc, uint8_t *dst, const uint8_t *p, uint64_t stripes, int copy)
{
    __m128i a[4], k[4], step = _mm_set1_epi64x((long long)WIDE_STEP);
    for (int j = 0; j < 4; j++) {
        a[j] = _mm_loadu_si128((const __m128i *)(acc + 2 * j));
        k[j] = _mm_loadu_si128((const __m128i *)(WIDE_K + 2 * j));
    }
    for (uint64_t s = 0; s < stripes; s++, p += 64, dst = copy ? dst + 64 : dst)
        for (int j = 0; j < 4; j++) {
            __m128i d = _mm_loadu_si128((const __m128i *)(p + 16 * j)), dk = _mm_xor_si128(d, k[j]);
            if (copy) _mm_storeu_si128((__m128i *)(dst + 16 * j), d);
            __m128i prod = _mm_mul_epu32(dk, _mm_srli_epi64(dk, 32));                  /* lo32 * hi32 */
            a[j] = _mm_add_epi64(a[j], _mm_add_epi64(prod, _mm_shuffle_epi32(d, 0x4E))); /* + d[i ^ 1] */
            k[j] = _mm_add_epi64(k[j], step);
        }
    for (int j = 0; j < 4; j++) _mm_storeu_si128((__m128i *)(acc + 2 * j), a[j]);
}
static void wide_sse2(uint64_t *acc, const uint8_t *p, uint64_t n) { wide_sse2_t(acc, NULL, p, n, 0); }
static void wide_copy_sse2(uint64_t *acc, uint8_t *dst, const uint8_t *p, uint64_t n)
{
    wide_sse2_t(acc, dst, p, n, 1);
}

__attribute__((target("avx2"))) WIDE_ALWAYS void wide_avx2_t(uint64_t *acc, uint8_t *dst, const uint8_t *p,
                                                             uint64_t stripes, int copy)
{
    __m256i a[2], k[2], step = _mm256_set1_epi64x((long long)WIDE_STEP);
    for (int j = 0; j < 2; j++) {
        a[j] = _mm256_loadu_si256((const __m256i *)(acc + 4 * j));
        k[j] = _mm256_loadu_si256((const __m256i *)(WIDE_K + 4 * j));
    }
    for (uint64_t s = 0; s < stripes; s++, p += 64, dst = copy ? dst + 64 : dst)
        for (int j = 0; j < 2; j++) {
            __m256i d = _mm256_loadu_si256((const __m256i *)(p + 32 * j)), dk = _mm256_xor_si256(d, k[j]);
            if (copy) _mm256_storeu_si256((__m256i *)(dst + 32 * j), d);
            __m256i prod = _mm256_mul_epu32(dk, _mm256_srli_epi64(dk, 32));
            a[j] = _mm256_add_epi64(a[j], _mm256_add_epi64(prod, _mm256_shuffle_epi32(d, 0x4E)));
            k[j] = _mm256_add_epi64(k[j], step);
        }
    for (int j = 0; j < 2; j++) _mm256_storeu_si256((__m256i *)(acc + 4 * j), a[j]);
}
__attribute__((target("avx2"))) static void wide_avx2(uint64_t *acc, const uint8_t *p, uint64_t n)
{
    wide_avx2_t(acc, NULL, p, n, 0);
}
__attribute__((target("avx2"))) static void wide_copy_avx2(uint64_t *acc, uint8_t *dst, const uint8_t *p, uint64_t n)
{
    wide_avx2_t(acc, dst, p, n, 1);
}
#endif

typedef void (*wide_fn)(uint64_t *, const uint8_t *, uint64_t);
typedef void (*wide_copy_fn)(uint64_t *, uint8_t *, const uint8_t *, uint64_t);
#if defined(__x86_64__)
static const wide_fn WIDE_FNS[3] = {wide_scalar, wide_sse2, wide_avx2};
static const wide_copy_fn WIDE_COPY_FNS[3] = {wide_copy_scalar, wide_copy_sse2, wide_copy_avx2};
#else
static const wide_fn WIDE_FNS[3] = {wide_scalar, wide_scalar, wide_scalar};
static const wide_copy_fn WIDE_COPY_FNS[3] = {wide_copy_scalar, wide_copy_scalar, wide_copy_scalar};
#endif
static int wide_level_cached = -1; /* chosen on first use; a race only picks the same level twice */
int shmlog_wide_force = -1; /* tests: -1 the best this CPU has, 0 scalar, 1 SSE2, 2 AVX2 (if the CPU has it) */

/* Index into WIDE_FNS / WIDE_COPY_FNS: 0 scalar, 1 SSE2, 2 AVX2. */
static int wide_pick(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2");
    if (shmlog_wide_force == 0) return 0;
    if (shmlog_wide_force == 1 || !avx2) return 1;
    return 2;
#else
    return 0;
#endif
}

static inline int wide_level(void)
{
    if (shmlog_wide_force >= 0) return wide_pick();
    int l = __atomic_load_n(&wide_level_cached, __ATOMIC_RELAXED);
    if (l < 0) /* relaxed: any thread's pick is the same level */
        __atomic_store_n(&wide_level_cached, l = wide_pick(), __ATOMIC_RELAXED);
    return l;
}

static inline void wide_init(uint64_t *acc, uint64_t seed)
{
    for (int i = 0; i < 8; i++) acc[i] = seed ^ WIDE_K[7 - i];
}

static uint64_t hash_wide(const uint8_t *p, uint64_t n, uint64_t seed)
{
    uint64_t acc[8];
    wide_init(acc, seed);
    WIDE_FNS[wide_level()](acc, p, n / 64);
    uint64_t h = hash_bytes(p + n / 64 * 64, n % 64, seed ^ n);
    return hash_bytes((const uint8_t *)acc, sizeof acc, h);
}

/* hash_wide(dst, n, seed) of the bytes it copies from src to dst. */
static uint64_t hash_wide_copy(uint8_t *dst, const uint8_t *src, uint64_t n, uint64_t seed)
{
    uint64_t acc[8], done = n / 64 * 64;
    wide_init(acc, seed);
    WIDE_COPY_FNS[wide_level()](acc, dst, src, n / 64);
    memcpy(dst + done, src + done, n % 64);
    uint64_t h = hash_bytes(dst + done, n % 64, seed ^ n);
    return hash_bytes((const uint8_t *)acc, sizeof acc, h);
}

static inline uint64_t hash_part(const uint8_t *p, uint64_t n, uint64_t seed)
{
    return n >= WIDE_MIN ? hash_wide(p, n, seed) : hash_bytes(p, n, seed);
}

/* hash_part(dst, n, seed) of the n bytes it copies from src to dst (no
 * overlap; n may be 0): the checksum of what was stored, in one pass. */
static inline uint64_t hash_part_copy(uint8_t *dst, const uint8_t *src, uint64_t n, uint64_t seed)
{
    if (n >= WIDE_MIN) return hash_wide_copy(dst, src, n, seed);
    if (n) memcpy(dst, src, n);
    return hash_bytes(dst, n, seed);
}

#endif
