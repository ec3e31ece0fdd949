/* Walking the keyed audit chain in compiled code: each row's MAC checked, in seq order.
 *
 * The same check as bastion.audit.chain.Walk.step for a chain already keyed, which stays the
 * reference (the tests compare both on random rows). This walker only ever vouches: it goes
 * on while each row follows the last one (seq + 1, prev_hash = the last MAC), is keyed and
 * carries the right HMAC-SHA-256, and stops at the first row it cannot vouch for, leaving the
 * verdict on that row (and its words) to the Python walk. A column of an unexpected type, a
 * NULL, anything unusual: it stops, and Python judges.
 *
 * walk(path: str, key: bytes, after: int, prev_hash: str, limit: int)
 *     -> (seq: int, mac: str, checked: int, stopped: int)
 *   Reads the store at path (read-only, its own connection) from the row after `after`.
 *   seq, mac: the last row vouched for (after and prev_hash when none); checked: how many.
 *   stopped 0: no row follows; 1: the next row was not vouched for; 2: `limit` rows done.
 *   The GIL is released while it walks. Raises OSError when the store can't be read.
 *
 * The MACed message is prev_hash "\n" canonical JSON of [seq, at, kind, severity, actor,
 * subject, session_id] "\n" detail (bastion.audit.chain._message), the JSON as Python's
 * json module writes it with no spaces and non-ASCII kept (json.encoder.encode_basestring).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdint.h>
#include <string.h>

#define KEYED "hmac-sha256"
#define MAC_HEX 64

typedef struct {
    char *data;
    size_t size, cap;
} Buf;

static int buf_reserve(Buf *b, size_t more) {
    if (b->size + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->size + more)
        cap *= 2;
    char *grown = realloc(b->data, cap);
    if (grown == NULL)
        return -1;
    b->data = grown;
    b->cap = cap;
    return 0;
}

static int buf_add(Buf *b, const void *bytes, size_t n) {
    if (buf_reserve(b, n))
        return -1;
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
    return 0;
}

/* A JSON string as json.encoder.encode_basestring writes it. */
static int buf_json_string(Buf *b, const unsigned char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (buf_reserve(b, n * 6 + 2))
        return -1;
    char *out = b->data + b->size;
    *out++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        switch (c) {
        case '"': *out++ = '\\'; *out++ = '"'; break;
        case '\\': *out++ = '\\'; *out++ = '\\'; break;
        case '\n': *out++ = '\\'; *out++ = 'n'; break;
        case '\r': *out++ = '\\'; *out++ = 'r'; break;
        case '\t': *out++ = '\\'; *out++ = 't'; break;
        case '\b': *out++ = '\\'; *out++ = 'b'; break;
        case '\f': *out++ = '\\'; *out++ = 'f'; break;
        default:
            if (c < 0x20) {
                memcpy(out, "\\u00", 4);
                out[4] = hex[c >> 4];
                out[5] = hex[c & 15];
                out += 6;
            } else {
                *out++ = (char)c;
            }
        }
    }
    *out++ = '"';
    b->size = (size_t)(out - b->data);
    return 0;
}

/* Column i as text, only if it is stored as TEXT; NULL otherwise. */
static const unsigned char *text_column(sqlite3_stmt *st, int i, size_t *n) {
    if (sqlite3_column_type(st, i) != SQLITE_TEXT)
        return NULL;
    const unsigned char *s = sqlite3_column_text(st, i);
    *n = (size_t)sqlite3_column_bytes(st, i);
    return s;
}

typedef struct {
    EVP_MD_CTX *inner_pad, *outer_pad, *work;
} Mac;

static int mac_init(Mac *m, const unsigned char *key, size_t key_len) {
    unsigned char block[64] = {0}, pad[64];
    m->inner_pad = EVP_MD_CTX_new();
    m->outer_pad = EVP_MD_CTX_new();
    m->work = EVP_MD_CTX_new();
    if (!m->inner_pad || !m->outer_pad || !m->work)
        return -1;
    if (key_len > 64) {
        unsigned int n = 0;
        if (!EVP_Digest(key, key_len, block, &n, EVP_sha256(), NULL))
            return -1;
    } else {
        memcpy(block, key, key_len);
    }
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x36;
    if (!EVP_DigestInit_ex(m->inner_pad, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(m->inner_pad, pad, 64))
        return -1;
    for (int i = 0; i < 64; i++)
        pad[i] = block[i] ^ 0x5c;
    if (!EVP_DigestInit_ex(m->outer_pad, EVP_sha256(), NULL) ||
        !EVP_DigestUpdate(m->outer_pad, pad, 64))
        return -1;
    return 0;
}

static void mac_free(Mac *m) {
    EVP_MD_CTX_free(m->inner_pad);
    EVP_MD_CTX_free(m->outer_pad);
    EVP_MD_CTX_free(m->work);
}

/* The lowercase hex HMAC of message into out (MAC_HEX characters). */
static int mac_hex(Mac *m, const Buf *message, char *out) {
    static const char hex[] = "0123456789abcdef";
    unsigned char inner[32], outer[32];
    unsigned int n = 0;
    if (!EVP_MD_CTX_copy_ex(m->work, m->inner_pad) ||
        !EVP_DigestUpdate(m->work, message->data, message->size) ||
        !EVP_DigestFinal_ex(m->work, inner, &n) ||
        !EVP_MD_CTX_copy_ex(m->work, m->outer_pad) ||
        !EVP_DigestUpdate(m->work, inner, sizeof inner) ||
        !EVP_DigestFinal_ex(m->work, outer, &n))
        return -1;
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[outer[i] >> 4];
        out[2 * i + 1] = hex[outer[i] & 15];
    }
    return 0;
}

/* The message MACed for the current row into msg; 1 if the row is not one this walker
 * vouches for (a column of another type), -1 when out of memory. */
static int row_message(sqlite3_stmt *st, const char *prev, size_t prev_len, Buf *msg) {
    char number[32];
    size_t n;
    msg->size = 0;
    if (buf_add(msg, prev, prev_len) || buf_add(msg, "\n[", 2))
        return -1;
    int len = snprintf(number, sizeof number, "%lld", (long long)sqlite3_column_int64(st, 0));
    if (buf_add(msg, number, (size_t)len))
        return -1;
    for (int col = 1; col <= 6; col++) { /* at, kind, severity, actor, subject, session_id */
        if (buf_add(msg, ",", 1))
            return -1;
        const unsigned char *s = text_column(st, col, &n);
        if (s == NULL) {
            if (col == 6 && sqlite3_column_type(st, col) == SQLITE_NULL) {
                if (buf_add(msg, "null", 4))
                    return -1;
                continue;
            }
            return 1;
        }
        if (buf_json_string(msg, s, n))
            return -1;
    }
    const unsigned char *detail = text_column(st, 7, &n);
    if (detail == NULL)
        return 1;
    if (buf_add(msg, "]\n", 2) || buf_add(msg, detail, n))
        return -1;
    return 0;
}

typedef struct {
    long long seq;
    char mac[MAC_HEX + 1];
    size_t mac_len;
    long long checked;
    int stopped;
} Walked;

static const char SELECT[] =
    "SELECT seq, at, kind, severity, actor, subject, session_id, detail, prev_hash, row_hash,"
    " alg FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?";

/* Whether the current row is keyed, follows `w` and carries its MAC: 1 yes, 0 no, -1 OOM. */
static int vouch(sqlite3_stmt *st, Walked *w, const char *prev, size_t prev_len, Mac *mac,
                 Buf *msg) {
    size_t n;
    if (sqlite3_column_type(st, 0) != SQLITE_INTEGER || sqlite3_column_int64(st, 0) != w->seq + 1)
        return 0;
    const unsigned char *alg = text_column(st, 10, &n);
    if (alg == NULL || n != strlen(KEYED) || memcmp(alg, KEYED, n) != 0)
        return 0;
    const unsigned char *prev_col = text_column(st, 8, &n);
    if (prev_col == NULL || n != prev_len || memcmp(prev_col, prev, n) != 0)
        return 0;
    const unsigned char *row_mac = text_column(st, 9, &n);
    if (row_mac == NULL || n != MAC_HEX)
        return 0;
    int made = row_message(st, prev, prev_len, msg);
    if (made != 0)
        return made < 0 ? -1 : 0;
    char want[MAC_HEX];
    if (mac_hex(mac, msg, want))
        return -1;
    unsigned char differ = 0;
    for (int i = 0; i < MAC_HEX; i++)
        differ |= (unsigned char)(want[i] ^ row_mac[i]);
    if (differ)
        return 0;
    w->seq += 1;
    memcpy(w->mac, row_mac, MAC_HEX);
    w->mac_len = MAC_HEX;
    return 1;
}

/* The walk itself, without the GIL. Returns NULL or a static description of the failure. */
static const char *walk_rows(sqlite3_stmt *st, Walked *w, const char *first_prev,
                             size_t first_len, Mac *mac, long long limit) {
    Buf msg = {0};
    const char *failure = NULL;
    w->stopped = 2;
    while (w->checked < limit) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            w->stopped = 0;
            break;
        }
        if (rc != SQLITE_ROW) {
            failure = "reading the audit events failed";
            break;
        }
        const char *prev = w->checked ? w->mac : first_prev;
        size_t prev_len = w->checked ? w->mac_len : first_len;
        int ok = vouch(st, w, prev, prev_len, mac, &msg);
        if (ok < 0) {
            failure = "out of memory";
            break;
        }
        if (ok == 0) {
            w->stopped = 1;
            break;
        }
        w->checked += 1;
    }
    free(msg.data);
    return failure;
}

static PyObject *walk(PyObject *self, PyObject *args) {
    (void)self;
    const char *path, *prev;
    Py_buffer key;
    long long after, limit;
    Py_ssize_t prev_len;
    if (!PyArg_ParseTuple(args, "sy*Ls#L", &path, &key, &after, &prev, &prev_len, &limit))
        return NULL;
    Walked w = {.seq = after, .mac_len = 0, .checked = 0, .stopped = 0};
    Mac mac = {0};
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    const char *failure = NULL;
    char detail[256] = "";
    Py_BEGIN_ALLOW_THREADS
    if (mac_init(&mac, key.buf, (size_t)key.len)) {
        failure = "the MAC could not be set up";
    } else if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
               sqlite3_busy_timeout(db, 15000) != SQLITE_OK ||
               sqlite3_prepare_v2(db, SELECT, -1, &st, NULL) != SQLITE_OK ||
               sqlite3_bind_int64(st, 1, after) != SQLITE_OK ||
               sqlite3_bind_int64(st, 2, limit + 1) != SQLITE_OK) {
        snprintf(detail, sizeof detail, "%s", db ? sqlite3_errmsg(db) : "cannot open");
        failure = detail;
    } else {
        failure = walk_rows(st, &w, prev, (size_t)prev_len, &mac, limit);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    mac_free(&mac);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&key);
    if (failure != NULL) {
        PyErr_Format(PyExc_OSError, "cannot walk the audit chain in %s: %s", path, failure);
        return NULL;
    }
    if (w.checked == 0)
        return Py_BuildValue("(Ls#Li)", w.seq, prev, prev_len, w.checked, w.stopped);
    return Py_BuildValue("(Ls#Li)", w.seq, w.mac, (Py_ssize_t)w.mac_len, w.checked, w.stopped);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "Walk the keyed chain from a row, vouching for each MAC."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastchain", "The compiled walk of the keyed audit chain.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastchain(void) { return PyModule_Create(&module); }
