-- 0006: groups and grants to groups, break-glass, access requests and their approvals, and
-- the outbox of notifications that `bastion serve` delivers.

CREATE TABLE groups (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id),
    user_id  INTEGER NOT NULL REFERENCES users(id),
    added_at TEXT NOT NULL,
    added_by TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);

-- A grant now goes to one user or to one group. SQLite cannot relax NOT NULL in place, so the
-- table is rebuilt the way SQLite documents: foreign keys off, copy, drop, rename, then a
-- foreign key check before commit. Sessions keep their grant ids.
-- bastion: foreign_keys off
CREATE TABLE grants_new (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER REFERENCES users(id),
    group_id        INTEGER REFERENCES groups(id),
    target_id       INTEGER NOT NULL REFERENCES targets(id),
    mode            TEXT NOT NULL CHECK (mode IN ('read', 'write')),
    starts_at       TEXT NOT NULL,
    ends_at         TEXT NOT NULL,
    reason          TEXT NOT NULL,
    granted_by      TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    revoked_at      TEXT,
    revoked_by      TEXT,
    ticket_ref      TEXT,
    break_glass     INTEGER NOT NULL DEFAULT 0,  -- opened by the engineer in an emergency
    acknowledged_at TEXT,                        -- break-glass: when a reviewer looked at it
    acknowledged_by TEXT,
    request_id      INTEGER,                     -- the approved request it came from
    CHECK ((user_id IS NULL) <> (group_id IS NULL))
);
INSERT INTO grants_new (id, user_id, target_id, mode, starts_at, ends_at, reason, granted_by,
                        created_at, revoked_at, revoked_by, ticket_ref)
    SELECT id, user_id, target_id, mode, starts_at, ends_at, reason, granted_by,
           created_at, revoked_at, revoked_by, ticket_ref FROM grants;
DROP TABLE grants;
ALTER TABLE grants_new RENAME TO grants;
CREATE INDEX grants_user_target ON grants(user_id, target_id);
CREATE INDEX grants_group ON grants(group_id) WHERE group_id IS NOT NULL;
CREATE INDEX grants_unacknowledged ON grants(id) WHERE break_glass = 1 AND acknowledged_at IS NULL;

-- Every grant as it applies to one person: their own, and their groups' (one row per member).
CREATE VIEW effective_grants AS
    SELECT g.*, u.name AS user, NULL AS grp, t.name AS target, t.removed_at AS target_removed_at
      FROM grants g JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id
    UNION ALL
    SELECT g.*, u.name AS user, gr.name AS grp, t.name AS target, t.removed_at AS target_removed_at
      FROM grants g JOIN groups gr ON gr.id = g.group_id
      JOIN group_members m ON m.group_id = g.group_id JOIN users u ON u.id = m.user_id
      JOIN targets t ON t.id = g.target_id;

CREATE TABLE access_requests (
    id               INTEGER PRIMARY KEY,
    user_id          INTEGER NOT NULL REFERENCES users(id),   -- who would get access
    target_id        INTEGER NOT NULL REFERENCES targets(id),
    mode             TEXT NOT NULL CHECK (mode IN ('read', 'write')),
    duration_s       INTEGER NOT NULL CHECK (duration_s > 0), -- the window opens at approval
    reason           TEXT NOT NULL,
    ticket_ref       TEXT,
    requested_by     TEXT NOT NULL,                           -- the user, or an admin for them
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL,                           -- pending until then at most
    approvals_needed INTEGER NOT NULL CHECK (approvals_needed >= 0),
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
    decided_at       TEXT,
    decided_by       TEXT,
    decision_reason  TEXT,
    grant_id         INTEGER REFERENCES grants(id)
);
CREATE INDEX access_requests_pending ON access_requests(expires_at) WHERE state = 'pending';
CREATE INDEX access_requests_user ON access_requests(user_id);

CREATE TABLE request_approvals (
    request_id INTEGER NOT NULL REFERENCES access_requests(id),
    approver   TEXT NOT NULL,
    at         TEXT NOT NULL,
    duration_s INTEGER,                                       -- a shorter window, if asked
    PRIMARY KEY (request_id, approver)
);

-- Webhook messages, written in the same transaction as the event they announce, so none is
-- lost when the bastion stops; `bastion serve` posts them and retries with backoff.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    created_at      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    payload         TEXT NOT NULL,                            -- JSON body; never a secret
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at    TEXT,
    failed_at       TEXT,                                     -- gave up after the last retry
    last_error      TEXT
);
CREATE INDEX notifications_due ON notifications(next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
