-- The chain's write lock, as a table only the store's own role may lock.
--
-- Every write that may append to the audit chain runs LOCK TABLE chain_lock IN EXCLUSIVE
-- MODE first (bastion/audit/pgconn.py), so appends from every node are serialised in the
-- database. It was an advisory lock key until now, and any role that may merely connect to
-- the store's database (PostgreSQL grants CONNECT to PUBLIC by default) could hold that key
-- at session level and stop every node's writes (red team red18c 1). Locking a table in this
-- mode takes UPDATE, DELETE or TRUNCATE rights on it, which only the store's role has.
-- Nothing is ever written to it: no row, no vacuum, no bloat.

CREATE TABLE chain_lock (name text COLLATE "C" PRIMARY KEY CHECK (name = 'chain'));
