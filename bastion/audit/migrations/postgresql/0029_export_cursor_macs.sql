-- 0029: each export cursor is MACed (the twin of ../0029_export_cursor_macs.sql, which says
-- why): HMAC-SHA-256 under the audit chain key over the sink's name and its seq.
ALTER TABLE export_cursors ADD COLUMN mac text COLLATE "C" NOT NULL DEFAULT '';
