-- 0029: each export cursor is MACed (see the twin in postgresql/). `mac` is HMAC-SHA-256
-- under the audit chain key over the sink's name and its seq (bastion/audit/exporting.py),
-- written with every move of the cursor by the bastion: whoever edits `delivered_seq` in the
-- database without the key (to hide events from the SIEM, or to let retention cut past
-- them) leaves a cursor whose MAC does not hold. The worker then sends that sink everything
-- again from the start of the chain and chains `export.cursor_tampered`; `bastion export
-- status` shows it. The bastion that applies this migration signs the cursors as they stand
-- (ExportQueries.migrate); one left without a MAC ('') counts as moved.
-- `selection` is what the sink takes as last configured (its kind, min_severity and kinds, as
-- JSON): a start that finds it changed chains `export.sink_configured`, so narrowing a
-- filter to hide events from the SIEM is itself an event.
ALTER TABLE export_cursors ADD COLUMN mac TEXT NOT NULL DEFAULT '';
ALTER TABLE export_cursors ADD COLUMN selection TEXT NOT NULL DEFAULT '';
