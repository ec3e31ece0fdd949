-- 0004 (PostgreSQL twin of ../0004_query_log_indexes.sql): cheaper query-log writes. The
-- writer finds a statement's row by the id it assigned itself, and listings walk the primary
-- key, so these two indexes only cost each insert.

DROP INDEX queries_key;
DROP INDEX queries_at;
