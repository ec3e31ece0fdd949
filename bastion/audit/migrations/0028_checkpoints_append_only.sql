-- 0028: chain checkpoints are append-only (see the twin in postgresql/).
--
-- A checkpoint lets the delete trigger of 0027 let go of the events it covers. Once written
-- it stays: a forged one (inserted by someone with the store's password, to delete events)
-- is then left for `audit verify` to refuse by its signature, and a real one cannot be moved
-- past events it never covered nor taken away to hide a cut.

CREATE TRIGGER chain_checkpoints_no_update BEFORE UPDATE ON chain_checkpoints
BEGIN SELECT RAISE(ABORT, 'chain checkpoints are append-only'); END;
CREATE TRIGGER chain_checkpoints_no_delete BEFORE DELETE ON chain_checkpoints
BEGIN SELECT RAISE(ABORT, 'chain checkpoints are append-only'); END;
