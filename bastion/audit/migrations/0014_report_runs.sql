-- 0014: the weekly review's runs. One row per review week and channel: "build" (the signed
-- pack written under paths.reports), "mail" (SMTP with STARTTLS to [reports] recipients) and
-- "webhook" (a report.ready notification handed to the outbox, whose row then tells whether
-- it was posted). `bastion serve` retries a failed build or mail with the notifications'
-- backoff and gives up after notify.retries; a week whose build row exists is not built
-- again on its own. Standard SQL: the store may move onto PostgreSQL.

CREATE TABLE report_runs (
    week            TEXT NOT NULL,                  -- the ISO label, e.g. 2026-W47
    channel         TEXT NOT NULL CHECK (channel IN ('build', 'mail', 'webhook')),
    state           TEXT NOT NULL
                    CHECK (state IN ('pending', 'done', 'failed', 'skipped', 'queued')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,                           -- when pending: the next try
    last_error      TEXT,                           -- one line, never a secret
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,                           -- build: written; mail: accepted by SMTP
    directory       TEXT,                           -- the pack's directory
    manifest_sha256 TEXT,                           -- the signed manifest's SHA-256
    payload_sha256  TEXT,                           -- mail: the spooled message's SHA-256
    notification_id INTEGER REFERENCES notifications(id),  -- webhook: the outbox row
    PRIMARY KEY (week, channel)
);
CREATE INDEX report_runs_due ON report_runs(state, next_attempt_at);
