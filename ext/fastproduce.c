/* fastproduce.c - Producer.produce's lean path (shm._fastlog; compiled
 * into fastlog.c's unit, after FastLog). */

/* ---- Produce: Producer.produce's lean path --------------------------------
 * Produce(lean, fallback, null_key_random): calling it with (topic, value)
 * or (topic, value, partition=N), value bytes and topic in the dict lean
 * (topic -> (partitions, (FastLog, ...))), appends without waiting and
 * returns None.  Every other call - and any non-OK status - goes to
 * fallback, the Python method, which owns validation and errors. */
static PyObject *str_partition;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *lean;
    PyObject *fallback;
    int null_key_random;
    uint64_t rng;
} Produce;

static PyObject *Produce_call(Produce *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    long part = -1;
    if (nargs != 2 || !PyBytes_CheckExact(args[1])) goto slow;
    if (kwnames) {
        PyObject *kw = PyTuple_GET_SIZE(kwnames) == 1 ? PyTuple_GET_ITEM(kwnames, 0) : NULL;
        if (!kw || kw != str_partition || !PyLong_CheckExact(args[2])) goto slow;
        part = PyLong_AsLong(args[2]);
        if (part == -1 && PyErr_Occurred()) { PyErr_Clear(); goto slow; }
    }
    PyObject *h = PyDict_GetItemWithError(self->lean, args[0]); /* borrowed */
    if (!h) { if (PyErr_Occurred()) PyErr_Clear(); goto slow; }
    if (!PyTuple_CheckExact(h) || PyTuple_GET_SIZE(h) != 2) goto slow;
    PyObject *fls = PyTuple_GET_ITEM(h, 1);
    if (!PyTuple_CheckExact(fls)) goto slow;
    Py_ssize_t n = PyTuple_GET_SIZE(fls);
    if (n < 1) goto slow;
    Py_ssize_t p;
    if (part >= 0) {
        if (part >= n) goto slow;
        p = part;
    } else if (n == 1) {
        p = 0;
    } else if (self->null_key_random) {
        uint64_t x = self->rng; /* xorshift64: a NULL key goes to a random partition */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        self->rng = x;
        p = (Py_ssize_t)((x >> 33) % (uint64_t)n);
    } else goto slow;
    PyObject *fl = PyTuple_GET_ITEM(fls, p);
    if (Py_TYPE(fl) != &FastLogType || !((FastLog *)fl)->v) goto slow;
    int64_t r = log_try_append_value(((FastLog *)fl)->v, PyBytes_AS_STRING(args[1]),
                                     (uint64_t)PyBytes_GET_SIZE(args[1]), 0);
    if (r >= 0) Py_RETURN_NONE;
slow:
    return PyObject_Vectorcall(self->fallback, args, nargs, kwnames);
}

static int Produce_init(Produce *self, PyObject *args, PyObject *kw)
{
    PyObject *lean, *fb;
    int nkr;
    if (!PyArg_ParseTuple(args, "O!Op", &PyDict_Type, &lean, &fb, &nkr)) return -1;
    Py_INCREF(lean); Py_XSETREF(self->lean, lean);
    Py_INCREF(fb); Py_XSETREF(self->fallback, fb);
    self->null_key_random = nkr;
    self->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    self->vectorcall = (vectorcallfunc)Produce_call;
    return 0;
}

static void Produce_dealloc(Produce *self)
{
    Py_XDECREF(self->lean);
    Py_XDECREF(self->fallback);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ProduceType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastlog.Produce",
    .tp_basicsize = sizeof(Produce),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Producer.produce's lean path",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Produce_init,
    .tp_dealloc = (destructor)Produce_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Produce, vectorcall),
};
