/* fastmsg.c - MessageBase, the C base of broker.message.Message
 * (shm._fastlog; compiled into fastlog.c's unit).
 *
 * A Message is a tuple (topic, partition, offset, key, value, headers,
 * error, timestamp, latency, overrides) with no instance dict.  Its field
 * getters are called once or more per consumed record (msg.value(),
 * msg.key(), msg.offset()...): as Python methods each costs a frame; here
 * each is an item load.  A set_* method (Python, broker/message.py) keeps
 * an override in the dict that set_overrides hangs in item 9: a getter
 * whose field can be overridden returns its item only while item 9 is
 * None, and otherwise asks Message._get.
 *
 * Message's own dealloc (msg_dealloc, installed by set_message_type; else
 * MessageBase's, under subtype_dealloc) keeps dying Messages for reuse
 * (fastlog.c's msg_free). */

static PyObject *str_get; /* interned "_get" */

/* field i of self, or Message._get(i) once a set_* override exists */
static PyObject *msg_field(PyObject *self, Py_ssize_t i, int overridable)
{
    if (PyTuple_GET_SIZE(self) != MSG_ITEMS) {
        PyErr_SetString(PyExc_TypeError, "not a Message: a tuple of 10 fields expected");
        return NULL;
    }
    if (overridable) {
        if (PyTuple_GET_ITEM(self, MSG_ITEMS - 1) != Py_None) {
            PyObject *idx = PyLong_FromSsize_t(i);
            if (!idx) return NULL;
            PyObject *x = PyObject_CallMethodOneArg(self, str_get, idx);
            Py_DECREF(idx);
            return x;
        }
    }
    PyObject *x = PyTuple_GET_ITEM(self, i);
    Py_INCREF(x);
    return x;
}

#define MSG_GETTER(name, i, ov) \
    static PyObject *msg_##name(PyObject *self, PyObject *unused) { return msg_field(self, i, ov); }
MSG_GETTER(topic, 0, 1)
MSG_GETTER(partition, 1, 0)
MSG_GETTER(offset, 2, 0)
MSG_GETTER(key, 3, 1)
MSG_GETTER(value, 4, 1)
MSG_GETTER(headers, 5, 1)
MSG_GETTER(error, 6, 1)
MSG_GETTER(latency, 8, 0)

static PyMethodDef MessageBase_methods[] = {
    {"topic", msg_topic, METH_NOARGS, "topic()\n\n:returns: the topic name (None for some events).\n:rtype: str"},
    {"partition", msg_partition, METH_NOARGS,
     "partition()\n\n:returns: the partition (None for events that have none).\n:rtype: int"},
    {"offset", msg_offset, METH_NOARGS, "offset()\n\n:returns: the record's offset (None if it has none).\n:rtype: int"},
    {"key", msg_key, METH_NOARGS, "key()\n\n:returns: the record's key (None if it has none).\n:rtype: bytes"},
    {"value", msg_value, METH_NOARGS, "value()\n\n:returns: the record's value; for an event, None.\n:rtype: bytes"},
    {"headers", msg_headers, METH_NOARGS,
     "headers()\n\n:returns: the record's headers as a list of (key, value) tuples, or None.\n:rtype: list"},
    {"error", msg_error, METH_NOARGS,
     "error()\n\n:returns: None for a record; a KafkaError for an error or event (_PARTITION_EOF, ...).\n"
     ":rtype: KafkaError or None"},
    {"latency", msg_latency, METH_NOARGS,
     "latency()\n\n:returns: seconds from produce() to the delivery report (producer side), else None.\n"
     ":rtype: float"},
    {NULL},
};

/* MessageBase's dealloc, called by subtype_dealloc once Message's own part
 * is done (self tracked again, its type still referenced until we return):
 * a Message is kept for reuse (cleared, untracked), anything else goes as a
 * tuple goes. */
/* Can self, dying, be kept for reuse (a Message of the registered type, room
 * on the free list)? */
static int msg_keepable(PyObject *self)
{
    return (PyObject *)Py_TYPE(self) == message_type && PyTuple_GET_SIZE(self) == MSG_ITEMS &&
           msg_nfree < MSG_FREE_MAX;
}

/* Clear an untracked, keepable Message's items and keep it (or free it, if
 * clearing ran code that took the room or registered another type). */
static void msg_keep(PyObject *self)
{
    for (Py_ssize_t i = 0; i < MSG_ITEMS; i++) Py_CLEAR(((PyTupleObject *)self)->ob_item[i]);
    if (msg_keepable(self)) msg_free[msg_nfree++] = self;
    else PyObject_GC_Del(self);
}

static void msgbase_dealloc(PyObject *self)
{
    if (msg_keepable(self)) {
        PyObject_GC_UnTrack(self);
        msg_keep(self);
        return;
    }
    PyTuple_Type.tp_dealloc(self);
}

/* set_overrides(message, dict): the dict of a Message's set_* overrides, in
 * its item 9 (a Message is made with None there and is otherwise never
 * changed); tracked by the cyclic GC from now on (the dict may reference
 * the Message back). */
static PyObject *set_overrides(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !message_type || !PyObject_TypeCheck(args[0], (PyTypeObject *)message_type) ||
        PyTuple_GET_SIZE(args[0]) != MSG_ITEMS || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "set_overrides(message: Message, overrides: dict)");
        return NULL;
    }
    PyObject **slot = &((PyTupleObject *)args[0])->ob_item[MSG_ITEMS - 1];
    Py_INCREF(args[1]);
    Py_XSETREF(*slot, args[1]);
    if (!PyObject_GC_IsTracked(args[0])) PyObject_GC_Track(args[0]);
    Py_RETURN_NONE;
}

static PyTypeObject MessageBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shm._fastlog.MessageBase",
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "the field getters of broker.message.Message (a tuple of its 9 fields and its overrides)",
    .tp_methods = MessageBase_methods,
    .tp_dealloc = msgbase_dealloc,
    /* tp_base (tuple) is set before PyType_Ready; size, GC, alloc and new are tuple's */
};

/* Message's own tp_dealloc, installed by set_message_type when Message adds
 * nothing subtype_dealloc would have to undo (no __del__, no instance dict,
 * no weakrefs, no slots): subtype_dealloc's generic walk cost about a fifth
 * of a consumed record's Python-side work.  Message is a heap type, so this
 * drops the instance's reference to its type, whichever way it is called:
 * as a Message's dealloc (and a Message type registered before another
 * one's), or as the base dealloc of a subclass of Message (subtype_dealloc
 * walks to the first dealloc that is not its own, undoes the subclass's
 * part, and leaves the type's reference to a heap-type base's dealloc). */
static void msg_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (tp->tp_dealloc != msg_dealloc || !msg_keepable(self)) { /* a subclass's, an old type's, no room */
        PyTuple_Type.tp_dealloc(self);
        Py_DECREF(tp);
        return;
    }
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, msg_dealloc)
    msg_keep(self);
    Py_DECREF(tp); /* the instance's reference to its heap type (PyType_GenericAlloc's, or msg_take's) */
    Py_TRASHCAN_END
}

/* Install msg_dealloc as tp's dealloc if tp is a plain Python subclass of
 * MessageBase that subtype_dealloc has nothing to do for. */
static void msg_install_dealloc(PyTypeObject *tp)
{
    if ((tp->tp_flags & Py_TPFLAGS_HEAPTYPE) && tp->tp_base == &MessageBaseType &&
        tp->tp_basicsize == MessageBaseType.tp_basicsize && tp->tp_itemsize == MessageBaseType.tp_itemsize &&
        !tp->tp_finalize && !tp->tp_del && tp->tp_dictoffset == 0 && tp->tp_weaklistoffset == 0 &&
        !(tp->tp_flags & Py_TPFLAGS_MANAGED_DICT))
        tp->tp_dealloc = msg_dealloc;
}

static int msgbase_ready(PyObject *m)
{
    if (!str_get && !(str_get = PyUnicode_InternFromString("_get"))) return -1;
    MessageBaseType.tp_base = &PyTuple_Type;
    return PyModule_AddType(m, &MessageBaseType);
}
