-- 0017: the web console's sign-ins. The cookie carries a random secret; the store keeps only
-- its SHA-256, so a copy of the store holds no cookie that works. Each row lives until it is
-- ended (sign-out, sign-out everywhere, idle or absolute lifetime, user disabled).
CREATE TABLE web_sessions (
    id            TEXT PRIMARY KEY,              -- public id, shown in lists and audit events
    token_sha256  TEXT NOT NULL UNIQUE,          -- SHA-256 of the cookie's secret
    user_id       INTEGER NOT NULL REFERENCES users(id),
    csrf_token    TEXT NOT NULL,                 -- sent back with every form and API write
    client_addr   TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    ended_at      TEXT,
    end_reason    TEXT
);
CREATE INDEX web_sessions_live ON web_sessions(user_id) WHERE ended_at IS NULL;
