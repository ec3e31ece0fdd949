-- Decision notices: every node hears at once that access was ended or refused somewhere.
--
-- A statement that appends an event of one of the kinds below (a kill request, a revoked
-- grant, ticket or unmask grant, a disabled or locked user, a removed target, a member taken
-- out of a group, a web sign-out) sends one notice on the channel bastion_decisions, with
-- the store's schema and the highest such seq it appended: "<schema> <seq>". Notices are
-- sent when the transaction commits, in commit order, and only to connections that LISTEN.
-- Each node's DecisionFeed (bastion/audit/listen.py) listens on a dedicated connection and
-- wakes its session watcher; on every (re)connect it looks for these kinds by seq, so a
-- decision made while it was away is not missed. Every other kind (the busy
-- queries.committed, logins, sessions opening and closing) sends nothing.
--
-- The list is an allow-list: a kind that is not on it never wakes another node early (its
-- sessions still end at the next poll). tests/audit/test_decision_notices.py fails when a
-- store method changes what the session watcher reads without writing a kind listed here.
-- To add a kind later, a new migration replaces bastion_decision_kinds().

CREATE FUNCTION bastion_decision_kinds() RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ARRAY[
        'grant.revoked',
        'group.member_removed',
        'session.kill_requested',
        'target.removed',
        'ticket.revoked',
        'unmask.revoked',
        'user.disabled',
        'user.locked',
        'web.signed_out',
        'web.signed_out_everywhere'
    ]::text[] $$;

-- search_path fixed at creation: an inserting session's own search_path can't redirect it.
CREATE FUNCTION audit_events_decided() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT
    AS $$
DECLARE
    decided bigint;
BEGIN
    SELECT max(seq) INTO decided FROM appended WHERE kind = ANY (bastion_decision_kinds());
    IF decided IS NOT NULL THEN
        PERFORM pg_notify('bastion_decisions', TG_TABLE_SCHEMA || ' ' || decided);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_events_decided
    AFTER INSERT ON audit_events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_decided();
