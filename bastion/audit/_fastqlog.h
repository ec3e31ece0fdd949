/* What the query log check's C files share (bastion/audit/_fastqlog.c describes the module):
 * the record encoding's buffer, a row's columns as read, and the check's state. */
#ifndef BASTION_FASTQLOG_H
#define BASTION_FASTQLOG_H

#include <stddef.h>

#define DIGEST 16
#define COLUMNS 16 /* as SELECT_COLUMNS names them */
#define SELECT_COLUMNS                                                                      \
    "id, session_id, at, protocol_step, sql, parameters, refused_reason, statement_kind,"  \
    " query_key, kept_whole, finished_at, rows, command_tag, sqlstate, duration_us,"       \
    " masked_columns"

typedef struct {
    unsigned char *data;
    size_t size, cap;
} Buf;

/* A column as read: its type, and its value (an integer, or text's UTF-8 bytes, not owned). */
enum { COL_NULL, COL_INT, COL_TEXT, COL_OTHER };
typedef struct {
    int type;
    long long v;
    const char *s;
    size_t n;
} Col;
typedef struct {
    Col cols[COLUMNS];
} Row;

enum { BOUND_START = 1, BOUND_END = 2, SEEN = 4 };

typedef struct {
    long long lo, n, boundary, limit, found; /* lo, n: the ids the commits bind */
    long long scan_lo, scan_hi; /* the ids read: those, and the given range's */
    unsigned char *flags, *starts, *ends;
    const char *since, *until;
    long long *ids;
    int *codes;
} Check;

/* _fastqlog_record.c: the encoding, the digest, one row's check. */
int buf_add(Buf *b, const void *bytes, size_t n);
int add_null(Buf *b);
int add_int(Buf *b, long long v);
int add_text(Buf *b, const void *s, size_t n);
void sha_digest(const Buf *b, unsigned char out[DIGEST]);
/* 0, 1 when the limit is reached, -1 out of memory, -2 when the id is not an integer. */
int check_row(const Row *r, Check *c, Buf *b);
void gone(Check *c);

/* _fastqlog_sqlite.c: the rows of a SQLite file, checked (no Python: runs without the GIL);
 * NULL, or why it failed (in detail, or a constant). */
const char *check_file(const char *path, Check *c, char *detail, size_t size);

/* _fastqlog_copy.c: the rows of a COPY ... TO STDOUT (FORMAT binary) stream, checked. */
typedef struct {
    Check *c;
    Buf pending, record;
    const char *kinds; /* per column: '8', '4', '2' integers of that width, 's' text, 'x' other */
    int stage; /* STREAM_HEAD, STREAM_ROWS, STREAM_END (trailer read), STREAM_FULL (limit) */
} Stream;
enum { STREAM_HEAD, STREAM_ROWS, STREAM_END, STREAM_FULL };
/* Feed the next bytes: 0, or -1 with a Python exception set. */
int stream_feed(Stream *s, const char *bytes, size_t n);
/* The stream is over: 0 (the bound rows never seen are named), or -1 with an exception. */
int stream_end(Stream *s);

#endif
