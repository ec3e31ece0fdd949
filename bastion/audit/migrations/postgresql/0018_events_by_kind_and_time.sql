-- 0018 (PostgreSQL twin of ../0018_events_by_kind_and_time.sql): events by kind and time
-- together, which also serves every read by kind alone.
CREATE INDEX audit_events_kind_at ON audit_events(kind, at);
DROP INDEX audit_events_kind;
