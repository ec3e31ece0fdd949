-- 0002 (PostgreSQL twin of ../0002_sessions.sql): what the SSH door records about sessions,
-- commands and file operations.

ALTER TABLE sessions ADD COLUMN end_reason text COLLATE "C";
ALTER TABLE sessions ADD COLUMN channel_count bigint NOT NULL DEFAULT 0;
ALTER TABLE commands ADD COLUMN reconstructed bigint NOT NULL DEFAULT 0;
ALTER TABLE commands ADD COLUMN uncertain text COLLATE "C";
ALTER TABLE file_transfers ADD COLUMN status text COLLATE "C";

CREATE INDEX sessions_user ON sessions(user_id, started_at);
CREATE INDEX sessions_target ON sessions(target_id, started_at);
CREATE INDEX commands_session ON commands(session_id, at);
CREATE INDEX file_transfers_session ON file_transfers(session_id, at);

-- An admin's `bastion sessions kill`: the serving process ends the session and clears it.
ALTER TABLE sessions ADD COLUMN kill_requested_at text COLLATE "C";
ALTER TABLE sessions ADD COLUMN kill_requested_by text COLLATE "C";
ALTER TABLE sessions ADD COLUMN kill_reason text COLLATE "C";
