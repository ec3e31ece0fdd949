/* The query log's statement records, encoded and hashed in compiled code, and checked in bulk
 * against what the chain's commit events bind (bastion/audit/qlogbind.py is the reference).
 * The rules are in _fastqlog_record.c, the SQLite file's reader in _fastqlog_sqlite.c, the PostgreSQL
 * COPY stream's in _fastqlog_copy.c; this file is the Python module.
 *
 * A record is a sequence of fields, each encoded by its type, so no two sequences share an
 * encoding: NULL is "n"; an integer is "i", its decimal digits and ";"; a text is "s", its
 * UTF-8 length in decimal, ":" and its UTF-8 bytes; any other type is "x" (the writer never
 * stores one, so such a row never matches). Its digest is the first 16 bytes of the SHA-256
 * of that encoding.
 *
 * digest(fields: tuple) -> bytes
 *   The digest of a record given as Python values (None, int, str).
 *
 * check(path, lo, hi, boundary, since, until, starts, ends, limit) -> list[(id, code)]
 *   Reads the `queries` rows with lo <= id <= hi (none when lo > hi), widened to every id
 *   the expectations name, from the store at path (read-only, its own connection, the GIL
 *   released) and compares each with what the commit events bind:
 *   starts is a list of (first id, n 16-byte start digests: rows first.. first+n-1), ends is
 *   24-byte records (the row's id, 8 bytes big-endian, and its end digest). Codes:
 *   1 the row's start record differs; 2 a row from `boundary` on, and of [since, until),
 *   that no commit binds; 3 a bound row is gone; 4 the row's end record differs;
 *   5 a row whose start is bound shows an outcome no commit binds. At most `limit` found,
 *   rows in id order, then the deleted ones. Raises OSError when the store can't be read.
 *
 * check_rows(fetch, kinds, lo, hi, boundary, since, until, starts, ends, limit)
 *   The same check of rows the caller reads (a store on PostgreSQL): fetch(lo, hi, feed) is
 *   called once with the widened span and calls feed(piece) with each piece, in order, of
 *   `COPY (SELECT <the 16 columns> ... ORDER BY id) TO STDOUT (FORMAT binary)`; kinds is
 *   16 characters, one per column: '8', '4', '2' an integer of that many bytes, 's' text,
 *   'x' any other type (encoded "x"). A stream that is not whole, or not of that shape,
 *   raises ValueError; errors raised by fetch propagate. feed works only while fetch runs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "_fastqlog.h"

/* -- digest(fields) ------------------------------------------------------------------ */

static int add_value(Buf *b, PyObject *item) {
    if (item == Py_None)
        return add_null(b);
    if (PyLong_Check(item)) {
        long long v = PyLong_AsLongLong(item);
        if (v == -1 && PyErr_Occurred())
            return -2;
        return add_int(b, v);
    }
    if (PyUnicode_Check(item)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(item, &n);
        if (s == NULL)
            return -2;
        return add_text(b, s, (size_t)n);
    }
    PyErr_Format(PyExc_TypeError, "a record field is None, int or str, not %s",
                 Py_TYPE(item)->tp_name);
    return -2;
}

static PyObject *digest(PyObject *self, PyObject *fields) {
    (void)self;
    if (!PyTuple_Check(fields)) {
        PyErr_SetString(PyExc_TypeError, "digest() takes a tuple of fields");
        return NULL;
    }
    static Buf b = {0}; /* kept between calls, under the GIL */
    unsigned char out[DIGEST];
    b.size = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fields); i++) {
        int rc = add_value(&b, PyTuple_GET_ITEM(fields, i));
        if (rc)
            return rc == -1 ? PyErr_NoMemory() : NULL;
    }
    sha_digest(&b, out);
    return PyBytes_FromStringAndSize((const char *)out, DIGEST);
}

/* -- the expectations ---------------------------------------------------------------- */

static long long end_id(const unsigned char *e) {
    uint64_t id = 0;
    for (int j = 0; j < 8; j++)
        id = (id << 8) | e[j];
    return (long long)id;
}

/* Widen [lo, hi] to every id the expectations name; -1 with an exception set. */
static int span(PyObject *seq, const Py_buffer *ends, long long *lo, long long *hi) {
    if (ends->len % (8 + DIGEST)) {
        PyErr_SetString(PyExc_ValueError, "end records are 24 bytes each");
        return -1;
    }
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
        long long first;
        const char *blob;
        Py_ssize_t len;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, k), "Ly#", &first, &blob, &len))
            return -1;
        if (len % DIGEST || first < 0) {
            PyErr_SetString(PyExc_ValueError, "start digests are 16 bytes each");
            return -1;
        }
        if (len == 0)
            continue;
        *lo = first < *lo ? first : *lo;
        *hi = first + len / DIGEST - 1 > *hi ? first + len / DIGEST - 1 : *hi;
    }
    for (Py_ssize_t at = 0; at < ends->len; at += 8 + DIGEST) {
        long long id = end_id((const unsigned char *)ends->buf + at);
        *lo = id < *lo ? id : *lo;
        *hi = id > *hi ? id : *hi;
    }
    return 0;
}

/* The expectations into c's arrays (span() has checked their shape). */
static void expect(Check *c, PyObject *seq, const Py_buffer *ends) {
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
        long long first;
        const char *blob;
        Py_ssize_t len;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, k), "Ly#", &first, &blob, &len))
            continue;
        for (long long j = 0; j < len / DIGEST; j++)
            c->flags[first - c->lo + j] |= BOUND_START;
        memcpy(c->starts + (first - c->lo) * DIGEST, blob, (size_t)len);
    }
    const unsigned char *e = ends->buf;
    for (Py_ssize_t at = 0; at < ends->len; at += 8 + DIGEST) {
        long long i = end_id(e + at) - c->lo;
        c->flags[i] |= BOUND_END;
        memcpy(c->ends + i * DIGEST, e + at + 8, DIGEST);
    }
}

static PyObject *results(const Check *c) {
    PyObject *out = PyList_New(c->found);
    for (long long k = 0; out != NULL && k < c->found; k++) {
        PyObject *item = Py_BuildValue("(Li)", c->ids[k], c->codes[k]);
        if (item == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, k, item);
    }
    return out;
}

/* -- the rows of a COPY stream ------------------------------------------------------- */

static const char CAPSULE[] = "bastion.audit._fastqlog.stream";

/* feed(piece): the capsule's context is the Stream while fetch runs, NULL after. */
static PyObject *feed(PyObject *capsule, PyObject *arg) {
    Stream *s = PyCapsule_GetContext(capsule);
    Py_buffer piece;
    if (s == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "the check this feed was for is over");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &piece, PyBUF_SIMPLE) < 0)
        return NULL;
    int rc = stream_feed(s, piece.buf, (size_t)piece.len);
    PyBuffer_Release(&piece);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef FEED = {"feed", feed, METH_O, "The next piece of the COPY stream."};

/* fetch(scan_lo, scan_hi, feed) and the stream it feeds, checked; -1 with an exception. */
static int check_stream(PyObject *fetch, const char *kinds, Check *c) {
    if (c->scan_lo > c->scan_hi)
        return 0;
    Stream s = {c, {0}, {0}, kinds, STREAM_HEAD};
    static int token;
    PyObject *capsule = PyCapsule_New(&token, CAPSULE, NULL), *fn = NULL, *got = NULL;
    if (capsule != NULL && PyCapsule_SetContext(capsule, &s) == 0)
        fn = PyCFunction_New(&FEED, capsule);
    if (fn != NULL)
        got = PyObject_CallFunction(fetch, "LLO", c->scan_lo, c->scan_hi, fn);
    if (capsule != NULL)
        PyCapsule_SetContext(capsule, NULL);
    int rc = got == NULL ? -1 : stream_end(&s);
    Py_XDECREF(got);
    Py_XDECREF(fn);
    Py_XDECREF(capsule);
    free(s.pending.data);
    free(s.record.data);
    return rc;
}

/* -- check() and check_rows() -------------------------------------------------------- */

/* Check the rows of the SQLite file at path (the GIL released), or those fetch streams. */
static PyObject *checked(const char *path, PyObject *fetch, const char *kinds, Check *c,
                         PyObject *seq, const Py_buffer *ends) {
    c->flags = calloc((size_t)c->n + 1, 1);
    c->starts = calloc((size_t)c->n + 1, DIGEST);
    c->ends = calloc((size_t)c->n + 1, DIGEST);
    c->ids = calloc((size_t)c->limit, sizeof *c->ids);
    c->codes = calloc((size_t)c->limit, sizeof *c->codes);
    PyObject *out = NULL;
    if (!c->flags || !c->starts || !c->ends || !c->ids || !c->codes) {
        PyErr_NoMemory();
    } else if (path == NULL) {
        expect(c, seq, ends);
        if (check_stream(fetch, kinds, c) == 0)
            out = results(c);
    } else {
        expect(c, seq, ends);
        const char *failure;
        char detail[256] = "";
        Py_BEGIN_ALLOW_THREADS
        failure = check_file(path, c, detail, sizeof detail);
        Py_END_ALLOW_THREADS
        if (failure != NULL)
            PyErr_Format(PyExc_OSError, "cannot check the query log in %s: %s", path, failure);
        else
            out = results(c);
    }
    free(c->flags);
    free(c->starts);
    free(c->ends);
    free(c->ids);
    free(c->codes);
    return out;
}

static int valid_kinds(const char *kinds) {
    if (strlen(kinds) != COLUMNS || strspn(kinds, "842sx") != COLUMNS) {
        PyErr_SetString(PyExc_ValueError, "kinds is one of 8, 4, 2, s, x per column (16)");
        return 0;
    }
    return 1;
}

/* The expectations parsed, the span widened, then checked. */
static PyObject *check_any(PyObject *args, int rows) {
    const char *path = NULL, *kinds = NULL;
    PyObject *fetch = NULL, *starts, *seq, *out = NULL;
    Py_buffer ends;
    Check c = {0};
    long long lo, hi, bound_lo = LLONG_MAX, bound_hi = LLONG_MIN;
    int parsed = rows ? PyArg_ParseTuple(args, "OsLLLssOy*L", &fetch, &kinds, &lo, &hi,
                                         &c.boundary, &c.since, &c.until, &starts, &ends,
                                         &c.limit)
                      : PyArg_ParseTuple(args, "sLLLssOy*L", &path, &lo, &hi, &c.boundary,
                                         &c.since, &c.until, &starts, &ends, &c.limit);
    if (!parsed)
        return NULL;
    if (rows && (!PyCallable_Check(fetch) || !valid_kinds(kinds))) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "check_rows() takes a callable giving the rows");
        PyBuffer_Release(&ends);
        return NULL;
    }
    seq = PySequence_Fast(starts, "starts is a list of (first id, digests)");
    if (seq != NULL && span(seq, &ends, &bound_lo, &bound_hi) == 0) {
        /* Arrays for the ids the commits bind only: rows of the given range beyond them
         * (an id far off, written by hand) are read and judged without a slot. */
        c.lo = bound_lo;
        c.n = bound_hi >= bound_lo ? bound_hi - bound_lo + 1 : 0;
        c.scan_lo = lo <= hi && lo < bound_lo ? lo : bound_lo;
        c.scan_hi = lo <= hi && hi > bound_hi ? hi : bound_hi;
        c.limit = c.limit < 1 ? 1 : c.limit;
        out = checked(path, fetch, kinds, &c, seq, &ends);
    }
    Py_XDECREF(seq);
    PyBuffer_Release(&ends);
    return out;
}

static PyObject *check(PyObject *self, PyObject *args) {
    (void)self;
    return check_any(args, 0);
}

static PyObject *check_rows(PyObject *self, PyObject *args) {
    (void)self;
    return check_any(args, 1);
}

static PyMethodDef methods[] = {
    {"digest", digest, METH_O, "The 16-byte digest of a statement record's fields."},
    {"check", check, METH_VARARGS, "Check the query log's rows against their commits."},
    {"check_rows", check_rows, METH_VARARGS, "Check rows a COPY stream gives, the same way."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastqlog", "Statement records hashed and checked in bulk.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastqlog(void) { return PyModule_Create(&module); }
