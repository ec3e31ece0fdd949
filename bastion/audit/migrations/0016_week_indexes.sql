-- 0016: the weekly review and the daily flags read one week (or day) of the two big tables
-- by time. Without an index each of their reads walked every statement and every event the
-- store ever held; `at` only grows, so each index is appended to at its end (cheap to keep).
CREATE INDEX queries_at ON queries(at);
CREATE INDEX audit_events_at ON audit_events(at);
