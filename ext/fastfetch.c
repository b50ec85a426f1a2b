/* fastfetch.c - FastLog's batch reads (shm._fastlog; compiled into
 * fastlog.c's unit, #included where it stood): a fetch of consecutive
 * records into Records (read_batch) or the Kafka API's Messages
 * (read_messages, next_message: a consumer's fetch, with its first long
 * value read straight into its object or handed out in place), the
 * Message free list they reuse, and the per-call buffers that keep a
 * nested read (a finaliser, another thread) from handing out the outer
 * batch's records. */

/* The broker's Message type (a tuple subclass: topic, partition, offset, key,
 * value, headers, error, timestamp_ns, latency, overrides), registered by
 * broker.message. */
static PyObject *message_type;
#define MSG_ITEMS 10 /* item 9: None, or the dict of the set_* overrides (set_overrides) */

/* Messages kept for reuse: Message's dealloc (fastmsg.c's msg_dealloc, or
 * msgbase_dealloc under subtype_dealloc) puts a dying Message here, so a
 * consumed record's Message costs no allocation in the steady state.  Each
 * is untracked, holds no items and no reference to its type (msg_dealloc,
 * or subtype_dealloc after msgbase_dealloc, drops it). */
#define MSG_FREE_MAX 2048 /* ~250 KB at most: a consume(1024) batch and the one before it */
static PyObject *msg_free[MSG_FREE_MAX];
static int msg_nfree;

/* A kept Message as a new reference (untracked, its items NULL), or NULL. */
static PyObject *msg_take(void)
{
    if (!msg_nfree) return NULL;
    PyObject *m = msg_free[--msg_nfree];
    Py_INCREF(message_type); /* the instance's reference to its heap type, as PyType_GenericAlloc takes it */
    _Py_NewReference(m);
    return m;
}

static void msg_install_dealloc(PyTypeObject *tp);

static PyObject *set_message_type(PyObject *m, PyObject *tp)
{
    if (!PyType_Check(tp) || !PyType_IsSubtype((PyTypeObject *)tp, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the message type must be a tuple subclass");
        return NULL;
    }
    while (msg_nfree) PyObject_GC_Del(msg_free[--msg_nfree]); /* kept ones are of the old type */
    Py_INCREF(tp);
    Py_XSETREF(message_type, tp);
    msg_install_dealloc((PyTypeObject *)tp); /* (fastmsg.c) */
    Py_RETURN_NONE;
}

/* Where a batch's records and bytes go: the FastLog's own buffers, or -
 * when a batch of this FastLog is being turned into objects already - this
 * call's own.  Building objects can run Python code (headers decoding, a
 * finaliser, a thread switch), which may read this FastLog again, from this
 * thread or another: with shared buffers the outer batch would hand out the
 * inner one's records.  batch_done ends every batch_read_c. */
typedef struct {
    log_rec *recs;
    char *bbuf;
    int own; /* recs and bbuf are this call's (malloc), freed by batch_done */
} batch_bufs;

static void batch_done(FastLog *self, batch_bufs *bb)
{
    if (bb->own) {
        free(bb->recs);
        free(bb->bbuf);
    } else if (bb->recs) self->busy = 0;
    *bb = (batch_bufs){NULL, NULL, 0};
}

/* Read the batch of up to n records from o into *bb (see batch_bufs).
 * Returns the core's status, or INT_MIN with a Python exception set;
 * batch_done(bb) after either. */
static int batch_read_c(FastLog *self, unsigned long long o, unsigned long long n, log_batch *b, batch_bufs *bb)
{
    *bb = (batch_bufs){NULL, NULL, 0};
    if (!self->v) { PyErr_SetString(PyExc_ValueError, "log closed"); return INT_MIN; }
    if (n == 0 || n > (1u << 24)) {
        PyErr_SetString(PyExc_ValueError, "max_records must be in [1, 2**24]");
        return INT_MIN;
    }
    if (self->busy) {
        bb->own = 1;
        if (!(bb->recs = malloc(n * sizeof *bb->recs)) || !(bb->bbuf = malloc(self->bcap))) {
            PyErr_NoMemory();
            return INT_MIN;
        }
    } else {
        if (n > self->nrecs) {
            log_rec *r = realloc(self->recs, n * sizeof *r);
            if (!r) { PyErr_NoMemory(); return INT_MIN; }
            self->recs = r;
            self->nrecs = n;
        }
        bb->recs = self->recs;
        bb->bbuf = self->bbuf;
        self->busy = 1;
    }
    return log_read_batch(self->v, o, n, bb->recs, bb->bbuf, self->bcap, b);
}

static int batch_read(FastLog *self, PyObject *const *args, unsigned long long *o, log_batch *b, batch_bufs *bb)
{
    *bb = (batch_bufs){NULL, NULL, 0};
    *o = PyLong_AsUnsignedLongLong(args[0]);
    if (PyErr_Occurred()) return INT_MIN;
    unsigned long long n = PyLong_AsUnsignedLongLong(args[1]);
    if (PyErr_Occurred()) return INT_MIN;
    return batch_read_c(self, *o, n, b, bb);
}

/* The Message (topic, partition, offset, key, value, headers, None, ts,
 * None, None) of rec, built straight from it. */
static PyObject *make_message_v(FastLog *self, const log_rec *rec, const char *base, PyObject *topic,
                                PyObject *partition, PyObject *value)
{
    PyObject *it[5];
    if (record_items(self, rec, base, NULL, it, value) < 0) return NULL;
    if (self->view_base && PyBytes_CheckExact(it[1])) { /* shm.zero.copy: a short value's copy as a view too */
        PyObject *mv = PyMemoryView_FromObject(it[1]);
        if (!mv) { for (int k = 0; k < 5; k++) Py_DECREF(it[k]); return NULL; }
        Py_SETREF(it[1], mv);
    }
    PyTypeObject *tp = (PyTypeObject *)message_type;
    PyObject *m = msg_take();
    if (!m && !(m = tp->tp_alloc(tp, MSG_ITEMS))) { for (int k = 0; k < 5; k++) Py_DECREF(it[k]); return NULL; }
    PyObject *items[MSG_ITEMS] = {topic, partition, it[0], it[2], it[1], it[3], Py_None, it[4], Py_None, Py_None};
    Py_INCREF(topic);
    Py_INCREF(partition);
    Py_INCREF(Py_None);
    Py_INCREF(Py_None);
    Py_INCREF(Py_None);
    for (int k = 0; k < MSG_ITEMS; k++) PyTuple_SET_ITEM(m, k, items[k]); /* references move */
    /* Without headers (a list) a consumed Message holds atoms only (str, int,
     * bytes, None): it is left out of the cyclic GC's lists, as CPython does
     * with a tuple of atoms, so a batch of them no longer costs a gen-0
     * collection every few hundred messages.  Whatever hangs an object on one
     * later (set_overrides: the set_* methods) tracks it first.  A reused
     * Message comes untracked. */
    if (items[5] != Py_None) { if (!PyObject_GC_IsTracked(m)) PyObject_GC_Track(m); }
    else if (PyObject_GC_IsTracked(m)) PyObject_GC_UnTrack(m);
    return m;
}

static PyObject *make_message(FastLog *self, const log_rec *rec, const char *base, PyObject *topic,
                              PyObject *partition)
{
    return make_message_v(self, rec, base, topic, partition, NULL);
}

/* A long value first in line at o is read alone, straight into its bytes
 * object (one copy, not two through the batch buffer), ending where
 * log_read_batch would end on its first record: 1 with *m the Message (NULL
 * when nothing was read: a corrupt record skipped, a status, an error),
 * *nxt, *code and *rec set; 0 when o's value is not long (read it the
 * batch's way); -1 with an exception set. */
static int long_first(FastLog *self, unsigned long long o, PyObject *topic, PyObject *partition, log_rec *rec,
                      PyObject **m, unsigned long long *nxt, int *code)
{
    PyObject *val;
    int rc = self->view_base ? read_long_view(self, o, rec, &val) : read_long_value(self, o, rec, &val);
    *m = NULL;
    *nxt = o;
    *code = LOG_OK;
    if (rc == LOG_E_BUFFER) return 0; /* not a long value, or it changed size under us (a lap) */
    if (rc == INT_MIN) return -1;
    if (rc == LOG_OK) {
        if (!(*m = make_message_v(self, rec, self->buf, topic, partition, val))) return -1; /* val moves */
        *nxt = o + 1;
    } else if (rc == LOG_CORRUPT_RECORD) *nxt = o + 1; /* skipped */
    else *code = rc;
    return 1;
}

/* A batch from args (offset, max_records) as (objects or None, next_offset,
 * stop status code): Records, or with a topic the broker's Messages. */
static PyObject *batch_objects(FastLog *self, PyObject *const *args, PyObject *topic, PyObject *partition)
{
    unsigned long long o;
    log_batch b;
    if (topic && self->v && PyLong_CheckExact(args[0])) { /* Messages: a long value first goes alone */
        o = PyLong_AsUnsignedLongLong(args[0]);
        if (PyErr_Occurred()) return NULL;
        log_rec rec;
        PyObject *m;
        unsigned long long nxt;
        int code, got = long_first(self, o, topic, partition, &rec, &m, &nxt, &code);
        if (got < 0) return NULL;
        if (got) {
            if (m) return Py_BuildValue("([N]Ki)", m, nxt, code);
            return code < 0 ? Py_BuildValue("(OKi)", Py_None, nxt, code) : Py_BuildValue("([]Ki)", nxt, code);
        }
    }
    batch_bufs bb;
    int rc = batch_read(self, args, &o, &b, &bb);
    PyObject *list = rc == LOG_OK ? PyList_New((Py_ssize_t)b.count) : NULL;
    for (uint64_t i = 0; list && i < b.count; i++) {
        const log_rec *rec = &bb.recs[i];
        const char *base = bb.bbuf + rec->buf_pos;
        PyObject *x = topic ? make_message(self, rec, base, topic, partition) : make_record(self, rec, base, NULL);
        if (!x) Py_CLEAR(list); /* unset items are NULL: list dealloc skips them */
        else PyList_SET_ITEM(list, (Py_ssize_t)i, x);
    }
    batch_done(self, &bb);
    if (rc == INT_MIN || (rc == LOG_OK && !list)) return NULL;
    if (rc != LOG_OK) return Py_BuildValue("(OKi)", Py_None, o, rc);
    return Py_BuildValue("(NKi)", list, (unsigned long long)b.next_offset, b.stop);
}

/* read_messages(offset, max_records, topic, partition) -> (messages or None,
 * next_offset, stop status code): read_batch whose records come out as the
 * broker's Messages, so handing one out costs Python nothing but a pop. */
static PyObject *FastLog_read_messages(FastLog *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !message_type) {
        PyErr_SetString(PyExc_TypeError, "read_messages(offset, max_records, topic, partition) after "
                                         "set_message_type()");
        return NULL;
    }
    return batch_objects(self, args, args[2], args[3]);
}

/* (first or None, next offset, code): next_message's result; steals first */
static PyObject *next_result(PyObject *first, unsigned long long nxt, int code)
{
    PyObject *t = PyTuple_New(3), *n = PyLong_FromUnsignedLongLong(nxt), *c = PyLong_FromLong(code);
    if (!t || !n || !c) {
        Py_XDECREF(t); Py_XDECREF(n); Py_XDECREF(c); Py_XDECREF(first);
        return NULL;
    }
    if (!first) { first = Py_None; Py_INCREF(first); }
    PyTuple_SET_ITEM(t, 0, first);
    PyTuple_SET_ITEM(t, 1, n);
    PyTuple_SET_ITEM(t, 2, c);
    return t;
}

/* next_message's work: -1 with an exception set; 0 if o did not become
 * readable within spin ns; 1 with *first (a new reference, or NULL: nothing
 * read), *nxt and *code. */
static int next_core(FastLog *self, unsigned long long o, long long spin, unsigned long long fetch, PyObject *topic,
                     PyObject *partition, PyObject *buf, PyObject **first, unsigned long long *nxt, int *code)
{
    *first = NULL;
    *nxt = o;
    *code = LOG_OK;
    if (!self->v) { *code = LOG_E_BAD_ARG; return 1; }
    /* the core's wait, spinning only: it never sleeps while we hold the GIL */
    if (log_wait(self->v, o, spin, LOG_WAIT_SPIN, 0) != LOG_OK) return 0;
    log_rec rec;
    int rc = long_first(self, o, topic, partition, &rec, first, nxt, code);
    if (rc) {
        if (rc > 0 && *first && self->lat) lat_count(self, rec.timestamp_ns); /* shm.latency.histogram */
        return rc;
    }
    log_batch b;
    batch_bufs bb;
    rc = batch_read_c(self, o, fetch, &b, &bb);
    if (rc != LOG_OK || b.count == 0) {
        batch_done(self, &bb);
        if (rc == INT_MIN) return -1;
        if (rc != LOG_OK) *code = rc;
        else {
            *nxt = b.next_offset;
            *code = b.stop;
        }
        return 1;
    }
    *nxt = b.next_offset;
    *code = b.stop;
    int64_t ts0 = bb.recs[0].timestamp_ns;
    PyObject *rest = NULL;
    *first = make_message(self, &bb.recs[0], bb.bbuf + bb.recs[0].buf_pos, topic, partition);
    if (*first && b.count > 1) { /* the others wait in buf */
        rest = PyList_New((Py_ssize_t)b.count - 1);
        for (uint64_t i = 1; rest && i < b.count; i++) {
            const log_rec *r = &bb.recs[i];
            PyObject *m = make_message(self, r, bb.bbuf + r->buf_pos, topic, partition);
            if (!m) Py_CLEAR(rest); /* unset items are NULL: list dealloc skips them */
            else PyList_SET_ITEM(rest, (Py_ssize_t)i - 1, m);
        }
        if (!rest) Py_CLEAR(*first);
    }
    batch_done(self, &bb); /* before buf.extend: Python code, which may read this log again */
    if (!*first) return -1;
    if (rest) {
        PyObject *x = PyObject_CallMethodOneArg(buf, str_extend, rest);
        Py_DECREF(rest);
        if (!x) { Py_CLEAR(*first); return -1; }
        Py_DECREF(x);
    }
    if (self->lat) lat_count(self, ts0); /* shm.latency.histogram: handed out now
                                          * (buf, a LatQueue, counts the others) */
    return 1;
}

/* next_message(offset, spin_ns, max_records, topic, partition, buf) -> None
 * if offset did not become readable within spin_ns (spinning, GIL held, as
 * poll()), else (Message or None, next_offset, stop status code): every
 * record ready from offset, up to max_records, read in one batch as
 * read_messages reads it (the same statuses and counts) - the first is
 * returned, the others appended to buf (the partition's fetched batch:
 * buf.extend).  None in place of the Message: nothing was read (a status, a
 * skipped record, an error); next_offset and the code say why, for the
 * general path. */
static PyObject *FastLog_next_message(FastLog *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || !PyLong_CheckExact(args[0]) || !message_type) {
        PyErr_SetString(PyExc_TypeError, "next_message(offset: int, spin_ns: int, max_records, topic, partition, "
                                         "buf) after set_message_type()");
        return NULL;
    }
    unsigned long long o = PyLong_AsUnsignedLongLong(args[0]);
    if (PyErr_Occurred()) return NULL;
    long long spin = PyLong_AsLongLong(args[1]);
    if (spin == -1 && PyErr_Occurred()) return NULL;
    if (spin < 0) spin = 0; /* never an endless spin holding the GIL */
    unsigned long long fetch = PyLong_AsUnsignedLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    PyObject *first;
    unsigned long long nxt;
    int code;
    int got = next_core(self, o, spin, fetch, args[3], args[4], args[5], &first, &nxt, &code);
    if (got < 0) return NULL;
    if (!got) Py_RETURN_NONE;
    return next_result(first, nxt, code); /* first moves */
}

/* read_batch(offset, max_records) -> (records, next_offset, stop status code) */
static PyObject *FastLog_read_batch(FastLog *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "read_batch(offset, max_records)"); return NULL; }
    return batch_objects(self, args, NULL, NULL);
}
