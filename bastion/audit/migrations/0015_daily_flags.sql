-- 0015: daily flags under the weekly review. `bastion serve` checks each local day (in
-- [reports] timezone) for high-severity findings and sends each new one as a notification.
-- daily_flags remembers every finding sent, by its stable id, so none is sent twice (across
-- checks and restarts) and the weekly review shows it under the same id; daily_checks
-- remembers how far each day was read, so a day missed while the bastion was down is
-- checked when it comes back. Standard SQL: the store may move onto PostgreSQL.

CREATE TABLE daily_flags (
    finding_id      TEXT PRIMARY KEY,               -- model.Finding.id (stable across weeks)
    day             TEXT NOT NULL,                  -- the local day checked, YYYY-MM-DD
    rule            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    flagged_at      TEXT NOT NULL,
    notification_id INTEGER REFERENCES notifications(id)  -- NULL: no webhook configured
);
CREATE INDEX daily_flags_day ON daily_flags(day);

CREATE TABLE daily_checks (
    day             TEXT PRIMARY KEY,               -- the local day, YYYY-MM-DD
    checked_until   TEXT NOT NULL,                  -- read up to this instant (UTC)
    complete        INTEGER NOT NULL DEFAULT 0,     -- 1: read after the day (and its grace) ended
    flagged         INTEGER NOT NULL DEFAULT 0      -- findings sent for it so far
);
