-- 0019 (PostgreSQL twin of ../0019_web_step_up.sql): when this web session last proved its
-- person's TOTP code; NULL for rows from before (their next admin write asks for a code).
ALTER TABLE web_sessions ADD COLUMN proven_at text COLLATE "C";
