/* shmlog.h - public C API of one partition log (a Kafka partition in shared
 * memory).  This file is read verbatim by cffi's cdef (ext/build_shmlog.py),
 * so it holds only declarations cffi can parse: no macros, no includes.
 * Results are named status codes; >= 0 returns of int64_t calls are offsets
 * or counts. */

typedef enum {
    /* read outcomes (>= 0) */
    LOG_OK = 0,
    LOG_NOT_YET = 1,         /* offset not written yet (or its producer is still copying) */
    LOG_LAPPED = 2,          /* overwritten or below the start: ask log_watermarks */
    LOG_TOMBSTONE = 3,       /* a dead producer's claim, repaired: skip it */
    LOG_CORRUPT_RECORD = 4,  /* slot or record failed validation: counted, skip it */
    /* errors (< 0) */
    LOG_E_TOO_LARGE = -1,    /* record over max_record (or batch over the ring) */
    LOG_E_BAD_MAGIC = -2,
    LOG_E_BAD_VERSION = -3,
    LOG_E_BAD_LAYOUT = -4,   /* layout hash or geometry check mismatch */
    LOG_E_BAD_SIZE = -5,     /* mapping smaller than the header says, or bad capacities */
    LOG_E_BAD_ARG = -6,      /* also: a malformed header block */
    LOG_E_BUFFER = -7,       /* caller's buffer too small for the record */
    LOG_E_TIMEOUT = -8,      /* no room in time (block-mode floor, or a slower writer's slot or bytes); nothing claimed */
    LOG_E_OFFSET = -9,       /* offset out of the range the call accepts */
    LOG_E_WOULD_BLOCK = -10, /* log_try_append_value: the append would have to wait; nothing claimed */
    LOG_E_DELETED = -11      /* the partition's topic was deleted */
} log_status;

typedef enum {
    LOG_CP_NONE = 0,
    LOG_CP_AFTER_CLAIM = 1,      /* offset and bytes claimed, slot untouched */
    LOG_CP_AFTER_SLOT_CAS = 2,   /* slot CLAIMED by us, nothing else written */
    LOG_CP_AFTER_RESERVE = 3,    /* byte reservation recorded in the slot */
    LOG_CP_MID_COPY = 4,         /* half of the record copied */
    LOG_CP_BEFORE_COMMIT = 5,    /* slot filled, tag still CLAIMED */
    LOG_CP_BEFORE_WAKE = 6       /* COMMITTED, sleepers not yet woken */
} log_crash_point;

typedef enum { LOG_OVERWRITE = 0, LOG_BLOCK = 1 } log_overflow;
typedef enum { LOG_WAIT_ADAPTIVE = 0, LOG_WAIT_SPIN = 1, LOG_WAIT_SLEEP = 2 } log_wait_mode;

typedef struct log_view log_view;

/* One delivered record: where its parts sit in the caller's buffer. */
typedef struct {
    uint64_t offset;
    int64_t timestamp_ns;
    uint64_t buf_pos;        /* key at buf_pos, then headers, then value */
    uint32_t key_len;
    uint32_t hdr_len;
    uint32_t val_len;
    uint32_t flags;          /* LOG_FLAG_* */
} log_rec;

typedef struct {
    uint64_t count;          /* records delivered */
    uint64_t next_offset;    /* where to read next */
    uint64_t tombstones;     /* skipped tombstones */
    uint64_t corrupt;        /* skipped corrupt records */
    int32_t stop;            /* why the batch ended: LOG_OK (max/buffer), LOG_NOT_YET, LOG_LAPPED */
    int32_t pad;
} log_batch;

typedef struct {
    uint64_t start_offset, low, high, floor, floor_bytes, bytes_claimed;
    uint64_t slot_count, data_capacity, max_record, overflow;
    uint64_t laps_seen, tombstones, corrupt_skips, repairs;
    uint64_t wakeups, retries, block_waits, room_waits;
    uint64_t waiters;        /* 1 while a reader may sleep on the partition (a flag the next waker clears) */
    uint64_t done;           /* the finished watermark: every offset below is committed or a tombstone */
    uint64_t trim;           /* log_trim's start (0: never trimmed) */
    uint64_t floor_waiters;  /* producers sleeping until the block-mode floor moves, now */
} log_stats;

/* layout constants, shared with Python (cffi reads them from here) */
enum {
    LOG_FLAG_KEY_NULL = 1,
    LOG_FLAG_VALUE_NULL = 2,
    LOG_HEADER_SIZE = 4096,
    LOG_SLOT_SIZE = 64,
    LOG_RECORD_OVERHEAD = 16
};

const char *log_build_id(void);
uint64_t log_segment_size(uint64_t slot_count, uint64_t data_capacity);
int log_format(void *base, uint64_t size, uint64_t slot_count, uint64_t data_capacity,
               uint64_t max_record, int overflow, uint64_t start_offset, uint32_t creator_pid);

log_view *log_view_new(void);
void log_view_free(log_view *v);
int log_attach(log_view *v, void *base, uint64_t size, uint32_t pid);
void log_view_set_pid(log_view *v, uint32_t pid);
/* The owner token this view's claims carry (tag owner field, 26 bits, not 0):
 * a raw pid (< 2^22: standalone logs; a claim of a provably dead pid is
 * repaired by the next producer that needs its room) or a registration token
 * (>= 2^22: broker clients; repaired only by the supervisor, by token). */
int log_view_set_owner(log_view *v, uint32_t owner);
/* test only: send sig (SIGKILL, or SIGSTOP for a stalled producer) to ourselves at point of the countdown-th append */
/* Block mode only: a claim also waits while it would pass the u64 at
 * base + off (bounds-checked against size) plus count offsets - a work
 * queue's take position and maxsize.  base NULL: no such limit. */
int log_view_set_limit(log_view *v, void *base, uint64_t size, uint64_t off, uint64_t count);
/* Wake producers waiting in block mode (the floor or the limit word moved). */
void log_wake_blocked(log_view *v);
void log_set_crash_point(log_view *v, int point, uint64_t countdown, int sig);
uint64_t log_max_record(log_view *v);

/* key_len / val_len of -1 mean null (Kafka's null key / null value). */
int64_t log_append(log_view *v, const char *val, int64_t val_len, const char *key, int64_t key_len,
                   const char *hdrs, uint64_t hdr_len, int64_t timestamp_ns, int64_t timeout_ns);
/* the lean path: a value only, no key or headers; never waits (safe to
 * call holding a lock such as the GIL): LOG_E_WOULD_BLOCK, with nothing
 * claimed, where it would have to */
int64_t log_try_append_value(log_view *v, const char *val, uint64_t val_len, int64_t timestamp_ns);
/* lens == NULL: n records of fixed_len bytes each, back to back in data. */
int64_t log_append_batch(log_view *v, const char *data, const uint32_t *lens, uint64_t fixed_len,
                         uint64_t n, int64_t timestamp_ns, int64_t timeout_ns);

int log_read(log_view *v, uint64_t offset, log_rec *rec, char *buf, uint64_t cap);
/* The value's length at offset if it looks committed (a guess for sizing a
 * buffer: -1 if not, or a null value), and a read with the value copied
 * straight into vbuf, exactly vlen bytes (LOG_E_BUFFER if it is not that
 * long, nothing delivered); key and headers go to buf. */
int64_t log_value_len_hint(log_view *v, uint64_t offset);
int log_read_value_into(log_view *v, uint64_t offset, log_rec *rec, char *buf, uint64_t cap, char *vbuf,
                        uint64_t vlen);
/* Offset o read in place: key and headers into buf (cap bytes), the value
 * left where it lies in the ring, not copied - *value_at is its byte
 * offset from the segment's start (rec->val_len its length).  check: the
 * record's checksum is verified over the value there too (check.crcs);
 * else only its slot and record header are (the bytes handed out are the
 * ring's, live: a sum taken now says nothing of what the caller reads
 * later, and the block floor, not the sum, keeps them the record's).  LOG_E_BUFFER
 * (read it with a copy) if the value wraps the ring's end, or if the log's
 * floor is past the record already (in offsets or in bytes): the bytes stay
 * the record's only while no producer may reuse them - a block-mode log
 * whose floor stays at or below o. */
int log_read_value_view(log_view *v, uint64_t offset, log_rec *rec, char *buf, uint64_t cap, uint64_t *value_at,
                        int check);
int log_read_batch(log_view *v, uint64_t offset, uint64_t max_records, log_rec *recs,
                   char *buf, uint64_t cap, log_batch *out);
/* values only, one per row of a (max_records x row_len) uint8 array */
int log_read_batch_rows(log_view *v, uint64_t offset, uint64_t max_records, char *rows,
                        uint64_t row_len, uint32_t *lens, uint64_t *offsets, log_batch *out);
int log_wait(log_view *v, uint64_t offset, int64_t timeout_ns, int mode, int64_t spin_ns);
/* Wait until any views[i] has offsets[i] readable (or was deleted); returns
 * the index of one that is, or -1 on timeout.  Sleeps on all the partitions'
 * futexes at once (futex_waitv, Linux >= 5.16; else short sleeps on the
 * first); over 128 words, on groups of them in helper threads (see
 * shmlog.c's "sleeping on more partitions").  n <= LOG_WAIT_MAX. */
enum { LOG_WAIT_MAX = 65536 };
int log_wait_many(log_view **views, const uint64_t *offsets, int n, int64_t timeout_ns, int mode, int64_t spin_ns);
/* The same, also woken when the u32 at xbase + xoff (a group member's notify
 * word, bounds-checked against xsize) moves off xval: then returns -2.
 * xbase NULL: no extra word.  n may be 0 with an extra word. */
int log_wait_many_ex(log_view **views, const uint64_t *offsets, int n, int64_t timeout_ns, int mode, int64_t spin_ns,
                     void *xbase, uint64_t xsize, uint64_t xoff, uint32_t xval);
/* The same over nx extra words (word k at xbases[k] + xoffs[k], checked
 * against xsizes[k], compared with xvals[k]): returns -2 when any moved (the
 * caller reads them to see which).  nx <= LOG_WAIT_XMAX; n may be 0 if nx > 0. */
enum { LOG_WAIT_XMAX = 64 };
int log_wait_many_xv(log_view **views, const uint64_t *offsets, int n, int64_t timeout_ns, int mode, int64_t spin_ns,
                     void **xbases, const uint64_t *xsizes, const uint64_t *xoffs, const uint32_t *xvals, int nx);
/* Tests: which version of the wide checksum appends and reads use (-1: the
 * best this CPU has, 0 scalar, 1 SSE2, 2 AVX2 where the CPU has it); every
 * version gives the same sums. */
extern int shmlog_wide_force;
int log_watermarks(log_view *v, uint64_t *low, uint64_t *high);

/* ---- the asyncio bridge (shmaio.c): futex waits io_uring completes ----
 * One ring per event loop, used by its thread only.  aio_ring_open: NULL
 * with *err an errno where io_uring or IORING_OP_FUTEX_WAITV is missing
 * (ENOSYS, EPERM under a seccomp profile, ...); the eventfd (or -1) is
 * signalled whenever a completion is posted. */
typedef struct aio_ring aio_ring;
enum { AIO_E_RING = -100 }; /* the ring refused a submission */
aio_ring *aio_ring_open(unsigned entries, int eventfd, int *err);
void aio_ring_close(aio_ring *r);
int aio_ring_fd(aio_ring *r);
/* Submit one wait on views[i] at offsets[i] and the extra words (as in
 * log_wait_many_xv; n + nx <= 128), completed with user_data.  Returns -1
 * when submitted; nothing is submitted when a view is readable now (its
 * index), an extra word moved (-2), or on LOG_E_BAD_ARG / AIO_E_RING. */
int aio_ring_wait(aio_ring *r, uint64_t user_data, log_view **views, const uint64_t *offsets, int n, void **xbases,
                  const uint64_t *xsizes, const uint64_t *xoffs, const uint32_t *xvals, int nx);
/* Cancel the wait submitted with user_data (its completion says -ECANCELED). */
int aio_ring_cancel(aio_ring *r, uint64_t user_data);
/* Up to max completions: (user_data, res) pairs; returns how many.  res >= 0
 * or -EAGAIN: a word moved; -ECANCELED: cancelled; user_data 0: a cancel's own. */
int aio_ring_reap(aio_ring *r, uint64_t *user_data, int32_t *res, int max);

int log_get_stats(log_view *v, log_stats *out);

int log_set_floor(log_view *v, uint64_t floor);
/* Kafka's DeleteRecords: offsets below offset (at most the claim offset,
 * else LOG_E_OFFSET) read as LOG_LAPPED from now on and the low watermark
 * is at least offset; only moves forward (a lower offset is a no-op).
 * Block mode: also raises the floor to it. */
int log_trim(log_view *v, uint64_t offset);
uint64_t log_get_trim(log_view *v);
uint64_t log_get_floor(log_view *v);
/* block mode: should a group that has read up to pos commit now?  see shmlog.c */
int log_floor_wanted(log_view *v, uint64_t pos);
/* the claim offset: every offset below it is claimed (maybe not yet written) */
uint64_t log_claimed(log_view *v);
/* wake every reader sleeping on the log (something they wait for moved) */
void log_wake_readers(log_view *v);

/* Topic deletion: appends then fail with LOG_E_DELETED, and readers at the
 * end of the log get it instead of LOG_NOT_YET; every sleeper is woken. */
int log_mark_deleted(log_view *v);

/* Tombstone every CLAIMED slot of owner (a pid or a registration token). */
int64_t log_repair_dead(log_view *v, uint32_t owner);
int64_t log_scan_unclaimed(log_view *v, uint64_t *out, uint64_t max);
int log_tombstone_unclaimed(log_view *v, uint64_t offset);

/* Atomics on a word of any other segment (the namespace metadata), by base
 * and byte offset; off must be 8-aligned and off + 8 <= size, else the call
 * returns 0 / fails without touching memory. */
uint64_t shm_load64(void *base, uint64_t size, uint64_t off);
int shm_store64(void *base, uint64_t size, uint64_t off, uint64_t val);
int shm_cas64(void *base, uint64_t size, uint64_t off, uint64_t expected, uint64_t desired);
int64_t shm_fetch_add64(void *base, uint64_t size, uint64_t off, uint64_t delta);
/* u32 futex words (4-aligned): wait while *word == val (0 moved/woken, -1
 * timeout); wake = increment and wake every sleeper. */
int shm_futex_wait32(void *base, uint64_t size, uint64_t off, uint32_t val, int64_t timeout_ns);
int shm_futex_wake32(void *base, uint64_t size, uint64_t off);
/* 16-byte {owner, value} pairs (16-aligned): commit sets value only while
 * owner matches (1 done, 0 fenced); own hands the pair to a new owner and
 * returns its value. */
int shm_pair_commit(void *base, uint64_t size, uint64_t off, uint64_t owner, uint64_t value);
uint64_t shm_pair_own(void *base, uint64_t size, uint64_t off, uint64_t owner);
/* clear the owner if it is still `owner`: 1 done, 0 another owner has it */
int shm_pair_release(void *base, uint64_t size, uint64_t off, uint64_t owner);

/* The block-mode floor over a commit table (broker/groups.py): the lowest
 * committed value among the entries of group indices [0, max_groups) for
 * key_low; 1 with *low set, 0 none, LOG_E_BAD_ARG a bad geometry. */
int shm_commit_floor(void *base, uint64_t size, uint64_t off, uint64_t n, uint64_t esize, uint64_t value_off,
                     uint64_t key_low, uint32_t max_groups, uint64_t *low);

/* Partitioner hashes: Java Kafka's murmur2 (seed 0x9747b28c, signed result
 * as the Java client returns it) and librdkafka's FNV-1a. */
int32_t part_murmur2(const char *key, uint64_t len);
uint32_t part_fnv1a(const char *key, uint64_t len);

/* ---- work queue (shmqueue.c): a block-mode log whose records each go to
 * exactly one taker; a dead taker's records are released to the others ---- */
/* Q_RELEASE_OFF: a u32 moved by every release; takers sleep on it too */
enum { Q_HEADER_SIZE = 256, Q_HEAD_OFF = 64, Q_RELEASE_OFF = 72 };
typedef struct q_view q_view;
typedef struct {
    uint64_t head, taken, acked, released, skipped, lost_acks, in_flight;
} q_stats;
uint64_t q_segment_size(uint64_t n);
/* n = the log's slot count; head = the log's start offset */
int q_format(void *base, uint64_t size, uint64_t n, uint64_t head);
q_view *q_view_new(void);
void q_view_free(q_view *q);
int q_attach(q_view *q, void *base, uint64_t size, uint64_t log_slots);
/* Take the next record for owner: its offset (>= 0, the record in rec/buf,
 * how often it was released by a dead taker in *attempts), or
 * LOG_E_WOULD_BLOCK with *wait_at the offset to wait for on the log. */
int64_t q_take(q_view *q, log_view *lv, uint32_t owner, log_rec *rec, char *buf, uint64_t cap,
               uint32_t *attempts, uint64_t *wait_at);
/* Done with offset o (LOG_E_OFFSET: it was released, not ours any more). */
int q_ack(q_view *q, log_view *lv, uint64_t o, uint32_t owner);
/* A getter's step in one call: q_ack(ack_off, ack_owner) unless ack_off < 0
 * (its status in *ack_rc, else LOG_OK), then q_take for owner. */
int64_t q_ack_take(q_view *q, log_view *lv, int64_t ack_off, uint32_t ack_owner, uint32_t owner, log_rec *rec,
                   char *buf, uint64_t cap, uint32_t *attempts, uint64_t *wait_at, int *ack_rc);
/* Give back every record owner holds (it died); their offsets in out (up to
 * max); returns how many.  Each counts as a failed attempt. */
int64_t q_release_owner(q_view *q, log_view *lv, uint32_t owner, uint64_t *out, uint64_t max);
/* Give back one record owner holds; failed: count it as a failed attempt. */
int q_release(q_view *q, log_view *lv, uint64_t o, uint32_t owner, int failed);
/* The offsets owner holds (up to max); returns how many. */
int64_t q_held(q_view *q, log_view *lv, uint32_t owner, uint64_t *out, uint64_t max);
int q_get_stats(q_view *q, log_view *lv, q_stats *out);
/* How often offset o was given back as a failed attempt (its taker died). */
uint32_t q_attempts(q_view *q, uint64_t o);
/* Cancel offset o while no taker has it: it is never taken (counted as
 * skipped).  LOG_OK, or LOG_E_OFFSET if it is taken, done or not in the ring. */
int q_cancel(q_view *q, log_view *lv, uint64_t o);

/* ---- early notice of a pool worker's death (shmrobust.c): a robust,
 * process-shared mutex per worker slot, held by the worker's main thread
 * until it exits cleanly; the kernel marks it owner-died before it tears the dead worker's
 * memory down.  area: byte offset of the slots in the mapping (64-aligned);
 * every call checks i < slots <= SHM_ROBUST_MAX_SLOTS and that the slots lie
 * inside [base, base + size) (LOG_E_BAD_ARG), and that the mutex is of the
 * kind init made (LOG_E_BAD_LAYOUT). */
enum { SHM_ROBUST_SLOT = 128, SHM_ROBUST_MAX_SLOTS = 65536 };
enum { SHM_ROBUST_OWNER_DIED = 1, SHM_ROBUST_ACQUIRED = 2, SHM_ROBUST_TIMEOUT = 3, SHM_ROBUST_NO_HOLDER = 4 };
/* The segment's creator, once per slot, before any process uses it. */
int shm_robust_init(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i);
/* A worker: wait until the slot's last holder's end was heard (the holder
 * word 0), lock slot i's mutex (both within timeout_ns), then publish
 * pid as its holder.  0 held; 1 held, and a previous holder had died before
 * it published its pid; LOG_E_TIMEOUT not held. */
int shm_robust_hold(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i, uint32_t pid,
                    int64_t timeout_ns);
/* The watcher of slot i, at most timeout_ns: SHM_ROBUST_NO_HOLDER (nobody
 * published a pid yet), SHM_ROBUST_TIMEOUT (the holder lives),
 * SHM_ROBUST_OWNER_DIED (the holder *pid died; 0 if it died before it
 * published its pid), SHM_ROBUST_ACQUIRED (the mutex was free: *pid had
 * published itself but did not hold it; not a death).  After the last two
 * the mutex is free again and the holder word 0. */
int shm_robust_watch(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i, int64_t timeout_ns,
                     uint32_t *pid);
/* The holder, at a clean exit: unlock (the watcher then gets
 * SHM_ROBUST_ACQUIRED: not a death).  LOG_E_BAD_LAYOUT if we do not hold it. */
int shm_robust_let_go(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i);
/* Wake slot i's watcher if it sleeps waiting for a holder (a pool stopping). */
void shm_robust_wake(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i);
/* The owner, when slot i's watcher has stopped and the slot's last holder has
 * exited: clear the holder word (nobody else will), so the next worker's
 * hold does not wait for a watcher to hear of it; wakes one waiting. */
void shm_robust_clear(void *base, uint64_t size, uint64_t area, uint64_t slots, uint64_t i);
