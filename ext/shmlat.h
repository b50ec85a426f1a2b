/* shmlat.h - produce->poll latency histograms in shared memory
 * (the consumer option shm.latency.histogram; broker/latency_hist.py owns
 * the segment, its header and its slot table).
 *
 * One slot per (consumer group, partition): a small header and a fixed
 * array of counters laid out as HdrHistogram's (log-linear): 2 significant
 * digits - 128 sub-buckets per power of two, so from 1 us up a bucket is
 * at most 1% of its values wide (1/128 from 1024 ns) - with 8 ns units at
 * the bottom, up to 60 s.
 *
 *   slot[0] key (topic id << 16 | partition; 0: free)   - written by
 *           latency_hist.py under the namespace lock, never here
 *   slot[1] latencies below 0, recorded as 0             (a wall-clock step,
 *           or a producer's explicit timestamp from the future)
 *   slot[2] latencies above LAT_MAX_NS, recorded as it   (old records)
 *   slot[3..7] reserved
 *   slot[8 + i] count of bucket i, i < LAT_COUNTS
 *
 * Ordering: every update is a relaxed fetch-add.  Nothing pairs with it:
 * the counters publish no other data (no reader follows a counter to
 * anything else), their only readers are `shmbroker stat` and
 * Consumer.latency(), which copy the array at some moment and may see one
 * counter a record newer than another - a histogram is a sum, any moment's
 * snapshot of it is as good as another's.  The atomicity is what matters:
 * members of one group may record into the same slot (two consumers with
 * one group.id assigning the same partition), and no increment is lost.
 */
#ifndef SHMLAT_H
#define SHMLAT_H
#include <stdint.h>

#include "shmlog_atomic.h"

#define LAT_UNIT_MAG 3                       /* the lowest bucket is 8 ns wide */
#define LAT_SUB_HALF_MAG 7                   /* 128 sub-buckets a power of two: 2 significant digits */
#define LAT_SUB_HALF (1u << LAT_SUB_HALF_MAG)
#define LAT_SUB_MASK ((uint64_t)(2 * LAT_SUB_HALF - 1) << LAT_UNIT_MAG)
#define LAT_BUCKETS 26                       /* 2048 ns << 25 = 68.7 s > LAT_MAX_NS */
#define LAT_COUNTS ((LAT_BUCKETS + 1) * LAT_SUB_HALF)
#define LAT_MAX_NS 60000000000LL             /* 60 s: longer latencies are recorded as 60 s, and counted */
#define LAT_SLOT_WORDS 8                     /* the slot header, in 64-bit words */
#define LAT_SLOT_BYTES ((LAT_SLOT_WORDS + LAT_COUNTS) * 8)
enum { LAT_KEY = 0, LAT_BELOW = 1, LAT_ABOVE = 2 };

_Static_assert(LAT_COUNTS == 3456, "the Python side reads the layout from lat_layout()");
_Static_assert(LAT_SLOT_BYTES % 64 == 0, "slots stay cache-line aligned");

/* HdrHistogram's counts index of v (ns, v <= LAT_MAX_NS). */
static inline uint32_t lat_index(uint64_t v)
{
    uint32_t pow2ceil = 64 - (uint32_t)__builtin_clzll(v | LAT_SUB_MASK); /* never 0: the mask is set */
    uint32_t bucket = pow2ceil - LAT_UNIT_MAG - (LAT_SUB_HALF_MAG + 1);
    uint32_t sub = (uint32_t)(v >> (bucket + LAT_UNIT_MAG));
    return ((bucket + 1) << LAT_SUB_HALF_MAG) + sub - LAT_SUB_HALF;
}

/* The lowest value (ns) that lands in counts index i. */
static inline uint64_t lat_lowest(uint32_t i)
{
    int32_t bucket = (int32_t)(i >> LAT_SUB_HALF_MAG) - 1;
    uint32_t sub = (i & (LAT_SUB_HALF - 1)) + LAT_SUB_HALF;
    if (bucket < 0) {
        sub -= LAT_SUB_HALF;
        bucket = 0;
    }
    return (uint64_t)sub << (bucket + LAT_UNIT_MAG);
}

/* Count one latency of ns nanoseconds into slot (LAT_SLOT_BYTES of a
 * mapping the caller checked the size of).  Out-of-range latencies are
 * clamped and counted on their own; the index is bounds-checked even so. */
static inline void lat_record(volatile uint64_t *slot, int64_t ns)
{
    if (__builtin_expect((uint64_t)ns > (uint64_t)LAT_MAX_NS, 0)) {
        /* relaxed: a counter, read only as a snapshot (see the header comment) */
        atom_fetch_add_relaxed64(&slot[ns < 0 ? LAT_BELOW : LAT_ABOVE], 1);
        ns = ns < 0 ? 0 : LAT_MAX_NS;
    }
    uint32_t i = lat_index((uint64_t)ns);
    if (__builtin_expect(i >= LAT_COUNTS, 0)) i = LAT_COUNTS - 1;
    atom_fetch_add_relaxed64(&slot[LAT_SLOT_WORDS + i], 1); /* relaxed: pairs with nothing (header comment) */
}
#endif
