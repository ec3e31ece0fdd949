-- 0007 (PostgreSQL twin of ../0007_target_roles.sql): the least-privilege roles `bastion
-- target harden` made on a database target, with their passwords sealed like every other
-- target secret.

CREATE TABLE target_roles (
    target_id     bigint NOT NULL REFERENCES targets(id),
    purpose       text COLLATE "C" NOT NULL CHECK (purpose IN ('masked', 'unmasked')),
    login         text COLLATE "C" NOT NULL,
    secret_sealed bytea NOT NULL,
    created_at    text COLLATE "C" NOT NULL,
    PRIMARY KEY (target_id, purpose)
);
