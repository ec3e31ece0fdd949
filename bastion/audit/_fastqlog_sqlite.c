/* The query log's rows read straight from a SQLite store file and checked (no Python objects:
 * the caller releases the GIL around check_file). */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "_fastqlog.h"

static const char SELECT[] =
    "SELECT " SELECT_COLUMNS " FROM queries WHERE id BETWEEN ? AND ? ORDER BY id";

/* The scan's current row, its columns as SQLite typed them. */
static void read_row(sqlite3_stmt *st, Row *r) {
    for (int col = 0; col < COLUMNS; col++) {
        Col *out = &r->cols[col];
        switch (sqlite3_column_type(st, col)) {
        case SQLITE_NULL: out->type = COL_NULL; break;
        case SQLITE_INTEGER:
            out->type = COL_INT;
            out->v = (long long)sqlite3_column_int64(st, col);
            break;
        case SQLITE_TEXT:
            out->type = COL_TEXT;
            out->s = (const char *)sqlite3_column_text(st, col);
            out->n = (size_t)sqlite3_column_bytes(st, col);
            break;
        default: out->type = COL_OTHER;
        }
    }
}

static const char *scan(sqlite3 *db, Check *c, char *detail, size_t detail_size) {
    sqlite3_stmt *st = NULL;
    Buf b = {0};
    const char *failure = NULL;
    Row row;
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
        read_row(st, &row);
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

const char *check_file(const char *path, Check *c, char *detail, size_t size) {
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
