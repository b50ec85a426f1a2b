/* fastlog.c - the per-record hot path of the partition log as METH_FASTCALL
 * methods (shm._fastlog).
 *
 * Why a second module: a cffi call costs ~290 ns here (argument tuple,
 * conversions, GIL release) - nearly the whole budget of a 3 M records/s
 * append.  These two methods cover only the common shapes (append of a
 * bytes value; read of a record without headers) and hand every other
 * call, and every non-OK status, to the cffi-based Python path, which owns
 * validation and the exception funnel.  The C core is the same source,
 * compiled into this translation unit with hidden visibility.
 *
 * GIL: kept for the call, so the fast append never waits: it uses
 * log_try_append_value, which claims nothing where it would have to wait
 * (a full block-mode log, or a slot whose previous lap is still being
 * written - perhaps by a stopped process that only our own main thread
 * would resume).  Then the cffi path, which releases the GIL, does it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>

#include "shmlog.c"
#include "shmlat.h"
/* the work queue's C (WorkQueue.take_fast), in this unit too; its static
 * helpers share names with the log's */
#define lap_of q_lap_of
#define lap_diff q_lap_diff
#undef LAP_BITS
#undef LAP_MASK
#undef OWNER_BITS
#undef OWNER_MASK
#define SHMQUEUE_AFTER_SHMLOG
#include "shmqueue.c"
#undef lap_of
#undef lap_diff

static PyObject *str_timestamp_ns; /* interned "timestamp_ns" */
static PyObject *str_extend;       /* interned "extend" */

typedef struct {
    PyObject_HEAD
    log_view *v;          /* NULL once invalidated (the log was closed) */
    PyObject *record_type; /* a tuple subclass: (offset, value, key, headers, timestamp_ns) */
    PyObject *append_slow;
    PyObject *read_slow;
    PyObject *status_slow; /* (rc, offset) -> the status object of a read that was not LOG_OK */
    PyObject *decode_headers;
    char *buf;             /* one record */
    uint64_t cap;
    char *bbuf;            /* a batch of records */
    uint64_t bcap;
    log_rec *recs;
    uint64_t nrecs;
    int busy;              /* recs / bbuf hold a batch being turned into objects (batch_bufs) */
    /* shm.latency.histogram: the slot this consumer's reads count into
     * (ext/shmlat.h), NULL when off; lat_view holds the segment's mapping
     * exported (it cannot be unmapped while we point into it) */
    volatile uint64_t *lat;
    Py_buffer lat_view;
    /* the int of the last timestamp handed out: a batch appended in one call
     * shares one timestamp, so its records share one int object */
    PyObject *ts_obj;
    int64_t ts_val;
    /* shm.zero.copy: a read-only memoryview of the whole mapping (a block
     * log's), whose slices the Messages made here hand out as values; NULL:
     * values are bytes */
    PyObject *view_base;
    int view_check; /* check.crcs: each view's value checksummed where it lies when handed out */
} FastLog;

static void lat_release(FastLog *self)
{
    if (self->lat) {
        self->lat = NULL;
        PyBuffer_Release(&self->lat_view);
    }
}

/* The produce->poll latency of a record stamped ts (ns), into the slot.
 * Records carry CLOCK_REALTIME stamps (shmlog.c's wall_ns(): Kafka's
 * CreateTime, also what time.time_ns() gives a producer), so "now" must be
 * the same clock: a monotonic "now" minus a wall-clock stamp means nothing.
 * A wall-clock step can make one latency negative or huge; lat_record
 * clamps such values and counts them apart. */
/* A record's timestamp (an int of ns) as a C integer; -1 with an exception
 * set if it is not one.  PyLong_AsLong where long is 64-bit: CPython's
 * PyLong_AsLongLong goes through a byte-array conversion for multi-digit
 * ints (every ns timestamp), twice as slow. */
#if LONG_MAX == LLONG_MAX
#define lat_stamp(o) ((long long)PyLong_AsLong(o))
#else
#define lat_stamp(o) PyLong_AsLongLong(o)
#endif

static inline void lat_count(FastLog *self, long long ts)
{
    lat_record(self->lat, wall_ns() - (int64_t)ts);
}

static int FastLog_init(FastLog *self, PyObject *args, PyObject *kw)
{
    unsigned long long addr, cap;
    PyObject *rt, *as, *rs, *dh, *ss;
    if (!PyArg_ParseTuple(args, "KKOOOOO", &addr, &cap, &rt, &as, &rs, &dh, &ss)) return -1;
    if (!PyType_Check(rt) || !PyType_IsSubtype((PyTypeObject *)rt, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "record_type must be a tuple subclass");
        return -1;
    }
    /* the buffers first, with no Python code between the check and the
     * frees (the references dropped below may run some): never freed
     * under a batch being read */
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "FastLog re-initialised while one of its batches is being read");
        return -1;
    }
    uint64_t bcap = cap > (1u << 20) ? cap : (1u << 20);
    char *buf = malloc(cap ? cap : 1), *bbuf = malloc(bcap);
    if (!buf || !bbuf) {
        free(buf);
        free(bbuf);
        PyErr_NoMemory();
        return -1;
    }
    free(self->buf);
    free(self->bbuf);
    self->buf = buf;
    self->cap = cap;
    self->bbuf = bbuf;
    self->bcap = bcap;
    self->v = (log_view *)(uintptr_t)addr;
    Py_INCREF(rt); Py_XSETREF(self->record_type, rt);
    Py_INCREF(as); Py_XSETREF(self->append_slow, as);
    Py_INCREF(rs); Py_XSETREF(self->read_slow, rs);
    Py_INCREF(ss); Py_XSETREF(self->status_slow, ss);
    Py_INCREF(dh); Py_XSETREF(self->decode_headers, dh);
    return 0;
}

static void FastLog_dealloc(FastLog *self)
{
    Py_XDECREF(self->record_type);
    Py_XDECREF(self->append_slow);
    Py_XDECREF(self->read_slow);
    Py_XDECREF(self->status_slow);
    Py_XDECREF(self->decode_headers);
    free(self->buf);
    free(self->bbuf);
    free(self->recs);
    lat_release(self);
    Py_XDECREF(self->ts_obj);
    Py_XDECREF(self->view_base);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* append(value, key=None, headers=None, timestamp_ns=None) -> offset */
static PyObject *FastLog_append(FastLog *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (self->v && nargs == 1 && PyBytes_CheckExact(args[0])) {
        long long ts = 0;
        if (kwnames) {
            /* the one keyword the fast path takes: timestamp_ns=<int> */
            PyObject *kw = PyTuple_GET_SIZE(kwnames) == 1 ? PyTuple_GET_ITEM(kwnames, 0) : NULL;
            /* keyword names from call sites are interned: identity first */
            if (!kw || !PyLong_CheckExact(args[1]) ||
                (kw != str_timestamp_ns && (!PyUnicode_Check(kw) ||
                                            PyUnicode_CompareWithASCIIString(kw, "timestamp_ns") != 0)))
                goto slow;
            ts = PyLong_AsLongLong(args[1]);
            if (ts == -1 && PyErr_Occurred()) { PyErr_Clear(); goto slow; }
        }
        int64_t r = log_try_append_value(self->v, PyBytes_AS_STRING(args[0]), (uint64_t)PyBytes_GET_SIZE(args[0]), ts);
        if (r >= 0) return PyLong_FromLongLong(r);
    }
slow:
    return PyObject_Vectorcall(self->append_slow, args, nargs, kwnames);
}

/* The int of timestamp ts, a new reference: the last one's again when equal. */
static PyObject *ts_object(FastLog *self, int64_t ts)
{
    if (!self->ts_obj || self->ts_val != ts) {
        PyObject *x = PyLong_FromLongLong(ts);
        if (!x) return NULL;
        Py_XSETREF(self->ts_obj, x); /* our reference moves into the cache */
        self->ts_val = ts;
    }
    Py_INCREF(self->ts_obj);
    return self->ts_obj;
}

/* The Python objects of rec, whose parts sit at base (key, headers,
 * value): out = {offset, value, key, headers, ts}, new references; offset_obj
 * is the caller's int for rec->offset, reused if given.  0, or -1 with an
 * exception set and nothing left allocated. */
static int record_items(FastLog *self, const log_rec *rec, const char *base, PyObject *offset_obj, PyObject **out,
                        PyObject *value)
{
    PyObject *x;
    /* read before decode_headers runs Python code (kept so: rec points into
     * a batch's buffers, which the code may not touch - batch_bufs) */
    int64_t ts = rec->timestamp_ns;
    memset(out, 0, 5 * sizeof *out);
    out[1] = value; /* a value read straight into its object (a reference we own), or NULL */
    if (offset_obj) { x = offset_obj; Py_INCREF(x); }
    else if (!(x = PyLong_FromUnsignedLongLong(rec->offset))) goto fail;
    out[0] = x;
    if (value) x = value;
    else if (rec->flags & LOG_FLAG_VALUE_NULL) { x = Py_None; Py_INCREF(x); }
    else if (!(x = PyBytes_FromStringAndSize(base + rec->key_len + rec->hdr_len, rec->val_len))) goto fail;
    out[1] = x;
    if (rec->flags & LOG_FLAG_KEY_NULL) { x = Py_None; Py_INCREF(x); }
    else if (!(x = PyBytes_FromStringAndSize(base, rec->key_len))) goto fail;
    out[2] = x;
    if (rec->hdr_len) {
        PyObject *blob = PyBytes_FromStringAndSize(base + rec->key_len, rec->hdr_len);
        if (!blob) goto fail;
        x = PyObject_CallOneArg(self->decode_headers, blob);
        Py_DECREF(blob);
        if (!x) goto fail;
    } else { x = Py_None; Py_INCREF(x); }
    out[3] = x;
    if (!(x = ts_object(self, ts))) goto fail;
    out[4] = x;
    return 0;
fail:
    for (int i = 0; i < 5; i++) Py_XDECREF(out[i]);
    return -1;
}

/* Build a Record tuple (offset, value, key, headers, ts) for rec. */
static PyObject *make_record_v(FastLog *self, const log_rec *rec, const char *base, PyObject *offset_obj,
                               PyObject *value)
{
    /* allocate the tuple-subclass instance directly (what tuple.__new__ does
     * for a subclass), so no temporary tuples and no Python code */
    PyTypeObject *tp = (PyTypeObject *)self->record_type;
    PyObject *items[5];
    if (record_items(self, rec, base, offset_obj, items, value) < 0) return NULL;
    PyObject *t = tp->tp_alloc(tp, 5);
    if (!t) { for (int i = 0; i < 5; i++) Py_DECREF(items[i]); return NULL; }
    for (int i = 0; i < 5; i++) PyTuple_SET_ITEM(t, i, items[i]); /* references move */
    return t;
}

static PyObject *make_record(FastLog *self, const log_rec *rec, const char *base, PyObject *offset_obj)
{
    return make_record_v(self, rec, base, offset_obj, NULL);
}

/* A read's status (NotYet, Lapped, Skipped) from the code it returned: not
 * read again by the slow path, which would count a lap or a corrupt record
 * twice.  Errors (< 0) go to the slow path, which raises them. */
static PyObject *not_ok(FastLog *self, int rc, PyObject *offset)
{
    return PyObject_CallFunction(self->status_slow, "iO", rc, offset);
}

#define DIRECT_MIN 4096 /* values this long are copied once, straight into their bytes object */

/* Offset o's value, if it is long (>= DIRECT_MIN), read once straight into
 * its bytes object (key and headers into self->buf): LOG_OK with *val a new
 * reference; LOG_E_BUFFER if the value is not long, or changed size under us
 * (a lap) - read it the usual way; INT_MIN with an exception set; else the
 * read's status or error code (counted by the read). */
static int read_long_value(FastLog *self, unsigned long long o, log_rec *rec, PyObject **val)
{
    int64_t hint = log_value_len_hint(self->v, o);
    if (hint < DIRECT_MIN) return LOG_E_BUFFER;
    PyObject *x = PyBytes_FromStringAndSize(NULL, hint);
    if (!x) return INT_MIN;
    int rc = log_read_value_into(self->v, o, rec, self->buf, self->cap, PyBytes_AS_STRING(x), (uint64_t)hint);
    if (rc == LOG_OK) *val = x;
    else Py_DECREF(x);
    return rc;
}

/* The value log_read_value_view found at byte at of the mapping as a slice
 * of base (a read-only memoryview of the whole mapping): LOG_OK with *out
 * set, or INT_MIN with an exception set. */
static int view_slice(PyObject *base, uint64_t at, const log_rec *rec, PyObject **out)
{
    uint64_t len = (rec->flags & LOG_FLAG_VALUE_NULL) ? 0 : rec->val_len;
    /* at + len lies inside the mapping: the read checked the value against the ring's bounds */
    PyObject *a = PyLong_FromUnsignedLongLong(at), *b = a ? PyLong_FromUnsignedLongLong(at + len) : NULL;
    PyObject *sl = b ? PySlice_New(a, b, NULL) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    if (!sl) return INT_MIN;
    *out = PyObject_GetItem(base, sl);
    Py_DECREF(sl);
    return *out ? LOG_OK : INT_MIN;
}

/* read_long_value for shm.zero.copy: the value a read-only memoryview of
 * its bytes in the ring (view_base's slice), checksummed there if view_check - or of a copy
 * where it wraps the ring's end or the floor has passed it (producers may
 * reuse its bytes). */
static int read_long_view(FastLog *self, unsigned long long o, log_rec *rec, PyObject **val)
{
    if (log_value_len_hint(self->v, o) < DIRECT_MIN) return LOG_E_BUFFER;
    uint64_t at = 0;
    int rc = log_read_value_view(self->v, o, rec, self->buf, self->cap, &at, self->view_check);
    if (rc == LOG_E_BUFFER) {
        PyObject *b = NULL;
        rc = read_long_value(self, o, rec, &b);
        if (rc != LOG_OK) return rc;
        *val = PyMemoryView_FromObject(b);
        Py_DECREF(b);
        return *val ? LOG_OK : INT_MIN;
    }
    if (rc != LOG_OK) return rc;
    return view_slice(self->view_base, at, rec, val);
}

/* One read of offset o into *rec: the Record (NULL, *rc = LOG_OK, on an
 * error set), or NULL with *rc the status or error code. */
static PyObject *read_record(FastLog *self, unsigned long long o, PyObject *offset_obj, int *rc, log_rec *rec)
{
    PyObject *val;
    *rc = read_long_value(self, o, rec, &val);
    if (*rc == LOG_OK) return make_record_v(self, rec, self->buf, offset_obj, val); /* val's reference moves */
    if (*rc == INT_MIN) { *rc = LOG_OK; return NULL; }
    if (*rc != LOG_E_BUFFER) return NULL;
    *rc = log_read(self->v, o, rec, self->buf, self->cap);
    return *rc == LOG_OK ? make_record(self, rec, self->buf, offset_obj) : NULL;
}

/* read(offset) -> Record, or whatever the slow path returns for a status */

static PyObject *FastLog_read(FastLog *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (self->v && nargs == 1 && !kwnames && PyLong_CheckExact(args[0])) {
        unsigned long long o = PyLong_AsUnsignedLongLong(args[0]);
        if (o == (unsigned long long)-1 && PyErr_Occurred()) PyErr_Clear();
        else {
            int rc;
            log_rec rec;
            PyObject *r = read_record(self, o, args[0], &rc, &rec);
            if (r || rc == LOG_OK) return r;
            if (rc > 0) return not_ok(self, rc, args[0]);
        }
    }
    return PyObject_Vectorcall(self->read_slow, args, nargs, kwnames);
}

/* poll(offset, spin_ns) -> Record, a status (slow path), or None if the
 * offset did not become readable within spin_ns.  Spins holding the GIL, so
 * callers keep spin_ns short (the Python side uses <= 1 ms chunks). */
static PyObject *FastLog_poll(FastLog *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyLong_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "poll(offset: int, spin_ns: int)");
        return NULL;
    }
    if (!self->v) return PyObject_Vectorcall(self->read_slow, args, 1, NULL);
    unsigned long long o = PyLong_AsUnsignedLongLong(args[0]);
    if (PyErr_Occurred()) return NULL;
    long long spin = PyLong_AsLongLong(args[1]);
    if (spin == -1 && PyErr_Occurred()) return NULL;
    if (spin < 0) spin = 0; /* never an endless spin holding the GIL */
    /* the core's wait, spinning only: it never sleeps while we hold the GIL */
    if (log_wait(self->v, o, spin, LOG_WAIT_SPIN, 0) != LOG_OK) Py_RETURN_NONE;
    int rc;
    log_rec rec;
    PyObject *r = read_record(self, o, args[0], &rc, &rec);
    if (r || rc == LOG_OK) return r;
    if (rc > 0) return not_ok(self, rc, args[0]);
    return PyObject_Vectorcall(self->read_slow, args, 1, NULL);
}

#include "fastfetch.c"

static PyObject *FastLog_invalidate(FastLog *self, PyObject *unused)
{
    self->v = NULL;
    Py_CLEAR(self->view_base);
    lat_release(self);
    Py_RETURN_NONE;
}

/* set_latency(buffer, offset): count the latency of every record this
 * view hands out (next_message, LatQueue.popleft, lat_record) into the
 * LAT_SLOT_BYTES slot at offset of buffer (a writable mapping of the
 * group's latency segment); set_latency(None) stops.  The buffer stays
 * exported until then (or invalidate, or our end). */
static PyObject *FastLog_set_latency(FastLog *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 1 && args[0] == Py_None) {
        lat_release(self);
        Py_RETURN_NONE;
    }
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_latency(buffer, offset) or set_latency(None)");
        return NULL;
    }
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    if (off == -1 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    /* the slot must lie inside the mapping, 8-byte aligned: the offset comes
     * from a table in shared memory, so it is checked here, not trusted */
    if (off < 0 || off % 8 || ((uintptr_t)view.buf) % 8 || view.len < (Py_ssize_t)LAT_SLOT_BYTES ||
        off > view.len - (Py_ssize_t)LAT_SLOT_BYTES) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "latency slot at offset %zd does not fit the %zd-byte segment", off, view.len);
        return NULL;
    }
    if (!self->v) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "log closed");
        return NULL;
    }
    lat_release(self);
    self->lat_view = view;
    self->lat = (volatile uint64_t *)((char *)view.buf + off);
    Py_RETURN_NONE;
}

/* lat_record(timestamp_ns): count the latency of a record stamped
 * timestamp_ns (wall clock) handed out now - the Python paths' call; a
 * no-op while no slot is set. */
static PyObject *FastLog_lat_record(FastLog *self, PyObject *ts_obj)
{
    long long ts = lat_stamp(ts_obj);
    if (ts == -1 && PyErr_Occurred()) return NULL;
    if (self->lat) lat_count(self, ts);
    Py_RETURN_NONE;
}

/* qtake(q_addr, owner, ack_off, ack_owner): a work queue getter's step
 * (shm/workqueue.py take_fast): ack ack_off (none if < 0) for ack_owner,
 * then take the next item for owner, keeping the GIL (neither waits).
 * -> (offset, bytearray value, attempts), or the take's status (an int < 0,
 * LOG_E_WOULD_BLOCK when there is nothing), the ack done either way (its
 * own status does not matter to the caller: it fuses only items with
 * nothing to clean up); None when nothing was done (the log is closed). */
static PyObject *FastLog_qtake(FastLog *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "qtake(q_addr, owner, ack_off, ack_owner)");
        return NULL;
    }
    unsigned long long qa = PyLong_AsUnsignedLongLong(args[0]);
    unsigned long owner = PyLong_AsUnsignedLong(args[1]);
    long long ack_off = PyLong_AsLongLong(args[2]);
    unsigned long ack_owner = PyLong_AsUnsignedLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (!self->v || !qa) Py_RETURN_NONE;
    if (owner > UINT32_MAX || ack_owner > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "owner tokens are 32-bit");
        return NULL;
    }
    log_rec rec;
    uint32_t attempts = 0;
    uint64_t wait_at = 0;
    int ack_rc = LOG_OK;
    int64_t r = q_ack_take((q_view *)(uintptr_t)qa, self->v, ack_off, (uint32_t)ack_owner, (uint32_t)owner, &rec,
                           self->buf, self->cap, &attempts, &wait_at, &ack_rc);
    if (r < 0) return PyLong_FromLongLong(r);
    if (rec.val_len > self->cap || rec.key_len + rec.hdr_len > self->cap - rec.val_len) {
        PyErr_SetString(PyExc_ValueError, "qtake: record larger than the read buffer");
        return NULL;
    }
    PyObject *val = PyByteArray_FromStringAndSize(self->buf + rec.key_len + rec.hdr_len, (Py_ssize_t)rec.val_len);
    if (!val) return NULL;
    return Py_BuildValue("(LNk)", (long long)r, val, (unsigned long)attempts);
}

/* set_floor(offset) -> status: log_set_floor keeping the GIL.  cffi drops
 * the GIL around every call; a thread that drops it once per batch while
 * another thread of the process runs Python waits for it back (up to the
 * switch interval): the pool's result thread beside a submitting thread. */
static PyObject *FastLog_set_floor(FastLog *self, PyObject *arg)
{
    unsigned long long off = PyLong_AsUnsignedLongLong(arg);
    if (off == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    if (!self->v) Py_RETURN_NONE;
    return PyLong_FromLong(log_set_floor(self->v, (uint64_t)off));
}

/* set_view_base(memoryview or None, check=False): shm.zero.copy - the
 * Messages made here hand out values as read-only memoryviews (slices of
 * this one, a read-only view of the whole mapping of a block log) or bytes
 * (None); check (check.crcs): each view's value is checksummed where it
 * lies when handed out. */
static PyObject *FastLog_set_view_base(FastLog *self, PyObject *args)
{
    PyObject *arg;
    int check = 0;
    if (!PyArg_ParseTuple(args, "O|p:set_view_base", &arg, &check)) return NULL;
    if (arg != Py_None && !(PyMemoryView_Check(arg) && PyMemoryView_GET_BUFFER(arg)->readonly)) {
        PyErr_SetString(PyExc_TypeError, "view_base must be a read-only memoryview of the log's mapping or None");
        return NULL;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "set_view_base while a batch is being read");
        return NULL;
    }
    Py_XSETREF(self->view_base, arg == Py_None ? NULL : Py_NewRef(arg));
    self->view_check = check;
    Py_RETURN_NONE;
}

static PyMethodDef FastLog_methods[] = {
    {"set_view_base", (PyCFunction)FastLog_set_view_base, METH_VARARGS,
     "set_view_base(memoryview or None, check=False): Messages' values as views of the mapping (shm.zero.copy), "
     "or bytes; check: each view's value checksummed when handed out (check.crcs)"},
    {"set_floor", (PyCFunction)FastLog_set_floor, METH_O, "set_floor(offset) -> status, or None (closed)"},
    {"qtake", (PyCFunction)(void (*)(void))FastLog_qtake, METH_FASTCALL,
     "qtake(q_addr, owner, ack_off, ack_owner) -> (offset, value, attempts), status, or None"},
    {"append", (PyCFunction)(void (*)(void))FastLog_append, METH_FASTCALL | METH_KEYWORDS,
     "append(value, key=None, headers=None, timestamp_ns=None) -> offset"},
    {"read", (PyCFunction)(void (*)(void))FastLog_read, METH_FASTCALL | METH_KEYWORDS, "read(offset) -> Record or status"},
    {"poll", (PyCFunction)(void (*)(void))FastLog_poll, METH_FASTCALL,
     "poll(offset, spin_ns) -> Record, status, or None"},
    {"next_message", (PyCFunction)(void (*)(void))FastLog_next_message, METH_FASTCALL,
     "next_message(offset, spin_ns, max_records, topic, partition, buf) -> None or (Message or None, next_offset, "
     "stop status code)"},
    {"read_batch", (PyCFunction)(void (*)(void))FastLog_read_batch, METH_FASTCALL,
     "read_batch(offset, max_records) -> (records or None, next_offset, stop status)"},
    {"read_messages", (PyCFunction)(void (*)(void))FastLog_read_messages, METH_FASTCALL,
     "read_messages(offset, max_records, topic, partition) -> (Messages or None, next_offset, stop status)"},
    {"invalidate", (PyCFunction)FastLog_invalidate, METH_NOARGS, "stop using the view (the log was closed)"},
    {"set_latency", (PyCFunction)(void (*)(void))FastLog_set_latency, METH_FASTCALL,
     "set_latency(buffer, offset) or set_latency(None): shm.latency.histogram's slot"},
    {"lat_record", (PyCFunction)FastLog_lat_record, METH_O,
     "lat_record(timestamp_ns): count one record's produce->poll latency, handed out now"},
    {NULL},
};

static PyTypeObject FastLogType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastlog.FastLog",
    .tp_basicsize = sizeof(FastLog),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "per-record fast path over one attached log_view",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastLog_init,
    .tp_dealloc = (destructor)FastLog_dealloc,
    .tp_methods = FastLog_methods,
};

#include "fastlat.c"

#include "fastproduce.c"

#include "fastreader.c"

#include "fastmsg.c"

#include "fastpart.c"

#include "fastpoll.c"

static PyObject *build_id(PyObject *m, PyObject *unused) { return PyUnicode_FromString(log_build_id()); }

/* spin_until(due_ns) -> CLOCK_MONOTONIC ns when it returned (>= due_ns):
 * a paced producer's last microseconds before a record is due, spun in C
 * (a Python loop of clock() calls returns a loop's length late on average
 * and churns the caches).  Holds the GIL, as that loop did; signals are
 * checked every millisecond. */
static PyObject *spin_until(PyObject *m, PyObject *arg)
{
    long long due = PyLong_AsLongLong(arg);
    if (due == -1 && PyErr_Occurred()) return NULL;
    int64_t t = now_ns(), check = t + 1000000;
    while (t < due) {
        cpu_relax();
        t = now_ns();
        if (t >= check) {
            if (PyErr_CheckSignals() < 0) return NULL;
            check = t + 1000000;
        }
    }
    return PyLong_FromLongLong(t);
}

#include "fastqueue.c"

static PyMethodDef module_methods[] = {
    {"build_id", build_id, METH_NOARGS, "the build id compiled in"},
    {"set_message_type", set_message_type, METH_O, "register the broker's Message type (a tuple subclass)"},
    {"set_overrides", (PyCFunction)(void (*)(void))set_overrides, METH_FASTCALL,
     "set_overrides(message, dict): hang the set_* overrides on a Message (its item 9)"},
    {"lat_layout", lat_layout, METH_NOARGS, "the latency histogram slot's layout (ext/shmlat.h)"},
    {"lat_index", py_lat_index, METH_O, "lat_index(ns) -> the latency counts index of ns"},
    {"lat_lowest", py_lat_lowest, METH_O, "lat_lowest(index) -> the lowest ns counted at index"},
    {"spin_until", spin_until, METH_O, "spin_until(due_ns) -> CLOCK_MONOTONIC ns at return (>= due_ns)"},
    {NULL},
};

static struct PyModuleDef fastlog_module = {
    PyModuleDef_HEAD_INIT, "shm._fastlog", "per-record fast path of the partition log", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastlog(void)
{
    if (!str_partition && !(str_partition = PyUnicode_InternFromString("partition"))) return NULL;
    if (!str_timestamp_ns && !(str_timestamp_ns = PyUnicode_InternFromString("timestamp_ns"))) return NULL;
    if (!str_extend && !(str_extend = PyUnicode_InternFromString("extend"))) return NULL;
    PyObject *m = PyModule_Create(&fastlog_module);
    if (!m) return NULL;
    /* PyModule_AddType: PyType_Ready, then the type under its tp_name's last part */
    if (PyModule_AddType(m, &FastLogType) < 0 || PyModule_AddType(m, &ProduceType) < 0 ||
        PyModule_AddType(m, &ReaderType) < 0 || msgbase_ready(m) < 0 || fastpoll_ready(m) < 0 || latqueue_ready(m) < 0 ||
        fastqueue_ready(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
