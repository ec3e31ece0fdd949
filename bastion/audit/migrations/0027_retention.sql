-- 0027: retention with legal holds (see the twin in postgresql/ and bastion/retention.py).
--
-- A legal hold keeps a user's, a target's or a session's evidence from retention until it
-- is released (with a reason). A checkpoint is where the chain now starts: the last archived
-- event's seq and MAC, the archive file that holds what was cut, and a signature under the
-- anchor key; the same facts are chained as a retention.checkpoint event. The delete
-- trigger lets go only of events a checkpoint covers (inserted first, in the same
-- transaction); any other delete is refused as before. A session whose recording retention
-- deleted says when, so replay and verify tell "pruned by retention" from "missing".

CREATE TABLE legal_holds (
    id             INTEGER PRIMARY KEY,
    scope          TEXT NOT NULL CHECK (scope IN ('user', 'target', 'session')),
    value          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    added_by       TEXT NOT NULL,
    added_at       TEXT NOT NULL,
    released_by    TEXT,
    released_at    TEXT,
    release_reason TEXT
);

CREATE TABLE chain_checkpoints (
    seq            INTEGER PRIMARY KEY,
    head           TEXT NOT NULL,
    cut_at         TEXT NOT NULL,
    made_at        TEXT NOT NULL,
    archive        TEXT NOT NULL,
    archive_sha256 TEXT NOT NULL,
    node           TEXT NOT NULL,
    sig            TEXT NOT NULL
);

ALTER TABLE sessions ADD COLUMN recording_pruned_at TEXT;

DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM chain_checkpoints WHERE chain_checkpoints.seq >= OLD.seq)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
