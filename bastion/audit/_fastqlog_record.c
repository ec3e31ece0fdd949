/* The query log check's rules: a statement record's encoding and digest, and one row judged
 * against what the commits bind (bastion/audit/_fastqlog.c describes them). */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init and co: see sha_digest */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "_fastqlog.h"

#define START_TAG "query start v1"
#define END_TAG "query end v1"

int buf_add(Buf *b, const void *bytes, size_t n) {
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
    if (n)
        memcpy(b->data + b->size, bytes, n);
    b->size += n;
    return 0;
}

int add_null(Buf *b) { return buf_add(b, "n", 1); }

int add_int(Buf *b, long long v) {
    char number[32];
    int len = snprintf(number, sizeof number, "i%lld;", v);
    return buf_add(b, number, (size_t)len);
}

int add_text(Buf *b, const void *s, size_t n) {
    char head[32];
    int len = snprintf(head, sizeof head, "s%zu:", n);
    return buf_add(b, head, (size_t)len) || buf_add(b, s, n);
}

/* OpenSSL's low-level SHA-256 on a context on the stack: the EVP interface, and OpenSSL 3's
 * one-shot SHA256() built on it, look the algorithm up and allocate on every digest, which
 * costs several times the hashing of a record this size. */
void sha_digest(const Buf *b, unsigned char out[DIGEST]) {
    unsigned char full[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, b->data, b->size);
    SHA256_Final(full, &ctx);
    memcpy(out, full, DIGEST);
}

static int found(Check *c, long long id, int code) {
    if (c->found >= c->limit)
        return 1;
    c->ids[c->found] = id;
    c->codes[c->found] = code;
    c->found += 1;
    return c->found >= c->limit;
}

static int add_column(Buf *b, const Col *col) {
    switch (col->type) {
    case COL_NULL: return add_null(b);
    case COL_INT: return add_int(b, col->v);
    case COL_TEXT: return add_text(b, col->s, col->n);
    default: return buf_add(b, "x", 1);
    }
}

static const int START_COLUMNS[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
static const int END_COLUMNS[] = {10, 11, 12, 13, 14, 15};

/* The digest of the row's start (or end) record into out; -1 out of memory. */
static int row_digest(const Row *r, int end, Buf *b, unsigned char out[DIGEST]) {
    const int *cols = end ? END_COLUMNS : START_COLUMNS;
    int count = end ? 6 : 9;
    const char *tag = end ? END_TAG : START_TAG;
    b->size = 0;
    if (add_text(b, tag, strlen(tag)) || add_column(b, &r->cols[0]))
        return -1;
    for (int i = 0; i < count; i++)
        if (add_column(b, &r->cols[cols[i]]))
            return -1;
    sha_digest(b, out);
    return 0;
}

/* Whether the row's time is in [since, until): compared as C strings, up to a NUL. */
static int in_span(const Row *r, const Check *c) {
    const Col *at = &r->cols[2];
    if (at->type != COL_TEXT)
        return 1; /* a time the writer never writes: judged as in the span */
    char small[64];
    char *text = at->n < sizeof small ? small : malloc(at->n + 1);
    if (text == NULL)
        return 1; /* judged as in the span: a finding rather than none */
    memcpy(text, at->s, at->n);
    text[at->n] = '\0';
    int in = strcmp(text, c->since) >= 0 && strcmp(text, c->until) < 0;
    if (text != small)
        free(text);
    return in;
}

static int finished(const Row *r) {
    for (int i = 0; i < 6; i++)
        if (r->cols[END_COLUMNS[i]].type != COL_NULL)
            return 1;
    return 0;
}

/* A row of [since, until) from `boundary` on that no commit binds: 1 when the limit is
 * reached. */
static int unbound(const Row *r, Check *c, long long id) {
    if (id < c->boundary)
        return 0;
    return in_span(r, c) && found(c, id, 2);
}

int check_row(const Row *r, Check *c, Buf *b) {
    unsigned char got[DIGEST];
    int rc;
    if (r->cols[0].type != COL_INT)
        return -2;
    long long id = r->cols[0].v, i = id - c->lo;
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
void gone(Check *c) {
    for (long long i = 0; i < c->n && c->found < c->limit; i++)
        if ((c->flags[i] & (BOUND_START | BOUND_END)) && !(c->flags[i] & SEEN))
            found(c, c->lo + i, 3);
}
