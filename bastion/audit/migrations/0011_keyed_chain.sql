-- The audit chain is keyed: each row says how its MAC was made. Rows written before this
-- migration are unkeyed SHA-256 ("sha256"); the first write with the key appends an
-- "audit.chain_keyed" event (HMAC-SHA-256, "hmac-sha256") that binds their head, and every
-- later row is keyed. `bastion audit verify` checks the column against the row's place.
ALTER TABLE audit_events ADD COLUMN alg TEXT NOT NULL DEFAULT 'sha256'
    CHECK (alg IN ('sha256', 'hmac-sha256'));
