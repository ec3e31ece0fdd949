-- 0003: the PostgreSQL door's query log and one-time tickets.

ALTER TABLE queries ADD COLUMN statement_kind TEXT;
ALTER TABLE queries ADD COLUMN command_tag TEXT;
ALTER TABLE queries ADD COLUMN sqlstate TEXT;
ALTER TABLE queries ADD COLUMN finished_at TEXT;
ALTER TABLE queries ADD COLUMN query_key TEXT;     -- the door's id for the statement, unique
CREATE UNIQUE INDEX queries_key ON queries(query_key);
CREATE INDEX queries_session ON queries(session_id, at);
CREATE INDEX queries_at ON queries(at);

-- A ticket is shown once; only its SHA-256 is kept, so the store cannot replay it.
CREATE TABLE tickets (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    target_id   INTEGER NOT NULL REFERENCES targets(id),
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
