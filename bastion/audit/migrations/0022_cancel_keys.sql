-- 0022: which node holds each PostgreSQL cancel key, so a CancelRequest that reaches another
-- node behind the load balancer is forwarded to the door holding the session. Only the
-- key's public half (the pid handed to the client) is kept: the secret half stays in the
-- owner's memory, and the owner checks it, so a copy of the store cancels nobody's query.
-- The pid is the primary key: it is unique across every node sharing the store. A row is
-- deleted when its session ends; a node deletes its own rows when it starts.
CREATE TABLE cancel_keys (
    pid         INTEGER PRIMARY KEY CHECK (pid BETWEEN 1 AND 2147483647),
    node        TEXT NOT NULL,                 -- the node's name ([cluster] node)
    address     TEXT NOT NULL,                 -- host:port its door takes forwarded cancels on
    session_id  TEXT NOT NULL,
    claimed_at  TEXT NOT NULL
);
CREATE INDEX cancel_keys_by_node ON cancel_keys(node);
