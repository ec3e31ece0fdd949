-- 0014 (PostgreSQL twin of ../0014_report_runs.sql): the weekly review's runs, one row per
-- review week and channel ("build", "mail", "webhook"), retried with the notifications'
-- backoff.

CREATE TABLE report_runs (
    week            text COLLATE "C" NOT NULL,      -- the ISO label, e.g. 2026-W47
    channel         text COLLATE "C" NOT NULL CHECK (channel IN ('build', 'mail', 'webhook')),
    state           text COLLATE "C" NOT NULL
                    CHECK (state IN ('pending', 'done', 'failed', 'skipped', 'queued')),
    attempts        bigint NOT NULL DEFAULT 0,
    next_attempt_at text COLLATE "C",               -- when pending: the next try
    last_error      text COLLATE "C",               -- one line, never a secret
    created_at      text COLLATE "C" NOT NULL,
    delivered_at    text COLLATE "C",               -- build: written; mail: accepted by SMTP
    directory       text COLLATE "C",               -- the pack's directory
    manifest_sha256 text COLLATE "C",               -- the signed manifest's SHA-256
    payload_sha256  text COLLATE "C",               -- mail: the spooled message's SHA-256
    notification_id bigint REFERENCES notifications(id),  -- webhook: the outbox row
    PRIMARY KEY (week, channel)
);
CREATE INDEX report_runs_due ON report_runs(state, next_attempt_at);
