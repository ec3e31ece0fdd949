-- 0020 (PostgreSQL twin of ../0020_web_session_macs.sql): web session rows and reusable
-- tickets bound to the key kept outside the store. The cookie's secret is kept as an HMAC
-- (the column and its unique constraint are renamed), and row_mac is an HMAC over every
-- field the code trusts. Rows from before have none and stop working.
ALTER TABLE web_sessions RENAME COLUMN token_sha256 TO token_mac;
ALTER TABLE web_sessions RENAME CONSTRAINT web_sessions_token_sha256_key TO web_sessions_token_mac_key;
ALTER TABLE web_sessions ADD COLUMN row_mac text COLLATE "C";
ALTER TABLE tickets ADD COLUMN row_mac text COLLATE "C";
