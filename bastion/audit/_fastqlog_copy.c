/* The query log's rows as PostgreSQL's COPY (SELECT ...) TO STDOUT (FORMAT binary) streams
 * them, parsed and checked as the bytes come, in whatever pieces (no Python object per row).
 *
 * The stream: an 11-byte signature, flags (int32; bits 0-16, a format unknown here or OIDs
 * included, are refused), a header extension (int32 length, skipped); then per row an int16
 * count of fields (16 here), each an int32 length (-1 for NULL) and that many bytes; then the
 * trailer, a count of -1. Integers are big-endian; an integer column's value is big-endian of
 * its width, a text column's its bytes in the client encoding (UTF-8). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_fastqlog.h"

static const char SIGNATURE[] = "PGCOPY\n\377\r\n"; /* and its NUL: 11 bytes */
#define SIGNATURE_SIZE 11

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int bad(const char *what) {
    PyErr_Format(PyExc_ValueError, "the query log's row stream is not as expected: %s", what);
    return -1;
}

/* A column's bytes as its kind says: -1 with an exception set when they can't be that. */
static int column(char kind, const unsigned char *p, int32_t len, Col *out) {
    if (len < 0) {
        out->type = COL_NULL;
        return 0;
    }
    if (kind == 's') {
        out->type = COL_TEXT;
        out->s = (const char *)p;
        out->n = (size_t)len;
        return 0;
    }
    if (kind != '8' && kind != '4' && kind != '2') {
        out->type = COL_OTHER; /* a type the writer never writes: never matches */
        return 0;
    }
    if (len != kind - '0')
        return bad("an integer of the wrong width");
    uint64_t v = 0;
    for (int32_t k = 0; k < len; k++)
        v = v << 8 | p[k];
    out->type = COL_INT;
    out->v = len == 8 ? (long long)(int64_t)v
             : len == 4 ? (long long)(int32_t)(uint32_t)v
                        : (long long)(int16_t)(uint16_t)v;
    return 0;
}

/* One row from p (at most n bytes): its size, 0 when it is not all there yet, -1 with an
 * exception set. A count of -1 is the trailer (size 2, stage STREAM_END). */
static Py_ssize_t one_row(Stream *s, const unsigned char *p, size_t n, Row *row) {
    if (n < 2)
        return 0;
    int16_t count = (int16_t)(uint16_t)(p[0] << 8 | p[1]);
    if (count == -1) {
        s->stage = STREAM_END;
        return 2;
    }
    if (count != COLUMNS)
        return bad("a row without the 16 columns read");
    size_t at = 2;
    for (int col = 0; col < COLUMNS; col++) {
        if (n - at < 4)
            return 0;
        int32_t len = (int32_t)be32(p + at);
        at += 4;
        if (len < -1)
            return bad("a negative length");
        if (len >= 0 && n - at < (size_t)len)
            return 0;
        if (column(s->kinds[col], p + at, len, &row->cols[col]))
            return -1;
        at += len > 0 ? (size_t)len : 0;
    }
    return (Py_ssize_t)at;
}

/* The signature, flags and extension from p: their size, 0 when not all there, -1. */
static Py_ssize_t head(Stream *s, const unsigned char *p, size_t n) {
    if (n < SIGNATURE_SIZE + 8)
        return 0;
    if (memcmp(p, SIGNATURE, SIGNATURE_SIZE) != 0)
        return bad("no binary COPY signature");
    if (be32(p + SIGNATURE_SIZE) & 0x1ffffu) /* bit 16: OIDs; bits 0-15: a format unknown */
        return bad("OIDs included, or a format of another version");
    uint32_t extension = be32(p + SIGNATURE_SIZE + 4);
    if (extension > n - SIGNATURE_SIZE - 8)
        return 0;
    s->stage = STREAM_ROWS;
    return SIGNATURE_SIZE + 8 + (Py_ssize_t)extension;
}

/* What of p (n bytes) can be parsed and checked now: its size, or -1. */
static Py_ssize_t parse(Stream *s, const unsigned char *p, size_t n) {
    size_t at = 0;
    Row row;
    while (at < n) {
        Py_ssize_t used;
        int was = s->stage;
        if (s->stage == STREAM_HEAD)
            used = head(s, p + at, n - at);
        else if (s->stage == STREAM_ROWS)
            used = one_row(s, p + at, n - at, &row);
        else if (s->stage == STREAM_FULL)
            return (Py_ssize_t)n; /* the limit is reached: the rest is not read */
        else
            return bad("bytes after the trailer");
        if (used <= 0)
            return used < 0 ? -1 : (Py_ssize_t)at;
        at += (size_t)used;
        if (was != STREAM_ROWS || s->stage != STREAM_ROWS)
            continue; /* the head, or the trailer: no row */
        int rc = check_row(&row, s->c, &s->record);
        if (rc == -1) {
            PyErr_NoMemory();
            return -1;
        }
        if (rc == -2) {
            PyErr_SetString(PyExc_ValueError, "a query log row's id is not an integer");
            return -1;
        }
        if (rc == 1)
            s->stage = STREAM_FULL;
    }
    return (Py_ssize_t)at;
}

int stream_feed(Stream *s, const char *bytes, size_t n) {
    const unsigned char *p = (const unsigned char *)bytes;
    Py_ssize_t used;
    if (s->pending.size == 0) { /* most rows are read from the piece itself */
        if ((used = parse(s, p, n)) < 0)
            return -1;
        return buf_add(&s->pending, p + used, n - (size_t)used) ? (PyErr_NoMemory(), -1) : 0;
    }
    if (buf_add(&s->pending, p, n)) {
        PyErr_NoMemory();
        return -1;
    }
    if ((used = parse(s, s->pending.data, s->pending.size)) < 0)
        return -1;
    memmove(s->pending.data, s->pending.data + used, s->pending.size - (size_t)used);
    s->pending.size -= (size_t)used;
    return 0;
}

int stream_end(Stream *s) {
    if (s->stage == STREAM_FULL)
        return 0;
    if (s->stage != STREAM_END || s->pending.size != 0)
        return bad("it ended before its trailer");
    gone(s->c);
    return 0;
}
