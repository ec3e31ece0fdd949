-- 0009 (PostgreSQL twin of ../0009_refused_attempts.sql): TOTP attempts refused while a user
-- is locked or disabled are counted on the user's row and audited in aggregate.

ALTER TABLE users ADD COLUMN refused_attempts bigint NOT NULL DEFAULT 0;
