-- 0011 (PostgreSQL twin of ../0011_keyed_chain.sql): the audit chain is keyed; each row says
-- how its MAC was made ("sha256" before this migration, "hmac-sha256" after the first write
-- with the key). A constant default is not a rewrite: the append-only triggers do not fire.
ALTER TABLE audit_events ADD COLUMN alg text COLLATE "C" NOT NULL DEFAULT 'sha256'
    CHECK (alg IN ('sha256', 'hmac-sha256'));
