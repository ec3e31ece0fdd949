-- 0010 (PostgreSQL twin of ../0010_query_code_kept_whole.sql): the query log keeps code it
-- cannot parse for redaction as it is, and says why. NULL: the text was redacted as usual.

ALTER TABLE queries ADD COLUMN kept_whole text COLLATE "C";
