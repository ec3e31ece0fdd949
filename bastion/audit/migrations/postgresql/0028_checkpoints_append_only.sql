-- 0028: chain checkpoints are append-only, and every trigger function reads only the store's
-- own schema (the twin of ../0028_checkpoints_append_only.sql, which says why of the first).
--
-- A trigger function runs with the search_path of the session that fires it, unless it pins
-- its own. PostgreSQL searches a session's temporary schema first for tables and types
-- unless pg_temp is named in the path; so a session with the store's password could put a
-- temporary chain_checkpoints naming every seq in front of the store's and delete events
-- past any real checkpoint. Each trigger function now looks in the schema the migrations run
-- in, with pg_temp last.

CREATE FUNCTION chain_checkpoints_append_only() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'chain checkpoints are append-only' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER chain_checkpoints_no_update BEFORE UPDATE ON chain_checkpoints
    FOR EACH ROW EXECUTE FUNCTION chain_checkpoints_append_only();
CREATE TRIGGER chain_checkpoints_no_delete BEFORE DELETE ON chain_checkpoints
    FOR EACH ROW EXECUTE FUNCTION chain_checkpoints_append_only();
CREATE TRIGGER chain_checkpoints_no_truncate BEFORE TRUNCATE ON chain_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION chain_checkpoints_append_only();

DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['audit_events_append_only', 'audit_events_decided',
                              'audit_events_delete_checkpointed', 'chain_checkpoints_append_only']
    LOOP
        EXECUTE format('ALTER FUNCTION %I.%I() SET search_path = %I, pg_temp',
                       current_schema(), fn, current_schema());
    END LOOP;
END;
$$;
