-- 0010: the query log keeps code. A statement whose code (a DO block, a function body, a query
-- given as text) cannot be parsed for redaction is stored as it is; this says why, so that
-- listings can flag it. NULL: the text was redacted as usual.

ALTER TABLE queries ADD COLUMN kept_whole TEXT;
