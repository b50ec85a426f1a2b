/* fastreader.c - LogReader, a cursor over one partition log (shm._fastlog;
 * compiled into fastlog.c's unit, after FastLog).
 *
 * PartitionLog.reader() makes one.  It keeps its position in C and waits
 * in C, so a record that arrives is read and handed out without a Python
 * frame in between: poll() -> Record, poll_value() -> the value's bytes.
 * As Aeron's subscription image and a Kafka consumer with
 * auto.offset.reset=earliest, it goes on by itself past what it cannot
 * read: a tombstone or a corrupt record is skipped (counted in `skipped`;
 * the log counts it too), and if the producers lapped it, it moves up to
 * the oldest record still held (the records it missed are counted in
 * `lost`).  floor_every > 0 moves a block-mode log's floor to the
 * position every that many records, so producers reuse the space.
 *
 * Waits: "spin" spins holding the GIL in <= 1 ms chunks (signals are
 * checked and other threads run between chunks); "adaptive" spins spin_ns
 * then sleeps; "sleep" sleeps at once.  Sleeping is the Python log's own
 * wait (wait_fn: it releases the GIL and sleeps on the futex in chunks),
 * called with the time left. */

#define READER_CHUNK_NS 1000000LL /* a spin holding the GIL lasts at most this long */

typedef struct {
    PyObject_HEAD
    FastLog *fl;
    PyObject *wait_fn;   /* wait_fn(offset, timeout_s or None) -> bool: sleeps until offset is readable */
    PyObject *closed_fn; /* closed_fn(): raises the log's "closed" error */
    PyObject *idle_fn;   /* idle_fn(): between spin chunks with nothing (the log's on_wait, as its poll() calls) */
    PyObject *view_base; /* a read-only memoryview of the whole mapping (block-mode logs), or None: poll_view's slices */
    int view_check;      /* check_crcs: poll_view checksums each value where it lies */
    uint64_t pos;
    uint64_t floor_every, since_floor;
    uint64_t lost, skipped;
    int64_t spin_ns;     /* how long to spin before sleeping (INT64_MAX: spin only) */
} Reader;

/* The value of the record at pos as bytes (a null value as b""), read once
 * (long values straight into their object): LOG_OK with *out set; a read
 * status; INT_MIN with an exception set. */
static int reader_read_value(Reader *r, log_rec *rec, PyObject **out)
{
    FastLog *fl = r->fl;
    int rc = read_long_value(fl, r->pos, rec, out);
    if (rc != LOG_E_BUFFER) return rc;
    rc = log_read(fl->v, r->pos, rec, fl->buf, fl->cap);
    if (rc != LOG_OK) return rc;
    /* bounded by the read: key_len + hdr_len + val_len <= cap (log_read checked them against the buffer) */
    *out = PyBytes_FromStringAndSize(fl->buf + rec->key_len + rec->hdr_len,
                                     (rec->flags & LOG_FLAG_VALUE_NULL) ? 0 : rec->val_len);
    return *out ? LOG_OK : INT_MIN;
}

/* The value of the record at pos as a read-only memoryview of its bytes in
 * the ring, not copied (checksummed there if view_check) (a copy's memoryview where the
 * value wraps the ring's end, or where the log's floor is already past it,
 * so that producers may reuse its bytes): LOG_OK with *out set; a read
 * status; INT_MIN with an exception set. */
static int reader_read_view(Reader *r, log_rec *rec, PyObject **out)
{
    FastLog *fl = r->fl;
    uint64_t at = 0;
    /* in place only while the floor is at or below pos (checked there); a
     * floor only rises, so no producer may reuse the record's bytes until it
     * rises past pos - our next poll moves it */
    int rc = log_read_value_view(fl->v, r->pos, rec, fl->buf, fl->cap, &at, r->view_check);
    if (rc == LOG_E_BUFFER) {
        PyObject *b = NULL;
        rc = reader_read_value(r, rec, &b);
        if (rc != LOG_OK) return rc;
        *out = PyMemoryView_FromObject(b);
        Py_DECREF(b);
        return *out ? LOG_OK : INT_MIN;
    }
    if (rc != LOG_OK) return rc;
    return view_slice(r->view_base, at, rec, out);
}

static int reader_read_record(Reader *r, log_rec *rec, PyObject **out)
{
    int rc;
    *out = read_record(r->fl, r->pos, NULL, &rc, rec);
    return *out ? LOG_OK : rc == LOG_OK ? INT_MIN : rc;
}

enum { READ_RECORD, READ_VALUE, READ_VIEW };

/* The next record (READ_VALUE: its value's bytes; READ_VIEW: a view of
 * them) within timeout_ns (< 0: no limit); None on timeout; NULL with an
 * exception set. */
static PyObject *reader_next(Reader *r, int64_t timeout_ns, int what)
{
    int64_t start = -1, deadline = -1;
    for (;;) {
        FastLog *fl = r->fl;
        if (!fl->v) {
            PyObject *x = PyObject_CallNoArgs(r->closed_fn);
            Py_XDECREF(x);
            if (x) PyErr_SetString(PyExc_RuntimeError, "the log was closed");
            return NULL;
        }
        log_rec rec;
        PyObject *out = NULL;
        int rc = what == READ_VALUE  ? reader_read_value(r, &rec, &out)
                 : what == READ_VIEW ? reader_read_view(r, &rec, &out)
                                     : reader_read_record(r, &rec, &out);
        if (rc == LOG_OK) {
            if (fl->lat) lat_count(fl, rec.timestamp_ns); /* shm.latency.histogram: handed out now */
            r->pos++;
            if (r->floor_every && ++r->since_floor >= r->floor_every) {
                r->since_floor = 0;
                /* a floor behind a newer one is ignored by the log; a view's
                 * record stays below none until the next poll */
                log_set_floor(fl->v, what == READ_VIEW ? r->pos - 1 : r->pos);
            }
            return out;
        }
        if (rc == INT_MIN) return NULL;
        if (rc == LOG_TOMBSTONE || rc == LOG_CORRUPT_RECORD) {
            r->skipped++;
            r->pos++;
            continue;
        }
        if (rc == LOG_LAPPED) {
            uint64_t lo = 0, hi = 0;
            if (log_watermarks(fl->v, &lo, &hi) != LOG_OK || lo <= r->pos) lo = r->pos + 1;
            r->lost += lo - r->pos;
            r->pos = lo;
            continue;
        }
        if (rc != LOG_NOT_YET) { /* an error: the Python read raises it */
            PyObject *pos = PyLong_FromUnsignedLongLong(r->pos), *x = NULL;
            if (pos) x = PyObject_CallOneArg(fl->read_slow, pos);
            Py_XDECREF(pos);
            if (x) {
                Py_DECREF(x);
                PyErr_Format(PyExc_RuntimeError, "reading offset %llu failed (code %d)", (unsigned long long)r->pos, rc);
            }
            return NULL;
        }
        /* nothing there yet: wait */
        int64_t now = now_ns();
        if (start < 0) {
            start = now;
            if (timeout_ns >= 0) deadline = now + timeout_ns;
        }
        if (deadline >= 0 && now >= deadline) Py_RETURN_NONE;
        int64_t spun = now - start;
        if (spun < r->spin_ns) {
            int64_t chunk = r->spin_ns - spun;
            if (chunk > READER_CHUNK_NS) chunk = READER_CHUNK_NS;
            if (deadline >= 0 && chunk > deadline - now) chunk = deadline - now;
            if (log_wait(fl->v, r->pos, chunk, LOG_WAIT_SPIN, 0) == LOG_OK) continue;
            if (PyErr_CheckSignals() < 0) return NULL;
            PyObject *x = PyObject_CallNoArgs(r->idle_fn);
            if (!x) return NULL;
            Py_DECREF(x);
            Py_BEGIN_ALLOW_THREADS /* a whole chunk went by: let the process's other threads run */
            Py_END_ALLOW_THREADS
            continue;
        }
        PyObject *left = deadline < 0 ? (Py_INCREF(Py_None), Py_None) : PyFloat_FromDouble((double)(deadline - now) / 1e9);
        PyObject *pos = left ? PyLong_FromUnsignedLongLong(r->pos) : NULL;
        PyObject *ok = pos ? PyObject_CallFunctionObjArgs(r->wait_fn, pos, left, NULL) : NULL;
        Py_XDECREF(left);
        Py_XDECREF(pos);
        if (!ok) return NULL;
        int t = PyObject_IsTrue(ok);
        Py_DECREF(ok);
        if (t < 0) return NULL;
        if (!t) Py_RETURN_NONE;
    }
}

/* timeout (seconds, None or < 0: no limit) -> ns, or -2 with an exception set */
static int64_t reader_timeout(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "poll(timeout=None) takes at most one argument");
        return -2;
    }
    if (nargs == 0 || args[0] == Py_None) return -1;
    double t = PyFloat_AsDouble(args[0]);
    if (t == -1.0 && PyErr_Occurred()) return -2;
    if (t != t) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a number of seconds, got nan");
        return -2;
    }
    if (t < 0) return -1;
    return t > 9e9 ? INT64_MAX / 2 : (int64_t)(t * 1e9);
}

static int reader_ready(Reader *r)
{
    if (r->fl) return 1;
    PyErr_SetString(PyExc_ValueError, "LogReader not initialised: make one with PartitionLog.reader()");
    return 0;
}

static PyObject *Reader_poll(Reader *r, PyObject *const *args, Py_ssize_t nargs)
{
    if (!reader_ready(r)) return NULL;
    int64_t t = reader_timeout(args, nargs);
    return t == -2 ? NULL : reader_next(r, t, READ_RECORD);
}

static PyObject *Reader_poll_value(Reader *r, PyObject *const *args, Py_ssize_t nargs)
{
    if (!reader_ready(r)) return NULL;
    int64_t t = reader_timeout(args, nargs);
    return t == -2 ? NULL : reader_next(r, t, READ_VALUE);
}

static PyObject *Reader_poll_view(Reader *r, PyObject *const *args, Py_ssize_t nargs)
{
    if (!reader_ready(r)) return NULL;
    if (r->view_base == Py_None) {
        PyErr_SetString(PyExc_ValueError,
                        "poll_view() needs a log made with overflow='block': in an 'overwrite' log producers may "
                        "overwrite a record while you hold its view (use poll_value(), which copies)");
        return NULL;
    }
    int64_t t = reader_timeout(args, nargs);
    return t == -2 ? NULL : reader_next(r, t, READ_VIEW);
}

static int Reader_init(Reader *r, PyObject *args, PyObject *kw)
{
    PyObject *fl, *wf, *cf, *idle, *base = Py_None;
    unsigned long long pos, every;
    long long spin;
    int check = 0;
    if (!PyArg_ParseTuple(args, "O!KLKOOO|Op", &FastLogType, &fl, &pos, &spin, &every, &wf, &cf, &idle, &base,
                          &check))
        return -1;
    if (base != Py_None && !PyMemoryView_Check(base)) {
        PyErr_SetString(PyExc_TypeError, "view_base must be a memoryview of the log's mapping or None");
        return -1;
    }
    Py_INCREF(base); Py_XSETREF(r->view_base, base);
    r->view_check = check;
    Py_INCREF(fl); Py_XSETREF(r->fl, (FastLog *)fl);
    Py_INCREF(wf); Py_XSETREF(r->wait_fn, wf);
    Py_INCREF(cf); Py_XSETREF(r->closed_fn, cf);
    Py_INCREF(idle); Py_XSETREF(r->idle_fn, idle);
    r->pos = pos;
    r->spin_ns = spin < 0 ? INT64_MAX : spin;
    r->floor_every = every;
    r->since_floor = r->lost = r->skipped = 0;
    return 0;
}

static int Reader_traverse(Reader *r, visitproc visit, void *arg)
{
    Py_VISIT(r->fl);
    Py_VISIT(r->wait_fn);
    Py_VISIT(r->closed_fn);
    Py_VISIT(r->idle_fn);
    Py_VISIT(r->view_base);
    return 0;
}

static int Reader_clear(Reader *r)
{
    /* wait_fn and closed_fn hold the PartitionLog: a reader kept on its log is a cycle */
    Py_CLEAR(r->fl);
    Py_CLEAR(r->wait_fn);
    Py_CLEAR(r->closed_fn);
    Py_CLEAR(r->idle_fn);
    Py_CLEAR(r->view_base);
    return 0;
}

static void Reader_dealloc(Reader *r)
{
    PyObject_GC_UnTrack(r);
    Reader_clear(r);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *Reader_get_position(Reader *r, void *unused) { return PyLong_FromUnsignedLongLong(r->pos); }

static int Reader_set_position(Reader *r, PyObject *v, void *unused)
{
    if (!v || !PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "position must be an int offset");
        return -1;
    }
    unsigned long long p = PyLong_AsUnsignedLongLong(v);
    if (p == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "position must be a non-negative offset");
        return -1;
    }
    r->pos = p;
    r->since_floor = 0;
    return 0;
}

static PyObject *Reader_get_lost(Reader *r, void *unused) { return PyLong_FromUnsignedLongLong(r->lost); }
static PyObject *Reader_get_skipped(Reader *r, void *unused) { return PyLong_FromUnsignedLongLong(r->skipped); }

static PyGetSetDef Reader_getset[] = {
    {"position", (getter)Reader_get_position, (setter)Reader_set_position, "the next offset to read (settable: seek)",
     NULL},
    {"lost", (getter)Reader_get_lost, NULL, "records the producers overwrote before this reader got to them", NULL},
    {"skipped", (getter)Reader_get_skipped, NULL, "tombstones and corrupt records passed over", NULL},
    {NULL},
};

static PyMethodDef Reader_methods[] = {
    {"poll", (PyCFunction)(void (*)(void))Reader_poll, METH_FASTCALL,
     "poll(timeout=None) -> the next Record, or None after timeout seconds"},
    {"poll_value", (PyCFunction)(void (*)(void))Reader_poll_value, METH_FASTCALL,
     "poll_value(timeout=None) -> the next record's value (bytes; b'' for a null value), or None after timeout"},
    {"poll_view", (PyCFunction)(void (*)(void))Reader_poll_view, METH_FASTCALL,
     "poll_view(timeout=None) -> the next record's value as a read-only memoryview of its bytes in the log, "
     "valid until this reader's next poll (block-mode logs), or None after timeout"},
    {NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastlog.LogReader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "a cursor over one partition log (PartitionLog.reader)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_methods = Reader_methods,
    .tp_getset = Reader_getset,
};
