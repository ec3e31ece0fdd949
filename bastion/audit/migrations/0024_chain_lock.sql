-- The chain's write lock as a table (see the twin in postgresql/).
--
-- On PostgreSQL every write that may append to the chain locks this table, which only the
-- store's own role may lock (an advisory key could be held by any role that may connect).
-- SQLite's BEGIN IMMEDIATE is its writer lock, so the table is never used here; it exists
-- so that both engines make the same tables (and `store copy` finds its twin). No row.

CREATE TABLE chain_lock (name TEXT PRIMARY KEY CHECK (name = 'chain'));
