-- 0019: step-up for the console's consequential writes. proven_at is when this web session
-- last proved its person's TOTP code (the sign-in, or a code entered in the step-up form);
-- an admin write is allowed only within [web] step_up of it. It belongs to this row alone,
-- so one sign-in's proof never counts for another's. Rows from before this migration have
-- none (NULL): their next admin write asks for a fresh code.
ALTER TABLE web_sessions ADD COLUMN proven_at TEXT;
