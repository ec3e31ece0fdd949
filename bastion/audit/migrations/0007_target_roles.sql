-- 0007: the least-privilege roles `bastion target harden` made on a database target, with
-- their passwords sealed like every other target secret.

CREATE TABLE target_roles (
    target_id     INTEGER NOT NULL REFERENCES targets(id),
    purpose       TEXT NOT NULL CHECK (purpose IN ('masked', 'unmasked')),
    login         TEXT NOT NULL,
    secret_sealed BLOB NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (target_id, purpose)
);
