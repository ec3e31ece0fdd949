-- 0012: reusable tickets. A reusable ticket opens any number of database connections to one
-- target for one person until it expires, is revoked, or its grant ends. Its token is kept
-- only as HMAC-SHA-256 under a key derived from the secrets key (never stored), so neither
-- the store nor a copy of it can replay or even test a token. One-use tickets keep their
-- SHA-256 as before. A session opened with a ticket names it, so revoking the ticket ends it.
-- bastion: foreign_keys off

CREATE TABLE tickets_new (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    target_id     INTEGER NOT NULL REFERENCES targets(id),
    token_sha256  TEXT UNIQUE,                     -- one-use: SHA-256 of the token
    token_hmac    TEXT UNIQUE,                     -- reusable: keyed HMAC-SHA-256 of the token
    reusable      INTEGER NOT NULL DEFAULT 0 CHECK (reusable IN (0, 1)),
    grant_id      INTEGER REFERENCES grants(id),   -- reusable: the grant it lives under
    bind_address  TEXT,                            -- reusable: the client network it is bound to
    created_at    TEXT NOT NULL,
    created_by    TEXT,
    expires_at    TEXT NOT NULL,
    used_at       TEXT,                            -- one-use: when spent; reusable: last use
    uses          INTEGER NOT NULL DEFAULT 0,
    revoked_at    TEXT,
    revoked_by    TEXT,
    revoke_reason TEXT,
    CHECK ((reusable = 0 AND token_sha256 IS NOT NULL AND token_hmac IS NULL)
        OR (reusable = 1 AND token_hmac IS NOT NULL AND token_sha256 IS NULL
            AND grant_id IS NOT NULL))
);
INSERT INTO tickets_new (id, user_id, target_id, token_sha256, created_at, expires_at, used_at)
    SELECT id, user_id, target_id, token_sha256, created_at, expires_at, used_at FROM tickets;
DROP TABLE tickets;
ALTER TABLE tickets_new RENAME TO tickets;
CREATE INDEX tickets_user ON tickets(user_id, expires_at);

ALTER TABLE sessions ADD COLUMN ticket_id INTEGER REFERENCES tickets(id);
CREATE INDEX sessions_ticket ON sessions(ticket_id) WHERE ticket_id IS NOT NULL;
