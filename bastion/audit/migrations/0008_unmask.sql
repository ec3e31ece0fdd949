-- 0008: unmask grants. A named engineer may see named sensitive columns of one target in
-- clear, only in rows of one data subject, with that subject's consent on record and a
-- second person's approval, for a time-boxed window that opens at approval.

CREATE TABLE unmask_grants (
    id               INTEGER PRIMARY KEY,
    user_id          INTEGER NOT NULL REFERENCES users(id),
    target_id        INTEGER NOT NULL REFERENCES targets(id),
    columns          TEXT NOT NULL,                 -- JSON list: "table.column" or "table"
    subject_key      TEXT NOT NULL,                 -- a configured subject key, "customers.id"
    subject_value    TEXT NOT NULL,                 -- the subject, "4711"
    reason           TEXT NOT NULL,
    consent_ref      TEXT NOT NULL,                 -- where the consent is recorded
    consent_sha256   TEXT,                          -- of the consent document, if one was given
    duration_s       INTEGER NOT NULL CHECK (duration_s > 0),
    requested_by     TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'approved', 'denied', 'revoked', 'cancelled')),
    decided_by       TEXT,
    decided_at       TEXT,
    decision_reason  TEXT,
    starts_at        TEXT,
    ends_at          TEXT
);
CREATE INDEX unmask_grants_user_target ON unmask_grants(user_id, target_id);
