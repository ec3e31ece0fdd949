-- 0021: several bastion nodes on one store. Each session names the node that holds it, so a
-- node that restarts closes only its own sessions left open by a crash (sessions opened
-- before this migration have no node: NULL). Leases elect one node for a job (the node's
-- own presence, the recordings' upload completer): a lease is held by one holder until it
-- expires or is released; `term` grows by one each time the lease changes hands, so a
-- holder that lost it can tell (a fencing token).
ALTER TABLE sessions ADD COLUMN node TEXT;
CREATE INDEX sessions_open_by_node ON sessions (node) WHERE ended_at IS NULL;
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    term INTEGER NOT NULL CHECK (term > 0),
    taken_at TEXT NOT NULL,
    renewed_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
