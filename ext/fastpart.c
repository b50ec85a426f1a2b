/* fastpart.c - Part, one assigned partition of a Consumer (broker/consumer.py's
 * _Part), and the auto-commit's work on it in C (shm._fastlog; compiled into
 * fastlog.c's unit, after FastLog and before fastpoll.c, whose lean path uses it).
 *
 * A C struct so poll()'s lean path reads and moves its position without
 * attribute lookups; Python sees the same attributes as before.  On a block
 * topic with auto-commit, part_floor_wanted says when the ring's producers
 * need this group's commit, and part_commit makes it (once set_commit armed
 * it with the group's commit entry) as membership._commit_list would. */
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

/* part's log, or NULL once it is closed */
static inline log_view *part_log(Part *part)
{
    FastLog *fl = (FastLog *)part->fast;
    return fl && Py_TYPE(fl) == &FastLogType ? fl->v : NULL;
}

/* The stored offset (membership._stored's rule) for position pos: pos, or -
 * nothing read since a seek() (pos is where reading restarted) - the
 * position before the seek; 0 when there is none. */
static inline int part_stored_at(Part *part, unsigned long long pos, unsigned long long *at)
{
    if (pos == part->start) {
        if (part->before < 0) return 0;
        pos = (unsigned long long)part->before;
    }
    *at = pos;
    return 1;
}

/* Would a commit of at store something new while this group holds the
 * floor (its last commit not above it: when another group is slower, our
 * commit frees nothing)? */
static inline int part_ahead(Part *part, log_view *v, unsigned long long at)
{
    return part->committed < 0 ||
           (at > (unsigned long long)part->committed && (unsigned long long)part->committed <= log_get_floor(v));
}

/* Should auto-commit commit part now, nb records of a fetched batch still to
 * hand out?  Only a pacing part (Part.pace: a block topic, auto-commit on),
 * only with something new to commit while its group holds the floor
 * (part_ahead of what the commit would store, as _stored: pos - nb, exact
 * unless the batch skipped offsets - a hint, the commit reads the true one),
 * then log_floor_wanted. */
static inline int part_floor_wanted(Part *part, Py_ssize_t nb)
{
    log_view *v = part_log(part);
    unsigned long long at;
    return part->pace && v && (unsigned long long)nb <= part->pos && part_stored_at(part, part->pos - nb, &at) &&
           part_ahead(part, v, at) && log_floor_wanted(v, at);
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
    return part_stored_at(part, a, at);
}

/* An auto-commit of part in C, as membership._commit_list makes one for a
 * block topic's partition: its stored position into the group's {owner,
 * value} pair, the entry's time, then the ring's floor (the lowest any group
 * committed, never above the high watermark).  Only once set_commit armed it
 * (auto-commit with no on_commit callback, the entry known) and with
 * something new to store: 1 done; 0 leaves the commit to the Python path
 * (not armed, the entry gone or reused, fenced, the mapping's words out of
 * place), which reports what the C path cannot - and, after a refusal, arms
 * it again with the entry it finds once its own commit goes through. */
static int part_commit(Part *part, Py_ssize_t nb)
{
    log_view *v = part_log(part);
    unsigned long long at;
    if (!part->c_armed || !v || !part_stored(part, nb, &at) ||
        (part->committed >= 0 && at <= (unsigned long long)part->committed))
        return 0;
    uint8_t *e = part->c_base + part->c_entry; /* in the mapping: set_commit checked the entry's words fit */
    /* acquire: pairs with commit_entry's release store of the key (a deleted entry's reuse changes it) */
    if (atom_load_acquire64((uint64_t *)e) != part->c_key ||
        shm_pair_commit(part->c_base, part->c_size, part->c_entry + part->c_pair, part->c_owner, at + 1) != 1) {
        part->c_armed = 0; /* moved or fenced: the Python path commits (or reports it) and arms us again */
        return 0;
    }
    /* release: pairs with shm_load64's acquire (the commit's time, for `consumer-groups`) */
    atom_store_release64((uint64_t *)(e + part->c_time), (uint64_t)now_ns());
    part->committed = (long long)at;
    uint64_t low, lo, hi;
    if (shm_commit_floor(part->c_base, part->c_size, part->c_tab, part->c_n, part->c_esize, part->c_value,
                         part->c_low, part->c_groups, &low) == 1 &&
        log_watermarks(v, &lo, &hi) == LOG_OK) {
        uint64_t floor = low ? low - 1 : 0;
        log_set_floor(v, floor < hi ? floor : hi);
    }
    return 1;
}

/* The number of records of part's fetched batch still to hand out, or -1 with an exception set */
static Py_ssize_t part_batch_left(Part *part)
{
    return part->buf ? PyObject_Size(part->buf) : 0;
}

/* commit_idle() -> bool: before its consumer sleeps, the auto-commit of a
 * paced part read past its last commit while its group holds the floor
 * (part_ahead), made here once armed: True when it is wanted and left to the
 * Python path.  A sleeping consumer does not see a producer start to wait,
 * so what it read and left uncommitted (up to a quarter ring) would hold a
 * claim larger than the rest of the ring until the interval. */
static PyObject *Part_commit_idle(Part *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t n = part_batch_left(self);
    if (n < 0) return NULL;
    log_view *v = part_log(self);
    unsigned long long at;
    int wanted = self->pace && v && part_stored(self, n, &at) && part_ahead(self, v, at);
    return PyBool_FromLong(wanted && !part_commit(self, n));
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
    Py_ssize_t n = part_batch_left(self);
    if (n < 0) return NULL;
    return PyBool_FromLong(part_floor_wanted(self, n));
}

static PyMethodDef Part_methods[] = {
    {"floor_wanted", (PyCFunction)Part_floor_wanted, METH_NOARGS,
     "floor_wanted() -> bool: a block topic's producers want this partition's position committed now"},
    {"commit_idle", (PyCFunction)Part_commit_idle, METH_NOARGS,
     "commit_idle() -> bool: before the consumer sleeps, commit this paced partition's position if it read past "
     "its last commit while its group holds the floor - in C once armed; True: wanted, and the Python path's "
     "to make"},
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

static int fastpart_ready(PyObject *m)
{
    if (!deque_type) {
        PyObject *c = PyImport_ImportModule("collections");
        if (!c) return -1;
        deque_type = PyObject_GetAttrString(c, "deque");
        Py_DECREF(c);
        if (!deque_type) return -1;
    }
    return PyModule_AddType(m, &PartType);
}
