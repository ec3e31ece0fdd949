-- 0005: a grant may name the ticket (incident, change request) it was given for.

ALTER TABLE grants ADD COLUMN ticket_ref TEXT;
