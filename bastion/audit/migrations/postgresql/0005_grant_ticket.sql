-- 0005 (PostgreSQL twin of ../0005_grant_ticket.sql): a grant may name the ticket (incident,
-- change request) it was given for.

ALTER TABLE grants ADD COLUMN ticket_ref text COLLATE "C";
