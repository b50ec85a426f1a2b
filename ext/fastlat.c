/* fastlat.c - LatQueue and the latency histogram's module functions
 * (shm._fastlog; compiled into fastlog.c's unit, after FastLog). */

/* ---- LatQueue: a consumer's fetched batch, counted when handed out ----------
 * LatQueue(fastlog) is a collections.deque whose popleft() also counts the
 * produce->poll latency of the Message it returns into fastlog's latency
 * slot (shm.latency.histogram).  The consumer fetches up to 256 records in
 * one call and hands them out one poll() at a time: counting at hand-out,
 * not at fetch, times each record to the poll that returns it and counts
 * exactly the records delivered (a batch dropped by seek() or close() is
 * not counted; its records are counted when read again).  A C subclass of
 * deque, made at module init (the deque type is only known then); the
 * FastLog reference sits after deque's own fields. */
static PyTypeObject LatQueueType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastlog.LatQueue",
    .tp_flags = Py_TPFLAGS_DEFAULT, /* GC support (flag, traverse, clear) comes from deque */
    .tp_doc = "a deque whose popleft() counts each Message's produce->poll latency (shm.latency.histogram)",
};
static Py_ssize_t latq_off;      /* where the FastLog reference sits */
static PyObject *deque_popleft;  /* collections.deque.popleft */
static PyCFunction deque_popleft_c; /* its C function, called directly when it is a plain METH_NOARGS one */

#define LATQ_FL(o) (*(FastLog **)((char *)(o) + latq_off))

static int LatQueue_init(PyObject *self, PyObject *args, PyObject *kw)
{
    PyObject *fl;
    if (!PyArg_ParseTuple(args, "O!", &FastLogType, &fl)) return -1;
    PyObject *empty = PyTuple_New(0);
    if (!empty) return -1;
    int rc = LatQueueType.tp_base->tp_init(self, empty, NULL); /* an unbounded deque */
    Py_DECREF(empty);
    if (rc < 0) return -1;
    Py_INCREF(fl);
    Py_XSETREF(LATQ_FL(self), (FastLog *)fl);
    return 0;
}

static void LatQueue_dealloc(PyObject *self)
{
    /* deque's dealloc untracks the object first; the FastLog is released
     * after it, since its dealloc may run Python code (and so the GC), which
     * must not find this object still tracked at refcount 0.  A FastLog
     * references no queue: no cycle through it. */
    FastLog *fl = LATQ_FL(self);
    LATQ_FL(self) = NULL;
    LatQueueType.tp_base->tp_dealloc(self);
    Py_XDECREF(fl);
}

static PyObject *LatQueue_popleft(PyObject *self, PyObject *unused)
{
    PyObject *m = deque_popleft_c ? deque_popleft_c(self, NULL) : PyObject_CallOneArg(deque_popleft, self);
    FastLog *fl = LATQ_FL(self);
    if (m && fl && fl->lat && message_type && PyObject_TypeCheck(m, (PyTypeObject *)message_type) &&
        PyTuple_GET_SIZE(m) == MSG_ITEMS && PyTuple_GET_ITEM(m, 6) == Py_None) { /* a record, not an event */
        long long ts = lat_stamp(PyTuple_GET_ITEM(m, 7));
        if (ts == -1 && PyErr_Occurred()) PyErr_Clear();
        else if (fl->lat) lat_count(fl, ts); /* (again: converting the stamp could have run Python code) */
    }
    return m;
}

static PyMethodDef LatQueue_methods[] = {
    {"popleft", LatQueue_popleft, METH_NOARGS, "deque.popleft(), counting the Message's produce->poll latency"},
    {NULL},
};

static int latqueue_ready(PyObject *m)
{
    PyObject *coll = PyImport_ImportModule("collections");
    if (!coll) return -1;
    PyObject *dq = PyObject_GetAttrString(coll, "deque");
    Py_DECREF(coll);
    if (!dq) return -1;
    if (!PyType_Check(dq) || ((PyTypeObject *)dq)->tp_itemsize) {
        Py_DECREF(dq);
        PyErr_SetString(PyExc_TypeError, "collections.deque is not the type LatQueue extends");
        return -1;
    }
    deque_popleft = PyObject_GetAttrString(dq, "popleft");
    if (!deque_popleft) { Py_DECREF(dq); return -1; }
    if (Py_IS_TYPE(deque_popleft, &PyMethodDescr_Type)) { /* skip the descriptor's call protocol per record */
        PyMethodDef *md = ((PyMethodDescrObject *)deque_popleft)->d_method;
        if (md && (md->ml_flags & ~METH_COEXIST) == METH_NOARGS) deque_popleft_c = md->ml_meth;
    }
    PyTypeObject *base = (PyTypeObject *)dq; /* our reference keeps it, as tp_base */
    latq_off = (base->tp_basicsize + (Py_ssize_t)sizeof(void *) - 1) & ~((Py_ssize_t)sizeof(void *) - 1);
    LatQueueType.tp_base = base;
    LatQueueType.tp_basicsize = latq_off + (Py_ssize_t)sizeof(FastLog *);
    LatQueueType.tp_init = LatQueue_init;
    LatQueueType.tp_dealloc = LatQueue_dealloc;
    LatQueueType.tp_methods = LatQueue_methods;
    return PyModule_AddType(m, &LatQueueType);
}

/* lat_layout() -> the latency slot's layout, for broker/latency_hist.py */
static PyObject *lat_layout(PyObject *m, PyObject *unused)
{
    return Py_BuildValue("{sisisisisisisLsi}", "counts", (int)LAT_COUNTS, "slot_bytes", (int)LAT_SLOT_BYTES,
                         "slot_words", (int)LAT_SLOT_WORDS, "unit_mag", (int)LAT_UNIT_MAG,
                         "sub_half_mag", (int)LAT_SUB_HALF_MAG, "below", (int)LAT_BELOW, "max_ns",
                         (long long)LAT_MAX_NS, "above", (int)LAT_ABOVE);
}

/* lat_index(ns) -> the counts index the core uses for ns (clamped as
 * lat_record clamps); lat_lowest(i) -> the lowest ns of index i */
static PyObject *py_lat_index(PyObject *m, PyObject *arg)
{
    long long ns = PyLong_AsLongLong(arg);
    if (ns == -1 && PyErr_Occurred()) return NULL;
    if (ns < 0) ns = 0;
    if (ns > LAT_MAX_NS) ns = LAT_MAX_NS;
    return PyLong_FromUnsignedLong(lat_index((uint64_t)ns));
}

static PyObject *py_lat_lowest(PyObject *m, PyObject *arg)
{
    long i = PyLong_AsLong(arg);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0 || i >= (long)LAT_COUNTS) {
        PyErr_Format(PyExc_ValueError, "a latency counts index is in [0, %d)", (int)LAT_COUNTS);
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(lat_lowest((uint32_t)i));
}
