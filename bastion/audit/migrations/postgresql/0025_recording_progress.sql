-- How far a session's node got with its recording.
--
-- The node's uploader (after each part the object store acknowledged) or its writer (after
-- an fsync) writes the bytes it made durable and the SHA-256 of exactly those bytes. A node
-- that dies mid-session leaves what it wrote; whoever closes the session later (the upload
-- completer, the node's own restart) refuses a recording shorter than that, or whose prefix
-- hashes otherwise: nobody can cut a crashed node's recording and have it chained as a crash's
-- cut (red team red18d 1). Only growing, only for the session's own node, only while open.

ALTER TABLE sessions ADD COLUMN recording_progress_bytes bigint;
ALTER TABLE sessions ADD COLUMN recording_progress_sha256 text COLLATE "C";
