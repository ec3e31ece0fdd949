-- 0026: the SIEM export's outbox (see the twin in postgresql/). The audit chain itself is the
-- outbox: every event is in it, in seq order, written by the same transaction that made it.
-- Each configured sink ([export.NAME]) keeps here the last chain seq it has taken (its cursor);
-- its worker reads the chain after it, delivers, and only then moves it on (a conditional
-- UPDATE: a node that lost the sink's lease cannot move it). `enabled` is 0 for a sink no
-- longer configured: retention waits for the enabled sinks only (export_low_water).
CREATE TABLE export_cursors (
    sink TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    delivered_seq INTEGER NOT NULL CHECK (delivered_seq >= 0),
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    updated_at TEXT NOT NULL
);
