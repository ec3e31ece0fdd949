-- 0001: people, targets, grants, sessions and the hash-chained audit trail.

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL CHECK (role IN ('engineer', 'admin', 'reviewer')),
    password_hash   TEXT,                       -- argon2id; never a secret in clear
    totp_sealed     BLOB NOT NULL,              -- TOTP seed sealed with the key outside the store
    totp_last_step  INTEGER NOT NULL DEFAULT -1,-- last time step accepted: a code is used once
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until    TEXT,
    disabled_at     TEXT,
    created_at      TEXT NOT NULL
);

CREATE TABLE ssh_keys (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    algorithm   TEXT NOT NULL,
    public_key  TEXT NOT NULL,                  -- OpenSSH one-line form, comment stripped
    fingerprint TEXT NOT NULL UNIQUE,
    comment     TEXT NOT NULL DEFAULT '',
    added_at    TEXT NOT NULL
);

CREATE TABLE targets (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('ssh', 'postgres')),
    host          TEXT NOT NULL,
    port          INTEGER NOT NULL,
    login         TEXT NOT NULL,                -- ssh login or database role
    database      TEXT,                         -- postgres only
    secret_sealed BLOB NOT NULL,                -- private key or password, sealed
    host_key      TEXT,                         -- pinned upstream host key, once trusted
    created_at    TEXT NOT NULL,
    removed_at    TEXT
);
CREATE UNIQUE INDEX targets_live_name ON targets(name) WHERE removed_at IS NULL;

CREATE TABLE grants (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    target_id   INTEGER NOT NULL REFERENCES targets(id),
    mode        TEXT NOT NULL CHECK (mode IN ('read', 'write')),
    starts_at   TEXT NOT NULL,
    ends_at     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    granted_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT,
    revoked_by  TEXT
);
CREATE INDEX grants_user_target ON grants(user_id, target_id);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    user_id          INTEGER REFERENCES users(id),
    target_id        INTEGER REFERENCES targets(id),
    grant_id         INTEGER REFERENCES grants(id),
    protocol         TEXT NOT NULL CHECK (protocol IN ('ssh', 'postgres', 'web')),
    client_addr      TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    ended_at         TEXT,
    state            TEXT NOT NULL DEFAULT 'open',
    recording_path   TEXT,
    recording_sha256 TEXT,
    recording_size   INTEGER
);
CREATE INDEX sessions_open ON sessions(state) WHERE ended_at IS NULL;

CREATE TABLE commands (
    id         INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    at         TEXT NOT NULL,
    channel    INTEGER,
    command    TEXT NOT NULL
);

CREATE TABLE queries (
    id             INTEGER PRIMARY KEY,
    session_id     TEXT NOT NULL REFERENCES sessions(id),
    at             TEXT NOT NULL,
    protocol_step  TEXT NOT NULL,               -- simple, parse, bind, execute
    sql            TEXT NOT NULL,
    parameters     TEXT,
    rows           INTEGER,
    masked_columns TEXT,
    refused_reason TEXT,
    duration_us    INTEGER
);

CREATE TABLE file_transfers (
    id         INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    at         TEXT NOT NULL,
    operation  TEXT NOT NULL,
    path       TEXT NOT NULL,
    path2      TEXT,
    bytes      INTEGER,
    sha256     TEXT
);

-- Append-only: every row carries the hash of the row before it and of its own
-- canonical content (see bastion/audit/chain.py). Triggers refuse casual edits;
-- `bastion audit verify` catches the rest.
CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    severity   TEXT NOT NULL CHECK (severity IN ('info', 'notice', 'warning', 'high')),
    actor      TEXT NOT NULL,
    subject    TEXT NOT NULL DEFAULT '',
    session_id TEXT,
    detail     TEXT NOT NULL,                   -- canonical JSON
    prev_hash  TEXT NOT NULL,
    row_hash   TEXT NOT NULL
);
CREATE INDEX audit_events_kind ON audit_events(kind);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
