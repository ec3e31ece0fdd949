-- 0020: web session rows bound to the key kept outside the store. The cookie's secret is
-- kept as an HMAC under a key derived from the secrets key (no longer its plain SHA-256), and
-- row_mac is an HMAC over every field the console trusts (id, person, CSRF token, client,
-- started, last seen, step-up proof), checked on every request. A row written without the
-- key, or edited since, is refused like a missing one. Rows from before this migration have
-- neither: their cookies find nothing, and their people sign in again.
ALTER TABLE web_sessions RENAME COLUMN token_sha256 TO token_mac;
ALTER TABLE web_sessions ADD COLUMN row_mac TEXT;
-- The same for reusable tickets: row_mac binds a ticket's keyed digest to its person,
-- target, grant, end and address binding, so a row moved to someone else or stretched is no
-- ticket. Reusable tickets from before this migration stop working: mint a new one.
ALTER TABLE tickets ADD COLUMN row_mac TEXT;
