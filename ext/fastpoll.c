/* fastpoll.c - poll()'s lean path (shm._fastlog; compiled into fastlog.c's
 * unit, after FastLog and fastpart.c's Part).
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
 *   - either, when a block topic's producers need this group's commit
 *     (part_floor_wanted): that auto-commit first, in C once armed
 *     (fastpart.c's part_commit);
 * and calls fallback(timeout), the Python method, for everything else, or
 * rest(part, result, spun_ns, timeout) when that read found nothing.
 * close() disables it first (disable(): every call falls back), before the
 * namespace's mapping, which flag_addr points into, goes. */

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
        if (n > 0 && self->next_commit >= 0 && part_floor_wanted((Part *)cur, n) &&
            (*self->flag || !part_commit((Part *)cur, n))) /* (relaxed read: destroyed, the Python path says so) */
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
    if (fastpart_ready(m) < 0) return -1;
    return PyModule_AddType(m, &ConsumerPollType);
}
