-- 0029: each export cursor is MACed (the twin of ../0029_export_cursor_macs.sql, which says
-- why): HMAC-SHA-256 under the audit chain key over the sink's name and its seq; and each
-- sink's selection as last configured (a change is chained as export.sink_configured).
ALTER TABLE export_cursors ADD COLUMN mac text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE export_cursors ADD COLUMN selection text COLLATE "C" NOT NULL DEFAULT '';
