-- 0021: several bastion nodes on one store (the twin of ../0021_cluster_nodes.sql, which
-- says why). Each session names the node that holds it (NULL: opened before this migration);
-- leases elect one node for a job, `term` counting each change of hands (a fencing token).
ALTER TABLE sessions ADD COLUMN node text COLLATE "C";
CREATE INDEX sessions_open_by_node ON sessions (node) WHERE ended_at IS NULL;
CREATE TABLE leases (
    name text COLLATE "C" PRIMARY KEY,
    holder text COLLATE "C" NOT NULL,
    term bigint NOT NULL CHECK (term > 0),
    taken_at text COLLATE "C" NOT NULL,
    renewed_at text COLLATE "C" NOT NULL,
    expires_at text COLLATE "C" NOT NULL
);
