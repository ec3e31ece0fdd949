/* Rewriting a run of DataRow messages with some columns masked, in one pass over the bytes.
 *
 * The same work as bastion.masking.rows.mask_run_python, which stays the reference: the tests
 * check that both give the same bytes for any input. Every length is checked against the end
 * of its row before it is used; a row that does not add up raises RowShape and nothing of the
 * run is returned.
 *
 * mask_run(data: bytes-like, plan: tuple[tuple[int, int, callable], ...]) -> bytes
 *   data: bytes, or a view of the read they lie in; the result is written straight into the
 *   bytes object returned.
 *   plan: (column index, kind, fallback) sorted by index; kinds: 0 NULL, 1 full ("****"),
 *   2 partial (ASCII here; anything else goes to the fallback), 3 call the fallback,
 *   4 + (shapes << 8) scan: the value is copied as it is unless candidates() finds one of
 *   `shapes` in it, and only then the fallback (the detectors) is called.
 *
 * candidates(value: bytes) -> int: the candidate shapes in a value, the same bits as
 *   bastion.masking.detect.candidates, its reference (a test checks both agree).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { KIND_NULL = 0, KIND_FULL = 1, KIND_PARTIAL = 2, KIND_CALL = 3, KIND_SCAN = 4 };
enum { SHAPE_AT = 1, SHAPE_DIGITS = 2, SHAPE_IBAN = 4, SHAPE_DOTTED = 8, SHAPE_COLONS = 16,
       SHAPE_ESCAPE = 32, SHAPE_UNICODE = 64, SHAPE_ALL = 127 };
#define MIN_DIGITS 7
#define KEEP_DIGITS 4
#define MAX_PLAN 1600 /* PostgreSQL allows at most 1664 result columns */

static PyObject *RowShape;

/* The run being written, straight into the bytes object returned (resized as it grows). */
typedef struct {
    PyObject *obj;
    char *data;
    Py_ssize_t size, used;
} Out;

/* Room for `more` bytes: grown (doubled at least) when the room is not there. */
static int out_grow(Out *out, Py_ssize_t more) {
    if (more < 0 || out->used > PY_SSIZE_T_MAX - more) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = out->used + more;
    if (need <= out->size)
        return 0;
    Py_ssize_t grown = out->size > PY_SSIZE_T_MAX / 2 ? need : out->size * 2;
    if (grown < need)
        grown = need;
    if (_PyBytes_Resize(&out->obj, grown) < 0) /* which drops it, and says why */
        return -1;
    out->data = PyBytes_AS_STRING(out->obj);
    out->size = grown;
    return 0;
}

static inline int out_reserve(Out *out, Py_ssize_t more) {
    if (more >= 0 && more <= out->size - out->used)
        return 0;
    return out_grow(out, more);
}

static inline int out_put(Out *out, const void *bytes, Py_ssize_t n) {
    if (out_reserve(out, n) < 0)
        return -1;
    memcpy(out->data + out->used, bytes, (size_t)n);
    out->used += n;
    return 0;
}

static int out_int32(Out *out, int32_t value) {
    uint32_t v = (uint32_t)value;
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    return out_put(out, b, 4);
}

static int32_t read_int32(const unsigned char *p) {
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
                     (uint32_t)p[3]);
}

static int16_t read_int16(const unsigned char *p) {
    return (int16_t)(((uint16_t)p[0] << 8) | (uint16_t)p[1]);
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int is_alpha(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

static int is_alnum(unsigned char c) { return is_digit(c) || is_alpha(c); }

static int is_hex(unsigned char c) {
    return is_digit(c) || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* What may sit between the digits of a phone, card or id number. */
static int is_digit_sep(unsigned char c) {
    return c == ' ' || c == '(' || c == ')' || c == '+' || c == '-' || c == '.' || c == '/';
}

/* Byte classes for the scan. */
enum {
    F_DIGIT = 1,  /* 0-9 */
    F_SEP = 2,    /* what may sit between the digits of a number: " ()+-./" */
    F_HEX = 4,    /* a letter that is a hex digit */
    F_ALPHA = 8,  /* A-Z a-z */
    F_RARE = 16,  /* "@", "\", or a byte that may begin a character the view folds */
    F_QUIET = 32, /* from no run counted, leaves none counted and finds nothing */
};
static unsigned char flags[256];

static void init_classes(void) {
    for (int c = 0; c < 256; c++) {
        unsigned char b = (unsigned char)c, f = 0;
        if (is_digit(b))
            f |= F_DIGIT;
        if (is_digit_sep(b))
            f |= F_SEP;
        if (is_alpha(b))
            f |= F_ALPHA | (is_hex(b) ? F_HEX : 0);
        int special = b == '@' || b == '\\' || b == 0xC2 || b == 0xE2 || b == 0xE3 || b == 0xEF;
        if (special)
            f |= F_RARE;
        if (!is_digit(b) && b != '.' && b != ':' && !special)
            f |= F_QUIET;
        flags[c] = f;
    }
}

/* A character the normalised view changes begins at v[i] (detect's FOLDED_BYTES): U+00A0,
 * U+00AD, U+2000-2015, U+202F, U+2060, U+2212, U+3000, U+FEFF, U+FF00-FF5F. */
static int folded_at(const unsigned char *v, Py_ssize_t i, Py_ssize_t n) {
    unsigned char a = v[i], b = i + 1 < n ? v[i + 1] : 0, c = i + 2 < n ? v[i + 2] : 0;
    if (a == 0xC2)
        return b == 0xA0 || b == 0xAD;
    if (i + 2 >= n)
        return 0;
    if (a == 0xE2)
        return (b == 0x80 && ((c >= 0x80 && c <= 0x95) || c == 0xAF)) ||
               (b == 0x81 && c == 0xA0) || (b == 0x88 && c == 0x92);
    if (a == 0xE3)
        return b == 0x80 && c == 0x80;
    if (a == 0xEF)
        return (b == 0xBB && c == 0xBF) || (b == 0xBC && c >= 0x80 && c <= 0xBF) ||
               (b == 0xBD && c >= 0x80 && c <= 0x9F);
    return 0;
}

/* Two letters, not inside a word, then two digits, where v[i] is the first of the digits. */
static int iban_head_at(const unsigned char *v, Py_ssize_t i, Py_ssize_t n) {
    return i >= 2 && i + 1 < n && (flags[v[i]] & F_DIGIT) && (flags[v[i + 1]] & F_DIGIT) &&
           (flags[v[i - 1]] & F_ALPHA) && (flags[v[i - 2]] & F_ALPHA) &&
           (i == 2 || !(flags[v[i - 3]] & (F_ALPHA | F_DIGIT)));
}

/* What a rare byte ("@", "\\", a folded character's first byte) adds at v[i]. */
static long rare_at(const unsigned char *v, Py_ssize_t i, Py_ssize_t n) {
    unsigned char c = v[i];
    if (c == '@')
        return SHAPE_AT;
    if (c == '\\')
        return i + 1 < n && v[i + 1] == 'u' ? SHAPE_ESCAPE : 0;
    return folded_at(v, i, n) ? SHAPE_UNICODE : 0;
}

/* The shapes one byte adds, and the runs it continues or ends (the reference's runs: digits
 * of a [0-9 ()+-./] run, dots and digits of a [0-9.] run, colons of a [0-9A-Fa-f:] run). */
typedef struct {
    Py_ssize_t digits, dots, dot_digits, colons;
    int dbl;
} Runs;

static long step(Runs *r, const unsigned char *v, Py_ssize_t i, Py_ssize_t n) {
    unsigned char c = v[i], f = flags[c];
    long found = 0;
    if (f & F_DIGIT) { /* in every run */
        if (++r->digits >= MIN_DIGITS)
            found |= SHAPE_DIGITS;
        if (++r->dot_digits >= 4 && r->dots >= 3)
            found |= SHAPE_DOTTED;
        if (i >= 2 && (flags[v[i - 1]] & F_ALPHA) && iban_head_at(v, i, n))
            found |= SHAPE_IBAN;
    } else if (f & F_ALPHA) {
        r->digits = r->dots = r->dot_digits = 0;
        if (!(f & F_HEX))
            r->colons = r->dbl = 0;
    } else if (f & F_SEP) { /* keeps a digit run going; only "." keeps a dotted one */
        r->colons = r->dbl = 0;
        if (c != '.')
            r->dots = r->dot_digits = 0;
        else if (++r->dots >= 3 && r->dot_digits >= 4)
            found |= SHAPE_DOTTED;
    } else if (c == ':') {
        r->digits = r->dots = r->dot_digits = 0;
        r->colons++;
        if (i > 0 && v[i - 1] == ':')
            r->dbl = 1;
        if (r->dbl || r->colons >= 6)
            found |= SHAPE_COLONS;
    } else {
        r->digits = r->dots = r->dot_digits = r->colons = r->dbl = 0;
        if (f & F_RARE)
            found |= rare_at(v, i, n);
    }
    return found;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether eight bytes are all quiet, read as one word: none is 0x80 or above, in ".-:" (that
 * is ".", "/", 0-9, ":"), "@" or "\\". A "no" is only a maybe: the bytes are then stepped one
 * by one ("/" is quiet, and so are most bytes above 0x7F). */
static inline int quiet8(const unsigned char *p) {
    uint64_t x;
    memcpy(&x, p, 8);
    if (x & HIGHS)
        return 0;
    uint64_t from_dot = x + ONES * (0x80 - '.'), past_colon = x + ONES * (0x80 - ':' - 1);
    uint64_t at = x ^ (ONES * '@'), backslash = x ^ (ONES * '\\');
    uint64_t found = (from_dot & ~past_colon) | ((at - ONES) & ~at) |
                     ((backslash - ONES) & ~backslash);
    return (found & HIGHS) == 0;
}

/* The candidate shapes in a value, in one pass. While no run is counted, the bytes that keep
 * it so (letters, separators but ".", most punctuation) are skipped in a tight loop; from a
 * digit, ".", ":" or a rare byte on, each byte is stepped until no run is counted again.
 * Stops once `enough` of the shapes are found (each one of them, or with `any` one). */
static long find_shapes(const unsigned char *v, Py_ssize_t n, long enough, int any) {
    long found = 0;
    Runs r = {0, 0, 0, 0, 0};
    Py_ssize_t i = 0;
    for (;;) {
        while (i + 8 <= n && quiet8(v + i))
            i += 8;
        while (i < n && (flags[v[i]] & F_QUIET))
            i++;
        if (i >= n)
            return found;
        do {
            found |= step(&r, v, i, n);
            i++;
            if (any ? (found & enough) != 0 : (found & enough) == enough)
                return found;
        } while (i < n && (r.digits | r.dots | r.dot_digits | r.colons | r.dbl));
    }
}

static long scan_shapes(const unsigned char *v, Py_ssize_t n) {
    return find_shapes(v, n, SHAPE_ALL, 0);
}

/* A value with its length word: "****" (shorter when the value is). */
static int put_full(Out *out, Py_ssize_t size) {
    Py_ssize_t n = size < 4 ? size : 4;
    if (out_int32(out, (int32_t)n) < 0)
        return -1;
    return out_put(out, "****", n);
}

static int put_call(Out *out, PyObject *fn, const unsigned char *v, Py_ssize_t size);

/* partial() on an ASCII value: j***@example.com, ***-**-6789, else full; any other value goes
 * to the fallback. */
static int put_partial(Out *out, PyObject *fn, const unsigned char *v, Py_ssize_t size) {
    Py_ssize_t ats = 0, digits = 0;
    unsigned char high = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        ats += v[i] == '@';
        digits += is_digit(v[i]);
        high |= v[i];
    }
    if (high >= 0x80)
        return put_call(out, fn, v, size);
    Py_ssize_t at = ats == 1 ? (const unsigned char *)memchr(v, '@', (size_t)size) - v : -1;
    if (at > 0 && at < size - 1) {
        if (out_int32(out, (int32_t)size) < 0 || out_reserve(out, size) < 0)
            return -1;
        char *w = out->data + out->used;
        w[0] = (char)v[0];
        memset(w + 1, '*', (size_t)(at - 1));
        memcpy(w + at, v + at, (size_t)(size - at));
        out->used += size;
        return 0;
    }
    if (digits < 6)
        return put_full(out, size);
    Py_ssize_t cut = size, seen = 0;
    while (seen < KEEP_DIGITS) {
        cut--;
        seen += is_digit(v[cut]);
    }
    if (out_int32(out, (int32_t)size) < 0 || out_reserve(out, size) < 0)
        return -1;
    char *w = out->data + out->used;
    for (Py_ssize_t i = 0; i < cut; i++)
        w[i] = is_alnum(v[i]) ? '*' : (char)v[i];
    memcpy(w + cut, v + cut, (size_t)(size - cut));
    out->used += size;
    return 0;
}

/* The fallback's answer for one value: bytes, or None for NULL. */
static int put_call(Out *out, PyObject *fn, const unsigned char *v, Py_ssize_t size) {
    PyObject *value = PyBytes_FromStringAndSize((const char *)v, size);
    if (value == NULL)
        return -1;
    PyObject *masked = PyObject_CallOneArg(fn, value);
    Py_DECREF(value);
    if (masked == NULL)
        return -1;
    int rc;
    if (masked == Py_None) {
        rc = out_int32(out, -1);
    } else if (PyBytes_Check(masked) && PyBytes_GET_SIZE(masked) <= INT32_MAX) {
        Py_ssize_t n = PyBytes_GET_SIZE(masked);
        rc = out_int32(out, (int32_t)n) < 0 ? -1 : out_put(out, PyBytes_AS_STRING(masked), n);
    } else {
        PyErr_SetString(PyExc_TypeError, "a masker must return bytes or None");
        rc = -1;
    }
    Py_DECREF(masked);
    return rc;
}

static int put_masked(Out *out, long kind, PyObject *fn, const unsigned char *v,
                      Py_ssize_t size) {
    switch (kind & 0xff) {
    case KIND_NULL:
        return out_int32(out, -1);
    case KIND_FULL:
        return put_full(out, size);
    case KIND_PARTIAL:
        return put_partial(out, fn, v, size);
    case KIND_SCAN:
        return put_call(out, fn, v, size); /* a candidate: the detectors decide */
    default:
        return put_call(out, fn, v, size);
    }
}

/* A scan step whose value holds none of its shapes: nothing to rewrite. */
static int scan_passes(long kind, const unsigned char *v, Py_ssize_t size) {
    return (kind & 0xff) == KIND_SCAN && (find_shapes(v, size, kind >> 8, 1) & (kind >> 8)) == 0;
}

typedef struct {
    long index, kind;
    PyObject *fn; /* borrowed from the plan tuple */
} Step;

static int read_plan(PyObject *plan, Step *steps, Py_ssize_t *count) {
    if (!PyTuple_Check(plan) || PyTuple_GET_SIZE(plan) > MAX_PLAN) {
        PyErr_SetString(PyExc_TypeError, "plan must be a tuple of (index, kind, masker)");
        return -1;
    }
    *count = PyTuple_GET_SIZE(plan);
    for (Py_ssize_t i = 0; i < *count; i++) {
        PyObject *item = PyTuple_GET_ITEM(plan, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_TypeError, "plan must be a tuple of (index, kind, masker)");
            return -1;
        }
        steps[i].index = PyLong_AsLong(PyTuple_GET_ITEM(item, 0));
        steps[i].kind = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        steps[i].fn = PyTuple_GET_ITEM(item, 2);
        if (PyErr_Occurred())
            return -1;
        if (steps[i].index < 0 || (i > 0 && steps[i].index <= steps[i - 1].index)) {
            PyErr_SetString(PyExc_ValueError, "plan indexes must rise");
            return -1;
        }
    }
    return 0;
}

/* RowShape naming the column (counted from 1) when `column` is one, else the bare message. */
static int shape_error(const char *what, long column) {
    if (column >= 0)
        PyErr_Format(RowShape, what, column + 1);
    else
        PyErr_SetString(RowShape, what);
    return -1;
}

/* One DataRow (its body is row[0:end]): masked columns replaced, the rest copied. */
static int mask_one(Out *out, const unsigned char *row, Py_ssize_t end, const Step *steps,
                    Py_ssize_t nsteps) {
    int16_t count = read_int16(row);
    if (count < 0)
        return shape_error("DataRow claims a negative column count", -1);
    Py_ssize_t start = out->used; /* where this row's length word goes */
    if (out_put(out, "D\0\0\0\0", 5) < 0 || out_put(out, row, 2) < 0)
        return -1;
    Py_ssize_t at = 2, copied = 2;
    long column = 0;
    for (Py_ssize_t s = 0; s < nsteps && steps[s].index < count; s++) {
        int32_t size;
        Py_ssize_t stop;
        for (;;) {
            if (at + 4 > end)
                return shape_error("DataRow ends inside column %ld's length", column);
            size = read_int32(row + at);
            stop = at + 4 + (size > 0 ? size : 0);
            if (size < -1 || stop > end)
                return shape_error("DataRow column %ld claims more bytes than it has", column);
            if (column == steps[s].index)
                break;
            at = stop;
            column++;
        }
        if (size != -1 && !scan_passes(steps[s].kind, row + at + 4, size)) {
            if (out_put(out, row + copied, at - copied) < 0)
                return -1;
            if (put_masked(out, steps[s].kind, steps[s].fn, row + at + 4, size) < 0)
                return -1;
            copied = stop;
        }
        at = stop;
        column++;
    }
    if (out_put(out, row + copied, end - copied) < 0)
        return -1;
    Py_ssize_t length = out->used - start - 1;
    if (length > INT32_MAX)
        return shape_error("DataRow grew past its limit", -1);
    uint32_t v = (uint32_t)length;
    unsigned char *w = (unsigned char *)out->data + start + 1;
    w[0] = (unsigned char)(v >> 24);
    w[1] = (unsigned char)(v >> 16);
    w[2] = (unsigned char)(v >> 8);
    w[3] = (unsigned char)v;
    return 0;
}

static PyObject *mask_run(PyObject *self, PyObject *args) {
    Py_buffer buf;
    PyObject *plan;
    Step steps[MAX_PLAN];
    Py_ssize_t nsteps;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*O", &buf, &plan))
        return NULL;
    if (read_plan(plan, steps, &nsteps) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    const unsigned char *data = buf.buf;
    Py_ssize_t total = buf.len, pos = 0;
    Out out = {PyBytes_FromStringAndSize(NULL, total > 0 ? total : 1), NULL, total > 0 ? total : 1,
               0};
    if (out.obj == NULL) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    out.data = PyBytes_AS_STRING(out.obj);
    int rc = 0;
    while (rc == 0 && pos < total) {
        if (pos + 7 > total || data[pos] != 'D') {
            rc = shape_error("not a whole DataRow where a row starts", -1);
            break;
        }
        int32_t length = read_int32(data + pos + 1);
        if (length < 6 || length > total - pos - 1) {
            rc = shape_error("DataRow length does not fit its run", -1);
            break;
        }
        rc = mask_one(&out, data + pos + 5, (Py_ssize_t)length - 4, steps, nsteps);
        pos += 1 + (Py_ssize_t)length;
    }
    PyBuffer_Release(&buf);
    if (rc != 0 || out.obj == NULL) {
        Py_XDECREF(out.obj);
        return NULL;
    }
    if (_PyBytes_Resize(&out.obj, out.used) < 0)
        return NULL;
    return out.obj;
}

static PyObject *candidates(PyObject *self, PyObject *arg) {
    Py_buffer buf;
    (void)self;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    long found = scan_shapes(buf.buf, buf.len);
    PyBuffer_Release(&buf);
    return PyLong_FromLong(found);
}

static PyMethodDef methods[] = {
    {"mask_run", mask_run, METH_VARARGS, "Mask the planned columns of a run of DataRows."},
    {"candidates", candidates, METH_O, "The candidate shapes in a value (detect.candidates)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_fastrows",
    .m_doc = "DataRow masking in one pass (see mask_run).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fastrows(void) {
    init_classes();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    RowShape = PyErr_NewException("bastion.masking._fastrows.RowShape", PyExc_ValueError, NULL);
    if (RowShape == NULL || PyModule_AddObject(m, "RowShape", RowShape) < 0) {
        Py_XDECREF(RowShape);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(RowShape);
    return m;
}
