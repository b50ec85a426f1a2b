/* fastqueue.c - broker.Queue's put and get of one object, each one C call
 * (shm._fastlog.FastQueue; compiled into fastlog.c's unit, after it).
 *
 * The Python path of a put (pickle, the record header, a lock, the cffi
 * append) and of a get (the cffi take, a bytearray, the header parse,
 * pickle, the held-item bookkeeping) costs several microseconds; here each
 * is a handful of C calls around pickle's own.  Only the common shapes are
 * taken: an object whose pickle has no out-of-band buffers and fits the
 * ring's largest record, a queue nobody in this process waits on, a get by
 * the thread that holds the handle's one item (or none).  Everything else
 * goes back to the Python path (broker/pool/queue.py), which owns waiting,
 * big buffers, errors and exceptions:
 *
 *   put(obj)  -> None (appended) | bytes (the record: the ring is full, the
 *                caller waits with it) | (stream, buffers) (the caller
 *                assembles: buffers or too large) | NotImplemented (not
 *                taken: the Python path does it all)
 *   get()     -> (obj,) | (offset, bytearray value) (taken, held by
 *                nobody yet: the caller decodes it and holds it) | int
 *                (nothing to take: the offset whose record to wait for) |
 *                NotImplemented (not taken: the Python path does it)
 *                (any fused ack was done in every case)
 *   get(wait, mode, spin_ns) -> the same, but when nothing is there it
 *                first waits up to wait seconds (an int or float; at most
 *                FQ_CHUNK_NS, one chunk of the caller's wait)
 *                for a record or a release, GIL released, and tries again:
 *                a blocking get that finds its item within the chunk returns
 *                from this one call (the latency path: no Python between the
 *                record landing and the object returned).
 *
 * The handle's one held item (Held.solo in broker/pool/_qstate.py) lives
 * here, as (thread ident, (offset, token, segments)), so a get can finish
 * it in the same C call that takes the next (q_ack_take).  The GIL guards
 * it: a get never waits and runs Python code only inside pickle, after
 * which it re-checks what it needs.
 *
 * Record format (broker/pool/_serde.py): "<BBHI" magic 0xB5, version 1,
 * number of buffers, pickle length; then the pickle stream.  A bytes
 * object (exactly bytes) that fits is its own item, unpickled: magic 0xB6,
 * version 1, 0, its length; then its bytes.  Values read
 * from the ring are checked against the record's length before use. */

#define FQ_MAGIC 0xB5
#define FQ_VERSION 1
#define FQ_RAW 0xB6 /* the item is a bytes object's bytes (no pickle) */
#define FQ_HDR 8
#define FQ_CHUNK_NS 100000000LL /* a get's wait in C returns this often (queue.py's _CHUNK): Ctrl-C, checks */

typedef struct {
    PyObject_HEAD
    FastLog *fl;          /* the log's fast view (NULL v: closed) */
    q_view *q;            /* the lease view: valid while qkeep lives and fl->v is set */
    PyObject *qkeep;      /* the cffi owner of q */
    uint32_t owner;       /* this process's token in the namespace */
    int ack_on_get;       /* Queue, SimpleQueue: a get finishes the thread's previous item */
    int dead;             /* invalidate()d: every call goes to the Python path */
    int busy;             /* inside pickle: a nested call goes to the Python path */
    PyObject *dumps, *loads, *proto, *kwnames;
    PyObject *bufs;       /* the out-of-band buffers of the pickle in progress */
    PyObject *bufs_append;
    PyObject *put_lock, *held_lock, *held_add;
    PyObject *put_locked, *held_locked; /* the locks' bound locked() methods (one lookup, not one per call) */
    PyObject *empty;      /* () : a solo item's segments */
    PyObject *items;      /* Held.items: the fast get only while it is empty */
    PyObject *users;      /* the log's _users list: an entry while we wait in C (PartitionLog._pin) */
    PyObject *idle_release; /* the log's _release_if_idle: after a wait that saw the log closing */
    PyObject *solo;       /* (thread ident, (offset, token, segments)) or NULL */
    char *scratch;        /* header + stream of a put */
    uint64_t scap;
    uint64_t max_record;
} FastQueue;

static PyObject *str_locked, *str_append;

static int FastQueue_init(FastQueue *self, PyObject *args, PyObject *kw)
{
    PyObject *fl, *qkeep, *dumps, *loads, *put_lock, *held_lock, *held_add, *items, *users, *idle_release;
    unsigned long long qaddr, max_record;
    unsigned long owner;
    int ack_on_get;
    if (!PyArg_ParseTuple(args, "O!KOkpKOOOOOO!O!O", &FastLogType, &fl, &qaddr, &qkeep, &owner, &ack_on_get,
                          &max_record, &dumps, &loads, &put_lock, &held_lock, &held_add, &PyDict_Type, &items,
                          &PyList_Type, &users, &idle_release))
        return -1;
    if (!qaddr || owner > UINT32_MAX || max_record > ((uint64_t)1 << 40)) {
        PyErr_SetString(PyExc_ValueError, "FastQueue: bad lease view, owner token or max_record");
        return -1;
    }
    Py_INCREF(fl); Py_XSETREF(self->fl, (FastLog *)fl);
    Py_INCREF(qkeep); Py_XSETREF(self->qkeep, qkeep);
    self->q = (q_view *)(uintptr_t)qaddr;
    self->owner = (uint32_t)owner;
    self->ack_on_get = ack_on_get;
    self->max_record = max_record;
    Py_INCREF(dumps); Py_XSETREF(self->dumps, dumps);
    Py_INCREF(loads); Py_XSETREF(self->loads, loads);
    Py_INCREF(put_lock); Py_XSETREF(self->put_lock, put_lock);
    Py_INCREF(held_lock); Py_XSETREF(self->held_lock, held_lock);
    Py_INCREF(held_add); Py_XSETREF(self->held_add, held_add);
    Py_XSETREF(self->put_locked, PyObject_GetAttr(put_lock, str_locked));
    Py_XSETREF(self->held_locked, PyObject_GetAttr(held_lock, str_locked));
    Py_XSETREF(self->empty, PyTuple_New(0));
    if (!self->put_locked || !self->held_locked || !self->empty) return -1;
    Py_INCREF(items); Py_XSETREF(self->items, items);
    Py_INCREF(users); Py_XSETREF(self->users, users);
    Py_INCREF(idle_release); Py_XSETREF(self->idle_release, idle_release);
    Py_XSETREF(self->proto, PyLong_FromLong(5));
    Py_XSETREF(self->kwnames, Py_BuildValue("(s)", "buffer_callback"));
    Py_XSETREF(self->bufs, PyList_New(0));
    if (!self->proto || !self->kwnames || !self->bufs) return -1;
    Py_XSETREF(self->bufs_append, PyObject_GetAttr(self->bufs, str_append));
    if (!self->bufs_append) return -1;
    return 0;
}

static int FastQueue_traverse(FastQueue *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fl);
    Py_VISIT(self->qkeep);
    Py_VISIT(self->dumps);
    Py_VISIT(self->loads);
    Py_VISIT(self->bufs);
    Py_VISIT(self->bufs_append);
    Py_VISIT(self->put_lock);
    Py_VISIT(self->held_lock);
    Py_VISIT(self->held_add);
    Py_VISIT(self->put_locked);
    Py_VISIT(self->held_locked);
    Py_VISIT(self->items);
    Py_VISIT(self->users);
    Py_VISIT(self->idle_release);
    Py_VISIT(self->solo);
    return 0;
}

static int FastQueue_clear(FastQueue *self)
{
    Py_CLEAR(self->fl);
    Py_CLEAR(self->qkeep);
    Py_CLEAR(self->dumps);
    Py_CLEAR(self->loads);
    Py_CLEAR(self->proto);
    Py_CLEAR(self->kwnames);
    Py_CLEAR(self->bufs);
    Py_CLEAR(self->bufs_append);
    Py_CLEAR(self->put_lock);
    Py_CLEAR(self->held_lock);
    Py_CLEAR(self->held_add);
    Py_CLEAR(self->put_locked);
    Py_CLEAR(self->held_locked);
    Py_CLEAR(self->empty);
    Py_CLEAR(self->items);
    Py_CLEAR(self->users);
    Py_CLEAR(self->idle_release);
    Py_CLEAR(self->solo);
    self->dead = 1;
    return 0;
}

static void FastQueue_dealloc(FastQueue *self)
{
    PyObject_GC_UnTrack(self);
    FastQueue_clear(self);
    free(self->scratch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* 1 if the threading lock is held by anyone, 0 if not, -1 on error
 * (locked: the lock's bound locked() method) */
static int lock_held(PyObject *locked)
{
    PyObject *r = PyObject_CallNoArgs(locked);
    if (!r) return -1;
    int b = PyObject_IsTrue(r);
    Py_DECREF(r);
    return b;
}

static int usable(FastQueue *self)
{
    return !self->dead && !self->busy && self->fl && self->fl->v;
}

/* an item's header: little-endian, as _serde's struct "<BBHI" */
static void fq_header(unsigned char *h, unsigned char magic, uint32_t len)
{
    h[0] = magic; h[1] = FQ_VERSION; h[2] = 0; h[3] = 0;
    h[4] = len & 0xFF; h[5] = (len >> 8) & 0xFF; h[6] = (len >> 16) & 0xFF; h[7] = len >> 24;
}

/* An item (header + len bytes of data) built in the scratch buffer and
 * appended: None; or the record as bytes when the ring is full, the log was
 * closed (pickle runs Python code) or the append fails - the caller's Python
 * path waits with it or raises; NULL if memory runs out. */
static PyObject *fq_append(FastQueue *self, unsigned char magic, const char *data, uint32_t len)
{
    uint64_t n = FQ_HDR + (uint64_t)len;
    if (n > self->scap) {
        uint64_t cap = n < 4096 ? 4096 : n;
        char *p = realloc(self->scratch, cap);
        if (!p) return PyErr_NoMemory();
        self->scratch = p;
        self->scap = cap;
    }
    fq_header((unsigned char *)self->scratch, magic, len);
    memcpy(self->scratch + FQ_HDR, data, len);
    if (self->fl && self->fl->v && log_try_append_value(self->fl->v, self->scratch, n, 0) >= 0) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(self->scratch, (Py_ssize_t)n);
}

static PyObject *FastQueue_put(FastQueue *self, PyObject *obj)
{
    if (!usable(self)) Py_RETURN_NOTIMPLEMENTED;
    int held = lock_held(self->put_locked); /* a thread waits to put: after it, in the Python path */
    if (held != 0) {
        if (held < 0) return NULL;
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (PyBytes_CheckExact(obj) && (uint64_t)PyBytes_GET_SIZE(obj) + FQ_HDR <= self->max_record
        && (uint64_t)PyBytes_GET_SIZE(obj) <= UINT32_MAX) /* bytes travel as they are: no pickle either side */
        return fq_append(self, FQ_RAW, PyBytes_AS_STRING(obj), (uint32_t)PyBytes_GET_SIZE(obj));
    PyObject *args[3] = {obj, self->proto, self->bufs_append};
    self->busy = 1;
    PyObject *stream = PyObject_Vectorcall(self->dumps, args, 2, self->kwnames);
    self->busy = 0;
    if (!stream) {
        if (PyList_SetSlice(self->bufs, 0, PY_SSIZE_T_MAX, NULL) < 0) PyErr_Clear();
        return NULL;
    }
    if (!PyBytes_CheckExact(stream)) {
        Py_DECREF(stream);
        PyErr_SetString(PyExc_TypeError, "pickle.dumps returned no bytes");
        return NULL;
    }
    uint64_t n = FQ_HDR + (uint64_t)PyBytes_GET_SIZE(stream);
    if (PyList_GET_SIZE(self->bufs) || n > self->max_record || n - FQ_HDR > UINT32_MAX) {
        PyObject *bufs = PyList_GetSlice(self->bufs, 0, PY_SSIZE_T_MAX);
        if (PyList_SetSlice(self->bufs, 0, PY_SSIZE_T_MAX, NULL) < 0 || !bufs) {
            Py_XDECREF(bufs);
            Py_DECREF(stream);
            return NULL;
        }
        return Py_BuildValue("(NN)", stream, bufs);
    }
    PyObject *r = fq_append(self, FQ_MAGIC, PyBytes_AS_STRING(stream), (uint32_t)(n - FQ_HDR));
    Py_DECREF(stream);
    return r;
}

/* hold (off) for this thread: the solo item if free, else Held.add */
static int hold(FastQueue *self, unsigned long tid, int64_t off)
{
    int lk = self->solo || PyDict_GET_SIZE(self->items) ? 1 : lock_held(self->held_locked);
    if (lk < 0) return -1;
    if (!lk && self->ack_on_get) { /* (tid, (off, owner, ())), built without Py_BuildValue's format parsing */
        PyObject *o = PyLong_FromLongLong((long long)off), *w = PyLong_FromUnsignedLong(self->owner);
        PyObject *t = PyLong_FromUnsignedLong(tid);
        PyObject *item = o && w && t ? PyTuple_Pack(3, o, w, self->empty) : NULL;
        Py_XDECREF(o);
        Py_XDECREF(w);
        self->solo = item ? PyTuple_Pack(2, t, item) : NULL;
        Py_XDECREF(t);
        Py_XDECREF(item);
        return self->solo ? 0 : -1;
    }
    PyObject *r = PyObject_CallFunction(self->held_add, "L()k", (long long)off, (unsigned long)self->owner);
    if (!r) return -1;
    Py_DECREF(r);
    return 0;
}

/* One take attempt (the fused ack of this thread's solo item first).
 * Returns the get's result; on a miss, NULL with no error set and *wait_at
 * the offset whose record to wait for. */
static PyObject *fq_attempt(FastQueue *self, uint64_t *wait_at_out)
{
    if (!usable(self)) Py_RETURN_NOTIMPLEMENTED;
    if (PyDict_GET_SIZE(self->items)) Py_RETURN_NOTIMPLEMENTED; /* held items of several: the Python path */
    int lk = lock_held(self->held_locked); /* another thread is in Held's bookkeeping */
    if (lk != 0) {
        if (lk < 0) return NULL;
        Py_RETURN_NOTIMPLEMENTED;
    }
    unsigned long tid = PyThread_get_thread_ident();
    long long ack_off = -1;
    unsigned long ack_tok = 0;
    if (self->solo) {
        /* (tid, (offset, token, segments)): built by hold() or Held (checked there) */
        PyObject *s = self->solo, *item;
        if (!PyTuple_CheckExact(s) || PyTuple_GET_SIZE(s) != 2 || !PyTuple_CheckExact(item = PyTuple_GET_ITEM(s, 1))
            || PyTuple_GET_SIZE(item) != 3 || !self->ack_on_get)
            Py_RETURN_NOTIMPLEMENTED;
        unsigned long stid = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(s, 0));
        ack_off = PyLong_AsLongLong(PyTuple_GET_ITEM(item, 0));
        ack_tok = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 1));
        if (PyErr_Occurred()) return NULL;
        PyObject *segs = PyTuple_GET_ITEM(item, 2);
        if (stid != tid || ack_tok > UINT32_MAX || PyObject_IsTrue(segs) != 0)
            Py_RETURN_NOTIMPLEMENTED; /* another thread's, or with segments to remove: the Python path */
        Py_CLEAR(self->solo); /* acked below, whatever the take does */
    }
    log_rec rec;
    uint32_t attempts = 0;
    uint64_t wait_at = 0;
    int ack_rc = LOG_OK;
    FastLog *fl = self->fl;
    int64_t r = q_ack_take(self->q, fl->v, ack_off, (uint32_t)ack_tok, self->owner, &rec, fl->buf, fl->cap, &attempts,
                           &wait_at, &ack_rc);
    if (r == LOG_E_WOULD_BLOCK) { /* nothing now */
        *wait_at_out = wait_at;
        return NULL;
    }
    if (r < 0) Py_RETURN_NOTIMPLEMENTED; /* an error: the Python path raises it */
    if (rec.val_len > fl->cap || rec.key_len + rec.hdr_len > fl->cap - rec.val_len) {
        PyErr_SetString(PyExc_ValueError, "queue get: record larger than the read buffer");
        return NULL; /* q_take copied at most cap bytes: a record it could not hold is a bug */
    }
    const unsigned char *p = (const unsigned char *)fl->buf + rec.key_len + rec.hdr_len;
    uint64_t vl = rec.val_len;
    uint32_t plen = vl >= FQ_HDR ? (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24 : 0;
    if (vl < FQ_HDR || (p[0] != FQ_MAGIC && p[0] != FQ_RAW) || p[1] != FQ_VERSION || p[2] || p[3]
        || plen != vl - FQ_HDR) {
        /* buffers, segments, or not ours: the caller decodes (and reports) it */
        PyObject *val = PyByteArray_FromStringAndSize((const char *)p, (Py_ssize_t)vl);
        if (!val) return NULL; /* taken, held by nobody: as the Python path when memory runs out */
        return Py_BuildValue("(LN)", (long long)r, val);
    }
    PyObject *stream = PyBytes_FromStringAndSize((const char *)p + FQ_HDR, (Py_ssize_t)plen);
    if (!stream) return NULL; /* taken, held by nobody: as the Python path when memory runs out */
    PyObject *obj = stream; /* FQ_RAW: the bytes are the object */
    if (p[0] == FQ_MAGIC) {
        self->busy = 1;
        obj = PyObject_CallOneArg(self->loads, stream);
        self->busy = 0;
        Py_DECREF(stream);
    }
    /* taken either way: held (multiprocessing too consumes an item that fails to unpickle) */
    PyObject *et = NULL, *ev = NULL, *etb = NULL;
    if (!obj) PyErr_Fetch(&et, &ev, &etb); /* hold() calls Python: the error waits */
    if (hold(self, tid, r) < 0) {
        Py_XDECREF(obj);
        Py_XDECREF(et); Py_XDECREF(ev); Py_XDECREF(etb);
        return NULL;
    }
    if (!obj) {
        PyErr_Restore(et, ev, etb);
        return NULL;
    }
    PyObject *t = PyTuple_Pack(1, obj);
    Py_DECREF(obj);
    return t;
}

static PyObject *FastQueue_get(FastQueue *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long wait_ns = 0, spin_ns = 0;
    int mode = LOG_WAIT_ADAPTIVE;
    if (nargs == 3) {
        /* seconds, clamped here (min/max/int in Python cost more than the whole take) */
        double t = PyFloat_AsDouble(args[0]);
        if (t == -1.0 && PyErr_Occurred()) return NULL;
        wait_ns = !(t > 0) ? 0 : t >= FQ_CHUNK_NS / 1e9 ? FQ_CHUNK_NS : (long long)(t * 1e9);
        mode = (int)PyLong_AsLong(args[1]);
        spin_ns = PyLong_AsLongLong(args[2]);
        if (PyErr_Occurred()) return NULL;
        if (mode != LOG_WAIT_ADAPTIVE && mode != LOG_WAIT_SPIN && mode != LOG_WAIT_SLEEP) {
            PyErr_SetString(PyExc_ValueError, "FastQueue.get: bad wait mode");
            return NULL;
        }
    } else if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "FastQueue.get() takes no arguments or (wait, mode, spin_ns)");
        return NULL;
    }
    uint64_t at = 0;
    uint32_t seq = 0;
    q_view *q = self->q;
    uint32_t *rel = NULL;
    if (wait_ns > 0 && usable(self)) {
        rel = word32_at(q->h, q->size, Q_RELEASE_OFF);
        /* before the attempt, so a release after it ends the wait below; acquire: pairs with
         * wake_takers' seq_cst increment (shmqueue.c) */
        if (rel) seq = __atomic_load_n(rel, __ATOMIC_ACQUIRE);
    }
    PyObject *res = fq_attempt(self, &at);
    if (res || PyErr_Occurred()) return res;
    if (wait_ns <= 0 || !rel || !usable(self)) return PyLong_FromUnsignedLongLong(at);
    /* wait in C: pinned (PartitionLog._pin), so a close() by another thread leaves the unmap to us */
    log_view *v = self->fl->v;
    PyObject *users = self->users;
    if (PyList_Append(users, Py_None) < 0) return NULL;
    int w;
    Py_BEGIN_ALLOW_THREADS
    w = log_wait_many_ex(&v, &at, 1, wait_ns, mode, spin_ns, q->h, q->size, Q_RELEASE_OFF, seq);
    Py_END_ALLOW_THREADS
    Py_ssize_t nu = PyList_GET_SIZE(users);
    if (nu > 0 && PyList_SetSlice(users, nu - 1, nu, NULL) < 0) return NULL;
    if (!usable(self)) { /* closed meanwhile (or invalidated): the unmap may be ours; the Python path goes on */
        PyObject *r = PyObject_CallNoArgs(self->idle_release);
        if (!r) return NULL;
        Py_DECREF(r);
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (w < 0 && w != -1 && w != -2) Py_RETURN_NOTIMPLEMENTED; /* an error: the Python path raises it */
    if (w == -1) return PyLong_FromUnsignedLongLong(at); /* the chunk passed with nothing */
    res = fq_attempt(self, &at);
    if (res || PyErr_Occurred()) return res;
    return PyLong_FromUnsignedLongLong(at);
}

static PyObject *FastQueue_get_solo(FastQueue *self, void *closure)
{
    PyObject *s = self->solo ? self->solo : Py_None;
    Py_INCREF(s);
    return s;
}

static int FastQueue_set_solo(FastQueue *self, PyObject *value, void *closure)
{
    if (value && value != Py_None) {
        Py_INCREF(value);
        Py_XSETREF(self->solo, value);
    } else {
        Py_CLEAR(self->solo);
    }
    return 0;
}

static PyObject *FastQueue_invalidate(FastQueue *self, PyObject *unused)
{
    self->dead = 1;
    Py_RETURN_NONE;
}

static PyMethodDef FastQueue_methods[] = {
    {"put", (PyCFunction)FastQueue_put, METH_O, "put(obj) -> None | bytes | (stream, buffers) | NotImplemented"},
    {"get", (PyCFunction)(void (*)(void))FastQueue_get, METH_FASTCALL,
     "get([wait, mode, spin_ns]) -> (obj,) | (offset, bytearray) | wait offset | NotImplemented"},
    {"invalidate", (PyCFunction)FastQueue_invalidate, METH_NOARGS, "every later call goes to the Python path"},
    {NULL},
};

static PyGetSetDef FastQueue_getset[] = {
    {"solo", (getter)FastQueue_get_solo, (setter)FastQueue_set_solo,
     "the one held item: (thread ident, (offset, token, segments)) or None", NULL},
    {NULL},
};

static PyTypeObject FastQueueType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastlog.FastQueue",
    .tp_basicsize = sizeof(FastQueue),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "broker.Queue's put and get of one object (see ext/fastqueue.c)",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastQueue_init,
    .tp_dealloc = (destructor)FastQueue_dealloc,
    .tp_traverse = (traverseproc)FastQueue_traverse,
    .tp_clear = (inquiry)FastQueue_clear,
    .tp_methods = FastQueue_methods,
    .tp_getset = FastQueue_getset,
};

static int fastqueue_ready(PyObject *m)
{
    if (!str_locked && !(str_locked = PyUnicode_InternFromString("locked"))) return -1;
    if (!str_append && !(str_append = PyUnicode_InternFromString("append"))) return -1;
    return PyModule_AddType(m, &FastQueueType);
}
