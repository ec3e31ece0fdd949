-- 0026: the SIEM export's outbox (the twin of ../0026_export_cursors.sql, which says why):
-- each configured sink's cursor, the last chain seq it has taken; `enabled` false for a sink
-- no longer configured.
CREATE TABLE export_cursors (
    sink text COLLATE "C" PRIMARY KEY,
    kind text COLLATE "C" NOT NULL,
    delivered_seq bigint NOT NULL CHECK (delivered_seq >= 0),
    enabled bigint NOT NULL CHECK (enabled IN (0, 1)),
    updated_at text COLLATE "C" NOT NULL
);
