/* The query log's statement records, encoded and hashed in compiled code, and checked in bulk
 * against what the chain's commit events bind (bastion/audit/qlogbind.py is the reference).
 *
 * A record is a sequence of fields, each encoded by its type, so no two sequences share an
 * encoding: NULL is "n"; an integer is "i", its decimal digits and ";"; a text is "s", its
 * UTF-8 length in decimal, ":" and its UTF-8 bytes; any other SQLite type is "x" (the writer
 * never stores one, so such a row never matches). Its digest is the first 16 bytes of the
 * SHA-256 of that encoding.
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
 * check_rows(fetch, lo, hi, boundary, since, until, starts, ends, limit) -> list[(id, code)]
 *   The same check of rows read by the caller (a store on PostgreSQL): fetch(lo, hi) is
 *   called once with the widened span and gives an iterable of rows in id order, each a
 *   sequence of the 16 columns SELECT below names, as None, int or str (any other type is
 *   encoded "x"). Errors raised by fetch or its rows propagate.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init and co: see sha_digest */
#include <openssl/sha.h>
#include <sqlite3.h>
#include <stdint.h>
#include <limits.h>
#include <string.h>

#define DIGEST 16
#define START_TAG "query start v1"
#define END_TAG "query end v1"

typedef struct {
    unsigned char *data;
    size_t size, cap;
} Buf;

static int buf_add(Buf *b, const void *bytes, size_t n) {
    if (b->size + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->size + n)
            cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (grown == NULL)
            return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
    return 0;
}

static int add_null(Buf *b) { return buf_add(b, "n", 1); }

static int add_int(Buf *b, long long v) {
    char number[32];
    int len = snprintf(number, sizeof number, "i%lld;", v);
    return buf_add(b, number, (size_t)len);
}

static int add_text(Buf *b, const void *s, size_t n) {
    char head[32];
    int len = snprintf(head, sizeof head, "s%zu:", n);
    return buf_add(b, head, (size_t)len) || buf_add(b, s, n);
}

/* OpenSSL's low-level SHA-256 on a context on the stack: the EVP interface, and OpenSSL 3's
 * one-shot SHA256() built on it, look the algorithm up and allocate on every digest, which
 * costs several times the hashing of a record this size. */
static void sha_digest(const Buf *b, unsigned char out[DIGEST]) {
    unsigned char full[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, b->data, b->size);
    SHA256_Final(full, &ctx);
    memcpy(out, full, DIGEST);
}

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

/* -- check(...) ---------------------------------------------------------------------- */

enum { BOUND_START = 1, BOUND_END = 2, SEEN = 4 };

typedef struct {
    long long lo, n, boundary, limit, found; /* lo, n: the ids the commits bind */
    long long scan_lo, scan_hi; /* the ids read: those, and the given range's */
    unsigned char *flags, *starts, *ends;
    const char *since, *until;
    long long *ids;
    int *codes;
} Check;

static int found(Check *c, long long id, int code) {
    if (c->found >= c->limit)
        return 1;
    c->ids[c->found] = id;
    c->codes[c->found] = code;
    c->found += 1;
    return c->found >= c->limit;
}

/* A row being checked: the current row of the SQLite scan, or a Python sequence of the same
 * 16 columns (rows read by the caller, on PostgreSQL). Its columns are read through these. */
typedef struct {
    sqlite3_stmt *st;
    PyObject *const *items; /* the Python row's items, when st is NULL */
} Row;

enum { COL_NULL, COL_INT, COL_TEXT, COL_OTHER };

static int col_type(const Row *r, int col) {
    if (r->st != NULL) {
        switch (sqlite3_column_type(r->st, col)) {
        case SQLITE_NULL: return COL_NULL;
        case SQLITE_INTEGER: return COL_INT;
        case SQLITE_TEXT: return COL_TEXT;
        default: return COL_OTHER;
        }
    }
    PyObject *item = r->items[col];
    if (item == Py_None)
        return COL_NULL;
    if (PyLong_CheckExact(item))
        return COL_INT;
    return PyUnicode_CheckExact(item) ? COL_TEXT : COL_OTHER;
}

/* A text column's UTF-8 bytes (col_type said COL_TEXT); NULL with an exception set. */
static const char *col_text(const Row *r, int col, size_t *n) {
    if (r->st != NULL) {
        *n = (size_t)sqlite3_column_bytes(r->st, col);
        return (const char *)sqlite3_column_text(r->st, col);
    }
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(r->items[col], &len);
    *n = (size_t)len;
    return s;
}

/* An integer column (col_type said COL_INT); -1 with an exception set on overflow. */
static int col_int(const Row *r, int col, long long *v) {
    if (r->st != NULL) {
        *v = (long long)sqlite3_column_int64(r->st, col);
        return 0;
    }
    *v = PyLong_AsLongLong(r->items[col]);
    return *v == -1 && PyErr_Occurred() ? -1 : 0;
}

/* -1 out of memory, -2 with an exception set (a Python row only). */
static int add_column(Buf *b, const Row *r, int col) {
    switch (col_type(r, col)) {
    case COL_NULL: return add_null(b);
    case COL_INT: {
        long long v;
        return col_int(r, col, &v) ? -2 : add_int(b, v);
    }
    case COL_TEXT: {
        size_t n;
        const char *s = col_text(r, col, &n);
        return s == NULL ? -2 : add_text(b, s, n);
    }
    default: return buf_add(b, "x", 1);
    }
}

static const char SELECT[] =
    "SELECT id, session_id, at, protocol_step, sql, parameters, refused_reason,"
    " statement_kind, query_key, kept_whole, finished_at, rows, command_tag, sqlstate,"
    " duration_us, masked_columns FROM queries WHERE id BETWEEN ? AND ? ORDER BY id";
#define COLUMNS 16
static const int START_COLUMNS[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const int END_COLUMNS[] = {10, 11, 12, 13, 14, 15};

/* The digest of the current row's start (or end) record into out; -1 out of memory, -2
 * with an exception set. */
static int row_digest(const Row *r, int end, Buf *b, unsigned char out[DIGEST]) {
    const int *cols = end ? END_COLUMNS : START_COLUMNS;
    int count = end ? 6 : 9, rc;
    const char *tag = end ? END_TAG : START_TAG;
    b->size = 0;
    if (add_text(b, tag, strlen(tag)))
        return -1;
    if ((rc = add_column(b, r, 0)) != 0)
        return rc;
    for (int i = 0; i < count; i++)
        if ((rc = add_column(b, r, cols[i])) != 0)
            return rc;
    sha_digest(b, out);
    return 0;
}

/* 1 when the row's time is in [since, until), 0 when not, -2 with an exception set. */
static int in_span(const Row *r, const Check *c) {
    if (col_type(r, 2) != COL_TEXT)
        return 1; /* a time the writer never writes: judged as in the span */
    size_t n;
    const char *at = col_text(r, 2, &n);
    if (at == NULL)
        return -2;
    return strcmp(at, c->since) >= 0 && strcmp(at, c->until) < 0;
}

static int finished(const Row *r) {
    for (int i = 0; i < 6; i++)
        if (col_type(r, END_COLUMNS[i]) != COL_NULL)
            return 1;
    return 0;
}

/* A row of [since, until) from `boundary` on that no commit binds: 1 when the limit is
 * reached, -2 with an exception set. */
static int unbound(const Row *r, Check *c, long long id) {
    if (id < c->boundary)
        return 0;
    int in = in_span(r, c);
    return in < 0 ? in : in && found(c, id, 2);
}

/* One row against its expectations; -1 out of memory, -2 with an exception set, 1 when
 * the limit is reached. */
static int check_row(const Row *r, Check *c, Buf *b) {
    long long id, i;
    unsigned char got[DIGEST];
    int rc;
    if (col_type(r, 0) != COL_INT) {
        if (r->st == NULL)
            PyErr_SetString(PyExc_ValueError, "a query log row's id is not an integer");
        return -2;
    }
    if (col_int(r, 0, &id))
        return -2;
    i = id - c->lo;
    if (i < 0 || i >= c->n) /* no commit read binds this id */
        return unbound(r, c, id);
    c->flags[i] |= SEEN;
    if (!(c->flags[i] & BOUND_START)) {
        if ((rc = unbound(r, c, id)) != 0)
            return rc;
    } else {
        if ((rc = row_digest(r, 0, b, got)) != 0)
            return rc;
        if (memcmp(got, c->starts + i * DIGEST, DIGEST) != 0 && found(c, id, 1))
            return 1;
    }
    if (c->flags[i] & BOUND_END) {
        if ((rc = row_digest(r, 1, b, got)) != 0)
            return rc;
        if (memcmp(got, c->ends + i * DIGEST, DIGEST) != 0 && found(c, id, 4))
            return 1;
    } else if ((c->flags[i] & BOUND_START) && finished(r) && found(c, id, 5)) {
        return 1;
    }
    return 0;
}

/* The bound rows the scan never saw: deleted (or renumbered). */
static void gone(Check *c) {
    for (long long i = 0; i < c->n && c->found < c->limit; i++)
        if ((c->flags[i] & (BOUND_START | BOUND_END)) && !(c->flags[i] & SEEN))
            found(c, c->lo + i, 3);
}

static const char *scan(sqlite3 *db, Check *c, char *detail, size_t detail_size) {
    sqlite3_stmt *st = NULL;
    Buf b = {0};
    const char *failure = NULL;
    Row row = {0};
    if (sqlite3_prepare_v2(db, SELECT, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_int64(st, 1, c->scan_lo) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, c->scan_hi) != SQLITE_OK) {
        snprintf(detail, detail_size, "%s", sqlite3_errmsg(db));
        failure = detail;
    }
    while (failure == NULL) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            snprintf(detail, detail_size, "%s", sqlite3_errmsg(db));
            failure = detail;
            break;
        }
        row.st = st;
        int done = check_row(&row, c, &b);
        if (done < 0)
            failure = done == -1 ? "out of memory" : "a row of a type the writer never writes";
        if (done)
            break;
    }
    if (failure == NULL)
        gone(c);
    sqlite3_finalize(st);
    free(b.data);
    return failure;
}

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

static const char *run(const char *path, Check *c, char *detail, size_t size) {
    sqlite3 *db = NULL;
    const char *failure = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(db, 15000) != SQLITE_OK) {
        snprintf(detail, size, "%s", db ? sqlite3_errmsg(db) : "cannot open");
        failure = detail;
    } else if (c->scan_lo <= c->scan_hi) {
        failure = scan(db, c, detail, size);
    }
    sqlite3_close(db);
    return failure;
}

/* The rows fetch(scan_lo, scan_hi) gives, in id order, against the expectations (under the
 * GIL: they are Python objects); -1 with an exception set. */
static int scan_rows(PyObject *fetch, Check *c) {
    if (c->scan_lo > c->scan_hi)
        return 0;
    PyObject *rows = PyObject_CallFunction(fetch, "LL", c->scan_lo, c->scan_hi);
    PyObject *it = rows == NULL ? NULL : PyObject_GetIter(rows);
    Py_XDECREF(rows);
    if (it == NULL)
        return -1;
    Buf b = {0};
    int rc = 0;
    PyObject *item;
    while (rc == 0 && (item = PyIter_Next(it)) != NULL) {
        PyObject *fast = PySequence_Fast(item, "a query log row is a sequence of its columns");
        Py_DECREF(item);
        if (fast == NULL) {
            rc = -2;
        } else if (PySequence_Fast_GET_SIZE(fast) != COLUMNS) {
            PyErr_SetString(PyExc_ValueError, "a query log row has 16 columns");
            rc = -2;
        } else {
            Row row = {NULL, PySequence_Fast_ITEMS(fast)};
            rc = check_row(&row, c, &b);
        }
        Py_XDECREF(fast);
    }
    Py_DECREF(it);
    free(b.data);
    if (rc == -1)
        PyErr_NoMemory();
    if (rc < 0 || PyErr_Occurred())
        return -1;
    gone(c);
    return 0;
}

/* Check the rows of the SQLite file at path (the GIL released), or those fetch gives. */
static PyObject *checked(const char *path, PyObject *fetch, Check *c, PyObject *seq,
                         const Py_buffer *ends) {
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
        if (scan_rows(fetch, c) == 0)
            out = results(c);
    } else {
        expect(c, seq, ends);
        const char *failure;
        char detail[256] = "";
        Py_BEGIN_ALLOW_THREADS
        failure = run(path, c, detail, sizeof detail);
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

/* check() and check_rows(): the expectations parsed, the span widened, then checked. */
static PyObject *check_any(PyObject *args, int rows) {
    const char *path = NULL;
    PyObject *fetch = NULL, *starts, *seq, *out = NULL;
    Py_buffer ends;
    Check c = {0};
    long long lo, hi, bound_lo = LLONG_MAX, bound_hi = LLONG_MIN;
    int parsed = rows ? PyArg_ParseTuple(args, "OLLLssOy*L", &fetch, &lo, &hi, &c.boundary,
                                         &c.since, &c.until, &starts, &ends, &c.limit)
                      : PyArg_ParseTuple(args, "sLLLssOy*L", &path, &lo, &hi, &c.boundary,
                                         &c.since, &c.until, &starts, &ends, &c.limit);
    if (!parsed)
        return NULL;
    if (rows && !PyCallable_Check(fetch)) {
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
        out = checked(path, fetch, &c, seq, &ends);
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
    {"check_rows", check_rows, METH_VARARGS, "Check rows given by a callable, the same way."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastqlog", "Statement records hashed and checked in bulk.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastqlog(void) { return PyModule_Create(&module); }
