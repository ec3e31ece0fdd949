-- 0017 (PostgreSQL twin of ../0017_web_sessions.sql): the web console's sign-ins. The store
-- keeps only a digest of the cookie's secret.
CREATE TABLE web_sessions (
    id            text COLLATE "C" PRIMARY KEY,     -- public id, shown in lists and audit events
    token_sha256  text COLLATE "C" NOT NULL UNIQUE, -- SHA-256 of the cookie's secret
    user_id       bigint NOT NULL REFERENCES users(id),
    csrf_token    text COLLATE "C" NOT NULL,        -- sent back with every form and API write
    client_addr   text COLLATE "C" NOT NULL,
    started_at    text COLLATE "C" NOT NULL,
    last_seen_at  text COLLATE "C" NOT NULL,
    ended_at      text COLLATE "C",
    end_reason    text COLLATE "C"
);
CREATE INDEX web_sessions_live ON web_sessions(user_id) WHERE ended_at IS NULL;
