-- 0018: the weekly review counts a few kinds of event in one week (refused logins, TOTP
-- failures, lockouts, break-glass). By kind alone each count read every such event the store
-- ever held; by time alone it read every event of the week (a million statements). Kind and
-- time together read only the week's events of those kinds, from the index alone, and still
-- serve every read by kind.
CREATE INDEX audit_events_kind_at ON audit_events(kind, at);
DROP INDEX audit_events_kind;
