/* fastpoll.c - the consumer's partition state and poll()'s lean path
 * (shm._fastlog; compiled into fastlog.c's unit, after FastLog).
 *
 * Part: one assigned partition of a Consumer (broker/consumer.py's _Part),
 * a C struct so the lean path below reads and moves its position without
 * attribute lookups; Python sees the same attributes as before.
 *
 * ConsumerPoll(state, fallback, rest, events, commit_events, flag_addr,
 * spin_ns (-1: spin mode), fetch, eof, idle) is installed as a Consumer's `poll` (an instance
 * attribute, as Producer.produce's lean path) when no statistics wrap it
 * and no subclass overrides it.  It reads the consumer's own state - _cur
 * in its instance dict `state`, the deques it never replaces, the
 * namespace's destroyed flag at flag_addr, and what set_lean(plain, solo,
 * member) last said (the consumer calls it whenever _slot, _rejoin, _solo
 * or a member's applied epoch change: plain, no group slot held; solo, the
 * one partition to read when also no rejoin is due, else None; member, a
 * group member's slot words, once its assignment is applied) - and does in
 * C what the top of Consumer.poll does in Python (for a member, only while
 * its slot says nothing new: still ACTIVE, the epoch it applied, no
 * auto-commit due; it keeps the slot's last-poll word as the Python path does):
 *   - a fetched batch being handed out: its next Message;
 *   - one partition assigned (_solo) and nothing else to report: spin for
 *     its next record, read every ready one (the first is returned, the
 *     others wait in its buf);
 * and calls fallback(timeout), the Python method, for everything else, or
 * rest(part, result, spun_ns, timeout) when that read found nothing.
 * close() disables it first (disable(): every call falls back), before the
 * namespace's mapping, which flag_addr points into, goes. */
#include <structmember.h>

static PyObject *deque_type; /* collections.deque */

typedef struct {
    PyObject_HEAD
    PyObject *tp, *log, *buf;   /* TopicPartition, PartitionLog, its fetched batch (a deque or LatQueue) */
    PyObject *fast, *topic, *partition; /* log._fast, tp.topic, tp.partition */
    unsigned long long pos, start;
    long long retention_ms, before;
    long long committed;        /* what this consumer last committed of it (-1: nothing yet) */
    char paused, eof_sent, stopped;
    char pace;                  /* auto-commit keeps pace with its block ring (part_floor_wanted) */
    char c_armed;               /* set_commit gave the C commit its group's entry (part_commit) */
    /* set_commit's: the namespace mapping, its group's commit entry (key, owner to commit as, the
     * entry's time and {owner, value} pair offsets), the commit table's geometry and the floor probe's key */
    uint8_t *c_base;
    uint64_t c_size, c_entry, c_key, c_owner, c_time, c_pair, c_tab, c_n, c_esize, c_value, c_low;
    uint32_t c_groups;
} Part;

static int Part_init(Part *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"tp", "log", "pos", "retention_ms", NULL};
    PyObject *tp, *log;
    unsigned long long pos;
    long long ret = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOK|L", kwlist, &tp, &log, &pos, &ret)) return -1;
    PyObject *fast = PyObject_GetAttrString(log, "_fast");
    PyObject *topic = fast ? PyObject_GetAttrString(tp, "topic") : NULL;
    PyObject *partition = topic ? PyObject_GetAttrString(tp, "partition") : NULL;
    PyObject *buf = partition ? PyObject_CallNoArgs(deque_type) : NULL;
    if (!buf) {
        Py_XDECREF(fast); Py_XDECREF(topic); Py_XDECREF(partition);
        return -1;
    }
    if (Py_TYPE(fast) != &FastLogType) {
        Py_DECREF(fast); Py_DECREF(topic); Py_DECREF(partition); Py_DECREF(buf);
        PyErr_SetString(PyExc_TypeError, "log must be a PartitionLog (with its C fast path)");
        return -1;
    }
    Py_INCREF(tp); Py_XSETREF(self->tp, tp);
    Py_INCREF(log); Py_XSETREF(self->log, log);
    Py_XSETREF(self->fast, fast);
    Py_XSETREF(self->topic, topic);
    Py_XSETREF(self->partition, partition);
    Py_XSETREF(self->buf, buf);
    self->pos = self->start = pos; /* start: where reading (re)started - a commit of it commits nothing consumed */
    self->retention_ms = ret;
    self->before = self->committed = -1;
    self->paused = self->eof_sent = self->stopped = self->pace = self->c_armed = 0;
    return 0;
}

static int Part_traverse(Part *self, visitproc visit, void *arg)
{
    Py_VISIT(self->tp); Py_VISIT(self->log); Py_VISIT(self->buf);
    Py_VISIT(self->fast); Py_VISIT(self->topic); Py_VISIT(self->partition);
    return 0;
}

static int Part_clear(Part *self)
{
    Py_CLEAR(self->tp); Py_CLEAR(self->log); Py_CLEAR(self->buf);
    Py_CLEAR(self->fast); Py_CLEAR(self->topic); Py_CLEAR(self->partition);
    return 0;
}

static void Part_dealloc(Part *self)
{
    PyObject_GC_UnTrack(self);
    Part_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Should auto-commit commit part now, nb records of a fetched batch still to
 * hand out?  Only a pacing part (Part.pace: a block topic, auto-commit on), only with
 * something new to commit (what the commit would store, as _stored: pos - nb,
 * exact unless the batch skipped offsets - a hint, the commit reads the true
 * one; nothing after a seek until a record is read), and only while this
 * group holds the floor (its last commit not above it: when another group
 * is slower, our commit frees nothing); then log_floor_wanted. */
static inline int part_floor_wanted(Part *part, Py_ssize_t nb)
{
    FastLog *fl = (FastLog *)part->fast;
    if (!part->pace || !fl || Py_TYPE(fl) != &FastLogType || !fl->v || (unsigned long long)nb > part->pos) return 0;
    unsigned long long at = part->pos - (unsigned long long)nb;
    if (at == part->start) {
        if (part->before < 0) return 0;
        at = (unsigned long long)part->before;
    }
    if (part->committed >= 0 &&
        (at <= (unsigned long long)part->committed || (unsigned long long)part->committed > log_get_floor(fl->v)))
        return 0;
    return log_floor_wanted(fl->v, at);
}

/* What an auto-commit of part stores now, nb records of its fetched batch
 * still to hand out (membership._stored, exactly): its position - the
 * batch's first offset, else pos - or, nothing read since a seek(), the
 * position before it.  0 when there is nothing to store, or when it cannot
 * tell without Python code (a batch not a deque of Messages). */
static int part_stored(Part *part, Py_ssize_t nb, unsigned long long *at)
{
    unsigned long long a = part->pos;
    if (nb > 0) {
        if (!part->buf || !Py_IS_TYPE(part->buf, (PyTypeObject *)deque_type)) return 0;
        PyObject *m = PySequence_GetItem(part->buf, 0); /* a deque's item: no Python code runs */
        if (!m) { PyErr_Clear(); return 0; }
        int ok = PyTuple_Check(m) && PyTuple_GET_SIZE(m) == MSG_ITEMS && PyLong_CheckExact(PyTuple_GET_ITEM(m, 2));
        a = ok ? PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(m, 2)) : 0;
        Py_DECREF(m);
        if (!ok || PyErr_Occurred()) { PyErr_Clear(); return 0; }
    }
    if (a == part->start) {
        if (part->before < 0) return 0;
        a = (unsigned long long)part->before;
    }
    *at = a;
    return 1;
}

/* An auto-commit of part in C, as membership._commit_list makes one for a
 * block topic's partition: its stored position into the group's {owner,
 * value} pair, the entry's time, then the ring's floor (the lowest any group
 * committed, never above the high watermark).  Only once set_commit armed it
 * (auto-commit with no on_commit callback, the entry known) and with
 * something new to store: 1 done; 0 leaves the commit to the Python path
 * (not armed, the entry gone or reused, fenced, the mapping's words out of
 * place), which reports what the C path cannot. */
static int part_commit(Part *part, Py_ssize_t nb)
{
    FastLog *fl = (FastLog *)part->fast;
    unsigned long long at;
    if (!part->c_armed || !fl || Py_TYPE(fl) != &FastLogType || !fl->v || !part_stored(part, nb, &at) ||
        (part->committed >= 0 && at <= (unsigned long long)part->committed))
        return 0;
    uint8_t *e = part->c_base + part->c_entry; /* in the mapping: set_commit checked the entry's words fit */
    /* acquire: pairs with commit_entry's release store of the key (a deleted entry's reuse changes it) */
    if (atom_load_acquire64((uint64_t *)e) != part->c_key) return 0;
    if (shm_pair_commit(part->c_base, part->c_size, part->c_entry + part->c_pair, part->c_owner, at + 1) != 1)
        return 0; /* fenced (or a bad offset): the Python path reports it */
    /* release: pairs with shm_load64's acquire (the commit's time, for `consumer-groups`) */
    atom_store_release64((uint64_t *)(e + part->c_time), (uint64_t)now_ns());
    part->committed = (long long)at;
    uint64_t low, lo, hi;
    if (shm_commit_floor(part->c_base, part->c_size, part->c_tab, part->c_n, part->c_esize, part->c_value,
                         part->c_low, part->c_groups, &low) == 1 &&
        log_watermarks(fl->v, &lo, &hi) == LOG_OK) {
        uint64_t floor = low ? low - 1 : 0;
        log_set_floor(fl->v, floor < hi ? floor : hi);
    }
    return 1;
}

/* set_commit(ctx) -> None: arm part_commit (ctx: mapping address and size, entry offset, key, owner, the
 * entry's time and pair offsets, table offset, entries, entry size, value offset, floor key, groups), or
 * disarm it (None) */
static PyObject *Part_set_commit(Part *self, PyObject *ctx)
{
    if (ctx == Py_None) {
        self->c_armed = 0;
        Py_RETURN_NONE;
    }
    unsigned long long a[12];
    unsigned int groups;
    if (!PyTuple_Check(ctx) || !PyArg_ParseTuple(ctx, "KKKKKKKKKKKKI:set_commit", &a[0], &a[1], &a[2], &a[3], &a[4],
                                                 &a[5], &a[6], &a[7], &a[8], &a[9], &a[10], &a[11], &groups)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "set_commit(ctx): a tuple of 13 ints, or None");
        return NULL;
    }
    unsigned long long base = a[0], size = a[1], entry = a[2], t = a[5], pair = a[6];
    if (!base || base % 16 || entry % 16 || t % 8 || pair % 16 || entry > size || size - entry < 16 ||
        t > size - entry - 8 || pair > size - entry - 16) {
        PyErr_SetString(PyExc_ValueError, "set_commit: the commit entry's words lie outside the mapping");
        return NULL;
    }
    self->c_base = (uint8_t *)(uintptr_t)base;
    self->c_size = size; self->c_entry = entry; self->c_key = a[3]; self->c_owner = a[4];
    self->c_time = t; self->c_pair = pair; self->c_tab = a[7]; self->c_n = a[8]; self->c_esize = a[9];
    self->c_value = a[10]; self->c_low = a[11]; self->c_groups = groups;
    self->c_armed = 1;
    Py_RETURN_NONE;
}

/* floor_wanted() -> bool: part_floor_wanted, for the Python path */
static PyObject *Part_floor_wanted(Part *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->buf) Py_RETURN_FALSE;
    Py_ssize_t n = PyObject_Size(self->buf);
    if (n < 0) return NULL;
    return PyBool_FromLong(part_floor_wanted(self, n));
}

static PyMethodDef Part_methods[] = {
    {"floor_wanted", (PyCFunction)Part_floor_wanted, METH_NOARGS,
     "floor_wanted() -> bool: a block topic's producers want this partition's position committed now"},
    {"set_commit", (PyCFunction)Part_set_commit, METH_O,
     "set_commit(ctx) -> None: let poll()'s C path make the auto-commits that keep pace with the ring (ctx: "
     "mapping address and size, entry offset, key, owner, time and pair offsets in the entry, table offset, "
     "entries, entry size, value offset, floor key, groups); None: leave them to Python"},
    {NULL},
};

static PyMemberDef Part_members[] = {
    {"tp", T_OBJECT_EX, offsetof(Part, tp), READONLY, "the TopicPartition"},
    {"log", T_OBJECT_EX, offsetof(Part, log), READONLY, "the PartitionLog"},
    {"buf", T_OBJECT_EX, offsetof(Part, buf), 0, "the fetched batch being handed out (a deque)"},
    {"fast", T_OBJECT_EX, offsetof(Part, fast), READONLY, "log._fast"},
    {"topic", T_OBJECT_EX, offsetof(Part, topic), READONLY, "tp.topic"},
    {"partition", T_OBJECT_EX, offsetof(Part, partition), READONLY, "tp.partition"},
    {"pos", T_ULONGLONG, offsetof(Part, pos), 0, "the next offset to read"},
    {"start", T_ULONGLONG, offsetof(Part, start), 0, "where reading (re)started"},
    {"before", T_LONGLONG, offsetof(Part, before), 0,
     "the position consumed to before the last seek() (-1: none): the offset an auto-commit stores until a "
     "record is read again (librdkafka's stored offset; seek moves the position, not it)"},
    {"retention_ms", T_LONGLONG, offsetof(Part, retention_ms), READONLY, "the topic's retention.ms (-1: none)"},
    {"committed", T_LONGLONG, offsetof(Part, committed), 0, "what this consumer last committed of it (-1: nothing)"},
    {"commit_armed", T_BOOL, offsetof(Part, c_armed), READONLY, "set_commit armed the C commit"},
    {"pace", T_BOOL, offsetof(Part, pace), 0,
     "auto-commit keeps pace with its block ring: a commit once a quarter ring is read (floor_wanted)"},
    {"paused", T_BOOL, offsetof(Part, paused), 0, "pause()d"},
    {"eof_sent", T_BOOL, offsetof(Part, eof_sent), 0, "its end-of-partition event went out"},
    {"stopped", T_BOOL, offsetof(Part, stopped), 0, "not read until seek() (auto.offset.reset=error)"},
    {NULL},
};

static PyTypeObject PartType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastlog.Part",
    .tp_basicsize = sizeof(Part),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Part(tp, log, pos, retention_ms=-1): one assigned partition of a consumer",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Part_init,
    .tp_dealloc = (destructor)Part_dealloc,
    .tp_traverse = (traverseproc)Part_traverse,
    .tp_clear = (inquiry)Part_clear,
    .tp_members = Part_members,
    .tp_methods = Part_methods,
};

/* ---- ConsumerPoll ---------------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *state;         /* the consumer's __dict__ */
    PyObject *fallback;      /* Consumer.poll bound to it */
    PyObject *rest;          /* Consumer._poll_after bound to it */
    PyObject *events;        /* its _events deque */
    PyObject *commit_events; /* its _commit_events deque */
    PyObject *idle;          /* called between spin chunks with nothing (its supervisor check), or None */
    PyObject *solo;          /* set_lean's solo Part, or NULL */
    int plain;               /* set_lean's plain: no group slot held (0 until told) */
    /* set_lean's member, for a group member whose assignment is applied: its
     * state, epoch and last-poll words in the namespace mapping (NULL: fall
     * back), and the values that say nothing changed */
    volatile uint64_t *m_state, *m_epoch, *m_last;
    uint64_t m_active, m_seen;
    long long next_commit;   /* CLOCK_MONOTONIC ns when an auto-commit is due (the Python path makes it); -1: never */
    const volatile uint64_t *flag; /* the namespace's destroyed flag; NULL once disabled */
    long long spin_ns;
    unsigned long long fetch;
    int eof;                 /* enable.partition.eof */
} ConsumerPoll;

static PyObject *str_cur, *str_popleft;

#define CP_CHUNK_NS 1000000LL /* spin mode: a spin holding the GIL lasts at most this long */

static PyObject *cp_call1(PyObject *fn, PyObject *timeout)
{
    PyObject *a[1] = {timeout};
    return PyObject_Vectorcall(fn, a, 1, NULL);
}

static long long coarse_res; /* CLOCK_MONOTONIC_COARSE's step (a tick), read at module set-up */

/* CLOCK_MONOTONIC, a tick late at most: a few ns to read, not ~20; the
 * deadlines it serves are ms apart.  An auto-commit it finds due is due on
 * the precise clock the Python path then reads. */
static inline long long coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A last-poll time: the coarse clock moved up by its step, so it is never
 * behind the precise clock the supervisor reads (a time a tick old would
 * bring max.poll.interval.ms a tick early) */
static inline uint64_t last_poll_ns(long long coarse)
{
    return (uint64_t)(coarse + coarse_res);
}

/* One pass of poll(timeout) (left_ns: the time left, -1: no limit): 1 with
 * *out the result (NULL with an exception set); 0 if it spun a chunk with
 * nothing read and should spin again (spin mode, time left). */
static int cp_pass(ConsumerPoll *self, PyObject *timeout, long long left_ns, PyObject **out)
{
    PyObject *d = self->state;
    *out = NULL;
    if (!self->flag || !d) goto fallback;
    int member = !self->plain;
    if (member) { /* a group member: alone only while the supervisor has nothing new for it */
        if (!self->m_state) goto fallback;
        /* relaxed: plain word reads, as the Python path's; the supervisor's
         * stores of them are followed by a notify, and _sync reads the
         * assignment itself under its seqlock */
        if (*self->flag || atom_load_relaxed64(self->m_state) != self->m_active || /* destroyed: as _group_tick */
            atom_load_relaxed64(self->m_epoch) != self->m_seen || PyObject_Size(self->commit_events) != 0)
            goto fallback_or_error;
    }
    if (member || self->next_commit >= 0) {
        long long now = coarse_ns();
        if (self->next_commit >= 0 && now >= self->next_commit) goto fallback; /* it commits */
        /* relaxed: the supervisor reads it as a plain word (max.poll.interval.ms counts from each poll) */
        if (member) atom_store_relaxed64(self->m_last, last_poll_ns(now));
    }
    /* borrowed from the dict; used before any Python code can run */
    PyObject *cur = PyDict_GetItemWithError(d, str_cur);
    if (!cur) goto fallback_or_error;
    Py_ssize_t ne = PyObject_Size(self->events);
    if (ne < 0) return 1;
    if (ne) goto fallback;
    if (cur != Py_None) { /* a fetched batch being handed out */
        if (Py_TYPE(cur) != &PartType) goto fallback;
        PyObject *buf = ((Part *)cur)->buf;
        Py_ssize_t n = buf ? PyObject_Size(buf) : 0;
        if (n < 0) return 1;
        /* a block topic's producers wait for this group's commit (auto-commit only): made here, or by the
         * Python path */
        if (n > 0 && self->next_commit >= 0 && part_floor_wanted((Part *)cur, n) && !part_commit((Part *)cur, n))
            goto fallback;
        if (n > 0) { /* a plain deque's popleft called directly (fastlat.c), a LatQueue's counting one */
            if (Py_IS_TYPE(buf, (PyTypeObject *)deque_type) && deque_popleft_c) *out = deque_popleft_c(buf, NULL);
            else if (Py_IS_TYPE(buf, &LatQueueType)) *out = LatQueue_popleft(buf, NULL);
            else { /* Python code: held while it runs (borrowed from the Part, itself borrowed from the dict) */
                Py_INCREF(buf);
                *out = PyObject_CallMethodNoArgs(buf, str_popleft);
                Py_DECREF(buf);
            }
            return 1;
        }
    }
    PyObject *solo = self->solo;
    if (!solo || Py_TYPE(solo) != &PartType) goto fallback;
    Py_ssize_t nc = member ? 0 : PyObject_Size(self->commit_events); /* (a member's was checked above) */
    if (nc < 0) return 1;
    Part *part = (Part *)solo;
    FastLog *fl = (FastLog *)part->fast;
    if (nc || part->paused || part->stopped || (self->eof && !part->eof_sent) || !part->buf || !fl ||
        Py_TYPE(fl) != &FastLogType || !fl->v)
        goto fallback;
    Py_ssize_t nb = PyObject_Size(part->buf);
    if (nb < 0) return 1;
    /* relaxed read: `shmbroker destroy` sets the flag once; the Python path says so (the next call sees it) */
    if (nb || *self->flag) goto fallback;
    /* a block topic's producer waits for this group's commit (auto-commit only): made here, or by Python */
    if (self->next_commit >= 0 && part_floor_wanted(part, 0) && !part_commit(part, 0)) goto fallback;
    /* the spin: spin mode spins a chunk at a time, the others their share; never past the time left */
    int spin_all = self->spin_ns < 0;
    long long spin = spin_all ? CP_CHUNK_NS : self->spin_ns;
    if (left_ns >= 0 && left_ns < spin) spin = left_ns;
    Py_INCREF(part); /* Python code may run below (buf.extend of a LatQueue, rest) */
    PyObject *buf = part->buf; /* a writable member: held while Python code may run */
    Py_INCREF(buf);
    PyObject *first = NULL;
    unsigned long long nxt;
    int code, again = 0;
    int got = next_core(fl, part->pos, spin, self->fetch, part->topic, part->partition, buf, &first, &nxt, &code);
    Py_DECREF(buf);
    if (member) atom_store_relaxed64(self->m_last, last_poll_ns(coarse_ns())); /* relaxed: as above, after the spin */
    if (got < 0) goto done;
    if (got && first) {
        part->pos = nxt;
        part->eof_sent = 0;
        Py_ssize_t n = PyObject_Size(part->buf);
        if (n < 0 || (n > 0 && PyDict_SetItem(d, str_cur, (PyObject *)part) < 0)) { Py_DECREF(first); goto done; }
        *out = first;
        goto done;
    }
    if (!got && spin_all && (left_ns < 0 || left_ns > spin)) { again = 1; goto done; }
    { /* nothing read: the Python side waits, or handles the status */
        PyObject *r = got ? next_result(NULL, nxt, code) : (Py_INCREF(Py_None), Py_None);
        PyObject *spun = r ? PyLong_FromLongLong(spin) : NULL;
        if (spun) {
            PyObject *rargs[4] = {(PyObject *)part, r, spun, timeout};
            *out = PyObject_Vectorcall(self->rest, rargs, 4, NULL);
        }
        Py_XDECREF(spun);
        Py_XDECREF(r);
    }
done:
    Py_DECREF(part);
    return !again;
fallback_or_error:
    if (PyErr_Occurred()) return 1;
fallback:
    *out = cp_call1(self->fallback, timeout);
    return 1;
}

static PyObject *ConsumerPoll_call(ConsumerPoll *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames || nargs > 1) return PyObject_Vectorcall(self->fallback, args, nargs, kwnames);
    PyObject *timeout = nargs ? args[0] : Py_None, *out;
    long long left = -1;
    if (timeout != Py_None) { /* (an exact float or int is read without making a float) */
        double s = PyFloat_CheckExact(timeout) ? PyFloat_AS_DOUBLE(timeout)
                   : PyLong_CheckExact(timeout) ? PyLong_AsDouble(timeout) : PyFloat_AsDouble(timeout);
        if ((s == -1.0 && PyErr_Occurred()) || s != s) { /* not a number (or nan): the method says so */
            PyErr_Clear();
            return cp_call1(self->fallback, timeout);
        }
        if (s >= 0) left = s * 1e9 > 9e18 ? (long long)9e18 : (long long)(s * 1e9);
    }
    if (cp_pass(self, timeout, left, &out)) return out;
    /* spin mode, a chunk went by with nothing: again until the timeout, other threads and signals between */
    long long start = now_ns(), total = left;
    for (;;) {
        if (PyErr_CheckSignals() < 0) return NULL;
        if (self->idle != Py_None) { /* the consumer's supervisor check, as the Python spin calls it */
            PyObject *x = PyObject_CallNoArgs(self->idle);
            if (!x) return NULL;
            Py_DECREF(x);
        }
        Py_BEGIN_ALLOW_THREADS
        Py_END_ALLOW_THREADS
        PyObject *t = timeout;
        if (total >= 0) {
            left = total - (now_ns() - start);
            if (left < 0) left = 0;
            if (!(t = PyFloat_FromDouble((double)left / 1e9))) return NULL;
        } else Py_INCREF(t);
        int done = cp_pass(self, t, left, &out);
        Py_DECREF(t);
        if (done) return out;
    }
}

static int ConsumerPoll_init(ConsumerPoll *self, PyObject *args, PyObject *kw)
{
    PyObject *state, *fb, *rest, *ev, *cev, *idle;
    unsigned long long addr, fetch;
    long long spin;
    int eof;
    if (!PyArg_ParseTuple(args, "O!OOOOKLKpO", &PyDict_Type, &state, &fb, &rest, &ev, &cev, &addr, &spin, &fetch,
                          &eof, &idle))
        return -1;
    if (!addr || addr % 8 || fetch == 0 || fetch > (1u << 24)) {
        PyErr_SetString(PyExc_ValueError, "ConsumerPoll: a flag address (8-aligned) and fetch in [1, 2**24]");
        return -1;
    }
    Py_INCREF(state); Py_XSETREF(self->state, state);
    Py_INCREF(fb); Py_XSETREF(self->fallback, fb);
    Py_INCREF(rest); Py_XSETREF(self->rest, rest);
    Py_INCREF(ev); Py_XSETREF(self->events, ev);
    Py_INCREF(cev); Py_XSETREF(self->commit_events, cev);
    Py_INCREF(idle); Py_XSETREF(self->idle, idle);
    self->flag = (const volatile uint64_t *)(uintptr_t)addr;
    self->spin_ns = spin < 0 ? -1 : spin; /* -1: spin mode, for the whole timeout */
    self->fetch = fetch;
    self->eof = eof;
    self->next_commit = -1;
    self->vectorcall = (vectorcallfunc)ConsumerPoll_call;
    return 0;
}

static PyObject *ConsumerPoll_set_lean(ConsumerPoll *self, PyObject *args)
{
    PyObject *plain_o, *solo, *member = Py_None;
    if (!PyArg_ParseTuple(args, "OO|O:set_lean", &plain_o, &solo, &member)) return NULL;
    if (solo != Py_None && Py_TYPE(solo) != &PartType) {
        PyErr_SetString(PyExc_TypeError, "set_lean(plain, solo, member=None): solo is a Part or None");
        return NULL;
    }
    int plain = PyObject_IsTrue(plain_o);
    if (plain < 0) return NULL;
    /* member: (mapping address, mapping size, state offset, epoch offset, last-poll offset, active, epoch seen) */
    unsigned long long base = 0, size = 0, so = 0, eo = 0, lo = 0, active = 0, seen = 0;
    if (member != Py_None) {
        if (!PyTuple_Check(member) ||
            !PyArg_ParseTuple(member, "KKKKKKK:set_lean member", &base, &size, &so, &eo, &lo, &active, &seen))
            return NULL;
        unsigned long long offs[3] = {so, eo, lo};
        for (int k = 0; k < 3; k++)
            if (!base || (base | offs[k]) % 8 || offs[k] > size || size - offs[k] < 8) {
                PyErr_SetString(PyExc_ValueError, "set_lean: a member word outside its mapping");
                return NULL;
            }
    }
    Py_XINCREF(solo == Py_None ? NULL : solo);
    Py_XSETREF(self->solo, solo == Py_None ? NULL : solo);
    self->plain = plain;
    self->m_state = member == Py_None ? NULL : (volatile uint64_t *)(uintptr_t)(base + so);
    self->m_epoch = member == Py_None ? NULL : (volatile uint64_t *)(uintptr_t)(base + eo);
    self->m_last = member == Py_None ? NULL : (volatile uint64_t *)(uintptr_t)(base + lo);
    self->m_active = active;
    self->m_seen = seen;
    Py_RETURN_NONE;
}

static PyObject *ConsumerPoll_disable(ConsumerPoll *self, PyObject *unused)
{
    self->flag = NULL; /* every call goes to the Python method from now on */
    self->m_state = self->m_epoch = self->m_last = NULL;
    Py_RETURN_NONE;
}

static int ConsumerPoll_traverse(ConsumerPoll *self, visitproc visit, void *arg)
{
    Py_VISIT(self->state); Py_VISIT(self->fallback); Py_VISIT(self->rest);
    Py_VISIT(self->events); Py_VISIT(self->commit_events); Py_VISIT(self->idle); Py_VISIT(self->solo);
    return 0;
}

static int ConsumerPoll_clear(ConsumerPoll *self)
{
    /* the consumer's dict holds us and we hold it: the cyclic GC breaks the cycle here */
    Py_CLEAR(self->state); Py_CLEAR(self->fallback); Py_CLEAR(self->rest);
    Py_CLEAR(self->events); Py_CLEAR(self->commit_events); Py_CLEAR(self->idle); Py_CLEAR(self->solo);
    return 0;
}

static void ConsumerPoll_dealloc(ConsumerPoll *self)
{
    PyObject_GC_UnTrack(self);
    ConsumerPoll_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef ConsumerPoll_methods[] = {
    {"disable", (PyCFunction)ConsumerPoll_disable, METH_NOARGS, "send every later call to the Python method"},
    {"set_lean", (PyCFunction)ConsumerPoll_set_lean, METH_VARARGS,
     "set_lean(plain, solo, member=None): no group slot held; the one partition to read alone (None: fall "
     "back); a member's words (address, size, state, epoch and last-poll offsets, active, epoch seen)"},
    {NULL},
};

static PyMemberDef ConsumerPoll_members[] = {
    {"next_commit", T_LONGLONG, offsetof(ConsumerPoll, next_commit), 0,
     "CLOCK_MONOTONIC ns when an auto-commit is due: calls from then on go to the Python method (-1: never)"},
    {NULL},
};

static PyTypeObject ConsumerPollType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastlog.ConsumerPoll",
    .tp_basicsize = sizeof(ConsumerPoll),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Consumer.poll's lean path",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ConsumerPoll_init,
    .tp_dealloc = (destructor)ConsumerPoll_dealloc,
    .tp_traverse = (traverseproc)ConsumerPoll_traverse,
    .tp_clear = (inquiry)ConsumerPoll_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(ConsumerPoll, vectorcall),
    .tp_methods = ConsumerPoll_methods,
    .tp_members = ConsumerPoll_members,
};

static int fastpoll_ready(PyObject *m)
{
    struct timespec res;
    coarse_res = clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 ? (long long)res.tv_sec * 1000000000LL + res.tv_nsec
                                                                 : 10000000LL; /* (a tick of 100 Hz at worst) */
    static const char *names[] = {"_cur", "popleft"};
    PyObject **vars[] = {&str_cur, &str_popleft};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!*vars[i] && !(*vars[i] = PyUnicode_InternFromString(names[i]))) return -1;
    if (!deque_type) {
        PyObject *c = PyImport_ImportModule("collections");
        if (!c) return -1;
        deque_type = PyObject_GetAttrString(c, "deque");
        Py_DECREF(c);
        if (!deque_type) return -1;
    }
    if (PyModule_AddType(m, &PartType) < 0) return -1;
    return PyModule_AddType(m, &ConsumerPollType);
}
