-- 0016 (PostgreSQL twin of ../0016_week_indexes.sql): the weekly review and the daily flags
-- read one week (or day) of the two big tables by time.
CREATE INDEX queries_at ON queries(at);
CREATE INDEX audit_events_at ON audit_events(at);
